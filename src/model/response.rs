//! The typed `query_range` response envelope.
//!
//! Label sets and sample arrays are kept as raw JSON ([`RawValue`]): the frontend never
//! re-formats a label, a timestamp or a value string, so whatever the querier wrote comes
//! out byte for byte. Only the envelope (`status`, `warnings`, `infos`, ...) is typed,
//! because later layers merge it. Fields the frontend does not know (`stats`, a
//! querier's `isPartial`) are carried through as raw JSON too.

use std::fmt;

use bytestring::ByteString;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::json::{write_str, write_str_array};
use crate::model::layout::{Layout, SeriesLayout};
use crate::splice::{Chunk, Placed};

/// What [`QueryResponse::encode_into`] notes while it writes.
#[derive(Default)]
struct Marks {
    placed: Option<Vec<Placed>>,
    layout: Option<Layout>,
}

/// `status` of a Prometheus API response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The query ran.
    Success,
    /// The query failed; `errorType` and `error` say why.
    Error,
}

/// A decoded `query_range` response.
#[derive(Debug, Clone)]
pub struct QueryResponse {
    /// `success` or `error`.
    pub status: Status,
    /// The matrix, on success.
    pub data: Option<MatrixData>,
    /// Prometheus `errorType`, on error.
    pub error_type: Option<String>,
    /// Error message, on error.
    pub error: Option<String>,
    /// Warnings attached by the querier (partial data, dropped series, ...).
    pub warnings: Vec<String>,
    /// Informational notices (Prometheus 2.52+).
    pub infos: Vec<String>,
    /// Other top-level fields, in the order received (e.g. VictoriaMetrics' `isPartial`).
    pub extra: Vec<(String, Box<RawValue>)>,
    /// The querier said `Cache-Control: no-store` (not part of the JSON).
    pub no_store: bool,
}

/// `data` of a range query response.
#[derive(Debug, Clone)]
pub struct MatrixData {
    /// Always `matrix` for range queries.
    pub result_type: String,
    /// The series, in the order the querier returned them.
    pub result: Vec<Series>,
    /// Other fields of `data` (`stats`, ...), in the order received.
    pub extra: Vec<(String, Box<RawValue>)>,
}

/// One series of a matrix.
#[derive(Debug, Clone, Deserialize)]
pub struct Series {
    /// The label set, as the raw JSON object the querier wrote.
    pub metric: RawJson,
    /// Float samples `[[ts,"value"],...]`, raw.
    #[serde(default)]
    pub values: Option<RawJson>,
    /// Native histogram samples, raw.
    #[serde(default)]
    pub histograms: Option<RawJson>,
    /// Runs of `values` kept compressed (see [`crate::splice`]): set on series read from
    /// the cache, carried through cuts and merges, used when the answer is gzipped.
    #[serde(skip)]
    pub chunks: Vec<Chunk>,
}

/// A piece of JSON text that is known to be valid: either read from a querier (and
/// validated while decoding) or spliced by the frontend from such pieces.
///
/// Backed by shared bytes: the series of an answer read from the cache are slices of
/// the stored text (no copy), and cloning one is a reference count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawJson(ByteString);

impl RawJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps text the caller guarantees to be valid JSON (built only from other
    /// `RawJson` values and JSON punctuation).
    pub(crate) fn from_trusted(text: String) -> RawJson {
        RawJson(ByteString::from(text))
    }

    /// Shares `range` of `whole` (text the caller guarantees to be valid JSON there);
    /// `None` when the range is outside it or splits a character.
    pub(crate) fn shared(whole: &ByteString, range: std::ops::Range<usize>) -> Option<RawJson> {
        let part = whole.get(range)?;
        Some(RawJson(whole.slice_ref(part)))
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let text: Box<str> = raw.into();
        Ok(RawJson(ByteString::from(text)))
    }
}

impl QueryResponse {
    /// Decodes a querier's response body.
    pub fn from_slice(body: &[u8]) -> Result<Self, Error> {
        let resp: QueryResponse = serde_json::from_slice(body)
            .map_err(|e| Error::BadResponse(format!("undecodable query_range body: {e}")))?;
        match (&resp.status, &resp.data) {
            (Status::Success, Some(d)) if d.result_type == "matrix" => Ok(resp),
            (Status::Success, Some(d)) => Err(Error::BadResponse(format!(
                "query_range answered with resultType {}, not \"matrix\"",
                crate::quote::go_quote(&d.result_type)
            ))),
            (Status::Success, None) => Err(Error::BadResponse(
                "query_range success without data".into(),
            )),
            (Status::Error, _) => Ok(resp),
        }
    }

