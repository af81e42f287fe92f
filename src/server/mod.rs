//! The HTTP front door: accepts connections (HTTP/1.1 and h2c), routes requests, and is
//! the only place where an [`Error`] becomes an HTTP response.
//!
//! Routes:
//! - `/api/v1/query_range` (GET or POST form): decoded into a [`RangeQuery`], sent
//!   through the range-query stack (`stack.rs`), encoded back.
//! - `/-/healthy`, `/-/ready`, `/metrics`, `/api/v1/slow_queries`: answered locally.
//! - everything else: forwarded unchanged (method, path, query string, body, allow-listed
//!   headers) and the querier's response streamed back with hop-by-hop headers removed.
//!
//! Shutdown: when the shutdown future resolves the listener closes, in-flight requests
//! get up to the grace period to finish, and then the remaining connections are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::CacheBackendKind;
use crate::config::Config;
use crate::downstream::{Downstream, DownstreamOptions, ForwardRequest, HealthOptions};
use crate::error::{BoxError, Error, error_type_for_status};
use crate::headers::{ForwardHeaders, strip_hop_by_hop};
use crate::layers::cache::backend::Backend;
use crate::layers::cache::batch::Batching;
use crate::layers::cache::key::KeyOptions;
use crate::layers::cache::memory::MemoryBackend;
use crate::layers::cache::redis::{RedisBackend, RedisOptions};
use crate::layers::cache::response::{ResponseCache, Stored};
use crate::layers::cache::tiered::Tiered;
use crate::layers::cache::{CacheLayer, CacheOptions, system_clock};
use crate::layers::retry::{RetryOptions, RetryPolicy};
use crate::layers::split::SplitOptions;
use crate::layers::validate::ValidateOptions;
use crate::metrics::{Endpoint, Metrics};
use crate::model::query::{form_pairs, is_form_content_type};
use crate::model::time::parse_duration_ns;
use crate::model::{RangeQuery, RequestStats};
use crate::slowlog::{SlowLog, SlowLogOptions};
use crate::stack::{self, RangeService};
use observe::{Admitted, Lines, Observed, Pending, error_message};
use tracing::Instrument;

mod observe;

/// Response body type of the server: a local buffer or the querier's stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// Responses the frontend builds itself are gzipped only above this size; smaller
/// bodies do not gain enough to pay for the CPU.
const GZIP_MIN_BYTES: usize = 1024;

/// Everything a request handler needs; shared by all connections.
pub struct Frontend {
    downstream: Downstream,
    retry: RetryPolicy,
    stack: RangeService,
    forward: ForwardHeaders,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    gzip_responses: bool,
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
    /// Whole answers to exact repeats (see `layers::cache::response`).
    response_cache: Option<ResponseCache>,
    tenant_header: http::HeaderName,
    /// In-process cache tiers, whose size `/metrics` reports.
    memory_caches: Vec<Arc<MemoryBackend>>,
    /// Becomes true when shutdown starts (ends `follow` streams).
    closing: tokio::sync::watch::Sender<bool>,
}

