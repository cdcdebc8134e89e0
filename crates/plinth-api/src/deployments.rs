//! Serving over HTTP: deployments as resources under `/api/plinth/v1/deployments`, and inference
//! over the Open Inference Protocol v2 (`/v2/…`, `design/protocols.md` §4.1): health, server and
//! model metadata, model readiness and `infer` with JSON tensors. OIP routes answer errors in the
//! protocol's shape, `{"error": "…"}`, with the status of the error's code.
//!
//! Permissions: reading a deployment, its metadata and inferring need READ on the deployment
//! (a grant of its own: a service account may predict without any grant on the registry);
//! updating needs EDIT, deleting MANAGE; creating is for members and admins.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plinth_core::auth::{Level, ResourceKind};
use plinth_core::serving::{Batching, DeploymentSpec, FeatureDefault, ModelRef, Objective, Rollback, Runtime, Variant};
use plinth_serving::{DeploymentView, TensorSpec, VariantState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::error::ApiError;
use crate::fields::{JsonBody, MlflowRequest};
use crate::identity::Caller;
use crate::oip;
use crate::routes::Routes;
use crate::{AppState, json as j};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .get("/api/plinth/v1/deployments", N::SignedIn, list)
        .post("/api/plinth/v1/deployments", N::Create, create)
        .get("/api/plinth/v1/deployments/{name}", N::Deployment(Level::Read, L::Path("name")), get)
        .patch("/api/plinth/v1/deployments/{name}", N::Deployment(Level::Edit, L::Path("name")), update)
        .delete("/api/plinth/v1/deployments/{name}", N::Deployment(Level::Manage, L::Path("name")), delete)
        .get("/api/plinth/v1/deployments/{name}/objective", N::Deployment(Level::Read, L::Path("name")), objective)
        .get("/v2", N::SignedIn, server_metadata)
        .get("/v2/health/live", N::Public, live)
        .get("/v2/health/ready", N::Public, ready)
        .get("/v2/models/{name}", N::Deployment(Level::Read, L::Path("name")), model_metadata)
        .get("/v2/models/{name}/ready", N::Deployment(Level::Read, L::Path("name")), model_ready)
        .post("/v2/models/{name}/infer", N::Deployment(Level::Read, L::Path("name")), infer)
}

/// A variant as a request declares it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantBody {
    name: String,
    model: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    shadow: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BatchingBody {
    max_batch_size: Option<u32>,
    preferred_batch_size: Option<Vec<u32>>,
    max_queue_delay_microseconds: Option<u64>,
    max_queue_size: Option<u32>,
    timeout_ms: Option<u64>,
}

/// A deployment's spec as a request gives it: `model` (one variant taking all the traffic) or `variants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    variants: Option<Vec<VariantBody>>,
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    batching: Option<BatchingBody>,
    #[serde(default)]
    instances: Option<u32>,
    #[serde(default)]
    threads: Option<u32>,
    #[serde(default)]
    feature_service: Option<String>,
    /// Automatic rollback: the CLI's condition text ("error_rate>1%,p99_ms>50") or an object
    /// (`max_error_rate`, `max_p99_ms`, `window_secs`, `min_requests`); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    rollback: Option<Value>,
    /// The latency and availability objective: the CLI's text ("p99_ms<50,availability>99.9%") or
    /// an object (`latency_ms`, `latency_percentile`, `availability`, `window_secs`); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    objective: Option<Value>,
    /// Values for missing or stale features: `{"feature": number, …}`; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    feature_defaults: Option<Value>,
    /// The fraction of requests whose inputs the prediction log keeps; `null` (or 0) keeps none.
    #[serde(default, deserialize_with = "present")]
    log_inputs: Option<Value>,
    /// For updates: the generation the caller read (a compare-and-set).
    #[serde(default)]
    generation: Option<i64>,
}

