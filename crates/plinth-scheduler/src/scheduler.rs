//! The scheduler loop: the one writer of jobs after their creation. It wakes on a submission, a
//! cancel, an executor's event or a tick, applies it, then runs an admission cycle and writes the
//! cycle's decisions as one batch before it launches the admitted attempts.
//!
//! The database is the truth: on start (`recover`) the loop rebuilds its state from the unfinished
//! jobs and takes back the attempts an earlier life started. A write that fails (a full disk, a
//! lost connection) changes nothing in memory and is tried again on the next tick.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::jobs::{AttemptEnd, ExitCause, Job, JobSpec, JobState};
use plinth_store::audit::Record;
use plinth_store::jobs::{JobStore, JobUpdate};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Waiting, Workload};
use crate::executor::{Executor, ExecutorError, ExecutorEvent, Launch};
use crate::metrics;
use crate::queues::QueueConfig;
use crate::service::{Error, Result};
use crate::tracker::RunTracker;

pub use crate::admission::QueueUsage;

/// How the loop runs (the server builds it from `[jobs]`).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often the loop wakes without being asked: retries whose backoff ended, launches that
    /// waited for a device, writes that failed.
    pub tick: Duration,
    /// Where a job's code archive is unpacked, by digest (`<dir>/<hex>`); `None` when jobs cannot carry code.
    pub code_dir: Option<std::path::PathBuf>,
}

/// What the service asks of the loop.
pub(crate) enum Command {
    Submitted(Box<Job>),
    Cancel { id: i64, actor: Actor, reply: oneshot::Sender<Result<Job>> },
    Explain { id: i64, reply: oneshot::Sender<Option<Waiting>> },
    Usage { reply: oneshot::Sender<Vec<QueueUsage>> },
    Reconfigure(Arc<QueueConfig>),
}

/// The whole request of a job: each resource per worker times the workers (gang admission).
pub(crate) fn workload_of_spec(id: i64, spec: &JobSpec, cluster_queue: &str, created_at: i64, not_before: Option<i64>) -> Workload {
    let workers = u64::from(spec.workers);
    Workload {
        id,
        cluster_queue: cluster_queue.to_owned(),
        priority: spec.priority,
        created_at,
        requests: spec.resources.amounts().into_iter().map(|(r, a)| (r, a.saturating_mul(workers))).collect::<BTreeMap<_, _>>(),
        gpu_flavor: spec.resources.gpu_flavor.clone(),
        not_before,
    }
}

fn workload(job: &Job) -> Workload {
    workload_of_spec(job.id, &job.spec, &job.cluster_queue, job.created_at, job.not_before)
}

fn system_record<'a>(action: &'a str, extra: Option<String>) -> Record<'a, [Job]> {
    Record::many(move |jobs: &[Job]| {
        jobs.iter()
            .map(|job| {
                let mut e = AuditEvent::new(&Actor::system(), action, "job", job.id.to_string())
                    .with_change(Change::set("state", job.state.as_str()));
                if let Some(end) = &job.last_end
                    && (action == "job.end" || action == "job.requeue")
                {
                    e = e.with_change(Change::set("reason", end.message.clone()));
                }
                if let Some(extra) = &extra {
                    e = e.with_change(Change::set("reason", extra.clone()));
                }
                e
            })
            .collect()
    })
}

pub(crate) struct Scheduler {
    store: Arc<dyn JobStore>,
    executor: Arc<dyn Executor>,
    runs: Arc<dyn RunTracker>,
    options: SchedulerOptions,
    config: Option<Arc<QueueConfig>>,
    admission: Option<Admission>,
    /// Every unfinished job, as last stored.
    jobs: HashMap<i64, Job>,
    /// Jobs being stopped to give their quota back.
    preempting: HashMap<i64, String>,
    /// Admitted jobs whose launch waits (no free device, or a failed write).
    unlaunched: HashSet<i64>,
    /// Ends whose write failed, tried again on each tick.
    unrecorded: Vec<(i64, u32, AttemptEnd)>,
    /// How far each running attempt's system metrics were read and logged into its run.
    metric_offsets: HashMap<(i64, u32), u64>,
    dirty: bool,
}

