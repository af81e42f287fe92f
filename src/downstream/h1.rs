//! One HTTP/1.1 exchange with a plain `http://` querier, run in the task of the request
//! that needs it: the request written, the answer's head parsed (with httparse, hyper's
//! own parser), the answer's body read as its reader polls it.
//!
//! Why not hyper's client connection, which the pool used before: it runs each
//! connection in a task of its own, and the request, the answer's head and every body
//! chunk cross between that task and the request's through channels, with a wake-up each
//! way. For a small passthrough answer that was a quarter of the frontend's instructions
//! per request (BENCHMARKS.md, "Passthrough: the querier exchange in the request's
//! task"). Here the request's task writes and reads the socket itself, as nginx's event
//! loop does.
//!
//! What goes out is what hyper's client wrote: `METHOD target HTTP/1.1`, the headers as
//! given (names in lower case), and `content-length` when the body is not empty, the
//! body right after the head (one write for a body up to 64 KiB).
//!
//! How an answer is read (RFC 9112, section 6):
//! - `1xx` heads are skipped (`101 Switching Protocols` is an error: no upgrade is ever
//!   asked for);
//! - the answer to a `HEAD`, a `204` and a `304` has no body;
//! - `Transfer-Encoding` ending in `chunked`: chunked (chunk extensions and trailer
//!   fields are read and dropped, as hyper's server would not send them on anyway);
//!   any other `Transfer-Encoding`: the body lasts until the querier closes;
//! - otherwise `Content-Length` (repeated equal values are one; differing or malformed
//!   ones are an error);
//! - otherwise the body lasts until the querier closes.
//!
//! A connection is used again only after an HTTP/1.1 answer without `Connection: close`
//! whose body had a length or chunks and was read to its end with no byte after it.
//! Limits are hyper's client's: at most 100 header fields, a head of at most 417,792
//! bytes (8 KiB + 100 × 4 KiB).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::headers::{ForwardHeaders, always_hop_by_hop, connection_named, push_decimal};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most header fields in an answer's head.
const MAX_HEADERS: usize = 100;
/// Largest answer head, in bytes.
const MAX_HEAD_BYTES: usize = 8192 + 4096 * MAX_HEADERS;
/// Bytes asked for by the first read on a connection; doubled while reads fill what was
/// offered, up to [`MAX_READ`].
const FIRST_READ: usize = 8192;
/// Largest read.
const MAX_READ: usize = 256 * 1024;
/// An idle connection keeps buffers up to this size; larger ones (after a large answer
/// or request) are let go, so that idle connections hold little memory.
const IDLE_BUFFER: usize = 16 * 1024;
/// A request body up to this size is copied behind the head and written with it.
const MAX_INLINE_BODY: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) and longest trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// A request as the own client writes it, borrowed from whoever holds its parts: no
/// `http::Request`, header map or parsed URI is built for it.
pub(super) struct Outgoing<'a> {
    pub(super) method: &'a Method,
    /// The endpoint's path prefix (`""` or `/prefix`), written before `path`.
    pub(super) prefix: &'a str,
    /// The path and query string (origin-form: starts with `/`).
    pub(super) path: &'a str,
    /// Headers, written in order, except hop-by-hop ones (and those `Connection`
    /// names), `Content-Length` (written from the body) and, when `host` is given,
    /// `Host`.
    pub(super) headers: &'a HeaderMap,
    /// For a passthrough: the allow-list that picks which of `headers` are written
    /// ([`ForwardHeaders::passes`]); `None` writes them all.
    pub(super) allow: Option<&'a ForwardHeaders>,
    /// The `Host` header, written after the others.
    pub(super) host: Option<&'a HeaderValue>,
    pub(super) body: &'a Bytes,
}

