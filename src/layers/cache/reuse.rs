//! Lower-step reuse: a range at step `s` answered from entries stored for the same
//! query at a finer step `s'`.
//!
//! Grafana picks the step from the range, so zooming out from 6 h (20 s) to 24 h (1 m)
//! to 7 d (10 m) asks the same expression on ever coarser grids, and an entry keyed at
//! one step is never a hit for another. A point of a range query is evaluated on its own
//! (no PromQL function sees the step; subqueries run on their own absolute grid), so the
//! value at time `t` is the same whatever grid `t` belongs to. An entry at step `s'` may
//! therefore answer a query at step `s` exactly when:
//! - `s` is a multiple of `s'` and the entry's phase is the query's phase modulo `s'`,
//!   so every timestamp of the asked grid is a timestamp of the entry's grid (the key
//!   pins step and phase; [`super::key::ShapeKey::at_step`] builds the finer key);
//! - the entry's extents cover the whole asked range on their grid (an extent holds the
//!   querier's answer for every point in it).
//!
//! The answer keeps the entry's samples on the asked grid and drops the series left
//! without one ([`super::extents::thin`]); it is then stored at the asked step as well,
//! so the next request is a plain hit.
//!
//! Which finer steps exist is remembered per query family in this process
//! ([`StepIndex`]: steps whose entries it stored or read). Entries in a shared Redis are
//! shared by every replica, the index is not: a replica reuses only steps it has seen.
//! Only steps at most [`MAX_STEP_RATIO`] times finer are tried (reading 100 points per
//! point kept is about the most that still beats asking the querier), coarsest first,
//! at most [`STEPS_TRIED`] of them.

use std::sync::Arc;

/// Most points of the finer entry read per point answered.
pub const MAX_STEP_RATIO: i64 = 100;

/// Most finer steps read for one query.
pub const STEPS_TRIED: usize = 3;

/// Most steps remembered per query family.
const STEPS_KEPT: usize = 16;

/// Query families whose steps are remembered.
const FAMILIES_KEPT: u64 = 65_536;

/// Per query family (a key's hash without step and phase), the steps seen.
pub struct StepIndex {
    steps: moka::sync::Cache<u64, Arc<Vec<i64>>>,
}

impl Default for StepIndex {
    fn default() -> Self {
        StepIndex {
            steps: moka::sync::Cache::builder()
                .max_capacity(FAMILIES_KEPT)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
        }
    }
}

impl StepIndex {
    /// Notes that entries of `family` exist at `step_ms`. A lost race between two
    /// writers loses one step at worst: a missed reuse, never a wrong answer.
    pub fn record(&self, family: u64, step_ms: i64) {
        let known = self.steps.get(&family);
        if known.as_ref().is_some_and(|k| k.contains(&step_ms)) {
            return;
        }
        let mut steps: Vec<i64> = known.map(|k| k.to_vec()).unwrap_or_default();
        steps.push(step_ms);
        steps.sort_unstable();
        if steps.len() > STEPS_KEPT {
            // The finest steps are the least useful to reuse (the most to read).
            steps.remove(0);
        }
        self.steps.insert(family, Arc::new(steps));
    }

    /// The known steps of `family` that may answer a query at `step_ms`: finer
    /// divisors of it, at most [`MAX_STEP_RATIO`] times finer, coarsest first.
    pub fn finer(&self, family: u64, step_ms: i64) -> Vec<i64> {
        let Some(known) = self.steps.get(&family) else {
            return Vec::new();
        };
        known
            .iter()
            .rev()
            .copied()
            .filter(|&s| divides(s, step_ms))
            .take(STEPS_TRIED)
            .collect()
    }
}

/// Whether a grid of `finer_ms` holds every point of a grid of `step_ms` (phases
/// matched), within the ratio tried.
pub fn divides(finer_ms: i64, step_ms: i64) -> bool {
    finer_ms > 0
        && finer_ms < step_ms
        && step_ms % finer_ms == 0
        && step_ms / finer_ms <= MAX_STEP_RATIO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finer_lists_divisors_coarsest_first() {
        let index = StepIndex::default();
        for step in [15_000, 20_000, 60_000, 7_000, 600_000, 60_000] {
            index.record(1, step);
        }
        index.record(2, 30_000);
        // 10 m: 1 m and 20 s and 15 s divide it; 7 s does not; 10 m itself is no
        // finer step.
        assert_eq!(index.finer(1, 600_000), vec![60_000, 20_000, 15_000]);
        assert_eq!(index.finer(1, 60_000), vec![20_000, 15_000]);
        assert_eq!(index.finer(1, 15_000), Vec::<i64>::new());
        // Another family's steps are not this one's.
        assert_eq!(index.finer(2, 600_000), vec![30_000]);
        assert_eq!(index.finer(3, 600_000), Vec::<i64>::new());
    }

    #[test]
    fn ratio_is_bounded() {
        assert!(divides(1_000, 100_000));
        assert!(!divides(1_000, 101_000));
        assert!(!divides(1_000, 200_000));
        assert!(!divides(0, 60_000));
        assert!(!divides(60_000, 60_000));
    }

    #[test]
    fn at_most_steps_tried_and_kept() {
        let index = StepIndex::default();
        for s in 1..=20 {
            index.record(9, s * 1_000);
        }
        // 1 s … 4 s were dropped (the finest); 3 steps tried at most, coarsest first, of
        // the divisors of 10 m.
        assert_eq!(index.finer(9, 600_000), vec![20_000, 15_000, 12_000]);
        // An hour: 20 s would be 180 points read per point kept.
        assert_eq!(index.finer(9, 3_600_000), Vec::<i64>::new());
        assert_eq!(index.finer(9, 4_000), Vec::<i64>::new());
    }
}
