//! Pure planning arithmetic: what a query shape costs the querier, how many parallel
//! parts a run gets, where the parts are cut, and whether an answer came
//! back slower than the same work did before.
//!
//! Cost is learned per query shape (normalised expression and step) as querier time per
//! evaluation point: for one shape, a range's cost grows with its points, whatever its
//! position in time. Every request also costs a fixed amount (the round trip, the
//! querier's setup): that part, estimated as the fastest recent answer of any shape among
//! those under [`OVERHEAD_MAX`], is taken off before dividing, or a small part of a cheap
//! query would look expensive.

use std::time::Duration;

use super::limit::Signal;

/// A part is at least this many times the expression's own lookback: each part reads
/// its lookback again, so parts this long read at most 1/8 more samples than one query.
pub const MIN_PART_LOOKBACKS: i64 = 8;

/// An answer this many times slower per point than the best recent one of its shape is
/// [`Signal::Slow`].
pub const SLOW_RATIO: f64 = 1.25;

/// Answers faster than this are never judged slow: for them, noise is larger than load.
pub const MIN_JUDGED: Duration = Duration::from_millis(10);

/// What one query shape has cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Moving average of querier time per evaluation point, ms.
    pub ms_per_point: f64,
    /// The best recent time per point, ms: drifts up by 1% per answer so that a lasting
    /// change of the data is learned.
    pub best_ms_per_point: f64,
}

impl Cost {
    /// The first measurement of a shape; `overhead` is the fixed cost of any request.
    pub fn first(took: Duration, points: u64, overhead: Duration) -> Cost {
        let sample = per_point(took.saturating_sub(overhead), points);
        Cost {
            ms_per_point: sample,
            best_ms_per_point: sample,
        }
    }

    /// This cost updated with one more answer.
    pub fn with(self, took: Duration, points: u64, overhead: Duration) -> Cost {
        let sample = per_point(took.saturating_sub(overhead), points);
        Cost {
            ms_per_point: 0.7 * self.ms_per_point + 0.3 * sample,
            best_ms_per_point: (self.best_ms_per_point * 1.01).min(sample),
        }
    }

    /// Expected querier time for `points` evaluation points, ms.
    pub fn expected_ms(&self, points: u64) -> f64 {
        self.ms_per_point * points as f64
    }
}

fn per_point(took: Duration, points: u64) -> f64 {
    took.as_secs_f64() * 1e3 / points.max(1) as f64
}

/// Only answers this fast tell the fixed cost of a request: a slower one spent most of
/// its time on its own work.
pub const OVERHEAD_MAX: Duration = Duration::from_millis(5);

/// The fixed cost of a request, updated with an answer that took `took`: the fastest
/// recent answer under [`OVERHEAD_MAX`], drifting up by 1% per such answer so that a
/// slower network is learned.
pub fn overhead_with(before: Option<Duration>, took: Duration) -> Option<Duration> {
    if took > OVERHEAD_MAX {
        return before;
    }
    Some(before.map_or(took, |b| b.mul_f64(1.01).min(took)))
}

/// How an answer of `points` that took `took` compares with the shape's best (`None`:
/// nothing known yet).
pub fn judge(took: Duration, points: u64, before: Option<Cost>) -> Signal {
    match before {
        Some(c)
            if took >= MIN_JUDGED && per_point(took, points) > SLOW_RATIO * c.best_ms_per_point =>
        {
            Signal::Slow
        }
        _ => Signal::Fine,
    }
}

/// Evaluation points of `[start, end]` at `step` (inclusive grid).
pub fn points(start_ms: i64, end_ms: i64, step_ms: i64) -> u64 {
    if step_ms <= 0 || end_ms < start_ms {
        return 0;
    }
    ((end_ms - start_ms) / step_ms + 1) as u64
}

/// The most parts a run may be cut into: each at least an interval long and at least
/// [`MIN_PART_LOOKBACKS`] times the expression's lookback, and no more than `parallelism`.
/// 1 when splitting is off (`interval_ms == 0`).
pub fn max_parts(range_ms: i64, lookback_ms: i64, interval_ms: i64, parallelism: usize) -> usize {
    if interval_ms <= 0 || range_ms <= 0 {
        return 1;
    }
    let min_part = interval_ms.max(lookback_ms.saturating_mul(MIN_PART_LOOKBACKS));
    let fit = (range_ms / min_part.max(1)).max(1);
    (fit as usize).clamp(1, parallelism.max(1))
}

/// Parts for a run expected to take `expected_ms`: one per `target_ms` of querier time,
/// at most `max_parts` and `headroom` (free places under the concurrency limit), at
/// least 1.
pub fn parts_for(expected_ms: f64, target_ms: f64, max_parts: usize, headroom: usize) -> usize {
    if target_ms <= 0.0 || !expected_ms.is_finite() {
        return 1;
    }
    let wanted = (expected_ms / target_ms).floor();
    let wanted = if wanted >= 1.0 { wanted as usize } else { 1 };
    wanted.min(max_parts).min(headroom.max(1)).max(1)
}

