//! The client side: pooled keep-alive connections to one querier or to several
//! replicas of it: the frontend's own HTTP/1.1 client for `http://` endpoints (idle
//! connections in `pool.rs`, each exchange run in the request's task by `h1.rs`, the
//! request written from its parts), hyper-util's pooled client (TLS, HTTP/2 when the
//! querier offers it) for `https://`.
//!
//! [`Downstream`] is both the innermost tower service of the range-query stack
//! (`Service<RangeQuery>`) and the forwarder for every passthrough request. Each call is
//! one *attempt*: it picks an endpoint ([`endpoints`]: policy, passive health, endpoints
//! the request's earlier attempts tried), sends, and records the outcome in the
//! endpoint's health and in `/metrics`. Retrying is the retry layer's job.
//!
//! Timeouts: `connect_timeout` bounds opening a connection; an attempt is bounded by
//! `request_timeout` and by the request's deadline, whichever comes first (until the
//! response headers for a passthrough request, until the whole body for a range query).
//! A range query or an instant query passes the client's `timeout` on to the querier
//! (or the attempt's time limit when the client sent none). A
//! connection failure becomes `Error::Unavailable`, an expired timeout `Error::Timeout`,
//! a non-2xx answer `Error::Downstream` with the querier's body.

pub mod endpoints;
mod h1;
mod pool;
mod wire;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

pub use endpoints::{BalancePolicy, HealthOptions, HealthState};
pub use pool::ResponseBody;

use crate::error::Error;
use crate::headers::ForwardHeaders;
use crate::metrics::Metrics;
use crate::model::timeout::{ClientTimeout, format_timeout};
use crate::model::{QueryResponse, RangeQuery, RequestStats, Route};
use crate::{BoxFuture, headers};
use endpoints::{Endpoints, Transition};
use wire::{downstream_error, tls_config, too_large, with_timeout};

/// Connection and timeout settings for [`Downstream`].
#[derive(Clone)]
pub struct DownstreamOptions {
    /// Querier base URLs (replicas of one querier), each with an optional path prefix.
    pub urls: Vec<String>,
    /// How attempts are spread over `urls`.
    pub policy: BalancePolicy,
    /// When an endpoint is ejected.
    pub health: HealthOptions,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed per attempt (see the module docs).
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Extra CA certificates (PEM) trusted for `https://` queriers, besides the system's.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Largest range-query answer read from the querier (after gzip decoding).
    pub max_response_bytes: usize,
    /// Ask the querier for gzip range-query answers (else `identity`).
    pub gzip_answers: bool,
    /// Where attempts and endpoint health are counted.
    pub metrics: Arc<Metrics>,
}

/// A passthrough request, kept whole so that it can be sent again.
#[derive(Debug, Clone)]
pub struct ForwardRequest<'a> {
    /// The client's method.
    pub method: Method,
    /// The client's path and query string, appended to the endpoint's prefix (as parsed
    /// from the client's request: sent on without being copied when there is no prefix).
    pub path_and_query: http::uri::PathAndQuery,
    /// The client's headers: those `allow` passes are sent
    /// ([`ForwardHeaders::passes`]), picked as the request is written.
    pub headers: HeaderMap,
    /// The allow-list of request headers.
    pub allow: &'a ForwardHeaders,
    /// The whole request body.
    pub body: Bytes,
    /// Whether a failed attempt may be retried. Then a 4xx or 5xx answer is read whole
    /// and returned as `Error::Downstream` (every header, the body as it came) so that
    /// it can be classified.
    pub retryable: bool,
    /// Whether to set the querier's `timeout` parameter (instant queries): the
    /// client's own (see [`ClientTimeout::for_attempt`]), or the attempt's time limit
    /// when the client sent none.
    pub timeout_param: bool,
    /// The client's `timeout`, if it sent a valid one.
    pub client_timeout: Option<ClientTimeout>,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A handle to the querier endpoints; cheap to clone.
#[derive(Clone)]
pub struct Downstream {
    shared: Arc<Shared>,
}

