//! Model serving without HTTP: what runs a model for many concurrent callers. The wire formats
//! (the Open Inference Protocol, MLflow's `/invocations`) belong to `plinth-api`.
//!
//! Built so far: `batcher`, the dynamic batcher with Triton's semantics; `tensor`, OIP's tensors
//! with the join and split batching needs; `infer`, inference requests as the batcher queues
//! them and `Batched`, the executor that runs a batch through a `TensorModel` once (issue 14);
//! and `onnx`, the first model runtime: ONNX models (plain or MLflow's) in ONNX Runtime, loaded
//! from a shared library at run time.
//! `deployments`, the service: deployments stored (validated, audited in their own transaction)
//! and served on this node, each variant's model resolved through the `source::ModelSource` port,
//! loaded and warmed before the change is stored, requests routed between variants by `router`.
//! `rollback` watches variants over a sliding window and orders automatic rollbacks;
//! `predictions` is the prediction log (Parquet, written off the request's path).
//! `features` assembles a model's inputs from online features read through the `FeatureLookup` port.
//! To come: more model runtimes (tract, a Python worker pool).

pub mod batcher;
pub mod deployments;
pub mod features;
pub mod infer;
pub mod metrics;
pub mod objectives;
pub mod onnx;
pub mod predictions;
pub mod rollback;
pub mod router;
pub mod shadow;
pub mod source;
pub mod tensor;
pub mod window;

pub use batcher::{BatchConfig, BatchError, Batchable, Batcher, Executor};
pub use deployments::{DeploymentService, DeploymentView, Inference, ModelMetadata, RequestInfo, ServingConfig, VariantState};
pub use features::{FeatureColumn, FeatureLookup, Scalar, ServiceShape};
pub use infer::{Batched, InferRequest, TensorModel};
pub use objectives::ObjectiveReport;
pub use onnx::{OnnxModel, OnnxOptions, OnnxRuntime};
pub use predictions::{PredictionLog, PredictionLogConfig};
pub use rollback::{Notifier, Silent};
pub use source::{ModelSource, ResolvedVersion, SourceError};
pub use tensor::{Data, DataType, Tensor, TensorError, TensorSpec};
