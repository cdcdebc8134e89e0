//! Inference requests as the batcher queues them, and the executor that runs a batch of them
//! through a model that takes whole tensors: the requests' inputs are joined along the batch
//! dimension, the model runs once, and every output is split back by each request's rows.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::batcher::{Batchable, Executor};
use crate::tensor::{Tensor, TensorError};

/// One request's inputs, every one with the same number of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    inputs: Vec<Tensor>,
    rows: usize,
    key: u64,
    /// When the request was made, for the time it spends queued.
    created: std::time::Instant,
}

impl InferRequest {
    /// The inputs, sorted by name; refused when two share a name, when one is a scalar (it has no
    /// batch dimension), or when their first dimensions differ.
    pub fn new(mut inputs: Vec<Tensor>) -> Result<InferRequest, TensorError> {
        if inputs.is_empty() {
            return Err(TensorError::Invalid("the request has no inputs".into()));
        }
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = inputs.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(TensorError::Invalid(format!("input '{}' is given twice", pair[0].name)));
        }
        if let Some(scalar) = inputs.iter().find(|t| t.shape.is_empty()) {
            return Err(TensorError::Invalid(format!("input '{}' is a scalar; inputs need a batch dimension", scalar.name)));
        }
        let rows = inputs[0].rows();
        if let Some(other) = inputs.iter().find(|t| t.rows() != rows) {
            return Err(TensorError::Invalid(format!(
                "inputs disagree on the batch size: '{}' has {rows} rows, '{}' has {}",
                inputs[0].name,
                other.name,
                other.rows()
            )));
        }
        // Requests share a batch only with the same inputs, datatypes and non-batch shapes.
        let mut hasher = DefaultHasher::new();
        for t in &inputs {
            (&t.name, t.datatype(), &t.shape[1..]).hash(&mut hasher);
        }
        Ok(InferRequest { key: hasher.finish(), rows, inputs, created: std::time::Instant::now() })
    }

    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// When the request was made.
    pub fn created(&self) -> std::time::Instant {
        self.created
    }
}

impl Batchable for InferRequest {
    fn rows(&self) -> usize {
        self.rows
    }

    fn merge_key(&self) -> u64 {
        self.key
    }
}

/// A model that runs on whole tensors (a runtime session): inputs sorted by name in, outputs out,
/// every output with the inputs' batch dimension first.
pub trait TensorModel: Send + Sync + 'static {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String>;
}

/// Runs batches of `InferRequest`s through a `TensorModel`: joins, runs once, splits.
pub struct Batched<M>(pub M);

