use super::*;

#[test]
fn durations_written_read_back_exactly() {
    // Found by the request fuzz target: 1914 ns was written as `0.000001914`, which
    // reads back as 1913 ns, so the querier got another step than the client sent.
    assert_eq!(format_seconds_ns(1914), "0.0000019145");
    assert_eq!(parse_duration_ns("0.0000019145"), Ok(1914));
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut values: Vec<i64> = (1..200_000).map(|ms| ms * 1_000_000).collect();
    values.extend((1..100_000).map(|ns| ns * 7 + 1));
    values.extend((0..100_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1_000_000_000_000_000) as i64
    }));
    for ns in values {
        assert_eq!(parse_duration_ns(&format_seconds_ns(ns)), Ok(ns), "{ns}");
    }
}

#[test]
fn timestamps() {
    let ok = [
        ("1700000000", 1_700_000_000_000),
        ("1700000000.123", 1_700_000_000_123),
        ("1700000000.1235", 1_700_000_000_124),
        ("1792921995.3", 1_792_921_995_300),
        ("-1.5", -1_500),
        ("-0.0015", -2),
        ("1e9", 1_000_000_000_000),
        ("1_796_000_000", 1_796_000_000_000),
        ("0x1p30", 1_073_741_824_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
        ("2023-11-14T23:13:20,5+01:00", 1_700_000_000_500),
        ("2023-11-15T22:13:20+24:00", 1_700_000_000_000),
        // The bounds of what Prometheus can evaluate (±2⁶³ ns).
        ("9223372036.854", 9_223_372_036_854),
        ("-9223372036.854", -9_223_372_036_854),
    ];
    for (s, want) in ok {
        assert_eq!(parse_timestamp_ms(s), Ok(want), "{s}");
    }
    for s in [
        "",
        "abc",
        "NaN",
        "inf",
        "-inf",
        "1e300",
        "1e400",
        "9223372036.855",
        "2023-13-01T00:00:00Z",
        "2023-11-14t22:13:20z",
        "2023-11-14 22:13:20Z",
        "2023-11-14T23:59:60Z",
        "2023-11-14T22:13:20.1234567890Z",
        "0000-01-01T00:00:00Z",
        // Prometheus reads its boundary times, but cannot evaluate them.
        "-292273086-05-16T16:47:06Z",
        "292277025-08-18T07:12:54.999999999Z",
    ] {
        let err = parse_timestamp_ms(s).expect_err(s);
        assert_eq!(
            err,
            format!("cannot parse {} to a valid timestamp", go_quote(s))
        );
    }
}

#[test]
fn times_beyond_the_range_still_compare_like_go() {
    // What Prometheus 2.42 answers for these is checked against the real binary in
    // the end-to-end tests; here the arithmetic behind it.
    let t = |s: &str| parse_time(s.as_bytes()).expect(s);
    let zero = t("0");
    assert!(t("NaN").before(zero), "NaN wraps around to the far past");
    assert_eq!(zero.sub_ns(t("NaN")), i64::MAX, "end - start saturates");
    assert!(t("NaN").before(t("1")));
    assert_eq!(t("Inf"), t("NaN"));
    assert_eq!(
        t("1e300"),
        t("-1e300"),
        "both convert to the smallest int64"
    );
    assert!(!t("0").before(t("1e300")));
    assert!(t("1e300").before(t("0")));
    assert_eq!(t("1e300").sub_ns(t("1e301")), 0);
    assert!(t("-292273086-05-16T16:47:06Z").before(t("0")));
    assert!(t("0").before(t("292277025-08-18T07:12:54.999999999Z")));
    assert!(parse_time(b"x").is_err());
}

#[test]
fn durations() {
    let ok = [
        ("15", 15_000_000_000),
        ("0.5", 500_000_000),
        ("-1", -1_000_000_000),
        ("0", 0),
        ("1_0", 10_000_000_000),
        ("0x1p4", 16_000_000_000),
        ("1e-400", 0),
        ("30s", 30_000_000_000),
        ("01s", 1_000_000_000),
        ("1m", 60_000_000_000),
        ("1h7m", 4_020_000_000_000),
        ("1h0m", 3_600_000_000_000),
        ("1d", 86_400_000_000_000),
        ("2w", 1_209_600_000_000_000),
        ("1y", 31_536_000_000_000_000),
        ("292y", 9_208_512_000_000_000_000),
        ("1s500ms", 1_500_000_000),
        ("250ms", 250_000_000),
        // Go converts NaN, and the one float that rounds to 2⁶³, to the smallest
        // int64: a negative step, refused as such.
        ("NaN", i64::MIN),
        ("9223372036.854775807", i64::MIN),
    ];
    for (s, want) in ok {
        assert_eq!(parse_duration_ns(s), Ok(want), "{s}");
    }
    for s in [
        "", "1x", "m", "1m1h", "1s1s", "1ms1s", "1.5m", "abc", "-1s", "+nan", "0x1", "10_", "_10",
        "1e400", "293y", "106752d", "1h1h", " 1s",
    ] {
        assert_eq!(
            parse_duration_ns(s),
            Err(format!("cannot parse {} to a valid duration", go_quote(s))),
            "{s}"
        );
    }
    for s in ["1e12", "Inf", "-infinity", "9223372037"] {
        assert_eq!(
            parse_duration_ns(s),
            Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            )),
            "{s}"
        );
    }
    assert_eq!(
        parse_duration(b"\xff"),
        Err(r#"cannot parse "\xff" to a valid duration"#.to_owned())
    );
    assert_eq!(
        parse_duration(b"1\x01s"),
        Err(r#"cannot parse "1\x01s" to a valid duration"#.to_owned())
    );
}

#[test]
fn formatting_is_exact() {
    assert_eq!(format_seconds_ms(1_792_921_995_300), "1792921995.3");
    assert_eq!(format_seconds_ms(1_700_000_000_000), "1700000000");
    assert_eq!(format_seconds_ms(1_700_000_000_001), "1700000000.001");
    assert_eq!(format_seconds_ms(-1_500), "-1.5");
    assert_eq!(format_seconds_ms(0), "0");
    assert_eq!(format_seconds_ns(30_000_000_000), "30");
    assert_eq!(format_seconds_ns(1_000), "0.000001");
    for ms in [1, 999, 1_000, 1_792_921_995_300, -7, 4_102_444_800_123] {
        assert_eq!(parse_timestamp_ms(&format_seconds_ms(ms)), Ok(ms), "{ms}");
    }
}