/// A field given (`null` included) as `Some`; absent as `None` (through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The rollback policy a body gives: text as the CLI writes it, or an object.
fn rollback_of(value: &Value) -> Result<Option<Rollback>, ApiError> {
    let policy = match value {
        Value::Null => return Ok(None),
        Value::String(text) => Rollback::parse(text)?,
        Value::Object(obj) => {
            if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "max_error_rate" | "max_p99_ms" | "window_secs" | "min_requests"))
            {
                return Err(ApiError::invalid(format!(
                    "rollback has an unknown field '{key}' (it takes max_error_rate, max_p99_ms, window_secs and min_requests)"
                )));
            }
            let number = |key: &str| match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::invalid(format!("rollback.{key} must be a number"))),
            };
            let count = |key: &str, default: u32| match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| ApiError::invalid(format!("rollback.{key} must be a whole number"))),
            };
            let defaults = Rollback::default();
            let policy = Rollback {
                max_error_rate: number("max_error_rate")?,
                max_p99_ms: number("max_p99_ms")?,
                window_secs: count("window_secs", defaults.window_secs)?,
                min_requests: count("min_requests", defaults.min_requests)?,
            };
            policy.validate()?;
            policy
        }
        _ => return Err(ApiError::invalid("rollback must be a condition such as \"error_rate>1%,p99_ms>50\", an object or null")),
    };
    Ok(Some(policy))
}

/// The objective a body gives: text as the CLI writes it, or an object.
fn objective_of(value: &Value) -> Result<Option<Objective>, ApiError> {
    let objective = match value {
        Value::Null => return Ok(None),
        Value::String(text) => Objective::parse(text)?,
        Value::Object(obj) => {
            if let Some(key) =
                obj.keys().find(|k| !matches!(k.as_str(), "latency_ms" | "latency_percentile" | "availability" | "window_secs"))
            {
                return Err(ApiError::invalid(format!(
                    "objective has an unknown field '{key}' (it takes latency_ms, latency_percentile, availability and window_secs)"
                )));
            }
            let number = |key: &str| match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::invalid(format!("objective.{key} must be a number"))),
            };
            let defaults = Objective::default();
            let objective = Objective {
                latency_ms: number("latency_ms")?,
                latency_percentile: number("latency_percentile")?.unwrap_or(defaults.latency_percentile),
                availability: number("availability")?,
                window_secs: match obj.get("window_secs") {
                    None | Some(Value::Null) => defaults.window_secs,
                    Some(v) => v
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| ApiError::invalid("objective.window_secs must be a whole number"))?,
                },
            };
            objective.validate()?;
            objective
        }
        _ => return Err(ApiError::invalid("objective must be text such as \"p99_ms<50,availability>99.9%\", an object or null")),
    };
    Ok(Some(objective))
}

fn parse_body(body: &[u8]) -> Result<SpecBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("Invalid deployment: {e}")))
}