impl<M: TensorModel> Executor<InferRequest, Vec<Tensor>> for Batched<M> {
    fn execute(&self, batch: Vec<InferRequest>) -> Result<Vec<Vec<Tensor>>, String> {
        let rows: Vec<usize> = batch.iter().map(|r| r.rows).collect();
        let inputs = if batch.len() == 1 {
            batch.into_iter().next().map(|r| r.inputs).unwrap_or_default()
        } else {
            // The batcher only puts requests with one merge key together: same names, same order.
            let n = batch[0].inputs.len();
            let mut columns: Vec<Vec<Tensor>> = (0..n).map(|_| Vec::with_capacity(batch.len())).collect();
            for request in batch {
                for (column, tensor) in columns.iter_mut().zip(request.inputs) {
                    column.push(tensor);
                }
            }
            columns.iter().map(|parts| Tensor::concat(parts)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?
        };
        let outputs = self.0.run(inputs)?;
        if rows.len() == 1 {
            return Ok(vec![outputs]);
        }
        let mut answers: Vec<Vec<Tensor>> = (0..rows.len()).map(|_| Vec::with_capacity(outputs.len())).collect();
        for output in outputs {
            for (answer, part) in answers.iter_mut().zip(output.split(&rows).map_err(|e| e.to_string())?) {
                answer.push(part);
            }
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::batcher::{BatchConfig, Batcher};
    use crate::tensor::Data;

    /// A linear model over two features: `y = 0.5 a - 2 b + 0.25`, in FP32, row by row; and the
    /// rows' sum of squares of `a` as an INT64 second output of shape `[rows, 1]`.
    struct Linear;

    impl TensorModel for Linear {
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
            let (Data::F32(a), Data::F32(b)) = (&inputs[0].data, &inputs[1].data) else { return Err("FP32 inputs expected".into()) };
            let rows = inputs[0].rows();
            let y: Vec<f32> = a.iter().zip(b).map(|(a, b)| 0.5 * a - 2.0 * b + 0.25).collect();
            let per = a.len() / rows.max(1);
            let squares: Vec<i64> = a.chunks(per.max(1)).map(|row| row.iter().map(|v| (*v as i64) * (*v as i64)).sum()).collect();
            Ok(vec![
                Tensor::new("y", inputs[0].shape.clone(), Data::F32(y)).map_err(|e| e.to_string())?,
                Tensor::new("sq", vec![rows, 1], Data::I64(squares)).map_err(|e| e.to_string())?,
            ])
        }
    }

    fn request(rows: usize, seed: u32) -> InferRequest {
        let a: Vec<f32> = (0..rows * 2).map(|i| ((i as u32 * 7 + seed) % 13) as f32).collect();
        let b: Vec<f32> = (0..rows * 2).map(|i| ((i as u32 * 3 + seed) % 5) as f32 / 4.0).collect();
        InferRequest::new(vec![
            Tensor::new("b", vec![rows, 2], Data::F32(b)).expect("b"),
            Tensor::new("a", vec![rows, 2], Data::F32(a)).expect("a"),
        ])
        .expect("request")
    }

    #[test]
    fn requests_are_checked_and_keyed_by_their_shapes() {
        let t = |name: &str, shape: Vec<usize>| Tensor::new(name, shape.clone(), Data::F32(vec![0.0; shape.iter().product()])).expect("t");
        assert!(InferRequest::new(vec![]).is_err());
        assert!(InferRequest::new(vec![t("a", vec![2, 1]), t("a", vec![2, 1])]).is_err());
        assert!(InferRequest::new(vec![t("a", vec![2, 1]), t("b", vec![3, 1])]).is_err());
        assert!(InferRequest::new(vec![t("a", vec![])]).is_err());
        let one = InferRequest::new(vec![t("a", vec![1, 4])]).expect("one");
        let two = InferRequest::new(vec![t("a", vec![2, 4])]).expect("two");
        let wider = InferRequest::new(vec![t("a", vec![1, 5])]).expect("wider");
        assert_eq!(one.merge_key(), two.merge_key(), "rows do not matter");
        assert_ne!(one.merge_key(), wider.merge_key(), "non-batch shapes do");
        assert_eq!(two.rows(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Batching never changes a result: through the batcher, however the requests fall into
        /// batches, each answer equals the model run on that request alone, bit for bit.
        #[test]
        fn batched_inference_equals_one_by_one(rows in proptest::collection::vec(1usize..4, 1..30), max in 4usize..12) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
            runtime.block_on(async {
                let config = BatchConfig { max_batch_size: max, max_queue_delay: std::time::Duration::from_millis(1), instances: 2, ..BatchConfig::default() };
                let batcher = Batcher::start(config, Arc::new(Batched(Linear))).expect("start");
                let calls: Vec<_> = rows.iter().enumerate().map(|(i, r)| {
                    let (batcher, req) = (batcher.clone(), request(*r, i as u32));
                    tokio::spawn(async move { batcher.submit(req, None).await })
                }).collect();
                for (i, (r, call)) in rows.iter().zip(calls).enumerate() {
                    let alone = Linear.run(request(*r, i as u32).inputs().to_vec()).expect("alone");
                    let got = call.await.expect("join").expect("answered");
                    prop_assert_eq!(got, alone);
                }
                Ok(())
            })?;
        }
    }
}
