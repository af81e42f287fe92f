//! The slow-query log and `/metrics` against the real test bed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use promql_frontend::config::{FetchMode, Threshold};

use crate::support::{
    Scratch, bed, blocking, form, free_port, probe_status, require_binary, secs, send,
    start_frontend, test_config,
};

const H: i64 = 3_600_000;

/// A window over yesterday's UTC midnight: two pieces.
fn window(end_ms: i64) -> (i64, i64) {
    let midnight = end_ms - end_ms % (24 * H) - 24 * H;
    (midnight - 13 * H, midnight + 5 * H)
}

fn range_path(expr: &str, (start, end): (i64, i64)) -> String {
    format!(
        "/api/v1/query_range?{}",
        form(&[
            ("query", expr),
            ("start", &secs(start)),
            ("end", &secs(end)),
            ("step", "120"),
        ])
    )
}

/// The lines of `path` once it holds at least `n` (bounded wait), each parsed.
async fn lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > until {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "half a line: {text}"
            );
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_query_log_lines_carry_the_request_facts() {
    let tb = bed().await;
    let scratch = Scratch::new("slowlog");
    let path = scratch.0.join("slow.log");
    let mut config = test_config(&tb.prom_url);
    config.slow_query_log.threshold = Threshold::Above(Duration::from_nanos(1));
    config.slow_query_log.path = Some(path.clone());
    // One request per UTC day, so the line's piece and cache counts are known exactly
    // (planned fetching is counted in tests/e2e/planning.rs).
    config.query_range.fetch = FetchMode::PerInterval;
    let fe = start_frontend(config).await;

    let expr = "sum by (code) (rate(http_requests_total[5m]))";
    let win = window(tb.end_ms);
    let reply = send(
        Method::GET,
        &format!("{}{}", fe.url, range_path(expr, win)),
        &[
            ("x-scope-orgid", "team-a"),
            ("user-agent", "Grafana/11.3.0"),
            ("x-dashboard-uid", "dash-1"),
            ("x-panel-id", "7"),
            ("x-grafana-org-id", "3"),
            ("x-query-group-id", "grp-9"),
            ("x-request-id", "req-range-1"),
        ],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["x-request-id"], "req-range-1");
    let answer = reply.json();
    let result = answer["data"]["result"].as_array().expect("matrix");
    let samples: usize = result
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();

    let got = lines(&path, 1).await;
    let line = &got[0];
    assert_eq!(line["request_id"], "req-range-1");
    assert!(
        line["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{line}"
    );
    assert_eq!(line["params"]["query"], expr);
    assert_eq!(
        line["params"]["start"].as_str(),
        chrono::DateTime::from_timestamp_millis(win.0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .as_deref()
    );
    assert_eq!(line["params"]["step"], 120.0);
    assert_eq!(line["httpRequest"]["clientIP"], "127.0.0.1");
    assert_eq!(line["httpRequest"]["method"], "GET");
    assert_eq!(line["httpRequest"]["path"], "/api/v1/query_range");
    assert!(
        line["duration_seconds"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );
    assert_eq!(line["status"], 200);
    assert!(line["error"].is_null());
    assert_eq!(line["tenant"], "team-a");
    assert_eq!(line["user_agent"], "Grafana/11.3.0");
    assert_eq!(line["dashboard_uid"], "dash-1");
    assert_eq!(line["panel_id"], "7");
    assert_eq!(line["org_id"], "3");
    assert_eq!(line["query_group_id"], "grp-9");
    assert_eq!(line["splits"], 2);
    assert_eq!(line["cache"]["outcome"], "miss", "{line}");
    assert_eq!(line["cache"]["misses"], 2, "{line}");
    assert_eq!(line["cache"]["hits"], 0);
    assert_eq!(line["cache"]["partial"], 0);
    assert_eq!(line["cache"]["skipped"], 0);
    assert_eq!(line["retries"], 0);
    assert!(
        line["downstream_seconds"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );
    assert_eq!(line["response_bytes"], reply.body.len());
    assert_eq!(line["series"], result.len());
    assert_eq!(line["samples"], samples);

    // An instant query (passthrough) and a bad one.
    let instant = send(
        Method::GET,
        &format!("{}/api/v1/query?query=up&time={}", fe.url, secs(tb.end_ms)),
        &[],
        None,
    )
    .await;
    assert_eq!(instant.status, 200);
    let generated = instant.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        generated.len(),
        16,
        "an id is made up when the client sends none"
    );
    let bad = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=sum(&start=0&end=60&step=15",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    // A querier error on a passthrough read: logged with the querier's message.
    let bad_instant = send(
        Method::GET,
        &format!("{}/api/v1/query?query=rate(up)", fe.url),
        &[("x-request-id", "bad-instant")],
        None,
    )
    .await;
    assert_eq!(bad_instant.status, 400, "{}", bad_instant.text());
    let got = lines(&path, 4).await;
    let instant_line = got
        .iter()
        .find(|l| l["request_id"] == generated.as_str())
        .expect("instant query logged");
    assert_eq!(instant_line["params"]["query"], "up");
    assert_eq!(
        instant_line["params"]["start"],
        instant_line["params"]["end"]
    );
    assert_eq!(instant_line["params"]["step"], 0.0);
    assert_eq!(instant_line["httpRequest"]["path"], "/api/v1/query");
    assert!(
        instant_line["series"].is_null(),
        "passthrough answers are not parsed"
    );
    assert!(
        instant_line["downstream_seconds"]
            .as_f64()
            .is_some_and(|d| d > 0.0),
        "{instant_line}"
    );
    assert_eq!(instant_line["response_bytes"], instant.body.len());
    let bad_line = got
        .iter()
        .find(|l| l["status"] == 400 && l["httpRequest"]["path"] == "/api/v1/query_range")
        .expect("bad query logged");
    assert!(
        bad_line["error"]
            .as_str()
            .is_some_and(|e| e.contains("parse")),
        "{bad_line}"
    );
    assert_eq!(
        bad_line["params"]["query"], "sum(",
        "logged even though rejected"
    );
    let querier_error = got
        .iter()
        .find(|l| l["request_id"] == "bad-instant")
        .expect("querier error logged");
    assert_eq!(querier_error["status"], 400);
    assert_eq!(
        querier_error["error"],
        bad_instant.json()["error"],
        "the querier's own message"
    );

    // 32 concurrent slow queries: every line whole.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let url = format!(
            "{}{}",
            fe.url,
            range_path(&format!("max(up) + {i}"), window(tb.end_ms))
        );
        tasks.spawn(async move { send(Method::GET, &url, &[], None).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }
    let got = lines(&path, 36).await;
    assert_eq!(got.len(), 36);
}

#[tokio::test]
async fn slow_queries_endpoint_lists_and_follows() {
    let tb = bed().await;
    let scratch = Scratch::new("slow-queries-endpoint");
    let mut config = test_config(&tb.prom_url);
    config.slow_query_log.threshold = Threshold::All;
    config.slow_query_log.ring_size = 2;
    config.slow_query_log.path = Some(scratch.0.join("slow.log"));
    let fe = start_frontend(config).await;
    for id in ["one", "two", "three"] {
        let url = format!("{}/api/v1/query?query=up&time={}", fe.url, secs(tb.end_ms));
        let reply = send(Method::GET, &url, &[("x-request-id", id)], None).await;
        assert_eq!(reply.status, 200);
    }
    // Lines are recorded when the body is done: give the last one a moment.
    let mut listed = serde_json::Value::Null;
    for _ in 0..50 {
        listed = send(
            Method::GET,
            &format!("{}/api/v1/slow_queries", fe.url),
            &[],
            None,
        )
        .await
        .json();
        if listed["data"][0]["request_id"] == "three" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed["status"], "success");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    assert_eq!(ids, ["three", "two"], "newest first, ring of 2");
    let one = send(
        Method::GET,
        &format!("{}/api/v1/slow_queries?limit=1", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(one.json()["data"].as_array().map(Vec::len), Some(1));
    let bad = send(
        Method::GET,
        &format!("{}/api/v1/slow_queries?limit=x", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errorType"], "bad_data");

    // A follower sees a new slow query as it happens.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("{}/api/v1/slow_queries?follow=true", fe.url))
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("follow");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.into_body();
    let url = format!("{}/api/v1/query?query=up&time={}", fe.url, secs(tb.end_ms));
    let reply = send(Method::GET, &url, &[("x-request-id", "followed")], None).await;
    assert_eq!(reply.status, 200);
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a line within 10s")
        .expect("stream open")
        .expect("frame");
    let data = frame.into_data().expect("data frame");
    assert!(data.ends_with(b"\n"));
    let line: serde_json::Value = serde_json::from_slice(&data).expect("one JSON line");
    assert_eq!(line["request_id"], "followed");
}

#[tokio::test]
async fn sighup_reopens_the_slow_query_log_after_a_rename() {
    require_binary("kill", "procps");
    let tb = bed().await;
    let scratch = Scratch::new("sighup");
    let path = scratch.0.join("slow.log");
    let rotated = scratch.0.join("slow.log.1");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_promql-frontend"))
        .env("PROMQL_FRONTEND_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROMQL_FRONTEND_DOWNSTREAM_URL", &tb.prom_url)
        .env("PROMQL_FRONTEND_SLOW_QUERY_LOG__THRESHOLD", "-1s")
        .env("PROMQL_FRONTEND_SLOW_QUERY_LOG__PATH", &path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start binary");
    let pid = child.id().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let up = blocking(move || {
        (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            probe_status(port, "/-/healthy") == Some(200)
        })
    })
    .await;
    let ask = |id: &'static str| {
        let url = format!("{base}/api/v1/query?query=up&time={}", secs(tb.end_ms));
        async move {
            let reply = send(Method::GET, &url, &[("x-request-id", id)], None).await;
            assert_eq!(reply.status, 200);
        }
    };
    let result = async {
        assert!(up, "the binary did not start");
        ask("before").await;
        assert_eq!(lines(&path, 1).await.len(), 1);
        std::fs::rename(&path, &rotated).expect("rotate");
        let hup = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(hup.success());
        // The signal is handled asynchronously: ask until a line lands in the new file.
        let until = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < until, "no new file after SIGHUP");
            ask("after").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let new = lines(&path, 1).await;
        assert!(new.iter().all(|l| l["request_id"] == "after"), "{new:?}");
        let old = lines(&rotated, 1).await;
        assert_eq!(old[0]["request_id"], "before");
    }
    .await;
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    result
}

#[tokio::test]
async fn metrics_parse_and_count_known_requests() {
    require_binary("promtool", "prometheus");
    let tb = bed().await;
    let scratch = Scratch::new("metrics");
    let mut config = test_config(&tb.prom_url);
    config.slow_query_log.threshold = Threshold::All;
    config.slow_query_log.path = Some(scratch.0.join("slow.log"));
    // One request per UTC day: the piece and attempt counts below are per-interval ones.
    config.query_range.fetch = FetchMode::PerInterval;
    let fe = start_frontend(config).await;
    let scrape = || async {
        send(Method::GET, &format!("{}/metrics", fe.url), &[], None)
            .await
            .text()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("number"))
    };
    let before = scrape().await;
    let path = range_path("sum(rate(http_requests_total[5m]))", window(tb.end_ms));
    for want in ["miss", "hit"] {
        let reply = send(Method::GET, &format!("{}{path}", fe.url), &[], None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["x-cache"], want);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = scrape().await;
    let prom = tb.prom_url.as_str();
    for (series, delta) in [
        (
            r#"promql_frontend_requests_total{endpoint="query_range",code="2xx"}"#.to_owned(),
            2.0,
        ),
        (
            r#"promql_frontend_cache_lookups_total{backend="memory",result="miss"}"#.to_owned(),
            2.0,
        ),
        (
            r#"promql_frontend_cache_lookups_total{backend="memory",result="hit"}"#.to_owned(),
            0.0,
        ),
        // The exact repeat of a window older than max_freshness: a whole-answer hit.
        (
            r#"promql_frontend_cache_lookups_total{backend="response",result="miss"}"#.to_owned(),
            1.0,
        ),
        (
            r#"promql_frontend_cache_lookups_total{backend="response",result="hit"}"#.to_owned(),
            1.0,
        ),
        (
            r#"promql_frontend_endpoint_cache_requests_total{endpoint="query_range",outcome="miss"}"#
                .to_owned(),
            1.0,
        ),
        (
            r#"promql_frontend_endpoint_cache_requests_total{endpoint="query_range",outcome="hit"}"#
                .to_owned(),
            1.0,
        ),
        // The response-cache hit never reaches the split.
        ("promql_frontend_query_range_pieces_count".to_owned(), 1.0),
        ("promql_frontend_query_range_pieces_sum".to_owned(), 2.0),
        (
            format!(
                r#"promql_frontend_downstream_attempts_total{{downstream="{prom}",kind="query_range",outcome="success"}}"#
            ),
            2.0,
        ),
        (
            r#"promql_frontend_slow_queries_total{result="logged"}"#.to_owned(),
            2.0,
        ),
    ] {
        assert_eq!(
            value(&after, &series) - value(&before, &series),
            delta,
            "{series}\n{after}"
        );
    }
    assert!(
        value(&after, r#"promql_frontend_cache_entries{backend="memory"}"#) >= 2.0,
        "{after}"
    );
    assert!(
        value(
            &after,
            r#"promql_frontend_cache_held_bytes{backend="memory"}"#
        ) > 0.0,
        "{after}"
    );

    // promtool reads the classic text format without complaint.
    let text = after.clone();
    let checked = blocking(move || {
        use std::io::Write;
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write metrics");
        child.wait_with_output().expect("promtool output")
    })
    .await;
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Prometheus itself asks for OpenMetrics and gets it.
    let om = send(
        Method::GET,
        &format!("{}/metrics", fe.url),
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
        None,
    )
    .await;
    assert!(
        om.headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("application/openmetrics-text")),
    );
    assert!(om.text().ends_with("# EOF\n"));
}
