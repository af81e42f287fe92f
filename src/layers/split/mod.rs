//! `split`: cuts a long range query into interval-aligned pieces (default: UTC days),
//! runs them in parallel, and merges the answers.
//!
//! Invariant: the merged answer equals the unsplit answer — every evaluation timestamp is
//! computed in exactly one piece (see [`crate::model::ranges`]) and the merge loses or duplicates no
//! sample (see [`crate::model::merge`]). Queries that cannot keep that invariant pass through whole:
//! an expression the parser did not understand, a `stats` request (per-piece statistics
//! do not add up to the whole query's), a step of an interval or more, a sub-millisecond
//! step, a range before 1970, or a range inside one interval.
//!
//! `@ start()` / `@ end()` are rewritten to the original absolute times first (also for
//! queries that are not split), since each piece — and each sub-range the cache fetches
//! — has its own start and end.
//!
//! Parallelism: the pieces of one query share a budget of `max_query_parallelism`
//! concurrent requests, and all queries share a global cap (`max_inflight`). Pieces run
//! as tasks of a `JoinSet`: if the client goes away (the request future is dropped), the
//! set is dropped and every outstanding piece is cancelled. The first failing piece fails
//! the whole query with its own error; the others are cancelled.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

use crate::BoxFuture;
use crate::error::Error;
use crate::model::ranges::{NoSplit, Piece, split_range};
use crate::model::{QueryResponse, RangeQuery, RequestStats};
use crate::promql::analysis_of;

/// Options of the split layer.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Piece length; boundaries are multiples of it from the Unix epoch. Zero disables
    /// splitting.
    pub interval: Duration,
    /// Most pieces of one query running at once.
    pub max_query_parallelism: usize,
    /// Most pieces running at once over all queries.
    pub max_inflight: usize,
}

/// Adds [`SplitService`] to a stack. The global in-flight cap lives here and is shared
/// by every service the layer builds.
#[derive(Debug, Clone)]
pub struct SplitLayer {
    opts: SplitOptions,
    global: Arc<Semaphore>,
}

impl SplitLayer {
    /// Creates the layer.
    pub fn new(opts: SplitOptions) -> SplitLayer {
        let global = Arc::new(Semaphore::new(opts.max_inflight.max(1)));
        SplitLayer { opts, global }
    }
}

impl<S> Layer<S> for SplitLayer {
    type Service = SplitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SplitService {
            inner,
            opts: self.opts.clone(),
            global: self.global.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SplitService<S> {
    inner: S,
    opts: SplitOptions,
    global: Arc<Semaphore>,
}

impl<S> SplitService<S> {
    /// The pieces `query` is split into, or why it is not split.
    pub fn plan(&self, query: &RangeQuery) -> Result<Vec<Piece>, NoSplit> {
        let understood = analysis_of(query).is_some_and(|a| {
            // `@ start()` / `@ end()` left after the rewrite (it could not be
            // printed exactly) would name each piece's range: never split those.
            a.parse_error().is_none() && !a.has_pre_epoch_at && !a.uses_start_end
        });
        if !understood || query.param("stats").is_some() {
            return Err(NoSplit::Disabled);
        }
        split_range(
            query.start_ms,
            query.end_ms,
            query.step_ms(),
            self.opts.interval.as_millis().min(i64::MAX as u128) as i64,
        )
    }
}

impl<S> Service<RangeQuery> for SplitService<S>
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
        // `@ start()` / `@ end()` become absolute times whether or not the query is
        // split: layers below (the cache) may fetch sub-ranges of it, and their keys must
        // name the actual times.
        crate::promql::pin_start_end(&mut query);
        let pieces = match self.plan(&query) {
            Ok(pieces) => pieces,
            Err(_) => {
                RequestStats::bump(&query.stats.pieces);
                return Box::pin(self.inner.call(query));
            }
        };
        query
            .stats
            .pieces
            .fetch_add(pieces.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let inner = self.inner.clone();
        let global = self.global.clone();
        let per_query = Arc::new(Semaphore::new(self.opts.max_query_parallelism.max(1)));
        Box::pin(async move {
            let base = query;
            let mut tasks = JoinSet::new();
            for (i, piece) in pieces.iter().enumerate() {
                let mut sub = base.clone();
                sub.start_ms = piece.start_ms;
                sub.end_ms = piece.end_ms;
                let svc = inner.clone();
                let (per_query, global) = (per_query.clone(), global.clone());
                // A span per piece, inside the request's span.
                let span = tracing::debug_span!(
                    "piece",
                    index = i,
                    start_ms = piece.start_ms,
                    end_ms = piece.end_ms
                );
                tasks.spawn(
                    async move {
                        let _query_permit = per_query.acquire_owned().await;
                        let _global_permit = global.acquire_owned().await;
                        (i, svc.oneshot(sub).await)
                    }
                    .instrument(span),
                );
            }
            let mut answers: Vec<Option<QueryResponse>> = vec![None; pieces.len()];
            while let Some(joined) = tasks.join_next().await {
                let (i, answer) =
                    joined.map_err(|e| Error::Internal(format!("query piece task failed: {e}")))?;
                // Returning drops `tasks`, which cancels every piece still running.
                answers[i] = Some(answer?);
            }
            let answers = answers
                .into_iter()
                .map(|a| a.ok_or_else(|| Error::Internal("a query piece never answered".into())))
                .collect::<Result<Vec<_>, _>>()?;
            crate::model::merge::merge(answers)
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
