//! `plan`: fetch planning. Decides how the querier is asked for one range (a whole
//! query, or a run of missing days the cache above joined): as one request, or cut into
//! parallel parts when that pays.
//!
//! Every querier request costs a fixed amount (a reader per block, the HTTP and JSON
//! work) and re-reads the expression's lookback, so one request per day costs the
//! querier more than one request for the whole range. Parts pay only when the range is
//! expensive and the querier has idle capacity. So:
//! - A range is cut only into parts at least a split interval long and
//!   [`cost::MIN_PART_LOOKBACKS`] times the expression's lookback ([`cost::max_parts`]);
//!   expressions that read no series (`time()`, `vector(1)`) are never cut.
//! - The cost of a query shape (normalised expression and step) is learned as querier
//!   time per evaluation point from every answer. A shape seen before gets one part per
//!   `parallel_part_duration` of expected querier time. An unseen one is asked in two
//!   halves at once (when it may be cut and two places are free): a cheap query pays
//!   one more request's fixed cost, once, and answers no later than whole; an expensive
//!   one takes half the time on an idle querier; both teach the shape's cost. (Asking a
//!   small probe first, then planning the rest, was measured: it made every cheap query
//!   wait for two requests in turn.)
//! - Parts never exceed the free places under the adaptive concurrency limit
//!   ([`limit::Limiter`]), which every request to the querier from this layer waits for.
//! - At most `max_query_parallelism` requests of one client query are in flight, over
//!   all the runs the cache above asks for at once (the places live in the query's
//!   shared stats).
//! - A range asked as one request that the querier refuses for loading too many samples
//!   (422) is asked again cut at the split interval, as the per-interval mode would have.
//!
//! Answers of parts are merged in time order; every grid point is asked exactly once.

pub mod cost;
pub mod limit;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;
use xxhash_rust::xxh3::xxh3_64;

use crate::BoxFuture;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::merge::merge;
use crate::model::ranges::split_range;
use crate::model::{QueryResponse, RangeQuery};
use crate::promql::{analysis_of, pin_start_end};
use cost::{Cost, cut_grid, judge, max_parts, overhead_with, parts_for, points};
use limit::{Limiter, Signal};

/// Options of the plan layer.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Parts are at least this long (the split interval); zero: never cut.
    pub interval: Duration,
    /// Most parts of one range.
    pub max_query_parallelism: usize,
    /// Ceiling of the concurrency limit over all queries.
    pub max_inflight: usize,
    /// Learn the concurrency limit (AIMD) below the ceiling; off: the ceiling is the limit.
    pub adaptive_concurrency: bool,
    /// Querier time one part should take; a range expected to take less than twice this
    /// is one request.
    pub part_duration: Duration,
}

/// Learned costs kept, by shape.
const COSTS_KEPT: u64 = 10_000;

/// The limit a learning limiter starts at.
const INITIAL_LIMIT: usize = 4;

/// State shared by every service of one layer.
struct Shared {
    opts: PlanOptions,
    limiter: Arc<Limiter>,
    costs: moka::sync::Cache<u64, Cost>,
    /// The fixed cost of any request (see [`cost::overhead_with`]).
    overhead: std::sync::Mutex<Option<Duration>>,
    metrics: Arc<Metrics>,
}

/// Adds [`PlanService`] to a stack.
#[derive(Clone)]
pub struct PlanLayer {
    shared: Arc<Shared>,
}

impl PlanLayer {
    /// Creates the layer (and the limiter and cost memory its services share).
    pub fn new(opts: PlanOptions, metrics: Arc<Metrics>) -> PlanLayer {
        let limiter = Limiter::new(INITIAL_LIMIT, opts.max_inflight, opts.adaptive_concurrency);
        metrics.querier_limit(limiter.limit());
        PlanLayer {
            shared: Arc::new(Shared {
                opts,
                limiter,
                costs: moka::sync::Cache::builder()
                    .max_capacity(COSTS_KEPT)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
                overhead: std::sync::Mutex::new(None),
                metrics,
            }),
        }
    }

