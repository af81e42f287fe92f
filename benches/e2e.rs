//! The end-to-end benchmark (`make bench`): the release binary as its own process in
//! front of a real Prometheus on generated data, measured side by side with Prometheus
//! itself (and nginx's `proxy_cache` for the warm-throughput row) in one run.
//!
//! Scenarios (see BENCHMARKS.md for what each measures and why):
//! 1. passthrough overhead: a small instant query and `/api/v1/labels`, latency at
//!    concurrency 1 and throughput at concurrency 32;
//! 2. cold long range queries (7 and 14 days) with an empty cache;
//! 3. warm repeats of them;
//! 4. a 12-panel dashboard refreshed 20 times, `end` advancing 30 s (POST forms, steps and
//!    alignment as Grafana picks them);
//! 5. warm throughput at concurrency 32, frontend vs nginx `proxy_cache`;
//! 6. scenarios 3 and 4 with the Redis backend;
//! 7. the frontend's peak RSS per scenario, and RSS under a workload larger than a small
//!    configured cache.
//!
//! Environment: `BENCH_DAYS` (data, default 15), `BENCH_REPS` (default 5),
//! `BENCH_SECS` (throughput runs, default 10), `BENCH_REPORT` (file to write the report
//! section to, default BENCHMARKS.md; `-` prints only).

#[path = "../tests/e2e/support.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{
    Scratch, Supervised, TestBed, build_testbed, form, free_port, probe_status, require_binary,
    secs, start_redis,
};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP client shared by every request of the run.
#[derive(Clone)]
struct Client(HyperClient<HttpConnector, Full<Bytes>>);

/// One answered request.
struct Answer {
    status: u16,
    bytes: usize,
    took: Duration,
}

impl Client {
    fn new() -> Client {
        Client(
            HyperClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(128)
                .build_http(),
        )
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        let started = Instant::now();
        let resp = self.0.request(req).await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            bytes: body.len(),
            took: started.elapsed(),
        }
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(Bytes::new())).expect("request"))
            .await
    }

    async fn post_form(&self, url: &str, body: String, headers: &[(&str, &str)]) -> Answer {
        let mut req =
            Request::post(url).header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(Bytes::from(body))).expect("request"))
            .await
    }
}

/// The release binary as its own process.
struct FrontendProc {
    url: String,
    proc: Supervised,
}

