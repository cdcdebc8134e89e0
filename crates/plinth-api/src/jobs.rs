//! Training jobs over HTTP: `/api/plinth/v1/jobs` (submit, list, get, cancel, logs) and
//! `/api/plinth/v1/queues` (the queue configuration, planned and applied, and usage).
//!
//! Permissions: submitting needs EDIT on the local queue; a job is seen and its logs read by its
//! submitter, by whoever has READ on its queue and by admins, and cancelled by its submitter, by
//! MANAGE on its queue and by admins. Queue configuration is for admins; usage is for anyone
//! signed in. Environment values are never shown back (they may hold secrets): only their names.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use plinth_core::auth::{Level, ResourceKind};
use plinth_core::jobs::{Job, JobState, format_cpu, format_memory};
use plinth_scheduler::JobView;
use plinth_store::jobs::JobQuery;
use plinth_store::tracking::PageRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::error::ApiError;
use crate::fields::{JsonBody, MlflowRequest};
use crate::identity::Caller;
use crate::routes::Routes;
use crate::{AppState, json as j};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .post("/api/plinth/v1/jobs", N::Queue(Level::Edit, L::Field("queue")), submit)
        .get("/api/plinth/v1/jobs", N::SignedIn, list)
        .get("/api/plinth/v1/jobs/{id}", N::SignedIn, get)
        .post("/api/plinth/v1/jobs/{id}/cancel", N::SignedIn, cancel)
        .get("/api/plinth/v1/jobs/{id}/logs", N::SignedIn, logs)
        .post("/api/plinth/v1/sweeps", N::SignedIn, create_sweep)
        .get("/api/plinth/v1/sweeps", N::SignedIn, list_sweeps)
        .get("/api/plinth/v1/sweeps/{id}", N::SignedIn, get_sweep)
        .post("/api/plinth/v1/sweeps/{id}/cancel", N::SignedIn, cancel_sweep)
        .get("/api/plinth/v1/queues", N::SignedIn, queues)
        .post("/api/plinth/v1/queues/plan", N::Admin, plan)
        .put("/api/plinth/v1/queues", N::Admin, apply)
}

/// Code uploads: bodies of any size up to `jobs.max_code_mb`, streamed to disk (outside the JSON body limit).
pub(crate) fn stream_routes() -> Routes {
    Routes::new().get("/jobs/code/{digest}", N::SignedIn, code_info).put("/jobs/code/{digest}", N::SignedIn, upload_code)
}

type Ext = Option<axum::Extension<plinth_auth::Principal>>;

/// Most jobs on one page.
const MAX_PAGE: i64 = 1000;

fn service(s: &AppState) -> Result<&std::sync::Arc<plinth_scheduler::JobService>, ApiError> {
    s.jobs.as_ref().ok_or_else(|| {
        ApiError::new(plinth_core::ErrorCode::EndpointNotFound, "Training jobs are disabled on this server ([jobs] enabled = false)")
    })
}

fn job_json(job: &Job, waiting: Option<&plinth_scheduler::admission::Waiting>) -> Value {
    let spec = &job.spec;
    let r = &spec.resources;
    json!({
        "id": job.id,
        "name": spec.name,
        "state": job.state.as_str(),
        "queue": spec.queue,
        "cluster_queue": job.cluster_queue,
        "command": spec.command,
        "code": spec.code,
        "env_names": spec.env.keys().collect::<Vec<_>>(),
        "resources": {
            "cpus": format_cpu(r.cpu_millis),
            "cpu_millis": r.cpu_millis,
            "memory": format_memory(r.memory_bytes),
            "memory_bytes": r.memory_bytes,
            "gpus": r.gpus,
            "gpu_flavor": r.gpu_flavor,
            "custom": r.custom,
        },
        "workers": spec.workers,
        "timeout_secs": spec.timeout_secs,
        "retries": {
            "max": spec.retry.max_retries,
            "backoff_secs": spec.retry.backoff_secs,
            "on": spec.retry.on.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        },
        "priority": spec.priority,
        "experiment": spec.experiment,
        "tags": spec.tags,
        "submitted_by": job.submitted_by,
        "idempotency_key": job.idempotency_key,
        "attempt": job.attempt,
        "preemptions": job.preemptions,
        "flavors": job.flavors,
        "executor": job.executor,
        "run_id": job.run_id,
        "experiment_id": job.experiment_id,
        "cancel_requested": job.cancel_requested,
        "last_end": job.last_end.as_ref().map(|e| json!({
            "cause": e.cause.as_str(),
            "message": e.message,
            "exit_code": e.exit_code,
            "signal": e.signal,
            "peak_memory_bytes": e.peak_memory_bytes,
        })),
        "not_before": job.not_before,
        "waiting": waiting.map(|w| json!({"reason": w.reason.to_string(), "position": w.position, "text": w.to_string()})),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "admitted_at": job.admitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    })
}

