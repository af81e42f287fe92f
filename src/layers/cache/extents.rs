//! Pure extent arithmetic: which parts of a requested range a cache entry already holds,
//! which must be fetched, and how answers are cut to a sub-range.
//!
//! All ranges are inclusive and lie on the query's grid (`start + k·step`): the key pins
//! step and phase, so every extent of one entry shares the grid.

use crate::error::Error;
use crate::model::response::array_elements;
use crate::model::{MatrixData, QueryResponse, RawJson, Series};
use crate::splice::{Chunk, moved};

/// An inclusive range of grid timestamps, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First timestamp.
    pub start_ms: i64,
    /// Last timestamp.
    pub end_ms: i64,
}

/// One part of a requested range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Served by extent number `extent`, over `span`.
    Hit {
        /// Index into the extents given to [`partition`].
        extent: usize,
        /// The part of the request it covers.
        span: Span,
    },
    /// Not cached: fetch `span`.
    Gap(Span),
}

/// Splits `[start, end]` into hits (covered by `extents`, sorted and disjoint) and gaps,
/// in time order.
pub fn partition(extents: &[Span], start_ms: i64, end_ms: i64, step_ms: i64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cursor = start_ms;
    for (i, e) in extents.iter().enumerate() {
        if cursor > end_ms {
            break;
        }
        if e.end_ms < cursor || e.start_ms > end_ms {
            continue;
        }
        if e.start_ms > cursor {
            out.push(Segment::Gap(Span {
                start_ms: cursor,
                end_ms: e.start_ms - step_ms,
            }));
        }
        let span = Span {
            start_ms: cursor.max(e.start_ms),
            end_ms: end_ms.min(e.end_ms),
        };
        out.push(Segment::Hit { extent: i, span });
        cursor = span.end_ms + step_ms;
    }
    if cursor <= end_ms {
        out.push(Segment::Gap(Span {
            start_ms: cursor,
            end_ms,
        }));
    }
    out
}

/// Splits a gap at the freshness cut-off: the part at or before `cutoff_ms` may be
/// stored, the rest is fetched fresh and not stored. Either part may be absent.
pub fn split_at_cutoff(gap: Span, cutoff_ms: i64, step_ms: i64) -> (Option<Span>, Option<Span>) {
    if gap.end_ms <= cutoff_ms {
        return (Some(gap), None);
    }
    if gap.start_ms > cutoff_ms {
        return (None, Some(gap));
    }
    let last_stored = gap.start_ms + (cutoff_ms - gap.start_ms) / step_ms * step_ms;
    (
        Some(Span {
            start_ms: gap.start_ms,
            end_ms: last_stored,
        }),
        Some(Span {
            start_ms: last_stored + step_ms,
            end_ms: gap.end_ms,
        }),
    )
}

/// The last grid point at or before `t` (grid: `phase_ms + k·step`).
pub fn grid_floor(t: i64, phase_ms: i64, step_ms: i64) -> i64 {
    t - off_grid_ms(t, phase_ms, step_ms)
}

/// How far `t` lies past the last grid point at or before it, in `[0, step)`. Computed
/// in i128: `t` may come from a corrupt cache entry (found by the cache_read fuzz target:
/// `t - phase` overflowed for times near `i64::MIN`).
fn off_grid_ms(t: i64, phase_ms: i64, step_ms: i64) -> i64 {
    (i128::from(t) - i128::from(phase_ms)).rem_euclid(i128::from(step_ms)) as i64
}

/// Whether extents are sorted, disjoint, non-empty and on the grid; anything else read
/// from a cache is treated as a miss.
pub fn well_formed(extents: &[Span], phase_ms: i64, step_ms: i64) -> bool {
    let on_grid = |t: i64| off_grid_ms(t, phase_ms, step_ms) == 0;
    extents
        .iter()
        .all(|e| e.start_ms <= e.end_ms && on_grid(e.start_ms) && on_grid(e.end_ms))
        && extents.windows(2).all(|w| w[0].end_ms < w[1].start_ms)
}

