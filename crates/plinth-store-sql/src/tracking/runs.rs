//! Runs: create, get, update, lifecycle, batched logging, inputs and outputs, search, metric history.

use std::collections::HashMap;

use plinth_core::ids::{ExperimentId, RunId};
use plinth_core::tracking::{
    Dataset, DatasetInput, KeyValue, LifecycleStage, Metric, ModelOutput, Run, RunData, RunInfo, RunInputs, RunStatus,
};
use plinth_filter::Key;
use plinth_store::tracking::{DATASET_CONTEXT_TAG, DatasetSummary, NewRun, PageRequest, Rows, RunQuery, RunUpdate, StepRange};
use plinth_store::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::experiments::{lock_stage, numeric_id};
use super::filter::{push_lifecycle, push_metric_on_alias, push_run_clause, run_order_column};
use super::rows::{metric_value_columns, parent_string};
use crate::Dialect;
use crate::SqlStore;
use crate::rows::{get_i64, get_opt_i64, get_opt_str, get_str, hex_of, load_key_values, unhex};
use crate::sql::{Arg, SharedArg, Sql, Tx, TxError, sql_error, write_tx};
use plinth_store::audit::Record;

const COLUMNS: &str =
    "r.run_uuid, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.lifecycle_stage";
const RUN_NAME_TAG: &str = "mlflow.runName";
/// Rows per multi-row INSERT: 1000 metric rows bind 9,000 values, under both databases' limits.
const INSERT_CHUNK: usize = 1000;

fn not_found(id: &RunId) -> Error {
    Error::Tracking(plinth_store::TrackingError::RunNotFound { run_id: id.clone() })
}

fn info_from_row(row: &AnyRow) -> Result<RunInfo, sqlx::Error> {
    Ok(RunInfo {
        run_id: RunId::from_trusted(get_str(row, "run_uuid")?),
        experiment_id: ExperimentId::from_trusted(get_i64(row, "experiment_id")?.to_string()),
        run_name: get_str(row, "name")?,
        user_id: get_str(row, "user_id")?,
        status: RunStatus::parse(&get_str(row, "status")?).unwrap_or(RunStatus::Running),
        start_time: get_i64(row, "start_time")?,
        end_time: get_opt_i64(row, "end_time")?,
        artifact_uri: get_str(row, "artifact_uri")?,
        lifecycle_stage: LifecycleStage::parse(&get_str(row, "lifecycle_stage")?).unwrap_or(LifecycleStage::Active),
    })
}

