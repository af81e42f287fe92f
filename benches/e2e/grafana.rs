//! Scenario 10: everything a Grafana dashboard load sends, not only its range panels.
//!
//! A dashboard with 3 template variables (label values with a `match[]` over the
//! dashboard's window, resolved before the panels), 2 stat panels (instant queries at
//! the window's end) and 12 range panels sharing the dashboard's time range (steps as
//! Grafana picks them). Loads, in order: the first load of 6 h, a reload of the same
//! window, a zoom-out to 24 h and then to 7 d (same end), a reload of the 7 d, and the
//! 7 d in panels half as wide (Grafana's step follows the panel's width in pixels:
//! twice the step, as a narrower screen or a smaller panel of the same query asks). Every
//! window ends an hour before the data's last sample, so all of it is older than
//! `max_freshness`. The same sequence goes to Prometheus directly, to a fresh frontend
//! (memory cache), and to a fresh frontend with `lower_step_reuse = false`, repeated
//! `BENCH_REPS` times (medians reported). A direct
//! pass of every load runs first, unmeasured, so every target finds Prometheus' data in
//! the page cache. Measured per load: the requests reaching Prometheus, its CPU
//! (utime plus stime from `/proc/PID/stat`, after it went idle), the time the querier
//! spent on them (direct: every request's latency; frontend: its querier attempts' durations)
//! and the load's wall time.

use std::time::{Duration, Instant};

use crate::coldmix::{cpu_ticks, prometheus_pid, settle, ticks_per_second};
use crate::scenarios::{PANELS, grafana_step_s, panel_form};
use crate::support::{form, secs};
use crate::{Bench, Client, DAY, FrontendProc, H, Report, frontend_toml, metrics_text, ms};

/// Template variables: (label, `match[]`).
const VARIABLES: &[(&str, &str)] = &[
    ("instance", "up"),
    ("handler", "http_requests_total"),
    ("code", "http_requests_total{handler=~\"/api/.*\"}"),
];

/// Stat panels (instant queries).
const STATS: &[&str] = &["sum(up)", "sum(rate(http_requests_total[5m]))"];

/// The loads: (what, dashboard range, step as a multiple of Grafana's choice).
const LOADS: &[(&str, i64, i64)] = &[
    ("first load, 6 h", 6 * H, 1),
    ("reload, 6 h", 6 * H, 1),
    ("zoom out to 24 h", 24 * H, 1),
    ("zoom out to 7 d", 7 * DAY, 1),
    ("reload, 7 d", 7 * DAY, 1),
    ("7 d in panels half as wide (step ×2)", 7 * DAY, 2),
];

/// What one load cost.
#[derive(Default, Clone, Copy)]
struct Cost {
    requests: f64,
    cpu_s: f64,
    querier_s: f64,
    wall: Duration,
}

