//! Experiment tracking with MLflow's semantics, over the `TrackingStore` and `BlobStore` ports.
//!
//! `TrackingService` is what the HTTP layer calls: it validates whole requests before the
//! first write (key rules, limits, batch sizes), fills MLflow's defaults (run names, user,
//! start time), truncates over-long values as MLflow does, turns page tokens into offsets,
//! down-samples metric histories, and maps run artifact URIs onto the blob store. It knows
//! no wire format.

mod acting;
mod artifacts;
mod error;
mod names;
mod sampling;
mod service;

pub use acting::Acting;
pub use artifacts::ArtifactRoot;
pub use error::{Error, Result};
pub use service::{
    CreateLoggedModel, CreateRun, HistoryBulkInterval, LogBatch, SearchExperiments, SearchLoggedModels, SearchRuns, TrackingConfig,
    TrackingService,
};
