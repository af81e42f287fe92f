//! The parts of Go's standard library that decide how Prometheus reads times and
//! durations, rebuilt so the frontend accepts and refuses exactly what the querier does:
//! `strconv.ParseFloat` (its syntax: signs, `_` digit separators, hexadecimal
//! mantissas with a `p` exponent, `inf`/`infinity`/`nan`), `time.Parse` with the
//! RFC 3339 layout Prometheus uses, and `time.Time`'s seconds arithmetic, integer
//! wrap-around included, so that even nonsense times (`NaN`, `1e300`) fail Prometheus'
//! checks in the same order with the same messages.
//!
//! Where Go's behaviour depends on the platform (a float outside the `int64` range
//! converted to an integer), the amd64 result is used, as the querier the tests compare
//! with runs there. Where it changed between Go releases, the behaviour of Prometheus
//! 2.42's release (Go 1.19) is kept: at most nine digits of fractional seconds, and
//! `Time.Add` saturating instead of wrapping.

/// Seconds from 0001-01-01 (Go's internal epoch) to 1970-01-01.
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;
/// Nanoseconds in a second.
const NS_PER_S: i64 = 1_000_000_000;

/// A point in time as Go's `time.Time` holds it (without a monotonic reading): whole
/// seconds since 0001-01-01 UTC, with Go's integer wrap-around, and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoTime {
    sec: i64,
    nsec: u32,
}

impl GoTime {
    /// Go's `time.Unix(sec, nsec)`, wrap-around included.
    pub fn unix(sec: i64, nsec: i64) -> GoTime {
        let (mut sec, mut nsec) = (sec, nsec);
        if !(0..NS_PER_S).contains(&nsec) {
            let n = nsec / NS_PER_S;
            sec = sec.wrapping_add(n);
            nsec -= n * NS_PER_S;
            if nsec < 0 {
                nsec += NS_PER_S;
                sec = sec.wrapping_sub(1);
            }
        }
        GoTime {
            sec: sec.wrapping_add(UNIX_TO_INTERNAL),
            nsec: nsec as u32,
        }
    }

    /// Go's `Time.Before`.
    pub fn before(self, other: GoTime) -> bool {
        self.sec < other.sec || (self.sec == other.sec && self.nsec < other.nsec)
    }

    /// Go's `Time.Sub`: `self - other` in nanoseconds, saturating at the `int64` bounds.
    pub fn sub_ns(self, other: GoTime) -> i64 {
        let d = self
            .sec
            .wrapping_sub(other.sec)
            .wrapping_mul(NS_PER_S)
            .wrapping_add(i64::from(self.nsec) - i64::from(other.nsec));
        if other.add(d) == self {
            d
        } else if self.before(other) {
            i64::MIN
        } else {
            i64::MAX
        }
    }

    /// Go's `Time.Add` (Go 1.19: the seconds saturate instead of wrapping).
    fn add(self, d: i64) -> GoTime {
        let mut dsec = d / NS_PER_S;
        let mut nsec = i64::from(self.nsec) + d % NS_PER_S;
        if nsec >= NS_PER_S {
            dsec += 1;
            nsec -= NS_PER_S;
        } else if nsec < 0 {
            dsec -= 1;
            nsec += NS_PER_S;
        }
        let sum = self.sec.wrapping_add(dsec);
        let sec = if (sum > self.sec) == (dsec > 0) {
            sum
        } else if dsec > 0 {
            i64::MAX
        } else {
            -i64::MAX
        };
        GoTime {
            sec,
            nsec: nsec as u32,
        }
    }

    /// Unix milliseconds, as Prometheus' `timestamp.FromTime` computes them, when the
    /// time is one Prometheus can evaluate: within ±2⁶³ ns of 1970 (1677 to 2262), where
    /// its engine's nanosecond arithmetic does not overflow. `None` beyond.
    pub fn unix_ms(self) -> Option<i64> {
        let unix = self.sec.wrapping_sub(UNIX_TO_INTERNAL);
        let ms = unix
            .checked_mul(1_000)?
            .checked_add(i64::from(self.nsec) / 1_000_000)?;
        ms.checked_mul(1_000_000).map(|_| ms)
    }
}

