//! The response cache: whole encoded answers to exact repeats of a range query, in
//! memory; the outermost cache layer of the range-query stack.
//!
//! A dashboard's long panels ask the same windows again and again (reloads, several
//! viewers, Grafana's query caching off). For such a repeat the piece cache still
//! decompresses, decodes, merges and re-encodes every day; this cache answers it with
//! the bytes sent the first time (and their gzip form, made once), before any parsing,
//! splitting or merging.
//!
//! Correctness follows from the piece cache's rules, which decide what may be stored:
//! an answer is kept only when every piece of it went through the piece cache as
//! cacheable (no [`super::key::Skip`]), its whole window ends before the freshness
//! cut-off (`now − max_freshness`: data there no longer changes), it has no warnings or
//! partial flag, and neither the querier nor the client said `no-store`. The key is the
//! exact request: querier set, tenant, the `cache.key_headers` values, the query text,
//! start, end, step and every other parameter but `timeout`; the full key is stored and
//! compared, so a hash collision is a miss. `Cache-Control: no-cache` skips the read,
//! `no-store` skips the cache altogether; a window ending after the cut-off (a
//! dashboard at now) can never be stored, so it is not keyed or looked up either.
//! Entries live for the piece cache's TTL.
//! A hit counts as one cache hit of the request (`X-Cache: hit`) and as a `response`
//! hit in `/metrics`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use moka::Expiry;
use moka::future::Cache;
use tower::{Layer, Service};
use xxhash_rust::xxh3::xxh3_64;

use super::Clock;
use super::key::{KEY_VERSION, KeyOptions, directives};
use crate::BoxFuture;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::{EncodedAnswer, RangeQuery, RequestStats};

/// One stored answer and the full key it was stored under.
pub struct Stored {
    key: String,
    /// The answer as the client received it.
    pub answer: Arc<EncodedAnswer>,
}

struct Ttl(Duration);

impl Expiry<u64, Arc<Stored>> for Ttl {
    fn expire_after_create(
        &self,
        _key: &u64,
        _v: &Arc<Stored>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.0)
    }
}

/// The cache; cheap to share behind an `Arc`.
pub struct ResponseCache {
    entries: Cache<u64, Arc<Stored>>,
    key: KeyOptions,
    max_freshness_ms: i64,
}

/// How a request may use the cache.
pub struct Lookup {
    key: String,
    hash: u64,
    /// Whether a stored answer may be served (not `no-cache`).
    pub read: bool,
}

impl ResponseCache {
    /// A cache of at most `capacity_bytes` of answers (their gzip forms included).
    pub fn new(
        capacity_bytes: u64,
        ttl: Duration,
        key: KeyOptions,
        max_freshness: Duration,
    ) -> Self {
        let entries = Cache::builder()
            // Weights in KiB: a u32 covers any answer.
            .max_capacity((capacity_bytes / 1024).max(1))
            .weigher(|_k: &u64, v: &Arc<Stored>| {
                // The gzip form, made later, is counted up front at a typical ratio.
                let json = v.answer.json.len() as u64;
                let bytes = json + json / 8 + v.key.len() as u64;
                bytes.div_ceil(1024).min(u32::MAX as u64) as u32
            })
            .expire_after(Ttl(ttl))
            .build();
        ResponseCache {
            entries,
            key,
            max_freshness_ms: max_freshness.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    /// Entries and bytes held (approximate: KiB-rounded weights), after pending evictions.
    pub async fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        (
            self.entries.entry_count(),
            self.entries.weighted_size() * 1024,
        )
    }

    /// How `q` may use the cache, or `None` when it must not (`no-store`).
    pub fn lookup_for(&self, q: &RangeQuery) -> Option<Lookup> {
        let dirs = directives(&q.request_headers);
        if dirs.no_store {
            return None;
        }
        let key = request_key(q, &self.key);
        Some(Lookup {
            hash: xxh3_64(key.as_bytes()),
            key,
            read: !dirs.no_cache,
        })
    }

    /// The stored answer for `lookup`, if any.
    pub async fn get(&self, lookup: &Lookup) -> Option<Arc<Stored>> {
        if !lookup.read {
            return None;
        }
        let hit = self.entries.get(&lookup.hash).await?;
        (hit.key == lookup.key).then_some(hit)
    }

    /// Whether an answer to a window ending at `end_ms` can be in the cache at `now_ms`:
    /// only windows that end before the freshness cut-off are ever stored (see
    /// [`ResponseCache::storable`]), and the cut-off only moves forward, so a fresher
    /// window (a dashboard at now) is neither looked up nor keyed.
    pub fn may_hold(&self, end_ms: i64, now_ms: i64) -> bool {
        end_ms <= now_ms.saturating_sub(self.max_freshness_ms)
    }

    /// Whether an answer ending at `end_ms` may be stored, given how the stack served it: every
    /// piece cacheable (`pieces_skipped == 0`), the window older than the freshness
    /// cut-off at `now_ms`, the answer complete and not `no-store`.
    pub fn storable(
        &self,
        end_ms: i64,
        now_ms: i64,
        pieces_skipped: u64,
        partial_or_no_store: bool,
    ) -> bool {
        pieces_skipped == 0
            && !partial_or_no_store
            && end_ms <= now_ms.saturating_sub(self.max_freshness_ms)
    }

    /// Stores an answer.
    pub async fn put(&self, lookup: Lookup, answer: Arc<EncodedAnswer>) {
        answer.mark_kept();
        let stored = Arc::new(Stored {
            key: lookup.key,
            answer,
        });
        self.entries.insert(lookup.hash, stored).await;
    }
}

/// Adds [`ResponseCacheService`] to a stack; holds the cache its services share.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    cache: Arc<ResponseCache>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl ResponseCacheLayer {
    /// A layer over `cache`; `clock` decides what is older than the freshness cut-off.
    pub fn new(cache: Arc<ResponseCache>, metrics: Arc<Metrics>, clock: Clock) -> Self {
        ResponseCacheLayer {
            cache,
            metrics,
            clock,
        }
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCacheService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct ResponseCacheService<S> {
    inner: S,
    layer: ResponseCacheLayer,
}

impl<S> Service<RangeQuery> for ResponseCacheService<S>
where
    S: Service<RangeQuery, Response = Arc<EncodedAnswer>, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Arc<EncodedAnswer>;
    type Error = Error;
    type Future = BoxFuture<Arc<EncodedAnswer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, query: RangeQuery) -> Self::Future {
        if !self
            .layer
            .cache
            .may_hold(query.end_ms, (self.layer.clock)())
        {
            return Box::pin(self.inner.call(query));
        }
        let Some(lookup) = self.layer.cache.lookup_for(&query) else {
            return Box::pin(self.inner.call(query));
        };
        // The ready service answers this call; a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            if let Some(hit) = layer.cache.get(&lookup).await {
                layer.metrics.cache_lookup("response", "hit");
                RequestStats::bump(&query.stats.cache_hits);
                return Ok(hit.answer.clone());
            }
            if lookup.read {
                layer.metrics.cache_lookup("response", "miss");
            }
            let (stats, end_ms) = (query.stats.clone(), query.end_ms);
            let answer = inner.call(query).await?;
            let skipped = stats
                .cache_skipped
                .load(std::sync::atomic::Ordering::Relaxed);
            // Only answers the piece cache looked at: its rules decide what may be kept.
            if stats.cache_outcome().is_some()
                && layer
                    .cache
                    .storable(end_ms, (layer.clock)(), skipped, !answer.storable)
            {
                layer.cache.put(lookup, answer.clone()).await;
            }
            Ok(answer)
        })
    }
}

