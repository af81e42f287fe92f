//! Fidelity of what surrounds an answer: its content encoding and its CORS headers, for
//! answers the frontend builds (range queries, its own errors, preflight) and answers it
//! passes on, compared with the real Prometheus the tests start, GET and POST.

use http::Method;

use crate::support::{Reply, bed, secs, send, start_frontend, test_config};

/// `base` + `path` + `query` (URL-encoded) as a GET, or as a form POST.
async fn ask(
    base: &str,
    method: &Method,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> Reply {
    match *method {
        Method::GET => send(Method::GET, &format!("{base}{path}?{query}"), headers, None).await,
        _ => {
            send(
                method.clone(),
                &format!("{base}{path}"),
                headers,
                Some((
                    "application/x-www-form-urlencoded",
                    query.as_bytes().to_vec(),
                )),
            )
            .await
        }
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a client can tell apart in an answer besides its headers: the answer's data, or
/// the error's type.
fn gist(reply: &Reply) -> serde_json::Value {
    let json = reply.json();
    match json["status"].as_str() {
        Some("success") => json["data"].clone(),
        _ => json["errorType"].clone(),
    }
}

/// For each `Accept-Encoding` the frontend picks the coding Prometheus picks, for what
/// it writes itself (a range answer, its own 400, the querier's error it re-sends) and
/// for what it passes on (instant queries, labels, a querier's 400 kept encoded).
#[tokio::test]
async fn content_encoding_is_negotiated_like_prometheus() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (s, e) = (secs(tb.end_ms - 3_600_000), secs(tb.end_ms));
    let range = |query: &str, start: &str| format!("query={query}&start={start}&end={e}&step=60");
    let requests: Vec<(&str, &str, String)> = vec![
        (
            "range answer",
            "/api/v1/query_range",
            range("node_memory_free_bytes", &s),
        ),
        (
            "range 400 by the frontend",
            "/api/v1/query_range",
            range("up", "x"),
        ),
        (
            "range 400 by the querier",
            "/api/v1/query_range",
            range("rate(up)", &s),
        ),
        (
            "instant answer",
            "/api/v1/query",
            format!("query=up&time={e}"),
        ),
        (
            "instant 400 by the querier",
            "/api/v1/query",
            "query=sum(".to_owned(),
        ),
        (
            "instant 400 by the frontend",
            "/api/v1/query",
            "query=up&timeout=xx".to_owned(),
        ),
        ("labels", "/api/v1/labels", String::new()),
    ];
    let accepts = [
        "gzip",
        "deflate",
        "deflate, gzip",
        "gzip, deflate",
        " gzip ",
        "br, gzip",
        "gzip;q=0, deflate",
        "GZIP",
        "*",
        "gzip;q=1",
        "gzip;q=0",
        "x-gzip",
        "identity",
    ];
    let mut problems = Vec::new();
    for (name, path, query) in &requests {
        for accept in accepts {
            for method in [Method::GET, Method::POST] {
                let headers = [("accept-encoding", accept)];
                let direct = ask(&tb.prom_url, &method, path, query, &headers).await;
                let via = ask(&fe.url, &method, path, query, &headers).await;
                let what = format!("{name}, {method}, Accept-Encoding {accept:?}");
                let seen = |r: &Reply| (r.status, header(r, "content-encoding").map(str::to_owned));
                if seen(&via) != seen(&direct) {
                    problems.push(format!(
                        "{what}: frontend {:?} vs Prometheus {:?}",
                        seen(&via),
                        seen(&direct)
                    ));
                } else if gist(&via) != gist(&direct) {
                    problems.push(format!("{what}: {} / {}", via.text(), direct.text()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A querier's error passed on keeps its encoding and its bytes.
    let headers = [("accept-encoding", "gzip")];
    let direct = ask(
        &tb.prom_url,
        &Method::GET,
        "/api/v1/query",
        "query=sum(",
        &headers,
    )
    .await;
    let via = ask(
        &fe.url,
        &Method::GET,
        "/api/v1/query",
        "query=sum(",
        &headers,
    )
    .await;
    assert_eq!(header(&via, "content-encoding"), Some("gzip"));
    assert_eq!(via.decoded(), direct.decoded());
}

/// The CORS headers of an answer, as a client sees them: the four
/// `Access-Control-*` headers and whether `Vary` names `Origin`.
fn cors_of(reply: &Reply) -> Vec<String> {
    let mut seen: Vec<String> = [
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-expose-headers",
    ]
    .iter()
    .filter_map(|name| header(reply, name).map(|v| format!("{name}: {v}")))
    .collect();
    let vary_origin = reply
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"));
    if vary_origin {
        seen.push("vary: Origin".to_owned());
    }
    seen
}

/// Sends each request with each `Origin` to Prometheus and to the frontend and lists
/// where status, CORS headers or (for a preflight) the body differ.
async fn compare_cors(
    prom: &str,
    fe: &str,
    requests: &[(&str, Method, &str, String)],
    origins: &[Option<&str>],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, method, path, query) in requests {
        for origin in origins {
            let mut headers = vec![("access-control-request-method", "POST")];
            if let Some(origin) = origin {
                headers.push(("origin", origin));
            }
            let direct = ask(prom, method, path, query, &headers).await;
            let via = ask(fe, method, path, query, &headers).await;
            let what = format!("{name} ({method} {path}), Origin {origin:?}");
            if via.status != direct.status {
                problems.push(format!(
                    "{what}: status {} vs {}",
                    via.status, direct.status
                ));
            }
            if cors_of(&via) != cors_of(&direct) {
                problems.push(format!(
                    "{what}: frontend {:?} vs Prometheus {:?}",
                    cors_of(&via),
                    cors_of(&direct)
                ));
            }
            if *method == Method::OPTIONS && (via.body != direct.body || !via.body.is_empty()) {
                problems.push(format!("{what}: a preflight has no body: {:?}", via.body));
            }
        }
    }
    problems
}

/// The default (`.*`): any origin may read the API, as with Prometheus' default. The
/// frontend's own answers (range queries, its errors, preflights) and those it passes
/// on carry the same headers as Prometheus'; paths outside the API carry none.
#[tokio::test]
async fn cors_headers_are_those_of_prometheus() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (s, e) = (secs(tb.end_ms - 3_600_000), secs(tb.end_ms));
    let range = format!("query=up&start={s}&end={e}&step=60");
    let requests = [
        (
            "range answer",
            Method::GET,
            "/api/v1/query_range",
            range.clone(),
        ),
        ("range answer", Method::POST, "/api/v1/query_range", range),
        (
            "range 400 by the frontend",
            Method::GET,
            "/api/v1/query_range",
            "query=up&start=x".to_owned(),
        ),
        (
            "instant answer",
            Method::POST,
            "/api/v1/query",
            format!("query=up&time={e}"),
        ),
        (
            "instant 400 by the querier",
            Method::GET,
            "/api/v1/query",
            "query=sum(".to_owned(),
        ),
        (
            "instant 400 by the frontend",
            Method::GET,
            "/api/v1/query",
            "query=up&timeout=xx".to_owned(),
        ),
        ("labels", Method::GET, "/api/v1/labels", String::new()),
        (
            "buildinfo",
            Method::GET,
            "/api/v1/status/buildinfo",
            String::new(),
        ),
        (
            "preflight",
            Method::OPTIONS,
            "/api/v1/query_range",
            String::new(),
        ),
        (
            "preflight",
            Method::OPTIONS,
            "/api/v1/series",
            String::new(),
        ),
        (
            "preflight on remote read",
            Method::OPTIONS,
            "/api/v1/read",
            String::new(),
        ),
        ("health", Method::GET, "/-/healthy", String::new()),
    ];
    let origins = [Some("http://grafana.example"), Some("null"), None];
    let problems = compare_cors(&tb.prom_url, &fe.url, &requests, &origins).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The frontend's own errors carry them too: here the querier cannot be reached.
    let closed = format!("http://127.0.0.1:{}", crate::support::free_port());
    let lonely = start_frontend(test_config(&closed)).await;
    let reply = send(
        Method::GET,
        &format!("{}/api/v1/labels", lonely.url),
        &[("origin", "http://grafana.example")],
        None,
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(header(&reply, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&reply, "access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
}

/// `server.cors_origin` set to a pattern, compared with a Prometheus started with the
/// same `--web.cors.origin`: a matching origin is echoed, another gets the other headers
/// but no `Access-Control-Allow-Origin`.
#[tokio::test]
async fn a_cors_pattern_echoes_matching_origins_like_prometheus() {
    let pattern = r"https?://grafana\.example";
    let scratch = crate::support::Scratch::new("cors-prometheus");
    let data = scratch.0.join("tsdb");
    let (_prometheus, port) = crate::support::blocking(move || {
        crate::support::start_prometheus_with(
            &data,
            None,
            &[format!("--web.cors.origin={pattern}")],
            |port| crate::support::probe_status(port, "/-/ready") == Some(200),
        )
    })
    .await;
    let prom = format!("http://127.0.0.1:{port}");
    let mut config = test_config(&prom);
    config.server.cors_origin = pattern.to_owned();
    let fe = start_frontend(config).await;
    let requests = [
        (
            "range answer",
            Method::GET,
            "/api/v1/query_range",
            "query=1&start=1700000000&end=1700003600&step=60".to_owned(),
        ),
        ("labels", Method::GET, "/api/v1/labels", String::new()),
        ("preflight", Method::OPTIONS, "/api/v1/query", String::new()),
    ];
    let origins = [
        Some("http://grafana.example"),
        Some("https://grafana.example"),
        Some("http://grafana.example.evil"),
        Some("http://xgrafana.example"),
        None,
    ];
    let problems = compare_cors(&prom, &fe.url, &requests, &origins).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
