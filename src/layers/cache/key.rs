//! Cache keys and the request-side cacheability rules.
//!
//! A key names one interval window of one query shape:
//! `pf1 | tenant | normalised PromQL | step | step phase | result-affecting params |
//! hash of configured auth headers`, plus the window number. The full text is stored in
//! the cached value and compared on read (a 64-bit hash collision is a miss, never a
//! foreign answer). An unknown parameter makes a request uncacheable: a parameter the
//! frontend does not understand may change the answer.

use http::{HeaderMap, HeaderName};
use xxhash_rust::xxh3::xxh3_64;

use crate::model::RangeQuery;

/// Bump when the meaning of keys or values changes: old entries then simply miss.
pub const KEY_VERSION: &str = "pf1";

/// Parameters that do not change the answer (not part of the key).
pub(super) const IGNORED_PARAMS: &[&str] = &["timeout"];

/// Parameters that change the answer (part of the key), of range and instant queries.
pub(super) const KEYED_PARAMS: &[&str] = &[
    "lookback_delta",
    "dedup",
    "partial_response",
    "engine",
    "limit",
    "max_source_resolution",
    "replicaLabels[]",
    "storeMatch[]",
    "shard_info",
];

/// How keys are built.
#[derive(Debug, Clone)]
pub struct KeyOptions {
    /// Names the data source (the querier URL): frontends in front of different queriers
    /// that share one Redis never read each other's entries.
    pub namespace: String,
    /// Header naming the tenant (`X-Scope-OrgID`); missing → `anonymous`.
    pub tenant_header: HeaderName,
    /// Headers whose values are hashed into the key (e.g. `Authorization`), so users
    /// with different permissions never share entries.
    pub key_headers: Vec<HeaderName>,
    /// Interval of the windows (the split interval), ms.
    pub interval_ms: i64,
}

/// Why a piece is not cached. Each is counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The expression did not parse (or has `@` before 1970).
    Unparsed,
    /// The request carries a parameter the cache does not know, or `stats`.
    Param,
    /// `Cache-Control: no-store` on the request.
    NoStore,
    /// A negative `offset` reads data after the evaluation time.
    NegativeOffset,
    /// An `@` time after the query end or after the freshness cut-off.
    AtInFuture,
    /// `@ start()` / `@ end()` not rewritten to absolute times (no split layer above).
    StartEndAt,
    /// The range is not inside one interval window (splitting off, or step ≥ interval).
    CrossesWindow,
    /// Sub-millisecond step, or times before 1970.
    OddRange,
    /// The querier's answer had warnings, a partial flag, or `Cache-Control: no-store`.
    Response,
    /// The entry would be larger than `max_item_bytes`.
    TooLarge,
    /// A whole answer (labels, series, instant query) whose window or time is not older
    /// than the freshness cut-off.
    Recent,
}

impl Skip {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unparsed => "unparsed",
            Skip::Param => "param",
            Skip::NoStore => "no_store",
            Skip::NegativeOffset => "negative_offset",
            Skip::AtInFuture => "at_in_future",
            Skip::StartEndAt => "start_end_at",
            Skip::CrossesWindow => "crosses_window",
            Skip::OddRange => "odd_range",
            Skip::Response => "response",
            Skip::TooLarge => "too_large",
            Skip::Recent => "recent",
        }
    }
}

/// The key of one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceKey {
    /// Full key text (stored in the value, compared on read).
    pub full: String,
    /// Stable 64-bit hash of `full` (xxh3; identical on every replica).
    pub hash: u64,
    /// Window number: `start.div_euclid(interval)`.
    pub window: i64,
}

/// The `Cache-Control` directives of a request that the cache honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// Neither read nor write the cache.
    pub no_store: bool,
    /// Do not read the cache, but store the fresh answer.
    pub no_cache: bool,
}

/// Reads `Cache-Control: no-store` / `no-cache`.
pub fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for v in headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in v.split(',') {
            match item.trim().to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                _ => {}
            }
        }
    }
    d
}

/// The key of a piece inside one window, or why it is not cacheable. Time-dependent rules
/// (freshness) are the layer's; this looks at the request alone.
pub fn piece_key(q: &RangeQuery, opts: &KeyOptions) -> Result<PieceKey, Skip> {
    let shape = shape_key(q, opts)?;
    let window = q.start_ms.div_euclid(opts.interval_ms);
    if q.end_ms.div_euclid(opts.interval_ms) != window {
        return Err(Skip::CrossesWindow);
    }
    Ok(shape.window(window))
}

/// Everything of a key but the window: one query shape (expression, step, phase,
/// parameters, tenant, credentials). Its windows' keys come from [`ShapeKey::window`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeKey {
    /// The key text without the window field.
    pub text: String,
    /// Hash of the key text without its step and phase fields: the same query at any
    /// step (see [`ShapeKey::at_step`]).
    pub family: u64,
    /// Where the step and phase fields start and end in `text`.
    grid_fields: (usize, usize),
}

