//! `ApiError`: any error with a code, rendered as MLflow's JSON error with MLflow's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plinth_core::{ErrorCode, HasErrorCode};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// A write refused for lack of space (the readiness state learns of it from the response).
    storage_full: bool,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), storage_full: false }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidParameterValue, message)
    }

    /// Wraps any coded error. Internal errors are logged here, once, with their whole chain, and
    /// answered with a generic message and a reference, so no SQL text or path reaches a client.
    pub fn from_error<E: HasErrorCode + std::error::Error + 'static>(err: E) -> ApiError {
        // A full or read-only disk is a state the client is told about plainly: nothing was written, retry later.
        if let Some(fault) = plinth_core::StorageFault::in_chain(&err) {
            tracing::warn!(error = %chain_of(&err), fault = %fault, "A write was refused because of the server's storage.");
            let storage_full = fault == plinth_core::StorageFault::Full;
            return ApiError { storage_full, ..ApiError::new(ErrorCode::TemporarilyUnavailable, fault.message()) };
        }
        let code = err.error_code();
        if code.is_internal() || code == ErrorCode::TemporarilyUnavailable {
            let reference = uuid::Uuid::new_v4().simple().to_string();
            let chain = chain_of(&err);
            tracing::error!(error = %chain, reference = %reference, code = code.name(), "Request failed.");
            let message = if code.is_internal() {
                format!("internal error; reference {reference} in the server log")
            } else {
                format!(
                    "temporarily unavailable: a service the server depends on did not answer in time; retry shortly (reference {reference} in the server log)"
                )
            };
            return ApiError::new(code, message);
        }
        ApiError::new(code, err.to_string())
    }
}

/// An error and its sources, joined for the log.
fn chain_of(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(it) = source {
        chain.push_str(": ");
        chain.push_str(&it.to_string());
        source = it.source();
    }
    chain
}

impl<E: HasErrorCode + std::error::Error + 'static> From<E> for ApiError {
    fn from(err: E) -> ApiError {
        ApiError::from_error(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error_code": self.code.name(), "message": self.message });
        let mut res = (status, axum::Json(body)).into_response();
        if self.storage_full {
            res.extensions_mut().insert(crate::readiness::RefusedForSpace);
        }
        res
    }
}

pub(crate) async fn endpoint_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::EndpointNotFound, format!("No API endpoint at path {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let body = serde_json::json!({
        "error_code": ErrorCode::BadRequest.name(),
        "message": format!("Method {method} is not allowed at path {}", uri.path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// A panicking handler fails only its own request.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail =
        panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("unknown panic");
    let reference = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(panic = detail, reference = %reference, "Handler panicked.");
    ApiError::new(ErrorCode::InternalError, format!("internal error; reference {reference} in the server log")).into_response()
}
