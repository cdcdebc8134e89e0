//! The dynamic batcher: requests to one model wait briefly in a bounded queue and are run together,
//! with the semantics of Triton's dynamic batching (`design/protocols.md` §4.3):
//!
//! - a batch holds requests in order of arrival, up to `max_batch_size` rows; a request with more
//!   rows than that is refused (`TooLarge`), never split;
//! - requests that cannot share a batch (`Batchable::merge_key`: other non-batch shapes or types)
//!   end the batch; they go in a later one, still in arrival order;
//! - a full batch is sent at once; otherwise, when `preferred_batch_sizes` are given and the queue
//!   starts with requests whose rows add up to one of them, the largest such batch is sent at once;
//!   otherwise the batcher waits for more requests, at most `max_queue_delay` from the arrival of
//!   the oldest, and then sends the largest batch it can form (a delay of zero sends what is there);
//! - the queue holds at most `max_queue_size` requests: one more is refused at once (`QueueFull`,
//!   the protocol's "unavailable"), rather than letting latency grow without bound;
//! - a request still queued past its timeout is answered `Timeout` and never run; a request whose
//!   caller went away before it was run is dropped;
//! - `instances` batches run at the same time, each on a thread of its own (model execution is CPU
//!   work), and each request gets back its own answer: the executor answers one result per
//!   request, in the batch's order.
//!
//! Each instance thread schedules for itself: while idle it waits on the queue's condition
//! variable (whose timeouts are precise to microseconds, where an async timer would round a
//! 200 µs batching delay up to a millisecond), forms the next batch when it is due, and runs it.
//! A request thus crosses two hand-offs, into an instance thread and back to its caller's task.
//! Callers stay async: `submit` queues under a mutex and awaits its answer.
//!
//! The batcher knows nothing of tensors: joining requests into one model input and splitting the
//! output is the `Executor`'s, so that what a batch computes can be checked against the same
//! requests run one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How one model's requests are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one batch (at least 1).
    pub max_batch_size: usize,
    /// Batch sizes sent as soon as they can be formed; the largest wins.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest queued request may wait for others to join its batch.
    pub max_queue_delay: Duration,
    /// Most requests waiting at once (at least 1).
    pub max_queue_size: usize,
    /// How long a request may wait in the queue when it names no timeout of its own.
    pub default_timeout: Duration,
    /// Batches run at the same time (at least 1).
    pub instances: usize,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            max_batch_size: 64,
            preferred_batch_sizes: Vec::new(),
            max_queue_delay: Duration::from_micros(500),
            max_queue_size: 1024,
            default_timeout: Duration::from_secs(30),
            instances: 1,
        }
    }
}

impl BatchConfig {
    /// Every problem with the settings, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_batch_size == 0 {
            problems.push("max_batch_size: must be at least 1".to_owned());
        }
        if let Some(p) = self.preferred_batch_sizes.iter().find(|p| **p == 0 || **p > self.max_batch_size) {
            problems.push(format!("preferred_batch_sizes: {p} is not between 1 and max_batch_size ({})", self.max_batch_size));
        }
        if self.max_queue_size == 0 {
            problems.push("max_queue_size: must be at least 1".to_owned());
        }
        if self.instances == 0 {
            problems.push("instances: must be at least 1".to_owned());
        }
        problems
    }
}

/// A request the batcher can queue.
pub trait Batchable: Send + 'static {
    /// What it adds to a batch's size: its rows (the first dimension of its inputs).
    fn rows(&self) -> usize;
    /// Requests share a batch only when their keys are equal (the same non-batch shapes and types).
    fn merge_key(&self) -> u64;
}

/// Runs batches of one model.
pub trait Executor<Req, Resp>: Send + Sync + 'static {
    /// Runs `batch` (requests in arrival order) and answers one result per request, in the same
    /// order; an error fails every request of the batch. Called on one of the instance threads.
    fn execute(&self, batch: Vec<Req>) -> Result<Vec<Resp>, String>;
}

