//! The batcher's semantics, made deterministic: executors record the batches they see, and a
//! gated executor holds its instance until the test releases it, so a test can build exactly the
//! queue it wants before the next batch is formed. No test measures time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use proptest::prelude::*;

use super::*;

/// A request: its rows (values), and the key of its non-batch shape.
#[derive(Debug, Clone)]
struct Req {
    values: Vec<i64>,
    key: u64,
}

impl Batchable for Req {
    fn rows(&self) -> usize {
        self.values.len()
    }
    fn merge_key(&self) -> u64 {
        self.key
    }
}

fn req(values: &[i64]) -> Req {
    Req { values: values.to_vec(), key: 0 }
}

/// The model: `3x + 1` per row, run over the whole batch at once (rows joined, then split back).
fn model(rows: &[i64]) -> Vec<i64> {
    rows.iter().map(|x| x.wrapping_mul(3).wrapping_add(1)).collect()
}

/// Runs the model on the joined rows of a batch and splits the output back per request; records
/// each batch's request sizes. With a gate, waits for a release before each batch.
#[derive(Default)]
struct Recorder {
    /// Batches the executor was given, counted before the gate.
    started: AtomicUsize,
    batches: Mutex<Vec<Vec<usize>>>,
    gate: Option<Mutex<mpsc::Receiver<()>>>,
    fail_when_holding: Option<i64>,
}

impl Executor<Req, Vec<i64>> for Recorder {
    fn execute(&self, batch: Vec<Req>) -> Result<Vec<Vec<i64>>, String> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.lock().expect("gate").recv().map_err(|_| "the test ended".to_owned())?;
        }
        self.batches.lock().expect("batches").push(batch.iter().map(|r| r.values.len()).collect());
        if let Some(bad) = self.fail_when_holding
            && batch.iter().any(|r| r.values.contains(&bad))
        {
            return Err(format!("cannot score {bad}"));
        }
        let joined: Vec<i64> = batch.iter().flat_map(|r| r.values.iter().copied()).collect();
        let out = model(&joined);
        let mut at = 0;
        Ok(batch
            .iter()
            .map(|r| {
                let part = out[at..at + r.values.len()].to_vec();
                at += r.values.len();
                part
            })
            .collect())
    }
}

fn config(max_batch_size: usize, delay_ms: u64) -> BatchConfig {
    BatchConfig {
        max_batch_size,
        preferred_batch_sizes: vec![],
        max_queue_delay: Duration::from_millis(delay_ms),
        max_queue_size: 100,
        default_timeout: Duration::from_secs(60),
        instances: 1,
    }
}

/// A batcher whose executor waits for `release` before each batch.
fn gated(config: BatchConfig) -> (Batcher<Req, Vec<i64>>, Arc<Recorder>, mpsc::Sender<()>) {
    let (release, gate) = mpsc::channel();
    let recorder = Arc::new(Recorder { gate: Some(Mutex::new(gate)), ..Recorder::default() });
    (Batcher::start(config, recorder.clone()).expect("start"), recorder, release)
}

/// Waits until `n` requests are queued (the scheduler and the callers run concurrently).
async fn queued(b: &Batcher<Req, Vec<i64>>, n: usize) {
    while b.queued() < n {
        tokio::task::yield_now().await;
    }
}

/// Submits a request of `max_batch_size` rows (a full batch, sent at once) and waits until the
/// executor holds it: the only instance is then busy, and what is submitted next queues.
async fn occupy(b: &Batcher<Req, Vec<i64>>, recorder: &Recorder, rows: usize) -> tokio::task::JoinHandle<Result<Vec<i64>, BatchError>> {
    let call = spawn_submit(b, req(&vec![7; rows])).await;
    while recorder.started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    call
}

