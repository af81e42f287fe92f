//! The server itself: h2c, health and metrics endpoints, header rules, path prefixes,
//! graceful shutdown, and the binary's flags.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::{
    FakeReply, Gate, bed, fake_querier, free_port, probe_status, require_binary, send,
    start_frontend, test_config,
};

#[tokio::test]
async fn h2c_clients_are_served() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for path in [
        "/api/v1/labels",
        "/api/v1/query_range?query=up&start=1&end=100&step=10",
        "/-/healthy",
    ] {
        let req = Request::get(format!("{}{path}", fe.url))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = client.request(req).await.expect("h2c request");
        assert_eq!(resp.version(), http::Version::HTTP_2, "{path}");
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(!body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let healthy = send(Method::GET, &format!("{}/-/healthy", fe.url), &[], None).await;
    assert_eq!(healthy.status, 200);
    // Ready probes the querier when it has not answered recently.
    let ready = send(Method::GET, &format!("{}/-/ready", fe.url), &[], None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    send(Method::GET, &format!("{}/api/v1/labels", fe.url), &[], None).await;
    send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=up&start=1&end=2&step=0",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    let metrics = send(Method::GET, &format!("{}/metrics", fe.url), &[], None).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for needle in [
        "promql_frontend_requests_total{endpoint=\"labels\",code=\"2xx\"} 1",
        "promql_frontend_requests_total{endpoint=\"query_range\",code=\"4xx\"} 1",
        "promql_frontend_request_duration_seconds_count{endpoint=\"labels\"} 1",
        "promql_frontend_in_flight_requests 1",
        "promql_frontend_build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[tokio::test]
async fn headers_are_filtered_both_ways_and_prefix_is_kept() {
    let fake = fake_querier(Arc::new(|_, _, _, _| FakeReply {
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("x-from-querier", "yes".to_owned()),
            ("keep-alive", "timeout=5".to_owned()),
            ("trailer", "x-checksum".to_owned()),
        ],
        ..FakeReply::json(200, "{\"status\":\"success\",\"data\":[]}")
    }))
    .await;
    let fe = start_frontend(test_config(&format!("{}/prefix/", fake.url))).await;
    let resp = send(
        Method::GET,
        &format!("{}/api/v1/labels?match[]=up", fe.url),
        &[
            ("authorization", "Bearer t0ken"),
            ("x-scope-orgid", "team-a"),
            ("x-dashboard-uid", "dash-1"),
            ("x-panel-id", "7"),
            ("x-grafana-org-id", "1"),
            ("x-query-group-id", "g-1"),
            ("user-agent", "Grafana/11"),
            ("cookie", "grafana_session=secret"),
            ("x-custom", "not forwarded"),
            ("connection", "keep-alive, X-Request-Id"),
            ("x-request-id", "named by connection, so hop-by-hop"),
        ],
        None,
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers.get("x-from-querier").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    assert!(
        resp.headers.get("keep-alive").is_none(),
        "hop-by-hop response header stripped"
    );
    assert!(
        resp.headers.get("trailer").is_none(),
        "hop-by-hop response header stripped"
    );

    let seen = fake.seen.lock().expect("lock");
    let (method, path, headers, _) = &seen[0];
    assert_eq!(method, Method::GET);
    assert_eq!(
        path, "/prefix/api/v1/labels?match[]=up",
        "prefix and query string kept"
    );
    for (name, value) in [
        ("authorization", "Bearer t0ken"),
        ("x-scope-orgid", "team-a"),
        ("x-dashboard-uid", "dash-1"),
        ("x-panel-id", "7"),
        ("x-grafana-org-id", "1"),
        ("x-query-group-id", "g-1"),
        ("user-agent", "Grafana/11"),
    ] {
        assert_eq!(
            headers.get(name).map(|v| v.as_bytes()),
            Some(value.as_bytes()),
            "{name} forwarded"
        );
    }
    for name in ["cookie", "x-custom", "x-request-id"] {
        assert!(headers.get(name).is_none(), "{name} must not be forwarded");
    }
}

#[tokio::test]
async fn range_queries_reach_the_querier_as_post_forms_with_headers() {
    let fake = fake_querier(Arc::new(|_, _, _, _| {
        FakeReply::json(
            200,
            "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}",
        )
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let resp = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=up&start=1700000000.25&end=1700000600&step=30s&dedup=true",
            fe.url
        ),
        &[("x-scope-orgid", "team-b"), ("accept-encoding", "br")],
        None,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    {
        let seen = fake.seen.lock().expect("lock");
        let (method, path, headers, body) = &seen[0];
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/api/v1/query_range");
        assert_eq!(headers["x-scope-orgid"], "team-b");
        assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(
            headers["accept-encoding"], "identity",
            "the frontend reads this body, so it chooses the coding: none by default"
        );
        // The end is the last evaluation timestamp (start + k·step): the cache asks the
        // querier for grid points only, which evaluates exactly the same timestamps. The
        // attempt's time limit (request_timeout, 30s in the test config) goes along as
        // `timeout`.
        let body = std::str::from_utf8(body).expect("UTF-8 form");
        let (params, timeout) = body.rsplit_once("&timeout=").expect("a timeout parameter");
        assert_eq!(
            params,
            "query=up&start=1700000000.25&end=1700000570.25&step=30&dedup=true"
        );
        let timeout: f64 = timeout.parse().expect("seconds");
        assert!(timeout > 20.0 && timeout <= 30.0, "{timeout}");
    }

    // `downstream.compression = "gzip"` asks for gzip whatever the client accepts.
    let mut config = test_config(&fake.url);
    config.downstream.compression = promql_frontend::config::QuerierCompression::Gzip;
    let gz = start_frontend(config).await;
    let resp = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=up&start=1700000000&end=1700000600&step=30",
            gz.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = fake.seen.lock().expect("lock");
    let (_, path, headers, _) = seen.last().expect("a second querier request");
    assert_eq!(path, "/api/v1/query_range");
    assert_eq!(headers["accept-encoding"], "gzip");
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let fake = fake_querier(Arc::new(|_, _, _, _| FakeReply {
        delay: Duration::from_millis(800),
        ..FakeReply::json(200, "{\"status\":\"success\",\"data\":[\"job\"]}")
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let url = format!("{}/api/v1/labels", fe.url);
    let addr = crate::support::addr_of(&fe.url);
    let in_flight = tokio::spawn(async move { send(Method::GET, &url, &[], None).await });
    // Let the request reach the (slow) querier, then shut down.
    while fake.seen.lock().expect("lock").is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fe.shutdown().await.expect("server stops cleanly");
    let resp = in_flight.await.expect("request task");
    assert_eq!(
        resp.status, 200,
        "in-flight request finished during shutdown"
    );
    assert_eq!(resp.json()["data"][0], "job");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_promql-frontend")
}

#[test]
fn check_config_accepts_the_example_and_names_bad_fields() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let ok = Command::new(bin())
        .args(["--check-config", "--config", example])
        .output()
        .expect("run binary");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = std::env::temp_dir().join(format!("pf-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[downstream]\nconnect_timeout = \"0s\"\n").expect("write");
    let out = Command::new(bin())
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("downstream.connect_timeout"));

    // Flags and env override the file.
    let out = Command::new(bin())
        .args(["--check-config", "--downstream-url", "ftp://nope"])
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("downstream.url"));
    let out = Command::new(bin())
        .arg("--check-config")
        .env("PROMQL_FRONTEND_DOWNSTREAM__REQUEST_TIMEOUT", "0s")
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("downstream.request_timeout"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn binary_serves_and_exits_cleanly_on_sigterm() {
    require_binary("kill", "procps");
    let port = free_port();
    let mut child = Command::new(bin())
        .env("PROMQL_FRONTEND_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PROMQL_FRONTEND_DOWNSTREAM_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("PROMQL_FRONTEND_LOG__FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start binary");
    let mut healthy = false;
    for _ in 0..100 {
        if probe_status(port, "/-/healthy") == Some(200) {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // Bounded wait: a binary that ignores SIGTERM fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll child").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            panic!("the binary did not exit within 20s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("binary exits");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(healthy, "binary never became healthy:\n{log}");
    assert!(out.status.success(), "exit status {:?}:\n{log}", out.status);
    let first = log.lines().next().unwrap_or_default();
    let line: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("JSON log line ({e}): {first}"));
    assert_eq!(
        line["fields"]["message"], "promql-frontend started",
        "{line}"
    );
}

/// SIGTERM while 16 requests are in flight: every one of them is answered, new
/// connections are refused from then on, and the process exits 0.
#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_cleanly() {
    require_binary("kill", "procps");
    // Answers are held until the test has seen the listener close: the requests are
    // certainly in flight when SIGTERM arrives.
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(200, "{\"status\":\"success\",\"data\":[\"job\"]}").held(&held)
    }))
    .await;
    let port = free_port();
    let child = Command::new(bin())
        .env("PROMQL_FRONTEND_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROMQL_FRONTEND_DOWNSTREAM_URL", &fake.url)
        .env("PROMQL_FRONTEND_SERVER__GRACE_PERIOD", "20s")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start binary");
    // Killed if the test fails before the process exits.
    let mut child = KillOnDrop(child);
    let pid = child.0.id().to_string();
    let up = crate::support::blocking(move || {
        (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            probe_status(port, "/-/healthy") == Some(200)
        })
    })
    .await;
    {
        assert!(up, "the binary did not start");
        let mut in_flight = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let url = format!("http://127.0.0.1:{port}/api/v1/labels");
            in_flight.spawn(async move { send(Method::GET, &url, &[], None).await.status });
        }
        while fake.seen.lock().expect("lock").len() < 16 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let term = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(term.success());
        // The listener closes: new connections are refused while the others finish.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < until,
                "still accepting after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            in_flight.try_join_next().is_none(),
            "no answer before the querier's"
        );
        gate.open();
        let mut answered = 0;
        while let Some(status) = in_flight.join_next().await {
            assert_eq!(status.expect("request task"), 200);
            answered += 1;
        }
        assert_eq!(answered, 16);
    }
    let status = crate::support::blocking(move || {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            if let Some(status) = child.0.try_wait().expect("poll child") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await;
    let status = status.expect("the binary exited within 30 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
