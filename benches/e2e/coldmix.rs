//! Scenario 8, the cold mix: what a cold range query costs the querier through the
//! frontend compared with asking it directly, over a broad mix of ordinary queries.
//!
//! The frontend splits a range query into day pieces, one querier request each. For a
//! cheap query that is per-request overhead several times over, and for a query with a
//! long lookback (`[1d]` ranges, 1-day subqueries) every piece reads its own lookback
//! again, so the querier can spend more CPU than on the whole query. This scenario puts
//! numbers on both, side by side in one run: each query of `benches/coldmix_queries.txt`
//! is asked once per window directly and once through a freshly started frontend (empty
//! cache) in each fetch mode, first by one client (queries interleaved over the modes),
//! then by four clients sharing one queue. It records each query's wall time, the
//! querier's CPU (utime + stime of the Prometheus process from `/proc/PID/stat`) and,
//! through the frontend, the querier requests (the frontend's own
//! `downstream_attempts_total{kind="query_range"}`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Bench, DAY, FrontendProc, Report, frontend_toml, metrics_text};
use crate::support::{form, secs};

/// Days of data the scenario needs: the 30-day window, the day of lookback before it
/// and the hour after it.
pub const DATA_DAYS: f64 = 32.0;

/// The queries, one a line (`#` comments); `{start}`, `{mid}`, `{end}` are the window's
/// times in Unix seconds.
const QUERIES: &str = include_str!("../coldmix_queries.txt");

/// The metric names of the generated data (src/testdata.rs).
const FAMILIES: [&str; 8] = [
    "up",
    "http_requests_total",
    "node_memory_free_bytes",
    "temperature_celsius",
    "request_duration_seconds_bucket",
    "request_duration_seconds_sum",
    "request_duration_seconds_count",
    "batch_jobs_processed_total",
];

/// Clients of the concurrent run.
const CLIENTS: usize = 4;
/// A query is heavy when it takes at least this long direct (sequential run), seconds.
const HEAVY_S: f64 = 0.5;
/// A query is cheap when it takes less than this direct (sequential run), seconds.
const CHEAP_S: f64 = 0.005;
/// How many queries the "largest added querier CPU" table lists.
const WORST: usize = 8;

/// A range of the query: its length and step, ending an hour before the last sample.
struct Window {
    label: &'static str,
    slug: &'static str,
    days: i64,
    step_s: i64,
}

const WINDOWS: [Window; 3] = [
    Window {
        label: "30 d, step 1h",
        slug: "30d",
        days: 30,
        step_s: 3600,
    },
    Window {
        label: "7 d, step 5m",
        slug: "7d",
        days: 7,
        step_s: 300,
    },
    Window {
        label: "2 d, step 1m",
        slug: "2d",
        days: 2,
        step_s: 60,
    },
];

/// Where the queries go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Prometheus itself.
    Direct,
    /// The frontend with its default configuration.
    Default,
    /// The frontend fetching one querier request per day piece.
    PerInterval,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Direct, Mode::Default, Mode::PerInterval];

    fn label(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Default => "frontend, default",
            Mode::PerInterval => "frontend, `fetch = \"per_interval\"`",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Default => "default",
            Mode::PerInterval => "per-interval",
        }
    }
}

/// The configuration each frontend mode adds to the common one (downstream, memory
/// cache, logs): the one place that says how a mode fetches.
fn fetch_mode_toml(mode: Mode) -> &'static str {
    match mode {
        Mode::Direct | Mode::Default => "",
        Mode::PerInterval => "\n[query_range]\nfetch = \"per_interval\"\n",
    }
}

/// The query lines of the list.
fn query_list() -> Vec<&'static str> {
    QUERIES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Unix seconds of a millisecond timestamp, for `@` modifiers.
fn unix_s(ms: i64) -> String {
    ms.div_euclid(1000).to_string()
}

/// The query's form body for the window `[start, end]` at `step_s`.
fn body_for(query: &str, start: i64, end: i64, step_s: i64) -> String {
    let q = query
        .replace("{start}", &unix_s(start))
        .replace("{mid}", &unix_s(start + (end - start) / 2))
        .replace("{end}", &unix_s(end));
    form(&[
        ("query", &q),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", &step_s.to_string()),
    ])
}

