use std::sync::Mutex;

use http::HeaderMap;

use super::*;
use crate::layers::validate::ValidateLayer;
use crate::model::time::format_seconds_ms;

const D: i64 = 86_400_000;
const MIDNIGHT: i64 = 1_699_920_000_000;

/// A scripted querier: answers with one series holding a sample (its timestamp as the
/// value) at every grid point asked, after `per_point` per point, and records each
/// range it was asked.
#[derive(Clone)]
struct Mock {
    asked: Arc<Mutex<Vec<(i64, i64)>>>,
    per_point: Duration,
    refuse_longer_than_ms: Option<i64>,
    /// Requests being answered now, and the most at any time.
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Mock {
    fn new(per_point: Duration) -> Mock {
        Mock {
            asked: Arc::default(),
            per_point,
            refuse_longer_than_ms: None,
            in_flight: Arc::default(),
        }
    }

    fn peak_in_flight(&self) -> usize {
        self.in_flight.lock().expect("lock").1
    }

    fn asked(&self) -> Vec<(i64, i64)> {
        self.asked.lock().expect("lock").clone()
    }

    fn forget(&self) {
        self.asked.lock().expect("lock").clear();
    }
}

impl Service<RangeQuery> for Mock {
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, q: RangeQuery) -> Self::Future {
        self.asked
            .lock()
            .expect("lock")
            .push((q.start_ms, q.end_ms));
        let (per_point, limit) = (self.per_point, self.refuse_longer_than_ms);
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            {
                let mut n = in_flight.lock().expect("lock");
                n.0 += 1;
                n.1 = n.1.max(n.0);
            }
            let answer = Self::answer(q, per_point, limit).await;
            in_flight.lock().expect("lock").0 -= 1;
            answer
        })
    }
}

impl Mock {
    async fn answer(
        q: RangeQuery,
        per_point: Duration,
        limit: Option<i64>,
    ) -> Result<QueryResponse, Error> {
        {
            if limit.is_some_and(|l| q.end_ms - q.start_ms > l) {
                return Err(Error::Downstream {
                    status: http::StatusCode::UNPROCESSABLE_ENTITY,
                    headers: Box::default(),
                    body: bytes::Bytes::from_static(
                        b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"query processing would load too many samples into memory in query execution\"}",
                    ),
                });
            }
            let mut t = q.start_ms;
            let mut samples = Vec::new();
            while t <= q.end_ms {
                samples.push(format!("[{},\"{t}\"]", format_seconds_ms(t)));
                t += q.step_ms();
            }
            tokio::time::sleep(per_point * samples.len() as u32).await;
            let body = format!(
                "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{{\"metric\":{{\"__name__\":\"x\"}},\"values\":[{}]}}]}}}}",
                samples.join(",")
            );
            QueryResponse::from_slice(body.as_bytes())
        }
    }
}

fn query(expr: &str, start_ms: i64, end_ms: i64, step_s: i64) -> RangeQuery {
    let pairs = [
        ("query", expr.to_string()),
        ("start", format_seconds_ms(start_ms)),
        ("end", format_seconds_ms(end_ms)),
        ("step", step_s.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid query")
}

fn options() -> PlanOptions {
    PlanOptions {
        interval: Duration::from_millis(D as u64),
        max_query_parallelism: 14,
        max_inflight: 64,
        adaptive_concurrency: true,
        part_duration: Duration::from_millis(200),
    }
}

/// validate (for the analysis) over plan over the mock.
fn stack(mock: &Mock) -> tower::util::BoxCloneSyncService<RangeQuery, QueryResponse, Error> {
    stack_with(mock, options())
}

fn stack_with(
    mock: &Mock,
    opts: PlanOptions,
) -> tower::util::BoxCloneSyncService<RangeQuery, QueryResponse, Error> {
    tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ValidateLayer::new(Default::default()))
            .layer(PlanLayer::new(opts, Arc::new(Metrics::new())))
            .service(mock.clone()),
    )
}

