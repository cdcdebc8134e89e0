//! `FeatureService`: plans and applies repositories through the metadata store, serves the applied
//! definitions, and runs historical retrievals against them. Its methods live by concern in
//! `definitions`, `retrieval` (with training datasets and lineage), `materialize` (with
//! freshness) and `online` (reads, pushes, writes).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use plinth_store::features::{FeatureDefinition, FeatureKind};
use plinth_store::{AuditLog, FeatureRegistryStore};
use tokio::sync::RwLock;

use crate::chunked::BatchStream;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::online::{FeatureValue, OnlineStore};
use crate::repo::{EntitySpec, Repository, ServiceSpec, SourceSpec, ViewSpec};

mod definitions;
mod materialize;
mod online;
mod retrieval;

pub use online::{MAX_PUSH_ROWS, Pushed};

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
pub struct Retrieval {
    pub schema: SchemaRef,
    /// The answer, in entity order; an error ends it (a read failure half-way).
    pub batches: BatchStream,
    /// Entity rows, hence answer rows.
    pub rows: u64,
    /// Every definition the retrieval read, with its version.
    pub definitions: Vec<(FeatureKind, String, i64)>,
    pub features: Vec<String>,
}

pub struct FeatureService {
    store: Arc<dyn FeatureRegistryStore>,
    audit: Arc<dyn AuditLog>,
    engine: Engine,
    online: Option<Arc<dyn OnlineStore>>,
    /// The applied definitions and when they were read.
    snapshot: RwLock<Option<(Arc<Snapshot>, std::time::Instant)>>,
    /// Newest pushed event time per view not yet recorded in the metadata store: pushes raise it
    /// in memory and `flush_pushed` writes it (every schedule tick and at shutdown), so a push
    /// costs no metadata write. A crash loses at most one tick of it: freshness then reads older
    /// than it is, never newer.
    pushed_newest: std::sync::Mutex<BTreeMap<String, i64>>,
}

/// How long online reads trust the cached definitions before reading them again (applies made
/// through this process refresh them at once).
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// One materialized view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    pub view: String,
    pub start_ns: Option<i64>,
    pub end_ns: i64,
    /// Entities written (their newest row in the interval).
    pub rows: usize,
    /// Of those, how many the online store already held at a newer event time.
    pub skipped_older: usize,
    pub newest_event_ns: Option<i64>,
}

/// The status of one online value, as Feast names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldStatus {
    Present = 0,
    NullValue = 1,
    NotFound = 2,
    OutsideMaxAge = 3,
}

impl FieldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldStatus::Present => "PRESENT",
            FieldStatus::NullValue => "NULL_VALUE",
            FieldStatus::NotFound => "NOT_FOUND",
            FieldStatus::OutsideMaxAge => "OUTSIDE_MAX_AGE",
        }
    }
}

/// One output column of an online read, one entry per entity row.
#[derive(Debug, Clone)]
pub struct OnlineColumn {
    pub name: String,
    pub values: Vec<FeatureValue>,
    pub statuses: Vec<FieldStatus>,
    /// Event times (ns); `None` when nothing was found.
    pub event_ts: Vec<Option<i64>>,
}

/// The page a list of the feature store asks for: 100 items by default, at most 1,000.
fn list_page(max_results: Option<i64>, page_token: Option<&str>) -> Result<plinth_store::tracking::PageRequest> {
    plinth_store::tracking::PageRequest::from_client(max_results, 100, 1000, page_token).map_err(|e| Error::invalid(e.to_string()))
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
        FeatureService {
            store,
            audit,
            engine,
            online: None,
            snapshot: RwLock::new(None),
            pushed_newest: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Serves and materializes into `online`.
    pub fn with_online_store(mut self, online: Arc<dyn OnlineStore>) -> FeatureService {
        self.online = Some(online);
        self
    }

    fn online_store(&self) -> Result<&Arc<dyn OnlineStore>> {
        self.online.as_ref().ok_or_else(|| Error::Conflict { message: "no online store is configured".into() })
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
        *self.snapshot.write().await = Some((snap.clone(), std::time::Instant::now()));
        Ok(snap)
    }

    /// The applied definitions as read at most `SNAPSHOT_TTL` ago.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some((s, at)) = self.snapshot.read().await.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Ok(s.clone());
        }
        self.refresh().await
    }
}
