//! The `TrackingStore` port: experiments, runs, metrics, params, tags, inputs, logged models.
//!
//! Inputs are validated by the caller (`plinth-tracking`); the store enforces what needs the
//! stored state: uniqueness, lifecycle, param immutability. Listing calls take an offset and a
//! limit and say whether more rows follow; page tokens are the caller's business.

use async_trait::async_trait;
use plinth_core::ids::{ExperimentId, LoggedModelId, RunId};
use plinth_core::tracking::{
    DatasetInput, Experiment, KeyValue, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, ModelOutput, Run, RunInfo, RunStatus,
    ViewType,
};
use plinth_filter::{Clause, OrderBy};

use crate::Result;
use crate::audit::Record;

/// Where a new experiment's artifacts go, decided by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// Exactly this URI.
    Given(String),
    /// The configured root joined with the allocated experiment id (`<root>/<id>`).
    UnderRoot(String),
}

#[derive(Debug, Clone)]
pub struct NewExperiment {
    pub name: String,
    pub artifact_location: ArtifactLocation,
    pub tags: Vec<KeyValue>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub user_id: String,
    pub run_name: String,
    pub start_time: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewLoggedModel {
    pub model_id: LoggedModelId,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub model_type: Option<String>,
    pub source_run_id: Option<RunId>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
    pub now: i64,
}

/// A page request: skip `offset` rows, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: i64,
    pub limit: i64,
}

impl PageRequest {
    /// The page a client asks for: `max_results` (default `default`, at most `limit`) from the
    /// offset its page token carries.
    pub fn from_client(
        max_results: Option<i64>,
        default: i64,
        limit: i64,
        token: Option<&str>,
    ) -> Result<PageRequest, plinth_core::validation::InvalidParameter> {
        let max = max_results.unwrap_or(default);
        plinth_core::validation::validate_max_results(max, limit)?;
        Ok(PageRequest { offset: plinth_core::page_token::decode(token)?, limit: max })
    }
}

/// Rows of one page and whether any follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Rows<T> {
    /// The page for the client: the rows and, when more follow, the token of the next page.
    pub fn into_page(self, request: PageRequest) -> plinth_core::tracking::Page<T> {
        let next = self.has_more.then(|| plinth_core::page_token::encode(request.offset + request.limit));
        plinth_core::tracking::Page { items: self.items, next_page_token: next }
    }
}

#[derive(Debug, Clone)]
pub struct ExperimentQuery {
    pub view_type: ViewType,
    /// Only these experiment ids (what the caller may read); `None`: no restriction.
    pub restrict_to: Option<Vec<String>>,
    pub filter: Vec<Clause>,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

#[derive(Debug, Clone)]
pub struct RunQuery {
    pub experiment_ids: Vec<ExperimentId>,
    pub view_type: ViewType,
    pub filter: Vec<Clause>,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

#[derive(Debug, Clone)]
pub struct LoggedModelQuery {
    pub experiment_ids: Vec<ExperimentId>,
    pub filter: Vec<Clause>,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

/// Inclusive step range for history queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRange {
    pub start: i64,
    pub end: i64,
}

/// One dataset logged as a run input in an experiment, with the input's context
/// (`mlflow.data.context`): a row of MLflow's `experiments/search-datasets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSummary {
    pub experiment_id: ExperimentId,
    pub name: String,
    pub digest: String,
    pub context: Option<String>,
}

/// The dataset input tag that says what a run used a dataset for (`training`, `validation`, …).
pub const DATASET_CONTEXT_TAG: &str = "mlflow.data.context";

/// At most this many summaries answer one `experiments/search-datasets` (MLflow's cap).
pub const MAX_DATASET_SUMMARIES: usize = 1000;

#[async_trait]
pub trait TrackingStore: Send + Sync + 'static {
    /// Creates the Default experiment (id `0`) if it does not exist.
    async fn ensure_default_experiment(&self, artifact_location: &str, now: i64) -> Result<()>;

