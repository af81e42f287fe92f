//! Soak test: many clients for a minute on a mix of endpoints against the frontend
//! binary, in front of a real Prometheus and a real Redis, with Redis and then
//! Prometheus restarted in the middle of the run.
//!
//! What it holds the frontend to:
//! - every answer has the status its request calls for: 200 for valid requests, 400
//!   `bad_data` for bad ones; while Prometheus is down (and until it is ready again) a
//!   data request may instead get 503 with Prometheus error JSON. A Redis outage is
//!   invisible: no allowance at all;
//! - sampled answers equal the querier's own (a second Prometheus on the same blocks,
//!   never restarted, is the reference);
//! - the process stays up with its resident memory under a bound;
//! - afterwards, without restarting the frontend: it is ready, it caches in the
//!   restarted Redis again, and every query of the mix (answered from its caches) still
//!   equals the querier's answer: nothing wrong was cached during the outages.
//!
//! Its own test binary, so no other test competes for the CPU while it runs.
//! `SOAK_SECONDS` (60) and `SOAK_CLIENTS` (64) change length and concurrency;
//! `cargo test --test soak -- --nocapture` prints the figures RELIABILITY.md records.

#[path = "e2e/compare.rs"]
mod compare;
#[path = "e2e/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use support::{
    Reply, Scratch, Supervised, blocking, build_testbed, copy_tsdb, form, free_port, probe_status,
    redis_ping, secs, start_prometheus_on, start_redis,
};

const H: i64 = 3_600_000;
/// Peak resident memory allowed to the frontend process: its caches are bounded
/// (`cache.response_capacity_bytes` is 64 MiB by default; pieces live in Redis), so
/// anything near this means something grows without bound.
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// What a request of the mix is and what a correct answer to it is.
#[derive(Clone)]
struct Ask {
    name: String,
    method: Method,
    /// Path and query string.
    target: String,
    /// Form body (POST).
    body: Option<String>,
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A range query: 200, compared with [`compare::compare`].
    Matrix,
    /// Any other data request: 200, JSON equal to the querier's.
    SameJson,
    /// A bad request: 400 `bad_data`, also while the querier is down.
    BadData,
    /// Served by the frontend itself (`/metrics`, `/-/healthy`): 200, always.
    Local,
}

