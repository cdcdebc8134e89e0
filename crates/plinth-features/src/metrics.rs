//! The feature store's metrics, recorded through the `metrics` facade (the server installs the
//! Prometheus recorder and serves `/metrics`). Labels are defined view and source names only.

/// Seconds to answer one online read (`FeatureService::online_features`), by online store.
pub const ONLINE_READ_SECONDS: &str = "plinth_feature_online_read_duration_seconds";
/// Entity rows per online read.
pub const ONLINE_READ_ENTITIES: &str = "plinth_feature_online_read_entities";
/// Values served online, by view and Feast status (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE).
pub const ONLINE_VALUES: &str = "plinth_feature_online_values_total";
/// Newest event time written online (materialized or pushed), Unix seconds, by view.
pub const NEWEST_EVENT: &str = "plinth_feature_view_newest_event_timestamp_seconds";
/// Age of that newest event at scrape time, seconds, by view.
pub const FRESHNESS_AGE: &str = "plinth_feature_view_freshness_age_seconds";
/// End of the last committed materialization, Unix seconds, by view.
pub const WATERMARK: &str = "plinth_feature_view_watermark_timestamp_seconds";
/// Rows written online by materialization, by view.
pub const MATERIALIZED_ROWS: &str = "plinth_feature_materialized_rows_total";
/// Seconds per view materialization (read, pick the newest rows, write online, record).
pub const MATERIALIZE_SECONDS: &str = "plinth_feature_materialization_duration_seconds";
/// Rows accepted by pushes, by push source and destination (online, offline).
pub const PUSHED_ROWS: &str = "plinth_feature_pushed_rows_total";
/// Seconds per historical retrieval.
pub const HISTORICAL_SECONDS: &str = "plinth_feature_historical_duration_seconds";
/// Entity rows answered by historical retrievals.
pub const HISTORICAL_ROWS: &str = "plinth_feature_historical_rows_total";

/// Registers the help text of every feature-store metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(ONLINE_READ_SECONDS, Unit::Seconds, "Time to answer one online feature read, by online store.");
    describe_histogram!(ONLINE_READ_ENTITIES, Unit::Count, "Entity rows per online feature read.");
    describe_counter!(ONLINE_VALUES, "Feature values served online, by view and status.");
    describe_gauge!(NEWEST_EVENT, Unit::Seconds, "Newest event time written online (materialized or pushed), Unix seconds, by view.");
    describe_gauge!(FRESHNESS_AGE, Unit::Seconds, "Age of the newest event written online, seconds, at scrape time, by view.");
    describe_gauge!(WATERMARK, Unit::Seconds, "End of the last committed materialization, Unix seconds, by view.");
    describe_counter!(MATERIALIZED_ROWS, "Rows written to the online store by materialization, by view.");
    describe_histogram!(MATERIALIZE_SECONDS, Unit::Seconds, "Time to materialize one view.");
    describe_counter!(PUSHED_ROWS, "Rows accepted by pushes, by push source and destination.");
    describe_histogram!(HISTORICAL_SECONDS, Unit::Seconds, "Time to answer one historical retrieval.");
    describe_counter!(HISTORICAL_ROWS, "Entity rows answered by historical retrievals.");
}

pub(crate) fn ns_to_secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}
