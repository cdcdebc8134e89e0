//! `SweepStore` on SQL: a sweep row with its state and times as columns and its spec as text; a
//! trial row per (sweep, index) with its parameters as a JSON array of `[name, value]` pairs. A
//! sweep's change locks its row first (`FOR UPDATE` on PostgreSQL; SQLite's single writer
//! serializes), so the version compare-and-set cannot interleave; a trial's write holds its sweep's
//! row shared, so the sweep cannot go away under it.

use async_trait::async_trait;
use plinth_core::sweeps::{Sweep, SweepState, Trial, TrialState};
use plinth_store::audit::Record;
use plinth_store::sweeps::{NewSweep, SweepStore};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{Error, Result, SweepsError};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::SqlStore;
use crate::rows::{corrupt, decode_page, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::sql::{Sql, TxError, sql_error, write_tx};

const COLUMNS: &str = "id, name, spec, state, parent_run_id, experiment_id, best_trial, message, created_by, version, created_at, \
                       updated_at, finished_at";
const TRIAL_COLUMNS: &str = "sweep_id, trial_index, params, job_id, state, objective, step, stopped_at_step, updated_at";

fn not_found(id: i64) -> Error {
    Error::Sweeps(SweepsError::SweepNotFound { id })
}

/// A stored integer that must fit a `u32` (a trial's index, the best trial).
fn index(row: &AnyRow, col: &str) -> Result<Option<u32>, sqlx::Error> {
    get_opt_i64(row, col)?.map(|v| u32::try_from(v).map_err(|_| corrupt(col, &v.to_string()))).transpose()
}

fn from_row(row: &AnyRow) -> Result<Sweep, sqlx::Error> {
    let state = get_str(row, "state")?;
    Ok(Sweep {
        id: get_i64(row, "id")?,
        name: get_str(row, "name")?,
        spec: get_str(row, "spec")?,
        state: SweepState::parse(&state).map_err(|_| corrupt("sweep state", &state))?,
        parent_run_id: get_opt_str(row, "parent_run_id")?,
        experiment_id: get_opt_str(row, "experiment_id")?,
        best_trial: index(row, "best_trial")?,
        message: get_opt_str(row, "message")?,
        created_by: get_str(row, "created_by")?,
        version: get_i64(row, "version")?,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
        finished_at: get_opt_i64(row, "finished_at")?,
    })
}

/// The `params` column: a JSON array of `[name, value]` pairs, in the trial's order.
fn encode_params(params: &[(String, String)]) -> String {
    Value::Array(params.iter().map(|(name, value)| Value::Array(vec![Value::from(name.as_str()), Value::from(value.as_str())])).collect())
        .to_string()
}

/// The parameters `encode_params` wrote; `None` when the text is not such an array.
fn decode_params(text: &str) -> Option<Vec<(String, String)>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(name), Value::String(value)] => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn trial_from_row(row: &AnyRow) -> Result<Trial, sqlx::Error> {
    let params = get_str(row, "params")?;
    let state = get_str(row, "state")?;
    Ok(Trial {
        sweep_id: get_i64(row, "sweep_id")?,
        index: index(row, "trial_index")?.ok_or_else(|| corrupt("trial_index", "NULL"))?,
        params: decode_params(&params).ok_or_else(|| corrupt("trial params", &params))?,
        job_id: get_i64(row, "job_id")?,
        state: TrialState::parse(&state).map_err(|_| corrupt("trial state", &state))?,
        objective: row.try_get::<Option<f64>, _>("objective")?,
        step: get_opt_i64(row, "step")?,
        stopped_at_step: get_opt_i64(row, "stopped_at_step")?,
        updated_at: get_i64(row, "updated_at")?,
    })
}

/// The sweep `id`, its row locked as `lock` says (`""`, `for_share()` or `for_update()`).
async fn load(conn: &mut AnyConnection, id: i64, lock: &str) -> Result<Option<Sweep>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM sweeps WHERE id = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

fn stale(id: i64, stored: i64, expected: i64) -> TxError {
    Error::Conflict { message: format!("Sweep {id} changed since it was read (version {stored} now, {expected} expected); read it again") }
        .into()
}

#[async_trait]
impl SweepStore for SqlStore {
    async fn create_sweep(&self, new: &NewSweep, record: Record<'_, Sweep>) -> Result<Sweep> {
        write_tx!(self, &record, |tx| async {
            let row = sqlx::query(
                "INSERT INTO sweeps (name, spec, state, created_by, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING id",
            )
            .bind(new.name.clone())
            .bind(new.spec.clone())
            .bind(SweepState::Running.as_str())
            .bind(new.created_by.clone())
            .bind(new.now)
            .fetch_one(&mut **tx)
            .await?;
            let id = get_i64(&row, "id")?;
            Ok::<_, TxError>(load(tx, id, "").await?.ok_or_else(|| not_found(id))?)
        }
        .await)
    }

    async fn get_sweep(&self, id: i64) -> Result<Sweep> {
        let mut conn = self.read_conn().await?;
        load(&mut conn, id, "").await.map_err(sql_error)?.ok_or_else(|| not_found(id))
    }

