//! The scheduler's `RunTracker` on this server: each job's run created, moved and given its output
//! through the tracking service, acting as the job's submitter.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use plinth_core::HasErrorCode;
use plinth_core::audit::Actor;
use plinth_core::jobs::{AttemptEnd, Job, JobState};
use plinth_core::tracking::{KeyValue, RunStatus};
use plinth_scheduler::{JobRun, RunTracker, TrackerError};
use plinth_tracking::{CreateRun, LogBatch, TrackingService};
use tokio_util::sync::CancellationToken;

use crate::{Config, StartError};

/// The tracking URI jobs get: `[jobs] tracking_uri`, else this server's address (loopback when it
/// listens on every interface).
fn tracking_uri(config: &Config, addr: std::net::SocketAddr) -> String {
    if !config.jobs.tracking_uri.is_empty() {
        return config.jobs.tracking_uri.trim_end_matches('/').to_owned();
    }
    let ip = if addr.ip().is_unspecified() {
        if addr.is_ipv4() { std::net::IpAddr::from([127, 0, 0, 1]) } else { std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST) }
    } else {
        addr.ip()
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Starts the job service with the local executor: unfinished jobs recovered, their attempts taken back.
pub(crate) async fn start(
    config: &Config,
    store: Arc<plinth_store_sql::SqlStore>,
    tracking: Arc<TrackingService>,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> Result<JobsParts, StartError> {
    let root = config.server.data_dir.join("jobs");
    let code = config.server.data_dir.join("jobs-code");
    for dir in [&root, &code] {
        std::fs::create_dir_all(dir).map_err(|source| StartError::JobsDir { path: dir.display().to_string(), source })?;
    }
    let supervisor = std::env::current_exe().map_err(|source| StartError::JobsDir { path: "the plinth binary".into(), source })?;
    // Only the variables named in [jobs] inherit_env reach a job: the server's own secrets stay here.
    let base_env: Vec<(String, String)> =
        config.jobs.inherit_env.iter().filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value))).collect();
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let executor = plinth_scheduler::LocalExecutor::new(
        plinth_scheduler::LocalOptions {
            root,
            supervisor,
            base_env,
            gpus: config.jobs.gpus.iter().map(|g| plinth_scheduler::Gpu { index: g.index, flavor: g.flavor.clone() }).collect(),
            stop_grace: std::time::Duration::from_millis(config.jobs.stop_grace_ms),
            max_log_bytes: config.jobs.max_log_mb.saturating_mul(1 << 20),
            sample_interval: std::time::Duration::from_millis(config.jobs.sample_interval_ms),
            metrics_interval: std::time::Duration::from_millis(config.jobs.system_metrics_interval_ms),
        },
        events_tx,
    );
    tracing::info!(limits = plinth_scheduler::LocalExecutor::limits_mode(), "Local job executor ready.");
    let runs = Arc::new(TrackingRuns { tracking, uri: tracking_uri(config, addr) });
    let tick = std::time::Duration::from_millis(config.jobs.tick_ms);
    let jobs = plinth_scheduler::JobService::start(plinth_scheduler::Parts {
        store: store.clone(),
        audit: store.clone(),
        executor,
        events,
        runs: runs.clone(),
        options: plinth_scheduler::SchedulerOptions { tick, code_dir: Some(code) },
        shutdown: shutdown.clone(),
    })
    .await
    .map_err(StartError::Jobs)?;
    let (sweeps, sweep_task) = plinth_scheduler::SweepService::start(store.clone(), store, jobs.clone(), runs, tick, shutdown);
    Ok(JobsParts { jobs, sweeps, sweep_task })
}

/// The job service, the sweep service over it, and the sweeps' loop.
pub(crate) struct JobsParts {
    pub(crate) jobs: Arc<plinth_scheduler::JobService>,
    pub(crate) sweeps: Arc<plinth_scheduler::SweepService>,
    pub(crate) sweep_task: tokio::task::JoinHandle<()>,
}

pub(crate) struct TrackingRuns {
    pub(crate) tracking: Arc<TrackingService>,
    /// What jobs are told to log to.
    pub(crate) uri: String,
}

fn tracker_error(e: impl HasErrorCode + std::fmt::Display) -> TrackerError {
    TrackerError { code: e.error_code(), message: e.to_string() }
}

fn status_of(state: JobState) -> RunStatus {
    match state {
        JobState::Queued | JobState::Admitted | JobState::Starting => RunStatus::Scheduled,
        JobState::Running => RunStatus::Running,
        JobState::Succeeded => RunStatus::Finished,
        JobState::Cancelled => RunStatus::Killed,
        JobState::Failed | JobState::TimedOut | JobState::OutOfMemory | JobState::Lost => RunStatus::Failed,
    }
}

fn tag(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.into() }
}

impl TrackingRuns {
    /// The experiment's id by name, created when it does not exist (two jobs racing to create it
    /// both end up in the one that won).
    async fn experiment_id(&self, actor: &Actor, name: &str) -> Result<String, TrackerError> {
        for _ in 0..2 {
            match self.tracking.get_experiment_by_name(name).await {
                Ok(experiment) => return Ok(experiment.experiment_id.as_str().to_owned()),
                Err(e) if e.error_code() == plinth_core::ErrorCode::ResourceDoesNotExist => {}
                Err(e) => return Err(tracker_error(e)),
            }
            match self.tracking.acting(actor).create_experiment(name, None, Vec::new()).await {
                Ok(id) => return Ok(id.as_str().to_owned()),
                Err(e) if e.error_code() == plinth_core::ErrorCode::ResourceAlreadyExists => continue,
                Err(e) => return Err(tracker_error(e)),
            }
        }
        Err(TrackerError { code: plinth_core::ErrorCode::InternalError, message: format!("could not find or create experiment '{name}'") })
    }
}

