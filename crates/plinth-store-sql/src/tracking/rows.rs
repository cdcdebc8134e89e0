//! Decoding rows into domain types, and loading the children of many parents in one query each.

use std::collections::HashMap;

use plinth_core::tracking::KeyValue;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::Dialect;
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

/// `expr` as hex digits of its UTF-8 text: a form safe inside the `,`/`;`-separated encodings below.
pub(crate) fn hex_of(dialect: Dialect, expr: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("hex(CAST({expr} AS TEXT))"),
        Dialect::Postgres => format!("encode(convert_to(CAST({expr} AS TEXT), 'UTF8'), 'hex')"),
    }
}

/// Decodes hex digits (as `hex_of` writes them) back to text.
pub(crate) fn unhex(field: &str) -> Option<String> {
    String::from_utf8(hex::decode(field).ok()?).ok()
}

/// Loads `(parent, key, value)` rows of a key/value child table for many parents. The rows are
/// aggregated into one text value inside the database, so they cross the driver as one row.
pub(crate) async fn load_key_values(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    parent_column: &str,
    parents: &[Arg],
) -> Result<HashMap<String, Vec<KeyValue>>, sqlx::Error> {
    let mut res: HashMap<String, Vec<KeyValue>> = HashMap::new();
    for chunk in parents.chunks(500) {
        let encoded =
            format!("{} || ',' || {} || ',' || {}", hex_of(dialect, parent_column), hex_of(dialect, "key"), hex_of(dialect, "value"));
        let mut sql = Sql::new(&format!("SELECT string_agg({encoded}, ';' ORDER BY key) AS kvs FROM {table} WHERE {parent_column} IN "));
        sql.bind_list(chunk);
        let row = sql.query(dialect).fetch_one(&mut *conn).await?;
        let encoded: Option<String> = row.try_get("kvs")?;
        for item in encoded.as_deref().unwrap_or("").split(';').filter(|it| !it.is_empty()) {
            let mut fields = item.split(',');
            let decoded = (|| Some((unhex(fields.next()?)?, unhex(fields.next()?)?, unhex(fields.next()?)?)))();
            let Some((parent, key, value)) = decoded else {
                return Err(sqlx::Error::Protocol(format!("malformed key/value encoding from {table}")));
            };
            res.entry(parent).or_default().push(KeyValue { key, value });
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
