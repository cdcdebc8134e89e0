//! `TrackingService`: MLflow's tracking operations with their validation and defaults.

use std::sync::Arc;

use plinth_blob::{ArtifactPath, BlobStore, Entry};
use plinth_core::ids::{ExperimentId, LoggedModelId, RunId};
use plinth_core::time::now_millis;
use plinth_core::tracking::{
    DatasetInput, Experiment, KeyValue, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, MetricWithRunId, ModelOutput, Page, Run,
    RunInfo, RunStatus, ViewType,
};
use plinth_core::validation::{self as v, InvalidParameter};
use plinth_filter::{Grammar, parse_filter, parse_order_by};
use plinth_store::audit::Record;
use plinth_store::tracking::{
    ArtifactLocation, DatasetSummary, ExperimentQuery, LoggedModelQuery, NewExperiment, NewLoggedModel, NewRun, PageRequest, RunQuery,
    RunUpdate, StepRange,
};
use plinth_store::{AuditLog, TrackingStore};

use crate::artifacts::{ArtifactRoot, proxied_path};
use crate::{Error, Result, names, sampling};

const RUN_NAME_TAG: &str = "mlflow.runName";
const LOG_MODEL_HISTORY_TAG: &str = "mlflow.log-model.history";
/// Metric history is returned whole when the client does not ask for pages; this bounds one answer.
const MAX_HISTORY_POINTS: i64 = 10_000_000;

