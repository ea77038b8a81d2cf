//! Wall-clock helpers. Jobs store times as Unix epoch milliseconds (DynamoDB numbers sort and
//! compare in condition expressions); the API renders them as RFC 3339.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch.
pub type EpochMs = i64;

pub fn now_ms() -> EpochMs {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as EpochMs
}

/// RFC 3339 with millisecond precision, always UTC (`2026-11-25T17:28:25.123Z`).
pub fn rfc3339(ms: EpochMs) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_millis_as_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_091_705_123), "2025-11-25T17:28:25.123Z");
    }
}
