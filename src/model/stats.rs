//! Per-request facts that layers record and the edge reads: how a range query was
//! served (pieces, cache outcome, downstream work), and the one limit all its pieces
//! share (its places for querier requests). Shared by every piece of one request through
//! an `Arc`; the counters are relaxed atomics (no ordering needed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Counters of one request.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Pieces the query was split into (1 when not split).
    pub pieces: AtomicU64,
    /// Pieces answered entirely from the cache.
    pub cache_hits: AtomicU64,
    /// Pieces answered partly from the cache.
    pub cache_partial: AtomicU64,
    /// Pieces the cache could have answered but had nothing for.
    pub cache_misses: AtomicU64,
    /// Pieces the cache did not handle (uncacheable).
    pub cache_skipped: AtomicU64,
    /// Requests sent to the querier.
    pub downstream_requests: AtomicU64,
    /// Time spent waiting for the querier, summed over requests, nanoseconds.
    pub downstream_nanos: AtomicU64,
    /// Querier requests that were attempts after a failed one.
    pub retries: AtomicU64,
    /// The query's places for requests to the querier (`max_query_parallelism`), made
    /// by the fetch planner on first use and shared by every run and part of the query.
    pub fetch_slots: OnceLock<Arc<Semaphore>>,
}

impl RequestStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one downstream request that took `took`.
    pub fn record_downstream(&self, took: Duration) {
        self.downstream_requests.fetch_add(1, Ordering::Relaxed);
        self.downstream_nanos.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// The `X-Cache` value for the request: `hit` (every piece from cache), `partial`
    /// (some data from cache), `miss` (cacheable, nothing cached), `skip` (not cacheable),
    /// or `None` when no cache looked at it.
    pub fn cache_outcome(&self) -> Option<&'static str> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (hits, partial, misses, skipped) = (
            get(&self.cache_hits),
            get(&self.cache_partial),
            get(&self.cache_misses),
            get(&self.cache_skipped),
        );
        match (hits, partial, misses, skipped) {
            (0, 0, 0, 0) => None,
            (0, 0, 0, _) => Some("skip"),
            (_, 0, 0, 0) => Some("hit"),
            (0, 0, _, _) => Some("miss"),
            _ => Some("partial"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_table() {
        let cases = [
            ((0, 0, 0, 0), None),
            ((0, 0, 0, 2), Some("skip")),
            ((3, 0, 0, 0), Some("hit")),
            ((0, 0, 3, 0), Some("miss")),
            ((0, 0, 1, 1), Some("miss")),
            ((2, 0, 1, 0), Some("partial")),
            ((0, 1, 0, 0), Some("partial")),
            ((1, 0, 0, 1), Some("partial")),
        ];
        for ((h, p, m, s), want) in cases {
            let st = RequestStats::default();
            st.cache_hits.store(h, Ordering::Relaxed);
            st.cache_partial.store(p, Ordering::Relaxed);
            st.cache_misses.store(m, Ordering::Relaxed);
            st.cache_skipped.store(s, Ordering::Relaxed);
            assert_eq!(st.cache_outcome(), want, "{h} {p} {m} {s}");
        }
    }
}
