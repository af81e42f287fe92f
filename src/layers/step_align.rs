//! `step_align`: optionally moves `start` and `end` down to multiples of `step`.
//!
//! Off by default because it changes the answer: the client asked for timestamps
//! `start + k·step`, and aligned timestamps are different ones. Turned on, it makes every
//! dashboard refresh hit the same grid (better cache reuse), as Thanos' and Cortex's
//! `align_queries_with_step` do. Invariant: when enabled, both ends are multiples of the
//! step (in milliseconds) and never move forward in time.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::error::Error;
use crate::model::{QueryResponse, RangeQuery};

/// Adds [`StepAlignService`]; `enabled: false` makes it a no-op.
#[derive(Debug, Clone, Copy)]
pub struct StepAlignLayer {
    enabled: bool,
}

impl StepAlignLayer {
    /// Creates the layer.
    pub fn new(enabled: bool) -> StepAlignLayer {
        StepAlignLayer { enabled }
    }
}

impl<S> Layer<S> for StepAlignLayer {
    type Service = StepAlignService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepAlignService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct StepAlignService<S> {
    inner: S,
    enabled: bool,
}

/// `t` moved down to a multiple of `step_ms` (floor, also for negative times).
pub fn align_down(t: i64, step_ms: i64) -> i64 {
    if step_ms <= 0 {
        return t;
    }
    t - t.rem_euclid(step_ms)
}

impl<S> Service<RangeQuery> for StepAlignService<S>
where
    S: Service<RangeQuery, Response = QueryResponse, Error = Error>,
{
    type Response = QueryResponse;
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut query: RangeQuery) -> Self::Future {
        if self.enabled {
            let step = query.step_ms();
            query.start_ms = align_down(query.start_ms, step);
            query.end_ms = align_down(query.end_ms, step);
            query.query_end_ms = query.end_ms;
        }
        self.inner.call(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxFuture;
    use http::HeaderMap;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<(i64, i64)>>>);

    impl Service<RangeQuery> for Record {
        type Response = QueryResponse;
        type Error = Error;
        type Future = BoxFuture<QueryResponse>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, q: RangeQuery) -> Self::Future {
            self.0.lock().expect("lock").push((q.start_ms, q.end_ms));
            Box::pin(async { Err(Error::Canceled) })
        }
    }

    fn query(start: &str, end: &str, step: &str) -> RangeQuery {
        let pairs = [
            ("query", "up"),
            ("start", start),
            ("end", end),
            ("step", step),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid")
    }

    #[test]
    fn align_down_table() {
        assert_eq!(align_down(1_700_000_012_345, 60_000), 1_699_999_980_000);
        assert_eq!(align_down(1_700_000_040_000, 60_000), 1_700_000_040_000);
        assert_eq!(align_down(-1, 1_000), -1_000);
        assert_eq!(align_down(5, 0), 5);
    }

    #[tokio::test]
    async fn aligns_only_when_enabled() {
        for (enabled, want) in [
            (true, (1_699_999_980_000, 1_700_003_580_000)),
            (false, (1_700_000_012_345, 1_700_003_600_001)),
        ] {
            let rec = Record::default();
            let svc = StepAlignLayer::new(enabled).layer(rec.clone());
            let _ = svc
                .oneshot(query("1700000012.345", "1700003600.001", "60"))
                .await;
            assert_eq!(rec.0.lock().expect("lock")[0], want, "enabled={enabled}");
        }
    }
}
