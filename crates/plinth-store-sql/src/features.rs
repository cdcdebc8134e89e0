//! `FeatureRegistryStore` on SQL: versioned feature definitions and the applies that wrote them,
//! materialization state and runs, training datasets and their lineage (the definitions each read,
//! the runs each was logged to).
//!
//! Locking: an apply locks the head row of every object it changes, in (kind, name) order
//! (`FOR UPDATE` on PostgreSQL), and compares each head with the version the change was planned
//! against; on PostgreSQL applies also take one transaction-scoped advisory lock first, so they
//! commit one after the other and apply ids grow with commit order. On SQLite the single writer
//! connection serializes every write. "(kind, name) order" is `FeatureKind`'s order (entity,
//! source, feature view, feature service), then names bytewise: rows are sorted here, not by SQL.

use async_trait::async_trait;
use plinth_store::audit::Record;
use plinth_store::features::{
    DefinitionChange, FeatureApply, FeatureDefinition, FeatureKind, FeatureRegistryStore, MaterializationRun, TrainingDataset,
    TrainingDatasetRun, ViewState,
};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::rows::{corrupt, decode_page, flag, get_flag, get_i64, get_opt_i64, get_opt_str, get_str, json_strings, to_json_strings};
use crate::sql::{TxError, is_unique_violation, sql_error, write_tx};
use crate::{Dialect, SqlStore};

const DEFINITION_COLUMNS: &str = "kind, name, version, spec, digest, apply_id, created_at, created_by";
const RUN_COLUMNS: &str = "id, view, view_version, start_ns, end_ns, rows, newest_event_ns, started_at, finished_at, actor";
const DATASET_COLUMNS: &str = "id, name, features, feature_service, full_feature_names, definitions, entity_digest, entity_rows, \
     output_uri, created_at, created_by";
const DATASET_RUN_COLUMNS: &str = "dataset_id, run_id, context, logged_at, logged_by";

/// The key of the advisory lock every apply takes on PostgreSQL ("plinthfa").
const PG_APPLY_LOCK: i64 = 0x706c_696e_7468_6661;

fn definition_from_row(row: &AnyRow) -> Result<FeatureDefinition, sqlx::Error> {
    let kind = get_str(row, "kind")?;
    Ok(FeatureDefinition {
        kind: FeatureKind::parse(&kind).ok_or_else(|| corrupt("feature kind", &kind))?,
        name: get_str(row, "name")?,
        version: get_i64(row, "version")?,
        spec: get_opt_str(row, "spec")?,
        digest: get_opt_str(row, "digest")?,
        apply_id: get_i64(row, "apply_id")?,
        created_at: get_i64(row, "created_at")?,
        created_by: get_str(row, "created_by")?,
    })
}

