//! The end-to-end benchmark (`make bench`): the release binary as its own process in
//! front of a real Prometheus on generated data, measured side by side with Prometheus
//! itself (and nginx: plain `proxy_pass` for the passthrough rows, `proxy_cache` for the
//! warm-throughput row) in one run.
//!
//! Scenarios (see BENCHMARKS.md for what each measures and why):
//! 1. passthrough overhead: a small instant query and `/api/v1/labels`, latency at
//!    concurrency 1 and throughput at concurrency 32, the frontend side by side with
//!    Prometheus direct and with nginx as a plain `proxy_pass` proxy;
//! 2. cold long range queries (7 and 14 days) with an empty cache;
//! 3. warm repeats of them;
//! 4. a 12-panel dashboard refreshed 20 times, `end` advancing 30 s (POST forms, steps and
//!    alignment as Grafana picks them);
//! 5. warm throughput at concurrency 32, frontend vs nginx `proxy_cache`;
//! 6. scenarios 3 and 4 with the Redis backend;
//! 7. the frontend's peak RSS per scenario, and RSS under a workload larger than a small
//!    configured cache;
//! 8. the cold mix (`e2e/coldmix.rs`): 100+ ordinary queries (`coldmix_queries.txt`)
//!    over 30-, 7- and 2-day windows, each asked once direct and once through a fresh
//!    frontend per fetch mode, by one and by four clients: wall time, the querier's CPU
//!    and its requests per query;
//! 9. the live dashboard at now (`e2e/live.rs`): a week of history plus samples
//!    scraped live up to now, 12 panels refreshed at the wall clock: direct full range,
//!    direct tail only (the floor, also asked uncompressed) and the frontends (memory,
//!    Redis); latency, querier
//!    requests and time per refresh;
//! 10. a whole dashboard load (`e2e/grafana.rs`): template variables, stat panels and
//!     range panels, reloaded and zoomed out: querier requests, CPU and time per load.
//!
//! Environment: `BENCH_ONLY` (comma-separated scenario names to run, default all:
//! `passthrough` 1, `long` 2, 3 and 6, `dashboard` 4 and 6, `throughput` 5, `memory` 7,
//! `coldmix` 8, `live` 9, `grafana` 10; a partial run replaces only its own parts of the report),
//! `BENCH_DAYS` (the days scenarios 2–7 size their windows by, default 15; the data
//! covers at least 32 when the cold mix runs), `BENCH_REPS` (default 5), `BENCH_SECS`
//! (throughput runs, default 10), `BENCH_REPORT` (file to write the report section to,
//! default BENCHMARKS.md; `-` prints only); for scenario 9 `BENCH_LIVE_SCRAPE` (scrape
//! interval, default 5 s), `BENCH_LIVE_EVERY` (seconds between refreshes, default 10)
//! and `BENCH_LIVE_REFRESHES` (default 10); `BENCH_BASELINE_BIN` (another build of the
//! frontend, e.g. of the previous commit: scenario 1 runs it as one more forwarding
//! target, taking turns with the others, for a before/after in one run);
//! `BENCH_FRONTEND_BIN` (another build of the frontend run in place of this one by every
//! scenario).

#[path = "../tests/e2e/support.rs"]
mod support;

#[path = "e2e/coldmix.rs"]
mod coldmix;
#[path = "e2e/grafana.rs"]
mod grafana;
#[path = "e2e/live.rs"]
mod live;
#[path = "e2e/scenarios.rs"]
mod scenarios;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use scenarios::{
    Frontends, Peaks, dashboard, long_queries, memory, passthrough, warm_throughput, write_chart,
};
use support::{Scratch, Supervised, TestBed, build_testbed, form, free_port, probe_status, secs};

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
    body: Bytes,
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
            body,
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
    /// Starts this build of the frontend, or the one `BENCH_FRONTEND_BIN` names (to
    /// measure an older build with the same scenarios).
    fn start(dir: &Path, name: &str, toml: &str) -> FrontendProc {
        let binary = std::env::var("BENCH_FRONTEND_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_promql-frontend").to_owned());
        FrontendProc::start_binary(&binary, dir, name, toml)
    }

    /// [`FrontendProc::start`] with another build of the frontend (`BENCH_BASELINE_BIN`).
    fn start_binary(binary: &str, dir: &Path, name: &str, toml: &str) -> FrontendProc {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{toml}"),
        )
        .expect("write config");
        let args = vec!["--config".to_owned(), config.display().to_string()];
        let proc = Supervised::start(binary, &args, &dir.join(format!("{name}.log")), None);
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

