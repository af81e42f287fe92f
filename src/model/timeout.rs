//! The client's `timeout` parameter: what the querier is told on each attempt, and how
//! long the frontend itself waits.
//!
//! Prometheus bounds a query's evaluation by the client's `timeout` and answers with its
//! own error when it runs out (503 `timeout`, or 422 `execution` for some expressions),
//! and a query that finishes a little late may still succeed. So the querier is given
//! the client's own value and decides; the frontend waits longer, as a backstop for a
//! querier that does not answer: [`backstop_margin`] beyond the timeout.
//!
//! An attempt is told the client's value as written while less than [`AS_WRITTEN_FOR`] of
//! it is spent (the frontend's own work and a busy machine take some milliseconds, and
//! the backstop margin covers that much), the time left after that (a retry, or a part of
//! a query that waited for its turn), and never more than the frontend waits for that
//! attempt.

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::time::parse_duration;

/// How much of the client's timeout may be spent before an attempt is told the time left
/// instead of the client's own value: far less than [`MIN_BACKSTOP_MARGIN`], so a querier
/// told the client's value still answers before the frontend gives up.
pub const AS_WRITTEN_FOR: Duration = Duration::from_millis(250);

/// The least the frontend waits beyond a client's `timeout`.
pub const MIN_BACKSTOP_MARGIN: Duration = Duration::from_secs(5);

/// A valid `timeout` a client sent, and when it runs out.
#[derive(Debug, Clone)]
pub struct ClientTimeout {
    /// The parameter as the client wrote it.
    text: String,
    /// The time it allows (zero for a negative one or NaN, which Prometheus reads as
    /// "already expired").
    allowed: Duration,
    /// When it runs out: the request's arrival plus `allowed`.
    until: Instant,
}

impl ClientTimeout {
    /// The timeout a request that arrived at `arrived` asks for; `None` when the value is
    /// empty or not a valid duration (the caller has refused those already).
    pub fn new(value: &[u8], arrived: Instant) -> Option<ClientTimeout> {
        if value.is_empty() {
            return None;
        }
        let ns = parse_duration(value).ok()?;
        let allowed = Duration::from_nanos(ns.max(0) as u64);
        Some(ClientTimeout {
            text: String::from_utf8_lossy(value).into_owned(),
            allowed,
            until: arrived + allowed,
        })
    }

    /// The time the client allows.
    pub fn allowed(&self) -> Duration {
        self.allowed
    }

    /// How long the frontend waits for the request: the client's timeout plus
    /// [`backstop_margin`], but never longer than `limit` (`downstream.deadline`).
    pub fn backstop(&self, limit: Duration) -> Duration {
        (self.allowed + backstop_margin(self.allowed)).min(limit)
    }

    /// The `timeout` to send with an attempt starting at `now` that the frontend waits
    /// `budget` for: the client's own text while none of its time is spent, the time
    /// left after that, and `budget` when that is shorter.
    pub fn for_attempt(&self, now: Instant, budget: Duration) -> Cow<'_, str> {
        if self.allowed.is_zero() {
            // Expired from the start: the querier answers with its own timeout error.
            return Cow::Borrowed(&self.text);
        }
        let left = self.until.saturating_duration_since(now);
        let spent = self.allowed.saturating_sub(left);
        if spent < AS_WRITTEN_FOR && self.allowed <= budget {
            return Cow::Borrowed(&self.text);
        }
        Cow::Owned(format_timeout(left.min(budget)))
    }
}

/// How long the frontend waits beyond a client's timeout for the querier's own answer:
/// a tenth of the timeout, at least [`MIN_BACKSTOP_MARGIN`]. Enough for the querier to
/// notice, answer and send a long query's result; short enough that a querier that
/// hangs is not waited for much longer than the client asked.
pub fn backstop_margin(timeout: Duration) -> Duration {
    (timeout / 10).max(MIN_BACKSTOP_MARGIN)
}

