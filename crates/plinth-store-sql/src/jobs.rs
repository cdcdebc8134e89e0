//! `JobStore` on SQL: one row per job, with what queries filter on as columns and the spec, the
//! flavor assignment and the last attempt's end as JSON text; the queue configuration as a single
//! row. Changes lock the jobs' rows first, in ascending id order (`FOR UPDATE` on PostgreSQL;
//! SQLite's single writer serializes them), so a batch's compare-and-sets cannot interleave with
//! another writer's nor deadlock with another batch.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use plinth_core::jobs::{AttemptEnd, ExitCause, FlavorAssignment, Job, JobSpec, JobState, Resources, Retry};
use plinth_store::audit::Record;
use plinth_store::jobs::{JobQuery, JobStore, JobUpdate, NewJob, QueueConfigRecord};
use plinth_store::tracking::Rows;
use plinth_store::{Error, JobsError, Result};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::SqlStore;
use crate::rows::{corrupt, decode_page, flag, get_flag, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::sql::{Sql, Tx, TxError, is_unique_violation, sql_error, write_tx};

const COLUMNS: &str = "id, state, cluster_queue, submitted_by, idempotency_key, spec, attempt, preemptions, flavors, executor, handle, \
                       run_id, experiment_id, cancel_requested, last_end, not_before, version, created_at, updated_at, admitted_at, \
                       started_at, finished_at";
const CONFIG_COLUMNS: &str = "text, version, updated_by, updated_at";

/// How many times a create whose idempotency key was taken by a concurrent create is run again
/// (each run finds the other job, so one is enough; the rest are margin).
const IDEMPOTENT_RETRIES: u32 = 3;

fn not_found(id: i64) -> Error {
    Error::Jobs(JobsError::JobNotFound { id })
}

fn unsigned(row: &AnyRow, col: &str) -> Result<u32, sqlx::Error> {
    let v = get_i64(row, col)?;
    u32::try_from(v).map_err(|_| corrupt(col, &v.to_string()))
}

fn from_row(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let state = get_str(row, "state")?;
    let spec = get_str(row, "spec")?;
    let flavors = get_opt_str(row, "flavors")?;
    let last_end = get_opt_str(row, "last_end")?;
    Ok(Job {
        id: get_i64(row, "id")?,
        spec: decode_spec(&spec).ok_or_else(|| corrupt("job spec", &spec))?,
        state: JobState::parse(&state).map_err(|_| corrupt("job state", &state))?,
        cluster_queue: get_str(row, "cluster_queue")?,
        submitted_by: get_str(row, "submitted_by")?,
        idempotency_key: get_opt_str(row, "idempotency_key")?,
        attempt: unsigned(row, "attempt")?,
        preemptions: unsigned(row, "preemptions")?,
        flavors: flavors.map(|text| decode_flavors(&text).ok_or_else(|| corrupt("job flavors", &text))).transpose()?,
        executor: get_opt_str(row, "executor")?,
        handle: get_opt_str(row, "handle")?,
        run_id: get_opt_str(row, "run_id")?,
        experiment_id: get_opt_str(row, "experiment_id")?,
        cancel_requested: get_flag(row, "cancel_requested")?,
        last_end: last_end.map(|text| decode_end(&text).ok_or_else(|| corrupt("job last end", &text))).transpose()?,
        not_before: get_opt_i64(row, "not_before")?,
        version: get_i64(row, "version")?,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
        admitted_at: get_opt_i64(row, "admitted_at")?,
        started_at: get_opt_i64(row, "started_at")?,
        finished_at: get_opt_i64(row, "finished_at")?,
    })
}

/// The `spec` column: every field of the spec as a JSON object, exit causes by their text form.
fn encode_spec(spec: &JobSpec) -> String {
    let r = &spec.resources;
    let causes: Vec<&str> = spec.retry.on.iter().map(|c| c.as_str()).collect();
    json!({
        "name": spec.name,
        "command": spec.command,
        "code": spec.code,
        "env": spec.env,
        "resources": {
            "cpu_millis": r.cpu_millis,
            "memory_bytes": r.memory_bytes,
            "gpus": r.gpus,
            "gpu_flavor": r.gpu_flavor,
            "custom": r.custom,
        },
        "workers": spec.workers,
        "timeout_secs": spec.timeout_secs,
        "retry": {"max_retries": spec.retry.max_retries, "backoff_secs": spec.retry.backoff_secs, "on": causes},
        "priority": spec.priority,
        "queue": spec.queue,
        "experiment": spec.experiment,
        "tags": spec.tags,
    })
    .to_string()
}

/// The spec `encode_spec` wrote; `None` when the text is not one.
fn decode_spec(text: &str) -> Option<JobSpec> {
    let v: Value = serde_json::from_str(text).ok()?;
    let r = v.get("resources")?;
    let retry = v.get("retry")?;
    Some(JobSpec {
        name: optional(&v, "name", string)?,
        command: v.get("command")?.as_array()?.iter().map(string).collect::<Option<_>>()?,
        code: optional(&v, "code", string)?,
        env: string_map(v.get("env")?)?,
        resources: Resources {
            cpu_millis: r.get("cpu_millis")?.as_u64()?,
            memory_bytes: r.get("memory_bytes")?.as_u64()?,
            gpus: r.get("gpus")?.as_u64()?,
            gpu_flavor: optional(r, "gpu_flavor", string)?,
            custom: r.get("custom")?.as_object()?.iter().map(|(k, n)| Some((k.clone(), n.as_u64()?))).collect::<Option<_>>()?,
        },
        workers: number(v.get("workers")?)?,
        timeout_secs: optional(&v, "timeout_secs", Value::as_u64)?,
        retry: Retry {
            max_retries: number(retry.get("max_retries")?)?,
            backoff_secs: retry.get("backoff_secs")?.as_u64()?,
            on: retry.get("on")?.as_array()?.iter().map(|c| ExitCause::parse(c.as_str()?).ok()).collect::<Option<_>>()?,
        },
        priority: signed(v.get("priority")?)?,
        queue: string(v.get("queue")?)?,
        experiment: optional(&v, "experiment", string)?,
        tags: string_map(v.get("tags")?)?,
    })
}

/// The `flavors` column: a JSON object, resource to flavor.
fn encode_flavors(flavors: &FlavorAssignment) -> String {
    json!(flavors).to_string()
}

fn decode_flavors(text: &str) -> Option<FlavorAssignment> {
    string_map(&serde_json::from_str::<Value>(text).ok()?)
}

/// The `last_end` column: a JSON object, the cause by its text form.
fn encode_end(end: &AttemptEnd) -> String {
    json!({
        "cause": end.cause.as_str(),
        "message": end.message,
        "exit_code": end.exit_code,
        "signal": end.signal,
        "peak_memory_bytes": end.peak_memory_bytes,
    })
    .to_string()
}

fn decode_end(text: &str) -> Option<AttemptEnd> {
    let v: Value = serde_json::from_str(text).ok()?;
    Some(AttemptEnd {
        cause: ExitCause::parse(v.get("cause")?.as_str()?).ok()?,
        message: string(v.get("message")?)?,
        exit_code: optional(&v, "exit_code", signed)?,
        signal: optional(&v, "signal", signed)?,
        peak_memory_bytes: optional(&v, "peak_memory_bytes", Value::as_u64)?,
    })
}

/// An optional field: absent or `null` is `Some(None)`; a value `read` refuses is `None`.
fn optional<T>(v: &Value, key: &str, read: impl Fn(&Value) -> Option<T>) -> Option<Option<T>> {
    match v.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(value) => read(value).map(Some),
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn number<T: TryFrom<u64>>(v: &Value) -> Option<T> {
    T::try_from(v.as_u64()?).ok()
}

fn signed<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    T::try_from(v.as_i64()?).ok()
}

fn string_map(v: &Value) -> Option<BTreeMap<String, String>> {
    v.as_object()?.iter().map(|(k, value)| Some((k.clone(), string(value)?))).collect()
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

async fn find_by_key(conn: &mut AnyConnection, submitted_by: &str, key: &str) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE submitted_by = $1 AND idempotency_key = $2");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(submitted_by.to_owned()).bind(key.to_owned()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

fn stale(id: i64, stored: Option<i64>, expected: i64) -> TxError {
    let message = match stored {
        Some(version) => format!("Job {id} changed since it was read (version {version} now, {expected} expected); read it again"),
        None => format!("Job {id} does not exist (version {expected} expected)"),
    };
    Error::Conflict { message }.into()
}

/// Writes every mutable field of `update.job` when the stored version is still the expected one.
async fn write_update(tx: &mut Tx, update: &JobUpdate) -> Result<(), TxError> {
    let job = &update.job;
    let written = sqlx::query(
        "UPDATE jobs SET state = $1, attempt = $2, preemptions = $3, flavors = $4, executor = $5, handle = $6, run_id = $7, \
         experiment_id = $8, cancel_requested = $9, last_end = $10, not_before = $11, version = $12, updated_at = $13, \
         admitted_at = $14, started_at = $15, finished_at = $16 WHERE id = $17 AND version = $18",
    )
    .bind(job.state.as_str())
    .bind(i64::from(job.attempt))
    .bind(i64::from(job.preemptions))
    .bind(job.flavors.as_ref().map(encode_flavors))
    .bind(job.executor.clone())
    .bind(job.handle.clone())
    .bind(job.run_id.clone())
    .bind(job.experiment_id.clone())
    .bind(flag(job.cancel_requested))
    .bind(job.last_end.as_ref().map(encode_end))
    .bind(job.not_before)
    .bind(update.expected_version + 1)
    .bind(job.updated_at)
    .bind(job.admitted_at)
    .bind(job.started_at)
    .bind(job.finished_at)
    .bind(job.id)
    .bind(update.expected_version)
    .execute(&mut **tx)
    .await?;
    // The row is locked and its version checked: a miss here means the check was wrong, not a race.
    if written.rows_affected() != 1 {
        return Err(stale(job.id, None, update.expected_version));
    }
    Ok(())
}

#[async_trait]
impl JobStore for SqlStore {
    async fn create_job(&self, new: &NewJob, record: Record<'_, Job>) -> Result<(Job, bool)> {
        // The record is of a job created; a job answered again was recorded when it was created.
        let created_only = Record::many(|(job, created): &(Job, bool)| if *created { record.events(job) } else { Vec::new() });
        let mut retries = 0;
        loop {
            let res = write_tx!(self, &created_only, |tx| async {
                if let Some(key) = &new.idempotency_key
                    && let Some(existing) = find_by_key(tx, &new.submitted_by, key).await?
                {
                    return Ok((existing, false));
                }
                let inserted = sqlx::query(
                    "INSERT INTO jobs (state, local_queue, cluster_queue, submitted_by, idempotency_key, priority, spec, attempt, \
                     preemptions, cancel_requested, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 0, 0, 1, $8, $8) RETURNING id",
                )
                .bind(JobState::Queued.as_str())
                .bind(new.spec.queue.clone())
                .bind(new.cluster_queue.clone())
                .bind(new.submitted_by.clone())
                .bind(new.idempotency_key.clone())
                .bind(i64::from(new.spec.priority))
                .bind(encode_spec(&new.spec))
                .bind(new.now)
                .fetch_one(&mut **tx)
                .await;
                let id = match inserted {
                    Ok(row) => get_i64(&row, "id")?,
                    Err(e) => {
                        let e = TxError::from(e);
                        // A concurrent create with the same key committed first: the transaction
                        // is spoiled (PostgreSQL), so a fresh one reads that job.
                        if is_unique_violation(&e) && new.idempotency_key.is_some() {
                            return Err(Error::Conflict {
                                message: format!("A job with this idempotency key was created concurrently by {}", new.submitted_by),
                            }
                            .into());
                        }
                        return Err(e);
                    }
                };
                let job = load(tx, id).await?.ok_or_else(|| not_found(id))?;
                Ok::<_, TxError>((job, true))
            }
            .await);
            match res {
                Err(Error::Conflict { .. }) if new.idempotency_key.is_some() && retries < IDEMPOTENT_RETRIES => retries += 1,
                other => return other,
            }
        }
    }

    async fn get_job(&self, id: i64) -> Result<Job> {
        let mut conn = self.read_conn().await?;
        load(&mut conn, id).await.map_err(sql_error)?.ok_or_else(|| not_found(id))
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Rows<Job>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM jobs WHERE 1 = 1"));
        if let Some(queue) = &query.queue {
            sql.push(" AND local_queue = ").bind(queue);
        }
        if let Some(cluster_queue) = &query.cluster_queue {
            sql.push(" AND cluster_queue = ").bind(cluster_queue);
        }
        if !query.states.is_empty() {
            let states: Vec<&str> = query.states.iter().map(|s| s.as_str()).collect();
            sql.push(" AND state IN ").bind_list(&states);
        }
        if let Some(submitted_by) = &query.submitted_by {
            sql.push(" AND submitted_by = ").bind(submitted_by);
        }
        sql.push(" ORDER BY id DESC").push_page(&query.page);
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        decode_page(&rows, &query.page, from_row).map_err(sql_error)
    }

    async fn update_jobs(&self, updates: &[JobUpdate], record: Record<'_, [Job]>) -> Result<Vec<Job>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, &record, |tx| async {
            // Every row is locked, in ascending id order, before the first check.
            let mut ids: Vec<i64> = updates.iter().map(|u| u.job.id).collect();
            ids.sort_unstable();
            ids.dedup();
            let lock_sql = format!("SELECT version FROM jobs WHERE id = $1{}", self.for_update());
            let mut versions: HashMap<i64, i64> = HashMap::with_capacity(ids.len());
            for id in ids {
                let row = sqlx::query(AssertSqlSafe(lock_sql.clone())).bind(id).fetch_optional(&mut **tx).await?;
                if let Some(row) = row {
                    versions.insert(id, get_i64(&row, "version")?);
                }
            }
            // Applied in the order given: a job named twice is changed twice, the second update
            // expecting the version the first one wrote.
            let mut jobs = Vec::with_capacity(updates.len());
            for update in updates {
                let id = update.job.id;
                let stored = versions.get(&id).copied();
                if stored != Some(update.expected_version) {
                    return Err(stale(id, stored, update.expected_version));
                }
                write_update(tx, update).await?;
                versions.insert(id, update.expected_version + 1);
                jobs.push(load(tx, id).await?.ok_or_else(|| not_found(id))?);
            }
            Ok::<_, TxError>(jobs)
        }
        .await)
    }

    async fn active_jobs(&self) -> Result<Vec<Job>> {
        let active: Vec<&str> = JobState::ALL.iter().filter(|s| !s.is_terminal()).map(|s| s.as_str()).collect();
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM jobs WHERE state IN "));
        sql.bind_list(&active).push(" ORDER BY id");
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn queue_config(&self) -> Result<Option<QueueConfigRecord>> {
        let sql = format!("SELECT {CONFIG_COLUMNS} FROM job_queue_config WHERE id = 1");
        let mut conn = self.read_conn().await?;
        let row = sqlx::query(AssertSqlSafe(sql)).fetch_optional(&mut *conn).await.map_err(sql_error)?;
        let decode = |row: &AnyRow| -> Result<QueueConfigRecord, sqlx::Error> {
            Ok(QueueConfigRecord {
                text: get_str(row, "text")?,
                version: get_i64(row, "version")?,
                updated_by: get_str(row, "updated_by")?,
                updated_at: get_i64(row, "updated_at")?,
            })
        };
        row.as_ref().map(decode).transpose().map_err(sql_error)
    }

    async fn put_queue_config(
        &self,
        text: &str,
        expected_version: i64,
        updated_by: &str,
        now: i64,
        record: Record<'_, QueueConfigRecord>,
    ) -> Result<QueueConfigRecord> {
        let conflict = |stored: i64| -> TxError {
            Error::Conflict {
                message: format!(
                    "The queue configuration changed since it was read (version {stored} now, {expected_version} expected); read it again"
                ),
            }
            .into()
        };
        write_tx!(self, &record, |tx| async {
            let sql = format!("SELECT version FROM job_queue_config WHERE id = 1{}", self.for_update());
            let row = sqlx::query(AssertSqlSafe(sql)).fetch_optional(&mut **tx).await?;
            let stored = row.as_ref().map(|row| get_i64(row, "version")).transpose()?;
            if stored.unwrap_or(0) != expected_version {
                return Err(conflict(stored.unwrap_or(0)));
            }
            let next = QueueConfigRecord {
                text: text.to_owned(),
                version: expected_version + 1,
                updated_by: updated_by.to_owned(),
                updated_at: now,
            };
            let statement = if stored.is_some() {
                "UPDATE job_queue_config SET text = $1, version = $2, updated_by = $3, updated_at = $4 WHERE id = 1"
            } else {
                "INSERT INTO job_queue_config (id, text, version, updated_by, updated_at) VALUES (1, $1, $2, $3, $4)"
            };
            let written = sqlx::query(statement)
                .bind(next.text.clone())
                .bind(next.version)
                .bind(next.updated_by.clone())
                .bind(next.updated_at)
                .execute(&mut **tx)
                .await;
            if let Err(e) = written {
                let e = TxError::from(e);
                // A concurrent first apply committed first (PostgreSQL: no row to lock was there).
                if is_unique_violation(&e) {
                    return Err(conflict(1));
                }
                return Err(e);
            }
            Ok::<_, TxError>(next)
        }
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_spec() -> JobSpec {
        let mut spec = JobSpec::new("team-a", vec!["python".into(), "train.py".into(), "--lr=0.1 \"quoted\"".into()]);
        spec.name = Some("nightly ✓".into());
        spec.code = Some(format!("sha256:{}", "a".repeat(64)));
        spec.env.insert("SEED".into(), "1\n2".into());
        spec.resources = Resources {
            cpu_millis: 1500,
            memory_bytes: 8 << 30,
            gpus: 2,
            gpu_flavor: Some("gpu-a100".into()),
            custom: BTreeMap::from([("ray-tpu".into(), u64::MAX)]),
        };
        spec.workers = 4;
        spec.timeout_secs = Some(3600);
        spec.retry = Retry { max_retries: 3, backoff_secs: 30, on: vec![ExitCause::Lost, ExitCause::Failed] };
        spec.priority = -7;
        spec.experiment = Some("churn".into());
        spec.tags.insert("team".into(), "vision".into());
        spec
    }

    #[test]
    fn stored_json_round_trips() {
        for spec in [full_spec(), JobSpec::new("q", vec!["true".into()])] {
            assert_eq!(decode_spec(&encode_spec(&spec)), Some(spec));
        }
        let flavors = FlavorAssignment::from([("gpu".into(), "gpu-a100".into()), ("cpu".into(), "default".into())]);
        assert_eq!(decode_flavors(&encode_flavors(&flavors)), Some(flavors));
        for end in [
            AttemptEnd {
                cause: ExitCause::OutOfMemory,
                message: "oom".into(),
                exit_code: Some(-1),
                signal: Some(9),
                peak_memory_bytes: Some(u64::MAX),
            },
            AttemptEnd { cause: ExitCause::Lost, message: String::new(), exit_code: None, signal: None, peak_memory_bytes: None },
        ] {
            assert_eq!(decode_end(&encode_end(&end)), Some(end));
        }
    }

    #[test]
    fn malformed_stored_json_is_refused() {
        let spec: Value = serde_json::from_str(&encode_spec(&full_spec())).expect("json");
        let broken = |path: &[&str], value: Value| {
            let mut v = spec.clone();
            let mut at = &mut v;
            for key in &path[..path.len() - 1] {
                at = at.get_mut(*key).expect("path");
            }
            at[path[path.len() - 1]] = value;
            v.to_string()
        };
        for text in [
            "".to_owned(),
            "[]".to_owned(),
            broken(&["workers"], json!(-1)),
            broken(&["workers"], json!(u64::MAX)),
            broken(&["priority"], json!("high")),
            broken(&["command"], json!([1])),
            broken(&["retry", "on"], json!(["bored"])),
            broken(&["resources", "custom"], json!({"x": -1})),
            broken(&["name"], json!(5)),
        ] {
            assert_eq!(decode_spec(&text), None, "{text}");
        }
        assert_eq!(decode_flavors("{\"gpu\": 1}"), None);
        assert_eq!(decode_end("{\"cause\": \"nope\", \"message\": \"\"}"), None);
        assert_eq!(decode_end("{\"cause\": \"lost\"}"), None);
    }
}