fn view_json(view: &JobView) -> Value {
    job_json(&view.job, view.waiting.as_ref())
}

async fn submit(State(s): State<AppState>, p: Ext, Caller(actor): Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("Invalid job: {e}")))?;
    let (spec, key) = plinth_scheduler::spec::job_spec(body)?;
    // The job's run is written in the caller's name: with auth on, the caller must be allowed to
    // write to its experiment, or to create it.
    let creates = may_log_into(&s, &p, spec.experiment.as_deref()).await?;
    let (view, created) = service(&s)?.submit(&actor, spec, key).await?;
    if let (Some(name), true) = (creates, created) {
        // The experiment the job created belongs to its creator, as if created through the API.
        if let Some(id) = view.job.experiment_id.as_deref().filter(|_| !name.is_empty()) {
            crate::auth::grant_creator(&s, p.as_ref().map(|e| &e.0), ResourceKind::Experiment, id).await?;
        }
    }
    Ok(Json(json!({"job": view_json(&view), "created": created})))
}

/// With auth on, whether the caller may log into the experiment named `experiment` (the default
/// experiment when `None`): EDIT on it when it exists, the right to create one when it does not.
/// Answers the name when the submission will create the experiment.
async fn may_log_into(s: &AppState, p: &Ext, experiment: Option<&str>) -> Result<Option<String>, ApiError> {
    if !s.auth_enabled {
        return Ok(None);
    }
    let Some(principal) = p.as_ref().map(|e| &e.0) else {
        return Err(ApiError::new(plinth_core::ErrorCode::Unauthenticated, "Sign in to submit jobs"));
    };
    let denied = |what: &str| {
        ApiError::new(plinth_core::ErrorCode::PermissionDenied, format!("Permission denied: user '{}' {what}", principal.name))
    };
    let id = match experiment {
        None => "0".to_owned(),
        Some(name) => match s.tracking.get_experiment_by_name(name).await {
            Ok(e) => e.experiment_id.as_str().to_owned(),
            Err(e) if plinth_core::HasErrorCode::error_code(&e) == plinth_core::ErrorCode::ResourceDoesNotExist => {
                if principal.role < plinth_core::auth::Role::Member {
                    return Err(denied("may not create the job's experiment (viewer)"));
                }
                return Ok(Some(name.to_owned()));
            }
            Err(e) => return Err(e.into()),
        },
    };
    if principal.is_admin() || s.auth.allows(principal, ResourceKind::Experiment, &id, Level::Edit).await? {
        Ok(None)
    } else {
        Err(denied("lacks EDIT on the job's experiment"))
    }
}

/// Whether the caller may see (`Read`) or cancel (`Manage`) what `owner` submitted to `queue`:
/// its owner, a grant on the queue, or an admin; anyone with auth off.
async fn may(s: &AppState, p: &Ext, owner: &str, queue: &str, level: Level) -> Result<bool, ApiError> {
    if !s.auth_enabled {
        return Ok(true);
    }
    let Some(principal) = p.as_ref().map(|e| &e.0) else { return Ok(false) };
    if principal.is_admin() || principal.actor().name == owner {
        return Ok(true);
    }
    Ok(s.auth.allows(principal, ResourceKind::Queue, queue, level).await?)
}

/// Lets the caller through at `level`; what the caller may not even see is answered `hidden` (as
/// if it did not exist), what it may see but not change is refused naming `what`.
async fn gate(s: &AppState, p: &Ext, owner: &str, queue: &str, level: Level, what: &str, hidden: ApiError) -> Result<(), ApiError> {
    if !may(s, p, owner, queue, Level::Read).await? {
        return Err(hidden);
    }
    if level == Level::Read || may(s, p, owner, queue, level).await? {
        return Ok(());
    }
    Err(ApiError::new(
        plinth_core::ErrorCode::PermissionDenied,
        format!("Only {what}'s owner, MANAGE on its queue or an admin may do this"),
    ))
}

