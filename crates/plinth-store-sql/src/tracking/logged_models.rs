//! Logged models (MLflow 3): create, get, finalize, delete, tags, params, search.

use std::collections::HashMap;

use plinth_core::ids::{ExperimentId, LoggedModelId, RunId};
use plinth_core::tracking::{KeyValue, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, MetricWithRunId};
use plinth_filter::Key;
use plinth_store::tracking::{LoggedModelQuery, NewLoggedModel, Rows};
use plinth_store::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::experiments::{lock_stage, numeric_id};
use super::filter::{logged_model_order_column, push_logged_model_clause};
use super::rows::{get_metric_value, parent_string};
use crate::rows::{get_i64, get_opt_str, get_str, load_key_values};
use crate::sql::{Arg, Sql, Tx, TxError, sql_error, write_tx};
use crate::{Dialect, SqlStore};
use plinth_store::audit::Record;

const COLUMNS: &str = "lm.model_id, lm.experiment_id, lm.name, lm.artifact_location, lm.creation_timestamp, \
     lm.last_updated_timestamp, lm.status, lm.status_message, lm.model_type, lm.source_run_id, lm.lifecycle_stage";

fn not_found(id: &LoggedModelId) -> Error {
    Error::Tracking(plinth_store::TrackingError::LoggedModelNotFound { model_id: id.clone() })
}

fn from_row(row: &AnyRow) -> Result<LoggedModel, sqlx::Error> {
    Ok(LoggedModel {
        model_id: LoggedModelId::from_trusted(get_str(row, "model_id")?),
        experiment_id: ExperimentId::from_trusted(get_i64(row, "experiment_id")?.to_string()),
        name: get_str(row, "name")?,
        artifact_location: get_str(row, "artifact_location")?,
        creation_timestamp: get_i64(row, "creation_timestamp")?,
        last_updated_timestamp: get_i64(row, "last_updated_timestamp")?,
        status: LoggedModelStatus::parse(&get_str(row, "status")?).unwrap_or(LoggedModelStatus::Pending),
        status_message: get_opt_str(row, "status_message")?,
        model_type: get_opt_str(row, "model_type")?,
        source_run_id: get_opt_str(row, "source_run_id")?.map(RunId::from_trusted),
        lifecycle_stage: LifecycleStage::parse(&get_str(row, "lifecycle_stage")?).unwrap_or(LifecycleStage::Active),
        tags: Vec::new(),
        params: Vec::new(),
        metrics: Vec::new(),
    })
}

async fn load_children(
    conn: &mut AnyConnection,
    dialect: crate::Dialect,
    mut models: Vec<LoggedModel>,
) -> Result<Vec<LoggedModel>, sqlx::Error> {
    let ids: Vec<Arg> = models.iter().map(|it| Arg::from(it.model_id.as_str())).collect();
    let mut tags = load_key_values(conn, dialect, "logged_model_tags", "model_id", &ids).await?;
    let mut params = load_key_values(conn, dialect, "logged_model_params", "model_id", &ids).await?;
    let mut metrics: HashMap<String, Vec<MetricWithRunId>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new(
            "SELECT model_id AS parent, key, value, is_nan, timestamp, step, run_uuid, dataset_name, dataset_digest \
             FROM logged_model_metrics WHERE model_id IN ",
        );
        sql.bind_list(chunk).push(" ORDER BY key, step, timestamp");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
            let parent = parent_string(&row)?;
            let metric = Metric {
                key: get_str(&row, "key")?,
                value: get_metric_value(&row)?,
                timestamp: get_i64(&row, "timestamp")?,
                step: get_i64(&row, "step")?,
                dataset_name: non_empty(get_str(&row, "dataset_name")?),
                dataset_digest: non_empty(get_str(&row, "dataset_digest")?),
                model_id: Some(parent.clone()),
            };
            let run_id = RunId::from_trusted(get_str(&row, "run_uuid")?);
            metrics.entry(parent).or_default().push(MetricWithRunId { run_id, metric });
        }
    }
    for it in &mut models {
        let id = it.model_id.as_str();
        it.tags = tags.remove(id).unwrap_or_default();
        it.params = params.remove(id).unwrap_or_default();
        it.metrics = metrics.remove(id).unwrap_or_default();
    }
    Ok(models)
}

