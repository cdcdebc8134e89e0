//! The ONNX Runtime model runtime: ONNX models (a `.onnx` file, or an MLflow model directory with
//! the `onnx` flavour) loaded into ONNX Runtime sessions and run as a `TensorModel`.
//!
//! ONNX Runtime is a shared library loaded at run time, once per process (`OnnxRuntime::init`).
//! It is looked for, in this order: the path the configuration names; else the path in the
//! `ORT_DYLIB_PATH` environment variable; else the `libonnxruntime` shared library in the
//! `capi/` directory of the `onnxruntime` package of the `python3` on `PATH` (the wheel ships
//! it). Nothing is downloaded, and nothing links to the library at build time. The library must
//! offer ONNX Runtime's C API version 31 (ONNX Runtime 1.31 or later).
//!
//! `OnnxModel::load` refuses what it cannot serve at load, not at a first request: files ONNX
//! Runtime cannot read, operators it does not implement, inputs or outputs that are not tensors
//! of a datatype the inference protocol has (see `DataType`), an MLflow signature the graph
//! contradicts; and it runs each session once on a row of zeros, so a model that cannot run
//! fails there too. A model holds `sessions` ONNX Runtime sessions (a session runs one call at a
//! time), so that as many batches run at once.

mod convert;
mod mlflow;
mod runtime;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ort::ErrorCode;
use ort::session::Session;

use self::convert::Role;
use self::mlflow::MlflowModel;
pub use self::mlflow::{MLMODEL, Signature};
pub use self::runtime::{LIBRARY_ENV, LibraryOrigin, OnnxRuntime, RuntimeError};
use crate::infer::TensorModel;
use crate::tensor::{Tensor, TensorSpec};

/// How a model is loaded; every field is the caller's choice (there are no defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Threads each session uses within one operator; 0 lets ONNX Runtime choose (one per
    /// physical core). Sessions times threads should not exceed the cores the server may use.
    pub intra_op_threads: usize,
    /// Sessions over the model, so that as many calls run at once (at least 1): the batcher's
    /// `instances`. Each holds its own copy of the model's weights.
    pub sessions: usize,
}

/// Why a model was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid ONNX model options: {0}")]
    Options(String),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an ONNX model that ONNX Runtime can read: {message}", path.display())]
    NotOnnx { path: PathBuf, message: String },
    #[error("{} uses an operator this ONNX Runtime does not implement: {message}", path.display())]
    UnsupportedOperator { path: PathBuf, message: String },
    #[error("ONNX Runtime refused {}: {message}", path.display())]
    Refused { path: PathBuf, message: String },
    #[error("{}: {role} '{name}' cannot be served: {reason}", path.display())]
    UnsupportedType { path: PathBuf, role: &'static str, name: String, reason: String },
    #[error("{}: {role} '{name}' is {found}, not a tensor{hint}", path.display())]
    NotATensor { path: PathBuf, role: &'static str, name: String, found: String, hint: &'static str },
    #[error("MLflow model {}: {reason}", path.display())]
    MlflowModel { path: PathBuf, reason: String },
    #[error("the signature in {} does not match the ONNX graph: {reason}", path.display())]
    SignatureMismatch { path: PathBuf, reason: String },
    #[error("{} loaded, but failed its warm-up run on one row of zeros: {message}", path.display())]
    WarmUp { path: PathBuf, message: String },
}

/// An ONNX model in ONNX Runtime, ready to run: a pool of sessions over one graph.
pub struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    /// Where the next call starts looking for an idle session.
    next: AtomicUsize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    signature: Option<Signature>,
    model_file: PathBuf,
}

impl OnnxModel {
    /// Loads `path` (an `.onnx` file, or an MLflow model directory with the `onnx` flavour),
    /// checks that it can be served and warms every session up; see the module doc.
    pub fn load(runtime: &OnnxRuntime, path: &Path, options: &OnnxOptions) -> Result<OnnxModel, LoadError> {
        if options.sessions == 0 {
            return Err(LoadError::Options("sessions: must be at least 1".into()));
        }
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Unreadable { path: path.to_path_buf(), source })?;
        let mlflow = if meta.is_dir() { Some(MlflowModel::read(path)?) } else { None };
        let model_file = mlflow.as_ref().map_or_else(|| path.to_path_buf(), |m| m.model_file.clone());
        // ONNX Runtime's own message for a file it cannot open is vaguer than the system's.
        std::fs::File::open(&model_file).map_err(|source| LoadError::Unreadable { path: model_file.clone(), source })?;

