//! The live test bed: generated history ending a little before now, backfilled with
//! promtool, and the same series continued by `promql-frontend-testdata --serve`, which
//! a real Prometheus scrapes, so the data reaches the wall clock as on a real server.
//!
//! Prometheus takes both: at start-up its head accepts samples newer than the newest
//! block, and every scraped sample is newer (the history ends at the last whole minute
//! before the bed is built, and the first scrape comes after the backfill). The scrape
//! job keeps the series' own `job` and `instance` (`honor_labels`), so the scraped
//! samples extend the backfilled series; Prometheus adds its own `up{job="live"}` and
//! `scrape_*` series for the target.

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use promql_frontend::testdata::{Spec, backfill, write_openmetrics};

use super::{
    Supervised, TESTBED_INTERVAL_S, form, free_port, get, probe_status, require_binary, secs,
    start_prometheus_config,
};

/// The scrape job's name (Prometheus labels its own `up` and `scrape_*` series with it).
pub const LIVE_JOB: &str = "live";

/// The newest sample of the generated series (instant query): the newest scrape that
/// landed, as Unix seconds.
pub const NEWEST_SAMPLE_QUERY: &str = "max(timestamp(up{job=\"api\"}))";

/// A Prometheus with backfilled history and live samples scraped from the generator.
pub struct LiveBed {
    /// `http://127.0.0.1:PORT` of the Prometheus.
    pub prom_url: String,
    /// The history: `spec.start_ms()` to `spec.end_ms`; live samples come after.
    pub spec: Spec,
    /// How often Prometheus scrapes the live target, seconds.
    pub scrape_interval_s: u64,
    /// Time spent writing the history as OpenMetrics text.
    pub generated_in: Duration,
    /// Time spent backfilling it with promtool.
    pub backfilled_in: Duration,
    /// Series and samples of the history.
    pub written: promql_frontend::testdata::Written,
    /// The Prometheus process.
    pub prometheus: Supervised,
    _target: Supervised,
}

/// Generates `days` of history ending at the last whole minute, backfills it, serves
/// the same series live and starts a Prometheus that scrapes them every
/// `scrape_interval_s` seconds; returns once the first live sample has landed. `name`
/// names its directory under the target dir (removed when the bed is dropped).
pub fn build_live_bed(name: &str, days: f64, scrape_interval_s: u64) -> LiveBed {
    require_binary("promtool", "prometheus");
    let root =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create live bed dir");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let spec = Spec::days_ending_at(days, now_ms, TESTBED_INTERVAL_S);

    let started = Instant::now();
    let om = root.join("data.om");
    let written = {
        let file = std::fs::File::create(&om).expect("create OpenMetrics file");
        let mut w = BufWriter::new(file);
        let written = write_openmetrics(&spec, &mut w).expect("write OpenMetrics");
        w.flush().expect("flush OpenMetrics");
        written
    };
    let generated_in = started.elapsed();
    let started = Instant::now();
    let tsdb = root.join("tsdb");
    let hours = (days * 24.0).ceil() as i64 + 2;
    backfill(&om, &tsdb, hours).unwrap_or_else(|e| panic!("{e}"));
    let backfilled_in = started.elapsed();
    std::fs::remove_file(&om).ok();

    let target_port = free_port();
    let args: Vec<String> = [
        "--days".to_owned(),
        days.to_string(),
        "--interval".to_owned(),
        TESTBED_INTERVAL_S.to_string(),
        "--instances".to_owned(),
        spec.instances.to_string(),
        "--end-ms".to_owned(),
        spec.end_ms.to_string(),
        "--serve".to_owned(),
        format!("127.0.0.1:{target_port}"),
    ]
    .into();
    let target = Supervised::start(
        env!("CARGO_BIN_EXE_promql-frontend-testdata"),
        &args,
        &root.join("target.log"),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe_status(target_port, "/metrics") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the live target did not start:\n{}",
            target.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let config = format!(
        "global:\n  scrape_interval: 1m\nscrape_configs:\n  - job_name: {LIVE_JOB}\n    scrape_interval: {scrape_interval_s}s\n    scrape_timeout: {scrape_interval_s}s\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
    );
    let (prometheus, port) = start_prometheus_config(&tsdb, Some(&root), &config, &[], |port| {
        probe_status(port, "/-/ready") == Some(200)
    });
    let path = format!("/api/v1/query?{}", form(&[("query", NEWEST_SAMPLE_QUERY)]));
    let deadline =
        Instant::now() + Duration::from_secs(60) + 3 * Duration::from_secs(scrape_interval_s);
    loop {
        let newest = blocking_get(port, &path).and_then(|body| newest_of(&body));
        if newest.is_some_and(|t| t > spec.end_ms) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no live sample reached Prometheus (newest: {newest:?}, history end {}):\n{}\ntarget:\n{}",
            spec.end_ms,
            prometheus.log(),
            target.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    LiveBed {
        prom_url: format!("http://127.0.0.1:{port}"),
        spec,
        scrape_interval_s,
        generated_in,
        backfilled_in,
        written,
        prometheus,
        _target: target,
    }
}

/// The newest sample of the generated series Prometheus holds at `at_ms` (Unix ms).
pub async fn newest_sample_ms(prom_url: &str, at_ms: i64) -> Option<i64> {
    let url = format!(
        "{prom_url}/api/v1/query?{}",
        form(&[("query", NEWEST_SAMPLE_QUERY), ("time", &secs(at_ms))])
    );
    let reply = get(&url).await;
    newest_of(&String::from_utf8_lossy(&reply.decoded()))
}

/// Waits (bounded by `within`) until Prometheus holds a sample newer than `after_ms`;
/// returns its timestamp.
pub async fn wait_for_sample_after(prom_url: &str, after_ms: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        let newest = newest_sample_ms(prom_url, now).await;
        if let Some(t) = newest.filter(|&t| t > after_ms) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "no sample newer than {after_ms} within {within:?} (newest: {newest:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an instant query's first (only) sample, read as Unix seconds, in ms.
fn newest_of(body: &str) -> Option<i64> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let seconds: f64 = json["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()?;
    Some((seconds * 1000.0).round() as i64)
}

/// Blocking `GET path` on 127.0.0.1:port over HTTP/1.0; the body, or `None` when
/// nothing answers 200.
fn blocking_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}
