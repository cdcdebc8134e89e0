//! Request fields as MLflow's handlers read them: JSON body for writes, query string for GETs.
//!
//! Accessors check types and give MLflow's messages (`Missing value for required parameter 'x'.`,
//! `Invalid value 31 for parameter 'run_id' supplied...`). Query-string values are strings, so
//! numeric and boolean accessors accept numeric and boolean strings too, as MLflow does.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use plinth_core::tracking::KeyValue;
use plinth_core::validation::InvalidParameter;
use serde_json::{Map, Value};

use crate::ApiError;

/// The fields of one MLflow request.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    map: Map<String, Value>,
    /// Query strings carry repeated fields as repeated keys, so a single value may stand for a list.
    from_query: bool,
}

fn type_error(name: &str, value: &Value, expected: &str) -> ApiError {
    let shown = match value {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        other => other.to_string(),
    };
    let shown: String = shown.chars().take(200).collect();
    ApiError::invalid(format!("Invalid value {shown} for parameter '{name}' supplied: expected {expected}."))
}

impl Fields {
    pub(crate) fn from_json(body: &[u8]) -> Result<Fields, ApiError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Fields::default());
        }
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(plinth_core::ErrorCode::BadRequest, format!("Malformed JSON request body: {e}")))?;
        // Very old clients send the JSON document as a JSON string.
        if let Value::String(inner) = &value {
            value = serde_json::from_str(inner)
                .map_err(|e| ApiError::new(plinth_core::ErrorCode::BadRequest, format!("Malformed JSON request body: {e}")))?;
        }
        match value {
            Value::Object(map) => Ok(Fields { map, from_query: false }),
            Value::Null => Ok(Fields::default()),
            _ => Err(ApiError::invalid("The request body must be a JSON object")),
        }
    }

    /// Repeated keys become arrays (`run_ids=a&run_ids=b`).
    pub(crate) fn from_query(query: &str) -> Fields {
        let mut map = Map::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = Value::String(value.into_owned());
            match map.get_mut(key.as_ref()) {
                Some(Value::Array(items)) => items.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    map.insert(key.into_owned(), value);
                }
            }
        }
        Fields { map, from_query: true }
    }

    /// A JSON body with query parameters filling the fields it lacks.
    pub(crate) fn from_request_parts(body: &[u8], query: Option<&str>) -> Result<Fields, ApiError> {
        let mut fields = Fields::from_json(body)?;
        fields.merge_missing(Fields::from_query(query.unwrap_or("")));
        Ok(fields)
    }

    fn merge_missing(&mut self, other: Fields) {
        for (key, value) in other.map {
            self.map.entry(key).or_insert(value);
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether the field is present with an explicit JSON `null` (which `has` treats as absent).
    pub(crate) fn is_null(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(Value::is_null)
    }

    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(type_error(name, other, "a string")),
        }
    }

    /// A required string; absent and empty are both missing, as in MLflow.
    pub(crate) fn str(&self, name: &str) -> Result<String, ApiError> {
        match self.opt_str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(InvalidParameter::missing(name).into()),
        }
    }

    /// A required string that may be empty (values of params and tags).
    pub(crate) fn str_allow_empty(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?.ok_or_else(|| InvalidParameter::missing(name).into())
    }

    pub(crate) fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => Ok(Some(v)),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
                    _ => Err(type_error(name, &Value::Number(n.clone()), "an integer")),
                },
            },
            Some(Value::String(s)) => {
                s.trim().parse::<i64>().map(Some).map_err(|_| type_error(name, &Value::String(s.clone()), "an integer"))
            }
            Some(other) => Err(type_error(name, other, "an integer")),
        }
    }

    pub(crate) fn i64(&self, name: &str) -> Result<i64, ApiError> {
        self.opt_i64(name)?.ok_or_else(|| InvalidParameter::missing(name).into())
    }

    /// A double as MLflow's JSON carries it: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub(crate) fn f64(&self, name: &str) -> Result<f64, ApiError> {
        match self.get(name) {
            None => Err(InvalidParameter::missing(name).into()),
            Some(Value::Number(n)) => n.as_f64().ok_or_else(|| type_error(name, &Value::Number(n.clone()), "a double")),
            Some(Value::String(s)) => match s.trim() {
                "NaN" | "nan" => Ok(f64::NAN),
                "Infinity" | "inf" | "+Infinity" => Ok(f64::INFINITY),
                "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                other => other.parse::<f64>().map_err(|_| type_error(name, &Value::String(s.clone()), "a double")),
            },
            Some(other) => Err(type_error(name, other, "a double")),
        }
    }

    /// A proto enum field: its name (`"RUNNING"`) or its number (`1`), as text for the caller to parse.
    pub(crate) fn opt_enum(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() => Ok(Some(n.to_string())),
            Some(other) => Err(type_error(name, other, "an enum name or number")),
        }
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(type_error(name, other, "true or false")),
        }
    }

    /// A repeated string field: an array, or a single value.
    pub(crate) fn str_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) if self.from_query => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|it| match it {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(type_error(name, other, "a list of strings")),
                })
                .collect(),
            Some(other) => Err(type_error(name, other, "a list of strings")),
        }
    }

    /// A repeated message field.
    pub(crate) fn objects(&self, name: &str) -> Result<Vec<Fields>, ApiError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|it| match it {
                    Value::Object(map) => Ok(Fields { map: map.clone(), from_query: false }),
                    other => Err(type_error(name, other, "a list of objects")),
                })
                .collect(),
            Some(other) => Err(type_error(name, other, "a list of objects")),
        }
    }

    /// A repeated message field, moved out of the request (no copy); for large batches.
    pub(crate) fn take_objects(&mut self, name: &str) -> Result<Vec<Fields>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|it| match it {
                    Value::Object(map) => Ok(Fields { map, from_query: false }),
                    other => Err(type_error(name, &other, "a list of objects")),
                })
                .collect(),
            Some(other) => Err(type_error(name, &other, "a list of objects")),
        }
    }

    /// `[{key, value}]` moved out of the request.
    pub(crate) fn take_key_values(&mut self, name: &str) -> Result<Vec<KeyValue>, ApiError> {
        self.take_objects(name)?
            .into_iter()
            .map(|mut it| Ok(KeyValue { key: it.take_str("key")?, value: it.take_str_or_empty("value")? }))
            .collect()
    }

    pub(crate) fn take_string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(type_error(name, &other, "a string")),
        }
    }

    /// A required, non-empty string moved out of the request.
    pub(crate) fn take_str(&mut self, name: &str) -> Result<String, ApiError> {
        match self.take_string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(InvalidParameter::missing(name).into()),
        }
    }

    fn take_str_or_empty(&mut self, name: &str) -> Result<String, ApiError> {
        Ok(self.take_string(name)?.unwrap_or_default())
    }

    /// A single message field.
    pub(crate) fn object(&self, name: &str) -> Result<Option<Fields>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields { map: map.clone(), from_query: false })),
            Some(other) => Err(type_error(name, other, "an object")),
        }
    }

    /// `[{key, value}]` lists (tags, params): key required, value may be empty.
    pub(crate) fn key_values(&self, name: &str) -> Result<Vec<KeyValue>, ApiError> {
        self.objects(name)?
            .into_iter()
            .map(|it| Ok(KeyValue { key: it.str("key")?, value: it.opt_str("value")?.unwrap_or_default() }))
            .collect()
    }

    /// `run_id`, or its deprecated twin `run_uuid`.
    pub(crate) fn run_id(&self) -> Result<String, ApiError> {
        match self.opt_str("run_id")?.filter(|it| !it.is_empty()) {
            Some(id) => Ok(id),
            None => match self.opt_str("run_uuid")?.filter(|it| !it.is_empty()) {
                Some(id) => Ok(id),
                None => Err(InvalidParameter::missing("run_id").into()),
            },
        }
    }
}

