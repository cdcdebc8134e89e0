//! The ONNX Runtime runtime against real models: scikit-learn estimators converted by skl2onnx
//! (`tests/serving/make_models.py` writes them, with ONNX Runtime's answers from Python), an
//! MLflow model directory, files that are not models, and small graphs written by `graphs`.
//!
//! They need the models' directory (`PLINTH_TEST_ONNX_MODELS`) and the ONNX Runtime library
//! (`ORT_DYLIB_PATH`). Without either, each test says it was skipped and passes, unless
//! `PLINTH_TEST_SERVING_REQUIRED` is set: then it fails.

#[path = "onnx/graphs.rs"]
mod graphs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use plinth_serving::onnx::{LIBRARY_ENV, LoadError, MLMODEL, RuntimeError, Signature};
use plinth_serving::{
    BatchConfig, BatchError, Batched, Batcher, Data, DataType, InferRequest, OnnxModel, OnnxOptions, OnnxRuntime, Tensor, TensorModel,
    TensorSpec,
};

use self::graphs::{Graph, elem};

const MODELS_ENV: &str = "PLINTH_TEST_ONNX_MODELS";
const REQUIRED_ENV: &str = "PLINTH_TEST_SERVING_REQUIRED";
/// The scikit-learn models `make_models.py` writes, each with inputs and Python's answers.
const SKLEARN: [&str; 4] = ["logreg", "forest", "gbr", "mlp"];

/// The loaded runtime and the models' directory, or `None` (said on stderr) when the test
/// cannot run here.
fn setup(test: &str) -> Option<(OnnxRuntime, PathBuf)> {
    let models = std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty());
    let library = std::env::var_os(LIBRARY_ENV).filter(|v| !v.is_empty());
    let missing: Vec<&str> = [(MODELS_ENV, models.is_none()), (LIBRARY_ENV, library.is_none())]
        .into_iter()
        .filter_map(|(name, unset)| unset.then_some(name))
        .collect();
    if !missing.is_empty() {
        let why = format!("{test}: skipped, {} not set (the models' directory and the ONNX Runtime library)", missing.join(" and "));
        assert!(std::env::var_os(REQUIRED_ENV).is_none(), "{why}; {REQUIRED_ENV} is set, so these tests must run");
        eprintln!("{why}");
        return None;
    }
    let runtime = OnnxRuntime::init(None).expect("ONNX Runtime loads from ORT_DYLIB_PATH");
    Some((runtime, models.map(PathBuf::from)?))
}

/// Which kind of `LoadError` a case expects.
type IsKind = fn(&LoadError) -> bool;

fn options(sessions: usize) -> OnnxOptions {
    OnnxOptions { intra_op_threads: 1, sessions }
}

fn read_json(path: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dimension") as usize).collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v["data"].as_array().expect("data").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// The model's inputs as `make_models.py` wrote them (FP32: what skl2onnx was given).
fn sklearn_inputs(dir: &Path, name: &str) -> Vec<Tensor> {
    read_json(&dir.join(format!("{name}.inputs.json")))
        .iter()
        .map(|(input, v)| {
            let data = Data::F32(numbers(v).into_iter().map(|x| x as f32).collect());
            Tensor::new(input.clone(), shape_of(v), data).expect("input tensor")
        })
        .collect()
}

/// `n` rows of a tensor from row `from` on, wrapping around to the first.
fn rows(t: &Tensor, from: usize, n: usize) -> Tensor {
    let per_row: usize = t.shape[1..].iter().product();
    let Data::F32(all) = &t.data else { panic!("FP32 inputs expected") };
    let picked: Vec<f32> = (0..n).flat_map(|i| all[((from + i) % t.rows()) * per_row..][..per_row].iter().copied()).collect();
    let mut shape = t.shape.clone();
    shape[0] = n;
    Tensor::new(t.name.clone(), shape, Data::F32(picked)).expect("rows")
}

/// Whether two answers are the same bit for bit (floats compared by their bits, not by value).
fn same_bits(a: &[Tensor], b: &[Tensor]) -> bool {
    fn bits(t: &Tensor) -> (String, Vec<usize>, Vec<u64>) {
        let bits = match &t.data {
            Data::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            Data::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
            Data::I64(v) => v.iter().map(|x| *x as u64).collect(),
            other => panic!("unexpected output data {other:?}"),
        };
        (t.name.clone(), t.shape.clone(), bits)
    }
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| bits(a) == bits(b))
}