#[async_trait]
impl RunTracker for TrackingRuns {
    async fn create_run(&self, job: &Job) -> Result<JobRun, TrackerError> {
        let actor = Actor::new(job.submitted_by.clone());
        let experiment_id = match &job.spec.experiment {
            Some(name) => self.experiment_id(&actor, name).await?,
            None => "0".to_owned(),
        };
        let mut tags = vec![
            tag("plinth.job_id", job.id.to_string()),
            tag("plinth.queue", job.spec.queue.clone()),
            tag("mlflow.source.type", "JOB"),
            tag("mlflow.source.name", job.spec.command.join(" ").chars().take(500).collect::<String>()),
        ];
        tags.extend(job.spec.tags.iter().map(|(k, v)| tag(k, v.clone())));
        let run = self
            .tracking
            .acting(&actor)
            .create_run(CreateRun {
                experiment_id: Some(experiment_id.clone()),
                user_id: Some(job.submitted_by.clone()),
                run_name: Some(job.spec.name.clone().unwrap_or_else(|| format!("job-{}", job.id))),
                start_time: Some(job.created_at),
                tags,
            })
            .await
            .map_err(tracker_error)?;
        let run_id = run.info.run_id.as_str().to_owned();
        // A run is created running; a queued job's run says it is scheduled.
        self.tracking.acting(&actor).update_run(&run_id, Some(RunStatus::Scheduled), None, None).await.map_err(tracker_error)?;
        Ok(JobRun { experiment_id, run_id })
    }

    async fn set_status(&self, run_id: &str, state: JobState, at: i64, end: Option<&AttemptEnd>) -> Result<(), TrackerError> {
        let actor = Actor::system();
        let acting = self.tracking.acting(&actor);
        if let Some(end) = end {
            let mut tags = vec![tag("plinth.job_state", state.as_str()), tag("plinth.job_end", end.message.clone())];
            if let Some(peak) = end.peak_memory_bytes {
                tags.push(tag("plinth.job_peak_memory_bytes", peak.to_string()));
            }
            acting.log_batch(run_id, LogBatch { tags, ..LogBatch::default() }).await.map_err(tracker_error)?;
        }
        let end_time = state.is_terminal().then_some(at);
        acting.update_run(run_id, Some(status_of(state)), end_time, None).await.map_err(tracker_error)?;
        Ok(())
    }

    async fn create_sweep_run(&self, sweep_id: i64, name: &str, experiment: Option<&str>, user: &str) -> Result<JobRun, TrackerError> {
        let actor = Actor::new(user.to_owned());
        let experiment_id = match experiment {
            Some(name) => self.experiment_id(&actor, name).await?,
            None => "0".to_owned(),
        };
        let tags = vec![tag("plinth.sweep_id", sweep_id.to_string()), tag("mlflow.source.type", "SWEEP")];
        let run = self
            .tracking
            .acting(&actor)
            .create_run(CreateRun {
                experiment_id: Some(experiment_id.clone()),
                user_id: Some(user.to_owned()),
                run_name: Some(name.to_owned()),
                start_time: Some(plinth_core::time::now_millis()),
                tags,
            })
            .await
            .map_err(tracker_error)?;
        Ok(JobRun { experiment_id, run_id: run.info.run_id.as_str().to_owned() })
    }

    async fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<(), TrackerError> {
        let params = params.iter().map(|(k, v)| tag(k, v.clone())).collect();
        let actor = Actor::system();
        self.tracking.acting(&actor).log_batch(run_id, LogBatch { params, ..LogBatch::default() }).await.map_err(tracker_error)
    }

    async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<(i64, f64)>, TrackerError> {
        let page = self.tracking.get_metric_history(run_id, key, None, None).await.map_err(tracker_error)?;
        let mut points: Vec<(i64, i64, f64)> = page.items.iter().map(|m| (m.step, m.timestamp, m.value)).collect();
        points.sort_by_key(|(step, timestamp, _)| (*step, *timestamp));
        // One value per step: the last logged.
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(points.len());
        for (step, _, value) in points {
            match out.last_mut() {
                Some(last) if last.0 == step => last.1 = value,
                _ => out.push((step, value)),
            }
        }
        Ok(out)
    }

    async fn log_metrics(&self, run_id: &str, metrics: Vec<plinth_scheduler::MetricPoint>) -> Result<(), TrackerError> {
        let metrics = metrics
            .into_iter()
            .map(|m| plinth_core::tracking::Metric {
                key: m.key,
                value: m.value,
                timestamp: m.timestamp,
                step: m.step,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
            })
            .collect();
        let actor = Actor::system();
        self.tracking.acting(&actor).log_batch(run_id, LogBatch { metrics, ..LogBatch::default() }).await.map_err(tracker_error)
    }

    async fn keep_log(&self, run_id: &str, attempt: u32, path: &Path) -> Result<(), TrackerError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| TrackerError { code: plinth_core::ErrorCode::InternalError, message: format!("{}: {e}", path.display()) })?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed();
        let actor = Actor::system();
        self.tracking
            .acting(&actor)
            .upload_run_artifact(run_id, &format!("logs/attempt-{attempt}.log"), body)
            .await
            .map_err(tracker_error)?;
        Ok(())
    }

    fn tracking_uri(&self) -> String {
        self.uri.clone()
    }
}
