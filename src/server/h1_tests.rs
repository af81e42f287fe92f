use std::collections::VecDeque;
use std::future::{pending, ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, DuplexStream, duplex};

use super::*;
use crate::error::BoxError;

fn options() -> Options {
    Options {
        header_read_timeout: Duration::from_secs(5),
        max_head_bytes: 4096,
        max_body_bytes: 1024,
    }
}

/// A body that gives the frames it was made with, then ends; of exact size when told.
struct Scripted {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    exact: Option<u64>,
}

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.exact.map_or_else(
            http_body::SizeHint::default,
            http_body::SizeHint::with_exact,
        )
    }
}

fn chunks(parts: &[&str], exact: Option<u64>) -> Body {
    let frames = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from(p.to_string()))))
        .collect();
    Scripted { frames, exact }.boxed()
}

fn text(body: &str) -> Body {
    let len = body.len() as u64;
    chunks(&[body], Some(len))
}

/// What a handler saw of one request.
#[derive(Debug, PartialEq)]
struct Seen {
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, req: Request<ReqBody>) {
    let (parts, body) = req.into_parts();
    let ReqBody::Read(body) = body else {
        panic!("the own loop reads bodies itself");
    };
    log.lock().expect("lock").push(Seen {
        method: parts.method,
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body,
    });
}

/// Serves `server` in a task with a handler that records each request in the returned
/// log and answers it with `answer()`.
fn serve_recording(
    server: DuplexStream,
    answer: impl Fn() -> Response<Body> + Send + 'static,
) -> (tokio::task::JoinHandle<Ended<DuplexStream>>, Log) {
    let log = Log::default();
    let seen = log.clone();
    let served = tokio::spawn(async move {
        let closing = tokio::sync::watch::channel(false).0;
        serve(server, &options(), &closing, move |req| {
            record(&seen, req);
            ready(answer())
        })
        .await
    });
    (served, log)
}

/// Serves `input` (sent whole, then the client's side shut) with a handler answering
/// `answer()`; returns what the loop wrote, how it ended, and the requests it saw.
async fn exchange(
    input: &[u8],
    answer: impl Fn() -> Response<Body> + Send + 'static,
) -> (String, Ended<DuplexStream>, Vec<Seen>) {
    let (mut client, server) = duplex(1 << 20);
    let (served, log) = serve_recording(server, answer);
    client.write_all(input).await.expect("write");
    client.shutdown().await.expect("shutdown");
    let ended = served.await.expect("serve");
    let out = written(&mut client).await;
    let seen = std::mem::take(&mut *log.lock().expect("lock"));
    (String::from_utf8(out).expect("utf-8"), ended, seen)
}

/// What the server side wrote so far (all of it: the loop has returned). Not read to
/// the end: a connection handed to hyper is still open.
async fn written(client: &mut DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let mut buf = ReadBuf::new(&mut chunk);
        match poll_fn(|cx| Poll::Ready(Pin::new(&mut *client).poll_read(cx, &mut buf))).await {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => out.extend_from_slice(buf.filled()),
            _ => return out,
        }
    }
}

fn ok() -> Response<Body> {
    Response::new(text("ok"))
}

#[tokio::test]
async fn serves_pipelined_requests_in_order_with_their_heads_and_bodies() {
    let input = b"GET /api/v1/labels HTTP/1.1\r\nHost: f\r\nX-A: 1\r\nx-a: 2\r\n\r\n\
        POST /api/v1/query HTTP/1.1\r\nHost: f\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nquery=1\
        DELETE /api/v1/x?y=%20z HTTP/1.1\r\ncontent-length: 0\r\n\r\n";
    let (out, ended, seen) = exchange(input, ok).await;
    assert!(matches!(ended, Ended::Closed));
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        seen,
        vec![
            Seen {
                method: Method::GET,
                target: "/api/v1/labels".into(),
                headers: vec![pair("host", "f"), pair("x-a", "1"), pair("x-a", "2")],
                body: Bytes::new(),
            },
            Seen {
                method: Method::POST,
                target: "/api/v1/query".into(),
                headers: vec![
                    pair("host", "f"),
                    pair("content-type", "application/x-www-form-urlencoded"),
                    pair("content-length", "7"),
                ],
                body: Bytes::from_static(b"query=1"),
            },
            Seen {
                method: Method::DELETE,
                target: "/api/v1/x?y=%20z".into(),
                headers: vec![pair("content-length", "0")],
                body: Bytes::new(),
            },
        ]
    );
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    for answer in answers {
        assert!(answer.starts_with("200 OK\r\n"), "{answer}");
        assert!(answer.contains("\r\ncontent-length: 2\r\n"), "{answer}");
        assert!(answer.contains("\r\ndate: "), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
        assert!(!answer.contains("connection:"), "{answer}");
    }
}

