//! Shadow variants: a copy of a sampled share of requests run after the primary answered, off the
//! request's path; the answer is compared with the primary's and counted, never returned.

use std::sync::Arc;
use std::time::Duration;

use plinth_core::HasErrorCode;

use crate::deployments::{LiveVariant, Result, check_inputs, labels};
use crate::infer::InferRequest;
use crate::tensor::Tensor;

/// Runs a shadow's copy of a request and compares its answer with the primary's: the outcome,
/// whether the two agree, and the shadow's latency go to the metrics; the answer goes nowhere.
pub(crate) async fn run_shadow(
    deployment: String,
    shadow: Arc<LiveVariant>,
    inputs: Vec<Tensor>,
    primary: Vec<Tensor>,
    timeout: Option<Duration>,
) {
    let labels = labels(&deployment, &shadow.spec.name);
    let started = std::time::Instant::now();
    let res: Result<Vec<Tensor>> = async {
        check_inputs(&shadow.inputs, &inputs)?;
        Ok(shadow.batcher.submit(InferRequest::new(inputs)?, timeout).await?)
    }
    .await;
    metrics::histogram!(crate::metrics::SHADOW_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    let outcome = match &res {
        Ok(answer) if agree(&primary, answer) => "AGREE",
        Ok(_) => "DISAGREE",
        Err(e) => e.error_code().name(),
    };
    let mut counted = labels.to_vec();
    counted.push(("outcome", outcome.to_owned()));
    metrics::counter!(crate::metrics::SHADOW_REQUESTS, &counted).increment(1);
}

/// Whether two answers agree: the same outputs, shapes and values (floating-point values within
/// a relative 1e-6, since runtimes may differ by a few ulps between batch sizes).
fn agree(a: &[Tensor], b: &[Tensor]) -> bool {
    fn close(x: f64, y: f64) -> bool {
        x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
    }
    a.len() == b.len()
        && a.iter().all(|t| {
            b.iter().find(|u| u.name == t.name).is_some_and(|u| {
                t.shape == u.shape
                    && match (&t.data, &u.data) {
                        (crate::tensor::Data::F32(x), crate::tensor::Data::F32(y)) => {
                            x.iter().zip(y).all(|(x, y)| close(f64::from(*x), f64::from(*y)))
                        }
                        (crate::tensor::Data::F64(x), crate::tensor::Data::F64(y)) => x.iter().zip(y).all(|(x, y)| close(*x, *y)),
                        (x, y) => x == y,
                    }
            })
        })
}
