//! The Open Inference Protocol over gRPC (`design/protocols.md` §4.2): the service
//! `inference.GRPCInferenceService` with `ServerLive`, `ServerReady`, `ModelReady`,
//! `ServerMetadata`, `ModelMetadata` and `ModelInfer`, on the same port as everything else (the
//! listener speaks HTTP/1.1 and HTTP/2 with prior knowledge, which is what gRPC clients use over
//! plain TCP). Messages are read and written by `wire` (Protocol Buffers' wire format), field by
//! field as the protocol's `.proto` numbers them.
//!
//! Inputs come as typed contents (`fp32_contents`, …) or as `raw_input_contents` (little-endian
//! bytes per input, what `tritonclient` sends); outputs go back as `raw_output_contents`, as Triton
//! answers. Errors are gRPC statuses in the trailers (`grpc-status`, `grpc-message`):
//! `INVALID_ARGUMENT` for anything wrong with the request, `NOT_FOUND` for an unknown deployment,
//! `PERMISSION_DENIED`, `UNAVAILABLE` for a full queue or a model not loaded, `UNIMPLEMENTED` for
//! the methods of Triton's superset that are not served (model config, statistics, repository,
//! shared memory) and for compressed messages.
//!
//! Permissions: the routes need a signed-in caller; the model methods check READ on the deployment
//! named in the message (the message, not the path, names it).

mod wire;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::StreamBody;
use plinth_core::ErrorCode;
use plinth_core::auth::{Level, ResourceKind};
use plinth_serving::{Data, DataType, Tensor};

use self::wire::{LEN, Malformed, Reader, Writer};
use crate::AppState;
use crate::access::Need as N;
use crate::error::ApiError;
use crate::oip::{MAX_ELEMENTS, OipError};
use crate::routes::Routes;

pub(crate) fn routes() -> Routes {
    Routes::new().post("/inference.GRPCInferenceService/{method}", N::SignedIn, call)
}

/// A gRPC status: its code (`google.rpc.Code`) and message.
#[derive(Debug)]
struct Status {
    code: u8,
    message: String,
}

const INVALID_ARGUMENT: u8 = 3;
const NOT_FOUND: u8 = 5;
const PERMISSION_DENIED: u8 = 7;
const RESOURCE_EXHAUSTED: u8 = 8;
const UNIMPLEMENTED: u8 = 12;
const INTERNAL: u8 = 13;
const UNAVAILABLE: u8 = 14;
const UNAUTHENTICATED: u8 = 16;

impl Status {
    fn invalid(message: impl Into<String>) -> Status {
        Status { code: INVALID_ARGUMENT, message: message.into() }
    }
}

impl From<Malformed> for Status {
    fn from(e: Malformed) -> Status {
        Status::invalid(format!("the message is not a valid protobuf message: {}", e.0))
    }
}

impl From<OipError> for Status {
    fn from(e: OipError) -> Status {
        Status::invalid(e.0)
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match e.code() {
            ErrorCode::InvalidParameterValue | ErrorCode::BadRequest => INVALID_ARGUMENT,
            ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => NOT_FOUND,
            ErrorCode::PermissionDenied => PERMISSION_DENIED,
            ErrorCode::Unauthenticated => UNAUTHENTICATED,
            ErrorCode::RequestLimitExceeded => RESOURCE_EXHAUSTED,
            ErrorCode::TemporarilyUnavailable => UNAVAILABLE,
            ErrorCode::NotImplemented => UNIMPLEMENTED,
            ErrorCode::ResourceAlreadyExists
            | ErrorCode::InvalidState
            | ErrorCode::ResourceConflict
            | ErrorCode::InvalidStateTransition
            | ErrorCode::InternalError => INTERNAL,
        };
        Status { code, message: e.message().to_owned() }
    }
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself.
const MESSAGE_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

fn grpc_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
}

