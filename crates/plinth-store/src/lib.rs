//! Storage ports for Plinth's metadata, and the conformance suite every adapter runs.
//!
//! A port is a trait (`TrackingStore`, `RegistryStore`, `AuditLog`, `WebhookStore`, `AuthStore`, `FeatureRegistryStore`, `DeploymentStore`, `JobStore`, `SweepStore`) written in domain types from `plinth-core` and search
//! ASTs from `plinth-filter`. Adapters (SQLite and PostgreSQL in `plinth-store-sql`) implement
//! it and prove it with `conformance`. The transaction rules every adapter keeps:
//! - one call is one transaction: it commits whole or not at all;
//! - a call checks everything it needs (the run is active, a param is unchanged) inside that
//!   transaction, so concurrent callers cannot interleave between check and write;
//! - an acknowledged call is durable (it survives `kill -9` of the process).

pub mod audit;
pub mod auth;
pub mod conformance;
pub mod conformance_audit;
pub mod conformance_auth;
pub mod conformance_features;
pub mod conformance_jobs;
pub mod conformance_promotions;
pub mod conformance_registry;
pub mod conformance_serving;
pub mod conformance_sweeps;
pub mod conformance_webhooks;
mod error;
pub mod features;
pub mod jobs;
pub mod registry;
pub mod serving;
pub mod sweeps;
pub mod tracking;
pub mod webhooks;

pub use audit::AuditLog;
pub use auth::{AuthError, AuthStore};
pub use error::{Error, Result};
pub use features::{FeatureRegistryStore, FeaturesError};
pub use jobs::{JobStore, JobsError};
pub use registry::{RegistryError, RegistryStore};
pub use serving::{DeploymentStore, ServingError};
pub use sweeps::{SweepStore, SweepsError};
pub use tracking::{TrackingError, TrackingStore};
pub use webhooks::{WebhookError, WebhookStore};
