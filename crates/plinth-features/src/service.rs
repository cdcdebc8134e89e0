//! `FeatureService`: plans and applies repositories through the metadata store, serves the applied
//! definitions, and runs historical retrievals against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_store::audit::append_detached;
use plinth_store::features::{DefinitionChange, FeatureApply, FeatureDefinition, FeatureKind, TrainingDataset};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, FeatureRegistryStore};
use tokio::sync::RwLock;

use crate::engine::{Engine, HistoricalRequest};
use crate::error::{Error, Result};
use crate::repo::{EntitySpec, Repository, ServiceSpec, SourceSpec, ViewSpec};

/// How many times an apply re-plans after losing a race with another apply.
const APPLY_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
    Unchanged,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Unchanged => "unchanged",
        }
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub kind: FeatureKind,
    pub name: String,
    pub op: ChangeOp,
    /// The version now (0: none).
    pub from_version: i64,
    /// The version the apply writes (`None` when unchanged).
    pub to_version: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every object of the repository and every applied object it no longer has, in (kind, name) order.
    pub changes: Vec<PlannedChange>,
    /// Remarks that do not stop an apply (a source without data yet).
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.op == ChangeOp::Unchanged)
    }
}

/// The applied definitions at one moment, with the version of each.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub repo: Repository,
    pub versions: BTreeMap<(FeatureKind, String), i64>,
}

impl Snapshot {
    pub fn version(&self, kind: FeatureKind, name: &str) -> Option<i64> {
        self.versions.get(&(kind, name.to_owned())).copied()
    }
}

/// A historical retrieval's answer.
#[derive(Debug)]
pub struct Retrieval {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Every definition the retrieval read, with its version.
    pub definitions: Vec<(FeatureKind, String, i64)>,
    pub features: Vec<String>,
}

pub struct FeatureService {
    store: Arc<dyn FeatureRegistryStore>,
    audit: Arc<dyn AuditLog>,
    engine: Engine,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

impl std::fmt::Debug for FeatureService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureService").field("engine", &self.engine).finish_non_exhaustive()
    }
}

fn parse_spec<T: serde::de::DeserializeOwned>(def: &FeatureDefinition) -> Result<Option<T>> {
    match &def.spec {
        None => Ok(None),
        Some(spec) => serde_json::from_str(spec).map(Some).map_err(|e| {
            Error::Store(plinth_store::Error::internal(format!(
                "stored {} '{}' v{} is unreadable: {e}",
                def.kind.as_str(),
                def.name,
                def.version
            )))
        }),
    }
}

impl FeatureService {
    pub fn new(store: Arc<dyn FeatureRegistryStore>, audit: Arc<dyn AuditLog>, engine: Engine) -> FeatureService {
        FeatureService { store, audit, engine, snapshot: RwLock::new(None) }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The applied definitions, read afresh from the metadata store.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>> {
        let heads = self.store.feature_heads().await?;
        let mut snap = Snapshot::default();
        for def in &heads {
            if def.is_deleted() {
                continue;
            }
            snap.versions.insert((def.kind, def.name.clone()), def.version);
            match def.kind {
                FeatureKind::Entity => snap.repo.entities.extend(parse_spec::<EntitySpec>(def)?),
                FeatureKind::Source => snap.repo.sources.extend(parse_spec::<SourceSpec>(def)?),
                FeatureKind::FeatureView => snap.repo.feature_views.extend(parse_spec::<ViewSpec>(def)?),
                FeatureKind::FeatureService => snap.repo.feature_services.extend(parse_spec::<ServiceSpec>(def)?),
            }
        }
        let snap = Arc::new(snap);
        *self.snapshot.write().await = Some(snap.clone());
        Ok(snap)
    }

    /// The last snapshot this process read or wrote (read now if there is none).
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.snapshot.read().await.as_ref() {
            return Ok(s.clone());
        }
        self.refresh().await
    }

    /// Validates `desired` whole (structure, then every source against its data) and diffs it
    /// against the applied definitions. Changes nothing.
    pub async fn plan(&self, desired: &Repository) -> Result<Plan> {
        desired.validate()?;
        let notes = self.engine.check(desired).await?;
        let heads = self.store.feature_heads().await?;
        Ok(Plan { changes: diff(desired, &heads).0, notes })
    }

