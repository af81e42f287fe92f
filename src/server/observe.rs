//! What the edge records about each request for the slow-query log, the
//! `/api/v1/slow_queries` endpoint, and the body wrappers both need.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderName;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::error::{BoxError, Error};
use crate::model::RequestStats;
use crate::model::encoded::EncodedAnswer;
use crate::model::query::first_value;
use crate::model::time::parse_timestamp_ms;
use crate::slowlog::{CacheFacts, Entry, HttpRequest, Params, SlowLog, rfc3339_ms};
use crate::status::{Dashboards, Visit};

use super::Body;

/// A request being answered, as far as the slow-query log is concerned.
pub struct Pending {
    entry: Entry,
    started: Instant,
    stats: Option<Arc<RequestStats>>,
    /// The range-query answer, whose series and samples a written line reports.
    answer: Option<Arc<EncodedAnswer>>,
}

impl Pending {
    /// Starts the record of a request received now.
    pub fn new(
        peer: std::net::SocketAddr,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
        tenant_header: &HeaderName,
        request_id: &str,
    ) -> Pending {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let entry = Entry {
            time: rfc3339_ms(chrono::Utc::now().timestamp_millis()).unwrap_or_default(),
            request_id: request_id.to_owned(),
            trace_id: crate::headers::trace_id(headers),
            http_request: HttpRequest {
                client_ip: peer.ip().to_string(),
                method: method.to_string(),
                path: path.to_owned(),
            },
            tenant: header(tenant_header.as_str()),
            user_agent: header("user-agent"),
            dashboard_uid: header("x-dashboard-uid"),
            panel_id: header("x-panel-id"),
            org_id: header("x-grafana-org-id"),
            query_group_id: header("x-query-group-id"),
            ..Entry::default()
        };
        Pending {
            entry,
            started: Instant::now(),
            stats: None,
            answer: None,
        }
    }

    /// Records a range query's parameters and its shared counters.
    pub fn range_query(
        &mut self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ns: i64,
        stats: Arc<RequestStats>,
    ) {
        self.entry.params = Params {
            query: Some(query.to_owned()),
            start: rfc3339_ms(start_ms),
            end: rfc3339_ms(end_ms),
            step: Some(step_ns as f64 / 1e9),
        };
        self.stats = Some(stats);
    }

    /// Records the parameters of another read request from its form pairs: `query` (or
    /// the `match[]` selectors), `start`/`end` (or an instant query's `time`, with step 0).
    pub fn read_params<V: AsRef<[u8]>>(&mut self, pairs: &[(String, V)]) {
        let first = |name: &str| first_value(pairs, name).map(String::from_utf8_lossy);
        let time = |name: &str| {
            first(name)
                .and_then(|v| parse_timestamp_ms(&v).ok())
                .and_then(rfc3339_ms)
        };
        let matchers: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| k == "match[]")
            .map(|(_, v)| String::from_utf8_lossy(v.as_ref()))
            .collect();
        let query = first("query")
            .map(|q| q.into_owned())
            .or_else(|| (!matchers.is_empty()).then(|| matchers.join(", ")));
        self.entry.params = match first("time") {
            Some(_) => Params {
                query,
                start: time("time"),
                end: time("time"),
                step: Some(0.0),
            },
            None => Params {
                query,
                start: time("start"),
                end: time("end"),
                step: None,
            },
        };
    }

    /// Records the counters of a passthrough request.
    pub fn stats(&mut self, stats: Arc<RequestStats>) {
        self.stats = Some(stats);
    }

    /// Records the range-query answer; its series and samples are counted only if the
    /// line is written (counting walks the whole answer).
    pub fn answer(&mut self, answer: Arc<EncodedAnswer>) {
        self.answer = Some(answer);
    }

    /// Records how the caches answered the request (see [`CacheFacts::outcome`]).
    pub fn cache_outcome(&mut self, outcome: &'static str) {
        self.entry.cache.outcome = Some(outcome);
    }

    /// Records an error message (the querier's, for an answer passed on as it came).
    pub fn error(&mut self, message: String) {
        self.entry.error = Some(message);
    }

    /// Records the status and, for an error answer, its message.
    pub fn outcome(&mut self, status: http::StatusCode, error: Option<String>) {
        self.entry.status = status.as_u16();
        if error.is_some() {
            self.entry.error = error;
        }
    }

    /// The finished entry, once `bytes` of the body were sent, if `log` keeps it. A
    /// request of a Grafana dashboard is counted in `dashboards` either way.
    fn finish(mut self, bytes: u64, log: &SlowLog, dashboards: &Dashboards) -> Option<Entry> {
        let took = self.started.elapsed();
        let e = &mut self.entry;
        if let Some(stats) = &self.stats {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            e.splits = get(&stats.pieces);
            e.cache = CacheFacts {
                outcome: e.cache.outcome,
                hits: get(&stats.cache_hits),
                misses: get(&stats.cache_misses),
                partial: get(&stats.cache_partial),
                skipped: get(&stats.cache_skipped),
            };
            e.retries = get(&stats.retries);
            e.downstream_seconds = get(&stats.downstream_nanos) as f64 / 1e9;
            e.downstream_requests = get(&stats.downstream_requests);
        }
        if let Some(uid) = &e.dashboard_uid {
            dashboards.record(Visit {
                tenant: e.tenant.as_deref(),
                dashboard_uid: uid,
                panel_id: e.panel_id.as_deref(),
                query: e.params.query.as_deref(),
                seconds: took.as_secs_f64(),
                cache: &e.cache,
            });
        }
        if !log.is_slow(took) {
            return None;
        }
        if let Some(answer) = &self.answer {
            let (series, samples) = answer.counts();
            e.series = Some(series);
            e.samples = Some(samples);
        }
        e.duration_seconds = took.as_secs_f64();
        e.response_bytes = bytes;
        Some(self.entry)
    }
}

