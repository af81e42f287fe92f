use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;

use super::*;
use crate::layers::validate::ValidateLayer;
use crate::model::time::format_seconds_ms;

const D: i64 = 86_400_000;
const MIDNIGHT: i64 = 1_699_920_000_000;

/// A scripted querier: answers each piece with one series holding a sample at every grid
/// point, records what it was asked, and tracks concurrency and cancellation.
#[derive(Clone, Default)]
struct Mock {
    calls: Arc<Mutex<Vec<RangeQuery>>>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    fail_from_ms: Option<i64>,
    delay: Duration,
}

struct Running(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.fetch_add(1, Ordering::SeqCst);
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
        self.calls.lock().expect("lock").push(q.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let guard = Running(self.running.clone(), self.dropped.clone());
        let (delay, fail_from) = (self.delay, self.fail_from_ms);
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(delay).await;
            if fail_from.is_some_and(|t| q.start_ms >= t) {
                return Err(Error::Downstream {
                    status: http::StatusCode::UNPROCESSABLE_ENTITY,
                    headers: Box::default(),
                    body: bytes::Bytes::from_static(
                        b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"boom\"}",
                    ),
                });
            }
            let mut t = q.start_ms;
            let mut samples = Vec::new();
            while t <= q.end_ms {
                samples.push(format!("[{},\"1\"]", format_seconds_ms(t)));
                t += q.step_ms();
            }
            let body = format!(
                "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{{\"metric\":{{\"__name__\":\"x\"}},\"values\":[{}]}}]}}}}",
                samples.join(",")
            );
            QueryResponse::from_slice(body.as_bytes())
        })
    }
}

fn query(expr: &str, start_ms: i64, end_ms: i64, step: &str) -> RangeQuery {
    let pairs = [
        ("query", expr.to_string()),
        ("start", format_seconds_ms(start_ms)),
        ("end", format_seconds_ms(end_ms)),
        ("step", step.to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid query")
}

fn opts(parallelism: usize) -> SplitOptions {
    SplitOptions {
        interval: Duration::from_secs(86_400),
        max_query_parallelism: parallelism,
        max_inflight: 64,
    }
}

fn stack(
    mock: Mock,
    parallelism: usize,
) -> tower::util::BoxCloneSyncService<RangeQuery, QueryResponse, Error> {
    tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ValidateLayer::default())
            .layer(SplitLayer::new(opts(parallelism)))
            .service(mock),
    )
}

#[tokio::test]
async fn splits_by_day_and_merges_every_point_once() {
    let mock = Mock::default();
    let q = query(
        "sum(rate(x[5m]))",
        MIDNIGHT - 3_600_000 + 500,
        MIDNIGHT + 2 * D + 600_000,
        "60",
    );
    let answer = stack(mock.clone(), 14).oneshot(q).await.expect("answers");
    let calls = mock.calls.lock().expect("lock");
    let ranges: Vec<(i64, i64)> = calls
        .iter()
        .map(|c| (c.start_ms, c.end_ms))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        ranges,
        vec![
            (MIDNIGHT - 3_600_000 + 500, MIDNIGHT - 59_500),
            (MIDNIGHT + 500, MIDNIGHT + D - 59_500),
            (MIDNIGHT + D + 500, MIDNIGHT + 2 * D - 59_500),
            (MIDNIGHT + 2 * D + 500, MIDNIGHT + 2 * D + 540_500),
        ]
    );
    assert!(
        calls.iter().all(|c| c.query == "sum(rate(x[5m]))"),
        "no rewrite needed"
    );
    let data = answer.data.expect("matrix");
    let values = data.result[0]
        .values
        .as_ref()
        .expect("values")
        .as_str()
        .to_owned();
    let points: Vec<serde_json::Value> = serde_json::from_str(&values).expect("array");
    assert_eq!(
        points.len(),
        60 + 2 * 1440 + 10,
        "every grid point exactly once"
    );
    let ts: Vec<f64> = points.iter().map(|p| p[0].as_f64().expect("ts")).collect();
    assert!(
        ts.windows(2).all(|w| (w[1] - w[0] - 60.0).abs() < 1e-6),
        "ordered, no gap, no duplicate"
    );
}

#[tokio::test]
async fn start_and_end_modifiers_are_rewritten_before_splitting() {
    let mock = Mock::default();
    let (start, end) = (MIDNIGHT - 3_600_000, MIDNIGHT + 3_600_000);
    stack(mock.clone(), 14)
        .oneshot(query("up @ start() - up @ end()", start, end, "60"))
        .await
        .expect("answers");
    let calls = mock.calls.lock().expect("lock");
    assert_eq!(calls.len(), 2);
    for c in calls.iter() {
        assert_eq!(c.query, "up @ 1699916400.000 - up @ 1699923600.000");
    }
}

