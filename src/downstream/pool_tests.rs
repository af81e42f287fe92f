//! The pool against small real servers on loopback: reuse, bodies read whole or dropped,
//! the idle limit and timeout, and connections the server closed while idle.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use super::super::h1::Outgoing;
use super::{Pool, ResponseBody};

type TestBody = BoxBody<Bytes, Infallible>;

/// A hyper server on loopback that counts the connections it accepted. Paths:
/// `/ok` (Content-Length body), `/chunks` (three chunked frames), `/stall` (one frame,
/// then nothing), `/empty` (204), `/together` (waits until three such requests arrived).
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let together = Arc::new(tokio::sync::Barrier::new(3));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let together = together.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let together = together.clone();
                    async move { Ok::<_, Infallible>(answer(req.uri().path(), &together).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Server { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn answer(path: &str, together: &tokio::sync::Barrier) -> Response<TestBody> {
    let frames = |n: usize| {
        futures_util::stream::iter(
            (0..n).map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("part{i};"))))),
        )
    };
    let body: TestBody = match path {
        "/ok" => Full::new(Bytes::from_static(b"ok")).boxed(),
        "/chunks" => StreamBody::new(frames(3)).boxed(),
        "/stall" => StreamBody::new(futures_util::StreamExt::chain(
            frames(1),
            futures_util::stream::pending(),
        ))
        .boxed(),
        "/empty" => {
            let mut resp = Response::new(Full::new(Bytes::new()).boxed());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return resp;
        }
        "/together" => {
            together.wait().await;
            Full::new(Bytes::from_static(b"together")).boxed()
        }
        _ => Full::new(Bytes::from_static(b"unknown path")).boxed(),
    };
    Response::new(body)
}

fn pool_for(addr: SocketAddr, max_idle: usize, idle_timeout: Duration) -> Arc<Pool> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let origin = format!("http://{addr}/").parse().expect("origin");
    Pool::new(connector, origin, max_idle, idle_timeout)
}

fn get(addr: SocketAddr, path: &str) -> Request<Bytes> {
    Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Bytes::new())
        .expect("request")
}

