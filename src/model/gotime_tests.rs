use super::*;

/// Go's float literal syntax as `strconv.ParseFloat` documents it: decimal and
/// hexadecimal mantissas, `_` only between digits (or after a base prefix), the
/// special values. Values compared bit for bit.
#[test]
fn parse_float_follows_go_syntax() {
    let ok: &[(&str, f64)] = &[
        ("0", 0.0),
        ("+1", 1.0),
        ("-1.5", -1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("1.e2", 100.0),
        ("1e9", 1e9),
        ("1E+9", 1e9),
        ("1e-3", 0.001),
        ("01796000000", 1_796_000_000.0),
        ("1_796_000_000", 1_796_000_000.0),
        ("1796_000_000.", 1_796_000_000.0),
        ("1796000000.5_0", 1_796_000_000.5),
        ("0_1", 1.0),
        ("1e1_0", 1e10),
        ("0x1p4", 16.0),
        ("0X1P-2", 0.25),
        ("0x_1p4", 16.0),
        ("0x1.8p1", 3.0),
        ("0x.8p1", 1.0),
        ("0x6B0D1F00p0", 1_796_022_016.0),
        ("0x1p1_0", 1024.0),
        ("-0x1p-1074", -f64::from_bits(1)),
        ("0x1p-1075", 0.0),
        ("0x1.0000000000001p-1075", f64::from_bits(1)),
        ("0x1fffffffffffffp0", 9_007_199_254_740_991.0),
        ("0x20000000000001p0", 9_007_199_254_740_992.0),
        ("0x20000000000003p0", 9_007_199_254_740_996.0),
        ("0x200000000000010000000001p-40", 9_007_199_254_740_994.0),
        ("0x1.fffffffffffffp1023", f64::MAX),
        ("1e-400", 0.0),
        ("inf", f64::INFINITY),
        ("+Inf", f64::INFINITY),
        ("-infinity", f64::NEG_INFINITY),
        ("INFINITY", f64::INFINITY),
    ];
    for (s, want) in ok {
        let got = parse_float(s.as_bytes());
        assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{s}: {got:?}");
    }
    for s in ["nan", "NaN", "NAN"] {
        assert!(parse_float(s.as_bytes()).is_some_and(f64::is_nan), "{s}");
    }
    let refused = [
        "", "+", "-", ".", "e5", "1e", "1e+", "1e_5", "1_e9", "_1", "1_", "1__0", "1.5.5", "0x",
        "0x1", "0xp1", "0x1p", "0x1.8", "0b101", "0o17", "+nan", "-nan", "nanx", "infin", "infx",
        " 1", "1 ", "1e400", "0x1p1024", "١", "1,5",
    ];
    for s in refused {
        assert_eq!(parse_float(s.as_bytes()), None, "{s:?}");
    }
    assert_eq!(parse_float(b"\xff"), None);
}

/// `time.Parse(time.RFC3339Nano, s)` as Prometheus 2.42's Go reads it; each case was
/// checked against the real binary.
#[test]
fn rfc3339_follows_go() {
    let ms = |s: &str| parse_rfc3339_nano(s.as_bytes()).and_then(GoTime::unix_ms);
    let ok = [
        ("2026-11-30T00:00:00Z", 1_795_996_800_000),
        ("2026-11-30T00:00:00.5Z", 1_795_996_800_500),
        ("2026-11-30T00:00:00,5Z", 1_795_996_800_500),
        ("2026-11-30T00:00:00.123456789Z", 1_795_996_800_123),
        ("2026-11-30T00:00:00.5+01:00", 1_795_993_200_500),
        ("2026-11-30T7:00:00Z", 1_796_022_000_000),
        ("2026-11-29T00:00:00+24:00", 1_795_824_000_000),
        ("2026-11-29T00:00:00+23:60", 1_795_824_000_000),
        ("2026-11-29T23:00:00+99:99", 1_795_630_860_000),
        ("2026-11-29T00:00:00-00:00", 1_795_910_400_000),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("1970-01-01T00:00:00Z", 0),
    ];
    for (s, want) in ok {
        assert_eq!(ms(s), Some(want), "{s}");
    }
    let refused = [
        "2026-11-30t00:00:00z",
        "2026-11-30 00:00:00Z",
        "2026-11-30T00:00:00z",
        "2026-11-30T23:59:60Z",
        "2026-11-30T24:00:00Z",
        "2026-11-30T00:60:00Z",
        "2026-11-30T00:00:00.1234567890Z",
        "2026-11-30T00:00:00.0000000001Z",
        "2026-11-30T00:00:00.Z",
        "2026-11-30T00:00:00.a5Z",
        "2026-11-30T00:00:00.5",
        "2026-11-30T00:00:00",
        "2026-11-30T00:00Z",
        "2026-11-30T00:0:00Z",
        "2026-11-30T00:00:0Z",
        "2026-1-30T00:00:00Z",
        "2026-11-3T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-13-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "20261-01-01T00:00:00Z",
        "2026-11-30T00:00:00ZZ",
        "2026-11-29T23:00:00+2:00",
        "2026-11-29T23:00:00+0200",
        "2026-11-29T23:00:00+02:0",
        "2026-11-29T23:00:00+02:00:00",
        "-292273086-05-16T16:47:06Z",
    ];
    for s in refused {
        assert_eq!(parse_rfc3339_nano(s.as_bytes()), None, "{s}");
    }
    // Year 0 parses (a leap year), though Prometheus cannot evaluate it.
    let year0 = parse_rfc3339_nano(b"0000-02-29T00:00:00Z").expect("year 0");
    assert_eq!(year0.unix_ms(), None);
}

#[test]
fn float_to_int_conversion_is_amd64s() {
    assert_eq!(f64_to_i64(1.9), 1);
    assert_eq!(f64_to_i64(-1.9), -1);
    assert_eq!(f64_to_i64(-9_223_372_036_854_775_808.0), i64::MIN);
    for f in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        -1e300,
        9.3e18,
    ] {
        assert_eq!(f64_to_i64(f), i64::MIN, "{f}");
    }
}

