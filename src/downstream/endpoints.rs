//! The querier endpoints and their health: which endpoint an attempt goes to.
//!
//! Pure bookkeeping, no I/O. Each endpoint is *healthy* or *ejected until* some instant.
//! Passive checks: `eject_after` transport failures in a row (connections refused, reset,
//! timed out while connecting) eject an endpoint for `ejection_period`. When the period
//! ends the endpoint is back in rotation on probation: its first answer clears the
//! record, its first failure ejects it again for a whole period. Any HTTP answer,
//! whatever its status, counts as alive.
//!
//! Picking, for an attempt that already tried the endpoints in `tried`:
//! 1. a healthy endpoint not tried yet, in policy order (round robin: rotating; primary /
//!    backup: list order);
//! 2. otherwise a healthy endpoint already tried (a 5xx from a healthy replica is better
//!    retried there than on one known to refuse connections);
//! 3. otherwise (everything ejected) the ejected endpoint not tried yet whose ejection
//!    ends first, then any ejected one.
//!
//! So a request always gets an endpoint: when every endpoint is ejected the frontend still
//! tries one instead of failing without asking, and recovers as soon as any endpoint
//! answers again, without waiting for its ejection to end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How attempts are spread over several endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancePolicy {
    /// Each request goes to the next healthy endpoint in turn.
    #[default]
    RoundRobin,
    /// Every request goes to the first healthy endpoint in list order; the others are
    /// standbys.
    PrimaryBackup,
}

/// Passive health settings.
#[derive(Debug, Clone, Copy)]
pub struct HealthOptions {
    /// Transport failures in a row that eject an endpoint; 0 never ejects.
    pub eject_after: u32,
    /// How long an ejected endpoint is skipped.
    pub ejection_period: Duration,
}

/// One endpoint's health.
#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures_in_a_row: u32,
    ejected_until: Option<Instant>,
    last_answer: Option<Instant>,
}

/// An endpoint's health as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    /// Not ejected now.
    pub healthy: bool,
    /// Transport failures since its last answer.
    pub failures_in_a_row: u32,
    /// How much longer it stays ejected.
    pub ejected_for: Option<Duration>,
    /// How long ago it last answered.
    pub last_answer_ago: Option<Duration>,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The endpoint's state did not change.
    Unchanged,
    /// The endpoint was just ejected.
    Ejected,
    /// An ejected endpoint answered and is healthy again.
    Restored,
}

/// The endpoints of one querier set and their health.
#[derive(Debug)]
pub struct Endpoints {
    health: Vec<Mutex<Health>>,
    policy: BalancePolicy,
    opts: HealthOptions,
    next: AtomicUsize,
}

impl Endpoints {
    /// `count` endpoints (at least one), all healthy.
    pub fn new(count: usize, policy: BalancePolicy, opts: HealthOptions) -> Endpoints {
        Endpoints {
            health: (0..count.max(1))
                .map(|_| Mutex::new(Health::default()))
                .collect(),
            policy,
            opts,
            next: AtomicUsize::new(0),
        }
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.health.len()
    }

    /// Always false: there is at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.health.is_empty()
    }

    fn get(&self, i: usize) -> Health {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        *self.health[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update<R>(&self, i: usize, f: impl FnOnce(&mut Health) -> R) -> R {
        f(&mut self.health[i].lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How long an ejection lasts.
    pub fn ejection_period(&self) -> Duration {
        self.opts.ejection_period
    }

    /// Whether endpoint `i` is not ejected now.
    pub fn is_healthy(&self, i: usize) -> bool {
        self.get(i)
            .ejected_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Endpoint `i`'s health now.
    pub fn state(&self, i: usize) -> HealthState {
        let h = self.get(i);
        let now = Instant::now();
        let ejected_for = h
            .ejected_until
            .filter(|until| *until > now)
            .map(|until| until - now);
        HealthState {
            healthy: ejected_for.is_none(),
            failures_in_a_row: h.failures_in_a_row,
            ejected_for,
            last_answer_ago: h.last_answer.map(|t| now.saturating_duration_since(t)),
        }
    }

    /// Whether endpoint `i` answered anything within `window` and has not failed since.
    pub fn answered_within(&self, i: usize, window: Duration) -> bool {
        let h = self.get(i);
        h.failures_in_a_row == 0 && h.last_answer.is_some_and(|t| t.elapsed() <= window)
    }

    /// The endpoint for an attempt that already tried the endpoints in `tried` (bit set).
    pub fn pick(&self, tried: u64) -> usize {
        let n = self.len();
        if n == 1 {
            return 0;
        }
        let start = match self.policy {
            BalancePolicy::RoundRobin if tried == 0 => {
                self.next.fetch_add(1, Ordering::Relaxed) % n
            }
            // A retry continues from the endpoint after the last one tried.
            BalancePolicy::RoundRobin => self.next.load(Ordering::Relaxed) % n,
            BalancePolicy::PrimaryBackup => 0,
        };
        let now = Instant::now();
        let states: Vec<Health> = (0..n).map(|i| self.get(i)).collect();
        let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
        let order = (0..n).map(|k| (start + k) % n);
        let healthy = |i: &usize| states[*i].ejected_until.is_none_or(|u| now >= u);
        let soonest = |candidates: &mut dyn Iterator<Item = usize>| {
            candidates.min_by_key(|&i| states[i].ejected_until.unwrap_or(now))
        };
        order
            .clone()
            .filter(|&i| untried(i))
            .find(healthy)
            .or_else(|| order.clone().find(healthy))
            .or_else(|| soonest(&mut order.clone().filter(|&i| untried(i))))
            .or_else(|| soonest(&mut order.clone()))
            .unwrap_or(0)
    }

    /// Records an HTTP answer (any status) from endpoint `i`. `on_change` runs under the
    /// endpoint's lock when its state changes, so what it publishes is never stale.
    pub fn record_answer(&self, i: usize, on_change: impl FnOnce(Transition)) -> Transition {
        let now = Instant::now();
        self.update(i, |h| {
            let was_ejected = h.ejected_until.is_some();
            *h = Health {
                failures_in_a_row: 0,
                ejected_until: None,
                last_answer: Some(now),
            };
            if was_ejected {
                on_change(Transition::Restored);
                Transition::Restored
            } else {
                Transition::Unchanged
            }
        })
    }

    /// Records a transport failure of endpoint `i` (no HTTP answer); `on_change` as for
    /// [`Endpoints::record_answer`].
    pub fn record_failure(&self, i: usize, on_change: impl FnOnce(Transition)) -> Transition {
        let opts = self.opts;
        let now = Instant::now();
        self.update(i, |h| {
            h.failures_in_a_row = h.failures_in_a_row.saturating_add(1);
            if opts.eject_after == 0 || h.failures_in_a_row < opts.eject_after {
                return Transition::Unchanged;
            }
            // Already ejected and the period is running: a request that was in flight
            // when it was ejected. Do not extend the period.
            if h.ejected_until.is_some_and(|until| now < until) {
                return Transition::Unchanged;
            }
            let first = h.ejected_until.is_none();
            h.ejected_until = Some(now + opts.ejection_period);
            if first {
                on_change(Transition::Ejected);
                Transition::Ejected
            } else {
                Transition::Unchanged
            }
        })
    }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