impl ShapeKey {
    /// The key of the same query (expression, parameters, tenant, credentials) on the
    /// grid of `step_ms` with phase `phase_ms`.
    pub fn at_step(&self, step_ms: i64, phase_ms: i64) -> ShapeKey {
        let (from, to) = self.grid_fields;
        let fields = grid_fields(step_ms, phase_ms);
        let mut text = String::with_capacity(self.text.len() + 8);
        text.push_str(&self.text[..from]);
        text.push_str(&fields);
        text.push_str(&self.text[to..]);
        ShapeKey {
            text,
            family: self.family,
            grid_fields: (from, from + fields.len()),
        }
    }

    /// The key of window number `window` (`t.div_euclid(interval)` of its times).
    pub fn window(&self, window: i64) -> PieceKey {
        let mut full = String::with_capacity(self.text.len() + 24);
        full.push_str(&self.text);
        full.push('\u{1f}');
        full.push_str(&format!("window={window}"));
        PieceKey {
            hash: xxh3_64(full.as_bytes()),
            full,
            window,
        }
    }
}

/// The shape key of a query, or why it is not cacheable: [`piece_key`] without the
/// one-window rule, for a query whose windows are keyed one by one.
pub fn shape_key(q: &RangeQuery, opts: &KeyOptions) -> Result<ShapeKey, Skip> {
    let analysis = crate::promql::analysis_of(q).ok_or(Skip::Unparsed)?;
    let normalised = analysis.normalised.as_deref().ok_or(Skip::Unparsed)?;
    if analysis.has_pre_epoch_at {
        return Err(Skip::Unparsed);
    }
    if analysis.uses_start_end {
        return Err(Skip::StartEndAt);
    }
    if analysis.has_negative_offset {
        return Err(Skip::NegativeOffset);
    }
    if analysis.latest_at_ms.is_some_and(|at| at > q.query_end_ms) {
        return Err(Skip::AtInFuture);
    }
    let step = q.step_ms();
    if step <= 0 || q.start_ms < 0 || opts.interval_ms <= 0 {
        return Err(Skip::OddRange);
    }
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (k, v) in &q.params {
        if IGNORED_PARAMS.contains(&k.as_str()) {
            continue;
        }
        if !KEYED_PARAMS.contains(&k.as_str()) {
            return Err(Skip::Param);
        }
        // The querier reads the first value of a single-valued parameter; list
        // parameters (`name[]`) keep every value, in order.
        if !k.ends_with("[]") && params.iter().any(|(seen, _)| seen == k) {
            continue;
        }
        params.push((k, v));
    }
    // Stable: values of one list parameter keep their order.
    params.sort_by_key(|(k, _)| *k);
    let tenant = match q.request_headers.get(&opts.tenant_header) {
        None => "anonymous".to_owned(),
        Some(v) if v.is_empty() => "anonymous".to_owned(),
        Some(v) => match v.to_str() {
            Ok(t) => t.to_owned(),
            // Not visible ASCII: key on the exact bytes, never on a lossy form.
            Err(_) => format!("bytes:{:02x?}", v.as_bytes()),
        },
    };
    let mut auth = Vec::new();
    for name in &opts.key_headers {
        for v in q.request_headers.get_all(name) {
            auth.extend_from_slice(name.as_str().as_bytes());
            auth.push(0);
            auth.extend_from_slice(v.as_bytes());
            auth.push(0);
        }
    }
    let mut full = String::with_capacity(normalised.len() + 96);
    full.push_str(KEY_VERSION);
    full.push('\u{1f}');
    full.push_str(&format!("{}:{}", opts.namespace.len(), opts.namespace));
    // Field separator: a byte no header value, PromQL text or parameter can contain
    // unescaped in a way that shifts fields (lengths are prefixed for free text).
    let sep = '\u{1f}';
    full.push(sep);
    full.push_str(&format!("{}:{tenant}", tenant.len()));
    full.push(sep);
    full.push_str(&format!("{}:{normalised}", normalised.len()));
    let from = full.len();
    full.push_str(&grid_fields(step, q.start_ms.rem_euclid(step)));
    let to = full.len();
    for (k, v) in params {
        full.push(sep);
        full.push_str(&format!("{}:{k}={}:{v}", k.len(), v.len()));
    }
    if !auth.is_empty() {
        full.push(sep);
        full.push_str(&format!("auth={:016x}", xxh3_64(&auth)));
    }
    let mut family = full.as_bytes()[..from].to_vec();
    family.extend_from_slice(&full.as_bytes()[to..]);
    Ok(ShapeKey {
        family: xxh3_64(&family),
        text: full,
        grid_fields: (from, to),
    })
}

/// The step and phase fields of a key text.
fn grid_fields(step_ms: i64, phase_ms: i64) -> String {
    format!("\u{1f}step={step_ms}\u{1f}phase={phase_ms}")
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