/// One querier endpoint.
struct Target {
    /// The configured URL without a trailing slash: the endpoint's metric label (shared,
    /// so that recording an attempt copies no string).
    label: Arc<str>,
    /// `scheme://authority`, used to build request URIs, in errors and as metric label.
    origin: String,
    /// Path prefix without a trailing slash (`""` or `/prefix`).
    prefix: String,
    /// The scheme and authority of `origin`, parsed once: every request URI is built
    /// from them and its path, without formatting and parsing the whole URI again.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The `Host` header of a plain `http://` endpoint, made once. Such a connection is
    /// always HTTP/1.1, where the client would otherwise format the same value (host,
    /// and the port unless it is 80) for every request. `None` for `https://`, whose
    /// connection may turn out to be HTTP/2: the client decides there.
    host: Option<HeaderValue>,
    /// The own connection pool of a plain `http://` endpoint (`None`: hyper-util's
    /// client, for `https://`).
    pool: Option<Arc<pool::Pool>>,
}

struct Shared {
    client: HttpClient,
    targets: Vec<Target>,
    endpoints: Endpoints,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: usize,
    /// `Accept-Encoding` of range queries: `gzip` or `identity`.
    accept_encoding: HeaderValue,
    metrics: Arc<Metrics>,
    /// The attempts' deadlines (see [`crate::timer`]).
    sleeps: Arc<crate::timer::SleepPool>,
}

/// Idle attempt timers kept for reuse: about one per attempt in flight, up to this many.
const ATTEMPT_TIMERS: usize = 4096;

/// The path and query string of a request to the querier, before the endpoint's prefix.
#[derive(Clone, Copy)]
enum RequestPath<'a> {
    /// Text made here (a fixed path, the configured probe path).
    Text(&'a str),
    /// The client's own with its `timeout` parameter replaced (see [`with_timeout`]):
    /// made of the parsed one's bytes and of bytes that need no escaping.
    Derived(&'a str),
    /// The client's own, already parsed: used as it is when the endpoint has no prefix.
    Parsed(&'a http::uri::PathAndQuery),
}

impl<'a> RequestPath<'a> {
    /// The path and query as text, when it can be written to the querier as it is:
    /// origin-form (starts with `/`) and valid. The client's own was parsed already;
    /// text made here (a fixed path, the configured probe path, the client's path with
    /// the querier's `timeout` added) is checked for visible ASCII without `#`, which
    /// every request target the parser accepts is made of. Anything else is built and
    /// checked as a URI.
    fn origin_form(self) -> Option<&'a str> {
        let text = self.as_str();
        let plain = match self {
            RequestPath::Parsed(_) | RequestPath::Derived(_) => true,
            RequestPath::Text(text) => text.bytes().all(|b| b.is_ascii_graphic() && b != b'#'),
        };
        (plain && text.starts_with('/')).then_some(text)
    }

    fn as_str(self) -> &'a str {
        match self {
            RequestPath::Parsed(parsed) => parsed.as_str(),
            RequestPath::Text(text) | RequestPath::Derived(text) => text,
        }
    }
}

