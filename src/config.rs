//! Configuration: TOML sections with serde defaults, environment and flag overrides, and
//! [`Config::validate`].
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config`),
//! `PROMQL_FRONTEND_<SECTION>__<FIELD>` environment variables (e.g.
//! `PROMQL_FRONTEND_DOWNSTREAM__CONNECT_TIMEOUT=2s`; the value is read as a TOML value
//! when it parses as one, as a string otherwise), then the command-line flags
//! `--listen` / `--downstream-url` (which also read `PROMQL_FRONTEND_LISTEN` /
//! `PROMQL_FRONTEND_DOWNSTREAM_URL`). Unknown fields are errors everywhere, so a typo
//! never silently falls back to a default. `config.example.toml` documents every field
//! and is parsed by a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::downstream::BalancePolicy;
pub use crate::slowlog::Threshold;

/// Prefix of environment variables that override config fields.
pub const ENV_PREFIX: &str = "PROMQL_FRONTEND_";

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9095";
/// Default querier URL.
pub const DEFAULT_DOWNSTREAM_URL: &str = "http://127.0.0.1:9090";
/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Default limit on a range-query answer read from the querier: 1 GiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024 * 1024;

/// Most querier URLs in `downstream.urls` (attempts track tried URLs in a bit set).
pub const MAX_DOWNSTREAM_URLS: usize = 64;

/// Request headers forwarded to the querier unless configured otherwise.
pub const DEFAULT_FORWARD_HEADERS: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Authorization",
    "User-Agent",
    "X-Scope-OrgID",
    "X-Dashboard-Uid",
    "X-Panel-Id",
    "X-Grafana-Org-Id",
    "X-Query-Group-Id",
    "X-Request-Id",
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML (after environment overrides) does not fit the schema.
    #[error("parsing config: {0}")]
    Parse(#[from] toml::de::Error),
    /// An override environment variable does not name a config field.
    #[error("environment variable {name}: {msg}")]
    Env {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A field has a value that cannot work.
    #[error("invalid config field {field}: {msg}")]
    Invalid {
        /// Dotted path of the field, e.g. `downstream.connect_timeout`.
        field: &'static str,
        /// What is wrong with it.
        msg: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server clients talk to.
    pub server: ServerConfig,
    /// The querier the frontend forwards to.
    pub downstream: DownstreamConfig,
    /// How failed querier requests are retried.
    pub retry: RetryConfig,
    /// How range queries are validated, aligned and split.
    pub query_range: QueryRangeConfig,
    /// The results cache.
    pub cache: CacheConfig,
    /// Process logging.
    pub log: LogConfig,
    /// The slow-query log.
    pub slow_query_log: SlowQueryLogConfig,
}

/// `[server]`: the listening side.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`).
    pub listen: SocketAddr,
    /// How long a shutdown (SIGTERM/SIGINT) waits for in-flight requests to finish.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Whether the frontend gzips the responses it builds itself (`query_range`) for
    /// clients that accept gzip. Passthrough responses keep the querier's encoding.
    pub gzip_responses: bool,
    /// Most requests answered at once; further ones get 503 `unavailable` at once
    /// instead of queueing without bound. `/-/healthy`, `/-/ready` and `/metrics` are not
    /// counted, so probes and scrapes still answer under overload. `0`: no limit.
    pub max_concurrent_requests: usize,
    /// Largest request head (request line and headers; at least 8192): a larger one
    /// gets 431 with Prometheus error JSON. The HTTP layer reads at most twice this per
    /// request head; beyond that it answers a bare 431 (HTTP/1.1) or refuses the stream
    /// (HTTP/2) without reading on. More than 100 header lines in one HTTP/1.1 request
    /// also get a bare 431.
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9095))),
            grace_period: Duration::from_secs(30),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: Duration::from_secs(30),
            gzip_responses: true,
            max_concurrent_requests: 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// `[downstream]`: the querier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// Base URL of the querier: `http://` or `https://`, host, port and an optional path
    /// prefix (`http://thanos-query:10902/prefix`). API paths are appended to it.
    pub url: String,
    /// Several querier replicas serving the same data (an HA pair, several Thanos Query
    /// replicas), each a URL like `url`. When not empty it replaces `url`.
    pub urls: Vec<String>,
    /// How requests are spread over `urls`: `round_robin` or `primary_backup` (the
    /// first healthy URL in list order). A failed attempt is retried on another URL.
    pub policy: BalancePolicy,
    /// An endpoint whose connections fail this many times in a row is ejected: it gets
    /// no requests for `ejection_period` (unless every endpoint is ejected). Then it is
    /// back on probation: its first answer clears its record, its first failure ejects it
    /// again. `0` never ejects.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint is left alone.
    #[serde(with = "humantime_serde")]
    pub ejection_period: Duration,
    /// Probe every endpoint at `probe_path` this often and eject or restore it by the
    /// result (in addition to the passive checks on real traffic). `0s`: no active probes.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Overall time for one client request, retries included. A client's `timeout`
    /// parameter can shorten it, never lengthen it; range queries pass the time left
    /// to the querier as their `timeout` parameter.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Time allowed to open a TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one attempt: until the response headers for passthrough
    /// requests, until the whole body for range queries. Lower it below `deadline` to
    /// fail over from a querier that hangs.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Idle keep-alive connections are closed after this long.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Most idle keep-alive connections kept per querier host.
    pub pool_max_idle_per_host: usize,
    /// Request headers forwarded to the querier (case-insensitive). `Content-Type` of a
    /// request body is always forwarded; hop-by-hop headers never are.
    pub forward_headers: Vec<String>,
    /// `/-/ready` is ready while the querier has answered within this window; past it,
    /// `/-/ready` probes the querier itself.
    #[serde(with = "humantime_serde")]
    pub ready_window: Duration,
    /// Path (below the URL prefix) that `/-/ready` requests when it needs to probe.
    /// Any HTTP answer counts as alive.
    pub probe_path: String,
    /// PEM file of extra CA certificates to trust for an `https://` querier, in addition
    /// to the system's (for a private CA). Empty: system CAs only.
    pub tls_ca_file: Option<PathBuf>,
    /// Largest range-query answer the frontend reads from the querier (after gzip
    /// decoding); a larger one fails with 502 instead of exhausting memory.
    pub max_response_bytes: usize,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            url: DEFAULT_DOWNSTREAM_URL.to_owned(),
            urls: Vec::new(),
            policy: BalancePolicy::RoundRobin,
            eject_after_failures: 3,
            ejection_period: Duration::from_secs(10),
            health_check_interval: Duration::ZERO,
            deadline: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            forward_headers: DEFAULT_FORWARD_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ready_window: Duration::from_secs(30),
            probe_path: "/api/v1/status/buildinfo".to_owned(),
            tls_ca_file: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl DownstreamConfig {
    /// The querier URLs in use: `urls` when set, else `url`.
    pub fn endpoint_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }
}

