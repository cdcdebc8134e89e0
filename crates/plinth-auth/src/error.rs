//! Errors of authentication and identity management.

use plinth_core::validation::InvalidParameter;
use plinth_core::{ErrorCode, HasErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or wrong credentials. One message for every cause, so a caller cannot tell an
    /// unknown user from a wrong password or a revoked token.
    #[error("Invalid credentials: send HTTP Basic (user name with a password or a token) or a Bearer token")]
    Unauthenticated,
    #[error("Too many failed sign-ins; try again later")]
    RateLimited,
    #[error("{message}")]
    Forbidden { message: String },
    #[error(transparent)]
    Invalid(#[from] InvalidParameter),
    #[error(transparent)]
    Store(#[from] plinth_store::Error),
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::RateLimited => ErrorCode::RequestLimitExceeded,
            Error::Forbidden { .. } => ErrorCode::PermissionDenied,
            Error::Invalid(e) => e.error_code(),
            Error::Store(e) => e.error_code(),
        }
    }
}