        let first = open_session(runtime, &model_file, options)?;
        let inputs = first.inputs().iter().map(|o| convert::spec(&model_file, Role::Input, o)).collect::<Result<Vec<_>, _>>()?;
        let outputs = first.outputs().iter().map(|o| convert::spec(&model_file, Role::Output, o)).collect::<Result<Vec<_>, _>>()?;
        let signature = match &mlflow {
            Some(m) => m.check_signature(path, &inputs, &outputs)?,
            None => None,
        };
        let mut sessions = vec![first];
        while sessions.len() < options.sessions {
            sessions.push(open_session(runtime, &model_file, options)?);
        }
        let warm_up = inputs.iter().map(convert::zeros).collect::<Result<Vec<_>, _>>();
        let warm_up = warm_up.map_err(|message| LoadError::WarmUp { path: model_file.clone(), message })?;
        let warm_up: Vec<&Tensor> = warm_up.iter().collect();
        for session in &mut sessions {
            run_session(session, &warm_up, &outputs).map_err(|message| LoadError::WarmUp { path: model_file.clone(), message })?;
        }
        Ok(OnnxModel {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            inputs,
            outputs,
            signature,
            model_file,
        })
    }

    /// The graph's inputs, in its order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The graph's outputs, in its order (the order `run` answers them in).
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The MLflow signature, checked against the graph; `None` for a plain `.onnx` file or an
    /// MLflow model without one.
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// The `.onnx` file the sessions were made from.
    pub fn model_file(&self) -> &Path {
        &self.model_file
    }

    /// Sessions in the pool.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The given tensors in the graph's input order, each checked against its spec: every input
    /// given once, no other, of the declared datatype and fixed dimensions.
    fn arrange<'t>(&self, given: &'t [Tensor]) -> Result<Vec<&'t Tensor>, String> {
        let takes = || self.inputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if let Some(unknown) = given.iter().find(|t| !self.inputs.iter().any(|s| s.name == t.name)) {
            return Err(format!("the model has no input '{}'; it takes {}", unknown.name, takes()));
        }
        self.inputs
            .iter()
            .map(|spec| {
                let mut named = given.iter().filter(|t| t.name == spec.name);
                match (named.next(), named.next()) {
                    (Some(tensor), None) => spec.check(tensor).map(|()| tensor).map_err(|e| e.to_string()),
                    (Some(_), Some(_)) => Err(format!("input '{}' is given twice", spec.name)),
                    (None, _) => Err(format!("input '{}' is missing; the model takes {}", spec.name, takes())),
                }
            })
            .collect()
    }

    /// An idle session if there is one, starting from the next in turn; else waits for that one.
    fn session(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(session) => return session,
                // A session whose caller panicked is still a valid session.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TensorModel for OnnxModel {
    /// Runs the inputs (any order; the batcher's requests sort them by name) through a session
    /// and answers the graph's outputs in its order. Inputs the model does not take are an error.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let arranged = self.arrange(&inputs)?;
        run_session(&mut self.session(), &arranged, &self.outputs)
    }
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("model_file", &self.model_file)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// A session over the model file, or ONNX Runtime's reason, classified.
fn open_session(runtime: &OnnxRuntime, file: &Path, options: &OnnxOptions) -> Result<Session, LoadError> {
    let refused = |code: ErrorCode, message: &str| {
        let (path, message) = (file.to_path_buf(), message.to_owned());
        match code {
            ErrorCode::InvalidProtobuf => LoadError::NotOnnx { path, message },
            ErrorCode::NotImplemented => LoadError::UnsupportedOperator { path, message },
            ErrorCode::InvalidGraph if message.contains("No Op registered") => LoadError::UnsupportedOperator { path, message },
            _ => LoadError::Refused { path, message },
        }
    };
    let builder = Session::builder(runtime.environment()).map_err(|e| refused(e.code(), e.message()))?;
    let mut builder = builder.with_intra_threads(options.intra_op_threads).map_err(|e| refused(e.code(), e.message()))?;
    builder.commit_from_file(file).map_err(|e| refused(e.code(), e.message()))
}

/// Runs `inputs` (in the graph's order) through `session` and copies out `outputs`.
fn run_session(session: &mut Session, inputs: &[&Tensor], outputs: &[TensorSpec]) -> Result<Vec<Tensor>, String> {
    let values = inputs.iter().map(|t| Ok((t.name.as_str(), convert::input(t)?))).collect::<Result<Vec<_>, String>>()?;
    let answers = session.run(values).map_err(|e| format!("ONNX Runtime failed to run the model: {e}"))?;
    outputs
        .iter()
        .map(|spec| {
            let value = answers.get(&spec.name).ok_or_else(|| format!("ONNX Runtime answered no output '{}'", spec.name))?;
            convert::output(spec, value)
        })
        .collect()
}