/// Keeps only the samples of `resp` with timestamps in `[from, to]`; series left without
/// samples are dropped (as the querier would not return them).
pub fn trim(resp: &QueryResponse, from_ms: i64, to_ms: i64) -> Result<QueryResponse, Error> {
    let span = Span {
        start_ms: from_ms,
        end_ms: to_ms,
    };
    cut(resp, &[span])?
        .pop()
        .ok_or_else(|| Error::Internal("cut gave no part".into()))
}

/// Cuts `resp` into one answer per span of `spans` (sorted, disjoint): each holds the
/// samples with timestamps in its span, and only the series that have some there, which
/// is what the querier answers for that span alone. One pass over each sample array, so
/// cutting a many-day answer into days costs about one copy of it. The querier sends
/// samples in time order; samples out of order make the data unusable (an error, which
/// the cache treats as a miss).
pub fn cut(resp: &QueryResponse, spans: &[Span]) -> Result<Vec<QueryResponse>, Error> {
    if spans.windows(2).any(|w| w[0].end_ms >= w[1].start_ms) {
        return Err(Error::Internal("cut spans out of order".into()));
    }
    let Some(data) = &resp.data else {
        return Ok(spans.iter().map(|_| resp.clone()).collect());
    };
    let mut kept: Vec<Vec<Series>> = spans.iter().map(|_| Vec::new()).collect();
    for s in &data.result {
        let values = cut_array(s.values.as_ref(), &s.chunks, spans)?;
        let histograms = cut_array(s.histograms.as_ref(), &[], spans)?;
        for (i, ((values, chunks), (histograms, _))) in
            values.into_iter().zip(histograms).enumerate()
        {
            if values.is_some() || histograms.is_some() {
                kept[i].push(Series {
                    metric: s.metric.clone(),
                    values,
                    histograms,
                    chunks,
                });
            }
        }
    }
    Ok(kept
        .into_iter()
        .map(|result| QueryResponse {
            status: resp.status,
            data: Some(MatrixData {
                result_type: data.result_type.clone(),
                result,
                extra: data.extra.clone(),
            }),
            error_type: resp.error_type.clone(),
            error: resp.error.clone(),
            warnings: resp.warnings.clone(),
            infos: resp.infos.clone(),
            extra: resp.extra.clone(),
            no_store: resp.no_store,
        })
        .collect())
}

/// The answer on a coarser grid: keeps only the samples of `resp` at timestamps
/// `phase + k·step` inside `span`, and only the series left with some, which is what
/// the querier answers for that grid (every point of a range query is evaluated on its
/// own). Used to answer a query from an entry stored at a step that divides `step`.
/// Samples out of time order make the data unusable (an error, a miss for the cache).
pub fn thin(
    resp: &QueryResponse,
    span: Span,
    phase_ms: i64,
    step_ms: i64,
) -> Result<QueryResponse, Error> {
    if step_ms <= 0 {
        return Err(Error::Internal("thinning to a step of 0".into()));
    }
    let Some(data) = &resp.data else {
        return Ok(resp.clone());
    };
    let mut result = Vec::new();
    for s in &data.result {
        let values = thin_array(s.values.as_ref(), span, phase_ms, step_ms)?;
        let histograms = thin_array(s.histograms.as_ref(), span, phase_ms, step_ms)?;
        if values.is_some() || histograms.is_some() {
            result.push(Series {
                metric: s.metric.clone(),
                values,
                histograms,
                chunks: Vec::new(),
            });
        }
    }
    Ok(with_series(resp, data, result))
}

/// `resp` (whose matrix is `data`) with `result` as its series.
pub(super) fn with_series(
    resp: &QueryResponse,
    data: &MatrixData,
    result: Vec<Series>,
) -> QueryResponse {
    QueryResponse {
        data: Some(MatrixData {
            result_type: data.result_type.clone(),
            result,
            extra: data.extra.clone(),
        }),
        ..resp.clone_envelope()
    }
}

