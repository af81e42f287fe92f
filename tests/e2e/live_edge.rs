//! The live edge: a dashboard refreshed at the wall-clock now, on data that reaches now
//! (backfilled history plus samples Prometheus scrapes every second, see
//! `support::live`). For several panels over several refreshes, the frontend's answer
//! equals Prometheus' own answer asked at the same moment, reaches the last point of the
//! grid, and is never older at its tail than what Prometheus already held when the
//! frontend was asked; from the second refresh on, older parts come from the cache.
//! Every other refresh asks the frontend for gzip, as Grafana does: its body is then
//! spliced from the runs the cache keeps compressed, and must decode to the same answer.

use std::time::Duration;

use crate::compare::compare;
use crate::support::live::{
    LiveBed, NEWEST_SAMPLE_QUERY, build_live_bed, newest_sample_ms, wait_for_sample_after,
};
use http::Method;

use crate::support::{Reply, blocking, form, secs, send, start_frontend, test_config};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

/// Days of history: the longest panel's window, its lookback and a day boundary.
const DAYS: f64 = 2.5;
/// Prometheus scrapes the live target this often, seconds.
const SCRAPE_S: u64 = 1;
/// Dashboard refreshes, each after new samples landed.
const REFRESHES: usize = 5;
/// Further attempts when the two answers differ (a scrape landed between them).
const RETRIES: usize = 3;

/// The panels: (PromQL, range, step in seconds as Grafana picks it for the range).
const PANELS: &[(&str, i64, i64)] = &[
    ("sum by (code) (rate(http_requests_total[5m]))", 6 * H, 20),
    (
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        DAY,
        60,
    ),
    ("node_memory_free_bytes", 6 * H, 20),
    ("avg_over_time(temperature_celsius[10m])", 2 * DAY, 120),
    (
        "sum by (handler) (rate(http_requests_total{code=\"500\"}[5m]))",
        2 * DAY,
        120,
    ),
    // The timestamp of the newest sample at each point: the tail's freshness.
    (NEWEST_SAMPLE_QUERY, 6 * H, 20),
];

/// A Grafana-style POST of a range query.
async fn ask(base: &str, expr: &str, (start, end, step_s): (i64, i64, i64), gzip: bool) -> Reply {
    let body = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", &step_s.to_string()),
    ]);
    let headers: &[(&str, &str)] = match gzip {
        true => &[("accept-encoding", "gzip")],
        false => &[],
    };
    send(
        Method::POST,
        &format!("{base}/api/v1/query_range"),
        headers,
        Some(("application/x-www-form-urlencoded", body.into_bytes())),
    )
    .await
}

/// Asks the frontend and Prometheus the same query at the same moment until they agree
/// (a scrape landing between the two reads makes them differ: the next attempt, a
/// scrape interval later, reads both after it). Returns the frontend's answer and the
/// attempts it took, or the last difference.
async fn agreed(
    bed: &LiveBed,
    fe: &str,
    expr: &str,
    window: (i64, i64, i64),
    gzip: bool,
) -> Result<(Reply, usize), String> {
    let mut difference = String::new();
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(bed.scrape_interval_s * 1000 + 500)).await;
        }
        let (direct, via) = tokio::join!(
            ask(&bed.prom_url, expr, window, false),
            ask(fe, expr, window, gzip)
        );
        let coding = via.headers.get("content-encoding");
        if gzip != coding.is_some_and(|c| c == "gzip") {
            return Err(format!(
                "asked gzip: {gzip}, got content-encoding {coding:?}"
            ));
        }
        match compare(expr, &direct, &via, false) {
            None => return Ok((via, attempt + 1)),
            Some(d) => difference = d,
        }
    }
    Err(format!(
        "never equal in {} attempts; last: {difference}",
        RETRIES + 1
    ))
}

/// Timestamp (ms) and value of the latest point over all series of a matrix answer.
fn latest_point(reply: &Reply) -> Option<(i64, f64)> {
    let json = reply.json();
    json["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|series| {
            let point = series["values"].as_array()?.last()?;
            let t = (point[0].as_f64()? * 1000.0).round() as i64;
            let v: f64 = point[1].as_str()?.parse().ok()?;
            Some((t, v))
        })
        .max_by_key(|&(t, _)| t)
}

#[tokio::test]
async fn panels_at_now_equal_prometheus_over_refreshes() {
    let bed = blocking(|| build_live_bed("live-edge", DAYS, SCRAPE_S)).await;
    let fe = start_frontend(test_config(&bed.prom_url)).await;
    let mut problems = Vec::new();
    let mut from_cache = vec![false; PANELS.len()];
    let mut attempts = Vec::new();
    let mut newest = bed.spec.end_ms;
    for refresh in 0..REFRESHES {
        // Every refresh has samples the one before did not.
        newest = wait_for_sample_after(&bed.prom_url, newest, Duration::from_secs(60)).await;
        let now = chrono::Utc::now().timestamp_millis();
        for (p, &(expr, range, step_s)) in PANELS.iter().enumerate() {
            let step = step_s * 1000;
            let start = (now - range).div_euclid(step) * step;
            let last = start + (now - start) / step * step;
            // The newest sample Prometheus holds at the grid's last point before the
            // frontend is asked: its answer may not end on anything older.
            let held = newest_sample_ms(&bed.prom_url, last)
                .await
                .expect("live samples at the last point");
            let gzip = refresh % 2 == 1;
            let (via, n) = match agreed(&bed, &fe.url, expr, (start, now, step_s), gzip).await {
                Ok(answer) => answer,
                Err(e) => {
                    problems.push(format!("refresh {refresh}, {expr}: {e}"));
                    continue;
                }
            };
            attempts.push(n);
            match latest_point(&via) {
                Some((t, _)) if t != last => problems.push(format!(
                    "refresh {refresh}, {expr}: the answer ends at {t}, the grid at {last}"
                )),
                Some((_, newest_ts)) if expr == NEWEST_SAMPLE_QUERY => {
                    let newest_ms = (newest_ts * 1000.0).round() as i64;
                    if newest_ms < held {
                        problems.push(format!(
                            "refresh {refresh}: stale tail, newest sample {newest_ms} < {held} held before asking"
                        ));
                    }
                }
                Some(_) => {}
                None => problems.push(format!("refresh {refresh}, {expr}: empty answer")),
            }
            if refresh > 0 && matches!(via.x_cache(), "partial" | "hit") {
                from_cache[p] = true;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "live edge: {} answers, attempts until equal: {attempts:?}",
        attempts.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let never: Vec<&str> = PANELS
        .iter()
        .zip(&from_cache)
        .filter(|(_, cached)| !**cached)
        .map(|((expr, _, _), _)| *expr)
        .collect();
    assert!(
        never.is_empty(),
        "never served partly from the cache on a later refresh: {never:?}"
    );
}