/// The message of an error answer for the log: the querier's own `error` text when it
/// sent Prometheus JSON, else the frontend's message.
pub fn error_message(err: &Error) -> String {
    if let Some(body) = err.querier_body()
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(msg) = v.get("error").and_then(|m| m.as_str())
    {
        return msg.to_owned();
    }
    err.to_string()
}

/// A response body that counts the bytes it hands over and, when it ends (or the client
/// goes away), logs the request if it was slow.
pub struct Observed {
    inner: Body,
    bytes: u64,
    done: Option<(Pending, Arc<SlowLog>, Arc<Dashboards>)>,
}

impl Observed {
    /// Wraps `inner`.
    pub fn new(
        inner: Body,
        pending: Pending,
        log: Arc<SlowLog>,
        dashboards: Arc<Dashboards>,
    ) -> Observed {
        Observed {
            inner,
            bytes: 0,
            done: Some((pending, log, dashboards)),
        }
    }

    /// Logs the request if slow; `complete`: the whole body was handed over.
    fn finish(&mut self, complete: bool) {
        if let Some((mut pending, log, dashboards)) = self.done.take() {
            if !complete && pending.entry.error.is_none() {
                pending.entry.error =
                    Some("the client went away before the whole answer was sent".into());
            }
            if let Some(entry) = pending.finish(self.bytes, &log, &dashboards) {
                log.record(&entry);
            }
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // Still pending here: the body was not read to its end.
        self.finish(false);
    }
}

/// A streaming body of lines from a channel; ends when the sender goes away.
pub struct Lines(pub tokio::sync::mpsc::Receiver<Bytes>);

impl HttpBody for Lines {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}

/// A response body that holds its request's admission permit
/// (`server.max_concurrent_requests`) until the body is sent whole or dropped.
pub struct Admitted {
    inner: Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admitted {
    /// Wraps `inner`; the permit is released when the wrapper is dropped.
    pub fn new(inner: Body, permit: tokio::sync::OwnedSemaphorePermit) -> Admitted {
        Admitted {
            inner,
            _permit: permit,
        }
    }
}

impl HttpBody for Admitted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_params_follow_prometheus_query_log_names() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let peer = "10.0.0.1:5000".parse().expect("addr");
        let tenant = HeaderName::from_static("x-scope-orgid");
        let mut p = Pending::new(
            peer,
            &http::Method::GET,
            "/api/v1/query",
            &HeaderMap::new(),
            &tenant,
            "id",
        );
        p.read_params(&pairs(&[("query", "up"), ("time", "1700000000.5")]));
        assert_eq!(p.entry.params.query.as_deref(), Some("up"));
        assert_eq!(
            p.entry.params.start.as_deref(),
            Some("2023-11-14T22:13:20.500Z")
        );
        assert_eq!(p.entry.params.step, Some(0.0));
        p.read_params(&pairs(&[
            ("match[]", "up"),
            ("match[]", "process_start_time_seconds"),
            ("start", "not a time"),
        ]));
        assert_eq!(
            p.entry.params.query.as_deref(),
            Some("up, process_start_time_seconds")
        );
        assert_eq!(p.entry.params.start, None);
        assert_eq!(p.entry.params.step, None);
        assert_eq!(p.entry.http_request.client_ip, "10.0.0.1");
    }
}
