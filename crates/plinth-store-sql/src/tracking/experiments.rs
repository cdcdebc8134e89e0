//! Experiments: create (unique names, also among deleted ones), get, search, rename, lifecycle, tags.

use plinth_core::ids::ExperimentId;
use plinth_core::tracking::{Experiment, KeyValue, LifecycleStage};
use plinth_filter::{Attr, Key, OrderBy};
use plinth_store::tracking::{ArtifactLocation, ExperimentQuery, NewExperiment, Rows};
use plinth_store::{Error, Result};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::filter::{push_experiment_clause, push_lifecycle};
use crate::SqlStore;
use crate::rows::{get_i64, get_str, load_key_values};
use crate::sql::{Arg, Sql, TxError, is_unique_violation, sql_error, write_tx};
use plinth_store::audit::Record;

const COLUMNS: &str = "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

/// The integer key of an experiment id; ids that are not integers name no experiment.
pub(crate) fn numeric_id(id: &ExperimentId) -> Option<i64> {
    id.as_str().parse::<i64>().ok()
}

/// The integer key of an experiment id the caller addresses; a non-integer id is invalid (MLflow's SQL store).
pub(crate) fn key_of(id: &ExperimentId) -> Result<i64, Error> {
    numeric_id(id).ok_or_else(|| Error::invalid(format!("Invalid experiment ID: '{id}'")))
}

fn not_found(id: &ExperimentId) -> Error {
    Error::Tracking(plinth_store::TrackingError::ExperimentNotFound { experiment_id: id.to_string() })
}

fn from_row(row: &AnyRow) -> Result<Experiment, sqlx::Error> {
    let stage = get_str(row, "lifecycle_stage")?;
    Ok(Experiment {
        experiment_id: ExperimentId::from_trusted(get_i64(row, "experiment_id")?.to_string()),
        name: get_str(row, "name")?,
        artifact_location: get_str(row, "artifact_location")?,
        lifecycle_stage: LifecycleStage::parse(&stage).unwrap_or(LifecycleStage::Active),
        creation_time: get_i64(row, "creation_time")?,
        last_update_time: get_i64(row, "last_update_time")?,
        tags: Vec::new(),
    })
}

async fn with_tags(
    conn: &mut AnyConnection,
    dialect: crate::Dialect,
    mut experiments: Vec<Experiment>,
) -> Result<Vec<Experiment>, sqlx::Error> {
    let ids: Vec<Arg> = experiments.iter().filter_map(|it| numeric_id(&it.experiment_id)).map(Arg::I64).collect();
    let mut tags = load_key_values(conn, dialect, "experiment_tags", "experiment_id", &ids).await?;
    for it in &mut experiments {
        it.tags = tags.remove(it.experiment_id.as_str()).unwrap_or_default();
    }
    Ok(experiments)
}

async fn load_where(store: &SqlStore, sql: Sql) -> Result<Vec<Experiment>> {
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let experiments = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
    with_tags(&mut conn, store.dialect, experiments).await.map_err(sql_error)
}

pub(crate) async fn ensure_default(store: &SqlStore, artifact_location: &str, now: i64) -> Result<()> {
    write_tx!(store, |tx| async {
        sqlx::query(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (0, 'Default', $1, 'active', $2, $2) ON CONFLICT DO NOTHING",
        )
        .bind(artifact_location.to_owned())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn create(store: &SqlStore, new: NewExperiment, record: &Record<'_, ExperimentId>) -> Result<ExperimentId> {
    let res = write_tx!(store, record, |tx| async {
        let initial = match &new.artifact_location {
            ArtifactLocation::Given(uri) => uri.clone(),
            ArtifactLocation::UnderRoot(_) => String::new(),
        };
        let row = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, 'active', $3, $3) RETURNING experiment_id",
        )
        .bind(new.name.clone())
        .bind(initial)
        .bind(new.now)
        .fetch_one(&mut **tx)
        .await;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let e = TxError::from(e);
                if is_unique_violation(&e) {
                    return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNameExists { name: new.name.clone() }).into());
                }
                return Err(e);
            }
        };
        let id = get_i64(&row, "experiment_id")?;
        if let ArtifactLocation::UnderRoot(root) = &new.artifact_location {
            let location = format!("{}/{id}", root.trim_end_matches('/'));
            sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                .bind(location)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        upsert_tags(tx, store.dialect, id, &new.tags).await?;
        Ok::<_, TxError>(ExperimentId::from_trusted(id.to_string()))
    }
    .await)?;
    Ok(res)
}