/// utime + stime of process `pid` (fields 14 and 15 of `/proc/PID/stat`), clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 2, the command name, is in parentheses and may hold spaces: the fields
    // after the last `)` start with field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

/// Waits (at most 200 ms) until process `pid` has used no CPU for 20 ms, so the work
/// a query left behind (Go's garbage collection in Prometheus) is counted for that
/// query and not for the next one.
pub async fn settle(pid: u32) {
    for _ in 0..10 {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if cpu_ticks(pid) == before {
            return;
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of the `prometheus` process listening on the port of `prom_url`.
pub fn prometheus_pid(prom_url: &str) -> u32 {
    let port = prom_url.rsplit(':').next().unwrap_or_default();
    let flag = format!("--web.listen-address=127.0.0.1:{port}");
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        // The supervising `sh` carries the same arguments: only the program itself.
        let is_prometheus = args
            .first()
            .is_some_and(|a| a.rsplit(|b| *b == b'/').next() == Some(b"prometheus"));
        if is_prometheus && args.contains(&flag.as_bytes()) {
            return pid;
        }
    }
    panic!("no prometheus process with {flag}");
}

/// Where one mode's queries go: Prometheus, or a frontend started for one run.
struct Target {
    mode: Mode,
    url: String,
    frontend: Option<FrontendProc>,
}

impl Target {
    fn start(b: &Bench, mode: Mode, tag: &str) -> Target {
        if mode == Mode::Direct {
            return Target {
                mode,
                url: b.prom.clone(),
                frontend: None,
            };
        }
        let toml = frontend_toml(&b.prom, "backend = \"memory\"") + fetch_mode_toml(mode);
        let fe = FrontendProc::start(&b.dir, &format!("coldmix-{tag}-{}", mode.slug()), &toml);
        Target {
            mode,
            url: fe.url.clone(),
            frontend: Some(fe),
        }
    }

    /// Range-query requests the frontend sent to the querier so far (0 direct).
    async fn querier_requests(&self, b: &Bench) -> f64 {
        if self.frontend.is_none() {
            return 0.0;
        }
        metrics_text(&b.client, &self.url)
            .await
            .lines()
            .filter(|l| l.starts_with("promql_frontend_downstream_attempts_total{"))
            .filter(|l| l.contains("kind=\"query_range\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The frontend process's CPU so far, ticks (0 direct).
    fn frontend_ticks(&self) -> u64 {
        self.frontend.as_ref().map_or(0, |fe| cpu_ticks(fe.pid()))
    }

    async fn ask(&self, b: &Bench, body: &str) -> (u16, Duration) {
        let url = format!("{}/api/v1/query_range", self.url);
        let a = b
            .client
            .post_form(&url, body.to_owned(), &[("accept-encoding", "gzip")])
            .await;
        if a.status != 200 {
            // Asked again without gzip, for a readable message.
            let again = b.client.post_form(&url, body.to_owned(), &[]).await;
            eprintln!(
                "coldmix: {} answered {}: {} (query: {body})",
                self.mode.label(),
                a.status,
                String::from_utf8_lossy(&again.body[..again.body.len().min(300)])
            );
        }
        (a.status, a.took)
    }
}

/// One query's measurement.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: f64,
    status: u16,
    /// Querier CPU ticks during the query (sequential run only).
    querier_ticks: Option<u64>,
    /// Querier requests the query caused (sequential run, frontend only).
    requests: Option<f64>,
}

/// One mode's run over the whole list.
#[derive(Default)]
struct Run {
    samples: Vec<Sample>,
    /// Sequential: the sum of the queries' wall times; concurrent: first request to
    /// last answer.
    wall: f64,
    querier_ticks: u64,
    frontend_ticks: u64,
    requests: f64,
}

/// One client, the queries in list order, each asked of every mode in turn (the order
/// of the modes rotating from query to query, so drift on a shared machine spreads
/// evenly), a fresh frontend per mode. Returns a run per mode, in `Mode::ALL` order.
async fn sequential(b: &Bench, w: &Window, bodies: &[String], prom_pid: u32) -> Vec<Run> {
    let targets: Vec<Target> = Mode::ALL
        .iter()
        .map(|m| Target::start(b, *m, &format!("{}-seq", w.slug)))
        .collect();
    let mut runs: Vec<Run> = Mode::ALL.iter().map(|_| Run::default()).collect();
    for (i, body) in bodies.iter().enumerate() {
        for k in 0..targets.len() {
            let m = (i + k) % targets.len();
            let t = &targets[m];
            let r0 = t.querier_requests(b).await;
            let (q0, f0) = (cpu_ticks(prom_pid), t.frontend_ticks());
            let (status, took) = t.ask(b, body).await;
            settle(prom_pid).await;
            let (q1, f1) = (cpu_ticks(prom_pid), t.frontend_ticks());
            let r1 = t.querier_requests(b).await;
            let run = &mut runs[m];
            run.samples.push(Sample {
                wall: took.as_secs_f64(),
                status,
                querier_ticks: Some(q1 - q0),
                requests: t.frontend.is_some().then_some(r1 - r0),
            });
            run.wall += took.as_secs_f64();
            run.querier_ticks += q1 - q0;
            run.frontend_ticks += f1 - f0;
            run.requests += r1 - r0;
        }
    }
    runs
}

/// `CLIENTS` clients taking the queries from one shared queue, against a fresh target.
async fn concurrent(
    b: &Bench,
    w: &Window,
    mode: Mode,
    bodies: &Arc<Vec<String>>,
    prom_pid: u32,
) -> Run {
    let t = Arc::new(Target::start(b, mode, &format!("{}-c{CLIENTS}", w.slug)));
    settle(prom_pid).await;
    let r0 = t.querier_requests(b).await;
    let (q0, f0) = (cpu_ticks(prom_pid), t.frontend_ticks());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url) = (b.client.clone(), format!("{}/api/v1/query_range", t.url));
        let (bodies, next) = (bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let a = client
                    .post_form(&url, body.clone(), &[("accept-encoding", "gzip")])
                    .await;
                done.push((i, a.status, a.took));
            }
            done
        });
    }
    let mut samples = vec![Sample::default(); bodies.len()];
    while let Some(done) = tasks.join_next().await {
        for (i, status, took) in done.expect("client task") {
            samples[i] = Sample {
                wall: took.as_secs_f64(),
                status,
                querier_ticks: None,
                requests: None,
            };
        }
    }
    let wall = started.elapsed().as_secs_f64();
    settle(prom_pid).await;
    let (q1, f1) = (cpu_ticks(prom_pid), t.frontend_ticks());
    let r1 = t.querier_requests(b).await;
    for (i, s) in samples.iter().enumerate() {
        if s.status != 200 {
            t.ask(b, &bodies[i]).await;
        }
    }
    Run {
        samples,
        wall,
        querier_ticks: q1 - q0,
        frontend_ticks: f1 - f0,
        requests: r1 - r0,
    }
}