    /// Whether the querier marked the answer partial or incomplete: warnings, or a
    /// `true` partial flag (`isPartial`, `partial`).
    pub fn is_partial(&self) -> bool {
        !self.warnings.is_empty()
            || self
                .extra
                .iter()
                .any(|(k, v)| k.to_ascii_lowercase().contains("partial") && v.get() == "true")
    }

    /// The response without its data: status, errors, warnings, infos and extra
    /// fields, for building a response with other series.
    pub fn clone_envelope(&self) -> QueryResponse {
        QueryResponse {
            status: self.status,
            data: None,
            error_type: self.error_type.clone(),
            error: self.error.clone(),
            warnings: self.warnings.clone(),
            infos: self.infos.clone(),
            extra: self.extra.clone(),
            no_store: self.no_store,
        }
    }

    /// Series and samples (floats plus histograms) in the answer.
    pub fn counts(&self) -> (u64, u64) {
        let Some(data) = &self.data else {
            return (0, 0);
        };
        let samples = data
            .result
            .iter()
            .flat_map(|s| [&s.values, &s.histograms])
            .flatten()
            .map(|raw| array_len(raw.as_str()))
            .sum();
        (data.result.len() as u64, samples)
    }

    /// Encodes the response in Prometheus' field order.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_into(&mut Marks::default())
    }

    /// Encodes the response, and says where in it the series' compressed runs
    /// ([`Series::chunks`]) landed.
    pub fn encode_placed(&self) -> (Vec<u8>, Vec<Placed>) {
        let mut marks = Marks {
            placed: Some(Vec::new()),
            layout: None,
        };
        let out = self.encode_into(&mut marks);
        (out, marks.placed.unwrap_or_default())
    }

    /// Encodes the response with the [`Layout`] of its series (for the cache).
    pub fn encode_with_layout(&self) -> (Vec<u8>, Layout) {
        let mut marks = Marks {
            placed: None,
            layout: Some(Layout::default()),
        };
        let out = self.encode_into(&mut marks);
        (out, marks.layout.unwrap_or_default())
    }

    fn encode_into(&self, marks: &mut Marks) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.extend_from_slice(match self.status {
            Status::Success => b"{\"status\":\"success\"",
            Status::Error => b"{\"status\":\"error\"",
        });
        if let Some(data) = &self.data {
            out.extend_from_slice(b",\"data\":{\"resultType\":");
            write_str(&mut out, &data.result_type);
            out.extend_from_slice(b",\"result\":[");
            let result_start = out.len();
            // Appends `text` and returns where it lies.
            let put = |out: &mut Vec<u8>, text: &str| {
                let at = out.len();
                out.extend_from_slice(text.as_bytes());
                (at, out.len())
            };
            for (i, s) in data.result.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                let metric = put(&mut out, s.metric.as_str());
                let values = s.values.as_ref().map(|v| {
                    out.extend_from_slice(b",\"values\":");
                    if let Some(placed) = marks.placed.as_mut() {
                        let base = out.len();
                        placed.extend(s.chunks.iter().map(|c| Placed {
                            at: base + c.start,
                            len: c.len,
                            deflate: c.deflate.clone(),
                        }));
                    }
                    put(&mut out, v.as_str())
                });
                let histograms = s.histograms.as_ref().map(|h| {
                    out.extend_from_slice(b",\"histograms\":");
                    put(&mut out, h.as_str())
                });
                out.push(b'}');
                if let Some(layout) = marks.layout.as_mut() {
                    layout.series.push(SeriesLayout {
                        metric,
                        values,
                        histograms,
                    });
                }
            }
            if let Some(layout) = marks.layout.as_mut() {
                layout.result = (result_start, out.len());
            }
            out.push(b']');
            write_extra(&mut out, &data.extra);
            out.push(b'}');
        }
        if let Some(t) = &self.error_type {
            out.extend_from_slice(b",\"errorType\":");
            write_str(&mut out, t);
        }
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":");
            write_str(&mut out, e);
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            write_str_array(&mut out, &self.warnings);
        }
        if !self.infos.is_empty() {
            out.extend_from_slice(b",\"infos\":");
            write_str_array(&mut out, &self.infos);
        }
        write_extra(&mut out, &self.extra);
        out.push(b'}');
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let series: usize = self.data.as_ref().map_or(0, |d| {
            d.result
                .iter()
                .map(|s| {
                    s.metric.as_str().len()
                        + s.values.as_ref().map_or(0, |v| v.as_str().len())
                        + s.histograms.as_ref().map_or(0, |h| h.as_str().len())
                        + 32
                })
                .sum()
        });
        series + 128
    }
}

