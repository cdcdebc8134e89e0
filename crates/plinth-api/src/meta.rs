//! Server-level routes: `/health` (the process answers), `/ready` (writes can succeed now),
//! `/version`, and MLflow 3's `server-info`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::Need as N;
use crate::routes::Routes;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .get("/", N::Public, home)
        .get("/health", N::Public, || async { "OK" })
        .get("/ready", N::Public, crate::readiness::ready)
        .get("/version", N::Public, |State(s): State<AppState>| async move { s.version })
        .get("/api/3.0/mlflow/server-info", N::Public, server_info)
        .get("/ajax-api/3.0/mlflow/server-info", N::Public, server_info)
}

/// `GET /`: until the web UI exists, a short page that says so and points to what there is (the
/// MLflow client prints "View run at http://…/#/experiments/…" links that land here).
async fn home(State(s): State<AppState>) -> axum::response::Html<String> {
    axum::response::Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Plinth</title></head>
<body style="font-family: sans-serif; max-width: 42rem; margin: 3rem auto; line-height: 1.5">
<h1>Plinth {version}</h1>
<p>This server has no web UI yet. It speaks MLflow's REST API: point the <code>mlflow</code> client at it with
<code>MLFLOW_TRACKING_URI</code> set to this address, and use the <code>plinth</code> CLI for the registry, the feature store and the audit trail.</p>
<ul>
<li><code>/api/2.0/mlflow/…</code>: MLflow tracking and model registry</li>
<li><code>/api/plinth/v1/…</code>: promotion gates, approvals, lineage, audit, webhooks, the feature store</li>
<li><a href="/health">/health</a> (alive), <a href="/ready">/ready</a> (writes can succeed), <a href="/version">/version</a></li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics (signed in when auth is on)</li>
</ul>
<p>Documentation: <code>README.md</code> and <code>docs/</code> in Plinth's repository.</p>
</body></html>
"#,
        version = s.version
    ))
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
