//! MLflow's scoring protocol per deployment (`design/protocols.md` §4.4): under
//! `/deployments/{name}` a deployment answers as `mlflow models serve` would at its root:
//! `POST /invocations`, `GET /ping`, `GET /health`, `GET /version`. A client that takes a scoring
//! server's base URL is given `http://HOST:PORT/deployments/NAME`.
//!
//! Bodies: `application/json` with exactly one of `dataframe_split`, `dataframe_records`,
//! `instances` or `inputs` (and optionally an empty `params`), `text/csv` (a header row first) or
//! `application/vnd.apache.parquet`; another content type is answered 415. How tables and tensors
//! become the model's inputs is `frame`'s. The answer is `{"predictions": …}`: records for a
//! table, tensors by output name for `instances` and `inputs`; the headers
//! `X-Plinth-Model-Version`, `X-Plinth-Model` and `X-Plinth-Variant` name what produced it, and
//! `X-Request-Id` the request (the client's own, when it sent one) as the prediction log has it.
//! Errors are MLflow's JSON errors: `BAD_REQUEST` (400) for input the model cannot take,
//! `RESOURCE_DOES_NOT_EXIST` (404) for an unknown deployment, `TEMPORARILY_UNAVAILABLE` (503)
//! for a full queue or a model not loaded.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plinth_core::ErrorCode;
use plinth_core::auth::Level;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::{Locate as L, Need as N};
use crate::deployments::{ROUTING_KEY_HEADER, serving_error};
use crate::error::ApiError;
use crate::frame::{self, Frame};
use crate::routes::Routes;

pub(crate) fn routes() -> Routes {
    let read = || N::Deployment(Level::Read, L::Path("name"));
    Routes::new()
        .post("/deployments/{name}/invocations", read(), invocations)
        .get("/deployments/{name}/ping", read(), ping)
        .get("/deployments/{name}/health", read(), ping)
        .get("/deployments/{name}/version", read(), version)
}

/// The content types `/invocations` reads.
const JSON: &str = "application/json";
const CSV: &str = "text/csv";
const PARQUET: &str = "application/vnd.apache.parquet";

/// Headers that name what produced an answer.
pub(crate) const MODEL_VERSION_HEADER: &str = "x-plinth-model-version";
const MODEL_HEADER: &str = "x-plinth-model";
const VARIANT_HEADER: &str = "x-plinth-variant";
/// `true`: the answer also carries the features looked up (`features`), for debugging.
const RETURN_FEATURES_HEADER: &str = "x-plinth-return-features";
/// The request's id (the client's, else the one the server set), as the prediction log keeps it.
const REQUEST_ID_HEADER: &str = "x-request-id";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// What a request body holds, once parsed.
enum Input {
    Table(Frame),
    /// `inputs` or `instances`, and which.
    Tensors(&'static str, Value),
}

fn parse_json(body: &[u8]) -> Result<Input, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| bad_request(format!("the request's JSON is not valid: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad_request("the request must be a JSON object with one of dataframe_split, dataframe_records, instances or inputs"));
    };
    const FORMATS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];
    if let Some(key) = obj.keys().find(|k| !FORMATS.contains(&k.as_str()) && k.as_str() != "params") {
        return Err(bad_request(format!("unknown field '{key}'; the request takes exactly one of {} (and params)", FORMATS.join(", "))));
    }
    match obj.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) if p.is_empty() => {}
        Some(_) => return Err(bad_request("this deployment's model takes no params")),
    }
    let given: Vec<&str> = FORMATS.into_iter().filter(|f| obj.contains_key(*f)).collect();
    let [format] = given[..] else {
        return Err(bad_request(format!(
            "the request must hold exactly one of {}; it holds {}",
            FORMATS.join(", "),
            if given.is_empty() { "none".to_owned() } else { given.join(", ") }
        )));
    };
    let value = obj.remove(format).unwrap_or(Value::Null);
    Ok(match format {
        "dataframe_split" => Input::Table(Frame::from_split(&value).map_err(|e| bad_request(e.0))?),
        "dataframe_records" => Input::Table(Frame::from_records(&value).map_err(|e| bad_request(e.0))?),
        "instances" => Input::Tensors("instances", value),
        _ => Input::Tensors("inputs", value),
    })
}

async fn invocations(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let input = match essence.as_str() {
        JSON => parse_json(&body)?,
        CSV => Input::Table(Frame::from_csv(&body).map_err(|e| bad_request(e.0))?),
        PARQUET => Input::Table(Frame::from_parquet(body).map_err(|e| bad_request(e.0))?),
        _ => {
            let body = json!({
                "error_code": ErrorCode::BadRequest.name(),
                "message": format!("Content-Type '{content_type}' is not read here; send {JSON}, {CSV} or {PARQUET}"),
            });
            return Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(body)).into_response());
        }
    };
    let specs = s.serving.metadata(&name).map_err(serving_error)?.inputs;
    let (tensors, rows) = match input {
        Input::Table(frame) => {
            let rows = frame.rows();
            (frame.into_tensors(&specs).map_err(|e| bad_request(e.0))?, Some(rows))
        }
        Input::Tensors("instances", value) => (frame::tensors_from_instances(&value, &specs).map_err(|e| bad_request(e.0))?, None),
        Input::Tensors(_, value) => (frame::tensors_from_inputs(&value, &specs).map_err(|e| bad_request(e.0))?, None),
    };
    let info = plinth_serving::RequestInfo {
        id: headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()),
        routing_key: headers.get(ROUTING_KEY_HEADER).and_then(|v| v.to_str().ok()),
        return_features: headers.get(RETURN_FEATURES_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true")),
    };
    let answer = s.serving.infer(&name, tensors, info).await.map_err(|e| {
        let e = serving_error(e);
        // The scoring protocol says BAD_REQUEST for any input the model cannot take.
        if e.code() == ErrorCode::InvalidParameterValue { bad_request(e.message()) } else { e }
    })?;
    let predictions = rows.and_then(|rows| frame::records(&answer.outputs, rows)).unwrap_or_else(|| frame::named(&answer.outputs));
    let mut body = json!({"predictions": predictions});
    if let Some(features) = &answer.features {
        body["features"] = crate::deployments::features_json(features);
    }
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        (MODEL_VERSION_HEADER, answer.version.to_string()),
        (MODEL_HEADER, answer.model.clone()),
        (VARIANT_HEADER, answer.variant.clone()),
        (REQUEST_ID_HEADER, answer.request_id.clone()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

/// `mlflow models serve`'s `/ping` and `/health`: 200 with an empty body when the deployment can answer.
async fn ping(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if s.serving.ready(&name).map_err(serving_error)? {
        Ok((StatusCode::OK, "\n").into_response())
    } else {
        Err(ApiError::new(ErrorCode::TemporarilyUnavailable, format!("Deployment '{name}' is not ready")))
    }
}

async fn version(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    s.serving.ready(&name).map_err(serving_error)?;
    Ok((StatusCode::OK, s.version.to_string()).into_response())
}
