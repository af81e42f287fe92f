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
