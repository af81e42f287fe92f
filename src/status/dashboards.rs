//! Per Grafana dashboard: how many of its queries the caches answered and which of its
//! panels are slowest, from the `X-Dashboard-Uid` and `X-Panel-Id` headers Grafana sends
//! (the same values the slow-query log records).
//!
//! Bounded whatever clients send: at most `max_dashboards` dashboards per frontend and
//! `max_panels` panels per dashboard are kept, the least recently seen one giving way to
//! a new one, and every stored string is cut to a fixed length. Dashboards are kept per
//! tenant, so a reader sees only what its [`Visibility`] allows.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::slowlog::{CacheFacts, Visibility};

/// Longest dashboard uid or panel id kept, bytes (Grafana's uids are at most 40).
const MAX_ID_BYTES: usize = 64;
/// Longest query text kept for a panel, bytes.
const MAX_QUERY_BYTES: usize = 512;
/// Panels listed per dashboard in a snapshot (the slowest).
pub const SLOWEST_PANELS: usize = 5;

/// One answered request of a dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// The request's tenant.
    pub tenant: Option<&'a str>,
    /// `X-Dashboard-Uid`.
    pub dashboard_uid: &'a str,
    /// `X-Panel-Id`.
    pub panel_id: Option<&'a str>,
    /// The PromQL asked.
    pub query: Option<&'a str>,
    /// From request received to the last byte of the answer.
    pub seconds: f64,
    /// How the cache served the request's pieces.
    pub cache: &'a CacheFacts,
}

/// The aggregate; shared by every request.
pub struct Dashboards {
    inner: Mutex<Inner>,
    max_dashboards: usize,
    max_panels: usize,
}

#[derive(Default)]
struct Inner {
    /// Increases with every visit: "recently seen" without reading a clock.
    tick: u64,
    dashboards: HashMap<(Option<String>, String), Dashboard>,
}

#[derive(Default)]
struct Dashboard {
    last_seen: u64,
    requests: u64,
    cache: Pieces,
    panels: HashMap<String, Panel>,
}

#[derive(Default, Clone, Copy)]
struct Pieces {
    hits: u64,
    partial: u64,
    misses: u64,
}

#[derive(Default)]
struct Panel {
    last_seen: u64,
    requests: u64,
    total_seconds: f64,
    max_seconds: f64,
    slowest_query: Option<String>,
}

/// A dashboard as the status page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DashboardStatus {
    /// The dashboard's uid.
    pub uid: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Requests seen.
    pub requests: u64,
    /// Range-query pieces answered from the cache.
    pub cache_hits: u64,
    /// Pieces answered partly from the cache.
    pub cache_partial: u64,
    /// Pieces not in the cache.
    pub cache_misses: u64,
    /// `cache_hits` over all pieces looked up; `None` before any.
    pub hit_ratio: Option<f64>,
    /// The slowest panels, slowest first.
    pub slowest_panels: Vec<PanelStatus>,
}

/// A panel as the status page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PanelStatus {
    /// `X-Panel-Id`.
    pub panel_id: String,
    /// Requests seen.
    pub requests: u64,
    /// The longest request, seconds.
    pub max_seconds: f64,
    /// The mean request, seconds.
    pub mean_seconds: f64,
    /// The query of the longest request.
    pub slowest_query: Option<String>,
}

impl Dashboards {
    /// An empty aggregate keeping at most `max_dashboards` dashboards of at most
    /// `max_panels` panels each.
    pub fn new(max_dashboards: usize, max_panels: usize) -> Dashboards {
        Dashboards {
            inner: Mutex::new(Inner::default()),
            max_dashboards: max_dashboards.max(1),
            max_panels: max_panels.max(1),
        }
    }

    /// Counts one answered request of a dashboard.
    pub fn record(&self, visit: Visit<'_>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let key = (
            visit.tenant.map(|t| cut(t, MAX_ID_BYTES)),
            cut(visit.dashboard_uid, MAX_ID_BYTES),
        );
        if !inner.dashboards.contains_key(&key) && inner.dashboards.len() >= self.max_dashboards {
            evict_oldest(&mut inner.dashboards, |d| d.last_seen);
        }
        let dashboard = inner.dashboards.entry(key).or_default();
        dashboard.last_seen = tick;
        dashboard.requests += 1;
        dashboard.cache.hits += visit.cache.hits;
        dashboard.cache.partial += visit.cache.partial;
        dashboard.cache.misses += visit.cache.misses;
        let Some(panel_id) = visit.panel_id else {
            return;
        };
        let panel_id = cut(panel_id, MAX_ID_BYTES);
        if !dashboard.panels.contains_key(&panel_id) && dashboard.panels.len() >= self.max_panels {
            evict_oldest(&mut dashboard.panels, |p| p.last_seen);
        }
        let panel = dashboard.panels.entry(panel_id).or_default();
        panel.last_seen = tick;
        panel.requests += 1;
        panel.total_seconds += visit.seconds;
        if visit.seconds >= panel.max_seconds {
            panel.max_seconds = visit.seconds;
            panel.slowest_query = visit.query.map(|q| cut(q, MAX_QUERY_BYTES));
        }
    }

    /// The dashboards `who` may see, most requested first, each with its slowest panels.
    pub fn snapshot(&self, who: &Visibility) -> Vec<DashboardStatus> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<DashboardStatus> = inner
            .dashboards
            .iter()
            .filter(|((tenant, _), _)| who.shows(tenant.as_deref()))
            .map(|((tenant, uid), d)| {
                let looked_up = d.cache.hits + d.cache.partial + d.cache.misses;
                let mut panels: Vec<PanelStatus> = d
                    .panels
                    .iter()
                    .map(|(id, p)| PanelStatus {
                        panel_id: id.clone(),
                        requests: p.requests,
                        max_seconds: p.max_seconds,
                        mean_seconds: p.total_seconds / p.requests.max(1) as f64,
                        slowest_query: p.slowest_query.clone(),
                    })
                    .collect();
                panels.sort_by(|a, b| {
                    b.max_seconds
                        .total_cmp(&a.max_seconds)
                        .then_with(|| a.panel_id.cmp(&b.panel_id))
                });
                panels.truncate(SLOWEST_PANELS);
                DashboardStatus {
                    uid: uid.clone(),
                    tenant: tenant.clone(),
                    requests: d.requests,
                    cache_hits: d.cache.hits,
                    cache_partial: d.cache.partial,
                    cache_misses: d.cache.misses,
                    hit_ratio: (looked_up > 0).then(|| d.cache.hits as f64 / looked_up as f64),
                    slowest_panels: panels,
                }
            })
            .collect();
        out.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.uid.cmp(&b.uid)));
        out
    }
}

/// Removes the entry with the smallest `last_seen`.
fn evict_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    last_seen: impl Fn(&V) -> u64,
) {
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, v)| last_seen(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
#[path = "dashboards_tests.rs"]
mod tests;
