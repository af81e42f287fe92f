//! The frontend's own metrics, served at `/metrics` in OpenMetrics text format.
//!
//! Every label value comes from a small enum ([`Endpoint`], [`CodeClass`]): raw paths and
//! PromQL text never become labels, so cardinality stays fixed whatever clients send.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[path = "metrics_endpoint.rs"]
mod endpoint;
#[path = "metrics_process.rs"]
mod process;
#[path = "metrics_security.rs"]
mod security;
#[path = "metrics_status.rs"]
mod status;
#[path = "metrics_text.rs"]
mod text;

pub use endpoint::Endpoint;
pub use process::ProcessFacts;
pub use security::{AuthFailure, SecurityMetrics};
pub use status::Lookups;
pub use text::to_prometheus_text;

/// Status code class, as a metric label (`2xx`, `4xx`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeClass {
    /// 2xx
    Success,
    /// 3xx
    Redirect,
    /// 4xx
    ClientError,
    /// 5xx
    ServerError,
    /// 1xx and anything odd
    Other,
}

impl EncodeLabelValue for CodeClass {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            CodeClass::Success => "2xx",
            CodeClass::Redirect => "3xx",
            CodeClass::ClientError => "4xx",
            CodeClass::ServerError => "5xx",
            CodeClass::Other => "other",
        })
    }
}

