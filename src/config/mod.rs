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

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod sections;
pub mod web;

pub use sections::*;

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
    "traceparent",
    "tracestate",
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
        if let Err(e) = regex::Regex::new(&format!("^(?:{})$", self.server.cors_origin)) {
            return Err(ConfigError::Invalid {
                field: "server.cors_origin",
                msg: format!("not a valid regular expression: {e}"),
            });
        }
        if let Some(path) = &self.server.web_config_file
            && path.as_os_str().is_empty()
        {
            return invalid(
                "server.web_config_file",
                "must not be empty (leave it unset for plain HTTP without auth)",
            );
        }
        if let Some(p) = self
            .server
            .auth_exempt_paths
            .iter()
            .find(|p| !p.starts_with('/'))
        {
            return Err(ConfigError::Invalid {
                field: "server.auth_exempt_paths",
                msg: format!("{p:?} does not start with '/'"),
            });
        }
        for (user, tenant) in &self.server.user_tenants {
            if tenant.is_empty() || http::HeaderValue::from_str(tenant).is_err() {
                return Err(ConfigError::Invalid {
                    field: "server.user_tenants",
                    msg: format!("the tenant of {user:?}, {tenant:?}, is not a header value"),
                });
            }
        }
        if http::HeaderName::from_bytes(self.cache.tenant_header.as_bytes()).is_err() {
            return Err(ConfigError::Invalid {
                field: "cache.tenant_header",
                msg: format!("{:?} is not a valid header name", self.cache.tenant_header),
            });
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
        if q.fetch == FetchMode::Planned && q.parallel_part_duration.is_zero() {
            return invalid(
                "query_range.parallel_part_duration",
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
mod tests;