impl Scheduler {
    pub(crate) fn new(
        store: Arc<dyn JobStore>,
        executor: Arc<dyn Executor>,
        runs: Arc<dyn RunTracker>,
        options: SchedulerOptions,
        config: Option<Arc<QueueConfig>>,
    ) -> Scheduler {
        Scheduler {
            store,
            executor,
            runs,
            options,
            config,
            admission: None,
            jobs: HashMap::new(),
            preempting: HashMap::new(),
            unlaunched: HashSet::new(),
            unrecorded: Vec::new(),
            metric_offsets: HashMap::new(),
            dirty: true,
        }
    }

    /// Rebuilds the state from the store and takes back the attempts an earlier life started.
    pub(crate) async fn recover(mut self) -> Result<Scheduler> {
        let jobs = self.store.active_jobs().await?;
        for job in jobs {
            match job.state {
                JobState::Admitted => {
                    self.unlaunched.insert(job.id);
                }
                JobState::Starting | JobState::Running => match (&job.executor, &job.handle) {
                    (Some(name), Some(handle)) if name == self.executor.name() => {
                        if job.cancel_requested {
                            self.executor.stop(job.id, job.attempt, handle, "cancelled").await?;
                        }
                        self.executor.adopt(job.id, job.attempt, handle).await?;
                    }
                    (name, _) => {
                        let message = match name {
                            Some(name) => format!("lost: it ran on executor '{name}', which this server does not have"),
                            None => "lost: it was starting when the server stopped".to_owned(),
                        };
                        let end = AttemptEnd { cause: ExitCause::Lost, message, exit_code: None, signal: None, peak_memory_bytes: None };
                        self.unrecorded.push((job.id, job.attempt, end));
                    }
                },
                _ => {}
            }
            self.jobs.insert(job.id, job);
        }
        self.rebuild_admission();
        tracing::info!(jobs = self.jobs.len(), "Job scheduler recovered its unfinished jobs.");
        Ok(self)
    }

