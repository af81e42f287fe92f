//! The test-bed generator: realistic multi-day Prometheus data as OpenMetrics text, and
//! its backfill into a TSDB with `promtool tsdb create-blocks-from openmetrics`.
//!
//! Used by the end-to-end tests, the demo and the benchmarks. The data is deterministic
//! for a given [`Spec`] and has what real dashboards meet:
//! - counters (`http_requests_total`) with resets when an instance restarts and gaps
//!   while an instance is down (`up` is 0 then),
//! - gauges, including negative and fractional values,
//! - a classic histogram (`request_duration_seconds_bucket{le}`, `_sum`, `_count`),
//! - series that start and stop mid-range (`batch_jobs_processed_total`),
//! - a few hundred series in all (with the default 8 instances: about 450).

use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Timestamp of the last sample, Unix milliseconds (aligned down to `interval_ms`).
    pub end_ms: i64,
    /// How far back the data goes, milliseconds.
    pub range_ms: i64,
    /// Scrape interval, milliseconds.
    pub interval_ms: i64,
    /// Number of scraped instances; most series are per instance.
    pub instances: usize,
    /// Seed for the pseudo-random values.
    pub seed: u64,
}

impl Spec {
    /// `days` of data ending at `end_ms`, scraped every `interval_s` seconds, 8 instances.
    pub fn days_ending_at(days: f64, end_ms: i64, interval_s: i64) -> Spec {
        let interval_ms = interval_s.max(1) * 1000;
        Spec {
            end_ms: end_ms - end_ms.rem_euclid(interval_ms),
            range_ms: (days * 86_400_000.0) as i64,
            interval_ms,
            instances: 8,
            seed: 42,
        }
    }

    /// Timestamp of the first sample.
    pub fn start_ms(&self) -> i64 {
        self.end_ms - self.range_ms
    }

    fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        (0..=self.range_ms / self.interval_ms).map(move |i| self.start_ms() + i * self.interval_ms)
    }

    /// Whether instance `i` was down (not scraped) at `t`. Every third instance has one
    /// outage of two hours.
    fn down(&self, instance: usize, t: i64) -> bool {
        if instance == 0 || !instance.is_multiple_of(3) {
            return false;
        }
        let outage_end = self.end_ms - (10 + 9 * instance as i64) * 3_600_000;
        t > outage_end - 2 * 3_600_000 && t <= outage_end
    }

    /// Whether instance `i` restarted (its counters reset) in `(prev, t]`: once a day,
    /// at an hour that differs per instance.
    fn restarted(&self, instance: usize, prev: i64, t: i64) -> bool {
        let offset = (instance as i64 * 5 + 3) % 24 * 3_600_000 + 1_234_000;
        let day = 86_400_000;
        let k = (t - offset).div_euclid(day);
        let restart = k * day + offset;
        restart > prev && restart <= t
    }
}

/// Counts of what [`write_openmetrics`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Distinct series.
    pub series: usize,
    /// Samples over all series.
    pub samples: usize,
}

/// A tiny deterministic PRNG (SplitMix64); good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const HANDLERS: [&str; 3] = ["/api/orders", "/api/users", "/healthz"];
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];
const BUCKET_BOUNDS: [f64; 11] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    f64::INFINITY,
];

