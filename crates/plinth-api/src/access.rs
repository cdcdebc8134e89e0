//! Who may call what: every route's permission in one table (`NEEDS`), checked for every request
//! when auth is on. A route the table does not declare is denied, and a test reads the routers'
//! sources and fails for any route without a declaration.
//!
//! Per-resource checks find the resource the way the handler will: a field of the request (query
//! string for GET, JSON body otherwise), a path parameter, a run's experiment, a logged model's
//! experiment, the experiment of a proxied artifact path, a promotion request's model.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use plinth_auth::Principal;
use plinth_core::auth::{Level, ResourceKind, Role};
use plinth_core::{ErrorCode, HasErrorCode};

use crate::fields::Fields;
use crate::{ApiError, AppState};

/// How a route finds its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locate {
    /// A request field holding the resource id (experiment id, model name).
    Field(&'static str),
    /// A request field holding an experiment id; absent means the Default experiment `0`.
    FieldOrDefault(&'static str),
    /// A request field holding an experiment name.
    ExperimentName(&'static str),
    /// A request field holding a run id: the run's experiment.
    Run(&'static str),
    /// A request field holding run ids: every run's experiment.
    Runs(&'static str),
    /// A request field holding experiment ids: every one.
    Experiments(&'static str),
    /// A path parameter holding the resource id.
    Path(&'static str),
    /// A path parameter holding a run id.
    RunPath(&'static str),
    /// A path parameter holding a logged model id: its experiment.
    LoggedModelPath(&'static str),
    /// The proxied artifact path (`{*path}` or the `path` query field) starts with an experiment id.
    ArtifactPath,
    /// A path parameter holding a promotion request id: its model.
    PromotionPath(&'static str),
    /// A path parameter holding a multipart upload id: the experiment of the path it uploads to.
    UploadPath(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in principal; the handler limits what it shows or does to the caller's own.
    SignedIn,
    Admin,
    /// Creating a top-level resource: members and admins.
    Create,
    Experiment(Level, Locate),
    Model(Level, Locate),
    /// `GET /promotions`: a model's requests need READ on it; all requests need admin.
    PromotionList,
}

use Level::{Edit, Manage, Read};
use Locate::*;
use Need::*;

/// Every route: (method, path as mounted, need). MLflow routes are listed once under
/// `/api/2.0/mlflow` and hold for `/ajax-api/2.0/mlflow` too; the artifact proxy likewise.
pub(crate) const NEEDS: &[(&str, &str, Need)] = &[
    ("GET", "/", Public),
    ("GET", "/health", Public),
    ("GET", "/ready", Public),
    ("GET", "/version", Public),
    // Prometheus scrapes authenticate like any client (a bearer token) when auth is on.
    ("GET", "/metrics", SignedIn),
    ("GET", "/api/3.0/mlflow/server-info", Public),
    ("GET", "/ajax-api/3.0/mlflow/server-info", Public),
    // Experiments.
    ("POST", "/api/2.0/mlflow/experiments/create", Create),
    ("GET", "/api/2.0/mlflow/experiments/get", Experiment(Read, Field("experiment_id"))),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name", Experiment(Read, ExperimentName("experiment_name"))),
    ("POST", "/api/2.0/mlflow/experiments/search", SignedIn),
    ("GET", "/api/2.0/mlflow/experiments/search", SignedIn),
    ("POST", "/api/2.0/mlflow/experiments/update", Experiment(Edit, Field("experiment_id"))),
    ("POST", "/api/2.0/mlflow/experiments/delete", Experiment(Manage, Field("experiment_id"))),
    ("POST", "/api/2.0/mlflow/experiments/restore", Experiment(Manage, Field("experiment_id"))),
    ("POST", "/api/2.0/mlflow/experiments/set-experiment-tag", Experiment(Edit, Field("experiment_id"))),
    ("POST", "/api/2.0/mlflow/experiments/delete-experiment-tag", Experiment(Edit, Field("experiment_id"))),
    // Runs.
    ("POST", "/api/2.0/mlflow/runs/create", Experiment(Edit, FieldOrDefault("experiment_id"))),
    ("GET", "/api/2.0/mlflow/runs/get", Experiment(Read, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/update", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/delete", Experiment(Manage, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/restore", Experiment(Manage, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/search", Experiment(Read, Experiments("experiment_ids"))),
    ("POST", "/api/2.0/mlflow/runs/log-metric", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/log-parameter", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/set-tag", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/delete-tag", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/log-batch", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/log-inputs", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/outputs", Experiment(Edit, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/runs/log-model", Experiment(Edit, Run("run_id"))),
    ("GET", "/api/2.0/mlflow/metrics/get-history", Experiment(Read, Run("run_id"))),
    ("GET", "/api/2.0/mlflow/metrics/get-history-bulk", Experiment(Read, Runs("run_id"))),
    ("GET", "/api/2.0/mlflow/metrics/get-history-bulk-interval", Experiment(Read, Runs("run_ids"))),
    ("GET", "/api/2.0/mlflow/artifacts/list", Experiment(Read, Run("run_id"))),
    ("POST", "/api/2.0/mlflow/experiments/search-datasets", Experiment(Read, Experiments("experiment_ids"))),
    // The web UI's downloads, at the root: a run's files, a model version's files.
    ("GET", "/get-artifact", Experiment(Read, Run("run_id"))),
    // READ on the model here; the handler also needs READ on the experiment holding the files.
    ("GET", "/model-versions/get-artifact", Model(Read, Field("name"))),
    // Logged models.
    ("POST", "/api/2.0/mlflow/logged-models", Experiment(Edit, Field("experiment_id"))),
    ("POST", "/api/2.0/mlflow/logged-models/search", Experiment(Read, Experiments("experiment_ids"))),
    ("GET", "/api/2.0/mlflow/logged-models/{model_id}", Experiment(Read, LoggedModelPath("model_id"))),
    ("PATCH", "/api/2.0/mlflow/logged-models/{model_id}", Experiment(Edit, LoggedModelPath("model_id"))),
    ("DELETE", "/api/2.0/mlflow/logged-models/{model_id}", Experiment(Manage, LoggedModelPath("model_id"))),
    ("PATCH", "/api/2.0/mlflow/logged-models/{model_id}/tags", Experiment(Edit, LoggedModelPath("model_id"))),
    ("DELETE", "/api/2.0/mlflow/logged-models/{model_id}/tags/{key}", Experiment(Edit, LoggedModelPath("model_id"))),
    ("POST", "/api/2.0/mlflow/logged-models/{model_id}/params", Experiment(Edit, LoggedModelPath("model_id"))),
    ("GET", "/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories", Experiment(Read, LoggedModelPath("model_id"))),
    // Registered models.
    ("POST", "/api/2.0/mlflow/registered-models/create", Create),
    ("GET", "/api/2.0/mlflow/registered-models/get", Model(Read, Field("name"))),
    ("POST", "/api/2.0/mlflow/registered-models/rename", Model(Manage, Field("name"))),
    ("PATCH", "/api/2.0/mlflow/registered-models/update", Model(Edit, Field("name"))),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete", Model(Manage, Field("name"))),
    ("GET", "/api/2.0/mlflow/registered-models/search", SignedIn),
    ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions", Model(Read, Field("name"))),
    ("GET", "/api/2.0/mlflow/registered-models/get-latest-versions", Model(Read, Field("name"))),
    ("POST", "/api/2.0/mlflow/registered-models/set-tag", Model(Edit, Field("name"))),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag", Model(Edit, Field("name"))),
    ("POST", "/api/2.0/mlflow/registered-models/alias", Model(Edit, Field("name"))),
    ("DELETE", "/api/2.0/mlflow/registered-models/alias", Model(Edit, Field("name"))),
    ("GET", "/api/2.0/mlflow/registered-models/alias", Model(Read, Field("name"))),
    // Model versions.
    ("POST", "/api/2.0/mlflow/model-versions/create", Model(Edit, Field("name"))),
    ("GET", "/api/2.0/mlflow/model-versions/get", Model(Read, Field("name"))),
    ("PATCH", "/api/2.0/mlflow/model-versions/update", Model(Edit, Field("name"))),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete", Model(Manage, Field("name"))),
    ("GET", "/api/2.0/mlflow/model-versions/search", SignedIn),
    ("POST", "/api/2.0/mlflow/model-versions/transition-stage", Model(Edit, Field("name"))),
    ("GET", "/api/2.0/mlflow/model-versions/get-download-uri", Model(Read, Field("name"))),
    ("POST", "/api/2.0/mlflow/model-versions/set-tag", Model(Edit, Field("name"))),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag", Model(Edit, Field("name"))),
    // The artifact proxy: paths start with the experiment id.
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", Experiment(Read, ArtifactPath)),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/", Experiment(Read, ArtifactPath)),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{*path}", Experiment(Edit, ArtifactPath)),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/{*path}", Experiment(Read, ArtifactPath)),
    ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/{*path}", Experiment(Edit, ArtifactPath)),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/create/{*path}", Experiment(Edit, ArtifactPath)),
    // A part needs EDIT on the experiment its upload writes to, like every other write.
    ("PUT", "/api/2.0/mlflow-artifacts/mpu/part/{upload_id}/{part_number}", Experiment(Edit, UploadPath("upload_id"))),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/{*path}", Experiment(Edit, ArtifactPath)),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/{*path}", Experiment(Edit, ArtifactPath)),
    // Plinth's own API.
    ("GET", "/api/plinth/v1/registered-models/{name}/gates", Model(Read, Path("name"))),
    ("GET", "/api/plinth/v1/registered-models/{name}/gates/{target}", Model(Read, Path("name"))),
    ("PUT", "/api/plinth/v1/registered-models/{name}/gates/{target}", Model(Manage, Path("name"))),
    ("DELETE", "/api/plinth/v1/registered-models/{name}/gates/{target}", Model(Manage, Path("name"))),
    ("POST", "/api/plinth/v1/registered-models/{name}/gates/{target}/check", Model(Read, Path("name"))),
    ("POST", "/api/plinth/v1/registered-models/{name}/aliases/{alias}/promote", Model(Edit, Path("name"))),
    ("GET", "/api/plinth/v1/registered-models/{name}/versions/{version}/lineage", Model(Read, Path("name"))),
    ("GET", "/api/plinth/v1/runs/{run_id}/model-versions", Experiment(Read, RunPath("run_id"))),
    ("POST", "/api/plinth/v1/promotions", Model(Edit, Field("name"))),
    ("GET", "/api/plinth/v1/promotions", PromotionList),
    ("GET", "/api/plinth/v1/promotions/{id}", Model(Read, PromotionPath("id"))),
    // Reviewing also needs the approver role (checked by the handler).
    ("POST", "/api/plinth/v1/promotions/{id}/approve", Model(Read, PromotionPath("id"))),
    ("POST", "/api/plinth/v1/promotions/{id}/reject", Model(Read, PromotionPath("id"))),
    ("POST", "/api/plinth/v1/promotions/{id}/apply", Model(Edit, PromotionPath("id"))),
    // Only the requester may cancel (checked by the service).
    ("POST", "/api/plinth/v1/promotions/{id}/cancel", Model(Read, PromotionPath("id"))),
    ("GET", "/api/plinth/v1/audit", Admin),
    // The feature store: definitions name files on the server's disk, so planning and applying
    // them is for admins; reading definitions and retrieving features is for anyone signed in.
    ("POST", "/api/plinth/v1/features/plan", Admin),
    ("POST", "/api/plinth/v1/features/apply", Admin),
    ("GET", "/api/plinth/v1/features/definitions", SignedIn),
    ("GET", "/api/plinth/v1/features/definitions/{kind}/{name}", SignedIn),
    ("GET", "/api/plinth/v1/features/definitions/{kind}/{name}/versions", SignedIn),
    ("GET", "/api/plinth/v1/features/applies", SignedIn),
    ("GET", "/api/plinth/v1/features/training-datasets", SignedIn),
    ("GET", "/api/plinth/v1/features/training-datasets/{id}", SignedIn),
    ("GET", "/api/plinth/v1/features/training-datasets/{id}/runs", SignedIn),
    ("POST", "/api/plinth/v1/features/training-datasets/{id}/log-to-run", Experiment(Edit, Run("run_id"))),
    ("GET", "/api/plinth/v1/features/lineage/{kind}/{name}", SignedIn),
    ("POST", "/api/plinth/v1/features/historical", SignedIn),
    ("POST", "/api/plinth/v1/features/materialize", Admin),
    ("GET", "/api/plinth/v1/features/freshness", SignedIn),
    ("POST", "/get-online-features", SignedIn),
    // Pushing writes feature data: members and admins (viewers only read).
    ("POST", "/push", Create),
    ("POST", "/write-to-online-store", Create),
    ("POST", "/materialize", Admin),
    ("POST", "/materialize-incremental", Admin),
    ("POST", "/api/plinth/v1/webhooks", Admin),
    ("GET", "/api/plinth/v1/webhooks", Admin),
    ("GET", "/api/plinth/v1/webhooks/{id}", Admin),
    ("PATCH", "/api/plinth/v1/webhooks/{id}", Admin),
    ("DELETE", "/api/plinth/v1/webhooks/{id}", Admin),
    ("POST", "/api/plinth/v1/webhooks/{id}/test", Admin),
    ("GET", "/api/plinth/v1/webhooks/{id}/deliveries", Admin),
    // Identity administration: the handlers allow admins, and users their own tokens.
    ("GET", "/api/plinth/v1/auth/me", SignedIn),
    ("GET", "/api/plinth/v1/users", Admin),
    ("POST", "/api/plinth/v1/users", Admin),
    ("GET", "/api/plinth/v1/users/{name}", Admin),
    ("PATCH", "/api/plinth/v1/users/{name}", Admin),
    ("GET", "/api/plinth/v1/tokens", SignedIn),
    ("POST", "/api/plinth/v1/tokens", SignedIn),
    ("DELETE", "/api/plinth/v1/tokens/{id}", SignedIn),
    // Grants: MANAGE on the resource (checked by the handler), or admin.
    ("GET", "/api/plinth/v1/grants", SignedIn),
    ("PUT", "/api/plinth/v1/grants", SignedIn),
    ("DELETE", "/api/plinth/v1/grants", SignedIn),
];

/// Every route with the kind of permission it needs (`public`, `signed_in`, `admin`, `create`,
/// `resource`), for tests that walk the whole surface.
pub fn route_table() -> Vec<(&'static str, &'static str, &'static str)> {
    NEEDS
        .iter()
        .map(|(m, p, n)| {
            let kind = match n {
                Public => "public",
                SignedIn => "signed_in",
                Admin | PromotionList => "admin",
                Create => "create",
                Experiment(..) | Model(..) => "resource",
            };
            (*m, *p, kind)
        })
        .collect()
}

/// The table's key for a mounted path: ajax prefixes fold onto the API ones.
fn canonical(path: &str) -> String {
    for (from, to) in [("/ajax-api/2.0/mlflow-artifacts", "/api/2.0/mlflow-artifacts"), ("/ajax-api/2.0/mlflow", "/api/2.0/mlflow")] {
        if let Some(rest) = path.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    path.to_owned()
}

pub(crate) fn need(method: &Method, matched: &str) -> Option<Need> {
    let key = canonical(matched);
    NEEDS.iter().find(|(m, p, _)| *m == method.as_str() && *p == key).map(|(_, _, n)| *n)
}

fn denied(principal: &Principal, what: &str) -> ApiError {
    ApiError::new(ErrorCode::PermissionDenied, format!("Permission denied: user '{}' {what}", principal.name))
}

/// The value of a `{name}` path parameter, from the matched template and the actual path.
fn path_param(template: &str, path: &str, name: &str) -> Option<String> {
    let wanted = format!("{{{name}}}");
    let star = format!("{{*{name}}}");
    let mut actual = path.split('/');
    for seg in template.split('/') {
        if seg == star {
            let rest: Vec<&str> = actual.collect();
            return Some(percent_decode(&rest.join("/")));
        }
        let value = actual.next()?;
        if seg == wanted {
            return Some(percent_decode(value));
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Reads the request's fields the way `MlflowRequest` will, and gives the request back whole.
async fn fields(req: Request, limit: usize) -> Result<(Fields, Request), ApiError> {
    let query = req.uri().query().unwrap_or("").to_owned();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok((Fields::from_query(&query), req));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::invalid("The request body exceeds the server's limit (server.max_request_bytes)"))?;
    // A body the handler would refuse is refused there, with its own message; here it has no fields.
    let fields = Fields::from_request_parts(&bytes, Some(&query)).unwrap_or_else(|_| Fields::from_query(&query));
    Ok((fields, Request::from_parts(parts, Body::from(bytes))))
}

/// Checks the request against its route's need; gives the request back if allowed.
pub(crate) async fn authorize(s: &AppState, principal: &Principal, req: Request) -> Result<Request, ApiError> {
    let Some(matched) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        // No route matched: the fallback answers ENDPOINT_NOT_FOUND.
        return Ok(req);
    };
    let Some(need) = need(req.method(), &matched) else {
        return Err(denied(principal, &format!("may not call {} {matched}: the route declares no permission", req.method())));
    };
    let path = req.uri().path().to_owned();
    match need {
        Public | SignedIn => Ok(req),
        Admin if principal.is_admin() => Ok(req),
        Admin => Err(denied(principal, "is not an admin")),
        Create if principal.role >= Role::Member => Ok(req),
        Create => Err(denied(principal, "may not create resources (viewer)")),
        PromotionList => {
            let (f, req) = fields(req, s.max_request_bytes).await?;
            match f.opt_str("name")? {
                Some(name) => check(s, principal, ResourceKind::RegisteredModel, &name, Read).await.map(|()| req),
                None if principal.is_admin() => Ok(req),
                None => Err(denied(principal, "may list promotion requests only per model (name=…)")),
            }
        }
        Experiment(level, locate) | Model(level, locate) => {
            let kind = if matches!(need, Experiment(..)) { ResourceKind::Experiment } else { ResourceKind::RegisteredModel };
            if principal.is_admin() {
                return Ok(req);
            }
            if let ExperimentName(field) = locate {
                return by_name(s, principal, req, field, level).await;
            }
            let (ids, req) = resources(s, principal, req, &matched, &path, locate).await?;
            if ids.is_empty() {
                return Err(denied(principal, "names no resource this route can check"));
            }
            for id in ids {
                check(s, principal, kind, &id, level).await?;
            }
            Ok(req)
        }
    }
}

async fn check(s: &AppState, principal: &Principal, kind: ResourceKind, id: &str, level: Level) -> Result<(), ApiError> {
    if s.auth.allows(principal, kind, id, level).await? {
        Ok(())
    } else {
        // The message names no resource: an existing one and a missing one are refused alike.
        Err(denied(principal, &format!("lacks {} on this {}", level.as_str(), kind.as_str().replace('_', " "))))
    }
}

/// `experiments/get-by-name`: a name nobody may read is answered as if it did not exist, which is
/// what MLflow's client needs to create it (`mlflow.set_experiment` creates a name only after a
/// `RESOURCE_DOES_NOT_EXIST`). Names are unique across users, so creating a taken name still says
/// it is taken, as in MLflow.
async fn by_name(s: &AppState, principal: &Principal, req: Request, field: &str, level: Level) -> Result<Request, ApiError> {
    let (f, req) = fields(req, s.max_request_bytes).await?;
    let wanted = f.opt_str(field).ok().flatten().unwrap_or_default();
    let not_found = || ApiError::from(plinth_store::Error::ExperimentNotFound { experiment_id: format!("(name='{wanted}')") });
    match s.tracking.get_experiment_by_name(&wanted).await {
        Ok(e) if s.auth.allows(principal, ResourceKind::Experiment, e.experiment_id.as_str(), level).await? => Ok(req),
        Ok(_) => Err(not_found()),
        Err(e) if e.error_code() == ErrorCode::ResourceDoesNotExist => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The resource ids a request touches. A resource that does not exist is passed through as its
/// id, so the caller sees the same refusal whether it exists or not (no probing for names).
async fn resources(
    s: &AppState,
    principal: &Principal,
    req: Request,
    matched: &str,
    path: &str,
    locate: Locate,
) -> Result<(Vec<String>, Request), ApiError> {
    let (f, req) = match locate {
        Path(_) | RunPath(_) | LoggedModelPath(_) | PromotionPath(_) | UploadPath(_) => (Fields::default(), req),
        ArtifactPath if matched.ends_with("{*path}") => (Fields::default(), req),
        _ => fields(req, s.max_request_bytes).await?,
    };
    // A resource that does not exist is refused like one the caller may not read.
    let missing = || denied(principal, "may not use a resource it cannot read");
    let run_experiment = |run: String| async move {
        match s.tracking.get_run(&run).await {
            Ok(r) => Ok(r.info.experiment_id.as_str().to_owned()),
            Err(e) if e.error_code() == ErrorCode::ResourceDoesNotExist || e.error_code() == ErrorCode::InvalidParameterValue => {
                Err(missing())
            }
            Err(e) => Err(ApiError::from(e)),
        }
    };
    let ids = match locate {
        Field(name) => vec![f.opt_str(name).ok().flatten().unwrap_or_default()],
        FieldOrDefault(name) => vec![f.opt_str(name).ok().flatten().filter(|v| !v.is_empty()).unwrap_or_else(|| "0".into())],
        // Handled by `by_name` before this; no ids means refused.
        ExperimentName(_) => Vec::new(),
        // `run_id` falls back to MLflow's older `run_uuid`, as the handlers read it.
        Run("run_id") => vec![run_experiment(f.run_id().unwrap_or_default()).await?],
        Run(name) => vec![run_experiment(f.opt_str(name).ok().flatten().unwrap_or_default()).await?],
        Runs(_) => {
            // The bulk history routes take `run_id` or `run_ids`: both count.
            let mut out = Vec::new();
            let runs: Vec<String> =
                f.str_list("run_id").unwrap_or_default().into_iter().chain(f.str_list("run_ids").unwrap_or_default()).collect();
            if runs.len() > plinth_core::validation::MAX_HISTORY_BULK_RUN_IDS {
                return Err(ApiError::invalid(format!(
                    "At most {} run ids may be given, got {}",
                    plinth_core::validation::MAX_HISTORY_BULK_RUN_IDS,
                    runs.len()
                )));
            }
            for run in runs {
                out.push(run_experiment(run).await?);
            }
            out
        }
        Experiments(name) => f.str_list(name).unwrap_or_default(),
        Path(name) => vec![path_param(matched, path, name).unwrap_or_default()],
        RunPath(name) => vec![run_experiment(path_param(matched, path, name).unwrap_or_default()).await?],
        LoggedModelPath(name) => {
            let id = path_param(matched, path, name).unwrap_or_default();
            match s.tracking.get_logged_model(&id, true).await {
                Ok(m) => vec![m.experiment_id.as_str().to_owned()],
                Err(e) if e.error_code() == ErrorCode::ResourceDoesNotExist || e.error_code() == ErrorCode::InvalidParameterValue => {
                    return Err(missing());
                }
                Err(e) => return Err(e.into()),
            }
        }
        ArtifactPath => {
            let raw = if matched.ends_with("{*path}") { path_param(matched, path, "path") } else { f.opt_str("path").ok().flatten() };
            let raw = raw.unwrap_or_default();
            let first = raw.trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
            if first.is_empty() {
                // The artifact root lists every experiment: admins only.
                return Err(denied(principal, "may not list the artifact root"));
            }
            vec![first]
        }
        UploadPath(name) => {
            let id = path_param(matched, path, name).unwrap_or_default();
            match s.tracking.blobs().multipart_target(&id).await {
                Ok(target) => vec![target.as_str().split('/').next().unwrap_or("").to_owned()],
                Err(e) if e.error_code() == ErrorCode::ResourceDoesNotExist || e.error_code() == ErrorCode::InvalidParameterValue => {
                    return Err(missing());
                }
                Err(e) => return Err(ApiError::from(e)),
            }
        }
        PromotionPath(name) => {
            let id = path_param(matched, path, name).unwrap_or_default();
            let Ok(n) = id.parse::<i64>() else { return Err(missing()) };
            match s.registry.get_promotion_request(n).await {
                Ok(p) => vec![p.model],
                Err(e) if e.error_code() == ErrorCode::ResourceDoesNotExist => return Err(missing()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok((ids, req))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("…", method(…)…)` in the routers' sources, with its mount prefix.
    fn declared_routes() -> Vec<(String, String)> {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mounts: &[(&str, &str)] = &[
            ("mlflow.rs", "/api/2.0/mlflow"),
            ("registry.rs", "/api/2.0/mlflow"),
            ("artifacts.rs", "/api/2.0/mlflow-artifacts"),
            ("plinth_v1.rs", "/api/plinth/v1"),
            ("auth.rs", "/api/plinth/v1"),
            ("features.rs", "/api/plinth/v1"),
            ("meta.rs", ""),
            ("downloads.rs", ""),
            ("feast.rs", ""),
            ("metrics.rs", ""),
        ];
        let mut out = Vec::new();
        for (file, prefix) in mounts {
            let text = std::fs::read_to_string(format!("{src}/{file}")).expect("router source");
            for chunk in text.split(".route(\"").skip(1) {
                let path = chunk.split('"').next().expect("path");
                let call = chunk.split("))\n").next().unwrap_or(chunk);
                for method in ["get", "post", "put", "patch", "delete"] {
                    let called = call.contains(&format!(", {method}("))
                        || call.contains(&format!(".{method}("))
                        || call.contains(&format!("routing::{method}("));
                    if called {
                        out.push((method.to_ascii_uppercase(), format!("{prefix}{path}")));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_declares_its_permission() {
        let routes = declared_routes();
        assert!(routes.len() > 90, "the route scan found only {} routes", routes.len());
        let missing: Vec<_> = routes.iter().filter(|(m, p)| need(&m.parse().expect("method"), p).is_none()).collect();
        assert!(missing.is_empty(), "routes without a permission in access::NEEDS: {missing:?}");
        // And the table names no route that does not exist.
        for (m, p, _) in NEEDS {
            assert!(routes.iter().any(|(rm, rp)| rm == m && rp == p), "NEEDS lists {m} {p}, which no router mounts");
        }
    }

    #[test]
    fn path_params() {
        assert_eq!(path_param("/a/{name}/b", "/a/churn%20model/b", "name").as_deref(), Some("churn model"));
        assert_eq!(path_param("/x/{*path}", "/x/1/abc/f.txt", "path").as_deref(), Some("1/abc/f.txt"));
        assert_eq!(canonical("/ajax-api/2.0/mlflow/runs/get"), "/api/2.0/mlflow/runs/get");
    }
}
