//! Pure time and duration math, in integer milliseconds as Prometheus does it.
//!
//! Parsing follows Prometheus' HTTP API exactly: a timestamp is float Unix seconds
//! (rounded to the millisecond) or RFC 3339; a duration is float seconds or a Prometheus
//! duration string (`1h30m`, `15s`, `2d`). Formatting writes milliseconds back as decimal
//! seconds without float rounding (`1792921995.3`, never `1792921995.2999999`).
//! Go's own syntax rules, which Prometheus inherits, live in [`super::gotime`].

use crate::model::gotime::{self, GoTime};
use crate::quote::go_quote;

/// Milliseconds in a second.
pub const MS_PER_SECOND: i64 = 1_000;
/// Nanoseconds in a millisecond.
pub const NS_PER_MS: i64 = 1_000_000;

/// The timestamp Prometheus uses for "the beginning of time" (`minTime`), as accepted in
/// its RFC 3339 spelling by the API (Go's parser itself reads four-digit years only).
const MIN_TIME_FORMATTED: &[u8] = b"-292273086-05-16T16:47:06Z";
/// The timestamp Prometheus uses for "the end of time" (`maxTime`).
const MAX_TIME_FORMATTED: &[u8] = b"292277025-08-18T07:12:54.999999999Z";

/// Parses an API timestamp like Prometheus' `parseTime`: Go's float syntax first (Unix
/// seconds, the fraction rounded to the millisecond), then RFC 3339, then Prometheus' two
/// boundary times. Nonsense floats (`NaN`, `1e300`) are times too, as in Go: they wrap
/// around and fail the checks that follow (see [`GoTime`]).
///
/// Errors carry Prometheus' wording: `cannot parse "x" to a valid timestamp`.
pub fn parse_time(s: &[u8]) -> Result<GoTime, String> {
    if let Some(t) = gotime::parse_float(s) {
        let secs = t.trunc();
        let frac = ((t - secs) * 1000.0).round() / 1000.0;
        return Ok(GoTime::unix(
            gotime::f64_to_i64(secs),
            gotime::f64_to_i64(frac * 1e9),
        ));
    }
    if let Some(t) = gotime::parse_rfc3339_nano(s) {
        return Ok(t);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(GoTime::unix(i64::MIN / 1000 + 62_135_596_801, 0)),
        MAX_TIME_FORMATTED => Ok(GoTime::unix(i64::MAX / 1000 - 62_135_596_801, 999_999_999)),
        _ => Err(format!("cannot parse {} to a valid timestamp", go_quote(s))),
    }
}

/// Parses an API timestamp into Unix milliseconds: [`parse_time`], refusing a time
/// Prometheus cannot evaluate (see [`GoTime::unix_ms`]) with the same message.
pub fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    parse_time(s.as_bytes())?
        .unix_ms()
        .ok_or_else(|| format!("cannot parse {} to a valid timestamp", go_quote(s)))
}

/// Parses an API duration into nanoseconds (Go's `time.Duration`) like Prometheus'
/// `parseDuration`: Go's float syntax (seconds) first, then a Prometheus duration string.
/// A float beyond the `int64` range is refused; NaN, like any float Go cannot convert,
/// becomes the smallest `int64` (a negative duration), as on amd64.
///
/// Errors carry Prometheus' wording: `cannot parse "x" to a valid duration`.
pub fn parse_duration(s: &[u8]) -> Result<i64, String> {
    if let Some(d) = gotime::parse_float(s) {
        let ns = d * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            ));
        }
        return Ok(gotime::f64_to_i64(ns));
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(parse_prometheus_duration_ms)
        .and_then(|ms| ms.checked_mul(NS_PER_MS))
        .ok_or_else(|| format!("cannot parse {} to a valid duration", go_quote(s)))
}

/// [`parse_duration`] of a text parameter.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    parse_duration(s.as_bytes())
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
#[path = "time_tests.rs"]
mod tests;
