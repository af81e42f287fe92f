//! The stored form of a cache entry, and its decoder for bytes that may be anything
//! (a Redis value can be corrupted, truncated, or written by another version).
//!
//! Layout: magic `PFC3`, one flag byte (0 = raw, 1 = lz4), the xxh3-64 of the
//! uncompressed payload, then the payload: the full key (u32 length + bytes) and the
//! extents (u32 count; each: i64 start, i64 end, u32 length + the piece's response
//! JSON, then the compressed runs of its series' sample arrays: u32 series count (0 or
//! the JSON's), per series u32 run count, per run u32 start, u32 length, u32 length +
//! the raw deflate bytes; see [`crate::splice`]), then the JSON's layout (u32: 0 for
//! none, else 1 + its series count; the result array's start and end; per series the
//! start and end of its label set, sample array and histogram array, `u32::MAX` twice
//! for an absent array; see [`crate::model::layout`]). All integers little-endian. Payloads
//! above [`COMPRESS_ABOVE`] bytes are lz4-compressed (fast to decompress, ~2× on
//! matrices). Values of the older layouts are still read: `PFC2` (no compressed runs)
//! and `PFC1` (no checksum either).
//!
//! The checksum catches a value cut or flipped on the way (a corrupt value is a miss,
//! never an answer). It is not a signature: whoever can write to the cache can write any
//! answer, checksum or not. Values of the older layouts are parsed, and so validated, in
//! full; a `PFC3` value is read by its layout (`model::layout`): the envelope is parsed,
//! each series' parts are checked for order, brackets and UTF-8 and taken as written
//! (label sets are parsed again when answers are merged), and its compressed runs are
//! checked to lie inside their sample arrays. Under the checksum these bytes are what
//! the frontend wrote.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use super::extents::Span;
use crate::model::layout::{Layout, SeriesLayout};
use crate::splice::Chunk;

const MAGIC: &[u8; 4] = b"PFC3";
/// The layout before compressed runs; read, never written.
const MAGIC_V2: &[u8; 4] = b"PFC2";
/// The layout before checksums; read, never written.
const MAGIC_V1: &[u8; 4] = b"PFC1";
/// Payloads larger than this are compressed.
pub const COMPRESS_ABOVE: usize = 4096;
/// A decoded entry is refused above this size, whatever its header claims.
const MAX_DECODED: usize = 1 << 30;

/// A stored value: `magic`, the compression flag, the payload's xxh3 and the payload,
/// lz4-compressed (size prepended) when it is larger than [`COMPRESS_ABOVE`].
pub(super) fn framed(magic: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    framed_as(magic, payload, payload.len() > COMPRESS_ABOVE)
}

/// A stored value, its payload compressed or not as asked.
fn framed_as(magic: &[u8; 4], payload: &[u8], compress: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        if compress {
            payload.len() / 2
        } else {
            payload.len()
        } + 13,
    );
    out.extend_from_slice(magic);
    out.push(u8::from(compress));
    out.extend_from_slice(&xxh3_64(payload).to_le_bytes());
    if compress {
        out.extend_from_slice(&lz4_flex::compress_prepend_size(payload));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The payload of a stored value by its compression flag: as stored (`0`), or
/// lz4-decompressed with its size prepended (`1`); the claimed size is checked before
/// anything is allocated.
pub(super) fn payload_of(flag: u8, rest: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ValueError> {
    match flag {
        0 => Ok(std::borrow::Cow::Borrowed(rest)),
        1 => {
            let claimed = rest
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or(ValueError::Corrupt)?;
            // lz4 expands at most 255:1; a larger claim is a lie that would make the
            // decoder allocate it.
            if claimed > MAX_DECODED || claimed > rest.len().saturating_mul(255) {
                return Err(ValueError::TooLarge);
            }
            lz4_flex::decompress_size_prepended(rest)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| ValueError::Corrupt)
        }
        _ => Err(ValueError::Format),
    }
}

/// One cached extent: a grid range and the querier's answer for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredExtent {
    /// The range the answer covers.
    pub span: Span,
    /// The answer as JSON.
    pub json: Bytes,
    /// Per series of the answer (in its order), the compressed runs of its sample
    /// array; empty when none were kept.
    pub chunks: Vec<Vec<Chunk>>,
    /// Where the answer's series lie in `json`, when known: read back by slicing.
    pub layout: Option<Layout>,
}

/// A cache entry: the full key (to detect hash collisions) and its extents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key text.
    pub key: String,
    /// Extents, sorted and disjoint.
    pub extents: Vec<StoredExtent>,
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// Not a value of this format or version.
    #[error("unknown cache value format")]
    Format,
    /// Cut short or inconsistent.
    #[error("truncated or corrupt cache value")]
    Corrupt,
    /// Claims to decode to more than the limit.
    #[error("cache value too large")]
    TooLarge,
}