/// Every grid point of `[start, end]` asked exactly once, in order.
fn assert_covers_once(asked: &[(i64, i64)], start: i64, end: i64, step_ms: i64) {
    let mut sorted = asked.to_vec();
    sorted.sort();
    let mut next = start;
    for (s, e) in &sorted {
        assert_eq!(*s, next, "contiguous and not overlapping: {sorted:?}");
        assert_eq!((e - s) % step_ms, 0);
        next = e + step_ms;
    }
    assert_eq!(next - step_ms, end, "up to the last point: {sorted:?}");
}

/// The timestamps of the one series of an answer, in ms.
fn timestamps(resp: &QueryResponse) -> Vec<i64> {
    let v: serde_json::Value = serde_json::from_slice(&resp.encode()).expect("json");
    v["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|s| (s[0].as_f64().expect("ts") * 1000.0).round() as i64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_cheap_query_costs_one_request_once_its_shape_is_known() {
    let mock = Mock::new(Duration::from_micros(1));
    let svc = stack(&mock);
    let (start, end) = (MIDNIGHT - 30 * D + 1234, MIDNIGHT - 1);
    let q = || query("sum(rate(x[5m]))", start, end, 3600);
    let first = svc.clone().oneshot(q()).await.expect("answer");
    let asked = mock.asked();
    assert_eq!(
        asked.len(),
        2,
        "unseen shape: two halves at once: {asked:?}"
    );
    assert_covers_once(
        &asked,
        start,
        start + (end - start) / 3_600_000 * 3_600_000,
        3_600_000,
    );
    mock.forget();
    let second = svc.oneshot(q()).await.expect("answer");
    assert_eq!(mock.asked().len(), 1, "a known cheap shape is one request");
    assert_eq!(timestamps(&first), timestamps(&second));
}

#[tokio::test(start_paused = true)]
async fn a_heavy_query_is_cut_into_parallel_parts() {
    // 30 days at 5m = 8,641 points at 0.5 ms: about 4.3 s of querier time.
    let mock = Mock::new(Duration::from_micros(500));
    let svc = stack(&mock);
    let (start, end) = (MIDNIGHT - 30 * D, MIDNIGHT);
    let q = || {
        query(
            "histogram_quantile(0.9, sum by (le) (rate(x[5m])))",
            start,
            end,
            300,
        )
    };
    let first = svc.clone().oneshot(q()).await.expect("answer");
    let asked = mock.asked();
    assert_eq!(asked.len(), 2, "unseen: two halves: {asked:?}");
    assert_covers_once(&asked, start, end, 300_000);
    let expected: Vec<i64> = (0..=30 * 288).map(|k| start + k * 300_000).collect();
    assert_eq!(timestamps(&first), expected, "every point once, in order");
    mock.forget();
    svc.oneshot(q()).await.expect("answer");
    let asked = mock.asked();
    // Known to be expensive: four parts, the free places under the starting limit.
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert_covers_once(&asked, start, end, 300_000);
}

#[tokio::test(start_paused = true)]
async fn long_lookbacks_and_expressions_without_series_stay_whole() {
    let mock = Mock::new(Duration::from_micros(100));
    let svc = stack(&mock);
    let (start, end) = (MIDNIGHT - 7 * D, MIDNIGHT);
    // A [1d] range over 7 days: a part would have to be 8 days long.
    svc.clone()
        .oneshot(query("avg_over_time(x[1d])", start, end, 60))
        .await
        .expect("answer");
    assert_eq!(mock.asked(), vec![(start, end)]);
    mock.forget();
    svc.clone()
        .oneshot(query("time()", MIDNIGHT - 30 * D, end, 300))
        .await
        .expect("answer");
    assert_eq!(mock.asked(), vec![(MIDNIGHT - 30 * D, end)]);
    mock.forget();
    // Not understood by the parser: the querier's business, whole.
    svc.oneshot(query("rate(x[5m] anchored)", start, end, 60))
        .await
        .expect("answer");
    assert_eq!(mock.asked(), vec![(start, end)]);
}

#[tokio::test(start_paused = true)]
async fn too_many_samples_for_one_request_falls_back_to_interval_pieces() {
    let mut mock = Mock::new(Duration::from_micros(1));
    mock.refuse_longer_than_ms = Some(D);
    let svc = stack(&mock);
    let (start, end) = (MIDNIGHT - 3 * D, MIDNIGHT + 3_600_000);
    let q = || query("time()", start, end, 60);
    let answer = svc.oneshot(q()).await.expect("answer from pieces");
    let asked = mock.asked();
    assert_eq!(asked[0], (start, end), "asked whole first");
    assert_covers_once(&asked[1..], start, end, 60_000);
    assert_eq!(asked.len(), 1 + 4, "then one request per day: {asked:?}");
    assert_eq!(timestamps(&answer).len(), (3 * 1440 + 60 + 1) as usize);
}

#[tokio::test(start_paused = true)]
async fn at_start_and_end_are_pinned_before_cutting() {
    let mock = Mock::new(Duration::from_micros(1));
    let svc = stack(&mock);
    let (start, end) = (MIDNIGHT - 3 * D, MIDNIGHT);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let recording = tower::service_fn(move |q: RangeQuery| {
        seen2.lock().expect("lock").push(q.query.clone());
        let mut m = mock.clone();
        m.call(q)
    });
    let svc2 = tower::ServiceBuilder::new()
        .layer(ValidateLayer::new(Default::default()))
        .layer(PlanLayer::new(options(), Arc::new(Metrics::new())))
        .service(recording);
    drop(svc);
    svc2.oneshot(query("rate(x[5m] @ end())", start, end, 60))
        .await
        .expect("answer");
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() >= 2, "cut: {seen:?}");
    for text in &seen {
        assert!(!text.contains("end()"), "pinned: {text}");
        assert!(text.contains("@ 1699920000.000"), "the query's end: {text}");
    }
}

