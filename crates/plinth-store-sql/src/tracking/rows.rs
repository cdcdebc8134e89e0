//! Decoding tracking rows: metric values as stored (NaN, infinities) and parents of either id type.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::rows::get_i64;

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

/// The `parent` column as a string whether the database stored it as text or as an integer id.
pub(crate) fn parent_string(row: &AnyRow) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>("parent") {
        Ok(s) => Ok(s),
        Err(_) => Ok(get_i64(row, "parent")?.to_string()),
    }
}
