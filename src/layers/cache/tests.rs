use std::sync::atomic::AtomicUsize;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::backend::BackendFuture;
use super::key::piece_key;
use super::memory::MemoryBackend;
use super::*;
use crate::layers::validate::ValidateLayer;
use crate::model::time::format_seconds_ms;

const H: i64 = 3_600_000;
const MIDNIGHT: i64 = 1_699_920_000_000;

/// A scripted querier: one series per tenant, a sample at every grid point whose value
/// encodes the timestamp; optional warnings, errors and delay.
#[derive(Clone, Default)]
struct Mock {
    calls: Arc<Mutex<Vec<(i64, i64)>>>,
    warn: bool,
    fail: bool,
    no_store: bool,
    delay: Duration,
}

impl Service<RangeQuery> for Mock {
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, q: RangeQuery) -> Self::Future {
        self.calls
            .lock()
            .expect("lock")
            .push((q.start_ms, q.end_ms));
        let (warn, fail, no_store, delay) = (self.warn, self.fail, self.no_store, self.delay);
        Box::pin(async move {
            // Like the downstream client: no waiting past the request's deadline.
            let until = tokio::time::Instant::now() + delay;
            if let Some(deadline) = q.deadline.filter(|d| *d < until) {
                tokio::time::sleep_until(deadline).await;
                return Err(Error::Timeout {
                    endpoint: "mock".into(),
                    after: delay,
                    limit: "deadline",
                });
            }
            tokio::time::sleep(delay).await;
            if fail {
                return Err(Error::Downstream {
                    status: http::StatusCode::SERVICE_UNAVAILABLE,
                    headers: Box::default(),
                    body: bytes::Bytes::from_static(
                        b"{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"x\"}",
                    ),
                });
            }
            let mut answer =
                QueryResponse::from_slice(answer_json(&q, warn).as_bytes()).expect("valid");
            answer.no_store = no_store;
            Ok(answer)
        })
    }
}

/// What the querier answers for `q` (also what the cache must reproduce).
fn answer_json(q: &RangeQuery, warn: bool) -> String {
    let tenant = q
        .request_headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let mut samples = Vec::new();
    let mut t = q.start_ms;
    while t <= q.end_ms {
        samples.push(format!("[{},\"{}\"]", format_seconds_ms(t), t % 1_000_003));
        t += q.step_ms();
    }
    let warnings = if warn {
        ",\"warnings\":[\"partial data\"]"
    } else {
        ""
    };
    format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{{\"metric\":{{\"tenant\":\"{tenant}\"}},\"values\":[{}]}}]}}{warnings}}}",
        samples.join(",")
    )
}

fn query(start: i64, end: i64, headers: &[(&'static str, &'static str)]) -> RangeQuery {
    let pairs = [
        ("query", "sum(rate(x[5m]))".to_string()),
        ("start", format_seconds_ms(start)),
        ("end", format_seconds_ms(end)),
        ("step", "60".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    let mut q = RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid");
    for (k, v) in headers {
        q.request_headers.append(*k, HeaderValue::from_static(v));
    }
    q
}

struct Harness {
    mock: Mock,
    svc: tower::util::BoxCloneSyncService<RangeQuery, QueryResponse, Error>,
    now: Arc<AtomicI64>,
    backend: Arc<dyn Backend>,
    layer: CacheLayer,
}

fn harness(mock: Mock, backend: Arc<dyn Backend>) -> Harness {
    harness_with(mock, backend, |_| {})
}

fn harness_with(
    mock: Mock,
    backend: Arc<dyn Backend>,
    tweak: impl FnOnce(&mut CacheOptions),
) -> Harness {
    let now = Arc::new(AtomicI64::new(MIDNIGHT + 20 * H));
    let clock_now = now.clone();
    let opts = CacheOptions {
        key: KeyOptions {
            namespace: "mock".into(),
            tenant_header: HeaderName::from_static("x-scope-orgid"),
            key_headers: vec![],
            interval_ms: 24 * H,
        },
        max_freshness: Duration::from_secs(600),
        ttl: Duration::from_secs(3600),
        max_item_bytes: 1 << 20,
        op_timeout: Duration::from_millis(100),
        max_parallel_fetches: 4,
        clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
        lower_step_reuse: true,
    };
    let mut opts = opts;
    tweak(&mut opts);
    let layer = CacheLayer::new(opts, backend.clone(), Arc::new(Metrics::new()));
    let svc = tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ValidateLayer::default())
            .layer(layer.clone())
            .service(mock.clone()),
    );
    Harness {
        mock,
        svc,
        now,
        backend,
        layer,
    }
}

/// The memory backend as configured by default (entries kept uncompressed).
fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new(64 << 20).uncompressed(true))
}