/// Why a request got no answer from the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the request has {rows} rows; this model takes at most {max} per request")]
    TooLarge { rows: usize, max: usize },
    #[error("the request has no rows")]
    Empty,
    #[error("the model's queue is full ({size} requests waiting); retry shortly")]
    QueueFull { size: usize },
    #[error("the request waited {waited:?} in the model's queue, longer than its timeout")]
    Timeout { waited: Duration },
    #[error("the model failed on this batch: {0}")]
    Execution(String),
    #[error("the model is shutting down")]
    ShuttingDown,
}

struct Job<Req, Resp> {
    req: Req,
    rows: usize,
    key: u64,
    arrived: Instant,
    deadline: Instant,
    answer: oneshot::Sender<Result<Resp, BatchError>>,
}

struct Queue<Req, Resp> {
    jobs: VecDeque<Job<Req, Resp>>,
    closed: bool,
}

struct Shared<Req, Resp> {
    config: BatchConfig,
    queue: Mutex<Queue<Req, Resp>>,
    /// Wakes an idle instance: a request arrived, or the batcher closed.
    wake: Condvar,
}

impl<Req, Resp> Shared<Req, Resp> {
    fn lock(&self) -> MutexGuard<'_, Queue<Req, Resp>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the batcher when the last handle goes.
struct Owner<Req, Resp>(Arc<Shared<Req, Resp>>);

impl<Req, Resp> Drop for Owner<Req, Resp> {
    fn drop(&mut self) {
        close(&self.0);
    }
}

/// The batcher of one model: `submit` from any number of tasks. Dropping every handle (or
/// `close`) lets the batches already running finish and answers the queued requests
/// `ShuttingDown`.
pub struct Batcher<Req, Resp> {
    shared: Arc<Shared<Req, Resp>>,
    _owner: Arc<Owner<Req, Resp>>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher { shared: self.shared.clone(), _owner: self._owner.clone() }
    }
}

impl<Req: Batchable, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the instance threads of `executor`. The config must be valid
    /// (`BatchConfig::problems` empty); a thread that cannot be started is an error.
    pub fn start(config: BatchConfig, executor: Arc<dyn Executor<Req, Resp>>) -> std::io::Result<Batcher<Req, Resp>> {
        debug_assert!(config.problems().is_empty(), "invalid batch config: {:?}", config.problems());
        let instances = config.instances.max(1);
        let shared = Arc::new(Shared { config, queue: Mutex::new(Queue { jobs: VecDeque::new(), closed: false }), wake: Condvar::new() });
        let batcher = Batcher { _owner: Arc::new(Owner(shared.clone())), shared };
        for i in 0..instances {
            let (shared, executor) = (batcher.shared.clone(), executor.clone());
            // On failure `batcher` drops here, which closes it and ends the threads already started.
            std::thread::Builder::new().name(format!("plinth-model-{i}")).spawn(move || run_instance(&shared, &*executor))?;
        }
        Ok(batcher)
    }

    /// Queues `req` and waits for its answer; `timeout` overrides the default queue timeout.
    pub async fn submit(&self, req: Req, timeout: Option<Duration>) -> Result<Resp, BatchError> {
        let config = &self.shared.config;
        let rows = req.rows();
        if rows == 0 {
            return Err(BatchError::Empty);
        }
        if rows > config.max_batch_size {
            return Err(BatchError::TooLarge { rows, max: config.max_batch_size });
        }
        let (answer, receive) = oneshot::channel();
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(BatchError::ShuttingDown);
            }
            if queue.jobs.len() >= config.max_queue_size {
                return Err(BatchError::QueueFull { size: queue.jobs.len() });
            }
            let arrived = Instant::now();
            let deadline = arrived + timeout.unwrap_or(config.default_timeout);
            queue.jobs.push_back(Job { key: req.merge_key(), req, rows, arrived, deadline, answer });
        }
        self.shared.wake.notify_one();
        receive.await.unwrap_or(Err(BatchError::ShuttingDown))
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Refuses new requests and answers the queued ones `ShuttingDown`; running batches finish.
    pub fn close(&self) {
        close(&self.shared);
    }
}

fn close<Req, Resp>(shared: &Shared<Req, Resp>) {
    let drained: Vec<Job<Req, Resp>> = {
        let mut queue = shared.lock();
        queue.closed = true;
        queue.jobs.drain(..).collect()
    };
    for job in drained {
        let _ = job.answer.send(Err(BatchError::ShuttingDown));
    }
    shared.wake.notify_all();
}

