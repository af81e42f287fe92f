//! Merging answers of disjoint time ranges of one query (split pieces, cached extents,
//! fetched runs) into one matrix.
//!
//! Pieces cover disjoint, ordered time ranges, so a series' samples are the
//! concatenation of its sample arrays in piece order: the raw JSON arrays are spliced,
//! never parsed sample by sample. Series are matched by their full label set (parsed once
//! per series per piece, hashed, so the work is linear in the response size plus one sort
//! of the distinct series), and come out sorted the way Prometheus sorts a range query's
//! matrix (label pairs compared name first, then value, byte-wise). Warnings and infos are
//! de-duplicated in first-seen order, never dropped.

use std::collections::HashMap;
use std::hash::BuildHasher;

use xxhash_rust::xxh3::Xxh3Builder;

use crate::error::Error;
use crate::model::{MatrixData, QueryResponse, RawJson, Series, Status};
use crate::splice::{Chunk, moved};

/// A label set as Prometheus orders it: pairs sorted by name; `Vec` ordering then equals
/// Prometheus' `labels.Compare`.
type LabelKey = Vec<(String, String)>;

/// One piece's sample array of a series: piece index, text, compressed runs.
type Part = (usize, RawJson, Vec<Chunk>);

struct Merged {
    key: LabelKey,
    metric: RawJson,
    /// Sample arrays with the index of the piece they came from (and their compressed
    /// runs).
    values: Vec<Part>,
    histograms: Vec<Part>,
}

/// Merges successful piece answers, given in time order.
///
/// Series are found again by the raw text of their label set (a querier writes one label
/// set the same way every time), so a label set is parsed once per distinct text, not
/// once per piece; two texts of one label set (another spelling of the same labels) are
/// still recognised and joined, their samples in piece order.
pub fn merge(pieces: Vec<QueryResponse>) -> Result<QueryResponse, Error> {
    let mut iter = pieces.into_iter();
    let Some(first) = iter.next() else {
        return Err(Error::Internal("merging zero pieces".into()));
    };
    let mut out = QueryResponse {
        status: Status::Success,
        data: None,
        error_type: None,
        error: None,
        warnings: Vec::new(),
        infos: Vec::new(),
        extra: Vec::new(),
        no_store: false,
    };
    let mut by_text: HashMap<RawJson, usize, Xxh3Builder> = HashMap::with_hasher(label_hasher());
    let mut merged: Vec<Merged> = Vec::new();
    let mut data_extra = None;
    for (piece_no, piece) in std::iter::once(first).chain(iter).enumerate() {
        if piece.status != Status::Success {
            return Err(Error::Internal("merging a failed piece".into()));
        }
        out.no_store |= piece.no_store;
        push_unique(&mut out.warnings, piece.warnings);
        push_unique(&mut out.infos, piece.infos);
        merge_extra(&mut out.extra, piece.extra);
        let Some(data) = piece.data else {
            return Err(Error::BadResponse("range query piece without data".into()));
        };
        data_extra.get_or_insert(data.extra);
        for series in data.result {
            let slot = match by_text.get(&series.metric) {
                Some(&i) => i,
                None => {
                    let key = label_key(&series.metric)?;
                    by_text.insert(series.metric.clone(), merged.len());
                    merged.push(Merged {
                        key,
                        metric: series.metric,
                        values: Vec::new(),
                        histograms: Vec::new(),
                    });
                    merged.len() - 1
                }
            };
            let slot = &mut merged[slot];
            slot.values
                .extend(series.values.map(|v| (piece_no, v, series.chunks)));
            slot.histograms
                .extend(series.histograms.map(|h| (piece_no, h, Vec::new())));
        }
    }
    merged.sort_by(|a, b| a.key.cmp(&b.key));
    // Texts that spell one label set differently are now next to each other.
    let mut joined: Vec<Merged> = Vec::with_capacity(merged.len());
    for m in merged {
        match joined.last_mut() {
            Some(last) if last.key == m.key => {
                last.values.extend(m.values);
                last.histograms.extend(m.histograms);
                last.values.sort_by_key(|(p, _, _)| *p);
                last.histograms.sort_by_key(|(p, _, _)| *p);
            }
            _ => joined.push(m),
        }
    }
    let result = joined
        .into_iter()
        .map(|m| {
            let (values, chunks) = splice_arrays(m.values);
            Series {
                metric: m.metric,
                values,
                histograms: splice_arrays(m.histograms).0,
                chunks,
            }
        })
        .collect();
    out.data = Some(MatrixData {
        result_type: "matrix".to_owned(),
        result,
        extra: data_extra.unwrap_or_default(),
    });
    Ok(out)
}

