//! The status page: one HTML page served from the binary at `/` (no file, CDN or font
//! fetched from elsewhere), and the JSON its script reads from `/-/status`: the querier
//! endpoints with their health and latency, the caches with their usage and hit ratios,
//! hit ratio and slowest panels per Grafana dashboard ([`dashboards`]), build facts and
//! the effective configuration with its secrets redacted ([`redact`]). The page reads
//! the latest slow queries from `/api/v1/slow_queries` and follows new ones live.
//!
//! The page and its JSON obey the slow-query API's access rules: basic auth when the web
//! config file lists users, and a reader who sees one tenant sees only that tenant's
//! dashboards (and not the user-to-tenant map).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::config::{CacheBackendKind, Config, Threshold};
use crate::downstream::HealthState;
use crate::metrics::Metrics;

pub mod dashboards;
pub mod redact;

pub use dashboards::{DashboardStatus, Dashboards, Visit};

/// The page, served as is.
pub const PAGE: &str = include_str!("page.html");

/// Dashboards kept in the per-dashboard aggregate.
pub const MAX_DASHBOARDS: usize = 200;
/// Panels kept per dashboard.
pub const MAX_PANELS_PER_DASHBOARD: usize = 50;

/// What the status JSON says that does not change while the frontend runs.
pub struct StatusInfo {
    started: SystemTime,
    config_every_tenant: Value,
    config_one_tenant: Value,
    caches: Vec<CacheView>,
    slow_query_threshold: String,
    slow_query_api: bool,
}

/// A configured cache: the `backend` label of its lookups, the backend whose usage it
/// holds in-process, and its capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheView {
    name: &'static str,
    lookups: &'static str,
    held: Option<&'static str>,
    capacity_bytes: Option<u64>,
}

/// The status JSON (`GET /-/status`).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Version and uptime.
    pub build: Build,
    /// The querier endpoints.
    pub queriers: Vec<QuerierStatus>,
    /// The caches.
    pub caches: Vec<CacheStatus>,
    /// Requests being answered now.
    pub requests_in_flight: i64,
    /// The slow-query log's settings.
    pub slow_query_log: SlowQueryLogStatus,
    /// Per Grafana dashboard, most requested first.
    pub dashboards: Vec<DashboardStatus>,
    /// The effective configuration, secrets redacted.
    pub config: Value,
}

/// Build facts.
#[derive(Debug, Serialize)]
pub struct Build {
    /// The crate version.
    pub version: &'static str,
    /// When the frontend started, RFC 3339.
    pub started: String,
    /// Seconds since then.
    pub uptime_seconds: f64,
}

/// One querier endpoint.
#[derive(Debug, Serialize)]
pub struct QuerierStatus {
    /// Its configured URL, secrets redacted.
    pub url: String,
    /// In rotation (not ejected).
    pub healthy: bool,
    /// Transport failures since its last answer.
    pub failures_in_a_row: u32,
    /// Seconds it stays ejected.
    pub ejected_for_seconds: Option<f64>,
    /// Seconds since it last answered.
    pub last_answer_seconds_ago: Option<f64>,
    /// Attempts timed so far.
    pub attempts: u64,
    /// Their mean duration, seconds.
    pub mean_latency_seconds: Option<f64>,
}

/// One cache.
#[derive(Debug, Serialize)]
pub struct CacheStatus {
    /// `memory`, `redis`, `tiered` (memory in front of Redis) or `response`.
    pub name: &'static str,
    /// Entries held in-process.
    pub entries: Option<i64>,
    /// Bytes held in-process.
    pub bytes: Option<i64>,
    /// Configured capacity, bytes.
    pub capacity_bytes: Option<u64>,
    /// Lookups answered whole.
    pub hits: u64,
    /// Lookups answered partly.
    pub partial: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// `hits` over all lookups; `None` before any.
    pub hit_ratio: Option<f64>,
}

/// The slow-query log's settings.
#[derive(Debug, Serialize)]
pub struct SlowQueryLogStatus {
    /// `slow_query_log.threshold`.
    pub threshold: String,
    /// Whether `/api/v1/slow_queries` answers.
    pub api: bool,
}

impl StatusInfo {
    /// The facts of `config`, taken at start.
    pub fn new(config: &Config) -> StatusInfo {
        let c = &config.cache;
        let mut caches = Vec::new();
        if c.response_capacity_bytes > 0 {
            caches.push(CacheView {
                name: "response",
                lookups: "response",
                held: Some("response"),
                capacity_bytes: Some(c.response_capacity_bytes),
            });
        }
        if c.enabled {
            caches.push(match (c.backend, c.two_tier) {
                (CacheBackendKind::Memory, _) => CacheView {
                    name: "memory",
                    lookups: "memory",
                    held: Some("memory"),
                    capacity_bytes: Some(c.memory_capacity_bytes),
                },
                (CacheBackendKind::Redis, false) => CacheView {
                    name: "redis",
                    lookups: "redis",
                    held: None,
                    capacity_bytes: None,
                },
                (CacheBackendKind::Redis, true) => CacheView {
                    name: "tiered",
                    lookups: "tiered",
                    held: Some("memory"),
                    capacity_bytes: Some(c.memory_capacity_bytes),
                },
            });
        }
        let sl = &config.slow_query_log;
        StatusInfo {
            started: SystemTime::now(),
            config_every_tenant: redact::redacted_config(config, true),
            config_one_tenant: redact::redacted_config(config, false),
            caches,
            slow_query_threshold: match sl.threshold {
                Threshold::Off => "off".to_owned(),
                Threshold::All => "every request".to_owned(),
                Threshold::Above(d) => humantime::format_duration(d).to_string(),
            },
            slow_query_api: sl.api,
        }
    }

