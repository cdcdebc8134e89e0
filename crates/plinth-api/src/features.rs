//! The feature store's REST API under `/api/plinth/v1/features`: plan and apply a repository,
//! read applied definitions and their history, historical retrieval as an Arrow IPC stream, and
//! training datasets.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use plinth_core::ErrorCode;
use plinth_features::arrow::ipc::writer::StreamWriter;
use plinth_features::repo::Repository;
use plinth_features::{ChangeOp, Plan};
use plinth_store::features::{FeatureApply, FeatureDefinition, FeatureKind, TrainingDataset, TrainingDatasetRun};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::access::{Locate as L, Need as N};
use crate::fields::{JsonBody, MlflowRequest};
use crate::identity::Caller;
use crate::references::Scope;
use crate::routes::Routes;
use crate::{ApiError, AppState};
use plinth_core::auth::Level::Edit;

type Answer = Result<Json<Value>, ApiError>;

/// The media type of Arrow IPC streams, in and out.
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// JSON routes, mounted under `/api/plinth/v1` with the JSON body limit.
pub(crate) fn routes() -> Routes {
    Routes::new()
        // The feature store: definitions name files on the server's disk, so planning and applying
        // them is for admins; reading definitions and retrieving features is for anyone signed in.
        .post("/features/plan", N::Admin, plan)
        .post("/features/apply", N::Admin, apply)
        .get("/features/definitions", N::SignedIn, list_definitions)
        .get("/features/definitions/{kind}/{name}", N::SignedIn, get_definition)
        .get("/features/definitions/{kind}/{name}/versions", N::SignedIn, definition_versions)
        .get("/features/applies", N::SignedIn, list_applies)
        .post("/features/materialize", N::Admin, materialize)
        .get("/features/freshness", N::SignedIn, freshness)
        .get("/features/training-datasets", N::SignedIn, list_training_datasets)
        .get("/features/training-datasets/{id}", N::SignedIn, get_training_dataset)
        .get("/features/training-datasets/{id}/runs", N::SignedIn, training_dataset_runs)
        .post("/features/training-datasets/{id}/log-to-run", N::Experiment(Edit, L::Run("run_id")), log_to_run)
        .get("/features/lineage/{kind}/{name}", N::SignedIn, lineage)
}

/// The streaming route, mounted under `/api/plinth/v1` without the JSON body limit (it has its own).
pub(crate) fn stream_routes() -> Routes {
    Routes::new().post("/features/historical", N::SignedIn, historical)
}

fn repository(body: &[u8]) -> Result<Repository, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        repository: Repository,
    }
    serde_json::from_slice::<Body>(body).map(|b| b.repository).map_err(|e| {
        ApiError::invalid(format!(
            "The body must be {{\"repository\": {{...}}}} with entities, sources, feature_views and feature_services: {e}"
        ))
    })
}

fn plan_json(plan: &Plan) -> Value {
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| json!({"kind": c.kind.as_str(), "name": c.name, "op": c.op.as_str(), "from_version": c.from_version, "to_version": c.to_version}))
        .collect();
    let count = |op: ChangeOp| plan.changes.iter().filter(|c| c.op == op).count();
    json!({
        "changes": changes,
        "notes": plan.notes,
        "summary": {"create": count(ChangeOp::Create), "update": count(ChangeOp::Update), "delete": count(ChangeOp::Delete), "unchanged": count(ChangeOp::Unchanged)},
    })
}

async fn plan(State(s): State<AppState>, JsonBody(body): JsonBody) -> Answer {
    let repo = repository(&body)?;
    let plan = s.features.plan(&repo).await?;
    Ok(Json(plan_json(&plan)))
}

async fn apply(State(s): State<AppState>, Caller(actor): Caller, JsonBody(body): JsonBody) -> Answer {
    let repo = repository(&body)?;
    let (plan, applied) = s.features.apply(&actor, &repo).await?;
    let mut out = plan_json(&plan);
    out["apply_id"] = json!(applied.id);
    Ok(Json(out))
}