/// Sends `GET path` and reads the whole answer.
async fn fetch(pool: &Arc<Pool>, addr: SocketAddr, path: &str) -> (StatusCode, Bytes) {
    let resp = pool
        .send(&Outgoing::of(&get(addr, path)))
        .await
        .expect("answer");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

const LONG: Duration = Duration::from_secs(90);

#[tokio::test]
async fn answers_read_whole_reuse_one_connection() {
    let server = Server::start().await;
    let pool = pool_for(server.addr, 8, LONG);
    for path in ["/ok", "/chunks", "/empty", "/ok", "/chunks"] {
        let (status, body) = fetch(&pool, server.addr, path).await;
        assert!(status.is_success(), "{path}: {status}");
        match path {
            "/ok" => assert_eq!(&body[..], b"ok"),
            "/chunks" => assert_eq!(&body[..], b"part0;part1;part2;"),
            _ => assert!(body.is_empty()),
        }
        assert_eq!(pool.idle_count(), 1, "{path}: the connection went back");
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_body_read_until_it_says_it_ended_gives_the_connection_back() {
    // hyper's server stops polling a body once `is_end_stream` says it ended.
    let server = Server::start().await;
    let pool = pool_for(server.addr, 8, LONG);
    let mut body: ResponseBody = pool
        .send(&Outgoing::of(&get(server.addr, "/ok")))
        .await
        .expect("answer")
        .into_body();
    while !http_body::Body::is_end_stream(&body) {
        body.frame().await.expect("a frame").expect("data");
    }
    drop(body);
    assert_eq!(pool.idle_count(), 1);
    fetch(&pool, server.addr, "/ok").await;
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_body_dropped_early_closes_its_connection() {
    let server = Server::start().await;
    let pool = pool_for(server.addr, 8, LONG);
    let mut body = pool
        .send(&Outgoing::of(&get(server.addr, "/stall")))
        .await
        .expect("answer")
        .into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.into_data().expect("data"), "part0;");
    drop(body);
    assert_eq!(pool.idle_count(), 0, "a half-read connection is not reused");
    let (status, _) = fetch(&pool, server.addr, "/ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let server = Server::start().await;
    let pool = pool_for(server.addr, 1, LONG);
    let (a, b, c) = tokio::join!(
        fetch(&pool, server.addr, "/together"),
        fetch(&pool, server.addr, "/together"),
        fetch(&pool, server.addr, "/together"),
    );
    for (status, body) in [a, b, c] {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"together");
    }
    assert_eq!(
        server.accepted(),
        3,
        "three requests at once, three connections"
    );
    assert_eq!(pool.idle_count(), 1);
    fetch(&pool, server.addr, "/ok").await;
    assert_eq!(server.accepted(), 3, "the kept one is reused");

    let none = pool_for(server.addr, 0, LONG);
    fetch(&none, server.addr, "/ok").await;
    fetch(&none, server.addr, "/ok").await;
    assert_eq!(none.idle_count(), 0);
    assert_eq!(server.accepted(), 5, "max_idle 0: a connection per request");
}

#[tokio::test]
async fn idle_connections_expire() {
    let server = Server::start().await;
    let timeout = Duration::from_millis(100);
    let pool = pool_for(server.addr, 8, timeout);
    fetch(&pool, server.addr, "/ok").await;
    assert_eq!(pool.idle_count(), 1);
    // The reaper closes it while nothing asks (waits until it did: no timing assumed).
    let mut waited = Duration::ZERO;
    while pool.idle_count() > 0 {
        assert!(waited < Duration::from_secs(30), "the reaper never ran");
        tokio::time::sleep(timeout).await;
        waited += timeout;
    }
    fetch(&pool, server.addr, "/ok").await;
    assert_eq!(server.accepted(), 2, "an expired connection is not used");

    // Checkout itself skips an expired connection, whether or not the reaper ran.
    let quick = pool_for(server.addr, 8, Duration::from_millis(1));
    fetch(&quick, server.addr, "/ok").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(quick.checkout().is_none());
}

/// A server that answers one request per connection with a keep-alive answer and then
/// closes the connection when told, as a querier closing an idle connection does.
fn closing_server() -> (
    SocketAddr,
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<()>,
    Arc<AtomicUsize>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            if close_rx.recv().is_err() {
                return;
            }
            drop(stream);
            if closed_tx.send(()).is_err() {
                return;
            }
        }
    });
    (addr, close_tx, closed_rx, accepted)
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_a_failure() {
    let (addr, close, closed, accepted) = closing_server();
    let pool = pool_for(addr, 8, LONG);
    for round in 1..=3 {
        // The previous connection is pooled, and the server has just closed it: the
        // client may not have noticed yet (the request then comes back unsent and goes
        // on a new connection) or has (it is skipped).
        let (status, body) = fetch(&pool, addr, "/").await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(&body[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), round);
        close.send(()).expect("server");
        closed.recv().expect("server closed");
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let pool = pool_for(addr, 8, LONG);
    let err = pool
        .send(&Outgoing::of(&get(addr, "/")))
        .await
        .expect_err("refused");
    let text = crate::error::error_chain(&err);
    assert!(text.starts_with("client error (Connect): "), "{text}");
}

/// A server whose first connection answers one request and then closes on reading the
/// next one without answering it (a querier closing an idle connection just as a
/// request arrives); later connections answer every request when `later_answer`, and
/// close on reading their first one otherwise.
fn drops_second_request(later_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            std::thread::spawn(move || {
                for answered in 0.. {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if (first && answered == 1) || (!first && !later_answer) {
                        return;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_read_the_pooled_connection_dropped_unanswered_is_sent_once_more() {
    let (addr, accepted) = drops_second_request(true);
    let pool = pool_for(addr, 8, LONG);
    fetch(&pool, addr, "/").await;
    let (status, body) = fetch(&pool, addr, "/").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "repeated on a new connection"
    );
}

#[tokio::test]
async fn other_methods_are_not_repeated() {
    let (addr, accepted) = drops_second_request(true);
    let pool = pool_for(addr, 8, LONG);
    fetch(&pool, addr, "/").await;
    let post = Request::post("/")
        .header(http::header::HOST, addr.to_string())
        .body(Bytes::new())
        .expect("request");
    let err = pool
        .send(&Outgoing::of(&post))
        .await
        .expect_err("closed unanswered");
    let text = crate::error::error_chain(&err);
    assert!(text.starts_with("client error (SendRequest)"), "{text}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A read is sent once more, not twice: here the new connection drops it too.
    let (addr, accepted) = drops_second_request(false);
    let pool = pool_for(addr, 8, LONG);
    fetch(&pool, addr, "/").await;
    let err = pool
        .send(&Outgoing::of(&get(addr, "/")))
        .await
        .expect_err("closed unanswered");
    assert!(
        crate::error::error_chain(&err).contains("closed"),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one repeat");
}
