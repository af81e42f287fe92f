//! The slow-query log: one JSON object per line for every request slower than a
//! threshold, shaped like Prometheus' query log (`params{query,start,end,step}`,
//! `httpRequest{clientIP,method,path}`) plus what the frontend knows about the request
//! (tenant, Grafana headers, pieces, cache outcome, retries, querier time, sizes).
//!
//! It sits at the HTTP edge rather than inside the range-query stack: it covers
//! passthrough requests too, and a request's duration runs until the last byte of its
//! answer was handed to the client.
//!
//! Writing never blocks a request: lines go through a bounded queue to one writer thread
//! (a full queue drops the line and counts it). The writer appends each line with one
//! `write` call to a file opened in append mode, so `tail -f` never sees half a line,
//! and reopens the file on [`SlowLog::reopen`] (SIGHUP, for logrotate). The last lines
//! are also kept in memory for `GET /api/v1/slow_queries` and broadcast to its followers.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

pub use crate::config::Threshold;
use crate::metrics::Metrics;

/// Settings of the slow-query log.
#[derive(Debug, Clone)]
pub struct SlowLogOptions {
    /// Which requests are logged.
    pub threshold: Threshold,
    /// The file lines are appended to; `None`: standard error.
    pub path: Option<PathBuf>,
    /// Lines waiting for the writer; more are dropped.
    pub queue_size: usize,
    /// Lines kept in memory for `/api/v1/slow_queries`.
    pub ring_size: usize,
}

/// The logger; shared by every request.
pub struct SlowLog {
    threshold: Threshold,
    writer: Option<SyncSender<Msg>>,
    /// A reopen that did not fit in the queue; the writer does it before its next line.
    reopen_pending: Arc<AtomicBool>,
    ring: Mutex<VecDeque<Line>>,
    ring_size: usize,
    followers: broadcast::Sender<Line>,
    metrics: Arc<Metrics>,
}

enum Msg {
    Line(Bytes),
    Reopen,
}

/// One logged line (newline-terminated JSON) and the tenant it was logged for, which
/// decides who may read it through the API ([`Visibility`]).
#[derive(Debug, Clone)]
pub struct Line {
    /// The tenant header's value, as the line records it.
    pub tenant: Option<Arc<str>>,
    /// The JSON object and its newline.
    pub text: Bytes,
}

/// Which lines a reader of `/api/v1/slow_queries` may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every line.
    All,
    /// The lines of this tenant.
    Tenant(String),
    /// The lines logged without a tenant.
    Untenanted,
}

impl Visibility {
    /// Whether a line of `tenant` is visible.
    pub fn shows(&self, tenant: Option<&str>) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Tenant(own) => tenant == Some(own.as_str()),
            Visibility::Untenanted => tenant.is_none(),
        }
    }
}

/// One logged request.
#[derive(Debug, Default, Serialize)]
pub struct Entry {
    /// When the request arrived, RFC 3339 with milliseconds, UTC.
    pub time: String,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The trace id of the request's W3C `traceparent` header, when it is valid.
    pub trace_id: Option<String>,
    /// The query parameters, as Prometheus' query log names them.
    pub params: Params,
    /// The HTTP request.
    #[serde(rename = "httpRequest")]
    pub http_request: HttpRequest,
    /// From request received to the last byte of the answer handed over.
    pub duration_seconds: f64,
    /// The status sent.
    pub status: u16,
    /// The error message, for an error answer.
    pub error: Option<String>,
    /// The tenant header's value.
    pub tenant: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Grafana's `X-Dashboard-Uid`.
    pub dashboard_uid: Option<String>,
    /// Grafana's `X-Panel-Id`.
    pub panel_id: Option<String>,
    /// Grafana's `X-Grafana-Org-Id`.
    pub org_id: Option<String>,
    /// Grafana's `X-Query-Group-Id`.
    pub query_group_id: Option<String>,
    /// Sub-ranges a range query was asked as: pieces of the split (per-interval fetch
    /// mode) or querier requests planned (planned mode); 0 for other requests.
    pub splits: u64,
    /// How the cache served the pieces.
    pub cache: CacheFacts,
    /// Querier attempts that were retries.
    pub retries: u64,
    /// Time spent waiting for the querier, summed over range-query pieces.
    pub downstream_seconds: f64,
    /// Requests sent to the querier, retries included.
    pub downstream_requests: u64,
    /// Bytes of the answer body sent (after compression).
    pub response_bytes: u64,
    /// Series in a range query's answer (`null` for passthrough answers, which stream
    /// through unread).
    pub series: Option<u64>,
    /// Samples (floats and histograms) in a range query's answer.
    pub samples: Option<u64>,
}

/// `params` of a log line.
#[derive(Debug, Default, Serialize)]
pub struct Params {
    /// The PromQL (`query`; for series/labels requests their `match[]` selectors).
    pub query: Option<String>,
    /// Start, RFC 3339 (instant queries: their `time`).
    pub start: Option<String>,
    /// End, RFC 3339 (instant queries: their `time`).
    pub end: Option<String>,
    /// Step in seconds (instant queries: 0).
    pub step: Option<f64>,
}

/// `httpRequest` of a log line.
#[derive(Debug, Default, Serialize)]
pub struct HttpRequest {
    /// The client's address.
    #[serde(rename = "clientIP")]
    pub client_ip: String,
    /// The method.
    pub method: String,
    /// The path (no query string: it may hold credentials).
    pub path: String,
}