async fn upsert(tx: &mut Tx, table: &str, model_id: &LoggedModelId, items: &[KeyValue]) -> Result<(), sqlx::Error> {
    let mut latest: HashMap<&str, &str> = HashMap::new();
    for it in items {
        latest.insert(&it.key, &it.value);
    }
    let mut keys: Vec<&str> = latest.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let sql = format!(
            "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(model_id.as_str().to_owned())
            .bind(key.to_owned())
            .bind(latest[key].to_owned())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(crate) async fn create(store: &SqlStore, new: NewLoggedModel, record: &Record<'_, LoggedModel>) -> Result<LoggedModel> {
    write_tx!(store, record, |tx| {
        async {
        let (key, stage, location) = lock_stage(store, tx, &new.experiment_id, false).await?;
        if stage != LifecycleStage::Active {
            return Err(Error::Tracking(plinth_store::TrackingError::ExperimentNotActive { experiment_id: new.experiment_id.to_string() }).into());
        }
        let artifact_location = format!("{}/models/{}/artifacts", location.trim_end_matches('/'), new.model_id);
        sqlx::query(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp, last_updated_timestamp, \
             status, status_message, model_type, source_run_id, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $5, $6, NULL, $7, $8, 'active')",
        )
        .bind(new.model_id.as_str().to_owned())
        .bind(key)
        .bind(new.name.clone())
        .bind(artifact_location)
        .bind(new.now)
        .bind(LoggedModelStatus::Pending.as_str())
        .bind(new.model_type.clone())
        .bind(new.source_run_id.as_ref().map(|it| it.as_str().to_owned()))
        .execute(&mut **tx)
        .await?;
        upsert(tx, "logged_model_params", &new.model_id, &new.params).await?;
        upsert(tx, "logged_model_tags", &new.model_id, &new.tags).await?;
        load(tx, store.dialect, &new.model_id, false).await
    }
    .await
    })
}

pub(crate) async fn get(store: &SqlStore, model_id: &LoggedModelId, allow_deleted: bool) -> Result<LoggedModel> {
    let mut conn = store.read_conn().await?;
    load(&mut conn, store.dialect, model_id, allow_deleted).await.map_err(TxError::into_store)
}

/// The model with its params and tags, on `conn` (a read, or the transaction that wrote it).
async fn load(conn: &mut AnyConnection, dialect: Dialect, model_id: &LoggedModelId, allow_deleted: bool) -> Result<LoggedModel, TxError> {
    let sql = format!("SELECT {COLUMNS} FROM logged_models lm WHERE lm.model_id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(model_id.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(model_id))?;
    let model = from_row(&row)?;
    if model.lifecycle_stage == LifecycleStage::Deleted && !allow_deleted {
        return Err(not_found(model_id).into());
    }
    let mut models = load_children(conn, dialect, vec![model]).await?;
    Ok(models.pop().ok_or_else(|| not_found(model_id))?)
}

/// Locks an active logged model's row and bumps its update time.
async fn touch(store: &SqlStore, tx: &mut Tx, model_id: &LoggedModelId, now: i64) -> Result<(), TxError> {
    let sql = format!("SELECT lifecycle_stage FROM logged_models WHERE model_id = $1{}", store.for_update());
    let row = sqlx::query(AssertSqlSafe(sql)).bind(model_id.as_str().to_owned()).fetch_optional(&mut **tx).await?;
    match row {
        Some(row) if get_str(&row, "lifecycle_stage")? == "active" => {}
        _ => return Err(not_found(model_id).into()),
    }
    sqlx::query("UPDATE logged_models SET last_updated_timestamp = $1 WHERE model_id = $2")
        .bind(now)
        .bind(model_id.as_str().to_owned())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn update_status(
    store: &SqlStore,
    model_id: &LoggedModelId,
    status: LoggedModelStatus,
    status_message: Option<&str>,
    now: i64,
    record: &Record<'_, LoggedModel>,
) -> Result<LoggedModel> {
    write_tx!(store, record, |tx| async {
        touch(store, tx, model_id, now).await?;
        sqlx::query("UPDATE logged_models SET status = $1, status_message = $2 WHERE model_id = $3")
            .bind(status.as_str())
            .bind(status_message.map(str::to_owned))
            .bind(model_id.as_str().to_owned())
            .execute(&mut **tx)
            .await?;
        load(tx, store.dialect, model_id, false).await
    }
    .await)
}

pub(crate) async fn delete(store: &SqlStore, model_id: &LoggedModelId, now: i64, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        touch(store, tx, model_id, now).await?;
        sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted' WHERE model_id = $1")
            .bind(model_id.as_str().to_owned())
            .execute(&mut **tx)
            .await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn set_tags(
    store: &SqlStore,
    model_id: &LoggedModelId,
    tags: &[KeyValue],
    now: i64,
    record: &Record<'_, ()>,
) -> Result<()> {
    write_tx!(store, record, |tx| async {
        touch(store, tx, model_id, now).await?;
        upsert(tx, "logged_model_tags", model_id, tags).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn delete_tag(store: &SqlStore, model_id: &LoggedModelId, key: &str, now: i64, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        touch(store, tx, model_id, now).await?;
        let res = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id.as_str().to_owned())
            .bind(key.to_owned())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(Error::Tracking(plinth_store::TrackingError::LoggedModelTagNotFound {
                model_id: model_id.to_string(),
                key: key.to_owned(),
            })
            .into());
        }
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn log_params(
    store: &SqlStore,
    model_id: &LoggedModelId,
    params: &[KeyValue],
    now: i64,
    record: &Record<'_, ()>,
) -> Result<()> {
    write_tx!(store, record, |tx| async {
        touch(store, tx, model_id, now).await?;
        upsert(tx, "logged_model_params", model_id, params).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn search(store: &SqlStore, query: &LoggedModelQuery) -> Result<Rows<LoggedModel>> {
    let experiment_keys: Vec<i64> = query.experiment_ids.iter().filter_map(numeric_id).collect();
    if experiment_keys.is_empty() {
        return Ok(Rows { items: Vec::new(), has_more: false });
    }
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM logged_models lm"));
    let mut order_exprs: Vec<(String, bool)> = Vec::new();
    for (idx, order) in query.order_by.iter().enumerate() {
        match &order.key {
            Key::Metric(key) => {
                // Order by the model's latest value of the metric.
                let alias = format!("o{idx}");
                sql.push(" LEFT JOIN (SELECT model_id, MAX(CASE WHEN is_nan = 1 THEN NULL ELSE value END) AS value FROM logged_model_metrics WHERE key = ")
                .bind(key.as_str())
                .push(&format!(" GROUP BY model_id) {alias} ON {alias}.model_id = lm.model_id"));
                order_exprs.push((format!("({alias}.value IS NULL)"), true));
                order_exprs.push((format!("{alias}.value"), order.ascending));
            }
            Key::Attribute(attr) => {
                let column =
                    logged_model_order_column(*attr).ok_or_else(|| Error::invalid(format!("Invalid order_by clause '{order}'")))?;
                order_exprs.push((column.to_owned(), order.ascending));
            }
            _ => return Err(Error::invalid(format!("Invalid order_by clause '{order}'"))),
        }
    }
    sql.push(" WHERE lm.lifecycle_stage = 'active' AND lm.experiment_id IN ").bind_list(&experiment_keys);
    for clause in &query.filter {
        sql.push(" AND ");
        push_logged_model_clause(&mut sql, clause)?;
    }
    sql.push(" ORDER BY ");
    for (expr, ascending) in &order_exprs {
        sql.push(expr).push(if *ascending { " ASC, " } else { " DESC, " });
    }
    sql.push("lm.creation_timestamp DESC, lm.model_id ASC");
    sql.push(" LIMIT ").bind(query.page.limit + 1).push(" OFFSET ").bind(query.page.offset);
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let mut models = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
    let has_more = models.len() as i64 > query.page.limit;
    models.truncate(query.page.limit as usize);
    let items = load_children(&mut conn, store.dialect, models).await.map_err(sql_error)?;
    Ok(Rows { items, has_more })
}