#[test]
fn every_model_answers_as_python_onnx_runtime_does() {
    let Some((runtime, dir)) = setup("every_model_answers_as_python_onnx_runtime_does") else { return };
    for name in SKLEARN {
        let model = OnnxModel::load(&runtime, &dir.join(format!("{name}.onnx")), &options(1)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = read_json(&dir.join(format!("{name}.expected.json")));
        let got = model.run(sklearn_inputs(&dir, name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let names: Vec<&str> = model.outputs().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(got.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), names, "{name}: outputs in the graph's order");
        assert_eq!(got.len(), expected.len(), "{name}: as many outputs as Python got");
        for output in &got {
            let want = &expected[&output.name];
            assert_eq!(output.shape, shape_of(want), "{name}/{}: shape", output.name);
            let want_values = numbers(want);
            match (&output.data, want["dtype"].as_str()) {
                (Data::I64(v), Some("int64")) => {
                    assert_eq!(v.iter().map(|x| *x as f64).collect::<Vec<_>>(), want_values, "{name}/{}", output.name);
                }
                (Data::F32(v), Some("float32")) => {
                    for (i, (a, b)) in v.iter().map(|x| f64::from(*x)).zip(&want_values).enumerate() {
                        assert!(
                            a == *b || (a - b).abs() <= 1e-5 * a.abs().max(b.abs()),
                            "{name}/{}[{i}]: {a} here, {b} in Python",
                            output.name
                        );
                    }
                }
                (data, dtype) => panic!("{name}/{}: {:?} here, {dtype:?} in Python", output.name, data.datatype()),
            }
        }
    }
}

/// A model the test shares with a batcher (`Batched` takes its model by value), recording each
/// batch it runs: the joined input and the outputs.
struct Shared {
    model: Arc<OnnxModel>,
    batches: Arc<Mutex<Vec<Recorded>>>,
}

/// A batch's joined input and the model's outputs for it.
type Recorded = (Tensor, Vec<Tensor>);

impl Shared {
    fn new(model: &Arc<OnnxModel>) -> Shared {
        Shared { model: model.clone(), batches: Arc::default() }
    }
}

impl TensorModel for Shared {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let input = inputs.first().cloned();
        let outputs = self.model.run(inputs)?;
        if let Some(input) = input {
            self.batches.lock().expect("batches").push((input, outputs.clone()));
        }
        Ok(outputs)
    }
}

/// Rows `start..start + n` of a tensor.
fn row_range(t: &Tensor, start: usize, n: usize) -> Tensor {
    let mut parts = t.clone().split(&[start, n, t.rows() - start - n]).expect("split");
    parts.swap_remove(1)
}

/// Where a request's rows sit in the batches recorded: the batch and the first row.
fn find_rows(batches: &[Recorded], request: &Tensor) -> Option<(usize, usize)> {
    batches.iter().enumerate().find_map(|(b, (input, _))| {
        (0..=input.rows().checked_sub(request.rows())?)
            .find(|start| same_bits(std::slice::from_ref(&row_range(input, *start, request.rows())), std::slice::from_ref(request)))
            .map(|start| (b, start))
    })
}

/// Floats within 1e-5 of each other, relatively (or 1e-7 absolutely, for values near zero got
/// as 1 - p); integers equal.
fn close(a: &[Tensor], b: &[Tensor]) -> bool {
    let near = |x: f64, y: f64| x == y || (x - y).abs() <= (1e-5 * x.abs().max(y.abs())).max(1e-7);
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.name == b.name
                && a.shape == b.shape
                && match (&a.data, &b.data) {
                    (Data::F32(x), Data::F32(y)) => x.iter().zip(y).all(|(x, y)| near(f64::from(*x), f64::from(*y))),
                    (x, y) => x == y,
                }
        })
}

