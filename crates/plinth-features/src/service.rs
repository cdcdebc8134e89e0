//! `FeatureService`: plans and applies repositories through the metadata store, serves the applied
//! definitions, and runs historical retrievals against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::tracking::{Dataset, DatasetInput, KeyValue};
use plinth_store::audit::append_detached;
use plinth_store::features::{
    DefinitionChange, FeatureApply, FeatureDefinition, FeatureKind, MaterializationRun, TrainingDataset, TrainingDatasetRun,
};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, FeatureRegistryStore};
use tokio::sync::RwLock;

use crate::engine::{Engine, HistoricalRequest};
use crate::error::{Error, Result};
use crate::metrics as m;
use datafusion::arrow::array::{Array, AsArray};

use crate::online::{FeatureValue, OnlineRecord, OnlineStore, array_of, entity_key, value_at};
use crate::repo::{EntitySpec, Repository, ServiceSpec, SourceInput, SourceSpec, ViewSpec};
use crate::types::ValueType;

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

/// Rows per online-store write (one transaction each).
const WRITE_BATCH: usize = 10_000;

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

    /// Writes the newest row per entity of each view (all online views when `views` is empty)
    /// with event times in `[start, end]` to the online store, then records the run and moves the
    /// view's watermark to `end`. `incremental` starts after the watermark (everything when there
    /// is none). The watermark moves only after the writes commit; a rerun rewrites the same rows.
    pub async fn materialize(&self, actor: &Actor, views: &[String], incremental: bool, end_ns: Option<i64>) -> Result<Vec<Materialized>> {
        self.materialize_range(actor, views, incremental, None, end_ns).await
    }

    /// `materialize` with an explicit start (Feast's `materialize(start, end)`): rows with event
    /// times in `[start, end]`; `start_ns` is ignored when `incremental`.
    pub async fn materialize_range(
        &self,
        actor: &Actor,
        views: &[String],
        incremental: bool,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
    ) -> Result<Vec<Materialized>> {
        let online = self.online_store()?.clone();
        let snap = self.refresh().await?;
        let end = end_ns.unwrap_or_else(|| plinth_core::time::now_millis().saturating_mul(1_000_000));
        let chosen: Vec<&ViewSpec> = if views.is_empty() {
            snap.repo.feature_views.iter().filter(|v| v.online).collect()
        } else {
            let mut out = Vec::new();
            for name in views {
                let view = snap.repo.view(name).ok_or_else(|| Error::not_found(format!("feature view '{name}' is not defined")))?;
                if !view.online {
                    return Err(Error::invalid(format!("feature view '{name}' is not online (online = false)")));
                }
                out.push(view);
            }
            out
        };
        let states = self.store.view_states().await?;
        let mut done = Vec::new();
        for view in chosen {
            let started_at = plinth_core::time::now_millis();
            let timer = std::time::Instant::now();
            let start = if incremental { states.iter().find(|s| s.view == view.name).and_then(|s| s.watermark_ns) } else { start_ns };
            let latest = self.engine.latest(&snap.repo, view, start, end).await?;
            let keys = snap.repo.join_keys(view);
            let mut outcome = crate::online::WriteOutcome::default();
            let rows = latest.rows.num_rows();
            let mut batch = Vec::with_capacity(WRITE_BATCH.min(rows));
            for row in 0..rows {
                let mut key = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    key.push(value_at(latest.rows.column(i).as_ref(), row, k.value_type)?);
                }
                let mut values = Vec::with_capacity(view.features.len());
                for (i, f) in view.features.iter().enumerate() {
                    values.push(value_at(latest.rows.column(latest.key_count + i).as_ref(), row, f.value_type)?);
                }
                batch.push((entity_key(&key), OnlineRecord::new(latest.event_ts[row], latest.created_ts[row], &values)));
                if batch.len() == WRITE_BATCH {
                    let w = online.write(&view.name, std::mem::take(&mut batch)).await?;
                    outcome.written += w.written;
                    outcome.skipped_older += w.skipped_older;
                }
            }
            if !batch.is_empty() {
                let w = online.write(&view.name, batch).await?;
                outcome.written += w.written;
                outcome.skipped_older += w.skipped_older;
            }
            let newest = latest.event_ts.iter().copied().max();
            let run = MaterializationRun {
                id: 0,
                view: view.name.clone(),
                view_version: snap.version(FeatureKind::FeatureView, &view.name).unwrap_or(0),
                start_ns: start,
                end_ns: end,
                rows: rows as i64,
                newest_event_ns: newest,
                started_at,
                finished_at: plinth_core::time::now_millis(),
                actor: actor.name.clone(),
            };
            self.store.record_materialization(&run).await?;
            metrics::counter!(m::MATERIALIZED_ROWS, "view" => view.name.clone()).increment(outcome.written as u64);
            metrics::histogram!(m::MATERIALIZE_SECONDS, "view" => view.name.clone()).record(timer.elapsed().as_secs_f64());
            done.push(Materialized {
                view: view.name.clone(),
                start_ns: start,
                end_ns: end,
                rows,
                skipped_older: outcome.skipped_older,
                newest_event_ns: newest,
            });
        }
        let event = AuditEvent::new(
            actor,
            "feature_view.materialize",
            "feature_view",
            done.iter().map(|d| d.view.as_str()).collect::<Vec<_>>().join(","),
        )
        .with_changes(done.iter().map(|d| Change::set(format!("{}.rows", d.view), d.rows.to_string())));
        append_detached(&self.audit, event).await?;
        Ok(done)
    }

    /// Runs the scheduled materializations: every `tick`, each online view with
    /// `materialize_every` whose last run is that old (or that never ran) is materialized
    /// incrementally. Failures are logged and retried at the next tick. Concurrent runs of one
    /// view (a manual one, another server) are safe: writes never replace newer events and the
    /// watermark never moves back.
    pub async fn run_schedule(self: Arc<Self>, tick: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Err(e) = self.flush_pushed().await {
                        tracing::warn!(error = %e, "cannot record the newest pushed event times at shutdown");
                    }
                    return;
                }
                () = tokio::time::sleep(tick) => {},
            }
            if let Err(e) = self.flush_pushed().await {
                tracing::warn!(error = %e, "cannot record the newest pushed event times; retrying at the next tick");
            }
            match self.due_views().await {
                Ok(due) if !due.is_empty() => {
                    if let Err(e) = self.materialize(&Actor::system(), &due, true, None).await {
                        tracing::warn!(error = %e, views = ?due, "scheduled materialization failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the materialization schedule"),
            }
        }
    }

    /// Online views whose scheduled materialization is due now.
    pub async fn due_views(&self) -> Result<Vec<String>> {
        let snap = self.snapshot().await?;
        if !snap.repo.feature_views.iter().any(|v| v.online && v.materialize_every_secs.is_some()) {
            return Ok(Vec::new());
        }
        let states = self.store.view_states().await?;
        let now = plinth_core::time::now_millis();
        Ok(snap
            .repo
            .feature_views
            .iter()
            .filter(|v| v.online)
            .filter_map(|v| {
                let every = v.materialize_every_secs? as i64 * 1000;
                let last = states.iter().find(|s| s.view == v.name).and_then(|s| s.last_run_at);
                last.is_none_or(|last| now - last >= every).then(|| v.name.clone())
            })
            .collect())
    }

    /// Per online view: the materialization watermark, the newest event time written online (by
    /// materialization or push) and its age now. Views never materialized nor pushed have none.
    pub async fn freshness(&self) -> Result<Vec<(String, Option<plinth_store::features::ViewState>)>> {
        let snap = self.snapshot().await?;
        let states = self.store.view_states().await?;
        let pending = self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Ok(snap
            .repo
            .feature_views
            .iter()
            .filter(|v| v.online)
            .map(|v| {
                let mut state = states.iter().find(|s| s.view == v.name).cloned();
                if let Some(&pushed) = pending.get(&v.name) {
                    let s = state.get_or_insert_with(|| plinth_store::features::ViewState {
                        view: v.name.clone(),
                        watermark_ns: None,
                        newest_event_ns: None,
                        last_run_at: None,
                        updated_at: 0,
                    });
                    s.newest_event_ns = Some(s.newest_event_ns.map_or(pushed, |n| n.max(pushed)));
                }
                (v.name.clone(), state)
            })
            .collect())
    }

    /// Records the newest pushed event times held in memory in the metadata store (raising, never
    /// lowering). What cannot be written stays pending for the next call.
    pub async fn flush_pushed(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let now = plinth_core::time::now_millis();
        let mut failed = None;
        for (view, newest) in &pending {
            if failed.is_some() {
                self.note_pushed(view, *newest);
                continue;
            }
            if let Err(e) = self.store.raise_newest_event(view, *newest, now).await {
                self.note_pushed(view, *newest);
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    fn note_pushed(&self, view: &str, newest: i64) {
        let mut pending = self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = pending.entry(view.to_owned()).or_insert(newest);
        *slot = (*slot).max(newest);
    }

    /// Sets the freshness gauges (newest event, its age now, watermark) of every online view, for
    /// a scrape of `/metrics`.
    pub async fn publish_metrics(&self) -> Result<()> {
        let now = plinth_core::time::now_millis().saturating_mul(1_000_000);
        for (view, state) in self.freshness().await? {
            let Some(state) = state else { continue };
            if let Some(newest) = state.newest_event_ns {
                metrics::gauge!(m::NEWEST_EVENT, "view" => view.clone()).set(m::ns_to_secs(newest));
                metrics::gauge!(m::FRESHNESS_AGE, "view" => view.clone()).set(m::ns_to_secs(now.saturating_sub(newest)));
            }
            if let Some(watermark) = state.watermark_ns {
                metrics::gauge!(m::WATERMARK, "view" => view).set(m::ns_to_secs(watermark));
            }
        }
        Ok(())
    }

    /// Feast's push: rows (columns by the names views see) to every view fed by `source`, to the
    /// online store (never replacing a newer event), to the offline data (one new Parquet file
    /// in the batch source's directory, written whole and then renamed into place), or both.
    pub async fn push(&self, source: &str, columns: &[(String, Vec<FeatureValue>)], to_online: bool, to_offline: bool) -> Result<Pushed> {
        let snap = self.snapshot().await?;
        let push = snap.repo.source(source).ok_or_else(|| Error::not_found(format!("push source '{source}' is not defined")))?;
        let SourceInput::Push { batch_source } = &push.input else {
            return Err(Error::invalid(format!("source '{source}' is not a push source")));
        };
        let batch =
            snap.repo.source(batch_source).ok_or_else(|| Error::not_found(format!("batch source '{batch_source}' is not defined")))?;
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        if rows > MAX_PUSH_ROWS {
            return Err(Error::invalid(format!("at most {MAX_PUSH_ROWS} rows per push; this one has {rows}")));
        }
        if let Some((name, col)) = columns.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let (event_ts, created_ts) =
            row_times(columns, rows, &batch.timestamp_field, batch.created_timestamp_column.as_deref(), batch_source)?;
        let views: Vec<&ViewSpec> = snap.repo.feature_views.iter().filter(|v| v.source == source).collect();
        // Every view's columns are checked before anything is written.
        let mut writes = Vec::new();
        for view in &views {
            writes.push((view.name.clone(), online_rows(&snap, view, columns, rows, &event_ts, &created_ts)?));
        }
        let mut out = Pushed { rows, ..Default::default() };
        if to_offline {
            out.offline_file = Some(self.append_offline(&snap, batch, &views, columns, rows).await?);
        }
        if to_offline {
            metrics::counter!(m::PUSHED_ROWS, "source" => source.to_owned(), "to" => "offline").increment(rows as u64);
        }
        if to_online {
            let online = self.online_store()?.clone();
            let newest = event_ts.iter().copied().max();
            for (view, batch_rows) in writes {
                let w = online.write(&view, batch_rows).await?;
                if let Some(newest) = newest {
                    self.note_pushed(&view, newest);
                }
                out.online.push((view, w.written, w.skipped_older));
            }
            metrics::counter!(m::PUSHED_ROWS, "source" => source.to_owned(), "to" => "online").increment(rows as u64);
        }
        Ok(out)
    }

    /// Feast's `write-to-online-store` (what Feast's SDK sends when its online store is a remote
    /// feature server): rows for one online view, written online only and never over a newer
    /// event. The event time is the source's `timestamp_field` column or else `event_timestamp`;
    /// the created time the source's `created_timestamp_column` or else `created` (optional).
    pub async fn write_online(&self, view_name: &str, columns: &[(String, Vec<FeatureValue>)]) -> Result<(usize, usize)> {
        let snap = self.snapshot().await?;
        let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
        if !view.online {
            return Err(Error::invalid(format!("feature view '{view_name}' is not online (online = false)")));
        }
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        if rows > MAX_PUSH_ROWS {
            return Err(Error::invalid(format!("at most {MAX_PUSH_ROWS} rows per write; this one has {rows}")));
        }
        if let Some((name, col)) = columns.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let source = snap.repo.source(&view.source);
        let (ts_field, created_field) = match source.map(|s| (&s.input, s)) {
            Some((SourceInput::Push { batch_source }, _)) => {
                let b = snap.repo.source(batch_source);
                (b.map(|b| b.timestamp_field.clone()), b.and_then(|b| b.created_timestamp_column.clone()))
            }
            Some((_, s)) => (Some(s.timestamp_field.clone()), s.created_timestamp_column.clone()),
            None => (None, None),
        };
        let has = |name: &str| columns.iter().any(|(n, _)| n == name);
        let ts_field = ts_field.filter(|f| has(f)).unwrap_or_else(|| "event_timestamp".to_owned());
        let created_field = created_field.filter(|f| has(f)).or_else(|| has("created").then(|| "created".to_owned()));
        let (event_ts, created_ts) = row_times(columns, rows, &ts_field, created_field.as_deref(), &view.source)?;
        let batch = online_rows(&snap, view, columns, rows, &event_ts, &created_ts)?;
        let w = self.online_store()?.write(&view.name, batch).await?;
        if let Some(newest) = event_ts.iter().copied().max() {
            self.note_pushed(&view.name, newest);
        }
        metrics::counter!(m::PUSHED_ROWS, "source" => view.source.clone(), "to" => "online").increment(rows as u64);
        Ok((w.written, w.skipped_older))
    }

    /// Appends pushed rows to the batch source's directory as one new Parquet file, in the
    /// stored schema of the files already there (names before the field mapping).
    async fn append_offline(
        &self,
        snap: &Snapshot,
        batch: &SourceSpec,
        views: &[&ViewSpec],
        columns: &[(String, Vec<FeatureValue>)],
        rows: usize,
    ) -> Result<String> {
        let SourceInput::Parquet { path } = &batch.input else {
            return Err(Error::invalid(format!("batch source '{}' is not a Parquet source", batch.name)));
        };
        let dir = std::path::Path::new(path);
        if !dir.is_dir() {
            return Err(Error::Conflict {
                message: format!("offline pushes append files, but source '{}' is one file ({path}), not a directory", batch.name),
            });
        }
        // The type of each view-facing column: join keys, features, the two times.
        let mut declared: BTreeMap<String, ValueType> = BTreeMap::new();
        for v in views {
            for k in snap.repo.join_keys(v) {
                declared.insert(k.name.clone(), k.value_type);
            }
            for f in &v.features {
                declared.insert(f.name.clone(), f.value_type);
            }
        }
        declared.insert(batch.timestamp_field.clone(), ValueType::Timestamp);
        if let Some(c) = &batch.created_timestamp_column {
            declared.insert(c.clone(), ValueType::Timestamp);
        }
        let unmapped = |view_name: &str| {
            batch.field_mapping.iter().find(|(_, to)| *to == view_name).map_or(view_name.to_owned(), |(from, _)| from.clone())
        };
        let stored = self.engine.parquet_schema(dir).await?;
        let schema = match stored {
            Some(s) => s,
            None => Arc::new(datafusion::arrow::datatypes::Schema::new(
                declared
                    .iter()
                    .map(|(name, t)| datafusion::arrow::datatypes::Field::new(unmapped(name), t.arrow(), true))
                    .collect::<Vec<_>>(),
            )),
        };
        let mut arrays = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let view_name = batch.field_mapping.get(field.name()).cloned().unwrap_or_else(|| field.name().clone());
            let values = columns.iter().find(|(n, _)| *n == view_name).map(|(_, v)| v.as_slice());
            let array = match (values, declared.get(&view_name)) {
                (Some(values), Some(t)) => array_of(values, *t, &view_name)?,
                (Some(values), None) => array_of(
                    values,
                    value_type_of(field.data_type()).ok_or_else(|| {
                        Error::invalid(format!(
                            "column '{view_name}' of source '{}' has type {}, which pushes cannot write",
                            batch.name,
                            field.data_type()
                        ))
                    })?,
                    &view_name,
                )?,
                (None, _) if field.is_nullable() => datafusion::arrow::array::new_null_array(field.data_type(), rows),
                (None, _) => {
                    return Err(Error::invalid(format!("the rows have no '{view_name}' column, which source '{}' requires", batch.name)));
                }
            };
            let strict = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
            arrays.push(
                datafusion::arrow::compute::cast_with_options(&array, field.data_type(), &strict)
                    .map_err(|e| Error::invalid(format!("column '{view_name}' cannot be stored as {}: {e}", field.data_type())))?,
            );
        }
        let record = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), arrays)?;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || write_parquet_atomically(&dir, &record))
            .await
            .map_err(|e| Error::invalid(format!("the offline write failed: {e}")))?
    }

    /// Online read: for each entity row (columns of join-key values, by name), the requested
    /// features from the online store, with Feast's statuses. A value older than its view's TTL
    /// is not served (`OUTSIDE_MAX_AGE`, null). Join-key columns come first, as given.
    pub async fn online_features(
        &self,
        features: &[String],
        service: Option<&str>,
        entities: &[(String, Vec<FeatureValue>)],
        full_feature_names: bool,
    ) -> Result<Vec<OnlineColumn>> {
        let timer = std::time::Instant::now();
        let online = self.online_store()?.clone();
        let snap = self.snapshot().await?;
        let pairs = self.resolve(&snap, features, service)?;
        let rows = entities.first().map_or(0, |(_, v)| v.len());
        if let Some((name, col)) = entities.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("entity column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let now = plinth_core::time::now_millis().saturating_mul(1_000_000);
        let mut out: Vec<OnlineColumn> = entities
            .iter()
            .map(|(name, values)| OnlineColumn {
                name: name.clone(),
                values: values.clone(),
                statuses: vec![FieldStatus::Present; rows],
                event_ts: vec![Some(0); rows],
            })
            .collect();
        let mut names: std::collections::BTreeSet<String> = entities.iter().map(|(n, _)| n.clone()).collect();
        // One read per view, in first-use order.
        let mut views: Vec<&str> = Vec::new();
        for (v, _) in &pairs {
            if !views.contains(&v.as_str()) {
                views.push(v);
            }
        }
        let mut by_view: BTreeMap<&str, ViewRead> = BTreeMap::new();
        for view_name in &views {
            let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let keys = snap.repo.join_keys(view);
            let mut key_columns = Vec::with_capacity(keys.len());
            for k in &keys {
                let (_, col) = entities
                    .iter()
                    .find(|(n, _)| *n == k.name)
                    .ok_or_else(|| Error::invalid(format!("feature view '{view_name}' needs join key '{}' in the entities", k.name)))?;
                key_columns.push(col.iter().map(|v| coerce(v, k.value_type, &k.name)).collect::<Result<Vec<_>>>()?);
            }
            let encoded: Vec<Vec<u8>> =
                (0..rows).map(|r| entity_key(&key_columns.iter().map(|c| c[r].clone()).collect::<Vec<_>>())).collect();
            let records = online.read(view_name, &encoded).await?;
            let decoded = records.iter().map(|r| r.as_ref().map(OnlineRecord::decode_values).transpose()).collect::<Result<Vec<_>>>()?;
            by_view.insert(view_name, (records, decoded));
        }
        for (view_name, feature) in &pairs {
            let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let idx = view
                .features
                .iter()
                .position(|f| &f.name == feature)
                .ok_or_else(|| Error::not_found(format!("feature view '{view_name}' has no feature '{feature}'")))?;
            let name = if full_feature_names { format!("{view_name}__{feature}") } else { feature.clone() };
            if !names.insert(name.clone()) {
                return Err(Error::invalid(format!(
                    "output column '{name}' appears twice; ask for full feature names (full_feature_names)"
                )));
            }
            let (records, decoded) = &by_view[view_name.as_str()];
            let ttl = view.ttl_secs.map(|s| (s as i64).saturating_mul(1_000_000_000));
            let mut column = OnlineColumn {
                name,
                values: Vec::with_capacity(rows),
                statuses: Vec::with_capacity(rows),
                event_ts: Vec::with_capacity(rows),
            };
            let mut counts = [0u64; 4];
            for r in 0..rows {
                let (value, status, ts) = match (&records[r], &decoded[r]) {
                    (Some(rec), Some(values)) => {
                        let value = values.get(idx).cloned().unwrap_or(FeatureValue::Null);
                        if ttl.is_some_and(|ttl| rec.event_ts < now.saturating_sub(ttl)) {
                            (FeatureValue::Null, FieldStatus::OutsideMaxAge, Some(rec.event_ts))
                        } else if value == FeatureValue::Null {
                            (value, FieldStatus::NullValue, Some(rec.event_ts))
                        } else {
                            (value, FieldStatus::Present, Some(rec.event_ts))
                        }
                    }
                    _ => (FeatureValue::Null, FieldStatus::NotFound, None),
                };
                counts[status as usize] += 1;
                column.values.push(value);
                column.statuses.push(status);
                column.event_ts.push(ts);
            }
            for status in [FieldStatus::Present, FieldStatus::NullValue, FieldStatus::NotFound, FieldStatus::OutsideMaxAge] {
                if counts[status as usize] > 0 {
                    metrics::counter!(m::ONLINE_VALUES, "view" => view_name.clone(), "status" => status.as_str())
                        .increment(counts[status as usize]);
                }
            }
            out.push(column);
        }
        metrics::histogram!(m::ONLINE_READ_SECONDS, "store" => online.name()).record(timer.elapsed().as_secs_f64());
        metrics::histogram!(m::ONLINE_READ_ENTITIES).record(rows as f64);
        Ok(out)
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
        let timer = std::time::Instant::now();
        let snap = self.refresh().await?;
        let pairs = self.resolve(&snap, features, service)?;
        let request = HistoricalRequest { features: pairs.clone(), full_feature_names, timestamp_column: timestamp_column.to_owned() };
        let (schema, batches) = self.engine.historical(&snap.repo, entities, schema, &request).await?;
        metrics::counter!(m::HISTORICAL_ROWS).increment(batches.iter().map(|b| b.num_rows() as u64).sum());
        metrics::histogram!(m::HISTORICAL_SECONDS).record(timer.elapsed().as_secs_f64());
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

    /// The MLflow dataset input that stands for a training dataset in a run: source type
    /// `plinth_feature_store`, a digest over what the retrieval read (entity rows, definitions'
    /// versions, features), the feature columns' schema in MLflow's column-spec form (typed from
    /// the view versions read), the row count, and the tags `mlflow.data.context` and
    /// `plinth.training_dataset_id`.
    pub async fn dataset_input(&self, id_or_name: &str, context: &str) -> Result<(TrainingDataset, DatasetInput)> {
        if context.is_empty() || context.len() > 500 {
            return Err(Error::invalid("the dataset context must be 1 to 500 characters (training, validation, …)"));
        }
        let ds = self.store.training_dataset(id_or_name).await?;
        let reads: Vec<ReadDefinition> = serde_json::from_str(&ds.definitions).map_err(|e| {
            Error::Store(plinth_store::Error::internal(format!("training dataset {} has unreadable definitions: {e}", ds.id)))
        })?;
        // Feature types from the view versions the retrieval read.
        let mut views: BTreeMap<String, ViewSpec> = BTreeMap::new();
        for r in reads.iter().filter(|r| r.kind == FeatureKind::FeatureView.as_str()) {
            let def = self.store.feature_definition(FeatureKind::FeatureView, &r.name, Some(r.version)).await?;
            if let Some(view) = parse_spec::<ViewSpec>(&def)? {
                views.insert(r.name.clone(), view);
            }
        }
        let mut colspec = Vec::new();
        for reference in &ds.features {
            let Some((view, feature)) = reference.split_once(':') else { continue };
            let Some(f) = views.get(view).and_then(|v| v.features.iter().find(|f| f.name == feature)) else { continue };
            let name = if ds.full_feature_names { format!("{view}__{feature}") } else { feature.to_owned() };
            colspec.push(serde_json::json!({"type": f.value_type.mlflow_type(), "name": name, "required": false}));
        }
        use sha2::Digest as _;
        let mut digest = sha2::Sha256::new();
        for part in [ds.entity_digest.as_str(), ds.definitions.as_str(), &ds.features.join(","), &ds.full_feature_names.to_string()] {
            digest.update(part.as_bytes());
            digest.update(b"\n");
        }
        let digest: String = digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let short = ds.id.get(..8).unwrap_or(&ds.id);
        let input = DatasetInput {
            tags: vec![
                KeyValue { key: "mlflow.data.context".into(), value: context.to_owned() },
                KeyValue { key: "plinth.training_dataset_id".into(), value: ds.id.clone() },
            ],
            dataset: Dataset {
                name: ds.name.clone().unwrap_or_else(|| format!("training-dataset-{short}")),
                digest,
                source_type: "plinth_feature_store".into(),
                source: serde_json::json!({"training_dataset_id": ds.id, "uri": ds.output_uri}).to_string(),
                schema: Some(serde_json::json!({"mlflow_colspec": colspec}).to_string()),
                profile: Some(serde_json::json!({"num_rows": ds.entity_rows}).to_string()),
            },
        };
        Ok((ds, input))
    }

    /// Records that `dataset` was logged to `run_id` (after the tracking side accepted the input),
    /// so lineage can go from feature views to runs.
    pub async fn link_run(&self, actor: &Actor, dataset: &TrainingDataset, run_id: &str, context: &str) -> Result<()> {
        let link = TrainingDatasetRun {
            dataset_id: dataset.id.clone(),
            run_id: run_id.to_owned(),
            context: context.to_owned(),
            logged_at: plinth_core::time::now_millis(),
            logged_by: actor.name.clone(),
        };
        let res = self.store.link_training_dataset_run(&link).await.map_err(Error::from);
        let event = AuditEvent::new(actor, "training_dataset.log_to_run", "training_dataset", dataset.id.clone())
            .with_change(Change::set("run_id", run_id.to_owned()))
            .concluded(&res);
        append_detached(&self.audit, event).await?;
        res
    }

    /// Runs a training dataset was logged to, oldest first.
    pub async fn dataset_runs(&self, id_or_name: &str) -> Result<Vec<TrainingDatasetRun>> {
        Ok(self.store.training_dataset_runs(id_or_name).await?)
    }

    /// Lineage downstream of one definition: the training datasets whose retrieval read it (any
    /// version), newest first, each with the runs it was logged to.
    pub async fn lineage(
        &self,
        kind: FeatureKind,
        name: &str,
        page: PageRequest,
    ) -> Result<Rows<(TrainingDataset, Vec<TrainingDatasetRun>)>> {
        let rows = self.store.training_datasets_reading(kind, name, page).await?;
        let mut items = Vec::with_capacity(rows.items.len());
        for ds in rows.items {
            let runs = self.store.training_dataset_runs(&ds.id).await?;
            items.push((ds, runs));
        }
        Ok(Rows { items, has_more: rows.has_more })
    }
}

/// One entry of a training dataset's `definitions`.
#[derive(serde::Deserialize)]
struct ReadDefinition {
    kind: String,
    name: String,
    version: i64,
}

/// Most rows in one push.
pub const MAX_PUSH_ROWS: usize = 10_000;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub rows: usize,
    /// Per view: (view, rows written online, rows skipped because the store held a newer event).
    pub online: Vec<(String, usize, usize)>,
    /// The Parquet file the rows were appended to, for an offline push.
    pub offline_file: Option<String>,
}

