//! The answer cache: whole querier answers of the read endpoints a dashboard sends besides
//! range queries — label names (`/api/v1/labels`), label values
//! (`/api/v1/label/<name>/values`), series (`/api/v1/series`) and instant queries
//! (`/api/v1/query`) — stored in the results cache's backend (memory, or Redis shared by
//! replicas).
//!
//! An entry is exact: one request's full key ([`answer_key`]) and the querier's `200`
//! answer to it, body bytes as sent (identity-encoded: the frontend asks the querier for
//! an uncompressed answer and compresses for each client itself), with its content type.
//! The key text is stored in the value and compared on read, and a checksum covers the
//! value ([`StoredAnswer::decode`]): a hash collision, a foreign or corrupt value is a miss.
//!
//! # Which windows are stored, and why exact ones only
//!
//! Prometheus does not answer label and series requests per sample. Checked on a real
//! Prometheus with backfilled 2h blocks: label names and label values (with or without
//! `match[]`) come from the index of every block that overlaps `[start, end]`, so a
//! 30-minute window at the start of a block names series whose samples all lie later in
//! that block; series come from the chunks overlapping the window (chunk granularity).
//! Neither answer is a function of the window that could be cut at a boundary the
//! frontend knows (block and chunk boundaries are the querier's, and differ per
//! querier, per series and after compaction), so no alignment or merging of windows is
//! exact: an entry serves exactly the window (`start`, `end` in ms) it was fetched for.
//!
//! A window ending after `now − max_freshness` (or without `end`, which means now) is
//! never stored: the head block still changes. Older windows come from persisted blocks;
//! what can still change them is compaction, which merges neighbouring blocks into one
//! whose index names the series of the whole merged range, so a label request for an
//! old window can afterwards name a few more values (from the merged neighbours). Such an
//! entry then holds the querier's earlier answer until its TTL (`cache.ttl`); every value
//! in it was and still is a correct label value of the matching series.
//!
//! Instant queries are stored when their `time` is older than `now − max_freshness`,
//! under the rules of range queries ([`Skip`]): no negative `offset`, no `@` after
//! `time` or after the freshness cut-off. `@ start()` and `@ end()` are `time` itself in
//! an instant query, so they need no rule of their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use xxhash_rust::xxh3::xxh3_64;

use super::Clock;
use super::backend::Backend;
use super::key::{IGNORED_PARAMS, KEY_VERSION, KEYED_PARAMS, KeyOptions, Skip};
use super::value::ValueError;
use crate::metrics::Metrics;
use crate::model::time::parse_timestamp_ms;
use crate::promql::Analysis;

/// Magic of a stored answer (a different format from range entries: a range entry read
/// under an answer key, or the reverse, is refused as [`ValueError::Format`]).
const MAGIC: &[u8; 4] = b"PFA1";

/// Parameters of the label and series endpoints that change the answer, besides
/// `match[]`, `start` and `end` (keyed as they came): Prometheus' `limit` and the
/// Thanos and Mimir parameters that select or deduplicate data.
const METADATA_PARAMS: &[&str] = &[
    "limit",
    "dedup",
    "partial_response",
    "replicaLabels[]",
    "storeMatch[]",
    "max_source_resolution",
    "engine",
];

/// The endpoints whose answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPath {
    /// `/api/v1/labels`.
    Labels,
    /// `/api/v1/label/<name>/values`.
    LabelValues,
    /// `/api/v1/series`.
    Series,
    /// `/api/v1/query`.
    Instant,
}

impl AnswerPath {
    /// The endpoint of a request path, if its answers are cached.
    pub fn of(path: &str) -> Option<AnswerPath> {
        match path {
            "/api/v1/labels" => Some(AnswerPath::Labels),
            "/api/v1/series" => Some(AnswerPath::Series),
            "/api/v1/query" => Some(AnswerPath::Instant),
            p if p.starts_with("/api/v1/label/") && p.ends_with("/values") => {
                Some(AnswerPath::LabelValues)
            }
            _ => None,
        }
    }
}

/// The key of one request, and whether its answer may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerKey {
    /// Full key text (stored in the value, compared on read). Two requests with the same
    /// text get the same answer from the querier (up to the data changing), so it also
    /// names identical in-flight requests.
    pub full: String,
    /// Stable 64-bit hash of `full` (xxh3; identical on every replica).
    pub hash: u64,
    /// `Ok(t)`: the answer may be stored once `t` (Unix ms: the window's end, the
    /// instant's time or its latest `@`) is older than the freshness cut-off. `Err`:
    /// never stored, and why.
    pub storable: Result<i64, Skip>,
}

