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
mod deployments;
mod downloads;
mod error;
mod feast;
mod features;
mod fields;
mod frame;
mod grpc;
mod identity;
mod invocations;
mod jobs;
mod json;
mod meta;
pub mod metrics;
mod mlflow;
pub mod oip;
mod plinth_v1;
mod readiness;
mod references;
mod registry;
mod routes;

use std::sync::Arc;

use axum::Router;
use plinth_auth::AuthService;
use plinth_features::FeatureService;
use plinth_registry::RegistryService;
use plinth_tracking::TrackingService;
use tower_http::catch_panic::CatchPanicLayer;

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
    pub serving: Arc<plinth_serving::DeploymentService>,
    /// Training jobs; `None` when `[jobs] enabled = false`.
    pub jobs: Option<Arc<plinth_scheduler::JobService>>,
    /// Sweeps over jobs' parameters; `None` when jobs are disabled.
    pub sweeps: Option<Arc<plinth_scheduler::SweepService>>,
    /// Largest code archive a job may carry, in bytes (`jobs.max_code_mb`).
    pub max_code_bytes: u64,
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

/// Every route with its permission: MLflow's tracking and registry APIs (under `/api/2.0/mlflow`
/// and the UI's `/ajax-api/2.0/mlflow`), Plinth's own API, the artifact proxy, the feature store
/// and Feast's routes, and the server's own. JSON bodies are bounded by `max_request_bytes`; entity
/// uploads (spooled to disk under their own limit) and artifact bodies (streams of any size) are not.
fn surface(max_request_bytes: usize) -> routes::Routes {
    let tracking = mlflow::routes().merge(registry::routes());
    let artifacts = artifacts::routes();
    routes::Routes::new()
        .nest("/api/2.0/mlflow", tracking.clone())
        .nest("/ajax-api/2.0/mlflow", tracking)
        .nest("/api/plinth/v1", plinth_v1::routes().merge(auth::routes()).merge(features::routes()))
        .merge(meta::routes())
        .merge(downloads::routes())
        .merge(metrics::routes())
        .merge(feast::routes())
        .merge(deployments::routes())
        .merge(jobs::routes())
        .merge(invocations::routes())
        .merge(grpc::routes())
        .body_limit(max_request_bytes)
        .nest("/api/plinth/v1", features::stream_routes())
        .nest("/api/plinth/v1", jobs::stream_routes())
        .nest("/api/2.0/mlflow-artifacts", artifacts.clone())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts)
}

/// Every route as (method, pattern, kind of permission: `public`, `signed_in`, `admin`, `create`
/// or `resource`), for tests that walk the whole surface.
pub fn route_table() -> Vec<(String, String, &'static str)> {
    surface(0).permissions().entries().into_iter().map(|(method, path, need)| (method.to_string(), path, need.kind())).collect()
}

/// The whole HTTP surface.
pub fn router(state: AppState, limits: &ApiLimits) -> Router {
    let surface = surface(limits.max_request_bytes);
    let guard = auth::Guard { state: state.clone(), permissions: Arc::new(surface.permissions()) };
    surface
        .into_router()
        .fallback(error::endpoint_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(guard, auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), readiness::watch))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once_and_the_router_builds() {
        let table = route_table();
        assert!(table.len() > 150, "only {} routes", table.len());
        // MLflow's routes are served under the API prefix and the web UI's alike.
        for (method, path, kind) in &table {
            if let Some(rest) = path.strip_prefix("/api/2.0/mlflow/") {
                let ajax = format!("/ajax-api/2.0/mlflow/{rest}");
                assert!(table.iter().any(|(m, p, k)| m == method && *p == ajax && k == kind), "{method} {path} has no {ajax}");
            }
        }
        // axum refuses conflicting routes when the router is built.
        let _router = surface(1024).into_router();
    }
}