/// `{"feature_views": [..], "incremental": bool, "end_ts": ns}`; empty views: every online view.
async fn materialize(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let views = if f.has("feature_views") { f.str_list("feature_views")? } else { Vec::new() };
    let incremental = f.opt_bool("incremental")?.unwrap_or(false);
    let end = f.opt_i64("end_ts")?;
    let done = s.features.materialize(&actor, &views, incremental, end).await?;
    let items: Vec<Value> = done
        .iter()
        .map(|d| json!({"feature_view": d.view, "start_ts": d.start_ns, "end_ts": d.end_ns, "rows": d.rows, "skipped_older": d.skipped_older, "newest_event_ts": d.newest_event_ns}))
        .collect();
    Ok(Json(json!({"materialized": items})))
}

async fn freshness(State(s): State<AppState>) -> Answer {
    let now_ns = plinth_core::time::now_millis().saturating_mul(1_000_000);
    let views: Vec<Value> = s
        .features
        .freshness()
        .await?
        .iter()
        .map(|(view, state)| {
            // Every time is RFC 3339 text in UTC, so none can be read in the wrong unit.
            let newest = state.as_ref().and_then(|s| s.newest_event_ns);
            let text = |ns: Option<i64>| ns.map(plinth_core::time::rfc3339_from_nanos);
            json!({
                "feature_view": view,
                "watermark_at": text(state.as_ref().and_then(|s| s.watermark_ns)),
                "newest_event_at": text(newest),
                "age_seconds": newest.map(|n| (now_ns - n) as f64 / 1e9),
                "last_materialized_at": text(state.as_ref().and_then(|s| s.last_run_at).map(|ms| ms.saturating_mul(1_000_000))),
            })
        })
        .collect();
    Ok(Json(json!({"feature_views": views})))
}

fn definition_json(d: &FeatureDefinition) -> Value {
    let spec = d.spec.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    json!({
        "kind": d.kind.as_str(),
        "name": d.name,
        "version": d.version,
        "deleted": d.is_deleted(),
        "spec": spec,
        "digest": d.digest,
        "apply_id": d.apply_id,
        "created_at": d.created_at,
        "created_by": d.created_by,
    })
}

fn kind(s: &str) -> Result<FeatureKind, ApiError> {
    FeatureKind::parse(s)
        .ok_or_else(|| ApiError::invalid(format!("Unknown definition kind '{s}' (use entity, source, feature_view or feature_service)")))
}

async fn list_definitions(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let only = f.opt_str("kind")?.map(|k| kind(&k)).transpose()?;
    let include_deleted = f.opt_bool("include_deleted")?.unwrap_or(false);
    let heads = s.features.heads().await?;
    let items: Vec<Value> =
        heads.iter().filter(|d| only.is_none_or(|k| d.kind == k) && (include_deleted || !d.is_deleted())).map(definition_json).collect();
    Ok(Json(json!({"definitions": items})))
}

async fn get_definition(State(s): State<AppState>, Path((k, name)): Path<(String, String)>, MlflowRequest(f): MlflowRequest) -> Answer {
    let def = s.features.definition(kind(&k)?, &name, f.opt_i64("version")?).await?;
    Ok(Json(json!({"definition": definition_json(&def)})))
}

async fn definition_versions(State(s): State<AppState>, Path((k, name)): Path<(String, String)>) -> Answer {
    let history = s.features.history(kind(&k)?, &name).await?;
    Ok(Json(json!({"versions": history.iter().map(definition_json).collect::<Vec<_>>()})))
}