/// The key of a request to `path` with parameters `pairs` (as the querier reads them:
/// form body first, then query string) and request headers `headers`.
///
/// Every request gets a key (so identical in-flight requests can share one querier
/// request); what makes it unstorable is in [`AnswerKey::storable`]. A parameter the
/// cache does not know is keyed too (with its value), but makes the answer unstorable:
/// it may change the answer in a way the cache cannot tell.
pub fn answer_key<V: AsRef<[u8]>>(
    path: &str,
    pairs: &[(String, V)],
    headers: &HeaderMap,
    opts: &KeyOptions,
) -> AnswerKey {
    let endpoint = AnswerPath::of(path);
    let mut storable: Result<i64, Skip> = Ok(i64::MIN);
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let first = |name: &str| -> Option<&[u8]> {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    };
    let time_ms = |v: Option<&[u8]>| -> Result<Option<i64>, Skip> {
        match v {
            None | Some(b"") => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| parse_timestamp_ms(s).ok())
                .map(Some)
                .ok_or(Skip::OddRange),
        }
    };
    match endpoint {
        Some(AnswerPath::Instant) => {
            let query = first("query").unwrap_or_default();
            let text = std::str::from_utf8(query).ok();
            let analysis = text.map(Analysis::of);
            let normalised = analysis.as_ref().and_then(|a| a.normalised.clone());
            match &normalised {
                Some(n) => fields.push(("query".into(), n.as_bytes().to_vec())),
                None => {
                    fields.push(("rawquery".into(), query.to_vec()));
                    storable = Err(Skip::Unparsed);
                }
            }
            let time = time_ms(first("time"));
            match time {
                Ok(Some(t)) => fields.push(("time".into(), t.to_string().into_bytes())),
                Ok(None) => {
                    fields.push(("time".into(), b"now".to_vec()));
                    // Evaluated at the querier's now: never old enough.
                    storable = storable.and(Err(Skip::OddRange));
                }
                Err(skip) => {
                    fields.push(("rawtime".into(), first("time").unwrap_or_default().to_vec()));
                    storable = storable.and(Err(skip));
                }
            }
            if let (Some(a), Ok(Some(t))) = (&analysis, time) {
                storable = storable.and_then(|_| instant_rules(a, t));
            }
            keyed_params(
                pairs,
                KEYED_PARAMS,
                &["query", "time"],
                &mut fields,
                &mut storable,
            );
        }
        Some(_) => {
            // `match[]`: a set (the querier unions the matches and sorts the answer, so
            // neither order nor repeats change it).
            let mut matches: Vec<&[u8]> = pairs
                .iter()
                .filter(|(k, _)| k == "match[]")
                .map(|(_, v)| v.as_ref())
                .collect();
            matches.sort_unstable();
            matches.dedup();
            for m in matches {
                fields.push(("match[]".into(), m.to_vec()));
            }
            for name in ["start", "end"] {
                match time_ms(first(name)) {
                    Ok(Some(t)) => fields.push((name.into(), t.to_string().into_bytes())),
                    Ok(None) => {
                        fields.push((name.into(), b"none".to_vec()));
                        // Without `end` the window reaches now.
                        if name == "end" {
                            storable = storable.and(Err(Skip::OddRange));
                        }
                    }
                    Err(skip) => {
                        fields.push((
                            format!("raw{name}"),
                            first(name).unwrap_or_default().to_vec(),
                        ));
                        storable = storable.and(Err(skip));
                    }
                }
            }
            if let (Ok(_), Ok(Some(end))) = (&storable, time_ms(first("end"))) {
                storable = Ok(end);
            }
            keyed_params(
                pairs,
                METADATA_PARAMS,
                &["match[]", "start", "end"],
                &mut fields,
                &mut storable,
            );
        }
        None => storable = Err(Skip::Param),
    }
    let mut full = String::with_capacity(128);
    let mut field = |name: &str, value: &[u8]| {
        full.push_str(name);
        full.push('=');
        full.push_str(&format!("{}:", value.len()));
        // Values may hold bytes that are not UTF-8: hex keeps them exact.
        match std::str::from_utf8(value) {
            Ok(text) => full.push_str(text),
            Err(_) => full.push_str(&format!("{value:02x?}")),
        }
        full.push('\u{1f}');
    };
    field("v", KEY_VERSION.as_bytes());
    field("answer", b"1");
    field("ns", opts.namespace.as_bytes());
    let tenant = headers
        .get(&opts.tenant_header)
        .map_or(&b""[..], |v| v.as_bytes());
    field("tenant", tenant);
    let mut auth = Vec::new();
    for name in &opts.key_headers {
        for v in headers.get_all(name) {
            auth.extend_from_slice(name.as_str().as_bytes());
            auth.push(0);
            auth.extend_from_slice(v.as_bytes());
            auth.push(0);
        }
    }
    if !auth.is_empty() {
        field("auth", format!("{:016x}", xxh3_64(&auth)).as_bytes());
    }
    field("path", path.as_bytes());
    for (name, value) in &fields {
        field(name, value);
    }
    AnswerKey {
        hash: xxh3_64(full.as_bytes()),
        full,
        storable,
    }
}

