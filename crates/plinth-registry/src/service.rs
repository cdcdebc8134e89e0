//! `RegistryService`: MLflow's model registry semantics, promotion gates, approvals, lineage.
//!
//! Every change is recorded in the audit trail (refusals and failures too) and, for the events
//! webhooks can subscribe to, queued in the webhook outbox after it commits.

use std::sync::Arc;

use plinth_core::audit::{Actor, AuditEvent, Change, Outcome};
use plinth_core::ids::{LoggedModelId, RunId};
use plinth_core::registry::{
    self as r, Gate, GateSpec, ModelVersion, PromotionRequest, PromotionStatus, RegisteredModel, Review, ReviewDecision, Stage,
};
use plinth_core::time::now_millis;
use plinth_core::tracking::{KeyValue, LoggedModel, Page, Run};
use plinth_core::validation::{InvalidParameter, check_length, validate_max_results};
use plinth_filter::{Grammar, parse_filter, parse_order_by};
use plinth_store::audit::{AuditQuery, append_detached};
use plinth_store::registry::{
    AliasMove, Expect, ModelVersionQuery, NewModelVersion, NewPromotion, NewRegisteredModel, PromotionQuery, RegisteredModelQuery,
    StageMove,
};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, RegistryStore, TrackingStore};

use crate::gate::{self, Check, Judge, Subject, Viewer};
use crate::source::VersionSource;
use crate::webhooks::{Event, Outbox};
use crate::{Error, Result};

/// Settings the server decides.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long a promotion request stays open when the requester gives no TTL.
    pub promotion_ttl_secs: i64,
    /// The longest TTL a requester may ask for.
    pub max_promotion_ttl_secs: i64,
}

/// How many times a gated move re-evaluates after losing a race for the target.
const GATED_MOVE_ATTEMPTS: usize = 8;
const MAX_ORDER_BY_KEYS: usize = 20;
const MAX_FILTER_CLAUSES: usize = 256;

/// A gate's verdict on one version.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub target: String,
    pub version: i64,
    /// The version holding the target when it was evaluated.
    pub current: Option<i64>,
    pub checks: Vec<Check>,
    pub approvals_required: u32,
    pub approvals: Vec<String>,
}

impl GateReport {
    pub fn conditions_pass(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn approved(&self) -> bool {
        self.approvals.len() as u32 >= self.approvals_required
    }

    pub fn failures(&self) -> Vec<String> {
        self.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.condition, c.detail)).collect()
    }
}

/// A promotion request with the gate's current verdict on it.
#[derive(Debug, Clone)]
pub struct PromotionOutcome {
    pub request: PromotionRequest,
    pub report: GateReport,
}

/// Where a version came from and what it was trained on.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub version: ModelVersion,
    pub run: Option<Run>,
    pub logged_model: Option<LoggedModel>,
    /// Versions registered from `models:/<name>/<version>` point at the version they copy.
    pub copied_from: Option<(String, i64)>,
}

pub struct CreateVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<KeyValue>,
}

/// What a promotion request asks for: `version` of `model` to `target` (an alias).
pub struct PromotionAsk {
    pub model: String,
    pub version: String,
    pub target: String,
    pub reason: Option<String>,
    /// How long the request stays open; `None`: the server's default.
    pub ttl_secs: Option<i64>,
}

pub struct SearchRequest {
    /// Only these registered models (with auth on: what the caller may read).
    pub restrict_to: Option<Vec<String>>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

pub struct RegistryService {
    store: Arc<dyn RegistryStore>,
    tracking: Arc<dyn TrackingStore>,
    audit: Arc<dyn AuditLog>,
    outbox: Outbox,
    config: RegistryConfig,
}

fn page(max_results: Option<i64>, default: i64, limit: i64, token: Option<&str>) -> Result<PageRequest> {
    Ok(PageRequest::from_client(max_results, default, limit, token)?)
}

fn into_page<T>(rows: Rows<T>, request: PageRequest) -> Page<T> {
    rows.into_page(request)
}

fn check_search(order_by: usize, clauses: usize) -> Result<()> {
    if order_by > MAX_ORDER_BY_KEYS {
        return Err(Error::invalid(format!("At most {MAX_ORDER_BY_KEYS} order_by keys are supported, got {order_by}")));
    }
    if clauses > MAX_FILTER_CLAUSES {
        return Err(Error::invalid(format!("At most {MAX_FILTER_CLAUSES} filter clauses are supported, got {clauses}")));
    }
    Ok(())
}

/// MLflow's prompt rule for registry searches: a filter that asks for prompts
/// (`tags.mlflow.prompt.is_prompt = 'true'` or `!= 'false'`) gets them as a normal tag filter;
/// any other filter loses its clauses on that tag and leaves prompts out (the client adds
/// `tags.mlflow.prompt.is_prompt != 'true'` to every model search).
fn prompt_scope(filter: Vec<plinth_filter::Clause>) -> (Vec<plinth_filter::Clause>, bool) {
    use plinth_filter::{Key, Op, Value};
    let is_prompt_clause = |c: &plinth_filter::Clause| matches!(&c.key, Key::Tag(k) if k == plinth_store::registry::PROMPT_TAG);
    let asks_for_prompts = filter.iter().filter(|c| is_prompt_clause(c)).any(|c| match (&c.op, &c.value) {
        (Op::Eq, Value::String(v)) => v.eq_ignore_ascii_case("true"),
        (Op::Ne, Value::String(v)) => v.eq_ignore_ascii_case("false"),
        _ => false,
    });
    if asks_for_prompts {
        return (filter, false);
    }
    (filter.into_iter().filter(|c| !is_prompt_clause(c)).collect(), true)
}

fn description(value: Option<String>) -> Result<Option<String>> {
    if let Some(d) = &value {
        check_length("description", r::MAX_DESCRIPTION_LENGTH, d)?;
    }
    Ok(value)
}

fn tags(list: &[KeyValue]) -> Result<()> {
    for t in list {
        r::validate_registry_tag(&t.key, &t.value)?;
    }
    Ok(())
}

impl RegistryService {
    pub fn new(
        store: Arc<dyn RegistryStore>,
        tracking: Arc<dyn TrackingStore>,
        audit: Arc<dyn AuditLog>,
        outbox: Outbox,
        config: RegistryConfig,
    ) -> RegistryService {
        RegistryService { store, tracking, audit, outbox, config }
    }

    /// Records `event` with the outcome of `res`, then hands `res` back.
    async fn audited<T>(&self, event: AuditEvent, res: Result<T>) -> Result<T> {
        self.record(&event.concluded(&res)).await?;
        res
    }

    /// Appends to the audit trail. An audit write that fails fails the request: an
    /// acknowledged change always has its record.
    async fn record(&self, event: &AuditEvent) -> Result<()> {
        append_detached(&self.audit, event.clone()).await?;
        Ok(())
    }

    // Registered models.

