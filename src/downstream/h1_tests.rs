//! The own HTTP/1.1 exchange: what it writes, how it reads heads and frames bodies
//! (RFC 9112, section 6), chunked decoding against bodies split every way, and whole
//! exchanges with a scripted server on loopback.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The parsed head of `text` (whole), its framing and whether it keeps the connection.
fn head(text: &str, head_only: bool) -> Result<(http::response::Parts, Framing, bool), WireError> {
    let mut buf = BytesMut::from(text.as_bytes());
    loop {
        match parse_head(&mut buf, head_only)? {
            Some(Head::Final(parts, framing, keep_alive)) => {
                return Ok((parts, framing, keep_alive));
            }
            Some(Head::Informational) => continue,
            None => panic!("head not whole: {text:?}"),
        }
    }
}

#[test]
fn requests_are_written_as_hyper_wrote_them() {
    let mut out = Vec::new();
    let get = Request::get("/api/v1/labels?match[]=up")
        .header("host", "prom:9090")
        .header("X-Scope-OrgID", "a")
        .body(Bytes::new())
        .expect("request");
    encode_head(&Outgoing::of(&get), &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "GET /api/v1/labels?match[]=up HTTP/1.1\r\nhost: prom:9090\r\nx-scope-orgid: a\r\n\r\n",
        "no content-length without a body"
    );
    out.clear();
    let post = Request::post("/api/v1/query")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from_static(b"query=up&time=1234567890"))
        .expect("request");
    encode_head(&Outgoing::of(&post), &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /api/v1/query HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 24\r\n\r\n"
    );
    for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
        let mut digits = Vec::new();
        push_decimal(&mut digits, n);
        assert_eq!(digits, n.to_string().into_bytes());
    }
}

#[test]
fn heads_are_parsed_with_their_headers_and_consumed() {
    let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nVary: a\r\nVary: b\r\nContent-Length: 2\r\n\r\nok";
    let mut buf = BytesMut::from(text.as_bytes());
    let Some(Head::Final(parts, framing, keep_alive)) =
        parse_head(&mut buf, false).expect("parses")
    else {
        panic!("a final head");
    };
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.version, Version::HTTP_11);
    assert_eq!(parts.headers["content-type"], "application/json");
    let vary: Vec<_> = parts.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["a", "b"], "repeated fields stay, in order");
    assert_eq!(framing, Framing::Length(2));
    assert!(keep_alive);
    assert_eq!(&buf[..], b"ok", "the head is consumed, the body left");
    assert!(parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none());

    // Not whole yet: nothing consumed.
    let mut part = BytesMut::from(&text.as_bytes()[..30]);
    assert!(parse_head(&mut part, false).expect("partial").is_none());
    assert_eq!(part.len(), 30);

    // A reason phrase of its own is kept, as hyper's client keeps it.
    let (parts, _, _) = head(
        "HTTP/1.1 503 Warming Up\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .expect("parses");
    let phrase = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .expect("phrase kept");
    assert_eq!(phrase.as_bytes(), b"Warming Up");
}

#[test]
fn informational_heads_are_skipped_and_101_refused() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
    );
    let mut skipped = 0;
    loop {
        match parse_head(&mut buf, false).expect("parses") {
            Some(Head::Informational) => skipped += 1,
            Some(Head::Final(parts, framing, _)) => {
                assert_eq!(parts.status, StatusCode::OK);
                assert_eq!(framing, Framing::Length(0));
                break;
            }
            None => panic!("whole"),
        }
    }
    assert_eq!(skipped, 2);
    assert!(buf.is_empty());
    let err = head(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
        false,
    )
    .expect_err("no upgrade asked");
    assert!(err.to_string().contains("101"), "{err}");
}

