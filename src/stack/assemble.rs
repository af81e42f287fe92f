//! Builds everything the edge needs from a [`Config`]: the querier client (also used for
//! passthrough requests), the retry policy, the cache backends and key options, and the
//! composed range-query stack ([`super::build`]). The only module that reads the config's
//! `[downstream]`, `[retry]`, `[query_range]` and `[cache]` sections.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{BalancePolicy, CacheBackendKind, Config, FetchMode, QuerierCompression};
use crate::downstream::{self, Downstream, DownstreamOptions, HealthOptions};
use crate::error::Error;
use crate::layers::cache::answer::{AnswerCache, AnswerOptions};
use crate::layers::cache::backend::Backend;
use crate::layers::cache::batch::Batching;
use crate::layers::cache::key::KeyOptions;
use crate::layers::cache::memory::MemoryBackend;
use crate::layers::cache::redis::{RedisBackend, RedisOptions};
use crate::layers::cache::response::{ResponseCache, ResponseCacheLayer};
use crate::layers::cache::tiered::Tiered;
use crate::layers::cache::{CacheLayer, CacheOptions, system_clock};
use crate::layers::plan::{PlanLayer, PlanOptions};
use crate::layers::retry::{RetryOptions, RetryPolicy};
use crate::layers::split::{SplitLayer, SplitOptions};
use crate::layers::validate::ValidateOptions;
use crate::metrics::Metrics;

use super::{RangeService, StackOptions};

/// What the edge serves with.
pub struct Services {
    /// The range-query stack.
    pub range: RangeService,
    /// The querier endpoints, for passthrough requests, readiness and health checks.
    pub downstream: Downstream,
    /// Retries of passthrough reads (the same policy and budget as the stack's).
    pub retry: RetryPolicy,
    /// The in-process caches, whose size `/metrics` reports.
    pub cache_usage: CacheUsage,
    /// Whole answers of label, series and instant requests (`cache.answers`), in the
    /// range cache's backend.
    pub answers: Option<Arc<AnswerCache>>,
}

/// The in-process caches, for reporting how much they hold.
#[derive(Default)]
pub struct CacheUsage {
    memory: Vec<Arc<MemoryBackend>>,
    response: Option<Arc<ResponseCache>>,
}

impl CacheUsage {
    /// Records entries and bytes held by every in-process cache in `metrics`.
    pub async fn report(&self, metrics: &Metrics) {
        for cache in &self.memory {
            let (entries, bytes) = cache.usage().await;
            metrics.cache_held("memory", entries, bytes);
        }
        if let Some(rc) = &self.response {
            let (entries, bytes) = rc.usage().await;
            metrics.cache_held("response", entries, bytes);
        }
    }
}

/// Builds the services described by a validated `config`, counting into `metrics`.
pub fn assemble(config: &Config, metrics: Arc<Metrics>) -> Result<Services, Error> {
    let d = &config.downstream;
    let downstream = Downstream::new(&DownstreamOptions {
        urls: d.endpoint_urls(),
        policy: match d.policy {
            BalancePolicy::RoundRobin => downstream::BalancePolicy::RoundRobin,
            BalancePolicy::PrimaryBackup => downstream::BalancePolicy::PrimaryBackup,
        },
        health: HealthOptions {
            eject_after: d.eject_after_failures,
            ejection_period: d.ejection_period,
        },
        metrics: metrics.clone(),
        connect_timeout: d.connect_timeout,
        request_timeout: d.request_timeout,
        pool_idle_timeout: d.pool_idle_timeout,
        pool_max_idle_per_host: d.pool_max_idle_per_host,
        tls_ca_file: d.tls_ca_file.clone(),
        max_response_bytes: d.max_response_bytes,
        gzip_answers: d.compression == QuerierCompression::Gzip,
    })?;
    let r = &config.retry;
    let retry = RetryPolicy::new(
        RetryOptions {
            max_retries: r.max_retries,
            backoff_base: r.backoff_base,
            backoff_cap: r.backoff_cap,
            max_retry_after: r.max_retry_after,
            budget_percent: r.budget_percent,
            budget_min_per_second: r.budget_min_per_second,
            budget_window: r.budget_window,
        },
        metrics.clone(),
        downstream.labels(),
    );
    let mut cache_usage = CacheUsage::default();
    let c = &config.cache;
    let backend = match c.enabled {
        true => Some(cache_backend(config, &mut cache_usage)?),
        false => None,
    };
    let cache = backend
        .clone()
        .map(|backend| cache_layer(config, backend, metrics.clone()));
    // One backend for both: replicas sharing Redis share these answers too.
    let answers = backend.filter(|_| c.answers).map(|backend| {
        Arc::new(AnswerCache::new(
            backend,
            AnswerOptions {
                key: key_options(config),
                max_freshness: c.max_freshness,
                ttl: c.ttl,
                max_item_bytes: c.max_item_bytes,
                op_timeout: c.op_timeout,
                clock: system_clock(),
            },
            metrics.clone(),
        ))
    });
    let response_cache = (c.enabled && c.response_capacity_bytes > 0).then(|| {
        let cache = Arc::new(ResponseCache::new(
            c.response_capacity_bytes,
            c.ttl,
            key_options(config),
            c.max_freshness,
        ));
        cache_usage.response = Some(cache.clone());
        ResponseCacheLayer::new(cache, metrics.clone(), system_clock())
    });
    let q = &config.query_range;
    let opts = StackOptions {
        response_cache,
        validate: ValidateOptions {
            max_query_length: q.max_query_length,
        },
        align_start_end_with_step: q.align_start_end_with_step,
        split: (q.fetch == FetchMode::PerInterval).then(|| {
            SplitLayer::new(SplitOptions {
                interval: q.split_interval,
                max_query_parallelism: q.max_query_parallelism,
                max_inflight: q.max_inflight_pieces,
            })
        }),
        cache,
        plan: (q.fetch == FetchMode::Planned).then(|| {
            PlanLayer::new(
                PlanOptions {
                    interval: q.split_interval,
                    max_query_parallelism: q.max_query_parallelism,
                    max_inflight: q.max_inflight_pieces,
                    adaptive_concurrency: q.adaptive_concurrency,
                    part_duration: q.parallel_part_duration,
                },
                metrics.clone(),
            )
        }),
        retry: retry.clone(),
    };
    Ok(Services {
        range: super::build(downstream.clone(), opts),
        downstream,
        retry,
        cache_usage,
        answers,
    })
}