/// Elements of a JSON array's text (nested arrays, objects and strings skipped over).
fn array_len(text: &str) -> u64 {
    array_elements(text).count() as u64
}

/// The byte ranges of the top-level elements of a JSON array's text, found by tracking
/// nesting and strings only (no parsing, no allocation). The text must be valid JSON:
/// every [`RawJson`] is.
pub fn array_elements(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let bytes = text.as_bytes();
    let mut pos = bytes
        .iter()
        .position(|&b| b == b'[')
        .map_or(bytes.len(), |p| p + 1);
    std::iter::from_fn(move || {
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b',') {
            pos += 1;
        }
        if pos >= bytes.len() || bytes[pos] == b']' {
            return None;
        }
        let start = pos;
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        while pos < bytes.len() {
            let b = bytes[pos];
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' if depth == 0 => break,
                    b']' | b'}' => depth -= 1,
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            pos += 1;
        }
        let mut end = pos;
        while end > start && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        Some((start, end))
    })
}

fn write_extra(out: &mut Vec<u8>, extra: &[(String, Box<RawValue>)]) {
    for (k, v) in extra {
        out.push(b',');
        write_str(out, k);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
}

impl<'de> Deserialize<'de> for QueryResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryResponse;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Prometheus API response object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryResponse, A::Error> {
                let mut status = None;
                let mut resp = QueryResponse {
                    status: Status::Error,
                    data: None,
                    error_type: None,
                    error: None,
                    warnings: Vec::new(),
                    infos: Vec::new(),
                    extra: Vec::new(),
                    no_store: false,
                };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "status" => status = Some(map.next_value()?),
                        "data" => resp.data = map.next_value()?,
                        "errorType" => resp.error_type = map.next_value()?,
                        "error" => resp.error = map.next_value()?,
                        "warnings" => {
                            resp.warnings =
                                map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                        }
                        "infos" => {
                            resp.infos =
                                map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                        }
                        other => {
                            let v: Box<RawValue> = map.next_value()?;
                            resp.extra.push((other.to_owned(), v));
                        }
                    }
                }
                resp.status = status.ok_or_else(|| de::Error::missing_field("status"))?;
                Ok(resp)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for MatrixData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatrixData;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a query result object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatrixData, A::Error> {
                let mut result_type = None;
                let mut result = None;
                let mut extra = Vec::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "resultType" => result_type = Some(map.next_value()?),
                        "result" => {
                            result =
                                Some(map.next_value::<Option<Vec<Series>>>()?.unwrap_or_default())
                        }
                        other => {
                            let v: Box<RawValue> = map.next_value()?;
                            extra.push((other.to_owned(), v));
                        }
                    }
                }
                Ok(MatrixData {
                    result_type: result_type
                        .ok_or_else(|| de::Error::missing_field("resultType"))?,
                    result: result.ok_or_else(|| de::Error::missing_field("result"))?,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_series_and_samples() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"[,]"},"values":[[1,"1"],[2,"NaN"],[3,"+Inf"]]},
            {"metric":{},"histograms":[[1,{"count":"2","buckets":[[0,"1","2","3"],[1,"2","3","4"]]}]]},
            {"metric":{},"values":[]},
            {"metric":{},"values":[ [ 5 , "1" ] ]}]}}"#;
        let resp = QueryResponse::from_slice(body).expect("decodes");
        assert_eq!(resp.counts(), (4, 5));
        assert_eq!(array_len("[]"), 0);
        assert_eq!(array_len(r#"["a,b","c\"]"]"#), 2);
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let bodies = [
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"values":[[1700000000,"1"],[1700000015.5,"NaN"]]},{"metric":{},"values":[[1,"1e-05"]],"histograms":[[2,{"count":"3","sum":"1.5","buckets":[[0,"-1","1","3"]]}]]}]},"warnings":["w1","w\u0026"],"infos":["i"]}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[],"stats":{"timings":{"evalTotalTime":0.1}}},"isPartial":false}"#,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}"#,
        ];
        for body in bodies {
            let resp = QueryResponse::from_slice(body.as_bytes()).expect(body);
            assert_eq!(String::from_utf8(resp.encode()).expect("utf-8"), body);
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [
            "",
            "<html>",
            "{}",
            r#"{"status":"weird"}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}"#,
        ] {
            assert!(
                matches!(
                    QueryResponse::from_slice(body.as_bytes()),
                    Err(Error::BadResponse(_))
                ),
                "{body}"
            );
        }
    }
}
