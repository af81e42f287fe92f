//! Scenarios 1–7 of the end-to-end bench: passthrough overhead, cold and warm long
//! queries, the dashboard refresh, warm throughput against nginx and the frontend's
//! memory. They share the long-lived frontends of [`Frontends`] (memory, memory without
//! the response cache, Redis) and nginx.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{
    Bench, Client, DAY, FrontendProc, H, Report, frontend_toml, median, metric_sum, metrics_text,
    ms, p99, range_url,
};
use crate::support::{
    Supervised, form, free_port, probe_status, require_binary, secs, start_redis,
};

/// nginx in front of `prom`, as an SRE would set it up, on two ports: one with a
/// `proxy_cache` (scenario 5) and one a plain `proxy_pass` without cache (scenario 1).
/// Both share one upstream block with a keep-alive pool of 64 connections.
/// Returns the process and the (cache, plain) base URLs.
fn start_nginx(dir: &Path, prom: &str) -> (Supervised, String, String) {
    require_binary("nginx", "nginx");
    let port = free_port();
    let plain_port = free_port();
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
  server {{
    listen 127.0.0.1:{plain_port} backlog=4096;
    location / {{
      proxy_pass http://prometheus;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
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
    for p in [port, plain_port] {
        while probe_status(p, "/api/v1/status/buildinfo").is_none() {
            assert!(
                Instant::now() < until,
                "nginx did not start:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (
        proc,
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{plain_port}"),
    )
}

/// Requests per second of GET `url` at `concurrency` for `run`, and the error answers.
async fn throughput(client: &Client, concurrency: usize, run: Duration, url: &str) -> (f64, u64) {
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
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let n = done.load(Ordering::Relaxed);
    (
        n as f64 / started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

/// Querier requests and querier seconds the frontend spent so far.
async fn downstream_work(client: &Client, fe: &str) -> (f64, f64) {
    let text = metrics_text(client, fe).await;
    (
        metric_sum(&text, "promql_frontend_downstream_attempts_total{"),
        metric_sum(
            &text,
            "promql_frontend_downstream_attempt_duration_seconds_sum{",
        ),
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
pub fn grafana_step_s(range_ms: i64) -> i64 {
    const NICE: [i64; 10] = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];
    let raw = range_ms / 1000 / 1000;
    NICE.into_iter().find(|&s| s >= raw).unwrap_or(21600)
}

/// A range panel's POST form, as Grafana sends it.
pub fn panel_form(expr: &str, start: i64, end: i64, step_ms: i64) -> String {
    form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", &(step_ms / 1000).to_string()),
    ])
}

/// The 12 panels: (title, PromQL, range).
pub const PANELS: &[(&str, &str, i64)] = &[
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
        let body = panel_form(expr, start, end, step_ms);
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

/// The long-lived frontends and nginx of scenarios 1–5.
pub struct Frontends {
    memory: FrontendProc,
    /// The same without the response cache: the before/after of that optimisation,
    /// measured in the same run.
    pieces_only: FrontendProc,
    /// Without the answer cache: label and instant requests forwarded one by one, the
    /// passthrough that scenario 1 weighs against nginx.
    forwarding: FrontendProc,
    /// `forwarding`'s configuration on the binary `BENCH_BASELINE_BIN` names, when set:
    /// scenario 1's before/after in one run.
    baseline: Option<FrontendProc>,
    redis: FrontendProc,
    nginx: String,
    /// nginx as a plain `proxy_pass` proxy (no cache): the yardstick of scenario 1.
    nginx_plain: String,
    _redis: Supervised,
    _nginx: Supervised,
}

impl Frontends {
    pub async fn start(b: &Bench) -> Frontends {
        let (redis_proc, redis_port) = tokio::task::spawn_blocking(|| start_redis(None))
            .await
            .expect("redis");
        let (dir, prom) = (&b.dir, &b.prom);
        let memory = FrontendProc::start(
            dir,
            "memory",
            &frontend_toml(
                prom,
                "backend = \"memory\"\nmemory_capacity_bytes = 1073741824",
            ),
        );
        let pieces_only = FrontendProc::start(
            dir,
            "pieces-only",
            &frontend_toml(
                prom,
                "backend = \"memory\"\nmemory_capacity_bytes = 1073741824\nresponse_capacity_bytes = 0",
            ),
        );
        let forwarding = FrontendProc::start(
            dir,
            "forwarding",
            &frontend_toml(prom, "backend = \"memory\"\nanswers = false"),
        );
        let baseline = std::env::var("BENCH_BASELINE_BIN").ok().map(|bin| {
            FrontendProc::start_binary(
                &bin,
                dir,
                "baseline",
                &frontend_toml(prom, "backend = \"memory\"\nanswers = false"),
            )
        });
        let redis = FrontendProc::start(
            dir,
            "redis",
            &frontend_toml(
                prom,
                &format!(
                    "backend = \"redis\"\n[cache.redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\""
                ),
            ),
        );
        let (nginx_proc, nginx, nginx_plain) = start_nginx(dir, prom);
        Frontends {
            memory,
            pieces_only,
            forwarding,
            baseline,
            redis,
            nginx,
            nginx_plain,
            _redis: redis_proc,
            _nginx: nginx_proc,
        }
    }
}

/// Peak RSS of the memory frontend during scenarios 2–5 (those that ran), MiB.
#[derive(Default)]
pub struct Peaks {
    pub long: Option<f64>,
    pub dashboard: Option<f64>,
    pub throughput: Option<f64>,
}

/// Scenario 1: passthrough overhead, the frontend side by side with Prometheus direct
/// and with nginx as a plain `proxy_pass` proxy in front of the same Prometheus. The
/// three targets take turns (latency: one request each in rotating order; throughput:
/// two rotations of rounds, in which each target runs once in every place of the order,
/// the second in reverse order so that a target's rounds follow its neighbours' on both
/// sides), so that whatever else the machine does (Prometheus collecting its garbage
/// after a round, say) hits them alike.
/// Same client, same connection count and same requests for all three.
pub async fn passthrough(b: &Bench, f: &Frontends, r: &mut Report) {
    let client = &b.client;
    let mut targets = vec![
        b.prom.as_str(),
        f.nginx_plain.as_str(),
        f.forwarding.url.as_str(),
        f.memory.url.as_str(),
    ];
    let mut labels = vec![
        "direct",
        "nginx `proxy_pass`",
        "frontend",
        "frontend, answer cache",
    ];
    if let Some(baseline) = &f.baseline {
        targets.push(baseline.url.as_str());
        labels.push("frontend, `BENCH_BASELINE_BIN`");
    }
    r.line("### 1. Passthrough overhead");
    r.line("");
    r.line("Prometheus direct, nginx as a plain `proxy_pass` proxy (2 workers, keep-alive upstream pool of 64, no cache) and the frontend, in front of the same Prometheus; latency at concurrency 1 (one request to each in turn), throughput at concurrency 32 (rounds in turn: two rotations, the second in reverse order, `BENCH_SECS` per target in all). \"frontend\" forwards every request (`cache.answers = false`): the passthrough weighed against nginx. \"frontend, answer cache\" is the default configuration: the 32 clients ask the same instant query, which it sends to the querier once for all identical requests in flight (the time asked is within `max_freshness`, so nothing is stored); `/api/v1/labels` without `end` is never stored or shared and is forwarded as it comes.");
    r.line("");
    r.line(
        "| request | target | median | added | p99 | req/s (c=32) | vs direct | frontend / nginx |",
    );
    r.line("|---|---|---|---|---|---|---|---|");
    let instant = format!(
        "/api/v1/query?{}",
        form(&[("query", "sum(up)"), ("time", &secs(b.tb.end_ms)),])
    );
    for (name, path) in [
        ("instant `sum(up)`", instant.as_str()),
        ("`/api/v1/labels`", "/api/v1/labels"),
    ] {
        let urls: Vec<String> = targets.iter().map(|t| format!("{t}{path}")).collect();
        for url in &urls {
            let a = client.get(url, &[]).await;
            assert_eq!(a.status, 200, "{url}");
        }
        for _ in 0..20 {
            for url in &urls {
                client.get(url, &[]).await;
            }
        }
        let n = targets.len();
        let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); n];
        for i in 0..(100 * b.reps) {
            for k in 0..n {
                let t = (i + k) % n;
                lat[t].push(client.get(&urls[t], &[]).await.took);
            }
        }
        let mut tp = vec![0.0; n];
        let mut errors = 0;
        let rounds = 2 * n;
        let round = Duration::from_secs(b.tp_secs).div_f64(rounds as f64);
        for i in 0..rounds {
            for k in 0..n {
                // The second rotation in reverse order.
                let t = match i < n {
                    true => (i + k) % n,
                    false => (i + n - k) % n,
                };
                let (rps, errs) = throughput(client, 32, round, &urls[t]).await;
                tp[t] += rps / rounds as f64;
                errors += errs;
            }
        }
        assert_eq!(errors, 0, "{name}: error answers under load");
        let direct = median(&lat[0]).as_secs_f64();
        for (t, label) in labels.iter().enumerate() {
            let added = match t {
                0 => "".to_owned(),
                _ => format!("{:.3} ms", (median(&lat[t]).as_secs_f64() - direct) * 1e3),
            };
            let vs_nginx = match t {
                2 => format!("**{:.2}×**", tp[2] / tp[1]),
                3.. => format!("{:.2}×", tp[t] / tp[1]),
                _ => "".to_owned(),
            };
            r.line(format!(
                "| {} | {label} | {} | {added} | {} | {:.0} | {:.2}× | {vs_nginx} |",
                if t == 0 { name } else { "" },
                ms(median(&lat[t])),
                ms(p99(&lat[t])),
                tp[t],
                tp[t] / tp[0],
            ));
        }
    }
    r.line("");
}

/// Scenarios 2, 3 (and 6 for Redis): cold and warm long queries. Returns the memory
/// frontend's peak RSS.
pub async fn long_queries(b: &Bench, f: &Frontends, r: &mut Report) -> f64 {
    let (client, prom, long_days) = (&b.client, &b.prom, b.long_days);
    r.line("### 2, 3, 6. Long range queries: cold (empty cache) and warm (repeated)");
    r.line("");
    r.line("| query | window | direct | memory cold | memory warm | memory warm, no response cache | redis cold | redis warm | cold / direct (memory) | direct / warm (memory) | direct / warm (no response cache) | direct / warm (redis) |");
    r.line("|---|---|---|---|---|---|---|---|---|---|---|---|");
    f.memory.reset_peak();
    for (name, expr) in HEAVY {
        for (window_days, step) in [(7, "5m"), (long_days, "10m")] {
            let (start, end) = (b.newest - window_days * DAY, b.newest);
            let direct_url = range_url(prom, expr, start, end, step);
            client.get(&direct_url, &[]).await; // Prometheus' own page cache warm.
            let mut cols: [Vec<Duration>; 7] = Default::default();
            for rep in 0..b.reps {
                cols[0].push(client.get(&direct_url, &[]).await.took);
                for (i, fe) in [(1, &f.memory), (3, &f.pieces_only), (5, &f.redis)] {
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
                ms(m[0]),
                ms(m[1]),
                ms(m[2]),
                ms(m[4]),
                ms(m[5]),
                ms(m[6]),
                m[1].as_secs_f64() / m[0].as_secs_f64(),
                m[0].as_secs_f64() / m[2].as_secs_f64(),
                m[0].as_secs_f64() / m[4].as_secs_f64(),
                m[0].as_secs_f64() / m[6].as_secs_f64(),
            ));
        }
    }
    r.line("");
    f.memory.rss_mib().1
}

/// Scenarios 4 (and 6): dashboard refresh. Returns the memory frontend's peak RSS.
pub async fn dashboard(b: &Bench, f: &Frontends, r: &mut Report) -> f64 {
    let client = &b.client;
    r.line("### 4, 6. Dashboard refresh: 12 panels, 20 loads, `end` +30 s each");
    r.line("");
    r.line("| path | first load (slowest panel) | panel median | panel p99 | querier requests | querier time | vs direct: median | vs direct: querier time |");
    r.line("|---|---|---|---|---|---|---|---|");
    f.memory.reset_peak();
    let base_now = b.tb.end_ms - 15 * 60_000;
    let mut per_load: Vec<(String, Vec<f64>)> = Vec::new();
    let mut rows: Vec<(String, Duration, Vec<Duration>, f64, f64)> = Vec::new();
    for (label, url) in [
        ("direct Prometheus", b.prom.clone()),
        ("frontend, memory", f.memory.url.clone()),
        ("frontend, redis", f.redis.url.clone()),
    ] {
        let mut first = Duration::ZERO;
        let mut later = Vec::new();
        let mut medians = Vec::new();
        let mut first_work = (0.0, 0.0);
        for load in 0..20 {
            let lat = load_dashboard(client, &url, base_now + load * 30_000).await;
            medians.push(median(&lat).as_secs_f64() * 1e3);
            if load == 0 {
                first = lat.iter().max().copied().unwrap_or_default();
                if label.starts_with("frontend") {
                    first_work = downstream_work(client, &url).await;
                }
            } else {
                later.extend(lat);
            }
        }
        let (reqs, time) = if label.starts_with("frontend") {
            let after = downstream_work(client, &url).await;
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
            ms(*first),
            ms(median(later)),
            ms(p99(later)),
            time,
            direct_median.as_secs_f64() / median(later).as_secs_f64(),
            (1.0 - time / direct_time) * 100.0,
        ));
    }
    r.chart = per_load;
    r.line("");
    r.line("Loads 2–20 (after the first); querier requests and time are summed over them. For the frontend they come from its `/metrics` (range-query attempts); for direct, every panel is one querier request and its latency is the querier time.");
    r.line("");
    r.line("![dashboard refresh: median panel latency per load](benches/results/dashboard-refresh.svg)");
    r.line("");
    f.memory.rss_mib().1
}

/// Scenario 5: warm throughput against nginx. Returns the memory frontend's peak RSS.
pub async fn warm_throughput(b: &Bench, f: &Frontends, r: &mut Report) -> f64 {
    let (client, memory, pieces_only, nginx) = (&b.client, &f.memory, &f.pieces_only, &f.nginx);
    let tp_secs = b.tp_secs;
    r.line("### 5. Warm throughput, concurrency 32");
    r.line("");
    let (start, end) = (b.newest - 7 * DAY, b.newest);
    let warm_path = range_url("", HEAVY[1].1, start, end, "5m");
    for base in [&memory.url, &pieces_only.url, nginx] {
        let a = client.get(&format!("{base}{warm_path}"), &[]).await;
        assert_eq!(a.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    memory.reset_peak();
    let (mut fe_tp, mut pc_tp, mut ng_tp, mut errs) = (0.0, 0.0, 0.0, 0);
    for _ in 0..2 {
        let (fe, e1) = throughput(
            client,
            32,
            Duration::from_secs(tp_secs) / 2,
            &format!("{}{warm_path}", memory.url),
        )
        .await;
        let (n, e2) = throughput(
            client,
            32,
            Duration::from_secs(tp_secs) / 2,
            &format!("{nginx}{warm_path}"),
        )
        .await;
        let (p, e3) = throughput(
            client,
            32,
            Duration::from_secs(tp_secs) / 2,
            &format!("{}{warm_path}", pieces_only.url),
        )
        .await;
        fe_tp += fe / 2.0;
        ng_tp += n / 2.0;
        pc_tp += p / 2.0;
        errs += e1 + e2 + e3;
    }
    let peak = memory.rss_mib().1;
    r.line("| path | requests/s | ratio to nginx |");
    r.line("|---|---|---|");
    r.line(format!(
        "| nginx `proxy_cache` (disk cache, page-cached) | {ng_tp:.0} | 1.00× |"
    ));
    r.line(format!(
        "| frontend, memory | {fe_tp:.0} | {:.2}× |",
        fe_tp / ng_tp
    ));
    r.line(format!(
        "| frontend, memory, no response cache (pieces only) | {pc_tp:.0} | {:.2}× |",
        pc_tp / ng_tp
    ));
    r.line("");
    r.line(format!(
        "The 7-day `sum by rate` query at step 5m ({} bytes of JSON), the same GET URL to both; errors: {errs}.",
        client.get(&format!("{}{warm_path}", memory.url), &[]).await.bytes
    ));
    r.line("");
    peak
}

/// Scenario 7: the peaks of the scenarios above, and a small piece cache under a
/// larger workload.
pub async fn memory(b: &Bench, peaks: &Peaks, r: &mut Report) {
    let (client, long_days) = (&b.client, b.long_days);
    r.line("### 7. Memory (frontend with the memory backend: 1 GiB piece cache, 64 MiB response cache)");
    r.line("");
    r.line("| scenario | peak RSS |");
    r.line("|---|---|");
    let mib = |p: Option<f64>| p.map_or("not run".to_owned(), |v| format!("{v:.0} MiB"));
    r.line(format!(
        "| long queries, cold and warm (2, 3) | {} |",
        mib(peaks.long)
    ));
    r.line(format!(
        "| dashboard refresh (4) | {} |",
        mib(peaks.dashboard)
    ));
    r.line(format!(
        "| warm throughput (5) | {} |",
        mib(peaks.throughput)
    ));
    r.line("");
    // The piece cache alone (no response cache), 16 MiB, under four times as much.
    let small = FrontendProc::start(
        &b.dir,
        "small",
        &frontend_toml(
            &b.prom,
            "backend = \"memory\"\nmemory_capacity_bytes = 16777216\nresponse_capacity_bytes = 0",
        ),
    );
    let mut written = 0.0;
    let mut i = 0;
    let mut worst = (0.0f64, 0.0f64);
    while written < 4.0 * 16.0 * 1024.0 * 1024.0 && i < 800 {
        let tenant = format!("fill-{i}");
        let (_, expr) = HEAVY[i % 2];
        let a = client
            .get(
                &range_url(&small.url, expr, b.newest - long_days * DAY, b.newest, "5m"),
                &[("x-scope-orgid", &tenant)],
            )
            .await;
        assert_eq!(a.status, 200);
        i += 1;
        if i % 10 == 0 {
            let text = metrics_text(client, &small.url).await;
            written = metric_sum(
                &text,
                "promql_frontend_cache_bytes_total{backend=\"memory\",op=\"write\"}",
            );
            let (rss, hwm) = small.rss_mib();
            worst = (worst.0.max(rss), worst.1.max(hwm));
        }
    }
    r.line(format!(
        "Piece cache of 16 MiB (response cache off), {i} distinct {long_days}-day queries writing {:.0} MiB of entries: RSS at most {:.0} MiB, peak {:.0} MiB (goal: ≤ 16 + 64 = 80 MiB).",
        written / 1048576.0,
        worst.0,
        worst.1
    ));
    drop(small);
    r.line("");
}

/// A line chart (SVG, log scale) of the median panel latency of each dashboard load.
pub fn write_chart(dir: &Path, series: &[(String, Vec<f64>)]) {
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