/// The key of the first day piece of `q`, as the layer makes it.
fn first_piece_key(q: &RangeQuery) -> super::key::PieceKey {
    let mut with_analysis = q.clone();
    crate::promql::attach(
        &mut with_analysis,
        Arc::new(crate::promql::Analysis::of(&q.query)),
    );
    piece_key(
        &with_analysis,
        &KeyOptions {
            namespace: "mock".into(),
            tenant_header: HeaderName::from_static("x-scope-orgid"),
            key_headers: vec![],
            interval_ms: 24 * H,
        },
    )
    .expect("key")
}

impl Harness {
    async fn ask(&self, mut q: RangeQuery) -> (String, Option<&'static str>) {
        // Each request has its own stats (clones of one query would share them).
        q.stats = Arc::default();
        let stats = q.stats.clone();
        let resp = self.svc.clone().oneshot(q).await.expect("answers");
        // Let the background writes land (they run on the blocking pool).
        tokio::time::sleep(Duration::from_millis(1)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        while self.layer.writes_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (
            String::from_utf8(resp.encode()).expect("utf-8"),
            stats.cache_outcome(),
        )
    }

    /// Lets other tasks run until the querier has seen `n` requests.
    async fn wait_for_calls(&self, n: usize) {
        while self.mock.calls.lock().expect("lock").len() < n {
            tokio::task::yield_now().await;
        }
    }

    fn take_calls(&self) -> Vec<(i64, i64)> {
        std::mem::take(&mut *self.mock.calls.lock().expect("lock"))
    }
}

#[tokio::test]
async fn miss_then_hit_then_only_the_tail() {
    let h = harness(Mock::default(), memory());
    let (start, end) = (MIDNIGHT + H, MIDNIGHT + 5 * H);
    let q = query(start, end, &[]);
    let (first, outcome) = h.ask(q.clone()).await;
    assert_eq!(outcome, Some("miss"));
    assert_eq!(first, answer_json(&q, false));
    assert_eq!(h.take_calls(), vec![(start, end)]);

    let (second, outcome) = h.ask(q.clone()).await;
    assert_eq!(outcome, Some("hit"), "calls: {:?}", h.take_calls());
    assert_eq!(second, first);
    assert!(
        h.take_calls().is_empty(),
        "a warm repeat sends nothing downstream"
    );

    // The dashboard refreshes: end moves by 30s... and by a whole step.
    let later = query(start, end + 60_000, &[]);
    let (third, outcome) = h.ask(later.clone()).await;
    assert_eq!(outcome, Some("partial"));
    assert_eq!(third, answer_json(&later, false));
    assert_eq!(
        h.take_calls(),
        vec![(end + 60_000, end + 60_000)],
        "only the new tail"
    );

    // A later start is cut from the cached extent.
    let narrower = query(start + 10 * 60_000, end, &[]);
    let (fourth, outcome) = h.ask(narrower.clone()).await;
    assert_eq!(outcome, Some("hit"));
    assert_eq!(fourth, answer_json(&narrower, false));
    assert!(h.take_calls().is_empty());
}

#[tokio::test]
async fn the_fresh_tail_is_never_stored() {
    let h = harness(Mock::default(), memory());
    // now = 20:00; freshness 10m → data after 19:50 is not stored.
    let (start, end) = (MIDNIGHT + 19 * H, MIDNIGHT + 20 * H);
    let q = query(start, end, &[]);
    let (first, _) = h.ask(q.clone()).await;
    assert_eq!(first, answer_json(&q, false));
    let cutoff = MIDNIGHT + 20 * H - 600_000;
    // One request; only its part up to the cut-off is stored.
    assert_eq!(h.take_calls(), vec![(start, end)]);
    let (again, outcome) = h.ask(q.clone()).await;
    assert_eq!(again, first);
    assert_eq!(outcome, Some("partial"));
    assert_eq!(
        h.take_calls(),
        vec![(cutoff + 60_000, end)],
        "the fresh tail is fetched again"
    );
    // Time passes: the previously fresh range becomes storable.
    h.now.store(MIDNIGHT + 23 * H, Ordering::SeqCst);
    h.ask(q.clone()).await;
    assert_eq!(h.take_calls(), vec![(cutoff + 60_000, end)]);
    h.ask(q.clone()).await;
    assert!(h.take_calls().is_empty(), "now all of it is cached");
}

#[tokio::test]
async fn an_end_between_grid_points_is_handled() {
    let h = harness(Mock::default(), memory());
    // now = 20:00, cut-off 19:50; the end lies 30s after the last grid point.
    let (start, end) = (MIDNIGHT + 19 * H + 500, MIDNIGHT + 20 * H - 29_500);
    let q = query(start, end, &[]);
    let (answer, _) = h.ask(q.clone()).await;
    assert_eq!(answer, answer_json(&q, false));
    for (s, e) in h.take_calls() {
        assert!(
            s <= e && (e - start) % 60_000 == 0,
            "sub-range {s}..{e} on the grid"
        );
    }
    let (again, _) = h.ask(q.clone()).await;
    assert_eq!(again, answer);
}

#[tokio::test]
async fn request_cache_control() {
    let h = harness(Mock::default(), memory());
    let (start, end) = (MIDNIGHT + H, MIDNIGHT + 2 * H);
    let (_, outcome) = h
        .ask(query(start, end, &[("cache-control", "no-store")]))
        .await;
    assert_eq!(outcome, Some("skip"));
    h.ask(query(start, end, &[])).await;
    h.take_calls();
    // no-cache: fetched again although cached...
    let (_, outcome) = h
        .ask(query(start, end, &[("cache-control", "no-cache")]))
        .await;
    assert_eq!(outcome, Some("miss"));
    assert_eq!(h.take_calls().len(), 1);
    // ...and a plain request is still a hit.
    let (_, outcome) = h.ask(query(start, end, &[])).await;
    assert_eq!(outcome, Some("hit"));
}

#[tokio::test]
async fn a_no_cache_request_still_stores_its_answer() {
    let h = harness(Mock::default(), memory());
    let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
    let (_, outcome) = h
        .ask(query(
            q.start_ms,
            q.end_ms,
            &[("cache-control", "no-cache")],
        ))
        .await;
    assert_eq!(outcome, Some("miss"));
    let (answer, outcome) = h.ask(q.clone()).await;
    assert_eq!(
        outcome,
        Some("hit"),
        "the no-cache request wrote its fresh answer"
    );
    assert_eq!(answer, answer_json(&q, false));
    assert_eq!(h.take_calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_fetch_is_never_replayed() {
    let h = harness(
        Mock {
            delay: Duration::from_secs(5),
            ..Mock::default()
        },
        memory(),
    );
    let q = query(
        MIDNIGHT + H,
        MIDNIGHT + 2 * H,
        &[("cache-control", "no-cache")],
    );
    // The first request is cancelled while its fetch is in flight.
    let first = tokio::spawn(h.svc.clone().oneshot(q.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.abort();
    let _ = first.await;
    // A later request must ask the querier itself, not wait for or reuse that fetch.
    h.svc.clone().oneshot(q.clone()).await.expect("answers");
    assert_eq!(h.take_calls().len(), 2);
    // And once it finished, nothing is left in flight to be replayed.
    h.svc.clone().oneshot(q.clone()).await.expect("answers");
    assert_eq!(
        h.take_calls().len(),
        1,
        "no-cache: a new request, not a replay"
    );
}

#[tokio::test]
async fn partial_answers_and_errors_are_not_stored() {
    let h = harness(
        Mock {
            warn: true,
            ..Mock::default()
        },
        memory(),
    );
    let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
    let (first, _) = h.ask(q.clone()).await;
    assert!(first.contains("partial data"), "warnings reach the client");
    h.ask(q.clone()).await;
    assert_eq!(
        h.take_calls().len(),
        2,
        "an answer with warnings is never reused"
    );

    let h = harness(
        Mock {
            fail: true,
            ..Mock::default()
        },
        memory(),
    );
    for _ in 0..2 {
        let err = h
            .svc
            .clone()
            .oneshot(q.clone())
            .await
            .expect_err("querier fails");
        assert_eq!(err.status().as_u16(), 503);
    }
    assert_eq!(h.take_calls().len(), 2);
}

#[tokio::test]
async fn tenants_never_share_entries() {
    let h = harness(Mock::default(), memory());
    let (start, end) = (MIDNIGHT + H, MIDNIGHT + 2 * H);
    let (a, _) = h
        .ask(query(start, end, &[("x-scope-orgid", "team-a")]))
        .await;
    let (b, outcome) = h
        .ask(query(start, end, &[("x-scope-orgid", "team-b")]))
        .await;
    assert_eq!(outcome, Some("miss"), "team-b does not see team-a's entry");
    assert!(a.contains("team-a") && b.contains("team-b"));
    let (a2, outcome) = h
        .ask(query(start, end, &[("x-scope-orgid", "team-a")]))
        .await;
    assert_eq!(outcome, Some("hit"));
    assert_eq!(a2, a);
}

#[tokio::test(start_paused = true)]
async fn identical_concurrent_fetches_are_coalesced() {
    let h = harness(
        Mock {
            delay: Duration::from_secs(1),
            ..Mock::default()
        },
        memory(),
    );
    let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(h.svc.clone().oneshot(q.clone())));
    }
    let want = answer_json(&q, false);
    for t in tasks {
        let resp = t.await.expect("task").expect("answers");
        assert_eq!(String::from_utf8(resp.encode()).expect("utf-8"), want);
    }
    assert_eq!(
        h.take_calls().len(),
        1,
        "eight identical requests, one querier request"
    );
}

#[tokio::test(start_paused = true)]
async fn coalesced_waiters_keep_their_own_deadlines() {
    let h = harness(
        Mock {
            delay: Duration::from_secs(3),
            ..Mock::default()
        },
        memory(),
    );
    let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
    let with_deadline = |secs: u64| {
        let mut q = q.clone();
        q.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
        q
    };
    // A leader in a hurry times out; the patient waiter is not failed with it.
    let leader = tokio::spawn(h.svc.clone().oneshot(with_deadline(1)));
    h.wait_for_calls(1).await;
    let waiter = tokio::spawn(h.svc.clone().oneshot(with_deadline(60)));
    let leader = leader.await.expect("task");
    assert!(matches!(leader, Err(Error::Timeout { .. })), "{leader:?}");
    let answer = waiter.await.expect("task").expect("the waiter asks itself");
    assert_eq!(
        String::from_utf8(answer.encode()).expect("utf-8"),
        answer_json(&q, false)
    );
    assert_eq!(
        h.take_calls().len(),
        2,
        "the leader's fetch and the waiter's own"
    );

    // A waiter in a hurry gives up at its own deadline, not the leader's.
    let q2 = query(MIDNIGHT + 3 * H, MIDNIGHT + 4 * H, &[]);
    let mut slow = q2.clone();
    slow.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(60));
    let mut hurried = q2.clone();
    hurried.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let leader = tokio::spawn(h.svc.clone().oneshot(slow));
    h.wait_for_calls(1).await;
    let waiter = h.svc.clone().oneshot(hurried).await;
    assert!(matches!(waiter, Err(Error::Timeout { .. })), "{waiter:?}");
    assert!(started.elapsed() <= Duration::from_secs(1));
    leader.await.expect("task").expect("the leader finishes");
    assert_eq!(
        h.take_calls().len(),
        1,
        "the hurried waiter shared the fetch"
    );
}

/// A backend that holds garbage, fails, or never answers.
struct BadBackend {
    mode: &'static str,
    gets: AtomicUsize,
}

impl Backend for BadBackend {
    fn name(&self) -> &'static str {
        "bad"
    }
    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match self.mode {
                "garbage" => Ok(keys
                    .iter()
                    .map(|_| Some(Bytes::from_static(b"PFC1\x00\x05\x00")))
                    .collect()),
                "error" => Err(backend::BackendError::Failed("connection refused".into())),
                _ => std::future::pending().await,
            }
        })
    }
    fn set<'a>(&'a self, _key: u64, _value: Bytes, _ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            match self.mode {
                "hang" => std::future::pending().await,
                _ => Err(backend::BackendError::Failed("read only".into())),
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_broken_backend_is_a_miss_never_a_failure() {
    for mode in ["garbage", "error", "hang"] {
        let backend = Arc::new(BadBackend {
            mode,
            gets: AtomicUsize::new(0),
        });
        let h = harness(Mock::default(), backend.clone());
        let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
        let started = tokio::time::Instant::now();
        let resp = h.svc.clone().oneshot(q.clone()).await.expect("answers");
        // Bounded by the operation timeout (100ms), on paused time; the write, in the
        // background, is not waited for.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(150), "{mode}: {took:?}");
        let answer = String::from_utf8(resp.encode()).expect("utf-8");
        assert_eq!(answer, answer_json(&q, false), "{mode}");
        assert_eq!(q.stats.cache_outcome(), Some("miss"), "{mode}");
        assert_eq!(backend.gets.load(Ordering::SeqCst), 1);
        let _ = &h.backend;
    }
}

#[tokio::test]
async fn entries_with_another_key_are_never_served() {
    let backend = memory();
    let h = harness(Mock::default(), backend.clone());
    let q = query(MIDNIGHT + H, MIDNIGHT + 2 * H, &[]);
    h.ask(q.clone()).await;
    h.take_calls();
    // Overwrite the entry with one whose stored key differs (a hash collision).
    let k = first_piece_key(&q);
    let foreign = Entry {
        key: "pf1 somebody else".into(),
        extents: vec![StoredExtent {
            span: Span {
                start_ms: q.start_ms,
                end_ms: q.end_ms,
            },
            json: Bytes::from_static(
                b"{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}",
            ),
            chunks: Vec::new(),
            layout: None,
        }],
    };
    backend
        .set(
            k.hash,
            Bytes::from(foreign.encode()),
            Duration::from_secs(60),
        )
        .await
        .expect("set");
    let (answer, outcome) = h.ask(q.clone()).await;
    assert_eq!(outcome, Some("miss"));
    assert_eq!(answer, answer_json(&q, false));
}

#[tokio::test]
async fn missing_days_are_one_run_stored_as_days() {
    let h = harness(Mock::default(), memory());
    h.now.store(MIDNIGHT + 20 * 24 * H, Ordering::SeqCst);
    let d = 24 * H;
    // Five days, unaligned: one request for all of it.
    let (start, end) = (MIDNIGHT - 5 * d + 7 * 60_000, MIDNIGHT - 1);
    let q = query(start, end, &[]);
    let last = start + (end - start) / 60_000 * 60_000;
    let (first, outcome) = h.ask(q.clone()).await;
    assert_eq!(outcome, Some("miss"));
    assert_eq!(
        h.take_calls(),
        vec![(start, last)],
        "one run, not one per day"
    );
    assert_eq!(first, answer_json(&query(start, last, &[]), false));

    // Any day-aligned sub-range is now answered from the stored days alone.
    let inner = query(MIDNIGHT - 3 * d, MIDNIGHT - d - 60_000, &[]);
    let (answer, outcome) = h.ask(inner.clone()).await;
    assert_eq!(outcome, Some("hit"));
    assert!(h.take_calls().is_empty());
    assert_eq!(
        answer,
        answer_json(&inner, false),
        "the days hold exactly their points"
    );

    // A window reaching two days further back and into a day not stored: one run for the
    // two missing days before, one for the missing part after, the rest from the cache.
    let wider = query(start - 2 * d, MIDNIGHT + 2 * H, &[]);
    let (answer, outcome) = h.ask(wider.clone()).await;
    assert_eq!(outcome, Some("partial"));
    assert_eq!(
        h.take_calls(),
        vec![
            (start - 2 * d, start - 60_000),
            (last + 60_000, MIDNIGHT + 2 * H)
        ]
    );
    assert_eq!(answer, answer_json(&wider, false));
}

#[tokio::test]
async fn a_run_crossing_the_freshness_cutoff_stores_only_its_old_part() {
    let h = harness(Mock::default(), memory());
    let d = 24 * H;
    // Now is 20:00 on MIDNIGHT's day; the cut-off is 19:50.
    let (start, end) = (MIDNIGHT - 2 * d, MIDNIGHT + 20 * H);
    let q = query(start, end, &[]);
    let (first, _) = h.ask(q.clone()).await;
    assert_eq!(first, answer_json(&q, false));
    let cutoff = MIDNIGHT + 20 * H - 600_000;
    assert_eq!(
        h.take_calls(),
        vec![(start, end)],
        "the old run and the fresh tail, asked as one"
    );
    let (again, outcome) = h.ask(q.clone()).await;
    assert_eq!(again, first);
    assert_eq!(outcome, Some("partial"));
    assert_eq!(
        h.take_calls(),
        vec![(cutoff + 60_000, end)],
        "only the tail again"
    );
}

#[tokio::test]
async fn a_refresh_at_now_asks_its_new_minutes_while_reading_and_only_once() {
    let h = harness(Mock::default(), memory());
    let d = 24 * H;
    // A panel of the last two days at now = 20:00, refreshed 5 minutes later.
    let end = MIDNIGHT + 20 * H;
    let q = query(end - 2 * d, end, &[]);
    h.ask(q.clone()).await;
    h.take_calls();
    let cutoff = end - 600_000;
    h.now.store(end + 300_000, Ordering::SeqCst);
    let refreshed = query(end - 2 * d + 300_000, end + 300_000, &[]);
    let (answer, outcome) = h.ask(refreshed.clone()).await;
    assert_eq!(answer, answer_json(&refreshed, false));
    assert_eq!(outcome, Some("partial"));
    assert_eq!(
        h.take_calls(),
        vec![(cutoff + 60_000, end + 300_000)],
        "one request: what came after the last stored point, asked with the read"
    );
    // Next refresh: the prefetch starts after the point stored by the last one.
    h.now.store(end + 600_000, Ordering::SeqCst);
    let again = query(end - 2 * d + 600_000, end + 600_000, &[]);
    let (answer, _) = h.ask(again.clone()).await;
    assert_eq!(answer, answer_json(&again, false));
    assert_eq!(
        h.take_calls(),
        vec![(cutoff + 300_000 + 60_000, end + 600_000)]
    );
}

/// A memory backend that notes, at each read, how many querier requests had been made.
struct Watching {
    inner: MemoryBackend,
    calls: Arc<Mutex<Vec<(i64, i64)>>>,
    made_before_read: Mutex<Vec<usize>>,
}

impl Backend for Watching {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn keeps_uncompressed(&self) -> bool {
        true
    }
    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        let made = self.calls.lock().expect("lock").len();
        self.made_before_read.lock().expect("lock").push(made);
        self.inner.get_many(keys)
    }
    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }
}