/// How an attempt ended, for health and metrics.
enum Outcome {
    /// An HTTP answer with this status.
    Answered(StatusCode),
    /// No usable answer.
    Failed(&'static str),
}

impl Downstream {
    /// Builds the client. Fails only for a URL that does not parse (config validation
    /// catches that first) or an unreadable CA file.
    pub fn new(opts: &DownstreamOptions) -> Result<Self, Error> {
        if opts.urls.is_empty() {
            return Err(Error::Internal("no downstream url".into()));
        }
        let mut targets = Vec::with_capacity(opts.urls.len());
        for url in &opts.urls {
            let uri: Uri = url
                .parse()
                .map_err(|e| Error::Internal(format!("downstream url {url:?}: {e}")))?;
            let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
                return Err(Error::Internal(format!(
                    "downstream url {url:?} needs a scheme and a host"
                )));
            };
            targets.push(Target {
                label: metric_label(url).into(),
                origin: format!("{scheme}://{authority}"),
                prefix: uri.path().trim_end_matches('/').to_owned(),
                scheme: scheme.clone(),
                authority: authority.clone(),
                host: plain_http_host(&uri),
                pool: None,
            });
        }

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(opts.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        for t in &mut targets {
            if t.host.is_some() {
                let origin = Uri::builder()
                    .scheme(t.scheme.clone())
                    .authority(t.authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|e| Error::Internal(format!("downstream url {}: {e}", t.label)))?;
                t.pool = Some(pool::Pool::new(
                    http.clone(),
                    origin,
                    opts.pool_max_idle_per_host,
                    opts.pool_idle_timeout,
                ));
            }
        }
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(opts.tls_ca_file.as_deref())?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.pool_max_idle_per_host)
            .build(tls);
        for t in &targets {
            opts.metrics.set_endpoint_healthy(&t.label, true);
        }
        Ok(Downstream {
            shared: Arc::new(Shared {
                client,
                endpoints: Endpoints::new(targets.len(), opts.policy, opts.health),
                targets,
                request_timeout: opts.request_timeout,
                connect_timeout: opts.connect_timeout,
                max_response_bytes: opts.max_response_bytes,
                accept_encoding: HeaderValue::from_static(if opts.gzip_answers {
                    "gzip"
                } else {
                    "identity"
                }),
                metrics: opts.metrics.clone(),
                sleeps: crate::timer::SleepPool::new(ATTEMPT_TIMERS),
            }),
        })
    }

    /// Each endpoint's metric label (its configured URL, credentials hidden), by index.
    pub fn labels(&self) -> Vec<String> {
        self.shared
            .targets
            .iter()
            .map(|t| t.label.to_string())
            .collect()
    }