/// Loads the latest metrics, params, tags, inputs and outputs of many runs, one query per table.
async fn load_runs(conn: &mut AnyConnection, dialect: Dialect, infos: Vec<RunInfo>) -> Result<Vec<Run>, sqlx::Error> {
    let ids: Vec<Arg> = infos.iter().map(|it| Arg::from(it.run_id.as_str())).collect();
    let mut params = load_key_values(conn, dialect, "params", "run_uuid", &ids).await?;
    let mut tags = load_key_values(conn, dialect, "run_tags", "run_uuid", &ids).await?;
    let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
    let mut datasets: HashMap<String, Vec<DatasetInput>> = HashMap::new();
    let mut model_inputs: HashMap<String, Vec<String>> = HashMap::new();
    let mut outputs: HashMap<String, Vec<ModelOutput>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let encoded = format!("{} || ',' || {} || ',' || {}", hex_of(dialect, "run_uuid"), hex_of(dialect, "key"), encoded_point(dialect));
        let mut sql = Sql::new(&format!("SELECT string_agg({encoded}, ';' ORDER BY key) AS pts FROM latest_metrics WHERE run_uuid IN "));
        sql.bind_list(chunk);
        let row = sql.query(dialect).fetch_one(&mut *conn).await?;
        let pts: Option<String> = get_opt_str(&row, "pts")?;
        for item in pts.as_deref().unwrap_or("").split(';').filter(|it| !it.is_empty()) {
            let mut parts = item.splitn(3, ',');
            let decoded = (|| {
                let run = unhex(parts.next()?)?;
                let key = unhex(parts.next()?)?;
                Some((run, decode_point(&key, parts.next()?)?))
            })();
            let Some((run, metric)) = decoded else {
                return Err(sqlx::Error::Protocol("malformed latest-metric encoding".to_owned()));
            };
            metrics.entry(run).or_default().push(metric);
        }
        let mut sql = Sql::new(
            "SELECT i.run_uuid AS parent, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
             FROM run_dataset_inputs i JOIN runs r ON r.run_uuid = i.run_uuid \
             JOIN datasets d ON d.experiment_id = r.experiment_id AND d.name = i.dataset_name AND d.digest = i.dataset_digest \
             WHERE i.run_uuid IN ",
        );
        sql.bind_list(chunk).push(" ORDER BY d.name, d.digest");
        let rows = sql.query(dialect).fetch_all(&mut *conn).await?;
        if !rows.is_empty() {
            let mut sql = Sql::new(
                "SELECT run_uuid AS parent, dataset_name, dataset_digest, key, value FROM run_dataset_input_tags WHERE run_uuid IN ",
            );
            sql.bind_list(chunk).push(" ORDER BY key");
            let mut input_tags: HashMap<(String, String, String), Vec<KeyValue>> = HashMap::new();
            for row in sql.query(dialect).fetch_all(&mut *conn).await? {
                input_tags
                    .entry((parent_string(&row)?, get_str(&row, "dataset_name")?, get_str(&row, "dataset_digest")?))
                    .or_default()
                    .push(KeyValue { key: get_str(&row, "key")?, value: get_str(&row, "value")? });
            }
            for row in rows {
                let parent = parent_string(&row)?;
                let dataset = Dataset {
                    name: get_str(&row, "name")?,
                    digest: get_str(&row, "digest")?,
                    source_type: get_str(&row, "source_type")?,
                    source: get_str(&row, "source")?,
                    schema: get_opt_str(&row, "schema")?,
                    profile: get_opt_str(&row, "profile")?,
                };
                let tags = input_tags.remove(&(parent.clone(), dataset.name.clone(), dataset.digest.clone())).unwrap_or_default();
                datasets.entry(parent).or_default().push(DatasetInput { tags, dataset });
            }
        }
        let mut sql = Sql::new("SELECT run_uuid AS parent, model_id FROM run_model_inputs WHERE run_uuid IN ");
        sql.bind_list(chunk).push(" ORDER BY model_id");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            model_inputs.entry(parent_string(&row)?).or_default().push(get_str(&row, "model_id")?);
        }
        let mut sql = Sql::new("SELECT run_uuid AS parent, model_id, step FROM run_model_outputs WHERE run_uuid IN ");
        sql.bind_list(chunk).push(" ORDER BY model_id");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            outputs
                .entry(parent_string(&row)?)
                .or_default()
                .push(ModelOutput { model_id: get_str(&row, "model_id")?, step: get_i64(&row, "step")? });
        }
    }
    Ok(infos
        .into_iter()
        .map(|info| {
            let id = info.run_id.as_str();
            Run {
                data: RunData {
                    metrics: metrics.remove(id).unwrap_or_default(),
                    params: params.remove(id).unwrap_or_default(),
                    tags: tags.remove(id).unwrap_or_default(),
                },
                inputs: RunInputs {
                    dataset_inputs: datasets.remove(id).unwrap_or_default(),
                    model_inputs: model_inputs.remove(id).unwrap_or_default(),
                },
                outputs: outputs.remove(id).unwrap_or_default(),
                info,
            }
        })
        .collect())
}

async fn get_info(conn: &mut AnyConnection, run_id: &RunId) -> Result<RunInfo, TxError> {
    let sql = format!("SELECT {COLUMNS} FROM runs r WHERE r.run_uuid = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(run_id.as_str().to_owned()).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(info_from_row(&row)?),
        None => Err(not_found(run_id).into()),
    }
}

pub(crate) async fn get(store: &SqlStore, run_id: &RunId) -> Result<Run> {
    let mut conn = store.read_conn().await?;
    let info = get_info(&mut conn, run_id).await.map_err(TxError::into_store)?;
    let mut runs = load_runs(&mut conn, store.dialect, vec![info]).await.map_err(sql_error)?;
    runs.pop().ok_or_else(|| not_found(run_id))
}

