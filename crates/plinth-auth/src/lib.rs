//! Identities, credentials and permission checks.
//!
//! `AuthService` authenticates requests (HTTP Basic with a password or an API token, as the MLflow
//! client sends with `MLFLOW_TRACKING_USERNAME`/`PASSWORD`; `Authorization: Bearer <token>`, as it
//! sends with `MLFLOW_TRACKING_TOKEN`) and administers users, service accounts and tokens.
//! Passwords are argon2id PHC strings (`password.rs`); tokens are `plt_<id>_<secret>` with only the
//! secret's SHA-256 stored (`token.rs`); failed sign-ins are limited per user and per source
//! address (`limiter.rs`). Every failure answers the same `UNAUTHENTICATED`, so callers cannot tell
//! an unknown user from a wrong password.

mod error;
pub mod limiter;
pub mod password;
mod service;
pub mod token;

pub use error::{Error, Result};
pub use service::{AuthConfig, AuthService, Principal, UserChange, effective_level};
