//! Building responses: Prometheus error JSON for every [`Error`] (the only place an
//! error becomes an HTTP response), JSON bodies compressed as the client negotiates
//! (gzip or deflate, chosen as Prometheus chooses, see [`crate::encoding`]), and small
//! text pages.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{Body, Frontend};
use crate::encoding::{Coding, negotiate};
use crate::error::{Error, error_type_for_status};
use crate::model::EncodedAnswer;

impl Frontend {
    /// The coding of the bodies the frontend writes for a client with these request
    /// headers: negotiated like Prometheus does, when `server.gzip_responses` is on.
    pub(super) fn coding_for(&self, req_headers: &HeaderMap) -> Option<Coding> {
        self.gzip_responses
            .then(|| negotiate(req_headers))
            .flatten()
    }

    /// What [`Frontend::coding_for`] needs of a request's headers, kept for an answer
    /// made later (most requests never need it): its `Accept-Encoding`, if it counts.
    pub(super) fn accept_encoding(&self, req_headers: &HeaderMap) -> Option<HeaderValue> {
        self.gzip_responses
            .then(|| crate::headers::first(req_headers, &header::ACCEPT_ENCODING).cloned())
            .flatten()
    }

    /// A 200 JSON response, compressed when the client accepts it.
    pub(super) fn json_response(
        &self,
        req_headers: &HeaderMap,
        json: impl Into<Bytes>,
    ) -> Response<Body> {
        let json: Bytes = json.into();
        let packed = self
            .coding_for(req_headers)
            .and_then(|c| Some((c, Bytes::from(c.compress(&json).ok()?))));
        self.json_body(json, packed)
    }

    /// An encoded answer, compressed when the client accepts it: its gzip form is made
    /// once and kept with it (gzip is what browsers and Grafana ask for); a deflate form
    /// is made for each request.
    pub(super) fn answer_response(
        &self,
        req_headers: &HeaderMap,
        answer: &EncodedAnswer,
    ) -> Response<Body> {
        let packed = match self.coding_for(req_headers) {
            Some(Coding::Gzip) => answer.gzip().map(|z| (Coding::Gzip, z)),
            Some(Coding::Deflate) => Coding::Deflate
                .compress(&answer.json)
                .ok()
                .map(|z| (Coding::Deflate, Bytes::from(z))),
            None => None,
        };
        self.json_body(answer.json.clone(), packed)
    }

    /// An error as the client sees it ([`error_response`]), with a body the frontend
    /// wrote compressed in `coding`, as Prometheus compresses its error answers. A
    /// querier's answer that is still encoded keeps its own encoding.
    pub(super) fn error_answer(&self, err: &Error, coding: Option<Coding>) -> Response<Body> {
        let (status, mut headers, body) = error_parts(err);
        let body = match coding.filter(|_| !headers.contains_key(header::CONTENT_ENCODING)) {
            Some(c) => match c.compress(&body) {
                Ok(z) => {
                    headers.insert(header::CONTENT_ENCODING, c.header_value());
                    Bytes::from(z)
                }
                Err(_) => body,
            },
            None => body,
        };
        if self.gzip_responses {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// A 200 JSON response: the `packed` form when given, `json` otherwise.
    fn json_body(&self, json: Bytes, packed: Option<(Coding, Bytes)>) -> Response<Body> {
        let (body, coding) = match packed {
            Some((coding, z)) => (z, Some(coding)),
            None => (json, None),
        };
        let mut resp = Response::new(full(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(coding) = coding {
            h.insert(header::CONTENT_ENCODING, coding.header_value());
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
    let (status, headers, body) = error_parts(err);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The status, headers and body of [`error_response`].
fn error_parts(err: &Error) -> (StatusCode, HeaderMap, Bytes) {
    match err {
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
    }
}

pub(super) fn looks_like_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// The answer to a CORS preflight (`OPTIONS` on the API): 204 without a body. Like
/// Prometheus, it names the coding the client negotiated although there is no body to
/// encode. The CORS headers are added at the edge, as to every API answer.
pub(super) fn preflight(coding: Option<Coding>) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    if let Some(coding) = coding {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, coding.header_value());
    }
    resp
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
