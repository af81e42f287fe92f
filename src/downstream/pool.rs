//! The frontend's own HTTP/1.1 client for plain `http://` querier endpoints: per endpoint
//! a pool of idle connections over hyper's low-level `client::conn::http1`.
//!
//! Why not hyper-util's pooled client, which `https://` endpoints keep using (TLS, maybe
//! HTTP/2): for each request it checks a connection out of a pool keyed by scheme and
//! authority, clones its connector, and spawns a task that waits for the connection to
//! be ready again to put it back; for small passthrough answers that bookkeeping was
//! about a tenth of the frontend's CPU (BENCHMARKS.md, "Passthrough against nginx").
//! Here a connection's task is spawned once, when the connection is made, and its
//! sender goes back to the pool from the answer's body itself, when the body has been
//! read to its end.
//!
//! What it keeps of hyper-util's pool:
//! - idle connections are taken newest first, so that surplus ones age out;
//! - a connection goes back to the pool only when its answer's body was read whole (a
//!   body dropped early closes its connection, as HTTP/1.1 has no other way to abandon
//!   an answer), and only while fewer than `max_idle` are idle;
//! - an idle connection older than `idle_timeout`, or one the querier closed, is never
//!   used; a reaper task closes expired ones while nothing asks;
//! - a request that a pooled connection failed before any of it was written (the
//!   querier closed the idle connection meanwhile) is sent again, on the next idle
//!   connection or a new one, whatever its method: it never reached the querier. A
//!   failure on a new connection is returned.
//!
//! One thing more: when the querier closes an idle connection just as a request is
//! written to it, the connection ends without an answer (hyper's "connection closed
//! before message completed"). A GET or HEAD that met that on a pooled connection is
//! sent once more, on a new connection: reads may be repeated, and the querier either
//! never saw the request or dropped it unanswered. (hyper-util's client returns that
//! error; the retry layer then spent one of its attempts and its backoff on it.)
//!
//! Errors read as hyper-util's do (`client error (Connect)`, `client error
//! (SendRequest)` with the cause below), so that logs and error answers stay the same.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use crate::error::BoxError;

/// The sending half of one querier connection.
type Sender = http1::SendRequest<Full<Bytes>>;

/// The shortest interval of the reaper (hyper-util's pool uses the same floor).
const MIN_REAP_INTERVAL: Duration = Duration::from_millis(90);

/// The idle connections of one endpoint, and how to make new ones.
pub(super) struct Pool {
    idle: Mutex<Vec<Idle>>,
    connector: HttpConnector,
    /// `http://authority` of the endpoint: where the connector connects.
    origin: Uri,
    max_idle: usize,
    idle_timeout: Duration,
    /// Whether the reaper task was started (on the first connection).
    reaping: AtomicBool,
}

/// A connection waiting for its next request.
struct Idle {
    sender: Sender,
    /// When it went idle.
    since: Instant,
}

/// A failure to exchange a request with the querier, worded as hyper-util's client
/// words it.
#[derive(Debug, thiserror::Error)]
#[error("client error ({kind})")]
pub(super) struct ClientError {
    kind: &'static str,
    #[source]
    source: BoxError,
}

impl ClientError {
    fn connect(source: impl Into<BoxError>) -> ClientError {
        ClientError {
            kind: "Connect",
            source: source.into(),
        }
    }

    fn send(source: hyper::Error) -> ClientError {
        ClientError {
            kind: "SendRequest",
            source: source.into(),
        }
    }
}

