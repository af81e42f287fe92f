//! Scenario 9, the live dashboard at now: a 12-panel dashboard refreshed at the
//! wall-clock now on data that reaches now, as a real one is.
//!
//! The data is a week of generated history backfilled into a fresh Prometheus, which
//! then scrapes the same series live from `promql-frontend-testdata --serve` (see
//! `support::live`). Each refresh asks every panel, one request at a time: of Prometheus
//! directly (the whole range), of Prometheus for only the last `cache.max_freshness` of
//! the same grid (the tail no frontend that never serves stale data can take from a
//! cache: the floor), and through a frontend with the memory backend and one with Redis.
//! The same tail is also asked without `Accept-Encoding: gzip` (the frontend asks the
//! querier uncompressed by default). The order of the five rotates from panel to panel. The frontends' querier requests
//! and querier time per refresh come from their `/metrics`; directly, every panel is one
//! querier request and its latency is the querier time.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    Client, DAY, FrontendProc, H, Report, env_num, frontend_toml, median, metrics_text, ms,
};
use crate::support::live::{LiveBed, build_live_bed};
use crate::support::{form, secs, start_redis};

/// Days of history: the 7-day panels, their hour of lookback and a little more.
const DATA_DAYS: f64 = 7.1;
/// The frontends' `cache.max_freshness` (the default): the tail-only query's length.
const FRESHNESS_MS: i64 = 10 * 60_000;

/// One dashboard panel, as Grafana asks it.
struct Panel {
    title: &'static str,
    expr: &'static str,
    range: i64,
    /// Grafana's step for the range: 6h → 20s, 24h → 1m, 2d → 2m, 7d → 10m.
    step_s: i64,
}

const fn panel(title: &'static str, expr: &'static str, range: i64) -> Panel {
    let step_s = match range {
        r if r <= 6 * H => 20,
        r if r <= DAY => 60,
        r if r <= 2 * DAY => 120,
        _ => 600,
    };
    Panel {
        title,
        expr,
        range,
        step_s,
    }
}

/// The panels: the mix of the dashboard scenario (4) on the ranges Grafana users pick.
const PANELS: [Panel; 12] = [
    panel("req rate", "sum(rate(http_requests_total[5m]))", 6 * H),
    panel(
        "req rate by code",
        "sum by (code) (rate(http_requests_total[5m]))",
        DAY,
    ),
    panel(
        "errors",
        "sum(rate(http_requests_total{code=~\"5..\"}[5m]))",
        7 * DAY,
    ),
    panel(
        "p90 latency",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        6 * H,
    ),
    panel(
        "p99 by handler",
        "histogram_quantile(0.99, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
        2 * DAY,
    ),
    panel(
        "p50 7d",
        "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        7 * DAY,
    ),
    panel("temperature", "temperature_celsius", 6 * H),
    panel("free memory", "node_memory_free_bytes", DAY),
    panel("up", "up", 6 * H),
    panel(
        "batch jobs",
        "sum(increase(batch_jobs_processed_total[1h]))",
        7 * DAY,
    ),
    panel(
        "req rate by handler",
        "sum by (handler) (rate(http_requests_total[5m]))",
        2 * DAY,
    ),
    panel(
        "avg temperature",
        "avg by (sensor) (temperature_celsius)",
        7 * DAY,
    ),
];

/// Where a panel is asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Prometheus, the whole range.
    Full,
    /// Prometheus, the last `max_freshness` of the grid only: the floor.
    Tail,
    /// The same tail asked without `Accept-Encoding: gzip` (as the frontend asks the
    /// querier by default): the querier's own work for it, without compression.
    TailPlain,
    /// The frontend with the memory backend.
    Memory,
    /// The frontend with the Redis backend.
    Redis,
}

impl Route {
    const ALL: [Route; 5] = [
        Route::Full,
        Route::Tail,
        Route::TailPlain,
        Route::Memory,
        Route::Redis,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::Full => "direct, full range",
            Route::Tail => "direct, tail only (floor)",
            Route::TailPlain => "direct, tail only, uncompressed",
            Route::Memory => "frontend, memory",
            Route::Redis => "frontend, redis",
        }
    }
}

