//! Promotion requests and their reviews: create, get, list, review, status compare-and-set, expiry.

use std::collections::HashMap;

use plinth_core::registry::{PromotionRequest, PromotionStatus, Review, ReviewDecision};
use plinth_store::registry::{NewPromotion, PromotionQuery};
use plinth_store::tracking::Rows;
use plinth_store::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::{models, versions};
use crate::rows::{corrupt, decode_page, get_i64, get_opt_str, get_str};
use crate::sql::{Sql, Tx, TxError, sql_error, write_tx};
use crate::{Dialect, SqlStore};
use plinth_store::audit::Record;

const COLUMNS: &str = "id, model, version, target, requester, reason, status, created_at, expires_at, updated_at";

fn from_row(row: &AnyRow) -> Result<PromotionRequest, sqlx::Error> {
    let status = get_str(row, "status")?;
    Ok(PromotionRequest {
        id: get_i64(row, "id")?,
        model: get_str(row, "model")?,
        version: get_i64(row, "version")?,
        target: get_str(row, "target")?,
        requester: get_str(row, "requester")?,
        reason: get_opt_str(row, "reason")?,
        status: PromotionStatus::parse(&status).ok_or_else(|| corrupt("promotion status", &status))?,
        created_at: get_i64(row, "created_at")?,
        expires_at: get_i64(row, "expires_at")?,
        updated_at: get_i64(row, "updated_at")?,
        reviews: Vec::new(),
    })
}

/// Fills in the reviews of requests, each request's ordered by time, in one query per chunk.
async fn with_reviews(
    conn: &mut AnyConnection,
    dialect: Dialect,
    mut requests: Vec<PromotionRequest>,
) -> Result<Vec<PromotionRequest>, sqlx::Error> {
    let ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
    let mut reviews: HashMap<i64, Vec<Review>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("SELECT request_id, reviewer, decision, comment, created_at FROM promotion_reviews WHERE request_id IN ");
        sql.bind_list(chunk).push(" ORDER BY request_id, created_at, reviewer");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            let decision = get_str(&row, "decision")?;
            reviews.entry(get_i64(&row, "request_id")?).or_default().push(Review {
                reviewer: get_str(&row, "reviewer")?,
                decision: ReviewDecision::parse(&decision).ok_or_else(|| corrupt("review decision", &decision))?,
                comment: get_opt_str(&row, "comment")?,
                created_at: get_i64(&row, "created_at")?,
            });
        }
    }
    for r in &mut requests {
        r.reviews = reviews.remove(&r.id).unwrap_or_default();
    }
    Ok(requests)
}

async fn load(conn: &mut AnyConnection, dialect: Dialect, id: i64) -> Result<Option<PromotionRequest>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM promotion_requests WHERE id = $1");
    let Some(row) = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await? else { return Ok(None) };
    Ok(with_reviews(conn, dialect, vec![from_row(&row)?]).await?.pop())
}

async fn load_existing(conn: &mut AnyConnection, dialect: Dialect, id: i64) -> Result<PromotionRequest, TxError> {
    load(conn, dialect, id).await?.ok_or_else(|| Error::Registry(plinth_store::RegistryError::PromotionNotFound { id }).into())
}

/// Locks a request row and returns its status.
async fn lock(store: &SqlStore, tx: &mut Tx, id: i64) -> Result<PromotionStatus, TxError> {
    let sql = format!("SELECT status FROM promotion_requests WHERE id = $1{}", store.for_update());
    let Some(row) = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **tx).await? else {
        return Err(Error::Registry(plinth_store::RegistryError::PromotionNotFound { id }).into());
    };
    let status = get_str(&row, "status")?;
    Ok(PromotionStatus::parse(&status).ok_or_else(|| corrupt("promotion status", &status))?)
}

fn not_in(id: i64, status: PromotionStatus, expected: PromotionStatus) -> TxError {
    Error::Conflict { message: format!("Promotion request {id} is {}, not {}", status.as_str(), expected.as_str()) }.into()
}

