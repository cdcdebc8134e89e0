//! `DeploymentStore` on SQL: a deployment row with its options, and its variants as rows in
//! declaration order. Writes lock the deployment's row first (`FOR UPDATE` on PostgreSQL; SQLite's
//! single writer serializes them), so the generation compare-and-set cannot interleave.

use async_trait::async_trait;
use plinth_core::serving::{
    Batching, Deployment, DeploymentSpec, FeatureDefault, ModelRef, ModelTarget, Objective, Rollback, Runtime, Variant,
};
use plinth_store::audit::Record;
use plinth_store::serving::{DeploymentStore, NewDeployment};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{Error, Result, ServingError};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::SqlStore;
use crate::rows::{corrupt, decode_page, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::sql::{Sql, Tx, TxError, is_unique_violation, sql_error, write_tx};

const COLUMNS: &str = "name, description, runtime, max_batch_size, preferred_batch_sizes, max_queue_delay_us, max_queue_size, \
                       timeout_ms, instances, threads, feature_service, policies, generation, created_by, created_at, updated_at";
const VARIANT_COLUMNS: &str = "deployment, position, name, model_name, model_alias, model_version, weight, shadow_fraction";

fn not_found(name: &str) -> Error {
    Error::Serving(ServingError::DeploymentNotFound { name: name.to_owned() })
}

fn unsigned(row: &AnyRow, col: &str) -> Result<u32, sqlx::Error> {
    let v = get_i64(row, col)?;
    u32::try_from(v).map_err(|_| corrupt(col, &v.to_string()))
}

/// A deployment row, its variants still to be added.
fn from_row(row: &AnyRow) -> Result<Deployment, sqlx::Error> {
    let runtime = get_str(row, "runtime")?;
    let preferred = get_str(row, "preferred_batch_sizes")?;
    let timeout = get_opt_i64(row, "timeout_ms")?;
    let policies = get_opt_str(row, "policies")?;
    let mut deployment = Deployment {
        name: get_str(row, "name")?,
        spec: DeploymentSpec {
            description: get_opt_str(row, "description")?,
            variants: Vec::new(),
            runtime: Runtime::parse(&runtime).map_err(|_| corrupt("deployment runtime", &runtime))?,
            batching: Batching {
                max_batch_size: unsigned(row, "max_batch_size")?,
                preferred_batch_sizes: serde_json::from_str(&preferred).map_err(|_| corrupt("preferred_batch_sizes", &preferred))?,
                max_queue_delay_micros: u64::try_from(get_i64(row, "max_queue_delay_us")?)
                    .map_err(|_| corrupt("max_queue_delay_us", "negative"))?,
                max_queue_size: unsigned(row, "max_queue_size")?,
                timeout_millis: timeout.map(|t| u64::try_from(t).map_err(|_| corrupt("timeout_ms", &t.to_string()))).transpose()?,
            },
            instances: unsigned(row, "instances")?,
            threads: unsigned(row, "threads")?,
            feature_service: get_opt_str(row, "feature_service")?,
            rollback: None,
            log_inputs: None,
            feature_defaults: Vec::new(),
            objective: None,
        },
        generation: get_i64(row, "generation")?,
        created_by: get_str(row, "created_by")?,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
    };
    if let Some(text) = policies {
        decode_policies(&text, &mut deployment.spec).map_err(|_| corrupt("deployment policies", &text))?;
    }
    Ok(deployment)
}

/// The `policies` column: a JSON object, `{"rollback": {...}, "log_inputs": 0.1, "feature_defaults":
/// [["f", 0.0]]}`; `None` when the spec has none.
fn encode_policies(spec: &DeploymentSpec) -> Option<String> {
    let mut out = serde_json::Map::new();
    if let Some(r) = &spec.rollback {
        out.insert(
            "rollback".into(),
            json!({"max_error_rate": r.max_error_rate, "max_p99_ms": r.max_p99_ms, "window_secs": r.window_secs, "min_requests": r.min_requests}),
        );
    }
    if let Some(f) = spec.log_inputs {
        out.insert("log_inputs".into(), json!(f));
    }
    if let Some(o) = &spec.objective {
        out.insert(
            "objective".into(),
            json!({"latency_ms": o.latency_ms, "latency_percentile": o.latency_percentile, "availability": o.availability, "window_secs": o.window_secs}),
        );
    }
    if !spec.feature_defaults.is_empty() {
        // A list, not an object: the declared order is kept.
        let list: Vec<Value> = spec.feature_defaults.iter().map(|d| json!([d.feature, d.value])).collect();
        out.insert("feature_defaults".into(), Value::Array(list));
    }
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

fn decode_policies(text: &str, spec: &mut DeploymentSpec) -> Result<(), ()> {
    let value: Value = serde_json::from_str(text).map_err(|_| ())?;
    spec.log_inputs = value.get("log_inputs").and_then(Value::as_f64);
    if let Some(o) = value.get("objective") {
        spec.objective = Some(Objective {
            latency_ms: o.get("latency_ms").and_then(Value::as_f64),
            latency_percentile: o.get("latency_percentile").and_then(Value::as_f64).ok_or(())?,
            availability: o.get("availability").and_then(Value::as_f64),
            window_secs: o.get("window_secs").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).ok_or(())?,
        });
    }
    if let Some(list) = value.get("feature_defaults").and_then(Value::as_array) {
        spec.feature_defaults = list
            .iter()
            .map(|pair| match (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_f64)) {
                (Some(feature), Some(value)) => Ok(FeatureDefault { feature: feature.to_owned(), value }),
                _ => Err(()),
            })
            .collect::<Result<_, ()>>()?;
    }
    if let Some(r) = value.get("rollback") {
        let count = |key: &str| r.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).ok_or(());
        spec.rollback = Some(Rollback {
            max_error_rate: r.get("max_error_rate").and_then(Value::as_f64),
            max_p99_ms: r.get("max_p99_ms").and_then(Value::as_f64),
            window_secs: count("window_secs")?,
            min_requests: count("min_requests")?,
        });
    }
    Ok(())
}