/// `cache` of a log line: how the caches answered the request, and pieces by cache
/// outcome.
#[derive(Debug, Default, Serialize)]
pub struct CacheFacts {
    /// The request's outcome, as in `X-Cache` and `endpoint_cache_requests_total`
    /// (`hit`, `partial`, `miss`, `coalesced`, `skip`); absent for requests no cache
    /// looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// Pieces answered from the cache.
    pub hits: u64,
    /// Pieces not in the cache.
    pub misses: u64,
    /// Pieces answered partly from the cache.
    pub partial: u64,
    /// Pieces the cache did not handle.
    pub skipped: u64,
}

impl SlowLog {
    /// Opens the log file (so that a bad path fails at start-up) and starts the writer.
    pub fn new(opts: SlowLogOptions, metrics: Arc<Metrics>) -> std::io::Result<SlowLog> {
        let (followers, _) = broadcast::channel(64);
        let reopen_pending = Arc::new(AtomicBool::new(false));
        let writer = match opts.threshold {
            Threshold::Off => None,
            _ => Some(start_writer(
                opts.path.clone(),
                opts.queue_size.max(1),
                reopen_pending.clone(),
            )?),
        };
        Ok(SlowLog {
            threshold: opts.threshold,
            writer,
            reopen_pending,
            ring: Mutex::new(VecDeque::new()),
            ring_size: opts.ring_size,
            followers,
            metrics,
        })
    }

    /// Whether any request is logged.
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Whether a request that took `took` is logged.
    pub fn is_slow(&self, took: Duration) -> bool {
        match self.threshold {
            Threshold::Off => false,
            Threshold::All => true,
            Threshold::Above(limit) => took > limit,
        }
    }

    /// Logs one request: to the writer (counted as `logged` once queued, or `dropped`
    /// when its queue is full), the in-memory ring and the followers (those see every
    /// line, dropped from the file or not).
    pub fn record(&self, entry: &Entry) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "slow-query log entry not serializable");
                return;
            }
        };
        line.push(b'\n');
        let text = Bytes::from(line);
        let line = Line {
            tenant: entry.tenant.as_deref().map(Arc::from),
            text: text.clone(),
        };
        if self.ring_size > 0 {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if ring.len() == self.ring_size {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        // No follower is not an error.
        let _ = self.followers.send(line);
        match writer.try_send(Msg::Line(text)) {
            Ok(()) => self.metrics.slow_query("logged"),
            Err(TrySendError::Full(_)) => self.metrics.slow_query("dropped"),
            Err(TrySendError::Disconnected(_)) => self.metrics.slow_query("dropped"),
        }
    }

    /// Asks the writer to reopen the file (after logrotate renamed it). Lines queued
    /// before the call go to the old file, the later ones to a new file at the configured
    /// path; when the queue is full the reopen happens before the next line the writer
    /// takes, so a few lines queued before the call may go to the new file.
    pub fn reopen(&self) {
        if let Some(writer) = &self.writer
            && writer.try_send(Msg::Reopen).is_err()
        {
            self.reopen_pending.store(true, Ordering::Relaxed);
        }
    }

    /// The last `limit` lines that `who` may see, newest first.
    pub fn recent(&self, limit: usize, who: &Visibility) -> Vec<Bytes> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .rev()
            .filter(|line| who.shows(line.tenant.as_deref()))
            .take(limit)
            .map(|line| line.text.clone())
            .collect()
    }

    /// New lines as they are logged, each with its tenant (filter them with
    /// [`Visibility::shows`]).
    pub fn follow(&self) -> broadcast::Receiver<Line> {
        self.followers.subscribe()
    }
}

/// Where lines go.
enum Sink {
    Stderr,
    File(PathBuf, std::fs::File),
}

fn open_append(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Starts the writer thread; it ends when the sender is dropped.
fn start_writer(
    path: Option<PathBuf>,
    queue: usize,
    reopen_pending: Arc<AtomicBool>,
) -> std::io::Result<SyncSender<Msg>> {
    let mut sink = match path {
        Some(path) => {
            let file = open_append(&path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("slow query log {}: {e}", path.display()))
            })?;
            Sink::File(path, file)
        }
        None => Sink::Stderr,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(queue);
    std::thread::Builder::new()
        .name("slow-query-log".into())
        .spawn(move || {
            let mut last_warning = None;
            let mut failures = 0u64;
            for msg in rx {
                let msg = match msg {
                    Msg::Line(line) if reopen_pending.swap(false, Ordering::Relaxed) => {
                        reopen(&mut sink);
                        Msg::Line(line)
                    }
                    other => other,
                };
                match (msg, &mut sink) {
                    (Msg::Line(line), Sink::Stderr) => {
                        let _ = std::io::stderr().lock().write_all(&line);
                    }
                    (Msg::Line(line), Sink::File(path, file)) => {
                        // One write of the whole line: appends are never interleaved.
                        if let Err(e) = file.write_all(&line) {
                            failures += 1;
                            // A full disk fails every line: say so once a minute.
                            if last_warning.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(60)) {
                                tracing::warn!(path = %path.display(), error = %e, failures, "slow-query log writes failing");
                                last_warning = Some(std::time::Instant::now());
                                failures = 0;
                            }
                        }
                    }
                    (Msg::Reopen, sink) => reopen(sink),
                }
            }
        })?;
    Ok(tx)
}

/// Opens the configured path again (a renamed file keeps only what was written before).
fn reopen(sink: &mut Sink) {
    if let Sink::File(path, file) = sink {
        match open_append(path) {
            Ok(new) => *file = new,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "slow-query log reopen failed; still writing to the old file");
            }
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
#[path = "slowlog_tests.rs"]
mod tests;