#[tokio::test]
async fn a_body_arriving_in_pieces_is_read_whole() {
    let (mut client, server) = duplex(1 << 16);
    let (served, log) = serve_recording(server, ok);
    client
        .write_all(b"POST /api/v1/query HTTP/1.1\r\nContent-Length: 10\r\n\r\nquer")
        .await
        .expect("write");
    tokio::task::yield_now().await;
    client.write_all(b"y=up").await.expect("write");
    tokio::task::yield_now().await;
    client.write_all(b"()").await.expect("write");
    client.shutdown().await.expect("shutdown");
    assert!(matches!(served.await.expect("serve"), Ended::Closed));
    let seen = log.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, Bytes::from_static(b"query=up()"));
}

#[tokio::test]
async fn what_the_loop_does_not_serve_goes_to_hyper_with_every_byte() {
    let many = (0..65).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("HEAD", b"HEAD / HTTP/1.1\r\n\r\n".to_vec()),
        ("CONNECT", b"CONNECT f:80 HTTP/1.1\r\n\r\n".to_vec()),
        (
            "a chunked body",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "Expect",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na".to_vec(),
        ),
        (
            "Upgrade",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n".to_vec(),
        ),
        (
            "Connection: upgrade",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n".to_vec(),
        ),
        (
            "an absolute-form target",
            b"GET http://f/api/v1/labels HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "the HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "a bad Content-Length",
            b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\na".to_vec(),
        ),
        (
            "differing Content-Lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        ),
        (
            "a body over max_body_bytes",
            format!(
                "POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n{}",
                "a".repeat(1025)
            )
            .into_bytes(),
        ),
        (
            "65 header fields",
            format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(),
        ),
        (
            "a head that does not parse",
            b"GET / HTTP/1.1\r\nbad header\r\n\r\n".to_vec(),
        ),
        (
            "a target byte http::Uri refuses",
            b"GET /a\xffb HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "an unfinished head past the limit",
            format!("GET / HTTP/1.1\r\nX-Big: {}", "b".repeat(5000)).into_bytes(),
        ),
    ];
    for (name, input) in cases {
        let (out, ended, seen) = exchange(&input, ok).await;
        assert!(seen.is_empty(), "{name}: no handler call: {seen:?}");
        assert!(out.is_empty(), "{name}: nothing written: {out}");
        let Ended::HandOff(mut rewind) = ended else {
            panic!("{name}: handed to hyper");
        };
        let mut given = Vec::new();
        rewind.read_to_end(&mut given).await.expect("read");
        assert_eq!(given, input, "{name}: hyper reads every byte");
    }
    // After a request the loop served, only what follows it.
    let (out, ended, seen) = exchange(
        b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
        ok,
    )
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 1, "{out}");
    let Ended::HandOff(mut rewind) = ended else {
        panic!("handed to hyper");
    };
    let mut given = Vec::new();
    rewind.read_to_end(&mut given).await.expect("read");
    assert_eq!(given, b"HEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn answers_are_framed_as_hyper_frames_them() {
    type Make = fn() -> Response<Body>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "an exact size",
            || Response::new(text("hello")),
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: D\r\n\r\nhello",
        ),
        (
            "unknown size: chunked",
            || Response::new(chunks(&["hello", "", "world!"], None)),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
        ),
        (
            "the handler's Content-Length",
            || {
                let mut r = Response::new(chunks(&["ab", "c"], None));
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
                r
            },
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ndate: D\r\n\r\nabc",
        ),
        (
            "an empty body",
            || Response::new(chunks(&[], None)),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: D\r\n\r\n",
        ),
        (
            "204 and a stale length",
            || {
                let mut r = Response::new(chunks(&[], None));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r
            },
            "HTTP/1.1 204 No Content\r\ndate: D\r\n\r\n",
        ),
        (
            "304 keeps no body",
            || {
                let mut r = Response::new(text("unsent"));
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            },
            "HTTP/1.1 304 Not Modified\r\ndate: D\r\n\r\n",
        ),
        (
            "the handler's date, its reason phrase and fields in order",
            || {
                let mut r = Response::new(text("x"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut()
                    .insert(header::DATE, HeaderValue::from_static("then"));
                r.headers_mut().append("x-b", HeaderValue::from_static("1"));
                r.headers_mut().append("x-b", HeaderValue::from_static("2"));
                r.headers_mut()
                    .insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
                r.extensions_mut().insert(
                    hyper::ext::ReasonPhrase::try_from(&b"Warming Up"[..]).expect("phrase"),
                );
                r
            },
            "HTTP/1.1 503 Warming Up\r\ndate: then\r\nx-b: 1\r\nx-b: 2\r\ncontent-length: 1\r\n\r\nx",
        ),
        (
            "a status without a canonical reason",
            || {
                let mut r = Response::new(text(""));
                *r.status_mut() = StatusCode::from_u16(599).expect("status");
                r
            },
            "HTTP/1.1 599 <none>\r\ncontent-length: 0\r\ndate: D\r\n\r\n",
        ),
    ];
    for (name, make, want) in cases {
        let (out, ended, _) = exchange(b"GET / HTTP/1.1\r\n\r\n", make).await;
        assert!(matches!(ended, Ended::Closed), "{name}");
        // The date changes; its form is checked apart.
        let out = match out.find("date: ") {
            Some(at) if !out[at..].starts_with("date: then") => {
                let date = &out[at + 6..at + 6 + 29];
                assert!(
                    date.ends_with(" GMT") && date.as_bytes()[3] == b',',
                    "{name}: {date}"
                );
                format!("{}D{}", &out[..at + 6], &out[at + 6 + 29..])
            }
            _ => out,
        };
        assert_eq!(out, want, "{name}");
    }
}

