//! Errors of the registry service; each keeps the code of the error it wraps.

use plinth_core::validation::InvalidParameter;
use plinth_core::{ErrorCode, HasErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidParameter),
    #[error("{0}")]
    Filter(#[from] plinth_filter::ParseError),
    #[error(transparent)]
    Store(#[from] plinth_store::Error),
    /// A promotion gate refused the move; `failures` lists every failed condition.
    #[error("{}", gate_message(.model, .target, *.version, .failures))]
    GateFailed { model: String, target: String, version: i64, failures: Vec<String> },
    /// The target's gate needs approvals, which a direct move cannot carry.
    #[error(
        "Moving '{target}' of registered model '{model}' needs {required} approval(s) under its promotion gate; request a promotion instead (POST /api/plinth/v1/promotions or `plinth models promote --request`)"
    )]
    ApprovalRequired { model: String, target: String, required: u32 },
    #[error(
        "Stage transitions to {stage} of registered model '{model}' need {required} approval(s) under the gate 'stage:{}', and a stage transition cannot carry approvals; promote an alias through a promotion request instead, or change the gate",
        .stage.to_ascii_lowercase()
    )]
    StageApprovalRequired { model: String, stage: String, required: u32 },
    #[error(
        "Alias '{alias}' of registered model '{model}' is guarded by a promotion gate and cannot be {what}; delete the gate first (that is recorded in the audit trail)"
    )]
    GatedAliasRemoval { model: String, alias: String, what: String },
    #[error("Latest version not found for model {name}.")]
    NoLatestVersion { name: String },
    #[error("Registered model '{model}' has no promotion gate on '{target}'")]
    GateNotFound { model: String, target: String },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    Conflict { message: String },
}

fn gate_message(model: &str, target: &str, version: i64, failures: &[String]) -> String {
    let mut out = format!("The promotion gate of '{target}' on registered model '{model}' refused version {version}:");
    for (idx, f) in failures.iter().enumerate() {
        out.push_str(&format!(" ({}) {f};", idx + 1));
    }
    out.pop();
    out.push('.');
    out
}

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(InvalidParameter::new(message))
    }
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::Invalid(e) => e.error_code(),
            Error::Filter(_) => ErrorCode::InvalidParameterValue,
            Error::Store(e) => e.error_code(),
            Error::GateFailed { .. }
            | Error::ApprovalRequired { .. }
            | Error::StageApprovalRequired { .. }
            | Error::GatedAliasRemoval { .. } => ErrorCode::InvalidStateTransition,
            Error::NoLatestVersion { .. } => ErrorCode::ResourceDoesNotExist,
            Error::GateNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            Error::Forbidden { .. } => ErrorCode::PermissionDenied,
            Error::Conflict { .. } => ErrorCode::ResourceConflict,
        }
    }
}
