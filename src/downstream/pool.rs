//! The frontend's own HTTP/1.1 client for plain `http://` querier endpoints: per endpoint
//! a pool of idle connections, each exchange run in the requesting task ([`super::h1`]).
//!
//! Why not hyper-util's pooled client, which `https://` endpoints keep using (TLS, maybe
//! HTTP/2): for each request it checks a connection out of a pool keyed by scheme and
//! authority, clones its connector, and spawns a task that waits for the connection to
//! be ready again to put it back; for small passthrough answers that bookkeeping was
//! about a tenth of the frontend's CPU (BENCHMARKS.md, "Passthrough against nginx").
//! Here no task is spawned per connection or per request: a connection goes back to the
//! pool from the answer's body itself, when the body has been read to its end.
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
//! written to it, the connection ends without an answer ("connection closed before
//! message completed", or a reset). A GET or HEAD that met that on a pooled connection
//! is sent once more, on a new connection: reads may be repeated, and the querier either
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
use http::{Method, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use super::h1::{Conn, Outgoing, Reader, Stage};
use crate::error::BoxError;

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
    conn: Conn,
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

    fn send(source: impl Into<BoxError>) -> ClientError {
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

    /// Sends `req` on an idle connection or a new one and returns the answer once its
    /// head arrived; its body gives the connection back when read to its end. A request
    /// is sent again only as the module docs say.
    pub(super) async fn send(
        self: &Arc<Self>,
        req: &Outgoing<'_>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let mut repeated = false;
        loop {
            let pooled = if repeated { None } else { self.checkout() };
            let (conn, reused) = match pooled {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match conn.exchange(req).await {
                Ok(resp) => {
                    let (parts, reader) = resp.into_parts();
                    let body = ResponseBody::pooled(reader, self);
                    return Ok(Response::from_parts(parts, body));
                }
                // Not written: the querier closed the idle connection first.
                Err(f) if reused && f.stage == Stage::Unsent => {}
                Err(f)
                    if reused
                        && f.stage == Stage::Unanswered
                        && matches!(*req.method, Method::GET | Method::HEAD) =>
                {
                    repeated = true;
                }
                Err(f) => return Err(ClientError::send(f.error)),
            }
        }
    }

    /// The newest idle connection that is neither expired nor closed.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= self.idle_timeout {
                // The newest is expired, so are all older ones.
                idle.clear();
                return None;
            }
            if !entry.conn.is_closed() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Puts a connection whose answer was read whole back, unless the pool is full.
    fn put(&self, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection.
    async fn connect(self: &Arc<Self>) -> Result<Conn, ClientError> {
        self.start_reaper();
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(ClientError::connect)?;
        Ok(Conn::new(io.into_inner()))
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
            .retain(|e| e.since.elapsed() < timeout && !e.conn.is_closed());
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

/// The body of a querier's answer: read from its pooled connection, which it gives back
/// once read to its end (dropped before that, it closes the connection), or hyper's
/// body of an answer from hyper-util's client.
pub struct ResponseBody {
    inner: Inner,
}

enum Inner {
    /// From hyper-util's client, which pools on its own.
    Client(Incoming),
    /// From the own pool: `None` once the connection was given back or closed.
    Own(Option<Lent>),
}

/// A connection lent to one answer's body.
struct Lent {
    reader: Reader,
    pool: Arc<Pool>,
}

impl Lent {
    fn give_back(self) {
        if let Some(conn) = self.reader.into_conn() {
            self.pool.put(conn);
        }
    }
}

impl ResponseBody {
    /// The body of an answer from hyper-util's client.
    pub(super) fn plain(inner: Incoming) -> ResponseBody {
        ResponseBody {
            inner: Inner::Client(inner),
        }
    }

    fn pooled(reader: Reader, pool: &Arc<Pool>) -> ResponseBody {
        let lent = Lent {
            reader,
            pool: pool.clone(),
        };
        if lent.reader.is_end() {
            // No body (a HEAD, a 204, `Content-Length: 0`): the connection is free now.
            lent.give_back();
            return ResponseBody {
                inner: Inner::Own(None),
            };
        }
        ResponseBody {
            inner: Inner::Own(Some(lent)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let slot = match &mut self.inner {
            Inner::Client(inner) => {
                return Pin::new(inner).poll_frame(cx).map_err(BoxError::from);
            }
            Inner::Own(slot) => slot,
        };
        let Some(lent) = slot else {
            return Poll::Ready(None);
        };
        let polled = lent.reader.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) if !lent.reader.is_end() => {}
            Poll::Pending => {}
            // The end (given back), or a failure (closed: `into_conn` refuses it).
            Poll::Ready(_) => {
                if let Some(lent) = slot.take() {
                    lent.give_back();
                }
            }
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Client(inner) => inner.is_end_stream(),
            Inner::Own(None) => true,
            Inner::Own(Some(lent)) => lent.reader.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Client(inner) => inner.size_hint(),
            Inner::Own(None) => SizeHint::with_exact(0),
            Inner::Own(Some(lent)) => lent.reader.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A reader that stops polling once the body says it has ended (hyper's server
        // does) never sees the final `None`.
        if let Inner::Own(slot) = &mut self.inner
            && let Some(lent) = slot.take()
            && lent.reader.is_end()
        {
            lent.give_back();
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Client(_) => "client",
            Inner::Own(Some(_)) => "lent",
            Inner::Own(None) => "ended",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
