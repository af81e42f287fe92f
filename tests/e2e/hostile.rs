//! Hostile input, overload and isolation: what a client or the network can send never
//! crashes the frontend, never makes it answer 5xx for a client's mistake, never reaches
//! another host, and never shows one tenant's or user's cached answer to another.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use promql_frontend::config::Threshold;

use crate::support::{
    FakeReply, Gate, Scratch, addr_of, bed, blocking, fake_querier, form, secs, send,
    start_frontend, test_config,
};

/// Sends raw bytes on a new connection and returns the status and body of the answer
/// (the request must ask for `Connection: close`).
fn raw(base: &str, request: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr_of(base)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer and close before reading a huge request to its end.
    let _ = stream.write_all(&request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn post(target: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: frontend\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: frontend\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Hostile requests, each sent to the frontend and straight to Prometheus: the frontend
/// answers what Prometheus answers (same status; same `errorType` for errors), and
/// never a 5xx.
#[tokio::test]
async fn hostile_requests_get_what_the_querier_says_and_never_a_5xx() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (s, e) = (secs(tb.end_ms - 3_600_000), secs(tb.end_ms));
    let range = |extra: &str| format!("/api/v1/query_range?{extra}");
    let ok = form(&[("query", "up"), ("start", &s), ("end", &e), ("step", "60")]);
    let long = "x".repeat(6000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 in a parameter", get(&range(&format!("{ok}&query=%FF%FE")), "")),
        ("malformed percent escape", get(&range("query=%ZZ&start=0&end=60&step=15"), "")),
        ("duplicate parameters: the first wins", get(&range(&format!("{ok}&step=1&start=9")), "")),
        ("NaN start", get(&range("query=up&start=NaN&end=60&step=15"), "")),
        ("infinite end", get(&range("query=up&start=0&end=Inf&step=15"), "")),
        ("negative step", get(&range("query=up&start=0&end=60&step=-15"), "")),
        ("huge step", get(&range("query=up&start=0&end=60&step=1e300"), "")),
        ("end before start", get(&range("query=up&start=60&end=0&step=15"), "")),
        ("too many points", get(&range("query=up&start=0&end=100000000&step=1"), "")),
        ("no parameters at all", get(&range(""), "")),
        ("query of 6000 characters", get(&range(&format!("query={long}&start=0&end=60&step=15")), "")),
        ("`..` in the path", get("/api/v1/../../../etc/passwd", "")),
        ("a `//host` target", get("//evil.example/api/v1/labels", "")),
        ("unknown API path", get("/api/v1/nope", "")),
        (
            "JSON body posted as a query",
            b"POST /api/v1/query_range HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"query\":\"up\"}"
                .to_vec(),
        ),
        (
            "form body with broken escapes",
            b"POST /api/v1/query HTTP/1.1\r\nHost: f\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\nConnection: close\r\n\r\nquery=%G1%2&x"
                .to_vec(),
        ),
        ("form body sent as text/plain", post("/api/v1/query_range", "text/plain", "query=up&start=0&end=60&step=15")),
        (
            "multipart form body",
            post(
                "/api/v1/query_range",
                "multipart/form-data; boundary=XX",
                "--XX\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nup\r\n--XX\r\nContent-Disposition: form-data; name=\"start\"\r\n\r\n0\r\n--XX\r\nContent-Disposition: form-data; name=\"end\"\r\n\r\n60\r\n--XX\r\nContent-Disposition: form-data; name=\"step\"\r\n\r\n15\r\n--XX--\r\n",
            ),
        ),
        ("form body with a charset and invalid UTF-8", post("/api/v1/query_range", "application/x-www-form-urlencoded; charset=utf-8", "query=up%C3%28&start=0&end=60&step=15")),
        ("instant query at NaN", get("/api/v1/query?query=up&time=NaN", "")),
        // Parameters read with Go's syntax and checked like Prometheus (the tables in
        // compat.rs compare the messages too).
        ("instant query with an unparsable timeout", get("/api/v1/query?query=up&timeout=xx", "")),
        ("instant query with a negative timeout string", post("/api/v1/query", "application/x-www-form-urlencoded", "query=up&timeout=-1s")),
        ("instant query with an invalid time and timeout", get("/api/v1/query?query=up&time=x&timeout=xx", "")),
        ("range query with _ and a hexadecimal step", get(&range(&format!("query=up&start={}_{}&end={e}&step=0x1p6", &s[..1], &s[1..])), "")),
        ("range query with a lower-case RFC 3339 time", get(&range("query=up&start=2026-11-30t00:00:00z&end=60&step=15"), "")),
        ("range query with a time in invalid UTF-8", get(&range("query=up&start=%FF%01&end=60&step=15"), "")),
        ("NaN step", get(&range("query=up&start=0&end=60&step=NaN"), "")),
        (
            "CORS preflight",
            b"OPTIONS /api/v1/query_range HTTP/1.1\r\nHost: f\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        // promql-parser panics on durations beyond `Duration` (found by fuzzing).
        ("range query with an offset of 1e30 s", get(&range("query=up%20offset%201e30&start=0&end=60&step=15"), "")),
        ("range query with a subquery step of 1e30 s", get(&range("query=max_over_time(up%5B5m:1e30%5D)&start=0&end=60&step=15"), "")),
        // Deeper than the frontend analyses (a stack overflow in the parser's recursion
        // otherwise): forwarded whole.
        ("range query nested 3000 deep", get(&range(&format!("query={}up{}&start=0&end=60&step=15", "(".repeat(3000), ")".repeat(3000))), "")),
        // A quote in a `#` comment once hid the nesting from the frontend's bound.
        ("range query nested 15000 deep behind a comment", get(&range(&format!("query=%23%20%22%0A{}up{}&start=0&end=60&step=15", "(".repeat(15_000), ")".repeat(15_000))), "")),
        ("series without matchers", get("/api/v1/series", "")),
    ];
    let (prom, fe_url) = (tb.prom_url.clone(), fe.url.clone());
    let results = blocking(move || {
        cases
            .into_iter()
            .map(|(name, request)| (name, raw(&prom, request.clone()), raw(&fe_url, request)))
            .collect::<Vec<_>>()
    })
    .await;
    let mut problems = Vec::new();
    for (name, (d_status, d_body), (f_status, f_body)) in results {
        if f_status == 0 || f_status >= 500 {
            problems.push(format!(
                "{name}: frontend answered {f_status}: {f_body:.200}"
            ));
            continue;
        }
        if f_status != d_status {
            problems.push(format!(
                "{name}: frontend {f_status} vs Prometheus {d_status}: {f_body:.200} / {d_body:.200}"
            ));
            continue;
        }
        let error_type = |body: &str| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .map(|v| v["errorType"].clone())
        };
        if f_status >= 400 && d_body.starts_with('{') && error_type(&f_body) != error_type(&d_body)
        {
            problems.push(format!(
                "{name}: errorType differs: {f_body:.200} / {d_body:.200}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Times past what a 64-bit timestamp holds: Prometheus 2.42 converts them with an
    // integer overflow and answers an empty matrix for a time it cannot represent; the
    // frontend refuses them (a deliberate difference, README "Errors").
    let huge = send(
        Method::GET,
        &format!(
            "{}{}",
            fe.url,
            range("query=up&start=1e300&end=1e301&step=15")
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(huge.status, 400, "{}", huge.text());
    assert_eq!(huge.json()["errorType"], "bad_data");
    // Still serving.
    let after = send(Method::GET, &format!("{}{}", fe.url, range(&ok)), &[], None).await;
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    // Slowloris: connections that trickle a request head forever would hold sockets and
    // memory; `server.header_read_timeout` closes them.
    let tb = bed().await;
    let mut c = test_config(&tb.prom_url);
    c.server.header_read_timeout = Duration::from_secs(1);
    let fe = start_frontend(c).await;
    let url = fe.url.clone();
    let closed = blocking(move || {
        let mut stream = TcpStream::connect(addr_of(&url)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .write_all(b"GET /api/v1/labels HTTP/1.1\r\nHost: f\r\nX-Slow: ")
            .expect("write");
        // Keep trickling one byte a second, well past the limit, unless closed.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if stream.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        let mut out = Vec::new();
        // EOF (or a reset): the server gave up on the connection.
        match stream.read_to_end(&mut out) {
            Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(String::new()),
            Err(_) => None,
        }
    })
    .await;
    let answer = closed.expect("the connection was closed, not left open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "nothing but a 408 on a cut-off head: {answer:?}"
    );
    let healthy = send(Method::GET, &format!("{}/-/healthy", fe.url), &[], None).await;
    assert_eq!(healthy.status, 200);
}

#[tokio::test]
async fn oversized_request_heads_are_refused_with_431() {
    // `server.max_header_bytes` is 64 KiB by default. Heads up to twice that are read
    // whole and answered with Prometheus error JSON; beyond that the HTTP layer stops
    // reading and answers a bare 431. A request target over 64 KiB cannot be held by
    // the HTTP layer at all (`http::Uri`): a bare 414.
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let header = format!("X-Big: {}\r\n", "a".repeat(100 * 1024));
    let target = format!("/api/v1/query?query={}", "x".repeat(60 * 1024));
    let headers_10k = format!("X-Pad: {}\r\n", "p".repeat(10 * 1024));
    let long_target = format!("/api/v1/query?query={}", "x".repeat(100 * 1024));
    let many = (0..90)
        .map(|i| format!("X-Part-{i}: {}\r\n", "b".repeat(1000)))
        .collect::<String>();
    let huge = format!("X-Huge: {}\r\n", "c".repeat(300 * 1024));
    let url = fe.url.clone();
    let answers = blocking(move || {
        [
            (
                "one 100 KiB header",
                raw(&url, get("/api/v1/labels", &header)),
            ),
            (
                "a 60 KiB query string and 10 KiB of headers",
                raw(&url, get(&target, &headers_10k)),
            ),
            (
                "90 headers of 1 KB",
                raw(&url, get("/api/v1/labels", &many)),
            ),
            ("a 300 KiB header", raw(&url, get("/api/v1/labels", &huge))),
            ("a 100 KiB query string", raw(&url, get(&long_target, ""))),
        ]
    })
    .await;
    for (name, (status, body)) in &answers[..3] {
        assert_eq!(*status, 431, "{name}: {body}");
        let json: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"));
        assert_eq!(json["status"], "error", "{name}");
        assert_eq!(json["errorType"], "bad_data", "{name}");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("server.max_header_bytes")),
            "{name}: the message names the limit: {body}"
        );
    }
    let (status, body) = &answers[3].1;
    assert_eq!(*status, 431, "beyond twice the limit: {body}");
    let (status, body) = &answers[4].1;
    assert_eq!(*status, 414, "a target too long to hold: {body}");
    let healthy = send(Method::GET, &format!("{}/-/healthy", fe.url), &[], None).await;
    assert_eq!(healthy.status, 200);
}

#[tokio::test]
async fn overload_is_a_quick_503_and_probes_still_answer() {
    // The querier holds its answers until the gate opens: the refusal and the probes
    // are answered while both admitted requests are still in flight, so they were not
    // queued behind them.
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(200, r#"{"status":"success","data":["job"]}"#).held(&held)
    }))
    .await;
    let mut config = test_config(&fake.url);
    config.server.max_concurrent_requests = 2;
    let fe = start_frontend(config).await;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let url = format!("{}/api/v1/labels", fe.url);
        slow.spawn(async move { send(Method::GET, &url, &[], None).await.status });
    }
    while fake.seen.lock().expect("lock").len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = send(Method::GET, &format!("{}/api/v1/labels", fe.url), &[], None).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["errorType"], "unavailable");
    for probe in ["/-/healthy", "/metrics"] {
        let r = send(Method::GET, &format!("{}{probe}", fe.url), &[], None).await;
        assert_eq!(r.status, 200, "{probe} under overload");
    }
    assert!(
        slow.try_join_next().is_none(),
        "the admitted requests were held"
    );
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        2,
        "the refused request never reached the querier"
    );
    gate.open();
    while let Some(status) = slow.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }
    let again = send(Method::GET, &format!("{}/api/v1/labels", fe.url), &[], None).await;
    assert_eq!(again.status, 200, "capacity is back");
}

/// A request counts against `server.max_concurrent_requests` until its answer is sent
/// whole, not only until its headers are: a streamed answer (here a slow-query follow
/// stream, which never ends by itself) holds its slot until the client goes away.
#[tokio::test]
async fn a_streamed_answer_holds_its_slot_until_the_client_leaves() {
    let fake = fake_querier(Arc::new(|_, _, _, _| {
        FakeReply::json(200, r#"{"status":"success","data":["job"]}"#)
    }))
    .await;
    let scratch = Scratch::new("admitted-stream");
    let mut config = test_config(&fake.url);
    config.server.max_concurrent_requests = 1;
    config.slow_query_log.threshold = Threshold::All;
    config.slow_query_log.path = Some(scratch.0.join("slow.log"));
    let fe = start_frontend(config).await;
    let labels = format!("{}/api/v1/labels", fe.url);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("{}/api/v1/slow_queries?follow=true", fe.url))
        .body(Empty::new())
        .expect("request");
    let stream = client.request(req).await.expect("follow");
    assert_eq!(stream.status(), 200);
    let refused = send(Method::GET, &labels, &[], None).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["errorType"], "unavailable");
    drop(stream);
    drop(client);
    // The frontend notices the closed connection and frees the slot.
    let mut status = 0;
    for _ in 0..100 {
        status = send(Method::GET, &labels, &[], None).await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the slot came back after the follower left");
}

/// A querier that answers by tenant and by user: each sees a different value.
#[tokio::test]
async fn tenants_and_users_never_see_each_others_cached_answers() {
    let fake = fake_querier(Arc::new(|_, _, headers, body| {
        let who = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let owner = format!("{}/{}", who("x-scope-orgid"), who("authorization"));
        let get = |name: &str| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (start, end, step) = (get("start"), get("end"), get("step").max(1.0));
        let mut points = Vec::new();
        let mut t = start;
        while t <= end {
            points.push(format!("[{t},\"1\"]"));
            t += step;
        }
        FakeReply::json(
            200,
            &format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"owner":"{owner}"}},"values":[{}]}}]}}}}"#,
                points.join(",")
            ),
        )
    }))
    .await;
    // With the response cache (exact repeats answered whole) and without it (repeats
    // answered from the per-piece cache): both keep owners apart.
    let mut piece_cache_only = test_config(&fake.url);
    piece_cache_only.cache.response_capacity_bytes = 0;
    for (cache, config) in [
        ("response cache", test_config(&fake.url)),
        ("piece cache", piece_cache_only),
    ] {
        let fe = start_frontend(config).await;
        let url = format!(
            "{}/api/v1/query_range?query=up&start=1700000000&end=1700003600&step=60",
            fe.url
        );
        let askers: [Vec<(&str, &str)>; 4] = [
            vec![("x-scope-orgid", "team-a")],
            vec![("x-scope-orgid", "team-b")],
            vec![
                ("x-scope-orgid", "team-a"),
                ("authorization", "Bearer alice"),
            ],
            vec![("x-scope-orgid", "team-a"), ("authorization", "Bearer bob")],
        ];
        let want = |headers: &[(&str, &str)]| {
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or("-", |h| h.1)
            };
            format!("{}/{}", get("x-scope-orgid"), get("authorization"))
        };
        let ask = |headers: Vec<(&'static str, &'static str)>| {
            let url = url.clone();
            async move {
                let reply = send(Method::GET, &url, &headers, None).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let owner = reply.json()["data"]["result"][0]["metric"]["owner"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let x_cache = reply
                    .headers
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (owner, x_cache)
            }
        };
        // First round: each owner's answer comes from the querier and is stored.
        for headers in &askers {
            let (owner, x_cache) = ask(headers.clone()).await;
            assert_eq!(owner, want(headers), "{cache}, first ask");
            assert_eq!(x_cache, "miss", "{cache}: {headers:?} asked first");
        }
        // Then each asks again until the answer comes from the cache (stores happen in
        // the background): every answer, cached or not, is still their own.
        for headers in &askers {
            let mut from_cache = false;
            for _ in 0..100 {
                let (owner, x_cache) = ask(headers.clone()).await;
                assert_eq!(owner, want(headers), "{cache}, x-cache {x_cache}");
                if x_cache == "hit" {
                    from_cache = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                from_cache,
                "{cache}: {headers:?} was never answered from the cache"
            );
        }
    }
}

