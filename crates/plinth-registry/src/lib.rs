//! The model registry with MLflow's semantics, plus what MLflow's open-source registry lacks:
//! promotion gates, approvals, lineage, an audit trail and webhooks.
//!
//! `RegistryService` is what the HTTP layer calls. It validates whole requests before the first
//! write, resolves model version sources (`runs:/`, `models:/m-…`, `models:/<name>/<version>`,
//! plain URIs) to storage locations, and guards every route that can move an alias or a stage
//! with the target's promotion gate (`gate.rs`: the condition grammar and its evaluation).
//! Gated moves are compare-and-set on the current holder, so two racing promotions cannot both
//! pass a comparison with the same holder. Every change and every refusal is appended to the
//! audit trail; registry events go to the webhook outbox, which `webhooks::Dispatcher` delivers.

mod error;
pub mod gate;
mod service;
mod source;
pub mod webhooks;

pub use error::{Error, Result};
pub use gate::Viewer;
pub use service::{
    CreateVersion, GateReport, Lineage, NewWebhook, PromotionAsk, PromotionOutcome, RegistryConfig, RegistryService, SearchRequest,
};
pub use source::VersionSource;
