//! Attempt bookkeeping of one logical querier request, shared by its attempts: which
//! querier endpoints it has tried and which one answered last. The retry layer creates
//! one [`Route`] per request; the downstream client reads it to send each retry to an
//! endpoint not tried yet, and writes the endpoint it picked.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Endpoints tried by the attempts of one request (endpoint indexes below 64).
#[derive(Debug)]
pub struct Route {
    tried: AtomicU64,
    last: AtomicU32,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            tried: AtomicU64::new(0),
            last: AtomicU32::new(u32::MAX),
        }
    }
}

impl Route {
    /// Bit `i` is set when endpoint `i` was tried.
    pub fn tried(&self) -> u64 {
        self.tried.load(Ordering::Relaxed)
    }

    /// Records that an attempt goes to endpoint `index`.
    pub fn mark(&self, index: usize) {
        if index < 64 {
            self.tried.fetch_or(1 << index, Ordering::Relaxed);
        }
        self.last.store(index as u32, Ordering::Relaxed);
    }

    /// The endpoint of the latest attempt.
    pub fn last(&self) -> Option<usize> {
        match self.last.load(Ordering::Relaxed) {
            u32::MAX => None,
            i => Some(i as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_accumulate_and_last_is_latest() {
        let r = Route::default();
        assert_eq!((r.tried(), r.last()), (0, None));
        r.mark(2);
        r.mark(0);
        assert_eq!((r.tried(), r.last()), (0b101, Some(0)));
    }
}