impl IntoResponse for Status {
    /// A trailers-only answer: the status in the only header block.
    fn into_response(self) -> Response {
        let mut res = StatusCode::OK.into_response();
        let h = res.headers_mut();
        grpc_headers(h);
        h.insert("grpc-status", HeaderValue::from(u16::from(self.code)));
        let message = percent_encoding::utf8_percent_encode(&self.message, MESSAGE_ESCAPES).to_string();
        if let Ok(v) = HeaderValue::from_str(&message) {
            h.insert("grpc-message", v);
        }
        res
    }
}

/// A successful answer: one length-prefixed message, then `grpc-status: 0` in the trailers.
fn answer(message: Vec<u8>) -> Response {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> =
        vec![Ok(http_body::Frame::data(Bytes::from(framed))), Ok(http_body::Frame::trailers(trailers))];
    let mut res = Response::new(axum::body::Body::new(StreamBody::new(futures::stream::iter(frames))));
    grpc_headers(res.headers_mut());
    res
}

/// The one message of a unary call's body (a compressed flag, a 4-byte big-endian length, the message).
fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let Some((&[compressed, a, b, c, d], message)) = body.split_first_chunk::<5>() else {
        return Err(Status::invalid("the request has no gRPC message"));
    };
    if compressed != 0 {
        return Err(Status { code: UNIMPLEMENTED, message: "compressed messages are not accepted; send them uncompressed".into() });
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len != message.len() {
        return Err(Status::invalid(format!("the gRPC frame says {len} bytes and carries {}", message.len())));
    }
    Ok(message)
}

type Ext = Option<axum::Extension<plinth_auth::Principal>>;

async fn call(State(s): State<AppState>, Path(method): Path<String>, p: Ext, headers: HeaderMap, body: Bytes) -> Response {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().starts_with("application/grpc")));
    if !is_grpc {
        return Status::invalid("a gRPC call's content type is application/grpc").into_response();
    }
    let res = async {
        let message = unframe(&body)?;
        let principal = p.as_ref().map(|e| &e.0);
        match method.as_str() {
            "ServerLive" => Ok(single_bool(true)),
            "ServerReady" => Ok(single_bool(s.serving.all_ready())),
            "ServerMetadata" => {
                let mut w = Writer::default();
                w.string(1, "plinth");
                w.string(2, s.version);
                Ok(w.buf)
            }
            "ModelReady" => {
                let (name, _) = name_and_version(message)?;
                allowed(&s, principal, &name).await?;
                Ok(single_bool(s.serving.ready(&name).map_err(crate::deployments::serving_error)?))
            }
            "ModelMetadata" => {
                let (name, _) = name_and_version(message)?;
                allowed(&s, principal, &name).await?;
                model_metadata(&s, &name)
            }
            "ModelInfer" => infer(&s, principal, message).await,
            other => Err(Status { code: UNIMPLEMENTED, message: format!("method {other} is not served") }),
        }
    }
    .await;
    match res {
        Ok(message) => answer(message),
        Err(status) => status.into_response(),
    }
}

/// With auth on, READ on the deployment (the message names it, so the route cannot).
async fn allowed(s: &AppState, principal: Option<&plinth_auth::Principal>, name: &str) -> Result<(), Status> {
    let Some(principal) = principal else { return Ok(()) };
    if principal.is_admin() || s.auth.allows(principal, ResourceKind::Deployment, name, Level::Read).await.map_err(ApiError::from)? {
        return Ok(());
    }
    Err(Status { code: PERMISSION_DENIED, message: "lacks READ on this deployment".into() })
}

fn single_bool(value: bool) -> Vec<u8> {
    let mut w = Writer::default();
    w.bool(1, value);
    w.buf
}

/// `ModelReadyRequest` and `ModelMetadataRequest`: a name (1) and a version (2).
fn name_and_version(message: &[u8]) -> Result<(String, String), Status> {
    let mut r = Reader::new(message);
    let (mut name, mut version) = (String::new(), String::new());
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => name = r.string(wire)?,
            2 => version = r.string(wire)?,
            _ => r.skip(wire)?,
        }
    }
    if name.is_empty() {
        return Err(Status::invalid("the request names no model"));
    }
    Ok((name, version))
}

