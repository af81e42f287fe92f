//! The own HTTP/1.1 server loop for plain connections: reads requests with httparse,
//! calls the handler in the connection's task, writes the answer, and keeps the
//! connection for the next request.
//!
//! Why not hyper's server for every request: measured with callgrind, hyper's HTTP/1
//! dispatcher (its buffered IO, state machine, request and answer encoding) cost about as
//! many instructions per forwarded request as all of nginx does (BENCHMARKS.md,
//! "Passthrough: an own HTTP/1.1 server loop"). This loop does the common case directly:
//! an HTTP/1.1 request in origin form (`GET /path HTTP/1.1`), without a body or with a
//! `Content-Length` one.
//!
//! Everything else is handed to hyper, with every byte read so far ([`Ended::HandOff`]),
//! and hyper serves the connection from then on, as it served all of them before:
//! - another protocol version (HTTP/1.0, the HTTP/2 preface of an h2c client);
//! - `HEAD`, `CONNECT` and methods other than `GET`, `POST`, `PUT`, `DELETE`,
//!   `OPTIONS` and `PATCH`;
//! - a request target not in origin form, or one `http::Uri` refuses (too long);
//! - `Transfer-Encoding`, `Expect`, `Upgrade`, `Connection: upgrade`, a bad or repeated
//!   differing `Content-Length`, or a body larger than `server.max_body_bytes`;
//! - a head that does not parse (hyper answers 400), with more than 64 fields, or not
//!   complete within the head limit (hyper answers 431).
//!
//! What the loop keeps of hyper's behaviour:
//! - the header-read timeout runs from the moment the connection waits for a request
//!   (idle keep-alive time included) until its head is complete, and closes the
//!   connection when it passes;
//! - a client that closes its connection while its request is answered ends the request
//!   (its handler is dropped, which cancels the querier request);
//! - an answer's framing: no body for `1xx`, `204` and `304`; `content-length: 0` for an
//!   empty body; the handler's `Content-Length` when it set one, else the body's exact
//!   size, else `transfer-encoding: chunked`; a `date` header when there is none; the
//!   status line's reason phrase from [`hyper::ext::ReasonPhrase`] when set;
//! - a body that fails, or ends short of its `Content-Length`, closes the connection;
//! - at shutdown, an idle connection closes at once, and one answering a request closes
//!   after its answer (which says `connection: close`).
//!
//! The loop does not write `Transfer-Encoding` or `Trailer` headers a handler set (none
//! does: the querier's are hop-by-hop and removed) and sends no trailers.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Body, ReqBody};
use crate::headers::push_decimal;

/// Most header fields in a request head the loop reads itself; a head with more goes to
/// hyper (which takes up to 100).
const MAX_HEADERS: usize = 64;
/// Bytes the read buffer has room for before each read.
const READ_SIZE: usize = 8192;
/// A buffer larger than this is let go between requests, so that an idle connection
/// holds little memory after a large request or answer.
const IDLE_BUFFER: usize = 64 * 1024;
/// A body chunk up to this size is copied behind what is waiting to be written (the head,
/// say) and written with it; a larger one is written from where it is.
const COPY_LIMIT: usize = 16 * 1024;

/// The limits of the loop, from the server's config.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// `server.header_read_timeout`.
    pub(super) header_read_timeout: Duration,
    /// The most bytes of an incomplete head read before the connection goes to hyper.
    pub(super) max_head_bytes: usize,
    /// `server.max_body_bytes`: a larger declared body goes to hyper (whose handler
    /// answers 413 without reading it).
    pub(super) max_body_bytes: usize,
}

/// How the loop left a connection.
pub(super) enum Ended<IO> {
    /// Over: closed by the client, timed out, failed, or shut down.
    Closed,
    /// For hyper to serve: the connection with the bytes read and not consumed yet.
    HandOff(Rewind<IO>),
}

/// A connection whose first bytes come from a buffer: the bytes the loop read but did
/// not use, given to hyper before anything more is read from the socket.
pub(super) struct Rewind<IO> {
    prefix: Bytes,
    io: IO,
}