/// Absolute-form targets and Host headers naming another server change nothing: the
/// request goes to the configured querier.
#[tokio::test]
async fn only_the_configured_querier_is_ever_contacted() {
    let reply = || FakeReply::json(200, r#"{"status":"success","data":["job"]}"#);
    let configured = fake_querier(Arc::new(move |_, _, _, _| reply())).await;
    let other = fake_querier(Arc::new(move |_, _, _, _| reply())).await;
    let fe = start_frontend(test_config(&configured.url)).await;
    let other_host = other.url.trim_start_matches("http://").to_owned();
    let requests = vec![
        get(&format!("{}/api/v1/labels", other.url), ""),
        format!("GET /api/v1/labels HTTP/1.1\r\nHost: {other_host}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        get(
            &format!("/api/v1/series?match[]=up&host={other_host}"),
            &format!("X-Forwarded-Host: {other_host}\r\n"),
        ),
    ];
    let url = fe.url.clone();
    let statuses = blocking(move || {
        requests
            .into_iter()
            .map(|r| raw(&url, r).0)
            .collect::<Vec<_>>()
    })
    .await;
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    assert!(
        other.seen.lock().expect("lock").is_empty(),
        "another host was contacted"
    );
    assert_eq!(configured.seen.lock().expect("lock").len(), 3);
}
