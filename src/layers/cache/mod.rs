//! `cache`: the results cache, per split piece.
//!
//! Each piece lies inside one interval window; its entry (key: see [`key`]) holds one or
//! more extents — grid ranges with the querier's answer for them. A request is
//! partitioned into hits and gaps ([`extents::partition`]); only the gaps are fetched,
//! and the parts are merged in time order. So a dashboard refreshed with `end` moved by
//! 30 s fetches only the new tail.
//!
//! Invariants:
//! - Nothing newer than `now − max_freshness` (rounded down to the grid) is stored: a run
//!   crossing that cut-off is fetched as one request and only its older part is cut into
//!   extents and stored.
//! - Never stored: errors, answers with warnings or a partial flag, answers the querier
//!   marks `Cache-Control: no-store`, and requests that are uncacheable (see
//!   [`key::Skip`]). `Cache-Control: no-cache` on a request skips the read but stores the
//!   fresh answer; `no-store` skips both.
//! - A backend error or timeout is a miss (or a skipped write) plus a metric and a
//!   rate-limited warning, never a failed or slow query: every backend call is bounded by
//!   the operation timeout, and writes happen after the answer, in the background.
//! - Entries carry their full key; a hash collision or an unreadable value is a miss.
//! - Identical in-flight fetches (same key and range) share one querier request.

pub mod answer;
pub mod backend;
pub mod batch;
pub mod chunks;
pub mod extents;
pub mod inflight;
pub mod key;
pub mod memory;
pub mod redis;
pub mod response;
pub mod reuse;
pub mod seek;
pub mod tiered;
pub mod value;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OnceCell;
use tower::{Layer, Service, ServiceExt};

use crate::BoxFuture;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::merge::merge;
use crate::model::ranges::{NoSplit, split_range};
use crate::model::{QueryResponse, RangeQuery, RequestStats};
use backend::Backend;
use extents::{Segment, Span, cut, grid_floor, partition, split_at_cutoff, trim, well_formed};
use futures_util::{StreamExt, stream};
use key::{KeyOptions, PieceKey, ShapeKey, Skip, directives, shape_key};
use value::{Entry, StoredExtent};

/// Returns "now" in Unix ms; injectable so tests control freshness.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Options of the cache layer.
#[derive(Clone)]
pub struct CacheOptions {
    /// How keys are built.
    pub key: KeyOptions,
    /// Data newer than this is never stored.
    pub max_freshness: Duration,
    /// Time-to-live of entries.
    pub ttl: Duration,
    /// Entries larger than this (encoded) are not stored.
    pub max_item_bytes: usize,
    /// Bound on every backend call.
    pub op_timeout: Duration,
    /// Most runs of one query fetched at once.
    pub max_parallel_fetches: usize,
    /// The clock.
    pub clock: Clock,
    /// Answer a query from entries of the same query at a finer step (see [`reuse`]).
    pub lower_step_reuse: bool,
}

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// An in-flight fetch: shape key text (never just a hash) and range.
type FetchKey = (String, i64, i64);
type SharedResult = Result<QueryResponse, Arc<Error>>;

/// State shared by every service of one layer: backend, in-flight fetches, metrics.
struct Shared {
    opts: CacheOptions,
    backend: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    inflight: Mutex<HashMap<FetchKey, Arc<OnceCell<SharedResult>>>>,
    last_warning_ms: AtomicI64,
    /// Per query shape (hash of its key text), the last grid point this process stored:
    /// where a refreshed dashboard's missing range will start (see [`Shared::serve`]).
    stored_ends: moka::sync::Cache<u64, i64>,
    /// Entries being combined and written in the background.
    writes_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Entries combined at once (one per core): a cold burst of many windows queues
    /// here instead of starting a blocking thread per window (each thread would get its
    /// own allocator arena, and the process' memory would grow with them).
    combine_permits: Arc<tokio::sync::Semaphore>,
    /// Steps seen per query family, for lower-step reuse.
    steps: reuse::StepIndex,
}

/// Shapes whose last stored point is remembered for the tail prefetch.
const STORED_ENDS_KEPT: u64 = 65_536;

