//! CORS as Prometheus does it (`--web.cors.origin`, here `server.cors_origin`), so a
//! browser page on another origin (a Grafana panel plugin, a notebook) can read the API
//! through the frontend as it reads Prometheus.
//!
//! What Prometheus 2.42 does, checked against the binary: on its API (`/api/v1/...`), a
//! request with a non-empty `Origin` gets `Access-Control-Allow-Headers: Accept,
//! Authorization, Content-Type, Origin`, `Access-Control-Allow-Methods: GET, POST,
//! OPTIONS`, `Access-Control-Expose-Headers: Date` and `Vary: Origin`, plus
//! `Access-Control-Allow-Origin`: `*` when the setting is exactly `.*` (the default),
//! the request's own origin when it matches the anchored pattern, nothing otherwise. A
//! request without `Origin` gets none of them. `OPTIONS` on any API path (the
//! preflight) is answered 204 without a body, with the same headers. The frontend does
//! the same for every answer it sends on the API, built or passed on; the querier's own
//! CORS headers are replaced by these.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The CORS headers other than `Access-Control-Allow-Origin`, with their values.
const FIXED: [(HeaderName, &str); 3] = [
    (
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Accept, Authorization, Content-Type, Origin",
    ),
    (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
    (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
];

/// The allowed origins (`server.cors_origin`).
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None`: any origin (the setting `.*`), answered with `*`.
    allowed: Option<regex::Regex>,
}

impl Cors {
    /// Origins matching `pattern` in whole (it is anchored at both ends, like
    /// Prometheus' flag).
    pub fn new(pattern: &str) -> Result<Cors, regex::Error> {
        let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Cors {
            allowed: (pattern != ".*").then_some(anchored),
        })
    }

    /// Whether CORS applies to answers on `path`: Prometheus' API, except the remote
    /// read and write endpoints (protocols for servers, whose handlers set none).
    pub fn covers(path: &str) -> bool {
        path.starts_with("/api/v1/") && !matches!(path, "/api/v1/read" | "/api/v1/write")
    }

    /// Whether a request is a preflight the frontend answers itself: `OPTIONS` on an API
    /// path (Prometheus answers those on any `/api/v1/` path, read and write included).
    pub fn is_preflight(method: &http::Method, path: &str) -> bool {
        method == http::Method::OPTIONS && path.starts_with("/api/v1/")
    }

    /// Puts the CORS headers for a request from `origin` into a response's `headers`,
    /// replacing any the querier set.
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let origin = origin.filter(|o| !o.is_empty());
        // Most answers carry no CORS header and most requests no `Origin`: one pass over
        // the names, without hashing, finds that there is nothing to do.
        let is_cors = |name: &header::HeaderName| {
            name == header::ACCESS_CONTROL_ALLOW_ORIGIN
                || name == header::VARY
                || FIXED.iter().any(|(fixed, _)| name == fixed)
        };
        if origin.is_none() && !headers.keys().any(is_cors) {
            return;
        }
        headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        for (name, _) in &FIXED {
            headers.remove(name);
        }
        remove_vary_origin(headers);
        let Some(origin) = origin else {
            return;
        };
        for (name, value) in FIXED {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let allow = match &self.allowed {
            None => Some(HeaderValue::from_static("*")),
            // Go matches the header's bytes read as UTF-8 (a bad byte as U+FFFD).
            Some(re) => re
                .is_match(&String::from_utf8_lossy(origin.as_bytes()))
                .then(|| origin.clone()),
        };
        if let Some(allow) = allow {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        }
    }
}

/// Removes `Origin` from the `Vary` headers (the querier's, when it set CORS headers).
fn remove_vary_origin(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| {
            let Ok(text) = v.to_str() else {
                return Some(v.clone());
            };
            let rest: Vec<&str> = text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.eq_ignore_ascii_case("origin"))
                .collect();
            match rest.as_slice() {
                [] => None,
                _ if rest.len() == text.split(',').count() => Some(v.clone()),
                _ => HeaderValue::from_str(&rest.join(", ")).ok(),
            }
        })
        .collect();
    headers.remove(header::VARY);
    for v in kept {
        headers.append(header::VARY, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cors: &Cors, origin: Option<&'static str>, mut headers: HeaderMap) -> HeaderMap {
        let origin = origin.map(HeaderValue::from_static);
        cors.apply(origin.as_ref(), &mut headers);
        headers
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// Headers as Prometheus 2.42 sets them (checked against the binary).
    #[test]
    fn any_origin_gets_a_star() {
        let cors = Cors::new(".*").expect("default");
        let h = answer(&cors, Some("http://grafana.example"), HeaderMap::new());
        assert_eq!(get(&h, "access-control-allow-origin"), ["*"]);
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            ["Accept, Authorization, Content-Type, Origin"]
        );
        assert_eq!(
            get(&h, "access-control-allow-methods"),
            ["GET, POST, OPTIONS"]
        );
        assert_eq!(get(&h, "access-control-expose-headers"), ["Date"]);
        assert_eq!(get(&h, "vary"), ["Origin"]);
        for origin in [None, Some("")] {
            assert!(
                answer(&cors, origin, HeaderMap::new()).is_empty(),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn a_pattern_is_anchored_and_echoes_the_origin() {
        let cors = Cors::new(r"https?://grafana\.example").expect("pattern");
        for (origin, allowed) in [
            ("http://grafana.example", true),
            ("https://grafana.example", true),
            ("http://grafana.example.evil", false),
            ("http://xgrafana.example", false),
            ("null", false),
        ] {
            let h = answer(&cors, Some(origin), HeaderMap::new());
            let want: &[&str] = if allowed { &[origin] } else { &[] };
            assert_eq!(get(&h, "access-control-allow-origin"), want, "{origin}");
            assert_eq!(get(&h, "vary"), ["Origin"], "{origin}");
            assert_eq!(get(&h, "access-control-expose-headers"), ["Date"]);
        }
        // `.*` written another way is a pattern like any other: the origin is echoed.
        let cors = Cors::new("(.*)").expect("pattern");
        let h = answer(&cors, Some("http://a"), HeaderMap::new());
        assert_eq!(get(&h, "access-control-allow-origin"), ["http://a"]);
        assert!(Cors::new("(").is_err());
    }

    #[test]
    fn the_queriers_cors_headers_are_replaced() {
        let cors = Cors::new(r"http://mine").expect("pattern");
        let mut querier = HeaderMap::new();
        querier.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        querier.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET"),
        );
        querier.append("vary", HeaderValue::from_static("Origin"));
        querier.append("vary", HeaderValue::from_static("Accept-Encoding, origin"));
        let h = answer(&cors, Some("http://other"), querier.clone());
        assert!(h.get("access-control-allow-origin").is_none());
        assert_eq!(
            get(&h, "access-control-allow-methods"),
            ["GET, POST, OPTIONS"]
        );
        assert_eq!(get(&h, "vary"), ["Accept-Encoding", "Origin"]);
        let h = answer(&cors, None, querier);
        assert!(h.get("access-control-allow-methods").is_none());
        assert_eq!(get(&h, "vary"), ["Accept-Encoding"]);
    }

    #[test]
    fn paths() {
        assert!(Cors::covers("/api/v1/query_range"));
        assert!(Cors::covers("/api/v1/status/buildinfo"));
        assert!(!Cors::covers("/api/v1/read"));
        assert!(!Cors::covers("/-/healthy"));
        assert!(!Cors::covers("/metrics"));
        assert!(!Cors::covers("/federate"));
        assert!(Cors::is_preflight(&http::Method::OPTIONS, "/api/v1/read"));
        assert!(!Cors::is_preflight(&http::Method::GET, "/api/v1/query"));
        assert!(!Cors::is_preflight(&http::Method::OPTIONS, "/-/healthy"));
    }
}
