//! An adaptive limit on the querier requests in flight (AIMD, additive increase and
//! multiplicative decrease).
//!
//! The frontend cannot know how many requests the querier serves well at once: that
//! depends on its cores, its other clients and the queries. So it learns: while answers
//! come back as fast as the same work did before, and the limit was in use, the limit
//! grows by one per limit's worth of answers (+1 per round trip); when an answer comes
//! back markedly slower than the same work did before ([`Signal::Slow`]) or an attempt
//! fails, the limit shrinks to [`DECREASE`] of itself, at most once per round trip (only
//! answers to requests sent after the last decrease can decrease it again). It stays
//! between 1 and the configured ceiling.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Factor of a multiplicative decrease.
pub const DECREASE: f64 = 0.7;

/// How an answered request went, as the caller judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// As fast as the same work went before (or nothing to compare with).
    Fine,
    /// Markedly slower per unit of work than before: the querier is saturated.
    Slow,
    /// The attempt failed (timeout, unavailable, 5xx).
    Failed,
}

#[derive(Debug)]
struct State {
    limit: f64,
    inflight: usize,
    last_decrease: Option<Instant>,
}

/// The limiter; shared by every request to one querier (set of replicas).
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    freed: Notify,
    ceiling: usize,
    adaptive: bool,
}

/// A request's place under the limit; frees it when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    sent: Instant,
    /// Whether all places were taken when this one was granted.
    saturated: bool,
    /// How the request went; `None` when it was cancelled or abandoned.
    signal: Option<Signal>,
}

impl Limiter {
    /// A limit starting at `initial` (at least 1), never above `ceiling`. With
    /// `adaptive: false` the limit stays at `ceiling`.
    pub fn new(initial: usize, ceiling: usize, adaptive: bool) -> Arc<Limiter> {
        let ceiling = ceiling.max(1);
        let start = if adaptive {
            initial.clamp(1, ceiling)
        } else {
            ceiling
        };
        Arc::new(Limiter {
            state: Mutex::new(State {
                limit: start as f64,
                inflight: 0,
                last_decrease: None,
            }),
            freed: Notify::new(),
            ceiling,
            adaptive,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current limit (whole requests).
    pub fn limit(&self) -> usize {
        (self.lock().limit as usize).max(1)
    }

    /// Places free right now.
    pub fn headroom(&self) -> usize {
        let s = self.lock();
        (s.limit as usize).max(1).saturating_sub(s.inflight)
    }

    /// Waits for a free place.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.lock();
                let limit = (s.limit as usize).max(1);
                if s.inflight < limit {
                    s.inflight += 1;
                    return Permit {
                        limiter: self.clone(),
                        sent: Instant::now(),
                        saturated: s.inflight >= limit,
                        signal: None,
                    };
                }
            }
            freed.await;
        }
    }

    fn release(&self, permit: &Permit) {
        let signal = permit.signal;
        {
            let mut s = self.lock();
            s.inflight = s.inflight.saturating_sub(1);
            if self.adaptive {
                match signal {
                    Some(Signal::Slow | Signal::Failed)
                        if s.last_decrease.is_none_or(|t| permit.sent > t) =>
                    {
                        s.limit = (s.limit * DECREASE).max(1.0);
                        s.last_decrease = Some(Instant::now());
                    }
                    Some(Signal::Fine) if permit.saturated => {
                        s.limit = (s.limit + 1.0 / s.limit).min(self.ceiling as f64);
                    }
                    _ => {}
                }
            }
        }
        self.freed.notify_waiters();
    }
}

impl Permit {
    /// Frees the place and tells the limiter how the request went.
    pub fn done(mut self, signal: Signal) {
        self.signal = Some(signal);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Without `done` (cancelled or abandoned) the place is freed, nothing learned.
        self.limiter.clone().release(self);
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