/// A hasher for label-set texts: xxh3 (faster than the standard SipHash), seeded at
/// random once per process, so that label values a scraped target chooses cannot be
/// made to collide.
fn label_hasher() -> Xxh3Builder {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(0x5eed_u64));
    Xxh3Builder::new().with_seed(seed)
}

/// Parses a `metric` object into a sorted label key.
fn label_key(metric: &RawJson) -> Result<LabelKey, Error> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(metric.as_str())
        .map_err(|e| Error::BadResponse(format!("series labels are not a string map: {e}")))?;
    Ok(map.into_iter().collect())
}

/// Concatenates JSON arrays (in the order given): `[a,b]` + `[]` + `[c]` → `[a,b,c]`,
/// with their compressed runs moved to where their text lands. `None` when there is
/// nothing to concatenate.
fn splice_arrays(mut arrays: Vec<Part>) -> (Option<RawJson>, Vec<Chunk>) {
    if arrays.len() <= 1 {
        return arrays
            .pop()
            .map_or((None, Vec::new()), |(_, a, c)| (Some(a), c));
    }
    let total: usize = arrays.iter().map(|(_, a, _)| a.as_str().len()).sum();
    let mut out = String::with_capacity(total + 2);
    let mut chunks = Vec::new();
    out.push('[');
    let mut any = false;
    for (_, a, a_chunks) in &arrays {
        let text = a.as_str();
        let inner = array_inner(text);
        if inner.is_empty() {
            continue;
        }
        if any {
            out.push(',');
        }
        // `inner` is a slice of `text`: its offset there, and where it lands in `out`.
        let from = inner.as_ptr() as usize - text.as_ptr() as usize;
        let to = out.len();
        chunks.extend(moved(a_chunks, from, from + inner.len(), to));
        out.push_str(inner);
        any = true;
    }
    out.push(']');
    (Some(RawJson::from_trusted(out)), chunks)
}

/// The text between an array's brackets, without surrounding whitespace; `""` if `text`
/// is not an array.
fn array_inner(text: &str) -> &str {
    let b = text.as_bytes();
    // As the frontend and Prometheus write arrays: brackets at both ends, nothing
    // around them, and no space just inside.
    if b.len() >= 2
        && b[0] == b'['
        && b[b.len() - 1] == b']'
        && !b[1].is_ascii_whitespace()
        && !b[b.len() - 2].is_ascii_whitespace()
    {
        return text.get(1..text.len() - 1).unwrap_or("");
    }
    text.trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or("")
        .trim()
}

fn push_unique(into: &mut Vec<String>, items: Vec<String>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

/// Top-level fields other than the known ones (e.g. `isPartial`): the first piece's value
/// is kept, except that a `true` from any piece wins (a flag such as "partial" must not be
/// lost because the first piece was complete).
fn merge_extra(
    into: &mut Vec<(String, Box<serde_json::value::RawValue>)>,
    extra: Vec<(String, Box<serde_json::value::RawValue>)>,
) {
    for (k, v) in extra {
        match into.iter_mut().find(|(ek, _)| *ek == k) {
            Some((_, existing)) if v.get() == "true" => *existing = v,
            Some(_) => {}
            None => into.push((k, v)),
        }
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