    async fn create_experiment(&self, new: NewExperiment, record: Record<'_, ExperimentId>) -> Result<ExperimentId>;
    async fn get_experiment(&self, experiment_id: &ExperimentId) -> Result<Experiment>;
    async fn find_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>>;
    async fn search_experiments(&self, query: &ExperimentQuery) -> Result<Rows<Experiment>>;
    async fn rename_experiment(&self, experiment_id: &ExperimentId, new_name: &str, now: i64, record: Record<'_, ()>) -> Result<()>;
    /// Deleting an experiment also deletes its active runs; restoring it restores the runs deleted with it.
    async fn set_experiment_lifecycle(
        &self,
        experiment_id: &ExperimentId,
        stage: LifecycleStage,
        now: i64,
        record: Record<'_, ()>,
    ) -> Result<()>;
    async fn set_experiment_tag(&self, experiment_id: &ExperimentId, tag: &KeyValue, record: Record<'_, ()>) -> Result<()>;
    async fn delete_experiment_tag(&self, experiment_id: &ExperimentId, key: &str, record: Record<'_, ()>) -> Result<()>;

    /// The experiment must be active. `tags` are written with the run.
    async fn create_run(&self, new: NewRun, record: Record<'_, Run>) -> Result<Run>;
    async fn get_run(&self, run_id: &RunId) -> Result<Run>;
    /// The run must be active; a new name also rewrites the `mlflow.runName` tag.
    async fn update_run(&self, run_id: &RunId, update: &RunUpdate, record: Record<'_, RunInfo>) -> Result<RunInfo>;
    async fn set_run_lifecycle(&self, run_id: &RunId, stage: LifecycleStage, now: i64, record: Record<'_, ()>) -> Result<()>;
    /// Atomically logs metrics (history plus latest values), params (immutable) and tags (upserted)
    /// to an active run.
    async fn log_batch(
        &self,
        run_id: &RunId,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
        record: Record<'_, ()>,
    ) -> Result<()>;
    async fn delete_run_tag(&self, run_id: &RunId, key: &str, record: Record<'_, ()>) -> Result<()>;
    async fn log_inputs(&self, run_id: &RunId, datasets: &[DatasetInput], model_ids: &[String], record: Record<'_, ()>) -> Result<()>;
    async fn log_outputs(&self, run_id: &RunId, outputs: &[ModelOutput], record: Record<'_, ()>) -> Result<()>;
    async fn search_runs(&self, query: &RunQuery) -> Result<Rows<Run>>;
    /// The distinct (experiment, dataset name, digest, context) of the dataset inputs of the runs
    /// of `experiment_ids`, ordered by experiment id, name, digest and context, at most `limit`.
    async fn search_dataset_summaries(&self, experiment_ids: &[ExperimentId], limit: usize) -> Result<Vec<DatasetSummary>>;

    /// Points of one metric of one run, ordered by (timestamp, step, value).
    async fn get_metric_history(&self, run_id: &RunId, key: &str, page: PageRequest) -> Result<Rows<Metric>>;
    /// The distinct steps a run logged for a metric within `range`, ascending.
    async fn list_metric_steps(&self, run_id: &RunId, key: &str, range: Option<StepRange>) -> Result<Vec<i64>>;
    /// Every point of the metric at the given steps, ordered by (step, timestamp, value).
    async fn get_metric_points_at_steps(&self, run_id: &RunId, key: &str, steps: &[i64]) -> Result<Vec<Metric>>;

    async fn create_logged_model(&self, new: NewLoggedModel, record: Record<'_, LoggedModel>) -> Result<LoggedModel>;
    async fn get_logged_model(&self, model_id: &LoggedModelId, allow_deleted: bool) -> Result<LoggedModel>;
    async fn update_logged_model_status(
        &self,
        model_id: &LoggedModelId,
        status: LoggedModelStatus,
        status_message: Option<&str>,
        now: i64,
        record: Record<'_, LoggedModel>,
    ) -> Result<LoggedModel>;
    async fn delete_logged_model(&self, model_id: &LoggedModelId, now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn set_logged_model_tags(&self, model_id: &LoggedModelId, tags: &[KeyValue], now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn delete_logged_model_tag(&self, model_id: &LoggedModelId, key: &str, now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn log_logged_model_params(&self, model_id: &LoggedModelId, params: &[KeyValue], now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn search_logged_models(&self, query: &LoggedModelQuery) -> Result<Rows<LoggedModel>>;
}

/// What the tracking port (experiments, runs, logged models) can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("No Experiment with id={experiment_id} exists")]
    ExperimentNotFound { experiment_id: String },
    #[error("Experiment(name={name}) already exists. Error: experiment names are unique, also among deleted experiments")]
    ExperimentNameExists { name: String },
    #[error("Cannot rename a non-active experiment {experiment_id}")]
    ExperimentNotActiveForRename { experiment_id: String },
    #[error("The experiment {experiment_id} must be in the 'active' state. Current state is deleted.")]
    ExperimentNotActive { experiment_id: String },
    #[error("Run with id={run_id} not found")]
    RunNotFound { run_id: RunId },
    #[error("The run {run_id} must be in the 'active' state. Current state is deleted.")]
    RunNotActive { run_id: String },
    #[error(
        "Changing param values is not allowed. Param with key='{key}' was already logged with value='{old_value}' for run ID='{run_id}'. Attempted logging new value '{new_value}'."
    )]
    ParamChanged { run_id: String, key: String, old_value: String, new_value: String },
    #[error("No tag with name: {key} in run with id {run_id}")]
    RunTagNotFound { run_id: String, key: String },
    #[error("No tag with name: {key} in experiment with id {experiment_id}")]
    ExperimentTagNotFound { experiment_id: String, key: String },
    #[error("Logged model with ID '{model_id}' not found.")]
    LoggedModelNotFound { model_id: LoggedModelId },
    #[error("No tag with key: {key} in logged model {model_id}")]
    LoggedModelTagNotFound { model_id: String, key: String },
}

impl plinth_core::HasErrorCode for TrackingError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            TrackingError::ExperimentNotFound { .. }
            | TrackingError::RunNotFound { .. }
            | TrackingError::RunTagNotFound { .. }
            | TrackingError::ExperimentTagNotFound { .. }
            | TrackingError::LoggedModelNotFound { .. }
            | TrackingError::LoggedModelTagNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            TrackingError::ExperimentNameExists { .. } => ErrorCode::ResourceAlreadyExists,
            TrackingError::ExperimentNotActiveForRename { .. } => ErrorCode::InvalidState,
            TrackingError::ExperimentNotActive { .. } | TrackingError::RunNotActive { .. } | TrackingError::ParamChanged { .. } => {
                ErrorCode::InvalidParameterValue
            }
        }
    }
}