/// Adds [`CacheService`] to a stack.
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// Creates the layer over `backend`.
    pub fn new(opts: CacheOptions, backend: Arc<dyn Backend>, metrics: Arc<Metrics>) -> Self {
        CacheLayer {
            shared: Arc::new(Shared {
                opts,
                backend,
                metrics,
                inflight: Mutex::new(HashMap::new()),
                last_warning_ms: AtomicI64::new(i64::MIN),
                stored_ends: moka::sync::Cache::builder()
                    .max_capacity(STORED_ENDS_KEPT)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
                writes_in_flight: Arc::default(),
                combine_permits: Arc::new(tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                )),
                steps: reuse::StepIndex::default(),
            }),
        }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<RangeQuery> for CacheService<S>
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
        // Keys and fetched sub-ranges must name the absolute times.
        crate::promql::pin_start_end(&mut query);
        let shared = self.shared.clone();
        let now = (shared.opts.clock)();
        let freshness_ms = shared.opts.max_freshness.as_millis().min(i64::MAX as u128) as i64;
        let cutoff_raw = now.saturating_sub(freshness_ms);
        let dirs = directives(&query.request_headers);
        let planned = if dirs.no_store {
            Err(Skip::NoStore)
        } else {
            shape_key(&query, &shared.opts.key).and_then(|k| {
                let at_too_new = crate::promql::analysis_of(&query)
                    .and_then(|a| a.latest_at_ms)
                    .is_some_and(|at| at > cutoff_raw);
                if at_too_new {
                    Err(Skip::AtInFuture)
                } else {
                    let windows = windows_of(&query, &k, shared.opts.key.interval_ms)?;
                    Ok((k, windows))
                }
            })
        };
        let (shape, windows) = match planned {
            Ok(planned) => planned,
            Err(skip) => {
                shared.metrics.cache_skip(skip.as_str());
                RequestStats::bump(&query.stats.cache_skipped);
                return Box::pin(self.inner.call(query));
            }
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            shared
                .serve(inner, query, shape, windows, dirs.no_cache, cutoff_raw)
                .await
        })
    }
}

/// One interval window of a query: its key and the query's grid points inside it.
struct Window {
    key: PieceKey,
    span: Span,
}

/// The windows a query's grid points fall into, in time order.
fn windows_of(q: &RangeQuery, shape: &ShapeKey, interval_ms: i64) -> Result<Vec<Window>, Skip> {
    let step = q.step_ms();
    let last = q.start_ms + (q.end_ms - q.start_ms) / step * step;
    let spans = match split_range(q.start_ms, last, step, interval_ms) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| Span {
                start_ms: p.start_ms,
                end_ms: p.end_ms,
            })
            .collect(),
        Err(NoSplit::SingleInterval) => vec![Span {
            start_ms: q.start_ms,
            end_ms: last,
        }],
        // A step of a window or longer: cached only when the query lies in one window.
        Err(NoSplit::StepNotBelowInterval)
            if q.start_ms.div_euclid(interval_ms) == last.div_euclid(interval_ms) =>
        {
            vec![Span {
                start_ms: q.start_ms,
                end_ms: last,
            }]
        }
        Err(NoSplit::StepNotBelowInterval) => return Err(Skip::CrossesWindow),
        Err(_) => return Err(Skip::OddRange),
    };
    Ok(spans
        .into_iter()
        .map(|span| Window {
            key: shape.window(span.start_ms.div_euclid(interval_ms)),
            span,
        })
        .collect())
}

