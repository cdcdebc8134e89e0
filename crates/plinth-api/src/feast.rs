//! Feast's feature-server routes at the root, so Feast clients and HTTP callers written for
//! `feast serve` work unchanged: `POST /get-online-features` (column-oriented answer, join keys
//! first, then the features in the order asked), `POST /push`, and `POST /write-to-online-store`
//! (what Feast's SDK sends when its online store is `type: remote`, e.g. on `materialize` or `push`).

use axum::Json;
use axum::extract::State;
use plinth_features::OnlineColumn;
use plinth_features::online::FeatureValue;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

/// The body as one of Feast's request models: unknown fields are refused (`deny_unknown_fields`),
/// as Feast's server refuses them; a body that is not JSON says so.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(format!("Invalid request body: {e}")),
        _ => ApiError::invalid(format!("The body is not JSON: {e}")),
    })
}

/// `POST /get-online-features`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineRequest {
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    /// Join key -> list of values.
    entities: Map<String, Value>,
    #[serde(default)]
    full_feature_names: Option<bool>,
    /// Sent by newer Feast clients; versions are not served, so it changes nothing.
    #[serde(default, rename = "include_feature_view_version_metadata")]
    _version_metadata: Option<Value>,
}

/// `POST /push`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    push_source_name: String,
    /// Column -> list of values.
    df: Map<String, Value>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default, rename = "allow_registry_cache")]
    _allow_registry_cache: Option<Value>,
    #[serde(default, rename = "transform_on_write")]
    _transform_on_write: Option<Value>,
}

/// `POST /write-to-online-store`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteRequest {
    feature_view_name: String,
    df: Map<String, Value>,
    #[serde(default, rename = "allow_registry_cache")]
    _allow_registry_cache: Option<Value>,
    #[serde(default, rename = "transform_on_write")]
    _transform_on_write: Option<Value>,
}

/// `POST /materialize` and `POST /materialize-incremental`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaterializeRequest {
    #[serde(default)]
    start_ts: Option<String>,
    #[serde(default)]
    end_ts: Option<String>,
    #[serde(default)]
    feature_views: Option<Vec<String>>,
    #[serde(default, rename = "disable_event_timestamp")]
    _disable_event_timestamp: Option<Value>,
    #[serde(default, rename = "full_feature_names")]
    _full_feature_names: Option<Value>,
    #[serde(default, rename = "version")]
    _version: Option<Value>,
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
    let req: OnlineRequest = parse(&body)?;
    let features = req.features.unwrap_or_default();
    let full = req.full_feature_names.unwrap_or(false);
    let mut columns = Vec::with_capacity(req.entities.len());
    for (name, values) in &req.entities {
        let values = values.as_array().ok_or_else(|| ApiError::invalid(format!("entities.{name} must be a list")))?;
        if values.len() > MAX_ONLINE_ROWS {
            return Err(ApiError::invalid(format!(
                "at most {MAX_ONLINE_ROWS} entity rows per request; entities.{name} has {}",
                values.len()
            )));
        }
        columns.push((name.clone(), values.iter().map(json_to_value).collect::<Result<Vec<_>, _>>()?));
    }
    let answer = s.features.online_features(&features, req.feature_service.as_deref(), &columns, full).await?;
    Ok(Json(render(&answer)))
}

/// Feast's `POST /push`: `{"push_source_name", "df": {column: [values]}, "to": "online" |
/// "offline" | "online_and_offline"}` (default online). Times are RFC 3339 strings.
async fn push(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let req: PushRequest = parse(&body)?;
    let source = req.push_source_name.as_str();
    let (online, offline) = match req.to.as_deref().unwrap_or("online") {
        "online" => (true, false),
        "offline" => (false, true),
        "online_and_offline" => (true, true),
        other => return Err(ApiError::invalid(format!("to must be online, offline or online_and_offline, not '{other}'"))),
    };
    let columns = df_columns(&req.df)?;
    let pushed = s.features.push(source, &columns, online, offline).await?;
    let views: Vec<Value> = pushed.online.iter().map(|(v, w, k)| json!({"feature_view": v, "written": w, "skipped_older": k})).collect();
    for warning in &pushed.warnings {
        tracing::warn!(source, "{warning}");
    }
    Ok(Json(json!({"rows": pushed.rows, "online": views, "offline_file": pushed.offline_file.is_some(), "warnings": pushed.warnings})))
}

