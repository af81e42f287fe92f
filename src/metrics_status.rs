//! Reads of the frontend's own metrics for the status page: the numbers it shows are
//! the ones `/metrics` exports. Reading never creates a series. The querier latency is
//! kept here as well (count and sum per endpoint), as the histogram does not expose its
//! sum.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{BackendLabels, CacheLabels, Metrics};

/// Timed attempts and their summed seconds, per querier endpoint (a configured, bounded
/// set).
#[derive(Default)]
pub(super) struct Latencies(Mutex<HashMap<String, Latency>>);

/// One endpoint's timed attempts and their summed seconds.
pub(super) type Latency = Arc<Mutex<(u64, f64)>>;

impl Latencies {
    /// The count and sum of `downstream`, to add attempts to.
    pub(super) fn cell(&self, downstream: &str) -> Latency {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(downstream.to_owned()).or_default().clone()
    }
}

/// Cache lookups of one backend, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Answered whole from the cache.
    pub hits: u64,
    /// Answered partly.
    pub partial: u64,
    /// Not in the cache.
    pub misses: u64,
}

impl Metrics {
    /// Attempts timed at a querier endpoint and their summed seconds.
    pub fn querier_latency(&self, downstream: &str) -> (u64, f64) {
        let map = self.latencies.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(downstream).map_or((0, 0.0), |cell| {
            *cell.lock().unwrap_or_else(|p| p.into_inner())
        })
    }

    /// Lookups of cache `backend` so far.
    pub fn cache_lookups_of(&self, backend: &'static str) -> Lookups {
        let get = |result| {
            self.cache_lookups
                .get(&CacheLabels { backend, result })
                .map_or(0, |c| c.get())
        };
        Lookups {
            hits: get("hit"),
            partial: get("partial"),
            misses: get("miss"),
        }
    }

    /// Entries and bytes an in-process cache held at the last report, if it reported.
    pub fn cache_held_of(&self, backend: &'static str) -> Option<(i64, i64)> {
        let labels = BackendLabels { backend };
        let entries = self.cache_entries.get(&labels)?.get();
        let bytes = self.cache_held_bytes.get(&labels)?.get();
        Some((entries, bytes))
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}
