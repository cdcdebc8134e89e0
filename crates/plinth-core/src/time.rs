//! Wall-clock helpers: MLflow timestamps are integer milliseconds since the Unix epoch. Calendar
//! work (RFC 3339 text) is chrono's, the one date-time crate of the workspace (docs/adr/0003).

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `2021-04-12T10:59:42Z`, with as many fractional digits as the time has (none for whole
/// seconds, `.5` for half a second), from nanoseconds since the epoch. Feast's timestamp text.
pub fn rfc3339_from_nanos(ns: i64) -> String {
    let text = DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true);
    // `….123456789Z`: drop the fraction's trailing zeros, and the dot when nothing is left.
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() { format!("{whole}Z") } else { format!("{whole}.{fraction}Z") }
        }
        None => text,
    }
}

/// `2023-11-14T22:13:20.123+00:00` from milliseconds since the epoch (MLflow's webhook timestamps).
pub fn rfc3339_from_millis(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, false))
}

/// `2023-11-14 22:13:20 UTC`, for people reading a terminal.
pub fn display_millis(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339_from_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_nanos(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_from_nanos(1_700_000_000_500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(rfc3339_from_nanos(1_700_000_000_000_000_001), "2023-11-14T22:13:20.000000001Z");
        assert_eq!(rfc3339_from_nanos(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_nanos(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_from_millis(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(rfc3339_from_millis(1_700_000_000_123), "2023-11-14T22:13:20.123+00:00");
        assert_eq!(rfc3339_from_millis(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
        assert_eq!(display_millis(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
    }
}
