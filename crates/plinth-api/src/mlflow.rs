//! MLflow's tracking REST API: one thin handler per endpoint, mounted under both prefixes.

use axum::Json;
use axum::extract::{Path, State};
use plinth_core::auth::ResourceKind;
use plinth_core::tracking::{Dataset, DatasetInput, LoggedModelStatus, Metric, ModelOutput, RunStatus, ViewType};
use plinth_core::validation::{InvalidParameter, MAX_BATCH_LOG_REQUEST_BYTES};
use plinth_tracking::{CreateLoggedModel, CreateRun, HistoryBulkInterval, LogBatch, SearchExperiments, SearchLoggedModels, SearchRuns};
use serde::Serialize;
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::fields::{Fields, JsonBody, MlflowRequest};
use crate::identity::Caller;
use crate::json::{self, MetricJson};
use crate::references::{self, Reference};
use crate::routes::Routes;
use crate::{ApiError, AppState};
use plinth_core::auth::Level::{Edit, Manage, Read};

type Answer = Result<Json<Value>, ApiError>;
type Ext = Option<axum::Extension<plinth_auth::Principal>>;

fn empty() -> Answer {
    Ok(Json(json!({})))
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        // Experiments.
        .post("/experiments/create", N::Create, create_experiment)
        .get("/experiments/get", N::Experiment(Read, L::Field("experiment_id")), get_experiment)
        .get("/experiments/get-by-name", N::Experiment(Read, L::ExperimentName("experiment_name")), get_experiment_by_name)
        .post("/experiments/search", N::SignedIn, search_experiments)
        .get("/experiments/search", N::SignedIn, search_experiments)
        .post("/experiments/update", N::Experiment(Edit, L::Field("experiment_id")), update_experiment)
        .post("/experiments/delete", N::Experiment(Manage, L::Field("experiment_id")), delete_experiment)
        .post("/experiments/restore", N::Experiment(Manage, L::Field("experiment_id")), restore_experiment)
        .post("/experiments/set-experiment-tag", N::Experiment(Edit, L::Field("experiment_id")), set_experiment_tag)
        .post("/experiments/delete-experiment-tag", N::Experiment(Edit, L::Field("experiment_id")), delete_experiment_tag)
        // Runs.
        .post("/runs/create", N::Experiment(Edit, L::FieldOrDefault("experiment_id")), create_run)
        .get("/runs/get", N::Experiment(Read, L::Run("run_id")), get_run)
        .post("/runs/update", N::Experiment(Edit, L::Run("run_id")), update_run)
        .post("/runs/delete", N::Experiment(Manage, L::Run("run_id")), delete_run)
        .post("/runs/restore", N::Experiment(Manage, L::Run("run_id")), restore_run)
        .post("/runs/search", N::Experiment(Read, L::Experiments("experiment_ids")), search_runs)
        .post("/runs/log-metric", N::Experiment(Edit, L::Run("run_id")), log_metric)
        .post("/runs/log-parameter", N::Experiment(Edit, L::Run("run_id")), log_param)
        .post("/runs/set-tag", N::Experiment(Edit, L::Run("run_id")), set_tag)
        .post("/runs/delete-tag", N::Experiment(Edit, L::Run("run_id")), delete_tag)
        .post("/runs/log-batch", N::Experiment(Edit, L::Run("run_id")), log_batch)
        .post("/runs/log-inputs", N::Experiment(Edit, L::Run("run_id")), log_inputs)
        .post("/runs/outputs", N::Experiment(Edit, L::Run("run_id")), log_outputs)
        .post("/runs/log-model", N::Experiment(Edit, L::Run("run_id")), log_model)
        .get("/metrics/get-history", N::Experiment(Read, L::Run("run_id")), get_metric_history)
        .get("/metrics/get-history-bulk", N::Experiment(Read, L::Runs("run_id")), get_metric_history_bulk)
        .get("/metrics/get-history-bulk-interval", N::Experiment(Read, L::Runs("run_ids")), get_metric_history_bulk_interval)
        .get("/artifacts/list", N::Experiment(Read, L::Run("run_id")), list_artifacts)
        .post("/experiments/search-datasets", N::Experiment(Read, L::Experiments("experiment_ids")), search_datasets)
        // Logged models.
        .post("/logged-models", N::Experiment(Edit, L::Field("experiment_id")), create_logged_model)
        .post("/logged-models/search", N::Experiment(Read, L::Experiments("experiment_ids")), search_logged_models)
        .get("/logged-models/{model_id}", N::Experiment(Read, L::LoggedModelPath("model_id")), get_logged_model)
        .patch("/logged-models/{model_id}", N::Experiment(Edit, L::LoggedModelPath("model_id")), finalize_logged_model)
        .delete("/logged-models/{model_id}", N::Experiment(Manage, L::LoggedModelPath("model_id")), delete_logged_model)
        .patch("/logged-models/{model_id}/tags", N::Experiment(Edit, L::LoggedModelPath("model_id")), set_logged_model_tags)
        .delete("/logged-models/{model_id}/tags/{key}", N::Experiment(Edit, L::LoggedModelPath("model_id")), delete_logged_model_tag)
        .post("/logged-models/{model_id}/params", N::Experiment(Edit, L::LoggedModelPath("model_id")), log_logged_model_params)
        .get(
            "/logged-models/{model_id}/artifacts/directories",
            N::Experiment(Read, L::LoggedModelPath("model_id")),
            list_logged_model_artifacts,
        )
}