impl Frontend {
    /// Builds the frontend from a validated config.
    pub fn new(config: &Config) -> Result<Frontend, Error> {
        let d = &config.downstream;
        let metrics = Arc::new(Metrics::new());
        let downstream = Downstream::new(&DownstreamOptions {
            urls: d.endpoint_urls(),
            policy: d.policy,
            health: HealthOptions {
                eject_after: d.eject_after_failures,
                ejection_period: d.ejection_period,
            },
            metrics: metrics.clone(),
            connect_timeout: d.connect_timeout,
            request_timeout: d.request_timeout,
            pool_idle_timeout: d.pool_idle_timeout,
            pool_max_idle_per_host: d.pool_max_idle_per_host,
            tls_ca_file: d.tls_ca_file.clone(),
            max_response_bytes: d.max_response_bytes,
        })?;
        let q = &config.query_range;
        let r = &config.retry;
        let retry = RetryPolicy::new(
            RetryOptions {
                max_retries: r.max_retries,
                backoff_base: r.backoff_base,
                backoff_cap: r.backoff_cap,
                max_retry_after: r.max_retry_after,
                budget_percent: r.budget_percent,
                budget_min_per_second: r.budget_min_per_second,
                budget_window: r.budget_window,
            },
            metrics.clone(),
            downstream.labels(),
        );
        let mut memory_caches = Vec::new();
        let cache = match config.cache.enabled {
            true => Some(cache_layer(config, metrics.clone(), &mut memory_caches)?),
            false => None,
        };
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
        let stack_opts = stack::StackOptions {
            validate: ValidateOptions {
                max_query_length: q.max_query_length,
            },
            align_start_end_with_step: q.align_start_end_with_step,
            split: SplitOptions {
                interval: q.split_interval,
                max_query_parallelism: q.max_query_parallelism,
                max_inflight: q.max_inflight_pieces,
            },
            cache,
            retry: retry.clone(),
        };
        Ok(Frontend {
            stack: stack::build(downstream.clone(), stack_opts),
            downstream,
            retry,
            forward: ForwardHeaders::new(&d.forward_headers),
            metrics,
            max_body_bytes: config.server.max_body_bytes,
            gzip_responses: config.server.gzip_responses,
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
            response_cache: (config.cache.enabled && config.cache.response_capacity_bytes > 0)
                .then(|| {
                    ResponseCache::new(
                        config.cache.response_capacity_bytes,
                        config.cache.ttl,
                        key_options(config),
                        config.cache.max_freshness,
                    )
                }),
            tenant_header: http::HeaderName::from_bytes(config.cache.tenant_header.as_bytes())
                .unwrap_or(http::HeaderName::from_static("x-scope-orgid")),
            memory_caches,
            closing: tokio::sync::watch::channel(false).0,
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
            .timer(TokioTimer::new())
            .header_read_timeout(this.header_read_timeout)
            .max_buf_size(hard_head_limit(this.max_header_bytes))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(hard_head_limit(this.max_header_bytes)).unwrap_or(u32::MAX),
            );
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                    let this = this.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.handle(peer, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
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

    /// Answers one request; never fails (errors become Prometheus error JSON). Runs in a
    /// span carrying the request id, so every log line of the request names it.
    async fn handle(&self, peer: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
        // Measured as the client sent it, before the frontend adds anything.
        let head = head_bytes(&req);
        let request_id = crate::headers::request_id(req.headers());
        // Forwarded to the querier like a client's own id (when allow-listed).
        req.headers_mut()
            .insert(crate::headers::REQUEST_ID, request_id.clone());
        let id = String::from_utf8_lossy(request_id.as_bytes()).into_owned();
        let span = tracing::info_span!("request", request_id = %id);
        let mut resp = self
            .handle_request(peer, req, head, &id)
            .instrument(span)
            .await;
        resp.headers_mut()
            .insert(crate::headers::REQUEST_ID, request_id);
        resp
    }

    async fn handle_request(
        &self,
        peer: SocketAddr,
        req: Request<Incoming>,
        head: usize,
        request_id: &str,
    ) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.metrics.start_request();
        let endpoint = Endpoint::of(req.uri().path());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        if head > self.max_header_bytes {
            let resp = error_response(&Error::HeadTooLarge {
                size: head,
                limit: self.max_header_bytes,
            });
            self.metrics
                .observe_request(endpoint, resp.status(), started.elapsed());
            return resp;
        }
        // Overload: answer at once rather than queue; probes and scrapes are exempt. The
        // permit goes with the response body: a request counts until its answer is sent
        // whole (a streamed passthrough holds its querier connection until then).
        let permit = match (&self.admission, endpoint) {
            (_, Endpoint::healthy | Endpoint::ready | Endpoint::metrics) | (None, _) => None,
            (Some(permits), _) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let resp = error_response(&Error::Overloaded);
                    self.metrics
                        .observe_request(endpoint, resp.status(), started.elapsed());
                    return resp;
                }
            },
        };
        // Query API reads; other `/api/` paths only when they read (GET).
        let logged =
            endpoint.is_query_api() && (endpoint != Endpoint::other_api || method == Method::GET);
        let mut pending = (self.slow_log.enabled() && logged).then(|| {
            Pending::new(
                peer,
                &method,
                &path,
                req.headers(),
                &self.tenant_header,
                request_id,
            )
        });
        let resp = match (endpoint, &method) {
            // Multipart forms (`curl -F`) are not decoded here: forwarded whole, as
            // the querier reads them (unsplit, uncached).
            (Endpoint::query_range, &Method::POST)
                if crate::model::query::is_multipart_content_type(
                    req.headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                ) =>
            {
                self.passthrough(req, pending.as_mut()).await
            }
            (Endpoint::query_range, &Method::GET | &Method::POST) => {
                self.query_range(req, pending.as_mut()).await
            }
            (Endpoint::healthy, _) => Ok(text(StatusCode::OK, "promql-frontend is Healthy.\n")),
            (Endpoint::ready, _) => Ok(self.ready().await),
            (Endpoint::metrics, _) => Ok(self.metrics_page(req.headers()).await),
            (Endpoint::slow_queries, &Method::GET) => self.slow_queries(&req),
            _ => self.passthrough(req, pending.as_mut()).await,
        };
        let error = resp.as_ref().err().map(error_message);
        let resp = resp.unwrap_or_else(|e| error_response(&e));
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
        let resp = match pending {
            Some(mut pending) => {
                pending.outcome(resp.status(), error);
                let log = self.slow_log.clone();
                resp.map(|body| Observed::new(body, pending, log).boxed())
            }
            None => resp,
        };
        match permit {
            Some(permit) => resp.map(|body| Admitted::new(body, permit).boxed()),
            None => resp,
        }
    }

