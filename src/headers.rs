//! Header rules shared by the server and the downstream client: hop-by-hop headers never
//! cross the proxy, only allow-listed request headers reach the querier, and the trace id
//! of a W3C `traceparent` header is read for the logs. Also the decimal writer both
//! HTTP/1.1 writers use for `Content-Length`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus
/// `Keep-Alive` and `Proxy-Connection`, which old clients still send.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The lengths of the [`HOP_BY_HOP`] names, one bit per length.
const HOP_BY_HOP_LENGTHS: u64 = length_bit(10)
    | length_bit(18)
    | length_bit(19)
    | length_bit(2)
    | length_bit(7)
    | length_bit(17)
    | length_bit(16);

/// The bit of a name's length in a length mask: lengths of 64 and more share the top bit.
const fn length_bit(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

/// Whether `name` is hop-by-hop whatever the `Connection` header says. A name whose
/// length no hop-by-hop name has (most of them: `host`, `accept`, `user-agent`) is
/// settled by one bit test; the others are compared name by name, which costs less than
/// hashing for a lookup.
pub(crate) fn always_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP_LENGTHS & length_bit(name.as_str().len()) != 0 && HOP_BY_HOP.contains(name)
}

/// The headers a `Connection` header names (they are hop-by-hop for this message).
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
///
/// Most messages have none: one pass over the names finds that without hashing any of
/// them (a header named by `Connection` needs a `Connection` header, itself hop-by-hop).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(always_hop_by_hop) {
        return;
    }
    let named = connection_named(headers);
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The allow-list of request headers forwarded to the querier.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    names: Vec<HeaderName>,
    /// The lengths of `names` ([`length_bit`]): most request headers are ruled out
    /// without a comparison.
    lengths: u64,
}

impl ForwardHeaders {
    /// Builds the list from configured names; invalid names are skipped (config
    /// validation rejects them before this runs).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<HeaderName> = names
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_ref().as_bytes()).ok())
            .collect();
        let lengths = names
            .iter()
            .fold(0, |mask, name| mask | length_bit(name.as_str().len()));
        ForwardHeaders { names, lengths }
    }

    /// Whether `name` is on the list.
    pub fn allows(&self, name: &HeaderName) -> bool {
        self.lengths & length_bit(name.as_str().len()) != 0 && self.names.contains(name)
    }

    /// The subset of `src` to forward: allow-listed headers (all their values, in the
    /// order received), never a hop-by-hop one even if configured, nor one the client's
    /// `Connection` header names.
    ///
    /// Walks the request's headers (a handful) rather than looking up every name on the
    /// list (a dozen or more, each hashed): a forwarded request's cost, measured.
    pub fn select(&self, src: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        let mut connection = false;
        for (name, value) in src {
            if always_hop_by_hop(name) {
                connection |= name == header::CONNECTION;
                continue;
            }
            if self.allows(name) {
                out.append(name.clone(), value.clone());
            }
        }
        if connection {
            for name in connection_named(src) {
                out.remove(&name);
            }
        }
        out
    }

    /// Whether a passthrough sends the client's header `name` on: an allow-listed one,
    /// or `Content-Type` (the type of the body it sends on), of which only the first
    /// value goes. The writer leaves out hop-by-hop headers and those `Connection`
    /// names, as [`ForwardHeaders::select`] does.
    pub fn passes(&self, name: &HeaderName) -> bool {
        name == header::CONTENT_TYPE || self.allows(name)
    }

    /// What a passthrough sends on of `src`, as a map of its own: the allow-listed
    /// headers ([`ForwardHeaders::select`]) and the first `Content-Type`, unless the
    /// client's `Connection` header names it. For writers that need a map; the own
    /// client picks as it writes (see [`ForwardHeaders::passes`]).
    pub fn select_passthrough(&self, src: &HeaderMap) -> HeaderMap {
        let mut out = self.select(src);
        let named = || connection_named(src).contains(&header::CONTENT_TYPE);
        if let Some(ct) = first(src, &header::CONTENT_TYPE)
            && !(src.contains_key(header::CONNECTION) && named())
        {
            out.insert(header::CONTENT_TYPE, ct.clone());
        }
        out
    }
}