/// The mix: range queries over several windows (with refresh-like shifted ends),
/// instant queries, label and series lookups, bad requests and local endpoints.
fn catalogue(end_ms: i64) -> Vec<Ask> {
    let exprs = [
        "up",
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        "max_over_time(temperature_celsius[1h])",
        "count(up == 1)",
        "rate(http_requests_total{code=\"500\"}[10m] offset 1h)",
    ];
    let midnight = (end_ms - 6 * H).div_euclid(24 * H) * 24 * H;
    let windows = [
        ("6h/60s", end_ms - 6 * H, end_ms, 60_000),
        ("2d/5m", end_ms - 49 * H, end_ms - H, 300_000),
        ("midnight/15s", midnight - 3 * H, midnight + 3 * H, 15_000),
        ("3d/10m", end_ms - 70 * H, end_ms - 2 * H, 600_000),
    ];
    let mut asks = Vec::new();
    for expr in exprs {
        for (window, start, end, step) in windows {
            // A dashboard refreshed a few times: the same window moved by whole steps.
            for shift in 0..3 {
                let (s, e) = (start + shift * step, end + shift * step);
                let body = form(&[
                    ("query", expr),
                    ("start", &secs(s)),
                    ("end", &secs(e)),
                    ("step", &(step / 1000).to_string()),
                ]);
                asks.push(Ask {
                    name: format!("range {window}+{shift} {expr}"),
                    method: if shift == 1 {
                        Method::GET
                    } else {
                        Method::POST
                    },
                    target: if shift == 1 {
                        format!("/api/v1/query_range?{body}")
                    } else {
                        "/api/v1/query_range".to_owned()
                    },
                    body: (shift != 1).then_some(body),
                    expect: Expect::Matrix,
                });
            }
        }
    }
    for (i, expr) in exprs.iter().enumerate() {
        let q = form(&[
            ("query", expr),
            ("time", &secs(end_ms - (i as i64 + 1) * H)),
        ]);
        asks.push(Ask {
            name: format!("instant {expr}"),
            method: Method::GET,
            target: format!("/api/v1/query?{q}"),
            body: None,
            expect: Expect::SameJson,
        });
    }
    let span = form(&[("start", &secs(end_ms - 24 * H)), ("end", &secs(end_ms))]);
    for (name, method, target, body) in [
        (
            "labels",
            Method::GET,
            format!("/api/v1/labels?{span}"),
            None,
        ),
        (
            "label values",
            Method::GET,
            format!("/api/v1/label/job/values?{span}"),
            None,
        ),
        (
            "series",
            Method::POST,
            "/api/v1/series".to_owned(),
            Some(format!("match[]=up&{span}")),
        ),
        (
            "buildinfo",
            Method::GET,
            "/api/v1/status/buildinfo".to_owned(),
            None,
        ),
    ] {
        asks.push(Ask {
            name: name.to_owned(),
            method,
            target,
            body,
            expect: Expect::SameJson,
        });
    }
    let bad = [
        form(&[
            ("query", "sum(rate(x[5m])"),
            ("start", &secs(end_ms - H)),
            ("end", &secs(end_ms)),
            ("step", "60"),
        ]),
        form(&[
            ("query", "up"),
            ("start", &secs(end_ms - H)),
            ("end", &secs(end_ms)),
            ("step", "0"),
        ]),
        form(&[
            ("query", "up"),
            ("start", &secs(end_ms)),
            ("end", &secs(end_ms - H)),
            ("step", "60"),
        ]),
    ];
    for (i, q) in bad.into_iter().enumerate() {
        asks.push(Ask {
            name: format!("bad range {i}"),
            method: Method::GET,
            target: format!("/api/v1/query_range?{q}"),
            body: None,
            expect: Expect::BadData,
        });
    }
    for path in ["/metrics", "/-/healthy"] {
        asks.push(Ask {
            name: path.to_owned(),
            method: Method::GET,
            target: path.to_owned(),
            body: None,
            expect: Expect::Local,
        });
    }
    asks
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// Sends `ask` to `base`; `Err` for a transport failure.
async fn ask(client: &Http, base: &str, ask: &Ask) -> Result<Reply, String> {
    let mut req = Request::builder()
        .method(ask.method.clone())
        .uri(format!("{base}{}", ask.target));
    let body = match &ask.body {
        Some(b) => {
            req = req.header("content-type", "application/x-www-form-urlencoded");
            Bytes::from(b.clone())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| "no answer within 60 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Whether `reply` is the 503 for an unavailable querier (not the frontend's own
/// overload 503, which would mean the soak overran `server.max_concurrent_requests`).
fn is_querier_unavailable(reply: &Reply) -> bool {
    is_error_json(reply, 503, "unavailable") && !reply.text().contains("max_concurrent_requests")
}

/// The sum of the samples of `name` whose labels contain every `labels` pair, from the
/// frontend's `/metrics`.
async fn metric(client: &Http, base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let a = Ask {
        name: "/metrics".into(),
        method: Method::GET,
        target: "/metrics".into(),
        body: None,
        expect: Expect::Local,
    };
    let text = ask(client, base, &a).await.expect("scrape /metrics").text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether `reply` is Prometheus error JSON with this status and error type.
fn is_error_json(reply: &Reply, status: u16, error_type: &str) -> bool {
    reply.status.as_u16() == status
        && serde_json::from_slice::<serde_json::Value>(&reply.decoded()).is_ok_and(|v| {
            v["status"] == "error" && v["errorType"] == error_type && v["error"].is_string()
        })
}

/// Compares an answer of the frontend with the reference querier's; `None` when they
/// agree. A mismatch is re-checked against a second reference answer, since Prometheus
/// itself may sum floats in another order between two runs of the same query.
async fn differs(client: &Http, direct_url: &str, a: &Ask, via: &Reply) -> Option<String> {
    let mut why = None;
    for _ in 0..2 {
        let direct = match ask(client, direct_url, a).await {
            Ok(d) => d,
            Err(e) => return Some(format!("reference querier failed: {e}")),
        };
        let verdict = match a.expect {
            Expect::Matrix => compare::compare(&a.name, &direct, via, true),
            _ if direct.status != via.status => {
                Some(format!("status {} vs direct {}", via.status, direct.status))
            }
            _ => {
                let parse = |r: &Reply| serde_json::from_slice::<serde_json::Value>(&r.decoded());
                match (parse(&direct), parse(via)) {
                    (Ok(d), Ok(v)) if d == v => None,
                    _ => Some(format!(
                        "bodies differ:\n  via:    {:.300}\n  direct: {:.300}",
                        via.text(),
                        direct.text()
                    )),
                }
            }
        };
        // Agreeing with either reference answer is agreeing.
        verdict.as_ref()?;
        why = verdict;
    }
    why
}

/// When the querier was unavailable: from just before it was stopped until it was
/// ready again.
#[derive(Default, Clone, Copy)]
struct Outage {
    down: Option<Instant>,
    up: Option<Instant>,
}

impl Outage {
    /// Whether a request sent at `sent` and answered at `done` overlapped the outage.
    fn overlaps(&self, sent: Instant, done: Instant) -> bool {
        match self.down {
            None => false,
            Some(down) => {
                done >= down && self.up.is_none_or(|up| sent <= up + Duration::from_secs(1))
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    by_status: BTreeMap<String, u64>,
    during_outage: BTreeMap<String, u64>,
    unexpected: Vec<String>,
    compared: u64,
    wrong: Vec<String>,
    /// First 200 for a querier-backed request sent after the querier was ready again.
    first_success_after_restart: Option<Instant>,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The frontend binary with the Redis cache, as its own process (its memory is measured).
fn spawn_frontend(dir: &std::path::Path, port: u16, querier: &str, redis_port: u16) -> Supervised {
    let config = dir.join("frontend.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [downstream]\nurl = \"{querier}\"\nconnect_timeout = \"2s\"\n\
             [cache]\nbackend = \"redis\"\n\
             [cache.redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nreconnect_backoff = \"200ms\"\n\
             [log]\nlevel = \"warn\"\n"
        ),
    )
    .expect("write frontend config");
    let args = vec!["--config".to_owned(), config.display().to_string()];
    let proc = Supervised::start(
        env!("CARGO_BIN_EXE_promql-frontend"),
        &args,
        &dir.join("frontend.log"),
        None,
    );
    for _ in 0..400 {
        if probe_status(port, "/-/ready") == Some(200) {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("frontend binary did not become ready:\n{}", proc.log());
}

/// `VmRSS` of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Keys in the Redis on `port` (`DBSIZE`).
fn redis_dbsize(port: u16) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.write_all(b"DBSIZE\r\n");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_redis_and_prometheus_restarts() {
    // The fault schedule needs room: Redis at 1/4, Prometheus at 1/2 for 5 s or more.
    let seconds = env_or("SOAK_SECONDS", 60).max(30);
    let clients = env_or("SOAK_CLIENTS", 64) as usize;

    // The reference: a Prometheus on the generated data, never restarted.
    let tb = blocking(|| build_testbed(3.0)).await;
    let direct_url = tb.prom_url.clone();
    // The querier behind the frontend: a second Prometheus on a copy of the blocks.
    let scratch = Scratch::new("soak");
    let tsdb = scratch.0.join("tsdb");
    let from = tb.data_dir.clone();
    let to = tsdb.clone();
    blocking(move || copy_tsdb(&from, &to)).await;
    let prom_port = free_port();
    let tsdb_for_start = tsdb.clone();
    let prometheus = blocking(move || start_prometheus_on(&tsdb_for_start, prom_port)).await;
    let (redis, redis_port) = blocking(|| start_redis(None)).await;
    let fe_port = free_port();
    let dir = scratch.0.clone();
    let frontend = blocking(move || {
        spawn_frontend(
            &dir,
            fe_port,
            &format!("http://127.0.0.1:{prom_port}"),
            redis_port,
        )
    })
    .await;
    let fe_pid = frontend.pid().expect("frontend pid");
    let fe_url = format!("http://127.0.0.1:{fe_port}");

    let asks = Arc::new(catalogue(tb.end_ms));
    let client: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .build_http();
    let outage = Arc::new(Mutex::new(Outage::default()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);

    // Memory, sampled four times a second.
    let rss_samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let sampler = {
        let rss_samples = rss_samples.clone();
        tokio::spawn(async move {
            while Instant::now() < stop_at {
                if let Some(kib) = rss_kib(fe_pid) {
                    let mut s = rss_samples.lock().expect("lock");
                    s.push((started.elapsed().as_secs_f64(), kib));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let mut workers = tokio::task::JoinSet::new();
    for id in 0..clients {
        let (asks, client, outage, tally) =
            (asks.clone(), client.clone(), outage.clone(), tally.clone());
        let (fe_url, direct_url) = (fe_url.clone(), direct_url.clone());
        workers.spawn(async move {
            // A small xorshift per client: a reproducible, varied walk through the mix.
            let mut x =
                0x9e37_79b9_7f4a_7c15u64 ^ (id as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let mut n = 0u64;
            while Instant::now() < stop_at {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a = &asks[(x % asks.len() as u64) as usize];
                let sent = Instant::now();
                let reply = ask(&client, &fe_url, a).await;
                let done = Instant::now();
                n += 1;
                let during = outage.lock().expect("lock").overlaps(sent, done);
                let after_restart = outage.lock().expect("lock").up.is_some_and(|up| sent >= up);
                let status = match &reply {
                    Ok(r) => r.status.as_u16().to_string(),
                    Err(_) => "transport error".to_owned(),
                };
                let querier_backed = matches!(a.expect, Expect::Matrix | Expect::SameJson);
                let ok = match (&reply, a.expect) {
                    (Err(_), _) => false,
                    (Ok(r), Expect::Local) => r.status == 200,
                    (Ok(r), Expect::BadData) => is_error_json(r, 400, "bad_data"),
                    (Ok(r), _) => r.status == 200 || (during && is_querier_unavailable(r)),
                };
                // Sample one in eight successful data answers against the reference.
                let check = ok
                    && n.is_multiple_of(8)
                    && matches!(a.expect, Expect::Matrix | Expect::SameJson)
                    && reply.as_ref().is_ok_and(|r| r.status == 200);
                let wrong = match (&reply, check) {
                    (Ok(r), true) => differs(&client, &direct_url, a, r).await,
                    _ => None,
                };
                let mut t = tally.lock().expect("lock");
                t.requests += 1;
                *t.by_status.entry(status.clone()).or_default() += 1;
                if during && querier_backed {
                    *t.during_outage.entry(status.clone()).or_default() += 1;
                }
                // Only passthrough requests always reach the querier (range queries may
                // come from the caches): their first 200 after the restart is recovery.
                if after_restart
                    && a.expect == Expect::SameJson
                    && reply.as_ref().is_ok_and(|r| r.status == 200)
                {
                    let first = t.first_success_after_restart.get_or_insert(done);
                    *first = (*first).min(done);
                }
                if !ok && t.unexpected.len() < 20 {
                    let detail = match &reply {
                        Ok(r) => format!("{status}: {:.200}", r.text()),
                        Err(e) => e.clone(),
                    };
                    t.unexpected.push(format!(
                        "t={:.1}s {}: {detail}",
                        sent.duration_since(started).as_secs_f64(),
                        a.name
                    ));
                } else if !ok {
                    t.unexpected.push(String::new());
                }
                if check {
                    t.compared += 1;
                }
                if let Some(why) = wrong {
                    t.wrong.push(format!("{}: {why}", a.name));
                }
            }
        });
    }

    // The faults: Redis crashes (SIGKILL) at a quarter and is back 3 s later; Prometheus
    // is stopped at half time and started again 5 s later.
    let at = |fraction: f64| started + Duration::from_secs_f64(seconds as f64 * fraction);
    tokio::time::sleep_until(at(0.25).into()).await;
    let redis_errors = "promql_frontend_cache_backend_errors_total";
    let redis_hits = "promql_frontend_cache_lookups_total";
    let errors_before = metric(&client, &fe_url, redis_errors, &[("backend", "redis")]).await;
    let mut redis = redis;
    let redis_down = started.elapsed();
    blocking(move || {
        redis.kill_hard();
        drop(redis);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = blocking(move || start_redis(Some(redis_port)).0).await;
    let redis_up = started.elapsed();
    let errors_during =
        metric(&client, &fe_url, redis_errors, &[("backend", "redis")]).await - errors_before;
    // Pieces served (wholly or partly) from Redis.
    let redis_served = async |client: &Http| {
        let hit = [("backend", "redis"), ("result", "hit")];
        let partial = [("backend", "redis"), ("result", "partial")];
        metric(client, &fe_url, redis_hits, &hit).await
            + metric(client, &fe_url, redis_hits, &partial).await
    };
    let hits_at_restart = redis_served(&client).await;

    tokio::time::sleep_until(at(0.5).into()).await;
    outage.lock().expect("lock").down = Some(Instant::now());
    let prom_down = started.elapsed();
    let mut prometheus = prometheus;
    blocking(move || prometheus.stop()).await;
    // Down long enough for retries to run out: some requests must get the 503.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tsdb_for_restart = tsdb.clone();
    let prometheus = blocking(move || start_prometheus_on(&tsdb_for_restart, prom_port)).await;
    let prom_ready = Instant::now();
    outage.lock().expect("lock").up = Some(prom_ready);
    let prom_up = started.elapsed();

    while let Some(r) = workers.join_next().await {
        r.expect("client task");
    }
    let hits_after_restart = redis_served(&client).await - hits_at_restart;
    sampler.await.expect("rss sampler");
    let run = started.elapsed();

    // Recovery, without restarting the frontend.
    let ready_after = {
        let t0 = Instant::now();
        loop {
            if blocking(move || probe_status(fe_port, "/-/ready")).await == Some(200) {
                break t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "frontend not ready 30 s after the soak:\n{}",
                frontend.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(redis_ping(redis_port), "restarted redis answers");
    // Everything in the mix, now answered from the caches, equals the querier's answer.
    let mut final_wrong = Vec::new();
    for a in asks.iter() {
        if !matches!(a.expect, Expect::Matrix | Expect::SameJson) {
            continue;
        }
        for _ in 0..2 {
            match ask(&client, &fe_url, a).await {
                Ok(r) if r.status == 200 => {
                    if let Some(why) = differs(&client, &direct_url, a, &r).await {
                        final_wrong.push(format!("{}: {why}", a.name));
                    }
                }
                Ok(r) => final_wrong.push(format!(
                    "{}: status {}: {:.200}",
                    a.name,
                    r.status,
                    r.text()
                )),
                Err(e) => final_wrong.push(format!("{}: {e}", a.name)),
            }
        }
    }
    let keys_after = blocking(move || redis_dbsize(redis_port)).await;
    let alive = std::path::Path::new(&format!("/proc/{fe_pid}")).exists();

    let t = tally.lock().expect("lock");
    let samples = rss_samples.lock().expect("lock");
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let first = samples.first().map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);
    let recovered = t
        .first_success_after_restart
        .map(|t| format!("{:.2} s", t.duration_since(prom_ready).as_secs_f64()))
        .unwrap_or_else(|| "never".to_owned());
    eprintln!(
        "soak: {clients} clients, {:.1} s: {} requests ({:.0}/s), statuses {:?}\n\
         soak: redis killed at {:.1} s, back at {:.1} s: {} cache calls failed (served as misses), {} pieces served from redis after\n\
         soak: prometheus stopped at {:.1} s, ready at {:.1} s\n\
         soak: during the prometheus outage: {:?}; first querier-backed 200 {recovered} after it was ready\n\
         soak: {} sampled comparisons, {} wrong; {} unexpected statuses\n\
         soak: frontend RSS first {} KiB, peak {} KiB, last {} KiB\n\
         soak: after: ready in {:.2} s, {} redis keys, {} final comparisons wrong",
        run.as_secs_f64(),
        t.requests,
        t.requests as f64 / run.as_secs_f64(),
        t.by_status,
        redis_down.as_secs_f64(),
        redis_up.as_secs_f64(),
        errors_during,
        hits_after_restart,
        prom_down.as_secs_f64(),
        prom_up.as_secs_f64(),
        t.during_outage,
        t.compared,
        t.wrong.len(),
        t.unexpected.len(),
        first,
        peak,
        last,
        ready_after.as_secs_f64(),
        keys_after,
        final_wrong.len(),
    );
    assert!(alive, "the frontend process died:\n{}", frontend.log());
    assert!(
        t.unexpected.is_empty(),
        "{} unexpected answers, e.g.:\n{}",
        t.unexpected.len(),
        t.unexpected
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(t.compared > 0, "no answer was compared");
    assert!(t.wrong.is_empty(), "wrong answers:\n{}", t.wrong.join("\n"));
    assert!(
        final_wrong.is_empty(),
        "after recovery:\n{}",
        final_wrong.join("\n")
    );
    assert!(
        t.during_outage.contains_key("503"),
        "no querier-backed request got the outage's 503: {:?}",
        t.during_outage
    );
    assert!(
        errors_during > 0.0,
        "no cache call failed while redis was down: the outage was not exercised"
    );
    assert!(
        hits_after_restart > 0.0,
        "nothing served from redis after it came back: the frontend did not reconnect"
    );
    assert!(
        t.first_success_after_restart.is_some(),
        "no querier-backed request succeeded after prometheus came back"
    );
    assert!(keys_after > 0, "nothing was cached in the restarted redis");
    assert!(
        peak > 0 && peak < RSS_LIMIT_KIB,
        "frontend peak RSS {peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    let log = frontend.log();
    assert!(!log.contains("panicked"), "the frontend panicked:\n{log}");
    drop((prometheus, redis, frontend));
}