fn value_type_of(t: &datafusion::arrow::datatypes::DataType) -> Option<ValueType> {
    ValueType::ALL.into_iter().find(|v| v.accepts(t))
}

/// Writes `batch` as a new Parquet file in `dir`: to a hidden temporary name (never listed by
/// readers), fsynced, renamed into place, and the directory fsynced.
fn write_parquet_atomically(dir: &std::path::Path, batch: &datafusion::arrow::array::RecordBatch) -> Result<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = dir.join(format!(".push-{id}.parquet.tmp"));
    let name = format!("push-{}-{id}.parquet", plinth_core::time::now_millis());
    let path = dir.join(&name);
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", dir.display()), e);
    let file = std::fs::File::create(&tmp).map_err(|e| io("cannot write to", e))?;
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(file.try_clone().map_err(|e| io("cannot write to", e))?, batch.schema(), None)
            .map_err(|e| Error::invalid(format!("cannot encode the pushed rows: {e}")))?;
    let written = writer.write(batch).and_then(|()| writer.close().map(|_| ()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::invalid(format!("cannot encode the pushed rows: {e}")));
    }
    file.sync_all().map_err(|e| io("cannot sync a file in", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename into", e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", e))?;
    Ok(path.display().to_string())
}

/// One view's online records for the request's entity rows, and their decoded values.
type ViewRead = (Vec<Option<OnlineRecord>>, Vec<Option<Vec<FeatureValue>>>);