/// Serves requests on `io` until the connection ends or needs hyper.
///
/// `closing` becomes true when the server shuts down.
pub(super) async fn serve<IO, H, F>(
    io: IO,
    options: &Options,
    closing: &tokio::sync::watch::Sender<bool>,
    mut handle: H,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<ReqBody>) -> F,
    F: Future<Output = Response<Body>>,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        out: Vec::new(),
        timer: None,
    };
    let mut watch = closing.subscribe();
    let mut shutdown = pin!(watch.wait_for(|closing| *closing));
    let mut shutting_down = false;
    loop {
        let (req, mut close) = match conn
            .next_request(options, shutdown.as_mut(), &mut shutting_down)
            .await
        {
            Next::Request(req, close) => (req, close),
            Next::Closed => return Ended::Closed,
            Next::HandOff => return Ended::HandOff(conn.rewind()),
        };
        // Pinned where it is made: the handler's future is large, and moving it costs.
        let handler = pin!(handle(req));
        let Some(resp) = conn.answer(handler).await else {
            return Ended::Closed;
        };
        close |= *closing.borrow();
        if !conn.respond(resp, close).await || close {
            return Ended::Closed;
        }
        conn.trim();
    }
}

/// What waiting for a request gave.
// The request is moved once, to its handler: boxing it would cost an allocation per
// request.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request, and whether it asked to close the connection after its answer.
    Request(Request<ReqBody>, bool),
    Closed,
    HandOff,
}

/// What parsing the buffer gave.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(Request<ReqBody>, bool),
    /// The head is not complete.
    Partial,
    /// The head is complete and its body is not: the buffer needs this many bytes.
    Body(usize),
    HandOff,
}

