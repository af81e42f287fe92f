//! The one error type of the frontend and its classification.
//!
//! Every failure a request can meet is a variant of [`Error`]. Each variant is classified
//! exactly once: [`Error::status`] (the HTTP status the client sees), [`Error::error_type`]
//! (the Prometheus `errorType`) and [`Error::is_retryable`]. Only `server.rs` turns an
//! `Error` into an HTTP response, through [`Error::to_json`] or, for an error the querier
//! answered itself, by passing the querier's body through unchanged.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

/// Status code used for a request the client cancelled (nginx's convention, used by
/// Prometheus for `errorType: canceled`).
pub const STATUS_CLIENT_CLOSED_REQUEST: u16 = 499;

/// Boxed source error from a lower library (hyper, io, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a bad parameter, a query that does not parse, a range
    /// that is too long. The message follows Prometheus' wording where one exists.
    #[error("{0}")]
    BadData(String),

    /// The frontend serves nothing at this path (a local endpoint that is turned off).
    #[error("{0}")]
    NotFound(String),

    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The request line and headers together are larger than `server.max_header_bytes`.
    #[error("request head of {size} bytes exceeds server.max_header_bytes ({limit} bytes)")]
    HeadTooLarge {
        /// The size of the request line and headers as sent.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// Reading the request body from the client failed (the client went away or sent a
    /// broken body).
    #[error("reading the request body failed: {0}")]
    ClientBody(#[source] BoxError),

    /// The querier answered with a non-success status. Its body is passed to the client
    /// unchanged, with the same status.
    #[error("querier answered {status}")]
    Downstream {
        /// The querier's status code.
        status: StatusCode,
        /// The querier's headers: for a passthrough request all of them, for a range
        /// query those that matter to the client (`Content-Type`, `Retry-After`,
        /// `WWW-Authenticate`, `Location`). `Content-Encoding` is among them exactly
        /// when `body` is still encoded.
        headers: Box<http::HeaderMap>,
        /// The querier's body: decoded for a range query (when it could be), as it came
        /// for a passthrough request. [`Error::querier_body`] reads either.
        body: Bytes,
    },

    /// The querier could not be reached (connection refused, DNS failure, TLS failure,
    /// connection reset before an answer).
    #[error("querier {endpoint} is unavailable: {}", error_chain(source.as_ref()))]
    Unavailable {
        /// The querier endpoint that failed (scheme, host and port; never a query).
        endpoint: String,
        /// What the client library reported.
        #[source]
        source: BoxError,
    },

    /// The frontend is answering `server.max_concurrent_requests` requests already.
    #[error("too many concurrent requests (server.max_concurrent_requests); retry later")]
    Overloaded,

    /// The querier did not answer in time.
    #[error("querier {endpoint} did not answer within {} ({limit})", humantime::format_duration(*after))]
    Timeout {
        /// The querier endpoint that timed out.
        endpoint: String,
        /// The timeout that expired.
        after: Duration,
        /// Which limit it was: `downstream.request_timeout` or the request's deadline.
        limit: &'static str,
    },

    /// The querier answered with a success status but a body that is not a valid
    /// Prometheus API response.
    #[error("querier sent an invalid response: {0}")]
    BadResponse(String),

    /// The querier's answer is larger than `downstream.max_response_bytes` (after gzip
    /// decoding). Not retried: it would be as large again.
    #[error("querier answer larger than downstream.max_response_bytes ({limit} bytes)")]
    ResponseTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The client went away before the answer was ready.
    #[error("the client cancelled the request")]
    Canceled,

    /// A bug or an impossible state inside the frontend.
    #[error("internal error: {0}")]
    Internal(String),

    /// A setting that cannot work, found while starting (a web config file that does
    /// not load, for instance); the message names the setting.
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// The HTTP status the client receives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadData(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::ClientBody(_) => StatusCode::BAD_REQUEST,
            Error::Downstream { status, .. } => *status,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::BadResponse(_) | Error::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Error::Canceled => StatusCode::from_u16(STATUS_CLIENT_CLOSED_REQUEST)
                .unwrap_or(StatusCode::BAD_REQUEST),
            Error::Internal(_) | Error::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Prometheus `errorType` for this error. For an error the querier answered,
    /// the type is derived from its status the way Prometheus assigns statuses.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_)
            | Error::BodyTooLarge { .. }
            | Error::HeadTooLarge { .. }
            | Error::ClientBody(_) => "bad_data",
            Error::NotFound(_) => "not_found",
            Error::Downstream { status, .. } => error_type_for_status(*status),
            Error::Unavailable { .. } | Error::Overloaded => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::BadResponse(_) | Error::ResponseTooLarge { .. } => "bad_response",
            Error::Canceled => "canceled",
            Error::Internal(_) | Error::Startup(_) => "internal",
        }
    }

    /// Whether sending the same request again may succeed: transport failures,
    /// timeouts, invalid answers and 5xx answers, except a 5xx whose body says the query
    /// itself timed out or was cancelled in the engine (it would fail the same way
    /// again). 429 Too Many Requests is the one retryable 4xx: it means "later", not
    /// "never". Whether and when a retry happens is the retry layer's business.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Downstream { status, .. } => {
                let body = self.querier_body().unwrap_or_default();
                *status == StatusCode::TOO_MANY_REQUESTS
                    || (status.is_server_error()
                        && !(body_mentions(&body, b"\"errorType\":\"timeout\"")
                            || body_mentions(&body, b"\"errorType\":\"canceled\"")))
            }
            Error::BadResponse(_) => true,
            Error::BadData(_)
            | Error::NotFound(_)
            | Error::BodyTooLarge { .. }
            | Error::HeadTooLarge { .. }
            | Error::ClientBody(_)
            | Error::ResponseTooLarge { .. }
            | Error::Overloaded
            | Error::Canceled
            | Error::Internal(_)
            | Error::Startup(_) => false,
        }
    }

    /// An equivalent error for another waiter on the same result (coalesced requests):
    /// same status, type and message; a library source becomes its text.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::BadData(m) => Error::BadData(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::BodyTooLarge { limit } => Error::BodyTooLarge { limit: *limit },
            Error::HeadTooLarge { size, limit } => Error::HeadTooLarge {
                size: *size,
                limit: *limit,
            },
            Error::ClientBody(e) => Error::ClientBody(error_chain(e.as_ref()).into()),
            Error::Downstream {
                status,
                headers,
                body,
            } => Error::Downstream {
                status: *status,
                headers: headers.clone(),
                body: body.clone(),
            },
            Error::Unavailable { endpoint, source } => Error::Unavailable {
                endpoint: endpoint.clone(),
                source: error_chain(source.as_ref()).into(),
            },
            Error::Timeout {
                endpoint,
                after,
                limit,
            } => Error::Timeout {
                endpoint: endpoint.clone(),
                after: *after,
                limit,
            },
            Error::BadResponse(m) => Error::BadResponse(m.clone()),
            Error::ResponseTooLarge { limit } => Error::ResponseTooLarge { limit: *limit },
            Error::Overloaded => Error::Overloaded,
            Error::Canceled => Error::Canceled,
            Error::Internal(m) => Error::Internal(m.clone()),
            Error::Startup(m) => Error::Startup(m.clone()),
        }
    }

    /// The beginning (up to 64 KiB) of the body of an error the querier answered,
    /// decoded if it came compressed: to read its type and message. `None` for other
    /// errors.
    pub fn querier_body(&self) -> Option<Cow<'_, [u8]>> {
        let Error::Downstream { headers, body, .. } = self else {
            return None;
        };
        Some(crate::encoding::decoded_prefix(headers, body, 64 * 1024))
    }

    /// The delay a querier asked for with `Retry-After` (seconds or an HTTP date) on a
    /// 429 or 503 answer.
    pub fn retry_after(&self) -> Option<Duration> {
        let Error::Downstream {
            status, headers, ..
        } = self
        else {
            return None;
        };
        if !matches!(status.as_u16(), 429 | 503) {
            return None;
        }
        let value = headers
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let ms = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
        Some(Duration::from_millis(ms.max(0) as u64))
    }

    /// A short fixed name for the kind of failure, for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadData(_)
            | Error::BodyTooLarge { .. }
            | Error::HeadTooLarge { .. }
            | Error::ClientBody(_) => "bad_request",
            Error::NotFound(_) => "not_found",
            Error::Downstream { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                "status_429"
            }
            Error::Downstream { status, .. } if status.is_server_error() => "status_5xx",
            Error::Downstream { .. } => "status_4xx",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::BadResponse(_) => "bad_response",
            Error::ResponseTooLarge { .. } => "too_large",
            Error::Overloaded => "overloaded",
            Error::Canceled => "canceled",
            Error::Internal(_) | Error::Startup(_) => "internal",
        }
    }

    /// The Prometheus error envelope for this error:
    /// `{"status":"error","errorType":...,"error":...}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"status\":\"error\",\"errorType\":");
        crate::json::write_str(&mut out, self.error_type());
        out.extend_from_slice(b",\"error\":");
        crate::json::write_str(&mut out, &self.to_string());
        out.push(b'}');
        out
    }
}

