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
    assert_eq!(p[0], ("query".to_string(), b"body q".to_vec()));
    assert_eq!(p[2], ("query".to_string(), b"url".to_vec()));
    let ignored = form_pairs(Some("a=1"), Some("application/json"), b"query=x");
    assert_eq!(ignored, vec![("a".to_string(), b"1".to_vec())]);
}

#[test]
fn query_parsing_follows_go() {
    let cases: [(&str, &[(&str, &str)]); 8] = [
        ("a=1&b=x+y%20z", &[("a", "1"), ("b", "x y z")]),
        ("a=%41%42c++d&b=%&c=x%2", &[("a", "ABc  d")]),
        ("sum%28up%29=%7B%7D&t=1", &[("sum(up)", "{}"), ("t", "1")]),
        ("a=1;b=2&c=3", &[("c", "3")]),
        ("a=%zz&b=2", &[("b", "2")]),
        ("a=%4&b=2", &[("b", "2")]),
        ("&&a&b=", &[("a", ""), ("b", "")]),
        ("k=v=w", &[("k", "v=w")]),
    ];
    let bytes = |list: Vec<(String, String)>| -> FormPairs {
        list.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
    };
    for (input, want) in cases {
        assert_eq!(parse_query(input.as_bytes()), bytes(pairs(want)), "{input}");
    }
    // Values keep bytes that are not UTF-8, as Go's strings do; names do not.
    assert_eq!(
        parse_query(b"q=%ff%fe&%ff=1"),
        vec![
            ("q".to_owned(), vec![0xff, 0xfe]),
            ("\u{fffd}".to_owned(), b"1".to_vec())
        ]
    );
}

/// Each expected message is what Prometheus 2.42 answers for the same parameters.
#[test]
fn checks_run_in_prometheus_order_for_nonsense_values() {
    let points = "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)";
    let before = "invalid parameter \"end\": end timestamp must not be before start time";
    let step = "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer";
    let cases: &[(&str, &str, &str, &str)] = &[
        ("NaN", "60", "15", points),
        ("Inf", "60", "15", points),
        ("-Inf", "60", "15", points),
        ("1e300", "0", "15", points),
        ("0000-01-01T00:00:00Z", "1796003600", "60", points),
        ("0", "NaN", "15", before),
        ("0", "Inf", "15", before),
        ("0", "1e300", "15", before),
        ("0", "60", "NaN", step),
        ("0", "60", "9223372036.854775807", step),
        ("0", "60", "1e-400", step),
        ("9223371974719179776", "9223371974719178752", "15", points),
    ];
    for (start, end, step_value, want) in cases {
        let got = decode(&[
            ("query", "up"),
            ("start", start),
            ("end", end),
            ("step", step_value),
        ]);
        match got {
            Err(Error::BadData(msg)) => assert_eq!(&msg, want, "{start} {end} {step_value}"),
            other => panic!("{start} {end} {step_value}: expected bad_data, got {other:?}"),
        }
    }
    // Go accepts these, and so does the frontend.
    let q = decode(&[
        ("query", "up"),
        ("start", "1_796_000_000"),
        ("end", "2026-12-01T11:00:00+24:00"),
        ("step", "0x1p4"),
    ])
    .expect("Go's syntax");
    assert_eq!(
        (q.start_ms, q.end_ms, q.step_ns),
        (1_796_000_000_000, 1_796_036_400_000, 16_000_000_000)
    );
    // Times Prometheus reads but cannot evaluate pass its checks and are then refused.
    for (start, end) in [("1e300", "1e301"), ("NaN", "NaN"), ("9.3e9", "9.3e9")] {
        match decode(&[
            ("query", "up"),
            ("start", start),
            ("end", end),
            ("step", "15"),
        ]) {
            Err(Error::BadData(msg)) => assert_eq!(
                msg,
                format!(
                    "invalid parameter \"start\": \"{start}\" is beyond the times Prometheus can evaluate (±2^63 ns around 1970)"
                )
            ),
            other => panic!("{start}: expected bad_data, got {other:?}"),
        }
    }
}

