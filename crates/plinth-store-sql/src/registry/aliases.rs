//! Aliases: read, compare-and-set moves (optionally applying a promotion request), delete.

use plinth_core::registry::PromotionStatus;
use plinth_store::registry::{AliasMove, Expect};
use plinth_store::{Error, Result};
use sqlx::AssertSqlSafe;

use super::models;
use super::versions;
use crate::SqlStore;
use crate::rows::{get_i64, get_opt_i64, get_str};
use crate::sql::{Tx, TxError, sql_error, write_tx};
use plinth_store::audit::Record;

fn describe(version: Option<i64>) -> String {
    version.map_or_else(|| "is unset".to_owned(), |v| format!("points at version {v}"))
}

fn describe_expected(version: Option<i64>) -> String {
    version.map_or_else(|| "expected it unset".to_owned(), |v| format!("expected version {v}"))
}

pub(crate) async fn get(store: &SqlStore, name: &str, alias: &str) -> Result<Option<i64>> {
    let mut conn = store.read_conn().await?;
    let row = sqlx::query(
        "SELECT rm.name AS name, a.version AS version FROM registered_models rm \
         LEFT JOIN registered_model_aliases a ON a.name = rm.name AND a.alias = $1 WHERE rm.name = $2",
    )
    .bind(alias.to_owned())
    .bind(name.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error)?;
    let Some(row) = row else { return Err(models::not_found(name)) };
    get_opt_i64(&row, "version").map_err(sql_error)
}

async fn holder(tx: &mut Tx, name: &str, alias: &str) -> Result<Option<i64>, TxError> {
    let row = sqlx::query("SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2")
        .bind(name.to_owned())
        .bind(alias.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => Some(get_i64(&row, "version")?),
        None => None,
    })
}

/// Checks that promotion request `id` is pending and asks for exactly this move, then marks it applied.
async fn apply_promotion(store: &SqlStore, tx: &mut Tx, id: i64, change: &AliasMove) -> Result<(), TxError> {
    let sql = format!("SELECT model, version, target, status FROM promotion_requests WHERE id = $1{}", store.for_update());
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **tx).await?;
    let Some(row) = row else { return Err(Error::Registry(plinth_store::RegistryError::PromotionNotFound { id }).into()) };
    let status = get_str(&row, "status")?;
    if status != PromotionStatus::Pending.as_str() {
        return Err(Error::Conflict { message: format!("Promotion request {id} is {status}, not PENDING") }.into());
    }
    let (model, version, target) = (get_str(&row, "model")?, get_i64(&row, "version")?, get_str(&row, "target")?);
    if model != change.name || target != change.alias || version != change.version {
        return Err(Error::Conflict {
            message: format!(
                "Promotion request {id} moves '{target}' of registered model '{model}' to version {version}, not '{}' of '{}' to version {}",
                change.alias, change.name, change.version
            ),
        }
        .into());
    }
    sqlx::query("UPDATE promotion_requests SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(PromotionStatus::Applied.as_str())
        .bind(change.now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn move_alias(store: &SqlStore, change: &AliasMove, record: &Record<'_, Option<i64>>) -> Result<Option<i64>> {
    write_tx!(store, record, |tx| async {
        // The model row is the per-model lock: concurrent moves of the same model's aliases queue
        // here, so the holder read below is the one the upsert replaces.
        models::lock_existing(store, tx, &change.name).await?;
        if versions::live_stage(tx, &change.name, change.version).await?.is_none() {
            return Err(versions::not_found(&change.name, change.version).into());
        }
        let previous = holder(tx, &change.name, &change.alias).await?;
        if let Expect::Holder(expected) = change.expect
            && expected != previous
        {
            return Err(Error::Conflict {
                message: format!(
                    "Alias '{}' of registered model '{}' {}, {}",
                    change.alias,
                    change.name,
                    describe(previous),
                    describe_expected(expected)
                ),
            }
            .into());
        }
        super::gates::check_stamp(tx, &change.name, &change.alias, change.gate_stamp).await?;
        if let Some(id) = change.promotion_id {
            apply_promotion(store, tx, id, change).await?;
        }
        sqlx::query(
            "INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3) \
             ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
        )
        .bind(change.name.clone())
        .bind(change.alias.clone())
        .bind(change.version)
        .execute(&mut **tx)
        .await?;
        Ok::<_, TxError>(previous)
    }
    .await)
}

pub(crate) async fn delete(store: &SqlStore, name: &str, alias: &str, record: &Record<'_, Option<i64>>) -> Result<Option<i64>> {
    write_tx!(store, record, |tx| async {
        models::lock_existing(store, tx, name).await?;
        let row = sqlx::query("DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2 RETURNING version")
            .bind(name.to_owned())
            .bind(alias.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        Ok::<_, TxError>(match row {
            Some(row) => Some(get_i64(&row, "version")?),
            None => None,
        })
    }
    .await)
}
