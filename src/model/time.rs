//! Pure time and duration math, in integer milliseconds as Prometheus does it.
//!
//! Parsing follows Prometheus' HTTP API exactly: a timestamp is float Unix seconds
//! (rounded to the millisecond) or RFC 3339; a duration is float seconds or a Prometheus
//! duration string (`1h30m`, `15s`, `2d`). Formatting writes milliseconds back as decimal
//! seconds without float rounding (`1792921995.3`, never `1792921995.2999999`).

/// Milliseconds in a second.
pub const MS_PER_SECOND: i64 = 1_000;
/// Nanoseconds in a millisecond.
pub const NS_PER_MS: i64 = 1_000_000;

/// The timestamp Prometheus uses for "the beginning of time" (`minTime`), as accepted in
/// its RFC 3339 spelling by the API.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
/// The timestamp Prometheus uses for "the end of time" (`maxTime`).
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";
/// `minTime` in milliseconds.
const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// `maxTime` in milliseconds.
const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;

/// Parses an API timestamp into Unix milliseconds.
///
/// Errors carry Prometheus' wording: `cannot parse "x" to a valid timestamp`.
pub fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(t) = s.parse::<f64>() {
        if !t.is_finite() {
            return Err(invalid());
        }
        let secs = t.trunc();
        let frac_ms = (t.fract() * 1000.0).round();
        // i64 milliseconds cover ±292 million years; anything beyond is not a time.
        if secs.abs() >= 9.0e15 {
            return Err(invalid());
        }
        return Ok(secs as i64 * MS_PER_SECOND + frac_ms as i64);
    }
    match s {
        MIN_TIME_FORMATTED => return Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => return Ok(MAX_TIME_MS),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| invalid())
}

/// Parses an API duration into nanoseconds (Go's `time.Duration`).
///
/// Errors carry Prometheus' wording: `cannot parse "x" to a valid duration`.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    if let Ok(d) = s.parse::<f64>() {
        if d.is_nan() {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        let ns = d * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    parse_prometheus_duration_ms(s)
        .and_then(|ms| ms.checked_mul(NS_PER_MS))
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Parses a Prometheus duration string (`1y2w3d4h5m6s7ms`, units in that order, each at
/// most once, or `0`) into milliseconds. `None` when it is not one.
pub fn parse_prometheus_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    // Units in the only order Prometheus accepts them.
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, unit_len) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, _))| (i, u.len()))
            .max_by_key(|&(_, len)| len)?;
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
        next_unit = idx + 1;
    }
    Some(total)
}

/// Writes Unix milliseconds as decimal seconds: `1700000000`, `1700000000.5`,
/// `-1.25`. Exact: no float is involved.
pub fn format_seconds_ms(ms: i64) -> String {
    format_fixed(ms as i128, 3)
}

/// Writes a nanosecond duration as decimal seconds (`30`, `0.5`, `0.000001`).
///
/// The text reads back as exactly `ns` through [`parse_duration_ns`] (as through
/// Prometheus, which parses the same way): `d × 1e9` in floating point can land just
/// below an integer and truncate one nanosecond short (`0.000001914` reads as 1913 ns),
/// so such a value is written half a nanosecond further from zero (`0.0000019145`).
pub fn format_seconds_ns(ns: i64) -> String {
    let exact = format_fixed(ns as i128, 9);
    if parse_duration_ns(&exact) == Ok(ns) {
        return exact;
    }
    let sign = if ns < 0 { -1 } else { 1 };
    for tenths in [5, 9] {
        let candidate = format_fixed(ns as i128 * 10 + sign * tenths, 10);
        if parse_duration_ns(&candidate) == Ok(ns) {
            return candidate;
        }
    }
    exact
}

fn format_fixed(v: i128, decimals: u32) -> String {
    let scale = 10i128.pow(decimals);
    let sign = if v < 0 { "-" } else { "" };
    let abs = v.abs();
    let (whole, frac) = (abs / scale, abs % scale);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:0width$}", width = decimals as usize);
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
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
            ("1e9", 1_000_000_000_000),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),
            ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
            (MIN_TIME_FORMATTED, MIN_TIME_MS),
            (MAX_TIME_FORMATTED, MAX_TIME_MS),
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
            "2023-13-01T00:00:00Z",
        ] {
            let err = parse_timestamp_ms(s).expect_err(s);
            assert_eq!(err, format!("cannot parse {s:?} to a valid timestamp"));
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("15", 15_000_000_000),
            ("0.5", 500_000_000),
            ("-1", -1_000_000_000),
            ("0", 0),
            ("30s", 30_000_000_000),
            ("1m", 60_000_000_000),
            ("1h7m", 4_020_000_000_000),
            ("1d", 86_400_000_000_000),
            ("2w", 1_209_600_000_000_000),
            ("1y", 31_536_000_000_000_000),
            ("1s500ms", 1_500_000_000),
            ("250ms", 250_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration_ns(s), Ok(want), "{s}");
        }
        for s in ["", "1x", "m", "1m1h", "1s1s", "1.5m", "abc", "NaN"] {
            assert!(parse_duration_ns(s).is_err(), "{s} should be rejected");
        }
        assert!(
            parse_duration_ns("1e12")
                .expect_err("overflow")
                .contains("overflows int64")
        );
        assert!(parse_duration_ns("300y").is_err(), "overflow of ns");
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
}
