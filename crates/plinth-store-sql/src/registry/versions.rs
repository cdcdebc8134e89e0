//! Model versions: numbering from the model's counter, get, update, soft delete, search, tags and
//! stage transitions.

use plinth_core::registry::{ModelVersion, Stage};
use plinth_core::tracking::KeyValue;
use plinth_store::registry::{Expect, ModelVersionQuery, NewModelVersion, StageMove, StageMoved};
use plinth_store::tracking::Rows;
use plinth_store::{Error, Result};
use sqlx::AnyConnection;

use super::filter::{invalid_order, push_version_clause, version_order_column};
use super::models;
use super::rows::{DELETED_STAGE, LIVE, VERSION_COLUMNS, hydrate_versions, stage_from_str, version_from_row};
use crate::rows::{decode_page, get_i64, get_opt_i64, get_str};
use crate::sql::{Sql, Tx, TxError, sql_error, write_tx};
use crate::{Dialect, SqlStore};
use plinth_store::audit::Record;

pub(crate) fn not_found(name: &str, version: i64) -> Error {
    Error::Registry(plinth_store::RegistryError::ModelVersionNotFound { name: name.to_owned(), version })
}

/// A live version with its tags and aliases.
pub(crate) async fn load(
    conn: &mut AnyConnection,
    dialect: Dialect,
    name: &str,
    version: i64,
) -> Result<Option<ModelVersion>, sqlx::Error> {
    let mut sql = Sql::new(&format!("SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE mv.name = "));
    sql.bind(name).push(" AND mv.version = ").bind(version).push(" AND ").push(LIVE);
    let Some(row) = sql.query(dialect).fetch_optional(&mut *conn).await? else { return Ok(None) };
    let found = version_from_row(&row)?;
    Ok(hydrate_versions(conn, dialect, vec![found]).await?.pop())
}

async fn load_existing(conn: &mut AnyConnection, dialect: Dialect, name: &str, version: i64) -> Result<ModelVersion, TxError> {
    load(conn, dialect, name, version).await?.ok_or_else(|| not_found(name, version).into())
}

/// The stage of a live version, if there is one.
pub(crate) async fn live_stage(tx: &mut Tx, name: &str, version: i64) -> Result<Option<Stage>, TxError> {
    let row =
        sqlx::query("SELECT current_stage FROM model_versions WHERE name = $1 AND version = $2 AND current_stage <> 'Deleted_Internal'")
            .bind(name.to_owned())
            .bind(version)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match row {
        Some(row) => Some(stage_from_str(&get_str(&row, "current_stage")?)?),
        None => None,
    })
}

/// Locks the model (the per-model lock) and checks that the version is live; a missing model or
/// version is `ModelVersionNotFound`. Returns the version's stage.
pub(crate) async fn lock_live(store: &SqlStore, tx: &mut Tx, name: &str, version: i64) -> Result<Stage, TxError> {
    if !models::lock(store, tx, name).await? {
        return Err(not_found(name, version).into());
    }
    live_stage(tx, name, version).await?.ok_or_else(|| not_found(name, version).into())
}

/// Upserts tags of a version; the last of duplicate keys wins, keys are written in sorted order.
async fn upsert_tags(tx: &mut Tx, dialect: Dialect, name: &str, version: i64, tags: &[KeyValue]) -> Result<(), sqlx::Error> {
    let mut latest: Vec<&KeyValue> = Vec::new();
    for tag in tags {
        latest.retain(|it| it.key != tag.key);
        latest.push(tag);
    }
    latest.sort_by(|a, b| a.key.cmp(&b.key));
    for chunk in latest.chunks(500) {
        let mut sql = Sql::new("INSERT INTO model_version_tags (name, version, key, value) VALUES ");
        for (idx, tag) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(name).push(", ").bind(version).push(", ").bind(&tag.key).push(", ").bind(&tag.value).push(")");
        }
        sql.push(" ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value");
        sql.query(dialect).execute(&mut **tx).await?;
    }
    Ok(())
}

