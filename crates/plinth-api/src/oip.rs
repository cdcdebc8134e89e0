//! The Open Inference Protocol's JSON tensors (`design/protocols.md` §4.1): an inference request's
//! `inputs` decoded into `plinth_serving::Tensor`s, checked against their declared shapes and
//! datatypes, and output tensors encoded for the answer. Serving's routes (`/v2/models/…/infer`)
//! are built on it (issue 14).
//!
//! Triton's binary tensor data extension is decoded and encoded here too (`decode_request_with`,
//! `encode_binary`): a JSON header followed by raw little-endian tensor bytes, inputs sized by
//! `parameters.binary_data_size`, outputs asked for with `parameters.binary_data` or the request's
//! `parameters.binary_data_output`; BOOL is one byte, BYTES elements a 4-byte length and the bytes.
//!
//! `data` may be flat (row-major) or nested to the tensor's shape; a nesting that does not match
//! the shape (ragged rows, a wrong depth) is refused. Numbers must fit their datatype exactly:
//! `INT8` takes -128..=127, an integer type takes no fraction, `BOOL` takes `true`/`false`, and
//! `BYTES` takes strings. `FP32` takes any JSON number, rounded to the nearest `f32`.

use plinth_serving::{Data, DataType, Tensor, TensorError};
use serde_json::{Value, json};

/// Most elements one request may carry across its inputs.
pub const MAX_ELEMENTS: usize = 16 * 1024 * 1024;

/// An inference request body: its id, its input tensors, the outputs it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct InferBody {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// The outputs asked for by name; empty: every output.
    pub outputs: Vec<String>,
    /// Outputs to answer as raw bytes (Triton's binary extension), by name.
    pub binary_outputs: Vec<String>,
    /// Every output as raw bytes (`parameters.binary_data_output`).
    pub all_binary: bool,
}

impl InferBody {
    /// Whether the answer carries `name` as raw bytes.
    pub fn wants_binary(&self, name: &str) -> bool {
        self.all_binary || self.binary_outputs.iter().any(|o| o == name)
    }
}

/// Why a request body is not a valid inference request; the protocol answers it as
/// `{"error": message}` with status 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OipError(pub String);

impl From<TensorError> for OipError {
    fn from(e: TensorError) -> OipError {
        OipError(e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> OipError {
    OipError(message.into())
}

/// Decodes an inference request body.
pub fn decode_request(body: &Value) -> Result<InferBody, OipError> {
    decode_request_with(body, &[])
}

/// Decodes an inference request whose JSON header is `body` and whose binary inputs (those with
/// `parameters.binary_data_size`) are, in input order, the bytes of `binary`.
pub fn decode_request_with(body: &Value, binary: &[u8]) -> Result<InferBody, OipError> {
    let obj = body.as_object().ok_or_else(|| invalid("the request must be a JSON object"))?;
    if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "id" | "parameters" | "inputs" | "outputs")) {
        return Err(invalid(format!("unknown field '{key}' (an inference request has id, parameters, inputs and outputs)")));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("id must be a string")),
    };
    let inputs = obj.get("inputs").and_then(Value::as_array).ok_or_else(|| invalid("inputs must be a list of tensors"))?;
    if inputs.is_empty() {
        return Err(invalid("inputs must not be empty"));
    }
    let mut budget = MAX_ELEMENTS;
    let mut rest = binary;
    let inputs = inputs.iter().map(|t| decode_tensor(t, &mut budget, &mut rest)).collect::<Result<Vec<_>, _>>()?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "the request carries {} bytes of binary data that no input's binary_data_size accounts for",
            rest.len()
        )));
    }
    let flag = |v: Option<&Value>, what: &str| match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("{what} must be true or false"))),
    };
    let all_binary = flag(obj.get("parameters").and_then(|p| p.get("binary_data_output")), "parameters.binary_data_output")?;
    let mut binary_outputs = Vec::new();
    if let Some(Value::Array(items)) = obj.get("outputs") {
        for o in items {
            if flag(o.get("parameters").and_then(|p| p.get("binary_data")), "an output's parameters.binary_data")?
                && let Some(name) = o.get("name").and_then(Value::as_str)
            {
                binary_outputs.push(name.to_owned());
            }
        }
    }
    let outputs = match obj.get("outputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|o| o.get("name").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid("every requested output needs a name")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("outputs must be a list")),
    };
    Ok(InferBody { id, inputs, outputs, binary_outputs, all_binary })
}

