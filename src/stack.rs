//! The one place that knows the order of the range-query middleware.
//!
//! Outermost first. Each layer gets a one-line reason for its position; change the order
//! here and nowhere else.

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::downstream::Downstream;
use crate::error::Error;
use crate::layers::cache::CacheLayer;
use crate::layers::retry::{RetryLayer, RetryPolicy};
use crate::layers::split::{SplitLayer, SplitOptions};
use crate::layers::step_align::StepAlignLayer;
use crate::layers::validate::{ValidateLayer, ValidateOptions};
use crate::model::{QueryResponse, RangeQuery};

/// The composed range-query service.
pub type RangeService = BoxCloneSyncService<RangeQuery, QueryResponse, Error>;

/// Options of every layer, gathered from the config by the caller.
#[derive(Clone)]
pub struct StackOptions {
    /// Limits checked before any work.
    pub validate: ValidateOptions,
    /// Align start/end to the step.
    pub align_start_end_with_step: bool,
    /// Splitting and its parallelism.
    pub split: SplitOptions,
    /// The results cache, if enabled.
    pub cache: Option<CacheLayer>,
    /// Retries of failed querier requests.
    pub retry: RetryPolicy,
}

/// Composes the stack in front of `downstream`.
pub fn build(downstream: Downstream, opts: StackOptions) -> RangeService {
    let upper = ServiceBuilder::new()
        // validate: reject what must not run and parse the expression once, first, so
        // every later layer can use the analysis.
        .layer(ValidateLayer::new(opts.validate))
        // step_align: before split, so the pieces are cut from the grid actually run.
        .layer(StepAlignLayer::new(opts.align_start_end_with_step))
        // split: fans out to day-sized pieces; everything below sees one piece at a time.
        .layer(SplitLayer::new(opts.split));
    // retry: innermost, so one failed piece (or the missing part of one) is sent again
    // alone, and the cache below the split never sees a failed attempt.
    let retry = RetryLayer::new(opts.retry);
    match opts.cache {
        // cache: per piece, so each day is stored and reused on its own, and only the
        // missing parts of a piece reach the querier.
        Some(cache) => {
            BoxCloneSyncService::new(upper.layer(cache).layer(retry).service(downstream))
        }
        // downstream: the querier endpoints themselves.
        None => BoxCloneSyncService::new(upper.layer(retry).service(downstream)),
    }
}
