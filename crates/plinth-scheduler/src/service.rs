//! `JobService`: what the API calls. Submissions and reads go to the store; everything that
//! changes a job after it was created (admission, starts, ends, cancels, preemptions, retries) is
//! done by the scheduler loop (`scheduler.rs`), the one writer, which the service asks through a
//! channel.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::jobs::{Job, JobSpec, validate_idempotency_key};
use plinth_core::validation::InvalidParameter;
use plinth_core::{ErrorCode, HasErrorCode};
use plinth_store::audit::{Record, append_failure};
use plinth_store::jobs::{JobQuery, JobStore, JobUpdate, NewJob, QueueConfigRecord};
use plinth_store::tracking::Rows;
use plinth_store::{AuditLog, JobsError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Waiting};
use crate::executor::{Executor, ExecutorError, ExecutorEvent};
use crate::queues::{Change as QueueChange, ConfigError, QueueConfig, plan};
use crate::scheduler::{Command, QueueUsage, Scheduler, SchedulerOptions};
use crate::tracker::{RunTracker, TrackerError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidParameter),
    #[error(transparent)]
    Store(#[from] plinth_store::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error(transparent)]
    Code(#[from] crate::code::CodeError),
    /// The spec names code that was not uploaded.
    #[error("Code {digest} was not uploaded: upload it first (plinth jobs submit --code DIR does)")]
    CodeMissing { digest: String },
    /// The spec names a local queue the configuration does not have.
    #[error("Queue '{queue}' does not exist{known}")]
    UnknownQueue { queue: String, known: String },
    /// The job could never be admitted, even on an empty cluster.
    #[error("Job cannot be admitted in queue '{queue}': {reason}")]
    NeverFits { queue: String, reason: String },
    /// The idempotency key was used before, for a different spec.
    #[error("Idempotency key '{key}' was already used for job {job} with a different spec")]
    KeyReused { key: String, job: i64 },
    #[error("Jobs are not accepted: no queue configuration has been applied (see `plinth queues apply`)")]
    NoQueues,
    #[error("The job scheduler is stopping")]
    ShuttingDown,
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::Invalid(e) => e.error_code(),
            Error::Store(e) => e.error_code(),
            Error::Config(e) => e.error_code(),
            Error::Tracker(e) => e.code,
            Error::Executor(e) => e.error_code(),
            Error::Code(e) => e.error_code(),
            Error::CodeMissing { .. } => ErrorCode::InvalidParameterValue,
            Error::UnknownQueue { .. } | Error::NeverFits { .. } | Error::NoQueues => ErrorCode::InvalidParameterValue,
            Error::KeyReused { .. } => ErrorCode::ResourceConflict,
            Error::ShuttingDown => ErrorCode::TemporarilyUnavailable,
        }
    }
}

/// A job as the API shows it: the stored job and, while it waits, why and where it stands.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: Job,
    pub waiting: Option<Waiting>,
}

/// The outcome of a queue configuration applied (or planned).
#[derive(Debug, Clone)]
pub struct QueuePlan {
    pub changes: Vec<QueueChange>,
    /// The version stored now (after an apply; the current one after a plan).
    pub version: i64,
    pub canonical_text: String,
}

/// What `JobService::start` needs.
pub struct Parts {
    pub store: Arc<dyn JobStore>,
    pub audit: Arc<dyn AuditLog>,
    pub executor: Arc<dyn Executor>,
    pub events: mpsc::UnboundedReceiver<ExecutorEvent>,
    pub runs: Arc<dyn RunTracker>,
    pub options: SchedulerOptions,
    pub shutdown: CancellationToken,
}

pub struct JobService {
    store: Arc<dyn JobStore>,
    audit: Arc<dyn AuditLog>,
    runs: Arc<dyn RunTracker>,
    executor: Arc<dyn Executor>,
    code: Option<crate::code::CodeStore>,
    commands: mpsc::Sender<Command>,
    /// The scheduler loop, until the server takes it to wait for on shutdown.
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The configuration in force and its version; `None` before the first apply.
    config: RwLock<Option<(Arc<QueueConfig>, i64)>>,
}

impl JobService {
    /// Loads the queue configuration and every unfinished job, takes back the attempts an earlier
    /// life started, and starts the scheduler loop.
    pub async fn start(parts: Parts) -> Result<Arc<JobService>> {
        let stored = parts.store.queue_config().await?;
        let config = match &stored {
            Some(record) => Some((Arc::new(QueueConfig::parse(&record.text)?), record.version)),
            None => None,
        };
        let (commands, rx) = mpsc::channel(1024);
        let code = parts.options.code_dir.clone().map(crate::code::CodeStore::new);
        let scheduler = Scheduler::new(
            parts.store.clone(),
            parts.executor.clone(),
            parts.runs.clone(),
            parts.options,
            config.as_ref().map(|(c, _)| c.clone()),
        );
        let scheduler = scheduler.recover().await?;
        let task = tokio::spawn(scheduler.run(rx, parts.events, parts.shutdown));
        Ok(Arc::new(JobService {
            store: parts.store,
            audit: parts.audit,
            runs: parts.runs,
            executor: parts.executor,
            code,
            commands,
            task: std::sync::Mutex::new(Some(task)),
            config: RwLock::new(config),
        }))
    }

