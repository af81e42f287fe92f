//! The client side: a pooled keep-alive hyper client to the querier.
//!
//! [`Downstream`] is both the innermost tower service of the range-query stack
//! (`Service<RangeQuery>`) and the forwarder for every passthrough request. It owns the
//! timeouts: `connect_timeout` bounds opening a connection, `request_timeout` bounds a
//! passthrough request until its response headers and a range query until its whole
//! body. A connection failure becomes `Error::Unavailable`, an expired timeout
//! `Error::Timeout`, a non-2xx answer `Error::Downstream` with the querier's body.
//! It also remembers when the querier last answered, for `/-/ready`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::Error;
use crate::model::{QueryResponse, RangeQuery};
use crate::{BoxFuture, headers};

/// Connection and timeout settings for [`Downstream`].
#[derive(Debug, Clone)]
pub struct DownstreamOptions {
    /// Querier base URL, with optional path prefix.
    pub url: String,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed per request (see the module docs).
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Extra CA certificates (PEM) trusted for `https://` queriers, besides the system's.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Largest range-query answer read from the querier (after gzip decoding).
    pub max_response_bytes: usize,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A handle to the querier; cheap to clone.
#[derive(Clone)]
pub struct Downstream {
    shared: Arc<Shared>,
}

struct Shared {
    client: HttpClient,
    /// `scheme://authority`, used to build request URIs and in error messages.
    origin: String,
    /// Path prefix without a trailing slash (`""` or `/prefix`).
    prefix: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: usize,
    /// When this handle was created; `last_answer_ms` counts from here.
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one) of the last HTTP answer; 0 = never.
    last_answer_ms: AtomicU64,
}

impl Downstream {
    /// Builds the client. Fails only for a URL that does not parse (config validation
    /// catches that first).
    pub fn new(opts: &DownstreamOptions) -> Result<Self, Error> {
        let uri: Uri = opts
            .url
            .parse()
            .map_err(|e| Error::Internal(format!("downstream url {:?}: {e}", opts.url)))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(Error::Internal(format!(
                "downstream url {:?} needs a scheme and a host",
                opts.url
            )));
        };
        let origin = format!("{scheme}://{authority}");
        let prefix = uri.path().trim_end_matches('/').to_owned();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(opts.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(opts.tls_ca_file.as_deref())?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.pool_max_idle_per_host)
            .build(tls);
        Ok(Downstream {
            shared: Arc::new(Shared {
                client,
                origin,
                prefix,
                request_timeout: opts.request_timeout,
                connect_timeout: opts.connect_timeout,
                max_response_bytes: opts.max_response_bytes,
                epoch: Instant::now(),
                last_answer_ms: AtomicU64::new(0),
            }),
        })
    }

    /// The querier's `scheme://host:port`, for logs and errors.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Whether the querier answered any request within `window`.
    pub fn answered_within(&self, window: Duration) -> bool {
        let last = self.shared.last_answer_ms.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = self.shared.epoch.elapsed().as_millis() as u64 + 1;
        now.saturating_sub(last) <= window.as_millis() as u64
    }

    /// Sends `GET <prefix><path>` and reports whether any HTTP answer came back within
    /// the connect timeout (a readiness probe must not hang as long as a query may).
    pub async fn probe(&self, path: &str) -> bool {
        let probe = self.forward(Method::GET, path, HeaderMap::new(), Bytes::new());
        matches!(
            tokio::time::timeout(self.shared.connect_timeout, probe).await,
            Ok(Ok(_))
        )
    }

    /// Forwards a request unchanged (method, path and query, headers, body) and returns
    /// the querier's response with its body still streaming. `request_timeout` bounds the
    /// wait for the response headers.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, Error> {
        let req = self.build_request(method, path_and_query, headers, body)?;
        let started = Instant::now();
        let resp =
            tokio::time::timeout(self.shared.request_timeout, self.shared.client.request(req))
                .await
                .map_err(|_| self.timeout_error())?
                .map_err(|e| self.transport_error(e.into()))?;
        self.mark_answered();
        tracing::trace!(status = %resp.status(), elapsed = ?started.elapsed(), "downstream answered");
        Ok(resp)
    }

    /// Runs a range query: `POST <prefix>/api/v1/query_range` with a form body, reads and
    /// decodes the whole answer within `request_timeout`.
    pub async fn query_range(&self, query: RangeQuery) -> Result<QueryResponse, Error> {
        let started = Instant::now();
        let stats = query.stats.clone();
        let result = self.query_range_inner(query).await;
        stats.record_downstream(started.elapsed());
        result
    }

    async fn query_range_inner(&self, query: RangeQuery) -> Result<QueryResponse, Error> {
        let mut headers = query.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        // The frontend reads this body, so it asks for gzip itself and decodes it; the
        // client's own Accept-Encoding applies to the frontend's response instead.
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let req = self.build_request(
            Method::POST,
            "/api/v1/query_range",
            headers,
            Bytes::from(query.to_form()),
        )?;
        let shared = &self.shared;
        let limit = shared.max_response_bytes;
        let exchange = async {
            let resp = shared
                .client
                .request(req)
                .await
                .map_err(|e| self.transport_error(e.into()))?;
            self.mark_answered();
            let (parts, body) = resp.into_parts();
            let body = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(too_large(limit));
                }
                Err(e) => return Err(self.transport_error(e)),
            };
            Ok::<_, Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(shared.request_timeout, exchange)
            .await
            .map_err(|_| self.timeout_error())??;
        if !parts.status.is_success() {
            return Err(downstream_error(parts, body, limit));
        }
        let body = decode_content_encoding(&parts.headers, body, limit)?;
        let mut answer = QueryResponse::from_slice(&body)?;
        answer.no_store = parts
            .headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
            });
        Ok(answer)
    }

    fn build_request(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let uri: Uri = format!(
            "{}{}{}",
            self.shared.origin, self.shared.prefix, path_and_query
        )
        .parse()
        .map_err(|e| Error::BadData(format!("invalid request path {path_and_query:?}: {e}")))?;
        headers::strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    fn mark_answered(&self) {
        let now = self.shared.epoch.elapsed().as_millis() as u64 + 1;
        self.shared.last_answer_ms.store(now, Ordering::Relaxed);
    }

    fn timeout_error(&self) -> Error {
        Error::Timeout {
            endpoint: self.shared.origin.clone(),
            after: self.shared.request_timeout,
        }
    }

    /// A failure to exchange bytes with the querier: refused or timed-out connections,
    /// TLS failures, resets. The cause chain says which.
    fn transport_error(&self, source: crate::error::BoxError) -> Error {
        // hyper-util words an expired connect timeout as "deadline has elapsed": say
        // which timeout it was.
        if crate::error::error_chain(source.as_ref()).contains("deadline has elapsed") {
            return Error::Unavailable {
                endpoint: self.shared.origin.clone(),
                source: format!(
                    "no connection within {} (downstream.connect_timeout)",
                    humantime::format_duration(self.shared.connect_timeout)
                )
                .into(),
            };
        }
        Error::Unavailable {
            endpoint: self.shared.origin.clone(),
            source,
        }
    }
}