fn variant_from_row(row: &AnyRow) -> Result<(String, Variant), sqlx::Error> {
    let name = get_str(row, "model_name")?;
    let target = match (get_opt_str(row, "model_alias")?, get_opt_i64(row, "model_version")?) {
        (Some(alias), None) => ModelTarget::Alias(alias),
        (None, Some(version)) => ModelTarget::Version(version),
        _ => return Err(corrupt("deployment variant target", &name)),
    };
    let variant = Variant {
        name: get_str(row, "name")?,
        model: ModelRef { name, target },
        weight: unsigned(row, "weight")?,
        shadow: row.try_get::<Option<f64>, _>("shadow_fraction")?,
    };
    Ok((get_str(row, "deployment")?, variant))
}

/// Fills in the variants of `deployments`, in their declared order.
async fn with_variants(
    conn: &mut AnyConnection,
    dialect: crate::Dialect,
    mut deployments: Vec<Deployment>,
) -> Result<Vec<Deployment>, sqlx::Error> {
    if deployments.is_empty() {
        return Ok(deployments);
    }
    let names: Vec<String> = deployments.iter().map(|d| d.name.clone()).collect();
    let mut sql = Sql::new(&format!("SELECT {VARIANT_COLUMNS} FROM deployment_variants WHERE deployment IN "));
    sql.bind_list(&names).push(" ORDER BY deployment, position");
    let rows = sql.query(dialect).fetch_all(&mut *conn).await?;
    for row in &rows {
        let (deployment, variant) = variant_from_row(row)?;
        if let Some(d) = deployments.iter_mut().find(|d| d.name == deployment) {
            d.spec.variants.push(variant);
        }
    }
    Ok(deployments)
}

async fn load(conn: &mut AnyConnection, dialect: crate::Dialect, name: &str, lock: &str) -> Result<Deployment, TxError> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE name = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(name.to_owned()).fetch_optional(&mut *conn).await?.ok_or_else(|| not_found(name))?;
    let deployment = from_row(&row)?;
    let mut loaded = with_variants(conn, dialect, vec![deployment]).await?;
    Ok(loaded.pop().ok_or_else(|| not_found(name))?)
}