/// `[start, end]` cut into `parts` consecutive grid ranges of (nearly) equal point counts.
pub fn cut_grid(start_ms: i64, end_ms: i64, step_ms: i64, parts: usize) -> Vec<(i64, i64)> {
    let n = points(start_ms, end_ms, step_ms);
    let parts = (parts.max(1) as u64).min(n.max(1));
    let mut out = Vec::with_capacity(parts as usize);
    let mut first = 0u64;
    for i in 0..parts {
        // Spread the remainder over the first parts.
        let len = n / parts + u64::from(i < n % parts);
        if len == 0 {
            break;
        }
        let s = start_ms + first as i64 * step_ms;
        let e = s + (len as i64 - 1) * step_ms;
        out.push((s, e));
        first += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_respect_lookback_interval_and_parallelism() {
        const DAY: i64 = 86_400_000;
        // 30 days of rate(x[5m]): a part per day at most, capped by parallelism.
        assert_eq!(max_parts(30 * DAY, 300_000, DAY, 14), 14);
        assert_eq!(max_parts(30 * DAY, 300_000, DAY, 64), 30);
        // [1d] ranges: parts of at least 8 days.
        assert_eq!(max_parts(30 * DAY, DAY, DAY, 14), 3);
        assert_eq!(max_parts(7 * DAY, DAY, DAY, 14), 1);
        // Two days of a 5m lookback: two parts at most.
        assert_eq!(max_parts(2 * DAY, 300_000, DAY, 14), 2);
        assert_eq!(max_parts(12 * 3_600_000, 300_000, DAY, 14), 1);
        assert_eq!(max_parts(30 * DAY, 300_000, 0, 14), 1, "splitting off");

        assert_eq!(parts_for(50.0, 200.0, 14, 8), 1, "cheap: one request");
        assert_eq!(parts_for(450.0, 200.0, 14, 8), 2);
        assert_eq!(
            parts_for(5000.0, 200.0, 14, 3),
            3,
            "no more than the free places"
        );
        assert_eq!(
            parts_for(5000.0, 200.0, 2, 8),
            2,
            "no more than the lookback allows"
        );
        assert_eq!(parts_for(5000.0, 200.0, 14, 0), 1);
        assert_eq!(parts_for(f64::NAN, 200.0, 14, 8), 1);
    }

    #[test]
    fn grid_cuts_cover_every_point_once() {
        for (start, end, step, parts) in [
            (1_000, 1_000 + 99 * 60_000, 60_000, 3),
            (7, 7 + 10 * 13, 13, 4),
            (0, 0, 1_000, 5),
            (5, 5 + 4 * 10, 10, 9),
        ] {
            let cuts = cut_grid(start, end, step, parts);
            let mut expect = start;
            for (s, e) in &cuts {
                assert_eq!(*s, expect, "contiguous");
                assert!(e >= s);
                assert_eq!((e - start) % step, 0, "on the grid");
                expect = e + step;
            }
            assert_eq!(expect - step, end, "ends at the last point");
            let sizes: Vec<u64> = cuts.iter().map(|(s, e)| points(*s, *e, step)).collect();
            let (min, max) = (sizes.iter().min(), sizes.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
        }
    }

    #[test]
    fn slow_means_markedly_slower_per_point_than_the_best() {
        let c = Cost::first(Duration::from_millis(100), 100, Duration::ZERO);
        assert_eq!(
            judge(Duration::from_millis(120), 100, Some(c)),
            Signal::Fine
        );
        assert_eq!(
            judge(Duration::from_millis(130), 100, Some(c)),
            Signal::Slow
        );
        assert_eq!(
            judge(Duration::from_millis(240), 200, Some(c)),
            Signal::Fine
        );
        assert_eq!(
            judge(Duration::from_millis(9), 1, Some(c)),
            Signal::Fine,
            "too short"
        );
        assert_eq!(judge(Duration::from_secs(9), 100, None), Signal::Fine);
        let later = c.with(Duration::from_millis(200), 100, Duration::ZERO);
        assert!(later.ms_per_point > c.ms_per_point);
        assert!(
            (later.best_ms_per_point - 1.01).abs() < 1e-9,
            "best drifts up 1%"
        );
    }

    #[test]
    fn the_fixed_cost_of_a_request_is_taken_off() {
        let ms = Duration::from_millis;
        let overhead = overhead_with(overhead_with(None, ms(3)), ms(1)).expect("learned");
        assert_eq!(overhead, ms(1), "the fastest answer");
        assert_eq!(
            overhead_with(Some(ms(2)), ms(4)),
            Some(ms(2).mul_f64(1.01)),
            "drifts up"
        );
        assert_eq!(
            overhead_with(Some(ms(2)), ms(50)),
            Some(ms(2)),
            "slow answers tell nothing"
        );
        assert_eq!(overhead_with(None, ms(50)), None);
        // A part of 45 points that took 1.2 ms, 1 ms of it the fixed cost: the other 675
        // points are expected to take 3 ms, not 18.
        let c = Cost::first(Duration::from_micros(1200), 45, overhead);
        assert!(
            (c.expected_ms(675) - 3.0).abs() < 1e-6,
            "{}",
            c.expected_ms(675)
        );
        assert_eq!(Cost::first(ms(1), 10, ms(2)).ms_per_point, 0.0);
    }
}
