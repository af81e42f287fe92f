//! Every path the frontend does not answer itself: forwarded to the querier unchanged
//! (method, path, query string, body, allow-listed headers), the querier's answer
//! streamed back with hop-by-hop headers removed. Idempotent reads are retried with the
//! stack's policy and budget; anything else gets exactly one attempt.

use std::sync::Arc;

use super::ReqBody;
use http::header;
use http::{Method, Request, Response};
use http_body_util::BodyExt;

use super::observe::{Pending, error_message};
use super::respond::{full, looks_like_json_object};
use super::{Body, Frontend, form_body, read_body};
use crate::downstream::ForwardRequest;
use crate::error::Error;
use crate::headers::strip_hop_by_hop;
use crate::model::query::{
    borrowed_pairs, check_instant_query, first_value, is_form_content_type,
    is_multipart_content_type,
};
use crate::model::timeout::ClientTimeout;

impl Frontend {
    /// `arrived`: when the frontend took the request up (before authenticating it); the
    /// request's deadline and a client's `timeout` run from then.
    pub(super) async fn passthrough(
        &self,
        req: Request<ReqBody>,
        arrived: tokio::time::Instant,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, self.max_body_bytes).await?;
        self.forward_whole(arrived, parts, body, pending).await
    }

    /// [`Frontend::passthrough`] of a request whose body was read.
    pub(super) async fn forward_whole(
        &self,
        arrived: tokio::time::Instant,
        parts: http::request::Parts,
        body: bytes::Bytes,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let content_type = crate::headers::first(&parts.headers, &header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let api = parts.uri.path().starts_with("/api/");
        let retryable = is_idempotent_read(&parts.method, parts.uri.path(), content_type, &body);
        // Read for a parameter or two: borrowed from the request, not copied.
        let form = form_body(&parts, &body);
        let pairs = borrowed_pairs(parts.uri.query(), &form);
        let mut pending = pending;
        if let Some(p) = pending.as_deref_mut() {
            p.read_params(form.clone());
        }
        let path = parts.uri.path();
        let query_path = path == "/api/v1/query" || path == "/api/v1/query_range";
        // An instant query's `time` and `timeout` are checked here as Prometheus checks
        // them: the frontend passes the timeout on and waits by it, so it must be valid.
        // A multipart body (not decoded here) is left to the querier.
        if path == "/api/v1/query"
            && matches!(parts.method, Method::GET | Method::POST)
            && !is_multipart_content_type(content_type)
        {
            check_instant_query(&pairs)?;
        }
        // The querier enforces the client's `timeout` on the query paths (the only ones
        // where Prometheus reads it); the frontend waits a little longer.
        let client_timeout = first_value(&pairs, "timeout")
            .filter(|_| query_path)
            .and_then(|v| ClientTimeout::new(v, arrived));
        let deadline = self.deadline_for(arrived, client_timeout.as_ref());
        let request = ForwardRequest {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            // Picked by the allow-list as they are written: no map of their own.
            headers: parts.headers,
            allow: &self.forward,
            body,
            retryable,
            timeout_param: retryable && parts.uri.path() == "/api/v1/query",
            client_timeout,
        };
        let downstream = &self.downstream;
        let stats = Arc::new(crate::model::RequestStats::default());
        if let Some(p) = pending.as_deref_mut() {
            p.stats(stats.clone());
        }
        let attempt = |route: Arc<crate::model::Route>| {
            let (request, stats) = (&request, &stats);
            async move {
                downstream
                    .forward(request, &route, Some(deadline), stats)
                    .await
            }
        };
        let result = if retryable {
            self.retry.run(Some(deadline), Some(&stats), attempt).await
        } else {
            attempt(Arc::default()).await
        };
        let resp = match result {
            Ok(resp) => resp,
            // The querier's final error answer, read whole to classify it: passed on as
            // it came (status, headers, body, its `Content-Encoding` included), except
            // that an API path's 5xx without Prometheus JSON (a querier starting up
            // answers `503 Service Unavailable` in plain text, a load balancer an HTML
            // page) becomes error JSON with the same status, as API clients expect.
            Err(err @ Error::Downstream { .. }) => {
                if let Some(p) = pending {
                    p.error(error_message(&err));
                }
                let Error::Downstream {
                    status,
                    mut headers,
                    body,
                } = err
                else {
                    return Err(err);
                };
                if api && status.is_server_error() {
                    let text = crate::encoding::decoded_prefix(&headers, &body, 64 * 1024);
                    if !looks_like_json_object(&text) {
                        headers.remove(header::CONTENT_ENCODING);
                        let wrapped = Error::Downstream {
                            status,
                            headers,
                            body: bytes::Bytes::copy_from_slice(&text),
                        };
                        let coding = self.coding_for(&request.headers);
                        return Ok(self.error_answer(&wrapped, coding));
                    }
                }
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                *resp.headers_mut() = *headers;
                return Ok(resp);
            }
            Err(e) => return Err(e),
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// Paths that only read and accept a form POST.
const READ_PATHS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/format_query",
    "/api/v1/parse_query",
];

/// Whether sending a passthrough request twice is harmless: GET, HEAD and OPTIONS, and a
/// form POST (or an empty one) to a read endpoint. Anything else (admin APIs, remote
/// write, other methods) gets exactly one attempt.
fn is_idempotent_read(
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => true,
        Method::POST => {
            let read_path = READ_PATHS.contains(&path)
                || (path.starts_with("/api/v1/label/") && path.ends_with("/values"));
            read_path && (body.is_empty() || is_form_content_type(content_type))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_idempotent() {
        let form = Some("application/x-www-form-urlencoded");
        let cases = [
            (Method::GET, "/api/v1/admin/tsdb/snapshot", None, "", true),
            (Method::HEAD, "/api/v1/labels", None, "", true),
            (Method::POST, "/api/v1/query", form, "query=up", true),
            (Method::POST, "/api/v1/series", None, "", true),
            (Method::POST, "/api/v1/label/job/values", form, "x=1", true),
            (
                Method::POST,
                "/api/v1/query",
                Some("application/json"),
                "{}",
                false,
            ),
            (Method::POST, "/api/v1/admin/tsdb/snapshot", None, "", false),
            (Method::POST, "/api/v1/write", None, "bytes", false),
            (Method::PUT, "/api/v1/query", form, "query=up", false),
            (Method::DELETE, "/api/v1/series", None, "", false),
        ];
        for (method, path, ct, body, want) in cases {
            assert_eq!(
                is_idempotent_read(&method, path, ct, body.as_bytes()),
                want,
                "{method} {path} {ct:?}"
            );
        }
    }
}