/// The spec a body declares; `base` gives what an update leaves out.
fn spec_of(body: &SpecBody, base: Option<&DeploymentSpec>) -> Result<DeploymentSpec, ApiError> {
    let variants = match (&body.model, &body.variants) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("Give either model or variants, not both")),
        (Some(model), None) => DeploymentSpec::single(ModelRef::parse(model)?).variants,
        (None, Some(list)) => list
            .iter()
            .map(|v| {
                Ok(Variant {
                    name: v.name.clone(),
                    model: ModelRef::parse(&v.model)?,
                    weight: v.weight.unwrap_or(if v.shadow.is_some() { 0 } else { plinth_core::serving::TOTAL_WEIGHT }),
                    shadow: v.shadow,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?,
        (None, None) => match base {
            Some(b) => b.variants.clone(),
            None => return Err(ApiError::invalid("A deployment needs model (NAME@ALIAS or NAME/VERSION) or variants")),
        },
    };
    let base = base.cloned().unwrap_or_else(|| DeploymentSpec::with_variants(Vec::new()));
    let b = body.batching.as_ref();
    let batching = Batching {
        max_batch_size: b.and_then(|b| b.max_batch_size).unwrap_or(base.batching.max_batch_size),
        preferred_batch_sizes: b.and_then(|b| b.preferred_batch_size.clone()).unwrap_or(base.batching.preferred_batch_sizes.clone()),
        max_queue_delay_micros: b.and_then(|b| b.max_queue_delay_microseconds).unwrap_or(base.batching.max_queue_delay_micros),
        max_queue_size: b.and_then(|b| b.max_queue_size).unwrap_or(base.batching.max_queue_size),
        timeout_millis: b.and_then(|b| b.timeout_ms).or(base.batching.timeout_millis),
    };
    Ok(DeploymentSpec {
        description: body.description.clone().or(base.description.clone()),
        variants,
        runtime: match &body.runtime {
            Some(r) => Runtime::parse(r)?,
            None => base.runtime,
        },
        batching,
        instances: body.instances.unwrap_or(base.instances),
        threads: body.threads.unwrap_or(base.threads),
        feature_service: body.feature_service.clone().or(base.feature_service.clone()),
        rollback: match &body.rollback {
            Some(value) => rollback_of(value)?,
            None => base.rollback.clone(),
        },
        objective: match &body.objective {
            None => base.objective.clone(),
            Some(value) => objective_of(value)?,
        },
        feature_defaults: match &body.feature_defaults {
            None => base.feature_defaults.clone(),
            Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(feature, v)| {
                    v.as_f64()
                        .map(|value| FeatureDefault { feature: feature.clone(), value })
                        .ok_or_else(|| ApiError::invalid(format!("the default of feature '{feature}' must be a number")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid("feature_defaults must be an object of feature names and numbers")),
        },
        log_inputs: match &body.log_inputs {
            None => base.log_inputs,
            Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(0.0) => None,
                Some(f) => Some(f),
                None => return Err(ApiError::invalid("log_inputs must be a fraction between 0 and 1")),
            },
        },
    })
}

fn tensor_meta(spec: &TensorSpec) -> Value {
    json!({"name": spec.name, "datatype": spec.datatype.as_str(), "shape": spec.shape})
}

fn deployment_json(view: &DeploymentView) -> Value {
    let d = &view.deployment;
    let variants: Vec<Value> = d
        .spec
        .variants
        .iter()
        .zip(&view.states)
        .map(|(v, (_, state))| {
            let mut out = json!({"name": v.name, "model": v.model.to_string(), "weight": v.weight});
            if let Some(f) = v.shadow {
                out["shadow"] = json!(f);
            }
            match state {
                VariantState::Ready { version } => {
                    out["state"] = json!("READY");
                    out["version"] = json!(version);
                }
                VariantState::Failed { reason } => {
                    out["state"] = json!("FAILED");
                    out["reason"] = json!(reason);
                }
            }
            out
        })
        .collect();
    let b = &d.spec.batching;
    json!({
        "name": d.name,
        "description": d.spec.description,
        "generation": d.generation,
        "runtime": d.spec.runtime.as_str(),
        "variants": variants,
        "batching": {
            "max_batch_size": b.max_batch_size,
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay_micros,
            "max_queue_size": b.max_queue_size,
            "timeout_ms": b.timeout_millis,
        },
        "instances": d.spec.instances,
        "threads": d.spec.threads,
        "feature_service": d.spec.feature_service,
        "rollback": d.spec.rollback.as_ref().map(|r| json!({
            "condition": r.to_string(),
            "max_error_rate": r.max_error_rate,
            "max_p99_ms": r.max_p99_ms,
            "window_secs": r.window_secs,
            "min_requests": r.min_requests,
        })),
        "log_inputs": d.spec.log_inputs,
        "objective": d.spec.objective.as_ref().map(|o| json!({
            "condition": o.to_string(),
            "latency_ms": o.latency_ms,
            "latency_percentile": o.latency_percentile,
            "availability": o.availability,
            "window_secs": o.window_secs,
        })),
        "feature_defaults": d.spec.feature_defaults.iter().map(|f| (f.feature.clone(), json!(f.value))).collect::<serde_json::Map<_, _>>(),
        "created_by": d.created_by,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    })
}

/// `max_results` and `page_token` from the query, parsed (and refused) as every other list's.
async fn list(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Result<Json<Value>, ApiError> {
    // Only what the caller may read, with auth on.
    let readable = crate::auth::readable(&s, p.as_ref().map(|e| &e.0), ResourceKind::Deployment).await?;
    let page = s.serving.list(f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref(), readable.as_ref()).await?;
    Ok(Json(j::page("deployments", page.items.iter().map(deployment_json).collect(), page.next_page_token)))
}

type Ext = Option<axum::Extension<plinth_auth::Principal>>;

async fn create(State(s): State<AppState>, p: Ext, Caller(actor): Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let name = body.name.clone().unwrap_or_default();
    let spec = spec_of(&body, None)?;
    let view = s.serving.create(&actor, &name, spec).await?;
    crate::auth::grant_creator(&s, p.as_ref().map(|e| &e.0), ResourceKind::Deployment, &name).await?;
    Ok(Json(json!({"deployment": deployment_json(&view)})))
}

async fn get(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"deployment": deployment_json(&s.serving.get(&name).await?)})))
}

