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
//!
//! [`Live`] continues the same series past the history's end, as the text exposition a
//! Prometheus scrapes (`promql-frontend-testdata --serve`), so backfilled history and
//! live samples make one data set that reaches the wall clock.

mod live;
mod series;

use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

pub use live::{Live, exposition_at};

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

/// Writes the whole data set as OpenMetrics text (ending with `# EOF`).
pub fn write_openmetrics<W: Write>(spec: &Spec, out: &mut W) -> io::Result<Written> {
    let mut w = Writer {
        out,
        written: Written::default(),
        start_ms: spec.start_ms(),
        interval_ms: spec.interval_ms,
    };
    let n = spec.timestamps().count();
    for mut family in series::families(spec) {
        w.family(family.name, family.kind, family.help)?;
        for group in &mut family.groups {
            // Each series' points are written together: step the group over the whole
            // range first, one column of values per series.
            let width = group.series.len();
            let mut columns = vec![Vec::with_capacity(n); width];
            let mut at = vec![None; width];
            for t in spec.timestamps() {
                group.step(spec, t, &mut at);
                for (column, value) in columns.iter_mut().zip(&at) {
                    column.push(*value);
                }
            }
            for ((name, labels), column) in group.series.iter().zip(columns) {
                w.series(name, labels, column.into_iter())?;
            }
        }
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
