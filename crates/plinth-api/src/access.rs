//! Who may call what: every route declares its permission (`Need`) where it is added
//! (`routes::Routes`), and `authorize` checks it for every request when auth is on. A request to a
//! route without a declaration is denied (the builder makes one impossible to write).
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
use crate::routes::Permissions;
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
    Deployment(Level, Locate),
    /// A job queue (submitting to it).
    Queue(Level, Locate),
    /// `GET /promotions`: a model's requests need READ on it; all requests need admin.
    PromotionList,
}

use Level::Read;
use Locate::*;
use Need::*;

impl Need {
    /// The kind of permission, for tests that walk every route: `public`, `signed_in`, `admin`,
    /// `create` or `resource`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Public => "public",
            SignedIn => "signed_in",
            Admin | PromotionList => "admin",
            Create => "create",
            Experiment(..) | Model(..) | Deployment(..) | Queue(..) => "resource",
        }
    }
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
pub(crate) async fn authorize(s: &AppState, permissions: &Permissions, principal: &Principal, req: Request) -> Result<Request, ApiError> {
    let Some(matched) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        // No route matched: the fallback answers ENDPOINT_NOT_FOUND.
        return Ok(req);
    };
    let Some(need) = permissions.need(req.method(), &matched) else {
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
        Experiment(level, locate) | Model(level, locate) | Deployment(level, locate) | Queue(level, locate) => {
            let kind = match need {
                Experiment(..) => ResourceKind::Experiment,
                Deployment(..) => ResourceKind::Deployment,
                Queue(..) => ResourceKind::Queue,
                _ => ResourceKind::RegisteredModel,
            };
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
    let not_found = || {
        ApiError::from(plinth_store::Error::Tracking(plinth_store::TrackingError::ExperimentNotFound {
            experiment_id: format!("(name='{wanted}')"),
        }))
    };
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

    #[test]
    fn path_params() {
        assert_eq!(path_param("/a/{name}/b", "/a/churn%20model/b", "name").as_deref(), Some("churn model"));
        assert_eq!(path_param("/x/{*path}", "/x/1/abc/f.txt", "path").as_deref(), Some("1/abc/f.txt"));
    }
}