    /// Makes the applied definitions equal `desired`: a new version of every changed object, a
    /// deletion of every applied object it no longer has, all in one transaction. Re-plans and
    /// retries when another apply commits in between, so concurrent applies serialize.
    pub async fn apply(&self, actor: &Actor, desired: &Repository) -> Result<(Plan, FeatureApply)> {
        let res = self.apply_inner(actor, desired).await;
        let mut event = AuditEvent::new(actor, "feature_definitions.apply", "feature_repository", "default");
        if let Ok((plan, applied)) = &res {
            event = event.with_changes(plan.changes.iter().filter(|c| c.op != ChangeOp::Unchanged).map(|c| {
                Change::new(
                    format!("{}:{}", c.kind.as_str(), c.name),
                    Some(c.from_version.to_string()),
                    c.to_version.map(|v| v.to_string()),
                )
            }));
            if applied.id > 0 {
                event.message = Some(format!("apply {}", applied.id));
            }
        }
        let event = event.concluded(&res);
        append_detached(&self.audit, event).await?;
        res
    }

    async fn apply_inner(&self, actor: &Actor, desired: &Repository) -> Result<(Plan, FeatureApply)> {
        desired.validate()?;
        let notes = self.engine.check(desired).await?;
        let mut last_conflict = None;
        for _ in 0..APPLY_ATTEMPTS {
            let heads = self.store.feature_heads().await?;
            let (changes, writes) = diff(desired, &heads);
            match self.store.apply_feature_changes(&writes, &actor.name, plinth_core::time::now_millis()).await {
                Ok(applied) => {
                    self.refresh().await?;
                    return Ok((Plan { changes, notes }, applied));
                }
                Err(plinth_store::Error::Conflict { message }) => last_conflict = Some(message),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Store(plinth_store::Error::Conflict {
            message: format!("other applies kept changing the definitions; try again ({})", last_conflict.unwrap_or_default()),
        }))
    }

    pub async fn heads(&self) -> Result<Vec<FeatureDefinition>> {
        Ok(self.store.feature_heads().await?)
    }

    pub async fn definition(&self, kind: FeatureKind, name: &str, version: Option<i64>) -> Result<FeatureDefinition> {
        Ok(self.store.feature_definition(kind, name, version).await?)
    }

    pub async fn history(&self, kind: FeatureKind, name: &str) -> Result<Vec<FeatureDefinition>> {
        let history = self.store.feature_history(kind, name).await?;
        if history.is_empty() {
            return Err(plinth_store::Error::FeatureDefinitionNotFound { kind: kind.as_str(), name: name.to_owned(), version: None }.into());
        }
        Ok(history)
    }

    pub async fn applies(&self, page: PageRequest) -> Result<Rows<FeatureApply>> {
        Ok(self.store.feature_applies(page).await?)
    }

    /// Resolves `features` (references) or `service` into (view, feature) pairs, in order.
    pub fn resolve(&self, snap: &Snapshot, features: &[String], service: Option<&str>) -> Result<Vec<(String, String)>> {
        match (service, features.is_empty()) {
            (Some(name), true) => {
                let service =
                    snap.repo.service(name).ok_or_else(|| Error::not_found(format!("feature service '{name}' is not defined")))?;
                snap.repo.resolve_refs(&service.features)
            }
            (None, false) => snap.repo.resolve_refs(features).map_err(|e| match e {
                Error::Problems(p) if p.iter().all(|m| m.contains("is not defined") || m.contains("has no feature")) => {
                    Error::NotFound { message: p.join("; ") }
                }
                other => other,
            }),
            (Some(_), false) => Err(Error::invalid("give either features or a feature service, not both")),
            (None, true) => Err(Error::invalid("no features requested: give feature references (view:feature) or a feature service")),
        }
    }

    /// Historical retrieval against the applied definitions (read afresh).
    pub async fn historical(
        &self,
        entities: &[RecordBatch],
        schema: SchemaRef,
        features: &[String],
        service: Option<&str>,
        full_feature_names: bool,
        timestamp_column: &str,
    ) -> Result<Retrieval> {
        let snap = self.refresh().await?;
        let pairs = self.resolve(&snap, features, service)?;
        let request = HistoricalRequest { features: pairs.clone(), full_feature_names, timestamp_column: timestamp_column.to_owned() };
        let (schema, batches) = self.engine.historical(&snap.repo, entities, schema, &request).await?;
        Ok(Retrieval {
            schema,
            batches,
            definitions: read_set(&snap, &pairs, service),
            features: pairs.iter().map(|(v, f)| format!("{v}:{f}")).collect(),
        })
    }

    pub async fn save_training_dataset(&self, actor: &Actor, dataset: TrainingDataset) -> Result<TrainingDataset> {
        if let Some(name) = &dataset.name {
            crate::repo::check_name("training dataset", name).map_err(Error::invalid)?;
        }
        let res = self.store.create_training_dataset(&dataset).await.map_err(Error::from);
        let event = AuditEvent::new(actor, "training_dataset.create", "training_dataset", dataset.id.clone())
            .with_change(Change::set("entity_digest", dataset.entity_digest.clone()))
            .concluded(&res);
        append_detached(&self.audit, event).await?;
        res.map(|()| dataset)
    }

    pub async fn training_dataset(&self, id_or_name: &str) -> Result<TrainingDataset> {
        Ok(self.store.training_dataset(id_or_name).await?)
    }

    pub async fn training_datasets(&self, page: PageRequest) -> Result<Rows<TrainingDataset>> {
        Ok(self.store.training_datasets(page).await?)
    }
}

/// Every definition a retrieval of `pairs` reads: the views, their entities and sources (a push
/// source's batch source, a SQL source's inputs), and the service.
fn read_set(snap: &Snapshot, pairs: &[(String, String)], service: Option<&str>) -> Vec<(FeatureKind, String, i64)> {
    let mut set = std::collections::BTreeSet::new();
    let mut add = |kind: FeatureKind, name: &str| {
        if let Some(v) = snap.version(kind, name) {
            set.insert((kind, name.to_owned(), v));
        }
    };
    if let Some(s) = service {
        add(FeatureKind::FeatureService, s);
    }
    let mut sources: Vec<String> = Vec::new();
    for (view, _) in pairs {
        add(FeatureKind::FeatureView, view);
        if let Some(v) = snap.repo.view(view) {
            for e in &v.entities {
                add(FeatureKind::Entity, e);
            }
            sources.push(v.source.clone());
        }
    }
    while let Some(name) = sources.pop() {
        add(FeatureKind::Source, &name);
        if let Some(s) = snap.repo.source(&name) {
            match &s.input {
                crate::repo::SourceInput::Push { batch_source } => sources.push(batch_source.clone()),
                crate::repo::SourceInput::Sql { inputs, .. } => sources.extend(inputs.iter().cloned()),
                crate::repo::SourceInput::Parquet { .. } => {}
            }
        }
    }
    set.into_iter().collect()
}

/// The plan of `desired` against `heads`, and the changes to write.
fn diff(desired: &Repository, heads: &[FeatureDefinition]) -> (Vec<PlannedChange>, Vec<DefinitionChange>) {
    let current: BTreeMap<(FeatureKind, &str), &FeatureDefinition> = heads.iter().map(|h| ((h.kind, h.name.as_str()), h)).collect();
    let wanted = desired.canonical();
    let mut plan = Vec::new();
    let mut writes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &wanted {
        seen.insert((c.kind, c.name.as_str()));
        let head = current.get(&(c.kind, c.name.as_str()));
        let from = head.map_or(0, |h| h.version);
        let op = match head {
            None => ChangeOp::Create,
            Some(h) if h.is_deleted() => ChangeOp::Create,
            Some(h) if h.digest.as_deref() == Some(c.digest.as_str()) => ChangeOp::Unchanged,
            Some(_) => ChangeOp::Update,
        };
        let to = (op != ChangeOp::Unchanged).then_some(from + 1);
        if op != ChangeOp::Unchanged {
            writes.push(DefinitionChange {
                kind: c.kind,
                name: c.name.clone(),
                expected_version: from,
                spec: Some(c.spec.clone()),
                digest: Some(c.digest.clone()),
            });
        }
        plan.push(PlannedChange { kind: c.kind, name: c.name.clone(), op, from_version: from, to_version: to });
    }
    for h in heads {
        if h.is_deleted() || seen.contains(&(h.kind, h.name.as_str())) {
            continue;
        }
        writes.push(DefinitionChange { kind: h.kind, name: h.name.clone(), expected_version: h.version, spec: None, digest: None });
        plan.push(PlannedChange {
            kind: h.kind,
            name: h.name.clone(),
            op: ChangeOp::Delete,
            from_version: h.version,
            to_version: Some(h.version + 1),
        });
    }
    plan.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    writes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    (plan, writes)
}