/// The batcher joins requests and splits the answers exactly: each answer is, bit for bit, its
/// rows of what the model answered for the whole batch. Against the request run alone, answers
/// are close but need not be identical: ONNX Runtime's kernels are not batch-invariant (the
/// logistic regression's LinearClassifier answers a row alone a few ulps apart from the same
/// row in a batch, in Python too).
#[test]
fn batching_changes_no_answer_by_a_bit() {
    let Some((runtime, dir)) = setup("batching_changes_no_answer_by_a_bit") else { return };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    for name in SKLEARN {
        let model =
            Arc::new(OnnxModel::load(&runtime, &dir.join(format!("{name}.onnx")), &options(2)).unwrap_or_else(|e| panic!("{name}: {e}")));
        let shared = Shared::new(&model);
        let batches = shared.batches.clone();
        let [input] = <[Tensor; 1]>::try_from(sklearn_inputs(&dir, name)).expect("one input");
        // Requests of 1 to 3 rows, cut from the model's rows at different offsets and shifted
        // by their index, so that every request's rows can be found in its batch.
        let requests: Vec<Tensor> = (0..24).map(|i| shifted(&rows(&input, i * 2, 1 + i % 3), i as f32 / 64.0)).collect();
        // A long delay, so that concurrent requests are batched together (up to 8 rows).
        let config = BatchConfig { max_batch_size: 8, max_queue_delay: Duration::from_millis(200), instances: 2, ..BatchConfig::default() };
        let batcher = Batcher::start(config, Arc::new(Batched(shared))).expect("batcher");
        let answers: Vec<Vec<Tensor>> = tokio.block_on(async {
            let calls: Vec<_> = requests
                .iter()
                .map(|t| {
                    let (batcher, request) = (batcher.clone(), InferRequest::new(vec![t.clone()]).expect("request"));
                    tokio::spawn(async move { batcher.submit(request, None).await })
                })
                .collect();
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await.expect("join").unwrap_or_else(|e| panic!("{name}: {e}")));
            }
            answers
        });
        let batches = batches.lock().expect("batches").clone();
        let mut unlike_alone = 0;
        for (i, (request, got)) in requests.iter().zip(&answers).enumerate() {
            let (b, start) = find_rows(&batches, request).unwrap_or_else(|| panic!("{name}, request {i}: its rows are in no batch"));
            let in_batch: Vec<Tensor> = batches[b].1.iter().map(|t| row_range(t, start, request.rows())).collect();
            assert!(same_bits(got, &in_batch), "{name}, request {i}: answered {got:?}, its rows of the batch's answer {in_batch:?}");
            let alone = model.run(vec![request.clone()]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(close(got, &alone), "{name}, request {i} ({} rows): batched {got:?}, alone {alone:?}", request.rows());
            unlike_alone += usize::from(!same_bits(got, &alone));
        }
        // Requests hold at most 3 rows: a batch of more joined several.
        let sizes: Vec<usize> = batches.iter().map(|(input, _)| input.rows()).collect();
        assert!(sizes.iter().any(|rows| *rows > 3), "{name}: no batch held more than one request: {sizes:?}");
        eprintln!(
            "{name}: batches of {sizes:?} rows; {unlike_alone} of {} answers not bit-identical to the request run alone",
            requests.len()
        );
    }
}

/// `t` with `by` added to every element (FP32).
fn shifted(t: &Tensor, by: f32) -> Tensor {
    let Data::F32(v) = &t.data else { panic!("FP32 inputs expected") };
    Tensor::new(t.name.clone(), t.shape.clone(), Data::F32(v.iter().map(|x| x + by).collect())).expect("shifted")
}

