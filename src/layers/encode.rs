//! `encode`: turns the stack's typed answer into the bytes the client receives.
//!
//! The JSON is written once, here, and travels up as an [`EncodedAnswer`], so the layers
//! above it (the response cache) can keep and serve exactly the bytes a client got, and
//! the edge only chooses the content encoding. Label sets and value strings are written
//! back byte for byte as the querier sent them (see `model::response`).

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::BoxFuture;
use crate::error::Error;
use crate::model::{EncodedAnswer, QueryResponse, RangeQuery};

/// Adds [`EncodeService`] to a stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeLayer;

impl<S> Layer<S> for EncodeLayer {
    type Service = EncodeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EncodeService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct EncodeService<S> {
    inner: S,
}

impl<S> Service<RangeQuery> for EncodeService<S>
where
    S: Service<RangeQuery, Response = QueryResponse, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Arc<EncodedAnswer>;
    type Error = Error;
    type Future = BoxFuture<Arc<EncodedAnswer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, query: RangeQuery) -> Self::Future {
        let fut = self.inner.call(query);
        Box::pin(async move { Ok(Arc::new(EncodedAnswer::of(&fut.await?))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn encodes_once_and_marks_what_may_be_kept() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"1"],[2,"2"]]}]}}"#;
        let inner = tower::service_fn(move |_q: RangeQuery| async move {
            QueryResponse::from_slice(body.as_bytes())
        });
        let q = RangeQuery::from_form(
            vec![
                ("query".into(), "x".to_owned()),
                ("start".into(), "1".to_owned()),
                ("end".into(), "2".to_owned()),
                ("step".into(), "1".to_owned()),
            ],
            http::HeaderMap::new(),
        )
        .expect("query");
        let answer = EncodeLayer.layer(inner).oneshot(q).await.expect("answer");
        assert_eq!(answer.counts(), (1, 2));
        assert!(answer.storable);
        let again = QueryResponse::from_slice(&answer.json).expect("valid JSON answer");
        assert_eq!(again.counts(), (1, 2));
    }
}
