//! What travels on the wire to and from the querier, as pure functions: the `timeout`
//! parameter written into a request, the TLS client config, error answers kept with the
//! headers a client needs (the body decoded within a size limit).

use bytes::Bytes;
use http::header::{self, HeaderMap};

use crate::error::Error;

/// The request with its `timeout` parameter (in the query string for a GET, in the form
/// body for a form POST) replaced by `timeout` (URL-encoded here). Other parameters stay
/// byte for byte. The path and query come back only when they changed (`None` for a form
/// body, which carries the parameter instead); a new one is made of the old one's bytes
/// and of bytes that need no escaping, so it is a request target wherever the old one is.
pub(super) fn with_timeout(
    path_and_query: &str,
    body: &Bytes,
    timeout: &str,
) -> (Option<String>, Bytes) {
    /// Whether a raw pair's key decodes to `timeout` (`time%6Fut` does; the plain key
    /// is compared without decoding).
    fn is_timeout(pair: &str) -> bool {
        let key = pair.split('=').next().unwrap_or("");
        if !key.contains(['%', '+']) {
            return key == "timeout";
        }
        form_urlencoded::parse(key.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == "timeout")
    }
    /// `raw`'s pairs except `timeout` and empty ones, then `timeout=<value>`, appended
    /// to `out`.
    fn replace(out: &mut String, raw: &str, timeout: &str) {
        // The common case, a query string without a `timeout` or an empty pair, is
        // copied whole; `+` cannot make a key `timeout`, an escape can.
        let bytes = raw.as_bytes();
        let whole = !raw.starts_with('&')
            && !raw.ends_with('&')
            && bytes.iter().enumerate().all(|(i, &b)| match b {
                b'%' => false,
                b'&' => bytes.get(i + 1) != Some(&b'&'),
                b't' => !bytes[i..].starts_with(b"timeout"),
                _ => true,
            });
        if whole {
            out.push_str(raw);
            if !raw.is_empty() {
                out.push('&');
            }
        } else {
            for pair in raw.split('&').filter(|p| !p.is_empty() && !is_timeout(p)) {
                out.push_str(pair);
                out.push('&');
            }
        }
        out.push_str("timeout=");
        // The frontend's own values (`12.500`) and the usual client ones (`30s`) need no
        // escaping.
        if timeout
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            out.push_str(timeout);
        } else {
            out.extend(form_urlencoded::byte_serialize(timeout.as_bytes()));
        }
    }
    if !body.is_empty() {
        // A form body: Prometheus reads it before the query string.
        return match std::str::from_utf8(body) {
            Ok(text) => {
                let mut out = String::with_capacity(text.len() + timeout.len() + 9);
                replace(&mut out, text, timeout);
                (None, Bytes::from(out))
            }
            Err(_) => (None, body.clone()),
        };
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut out = String::with_capacity(path_and_query.len() + timeout.len() + 10);
    out.push_str(path);
    out.push('?');
    replace(&mut out, query, timeout);
    (Some(out), body.clone())
}

/// The TLS client config: the system's CA certificates plus those in `ca_file`.
pub(super) fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, Error> {
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
pub(super) fn downstream_error(parts: http::response::Parts, body: Bytes, limit: usize) -> Error {
    let mut headers = HeaderMap::new();
    for name in KEPT_ERROR_HEADERS {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    let body = match crate::encoding::decode(&parts.headers, body.clone(), limit) {
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

pub(super) fn too_large(limit: usize) -> Error {
    Error::ResponseTooLarge { limit }
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

    #[test]
    fn timeout_parameter_is_replaced_and_the_rest_kept() {
        let none = Bytes::new();
        let cases = [
            (
                "/api/v1/query?query=up",
                "/api/v1/query?query=up&timeout=1.500",
            ),
            ("/api/v1/query", "/api/v1/query?timeout=1.500"),
            (
                "/api/v1/query?query=up&",
                "/api/v1/query?query=up&timeout=1.500",
            ),
            (
                "/api/v1/query?timeout=1h&query=a%2Bb&time=5&timeout=2h",
                "/api/v1/query?query=a%2Bb&time=5&timeout=1.500",
            ),
            (
                "/api/v1/query?time%6fut=9&x=1",
                "/api/v1/query?x=1&timeout=1.500",
            ),
            (
                "/api/v1/query?&query=up&&timeouts=1&timeout&time+out=2",
                "/api/v1/query?query=up&timeouts=1&time+out=2&timeout=1.500",
            ),
        ];
        for (pq, want) in cases {
            assert_eq!(
                with_timeout(pq, &none, "1.500"),
                (Some(want.to_owned()), none.clone())
            );
        }
        assert_eq!(
            with_timeout("/api/v1/query?query=up", &none, "+1")
                .0
                .as_deref(),
            Some("/api/v1/query?query=up&timeout=%2B1"),
            "the value is encoded"
        );
        assert_eq!(
            with_timeout("/api/v1/query?query=up", &none, "30s")
                .0
                .as_deref(),
            Some("/api/v1/query?query=up&timeout=30s"),
        );
        let body = Bytes::from_static(b"query=sum(up)&timeout=30s");
        let (pq, new) = with_timeout("/api/v1/query?timeout=9s", &body, "2.000");
        assert_eq!(pq, None, "the body's value wins in Prometheus");
        assert_eq!(&new[..], b"query=sum(up)&timeout=2.000");
        let body = Bytes::from_static(b"query=up%2B1&time=5");
        let (_, new) = with_timeout("/api/v1/query", &body, "2.000");
        assert_eq!(&new[..], b"query=up%2B1&time=5&timeout=2.000");
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
