//! Promotion gates: one per (model, target), conditions and required tags stored as JSON arrays.

use plinth_core::registry::{Gate, GateSpec};
use plinth_store::Result;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::models;
use crate::SqlStore;
use crate::rows::{get_i64, get_opt_str, get_str, json_strings, to_json_strings};
use crate::sql::{TxError, sql_error, write_tx};
use plinth_store::audit::Record;

const COLUMNS: &str = "model, target, conditions, required_tags, approvals_required, description, updated_by, updated_at";

fn from_row(row: &AnyRow) -> Result<Gate, sqlx::Error> {
    let approvals = get_i64(row, "approvals_required")?;
    Ok(Gate {
        model: get_str(row, "model")?,
        spec: GateSpec {
            target: get_str(row, "target")?,
            conditions: json_strings(row, "conditions")?,
            required_tags: json_strings(row, "required_tags")?,
            approvals_required: u32::try_from(approvals).map_err(|_| crate::rows::corrupt("approvals", &approvals.to_string()))?,
            description: get_opt_str(row, "description")?,
        },
        updated_by: get_str(row, "updated_by")?,
        updated_at: get_i64(row, "updated_at")?,
    })
}

async fn load(conn: &mut AnyConnection, model: &str, target: &str) -> Result<Option<Gate>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM registry_gates WHERE model = $1 AND target = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model.to_owned()).bind(target.to_owned()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub(crate) async fn put(store: &SqlStore, gate: &Gate, record: &Record<'_, Option<Gate>>) -> Result<Option<Gate>> {
    write_tx!(store, record, |tx| {
        async {
        models::lock_existing(store, tx, &gate.model).await?;
        let previous = load(tx, &gate.model, &gate.spec.target).await?;
        sqlx::query(
            "INSERT INTO registry_gates (model, target, conditions, required_tags, approvals_required, description, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (model, target) DO UPDATE SET conditions = excluded.conditions, \
             required_tags = excluded.required_tags, approvals_required = excluded.approvals_required, description = excluded.description, \
             updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(gate.model.clone())
        .bind(gate.spec.target.clone())
        .bind(to_json_strings(&gate.spec.conditions))
        .bind(to_json_strings(&gate.spec.required_tags))
        .bind(i64::from(gate.spec.approvals_required))
        .bind(gate.spec.description.clone())
        .bind(gate.updated_by.clone())
        .bind(gate.updated_at)
        .execute(&mut **tx)
        .await?;
        Ok::<_, TxError>(previous)
    }
    .await
    })
}

pub(crate) async fn get(store: &SqlStore, model: &str, target: &str) -> Result<Option<Gate>> {
    let mut conn = store.read_conn().await?;
    load(&mut conn, model, target).await.map_err(sql_error)
}

pub(crate) async fn list(store: &SqlStore, model: &str) -> Result<Vec<Gate>> {
    let mut conn = store.read_conn().await?;
    let sql = format!("SELECT {COLUMNS} FROM registry_gates WHERE model = $1 ORDER BY target");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model.to_owned()).fetch_all(&mut *conn).await.map_err(sql_error)?;
    rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

pub(crate) async fn delete(store: &SqlStore, model: &str, target: &str, record: &Record<'_, Option<Gate>>) -> Result<Option<Gate>> {
    write_tx!(store, record, |tx| async {
        // The model lock keeps the one lock order (model, then its rows) also here.
        if !models::lock(store, tx, model).await? {
            return Ok(None);
        }
        let sql = format!("DELETE FROM registry_gates WHERE model = $1 AND target = $2 RETURNING {COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model.to_owned()).bind(target.to_owned()).fetch_optional(&mut **tx).await?;
        Ok::<_, TxError>(row.as_ref().map(from_row).transpose()?)
    }
    .await)
}

/// Checks, inside a transaction holding the model lock, that the gate of `target` is the one the
/// caller judged the move under (`stamp`: its `updated_at`, or `None` for no gate).
pub(crate) async fn check_stamp(tx: &mut crate::sql::Tx, model: &str, target: &str, stamp: Option<Option<i64>>) -> Result<(), TxError> {
    let Some(expected) = stamp else { return Ok(()) };
    let row = sqlx::query("SELECT updated_at FROM registry_gates WHERE model = $1 AND target = $2")
        .bind(model.to_owned())
        .bind(target.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    let current = match row {
        Some(row) => Some(get_i64(&row, "updated_at")?),
        None => None,
    };
    if current != expected {
        return Err(plinth_store::Error::Conflict {
            message: format!(
                "The promotion gate of '{target}' on registered model '{model}' changed while the move was being checked; retry"
            ),
        }
        .into());
    }
    Ok(())
}
