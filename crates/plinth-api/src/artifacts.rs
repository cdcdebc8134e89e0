//! The artifact proxy (`mlflow-artifacts`): streamed upload, download, listing, deletion, multipart.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use plinth_blob::{ArtifactPath, ByteStream, CompletedPart};
use plinth_core::validation::InvalidParameter;
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::fields::{Fields, JsonBody, MlflowRequest};
use crate::identity::Caller;
use crate::routes::Routes;
use crate::{ApiError, AppState};
use plinth_core::auth::Level::{Edit, Read};

pub(crate) fn routes() -> Routes {
    Routes::new()
        // The artifact proxy: paths start with the experiment id.
        .get("/artifacts", N::Experiment(Read, L::ArtifactPath), list)
        .get("/artifacts/", N::Experiment(Read, L::ArtifactPath), list)
        .put("/artifacts/{*path}", N::Experiment(Edit, L::ArtifactPath), upload)
        .get("/artifacts/{*path}", N::Experiment(Read, L::ArtifactPath), download)
        .delete("/artifacts/{*path}", N::Experiment(Edit, L::ArtifactPath), delete)
        .post("/mpu/create/{*path}", N::Experiment(Edit, L::ArtifactPath), mpu_create)
        // A part needs EDIT on the experiment its upload writes to, like every other write.
        .put("/mpu/part/{upload_id}/{part_number}", N::Experiment(Edit, L::UploadPath("upload_id")), mpu_part)
        .post("/mpu/complete/{*path}", N::Experiment(Edit, L::ArtifactPath), mpu_complete)
        .post("/mpu/abort/{*path}", N::Experiment(Edit, L::ArtifactPath), mpu_abort)
}

/// The proxy routes exist only while artifacts are proxied; otherwise clients write to the
/// artifact root themselves and the server must not touch the destination on their behalf. Every
/// proxy handler takes `Serving` first, which answers `ENDPOINT_NOT_FOUND` when the proxy is off.
pub(crate) struct Serving;

impl FromRequestParts<AppState> for Serving {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, s: &AppState) -> Result<Serving, ApiError> {
        if s.serve_artifacts {
            Ok(Serving)
        } else {
            Err(ApiError::new(
                plinth_core::ErrorCode::EndpointNotFound,
                "artifact serving is disabled: this server's artifact root is not proxied (started with --no-serve-artifacts or a direct --default-artifact-root)",
            ))
        }
    }
}

fn body_stream(req: Request) -> ByteStream {
    Box::pin(req.into_body().into_data_stream().map_err(std::io::Error::other))
}

async fn upload(
    _: Serving,
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let path = ArtifactPath::parse(&path)?;
    s.tracking.acting(&actor).upload_artifact(&path, body_stream(req)).await?;
    Ok(Json(json!({})))
}

/// The content type an artifact is served with, from its file name, as MLflow's server guesses
/// it: text formats (configuration, code, tables, `MLmodel`, `MLproject`) as `text/plain`, a few
/// media types by extension, anything else as `application/octet-stream`. Every download is an
/// attachment with `nosniff`, so a browser never renders an artifact on the server's origin.
pub(crate) fn content_type(name: &str) -> &'static str {
    // A name without an extension is matched whole (`MLmodel`).
    let ext = name.rsplit_once('.').map_or(name, |(_, ext)| ext);
    const TEXT: &[&str] = &[
        "txt",
        "log",
        "err",
        "cfg",
        "conf",
        "cnf",
        "cf",
        "ini",
        "properties",
        "prop",
        "hocon",
        "toml",
        "yaml",
        "yml",
        "xml",
        "json",
        "js",
        "py",
        "py3",
        "csv",
        "tsv",
        "md",
        "rst",
        "MLmodel",
        "MLproject",
    ];
    if TEXT.contains(&ext) {
        return "text/plain";
    }
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

/// A stored file as a download: its content type, length, `attachment` disposition and `nosniff`.
pub(crate) fn file_response(path: &ArtifactPath, object: plinth_blob::Object) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path.file_name())));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", path.file_name().replace(['"', '\\'], ""))) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    (headers, Body::from_stream(object.body)).into_response()
}

async fn download(_: Serving, State(s): State<AppState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let path = ArtifactPath::parse(&path)?;
    let object = s.tracking.blobs().get(&path).await?;
    Ok(file_response(&path, object))
}

/// Lists a directory; entry paths are base names, as MLflow's proxy answers.
async fn list(_: Serving, State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Result<Json<Value>, ApiError> {
    let path = ArtifactPath::parse(&f.opt_str("path")?.unwrap_or_default())?;
    let entries = s.tracking.blobs().list(&path).await?;
    let files: Vec<Value> = entries.iter().map(|e| crate::json::file_info(&e.name, e)).collect();
    Ok(Json(json!({"files": files})))
}

async fn delete(_: Serving, State(s): State<AppState>, Caller(actor): Caller, Path(path): Path<String>) -> Result<Json<Value>, ApiError> {
    let path = ArtifactPath::parse(&path)?;
    s.tracking.acting(&actor).delete_artifact(&path).await?;
    Ok(Json(json!({})))
}

/// The base URL clients used to reach us, for the part URLs of a multipart upload; a reverse
/// proxy's `X-Forwarded-Proto` and `X-Forwarded-Host` take precedence.
fn base_url(headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim);
    let proto = header("x-forwarded-proto").filter(|p| *p == "http" || *p == "https").unwrap_or("http");
    let host = header("x-forwarded-host").or_else(|| header("host")).unwrap_or("127.0.0.1");
    format!("{proto}://{host}")
}