async fn update(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid("A deployment cannot be renamed; create one under the new name"));
    }
    let current = s.serving.get(&name).await?;
    let spec = spec_of(&body, Some(&current.deployment.spec))?;
    let view = s.serving.update(&actor, &name, spec, body.generation).await?;
    Ok(Json(json!({"deployment": deployment_json(&view)})))
}

/// The deployment's objective and how this node meets it over the window.
async fn objective(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let Some(r) = s.serving.objective(&name).map_err(serving_error)? else {
        return Err(ApiError::new(
            plinth_core::ErrorCode::ResourceDoesNotExist,
            format!("Deployment '{name}' declares no objective; set one with objective (\"p99_ms<50,availability>99.9%\")"),
        ));
    };
    let o = &r.objective;
    Ok(Json(json!({
        "deployment": name,
        "objective": o.to_string(),
        "window_secs": o.window_secs,
        "observed_secs": r.observed_secs,
        "scope": "this node",
        "requests": r.requests,
        "errors": r.errors,
        "latency": o.latency_ms.map(|target| json!({
            "target_ms": target,
            "percentile": o.latency_percentile,
            "observed_ms": r.latency.map(|l| l.as_secs_f64() * 1e3),
            "share_within_target": r.share_within_latency,
            "met": r.latency_met(),
        })),
        "availability": o.availability.map(|target| json!({
            "target": target,
            "observed": r.availability,
            "server_errors": r.faults,
            "met": r.availability_met(),
            "error_budget_remaining": r.error_budget_remaining().map(j::double),
        })),
    })))
}

async fn delete(State(s): State<AppState>, Caller(actor): Caller, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    s.serving.delete(&actor, &name).await?;
    s.auth.forget_resource(&actor, ResourceKind::Deployment, &name).await?;
    Ok(Json(json!({})))
}

/// An error in the Open Inference Protocol's shape: `{"error": message}` with the code's status.
struct OipFailure(ApiError);

impl<E: Into<ApiError>> From<E> for OipFailure {
    fn from(e: E) -> OipFailure {
        OipFailure(e.into())
    }
}

impl IntoResponse for OipFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({"error": self.0.message()}))).into_response()
    }
}

async fn server_metadata(State(s): State<AppState>) -> Json<Value> {
    Json(json!({"name": "plinth", "version": s.version, "extensions": []}))
}

async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

async fn ready(State(s): State<AppState>) -> Response {
    // Ready when every deployment this node serves can answer.
    let ready = s.serving.all_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready}))).into_response()
}

async fn model_metadata(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, OipFailure> {
    let meta = s.serving.metadata(&name)?;
    Ok(Json(json!({
        "name": name,
        "versions": meta.versions.iter().map(i64::to_string).collect::<Vec<_>>(),
        "platform": meta.platform,
        "inputs": meta.inputs.iter().map(tensor_meta).collect::<Vec<_>>(),
        "outputs": meta.outputs.iter().map(tensor_meta).collect::<Vec<_>>(),
    })))
}

async fn model_ready(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, OipFailure> {
    let ready = s.serving.ready(&name)?;
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, Json(json!({"name": name, "ready": ready}))).into_response())
}