/// The Prometheus `errorType` that goes with a querier status code, for querier
/// answers whose body is not Prometheus JSON.
pub fn error_type_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_data",
        404 => "not_found",
        406 => "not_acceptable",
        422 => "execution",
        STATUS_CLIENT_CLOSED_REQUEST => "canceled",
        503 => "unavailable",
        504 => "timeout",
        _ => "internal",
    }
}

/// An error and its sources, joined with `": "`, skipping a source whose text its parent
/// already contains (hyper's "client error (Connect)" says little on its own).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}

fn body_mentions(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(status: u16, body: &'static str) -> Error {
        Error::Downstream {
            status: StatusCode::from_u16(status).expect("valid status"),
            headers: Box::default(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn classification_table() {
        let unavailable = Error::Unavailable {
            endpoint: "http://q:9090".into(),
            source: "connection refused".into(),
        };
        let timeout = Error::Timeout {
            endpoint: "http://q:9090".into(),
            after: Duration::from_secs(2),
            limit: "downstream.request_timeout",
        };
        let cases: Vec<(Error, u16, &str, bool)> = vec![
            (Error::BadData("x".into()), 400, "bad_data", false),
            (Error::BodyTooLarge { limit: 10 }, 413, "bad_data", false),
            (
                Error::HeadTooLarge {
                    size: 70_000,
                    limit: 65_536,
                },
                431,
                "bad_data",
                false,
            ),
            (Error::NotFound("off".into()), 404, "not_found", false),
            (Error::Overloaded, 503, "unavailable", false),
            (unavailable, 503, "unavailable", true),
            (timeout, 503, "timeout", true),
            (Error::BadResponse("x".into()), 502, "bad_response", true),
            (
                Error::ResponseTooLarge { limit: 9 },
                502,
                "bad_response",
                false,
            ),
            (Error::Canceled, 499, "canceled", false),
            (Error::Internal("x".into()), 500, "internal", false),
            (downstream(400, "{}"), 400, "bad_data", false),
            (downstream(422, "{}"), 422, "execution", false),
            (downstream(429, "slow down"), 429, "internal", true),
            (downstream(404, "{}"), 404, "not_found", false),
            (downstream(500, "oops"), 500, "internal", true),
            (downstream(502, "<html>"), 502, "internal", true),
            (
                downstream(
                    503,
                    r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
                ),
                503,
                "unavailable",
                false,
            ),
            (
                downstream(
                    503,
                    r#"{"status":"error","errorType":"unavailable","error":"x"}"#,
                ),
                503,
                "unavailable",
                true,
            ),
        ];
        for (err, status, ty, retry) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.error_type(), ty, "{err:?}");
            assert_eq!(err.is_retryable(), retry, "{err:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_on_429_and_503_only() {
        let with = |status: u16, value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::RETRY_AFTER,
                value.parse().expect("header value"),
            );
            Error::Downstream {
                status: StatusCode::from_u16(status).expect("status"),
                headers: Box::new(headers),
                body: Bytes::new(),
            }
        };
        assert_eq!(with(429, "7").retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(with(503, " 0 ").retry_after(), Some(Duration::ZERO));
        assert_eq!(with(500, "7").retry_after(), None);
        assert_eq!(with(503, "soon").retry_after(), None);
        assert_eq!(with(503, "-3").retry_after(), None);
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let got = with(503, &date).retry_after().expect("HTTP date");
        assert!(
            got > Duration::from_secs(110) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        let past = with(503, "Wed, 21 Oct 2015 07:28:00 GMT").retry_after();
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(downstream(429, "x").retry_after(), None);
    }

    #[test]
    fn json_envelope_escapes_message() {
        let err = Error::BadData("invalid parameter \"start\": cannot parse \"<x>\"".into());
        let json: serde_json::Value =
            serde_json::from_slice(&err.to_json()).expect("error JSON parses");
        assert_eq!(json["status"], "error");
        assert_eq!(json["errorType"], "bad_data");
        assert_eq!(
            json["error"],
            "invalid parameter \"start\": cannot parse \"<x>\""
        );
    }
}