    /// Builds the admission state afresh from the jobs as stored.
    fn rebuild_admission(&mut self) {
        let Some(config) = &self.config else {
            self.admission = None;
            return;
        };
        let mut admission = Admission::new(config.clone());
        for job in self.jobs.values() {
            match job.state {
                JobState::Queued => admission.add_pending(workload(job)),
                state if state.holds_quota() => {
                    let flavors = job.flavors.clone().unwrap_or_default();
                    admission.admitted(workload(job), flavors, job.admitted_at.unwrap_or(job.created_at));
                }
                _ => {}
            }
        }
        self.admission = Some(admission);
        self.dirty = true;
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<ExecutorEvent>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(event) = events.recv() => self.event(event).await,
                Some(command) = commands.recv() => self.command(command).await,
                _ = tick.tick() => self.tick().await,
            }
            // Whatever else already arrived is taken in before the cycle, so a burst is one cycle.
            while let Ok(event) = events.try_recv() {
                self.event(event).await;
            }
            while let Ok(command) = commands.try_recv() {
                self.command(command).await;
            }
            if self.dirty {
                self.cycle().await;
            }
        }
        tracing::info!("Job scheduler stopped; running jobs keep running and are taken back on the next start.");
    }

    async fn tick(&mut self) {
        for (id, attempt, end) in std::mem::take(&mut self.unrecorded) {
            self.ended(id, attempt, end).await;
        }
        for id in std::mem::take(&mut self.unlaunched) {
            if let Some(job) = self.jobs.get(&id).cloned()
                && job.state == JobState::Admitted
            {
                self.start(job).await;
            }
        }
        let running: Vec<Job> = self.jobs.values().filter(|j| j.state == JobState::Running).cloned().collect();
        for job in running {
            self.log_system_metrics(&job, job.attempt);
        }
        // A backoff that ended makes a job admissible: the cycle looks.
        self.dirty = true;
        metrics::publish(self.admission.as_ref(), &self.jobs);
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Submitted(job) => {
                if let Some(admission) = &mut self.admission {
                    admission.add_pending(workload(&job));
                }
                self.jobs.insert(job.id, *job);
                self.dirty = true;
            }
            Command::Cancel { id, actor, reply } => {
                let res = self.cancel(id, &actor).await;
                let _ = reply.send(res);
            }
            Command::Explain { id, reply } => {
                let _ = reply.send(self.admission.as_ref().and_then(|a| a.explain(id)));
            }
            Command::Usage { reply } => {
                let _ = reply.send(self.admission.as_ref().map(Admission::usage).unwrap_or_default());
            }
            Command::Reconfigure(config) => {
                self.config = Some(config);
                self.rebuild_admission();
            }
        }
    }

    /// Writes one job's change; keeps the stored result.
    async fn write(&mut self, next: Job, expected_version: i64, record: Record<'_, [Job]>) -> Result<Job> {
        let update = JobUpdate { job: next, expected_version };
        let job = self.store.update_jobs(&[update], record).await?.pop().expect("one update, one job");
        if job.state.is_terminal() {
            self.jobs.remove(&job.id);
        } else {
            self.jobs.insert(job.id, job.clone());
        }
        Ok(job)
    }

    async fn cancel(&mut self, id: i64, actor: &Actor) -> Result<Job> {
        let Some(job) = self.jobs.get(&id).cloned() else {
            // Not unfinished: ended already (cancelling again changes nothing), or unknown.
            return Ok(self.store.get_job(id).await?);
        };
        let now = plinth_core::time::now_millis();
        let record = Record::many(|jobs: &[Job]| {
            jobs.iter()
                .map(|j| AuditEvent::new(actor, "job.cancel", "job", j.id.to_string()).with_change(Change::set("state", j.state.as_str())))
                .collect()
        });
        match job.state {
            JobState::Queued | JobState::Admitted => {
                let mut next = job.clone();
                next.state = JobState::Cancelled;
                next.cancel_requested = true;
                next.flavors = None;
                next.finished_at = Some(now);
                next.updated_at = now;
                next.last_end = Some(AttemptEnd {
                    cause: ExitCause::Cancelled,
                    message: format!("cancelled by {} while {}", actor.name, job.state),
                    exit_code: None,
                    signal: None,
                    peak_memory_bytes: None,
                });
                let stored = self.write(next, job.version, record).await?;
                self.unlaunched.remove(&id);
                if let Some(admission) = &mut self.admission {
                    admission.remove(id);
                }
                self.dirty = true;
                self.finish_run(&stored);
                metrics::ended(&stored);
                Ok(stored)
            }
            JobState::Starting | JobState::Running => {
                let stored = if job.cancel_requested {
                    job.clone()
                } else {
                    let mut next = job.clone();
                    next.cancel_requested = true;
                    next.updated_at = now;
                    self.write(next, job.version, record).await?
                };
                if let Some(handle) = &stored.handle {
                    self.executor.stop(id, stored.attempt, handle, "cancelled").await?;
                }
                Ok(stored)
            }
            _ => Ok(job),
        }
    }

    async fn event(&mut self, event: ExecutorEvent) {
        match event {
            ExecutorEvent::Running { job_id, attempt } => {
                let Some(job) = self.jobs.get(&job_id).cloned() else { return };
                if job.attempt != attempt || job.state != JobState::Starting {
                    return;
                }
                let now = plinth_core::time::now_millis();
                let mut next = job.clone();
                next.state = JobState::Running;
                next.started_at = Some(now);
                next.updated_at = now;
                match self.write(next, job.version, system_record("job.start", None)).await {
                    Ok(stored) => {
                        metrics::started(&stored, now);
                        if let Some(run_id) = stored.run_id.clone() {
                            let runs = self.runs.clone();
                            tokio::spawn(async move {
                                if let Err(e) = runs.set_status(&run_id, JobState::Running, now, None).await {
                                    tracing::warn!(error = %e, run_id, "Could not mark the job's run as running.");
                                }
                            });
                        }
                    }
                    // The job stays `starting` in the store; its end is what matters and is retried.
                    Err(e) => tracing::warn!(error = %e, job_id, "Could not record that a job runs."),
                }
            }
            ExecutorEvent::Ended { job_id, attempt, end } => self.ended(job_id, attempt, end).await,
        }
    }

    /// An attempt ended: the job ends, is retried, or is queued again after a preemption.
    async fn ended(&mut self, id: i64, attempt: u32, end: AttemptEnd) {
        let Some(job) = self.jobs.get(&id).cloned() else { return };
        if job.attempt != attempt || !job.state.holds_quota() {
            return;
        }
        let now = plinth_core::time::now_millis();
        // What the attempt sampled last goes into its run before the run ends.
        self.log_system_metrics(&job, attempt);
        self.metric_offsets.remove(&(id, attempt));
        let mut next = job.clone();
        next.last_end = Some(end.clone());
        next.flavors = None;
        next.updated_at = now;
        let preempted = self.preempting.contains_key(&id) && end.cause != ExitCause::Succeeded;
        let action;
        if job.cancel_requested {
            next.state = JobState::Cancelled;
            if next.last_end.as_ref().is_some_and(|e| e.cause != ExitCause::Cancelled) {
                // It ended on its own while being cancelled: how is kept in the message.
                next.last_end =
                    Some(AttemptEnd { cause: ExitCause::Cancelled, message: format!("cancelled ({})", end.message), ..end.clone() });
            }
            action = "job.end";
        } else if preempted || end.cause == ExitCause::Preempted {
            next.state = JobState::Queued;
            next.attempt += 1;
            next.preemptions += 1;
            next.last_end = Some(AttemptEnd {
                cause: ExitCause::Preempted,
                message: self.preempting.get(&id).cloned().unwrap_or_else(|| end.message.clone()),
                ..end.clone()
            });
            action = "job.requeue";
        } else if end.cause != ExitCause::Succeeded
            && job.spec.retry.on.contains(&end.cause)
            && job.retries_used() < job.spec.retry.max_retries
        {
            next.state = JobState::Queued;
            next.attempt += 1;
            let backoff = job.spec.retry.backoff_before(job.retries_used() + 1);
            next.not_before = Some(now + i64::try_from(backoff.saturating_mul(1000)).unwrap_or(i64::MAX / 2));
            action = "job.requeue";
        } else {
            next.state = end.cause.final_state();
            action = "job.end";
        }
        if next.state.is_terminal() {
            next.finished_at = Some(now);
        }
        match self.write(next, job.version, system_record(action, None)).await {
            Ok(stored) => {
                self.preempting.remove(&id);
                if let Some(admission) = &mut self.admission {
                    admission.release(id);
                    if stored.state == JobState::Queued {
                        admission.add_pending(workload(&stored));
                    }
                }
                self.dirty = true;
                self.keep_log(&stored, attempt);
                if stored.state.is_terminal() {
                    self.finish_run(&stored);
                    metrics::ended(&stored);
                } else {
                    metrics::requeued(&stored);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, job_id = id, "Could not record a job's end; it is tried again.");
                if matches!(e, Error::Store(plinth_store::Error::Conflict { .. }))
                    && let Ok(fresh) = self.store.get_job(id).await
                {
                    self.jobs.insert(id, fresh);
                }
                self.unrecorded.push((id, attempt, end));
            }
        }
    }

    /// Logs the system metrics the attempt's executor wrote since the last call into the job's run.
    fn log_system_metrics(&mut self, job: &Job, attempt: u32) {
        let (Some(run_id), Some(path)) = (job.run_id.clone(), self.executor.system_metrics_path(job.id, attempt)) else { return };
        let offset = self.metric_offsets.entry((job.id, attempt)).or_insert(0);
        let (metrics, read) = match read_metrics(&path, *offset) {
            Ok(found) => found,
            Err(_) => return,
        };
        *offset += read;
        if metrics.is_empty() {
            return;
        }
        let runs = self.runs.clone();
        tokio::spawn(async move {
            if let Err(e) = runs.log_metrics(&run_id, metrics).await {
                tracing::warn!(error = %e, run_id, "Could not log a job's system metrics into its run.");
            }
        });
    }

    fn keep_log(&self, job: &Job, attempt: u32) {
        let Some(run_id) = job.run_id.clone() else { return };
        let path = self.executor.log_path(job.id, attempt);
        let runs = self.runs.clone();
        tokio::spawn(async move {
            if tokio::fs::metadata(&path).await.is_err() {
                return;
            }
            if let Err(e) = runs.keep_log(&run_id, attempt, &path).await {
                tracing::warn!(error = %e, run_id, "Could not keep a job's output with its run.");
            }
        });
    }

    fn finish_run(&self, job: &Job) {
        let Some(run_id) = job.run_id.clone() else { return };
        let (runs, state, at, end) = (self.runs.clone(), job.state, job.finished_at.unwrap_or(job.updated_at), job.last_end.clone());
        tokio::spawn(async move {
            if let Err(e) = runs.set_status(&run_id, state, at, end.as_ref()).await {
                tracing::warn!(error = %e, run_id, "Could not end the job's run.");
            }
        });
    }

    /// One admission cycle: decisions written as one batch, then the admitted attempts launched.
    async fn cycle(&mut self) {
        self.dirty = false;
        let Some(admission) = &mut self.admission else { return };
        let now = plinth_core::time::now_millis();
        let started = std::time::Instant::now();
        let decisions = admission.cycle(now);
        metrics::cycle(started.elapsed().as_secs_f64(), admission.pending_counts().values().sum());
        if !decisions.admit.is_empty() {
            let mut updates = Vec::with_capacity(decisions.admit.len());
            for (id, flavors) in &decisions.admit {
                let Some(job) = self.jobs.get(id) else { continue };
                let mut next = job.clone();
                next.state = JobState::Admitted;
                next.flavors = Some(flavors.clone());
                next.admitted_at = Some(now);
                next.executor = Some(self.executor.name().to_owned());
                next.handle = Some(self.executor.handle_of(job.id, job.attempt));
                next.not_before = None;
                next.updated_at = now;
                updates.push(JobUpdate { expected_version: job.version, job: next });
            }
            match self.store.update_jobs(&updates, system_record("job.admit", None)).await {
                Ok(stored) => {
                    for job in stored {
                        metrics::admitted(&job, now);
                        self.jobs.insert(job.id, job.clone());
                        self.start(job).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = updates.len(), "Could not record admissions; the cycle runs again.");
                    if matches!(e, plinth_store::Error::Conflict { .. }) {
                        self.reload().await;
                    }
                    self.rebuild_admission();
                    return;
                }
            }
        }
        for p in decisions.preempt {
            let Some(victim) = self.jobs.get(&p.victim).cloned() else { continue };
            if self.preempting.contains_key(&p.victim) {
                continue;
            }
            tracing::info!(job_id = p.victim, preemptor = p.preemptor, reason = %p.reason, "Preempting a job.");
            self.preempting.insert(p.victim, format!("preempted: {}", p.reason));
            match (&victim.handle, victim.state) {
                (Some(handle), JobState::Starting | JobState::Running) => {
                    if let Err(e) = self.executor.stop(victim.id, victim.attempt, handle, "preempted").await {
                        tracing::warn!(error = %e, job_id = victim.id, "Could not stop a preempted job.");
                    }
                }
                _ => {
                    // Admitted but not launched: nothing to stop.
                    let end = AttemptEnd {
                        cause: ExitCause::Preempted,
                        message: p.reason.clone(),
                        exit_code: None,
                        signal: None,
                        peak_memory_bytes: None,
                    };
                    self.unlaunched.remove(&victim.id);
                    self.ended(victim.id, victim.attempt, end).await;
                }
            }
        }
    }

    /// Reads every unfinished job again (another writer changed one) and rebuilds from them.
    async fn reload(&mut self) {
        match self.store.active_jobs().await {
            Ok(jobs) => {
                self.jobs = jobs.into_iter().map(|j| (j.id, j)).collect();
            }
            Err(e) => tracing::warn!(error = %e, "Could not reload the unfinished jobs."),
        }
    }

    /// Hands an admitted job's attempt to the executor.
    async fn start(&mut self, job: Job) {
        let mut env = job.spec.env.clone();
        env.insert("MLFLOW_TRACKING_URI".into(), self.runs.tracking_uri());
        if let Some(run_id) = &job.run_id {
            env.insert("MLFLOW_RUN_ID".into(), run_id.clone());
        }
        if let Some(experiment_id) = &job.experiment_id {
            env.insert("MLFLOW_EXPERIMENT_ID".into(), experiment_id.clone());
        }
        let code_dir = match (&job.spec.code, &self.options.code_dir) {
            (Some(code), Some(dir)) => Some(dir.join(code.trim_start_matches("sha256:"))),
            _ => None,
        };
        let launch = Launch {
            job_id: job.id,
            attempt: job.attempt,
            command: job.spec.command.clone(),
            env,
            resources: job.spec.resources.clone(),
            workers: job.spec.workers,
            flavors: job.flavors.clone().unwrap_or_default(),
            timeout_secs: job.spec.timeout_secs,
            code_dir,
        };
        let now = plinth_core::time::now_millis();
        let mut next = job.clone();
        next.state = JobState::Starting;
        next.updated_at = now;
        let job = match self.write(next, job.version, Record::none()).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, job_id = job.id, "Could not record a job's start; it is tried again.");
                self.unlaunched.insert(job.id);
                return;
            }
        };
        match self.executor.launch(launch).await {
            Ok(()) => {}
            Err(ExecutorError::NoCapacity { message }) => {
                tracing::info!(job_id = job.id, reason = %message, "An admitted job waits for the executor.");
                let mut next = job.clone();
                next.state = JobState::Admitted;
                match self.write(next, job.version, Record::none()).await {
                    Ok(_) => {
                        self.unlaunched.insert(job.id);
                    }
                    Err(e) => tracing::warn!(error = %e, job_id = job.id, "Could not record that a job waits for the executor."),
                }
            }
            Err(ExecutorError::Failed { message }) => {
                let end = AttemptEnd { cause: ExitCause::StartFailed, message, exit_code: None, signal: None, peak_memory_bytes: None };
                self.ended(job.id, job.attempt, end).await;
            }
        }
    }
}

/// The complete lines of a metrics file from byte `offset`: the metrics and how many bytes they took.
fn read_metrics(path: &std::path::Path, offset: u64) -> std::io::Result<(Vec<crate::tracker::MetricPoint>, u64)> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    // At most 1 MiB per call: a job cannot make the loop read without bound.
    file.take(1 << 20).read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(line) = serde_json::from_slice::<crate::supervisor::MetricsLine>(line) {
            out.extend(line.metrics.into_iter().map(|(key, value)| crate::tracker::MetricPoint {
                key,
                value,
                timestamp: line.timestamp,
                step: line.step,
            }));
        }
    }
    Ok((out, complete as u64))
}