#[tokio::test]
async fn a_refresh_sends_its_new_minutes_before_reading_the_entries() {
    let mock = Mock::default();
    let backend = Arc::new(Watching {
        inner: MemoryBackend::new(64 << 20).uncompressed(true),
        calls: mock.calls.clone(),
        made_before_read: Mutex::new(Vec::new()),
    });
    let h = harness(mock, backend.clone());
    let d = 24 * H;
    let end = MIDNIGHT + 20 * H;
    h.ask(query(end - 2 * d, end, &[])).await;
    assert_eq!(
        *backend.made_before_read.lock().expect("lock"),
        vec![0],
        "a first load reads first: nothing is known to be missing"
    );
    h.take_calls();
    h.now.store(end + 300_000, Ordering::SeqCst);
    let refreshed = query(end - 2 * d + 300_000, end + 300_000, &[]);
    let (answer, outcome) = h.ask(refreshed.clone()).await;
    assert_eq!(answer, answer_json(&refreshed, false));
    assert_eq!(outcome, Some("partial"));
    assert_eq!(
        backend.made_before_read.lock().expect("lock").last(),
        Some(&1),
        "the new minutes were asked before the entries were read (a memory backend \
         reads without waiting, which would otherwise hold the request back)"
    );
    assert_eq!(h.take_calls().len(), 1);
}