fn model_metadata(s: &AppState, name: &str) -> Result<Vec<u8>, Status> {
    let meta = s.serving.metadata(name).map_err(crate::deployments::serving_error)?;
    let mut w = Writer::default();
    w.string(1, name);
    for v in &meta.versions {
        w.string(2, &v.to_string());
    }
    w.string(3, meta.platform);
    for (field, specs) in [(4, &meta.inputs), (5, &meta.outputs)] {
        for spec in specs {
            w.message(field, |t| {
                t.string(1, &spec.name);
                t.string(2, spec.datatype.as_str());
                t.packed_i64(3, &spec.shape);
            });
        }
    }
    Ok(w.buf)
}

/// An input tensor as `ModelInferRequest` carries it, before its data is typed.
#[derive(Default)]
struct Input<'a> {
    name: String,
    datatype: String,
    shape: Vec<u64>,
    contents: Option<&'a [u8]>,
}

/// `ModelInferRequest`: model_name 1, model_version 2, id 3, parameters 4, inputs 5, outputs 6,
/// raw_input_contents 7.
struct Request<'a> {
    model: String,
    id: String,
    inputs: Vec<Input<'a>>,
    outputs: Vec<String>,
    raw: Vec<&'a [u8]>,
}

fn decode_request(message: &[u8]) -> Result<Request<'_>, Status> {
    let mut r = Reader::new(message);
    let mut req = Request { model: String::new(), id: String::new(), inputs: Vec::new(), outputs: Vec::new(), raw: Vec::new() };
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => req.model = r.string(wire)?,
            3 => req.id = r.string(wire)?,
            5 => {
                wire::expect(wire, LEN)?;
                let mut t = Reader::new(r.len_delimited()?);
                let mut input = Input::default();
                while let Some((field, wire)) = t.key()? {
                    match field {
                        1 => input.name = t.string(wire)?,
                        2 => input.datatype = t.string(wire)?,
                        3 => t.varints(wire, &mut input.shape)?,
                        5 => {
                            wire::expect(wire, LEN)?;
                            input.contents = Some(t.len_delimited()?);
                        }
                        _ => t.skip(wire)?,
                    }
                }
                req.inputs.push(input);
            }
            6 => {
                wire::expect(wire, LEN)?;
                let mut o = Reader::new(r.len_delimited()?);
                while let Some((field, wire)) = o.key()? {
                    match field {
                        1 => req.outputs.push(o.string(wire)?),
                        _ => o.skip(wire)?,
                    }
                }
            }
            7 => {
                wire::expect(wire, LEN)?;
                req.raw.push(r.len_delimited()?);
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(req)
}

