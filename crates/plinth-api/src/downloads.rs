//! The download routes MLflow's web UI and some tools use, at the server's root:
//! `GET /get-artifact?run_id=…&path=…` (or `run_uuid`) serves a file of a run's artifacts, and
//! `GET /model-versions/get-artifact?name=…&version=…&path=…` a file of a model version's. Both
//! stream the file with MLflow's content types, as an attachment with `nosniff`, and only from
//! artifacts this server stores: a path leaving the artifact root is "Invalid path", and a
//! location elsewhere (a direct `file://` or `s3://` root) is not the server's to read.

use axum::extract::State;
use axum::response::Response;

use crate::access::{Locate as L, Need as N};
use crate::fields::MlflowRequest;
use crate::references::{self, Reference};
use crate::routes::Routes;
use crate::{ApiError, AppState};
use plinth_core::auth::Level::Read;

pub(crate) fn routes() -> Routes {
    Routes::new()
        // The web UI's downloads, at the root: a run's files, a model version's files.
        .get("/get-artifact", N::Experiment(Read, L::Run("run_id")), run_artifact)
        // READ on the model here; the handler also needs READ on the experiment holding the files.
        .get("/model-versions/get-artifact", N::Model(Read, L::Field("name")), model_version_artifact)
}

async fn run_artifact(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Result<Response, ApiError> {
    let (path, object) = s.tracking.open_run_artifact(&f.run_id()?, &f.str("path")?).await?;
    Ok(crate::artifacts::file_response(&path, object))
}

async fn model_version_artifact(
    State(s): State<AppState>,
    p: Option<axum::Extension<plinth_auth::Principal>>,
    MlflowRequest(f): MlflowRequest,
) -> Result<Response, ApiError> {
    let name = f.str("name")?;
    let version = f.str("version")?;
    let path = f.str("path")?;
    let location = s.registry.get_download_uri(&name, &version).await?;
    // READ on the model lets a caller see the version; its files lie in an experiment's artifact
    // tree, which needs READ of its own (as loading `models:/…` through the proxy does).
    references::require_readable(&s, p.as_ref().map(|e| &e.0), [Reference::ArtifactUri(location.clone())]).await?;
    let (path, object) = s.tracking.open_artifact_uri(&location, &path).await?;
    Ok(crate::artifacts::file_response(&path, object))
}