pub(crate) async fn create(store: &SqlStore, new: NewModelVersion, record: &Record<'_, ModelVersion>) -> Result<ModelVersion> {
    write_tx!(store, record, |tx| async {
        // Takes the next number and locks the model row in one statement: concurrent creators queue
        // on the row and each gets its own number; the counter only grows.
        let row = sqlx::query(
            "UPDATE registered_models SET next_version = next_version + 1, last_updated_time = $1 WHERE name = $2 \
             RETURNING next_version - 1 AS version",
        )
        .bind(new.now)
        .bind(new.name.clone())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Err(models::not_found(&new.name).into()) };
        let version = get_i64(&row, "version")?;
        sqlx::query(
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, current_stage, source, \
             storage_location, run_id, run_link, model_id, status, status_message) \
             VALUES ($1, $2, $3, $3, $4, $5, 'None', $6, $7, $8, $9, $10, 'READY', NULL)",
        )
        .bind(new.name.clone())
        .bind(version)
        .bind(new.now)
        .bind(new.description.clone())
        .bind(new.user_id.clone())
        .bind(new.source.clone())
        .bind(new.storage_location.clone())
        .bind(new.run_id.clone())
        .bind(new.run_link.clone())
        .bind(new.model_id.clone())
        .execute(&mut **tx)
        .await?;
        upsert_tags(tx, store.dialect, &new.name, version, &new.tags).await?;
        load_existing(tx, store.dialect, &new.name, version).await
    }
    .await)
}

pub(crate) async fn get(store: &SqlStore, name: &str, version: i64) -> Result<ModelVersion> {
    let mut conn = store.read_conn().await?;
    load(&mut conn, store.dialect, name, version).await.map_err(sql_error)?.ok_or_else(|| not_found(name, version))
}

pub(crate) async fn update(
    store: &SqlStore,
    name: &str,
    version: i64,
    description: Option<&str>,
    now: i64,
    record: &Record<'_, ModelVersion>,
) -> Result<ModelVersion> {
    write_tx!(store, record, |tx| async {
        lock_live(store, tx, name, version).await?;
        sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE name = $3 AND version = $4")
            .bind(description.map(str::to_owned))
            .bind(now)
            .bind(name.to_owned())
            .bind(version)
            .execute(&mut **tx)
            .await?;
        load_existing(tx, store.dialect, name, version).await
    }
    .await)
}

pub(crate) async fn delete(
    store: &SqlStore,
    name: &str,
    version: i64,
    now: i64,
    record: &Record<'_, ModelVersion>,
) -> Result<ModelVersion> {
    write_tx!(store, record, |tx| async {
        lock_live(store, tx, name, version).await?;
        let before = load_existing(tx, store.dialect, name, version).await?;
        // MLflow's soft delete: the number stays taken and the row is redacted.
        sqlx::query(
            "UPDATE model_versions SET current_stage = $1, last_updated_time = $2, description = NULL, user_id = NULL, \
             source = 'REDACTED-SOURCE-PATH', run_id = 'REDACTED-RUN-ID', run_link = 'REDACTED-RUN-LINK', status_message = NULL \
             WHERE name = $3 AND version = $4",
        )
        .bind(DELETED_STAGE)
        .bind(now)
        .bind(name.to_owned())
        .bind(version)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM registered_model_aliases WHERE name = $1 AND version = $2")
            .bind(name.to_owned())
            .bind(version)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
            .bind(now)
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await?;
        Ok::<_, TxError>(before)
    }
    .await)
}

pub(crate) async fn search(store: &SqlStore, query: &ModelVersionQuery) -> Result<Rows<ModelVersion>> {
    let mut sql = Sql::new(&format!("SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE {LIVE}"));
    super::filter::push_scope(&mut sql, "mv.name", "model_version_tags", query.restrict_to.as_deref(), query.exclude_prompts);
    for clause in &query.filter {
        sql.push(" AND ");
        push_version_clause(&mut sql, clause)?;
    }
    let mut order_by: Vec<String> = Vec::new();
    let (mut has_name, mut has_version) = (false, false);
    for order in &query.order_by {
        let column = version_order_column(order).ok_or_else(|| invalid_order(order))?;
        has_name |= column == "mv.name";
        has_version |= column == "mv.version";
        order_by.push(format!("{column} {}", if order.ascending { "ASC" } else { "DESC" }));
    }
    if query.order_by.is_empty() {
        order_by.push("mv.last_updated_time DESC".to_owned());
    }
    // The unique tiebreak: name ascending, then version descending.
    if !has_name {
        order_by.push("mv.name ASC".to_owned());
    }
    if !has_version {
        order_by.push("mv.version DESC".to_owned());
    }
    sql.push(" ORDER BY ").push(&order_by.join(", "));
    sql.push_page(&query.page);
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let page = decode_page(&rows, &query.page, version_from_row).map_err(sql_error)?;
    let items = hydrate_versions(&mut conn, store.dialect, page.items).await.map_err(sql_error)?;
    Ok(Rows { items, has_more: page.has_more })
}

