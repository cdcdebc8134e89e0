//! Errors of the feature store; each keeps the code of the error it wraps.

use plinth_core::{ErrorCode, HasErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition, a request or an input file breaks a rule; the message names what and where.
    #[error("{message}")]
    Invalid { message: String },
    /// Several problems found at once (an apply reports every problem of the repository).
    #[error("{}", problems_message(.0))]
    Problems(Vec<String>),
    #[error("{message}")]
    NotFound { message: String },
    /// The request is valid but the state does not allow it (a view that is not online, a push
    /// source without an offline directory).
    #[error("{message}")]
    Conflict { message: String },
    #[error(transparent)]
    Store(#[from] plinth_store::Error),
    /// A failure of the offline engine that is not the caller's fault.
    #[error("the offline feature engine failed: {0}")]
    Engine(#[source] datafusion::error::DataFusionError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the online store failed: {message}")]
    Online { message: String },
    #[error("the online store is unavailable: {message}")]
    OnlineUnavailable { message: String },
}

fn problems_message(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => {
            let mut out = format!("{} problems:", many.len());
            for (idx, p) in many.iter().enumerate() {
                out.push_str(&format!(" ({}) {p};", idx + 1));
            }
            out.pop();
            out
        }
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid { message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound { message: message.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Error {
        Error::Engine(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Error {
        Error::Engine(datafusion::error::DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::Invalid { .. } | Error::Problems(_) => ErrorCode::InvalidParameterValue,
            Error::NotFound { .. } => ErrorCode::ResourceDoesNotExist,
            Error::Conflict { .. } => ErrorCode::ResourceConflict,
            Error::Store(e) => e.error_code(),
            Error::Engine(_) | Error::Io { .. } | Error::Online { .. } => ErrorCode::InternalError,
            Error::OnlineUnavailable { .. } => ErrorCode::TemporarilyUnavailable,
        }
    }
}