/// What the extents of an entry at the finer step `finer` answer of `gap` (on the grid
/// of `step` and `phase`): the parts they cover, thinned to this grid, and the sub-gaps
/// left. Data that does not read cleanly answers nothing.
fn from_finer(
    entry: &[(Span, QueryResponse)],
    spans: &[Span],
    gap: Span,
    phase: i64,
    step: i64,
    finer: i64,
) -> (Vec<(Span, QueryResponse)>, Vec<Span>) {
    let mut parts = Vec::new();
    let mut left = Vec::new();
    let mut cursor = gap.start_ms;
    for seg in partition(spans, gap.start_ms, gap.end_ms, finer) {
        let Segment::Hit { extent, span } = seg else {
            continue;
        };
        // The points of this grid inside the covered span.
        let first = grid_floor(span.start_ms.saturating_add(step - 1), phase, step);
        let last = grid_floor(span.end_ms, phase, step);
        if first > last {
            continue;
        }
        let covered = Span {
            start_ms: first,
            end_ms: last,
        };
        let Some(answer) = entry
            .get(extent)
            .and_then(|(_, resp)| extents::thin(resp, covered, phase, step).ok())
        else {
            return (Vec::new(), vec![gap]);
        };
        if first > cursor {
            left.push(Span {
                start_ms: cursor,
                end_ms: first - step,
            });
        }
        parts.push((covered, answer));
        cursor = last + step;
    }
    if cursor <= gap.end_ms {
        left.push(Span {
            start_ms: cursor,
            end_ms: gap.end_ms,
        });
    }
    (parts, left)
}

/// Joins gaps that follow each other on the grid (the end of one window's gap and the
/// start of the next window's) into runs: a run is one querier request.
fn join_gaps(gaps: &[Span], step_ms: i64) -> Vec<Span> {
    let mut runs: Vec<Span> = Vec::with_capacity(gaps.len());
    for gap in gaps {
        match runs.last_mut() {
            Some(run) if run.end_ms + step_ms == gap.start_ms => run.end_ms = gap.end_ms,
            _ => runs.push(*gap),
        }
    }
    runs
}

