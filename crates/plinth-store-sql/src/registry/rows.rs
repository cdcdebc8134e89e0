//! Decoding registry rows, and loading the children of a page (tags, aliases, latest versions)
//! with one query per table and chunk, never one per row.
//!
//! The generic column getters and codecs are `crate::rows`.

use std::collections::HashMap;

use plinth_core::registry::{Alias, ModelVersion, ModelVersionStatus, RegisteredModel, Stage};
use plinth_core::tracking::KeyValue;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::Dialect;
use crate::sql::Sql;

/// Parents per child query: keeps every statement far below both databases' bind limits.
const CHUNK: usize = 500;

/// The stage of a deleted version: its number stays taken, the version is invisible.
pub(crate) const DELETED_STAGE: &str = "Deleted_Internal";

/// A live version's stage condition on the `mv` alias.
pub(crate) const LIVE: &str = "mv.current_stage <> 'Deleted_Internal'";

pub(crate) const VERSION_COLUMNS: &str = "mv.name, mv.version, mv.creation_time, mv.last_updated_time, mv.description, mv.user_id, \
     mv.current_stage, mv.source, mv.storage_location, mv.run_id, mv.run_link, mv.model_id, mv.status, mv.status_message";

pub(crate) const MODEL_COLUMNS: &str = "rm.name, rm.creation_time, rm.last_updated_time, rm.description";

use crate::rows::{corrupt, get_i64, get_opt_str, get_str, hex_of, unhex};

/// Runs `SELECT string_agg(<hex fields joined by ','>, ';' ORDER BY <order>) AS agg <from>` and splits
/// the result into rows of decoded fields: the rows cross the driver as one value.
async fn fetch_aggregated(
    conn: &mut AnyConnection,
    dialect: Dialect,
    fields: &[&str],
    order: &str,
    from: impl FnOnce(&mut Sql),
) -> Result<Vec<Vec<String>>, sqlx::Error> {
    let encoded = fields.iter().map(|f| hex_of(dialect, f)).collect::<Vec<_>>().join(" || ',' || ");
    let mut sql = Sql::new(&format!("SELECT string_agg({encoded}, ';' ORDER BY {order}) AS agg "));
    from(&mut sql);
    let row = sql.query(dialect).fetch_one(&mut *conn).await?;
    let agg: Option<String> = row.try_get("agg")?;
    let mut out = Vec::new();
    for item in agg.as_deref().unwrap_or("").split(';').filter(|it| !it.is_empty()) {
        let decoded: Option<Vec<String>> = item.split(',').map(unhex).collect();
        match decoded {
            Some(values) if values.len() == fields.len() => out.push(values),
            _ => return Err(sqlx::Error::Protocol("malformed aggregated child rows".to_owned())),
        }
    }
    Ok(out)
}

pub(crate) fn stage_from_str(s: &str) -> Result<Stage, sqlx::Error> {
    Stage::parse(s).ok_or_else(|| corrupt("stage", s))
}

pub(crate) fn version_from_row(row: &AnyRow) -> Result<ModelVersion, sqlx::Error> {
    let status = get_str(row, "status")?;
    Ok(ModelVersion {
        name: get_str(row, "name")?,
        version: get_i64(row, "version")?,
        creation_timestamp: get_i64(row, "creation_time")?,
        last_updated_timestamp: get_i64(row, "last_updated_time")?,
        user_id: get_opt_str(row, "user_id")?,
        current_stage: stage_from_str(&get_str(row, "current_stage")?)?,
        description: get_opt_str(row, "description")?,
        source: get_str(row, "source")?,
        storage_location: get_str(row, "storage_location")?,
        run_id: get_opt_str(row, "run_id")?,
        run_link: get_opt_str(row, "run_link")?,
        model_id: get_opt_str(row, "model_id")?,
        status: ModelVersionStatus::parse(&status).ok_or_else(|| corrupt("version status", &status))?,
        status_message: get_opt_str(row, "status_message")?,
        tags: Vec::new(),
        aliases: Vec::new(),
    })
}

pub(crate) fn model_from_row(row: &AnyRow) -> Result<RegisteredModel, sqlx::Error> {
    Ok(RegisteredModel {
        name: get_str(row, "name")?,
        creation_timestamp: get_i64(row, "creation_time")?,
        last_updated_timestamp: get_i64(row, "last_updated_time")?,
        description: get_opt_str(row, "description")?,
        tags: Vec::new(),
        aliases: Vec::new(),
        latest_versions: Vec::new(),
    })
}

fn distinct_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = names.collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The aliases of many models, each model's sorted by alias.
async fn load_aliases(conn: &mut AnyConnection, dialect: Dialect, names: &[&str]) -> Result<HashMap<String, Vec<Alias>>, sqlx::Error> {
    let mut res: HashMap<String, Vec<Alias>> = HashMap::new();
    for chunk in names.chunks(CHUNK) {
        let mut sql = Sql::new("SELECT name, alias, version FROM registered_model_aliases WHERE name IN ");
        sql.bind_list(chunk).push(" ORDER BY name, alias");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            res.entry(get_str(&row, "name")?)
                .or_default()
                .push(Alias { alias: get_str(&row, "alias")?, version: get_i64(&row, "version")? });
        }
    }
    Ok(res)
}

