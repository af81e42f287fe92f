//! The typed range query and its HTTP form codec.
//!
//! [`RangeQuery::from_form`] validates parameters exactly as Prometheus'
//! `/api/v1/query_range` handler does, in the same order and with the same messages, so a
//! bad request gets the same 400 from the frontend as from the querier.
//! [`RangeQuery::to_form`] writes it back as a form body: times as exact decimal seconds,
//! every other parameter forwarded unchanged.

use std::sync::Arc;

use http::HeaderMap;

use crate::error::Error;
use crate::model::time::{
    NS_PER_MS, format_seconds_ms, format_seconds_ns, parse_duration_ns, parse_timestamp_ms,
};

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
    /// Resolution step in nanoseconds (the API accepts sub-millisecond steps; the engine
    /// truncates them to milliseconds).
    pub step_ns: i64,
    /// Every other parameter (`timeout`, `limit`, `lookback_delta`, `dedup`, ...) in the
    /// order received, forwarded unchanged.
    pub params: Vec<(String, String)>,
    /// Request headers to forward downstream (already filtered by the allow-list).
    pub headers: HeaderMap,
    /// What the validate layer learned about the expression, once it ran.
    pub analysis: Option<Arc<crate::promql::Analysis>>,
}

impl RangeQuery {
    /// Builds a range query from form pairs (body pairs first, then URL pairs, like Go's
    /// `Request.FormValue`: the first occurrence of a name wins).
    pub fn from_form(pairs: Vec<(String, String)>, headers: HeaderMap) -> Result<Self, Error> {
        let first = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let start_ms = parse_timestamp_ms(first("start")).map_err(|e| invalid_param("start", e))?;
        let end_ms = parse_timestamp_ms(first("end")).map_err(|e| invalid_param("end", e))?;
        if end_ms < start_ms {
            return Err(invalid_param(
                "end",
                "end timestamp must not be before start time".into(),
            ));
        }
        let step_ns = parse_duration_ns(first("step")).map_err(|e| invalid_param("step", e))?;
        if step_ns <= 0 {
            return Err(invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if points_exceed_limit(start_ms, end_ms, step_ns) {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let timeout = first("timeout");
        if !timeout.is_empty() {
            parse_duration_ns(timeout).map_err(|e| invalid_param("timeout", e))?;
        }
        let query = first("query").to_owned();
        let params = pairs
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "query" | "start" | "end" | "step"))
            .collect();
        Ok(RangeQuery {
            query,
            start_ms,
            end_ms,
            step_ns,
            params,
            headers,
            analysis: None,
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

/// Whether `(end - start) / step` exceeds [`MAX_POINTS_PER_SERIES`], computed like
/// Prometheus: nanosecond durations, integer division.
pub fn points_exceed_limit(start_ms: i64, end_ms: i64, step_ns: i64) -> bool {
    let range_ns = (end_ms as i128 - start_ms as i128) * NS_PER_MS as i128;
    // Go's time.Sub saturates at the largest duration.
    let range_ns = range_ns.min(i64::MAX as i128);
    range_ns / step_ns as i128 > MAX_POINTS_PER_SERIES as i128
}

/// Collects a request's form pairs the way Go's `ParseForm` does: the body's pairs first
/// (only for a form-encoded body), then the URL's.
pub fn form_pairs(
    uri_query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    if is_form_content_type(content_type) {
        pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    if let Some(q) = uri_query {
        pairs.extend(
            form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    pairs
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

fn invalid_param(name: &str, msg: String) -> Error {
    Error::BadData(format!("invalid parameter {name:?}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decode(list: &[(&str, &str)]) -> Result<RangeQuery, Error> {
        RangeQuery::from_form(pairs(list), HeaderMap::new())
    }

    #[test]
    fn decodes_and_reencodes() {
        let q = decode(&[
            ("query", "sum(rate(x[5m]))"),
            ("start", "1700000000.3"),
            ("end", "2023-11-15T22:13:20Z"),
            ("step", "1m"),
            ("timeout", "10s"),
            ("dedup", "true"),
        ])
        .expect("valid");
        assert_eq!(q.start_ms, 1_700_000_000_300);
        assert_eq!(q.end_ms, 1_700_086_400_000);
        assert_eq!(q.step_ms(), 60_000);
        assert_eq!(q.param("dedup"), Some("true"));
        assert_eq!(
            q.to_form(),
            "query=sum%28rate%28x%5B5m%5D%29%29&start=1700000000.3&end=1700086400&step=60&timeout=10s&dedup=true"
        );
    }

    #[test]
    fn first_occurrence_wins() {
        let q = decode(&[
            ("query", "a"),
            ("start", "10"),
            ("end", "20"),
            ("step", "5"),
            ("query", "b"),
            ("start", "0"),
        ])
        .expect("valid");
        assert_eq!(q.query, "a");
        assert_eq!(q.start_ms, 10_000);
    }

    #[test]
    fn errors_match_prometheus() {
        let base = [
            ("query", "up"),
            ("start", "0"),
            ("end", "100"),
            ("step", "10"),
        ];
        let with = |k: &str, v: &str| -> Vec<(&str, String)> {
            base.iter()
                .map(|(bk, bv)| {
                    (
                        *bk,
                        if *bk == k {
                            v.to_string()
                        } else {
                            bv.to_string()
                        },
                    )
                })
                .collect()
        };
        let cases = [
            (
                with("start", "x"),
                "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp",
            ),
            (
                with("end", ""),
                "invalid parameter \"end\": cannot parse \"\" to a valid timestamp",
            ),
            (
                with("end", "-5"),
                "invalid parameter \"end\": end timestamp must not be before start time",
            ),
            (
                with("step", "1q"),
                "invalid parameter \"step\": cannot parse \"1q\" to a valid duration",
            ),
            (
                with("step", "0"),
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ),
            (
                with("step", "-3"),
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ),
            (
                with("end", "110010"),
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ),
        ];
        for (list, want) in cases {
            let list: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match decode(&list) {
                Err(Error::BadData(msg)) => assert_eq!(msg, want, "{list:?}"),
                other => panic!("{list:?}: expected bad_data, got {other:?}"),
            }
        }
        // Exactly 11,000 steps is allowed.
        assert!(
            decode(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "110000"),
                ("step", "10")
            ])
            .is_ok()
        );
        let timeout = decode(&[
            ("query", "up"),
            ("start", "0"),
            ("end", "1"),
            ("step", "1"),
            ("timeout", "soon"),
        ]);
        assert!(
            matches!(timeout, Err(Error::BadData(m)) if m.starts_with("invalid parameter \"timeout\""))
        );
    }

    #[test]
    fn form_pairs_body_before_url() {
        let p = form_pairs(
            Some("query=url&x=1"),
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"query=body%20q&start=1",
        );
        assert_eq!(p[0], ("query".to_string(), "body q".to_string()));
        assert_eq!(p[2], ("query".to_string(), "url".to_string()));
        let ignored = form_pairs(Some("a=1"), Some("application/json"), b"query=x");
        assert_eq!(ignored, pairs(&[("a", "1")]));
    }

    #[test]
    fn huge_ranges_do_not_overflow() {
        assert!(points_exceed_limit(i64::MIN / 2, i64::MAX / 2, 1));
        assert!(!points_exceed_limit(0, 0, 1));
    }
}
