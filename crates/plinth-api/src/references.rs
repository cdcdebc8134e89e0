//! References a caller stores, checked in one place against what the caller may read.
//!
//! A stored reference lends whatever it names to later reads that trust it: a model version's
//! run feeds its gate checks and lineage, a logged model's source run becomes a version's run, a
//! metric's `model_id` attaches it to a logged model. So with auth on, every route that stores a
//! reference calls `require_readable` before the service writes: the caller must be able to
//! read, directly, each resource a reference names. A reference to something that does not
//! exist is refused like one the caller may not read (no probing for ids), with one exception:
//! a model version's run may be one this server does not have (registries copied between servers,
//! versions registered from runs tracked elsewhere), as MLflow allows. Such a version has no run
//! linkage: its lineage says the run is unavailable and gate conditions over run facts fail
//! closed. A version's run that does exist must be readable. (That difference tells a caller who
//! already knows a run's id whether it exists; run ids are random 128-bit values, so it cannot be
//! used to find any.)
//!
//! | reference | readable when the caller may read |
//! | --- | --- |
//! | run | the run's experiment |
//! | logged model | the logged model's experiment |
//! | registered model (or one of its versions) | the registered model |
//! | artifact URI inside the server's artifact root | the experiment whose tree it is in |
//! | artifact URI outside the root | (not the server's to guard) |
//!
//! Derived reads apply the same rule at read time: `Scope` gives the registry the caller's
//! readable experiments, so a gate report never shows a value from a run the caller may not read.

use std::collections::HashSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use plinth_auth::Principal;
use plinth_core::ErrorCode;
use plinth_core::auth::{Level, ResourceKind};
use plinth_registry::{VersionSource, Viewer};

use crate::{ApiError, AppState};

/// What a stored value points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Reference {
    Run(String),
    /// A model version's run (`run_id`, or a `runs:/` source): one this server does not have is
    /// no reference at all; one it has must be readable.
    VersionRun(String),
    LoggedModel(String),
    RegisteredModel(String),
    /// An artifact URI (a version's source, a dataset's location).
    ArtifactUri(String),
}

/// The run tag that makes a run the child of another.
pub(crate) const PARENT_RUN_TAG: &str = "mlflow.parentRunId";

impl Reference {
    /// The references a model version's fields make: its source, `run_id` and `model_id`. A source
    /// that does not parse makes none; the registry refuses it with its own message.
    pub(crate) fn of_version(source: &str, run_id: Option<&str>, model_id: Option<&str>) -> Vec<Reference> {
        let mut refs: Vec<Reference> =
            run_id.filter(|it| !it.is_empty()).map(|it| Reference::VersionRun(it.to_owned())).into_iter().collect();
        refs.extend(model_id.filter(|it| !it.is_empty()).map(|it| Reference::LoggedModel(it.to_owned())));
        match VersionSource::parse(source) {
            Ok(VersionSource::Run { run_id, .. }) => refs.push(Reference::VersionRun(run_id.as_str().to_owned())),
            Ok(VersionSource::LoggedModel(id)) => refs.push(Reference::LoggedModel(id.as_str().to_owned())),
            Ok(VersionSource::ModelVersion { name, .. }) => refs.push(Reference::RegisteredModel(name)),
            // Refused by the registry unless inside the named run's own artifacts: the run is the reference.
            Ok(VersionSource::LocalPath { .. }) | Err(_) => {}
            Ok(VersionSource::Uri { .. }) => refs.push(Reference::ArtifactUri(source.to_owned())),
        }
        refs
    }

    /// The references in run tags: a parent run.
    pub(crate) fn of_run_tags<'a>(tags: impl IntoIterator<Item = &'a plinth_core::tracking::KeyValue>) -> Vec<Reference> {
        tags.into_iter().filter(|t| t.key == PARENT_RUN_TAG && !t.value.is_empty()).map(|t| Reference::Run(t.value.clone())).collect()
    }
}

