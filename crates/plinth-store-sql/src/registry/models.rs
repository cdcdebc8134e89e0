//! Registered models: create, get, rename (cascading), update, delete (cascading), search, tags.

use plinth_core::registry::RegisteredModel;
use plinth_core::tracking::KeyValue;
use plinth_store::registry::{NewRegisteredModel, RegisteredModelQuery};
use plinth_store::tracking::Rows;
use plinth_store::{Error, Result};
use sqlx::{AnyConnection, AssertSqlSafe};

use super::filter::{invalid_order, model_order_column, push_model_clause};
use super::rows::{MODEL_COLUMNS, hydrate_models, model_from_row};
use crate::rows::decode_page;
use crate::sql::{Sql, Tx, TxError, is_unique_violation, sql_error, write_tx};
use crate::{Dialect, SqlStore};
use plinth_store::audit::Record;

pub(crate) fn not_found(name: &str) -> Error {
    Error::Registry(plinth_store::RegistryError::RegisteredModelNotFound { name: name.to_owned() })
}

/// Locks the model row for the rest of the transaction: the per-model lock every write under a
/// model takes first (one lock order: model, then its rows). On SQLite the single writer already
/// serializes writes. Returns whether the model exists.
pub(crate) async fn lock(store: &SqlStore, tx: &mut Tx, name: &str) -> Result<bool, TxError> {
    let sql = format!("SELECT name FROM registered_models WHERE name = $1{}", store.for_update());
    Ok(sqlx::query(AssertSqlSafe(sql)).bind(name.to_owned()).fetch_optional(&mut **tx).await?.is_some())
}

/// `lock`, with a missing model as `RegisteredModelNotFound`.
pub(crate) async fn lock_existing(store: &SqlStore, tx: &mut Tx, name: &str) -> Result<(), TxError> {
    if lock(store, tx, name).await? { Ok(()) } else { Err(not_found(name).into()) }
}

/// The model with its tags, aliases and latest versions, if it exists.
pub(crate) async fn load(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<Option<RegisteredModel>, sqlx::Error> {
    let mut sql = Sql::new(&format!("SELECT {MODEL_COLUMNS} FROM registered_models rm WHERE rm.name = "));
    sql.bind(name);
    let Some(row) = sql.query(dialect).fetch_optional(&mut *conn).await? else { return Ok(None) };
    let model = model_from_row(&row)?;
    Ok(hydrate_models(conn, dialect, vec![model]).await?.pop())
}

async fn load_existing(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<RegisteredModel, TxError> {
    load(conn, dialect, name).await?.ok_or_else(|| not_found(name).into())
}

/// Upserts tags of a model; the last of duplicate keys wins, keys are written in sorted order.
async fn upsert_tags(tx: &mut Tx, dialect: Dialect, name: &str, tags: &[KeyValue]) -> Result<(), sqlx::Error> {
    let mut latest: Vec<&KeyValue> = Vec::new();
    for tag in tags {
        latest.retain(|it| it.key != tag.key);
        latest.push(tag);
    }
    latest.sort_by(|a, b| a.key.cmp(&b.key));
    for chunk in latest.chunks(500) {
        let mut sql = Sql::new("INSERT INTO registered_model_tags (name, key, value) VALUES ");
        for (idx, tag) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(name).push(", ").bind(&tag.key).push(", ").bind(&tag.value).push(")");
        }
        sql.push(" ON CONFLICT (name, key) DO UPDATE SET value = excluded.value");
        sql.query(dialect).execute(&mut **tx).await?;
    }
    Ok(())
}

pub(crate) async fn create(store: &SqlStore, new: NewRegisteredModel, record: &Record<'_, RegisteredModel>) -> Result<RegisteredModel> {
    write_tx!(store, record, |tx| async {
        let res = sqlx::query(
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description, next_version) VALUES ($1, $2, $2, $3, 1)",
        )
        .bind(new.name.clone())
        .bind(new.now)
        .bind(new.description.clone())
        .execute(&mut **tx)
        .await;
        if let Err(e) = res {
            let e = TxError::from(e);
            if is_unique_violation(&e) {
                return Err(Error::Registry(plinth_store::RegistryError::RegisteredModelExists { name: new.name.clone() }).into());
            }
            return Err(e);
        }
        upsert_tags(tx, store.dialect, &new.name, &new.tags).await?;
        load_existing(tx, store.dialect, &new.name).await
    }
    .await)
}

