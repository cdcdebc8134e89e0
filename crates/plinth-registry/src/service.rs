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
use plinth_store::audit::{AuditQuery, Record, append_detached, append_failure};
use plinth_store::registry::{
    AliasMove, Expect, ModelVersionQuery, NewModelVersion, NewPromotion, NewRegisteredModel, PromotionQuery, RegisteredModelQuery,
    StageMove, StageMoved,
};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, RegistryStore, TrackingStore};

use crate::gate::{self, Check, Judge, Subject, Viewer};
use crate::source::VersionSource;
use crate::webhooks::{Event, Outbox};
use crate::{Error, Result};

mod models;
mod moves;
mod promotions;
mod webhook_admin;

pub use webhook_admin::NewWebhook;

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

/// How one attempt of a gated move ended.
pub(super) enum Attempt<T> {
    Done(T),
    /// The target's holder or its gate changed between the judgement and the write (the store's
    /// compare-and-set refused it): judge again against the new state.
    Raced(String),
}

impl<T> Attempt<T> {
    /// A compare-and-set write's result: a refused precondition is a lost race.
    pub(super) fn of(res: plinth_store::Result<T>) -> Result<Attempt<T>> {
        match res {
            Ok(value) => Ok(Attempt::Done(value)),
            Err(plinth_store::Error::Conflict { message }) => Ok(Attempt::Raced(message)),
            Err(e) => Err(e.into()),
        }
    }
}

/// The one gated move that aliases, stages and promotions share: reads the target, judges the
/// move through its gate and writes it as a compare-and-set on what was judged (`attempt`), again
/// after every lost race, at most `GATED_MOVE_ATTEMPTS` times; the last race is a `Conflict`.
pub(super) async fn gated_move<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt<T>>>,
{
    let mut last = String::new();
    for _ in 0..GATED_MOVE_ATTEMPTS {
        match attempt().await? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Raced(message) => last = message,
        }
    }
    Err(Error::Conflict { message: last })
}
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

    /// Records a change that did not happen: appends `event` with `res`'s refusal or failure, then
    /// hands `res` back. A change that happened was recorded by the store, in its own transaction
    /// (each mutating port method takes its `Record`).
    async fn audited<T>(&self, event: AuditEvent, res: Result<T>) -> Result<T> {
        append_failure(&self.audit, event, res).await
    }

    /// Appends to the audit trail what no change's transaction records (a request that found
    /// nothing to change). An audit write that fails fails the request.
    async fn record(&self, event: &AuditEvent) -> Result<()> {
        append_detached(&self.audit, event.clone()).await?;
        Ok(())
    }

    // Lineage.

    pub async fn lineage(&self, name: &str, version: &str) -> Result<Lineage> {
        let v = self.get_model_version(name, version).await?;
        let run = match v.run_id.as_deref().and_then(|it| RunId::parse(it).ok()) {
            Some(rid) => match self.tracking.get_run(&rid).await {
                Ok(run) => Some(run),
                Err(plinth_store::Error::Tracking(plinth_store::TrackingError::RunNotFound { .. })) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let logged_model = match v.model_id.as_deref().and_then(|it| LoggedModelId::parse(it).ok()) {
            Some(id) => match self.tracking.get_logged_model(&id, true).await {
                Ok(m) => Some(m),
                Err(plinth_store::Error::Tracking(plinth_store::TrackingError::LoggedModelNotFound { .. })) => None,
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
