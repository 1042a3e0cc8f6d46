//! Which failures are worth another attempt, and how long to wait before it.
//!
//! The design document's schedule is 1 s, 2 s, 4 s, ... (the original's real page used 2, 4, 8 s
//! and retried everything, defect 5). Delays get up to 25 % of positive jitter, so parallel
//! chunks that failed together do not come back together, and are capped. A `Retry-After` answer
//! is honoured (never waiting less than it says, up to [`MAX_RETRY_AFTER_MS`]).

use crate::wire::ErrorCode;

/// The longest `Retry-After` the uploader honours; a longer one is cut to this.
pub const MAX_RETRY_AFTER_MS: u64 = 10 * 60 * 1000;

/// Why one request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, reset or dropped, DNS, CORS, offline.
    Network,
    /// No progress for too long; the request was cancelled.
    Timeout,
    /// The server answered with an error status.
    Status {
        status: u16,
        /// The `code` of the JSON error body, when it had one we know.
        code: Option<ErrorCode>,
        /// The `error` text of the body, for people.
        message: Option<String>,
        /// `Retry-After`, already converted to milliseconds from now.
        retry_after_ms: Option<u64>,
    },
}

impl Failure {
    /// True when the same request can succeed later: network failures, timeouts, 408, 429 and
    /// 5xx but 501, 505 and 507; a known error code has the last word (e.g. `body-cut-short`
    /// 400 is retryable, `insufficient-storage` 507 is not).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network | Self::Timeout => true,
            Self::Status { code: Some(c), .. } => c.is_retryable(),
            Self::Status { status, .. } => match status {
                408 | 429 => true,
                501 | 505 | 507 => false,
                s => (500..600).contains(s),
            },
        }
    }

    /// A stable code for the failure: the server's code, else `network-error` (no answer),
    /// `stalled` (no progress) or `http-error` (an error status without a code we know).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Network => "network-error",
            Self::Timeout => "stalled",
            Self::Status { code: Some(c), .. } => c.as_str(),
            Self::Status { .. } => "http-error",
        }
    }

    /// The HTTP status of the answer; 0 when none came.
    pub fn status(&self) -> u16 {
        match self {
            Self::Status { status, .. } => *status,
            _ => 0,
        }
    }

    /// True for failures that say nothing came back from the server.
    pub fn is_network(&self) -> bool {
        matches!(self, Self::Network | Self::Timeout)
    }

    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Status { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

/// What a client reports before each retry (tus-js-client and Uppy show the same numbers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryNotice {
    /// HTTP status of the failed attempt; 0 when no answer came.
    pub status: u16,
    /// [`Failure::code`].
    pub code: &'static str,
    /// The wait before the next attempt.
    pub retry_in_ms: u64,
    /// Which retry this is: 1 for the first.
    pub attempt: u32,
    /// The chunk, or `None` for a request about the session (open, resume).
    pub chunk_index: Option<u64>,
}

impl RetryNotice {
    pub fn new(
        failure: &Failure,
        retry_in_ms: u64,
        attempt: u32,
        chunk_index: Option<u64>,
    ) -> Self {
        Self {
            status: failure.status(),
            code: failure.code(),
            retry_in_ms,
            attempt,
            chunk_index,
        }
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per chunk after its first attempt (the design document's `maxRetries`, default 5).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base_delay_ms: u64,
    /// No computed delay exceeds this (Retry-After may, up to [`MAX_RETRY_AFTER_MS`]).
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay_ms: 1000,
            max_delay_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry) after `failure`, or `None`
    /// when it must not be retried (not retryable, or retries used up). `jitter` in `[0, 1)`
    /// comes from the caller's random source, so this stays deterministic.
    pub fn delay_ms(&self, retry: u32, failure: &Failure, jitter: f64) -> Option<u64> {
        if retry == 0 || retry > self.max_retries || !failure.is_retryable() {
            return None;
        }
        let shift = (retry - 1).min(32);
        let nominal = self
            .base_delay_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_delay_ms);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Up to a quarter on top; the product is below nominal, so the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let extra = (nominal as f64 * 0.25 * jitter) as u64;
        let computed = nominal.saturating_add(extra);
        let told = failure
            .retry_after_ms()
            .unwrap_or(0)
            .min(MAX_RETRY_AFTER_MS);
        Some(computed.max(told))
    }
}

/// Parses `Retry-After`: delay-seconds, or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)
/// compared with `now_unix_ms`. A date in the past means "now" (0).
pub fn parse_retry_after(value: &str, now_unix_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Some(seconds) = crate::wire::parse_u64(value) {
        return Some(seconds.saturating_mul(1000));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.saturating_mul(1000).saturating_sub(now_unix_ms))
}

/// Seconds since the Unix epoch of an IMF-fixdate.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    let (_weekday, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day = crate::wire::parse_u64(parts.next()?)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = crate::wire::parse_u64(parts.next()?)?;
    let mut hms = parts.next()?.split(':').map(crate::wire::parse_u64);
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian, year >= 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status(status: u16) -> Failure {
        Failure::Status {
            status,
            code: None,
            message: None,
            retry_after_ms: None,
        }
    }

    #[test]
    fn retries_only_what_can_succeed() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410, 411, 413, 415, 501, 505, 507] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(Failure::Network.is_retryable());
        assert!(Failure::Timeout.is_retryable());
        let cut = Failure::Status {
            status: 400,
            code: Some(ErrorCode::BodyCutShort),
            message: None,
            retry_after_ms: None,
        };
        assert!(cut.is_retryable());
    }

    #[test]
    fn schedule_is_one_two_four_seconds_capped() {
        let p = RetryPolicy::default();
        let d: Vec<_> = (1..=5)
            .map(|n| p.delay_ms(n, &Failure::Network, 0.0))
            .collect();
        assert_eq!(
            d,
            vec![Some(1000), Some(2000), Some(4000), Some(8000), Some(16000)]
        );
        assert_eq!(p.delay_ms(6, &Failure::Network, 0.0), None);
        assert_eq!(p.delay_ms(1, &status(415), 0.0), None);
        let long = RetryPolicy {
            max_retries: 100,
            ..p
        };
        assert_eq!(long.delay_ms(40, &Failure::Network, 0.0), Some(30_000));
        assert_eq!(long.delay_ms(100, &Failure::Network, 0.999), Some(37_492));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let told = |ms| Failure::Status {
            status: 429,
            code: None,
            message: None,
            retry_after_ms: Some(ms),
        };
        assert_eq!(p.delay_ms(1, &told(5000), 0.0), Some(5000));
        assert_eq!(p.delay_ms(3, &told(10), 0.0), Some(4000));
        assert_eq!(
            p.delay_ms(1, &told(u64::MAX), 0.0),
            Some(MAX_RETRY_AFTER_MS)
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after(" 120 ", now), Some(120_000));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(10_000)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 5),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Tue, 29 Feb 2000 12:00:00 GMT", 0),
            Some(951_825_600_000)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn delays_grow_and_stay_in_bounds(retry in 1u32..=5, jitter in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.delay_ms(retry, &Failure::Network, jitter).unwrap();
            let nominal = 1000u64 << (retry - 1);
            prop_assert!(d >= nominal && d <= nominal + nominal / 4);
        }
    }
}