fn decode_tensor(t: &Value, budget: &mut usize, binary: &mut &[u8]) -> Result<Tensor, OipError> {
    let name = t.get("name").and_then(Value::as_str).ok_or_else(|| invalid("every input needs a name"))?;
    let datatype =
        DataType::parse(t.get("datatype").and_then(Value::as_str).ok_or_else(|| invalid(format!("input '{name}' needs a datatype")))?)?;
    let shape = t
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("input '{name}' needs a shape (a list of sizes)")))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| invalid(format!("input '{name}': sizes must be whole numbers, not {d}")))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let expected =
        shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).filter(|n| *n <= *budget).ok_or_else(|| {
            invalid(format!("input '{name}' has shape {shape:?}: more than the {MAX_ELEMENTS} elements a request may carry"))
        })?;
    *budget -= expected;
    if let Some(size) = t.get("parameters").and_then(|p| p.get("binary_data_size")) {
        let size = size
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| invalid(format!("input '{name}': binary_data_size must be a whole number")))?;
        if t.get("data").is_some() {
            return Err(invalid(format!("input '{name}' has both data and binary_data_size")));
        }
        if size > binary.len() {
            return Err(invalid(format!("input '{name}' declares {size} bytes of binary data; the request has {} left", binary.len())));
        }
        let (mine, rest) = binary.split_at(size);
        *binary = rest;
        return Ok(Tensor::new(name, shape, from_raw(name, datatype, expected, mine)?)?);
    }
    let data = t.get("data").ok_or_else(|| invalid(format!("input '{name}' has no data")))?;
    let mut flat = Vec::with_capacity(expected);
    flatten(data, &shape, 0, name, &mut flat)?;
    Ok(Tensor::new(name, shape, convert(name, datatype, &flat)?)?)
}

/// A tensor of `datatype` from nested JSON lists, its shape taken from the nesting (rectangular
/// at every depth; a scalar is a tensor of no dimensions). `budget`: elements the request may
/// still carry.
pub(crate) fn tensor_from_nested(name: &str, datatype: DataType, data: &Value, budget: &mut usize) -> Result<Tensor, OipError> {
    let mut shape = Vec::new();
    let mut level = data;
    while let Value::Array(items) = level {
        shape.push(items.len());
        if shape.len() > plinth_serving::tensor::MAX_DIMS {
            return Err(invalid(format!("input '{name}' is nested deeper than {} levels", plinth_serving::tensor::MAX_DIMS)));
        }
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    let count =
        shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).filter(|n| *n <= *budget).ok_or_else(|| {
            invalid(format!("input '{name}' has shape {shape:?}: more than the {MAX_ELEMENTS} elements a request may carry"))
        })?;
    *budget -= count;
    let mut flat = Vec::with_capacity(count);
    if shape.is_empty() {
        flat.push(data);
    } else {
        flatten_exact(data, &shape, 0, name, &mut flat)?;
    }
    Ok(Tensor::new(name, shape, convert(name, datatype, &flat)?)?)
}

/// Collects the elements of `data` row-major, every level exactly as long as `shape` says.
fn flatten_exact<'a>(data: &'a Value, shape: &[usize], depth: usize, name: &str, out: &mut Vec<&'a Value>) -> Result<(), OipError> {
    let items = match data {
        Value::Array(items) if items.len() == shape[depth] => items,
        _ => {
            return Err(invalid(format!(
                "input '{name}': its data does not follow its shape {shape:?} (level {} is not a list of {})",
                depth + 1,
                shape[depth]
            )));
        }
    };
    for item in items {
        if depth + 1 == shape.len() {
            if item.is_array() {
                return Err(invalid(format!("input '{name}': its data does not follow its shape {shape:?} (nested too deep)")));
            }
            out.push(item);
        } else {
            flatten_exact(item, shape, depth + 1, name, out)?;
        }
    }
    Ok(())
}

/// Collects the elements of `data` row-major. Flat data is taken as is (its length is checked
/// against the shape later); nested data must follow the shape at every depth.
fn flatten<'a>(data: &'a Value, shape: &[usize], depth: usize, name: &str, out: &mut Vec<&'a Value>) -> Result<(), OipError> {
    match data {
        Value::Array(items) if depth == 0 && items.iter().all(|v| !v.is_array()) => {
            out.extend(items);
            Ok(())
        }
        Value::Array(items) => {
            let want = shape.get(depth).copied();
            if want != Some(items.len()) {
                return Err(invalid(format!(
                    "input '{name}': its data does not follow its shape {shape:?} (level {} has {} elements)",
                    depth + 1,
                    items.len()
                )));
            }
            for item in items {
                if depth + 1 == shape.len() {
                    if item.is_array() {
                        return Err(invalid(format!("input '{name}': its data is nested deeper than its shape {shape:?}")));
                    }
                    out.push(item);
                } else {
                    flatten(item, shape, depth + 1, name, out)?;
                }
            }
            Ok(())
        }
        scalar if depth == 0 && shape.is_empty() => {
            out.push(scalar);
            Ok(())
        }
        _ => Err(invalid(format!("input '{name}': data must be a list"))),
    }
}