/// Values are quoted in messages as Go's `%q` quotes them (each case checked against
/// Prometheus 2.42); the bytes are the value after URL decoding.
#[test]
fn messages_quote_values_like_go() {
    let cases: &[(&[u8], &str)] = &[
        (b"x\x01", r#""x\x01""#),
        (b"\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
        (b"\xc2\x80", r#""\u0080""#),
        (b"\xe2\x80\x8b", r#""\u200b""#),
        (b"\xff", r#""\xff""#),
        (b"e\xcc\x81", "\"e\u{301}\""),
        (b"\xc2\xa0", r#""\u00a0""#),
        (b"\xf3\xa0\x80\x81", r#""\U000e0001""#),
        (b"\xef\xbb\xbf", r#""\ufeff""#),
        (b"\"\\", r#""\"\\""#),
        (b"\x7f", r#""\x7f""#),
        (b"\xe2\x80\xa8", r#""\u2028""#),
        (b"\xf0\x9f\x98\x80", "\"\u{1f600}\""),
        (b"\xed\xa0\x80", r#""\xed\xa0\x80""#),
        (b"\xe2\x80", r#""\xe2\x80""#),
        (b"<&>", r#""<&>""#),
        (b"\xee\x80\x80", r#""\ue000""#),
        (b"\xc2\xad", r#""\u00ad""#),
        (b"\xf3\xb0\x80\x80", r#""\U000f0000""#),
        (b"\xef\xbf\xbd", "\"\u{fffd}\""),
    ];
    for (value, quoted) in cases {
        for name in ["start", "step", "timeout"] {
            let mut list: Vec<(String, Vec<u8>)> = [
                ("query", &b"up"[..]),
                ("start", b"0"),
                ("end", b"60"),
                ("step", b"15"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
            list.retain(|(k, _)| k != name);
            list.push((name.to_string(), value.to_vec()));
            let what = if name == "start" {
                "timestamp"
            } else {
                "duration"
            };
            match RangeQuery::from_form(list, HeaderMap::new()) {
                Err(Error::BadData(msg)) => assert_eq!(
                    msg,
                    format!(
                        "invalid parameter \"{name}\": cannot parse {quoted} to a valid {what}"
                    )
                ),
                other => panic!("{name}={value:?}: expected bad_data, got {other:?}"),
            }
        }
    }
}

/// Prometheus checks an instant query's `time`, then its `timeout` (messages from
/// Prometheus 2.42).
#[test]
fn instant_queries_check_time_then_timeout() {
    let check = |list: &[(&str, &str)]| check_instant_query(&pairs(list));
    assert!(check(&[("query", "up")]).is_ok());
    assert!(check(&[("query", "up"), ("time", ""), ("timeout", "")]).is_ok());
    for timeout in ["10s", "1_0", "0x1p4", "-1", "0", "NaN"] {
        assert!(
            check(&[("time", "1796078115"), ("timeout", timeout)]).is_ok(),
            "{timeout}"
        );
    }
    let cases = [
        (
            vec![("time", "x"), ("timeout", "xx")],
            r#"invalid parameter "time": Invalid time value for 'time': cannot parse "x" to a valid timestamp"#,
        ),
        (
            vec![("query", "sum("), ("timeout", "xx")],
            r#"invalid parameter "timeout": cannot parse "xx" to a valid duration"#,
        ),
        (
            vec![("timeout", "-1s")],
            r#"invalid parameter "timeout": cannot parse "-1s" to a valid duration"#,
        ),
        (
            vec![("timeout", "Inf")],
            r#"invalid parameter "timeout": cannot parse "Inf" to a valid duration. It overflows int64"#,
        ),
    ];
    for (list, want) in cases {
        match check(&list) {
            Err(Error::BadData(msg)) => assert_eq!(msg, want, "{list:?}"),
            other => panic!("{list:?}: expected bad_data, got {other:?}"),
        }
    }
}

#[test]
fn borrowed_pairs_are_the_parsed_pairs_and_borrow_what_needs_no_decoding() {
    let inputs: [&[u8]; 9] = [
        b"query=sum(up)&time=1700000000",
        b"a=1;b=2&c=3",
        b"&&a&b=&=x&",
        b"k=v=w&k2==",
        b"a=%zz&b=%4&c=%41+%42",
        b"q%75ery=x&time+=1",
        b"q=%ff%fe&%ff=1&\xff=2",
        b"",
        b"match%5B%5D=up&match[]=down",
    ];
    for form in inputs {
        for query in [None, Some("x=1&query=y"), Some("")] {
            let borrowed: FormPairs = borrowed_pairs(query, form)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(
                borrowed,
                query_pairs(query, form),
                "{:?} {query:?}",
                String::from_utf8_lossy(form)
            );
        }
    }
    let pairs = borrowed_pairs(Some("query=sum(up)&t=a+b"), b"");
    assert!(matches!(pairs[0].0, std::borrow::Cow::Borrowed("query")));
    assert!(matches!(pairs[0].1, std::borrow::Cow::Borrowed(b"sum(up)")));
    assert!(matches!(&pairs[1].1, std::borrow::Cow::Owned(v) if v == b"a b"));
}