#[test]
fn an_mlflow_directory_loads_with_its_signature() {
    let Some((runtime, dir)) = setup("an_mlflow_directory_loads_with_its_signature") else { return };
    let model = OnnxModel::load(&runtime, &dir.join("logreg_mlflow"), &options(1)).expect("loads");
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec { name: name.into(), datatype, shape: shape.to_vec() };
    assert_eq!(model.model_file(), dir.join("logreg_mlflow").join("model.onnx"));
    assert_eq!(
        model.signature(),
        Some(&Signature {
            inputs: Some(vec![spec("X", DataType::F32, &[-1, 8])]),
            outputs: Some(vec![spec("label", DataType::I64, &[-1])])
        })
    );
    assert_eq!(model.inputs(), &[spec("X", DataType::F32, &[-1, 8])]);
    let plain = OnnxModel::load(&runtime, &dir.join("logreg.onnx"), &options(1)).expect("plain");
    assert_eq!(plain.signature(), None);
    let inputs = sklearn_inputs(&dir, "logreg");
    assert!(same_bits(&model.run(inputs.clone()).expect("run"), &plain.run(inputs).expect("run plain")));
}

#[test]
fn a_signature_the_graph_contradicts_is_refused() {
    let Some((runtime, dir)) = setup("a_signature_the_graph_contradicts_is_refused") else { return };
    let source = dir.join("logreg_mlflow");
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::copy(source.join("model.onnx"), copy.path().join("model.onnx")).expect("copy the model");
    let mlmodel = std::fs::read_to_string(source.join(MLMODEL)).expect("MLmodel");
    assert!(mlmodel.contains("\"shape\": [-1, 8]"), "the signature as make_models.py writes it");
    std::fs::write(copy.path().join(MLMODEL), mlmodel.replace("\"shape\": [-1, 8]", "\"shape\": [-1, 5]")).expect("write");
    let err = OnnxModel::load(&runtime, copy.path(), &options(1)).expect_err("refused");
    assert!(matches!(err, LoadError::SignatureMismatch { .. }), "{err}");
    assert!(err.to_string().contains("input 0 is float32 [-1, 5] in the signature, but the graph's 'X' FP32 [-1, 8]"), "{err}");

    // A directory of another flavour names the flavours it has.
    let sklearn = tempfile::tempdir().expect("tempdir");
    std::fs::write(sklearn.path().join(MLMODEL), "flavors:\n  python_function: {}\n  sklearn: {}\n").expect("write");
    let err = OnnxModel::load(&runtime, sklearn.path(), &options(1)).expect_err("refused");
    assert!(err.to_string().contains("no onnx flavour, so ONNX Runtime cannot serve it (its flavours: python_function, sklearn)"), "{err}");
}

#[test]
fn requests_the_model_cannot_take_are_errors_not_panics() {
    let Some((runtime, dir)) = setup("requests_the_model_cannot_take_are_errors_not_panics") else { return };
    let model = Arc::new(OnnxModel::load(&runtime, &dir.join("logreg.onnx"), &options(1)).expect("loads"));
    let x = |name: &str, width: usize, data: fn(usize) -> Data| Tensor::new(name, vec![2, width], data(2 * width)).expect("tensor");
    let f32s = |n| Data::F32(vec![0.5; n]);
    let cases: Vec<(&str, Vec<Tensor>, &str)> = vec![
        ("wrong name", vec![x("features", 8, f32s)], "the model has no input 'features'; it takes 'X' FP32 [-1, 8]"),
        ("wrong datatype", vec![x("X", 8, |n| Data::F64(vec![0.5; n]))], "input 'X' is FP64 [2, 8], but the model takes FP32 [-1, 8]"),
        ("too narrow", vec![x("X", 7, f32s)], "input 'X' is FP32 [2, 7], but the model takes FP32 [-1, 8]"),
        ("too wide", vec![x("X", 9, f32s)], "input 'X' is FP32 [2, 9]"),
        ("no batch dimension", vec![Tensor::new("X", vec![8], f32s(8)).expect("1-d")], "input 'X' is FP32 [8]"),
        ("nothing", vec![], "input 'X' is missing"),
        ("an input too many", vec![x("X", 8, f32s), x("Y", 8, f32s)], "the model has no input 'Y'"),
        ("given twice", vec![x("X", 8, f32s), x("X", 8, f32s)], "input 'X' is given twice"),
    ];
    for (case, inputs, want) in cases {
        let err = model.run(inputs).expect_err(case);
        assert!(err.contains(want), "{case}: {err}\nwanted: {want}");
    }
    // Through the batcher, the request fails and the model goes on serving.
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let batcher = Batcher::start(BatchConfig::default(), Arc::new(Batched(Shared::new(&model)))).expect("batcher");
    tokio.block_on(async {
        let bad = InferRequest::new(vec![x("X", 7, f32s)]).expect("request");
        let err = batcher.submit(bad, None).await.expect_err("refused");
        assert!(matches!(&err, BatchError::Execution(m) if m.contains("FP32 [2, 7]")), "{err}");
        let good = InferRequest::new(vec![x("X", 8, f32s)]).expect("request");
        assert_eq!(batcher.submit(good, None).await.expect("answered").len(), 2);
    });
}