/// [`thin`] for one raw sample array: its samples on the grid inside `span`, or `None`.
fn thin_array(
    arr: Option<&RawJson>,
    span: Span,
    phase_ms: i64,
    step_ms: i64,
) -> Result<Option<RawJson>, Error> {
    let Some(arr) = arr else { return Ok(None) };
    let text = arr.as_str();
    let mut out = String::new();
    for sample in timed_samples(text) {
        let (start, end, ts) = sample?;
        let sample = &text[start..end];
        if ts > span.end_ms {
            break;
        }
        if ts < span.start_ms || off_grid_ms(ts, phase_ms, step_ms) != 0 {
            continue;
        }
        out.push(if out.is_empty() { '[' } else { ',' });
        out.push_str(sample);
    }
    if out.is_empty() {
        return Ok(None);
    }
    out.push(']');
    Ok(Some(RawJson::from_trusted(out)))
}

/// A cut sample array: its text (`None` when it has no sample) and the compressed runs
/// that lie wholly inside it.
type CutArray = (Option<RawJson>, Vec<Chunk>);

/// [`cut`] for one raw sample array and its compressed runs: per span, its samples.
fn cut_array(
    arr: Option<&RawJson>,
    chunks: &[Chunk],
    spans: &[Span],
) -> Result<Vec<CutArray>, Error> {
    let mut out: Vec<CutArray> = spans.iter().map(|_| (None, Vec::new())).collect();
    let Some(arr) = arr else { return Ok(out) };
    let text = arr.as_str();
    let mut span = 0;
    // The current span's first and last sample, as byte offsets into `text`.
    let mut run: Option<(usize, usize)> = None;
    let close = |out: &mut Vec<CutArray>, i: usize, run: Option<(usize, usize)>| {
        if let Some((first, last)) = run {
            let mut s = String::with_capacity(last - first + 2);
            s.push('[');
            s.push_str(&text[first..last]);
            s.push(']');
            // The text moves from `first` to 1 (after the `[`).
            out[i] = (
                Some(RawJson::from_trusted(s)),
                moved(chunks, first, last, 1),
            );
        }
    };
    for sample in timed_samples(text) {
        let (start, end, ts) = sample?;
        while span < spans.len() && ts > spans[span].end_ms {
            close(&mut out, span, run.take());
            span += 1;
        }
        if span == spans.len() {
            break;
        }
        if ts >= spans[span].start_ms {
            run = Some((run.map_or(start, |(first, _)| first), end));
        }
    }
    if span < spans.len() {
        close(&mut out, span, run);
    }
    Ok(out)
}

/// The samples of a raw sample array, as byte ranges into `text` with their timestamps;
/// an error for a sample without a timestamp or out of time order (the querier sends
/// them in order: anything else makes the data unusable).
fn timed_samples(text: &str) -> impl Iterator<Item = Result<(usize, usize, i64), Error>> + '_ {
    let mut previous = i64::MIN;
    array_elements(text).map(move |(start, end)| {
        let sample = &text[start..end];
        let ts = sample_timestamp_ms(sample).ok_or_else(|| {
            Error::BadResponse(format!("sample without a timestamp: {sample:.40}"))
        })?;
        if ts <= previous {
            return Err(Error::BadResponse("samples out of time order".into()));
        }
        previous = ts;
        Ok((start, end, ts))
    })
}

/// The timestamp of a sample `[1700000000.123,"1"]`, in ms (parsed exactly, no float).
pub(super) fn sample_timestamp_ms(sample: &str) -> Option<i64> {
    let rest = sample.trim_start().strip_prefix('[')?;
    let end = rest.find(',')?;
    let num = rest[..end].trim();
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let negative = whole.starts_with('-');
    let secs: i64 = whole.parse().ok()?;
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // "5" is 500 ms, "05" 50 ms, "005" 5 ms.
    let ms = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    let ms = if negative { -ms } else { ms };
    secs.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
#[path = "extents_tests.rs"]
mod tests;
