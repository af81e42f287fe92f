//! What the frontend answers itself: `/-/ready`, `/metrics` and
//! `/api/v1/slow_queries` (`/-/healthy` is a constant line in the router).

use super::ReqBody;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use bytes::Bytes;

use super::observe::Lines;
use super::respond::{full, text};
use super::{Body, Frontend};
use crate::error::Error;
use crate::model::query::{first_value, form_pairs};
use crate::quote::go_quote;
use crate::slowlog::Visibility;

impl Frontend {
    pub(super) async fn ready(&self) -> Response<Body> {
        if self
            .downstream
            .ready(self.ready_window, &self.probe_path)
            .await
        {
            text(StatusCode::OK, "promql-frontend is Ready.\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "no querier endpoint ({}) has answered within {}\n",
                    self.downstream.describe(),
                    humantime::format_duration(self.ready_window)
                ),
            )
        }
    }

    /// `GET /api/v1/slow_queries`: the last `limit` (default all kept) slow-query log
    /// lines `who` may see, newest first, as `{"status":"success","data":[...]}`; with
    /// `follow=true` new lines as they are logged, as newline-delimited JSON, until
    /// shutdown.
    pub(super) fn slow_queries(
        &self,
        req: &Request<ReqBody>,
        who: Visibility,
    ) -> Result<Response<Body>, Error> {
        let pairs = form_pairs(req.uri().query(), None, &[]);
        let first = |name: &str| first_value(&pairs, name);
        let limit = match first("limit") {
            None | Some(b"") => usize::MAX,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::BadData(format!(
                        "invalid parameter \"limit\": {} is not a non-negative integer",
                        go_quote(v)
                    ))
                })?,
        };
        let follow = match first("follow") {
            None | Some(b"" | b"false" | b"0") => false,
            Some(b"true" | b"1") => true,
            Some(v) => {
                return Err(Error::BadData(format!(
                    "invalid parameter \"follow\": {} is not true or false",
                    go_quote(v)
                )));
            }
        };
        if !self.slow_queries_api {
            return Err(Error::NotFound(
                "the slow-query API is off (slow_query_log.api = false)".into(),
            ));
        }
        if !follow {
            let mut json = b"{\"status\":\"success\",\"data\":[".to_vec();
            for (i, line) in self.slow_log.recent(limit, &who).iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(line.trim_ascii_end());
            }
            json.extend_from_slice(b"]}");
            return Ok(self.json_response(req.headers(), json));
        }
        let mut lines = self.slow_log.follow();
        let mut closing = self.closing.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            loop {
                // Lines first: a line logged before shutdown still reaches the follower.
                let line = tokio::select! {
                    biased;
                    line = lines.recv() => line,
                    _ = closing.wait_for(|c| *c) => break,
                    () = tx.closed() => break,
                };
                match line {
                    Ok(line) if !who.shows(line.tenant.as_deref()) => continue,
                    // A follower that does not read must not hold up shutdown.
                    Ok(line) => tokio::select! {
                        biased;
                        sent = tx.send(line.text) => if sent.is_err() { break },
                        _ = closing.wait_for(|c| *c) => break,
                    },
                    // A follower that fell behind skips what it missed.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let mut resp = Response::new(Lines(rx).boxed());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `/metrics`: OpenMetrics for clients that ask for it (Prometheus does), the
    /// classic Prometheus text format otherwise (curl, `promtool check metrics`).
    pub(super) async fn metrics_page(&self, req_headers: &HeaderMap) -> Response<Body> {
        self.cache_usage.report(&self.metrics).await;
        let openmetrics = req_headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let text = self.metrics.encode();
        let (body, content_type) = if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                crate::metrics::to_prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = Response::new(full(Bytes::from(body)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    }
}