/// A join-key value as the request gave it, read as the key's declared type.
/// The event time (required on every row) and created time (optional) of pushed rows.
fn row_times(
    columns: &[(String, Vec<FeatureValue>)],
    rows: usize,
    ts_field: &str,
    created_field: Option<&str>,
    source: &str,
) -> Result<(Vec<i64>, Vec<Option<i64>>)> {
    let time_values = |name: &str| -> Result<Option<Vec<Option<i64>>>> {
        let Some((_, values)) = columns.iter().find(|(n, _)| n == name) else { return Ok(None) };
        let array = array_of(values, ValueType::Timestamp, name)?;
        let ts = array.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        Ok(Some((0..rows).map(|i| ts.is_valid(i).then(|| ts.value(i))).collect()))
    };
    let event_ts = time_values(ts_field)?
        .ok_or_else(|| Error::invalid(format!("the rows have no '{ts_field}' column (the event time of source '{source}')")))?;
    if let Some(row) = event_ts.iter().position(Option::is_none) {
        return Err(Error::invalid(format!("row {row} has no event time in '{ts_field}'")));
    }
    let created_ts = match created_field {
        Some(c) => time_values(c)?.unwrap_or_else(|| vec![None; rows]),
        None => vec![None; rows],
    };
    Ok((event_ts.into_iter().flatten().collect(), created_ts))
}