/// `[retry]`: retries of failed querier requests (transport errors, timeouts, 5xx and
/// 429 answers; see `Error::is_retryable`), per range-query piece and per passthrough
/// request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra attempts after the first. `0` turns retries off.
    pub max_retries: u32,
    /// Upper bound of the first backoff; each retry doubles it (full jitter: the wait is
    /// a random time up to the bound).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest backoff bound.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// A 429/503 answer's `Retry-After` is waited for when it is at most this long;
    /// a longer one ends the retries and goes to the client.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Retries allowed as a percentage of requests over `budget_window`, so an outage
    /// does not multiply the load on the querier.
    pub budget_percent: f32,
    /// Retries always allowed per second, whatever the request rate.
    pub budget_min_per_second: u32,
    /// Window over which the budget counts requests (1s to 60s).
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            budget_percent: 20.0,
            budget_min_per_second: 10,
            budget_window: Duration::from_secs(10),
        }
    }
}

/// `[query_range]`: validation, step alignment and splitting of range queries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryRangeConfig {
    /// Split range queries at multiples of this interval from the Unix epoch (24h: at
    /// UTC midnight) and run the pieces in parallel. `0s` disables splitting.
    #[serde(with = "humantime_serde")]
    pub split_interval: Duration,
    /// Most pieces of one query sent to the querier at once.
    pub max_query_parallelism: usize,
    /// Most pieces in flight to the querier at once, over all queries.
    pub max_inflight_pieces: usize,
    /// Move `start` and `end` down to multiples of `step`. Off by default because it
    /// changes the answer (other timestamps than the client asked for); on, refreshed
    /// dashboards reuse the same grid.
    pub align_start_end_with_step: bool,
    /// Reject range queries longer than this with 400 `bad_data`. `0s`: no limit.
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,
}