fn refused(p: &Principal) -> ApiError {
    ApiError::new(
        ErrorCode::PermissionDenied,
        format!("Permission denied: user '{}' may not reference a run, logged model, model or artifact it cannot read", p.name),
    )
}

/// With auth on, refuses unless the caller may read everything `refs` name. Admins, and every
/// caller with auth off, may reference anything.
pub(crate) async fn require_readable(
    s: &AppState,
    p: Option<&Principal>,
    refs: impl IntoIterator<Item = Reference>,
) -> Result<(), ApiError> {
    if !s.auth_enabled {
        return Ok(());
    }
    let Some(p) = p else { return Err(ApiError::new(ErrorCode::Unauthenticated, "Sign in first")) };
    if p.is_admin() {
        return Ok(());
    }
    let unique: HashSet<Reference> = refs.into_iter().collect();
    for reference in unique {
        let (kind, id) = match resolve(s, &reference).await {
            Ok(Some(resource)) => resource,
            Ok(None) => continue,
            Err(e) if matches!(e.code(), ErrorCode::ResourceDoesNotExist | ErrorCode::InvalidParameterValue) => {
                return Err(refused(p));
            }
            Err(e) => return Err(e),
        };
        if !s.auth.allows(p, kind, &id, Level::Read).await? {
            return Err(refused(p));
        }
    }
    Ok(())
}

/// The resource whose READ grant covers `reference`; `None` for what the server does not guard.
async fn resolve(s: &AppState, reference: &Reference) -> Result<Option<(ResourceKind, String)>, ApiError> {
    Ok(match reference {
        Reference::Run(id) => Some((ResourceKind::Experiment, s.tracking.get_run(id).await?.info.experiment_id.as_str().to_owned())),
        Reference::VersionRun(id) => match s.tracking.get_run(id).await.map_err(ApiError::from) {
            Ok(run) => Some((ResourceKind::Experiment, run.info.experiment_id.as_str().to_owned())),
            Err(e) if e.code() == ErrorCode::ResourceDoesNotExist => None,
            Err(e) => return Err(e),
        },
        Reference::LoggedModel(id) => {
            Some((ResourceKind::Experiment, s.tracking.get_logged_model(id, true).await?.experiment_id.as_str().to_owned()))
        }
        Reference::RegisteredModel(name) => Some((ResourceKind::RegisteredModel, name.clone())),
        Reference::ArtifactUri(uri) => {
            s.tracking.config().artifact_root.experiment_of(uri).map(|experiment| (ResourceKind::Experiment, experiment))
        }
    })
}

/// With auth on, who may choose an experiment's `artifact_location`: admins anywhere; nobody
/// else, since a place inside the artifact root is another experiment's tree (or the root
/// itself) and a place outside it is the server's file system or storage account. Others get
/// the place the server assigns.
pub(crate) fn require_location_choice(s: &AppState, p: Option<&Principal>, location: Option<&str>) -> Result<(), ApiError> {
    let Some(location) = location.filter(|it| !it.is_empty()) else { return Ok(()) };
    match p {
        _ if !s.auth_enabled => Ok(()),
        Some(p) if p.is_admin() => Ok(()),
        _ if s.tracking.config().artifact_root.experiment_of(location).is_some() => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "An artifact_location inside the server's artifact root is assigned by the server: leave artifact_location empty",
        )),
        _ => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "Only admins may give an experiment an artifact_location outside the server's artifact root",
        )),
    }
}

/// The caller's read scope over experiments, for derived reads (gate reports).
pub(crate) struct Scope(pub(crate) Viewer);

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Scope, ApiError> {
        let principal = parts.extensions.get::<Principal>();
        Ok(Scope(match crate::auth::readable(s, principal, ResourceKind::Experiment).await? {
            None => Viewer::everything(),
            Some(experiments) => Viewer::limited_to(experiments),
        }))
    }
}
