//! Feast's feature-server routes at the root, so Feast clients and HTTP callers written for
//! `feast serve` work unchanged: `POST /get-online-features` (column-oriented answer, join keys
//! first, then the features in the order asked), `POST /push`, and `POST /write-to-online-store`
//! (what Feast's SDK sends when its online store is `type: remote`, e.g. on `materialize` or `push`).

use axum::Json;
use axum::extract::State;
use plinth_features::OnlineColumn;
use plinth_features::online::FeatureValue;
use serde_json::{Map, Value, json};

use crate::access::Need as N;
use crate::fields::JsonBody;
use crate::identity::Caller;
use crate::routes::Routes;
use crate::{ApiError, AppState};

/// Most entity rows in one online request.
pub(crate) const MAX_ONLINE_ROWS: usize = 10_000;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .post("/get-online-features", N::SignedIn, get_online_features)
        // Pushing writes feature data: members and admins (viewers only read).
        .post("/push", N::Create, push)
        .post("/write-to-online-store", N::Create, write_to_online_store)
        .post("/materialize", N::Admin, materialize)
        .post("/materialize-incremental", N::Admin, materialize_incremental)
}

/// The body as a JSON object whose every field is one of `allowed` (Feast's request models).
fn json_object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let req: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("The body is not JSON: {e}")))?;
    let Value::Object(obj) = req else { return Err(ApiError::invalid("The body must be a JSON object")) };
    if let Some(key) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!("Unknown field '{key}'")));
    }
    Ok(obj)
}

/// An optional list of strings (absent or null: empty); `what` words the error.
fn string_list(obj: &Map<String, Value>, key: &str, what: &str) -> Result<Vec<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid(format!("{key} must be a list of {what}"))))
            .collect(),
        Some(_) => Err(ApiError::invalid(format!("{key} must be a list of {what}"))),
    }
}

fn json_to_value(v: &Value) -> Result<FeatureValue, ApiError> {
    Ok(match v {
        Value::Null => FeatureValue::Null,
        Value::Bool(b) => FeatureValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FeatureValue::Int64(i),
            None => FeatureValue::Float64(n.as_f64().ok_or_else(|| ApiError::invalid(format!("{n} is out of range")))?),
        },
        Value::String(s) => FeatureValue::String(s.clone()),
        other => return Err(ApiError::invalid(format!("entity values must be scalars, found {other}"))),
    })
}

pub(crate) fn value_to_json(v: &FeatureValue) -> Value {
    use base64::Engine as _;
    match v {
        FeatureValue::Null => Value::Null,
        FeatureValue::Int32(i) => json!(i),
        FeatureValue::Int64(i) => json!(i),
        FeatureValue::Float32(f) => crate::json::double(f64::from(*f)),
        FeatureValue::Float64(f) => crate::json::double(*f),
        FeatureValue::String(s) => json!(s),
        FeatureValue::Bool(b) => json!(b),
        FeatureValue::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        FeatureValue::Timestamp(ns) => json!(rfc3339(*ns)),
    }
}

/// `2021-04-12T10:59:42Z` (with fractional seconds when there are any).
pub(crate) fn rfc3339(ns: i64) -> String {
    plinth_core::time::rfc3339_from_nanos(ns)
}

async fn get_online_features(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let obj =
        &json_object(&body, &["features", "feature_service", "entities", "full_feature_names", "include_feature_view_version_metadata"])?;
    let features = string_list(obj, "features", "'view:feature' strings")?;
    let service = match obj.get("feature_service") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid("feature_service must be a string")),
    };
    let full = match obj.get("full_feature_names") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("full_feature_names must be a boolean")),
    };
    let entities = obj
        .get("entities")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("entities must be an object of join key -> list of values"))?;
    let mut columns = Vec::with_capacity(entities.len());
    for (name, values) in entities {
        let values = values.as_array().ok_or_else(|| ApiError::invalid(format!("entities.{name} must be a list")))?;
        if values.len() > MAX_ONLINE_ROWS {
            return Err(ApiError::invalid(format!(
                "at most {MAX_ONLINE_ROWS} entity rows per request; entities.{name} has {}",
                values.len()
            )));
        }
        columns.push((name.clone(), values.iter().map(json_to_value).collect::<Result<Vec<_>, _>>()?));
    }
    let answer = s.features.online_features(&features, service.as_deref(), &columns, full).await?;
    Ok(Json(render(&answer)))
}