    async fn query_range(
        &self,
        req: Request<Incoming>,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, self.max_body_bytes).await?;
        let pairs = request_pairs(&parts, &body);
        let mut pending = pending;
        if let Some(p) = pending.as_deref_mut() {
            // What the client asked, even when it is rejected below.
            p.read_params(&pairs);
        }
        let mut query = RangeQuery::from_form(pairs, self.forward.select(&parts.headers))?;
        let mut request_headers = parts.headers.clone();
        strip_hop_by_hop(&mut request_headers);
        query.request_headers = request_headers;
        query.deadline = Some(self.deadline_for(query.client_timeout()));
        let stats = query.stats.clone();
        if let Some(p) = pending.as_deref_mut() {
            p.range_query(
                &query.query,
                query.start_ms,
                query.end_ms,
                query.step_ns,
                stats.clone(),
            );
        }
        let lookup = self
            .response_cache
            .as_ref()
            .and_then(|rc| rc.lookup_for(&query));
        if let (Some(rc), Some(l)) = (&self.response_cache, &lookup) {
            if let Some(hit) = rc.get(l).await {
                self.metrics.cache_lookup("response", "hit");
                RequestStats::bump(&stats.cache_hits);
                if let Some(p) = pending {
                    p.answer_counts(hit.series, hit.samples);
                }
                let mut resp = self.stored_response(&parts.headers, &hit);
                resp.headers_mut()
                    .insert("x-cache", HeaderValue::from_static("hit"));
                return Ok(resp);
            }
            if l.read {
                self.metrics.cache_lookup("response", "miss");
            }
        }
        let end_ms = query.end_ms;
        let answer = self.stack.clone().oneshot(query).await;
        // 0 when validation rejected the query before the split.
        let pieces = stats.pieces.load(std::sync::atomic::Ordering::Relaxed);
        if pieces > 0 {
            self.metrics.query_pieces(pieces);
        }
        let answer = answer?;
        if let Some(p) = pending {
            let (series, samples) = answer.counts();
            p.answer_counts(series, samples);
        }
        let json = Bytes::from(answer.encode());
        let outcome = stats.cache_outcome();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let skipped = stats
            .cache_skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut resp = match (&self.response_cache, lookup) {
            (Some(rc), Some(l))
                if outcome.is_some()
                    && rc.storable(
                        end_ms,
                        now_ms,
                        skipped,
                        answer.is_partial() || answer.no_store,
                    ) =>
            {
                let (series, samples) = answer.counts();
                let stored = rc.put(l, json, series, samples).await;
                self.stored_response(&parts.headers, &stored)
            }
            _ => self.json_response(&parts.headers, json),
        };
        if let Some(outcome) = outcome {
            resp.headers_mut()
                .insert("x-cache", HeaderValue::from_static(outcome));
        }
        Ok(resp)
    }

    async fn passthrough(
        &self,
        req: Request<Incoming>,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, self.max_body_bytes).await?;
        let mut headers = self.forward.select(&parts.headers);
        let content_type = parts.headers.get(header::CONTENT_TYPE);
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.clone());
        }
        let content_type = content_type.and_then(|v| v.to_str().ok());
        let api = parts.uri.path().starts_with("/api/");
        let retryable = is_idempotent_read(&parts.method, parts.uri.path(), content_type, &body);
        // The client's `timeout` parameter (URL or form) can shorten the deadline.
        let pairs = request_pairs(&parts, &body);
        let mut pending = pending;
        if let Some(p) = pending.as_deref_mut() {
            p.read_params(&pairs);
        }
        let client_timeout = pairs
            .iter()
            .find(|(k, _)| k == "timeout")
            .and_then(|(_, v)| parse_duration_ns(v).ok())
            .map(|ns| Duration::from_nanos(ns.max(0) as u64));
        let deadline = self.deadline_for(client_timeout);
        let request = ForwardRequest {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
            headers,
            body,
            retryable,
            timeout_param: retryable && parts.uri.path() == "/api/v1/query",
        };
        let downstream = &self.downstream;
        let stats = Arc::new(crate::model::RequestStats::default());
        if let Some(p) = pending.as_deref_mut() {
            p.stats(stats.clone());
        }
        let attempt = |route: Arc<crate::model::Route>| {
            let (request, stats) = (&request, &stats);
            async move {
                let started = Instant::now();
                let result = downstream.forward(request, &route, Some(deadline)).await;
                stats.record_downstream(started.elapsed());
                result
            }
        };
        let result = if retryable {
            self.retry.run(Some(deadline), Some(&stats), attempt).await
        } else {
            attempt(Arc::default()).await
        };
        let resp = match result {
            Ok(resp) => resp,
            // The querier's final error answer, read whole to classify it: passed on as
            // it came (status, headers, body), except that an API path's 5xx without
            // Prometheus JSON (a querier starting up answers `503 Service Unavailable`
            // in plain text, a load balancer an HTML page) becomes error JSON with the
            // same status, as API clients expect.
            Err(err @ Error::Downstream { .. }) => {
                if let Some(p) = pending {
                    p.error(error_message(&err));
                }
                if api
                    && let Error::Downstream {
                        status,
                        headers,
                        body,
                    } = &err
                    && status.is_server_error()
                    && !looks_like_json_object(body)
                    && !headers.contains_key(header::CONTENT_ENCODING)
                {
                    return Ok(error_response(&err));
                }
                let Error::Downstream {
                    status,
                    headers,
                    body,
                } = err
                else {
                    return Err(err);
                };
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                *resp.headers_mut() = *headers;
                return Ok(resp);
            }
            Err(e) => return Err(e),
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed(),
        ))
    }

    /// When a request received now must be answered: `downstream.deadline` from now, or
    /// sooner when the client's `timeout` parameter says so.
    fn deadline_for(&self, client_timeout: Option<Duration>) -> tokio::time::Instant {
        let allowed = client_timeout.map_or(self.deadline, |t| t.min(self.deadline));
        tokio::time::Instant::now() + allowed
    }

    async fn ready(&self) -> Response<Body> {
        if self
            .downstream
            .ready(self.ready_window, &self.probe_path)
            .await
        {
            text(StatusCode::OK, "promql-frontend is Ready.\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "no querier endpoint ({}) has answered within {}\n",
                    self.downstream.describe(),
                    humantime::format_duration(self.ready_window)
                ),
            )
        }
    }

    /// `GET /api/v1/slow_queries`: the last `limit` (default all kept) slow-query log
    /// lines, newest first, as `{"status":"success","data":[...]}`; with `follow=true`
    /// new lines as they are logged, as newline-delimited JSON, until shutdown.
    fn slow_queries(&self, req: &Request<Incoming>) -> Result<Response<Body>, Error> {
        let pairs = form_pairs(req.uri().query(), None, &[]);
        let first = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let limit = match first("limit") {
            None | Some("") => usize::MAX,
            Some(v) => v.parse::<usize>().map_err(|_| {
                Error::BadData(format!(
                    "invalid parameter \"limit\": {v:?} is not a non-negative integer"
                ))
            })?,
        };
        let follow = match first("follow") {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(v) => {
                return Err(Error::BadData(format!(
                    "invalid parameter \"follow\": {v:?} is not true or false"
                )));
            }
        };
        if !self.slow_queries_api {
            return Err(Error::NotFound(
                "the slow-query API is off (slow_query_log.api = false)".into(),
            ));
        }
        if !follow {
            let mut json = b"{\"status\":\"success\",\"data\":[".to_vec();
            for (i, line) in self.slow_log.recent(limit).iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(line.trim_ascii_end());
            }
            json.extend_from_slice(b"]}");
            return Ok(self.json_response(req.headers(), json));
        }
        let mut lines = self.slow_log.follow();
        let mut closing = self.closing.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    line = lines.recv() => line,
                    _ = closing.wait_for(|c| *c) => break,
                    () = tx.closed() => break,
                };
                match line {
                    // A follower that does not read must not hold up shutdown.
                    Ok(line) => tokio::select! {
                        sent = tx.send(line) => if sent.is_err() { break },
                        _ = closing.wait_for(|c| *c) => break,
                    },
                    // A follower that fell behind skips what it missed.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let mut resp = Response::new(Lines(rx).boxed());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `/metrics`: OpenMetrics for clients that ask for it (Prometheus does), the
    /// classic Prometheus text format otherwise (curl, `promtool check metrics`).
    async fn metrics_page(&self, req_headers: &HeaderMap) -> Response<Body> {
        for cache in &self.memory_caches {
            let (entries, bytes) = cache.usage().await;
            self.metrics.cache_held("memory", entries, bytes);
        }
        if let Some(rc) = &self.response_cache {
            let (entries, bytes) = rc.usage().await;
            self.metrics.cache_held("response", entries, bytes);
        }
        let openmetrics = req_headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let text = self.metrics.encode();
        let (body, content_type) = if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                crate::metrics::to_prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = Response::new(full(Bytes::from(body)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    }

    /// A 200 JSON response, gzipped when allowed and worth it.
    fn json_response(&self, req_headers: &HeaderMap, json: impl Into<Bytes>) -> Response<Body> {
        let json: Bytes = json.into();
        let gzip = self
            .wants_gzip(req_headers, json.len())
            .then(|| gzip_bytes(&json).ok().map(Bytes::from))
            .flatten();
        self.json_body(json, gzip)
    }

    /// A stored answer, with its kept gzip form when the client takes gzip.
    fn stored_response(&self, req_headers: &HeaderMap, stored: &Stored) -> Response<Body> {
        let gzip = self
            .wants_gzip(req_headers, stored.json.len())
            .then(|| stored.gzip(|b| gzip_bytes(b).ok()))
            .flatten();
        self.json_body(stored.json.clone(), gzip)
    }

    fn wants_gzip(&self, req_headers: &HeaderMap, len: usize) -> bool {
        self.gzip_responses && len >= GZIP_MIN_BYTES && accepts_gzip(req_headers)
    }

    /// A 200 JSON response: `gzip` when given, `json` otherwise.
    fn json_body(&self, json: Bytes, gzip: Option<Bytes>) -> Response<Body> {
        let (body, encoded) = match gzip {
            Some(z) => (z, true),
            None => (json, false),
        };
        let mut resp = Response::new(full(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if encoded {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if self.gzip_responses {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        resp
    }
}

/// How cache keys are built (windows: the split interval, or days when splitting is off).
fn key_options(config: &Config) -> KeyOptions {
    let c = &config.cache;
    let header = |name: &str| http::HeaderName::from_bytes(name.as_bytes()).ok();
    let interval = match config.query_range.split_interval {
        d if d.is_zero() => Duration::from_secs(24 * 3600),
        d => d,
    };
    KeyOptions {
        // Replicas of one querier answer alike and share entries; another querier (set)
        // gets its own.
        namespace: config
            .downstream
            .endpoint_urls()
            .iter()
            .map(|u| u.trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(","),
        tenant_header: header(&c.tenant_header)
            .unwrap_or(http::HeaderName::from_static("x-scope-orgid")),
        key_headers: c.key_headers.iter().filter_map(|h| header(h)).collect(),
        interval_ms: interval.as_millis().min(i64::MAX as u128) as i64,
    }
}

/// The cache layer described by the config.
fn cache_layer(
    config: &Config,
    metrics: Arc<Metrics>,
    memory_caches: &mut Vec<Arc<MemoryBackend>>,
) -> Result<CacheLayer, Error> {
    let c = &config.cache;
    let backend: Arc<dyn Backend> = match c.backend {
        CacheBackendKind::Memory => {
            let memory = Arc::new(MemoryBackend::new(c.memory_capacity_bytes));
            memory_caches.push(memory.clone());
            memory
        }
        CacheBackendKind::Redis => {
            let redis = RedisBackend::new(RedisOptions {
                url: c.redis.url.clone(),
                cluster: c.redis.cluster,
                nodes: c.redis.nodes.clone(),
                timeout: c.op_timeout,
                reconnect_backoff: c.redis.reconnect_backoff,
            })
            .map_err(Error::Internal)?;
            // One MGET for the pieces of a query that look up their entries together.
            let shared: Arc<dyn Backend> = Arc::new(Batching::new(Arc::new(redis)));
            if c.two_tier {
                let near = Arc::new(MemoryBackend::new(c.memory_capacity_bytes));
                memory_caches.push(near.clone());
                Arc::new(Tiered::new(near, shared, c.ttl))
            } else {
                shared
            }
        }
    };
    let opts = CacheOptions {
        key: key_options(config),
        max_freshness: c.max_freshness,
        ttl: c.ttl,
        max_item_bytes: c.max_item_bytes,
        op_timeout: c.op_timeout,
        clock: system_clock(),
    };
    Ok(CacheLayer::new(opts, backend, metrics))
}

/// A request's parameters as Prometheus (Go's `ParseForm`) reads them: a POST's form
/// body first, then the query string.
fn request_pairs(parts: &http::request::Parts, body: &[u8]) -> Vec<(String, String)> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Only a POST body carries parameters.
    let form_body: &[u8] = if parts.method == Method::POST {
        body
    } else {
        &[]
    };
    form_pairs(parts.uri.query(), content_type, form_body)
}

/// Paths that only read and accept a form POST.
const READ_PATHS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/format_query",
    "/api/v1/parse_query",
];

/// Whether sending a passthrough request twice is harmless: GET, HEAD and OPTIONS, and a
/// form POST (or an empty one) to a read endpoint. Anything else (admin APIs, remote
/// write, other methods) gets exactly one attempt.
fn is_idempotent_read(
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => true,
        Method::POST => {
            let read_path = READ_PATHS.contains(&path)
                || (path.starts_with("/api/v1/label/") && path.ends_with("/values"));
            read_path && (body.is_empty() || is_form_content_type(content_type))
        }
        _ => false,
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a request body up to `limit` bytes; larger bodies are `BodyTooLarge` (413).
async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, Error> {
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

/// Turns an error into the response the client sees. A querier's own error answer keeps
/// its status, body and the headers a client needs (`Retry-After`, ...); anything else
/// gets Prometheus error JSON.
pub fn error_response(err: &Error) -> Response<Body> {
    let (status, headers, body) = match err {
        Error::Downstream {
            status,
            headers,
            body,
        } if looks_like_json_object(body) || headers.contains_key(header::CONTENT_ENCODING) => {
            let mut headers = (**headers).clone();
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            (*status, headers, body.clone())
        }
        Error::Downstream {
            status,
            headers,
            body,
        } => {
            // An answer that is not Prometheus JSON (a load balancer's HTML page): keep
            // the status, wrap a bounded excerpt in error JSON.
            let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(256)])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            let mut json = Vec::new();
            json.extend_from_slice(b"{\"status\":\"error\",\"errorType\":");
            crate::json::write_str(&mut json, error_type_for_status(*status));
            json.extend_from_slice(b",\"error\":");
            crate::json::write_str(
                &mut json,
                &format!("querier answered {}: {}", status.as_u16(), excerpt.trim()),
            );
            json.push(b'}');
            let mut headers = (**headers).clone();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (*status, headers, Bytes::from(json))
        }
        other => {
            if matches!(
                other,
                Error::Internal(_) | Error::BadResponse(_) | Error::ResponseTooLarge { .. }
            ) {
                tracing::warn!(error = %other, "answering with an error");
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (other.status(), headers, Bytes::from(other.to_json()))
        }
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn looks_like_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Whether `Accept-Encoding` allows gzip (listed, or `*`, with a non-zero q).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 6),
        flate2::Compression::fast(),
    );
    enc.write_all(data)?;
    enc.finish()
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::copy_from_slice(msg.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_idempotent() {
        let form = Some("application/x-www-form-urlencoded");
        let cases = [
            (Method::GET, "/api/v1/admin/tsdb/snapshot", None, "", true),
            (Method::HEAD, "/api/v1/labels", None, "", true),
            (Method::POST, "/api/v1/query", form, "query=up", true),
            (Method::POST, "/api/v1/series", None, "", true),
            (Method::POST, "/api/v1/label/job/values", form, "x=1", true),
            (
                Method::POST,
                "/api/v1/query",
                Some("application/json"),
                "{}",
                false,
            ),
            (Method::POST, "/api/v1/admin/tsdb/snapshot", None, "", false),
            (Method::POST, "/api/v1/write", None, "bytes", false),
            (Method::PUT, "/api/v1/query", form, "query=up", false),
            (Method::DELETE, "/api/v1/series", None, "", false),
        ];
        for (method, path, ct, body, want) in cases {
            assert_eq!(
                is_idempotent_read(&method, path, ct, body.as_bytes()),
                want,
                "{method} {path} {ct:?}"
            );
        }
    }

    fn with_accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&with_accept("gzip")));
        assert!(accepts_gzip(&with_accept("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&with_accept("*")));
        assert!(!accepts_gzip(&with_accept("gzip;q=0")));
        assert!(!accepts_gzip(&with_accept("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn error_responses_keep_querier_json_and_wrap_html() {
        let mut json_headers = HeaderMap::new();
        json_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        json_headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let json_err = Error::Downstream {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            headers: Box::new(json_headers),
            body: Bytes::from_static(
                b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"x\"}",
            ),
        };
        let resp = error_response(&json_err);
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            &body[..],
            b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"x\"}"
        );

        let mut html_headers = HeaderMap::new();
        html_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let html = Error::Downstream {
            status: StatusCode::BAD_GATEWAY,
            headers: Box::new(html_headers),
            body: Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>\n"),
        };
        let resp = error_response(&html);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["errorType"], "internal");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|m| m.contains("502 Bad Gateway"))
        );
    }
}
