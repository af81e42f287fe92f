//! `retry`: sends a failed querier request again, innermost in the stack (once per
//! range-query piece) and around every retryable passthrough request.
//!
//! *Whether* a failure may succeed on another try is [`Error::is_retryable`]'s call;
//! this module decides *when*, and keeps retries bounded:
//! - at most `max_retries` extra attempts, each waiting a random time up to
//!   `backoff_base · 2^n` (capped at `backoff_cap`; "full jitter", so that clients that
//!   failed together do not come back together);
//! - a `Retry-After` on a 429/503 answer is waited for (when at most `max_retry_after`;
//!   a longer one goes back to the client, who was told when to come back), unless an
//!   endpoint the request has not tried yet remains: the retry goes there at once, since
//!   the wait was asked for by another endpoint;
//! - no attempt starts after the request's deadline, and no wait runs past it;
//! - a retry budget shared by all requests (`budget_percent` of the requests of the last
//!   `budget_window`, plus `budget_min_per_second`) turns a querier outage into fast
//!   failures instead of a retry storm.
//!
//! Each request's attempts share a [`Route`], so the downstream client sends every retry
//! to an endpoint that has not failed it yet. A client that goes away drops the future,
//! which stops the attempts. Nothing is retried after the first byte of an answer reached
//! the client: passthrough answers stream, so only failures before the response headers
//! (and 5xx/429 answers, which are read whole) are retried.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use crate::BoxFuture;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::{QueryResponse, RangeQuery, RequestStats, Route};

/// Retry settings (the config's `[retry]`).
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Extra attempts after the first.
    pub max_retries: u32,
    /// Backoff bound of the first retry; doubled for each further one.
    pub backoff_base: Duration,
    /// Largest backoff bound.
    pub backoff_cap: Duration,
    /// Longest `Retry-After` waited for.
    pub max_retry_after: Duration,
    /// Retries allowed, in percent of recent requests.
    pub budget_percent: f32,
    /// Retries always allowed per second.
    pub budget_min_per_second: u32,
    /// How long a request counts for the budget.
    pub budget_window: Duration,
}

/// Why a failed attempt was not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The error would happen again (`Error::is_retryable` is false).
    NotRetryable,
    /// `max_retries` retries were made.
    Exhausted,
    /// The wait would end after the request's deadline.
    Deadline,
    /// The querier asked for a wait longer than `max_retry_after`.
    RetryAfterTooLong,
    /// The retry budget is spent.
    Budget,
}

/// The retry policy and budget, shared by every request; cheap to clone.
#[derive(Clone)]
pub struct RetryPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    opts: RetryOptions,
    budget: TpsBudget,
    metrics: Arc<Metrics>,
    /// Metric label of each endpoint index (the downstream origins).
    endpoints: Vec<String>,
    jitter: fn() -> f64,
}

impl RetryPolicy {
    /// A policy counting retries in `metrics`, labelled by `endpoints` (origins by index).
    pub fn new(opts: RetryOptions, metrics: Arc<Metrics>, endpoints: Vec<String>) -> Self {
        Self::with_jitter(opts, metrics, endpoints, random_unit)
    }

    /// Like [`RetryPolicy::new`] with a chosen jitter source (a number in `[0, 1]` that
    /// scales each backoff bound); tests use it to pin the schedule.
    pub fn with_jitter(
        opts: RetryOptions,
        metrics: Arc<Metrics>,
        endpoints: Vec<String>,
        jitter: fn() -> f64,
    ) -> Self {
        // TpsBudget panics outside these ranges; config validation rejects them when
        // retries are on.
        let budget = TpsBudget::new(
            opts.budget_window
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            opts.budget_min_per_second,
            opts.budget_percent.clamp(0.0, 1000.0) / 100.0,
        );
        RetryPolicy {
            inner: Arc::new(PolicyInner {
                opts,
                budget,
                metrics,
                endpoints,
                jitter,
            }),
        }
    }

    /// Runs `attempt` until it succeeds or the policy gives up, and returns the last
    /// result. Every attempt gets the same [`Route`].
    pub async fn run<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        stats: Option<&RequestStats>,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Arc<Route>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let p = &self.inner;
        p.budget.deposit();
        let route = Arc::new(Route::default());
        let mut retries = 0;
        loop {
            let err = match attempt(route.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let untried_left = (route.tried().count_ones() as usize) < p.endpoints.len();
            let delay = match self.plan(&err, retries, deadline, untried_left) {
                Ok(delay) => delay,
                Err(why) => {
                    if why != GiveUp::NotRetryable {
                        tracing::debug!(?why, retries, error = %err, "not retrying");
                    }
                    return Err(err);
                }
            };
            let endpoint = route
                .last()
                .and_then(|i| p.endpoints.get(i))
                .map_or("", String::as_str);
            p.metrics.retry(endpoint, err.reason());
            if let Some(stats) = stats {
                RequestStats::bump(&stats.retries);
            }
            tracing::debug!(endpoint, reason = err.reason(), ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// The wait before retry number `retries + 1` after `err`, or why there is none.
    /// `untried_left`: some endpoint has not been tried by this request yet (the retry
    /// goes there, so another endpoint's `Retry-After` does not apply).
    pub fn plan(
        &self,
        err: &Error,
        retries: u32,
        deadline: Option<Instant>,
        untried_left: bool,
    ) -> Result<Duration, GiveUp> {
        let p = &self.inner;
        if !err.is_retryable() {
            return Err(GiveUp::NotRetryable);
        }
        if retries >= p.opts.max_retries {
            return Err(GiveUp::Exhausted);
        }
        let bound = backoff_bound(p.opts.backoff_base, p.opts.backoff_cap, retries);
        let mut delay = bound.mul_f64((p.jitter)().clamp(0.0, 1.0));
        if let Some(asked) = err.retry_after().filter(|_| !untried_left) {
            if asked > p.opts.max_retry_after {
                return Err(GiveUp::RetryAfterTooLong);
            }
            delay = delay.max(asked);
        }
        if deadline.is_some_and(|d| Instant::now() + delay >= d) {
            return Err(GiveUp::Deadline);
        }
        if !p.budget.withdraw() {
            p.metrics.retry_budget_exhausted();
            return Err(GiveUp::Budget);
        }
        Ok(delay)
    }
}

/// `min(cap, base · 2^retries)`.
pub fn backoff_bound(base: Duration, cap: Duration, retries: u32) -> Duration {
    base.checked_mul(1u32.checked_shl(retries).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap)
}

/// A uniformly distributed number in `[0, 1)` (jitter needs no cryptographic quality).
fn random_unit() -> f64 {
    (crate::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Adds retries to a range-query service.
#[derive(Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying by `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Clone)]
pub struct RetryService<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Service<RangeQuery> for RetryService<S>
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

    fn call(&mut self, query: RangeQuery) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let (stats, deadline) = (query.stats.clone(), query.deadline);
            policy
                .run(deadline, Some(&stats), move |route| {
                    let mut attempt = query.clone();
                    attempt.route = Some(route);
                    inner.clone().oneshot(attempt)
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests;