    async fn list_sweeps(&self, page: PageRequest) -> Result<Rows<Sweep>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM sweeps ORDER BY id DESC"));
        sql.push_page(&page);
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        decode_page(&rows, &page, from_row).map_err(sql_error)
    }

    async fn update_sweep(&self, sweep: &Sweep, expected_version: i64, record: Record<'_, Sweep>) -> Result<Sweep> {
        write_tx!(self, &record, |tx| async {
            let current = load(tx, sweep.id, self.for_update()).await?.ok_or_else(|| not_found(sweep.id))?;
            if current.version != expected_version {
                return Err(stale(sweep.id, current.version, expected_version));
            }
            // Name, spec, creator and creation time are not written: they never change.
            let written = sqlx::query(
                "UPDATE sweeps SET state = $1, parent_run_id = $2, experiment_id = $3, best_trial = $4, message = $5, \
                 updated_at = $6, finished_at = $7, version = $8 WHERE id = $9 AND version = $10",
            )
            .bind(sweep.state.as_str())
            .bind(sweep.parent_run_id.clone())
            .bind(sweep.experiment_id.clone())
            .bind(sweep.best_trial.map(i64::from))
            .bind(sweep.message.clone())
            .bind(sweep.updated_at)
            .bind(sweep.finished_at)
            .bind(expected_version + 1)
            .bind(sweep.id)
            .bind(expected_version)
            .execute(&mut **tx)
            .await?;
            // The row is locked and its version checked: a miss here means the check was wrong, not a race.
            if written.rows_affected() != 1 {
                return Err(stale(sweep.id, current.version, expected_version));
            }
            Ok::<_, TxError>(load(tx, sweep.id, "").await?.ok_or_else(|| not_found(sweep.id))?)
        }
        .await)
    }

    async fn active_sweeps(&self) -> Result<Vec<Sweep>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM sweeps WHERE state = "));
        sql.bind(SweepState::Running.as_str()).push(" ORDER BY id");
        let mut conn = self.read_conn().await?;
        let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn put_trial(&self, trial: &Trial) -> Result<()> {
        write_tx!(self, |tx| async {
            // The sweep is held for the transaction: an unknown one is named, not a foreign-key failure.
            load(tx, trial.sweep_id, self.for_share()).await?.ok_or_else(|| not_found(trial.sweep_id))?;
            let mut sql = Sql::new(
                "INSERT INTO sweep_trials (sweep_id, trial_index, params, job_id, state, step, stopped_at_step, updated_at, objective) \
                 VALUES (",
            );
            sql.bind(trial.sweep_id).push(", ").bind(i64::from(trial.index)).push(", ").bind(encode_params(&trial.params)).push(", ");
            sql.bind(trial.job_id).push(", ").bind(trial.state.as_str()).push(", ").bind(trial.step).push(", ");
            sql.bind(trial.stopped_at_step).push(", ").bind(trial.updated_at);
            // A NULL of a floating-point type does not survive the driver-neutral binding on PostgreSQL: written as a literal.
            // A value that is not a number is no value: SQLite stores NaN as NULL, and PostgreSQL is made to agree.
            match trial.objective.filter(|value| !value.is_nan()) {
                Some(value) => sql.push(", ").bind(value).push(")"),
                None => sql.push(", NULL)"),
            };
            sql.push(
                " ON CONFLICT (sweep_id, trial_index) DO UPDATE SET params = excluded.params, job_id = excluded.job_id, \
                 state = excluded.state, step = excluded.step, stopped_at_step = excluded.stopped_at_step, \
                 updated_at = excluded.updated_at, objective = excluded.objective",
            );
            sql.query(self.dialect).execute(&mut **tx).await?;
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn trials(&self, sweep_id: i64) -> Result<Vec<Trial>> {
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM sweep_trials WHERE sweep_id = $1 ORDER BY trial_index");
        let mut conn = self.read_conn().await?;
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(sweep_id).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(trial_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_params, encode_params};

    #[test]
    fn params_round_trip_in_order() {
        let params: Vec<(String, String)> = [
            ("lr", "0.001"),
            ("name", "it's \"quoted\" ü ✓"),
            ("", ""),
            ("path", "C:\\tmp\\x;y,z"),
            ("json", "[[\"a\", \"b\"]]"),
            ("lines", "one\ntwo\u{0}three"),
            ("a", "repeated"),
            ("a", "again"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        assert_eq!(decode_params(&encode_params(&params)), Some(params));
        assert_eq!(decode_params(&encode_params(&[])), Some(Vec::new()));
    }

    #[test]
    fn malformed_params_are_refused() {
        for text in [
            "",
            "null",
            "{}",
            "[\"ab\"]",
            "[[\"a\"]]",
            "[[\"a\", 1]]",
            "[[1, \"a\"]]",
            "[[\"a\", \"b\", \"c\"]]",
            "[[\"a\", null]]",
            "[[\"a\", \"b\"]",
            "[{\"a\": \"b\"}]",
        ] {
            assert_eq!(decode_params(text), None, "{text}");
        }
    }
}
