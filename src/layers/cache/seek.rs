//! Trimming a stored answer without reading every sample.
//!
//! A dashboard whose window starts inside a stored extent (every relative range: "last
//! 6 hours" starts a little later at each refresh) needs that extent trimmed. Reading
//! every sample of a day to keep its last hour was the largest cost of such a refresh,
//! so for float samples the boundaries are found by bisection over the array's bytes:
//! jump to the middle, step to the next sample's `[`, read its timestamp, go left or
//! right. The samples between the boundaries are copied whole.
//!
//! That works because a float sample in the form every Prometheus-compatible querier
//! writes, `[<number>,"<number>"]`, has no `[` after its first byte: any `[` is a
//! sample's start. Each sample read is checked to have that form exactly (a string
//! without quotes or backslashes), so data in any other form is noticed, and the answer
//! is then trimmed by the full reader (`extents::trim`). Stored extents were read in full
//! (and found in time order) when they were cut from the querier's answer.

use crate::error::Error;
use crate::model::{QueryResponse, RawJson, Series};
use crate::splice::{Chunk, moved};

use super::extents::{sample_timestamp_ms, trim};

/// Below this many bytes the bisection ends in a linear read.
const LINEAR_BELOW: usize = 64;

/// [`trim`] for an answer read from the cache: the samples with timestamps in
/// `[from_ms, to_ms]`, series left without samples dropped.
pub fn trim_stored(resp: &QueryResponse, from_ms: i64, to_ms: i64) -> Result<QueryResponse, Error> {
    let Some(data) = &resp.data else {
        return Ok(resp.clone());
    };
    let mut result = Vec::with_capacity(data.result.len());
    for s in &data.result {
        if s.histograms.is_some() {
            return trim(resp, from_ms, to_ms);
        }
        let Some(values) = &s.values else {
            continue;
        };
        let Some(kept) = keep(values.as_str(), &s.chunks, from_ms, to_ms) else {
            return trim(resp, from_ms, to_ms);
        };
        if let Some((values, chunks)) = kept {
            result.push(Series {
                metric: s.metric.clone(),
                values: Some(values),
                histograms: None,
                chunks,
            });
        }
    }
    Ok(super::extents::with_series(resp, data, result))
}

/// The samples of one array within `[from_ms, to_ms]` and the compressed runs wholly
/// inside them; `Some(None)`: no sample there; `None`: not in the plain form.
fn keep(
    text: &str,
    chunks: &[Chunk],
    from_ms: i64,
    to_ms: i64,
) -> Option<Option<(RawJson, Vec<Chunk>)>> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'[') || bytes.last() != Some(&b']') {
        return None;
    }
    let (lo, hi) = (1, bytes.len() - 1);
    let first = first_at_or_after(bytes, lo, hi, from_ms)?;
    let past = first_at_or_after(bytes, first, hi, to_ms.checked_add(1)?)?;
    // The kept samples end before the comma in front of the first one left out.
    let end = match past {
        p if p == hi => hi,
        p if bytes.get(p.checked_sub(1)?) == Some(&b',') => p - 1,
        _ => return None,
    };
    if first >= end {
        return Some(None);
    }
    let mut out = String::with_capacity(end - first + 2);
    out.push('[');
    out.push_str(text.get(first..end)?);
    out.push(']');
    Some(Some((
        RawJson::from_trusted(out),
        moved(chunks, first, end, 1),
    )))
}

/// The offset of the first sample in `bytes[lo..hi]` with a timestamp at or after `t`
/// (`hi` when there is none). `lo` must be a sample's start or `hi`. `None` when a sample
/// read is not in the plain form.
fn first_at_or_after(bytes: &[u8], mut lo: usize, mut hi: usize, t: i64) -> Option<usize> {
    // Every sample starting before `lo` is older than `t`; the one at `hi` (if any) is not.
    while hi - lo > LINEAR_BELOW {
        let mid = lo + (hi - lo) / 2;
        let Some(at) = bytes.get(mid..hi)?.iter().position(|&b| b == b'[') else {
            break;
        };
        let at = mid + at;
        let (ts, next) = sample_at(bytes, at)?;
        if ts < t {
            lo = next;
        } else {
            hi = at;
        }
    }
    // A linear read of what is left.
    while lo < hi {
        let (ts, next) = sample_at(bytes, lo)?;
        if ts >= t {
            return Some(lo);
        }
        lo = next;
    }
    Some(hi)
}

