use super::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decode(list: &[(&str, &str)]) -> Result<RangeQuery, Error> {
    RangeQuery::from_form(pairs(list), HeaderMap::new())
}

#[test]
fn decodes_and_reencodes() {
    let q = decode(&[
        ("query", "sum(rate(x[5m]))"),
        ("start", "1700000000.3"),
        ("end", "2023-11-15T22:13:20Z"),
        ("step", "1m"),
        ("timeout", "10s"),
        ("dedup", "true"),
    ])
    .expect("valid");
    assert_eq!(q.start_ms, 1_700_000_000_300);
    assert_eq!(q.end_ms, 1_700_086_400_000);
    assert_eq!(q.step_ms(), 60_000);
    assert_eq!(q.param("dedup"), Some("true"));
    assert_eq!(
        q.to_form(),
        "query=sum%28rate%28x%5B5m%5D%29%29&start=1700000000.3&end=1700086400&step=60&timeout=10s&dedup=true"
    );
}

#[test]
fn first_occurrence_wins() {
    let q = decode(&[
        ("query", "a"),
        ("start", "10"),
        ("end", "20"),
        ("step", "5"),
        ("query", "b"),
        ("start", "0"),
    ])
    .expect("valid");
    assert_eq!(q.query, "a");
    assert_eq!(q.start_ms, 10_000);
}

#[test]
fn errors_match_prometheus() {
    let base = [
        ("query", "up"),
        ("start", "0"),
        ("end", "100"),
        ("step", "10"),
    ];
    let with = |k: &str, v: &str| -> Vec<(&str, String)> {
        base.iter()
            .map(|(bk, bv)| {
                (
                    *bk,
                    if *bk == k {
                        v.to_string()
                    } else {
                        bv.to_string()
                    },
                )
            })
            .collect()
    };
    let cases = [
        (
            with("start", "x"),
            "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp",
        ),
        (
            with("end", ""),
            "invalid parameter \"end\": cannot parse \"\" to a valid timestamp",
        ),
        (
            with("end", "-5"),
            "invalid parameter \"end\": end timestamp must not be before start time",
        ),
        (
            with("step", "1q"),
            "invalid parameter \"step\": cannot parse \"1q\" to a valid duration",
        ),
        (
            with("step", "0"),
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            with("step", "-3"),
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            with("end", "110010"),
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
    ];
    for (list, want) in cases {
        let list: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match decode(&list) {
            Err(Error::BadData(msg)) => assert_eq!(msg, want, "{list:?}"),
            other => panic!("{list:?}: expected bad_data, got {other:?}"),
        }
    }
    // Exactly 11,000 steps is allowed.
    assert!(
        decode(&[
            ("query", "up"),
            ("start", "0"),
            ("end", "110000"),
            ("step", "10")
        ])
        .is_ok()
    );
    let timeout = decode(&[
        ("query", "up"),
        ("start", "0"),
        ("end", "1"),
        ("step", "1"),
        ("timeout", "soon"),
    ]);
    assert!(
        matches!(timeout, Err(Error::BadData(m)) if m.starts_with("invalid parameter \"timeout\""))
    );
}

#[test]
fn form_pairs_body_before_url() {
    let p = form_pairs(
        Some("query=url&x=1"),
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        b"query=body%20q&start=1",
    );
    assert_eq!(p[0], ("query".to_string(), "body q".to_string()));
    assert_eq!(p[2], ("query".to_string(), "url".to_string()));
    let ignored = form_pairs(Some("a=1"), Some("application/json"), b"query=x");
    assert_eq!(ignored, pairs(&[("a", "1")]));
}

#[test]
fn query_parsing_follows_go() {
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("a=1&b=x+y%20z", &[("a", "1"), ("b", "x y z")]),
        ("a=1;b=2&c=3", &[("c", "3")]),
        ("a=%zz&b=2", &[("b", "2")]),
        ("a=%4&b=2", &[("b", "2")]),
        ("&&a&b=", &[("a", ""), ("b", "")]),
        ("k=v=w", &[("k", "v=w")]),
        ("q=%ff%fe", &[("q", "\u{fffd}\u{fffd}")]),
    ];
    for (input, want) in cases {
        assert_eq!(parse_query(input.as_bytes()), pairs(want), "{input}");
    }
}

#[test]
fn huge_ranges_do_not_overflow() {
    assert!(points_exceed_limit(i64::MIN / 2, i64::MAX / 2, 1));
    assert!(!points_exceed_limit(0, 0, 1));
}