/// The full key of a request: every input that can change its answer, length-prefixed
/// so that no field can run into the next.
pub fn request_key(q: &RangeQuery, opts: &KeyOptions) -> String {
    let mut key = String::with_capacity(q.query.len() + 160);
    let mut field = |name: &str, value: &[u8]| {
        key.push_str(name);
        key.push_str(&format!("{}:", value.len()));
        // Header values may hold bytes that are not UTF-8: hex keeps them exact.
        match std::str::from_utf8(value) {
            Ok(text) => key.push_str(text),
            Err(_) => key.push_str(&format!("{value:02x?}")),
        }
        key.push('\u{1f}');
    };
    field("v=", KEY_VERSION.as_bytes());
    field("response=", b"1");
    field("ns=", opts.namespace.as_bytes());
    let tenant = q
        .request_headers
        .get(&opts.tenant_header)
        .map_or(&b""[..], |v| v.as_bytes());
    field("tenant=", tenant);
    for name in &opts.key_headers {
        for v in q.request_headers.get_all(name) {
            field(name.as_str(), v.as_bytes());
        }
    }
    field("query=", q.query.as_bytes());
    field("start=", q.start_ms.to_string().as_bytes());
    field("end=", q.end_ms.to_string().as_bytes());
    field("step=", q.step_ns.to_string().as_bytes());
    for (k, v) in &q.params {
        if k != "timeout" {
            field(&format!("{}:{k}=", k.len()), v.as_bytes());
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn opts() -> KeyOptions {
        KeyOptions {
            namespace: "http://q:9090".into(),
            tenant_header: HeaderName::from_static("x-scope-orgid"),
            key_headers: vec![HeaderName::from_static("authorization")],
            interval_ms: 86_400_000,
        }
    }

    fn query(pairs: &[(&str, &str)], headers: &[(&'static str, &'static str)]) -> RangeQuery {
        let mut all = vec![
            ("query", "sum(rate(x[5m]))"),
            ("start", "1700000000"),
            ("end", "1700003600"),
            ("step", "60"),
        ];
        all.extend_from_slice(pairs);
        let pairs = all
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut q = RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid");
        for (k, v) in headers {
            q.request_headers.append(*k, HeaderValue::from_static(v));
        }
        q
    }

    #[test]
    fn keys_separate_everything_that_changes_an_answer() {
        let base = request_key(&query(&[], &[]), &opts());
        let others = [
            request_key(&query(&[], &[("x-scope-orgid", "b")]), &opts()),
            request_key(&query(&[], &[("authorization", "Bearer y")]), &opts()),
            request_key(&query(&[("dedup", "false")], &[]), &opts()),
            request_key(
                &RangeQuery {
                    query: "sum(rate(y[5m]))".into(),
                    ..query(&[], &[])
                },
                &opts(),
            ),
        ];
        for other in &others {
            assert_ne!(&base, other);
        }
        let mut moved = query(&[], &[]);
        moved.end_ms += 60_000;
        assert_ne!(base, request_key(&moved, &opts()));
        // `timeout` does not change the answer.
        assert_eq!(
            base,
            request_key(&query(&[("timeout", "5s")], &[]), &opts())
        );
        let mut other_ns = opts();
        other_ns.namespace = "http://other:9090".into();
        assert_ne!(base, request_key(&query(&[], &[]), &other_ns));
    }

    #[tokio::test]
    async fn stores_serves_and_honours_cache_control() {
        let cache = ResponseCache::new(
            1 << 20,
            Duration::from_secs(60),
            opts(),
            Duration::from_secs(600),
        );
        let q = query(&[], &[]);
        let now = q.end_ms + 3_600_000;
        assert!(cache.storable(q.end_ms, now, 0, false));
        assert!(
            !cache.storable(q.end_ms, q.end_ms + 60_000, 0, false),
            "too fresh"
        );
        assert!(
            !cache.storable(q.end_ms, now, 1, false),
            "a piece was uncacheable"
        );
        assert!(!cache.storable(q.end_ms, now, 0, true), "partial");
        let lookup = cache.lookup_for(&q).expect("cacheable");
        assert!(cache.get(&lookup).await.is_none());
        cache
            .put(
                lookup,
                Arc::new(EncodedAnswer::new(
                    Bytes::from_static(b"{\"status\":\"success\"}"),
                    true,
                )),
            )
            .await;
        let again = cache.lookup_for(&q).expect("cacheable");
        let hit = cache.get(&again).await.expect("hit");
        assert_eq!(&hit.answer.json[..], b"{\"status\":\"success\"}");
        let z = hit.answer.gzip().expect("gzip");
        assert_eq!(
            hit.answer.gzip().expect("kept").as_ptr(),
            z.as_ptr(),
            "the gzip form is kept"
        );

        let no_cache = query(&[], &[("cache-control", "no-cache")]);
        let l = cache.lookup_for(&no_cache).expect("stores");
        assert!(cache.get(&l).await.is_none(), "no-cache skips the read");
        let no_store = query(&[], &[("cache-control", "no-store")]);
        assert!(cache.lookup_for(&no_store).is_none());
        let other_tenant = query(&[], &[("x-scope-orgid", "b")]);
        let l = cache.lookup_for(&other_tenant).expect("cacheable");
        assert!(cache.get(&l).await.is_none(), "tenants never share");
    }

    /// A window that ends after the cut-off goes straight to the stack: no lookup is
    /// counted and nothing is stored; once the clock passes its end by `max_freshness`
    /// the same window is looked up, stored and then served from the cache.
    #[tokio::test]
    async fn a_window_ending_after_the_cut_off_is_not_looked_up() {
        use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
        use tower::ServiceExt;

        let cache = Arc::new(ResponseCache::new(
            1 << 20,
            Duration::from_secs(60),
            opts(),
            Duration::from_secs(600),
        ));
        let q = query(&[], &[]);
        let now = Arc::new(AtomicI64::new(q.end_ms + 60_000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let metrics = Arc::new(Metrics::new());
        let layer = ResponseCacheLayer::new(cache.clone(), metrics.clone(), clock);
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = {
            let calls = calls.clone();
            tower::service_fn(move |q: RangeQuery| {
                calls.fetch_add(1, Ordering::Relaxed);
                // As the piece cache marks an answer it looked at.
                RequestStats::bump(&q.stats.cache_misses);
                std::future::ready(Ok::<_, Error>(Arc::new(EncodedAnswer::new(
                    Bytes::from_static(b"{\"status\":\"success\"}"),
                    true,
                ))))
            })
        };
        let lookups = |m: &Metrics| {
            m.encode()
                .lines()
                .filter(|l| {
                    l.starts_with("promql_frontend_cache_lookups_total{backend=\"response\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        let ask_twice = || async {
            for _ in 0..2 {
                layer
                    .layer(inner.clone())
                    .oneshot(q.clone())
                    .await
                    .expect("answer");
            }
        };
        ask_twice().await;
        assert_eq!(calls.load(Ordering::Relaxed), 2, "both asked the stack");
        assert_eq!(lookups(&metrics), 0.0, "no lookup of a fresh window");
        let l = cache.lookup_for(&q).expect("cacheable");
        assert!(cache.get(&l).await.is_none(), "nothing stored");

        now.store(q.end_ms + 600_000, Ordering::Relaxed);
        ask_twice().await;
        assert_eq!(calls.load(Ordering::Relaxed), 3, "the second one was a hit");
        assert_eq!(lookups(&metrics), 2.0, "a miss, then a hit");
    }
}