async fn list_applies(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let applies = s.features.applies(f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    let items: Vec<Value> = applies.items.iter().map(apply_json).collect();
    Ok(Json(crate::json::page("applies", items, applies.next_page_token)))
}

fn apply_json(a: &FeatureApply) -> Value {
    let written: Vec<Value> = a
        .written
        .iter()
        .map(|d| json!({"kind": d.kind.as_str(), "name": d.name, "version": d.version, "deleted": d.is_deleted()}))
        .collect();
    json!({"id": a.id, "actor": a.actor, "created_at": a.created_at, "written": written})
}

fn dataset_json(d: &TrainingDataset) -> Value {
    let definitions = serde_json::from_str::<Value>(&d.definitions).unwrap_or(Value::Null);
    json!({
        "id": d.id,
        "name": d.name,
        "features": d.features,
        "feature_service": d.feature_service,
        "full_feature_names": d.full_feature_names,
        "definitions": definitions,
        "entity_digest": d.entity_digest,
        "entity_rows": d.entity_rows,
        "output_uri": d.output_uri,
        "created_at": d.created_at,
        "created_by": d.created_by,
    })
}

async fn list_training_datasets(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let datasets = s.features.training_datasets(f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    Ok(Json(crate::json::page("training_datasets", datasets.items.iter().map(dataset_json).collect(), datasets.next_page_token)))
}

async fn get_training_dataset(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(json!({"training_dataset": dataset_json(&s.features.training_dataset(&id).await?)})))
}

fn dataset_run_json(r: &TrainingDatasetRun) -> Value {
    json!({"run_id": r.run_id, "context": r.context, "logged_at": r.logged_at, "logged_by": r.logged_by})
}

/// The links to runs the caller may read: lineage shows no run the caller could not read directly.
async fn readable_runs(
    s: &AppState,
    viewer: &plinth_registry::Viewer,
    runs: Vec<TrainingDatasetRun>,
) -> Result<Vec<TrainingDatasetRun>, ApiError> {
    if viewer.sees_everything() {
        return Ok(runs);
    }
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        match s.tracking.get_run(&r.run_id).await {
            Ok(run) if viewer.may_read_experiment(run.info.experiment_id.as_str()) => out.push(r),
            Ok(_) => {}
            Err(e) if plinth_core::HasErrorCode::error_code(&e) == ErrorCode::ResourceDoesNotExist => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn training_dataset_runs(State(s): State<AppState>, Scope(viewer): Scope, Path(id): Path<String>) -> Answer {
    let runs = readable_runs(&s, &viewer, s.features.dataset_runs(&id).await?).await?;
    Ok(Json(json!({"runs": runs.iter().map(dataset_run_json).collect::<Vec<_>>()})))
}

/// `{"run_id", "context"}`: logs the training dataset to the run as an MLflow dataset input
/// (what `mlflow.log_input` records), then records the link for lineage.
async fn log_to_run(State(s): State<AppState>, Caller(actor): Caller, Path(id): Path<String>, MlflowRequest(f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let context = f.opt_str("context")?.unwrap_or_else(|| "training".to_owned());
    let (dataset, input) = s.features.dataset_input(&id, &context).await?;
    let logged = input.dataset.clone();
    s.tracking.log_inputs(&run_id, vec![input], Vec::new()).await?;
    s.features.link_run(&actor, &dataset, &run_id, &context).await?;
    Ok(Json(json!({
        "training_dataset": dataset_json(&dataset),
        "run_id": run_id,
        "dataset": {"name": logged.name, "digest": logged.digest, "source_type": logged.source_type, "source": logged.source},
    })))
}

/// Downstream of one definition: training datasets that read it, each with the runs it was logged to.
async fn lineage(
    State(s): State<AppState>,
    Scope(viewer): Scope,
    Path((k, name)): Path<(String, String)>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let rows = s.features.lineage(kind(&k)?, &name, f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    let mut items: Vec<Value> = Vec::with_capacity(rows.items.len());
    for (ds, runs) in rows.items {
        let mut v = dataset_json(&ds);
        v["runs"] = json!(readable_runs(&s, &viewer, runs).await?.iter().map(dataset_run_json).collect::<Vec<_>>());
        items.push(v);
    }
    Ok(Json(crate::json::page("training_datasets", items, rows.next_page_token)))
}

/// Options of a historical retrieval, from the query string.
struct HistoricalOptions {
    features: Vec<String>,
    feature_service: Option<String>,
    full_feature_names: bool,
    timestamp_column: String,
    save: bool,
    dataset_name: Option<String>,
    output_uri: Option<String>,
}

fn historical_options(query: Option<&str>) -> Result<HistoricalOptions, ApiError> {
    let mut o = HistoricalOptions {
        features: Vec::new(),
        feature_service: None,
        full_feature_names: false,
        timestamp_column: "event_timestamp".into(),
        save: false,
        dataset_name: None,
        output_uri: None,
    };
    let flag = |k: &str, v: &str| match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(format!("{k} must be true or false"))),
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "features" | "feature" => o.features.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)),
            "feature_service" => o.feature_service = Some(v.into_owned()),
            "full_feature_names" => o.full_feature_names = flag(&k, &v)?,
            "timestamp_column" => o.timestamp_column = v.into_owned(),
            "save" => o.save = flag(&k, &v)?,
            "dataset_name" => {
                o.dataset_name = Some(v.into_owned());
                o.save = true;
            }
            "output_uri" => o.output_uri = Some(v.into_owned()),
            other => return Err(ApiError::invalid(format!("Unknown query parameter '{other}'"))),
        }
    }
    Ok(o)
}