impl<'a> Outgoing<'a> {
    /// The parts of `req` (origin-form URI, `Host` among its headers).
    pub(super) fn of(req: &'a Request<Bytes>) -> Outgoing<'a> {
        Outgoing {
            method: req.method(),
            prefix: "",
            path: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
            headers: req.headers(),
            allow: None,
            host: None,
            body: req.body(),
        }
    }
}

/// An open connection to the querier, between exchanges or during one.
pub(super) struct Conn {
    io: TcpStream,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// The request being written (kept to reuse its allocation).
    out: Vec<u8>,
    /// How much the next read offers room for.
    read_size: usize,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireError {
    /// The querier closed the connection before any byte of an answer.
    #[error("connection closed before message completed")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("connection error")]
    Io(#[source] io::Error),
    /// The answer's head does not parse.
    #[error("invalid HTTP answer head")]
    Parse(#[source] httparse::Error),
    /// The answer breaks HTTP/1.1 framing or a limit.
    #[error("invalid HTTP answer: {0}")]
    Invalid(&'static str),
}

/// How far a failed exchange got, which decides whether the request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Not a byte of the request was written: the querier never saw it.
    Unsent,
    /// The request was written, and the connection ended (closed or reset) before any
    /// byte of an answer.
    Unanswered,
    /// Anything else.
    Failed,
}

/// A failed exchange.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) stage: Stage,
    pub(super) error: WireError,
}

/// A failure to read an answer's body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading the socket failed.
    #[error("error reading a body from connection")]
    Io(#[source] io::Error),
    /// The querier closed the connection before the body's end.
    #[error("connection closed before the end of the answer's body")]
    Incomplete,
    /// The chunked framing does not parse.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
}

/// How an answer's body is delimited, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of the framing.
    Chunked(Chunk),
    /// Until the querier closes the connection.
    UntilClose,
    /// Read to its end (or failed).
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// Among the trailer fields, this many bytes of them read.
    Trailers(usize),
}

/// What one step of the chunked decoder found.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The end of the body.
    End,
    /// Nothing until more bytes arrive.
    More,
}

/// The body of an answer, read from its connection as it is polled.
pub(super) struct Reader {
    conn: Conn,
    framing: Framing,
    /// Whether the connection may carry another exchange once the body was read whole.
    keep_alive: bool,
}

impl Conn {
    /// A connection just opened.
    pub(super) fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: FIRST_READ,
        }
    }

    /// Whether this idle connection must not be used: the querier closed it, reset it or
    /// sent bytes nobody asked for. Costs no system call unless the socket was reported
    /// readable since the last read.
    pub(super) fn is_closed(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Readies the connection to wait in the pool: large buffers let go, the read size
    /// back to its start (the next answer may be small).
    fn idle(&mut self) {
        if self.buf.capacity() > IDLE_BUFFER {
            self.buf = BytesMut::new();
        }
        if self.out.capacity() > IDLE_BUFFER {
            self.out = Vec::new();
        }
        self.read_size = FIRST_READ;
    }

    /// Writes `req` and reads the answer's head. The answer's body is read from the
    /// returned [`Reader`].
    pub(super) async fn exchange(
        mut self,
        req: &Outgoing<'_>,
    ) -> Result<Response<Reader>, Failure> {
        self.write_request(req).await?;
        let head_only = *req.method == Method::HEAD;
        let (parts, framing, keep_alive) = self.read_head(head_only).await?;
        let reader = Reader {
            conn: self,
            framing,
            keep_alive,
        };
        Ok(Response::from_parts(parts, reader))
    }

    async fn write_request(&mut self, req: &Outgoing<'_>) -> Result<(), Failure> {
        let body = req.body;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        encode_head(req, &mut out);
        let inline = body.len() <= MAX_INLINE_BODY;
        if inline {
            out.extend_from_slice(body);
        }
        let mut written = 0;
        let mut result = write_counted(&mut self.io, &out, &mut written).await;
        self.out = out;
        if result.is_ok() && !inline {
            result = self.io.write_all(body).await;
        }
        result.map_err(|e| Failure {
            stage: if written == 0 {
                Stage::Unsent
            } else if is_reset(&e) {
                Stage::Unanswered
            } else {
                Stage::Failed
            },
            error: WireError::Io(e),
        })
    }

    /// Reads heads until a final one (skipping `1xx`) and works out its body's framing.
    async fn read_head(
        &mut self,
        head_only: bool,
    ) -> Result<(http::response::Parts, Framing, bool), Failure> {
        let failed = |error| Failure {
            stage: Stage::Failed,
            error,
        };
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, head_only).map_err(failed)? {
                    Some(Head::Final(parts, framing, keep_alive)) => {
                        return Ok((parts, framing, keep_alive));
                    }
                    Some(Head::Informational) => continue,
                    None => {}
                }
                if self.buf.len() >= MAX_HEAD_BYTES {
                    return Err(failed(WireError::Invalid("answer head too large")));
                }
            }
            let unanswered = !received && self.buf.is_empty();
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if unanswered => {
                    return Err(Failure {
                        stage: Stage::Unanswered,
                        error: WireError::Closed,
                    });
                }
                Ok(0) => {
                    return Err(failed(WireError::Invalid(
                        "connection closed in the middle of an answer head",
                    )));
                }
                Ok(_) => received = true,
                Err(e) => {
                    let stage = if unanswered && is_reset(&e) {
                        Stage::Unanswered
                    } else {
                        Stage::Failed
                    };
                    return Err(Failure {
                        stage,
                        error: WireError::Io(e),
                    });
                }
            }
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at the end of the stream.
    ///
    /// A read offers at least half of the current read size: small answers use up one
    /// buffer over several exchanges, a large one gets reads as large as the socket fills.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))?;
        if n == room {
            // The read filled all it was offered: offer more next time.
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }
}

