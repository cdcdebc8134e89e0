//! Training jobs without HTTP: the durable queue, admission under quotas, retries, and the
//! executors that run admitted jobs.
//!
//! The model is Kueue's (`queues.rs`): resource flavors, cluster queues with nominal quotas per
//! flavor, cohorts that lend unused quota, local queues per team, priorities with preemption and
//! dominant-resource fair sharing. `admission.rs` is the pure decision logic over that model: given
//! what is admitted and what waits, it says what to admit (with a flavor per resource), what to
//! preempt, and why each other job waits and where it stands.
//!
//! `JobService` (`service.rs`) is what the API calls; the scheduler loop (`scheduler.rs`) is the
//! one writer of jobs after their creation: it admits, launches through the `Executor` port
//! (`executor.rs`; `local.rs` runs processes under a supervisor, `supervisor.rs`, that outlives the
//! server), records ends, retries and preemptions, and moves each job's tracking run through the
//! `RunTracker` port (`tracker.rs`). `logs.rs` streams an attempt's output as it grows.

pub mod admission;
pub mod asha;
pub mod code;
pub mod executor;
pub mod local;
pub mod logs;
pub mod metrics;
pub mod queues;
mod scheduler;
pub mod service;
pub mod space;
pub mod spec;
pub mod supervisor;
pub mod sweeps;
mod sys;
pub mod tracker;

pub use code::{CodeError, CodeInfo, CodeStore};
pub use executor::{Executor, ExecutorError, ExecutorEvent, Launch};
pub use local::{Gpu, LocalExecutor, LocalOptions};
pub use scheduler::{QueueUsage, SchedulerOptions};
pub use service::{Error, JobService, JobView, Parts, QueuePlan};
pub use sweeps::{SweepService, SweepSpec, SweepView};
pub use tracker::{JobRun, MetricPoint, RunTracker, TrackerError};
