//! The only crate that knows wire formats: axum routers, request parsing, JSON rendering, errors.
//!
//! `router` mounts MLflow's tracking and model registry REST APIs under `/api/2.0/mlflow` and
//! `/ajax-api/2.0/mlflow`, Plinth's own API (gates, promotions, lineage, audit, webhooks) under
//! `/api/plinth/v1` (the feature store under `/api/plinth/v1/features`),
//! the artifact proxy under `/api/2.0/mlflow-artifacts`, and the server's own `/health`,
//! `/version`, `/metrics` (Prometheus) and `/api/3.0/mlflow/server-info`. Handlers are thin: they parse the request
//! into service arguments, call `plinth_tracking::TrackingService`, and render the answer.
//! Every error leaves as MLflow's `{"error_code", "message"}` with MLflow's status.

mod access;
mod artifacts;
mod auth;
mod batch;
mod downloads;
mod error;
mod feast;
mod features;
mod fields;
mod identity;
mod json;
mod meta;
pub mod metrics;
mod mlflow;
mod plinth_v1;
mod readiness;
mod references;
mod registry;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use plinth_auth::AuthService;
use plinth_features::FeatureService;
use plinth_registry::RegistryService;
use plinth_tracking::TrackingService;
use tower_http::catch_panic::CatchPanicLayer;

pub use access::route_table;
pub use error::ApiError;
pub use readiness::Readiness;

/// Limits the HTTP layer enforces; no `Default`: the server decides.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest JSON request body, in bytes. Artifact uploads are streamed and not bound by it.
    pub max_request_bytes: usize,
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub tracking: Arc<TrackingService>,
    pub registry: Arc<RegistryService>,
    pub auth: Arc<AuthService>,
    pub features: Arc<FeatureService>,
    /// Largest entity upload of a historical retrieval, in bytes (`features.max_entity_upload_mb`).
    pub max_entity_bytes: u64,
    /// Whether every request must carry credentials (`auth.enabled`).
    pub auth_enabled: bool,
    /// `ApiLimits::max_request_bytes`, for the permission check that reads request fields.
    pub max_request_bytes: usize,
    pub version: &'static str,
    /// Whether writes can succeed now (storage space), for `GET /ready` and `/metrics`.
    pub readiness: Arc<Readiness>,
    /// Whether the artifact proxy is on (artifacts live under `mlflow-artifacts:`); when clients write
    /// to the artifact root themselves, the proxy routes answer `ENDPOINT_NOT_FOUND`.
    pub serve_artifacts: bool,
}

/// The whole HTTP surface.
pub fn router(state: AppState, limits: &ApiLimits) -> Router {
    let tracking = mlflow::routes().merge(registry::routes());
    let artifacts = artifacts::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), artifacts::require_serving));
    Router::new()
        .nest("/api/2.0/mlflow", tracking.clone())
        .nest("/ajax-api/2.0/mlflow", tracking)
        .nest("/api/plinth/v1", plinth_v1::routes().merge(auth::routes()).merge(features::routes()))
        .merge(meta::routes())
        .merge(downloads::routes())
        .merge(metrics::routes())
        .merge(feast::routes())
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        // Entity uploads are spooled to disk under their own limit; artifact bodies are streams
        // of any size: no body limit.
        .nest("/api/plinth/v1", features::stream_routes())
        .nest("/api/2.0/mlflow-artifacts", artifacts.clone())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts)
        .fallback(error::endpoint_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), readiness::watch))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}