#[test]
fn bodies_are_framed_as_rfc_9112_says() {
    let cases: &[(&str, bool, Framing, bool)] = &[
        // (head, request was HEAD, framing, connection reusable)
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            false,
            Framing::Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            true,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            false,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            false,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Framing::Chunked(Chunk::Size),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            false,
            Framing::Chunked(Chunk::Size),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            false,
            Framing::UntilClose,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            false,
            Framing::Chunked(Chunk::Size),
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5, 5\r\n\r\n",
            false,
            Framing::Length(5),
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive, Close\r\n\r\n",
            false,
            Framing::Length(5),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
            false,
            Framing::Length(5),
            false,
        ),
        // The transfer coding decides; the length is not even read.
        (
            "HTTP/1.1 200 OK\r\ncontent-length: nonsense\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Framing::Chunked(Chunk::Size),
            false,
        ),
        // Codings listed over several fields, the last non-empty one counting.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\ntransfer-encoding: ,\r\n\r\n",
            false,
            Framing::Chunked(Chunk::Size),
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: nonsense\r\n\r\n",
            false,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\n",
            true,
            Framing::Length(0),
            false,
        ),
    ];
    for (text, head_only, framing, reusable) in cases {
        let (_, got, keep_alive) = head(text, *head_only).expect(text);
        assert_eq!((got, keep_alive), (*framing, *reusable), "{text:?}");
    }
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        assert!(head(bad, false).is_err(), "{bad:?} is refused");
    }
    // More fields than the parser keeps on the stack: every one of them arrives.
    let fields: String = (0..60).map(|i| format!("x-{i}: v{i}\r\n")).collect();
    let text = format!("HTTP/1.1 200 OK\r\n{fields}content-length: 1\r\n\r\n");
    let (parts, got, _) = head(&text, false).expect("60 fields");
    assert_eq!(got, Framing::Length(1));
    assert_eq!(parts.headers.len(), 61);
    assert_eq!(parts.headers["x-59"], "v59");
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let err = head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), false).expect_err("too many");
    assert!(err.to_string().contains("100 header fields"), "{err}");
}

/// `body` in chunks of the given sizes (cycled), each size line with an extension when
/// `ext`, then the last chunk, trailer fields when `trailers`, and the final CRLF.
fn chunked(body: &[u8], sizes: &[usize], ext: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        out.extend_from_slice(format!("{n:X}").as_bytes());
        if ext {
            out.extend_from_slice(b" ;name=\"va;lue\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"expires: never\r\nx-checksum: abc\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Feeds `wire` to a chunked decoder in pieces of the given sizes (cycled); returns the
/// body and what is left in the buffer after the end.
fn decode_in_pieces(wire: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
    let mut chunk = Chunk::Size;
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    loop {
        match chunk.decode(&mut buf)? {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::End => return Ok((body, buf.to_vec())),
            Decoded::More => {
                assert!(
                    fed < wire.len(),
                    "the decoder wants more than the whole body"
                );
                let n = pieces[i % pieces.len()].clamp(1, wire.len() - fed);
                i += 1;
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
            }
        }
    }
}

proptest! {
    #[test]
    fn chunked_bodies_decode_whole_however_they_arrive(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..6),
        pieces in proptest::collection::vec(1usize..300, 1..6),
        ext in any::<bool>(),
        trailers in any::<bool>(),
    ) {
        let mut wire = chunked(&body, &sizes, ext, trailers);
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (got, left) = decode_in_pieces(&wire, &pieces).expect("decodes");
        prop_assert_eq!(got, body);
        // Whatever followed the body (in the same piece) is left for the next answer.
        prop_assert!(b"HTTP/1.1 200 OK\r\n".starts_with(&left));
    }
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for bad in [
        &b"zz\r\nabc\r\n0\r\n\r\n"[..],
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"3 x\r\nabc\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"-1\r\n",
    ] {
        let got = decode_in_pieces(bad, &[1000]);
        assert!(
            got.is_err(),
            "{:?} gave {got:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut long = b"3;".to_vec();
    long.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE + 10));
    assert!(decode_in_pieces(&long, &[64]).is_err(), "endless size line");
    let mut trailers = b"0\r\n".to_vec();
    for _ in 0..2000 {
        trailers.extend_from_slice(b"x-trailer: value\r\n");
    }
    assert!(
        decode_in_pieces(&trailers, &[512]).is_err(),
        "endless trailers"
    );
}

/// A loopback server that reads one request head (and `body_len` body bytes), then
/// writes `answer` and closes the connection when `close`. Returns the connection the
/// client made and the request the server read.
async fn exchange_with(
    answer: &'static [u8],
    close: bool,
    req: Request<Bytes>,
) -> (
    Result<http::Response<Reader>, Failure>,
    tokio::task::JoinHandle<Vec<u8>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        stream.write_all(answer).await.expect("write");
        if close {
            drop(stream);
        } else {
            // Keep the connection open until the client is done.
            let _ = stream.read(&mut buf).await;
        }
        seen
    });
    let io = tokio::net::TcpStream::connect(addr).await.expect("connect");
    (Conn::new(io).exchange(&Outgoing::of(&req)).await, server)
}

