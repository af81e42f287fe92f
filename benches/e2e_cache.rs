//! End-to-end cache benchmark on the real test bed: a 7-day range query (step 5m) cold,
//! warm, warm with `end` moved by 60 s, and warm with the whole window moved by one step
//! (what a Grafana refresh sends: Grafana aligns start and end to the step), through the
//! frontend (memory and Redis backends) and directly against Prometheus, alternating, in
//! one run. Prints medians and ratios (the table in BENCHMARKS.md).
//!
//! Run: `cargo bench --bench e2e_cache` (needs prometheus and redis-server installed;
//! `make deps` installs them). Takes about two minutes.

#[path = "../tests/e2e/support.rs"]
mod support;

use std::time::{Duration, Instant};

use http::Method;
use support::{
    build_testbed, form, redis_config, secs, send, start_frontend, start_redis, test_config,
};

const REPS: usize = 7;
const H: i64 = 3_600_000;

const QUERIES: &[(&str, &str)] = &[
    (
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
    ),
    (
        "sum by rate",
        "sum by (code) (rate(http_requests_total[5m]))",
    ),
];

async fn timed(base: &str, expr: &str, start: i64, end: i64, tenant: &str) -> Duration {
    let qs = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", "5m"),
    ]);
    let t = Instant::now();
    let r = send(
        Method::GET,
        &format!("{base}/api/v1/query_range?{qs}"),
        &[("x-scope-orgid", tenant)],
        None,
    )
    .await;
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        eprintln!("building 8 days of test data...");
        let tb = tokio::task::spawn_blocking(|| build_testbed(8.0)).await.expect("test bed");
        let (_redis, redis_port) = tokio::task::spawn_blocking(|| start_redis(None)).await.expect("redis");
        let memory = start_frontend(test_config(&tb.prom_url)).await;
        let redis = start_frontend(redis_config(&tb.prom_url, redis_port)).await;
        // A 7-day window ending an hour before the data ends (older than max_freshness).
        let (start, end) = (tb.end_ms - 7 * 24 * H - H, tb.end_ms - H);
        println!("| query | path | cold | warm | warm, end +60s | warm, window +5m | cold / direct | direct / warm |");
        println!("|---|---|---|---|---|---|---|---|");
        for (name, expr) in QUERIES {
            // Warm Prometheus' own page cache first so "direct" is not penalised.
            timed(&tb.prom_url, expr, start, end, "warmup").await;
            let mut direct = Vec::new();
            type Row = (&'static str, String, [Vec<Duration>; 4]);
            let mut rows: Vec<Row> = vec![
                ("memory", memory.url.clone(), Default::default()),
                ("redis", redis.url.clone(), Default::default()),
            ];
            for rep in 0..REPS {
                direct.push(timed(&tb.prom_url, expr, start, end, "direct").await);
                for (backend, url, [cold, warm, moved, shifted]) in rows.iter_mut() {
                    // A fresh tenant per repetition: an empty cache for this query.
                    let tenant = format!("{backend}-{rep}");
                    cold.push(timed(url, expr, start, end, &tenant).await);
                    // Let the background writes land before the warm run.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    warm.push(timed(url, expr, start, end, &tenant).await);
                    moved.push(timed(url, expr, start, end + 60_000, &tenant).await);
                    shifted.push(timed(url, expr, start + 300_000, end + 300_000, &tenant).await);
                }
            }
            let d = median(direct);
            println!("| {name} | direct Prometheus | {} | | | | | |", ms(d));
            for (backend, _, [cold, warm, moved, shifted]) in rows {
                let (c, w, m, s) = (median(cold), median(warm), median(moved), median(shifted));
                println!(
                    "| {name} | frontend, {backend} | {} | {} | {} | {} | {:.2}× | {:.0}× |",
                    ms(c),
                    ms(w),
                    ms(m),
                    ms(s),
                    c.as_secs_f64() / d.as_secs_f64(),
                    d.as_secs_f64() / w.as_secs_f64()
                );
            }
        }
        println!("\n{REPS} repetitions, medians; 8 days of data, ~450 series, 60 s scrape interval.");
    });
}