impl Entry {
    /// Encodes the entry, compressing large payloads.
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.payload();
        framed(MAGIC, &payload)
    }

    /// Encodes the entry uncompressed, for a backend in this process: reading it back
    /// then needs no decompression and no copy of the answers' text.
    pub fn encode_uncompressed(&self) -> Vec<u8> {
        framed_as(MAGIC, &self.payload(), false)
    }

    fn payload(&self) -> Vec<u8> {
        let size: usize = 8
            + self.key.len()
            + self
                .extents
                .iter()
                .map(|e| {
                    24 + e.json.len()
                        + e.chunks
                            .iter()
                            .flatten()
                            .map(|c| 12 + c.deflate.len())
                            .sum::<usize>()
                })
                .sum::<usize>();
        let mut payload = Vec::with_capacity(size);
        put_bytes(&mut payload, self.key.as_bytes());
        payload.extend_from_slice(&(self.extents.len() as u32).to_le_bytes());
        for e in &self.extents {
            payload.extend_from_slice(&e.span.start_ms.to_le_bytes());
            payload.extend_from_slice(&e.span.end_ms.to_le_bytes());
            put_bytes(&mut payload, &e.json);
            payload.extend_from_slice(&(e.chunks.len() as u32).to_le_bytes());
            for series in &e.chunks {
                payload.extend_from_slice(&(series.len() as u32).to_le_bytes());
                for c in series {
                    payload.extend_from_slice(&(c.start as u32).to_le_bytes());
                    payload.extend_from_slice(&(c.len as u32).to_le_bytes());
                    put_bytes(&mut payload, &c.deflate);
                }
            }
            put_layout(&mut payload, e.layout.as_ref());
        }
        payload
    }

    /// Decodes stored bytes; never panics, whatever they are.
    pub fn decode(bytes: &[u8]) -> Result<Entry, ValueError> {
        Entry::decode_shared(&Bytes::copy_from_slice(bytes))
    }

    /// Decodes stored bytes without copying them: the extents' JSON are slices of
    /// `bytes` when stored uncompressed, of one decompressed buffer otherwise. Never
    /// panics, whatever they are.
    pub fn decode_shared(bytes: &Bytes) -> Result<Entry, ValueError> {
        Entry::read(bytes, true).map(|(entry, _)| entry)
    }

    /// Decodes a value this process wrote and kept in its own memory, like
    /// [`Entry::decode_shared`] but without checking the checksum: that guards a trip
    /// through a network or another program, which these bytes never made. Still
    /// never panics, whatever they are.
    pub fn decode_own(bytes: &Bytes) -> Result<Entry, ValueError> {
        Entry::read(bytes, false).map(|(entry, _)| entry)
    }

    /// Decodes stored bytes, and tells whether a checksum proved them whole (a value of
    /// the older layout has none). Never panics, whatever they are.
    pub fn decode_verified(bytes: &Bytes) -> Result<(Entry, bool), ValueError> {
        Entry::read(bytes, true)
    }

    fn read(bytes: &Bytes, check: bool) -> Result<(Entry, bool), ValueError> {
        let (rest, checksummed, with_chunks) = if let Some(rest) = bytes.strip_prefix(MAGIC) {
            (rest, true, true)
        } else if let Some(rest) = bytes.strip_prefix(MAGIC_V2) {
            (rest, true, false)
        } else if let Some(rest) = bytes.strip_prefix(MAGIC_V1) {
            (rest, false, false)
        } else {
            return Err(ValueError::Format);
        };
        let (&flag, rest) = rest.split_first().ok_or(ValueError::Corrupt)?;
        let (sum, rest) = match checksummed {
            true => {
                let (sum, rest) = rest.split_at_checked(8).ok_or(ValueError::Corrupt)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(sum);
                (Some(u64::from_le_bytes(b)), rest)
            }
            false => (None, rest),
        };
        let payload = match payload_of(flag, rest)? {
            std::borrow::Cow::Borrowed(raw) => bytes.slice_ref(raw),
            std::borrow::Cow::Owned(decompressed) => Bytes::from(decompressed),
        };
        if check && sum.is_some_and(|sum| sum != xxh3_64(&payload)) {
            return Err(ValueError::Corrupt);
        }
        let mut r = Reader(&payload, &payload);
        let key = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| ValueError::Corrupt)?;
        let n = r.u32()? as usize;
        // Each extent needs at least 20 bytes: refuse counts the payload cannot hold.
        if n > r.0.len() / 20 {
            return Err(ValueError::Corrupt);
        }
        let mut extents = Vec::with_capacity(n);
        for _ in 0..n {
            let start_ms = r.i64()?;
            let end_ms = r.i64()?;
            let json = payload.slice_ref(r.bytes()?);
            let (chunks, layout) = if with_chunks {
                (r.chunks()?, r.layout()?)
            } else {
                (Vec::new(), None)
            };
            extents.push(StoredExtent {
                span: Span { start_ms, end_ms },
                json,
                chunks,
                layout,
            });
        }
        if !r.0.is_empty() {
            return Err(ValueError::Corrupt);
        }
        Ok((Entry { key, extents }, checksummed))
    }
}