impl Default for QueryRangeConfig {
    fn default() -> Self {
        QueryRangeConfig {
            split_interval: Duration::from_secs(24 * 3600),
            max_query_parallelism: 14,
            max_inflight_pieces: 64,
            align_start_end_with_step: false,
            max_query_length: Duration::ZERO,
        }
    }
}

/// Where cache entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackendKind {
    /// In this process (moka), bounded by `memory_capacity_bytes`.
    Memory,
    /// In Redis (`[cache.redis]`), shared by every replica.
    Redis,
}

/// `[cache.redis]`: the Redis backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` (a single Redis; unused with `cluster = true`).
    pub url: String,
    /// Use a Redis Cluster discovered from `nodes`.
    pub cluster: bool,
    /// Seed nodes of the Redis Cluster (`redis://host:port`).
    pub nodes: Vec<String>,
    /// After a failed connection attempt, calls fail at once (as misses) for this long
    /// before the next attempt.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            cluster: false,
            nodes: Vec::new(),
            reconnect_backoff: Duration::from_secs(1),
        }
    }
}

/// `[cache]`: the results cache for range-query pieces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache range-query results at all.
    pub enabled: bool,
    /// Where entries live.
    pub backend: CacheBackendKind,
    /// Most bytes the memory backend holds.
    pub memory_capacity_bytes: u64,
    /// How long an entry lives.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Results newer than `now - max_freshness` are never stored (the querier may
    /// still receive samples for them); that tail is always fetched fresh.
    #[serde(with = "humantime_serde")]
    pub max_freshness: Duration,
    /// Entries larger than this (encoded) are not stored.
    pub max_item_bytes: usize,
    /// Request header naming the tenant; its value is part of every key (missing:
    /// `anonymous`).
    pub tenant_header: String,
    /// Request headers whose values are hashed into every key, so that clients with
    /// different credentials never share entries. Default `["Authorization"]`: a
    /// querier (or an auth proxy in front of it) may answer by user. Clear it to share
    /// entries across credentials when every user sees the same data.
    pub key_headers: Vec<String>,
    /// Bound on every cache backend call; a slower call is a miss.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// With `backend = "redis"`: keep a memory cache of `memory_capacity_bytes` in front
    /// of Redis, so hot entries are served without a network round trip.
    pub two_tier: bool,
    /// Memory for whole answers to exact repeats of a range query (served without
    /// splitting, reading entries or merging), in each replica. `0`: off. Counts on top of
    /// `memory_capacity_bytes`.
    pub response_capacity_bytes: u64,
    /// The Redis backend (used when `backend = "redis"`).
    pub redis: RedisConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            backend: CacheBackendKind::Memory,
            memory_capacity_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(7 * 24 * 3600),
            max_freshness: Duration::from_secs(600),
            max_item_bytes: 8 * 1024 * 1024,
            tenant_header: "X-Scope-OrgID".to_owned(),
            key_headers: vec!["Authorization".to_owned()],
            op_timeout: Duration::from_millis(100),
            two_tier: false,
            response_capacity_bytes: 64 * 1024 * 1024,
            redis: RedisConfig::default(),
        }
    }
}

/// `[slow_query_log]`: one JSON line per slow request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowQueryLogConfig {
    /// Requests slower than this are logged. `0s`: none; a negative duration (`-1s`):
    /// every request.
    #[serde(with = "threshold_serde")]
    pub threshold: Threshold,
    /// File the lines are appended to (reopened on SIGHUP). Unset: standard error.
    pub path: Option<PathBuf>,
    /// Lines waiting to be written; when the disk falls behind further lines are dropped
    /// (and counted) rather than slowing requests down.
    pub queue_size: usize,
    /// Lines kept in memory for `GET /api/v1/slow_queries`.
    pub ring_size: usize,
    /// Serve `GET /api/v1/slow_queries`. It shows every tenant's slow queries (query
    /// text, tenant, client address) to whoever can reach the port: turn it off, or
    /// restrict the path at the network or auth proxy, where tenants must not see each
    /// other's queries.
    pub api: bool,
}