/// An optional enum field parsed with `parse`; an unknown name or number is `INVALID_PARAMETER_VALUE`.
fn enum_field<T>(f: &Fields, name: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
    match f.opt_enum(name)? {
        Some(raw) => parse(&raw).map(Some).ok_or_else(|| InvalidParameter::invalid_value(name, &raw, "").into()),
        None => Ok(None),
    }
}

fn view_type(f: &Fields, name: &str) -> Result<Option<ViewType>, ApiError> {
    enum_field(f, name, ViewType::parse)
}

// Experiments.

async fn create_experiment(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let name = f.str("name")?;
    let location = f.opt_str("artifact_location")?;
    references::require_location_choice(&s, p.as_ref().map(|e| &e.0), location.as_deref())?;
    let id = s.tracking.acting(&actor).create_experiment(&name, location.as_deref(), f.key_values("tags")?).await?;
    crate::auth::grant_creator(&s, p.as_ref().map(|e| &e.0), ResourceKind::Experiment, id.as_str()).await?;
    Ok(Json(json!({"experiment_id": id.as_str()})))
}

async fn get_experiment(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let e = s.tracking.get_experiment(&f.str("experiment_id")?).await?;
    Ok(Json(json!({"experiment": json::experiment(&e)})))
}

async fn get_experiment_by_name(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let e = s.tracking.get_experiment_by_name(&f.str("experiment_name")?).await?;
    Ok(Json(json!({"experiment": json::experiment(&e)})))
}

async fn search_experiments(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    // With auth on, the search itself is limited to what the caller may read, so pages and page
    // tokens say nothing about the rest.
    let restrict_to =
        crate::auth::readable(&s, p.as_ref().map(|e| &e.0), ResourceKind::Experiment).await?.map(|set| set.into_iter().collect());
    let req = SearchExperiments {
        restrict_to,
        view_type: view_type(&f, "view_type")?,
        filter: f.opt_str("filter")?,
        order_by: f.str_list("order_by")?,
        max_results: f.opt_i64("max_results")?,
        page_token: f.opt_str("page_token")?,
    };
    let page = s.tracking.search_experiments(req).await?;
    Ok(Json(json::page("experiments", page.items.iter().map(json::experiment).collect(), page.next_page_token)))
}

async fn update_experiment(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).rename_experiment(&f.str("experiment_id")?, &f.str("new_name")?).await?;
    empty()
}

async fn delete_experiment(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).delete_experiment(&f.str("experiment_id")?).await?;
    empty()
}

