//! A range query's answer as the client receives it: the JSON bytes, made once, and their
//! gzip form, made on first use and kept with them.
//!
//! The range-query stack returns this type, so the response cache can keep exactly the
//! bytes a client got and the edge only negotiates the content encoding.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::encoding::{Coding, FRESH_LEVEL, KEPT_LEVEL};
use crate::model::QueryResponse;
use crate::splice::{Placed, gzip_spliced};

/// One encoded answer; shared behind an `Arc` by the response cache and the edge.
#[derive(Debug)]
pub struct EncodedAnswer {
    /// The encoded JSON answer.
    pub json: Bytes,
    gzip: OnceLock<Bytes>,
    /// Runs of `json` the cache kept compressed: the gzip form copies them.
    placed: Vec<Placed>,
    /// Series and samples, counted only when asked (by the slow-query log, for a line
    /// it writes): counting walks every byte of the answer.
    counts: OnceLock<(u64, u64)>,
    /// Whether the answer may be kept whole: complete (no partial-response flag) and not
    /// marked `Cache-Control: no-store` by the querier.
    pub storable: bool,
    /// Set when the response cache keeps the answer: its gzip form will be sent many
    /// times, so it is worth a smaller one.
    kept: AtomicBool,
}

impl EncodedAnswer {
    /// Encodes `resp`.
    pub fn of(resp: &QueryResponse) -> EncodedAnswer {
        let (json, placed) = resp.encode_placed();
        let mut answer =
            EncodedAnswer::new(Bytes::from(json), !(resp.is_partial() || resp.no_store));
        answer.placed = placed;
        answer
    }

    /// An answer from bytes already encoded.
    pub fn new(json: Bytes, storable: bool) -> EncodedAnswer {
        EncodedAnswer {
            json,
            gzip: OnceLock::new(),
            placed: Vec::new(),
            counts: OnceLock::new(),
            storable,
            kept: AtomicBool::new(false),
        }
    }

    /// Series and samples in the answer; counted on first use (0 and 0 for bytes that
    /// are not a range-query answer).
    pub fn counts(&self) -> (u64, u64) {
        *self
            .counts
            .get_or_init(|| QueryResponse::from_slice(&self.json).map_or((0, 0), |r| r.counts()))
    }

    /// Marks the answer as kept by the response cache.
    pub fn mark_kept(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// Whether the response cache keeps the answer.
    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Relaxed)
    }

    /// The gzip form of the answer, made on first use and kept: the runs the cache kept
    /// compressed are copied, the rest is compressed at [`KEPT_LEVEL`] when the response
    /// cache keeps the answer, else at [`FRESH_LEVEL`] (see [`crate::encoding`]).
    pub fn gzip(&self) -> Option<Bytes> {
        if let Some(z) = self.gzip.get() {
            return Some(z.clone());
        }
        let level = match self.is_kept() {
            true => KEPT_LEVEL,
            false => FRESH_LEVEL,
        };
        let spliced = (!self.placed.is_empty())
            .then(|| gzip_spliced(&self.json, &self.placed, level))
            .flatten();
        let z = match spliced {
            Some(z) => z,
            None => Coding::Gzip.compress_at(&self.json, level).ok()?,
        };
        Some(self.gzip.get_or_init(|| Bytes::from(z)).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(z), &mut out).expect("gzip");
        out
    }

    #[test]
    fn the_gzip_form_is_made_once() {
        let a = EncodedAnswer::new(Bytes::from_static(b"{}"), true);
        let z = a.gzip().expect("gzip");
        assert_eq!(gunzip(&z), b"{}");
        let again = a.gzip().expect("kept");
        assert_eq!(again.as_ptr(), z.as_ptr(), "the same bytes, not made again");
    }

    #[test]
    fn the_gzip_form_copies_the_runs_kept_compressed() {
        let values: String = format!(
            "[{}]",
            (0..3000)
                .map(|i| format!("[{},\"{}\"]", 1_700_000_000 + i * 15, i * 7919 % 10007))
                .collect::<Vec<_>>()
                .join(",")
        );
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"b"}},"values":{values}}}]}}}}"#
        );
        let mut resp = QueryResponse::from_slice(body.as_bytes()).expect("decodes");
        let series = &mut resp.data.as_mut().expect("data").result[0];
        let chunks =
            crate::splice::chunks_of(&values, crate::model::response::array_elements(&values), 4);
        assert!(chunks.len() > 2);
        series.chunks = chunks.clone();
        let answer = EncodedAnswer::of(&resp);
        assert_eq!(answer.json, body.as_bytes());
        let z = answer.gzip().expect("gzip");
        assert_eq!(gunzip(&z), body.as_bytes());
        // The kept runs appear in the body as they are.
        let window = &chunks[1].deflate[..];
        assert!(z.windows(window.len()).any(|w| w == window), "chunk copied");
    }
}