pub(crate) async fn create(store: &SqlStore, new: NewPromotion, record: &Record<'_, PromotionRequest>) -> Result<PromotionRequest> {
    write_tx!(store, record, |tx| async {
        models::lock_existing(store, tx, &new.model).await?;
        if versions::live_stage(tx, &new.model, new.version).await?.is_none() {
            return Err(versions::not_found(&new.model, new.version).into());
        }
        let row = sqlx::query(
            "INSERT INTO promotion_requests (model, version, target, requester, reason, status, created_at, expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) RETURNING id",
        )
        .bind(new.model.clone())
        .bind(new.version)
        .bind(new.target.clone())
        .bind(new.requester.clone())
        .bind(new.reason.clone())
        .bind(PromotionStatus::Pending.as_str())
        .bind(new.now)
        .bind(new.expires_at)
        .fetch_one(&mut **tx)
        .await?;
        Ok::<_, TxError>(PromotionRequest {
            id: get_i64(&row, "id")?,
            model: new.model.clone(),
            version: new.version,
            target: new.target.clone(),
            requester: new.requester.clone(),
            reason: new.reason.clone(),
            status: PromotionStatus::Pending,
            created_at: new.now,
            expires_at: new.expires_at,
            updated_at: new.now,
            reviews: Vec::new(),
        })
    }
    .await)
}

pub(crate) async fn get(store: &SqlStore, id: i64) -> Result<PromotionRequest> {
    let mut conn = store.read_conn().await?;
    load(&mut conn, store.dialect, id)
        .await
        .map_err(sql_error)?
        .ok_or(Error::Registry(plinth_store::RegistryError::PromotionNotFound { id }))
}

pub(crate) async fn list(store: &SqlStore, query: &PromotionQuery) -> Result<Rows<PromotionRequest>> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM promotion_requests WHERE 1 = 1"));
    if let Some(model) = &query.model {
        sql.push(" AND model = ").bind(model);
    }
    if let Some(status) = query.status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    sql.push(" ORDER BY id DESC").push_page(&query.page);
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let page = decode_page(&rows, &query.page, from_row).map_err(sql_error)?;
    let items = with_reviews(&mut conn, store.dialect, page.items).await.map_err(sql_error)?;
    Ok(Rows { items, has_more: page.has_more })
}

pub(crate) async fn add_review(
    store: &SqlStore,
    id: i64,
    review: &Review,
    record: &Record<'_, PromotionRequest>,
) -> Result<PromotionRequest> {
    write_tx!(store, record, |tx| async {
        let status = lock(store, tx, id).await?;
        if status != PromotionStatus::Pending {
            return Err(not_in(id, status, PromotionStatus::Pending));
        }
        sqlx::query(
            "INSERT INTO promotion_reviews (request_id, reviewer, decision, comment, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (request_id, reviewer) DO UPDATE SET decision = excluded.decision, comment = excluded.comment, \
             created_at = excluded.created_at",
        )
        .bind(id)
        .bind(review.reviewer.clone())
        .bind(review.decision.as_str())
        .bind(review.comment.clone())
        .bind(review.created_at)
        .execute(&mut **tx)
        .await?;
        let status = match review.decision {
            ReviewDecision::Reject => PromotionStatus::Rejected,
            ReviewDecision::Approve => PromotionStatus::Pending,
        };
        sqlx::query("UPDATE promotion_requests SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(review.created_at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        load_existing(tx, store.dialect, id).await
    }
    .await)
}

pub(crate) async fn set_status(
    store: &SqlStore,
    id: i64,
    from: PromotionStatus,
    to: PromotionStatus,
    now: i64,
    record: &Record<'_, PromotionRequest>,
) -> Result<PromotionRequest> {
    write_tx!(store, record, |tx| async {
        let status = lock(store, tx, id).await?;
        if status != from {
            return Err(not_in(id, status, from));
        }
        sqlx::query("UPDATE promotion_requests SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        load_existing(tx, store.dialect, id).await
    }
    .await)
}

pub(crate) async fn expire(store: &SqlStore, now: i64, record: &Record<'_, Vec<PromotionRequest>>) -> Result<Vec<PromotionRequest>> {
    // The expiry loop asks every few seconds; a read on a reader connection answers the usual
    // "nothing is overdue" without taking the (on SQLite, single) writer.
    let mut conn = store.read_conn().await?;
    let overdue = sqlx::query("SELECT 1 AS x FROM promotion_requests WHERE status = 'PENDING' AND expires_at < $1 LIMIT 1")
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error)?;
    drop(conn);
    if overdue.is_none() {
        return Ok(Vec::new());
    }
    write_tx!(store, record, |tx| {
        async {
        let sql = format!(
            "UPDATE promotion_requests SET status = 'EXPIRED', updated_at = $1 WHERE status = 'PENDING' AND expires_at < $1 RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(now).fetch_all(&mut **tx).await?;
        let mut expired = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        expired.sort_by_key(|r| r.id);
        Ok::<_, TxError>(with_reviews(tx, store.dialect, expired).await?)
    }
    .await
    })
}