    /// The concurrency limiter (for tests and status).
    pub fn limiter(&self) -> Arc<Limiter> {
        self.shared.limiter.clone()
    }
}

impl<S> Layer<S> for PlanLayer {
    type Service = PlanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlanService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct PlanService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<RangeQuery> for PlanService<S>
where
    S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut query: RangeQuery) -> Self::Future {
        // Parts must name the absolute times of `@ start()` / `@ end()`.
        pin_start_end(&mut query);
        let shared = self.shared.clone();
        let inner = self.inner.clone();
        Box::pin(async move { shared.plan(inner, query).await })
    }
}

/// How a range is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// One request.
    One,
    /// `n` parallel parts.
    Parts(usize),
}

impl Plan {
    fn label(self) -> &'static str {
        match self {
            Plan::One => "one",
            Plan::Parts(_) => "parts",
        }
    }
}

impl Shared {
    async fn plan<S>(self: Arc<Self>, inner: S, query: RangeQuery) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let step = query.step_ms();
        let analysis = analysis_of(&query).cloned();
        let cuttable = analysis
            .as_ref()
            .is_some_and(|a| a.parse_error().is_none() && !a.has_pre_epoch_at && !a.uses_start_end)
            && query.param("stats").is_none()
            && step > 0
            && query.start_ms >= 0
            && query.end_ms >= query.start_ms;
        let lookback = analysis.as_ref().and_then(|a| a.lookback_ms);
        let (Some(lookback), true) = (lookback, cuttable) else {
            // Not understood, statistics asked, or no series read: one request.
            self.metrics.fetch_plan(Plan::One.label());
            return self.one(inner, query, None).await;
        };
        let last = query.start_ms + (query.end_ms - query.start_ms) / step * step;
        let shape = shape_of(
            &query,
            analysis.as_ref().and_then(|a| a.normalised.as_deref()),
        );
        let plan = self.choose(query.start_ms, last, step, lookback, shape);
        self.metrics.fetch_plan(plan.label());
        match plan {
            Plan::One => self.one(inner, query, shape).await,
            Plan::Parts(n) => {
                self.parts(
                    inner,
                    &query,
                    cut_grid(query.start_ms, last, step, n),
                    shape,
                )
                .await
            }
        }
    }

    /// The plan for `[start, last]` given what the shape is known to cost.
    fn choose(&self, start: i64, last: i64, step: i64, lookback: i64, shape: Option<u64>) -> Plan {
        let interval = self.opts.interval.as_millis().min(i64::MAX as u128) as i64;
        let most = max_parts(
            last - start + step,
            lookback,
            interval,
            self.opts.max_query_parallelism,
        );
        if most <= 1 {
            return Plan::One;
        }
        let headroom = self.limiter.headroom();
        let Some(cost) = shape.and_then(|s| self.costs.get(&s)) else {
            // Unseen: two halves when two places are free, else one request.
            return match (shape, headroom >= 2) {
                (Some(_), true) => Plan::Parts(2),
                _ => Plan::One,
            };
        };
        let target = self.opts.part_duration.as_secs_f64() * 1e3;
        match parts_for(
            cost.expected_ms(points(start, last, step)),
            target,
            most,
            headroom,
        ) {
            n if n <= 1 => Plan::One,
            n => Plan::Parts(n),
        }
    }

    /// The range as one request; cut at the split interval when the querier refuses it
    /// for loading too many samples.
    async fn one<S>(
        &self,
        inner: S,
        query: RangeQuery,
        shape: Option<u64>,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let step = query.step_ms();
        let interval = self.opts.interval.as_millis().min(i64::MAX as u128) as i64;
        match self.send(inner.clone(), query.clone(), shape).await {
            Err(e) if too_many_samples(&e) && step > 0 => {
                let Ok(pieces) = split_range(query.start_ms, query.end_ms, step, interval) else {
                    return Err(e);
                };
                self.metrics.fetch_plan("per_interval_fallback");
                let ranges: Vec<(i64, i64)> =
                    pieces.iter().map(|p| (p.start_ms, p.end_ms)).collect();
                merge(self.fetch_all(inner, &query, &ranges, shape).await?)
            }
            other => other,
        }
    }

    /// `ranges` of `query` as parallel parts, merged.
    async fn parts<S>(
        &self,
        inner: S,
        query: &RangeQuery,
        ranges: Vec<(i64, i64)>,
        shape: Option<u64>,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        merge(self.fetch_all(inner, query, &ranges, shape).await?)
    }

    /// The answers for `ranges` of `query`, in order; at most `max_query_parallelism` at
    /// once. The first failure fails them all (the others are dropped, so cancelled).
    async fn fetch_all<S>(
        &self,
        inner: S,
        query: &RangeQuery,
        ranges: &[(i64, i64)],
        shape: Option<u64>,
    ) -> Result<Vec<QueryResponse>, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let requests: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let mut sub = query.clone();
                sub.start_ms = *start;
                sub.end_ms = *end;
                let span = tracing::debug_span!("part", index = i, start_ms = start, end_ms = end);
                self.send(inner.clone(), sub, shape).instrument(span)
            })
            .collect();
        let mut answers = stream::iter(requests).buffered(self.opts.max_query_parallelism.max(1));
        let mut out = Vec::with_capacity(ranges.len());
        while let Some(answer) = answers.next().await {
            out.push(answer?);
        }
        Ok(out)
    }

    /// One querier request, under the concurrency limit; its cost is learned.
    async fn send<S>(
        &self,
        inner: S,
        sub: RangeQuery,
        shape: Option<u64>,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let n = points(sub.start_ms, sub.end_ms, sub.step_ms());
        // One query's requests share `max_query_parallelism` places, over all the runs
        // the cache asks for at once and all their parts: that bounds what one query
        // makes the querier hold (each request under its `--query.max-samples`).
        let slots = sub
            .stats
            .fetch_slots
            .get_or_init(|| Arc::new(Semaphore::new(self.opts.max_query_parallelism.max(1))))
            .clone();
        let _slot = slots.acquire_owned().await;
        let permit = self.limiter.acquire().await;
        sub.stats
            .pieces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let result = inner.oneshot(sub).await;
        let took = started.elapsed();
        match &result {
            Ok(_) => {
                let before = shape.and_then(|s| self.costs.get(&s));
                permit.done(judge(took, n, before));
                let overhead = {
                    let mut o = self.overhead.lock().unwrap_or_else(|p| p.into_inner());
                    *o = overhead_with(*o, took);
                    o.unwrap_or(Duration::ZERO)
                };
                if let Some(s) = shape {
                    let cost = before.map_or_else(
                        || Cost::first(took, n, overhead),
                        |c| c.with(took, n, overhead),
                    );
                    self.costs.insert(s, cost);
                }
            }
            Err(e) if e.is_retryable() => permit.done(Signal::Failed),
            // The query's own fault (4xx, 422) or a cancellation: nothing learned.
            Err(_) => drop(permit),
        }
        self.metrics.querier_limit(self.limiter.limit());
        result
    }
}

/// The shape a cost is learned for: normalised expression and step. `None` for an
/// expression without a normal form.
fn shape_of(query: &RangeQuery, normalised: Option<&str>) -> Option<u64> {
    let text = normalised?;
    let step = query.step_ms();
    let mut key = Vec::with_capacity(text.len() + 24);
    key.extend_from_slice(text.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(step.to_string().as_bytes());
    Some(xxh3_64(&key))
}

/// Whether the querier refused the request for loading too many samples (Prometheus'
/// `--query.max-samples`).
fn too_many_samples(e: &Error) -> bool {
    match e {
        Error::Downstream { status, body, .. } => {
            status.as_u16() == 422
                && std::str::from_utf8(body).is_ok_and(|b| b.contains("too many samples"))
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