/// How cache keys are built (windows: the split interval, or days when splitting is off).
fn key_options(config: &Config) -> KeyOptions {
    let c = &config.cache;
    let header = |name: &str| http::HeaderName::from_bytes(name.as_bytes()).ok();
    let interval = match config.query_range.split_interval {
        d if d.is_zero() => Duration::from_secs(24 * 3600),
        d => d,
    };
    KeyOptions {
        // Replicas of one querier answer alike and share entries; another querier (set)
        // gets its own.
        namespace: config
            .downstream
            .endpoint_urls()
            .iter()
            .map(|u| u.trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(","),
        tenant_header: header(&c.tenant_header)
            .unwrap_or(http::HeaderName::from_static("x-scope-orgid")),
        key_headers: c.key_headers.iter().filter_map(|h| header(h)).collect(),
        interval_ms: interval.as_millis().min(i64::MAX as u128) as i64,
    }
}

/// The cache backend(s) described by the config.
fn cache_backend(config: &Config, usage: &mut CacheUsage) -> Result<Arc<dyn Backend>, Error> {
    let c = &config.cache;
    let backend: Arc<dyn Backend> = match c.backend {
        CacheBackendKind::Memory => {
            let memory = Arc::new(
                MemoryBackend::new(c.memory_capacity_bytes).uncompressed(!c.compress_memory),
            );
            usage.memory.push(memory.clone());
            memory
        }
        CacheBackendKind::Redis => {
            let redis = RedisBackend::new(RedisOptions {
                url: c.redis.url.clone(),
                cluster: c.redis.cluster,
                nodes: c.redis.nodes.clone(),
                timeout: c.op_timeout,
                reconnect_backoff: c.redis.reconnect_backoff,
            })
            .map_err(Error::Internal)?;
            // One MGET for the pieces of a query that look up their entries together.
            let shared: Arc<dyn Backend> = Arc::new(Batching::new(Arc::new(redis)));
            if c.two_tier {
                let near = Arc::new(MemoryBackend::new(c.memory_capacity_bytes));
                usage.memory.push(near.clone());
                Arc::new(Tiered::new(near, shared, c.ttl))
            } else {
                shared
            }
        }
    };
    Ok(backend)
}

/// The piece-cache layer described by the config, over `backend`.
fn cache_layer(config: &Config, backend: Arc<dyn Backend>, metrics: Arc<Metrics>) -> CacheLayer {
    let c = &config.cache;
    let opts = CacheOptions {
        key: key_options(config),
        max_freshness: c.max_freshness,
        ttl: c.ttl,
        max_item_bytes: c.max_item_bytes,
        op_timeout: c.op_timeout,
        max_parallel_fetches: config.query_range.max_query_parallelism,
        clock: system_clock(),
        lower_step_reuse: c.lower_step_reuse,
    };
    CacheLayer::new(opts, backend, metrics)
}
