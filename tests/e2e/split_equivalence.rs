//! The split invariant on real data: for many expressions and windows, the answer through
//! the frontend (cut into day pieces, or into planned parallel parts, and merged) equals Prometheus' answer for
//! the whole range: same status, same series in the same order, same timestamps, same
//! value strings; failing queries fail with the same status and error type.
//!
//! `topk`/`bottomk` choose arbitrarily among tied values, following series order, which a
//! split can change; for those the per-timestamp multiset of values is compared.
//!
//! Prometheus itself is not always deterministic: an aggregation over the result of a
//! binary operation adds floats in map-iteration order, so two identical direct queries
//! can differ in the last digit. When an answer differs, the test asks Prometheus again;
//! only if Prometheus disagrees with itself are values compared with a relative tolerance
//! of 1e-9 (labels, series order and timestamps still exactly).

use std::sync::Arc;

use http::Method;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use crate::compare::compare;
use crate::support::{bed, form, post_form, secs, send, start_frontend, test_config};
use promql_frontend::config::FetchMode;

/// The expressions: every family the issue lists, ≥ 150 in all.
pub fn expressions() -> Vec<String> {
    let mut e: Vec<String> = [
        // Selectors.
        "up",
        "http_requests_total",
        "http_requests_total{code=\"500\"}",
        "http_requests_total{handler=~\"/api/.*\",method!=\"GET\"}",
        "{__name__=~\"node_memory.*\"}",
        "temperature_celsius{sensor=\"inlet\"}",
        "request_duration_seconds_count",
        "batch_jobs_processed_total",
        "nonexistent_metric",
        "up == 0",
        // Counters.
        "resets(http_requests_total[1h])",
        "changes(up[1h])",
        "deriv(node_memory_free_bytes[10m])",
        "predict_linear(node_memory_free_bytes[30m], 3600)",
        "delta(temperature_celsius[15m])",
        "idelta(temperature_celsius[5m])",
        "rate(batch_jobs_processed_total[10m])",
        "increase(batch_jobs_processed_total[1h])",
        // Aggregations with by/without.
        "sum(up)",
        "sum by (instance) (node_memory_free_bytes)",
        "avg without (sensor) (temperature_celsius)",
        "min by (sensor) (temperature_celsius)",
        "max without (instance) (temperature_celsius)",
        "count by (code) (http_requests_total)",
        "stddev(temperature_celsius)",
        "stdvar by (sensor) (temperature_celsius)",
        "group by (job) (up)",
        "count_values(\"v\", up)",
        "quantile(0.9, temperature_celsius)",
        "quantile by (sensor) (0.5, temperature_celsius)",
        "sum by (code, method) (rate(http_requests_total[5m]))",
        "sum without (instance, handler) (rate(http_requests_total[5m]))",
        "avg by (handler) (rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m]))",
        // topk / bottomk (compared as per-timestamp multisets).
        "topk(3, temperature_celsius)",
        "bottomk(2, node_memory_free_bytes)",
        "topk by (sensor) (1, temperature_celsius)",
        "topk(5, rate(http_requests_total[5m]))",
        "bottomk(1, up)",
        // Binary operators and vector matching.
        "node_memory_free_bytes / 1024 / 1024",
        "temperature_celsius * 1.8 + 32",
        "-temperature_celsius",
        "temperature_celsius > 5",
        "temperature_celsius > bool 5",
        "up * on(instance) group_left node_memory_free_bytes",
        "node_memory_free_bytes * on(instance) group_left(sensor) temperature_celsius{sensor=\"inlet\"}",
        "temperature_celsius{sensor=\"inlet\"} - ignoring(sensor) temperature_celsius{sensor=\"outlet\"}",
        "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / sum by (instance) (rate(http_requests_total[5m]))",
        "rate(http_requests_total{code=\"500\"}[5m]) / ignoring(code) rate(http_requests_total{code=\"200\"}[5m])",
        "up and on(instance) (node_memory_free_bytes > 5e9)",
        "up or vector(0)",
        "temperature_celsius unless on(instance) (up == 0)",
        "sum(rate(http_requests_total[5m])) by (handler) > bool 10",
        "node_memory_free_bytes % 1000",
        "2 ^ 3 * up",
        "atan2(temperature_celsius, 10)" ,
        // Classic histograms.
        "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.9, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.99, sum by (le, instance) (rate(request_duration_seconds_bucket[10m])))",
        "histogram_quantile(0.99, rate(request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.75, sum without (instance) (increase(request_duration_seconds_bucket[1h])))",
        "sum(rate(request_duration_seconds_bucket{le=\"0.1\"}[5m])) / sum(rate(request_duration_seconds_count[5m]))",
        // Math and misc functions.
        "abs(temperature_celsius)",
        "ceil(temperature_celsius)",
        "floor(temperature_celsius)",
        "round(temperature_celsius)",
        "round(temperature_celsius, 0.5)",
        "clamp(temperature_celsius, 0, 10)",
        "clamp_min(temperature_celsius, 0)",
        "clamp_max(temperature_celsius, 3)",
        "exp(temperature_celsius / 10)",
        "ln(node_memory_free_bytes)",
        "log2(node_memory_free_bytes)",
        "log10(node_memory_free_bytes)",
        "sqrt(node_memory_free_bytes)",
        "sgn(temperature_celsius)",
        "timestamp(up)",
        "timestamp(batch_jobs_processed_total)",
        "time()",
        "time() - timestamp(up)",
        "minute()",
        "hour()",
        "day_of_week()",
        "day_of_month()",
        "days_in_month()",
        "month()",
        "year()",
        "hour(timestamp(up))",
        "vector(1)",
        "vector(time())",
        "scalar(sum(up))",
        "scalar(up)",
        "sum(up) + scalar(count(up))",
        "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
        "label_join(up, \"id\", \"-\", \"job\", \"instance\")",
        "sort(temperature_celsius)",
        "sort_desc(node_memory_free_bytes)",
        "absent(up{job=\"nope\"})",
        "absent(nonexistent_metric)",
        "absent(up)",
        "absent_over_time(batch_jobs_processed_total{batch=\"b3\"}[10m])",
        "present_over_time(batch_jobs_processed_total[10m])",
        // offset.
        "up offset 1h",
        "rate(http_requests_total[5m] offset 1h)",
        "sum(rate(http_requests_total[5m] offset 1d))",
        "temperature_celsius offset -30m",
        "rate(http_requests_total{code=\"200\"}[10m] offset -1h)",
        "node_memory_free_bytes - node_memory_free_bytes offset 1d",
        // @ modifiers.
        "up @ start()",
        "up @ end()",
        "rate(http_requests_total{code=\"500\"}[5m] @ end())",
        "temperature_celsius - temperature_celsius @ start()",
        "sum(rate(http_requests_total[5m] @ start()))",
        "max_over_time(temperature_celsius[10m] @ end())",
        "avg_over_time(rate(http_requests_total[5m])[30m:5m] @ end())",
        "topk(2, temperature_celsius @ start())",
        "sum(up @ start()) - sum(up @ end())",
        "temperature_celsius @ start() offset 10m",
        // Subqueries.
        "max_over_time(rate(http_requests_total[5m])[30m:1m])",
        "avg_over_time(up[1h:5m])",
        "min_over_time(sum(rate(http_requests_total[5m]))[1h:10m])",
        "max_over_time(deriv(node_memory_free_bytes[10m])[1h:])",
        "rate(http_requests_total[5m])[20m:2m] offset 10m",
        "sum_over_time(sum by (sensor) (temperature_celsius)[30m:7m])",
        "max_over_time(max_over_time(temperature_celsius[5m])[30m:5m])[1h:10m]",
        "quantile_over_time(0.9, rate(http_requests_total{code=\"200\"}[5m])[1h:5m])",
        "last_over_time(up[30m:3m])",
        "stddev_over_time(avg(temperature_celsius)[1h:1m])",
        // Functions that fail at evaluation time (422 execution).
        "up + on(job) up",
        "http_requests_total + on(job) http_requests_total",
        "label_replace(up, \"instance\", \"x\", \"\", \"\")",
        "up * on(job) group_left node_memory_free_bytes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // rate/irate/increase and *_over_time families over several windows and selectors.
    for f in ["rate", "irate", "increase"] {
        for w in ["2m", "5m", "1h"] {
            e.push(format!(
                "{f}(http_requests_total{{handler=\"/api/orders\"}}[{w}])"
            ));
        }
        e.push(format!("sum by (code) ({f}(http_requests_total[5m]))"));
    }
    for f in [
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "present_over_time",
    ] {
        e.push(format!("{f}(temperature_celsius[10m])"));
        e.push(format!(
            "{f}(node_memory_free_bytes{{instance=\"host-3:8080\"}}[1h])"
        ));
    }
    e.push("quantile_over_time(0.5, temperature_celsius[30m])".into());
    e
}

/// The windows: (name, start ms, end ms, step).
fn windows(end_ms: i64) -> Vec<(&'static str, i64, i64, &'static str)> {
    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;
    let midnight = (end_ms - 6 * H).div_euclid(D) * D;
    vec![
        ("1h/15s", end_ms - H, end_ms, "15s"),
        ("2d/60s", end_ms - 2 * D, end_ms, "60"),
        ("3d/5m", end_ms - 3 * D + 5 * 60_000, end_ms, "5m"),
        (
            "unaligned",
            end_ms - 30 * H + 1_700,
            end_ms - 2 * H - 3_300,
            "60",
        ),
        ("step 7m", end_ms - 50 * H, end_ms - H, "7m"),
        (
            "across midnight",
            midnight - 3 * H + 500,
            midnight + 3 * H,
            "15",
        ),
    ]
}

/// Per-interval fetching: every query cut at every UTC midnight, one request per piece.
#[tokio::test]
async fn split_answers_equal_direct_answers() {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.query_range.fetch = FetchMode::PerInterval;
    equal_to_direct(config).await;
}

/// Planned fetching told that every query is expensive: each is probed and then cut into
/// parallel parts at grid points that are not midnights.
#[tokio::test]
async fn planned_parts_equal_direct_answers() {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.query_range.fetch = FetchMode::Planned;
    config.query_range.parallel_part_duration = std::time::Duration::from_micros(1);
    config.query_range.split_interval = std::time::Duration::from_secs(3600);
    config.query_range.adaptive_concurrency = false;
    config.query_range.max_inflight_pieces = 8;
    equal_to_direct(config).await;
}

/// Every expression over every window, through a frontend with `config` (GET and POST),
/// equals Prometheus' own answer.
async fn equal_to_direct(config: promql_frontend::Config) {
    let tb = bed().await;
    let fe = start_frontend(config).await;
    let exprs = expressions();
    assert!(exprs.len() >= 150, "only {} expressions", exprs.len());
    let gate = Arc::new(Semaphore::new(4));
    let mut tasks = JoinSet::new();
    for expr in exprs.clone() {
        for (window, start, end, step) in windows(tb.end_ms) {
            let (prom, fe_url, gate) = (tb.prom_url.clone(), fe.url.clone(), gate.clone());
            let expr = expr.clone();
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let qs = form(&[
                    ("query", &expr),
                    ("start", &secs(start)),
                    ("end", &secs(end)),
                    ("step", step),
                ]);
                let direct = send(
                    Method::GET,
                    &format!("{prom}/api/v1/query_range?{qs}"),
                    &[],
                    None,
                )
                .await;
                let get = send(
                    Method::GET,
                    &format!("{fe_url}/api/v1/query_range?{qs}"),
                    &[],
                    None,
                )
                .await;
                let post = post_form(&format!("{fe_url}/api/v1/query_range"), &qs).await;
                let differs =
                    |via: &crate::support::Reply| compare(&expr, &direct, via, false).is_some();
                // Only when an answer differs: does Prometheus agree with itself?
                let mut nondeterministic = false;
                if differs(&get) || differs(&post) {
                    for _ in 0..3 {
                        let again = send(
                            Method::GET,
                            &format!("{prom}/api/v1/query_range?{qs}"),
                            &[],
                            None,
                        )
                        .await;
                        nondeterministic |= again.body != direct.body;
                    }
                }
                let mut problems = Vec::new();
                for (method, via) in [("GET", &get), ("POST", &post)] {
                    if let Some(p) = compare(&expr, &direct, via, nondeterministic) {
                        problems.push(format!("{method} {expr} [{window}]: {p}"));
                    }
                }
                (direct.status.as_u16(), problems)
            });
        }
    }
    let (mut compared, mut failing_direct, mut problems) = (0, 0, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (status, p) = joined.expect("comparison task");
        compared += 1;
        failing_direct += usize::from(status != 200);
        problems.extend(p);
    }
    assert_eq!(compared, exprs.len() * 6);
    assert!(
        failing_direct >= 4 * 6,
        "the runtime-error expressions must fail directly too"
    );
    assert!(
        problems.is_empty(),
        "{} of {} comparisons differ:\n{}",
        problems.len(),
        compared * 2,
        problems.join("\n")
    );
}