    /// The status now; `every_tenant`: the reader sees every tenant. `dashboards` are
    /// already filtered for the reader.
    pub fn snapshot(
        &self,
        metrics: &Metrics,
        queriers: Vec<(String, HealthState)>,
        dashboards: Vec<DashboardStatus>,
        every_tenant: bool,
    ) -> Snapshot {
        let secs = |d: Duration| d.as_secs_f64();
        let uptime = self.started.elapsed().unwrap_or_default();
        let started = chrono::DateTime::<chrono::Utc>::from(self.started)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        Snapshot {
            build: Build {
                version: env!("CARGO_PKG_VERSION"),
                started,
                uptime_seconds: secs(uptime),
            },
            queriers: queriers
                .into_iter()
                .map(|(url, state)| {
                    let (attempts, sum) = metrics.querier_latency(&url);
                    QuerierStatus {
                        url: redact::redact_url(&url).unwrap_or(url),
                        healthy: state.healthy,
                        failures_in_a_row: state.failures_in_a_row,
                        ejected_for_seconds: state.ejected_for.map(secs),
                        last_answer_seconds_ago: state.last_answer_ago.map(secs),
                        attempts,
                        mean_latency_seconds: (attempts > 0).then(|| sum / attempts as f64),
                    }
                })
                .collect(),
            caches: self
                .caches
                .iter()
                .map(|view| {
                    let lookups = metrics.cache_lookups_of(view.lookups);
                    let held = view.held.and_then(|b| metrics.cache_held_of(b));
                    let total = lookups.hits + lookups.partial + lookups.misses;
                    CacheStatus {
                        name: view.name,
                        entries: held.map(|h| h.0),
                        bytes: held.map(|h| h.1),
                        capacity_bytes: view.capacity_bytes,
                        hits: lookups.hits,
                        partial: lookups.partial,
                        misses: lookups.misses,
                        hit_ratio: (total > 0).then(|| lookups.hits as f64 / total as f64),
                    }
                })
                .collect(),
            requests_in_flight: metrics.in_flight(),
            slow_query_log: SlowQueryLogStatus {
                threshold: self.slow_query_threshold.clone(),
                api: self.slow_query_api,
            },
            dashboards,
            config: if every_tenant {
                self.config_every_tenant.clone()
            } else {
                self.config_one_tenant.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_shown_follow_the_config() {
        let names = |config: &Config| -> Vec<&'static str> {
            StatusInfo::new(config)
                .caches
                .iter()
                .map(|c| c.name)
                .collect()
        };
        let mut config = Config::default();
        assert_eq!(names(&config), ["response", "memory"]);
        config.cache.backend = CacheBackendKind::Redis;
        assert_eq!(names(&config), ["response", "redis"]);
        config.cache.two_tier = true;
        assert_eq!(names(&config), ["response", "tiered"]);
        config.cache.response_capacity_bytes = 0;
        config.cache.enabled = false;
        assert!(names(&config).is_empty());
    }

    #[test]
    fn the_snapshot_reports_metrics_and_health() {
        let config = Config::default();
        let info = StatusInfo::new(&config);
        let metrics = Metrics::new();
        metrics.cache_lookup("memory", "hit");
        metrics.cache_lookup("memory", "hit");
        metrics.cache_lookup("memory", "hit");
        metrics.cache_lookup("memory", "miss");
        metrics.cache_held("memory", 2, 4096);
        let url: std::sync::Arc<str> = "http://user:pw@q:9090".into();
        metrics.downstream_attempt(
            &url,
            "passthrough",
            "success",
            Some(Duration::from_millis(100)),
        );
        metrics.downstream_attempt(
            &url,
            "passthrough",
            "success",
            Some(Duration::from_millis(300)),
        );
        let state = HealthState {
            healthy: false,
            failures_in_a_row: 3,
            ejected_for: Some(Duration::from_secs(4)),
            last_answer_ago: None,
        };
        let snap = info.snapshot(&metrics, vec![(url.to_string(), state)], Vec::new(), false);
        let q = &snap.queriers[0];
        assert_eq!(q.url, "http://user:<secret>@q:9090");
        assert!(!q.healthy);
        assert_eq!(q.attempts, 2);
        assert!(
            q.mean_latency_seconds
                .is_some_and(|s| (s - 0.2).abs() < 1e-9)
        );
        let memory = snap
            .caches
            .iter()
            .find(|c| c.name == "memory")
            .expect("memory");
        assert_eq!(
            (memory.hits, memory.misses, memory.hit_ratio),
            (3, 1, Some(0.75))
        );
        assert_eq!((memory.entries, memory.bytes), (Some(2), Some(4096)));
        let response = snap
            .caches
            .iter()
            .find(|c| c.name == "response")
            .expect("response");
        assert_eq!((response.hit_ratio, response.entries), (None, None));
        assert_eq!(snap.config["server"]["user_tenants"], redact::HIDDEN);
        assert_eq!(snap.build.version, env!("CARGO_PKG_VERSION"));
    }
}