/// What the scheduler decided about the front of the queue.
enum Plan<Req, Resp> {
    Send(Vec<Job<Req, Resp>>),
    /// Nothing to send before this instant (or a new arrival).
    WaitUntil(Instant),
    Idle,
}

/// Takes expired and abandoned requests off the front and picks the next batch (see the module
/// doc); called with the queue locked.
fn plan<Req, Resp>(queue: &mut Queue<Req, Resp>, config: &BatchConfig, now: Instant) -> Plan<Req, Resp> {
    // Answer what can no longer be run: past its deadline, or its caller gone.
    let mut kept = VecDeque::with_capacity(queue.jobs.len());
    for job in queue.jobs.drain(..) {
        if job.answer.is_closed() {
            continue;
        }
        if job.deadline <= now {
            let _ = job.answer.send(Err(BatchError::Timeout { waited: now - job.arrived }));
            continue;
        }
        kept.push_back(job);
    }
    queue.jobs = kept;
    let Some(oldest) = queue.jobs.front() else { return Plan::Idle };
    // The candidates: the longest run from the front that can share a batch.
    let key = oldest.key;
    let mut prefix_rows = Vec::new();
    let mut rows = 0;
    for job in queue.jobs.iter().take_while(|j| j.key == key) {
        if rows + job.rows > config.max_batch_size {
            break;
        }
        rows += job.rows;
        prefix_rows.push(rows);
    }
    let take = |queue: &mut Queue<Req, Resp>, n: usize| Plan::Send(queue.jobs.drain(..n).collect());
    // A full batch, or one that the next request could not join anyway (it does not fit or cannot merge).
    let blocked = prefix_rows.len() < queue.jobs.len();
    if rows == config.max_batch_size || blocked {
        return take(queue, prefix_rows.len());
    }
    if let Some(n) = prefix_rows.iter().rposition(|r| config.preferred_batch_sizes.contains(r)) {
        return take(queue, n + 1);
    }
    let due = oldest.arrived + config.max_queue_delay;
    if due <= now {
        return take(queue, prefix_rows.len());
    }
    // Wake for the batch delay, or for the earliest deadline if that comes first.
    let earliest_deadline = queue.jobs.iter().map(|j| j.deadline).min().unwrap_or(due);
    Plan::WaitUntil(due.min(earliest_deadline))
}

/// An instance thread: while idle it waits for the queue's front to be due (see `plan`), then
/// takes that batch, runs it and answers each request. Ends when the batcher closes, after the
/// batch it is running.
fn run_instance<Req: 'static, Resp: 'static>(shared: &Shared<Req, Resp>, executor: &dyn Executor<Req, Resp>) {
    let mut queue = shared.lock();
    loop {
        if queue.closed {
            return;
        }
        match plan(&mut queue, &shared.config, Instant::now()) {
            Plan::Send(batch) => {
                drop(queue);
                run_batch(executor, batch);
                queue = shared.lock();
            }
            Plan::WaitUntil(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                queue = shared.wake.wait_timeout(queue, wait).unwrap_or_else(PoisonError::into_inner).0;
            }
            Plan::Idle => queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// Runs one batch and answers every request in it: its own result, or the batch's failure.
fn run_batch<Req: 'static, Resp: 'static>(executor: &dyn Executor<Req, Resp>, batch: Vec<Job<Req, Resp>>) {
    let (requests, answers): (Vec<Req>, Vec<_>) = batch.into_iter().map(|job| (job.req, job.answer)).unzip();
    let n = requests.len();
    let failure = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.execute(requests))) {
        Ok(Ok(results)) if results.len() == n => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(Ok(result));
            }
            return;
        }
        Ok(Ok(results)) => format!("the model answered {} results for a batch of {n} requests", results.len()),
        Ok(Err(why)) => why,
        Err(_) => "the model panicked".to_owned(),
    };
    for answer in answers {
        let _ = answer.send(Err(BatchError::Execution(failure.clone())));
    }
}

#[cfg(test)]
mod tests;
