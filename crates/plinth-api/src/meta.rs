//! Server-level routes: `/health` (the process answers), `/ready` (writes can succeed now),
//! `/version`, and MLflow 3's `server-info`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(crate::readiness::ready))
        .route("/version", get(|State(s): State<AppState>| async move { s.version }))
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
}

async fn server_info(State(_s): State<AppState>) -> Json<Value> {
    Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": true,
        "multipart_downloads_enabled": false,
    }))
}