/// Writes all of `data`, counting what was written.
async fn write_counted(io: &mut TcpStream, data: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < data.len() {
        match io.write(&data[*written..]).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether an I/O error means the querier closed or reset the connection.
fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The request line and headers of `req`, and `content-length` for a non-empty body.
fn encode_head(req: &Outgoing<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.prefix.as_bytes());
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Usually there is no hop-by-hop header at all (the allow-list keeps them out).
    let hop_by_hop = req.headers.keys().any(always_hop_by_hop);
    let named = if hop_by_hop {
        connection_named(req.headers)
    } else {
        Vec::new()
    };
    let mut content_type = false;
    for (name, value) in req.headers {
        if name == header::CONTENT_LENGTH
            || (req.host.is_some() && name == header::HOST)
            || (hop_by_hop && (always_hop_by_hop(name) || named.contains(name)))
        {
            continue;
        }
        if let Some(allow) = req.allow {
            if !allow.passes(name) {
                continue;
            }
            // A passthrough sends the body's first type only.
            if name == header::CONTENT_TYPE {
                if content_type {
                    continue;
                }
                content_type = true;
            }
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(host) = req.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let len = req.body.len();
    if len > 0 {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, len as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed answer head.
enum Head {
    /// A `1xx` head, consumed.
    Informational,
    /// The answer: its head, its body's framing, whether the connection may be reused.
    Final(http::response::Parts, Framing, bool),
}

/// Parses the head at the start of `buf` and consumes it; `None` when it is not whole
/// yet. `head_only`: the request was a `HEAD`.
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, WireError> {
    /// Where a header field's name and value are in the head.
    #[derive(Clone, Copy, Default)]
    struct Field {
        name: (usize, usize),
        value: (usize, usize),
    }
    /// Heads with up to this many fields keep their offsets on the stack.
    const ON_STACK: usize = 32;
    // Left uninitialised (as hyper does): filling 100 empty fields cost more than
    // parsing a small head.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::Invalid("more than 100 header fields"));
        }
        Err(e) => return Err(WireError::Parse(e)),
    };
    let code = parsed.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Invalid("status code out of range"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets, so that the head can be split off the buffer and its values shared.
    // httparse's slices lie inside the head; checked all the same (an empty one is
    // taken as empty wherever it points), so that no answer can make a slice panic.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        if s.is_empty() {
            return Ok((0, 0));
        }
        (s.as_ptr() as usize)
            .checked_sub(base)
            .map(|start| (start, start + s.len()))
            .filter(|&(_, end)| end <= len)
            .ok_or(WireError::Invalid("header outside the answer head"))
    };
    let count = parsed.headers.len();
    let field = |h: &httparse::Header<'_>| {
        Ok(Field {
            name: span(h.name.as_bytes())?,
            value: span(h.value)?,
        })
    };
    let mut on_stack = [Field::default(); ON_STACK];
    let on_heap: Vec<Field>;
    let fields: &[Field] = if count <= ON_STACK {
        for (slot, h) in on_stack.iter_mut().zip(parsed.headers.iter()) {
            *slot = field(h)?;
        }
        &on_stack[..count]
    } else {
        on_heap = parsed
            .headers
            .iter()
            .map(field)
            .collect::<Result<_, WireError>>()?;
        &on_heap
    };
    let reason = match parsed.reason {
        Some(r) if !r.is_empty() && status.canonical_reason() != Some(r) => {
            Some(span(r.as_bytes())?)
        }
        _ => None,
    };
    let head = buf.split_to(len).freeze();
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(WireError::Invalid(
                "101 switching protocols, no upgrade was asked for",
            ));
        }
        return Ok(Some(Head::Informational));
    }
    // Room for the headers the frontend adds to an answer (request id, CORS) without
    // growing the map.
    let mut map = HeaderMap::with_capacity(count + 3);
    for field in fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| WireError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
            .map_err(|_| WireError::Invalid("invalid header value"))?;
        map.append(name, value);
    }
    let (framing, reusable, close) = framing(&map, version, status, head_only)?;
    let keep_alive = reusable && version == Version::HTTP_11 && !close;
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = map;
    if let Some((start, end)) = reason
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(&head[start..end])
    {
        resp.extensions_mut().insert(phrase);
    }
    let (parts, ()) = resp.into_parts();
    Ok(Some(Head::Final(parts, framing, keep_alive)))
}

