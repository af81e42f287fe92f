//! What the edge records about each request for the slow-query log, the
//! `/api/v1/slow_queries` endpoint, and the body wrappers both need.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::error::{BoxError, Error};
use crate::model::RequestStats;
use crate::model::encoded::EncodedAnswer;
use crate::model::query::{first_value, query_pairs};
use crate::model::time::parse_timestamp_ms;
use crate::slowlog::{CacheFacts, Entry, HttpRequest, Params, SlowLog, rfc3339_ms};
use crate::status::{Dashboards, Visit};

use super::Body;

/// A request being answered, as far as the slow-query log is concerned.
///
/// Kept raw (the arrival time as milliseconds, header values as received, parameters
/// as numbers) and turned into an [`Entry`] only when a line is written or a
/// dashboard visit recorded: most requests are neither, and formatting times and
/// copying strings for them was a measurable part of a forwarded request's cost.
pub struct Pending {
    /// When the request arrived. Its wall-clock time, which the line reports, is worked
    /// out from it only for a line (the current time less the time since): one clock
    /// reading less for every request.
    started: Instant,
    peer: std::net::SocketAddr,
    method: http::Method,
    uri: http::Uri,
    request_id: HeaderValue,
    trace_id: Option<String>,
    tenant: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    dashboard_uid: Option<HeaderValue>,
    panel_id: Option<HeaderValue>,
    org_id: Option<HeaderValue>,
    query_group_id: Option<HeaderValue>,
    params: RawParams,
    /// The form body a read request's parameters come from (with the query string),
    /// when [`Pending::read_params`] recorded it: parsed only for an entry.
    form: Option<Bytes>,
    status: u16,
    error: Option<String>,
    cache_outcome: Option<&'static str>,
    stats: Option<Arc<RequestStats>>,
    /// The range-query answer, whose series and samples a written line reports.
    answer: Option<Arc<EncodedAnswer>>,
}

/// A line's `params` before formatting: times as the client wrote them or in
/// milliseconds, parsed and formatted only for a line that is written.
#[derive(Default)]
struct RawParams {
    query: Option<String>,
    start: Option<RawTime>,
    end: Option<RawTime>,
    step: Option<f64>,
}

/// A time of [`RawParams`].
#[derive(Clone)]
enum RawTime {
    Ms(i64),
    /// A parameter's text (not parsed yet: it may not parse).
    Text(String),
}

impl RawTime {
    /// RFC 3339, or `None` for text that is no time.
    fn rfc3339(&self) -> Option<String> {
        match self {
            RawTime::Ms(ms) => rfc3339_ms(*ms),
            RawTime::Text(text) => parse_timestamp_ms(text).ok().and_then(rfc3339_ms),
        }
    }
}

/// The Grafana headers a line reports.
const USER_AGENT: HeaderName = http::header::USER_AGENT;
const DASHBOARD_UID: HeaderName = HeaderName::from_static("x-dashboard-uid");
const PANEL_ID: HeaderName = HeaderName::from_static("x-panel-id");
const ORG_ID: HeaderName = HeaderName::from_static("x-grafana-org-id");
const QUERY_GROUP_ID: HeaderName = HeaderName::from_static("x-query-group-id");