impl Default for SlowQueryLogConfig {
    fn default() -> Self {
        SlowQueryLogConfig {
            threshold: Threshold::Above(Duration::from_secs(5)),
            path: None,
            queue_size: 4096,
            ring_size: 256,
            api: true,
        }
    }
}

/// A [`Threshold`] as a signed humantime duration string.
mod threshold_serde {
    use super::Threshold;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(t: &Threshold, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Threshold::Off => s.serialize_str("0s"),
            Threshold::All => s.serialize_str("-1s"),
            Threshold::Above(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Threshold, D::Error> {
        let text = String::deserialize(d)?;
        let (negative, magnitude) = match text.trim().strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, text.trim()),
        };
        let value: Duration = humantime::parse_duration(magnitude)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration: {e}")))?;
        Ok(match (negative, value.is_zero()) {
            (_, true) => Threshold::Off,
            (true, false) => Threshold::All,
            (false, false) => Threshold::Above(value),
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: process logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter (`error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter
    /// directive). `RUST_LOG`, when set, wins.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Parses TOML text (no overrides applied) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads the file (if any), applies `PROMQL_FRONTEND_<SECTION>__<FIELD>` overrides
    /// from `env`, and returns the config. Call [`Config::validate`] after applying flag
    /// overrides.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let mut table: toml::Table = text.parse()?;
        apply_env_overrides(&mut table, env)?;
        Ok(Config::deserialize(toml::Value::Table(table))?)
    }

    /// Rejects values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, msg: &str| {
            Err(ConfigError::Invalid {
                field,
                msg: msg.to_owned(),
            })
        };
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes", "must be greater than 0");
        }
        if self.downstream.max_response_bytes == 0 {
            return invalid("downstream.max_response_bytes", "must be greater than 0");
        }
        if self.server.max_header_bytes < 8192 {
            return invalid("server.max_header_bytes", "must be at least 8192");
        }
        if self.server.header_read_timeout.is_zero() {
            return invalid("server.header_read_timeout", "must be greater than 0");
        }
        let d = &self.downstream;
        if let Err(msg) = validate_downstream_url(&d.url) {
            return Err(ConfigError::Invalid {
                field: "downstream.url",
                msg,
            });
        }
        for url in &d.urls {
            if let Err(msg) = validate_downstream_url(url) {
                return Err(ConfigError::Invalid {
                    field: "downstream.urls",
                    msg,
                });
            }
        }
        if d.urls.len() > MAX_DOWNSTREAM_URLS {
            return Err(ConfigError::Invalid {
                field: "downstream.urls",
                msg: format!("at most {MAX_DOWNSTREAM_URLS} URLs"),
            });
        }
        let r = &self.retry;
        if r.max_retries > 0 && (r.backoff_base.is_zero() || r.backoff_cap < r.backoff_base) {
            return invalid(
                "retry.backoff_base",
                "must be greater than 0 and at most retry.backoff_cap",
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&r.budget_window) {
            return invalid("retry.budget_window", "must be between 1s and 60s");
        }
        if !(0.0..=1000.0).contains(&r.budget_percent) {
            return invalid("retry.budget_percent", "must be between 0 and 1000");
        }
        if r.budget_min_per_second > 1_000_000 {
            return invalid("retry.budget_min_per_second", "must be at most 1000000");
        }
        for (field, value) in [
            ("downstream.connect_timeout", d.connect_timeout),
            ("downstream.request_timeout", d.request_timeout),
            ("downstream.pool_idle_timeout", d.pool_idle_timeout),
            ("downstream.ready_window", d.ready_window),
            ("downstream.ejection_period", d.ejection_period),
            ("downstream.deadline", d.deadline),
        ] {
            if value.is_zero() {
                return invalid(field, "must be greater than 0");
            }
        }
        for name in &d.forward_headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::Invalid {
                    field: "downstream.forward_headers",
                    msg: format!("{name:?} is not a valid header name"),
                });
            }
        }
        if let Some(path) = &d.tls_ca_file
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(ConfigError::Invalid {
                field: "downstream.tls_ca_file",
                msg: format!("{}: {e}", path.display()),
            });
        }
        let q = &self.query_range;
        if q.max_query_parallelism == 0 {
            return invalid(
                "query_range.max_query_parallelism",
                "must be greater than 0",
            );
        }
        if q.max_inflight_pieces == 0 {
            return invalid("query_range.max_inflight_pieces", "must be greater than 0");
        }
        if !q.split_interval.is_zero() && q.split_interval < Duration::from_secs(60) {
            return invalid(
                "query_range.split_interval",
                "must be 0s (off) or at least 1m",
            );
        }
        let c = &self.cache;
        if c.enabled {
            for (field, value) in [("cache.ttl", c.ttl), ("cache.op_timeout", c.op_timeout)] {
                if value.is_zero() {
                    return invalid(field, "must be greater than 0");
                }
            }
            if c.backend == CacheBackendKind::Redis
                && !(c.redis.url.starts_with("redis://")
                    || c.redis.url.starts_with("rediss://")
                    || c.redis.url.starts_with("redis+unix://"))
            {
                return Err(ConfigError::Invalid {
                    field: "cache.redis.url",
                    msg: format!(
                        "{:?} must start with redis://, rediss:// or redis+unix://",
                        c.redis.url
                    ),
                });
            }
            if c.memory_capacity_bytes < 1024 * 1024 {
                return invalid("cache.memory_capacity_bytes", "must be at least 1 MiB");
            }
            for name in std::iter::once(&c.tenant_header).chain(&c.key_headers) {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ConfigError::Invalid {
                        field: "cache.key_headers",
                        msg: format!("{name:?} is not a valid header name"),
                    });
                }
            }
        }
        if !d.probe_path.starts_with('/') {
            return invalid("downstream.probe_path", "must start with '/'");
        }
        if let Some(path) = &self.slow_query_log.path
            && path.as_os_str().is_empty()
        {
            return invalid(
                "slow_query_log.path",
                "must not be empty (leave it unset for stderr)",
            );
        }
        if self.slow_query_log.queue_size == 0 || self.slow_query_log.queue_size > 1_000_000 {
            return invalid("slow_query_log.queue_size", "must be between 1 and 1000000");
        }
        if self.slow_query_log.ring_size > 100_000 {
            return invalid("slow_query_log.ring_size", "must be at most 100000");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::Invalid {
                field: "log.level",
                msg: format!(
                    "{:?} is not a log level or filter directive",
                    self.log.level
                ),
            });
        }
        Ok(())
    }
}

/// Checks a querier base URL: http or https, a host, no query string or fragment.
fn validate_downstream_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(format!("{url:?} must not have a query string or fragment"));
    }
    Ok(())
}

/// Applies `PROMQL_FRONTEND_<SECTION>__<FIELD>=value` overrides to a TOML table.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            // PROMQL_FRONTEND_LISTEN and friends belong to the flags.
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                name,
                msg: "empty path segment".into(),
            });
        }
        let value = toml_value(&raw);
        let mut cursor = &mut *table;
        let (last, parents) = path.split_last().ok_or_else(|| ConfigError::Env {
            name: name.clone(),
            msg: "empty path".into(),
        })?;
        for seg in parents {
            let entry = cursor
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        name,
                        msg: format!("{seg} is not a section"),
                    });
                }
            };
        }
        cursor.insert(last.clone(), value);
    }
    Ok(())
}

/// Reads an environment value as a TOML value (`true`, `3`, `["a","b"]`) when it is one,
/// and as a string otherwise (`2s`, `http://q:9090`).
fn toml_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let config = Config::from_toml_str(text).expect("config.example.toml is valid");
        let defaults = Config::default();
        // The example documents the defaults; a drift between the two is a doc bug.
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
        // And it lists every field (a missing one would silently take its default above).
        let example: toml::Table = text.parse().expect("example is TOML");
        let all = toml::Table::try_from(&defaults).expect("defaults serialize");
        for (section, fields) in &all {
            let fields = fields.as_table().expect("sections are tables");
            let documented = example
                .get(section)
                .and_then(toml::Value::as_table)
                .unwrap_or_else(|| panic!("config.example.toml lacks [{section}]"));
            for field in fields.keys() {
                assert!(
                    documented.contains_key(field),
                    "config.example.toml lacks {section}.{field}"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Config::from_toml_str("[downstream]\nurll = \"http://x\"\n")
            .expect_err("typo must fail");
        assert!(err.to_string().contains("urll"), "{err}");
        assert!(Config::from_toml_str("[nope]\n").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            (
                "[downstream]\nconnect_timeout = \"0s\"",
                "downstream.connect_timeout",
            ),
            (
                "[downstream]\nrequest_timeout = \"0s\"",
                "downstream.request_timeout",
            ),
            ("[downstream]\nurl = \"ftp://x\"", "downstream.url"),
            (
                "[downstream]\nurls = [\"http://a:9090\", \"b:9090\"]",
                "downstream.urls",
            ),
            ("[downstream]\ndeadline = \"0s\"", "downstream.deadline"),
            (
                "[downstream]\nejection_period = \"0s\"",
                "downstream.ejection_period",
            ),
            ("[retry]\nbudget_window = \"2m\"", "retry.budget_window"),
            ("[retry]\nbudget_percent = -1.0", "retry.budget_percent"),
            ("[retry]\nbudget_percent = nan", "retry.budget_percent"),
            (
                "[retry]\nmax_retries = 0\nbudget_window = \"0s\"",
                "retry.budget_window",
            ),
            (
                "[retry]\nbudget_min_per_second = 4000000000",
                "retry.budget_min_per_second",
            ),
            (
                "[retry]\nbackoff_base = \"5s\"\nbackoff_cap = \"1s\"",
                "retry.backoff_base",
            ),
            ("[downstream]\nurl = \"not a url\"", "downstream.url"),
            (
                "[downstream]\nurl = \"http://q:9090/?a=1\"",
                "downstream.url",
            ),
            (
                "[downstream]\nforward_headers = [\"bad header\"]",
                "downstream.forward_headers",
            ),
            ("[server]\nmax_body_bytes = 0", "server.max_body_bytes"),
            (
                "[query_range]\nmax_query_parallelism = 0",
                "query_range.max_query_parallelism",
            ),
            (
                "[query_range]\nmax_inflight_pieces = 0",
                "query_range.max_inflight_pieces",
            ),
            (
                "[query_range]\nsplit_interval = \"10s\"",
                "query_range.split_interval",
            ),
            ("[log]\nlevel = \"lots=of=noise\"", "log.level"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml_str(text).expect_err(text);
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        assert!(
            Config::from_toml_str("[downstream]\nconnect_timeout = \"soon\"").is_err(),
            "bad duration"
        );
    }

    #[test]
    fn env_overrides_apply_over_file() {
        let dir = std::env::temp_dir().join(format!("pf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[downstream]\nurl = \"http://file:9090\"\nconnect_timeout = \"9s\"\n",
        )
        .expect("write config");
        let env = [
            ("PROMQL_FRONTEND_DOWNSTREAM__CONNECT_TIMEOUT", "2s"),
            ("PROMQL_FRONTEND_SERVER__GZIP_RESPONSES", "false"),
            (
                "PROMQL_FRONTEND_DOWNSTREAM__FORWARD_HEADERS",
                "[\"Authorization\"]",
            ),
            ("PROMQL_FRONTEND_LISTEN", "ignored by the generic path"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(Some(&file), env).expect("loads");
        assert_eq!(config.downstream.url, "http://file:9090");
        assert_eq!(config.downstream.connect_timeout, Duration::from_secs(2));
        assert!(!config.server.gzip_responses);
        assert_eq!(config.downstream.forward_headers, vec!["Authorization"]);
        let bad = Config::load(
            None,
            [("PROMQL_FRONTEND_DOWNSTREAM__NOPE".into(), "1".into())],
        );
        assert!(bad.expect_err("unknown field").to_string().contains("nope"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