/// `POST /api/plinth/v1/features/historical`: the body is the entity rows as an Arrow IPC stream;
/// the answer is the rows with their features, as an Arrow IPC stream, in input order. With
/// `save=true` (or a `dataset_name`) the retrieval is recorded as a training dataset, whose id
/// comes back in `X-Plinth-Training-Dataset`.
async fn historical(State(s): State<AppState>, Caller(actor): Caller, req: Request) -> Result<Response, ApiError> {
    let options = historical_options(req.uri().query())?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with(ARROW_STREAM) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("The entity rows must be sent as an Arrow IPC stream (Content-Type: {ARROW_STREAM})"),
        ));
    }
    let limit = s.max_entity_bytes;
    // The upload is spooled to a temporary file (hashing as it goes), so its size is bounded by
    // the disk and `features.max_entity_upload_mb`, not by memory. A failure to spool is the
    // server's (a full disk is answered as such), never the client's.
    let spool_error = |e: std::io::Error| ApiError::from_error(plinth_features::Error::io("cannot spool the entity upload", e));
    let spool =
        tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(|e| spool_error(std::io::Error::other(e)))?.map_err(spool_error)?;
    let mut spool = tokio::fs::File::from_std(spool);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("Cannot read the request body: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::invalid(format!("The entity rows exceed features.max_entity_upload_mb ({} MiB)", limit >> 20)));
        }
        hasher.update(&chunk);
        spool.write_all(&chunk).await.map_err(spool_error)?;
    }
    spool.flush().await.map_err(spool_error)?;
    let spool = spool.into_std().await;
    let digest = hex::encode(hasher.finalize());
    let retrieval = s
        .features
        .historical(spool, &options.features, options.feature_service.as_deref(), options.full_feature_names, &options.timestamp_column)
        .await?;
    let rows = retrieval.rows;

    let mut dataset_id = None;
    if options.save {
        let definitions: Vec<Value> =
            retrieval.definitions.iter().map(|(k, n, v)| json!({"kind": k.as_str(), "name": n, "version": v})).collect();
        let dataset = TrainingDataset {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: options.dataset_name.clone(),
            features: retrieval.features.clone(),
            feature_service: options.feature_service.clone(),
            full_feature_names: options.full_feature_names,
            definitions: Value::Array(definitions).to_string(),
            entity_digest: digest.clone(),
            entity_rows: rows as i64,
            output_uri: options.output_uri.clone(),
            created_at: plinth_core::time::now_millis(),
            created_by: actor.name.clone(),
        };
        dataset_id = Some(s.features.save_training_dataset(&actor, dataset).await?.id);
    }

    // The answer streams batch by batch, each encoded as it is produced; a failure half-way
    // (the feature data became unreadable) ends the body early, which the client sees as a
    // truncated stream.
    let schema = retrieval.schema.clone();
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(|e| ApiError::from_error(plinth_features::Error::from(e)))?;
    let head = bytes::Bytes::from(std::mem::take(writer.get_mut()));
    let encoded = futures::stream::unfold(Some((writer, retrieval.batches)), |state| async move {
        let (mut writer, mut batches) = state?;
        let written = match batches.next().await {
            Some(Ok(batch)) => writer.write(&batch).map(|()| true),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a historical retrieval failed half-way; its answer is cut short");
                return Some((Err(std::io::Error::other(e.to_string())), None));
            }
            None => writer.finish().map(|()| false),
        };
        match written {
            Ok(more) => {
                let bytes = bytes::Bytes::from(std::mem::take(writer.get_mut()));
                Some((Ok(bytes), more.then_some((writer, batches))))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    let stream = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(head))).chain(encoded);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
    headers.insert("x-plinth-row-count", HeaderValue::from(rows));
    headers.insert("x-plinth-entity-digest", HeaderValue::from_str(&digest).unwrap_or(HeaderValue::from_static("")));
    if let Some(id) = dataset_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert("x-plinth-training-dataset", id);
    }
    Ok(response)
}