impl tower::Service<RangeQuery> for Downstream {
    type Response = QueryResponse;
    type Error = Error;
    type Future = BoxFuture<QueryResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, query: RangeQuery) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.query_range(query).await })
    }
}

/// The TLS client config: the system's CA certificates plus those in `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Internal(format!("reading CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Internal(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::Internal(format!(
                    "CA file {}: unusable certificate: {e}",
                    path.display()
                ))
            })?;
        }
    } else if added == 0 {
        tracing::warn!("no system CA certificates found; https querier URLs will fail to verify");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Headers of a querier's error answer that the client needs to act on it.
const KEPT_ERROR_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::LOCATION,
];

/// Builds `Error::Downstream` from a non-2xx answer: the body decoded when possible (kept
/// encoded, with its `Content-Encoding`, otherwise) and the headers a client needs.
fn downstream_error(parts: http::response::Parts, body: Bytes, limit: usize) -> Error {
    let mut headers = HeaderMap::new();
    for name in KEPT_ERROR_HEADERS {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    let body = match decode_content_encoding(&parts.headers, body.clone(), limit) {
        Ok(decoded) => {
            headers.remove(header::CONTENT_ENCODING);
            decoded
        }
        Err(_) => body,
    };
    Error::Downstream {
        status: parts.status,
        headers: Box::new(headers),
        body,
    }
}

fn too_large(limit: usize) -> Error {
    Error::BadResponse(format!(
        "answer larger than downstream.max_response_bytes ({limit} bytes)"
    ))
}

/// Decodes a `Content-Encoding: gzip` body of at most `limit` decoded bytes; identity
/// bodies pass unchanged. Any other encoding is an invalid response (the frontend only
/// ever asks for gzip).
pub fn decode_content_encoding(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, Error> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"identity") => Ok(body),
        Some(enc) if enc.eq_ignore_ascii_case(b"gzip") => {
            let mut out = Vec::with_capacity((body.len() * 8).min(limit));
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::BadResponse(format!("undecodable gzip body: {e}")))?;
            if out.len() > limit {
                return Err(too_large(limit));
            }
            Ok(Bytes::from(out))
        }
        Some(enc) => Err(Error::BadResponse(format!(
            "unsupported Content-Encoding {:?}",
            String::from_utf8_lossy(enc)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("compress");
        Bytes::from(enc.finish().expect("finish"))
    }

    fn with_encoding(enc: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
        h
    }

    #[test]
    fn decodes_gzip_within_the_limit() {
        let plain = Bytes::from_static(b"{\"status\":\"success\"}");
        assert_eq!(
            decode_content_encoding(&HeaderMap::new(), plain.clone(), 100).expect("identity"),
            plain
        );
        assert_eq!(
            decode_content_encoding(&with_encoding("gzip"), gzip(&plain), 100).expect("gzip"),
            plain
        );
        assert!(matches!(
            decode_content_encoding(&with_encoding("br"), plain.clone(), 100),
            Err(Error::BadResponse(_))
        ));
        assert!(matches!(
            decode_content_encoding(&with_encoding("gzip"), plain, 100),
            Err(Error::BadResponse(_))
        ));
    }

    #[test]
    fn gzip_bombs_are_cut_off() {
        let bomb = gzip(&vec![b'0'; 10_000_000]);
        assert!(bomb.len() < 100_000);
        let err = decode_content_encoding(&with_encoding("gzip"), bomb, 1_000_000)
            .expect_err("too large");
        assert!(err.to_string().contains("max_response_bytes"), "{err}");
    }

    #[test]
    fn error_answers_keep_useful_headers_and_decoded_bodies() {
        let resp = http::Response::builder()
            .status(503)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .header("retry-after", "7")
            .header("set-cookie", "x=1")
            .body(())
            .expect("response");
        let (parts, ()) = resp.into_parts();
        let body = b"{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"x\"}";
        match downstream_error(parts, gzip(body), 1000) {
            Error::Downstream {
                status,
                headers,
                body: got,
            } => {
                assert_eq!(status, 503);
                assert_eq!(&got[..], &body[..]);
                assert_eq!(headers["retry-after"], "7");
                assert!(
                    headers.get("content-encoding").is_none(),
                    "body was decoded"
                );
                assert!(headers.get("set-cookie").is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