/// The panel's grid at `now`, aligned as Grafana aligns it: `(start, end, tail start)`,
/// where the tail starts at the first grid point at or after `end - max_freshness`.
fn grid(p: &Panel, now: i64) -> (i64, i64, i64) {
    let step = p.step_s * 1000;
    let (start, end) = (
        (now - p.range).div_euclid(step) * step,
        now.div_euclid(step) * step,
    );
    let from = end - FRESHNESS_MS;
    let tail = start + (from - start + step - 1).div_euclid(step) * step;
    (start, end, tail.max(start))
}

/// The frontend's range-query requests to the querier and their summed time so far.
async fn querier_work(client: &Client, fe: &str) -> (f64, f64) {
    let text = metrics_text(client, fe).await;
    let sum = |keep: &dyn Fn(&str) -> bool| -> f64 {
        text.lines()
            .filter(|l| keep(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum(&|l| {
            l.starts_with("promql_frontend_downstream_attempts_total{")
                && l.contains("kind=\"query_range\"")
        }),
        sum(&|l| l.starts_with("promql_frontend_downstream_attempt_duration_seconds_sum{")),
    )
}

/// Bytes of a body once gunzipped (as it came when not gzip).
fn plain_len(body: &[u8]) -> usize {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return body.len();
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).map_or(0, |n| n)
}

/// The live bed, the two frontends and the Redis behind one of them.
struct Setup {
    bed: LiveBed,
    memory: FrontendProc,
    redis: FrontendProc,
    _redis_server: crate::support::Supervised,
}

impl Setup {
    fn url(&self, route: Route) -> &str {
        match route {
            Route::Full | Route::Tail | Route::TailPlain => &self.bed.prom_url,
            Route::Memory => &self.memory.url,
            Route::Redis => &self.redis.url,
        }
    }
}

/// Asks panel `p` at `now` by `route`; returns the latency and the answer's size.
async fn ask(client: &Client, s: &Setup, p: &Panel, now: i64, route: Route) -> (Duration, usize) {
    let (start, end, tail) = grid(p, now);
    let from = if matches!(route, Route::Tail | Route::TailPlain) {
        tail
    } else {
        start
    };
    let body = form(&[
        ("query", p.expr),
        ("start", &secs(from)),
        ("end", &secs(end)),
        ("step", &p.step_s.to_string()),
    ]);
    let url = format!("{}/api/v1/query_range", s.url(route));
    let gzip = [("x-dashboard-uid", "live"), ("accept-encoding", "gzip")];
    let headers = if route == Route::TailPlain {
        &gzip[..1]
    } else {
        &gzip[..]
    };
    let a = client.post_form(&url, body, headers).await;
    assert_eq!(
        a.status,
        200,
        "{} by {}: {}",
        p.expr,
        route.label(),
        String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
    );
    (a.took, plain_len(&a.body))
}

/// Latencies of one route: `[panel][refresh]`.
type Lat = Vec<Vec<Duration>>;

/// What a run measured.
struct Measured {
    /// Per route (in `Route::ALL` order), per panel, per refresh.
    lat: Vec<Lat>,
    /// Each panel's direct full answer, bytes of JSON.
    sizes: [usize; PANELS.len()],
    /// Memory and Redis frontends: querier requests and seconds over the refreshes.
    work: [(f64, f64); 2],
    /// Per route, the warm-up load's panels summed.
    first: [Duration; Route::ALL.len()],
    refreshes: usize,
    scrape_s: u64,
    every_s: u64,
    /// Building the live bed, all of it.
    bed_took: Duration,
}

/// Scenario 9. `dir` holds the frontends' configs and logs.
pub async fn run(client: &Client, dir: &Path, r: &mut Report) {
    let scrape_s: u64 = env_num("BENCH_LIVE_SCRAPE", 5);
    let every_s: u64 = env_num("BENCH_LIVE_EVERY", 10);
    let refreshes: usize = env_num("BENCH_LIVE_REFRESHES", 10);
    let built = Instant::now();
    let bed =
        tokio::task::spawn_blocking(move || build_live_bed("bench-live", DATA_DAYS, scrape_s))
            .await
            .expect("live bed");
    let bed_took = built.elapsed();
    eprintln!("live bed ready in {bed_took:.0?}");
    let (redis_proc, redis_port) = tokio::task::spawn_blocking(|| start_redis(None))
        .await
        .expect("redis");
    let memory = FrontendProc::start(
        dir,
        "live-memory",
        &frontend_toml(&bed.prom_url, "backend = \"memory\""),
    );
    let redis_toml =
        format!("backend = \"redis\"\n[cache.redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\"");
    let redis = FrontendProc::start(
        dir,
        "live-redis",
        &frontend_toml(&bed.prom_url, &redis_toml),
    );
    let s = Setup {
        bed,
        memory,
        redis,
        _redis_server: redis_proc,
    };

    // The first load fills the frontends' caches (7 days of several panels).
    let now = chrono::Utc::now().timestamp_millis();
    let mut first = [Duration::ZERO; Route::ALL.len()];
    for p in &PANELS {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            first[i] += ask(client, &s, p, now, route).await.0;
        }
    }

    let mut m = Measured {
        lat: vec![vec![Vec::new(); PANELS.len()]; Route::ALL.len()],
        sizes: [0; PANELS.len()],
        work: [(0.0, 0.0); 2],
        first,
        refreshes,
        scrape_s,
        every_s,
        bed_took,
    };
    let started = Instant::now();
    for k in 0..refreshes {
        let due = started + Duration::from_secs(every_s) * (k as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
        let now = chrono::Utc::now().timestamp_millis();
        let before = [
            querier_work(client, &s.memory.url).await,
            querier_work(client, &s.redis.url).await,
        ];
        for (i, p) in PANELS.iter().enumerate() {
            for j in 0..Route::ALL.len() {
                let route = Route::ALL[(i + k + j) % Route::ALL.len()];
                let (took, size) = ask(client, &s, p, now, route).await;
                let at = Route::ALL.iter().position(|r| *r == route).unwrap_or(0);
                m.lat[at][i].push(took);
                if route == Route::Full {
                    m.sizes[i] = size;
                }
            }
        }
        let after = [
            querier_work(client, &s.memory.url).await,
            querier_work(client, &s.redis.url).await,
        ];
        for ((w, a), b) in m.work.iter_mut().zip(after).zip(before) {
            w.0 += a.0 - b.0;
            w.1 += a.1 - b.1;
        }
    }
    let took_all = started.elapsed();
    report(r, &s.bed, &m);
    eprintln!("live: {refreshes} refreshes in {took_all:.0?}");
}

/// Writes the scenario's section.
fn report(r: &mut Report, bed: &LiveBed, m: &Measured) {
    let Measured {
        lat,
        sizes,
        work,
        first,
        refreshes,
        scrape_s,
        every_s,
        bed_took,
    } = m;
    let n = *refreshes as f64;
    r.line(format!(
        "### 9. Live dashboard at now: 12 panels, {refreshes} refreshes at the wall clock, every {every_s} s"
    ));
    r.line("");
    r.line(format!(
        "{DATA_DAYS} days of history ({} series, {} samples, 60 s grid) written in {:.1} s and backfilled in {:.1} s (the bed, Prometheus start and first scrape included, in {:.0} s); then the same series scraped live every {scrape_s} s from `promql-frontend-testdata --serve` (`honor_labels`). Panels asked one at a time as Grafana POST forms (start and end aligned to the step); the tail-only query is the last 10 minutes (`cache.max_freshness`) of the same grid.",
        bed.written.series,
        bed.written.samples,
        bed.generated_in.as_secs_f64(),
        bed.backfilled_in.as_secs_f64(),
        bed_took.as_secs_f64(),
    ));
    r.line("");
    r.line("| panel | range, step | answer | direct, full | direct, tail only (floor) | tail, uncompressed | frontend, memory | frontend, redis | memory / floor | redis / floor | direct / memory |");
    r.line("|---|---|---|---|---|---|---|---|---|---|---|");
    let [full, tail, plain, mem, red] = [&lat[0], &lat[1], &lat[2], &lat[3], &lat[4]];
    for (i, p) in PANELS.iter().enumerate() {
        let m = |l: &Lat| median(&l[i]);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let range = match p.range {
            r if r < DAY => format!("{} h", r / H),
            r => format!("{} d", r / DAY),
        };
        r.line(format!(
            "| {} | {range}, {} s | {:.0} KB | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.1}× |",
            p.title,
            p.step_s,
            sizes[i] as f64 / 1000.0,
            ms(m(full)),
            ms(m(tail)),
            ms(m(plain)),
            ms(m(mem)),
            ms(m(red)),
            ratio(m(mem), m(tail)),
            ratio(m(red), m(tail)),
            ratio(m(full), m(mem)),
        ));
    }
    r.line("");
    let all = |l: &Lat| -> Vec<Duration> { l.iter().flatten().copied().collect() };
    let floor = median(&all(tail));
    let direct = median(&all(full));
    let direct_time = all(full).iter().map(Duration::as_secs_f64).sum::<f64>() / n;
    r.line("| path | median panel | first load (all panels, cold cache) | querier requests per refresh | querier time per refresh | / floor (median) | direct / this (median) | querier time vs direct |");
    r.line("|---|---|---|---|---|---|---|---|");
    for (i, route) in Route::ALL.into_iter().enumerate() {
        let med = median(&all(&lat[i]));
        let (reqs, time) = match route {
            Route::Full | Route::Tail | Route::TailPlain => (
                PANELS.len() as f64,
                all(&lat[i]).iter().map(Duration::as_secs_f64).sum::<f64>() / n,
            ),
            Route::Memory => (work[0].0 / n, work[0].1 / n),
            Route::Redis => (work[1].0 / n, work[1].1 / n),
        };
        r.line(format!(
            "| {} | {} | {} | {reqs:.1} | {} | {:.2}× | {:.1}× | {:.0}% lower |",
            route.label(),
            ms(med),
            ms(first[i]),
            ms(Duration::from_secs_f64(time)),
            med.as_secs_f64() / floor.as_secs_f64(),
            direct.as_secs_f64() / med.as_secs_f64(),
            (1.0 - time / direct_time) * 100.0,
        ));
    }
    r.line("");
    let mem_med = median(&all(mem));
    let mem_time = work[0].1 / n;
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    r.line(format!(
        "Issue 16's goals, frontend with the memory backend: median panel ≤ 1.3× the floor: {:.2}×, {}; ≥ 20× faster than direct: {:.1}×, {}; querier time per refresh ≥ 90% lower than direct: {:.0}%, {}.",
        mem_med.as_secs_f64() / floor.as_secs_f64(),
        verdict(mem_med.as_secs_f64() <= 1.3 * floor.as_secs_f64()),
        direct.as_secs_f64() / mem_med.as_secs_f64(),
        verdict(direct.as_secs_f64() >= 20.0 * mem_med.as_secs_f64()),
        (1.0 - mem_time / direct_time) * 100.0,
        verdict(mem_time <= 0.1 * direct_time),
    ));
    r.line("");
    r.line(format!(
        "Against the tail asked uncompressed (the querier's work without gzip, which the frontend does not ask for by default): median panel {:.2}×.",
        mem_med.as_secs_f64() / median(&all(plain)).as_secs_f64(),
    ));
    r.line("");
    r.line("Medians over the refreshes (the warm-up load excluded); \"answer\" is the direct full answer's JSON. Frontend querier requests and time are its range-query attempts from `/metrics` (`downstream_attempts_total`, `downstream_attempt_duration_seconds`), averaged per refresh; direct, each panel is one request and its latency is the querier time.");
    r.line("");
    r.line("Not covered: panels asked concurrently (Grafana sends them at once; here one at a time, so the latencies are free of contention on the 2 cores); several users or dashboards sharing the cache; refreshes faster than the scrape interval; a querier whose recent data changes after the fact (remote write, Thanos sidecar uploads), which is what `max_freshness` guards against; variable templating, `$__rate_interval` and Grafana's own caching; the correctness of the answers (the `live_edge` e2e test checks that).");
    r.line("");
}