/// Locks the run row for the transaction (shared on PostgreSQL) and checks that it is active.
async fn lock_active(store: &SqlStore, tx: &mut Tx, run_id: &RunId, exclusive: bool) -> Result<(), TxError> {
    let lock = if exclusive { store.for_update() } else { store.for_share() };
    let sql = format!("SELECT lifecycle_stage FROM runs WHERE run_uuid = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(run_id.as_str().to_owned()).fetch_optional(&mut **tx).await?;
    match row {
        None => Err(not_found(run_id).into()),
        Some(row) if get_str(&row, "lifecycle_stage")? != "active" => {
            Err(Error::Tracking(plinth_store::TrackingError::RunNotActive { run_id: run_id.to_string() }).into())
        }
        Some(_) => Ok(()),
    }
}

pub(crate) async fn create(store: &SqlStore, new: NewRun, record: &Record<'_, Run>) -> Result<Run> {
    write_tx!(store, record, |tx| async {
        let (key, stage, location) = lock_stage(store, tx, &new.experiment_id, false).await?;
        if stage != LifecycleStage::Active {
            return Err(
                Error::Tracking(plinth_store::TrackingError::ExperimentNotActive { experiment_id: new.experiment_id.to_string() }).into()
            );
        }
        let artifact_uri = format!("{}/{}/artifacts", location.trim_end_matches('/'), new.run_id);
        sqlx::query(
            "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage) \
             VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, $6, 'active')",
        )
        .bind(new.run_id.as_str().to_owned())
        .bind(key)
        .bind(new.run_name.clone())
        .bind(new.user_id.clone())
        .bind(new.start_time)
        .bind(artifact_uri)
        .execute(&mut **tx)
        .await?;
        upsert_tags(tx, store.dialect, &new.run_id, &new.tags).await?;
        // The run as its record and its answer show it, read in the transaction that wrote it.
        let info = get_info(tx, &new.run_id).await?;
        let mut runs = load_runs(tx, store.dialect, vec![info]).await?;
        Ok::<_, TxError>(runs.pop().ok_or_else(|| not_found(&new.run_id))?)
    }
    .await)
}

pub(crate) async fn update(store: &SqlStore, run_id: &RunId, update: &RunUpdate, record: &Record<'_, RunInfo>) -> Result<RunInfo> {
    write_tx!(store, record, |tx| async {
        lock_active(store, tx, run_id, true).await?;
        let mut sql = Sql::new("UPDATE runs SET run_uuid = run_uuid");
        if let Some(status) = update.status {
            sql.push(", status = ").bind(status.as_str());
        }
        if let Some(end_time) = update.end_time {
            sql.push(", end_time = ").bind(end_time);
        }
        if let Some(name) = &update.run_name {
            sql.push(", name = ").bind(name);
        }
        sql.push(" WHERE run_uuid = ").bind(run_id.as_str());
        sql.query(store.dialect).execute(&mut **tx).await?;
        if let Some(name) = &update.run_name {
            upsert_tags(tx, store.dialect, run_id, &[KeyValue::new(RUN_NAME_TAG, name.clone())]).await?;
        }
        get_info(tx, run_id).await
    }
    .await)
}

pub(crate) async fn set_lifecycle(
    store: &SqlStore,
    run_id: &RunId,
    stage: LifecycleStage,
    now: i64,
    record: &Record<'_, ()>,
) -> Result<()> {
    write_tx!(store, record, |tx| async {
        let res = match stage {
            LifecycleStage::Deleted => {
                sqlx::query("UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $1 WHERE run_uuid = $2")
                    .bind(now)
                    .bind(run_id.as_str().to_owned())
                    .execute(&mut **tx)
                    .await?
            }
            LifecycleStage::Active => {
                sqlx::query("UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE run_uuid = $1")
                    .bind(run_id.as_str().to_owned())
                    .execute(&mut **tx)
                    .await?
            }
        };
        if res.rows_affected() == 0 {
            return Err(not_found(run_id).into());
        }
        Ok::<_, TxError>(())
    }
    .await)
}

/// Upserts run tags (the last of duplicate keys wins); `mlflow.runName` also renames the run.
async fn upsert_tags(tx: &mut Tx, dialect: Dialect, run_id: &RunId, tags: &[KeyValue]) -> Result<(), sqlx::Error> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut latest: HashMap<&str, &str> = HashMap::new();
    for tag in tags {
        latest.insert(&tag.key, &tag.value);
    }
    let mut keys: Vec<&str> = latest.keys().copied().collect();
    keys.sort_unstable();
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new("INSERT INTO run_tags (run_uuid, key, value) VALUES ");
        for (idx, key) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(run_id.as_str()).push(", ").bind(*key).push(", ").bind(latest[key]).push(")");
        }
        sql.push(" ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value");
        sql.query(dialect).execute(&mut **tx).await?;
    }
    if let Some(name) = latest.get(RUN_NAME_TAG) {
        sqlx::query("UPDATE runs SET name = $1 WHERE run_uuid = $2")
            .bind((*name).to_owned())
            .bind(run_id.as_str().to_owned())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(crate) async fn log_batch(
    store: &SqlStore,
    run_id: &RunId,
    metrics: &[Metric],
    params: &[KeyValue],
    tags: &[KeyValue],
    record: &Record<'_, ()>,
) -> Result<()> {
    // Sorted inputs give every transaction the same lock order, so concurrent batches cannot deadlock.
    let mut params: Vec<&KeyValue> = params.iter().collect();
    params.sort_by(|a, b| a.key.cmp(&b.key));
    let mut metrics: Vec<&Metric> = metrics.iter().collect();
    metrics.sort_by(|a, b| (&a.key, a.step, a.timestamp).cmp(&(&b.key, b.step, b.timestamp)));
    let mut latest: Vec<&Metric> = Vec::new();
    for m in &metrics {
        match latest.last_mut() {
            Some(last) if last.key == m.key => {
                if m.is_newer_than(last) {
                    *last = m;
                }
            }
            _ => latest.push(m),
        }
    }
    // A new `mlflow.runName` rewrites the run row: lock it exclusively from the start (no upgrade).
    let renames = tags.iter().any(|t| t.key == RUN_NAME_TAG);
    write_tx!(store, record, |tx| async {
        lock_active(store, tx, run_id, renames).await?;
        insert_params(tx, store.dialect, run_id, &params).await?;
        upsert_tags(tx, store.dialect, run_id, tags).await?;
        insert_metrics(tx, store.dialect, run_id, &metrics, &latest).await?;
        Ok::<_, TxError>(())
    }
    .await)
}

async fn insert_params(tx: &mut Tx, dialect: Dialect, run_id: &RunId, params: &[&KeyValue]) -> Result<(), TxError> {
    for chunk in params.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new("INSERT INTO params (run_uuid, key, value) VALUES ");
        for (idx, p) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(run_id.as_str()).push(", ").bind(&p.key).push(", ").bind(&p.value).push(")");
        }
        sql.push(" ON CONFLICT (run_uuid, key) DO NOTHING");
        let inserted = sql.query(dialect).execute(&mut **tx).await?.rows_affected();
        if inserted as usize == chunk.len() {
            continue;
        }
        // Some keys existed: each must hold the same value, else the whole batch is refused.
        let keys: Vec<&str> = chunk.iter().map(|p| p.key.as_str()).collect();
        let mut sql = Sql::new("SELECT key, value FROM params WHERE run_uuid = ");
        sql.bind(run_id.as_str()).push(" AND key IN ").bind_list(&keys);
        let stored: HashMap<String, String> = sql
            .query(dialect)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| Ok((get_str(row, "key")?, get_str(row, "value")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        for p in chunk {
            if let Some(old) = stored.get(&p.key)
                && *old != p.value
            {
                return Err(Error::Tracking(plinth_store::TrackingError::ParamChanged {
                    run_id: run_id.to_string(),
                    key: p.key.clone(),
                    old_value: old.clone(),
                    new_value: p.value.clone(),
                })
                .into());
            }
        }
    }
    Ok(())
}

/// One `VALUES` row (with the value's bits); the run id is bound once per statement, absent optional
/// columns are literal `NULL`.
fn push_metric_row(sql: &mut Sql, run: SharedArg, m: &Metric) {
    let (value, is_nan) = metric_value_columns(m.value);
    sql.push("(")
        .reuse(run)
        .push(", ")
        .bind(m.key.as_str())
        .push(", ")
        .bind(m.step)
        .push(", ")
        .bind(m.timestamp)
        .push(", ")
        .bind(value)
        .push(", ")
        .bind(is_nan);
    sql.push(", ").bind(value.to_bits() as i64);
    for column in [&m.dataset_name, &m.dataset_digest, &m.model_id] {
        match column {
            Some(it) => sql.push(", ").bind(it.as_str()),
            None => sql.push(", NULL"),
        };
    }
    sql.push(")");
}

const HISTORY_COLUMNS: &str = "(run_uuid, key, step, timestamp, value, is_nan, value_bits, dataset_name, dataset_digest, model_id)";

async fn insert_metrics(tx: &mut Tx, dialect: Dialect, run_id: &RunId, metrics: &[&Metric], latest: &[&Metric]) -> Result<(), TxError> {
    for chunk in metrics.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(&format!("INSERT INTO metrics {HISTORY_COLUMNS} VALUES "));
        let run = sql.bind_shared(run_id.as_str());
        for (idx, m) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            push_metric_row(&mut sql, run, m);
        }
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query(dialect).execute(&mut **tx).await?;
    }
    for chunk in latest.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(&format!("INSERT INTO latest_metrics {HISTORY_COLUMNS} VALUES "));
        let run = sql.bind_shared(run_id.as_str());
        for (idx, m) in chunk.iter().enumerate() {
            if idx > 0 {
                sql.push(", ");
            }
            push_metric_row(&mut sql, run, m);
        }
        sql.push(
            " ON CONFLICT (run_uuid, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, \
             value = excluded.value, is_nan = excluded.is_nan, value_bits = excluded.value_bits, dataset_name = excluded.dataset_name, \
             dataset_digest = excluded.dataset_digest, model_id = excluded.model_id \
             WHERE (excluded.step, excluded.timestamp, excluded.is_nan, excluded.value) > \
             (latest_metrics.step, latest_metrics.timestamp, latest_metrics.is_nan, latest_metrics.value)",
        );
        sql.query(dialect).execute(&mut **tx).await?;
    }
    // Metrics logged against a logged model are recorded on the model too.
    for m in metrics.iter().filter(|m| m.model_id.is_some()) {
        let (value, is_nan) = metric_value_columns(m.value);
        sqlx::query(
            "INSERT INTO logged_model_metrics (model_id, key, step, timestamp, value, is_nan, run_uuid, dataset_name, dataset_digest) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM logged_models WHERE model_id = $1) \
             ON CONFLICT DO NOTHING",
        )
        .bind(m.model_id.clone().unwrap_or_default())
        .bind(m.key.clone())
        .bind(m.step)
        .bind(m.timestamp)
        .bind(value)
        .bind(is_nan)
        .bind(run_id.as_str().to_owned())
        .bind(m.dataset_name.clone().unwrap_or_default())
        .bind(m.dataset_digest.clone().unwrap_or_default())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) async fn delete_tag(store: &SqlStore, run_id: &RunId, key: &str, record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_active(store, tx, run_id, false).await?;
        let res = sqlx::query("DELETE FROM run_tags WHERE run_uuid = $1 AND key = $2")
            .bind(run_id.as_str().to_owned())
            .bind(key.to_owned())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(
                Error::Tracking(plinth_store::TrackingError::RunTagNotFound { run_id: run_id.to_string(), key: key.to_owned() }).into()
            );
        }
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn log_inputs(
    store: &SqlStore,
    run_id: &RunId,
    datasets: &[DatasetInput],
    model_ids: &[String],
    record: &Record<'_, ()>,
) -> Result<()> {
    write_tx!(store, record, |tx| {
        async {
        lock_active(store, tx, run_id, false).await?;
        let experiment_id = get_info(tx, run_id).await?.experiment_id;
        let experiment_key = numeric_id(&experiment_id).unwrap_or_default();
        for input in datasets {
            let d = &input.dataset;
            sqlx::query(
                "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema, profile) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (experiment_id, name, digest) DO NOTHING",
            )
            .bind(experiment_key)
            .bind(d.name.clone())
            .bind(d.digest.clone())
            .bind(d.source_type.clone())
            .bind(d.source.clone())
            .bind(d.schema.clone())
            .bind(d.profile.clone())
            .execute(&mut **tx)
            .await?;
            sqlx::query("INSERT INTO run_dataset_inputs (run_uuid, dataset_name, dataset_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(run_id.as_str().to_owned())
                .bind(d.name.clone())
                .bind(d.digest.clone())
                .execute(&mut **tx)
                .await?;
            for tag in &input.tags {
                sqlx::query(
                    "INSERT INTO run_dataset_input_tags (run_uuid, dataset_name, dataset_digest, key, value) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (run_uuid, dataset_name, dataset_digest, key) DO UPDATE SET value = excluded.value",
                )
                .bind(run_id.as_str().to_owned())
                .bind(d.name.clone())
                .bind(d.digest.clone())
                .bind(tag.key.clone())
                .bind(tag.value.clone())
                .execute(&mut **tx)
                .await?;
            }
        }
        for model_id in model_ids {
            sqlx::query("INSERT INTO run_model_inputs (run_uuid, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(run_id.as_str().to_owned())
                .bind(model_id.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok::<_, TxError>(())
    }
    .await
    })
}

pub(crate) async fn log_outputs(store: &SqlStore, run_id: &RunId, outputs: &[ModelOutput], record: &Record<'_, ()>) -> Result<()> {
    write_tx!(store, record, |tx| async {
        lock_active(store, tx, run_id, false).await?;
        for output in outputs {
            sqlx::query(
                "INSERT INTO run_model_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step",
            )
            .bind(run_id.as_str().to_owned())
            .bind(output.model_id.clone())
            .bind(output.step)
            .execute(&mut **tx)
            .await?;
        }
        Ok::<_, TxError>(())
    }
    .await)
}

pub(crate) async fn search(store: &SqlStore, query: &RunQuery) -> Result<Rows<Run>> {
    let experiment_keys: Vec<i64> = query.experiment_ids.iter().filter_map(numeric_id).collect();
    if experiment_keys.is_empty() {
        return Ok(Rows { items: Vec::new(), has_more: false });
    }
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM runs r"));
    // Each order key that lives in a child table gets its own LEFT JOIN.
    let mut order_exprs: Vec<(String, bool)> = Vec::new();
    let mut explicit_start_time = false;
    let mut explicit_run_id = false;
    let mut inner_aliases: HashMap<&str, String> = HashMap::new();
    let filtered_metrics: std::collections::HashSet<&str> = query
        .filter
        .iter()
        .filter_map(|clause| match &clause.key {
            Key::Metric(key) => Some(key.as_str()),
            _ => None,
        })
        .collect();
    for (idx, order) in query.order_by.iter().enumerate() {
        let alias = format!("o{idx}");
        let (table, null_test, value) = match &order.key {
            Key::Metric(key) if filtered_metrics.contains(key.as_str()) => {
                inner_aliases.entry(key.as_str()).or_insert_with(|| alias.clone());
                // A filter on this metric already drops runs without a (non-NaN) value, so an inner join
                // returns the same rows and lets the database walk the (key, value) index in order.
                sql.push(&format!(
                    " JOIN latest_metrics {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.is_nan = 0 AND {alias}.key = "
                ))
                .bind(key.as_str());
                ("m", String::new(), format!("{alias}.value"))
            }
            Key::Metric(key) => {
                sql.push(&format!(" LEFT JOIN latest_metrics {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = "))
                    .bind(key.as_str());
                // Missing values sort last; NaN after every number but before missing (MLflow's order).
                ("m", format!("({alias}.run_uuid IS NULL) ASC, ({alias}.is_nan = 1)"), format!("{alias}.value"))
            }
            Key::Param(key) | Key::Tag(key) => {
                let table = if matches!(order.key, Key::Param(_)) { "params" } else { "run_tags" };
                sql.push(&format!(" LEFT JOIN {table} {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = ")).bind(key.as_str());
                ("kv", format!("({alias}.value IS NULL)"), format!("{alias}.value"))
            }
            Key::Attribute(attr) => {
                let column = run_order_column(*attr).ok_or_else(|| Error::invalid(format!("Invalid order_by clause '{order}'")))?;
                explicit_start_time |= column == "r.start_time";
                explicit_run_id |= column == "r.run_uuid";
                ("attr", format!("({column} IS NULL)"), column.to_owned())
            }
            Key::Dataset(_) => return Err(Error::invalid(format!("Invalid order_by clause '{order}'"))),
        };
        let _ = table;
        if !null_test.is_empty() {
            order_exprs.push((null_test, true));
        }
        order_exprs.push((value, order.ascending));
    }
    sql.push(" WHERE r.experiment_id IN ").bind_list(&experiment_keys).push(" AND ");
    push_lifecycle(&mut sql, "r.lifecycle_stage", query.view_type);
    for clause in &query.filter {
        sql.push(" AND ");
        match &clause.key {
            Key::Metric(key) if inner_aliases.contains_key(key.as_str()) => {
                push_metric_on_alias(&mut sql, &inner_aliases[key.as_str()], clause)?
            }
            _ => push_run_clause(&mut sql, clause)?,
        }
    }
    sql.push(" ORDER BY ");
    for (expr, ascending) in &order_exprs {
        sql.push(expr).push(if *ascending { " ASC, " } else { " DESC, " });
    }
    if !explicit_start_time {
        sql.push("r.start_time DESC, ");
    }
    sql.push(if explicit_run_id { "r.name ASC" } else { "r.run_uuid ASC" });
    sql.push(" LIMIT ").bind(query.page.limit + 1).push(" OFFSET ").bind(query.page.offset);
    let mut conn = store.read_conn().await?;
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    let mut infos = rows.iter().map(info_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
    let has_more = infos.len() as i64 > query.page.limit;
    infos.truncate(query.page.limit as usize);
    let items = load_runs(&mut conn, store.dialect, infos).await.map_err(sql_error)?;
    Ok(Rows { items, has_more })
}

async fn check_exists(conn: &mut AnyConnection, run_id: &RunId) -> Result<()> {
    let row = sqlx::query("SELECT 1 AS one FROM runs WHERE run_uuid = $1")
        .bind(run_id.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error)?;
    row.map(|_| ()).ok_or_else(|| not_found(run_id))
}

/// One metric point encoded as text inside the database: `step,timestamp,value,is_nan,name,digest,model`,
/// with the double as its IEEE-754 bits (text forms of doubles are not exact in SQLite) and optional
/// strings hex-encoded (`-` for NULL).
/// A whole page of history then crosses the driver as one value instead of one row per point.
fn encoded_point(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "CAST(step AS TEXT) || ',' || CAST(timestamp AS TEXT) || ',' || CAST(value_bits AS TEXT) || ',' || CAST(is_nan AS TEXT) \
             || ',' || CASE WHEN dataset_name IS NULL THEN '-' ELSE hex(dataset_name) END \
             || ',' || CASE WHEN dataset_digest IS NULL THEN '-' ELSE hex(dataset_digest) END \
             || ',' || CASE WHEN model_id IS NULL THEN '-' ELSE hex(model_id) END"
        }
        Dialect::Postgres => {
            "CAST(step AS TEXT) || ',' || CAST(timestamp AS TEXT) || ',' || CAST(value_bits AS TEXT) || ',' || CAST(is_nan AS TEXT) \
             || ',' || CASE WHEN dataset_name IS NULL THEN '-' ELSE encode(convert_to(dataset_name, 'UTF8'), 'hex') END \
             || ',' || CASE WHEN dataset_digest IS NULL THEN '-' ELSE encode(convert_to(dataset_digest, 'UTF8'), 'hex') END \
             || ',' || CASE WHEN model_id IS NULL THEN '-' ELSE encode(convert_to(model_id, 'UTF8'), 'hex') END"
        }
    }
}

/// Step order (bulk-interval sampling) and MLflow's history order.
const STEP_ORDER: &str = "step, timestamp, value, is_nan";
const HISTORY_ORDER: &str = "timestamp, step, value, is_nan";
/// Points aggregated into one value at most: keeps each value far below the databases' 1 GB field limits.
const AGGREGATE_POINTS: i64 = 50_000;

/// Runs `SELECT <point> FROM metrics WHERE run_uuid = ? AND key = ? <rest>` aggregated into one text value.
async fn fetch_points(
    store: &SqlStore,
    conn: &mut AnyConnection,
    run_id: &RunId,
    key: &str,
    order: &str,
    rest: impl FnOnce(&mut Sql),
) -> Result<Vec<Metric>> {
    let mut sql = Sql::new("SELECT string_agg(pt, ';' ORDER BY ");
    sql.push(order).push(") AS pts FROM (SELECT ").push(encoded_point(store.dialect)).push(" AS pt, ").push(STEP_ORDER);
    sql.push(" FROM metrics WHERE run_uuid = ").bind(run_id.as_str()).push(" AND key = ").bind(key);
    rest(&mut sql);
    sql.push(") page");
    let row = sql.query(store.dialect).fetch_one(&mut *conn).await.map_err(sql_error)?;
    let encoded = get_opt_str(&row, "pts").map_err(sql_error)?.unwrap_or_default();
    decode_points(key, &encoded).ok_or_else(|| Error::internal(format!("malformed metric history encoding for run {run_id}")))
}

fn decode_hex(field: &str) -> Option<Option<String>> {
    if field == "-" {
        return Some(None);
    }
    Some(Some(unhex(field)?))
}

/// One point as `encoded_point` writes it.
fn decode_point(key: &str, point: &str) -> Option<Metric> {
    let mut it = point.split(',');
    let step = it.next()?.parse().ok()?;
    let timestamp = it.next()?.parse().ok()?;
    let value = f64::from_bits(it.next()?.parse::<i64>().ok()? as u64);
    let is_nan = it.next()? == "1";
    Some(Metric {
        key: key.to_owned(),
        value: if is_nan { f64::NAN } else { value },
        timestamp,
        step,
        dataset_name: decode_hex(it.next()?)?,
        dataset_digest: decode_hex(it.next()?)?,
        model_id: decode_hex(it.next()?)?,
    })
}

fn decode_points(key: &str, encoded: &str) -> Option<Vec<Metric>> {
    encoded.split(';').filter(|it| !it.is_empty()).map(|point| decode_point(key, point)).collect()
}

pub(crate) async fn metric_history(store: &SqlStore, run_id: &RunId, key: &str, page: PageRequest) -> Result<Rows<Metric>> {
    let mut conn = store.read_conn().await?;
    check_exists(&mut conn, run_id).await?;
    // One more than the page tells whether another page follows; read in bounded sub-pages.
    let want = page.limit + 1;
    let mut items: Vec<Metric> = Vec::new();
    while (items.len() as i64) < want {
        let n = (want - items.len() as i64).min(AGGREGATE_POINTS);
        let offset = page.offset + items.len() as i64;
        let chunk = fetch_points(store, &mut conn, run_id, key, HISTORY_ORDER, |sql| {
            sql.push(" ORDER BY ").push(HISTORY_ORDER).push(" LIMIT ").bind(n).push(" OFFSET ").bind(offset);
        })
        .await?;
        let got = chunk.len() as i64;
        items.extend(chunk);
        if got < n {
            break;
        }
    }
    let has_more = items.len() as i64 > page.limit;
    items.truncate(page.limit as usize);
    Ok(Rows { items, has_more })
}

pub(crate) async fn dataset_summaries(store: &SqlStore, experiment_ids: &[ExperimentId], limit: usize) -> Result<Vec<DatasetSummary>> {
    let keys: Vec<i64> = experiment_ids.iter().filter_map(numeric_id).collect();
    if keys.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut conn = store.read_conn().await?;
    let mut all = Vec::new();
    // One statement per chunk of experiments keeps the bind count under SQLite's limit; the
    // chunks hold different experiments, so their rows are merged by one sort below.
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(
            "SELECT DISTINCT r.experiment_id, i.dataset_name, i.dataset_digest, t.value AS context \
             FROM run_dataset_inputs i JOIN runs r ON r.run_uuid = i.run_uuid \
             LEFT JOIN run_dataset_input_tags t ON t.run_uuid = i.run_uuid AND t.dataset_name = i.dataset_name \
             AND t.dataset_digest = i.dataset_digest AND t.key = ",
        );
        sql.bind(DATASET_CONTEXT_TAG).push(" WHERE r.experiment_id IN ").bind_list(chunk);
        sql.push(" ORDER BY r.experiment_id, i.dataset_name, i.dataset_digest, context LIMIT ")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        for row in &rows {
            all.push(DatasetSummary {
                experiment_id: ExperimentId::from_trusted(get_i64(row, "experiment_id").map_err(sql_error)?.to_string()),
                name: get_str(row, "dataset_name").map_err(sql_error)?,
                digest: get_str(row, "dataset_digest").map_err(sql_error)?,
                context: get_opt_str(row, "context").map_err(sql_error)?,
            });
        }
    }
    // Experiment ids order numerically, as the statement ordered them.
    all.sort_by(|a, b| {
        (numeric_id(&a.experiment_id), &a.name, &a.digest, &a.context).cmp(&(numeric_id(&b.experiment_id), &b.name, &b.digest, &b.context))
    });
    all.truncate(limit);
    Ok(all)
}

pub(crate) async fn metric_steps(store: &SqlStore, run_id: &RunId, key: &str, range: Option<StepRange>) -> Result<Vec<i64>> {
    let mut conn = store.read_conn().await?;
    check_exists(&mut conn, run_id).await?;
    let mut sql = Sql::new("SELECT DISTINCT step FROM metrics WHERE run_uuid = ");
    sql.bind(run_id.as_str()).push(" AND key = ").bind(key);
    if let Some(range) = range {
        sql.push(" AND step >= ").bind(range.start).push(" AND step <= ").bind(range.end);
    }
    sql.push(" ORDER BY step");
    let rows = sql.query(store.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
    rows.iter().map(|row| get_i64(row, "step")).collect::<Result<_, _>>().map_err(sql_error)
}

pub(crate) async fn metric_points_at_steps(store: &SqlStore, run_id: &RunId, key: &str, steps: &[i64]) -> Result<Vec<Metric>> {
    let mut conn = store.read_conn().await?;
    let mut res = Vec::new();
    for chunk in steps.chunks(INSERT_CHUNK) {
        res.extend(
            fetch_points(store, &mut conn, run_id, key, STEP_ORDER, |sql| {
                sql.push(" AND step IN ").bind_list(chunk);
            })
            .await?,
        );
    }
    Ok(res)
}
