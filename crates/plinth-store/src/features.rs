//! The `FeatureRegistryStore` port: versioned feature-store definitions, materialization state
//! and training datasets.
//!
//! Definitions are opaque to the store: a definition is a kind, a name and a canonical JSON spec
//! with its digest; the feature crate owns what the spec means. Every change of a definition is a
//! new version (1, 2, …); a deletion is a version without a spec (a tombstone), so history and
//! training datasets that name an old version keep resolving. Timestamps of feature data are
//! nanoseconds since the epoch (`_ns`); bookkeeping times are milliseconds (`_at`).

use async_trait::async_trait;

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FeatureKind {
    Entity,
    Source,
    FeatureView,
    FeatureService,
}

impl FeatureKind {
    pub const ALL: [FeatureKind; 4] = [FeatureKind::Entity, FeatureKind::Source, FeatureKind::FeatureView, FeatureKind::FeatureService];

    pub fn as_str(self) -> &'static str {
        match self {
            FeatureKind::Entity => "entity",
            FeatureKind::Source => "source",
            FeatureKind::FeatureView => "feature_view",
            FeatureKind::FeatureService => "feature_service",
        }
    }

    pub fn parse(s: &str) -> Option<FeatureKind> {
        FeatureKind::ALL.into_iter().find(|it| it.as_str() == s)
    }
}

/// One version of one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDefinition {
    pub kind: FeatureKind,
    pub name: String,
    /// 1 for the first version; grows by one per change, deletions included.
    pub version: i64,
    /// The canonical JSON spec; `None` when this version deletes the object.
    pub spec: Option<String>,
    /// Hex SHA-256 of `spec`; `None` for a deletion.
    pub digest: Option<String>,
    /// The apply that wrote this version.
    pub apply_id: i64,
    pub created_at: i64,
    pub created_by: String,
}

impl FeatureDefinition {
    pub fn is_deleted(&self) -> bool {
        self.spec.is_none()
    }
}

/// A change an apply wants to make, computed against the head it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionChange {
    pub kind: FeatureKind,
    pub name: String,
    /// The head version the change was computed against; 0 when the object had no version.
    pub expected_version: i64,
    /// The new spec; `None` deletes the object.
    pub spec: Option<String>,
    pub digest: Option<String>,
}

/// One recorded apply and the versions it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureApply {
    /// Grows with commit order.
    pub id: i64,
    pub actor: String,
    pub created_at: i64,
    /// The versions this apply wrote, in (kind, name) order.
    pub written: Vec<FeatureDefinition>,
}

/// What has been materialized for one feature view, and how fresh it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewState {
    pub view: String,
    /// End (inclusive) of the last committed materialization; the next incremental run starts after it.
    pub watermark_ns: Option<i64>,
    /// The newest event time written to the online store, by materialization or push.
    pub newest_event_ns: Option<i64>,
    pub last_run_at: Option<i64>,
    pub updated_at: i64,
}

/// One committed materialization run of one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterializationRun {
    pub id: i64,
    pub view: String,
    pub view_version: i64,
    /// The event-time interval read, `[start_ns, end_ns]`; `start_ns` is `None` for a full run.
    pub start_ns: Option<i64>,
    pub end_ns: i64,
    /// Entities written to the online store.
    pub rows: i64,
    pub newest_event_ns: Option<i64>,
    pub started_at: i64,
    pub finished_at: i64,
    pub actor: String,
}

/// A saved historical retrieval: enough to know what went into a training set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingDataset {
    /// A UUID.
    pub id: String,
    /// Optional, unique among training datasets when set.
    pub name: Option<String>,
    /// The feature references as requested, or the service's selection.
    pub features: Vec<String>,
    pub feature_service: Option<String>,
    pub full_feature_names: bool,
    /// Every definition the retrieval read, as a JSON array of
    /// `{"kind": "feature_view", "name": "driver_hourly", "version": 3}` (kinds as `FeatureKind::as_str`).
    pub definitions: String,
    /// Hex SHA-256 over the entity rows (Arrow IPC of the input, schema included).
    pub entity_digest: String,
    pub entity_rows: i64,
    /// Where the output was written (a `file://` URI, an artifact URI, or the client's own path).
    pub output_uri: Option<String>,
    pub created_at: i64,
    pub created_by: String,
}

/// A training dataset logged to a tracking run as a dataset input: the lineage from features to runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingDatasetRun {
    pub dataset_id: String,
    pub run_id: String,
    /// The input's `mlflow.data.context` ("training", "validation", ...).
    pub context: String,
    pub logged_at: i64,
    pub logged_by: String,
}

