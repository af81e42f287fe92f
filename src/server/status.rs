//! `GET /` (the status page, HTML from the binary) and `GET /-/status` (the JSON its
//! script reads), answered for the reader's [`Visibility`].

use super::ReqBody;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};

use super::respond::full;
use super::{Body, Frontend};
use crate::error::Error;
use crate::slowlog::Visibility;
use crate::status::PAGE;

/// The page's Content Security Policy: its own inline script and style, requests to its
/// own origin only, nothing loaded from elsewhere.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Frontend {
    /// Answers `GET /` with the page and `GET /-/status` with the status JSON.
    pub(super) async fn status_page(
        &self,
        req: &Request<ReqBody>,
        who: Visibility,
    ) -> Result<Response<Body>, Error> {
        if req.uri().path() == "/" {
            let mut resp = Response::new(full(Bytes::from_static(PAGE.as_bytes())));
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            return Ok(resp);
        }
        self.cache_usage.report(&self.metrics).await;
        let every_tenant = who == Visibility::All;
        let snapshot = self.status.snapshot(
            &self.metrics,
            self.downstream.health(),
            self.dashboards.snapshot(&who),
            every_tenant,
        );
        let json = serde_json::to_vec(&snapshot)
            .map_err(|e| Error::Internal(format!("status JSON: {e}")))?;
        let mut resp = self.json_response(req.headers(), json);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}
