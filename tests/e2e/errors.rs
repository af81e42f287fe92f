//! Errors: the frontend answers bad requests like Prometheus does (status, errorType,
//! message), passes the querier's own errors through unchanged, and never answers a bad
//! query with a 5xx.

use std::sync::Arc;

use http::Method;

use crate::support::{FakeReply, bed, fake_querier, form, secs, send, start_frontend, test_config};

#[tokio::test]
async fn bad_parameters_are_400_bad_data_like_prometheus() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (s, e) = (secs(tb.end_ms - 3_600_000), secs(tb.end_ms));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("query", "up"),
                ("start", "yesterday"),
                ("end", &e),
                ("step", "60"),
            ],
            "\"start\"",
        ),
        (
            vec![("query", "up"), ("end", &e), ("step", "60")],
            "\"start\"",
        ),
        (
            vec![
                ("query", "up"),
                ("start", &s),
                ("end", "2024-13-45"),
                ("step", "60"),
            ],
            "\"end\"",
        ),
        (
            vec![
                ("query", "up"),
                ("start", &s),
                ("end", &e),
                ("step", "fast"),
            ],
            "\"step\"",
        ),
        (
            vec![("query", "up"), ("start", &s), ("end", &e)],
            "\"step\"",
        ),
        (
            vec![("query", "up"), ("start", &s), ("end", &e), ("step", "0")],
            "zero or negative",
        ),
        (
            vec![("query", "up"), ("start", &s), ("end", &e), ("step", "-15")],
            "zero or negative",
        ),
        (
            vec![("query", "up"), ("start", &e), ("end", &s), ("step", "60")],
            "end timestamp must not be before start time",
        ),
        (
            vec![("query", "up"), ("start", "0"), ("end", &e), ("step", "1")],
            "11,000 points",
        ),
        (
            vec![
                ("query", "up"),
                ("start", &s),
                ("end", &e),
                ("step", "60"),
                ("timeout", "later"),
            ],
            "\"timeout\"",
        ),
        (
            vec![
                ("query", "sum("),
                ("start", &s),
                ("end", &e),
                ("step", "60"),
            ],
            "\"query\"",
        ),
        (
            vec![
                ("query", "rate(up)"),
                ("start", &s),
                ("end", &e),
                ("step", "60"),
            ],
            "\"query\"",
        ),
        (
            vec![("start", &s), ("end", &e), ("step", "60")],
            "\"query\"",
        ),
        (
            vec![("query", "up{"), ("start", &s), ("end", &e), ("step", "60")],
            "\"query\"",
        ),
    ];
    for (params, needle) in cases {
        let qs = form(&params);
        let direct = send(
            Method::GET,
            &format!("{}/api/v1/query_range?{qs}", tb.prom_url),
            &[],
            None,
        )
        .await;
        for method in [Method::GET, Method::POST] {
            let via = match method {
                Method::GET => {
                    send(
                        Method::GET,
                        &format!("{}/api/v1/query_range?{qs}", fe.url),
                        &[],
                        None,
                    )
                    .await
                }
                _ => {
                    crate::support::post_form(&format!("{}/api/v1/query_range", fe.url), &qs).await
                }
            };
            assert_eq!(via.status, 400, "{method} {params:?}: {}", via.text());
            let json = via.json();
            assert_eq!(json["status"], "error");
            assert_eq!(json["errorType"], "bad_data", "{params:?}");
            let msg = json["error"].as_str().unwrap_or_default();
            assert!(
                msg.contains(needle),
                "{params:?}: message {msg:?} should mention {needle}"
            );
            // Same answer as Prometheus itself. Prometheus 2.42 words parse errors
            // without naming the parameter; the frontend adds the prefix that newer
            // Prometheus releases use, and keeps the rest of the message.
            assert_eq!(direct.status, 400, "{params:?}");
            let direct_json = direct.json();
            assert_eq!(direct_json["errorType"], "bad_data");
            let direct_msg = direct_json["error"].as_str().unwrap_or_default();
            if direct_msg.contains("parse error") && !direct_msg.starts_with("invalid parameter") {
                assert_eq!(
                    msg,
                    format!("invalid parameter \"query\": {direct_msg}"),
                    "{method} {params:?}"
                );
            } else {
                assert_eq!(via.text(), direct.text(), "{method} {params:?}");
            }
        }
    }
}