/// A memory backend that can lose everything it holds (an eviction, a flushed Redis).
struct Forgetful {
    inner: MemoryBackend,
    forget: std::sync::atomic::AtomicBool,
}

impl Backend for Forgetful {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        if self.forget.load(Ordering::SeqCst) {
            return Box::pin(async move { Ok(keys.iter().map(|_| None).collect()) });
        }
        self.inner.get_many(keys)
    }
    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }
}

#[tokio::test]
async fn a_prefetch_that_does_not_cover_what_is_missing_is_not_used() {
    let backend = Arc::new(Forgetful {
        inner: MemoryBackend::new(64 << 20),
        forget: std::sync::atomic::AtomicBool::new(false),
    });
    let h = harness(Mock::default(), backend.clone());
    let d = 24 * H;
    let end = MIDNIGHT + 20 * H;
    h.ask(query(end - 2 * d, end, &[])).await;
    h.take_calls();
    backend.forget.store(true, Ordering::SeqCst);
    h.now.store(end + 300_000, Ordering::SeqCst);
    let refreshed = query(end - 2 * d + 300_000, end + 300_000, &[]);
    let (answer, outcome) = h.ask(refreshed.clone()).await;
    assert_eq!(answer, answer_json(&refreshed, false));
    assert_eq!(outcome, Some("miss"));
    let cutoff = end - 600_000;
    assert_eq!(
        h.take_calls(),
        vec![
            (cutoff + 60_000, end + 300_000),
            (end - 2 * d + 300_000, end + 300_000)
        ],
        "the prefetch (wasted) and the whole range"
    );
}

