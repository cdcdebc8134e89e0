//! Row helpers every store module shares: typed column getters, booleans and JSON string lists as
//! stored, the hex codec that lets many rows' key/value children cross the driver as one text
//! value, and loading those children for many parents at once.

use std::collections::HashMap;

use plinth_core::tracking::KeyValue;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::Dialect;
use crate::sql::{Arg, Sql};

/// The rows of a query ended with `Sql::push_page`, decoded: the page's items, and whether more follow.
pub(crate) fn decode_page<T>(
    rows: &[AnyRow],
    page: &plinth_store::tracking::PageRequest,
    decode: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<plinth_store::tracking::Rows<T>, sqlx::Error> {
    let limit = usize::try_from(page.limit.max(0)).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    let items = rows.iter().take(limit).map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(plinth_store::tracking::Rows { items, has_more })
}

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

/// A malformed stored value (an unknown enum spelling, broken JSON): the database holds something
/// this binary did not write.
pub(crate) fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("unexpected stored {what}: {value:?}"))
}

/// Decodes a JSON array of strings as stored in a TEXT column.
pub(crate) fn json_strings(row: &AnyRow, col: &str) -> Result<Vec<String>, sqlx::Error> {
    let raw = get_str(row, col)?;
    serde_json::from_str::<Vec<String>>(&raw).map_err(|_| corrupt(col, &raw))
}

/// A list of strings as a JSON array for a TEXT column.
pub(crate) fn to_json_strings(items: &[String]) -> String {
    serde_json::Value::Array(items.iter().cloned().map(serde_json::Value::String).collect()).to_string()
}

/// A boolean as the integer both databases store (0 or 1).
pub(crate) fn flag(v: bool) -> i64 {
    i64::from(v)
}

/// A stored 0 or 1 as a boolean; anything else is corrupt.
pub(crate) fn get_flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match get_i64(row, col)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(corrupt(col, &other.to_string())),
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