struct Conn<IO> {
    io: IO,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// Bytes to write.
    out: Vec<u8>,
    /// The header-read timer: made at the first wait, moved for every wait after.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    /// Reads until a request is complete (or the connection ends, or goes to hyper).
    async fn next_request(
        &mut self,
        options: &Options,
        mut shutdown: Pin<&mut impl Future>,
        shutting_down: &mut bool,
    ) -> Next {
        let deadline = Instant::now() + options.header_read_timeout;
        let mut armed = false;
        loop {
            // The head's timer stops once the head is complete: the body has no timer,
            // as with hyper.
            let mut timed = true;
            if !self.buf.is_empty() {
                match parse(&mut self.buf, options) {
                    Parsed::Request(req, close) => return Next::Request(req, close),
                    Parsed::HandOff => return Next::HandOff,
                    Parsed::Partial if self.buf.len() >= options.max_head_bytes => {
                        return Next::HandOff;
                    }
                    Parsed::Partial => {}
                    Parsed::Body(need) => {
                        self.buf.reserve(need - self.buf.len());
                        timed = false;
                    }
                }
            } else if *shutting_down {
                return Next::Closed;
            }
            let idle = self.buf.is_empty();
            let read = poll_fn(|cx| {
                if let Poll::Ready(read) = poll_read(&mut self.io, &mut self.buf, cx) {
                    return Poll::Ready(Some(read));
                }
                if idle && !*shutting_down && shutdown.as_mut().poll(cx).is_ready() {
                    *shutting_down = true;
                    return Poll::Ready(None);
                }
                if timed {
                    let timer = match &mut self.timer {
                        Some(timer) if armed => timer,
                        Some(timer) => {
                            timer.as_mut().reset(deadline);
                            armed = true;
                            timer
                        }
                        None => {
                            armed = true;
                            self.timer
                                .insert(Box::pin(tokio::time::sleep_until(deadline)))
                        }
                    };
                    if timer.as_mut().poll(cx).is_ready() {
                        tracing::debug!("no complete request head within the header-read timeout");
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await;
            match read {
                Some(Ok(0)) | Some(Err(_)) | None => return Next::Closed,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Runs a request's handler while watching the connection: `None` when the client
    /// closed it first (the handler is dropped).
    async fn answer<F: Future<Output = Response<Body>>>(
        &mut self,
        mut handler: Pin<&mut F>,
    ) -> Option<Response<Body>> {
        poll_fn(|cx| {
            if let Poll::Ready(resp) = handler.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            if self.client_gone(cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Reads what the client sent meanwhile (a next request, kept): true when it closed
    /// the connection or reading failed. Stops reading when the buffer holds
    /// [`IDLE_BUFFER`] bytes (as hyper's server stops at its buffer's limit).
    fn client_gone(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.buf.len() >= IDLE_BUFFER {
                return false;
            }
            match poll_read(&mut self.io, &mut self.buf, cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return false,
            }
        }
    }

    /// Writes an answer: true when the connection can carry another request.
    async fn respond(&mut self, resp: Response<Body>, close: bool) -> bool {
        let (parts, mut body) = resp.into_parts();
        self.out.clear();
        let (mut framing, close) = encode_head(&parts, &body, close, &mut self.out);
        let mut overlong = false;
        if matches!(framing, Framing::Length(0)) {
            drop(body);
            return self.flush().await.is_ok() && !close;
        }
        loop {
            let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                // Nothing more yet: what is written so far goes out meanwhile.
                Poll::Pending => {
                    if self.flush().await.is_err() {
                        return false;
                    }
                    let waited = poll_fn(|cx| {
                        if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                            return Poll::Ready(Some(frame));
                        }
                        if self.client_gone(cx) {
                            return Poll::Ready(None);
                        }
                        Poll::Pending
                    })
                    .await;
                    match waited {
                        Some(frame) => frame,
                        None => return false,
                    }
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "answer body failed: connection closed");
                    let _ = self.flush().await;
                    return false;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    // Trailers and empty chunks: nothing to send.
                    _ => continue,
                },
            };
            let data = match &mut framing {
                Framing::Length(left) => {
                    let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    // More than the declared length: the rest is not sent, and the
                    // connection closes after what was.
                    overlong |= take < data.len();
                    *left -= take as u64;
                    data.slice(..take)
                }
                Framing::Chunked => {
                    push_hex(&mut self.out, data.len());
                    self.out.extend_from_slice(b"\r\n");
                    data
                }
            };
            if data.len() <= COPY_LIMIT {
                self.out.extend_from_slice(&data);
            } else if write_both(&mut self.io, &self.out, &data).await.is_err() {
                return false;
            } else {
                self.out.clear();
            }
            if matches!(framing, Framing::Chunked) {
                self.out.extend_from_slice(b"\r\n");
            }
        }
        let complete = match framing {
            Framing::Length(left) => left == 0 && !overlong,
            Framing::Chunked => {
                self.out.extend_from_slice(b"0\r\n\r\n");
                true
            }
        };
        self.flush().await.is_ok() && complete && !close
    }

    /// Writes what is waiting in `out`.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await
    }

    /// Lets go of buffers grown large by the last request.
    fn trim(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER {
            self.buf = BytesMut::new();
        }
        if self.out.capacity() > IDLE_BUFFER {
            self.out = Vec::new();
        }
    }

    fn rewind(self) -> Rewind<IO> {
        Rewind {
            prefix: self.buf.freeze(),
            io: self.io,
        }
    }
}

/// Reads into the buffer's spare room (made at least [`READ_SIZE`] first).
fn poll_read<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SIZE / 2 {
        buf.reserve(READ_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Parses a request at the start of `buf`; a complete one (head and body) is taken out
/// of it. Anything the loop leaves to hyper is [`Parsed::HandOff`], with `buf` as it was.
fn parse(buf: &mut BytesMut, options: &Options) -> Parsed {
    // Left uninitialized: the parser writes the fields it finds.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut []);
    let head_len = match head.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOff,
    };
    if head.version != Some(1) {
        return Parsed::HandOff;
    }
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        Some("OPTIONS") => Method::OPTIONS,
        Some("PUT") => Method::PUT,
        Some("DELETE") => Method::DELETE,
        Some("PATCH") => Method::PATCH,
        _ => return Parsed::HandOff,
    };
    let Some(target) = head.path.filter(|p| p.starts_with('/')) else {
        return Parsed::HandOff;
    };
    let start = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - start;
    let target = (offset(target.as_bytes()), target.len());
    // Where each field's name and value are in the head.
    let mut fields = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let mut length: Option<u64> = None;
    let mut close = false;
    for (field, at) in head.headers.iter().zip(fields.iter_mut()) {
        let name = field.name.as_bytes();
        *at = (
            offset(name),
            name.len(),
            offset(field.value),
            field.value.len(),
        );
        if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_decimal(field.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(before)) if n == before => {}
                _ => return Parsed::HandOff,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::HandOff;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::HandOff;
        }
    }
    let count = head.headers.len();
    let length = length.unwrap_or(0);
    if length > options.max_body_bytes as u64 {
        return Parsed::HandOff;
    }
    // Fits: at most `max_body_bytes` past the head.
    let total = head_len + length as usize;
    if buf.len() < total {
        return Parsed::Body(total);
    }
    let mut whole = buf.split_to(total);
    let body = whole.split_off(head_len).freeze();
    let head = whole.freeze();
    match build(&head, method, target, &fields[..count], body.clone()) {
        Some(req) => Parsed::Request(req, close),
        None => {
            // Put back what was taken, for hyper to read.
            let mut again = BytesMut::with_capacity(head.len() + body.len() + buf.len());
            again.extend_from_slice(&head);
            again.extend_from_slice(&body);
            again.extend_from_slice(buf);
            *buf = again;
            Parsed::HandOff
        }
    }
}

/// The request whose head is `head`, its target and fields at the given offsets; `None`
/// when its target or a field is not one `http` takes.
fn build(
    head: &Bytes,
    method: Method,
    (at, len): (usize, usize),
    fields: &[(usize, usize, usize, usize)],
    body: Bytes,
) -> Option<Request<ReqBody>> {
    let uri = Uri::from_maybe_shared(head.slice(at..at + len)).ok()?;
    // Room for the headers the frontend adds (`X-Request-Id`, a user's tenant).
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    for &(name_at, name_len, value_at, value_len) in fields {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len]).ok()?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(ReqBody::Read(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// A `Content-Length` value: decimal digits only.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// How an answer's body is sent.
enum Framing {
    /// This many bytes are left to send.
    Length(u64),
    Chunked,
}

/// Writes the status line and header fields of an answer into `out`; returns how its
/// body is framed and whether the connection closes after it.
fn encode_head(
    parts: &http::response::Parts,
    body: &Body,
    mut close: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    let status = parts.status;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(reason) => out.extend_from_slice(reason.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let empty = bodiless || body.is_end_stream();
    let mut declared: Option<u64> = None;
    let mut dated = false;
    let mut connection = false;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            // The body's own length decides an empty body; a bad or second differing
            // value is dropped (the body's size or chunks frame it instead).
            if empty || declared.is_some() {
                continue;
            }
            match parse_decimal(value.as_bytes()) {
                Some(n) => declared = Some(n),
                None => continue,
            }
        } else if *name == header::TRANSFER_ENCODING || *name == header::TRAILER {
            continue;
        } else if *name == header::CONNECTION {
            connection = true;
            close |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if *name == header::DATE {
            dated = true;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = if bodiless {
        Framing::Length(0)
    } else if empty {
        out.extend_from_slice(b"content-length: 0\r\n");
        Framing::Length(0)
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if close && !connection {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date::push(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_hex(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes `first` and then `second`, in as few writes as the socket takes.
async fn write_both<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    first: &[u8],
    second: &[u8],
) -> io::Result<()> {
    let mut slices = [IoSlice::new(first), IoSlice::new(second)];
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let given = self.prefix.split_to(n);
            buf.put_slice(&given);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The `date` header's value (IMF-fixdate), made once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    const LENGTH: usize = 29;

    thread_local! {
        static CACHED: RefCell<(u64, [u8; LENGTH])> = const { RefCell::new((0, *b"Thu, 01 Jan 1970 00:00:00 GMT")) };
    }

    /// Appends the current date.
    pub(super) fn push(out: &mut Vec<u8>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != now {
                let text = i64::try_from(now)
                    .ok()
                    .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                    .unwrap_or_default()
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string();
                if text.len() == LENGTH {
                    cached.1.copy_from_slice(text.as_bytes());
                    cached.0 = now;
                }
            }
            out.extend_from_slice(&cached.1);
        });
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
