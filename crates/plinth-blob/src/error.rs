//! Errors of artifact storage.

use plinth_core::{ErrorCode, HasErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rendered exactly as MLflow renders it.
    #[error("Invalid path")]
    InvalidPath,
    #[error("No such file or directory: '{path}'")]
    NotFound { path: String },
    #[error("'{path}' is a directory")]
    IsDirectory { path: String },
    #[error("no multipart upload with id '{upload_id}'")]
    UploadNotFound { upload_id: String },
    #[error("part {part_number} of the upload was not uploaded or its etag does not match")]
    PartMismatch { part_number: u32 },
    #[error("reading the request body failed")]
    Body(#[source] std::io::Error),
    #[error("artifact storage failed")]
    Io(#[source] std::io::Error),
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::InvalidPath | Error::IsDirectory { .. } | Error::PartMismatch { .. } | Error::Body(_) => {
                ErrorCode::InvalidParameterValue
            }
            Error::NotFound { .. } | Error::UploadNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            Error::Io(_) => ErrorCode::InternalError,
        }
    }
}
