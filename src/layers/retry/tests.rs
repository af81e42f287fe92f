use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::*;

/// A scripted querier: answers each call with the next scripted result (success once the
/// script is used up) and records when it was called and which endpoints the request's
/// earlier attempts had tried.
#[derive(Clone, Default)]
struct Mock {
    script: Arc<Mutex<VecDeque<Result<(), Error>>>>,
    calls: Arc<Mutex<Vec<(Instant, u64)>>>,
}

impl Mock {
    fn failing(errors: Vec<Error>) -> Mock {
        Mock {
            script: Arc::new(Mutex::new(errors.into_iter().map(Err).collect())),
            ..Mock::default()
        }
    }

    fn calls(&self) -> Vec<(Instant, u64)> {
        self.calls.lock().expect("lock").clone()
    }

    /// Waits between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        self.calls()
            .windows(2)
            .map(|w| w[1].0.duration_since(w[0].0))
            .collect()
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
        let route = q.route.clone().expect("the retry layer sets a route");
        self.calls
            .lock()
            .expect("lock")
            .push((Instant::now(), route.tried()));
        // Pretend the downstream picked the endpoint after the ones tried.
        route.mark(route.tried().count_ones() as usize);
        let next = self.script.lock().expect("lock").pop_front();
        Box::pin(async move {
            match next {
                Some(Err(e)) => Err(e),
                _ => QueryResponse::from_slice(
                    br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                ),
            }
        })
    }
}

fn opts() -> RetryOptions {
    RetryOptions {
        max_retries: 3,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(250),
        max_retry_after: Duration::from_secs(10),
        budget_percent: 20.0,
        budget_min_per_second: 100,
        budget_window: Duration::from_secs(10),
    }
}

fn policy(opts: RetryOptions, jitter: fn() -> f64) -> (RetryPolicy, Arc<Metrics>) {
    policy_for(2, opts, jitter)
}

/// A policy over `endpoints` endpoints named `http://a:9090`, `http://b:9090`, ...
fn policy_for(
    endpoints: u8,
    opts: RetryOptions,
    jitter: fn() -> f64,
) -> (RetryPolicy, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let names = (0..endpoints)
        .map(|i| format!("http://{}:9090", (b'a' + i) as char))
        .collect();
    let p = RetryPolicy::with_jitter(opts, metrics.clone(), names, jitter);
    (p, metrics)
}