fn get(path: &str) -> Request<Bytes> {
    Request::get(path)
        .header("host", "querier")
        .body(Bytes::new())
        .expect("request")
}

async fn read_all(reader: Reader) -> (Result<Bytes, BodyError>, Option<Conn>) {
    struct Wrap(Option<Reader>);
    impl http_body::Body for Wrap {
        type Data = Bytes;
        type Error = BodyError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            match &mut self.0 {
                Some(r) => r.poll_frame(cx),
                None => Poll::Ready(None),
            }
        }
    }
    let mut wrap = Wrap(Some(reader));
    let mut out = Vec::new();
    while let Some(frame) = wrap.frame().await {
        match frame {
            Ok(frame) => out.extend_from_slice(&frame.into_data().expect("data")),
            Err(e) => return (Err(e), None),
        }
    }
    let conn = wrap.0.take().and_then(Reader::into_conn);
    (Ok(Bytes::from(out)), conn)
}

#[tokio::test]
async fn a_whole_exchange_reads_the_answer_and_keeps_the_connection() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (resp, server) = exchange_with(answer, false, get("/x?y=1")).await;
    let resp = resp.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let (body, conn) = read_all(resp.into_body()).await;
    assert_eq!(&body.expect("body")[..], b"hello world");
    assert!(
        conn.is_some(),
        "a chunked answer read whole keeps its connection"
    );
    drop(conn);
    let request = server.await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&request),
        "GET /x?y=1 HTTP/1.1\r\nhost: querier\r\n\r\n"
    );
}

#[tokio::test]
async fn a_body_until_close_is_read_to_the_end_and_the_connection_not_kept() {
    let (resp, _server) = exchange_with(b"HTTP/1.1 200 OK\r\n\r\nall of it", true, get("/")).await;
    let (body, conn) = read_all(resp.expect("answer").into_body()).await;
    assert_eq!(&body.expect("body")[..], b"all of it");
    assert!(conn.is_none());
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let (resp, _server) = exchange_with(
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        true,
        get("/"),
    )
    .await;
    let (body, conn) = read_all(resp.expect("answer").into_body()).await;
    assert!(matches!(body, Err(BodyError::Incomplete)), "{body:?}");
    assert!(conn.is_none());
    let (resp, _server) = exchange_with(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        true,
        get("/"),
    )
    .await;
    let (body, _) = read_all(resp.expect("answer").into_body()).await;
    assert!(matches!(body, Err(BodyError::Incomplete)), "{body:?}");
}

#[tokio::test]
async fn bytes_after_an_answer_leave_the_connection_unused() {
    let (resp, _server) = exchange_with(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
        false,
        get("/"),
    )
    .await;
    let (body, conn) = read_all(resp.expect("answer").into_body()).await;
    assert_eq!(&body.expect("body")[..], b"ok");
    assert!(
        conn.is_none(),
        "bytes nobody asked for: the connection is not reused"
    );
}

#[tokio::test]
async fn a_connection_closed_unanswered_or_mid_head_says_which() {
    let (resp, _server) = exchange_with(b"", true, get("/")).await;
    let failure = resp.expect_err("no answer");
    assert_eq!(failure.stage, Stage::Unanswered);
    assert!(matches!(failure.error, WireError::Closed));
    assert_eq!(
        failure.error.to_string(),
        "connection closed before message completed"
    );
    let (resp, _server) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-le", true, get("/")).await;
    let failure = resp.expect_err("half a head");
    assert_eq!(failure.stage, Stage::Failed, "part of an answer came");
}