impl Pool {
    /// A pool for the endpoint at `origin` (`http://host:port`), connecting with
    /// `connector` (its connect timeout, `TCP_NODELAY` and keep-alive settings apply).
    pub(super) fn new(
        connector: HttpConnector,
        origin: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            connector,
            origin,
            max_idle,
            idle_timeout,
            reaping: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form URI, `Host` header set) on an idle connection or a new
    /// one and returns the answer once its head arrived; its body gives the connection
    /// back when read to its end. `again` makes the same request once more, for the
    /// one repeat of a read that a pooled connection closed on (see the module docs).
    pub(super) async fn send(
        self: &Arc<Self>,
        mut req: Request<Full<Bytes>>,
        again: impl FnOnce() -> Option<Request<Full<Bytes>>>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let mut again = Some(again);
        let mut new_only = false;
        loop {
            let pooled = if new_only { None } else { self.checkout() };
            let (mut sender, reused) = match pooled {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            // A pooled connection may still be finishing its last answer; a new one
            // becomes ready once its task runs.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(ClientError::send(e));
            }
            let repeatable = reused && matches!(*req.method(), Method::GET | Method::HEAD);
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = ResponseBody::pooled(body, Lease::new(sender, self));
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => {
                    if let Some(unsent) = e.take_message() {
                        // Not written: the querier closed the idle connection first.
                        if reused {
                            req = unsent;
                            continue;
                        }
                        return Err(ClientError::send(e.into_error()));
                    }
                    let error = e.into_error();
                    if repeatable
                        && closed_unanswered(&error)
                        && let Some(repeat) = again.take().and_then(|make| make())
                    {
                        req = repeat;
                        new_only = true;
                        continue;
                    }
                    return Err(ClientError::send(error));
                }
            }
        }
    }

    /// The newest idle connection that is neither expired nor closed.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= self.idle_timeout {
                // The newest is expired, so are all older ones.
                idle.clear();
                return None;
            }
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Puts a connection whose answer was read whole back, unless the pool is full or
    /// the connection closed.
    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection and spawns its task, which runs until the connection closes.
    async fn connect(self: &Arc<Self>) -> Result<Sender, ClientError> {
        self.start_reaper();
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(ClientError::connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(ClientError::send)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "querier connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Starts, once, the task that closes expired idle connections; it ends when the
    /// pool is dropped.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = self.idle_timeout.max(MIN_REAP_INTERVAL);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                pool.close_expired();
            }
        });
    }

    /// Drops idle connections that expired or closed.
    fn close_expired(&self) {
        let timeout = self.idle_timeout;
        self.lock()
            .retain(|e| e.since.elapsed() < timeout && !e.sender.is_closed());
    }

    /// The idle list; a panic elsewhere while it was held leaves it consistent (each
    /// operation is one push, pop or retain).
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections are idle (for tests).
    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

/// Whether a connection ended before any answer came: closed (hyper's "connection
/// closed before message completed"), reset or broken.
fn closed_unanswered(error: &hyper::Error) -> bool {
    use std::error::Error as _;
    use std::io::ErrorKind;
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            );
        }
        source = e.source();
    }
    false
}

/// A connection lent to one exchange, given back to its pool when the answer has been
/// read whole.
struct Lease {
    sender: Sender,
    pool: Arc<Pool>,
}

impl Lease {
    fn new(sender: Sender, pool: &Arc<Pool>) -> Lease {
        Lease {
            sender,
            pool: pool.clone(),
        }
    }

    fn give_back(self) {
        self.pool.put(self.sender);
    }
}

/// The body of a querier's answer. From a pooled connection it holds the connection
/// until the body has been read to its end, then gives it back; dropped before that,
/// it closes the connection (hyper does, as the rest of the answer cannot be skipped).
pub struct ResponseBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl ResponseBody {
    /// The body of an answer from hyper-util's client, which pools on its own.
    pub(super) fn plain(inner: Incoming) -> ResponseBody {
        ResponseBody { inner, lease: None }
    }

    fn pooled(inner: Incoming, lease: Lease) -> ResponseBody {
        if inner.is_end_stream() {
            // No body (a HEAD, a 204, `Content-Length: 0`): the connection is free now.
            lease.give_back();
            return ResponseBody::plain(inner);
        }
        ResponseBody {
            inner,
            lease: Some(lease),
        }
    }

    fn give_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.give_back();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            // The connection failed: hyper closes it.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A reader that stops polling once the body says it has ended (hyper's server
        // does) never sees the final `None`.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pooled", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