/// Feast's `POST /push`: `{"push_source_name", "df": {column: [values]}, "to": "online" |
/// "offline" | "online_and_offline"}` (default online). Times are RFC 3339 strings.
async fn push(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let obj = &json_object(&body, &["push_source_name", "df", "to", "allow_registry_cache", "transform_on_write"])?;
    let source = obj.get("push_source_name").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("push_source_name is required"))?;
    let (online, offline) = match obj.get("to").and_then(Value::as_str).unwrap_or("online") {
        "online" => (true, false),
        "offline" => (false, true),
        "online_and_offline" => (true, true),
        other => return Err(ApiError::invalid(format!("to must be online, offline or online_and_offline, not '{other}'"))),
    };
    let columns = df_columns(obj)?;
    let pushed = s.features.push(source, &columns, online, offline).await?;
    let views: Vec<Value> = pushed.online.iter().map(|(v, w, k)| json!({"feature_view": v, "written": w, "skipped_older": k})).collect();
    for warning in &pushed.warnings {
        tracing::warn!(source, "{warning}");
    }
    Ok(Json(json!({"rows": pushed.rows, "online": views, "offline_file": pushed.offline_file.is_some(), "warnings": pushed.warnings})))
}

/// The columns of a Feast `df` (`{column: [values]}`).
fn df_columns(obj: &Map<String, Value>) -> Result<Vec<(String, Vec<FeatureValue>)>, ApiError> {
    let df =
        obj.get("df").and_then(Value::as_object).ok_or_else(|| ApiError::invalid("df must be an object of column -> list of values"))?;
    let mut columns = Vec::with_capacity(df.len());
    for (name, values) in df {
        let values = values.as_array().ok_or_else(|| ApiError::invalid(format!("df.{name} must be a list")))?;
        columns.push((name.clone(), values.iter().map(json_to_value).collect::<Result<Vec<_>, _>>()?));
    }
    Ok(columns)
}

/// Feast's `POST /write-to-online-store`: `{"feature_view_name", "df": {column: [values]}}`, the
/// rows of one view (join keys, features, `event_timestamp`, optional `created`), online only.
async fn write_to_online_store(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let obj = &json_object(&body, &["feature_view_name", "df", "allow_registry_cache", "transform_on_write"])?;
    let view = obj.get("feature_view_name").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("feature_view_name is required"))?;
    let columns = df_columns(obj)?;
    let (written, skipped) = s.features.write_online(view, &columns).await?;
    Ok(Json(json!({"feature_view": view, "written": written, "skipped_older": skipped})))
}

fn feast_time(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => plinth_features::online::parse_time(t)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{key} must be an ISO 8601 time, not '{t}'"))),
        Some(_) => Err(ApiError::invalid(format!("{key} must be an ISO 8601 time string"))),
    }
}

/// Feast's `POST /materialize` and `/materialize-incremental` (what Feast's SDK delegates to the
/// feature server when its online store is remote): Plinth materializes from its own offline data.
async fn feast_materialize(s: AppState, actor: plinth_core::audit::Actor, body: &[u8], incremental: bool) -> Result<Json<Value>, ApiError> {
    let obj = &json_object(body, &["start_ts", "end_ts", "feature_views", "disable_event_timestamp", "full_feature_names", "version"])?;
    let views = string_list(obj, "feature_views", "view names")?;
    let start = if incremental { None } else { feast_time(obj, "start_ts")? };
    let end = feast_time(obj, "end_ts")?;
    let done = s.features.materialize_range(&actor, &views, incremental, start, end).await?;
    let items: Vec<Value> =
        done.iter().map(|d| json!({"feature_view": d.view, "rows": d.rows, "skipped_older": d.skipped_older})).collect();
    Ok(Json(json!({"status": "success", "materialized": items})))
}

async fn materialize(State(s): State<AppState>, Caller(actor): Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    feast_materialize(s, actor, &body, false).await
}

async fn materialize_incremental(
    State(s): State<AppState>,
    Caller(actor): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    feast_materialize(s, actor, &body, true).await
}

fn render(columns: &[OnlineColumn]) -> Value {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let results: Vec<Value> = columns
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("values".into(), Value::Array(c.values.iter().map(value_to_json).collect()));
            m.insert("statuses".into(), Value::Array(c.statuses.iter().map(|s| json!(s.as_str())).collect()));
            m.insert("event_timestamps".into(), Value::Array(c.event_ts.iter().map(|t| json!(rfc3339(t.unwrap_or(0)))).collect()));
            Value::Object(m)
        })
        .collect();
    json!({"metadata": {"feature_names": names}, "results": results})
}