/// The cache asks for several runs of one query at once; together they never have more
/// than `max_query_parallelism` requests at the querier (what one query may make the
/// querier hold), while another query has places of its own.
#[tokio::test(start_paused = true)]
async fn one_querys_runs_share_its_parallelism() {
    let mut mock = Mock::new(Duration::from_millis(1));
    // Each run is refused whole and fetched again as ten day pieces.
    mock.refuse_longer_than_ms = Some(D);
    let svc = stack_with(
        &mock,
        PlanOptions {
            max_query_parallelism: 3,
            // The global limit fixed at 64, so only the per-query places bind.
            adaptive_concurrency: false,
            ..options()
        },
    );
    let first = query(
        "time()",
        MIDNIGHT - 20 * D,
        MIDNIGHT - 10 * D - 300_000,
        300,
    );
    let mut second = first.clone();
    second.start_ms = MIDNIGHT - 10 * D;
    second.end_ms = MIDNIGHT - 300_000;
    let (a, b) = tokio::join!(svc.clone().oneshot(first), svc.clone().oneshot(second));
    a.expect("first run");
    b.expect("second run");
    assert_eq!(mock.asked().len(), 2 + 20, "each run whole, then by day");
    assert_eq!(mock.peak_in_flight(), 3, "the runs shared three places");
    // Two different queries (their own stats) are not held to one query's places.
    mock.in_flight.lock().expect("lock").1 = 0;
    let one = query(
        "time()",
        MIDNIGHT - 20 * D,
        MIDNIGHT - 10 * D - 300_000,
        300,
    );
    let other = query("time()", MIDNIGHT - 10 * D, MIDNIGHT - 300_000, 300);
    let (a, b) = tokio::join!(svc.clone().oneshot(one), svc.oneshot(other));
    a.expect("one query");
    b.expect("another query");
    assert_eq!(mock.peak_in_flight(), 6, "three places each");
}