/// A duration as a `timeout` parameter: seconds with milliseconds.
pub fn format_timeout(d: Duration) -> String {
    // Seconds with three decimals (milliseconds, half a millisecond rounded up), written
    // digit by digit: the text `{:.3}` of the seconds as a float gave (but for exact
    // half milliseconds), without float formatting or `format!`, together over a
    // thousand instructions for every instant query.
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from((d.subsec_nanos() + 500_000) / 1_000_000));
    let mut digits = [0u8; 24];
    let mut at = digits.len();
    let mut rest = ms;
    // Three decimals, the point and at least one digit before it.
    while at > digits.len() - 5 || rest > 0 {
        at -= 1;
        if at == digits.len() - 4 {
            digits[at] = b'.';
            continue;
        }
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    String::from_utf8_lossy(&digits[at..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_written_as_seconds_with_three_decimals() {
        for (d, want) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_millis(250), "0.250"),
            (Duration::from_millis(9_750), "9.750"),
            (Duration::from_secs(120), "120.000"),
            (Duration::from_nanos(1_234_400_000), "1.234"),
            (Duration::from_nanos(1_234_600_000), "1.235"),
            (Duration::from_nanos(999_999_999), "1.000"),
            (Duration::from_secs(86_400 * 365), "31536000.000"),
        ] {
            assert_eq!(format_timeout(d), want, "{d:?}");
            assert_eq!(
                format_timeout(d),
                format!("{:.3}", d.as_secs_f64()),
                "{d:?}"
            );
        }
        assert_eq!(format_timeout(Duration::MAX), "18446744073709551.615");
    }

    #[tokio::test(start_paused = true)]
    async fn the_querier_gets_the_clients_value_then_the_time_left() {
        let arrived = Instant::now();
        let t = ClientTimeout::new(b"1_0", arrived).expect("valid");
        assert_eq!(t.allowed(), Duration::from_secs(10));
        let budget = Duration::from_secs(120);
        assert_eq!(t.for_attempt(arrived, budget), "1_0");
        assert_eq!(
            t.for_attempt(arrived + Duration::from_millis(200), budget),
            "1_0",
            "less than AS_WRITTEN_FOR spent"
        );
        assert_eq!(
            t.for_attempt(arrived + AS_WRITTEN_FOR, budget),
            "9.750",
            "AS_WRITTEN_FOR spent: the time left"
        );
        assert_eq!(
            t.for_attempt(arrived + Duration::from_millis(2_500), budget),
            "7.500"
        );
        assert_eq!(
            t.for_attempt(arrived + Duration::from_secs(11), budget),
            "0.000",
            "spent: the querier answers with its own timeout error"
        );
        assert_eq!(
            t.for_attempt(arrived, Duration::from_secs(3)),
            "3.000",
            "the frontend waits less than the client allows"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_and_invalid_timeouts() {
        let now = Instant::now();
        for expired in [&b"-1"[..], b"0", b"0s", b"NaN"] {
            let t = ClientTimeout::new(expired, now).expect("valid");
            assert_eq!(t.allowed(), Duration::ZERO);
            assert_eq!(
                t.for_attempt(now, Duration::from_secs(5)),
                String::from_utf8_lossy(expired)
            );
            assert_eq!(t.backstop(Duration::from_secs(120)), MIN_BACKSTOP_MARGIN);
        }
        for invalid in [&b""[..], b"xx", b"-1s", b"Inf"] {
            assert!(ClientTimeout::new(invalid, now).is_none());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backstop_is_a_little_longer_within_the_deadline() {
        let now = Instant::now();
        let limit = Duration::from_secs(120);
        let backstop = |text: &[u8]| {
            ClientTimeout::new(text, now)
                .expect("valid")
                .backstop(limit)
        };
        assert_eq!(backstop(b"1s"), Duration::from_secs(6));
        assert_eq!(backstop(b"30s"), Duration::from_secs(35));
        assert_eq!(backstop(b"100s"), Duration::from_secs(110));
        assert_eq!(backstop(b"115s"), limit);
        assert_eq!(backstop(b"1h"), limit);
    }
}
