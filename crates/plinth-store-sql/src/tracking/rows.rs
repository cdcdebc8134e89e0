//! Decoding rows into domain types, and loading the children of many parents in one query each.

use std::collections::HashMap;

use plinth_core::tracking::{KeyValue, Metric};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::sql::{Arg, Sql};

pub(crate) fn get_i64(row: &AnyRow, col: &str) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(col)
}

pub(crate) fn get_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
}

pub(crate) fn get_str(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(col)
}

pub(crate) fn get_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(col)
}

/// Metric values: NaN is stored as 0 with `is_nan = 1` (SQLite cannot store NaN).
pub(crate) fn get_metric_value(row: &AnyRow) -> Result<f64, sqlx::Error> {
    if get_i64(row, "is_nan")? != 0 {
        return Ok(f64::NAN);
    }
    row.try_get::<f64, _>("value")
}

pub(crate) fn metric_from_row(row: &AnyRow) -> Result<Metric, sqlx::Error> {
    Ok(Metric {
        key: get_str(row, "key")?,
        value: get_metric_value(row)?,
        timestamp: get_i64(row, "timestamp")?,
        step: get_i64(row, "step")?,
        dataset_name: get_opt_str(row, "dataset_name")?,
        dataset_digest: get_opt_str(row, "dataset_digest")?,
        model_id: get_opt_str(row, "model_id")?,
    })
}

/// Stored form of a metric value: (value, is_nan); infinities become ±`f64::MAX`, as in MLflow.
pub(crate) fn metric_value_columns(v: f64) -> (f64, i64) {
    if v.is_nan() {
        (0.0, 1)
    } else if v == f64::INFINITY {
        (f64::MAX, 0)
    } else if v == f64::NEG_INFINITY {
        (-f64::MAX, 0)
    } else {
        (v, 0)
    }
}

/// Loads `(parent, key, value)` rows of a key/value child table for many parents.
pub(crate) async fn load_key_values(
    conn: &mut AnyConnection,
    dialect: crate::Dialect,
    table: &str,
    parent_column: &str,
    parents: &[Arg],
) -> Result<HashMap<String, Vec<KeyValue>>, sqlx::Error> {
    let mut res: HashMap<String, Vec<KeyValue>> = HashMap::new();
    if parents.is_empty() {
        return Ok(res);
    }
    for chunk in parents.chunks(500) {
        let mut sql = Sql::new(&format!("SELECT {parent_column} AS parent, key, value FROM {table} WHERE {parent_column} IN "));
        sql.bind_list(chunk).push(" ORDER BY key");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            let parent = parent_string(&row)?;
            res.entry(parent).or_default().push(KeyValue { key: get_str(&row, "key")?, value: get_str(&row, "value")? });
        }
    }
    Ok(res)
}

/// The `parent` column as a string whether the database stored it as text or as an integer id.
pub(crate) fn parent_string(row: &AnyRow) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>("parent") {
        Ok(s) => Ok(s),
        Err(_) => Ok(get_i64(row, "parent")?.to_string()),
    }
}
