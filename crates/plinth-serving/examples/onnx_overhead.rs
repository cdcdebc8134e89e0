//! What serving an ONNX model costs per request: the model run directly, and through the dynamic
//! batcher by 1 and by 8 concurrent clients, for requests of 1 and of 64 rows.
//!
//! ```sh
//! ORT_DYLIB_PATH=/path/to/libonnxruntime.so \
//!     cargo run --release -p plinth-serving --example onnx_overhead -- MODEL
//! ```
//!
//! Without `ORT_DYLIB_PATH`, the library is looked for in python3's onnxruntime package.
//! MODEL is an `.onnx` file or an MLflow model directory; its inputs are filled with
//! pseudo-random values. Each measurement is preceded by a warm-up. Prints, per request, the
//! median and 99th-percentile latency, and requests and rows per second. The batcher runs with a
//! queue delay of zero (what the hand-offs cost) and of 200 µs (what waiting for others costs a
//! lone client, and what it buys eight).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_serving::{
    BatchConfig, Batched, Batcher, Data, DataType, InferRequest, OnnxModel, OnnxOptions, OnnxRuntime, Tensor, TensorModel, TensorSpec,
};

/// Sessions, and batcher instances: one per core of a 2-core machine.
const SESSIONS: usize = 2;
/// Requests per client and measurement (a quarter of it again to warm up).
const REQUESTS: usize = 2_000;

/// A shared model for `Batched`, which takes its model by value.
struct Shared(Arc<OnnxModel>);

impl TensorModel for Shared {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        self.0.run(inputs)
    }
}

/// Pseudo-random values for an input: `rows` rows, other variable dimensions 1.
fn sample(spec: &TensorSpec, rows: usize, seed: u64) -> Tensor {
    let mut shape: Vec<usize> = spec.shape.iter().map(|d| usize::try_from(*d).unwrap_or(1)).collect();
    if let Some(first) = shape.first_mut()
        && spec.shape[0] < 0
    {
        *first = rows;
    }
    let n: usize = shape.iter().product();
    // A small linear congruential generator: values in [-2, 2).
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0
    };
    let data = match spec.datatype {
        DataType::F32 => Data::F32((0..n).map(|_| next() as f32).collect()),
        DataType::F64 => Data::F64((0..n).map(|_| next()).collect()),
        DataType::I64 => Data::I64((0..n).map(|_| next() as i64).collect()),
        DataType::I32 => Data::I32((0..n).map(|_| next() as i32).collect()),
        DataType::Bool => Data::Bool((0..n).map(|_| next() > 0.0).collect()),
        other => panic!("input '{}' is {other}; this example fills FP32, FP64, INT64, INT32 and BOOL inputs", spec.name),
    };
    Tensor::new(spec.name.clone(), shape, data).expect("a tensor of its own shape")
}

fn inputs(model: &OnnxModel, rows: usize, seed: u64) -> Vec<Tensor> {
    model.inputs().iter().map(|spec| sample(spec, rows, seed)).collect()
}

/// One line of the table.
struct Line {
    path: String,
    times: Vec<Duration>,
    elapsed: Duration,
    rows: usize,
}

impl Line {
    fn print(mut self) {
        self.times.sort();
        let p = |q: usize| self.times[(self.times.len() * q / 100).min(self.times.len() - 1)];
        let per_second = self.times.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:>4}  {:<34} {:>10.1?} {:>10.1?} {:>12.0} {:>12.0}",
            self.rows,
            self.path,
            p(50),
            p(99),
            per_second,
            per_second * self.rows as f64
        );
    }
}

/// The model run directly, one call at a time.
fn raw(model: &OnnxModel, rows: usize) -> Line {
    let requests: Vec<Vec<Tensor>> = (0..REQUESTS as u64).map(|i| inputs(model, rows, i)).collect();
    for request in requests.iter().take(REQUESTS / 4) {
        model.run(request.clone()).expect("warm-up run");
    }
    let mut times = Vec::with_capacity(REQUESTS);
    let started = Instant::now();
    for request in &requests {
        let request = request.clone();
        let t = Instant::now();
        model.run(request).expect("run");
        times.push(t.elapsed());
    }
    Line { path: "run, direct".into(), times, elapsed: started.elapsed(), rows }
}

/// Through a batcher, `clients` clients each sending requests one after the other.
async fn batched(model: &Arc<OnnxModel>, rows: usize, clients: usize, delay: Duration) -> Line {
    let config = BatchConfig { max_batch_size: 8 * rows, max_queue_delay: delay, instances: SESSIONS, ..BatchConfig::default() };
    let batcher = Batcher::start(config, Arc::new(Batched(Shared(model.clone())))).expect("batcher");
    let per_client = REQUESTS / clients.min(4);
    let run = |n: usize| {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let batcher = batcher.clone();
                let requests: Vec<InferRequest> =
                    (0..n).map(|i| InferRequest::new(inputs(model, rows, (c * n + i) as u64)).expect("request")).collect();
                tokio::spawn(async move {
                    let mut times = Vec::with_capacity(requests.len());
                    for request in requests {
                        let t = Instant::now();
                        batcher.submit(request, None).await.expect("answered");
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            let mut times = Vec::new();
            for task in tasks {
                times.extend(task.await.expect("client"));
            }
            (times, started.elapsed())
        }
    };
    run(per_client / 4).await;
    let (times, elapsed) = run(per_client).await;
    let path = format!("batcher, {clients} client(s), delay {delay:?}");
    Line { path, times, elapsed, rows }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: onnx_overhead MODEL (an .onnx file or an MLflow model directory); ORT_DYLIB_PATH names the library");
        std::process::exit(2);
    };
    if let Err(e) = measure(path).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn measure(path: PathBuf) -> Result<(), Box<dyn Error>> {
    let runtime = OnnxRuntime::init(None)?;
    let options = OnnxOptions { intra_op_threads: 1, sessions: SESSIONS };
    let model = Arc::new(OnnxModel::load(&runtime, &path, &options)?);
    println!("ONNX Runtime {} ({}, {})", runtime.version(), runtime.library().display(), runtime.origin());
    println!(
        "{}: {SESSIONS} sessions of 1 intra-op thread; batcher: {SESSIONS} instances, at most 8 requests' rows per batch",
        path.display()
    );
    println!("{:>4}  {:<34} {:>10} {:>10} {:>12} {:>12}", "rows", "path", "p50", "p99", "requests/s", "rows/s");
    for rows in [1, 64] {
        raw(&model, rows).print();
        for delay in [Duration::ZERO, Duration::from_micros(200)] {
            batched(&model, rows, 1, delay).await.print();
            batched(&model, rows, 8, delay).await.print();
        }
    }
    Ok(())
}