fn query_at_step(start: i64, end: i64, step_s: u32) -> RangeQuery {
    let mut q = query(start, end, &[]);
    let pairs = [
        ("query", "sum(rate(x[5m]))".to_string()),
        ("start", format_seconds_ms(start)),
        ("end", format_seconds_ms(end)),
        ("step", step_s.to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    q = RangeQuery::from_form(pairs, q.request_headers).expect("valid");
    q
}

#[tokio::test]
async fn a_coarser_step_is_answered_from_a_finer_entry() {
    let h = harness(Mock::default(), memory());
    let (start, end) = (MIDNIGHT + H, MIDNIGHT + 5 * H);
    let fine = query_at_step(start, end, 15);
    assert_eq!(h.ask(fine).await.1, Some("miss"));
    h.take_calls();

    // 1 m holds every fourth 15 s point: nothing is asked, the answer is the querier's.
    let coarse = query_at_step(start, end, 60);
    let (answer, outcome) = h.ask(coarse.clone()).await;
    assert_eq!(outcome, Some("hit"));
    assert_eq!(answer, answer_json(&coarse, false));
    assert!(h.take_calls().is_empty());
    // Stored at 1 m as well: a plain hit next time.
    assert_eq!(h.ask(coarse).await.1, Some("hit"));

    // A wider range at 5 m: the stored part is reused, only the rest is asked.
    let wider = query_at_step(start, end + 2 * H, 300);
    let (answer, outcome) = h.ask(wider.clone()).await;
    assert_eq!(outcome, Some("partial"));
    assert_eq!(answer, answer_json(&wider, false));
    assert_eq!(h.take_calls(), vec![(end + 300_000, end + 2 * H)]);
}

#[tokio::test]
async fn finer_entries_on_another_grid_are_not_reused() {
    let h = harness(Mock::default(), memory());
    let (start, end) = (MIDNIGHT + H + 5_000, MIDNIGHT + 5 * H + 5_000);
    assert_eq!(h.ask(query_at_step(start, end, 15)).await.1, Some("miss"));
    h.take_calls();

    // Phase 0 on a 1 m grid is 0 mod 15 s, the entry's points are at 5 s mod 15 s.
    let other_phase = query_at_step(MIDNIGHT + H, MIDNIGHT + 5 * H, 60);
    let (answer, outcome) = h.ask(other_phase.clone()).await;
    assert_eq!(outcome, Some("miss"));
    assert_eq!(answer, answer_json(&other_phase, false));
    assert_eq!(h.take_calls().len(), 1);

    // 20 s is no multiple of 15 s.
    assert_eq!(h.ask(query_at_step(start, end, 20)).await.1, Some("miss"));
    assert_eq!(h.take_calls().len(), 1);

    // The same phase modulo 15 s (20 s = 5 s + 15 s) at 1 m: reused.
    let same_phase = query_at_step(start + 15_000, end - 45_000, 60);
    let (answer, outcome) = h.ask(same_phase.clone()).await;
    assert_eq!(outcome, Some("hit"));
    assert_eq!(answer, answer_json(&same_phase, false));
    assert!(h.take_calls().is_empty());
}

#[tokio::test]
async fn lower_step_reuse_can_be_turned_off() {
    let mut h = harness(Mock::default(), memory());
    let mut opts = h.layer.shared.opts.clone();
    opts.lower_step_reuse = false;
    h.layer = CacheLayer::new(opts, h.backend.clone(), Arc::new(Metrics::new()));
    h.svc = tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ValidateLayer::default())
            .layer(h.layer.clone())
            .service(h.mock.clone()),
    );
    let (start, end) = (MIDNIGHT + H, MIDNIGHT + 5 * H);
    assert_eq!(h.ask(query_at_step(start, end, 15)).await.1, Some("miss"));
    assert_eq!(h.ask(query_at_step(start, end, 60)).await.1, Some("miss"));
    assert_eq!(h.take_calls().len(), 2);
}

