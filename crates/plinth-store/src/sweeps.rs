//! The `SweepStore` port: sweeps and their trials. A sweep changes by compare-and-set on its
//! version; a trial is written whole (an upsert by sweep and index), only by the scheduler loop.

use async_trait::async_trait;
use plinth_core::sweeps::{Sweep, Trial};

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

/// A sweep to create: `running`, version 1, no parent run yet.
#[derive(Debug, Clone)]
pub struct NewSweep {
    pub name: String,
    pub spec: String,
    pub created_by: String,
    pub now: i64,
}

#[async_trait]
pub trait SweepStore: Send + Sync + 'static {
    /// Creates the sweep with the next id.
    async fn create_sweep(&self, new: &NewSweep, record: Record<'_, Sweep>) -> Result<Sweep>;
    /// An unknown id is `SweepsError::SweepNotFound`.
    async fn get_sweep(&self, id: i64) -> Result<Sweep>;
    /// Newest (highest id) first.
    async fn list_sweeps(&self, page: PageRequest) -> Result<Rows<Sweep>>;
    /// Writes every mutable field of `sweep` (state, parent run, experiment, best trial, message,
    /// `updated_at`, `finished_at`) when the stored version is `expected_version`, else
    /// `Error::Conflict` and nothing written; sets the version to `expected_version + 1`.
    async fn update_sweep(&self, sweep: &Sweep, expected_version: i64, record: Record<'_, Sweep>) -> Result<Sweep>;
    /// Every sweep still running, by id.
    async fn active_sweeps(&self) -> Result<Vec<Sweep>>;
    /// Inserts or replaces trial (`sweep_id`, `index`); an unknown sweep is `SweepsError::SweepNotFound`.
    async fn put_trial(&self, trial: &Trial) -> Result<()>;
    /// The sweep's trials by index.
    async fn trials(&self, sweep_id: i64) -> Result<Vec<Trial>>;
}

/// What the sweeps port can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum SweepsError {
    #[error("Sweep {id} not found")]
    SweepNotFound { id: i64 },
}

impl plinth_core::HasErrorCode for SweepsError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        match self {
            SweepsError::SweepNotFound { .. } => plinth_core::ErrorCode::ResourceDoesNotExist,
        }
    }
}
