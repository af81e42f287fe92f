//! Content codings: which one a client gets, compressing the bodies the frontend builds,
//! and decoding a querier's compressed answers within a size limit.
//!
//! Negotiation follows Prometheus 2.42's API handler (checked against the binary): the
//! first `Accept-Encoding` header is split at commas, and the first entry that is
//! exactly `gzip` or `deflate` (spaces around it ignored) wins; anything else is
//! identity. So `deflate, gzip` is deflate; `GZIP`, `*`, `x-gzip` and entries carrying
//! parameters (`gzip;q=1`, `gzip;q=0`) are never matched. `deflate` is the zlib format,
//! as in HTTP.
//!
//! Two gzip levels: [`KEPT_LEVEL`] for answers the response cache keeps (compressed once,
//! sent many times: size first) and [`FRESH_LEVEL`] for everything made for one request
//! (a dashboard refreshed at now: latency first). BENCHMARKS.md ("gzip level") has the
//! measurement behind them.

use std::borrow::Cow;
use std::io::{Read, Write};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

use crate::error::Error;

/// The level of an answer the response cache keeps with its gzip form (1 fastest, 9
/// smallest). Measured on ~200 KB query_range answers: within 2–6% of level 6's size
/// (and 5–10% of Prometheus' own gzip) at well under half its CPU time, and 25–35%
/// smaller than level 1; paid once per kept answer.
pub const KEPT_LEVEL: u32 = 4;

/// The level of a body made for one request (an answer at the live edge, an error): on
/// the same ~200 KB answers level 1 takes about 1.4 ms where level 4 takes about 4, and
/// a refreshed panel waits for it, so speed wins over the 25–35% of size.
pub const FRESH_LEVEL: u32 = 1;

/// A content coding the frontend writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), as HTTP defines it.
    Deflate,
}

impl Coding {
    /// The `Content-Encoding` value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        })
    }

    /// `data` compressed with this coding at [`FRESH_LEVEL`].
    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.compress_at(data, FRESH_LEVEL)
    }

    /// `data` compressed with this coding at `level` (0–9).
    pub fn compress_at(self, data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
        let level = flate2::Compression::new(level.min(9));
        let out = Vec::with_capacity(data.len() / 4 + 64);
        match self {
            Coding::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, level);
                enc.write_all(data)?;
                enc.finish()
            }
            Coding::Deflate => {
                let mut enc = flate2::write::ZlibEncoder::new(out, level);
                enc.write_all(data)?;
                enc.finish()
            }
        }
    }
}

/// The coding a client with these request headers gets, as Prometheus chooses it (see
/// the module docs); `None`: identity.
pub fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    negotiate_value(crate::headers::first(headers, &header::ACCEPT_ENCODING)?)
}

/// [`negotiate`] for the value of the client's first `Accept-Encoding` header.
pub fn negotiate_value(accept_encoding: &HeaderValue) -> Option<Coding> {
    let value = accept_encoding.to_str().ok()?;
    value.split(',').find_map(|entry| match entry.trim() {
        "gzip" => Some(Coding::Gzip),
        "deflate" => Some(Coding::Deflate),
        _ => None,
    })
}

/// Decodes a body by its `Content-Encoding` (`gzip`, `deflate`, identity) within
/// `limit` decoded bytes. Any other coding is an invalid response (the frontend only
/// asks for these).
pub fn decode(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Error> {
    let Some(coding) = coding_of(headers)? else {
        return Ok(body);
    };
    let mut out = Vec::with_capacity((body.len() * 8).min(limit));
    decoder(coding, &body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadResponse(format!("undecodable {coding:?} body: {e}")))?;
    if out.len() > limit {
        return Err(Error::ResponseTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// At most the first `limit` bytes of a body, decoded by its `Content-Encoding`: for
/// reading a querier's error answer (its type, its message), never for passing it on.
/// A body that does not decode is returned as it came.
pub fn decoded_prefix<'a>(headers: &HeaderMap, body: &'a [u8], limit: usize) -> Cow<'a, [u8]> {
    let Ok(Some(coding)) = coding_of(headers) else {
        return Cow::Borrowed(body);
    };
    let mut out = Vec::new();
    match decoder(coding, body)
        .take(limit as u64)
        .read_to_end(&mut out)
    {
        Ok(_) => Cow::Owned(out),
        Err(_) => Cow::Borrowed(body),
    }
}

/// The coding a body carries; `None` for identity.
fn coding_of(headers: &HeaderMap) -> Result<Option<Coding>, Error> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"identity") => Ok(None),
        Some(enc) if enc.eq_ignore_ascii_case(b"gzip") => Ok(Some(Coding::Gzip)),
        Some(enc) if enc.eq_ignore_ascii_case(b"deflate") => Ok(Some(Coding::Deflate)),
        Some(enc) => Err(Error::BadResponse(format!(
            "unsupported Content-Encoding {}",
            crate::quote::go_quote(enc)
        ))),
    }
}

fn decoder(coding: Coding, body: &[u8]) -> Box<dyn Read + '_> {
    match coding {
        Coding::Gzip => Box::new(flate2::read::GzDecoder::new(body)),
        Coding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
    }
}

#[cfg(test)]
#[path = "encoding_tests.rs"]
mod tests;
