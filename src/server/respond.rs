//! Building responses: Prometheus error JSON for every [`Error`] (the only place an
//! error becomes an HTTP response), JSON answers gzipped when the client accepts it and
//! they are worth it, and small text pages.

use std::io::Write;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{Body, Frontend};
use crate::error::{Error, error_type_for_status};
use crate::model::EncodedAnswer;

/// Responses the frontend builds itself are gzipped only above this size; smaller
/// bodies do not gain enough to pay for the CPU.
const GZIP_MIN_BYTES: usize = 1024;

impl Frontend {
    /// A 200 JSON response, gzipped when allowed and worth it.
    pub(super) fn json_response(
        &self,
        req_headers: &HeaderMap,
        json: impl Into<Bytes>,
    ) -> Response<Body> {
        let json: Bytes = json.into();
        let gzip = self
            .wants_gzip(req_headers, json.len())
            .then(|| gzip_bytes(&json).ok().map(Bytes::from))
            .flatten();
        self.json_body(json, gzip)
    }

    /// An encoded answer, with its kept gzip form (made now if need be) when the client
    /// takes gzip.
    pub(super) fn answer_response(
        &self,
        req_headers: &HeaderMap,
        answer: &EncodedAnswer,
    ) -> Response<Body> {
        let gzip = self
            .wants_gzip(req_headers, answer.json.len())
            .then(|| answer.gzip(|b| gzip_bytes(b).ok()))
            .flatten();
        self.json_body(answer.json.clone(), gzip)
    }

    fn wants_gzip(&self, req_headers: &HeaderMap, len: usize) -> bool {
        self.gzip_responses && len >= GZIP_MIN_BYTES && accepts_gzip(req_headers)
    }

    /// A 200 JSON response: `gzip` when given, `json` otherwise.
    fn json_body(&self, json: Bytes, gzip: Option<Bytes>) -> Response<Body> {
        let (body, encoded) = match gzip {
            Some(z) => (z, true),
            None => (json, false),
        };
        let mut resp = Response::new(full(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if encoded {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if self.gzip_responses {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        resp
    }
}

/// Turns an error into the response the client sees. A querier's own error answer keeps
/// its status, body and the headers a client needs (`Retry-After`, ...); anything else
/// gets Prometheus error JSON.
pub fn error_response(err: &Error) -> Response<Body> {
    let (status, headers, body) = match err {
        Error::Downstream {
            status,
            headers,
            body,
        } if looks_like_json_object(body) || headers.contains_key(header::CONTENT_ENCODING) => {
            let mut headers = (**headers).clone();
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            (*status, headers, body.clone())
        }
        Error::Downstream {
            status,
            headers,
            body,
        } => {
            // An answer that is not Prometheus JSON (a load balancer's HTML page): keep
            // the status, wrap a bounded excerpt in error JSON.
            let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(256)])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            let mut json = Vec::new();
            json.extend_from_slice(b"{\"status\":\"error\",\"errorType\":");
            crate::json::write_str(&mut json, error_type_for_status(*status));
            json.extend_from_slice(b",\"error\":");
            crate::json::write_str(
                &mut json,
                &format!("querier answered {}: {}", status.as_u16(), excerpt.trim()),
            );
            json.push(b'}');
            let mut headers = (**headers).clone();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (*status, headers, Bytes::from(json))
        }
        other => {
            if matches!(
                other,
                Error::Internal(_) | Error::BadResponse(_) | Error::ResponseTooLarge { .. }
            ) {
                tracing::warn!(error = %other, "answering with an error");
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (other.status(), headers, Bytes::from(other.to_json()))
        }
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

pub(super) fn looks_like_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Whether `Accept-Encoding` allows gzip (listed, or `*`, with a non-zero q).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 6),
        flate2::Compression::fast(),
    );
    enc.write_all(data)?;
    enc.finish()
}

pub(super) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub(super) fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::copy_from_slice(msg.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&with_accept("gzip")));
        assert!(accepts_gzip(&with_accept("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&with_accept("*")));
        assert!(!accepts_gzip(&with_accept("gzip;q=0")));
        assert!(!accepts_gzip(&with_accept("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn error_responses_keep_querier_json_and_wrap_html() {
        let mut json_headers = HeaderMap::new();
        json_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        json_headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let json_err = Error::Downstream {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            headers: Box::new(json_headers),
            body: Bytes::from_static(
                b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"x\"}",
            ),
        };
        let resp = error_response(&json_err);
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            &body[..],
            b"{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"x\"}"
        );

        let mut html_headers = HeaderMap::new();
        html_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let html = Error::Downstream {
            status: StatusCode::BAD_GATEWAY,
            headers: Box::new(html_headers),
            body: Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>\n"),
        };
        let resp = error_response(&html);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["errorType"], "internal");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|m| m.contains("502 Bad Gateway"))
        );
    }
}