    /// Each endpoint's metric label (its configured URL) and health, by index.
    pub fn health(&self) -> Vec<(String, HealthState)> {
        let e = &self.shared.endpoints;
        self.shared
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.label.to_string(), e.state(i)))
            .collect()
    }

    /// The endpoints' `scheme://host:port`, comma-separated, for logs and errors.
    pub fn describe(&self) -> String {
        let origins: Vec<&str> = self
            .shared
            .targets
            .iter()
            .map(|t| t.origin.as_str())
            .collect();
        origins.join(", ")
    }

    /// Whether some healthy endpoint answered within `window`; if none did, probes every
    /// endpoint at `path` at once and reports whether any answered (probes restore
    /// ejected endpoints that answer).
    pub async fn ready(&self, window: Duration, path: &str) -> bool {
        let e = &self.shared.endpoints;
        if (0..e.len()).any(|i| e.is_healthy(i) && e.answered_within(i, window)) {
            return true;
        }
        let mut probes = tokio::task::JoinSet::new();
        for i in 0..e.len() {
            let (this, path) = (self.clone(), path.to_owned());
            probes.spawn(async move { this.probe(i, &path).await });
        }
        let mut any = false;
        while let Some(done) = probes.join_next().await {
            any |= done.unwrap_or(false);
        }
        any
    }

    /// Sends `GET <prefix><path>` to endpoint `index` and reports whether any HTTP answer
    /// came back within the connect timeout (a probe must not hang as long as a query
    /// may). The result counts for the endpoint's health like any attempt.
    pub async fn probe(&self, index: usize, path: &str) -> bool {
        let s = &self.shared;
        let (none, empty) = (HeaderMap::new(), Bytes::new());
        let sent = self.send(
            index,
            &Method::GET,
            RequestPath::Text(path),
            &none,
            None,
            &empty,
        );
        let outcome = match tokio::time::timeout(s.connect_timeout, sent).await {
            Ok(Ok(resp)) => Outcome::Answered(resp.status()),
            // A probe path that is no valid request path was never sent: it says
            // nothing of the endpoint.
            Ok(Err(Error::BadData(_))) => return false,
            Ok(Err(_)) => Outcome::Failed("unavailable"),
            Err(_) => Outcome::Failed("timeout"),
        };
        let alive = matches!(outcome, Outcome::Answered(_));
        self.record(index, Instant::now(), &outcome, "probe");
        alive
    }

    /// Probes every endpoint every `interval` until the returned task is aborted.
    pub fn spawn_health_checks(
        &self,
        interval: Duration,
        path: String,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for i in 0..this.shared.targets.len() {
                    this.probe(i, &path).await;
                }
            }
        })
    }

    /// One attempt of a passthrough request: picks an endpoint (skipping those `route`
    /// tried), forwards the request and returns the querier's response with its body
    /// still streaming. For a retryable request a 5xx or 429 answer comes back as
    /// `Error::Downstream` instead.
    ///
    /// The attempt's time (until the answer's head) is added to `stats`.
    pub async fn forward(
        &self,
        req: &ForwardRequest<'_>,
        route: &Route,
        deadline: Option<Instant>,
        stats: &RequestStats,
    ) -> Result<Response<ResponseBody>, Error> {
        let s = &self.shared;
        let index = s.endpoints.pick(route.tried());
        route.mark(index);
        // One clock reading for the attempt's start, its budget and its timer.
        let started = Instant::now();
        let result = self.forward_to(index, req, deadline, started).await;
        let outcome = match &result {
            Ok(resp) => Outcome::Answered(resp.status()),
            Err(e) => outcome_of(e),
        };
        if let Some(took) = self.record(index, started, &outcome, "passthrough") {
            stats.record_downstream(took);
        }
        result
    }

    async fn forward_to(
        &self,
        index: usize,
        req: &ForwardRequest<'_>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Response<ResponseBody>, Error> {
        let (budget, limit) = self.attempt_budget(index, deadline, now)?;
        let (rewritten, body) = match req.timeout_param {
            true => with_timeout(
                req.path_and_query.as_str(),
                &req.body,
                &querier_timeout(req.client_timeout.as_ref(), budget),
            ),
            false => (None, req.body.clone()),
        };
        let path = match &rewritten {
            Some(text) => RequestPath::Derived(text),
            None => RequestPath::Parsed(&req.path_and_query),
        };
        let exchange = async {
            let resp = self
                .send(
                    index,
                    &req.method,
                    path,
                    &req.headers,
                    Some(req.allow),
                    &body,
                )
                .await?;
            // Error answers to reads are small: read them whole, to classify them for
            // a retry and to log the querier's message.
            let status = resp.status();
            if !(req.retryable && (status.is_client_error() || status.is_server_error())) {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            let body = self.read_body(index, body).await?;
            // Kept whole (all headers, the body as it came, `Content-Encoding` included)
            // so that a final answer reaches the client as the querier sent it.
            headers::strip_hop_by_hop(&mut parts.headers);
            parts.headers.remove(header::CONTENT_LENGTH);
            Err(Error::Downstream {
                status: parts.status,
                headers: Box::new(parts.headers),
                body,
            })
        };
        let mut expired = self.shared.sleeps.sleep_until(now + budget);
        let mut exchange = std::pin::pin!(exchange);
        // The answer first, as `tokio::time::timeout` does: one that is ready counts
        // even when the deadline passed meanwhile.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            Pin::new(&mut expired)
                .poll(cx)
                .map(|()| Err(self.timeout_error(index, budget, limit)))
        })
        .await
    }

    /// One attempt of a range query: `POST <prefix>/api/v1/query_range` with a form body
    /// to an endpoint the query's route has not tried, reading and decoding the whole
    /// answer.
    pub async fn query_range(&self, query: RangeQuery) -> Result<QueryResponse, Error> {
        let s = &self.shared;
        let index = s
            .endpoints
            .pick(query.route.as_ref().map_or(0, |r| r.tried()));
        if let Some(route) = &query.route {
            route.mark(index);
        }
        let started = Instant::now();
        let stats = query.stats.clone();
        let result = self.query_range_at(index, query, started).await;
        let outcome = match &result {
            Ok(_) => Outcome::Answered(StatusCode::OK),
            Err(e) => outcome_of(e),
        };
        if let Some(took) = self.record(index, started, &outcome, "query_range") {
            stats.record_downstream(took);
        }
        result
    }

    async fn query_range_at(
        &self,
        index: usize,
        mut query: RangeQuery,
        now: Instant,
    ) -> Result<QueryResponse, Error> {
        let (budget, limit) = self.attempt_budget(index, query.deadline, now)?;
        if query.deadline.is_some() {
            // The querier enforces the client's timeout itself, and stops evaluating
            // when the frontend stops waiting for this attempt.
            let told = querier_timeout(query.client_timeout.as_ref(), budget);
            query.params.retain(|(k, _)| k != "timeout");
            query.params.push(("timeout".to_owned(), told));
        }
        let mut headers = query.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        // The frontend reads this body, so it chooses its coding (`downstream.compression`;
        // a gzip answer is decoded); the client's own Accept-Encoding applies to the
        // frontend's response instead.
        headers.insert(header::ACCEPT_ENCODING, self.shared.accept_encoding.clone());
        let form = Bytes::from(query.to_form());
        let path = RequestPath::Text("/api/v1/query_range");
        let shared = &self.shared;
        let limit_bytes = shared.max_response_bytes;
        let exchange = async {
            // A POST: never repeated by the pool (the retry layer decides).
            let resp = self
                .send(index, &Method::POST, path, &headers, None, &form)
                .await?;
            let (parts, body) = resp.into_parts();
            let body = self.read_body(index, body).await?;
            Ok::<_, Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(budget, exchange)
            .await
            .map_err(|_| self.timeout_error(index, budget, limit))??;
        if !parts.status.is_success() {
            return Err(downstream_error(parts, body, limit_bytes));
        }
        let body = crate::encoding::decode(&parts.headers, body, limit_bytes)?;
        let mut answer = QueryResponse::from_slice(&body)?;
        answer.no_store = parts
            .headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
            });
        Ok(answer)
    }

    /// Sends one request to endpoint `index`: on the endpoint's own pool (`http://`) or
    /// with hyper-util's client (`https://`). `headers` are sent without hop-by-hop ones
    /// and with the endpoint's `Host`; with `allow`, only those it passes.
    async fn send(
        &self,
        index: usize,
        method: &Method,
        path: RequestPath<'_>,
        headers: &HeaderMap,
        allow: Option<&ForwardHeaders>,
        body: &Bytes,
    ) -> Result<Response<ResponseBody>, Error> {
        let target = &self.shared.targets[index];
        let transport = |e: pool::ClientError| self.transport_error(index, e.into());
        if let (Some(pool), Some(host)) = (&target.pool, &target.host)
            && let Some(path) = path.origin_form()
        {
            // Written as it is: nothing to build or parse.
            let req = h1::Outgoing {
                method,
                prefix: &target.prefix,
                path,
                headers,
                allow,
                host: Some(host),
                body,
            };
            return pool.send(&req).await.map_err(transport);
        }
        let headers = match allow {
            Some(allow) => allow.select_passthrough(headers),
            None => headers.clone(),
        };
        let req = self.build_request(index, method.clone(), path, headers, body.clone())?;
        match &target.pool {
            Some(pool) => pool.send(&h1::Outgoing::of(&req)).await.map_err(transport),
            None => Ok(self
                .shared
                .client
                .request(req.map(Full::new))
                .await
                .map_err(|e| self.transport_error(index, e.into()))?
                .map(ResponseBody::plain)),
        }
    }

    /// Reads a whole answer body of at most `max_response_bytes`.
    async fn read_body(&self, index: usize, body: ResponseBody) -> Result<Bytes, Error> {
        let limit = self.shared.max_response_bytes;
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
            Err(e) => Err(self.transport_error(index, e)),
        }
    }

    /// The time this attempt may take and which limit that is.
    fn attempt_budget(
        &self,
        index: usize,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(Duration, &'static str), Error> {
        let per_attempt = self.shared.request_timeout;
        let Some(deadline) = deadline else {
            return Ok((per_attempt, "downstream.request_timeout"));
        };
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(self.timeout_error(index, Duration::ZERO, DEADLINE));
        }
        Ok(if left < per_attempt {
            (left, DEADLINE)
        } else {
            (per_attempt, "downstream.request_timeout")
        })
    }

    fn build_request(
        &self,
        index: usize,
        method: Method,
        path: RequestPath<'_>,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Bytes>, Error> {
        let target = &self.shared.targets[index];
        let path_and_query = path.as_str();
        let invalid = |e: http::Error| {
            Error::BadData(format!(
                "invalid request path {}: {e}",
                crate::quote::go_quote(path_and_query)
            ))
        };
        let uri = if path_and_query.starts_with('/') {
            let path = match (target.prefix.as_str(), path) {
                ("", RequestPath::Parsed(parsed)) => Ok(parsed.clone()),
                ("", RequestPath::Text(_) | RequestPath::Derived(_)) => {
                    http::uri::PathAndQuery::try_from(path_and_query)
                }
                (prefix, _) => {
                    http::uri::PathAndQuery::try_from(format!("{prefix}{path_and_query}"))
                }
            }
            .map_err(|e| invalid(e.into()))?;
            match target.pool {
                // The own pool sends the URI as it is: origin-form, as hyper-util's
                // client writes it on an HTTP/1.1 connection.
                Some(_) => Uri::from(path),
                None => Uri::builder()
                    .scheme(target.scheme.clone())
                    .authority(target.authority.clone())
                    .path_and_query(path)
                    .build()
                    .map_err(invalid)?,
            }
        } else {
            // Not origin-form (`*`, say): the whole text parsed as one URI, as it always
            // was, so that such a target fails or passes exactly as before.
            let uri = format!("{}{}{}", target.origin, target.prefix, path_and_query)
                .parse::<Uri>()
                .map_err(|e| invalid(e.into()))?;
            match target.pool {
                Some(_) => origin_form(&uri),
                None => uri,
            }
        };
        headers::strip_hop_by_hop(&mut headers);
        match &target.host {
            Some(host) => headers.insert(header::HOST, host.clone()),
            None => headers.remove(header::HOST),
        };
        headers.remove(header::CONTENT_LENGTH);
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// Feeds an attempt's outcome into the endpoint's health and the metrics; the
    /// attempt's time (none for a probe, which is not timed).
    fn record(
        &self,
        index: usize,
        started: Instant,
        outcome: &Outcome,
        kind: &'static str,
    ) -> Option<Duration> {
        let s = &self.shared;
        let target = &s.targets[index];
        // Runs under the endpoint's lock: the gauge always shows the latest state.
        let publish = |t: Transition| match t {
            Transition::Unchanged => {}
            Transition::Ejected => {
                s.metrics.set_endpoint_healthy(&target.label, false);
                tracing::warn!(
                    endpoint = %target.label,
                    period = %humantime::format_duration(s.endpoints.ejection_period()),
                    "querier endpoint ejected after repeated connection failures"
                );
            }
            Transition::Restored => {
                s.metrics.set_endpoint_healthy(&target.label, true);
                tracing::info!(endpoint = %target.label, "querier endpoint answers again");
            }
        };
        let label = match outcome {
            Outcome::Answered(status) => {
                s.endpoints.record_answer(index, publish);
                crate::metrics::status_outcome(*status)
            }
            Outcome::Failed(reason @ "unavailable") => {
                s.endpoints.record_failure(index, publish);
                reason
            }
            Outcome::Failed(reason) => reason,
        };
        let took = (kind != "probe").then(|| started.elapsed());
        s.metrics
            .downstream_attempt(&target.label, kind, label, took);
        took
    }

    fn timeout_error(&self, index: usize, after: Duration, limit: &'static str) -> Error {
        Error::Timeout {
            endpoint: self.shared.targets[index].origin.clone(),
            after,
            limit,
        }
    }

    /// A failure to exchange bytes with the querier: refused or timed-out connections,
    /// TLS failures, resets. The cause chain says which.
    fn transport_error(&self, index: usize, source: crate::error::BoxError) -> Error {
        let endpoint = self.shared.targets[index].origin.clone();
        // hyper-util words an expired connect timeout as "deadline has elapsed": say
        // which timeout it was.
        if crate::error::error_chain(source.as_ref()).contains("deadline has elapsed") {
            return Error::Unavailable {
                endpoint,
                source: format!(
                    "no connection within {} (downstream.connect_timeout)",
                    humantime::format_duration(self.shared.connect_timeout)
                )
                .into(),
            };
        }
        Error::Unavailable { endpoint, source }
    }
}