/// The tags of many versions, each version's sorted by key.
async fn load_version_tags(
    conn: &mut AnyConnection,
    dialect: Dialect,
    keys: &[(&str, i64)],
) -> Result<HashMap<(String, i64), Vec<KeyValue>>, sqlx::Error> {
    let mut res: HashMap<(String, i64), Vec<KeyValue>> = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        // A join with the page's (name, version) pairs walks the tag table's primary key per pair.
        let from = |sql: &mut Sql| {
            sql.push("FROM model_version_tags t JOIN (VALUES ");
            for (idx, (name, version)) in chunk.iter().enumerate() {
                if idx > 0 {
                    sql.push(", ");
                }
                sql.push("(").bind(*name).push(", ").bind(*version).push(")");
            }
            sql.push(") p ON t.name = p.column1 AND t.version = p.column2");
        };
        let rows = fetch_aggregated(conn, dialect, &["t.name", "t.version", "t.key", "t.value"], "t.name, t.version, t.key", from).await?;
        for mut fields in rows {
            let value = fields.pop().unwrap_or_default();
            let key = fields.pop().unwrap_or_default();
            let version = fields.pop().unwrap_or_default();
            let name = fields.pop().unwrap_or_default();
            let version: i64 = version.parse().map_err(|_| corrupt("tag version", &version))?;
            res.entry((name, version)).or_default().push(KeyValue { key, value });
        }
    }
    Ok(res)
}

/// The tags of many registered models, each model's sorted by key.
async fn load_model_tags(
    conn: &mut AnyConnection,
    dialect: Dialect,
    names: &[&str],
) -> Result<HashMap<String, Vec<KeyValue>>, sqlx::Error> {
    let mut res: HashMap<String, Vec<KeyValue>> = HashMap::new();
    for chunk in names.chunks(CHUNK) {
        let from = |sql: &mut Sql| {
            sql.push("FROM registered_model_tags WHERE name IN ").bind_list(chunk);
        };
        for mut fields in fetch_aggregated(conn, dialect, &["name", "key", "value"], "name, key", from).await? {
            let value = fields.pop().unwrap_or_default();
            let key = fields.pop().unwrap_or_default();
            let name = fields.pop().unwrap_or_default();
            res.entry(name).or_default().push(KeyValue { key, value });
        }
    }
    Ok(res)
}

fn attach_version_children(
    versions: &mut [ModelVersion],
    aliases: &HashMap<String, Vec<Alias>>,
    tags: &mut HashMap<(String, i64), Vec<KeyValue>>,
) {
    for v in versions {
        v.tags = tags.remove(&(v.name.clone(), v.version)).unwrap_or_default();
        v.aliases = aliases
            .get(&v.name)
            .map(|all| all.iter().filter(|a| a.version == v.version).map(|a| a.alias.clone()).collect())
            .unwrap_or_default();
    }
}

/// Fills in the tags and aliases of versions.
pub(crate) async fn hydrate_versions(
    conn: &mut AnyConnection,
    dialect: Dialect,
    mut versions: Vec<ModelVersion>,
) -> Result<Vec<ModelVersion>, sqlx::Error> {
    if versions.is_empty() {
        return Ok(versions);
    }
    let names = distinct_names(versions.iter().map(|v| v.name.as_str()));
    let aliases = load_aliases(conn, dialect, &names).await?;
    let keys: Vec<(&str, i64)> = versions.iter().map(|v| (v.name.as_str(), v.version)).collect();
    let mut tags = load_version_tags(conn, dialect, &keys).await?;
    attach_version_children(&mut versions, &aliases, &mut tags);
    Ok(versions)
}

fn stage_rank(stage: Stage) -> usize {
    Stage::ALL.iter().position(|s| *s == stage).unwrap_or(Stage::ALL.len())
}

/// Fills in the tags, aliases and latest version per stage of registered models.
pub(crate) async fn hydrate_models(
    conn: &mut AnyConnection,
    dialect: Dialect,
    mut models: Vec<RegisteredModel>,
) -> Result<Vec<RegisteredModel>, sqlx::Error> {
    if models.is_empty() {
        return Ok(models);
    }
    let names = distinct_names(models.iter().map(|m| m.name.as_str()));
    let mut tags = load_model_tags(conn, dialect, &names).await?;
    let aliases = load_aliases(conn, dialect, &names).await?;
    let mut latest: Vec<ModelVersion> = Vec::new();
    for chunk in names.chunks(CHUNK) {
        // The (name, current_stage, version) index answers the grouping per model without a sort.
        let mut sql = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM (SELECT name, current_stage, MAX(version) AS version FROM model_versions \
             WHERE current_stage <> 'Deleted_Internal' AND name IN "
        ));
        sql.bind_list(chunk).push(" GROUP BY name, current_stage) l JOIN model_versions mv ON mv.name = l.name AND mv.version = l.version");
        for row in sql.query(dialect).fetch_all(&mut *conn).await? {
            latest.push(version_from_row(&row)?);
        }
    }
    let keys: Vec<(&str, i64)> = latest.iter().map(|v| (v.name.as_str(), v.version)).collect();
    let mut version_tags = load_version_tags(conn, dialect, &keys).await?;
    attach_version_children(&mut latest, &aliases, &mut version_tags);
    latest.sort_by(|a, b| (&a.name, stage_rank(a.current_stage)).cmp(&(&b.name, stage_rank(b.current_stage))));
    let mut latest_by_model: HashMap<String, Vec<ModelVersion>> = HashMap::new();
    for v in latest {
        latest_by_model.entry(v.name.clone()).or_default().push(v);
    }
    for m in &mut models {
        m.tags = tags.remove(&m.name).unwrap_or_default();
        m.aliases = aliases.get(&m.name).cloned().unwrap_or_default();
        m.latest_versions = latest_by_model.remove(&m.name).unwrap_or_default();
    }
    Ok(models)
}
