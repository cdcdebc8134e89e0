//! Errors of the storage ports, each mapped to a stable code.

use plinth_core::{ErrorCode, HasErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No Experiment with id={experiment_id} exists")]
    ExperimentNotFound { experiment_id: String },
    #[error("Experiment(name={name}) already exists. Error: experiment names are unique, also among deleted experiments")]
    ExperimentNameExists { name: String },
    #[error("Cannot rename a non-active experiment {experiment_id}")]
    ExperimentNotActiveForRename { experiment_id: String },
    #[error("The experiment {experiment_id} must be in the 'active' state. Current state is deleted.")]
    ExperimentNotActive { experiment_id: String },
    #[error("Run with id={run_id} not found")]
    RunNotFound { run_id: String },
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
    LoggedModelNotFound { model_id: String },
    #[error("No tag with key: {key} in logged model {model_id}")]
    LoggedModelTagNotFound { model_id: String, key: String },
    #[error("Registered Model with name={name} not found")]
    RegisteredModelNotFound { name: String },
    #[error("Registered Model (name={name}) already exists.")]
    RegisteredModelExists { name: String },
    #[error("Model Version (name={name}, version={version}) not found")]
    ModelVersionNotFound { name: String, version: i64 },
    #[error("Promotion request {id} not found")]
    PromotionNotFound { id: i64 },
    #[error("User '{name}' already exists")]
    UserExists { name: String },
    #[error("User '{name}' not found")]
    UserNotFound { name: String },
    #[error("Token {id} not found")]
    TokenNotFound { id: String },
    #[error("No {kind} named '{name}'{version_suffix}", version_suffix = version.map(|v| format!(" at version {v}")).unwrap_or_default())]
    FeatureDefinitionNotFound { kind: &'static str, name: String, version: Option<i64> },
    #[error("Training dataset '{id}' not found")]
    TrainingDatasetNotFound { id: String },
    #[error("A training dataset named '{name}' already exists")]
    TrainingDatasetExists { name: String },
    #[error("Webhook with ID {id} not found.")]
    WebhookNotFound { id: String },
    #[error("Webhook delivery {id} not found.")]
    DeliveryNotFound { id: String },
    /// A compare-and-set lost: the state changed since the caller read it.
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    InvalidArgument { message: String },
    #[error("the metadata store is unavailable")]
    Unavailable { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("the metadata store failed")]
    Internal { source: Box<dyn std::error::Error + Send + Sync> },
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument { message: message.into() }
    }

    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Internal { source: source.into() }
    }
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::ExperimentNotFound { .. }
            | Error::RunNotFound { .. }
            | Error::RunTagNotFound { .. }
            | Error::ExperimentTagNotFound { .. }
            | Error::LoggedModelNotFound { .. }
            | Error::LoggedModelTagNotFound { .. }
            | Error::RegisteredModelNotFound { .. }
            | Error::ModelVersionNotFound { .. }
            | Error::PromotionNotFound { .. }
            | Error::WebhookNotFound { .. }
            | Error::UserNotFound { .. }
            | Error::TokenNotFound { .. }
            | Error::DeliveryNotFound { .. }
            | Error::FeatureDefinitionNotFound { .. }
            | Error::TrainingDatasetNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            Error::ExperimentNameExists { .. }
            | Error::RegisteredModelExists { .. }
            | Error::UserExists { .. }
            | Error::TrainingDatasetExists { .. } => ErrorCode::ResourceAlreadyExists,
            Error::Conflict { .. } => ErrorCode::ResourceConflict,
            Error::ExperimentNotActiveForRename { .. } => ErrorCode::InvalidState,
            Error::ExperimentNotActive { .. } | Error::RunNotActive { .. } | Error::ParamChanged { .. } | Error::InvalidArgument { .. } => {
                ErrorCode::InvalidParameterValue
            }
            Error::Unavailable { .. } => ErrorCode::TemporarilyUnavailable,
            Error::Internal { .. } => ErrorCode::InternalError,
        }
    }
}
