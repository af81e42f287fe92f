//! Gzip bodies assembled from pieces compressed ahead of time.
//!
//! A dashboard refreshed at now gets an answer that is mostly cached samples and a few
//! minutes of new ones. Compressing the whole answer for every refresh is the largest
//! part of the frontend's own work on a large panel (deflate runs at ~60–150 MB/s on
//! sample text), so the cache keeps each series' sample text also as independently
//! compressed [`Chunk`]s, made when the entry is stored (off the request path). The
//! gzip body of an answer is then the cached chunks copied as they are, with the bytes
//! between them (labels, punctuation, new samples) written around them.
//!
//! Why this is one valid gzip stream: every chunk is a raw deflate stream compressed on
//! its own (no reference to anything before it) and ended by a sync flush, so it stops
//! on a byte boundary and its last block is not final. Deflate blocks of any kind may
//! follow each other, and a back-reference only reaches bytes of its own chunk, which
//! the decoder has just produced. The bytes between chunks go in stored blocks (short
//! runs) or their own sync-flushed deflate (long runs); one empty final stored block
//! ends the stream, and the gzip trailer carries the CRC-32 and length of the whole
//! body, computed over the body itself.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// Sample text is cut into chunks of about this many bytes (whole samples each): small
/// enough that an answer whose window starts inside a stored extent loses little of it
/// (the part of the first chunk it keeps goes uncompressed), large enough that each
/// chunk compresses well on its own. Measured on a 380 KB answer of the live scenario at
/// level 1: chunks of 2, 4, 8 and 16 KiB come to 0.996, 1.007, 1.019 and 1.022 times the
/// size of the whole body compressed at once.
pub const CHUNK_BYTES: usize = 4 * 1024;

/// Runs between chunks at least this long are compressed; shorter ones are stored.
/// Starting a compressor costs about as much as compressing a few KiB (it clears its
/// tables), so short runs (labels, punctuation, a few fresh samples) are cheaper stored;
/// a series' fresh tail with the part of a chunk its window cut is usually longer and
/// compressed (stored, it made a 6-hour panel's body 1.7 times larger).
const COMPRESS_GAP_ABOVE: usize = 4 * 1024;

/// Largest stored block (its length field is 16 bits).
const STORED_MAX: usize = 65_535;

/// One compressed run of a sample array's text: bytes `start..start + len` of that text
/// (its `[` is byte 0) as a raw deflate stream ended by a sync flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the run in the array's text.
    pub start: usize,
    /// Length of the run, uncompressed.
    pub len: usize,
    /// The run compressed.
    pub deflate: Bytes,
}

/// A compressed run placed in a whole body: bytes `at..at + len` of it.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Offset in the body.
    pub at: usize,
    /// Length, uncompressed.
    pub len: usize,
    /// The run compressed (see [`Chunk`]).
    pub deflate: Bytes,
}

/// The runs of `chunks` lying wholly inside bytes `from..to` of their text, moved for a
/// copy of those bytes that starts at `dest`.
pub fn moved(chunks: &[Chunk], from: usize, to: usize, dest: usize) -> Vec<Chunk> {
    chunks
        .iter()
        .filter(|c| c.start >= from && c.start + c.len <= to)
        .map(|c| Chunk {
            start: c.start - from + dest,
            ..c.clone()
        })
        .collect()
}

/// Cuts a JSON array's text into chunks of whole elements of about [`CHUNK_BYTES`] and
/// compresses each at `level`. `elements` are the byte ranges of the array's elements
/// (see `model::response::array_elements`). Arrays shorter than a quarter chunk get no
/// chunk: they are cheap to compress with the rest of a body.
pub fn chunks_of(
    text: &str,
    elements: impl Iterator<Item = (usize, usize)>,
    level: u32,
) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    let close = |run: (usize, usize), out: &mut Vec<Chunk>| {
        let (start, end) = run;
        if end - start >= CHUNK_BYTES / 4
            && let Some(deflate) = deflate_sync(&text.as_bytes()[start..end], level)
        {
            out.push(Chunk {
                start,
                len: end - start,
                deflate: Bytes::from(deflate),
            });
        }
    };
    for (start, end) in elements {
        let (first, _) = run.unwrap_or((start, end));
        run = Some((first, end));
        if end - first >= CHUNK_BYTES {
            close((first, end), &mut out);
            run = None;
        }
    }
    if let Some(run) = run {
        close(run, &mut out);
    }
    out
}

/// `data` as a raw deflate stream (no header) ended by a sync flush: byte-aligned, no
/// final block, so more blocks may follow it. `None` if the compressor fails.
///
/// Each thread keeps one compressor per level and resets it between runs: a new one
/// allocates and clears a few hundred KiB of tables, which for thousands of 4 KiB runs
/// cost more than the compression and left the allocator holding tens of MiB.
pub fn deflate_sync(data: &[u8], level: u32) -> Option<Vec<u8>> {
    thread_local! {
        static COMPRESSORS: std::cell::RefCell<Vec<(u32, Compress)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let level = level.min(9);
    COMPRESSORS.with(|kept| {
        let mut kept = kept.try_borrow_mut().ok()?;
        let at = match kept.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                kept.push((level, Compress::new(Compression::new(level), false)));
                kept.len() - 1
            }
        };
        let z = &mut kept[at].1;
        z.reset();
        let out = deflate_sync_with(z, data);
        if out.is_none() {
            // A failed compressor is not kept.
            kept.swap_remove(at);
        }
        out
    })
}

