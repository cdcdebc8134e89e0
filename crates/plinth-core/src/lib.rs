//! Plinth's core: id newtypes, domain types, validation rules and the error-code catalogue.
//!
//! This crate does no I/O and nothing async. Every other crate depends on it; it depends on
//! no workspace crate. Types here are deliberately not `Serialize`: wire formats live in
//! `plinth-api`, persisted formats in the storage adapters.

pub mod audit;
pub mod auth;
pub mod error_code;
pub mod fault;
pub mod ids;
pub mod jobs;
pub mod page_token;
pub mod registry;
pub mod serving;
pub mod sweeps;
pub mod time;
pub mod tracking;
pub mod validation;

pub use error_code::{ErrorCode, HasErrorCode};
pub use fault::StorageFault;