    /// Whether the configuration in force has local queue `name` (grants are only on queues that exist).
    pub fn has_queue(&self, name: &str) -> bool {
        self.current_config().is_some_and(|(config, _)| config.cluster_queue_of(name).is_some())
    }

    /// The scheduler loop's task (once): it ends when the shutdown token given to `start` is cancelled.
    pub fn take_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.lock().expect("task lock").take()
    }

    fn current_config(&self) -> Option<(Arc<QueueConfig>, i64)> {
        self.config.read().expect("queue configuration lock").clone()
    }

    /// Queues a job. With an idempotency key the submitter used before, answers that job (the
    /// spec must be the same) and `false`.
    pub async fn submit(&self, actor: &Actor, spec: JobSpec, idempotency_key: Option<String>) -> Result<(JobView, bool)> {
        let event = AuditEvent::new(actor, "job.submit", "job", "-");
        let res = self.submit_inner(actor, spec, idempotency_key, &event).await;
        let (job, created) = append_failure(&self.audit, event, res).await?;
        if created {
            self.send(Command::Submitted(Box::new(job.clone()))).await?;
        }
        let waiting = self.explain(job.id).await;
        Ok((JobView { job, waiting }, created))
    }

    /// Checks that `spec` could be queued now: its rules, its queue, its code, and that it could
    /// ever be admitted there. Answers the cluster queue.
    pub fn check(&self, spec: &JobSpec) -> Result<String> {
        spec.validate()?;
        let (config, _) = self.current_config().ok_or(Error::NoQueues)?;
        let cluster_queue = config.cluster_queue_of(&spec.queue).ok_or_else(|| Error::UnknownQueue {
            queue: spec.queue.clone(),
            known: match config.local_queue_names() {
                names if names.is_empty() => String::new(),
                names => format!("; queues: {}", names.join(", ")),
            },
        })?;
        if let Some(digest) = &spec.code
            && !self.code.as_ref().is_some_and(|c| c.has(digest))
        {
            return Err(Error::CodeMissing { digest: digest.clone() });
        }
        admission::fits_ever(&config, &crate::scheduler::workload_of_spec(0, spec, cluster_queue, 0, None))
            .map_err(|reason| Error::NeverFits { queue: spec.queue.clone(), reason })?;
        Ok(cluster_queue.to_owned())
    }

    async fn submit_inner(&self, actor: &Actor, spec: JobSpec, key: Option<String>, event: &AuditEvent) -> Result<(Job, bool)> {
        if let Some(key) = &key {
            validate_idempotency_key(key)?;
        }
        let cluster_queue = self.check(&spec)?;
        let new = NewJob {
            spec: spec.clone(),
            cluster_queue,
            submitted_by: actor.name.clone(),
            idempotency_key: key.clone(),
            now: plinth_core::time::now_millis(),
        };
        let record = Record::of(|job: &Job| {
            let mut e = AuditEvent::new(actor, "job.submit", "job", job.id.to_string());
            e = e.with_change(Change::set("queue", job.spec.queue.clone()));
            e.with_change(Change::set("command", job.spec.command.join(" ")))
        });
        let _ = event;
        let (mut job, created) = self.store.create_job(&new, record).await?;
        if !created && job.spec != spec {
            return Err(Error::KeyReused { key: key.unwrap_or_default(), job: job.id });
        }
        if job.run_id.is_none() && created {
            let run = self.runs.create_run(&job).await?;
            let mut linked = job.clone();
            linked.run_id = Some(run.run_id);
            linked.experiment_id = Some(run.experiment_id);
            linked.updated_at = plinth_core::time::now_millis();
            let update = JobUpdate { expected_version: job.version, job: linked };
            job = self.store.update_jobs(&[update], Record::none()).await?.pop().expect("one job updated");
        }
        Ok((job, created))
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| Error::ShuttingDown)
    }

    /// The job and, while it waits, why.
    pub async fn get(&self, id: i64) -> Result<JobView> {
        let job = self.store.get_job(id).await?;
        let waiting = if job.state == plinth_core::jobs::JobState::Queued { self.explain(id).await } else { None };
        Ok(JobView { job, waiting })
    }

    pub async fn list(&self, query: &JobQuery) -> Result<Rows<Job>> {
        Ok(self.store.list_jobs(query).await?)
    }

    /// Why a queued job waits, from the scheduler's last cycle.
    pub async fn explain(&self, id: i64) -> Option<Waiting> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Explain { id, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Cancels the job, whatever its state: a queued job ends at once, a running one is stopped
    /// (its end follows). Cancelling an ended job changes nothing and answers it.
    pub async fn cancel(&self, actor: &Actor, id: i64) -> Result<Job> {
        let event = AuditEvent::new(actor, "job.cancel", "job", id.to_string());
        let res = async {
            // An unknown id is refused here, with the store's error.
            self.store.get_job(id).await?;
            let (reply, rx) = oneshot::channel();
            self.send(Command::Cancel { id, actor: actor.clone(), reply }).await?;
            rx.await.map_err(|_| Error::ShuttingDown)?
        }
        .await;
        append_failure(&self.audit, event, res).await
    }

    /// Whether the code archive `digest` was uploaded.
    pub fn has_code(&self, digest: &str) -> Result<bool> {
        plinth_core::jobs::validate_code_digest(digest)?;
        Ok(self.code.as_ref().is_some_and(|c| c.has(digest)))
    }

    /// Stores an uploaded code archive whose SHA-256 the caller computed and found to be `digest`.
    pub async fn put_code(&self, actor: &Actor, digest: &str, archive: std::fs::File) -> Result<crate::code::CodeInfo> {
        let event = AuditEvent::new(actor, "job_code.upload", "job_code", digest);
        let res = async {
            let store = self.code.clone().ok_or(Error::ShuttingDown)?;
            let digest_owned = digest.to_owned();
            let info = tokio::task::spawn_blocking(move || store.unpack(&digest_owned, archive))
                .await
                .map_err(|e| Error::Executor(ExecutorError::Failed { message: e.to_string() }))??;
            Ok(info)
        }
        .await;
        let res = append_failure(&self.audit, event.clone(), res).await;
        if let Ok(info) = &res {
            let event =
                event.with_change(Change::set("files", info.files.to_string())).with_change(Change::set("bytes", info.bytes.to_string()));
            if let Err(e) = plinth_store::audit::append_detached(&self.audit, event).await {
                tracing::warn!(error = %e, "could not record a code upload in the audit trail");
            }
        }
        res
    }

    /// The attempt's output file (`attempt` 0: the latest).
    pub fn log_path(&self, job: &Job, attempt: u32) -> PathBuf {
        let attempt = if attempt == 0 { job.attempt } else { attempt };
        self.executor.log_path(job.id, attempt)
    }

    /// Usage and depth per cluster queue, flavor and resource.
    pub async fn usage(&self) -> Vec<QueueUsage> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Usage { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The configuration in force: its canonical text and version.
    pub async fn queue_config(&self) -> Result<Option<QueueConfigRecord>> {
        Ok(self.store.queue_config().await?)
    }

    /// What applying `text` would change.
    pub async fn plan_queues(&self, text: &str) -> Result<QueuePlan> {
        let new = QueueConfig::parse(text)?;
        let current = self.current_config();
        let changes = plan(current.as_ref().map(|(c, _)| c.as_ref()), &new);
        Ok(QueuePlan { changes, version: current.map_or(0, |(_, v)| v), canonical_text: new.to_canonical_text() })
    }

    /// Applies `text` as the queue configuration. `expected_version`: the version the caller
    /// planned against (a compare-and-set), or `None` to apply over whatever is there.
    pub async fn apply_queues(&self, actor: &Actor, text: &str, expected_version: Option<i64>) -> Result<QueuePlan> {
        let event = AuditEvent::new(actor, "queues.apply", "queue_config", "queues");
        let res = async {
            let new = QueueConfig::parse(text)?;
            let stored = self.store.queue_config().await?;
            let current = match &stored {
                Some(record) => Some(QueueConfig::parse(&record.text)?),
                None => None,
            };
            let changes = plan(current.as_ref(), &new);
            let version = expected_version.unwrap_or_else(|| stored.as_ref().map_or(0, |r| r.version));
            let canonical = new.to_canonical_text();
            let described: Vec<Change> = changes.iter().map(|c| Change::set("change", c.to_string())).collect();
            let record = Record::of(|r: &QueueConfigRecord| {
                AuditEvent::new(actor, "queues.apply", "queue_config", r.version.to_string()).with_changes(described.clone())
            });
            let record = self.store.put_queue_config(&canonical, version, &actor.name, plinth_core::time::now_millis(), record).await?;
            let new = Arc::new(new);
            *self.config.write().expect("queue configuration lock") = Some((new.clone(), record.version));
            self.send(Command::Reconfigure(new)).await?;
            Ok(QueuePlan { changes, version: record.version, canonical_text: canonical })
        }
        .await;
        append_failure(&self.audit, event, res).await
    }
}

impl From<JobsError> for Error {
    fn from(e: JobsError) -> Error {
        Error::Store(e.into())
    }
}