impl Shared {
    /// Serves a cacheable query: reads the entries of all its windows at once, fetches
    /// what they lack as few runs as possible (adjacent gaps joined, the fresh tail
    /// apart), stores each run cut into its windows' extents, and merges the parts.
    async fn serve<S>(
        self: Arc<Self>,
        inner: S,
        query: RangeQuery,
        shape: ShapeKey,
        windows: Vec<Window>,
        no_cache: bool,
        cutoff_raw: i64,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let step = query.step_ms();
        let phase = query.start_ms.rem_euclid(step);
        let cutoff = grid_floor(cutoff_raw, phase, step);
        let last = windows.last().map_or(query.start_ms, |w| w.span.end_ms);
        // A dashboard refreshed at now misses exactly what came after the last point
        // stored for its shape. That range is asked while the entries are read, so the
        // refresh waits for the slower of the two instead of both in turn; it is used only
        // if it covers a missing range as it turns out (else it was wasted: counted).
        let shape_hash = xxhash_rust::xxh3::xxh3_64(shape.text.as_bytes());
        let freshness_ms = self.opts.max_freshness.as_millis().min(i64::MAX as u128) as i64;
        let prefetch = self
            .stored_ends
            .get(&shape_hash)
            .map(|end| Span {
                start_ms: end + step,
                end_ms: last,
            })
            .filter(|s| {
                !no_cache
                    && s.start_ms > query.start_ms
                    && s.start_ms <= s.end_ms
                    // Only the new minutes of a refresh, never a long range.
                    && s.start_ms > cutoff.saturating_sub(2 * freshness_ms)
            });
        let read = async {
            if no_cache {
                windows.iter().map(|_| Vec::new()).collect()
            } else {
                self.read_many(&windows, phase, step).await
            }
        };
        let (mut cached, prefetched) = match prefetch {
            Some(span) => {
                // The fetch is polled first, so its request is handed to the querier's
                // connection before the reads run; the reads then yield once, so that
                // the connection's task (woken on this thread) writes it out before
                // them. A memory backend reads without waiting, and its reads (up to
                // 0.4 ms for a week of panels) would otherwise delay the request.
                let fetch = self.fetch(inner.clone(), &query, &shape.text, span);
                let read = async {
                    tokio::task::yield_now().await;
                    read.await
                };
                let (answer, cached) = tokio::join!(fetch, read);
                (cached, Some((span, answer)))
            }
            None => (read.await, None),
        };
        // Per window: the parts the cache answers, and the gaps to fetch.
        let mut parts: Vec<(i64, QueryResponse)> = Vec::new();
        let mut window_gaps_all: Vec<Vec<Span>> = Vec::with_capacity(windows.len());
        let mut counts: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
        for (w, entry) in windows.iter().zip(cached.iter_mut()) {
            let spans: Vec<Span> = entry.iter().map(|(s, _)| *s).collect();
            let mut hit_parts = Vec::new();
            let mut window_gaps = Vec::new();
            let mut usable = true;
            for seg in partition(&spans, w.span.start_ms, w.span.end_ms, step) {
                match seg {
                    Segment::Hit { extent, span } => {
                        let (stored_span, resp) = &entry[extent];
                        if span == *stored_span {
                            hit_parts.push((span.start_ms, resp.clone()));
                        } else {
                            match seek::trim_stored(resp, span.start_ms, span.end_ms) {
                                Ok(t) => hit_parts.push((span.start_ms, t)),
                                Err(_) => {
                                    usable = false;
                                    break;
                                }
                            }
                        }
                    }
                    Segment::Gap(span) => window_gaps.push(span),
                }
            }
            if !usable {
                // Stored data that cannot be cut: the window is a miss, refetched and
                // stored anew, never an error.
                self.metrics.cache_skip("unreadable_entry");
                entry.clear();
                hit_parts.clear();
                window_gaps = vec![w.span];
            }
            counts.push((hit_parts.len(), window_gaps.len()));
            parts.extend(hit_parts);
            window_gaps_all.push(window_gaps);
        }
        // Gaps an entry at a finer step of the same query covers are answered from it.
        let mut reused: Vec<Vec<(Span, QueryResponse)>> =
            windows.iter().map(|_| Vec::new()).collect();
        if !no_cache && self.opts.lower_step_reuse {
            self.steps.record(shape.family, step);
            // Finer entries hold nothing after the cut-off either, and a refresh's gap
            // (its new minutes and fresh tail) is not worth reading them: only gaps that
            // start at least `max_freshness` before the cut-off look there.
            let older_than = cutoff.saturating_sub(freshness_ms);
            if window_gaps_all
                .iter()
                .flatten()
                .any(|g| g.start_ms <= older_than)
            {
                self.reuse_finer(
                    &shape,
                    &windows,
                    &mut window_gaps_all,
                    &mut reused,
                    (phase, step, older_than),
                )
                .await;
            }
        }
        for ((count, from_finer), gaps) in counts.iter_mut().zip(&reused).zip(&window_gaps_all) {
            *count = (count.0 + from_finer.len(), gaps.len());
            parts.extend(
                from_finer
                    .iter()
                    .map(|(span, r)| (span.start_ms, r.clone())),
            );
        }
        let gaps: Vec<Span> = window_gaps_all.into_iter().flatten().collect();
        // The missing ranges as runs, each asked as one request; of a run crossing the
        // freshness cut-off only the part up to it is stored, the fresh tail never (a
        // refreshed dashboard asks its new minutes and its fresh tail in one request).
        let fetches: Vec<(Span, Option<Span>)> = join_gaps(&gaps, step)
            .into_iter()
            .map(|run| (run, split_at_cutoff(run, cutoff, step).0))
            .collect();
        // A run the prefetched range covers (it ends where the query ends) is cut from it.
        let covering = prefetched.as_ref().map(|(p, _)| *p);
        let from_prefetch = |run: &Span| {
            covering.is_some_and(|p| p.start_ms <= run.start_ms && p.end_ms == run.end_ms)
        };
        let used = fetches.iter().any(|(run, _)| from_prefetch(run));
        if prefetched.is_some() {
            self.metrics
                .tail_prefetch(if used { "used" } else { "unused" });
        }
        // Futures built (each with its own service) before any is polled.
        let requests: Vec<_> = fetches
            .iter()
            .filter(|(run, _)| !from_prefetch(run))
            .map(|(span, _)| self.fetch(inner.clone(), &query, &shape.text, *span))
            .collect();
        let mut fetched = stream::iter(requests)
            .buffered(self.opts.max_parallel_fetches.max(1))
            .collect::<Vec<Result<QueryResponse, Error>>>()
            .await
            .into_iter();
        let mut results: Vec<Result<QueryResponse, Error>> = Vec::with_capacity(fetches.len());
        for (run, _) in &fetches {
            if from_prefetch(run) {
                results.push(match &prefetched {
                    Some((p, Ok(resp))) if p == run => Ok(resp.clone()),
                    Some((_, Ok(resp))) => trim(resp, run.start_ms, run.end_ms),
                    Some((_, Err(e))) => Err(e.duplicate()),
                    None => Err(Error::Internal("prefetched range missing".into())),
                });
            } else {
                results.push(
                    fetched
                        .next()
                        .unwrap_or_else(|| Err(Error::Internal("a run was not fetched".into()))),
                );
            }
        }
        let mut new_extents = reused;
        let mut storable = true;
        for ((span, stored), result) in fetches.iter().zip(results) {
            let resp = result?;
            if let Some(stored) = stored {
                let kept = !(resp.is_partial() || resp.no_store)
                    && self.cut_into_windows(&windows, *span, *stored, &resp, &mut new_extents);
                storable &= kept;
            }
            parts.push((span.start_ms, resp));
        }
        parts.sort_by_key(|(start, _)| *start);
        let hits: usize = counts.iter().map(|(h, _)| h).sum();
        let answer = if parts.len() == 1 {
            parts
                .pop()
                .map(|(_, p)| p)
                .ok_or_else(|| Error::Internal("no cache parts".into()))?
        } else {
            match merge(parts.into_iter().map(|(_, p)| p).collect()) {
                Ok(merged) => merged,
                // Stored data that does not merge: a miss, never an error.
                Err(_) if hits > 0 => {
                    return self.refetch_whole(inner, &query, &shape, last).await;
                }
                Err(e) => return Err(e),
            }
        };
        for (hits, gaps) in counts {
            let result = match (hits, gaps) {
                (_, 0) => "hit",
                (0, _) => "miss",
                _ => "partial",
            };
            self.metrics.cache_lookup(self.backend.name(), result);
            RequestStats::bump(match result {
                "hit" => &query.stats.cache_hits,
                "miss" => &query.stats.cache_misses,
                _ => &query.stats.cache_partial,
            });
        }
        if !storable {
            self.metrics.cache_skip(Skip::Response.as_str());
        } else {
            let newest = fetches
                .iter()
                .filter_map(|(_, s)| s.map(|s| s.end_ms))
                .max();
            if let Some(newest) = newest {
                let known = self.stored_ends.get(&shape_hash).unwrap_or(i64::MIN);
                self.stored_ends.insert(shape_hash, known.max(newest));
            }
            for ((w, old), new) in windows.into_iter().zip(cached).zip(new_extents) {
                if new.is_empty() {
                    continue;
                }
                // Combining, compressing and encoding happen after the answer, off the
                // request path and off the runtime's threads.
                let shared = self.clone();
                let in_flight = WriteInFlight::start(&self.writes_in_flight);
                tokio::spawn(async move {
                    let _in_flight = in_flight;
                    let key = w.key.full.clone();
                    let Ok(permit) = shared.combine_permits.clone().acquire_owned().await else {
                        return;
                    };
                    let made = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        combine(&key, old, new, step)
                    })
                    .await;
                    match made {
                        Ok(Ok(entry)) => shared.write(w.key.hash, entry).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "cache entry not stored"),
                        Err(e) => tracing::warn!(error = %e, "cache entry not stored"),
                    }
                });
            }
        }
        Ok(answer)
    }

    /// Answers what entries of the same query at finer steps cover of the gaps (see
    /// [`reuse`]): the covered parts leave `gaps` and their answers, thinned to this
    /// grid, go to `reused` of their window (served, and stored at this step). Only
    /// windows with a gap starting at or before `older_than` are read.
    async fn reuse_finer(
        &self,
        shape: &ShapeKey,
        windows: &[Window],
        gaps: &mut [Vec<Span>],
        reused: &mut [Vec<(Span, QueryResponse)>],
        (phase, step, older_than): (i64, i64, i64),
    ) {
        for finer in self.steps.finer(shape.family, step) {
            let finer_phase = phase.rem_euclid(finer);
            let finer_shape = shape.at_step(finer, finer_phase);
            let (with_gaps, finer_windows): (Vec<usize>, Vec<Window>) = windows
                .iter()
                .enumerate()
                .filter(|(i, _)| gaps[*i].iter().any(|g| g.start_ms <= older_than))
                .map(|(i, w)| {
                    let window = Window {
                        key: finer_shape.window(w.key.window),
                        span: w.span,
                    };
                    (i, window)
                })
                .unzip();
            if with_gaps.is_empty() {
                return;
            }
            let entries = self.read_many(&finer_windows, finer_phase, finer).await;
            for (i, entry) in with_gaps.into_iter().zip(entries) {
                if entry.is_empty() {
                    continue;
                }
                let spans: Vec<Span> = entry.iter().map(|(s, _)| *s).collect();
                let mut left = Vec::new();
                for gap in std::mem::take(&mut gaps[i]) {
                    let (parts, rest) = from_finer(&entry, &spans, gap, phase, step, finer);
                    if !parts.is_empty() {
                        self.metrics.lower_step_reuse();
                    }
                    reused[i].extend(parts);
                    left.extend(rest);
                }
                gaps[i] = left;
            }
        }
    }

    /// Adds the part `span` (of the answer `resp` to the run `run`) to the new extents of
    /// the windows it covers: exactly what each window would hold had it been fetched
    /// alone. `false` when the answer cannot be cut (then nothing of it is stored).
    fn cut_into_windows(
        &self,
        windows: &[Window],
        run: Span,
        span: Span,
        resp: &QueryResponse,
        new_extents: &mut [Vec<(Span, QueryResponse)>],
    ) -> bool {
        let covered: Vec<(usize, Span)> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.span.start_ms <= span.end_ms && w.span.end_ms >= span.start_ms)
            .map(|(i, w)| {
                (
                    i,
                    Span {
                        start_ms: w.span.start_ms.max(span.start_ms),
                        end_ms: w.span.end_ms.min(span.end_ms),
                    },
                )
            })
            .collect();
        if let [(i, part)] = covered[..]
            && part == run
        {
            new_extents[i].push((part, resp.clone()));
            return true;
        }
        let spans: Vec<Span> = covered.iter().map(|(_, s)| *s).collect();
        match cut(resp, &spans) {
            Ok(pieces) => {
                for ((i, part), piece) in covered.into_iter().zip(pieces) {
                    new_extents[i].push((part, piece));
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Reads and decodes the entries of `windows` in one backend call; anything
    /// unusable is an empty entry.
    async fn read_many(
        &self,
        windows: &[Window],
        phase: i64,
        step: i64,
    ) -> Vec<Vec<(Span, QueryResponse)>> {
        let keys: Vec<u64> = windows.iter().map(|w| w.key.hash).collect();
        let empty = || windows.iter().map(|_| Vec::new()).collect();
        let got = tokio::time::timeout(self.opts.op_timeout, self.backend.get_many(&keys)).await;
        let values = match got {
            Ok(Ok(values)) if values.len() == windows.len() => values,
            Ok(Ok(_)) => {
                self.backend_failed("get", "answered a different number of values");
                return empty();
            }
            Ok(Err(e)) => {
                self.backend_failed("get", &e.to_string());
                return empty();
            }
            Err(_) => {
                self.backend_failed("get", "timed out");
                return empty();
            }
        };
        windows
            .iter()
            .zip(values)
            .map(|(w, bytes)| match bytes {
                Some(bytes) => self.decode(&w.key, &bytes, phase, step),
                None => Vec::new(),
            })
            .collect()
    }

    /// Decodes a stored entry of `key`; anything unusable is an empty entry.
    fn decode(
        &self,
        key: &PieceKey,
        bytes: &Bytes,
        phase: i64,
        step: i64,
    ) -> Vec<(Span, QueryResponse)> {
        self.metrics
            .cache_bytes(self.backend.name(), "read", bytes.len());
        // Values kept by this process's memory backend never crossed a network: their
        // checksum is not checked again.
        let read = match self.backend.keeps_uncompressed() {
            true => Entry::decode_own(bytes),
            false => Entry::decode_shared(bytes),
        };
        let Ok(entry) = read else {
            self.metrics.cache_skip("unreadable_entry");
            return Vec::new();
        };
        if entry.key != key.full {
            // A 64-bit hash collision, or a foreign writer: never serve it.
            return Vec::new();
        }
        let spans: Vec<Span> = entry.extents.iter().map(|e| e.span).collect();
        if !well_formed(&spans, phase, step) {
            self.metrics.cache_skip("unreadable_entry");
            return Vec::new();
        }
        let mut out = Vec::with_capacity(entry.extents.len());
        for e in entry.extents {
            let read = match &e.layout {
                Some(layout) => QueryResponse::from_layout(&e.json, layout),
                None => QueryResponse::from_slice(&e.json),
            };
            match read {
                Ok(mut resp) => {
                    chunks::attach(&mut resp, e.chunks);
                    out.push((e.span, resp));
                }
                Err(_) => {
                    self.metrics.cache_skip("unreadable_entry");
                    return Vec::new();
                }
            }
        }
        out
    }

    /// The answer for the whole piece straight from the querier, when the cached data
    /// turned out unusable; counted as an unreadable entry, not stored.
    async fn refetch_whole<S>(
        &self,
        inner: S,
        query: &RangeQuery,
        shape: &ShapeKey,
        last: i64,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        self.metrics.cache_skip("unreadable_entry");
        RequestStats::bump(&query.stats.cache_misses);
        let whole = Span {
            start_ms: query.start_ms,
            end_ms: last,
        };
        self.fetch(inner, query, &shape.text, whole).await
    }

    /// Fetches `span` of `query` (shape key `shape`) from the querier, sharing the
    /// request with identical concurrent fetches.
    async fn fetch<S>(
        &self,
        inner: S,
        query: &RangeQuery,
        shape: &str,
        span: Span,
    ) -> Result<QueryResponse, Error>
    where
        S: Service<RangeQuery, Response = QueryResponse, Error = Error> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let fetch_key = (shape.to_owned(), span.start_ms, span.end_ms);
        let (cell, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&fetch_key) {
                Some(cell) => (cell.clone(), false),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(fetch_key.clone(), cell.clone());
                    (cell, true)
                }
            }
        };
        if !leader {
            self.metrics.coalesced_fetch();
        }
        // Every participant removes the entry when it finishes or is cancelled, so a
        // result is shared only by requests that overlapped it, never replayed later.
        let _guard = InflightGuard {
            map: &self.inflight,
            key: fetch_key,
            cell: cell.clone(),
        };
        let mut sub = query.clone();
        sub.start_ms = span.start_ms;
        sub.end_ms = span.end_ms;
        let own = sub.clone();
        let fallback = inner.clone();
        let shared = cell.get_or_init(|| async move { inner.oneshot(sub).await.map_err(Arc::new) });
        // A waiter keeps its own deadline, and the leader's may be shorter: a timeout
        // is never shared, the waiter then asks itself.
        let waiting_since = tokio::time::Instant::now();
        let result = match (leader, query.deadline) {
            (false, Some(deadline)) => match tokio::time::timeout_at(deadline, shared).await {
                Ok(result) => result.clone(),
                Err(_) => {
                    return Err(Error::Timeout {
                        endpoint: "the querier".into(),
                        after: deadline.saturating_duration_since(waiting_since),
                        limit: "the request's deadline, waiting for an identical fetch",
                    });
                }
            },
            _ => shared.await.clone(),
        };
        match result {
            Err(e) if !leader && matches!(*e, Error::Timeout { .. }) => fallback.oneshot(own).await,
            other => other.map_err(|e| e.duplicate()),
        }
    }

    /// Stores an entry, bounded by the operation timeout; failures are counted only.
    async fn write(&self, hash: u64, entry: Entry) {
        let mut bytes = Bytes::from(match self.backend.keeps_uncompressed() {
            true => entry.encode_uncompressed(),
            false => entry.encode(),
        });
        if bytes.len() > self.opts.max_item_bytes && self.backend.keeps_uncompressed() {
            // Too large as it is: stored compressed, like for any other backend.
            bytes = Bytes::from(entry.encode());
        }
        if bytes.len() > self.opts.max_item_bytes {
            self.metrics.cache_skip(Skip::TooLarge.as_str());
            return;
        }
        let n = bytes.len();
        match tokio::time::timeout(
            self.opts.op_timeout,
            self.backend.set(hash, bytes, self.opts.ttl),
        )
        .await
        {
            Ok(Ok(())) => self.metrics.cache_bytes(self.backend.name(), "write", n),
            Ok(Err(e)) => self.backend_failed("set", &e.to_string()),
            Err(_) => self.backend_failed("set", "timed out"),
        }
    }

    /// Counts a backend failure; logs at most one warning per 10 s.
    fn backend_failed(&self, op: &'static str, why: &str) {
        self.metrics.cache_backend_error(self.backend.name(), op);
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                backend = self.backend.name(),
                op,
                error = why,
                "cache backend failed; serving as a miss"
            );
        }
    }
}