/// The value at quantile `q` of `v` (nearest rank), 0 when empty.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".to_owned()
    }
}

/// The runs of one window: sequential and concurrent, per mode.
struct WindowRuns {
    window: &'static Window,
    seq: Vec<Run>,
    conc: Vec<Run>,
}

/// Scenario 8.
pub async fn run(b: &Bench, r: &mut Report) {
    let queries = query_list();
    let prom_pid = prometheus_pid(&b.prom);
    let hz = ticks_per_second();
    // Every chunk of every family read once before anything is measured, so no mode
    // pays for paging in Prometheus' memory maps.
    let direct = Target::start(b, Mode::Direct, "warm");
    for family in FAMILIES {
        let warm = body_for(
            &format!("count(count_over_time({family}[1d]))"),
            b.tb.start_ms + DAY,
            b.tb.end_ms,
            86_400,
        );
        direct.ask(b, &warm).await;
    }

    let mut all = Vec::new();
    for w in &WINDOWS {
        let step_ms = w.step_s * 1000;
        let end = b.newest / step_ms * step_ms;
        let start = end - w.days * DAY;
        let bodies: Vec<String> = queries
            .iter()
            .map(|q| body_for(q, start, end, w.step_s))
            .collect();
        let t = Instant::now();
        let seq = sequential(b, w, &bodies, prom_pid).await;
        eprintln!(
            "coldmix {}: sequential runs took {:.0?}",
            w.label,
            t.elapsed()
        );
        let bodies = Arc::new(bodies);
        let mut conc: Vec<Run> = Mode::ALL.iter().map(|_| Run::default()).collect();
        // The concurrent runs one after another, starting with a different mode in
        // each window.
        let first = all.len();
        for k in 0..Mode::ALL.len() {
            let m = (first + k) % Mode::ALL.len();
            let t = Instant::now();
            conc[m] = concurrent(b, w, Mode::ALL[m], &bodies, prom_pid).await;
            eprintln!(
                "coldmix {}: {} with {CLIENTS} clients took {:.0?}",
                w.label,
                Mode::ALL[m].label(),
                t.elapsed()
            );
        }
        all.push(WindowRuns {
            window: w,
            seq,
            conc,
        });
    }
    report(r, &queries, &all, hz);
    write_tsv(&queries, &all);
}