/// The `timeout` an attempt the frontend waits `budget` for tells the querier: the
/// client's (see [`ClientTimeout::for_attempt`]), or `budget` when it sent none.
fn querier_timeout(client: Option<&ClientTimeout>, budget: Duration) -> String {
    match client {
        Some(t) => t.for_attempt(Instant::now(), budget).into_owned(),
        None => format_timeout(budget),
    }
}

/// Name of the request-deadline limit in timeout errors.
const DEADLINE: &str = "the request's deadline: downstream.deadline or its timeout parameter";

fn outcome_of(e: &Error) -> Outcome {
    match e {
        Error::Downstream { status, .. } => Outcome::Answered(*status),
        Error::Unavailable { .. } => Outcome::Failed("unavailable"),
        Error::Timeout { .. } => Outcome::Failed("timeout"),
        Error::BadResponse(_) | Error::ResponseTooLarge { .. } => Outcome::Failed("bad_response"),
        _ => Outcome::Failed("other"),
    }
}

impl tower::Service<RangeQuery> for Downstream {
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, query: RangeQuery) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.query_range(query).await })
    }
}

/// The `Host` header the HTTP/1.1 client sends to a plain `http://` endpoint: its host,
/// and `:port` unless the port is 80. `None` for other schemes.
fn plain_http_host(uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    let value = match uri.port() {
        Some(port) if port.as_u16() != 80 => format!("{host}:{}", port.as_str()),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// The origin-form of `uri` (its path and query, `/` when it has none), as hyper-util's
/// client sends an absolute URI on an HTTP/1.1 connection.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(Uri::default, |pq| Uri::from(pq.clone()))
}

/// An endpoint's label in `/metrics`, logs and the status page: its configured URL
/// without a trailing slash, with a password or token in it replaced (`/metrics` is
/// readable by whoever scrapes it).
fn metric_label(url: &str) -> String {
    let shown = crate::status::redact::redact_url(url).unwrap_or_else(|| url.to_owned());
    shown.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod label_tests {
    #[test]
    fn plain_http_endpoints_get_the_host_header_the_client_would_send() {
        let host = |url: &str| {
            let uri: http::Uri = url.parse().expect("uri");
            super::plain_http_host(&uri).map(|v| v.to_str().expect("ascii").to_owned())
        };
        assert_eq!(
            host("http://127.0.0.1:9090").as_deref(),
            Some("127.0.0.1:9090")
        );
        assert_eq!(
            host("http://prom.example/prefix").as_deref(),
            Some("prom.example")
        );
        assert_eq!(
            host("http://prom.example:80").as_deref(),
            Some("prom.example")
        );
        assert_eq!(
            host("http://ops:pw@[::1]:9090/").as_deref(),
            Some("[::1]:9090")
        );
        assert_eq!(host("https://thanos.example:10902"), None);
    }

    #[test]
    fn labels_hide_credentials() {
        assert_eq!(
            super::metric_label("http://127.0.0.1:9090/"),
            "http://127.0.0.1:9090"
        );
        let label = super::metric_label("https://ops:s3cret@thanos.example:10902/prefix");
        assert!(!label.contains("s3cret"), "{label}");
        assert!(label.contains("thanos.example:10902/prefix"), "{label}");
    }
}
