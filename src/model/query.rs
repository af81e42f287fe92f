//! The typed range query and its HTTP form codec.
//!
//! [`RangeQuery::from_form`] validates parameters exactly as Prometheus'
//! `/api/v1/query_range` handler does, in the same order and with the same messages, so a
//! bad request gets the same 400 from the frontend as from the querier.
//! [`RangeQuery::to_form`] writes it back as a form body: times as exact decimal seconds,
//! every other parameter forwarded unchanged.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;

use crate::error::Error;
use crate::model::gotime::GoTime;
use crate::model::time::{
    NS_PER_MS, format_seconds_ms, format_seconds_ns, parse_duration, parse_time,
};
use crate::model::timeout::ClientTimeout;
use crate::quote::go_quote;

/// Prometheus refuses range queries with more points per series than this.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// A decoded `/api/v1/query_range` request.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    /// The PromQL expression, as the client sent it.
    pub query: String,
    /// Evaluation start, Unix milliseconds.
    pub start_ms: i64,
    /// Evaluation end, Unix milliseconds (inclusive).
    pub end_ms: i64,
    /// The end of the whole query as the client sent it (after step alignment); pieces
    /// of a split query keep it, so rules about "after the query end" see the real end.
    pub query_end_ms: i64,
    /// Resolution step in nanoseconds (the API accepts sub-millisecond steps; the engine
    /// truncates them to milliseconds).
    pub step_ns: i64,
    /// Every other parameter (`timeout`, `limit`, `lookback_delta`, `dedup`, ...) in the
    /// order received, forwarded unchanged.
    pub params: Vec<(String, String)>,
    /// Request headers to forward downstream (already filtered by the allow-list).
    pub headers: HeaderMap,
    /// Every request header the client sent (hop-by-hop ones removed): the cache reads
    /// the tenant, `Cache-Control` and configured auth headers from it. Never forwarded.
    pub request_headers: HeaderMap,
    /// What layers attach to the query for the layers below them (the validate layer's
    /// analysis of the expression, see `promql::analysis_of`). The model does not know
    /// their types.
    pub extensions: http::Extensions,
    /// How the request was served; shared by all its pieces.
    pub stats: Arc<crate::model::RequestStats>,
    /// When the frontend stops waiting for the answer (`downstream.deadline`, or the
    /// client's `timeout` plus a margin, see [`ClientTimeout`]); no attempt or retry
    /// starts after it. `None`: no deadline.
    pub deadline: Option<tokio::time::Instant>,
    /// The client's `timeout`, which each attempt passes on to the querier (set by the
    /// edge, which knows when the request arrived).
    pub client_timeout: Option<ClientTimeout>,
    /// Endpoints tried by earlier attempts of this piece (set by the retry layer).
    pub route: Option<Arc<crate::model::Route>>,
}

impl RangeQuery {
    /// Builds a range query from form pairs (body pairs first, then URL pairs, like Go's
    /// `Request.FormValue`: the first occurrence of a name wins). Values are bytes as
    /// sent (Go keeps bytes that are not UTF-8, and quotes them so in messages).
    ///
    /// The checks run in Prometheus' order: `start`, `end`, end before start, `step`,
    /// step not positive, the points limit, `timeout`. Times Go reads but Prometheus
    /// cannot evaluate (beyond ±2⁶³ ns, e.g. `start=1e300&end=1e300`, which Prometheus
    /// 2.42 answers with an empty matrix) pass those checks as they do in Prometheus and
    /// are refused after them.
    pub fn from_form<V: AsRef<[u8]>>(
        pairs: Vec<(String, V)>,
        headers: HeaderMap,
    ) -> Result<Self, Error> {
        let first = |name: &str| first_value(&pairs, name).unwrap_or_default();
        let start = parse_time(first("start")).map_err(|e| invalid_param("start", e))?;
        let end = parse_time(first("end")).map_err(|e| invalid_param("end", e))?;
        if end.before(start) {
            return Err(invalid_param(
                "end",
                "end timestamp must not be before start time".into(),
            ));
        }
        let step_ns = parse_duration(first("step")).map_err(|e| invalid_param("step", e))?;
        if step_ns <= 0 {
            return Err(invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end.sub_ns(start) / step_ns > MAX_POINTS_PER_SERIES {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let timeout = first("timeout");
        if !timeout.is_empty() {
            parse_duration(timeout).map_err(|e| invalid_param("timeout", e))?;
        }
        let evaluable = |name: &str, t: GoTime| {
            t.unix_ms().ok_or_else(|| {
                invalid_param(
                    name,
                    format!(
                        "{} is beyond the times Prometheus can evaluate (±2^63 ns around 1970)",
                        go_quote(first(name))
                    ),
                )
            })
        };
        let start_ms = evaluable("start", start)?;
        let end_ms = evaluable("end", end)?;
        let query = String::from_utf8_lossy(first("query")).into_owned();
        let params = pairs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "query" | "start" | "end" | "step"))
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v.as_ref()).into_owned()))
            .collect();
        Ok(RangeQuery {
            query,
            start_ms,
            end_ms,
            query_end_ms: end_ms,
            step_ns,
            params,
            headers,
            request_headers: HeaderMap::new(),
            extensions: http::Extensions::new(),
            stats: Arc::default(),
            deadline: None,
            client_timeout: None,
            route: None,
        })
    }

    /// The step as the engine uses it: whole milliseconds (0 for sub-millisecond steps).
    pub fn step_ms(&self) -> i64 {
        self.step_ns / NS_PER_MS
    }

    /// The first value of another parameter, if the request carries it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes the query as an `application/x-www-form-urlencoded` body.
    pub fn to_form(&self) -> String {
        let mut form =
            form_urlencoded::Serializer::new(String::with_capacity(self.query.len() + 96));
        form.append_pair("query", &self.query)
            .append_pair("start", &format_seconds_ms(self.start_ms))
            .append_pair("end", &format_seconds_ms(self.end_ms))
            .append_pair("step", &format_seconds_ns(self.step_ns));
        for (k, v) in &self.params {
            form.append_pair(k, v);
        }
        form.finish()
    }
}