fn query() -> RangeQuery {
    let pairs = [
        ("query", "up"),
        ("start", "0"),
        ("end", "60"),
        ("step", "15"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid query")
}

fn status(code: u16, body: &'static str, retry_after: Option<&'static str>) -> Error {
    let mut headers = HeaderMap::new();
    if let Some(v) = retry_after {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static(v));
    }
    Error::Downstream {
        status: StatusCode::from_u16(code).expect("status"),
        headers: Box::new(headers),
        body: Bytes::from_static(body.as_bytes()),
    }
}

fn unavailable() -> Error {
    Error::Unavailable {
        endpoint: "http://a:9090".into(),
        source: "connection refused".into(),
    }
}

async fn call(policy: &RetryPolicy, mock: &Mock, q: RangeQuery) -> Result<QueryResponse, Error> {
    RetryLayer::new(policy.clone())
        .layer(mock.clone())
        .oneshot(q)
        .await
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_on_untried_endpoints() {
    let (p, metrics) = policy(opts(), || 1.0);
    let mock = Mock::failing(vec![unavailable(), status(500, "oops", None)]);
    let q = query();
    let stats = q.stats.clone();
    call(&p, &mock, q).await.expect("third attempt succeeds");
    let calls = mock.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls.iter().map(|c| c.1).collect::<Vec<_>>(),
        [0, 0b1, 0b11],
        "each attempt knows the endpoints tried before"
    );
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    let text = metrics.encode();
    for want in [
        r#"promql_frontend_downstream_retries_total{downstream="http://a:9090",reason="unavailable"} 1"#,
        r#"promql_frontend_downstream_retries_total{downstream="http://b:9090",reason="status_5xx"} 1"#,
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_the_last_error() {
    let (p, _) = policy(opts(), || 1.0);
    let mock = Mock::failing((0..10).map(|_| status(502, "bad gateway", None)).collect());
    let err = call(&p, &mock, query()).await.expect_err("always failing");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        mock.calls().len(),
        4,
        "one attempt and max_retries = 3 retries"
    );

    let (off, _) = policy(
        RetryOptions {
            max_retries: 0,
            ..opts()
        },
        || 1.0,
    );
    let mock = Mock::failing(vec![unavailable()]);
    call(&off, &mock, query()).await.expect_err("no retries");
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap() {
    // Jitter pinned at its top: the waits are the bounds 100, 200, 250 (capped) ms.
    let (p, _) = policy(opts(), || 1.0);
    let mock = Mock::failing((0..3).map(|_| unavailable()).collect());
    call(&p, &mock, query())
        .await
        .expect("fourth attempt succeeds");
    assert_eq!(
        mock.gaps(),
        [100, 200, 250].map(Duration::from_millis).to_vec()
    );
    // Jitter at its bottom: no wait at all.
    let (p, _) = policy(opts(), || 0.0);
    let mock = Mock::failing((0..3).map(|_| unavailable()).collect());
    call(&p, &mock, query())
        .await
        .expect("fourth attempt succeeds");
    assert_eq!(mock.gaps(), vec![Duration::ZERO; 3]);
}

#[tokio::test(start_paused = true)]
async fn random_jitter_stays_within_the_bounds() {
    let (p, _) = policy(opts(), random_unit);
    let mut waits = Vec::new();
    for _ in 0..50 {
        let mock = Mock::failing((0..3).map(|_| unavailable()).collect());
        call(&p, &mock, query())
            .await
            .expect("fourth attempt succeeds");
        let gaps = mock.gaps();
        for (gap, bound) in gaps.iter().zip([100, 200, 250]) {
            assert!(*gap <= Duration::from_millis(bound), "{gaps:?}");
        }
        waits.extend(gaps);
    }
    let distinct: std::collections::HashSet<_> = waits.iter().collect();
    assert!(distinct.len() > 10, "waits are random: {waits:?}");
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_engine_failures_are_not_retried() {
    let (p, _) = policy(opts(), || 1.0);
    let engine_timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    for err in [
        status(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            None,
        ),
        status(
            422,
            r#"{"status":"error","errorType":"execution","error":"x"}"#,
            None,
        ),
        status(404, "not found", None),
        status(503, engine_timeout, None),
        Error::Canceled,
        Error::BadData("x".into()),
    ] {
        let want = err.status();
        let mock = Mock::failing(vec![err]);
        let got = call(&p, &mock, query()).await.expect_err("passed through");
        assert_eq!(got.status(), want);
        assert_eq!(mock.calls().len(), 1, "{got:?} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_for_unless_too_long() {
    let (p, _) = policy_for(1, opts(), || 0.0);
    let mock = Mock::failing(vec![
        status(503, "busy", Some("3")),
        status(429, "slow", Some("1")),
    ]);
    call(&p, &mock, query())
        .await
        .expect("third attempt succeeds");
    assert_eq!(mock.gaps(), [3, 1].map(Duration::from_secs).to_vec());

    let mock = Mock::failing(vec![status(429, "come back tomorrow", Some("86400"))]);
    let err = call(&p, &mock, query()).await.expect_err("too long a wait");
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    match err {
        Error::Downstream { headers, .. } => assert_eq!(headers["retry-after"], "86400"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn another_endpoints_retry_after_does_not_delay_an_untried_one() {
    let (p, _) = policy_for(2, opts(), || 0.0);
    // The first endpoint asks for a day; the second has not been tried: go there now.
    let mock = Mock::failing(vec![status(503, "busy", Some("86400"))]);
    call(&p, &mock, query())
        .await
        .expect("second endpoint answers");
    assert_eq!(mock.gaps(), [Duration::ZERO]);
    // Both tried: the second's Retry-After applies.
    let mock = Mock::failing(vec![
        status(503, "busy", Some("86400")),
        status(503, "busy", Some("2")),
    ]);
    call(&p, &mock, query())
        .await
        .expect("third attempt answers");
    assert_eq!(mock.gaps(), [0, 2].map(Duration::from_secs).to_vec());
}

#[tokio::test(start_paused = true)]
async fn no_wait_runs_past_the_deadline() {
    let (p, _) = policy(opts(), || 1.0);
    let mut q = query();
    q.deadline = Some(Instant::now() + Duration::from_millis(250));
    let mock = Mock::failing((0..10).map(|_| unavailable()).collect());
    let started = Instant::now();
    let err = call(&p, &mock, q).await.expect_err("deadline");
    // Waits of 100 and 200 ms: the second would end at 300 ms, after the deadline.
    assert_eq!(mock.calls().len(), 2);
    assert!(started.elapsed() < Duration::from_millis(250));
    assert!(matches!(err, Error::Unavailable { .. }));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries() {
    let (p, metrics) = policy(
        RetryOptions {
            budget_percent: 50.0,
            budget_min_per_second: 0,
            ..opts()
        },
        || 0.0,
    );
    // Every request fails once; half of them may be retried. Start with credit from
    // successful requests.
    let ok = Mock::default();
    for _ in 0..10 {
        call(&p, &ok, query()).await.expect("success");
    }
    let mut attempts = 0;
    let mut failures = 0;
    for _ in 0..20 {
        let mock = Mock::failing(vec![unavailable()]);
        if call(&p, &mock, query()).await.is_err() {
            failures += 1;
        }
        attempts += mock.calls().len();
    }
    let retries = attempts - 20;
    assert!(failures > 0, "the budget ran out");
    assert!(
        retries <= (30 * 50 / 100) + 1,
        "retries {retries} within half of 30 requests"
    );
    assert!(retries > 0, "some retries allowed");
    let text = metrics.encode();
    let line = format!("promql_frontend_retry_budget_exhausted_total {failures}");
    assert!(text.contains(&line), "{line} missing in\n{text}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_makes_no_more_attempts() {
    let (p, _) = policy(
        RetryOptions {
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(5),
            ..opts()
        },
        || 1.0,
    );
    let mock = Mock::failing((0..10).map(|_| unavailable()).collect());
    let running = tokio::spawn({
        let (p, mock) = (p.clone(), mock.clone());
        async move { call(&p, &mock, query()).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.abort();
    let _ = running.await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(mock.calls().len(), 1);
}

#[test]
fn backoff_bound_saturates() {
    let base = Duration::from_millis(100);
    let cap = Duration::from_secs(2);
    assert_eq!(backoff_bound(base, cap, 0), base);
    assert_eq!(backoff_bound(base, cap, 4), Duration::from_millis(1600));
    assert_eq!(backoff_bound(base, cap, 5), cap);
    assert_eq!(backoff_bound(base, cap, 200), cap);
}