/// The sample starting at `at`: its timestamp and the offset of the next sample (past
/// the comma), or of the array's `]` after the last one.
fn sample_at(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let rest = bytes.get(at..)?;
    if rest.first() != Some(&b'[') {
        return None;
    }
    let comma = rest.iter().take(32).position(|&b| b == b',')?;
    let ts = sample_timestamp_ms(std::str::from_utf8(rest.get(..comma + 1)?).ok()?)?;
    if rest.get(comma + 1) != Some(&b'"') {
        return None;
    }
    let value = rest.get(comma + 2..)?;
    let close = value.iter().position(|&b| b == b'"' || b == b'\\')?;
    if value[close] != b'"' || value.get(close + 1) != Some(&b']') {
        return None;
    }
    let end = at + comma + 2 + close + 2;
    match bytes.get(end) {
        Some(b',') => Some((ts, end + 1)),
        Some(b']') => Some((ts, end)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &[&[i64]], odd: bool) -> QueryResponse {
        let result: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let values: Vec<String> = ts
                    .iter()
                    .map(|t| match (odd, t / 15_000 % 3) {
                        (true, 0) => format!("[{}.{:03},\"x[{t}]\"]", t / 1000, t % 1000),
                        _ => format!("[{}.{:03},\"{}\"]", t / 1000, t % 1000, t % 977),
                    })
                    .collect();
                format!(
                    r#"{{"metric":{{"i":"{i}"}},"values":[{}]}}"#,
                    values.join(",")
                )
            })
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            result.join(",")
        );
        QueryResponse::from_slice(body.as_bytes()).expect("decodes")
    }

    #[test]
    fn trims_like_the_full_reader() {
        let a: Vec<i64> = (0..500).map(|i| 1_000_000 + i * 15_000).collect();
        let b: Vec<i64> = (0..500)
            .filter(|i| i % 7 != 0)
            .map(|i| 1_000_000 + i * 15_000)
            .collect();
        let c: Vec<i64> = vec![1_000_000, 8_500_000];
        let resp = answer(&[&a, &b, &c], false);
        let last = 1_000_000 + 499 * 15_000;
        for (from, to) in [
            (1_000_000, last),
            (1_000_000 + 15_000, last - 15_000),
            (1_000_000 + 7 * 15_000, 1_000_000 + 7 * 15_000),
            (2_000_000, 5_000_000),
            (0, 999_999),
            (last + 1, last + 100_000),
            (8_500_000, 8_500_000),
            (1_000_001, 1_014_999),
        ] {
            let fast = trim_stored(&resp, from, to).expect("trims").encode();
            let full = trim(&resp, from, to).expect("trims").encode();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&full),
                "[{from}, {to}]"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_window_trims_like_the_full_reader(
            gaps in proptest::collection::vec(1i64..40_000, 0..400),
            from in 0i64..9_000_000,
            len in 0i64..9_000_000,
        ) {
            let mut t = 1_000_000;
            let ts: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let resp = answer(&[&ts, &ts[ts.len() / 2..]], false);
            let fast = trim_stored(&resp, from, from + len).expect("trims").encode();
            let full = trim(&resp, from, from + len).expect("trims").encode();
            proptest::prop_assert_eq!(fast, full);
        }
    }

    #[test]
    fn other_forms_go_to_the_full_reader() {
        let a: Vec<i64> = (0..300).map(|i| 1_000_000 + i * 15_000).collect();
        let resp = answer(&[&a], true);
        let arr = resp.data.as_ref().expect("data").result[0]
            .values
            .as_ref()
            .expect("values")
            .as_str()
            .to_owned();
        // Strings holding `[` are found out as soon as a bisection lands near one.
        assert!(keep(&arr, &[], 2_000_000, 3_000_000).is_none());
        let fast = trim_stored(&resp, 2_000_000, 3_000_000)
            .expect("trims")
            .encode();
        let full = trim(&resp, 2_000_000, 3_000_000).expect("trims").encode();
        assert_eq!(fast, full);
    }

    #[test]
    fn compressed_runs_inside_the_kept_samples_move_with_them() {
        let a: Vec<i64> = (0..3000).map(|i| 1_000_000 + i * 15_000).collect();
        let mut resp = answer(&[&a], false);
        super::super::chunks::fill(&mut resp, 1);
        let before = resp.data.as_ref().expect("data").result[0].chunks.len();
        assert!(before > 3);
        let trimmed = trim_stored(&resp, 1_000_000 + 1000 * 15_000, 1_000_000 + 2999 * 15_000)
            .expect("trims");
        let s = &trimmed.data.as_ref().expect("data").result[0];
        let text = s.values.as_ref().expect("values").as_str();
        assert!(!s.chunks.is_empty() && s.chunks.len() < before);
        for c in &s.chunks {
            let mut out = Vec::with_capacity(c.len + 1024);
            flate2::Decompress::new(false)
                .decompress_vec(&c.deflate, &mut out, flate2::FlushDecompress::Sync)
                .expect("inflates");
            assert_eq!(out, text.as_bytes()[c.start..c.start + c.len]);
        }
    }
}
