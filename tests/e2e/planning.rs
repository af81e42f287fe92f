//! Fetch planning on real Prometheus, counted by a proxy in front of it: a cold query
//! costs the querier one request or a few (not one per day), an expensive one is still
//! cut into parallel parts, and the answers equal Prometheus' own.

use http::Method;

use crate::compare::compare;
use crate::support::{bed, counting_proxy, form, secs, send, start_frontend, test_config};
use promql_frontend::config::FetchMode;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

/// Asks `expr` over `[start, end]` at `step` through the frontend at `fe` and directly at
/// `prom`; fails unless the answers agree. Returns the querier requests the frontend
/// made for it, as counted by `proxy`.
async fn ask(
    fe: &str,
    prom: &str,
    proxy: &crate::support::CountingProxy,
    expr: &str,
    (start, end, step): (i64, i64, &str),
) -> usize {
    let qs = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", step),
    ]);
    let before = proxy.requests();
    let via = send(
        Method::GET,
        &format!("{fe}/api/v1/query_range?{qs}"),
        &[],
        None,
    )
    .await;
    let made = proxy.requests() - before;
    let direct = send(
        Method::GET,
        &format!("{prom}/api/v1/query_range?{qs}"),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 200, "{expr}: {}", via.text());
    if let Some(p) = compare(expr, &direct, &via, false) {
        panic!("{expr}: {p}");
    }
    made
}

/// Waits until the piece entries of `expr` over the window are stored: repeats it
/// until it is a hit (a frontend without the response cache).
async fn stored(fe: &str, expr: &str, (start, end, step): (i64, i64, &str)) {
    for _ in 0..500 {
        if crate::cache::range(fe, expr, start, end, step)
            .await
            .x_cache()
            == "hit"
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the entries of {expr} were not stored within 10 s");
}

#[tokio::test]
async fn a_cold_month_costs_a_request_or_two_and_a_heavy_query_is_still_cut() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    // Cheap and expensive are judged against the part target, from querier times. The
    // test bed's Prometheus shares two cores with the other tests, where a cheap query
    // can take hundreds of milliseconds and a heavy one can be fast when they are idle;
    // so each frontend's target puts its queries firmly on one side: what is tested is
    // the plan that follows from the learned cost, not this machine's speed.
    let mut config = test_config(&proxy.url);
    config.query_range.parallel_part_duration = std::time::Duration::from_secs(60);
    // Without the response cache, a repeat's `X-Cache: hit` says the pieces are stored.
    config.cache.response_capacity_bytes = 0;
    let fe = start_frontend(config).await;
    let month = (tb.end_ms - 30 * D, tb.end_ms - H, "1h");

    // Cheap: an unseen shape is asked in two halves at once (not one request per day).
    let cheap = ask(&fe.url, &tb.prom_url, &proxy, "sum(up)", month).await;
    assert_eq!(cheap, 2, "two halves, not one request per day");
    // Entries are written in the background after the answer; a month asked while some
    // of its days are still being written has several gaps (one request each).
    stored(&fe.url, "sum(up)", month).await;
    // The same shape over another cold month: one request.
    let earlier = (tb.end_ms - 31 * D, tb.end_ms - D - H, "1h");
    let known = ask(&fe.url, &tb.prom_url, &proxy, "sum(up)", earlier).await;
    assert_eq!(known, 1, "a known cheap shape costs one request");
    // No series read: never cut, never probed.
    let none = ask(&fe.url, &tb.prom_url, &proxy, "vector(1) * 2", month).await;
    assert_eq!(none, 1);

    // Heavy: a subquery evaluated every 15 s over the test bed's days, asked of a
    // frontend whose part target (1 ms) any real querier answer exceeds.
    let heavy = "quantile_over_time(0.9, sum by (code) (rate(http_requests_total[5m]))[30m:15s])";
    let window = (tb.end_ms - 3 * D + H, tb.end_ms - H, "60");
    let mut config = test_config(&proxy.url);
    config.query_range.parallel_part_duration = std::time::Duration::from_millis(1);
    let heavy_fe = start_frontend(config).await;
    let unseen = ask(&heavy_fe.url, &tb.prom_url, &proxy, heavy, window).await;
    assert_eq!(unseen, 2, "an unseen shape: two halves");
    // The shape is now known to cost many part targets: cut into as many parts as the
    // lookback rule and the free places allow (over two days, two at least).
    // Another step phase: nothing of it is cached, but the cost is known (it is learned
    // per expression and step).
    let later = (window.0 + 30_000, window.1 + 30_000, window.2);
    let known = ask(&heavy_fe.url, &tb.prom_url, &proxy, heavy, later).await;
    assert!(
        known >= 2,
        "a known expensive shape is cut: {known} querier requests"
    );
}

#[tokio::test]
async fn per_interval_fetching_asks_once_per_day() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let mut config = test_config(&proxy.url);
    config.query_range.fetch = FetchMode::PerInterval;
    let fe = start_frontend(config).await;
    let start = (tb.end_ms - 10 * D).div_euclid(D) * D + H;
    let made = ask(
        &fe.url,
        &tb.prom_url,
        &proxy,
        "sum(up)",
        (start, start + 9 * D, "1h"),
    )
    .await;
    assert_eq!(made, 10, "one request per UTC day touched");
}

#[tokio::test]
async fn the_slow_query_log_and_metrics_show_querier_requests_and_time() {
    let tb = bed().await;
    let scratch = crate::support::Scratch::new("planning-telemetry");
    let log = scratch.0.join("slow.log");
    let proxy = counting_proxy(&tb.prom_url).await;
    let mut config = test_config(&proxy.url);
    config.slow_query_log.threshold = promql_frontend::config::Threshold::All;
    config.slow_query_log.path = Some(log.clone());
    let fe = start_frontend(config).await;
    let made = ask(
        &fe.url,
        &tb.prom_url,
        &proxy,
        "max(up)",
        (tb.end_ms - 20 * D, tb.end_ms - H, "1h"),
    )
    .await;
    let mut line = serde_json::Value::Null;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("query_range")) {
            line = serde_json::from_str(l).expect("a JSON line");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(line["downstream_requests"], made as u64, "{line}");
    assert_eq!(line["splits"], made as u64, "{line}");
    assert!(
        line["downstream_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{line}"
    );
    let metrics = send(Method::GET, &format!("{}/metrics", fe.url), &[], None)
        .await
        .text();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(-1.0, |v| v.trim().parse().expect("number"))
    };
    assert_eq!(
        value("promql_frontend_query_range_querier_requests_sum"),
        made as f64
    );
    assert_eq!(
        value("promql_frontend_query_range_querier_requests_count"),
        1.0
    );
    assert!(value("promql_frontend_query_range_querier_seconds_sum") > 0.0);
    assert_eq!(
        value(r#"promql_frontend_fetch_plans_total{plan="parts"}"#),
        1.0
    );
    assert!(value("promql_frontend_querier_concurrency_limit") >= 1.0);
}