    pub async fn create_registered_model(
        &self,
        actor: &Actor,
        name: &str,
        tag_list: Vec<KeyValue>,
        desc: Option<String>,
    ) -> Result<RegisteredModel> {
        let event = AuditEvent::new(actor, "registered_model.create", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            tags(&tag_list)?;
            let desc = description(desc)?;
            let model = self
                .store
                .create_registered_model(NewRegisteredModel { name: name.to_owned(), description: desc, tags: tag_list, now: now_millis() })
                .await?;
            Ok(model)
        }
        .await;
        let res = self.audited(event, res).await?;
        self.outbox
            .emit(Event::RegisteredModelCreated { name: res.name.clone(), tags: res.tags.clone(), description: res.description.clone() })
            .await;
        Ok(res)
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        r::validate_model_name("name", name)?;
        Ok(self.store.get_registered_model(name).await?)
    }

    pub async fn rename_registered_model(&self, actor: &Actor, name: &str, new_name: &str) -> Result<RegisteredModel> {
        let event = AuditEvent::new(actor, "registered_model.rename", "registered_model", name).with_change(Change::new(
            "name",
            Some(name.to_owned()),
            Some(new_name.to_owned()),
        ));
        let res = async {
            r::validate_model_name("name", name)?;
            if new_name.trim().is_empty() {
                return Err(InvalidParameter::missing("new_name").into());
            }
            r::validate_model_name("new_name", new_name)?;
            Ok(self.store.rename_registered_model(name, new_name, now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn update_registered_model(&self, actor: &Actor, name: &str, desc: Option<String>) -> Result<RegisteredModel> {
        let mut event = AuditEvent::new(actor, "registered_model.update", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            let desc = description(desc)?;
            let before = self.store.get_registered_model(name).await?;
            event.changes.push(Change::new("description", before.description, desc.clone()));
            Ok(self.store.update_registered_model(name, desc.as_deref(), now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_registered_model(&self, actor: &Actor, name: &str) -> Result<()> {
        let mut event = AuditEvent::new(actor, "registered_model.delete", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            let before = self.store.get_registered_model(name).await?;
            for a in &before.aliases {
                event.changes.push(Change::new(format!("alias.{}", a.alias), Some(a.version.to_string()), None));
            }
            self.store.delete_registered_model(name).await?;
            Ok(())
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn search_registered_models(&self, req: SearchRequest) -> Result<Page<RegisteredModel>> {
        let page = page(req.max_results, r::DEFAULT_REGISTERED_MODELS_PAGE, r::MAX_REGISTERED_MODELS_PAGE, req.page_token.as_deref())?;
        let filter = parse_filter(Grammar::RegisteredModels, req.filter.as_deref().unwrap_or(""))?;
        check_search(req.order_by.len(), filter.len())?;
        let order_by = req.order_by.iter().map(|it| parse_order_by(Grammar::RegisteredModels, it)).collect::<Result<Vec<_>, _>>()?;
        let (filter, exclude_prompts) = prompt_scope(filter);
        let rows = self
            .store
            .search_registered_models(&RegisteredModelQuery { restrict_to: req.restrict_to, filter, exclude_prompts, order_by, page })
            .await?;
        Ok(into_page(rows, page))
    }

    pub async fn set_registered_model_tag(&self, actor: &Actor, name: &str, key: &str, value: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "registered_model.tag.set", "registered_model", name)
            .with_change(Change::set(format!("tags.{key}"), value));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_registry_tag(key, value)?;
            let tag = KeyValue { key: key.to_owned(), value: value.to_owned() };
            Ok(self.store.set_registered_model_tag(name, &tag, now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_registered_model_tag(&self, actor: &Actor, name: &str, key: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "registered_model.tag.delete", "registered_model", name).with_change(Change::new(
            format!("tags.{key}"),
            None,
            None,
        ));
        let res = async {
            r::validate_model_name("name", name)?;
            if key.is_empty() {
                return Err(InvalidParameter::missing("key").into());
            }
            Ok(self.store.delete_registered_model_tag(name, key).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_latest_versions(&self, name: &str, stages: &[String]) -> Result<Vec<ModelVersion>> {
        r::validate_model_name("name", name)?;
        let wanted = stages
            .iter()
            .map(|s| {
                Stage::parse(s).ok_or_else(|| {
                    Error::invalid(format!("Invalid Model Version stage: {s}. Value must be one of None, Staging, Production, Archived."))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let model = self.store.get_registered_model(name).await?;
        Ok(model.latest_versions.into_iter().filter(|v| wanted.is_empty() || wanted.contains(&v.current_stage)).collect())
    }

    // Model versions.

    pub async fn create_model_version(&self, actor: &Actor, req: CreateVersion) -> Result<ModelVersion> {
        let event = AuditEvent::new(actor, "model_version.create", "model_version", format!("{}/?", req.name));
        let res = self.create_model_version_inner(actor, req).await;
        let event = match &res {
            Ok(v) => {
                let mut e = event;
                e.resource_id = format!("{}/{}", v.name, v.version);
                e.with_change(Change::set("source", v.source.clone())).with_changes(v.run_id.clone().map(|run| Change::set("run_id", run)))
            }
            Err(_) => event,
        };
        let v = self.audited(event, res).await?;
        self.outbox
            .emit(Event::ModelVersionCreated {
                name: v.name.clone(),
                version: v.version,
                source: v.source.clone(),
                run_id: v.run_id.clone(),
                tags: v.tags.clone(),
                description: v.description.clone(),
            })
            .await;
        Ok(v)
    }

    async fn create_model_version_inner(&self, actor: &Actor, req: CreateVersion) -> Result<ModelVersion> {
        r::validate_model_name("name", &req.name)?;
        if req.source.is_empty() {
            return Err(InvalidParameter::missing("source").into());
        }
        check_length("source", r::MAX_SOURCE_LENGTH, &req.source)?;
        tags(&req.tags)?;
        let description = description(req.description)?;
        let mut run_id = req.run_id.filter(|it| !it.is_empty());
        let mut model_id = req.model_id.filter(|it| !it.is_empty());
        if let Some(id) = &run_id {
            RunId::parse(id)?;
        }
        let storage_location = match VersionSource::parse(&req.source)? {
            VersionSource::LoggedModel(id) => {
                if model_id.as_deref().is_some_and(|given| given != id.as_str()) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The model_id request parameter must match the logged model of the source.",
                        req.source
                    )));
                }
                let model = self.tracking.get_logged_model(&id, false).await?;
                let model_run = model.source_run_id.as_ref().map(|r| r.as_str().to_owned());
                if run_id.is_some() && model_run.is_some() && run_id != model_run {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run_id request parameter must be the logged model's source run.",
                        req.source
                    )));
                }
                run_id = run_id.or(model_run);
                model_id = Some(id.as_str().to_owned());
                model.artifact_location
            }
            VersionSource::ModelVersion { name, version } => {
                let from = self.store.get_model_version(&name, version).await?;
                if (run_id.is_some() && run_id != from.run_id) || (model_id.is_some() && model_id != from.model_id) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run_id and model_id request parameters must match the referenced model version.",
                        req.source
                    )));
                }
                run_id = from.run_id.clone();
                model_id = model_id.or(from.model_id.clone());
                from.storage_location
            }
            VersionSource::Run { run_id: rid, path } => {
                if run_id.as_deref().is_some_and(|given| given != rid.as_str()) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run ID in the source does not match the run_id request parameter.",
                        req.source
                    )));
                }
                run_id = Some(rid.as_str().to_owned());
                match self.tracking.get_run(&rid).await {
                    Ok(run) => {
                        let base = run.info.artifact_uri.trim_end_matches('/');
                        if path.is_empty() { base.to_owned() } else { format!("{base}/{path}") }
                    }
                    // A run this server does not have (a registry copied from another server, a run
                    // tracked elsewhere): stored as given, as MLflow does. Nothing links the version
                    // to a run here, so its gate conditions over run facts fail closed.
                    Err(plinth_store::Error::RunNotFound { .. }) => req.source.clone(),
                    Err(e) => return Err(e.into()),
                }
            }
            VersionSource::LocalPath { path: src_path } => {
                // A path on the server's file system: only inside the named run's own artifact directory.
                let allowed = match &run_id {
                    Some(rid) => {
                        let run = self.tracking.get_run(&RunId::parse(rid)?).await?;
                        let root = run.info.artifact_uri.trim_end_matches('/').to_owned();
                        let root_path = root.strip_prefix("file://").unwrap_or(&root).to_owned();
                        (root.starts_with('/') || root.starts_with("file:"))
                            && (src_path == root_path || src_path.starts_with(&format!("{root_path}/")))
                    }
                    None => false,
                };
                if !allowed {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. To use a local path as a model version source, the run_id request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the run_id.",
                        req.source
                    )));
                }
                req.source.clone()
            }
            VersionSource::Uri { .. } => req.source.clone(),
        };
        if model_id.is_some() && run_id.is_none() {
            let id = LoggedModelId::parse(model_id.as_deref().unwrap_or_default())?;
            run_id = self.tracking.get_logged_model(&id, false).await?.source_run_id.map(|r| r.as_str().to_owned());
        }
        let user_id = (actor.name != Actor::ANONYMOUS).then(|| actor.name.clone());
        let version = self
            .store
            .create_model_version(NewModelVersion {
                name: req.name.clone(),
                source: req.source,
                storage_location,
                run_id,
                run_link: req.run_link.filter(|it| !it.is_empty()),
                model_id: model_id.clone(),
                description,
                user_id,
                tags: req.tags,
                now: now_millis(),
            })
            .await?;
        if let Some(id) = &model_id {
            self.link_logged_model(id, &version).await;
        }
        Ok(version)
    }