/// Go's conversion of a float to `int64` on amd64: truncation toward zero, and the
/// smallest `int64` for NaN and for values outside the range.
pub fn f64_to_i64(f: f64) -> i64 {
    // 2⁶³ is exactly representable; everything at or above it is out of range.
    if f.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: the value when Go returns no error. A value too
/// large for a float is an error in Go (`ErrRange`), so it is `None` here too.
pub fn parse_float(s: &[u8]) -> Option<f64> {
    short_decimal(s).or_else(|| parse_float_any(s))
}

/// The common case of an API timestamp or duration, digits with at most one `.` and at
/// most 15 digits in all (`1764690000`, `1764690000.123`): the digits as an integer
/// divided by a power of ten. Both are exact in a float and IEEE division rounds
/// correctly, so this is the correctly rounded value, Go's. Anything else: `None`.
fn short_decimal(s: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (mut mantissa, mut digits, mut point) = (0u64, 0usize, None);
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
        if digits > 15 {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    let fraction_digits = point.map_or(0, |p| s.len() - p - 1);
    Some(mantissa as f64 / POW10[fraction_digits])
}

/// [`parse_float`] for every syntax Go takes.
fn parse_float_any(s: &[u8]) -> Option<f64> {
    if let Some(special) = parse_special(s) {
        return Some(special);
    }
    let (neg, body) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let hex = body.len() > 2 && body[0] == b'0' && body[1].eq_ignore_ascii_case(&b'x');
    let float = if hex {
        parse_hex_body(&body[2..])
    } else {
        parse_decimal_body(body)
    }?;
    if float.is_infinite() || !underscores_ok(s) {
        return None;
    }
    Some(if neg { -float } else { float })
}

/// `inf`, `infinity` (either with a sign) and `nan` (without), in any case.
fn parse_special(s: &[u8]) -> Option<f64> {
    let (sign, rest) = match s.first() {
        Some(b'+') => (1.0, &s[1..]),
        Some(b'-') => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return Some(sign * f64::INFINITY);
    }
    (rest.len() == s.len() && s.eq_ignore_ascii_case(b"nan")).then_some(f64::NAN)
}

/// A decimal mantissa with an optional exponent, `_` anywhere (checked afterwards).
fn parse_decimal_body(body: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut digits = 0;
    let mut dot = false;
    while i < body.len() {
        match body[i] {
            b'_' => {}
            b'.' if !dot => dot = true,
            b'0'..=b'9' => digits += 1,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < body.len() && body[i].eq_ignore_ascii_case(&b'e') {
        i = exponent_end(body, i + 1)?;
    }
    if i != body.len() {
        return None;
    }
    let plain: String = body
        .iter()
        .filter(|&&b| b != b'_')
        .map(|&b| b as char)
        .collect();
    plain.parse::<f64>().ok()
}

/// The end of an exponent's digits starting at `i` (after the `e` or `p`): an optional
/// sign, then a digit, then digits and `_`.
fn exponent_end(body: &[u8], mut i: usize) -> Option<usize> {
    if matches!(body.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    if !body.get(i)?.is_ascii_digit() {
        return None;
    }
    while i < body.len() && (body[i].is_ascii_digit() || body[i] == b'_') {
        i += 1;
    }
    Some(i)
}

/// A hexadecimal mantissa (after `0x`) and its required binary exponent, rounded to
/// the nearest float (ties to even) as Go does.
fn parse_hex_body(body: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut mantissa: u64 = 0;
    // Binary exponent to apply to `mantissa`; digits beyond 60 bits only leave a
    // sticky bit (they cannot change the rounding otherwise).
    let mut exp: i64 = 0;
    let mut sticky = false;
    let mut digits = 0;
    let mut dot = false;
    while i < body.len() {
        let b = body[i];
        match b {
            b'_' => {}
            b'.' if !dot => dot = true,
            _ => {
                let Some(d) = (b as char).to_digit(16) else {
                    break;
                };
                digits += 1;
                if mantissa >> 56 == 0 {
                    mantissa = mantissa << 4 | u64::from(d);
                    if dot {
                        exp -= 4;
                    }
                } else {
                    sticky |= d != 0;
                    if !dot {
                        exp += 4;
                    }
                }
            }
        }
        i += 1;
    }
    if digits == 0 || i >= body.len() || !body[i].eq_ignore_ascii_case(&b'p') {
        return None;
    }
    let end = exponent_end(body, i + 1)?;
    if end != body.len() {
        return None;
    }
    let text: String = body[i + 1..end]
        .iter()
        .filter(|&&b| b != b'_')
        .map(|&b| b as char)
        .collect();
    // Go stops counting an exponent at 10,000, which is already out of range.
    let e: i64 = text
        .trim_start_matches('+')
        .parse::<i64>()
        .unwrap_or(if text.starts_with('-') {
            -10_000
        } else {
            10_000
        })
        .clamp(-10_000, 10_000);
    Some(round_binary(mantissa, sticky, exp + e))
}

/// `mantissa × 2^exp` (with `sticky` standing for non-zero bits below the mantissa)
/// rounded to the nearest float, ties to even, with subnormals and overflow to ∞.
fn round_binary(mantissa: u64, sticky: bool, exp: i64) -> f64 {
    if mantissa == 0 {
        return 0.0;
    }
    // Normalise to a 64-bit mantissa with its top bit set: value = m × 2^(e - 63).
    let shift = mantissa.leading_zeros();
    let m = mantissa << shift;
    let e = exp - i64::from(shift) + 63;
    // Bits of precision available: 53 for a normal float, fewer for a subnormal.
    let precision = if e >= -1022 { 53 } else { 53 - (-1022 - e) };
    if precision <= 0 {
        // Below half the smallest subnormal (or exactly half with nothing more: ties
        // to even, which is zero).
        let half_smallest = precision == 0 && (m << 1 != 0 || sticky);
        return if half_smallest {
            f64::from_bits(1)
        } else {
            0.0
        };
    }
    let drop = 64 - precision as u32;
    let kept = m >> drop;
    let rest = m << (64 - drop);
    let half = 1u64 << 63;
    let round_up = rest > half || (rest == half && (sticky || kept & 1 == 1));
    let rounded = kept + u64::from(round_up);
    // `rounded` has `precision` bits, or one more when rounding carried over.
    let value_exp = e - (precision - 1);
    let (rounded, value_exp) = if rounded >> precision != 0 {
        (rounded >> 1, value_exp + 1)
    } else {
        (rounded, value_exp)
    };
    if value_exp + (precision - 1) > 1023 {
        return f64::INFINITY;
    }
    // Exact: `rounded` fits in 53 bits and the power of two is within range, applied
    // in two steps so neither factor over- or underflows.
    let half_exp = value_exp / 2;
    rounded as f64 * 2f64.powi(half_exp as i32) * 2f64.powi((value_exp - half_exp) as i32)
}

/// Go's rule for `_` in numbers: only between digits, or between a base prefix and a
/// digit.
fn underscores_ok(s: &[u8]) -> bool {
    if !s.contains(&b'_') {
        return true;
    }
    let s = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    // What came last: '^' start, '0' a digit or base prefix, '_', '!' anything else.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &b in &s[i..] {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            saw = b'0';
        } else if b == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `time.Parse(time.RFC3339Nano, s)` as Go 1.19 reads it: a four-digit year,
/// two-digit month, day, minute and second, a one- or two-digit hour, an upper-case `T`,
/// up to nine fractional digits after `.` or `,`, and `Z` or a `±hh:mm` offset (any two
/// digits each). Nothing may follow.
pub fn parse_rfc3339_nano(s: &[u8]) -> Option<GoTime> {
    let mut p = Cursor { s, i: 0 };
    let year = p.digits(4)?;
    p.literal(b'-')?;
    let month = p.digits(2)?;
    p.literal(b'-')?;
    let day = p.digits(2)?;
    p.literal(b'T')?;
    let hour = match p.digits(2) {
        Some(h) => h,
        None => p.digits(1)?,
    };
    p.literal(b':')?;
    let minute = p.digits(2)?;
    p.literal(b':')?;
    let second = p.digits(2)?;
    let mut nanos = 0;
    if matches!(p.peek(), Some(b'.' | b',')) && p.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        p.i += 1;
        let mut n = 0;
        while n < 9 && p.peek().is_some_and(|b| b.is_ascii_digit()) {
            nanos = nanos * 10 + i64::from(p.s[p.i] - b'0');
            p.i += 1;
            n += 1;
        }
        nanos *= 10i64.pow(9 - n);
    }
    let offset = match p.peek() {
        Some(b'Z') => {
            p.i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            p.i += 1;
            let h = p.digits(2)?;
            p.literal(b':')?;
            let m = p.digits(2)?;
            let offset = h * 3_600 + m * 60;
            if sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    if p.i != s.len()
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour >= 24
        || minute >= 60
        || second >= 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    Some(GoTime::unix(unix, nanos))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.i + ahead).copied()
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let digits = self.s.get(self.i..self.i + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    fn literal(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "gotime_tests.rs"]
mod tests;
