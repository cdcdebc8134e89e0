//! Errors of the tracking service; each keeps the code of the error it wraps.

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
    #[error(transparent)]
    Blob(#[from] plinth_blob::Error),
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
            Error::Blob(e) => e.error_code(),
        }
    }
}
