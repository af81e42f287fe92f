//! The process metrics every Prometheus client library exports under the same names
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), so dashboards
//! and alerts written for other services work here too. Read from `/proc/self` at each
//! scrape; on a system without it the family is empty.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux architecture's user interface).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one scrape read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessFacts {
    /// Resident set size, bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<f64>,
    /// User and system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Start time, Unix seconds.
    pub start_time_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
}

impl ProcessFacts {
    /// Reads the facts of this process.
    pub fn read() -> ProcessFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let (cpu_ticks, start_ticks) = stat_ticks(&stat).unzip();
        ProcessFacts {
            resident_bytes: status_kib(&status, "VmRSS:").map(|k| k * 1024.0),
            virtual_bytes: status_kib(&status, "VmSize:").map(|k| k * 1024.0),
            cpu_seconds: cpu_ticks.map(|t| t / TICKS_PER_SECOND),
            start_time_seconds: start_ticks
                .zip(boot_time)
                .map(|(t, boot)| boot + t / TICKS_PER_SECOND),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: max_open_files(&limits),
        }
    }
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// User plus system CPU ticks and the start time in ticks after boot, from
/// `/proc/<pid>/stat` (fields 14, 15 and 22; the command name in field 2 may hold
/// spaces and parentheses, so fields are counted after its last `)`).
fn stat_ticks(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// `btime` of `/proc/stat`: the boot time, Unix seconds.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of the `Max open files` line of `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Encodes [`ProcessFacts::read`] at every scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let facts = ProcessFacts::read();
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                facts.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                facts.virtual_bytes,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                facts.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                facts.open_fds,
            ),
            (
                "process_max_fds",
                "Limit on open file descriptors",
                None,
                facts.max_fds,
            ),
        ];
        for (name, help, unit, value) in &gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(*value);
                let metric =
                    encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        if let Some(seconds) = facts.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_field_by_field() {
        let status = "Name:\tpromql-frontend\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048.0));
        assert_eq!(status_kib(status, "VmSize:"), Some(123_456.0));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        // A command name with spaces and a parenthesis.
        let stat =
            "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 1000 200";
        assert_eq!(stat_ticks(stat), Some((300.0, 12345.0)));
        assert_eq!(stat_ticks("garbage"), None);
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_is_described_on_linux() {
        let facts = ProcessFacts::read();
        assert!(facts.resident_bytes.is_some_and(|b| b > 0.0), "{facts:?}");
        assert!(facts.cpu_seconds.is_some(), "{facts:?}");
        assert!(
            facts.start_time_seconds.is_some_and(|t| t > 1.5e9),
            "{facts:?}"
        );
        assert!(facts.open_fds.is_some_and(|n| n >= 1.0), "{facts:?}");
    }
}
