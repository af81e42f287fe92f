//! W3C trace context on real Prometheus, seen by a proxy in front of it: the client's
//! `traceparent` and `tracestate` reach the querier on passthrough requests and on every
//! piece of a split range query, and the trace id is in the request's slow-query line.

use http::Method;

use std::time::Duration;

use crate::support::{
    CountingProxy, bed, counting_proxy, form, secs, send, start_frontend, test_config,
};
use crate::support::{Scratch, Supervised, blocking, free_port, probe_status};
use promql_frontend::config::{FetchMode, Threshold};

const D: i64 = 24 * 3_600_000;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "vendor=opaque-value,other=1";

/// The `(path, traceparent, tracestate)` of every request the proxy forwarded from
/// `from` on.
fn trace_headers(
    proxy: &CountingProxy,
    from: usize,
) -> Vec<(String, Option<String>, Option<String>)> {
    let seen = proxy.seen.lock().expect("lock");
    let value = |h: &http::HeaderMap, name: &str| {
        h.get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    seen[from..]
        .iter()
        .map(|(path, h)| {
            (
                path.clone(),
                value(h, "traceparent"),
                value(h, "tracestate"),
            )
        })
        .collect()
}

/// The slow-query line of the request with `request_id`.
async fn slow_line(fe: &str, request_id: &str) -> serde_json::Value {
    let lines = send(Method::GET, &format!("{fe}/api/v1/slow_queries"), &[], None)
        .await
        .json();
    lines["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["request_id"] == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no slow-query line for {request_id}: {lines}"))
}

#[tokio::test]
async fn trace_context_reaches_the_querier_on_passthrough_and_every_range_piece() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let mut config = test_config(&proxy.url);
    // One querier request per day piece.
    config.query_range.fetch = FetchMode::PerInterval;
    config.slow_query_log.threshold = Threshold::All;
    let fe = start_frontend(config).await;
    let traced = [("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)];

    // Passthrough: an instant query and a labels request.
    for (path, id) in [
        ("/api/v1/query?query=up", "trace-instant"),
        ("/api/v1/labels", "trace-labels"),
    ] {
        let before = proxy.requests();
        let mut headers = traced.to_vec();
        headers.push(("x-request-id", id));
        let r = send(Method::GET, &format!("{}{path}", fe.url), &headers, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let seen = trace_headers(&proxy, before);
        assert_eq!(seen.len(), 1, "{path}: {seen:?}");
        assert_eq!(seen[0].1.as_deref(), Some(TRACEPARENT), "{path}");
        assert_eq!(seen[0].2.as_deref(), Some(TRACESTATE), "{path}");
        assert_eq!(slow_line(&fe.url, id).await["trace_id"], TRACE_ID, "{path}");
    }

    // A cold range query over three days: several pieces, each its own querier request.
    let start = (tb.end_ms - 3 * D).div_euclid(D) * D + 3_600_000;
    let qs = form(&[
        ("query", "sum(rate(http_requests_total[5m]))"),
        ("start", &secs(start)),
        ("end", &secs(tb.end_ms - 3_600_000)),
        ("step", "300"),
    ]);
    let before = proxy.requests();
    let mut headers = traced.to_vec();
    headers.push(("x-request-id", "trace-range"));
    let r = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &headers,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pieces = trace_headers(&proxy, before);
    assert!(pieces.len() >= 3, "one request per day piece: {pieces:?}");
    for (path, parent, state) in &pieces {
        assert!(path.starts_with("/api/v1/query_range"), "{path}");
        assert_eq!(parent.as_deref(), Some(TRACEPARENT), "{path}");
        assert_eq!(state.as_deref(), Some(TRACESTATE), "{path}");
    }
    let line = slow_line(&fe.url, "trace-range").await;
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(line["splits"].as_u64(), Some(pieces.len() as u64), "{line}");

    // An invalid traceparent is forwarded as received (the querier decides what to make
    // of it), but no trace id is logged for it.
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let before = proxy.requests();
    let r = send(
        Method::GET,
        &format!("{}/api/v1/query?query=up", fe.url),
        &[("traceparent", bad), ("x-request-id", "trace-invalid")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = trace_headers(&proxy, before);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1.as_deref(), Some(bad));
    assert!(slow_line(&fe.url, "trace-invalid").await["trace_id"].is_null());

    // Without trace context nothing is invented.
    let before = proxy.requests();
    let r = send(
        Method::GET,
        &format!("{}/api/v1/query?query=up", fe.url),
        &[("x-request-id", "trace-none")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = trace_headers(&proxy, before);
    assert_eq!((seen[0].1.as_deref(), seen[0].2.as_deref()), (None, None));
    assert!(slow_line(&fe.url, "trace-none").await["trace_id"].is_null());
}

#[tokio::test]
async fn the_request_log_names_the_trace() {
    let querier = crate::support::fake_querier(std::sync::Arc::new(
        |_: &Method, _: &str, _: &http::HeaderMap, _: &bytes::Bytes| {
            crate::support::FakeReply::json(200, r#"{"status":"success","data":[]}"#)
        },
    ))
    .await;
    // The binary, so the request log is written as in production (text format).
    let scratch = Scratch::new("trace-log");
    let config = scratch.0.join("config.toml");
    std::fs::write(&config, "[log]\nlevel = \"promql_frontend=debug\"\n").expect("write config");
    let port = free_port();
    let args: Vec<String> = vec![
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--downstream-url".into(),
        querier.url.clone(),
    ];
    let log = scratch.0.join("frontend.log");
    let mut frontend = Supervised::start(env!("CARGO_BIN_EXE_promql-frontend"), &args, &log, None);
    let up = blocking(move || {
        (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            probe_status(port, "/-/healthy") == Some(200)
        })
    })
    .await;
    assert!(up, "the frontend did not start:\n{}", frontend.log());
    for (id, traceparent) in [("with-trace", TRACEPARENT), ("bad-trace", "00-nope")] {
        let headers = [("traceparent", traceparent), ("x-request-id", id)];
        let url = format!("http://127.0.0.1:{port}/api/v1/labels");
        let r = send(Method::GET, &url, &headers, None).await;
        assert_eq!(r.status, 200);
    }
    // The request line is written when the answer is handed over: wait for both.
    let line = |text: &str, id: &str| {
        text.lines()
            .find(|l| l.contains(&format!("request_id={id}")) && l.contains("server: request"))
            .map(str::to_owned)
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let (with, without) = loop {
        let text = frontend.log();
        if let (Some(a), Some(b)) = (line(&text, "with-trace"), line(&text, "bad-trace")) {
            break (a, b);
        }
        assert!(
            std::time::Instant::now() < until,
            "no request log lines:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    frontend.stop();
    assert!(with.contains(&format!("trace_id={TRACE_ID}")), "{with}");
    assert!(!without.contains("trace_id"), "{without}");
}