#[tokio::test]
async fn connection_close_ends_the_connection_after_its_answer() {
    let (out, ended, seen) = exchange(
        b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        ok,
    )
    .await;
    assert!(matches!(ended, Ended::Closed));
    assert_eq!(seen.len(), 1, "the request after the close is not served");
    assert!(out.contains("\r\nconnection: close\r\n"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    // A handler's own `Connection: close` too.
    let (out, _, seen) = exchange(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", || {
        let mut r = ok();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    })
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_request() {
    let (mut client, server) = duplex(1 << 16);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let closing = tokio::sync::watch::channel(false).0;
    let served = tokio::spawn(async move {
        serve(server, &options(), &closing, move |_| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                pending::<Response<Body>>().await
            }
        })
        .await
    });
    client
        .write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    tokio::task::yield_now().await;
    assert!(!dropped.load(Ordering::SeqCst));
    drop(client);
    assert!(matches!(served.await.expect("serve"), Ended::Closed));
    assert!(dropped.load(Ordering::SeqCst), "the handler was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_head_not_complete_within_the_timeout_closes_the_connection() {
    for input in [&b""[..], b"GET /api/v1/labels HTTP/1.1\r\nX-Slow: "] {
        let (mut client, server) = duplex(1 << 16);
        let closing = tokio::sync::watch::channel(false).0;
        let served =
            tokio::spawn(async move { serve(server, &options(), &closing, |_| ready(ok())).await });
        client.write_all(input).await.expect("write");
        let started = Instant::now();
        assert!(matches!(served.await.expect("serve"), Ended::Closed));
        assert_eq!(started.elapsed(), options().header_read_timeout);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.expect("read");
        assert!(out.is_empty());
    }
    // The timer runs again for each request: a connection idle for most of the timeout
    // twice is still served.
    let (mut client, server) = duplex(1 << 16);
    let closing = tokio::sync::watch::channel(false).0;
    let served =
        tokio::spawn(async move { serve(server, &options(), &closing, |_| ready(ok())).await });
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut answer = [0u8; 17];
        client.read_exact(&mut answer).await.expect("read");
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n");
        let mut rest = vec![0u8; 64];
        let _ = client.read(&mut rest).await.expect("read");
    }
    drop(client);
    assert!(matches!(served.await.expect("serve"), Ended::Closed));
}

