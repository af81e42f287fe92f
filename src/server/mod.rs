//! The HTTP front door: accepts connections (HTTP/1.1 and h2c), routes requests, and is
//! the only place where an [`Error`] becomes an HTTP response.
//!
//! Routes:
//! - `/api/v1/query_range` (GET or POST form): decoded into a [`crate::model::RangeQuery`], sent
//!   through the range-query stack (`crate::stack`), encoded back.
//! - `/-/healthy`, `/-/ready`, `/metrics`, `/api/v1/slow_queries`, the status page
//!   (`GET /` and its JSON, `GET /-/status`), and CORS preflights (`OPTIONS` on
//!   `/api/v1/...`): answered locally.
//! - everything else: forwarded unchanged (method, path, query string, body, allow-listed
//!   headers) and the querier's response streamed back with hop-by-hop headers removed.
//!
//! Every answer on the API gets the CORS headers of `server.cors_origin` ([`Cors`]).
//!
//! With a web config file (`server.web_config_file`, [`web`]) the port speaks TLS
//! ([`tls`]) when the file says so, requests need basic auth when it lists users
//! (`auth`; `server.auth_exempt_paths` excepted), every answer carries its response
//! headers, and a user listed in `server.user_tenants` has its tenant header set for it.
//!
//! Shutdown: when the shutdown future resolves the listener closes, in-flight requests
//! get up to the grace period to finish, and then the remaining connections are dropped.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::downstream::Downstream;
use crate::error::{BoxError, Error};
use crate::headers::ForwardHeaders;
use crate::layers::retry::RetryPolicy;
use crate::metrics::{Endpoint, Metrics};
use crate::model::timeout::ClientTimeout;
use crate::slowlog::{SlowLog, SlowLogOptions};
use crate::stack::{self, CacheUsage, RangeService};
use observe::{Observed, Pending, error_message};
use respond::{preflight, text};
use tracing::Instrument;
use web::{Loaded, WebState};

mod answers;
mod auth;
mod cors;
mod h1;
mod local;
mod observe;
mod passthrough;
mod range;
mod respond;
mod status;
pub mod tls;
pub mod web;

pub use cors::Cors;
pub use respond::error_response;

/// Response body type of the server: a local buffer or the querier's stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A request's body as the handlers get it: read by the own HTTP/1.1 loop ([`h1`])
/// before the request was handed over, or still to be read from hyper's connection.
#[derive(Debug)]
pub enum ReqBody {
    /// The whole body (empty for a request without one).
    Read(Bytes),
    /// Streamed by hyper (HTTP/2, TLS, and HTTP/1.1 requests the own loop leaves to it).
    Hyper(Incoming),
}

/// Everything a request handler needs; shared by all connections.
pub struct Frontend {
    downstream: Downstream,
    retry: RetryPolicy,
    stack: RangeService,
    forward: ForwardHeaders,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    gzip_responses: bool,
    cors: Cors,
    ready_window: Duration,
    probe_path: String,
    grace_period: Duration,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    /// Permits for requests being answered (`server.max_concurrent_requests`).
    admission: Option<Arc<tokio::sync::Semaphore>>,
    deadline: Duration,
    health_check_interval: Duration,
    slow_log: Arc<SlowLog>,
    slow_queries_api: bool,
    tenant_header: http::HeaderName,
    /// The in-process caches, whose size `/metrics` reports.
    cache_usage: CacheUsage,
    /// Becomes true when shutdown starts (ends `follow` streams).
    closing: tokio::sync::watch::Sender<bool>,
    /// The web config file in force, when one is configured.
    web: Option<Arc<WebState>>,
    /// Checks basic-auth credentials (and remembers verified ones).
    authenticator: auth::Authenticator,
    /// Paths answered without basic auth (`server.auth_exempt_paths`).
    auth_exempt: HashSet<String>,
    /// The tenant header value set for each mapped user (`server.user_tenants`).
    user_tenants: HashMap<String, HeaderValue>,
    /// Users who see every slow query (`slow_query_log.admin_users`).
    slow_query_admins: HashSet<String>,
    /// What the status page shows that is fixed at start.
    status: crate::status::StatusInfo,
    /// Hit ratio and slowest panels per Grafana dashboard, for the status page.
    dashboards: Arc<crate::status::Dashboards>,
    /// Stored label, series and instant answers (`cache.answers`).
    answers: Option<Arc<crate::layers::cache::answer::AnswerCache>>,
    /// Label, series and instant requests in flight, for coalescing.
    inflight: Arc<crate::layers::cache::inflight::Inflight<answers::Shared>>,
}