/// Whether every deployment read still has the generation it was read at. A deployment's row and
/// its variants are read by two statements outside a transaction; a change committed between them
/// bumps the generation, so an unchanged generation proves the variants belong to the row.
async fn unchanged(conn: &mut AnyConnection, dialect: crate::Dialect, read: &[Deployment]) -> Result<bool, sqlx::Error> {
    if read.is_empty() {
        return Ok(true);
    }
    let names: Vec<String> = read.iter().map(|d| d.name.clone()).collect();
    let mut sql = Sql::new("SELECT name, generation FROM deployments WHERE name IN ");
    sql.bind_list(&names);
    let rows = sql.query(dialect).fetch_all(&mut *conn).await?;
    let mut now = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        now.insert(get_str(row, "name")?, get_i64(row, "generation")?);
    }
    Ok(read.iter().all(|d| now.get(&d.name) == Some(&d.generation)))
}

/// How many times a read torn by concurrent changes is tried again before it is answered as it is.
const READ_ATTEMPTS: usize = 5;

/// Writes the spec's options onto the row and replaces its variants.
async fn write_spec(tx: &mut Tx, dialect: crate::Dialect, name: &str, spec: &DeploymentSpec) -> Result<(), TxError> {
    let b = &spec.batching;
    let preferred = serde_json::to_string(&b.preferred_batch_sizes).map_err(Error::internal)?;
    sqlx::query(
        "UPDATE deployments SET description = $1, runtime = $2, max_batch_size = $3, preferred_batch_sizes = $4, \
         max_queue_delay_us = $5, max_queue_size = $6, timeout_ms = $7, instances = $8, threads = $9, feature_service = $10, \
         policies = $11 WHERE name = $12",
    )
    .bind(spec.description.clone())
    .bind(spec.runtime.as_str())
    .bind(i64::from(b.max_batch_size))
    .bind(preferred)
    .bind(i64::try_from(b.max_queue_delay_micros).map_err(Error::internal)?)
    .bind(i64::from(b.max_queue_size))
    .bind(b.timeout_millis.map(i64::try_from).transpose().map_err(Error::internal)?)
    .bind(i64::from(spec.instances))
    .bind(i64::from(spec.threads))
    .bind(spec.feature_service.clone())
    .bind(encode_policies(spec))
    .bind(name.to_owned())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM deployment_variants WHERE deployment = $1").bind(name.to_owned()).execute(&mut **tx).await?;
    for (position, v) in spec.variants.iter().enumerate() {
        let (alias, version) = match &v.model.target {
            ModelTarget::Alias(alias) => (Some(alias.clone()), None),
            ModelTarget::Version(version) => (None, Some(*version)),
        };
        let mut sql = Sql::new(
            "INSERT INTO deployment_variants (deployment, position, name, model_name, model_alias, model_version, weight, shadow_fraction) VALUES (",
        );
        sql.bind(name).push(", ").bind(i64::try_from(position).map_err(Error::internal)?).push(", ").bind(&v.name).push(", ");
        sql.bind(&v.model.name).push(", ").bind(alias.as_deref()).push(", ").bind(version).push(", ").bind(i64::from(v.weight));
        // A NULL of a floating-point type does not survive the driver-neutral binding on PostgreSQL: written as a literal.
        match v.shadow {
            Some(fraction) => sql.push(", ").bind(fraction).push(")"),
            None => sql.push(", NULL)"),
        };
        sql.query(dialect).execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl DeploymentStore for SqlStore {
    async fn create_deployment(&self, new: &NewDeployment, record: Record<'_, Deployment>) -> Result<Deployment> {
        write_tx!(self, &record, |tx| async {
            let inserted = sqlx::query(
                "INSERT INTO deployments (name, runtime, max_batch_size, preferred_batch_sizes, max_queue_delay_us, max_queue_size, \
                 instances, threads, generation, created_by, created_at, updated_at) VALUES ($1, '', 0, '[]', 0, 0, 0, 0, 1, $2, $3, $3)",
            )
            .bind(new.name.clone())
            .bind(new.created_by.clone())
            .bind(new.now)
            .execute(&mut **tx)
            .await;
            if let Err(e) = inserted {
                let e = TxError::from(e);
                if is_unique_violation(&e) {
                    return Err(Error::Serving(ServingError::DeploymentExists { name: new.name.clone() }).into());
                }
                return Err(e);
            }
            write_spec(tx, self.dialect, &new.name, &new.spec).await?;
            load(tx, self.dialect, &new.name, "").await
        }
        .await)
    }

    async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        let mut conn = self.read_conn().await?;
        let mut attempt = 1;
        loop {
            let deployment = load(&mut conn, self.dialect, name, "").await.map_err(TxError::into_store)?;
            if attempt == READ_ATTEMPTS || unchanged(&mut conn, self.dialect, std::slice::from_ref(&deployment)).await.map_err(sql_error)? {
                return Ok(deployment);
            }
            attempt += 1;
        }
    }

    async fn list_deployments(&self, page: PageRequest) -> Result<Rows<Deployment>> {
        let mut conn = self.read_conn().await?;
        let mut attempt = 1;
        loop {
            let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM deployments ORDER BY name"));
            sql.push_page(&page);
            let rows = sql.query(self.dialect).fetch_all(&mut *conn).await.map_err(sql_error)?;
            let read = decode_page(&rows, &page, from_row).map_err(sql_error)?;
            let items = with_variants(&mut conn, self.dialect, read.items).await.map_err(sql_error)?;
            if attempt == READ_ATTEMPTS || unchanged(&mut conn, self.dialect, &items).await.map_err(sql_error)? {
                return Ok(Rows { items, has_more: read.has_more });
            }
            attempt += 1;
        }
    }

    async fn update_deployment(
        &self,
        name: &str,
        expected_generation: i64,
        spec: &DeploymentSpec,
        now: i64,
        record: Record<'_, Deployment>,
    ) -> Result<Deployment> {
        write_tx!(self, &record, |tx| async {
            let current = load(tx, self.dialect, name, self.for_update()).await?;
            if current.generation != expected_generation {
                return Err(Error::Conflict {
                    message: format!(
                        "Deployment '{name}' changed since it was read (generation {} now, {expected_generation} expected); read it again",
                        current.generation
                    ),
                }
                .into());
            }
            write_spec(tx, self.dialect, name, spec).await?;
            sqlx::query("UPDATE deployments SET generation = generation + 1, updated_at = $1 WHERE name = $2")
                .bind(now)
                .bind(name.to_owned())
                .execute(&mut **tx)
                .await?;
            load(tx, self.dialect, name, "").await
        }
        .await)
    }

    async fn delete_deployment(&self, name: &str, record: Record<'_, Deployment>) -> Result<Deployment> {
        write_tx!(self, &record, |tx| async {
            let current = load(tx, self.dialect, name, self.for_update()).await?;
            // Its variants go with it through ON DELETE CASCADE.
            sqlx::query("DELETE FROM deployments WHERE name = $1").bind(name.to_owned()).execute(&mut **tx).await?;
            Ok::<_, TxError>(current)
        }
        .await)
    }

    async fn deployments_of_model(&self, model: &str) -> Result<Vec<Deployment>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM deployments WHERE name IN (SELECT deployment FROM deployment_variants WHERE model_name = $1) ORDER BY name"
        );
        let mut conn = self.read_conn().await?;
        let mut attempt = 1;
        loop {
            let rows = sqlx::query(AssertSqlSafe(sql.clone())).bind(model.to_owned()).fetch_all(&mut *conn).await.map_err(sql_error)?;
            let deployments = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
            let items = with_variants(&mut conn, self.dialect, deployments).await.map_err(sql_error)?;
            if attempt == READ_ATTEMPTS || unchanged(&mut conn, self.dialect, &items).await.map_err(sql_error)? {
                return Ok(items);
            }
            attempt += 1;
        }
    }
}