/// The never-cache rules of an instant query at `time_ms`; `Ok` holds the latest time
/// the answer reads (`time`, or a later `@`), which must be older than the cut-off.
fn instant_rules(a: &Analysis, time_ms: i64) -> Result<i64, Skip> {
    if a.has_pre_epoch_at || time_ms < 0 {
        return Err(Skip::Unparsed);
    }
    if a.has_negative_offset {
        return Err(Skip::NegativeOffset);
    }
    match a.latest_at_ms {
        Some(at) if at > time_ms => Err(Skip::AtInFuture),
        Some(at) => Ok(at.max(time_ms)),
        None => Ok(time_ms),
    }
}

/// Appends every other parameter to `fields`, sorted by name (single-valued ones: the
/// first value, which is what the querier reads; list ones `name[]`: every value in
/// order). A parameter not in `known` (nor `taken`, nor ignored) makes the answer
/// unstorable.
fn keyed_params<V: AsRef<[u8]>>(
    pairs: &[(String, V)],
    known: &[&str],
    taken: &[&str],
    fields: &mut Vec<(String, Vec<u8>)>,
    storable: &mut Result<i64, Skip>,
) {
    let mut params: Vec<(&str, &[u8])> = Vec::new();
    for (k, v) in pairs {
        let k = k.as_str();
        if taken.contains(&k) || IGNORED_PARAMS.contains(&k) {
            continue;
        }
        if !known.contains(&k) {
            *storable = Err(Skip::Param);
        }
        if !k.ends_with("[]") && params.iter().any(|(seen, _)| *seen == k) {
            continue;
        }
        params.push((k, v.as_ref()));
    }
    // Stable: values of one list parameter keep their order.
    params.sort_by_key(|(k, _)| *k);
    for (k, v) in params {
        fields.push((format!("p:{}:{k}", k.len()), v.to_vec()));
    }
}

/// One stored answer: the full key it was stored under and the querier's 200 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The full key text.
    pub key: String,
    /// The querier's `Content-Type`, empty when it sent none.
    pub content_type: String,
    /// The body, uncompressed, as the querier sent it.
    pub body: Bytes,
}

impl StoredAnswer {
    /// Encodes the answer: magic `PFA1`, a flag byte (0 = raw, 1 = lz4), the xxh3-64 of
    /// the uncompressed payload, then the payload: key, content type and body, each a
    /// u32 little-endian length and its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload =
            Vec::with_capacity(12 + self.key.len() + self.content_type.len() + self.body.len());
        for part in [
            self.key.as_bytes(),
            self.content_type.as_bytes(),
            &self.body[..],
        ] {
            payload.extend_from_slice(&(part.len() as u32).to_le_bytes());
            payload.extend_from_slice(part);
        }
        super::value::framed(MAGIC, &payload)
    }

    /// Decodes stored bytes; never panics, whatever they are.
    pub fn decode(bytes: &[u8]) -> Result<StoredAnswer, ValueError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(ValueError::Format)?;
        let (&flag, rest) = rest.split_first().ok_or(ValueError::Corrupt)?;
        let (sum, rest) = rest.split_at_checked(8).ok_or(ValueError::Corrupt)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(sum);
        let sum = u64::from_le_bytes(b);
        let payload = super::value::payload_of(flag, rest)?;
        let payload: &[u8] = &payload;
        if sum != xxh3_64(payload) {
            return Err(ValueError::Corrupt);
        }
        let mut rest = payload;
        let mut part = || -> Result<&[u8], ValueError> {
            let (len, tail) = rest.split_at_checked(4).ok_or(ValueError::Corrupt)?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let (head, tail) = tail.split_at_checked(len).ok_or(ValueError::Corrupt)?;
            rest = tail;
            Ok(head)
        };
        let key = String::from_utf8(part()?.to_vec()).map_err(|_| ValueError::Corrupt)?;
        let content_type = String::from_utf8(part()?.to_vec()).map_err(|_| ValueError::Corrupt)?;
        let body = Bytes::copy_from_slice(part()?);
        if !rest.is_empty() {
            return Err(ValueError::Corrupt);
        }
        Ok(StoredAnswer {
            key,
            content_type,
            body,
        })
    }
}