impl Frontend {
    /// Builds the frontend from a validated config: the services come from
    /// [`stack::assemble()`], the edge keeps only its own settings.
    pub fn new(config: &Config) -> Result<Frontend, Error> {
        let d = &config.downstream;
        let metrics = Arc::new(Metrics::new());
        let services = stack::assemble(config, metrics.clone())?;
        let sl = &config.slow_query_log;
        let slow_log = SlowLog::new(
            SlowLogOptions {
                threshold: sl.threshold,
                path: sl.path.clone(),
                queue_size: sl.queue_size,
                ring_size: sl.ring_size,
            },
            metrics.clone(),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        let web = match &config.server.web_config_file {
            Some(path) => Some(Arc::new(
                WebState::start(path, metrics.clone())
                    .map_err(|e| Error::Startup(e.to_string()))?,
            )),
            None => None,
        };
        let mut user_tenants = HashMap::new();
        for (user, tenant) in &config.server.user_tenants {
            let value = HeaderValue::from_str(tenant).map_err(|_| {
                Error::Startup(format!(
                    "server.user_tenants: the tenant of {user:?} is not a header value"
                ))
            })?;
            user_tenants.insert(user.clone(), value);
        }
        Ok(Frontend {
            stack: services.range,
            answers: services.answers,
            inflight: Arc::default(),
            downstream: services.downstream,
            retry: services.retry,
            forward: ForwardHeaders::new(&d.forward_headers),
            metrics,
            max_body_bytes: config.server.max_body_bytes,
            gzip_responses: config.server.gzip_responses,
            cors: Cors::new(&config.server.cors_origin).map_err(|e| {
                Error::Internal(format!("server.cors_origin is not a valid pattern: {e}"))
            })?,
            ready_window: d.ready_window,
            probe_path: d.probe_path.clone(),
            grace_period: config.server.grace_period,
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            admission: (config.server.max_concurrent_requests > 0).then(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    config.server.max_concurrent_requests,
                ))
            }),
            deadline: d.deadline,
            health_check_interval: d.health_check_interval,
            slow_log: Arc::new(slow_log),
            slow_queries_api: sl.api,
            tenant_header: http::HeaderName::from_bytes(config.cache.tenant_header.as_bytes())
                .unwrap_or(http::HeaderName::from_static("x-scope-orgid")),
            cache_usage: services.cache_usage,
            closing: tokio::sync::watch::channel(false).0,
            web,
            authenticator: auth::Authenticator::new(),
            auth_exempt: config.server.auth_exempt_paths.iter().cloned().collect(),
            user_tenants,
            slow_query_admins: sl.admin_users.iter().cloned().collect(),
            status: crate::status::StatusInfo::new(config),
            dashboards: Arc::new(crate::status::Dashboards::new(
                crate::status::MAX_DASHBOARDS,
                crate::status::MAX_PANELS_PER_DASHBOARD,
            )),
        })
    }

    /// The slow-query log, e.g. to reopen its file on SIGHUP.
    pub fn slow_log(&self) -> Arc<SlowLog> {
        self.slow_log.clone()
    }

    /// Serves connections from `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let this = Arc::new(self);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The header-read timeout is armed for every request: its sleeps recycled.
            .timer(crate::timer::PooledTimer(crate::timer::SleepPool::new(
                TIMER_POOL,
            )))
            .header_read_timeout(this.header_read_timeout)
            .max_buf_size(hard_head_limit(this.max_header_bytes))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(hard_head_limit(this.max_header_bytes)).unwrap_or(u32::MAX),
            );
        let builder = Arc::new(builder);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        // Aborted when dropped, at the end of this function.
        let _reloader = this
            .web
            .as_ref()
            .map(|web| AbortOnDrop(web.clone().spawn_reloader()));
        // Aborted when dropped, at the end of this function.
        let _health_checks = (!this.health_check_interval.is_zero()).then(|| {
            AbortOnDrop(
                this.downstream
                    .spawn_health_checks(this.health_check_interval, this.probe_path.clone()),
            )
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            // Out of file descriptors and the like: back off briefly
                            // instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // The TLS configuration in force when the connection arrives.
                    let tls = this.web.as_ref().and_then(|web| web.current().tls.clone());
                    let (timeout, metrics) = (this.header_read_timeout, this.metrics.clone());
                    let this = this.clone();
                    let hyper_this = this.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let this = hyper_this.clone();
                        async move {
                            Ok::<_, Infallible>(this.handle(peer, req.map(ReqBody::Hyper)).await)
                        }
                    });
                    let Some(tls) = tls else {
                        // The own loop first; hyper takes over what it leaves (see `h1`).
                        // The watcher makes the drain at shutdown wait for the connection.
                        let (builder, watcher) = (builder.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            let options = this.h1_options();
                            let frontend = &*this;
                            let ended = h1::serve(stream, &options, &frontend.closing, |req| {
                                frontend.handle(peer, req)
                            })
                            .await;
                            if let h1::Ended::HandOff(io) = ended {
                                let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
                                if let Err(e) = watcher.watch(conn).await {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                            }
                        });
                        continue;
                    };
                    // The handshake runs in the connection's task, so a slow or
                    // plain-HTTP client never holds up the accept loop.
                    let (builder, watcher) = (builder.clone(), graceful.watcher());
                    tokio::spawn(async move {
                        let stream = match tls::accept(tls, stream, timeout).await {
                            Ok(stream) => stream,
                            Err(e) => {
                                let timed_out = matches!(e, tls::HandshakeError::TimedOut);
                                metrics.security().handshake_failure(timed_out);
                                tracing::debug!(%peer, error = ?e, "TLS handshake failed");
                                return;
                            }
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        this.closing.send_replace(true);
        tracing::info!(grace_period = ?this.grace_period, "shutting down: draining in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(this.grace_period) => {
                tracing::warn!("grace period over; closing remaining connections");
            }
        }
        Ok(())
    }

    /// The own HTTP/1.1 loop's limits.
    fn h1_options(&self) -> h1::Options {
        h1::Options {
            header_read_timeout: self.header_read_timeout,
            max_head_bytes: hard_head_limit(self.max_header_bytes),
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// Answers one request; never fails (errors become Prometheus error JSON). Runs in a
    /// span carrying the request id (and the trace id of a valid `traceparent`), so
    /// every log line of the request names it.
    async fn handle(&self, peer: SocketAddr, mut req: Request<ReqBody>) -> Response<Body> {
        // Measured as the client sent it, before the frontend adds anything.
        let head = head_bytes(&req);
        let request_id = crate::headers::request_id(req.headers());
        // Forwarded to the querier like a client's own id (when allow-listed).
        req.headers_mut()
            .insert(crate::headers::REQUEST_ID, request_id.clone());
        // Always visible ASCII: a kept client id passed the check of `request_id`, a new
        // one is hex digits.
        let id = request_id.to_str().unwrap_or_default();
        // The caller's trace (W3C `traceparent`), so a log line leads to its trace.
        let trace_id = crate::headers::trace_id(req.headers());
        let span =
            tracing::info_span!("request", request_id = %id, trace_id = tracing::field::Empty);
        if let Some(trace_id) = &trace_id {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        // Every answer on the API carries the CORS headers, whoever wrote it.
        let path = req.uri().path();
        let cors = (Cors::covers(path) || Cors::is_preflight(req.method(), path))
            .then(|| crate::headers::first(req.headers(), &header::ORIGIN).cloned());
        // One web config for the whole request, even if a reload lands meanwhile.
        let web = self.web.as_ref().map(|web| web.current());
        let mut resp = self
            .handle_request(peer, req, head, (&request_id, trace_id), web.as_deref())
            .instrument(span)
            .await;
        if let Some(origin) = cors {
            self.cors.apply(origin.as_ref(), resp.headers_mut());
        }
        for (name, value) in web.iter().flat_map(|web| &web.config.headers) {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        resp.headers_mut()
            .insert(crate::headers::REQUEST_ID, request_id);
        resp
    }

    async fn handle_request(
        &self,
        peer: SocketAddr,
        mut req: Request<ReqBody>,
        head: usize,
        (request_id, trace_id): (&HeaderValue, Option<String>),
        web: Option<&Loaded>,
    ) -> Response<Body> {
        // One clock reading for the request's arrival: its duration, its deadline and
        // the slow-query log's record.
        let arrived = tokio::time::Instant::now();
        let started = arrived.into_std();
        let _in_flight = self.metrics.start_request();
        let endpoint = Endpoint::of(req.uri().path());
        let method = req.method().clone();
        // A clone of the parsed URI shares its bytes: no copy of the path.
        let uri = req.uri().clone();
        let path = uri.path();
        // The request goes to its handler; an answer made here (an error, a preflight)
        // negotiates its coding from this, which most requests never need.
        let accept_encoding = self.accept_encoding(req.headers());
        let coding = || {
            accept_encoding
                .as_ref()
                .and_then(crate::encoding::negotiate_value)
        };
        if head > self.max_header_bytes {
            let resp = self.error_answer(
                &Error::HeadTooLarge {
                    size: head,
                    limit: self.max_header_bytes,
                },
                coding(),
            );
            self.metrics
                .observe_request(endpoint, resp.status(), started.elapsed());
            return resp;
        }
        let user = match self.authenticate(&req, web).await {
            Ok(user) => user,
            Err(why) => {
                self.metrics.security().auth_failure(why);
                let resp = auth::unauthorized();
                self.metrics
                    .observe_request(endpoint, resp.status(), started.elapsed());
                return resp;
            }
        };
        // A mapped user's tenant replaces whatever the client sent, before anything
        // (cache keys, the querier, the slow-query log) reads it.
        if let Some(tenant) = auth::tenant_of(&self.user_tenants, user.as_deref()) {
            req.headers_mut()
                .insert(self.tenant_header.clone(), tenant.clone());
        }
        // Overload: answer at once rather than queue; probes and scrapes are exempt. The
        // permit goes with the response body: a request counts until its answer is sent
        // whole (a streamed passthrough holds its querier connection until then).
        let permit = match (&self.admission, endpoint) {
            (_, Endpoint::healthy | Endpoint::ready | Endpoint::metrics) | (None, _) => None,
            (Some(permits), _) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.metrics.overload_refusal();
                    let resp = self.error_answer(&Error::Overloaded, coding());
                    self.metrics
                        .observe_request(endpoint, resp.status(), started.elapsed());
                    return resp;
                }
            },
        };
        // Query API reads; other `/api/` paths only when they read (GET).
        let logged =
            endpoint.is_query_api() && (endpoint != Endpoint::other_api || method == Method::GET);
        // Boxed: the record is several hundred bytes, and it would be moved with every
        // future that holds it.
        let mut pending = (self.slow_log.enabled() && logged).then(|| {
            Box::new(Pending::new(
                started,
                peer,
                (&method, req.uri(), req.headers()),
                &self.tenant_header,
                request_id,
                trace_id,
            ))
        });
        let resp = match (endpoint, &method) {
            // CORS preflight: answered here, as Prometheus answers it.
            _ if Cors::is_preflight(&method, path) => Ok(preflight(coding())),
            // Multipart forms (`curl -F`) are not decoded here: forwarded whole, as
            // the querier reads them (unsplit, uncached).
            (Endpoint::query_range, &Method::POST)
                if crate::model::query::is_multipart_content_type(
                    req.headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                ) =>
            {
                self.passthrough(req, arrived, pending.as_deref_mut()).await
            }
            // The answering paths are boxed: their futures are several kilobytes, and
            // unboxed they would make every request's future (moved at each poll level)
            // as large as the largest of them.
            (Endpoint::query_range, &Method::GET | &Method::POST) => {
                Box::pin(self.query_range(req, arrived, pending.as_deref_mut())).await
            }
            // Label values: GET only, as Prometheus serves them; the others also as a
            // form POST. Any other body is forwarded as it came.
            (Endpoint::labels | Endpoint::series | Endpoint::query, &Method::POST)
                if self.answers.is_some()
                    && crate::model::query::is_form_content_type(
                        req.headers()
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok()),
                    ) =>
            {
                Box::pin(self.cached_answer(req, endpoint, arrived, pending.as_deref_mut())).await
            }
            (
                Endpoint::labels | Endpoint::series | Endpoint::query | Endpoint::label_values,
                &Method::GET,
            ) if self.answers.is_some() => {
                Box::pin(self.cached_answer(req, endpoint, arrived, pending.as_deref_mut())).await
            }
            (Endpoint::healthy, _) => Ok(text(StatusCode::OK, "promql-frontend is Healthy.\n")),
            (Endpoint::ready, _) => Ok(self.ready().await),
            (Endpoint::metrics, _) => Ok(Box::pin(self.metrics_page(req.headers())).await),
            (Endpoint::slow_queries, &Method::GET) => {
                self.slow_queries(&req, self.visibility(&req, user.as_deref()))
            }
            (Endpoint::status_page, &Method::GET) => {
                let who = self.visibility(&req, user.as_deref());
                Box::pin(self.status_page(&req, who)).await
            }
            _ => self.passthrough(req, arrived, pending.as_deref_mut()).await,
        };
        let error = resp.as_ref().err().map(error_message);
        let resp = resp.unwrap_or_else(|e| self.error_answer(&e, coding()));
        let took = started.elapsed();
        self.metrics.observe_request(endpoint, resp.status(), took);
        tracing::debug!(
            %peer,
            %method,
            path,
            status = resp.status().as_u16(),
            took_ms = took.as_secs_f64() * 1e3,
            "request"
        );
        let observed = pending.map(|mut pending| {
            pending.outcome(resp.status(), error);
            (pending, self.slow_log.clone(), self.dashboards.clone())
        });
        // One wrapper for both, boxed once.
        match (observed, permit) {
            (None, None) => resp,
            (observed, permit) => resp.map(|body| Observed::new(body, observed, permit).boxed()),
        }
    }

    /// The basic-auth user of a request: `Ok(None)` when the web config lists no users or
    /// the path is exempt, the reason for a 401 otherwise.
    async fn authenticate(
        &self,
        req: &Request<ReqBody>,
        web: Option<&Loaded>,
    ) -> Result<Option<String>, crate::metrics::AuthFailure> {
        let Some(web) = web.filter(|web| !web.config.users.is_empty()) else {
            return Ok(None);
        };
        let path = req.uri().path();
        if self.auth_exempt.contains(path)
            || web.config.auth_excluded_paths.iter().any(|p| p == path)
        {
            return Ok(None);
        }
        self.authenticator
            .check(&web.config.users, req.headers().get(header::AUTHORIZATION))
            .await
            .map(Some)
    }

    /// What `user` (or an anonymous client) may see of the slow-query log and of the
    /// status page, given the request's tenant header.
    fn visibility(&self, req: &Request<ReqBody>, user: Option<&str>) -> crate::slowlog::Visibility {
        let tenant = req
            .headers()
            .get(&self.tenant_header)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        auth::slow_query_visibility(user, tenant.as_deref(), &self.slow_query_admins)
    }

    /// When the frontend stops waiting for a request that arrived at `arrived`:
    /// `downstream.deadline` later, or sooner when the client's `timeout` plus its
    /// backstop margin is shorter.
    fn deadline_for(
        &self,
        arrived: tokio::time::Instant,
        client_timeout: Option<&ClientTimeout>,
    ) -> tokio::time::Instant {
        arrived + client_timeout.map_or(self.deadline, |t| t.backstop(self.deadline))
    }
}

/// The part of a request's body that carries parameters: the whole body of a form POST,
/// nothing for any other request (Go's `ParseForm` reads no other body). A request's
/// parameters, as Prometheus reads them, are this body's pairs and then the query
/// string's ([`crate::model::query::query_pairs`]).
fn form_body(parts: &http::request::Parts, body: &Bytes) -> Bytes {
    let form = parts.method == Method::POST
        && !body.is_empty()
        && crate::model::query::is_form_content_type(
            crate::headers::first(&parts.headers, &header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
    if form { body.clone() } else { Bytes::new() }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a request body up to `limit` bytes; larger bodies are `BodyTooLarge` (413).
async fn read_body(headers: &HeaderMap, body: ReqBody, limit: usize) -> Result<Bytes, Error> {
    let body = match body {
        ReqBody::Read(bytes) if bytes.len() > limit => return Err(Error::BodyTooLarge { limit }),
        ReqBody::Read(bytes) => return Ok(bytes),
        ReqBody::Hyper(body) => body,
    };
    // Most requests (a GET) have no body: nothing to collect.
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::BodyTooLarge { limit }),
        Err(e) => Err(Error::ClientBody(e)),
    }
}

/// Idle header-read timers kept per server (see [`crate::timer`]): about one per
/// connection waiting for its next request, up to this many.
const TIMER_POOL: usize = 4096;

/// The size up to which the HTTP layer reads a request head: twice
/// `server.max_header_bytes`. Heads between the two are read whole and answered 431 with
/// Prometheus error JSON by [`head_bytes`]' check; a head beyond this is cut off by the
/// HTTP layer itself with a bare 431 (HTTP/1.1) or a refused stream (HTTP/2), so a
/// client cannot make the frontend buffer more than this per connection.
fn hard_head_limit(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_mul(2)
}

/// The bytes of a request's head as an HTTP/1.1 client sends it: the request line
/// (`METHOD target HTTP/1.1` and CRLF) and one `name: value` line per header.
fn head_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri().scheme_str().map_or(0, |s| s.len() + 3)
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum::<usize>()
        + line
}