/// Writes the whole data set as OpenMetrics text (ending with `# EOF`).
pub fn write_openmetrics<W: Write>(spec: &Spec, out: &mut W) -> io::Result<Written> {
    let mut w = Writer {
        out,
        written: Written::default(),
        start_ms: spec.start_ms(),
        interval_ms: spec.interval_ms,
    };
    let day_fraction = |t: i64| (t.rem_euclid(86_400_000) as f64) / 86_400_000.0;
    let diurnal = |t: i64| 1.0 + 0.6 * (day_fraction(t) * std::f64::consts::TAU).sin();

    // up: 1 while scraped, 0 while down.
    w.family(
        "up",
        "gauge",
        "Whether the target was scraped successfully.",
    )?;
    for i in 0..spec.instances {
        let labels = format!("instance=\"host-{i}:8080\",job=\"api\"");
        w.series(
            "up",
            &labels,
            spec.timestamps()
                .map(|t| Some(if spec.down(i, t) { 0.0 } else { 1.0 })),
        )?;
    }

    // Counters with resets and gaps.
    w.family("http_requests", "counter", "HTTP requests served.")?;
    for i in 0..spec.instances {
        for (h, handler) in HANDLERS.iter().enumerate() {
            for method in ["GET", "POST"] {
                for code in ["200", "500"] {
                    let mut rng = Rng::new(
                        spec.seed,
                        (i * 100 + h * 10) as u64
                            + method.len() as u64 * 3
                            + code.as_bytes()[0] as u64,
                    );
                    let base = if code == "200" { 20.0 } else { 0.4 }
                        * (1.0 + h as f64)
                        * (1.0 + i as f64 / 4.0);
                    let mut value = 0.0f64;
                    let mut prev = spec.start_ms() - spec.interval_ms;
                    let labels = format!(
                        "code=\"{code}\",handler=\"{handler}\",instance=\"host-{i}:8080\",job=\"api\",method=\"{method}\""
                    );
                    let points = spec.timestamps().map(|t| {
                        if spec.restarted(i, prev, t) {
                            value = 0.0;
                        }
                        value += (base * diurnal(t) * (0.5 + rng.unit())).floor();
                        prev = t;
                        (!spec.down(i, t)).then_some(value)
                    });
                    w.series("http_requests_total", &labels, points)?;
                }
            }
        }
    }

    // Gauges.
    w.family("node_memory_free_bytes", "gauge", "Free memory.")?;
    for i in 0..spec.instances {
        let mut rng = Rng::new(spec.seed, 10_000 + i as u64);
        let labels = format!("instance=\"host-{i}:8080\",job=\"api\"");
        let points = spec.timestamps().map(|t| {
            let v = 4.0e9 + 1.5e9 * diurnal(t) + (rng.unit() * 1.0e8).floor();
            (!spec.down(i, t)).then_some(v)
        });
        w.series("node_memory_free_bytes", &labels, points)?;
    }
    w.family(
        "temperature_celsius",
        "gauge",
        "Sensor temperature; goes below zero.",
    )?;
    for i in 0..spec.instances {
        for sensor in ["inlet", "outlet"] {
            let mut rng = Rng::new(spec.seed, 20_000 + i as u64 * 7 + sensor.len() as u64);
            let labels = format!("instance=\"host-{i}:8080\",job=\"api\",sensor=\"{sensor}\"");
            let points = spec.timestamps().map(|t| {
                let v = -5.0 + 20.0 * day_fraction(t) + rng.unit() * 3.0;
                Some((v * 1000.0).round() / 1000.0)
            });
            w.series("temperature_celsius", &labels, points)?;
        }
    }

    // A classic histogram, consistent across buckets, sum and count.
    w.family("request_duration_seconds", "histogram", "Request latency.")?;
    for i in 0..spec.instances {
        for (h, handler) in HANDLERS.iter().enumerate() {
            let mut rng = Rng::new(spec.seed, 30_000 + (i * 10 + h) as u64);
            let n = spec.timestamps().count();
            let mut buckets = vec![[0.0f64; 11]; n];
            let mut sums = vec![0.0f64; n];
            let mut up = vec![true; n];
            let (mut cum, mut sum) = ([0.0f64; 11], 0.0f64);
            let mut prev = spec.start_ms() - spec.interval_ms;
            for (k, t) in spec.timestamps().enumerate() {
                if spec.restarted(i, prev, t) {
                    cum = [0.0; 11];
                    sum = 0.0;
                }
                prev = t;
                let observations = 5 + (rng.unit() * 30.0 * diurnal(t)) as usize;
                for _ in 0..observations {
                    // Exponential latency with a per-handler scale.
                    let v = -(1.0 - rng.unit()).ln() * 0.05 * (1.0 + h as f64 * 2.0);
                    sum += v;
                    for (b, bound) in BUCKET_BOUNDS.iter().enumerate() {
                        if v <= *bound {
                            cum[b] += 1.0;
                        }
                    }
                }
                buckets[k] = cum;
                sums[k] = (sum * 1e6).round() / 1e6;
                up[k] = !spec.down(i, t);
            }
            let base = format!("handler=\"{handler}\",instance=\"host-{i}:8080\",job=\"api\"");
            for (b, le) in BUCKETS.iter().enumerate() {
                let labels = format!("{base},le=\"{le}\"");
                let points = (0..n).map(|k| up[k].then_some(buckets[k][b]));
                w.series("request_duration_seconds_bucket", &labels, points)?;
            }
            w.series(
                "request_duration_seconds_sum",
                &base,
                (0..n).map(|k| up[k].then_some(sums[k])),
            )?;
            w.series(
                "request_duration_seconds_count",
                &base,
                (0..n).map(|k| up[k].then_some(buckets[k][10])),
            )?;
        }
    }

    // Series that start and stop mid-range.
    w.family(
        "batch_jobs_processed",
        "counter",
        "Items processed by short-lived batch jobs.",
    )?;
    for b in 0..10i64 {
        let begin = spec.start_ms() + spec.range_ms * b / 10 + 3_600_000;
        let stop = begin + spec.range_ms / 8;
        let mut value = 0.0;
        let labels = format!("batch=\"b{b}\",job=\"batch\"");
        let points = spec.timestamps().map(|t| {
            if t < begin || t > stop {
                return None;
            }
            value += 3.0 + (b % 4) as f64;
            Some(value)
        });
        w.series("batch_jobs_processed_total", &labels, points)?;
    }

    w.out.write_all(b"# EOF\n")?;
    Ok(w.written)
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    written: Written,
    start_ms: i64,
    interval_ms: i64,
}

