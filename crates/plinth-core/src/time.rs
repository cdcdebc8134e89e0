//! Wall-clock helpers: MLflow timestamps are integer milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