/// A Prometheus metric's value summed over every series whose line starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The frontend's `/metrics` text.
async fn metrics_text(client: &Client, fe: &str) -> String {
    let req = Request::get(format!("{fe}/metrics"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.0.request(req).await.expect("metrics");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
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

/// The report section: printed as it is written, and kept for BENCHMARKS.md.
struct Report {
    text: String,
    chart: Vec<(String, Vec<f64>)>,
}

/// The markers around one scenario's part of the report, so a run of some scenarios
/// (`BENCH_ONLY`) replaces only their parts of BENCHMARKS.md.
fn block_markers(name: &str) -> (String, String) {
    (
        format!("<!-- scenario: {name} -->"),
        format!("<!-- /scenario: {name} -->"),
    )
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }

    /// Adds a marker line to the report file only (not printed).
    fn marker(&mut self, m: &str) {
        self.text.push_str(m);
        self.text.push('\n');
    }
}

/// The scenarios, in run order: the name `BENCH_ONLY` selects them by, and what they
/// measure.
const SCENARIOS: &[(&str, &str)] = &[
    ("passthrough", "1. passthrough overhead"),
    ("long", "2, 3, 6. long range queries, cold and warm"),
    ("dashboard", "4, 6. dashboard refresh"),
    ("throughput", "5. warm throughput against nginx"),
    ("memory", "7. the frontend's memory"),
    ("coldmix", "8. cold mix: 100+ ordinary queries, empty cache"),
    (
        "live",
        "9. live dashboard at now, on data scraped up to now",
    ),
    (
        "grafana",
        "10. dashboard load: variables, stat panels, range panels, zoom-out",
    ),
];

/// Which scenarios run: all of them, or those named in `BENCH_ONLY` (comma-separated).
struct Selection(Option<Vec<String>>);

impl Selection {
    fn from_env() -> Selection {
        let names: Vec<String> = std::env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        for n in &names {
            assert!(
                SCENARIOS.iter().any(|(s, _)| s == n),
                "BENCH_ONLY: no scenario {n:?}; the scenarios are: {}",
                SCENARIOS
                    .iter()
                    .map(|(s, what)| format!("{s} ({what})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Selection((!names.is_empty()).then_some(names))
    }

    fn runs(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|v| v.iter().any(|n| n == name))
    }

    fn partial(&self) -> bool {
        self.0.is_some()
    }

    /// The selected names, comma-separated.
    fn names(&self) -> String {
        self.0.as_deref().unwrap_or_default().join(",")
    }
}

/// What every scenario shares.
struct Bench {
    client: Client,
    tb: TestBed,
    prom: String,
    dir: PathBuf,
    reps: usize,
    tp_secs: u64,
    /// End of the long-query windows: an hour before the last sample.
    newest: i64,
    /// Days of the longer window of scenarios 2 and 7.
    long_days: i64,
}

fn main() {
    let only = Selection::from_env();
    // Scenarios 1–7 were sized for BENCH_DAYS (default 15): their windows follow it.
    // The cold mix needs 32 days of data (a 30-day window and 1-day lookbacks).
    let bench_days: f64 = env_num("BENCH_DAYS", 15.0);
    let days = if only.runs("coldmix") {
        bench_days.max(coldmix::DATA_DAYS)
    } else {
        bench_days
    };
    let reps: usize = env_num("BENCH_REPS", 5);
    let tp_secs: u64 = env_num("BENCH_SECS", 10);
    let report_path = std::env::var("BENCH_REPORT").unwrap_or_else(|_| "BENCHMARKS.md".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let scratch = Scratch::new("bench");
        let client = Client::new();
        // Scenarios 1–8 share one test bed; the live scenario builds its own.
        let b = if SCENARIOS
            .iter()
            .any(|(name, _)| *name != "live" && only.runs(name))
        {
            eprintln!("generating and backfilling {days} days of data...");
            let t = Instant::now();
            let tb: TestBed = tokio::task::spawn_blocking(move || build_testbed(days))
                .await
                .expect("test bed");
            eprintln!("test bed ready in {:.0?}", t.elapsed());
            Some(Bench {
                client: client.clone(),
                prom: tb.prom_url.clone(),
                newest: tb.end_ms - H,
                tb,
                dir: scratch.0.clone(),
                reps,
                tp_secs,
                long_days: ((bench_days - 1.0).floor() as i64).clamp(7, 30),
            })
        } else {
            None
        };
        let with_frontends = ["passthrough", "long", "dashboard", "throughput"];
        let fronts = match &b {
            Some(b) if with_frontends.iter().any(|name| only.runs(name)) => {
                Some(Frontends::start(b).await)
            }
            _ => None,
        };
        let mut r = Report {
            text: String::new(),
            chart: Vec::new(),
        };
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let host = format!(
            "Run {}: {cores} cores",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        let tools = format!(
            "Prometheus {}; frontend release build as its own process",
            prometheus_version()
        );
        let machine = format!(
            "{host}; {days} days of generated data (~450 series, 60 s scrape); {tools}"
        );
        let run_line = format!(
            "{machine}; {reps} repetitions alternating direct and frontend; throughput runs {tp_secs} s."
        );
        if !only.partial() {
            r.line(&run_line);
            r.line("");
        }
        let mut peaks = Peaks::default();
        for (name, _) in SCENARIOS {
            if !only.runs(name) {
                continue;
            }
            let (open, close) = block_markers(name);
            r.marker(&open);
            if only.partial() {
                let line = match *name {
                    "coldmix" => format!("{machine}."),
                    // Its data is its own, described in its section.
                    "live" => format!("{host}; {tools}."),
                    _ => run_line.clone(),
                };
                r.line(format!(
                    "{line} A partial run: `BENCH_ONLY={}`.",
                    only.names()
                ));
                r.line("");
            }
            let t = Instant::now();
            match (*name, &b, &fronts) {
                ("live", _, _) => live::run(&client, &scratch.0, &mut r).await,
                ("coldmix", Some(b), _) => coldmix::run(b, &mut r).await,
                ("passthrough", Some(b), Some(f)) => passthrough(b, f, &mut r).await,
                ("long", Some(b), Some(f)) => peaks.long = Some(long_queries(b, f, &mut r).await),
                ("dashboard", Some(b), Some(f)) => {
                    peaks.dashboard = Some(dashboard(b, f, &mut r).await)
                }
                ("throughput", Some(b), Some(f)) => {
                    peaks.throughput = Some(warm_throughput(b, f, &mut r).await)
                }
                ("memory", Some(b), _) => memory(b, &peaks, &mut r).await,
                ("grafana", Some(b), _) => grafana::run(b, &mut r).await,
                _ => unreachable!("scenario {name} without its test bed or frontends"),
            }
            r.marker(&close);
            eprintln!("scenario {name} took {:.0?}", t.elapsed());
        }

        let chart_path = PathBuf::from("benches/results/dashboard-refresh.svg");
        if !r.chart.is_empty() {
            write_chart(&scratch.0, &r.chart);
        }
        if report_path != "-" {
            write_report(&report_path, &r.text, only.partial());
            eprintln!("report written to {report_path}");
            if !r.chart.is_empty() {
                let _ = std::fs::create_dir_all("benches/results");
                let _ = std::fs::copy(scratch.0.join("dashboard-refresh.svg"), &chart_path);
                eprintln!("chart written to {}", chart_path.display());
            }
        }
        // The processes stop before their scratch directory goes.
        drop(fronts);
        drop(b);
        drop(scratch);
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

/// Writes the report into the section between the bench markers in `path` (appended
/// the first time). A full run replaces the whole section; a partial one (`BENCH_ONLY`)
/// replaces only the parts of the scenarios it ran, or adds them at the section's end.
fn write_report(path: &str, text: &str, partial: bool) {
    const START: &str = "<!-- make bench: start -->";
    const END: &str = "<!-- make bench: end -->";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let section = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if b > a => Some((a, b + END.len())),
        _ => None,
    };
    let fresh = format!(
        "{START}\n## End-to-end: `make bench`\n\nCommand: `make bench` (= `cargo bench --bench e2e`).\n\n{text}{END}"
    );
    let new_section = match section {
        Some((a, b)) if partial => {
            let mut s = old[a..b].to_owned();
            for (name, _) in SCENARIOS {
                let (open, close) = block_markers(name);
                let Some(block) = text.find(&open).and_then(|i| {
                    let j = text[i..].find(&close)? + i + close.len();
                    Some(&text[i..j])
                }) else {
                    continue;
                };
                let existing = s.find(&open).and_then(|i| {
                    let j = s[i..].find(&close)? + i + close.len();
                    Some((i, j))
                });
                match existing {
                    Some((i, j)) => s.replace_range(i..j, block),
                    None => {
                        let at = s.len() - END.len();
                        s.insert_str(at, &format!("{block}\n"));
                    }
                }
            }
            s
        }
        _ => fresh,
    };
    let new = match section {
        Some((a, b)) => format!("{}{new_section}{}", &old[..a], &old[b..]),
        None => format!("{}\n{new_section}\n", old.trim_end()),
    };
    std::fs::write(path, new).expect("write report");
}