#[tokio::test]
async fn unsplittable_queries_pass_through_whole() {
    let cases = [
        query("up", MIDNIGHT + 1_000, MIDNIGHT + 3_600_000, "60"),
        query("up", MIDNIGHT - D, MIDNIGHT + D, "1d"),
        query("sum(", MIDNIGHT - D, MIDNIGHT + D, "60"),
        {
            let mut q = query("up", MIDNIGHT - D, MIDNIGHT + D, "60");
            q.params.push(("stats".into(), "all".into()));
            q
        },
    ];
    for q in cases {
        let mock = Mock::default();
        assert!(!q.query.contains("start()"));
        let (start, end, expr) = (q.start_ms, q.end_ms, q.query.clone());
        let _ = stack(mock.clone(), 14).oneshot(q).await;
        let calls = mock.calls.lock().expect("lock");
        assert_eq!(calls.len(), 1, "{expr}");
        assert_eq!((calls[0].start_ms, calls[0].end_ms), (start, end), "{expr}");
        assert_eq!(calls[0].query, expr);
    }
}

#[tokio::test]
async fn start_and_end_are_rewritten_even_when_not_split() {
    let mock = Mock::default();
    let (start, end) = (MIDNIGHT + 3_600_000, MIDNIGHT + 7_200_000);
    stack(mock.clone(), 14)
        .oneshot(query("rate(x[5m] @ end())", start, end, "60"))
        .await
        .expect("answers");
    let calls = mock.calls.lock().expect("lock");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].query, "rate(x[5m] @ 1699927200.000)");
    let analysis = crate::promql::analysis_of(&calls[0]).expect("analysis");
    assert!(
        !analysis.uses_start_end,
        "the analysis describes the rewritten text"
    );
    assert_eq!(analysis.latest_at_ms, Some(end));
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_bounded_per_query() {
    let mock = Mock {
        delay: Duration::from_secs(1),
        ..Mock::default()
    };
    stack(mock.clone(), 3)
        .oneshot(query("up", MIDNIGHT, MIDNIGHT + 10 * D, "3600"))
        .await
        .expect("answers");
    assert_eq!(mock.calls.lock().expect("lock").len(), 11);
    assert_eq!(mock.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_bounds_pieces_over_all_queries() {
    let mock = Mock {
        delay: Duration::from_secs(1),
        ..Mock::default()
    };
    let layer = SplitLayer::new(SplitOptions {
        max_inflight: 4,
        ..opts(14)
    });
    let svc = tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(ValidateLayer::default())
            .layer(layer)
            .service(mock.clone()),
    );
    let a = tokio::spawn(
        svc.clone()
            .oneshot(query("up", MIDNIGHT, MIDNIGHT + 5 * D, "3600")),
    );
    let b = tokio::spawn(svc.oneshot(query("up", MIDNIGHT, MIDNIGHT + 5 * D, "3600")));
    a.await.expect("task").expect("answers");
    b.await.expect("task").expect("answers");
    assert_eq!(mock.calls.lock().expect("lock").len(), 12);
    assert_eq!(mock.max_running.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_failing_piece_fails_the_query_with_its_error() {
    let mock = Mock {
        delay: Duration::from_secs(1),
        fail_from_ms: Some(MIDNIGHT + 2 * D),
        ..Mock::default()
    };
    let err = stack(mock.clone(), 14)
        .oneshot(query("up", MIDNIGHT, MIDNIGHT + 5 * D, "3600"))
        .await
        .expect_err("a piece fails");
    assert_eq!(err.status().as_u16(), 422);
    assert_eq!(err.error_type(), "execution");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_request_cancels_outstanding_pieces() {
    let mock = Mock {
        delay: Duration::from_secs(3600),
        ..Mock::default()
    };
    let fut = stack(mock.clone(), 2).oneshot(query("up", MIDNIGHT, MIDNIGHT + 5 * D, "3600"));
    let handle = tokio::spawn(fut);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mock.running.load(Ordering::SeqCst), 2, "two pieces started");
    handle.abort();
    let _ = handle.await;
    // Let the aborted tasks' destructors run.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        mock.running.load(Ordering::SeqCst),
        0,
        "every started piece was cancelled"
    );
    assert_eq!(
        mock.calls.lock().expect("lock").len(),
        2,
        "queued pieces never started"
    );
}

#[tokio::test]
async fn start_end_that_cannot_be_printed_exactly_is_not_split() {
    // A 1.5 ms range prints as `1ms`: the rewrite to absolute times cannot be written
    // exactly, so `@ start()` stays, and a piece must not reinterpret it as its own start.
    let mock = Mock::default();
    let expr = "rate(x[0.0015] @ start())";
    stack(mock.clone(), 14)
        .oneshot(query(
            expr,
            MIDNIGHT - 3_600_000,
            MIDNIGHT + 3_600_000,
            "60",
        ))
        .await
        .expect("answers");
    let calls = mock.calls.lock().expect("lock");
    assert_eq!(calls.len(), 1, "one whole query, not one per day");
    assert_eq!(calls[0].query, expr, "the text is forwarded as sent");
}