/// The first value of `name` in `headers`, as `HeaderMap::get` finds it. Requests and
/// answers carry a handful of headers: comparing their names one by one costs less than
/// hashing `name` for a lookup, which larger maps still get.
pub fn first<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.keys_len() > 8 {
        return headers.get(name);
    }
    headers.iter().find_map(|(n, v)| (n == name).then_some(v))
}

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the client's `X-Request-Id` when it is 1 to 128 characters of
/// `[A-Za-z0-9._:-]` (safe in every log format), otherwise a new random one (16 hex
/// digits).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = first(headers, &REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
    {
        return v.clone();
    }
    // Written digit by digit into a stack buffer: this runs for nearly every request,
    // and `format!` would allocate a string only to copy it into the header value.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = next_id();
    let mut id = [0u8; 16];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A new request id: the next of a per-thread sequence started at a random point,
/// mixed (splitmix64). Ids need to be distinct, not unpredictable (they are logged and
/// sent on), so they do not take a fresh random number per request, which costs ten
/// times as much; secrets (auth salts) still do.
fn next_id() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(crate::random_u64());
    }
    let state = STATE.with(|s| {
        let next = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(next);
        next
    });
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The W3C trace context header naming the caller's trace and span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace id of a valid W3C `traceparent` header (32 lowercase hex digits), for log
/// lines. `None` without the header, with more than one, or when it breaks the format
/// of the Trace Context recommendation: `version-traceid-parentid-flags`, lowercase
/// hex, version `ff` and all-zero ids invalid, version `00` exactly 55 characters, a
/// later version at least that long with a `-` after the flags. The header is forwarded
/// as received either way (it is on the allow-list); only the logs depend on this.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.iter().filter(|(name, _)| *name == TRACEPARENT);
    let (Some((_, value)), None) = (values.next(), values.next()) else {
        return None;
    };
    parse_traceparent(value.as_bytes()).map(str::to_owned)
}

