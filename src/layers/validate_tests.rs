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
        headers: Box::default(),
        body: bytes::Bytes::from_static(
            b"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"querier says\"}",
        ),
    })
}

#[tokio::test]
async fn attaches_analysis_and_forwards() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ValidateLayer::default().layer(Scripted {
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
    assert!(crate::promql::analysis_of(&seen[0]).is_some_and(|a| a.parse_error().is_none()));
}

#[tokio::test]
async fn unparseable_query_goes_to_querier_first() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ValidateLayer::default().layer(Scripted {
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
        headers: Box::default(),
        body: bytes::Bytes::from_static(b"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"1:5: parse error: unclosed left parenthesis\"}"),
    })
}

#[tokio::test]
async fn querier_parse_errors_name_the_parameter() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ValidateLayer::default().layer(Scripted {
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
    let svc = ValidateLayer::default().layer(Scripted {
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

#[tokio::test]
async fn ranges_over_max_query_length_are_rejected_before_the_querier() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = ValidateLayer::new(ValidateOptions {
        max_query_length: std::time::Duration::from_secs(30),
    });
    let svc = layer.layer(Scripted {
        seen: seen.clone(),
        reply: unavailable,
    });
    // query() spans 60s.
    let err = svc
        .clone()
        .oneshot(query("up"))
        .await
        .expect_err("too long");
    assert_eq!(err.status().as_u16(), 400);
    assert_eq!(err.error_type(), "bad_data");
    assert_eq!(
        err.to_string(),
        "the query time range exceeds the limit (query length: 1m, limit: 30s)"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the querier was not asked"
    );
}

#[tokio::test]
async fn repeated_query_texts_are_parsed_once() {
    fn ok() -> Result<QueryResponse, Error> {
        QueryResponse::from_slice(
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = ValidateLayer::default();
    for expr in ["sum(rate(x[5m]))", "sum(rate(x[5m]))", "max(y)"] {
        // A fresh service per request, as the stack clones it: the cache is shared.
        let svc = layer.layer(Scripted {
            seen: seen.clone(),
            reply: ok,
        });
        svc.oneshot(query(expr)).await.expect("answers");
    }
    let seen = seen.lock().expect("lock");
    let analysis = |i: usize| {
        crate::promql::analysis_of(&seen[i])
            .cloned()
            .expect("analysed")
    };
    assert!(
        Arc::ptr_eq(&analysis(0), &analysis(1)),
        "same text, same analysis"
    );
    assert!(!Arc::ptr_eq(&analysis(0), &analysis(2)));
    assert_eq!(analysis(2).normalised.as_deref(), Some("max(y)"));
}

fn querier_not_ready() -> Result<QueryResponse, Error> {
    Err(Error::Downstream {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        headers: Box::default(),
        body: bytes::Bytes::from_static(b"Service Unavailable"),
    })
}

fn querier_engine_timeout() -> Result<QueryResponse, Error> {
    Err(Error::Downstream {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        headers: Box::default(),
        body: bytes::Bytes::from_static(
            b"{\"status\":\"error\",\"errorType\":\"timeout\",\"error\":\"query timed out\"}",
        ),
    })
}

async fn answer(expr: &str, reply: fn() -> Result<QueryResponse, Error>) -> Error {
    let svc = ValidateLayer::default().layer(Scripted {
        seen: Arc::default(),
        reply,
    });
    svc.oneshot(query(expr)).await.expect_err("inner fails")
}

#[tokio::test]
async fn a_bad_query_is_400_when_the_querier_did_not_look_at_it() {
    // Unreachable, or starting up / shutting down (plain-text 503): the query is the
    // problem, whatever the querier's state.
    for reply in [unavailable, querier_not_ready] {
        let err = answer("sum(rate(x[5m])", reply).await;
        assert_eq!(err.status().as_u16(), 400, "{err:?}");
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().starts_with("invalid parameter \"query\": "));
    }
    // The querier evaluated it (its JSON error): its answer stands.
    let err = answer("sum(rate(x[5m])", querier_engine_timeout).await;
    assert_eq!(err.status().as_u16(), 503, "{err:?}");
    // Valid queries keep the querier's 503 too.
    let err = answer("sum(rate(x[5m]))", querier_not_ready).await;
    assert_eq!(err.status().as_u16(), 503, "{err:?}");
}

#[tokio::test]
async fn texts_beyond_the_parser_keep_the_queriers_answer() {
    // Not analysed for the parser's limits, not for bad syntax: the querier may accept
    // them, so its being unavailable stays a 503.
    let deep = format!("{}up{}", "(".repeat(2000), ")".repeat(2000));
    for expr in [deep.as_str(), "up offset 1e30"] {
        let err = answer(expr, unavailable).await;
        assert_eq!(err.status().as_u16(), 503, "{expr:.40}: {err:?}");
    }
}

#[tokio::test]
async fn kept_analyses_are_bounded_by_bytes_not_count() {
    // Query texts up to `server.max_body_bytes` arrive from the network: a count-bounded
    // cache of them would keep gigabytes. 40 distinct 1 MiB texts stay within the
    // byte budget.
    let layer = ValidateLayer::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut svc = layer.layer(Scripted {
        seen: seen.clone(),
        reply: unavailable,
    });
    let big = 1 << 20;
    for i in 0..40 {
        let text = format!("up{{a=\"{i:03}{}\"}}", "x".repeat(big));
        let _ = svc.ready().await.expect("ready").call(query(&text)).await;
    }
    layer.parsed.run_pending_tasks();
    assert!(
        layer.parsed.weighted_size() <= PARSED_CAPACITY_BYTES,
        "{} bytes kept",
        layer.parsed.weighted_size()
    );
    assert!(
        layer.parsed.entry_count() <= PARSED_CAPACITY_BYTES / (4 * big as u64),
        "{} analyses of 1 MiB texts kept",
        layer.parsed.entry_count()
    );
    assert_eq!(
        seen.lock().expect("lock").len(),
        40,
        "every query still analysed"
    );
    // Small texts: thousands fit, as before.
    assert!(u64::from(analysis_weight("sum(rate(x[5m]))")) * 4096 < PARSED_CAPACITY_BYTES);
    assert!(analysis_weight(r#"x{a=~"b"}"#) > analysis_weight(r#"x{a="b"}"#));
}