fn numeric_id(id: &str, what: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::from(plinth_core::validation::InvalidParameter::invalid_value("id", id, &format!("A {what} id is a number.")))
    })
}

async fn visible(s: &AppState, p: &Ext, id: &str, level: Level) -> Result<JobView, ApiError> {
    let id = numeric_id(id, "job")?;
    let view = service(s)?.get(id).await?;
    let hidden = ApiError::from(plinth_store::Error::Jobs(plinth_store::JobsError::JobNotFound { id }));
    gate(s, p, &view.job.submitted_by, &view.job.spec.queue, level, &format!("job {id}"), hidden).await?;
    Ok(view)
}

async fn get(State(s): State<AppState>, p: Ext, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = visible(&s, &p, &id, Level::Read).await?;
    Ok(Json(json!({"job": view_json(&view)})))
}

async fn list(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Result<Json<Value>, ApiError> {
    let jobs = service(&s)?;
    let page = PageRequest::from_client(f.opt_i64("max_results")?, 100, MAX_PAGE, f.opt_str("page_token")?.as_deref())?;
    let states = match f.opt_str("state")? {
        Some(text) => text.split(',').map(|s| JobState::parse(s.trim())).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let mut query = JobQuery { queue: f.opt_str("queue")?, cluster_queue: None, states, submitted_by: f.opt_str("submitted_by")?, page };
    if s.auth_enabled {
        let principal = p.as_ref().map(|e| &e.0);
        let admin = principal.is_some_and(|p| p.is_admin());
        let queue_reader = match (&query.queue, principal) {
            (Some(queue), Some(p)) => s.auth.allows(p, ResourceKind::Queue, queue, Level::Read).await?,
            _ => false,
        };
        // Without a grant on the queue asked for, a caller lists only their own jobs.
        if !admin && !queue_reader {
            query.submitted_by = Some(principal.map(|p| p.actor().name).unwrap_or_default());
        }
    }
    let rows = jobs.list(&query).await?;
    let items = rows.items.iter().map(|job| job_json(job, None)).collect();
    let page = rows.into_page(query.page);
    Ok(Json(j::page("jobs", items, page.next_page_token)))
}

async fn cancel(State(s): State<AppState>, p: Ext, Caller(actor): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = visible(&s, &p, &id, Level::Manage).await?;
    let job = service(&s)?.cancel(&actor, view.job.id).await?;
    Ok(Json(json!({"job": job_json(&job, None)})))
}

/// The attempt's output as text from `offset`; `follow=true` keeps the response open while the
/// attempt runs. `X-Plinth-Log-Offset` says where the body starts, so a client resumes from that
/// plus what it received.
async fn logs(State(s): State<AppState>, p: Ext, Path(id): Path<String>, MlflowRequest(f): MlflowRequest) -> Result<Response, ApiError> {
    let view = visible(&s, &p, &id, Level::Read).await?;
    let jobs = service(&s)?.clone();
    let offset = f.opt_i64("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must be 0 or more"));
    }
    let attempt = match f.opt_i64("attempt")? {
        None => view.job.attempt,
        Some(n) if n >= 1 && n <= i64::from(view.job.attempt) => n as u32,
        Some(n) => return Err(ApiError::invalid(format!("Job {} has attempts 1 to {}; {n} is not one", view.job.id, view.job.attempt))),
    };
    let follow = matches!(f.opt_str("follow")?.as_deref(), Some("true" | "1"));
    let path = jobs.log_path(&view.job, attempt);
    let stream =
        plinth_scheduler::logs::stream(jobs, view.job.id, attempt, path, offset as u64, follow).map(|chunk| chunk.map(bytes::Bytes::from));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-plinth-log-offset", HeaderValue::from(offset));
    headers.insert("x-plinth-attempt", HeaderValue::from(attempt));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn queues(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let jobs = service(&s)?;
    let config = jobs.queue_config().await?;
    let usage = jobs.usage().await;
    Ok(Json(json!({
        "version": config.as_ref().map_or(0, |c| c.version),
        "text": config.as_ref().map(|c| c.text.clone()),
        "updated_by": config.as_ref().map(|c| c.updated_by.clone()),
        "updated_at": config.as_ref().map(|c| c.updated_at),
        "usage": usage.iter().map(|u| json!({
            "cluster_queue": u.cluster_queue,
            "flavor": u.flavor,
            "resource": u.resource,
            "used": u.used,
            "nominal": u.nominal,
            "borrowed": u.borrowed,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesBody {
    text: String,
    #[serde(default)]
    version: Option<i64>,
}

fn queues_body(body: &[u8]) -> Result<QueuesBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("Invalid queue configuration request: {e}")))
}

fn plan_json(plan: &plinth_scheduler::QueuePlan) -> Value {
    json!({
        "changes": plan.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "version": plan.version,
        "text": plan.canonical_text,
    })
}

async fn plan(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let body = queues_body(&body)?;
    Ok(Json(plan_json(&service(&s)?.plan_queues(&body.text).await?)))
}

async fn apply(State(s): State<AppState>, Caller(actor): Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let body = queues_body(&body)?;
    Ok(Json(plan_json(&service(&s)?.apply_queues(&actor, &body.text, body.version).await?)))
}

/// Whether a code archive was uploaded: 200 with its digest, or 404.
async fn code_info(State(s): State<AppState>, Path(digest): Path<String>) -> Result<Json<Value>, ApiError> {
    if service(&s)?.has_code(&digest)? {
        Ok(Json(json!({"digest": digest})))
    } else {
        Err(ApiError::new(plinth_core::ErrorCode::ResourceDoesNotExist, format!("Code {digest} was not uploaded")))
    }
}

/// Stores a code archive (an uncompressed tar of the code directory) under its SHA-256 digest:
/// the body is spooled to disk while hashed, checked against the digest in the path, then unpacked.
async fn upload_code(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(digest): Path<String>,
    req: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let jobs = service(&s)?;
    plinth_core::jobs::validate_code_digest(&digest)?;
    let limit = s.max_code_bytes;
    let spool_error =
        |e: std::io::Error| ApiError::from_error(plinth_scheduler::CodeError::Io { path: "a temporary file".into(), source: e });
    let spool =
        tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(|e| spool_error(std::io::Error::other(e)))?.map_err(spool_error)?;
    let mut spool = tokio::fs::File::from_std(spool);
    let mut hasher = sha2::Sha256::new();
    let mut size: u64 = 0;
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(plinth_core::ErrorCode::BadRequest, format!("Cannot read the request body: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::invalid(format!("The code archive exceeds jobs.max_code_mb ({} MiB)", limit >> 20)));
        }
        hasher.update(&chunk);
        spool.write_all(&chunk).await.map_err(spool_error)?;
    }
    spool.flush().await.map_err(spool_error)?;
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        return Err(ApiError::invalid(format!(
            "The archive's digest is {actual}, not {digest}: the upload was damaged or the name is wrong"
        )));
    }
    let mut spool = spool.into_std().await;
    std::io::Seek::rewind(&mut spool).map_err(spool_error)?;
    let info = jobs.put_code(&actor, &digest, spool).await?;
    Ok(Json(json!({"digest": info.digest, "files": info.files, "bytes": info.bytes})))
}

fn sweeps(s: &AppState) -> Result<&std::sync::Arc<plinth_scheduler::SweepService>, ApiError> {
    s.sweeps.as_ref().ok_or_else(|| {
        ApiError::new(plinth_core::ErrorCode::EndpointNotFound, "Training jobs are disabled on this server ([jobs] enabled = false)")
    })
}

fn sweep_json(sweep: &plinth_core::sweeps::Sweep) -> Value {
    json!({
        "id": sweep.id,
        "name": sweep.name,
        "state": sweep.state.as_str(),
        "parent_run_id": sweep.parent_run_id,
        "experiment_id": sweep.experiment_id,
        "best_trial": sweep.best_trial,
        "message": sweep.message,
        "created_by": sweep.created_by,
        "created_at": sweep.created_at,
        "updated_at": sweep.updated_at,
        "finished_at": sweep.finished_at,
    })
}

fn sweep_view_json(view: &plinth_scheduler::SweepView) -> Value {
    let mut out = sweep_json(&view.sweep);
    let trial = |t: &plinth_core::sweeps::Trial| {
        json!({
            "index": t.index,
            "params": t.params.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "job_id": t.job_id,
            "state": t.state.as_str(),
            "objective": t.objective.map(j::double),
            "step": t.step,
            "stopped_at_step": t.stopped_at_step,
        })
    };
    out["objective"] = json!({
        "metric": view.metric,
        "direction": match view.direction {
            plinth_scheduler::asha::Direction::Maximize => "maximize",
            plinth_scheduler::asha::Direction::Minimize => "minimize",
        },
    });
    out["budget"] = json!(view.budget);
    out["trials"] = Value::Array(view.trials.iter().map(trial).collect());
    out["best"] = view.sweep.best_trial.and_then(|i| view.trials.iter().find(|t| t.index == i)).map(trial).unwrap_or(Value::Null);
    out["spec"] = json!(view.sweep.spec);
    out
}

async fn visible_sweep(s: &AppState, p: &Ext, id: &str, level: Level) -> Result<plinth_scheduler::SweepView, ApiError> {
    let id = numeric_id(id, "sweep")?;
    let view = sweeps(s)?.get(id).await?;
    let queue = plinth_scheduler::SweepSpec::parse(&view.sweep.spec).map(|spec| spec.job.queue).unwrap_or_default();
    let hidden = ApiError::from(plinth_store::Error::Sweeps(plinth_store::SweepsError::SweepNotFound { id }));
    gate(s, p, &view.sweep.created_by, &queue, level, &format!("sweep {id}"), hidden).await?;
    Ok(view)
}

async fn create_sweep(State(s): State<AppState>, p: Ext, Caller(actor): Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        text: String,
    }
    let body: Body = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("Invalid sweep request: {e}")))?;
    let spec = plinth_scheduler::SweepSpec::parse(&body.text)?;
    // Its trials are jobs in the caller's name: the same rights as submitting the template.
    if s.auth_enabled {
        let principal = p.as_ref().map(|e| &e.0);
        let allowed = match principal {
            Some(pr) => pr.is_admin() || s.auth.allows(pr, ResourceKind::Queue, &spec.job.queue, Level::Edit).await?,
            None => false,
        };
        if !allowed {
            return Err(ApiError::new(
                plinth_core::ErrorCode::PermissionDenied,
                format!("Permission denied: the caller lacks EDIT on queue '{}'", spec.job.queue),
            ));
        }
    }
    let creates = may_log_into(&s, &p, spec.job.experiment.as_deref()).await?;
    let view = sweeps(&s)?.create(&actor, &body.text).await?;
    if creates.is_some()
        && let Some(id) = view.sweep.experiment_id.as_deref()
    {
        crate::auth::grant_creator(&s, p.as_ref().map(|e| &e.0), ResourceKind::Experiment, id).await?;
    }
    Ok(Json(json!({"sweep": sweep_view_json(&view)})))
}

async fn list_sweeps(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::from_client(f.opt_i64("max_results")?, 100, MAX_PAGE, f.opt_str("page_token")?.as_deref())?;
    let rows = sweeps(&s)?.list(page).await?;
    let mine = match (s.auth_enabled, p.as_ref().map(|e| &e.0)) {
        (false, _) => None,
        (true, Some(pr)) if pr.is_admin() => None,
        (true, Some(pr)) => Some(pr.actor().name),
        (true, None) => Some(String::new()),
    };
    // With auth on, a caller who is not an admin sees the sweeps they created.
    let items = rows.items.iter().filter(|sw| mine.as_ref().is_none_or(|m| *m == sw.created_by)).map(sweep_json).collect();
    let page = rows.into_page(page);
    Ok(Json(j::page("sweeps", items, page.next_page_token)))
}

async fn get_sweep(State(s): State<AppState>, p: Ext, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = visible_sweep(&s, &p, &id, Level::Read).await?;
    Ok(Json(json!({"sweep": sweep_view_json(&view)})))
}

async fn cancel_sweep(State(s): State<AppState>, p: Ext, Caller(actor): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = visible_sweep(&s, &p, &id, Level::Manage).await?;
    let view = sweeps(&s)?.cancel(&actor, view.sweep.id).await?;
    Ok(Json(json!({"sweep": sweep_view_json(&view)})))
}
