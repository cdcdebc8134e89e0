//! Errors of the storage ports, each mapped to a stable code. Each port owns its own "not found"
//! and "already exists" variants (`TrackingError` in `tracking.rs`, `RegistryError`, `AuthError`,
//! `FeaturesError`, `WebhookError`, `ServingError`, `JobsError`, `SweepsError`), so a new port adds its group and one variant here; the
//! variants every port shares (conflicts, invalid arguments, an unavailable or failed database)
//! are this enum's own.

use plinth_core::{ErrorCode, HasErrorCode};

use crate::auth::AuthError;
use crate::features::FeaturesError;
use crate::jobs::JobsError;
use crate::registry::RegistryError;
use crate::serving::ServingError;
use crate::sweeps::SweepsError;
use crate::tracking::TrackingError;
use crate::webhooks::WebhookError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tracking(#[from] TrackingError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Features(#[from] FeaturesError),
    #[error(transparent)]
    Webhooks(#[from] WebhookError),
    #[error(transparent)]
    Serving(#[from] ServingError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Sweeps(#[from] SweepsError),
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
            Error::Tracking(e) => e.error_code(),
            Error::Registry(e) => e.error_code(),
            Error::Auth(e) => e.error_code(),
            Error::Features(e) => e.error_code(),
            Error::Webhooks(e) => e.error_code(),
            Error::Serving(e) => e.error_code(),
            Error::Jobs(e) => e.error_code(),
            Error::Sweeps(e) => e.error_code(),
            Error::Conflict { .. } => ErrorCode::ResourceConflict,
            Error::InvalidArgument { .. } => ErrorCode::InvalidParameterValue,
            Error::Unavailable { .. } => ErrorCode::TemporarilyUnavailable,
            Error::Internal { .. } => ErrorCode::InternalError,
        }
    }
}