/// Whether the request declares a JSON body (`application/json`, any parameters).
pub(crate) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether a browser could send this request cross-site without a CORS preflight: a POST with no
/// declared content type, or one of the types an HTML form (or a `no-cors` fetch) may send:
/// `application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`. Any other declared
/// type (JSON, Arrow IPC, Parquet, octet streams) makes a browser ask the server first, and the
/// server answers no CORS, so the browser never sends it.
///
/// A request that carries a header no such request can carry is not one of them, whatever its
/// content type: `Authorization: Bearer …` (a page cannot set it without a preflight, and browsers
/// never add bearer tokens by themselves, unlike cached Basic credentials) and Triton's
/// `Inference-Header-Content-Length` (what `tritonclient` sends, with no content type).
pub(crate) fn is_cross_site_sendable(headers: &axum::http::HeaderMap) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    if bearer || headers.contains_key("inference-header-content-length") {
        return false;
    }
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else { return true };
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""].iter().any(|it| essence.eq_ignore_ascii_case(it))
}

/// MLflow's rule: a request body must be declared as JSON.
pub(crate) fn require_json(is_json: bool, body: &[u8]) -> Result<(), ApiError> {
    if is_json || body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    Err(ApiError::invalid("Bad Request. Content-Type must be one of ['application/json']."))
}