/// Why a querier's 200 answer is not stored, if it must not be: it is not a Prometheus
/// success envelope, or it carries `warnings` or `infos` (which may not hold for a
/// repeat), or the querier marked it `Cache-Control: no-store`.
pub fn unstorable_answer(headers: &HeaderMap, body: &[u8]) -> Option<Skip> {
    if super::key::directives(headers).no_store {
        return Some(Skip::Response);
    }
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        status: std::borrow::Cow<'a, str>,
        warnings: Option<serde::de::IgnoredAny>,
        infos: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(e) if e.status == "success" && e.warnings.is_none() && e.infos.is_none() => None,
        _ => Some(Skip::Response),
    }
}

/// Options of the [`AnswerCache`].
#[derive(Clone)]
pub struct AnswerOptions {
    /// How keys are built (the range cache's: namespace, tenant, key headers).
    pub key: KeyOptions,
    /// Windows and times newer than this are never stored.
    pub max_freshness: Duration,
    /// Time-to-live of entries.
    pub ttl: Duration,
    /// Values larger than this (encoded) are not stored.
    pub max_item_bytes: usize,
    /// Bound on every backend call; a slower call is a miss.
    pub op_timeout: Duration,
    /// The clock deciding what is older than the freshness cut-off.
    pub clock: Clock,
}

/// Stored answers in a [`Backend`], and the rules for storing them.
pub struct AnswerCache {
    backend: Arc<dyn Backend>,
    opts: AnswerOptions,
    metrics: Arc<Metrics>,
}

impl AnswerCache {
    /// A cache over `backend` (shared with the range cache).
    pub fn new(backend: Arc<dyn Backend>, opts: AnswerOptions, metrics: Arc<Metrics>) -> Self {
        AnswerCache {
            backend,
            opts,
            metrics,
        }
    }

    /// The most bytes an answer may have to be stored (and to be shared with the
    /// followers of an in-flight request).
    pub fn max_item_bytes(&self) -> usize {
        self.opts.max_item_bytes
    }

    /// The key of a request (see [`answer_key`]).
    pub fn key<V: AsRef<[u8]>>(
        &self,
        path: &str,
        pairs: &[(String, V)],
        headers: &HeaderMap,
    ) -> AnswerKey {
        answer_key(path, pairs, headers, &self.opts.key)
    }

    /// Whether the answer of `key` may be stored now: the request is storable and its
    /// window or time is older than the freshness cut-off.
    pub fn storable(&self, key: &AnswerKey) -> Result<(), Skip> {
        let t = key.storable?;
        let max_freshness = self.opts.max_freshness.as_millis().min(i64::MAX as u128) as i64;
        let cutoff = (self.opts.clock)().saturating_sub(max_freshness);
        if t > cutoff {
            return Err(Skip::Recent);
        }
        Ok(())
    }

    /// The stored answer of `key`, if there is a readable one stored under its full key.
    /// A backend failure, a foreign or corrupt value is a miss (and counted).
    pub async fn get(&self, key: &AnswerKey) -> Option<StoredAnswer> {
        let keys = [key.hash];
        let got = tokio::time::timeout(self.opts.op_timeout, self.backend.get_many(&keys)).await;
        let bytes = match got {
            Ok(Ok(mut values)) if values.len() == 1 => values.pop().flatten()?,
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                self.metrics.cache_backend_error(self.backend.name(), "get");
                return None;
            }
        };
        self.metrics
            .cache_bytes(self.backend.name(), "read", bytes.len());
        match StoredAnswer::decode(&bytes) {
            Ok(stored) if stored.key == key.full => Some(stored),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable answer cache value; serving as a miss");
                self.metrics.cache_skip("unreadable_entry");
                None
            }
        }
    }

    /// Stores `answer`, bounded by the operation timeout; too large a value or a
    /// backend failure is counted only.
    pub async fn put(&self, key: &AnswerKey, content_type: &str, body: Bytes) {
        let value = StoredAnswer {
            key: key.full.clone(),
            content_type: content_type.to_owned(),
            body,
        }
        .encode();
        if value.len() > self.opts.max_item_bytes {
            self.metrics.cache_skip(Skip::TooLarge.as_str());
            return;
        }
        let n = value.len();
        let set = self
            .backend
            .set(key.hash, Bytes::from(value), self.opts.ttl);
        match tokio::time::timeout(self.opts.op_timeout, set).await {
            Ok(Ok(())) => self.metrics.cache_bytes(self.backend.name(), "write", n),
            Ok(Err(_)) | Err(_) => self.metrics.cache_backend_error(self.backend.name(), "set"),
        }
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