#[test]
fn files_that_are_not_models_are_refused_at_load_saying_so() {
    let Some((runtime, dir)) = setup("files_that_are_not_models_are_refused_at_load_saying_so") else { return };
    let empty = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(PathBuf, IsKind, &str)> = vec![
        (
            dir.join("garbage.onnx"),
            |e| matches!(e, LoadError::NotOnnx { .. }),
            "garbage.onnx is not an ONNX model that ONNX Runtime can read",
        ),
        (
            dir.join("truncated.onnx"),
            |e| matches!(e, LoadError::NotOnnx { .. }),
            "truncated.onnx is not an ONNX model that ONNX Runtime can read",
        ),
        (dir.join("absent.onnx"), |e| matches!(e, LoadError::Unreadable { .. }), "cannot read"),
        (empty.path().to_path_buf(), |e| matches!(e, LoadError::MlflowModel { .. }), "has no MLmodel file, so it is not an MLflow model"),
    ];
    for (path, kind, want) in cases {
        let err = OnnxModel::load(&runtime, &path, &options(1)).expect_err("refused");
        assert!(kind(&err) && err.to_string().contains(want), "{}: {err}\nwanted: {want}", path.display());
    }
    let err = OnnxModel::load(&runtime, &dir.join("logreg.onnx"), &options(0)).expect_err("no sessions");
    assert!(matches!(err, LoadError::Options(_)), "{err}");
}

#[test]
fn the_runtime_loads_once_and_reports_its_version() {
    let Some((runtime, _)) = setup("the_runtime_loads_once_and_reports_its_version") else { return };
    let again = OnnxRuntime::init(None).expect("a second init is harmless");
    assert_eq!((again.version(), again.library()), (runtime.version(), runtime.library()));
    assert!(runtime.version().starts_with("1."), "{runtime:?}");
    let configured = OnnxRuntime::init(Some(runtime.library())).expect("the same library, configured");
    assert_eq!(configured.library(), runtime.library());
    let other = tempfile::NamedTempFile::new().expect("tempfile");
    let err = OnnxRuntime::init(Some(other.path())).expect_err("another library");
    assert!(matches!(err, RuntimeError::AlreadyLoaded { .. }), "{err}");
}