pub(crate) async fn set_tag(store: &SqlStore, name: &str, version: i64, tag: &KeyValue, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_live(store, tx, name, version).await?;
        upsert_tags(tx, store.dialect, name, version, std::slice::from_ref(tag)).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn delete_tag(store: &SqlStore, name: &str, version: i64, key: &str, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_live(store, tx, name, version).await?;
        sqlx::query("DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3")
            .bind(name.to_owned())
            .bind(version)
            .bind(key.to_owned())
            .execute(&mut **tx)
            .await?;
        Ok::<_, TxError>(())
    }
    .await)
}

fn describe(version: Option<i64>) -> String {
    version.map_or_else(|| "no version".to_owned(), |v| format!("version {v}"))
}

pub(crate) async fn transition_stage(store: &SqlStore, change: &StageMove, record: &Record<'_, StageMoved>) -> Result<StageMoved> {
    if change.archive_existing && !change.stage.is_active() {
        return Err(Error::invalid(format!(
            "Model version transition cannot archive existing model versions because '{}' is not an Active stage. \
             Valid stages are {}, {}.",
            change.stage.as_str(),
            Stage::Staging.as_str(),
            Stage::Production.as_str()
        )));
    }
    let (name, version, stage) = (change.name.as_str(), change.version, change.stage.as_str());
    write_tx!(store, record, |tx| async {
        let previous_stage = lock_live(store, tx, name, version).await?;
        super::gates::check_stamp(tx, name, &change.stage.gate_target(), change.gate_stamp).await?;
        if let Expect::Holder(expected) = change.expect {
            let row = sqlx::query("SELECT MAX(version) AS v FROM model_versions WHERE name = $1 AND current_stage = $2 AND version <> $3")
                .bind(name.to_owned())
                .bind(stage)
                .bind(version)
                .fetch_one(&mut **tx)
                .await?;
            let holder = get_opt_i64(&row, "v")?;
            if holder != expected {
                return Err(Error::Conflict {
                    message: format!(
                        "Stage '{stage}' of registered model '{name}' holds {}, expected {}",
                        describe(holder),
                        describe(expected)
                    ),
                }
                .into());
            }
        }
        let mut archived = Vec::new();
        if change.archive_existing {
            let rows = sqlx::query(
                "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
                 WHERE name = $2 AND current_stage = $3 AND version <> $4 RETURNING version",
            )
            .bind(change.now)
            .bind(name.to_owned())
            .bind(stage)
            .bind(version)
            .fetch_all(&mut **tx)
            .await?;
            archived = rows.iter().map(|row| get_i64(row, "version")).collect::<Result<Vec<_>, _>>()?;
            archived.sort_unstable();
        }
        sqlx::query("UPDATE model_versions SET current_stage = $1, last_updated_time = $2 WHERE name = $3 AND version = $4")
            .bind(stage)
            .bind(change.now)
            .bind(name.to_owned())
            .bind(version)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
            .bind(change.now)
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await?;
        let version = load_existing(tx, store.dialect, name, version).await?;
        Ok::<_, TxError>(StageMoved { version, previous_stage, archived })
    }
    .await)
}

pub(crate) async fn stage_holder(store: &SqlStore, name: &str, stage: Stage, except: i64) -> Result<Option<i64>> {
    let mut conn = store.read_conn().await?;
    let row = sqlx::query("SELECT MAX(version) AS v FROM model_versions WHERE name = $1 AND current_stage = $2 AND version <> $3")
        .bind(name.to_owned())
        .bind(stage.as_str())
        .bind(except)
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_error)?;
    get_opt_i64(&row, "v").map_err(sql_error)
}
