//! The `JobStore` port: training jobs (their specs, states and attempts) and the queue
//! configuration they are admitted under.
//!
//! Every change of a job is a compare-and-set on its `version`, so the scheduler, a cancel
//! arriving through the API and an executor reporting an end cannot overwrite one another: the
//! loser reads the job again and decides anew. The scheduler's admission cycle writes its
//! decisions as one batch, all or nothing.

use async_trait::async_trait;
use plinth_core::jobs::{Job, JobSpec, JobState};

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

/// A job to create, `Queued` at attempt 1 and version 1.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: JobSpec,
    /// The cluster queue the spec's local queue points at now.
    pub cluster_queue: String,
    pub submitted_by: String,
    /// A second create with the same submitter and key answers the first job instead.
    pub idempotency_key: Option<String>,
    pub now: i64,
}

/// Which jobs to list; newest (highest id) first.
#[derive(Debug, Clone)]
pub struct JobQuery {
    /// The local queue submitted to.
    pub queue: Option<String>,
    pub cluster_queue: Option<String>,
    /// Any of these states; every state when empty.
    pub states: Vec<JobState>,
    pub submitted_by: Option<String>,
    pub page: PageRequest,
}

/// A job as it should be after a change, written when the stored version is still `expected_version`.
#[derive(Debug, Clone)]
pub struct JobUpdate {
    /// Every mutable field is written from here: state, attempt, preemptions, flavors, executor,
    /// handle, run and experiment ids, the cancel request, the last end, `not_before` and the times.
    /// `version` is ignored: the store sets it to `expected_version + 1`.
    pub job: Job,
    pub expected_version: i64,
}

/// The queue configuration as applied: its canonical text (the scheduler's format), numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfigRecord {
    pub text: String,
    /// 1 for the first configuration applied; each apply adds one.
    pub version: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Creates the job with the next id; answers it and `true`. When `idempotency_key` is set and
    /// the same submitter already created a job with it, creates nothing and answers that job and
    /// `false` (the record is not written).
    async fn create_job(&self, new: &NewJob, record: Record<'_, Job>) -> Result<(Job, bool)>;
    /// An unknown id is `JobsError::JobNotFound`.
    async fn get_job(&self, id: i64) -> Result<Job>;
    async fn list_jobs(&self, query: &JobQuery) -> Result<Rows<Job>>;
    /// Writes every update or none: when one job's stored version differs from its
    /// `expected_version` (or it is gone), the call is `Error::Conflict` and nothing is written.
    /// Answers the jobs as they now are, in the order given. The record gets them too.
    async fn update_jobs(&self, updates: &[JobUpdate], record: Record<'_, [Job]>) -> Result<Vec<Job>>;
    /// Every job not in a terminal state, by id: what the scheduler rebuilds its state from.
    async fn active_jobs(&self) -> Result<Vec<Job>>;
    /// The configuration applied last; `None` before the first apply.
    async fn queue_config(&self) -> Result<Option<QueueConfigRecord>>;
    /// Stores `text` as the configuration when the stored version is `expected_version` (`0` for
    /// none stored yet); otherwise `Error::Conflict` and nothing written.
    async fn put_queue_config(
        &self,
        text: &str,
        expected_version: i64,
        updated_by: &str,
        now: i64,
        record: Record<'_, QueueConfigRecord>,
    ) -> Result<QueueConfigRecord>;
}

/// What the jobs port can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("Job {id} not found")]
    JobNotFound { id: i64 },
}

impl plinth_core::HasErrorCode for JobsError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        match self {
            JobsError::JobNotFound { .. } => plinth_core::ErrorCode::ResourceDoesNotExist,
        }
    }
}