async fn restore_experiment(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).restore_experiment(&f.str("experiment_id")?).await?;
    empty()
}

async fn set_experiment_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).set_experiment_tag(&f.str("experiment_id")?, &f.str("key")?, &f.str_allow_empty("value")?).await?;
    empty()
}

async fn delete_experiment_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).delete_experiment_tag(&f.str("experiment_id")?, &f.str("key")?).await?;
    empty()
}

// Runs.

async fn create_run(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let tags = f.key_values("tags")?;
    references::require_readable(&s, p.as_ref().map(|e| &e.0), Reference::of_run_tags(&tags)).await?;
    let req = CreateRun {
        experiment_id: f.opt_str("experiment_id")?,
        user_id: f.opt_str("user_id")?,
        run_name: f.opt_str("run_name")?,
        start_time: f.opt_i64("start_time")?,
        tags,
    };
    let run = s.tracking.acting(&actor).create_run(req).await?;
    Ok(Json(json!({"run": json::run(&run)})))
}

async fn get_run(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let run = s.tracking.get_run(&f.run_id()?).await?;
    Ok(Json(json!({"run": json::run(&run)})))
}

async fn update_run(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let status = enum_field(&f, "status", RunStatus::parse)?;
    let info = s.tracking.acting(&actor).update_run(&f.run_id()?, status, f.opt_i64("end_time")?, f.opt_str("run_name")?).await?;
    Ok(Json(json!({"run_info": json::run_info(&info)})))
}

async fn delete_run(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).delete_run(&f.run_id()?).await?;
    empty()
}

async fn restore_run(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).restore_run(&f.run_id()?).await?;
    empty()
}

async fn search_runs(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let req = SearchRuns {
        experiment_ids: f.str_list("experiment_ids")?,
        view_type: view_type(&f, "run_view_type")?,
        filter: f.opt_str("filter")?,
        order_by: f.str_list("order_by")?,
        max_results: f.opt_i64("max_results")?,
        page_token: f.opt_str("page_token")?,
    };
    let page = s.tracking.search_runs(req).await?;
    Ok(Json(json::page("runs", page.items.iter().map(json::run).collect(), page.next_page_token)))
}

/// The logged models metrics are attributed to (`model_id`).
fn metric_references(metrics: &[Metric]) -> impl Iterator<Item = Reference> + '_ {
    metrics.iter().filter_map(|m| m.model_id.clone().map(Reference::LoggedModel))
}

/// A dataset whose source is a location in the server's artifact tree (`{"uri": …}`, as MLflow's
/// dataset sources are written) references that location.
fn dataset_reference(input: &DatasetInput) -> Option<Reference> {
    let source: Value = serde_json::from_str(&input.dataset.source).ok()?;
    source.get("uri").and_then(Value::as_str).map(|uri| Reference::ArtifactUri(uri.to_owned()))
}

/// A metric from its fields; `index` is its place in a batch, named in error messages (`metrics[3]`).
fn metric(f: &mut Fields, index: usize) -> Result<Metric, ApiError> {
    let named = |field: &str| if index == usize::MAX { field.to_owned() } else { format!("metrics[{index}].{field}") };
    let key = f.take_string("key")?.filter(|it| !it.is_empty()).ok_or_else(|| InvalidParameter::missing(&named("key")))?;
    if !f.has("value") {
        return Err(InvalidParameter::missing(&named("value")).into());
    }
    let value = f.f64("value")?;
    let timestamp = f.opt_i64("timestamp")?.ok_or_else(|| InvalidParameter::missing(&named("timestamp")))?;
    Ok(Metric {
        key,
        value,
        timestamp,
        step: f.opt_i64("step")?.unwrap_or(0),
        dataset_name: f.opt_str("dataset_name")?.filter(|it| !it.is_empty()),
        dataset_digest: f.opt_str("dataset_digest")?.filter(|it| !it.is_empty()),
        model_id: f.opt_str("model_id")?.filter(|it| !it.is_empty()),
    })
}

