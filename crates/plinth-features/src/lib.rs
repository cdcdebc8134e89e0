//! The feature store: definitions (`repo`), the offline engine with exact point-in-time retrieval
//! (`engine`, `pit`, `chunked` for entity sets of any size), and the service that applies definitions through the metadata store.

/// The Arrow this crate computes with (DataFusion's), for callers that read or write its batches.
pub use datafusion::arrow;
/// The Parquet reader and writer of the same Arrow.
pub use datafusion::parquet;

mod chunked;
pub mod engine;
mod error;
pub mod metrics;
pub mod online;
mod pit;
pub mod repo;
pub mod types;

pub use chunked::BatchStream;
pub use engine::{Engine, EngineOptions, HistoricalRequest};
pub use error::{Error, Result};
pub use repo::Repository;
pub mod service;

pub use service::{ChangeOp, FeatureService, FieldStatus, Materialized, OnlineColumn, Plan, PlannedChange, Retrieval, Snapshot};