#[tokio::test]
async fn at_shutdown_idle_connections_close_and_answers_finish_with_close() {
    // Idle: closes at once.
    let (client, server) = duplex(1 << 16);
    let closing = Arc::new(tokio::sync::watch::channel(false).0);
    let signal = closing.clone();
    let served =
        tokio::spawn(async move { serve(server, &options(), &signal, |_| ready(ok())).await });
    tokio::task::yield_now().await;
    closing.send_replace(true);
    assert!(matches!(served.await.expect("serve"), Ended::Closed));
    drop(client);
    // Answering: the answer is sent whole, says `connection: close`, and ends it.
    let (mut client, server) = duplex(1 << 16);
    let closing = Arc::new(tokio::sync::watch::channel(false).0);
    let signal = closing.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let served = tokio::spawn(async move {
        serve(server, &options(), &signal, move |_| {
            let released = released.lock().expect("lock").take();
            async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                ok()
            }
        })
        .await
    });
    client
        .write_all(b"GET /a HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    tokio::task::yield_now().await;
    closing.send_replace(true);
    release.send(()).expect("release");
    assert!(matches!(served.await.expect("serve"), Ended::Closed));
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.expect("read");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\nconnection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
}

#[tokio::test]
async fn a_body_that_fails_or_ends_short_closes_the_connection() {
    let failing = || {
        let frames = VecDeque::from([
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(BoxError::from("querier went away")),
        ]);
        Response::new(
            Scripted {
                frames,
                exact: None,
            }
            .boxed(),
        )
    };
    let short = || {
        let mut r = Response::new(chunks(&["ab"], None));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        r
    };
    let long = || {
        let mut r = Response::new(chunks(&["abcdef"], None));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        r
    };
    let two = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    let (out, ended, seen) = exchange(two, failing).await;
    assert!(matches!(ended, Ended::Closed));
    assert_eq!(seen.len(), 1, "no second request on a broken answer");
    assert!(
        out.ends_with("\r\n\r\n4\r\npart\r\n"),
        "no last chunk: {out:?}"
    );
    let (out, _, seen) = exchange(two, short).await;
    assert_eq!(seen.len(), 1);
    assert!(out.ends_with("\r\n\r\nab"), "{out:?}");
    let (out, _, seen) = exchange(two, long).await;
    assert_eq!(seen.len(), 1);
    assert!(
        out.ends_with("\r\n\r\nabc"),
        "the declared length only: {out:?}"
    );
}

#[tokio::test]
async fn a_large_body_chunk_is_written_from_where_it_is() {
    let big = "z".repeat(3 * COPY_LIMIT);
    let expected = big.clone();
    let (out, _, _) = exchange(b"GET / HTTP/1.1\r\n\r\n", move || {
        Response::new(chunks(&["head", &expected, "tail"], None))
    })
    .await;
    let body = out.split_once("\r\n\r\n").expect("head").1;
    assert_eq!(
        body,
        format!(
            "4\r\nhead\r\n{:x}\r\n{big}\r\n4\r\ntail\r\n0\r\n\r\n",
            big.len()
        )
    );
}

#[test]
fn numbers_are_written_in_decimal_and_hex() {
    for n in [0u64, 7, 10, 255, 4096, u64::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
        let mut out = Vec::new();
        push_hex(&mut out, n as usize);
        assert_eq!(out, format!("{:x}", n as usize).as_bytes());
    }
    assert_eq!(parse_decimal(b"0042"), Some(42));
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"+1"), None);
    assert_eq!(parse_decimal(b"99999999999999999999999"), None);
}
