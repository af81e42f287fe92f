//! Pure boundary math: which sub-ranges a range query is split into.
//!
//! Boundaries are multiples of the interval counted from the Unix epoch (24h → UTC
//! midnight). The evaluation grid of a query is `start + k·step` for `k ≥ 0` while
//! `≤ end`. A piece starts at a grid point and ends at the last grid point before the
//! next boundary; the next piece starts one step later. So every grid point is evaluated
//! in exactly one piece, and each piece lies inside one interval.

/// One sub-range; both ends are grid points of the original query (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// First evaluation timestamp, Unix ms.
    pub start_ms: i64,
    /// Last evaluation timestamp, Unix ms.
    pub end_ms: i64,
}

/// Why a query is not split into pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSplit {
    /// Splitting is disabled (interval 0).
    Disabled,
    /// The step is below one millisecond (the engine's resolution).
    SubMillisecondStep,
    /// The step is as long as the interval or longer: every piece would be one point.
    StepNotBelowInterval,
    /// The range starts before 1970; the frontend forwards such queries whole.
    BeforeEpoch,
    /// `end < start`.
    EmptyRange,
    /// All grid points fall into one interval.
    SingleInterval,
}

/// Splits `[start, end]` at `step` into interval-aligned pieces.
pub fn split_range(
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    interval_ms: i64,
) -> Result<Vec<Piece>, NoSplit> {
    if interval_ms <= 0 {
        return Err(NoSplit::Disabled);
    }
    if step_ms <= 0 {
        return Err(NoSplit::SubMillisecondStep);
    }
    if step_ms >= interval_ms {
        return Err(NoSplit::StepNotBelowInterval);
    }
    if start_ms < 0 {
        return Err(NoSplit::BeforeEpoch);
    }
    if end_ms < start_ms {
        return Err(NoSplit::EmptyRange);
    }
    // i128 so that no sum below can overflow, whatever the inputs.
    let (start, step, interval) = (start_ms as i128, step_ms as i128, interval_ms as i128);
    let last = start + (end_ms as i128 - start) / step * step;
    let mut pieces = Vec::with_capacity(((last - start) / interval + 2) as usize);
    let mut s = start;
    while s <= last {
        let boundary = (s / interval + 1) * interval;
        let e = last.min(s + (boundary - 1 - s) / step * step);
        pieces.push(Piece {
            start_ms: s as i64,
            end_ms: e as i64,
        });
        s = e + step;
    }
    if pieces.len() <= 1 {
        return Err(NoSplit::SingleInterval);
    }
    Ok(pieces)
}

#[cfg(test)]
#[path = "ranges_tests.rs"]
mod tests;