async fn upsert_tags(tx: &mut crate::sql::Tx, dialect: crate::Dialect, id: i64, tags: &[KeyValue]) -> Result<(), sqlx::Error> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut deduped: Vec<&KeyValue> = Vec::new();
    for tag in tags {
        deduped.retain(|it| it.key != tag.key);
        deduped.push(tag);
    }
    let mut sql = Sql::new("INSERT INTO experiment_tags (experiment_id, key, value) VALUES ");
    for (idx, tag) in deduped.iter().enumerate() {
        if idx > 0 {
            sql.push(", ");
        }
        sql.push("(").bind(id).push(", ").bind(&tag.key).push(", ").bind(&tag.value).push(")");
    }
    sql.push(" ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value");
    sql.query(dialect).execute(&mut **tx).await?;
    Ok(())
}

pub(crate) async fn get(store: &SqlStore, id: &ExperimentId) -> Result<Experiment> {
    let key = key_of(id)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = "));
    sql.bind(key);
    load_where(store, sql).await?.pop().ok_or_else(|| not_found(id))
}

pub(crate) async fn find_by_name(store: &SqlStore, name: &str) -> Result<Option<Experiment>> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM experiments e WHERE e.name = "));
    sql.bind(name);
    Ok(load_where(store, sql).await?.pop())
}

fn order_column(order: &OrderBy) -> Option<&'static str> {
    match &order.key {
        Key::Attribute(Attr::Name) => Some("e.name"),
        Key::Attribute(Attr::ExperimentId) => Some("e.experiment_id"),
        Key::Attribute(Attr::CreationTime) => Some("e.creation_time"),
        Key::Attribute(Attr::LastUpdateTime) => Some("e.last_update_time"),
        _ => None,
    }
}

pub(crate) async fn search(store: &SqlStore, query: &ExperimentQuery) -> Result<Rows<Experiment>> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM experiments e WHERE "));
    push_lifecycle(&mut sql, "e.lifecycle_stage", query.view_type);
    if let Some(ids) = &query.restrict_to {
        let ids: Vec<i64> = ids.iter().filter_map(|id| id.parse::<i64>().ok()).collect();
        if ids.is_empty() {
            sql.push(" AND 1 = 0");
        } else {
            sql.push(" AND e.experiment_id IN ").bind_list(&ids);
        }
    }
    for clause in &query.filter {
        sql.push(" AND ");
        push_experiment_clause(&mut sql, clause)?;
    }
    sql.push(" ORDER BY ");
    let mut has_id = false;
    for order in &query.order_by {
        let column = order_column(order).ok_or_else(|| Error::invalid(format!("Invalid order_by clause '{order}'")))?;
        has_id |= column == "e.experiment_id";
        sql.push(column).push(if order.ascending { " ASC, " } else { " DESC, " });
    }
    if query.order_by.is_empty() {
        sql.push("e.creation_time DESC, ");
    }
    if has_id {
        sql.push("e.name ASC");
    } else {
        sql.push("e.experiment_id ASC");
    }
    sql.push(" LIMIT ").bind(query.page.limit + 1).push(" OFFSET ").bind(query.page.offset);
    let mut items = load_where(store, sql).await?;
    let has_more = items.len() as i64 > query.page.limit;
    items.truncate(query.page.limit as usize);
    Ok(Rows { items, has_more })
}