fn report(r: &mut Report, queries: &[&str], all: &[WindowRuns], hz: f64) {
    let n = queries.len();
    r.line(format!(
        "### 8. Cold mix: {n} ordinary queries, each asked once with an empty cache"
    ));
    r.line("");
    r.line(format!(
        "The queries of `benches/coldmix_queries.txt` (cheap expressions, rate family, `*_over_time` from 1s to 1d, aggregations, binary operators with matching, subqueries up to 1 day, offsets and `@`, `histogram_quantile`, label functions, `absent`, math) over three windows ending an hour before the last sample. Each query is asked direct and through a freshly started frontend per mode (memory cache, empty), by one client (queries interleaved over the modes) and then by {CLIENTS} clients sharing a queue (modes one after another). Querier CPU is utime + stime of the Prometheus process (`/proc/PID/stat`, {hz:.0} ticks/s), read before each query and after it once Prometheus has been idle for 20 ms (one client) or around the whole run ({CLIENTS} clients), summed over the run; querier requests are the frontend's `downstream_attempts_total{{kind=\"query_range\"}}`."
    ));
    r.line("");
    r.line("| window | clients | path | wall | wall / direct | querier CPU | CPU / direct | frontend CPU | querier requests per query: mean, max | heavy (≥ 0.5 s direct): wall / direct | cheap (< 5 ms direct): added, median, p90 | non-200 |");
    r.line("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for wr in all {
        let direct_seq = &wr.seq[0].samples;
        let heavy: Vec<usize> = (0..n).filter(|&i| direct_seq[i].wall >= HEAVY_S).collect();
        let cheap: Vec<usize> = (0..n).filter(|&i| direct_seq[i].wall < CHEAP_S).collect();
        for (clients, runs) in [(1, &wr.seq), (CLIENTS, &wr.conc)] {
            let direct = &runs[0];
            for (m, mode) in Mode::ALL.iter().enumerate() {
                let run = &runs[m];
                let errors = run.samples.iter().filter(|s| s.status != 200).count();
                let sum_over = |run: &Run, idx: &[usize]| -> f64 {
                    idx.iter().map(|&i| run.samples[i].wall).sum()
                };
                let (requests, heavy_col, cheap_col) = if *mode == Mode::Direct {
                    (
                        "1, 1".to_owned(),
                        if clients == 1 {
                            format!("{} queries, {:.1} s", heavy.len(), sum_over(run, &heavy))
                        } else {
                            format!("{} queries", heavy.len())
                        },
                        format!("{} queries", cheap.len()),
                    )
                } else {
                    let max = run
                        .samples
                        .iter()
                        .filter_map(|s| s.requests)
                        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
                    let added: Vec<f64> = cheap
                        .iter()
                        .map(|&i| (run.samples[i].wall - direct.samples[i].wall) * 1e3)
                        .collect();
                    (
                        format!(
                            "{:.1}, {}",
                            run.requests / n as f64,
                            max.map_or("—".to_owned(), |v| format!("{v:.0}"))
                        ),
                        ratio(sum_over(run, &heavy), sum_over(direct, &heavy)),
                        format!(
                            "{:+.1} ms, {:+.1} ms",
                            quantile(&added, 0.5),
                            quantile(&added, 0.9)
                        ),
                    )
                };
                let qcpu = run.querier_ticks as f64 / hz;
                r.line(format!(
                    "| {} | {clients} | {} | {:.1} s | {} | {qcpu:.1} s | {} | {} | {requests} | {heavy_col} | {cheap_col} | {errors} |",
                    wr.window.label,
                    mode.label(),
                    run.wall,
                    ratio(run.wall, direct.wall),
                    ratio(qcpu, direct.querier_ticks as f64 / hz),
                    if *mode == Mode::Direct {
                        "—".to_owned()
                    } else {
                        format!("{:.1} s", run.frontend_ticks as f64 / hz)
                    },
                ));
            }
        }
    }
    r.line("");

    // The queries that cost the querier the most CPU on top of going direct.
    let mut worst: Vec<(&str, &str, &Sample, &Sample)> = Vec::new();
    for wr in all {
        for (i, q) in queries.iter().enumerate() {
            worst.push((
                wr.window.label,
                q,
                &wr.seq[0].samples[i],
                &wr.seq[1].samples[i],
            ));
        }
    }
    let added = |d: &Sample, f: &Sample| {
        f.querier_ticks.unwrap_or(0) as f64 - d.querier_ticks.unwrap_or(0) as f64
    };
    worst.sort_by(|a, b| added(b.2, b.3).total_cmp(&added(a.2, a.3)));
    r.line(format!(
        "Largest added querier CPU, one client, {} (per-query CPU has the {:.0} ms granularity of a clock tick):",
        Mode::Default.label(),
        1e3 / hz
    ));
    r.line("");
    r.line("| window | query | direct wall | frontend wall | querier CPU direct | querier CPU frontend | querier requests |");
    r.line("|---|---|---|---|---|---|---|");
    for (window, q, d, f) in worst.iter().take(WORST) {
        let cpu = |s: &Sample| s.querier_ticks.unwrap_or(0) as f64 / hz * 1e3;
        r.line(format!(
            "| {window} | `{}` | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} |",
            q.replace('|', "\\|"),
            d.wall * 1e3,
            f.wall * 1e3,
            cpu(d),
            cpu(f),
            f.requests.unwrap_or(0.0)
        ));
    }
    r.line("");
    r.line(format!(
        "Wall: one client, the sum of the queries' times; {CLIENTS} clients, first request to last answer. Ratios are frontend / direct in the same run. Heavy and cheap are classified by the one-client direct time in that window; the heavy ratio sums their wall times, the added milliseconds are per query against direct in the same run. Frontend CPU is the frontend process's own (it shares the {} cores with Prometheus and the client). Querier requests with {CLIENTS} clients are the run's total over {n}; identical in-flight pieces share a request. Until the `fetch` field exists the `per_interval` mode runs the default config, so its rows measure the same thing as the default rows and their difference is run-to-run noise. Per-query results: `target/tmp/coldmix.tsv`.",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
    ));
    r.line("");
    r.line("Not covered: a querier with more cores than the frontend's parallelism can fill (here Prometheus, the frontend and the client share 2 cores, so parallel pieces do not make a cold query faster by spreading it); Thanos Query, Mimir or VictoriaMetrics as the querier (their per-request cost and fan-out differ); data with many more series (~450 here, so per-request fixed costs weigh more than on a large TSDB); remote storage or object-store reads (everything is page-cached); native histograms; queries other than range queries; warm or partially cached windows (scenarios 2–4 cover those); and more than one client per frontend replica beyond the four here.");
    r.line("");
}

/// Every query's measurement as tab-separated values, for a closer look.
fn write_tsv(queries: &[&str], all: &[WindowRuns]) {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("coldmix.tsv");
    let mut out = String::from(
        "window\tclients\tmode\tquery\twall_s\tstatus\tquerier_ticks\tquerier_requests\n",
    );
    for wr in all {
        for (clients, runs) in [(1, &wr.seq), (CLIENTS, &wr.conc)] {
            for (m, run) in runs.iter().enumerate() {
                for (i, s) in run.samples.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{}\t{clients}\t{}\t{}\t{:.6}\t{}\t{}\t{}",
                        wr.window.slug,
                        Mode::ALL[m].slug(),
                        queries[i],
                        s.wall,
                        s.status,
                        s.querier_ticks.map_or(String::new(), |t| t.to_string()),
                        s.requests.map_or(String::new(), |t| t.to_string()),
                    );
                }
            }
        }
    }
    match std::fs::write(&path, out) {
        Ok(()) => eprintln!("coldmix: per-query results in {}", path.display()),
        Err(e) => eprintln!("coldmix: cannot write {}: {e}", path.display()),
    }
}