/// The body's framing, whether the framing lets the connection be reused, and whether
/// the answer's `Connection` header holds `close`.
///
/// One pass over the answer's fields (a handful) instead of a hashed lookup per framing
/// header. A `Transfer-Encoding` decides the framing whatever the `Content-Length`
/// says (RFC 9112 §6.3), so the length's values are only checked without one.
fn framing(
    map: &HeaderMap,
    version: Version,
    status: StatusCode,
    head_only: bool,
) -> Result<(Framing, bool, bool), WireError> {
    let mut transfer_encoding = false;
    // The last non-empty coding of all `Transfer-Encoding` values.
    let mut last_coding: Option<&[u8]> = None;
    let mut length: Result<Option<u64>, WireError> = Ok(None);
    let mut has_length = false;
    let mut close = false;
    for (name, value) in map {
        if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            if let Some(t) = tokens(value).rfind(|t| !t.is_empty()) {
                last_coding = Some(t);
            }
        } else if name == header::CONTENT_LENGTH {
            has_length = true;
            if let Ok(found) = length {
                length = content_length_value(value, found);
            }
        } else if name == header::CONNECTION {
            close |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"));
        }
    }
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), true, close));
    }
    if transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(WireError::Invalid(
                "transfer-encoding in an HTTP/1.0 answer",
            ));
        }
        return Ok(match last_coding {
            // With a Content-Length as well, the connection is closed after the answer.
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => {
                (Framing::Chunked(Chunk::Size), !has_length, close)
            }
            _ => (Framing::UntilClose, false, close),
        });
    }
    match length? {
        Some(len) => Ok((Framing::Length(len), true, close)),
        None => Ok((Framing::UntilClose, false, close)),
    }
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &HeaderValue) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
}

/// `found` (the length of earlier `Content-Length` values) checked against one more
/// value: every value (comma-separated lists included) must be the same number.
fn content_length_value(value: &HeaderValue, found: Option<u64>) -> Result<Option<u64>, WireError> {
    let mut found = found;
    for part in tokens(value) {
        let n = parse_decimal(part).ok_or(WireError::Invalid("invalid content-length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(WireError::Invalid("differing content-length values"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Digits only, at most 19 of them.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

impl Chunk {
    /// Decodes what `buf` holds of a chunked body from this point, consuming it: at most
    /// one piece of data per call.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match *self {
                Chunk::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::More);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = left.min(buf.len() as u64);
                    *self = if take == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take)
                    };
                    // `take` is at most `buf.len()`, a usize.
                    let data = buf.split_to(take as usize).freeze();
                    return Ok(Decoded::Data(data));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let limit = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line) = take_line(buf, limit)? else {
                        return Ok(Decoded::More);
                    };
                    if line.is_empty() {
                        return Ok(Decoded::End);
                    }
                    *self = Chunk::Trailers(seen + line.len() + 2);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line off `buf` (without its CRLF); `None` until it is
/// whole. A line longer than `limit` is an error.
fn take_line(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, BodyError> {
    let Some(lf) = buf.iter().take(limit + 2).position(|&b| b == b'\n') else {
        if buf.len() > limit + 1 {
            return Err(BodyError::Chunked("chunk line too long"));
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(BodyError::Chunked("line not ended by CRLF"));
    }
    let line = buf.split_to(lf + 1).freeze();
    Ok(Some(line.slice(..lf - 1)))
}

/// The size on a chunk-size line: hex digits, then optional blanks and extensions.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::Chunked("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(BodyError::Chunked("invalid chunk size"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        (n << 4) | u64::from(v)
    });
    Ok(size)
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Whether the body has been read to its end.
    pub(super) fn is_end(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    /// What is known of the body's length.
    pub(super) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }

    /// The connection, for another exchange: only when the body was read to its end,
    /// the answer lets the connection be reused and nothing followed the answer.
    pub(super) fn into_conn(self) -> Option<Conn> {
        if !(self.is_end() && self.keep_alive && self.conn.buf.is_empty()) {
            return None;
        }
        let mut conn = self.conn;
        conn.idle();
        Some(conn)
    }

    /// The next piece of the body.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let buf = &mut self.conn.buf;
            let decoded = match &mut self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => Ok(Decoded::End),
                Framing::Length(left) if !buf.is_empty() => {
                    let take = (*left).min(buf.len() as u64);
                    *left -= take;
                    // `take` is at most `buf.len()`, a usize.
                    Ok(Decoded::Data(buf.split_to(take as usize).freeze()))
                }
                Framing::UntilClose if !buf.is_empty() => Ok(Decoded::Data(buf.split().freeze())),
                Framing::Length(_) | Framing::UntilClose => Ok(Decoded::More),
                Framing::Chunked(chunk) => chunk.decode(buf),
            };
            match decoded {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::End) => {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
            }
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(self.fail(BodyError::Incomplete)))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(BodyError::Io(e))))),
            }
        }
    }

    /// Ends the body after a failure: the connection is never reused.
    fn fail(&mut self, error: BodyError) -> BodyError {
        self.framing = Framing::Done;
        self.keep_alive = false;
        error
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
