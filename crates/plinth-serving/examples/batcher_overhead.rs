//! What the dynamic batcher itself costs per request: a model that does nothing, called by 1 and
//! by 8 concurrent clients, with batching off (a delay of zero) and on (a 200 µs delay).
//!
//! ```sh
//! cargo run --release -p plinth-serving --example batcher_overhead
//! ```
//!
//! Prints the median and 99th-percentile latency per request and the requests per second. The
//! serving benchmark under `bench/` (issue 14) will measure the whole path, HTTP included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_serving::{BatchConfig, Batchable, Batcher, Executor};

struct Row(u64);

impl Batchable for Row {
    fn rows(&self) -> usize {
        1
    }
    fn merge_key(&self) -> u64 {
        0
    }
}

struct Echo;

impl Executor<Row, u64> for Echo {
    fn execute(&self, batch: Vec<Row>) -> Result<Vec<u64>, String> {
        Ok(batch.into_iter().map(|r| r.0).collect())
    }
}

async fn run(clients: usize, delay: Duration, per_client: usize) {
    let config = BatchConfig { max_batch_size: 64, max_queue_delay: delay, instances: 2, ..BatchConfig::default() };
    let batcher = Batcher::start(config, Arc::new(Echo)).expect("start");
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let t = Instant::now();
                    let got = batcher.submit(Row((c * per_client + i) as u64), None).await.expect("answered");
                    assert_eq!(got, (c * per_client + i) as u64);
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("client"));
    }
    let elapsed = started.elapsed();
    times.sort();
    let p = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    println!(
        "{clients} client(s), delay {delay:?}: p50 {:?}, p99 {:?}, {:.0} requests/s",
        p(50),
        p(99),
        times.len() as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for delay in [Duration::ZERO, Duration::from_micros(200)] {
        run(1, delay, 5_000).await;
        run(8, delay, 5_000).await;
    }
}