async fn log_metric(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(mut f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let m = metric(&mut f, usize::MAX)?;
    references::require_readable(&s, p.as_ref().map(|e| &e.0), metric_references(std::slice::from_ref(&m))).await?;
    s.tracking.acting(&actor).log_batch(&run_id, LogBatch { metrics: vec![m], ..LogBatch::default() }).await?;
    empty()
}

async fn log_param(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let param = plinth_core::tracking::KeyValue { key: f.str("key")?, value: f.str_allow_empty("value")? };
    s.tracking.acting(&actor).log_batch(&run_id, LogBatch { params: vec![param], ..LogBatch::default() }).await?;
    empty()
}

async fn set_tag(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let tag = plinth_core::tracking::KeyValue { key: f.str("key")?, value: f.str_allow_empty("value")? };
    references::require_readable(&s, p.as_ref().map(|e| &e.0), Reference::of_run_tags([&tag])).await?;
    s.tracking.acting(&actor).log_batch(&run_id, LogBatch { tags: vec![tag], ..LogBatch::default() }).await?;
    empty()
}

async fn delete_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.acting(&actor).delete_run_tag(&f.run_id()?, &f.str("key")?).await?;
    empty()
}

async fn log_batch(State(s): State<AppState>, p: Ext, Caller(actor): Caller, uri: axum::http::Uri, JsonBody(body): JsonBody) -> Answer {
    if body.len() > MAX_BATCH_LOG_REQUEST_BYTES {
        return Err(ApiError::invalid(format!("Batched logging API requests must be at most 1 MB in size. Got {} bytes.", body.len())));
    }
    // The fast path reads the body alone; with a query string the generic path merges both.
    let fast = if uri.query().is_none() { crate::batch::parse(&body) } else { None };
    let (run_id, batch) = match fast {
        Some(fast) => (fast.run_id, LogBatch { metrics: fast.metrics, params: fast.params, tags: fast.tags }),
        None => {
            // The generic parser explains what is wrong, in MLflow's words.
            let mut f = Fields::from_request_parts(&body, uri.query())?;
            let run_id = f.run_id()?;
            let metrics = f
                .take_objects("metrics")?
                .into_iter()
                .enumerate()
                .map(|(idx, mut it)| metric(&mut it, idx))
                .collect::<Result<Vec<_>, _>>()?;
            (run_id, LogBatch { metrics, params: f.take_key_values("params")?, tags: f.take_key_values("tags")? })
        }
    };
    if s.auth_enabled {
        let refs = Reference::of_run_tags(&batch.tags).into_iter().chain(metric_references(&batch.metrics));
        references::require_readable(&s, p.as_ref().map(|e| &e.0), refs).await?;
    }
    s.tracking.acting(&actor).log_batch(&run_id, batch).await?;
    empty()
}

async fn log_inputs(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let mut datasets = Vec::new();
    for input in f.objects("datasets")? {
        let d = input.object("dataset")?.ok_or_else(|| InvalidParameter::missing("datasets.dataset"))?;
        datasets.push(DatasetInput {
            tags: input.key_values("tags")?,
            dataset: Dataset {
                name: d.str("name")?,
                digest: d.str("digest")?,
                source_type: d.str("source_type")?,
                source: d.str_allow_empty("source")?,
                schema: d.opt_str("schema")?,
                profile: d.opt_str("profile")?,
            },
        });
    }
    let models = f.objects("models")?.iter().map(|m| m.str("model_id")).collect::<Result<Vec<_>, _>>()?;
    let refs = models.iter().map(|id| Reference::LoggedModel(id.clone())).chain(datasets.iter().filter_map(dataset_reference));
    references::require_readable(&s, p.as_ref().map(|e| &e.0), refs.collect::<Vec<_>>()).await?;
    s.tracking.log_inputs(&run_id, datasets, models).await?;
    empty()
}