/// The online records of one view from pushed columns (join keys and features by the names the
/// view sees), every value checked against its declared type.
fn online_rows(
    snap: &Snapshot,
    view: &ViewSpec,
    columns: &[(String, Vec<FeatureValue>)],
    rows: usize,
    event_ts: &[i64],
    created_ts: &[Option<i64>],
) -> Result<Vec<(Vec<u8>, OnlineRecord)>> {
    let column = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let mut key_cols = Vec::new();
    for k in snap.repo.join_keys(view) {
        let values = column(&k.name)
            .ok_or_else(|| Error::invalid(format!("the rows have no join key column '{}' (feature view '{}')", k.name, view.name)))?;
        key_cols.push(values.iter().map(|v| coerce(v, k.value_type, &k.name)).collect::<Result<Vec<_>>>()?);
    }
    let mut value_cols = Vec::new();
    for f in &view.features {
        let values = column(&f.name)
            .ok_or_else(|| Error::invalid(format!("the rows have no column '{}' (feature view '{}')", f.name, view.name)))?;
        let array = array_of(values, f.value_type, &f.name)?;
        value_cols.push((0..rows).map(|r| value_at(array.as_ref(), r, f.value_type)).collect::<Result<Vec<_>>>()?);
    }
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let key: Vec<FeatureValue> = key_cols.iter().map(|c| c[r].clone()).collect();
        let values: Vec<FeatureValue> = value_cols.iter().map(|c| c[r].clone()).collect();
        out.push((entity_key(&key), OnlineRecord::new(event_ts[r], created_ts[r], &values)));
    }
    Ok(out)
}

fn coerce(value: &FeatureValue, to: ValueType, key: &str) -> Result<FeatureValue> {
    let bad = || Error::invalid(format!("join key '{key}' is {}, and {value:?} is not one", to.as_str()));
    Ok(match (value, to) {
        (FeatureValue::Null, _) => FeatureValue::Null,
        (v, t) if v.value_type() == Some(t) => v.clone(),
        (FeatureValue::Int64(i), ValueType::Int32) => FeatureValue::Int32(i32::try_from(*i).map_err(|_| bad())?),
        (FeatureValue::Int32(i), ValueType::Int64) => FeatureValue::Int64(i64::from(*i)),
        (FeatureValue::Int64(i), ValueType::Timestamp) => FeatureValue::Timestamp(*i),
        _ => return Err(bad()),
    })
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