/// The columns of a Feast `df` (`{column: [values]}`).
fn df_columns(df: &Map<String, Value>) -> Result<Vec<(String, Vec<FeatureValue>)>, ApiError> {
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
    let req: WriteRequest = parse(&body)?;
    let view = req.feature_view_name.as_str();
    let columns = df_columns(&req.df)?;
    let (written, skipped) = s.features.write_online(view, &columns).await?;
    Ok(Json(json!({"feature_view": view, "written": written, "skipped_older": skipped})))
}

fn feast_time(key: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|t| {
            plinth_features::online::parse_time(t).ok_or_else(|| ApiError::invalid(format!("{key} must be an ISO 8601 time, not '{t}'")))
        })
        .transpose()
}

/// Feast's `POST /materialize` and `/materialize-incremental` (what Feast's SDK delegates to the
/// feature server when its online store is remote): Plinth materializes from its own offline data.
async fn feast_materialize(s: AppState, actor: plinth_core::audit::Actor, body: &[u8], incremental: bool) -> Result<Json<Value>, ApiError> {
    let req: MaterializeRequest = parse(body)?;
    let views = req.feature_views.unwrap_or_default();
    let start = if incremental { None } else { feast_time("start_ts", req.start_ts.as_deref())? };
    let end = feast_time("end_ts", req.end_ts.as_deref())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<T: DeserializeOwned>(body: &str) -> String {
        match parse::<T>(body.as_bytes()) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => {
                assert_eq!(e.code(), plinth_core::ErrorCode::InvalidParameterValue, "{body}");
                e.message().to_owned()
            }
        }
    }

    #[test]
    fn bodies_follow_feasts_request_models() {
        let ok: PushRequest =
            parse(br#"{"push_source_name": "s", "df": {"a": [1]}, "to": null, "allow_registry_cache": true}"#).expect("push");
        assert_eq!((ok.push_source_name.as_str(), ok.to, ok.df.len()), ("s", None, 1));
        let ok: OnlineRequest = parse(br#"{"features": ["v:f"], "entities": {"id": [1, 2]}, "full_feature_names": null}"#).expect("online");
        assert_eq!((ok.features.unwrap_or_default().len(), ok.full_feature_names), (1, None));
        let ok: MaterializeRequest = parse(br#"{"feature_views": null, "end_ts": "2026-01-01T00:00:00"}"#).expect("materialize");
        assert!(ok.feature_views.is_none() && ok.end_ts.is_some());
        for (body, message) in [
            (r#"{"push_source_name": "s", "df": {}, "bogus": 1}"#, "unknown field `bogus`"),
            (r#"{"df": {}}"#, "missing field `push_source_name`"),
            (r#"{"push_source_name": 7, "df": {}}"#, "invalid type"),
            (r#"{"push_source_name": "s", "df": [1]}"#, "invalid type"),
            ("not json", "The body is not JSON"),
        ] {
            assert!(refused::<PushRequest>(body).contains(message), "{body}");
        }
        assert!(refused::<OnlineRequest>(r#"{"features": "v:f", "entities": {}}"#).contains("invalid type"));
        assert!(refused::<OnlineRequest>(r#"{"features": ["v:f"]}"#).contains("missing field `entities`"));
        assert!(refused::<MaterializeRequest>(r#"{"start": "x"}"#).contains("unknown field `start`"));
    }
}