#[async_trait]
pub trait FeatureRegistryStore: Send + Sync + 'static {
    /// Writes every change in one transaction and records the apply. Each change is a
    /// compare-and-set on its object's head: if any head is no longer `expected_version`, nothing
    /// is written and the answer is `Error::Conflict` (the caller re-reads and re-plans). An empty
    /// `changes` records nothing and answers an apply with id 0 and nothing `written`.
    async fn apply_feature_changes(
        &self,
        changes: &[DefinitionChange],
        actor: &str,
        now: i64,
        record: Record<'_, FeatureApply>,
    ) -> Result<FeatureApply>;
    /// The newest version of every object ever defined, deletions included, in (kind, name) order
    /// (`FeatureKind`'s order, then names bytewise).
    async fn feature_heads(&self) -> Result<Vec<FeatureDefinition>>;
    /// One version (`None`: the newest) of one object; `ResourceDoesNotExist` when absent.
    async fn feature_definition(&self, kind: FeatureKind, name: &str, version: Option<i64>) -> Result<FeatureDefinition>;
    /// Every version of one object, oldest first; empty when it never existed.
    async fn feature_history(&self, kind: FeatureKind, name: &str) -> Result<Vec<FeatureDefinition>>;
    /// Recorded applies, newest first.
    async fn feature_applies(&self, page: PageRequest) -> Result<Rows<FeatureApply>>;

    /// Records a committed materialization run and moves the view's watermark to its end (never
    /// backwards) and its newest event time (never backwards), in one transaction.
    async fn record_materialization(&self, run: &MaterializationRun, record: Record<'_, i64>) -> Result<i64>;
    /// Raises a view's newest event time (pushes); never lowers it.
    async fn raise_newest_event(&self, view: &str, newest_event_ns: i64, now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn view_states(&self) -> Result<Vec<ViewState>>;
    /// Runs of one view, newest first.
    async fn materialization_runs(&self, view: &str, page: PageRequest) -> Result<Rows<MaterializationRun>>;

    /// `ResourceAlreadyExists` when the name is taken; `InvalidArgument`, with nothing written, when
    /// `definitions` is not a JSON array of `{"kind", "name", "version"}` objects. The definitions
    /// read are recorded with the dataset, in the same transaction, for `training_datasets_reading`.
    async fn create_training_dataset(&self, dataset: &TrainingDataset, record: Record<'_, ()>) -> Result<()>;
    /// By id or by name.
    async fn training_dataset(&self, id_or_name: &str) -> Result<TrainingDataset>;
    /// Newest first.
    async fn training_datasets(&self, page: PageRequest) -> Result<Rows<TrainingDataset>>;
    /// Records that training dataset `link.dataset_id` was logged to run `link.run_id`. Logging the
    /// same pair again replaces context, logged_at and logged_by (idempotent).
    /// `TrainingDatasetNotFound` when the dataset does not exist; the run is the caller's to check.
    async fn link_training_dataset_run(&self, link: &TrainingDatasetRun, record: Record<'_, ()>) -> Result<()>;
    /// Runs the dataset (by id or by name, like `training_dataset`) was logged to, oldest first
    /// (ties by run id). `TrainingDatasetNotFound` when the dataset does not exist.
    async fn training_dataset_runs(&self, id_or_name: &str) -> Result<Vec<TrainingDatasetRun>>;
    /// Training datasets whose retrieval read the definition (`kind`, `name`) at any version,
    /// newest first (like `training_datasets`), paged.
    async fn training_datasets_reading(&self, kind: FeatureKind, name: &str, page: PageRequest) -> Result<Rows<TrainingDataset>>;
}

/// What the feature registry port (definitions, training datasets) can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error("No {kind} named '{name}'{version_suffix}", version_suffix = version.map(|v| format!(" at version {v}")).unwrap_or_default())]
    FeatureDefinitionNotFound { kind: &'static str, name: String, version: Option<i64> },
    #[error("Training dataset '{id}' not found")]
    TrainingDatasetNotFound { id: String },
    #[error("A training dataset named '{name}' already exists")]
    TrainingDatasetExists { name: String },
}

impl plinth_core::HasErrorCode for FeaturesError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            FeaturesError::FeatureDefinitionNotFound { .. } | FeaturesError::TrainingDatasetNotFound { .. } => {
                ErrorCode::ResourceDoesNotExist
            }
            FeaturesError::TrainingDatasetExists { .. } => ErrorCode::ResourceAlreadyExists,
        }
    }
}