/// A request body declared as JSON, read whole within the body limit; rejections are MLflow-shaped.
pub(crate) struct JsonBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody, ApiError> {
        let json = is_json(req.headers());
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::invalid("The request body exceeds the server's limit (server.max_request_bytes)")
            } else {
                ApiError::new(plinth_core::ErrorCode::BadRequest, format!("Cannot read the request body: {e}"))
            }
        })?;
        require_json(json, &body)?;
        Ok(JsonBody(body))
    }
}

/// Extracts `Fields`: the query string for GET and DELETE-without-body; the JSON body otherwise,
/// with query parameters filling fields the body lacks.
pub(crate) struct MlflowRequest(pub(crate) Fields);

impl<S: Send + Sync> FromRequest<S> for MlflowRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<MlflowRequest, ApiError> {
        let query = Fields::from_query(req.uri().query().unwrap_or(""));
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Ok(MlflowRequest(query));
        }
        let JsonBody(body) = JsonBody::from_request(req, state).await?;
        let mut fields = Fields::from_json(&body)?;
        fields.merge_missing(query);
        Ok(MlflowRequest(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_page_elsewhere_could_send_without_a_preflight() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, axum::http::HeaderValue::from_str(v).expect("value"));
            }
            h
        };
        for sendable in [
            headers(&[]),
            headers(&[("content-type", "text/plain; charset=utf-8")]),
            headers(&[("content-type", "application/x-www-form-urlencoded")]),
            headers(&[("content-type", "multipart/form-data; boundary=x")]),
            // Cached Basic credentials ride along with a form.
            headers(&[("authorization", "Basic YTpi")]),
        ] {
            assert!(is_cross_site_sendable(&sendable), "{sendable:?}");
        }
        for not_sendable in [
            headers(&[("content-type", "application/json")]),
            headers(&[("content-type", "text/csv")]),
            headers(&[("content-type", "application/grpc")]),
            headers(&[("authorization", "Bearer plt_x_y")]),
            headers(&[("authorization", "bearer plt_x_y"), ("content-type", "text/plain")]),
            headers(&[("inference-header-content-length", "120")]),
        ] {
            assert!(!is_cross_site_sendable(&not_sendable), "{not_sendable:?}");
        }
    }

    #[test]
    fn query_and_json() {
        let f = Fields::from_query("run_ids=a&run_ids=b&max_results=5&flag=TRUE&x=a+b");
        assert_eq!(f.str_list("run_ids").expect("list"), ["a", "b"]);
        assert_eq!(f.opt_i64("max_results").expect("int"), Some(5));
        assert_eq!(f.opt_bool("flag").expect("bool"), Some(true));
        assert_eq!(f.str("x").expect("str"), "a b");
        let f = Fields::from_json(br#"{"value": "NaN", "v2": "-Infinity", "n": 3, "s": 31, "e": ""}"#).expect("json");
        assert!(f.f64("value").expect("nan").is_nan());
        assert_eq!(f.f64("v2").expect("inf"), f64::NEG_INFINITY);
        assert_eq!(f.i64("n").expect("n"), 3);
        assert!(f.str("s").is_err());
        assert!(f.str("e").is_err(), "empty is missing");
        assert_eq!(f.str_allow_empty("e").expect("empty ok"), "");
        let double = Fields::from_json(br#""{\"name\": \"x\"}""#).expect("double-encoded");
        assert_eq!(double.str("name").expect("name"), "x");
        assert!(Fields::from_json(b"{not json").is_err());
        assert!(Fields::from_json(b"[1]").is_err());
    }
}