fn view_state_from_row(row: &AnyRow) -> Result<ViewState, sqlx::Error> {
    Ok(ViewState {
        view: get_str(row, "view")?,
        watermark_ns: get_opt_i64(row, "watermark_ns")?,
        newest_event_ns: get_opt_i64(row, "newest_event_ns")?,
        last_run_at: get_opt_i64(row, "last_run_at")?,
        updated_at: get_i64(row, "updated_at")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<MaterializationRun, sqlx::Error> {
    Ok(MaterializationRun {
        id: get_i64(row, "id")?,
        view: get_str(row, "view")?,
        view_version: get_i64(row, "view_version")?,
        start_ns: get_opt_i64(row, "start_ns")?,
        end_ns: get_i64(row, "end_ns")?,
        rows: get_i64(row, "rows")?,
        newest_event_ns: get_opt_i64(row, "newest_event_ns")?,
        started_at: get_i64(row, "started_at")?,
        finished_at: get_i64(row, "finished_at")?,
        actor: get_str(row, "actor")?,
    })
}

fn dataset_from_row(row: &AnyRow) -> Result<TrainingDataset, sqlx::Error> {
    Ok(TrainingDataset {
        id: get_str(row, "id")?,
        name: get_opt_str(row, "name")?,
        features: json_strings(row, "features")?,
        feature_service: get_opt_str(row, "feature_service")?,
        full_feature_names: get_flag(row, "full_feature_names")?,
        definitions: get_str(row, "definitions")?,
        entity_digest: get_str(row, "entity_digest")?,
        entity_rows: get_i64(row, "entity_rows")?,
        output_uri: get_opt_str(row, "output_uri")?,
        created_at: get_i64(row, "created_at")?,
        created_by: get_str(row, "created_by")?,
    })
}

fn dataset_run_from_row(row: &AnyRow) -> Result<TrainingDatasetRun, sqlx::Error> {
    Ok(TrainingDatasetRun {
        dataset_id: get_str(row, "dataset_id")?,
        run_id: get_str(row, "run_id")?,
        context: get_str(row, "context")?,
        logged_at: get_i64(row, "logged_at")?,
        logged_by: get_str(row, "logged_by")?,
    })
}

/// One entry of a training dataset's `definitions`: a definition its retrieval read.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DefinitionRead {
    kind: FeatureKind,
    name: String,
    version: i64,
}

/// Parses a training dataset's `definitions`, a JSON array of `{"kind", "name", "version"}`
/// objects (no other keys), into its distinct entries in (kind, name, version) order.
fn definitions_read(definitions: &str) -> Result<Vec<DefinitionRead>> {
    let shape = || Error::invalid(r#"training dataset definitions must be a JSON array of {"kind", "name", "version"} objects"#);
    let value: serde_json::Value = serde_json::from_str(definitions).map_err(|_| shape())?;
    let entries = value.as_array().ok_or_else(shape)?;
    let mut reads = Vec::with_capacity(entries.len());
    for entry in entries {
        let fields = entry.as_object().filter(|it| it.len() == 3).ok_or_else(shape)?;
        let kind = fields.get("kind").and_then(|it| it.as_str()).ok_or_else(shape)?;
        let kind = FeatureKind::parse(kind)
            .ok_or_else(|| Error::invalid(format!("unknown feature kind '{kind}' in training dataset definitions")))?;
        let name = fields.get("name").and_then(|it| it.as_str()).ok_or_else(shape)?;
        let version = fields.get("version").and_then(|it| it.as_i64()).filter(|it| *it >= 1).ok_or_else(shape)?;
        reads.push(DefinitionRead { kind, name: name.to_owned(), version });
    }
    reads.sort();
    reads.dedup();
    Ok(reads)
}

/// One page of a list query whose last two parameters are its LIMIT and OFFSET: binds `limit + 1`
/// (to learn whether more rows follow) and the offset, and maps each row with `from_row`.
async fn fetch_page<'q, T>(
    conn: &mut sqlx::AnyConnection,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    page: &PageRequest,
    from_row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Rows<T>> {
    let rows = query.bind(page.limit.max(0).saturating_add(1)).bind(page.offset.max(0)).fetch_all(&mut *conn).await.map_err(sql_error)?;
    decode_page(&rows, page, from_row).map_err(sql_error)
}

fn stale(change: &DefinitionChange, current: i64) -> Error {
    Error::Conflict {
        message: format!(
            "{} '{}' is at version {current}, not at the expected version {}: it changed since it was read; re-read and apply again",
            change.kind.as_str(),
            change.name,
            change.expected_version
        ),
    }
}

/// (kind, name) order: the order of heads, of an apply's versions, and the lock order.
fn by_kind_and_name(a: &FeatureDefinition, b: &FeatureDefinition) -> std::cmp::Ordering {
    (a.kind, a.name.as_str()).cmp(&(b.kind, b.name.as_str()))
}

/// The changes in lock order, (kind, name); two changes of one object are refused.
fn lock_order(changes: &[DefinitionChange]) -> Result<Vec<&DefinitionChange>> {
    let mut sorted: Vec<&DefinitionChange> = changes.iter().collect();
    sorted.sort_by(|a, b| (a.kind, a.name.as_str()).cmp(&(b.kind, b.name.as_str())));
    if let Some(pair) = sorted.windows(2).find(|it| it[0].kind == it[1].kind && it[0].name == it[1].name) {
        return Err(Error::invalid(format!("{} '{}' is changed twice in one apply", pair[0].kind.as_str(), pair[0].name)));
    }
    Ok(sorted)
}

#[async_trait]
impl FeatureRegistryStore for SqlStore {
    async fn apply_feature_changes(
        &self,
        changes: &[DefinitionChange],
        actor: &str,
        now: i64,
        record: Record<'_, FeatureApply>,
    ) -> Result<FeatureApply> {
        if changes.is_empty() {
            return Ok(FeatureApply { id: 0, actor: actor.to_owned(), created_at: now, written: Vec::new() });
        }
        let sorted = lock_order(changes)?;
        write_tx!(self, &record, |tx| async {
            if self.dialect == Dialect::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_APPLY_LOCK).execute(&mut **tx).await?;
            }
            // Every head is checked before the first write.
            let head_sql = format!("SELECT version FROM feature_heads WHERE kind = $1 AND name = $2{}", self.for_update());
            for change in &sorted {
                let row = sqlx::query(AssertSqlSafe(head_sql.clone()))
                    .bind(change.kind.as_str())
                    .bind(change.name.clone())
                    .fetch_optional(&mut **tx)
                    .await?;
                let current = row.as_ref().map(|row| get_i64(row, "version")).transpose()?.unwrap_or(0);
                if current != change.expected_version {
                    return Err(stale(change, current).into());
                }
            }
            let row = sqlx::query("INSERT INTO feature_applies (actor, created_at) VALUES ($1, $2) RETURNING id")
                .bind(actor.to_owned())
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
            let apply_id = get_i64(&row, "id")?;
            let mut written = Vec::with_capacity(sorted.len());
            for change in &sorted {
                let definition = FeatureDefinition {
                    kind: change.kind,
                    name: change.name.clone(),
                    version: change.expected_version + 1,
                    spec: change.spec.clone(),
                    digest: change.digest.clone(),
                    apply_id,
                    created_at: now,
                    created_by: actor.to_owned(),
                };
                let res = async {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO feature_definitions ({DEFINITION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    )))
                    .bind(definition.kind.as_str())
                    .bind(definition.name.clone())
                    .bind(definition.version)
                    .bind(definition.spec.clone())
                    .bind(definition.digest.clone())
                    .bind(apply_id)
                    .bind(now)
                    .bind(actor.to_owned())
                    .execute(&mut **tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO feature_heads (kind, name, version) VALUES ($1, $2, $3) \
                         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version",
                    )
                    .bind(definition.kind.as_str())
                    .bind(definition.name.clone())
                    .bind(definition.version)
                    .execute(&mut **tx)
                    .await?;
                    Ok::<_, sqlx::Error>(())
                }
                .await;
                if let Err(e) = res {
                    // A version or head written by a concurrent apply since the check (a new object
                    // has no head row to lock): the same answer as a stale head.
                    let e = TxError::from(e);
                    if is_unique_violation(&e) {
                        return Err(Error::Conflict {
                            message: format!(
                                "{} '{}' changed concurrently (expected version {}); re-read and apply again",
                                change.kind.as_str(),
                                change.name,
                                change.expected_version
                            ),
                        }
                        .into());
                    }
                    return Err(e);
                }
                written.push(definition);
            }
            Ok::<_, TxError>(FeatureApply { id: apply_id, actor: actor.to_owned(), created_at: now, written })
        }
        .await)
    }

    async fn feature_heads(&self) -> Result<Vec<FeatureDefinition>> {
        let sql = "SELECT d.kind, d.name, d.version, d.spec, d.digest, d.apply_id, d.created_at, d.created_by \
                   FROM feature_heads h JOIN feature_definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version";
        let mut conn = self.read_conn().await?;
        let rows = sqlx::query(sql).fetch_all(&mut *conn).await.map_err(sql_error)?;
        let mut heads = rows.iter().map(definition_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
        heads.sort_by(by_kind_and_name);
        Ok(heads)
    }

    async fn feature_definition(&self, kind: FeatureKind, name: &str, version: Option<i64>) -> Result<FeatureDefinition> {
        let mut conn = self.read_conn().await?;
        let row = match version {
            Some(version) => {
                let sql = format!("SELECT {DEFINITION_COLUMNS} FROM feature_definitions WHERE kind = $1 AND name = $2 AND version = $3");
                sqlx::query(AssertSqlSafe(sql)).bind(kind.as_str()).bind(name.to_owned()).bind(version).fetch_optional(&mut *conn).await
            }
            None => {
                let sql = format!(
                    "SELECT {DEFINITION_COLUMNS} FROM feature_definitions WHERE kind = $1 AND name = $2 ORDER BY version DESC LIMIT 1"
                );
                sqlx::query(AssertSqlSafe(sql)).bind(kind.as_str()).bind(name.to_owned()).fetch_optional(&mut *conn).await
            }
        }
        .map_err(sql_error)?;
        match row {
            Some(row) => definition_from_row(&row).map_err(sql_error),
            None => Err(Error::Features(plinth_store::FeaturesError::FeatureDefinitionNotFound {
                kind: kind.as_str(),
                name: name.to_owned(),
                version,
            })),
        }
    }

    async fn feature_history(&self, kind: FeatureKind, name: &str) -> Result<Vec<FeatureDefinition>> {
        let sql = format!("SELECT {DEFINITION_COLUMNS} FROM feature_definitions WHERE kind = $1 AND name = $2 ORDER BY version");
        let mut conn = self.read_conn().await?;
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(kind.as_str()).bind(name.to_owned()).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(definition_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn feature_applies(&self, page: PageRequest) -> Result<Rows<FeatureApply>> {
        let mut conn = self.read_conn().await?;
        let query = sqlx::query("SELECT id, actor, created_at FROM feature_applies ORDER BY id DESC LIMIT $1 OFFSET $2");
        let mut res = fetch_page(&mut conn, query, &page, |row| {
            Ok(FeatureApply {
                id: get_i64(row, "id")?,
                actor: get_str(row, "actor")?,
                created_at: get_i64(row, "created_at")?,
                written: Vec::new(),
            })
        })
        .await?;
        // The page is a contiguous run of ids: every version written by an apply in the id range
        // belongs to an apply of the page (one query, walking the apply_id index).
        if let (Some(newest), Some(oldest)) = (res.items.first(), res.items.last()) {
            let sql = format!("SELECT {DEFINITION_COLUMNS} FROM feature_definitions WHERE apply_id >= $1 AND apply_id <= $2");
            let rows = sqlx::query(AssertSqlSafe(sql)).bind(oldest.id).bind(newest.id).fetch_all(&mut *conn).await.map_err(sql_error)?;
            let definitions = rows.iter().map(definition_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
            for definition in definitions {
                if let Some(apply) = res.items.iter_mut().find(|it| it.id == definition.apply_id) {
                    apply.written.push(definition);
                }
            }
            for apply in &mut res.items {
                apply.written.sort_by(by_kind_and_name);
            }
        }
        Ok(res)
    }

    async fn record_materialization(&self, run: &MaterializationRun, record: Record<'_, i64>) -> Result<i64> {
        write_tx!(self, &record, |tx| {
            async {
            let row = sqlx::query(
                "INSERT INTO feature_materializations (view, view_version, start_ns, end_ns, rows, newest_event_ns, started_at, \
                 finished_at, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(run.view.clone())
            .bind(run.view_version)
            .bind(run.start_ns)
            .bind(run.end_ns)
            .bind(run.rows)
            .bind(run.newest_event_ns)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(run.actor.clone())
            .fetch_one(&mut **tx)
            .await?;
            let id = get_i64(&row, "id")?;
            // Both times only grow; a run without a newest event time leaves it as it is.
            sqlx::query(
                "INSERT INTO feature_view_state (view, watermark_ns, newest_event_ns, last_run_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (view) DO UPDATE SET \
                 watermark_ns = CASE WHEN feature_view_state.watermark_ns IS NULL OR excluded.watermark_ns > feature_view_state.watermark_ns \
                 THEN COALESCE(excluded.watermark_ns, feature_view_state.watermark_ns) ELSE feature_view_state.watermark_ns END, \
                 newest_event_ns = CASE WHEN feature_view_state.newest_event_ns IS NULL \
                 OR excluded.newest_event_ns > feature_view_state.newest_event_ns \
                 THEN COALESCE(excluded.newest_event_ns, feature_view_state.newest_event_ns) ELSE feature_view_state.newest_event_ns END, \
                 last_run_at = excluded.last_run_at, updated_at = excluded.updated_at",
            )
            .bind(run.view.clone())
            .bind(run.end_ns)
            .bind(run.newest_event_ns)
            .bind(run.finished_at)
            .execute(&mut **tx)
            .await?;
            Ok::<_, TxError>(id)
        }
        .await
        })
    }

    async fn raise_newest_event(&self, view: &str, newest_event_ns: i64, now: i64, record: Record<'_, ()>) -> Result<()> {
        // Pushes arrive often and mostly carry no newer time than recorded: a reader answers those
        // without queueing for the writer (SQLite has one). The conditional upsert below stays the judge.
        {
            let mut conn = self.read_conn().await?;
            let row = sqlx::query("SELECT newest_event_ns FROM feature_view_state WHERE view = $1")
                .bind(view.to_owned())
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql_error)?;
            if let Some(row) = row
                && get_opt_i64(&row, "newest_event_ns").map_err(sql_error)?.is_some_and(|at| at >= newest_event_ns)
            {
                return Ok(());
            }
        }
        write_tx!(self, &record, |tx| async {
            // `updated_at` moves only when the time is raised.
            sqlx::query(
                "INSERT INTO feature_view_state (view, watermark_ns, newest_event_ns, last_run_at, updated_at) \
                 VALUES ($1, NULL, $2, NULL, $3) ON CONFLICT (view) DO UPDATE SET \
                 newest_event_ns = excluded.newest_event_ns, updated_at = excluded.updated_at \
                 WHERE feature_view_state.newest_event_ns IS NULL OR feature_view_state.newest_event_ns < excluded.newest_event_ns",
            )
            .bind(view.to_owned())
            .bind(newest_event_ns)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn view_states(&self) -> Result<Vec<ViewState>> {
        let mut conn = self.read_conn().await?;
        let rows = sqlx::query("SELECT view, watermark_ns, newest_event_ns, last_run_at, updated_at FROM feature_view_state ORDER BY view")
            .fetch_all(&mut *conn)
            .await
            .map_err(sql_error)?;
        rows.iter().map(view_state_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn materialization_runs(&self, view: &str, page: PageRequest) -> Result<Rows<MaterializationRun>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM feature_materializations WHERE view = $1 ORDER BY id DESC LIMIT $2 OFFSET $3");
        let mut conn = self.read_conn().await?;
        fetch_page(&mut conn, sqlx::query(AssertSqlSafe(sql)).bind(view.to_owned()), &page, run_from_row).await
    }

    async fn create_training_dataset(&self, dataset: &TrainingDataset, record: Record<'_, ()>) -> Result<()> {
        let reads = definitions_read(&dataset.definitions)?;
        write_tx!(self, &record, |tx| async {
            // The id is checked first, so a unique violation below is the name.
            let taken =
                sqlx::query("SELECT id FROM training_datasets WHERE id = $1").bind(dataset.id.clone()).fetch_optional(&mut **tx).await?;
            if taken.is_some() {
                return Err(Error::Conflict { message: format!("Training dataset {} already exists", dataset.id) }.into());
            }
            let res = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO training_datasets ({DATASET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )))
            .bind(dataset.id.clone())
            .bind(dataset.name.clone())
            .bind(to_json_strings(&dataset.features))
            .bind(dataset.feature_service.clone())
            .bind(flag(dataset.full_feature_names))
            .bind(dataset.definitions.clone())
            .bind(dataset.entity_digest.clone())
            .bind(dataset.entity_rows)
            .bind(dataset.output_uri.clone())
            .bind(dataset.created_at)
            .bind(dataset.created_by.clone())
            .execute(&mut **tx)
            .await;
            if let Err(e) = res {
                let e = TxError::from(e);
                if is_unique_violation(&e) {
                    return Err(match &dataset.name {
                        Some(name) => Error::Features(plinth_store::FeaturesError::TrainingDatasetExists { name: name.clone() }),
                        None => Error::Conflict { message: format!("Training dataset {} already exists", dataset.id) },
                    }
                    .into());
                }
                return Err(e);
            }
            for read in &reads {
                sqlx::query("INSERT INTO training_dataset_reads (dataset_id, kind, name, version) VALUES ($1, $2, $3, $4)")
                    .bind(dataset.id.clone())
                    .bind(read.kind.as_str())
                    .bind(read.name.clone())
                    .bind(read.version)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn training_dataset(&self, id_or_name: &str) -> Result<TrainingDataset> {
        // An id match wins over a name match (a name may look like another dataset's id).
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM training_datasets WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        );
        let mut conn = self.read_conn().await?;
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id_or_name.to_owned()).fetch_optional(&mut *conn).await.map_err(sql_error)?;
        match row {
            Some(row) => dataset_from_row(&row).map_err(sql_error),
            None => Err(Error::Features(plinth_store::FeaturesError::TrainingDatasetNotFound { id: id_or_name.to_owned() })),
        }
    }

    async fn training_datasets(&self, page: PageRequest) -> Result<Rows<TrainingDataset>> {
        let sql = format!("SELECT {DATASET_COLUMNS} FROM training_datasets ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2");
        let mut conn = self.read_conn().await?;
        fetch_page(&mut conn, sqlx::query(AssertSqlSafe(sql)), &page, dataset_from_row).await
    }

    async fn link_training_dataset_run(&self, link: &TrainingDatasetRun, record: Record<'_, ()>) -> Result<()> {
        write_tx!(self, &record, |tx| async {
            let sql = format!("SELECT id FROM training_datasets WHERE id = $1{}", self.for_share());
            let dataset = sqlx::query(AssertSqlSafe(sql)).bind(link.dataset_id.clone()).fetch_optional(&mut **tx).await?;
            if dataset.is_none() {
                return Err(Error::Features(plinth_store::FeaturesError::TrainingDatasetNotFound { id: link.dataset_id.clone() }).into());
            }
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO training_dataset_runs ({DATASET_RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (dataset_id, run_id) DO UPDATE SET \
                 context = excluded.context, logged_at = excluded.logged_at, logged_by = excluded.logged_by"
            )))
            .bind(link.dataset_id.clone())
            .bind(link.run_id.clone())
            .bind(link.context.clone())
            .bind(link.logged_at)
            .bind(link.logged_by.clone())
            .execute(&mut **tx)
            .await?;
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn training_dataset_runs(&self, id_or_name: &str) -> Result<Vec<TrainingDatasetRun>> {
        // The dataset as `training_dataset` finds it (an id match wins), then its runs; datasets are
        // never deleted, so the two reads agree.
        let mut conn = self.read_conn().await?;
        let row =
            sqlx::query("SELECT id FROM training_datasets WHERE id = $1 OR name = $1 ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1")
                .bind(id_or_name.to_owned())
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql_error)?;
        let Some(row) = row else {
            return Err(Error::Features(plinth_store::FeaturesError::TrainingDatasetNotFound { id: id_or_name.to_owned() }));
        };
        let id = get_str(&row, "id").map_err(sql_error)?;
        let sql = format!("SELECT {DATASET_RUN_COLUMNS} FROM training_dataset_runs WHERE dataset_id = $1 ORDER BY logged_at, run_id");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(dataset_run_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn training_datasets_reading(&self, kind: FeatureKind, name: &str, page: PageRequest) -> Result<Rows<TrainingDataset>> {
        // A dataset that read several versions of the definition is listed once.
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM training_datasets WHERE id IN \
             (SELECT dataset_id FROM training_dataset_reads WHERE kind = $1 AND name = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let mut conn = self.read_conn().await?;
        let query = sqlx::query(AssertSqlSafe(sql)).bind(kind.as_str()).bind(name.to_owned());
        fetch_page(&mut conn, query, &page, dataset_from_row).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: FeatureKind, name: &str) -> DefinitionChange {
        DefinitionChange { kind, name: name.to_owned(), expected_version: 0, spec: None, digest: None }
    }

    #[test]
    fn changes_lock_in_kind_then_name_order() {
        let changes = [
            change(FeatureKind::Source, "a"),
            change(FeatureKind::Entity, "z"),
            change(FeatureKind::FeatureView, "b"),
            change(FeatureKind::FeatureService, "b"),
            change(FeatureKind::Entity, "B"),
        ];
        let order: Vec<(&str, &str)> =
            lock_order(&changes).expect("no duplicates").iter().map(|it| (it.kind.as_str(), it.name.as_str())).collect();
        assert_eq!(order, [("entity", "B"), ("entity", "z"), ("source", "a"), ("feature_view", "b"), ("feature_service", "b")]);
    }

    #[test]
    fn definitions_read_are_parsed_sorted_and_distinct() {
        let reads = definitions_read(
            r#"[{"kind":"feature_view","name":"driver_hourly","version":3},{"kind":"entity","name":"driver","version":1},
                {"version":3,"name":"driver_hourly","kind":"feature_view"}]"#,
        )
        .expect("well formed");
        let reads: Vec<(FeatureKind, &str, i64)> = reads.iter().map(|it| (it.kind, it.name.as_str(), it.version)).collect();
        assert_eq!(reads, [(FeatureKind::Entity, "driver", 1), (FeatureKind::FeatureView, "driver_hourly", 3)]);
        assert!(definitions_read("[]").expect("empty").is_empty());
        for malformed in [
            "",
            "not json",
            "{}",
            "null",
            r#"[["feature_view","driver_hourly",3]]"#,
            r#"[{"kind":"view","name":"driver_hourly","version":3}]"#,
            r#"[{"kind":"feature_view","name":"driver_hourly"}]"#,
            r#"[{"kind":"feature_view","name":"driver_hourly","version":"3"}]"#,
            r#"[{"kind":"feature_view","name":"driver_hourly","version":0}]"#,
            r#"[{"kind":"feature_view","name":"driver_hourly","version":1.5}]"#,
            r#"[{"kind":"feature_view","name":7,"version":3}]"#,
            r#"[{"kind":"feature_view","name":"driver_hourly","version":3,"extra":1}]"#,
        ] {
            assert!(matches!(definitions_read(malformed), Err(Error::InvalidArgument { .. })), "{malformed}");
        }
    }

    #[test]
    fn one_object_changed_twice_is_refused() {
        let changes = [change(FeatureKind::Entity, "a"), change(FeatureKind::Source, "a"), change(FeatureKind::Entity, "a")];
        assert!(matches!(lock_order(&changes), Err(Error::InvalidArgument { .. })));
    }
}
