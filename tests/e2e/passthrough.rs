//! Every endpoint other than query_range is forwarded unchanged: the body through the
//! frontend equals the body from Prometheus for the same request, GET and POST.

use http::Method;

use crate::support::{bed, form, secs, send, start_frontend, test_config};

/// Requests whose answers do not change between two calls.
fn stable_requests(start_ms: i64, end_ms: i64) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let t = secs(end_ms - 3_600_000);
    let (s, e) = (secs(start_ms + 3_600_000), secs(end_ms - 600_000));
    vec![
        ("/api/v1/query", vec![("query", "sum by (code) (rate(http_requests_total[5m]))".into()), ("time", t.clone())]),
        ("/api/v1/query", vec![("query", "up".into()), ("time", t.clone())]),
        ("/api/v1/query", vec![("query", "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))".into()), ("time", t.clone())]),
        ("/api/v1/query", vec![("query", "sum(".into()), ("time", t.clone())]),
        ("/api/v1/series", vec![("match[]", "up".into()), ("start", s.clone()), ("end", e.clone())]),
        ("/api/v1/series", vec![("match[]", "batch_jobs_processed_total".into()), ("start", s.clone()), ("end", e.clone())]),
        ("/api/v1/labels", vec![]),
        ("/api/v1/labels", vec![("match[]", "temperature_celsius".into()), ("start", s.clone()), ("end", e.clone())]),
        ("/api/v1/label/instance/values", vec![]),
        ("/api/v1/label/__name__/values", vec![("start", s.clone()), ("end", e.clone())]),
        ("/api/v1/metadata", vec![]),
        ("/api/v1/query_exemplars", vec![("query", "up".into()), ("start", s.clone()), ("end", e.clone())]),
        ("/api/v1/status/buildinfo", vec![]),
        ("/api/v1/status/config", vec![]),
        ("/api/v1/status/flags", vec![]),
        ("/api/v1/format_query", vec![("query", "sum(rate(x[5m]))by(job)".into())]),
        ("/api/v1/parse_query", vec![("query", "sum(up)".into())]),
        ("/api/v1/targets", vec![]),
        ("/api/v1/rules", vec![]),
        ("/api/v1/alerts", vec![]),
        ("/api/v1/no_such_endpoint", vec![]),
        ("/no/such/page", vec![]),
    ]
}

fn encode(params: &[(&str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    form(&pairs)
}

#[tokio::test]
async fn passthrough_endpoints_equal_direct_get_and_post() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    for (path, params) in stable_requests(tb.start_ms, tb.end_ms) {
        let qs = encode(&params);
        // GET with a query string.
        let url = |base: &str| {
            if qs.is_empty() {
                format!("{base}{path}")
            } else {
                format!("{base}{path}?{qs}")
            }
        };
        let direct = send(Method::GET, &url(&tb.prom_url), &[], None).await;
        let via = send(Method::GET, &url(&fe.url), &[], None).await;
        assert_eq!(via.status, direct.status, "GET {path}: {}", via.text());
        assert_eq!(via.body, direct.body, "GET {path} body differs");
        assert_eq!(
            via.headers.get("content-type"),
            direct.headers.get("content-type"),
            "GET {path} content-type"
        );
        // POST with a form body (label values only allows GET: the 405 must pass too).
        let body = Some(("application/x-www-form-urlencoded", qs.clone().into_bytes()));
        let direct = send(
            Method::POST,
            &format!("{}{path}", tb.prom_url),
            &[],
            body.clone(),
        )
        .await;
        let via = send(Method::POST, &format!("{}{path}", fe.url), &[], body).await;
        assert_eq!(via.status, direct.status, "POST {path}: {}", via.text());
        assert_eq!(via.body, direct.body, "POST {path} body differs");
    }
}

#[tokio::test]
async fn volatile_status_endpoints_pass_through() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    for path in [
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/tsdb",
        "/api/v1/status/walreplay",
    ] {
        let direct = send(Method::GET, &format!("{}{path}", tb.prom_url), &[], None).await;
        let via = send(Method::GET, &format!("{}{path}", fe.url), &[], None).await;
        assert_eq!(via.status, direct.status, "{path}");
        let (d, v) = (direct.json(), via.json());
        let keys = |j: &serde_json::Value| {
            j["data"]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(keys(&v), keys(&d), "{path} data fields");
        assert_eq!(v["status"], "success", "{path}");
    }
}

#[tokio::test]
async fn gzip_from_the_querier_passes_through() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let url = |base: &str| format!("{base}/api/v1/label/__name__/values");
    let hdr = [("accept-encoding", "gzip")];
    let direct = send(Method::GET, &url(&tb.prom_url), &hdr, None).await;
    let via = send(Method::GET, &url(&fe.url), &hdr, None).await;
    assert_eq!(
        direct.headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    assert_eq!(
        via.headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "frontend kept the querier's encoding"
    );
    assert_eq!(via.decoded(), direct.decoded());
}