fn convert(name: &str, datatype: DataType, values: &[&Value]) -> Result<Data, OipError> {
    let wrong = |v: &Value| invalid(format!("input '{name}' is {datatype}, and {v} is not one"));
    fn ints<T: TryFrom<i64>>(values: &[&Value], wrong: impl Fn(&Value) -> OipError) -> Result<Vec<T>, OipError> {
        values.iter().map(|v| v.as_i64().and_then(|i| T::try_from(i).ok()).ok_or_else(|| wrong(v))).collect()
    }
    fn uints<T: TryFrom<u64>>(values: &[&Value], wrong: impl Fn(&Value) -> OipError) -> Result<Vec<T>, OipError> {
        values.iter().map(|v| v.as_u64().and_then(|i| T::try_from(i).ok()).ok_or_else(|| wrong(v))).collect()
    }
    Ok(match datatype {
        DataType::Bool => Data::Bool(values.iter().map(|v| v.as_bool().ok_or_else(|| wrong(v))).collect::<Result<_, _>>()?),
        DataType::U8 => Data::U8(uints(values, wrong)?),
        DataType::U16 => Data::U16(uints(values, wrong)?),
        DataType::U32 => Data::U32(uints(values, wrong)?),
        DataType::U64 => Data::U64(uints(values, wrong)?),
        DataType::I8 => Data::I8(ints(values, wrong)?),
        DataType::I16 => Data::I16(ints(values, wrong)?),
        DataType::I32 => Data::I32(ints(values, wrong)?),
        DataType::I64 => Data::I64(ints(values, wrong)?),
        DataType::F32 => Data::F32(values.iter().map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| wrong(v))).collect::<Result<_, _>>()?),
        DataType::F64 => Data::F64(values.iter().map(|v| v.as_f64().ok_or_else(|| wrong(v))).collect::<Result<_, _>>()?),
        DataType::Bytes => {
            Data::Bytes(values.iter().map(|v| v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| wrong(v))).collect::<Result<_, _>>()?)
        }
    })
}

/// `count` elements of `datatype` from little-endian `bytes` (BOOL one byte each; BYTES a 4-byte
/// length before each element), all of the bytes and nothing more.
pub(crate) fn from_raw(name: &str, datatype: DataType, count: usize, bytes: &[u8]) -> Result<Data, OipError> {
    fn fixed<const N: usize, T>(name: &str, count: usize, bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, OipError> {
        if bytes.len() != count.saturating_mul(N) {
            return Err(invalid(format!("input '{name}': {} bytes of binary data for {count} elements of {N} bytes", bytes.len())));
        }
        Ok(bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect())
    }
    Ok(match datatype {
        DataType::Bool => Data::Bool(fixed::<1, _>(name, count, bytes, |[b]| b != 0)?),
        DataType::U8 => Data::U8(fixed::<1, _>(name, count, bytes, |[b]| b)?),
        DataType::I8 => Data::I8(fixed::<1, _>(name, count, bytes, i8::from_le_bytes)?),
        DataType::U16 => Data::U16(fixed(name, count, bytes, u16::from_le_bytes)?),
        DataType::I16 => Data::I16(fixed(name, count, bytes, i16::from_le_bytes)?),
        DataType::U32 => Data::U32(fixed(name, count, bytes, u32::from_le_bytes)?),
        DataType::I32 => Data::I32(fixed(name, count, bytes, i32::from_le_bytes)?),
        DataType::U64 => Data::U64(fixed(name, count, bytes, u64::from_le_bytes)?),
        DataType::I64 => Data::I64(fixed(name, count, bytes, i64::from_le_bytes)?),
        DataType::F32 => Data::F32(fixed(name, count, bytes, f32::from_le_bytes)?),
        DataType::F64 => Data::F64(fixed(name, count, bytes, f64::from_le_bytes)?),
        DataType::Bytes => {
            let mut out = Vec::with_capacity(count);
            let mut rest = bytes;
            while !rest.is_empty() {
                let (len, tail) =
                    rest.split_at_checked(4).ok_or_else(|| invalid(format!("input '{name}': a BYTES element's length is cut short")))?;
                let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
                let (element, tail) =
                    tail.split_at_checked(len).ok_or_else(|| invalid(format!("input '{name}': a BYTES element is cut short")))?;
                out.push(element.to_vec());
                rest = tail;
            }
            if out.len() != count {
                return Err(invalid(format!("input '{name}': {} BYTES elements for a shape of {count}", out.len())));
            }
            Data::Bytes(out)
        }
    })
}

/// A tensor's elements as little-endian bytes, for Triton's binary extension.
pub fn raw_bytes(t: &Tensor) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|x| f(*x)).collect()
    }
    match &t.data {
        Data::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
        Data::U8(v) => v.clone(),
        Data::I8(v) => le(v, i8::to_le_bytes),
        Data::U16(v) => le(v, u16::to_le_bytes),
        Data::I16(v) => le(v, i16::to_le_bytes),
        Data::U32(v) => le(v, u32::to_le_bytes),
        Data::I32(v) => le(v, i32::to_le_bytes),
        Data::U64(v) => le(v, u64::to_le_bytes),
        Data::I64(v) => le(v, i64::to_le_bytes),
        Data::F32(v) => le(v, f32::to_le_bytes),
        Data::F64(v) => le(v, f64::to_le_bytes),
        Data::Bytes(v) => v.iter().flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.iter().copied())).collect(),
    }
}

