//! MLflow model directories with the `onnx` flavour: the `MLmodel` file names the model file in
//! the directory, and its signature (JSON text inside the YAML, as MLflow writes it) is checked
//! against the graph's own inputs and outputs before the model is served.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::onnx::LoadError;
use crate::tensor::{DataType, TensorSpec};

/// The file that makes a directory an MLflow model.
pub const MLMODEL: &str = "MLmodel";

/// An MLflow model's signature, as far as it describes tensors, with the graph's names where
/// MLflow gives none (specs are paired with the graph's by name when named, else by position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The inputs MLflow declares, in its order; `None` when the signature has none or lists
    /// DataFrame columns instead of tensors (column signatures are not compared with the graph).
    pub inputs: Option<Vec<TensorSpec>>,
    /// The outputs MLflow declares (often fewer than the graph's: a classifier's label without
    /// its probabilities); `None` as for `inputs`.
    pub outputs: Option<Vec<TensorSpec>>,
}

/// What the `MLmodel` file of an ONNX model says.
#[derive(Debug)]
pub(crate) struct MlflowModel {
    /// The model file, inside the directory.
    pub(crate) model_file: PathBuf,
    signature: Option<RawSignature>,
}

/// The parts of `MLmodel` read here; MLflow writes more.
#[derive(Deserialize)]
struct MlModelFile {
    #[serde(default)]
    flavors: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    signature: Option<RawSignature>,
}

#[derive(Debug, Deserialize)]
struct RawSignature {
    #[serde(default)]
    inputs: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
}

/// One entry of a signature's JSON list: a tensor spec, or a DataFrame column (`"type": "double"`).
#[derive(Deserialize)]
struct SignatureEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "tensor-spec", default)]
    tensor_spec: Option<RawTensorSpec>,
}

#[derive(Deserialize)]
struct RawTensorSpec {
    dtype: String,
    shape: Vec<i64>,
}

/// A signature's tensor entry, its dtype still MLflow's (numpy's) name.
struct Declared {
    name: Option<String>,
    dtype: String,
    shape: Vec<i64>,
}

impl MlflowModel {
    /// Reads `dir/MLmodel`: the onnx flavour's model file (a relative path that stays inside the
    /// directory) and the signature's text.
    pub(crate) fn read(dir: &Path) -> Result<MlflowModel, LoadError> {
        let refuse = |reason: String| LoadError::MlflowModel { path: dir.to_path_buf(), reason };
        let file = dir.join(MLMODEL);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse(format!("the directory has no {MLMODEL} file, so it is not an MLflow model")));
            }
            Err(source) => return Err(LoadError::Unreadable { path: file, source }),
        };
        let parsed: MlModelFile = serde_norway::from_str(&text).map_err(|e| refuse(format!("{MLMODEL} is not valid: {e}")))?;
        let Some(onnx) = parsed.flavors.get("onnx") else {
            let flavours: Vec<&str> = parsed.flavors.keys().map(String::as_str).collect();
            let has = if flavours.is_empty() { "none".to_owned() } else { flavours.join(", ") };
            return Err(refuse(format!("it has no onnx flavour, so ONNX Runtime cannot serve it (its flavours: {has})")));
        };
        let Some(data) = onnx.get("data").and_then(serde_norway::Value::as_str) else {
            return Err(refuse("its onnx flavour names no model file (`data`)".into()));
        };
        let relative = Path::new(data);
        if relative.as_os_str().is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(refuse(format!("its onnx flavour's model file '{data}' is not a path inside the model directory")));
        }
        Ok(MlflowModel { model_file: dir.join(relative), signature: parsed.signature })
    }

    /// The signature, checked against the graph's inputs and outputs: as many inputs, no more
    /// outputs than the graph has, each paired spec of the same datatype and a compatible shape
    /// (the same rank; dimensions equal, or -1 on either side).
    pub(crate) fn check_signature(
        &self,
        dir: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Option<Signature>, LoadError> {
        let Some(raw) = &self.signature else { return Ok(None) };
        let mismatch = |reason: String| LoadError::SignatureMismatch { path: dir.join(MLMODEL), reason };
        let inputs = match declared(raw.inputs.as_deref()).map_err(&mismatch)? {
            Some(declared) if declared.len() != inputs.len() => {
                return Err(mismatch(format!(
                    "it declares {} input(s), the graph takes {}: {}",
                    declared.len(),
                    inputs.len(),
                    list(inputs)
                )));
            }
            Some(declared) => Some(pair("input", &declared, inputs).map_err(&mismatch)?),
            None => None,
        };
        let outputs = match declared(raw.outputs.as_deref()).map_err(&mismatch)? {
            Some(declared) if declared.len() > outputs.len() => {
                return Err(mismatch(format!(
                    "it declares {} output(s), the graph answers {}: {}",
                    declared.len(),
                    outputs.len(),
                    list(outputs)
                )));
            }
            Some(declared) => Some(pair("output", &declared, outputs).map_err(&mismatch)?),
            None => None,
        };
        Ok(Some(Signature { inputs, outputs }))
    }
}