impl CodeClass {
    /// The class of a status code.
    pub fn of(status: http::StatusCode) -> CodeClass {
        match status.as_u16() / 100 {
            2 => CodeClass::Success,
            3 => CodeClass::Redirect,
            4 => CodeClass::ClientError,
            5 => CodeClass::ServerError,
            _ => CodeClass::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    code: CodeClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    backend: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointCacheLabels {
    endpoint: Endpoint,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendOpLabels {
    backend: &'static str,
    op: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    downstream: Arc<str>,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DownstreamLabels {
    downstream: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RetryLabels {
    downstream: Arc<str>,
    reason: &'static str,
}

/// How many values `Endpoint` and `CodeClass` have (their last variants are last).
const ENDPOINTS: usize = Endpoint::metrics as usize + 1;
const CODE_CLASSES: usize = CodeClass::Other as usize + 1;

/// Handles of the series of a family, by a small index, made on first use: a series still
/// appears in `/metrics` only once something was counted in it, but counting it again
/// takes no lock and hashes no label set (for every request, that was a measurable
/// share of a forwarded request's cost).
struct Handles<M>(Box<[std::sync::OnceLock<M>]>);

impl<M: Clone> Handles<M> {
    fn new(len: usize) -> Self {
        Handles((0..len).map(|_| std::sync::OnceLock::new()).collect())
    }

    /// The handle at `index`, made by `make` the first time.
    fn get(&self, index: usize, make: impl FnOnce() -> M) -> std::borrow::Cow<'_, M> {
        match self.0.get(index) {
            Some(cell) => std::borrow::Cow::Borrowed(cell.get_or_init(make)),
            // Not reached while the constants above are right; counted all the same.
            None => std::borrow::Cow::Owned(make()),
        }
    }
}

/// The handles of one querier attempt series: its counter, and its endpoint's duration
/// histogram and status-page latency.
type AttemptHandle = (Counter, (Histogram, status::Latency));

/// [`AttemptHandle`]s by endpoint label (the same shared text: endpoints keep theirs),
/// kind and outcome: a short list, searched without hashing. At most
/// [`AttemptHandles::MAX`] are kept; others are looked up in their families each time.
#[derive(Default)]
struct AttemptHandles(Mutex<Vec<AttemptEntry>>);

/// An endpoint label, kind, outcome and their handle.
type AttemptEntry = (Arc<str>, &'static str, &'static str, AttemptHandle);

impl AttemptHandles {
    /// Endpoints × kinds × outcomes seen in practice stay far below this.
    const MAX: usize = 256;

    fn get(
        &self,
        downstream: &Arc<str>,
        kind: &'static str,
        outcome: &'static str,
        make: impl FnOnce() -> AttemptHandle,
    ) -> AttemptHandle {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = list
            .iter()
            .find(|(d, k, o, _)| Arc::ptr_eq(d, downstream) && *k == kind && *o == outcome);
        if let Some((_, _, _, handle)) = found {
            return handle.clone();
        }
        let handle = make();
        if list.len() < Self::MAX {
            list.push((downstream.clone(), kind, outcome, handle.clone()));
        }
        handle
    }
}

/// The `outcome` label of a querier attempt that got an HTTP answer.
pub fn status_outcome(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "success",
        429 => "status_429",
        400..=499 => "status_4xx",
        500..=599 => "status_5xx",
        _ => "other",
    }
}

/// All metrics of one frontend instance.
pub struct Metrics {
    registry: Registry,
    /// The `process_*` metrics, whose names carry no prefix.
    process: Registry,
    /// Querier latency for the status page.
    latencies: status::Latencies,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    /// Handles of `requests` and `duration` series already made, by endpoint and code
    /// class (see [`Handles`]).
    request_handles: Handles<Counter>,
    duration_handles: Handles<Histogram>,
    /// Handles of the querier attempt series already made (see [`AttemptHandles`]).
    attempt_handles: AttemptHandles,
    in_flight: Gauge,
    cache_lookups: Family<CacheLabels, Counter>,
    cache_skips: Family<ReasonLabels, Counter>,
    cache_backend_errors: Family<BackendOpLabels, Counter>,
    cache_bytes: Family<BackendOpLabels, Counter>,
    coalesced: Counter,
    lower_step_reuses: Counter,
    endpoint_cache: Family<EndpointCacheLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<DownstreamLabels, Histogram, fn() -> Histogram>,
    retries: Family<RetryLabels, Counter>,
    healthy: Family<DownstreamLabels, Gauge>,
    budget_exhausted: Counter,
    overload_refusals: Counter,
    pieces: Histogram,
    querier_requests: Histogram,
    querier_seconds: Histogram,
    fetch_plans: Family<PlanLabels, Counter>,
    querier_limit: Gauge,
    tail_prefetches: Family<ResultLabels, Counter>,
    slow_queries: Family<ResultLabels, Counter>,
    cache_entries: Family<BackendLabels, Gauge>,
    cache_held_bytes: Family<BackendLabels, Gauge>,
    security: SecurityMetrics,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlanLabels {
    plan: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("promql_frontend");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by endpoint and status class",
            requests.clone(),
        );
        let duration: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 120.0,
                ])
            });
        registry.register_with_unit(
            "request_duration",
            "Time from request received to response headers sent, by endpoint",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being answered",
            in_flight.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Always 1; labels carry the version", build);
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Range-query pieces looked up in the results cache, by backend and result (hit, partial, miss)",
            cache_lookups.clone(),
        );
        let cache_skips = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cache_skips",
            "Range-query pieces not cached, by reason",
            cache_skips.clone(),
        );
        let cache_backend_errors = Family::<BackendOpLabels, Counter>::default();
        registry.register(
            "cache_backend_errors",
            "Cache backend calls that failed or timed out (served as misses), by operation",
            cache_backend_errors.clone(),
        );
        let cache_bytes = Family::<BackendOpLabels, Counter>::default();
        registry.register_with_unit(
            "cache",
            "Bytes read from and written to the cache backend",
            prometheus_client::registry::Unit::Bytes,
            cache_bytes.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "cache_coalesced_fetches",
            "Piece fetches that waited for an identical in-flight fetch instead of asking the querier",
            coalesced.clone(),
        );
        let lower_step_reuses = Counter::default();
        registry.register(
            "cache_lower_step_reuses",
            "Missing ranges of a range query answered from cache entries of the same query at a finer step",
            lower_step_reuses.clone(),
        );
        let endpoint_cache = Family::<EndpointCacheLabels, Counter>::default();
        registry.register(
            "endpoint_cache_requests",
            "Requests to cacheable endpoints by how the frontend's caches answered them (hit, partial, miss, coalesced, skip)",
            endpoint_cache.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "downstream_attempts",
            "Requests sent to querier endpoints (retries included), by endpoint, kind (query_range, passthrough, probe) and outcome",
            attempts.clone(),
        );
        let attempt_duration: Family<DownstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 120.0,
                ])
            });
        registry.register_with_unit(
            "downstream_attempt_duration",
            "Time of one attempt at a querier endpoint, until its answer was read (passthrough: until its headers)",
            prometheus_client::registry::Unit::Seconds,
            attempt_duration.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "downstream_retries",
            "Failed querier attempts that were retried, by the endpoint that failed and the reason",
            retries.clone(),
        );
        let healthy = Family::<DownstreamLabels, Gauge>::default();
        registry.register(
            "downstream_endpoint_healthy",
            "1 while a querier endpoint is in rotation, 0 from its ejection until it answers again",
            healthy.clone(),
        );
        let budget_exhausted = Counter::default();
        registry.register(
            "retry_budget_exhausted",
            "Retries not made because the retry budget was spent",
            budget_exhausted.clone(),
        );
        let overload_refusals = Counter::default();
        registry.register(
            "overload_refusals",
            "Requests answered 503 at once because server.max_concurrent_requests were being answered",
            overload_refusals.clone(),
        );
        let pieces = Histogram::new([1.0, 2.0, 3.0, 4.0, 7.0, 14.0, 31.0, 62.0, 93.0, 366.0]);
        registry.register(
            "query_range_pieces",
            "Sub-ranges each range query was asked as: pieces of the split (per_interval fetch mode) or querier requests planned (planned mode, 0 when the caches answered)",
            pieces.clone(),
        );
        let querier_requests = Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 14.0, 31.0, 62.0]);
        registry.register(
            "query_range_querier_requests",
            "Requests sent to the querier for each range query, retries included",
            querier_requests.clone(),
        );
        let querier_seconds = Histogram::new([
            0.0, 0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0,
        ]);
        registry.register_with_unit(
            "query_range_querier",
            "Querier time spent on each range query, summed over its requests",
            prometheus_client::registry::Unit::Seconds,
            querier_seconds.clone(),
        );
        let fetch_plans = Family::<PlanLabels, Counter>::default();
        registry.register(
            "fetch_plans",
            "Ranges the fetch planner asked the querier for, by plan (one request, parts, per_interval_fallback after a too-many-samples refusal)",
            fetch_plans.clone(),
        );
        let tail_prefetches = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cache_tail_prefetches",
            "Ranges after a shape's last stored point asked while its entries were read (a dashboard refreshed at now), by result (used, or unused when the entries turned out to lack something else)",
            tail_prefetches.clone(),
        );
        let querier_limit = Gauge::default();
        registry.register(
            "querier_concurrency_limit",
            "The fetch planner's current limit on querier requests in flight (adaptive, below query_range.max_inflight_pieces)",
            querier_limit.clone(),
        );
        let slow_queries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "slow_queries",
            "Slow-query log lines, by result (logged, or dropped because the writer fell behind)",
            slow_queries.clone(),
        );
        let cache_entries = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "cache_entries",
            "Entries held by an in-process cache backend",
            cache_entries.clone(),
        );
        let cache_held_bytes = Family::<BackendLabels, Gauge>::default();
        registry.register_with_unit(
            "cache_held",
            "Bytes held by an in-process cache backend (KiB-rounded weights)",
            prometheus_client::registry::Unit::Bytes,
            cache_held_bytes.clone(),
        );
        let security = SecurityMetrics::register(&mut registry);
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry,
            process,
            latencies: status::Latencies::default(),
            request_handles: Handles::new(ENDPOINTS * CODE_CLASSES),
            duration_handles: Handles::new(ENDPOINTS),
            attempt_handles: AttemptHandles::default(),
            security,
            pieces,
            querier_requests,
            querier_seconds,
            fetch_plans,
            querier_limit,
            tail_prefetches,
            slow_queries,
            cache_entries,
            cache_held_bytes,
            attempts,
            attempt_duration,
            retries,
            healthy,
            budget_exhausted,
            overload_refusals,
            requests,
            duration,
            in_flight,
            cache_lookups,
            cache_skips,
            cache_backend_errors,
            cache_bytes,
            coalesced,
            lower_step_reuses,
            endpoint_cache,
        }
    }

    /// Counts a cache lookup result (`hit`, `partial`, `miss`).
    pub fn cache_lookup(&self, backend: &'static str, result: &'static str) {
        self.cache_lookups
            .get_or_create(&CacheLabels { backend, result })
            .inc();
    }

    /// Counts a piece the cache skipped.
    pub fn cache_skip(&self, reason: &'static str) {
        self.cache_skips
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a failed backend call (`get` or `set`).
    pub fn cache_backend_error(&self, backend: &'static str, op: &'static str) {
        self.cache_backend_errors
            .get_or_create(&BackendOpLabels { backend, op })
            .inc();
    }

    /// Adds bytes read (`op = "read"`) or written (`"write"`).
    pub fn cache_bytes(&self, backend: &'static str, op: &'static str, n: usize) {
        self.cache_bytes
            .get_or_create(&BackendOpLabels { backend, op })
            .inc_by(n as u64);
    }

    /// Counts how the caches answered one request to `endpoint`: `hit` (no querier
    /// request), `partial` (part from the cache), `miss` (asked the querier), `coalesced`
    /// (joined an identical request in flight), `skip` (not cacheable).
    pub fn endpoint_cache(&self, endpoint: Endpoint, outcome: &'static str) {
        self.endpoint_cache
            .get_or_create(&EndpointCacheLabels { endpoint, outcome })
            .inc();
    }

    /// Counts a missing range answered from an entry at a finer step.
    pub fn lower_step_reuse(&self) {
        self.lower_step_reuses.inc();
    }

    /// Counts a coalesced fetch.
    pub fn coalesced_fetch(&self) {
        self.coalesced.inc();
    }

    /// Records one attempt at a querier endpoint and, unless `None` (probes), its time.
    pub fn downstream_attempt(
        &self,
        downstream: &Arc<str>,
        kind: &'static str,
        outcome: &'static str,
        took: Option<Duration>,
    ) {
        let (counter, timed) = self.attempt_handles.get(downstream, kind, outcome, || {
            let counter = self
                .attempts
                .get_or_create(&AttemptLabels {
                    downstream: downstream.clone(),
                    kind,
                    outcome,
                })
                .clone();
            let histogram = self
                .attempt_duration
                .get_or_create(&DownstreamLabels {
                    downstream: downstream.clone(),
                })
                .clone();
            (counter, (histogram, self.latencies.cell(downstream)))
        });
        counter.inc();
        if let Some(took) = took {
            let (histogram, latency) = timed;
            histogram.observe(took.as_secs_f64());
            let mut cell = latency.lock().unwrap_or_else(|p| p.into_inner());
            cell.0 += 1;
            cell.1 += took.as_secs_f64();
        }
    }

    /// Sets whether an endpoint is in rotation.
    pub fn set_endpoint_healthy(&self, downstream: &str, healthy: bool) {
        self.healthy
            .get_or_create(&DownstreamLabels {
                downstream: downstream.into(),
            })
            .set(i64::from(healthy));
    }

    /// Counts a retry of an attempt that failed at `downstream` for `reason`.
    pub fn retry(&self, downstream: &str, reason: &'static str) {
        self.retries
            .get_or_create(&RetryLabels {
                downstream: downstream.into(),
                reason,
            })
            .inc();
    }

    /// Records how many pieces a range query was split into.
    pub fn query_pieces(&self, n: u64) {
        self.pieces.observe(n as f64);
    }

    /// Records the querier requests and querier time one range query cost.
    pub fn query_querier_cost(&self, requests: u64, seconds: f64) {
        self.querier_requests.observe(requests as f64);
        self.querier_seconds.observe(seconds);
    }

    /// Counts a refresh's prefetched tail range, by whether it was used.
    pub fn tail_prefetch(&self, result: &'static str) {
        self.tail_prefetches
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a range the fetch planner asked, by plan.
    pub fn fetch_plan(&self, plan: &'static str) {
        self.fetch_plans.get_or_create(&PlanLabels { plan }).inc();
    }

    /// Sets the fetch planner's current concurrency limit.
    pub fn querier_limit(&self, limit: usize) {
        self.querier_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Counts a slow-query log line (`logged` or `dropped`).
    pub fn slow_query(&self, result: &'static str) {
        self.slow_queries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Sets what an in-process cache holds.
    pub fn cache_held(&self, backend: &'static str, entries: u64, bytes: u64) {
        let labels = BackendLabels { backend };
        self.cache_entries
            .get_or_create(&labels)
            .set(entries.min(i64::MAX as u64) as i64);
        self.cache_held_bytes
            .get_or_create(&labels)
            .set(bytes.min(i64::MAX as u64) as i64);
    }

    /// Authentication, TLS and web config metrics.
    pub fn security(&self) -> &SecurityMetrics {
        &self.security
    }

    /// Counts a request refused for overload.
    pub fn overload_refusal(&self) {
        self.overload_refusals.inc();
    }

    /// Counts a retry refused by the budget.
    pub fn retry_budget_exhausted(&self) {
        self.budget_exhausted.inc();
    }

    /// Marks a request as started; the returned guard marks it finished when dropped.
    pub fn start_request(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Records one answered request.
    pub fn observe_request(&self, endpoint: Endpoint, status: http::StatusCode, took: Duration) {
        let code = CodeClass::of(status);
        self.request_handles
            .get(endpoint as usize * CODE_CLASSES + code as usize, || {
                self.requests
                    .get_or_create(&RequestLabels { endpoint, code })
                    .clone()
            })
            .inc();
        self.duration_handles
            .get(endpoint as usize, || {
                self.duration
                    .get_or_create(&EndpointLabels { endpoint })
                    .clone()
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Decrements the in-flight gauge when dropped, so cancelled requests are counted out too.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
