//! query_range through the frontend returns exactly what Prometheus returns.

use http::Method;

use crate::cache::range;
use crate::support::{bed, form, secs, send, start_frontend, test_config};

const QUERIES: &[&str] = &[
    "up",
    "sum by (code) (rate(http_requests_total[5m]))",
    "increase(http_requests_total{handler=\"/api/orders\",method=\"GET\"}[1h])",
    "histogram_quantile(0.99, sum by (le, handler) (rate(request_duration_seconds_bucket[10m])))",
    "avg_over_time(temperature_celsius[15m])",
    "node_memory_free_bytes / 1e9",
    "batch_jobs_processed_total",
    "sum(rate(http_requests_total[5m] offset 1h))",
    "time()",
    "absent(nonexistent_metric)",
    "max_over_time(rate(http_requests_total{code=\"500\"}[5m])[30m:1m])",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
];

/// (start offset from the data's end, range, step) in milliseconds; some unaligned.
fn windows(end_ms: i64) -> Vec<(i64, i64, String)> {
    let h = 3_600_000;
    vec![
        (end_ms - h, end_ms, "15".into()),
        (end_ms - 48 * h + 300, end_ms - 2 * h, "300".into()),
        (
            end_ms - 30 * h - 1_700,
            end_ms - 29 * h + 2_300,
            "7m".into(),
        ),
        (end_ms - 60 * h, end_ms - 10 * h, "1h".into()),
    ]
}

/// The query string of `query` over `[start, end]` (ms) at `step`.
fn range_qs(query: &str, start: i64, end: i64, step: &str) -> String {
    form(&[
        ("query", query),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", step),
    ])
}

#[tokio::test]
async fn query_range_equals_direct_get_and_post() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let mut compared = 0;
    for query in QUERIES {
        for (start, end, step) in windows(tb.end_ms) {
            let qs = range_qs(query, start, end, &step);
            let direct = range(&tb.prom_url, query, start, end, &step).await;
            assert_eq!(direct.status, 200, "direct {query}: {}", direct.text());
            let get = range(&fe.url, query, start, end, &step).await;
            assert_eq!(get.status, 200, "GET {query}: {}", get.text());
            assert_eq!(
                get.text(),
                direct.text(),
                "GET {query} {start}..{end}/{step}"
            );
            let post = send(
                Method::POST,
                &format!("{}/api/v1/query_range", fe.url),
                &[],
                Some(("application/x-www-form-urlencoded", qs.clone().into_bytes())),
            )
            .await;
            assert_eq!(post.status, 200, "POST {query}: {}", post.text());
            assert_eq!(
                post.text(),
                direct.text(),
                "POST {query} {start}..{end}/{step}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, QUERIES.len() * 4);
}

/// With `downstream.compression = "gzip"` the querier's gzip answers are decoded (and
/// split, cached and merged) into the same answers as direct.
#[tokio::test]
async fn gzip_answers_from_the_querier_give_the_same_answers() {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.downstream.compression = promql_frontend::config::QuerierCompression::Gzip;
    let fe = start_frontend(config).await;
    for query in &QUERIES[..6] {
        for (start, end, step) in windows(tb.end_ms) {
            let direct = range(&tb.prom_url, query, start, end, &step).await;
            assert_eq!(direct.status, 200, "direct {query}: {}", direct.text());
            // Twice: the querier's answer, then the cached one.
            for round in 0..2 {
                let via = range(&fe.url, query, start, end, &step).await;
                assert_eq!(via.status, 200, "{query}: {}", via.text());
                assert_eq!(
                    via.text(),
                    direct.text(),
                    "{query} {start}..{end}/{step}, round {round}"
                );
            }
        }
    }
}

#[tokio::test]
async fn query_range_gzip_and_rfc3339_times() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let to_rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let qs = form(&[
        ("query", "sum by (instance) (rate(http_requests_total[5m]))"),
        ("start", &to_rfc(tb.end_ms - 24 * 3_600_000 + 123)),
        ("end", &to_rfc(tb.end_ms)),
        ("step", "2m"),
    ]);
    let gz = [("accept-encoding", "gzip")];
    let direct = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", tb.prom_url),
        &gz,
        None,
    )
    .await;
    let via = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &gz,
        None,
    )
    .await;
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(
        via.headers.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "large query_range answers are gzipped for clients that accept it"
    );
    assert!(
        via.body.len() < via.decoded().len() / 2,
        "gzip shrinks the body"
    );
    assert_eq!(via.decoded(), direct.decoded());
    let plain = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &[],
        None,
    )
    .await;
    assert!(
        plain.headers.get("content-encoding").is_none(),
        "no gzip unless accepted"
    );
    assert_eq!(plain.body, direct.decoded());
}

#[tokio::test]
async fn extra_parameters_are_forwarded() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    // `stats=all` changes the answer's shape (data.stats); it must reach Prometheus.
    let qs = form(&[
        ("query", "up"),
        ("start", &secs(tb.end_ms - 3_600_000)),
        ("end", &secs(tb.end_ms)),
        ("step", "60"),
        ("stats", "all"),
        ("timeout", "20s"),
    ]);
    let via = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 200, "{}", via.text());
    let json = via.json();
    assert!(
        json["data"]["stats"]["timings"].is_object(),
        "stats carried through: {json}"
    );
    assert_eq!(json["data"]["result"].as_array().map(Vec::len), Some(8));
}