/// `Time.Before` and `Time.Sub` over wrapped-around seconds: the cases behind what
/// Prometheus answers for nonsense times (checked against the real binary).
#[test]
fn time_arithmetic_wraps_and_saturates_like_go() {
    let from_float = |t: f64| GoTime::unix(f64_to_i64(t.trunc()), f64_to_i64(t.fract() * 1e9));
    let nan = from_float(f64::NAN);
    let zero = GoTime::unix(0, 0);
    // NaN lands in the far past: `start=NaN` exceeds the points limit, `end=NaN` is
    // before any start.
    assert!(nan.before(zero));
    assert_eq!(zero.sub_ns(nan), i64::MAX);
    assert_eq!(nan.sub_ns(nan), 0);
    // Both of these wrap to just above and just below the `int64` range of seconds:
    // the difference in wrapped seconds is tiny, but `Add` saturates, so `Sub` does too
    // (Prometheus 2.42: "exceeded maximum resolution").
    let start = from_float(9_223_371_974_719_179_776.0);
    let end = from_float(9_223_371_974_719_178_752.0);
    assert!(!end.before(start));
    assert_eq!(end.sub_ns(start), i64::MAX);
    // Ordinary times.
    let a = GoTime::unix(1_796_000_000, 500_000_000);
    let b = GoTime::unix(1_796_003_600, 0);
    assert_eq!(b.sub_ns(a), 3_599_500_000_000);
    assert_eq!(a.sub_ns(b), -3_599_500_000_000);
    assert!(a.before(b) && !b.before(a) && !a.before(a));
    // Normalisation of negative nanoseconds, as `time.Unix` does it.
    assert_eq!(GoTime::unix(-1, -500_000_000).unix_ms(), Some(-1_500));
    assert_eq!(GoTime::unix(0, 1_500_000_000).unix_ms(), Some(1_500));
}

#[test]
fn short_decimals_parse_as_the_full_parser_parses_them() {
    use proptest::prelude::*;
    let short = |s: &str| super::short_decimal(s.as_bytes());
    let full = |s: &str| super::parse_float_any(s.as_bytes());
    for s in [
        "0",
        "1764690000",
        "1764690000.123",
        "000.5",
        "1.",
        ".5",
        "0.1",
        "999999999999999",
        "0.00000000000001",
        "123456789.01234",
    ] {
        assert_eq!(short(s), full(s), "{s}");
        assert!(short(s).is_some(), "{s}");
    }
    // Not short: left to the full parser.
    for s in [
        "",
        ".",
        "1e3",
        "-1",
        "+1",
        "1_000",
        "0x10",
        "1.2.3",
        "1234567890123456",
        "0.000000000000001",
        "inf",
    ] {
        assert_eq!(short(s), None, "{s}");
    }
    proptest!(ProptestConfig::with_cases(4000), |(m in 0u64..1_000_000_000_000_000, point in 0usize..16)| {
        let digits = m.to_string();
        let text = if point >= digits.len() {
            digits
        } else {
            format!("{}.{}", &digits[..digits.len() - point], &digits[digits.len() - point..])
        };
        prop_assert_eq!(short(&text), full(&text), "{}", text);
    });
}
