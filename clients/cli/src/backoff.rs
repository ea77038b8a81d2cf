//! Retry pacing: exponential backoff with jitter, and `Retry-After`.

use std::time::{Duration, SystemTime};

/// Exponential backoff with "equal jitter": the n-th delay (from 0) is drawn uniformly from
/// `[d/2, d]` where `d = min(cap, base * 2^n)`. Half of it is guaranteed, so retries never come
/// back at once; the other half spreads clients that failed together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The default for API calls and downloads: 0.5 s, 1 s, 2 s, … up to 30 s.
    pub fn standard() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; `unit` is a random number in `[0, 1)`.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `Retry-After` as RFC 9110 allows it: delay-seconds, or an HTTP-date (relative to `now`; a
/// date in the past means now). Anything else is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly large values are clamped rather than rejected.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let c = backoff.ceiling();
                backoff.next_with(0.0);
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 4000, 4000]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_ceiling() {
        for unit in [0.0, 0.25, 0.5, 0.999_999, 1.0, -3.0, 7.0] {
            let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
            let delay = backoff.next_with(unit);
            assert!(delay >= Duration::from_secs(1), "{unit}: {delay:?}");
            assert!(delay <= Duration::from_secs(2), "{unit}: {delay:?}");
        }
        let mut a = Backoff::standard();
        let mut b = Backoff::standard();
        assert_ne!(
            a.next_with(0.1),
            b.next_with(0.9),
            "jitter must spread clients"
        );
        // Random draws too.
        let mut backoff = Backoff::standard();
        for _ in 0..100 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay >= ceiling / 2 && delay <= ceiling);
        }
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(backoff.next_with(0.5) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 15 ", now),
            Some(Duration::from_secs(15))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for bad in ["", " ", "-1", "1.5", "soon", "3s", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
