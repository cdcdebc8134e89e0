//! Model serving without HTTP: what runs a model for many concurrent callers. The wire formats
//! (the Open Inference Protocol, MLflow's `/invocations`) belong to `plinth-api`.
//!
//! Built so far: `batcher`, the dynamic batcher with Triton's semantics; `tensor`, OIP's tensors
//! with the join and split batching needs; `infer`, inference requests as the batcher queues
//! them and `Batched`, the executor that runs a batch through a `TensorModel` once (issue 14);
//! and `onnx`, the first model runtime: ONNX models (plain or MLflow's) in ONNX Runtime, loaded
//! from a shared library at run time.
//! To come: more model runtimes (tract, a Python worker pool), deployments that follow registry
//! aliases, traffic routing, and the ports `ModelSource` and `FeatureLookup` that
//! `plinth-server` wires to the registry and the feature store.

pub mod batcher;
pub mod infer;
pub mod onnx;
pub mod tensor;

pub use batcher::{BatchConfig, BatchError, Batchable, Batcher, Executor};
pub use infer::{Batched, InferRequest, TensorModel};
pub use onnx::{OnnxModel, OnnxOptions, OnnxRuntime};
pub use tensor::{Data, DataType, Tensor, TensorError, TensorSpec};