fn put_layout(out: &mut Vec<u8>, layout: Option<&Layout>) {
    let Some(l) = layout else {
        out.extend_from_slice(&0u32.to_le_bytes());
        return;
    };
    let mut put = |v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    put(l.series.len() + 1);
    put(l.result.0);
    put(l.result.1);
    for s in &l.series {
        for (a, b) in [Some(s.metric), s.values, s.histograms]
            .into_iter()
            .map(|r| r.unwrap_or((u32::MAX as usize, u32::MAX as usize)))
        {
            put(a);
            put(b);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// The unread rest of a payload, and the whole payload (for sharing slices of it).
struct Reader<'a>(&'a [u8], &'a Bytes);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if self.0.len() < n {
            return Err(ValueError::Corrupt);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, ValueError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, ValueError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ValueError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// An extent's layout, if stored.
    fn layout(&mut self) -> Result<Option<Layout>, ValueError> {
        let n = self.u32()? as usize;
        if n == 0 {
            return Ok(None);
        }
        let series = n - 1;
        if series > self.0.len() / 24 {
            return Err(ValueError::Corrupt);
        }
        let pair = |r: &mut Self| -> Result<Option<(usize, usize)>, ValueError> {
            let (a, b) = (r.u32()?, r.u32()?);
            Ok((a != u32::MAX).then_some((a as usize, b as usize)))
        };
        let result = pair(self)?.ok_or(ValueError::Corrupt)?;
        let mut out = Vec::with_capacity(series);
        for _ in 0..series {
            out.push(SeriesLayout {
                metric: pair(self)?.ok_or(ValueError::Corrupt)?,
                values: pair(self)?,
                histograms: pair(self)?,
            });
        }
        Ok(Some(Layout {
            result,
            series: out,
        }))
    }

    /// An extent's compressed runs, per series.
    fn chunks(&mut self) -> Result<Vec<Vec<Chunk>>, ValueError> {
        let series = self.u32()? as usize;
        // Each series needs 4 bytes, each run 12: refuse counts the rest cannot hold.
        if series > self.0.len() / 4 {
            return Err(ValueError::Corrupt);
        }
        let mut out = Vec::with_capacity(series);
        for _ in 0..series {
            let n = self.u32()? as usize;
            if n > self.0.len() / 12 {
                return Err(ValueError::Corrupt);
            }
            let mut runs = Vec::with_capacity(n);
            for _ in 0..n {
                let start = self.u32()? as usize;
                let len = self.u32()? as usize;
                let deflate = self.1.slice_ref(self.bytes()?);
                runs.push(Chunk {
                    start,
                    len,
                    deflate,
                });
            }
            out.push(runs);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(json_len: usize) -> Entry {
        Entry {
            key: "pf1\u{1f}9:anonymous".into(),
            extents: vec![
                StoredExtent {
                    span: Span {
                        start_ms: 1_000,
                        end_ms: 2_000,
                    },
                    json: Bytes::from("{\"a\":1}".repeat(json_len / 7 + 1)),
                    chunks: vec![
                        vec![Chunk {
                            start: 1,
                            len: 5,
                            deflate: Bytes::from_static(b"\x01\x02\x03"),
                        }],
                        Vec::new(),
                    ],
                    layout: Some(Layout {
                        result: (3, 9),
                        series: vec![SeriesLayout {
                            metric: (3, 4),
                            values: None,
                            histograms: Some((5, 9)),
                        }],
                    }),
                },
                StoredExtent {
                    span: Span {
                        start_ms: 3_000,
                        end_ms: 3_000,
                    },
                    json: Bytes::from_static(b"{}"),
                    chunks: Vec::new(),
                    layout: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips_small_and_compressed() {
        for size in [10, 100_000] {
            let e = entry(size);
            let bytes = e.encode();
            assert_eq!(
                bytes[4],
                u8::from(size > COMPRESS_ABOVE),
                "compression flag"
            );
            if size > COMPRESS_ABOVE {
                assert!(bytes.len() < size / 4, "repetitive JSON compresses");
            }
            assert_eq!(Entry::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn rejects_garbage() {
        let good = entry(10).encode();
        assert_eq!(Entry::decode(b""), Err(ValueError::Format));
        assert_eq!(Entry::decode(b"PFC9\0"), Err(ValueError::Format));
        assert_eq!(Entry::decode(b"PFC1"), Err(ValueError::Corrupt));
        assert_eq!(Entry::decode(b"PFC1\x07"), Err(ValueError::Format));
        assert_eq!(
            Entry::decode(&good[..good.len() - 1]),
            Err(ValueError::Corrupt)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Entry::decode(&trailing), Err(ValueError::Corrupt));
        assert_eq!(
            Entry::decode(b"PFC1\x01\xff\xff\xff\xff"),
            Err(ValueError::TooLarge)
        );
        assert_eq!(
            Entry::decode(b"PFC1\x01\x10\x00\x00\x00abc"),
            Err(ValueError::Corrupt)
        );
    }

    #[test]
    fn the_checksum_proves_a_value_whole_and_old_values_still_read() {
        for size in [10, 100_000] {
            let e = entry(size);
            let bytes = e.encode();
            assert_eq!(
                Entry::decode_verified(&Bytes::from(bytes.clone())),
                Ok((e.clone(), true))
            );
            // A flipped bit in the checksum: corrupt, never served.
            let mut flipped = bytes.clone();
            flipped[6] ^= 1;
            assert_eq!(Entry::decode(&flipped), Err(ValueError::Corrupt));
        }
        // The older layouts: no compressed runs; before checksums, not proven whole.
        let mut e = entry(10);
        for x in &mut e.extents {
            x.chunks.clear();
            x.layout = None;
        }
        let mut payload = Vec::new();
        put_bytes(&mut payload, e.key.as_bytes());
        payload.extend_from_slice(&(e.extents.len() as u32).to_le_bytes());
        for x in &e.extents {
            payload.extend_from_slice(&x.span.start_ms.to_le_bytes());
            payload.extend_from_slice(&x.span.end_ms.to_le_bytes());
            put_bytes(&mut payload, &x.json);
        }
        let mut v1 = b"PFC1\0".to_vec();
        v1.extend_from_slice(&payload);
        assert_eq!(
            Entry::decode_verified(&Bytes::from(v1)),
            Ok((e.clone(), false))
        );
        let mut v2 = b"PFC2\0".to_vec();
        v2.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
        v2.extend_from_slice(&payload);
        assert_eq!(Entry::decode_verified(&Bytes::from(v2)), Ok((e, true)));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Entry::decode(&bytes);
            let _ = Entry::decode(&with_magic);
            let _ = Entry::decode_own(&Bytes::from(with_magic.clone()));
            with_magic.insert(4, 0);
            let _ = Entry::decode_own(&Bytes::from(with_magic));
        }
    }

    #[test]
    fn an_uncompressed_value_is_read_in_place() {
        let e = entry(100_000);
        let stored = Bytes::from(e.encode_uncompressed());
        assert_eq!(stored[4], 0, "stored uncompressed");
        let inside = |b: &Bytes| {
            let at = b.as_ptr() as usize;
            let whole = stored.as_ptr() as usize;
            at >= whole && at + b.len() <= whole + stored.len()
        };
        for decoded in [Entry::decode_own(&stored), Entry::decode_shared(&stored)] {
            let decoded = decoded.expect("decodes");
            assert_eq!(decoded, e);
            let x = &decoded.extents[0];
            assert!(inside(&x.json), "the answer is a slice of the stored value");
            assert!(
                inside(&x.chunks[0][0].deflate),
                "so are its compressed runs"
            );
        }
        // Compressed, the answers share the one decompressed buffer instead.
        let lz4 = Bytes::from(e.encode());
        assert_eq!(lz4[4], 1);
        let decoded = Entry::decode_shared(&lz4).expect("decodes");
        assert_eq!(decoded, e);
        assert!(!inside(&decoded.extents[0].json));
    }

    #[test]
    fn a_value_of_this_process_skips_only_the_checksum() {
        let e = entry(10);
        let mut stored = e.encode_uncompressed();
        // A wrong checksum: another reader refuses it, the owner does not look.
        stored[6] ^= 1;
        let stored = Bytes::from(stored);
        assert_eq!(Entry::decode_shared(&stored), Err(ValueError::Corrupt));
        assert_eq!(Entry::decode_own(&stored), Ok(e));
        // Everything else is still checked.
        let cut = stored.slice(..stored.len() - 1);
        assert_eq!(Entry::decode_own(&cut), Err(ValueError::Corrupt));
    }
}