impl FrontendProc {
    fn start(dir: &Path, name: &str, toml: &str) -> FrontendProc {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{toml}"),
        )
        .expect("write config");
        let args = vec!["--config".to_owned(), config.display().to_string()];
        let proc = Supervised::start(
            env!("CARGO_BIN_EXE_promql-frontend"),
            &args,
            &dir.join(format!("{name}.log")),
            None,
        );
        let until = Instant::now() + Duration::from_secs(20);
        while probe_status(port, "/-/healthy") != Some(200) {
            assert!(
                Instant::now() < until,
                "{name} did not start:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        FrontendProc {
            url: format!("http://127.0.0.1:{port}"),
            proc,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.pid().expect("frontend pid")
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// (current RSS, peak RSS since the last reset), MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

fn frontend_toml(prom: &str, cache: &str) -> String {
    format!(
        "[downstream]\nurl = \"{prom}\"\n\n[cache]\n{cache}\n\n[slow_query_log]\nthreshold = \"0s\"\n\n[log]\nlevel = \"warn\"\n"
    )
}

/// nginx with a `proxy_cache` in front of `prom`, as an SRE would set it up.
fn start_nginx(dir: &Path, prom: &str) -> (Supervised, String) {
    require_binary("nginx", "nginx");
    let port = free_port();
    let root = dir.join("nginx");
    for sub in ["cache", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("nginx dirs");
    }
    let upstream = prom.trim_start_matches("http://");
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let r = root.display();
    let conf = format!(
        r#"{user}daemon off;
worker_processes 2;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {r}/tmp/body;
  proxy_temp_path {r}/tmp/proxy;
  fastcgi_temp_path {r}/tmp/fastcgi;
  uwsgi_temp_path {r}/tmp/uwsgi;
  scgi_temp_path {r}/tmp/scgi;
  proxy_cache_path {r}/cache levels=1:2 keys_zone=prom:16m max_size=2g inactive=60m use_temp_path=off;
  upstream prometheus {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://prometheus;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache prom;
      proxy_cache_key $request_uri;
      proxy_cache_valid 200 10m;
      proxy_cache_lock on;
    }}
  }}
}}
"#,
        user = if is_root { "user root;\n" } else { "" },
    );
    let path = root.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let args = vec![
        "-c".to_owned(),
        path.display().to_string(),
        "-p".to_owned(),
        root.display().to_string(),
    ];
    let proc = Supervised::start("nginx", &args, &root.join("stderr.log"), None);
    let until = Instant::now() + Duration::from_secs(10);
    while probe_status(port, "/api/v1/status/buildinfo").is_none() {
        assert!(
            Instant::now() < until,
            "nginx did not start:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, format!("http://127.0.0.1:{port}"))
}

fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn median(v: &[Duration]) -> Duration {
    let s = sorted(v);
    s.get(s.len() / 2).copied().unwrap_or_default()
}

fn p99(v: &[Duration]) -> Duration {
    let s = sorted(v);
    let i = ((s.len() as f64) * 0.99).ceil() as usize;
    s.get(i.saturating_sub(1).min(s.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// Requests per second of `make` at `concurrency` for `secs` seconds.
async fn throughput(client: &Client, concurrency: usize, secs: u64, url: &str) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.to_owned());
        let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = client.get(&url, &[]).await;
                if a.status == 200 {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let n = done.load(Ordering::Relaxed);
    (
        n as f64 / started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

/// A Prometheus metric's value summed over every series whose line starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Querier requests and querier seconds the frontend spent so far.
async fn downstream_work(client: &Client, fe: &str) -> (f64, f64) {
    let req = Request::get(format!("{fe}/metrics"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.0.request(req).await.expect("metrics");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    (
        metric_sum(&text, "promql_frontend_downstream_attempts_total{"),
        metric_sum(
            &text,
            "promql_frontend_downstream_attempt_duration_seconds_sum{",
        ),
    )
}

fn range_url(base: &str, expr: &str, start: i64, end: i64, step: &str) -> String {
    format!(
        "{base}/api/v1/query_range?{}",
        form(&[
            ("query", expr),
            ("start", &secs(start)),
            ("end", &secs(end)),
            ("step", step),
        ])
    )
}

const HEAVY: &[(&str, &str)] = &[
    (
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
    ),
    (
        "sum by rate",
        "sum by (code) (rate(http_requests_total[5m]))",
    ),
];

/// Grafana's choice of step for ~1,000 points over `range_ms`: the smallest "nice"
/// interval at or above range / 1000, never below the 60 s scrape interval.
fn grafana_step_s(range_ms: i64) -> i64 {
    const NICE: [i64; 10] = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];
    let raw = range_ms / 1000 / 1000;
    NICE.into_iter().find(|&s| s >= raw).unwrap_or(21600)
}

/// The 12 panels: (title, PromQL, range).
const PANELS: &[(&str, &str, i64)] = &[
    ("req rate", "sum(rate(http_requests_total[5m]))", 6 * H),
    (
        "req rate by code",
        "sum by (code) (rate(http_requests_total[5m]))",
        24 * H,
    ),
    (
        "errors",
        "sum(rate(http_requests_total{code=~\"5..\"}[5m]))",
        7 * DAY,
    ),
    (
        "p90 latency",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        6 * H,
    ),
    (
        "p99 by handler",
        "histogram_quantile(0.99, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
        2 * DAY,
    ),
    (
        "p50 7d",
        "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        7 * DAY,
    ),
    ("temperature", "temperature_celsius", 12 * H),
    ("free memory", "node_memory_free_bytes", 24 * H),
    ("up", "up", 6 * H),
    (
        "batch jobs",
        "sum(increase(batch_jobs_processed_total[1h]))",
        7 * DAY,
    ),
    (
        "req rate by handler",
        "sum by (handler) (rate(http_requests_total[5m]))",
        2 * DAY,
    ),
    (
        "avg temperature",
        "avg by (sensor) (temperature_celsius)",
        7 * DAY,
    ),
];

/// One dashboard load at `now`: every panel at once, as a Grafana POST form with start
/// and end aligned to the step. Returns each panel's latency.
async fn load_dashboard(client: &Client, base: &str, now: i64) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for (_, expr, range) in PANELS {
        let step_ms = grafana_step_s(*range) * 1000;
        let end = now / step_ms * step_ms;
        let start = (now - range) / step_ms * step_ms;
        let body = form(&[
            ("query", expr),
            ("start", &secs(start)),
            ("end", &secs(end)),
            ("step", &(step_ms / 1000).to_string()),
        ]);
        let (client, url) = (client.clone(), format!("{base}/api/v1/query_range"));
        tasks.spawn(async move {
            let a = client
                .post_form(
                    &url,
                    body,
                    &[("x-dashboard-uid", "bench"), ("accept-encoding", "gzip")],
                )
                .await;
            assert_eq!(a.status, 200, "panel {expr}");
            a.took
        });
    }
    let mut out = Vec::new();
    while let Some(t) = tasks.join_next().await {
        out.push(t.expect("panel task"));
    }
    out
}

struct Report {
    text: String,
    chart: Vec<(String, Vec<f64>)>,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }
}

fn main() {
    let days: f64 = env_num("BENCH_DAYS", 15.0);
    let reps: usize = env_num("BENCH_REPS", 5);
    let tp_secs: u64 = env_num("BENCH_SECS", 10);
    let report_path = std::env::var("BENCH_REPORT").unwrap_or_else(|_| "BENCHMARKS.md".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let scratch = Scratch::new("bench");
        eprintln!("generating and backfilling {days} days of data...");
        let t = Instant::now();
        let tb: TestBed = tokio::task::spawn_blocking(move || build_testbed(days))
            .await
            .expect("test bed");
        eprintln!("test bed ready in {:.0?}", t.elapsed());
        let (_redis, redis_port) = tokio::task::spawn_blocking(|| start_redis(None))
            .await
            .expect("redis");
        let dir = scratch.0.clone();
        let prom = tb.prom_url.clone();
        let memory = FrontendProc::start(&dir, "memory", &frontend_toml(&prom, "backend = \"memory\"\nmemory_capacity_bytes = 1073741824"));
        // The same without the response cache: the before/after of that optimisation,
        // measured in the same run.
        let pieces_only = FrontendProc::start(&dir, "pieces-only", &frontend_toml(&prom, "backend = \"memory\"\nmemory_capacity_bytes = 1073741824\nresponse_capacity_bytes = 0"));
        let redis = FrontendProc::start(
            &dir,
            "redis",
            &frontend_toml(&prom, &format!("backend = \"redis\"\n[cache.redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\"")),
        );
        let (_nginx, nginx) = start_nginx(&dir, &prom);
        let client = Client::new();
        let mut r = Report { text: String::new(), chart: Vec::new() };
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        r.line(format!(
            "Run {}: {cores} cores; {days} days of generated data (~450 series, 60 s scrape); Prometheus {}; frontend release build as its own process; {reps} repetitions alternating direct and frontend; throughput runs {tp_secs} s.",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            prometheus_version(),
        ));
        r.line("");

        // 1. Passthrough overhead.
        r.line("### 1. Passthrough overhead");
        r.line("");
        r.line("| request | direct median | frontend median | added | direct p99 | frontend p99 | direct req/s (c=32) | frontend req/s (c=32) | ratio |");
        r.line("|---|---|---|---|---|---|---|---|---|");
        let instant = format!("/api/v1/query?query=up&time={}", secs(tb.end_ms));
        for (name, path) in [("instant query `up`", instant.as_str()), ("`/api/v1/labels`", "/api/v1/labels")] {
            let (mut d, mut f) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                client.get(&format!("{prom}{path}"), &[]).await;
                client.get(&format!("{}{path}", memory.url), &[]).await;
            }
            for _ in 0..(100 * reps) {
                d.push(client.get(&format!("{prom}{path}"), &[]).await.took);
                f.push(client.get(&format!("{}{path}", memory.url), &[]).await.took);
            }
            let (mut dt, mut ft) = (0.0, 0.0);
            for _ in 0..2 {
                dt += throughput(&client, 32, tp_secs / 2, &format!("{prom}{path}")).await.0;
                ft += throughput(&client, 32, tp_secs / 2, &format!("{}{path}", memory.url)).await.0;
            }
            let added = median(&f).as_secs_f64() - median(&d).as_secs_f64();
            r.line(format!(
                "| {name} | {} | {} | {:.3} ms | {} | {} | {:.0} | {:.0} | {:.2}× |",
                ms(median(&d)), ms(median(&f)), added * 1e3, ms(p99(&d)), ms(p99(&f)), dt / 2.0, ft / 2.0, ft / dt
            ));
        }
        r.line("");

        // 2 + 3 (+ 6 for Redis). Cold and warm long queries.
        r.line("### 2, 3, 6. Long range queries: cold (empty cache) and warm (repeated)");
        r.line("");
        r.line("| query | window | direct | memory cold | memory warm | memory warm, no response cache | redis cold | redis warm | cold / direct (memory) | direct / warm (memory) | direct / warm (no response cache) | direct / warm (redis) |");
        r.line("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let newest = tb.end_ms - H;
        let long_days = ((days - 1.0).floor() as i64).clamp(7, 30);
        memory.reset_peak();
        for (name, expr) in HEAVY {
            for (window_days, step) in [(7, "5m"), (long_days, "10m")] {
                let (start, end) = (newest - window_days * DAY, newest);
                let direct_url = range_url(&prom, expr, start, end, step);
                client.get(&direct_url, &[]).await; // Prometheus' own page cache warm.
                let mut cols: [Vec<Duration>; 7] = Default::default();
                for rep in 0..reps {
                    cols[0].push(client.get(&direct_url, &[]).await.took);
                    for (i, fe) in [(1, &memory), (3, &pieces_only), (5, &redis)] {
                        let tenant = format!("cold-{name}-{window_days}-{rep}");
                        let url = range_url(&fe.url, expr, start, end, step);
                        let cold = client.get(&url, &[("x-scope-orgid", &tenant)]).await;
                        assert_eq!(cold.status, 200);
                        cols[i].push(cold.took);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        cols[i + 1].push(client.get(&url, &[("x-scope-orgid", &tenant)]).await.took);
                    }
                }
                let m: Vec<Duration> = cols.iter().map(|c| median(c)).collect();
                r.line(format!(
                    "| {name} | {window_days} d, step {step} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.0}× | {:.0}× | {:.0}× |",
                    ms(m[0]), ms(m[1]), ms(m[2]), ms(m[4]), ms(m[5]), ms(m[6]),
                    m[1].as_secs_f64() / m[0].as_secs_f64(),
                    m[0].as_secs_f64() / m[2].as_secs_f64(),
                    m[0].as_secs_f64() / m[4].as_secs_f64(),
                    m[0].as_secs_f64() / m[6].as_secs_f64(),
                ));
            }
        }
        let peak_long = memory.rss_mib().1;
        r.line("");

        // 4 (+ 6). Dashboard refresh.
        r.line("### 4, 6. Dashboard refresh: 12 panels, 20 loads, `end` +30 s each");
        r.line("");
        r.line("| path | first load (slowest panel) | panel median | panel p99 | querier requests | querier time | vs direct: median | vs direct: querier time |");
        r.line("|---|---|---|---|---|---|---|---|");
        memory.reset_peak();
        let base_now = tb.end_ms - 15 * 60_000;
        let mut per_load: Vec<(String, Vec<f64>)> = Vec::new();
        let mut rows: Vec<(String, Duration, Vec<Duration>, f64, f64)> = Vec::new();
        for (label, url) in [("direct Prometheus", prom.clone()), ("frontend, memory", memory.url.clone()), ("frontend, redis", redis.url.clone())] {
            let mut first = Duration::ZERO;
            let mut later = Vec::new();
            let mut medians = Vec::new();
            let mut first_work = (0.0, 0.0);
            for load in 0..20 {
                let lat = load_dashboard(&client, &url, base_now + load * 30_000).await;
                medians.push(median(&lat).as_secs_f64() * 1e3);
                if load == 0 {
                    first = lat.iter().max().copied().unwrap_or_default();
                    if label.starts_with("frontend") {
                        first_work = downstream_work(&client, &url).await;
                    }
                } else {
                    later.extend(lat);
                }
            }
            let (reqs, time) = if label.starts_with("frontend") {
                let after = downstream_work(&client, &url).await;
                (after.0 - first_work.0, after.1 - first_work.1)
            } else {
                let n = later.len() as f64;
                (n, later.iter().map(Duration::as_secs_f64).sum())
            };
            per_load.push((label.to_owned(), medians));
            rows.push((label.to_owned(), first, later, reqs, time));
        }
        let direct_median = median(&rows[0].2);
        let direct_time = rows[0].4;
        for (label, first, later, reqs, time) in &rows {
            r.line(format!(
                "| {label} | {} | {} | {} | {reqs:.0} | {:.2} s | {:.1}× lower | {:.0}% lower |",
                ms(*first), ms(median(later)), ms(p99(later)), time,
                direct_median.as_secs_f64() / median(later).as_secs_f64(),
                (1.0 - time / direct_time) * 100.0,
            ));
        }
        let peak_dash = memory.rss_mib().1;
        r.chart = per_load;
        r.line("");
        r.line("Loads 2–20 (after the first); querier requests and time are summed over them. For the frontend they come from its `/metrics` (range-query attempts); for direct, every panel is one querier request and its latency is the querier time.");
        r.line("");

        // 5. Warm throughput vs nginx.
        r.line("### 5. Warm throughput, concurrency 32");
        r.line("");
        let (start, end) = (newest - 7 * DAY, newest);
        let warm_path = range_url("", HEAVY[1].1, start, end, "5m");
        for base in [&memory.url, &pieces_only.url, &nginx] {
            let a = client.get(&format!("{base}{warm_path}"), &[]).await;
            assert_eq!(a.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        memory.reset_peak();
        let (mut fe_tp, mut pc_tp, mut ng_tp, mut errs) = (0.0, 0.0, 0.0, 0);
        for _ in 0..2 {
            let (f, e1) = throughput(&client, 32, tp_secs / 2, &format!("{}{warm_path}", memory.url)).await;
            let (n, e2) = throughput(&client, 32, tp_secs / 2, &format!("{nginx}{warm_path}")).await;
            let (p, e3) = throughput(&client, 32, tp_secs / 2, &format!("{}{warm_path}", pieces_only.url)).await;
            fe_tp += f / 2.0;
            ng_tp += n / 2.0;
            pc_tp += p / 2.0;
            errs += e1 + e2 + e3;
        }
        let peak_tp = memory.rss_mib().1;
        r.line("| path | requests/s | ratio to nginx |");
        r.line("|---|---|---|");
        r.line(format!("| nginx `proxy_cache` (disk cache, page-cached) | {ng_tp:.0} | 1.00× |"));
        r.line(format!("| frontend, memory | {fe_tp:.0} | {:.2}× |", fe_tp / ng_tp));
        r.line(format!("| frontend, memory, no response cache (pieces only) | {pc_tp:.0} | {:.2}× |", pc_tp / ng_tp));
        r.line("");
        r.line(format!("The 7-day `sum by rate` query at step 5m ({} bytes of JSON), the same GET URL to both; errors: {errs}.", client.get(&format!("{}{warm_path}", memory.url), &[]).await.bytes));
        r.line("");

        // 7. Memory.
        r.line("### 7. Memory (frontend with the memory backend: 1 GiB piece cache, 64 MiB response cache)");
        r.line("");
        r.line("| scenario | peak RSS |");
        r.line("|---|---|");
        r.line(format!("| long queries, cold and warm (2, 3) | {peak_long:.0} MiB |"));
        r.line(format!("| dashboard refresh (4) | {peak_dash:.0} MiB |"));
        r.line(format!("| warm throughput (5) | {peak_tp:.0} MiB |"));
        r.line("");
        // The piece cache alone (no response cache), 16 MiB, under four times as much.
        let small = FrontendProc::start(&dir, "small", &frontend_toml(&prom, "backend = \"memory\"\nmemory_capacity_bytes = 16777216\nresponse_capacity_bytes = 0"));
        let mut written = 0.0;
        let mut i = 0;
        let mut worst = (0.0f64, 0.0f64);
        while written < 4.0 * 16.0 * 1024.0 * 1024.0 && i < 800 {
            let tenant = format!("fill-{i}");
            let (_, expr) = HEAVY[i % 2];
            let a = client.get(&range_url(&small.url, expr, newest - long_days * DAY, newest, "5m"), &[("x-scope-orgid", &tenant)]).await;
            assert_eq!(a.status, 200);
            i += 1;
            if i % 10 == 0 {
                let req = Request::get(format!("{}/metrics", small.url)).body(Full::new(Bytes::new())).expect("request");
                let resp = client.0.request(req).await.expect("metrics");
                let text = String::from_utf8_lossy(&resp.into_body().collect().await.expect("body").to_bytes()).into_owned();
                written = metric_sum(&text, "promql_frontend_cache_bytes_total{backend=\"memory\",op=\"write\"}");
                let (rss, hwm) = small.rss_mib();
                worst = (worst.0.max(rss), worst.1.max(hwm));
            }
        }
        r.line(format!(
            "Piece cache of 16 MiB (response cache off), {i} distinct {long_days}-day queries writing {:.0} MiB of entries: RSS at most {:.0} MiB, peak {:.0} MiB (goal: ≤ 16 + 64 = 80 MiB).",
            written / 1048576.0, worst.0, worst.1
        ));
        drop(small);
        r.line("");

        write_chart(&dir, &r.chart);
        let chart_path = PathBuf::from("benches/results/dashboard-refresh.svg");
        if report_path != "-" {
            let _ = std::fs::create_dir_all("benches/results");
            let _ = std::fs::copy(dir.join("dashboard-refresh.svg"), &chart_path);
            write_report(&report_path, &r.text);
            eprintln!("report written to {report_path} and {}", chart_path.display());
        }
    });
}

fn prometheus_version() -> String {
    std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.split_whitespace().nth(2).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

/// Replaces the section between the bench markers in `path` (appends it the first time).
fn write_report(path: &str, section: &str) {
    const START: &str = "<!-- make bench: start -->";
    const END: &str = "<!-- make bench: end -->";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let body = format!(
        "{START}\n## End-to-end: `make bench`\n\nCommand: `make bench` (= `cargo bench --bench e2e`).\n\n{section}\n![dashboard refresh: median panel latency per load](benches/results/dashboard-refresh.svg)\n{END}"
    );
    let new = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{}\n{body}\n", old.trim_end()),
    };
    std::fs::write(path, new).expect("write report");
}

/// A line chart (SVG, log scale) of the median panel latency of each dashboard load.
fn write_chart(dir: &Path, series: &[(String, Vec<f64>)]) {
    let (w, h, left, bottom) = (720.0, 360.0, 70.0, 40.0);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0f64, f64::max);
    let min = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(max, f64::min)
        .max(0.01);
    let (lo, hi) = (
        min.log10().floor(),
        max.log10().ceil().max(min.log10().floor() + 1.0),
    );
    let x = |i: usize, n: usize| left + (w - left - 20.0) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| (h - bottom) - (h - bottom - 20.0) * (v.max(0.01).log10() - lo) / (hi - lo);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let mut decade = lo;
    while decade <= hi {
        let v = 10f64.powf(decade);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            w - 20.0,
            left - 6.0,
            y(v) + 4.0,
            if v < 1.0 {
                format!("{v}")
            } else {
                format!("{v:.0}")
            },
            y = y(v),
        );
        decade += 1.0;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">dashboard load (end +30 s each)</text>"#,
        (w + left) / 2.0,
        h - 8.0
    );
    for (k, (label, values)) in series.iter().enumerate() {
        let color = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"][k % 4];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i, values.len()), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{color}">{label}</text>"#,
            points.join(" "),
            left + 10.0,
            20.0 + 16.0 * k as f64
        );
    }
    svg.push_str("</svg>\n");
    let _ = std::fs::write(dir.join("dashboard-refresh.svg"), svg);
}