/// The trace id of one `traceparent` value, if the value is valid.
pub fn parse_traceparent(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let b = text.as_bytes();
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |s: &[u8]| s.iter().all(|&c| c == b'0');
    if b.len() < 55 || [2, 35, 52].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let (version, trace, parent, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    let well_formed = [version, trace, parent, flags].iter().all(|p| lower_hex(p));
    if !well_formed || version == b"ff" || zeros(trace) || zeros(parent) {
        return None;
    }
    let length_ok = if version == b"00" {
        b.len() == 55
    } else {
        b.len() == 55 || b[55] == b'-'
    };
    length_ok.then(|| &text[3..35])
}

/// Appends `n` in decimal (a `Content-Length` value, say) without formatting machinery.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn listed(h: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<_> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_allow_listed_end_to_end_headers_are_selected() {
        let list = ForwardHeaders::new(&[
            "authorization",
            "x-scope-orgid",
            "x-custom",
            "te",
            "keep-alive",
            "accept",
        ]);
        let src = map(&[
            ("authorization", "Basic a"),
            ("x-scope-orgid", "t1"),
            ("x-scope-orgid", "t2"),
            ("x-other", "no"),
            ("te", "trailers"),
            ("keep-alive", "timeout=5"),
            ("connection", "x-custom, Accept"),
            ("x-custom", "named by connection"),
            ("accept", "named too"),
        ]);
        let want = vec![
            ("authorization".to_owned(), "Basic a".to_owned()),
            ("x-scope-orgid".to_owned(), "t1".to_owned()),
            ("x-scope-orgid".to_owned(), "t2".to_owned()),
        ];
        assert_eq!(listed(&list.select(&src)), want);
        // The values of a name keep their order.
        let order: Vec<_> = list
            .select(&src)
            .get_all("x-scope-orgid")
            .iter()
            .cloned()
            .collect();
        assert_eq!(order, ["t1", "t2"]);
        // Without a `Connection` header the named ones pass.
        let src = map(&[("x-custom", "c"), ("accept", "*/*"), ("x-other", "no")]);
        assert_eq!(
            listed(&list.select(&src)),
            vec![
                ("accept".to_owned(), "*/*".to_owned()),
                ("x-custom".to_owned(), "c".to_owned())
            ]
        );
        assert!(list.select(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut h = map(&[
            ("content-type", "application/json"),
            ("connection", "close, x-private"),
            ("x-private", "p"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic x"),
            ("vary", "accept-encoding"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(
            listed(&h),
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("vary".to_owned(), "accept-encoding".to_owned())
            ]
        );
        // Nothing hop-by-hop: left as it is.
        let mut h = map(&[("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")]);
        let before = listed(&h);
        strip_hop_by_hop(&mut h);
        assert_eq!(listed(&h), before);
    }

    #[test]
    fn trace_ids_come_only_from_valid_traceparents() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let valid = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(parse_traceparent(valid.as_bytes()), Some(id));
        // A later version may append fields after a dash.
        let future = format!("cc-{id}-00f067aa0ba902b7-09-extra");
        assert_eq!(parse_traceparent(future.as_bytes()), Some(id));
        for bad in [
            String::new(),
            "garbage".to_owned(),
            valid.to_uppercase(),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("cc-{id}-00f067aa0ba902b7-01extra"),
            format!("00-{id}-00f067aa0ba902b7-0g"),
            format!("00_{id}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", &id[1..]),
            format!("00-{id}x-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(trace_id(&h), None);
        h.insert(TRACEPARENT, HeaderValue::from_str(&valid).expect("value"));
        assert_eq!(trace_id(&h).as_deref(), Some(id));
        // Two headers: which one the querier reads is unknown, so neither is logged.
        h.append(TRACEPARENT, HeaderValue::from_str(&valid).expect("value"));
        assert_eq!(trace_id(&h), None);
        // Not UTF-8.
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_bytes(b"00-\xff").expect("value"),
        );
        assert_eq!(trace_id(&h), None);
    }

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
    fn new_request_ids_do_not_repeat_within_or_across_threads() {
        let ids = |n: usize| (0..n).map(|_| next_id()).collect::<Vec<_>>();
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || ids(10_000)))
            .collect();
        let mut all = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().expect("thread") {
                assert!(all.insert(id), "{id:x} repeated");
            }
        }
        for id in ids(10_000) {
            assert!(all.insert(id), "{id:x} repeated");
        }
        // Spread over all 64 bits, as the 16 hex digits of an id show.
        let (or, and) = all
            .iter()
            .fold((0u64, u64::MAX), |(o, a), id| (o | id, a & id));
        assert_eq!((or, and), (u64::MAX, 0));
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
    fn first_finds_what_get_finds_in_maps_of_any_size() {
        let mut h = HeaderMap::new();
        let names: Vec<HeaderName> = (0..20)
            .map(|i| HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("a valid name"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            h.append(name.clone(), HeaderValue::from(i));
            h.append(name.clone(), HeaderValue::from(i + 100));
            h.append(header::ACCEPT, HeaderValue::from(i + 1000));
            for probe in names.iter().chain([&header::ACCEPT, &header::ORIGIN]) {
                assert_eq!(first(&h, probe), h.get(probe), "{probe} among {}", h.len());
            }
        }
    }

    #[test]
    fn every_hop_by_hop_name_is_found_through_the_length_mask() {
        for name in &HOP_BY_HOP {
            assert!(always_hop_by_hop(name), "{name}");
            let upper = HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes())
                .expect("a valid name");
            assert!(always_hop_by_hop(&upper), "{upper}");
        }
        for name in [
            "host",
            "accept",
            "x-request-id",
            "tee",
            "trailers",
            "connections",
        ] {
            assert!(!always_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn allow_list_membership_with_names_of_any_length() {
        let long = "x-".to_string() + &"a".repeat(70);
        let longer = "x-".to_string() + &"a".repeat(71);
        let allow = ForwardHeaders::new(&["X-Scope-OrgID", "te", long.as_str()]);
        for (name, want) in [
            ("x-scope-orgid", true),
            ("x-scope-orgie", false),
            ("te", true),
            ("tf", false),
            (long.as_str(), true),
            (longer.as_str(), false),
            ("host", false),
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
            assert_eq!(allow.allows(&name), want, "{name}");
        }
        assert!(!ForwardHeaders::default().allows(&header::TE));
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