/// MLflow's client sends the multipart requests to `/api/2.0/...`; part URLs follow the same prefix.
const MPU_PART_PREFIX: &str = "/api/2.0/mlflow-artifacts/mpu/part";

/// The JSON fields of a request whose path was validated first (a bad path answers "Invalid path").
async fn fields_after_path(state: &AppState, req: Request) -> Result<Fields, ApiError> {
    let JsonBody(body) = JsonBody::from_request(req, state).await?;
    Fields::from_json(&body)
}

/// The object a multipart upload writes: the URL's directory joined with the base name of the
/// client's local file (the `path` field), as MLflow's artifact repositories name it.
fn mpu_target(dir: &ArtifactPath, f: &Fields) -> Result<ArtifactPath, ApiError> {
    let local = f.str("path")?;
    let name = local.rsplit(['/', '\\']).next().unwrap_or_default();
    if name.is_empty() {
        return Err(plinth_blob::Error::InvalidPath.into());
    }
    Ok(dir.join(name)?)
}

async fn mpu_create(_: Serving, State(s): State<AppState>, Path(path): Path<String>, req: Request) -> Result<Json<Value>, ApiError> {
    let dir = ArtifactPath::parse(&path)?;
    let headers = req.headers().clone();
    let f = fields_after_path(&s, req).await?;
    let path = mpu_target(&dir, &f)?;
    let num_parts = f.opt_i64("num_parts")?.unwrap_or(1);
    if !(1..=10_000).contains(&num_parts) {
        return Err(InvalidParameter::invalid_value("num_parts", &num_parts.to_string(), "must be between 1 and 10000").into());
    }
    let upload_id = s.tracking.blobs().create_multipart(&path).await?;
    let base = base_url(&headers);
    let credentials: Vec<Value> = (1..=num_parts)
        .map(|n| json!({"url": format!("{base}{MPU_PART_PREFIX}/{upload_id}/{n}"), "part_number": n, "headers": {}}))
        .collect();
    Ok(Json(json!({"upload_id": upload_id, "credentials": credentials})))
}

async fn mpu_part(
    _: Serving,
    State(s): State<AppState>,
    Path((upload_id, part_number)): Path<(String, u32)>,
    req: Request,
) -> Result<Response, ApiError> {
    let etag = s.tracking.blobs().put_part(&upload_id, part_number, body_stream(req)).await?;
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, value);
    }
    Ok((headers, Json(json!({}))).into_response())
}

fn upload_id(f: &Fields) -> Result<String, ApiError> {
    f.str("upload_id")
}

async fn mpu_complete(
    _: Serving,
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let dir = ArtifactPath::parse(&path)?;
    let f = fields_after_path(&s, req).await?;
    let path = mpu_target(&dir, &f)?;
    let parts = f
        .objects("parts")?
        .iter()
        .map(|p| {
            let number = p.i64("part_number")?;
            let part_number = u32::try_from(number).map_err(|_| InvalidParameter::invalid_value("part_number", &number.to_string(), ""))?;
            Ok(CompletedPart { part_number, etag: p.str("etag")?.trim_matches('"').to_owned() })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    if parts.is_empty() {
        return Err(InvalidParameter::missing("parts").into());
    }
    s.tracking.acting(&actor).complete_multipart(&upload_id(&f)?, &path, &parts).await?;
    Ok(Json(json!({})))
}

async fn mpu_abort(_: Serving, State(s): State<AppState>, Path(path): Path<String>, req: Request) -> Result<Json<Value>, ApiError> {
    let dir = ArtifactPath::parse(&path)?;
    let f = fields_after_path(&s, req).await?;
    let path = mpu_target(&dir, &f)?;
    s.tracking.blobs().abort_multipart(&upload_id(&f)?, &path).await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn content_types_follow_mlflow() {
        for (name, want) in [
            ("MLmodel", "text/plain"),
            ("MLproject", "text/plain"),
            ("conda.yaml", "text/plain"),
            ("metrics.json", "text/plain"),
            ("train.py", "text/plain"),
            ("table.csv", "text/plain"),
            ("plot.png", "image/png"),
            ("PLOT.PNG", "image/png"),
            ("report.html", "text/html"),
            ("model.pkl", "application/octet-stream"),
            ("data.parquet", "application/octet-stream"),
            ("mlmodel", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), want, "{name}");
        }
    }
}