/// A memory backend that counts its reads.
struct CountingReads {
    inner: MemoryBackend,
    reads: AtomicUsize,
}

impl Backend for CountingReads {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(keys)
    }
    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }
}

#[tokio::test]
async fn a_refresh_at_now_does_not_read_finer_entries() {
    let backend = Arc::new(CountingReads {
        inner: MemoryBackend::new(64 << 20),
        reads: AtomicUsize::new(0),
    });
    let h = harness(Mock::default(), backend.clone());
    let now = MIDNIGHT + 20 * H;
    let start = now - 6 * H;
    // The same panel at 15 s and at 1 m, both up to now: entries at both steps.
    h.ask(query_at_step(start, now, 15)).await;
    h.ask(query_at_step(start, now, 60)).await;
    h.take_calls();
    // 30 s later the 1 m panel misses only its new minutes and fresh tail: one read of
    // its own entry, none of the 15 s one (which holds nothing newer either).
    h.now.store(now + 60_000, Ordering::SeqCst);
    let before = backend.reads.load(Ordering::SeqCst);
    let refreshed = query_at_step(start + 60_000, now + 60_000, 60);
    let (answer, outcome) = h.ask(refreshed.clone()).await;
    assert_eq!(answer, answer_json(&refreshed, false));
    assert_eq!(outcome, Some("partial"));
    assert_eq!(backend.reads.load(Ordering::SeqCst) - before, 1);

    // A zoom-out whose older part is missing does read the finer entry.
    let before = backend.reads.load(Ordering::SeqCst);
    let wider = query_at_step(start - 6 * H, now + 60_000, 300);
    let (answer, _) = h.ask(wider.clone()).await;
    assert_eq!(answer, answer_json(&wider, false));
    assert!(backend.reads.load(Ordering::SeqCst) - before > 1);
}