pub(crate) async fn get(store: &SqlStore, name: &str) -> Result<RegisteredModel> {
    let mut conn = store.read_conn().await?;
    load(&mut conn, store.dialect, name).await.map_err(sql_error)?.ok_or_else(|| not_found(name))
}

pub(crate) async fn rename(
    store: &SqlStore,
    name: &str,
    new_name: &str,
    now: i64,
    record: &Record<'_, RegisteredModel>,
) -> Result<RegisteredModel> {
    write_tx!(store, record, |tx| async {
        lock_existing(store, tx, name).await?;
        // Versions, tags, aliases, gates and promotion requests follow through ON UPDATE CASCADE.
        let res = sqlx::query("UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE name = $3")
            .bind(new_name.to_owned())
            .bind(now)
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await;
        if let Err(e) = res {
            let e = TxError::from(e);
            if is_unique_violation(&e) {
                return Err(Error::Registry(plinth_store::RegistryError::RegisteredModelExists { name: new_name.to_owned() }).into());
            }
            return Err(e);
        }
        // MLflow touches every version of a renamed model.
        sqlx::query("UPDATE model_versions SET last_updated_time = $1 WHERE name = $2")
            .bind(now)
            .bind(new_name.to_owned())
            .execute(&mut **tx)
            .await?;
        load_existing(tx, store.dialect, new_name).await
    }
    .await)
}

pub(crate) async fn update(
    store: &SqlStore,
    name: &str,
    description: Option<&str>,
    now: i64,
    record: &Record<'_, RegisteredModel>,
) -> Result<RegisteredModel> {
    write_tx!(store, record, |tx| async {
        let res = sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE name = $3")
            .bind(description.map(str::to_owned))
            .bind(now)
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(not_found(name).into());
        }
        load_existing(tx, store.dialect, name).await
    }
    .await)
}

pub(crate) async fn delete(store: &SqlStore, name: &str, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_existing(store, tx, name).await?;
        // Everything under the model goes with it through ON DELETE CASCADE.
        sqlx::query("DELETE FROM registered_models WHERE name = $1").bind(name.to_owned()).execute(&mut **tx).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn search(store: &SqlStore, query: &RegisteredModelQuery) -> Result<Rows<RegisteredModel>> {
    let mut sql = Sql::new(&format!("SELECT {MODEL_COLUMNS} FROM registered_models rm WHERE 1 = 1"));
    super::filter::push_scope(&mut sql, "rm.name", "registered_model_tags", query.restrict_to.as_deref(), query.exclude_prompts);
    for clause in &query.filter {
        sql.push(" AND ");
        push_model_clause(&mut sql, clause)?;
    }
    let mut order_by: Vec<String> = Vec::new();
    let mut has_name = false;
    for order in &query.order_by {
        let column = model_order_column(order).ok_or_else(|| invalid_order(order))?;
        has_name |= column == "rm.name";
        order_by.push(format!("{column} {}", if order.ascending { "ASC" } else { "DESC" }));
    }
    // The default order, and the unique tiebreak: name ascending.
    if !has_name {
        order_by.push("rm.name ASC".to_owned());
    }
    sql.push(" ORDER BY ").push(&order_by.join(", "));
    sql.push_page(&query.page);
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let page = decode_page(&rows, &query.page, model_from_row).map_err(sql_error)?;
    let items = hydrate_models(&mut conn, store.dialect, page.items).await.map_err(sql_error)?;
    Ok(Rows { items, has_more: page.has_more })
}

pub(crate) async fn set_tag(store: &SqlStore, name: &str, tag: &KeyValue, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_existing(store, tx, name).await?;
        upsert_tags(tx, store.dialect, name, std::slice::from_ref(tag)).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn delete_tag(store: &SqlStore, name: &str, key: &str, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_existing(store, tx, name).await?;
        sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2")
            .bind(name.to_owned())
            .bind(key.to_owned())
            .execute(&mut **tx)
            .await?;
        Ok::<_, TxError>(())
    }
    .await)
}
