//! `AuditLog` on SQL: append-only events, queried newest first.

use async_trait::async_trait;
use plinth_core::audit::{AuditEvent, Change, Outcome};
use plinth_store::audit::AuditQuery;
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, Result};
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::rows::{corrupt, decode_page, get_i64, get_opt_str, get_str};
use crate::sql::{Sql, Tx, TxError, sql_error, write_tx};

const COLUMNS: &str = "id, time, actor, action, resource_type, resource_id, outcome, message, changes";

fn changes_to_json(changes: &[Change]) -> String {
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    Value::Array(
        changes
            .iter()
            .map(|c| {
                let mut object = serde_json::Map::new();
                object.insert("field".to_owned(), Value::String(c.field.clone()));
                object.insert("before".to_owned(), text(&c.before));
                object.insert("after".to_owned(), text(&c.after));
                Value::Object(object)
            })
            .collect(),
    )
    .to_string()
}

fn changes_from_json(raw: &str) -> Option<Vec<Change>> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(raw) else { return None };
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    items
        .iter()
        .map(|item| {
            Some(Change {
                field: item.get("field")?.as_str()?.to_owned(),
                before: text(item.get("before"))?,
                after: text(item.get("after"))?,
            })
        })
        .collect()
}

fn from_row(row: &AnyRow) -> Result<AuditEvent, sqlx::Error> {
    let outcome = get_str(row, "outcome")?;
    let changes = get_str(row, "changes")?;
    Ok(AuditEvent {
        id: get_i64(row, "id")?,
        time: get_i64(row, "time")?,
        actor: get_str(row, "actor")?,
        action: get_str(row, "action")?,
        resource_type: get_str(row, "resource_type")?,
        resource_id: get_str(row, "resource_id")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("audit outcome", &outcome))?,
        message: get_opt_str(row, "message")?,
        changes: changes_from_json(&changes).ok_or_else(|| corrupt("audit changes", &changes))?,
    })
}

/// `prefix` as a LIKE pattern matching every string that starts with it: the wildcards and the
/// escape character in the prefix are escaped (used with `ESCAPE '\'`).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Inserts one event inside `tx` (a change's own transaction, or an append of its own); returns its id.
pub(crate) async fn insert(tx: &mut Tx, event: &AuditEvent) -> Result<i64, TxError> {
    let row = sqlx::query(
        "INSERT INTO audit_events (time, actor, action, resource_type, resource_id, outcome, message, changes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(event.time)
    .bind(event.actor.clone())
    .bind(event.action.clone())
    .bind(event.resource_type.clone())
    .bind(event.resource_id.clone())
    .bind(event.outcome.as_str())
    .bind(event.message.clone())
    .bind(changes_to_json(&event.changes))
    .fetch_one(&mut **tx)
    .await?;
    Ok(get_i64(&row, "id")?)
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append(&self, event: &AuditEvent) -> Result<i64> {
        write_tx!(self, |tx| insert(tx, event).await)
    }

    async fn query(&self, query: &AuditQuery) -> Result<Rows<AuditEvent>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1"));
        if let Some(resource_type) = &query.resource_type {
            sql.push(" AND resource_type = ").bind(resource_type);
        }
        match query.resource_id.as_deref().map(|id| (id, id.strip_suffix('*'))) {
            // Every id with the prefix sorts at or after the prefix itself: the range lets the
            // (resource_type, resource_id, id) index start there; LIKE decides.
            Some((_, Some(prefix))) => {
                sql.push(" AND resource_id >= ").bind(prefix).push(" AND resource_id LIKE ").bind(like_prefix(prefix)).push(" ESCAPE '\\'");
            }
            Some((id, None)) => {
                sql.push(" AND resource_id = ").bind(id);
            }
            None => {}
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND actor = ").bind(actor);
        }
        if let Some(action) = &query.action {
            sql.push(" AND action = ").bind(action);
        }
        if let Some(outcome) = query.outcome {
            sql.push(" AND outcome = ").bind(outcome.as_str());
        }
        if let Some(since) = query.since {
            sql.push(" AND time >= ").bind(since);
        }
        if let Some(until) = query.until {
            sql.push(" AND time < ").bind(until);
        }
        if let Some(before) = query.before_id {
            sql.push(" AND id < ").bind(before);
        }
        // Paged by the event id (`before_id`), newest first: the offset is always 0.
        let page = PageRequest { offset: 0, limit: query.limit };
        sql.push(" ORDER BY id DESC").push_page(&page);
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        decode_page(&rows, &page, from_row).map_err(sql_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_like_wildcards() {
        assert_eq!(like_prefix("a_b%c\\d/"), "a\\_b\\%c\\\\d/%");
        assert_eq!(like_prefix(""), "%");
    }

    #[test]
    fn changes_round_trip_through_json() {
        let changes = vec![Change::new("alias", None, Some("3".into())), Change::new("stage", Some("\"x\"".into()), None)];
        assert_eq!(changes_from_json(&changes_to_json(&changes)), Some(changes));
        assert_eq!(changes_from_json("[]"), Some(vec![]));
        assert_eq!(changes_from_json("{}"), None);
    }
}