/// The typed contents of one input (`InferTensorContents`), as `datatype`'s data.
fn typed_contents(name: &str, datatype: DataType, contents: &[u8], count: usize) -> Result<Data, Status> {
    // The field that carries each datatype.
    let wanted: u32 = match datatype {
        DataType::Bool => 1,
        DataType::I8 | DataType::I16 | DataType::I32 => 2,
        DataType::I64 => 3,
        DataType::U8 | DataType::U16 | DataType::U32 => 4,
        DataType::U64 => 5,
        DataType::F32 => 6,
        DataType::F64 => 7,
        DataType::Bytes => 8,
    };
    let mut r = Reader::new(contents);
    let mut ints: Vec<u64> = Vec::new();
    let mut f32s: Vec<[u8; 4]> = Vec::new();
    let mut f64s: Vec<[u8; 8]> = Vec::new();
    let mut bytes: Vec<Vec<u8>> = Vec::new();
    while let Some((field, wire)) = r.key()? {
        if field != wanted {
            if (1..=8).contains(&field) {
                return Err(Status::invalid(format!(
                    "input '{name}' is {datatype}, and its contents are in another type's field ({field})"
                )));
            }
            r.skip(wire)?;
            continue;
        }
        match field {
            6 => r.fixed(wire, &mut f32s)?,
            7 => r.fixed(wire, &mut f64s)?,
            8 => {
                wire::expect(wire, LEN)?;
                bytes.push(r.len_delimited()?.to_vec());
            }
            _ => r.varints(wire, &mut ints)?,
        }
    }
    let got = match datatype {
        DataType::F32 => f32s.len(),
        DataType::F64 => f64s.len(),
        DataType::Bytes => bytes.len(),
        _ => ints.len(),
    };
    if got != count {
        return Err(Status::invalid(format!("input '{name}' has {got} elements for a shape of {count}")));
    }
    fn narrow<T: TryFrom<i64>>(name: &str, ints: &[u64], signed: bool) -> Result<Vec<T>, Status> {
        ints.iter()
            .map(|v| {
                // int32 fields carry negative values sign-extended to 64 bits.
                let as_i64 = if signed {
                    *v as i64
                } else {
                    i64::try_from(*v).map_err(|_| Status::invalid(format!("input '{name}': {v} is out of range")))?
                };
                T::try_from(as_i64).map_err(|_| Status::invalid(format!("input '{name}': {as_i64} is out of its datatype's range")))
            })
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => Data::Bool(ints.iter().map(|v| *v != 0).collect()),
        DataType::I8 => Data::I8(narrow(name, &ints, true)?),
        DataType::I16 => Data::I16(narrow(name, &ints, true)?),
        DataType::I32 => Data::I32(narrow(name, &ints, true)?),
        DataType::I64 => Data::I64(ints.iter().map(|v| *v as i64).collect()),
        DataType::U8 => Data::U8(narrow(name, &ints, false)?),
        DataType::U16 => Data::U16(narrow(name, &ints, false)?),
        DataType::U32 => Data::U32(narrow(name, &ints, false)?),
        DataType::U64 => Data::U64(ints),
        DataType::F32 => Data::F32(f32s.into_iter().map(f32::from_le_bytes).collect()),
        DataType::F64 => Data::F64(f64s.into_iter().map(f64::from_le_bytes).collect()),
        DataType::Bytes => Data::Bytes(bytes),
    })
}

fn tensors(req: &Request<'_>) -> Result<Vec<Tensor>, Status> {
    if req.inputs.is_empty() {
        return Err(Status::invalid("the request has no inputs"));
    }
    if !req.raw.is_empty() && req.raw.len() != req.inputs.len() {
        return Err(Status::invalid(format!("raw_input_contents has {} entries for {} inputs", req.raw.len(), req.inputs.len())));
    }
    let mut budget = MAX_ELEMENTS;
    let mut out = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
        let name = input.name.as_str();
        let datatype = DataType::parse(&input.datatype).map_err(|e| Status::invalid(format!("input '{name}': {e}")))?;
        let shape = input
            .shape
            .iter()
            .map(|d| usize::try_from(*d).ok().filter(|d| i64::try_from(*d).is_ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| Status::invalid(format!("input '{name}': sizes must be whole numbers")))?;
        let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).filter(|n| *n <= budget).ok_or_else(|| {
            Status::invalid(format!("input '{name}' has shape {shape:?}: more than the {MAX_ELEMENTS} elements a request may carry"))
        })?;
        budget -= count;
        let data = match (req.raw.get(i), input.contents) {
            (Some(_), Some(_)) => return Err(Status::invalid(format!("input '{name}' has both contents and raw_input_contents"))),
            (Some(raw), None) => crate::oip::from_raw(name, datatype, count, raw)?,
            (None, Some(contents)) => typed_contents(name, datatype, contents, count)?,
            (None, None) => return Err(Status::invalid(format!("input '{name}' has no contents"))),
        };
        out.push(Tensor::new(name, shape, data).map_err(|e| Status::invalid(e.to_string()))?);
    }
    Ok(out)
}