async fn log_outputs(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    let run_id = f.run_id()?;
    let outputs = f
        .objects("models")?
        .iter()
        .map(|m| Ok(ModelOutput { model_id: m.str("model_id")?, step: m.opt_i64("step")?.unwrap_or(0) }))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let refs: Vec<Reference> = outputs.iter().map(|o| Reference::LoggedModel(o.model_id.clone())).collect();
    references::require_readable(&s, p.as_ref().map(|e| &e.0), refs).await?;
    s.tracking.log_outputs(&run_id, outputs).await?;
    empty()
}

async fn log_model(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.log_model(&f.run_id()?, &f.str("model_json")?).await?;
    empty()
}

// Metric histories.

#[derive(Serialize)]
struct History<'a> {
    metrics: Vec<MetricJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn get_metric_history(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Result<axum::response::Response, ApiError> {
    let max_results = f.opt_i64("max_results")?;
    let page = s.tracking.get_metric_history(&f.run_id()?, &f.str("metric_key")?, max_results, f.opt_str("page_token")?.as_deref()).await?;
    let body = History {
        metrics: page.items.iter().map(|m| MetricJson { metric: m, run_id: None }).collect(),
        next_page_token: page.next_page_token,
    };
    Ok(axum::response::IntoResponse::into_response(Json(body)))
}

/// The UI's multi-run history: every point of each run, in run order, at most `max_results` in all.
async fn get_metric_history_bulk(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Result<axum::response::Response, ApiError> {
    const MAX_RUNS: usize = 100;
    const MAX_POINTS: i64 = 25_000;
    let mut run_ids = f.str_list("run_id")?;
    if run_ids.is_empty() {
        run_ids = f.str_list("run_ids")?;
    }
    if run_ids.is_empty() {
        // MLflow's words (clients and users match on them).
        return Err(ApiError::invalid("GetMetricHistoryBulk request must specify at least one run_id."));
    }
    if run_ids.len() > MAX_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulk request cannot specify more than {MAX_RUNS} run_ids. Received {} run_ids.",
            run_ids.len()
        )));
    }
    let key = f.str("metric_key")?;
    let max = f.opt_i64("max_results")?.unwrap_or(MAX_POINTS).clamp(1, MAX_POINTS);
    run_ids.sort();
    let mut all = Vec::new();
    for run_id in &run_ids {
        let page = s.tracking.get_metric_history(run_id, &key, Some(max), None).await?;
        all.extend(page.items.into_iter().map(|m| (run_id.clone(), m)));
        if all.len() as i64 >= max {
            break;
        }
    }
    all.truncate(max as usize);
    let body = History { metrics: all.iter().map(|(id, m)| MetricJson { metric: m, run_id: Some(id) }).collect(), next_page_token: None };
    Ok(axum::response::IntoResponse::into_response(Json(body)))
}

async fn get_metric_history_bulk_interval(
    State(s): State<AppState>,
    MlflowRequest(f): MlflowRequest,
) -> Result<axum::response::Response, ApiError> {
    let req = HistoryBulkInterval {
        run_ids: f.str_list("run_ids")?,
        metric_key: f.str("metric_key")?,
        start_step: f.opt_i64("start_step")?,
        end_step: f.opt_i64("end_step")?,
        max_results: f.opt_i64("max_results")?,
    };
    let points = s.tracking.get_metric_history_bulk_interval(req).await?;
    let body = History {
        metrics: points.iter().map(|p| MetricJson { metric: &p.metric, run_id: Some(p.run_id.as_str()) }).collect(),
        next_page_token: None,
    };
    Ok(axum::response::IntoResponse::into_response(Json(body)))
}

// Artifacts of a run.

fn file_infos(entries: Vec<(String, plinth_blob::Entry)>) -> Vec<Value> {
    entries.iter().map(|(path, entry)| json::file_info(path, entry)).collect()
}

async fn list_artifacts(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let (root_uri, entries) = s.tracking.list_run_artifacts(&f.run_id()?, f.opt_str("path")?.as_deref()).await?;
    Ok(Json(json!({"root_uri": root_uri, "files": file_infos(entries)})))
}