/// Locks the experiment row for the transaction and returns its key, stage and artifact location.
/// `exclusive` for changes to the experiment itself; a shared lock suffices to create things in it.
pub(crate) async fn lock_stage(
    store: &SqlStore,
    tx: &mut crate::sql::Tx,
    id: &ExperimentId,
    exclusive: bool,
) -> Result<(i64, LifecycleStage, String), TxError> {
    let key = key_of(id)?;
    let lock = if exclusive { store.for_update() } else { store.for_share() };
    let sql = format!("SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(&mut **tx).await?;
    let Some(row) = row else { return Err(not_found(id).into()) };
    let stage = LifecycleStage::parse(&get_str(&row, "lifecycle_stage")?).unwrap_or(LifecycleStage::Active);
    Ok((key, stage, get_str(&row, "artifact_location")?))
}

pub(crate) async fn rename(store: &SqlStore, id: &ExperimentId, new_name: &str, now: i64, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        let (key, stage, _) = lock_stage(store, tx, id, true).await?;
        if stage != LifecycleStage::Active {
            return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNotActiveForRename { experiment_id: id.to_string() }).into());
        }
        let res = sqlx::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(new_name.to_owned())
            .bind(now)
            .bind(key)
            .execute(&mut **tx)
            .await;
        if let Err(e) = res {
            let e = TxError::from(e);
            if is_unique_violation(&e) {
                return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNameExists { name: new_name.to_owned() }).into());
            }
            return Err(e);
        }
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn set_lifecycle(
    store: &SqlStore,
    id: &ExperimentId,
    stage: LifecycleStage,
    now: i64,
    record: &Record<'_, ()>,
) -> Result<()> {
    write_tx!(store, record, |tx| {
        async {
        let (key, current, _) = lock_stage(store, tx, id, true).await?;
        // Only an active experiment can be deleted and only a deleted one restored (MLflow looks it
        // up in that view and answers "does not exist" otherwise). A second delete would also move
        // the deletion time that restore uses to find the runs deleted with the experiment.
        if current == stage {
            return Err(not_found(id).into());
        }
        match stage {
            LifecycleStage::Deleted => {
                sqlx::query("UPDATE experiments SET lifecycle_stage = 'deleted', deleted_time = $1, last_update_time = $1 WHERE experiment_id = $2")
                    .bind(now)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $1 WHERE experiment_id = $2 AND lifecycle_stage = 'active'")
                    .bind(now)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
            }
            LifecycleStage::Active => {
                // Runs deleted together with the experiment carry its deletion time; they come back with it.
                sqlx::query(
                    "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE experiment_id = $1 AND lifecycle_stage = 'deleted' \
                     AND deleted_time = (SELECT deleted_time FROM experiments WHERE experiment_id = $1)",
                )
                .bind(key)
                .execute(&mut **tx)
                .await?;
                sqlx::query("UPDATE experiments SET lifecycle_stage = 'active', deleted_time = NULL, last_update_time = $1 WHERE experiment_id = $2")
                    .bind(now)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok::<_, TxError>(())
    }
    .await
    })
}

pub(crate) async fn set_tag(store: &SqlStore, id: &ExperimentId, tag: &KeyValue, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        let (key, stage, _) = lock_stage(store, tx, id, false).await?;
        if stage != LifecycleStage::Active {
            return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNotActive { experiment_id: id.to_string() }).into());
        }
        upsert_tags(tx, store.dialect, key, std::slice::from_ref(tag)).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn delete_tag(store: &SqlStore, id: &ExperimentId, tag_key: &str, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        let (key, stage, _) = lock_stage(store, tx, id, false).await?;
        if stage != LifecycleStage::Active {
            return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNotActive { experiment_id: id.to_string() }).into());
        }
        let res = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
            .bind(key)
            .bind(tag_key.to_owned())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(Error::Tracking(plinth_store::TrackingError::ExperimentTagNotFound {
                experiment_id: id.to_string(),
                key: tag_key.to_owned(),
            })
            .into());
        }
        Ok::<_, TxError>(())
    }
    .await)
}
