use std::sync::Arc;

use http::HeaderValue;

use super::*;
use crate::promql::Analysis;

const D: i64 = 86_400_000;
const MIDNIGHT: i64 = 1_699_920_000_000;

fn opts() -> KeyOptions {
    KeyOptions {
        namespace: "http://prometheus:9090".into(),
        tenant_header: HeaderName::from_static("x-scope-orgid"),
        key_headers: vec![HeaderName::from_static("authorization")],
        interval_ms: D,
    }
}

fn query(expr: &str, start: i64, end: i64, step: &str, extra: &[(&str, &str)]) -> RangeQuery {
    let mut pairs: Vec<(String, String)> = vec![
        ("query".into(), expr.into()),
        ("start".into(), crate::model::time::format_seconds_ms(start)),
        ("end".into(), crate::model::time::format_seconds_ms(end)),
        ("step".into(), step.into()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut q = RangeQuery::from_form(pairs, HeaderMap::new()).expect("valid");
    crate::promql::attach(&mut q, Arc::new(Analysis::of(expr)));
    q
}

fn with_header(mut q: RangeQuery, name: &'static str, value: &'static str) -> RangeQuery {
    q.request_headers
        .append(name, HeaderValue::from_static(value));
    q
}

fn key(q: &RangeQuery) -> Result<PieceKey, Skip> {
    piece_key(q, &opts())
}

#[test]
fn what_the_key_includes_and_excludes() {
    let base = query(
        "sum(rate(x[5m]))",
        MIDNIGHT + 60_000,
        MIDNIGHT + 3_600_000,
        "60",
        &[],
    );
    let k = key(&base).expect("cacheable");
    // Same key: other end in the same window, equivalent spelling, ignored params,
    // headers outside key_headers.
    let same = [
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 7_200_000,
            "60",
            &[],
        ),
        query(
            "sum( rate(x[300s]) )",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "1m",
            &[],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[("timeout", "10s")],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 120_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[],
        ),
        with_header(base.clone(), "x-dashboard-uid", "abc"),
        with_header(base.clone(), "x-scope-orgid", "anonymous"),
    ];
    for q in &same {
        assert_eq!(key(q).expect("cacheable").full, k.full, "{:?}", q.query);
    }
    // Different key: tenant, auth, step, phase, window, keyed params, expression.
    let different = [
        with_header(base.clone(), "x-scope-orgid", "team-a"),
        with_header(base.clone(), "authorization", "Bearer u1"),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "30",
            &[],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 61_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + D + 60_000,
            MIDNIGHT + D + 3_600_000,
            "60",
            &[],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[("lookback_delta", "1m")],
        ),
        query(
            "sum(rate(x[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[("dedup", "false")],
        ),
        query(
            "sum(rate(y[5m]))",
            MIDNIGHT + 60_000,
            MIDNIGHT + 3_600_000,
            "60",
            &[],
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    seen.insert(k.full.clone());
    for q in &different {
        let dk = key(q).expect("cacheable");
        assert!(
            seen.insert(dk.full.clone()),
            "{:?} must have its own key: {}",
            q.query,
            dk.full
        );
        assert_eq!(dk.hash, xxh3_64(dk.full.as_bytes()));
    }
    // The querier reads the first of repeated single-valued parameters.
    let first_true = query(
        "up",
        MIDNIGHT,
        MIDNIGHT + 60_000,
        "60",
        &[("dedup", "true"), ("dedup", "false")],
    );
    let first_false = query(
        "up",
        MIDNIGHT,
        MIDNIGHT + 60_000,
        "60",
        &[("dedup", "false"), ("dedup", "true")],
    );
    let only_true = query(
        "up",
        MIDNIGHT,
        MIDNIGHT + 60_000,
        "60",
        &[("dedup", "true")],
    );
    assert_ne!(
        key(&first_true).expect("k").full,
        key(&first_false).expect("k").full
    );
    assert_eq!(
        key(&first_true).expect("k").full,
        key(&only_true).expect("k").full
    );
    // A tenant header that is not visible ASCII is keyed on its exact bytes.
    let mut odd = base.clone();
    odd.request_headers.insert(
        "x-scope-orgid",
        HeaderValue::from_bytes(b"t\xe9am").expect("opaque header value"),
    );
    let odd_key = key(&odd).expect("cacheable");
    assert_ne!(odd_key.full, k.full, "not the anonymous entry");
    assert!(odd_key.full.contains("bytes:"), "{}", odd_key.full);
    // Another querier behind another frontend: another namespace.
    let other = piece_key(
        &base,
        &KeyOptions {
            namespace: "http://other:9090".into(),
            ..opts()
        },
    )
    .expect("k");
    assert_ne!(other.hash, k.hash);
    // Two users with different credentials never share.
    let u1 = key(&with_header(base.clone(), "authorization", "Bearer u1")).expect("k");
    let u2 = key(&with_header(base.clone(), "authorization", "Bearer u2")).expect("k");
    assert_ne!(u1.hash, u2.hash);
    assert!(
        !u1.full.contains("u1"),
        "credentials are hashed, not stored"
    );
}

#[test]
fn uncacheable_requests() {
    let cases = [
        (
            query("sum(", MIDNIGHT, MIDNIGHT + 60_000, "60", &[]),
            Skip::Unparsed,
        ),
        (
            query("up", MIDNIGHT, MIDNIGHT + 60_000, "60", &[("stats", "all")]),
            Skip::Param,
        ),
        (
            query("up", MIDNIGHT, MIDNIGHT + 60_000, "60", &[("nocache", "1")]),
            Skip::Param,
        ),
        (
            query("up offset -5m", MIDNIGHT, MIDNIGHT + 60_000, "60", &[]),
            Skip::NegativeOffset,
        ),
        (
            query("up @ start()", MIDNIGHT, MIDNIGHT + 60_000, "60", &[]),
            Skip::StartEndAt,
        ),
        (
            query("up @ 1699920120", MIDNIGHT, MIDNIGHT + 60_000, "60", &[]),
            Skip::AtInFuture,
        ),
        (
            query("up", MIDNIGHT - 60_000, MIDNIGHT + 60_000, "60", &[]),
            Skip::CrossesWindow,
        ),
        (
            query("up", MIDNIGHT, MIDNIGHT, "0.0001", &[]),
            Skip::OddRange,
        ),
    ];
    for (q, want) in cases {
        assert_eq!(key(&q), Err(want), "{:?} {:?}", q.query, q.params);
    }
    // An @ inside the range is fine.
    assert!(
        key(&query(
            "up @ 1699920030",
            MIDNIGHT,
            MIDNIGHT + 60_000,
            "60",
            &[]
        ))
        .is_ok()
    );
}

#[test]
fn cache_control_directives() {
    let mut h = HeaderMap::new();
    assert_eq!(directives(&h), Directives::default());
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, No-Cache"),
    );
    assert_eq!(
        directives(&h),
        Directives {
            no_store: false,
            no_cache: true
        }
    );
    h.append(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    assert_eq!(
        directives(&h),
        Directives {
            no_store: true,
            no_cache: true
        }
    );
}

#[test]
fn the_key_at_another_step_is_that_query_s_key() {
    let extra = [("lookback_delta", "2m")];
    let at_minute = with_header(
        query(
            "rate(x[5m])",
            MIDNIGHT + 20_000,
            MIDNIGHT + D - 40_000,
            "60",
            &extra,
        ),
        "authorization",
        "Bearer a",
    );
    let at_15s = with_header(
        query(
            "rate(x[5m])",
            MIDNIGHT + 5_000,
            MIDNIGHT + D - 10_000,
            "15",
            &extra,
        ),
        "authorization",
        "Bearer a",
    );
    let (minute, fine) = (
        shape_key(&at_minute, &opts()).expect("cacheable"),
        shape_key(&at_15s, &opts()).expect("cacheable"),
    );
    // 20 s mod 15 s = 5 s: the 15 s query's phase.
    assert_eq!(minute.at_step(15_000, 5_000), fine);
    assert_eq!(fine.at_step(60_000, 20_000), minute);
    assert_eq!(minute.family, fine.family);
    assert_ne!(minute.text, fine.text);
    // Another expression, parameter or credential is another family.
    for other in [
        query("rate(y[5m])", MIDNIGHT + 20_000, MIDNIGHT + D, "60", &extra),
        query("rate(x[5m])", MIDNIGHT + 20_000, MIDNIGHT + D, "60", &[]),
        with_header(
            query("rate(x[5m])", MIDNIGHT + 20_000, MIDNIGHT + D, "60", &extra),
            "authorization",
            "Bearer b",
        ),
    ] {
        assert_ne!(
            shape_key(&other, &opts()).expect("cacheable").family,
            minute.family
        );
    }
}