/// Waits until the entry of `key` is stored (writes run after the answer) and returns it.
async fn stored_value(backend: &Arc<dyn Backend>, key: u64) -> Bytes {
    for _ in 0..500 {
        if let Ok(mut got) = backend.get_many(&[key]).await
            && let Some(Some(value)) = got.pop()
        {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("entry {key} was never stored");
}

#[tokio::test]
async fn the_memory_backend_keeps_entries_uncompressed_unless_asked() {
    // 18 hours of samples: a payload well above the size lz4 starts at.
    let q = query(MIDNIGHT, MIDNIGHT + 18 * H, &[]);
    let k = first_piece_key(&q);
    for (compressed, flag) in [(false, 0u8), (true, 1u8)] {
        let backend: Arc<dyn Backend> =
            Arc::new(MemoryBackend::new(64 << 20).uncompressed(!compressed));
        let h = harness(Mock::default(), backend.clone());
        let (first, outcome) = h.ask(q.clone()).await;
        assert_eq!(outcome, Some("miss"));
        let value = stored_value(&backend, k.hash).await;
        assert_eq!(value[4], flag, "compress_memory = {compressed}");
        assert!(value.len() > super::value::COMPRESS_ABOVE);
        // Either way a repeat is answered from it, unchanged.
        h.take_calls();
        let (again, outcome) = h.ask(q.clone()).await;
        assert_eq!(outcome, Some("hit"));
        assert_eq!(again, first);
        assert_eq!(again, answer_json(&q, false));
        assert!(h.take_calls().is_empty());
    }
}

#[tokio::test]
async fn an_entry_too_large_uncompressed_is_kept_compressed() {
    let q = query(MIDNIGHT, MIDNIGHT + 18 * H, &[]);
    let k = first_piece_key(&q);
    // Its sizes both ways, from a first run without a limit.
    let backend = memory();
    let h = harness(Mock::default(), backend.clone());
    h.ask(q.clone()).await;
    let plain = stored_value(&backend, k.hash).await;
    let entry = Entry::decode_own(&plain).expect("decodes");
    let packed = entry.encode().len();
    assert!(packed < plain.len());
    // A limit between the two: stored compressed, and still answers repeats.
    let backend = memory();
    let limit = (packed + plain.len()) / 2;
    let h = harness_with(Mock::default(), backend.clone(), |o| {
        o.max_item_bytes = limit
    });
    h.ask(q.clone()).await;
    let value = stored_value(&backend, k.hash).await;
    assert_eq!(value[4], 1, "compressed");
    assert!(value.len() <= limit);
    assert_eq!(Entry::decode_shared(&value).expect("decodes"), entry);
    h.take_calls();
    let (again, outcome) = h.ask(q.clone()).await;
    assert_eq!(outcome, Some("hit"));
    assert_eq!(again, answer_json(&q, false));
}
