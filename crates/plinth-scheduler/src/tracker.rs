//! The `RunTracker` port: every job is a tracking run. The server implements it over the tracking
//! service; the scheduler creates the run at submission, moves its status with the job's, and keeps
//! each attempt's output as an artifact of the run.

use std::path::Path;

use async_trait::async_trait;
use plinth_core::jobs::{AttemptEnd, Job, JobState};

/// Why the tracking side refused or failed, with the code of its cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TrackerError {
    pub code: plinth_core::ErrorCode,
    pub message: String,
}

/// One value of a system metric, for the run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

/// The run a job logs into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    pub experiment_id: String,
    pub run_id: String,
}

#[async_trait]
pub trait RunTracker: Send + Sync + 'static {
    /// Creates the job's run, `SCHEDULED`, in the spec's experiment (created when it does not
    /// exist; the default experiment when the spec names none), named after the job, tagged with
    /// its id, queue and submitter.
    async fn create_run(&self, job: &Job) -> Result<JobRun, TrackerError>;
    /// Moves the run's status with the job's state (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`);
    /// at the end, `end` says how it ended (kept as the run's tags).
    async fn set_status(&self, run_id: &str, state: JobState, at: i64, end: Option<&AttemptEnd>) -> Result<(), TrackerError>;
    /// Creates a sweep's parent run, `RUNNING`, in `experiment` (created when missing; the default
    /// experiment when `None`), named after the sweep and tagged with its id.
    async fn create_sweep_run(&self, sweep_id: i64, name: &str, experiment: Option<&str>, user: &str) -> Result<JobRun, TrackerError>;
    /// Logs params into the run (a trial's parameters; a sweep's best).
    async fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<(), TrackerError>;
    /// A metric's history in the run, `(step, value)` by step.
    async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<(i64, f64)>, TrackerError>;
    /// Logs system metrics into the run.
    async fn log_metrics(&self, run_id: &str, metrics: Vec<MetricPoint>) -> Result<(), TrackerError>;
    /// Keeps an attempt's output as the run's artifact `logs/attempt-<n>.log`.
    async fn keep_log(&self, run_id: &str, attempt: u32, path: &Path) -> Result<(), TrackerError>;
    /// The tracking URI a job is given (`MLFLOW_TRACKING_URI`).
    fn tracking_uri(&self) -> String;
}