#[tokio::test]
async fn execution_errors_pass_through_unchanged() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    // Many-to-many matching fails at evaluation time: 422 execution.
    let qs = form(&[
        ("query", "http_requests_total + on(job) http_requests_total"),
        ("start", &secs(tb.end_ms - 3_600_000)),
        ("end", &secs(tb.end_ms)),
        ("step", "60"),
    ]);
    let direct = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", tb.prom_url),
        &[],
        None,
    )
    .await;
    let via = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(direct.status, 422, "{}", direct.text());
    assert_eq!(via.status, 422);
    assert_eq!(via.json()["errorType"], "execution");
    assert_eq!(via.body, direct.body);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.server.max_body_bytes = 4096;
    let fe = start_frontend(config).await;
    let big = format!("query={}&start=1&end=2&step=1", "a".repeat(8192));
    for path in ["/api/v1/query_range", "/api/v1/query"] {
        let via = crate::support::post_form(&format!("{}{path}", fe.url), &big).await;
        assert_eq!(via.status, 413, "{path}");
        let json = via.json();
        assert_eq!(json["errorType"], "bad_data");
        assert!(
            json["error"].as_str().unwrap_or_default().contains("4096"),
            "{json}"
        );
    }
    // A chunked body declares no length: the limit applies while reading.
    for path in ["/api/v1/query_range", "/api/v1/query"] {
        let status = chunked_post(&fe.url, path, 3, 2048).await;
        assert_eq!(status, 413, "chunked {path}");
    }
    // A body under the limit still works.
    let small = form(&[("query", "up"), ("time", &secs(tb.end_ms))]);
    let ok = crate::support::post_form(&format!("{}/api/v1/query", fe.url), &small).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test]
async fn non_json_querier_errors_become_prometheus_json() {
    let fake = fake_querier(Arc::new(|_, _, _, _| FakeReply {
        status: 502,
        headers: vec![("content-type", "text/html".to_owned())],
        body: bytes::Bytes::from_static(b"<html><h1>502 Bad Gateway</h1></html>"),
        ..FakeReply::json(502, "")
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let via = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=up&start=0&end=60&step=15",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 502, "the querier's status is kept");
    let json = via.json();
    assert_eq!(json["status"], "error");
    assert_eq!(json["errorType"], "internal");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("502 Bad Gateway"),
        "{json}"
    );
}

#[tokio::test]
async fn non_json_5xx_on_passthrough_api_paths_become_prometheus_json() {
    // What a Prometheus that is starting up answers to API requests.
    let fake = fake_querier(Arc::new(|_, path, _, _| FakeReply {
        status: if path.starts_with("/federate") {
            500
        } else {
            503
        },
        headers: vec![("content-type", "text/plain".to_owned())],
        body: bytes::Bytes::from_static(b"Service Unavailable"),
        ..FakeReply::json(503, "")
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    for path in [
        "/api/v1/labels",
        "/api/v1/query?query=up",
        "/api/v1/status/buildinfo",
    ] {
        let via = send(Method::GET, &format!("{}{path}", fe.url), &[], None).await;
        assert_eq!(via.status, 503, "{path}: the querier's status is kept");
        let json = via.json();
        assert_eq!(json["status"], "error", "{path}");
        assert_eq!(json["errorType"], "unavailable", "{path}");
        assert!(
            json["error"]
                .as_str()
                .unwrap_or_default()
                .contains("Service Unavailable"),
            "{path}: {json}"
        );
    }
    // Outside the API, the querier's answer is passed on as it came.
    let via = send(
        Method::GET,
        &format!("{}/federate?match[]=up", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 500);
    assert_eq!(via.text(), "Service Unavailable");
}

#[tokio::test]
async fn invalid_success_bodies_are_502_bad_response() {
    let fake = fake_querier(Arc::new(|_, _, _, _| {
        FakeReply::json(200, "{\"status\":\"success\",\"data\":")
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let via = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=up&start=0&end=60&step=15",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 502);
    assert_eq!(via.json()["errorType"], "bad_response");
}

/// POSTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` over a raw
/// connection and returns the status code of the answer.
async fn chunked_post(base: &str, path: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = crate::support::addr_of(base);
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let chunk = format!("{size:x}\r\n{}\r\n", "q".repeat(size));
    for _ in 0..chunks {
        // The server may answer and close before reading everything.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in answer: {text:?}"))
}