impl<W: Write> Writer<'_, W> {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> io::Result<()> {
        writeln!(self.out, "# HELP {name} {help}")?;
        writeln!(self.out, "# TYPE {name} {kind}")
    }

    /// Writes one series; the k-th point belongs to the k-th grid timestamp, and `None`
    /// points are skipped (target down or series absent). OpenMetrics timestamps are
    /// float seconds written with exactly three decimals, which promtool reads to the ms.
    fn series(
        &mut self,
        name: &str,
        labels: &str,
        points: impl Iterator<Item = Option<f64>>,
    ) -> io::Result<()> {
        let mut any = false;
        for (k, value) in points.enumerate() {
            let Some(v) = value else { continue };
            let t = self.start_ms + k as i64 * self.interval_ms;
            writeln!(
                self.out,
                "{name}{{{labels}}} {v} {}.{:03}",
                t.div_euclid(1000),
                t.rem_euclid(1000)
            )?;
            self.written.samples += 1;
            any = true;
        }
        if any {
            self.written.series += 1;
        }
        Ok(())
    }
}

/// Backfills an OpenMetrics file into `data_dir` with `promtool`, in blocks of at most
/// `max_block_hours` hours (promtool re-reads the input once per block, so few large
/// blocks are much faster than the default two-hour ones).
pub fn backfill(openmetrics: &Path, data_dir: &Path, max_block_hours: i64) -> Result<(), String> {
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(format!("--max-block-duration={}h", max_block_hours.max(2)))
        .arg(openmetrics)
        .arg(data_dir)
        .output()
        .map_err(|e| {
            format!("cannot run promtool ({e}); install it with: apt-get install -y prometheus")
        })?;
    if !out.status.success() {
        return Err(format!(
            "promtool tsdb create-blocks-from openmetrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