    /// Appends `{"name", "version"}` to the logged model's `mlflow.modelVersions` tag, as MLflow's server does.
    async fn link_logged_model(&self, model_id: &str, version: &ModelVersion) {
        let Ok(id) = LoggedModelId::parse(model_id) else { return };
        let Ok(model) = self.tracking.get_logged_model(&id, false).await else { return };
        let mut list: Vec<serde_json::Value> = model
            .tags
            .iter()
            .find(|t| t.key == "mlflow.modelVersions")
            .and_then(|t| serde_json::from_str(&t.value).ok())
            .unwrap_or_default();
        let entry = serde_json::json!({"name": version.name, "version": version.version.to_string()});
        if list.contains(&entry) {
            return;
        }
        list.push(entry);
        let tag = KeyValue { key: "mlflow.modelVersions".into(), value: serde_json::Value::Array(list).to_string() };
        if let Err(e) = self.tracking.set_logged_model_tags(&id, &[tag], now_millis()).await {
            tracing::warn!(error = %e, model_id, "could not link the logged model to its registered version");
        }
    }

    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        r::validate_model_name("name", name)?;
        Ok(self.store.get_model_version(name, r::parse_version(version)?).await?)
    }

    pub async fn update_model_version(&self, actor: &Actor, name: &str, version: &str, desc: Option<String>) -> Result<ModelVersion> {
        let mut event = AuditEvent::new(actor, "model_version.update", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let desc = description(desc)?;
            let before = self.store.get_model_version(name, number).await?;
            event.changes.push(Change::new("description", before.description, desc.clone()));
            Ok(self.store.update_model_version(name, number, desc.as_deref(), now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_model_version(&self, actor: &Actor, name: &str, version: &str) -> Result<()> {
        let mut event = AuditEvent::new(actor, "model_version.delete", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let current = self.store.get_model_version(name, number).await?;
            for alias in &current.aliases {
                if self.store.get_gate(name, alias).await?.is_some() {
                    return Err(Error::GatedAliasRemoval {
                        model: name.to_owned(),
                        alias: alias.clone(),
                        what: format!("removed by deleting version {number}, which it points at"),
                    });
                }
            }
            let before = self.store.delete_model_version(name, number, now_millis()).await?;
            event.changes.push(Change::new("source", Some(before.source), None));
            for alias in before.aliases {
                event.changes.push(Change::new(format!("alias.{alias}"), Some(number.to_string()), None));
            }
            Ok(())
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn search_model_versions(&self, req: SearchRequest) -> Result<Page<ModelVersion>> {
        let page = page(req.max_results, r::DEFAULT_MODEL_VERSIONS_PAGE, r::MAX_MODEL_VERSIONS_PAGE, req.page_token.as_deref())?;
        let filter = parse_filter(Grammar::ModelVersions, req.filter.as_deref().unwrap_or(""))?;
        check_search(req.order_by.len(), filter.len())?;
        let order_by = req.order_by.iter().map(|it| parse_order_by(Grammar::ModelVersions, it)).collect::<Result<Vec<_>, _>>()?;
        let (filter, exclude_prompts) = prompt_scope(filter);
        let rows = self
            .store
            .search_model_versions(&ModelVersionQuery { restrict_to: req.restrict_to, filter, exclude_prompts, order_by, page })
            .await?;
        Ok(into_page(rows, page))
    }

    pub async fn set_model_version_tag(&self, actor: &Actor, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "model_version.tag.set", "model_version", format!("{name}/{version}"))
            .with_change(Change::set(format!("tags.{key}"), value));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            r::validate_registry_tag(key, value)?;
            let tag = KeyValue { key: key.to_owned(), value: value.to_owned() };
            self.store.set_model_version_tag(name, number, &tag, now_millis()).await?;
            Ok(number)
        }
        .await;
        let number = self.audited(event, res).await?;
        self.outbox
            .emit(Event::ModelVersionTagSet { name: name.to_owned(), version: number, key: key.to_owned(), value: value.to_owned() })
            .await;
        Ok(())
    }

    pub async fn delete_model_version_tag(&self, actor: &Actor, name: &str, version: &str, key: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "model_version.tag.delete", "model_version", format!("{name}/{version}"))
            .with_change(Change::new(format!("tags.{key}"), None, None));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            if key.is_empty() {
                return Err(InvalidParameter::missing("key").into());
            }
            self.store.delete_model_version_tag(name, number, key).await?;
            Ok(number)
        }
        .await;
        let number = self.audited(event, res).await?;
        self.outbox.emit(Event::ModelVersionTagDeleted { name: name.to_owned(), version: number, key: key.to_owned() }).await;
        Ok(())
    }

    pub async fn get_download_uri(&self, name: &str, version: &str) -> Result<String> {
        let v = self.get_model_version(name, version).await?;
        Ok(if v.storage_location.is_empty() { v.source } else { v.storage_location })
    }

    // Stages.

    pub async fn transition_stage(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
        viewer: &Viewer,
    ) -> Result<ModelVersion> {
        let mut event = AuditEvent::new(actor, "model_version.stage", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let target = Stage::parse(stage).ok_or_else(|| {
                Error::invalid(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."))
            })?;
            if archive_existing && !target.is_active() {
                return Err(Error::invalid(format!(
                    "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are ['Staging', 'Production']"
                )));
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let gate = self.store.get_gate(name, &target.gate_target()).await?;
                let gate_stamp = Some(gate.as_ref().map(|g| g.updated_at));
                let expect = match &gate {
                    None => Expect::Anything,
                    Some(gate) => {
                        if gate.spec.approvals_required > 0 {
                            return Err(Error::StageApprovalRequired {
                                model: name.to_owned(),
                                stage: target.as_str().to_owned(),
                                required: gate.spec.approvals_required,
                            });
                        }
                        let holder = self.store.stage_holder(name, target, number).await?;
                        let report = self.evaluate(gate, number, holder, &[], viewer, Judge::Registry).await?;
                        if !report.conditions_pass() {
                            return Err(Error::GateFailed {
                                model: name.to_owned(),
                                target: target.as_str().to_owned(),
                                version: number,
                                failures: report.failures(),
                            });
                        }
                        Expect::Holder(holder)
                    }
                };
                let change =
                    StageMove { name: name.to_owned(), version: number, stage: target, archive_existing, expect, gate_stamp, now: now_millis() };
                match self.store.transition_stage(&change).await {
                    Ok(moved) => {
                        event.changes.push(Change::new("stage", Some(moved.previous_stage.as_str().to_owned()), Some(target.as_str().to_owned())));
                        for v in &moved.archived {
                            event.changes.push(Change::new(format!("versions.{v}.stage"), Some(target.as_str().to_owned()), Some("Archived".into())));
                        }
                        return Ok(moved.version);
                    }
                    Err(plinth_store::Error::Conflict { .. }) if attempt < GATED_MOVE_ATTEMPTS => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        .await;
        self.audited(event, res).await
    }

    // Aliases.

    pub async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        r::validate_model_name("name", name)?;
        if alias.eq_ignore_ascii_case("latest") {
            let model = self.store.get_registered_model(name).await?;
            return model
                .latest_versions
                .into_iter()
                .max_by_key(|v| v.version)
                .ok_or_else(|| Error::NoLatestVersion { name: name.to_owned() });
        }
        match self.store.get_alias(name, alias).await? {
            Some(version) => Ok(self.store.get_model_version(name, version).await?),
            None => Err(Error::invalid(format!("Registered model alias {alias} not found."))),
        }
    }

    /// MLflow's alias endpoint: moves the alias, subject to its gate (last writer wins when there is none).
    pub async fn set_alias(&self, actor: &Actor, name: &str, alias: &str, version: &str, viewer: &Viewer) -> Result<()> {
        self.move_alias(actor, name, alias, version, None, viewer).await.map(|_| ())
    }

    /// Plinth's promote: like `set_alias`, and when `expected_current` is given the move only
    /// happens if the alias still points there (`Some(None)`: unset); otherwise `RESOURCE_CONFLICT`.
    pub async fn promote(
        &self,
        actor: &Actor,
        name: &str,
        alias: &str,
        version: &str,
        expected_current: Option<Option<i64>>,
        viewer: &Viewer,
    ) -> Result<GateReport> {
        self.move_alias(actor, name, alias, version, expected_current, viewer).await
    }

    async fn move_alias(
        &self,
        actor: &Actor,
        name: &str,
        alias: &str,
        version: &str,
        expected: Option<Option<i64>>,
        viewer: &Viewer,
    ) -> Result<GateReport> {
        let mut event = AuditEvent::new(actor, "alias.set", "alias", format!("{name}@{alias}"));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_alias(alias)?;
            let number = r::parse_version(version)?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let gate = self.store.get_gate(name, alias).await?;
                let holder = self.store.get_alias(name, alias).await?;
                if let Some(want) = expected
                    && want != holder
                {
                    return Err(alias_moved(name, alias, want, holder));
                }
                let mut report = GateReport {
                    target: alias.to_owned(),
                    version: number,
                    current: holder,
                    checks: vec![],
                    approvals_required: 0,
                    approvals: vec![],
                };
                if holder == Some(number) {
                    // Already there (a retried request): nothing to judge or move. The version must still be live.
                    self.store.get_model_version(name, number).await?;
                    event.changes.push(Change::new("version", Some(number.to_string()), Some(number.to_string())));
                    return Ok(report);
                }
                let expect = match &gate {
                    // No gate: MLflow's last-writer-wins, unless the caller pinned the holder.
                    None => expected.map_or(Expect::Anything, Expect::Holder),
                    Some(gate) => {
                        if gate.spec.approvals_required > 0 {
                            return Err(Error::ApprovalRequired {
                                model: name.to_owned(),
                                target: alias.to_owned(),
                                required: gate.spec.approvals_required,
                            });
                        }
                        report = self.evaluate(gate, number, holder, &[], viewer, Judge::Registry).await?;
                        if !report.conditions_pass() {
                            return Err(Error::GateFailed {
                                model: name.to_owned(),
                                target: alias.to_owned(),
                                version: number,
                                failures: report.failures(),
                            });
                        }
                        Expect::Holder(holder)
                    }
                };
                let change = AliasMove {
                    name: name.to_owned(),
                    alias: alias.to_owned(),
                    version: number,
                    expect,
                    gate_stamp: Some(gate.as_ref().map(|g| g.updated_at)),
                    promotion_id: None,
                    now: now_millis(),
                };
                match self.store.move_alias(&change).await {
                    Ok(previous) => {
                        event.changes.push(Change::new("version", previous.map(|v| v.to_string()), Some(number.to_string())));
                        return Ok(report);
                    }
                    // The holder or the gate changed between our read and our write: judge again against
                    // the new state, unless the caller pinned what it expected.
                    Err(plinth_store::Error::Conflict { message }) => {
                        if expected.is_some() || attempt >= GATED_MOVE_ATTEMPTS {
                            return Err(Error::Conflict { message });
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        .await;
        let report = self.audited(event, res).await?;
        self.outbox.emit(Event::AliasSet { name: name.to_owned(), alias: alias.to_owned(), version: report.version }).await;
        Ok(report)
    }

    pub async fn delete_alias(&self, actor: &Actor, name: &str, alias: &str) -> Result<()> {
        let mut event = AuditEvent::new(actor, "alias.delete", "alias", format!("{name}@{alias}"));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_alias(alias)?;
            if self.store.get_gate(name, alias).await?.is_some() {
                return Err(Error::GatedAliasRemoval { model: name.to_owned(), alias: alias.to_owned(), what: "deleted".into() });
            }
            let previous = self.store.delete_alias(name, alias, now_millis()).await?;
            event.changes.push(Change::new("version", previous.map(|v| v.to_string()), None));
            Ok(())
        }
        .await;
        self.audited(event, res).await?;
        self.outbox.emit(Event::AliasDeleted { name: name.to_owned(), alias: alias.to_owned() }).await;
        Ok(())
    }

    // Gates.

    pub async fn put_gate(&self, actor: &Actor, model: &str, spec: GateSpec) -> Result<Gate> {
        let mut event = AuditEvent::new(actor, "gate.put", "gate", format!("{model}@{}", spec.target));
        let res = async {
            r::validate_model_name("name", model)?;
            let spec = validate_gate(spec)?;
            let gate = Gate { model: model.to_owned(), spec, updated_by: actor.name.clone(), updated_at: now_millis() };
            let previous = self.store.put_gate(&gate).await?;
            event.changes.push(Change::new("gate", previous.as_ref().map(describe_gate), Some(describe_gate(&gate))));
            Ok(gate)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_gate(&self, model: &str, target: &str) -> Result<Gate> {
        r::validate_model_name("name", model)?;
        self.store.get_registered_model(model).await?;
        let target = gate_target(target)?;
        self.store.get_gate(model, &target).await?.ok_or_else(|| no_gate(model, &target))
    }

    pub async fn list_gates(&self, model: &str) -> Result<Vec<Gate>> {
        r::validate_model_name("name", model)?;
        self.store.get_registered_model(model).await?;
        Ok(self.store.list_gates(model).await?)
    }

    pub async fn delete_gate(&self, actor: &Actor, model: &str, target: &str) -> Result<()> {
        let mut event = AuditEvent::new(actor, "gate.delete", "gate", format!("{model}@{target}"));
        let res = async {
            r::validate_model_name("name", model)?;
            self.store.get_registered_model(model).await?;
            match self.store.delete_gate(model, &gate_target(target)?).await? {
                Some(previous) => {
                    event.changes.push(Change::new("gate", Some(describe_gate(&previous)), None));
                    Ok(())
                }
                None => Err(no_gate(model, target)),
            }
        }
        .await;
        self.audited(event, res).await
    }

    /// Evaluates `gate` for `version` against `holder`, counting `approvals`.
    async fn evaluate(
        &self,
        gate: &Gate,
        version: i64,
        holder: Option<i64>,
        approvals: &[String],
        viewer: &Viewer,
        judge: Judge,
    ) -> Result<GateReport> {
        let candidate = self.subject(&gate.model, version, viewer).await?;
        let current = match holder {
            Some(h) if h != version => Some(self.subject(&gate.model, h, viewer).await?),
            Some(_) => Some(candidate.clone()),
            None => None,
        };
        let mut checks = Vec::new();
        for tag in &gate.spec.required_tags {
            let present = candidate.version_tags.iter().any(|t| &t.key == tag && !t.value.trim().is_empty());
            checks.push(Check {
                condition: format!("required tag '{tag}'"),
                passed: present,
                detail: if present {
                    format!("version {version} carries it")
                } else {
                    format!("version {version} does not carry tag '{tag}'")
                },
            });
        }
        for text in &gate.spec.conditions {
            match gate::parse(text) {
                Ok(cond) => checks.push(gate::evaluate(&cond, &candidate, current.as_ref(), judge)),
                Err(e) => checks.push(Check { condition: text.clone(), passed: false, detail: format!("cannot be parsed: {e}") }),
            }
        }
        Ok(GateReport {
            target: gate.spec.target.clone(),
            version,
            current: holder,
            checks,
            approvals_required: gate.spec.approvals_required,
            approvals: approvals.to_vec(),
        })
    }

    /// The facts a gate reads about a version: its tags, and its source run's metrics, params and
    /// tags (marked hidden when `viewer` may not read the run).
    async fn subject(&self, model: &str, version: i64, viewer: &Viewer) -> Result<Subject> {
        let v = self.store.get_model_version(model, version).await?;
        let mut subject = Subject { version, version_tags: v.tags, ..Subject::default() };
        if let Some(rid) = v.run_id.as_deref().and_then(|it| RunId::parse(it).ok()) {
            match self.tracking.get_run(&rid).await {
                Ok(run) => {
                    // A run's facts count only when the version's artifacts provably came from it: they lie
                    // under the run's artifact root, or they are a logged model of that run. A run_id merely
                    // claimed next to an unrelated source must not lend the version the run's metrics.
                    let root = run.info.artifact_uri.trim_end_matches('/');
                    let location = v.storage_location.trim_end_matches('/');
                    let mut verified = location == root || location.starts_with(&format!("{root}/"));
                    if !verified && let Some(mid) = v.model_id.as_deref().and_then(|it| LoggedModelId::parse(it).ok()) {
                        match self.tracking.get_logged_model(&mid, true).await {
                            Ok(m) => {
                                verified = m.source_run_id.as_ref().is_some_and(|r| r.as_str() == rid.as_str())
                                    && m.artifact_location.trim_end_matches('/') == location;
                            }
                            Err(plinth_store::Error::LoggedModelNotFound { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    if verified {
                        subject.hidden = !viewer.may_read_experiment(run.info.experiment_id.as_str());
                        subject.run_id = Some(rid.as_str().to_owned());
                        subject.metrics = run.data.metrics;
                        subject.params = run.data.params;
                        subject.run_tags = run.data.tags;
                    } else {
                        subject.unverified_run = Some(rid.as_str().to_owned());
                    }
                }
                Err(plinth_store::Error::RunNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(subject)
    }

    /// What the gate of `target` would say about `version` now, for `viewer`, without moving
    /// anything: conditions over runs the viewer may not read fail closed.
    pub async fn check_gate(&self, model: &str, target: &str, version: &str, viewer: &Viewer) -> Result<GateReport> {
        r::validate_model_name("name", model)?;
        let number = r::parse_version(version)?;
        let target = gate_target(target)?;
        let gate = self.store.get_gate(model, &target).await?.ok_or_else(|| no_gate(model, &target))?;
        let holder = match Stage::from_gate_target(&target) {
            Some(stage) => self.store.stage_holder(model, stage, number).await?,
            None => self.store.get_alias(model, &target).await?,
        };
        self.evaluate(&gate, number, holder, &[], viewer, Judge::Caller).await
    }

    // Promotion requests.

    pub async fn request_promotion(&self, actor: &Actor, ask: PromotionAsk, viewer: &Viewer) -> Result<PromotionOutcome> {
        let PromotionAsk { model, version, target, reason, ttl_secs } = ask;
        let (model, version, target) = (model.as_str(), version.as_str(), target.as_str());
        let mut event = AuditEvent::new(actor, "promotion.request", "promotion", format!("{model}@{target}"));
        let res = async {
            r::validate_model_name("name", model)?;
            r::validate_alias(target)?;
            let number = r::parse_version(version)?;
            if let Some(reason) = &reason {
                check_length("reason", r::MAX_COMMENT_LENGTH, reason)?;
            }
            let ttl = ttl_secs.unwrap_or(self.config.promotion_ttl_secs);
            if ttl <= 0 || ttl > self.config.max_promotion_ttl_secs {
                return Err(Error::invalid(format!("ttl_secs must be between 1 and {} (got {ttl})", self.config.max_promotion_ttl_secs)));
            }
            let now = now_millis();
            let request = self
                .store
                .create_promotion(NewPromotion {
                    model: model.to_owned(),
                    version: number,
                    target: target.to_owned(),
                    requester: actor.name.clone(),
                    reason,
                    now,
                    expires_at: now.saturating_add(ttl.saturating_mul(1000)),
                })
                .await?;
            event.resource_id = format!("{}", request.id);
            event.changes.push(Change::set("request", format!("{model} version {number} -> {target}")));
            Ok(request)
        }
        .await;
        let request = self.audited(event, res).await?;
        self.outbox.emit(Event::promotion("created", &request, actor, None)).await;
        self.try_apply(actor, request, viewer).await
    }

    /// The request alone, as stored (what a permission check needs to find its model).
    pub async fn get_promotion_request(&self, id: i64) -> Result<PromotionRequest> {
        Ok(self.store.get_promotion(id).await?)
    }

    /// The request as it stands; the gate's report on it for `viewer`.
    pub async fn get_promotion(&self, id: i64, viewer: &Viewer) -> Result<PromotionOutcome> {
        let request = shown(self.store.get_promotion(id).await?);
        let report = self.report_for(&request, viewer).await?;
        Ok(PromotionOutcome { request, report })
    }

    pub async fn list_promotions(
        &self,
        model: Option<String>,
        status: Option<PromotionStatus>,
        max_results: Option<i64>,
        token: Option<&str>,
    ) -> Result<Page<PromotionRequest>> {
        let page = page(max_results, 100, 1000, token)?;
        let mut rows = self.store.list_promotions(&PromotionQuery { model, status, page }).await?;
        // Overdue requests read as EXPIRED before the expiry loop records it.
        rows.items = rows.items.into_iter().map(shown).filter(|r| status.is_none_or(|s| s == r.status)).collect();
        Ok(into_page(rows, page))
    }

    pub async fn review_promotion(
        &self,
        actor: &Actor,
        id: i64,
        decision: ReviewDecision,
        comment: Option<String>,
        viewer: &Viewer,
    ) -> Result<PromotionOutcome> {
        let verb = match decision {
            ReviewDecision::Approve => "promotion.approve",
            ReviewDecision::Reject => "promotion.reject",
        };
        let event = AuditEvent::new(actor, verb, "promotion", id.to_string());
        let res = async {
            self.expire().await?;
            if let Some(c) = &comment {
                check_length("comment", r::MAX_COMMENT_LENGTH, c)?;
            }
            let request = self.store.get_promotion(id).await?;
            if request.requester == actor.name {
                return Err(Error::Forbidden {
                    message: format!("{} requested promotion {id} and cannot review it; another person must", actor.name),
                });
            }
            if request.status != PromotionStatus::Pending {
                return Err(Error::Conflict { message: format!("Promotion request {id} is {}, not PENDING", request.status.as_str()) });
            }
            // A review stands as given: a second one by the same person would silently replace it.
            if let Some(earlier) = request.reviews.iter().find(|r| r.reviewer == actor.name) {
                return Err(Error::Conflict {
                    message: format!(
                        "{} already reviewed promotion {id} ({}); a review cannot be changed or repeated",
                        actor.name,
                        earlier.decision.as_str()
                    ),
                });
            }
            let review = Review { reviewer: actor.name.clone(), decision, comment: comment.clone(), created_at: now_millis() };
            // A rejection ends the request in the same transaction.
            Ok(self.store.add_review(id, &review).await?)
        }
        .await;
        let request = self.audited(event, res).await?;
        let action = match decision {
            ReviewDecision::Approve => "approved",
            ReviewDecision::Reject => "rejected",
        };
        self.outbox.emit(Event::promotion(action, &request, actor, comment.as_deref())).await;
        if decision == ReviewDecision::Reject {
            let report = self.report_for(&request, viewer).await?;
            return Ok(PromotionOutcome { request, report });
        }
        self.try_apply(actor, request, viewer).await
    }

    /// Re-checks a pending request and moves the alias if it passes now (a condition may have
    /// failed when the last approval came in).
    pub async fn apply_promotion(&self, actor: &Actor, id: i64, viewer: &Viewer) -> Result<PromotionOutcome> {
        self.expire().await?;
        let request = self.store.get_promotion(id).await?;
        if request.status != PromotionStatus::Pending {
            return Err(Error::Conflict { message: format!("Promotion request {id} is {}, not PENDING", request.status.as_str()) });
        }
        self.try_apply(actor, request, viewer).await
    }

    pub async fn cancel_promotion(&self, actor: &Actor, id: i64) -> Result<PromotionRequest> {
        let event = AuditEvent::new(actor, "promotion.cancel", "promotion", id.to_string());
        let res = async {
            let request = self.store.get_promotion(id).await?;
            if request.requester != actor.name {
                return Err(Error::Forbidden { message: format!("only the requester ({}) may cancel promotion {id}", request.requester) });
            }
            Ok(self.store.set_promotion_status(id, PromotionStatus::Pending, PromotionStatus::Cancelled, now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    async fn report_for(&self, request: &PromotionRequest, viewer: &Viewer) -> Result<GateReport> {
        Ok(self.judge(request, viewer).await?.0)
    }

    /// The gate's verdict on a request, and the gate's stamp (`updated_at`, `None` without a gate).
    /// The registry's judgement counts every fact; `viewer` only decides which values the report shows.
    async fn judge(&self, request: &PromotionRequest, viewer: &Viewer) -> Result<(GateReport, Option<i64>)> {
        let approvals: Vec<String> = request.approvers().into_iter().map(str::to_owned).collect();
        let gate = self.store.get_gate(&request.model, &request.target).await?;
        let holder = self.store.get_alias(&request.model, &request.target).await?;
        let stamp = gate.as_ref().map(|g| g.updated_at);
        let report = match gate {
            // The alias already points at the version: the conditions have nothing left to decide.
            Some(gate) if holder == Some(request.version) => GateReport {
                target: request.target.clone(),
                version: request.version,
                current: holder,
                checks: vec![],
                approvals_required: gate.spec.approvals_required,
                approvals,
            },
            Some(gate) => self.evaluate(&gate, request.version, holder, &approvals, viewer, Judge::Registry).await?,
            None => GateReport {
                target: request.target.clone(),
                version: request.version,
                current: holder,
                checks: vec![],
                approvals_required: 0,
                approvals,
            },
        };
        Ok((report, stamp))
    }

    /// Moves the alias if the request has its approvals and the conditions pass; otherwise leaves it pending.
    async fn try_apply(&self, actor: &Actor, request: PromotionRequest, viewer: &Viewer) -> Result<PromotionOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut report, stamp) = self.judge(&request, viewer).await?;
            if !report.approved() {
                return Ok(PromotionOutcome { request, report });
            }
            let mut event = AuditEvent::new(actor, "promotion.apply", "promotion", request.id.to_string());
            if !report.conditions_pass() {
                let refusal = Error::GateFailed {
                    model: request.model.clone(),
                    target: request.target.clone(),
                    version: request.version,
                    failures: report.failures(),
                };
                self.record(&event.with_outcome(Outcome::Refused, refusal.to_string())).await?;
                return Ok(PromotionOutcome { request, report });
            }
            let change = AliasMove {
                name: request.model.clone(),
                alias: request.target.clone(),
                version: request.version,
                expect: Expect::Holder(report.current),
                gate_stamp: Some(stamp),
                promotion_id: Some(request.id),
                now: now_millis(),
            };
            match self.store.move_alias(&change).await {
                Ok(previous) => {
                    event.changes.push(Change::new(
                        format!("alias.{}", request.target),
                        previous.map(|v| v.to_string()),
                        Some(request.version.to_string()),
                    ));
                    self.record(&event).await?;
                    // The alias's own history shows the move too.
                    let alias_event = AuditEvent::new(actor, "alias.set", "alias", format!("{}@{}", request.model, request.target))
                        .with_change(Change::new("version", previous.map(|v| v.to_string()), Some(request.version.to_string())))
                        .with_change(Change::set("promotion", request.id.to_string()));
                    self.record(&alias_event).await?;
                    let applied = self.store.get_promotion(request.id).await?;
                    self.outbox
                        .emit(Event::AliasSet { name: request.model.clone(), alias: request.target.clone(), version: request.version })
                        .await;
                    // The answer shows the alias as it now is.
                    report.current = Some(request.version);
                    return Ok(PromotionOutcome { request: applied, report });
                }
                Err(plinth_store::Error::Conflict { message }) => {
                    let fresh = self.store.get_promotion(request.id).await?;
                    if fresh.status == PromotionStatus::Applied {
                        // A concurrent approval applied it: this caller's approval is in, the outcome is the same.
                        let report = self.report_for(&fresh, viewer).await?;
                        return Ok(PromotionOutcome { request: fresh, report });
                    }
                    if fresh.status != PromotionStatus::Pending || attempt >= GATED_MOVE_ATTEMPTS {
                        self.record(&event.with_outcome(Outcome::Failed, message.clone())).await?;
                        return Err(Error::Conflict { message });
                    }
                }
                Err(e) => {
                    let e: Error = e.into();
                    self.record(&event.with_outcome(Outcome::Failed, e.to_string())).await?;
                    return Err(e);
                }
            }
        }
    }

    /// Expires overdue requests every `interval` until `shutdown`.
    pub async fn run_expiry(self: Arc<Self>, interval: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.expire().await {
                tracing::warn!(error = %e, "expiring promotion requests failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {},
            }
        }
    }

    /// Marks overdue requests expired (and records it).
    pub async fn expire(&self) -> Result<()> {
        let expired = self.store.expire_promotions(now_millis()).await?;
        for request in expired {
            let event = AuditEvent::new(&Actor::system(), "promotion.expire", "promotion", request.id.to_string())
                .with_change(Change::new("status", Some("PENDING".into()), Some("EXPIRED".into())));
            self.record(&event).await?;
            self.outbox.emit(Event::promotion("expired", &request, &Actor::system(), None)).await;
        }
        Ok(())
    }

    // Lineage.

    pub async fn lineage(&self, name: &str, version: &str) -> Result<Lineage> {
        let v = self.get_model_version(name, version).await?;
        let run = match v.run_id.as_deref().and_then(|it| RunId::parse(it).ok()) {
            Some(rid) => match self.tracking.get_run(&rid).await {
                Ok(run) => Some(run),
                Err(plinth_store::Error::RunNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let logged_model = match v.model_id.as_deref().and_then(|it| LoggedModelId::parse(it).ok()) {
            Some(id) => match self.tracking.get_logged_model(&id, true).await {
                Ok(m) => Some(m),
                Err(plinth_store::Error::LoggedModelNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let copied_from = match VersionSource::parse(&v.source) {
            Ok(VersionSource::ModelVersion { name, version }) => Some((name, version)),
            _ => None,
        };
        Ok(Lineage { version: v, run, logged_model, copied_from })
    }

    /// Versions registered from a run, newest first.
    pub async fn versions_from_run(&self, run_id: &str) -> Result<Vec<ModelVersion>> {
        let rid = RunId::parse(run_id)?;
        let filter = parse_filter(Grammar::ModelVersions, &format!("run_id = '{}'", rid.as_str()))?;
        let order_by = vec![parse_order_by(Grammar::ModelVersions, "creation_timestamp DESC")?];
        let rows = self
            .store
            .search_model_versions(&ModelVersionQuery {
                restrict_to: None,
                filter,
                exclude_prompts: false,
                order_by,
                page: PageRequest { offset: 0, limit: 10_000 },
            })
            .await?;
        Ok(rows.items)
    }

    // Audit.

    pub async fn audit_events(&self, mut query: AuditQuery) -> Result<Rows<plinth_core::audit::AuditEvent>> {
        if query.limit <= 0 {
            query.limit = 100;
        }
        validate_max_results(query.limit, 10_000)?;
        Ok(self.audit.query(&query).await?)
    }

    /// Records an event the caller produced elsewhere (the tracking service, a permission check).
    pub async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        self.record(event).await
    }
}

/// A request as readers see it: a pending one past its expiry reads as `EXPIRED` (the expiry loop records it).
fn shown(mut request: PromotionRequest) -> PromotionRequest {
    if request.status == PromotionStatus::Pending && request.expires_at < now_millis() {
        request.status = PromotionStatus::Expired;
    }
    request
}

fn alias_moved(name: &str, alias: &str, want: Option<i64>, have: Option<i64>) -> Error {
    let show = |v: Option<i64>| v.map_or("unset".to_owned(), |v| format!("version {v}"));
    Error::Conflict {
        message: format!(
            "Alias '{alias}' of registered model '{name}' is {} now, not {} as expected; re-read and retry",
            show(have),
            show(want)
        ),
    }
}

fn no_gate(model: &str, target: &str) -> Error {
    Error::GateNotFound { model: model.to_owned(), target: target.to_owned() }
}

fn describe_gate(gate: &Gate) -> String {
    format!(
        "conditions={:?} required_tags={:?} approvals_required={}",
        gate.spec.conditions, gate.spec.required_tags, gate.spec.approvals_required
    )
}

/// A gate target as stored: an alias as spelled (validated), or `stage:<stage>` in lowercase.
fn gate_target(raw: &str) -> Result<String> {
    if let Some(stage) = Stage::from_gate_target(raw) {
        return Ok(stage.gate_target());
    }
    if raw.len() >= r::STAGE_TARGET_PREFIX.len() && raw[..r::STAGE_TARGET_PREFIX.len()].eq_ignore_ascii_case(r::STAGE_TARGET_PREFIX) {
        return Err(Error::invalid(format!(
            "Invalid gate target '{raw}': use stage:staging, stage:production, stage:archived or stage:none"
        )));
    }
    r::validate_alias(raw)?;
    Ok(raw.to_owned())
}

fn validate_gate(mut spec: GateSpec) -> Result<GateSpec> {
    // A bare stage name would make an alias gate that looks like a stage gate and guards nothing
    // of the stage: refuse it, naming both spellings.
    if Stage::parse(&spec.target).is_some() {
        return Err(Error::invalid(format!(
            "Invalid gate target '{0}': '{0}' is a stage name. Use stage:{1} for the gate on the {1} stage (plinth models gate set NAME --stage {1}); an alias gate cannot be named after a stage",
            spec.target,
            spec.target.to_ascii_lowercase()
        )));
    }
    spec.target = gate_target(&spec.target)?;
    if spec.conditions.len() > r::MAX_GATE_CONDITIONS {
        return Err(Error::invalid(format!("A gate has at most {} conditions, got {}", r::MAX_GATE_CONDITIONS, spec.conditions.len())));
    }
    let mut problems = Vec::new();
    for c in &spec.conditions {
        check_length("condition", r::MAX_GATE_CONDITION_LENGTH, c)?;
        if let Err(e) = gate::parse(c) {
            problems.push(format!("'{c}': {e}"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(format!("Invalid gate condition(s): {}", problems.join("; "))));
    }
    if spec.required_tags.len() > r::MAX_GATE_REQUIRED_TAGS {
        return Err(Error::invalid(format!(
            "A gate requires at most {} tags, got {}",
            r::MAX_GATE_REQUIRED_TAGS,
            spec.required_tags.len()
        )));
    }
    for t in &spec.required_tags {
        r::validate_registry_tag(t, "")?;
    }
    if spec.approvals_required > r::MAX_GATE_APPROVALS {
        return Err(Error::invalid(format!("approvals_required is at most {}, got {}", r::MAX_GATE_APPROVALS, spec.approvals_required)));
    }
    spec.description = description(spec.description)?;
    Ok(spec)
}

/// A webhook to create.
pub struct NewWebhook {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub description: Option<String>,
    pub active: bool,
}

fn validate_events(events: &[String]) -> Result<()> {
    if events.is_empty() {
        return Err(Error::invalid("A webhook must subscribe to at least one event"));
    }
    for e in events {
        if !crate::webhooks::EVENTS.contains(&e.as_str()) {
            return Err(Error::invalid(format!("Unknown webhook event '{e}'. Known events: {}", crate::webhooks::EVENTS.join(", "))));
        }
    }
    Ok(())
}

fn validate_webhook_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(InvalidParameter::missing("name").into());
    }
    check_length("name", 256, name)?;
    Ok(())
}

impl RegistryService {
    pub async fn create_webhook(&self, actor: &Actor, new: NewWebhook) -> Result<plinth_store::webhooks::Webhook> {
        let mut event = AuditEvent::new(actor, "webhook.create", "webhook", "?");
        let res = async {
            validate_webhook_name(&new.name)?;
            crate::webhooks::validate_url(&new.url).map_err(Error::invalid)?;
            validate_events(&new.events)?;
            if let Some(d) = &new.description {
                check_length("description", 10_000, d)?;
            }
            let secret = new.secret.unwrap_or_default();
            check_length("secret", 1000, &secret)?;
            let now = now_millis();
            let hook = plinth_store::webhooks::Webhook {
                id: uuid::Uuid::new_v4().simple().to_string(),
                name: new.name,
                url: new.url,
                events: new.events,
                secret,
                status: if new.active {
                    plinth_store::webhooks::WebhookStatus::Active
                } else {
                    plinth_store::webhooks::WebhookStatus::Disabled
                },
                description: new.description,
                created_at: now,
                updated_at: now,
            };
            self.outbox.store().create_webhook(&hook).await?;
            // The URL may carry credentials: the trail keeps the host only.
            event.resource_id = hook.id.clone();
            event.changes.push(Change::set("url_host", reqwest_host(&hook.url)));
            event.changes.push(Change::set("events", hook.events.join(",")));
            Ok(hook)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<plinth_store::webhooks::Webhook> {
        Ok(self.outbox.store().get_webhook(id).await?)
    }

    pub async fn list_webhooks(&self, max_results: Option<i64>, token: Option<&str>) -> Result<Page<plinth_store::webhooks::Webhook>> {
        let page = page(max_results, 100, 1000, token)?;
        Ok(into_page(self.outbox.store().list_webhooks(page).await?, page))
    }

    pub async fn update_webhook(
        &self,
        actor: &Actor,
        id: &str,
        update: plinth_store::webhooks::WebhookUpdate,
    ) -> Result<plinth_store::webhooks::Webhook> {
        let mut event = AuditEvent::new(actor, "webhook.update", "webhook", id);
        let res = async {
            if let Some(n) = &update.name {
                validate_webhook_name(n)?;
            }
            if let Some(u) = &update.url {
                crate::webhooks::validate_url(u).map_err(Error::invalid)?;
                event.changes.push(Change::set("url_host", reqwest_host(u)));
            }
            if let Some(e) = &update.events {
                validate_events(e)?;
                event.changes.push(Change::set("events", e.join(",")));
            }
            if let Some(s) = &update.secret {
                check_length("secret", 1000, s)?;
                event.changes.push(Change::set("secret", "(changed)"));
            }
            if let Some(s) = update.status {
                event.changes.push(Change::set("status", s.as_str()));
            }
            Ok(self.outbox.store().update_webhook(id, &update, now_millis()).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_webhook(&self, actor: &Actor, id: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "webhook.delete", "webhook", id);
        let res = async { Ok(self.outbox.store().delete_webhook(id).await?) }.await;
        self.audited(event, res).await
    }

    /// Queues a test delivery to the webhook.
    pub async fn test_webhook(&self, id: &str) -> Result<()> {
        let hook = self.outbox.store().get_webhook(id).await?;
        Ok(self.outbox.ping(&hook).await?)
    }

    pub async fn list_deliveries(
        &self,
        id: &str,
        max_results: Option<i64>,
        token: Option<&str>,
    ) -> Result<Page<plinth_store::webhooks::Delivery>> {
        self.outbox.store().get_webhook(id).await?;
        let page = page(max_results, 100, 1000, token)?;
        Ok(into_page(self.outbox.store().list_deliveries(id, page).await?, page))
    }
}

/// The host of a URL, for the audit trail (never the userinfo, path or query).
fn reqwest_host(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_owned()
}