impl Pending {
    /// Starts the record of a request received at `started`; `trace_id` is the one
    /// [`crate::headers::trace_id`] read from its headers.
    pub fn new(
        started: Instant,
        peer: std::net::SocketAddr,
        request: (&http::Method, &http::Uri, &HeaderMap),
        tenant_header: &HeaderName,
        request_id: &HeaderValue,
        trace_id: Option<String>,
    ) -> Pending {
        let (method, uri, headers) = request;
        let mut p = Pending {
            started,
            peer,
            method: method.clone(),
            uri: uri.clone(),
            request_id: request_id.clone(),
            trace_id,
            tenant: None,
            user_agent: None,
            dashboard_uid: None,
            panel_id: None,
            org_id: None,
            query_group_id: None,
            params: RawParams::default(),
            form: None,
            status: 0,
            error: None,
            cache_outcome: None,
            stats: None,
            answer: None,
        };
        // One pass over the request's headers (the first value of each name, as `get`
        // gives it) instead of a hashed lookup per name.
        for (name, value) in headers {
            let slot = if name == tenant_header {
                &mut p.tenant
            } else if name == USER_AGENT {
                &mut p.user_agent
            } else if name == DASHBOARD_UID {
                &mut p.dashboard_uid
            } else if name == PANEL_ID {
                &mut p.panel_id
            } else if name == ORG_ID {
                &mut p.org_id
            } else if name == QUERY_GROUP_ID {
                &mut p.query_group_id
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        p
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
        self.form = None;
        self.params = RawParams {
            query: Some(query.to_owned()),
            start: Some(RawTime::Ms(start_ms)),
            end: Some(RawTime::Ms(end_ms)),
            step: Some(step_ns as f64 / 1e9),
        };
        self.stats = Some(stats);
    }

    /// Records where the parameters of another read request are: `form`, the form
    /// body Prometheus reads before the query string (empty for none; see
    /// [`crate::model::query::query_pairs`]). They are parsed only for an entry (most
    /// requests get none): `query` (or the `match[]` selectors), `start`/`end` (or an
    /// instant query's `time`, with step 0).
    pub fn read_params(&mut self, form: Bytes) {
        self.form = Some(form);
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
        self.cache_outcome = Some(outcome);
    }

    /// Records an error message (the querier's, for an answer passed on as it came).
    pub fn error(&mut self, message: String) {
        self.error = Some(message);
    }

    /// Records the status and, for an error answer, its message.
    pub fn outcome(&mut self, status: http::StatusCode, error: Option<String>) {
        self.status = status.as_u16();
        if error.is_some() {
            self.error = error;
        }
    }

    /// When the request arrived, in milliseconds since the epoch.
    fn arrived_ms(&self) -> i64 {
        let since = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        chrono::Utc::now().timestamp_millis().saturating_sub(since)
    }

    /// The line as far as it is known (everything but what the end of the body adds).
    fn entry(&self) -> Entry {
        let read;
        let params = match &self.form {
            Some(form) => {
                read = raw_params(&query_pairs(self.uri.query(), form));
                &read
            }
            None => &self.params,
        };
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut e = Entry {
            time: rfc3339_ms(self.arrived_ms()).unwrap_or_default(),
            request_id: String::from_utf8_lossy(self.request_id.as_bytes()).into_owned(),
            trace_id: self.trace_id.clone(),
            params: Params {
                query: params.query.clone(),
                start: params.start.as_ref().and_then(RawTime::rfc3339),
                end: params.end.as_ref().and_then(RawTime::rfc3339),
                step: params.step,
            },
            http_request: HttpRequest {
                client_ip: self.peer.ip().to_string(),
                method: self.method.to_string(),
                path: self.uri.path().to_owned(),
            },
            status: self.status,
            error: self.error.clone(),
            tenant: text(&self.tenant),
            user_agent: text(&self.user_agent),
            dashboard_uid: text(&self.dashboard_uid),
            panel_id: text(&self.panel_id),
            org_id: text(&self.org_id),
            query_group_id: text(&self.query_group_id),
            ..Entry::default()
        };
        e.cache.outcome = self.cache_outcome;
        if let Some(stats) = &self.stats {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            e.splits = get(&stats.pieces);
            e.cache = CacheFacts {
                outcome: self.cache_outcome,
                hits: get(&stats.cache_hits),
                misses: get(&stats.cache_misses),
                partial: get(&stats.cache_partial),
                skipped: get(&stats.cache_skipped),
            };
            e.retries = get(&stats.retries);
            e.downstream_seconds = get(&stats.downstream_nanos) as f64 / 1e9;
            e.downstream_requests = get(&stats.downstream_requests);
        }
        e
    }

    /// The finished entry, once `bytes` of the body were sent, if `log` keeps it. A
    /// request of a Grafana dashboard is counted in `dashboards` either way.
    fn finish(self, bytes: u64, log: &SlowLog, dashboards: &Dashboards) -> Option<Entry> {
        let took = self.started.elapsed();
        let slow = log.is_slow(took);
        if !slow && self.dashboard_uid.is_none() {
            return None;
        }
        let mut e = self.entry();
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
        if !slow {
            return None;
        }
        if let Some(answer) = &self.answer {
            let (series, samples) = answer.counts();
            e.series = Some(series);
            e.samples = Some(samples);
        }
        e.duration_seconds = took.as_secs_f64();
        e.response_bytes = bytes;
        Some(e)
    }
}

/// A read request's parameters as the log reports them, from its form pairs: `query`
/// (or the `match[]` selectors joined), `start`/`end` (or an instant query's `time`,
/// with step 0).
fn raw_params<V: AsRef<[u8]>>(pairs: &[(String, V)]) -> RawParams {
    let first = |name: &str| first_value(pairs, name).map(String::from_utf8_lossy);
    let time = |name: &str| first(name).map(|v| RawTime::Text(v.into_owned()));
    let mut matchers = pairs
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| String::from_utf8_lossy(v.as_ref()))
        .peekable();
    let query = match first("query") {
        Some(q) => Some(q.into_owned()),
        None if matchers.peek().is_some() => Some(matchers.collect::<Vec<_>>().join(", ")),
        None => None,
    };
    match time("time") {
        Some(time) => RawParams {
            query,
            start: Some(time.clone()),
            end: Some(time),
            step: Some(0.0),
        },
        None => RawParams {
            query,
            start: time("start"),
            end: time("end"),
            step: None,
        },
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
/// goes away), logs the request if it was slow. It also holds the request's admission
/// permit (`server.max_concurrent_requests`) until the body is sent whole or dropped.
pub struct Observed {
    inner: Body,
    bytes: u64,
    done: Option<(Box<Pending>, Arc<SlowLog>, Arc<Dashboards>)>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Observed {
    /// Wraps `inner`: `done`, the record to finish when the body ends; `permit`, released
    /// when the wrapper is dropped.
    pub fn new(
        inner: Body,
        done: Option<(Box<Pending>, Arc<SlowLog>, Arc<Dashboards>)>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Observed {
        Observed {
            inner,
            bytes: 0,
            done,
            _permit: permit,
        }
    }

    /// Logs the request if slow; `complete`: the whole body was handed over.
    fn finish(&mut self, complete: bool) {
        if let Some((mut pending, log, dashboards)) = self.done.take() {
            if !complete && pending.error.is_none() {
                pending.error =
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_params_follow_prometheus_query_log_names() {
        let peer = "10.0.0.1:5000".parse().expect("addr");
        let tenant = HeaderName::from_static("x-scope-orgid");
        let pending = |uri: &str| {
            let uri: http::Uri = uri.parse().expect("uri");
            Pending::new(
                Instant::now(),
                peer,
                (&http::Method::GET, &uri, &HeaderMap::new()),
                &tenant,
                &HeaderValue::from_static("id"),
                None,
            )
        };
        let mut p = pending("/api/v1/query?query=up&time=1700000000.5");
        p.read_params(Bytes::new());
        let e = p.entry();
        assert_eq!(e.params.query.as_deref(), Some("up"));
        assert_eq!(e.params.start.as_deref(), Some("2023-11-14T22:13:20.500Z"));
        assert_eq!(e.params.end.as_deref(), Some("2023-11-14T22:13:20.500Z"));
        assert_eq!(e.params.step, Some(0.0));
        assert_eq!(e.http_request.path, "/api/v1/query");
        assert_eq!(e.request_id, "id");
        let mut p = pending("/api/v1/series?match[]=process_start_time_seconds&start=x");
        p.read_params(Bytes::from_static(b"match%5B%5D=up&start=not+a+time"));
        let e = p.entry();
        assert_eq!(
            e.params.query.as_deref(),
            Some("up, process_start_time_seconds"),
            "the form body's pairs come first"
        );
        assert_eq!(e.params.start, None);
        assert_eq!(e.params.step, None);
        assert_eq!(e.http_request.client_ip, "10.0.0.1");
        let mut p = pending("/api/v1/labels");
        p.read_params(Bytes::new());
        assert_eq!(p.entry().params.query, None);
        // A range query's parsed parameters replace what the request said.
        let mut p = pending("/api/v1/query_range?query=up&start=1&end=2&step=1");
        p.read_params(Bytes::new());
        p.range_query("sum(up)", 0, 60_000, 15_000_000_000, Arc::default());
        let e = p.entry();
        assert_eq!(e.params.query.as_deref(), Some("sum(up)"));
        assert_eq!(e.params.end.as_deref(), Some("1970-01-01T00:01:00.000Z"));
        assert_eq!(e.params.step, Some(15.0));
    }

    #[test]
    fn the_line_reports_the_first_value_of_each_reported_header() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-scope-orgid", "team-a"),
            ("x-scope-orgid", "team-b"),
            ("user-agent", "Grafana/11"),
            ("x-dashboard-uid", "d1"),
            ("x-panel-id", "7"),
            ("x-grafana-org-id", "1"),
            ("x-query-group-id", "g"),
            ("x-other", "not reported"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let uri: http::Uri = "/api/v1/query_range?query=up".parse().expect("uri");
        let peer = "[::1]:5000".parse().expect("addr");
        let mut p = Pending::new(
            Instant::now(),
            peer,
            (&http::Method::POST, &uri, &headers),
            &HeaderName::from_static("x-scope-orgid"),
            &HeaderValue::from_static("rid"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        );
        p.range_query(
            "up",
            1_700_000_000_000,
            1_700_000_060_000,
            15_000_000_000,
            Arc::default(),
        );
        p.outcome(http::StatusCode::OK, None);
        let e = p.entry();
        assert_eq!(e.tenant.as_deref(), Some("team-a"));
        assert_eq!(e.user_agent.as_deref(), Some("Grafana/11"));
        assert_eq!(e.dashboard_uid.as_deref(), Some("d1"));
        assert_eq!(e.panel_id.as_deref(), Some("7"));
        assert_eq!(e.org_id.as_deref(), Some("1"));
        assert_eq!(e.query_group_id.as_deref(), Some("g"));
        assert_eq!(
            e.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(e.http_request.method, "POST");
        assert_eq!(e.http_request.path, "/api/v1/query_range");
        assert_eq!(e.http_request.client_ip, "::1");
        assert_eq!(e.params.end.as_deref(), Some("2023-11-14T22:14:20.000Z"));
        assert_eq!(e.params.step, Some(15.0));
        assert_eq!(e.status, 200);
        // The arrival time, in the log's format.
        assert_eq!(e.time.len(), "2023-11-14T22:13:20.000Z".len(), "{}", e.time);
    }

    #[test]
    fn the_line_reports_when_the_request_arrived_not_when_it_ended() {
        let uri: http::Uri = "/api/v1/labels".parse().expect("uri");
        let arrived = Instant::now()
            .checked_sub(std::time::Duration::from_secs(90))
            .expect("the clock is past 90 s");
        let before = chrono::Utc::now();
        let p = Pending::new(
            arrived,
            "127.0.0.1:5000".parse().expect("addr"),
            (&http::Method::GET, &uri, &HeaderMap::new()),
            &HeaderName::from_static("x-scope-orgid"),
            &HeaderValue::from_static("id"),
            None,
        );
        let e = p.entry();
        let after = chrono::Utc::now();
        let time = chrono::DateTime::parse_from_rfc3339(&e.time).expect("an RFC 3339 time");
        let lo = before - chrono::Duration::seconds(90) - chrono::Duration::milliseconds(2);
        let hi = after - chrono::Duration::seconds(90) + chrono::Duration::milliseconds(2);
        assert!(time >= lo && time <= hi, "{} not 90 s before now", e.time);
    }
}