/// The datasets the runs of some experiments used (MLflow's UI lists them in its filters).
async fn search_datasets(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let summaries = s.tracking.search_dataset_summaries(&f.str_list("experiment_ids")?).await?;
    let items: Vec<Value> = summaries
        .iter()
        .map(|d| {
            let mut item = json!({"experiment_id": d.experiment_id.as_str(), "name": d.name, "digest": d.digest});
            if let Some(context) = &d.context {
                item["context"] = json!(context);
            }
            item
        })
        .collect();
    Ok(Json(json!({"dataset_summaries": items})))
}

// Logged models.

async fn create_logged_model(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let source_run = f.opt_str("source_run_id")?.filter(|it| !it.is_empty());
    references::require_readable(&s, p.as_ref().map(|e| &e.0), source_run.map(Reference::Run)).await?;
    let req = CreateLoggedModel {
        experiment_id: f.str("experiment_id")?,
        name: f.opt_str("name")?,
        model_type: f.opt_str("model_type")?,
        source_run_id: f.opt_str("source_run_id")?,
        params: f.key_values("params")?,
        tags: f.key_values("tags")?,
    };
    let model = s.tracking.acting(&actor).create_logged_model(req).await?;
    Ok(Json(json!({"model": json::logged_model(&model)})))
}

async fn get_logged_model(State(s): State<AppState>, Path(model_id): Path<String>, MlflowRequest(f): MlflowRequest) -> Answer {
    let model = s.tracking.get_logged_model(&model_id, f.opt_bool("allow_deleted")?.unwrap_or(false)).await?;
    Ok(Json(json!({"model": json::logged_model(&model)})))
}

async fn finalize_logged_model(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(model_id): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let status = enum_field(&f, "status", LoggedModelStatus::parse)?.ok_or_else(|| InvalidParameter::missing("status"))?;
    let model = s.tracking.acting(&actor).finalize_logged_model(&model_id, status).await?;
    Ok(Json(json!({"model": json::logged_model(&model)})))
}

async fn delete_logged_model(State(s): State<AppState>, Caller(actor): Caller, Path(model_id): Path<String>) -> Answer {
    s.tracking.acting(&actor).delete_logged_model(&model_id).await?;
    empty()
}

async fn set_logged_model_tags(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(model_id): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let model = s.tracking.acting(&actor).set_logged_model_tags(&model_id, f.key_values("tags")?).await?;
    Ok(Json(json!({"model": json::logged_model(&model)})))
}

async fn delete_logged_model_tag(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((model_id, key)): Path<(String, String)>,
) -> Answer {
    s.tracking.acting(&actor).delete_logged_model_tag(&model_id, &key).await?;
    empty()
}

async fn log_logged_model_params(State(s): State<AppState>, Path(model_id): Path<String>, MlflowRequest(f): MlflowRequest) -> Answer {
    s.tracking.log_logged_model_params(&model_id, f.key_values("params")?).await?;
    empty()
}

async fn search_logged_models(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let order_by = f
        .objects("order_by")?
        .iter()
        .map(|o| Ok((o.str("field_name")?, o.opt_bool("ascending")?.unwrap_or(true))))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let req = SearchLoggedModels {
        experiment_ids: f.str_list("experiment_ids")?,
        filter: f.opt_str("filter")?,
        order_by,
        max_results: f.opt_i64("max_results")?,
        page_token: f.opt_str("page_token")?,
    };
    let page = s.tracking.search_logged_models(req).await?;
    Ok(Json(json::page("models", page.items.iter().map(json::logged_model).collect(), page.next_page_token)))
}

async fn list_logged_model_artifacts(State(s): State<AppState>, Path(model_id): Path<String>, MlflowRequest(f): MlflowRequest) -> Answer {
    let model = s.tracking.get_logged_model(&model_id, false).await?;
    let rel = f.opt_str("artifact_directory_path")?;
    let entries = s.tracking.list_artifact_uri(&model.artifact_location, rel.as_deref()).await?;
    Ok(Json(json!({"root_uri": model.artifact_location, "files": file_infos(entries)})))
}