async fn infer(s: &AppState, principal: Option<&plinth_auth::Principal>, message: &[u8]) -> Result<Vec<u8>, Status> {
    let req = decode_request(message)?;
    if req.model.is_empty() {
        return Err(Status::invalid("the request names no model"));
    }
    allowed(s, principal, &req.model).await?;
    let inputs = tensors(&req)?;
    let info =
        plinth_serving::RequestInfo { id: (!req.id.is_empty()).then_some(req.id.as_str()), routing_key: None, return_features: false };
    let answer = s.serving.infer(&req.model, inputs, info).await.map_err(crate::deployments::serving_error)?;
    if let Some(missing) = req.outputs.iter().find(|o| !answer.outputs.iter().any(|t| &t.name == *o)) {
        return Err(Status::invalid(format!("unknown output '{missing}'")));
    }
    let chosen: Vec<&Tensor> = answer.outputs.iter().filter(|t| req.outputs.is_empty() || req.outputs.contains(&t.name)).collect();
    let mut w = Writer::default();
    w.string(1, &req.model);
    w.string(2, &answer.version.to_string());
    w.string(3, &req.id);
    // parameters: {"variant": string_param}
    w.message(4, |entry| {
        entry.string(1, "variant");
        entry.message(2, |p| p.bytes(3, answer.variant.as_bytes()));
    });
    for t in &chosen {
        w.message(5, |o| {
            o.string(1, &t.name);
            o.string(2, t.datatype().as_str());
            let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
            o.packed_i64(3, &shape);
        });
    }
    for t in &chosen {
        w.bytes(6, &crate::oip::raw_bytes(t));
    }
    Ok(w.buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ModelInferRequest` with one FP32 input, as typed contents or raw bytes.
    fn request(raw: bool, values: &[f32], shape: &[i64]) -> Vec<u8> {
        let mut w = Writer::default();
        w.string(1, "m");
        w.string(3, "req-1");
        w.message(5, |t| {
            t.string(1, "X");
            t.string(2, "FP32");
            t.packed_i64(3, shape);
            if !raw {
                t.message(5, |c| {
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    c.bytes(6, &bytes);
                });
            }
        });
        w.message(6, |o| o.string(1, "Y"));
        if raw {
            w.bytes(7, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        }
        w.buf
    }

    #[test]
    fn typed_and_raw_contents_give_the_same_tensor() {
        for raw in [false, true] {
            let message = request(raw, &[1.0, 2.5, -3.0, 4.0], &[2, 2]);
            let req = decode_request(&message).expect("decoded");
            assert_eq!((req.model.as_str(), req.id.as_str(), req.outputs.clone()), ("m", "req-1", vec!["Y".to_owned()]));
            let t = tensors(&req).expect("tensors");
            assert_eq!(t, vec![Tensor::new("X", vec![2, 2], Data::F32(vec![1.0, 2.5, -3.0, 4.0])).expect("tensor")]);
        }
    }

    #[test]
    fn integer_contents_are_range_checked_and_sign_extended() {
        let mut c = Writer::default();
        let mut packed = Writer::default();
        for v in [-1i64, 127, -128] {
            packed.varint(v as u64);
        }
        c.bytes(2, &packed.buf);
        assert_eq!(typed_contents("x", DataType::I8, &c.buf, 3).expect("int8"), Data::I8(vec![-1, 127, -128]));
        let mut big = Writer::default();
        let mut packed = Writer::default();
        packed.varint(300);
        big.bytes(2, &packed.buf);
        assert!(typed_contents("x", DataType::I8, &big.buf, 1).is_err());
        assert!(typed_contents("x", DataType::F32, &big.buf, 1).expect_err("wrong field").message.contains("another type's field"));
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (request(false, &[1.0, 2.0, 3.0], &[2, 2]), "3 elements for a shape of 4"),
            (request(true, &[1.0, 2.0, 3.0], &[2, 2]), "bytes of binary data"),
            (vec![0x2a, 0x03, 0x0a], "not a valid protobuf message"),
        ];
        for (message, want) in cases {
            let err = decode_request(&message).and_then(|r| tensors(&r).map(drop)).expect_err(want);
            assert_eq!(err.code, INVALID_ARGUMENT);
            assert!(err.message.contains(want), "{} should mention {want}", err.message);
        }
        assert_eq!(unframe(&[1, 0, 0, 0, 0]).expect_err("compressed").code, UNIMPLEMENTED);
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).expect_err("short").message.contains("says 9 bytes"));
        assert_eq!(unframe(&[0, 0, 0, 0, 1, 7]).expect("one byte"), &[7]);
    }
}
