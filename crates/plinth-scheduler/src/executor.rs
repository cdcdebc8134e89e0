//! The `Executor` port: what runs an admitted job's attempt (local processes, a Ray cluster; a
//! Kubernetes adapter would fit the same port).
//!
//! An executor starts an attempt, stops it, and takes back attempts an earlier life of the server
//! started; it reports what happens to them as `ExecutorEvent`s on the channel it was built with.
//! Every attempt's output ends up in a local file (`log_path`), which the API streams and the run
//! keeps as an artifact.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use plinth_core::jobs::{AttemptEnd, FlavorAssignment, Resources};

/// One attempt of one job, as the scheduler hands it over.
#[derive(Debug, Clone)]
pub struct Launch {
    pub job_id: i64,
    pub attempt: u32,
    pub command: Vec<String>,
    /// The job's variables and Plinth's (`MLFLOW_RUN_ID`, …), already merged.
    pub env: BTreeMap<String, String>,
    /// Per worker.
    pub resources: Resources,
    pub workers: u32,
    pub flavors: FlavorAssignment,
    pub timeout_secs: Option<u64>,
    /// A directory holding the job's code, copied into the attempt's working directory.
    pub code_dir: Option<PathBuf>,
}

/// What happened to an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorEvent {
    /// Its processes run.
    Running { job_id: i64, attempt: u32 },
    /// It ended; how.
    Ended { job_id: i64, attempt: u32, end: AttemptEnd },
}

/// Why a call to an executor failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The executor cannot take this attempt now (no free device of its flavor); it may later.
    #[error("{message}")]
    NoCapacity { message: String },
    /// The attempt could not be prepared or handed over.
    #[error("{message}")]
    Failed { message: String },
}

impl plinth_core::HasErrorCode for ExecutorError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        match self {
            ExecutorError::NoCapacity { .. } => plinth_core::ErrorCode::TemporarilyUnavailable,
            ExecutorError::Failed { .. } => plinth_core::ErrorCode::InternalError,
        }
    }
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// The executor's name, stored with each job it holds (`local`, `ray`).
    fn name(&self) -> &'static str;
    /// The handle the attempt will have, known before it is started, so a server that dies
    /// during `launch` finds the attempt on restart.
    fn handle_of(&self, job_id: i64, attempt: u32) -> String;
    /// Starts the attempt. `Running` and `Ended` events follow.
    async fn launch(&self, launch: Launch) -> Result<(), ExecutorError>;
    /// Asks the attempt to stop (`reason`: `cancelled` or `preempted`): politely, then by force
    /// after the grace period. Idempotent; an attempt that already ended is left alone. Its
    /// `Ended` event follows.
    async fn stop(&self, job_id: i64, attempt: u32, handle: &str, reason: &str) -> Result<(), ExecutorError>;
    /// Takes back an attempt an earlier life started: its events follow (`Ended` at once when it
    /// ended meanwhile, with `Lost` when nothing recorded its end).
    async fn adopt(&self, job_id: i64, attempt: u32, handle: &str) -> Result<(), ExecutorError>;
    /// The attempt's output, as `<RFC 3339 time> <o|e><rank> <text>` lines.
    fn log_path(&self, job_id: i64, attempt: u32) -> PathBuf;
    /// The attempt's system metrics (`supervisor::MetricsLine` per line), when the executor samples them.
    fn system_metrics_path(&self, _job_id: i64, _attempt: u32) -> Option<PathBuf> {
        None
    }
}