/// Requests to the querier and seconds they took, so far, from a frontend's metrics
/// (health probes left out).
async fn querier_work(client: &Client, fe: &str) -> (f64, f64) {
    let text = metrics_text(client, fe).await;
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && !l.contains("kind=\"probe\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("promql_frontend_downstream_attempts_total{"),
        sum("promql_frontend_downstream_attempt_duration_seconds_sum{"),
    )
}

/// One dashboard load against `base`: the variables first, then every panel at once.
/// Returns the summed latency of its requests and its wall time.
async fn load(
    client: &Client,
    base: &str,
    end: i64,
    (range, step_factor): (i64, i64),
) -> (Duration, Duration) {
    let started = Instant::now();
    let step_ms = grafana_step_s(range) * 1000 * step_factor;
    let (start, end) = ((end - range) / step_ms * step_ms, end / step_ms * step_ms);
    let headers = [
        ("x-dashboard-uid", "bench-load"),
        ("accept-encoding", "gzip"),
    ];
    let mut summed = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for (label, matcher) in VARIABLES {
        let url = format!(
            "{base}/api/v1/label/{label}/values?{}",
            form(&[
                ("match[]", matcher),
                ("start", &(start / 1000).to_string()),
                ("end", &(end / 1000).to_string()),
            ])
        );
        let client = client.clone();
        tasks.spawn(async move {
            let a = client.get(&url, &headers).await;
            assert_eq!(a.status, 200, "{url}");
            a.took
        });
    }
    while let Some(t) = tasks.join_next().await {
        summed += t.expect("variable task");
    }
    for expr in STATS {
        let body = form(&[("query", expr), ("time", &secs(end))]);
        let (client, url) = (client.clone(), format!("{base}/api/v1/query"));
        tasks.spawn(async move {
            let a = client.post_form(&url, body, &headers).await;
            assert_eq!(a.status, 200, "stat {expr}");
            a.took
        });
    }
    for (_, expr, _) in PANELS {
        let body = panel_form(expr, start, end, step_ms);
        let (client, url) = (client.clone(), format!("{base}/api/v1/query_range"));
        tasks.spawn(async move {
            let a = client.post_form(&url, body, &headers).await;
            assert_eq!(a.status, 200, "panel {expr}");
            a.took
        });
    }
    while let Some(t) = tasks.join_next().await {
        summed += t.expect("panel task");
    }
    (summed, started.elapsed())
}

/// The whole sequence against one target; `fe` is `None` for Prometheus itself.
async fn sequence(b: &Bench, base: &str, fe: Option<&FrontendProc>, pid: u32) -> Vec<Cost> {
    let hz = ticks_per_second();
    let requests_per_load = (VARIABLES.len() + STATS.len() + PANELS.len()) as f64;
    let mut costs = Vec::new();
    for (_, range, factor) in LOADS {
        settle(pid).await;
        let ticks = cpu_ticks(pid);
        let before = match fe {
            Some(fe) => querier_work(&b.client, &fe.url).await,
            None => (0.0, 0.0),
        };
        let (summed, wall) = load(&b.client, base, b.newest, (*range, *factor)).await;
        settle(pid).await;
        let cpu_s = cpu_ticks(pid).saturating_sub(ticks) as f64 / hz;
        let (requests, querier_s) = match fe {
            Some(fe) => {
                let after = querier_work(&b.client, &fe.url).await;
                (after.0 - before.0, after.1 - before.1)
            }
            None => (requests_per_load, summed.as_secs_f64()),
        };
        costs.push(Cost {
            requests,
            cpu_s,
            querier_s,
            wall,
        });
    }
    costs
}

/// Per load, the median of each measure over the repetitions.
fn medians(reps: &[Vec<Cost>]) -> Vec<Cost> {
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    (0..LOADS.len())
        .map(|i| {
            let of = |f: fn(&Cost) -> f64| median(reps.iter().map(|r| f(&r[i])).collect());
            Cost {
                requests: of(|c| c.requests),
                cpu_s: of(|c| c.cpu_s),
                querier_s: of(|c| c.querier_s),
                wall: Duration::from_secs_f64(of(|c| c.wall.as_secs_f64())),
            }
        })
        .collect()
}

/// Runs the scenario and writes its table.
pub async fn run(b: &Bench, r: &mut Report) {
    let pid = prometheus_pid(&b.prom);
    for (_, range, factor) in LOADS {
        load(&b.client, &b.prom, b.newest, (*range, *factor)).await;
    }
    // Each repetition: the sequence direct, then through two fresh frontends (cold
    // caches), one after another; per load the median over repetitions.
    let mut runs: [Vec<Vec<Cost>>; 3] = Default::default();
    for rep in 0..b.reps {
        runs[0].push(sequence(b, &b.prom, None, pid).await);
        for (i, (name, cache)) in [
            ("grafana-load", "backend = \"memory\""),
            (
                "grafana-load-no-reuse",
                "backend = \"memory\"\nlower_step_reuse = false",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let fe = FrontendProc::start(
                &b.dir,
                &format!("{name}-{rep}"),
                &frontend_toml(&b.prom, cache),
            );
            runs[i + 1].push(sequence(b, &fe.url, Some(&fe), pid).await);
        }
    }
    let [direct, frontend, no_reuse] = runs.map(|reps| medians(&reps));

    r.line("### 10. Dashboard load: template variables, stat panels and range panels");
    r.line("");
    r.line(format!(
        "{} label-values variables (with `match[]`, over the window), {} instant stat panels and {} range panels sharing the dashboard's range; windows end an hour before the last sample (older than `max_freshness`). The six loads in order, {} times: direct, then through a fresh frontend (cold caches), then through a fresh one with `lower_step_reuse = false`; per load the median over the repetitions (the \"all loads\" row sums the medians). Prometheus CPU is utime plus stime around each load.",
        VARIABLES.len(),
        STATS.len(),
        PANELS.len(),
        b.reps,
    ));
    r.line("");
    r.line("| load | direct: querier requests | direct: querier CPU | direct: querier time | direct: wall | frontend: querier requests | frontend: querier CPU | frontend: querier time | frontend: wall | no lower-step reuse: querier requests | no lower-step reuse: querier CPU |");
    r.line("|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, (what, _, _)) in LOADS.iter().enumerate() {
        let (d, f, n) = (direct[i], frontend[i], no_reuse[i]);
        r.line(format!(
            "| {what} | {:.0} | {:.2} s | {:.2} s | {} | {:.0} | {:.2} s | {:.3} s | {} | {:.0} | {:.2} s |",
            d.requests,
            d.cpu_s,
            d.querier_s,
            ms(d.wall),
            f.requests,
            f.cpu_s,
            f.querier_s,
            ms(f.wall),
            n.requests,
            n.cpu_s,
        ));
    }
    let total = |c: &[Cost]| -> (f64, f64) {
        c.iter()
            .fold((0.0, 0.0), |(r, s), c| (r + c.requests, s + c.cpu_s))
    };
    let (dt, ft, nt) = (total(&direct), total(&frontend), total(&no_reuse));
    r.line(format!(
        "| **all loads** | {:.0} | {:.2} s | | | {:.0} | {:.2} s | | | {:.0} | {:.2} s |",
        dt.0, dt.1, ft.0, ft.1, nt.0, nt.1
    ));
    r.line("");
    r.line("Not covered: a dashboard at the wall-clock now (scenario 9: there the variables, stat panels and the last minutes of every panel always reach the querier); variables resolved through `/api/v1/series` or `label_values()` without a matcher; Grafana's own query caching; several viewers at once; a querier other than one Prometheus.");
}