/// Counts a background write from its start until dropped.
struct WriteInFlight(Arc<std::sync::atomic::AtomicUsize>);

impl WriteInFlight {
    fn start(counter: &Arc<std::sync::atomic::AtomicUsize>) -> WriteInFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        WriteInFlight(counter.clone())
    }
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CacheLayer {
    /// Entries still being combined and written in the background (for tests that
    /// read what a request stored).
    pub fn writes_in_flight(&self) -> usize {
        self.shared.writes_in_flight.load(Ordering::SeqCst)
    }
}

/// Removes an in-flight entry when dropped, if it is still the one this request used.
struct InflightGuard<'a> {
    map: &'a Mutex<HashMap<FetchKey, Arc<OnceCell<SharedResult>>>>,
    key: FetchKey,
    cell: Arc<OnceCell<SharedResult>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(&self.key);
        }
    }
}

/// The entry to store: old extents plus new ones, adjacent extents merged into one.
fn combine(
    key: &str,
    old: Vec<(Span, QueryResponse)>,
    new: Vec<(Span, QueryResponse)>,
    step: i64,
) -> Result<Entry, Error> {
    let mut all: Vec<(Span, QueryResponse)> = old.into_iter().chain(new).collect();
    all.sort_by_key(|(s, _)| s.start_ms);
    let mut runs: Vec<(Span, Vec<QueryResponse>)> = Vec::new();
    for (span, resp) in all {
        match runs.last_mut() {
            Some((run, parts)) if run.end_ms + step == span.start_ms => {
                run.end_ms = span.end_ms;
                parts.push(resp);
            }
            Some((run, _)) if span.start_ms <= run.end_ms => {
                // Overlap cannot happen (new extents fill gaps only); keep the older.
                continue;
            }
            _ => runs.push((span, vec![resp])),
        }
    }
    let mut extents = Vec::with_capacity(runs.len());
    for (span, mut parts) in runs {
        let mut resp = if parts.len() == 1 {
            parts
                .pop()
                .ok_or_else(|| Error::Internal("empty extent run".into()))?
        } else {
            merge(parts)?
        };
        // Kept compressed at the level of answers made for one request: storing stays
        // cheap, and a refresh's gzip body is as small as it was when made whole.
        chunks::fill(&mut resp, crate::encoding::FRESH_LEVEL);
        let (json, layout) = resp.encode_with_layout();
        extents.push(StoredExtent {
            span,
            json: Bytes::from(json),
            chunks: chunks::of_answer(&resp),
            layout: Some(layout),
        });
    }
    Ok(Entry {
        key: key.to_owned(),
        extents,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
