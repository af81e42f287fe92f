//! The data set continued past its history: the same series, stepped on the same grid,
//! rendered as the Prometheus text exposition format so a real Prometheus can scrape
//! them and extend backfilled history up to the wall clock.

use std::fmt::Write as _;

use super::Spec;
use super::series::{Family, families};

/// The generated series at a moment of time, stepped forward as time passes.
///
/// The series move on the spec's grid (`start_ms + k·interval_ms`, the history's own
/// timestamps, continued past `end_ms`): the values at time `t` are those of the last grid
/// timestamp at or before `t`, exactly what the history holds there when `t` is inside
/// it. Instances are never down after the history's end, and batch jobs only run inside
/// it, so the live exposition is the per-instance series of the last history sample with
/// later values.
#[derive(Debug, Clone)]
pub struct Live {
    spec: Spec,
    families: Vec<Family>,
    /// The values at `at`, per family, group and series.
    values: Vec<Vec<Vec<Option<f64>>>>,
    /// The grid timestamp of `values` (one interval before the start until the first
    /// step).
    at: i64,
}

impl Live {
    /// The series of `spec` before its first sample.
    pub fn new(spec: &Spec) -> Live {
        let families = families(spec);
        let values = families
            .iter()
            .map(|f| {
                f.groups
                    .iter()
                    .map(|g| vec![None; g.series.len()])
                    .collect()
            })
            .collect();
        Live {
            spec: spec.clone(),
            families,
            values,
            at: spec.start_ms() - spec.interval_ms,
        }
    }

    /// The grid timestamp the current values belong to.
    pub fn at(&self) -> i64 {
        self.at
    }

    /// Steps every series through the grid timestamps up to `t_ms`. An earlier `t_ms`
    /// than the current grid timestamp starts again from the first sample.
    pub fn advance_to(&mut self, t_ms: i64) {
        if t_ms < self.at {
            *self = Live::new(&self.spec);
        }
        let interval = self.spec.interval_ms;
        while self.at + interval <= t_ms {
            let t = self.at + interval;
            for (family, values) in self.families.iter_mut().zip(&mut self.values) {
                for (group, out) in family.groups.iter_mut().zip(values.iter_mut()) {
                    group.step(&self.spec, t, out);
                }
            }
            self.at = t;
        }
    }

    /// The text exposition (format 0.0.4, no timestamps: the scraper stamps the
    /// samples) of every series' value at `t_ms`.
    pub fn exposition(&mut self, t_ms: i64) -> String {
        self.advance_to(t_ms);
        let mut out = String::new();
        for (family, values) in self.families.iter().zip(&self.values) {
            let name = family.text_name();
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (group, values) in family.groups.iter().zip(values) {
                for ((sample, labels), value) in group.series.iter().zip(values) {
                    if let Some(v) = value {
                        let _ = writeln!(out, "{sample}{{{labels}}} {v}");
                    }
                }
            }
        }
        out
    }
}

/// The text exposition of every series of `spec` at `t_ms` (see [`Live`]; stepping from
/// the first sample, so a server keeps a [`Live`] instead).
pub fn exposition_at(spec: &Spec, t_ms: i64) -> String {
    Live::new(spec).exposition(t_ms)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testdata::write_openmetrics;

    /// Two days of 4 instances at 60 s: an outage, restarts and batch jobs included.
    fn spec() -> Spec {
        let mut spec = Spec::days_ending_at(2.0, 1_764_640_000_000, 60);
        spec.instances = 4;
        spec
    }

    /// `series value` lines of the exposition, sorted.
    fn samples(text: &str) -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    /// The OpenMetrics history as `series value` lines per timestamp (ms), sorted.
    fn history(spec: &Spec) -> BTreeMap<i64, Vec<String>> {
        let mut buf = Vec::new();
        write_openmetrics(spec, &mut buf).expect("write to memory");
        let text = String::from_utf8(buf).expect("utf-8");
        let mut by_t: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (sample, ts) = line.rsplit_once(' ').expect("timestamp");
            let ms = (ts.parse::<f64>().expect("float seconds") * 1000.0).round() as i64;
            by_t.entry(ms).or_default().push(sample.to_owned());
        }
        for v in by_t.values_mut() {
            v.sort();
        }
        by_t
    }

    #[test]
    fn exposition_inside_the_history_equals_the_history() {
        let spec = spec();
        let history = history(&spec);
        let mut live = Live::new(&spec);
        let step = spec.interval_ms;
        let (outage, batch) = (spec.end_ms - 38 * 3_600_000, spec.start_ms() + 1560 * step);
        assert!(
            history[&outage]
                .iter()
                .any(|l| l.starts_with("up{instance=\"host-3:8080\"") && l.ends_with(" 0"))
        );
        assert!(
            history[&batch]
                .iter()
                .any(|l| l.starts_with("batch_jobs_processed_total{batch=\"b5\""))
        );
        // The first sample, one in an outage, one during a batch job, the last two;
        // an off-grid time reads the grid timestamp before it.
        for t in [
            spec.start_ms(),
            outage,
            batch,
            spec.end_ms - step,
            spec.end_ms,
        ] {
            assert_eq!(
                samples(&live.exposition(t + step / 2)),
                history[&t],
                "at {t}"
            );
            assert_eq!(live.at(), t);
        }
    }

    #[test]
    fn live_values_continue_past_the_end() {
        let spec = spec();
        let mut live = Live::new(&spec);
        let at_end = samples(&live.exposition(spec.end_ms));
        let later = samples(&live.exposition(spec.end_ms + 90 * spec.interval_ms));
        let series = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter_map(|l| Some(l.rsplit_once(' ')?.0.to_owned()))
                .collect()
        };
        // Every instance is up and scraped past the end: the same series, new values.
        assert_eq!(series(&at_end), series(&later));
        assert!(
            later
                .iter()
                .all(|l| !l.starts_with("up{") || l.ends_with(" 1"))
        );
        assert_ne!(at_end, later);
        // Stepping on from an earlier call gives what a fresh start gives, and an
        // earlier time starts again.
        let t = spec.end_ms + 90 * spec.interval_ms;
        assert_eq!(samples(&exposition_at(&spec, t)), later);
        assert_eq!(samples(&live.exposition(spec.end_ms)), at_end);
    }

    #[test]
    fn exposition_declares_each_family_by_its_sample_name() {
        let spec = spec();
        let text = exposition_at(&spec, spec.end_ms);
        for line in [
            "# TYPE up gauge",
            "# TYPE http_requests_total counter",
            "# TYPE request_duration_seconds histogram",
            "# TYPE batch_jobs_processed_total counter",
        ] {
            assert!(text.contains(line), "missing {line:?}");
        }
        assert!(text.contains(
            "request_duration_seconds_bucket{handler=\"/healthz\",instance=\"host-3:8080\",job=\"api\",le=\"+Inf\"} "
        ));
    }
}
