//! The sections of the config file (`[server]`, `[downstream]`, ...): their fields, doc
//! comments and defaults, and the enums they parse. The config owns these types; the
//! modules it configures receive plain option structs built from them (`stack::assemble`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_DOWNSTREAM_URL, DEFAULT_FORWARD_HEADERS, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
};

/// How attempts are spread over several querier endpoints (`downstream.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancePolicy {
    /// Each request goes to the next healthy endpoint in turn.
    #[default]
    RoundRobin,
    /// Every request goes to the first healthy endpoint in list order; the others are
    /// standbys.
    PrimaryBackup,
}

/// How the frontend asks the querier to encode the range-query answers it reads
/// (`downstream.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuerierCompression {
    /// `Accept-Encoding: identity`: the querier spends no CPU on compression. Measured
    /// on Prometheus 2.42 (BENCHMARKS.md, "Querier compression"): a gzip answer took the
    /// querier 2.4-5x as long as the same answer uncompressed; on a datacenter network
    /// the extra bytes cost far less.
    #[default]
    None,
    /// `Accept-Encoding: gzip`: fewer bytes on the wire, for a querier behind a slow or
    /// metered link.
    Gzip,
}

/// Which requests the slow-query log writes (`slow_query_log.threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// None (`0s`).
    Off,
    /// Those that took longer than this.
    Above(Duration),
    /// Every request (a negative duration).
    All,
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
    /// Whether the frontend compresses the bodies it writes itself (`query_range`
    /// answers, its own error JSON) for clients that accept it, choosing gzip or deflate
    /// as Prometheus does. Passthrough responses keep the querier's encoding.
    pub gzip_responses: bool,
    /// Origins whose browser pages may read the API (CORS), as a regular expression
    /// matched against the whole `Origin` header (Prometheus' `--web.cors.origin`).
    /// `.*`, the default, answers any origin with `Access-Control-Allow-Origin: *`.
    pub cors_origin: String,
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
    /// A web configuration file in the format Prometheus reads with
    /// `--web.config.file` (TLS, client certificates, basic auth users with bcrypt
    /// hashes, response headers); the `--web.config.file` flag overrides it. Changes to
    /// it and to the certificate files it names apply within a second, without a
    /// restart; a changed file that does not load leaves the last good one in force.
    /// Unset: plain HTTP without authentication.
    pub web_config_file: Option<PathBuf>,
    /// Paths answered without basic auth when the web config file has users (exact
    /// match). Default: `/-/healthy` and `/-/ready`, so that Kubernetes probes, which
    /// cannot answer a password challenge, keep working; they reveal only whether the
    /// frontend and its querier are up. TLS and client certificates still apply.
    pub auth_exempt_paths: Vec<String>,
    /// Tenant of each basic-auth user: the frontend sets `cache.tenant_header` to it on
    /// that user's requests, replacing whatever the client sent, so the user reaches
    /// only that tenant's data, cache entries and slow queries. Users not listed keep
    /// the header they send (admins of a multi-tenant querier, for instance).
    pub user_tenants: BTreeMap<String, String>,
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
            cors_origin: ".*".to_owned(),
            max_concurrent_requests: 1024,
            max_header_bytes: 64 * 1024,
            web_config_file: None,
            auth_exempt_paths: vec!["/-/healthy".to_owned(), "/-/ready".to_owned()],
            user_tenants: BTreeMap::new(),
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
    /// Overall time for one client request, retries included. A query's `timeout`
    /// parameter goes to the querier, which enforces it; the frontend then waits that
    /// long plus a margin (a tenth, at least 5 s), never longer than this. Without one,
    /// each attempt tells the querier the time it is given as `timeout`.
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
    /// How range-query answers are asked of the querier: `none` (default) or `gzip`.
    /// Passthrough requests keep the client's `Accept-Encoding`.
    pub compression: QuerierCompression,
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
            compression: QuerierCompression::None,
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

/// How the querier is asked for the ranges a range query's cache lacks
/// (`query_range.fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchMode {
    /// Missing days joined into runs, one request each, cut into parallel parts only
    /// when that pays (`layers::plan`).
    #[default]
    Planned,
    /// One request per split-interval piece, in parallel (`layers::split`).
    PerInterval,
}

/// `[query_range]`: validation, step alignment and splitting of range queries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryRangeConfig {
    /// The interval cache entries are kept by (multiples from the Unix epoch; 24h: UTC
    /// days) and the shortest part a range is fetched in. `0s`: never cut a range.
    #[serde(with = "humantime_serde")]
    pub split_interval: Duration,
    /// How the querier is asked for what the cache lacks.
    pub fetch: FetchMode,
    /// Planned fetching: querier time one parallel part should take; a range expected to
    /// take less than twice this is one request.
    #[serde(with = "humantime_serde")]
    pub parallel_part_duration: Duration,
    /// Planned fetching: learn the querier's concurrency limit (AIMD) below
    /// `max_inflight_pieces`; off: `max_inflight_pieces` is the limit.
    pub adaptive_concurrency: bool,
    /// Most requests of one query sent to the querier at once.
    pub max_query_parallelism: usize,
    /// Most range-query requests in flight to the querier at once, over all queries.
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
            fetch: FetchMode::Planned,
            parallel_part_duration: Duration::from_millis(200),
            adaptive_concurrency: true,
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
    /// lz4-compress the entries the memory backend holds, as Redis entries always are:
    /// about 2-3x more answers in `memory_capacity_bytes`, at the cost of decompressing
    /// and copying on every hit. Off (default): a hit reads the stored answers in place,
    /// which is what keeps a refresh at now close to the cost of its fresh tail.
    pub compress_memory: bool,
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
    /// Answer a range query from entries of the same query at a finer step whose grid
    /// holds every point asked (a zoom-out after the shorter range was viewed).
    pub lower_step_reuse: bool,
    /// Also cache whole answers of label names, label values, series and instant
    /// queries whose window (or `time`) is older than `max_freshness`, in the same
    /// backend, and send identical in-flight instant, label and series requests to the
    /// querier once. Needs `enabled`.
    pub answers: bool,
    /// The Redis backend (used when `backend = "redis"`).
    pub redis: RedisConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            backend: CacheBackendKind::Memory,
            memory_capacity_bytes: 256 * 1024 * 1024,
            compress_memory: false,
            ttl: Duration::from_secs(7 * 24 * 3600),
            max_freshness: Duration::from_secs(600),
            max_item_bytes: 8 * 1024 * 1024,
            tenant_header: "X-Scope-OrgID".to_owned(),
            key_headers: vec!["Authorization".to_owned()],
            op_timeout: Duration::from_millis(100),
            two_tier: false,
            response_capacity_bytes: 64 * 1024 * 1024,
            lower_step_reuse: true,
            answers: true,
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
    /// Serve `GET /api/v1/slow_queries`. A request with a tenant (the tenant header,
    /// or the tenant of its user in `server.user_tenants`) sees only that tenant's
    /// lines; users in `admin_users` see every line. A request with neither sees every
    /// line while `admin_users` is empty (a frontend without authentication), and only
    /// the lines without a tenant once it is set.
    pub api: bool,
    /// Basic-auth users (from the web config file) who see every tenant's lines in
    /// `GET /api/v1/slow_queries`.
    pub admin_users: Vec<String>,
}

impl Default for SlowQueryLogConfig {
    fn default() -> Self {
        SlowQueryLogConfig {
            threshold: Threshold::Above(Duration::from_secs(5)),
            path: None,
            queue_size: 4096,
            ring_size: 256,
            api: true,
            admin_users: Vec::new(),
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
