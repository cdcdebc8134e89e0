//! Serving's metrics, recorded through the `metrics` facade (the server installs the Prometheus
//! recorder and serves `/metrics`). Labels are deployment and variant names (validated, bounded)
//! and error codes.

/// Inference requests answered, by deployment, variant and outcome (`OK` or the error code).
pub const REQUESTS: &str = "plinth_serving_requests_total";
/// Seconds from a request's arrival at the service to its answer, by deployment and variant.
pub const REQUEST_SECONDS: &str = "plinth_serving_request_duration_seconds";
/// Seconds a request waited in its variant's queue before its batch ran.
pub const QUEUE_SECONDS: &str = "plinth_serving_queue_duration_seconds";
/// Seconds one batch took in the model runtime.
pub const COMPUTE_SECONDS: &str = "plinth_serving_compute_duration_seconds";
/// Rows per batch the model ran.
pub const BATCH_ROWS: &str = "plinth_serving_batch_rows";
/// Requests waiting in a variant's queue, as last seen.
pub const QUEUE_DEPTH: &str = "plinth_serving_queue_depth";
/// Copies of requests run by shadow variants, by deployment, variant and outcome: `AGREE` or
/// `DISAGREE` with the primary's answer, or the error code.
pub const SHADOW_REQUESTS: &str = "plinth_serving_shadow_requests_total";
/// Seconds a shadow variant took to answer its copy.
pub const SHADOW_SECONDS: &str = "plinth_serving_shadow_duration_seconds";
/// The model version a variant serves on this node.
pub const LOADED_VERSION: &str = "plinth_serving_loaded_version";
/// Predictions appended to the prediction log.
pub const PREDICTIONS_LOGGED: &str = "plinth_serving_prediction_log_records_total";
/// Predictions the log dropped: its queue was full, or a file could not be written.
pub const PREDICTIONS_DROPPED: &str = "plinth_serving_prediction_log_dropped_total";
/// Automatic rollbacks this node ordered, by deployment and the variant taken out.
pub const ROLLBACKS: &str = "plinth_serving_rollbacks_total";

/// Registers the help text of every serving metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Inference requests answered, by deployment, variant and outcome (OK or the error code).");
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer one inference request (queue and compute), by deployment and variant."
    );
    describe_histogram!(QUEUE_SECONDS, Unit::Seconds, "Time a request waited in its variant's queue before its batch ran.");
    describe_histogram!(COMPUTE_SECONDS, Unit::Seconds, "Time one batch took in the model runtime.");
    describe_histogram!(BATCH_ROWS, Unit::Count, "Rows per batch the model ran.");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Requests waiting in a variant's queue, as last seen.");
    describe_gauge!(LOADED_VERSION, "The model version a variant serves on this node.");
    describe_counter!(
        SHADOW_REQUESTS,
        "Copies of requests run by shadow variants, by outcome: AGREE or DISAGREE with the primary's answer, or the error code."
    );
    describe_histogram!(SHADOW_SECONDS, Unit::Seconds, "Time a shadow variant took to answer its copy of a request.");
    describe_counter!(PREDICTIONS_LOGGED, "Predictions written to the prediction log.");
    describe_counter!(
        PREDICTIONS_DROPPED,
        "Predictions the prediction log dropped rather than slow serving down (its queue was full), or could not write."
    );
    describe_counter!(ROLLBACKS, "Automatic rollbacks ordered by this node, by deployment and the variant taken out of the traffic.");
}
