//! The one place that knows the order of the range-query middleware.
//!
//! Outermost first. Each layer gets a one-line reason for its position; change the order
//! here and nowhere else.

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::downstream::Downstream;
use crate::error::Error;
use crate::layers::validate::ValidateLayer;
use crate::model::{QueryResponse, RangeQuery};

/// The composed range-query service.
pub type RangeService = BoxCloneSyncService<RangeQuery, QueryResponse, Error>;

/// Composes the stack in front of `downstream`.
pub fn build(downstream: Downstream) -> RangeService {
    let svc = ServiceBuilder::new()
        // validate: parse the expression once, first, so every later layer can use the
        // analysis, and so unparseable queries are recognised before any work is done.
        .layer(ValidateLayer)
        // downstream: the querier itself.
        .service(downstream);
    BoxCloneSyncService::new(svc)
}