/// Checks an instant query's (`/api/v1/query`) parameters that Prometheus checks before
/// it parses the expression, in its order and with its messages: `time` (when given),
/// then `timeout`. The expression is left to the querier.
pub fn check_instant_query<K: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Result<(), Error> {
    let time = first_value(pairs, "time").unwrap_or_default();
    if !time.is_empty() {
        parse_time(time)
            .map_err(|e| invalid_param("time", format!("Invalid time value for 'time': {e}")))?;
    }
    let timeout = first_value(pairs, "timeout").unwrap_or_default();
    if !timeout.is_empty() {
        parse_duration(timeout).map_err(|e| invalid_param("timeout", e))?;
    }
    Ok(())
}

/// Form parameters in the order received: each name (as text) with its value's bytes
/// as sent.
pub type FormPairs = Vec<(String, Vec<u8>)>;

/// Collects a request's form pairs the way Go's `ParseForm` does for a POST: the body's
/// pairs first (only for a form-encoded body), then the URL's. Callers pass an empty body
/// for GET requests, whose bodies Go ignores.
pub fn form_pairs(uri_query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> FormPairs {
    let form = if is_form_content_type(content_type) {
        body
    } else {
        &[]
    };
    query_pairs(uri_query, form)
}

/// The pairs of a form body (the body of a form POST, empty for other requests) and then
/// those of the query string, as [`form_pairs`] gives them.
pub fn query_pairs(uri_query: Option<&str>, form: &[u8]) -> FormPairs {
    let mut pairs = parse_query(form);
    if let Some(q) = uri_query {
        pairs.extend(parse_query(q.as_bytes()));
    }
    pairs
}

/// The first value of `name` in `pairs`, if present.
pub fn first_value<'a, K: AsRef<str>, V: AsRef<[u8]>>(
    pairs: &'a [(K, V)],
    name: &str,
) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

/// Parses `k=v&k2=v2` like Go's `url.ParseQuery`: pairs are separated by `&` only; a
/// pair containing `;` or a malformed `%` escape is skipped; `+` is a space. Values keep
/// bytes that are not UTF-8 (as Go's strings do); in names they are replaced (U+FFFD).
pub fn parse_query(input: &[u8]) -> FormPairs {
    raw_pairs(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// [`query_pairs`] borrowing from the request where no escape had to be decoded: for
/// a request that only reads a parameter or two.
pub fn borrowed_pairs<'a>(
    uri_query: Option<&'a str>,
    form: &'a [u8],
) -> Vec<(Cow<'a, str>, Cow<'a, [u8]>)> {
    raw_pairs(form)
        .chain(raw_pairs(uri_query.unwrap_or_default().as_bytes()))
        .collect()
}

/// The pairs of [`parse_query`], borrowed from `input` where nothing was decoded.
fn raw_pairs(input: &[u8]) -> RawPairs<'_> {
    RawPairs { rest: input }
}

/// The iterator of [`raw_pairs`]: one pass over a pair's bytes finds its `=` and
/// whether it holds a `;` or anything to decode.
struct RawPairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (mut end, mut eq, mut semicolon) = (self.rest.len(), None, false);
            // Whether the name, and the value, hold a `+` or a `%`.
            let mut coded = [false; 2];
            for (i, &b) in self.rest.iter().enumerate() {
                match b {
                    b'&' => {
                        end = i;
                        break;
                    }
                    b'=' if eq.is_none() => eq = Some(i),
                    b';' => semicolon = true,
                    b'+' | b'%' => coded[usize::from(eq.is_some())] = true,
                    _ => {}
                }
            }
            let pair = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if pair.is_empty() || semicolon {
                continue;
            }
            let (k, v) = match eq {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            let decode = |s: &'a [u8], coded: bool| match coded {
                false => Some(Cow::Borrowed(s)),
                true => unescape(s).map(Cow::Owned),
            };
            let (Some(key), Some(value)) = (decode(k, coded[0]), decode(v, coded[1])) else {
                continue;
            };
            let key = match key {
                Cow::Borrowed(k) => match std::str::from_utf8(k) {
                    Ok(k) => Cow::Borrowed(k),
                    Err(_) => String::from_utf8_lossy(k),
                },
                Cow::Owned(k) => Cow::Owned(
                    String::from_utf8(k)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                ),
            };
            return Some((key, value));
        }
        None
    }
}

/// Decodes `+` and `%XX`; `None` for a malformed escape.
fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s;
    // The runs between escapes are copied whole.
    while let Some(at) = rest.iter().position(|&b| b == b'+' || b == b'%') {
        out.extend_from_slice(&rest[..at]);
        if rest[at] == b'+' {
            out.push(b' ');
            rest = &rest[at + 1..];
        } else {
            let hex = |b: u8| (b as char).to_digit(16);
            let hi = hex(*rest.get(at + 1)?)?;
            let lo = hex(*rest.get(at + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            rest = &rest[at + 3..];
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Whether a `Content-Type` names a URL-encoded form (parameters may follow a `;`).
pub fn is_form_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether a `Content-Type` is `multipart/form-data` (what `curl -F` sends). Prometheus
/// reads such bodies as forms; the frontend does not decode them and forwards the
/// request whole instead.
pub fn is_multipart_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn invalid_param(name: &str, msg: String) -> Error {
    Error::BadData(format!("invalid parameter {}: {msg}", go_quote(name)))
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
