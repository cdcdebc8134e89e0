//! The Open Inference Protocol's JSON tensors (`design/protocols.md` §4.1): an inference request's
//! `inputs` decoded into `plinth_serving::Tensor`s, checked against their declared shapes and
//! datatypes, and output tensors encoded for the answer. Serving's routes (`/v2/models/…/infer`)
//! are built on it (issue 14).
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
    let inputs = inputs.iter().map(|t| decode_tensor(t, &mut budget)).collect::<Result<Vec<_>, _>>()?;
    let outputs = match obj.get("outputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|o| o.get("name").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid("every requested output needs a name")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("outputs must be a list")),
    };
    Ok(InferBody { id, inputs, outputs })
}

fn decode_tensor(t: &Value, budget: &mut usize) -> Result<Tensor, OipError> {
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
    let data = t.get("data").ok_or_else(|| invalid(format!("input '{name}' has no data")))?;
    let mut flat = Vec::with_capacity(expected);
    flatten(data, &shape, 0, name, &mut flat)?;
    Ok(Tensor::new(name, shape, convert(name, datatype, &flat)?)?)
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

/// An output tensor as the protocol answers it: flat data, BYTES as strings (lossily, when not UTF-8).
pub fn encode_tensor(t: &Tensor) -> Value {
    let data = match &t.data {
        Data::Bool(v) => json!(v),
        Data::U8(v) => json!(v),
        Data::U16(v) => json!(v),
        Data::U32(v) => json!(v),
        Data::U64(v) => json!(v),
        Data::I8(v) => json!(v),
        Data::I16(v) => json!(v),
        Data::I32(v) => json!(v),
        Data::I64(v) => json!(v),
        Data::F32(v) => Value::Array(v.iter().map(|f| crate::json::double(f64::from(*f))).collect()),
        Data::F64(v) => Value::Array(v.iter().map(|f| crate::json::double(*f)).collect()),
        Data::Bytes(v) => Value::Array(v.iter().map(|b| Value::String(String::from_utf8_lossy(b).into_owned())).collect()),
    };
    json!({"name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape, "data": data})
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
}