/// Every datatype the runtime serves, through a graph of Identity nodes: out as in, bit for bit.
#[test]
fn every_served_datatype_goes_through_unchanged() {
    let Some((runtime, _)) = setup("every_served_datatype_goes_through_unchanged") else { return };
    let types: [(u64, DataType, Data); 11] = [
        (elem::BOOL, DataType::Bool, Data::Bool(vec![true, false, false, true, true, false])),
        (elem::UINT8, DataType::U8, Data::U8(vec![0, 1, 2, 253, 254, 255])),
        (elem::UINT16, DataType::U16, Data::U16(vec![0, 1, 2, 65533, 65534, 65535])),
        (elem::UINT32, DataType::U32, Data::U32(vec![0, 1, 2, u32::MAX - 2, u32::MAX - 1, u32::MAX])),
        (elem::UINT64, DataType::U64, Data::U64(vec![0, 1, 2, u64::MAX - 2, u64::MAX - 1, u64::MAX])),
        (elem::INT8, DataType::I8, Data::I8(vec![i8::MIN, -1, 0, 1, 2, i8::MAX])),
        (elem::INT16, DataType::I16, Data::I16(vec![i16::MIN, -1, 0, 1, 2, i16::MAX])),
        (elem::INT32, DataType::I32, Data::I32(vec![i32::MIN, -1, 0, 1, 2, i32::MAX])),
        (elem::INT64, DataType::I64, Data::I64(vec![i64::MIN, -1, 0, 1, 2, i64::MAX])),
        (elem::FLOAT, DataType::F32, Data::F32(vec![f32::MIN_POSITIVE, -0.0, 1.5, f32::MAX, f32::INFINITY, -3.25])),
        (elem::DOUBLE, DataType::F64, Data::F64(vec![f64::MIN_POSITIVE, -0.0, 1.5, f64::MAX, f64::NEG_INFINITY, 1e-300])),
    ];
    let mut graph = Graph::default();
    for (elem_type, datatype, _) in &types {
        let (x, y) = (format!("x_{datatype}"), format!("y_{datatype}"));
        graph.nodes.push(graphs::node("Identity", "", &[&x], &[&y], vec![]));
        graph.inputs.push(graphs::value(&x, graphs::tensor(*elem_type, &[None, Some(3)])));
        graph.outputs.push(graphs::value(&y, graphs::tensor(*elem_type, &[None, Some(3)])));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let model = OnnxModel::load(&runtime, &graph.write(dir.path(), "identity"), &options(1)).expect("loads");
    let specs: Vec<(String, DataType, Vec<i64>)> = model.inputs().iter().map(|s| (s.name.clone(), s.datatype, s.shape.clone())).collect();
    let want: Vec<(String, DataType, Vec<i64>)> = types.iter().map(|(_, t, _)| (format!("x_{t}"), *t, vec![-1, 3])).collect();
    assert_eq!(specs, want);
    let inputs: Vec<Tensor> =
        types.iter().map(|(_, t, data)| Tensor::new(format!("x_{t}"), vec![2, 3], data.clone()).expect("input")).collect();
    let outputs = model.run(inputs.clone()).expect("run");
    for (input, output) in inputs.iter().zip(&outputs) {
        assert_eq!(output.name, input.name.replace("x_", "y_"));
        assert_eq!(output.shape, input.shape);
        assert_eq!(format!("{:?}", output.data), format!("{:?}", input.data), "{}", input.name);
    }
}

/// What the runtime refuses at load in graphs that ONNX Runtime itself would take.
#[test]
fn graphs_that_cannot_be_served_are_refused_at_load_saying_why() {
    let Some((runtime, _)) = setup("graphs_that_cannot_be_served_are_refused_at_load_saying_why") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let zipmap = Graph {
        nodes: vec![graphs::node("ZipMap", "ai.onnx.ml", &["X"], &["Z"], vec![graphs::ints("classlabels_int64s", &[0, 1])])],
        inputs: vec![graphs::value("X", graphs::tensor(elem::FLOAT, &[None, Some(2)]))],
        outputs: vec![graphs::value("Z", graphs::sequence_of_maps())],
        ..Graph::default()
    };
    let half = Graph {
        nodes: vec![graphs::node("Cast", "", &["X"], &["Y"], vec![graphs::int("to", elem::FLOAT as i64)])],
        inputs: vec![graphs::value("X", graphs::tensor(elem::FLOAT16, &[None, Some(2)]))],
        outputs: vec![graphs::value("Y", graphs::tensor(elem::FLOAT, &[None, Some(2)]))],
        ..Graph::default()
    };
    let unknown = Graph {
        nodes: vec![graphs::node("NoSuchOperator", "", &["X"], &["Y"], vec![])],
        inputs: vec![graphs::value("X", graphs::tensor(elem::FLOAT, &[None, Some(2)]))],
        outputs: vec![graphs::value("Y", graphs::tensor(elem::FLOAT, &[None, Some(2)]))],
        ..Graph::default()
    };
    // Reshapes every input to exactly two rows, so one row of zeros cannot run.
    let two_rows = Graph {
        nodes: vec![graphs::node("Reshape", "", &["X", "shape"], &["Y"], vec![])],
        initializers: vec![graphs::int64s("shape", &[2], &[2, 3])],
        inputs: vec![graphs::value("X", graphs::tensor(elem::FLOAT, &[None, Some(3)]))],
        outputs: vec![graphs::value("Y", graphs::tensor(elem::FLOAT, &[Some(2), Some(3)]))],
    };
    let cases: Vec<(&str, Graph, IsKind, &str)> = vec![
        (
            "zipmap",
            zipmap,
            |e| matches!(e, LoadError::NotATensor { .. }),
            "output 'Z' is Sequence<Map<i64, f32>>, not a tensor; a classifier converted by skl2onnx answers its probabilities so (ZipMap): convert it with the option zipmap=False",
        ),
        ("half", half, |e| matches!(e, LoadError::UnsupportedType { .. }), "input 'X' cannot be served: its elements are float16 (FP16)"),
        (
            "strings",
            graphs::identity(elem::STRING, &[None, Some(1)]),
            |e| matches!(e, LoadError::UnsupportedType { .. }),
            "input 'X' cannot be served: its elements are strings (BYTES)",
        ),
        (
            "unknown",
            unknown,
            |e| matches!(e, LoadError::UnsupportedOperator { .. }),
            "uses an operator this ONNX Runtime does not implement",
        ),
        ("two_rows", two_rows, |e| matches!(e, LoadError::WarmUp { .. }), "failed its warm-up run on one row of zeros"),
    ];
    for (name, graph, kind, want) in cases {
        let err = OnnxModel::load(&runtime, &graph.write(dir.path(), name), &options(1)).expect_err(name);
        assert!(kind(&err) && err.to_string().contains(want), "{name}: {err}\nwanted: {want}");
    }
}

/// A graph with a fixed first dimension runs its one row, and refuses two before running.
#[test]
fn fixed_dimensions_are_checked_before_running() {
    let Some((runtime, _)) = setup("fixed_dimensions_are_checked_before_running") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = graphs::identity(elem::FLOAT, &[Some(1), Some(3)]).write(dir.path(), "one_row");
    let model = OnnxModel::load(&runtime, &path, &options(1)).expect("loads");
    let one = Tensor::new("X", vec![1, 3], Data::F32(vec![1.0, 2.0, 3.0])).expect("one");
    assert_eq!(model.run(vec![one.clone()]).expect("runs")[0].data, one.data);
    let two = Tensor::new("X", vec![2, 3], Data::F32(vec![0.0; 6])).expect("two");
    let err = model.run(vec![two]).expect_err("two rows");
    assert!(err.contains("input 'X' is FP32 [2, 3], but the model takes FP32 [1, 3]"), "{err}");
}

/// Many callers on a model of several sessions: every answer is its own.
#[test]
fn concurrent_callers_share_the_sessions() {
    let Some((runtime, dir)) = setup("concurrent_callers_share_the_sessions") else { return };
    let model = Arc::new(OnnxModel::load(&runtime, &dir.join("mlp.onnx"), &options(3)).expect("loads"));
    assert_eq!(model.sessions(), 3);
    let [input] = <[Tensor; 1]>::try_from(sklearn_inputs(&dir, "mlp")).expect("one input");
    let alone: Vec<Vec<Tensor>> = (0..5).map(|i| model.run(vec![rows(&input, i, 1)]).expect("alone")).collect();
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..6 {
            let (model, input, alone, failures) = (&model, &input, &alone, &failures);
            scope.spawn(move || {
                for i in 0..50 {
                    let row = (thread + i) % 5;
                    match model.run(vec![rows(input, row, 1)]) {
                        Ok(got) if same_bits(&got, &alone[row]) => {}
                        other => failures.lock().expect("failures").push(format!("thread {thread}, row {row}: {other:?}")),
                    }
                }
            });
        }
    });
    assert_eq!(failures.into_inner().expect("failures"), Vec::<String>::new());
}