/// Settings of the tracking service. No `Default`: the server decides.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    pub artifact_root: ArtifactRoot,
    /// Truncate over-long param and tag values instead of refusing them (MLflow's `MLFLOW_TRUNCATE_LONG_VALUES`).
    pub truncate_long_values: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    pub experiment_id: Option<String>,
    pub user_id: Option<String>,
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchExperiments {
    pub view_type: Option<ViewType>,
    /// Only these experiment ids (with auth on: what the caller may read).
    pub restrict_to: Option<Vec<String>>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchRuns {
    pub experiment_ids: Vec<String>,
    pub view_type: Option<ViewType>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchLoggedModels {
    pub experiment_ids: Vec<String>,
    pub filter: Option<String>,
    /// `(field, ascending)`; metric fields are `metrics.<key>`.
    pub order_by: Vec<(String, bool)>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateLoggedModel {
    pub experiment_id: String,
    pub name: Option<String>,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryBulkInterval {
    pub run_ids: Vec<String>,
    pub metric_key: String,
    pub start_step: Option<i64>,
    pub end_step: Option<i64>,
    pub max_results: Option<i64>,
}

pub struct TrackingService {
    store: Arc<dyn TrackingStore>,
    blobs: Arc<dyn BlobStore>,
    audit: Arc<dyn AuditLog>,
    config: TrackingConfig,
}

fn experiment_id(raw: &str) -> Result<ExperimentId> {
    ExperimentId::parse(raw).map_err(|_| Error::invalid(format!("Invalid experiment ID: '{raw}'")))
}

fn run_id(raw: &str) -> Result<RunId> {
    Ok(RunId::parse(raw)?)
}

/// Most order-by keys, filter clauses and experiment ids one search takes, and the longest string
/// value in a filter: bounds that keep every query within the databases' limits.
const MAX_ORDER_BY_KEYS: usize = 20;
const MAX_FILTER_CLAUSES: usize = 256;
const MAX_SEARCH_EXPERIMENTS: usize = 10_000;
const MAX_FILTER_VALUE_BYTES: usize = 8_000;

/// The blob path of an artifact root URI this server stores (a proxied `mlflow-artifacts:` URI).
/// Any other location is not the server's to read: listing or serving an arbitrary `file://`
/// location would let a client read the server's file system.
fn stored_root(root_uri: &str) -> Result<ArtifactPath> {
    match proxied_path(root_uri) {
        Some(base) => base,
        None => Err(Error::invalid(format!("The artifacts at '{root_uri}' are not stored by this server; read them from there directly"))),
    }
}

fn check_search_size(order_by: usize, filter: &[plinth_filter::Clause], experiments: usize) -> Result<()> {
    if order_by > MAX_ORDER_BY_KEYS {
        return Err(Error::invalid(format!("At most {MAX_ORDER_BY_KEYS} order_by keys are supported, got {order_by}")));
    }
    if filter.len() > MAX_FILTER_CLAUSES {
        return Err(Error::invalid(format!("At most {MAX_FILTER_CLAUSES} filter clauses are supported, got {}", filter.len())));
    }
    if experiments > MAX_SEARCH_EXPERIMENTS {
        return Err(Error::invalid(format!("At most {MAX_SEARCH_EXPERIMENTS} experiment_ids are supported, got {experiments}")));
    }
    let too_long = |s: &String| s.len() > MAX_FILTER_VALUE_BYTES;
    for clause in filter {
        let long = match &clause.value {
            plinth_filter::Value::String(s) => too_long(s),
            plinth_filter::Value::List(items) => items.iter().any(too_long),
            _ => false,
        };
        if long {
            return Err(Error::invalid(format!("Filter values are limited to {MAX_FILTER_VALUE_BYTES} bytes")));
        }
    }
    Ok(())
}

fn page(max_results: Option<i64>, default: i64, limit: i64, token: Option<&str>) -> Result<PageRequest> {
    Ok(PageRequest::from_client(max_results, default, limit, token)?)
}

impl TrackingService {
    pub fn new(
        store: Arc<dyn TrackingStore>,
        blobs: Arc<dyn BlobStore>,
        audit: Arc<dyn AuditLog>,
        config: TrackingConfig,
    ) -> TrackingService {
        TrackingService { store, blobs, audit, config }
    }

    pub(crate) fn audit_log(&self) -> &Arc<dyn AuditLog> {
        &self.audit
    }

    /// Creates the Default experiment on first start.
    pub async fn init(&self) -> Result<()> {
        let location = self.config.artifact_root.experiment_location("0");
        Ok(self.store.ensure_default_experiment(&location, now_millis()).await?)
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn config(&self) -> &TrackingConfig {
        &self.config
    }

    fn tag_value(&self, value: String) -> Result<String> {
        Ok(v::limit_length("Tag value", v::MAX_TAG_VALUE_LENGTH, value, self.config.truncate_long_values)?)
    }

    fn validate_tags(&self, tags: Vec<KeyValue>) -> Result<Vec<KeyValue>> {
        tags.into_iter()
            .map(|tag| {
                v::validate_key("key", &tag.key)?;
                Ok(KeyValue { value: self.tag_value(tag.value)?, key: tag.key })
            })
            .collect()
    }

    // Experiments.

    pub(crate) async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<KeyValue>,
        record: Record<'_, ExperimentId>,
    ) -> Result<ExperimentId> {
        v::validate_experiment_name(name)?;
        for tag in &tags {
            v::check_length("Experiment tag key", v::MAX_EXPERIMENT_TAG_KEY_LENGTH, &tag.key)?;
            v::check_length("Experiment tag value", v::MAX_EXPERIMENT_TAG_VALUE_LENGTH, &tag.value)?;
        }
        let artifact_location = match artifact_location.filter(|it| !it.is_empty()) {
            Some(uri) => {
                // A relative path would mean "relative to wherever the server happened to start"
                // (MLflow resolves it so); refused instead, so a location means the same tomorrow.
                if !uri.starts_with('/') && !uri.contains(':') {
                    return Err(Error::invalid(format!(
                        "artifact_location '{uri}' is a relative path; give an absolute path (/data/artifacts/…) or a URI (s3://…, file:///…)"
                    )));
                }
                ArtifactLocation::Given(uri.to_owned())
            }
            None => ArtifactLocation::UnderRoot(self.config.artifact_root.uri()),
        };
        let new = NewExperiment { name: name.to_owned(), artifact_location, tags, now: now_millis() };
        Ok(self.store.create_experiment(new, record).await?)
    }

    pub async fn get_experiment(&self, id: &str) -> Result<Experiment> {
        Ok(self.store.get_experiment(&experiment_id(id)?).await?)
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        self.store.find_experiment_by_name(name).await?.ok_or_else(|| {
            Error::Store(plinth_store::Error::Tracking(plinth_store::TrackingError::ExperimentNotFound {
                experiment_id: format!("(name='{name}')"),
            }))
        })
    }

    pub async fn search_experiments(&self, req: SearchExperiments) -> Result<Page<Experiment>> {
        let page = page(req.max_results, 1000, v::MAX_RESULTS_PER_PAGE, req.page_token.as_deref())?;
        let query = ExperimentQuery {
            restrict_to: req.restrict_to,
            view_type: req.view_type.unwrap_or(ViewType::ActiveOnly),
            filter: parse_filter(Grammar::Experiments, req.filter.as_deref().unwrap_or(""))?,
            order_by: req.order_by.iter().map(|it| parse_order_by(Grammar::Experiments, it)).collect::<Result<_, _>>()?,
            page,
        };
        check_search_size(query.order_by.len(), &query.filter, 0)?;
        Ok(self.store.search_experiments(&query).await?.into_page(page))
    }

    pub(crate) async fn rename_experiment(&self, id: &str, new_name: &str, record: Record<'_, ()>) -> Result<()> {
        v::validate_experiment_name(new_name)?;
        Ok(self.store.rename_experiment(&experiment_id(id)?, new_name, now_millis(), record).await?)
    }

    pub(crate) async fn delete_experiment(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.set_experiment_lifecycle(&experiment_id(id)?, LifecycleStage::Deleted, now_millis(), record).await?)
    }

    pub(crate) async fn restore_experiment(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.set_experiment_lifecycle(&experiment_id(id)?, LifecycleStage::Active, now_millis(), record).await?)
    }

    pub(crate) async fn set_experiment_tag(&self, id: &str, key: &str, value: &str, record: Record<'_, ()>) -> Result<()> {
        v::validate_key("key", key)?;
        v::check_length("Experiment tag value", v::MAX_EXPERIMENT_TAG_VALUE_LENGTH, value)?;
        Ok(self.store.set_experiment_tag(&experiment_id(id)?, &KeyValue::new(key, value), record).await?)
    }

    pub(crate) async fn delete_experiment_tag(&self, id: &str, key: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.delete_experiment_tag(&experiment_id(id)?, key, record).await?)
    }

    // Runs.

    pub(crate) async fn create_run(&self, req: CreateRun, record: Record<'_, Run>) -> Result<Run> {
        let experiment_id = experiment_id(req.experiment_id.as_deref().filter(|it| !it.is_empty()).unwrap_or("0"))?;
        let mut tags = self.validate_tags(req.tags)?;
        let tag_name = tags.iter().rev().find(|t| t.key == RUN_NAME_TAG).map(|t| t.value.clone());
        let run_name = match (req.run_name.filter(|it| !it.is_empty()), tag_name) {
            (Some(name), Some(tag)) if name != tag => {
                return Err(Error::invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{name}', mlflow.runName='{tag}')."
                )));
            }
            (Some(name), _) => name,
            (None, Some(tag)) => tag,
            (None, None) => names::random_run_name(),
        };
        let run_name = self.tag_value(run_name)?;
        tags.retain(|t| t.key != RUN_NAME_TAG);
        tags.push(KeyValue::new(RUN_NAME_TAG, run_name.clone()));
        let user_id = req.user_id.filter(|it| !it.is_empty()).unwrap_or_else(|| "unknown".to_owned());
        let new = NewRun {
            run_id: RunId::generate(),
            experiment_id,
            user_id,
            run_name,
            start_time: req.start_time.unwrap_or_else(now_millis),
            tags,
        };
        Ok(self.store.create_run(new, record).await?)
    }

    pub async fn get_run(&self, id: &str) -> Result<Run> {
        Ok(self.store.get_run(&run_id(id)?).await?)
    }

    pub(crate) async fn update_run(
        &self,
        id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<String>,
        record: Record<'_, RunInfo>,
    ) -> Result<RunInfo> {
        let run_name = run_name.filter(|it| !it.is_empty()).map(|it| self.tag_value(it)).transpose()?;
        if let Some(end_time) = end_time
            && end_time < 0
        {
            return Err(InvalidParameter::invalid_value("end_time", &end_time.to_string(), "").into());
        }
        Ok(self.store.update_run(&run_id(id)?, &RunUpdate { status, end_time, run_name }, record).await?)
    }

    pub(crate) async fn delete_run(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.set_run_lifecycle(&run_id(id)?, LifecycleStage::Deleted, now_millis(), record).await?)
    }

    pub(crate) async fn restore_run(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.set_run_lifecycle(&run_id(id)?, LifecycleStage::Active, now_millis(), record).await?)
    }

    /// Validates the whole batch, then writes it in one transaction.
    pub(crate) async fn log_batch(&self, id: &str, batch: LogBatch, record: Record<'_, ()>) -> Result<()> {
        let run_id = run_id(id)?;
        let LogBatch { metrics, params, tags } = batch;
        if metrics.len() > v::MAX_METRICS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics. Got {} metrics. Please split up metrics across multiple requests and try again.",
                v::MAX_METRICS_PER_BATCH,
                metrics.len()
            )));
        }
        if params.len() > v::MAX_PARAMS_TAGS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} params. Got {} params. Please split up params across multiple requests and try again.",
                v::MAX_PARAMS_TAGS_PER_BATCH,
                params.len()
            )));
        }
        if tags.len() > v::MAX_PARAMS_TAGS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} tags. Got {} tags. Please split up tags across multiple requests and try again.",
                v::MAX_PARAMS_TAGS_PER_BATCH,
                tags.len()
            )));
        }
        let total = metrics.len() + params.len() + tags.len();
        if total > v::MAX_ENTITIES_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics, params, and tags in total. Got {total}.",
                v::MAX_ENTITIES_PER_BATCH
            )));
        }
        for m in &metrics {
            v::validate_key("name", &m.key)?;
            if m.timestamp < 0 {
                return Err(InvalidParameter::invalid_value(
                    "timestamp",
                    &m.timestamp.to_string(),
                    &format!("metric '{}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ", m.key, m.value),
                )
                .into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = Vec::new();
        let mut checked_params = Vec::with_capacity(params.len());
        for p in params {
            v::validate_key("key", &p.key)?;
            if !seen.insert(p.key.clone()) {
                duplicates.push(p.key.clone());
            }
            let value = v::limit_length("Param value", v::MAX_PARAM_VALUE_LENGTH, p.value, self.config.truncate_long_values)?;
            checked_params.push(KeyValue { key: p.key, value });
        }
        if !duplicates.is_empty() {
            return Err(Error::invalid(format!(
                "Duplicate parameter keys have been submitted: {duplicates:?}. Please ensure the request contains only one param value per param key."
            )));
        }
        let tags = self.validate_tags(tags)?;
        Ok(self.store.log_batch(&run_id, &metrics, &checked_params, &tags, record).await?)
    }

    pub(crate) async fn delete_run_tag(&self, id: &str, key: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.delete_run_tag(&run_id(id)?, key, record).await?)
    }

    pub async fn log_inputs(&self, id: &str, datasets: Vec<DatasetInput>, model_ids: Vec<String>) -> Result<()> {
        for input in &datasets {
            let d = &input.dataset;
            v::check_length("Dataset name", v::MAX_DATASET_NAME_LENGTH, &d.name)?;
            v::check_length("Dataset digest", v::MAX_DATASET_DIGEST_LENGTH, &d.digest)?;
            v::check_length("Dataset source", v::MAX_DATASET_SOURCE_LENGTH, &d.source)?;
            v::check_length("Dataset schema", v::MAX_DATASET_SCHEMA_LENGTH, d.schema.as_deref().unwrap_or(""))?;
            v::check_length("Dataset profile", v::MAX_DATASET_PROFILE_LENGTH, d.profile.as_deref().unwrap_or(""))?;
            for tag in &input.tags {
                v::check_length("Input tag key", v::MAX_INPUT_TAG_KEY_LENGTH, &tag.key)?;
                v::check_length("Input tag value", v::MAX_INPUT_TAG_VALUE_LENGTH, &tag.value)?;
            }
        }
        Ok(self.store.log_inputs(&run_id(id)?, &datasets, &model_ids, Record::none()).await?)
    }

    pub async fn log_outputs(&self, id: &str, outputs: Vec<ModelOutput>) -> Result<()> {
        Ok(self.store.log_outputs(&run_id(id)?, &outputs, Record::none()).await?)
    }

    /// Appends an MLmodel description to the run's `mlflow.log-model.history` tag.
    pub async fn log_model(&self, id: &str, model_json: &str) -> Result<()> {
        let model: serde_json::Value = serde_json::from_str(model_json)
            .map_err(|_| InvalidParameter::invalid_value("model_json", model_json, "Malformed model info"))?;
        for field in ["artifact_path", "flavors", "utc_time_created", "run_id"] {
            if model.get(field).is_none() {
                return Err(Error::invalid(format!("Model json is missing mandatory fields: ['{field}']")));
            }
        }
        let run_id = run_id(id)?;
        let run = self.store.get_run(&run_id).await?;
        let mut history: Vec<serde_json::Value> = run
            .data
            .tags
            .iter()
            .find(|t| t.key == LOG_MODEL_HISTORY_TAG)
            .and_then(|t| serde_json::from_str(&t.value).ok())
            .unwrap_or_default();
        history.push(model);
        let value = serde_json::Value::Array(history).to_string();
        // The history is the run's own record of its models, written as MLflow writes it: data, not audited.
        Ok(self.store.log_batch(&run_id, &[], &[], &[KeyValue::new(LOG_MODEL_HISTORY_TAG, value)], Record::none()).await?)
    }

    pub async fn search_runs(&self, req: SearchRuns) -> Result<Page<Run>> {
        let page = page(req.max_results, 1000, v::MAX_RESULTS_PER_PAGE, req.page_token.as_deref())?;
        let query = RunQuery {
            experiment_ids: req.experiment_ids.iter().map(|it| experiment_id(it)).collect::<Result<_>>()?,
            view_type: req.view_type.unwrap_or(ViewType::ActiveOnly),
            filter: parse_filter(Grammar::Runs, req.filter.as_deref().unwrap_or(""))?,
            order_by: req.order_by.iter().map(|it| parse_order_by(Grammar::Runs, it)).collect::<Result<_, _>>()?,
            page,
        };
        check_search_size(query.order_by.len(), &query.filter, query.experiment_ids.len())?;
        Ok(self.store.search_runs(&query).await?.into_page(page))
    }

    /// MLflow's `experiments/search-datasets`: the datasets the runs of `experiment_ids` used,
    /// with their contexts (at most 1,000).
    pub async fn search_dataset_summaries(&self, experiment_ids: &[String]) -> Result<Vec<DatasetSummary>> {
        if experiment_ids.is_empty() {
            return Err(InvalidParameter::missing("experiment_ids").into());
        }
        check_search_size(0, &[], experiment_ids.len())?;
        let ids = experiment_ids.iter().map(|it| experiment_id(it)).collect::<Result<Vec<_>>>()?;
        Ok(self.store.search_dataset_summaries(&ids, plinth_store::tracking::MAX_DATASET_SUMMARIES).await?)
    }

    pub async fn get_metric_history(
        &self,
        id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<Metric>> {
        let request = match max_results {
            Some(max) => page(Some(max), max, i64::MAX / 2, page_token)?,
            None => PageRequest { offset: plinth_core::page_token::decode(page_token)?, limit: MAX_HISTORY_POINTS },
        };
        Ok(self.store.get_metric_history(&run_id(id)?, key, request).await?.into_page(request))
    }

    /// Each run's points at up to `max_results` evenly spaced steps (always its first and last).
    pub async fn get_metric_history_bulk_interval(&self, req: HistoryBulkInterval) -> Result<Vec<MetricWithRunId>> {
        if req.run_ids.is_empty() {
            return Err(InvalidParameter::missing("run_ids").into());
        }
        if req.run_ids.len() > v::MAX_HISTORY_BULK_RUN_IDS {
            return Err(Error::invalid(format!(
                "GetMetricHistoryBulkInterval request must specify at most {} run_ids. Received {} run_ids.",
                v::MAX_HISTORY_BULK_RUN_IDS,
                req.run_ids.len()
            )));
        }
        let max = req.max_results.unwrap_or(v::MAX_HISTORY_BULK_RESULTS);
        if !(1..=v::MAX_HISTORY_BULK_RESULTS).contains(&max) {
            return Err(Error::invalid(format!("max_results must be between 1 and {}.", v::MAX_HISTORY_BULK_RESULTS)));
        }
        let range = match (req.start_step, req.end_step) {
            (Some(start), Some(end)) if start > end => {
                return Err(Error::invalid(format!(
                    "end_step must be greater than start_step. Found start_step={start} and end_step={end}."
                )));
            }
            (Some(start), Some(end)) => Some(StepRange { start, end }),
            (None, None) => None,
            _ => return Err(Error::invalid("If either start step or end step are specified, both must be specified.")),
        };
        let mut res = Vec::new();
        for raw in &req.run_ids {
            let run_id = run_id(raw)?;
            let steps = self.store.list_metric_steps(&run_id, &req.metric_key, range).await?;
            let picked = sampling::sample_steps(&steps, max as usize);
            let points = self.store.get_metric_points_at_steps(&run_id, &req.metric_key, &picked).await?;
            res.extend(points.into_iter().map(|metric| MetricWithRunId { run_id: run_id.clone(), metric }));
        }
        Ok(res)
    }

    // Logged models.

    pub(crate) async fn create_logged_model(&self, req: CreateLoggedModel, record: Record<'_, LoggedModel>) -> Result<LoggedModel> {
        let source_run_id = req.source_run_id.filter(|it| !it.is_empty()).map(|it| run_id(&it)).transpose()?;
        if let Some(name) = req.name.as_deref() {
            v::validate_logged_model_name(name)?;
        }
        let new = NewLoggedModel {
            model_id: LoggedModelId::generate(),
            experiment_id: experiment_id(&req.experiment_id)?,
            name: req.name.filter(|it| !it.is_empty()).unwrap_or_else(names::random_run_name),
            model_type: req.model_type,
            source_run_id,
            params: req.params,
            tags: req.tags,
            now: now_millis(),
        };
        Ok(self.store.create_logged_model(new, record).await?)
    }

    fn model_id(raw: &str) -> Result<LoggedModelId> {
        Ok(LoggedModelId::parse(raw)?)
    }

    pub async fn get_logged_model(&self, id: &str, allow_deleted: bool) -> Result<LoggedModel> {
        Ok(self.store.get_logged_model(&Self::model_id(id)?, allow_deleted).await?)
    }

    pub(crate) async fn finalize_logged_model(
        &self,
        id: &str,
        status: LoggedModelStatus,
        record: Record<'_, LoggedModel>,
    ) -> Result<LoggedModel> {
        Ok(self.store.update_logged_model_status(&Self::model_id(id)?, status, None, now_millis(), record).await?)
    }

    pub(crate) async fn delete_logged_model(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.delete_logged_model(&Self::model_id(id)?, now_millis(), record).await?)
    }

    pub(crate) async fn set_logged_model_tags(&self, id: &str, tags: Vec<KeyValue>, record: Record<'_, ()>) -> Result<LoggedModel> {
        let model_id = Self::model_id(id)?;
        self.store.set_logged_model_tags(&model_id, &tags, now_millis(), record).await?;
        Ok(self.store.get_logged_model(&model_id, false).await?)
    }

    pub(crate) async fn delete_logged_model_tag(&self, id: &str, key: &str, record: Record<'_, ()>) -> Result<()> {
        Ok(self.store.delete_logged_model_tag(&Self::model_id(id)?, key, now_millis(), record).await?)
    }

    pub async fn log_logged_model_params(&self, id: &str, params: Vec<KeyValue>) -> Result<()> {
        Ok(self.store.log_logged_model_params(&Self::model_id(id)?, &params, now_millis(), Record::none()).await?)
    }

    pub async fn search_logged_models(&self, req: SearchLoggedModels) -> Result<Page<LoggedModel>> {
        let page = page(req.max_results, 100, v::MAX_RESULTS_PER_PAGE, req.page_token.as_deref())?;
        let order_by = req
            .order_by
            .iter()
            .map(|(field, ascending)| {
                let direction = if *ascending { "ASC" } else { "DESC" };
                parse_order_by(Grammar::LoggedModels, &format!("{field} {direction}"))
            })
            .collect::<Result<_, _>>()?;
        let query = LoggedModelQuery {
            experiment_ids: req.experiment_ids.iter().map(|it| experiment_id(it)).collect::<Result<_>>()?,
            filter: parse_filter(Grammar::LoggedModels, req.filter.as_deref().unwrap_or(""))?,
            order_by,
            page,
        };
        check_search_size(query.order_by.len(), &query.filter, query.experiment_ids.len())?;
        Ok(self.store.search_logged_models(&query).await?.into_page(page))
    }

    // Artifacts.

    /// Lists a run's artifacts under `path`; returned paths are relative to the run's artifact root.
    pub async fn list_run_artifacts(&self, id: &str, path: Option<&str>) -> Result<(String, Vec<(String, Entry)>)> {
        let run = self.store.get_run(&run_id(id)?).await?;
        let entries = self.list_artifact_uri(&run.info.artifact_uri, path).await?;
        Ok((run.info.artifact_uri, entries))
    }

    /// Lists `path` under an artifact root URI the server stores (a proxied `mlflow-artifacts:` URI);
    /// returned paths are relative to the root.
    pub async fn list_artifact_uri(&self, root_uri: &str, path: Option<&str>) -> Result<Vec<(String, Entry)>> {
        let rel = ArtifactPath::parse(path.unwrap_or(""))?;
        let dir = stored_root(root_uri)?.join(rel.as_str())?;
        let entries = self.blobs.list(&dir).await?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let full = if rel.is_root() { entry.name.clone() } else { format!("{}/{}", rel.as_str(), entry.name) };
                (full, entry)
            })
            .collect())
    }

    /// Where the file `path` of a run's artifacts is stored; the run's artifacts must be stored by this server.
    pub async fn run_artifact_path(&self, id: &str, path: &str) -> Result<ArtifactPath> {
        let run = self.store.get_run(&run_id(id)?).await?;
        let rel = ArtifactPath::parse(path)?;
        if rel.is_root() {
            return Err(InvalidParameter::missing("path").into());
        }
        Ok(stored_root(&run.info.artifact_uri)?.join(rel.as_str())?)
    }

    /// Opens the file `path` of a run's artifacts (MLflow's `GET /get-artifact`); the run's
    /// artifacts must be stored by this server.
    pub async fn open_run_artifact(&self, id: &str, path: &str) -> Result<(ArtifactPath, plinth_blob::Object)> {
        let run = self.store.get_run(&run_id(id)?).await?;
        self.open_artifact_uri(&run.info.artifact_uri, path).await
    }

    /// Opens the file `path` under an artifact root URI the server stores; answers its full path
    /// (whose file name gives the content type) and its content.
    pub async fn open_artifact_uri(&self, root_uri: &str, path: &str) -> Result<(ArtifactPath, plinth_blob::Object)> {
        let rel = ArtifactPath::parse(path)?;
        if rel.is_root() {
            return Err(InvalidParameter::missing("path").into());
        }
        let full = stored_root(root_uri)?.join(rel.as_str())?;
        let object = self.blobs.get(&full).await?;
        Ok((full, object))
    }
}
