//! Header rules shared by the server and the downstream client: hop-by-hop headers never
//! cross the proxy, and only allow-listed request headers reach the querier.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus
/// `Proxy-Connection`, which old clients still send.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The headers a `Connection` header names (they are hop-by-hop for this message).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    for name in named.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The allow-list of request headers forwarded to the querier.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    names: Vec<HeaderName>,
}

impl ForwardHeaders {
    /// Builds the list from configured names; invalid names are skipped (config
    /// validation rejects them before this runs).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        ForwardHeaders {
            names: names
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_ref().as_bytes()).ok())
                .collect(),
        }
    }

    /// Whether `name` is on the list.
    pub fn allows(&self, name: &HeaderName) -> bool {
        self.names.contains(name)
    }

    /// The subset of `src` to forward: allow-listed headers (all their values), never a
    /// hop-by-hop one even if configured, nor one the client's `Connection` header names.
    pub fn select(&self, src: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(self.names.len());
        let named = connection_named(src);
        for name in &self.names {
            if HOP_BY_HOP.contains(name) || named.contains(name) {
                continue;
            }
            for value in src.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }
}

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the client's `X-Request-Id` when it is 1 to 128 characters of
/// `[A-Za-z0-9._:-]` (safe in every log format), otherwise a new random one (16 hex
/// digits).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
    {
        return v.clone();
    }
    let id = format!("{:016x}", crate::random_u64());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane_and_made_up_otherwise() {
        let mut h = HeaderMap::new();
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 16);
        assert_ne!(fresh, request_id(&h), "new ids differ");
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("7f3a.b:9_x-1"));
        assert_eq!(request_id(&h), "7f3a.b:9_x-1");
        for bad in ["has space", "", &"x".repeat(129), "a\"b=c", "a,b"] {
            h.insert(
                REQUEST_ID,
                HeaderValue::from_str(bad).expect("header value"),
            );
            assert_eq!(request_id(&h).len(), 16, "{bad:?} replaced");
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn selects_only_allowed() {
        let allow = ForwardHeaders::new(&["Authorization", "X-Scope-OrgID", "TE"]);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert("x-scope-orgid", HeaderValue::from_static("team-a"));
        h.insert(header::COOKIE, HeaderValue::from_static("session=1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let out = allow.select(&h);
        assert_eq!(out.len(), 2);
        assert_eq!(out["authorization"], "Bearer t");
        assert_eq!(out["x-scope-orgid"], "team-a");
        // A header the Connection header names is hop-by-hop, allow-listed or not.
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Scope-OrgID"),
        );
        let out = allow.select(&h);
        assert_eq!(out.len(), 1);
        assert!(out.get("x-scope-orgid").is_none());
    }
}
