//! A range query's answer as the client receives it: the JSON bytes, made once, and their
//! gzip form, made on first use and kept with them.
//!
//! The range-query stack returns this type, so the response cache can keep exactly the
//! bytes a client got and the edge only negotiates the content encoding.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::model::QueryResponse;

/// One encoded answer; shared behind an `Arc` by the response cache and the edge.
#[derive(Debug)]
pub struct EncodedAnswer {
    /// The encoded JSON answer.
    pub json: Bytes,
    gzip: OnceLock<Bytes>,
    /// Series in the answer (for the slow-query log).
    pub series: u64,
    /// Samples in the answer.
    pub samples: u64,
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
        let (series, samples) = resp.counts();
        EncodedAnswer::new(
            Bytes::from(resp.encode()),
            series,
            samples,
            !(resp.is_partial() || resp.no_store),
        )
    }

    /// An answer from bytes already encoded.
    pub fn new(json: Bytes, series: u64, samples: u64, storable: bool) -> EncodedAnswer {
        EncodedAnswer {
            json,
            gzip: OnceLock::new(),
            series,
            samples,
            storable,
            kept: AtomicBool::new(false),
        }
    }

    /// Marks the answer as kept by the response cache.
    pub fn mark_kept(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// Whether the response cache keeps the answer.
    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Relaxed)
    }

    /// The gzip form of the answer, made by `compress` on first use and kept.
    pub fn gzip(&self, compress: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Option<Bytes> {
        if let Some(z) = self.gzip.get() {
            return Some(z.clone());
        }
        let z = Bytes::from(compress(&self.json)?);
        Some(self.gzip.get_or_init(|| z).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gzip_form_is_made_once() {
        let a = EncodedAnswer::new(Bytes::from_static(b"{}"), 0, 0, true);
        let z = a.gzip(|b| Some(b.to_vec())).expect("gzip");
        assert_eq!(a.gzip(|_| panic!("made once")).expect("kept"), z);
        let b = EncodedAnswer::new(Bytes::from_static(b"{}"), 0, 0, true);
        assert!(
            b.gzip(|_| None).is_none(),
            "a failed compression is not kept"
        );
        assert!(b.gzip(|x| Some(x.to_vec())).is_some());
    }
}