/// The tensor entries of one side of the signature; `None` when absent or made of columns.
fn declared(json: Option<&str>) -> Result<Option<Vec<Declared>>, String> {
    let Some(json) = json.filter(|j| !j.trim().is_empty()) else { return Ok(None) };
    let entries: Vec<SignatureEntry> = serde_json::from_str(json).map_err(|e| format!("it is not MLflow's JSON list of specs: {e}"))?;
    if entries.is_empty() || entries.iter().any(|e| e.kind != "tensor") {
        return Ok(None);
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e.tensor_spec {
            Some(spec) => Ok(Declared { name: e.name, dtype: spec.dtype, shape: spec.shape }),
            None => Err(format!("its tensor entry {i} has no tensor-spec")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Pairs declared specs with the graph's (by name when every one is named, else by position)
/// and checks each pair.
fn pair(role: &str, declared: &[Declared], graph: &[TensorSpec]) -> Result<Vec<TensorSpec>, String> {
    let by_name = declared.iter().all(|d| d.name.is_some());
    declared
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let found = match &d.name {
                Some(name) if by_name => graph.iter().find(|g| g.name == *name),
                _ => graph.get(i),
            };
            let label = d.name.as_deref().map_or_else(|| format!("{role} {i}"), |n| format!("{role} '{n}'"));
            let Some(g) = found else {
                return Err(format!("it declares {label}, which the graph does not have: {}", list(graph)));
            };
            let datatype = mlflow_datatype(&d.dtype).ok_or_else(|| format!("{label} has dtype '{}', which is not served", d.dtype))?;
            let shapes_fit = d.shape.len() == g.shape.len() && d.shape.iter().zip(&g.shape).all(|(a, b)| a == b || *a == -1 || *b == -1);
            if datatype != g.datatype || !shapes_fit {
                return Err(format!(
                    "{label} is {} {:?} in the signature, but the graph's {g} (dtypes must be equal; shapes of one rank, each dimension equal or -1)",
                    d.dtype, d.shape
                ));
            }
            Ok(TensorSpec { name: d.name.clone().unwrap_or_else(|| g.name.clone()), datatype, shape: d.shape.clone() })
        })
        .collect()
}

/// The datatype of an MLflow (numpy) dtype name, for the types served.
fn mlflow_datatype(dtype: &str) -> Option<DataType> {
    Some(match dtype {
        "bool" => DataType::Bool,
        "uint8" => DataType::U8,
        "uint16" => DataType::U16,
        "uint32" => DataType::U32,
        "uint64" => DataType::U64,
        "int8" => DataType::I8,
        "int16" => DataType::I16,
        "int32" => DataType::I32,
        "int64" => DataType::I64,
        "float32" => DataType::F32,
        "float64" => DataType::F64,
        "str" | "object" | "bytes" => DataType::Bytes,
        _ => return None,
    })
}

fn list(specs: &[TensorSpec]) -> String {
    specs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, shape: shape.to_vec() }
    }

    fn model_dir(mlmodel: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MLMODEL), mlmodel).expect("write");
        dir
    }

    fn with_signature(inputs: &str, outputs: &str) -> String {
        format!("flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  inputs: '{inputs}'\n  outputs: '{outputs}'\n")
    }

    const X: &str = r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 8]}}]"#;
    const LABEL: &str = r#"[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]"#;

    fn graph() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![spec("X", DataType::F32, &[-1, 8])],
            vec![spec("label", DataType::I64, &[-1]), spec("probabilities", DataType::F32, &[-1, 2])],
        )
    }

    /// Reads and checks `mlmodel` against the logistic regression's graph.
    fn check(mlmodel: &str) -> Result<Option<Signature>, LoadError> {
        let dir = model_dir(mlmodel);
        let model = MlflowModel::read(dir.path())?;
        assert_eq!(model.model_file, dir.path().join("model.onnx"));
        let (inputs, outputs) = graph();
        model.check_signature(dir.path(), &inputs, &outputs)
    }

    #[test]
    fn signatures_that_fit_the_graph() {
        let cases = [
            (with_signature(X, LABEL), Some(vec![spec("X", DataType::F32, &[-1, 8])]), Some(vec![spec("label", DataType::I64, &[-1])])),
            (
                with_signature(r#"[{"type": "tensor", "name": "X", "tensor-spec": {"dtype": "float32", "shape": [-1, -1]}}]"#, ""),
                Some(vec![spec("X", DataType::F32, &[-1, -1])]),
                None,
            ),
            (with_signature(r#"[{"type": "double", "name": "a"}]"#, LABEL), None, Some(vec![spec("label", DataType::I64, &[-1])])),
        ];
        for (mlmodel, inputs, outputs) in cases {
            let signature = check(&mlmodel).expect("fits").expect("a signature");
            assert_eq!((signature.inputs, signature.outputs), (inputs, outputs), "{mlmodel}");
        }
        assert_eq!(check("flavors:\n  onnx:\n    data: model.onnx\n").expect("no signature"), None);
    }

    #[test]
    fn signatures_that_do_not_fit_are_refused_saying_why() {
        let two_inputs = format!("[{}, {}]", &X[1..X.len() - 1], &X[1..X.len() - 1]);
        let cases = [
            (
                with_signature(&X.replace("8]", "5]"), LABEL),
                "input 0 is float32 [-1, 5] in the signature, but the graph's 'X' FP32 [-1, 8]",
            ),
            (with_signature(&X.replace("float32", "float64"), LABEL), "input 0 is float64 [-1, 8]"),
            (with_signature(&X.replace("[-1, 8]", "[-1]"), LABEL), "input 0 is float32 [-1]"),
            (with_signature(&X.replace("float32", "float16"), LABEL), "dtype 'float16', which is not served"),
            (with_signature(&two_inputs, LABEL), "declares 2 input(s), the graph takes 1"),
            (
                with_signature(&X.replace(r#""tensor-spec""#, r#""name": "Z", "tensor-spec""#), LABEL),
                "input 'Z', which the graph does not have",
            ),
            (with_signature(X, &LABEL.replace("int64", "int32")), "output 0 is int32 [-1]"),
            (with_signature(X, "[not json"), "not MLflow's JSON list"),
        ];
        for (mlmodel, want) in cases {
            let err = check(&mlmodel).expect_err("refused");
            assert!(matches!(err, LoadError::SignatureMismatch { .. }), "{err}");
            assert!(err.to_string().contains(want), "{err}\nwanted: {want}");
        }
    }

    #[test]
    fn directories_that_are_not_onnx_models_are_refused_saying_why() {
        let cases = [
            (
                "flavors:\n  sklearn:\n    pickled_model: model.pkl\n  python_function:\n    loader_module: mlflow.sklearn\n",
                "no onnx flavour, so ONNX Runtime cannot serve it (its flavours: python_function, sklearn)",
            ),
            ("artifact_path: model\n", "(its flavours: none)"),
            ("flavors:\n  onnx:\n    onnx_version: 1.17.0\n", "names no model file"),
            ("flavors:\n  onnx:\n    data: ../elsewhere.onnx\n", "not a path inside the model directory"),
            ("flavors:\n  onnx:\n    data: /etc/model.onnx\n", "not a path inside the model directory"),
            ("flavors: [unclosed\n", "MLmodel is not valid"),
        ];
        for (mlmodel, want) in cases {
            let dir = model_dir(mlmodel);
            let err = MlflowModel::read(dir.path()).expect_err("refused");
            assert!(err.to_string().contains(want), "{err}\nwanted: {want}");
        }
        let empty = tempfile::tempdir().expect("tempdir");
        let err = MlflowModel::read(empty.path()).expect_err("no MLmodel");
        assert!(err.to_string().contains("has no MLmodel file"), "{err}");
    }
}