/// The features a request was served with: `{"feature": {"values": […], "statuses": […]}, …}`.
pub(crate) fn features_json(features: &[plinth_serving::FeatureColumn]) -> Value {
    use plinth_serving::Scalar;
    let value = |s: &Scalar| match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => json!(b),
        Scalar::Int(i) => json!(i),
        Scalar::Float(f) => crate::json::double(*f),
        Scalar::Text(t) => json!(t),
        Scalar::Bytes(b) => json!(String::from_utf8_lossy(b)),
    };
    Value::Object(
        features
            .iter()
            .map(|c| (c.name.clone(), json!({"values": c.values.iter().map(value).collect::<Vec<_>>(), "statuses": c.statuses})))
            .collect(),
    )
}

/// The header a request may carry to pick its variant stickily (the same key, the same variant,
/// while the weights are unchanged).
pub(crate) const ROUTING_KEY_HEADER: &str = "x-plinth-routing-key";

/// A serving error for the client. A full queue, a timeout or a model not loaded are said as they
/// are (they name no internals, and the client's next step depends on them); anything else goes
/// through `ApiError::from_error` (internal errors logged, answered with a reference).
pub(crate) fn serving_error(e: plinth_serving::deployments::Error) -> ApiError {
    use plinth_core::HasErrorCode;
    use plinth_serving::deployments::Error as E;
    match &e {
        E::Batch(
            plinth_serving::BatchError::QueueFull { .. }
            | plinth_serving::BatchError::Timeout { .. }
            | plinth_serving::BatchError::ShuttingDown,
        )
        | E::NotReady { .. } => ApiError::new(e.error_code(), e.to_string()),
        _ => ApiError::from_error(e),
    }
}

/// Triton's binary extension: the length of the JSON header before the raw tensor bytes.
const HEADER_LENGTH: &str = "inference-header-content-length";

async fn infer(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OipFailure> {
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n <= body.len())
                .ok_or_else(|| ApiError::invalid(format!("{HEADER_LENGTH} must be a length within the body ({} bytes)", body.len())))?,
        ),
    };
    let (json_part, binary) = body.split_at(header_length.unwrap_or(body.len()));
    let value: Value = serde_json::from_slice(json_part).map_err(|e| ApiError::invalid(format!("the request's JSON is not valid: {e}")))?;
    let request = oip::decode_request_with(&value, binary).map_err(|e| ApiError::invalid(e.0))?;
    let info = plinth_serving::RequestInfo {
        id: request.id.as_deref(),
        routing_key: headers.get(ROUTING_KEY_HEADER).and_then(|v| v.to_str().ok()),
        return_features: value.get("parameters").and_then(|p| p.get("return_features")).and_then(Value::as_bool).unwrap_or(false),
    };
    let answer = s.serving.infer(&name, request.inputs.clone(), info).await.map_err(serving_error)?;
    if let Some(missing) = request.outputs.iter().find(|o| !answer.outputs.iter().any(|t| &t.name == *o)) {
        return Err(ApiError::invalid(format!("unknown output '{missing}'")).into());
    }
    let mut outputs = Vec::new();
    let mut raw = Vec::new();
    for t in answer.outputs.iter().filter(|t| request.outputs.is_empty() || request.outputs.contains(&t.name)) {
        if request.wants_binary(&t.name) {
            let (meta, bytes) = oip::encode_binary(t);
            outputs.push(meta);
            raw.extend(bytes);
        } else {
            outputs.push(oip::encode_tensor(t));
        }
    }
    let mut body = json!({"model_name": name, "model_version": answer.version.to_string(), "outputs": outputs});
    if let Some(id) = request.id {
        body["id"] = json!(id);
    }
    body["parameters"] = json!({"variant": answer.variant});
    if let Some(features) = &answer.features {
        // OIP parameters are scalars: the features travel as JSON text.
        body["parameters"]["features"] = json!(features_json(features).to_string());
    }
    if raw.is_empty() {
        return Ok(Json(body).into_response());
    }
    let mut bytes = serde_json::to_vec(&body).map_err(|e| ApiError::new(plinth_core::ErrorCode::InternalError, e.to_string()))?;
    let json_length = bytes.len();
    bytes.extend(raw);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (axum::http::HeaderName::from_static(HEADER_LENGTH), json_length.to_string()),
        ],
        bytes,
    )
        .into_response())
}