#[tokio::test]
async fn an_idle_connection_the_querier_closed_is_seen_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conn = Conn::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    let (server_side, _) = listener.accept().await.expect("accept");
    assert!(!conn.is_closed(), "open and quiet");
    drop(server_side);
    // The close reaches the client's socket asynchronously: wait for it (no timing
    // assumed; the loop ends as soon as it is seen).
    let mut seen = false;
    for _ in 0..1000 {
        if conn.is_closed() {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(seen, "a closed connection is noticed");
}

#[test]
fn request_headers_pass_in_order() {
    let mut headers = HeaderMap::new();
    headers.append("accept", "a".parse().expect("value"));
    headers.append("accept", "b".parse().expect("value"));
    let mut req = Request::new(Bytes::new());
    *req.method_mut() = Method::HEAD;
    *req.headers_mut() = headers;
    let mut out = Vec::new();
    encode_head(&Outgoing::of(&req), &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HEAD / HTTP/1.1\r\naccept: a\r\naccept: b\r\n\r\n"
    );
}

#[test]
fn hop_by_hop_headers_and_lengths_are_not_written_and_host_goes_last() {
    let mut headers = HeaderMap::new();
    headers.append("host", "client.example".parse().expect("value"));
    headers.append("accept", "*/*".parse().expect("value"));
    headers.append("content-length", "99".parse().expect("value"));
    headers.append("x-scope-orgid", "team-a".parse().expect("value"));
    let host = http::HeaderValue::from_static("querier:9090");
    let body = Bytes::from_static(b"query=up");
    let out_of = |headers: &HeaderMap| {
        let req = Outgoing {
            method: &Method::POST,
            prefix: "/prom",
            path: "/api/v1/query",
            headers,
            allow: None,
            host: Some(&host),
            body: &body,
        };
        let mut out = Vec::new();
        encode_head(&req, &mut out);
        String::from_utf8(out).expect("ascii")
    };
    assert_eq!(
        out_of(&headers),
        "POST /prom/api/v1/query HTTP/1.1\r\naccept: */*\r\nx-scope-orgid: team-a\r\nhost: querier:9090\r\ncontent-length: 8\r\n\r\n"
    );
    headers.append(
        "connection",
        "x-scope-orgid, keep-alive".parse().expect("value"),
    );
    headers.append("keep-alive", "timeout=5".parse().expect("value"));
    headers.append("te", "trailers".parse().expect("value"));
    assert_eq!(
        out_of(&headers),
        "POST /prom/api/v1/query HTTP/1.1\r\naccept: */*\r\nhost: querier:9090\r\ncontent-length: 8\r\n\r\n",
        "hop-by-hop headers and those Connection names stay behind"
    );
}

#[test]
fn a_passthrough_writes_what_the_allow_list_selects() {
    let allow = crate::headers::ForwardHeaders::new(&["Accept", "X-Scope-OrgID", "TE", "Host"]);
    let host = http::HeaderValue::from_static("querier:9090");
    let body = Bytes::from_static(b"query=up");
    let write = |headers: &HeaderMap, allow: Option<&crate::headers::ForwardHeaders>| {
        let req = Outgoing {
            method: &Method::POST,
            prefix: "",
            path: "/api/v1/query",
            headers,
            allow,
            host: Some(&host),
            body: &body,
        };
        let mut out = Vec::new();
        encode_head(&req, &mut out);
        String::from_utf8(out).expect("ascii")
    };
    let map = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        h
    };
    let client = map(&[
        ("host", "frontend:9095"),
        ("accept", "a"),
        ("cookie", "session=1"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "b"),
        ("content-type", "text/plain"),
        ("te", "trailers"),
        ("x-scope-orgid", "team-a"),
    ]);
    assert_eq!(
        write(&client, Some(&allow)),
        "POST /api/v1/query HTTP/1.1\r\naccept: a\r\naccept: b\r\ncontent-type: application/x-www-form-urlencoded\r\nx-scope-orgid: team-a\r\nhost: querier:9090\r\ncontent-length: 8\r\n\r\n",
        "allow-listed headers and the first content type; no cookie, no TE, the querier's host"
    );
    // The same headers as the map a writer without the filter is given (hyper-util's
    // client for `https://` queriers), in whatever order that map keeps them.
    let lines = |text: String| {
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let mut named = client.clone();
    named.append(
        "connection",
        "x-scope-orgid, content-type".parse().expect("value"),
    );
    for headers in [
        client,
        named,
        map(&[("content-type", "a/b"), ("accept", "c")]),
        HeaderMap::new(),
    ] {
        assert_eq!(
            lines(write(&headers, Some(&allow))),
            lines(write(&allow.select_passthrough(&headers), None)),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_back_from_a_large_answer_keeps_small_buffers() {
    // A large chunked answer grows the reads (and the buffer) up to the largest read.
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        let body = vec![b'x'; 3 * MAX_READ];
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        out.extend(chunked(&body, &[65536], false, false));
        out
    });
    let (resp, _server) = exchange_with(answer, false, get("/")).await;
    let (body, conn) = read_all(resp.expect("answer").into_body()).await;
    assert_eq!(body.expect("body").len(), 3 * MAX_READ);
    let conn = conn.expect("kept");
    assert!(
        conn.buf.capacity() <= IDLE_BUFFER,
        "idle with a {} byte buffer",
        conn.buf.capacity()
    );
    assert_eq!(conn.read_size, FIRST_READ, "the next answer starts small");
}
