//! The one place that knows the order of the range-query middleware, and (in
//! [`assemble()`]) the one place that builds the querier client, the cache backends and the
//! layers' options from a [`crate::Config`]. The HTTP edge receives built services and
//! knows nothing of cache backends.
//!
//! Outermost first; each layer gets a one-line reason for its position. Change the order
//! here and nowhere else:
//!
//! ```text
//! response cache -> encode -> validate -> step_align -> cache -> plan -> retry -> downstream
//! ```
//!
//! With `query_range.fetch = "per_interval"`, `split` above the cache takes the place
//! of `plan` below it: every interval piece is its own querier request.

pub mod assemble;

use std::sync::Arc;

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

pub use assemble::{CacheUsage, Services, assemble};

use crate::downstream::Downstream;
use crate::error::Error;
use crate::layers::cache::CacheLayer;
use crate::layers::cache::response::ResponseCacheLayer;
use crate::layers::encode::EncodeLayer;
use crate::layers::plan::PlanLayer;
use crate::layers::retry::{RetryLayer, RetryPolicy};
use crate::layers::split::SplitLayer;
use crate::layers::step_align::StepAlignLayer;
use crate::layers::validate::{ValidateLayer, ValidateOptions};
use crate::model::{EncodedAnswer, RangeQuery};

/// The composed range-query service: a decoded query in, the encoded answer out.
pub type RangeService = BoxCloneSyncService<RangeQuery, Arc<EncodedAnswer>, Error>;

/// Options of every layer, built from the config by [`assemble()`].
#[derive(Clone)]
pub struct StackOptions {
    /// Whole answers to exact repeats of old windows, if enabled.
    pub response_cache: Option<ResponseCacheLayer>,
    /// Limits checked before any work.
    pub validate: ValidateOptions,
    /// Align start/end to the step.
    pub align_start_end_with_step: bool,
    /// Per-interval fetching: the split into pieces (`None` when planning).
    pub split: Option<SplitLayer>,
    /// The results cache, if enabled.
    pub cache: Option<CacheLayer>,
    /// Planned fetching (`None` in per-interval mode).
    pub plan: Option<PlanLayer>,
    /// Retries of failed querier requests.
    pub retry: RetryPolicy,
}

/// Composes the stack in front of `downstream`.
pub fn build(downstream: Downstream, opts: StackOptions) -> RangeService {
    let stack = ServiceBuilder::new()
        // response cache: outermost, so an exact repeat of an old window is answered
        // with the stored bytes before any parsing, splitting, cache reads or merging.
        .option_layer(opts.response_cache)
        // encode: the JSON is made once, right under the response cache, which keeps
        // exactly the bytes the client got.
        .layer(EncodeLayer)
        // validate: reject what must not run and parse the expression once, before any
        // work, so every later layer can use the analysis.
        .layer(ValidateLayer::new(opts.validate))
        // step_align: before split, so the pieces are cut from the grid actually run.
        .layer(StepAlignLayer::new(opts.align_start_end_with_step))
        // split (per-interval mode only): fans out to interval pieces above the cache, so
        // each piece is looked up and fetched on its own.
        .option_layer(opts.split)
        // cache: entries per interval window; reads a query's windows at once and asks
        // below only for what they lack, missing windows that touch joined into runs.
        .option_layer(opts.cache)
        // plan: below the cache, so it sees only the runs that must reach the querier,
        // and decides per run between one request and parallel parts, under the
        // adaptive concurrency limit.
        .option_layer(opts.plan)
        // retry: innermost, so one failed piece (or the missing part of one) is sent
        // again alone, and the cache above never sees a failed attempt.
        .layer(RetryLayer::new(opts.retry))
        // downstream: the querier endpoints themselves.
        .service(downstream);
    BoxCloneSyncService::new(stack)
}
