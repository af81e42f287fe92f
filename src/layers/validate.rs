//! `validate`: enforces `max_query_length`, parses the PromQL expression once and
//! attaches the result to the query.
//!
//! Parameter checks (times, step, point limit) already happened while decoding the
//! request; this layer owns the expression. A query the parser rejects still goes to the
//! querier, unsplit, so the querier's own message (or its acceptance of syntax the parser
//! does not know) reaches the client. If the querier cannot be reached at all for such a
//! query, or answers 502/503 without looking at it (starting up, shutting down), the
//! client gets `400 bad_data` with the parser's message instead of a 503: the query is
//! almost certainly the problem. A querier that was reached but timed out keeps its 503
//! `timeout`, since it may have been evaluating syntax the parser does not know. Texts
//! the parser could not analyse for its own limits (nesting, an internal failure) keep
//! the querier's answer whatever it is.
//!
//! Parse errors always name the parameter: current Prometheus answers
//! `invalid parameter "query": 1:5: parse error: ...`, older releases (2.42, Debian 12)
//! only `1:5: parse error: ...`. The layer adds the prefix to a querier's 400 `bad_data`
//! parse error that lacks it, so every querier version gives clients the same message
//! shape; status, `errorType` and the querier's own text are kept.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use crate::BoxFuture;
use crate::error::Error;
use crate::model::{QueryResponse, RangeQuery};
use crate::promql::Analysis;

/// Options of the validate layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOptions {
    /// Longest accepted `end - start`; zero means no limit.
    pub max_query_length: Duration,
}

/// Memory the kept analyses may take, by the estimate of [`analysis_weight`]: a bound
/// by bytes, not by count, since a query text (and so its tree and normal form) may be
/// as large as `server.max_body_bytes`.
const PARSED_CAPACITY_BYTES: u64 = 64 << 20;

/// Estimated bytes held by the analysis of `text`: the text as the key, its tree, its
/// normal form and rewrite (a few times the text), and each regular-expression matcher
/// compiled by the parser (`=~`, `!~`: a compiled regex takes tens of KiB).
fn analysis_weight(text: &str) -> u32 {
    let regexes = text.matches("=~").count() + text.matches("!~").count();
    let bytes = 1024 + 4 * text.len() + 32 * 1024 * regexes;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Analyses by query text. Dashboards send the same PromQL over and over, and parsing is
/// the costliest step before the cache (~0.2 ms for a `histogram_quantile` panel, see
/// BENCHMARKS.md); an analysis depends on the text alone.
type Parsed = moka::sync::Cache<String, Arc<Analysis>>;

/// Adds [`ValidateService`] to a stack.
#[derive(Clone)]
pub struct ValidateLayer {
    opts: ValidateOptions,
    parsed: Parsed,
}

impl ValidateLayer {
    /// Creates the layer (and the analysis cache its services share).
    pub fn new(opts: ValidateOptions) -> ValidateLayer {
        ValidateLayer {
            opts,
            parsed: Parsed::builder()
                .max_capacity(PARSED_CAPACITY_BYTES)
                .weigher(|text: &String, _| analysis_weight(text))
                .build(),
        }
    }
}

impl Default for ValidateLayer {
    fn default() -> Self {
        ValidateLayer::new(ValidateOptions::default())
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = ValidateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidateService {
            inner,
            opts: self.opts,
            parsed: self.parsed.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct ValidateService<S> {
    inner: S,
    opts: ValidateOptions,
    parsed: Parsed,
}

impl<S> Service<RangeQuery> for ValidateService<S>
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
        let limit = self.opts.max_query_length;
        let length_ms = query.end_ms.saturating_sub(query.start_ms);
        if !limit.is_zero() && length_ms as u128 > limit.as_millis() {
            let length = Duration::from_millis(length_ms.max(0) as u64);
            return Box::pin(std::future::ready(Err(Error::BadData(format!(
                "the query time range exceeds the limit (query length: {}, limit: {})",
                humantime::format_duration(length),
                humantime::format_duration(limit)
            )))));
        }
        let analysis = self.parsed.get_with_by_ref(query.query.as_str(), || {
            Arc::new(Analysis::of(&query.query))
        });
        crate::promql::attach(&mut query, analysis.clone());
        let fut = self.inner.call(query);
        Box::pin(async move {
            let result = fut.await;
            match (result, analysis.parse_error()) {
                (Err(err), Some(msg)) if !analysis.beyond_parser && querier_not_asked(&err) => Err(
                    Error::BadData(format!("invalid parameter \"query\": {msg}")),
                ),
                (Err(err), _) => Err(name_query_in_parse_error(err)),
                (ok, _) => ok,
            }
        })
    }
}

/// Whether the querier never looked at the query: it could not be reached, or it
/// answered 502/503 without Prometheus error JSON (a querier starting up or shutting
/// down answers `503 Service Unavailable` in plain text). A querier's JSON error (an
/// engine timeout, say) means it did evaluate the query.
fn querier_not_asked(err: &Error) -> bool {
    match err {
        Error::Unavailable { .. } => true,
        Error::Downstream { status, body, .. } if matches!(status.as_u16(), 502 | 503) => {
            serde_json::from_slice::<serde_json::Value>(body)
                .map_or(true, |v| v.get("errorType").is_none())
        }
        _ => false,
    }
}

/// Rewrites a querier's `400 bad_data` "N:M: parse error: ..." answer to
/// `invalid parameter "query": N:M: parse error: ...`; any other error is returned as is.
fn name_query_in_parse_error(err: Error) -> Error {
    let Error::Downstream { status, body, .. } = &err else {
        return err;
    };
    if status.as_u16() != 400 {
        return err;
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType")]
        error_type: String,
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b)
            if b.error_type == "bad_data"
                && b.error.contains("parse error")
                && !b.error.starts_with("invalid parameter") =>
        {
            Error::BadData(format!("invalid parameter \"query\": {}", b.error))
        }
        _ => err,
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
