//! `WebhookStore` on SQL: subscriptions and the durable delivery outbox.

use async_trait::async_trait;
use plinth_store::audit::Record;
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::webhooks::{Attempt, Delivery, DeliveryStatus, OutboxEvent, Webhook, WebhookStatus, WebhookUpdate};
use plinth_store::{Error, Result, WebhookStore};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::SqlStore;
use crate::rows::{corrupt, decode_page, get_i64, get_opt_i64, get_opt_str, get_str, json_strings, to_json_strings};
use crate::sql::{Sql, TxError, is_unique_violation, sql_error, write_tx};

const WEBHOOK_COLUMNS: &str = "id, name, url, events, secret, status, description, created_at, updated_at";
const DELIVERY_COLUMNS: &str =
    "id, webhook_id, event, payload, status, attempts, next_attempt_at, last_status_code, last_error, created_at, finished_at";

fn webhook_from_row(row: &AnyRow) -> Result<Webhook, sqlx::Error> {
    let status = get_str(row, "status")?;
    Ok(Webhook {
        id: get_str(row, "id")?,
        name: get_str(row, "name")?,
        url: get_str(row, "url")?,
        events: json_strings(row, "events")?,
        secret: get_str(row, "secret")?,
        status: WebhookStatus::parse(&status).ok_or_else(|| corrupt("webhook status", &status))?,
        description: get_opt_str(row, "description")?,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, sqlx::Error> {
    let status = get_str(row, "status")?;
    Ok(Delivery {
        id: get_str(row, "id")?,
        webhook_id: get_str(row, "webhook_id")?,
        event: get_str(row, "event")?,
        payload: get_str(row, "payload")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status", &status))?,
        attempts: get_i64(row, "attempts")?,
        next_attempt_at: get_i64(row, "next_attempt_at")?,
        last_status_code: get_opt_i64(row, "last_status_code")?,
        last_error: get_opt_str(row, "last_error")?,
        created_at: get_i64(row, "created_at")?,
        finished_at: get_opt_i64(row, "finished_at")?,
    })
}

fn webhook_not_found(id: &str) -> Error {
    Error::Webhooks(plinth_store::WebhookError::WebhookNotFound { id: id.to_owned() })
}

async fn load_webhook(conn: &mut AnyConnection, id: &str, lock: &str) -> Result<Option<Webhook>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(webhook_from_row).transpose()
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, webhook: &Webhook, record: Record<'_, ()>) -> Result<()> {
        write_tx!(self, &record, |tx| async {
            let res = sqlx::query(
                "INSERT INTO webhooks (id, name, url, events, secret, status, description, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(webhook.id.clone())
            .bind(webhook.name.clone())
            .bind(webhook.url.clone())
            .bind(to_json_strings(&webhook.events))
            .bind(webhook.secret.clone())
            .bind(webhook.status.as_str())
            .bind(webhook.description.clone())
            .bind(webhook.created_at)
            .bind(webhook.updated_at)
            .execute(&mut **tx)
            .await;
            if let Err(e) = res {
                let e = TxError::from(e);
                if is_unique_violation(&e) {
                    return Err(Error::Conflict { message: format!("Webhook with ID {} already exists.", webhook.id) }.into());
                }
                return Err(e);
            }
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn get_webhook(&self, id: &str) -> Result<Webhook> {
        let mut conn = self.read_conn().await?;
        load_webhook(&mut conn, id, "").await.map_err(sql_error)?.ok_or_else(|| webhook_not_found(id))
    }

    async fn list_webhooks(&self, page: PageRequest) -> Result<Rows<Webhook>> {
        let mut sql = Sql::new(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id"));
        sql.push_page(&page);
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        decode_page(&rows, &page, webhook_from_row).map_err(sql_error)
    }

    async fn update_webhook(&self, id: &str, update: &WebhookUpdate, now: i64, record: Record<'_, Webhook>) -> Result<Webhook> {
        write_tx!(self, &record, |tx| async {
            let Some(mut webhook) = load_webhook(tx, id, self.for_update()).await? else { return Err(webhook_not_found(id).into()) };
            if let Some(name) = &update.name {
                webhook.name = name.clone();
            }
            if let Some(url) = &update.url {
                webhook.url = url.clone();
            }
            if let Some(events) = &update.events {
                webhook.events = events.clone();
            }
            if let Some(secret) = &update.secret {
                webhook.secret = secret.clone();
            }
            if let Some(status) = update.status {
                webhook.status = status;
            }
            if let Some(description) = &update.description {
                webhook.description = Some(description.clone());
            }
            webhook.updated_at = now;
            sqlx::query(
                "UPDATE webhooks SET name = $1, url = $2, events = $3, secret = $4, status = $5, description = $6, updated_at = $7 \
                 WHERE id = $8",
            )
            .bind(webhook.name.clone())
            .bind(webhook.url.clone())
            .bind(to_json_strings(&webhook.events))
            .bind(webhook.secret.clone())
            .bind(webhook.status.as_str())
            .bind(webhook.description.clone())
            .bind(now)
            .bind(id.to_owned())
            .execute(&mut **tx)
            .await?;
            Ok::<_, TxError>(webhook)
        }
        .await)
    }

    async fn delete_webhook(&self, id: &str, record: Record<'_, ()>) -> Result<()> {
        write_tx!(self, &record, |tx| async {
            // Its deliveries go with it through ON DELETE CASCADE.
            let res = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id.to_owned()).execute(&mut **tx).await?;
            if res.rows_affected() == 0 {
                return Err(webhook_not_found(id).into());
            }
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn enqueue(&self, event: &OutboxEvent, new_id: &(dyn Fn() -> String + Send + Sync)) -> Result<usize> {
        write_tx!(self, |tx| async {
            // Shared locks on the webhooks (in id order) keep them from being deleted between this
            // read and the inserts that reference them.
            let rows = match &event.only_webhook {
                // A ping goes to this webhook whatever it subscribes to and whatever its status.
                Some(id) => {
                    let sql = format!("SELECT id, events FROM webhooks WHERE id = $1{}", self.for_share());
                    let rows = sqlx::query(AssertSqlSafe(sql)).bind(id.clone()).fetch_all(&mut **tx).await?;
                    if rows.is_empty() {
                        return Err(webhook_not_found(id).into());
                    }
                    rows
                }
                None => {
                    let sql = format!("SELECT id, events FROM webhooks WHERE status = $1 ORDER BY id{}", self.for_share());
                    sqlx::query(AssertSqlSafe(sql)).bind(WebhookStatus::Active.as_str()).fetch_all(&mut **tx).await?
                }
            };
            let mut queued = 0;
            for row in &rows {
                if event.only_webhook.is_none() && !json_strings(row, "events")?.contains(&event.event) {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, status, attempts, next_attempt_at, last_status_code, \
                     last_error, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, NULL, $6, NULL)",
                )
                .bind(new_id())
                .bind(get_str(row, "id")?)
                .bind(event.event.clone())
                .bind(event.payload.clone())
                .bind(DeliveryStatus::Pending.as_str())
                .bind(event.now)
                .execute(&mut **tx)
                .await?;
                queued += 1;
            }
            Ok::<_, TxError>(queued)
        }
        .await)
    }

    async fn claim_due(&self, now: i64, limit: i64, lease_until: i64) -> Result<Vec<Delivery>> {
        let skip_locked = match self.dialect {
            crate::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Dialect::Sqlite => "",
        };
        // The dispatcher polls every second or so: a read on a reader connection answers the usual
        // "nothing is due" without a write transaction (on SQLite, the single writer).
        let mut conn = self.read_conn().await?;
        let due = sqlx::query("SELECT 1 AS x FROM webhook_deliveries WHERE status = $1 AND next_attempt_at <= $2 LIMIT 1")
            .bind(DeliveryStatus::Pending.as_str())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql_error)?;
        drop(conn);
        if due.is_none() {
            return Ok(Vec::new());
        }
        write_tx!(self, |tx| async {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = $1 AND next_attempt_at <= $2 \
                 ORDER BY next_attempt_at, created_at, id LIMIT $3{skip_locked}"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(DeliveryStatus::Pending.as_str())
                .bind(now)
                .bind(limit.max(0))
                .fetch_all(&mut **tx)
                .await?;
            let due = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
            for d in &due {
                sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id = $2")
                    .bind(lease_until)
                    .bind(d.id.clone())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok::<_, TxError>(due)
        }
        .await)
    }

    async fn record_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        let finished_at = (attempt.status != DeliveryStatus::Pending).then_some(attempt.now);
        write_tx!(self, |tx| async {
            let res = sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $1, last_status_code = $2, last_error = $3, \
                 next_attempt_at = $4, finished_at = $5 WHERE id = $6",
            )
            .bind(attempt.status.as_str())
            .bind(attempt.status_code)
            .bind(attempt.error.clone())
            .bind(attempt.next_attempt_at)
            .bind(finished_at)
            .bind(delivery_id.to_owned())
            .execute(&mut **tx)
            .await?;
            if res.rows_affected() == 0 {
                return Err(Error::Webhooks(plinth_store::WebhookError::DeliveryNotFound { id: delivery_id.to_owned() }).into());
            }
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn list_deliveries(&self, webhook_id: &str, page: PageRequest) -> Result<Rows<Delivery>> {
        let mut conn = self.read_conn().await?;
        if load_webhook(&mut conn, webhook_id, "").await.map_err(sql_error)?.is_none() {
            return Err(webhook_not_found(webhook_id));
        }
        let mut sql = Sql::new(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = "));
        sql.bind(webhook_id).push(" ORDER BY created_at DESC, id DESC").push_page(&page);
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        decode_page(&rows, &page, delivery_from_row).map_err(sql_error)
    }

    async fn get_delivery(&self, id: &str) -> Result<Delivery> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
        let mut conn = self.read_conn().await?;
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(&mut *conn).await.map_err(sql_error)?;
        match row {
            Some(row) => delivery_from_row(&row).map_err(sql_error),
            None => Err(Error::Webhooks(plinth_store::WebhookError::DeliveryNotFound { id: id.to_owned() })),
        }
    }
}