fn deflate_sync_with(z: &mut Compress, data: &[u8]) -> Option<Vec<u8>> {
    // Room for incompressible input in stored blocks plus the flush marker.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 128);
    loop {
        let consumed = usize::try_from(z.total_in()).ok()?;
        z.compress_vec(data.get(consumed..)?, &mut out, FlushCompress::Sync)
            .ok()?;
        let all_in = usize::try_from(z.total_in()).ok()? == data.len();
        // The flush is complete when it did not fill the buffer.
        if all_in && out.len() < out.capacity() {
            return Some(out);
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// The gzip form of `body`, with the runs of `placed` (sorted by offset, disjoint, each
/// inside `body`) copied compressed as they are and everything else compressed at
/// `level` (long runs) or stored (short ones). `None` when `placed` does not fit
/// `body`; the caller then compresses the body whole.
pub fn gzip_spliced(body: &[u8], placed: &[Placed], level: u32) -> Option<Vec<u8>> {
    let cold: usize = placed.iter().map(|p| p.deflate.len()).sum();
    let mut out = Vec::with_capacity(cold + body.len() / 8 + 64);
    // Header: magic, deflate, no flags, no time, no extra flags, unknown OS.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut pos = 0;
    for p in placed {
        let end = p.at.checked_add(p.len)?;
        if p.at < pos || end > body.len() {
            return None;
        }
        gap(&mut out, &body[pos..p.at], level)?;
        out.extend_from_slice(&p.deflate);
        pos = end;
    }
    gap(&mut out, &body[pos..], level)?;
    // The final block: empty, stored.
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    Some(out)
}

/// Writes the bytes between two compressed runs: compressed when long, else stored.
fn gap(out: &mut Vec<u8>, bytes: &[u8], level: u32) -> Option<()> {
    if bytes.len() >= COMPRESS_GAP_ABOVE {
        out.extend_from_slice(&deflate_sync(bytes, level)?);
        return Some(());
    }
    for block in bytes.chunks(STORED_MAX) {
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // A single-member reader: the stream must be one whole gzip member.
        flate2::read::GzDecoder::new(z)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn samples(n: usize, seed: u64) -> String {
        let mut s = String::from("[");
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            let v = (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1_000_000;
            s.push_str(&format!(
                "[{},\"{}.{}\"]",
                1_700_000_000 + i * 15,
                v,
                v % 97
            ));
        }
        s.push(']');
        s
    }

    fn elements(text: &str) -> Vec<(usize, usize)> {
        crate::model::response::array_elements(text).collect()
    }

    #[test]
    fn a_body_spliced_from_chunks_decodes_to_itself() {
        let arrays = [samples(2000, 1), samples(3, 2), samples(700, 3)];
        let mut body = String::from("{\"result\":[");
        let mut placed = Vec::new();
        for (i, a) in arrays.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str("{\"values\":");
            let base = body.len();
            for c in chunks_of(a, elements(a).into_iter(), 4) {
                assert_eq!(
                    gunzip_raw(&c.deflate),
                    a.as_bytes()[c.start..c.start + c.len]
                );
                placed.push(Placed {
                    at: base + c.start,
                    len: c.len,
                    deflate: c.deflate,
                });
            }
            body.push_str(a);
            body.push('}');
        }
        body.push_str("]}");
        assert!(
            placed.len() > 5,
            "long arrays are chunked: {}",
            placed.len()
        );
        let z = gzip_spliced(body.as_bytes(), &placed, 1).expect("fits");
        assert_eq!(gunzip(&z), body.as_bytes());
        assert!(
            z.len() < body.len() / 2,
            "compressed: {} of {}",
            z.len(),
            body.len()
        );
        // With nothing placed it is an ordinary gzip body.
        let plain = gzip_spliced(body.as_bytes(), &[], 1).expect("fits");
        assert_eq!(gunzip(&plain), body.as_bytes());
    }

    #[test]
    fn chunks_hold_whole_elements_and_skip_short_arrays() {
        let a = samples(1500, 7);
        let chunks = chunks_of(&a, elements(&a).into_iter(), 1);
        let els = elements(&a);
        for c in &chunks {
            assert!(els.iter().any(|(s, _)| *s == c.start), "starts an element");
            assert!(
                els.iter().any(|(_, e)| *e == c.start + c.len),
                "ends an element"
            );
        }
        assert!(
            chunks
                .windows(2)
                .all(|w| w[0].start + w[0].len < w[1].start)
        );
        let short = samples(3, 1);
        assert!(chunks_of(&short, elements(&short).into_iter(), 1).is_empty());
    }

    #[test]
    fn placements_that_do_not_fit_are_refused() {
        let body = b"0123456789";
        let p = |at, len| Placed {
            at,
            len,
            deflate: Bytes::from(deflate_sync(&body[at..(at + len).min(10)], 1).expect("z")),
        };
        assert!(gzip_spliced(body, &[p(8, 5)], 1).is_none(), "past the end");
        assert!(
            gzip_spliced(body, &[p(4, 4), p(2, 1)], 1).is_none(),
            "unsorted"
        );
        let ok = gzip_spliced(body, &[p(2, 3), p(6, 2)], 1).expect("fits");
        assert_eq!(gunzip(&ok), body);
    }

    fn gunzip_raw(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(z.len() * 50 + 1024);
        flate2::Decompress::new(false)
            .decompress_vec(z, &mut out, flate2::FlushDecompress::Sync)
            .expect("raw deflate");
        out
    }
}