async fn spawn_submit(b: &Batcher<Req, Vec<i64>>, r: Req) -> tokio::task::JoinHandle<Result<Vec<i64>, BatchError>> {
    let b = b.clone();
    tokio::spawn(async move { b.submit(r, None).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_caller_gets_its_own_answer_under_concurrency() {
    let recorder = Arc::new(Recorder::default());
    let mut c = config(16, 1);
    c.max_queue_size = 1000;
    c.instances = 2;
    let b = Batcher::start(c, recorder.clone()).expect("start");
    let mut calls = Vec::new();
    for i in 0..200_i64 {
        let rows: Vec<i64> = (0..(i % 4 + 1)).map(|j| i * 10 + j).collect();
        let b = b.clone();
        calls.push(tokio::spawn(async move { (rows.clone(), b.submit(Req { values: rows, key: 0 }, None).await) }));
    }
    for call in calls {
        let (rows, got) = call.await.expect("join");
        assert_eq!(got.expect("answered"), model(&rows));
    }
    let batches = recorder.batches.lock().expect("batches").clone();
    assert!(batches.iter().all(|b| b.iter().sum::<usize>() <= 16), "no batch over max_batch_size: {batches:?}");
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 200, "every request ran exactly once");
}

/// Queues single-row requests with values `values`, one after the other (arrival order is the order given).
async fn queue_all(b: &Batcher<Req, Vec<i64>>, values: &[(i64, u64)]) -> Vec<tokio::task::JoinHandle<Result<Vec<i64>, BatchError>>> {
    let mut calls = Vec::new();
    for (v, key) in values {
        calls.push(spawn_submit(b, Req { values: vec![*v], key: *key }).await);
        queued(b, calls.len()).await;
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_batch_is_sent_without_waiting_for_the_delay() {
    let (b, recorder, release) = gated(config(4, 3_600_000));
    let first = occupy(&b, &recorder, 4).await;
    let mut calls = queue_all(&b, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]).await;
    release.send(()).expect("release");
    release.send(()).expect("release");
    first.await.expect("join").expect("ok");
    for (v, call) in (1..=4).zip(calls.drain(..4)) {
        assert_eq!(call.await.expect("join").expect("ok"), model(&[v]));
    }
    assert_eq!(recorder.batches.lock().expect("b").clone(), vec![vec![4], vec![1, 1, 1, 1]]);
    // The fifth waits for company or for its (hour-long) delay; closing answers it.
    assert_eq!(b.queued(), 1);
    b.close();
    assert_eq!(calls.pop().expect("fifth").await.expect("join"), Err(BatchError::ShuttingDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_cannot_merge_never_share_a_batch() {
    let (b, recorder, release) = gated(config(8, 0));
    let first = occupy(&b, &recorder, 8).await;
    let calls = queue_all(&b, &[(1, 1), (2, 1), (3, 2), (4, 2), (5, 1)]).await;
    for _ in 0..4 {
        release.send(()).expect("release");
    }
    first.await.expect("join").expect("ok");
    for (v, call) in (1..=5).zip(calls) {
        assert_eq!(call.await.expect("join").expect("ok"), model(&[v]));
    }
    // Arrival order is kept: [1, 2] (key 1), then [3, 4] (key 2), then [5] (key 1).
    assert_eq!(recorder.batches.lock().expect("b").clone(), vec![vec![8], vec![1, 1], vec![1, 1], vec![1]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_largest_preferred_batch_is_sent_at_once() {
    let mut c = config(8, 3_600_000);
    c.preferred_batch_sizes = vec![2, 4];
    let (b, recorder, release) = gated(c);
    let first = occupy(&b, &recorder, 8).await;
    let mut calls = queue_all(&b, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]).await;
    release.send(()).expect("release");
    release.send(()).expect("release");
    first.await.expect("join").expect("ok");
    // Five queued, preferred sizes 2 and 4: the batch of four goes without waiting the delay.
    for call in calls.drain(..4) {
        call.await.expect("join").expect("ok");
    }
    assert_eq!(recorder.batches.lock().expect("b").clone(), vec![vec![8], vec![1, 1, 1, 1]]);
    assert_eq!(b.queued(), 1, "the fifth waits for its delay or for company");
    b.close();
    assert_eq!(calls.pop().expect("fifth").await.expect("join"), Err(BatchError::ShuttingDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_refuses_at_once() {
    let mut c = config(1, 0);
    c.max_queue_size = 2;
    let (b, recorder, release) = gated(c);
    let first = occupy(&b, &recorder, 1).await;
    let calls = queue_all(&b, &[(1, 0), (2, 0)]).await;
    assert_eq!(b.submit(req(&[3]), None).await, Err(BatchError::QueueFull { size: 2 }));
    for _ in 0..3 {
        release.send(()).expect("release");
    }
    first.await.expect("join").expect("ok");
    for call in calls {
        call.await.expect("join").expect("ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_past_its_timeout_is_answered_and_never_run() {
    let (b, recorder, release) = gated(config(1, 0));
    let first = occupy(&b, &recorder, 1).await;
    let b2 = b.clone();
    let late = tokio::spawn(async move { b2.submit(req(&[42]), Some(Duration::from_millis(1))).await });
    queued(&b, 1).await;
    // Its timeout passes while the only instance is busy (a wait, not a timing assertion).
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).expect("release");
    first.await.expect("join").expect("ok");
    assert!(matches!(late.await.expect("join"), Err(BatchError::Timeout { .. })));
    assert_eq!(recorder.batches.lock().expect("b").clone(), vec![vec![1]], "only the first request ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_fails_its_requests_only() {
    let recorder = Arc::new(Recorder { fail_when_holding: Some(13), ..Recorder::default() });
    let b = Batcher::start(config(1, 0), recorder).expect("start");
    assert_eq!(b.submit(req(&[13]), None).await, Err(BatchError::Execution("cannot score 13".into())));
    assert_eq!(b.submit(req(&[14]), None).await, Ok(model(&[14])));
}

#[tokio::test]
async fn requests_the_model_cannot_take_are_refused_before_queueing() {
    let b = Batcher::start(config(4, 0), Arc::new(Recorder::default())).expect("start");
    assert_eq!(b.submit(req(&[1, 2, 3, 4, 5]), None).await, Err(BatchError::TooLarge { rows: 5, max: 4 }));
    assert_eq!(b.submit(req(&[]), None).await, Err(BatchError::Empty));
    b.close();
    assert_eq!(b.submit(req(&[1]), None).await, Err(BatchError::ShuttingDown));
}

#[test]
fn configs_are_checked_field_by_field() {
    assert!(BatchConfig::default().problems().is_empty());
    let bad = BatchConfig { max_batch_size: 4, preferred_batch_sizes: vec![8], max_queue_size: 0, instances: 0, ..BatchConfig::default() };
    let problems = bad.problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("preferred_batch_sizes")
            && problems[1].starts_with("max_queue_size")
            && problems[2].starts_with("instances")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Batching never changes a result: any set of requests, batched however the timing falls,
    /// answers each exactly what the model answers for that request alone.
    #[test]
    fn batched_answers_equal_unbatched_ones(
        requests in proptest::collection::vec(proptest::collection::vec(any::<i64>(), 1..6), 1..40),
        max in 5usize..20,
        instances in 1usize..4,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async {
            let mut c = config(max, 1);
            c.instances = instances;
            let b = Batcher::start(c, Arc::new(Recorder::default())).expect("start");
            let calls: Vec<_> = requests.iter().map(|rows| {
                let b = b.clone();
                let rows = rows.clone();
                tokio::spawn(async move { b.submit(Req { values: rows, key: 0 }, None).await })
            }).collect();
            for (rows, call) in requests.iter().zip(calls) {
                let got = call.await.expect("join").expect("answered");
                prop_assert_eq!(got, model(rows));
            }
            Ok(())
        })?;
    }
}
