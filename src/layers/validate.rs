//! `validate`: parses the PromQL expression once and attaches the result to the query.
//!
//! Parameter checks (times, step, point limit) already happened while decoding the
//! request; this layer owns the expression. A query the parser rejects still goes to the
//! querier, unsplit, so the querier's own message (or its acceptance of syntax the parser
//! does not know) reaches the client. If the querier cannot be reached for such a query,
//! the client gets `400 bad_data` with the parser's message instead of a 503: the query
//! is almost certainly the problem.
//!
//! Parse errors always name the parameter: current Prometheus answers
//! `invalid parameter "query": 1:5: parse error: ...`, older releases (2.42, Debian 12)
//! only `1:5: parse error: ...`. The layer adds the prefix to a querier's 400 `bad_data`
//! parse error that lacks it, so every querier version gives clients the same message
//! shape; status, `errorType` and the querier's own text are kept.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::BoxFuture;
use crate::error::Error;
use crate::model::{QueryResponse, RangeQuery};
use crate::promql::Analysis;

/// Adds [`ValidateService`] to a stack. It has no options yet.
#[derive(Debug, Clone, Default)]
pub struct ValidateLayer;

impl<S> Layer<S> for ValidateLayer {
    type Service = ValidateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidateService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ValidateService<S> {
    inner: S,
}

impl<S> Service<RangeQuery> for ValidateService<S>
where
    S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut query: RangeQuery) -> Self::Future {
        let analysis = Arc::new(Analysis::of(&query.query));
        query.analysis = Some(analysis.clone());
        let fut = self.inner.call(query);
        Box::pin(async move {
            let result = fut.await;
            match (result, analysis.parse_error()) {
                (Err(Error::Unavailable { .. } | Error::Timeout { .. }), Some(msg)) => Err(
                    Error::BadData(format!("invalid parameter \"query\": {msg}")),
                ),
                (Err(err), _) => Err(name_query_in_parse_error(err)),
                (ok, _) => ok,
            }
        })
    }
}

/// Rewrites a querier's `400 bad_data` "N:M: parse error: ..." answer to
/// `invalid parameter "query": N:M: parse error: ...`; any other error is returned as is.
fn name_query_in_parse_error(err: Error) -> Error {
    let Error::Downstream { status, body, .. } = &err else {
        return err;
    };
    if status.as_u16() != 400 {
        return err;
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType")]
        error_type: String,
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b)
            if b.error_type == "bad_data"
                && b.error.contains("parse error")
                && !b.error.starts_with("invalid parameter") =>
        {
            Error::BadData(format!("invalid parameter \"query\": {}", b.error))
        }
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// A scripted inner service that records the queries it saw.
    #[derive(Clone)]
    struct Scripted {
        seen: Arc<Mutex<Vec<RangeQuery>>>,
        reply: fn() -> Result<QueryResponse, Error>,
    }

    impl Service<RangeQuery> for Scripted {
        type Response = QueryResponse;
        type Error = Error;
        type Future = BoxFuture<QueryResponse>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, q: RangeQuery) -> Self::Future {
            self.seen.lock().expect("lock").push(q);
            let reply = self.reply;
            Box::pin(async move { reply() })
        }
    }

    fn query(expr: &str) -> RangeQuery {
        let pairs = [
            ("query", expr),
            ("start", "0"),
            ("end", "60"),
            ("step", "15"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid query")
    }

    fn unavailable() -> Result<QueryResponse, Error> {
        Err(Error::Unavailable {
            endpoint: "http://q".into(),
            source: "refused".into(),
        })
    }

    fn querier_400() -> Result<QueryResponse, Error> {
        Err(Error::Downstream {
            status: http::StatusCode::BAD_REQUEST,
            content_type: None,
            body: bytes::Bytes::from_static(
                b"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"querier says\"}",
            ),
        })
    }

    #[tokio::test]
    async fn attaches_analysis_and_forwards() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = ValidateLayer.layer(Scripted {
            seen: seen.clone(),
            reply: unavailable,
        });
        let err = svc
            .oneshot(query("rate(up[5m])"))
            .await
            .expect_err("inner fails");
        assert!(
            matches!(err, Error::Unavailable { .. }),
            "valid query keeps the 503: {err:?}"
        );
        let seen = seen.lock().expect("lock");
        assert!(
            seen[0]
                .analysis
                .as_ref()
                .is_some_and(|a| a.parse_error().is_none())
        );
    }

    #[tokio::test]
    async fn unparseable_query_goes_to_querier_first() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = ValidateLayer.layer(Scripted {
            seen: seen.clone(),
            reply: querier_400,
        });
        let err = svc
            .oneshot(query("sum("))
            .await
            .expect_err("querier rejects");
        assert!(matches!(&err, Error::Downstream { status, .. } if status.as_u16() == 400));
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    fn old_prometheus_parse_error() -> Result<QueryResponse, Error> {
        Err(Error::Downstream {
            status: http::StatusCode::BAD_REQUEST,
            content_type: None,
            body: bytes::Bytes::from_static(b"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"1:5: parse error: unclosed left parenthesis\"}"),
        })
    }

    #[tokio::test]
    async fn querier_parse_errors_name_the_parameter() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = ValidateLayer.layer(Scripted {
            seen,
            reply: old_prometheus_parse_error,
        });
        let err = svc
            .oneshot(query("sum("))
            .await
            .expect_err("querier rejects");
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.error_type(), "bad_data");
        assert_eq!(
            err.to_string(),
            "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"
        );
    }

    #[tokio::test]
    async fn unparseable_query_with_querier_down_is_bad_data() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = ValidateLayer.layer(Scripted {
            seen,
            reply: unavailable,
        });
        let err = svc.oneshot(query("sum(")).await.expect_err("bad query");
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.error_type(), "bad_data");
        assert!(
            err.to_string().starts_with("invalid parameter \"query\": "),
            "{err}"
        );
    }
}