/// An output tensor carried as raw bytes: its JSON (no `data`, `parameters.binary_data_size`)
/// and the bytes to append after the header.
pub fn encode_binary(t: &Tensor) -> (Value, Vec<u8>) {
    let bytes = raw_bytes(t);
    (json!({"name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape, "parameters": {"binary_data_size": bytes.len()}}), bytes)
}

/// An output tensor as the protocol answers it: flat data, BYTES as strings (lossily, when not UTF-8).
pub fn encode_tensor(t: &Tensor) -> Value {
    json!({"name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape, "data": t.json_values()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(inputs: Value) -> Value {
        json!({"id": "r1", "inputs": inputs})
    }

    /// An expected tensor: name, shape, data.
    type Want = (&'static str, Vec<usize>, Data);

    #[test]
    fn valid_requests() {
        let cases: Vec<(Value, Vec<Want>)> = vec![
            (
                json!([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]}]),
                vec![("x", vec![2, 2], Data::F32(vec![1.0, 2.5, 3.0, 4.0]))],
            ),
            (
                json!([{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]),
                vec![("x", vec![2, 2], Data::F64(vec![1.0, 2.0, 3.0, 4.0]))],
            ),
            (
                json!([{"name": "b", "shape": [3], "datatype": "BOOL", "data": [true, false, true]}]),
                vec![("b", vec![3], Data::Bool(vec![true, false, true]))],
            ),
            (
                json!([{"name": "i", "shape": [1, 2], "datatype": "INT8", "data": [[-128, 127]]}]),
                vec![("i", vec![1, 2], Data::I8(vec![-128, 127]))],
            ),
            (
                json!([{"name": "u", "shape": [2], "datatype": "UINT64", "data": [0, 18446744073709551615u64]}]),
                vec![("u", vec![2], Data::U64(vec![0, u64::MAX]))],
            ),
            (
                json!([{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "é"]}]),
                vec![("s", vec![2], Data::Bytes(vec![b"a".to_vec(), "é".as_bytes().to_vec()]))],
            ),
            (json!([{"name": "z", "shape": [0, 3], "datatype": "FP32", "data": []}]), vec![("z", vec![0, 3], Data::F32(vec![]))]),
            (json!([{"name": "k", "shape": [], "datatype": "INT64", "data": 7}]), vec![("k", vec![], Data::I64(vec![7]))]),
        ];
        for (inputs, want) in cases {
            let got = decode_request(&request(inputs.clone())).unwrap_or_else(|e| panic!("{inputs}: {e}"));
            let want: Vec<Tensor> = want.into_iter().map(|(n, s, d)| Tensor::new(n, s, d).expect("tensor")).collect();
            assert_eq!(got.inputs, want, "{inputs}");
            assert_eq!(got.id.as_deref(), Some("r1"));
        }
        let with_outputs = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}], "outputs": [{"name": "y"}]});
        assert_eq!(decode_request(&with_outputs).expect("outputs").outputs, vec!["y".to_owned()]);
    }

    #[test]
    fn invalid_requests_say_what_is_wrong() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "must be a JSON object"),
            (json!({"inputs": []}), "must not be empty"),
            (json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "extra": 1}), "unknown field 'extra'"),
            (request(json!([{"shape": [1], "datatype": "FP32", "data": [1]}])), "needs a name"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}])), "unknown datatype 'FLOAT'"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}])), "not served yet"),
            (request(json!([{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}])), "whole numbers"),
            (
                request(json!([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}])),
                "holds 4 elements, but its data has 3",
            ),
            (request(json!([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}])), "does not follow its shape"),
            (request(json!([{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2]]}])), "nested deeper"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "INT8", "data": [128]}])), "is INT8, and 128 is not one"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}])), "is INT32, and 1.5 is not one"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "UINT8", "data": [-1]}])), "is UINT8"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}])), "is BOOL"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}])), "is BYTES"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}])), "is FP32"),
            (request(json!([{"name": "x", "shape": [1], "datatype": "FP32"}])), "has no data"),
            (request(json!([{"name": "x", "shape": [100000, 100000, 100], "datatype": "FP32", "data": []}])), "more than the"),
        ];
        for (body, message) in cases {
            let err = decode_request(&body).expect_err(&body.to_string());
            assert!(err.0.contains(message), "{body}: {err}");
        }
    }

    #[test]
    fn outputs_encode_flat_with_their_shapes() {
        let t = Tensor::new("y", vec![2, 1], Data::F32(vec![0.5, -1.25])).expect("t");
        assert_eq!(encode_tensor(&t), json!({"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [0.5, -1.25]}));
        let s = Tensor::new("label", vec![1], Data::Bytes(vec![b"churn".to_vec()])).expect("s");
        assert_eq!(encode_tensor(&s)["data"], json!(["churn"]));
        // What is encoded decodes back to the same tensor.
        let round = decode_request(&json!({"inputs": [encode_tensor(&t)]})).expect("decode");
        assert_eq!(round.inputs, vec![t]);
    }

    #[test]
    fn binary_tensors_round_trip_and_are_checked() {
        let tensors = vec![
            Tensor::new("b", vec![3], Data::Bool(vec![true, false, true])).expect("t"),
            Tensor::new("u8", vec![2], Data::U8(vec![0, 255])).expect("t"),
            Tensor::new("i16", vec![2], Data::I16(vec![-2, 300])).expect("t"),
            Tensor::new("u64", vec![1], Data::U64(vec![u64::MAX])).expect("t"),
            Tensor::new("i64", vec![2, 1], Data::I64(vec![-1, 1 << 40])).expect("t"),
            Tensor::new("f32", vec![2], Data::F32(vec![1.5, -0.0])).expect("t"),
            Tensor::new("f64", vec![1], Data::F64(vec![std::f64::consts::PI])).expect("t"),
            Tensor::new("s", vec![2], Data::Bytes(vec![b"ab".to_vec(), vec![]])).expect("t"),
        ];
        let mut header = Vec::new();
        let mut raw = Vec::new();
        for t in &tensors {
            let (mut meta, bytes) = encode_binary(t);
            meta["parameters"] = json!({"binary_data_size": bytes.len()});
            header.push(meta);
            raw.extend(bytes);
        }
        let body = json!({"inputs": header, "outputs": [{"name": "y", "parameters": {"binary_data": true}}]});
        let decoded = decode_request_with(&body, &raw).expect("decodes");
        assert_eq!(decoded.inputs, tensors);
        assert!(decoded.wants_binary("y") && !decoded.wants_binary("z"));
        let all = decode_request_with(&json!({"inputs": [header[1].clone()], "parameters": {"binary_data_output": true}}), &raw[3..5])
            .expect("one");
        assert!(all.wants_binary("anything"));

        for (body, raw, text) in [
            (
                json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}),
                vec![0u8; 4],
                "has 4 left",
            ),
            (
                json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}),
                vec![0u8; 4],
                "2 elements",
            ),
            (
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}),
                vec![0u8; 6],
                "no input's binary_data_size",
            ),
            (
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}]}),
                vec![0u8; 4],
                "both",
            ),
            (
                json!({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}),
                vec![2, 0, 0, 0, b'a', b'b'],
                "1 BYTES elements",
            ),
            (
                json!({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}),
                vec![9, 0, 0, 0, b'a'],
                "cut short",
            ),
            (
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "parameters": {"binary_data_output": "yes"}}),
                vec![],
                "true or false",
            ),
        ] {
            let err = decode_request_with(&body, &raw).expect_err("refused");
            assert!(err.0.contains(text), "{err} should mention {text}");
        }
    }
}
