//! promql-frontend: a query frontend for Prometheus-compatible queriers.
//!
//! Clients (Grafana, promtool, curl) talk the Prometheus HTTP API to it. Where a
//! behaviour lives:
//!
//! - [`server`]: the HTTP edge. Accepts and routes; `/api/v1/query_range` is decoded and
//!   sent through the range-query stack, every other path is forwarded to the querier
//!   unchanged, `/-/healthy`, `/-/ready`, `/metrics`, the slow-query API and the status
//!   page ([`status`]) are answered locally. The only place an [`Error`] becomes an HTTP
//!   response.
//! - [`stack`]: the order of the range-query middleware, in one function, and
//!   `stack::assemble`, which builds every service (querier client, cache backends,
//!   layers' options) from the [`Config`].
//! - [`layers`]: one module per middleware (response cache, encode, validate,
//!   step_align, split, cache, retry); [`downstream`]: the querier endpoints.
//! - [`promql`] (the only user of the PromQL parser), [`model`] (query, answer, time
//!   math), [`error`], [`config`], [`metrics`], [`slowlog`].
//!
//! Dependency direction: server → stack → layers / downstream → promql → model → error;
//! only `main`, `server`, `stack::assemble` and `status` (which shows it) read the config.

use std::future::Future;
use std::pin::Pin;

pub mod config;
pub mod downstream;
pub mod encoding;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_targets;
pub mod headers;
pub mod json;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod promql;
pub mod quote;
pub mod server;
pub mod slowlog;
pub mod splice;
pub mod stack;
pub mod status;
pub mod testdata;
pub mod timer;

pub use config::Config;
pub use error::Error;
pub use server::Frontend;

/// A random number from the standard library's randomly keyed hasher: fine for jitter
/// and request ids, not for secrets.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n)
}

/// The boxed future every range-query service returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'static>>;
