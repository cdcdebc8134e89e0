//! Sweeps: a search over a job's parameters. A sweep file (TOML) names a job template whose
//! command takes `{param}` placeholders, a search space (`space.rs`), an objective metric and
//! direction, a trial budget and parallelism, and optionally early stopping by ASHA (`asha.rs`).
//!
//! `SweepService` starts trials as jobs through `JobService` (each a child run of the sweep's
//! parent run, its parameters logged as the run's params), follows their objective as the trials
//! log it by step through MLflow, stops the ones ASHA judges behind (their jobs cancelled through
//! the queue), and ends the sweep when the budget is spent, with the best trial's parameters and
//! value logged into the parent run. Its loop is a client of the job service, like the API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::jobs::{JobSpec, JobState};
use plinth_core::sweeps::{Sweep, SweepState, Trial, TrialState};
use plinth_core::validation::InvalidParameter;
use plinth_store::audit::{Record, append_failure};
use plinth_store::sweeps::{NewSweep, SweepStore};
use plinth_store::tracking::{PageRequest, Rows};
use plinth_store::{AuditLog, Error as StoreError};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::asha::{Asha, Decision, Direction};
use crate::service::{JobService, Result};
use crate::space::{self, Domain, ParamValue, Parameter};
use crate::tracker::RunTracker;

/// Most trials in one sweep, and most running at once.
pub const MAX_TRIALS: u32 = 10_000;
pub const MAX_PARALLELISM: u32 = 256;

/// ASHA's settings: the first rung, the reduction factor η, the steps a trial runs at most.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    pub min_steps: u64,
    pub reduction_factor: u32,
    pub max_steps: u64,
}

/// A sweep as its file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub name: Option<String>,
    pub job: JobSpec,
    /// In name order (grids are crossed in that order).
    pub parameters: Vec<Parameter>,
    pub metric: String,
    pub direction: Direction,
    pub max_trials: u32,
    pub parallelism: u32,
    pub seed: Option<u64>,
    pub early_stopping: Option<EarlyStopping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectiveFile {
    metric: String,
    direction: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlyStoppingFile {
    #[serde(default = "one")]
    min_steps: u64,
    #[serde(default = "three")]
    reduction_factor: u32,
    max_steps: u64,
}

fn one() -> u64 {
    1
}

fn three() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    #[serde(default)]
    name: Option<String>,
    max_trials: u32,
    #[serde(default = "one_u32")]
    parallelism: u32,
    #[serde(default)]
    seed: Option<u64>,
    objective: ObjectiveFile,
    #[serde(default)]
    early_stopping: Option<EarlyStoppingFile>,
    parameters: BTreeMap<String, toml::Value>,
    job: toml::Value,
}

fn one_u32() -> u32 {
    1
}

fn value_of(v: &toml::Value) -> Result<ParamValue, String> {
    match v {
        toml::Value::Integer(i) => Ok(ParamValue::Int(*i)),
        toml::Value::Float(f) => Ok(ParamValue::Float(*f)),
        toml::Value::String(s) => Ok(ParamValue::Text(s.clone())),
        toml::Value::Boolean(b) => Ok(ParamValue::Text(b.to_string())),
        other => Err(format!("a value must be a number, a string or a boolean, not {}", other.type_str())),
    }
}

fn bounds(v: &toml::Value) -> Result<(f64, f64), String> {
    let pair = v.as_array().filter(|a| a.len() == 2).ok_or("give [low, high]")?;
    let number = |x: &toml::Value| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)).ok_or("bounds are numbers");
    Ok((number(&pair[0])?, number(&pair[1])?))
}

fn domain_of(v: &toml::Value) -> Result<Domain, String> {
    let table =
        v.as_table().filter(|t| t.len() == 1).ok_or("give one of grid, choice, uniform, log_uniform or int, e.g. { grid = [1, 2] }")?;
    let (kind, arg) = table.iter().next().ok_or("empty")?;
    let list = || -> Result<Vec<ParamValue>, String> { arg.as_array().ok_or("give a list of values")?.iter().map(value_of).collect() };
    match kind.as_str() {
        "grid" => Ok(Domain::Grid(list()?)),
        "choice" => Ok(Domain::Choice(list()?)),
        "uniform" => bounds(arg).map(|(low, high)| Domain::Uniform { low, high }),
        "log_uniform" => bounds(arg).map(|(low, high)| Domain::LogUniform { low, high }),
        "int" => {
            let pair = arg.as_array().filter(|a| a.len() == 2).ok_or("give [low, high]")?;
            match (pair[0].as_integer(), pair[1].as_integer()) {
                (Some(low), Some(high)) => Ok(Domain::Int { low, high }),
                _ => Err("int bounds are integers".to_owned()),
            }
        }
        other => Err(format!("unknown domain '{other}': use grid, choice, uniform, log_uniform or int")),
    }
}

impl SweepSpec {
    /// Reads a sweep file; every problem is listed.
    pub fn parse(text: &str) -> std::result::Result<SweepSpec, InvalidParameter> {
        let file: SweepFile = toml::from_str(text).map_err(|e| InvalidParameter::new(format!("Invalid sweep: {}", e.message())))?;
        let mut problems = Vec::new();
        let mut parameters = Vec::new();
        for (name, v) in &file.parameters {
            match domain_of(v) {
                Ok(domain) => parameters.push(Parameter { name: name.clone(), domain }),
                Err(why) => problems.push(format!("parameters.{name}: {why}")),
            }
        }
        if let Err(more) = space::validate(&parameters) {
            problems.extend(more);
        }
        if parameters.is_empty() && problems.is_empty() {
            problems.push("parameters: declare at least one".to_owned());
        }
        let direction = match file.objective.direction.as_str() {
            "maximize" | "max" => Some(Direction::Maximize),
            "minimize" | "min" => Some(Direction::Minimize),
            other => {
                problems.push(format!("objective.direction: '{other}' is not maximize or minimize"));
                None
            }
        };
        if let Err(e) = plinth_core::validation::validate_key("objective.metric", &file.objective.metric) {
            problems.push(e.message().to_owned());
        }
        if !(1..=MAX_TRIALS).contains(&file.max_trials) {
            problems.push(format!("max_trials: use 1 to {MAX_TRIALS}"));
        }
        if !(1..=MAX_PARALLELISM).contains(&file.parallelism) {
            problems.push(format!("parallelism: use 1 to {MAX_PARALLELISM}"));
        }
        let early_stopping = file.early_stopping.map(|e| {
            if e.reduction_factor < 2 || e.reduction_factor > 100 {
                problems.push("early_stopping.reduction_factor: use 2 to 100".to_owned());
            }
            if e.min_steps == 0 || e.max_steps <= e.min_steps {
                problems.push("early_stopping: use 1 <= min_steps < max_steps".to_owned());
            }
            EarlyStopping { min_steps: e.min_steps, reduction_factor: e.reduction_factor, max_steps: e.max_steps }
        });
        let job = serde_json::to_value(&file.job)
            .map_err(|e| InvalidParameter::new(format!("Invalid sweep job: {e}")))
            .and_then(crate::spec::job_spec);
        let job = match job {
            Ok((spec, _)) => Some(spec),
            Err(e) => {
                problems.push(format!("job: {}", e.message()));
                None
            }
        };
        if let Some(name) = &file.name
            && (name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control))
        {
            problems.push("name: use 1 to 200 characters, no control characters".to_owned());
        }
        match (job, direction) {
            (Some(job), Some(direction)) if problems.is_empty() => Ok(SweepSpec {
                name: file.name,
                job,
                parameters,
                metric: file.objective.metric,
                direction,
                max_trials: file.max_trials,
                parallelism: file.parallelism,
                seed: file.seed,
                early_stopping,
            }),
            _ => Err(InvalidParameter::new(format!("Invalid sweep:\n  {}", problems.join("\n  ")))),
        }
    }

    /// The trials the budget allows: with only grid parameters, no more than their combinations.
    pub fn budget(&self) -> u32 {
        let all_grid = self.parameters.iter().all(|p| matches!(p.domain, Domain::Grid(_)));
        if all_grid { self.max_trials.min(u32::try_from(space::grid_size(&self.parameters)).unwrap_or(u32::MAX)) } else { self.max_trials }
    }

    /// Trial `index`'s job: the template with its parameters in the command, a child run of the sweep's.
    fn trial_job(&self, sweep: &Sweep, index: u32, params: &[(String, ParamValue)]) -> JobSpec {
        let mut job = self.job.clone();
        job.command = space::substitute(&self.job.command, params);
        job.name = Some(format!("{}-trial-{index}", sweep.name));
        if let Some(parent) = &sweep.parent_run_id {
            job.tags.insert("mlflow.parentRunId".into(), parent.clone());
        }
        job.tags.insert("plinth.sweep_id".into(), sweep.id.to_string());
        job.tags.insert("plinth.trial".into(), index.to_string());
        job
    }
}

/// A sweep with its trials, as the API shows it.
#[derive(Debug, Clone)]
pub struct SweepView {
    pub sweep: Sweep,
    pub trials: Vec<Trial>,
    pub metric: String,
    pub direction: Direction,
    pub budget: u32,
}

pub struct SweepService {
    store: Arc<dyn SweepStore>,
    audit: Arc<dyn AuditLog>,
    jobs: Arc<JobService>,
    runs: Arc<dyn RunTracker>,
    /// Each running sweep's early-stopping state, rebuilt from its trials after a restart.
    asha: Mutex<HashMap<i64, Asha>>,
    wake: Notify,
}

fn compare(direction: Direction, a: f64, b: f64) -> std::cmp::Ordering {
    match direction {
        Direction::Maximize => a.total_cmp(&b),
        Direction::Minimize => b.total_cmp(&a),
    }
}

impl SweepService {
    /// Starts the loop that moves every running sweep on, every `tick` and when asked.
    pub fn start(
        store: Arc<dyn SweepStore>,
        audit: Arc<dyn AuditLog>,
        jobs: Arc<JobService>,
        runs: Arc<dyn RunTracker>,
        tick: Duration,
        shutdown: CancellationToken,
    ) -> (Arc<SweepService>, tokio::task::JoinHandle<()>) {
        let service = Arc::new(SweepService { store, audit, jobs, runs, asha: Mutex::new(HashMap::new()), wake: Notify::new() });
        let looping = service.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = looping.wake.notified() => {}
                    () = tokio::time::sleep(tick) => {}
                }
                match looping.store.active_sweeps().await {
                    Ok(sweeps) => {
                        for sweep in sweeps {
                            let id = sweep.id;
                            if let Err(e) = looping.advance(sweep).await {
                                tracing::warn!(error = %e, sweep_id = id, "Could not move a sweep on; it is tried again.");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Could not read the running sweeps."),
                }
            }
        });
        (service, task)
    }

    /// Creates a sweep from its file: checked whole (its job template as a job would be), its
    /// parent run created; trials start at once.
    pub async fn create(&self, actor: &Actor, text: &str) -> Result<SweepView> {
        let event = AuditEvent::new(actor, "sweep.create", "sweep", "-");
        let res: Result<SweepView> = async {
            let spec = SweepSpec::parse(text)?;
            // The template must be a job the queue takes (placeholders do not change its resources).
            self.jobs.check(&spec.job)?;
            let name = spec.name.clone().unwrap_or_else(|| "sweep".to_owned());
            let new = NewSweep { name, spec: text.to_owned(), created_by: actor.name.clone(), now: plinth_core::time::now_millis() };
            let record = Record::of(|s: &Sweep| {
                AuditEvent::new(actor, "sweep.create", "sweep", s.id.to_string()).with_change(Change::set("name", s.name.clone()))
            });
            let sweep = self.store.create_sweep(&new, record).await?;
            let run = self.runs.create_sweep_run(sweep.id, &sweep.name, spec.job.experiment.as_deref(), &actor.name).await?;
            let mut linked = sweep.clone();
            linked.parent_run_id = Some(run.run_id);
            linked.experiment_id = Some(run.experiment_id);
            linked.updated_at = plinth_core::time::now_millis();
            let sweep = self.store.update_sweep(&linked, sweep.version, Record::none()).await?;
            Ok(self.view(sweep, Vec::new(), &spec))
        }
        .await;
        let view = append_failure(&self.audit, event, res).await?;
        self.wake.notify_one();
        Ok(view)
    }

    fn view(&self, sweep: Sweep, trials: Vec<Trial>, spec: &SweepSpec) -> SweepView {
        SweepView { sweep, trials, metric: spec.metric.clone(), direction: spec.direction, budget: spec.budget() }
    }

    pub async fn get(&self, id: i64) -> Result<SweepView> {
        let sweep = self.store.get_sweep(id).await?;
        let trials = self.store.trials(id).await?;
        let spec = SweepSpec::parse(&sweep.spec)?;
        Ok(self.view(sweep, trials, &spec))
    }

    pub async fn list(&self, page: PageRequest) -> Result<Rows<Sweep>> {
        Ok(self.store.list_sweeps(page).await?)
    }

    /// Cancels the sweep and every trial still running; cancelling again changes nothing.
    pub async fn cancel(&self, actor: &Actor, id: i64) -> Result<SweepView> {
        let event = AuditEvent::new(actor, "sweep.cancel", "sweep", id.to_string());
        let res: Result<SweepView> = async {
            let sweep = self.store.get_sweep(id).await?;
            if sweep.state.is_terminal() {
                return self.get(id).await;
            }
            let now = plinth_core::time::now_millis();
            let mut next = sweep.clone();
            next.state = SweepState::Cancelled;
            next.message = Some(format!("cancelled by {}", actor.name));
            next.finished_at = Some(now);
            next.updated_at = now;
            let record = Record::of(|s: &Sweep| AuditEvent::new(actor, "sweep.cancel", "sweep", s.id.to_string()));
            let stored = self.store.update_sweep(&next, sweep.version, record).await?;
            for mut trial in self.store.trials(id).await? {
                if trial.state == TrialState::Running {
                    self.jobs.cancel(actor, trial.job_id).await?;
                    trial.state = TrialState::Cancelled;
                    trial.updated_at = now;
                    self.store.put_trial(&trial).await?;
                }
            }
            self.finish_parent(&stored, None).await;
            self.asha.lock().expect("asha lock").remove(&id);
            self.get(id).await
        }
        .await;
        append_failure(&self.audit, event, res).await
    }

    /// The objective's history of a trial's run, `(step, value)`.
    async fn history(&self, run_id: &str, metric: &str) -> Result<Vec<(i64, f64)>> {
        Ok(self.runs.metric_history(run_id, metric).await?)
    }

    /// One pass over a running sweep: trials' ends and objectives read, early stopping applied,
    /// new trials started up to the parallelism and the budget, the sweep ended when all are done.
    async fn advance(&self, sweep: Sweep) -> Result<()> {
        let spec = SweepSpec::parse(&sweep.spec)?;
        let mut trials = self.store.trials(sweep.id).await?;
        let now = plinth_core::time::now_millis();
        let system = Actor::system();
        let fresh = !self.asha.lock().expect("asha lock").contains_key(&sweep.id);
        if let Some(e) = &spec.early_stopping
            && fresh
        {
            // After a restart the rungs are rebuilt from the trials that ended, in index order.
            let mut asha = Asha::new(e.min_steps, e.reduction_factor, e.max_steps, spec.direction);
            for trial in trials.iter().filter(|t| t.state.is_terminal()) {
                if let Some(run_id) = self.jobs.get(trial.job_id).await?.job.run_id {
                    let points: Vec<(u64, f64)> =
                        self.history(&run_id, &spec.metric).await?.iter().map(|(s, v)| (u64::try_from(*s).unwrap_or(0), *v)).collect();
                    let _ = asha.observe(trial.index, &points);
                }
            }
            self.asha.lock().expect("asha lock").insert(sweep.id, asha);
        }
        for trial in trials.iter_mut().filter(|t| t.state == TrialState::Running) {
            let job = self.jobs.get(trial.job_id).await?.job;
            let mut changed = false;
            if let Some(run_id) = &job.run_id {
                let history = self.history(run_id, &spec.metric).await?;
                if let Some(&(step, value)) = history.last()
                    && (trial.step != Some(step) || trial.objective != Some(value))
                {
                    trial.objective = Some(value);
                    trial.step = Some(step);
                    changed = true;
                }
                // Early stopping, while the trial runs (or, after a restart, to rebuild the rungs).
                let points: Vec<(u64, f64)> = history.iter().map(|(s, v)| (u64::try_from(*s).unwrap_or(0), *v)).collect();
                let decision = self.asha.lock().expect("asha lock").get_mut(&sweep.id).map(|asha| asha.observe(trial.index, &points));
                if let Some(Decision::Stop { rung_steps, value, cutoff }) = decision
                    && !job.state.is_terminal()
                    && trial.stopped_at_step.is_none()
                {
                    tracing::info!(sweep_id = sweep.id, trial = trial.index, rung_steps, value, cutoff, "Early stopping a trial.");
                    trial.stopped_at_step = Some(i64::try_from(rung_steps).unwrap_or(i64::MAX));
                    self.jobs.cancel(&system, job.id).await?;
                    changed = true;
                }
            }
            if job.state.is_terminal() {
                trial.state = match job.state {
                    JobState::Succeeded => TrialState::Completed,
                    JobState::Cancelled if trial.stopped_at_step.is_some() => TrialState::Stopped,
                    JobState::Cancelled => TrialState::Cancelled,
                    _ => TrialState::Failed,
                };
                changed = true;
            }
            if changed {
                trial.updated_at = now;
                self.store.put_trial(trial).await?;
            }
        }
        // New trials, up to the parallelism and the budget.
        let budget = spec.budget();
        let mut running = trials.iter().filter(|t| t.state == TrialState::Running).count() as u32;
        let seed = spec.seed.unwrap_or(sweep.id as u64);
        while running < spec.parallelism && (trials.len() as u32) < budget {
            let index = trials.len() as u32;
            let params = space::trial(&spec.parameters, seed, u64::from(index));
            let job = spec.trial_job(&sweep, index, &params);
            let creator = Actor::new(sweep.created_by.clone());
            // The key makes a trial started twice (a crash between the two writes) one job.
            let submitted = self.jobs.submit(&creator, job, Some(format!("sweep-{}-trial-{index}", sweep.id))).await;
            let job = match submitted {
                Ok((view, _)) => view.job,
                Err(e) => return self.fail(&sweep, &format!("trial {index} could not be started: {e}")).await,
            };
            let texts: Vec<(String, String)> = params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            if let Some(run_id) = &job.run_id {
                self.runs.log_params(run_id, &texts).await?;
            }
            let trial = Trial {
                sweep_id: sweep.id,
                index,
                params: texts,
                job_id: job.id,
                state: TrialState::Running,
                objective: None,
                step: None,
                stopped_at_step: None,
                updated_at: now,
            };
            self.store.put_trial(&trial).await?;
            trials.push(trial);
            running += 1;
        }
        // The best so far: completed trials first; without any, none.
        let best = trials
            .iter()
            .filter(|t| t.state == TrialState::Completed && t.objective.is_some())
            .max_by(|a, b| compare(spec.direction, a.objective.unwrap_or(f64::NAN), b.objective.unwrap_or(f64::NAN)))
            .map(|t| t.index);
        let done = trials.len() as u32 >= budget && trials.iter().all(|t| t.state.is_terminal());
        if best != sweep.best_trial || done {
            let mut next = sweep.clone();
            next.best_trial = best;
            next.updated_at = now;
            if done {
                let any_completed = trials.iter().any(|t| t.state == TrialState::Completed);
                next.state = if any_completed { SweepState::Succeeded } else { SweepState::Failed };
                if !any_completed {
                    next.message = Some("no trial completed".to_owned());
                }
                next.finished_at = Some(now);
            }
            let record = Record::of(|s: &Sweep| {
                let mut e = AuditEvent::new(&Actor::system(), "sweep.update", "sweep", s.id.to_string())
                    .with_change(Change::set("state", s.state.as_str()));
                if let Some(best) = s.best_trial {
                    e = e.with_change(Change::set("best_trial", best.to_string()));
                }
                e
            });
            let stored = match self.store.update_sweep(&next, sweep.version, record).await {
                Ok(stored) => stored,
                // Cancelled meanwhile: the cancel decided.
                Err(StoreError::Conflict { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if done {
                let best_trial = best.and_then(|i| trials.iter().find(|t| t.index == i));
                self.finish_parent(&stored, best_trial.map(|t| (t, spec.metric.as_str()))).await;
                self.asha.lock().expect("asha lock").remove(&sweep.id);
            }
        }
        Ok(())
    }

    async fn fail(&self, sweep: &Sweep, message: &str) -> Result<()> {
        let now = plinth_core::time::now_millis();
        let mut next = sweep.clone();
        next.state = SweepState::Failed;
        next.message = Some(message.to_owned());
        next.finished_at = Some(now);
        next.updated_at = now;
        let record = Record::of(|s: &Sweep| {
            AuditEvent::new(&Actor::system(), "sweep.fail", "sweep", s.id.to_string())
                .with_change(Change::set("reason", message.to_owned()))
        });
        let stored = self.store.update_sweep(&next, sweep.version, record).await?;
        self.finish_parent(&stored, None).await;
        Ok(())
    }

    /// Ends the parent run with the sweep; the best trial's parameters and value go into it.
    async fn finish_parent(&self, sweep: &Sweep, best: Option<(&Trial, &str)>) {
        let Some(run_id) = &sweep.parent_run_id else { return };
        if let Some((trial, metric)) = best {
            let mut params: Vec<(String, String)> = trial.params.iter().map(|(k, v)| (format!("best.{k}"), v.clone())).collect();
            params.push(("best.trial".to_owned(), trial.index.to_string()));
            if let Some(value) = trial.objective {
                params.push((format!("best.{metric}"), value.to_string()));
            }
            if let Err(e) = self.runs.log_params(run_id, &params).await {
                tracing::warn!(error = %e, sweep_id = sweep.id, "Could not log the best trial into the sweep's run.");
            }
        }
        let state = match sweep.state {
            SweepState::Succeeded => JobState::Succeeded,
            SweepState::Cancelled => JobState::Cancelled,
            _ => JobState::Failed,
        };
        let end = plinth_core::jobs::AttemptEnd {
            cause: match state {
                JobState::Succeeded => plinth_core::jobs::ExitCause::Succeeded,
                JobState::Cancelled => plinth_core::jobs::ExitCause::Cancelled,
                _ => plinth_core::jobs::ExitCause::Failed,
            },
            message: sweep.message.clone().unwrap_or_else(|| format!("sweep {}", sweep.state.as_str())),
            exit_code: None,
            signal: None,
            peak_memory_bytes: None,
        };
        if let Err(e) = self.runs.set_status(run_id, state, sweep.finished_at.unwrap_or(sweep.updated_at), Some(&end)).await {
            tracing::warn!(error = %e, sweep_id = sweep.id, "Could not end the sweep's run.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "lr-search"
max_trials = 12
parallelism = 3
seed = 42

[objective]
metric = "val_auc"
direction = "maximize"

[early_stopping]
min_steps = 1
reduction_factor = 3
max_steps = 27

[parameters]
lr = { log_uniform = [1e-4, 1e-1] }
batch = { grid = [32, 64] }

[job]
command = ["python", "train.py", "--lr", "{lr}", "--batch", "{batch}"]
queue = "team-a"
experiment = "churn"
resources = { cpus = 1, memory = "1Gi" }
"#;

    #[test]
    fn a_sweep_file_reads_whole() {
        let spec = SweepSpec::parse(FILE).expect("valid");
        assert_eq!(spec.parameters.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["batch", "lr"]);
        assert_eq!((spec.max_trials, spec.parallelism, spec.budget()), (12, 3, 12));
        assert_eq!(spec.job.resources.memory_bytes, 1 << 30);
        assert_eq!(spec.early_stopping, Some(EarlyStopping { min_steps: 1, reduction_factor: 3, max_steps: 27 }));
        assert_eq!(spec.direction, Direction::Maximize);
    }

    #[test]
    fn a_grid_only_sweep_runs_each_combination_once() {
        let text = FILE.replace("lr = { log_uniform = [1e-4, 1e-1] }", "lr = { grid = [0.1, 0.01, 0.001] }");
        assert_eq!(SweepSpec::parse(&text).expect("valid").budget(), 6);
    }

    #[test]
    fn every_problem_is_listed() {
        let text = FILE
            .replace("direction = \"maximize\"", "direction = \"up\"")
            .replace("max_trials = 12", "max_trials = 0")
            .replace("reduction_factor = 3", "reduction_factor = 1")
            .replace("lr = { log_uniform = [1e-4, 1e-1] }", "lr = { log_uniform = [0, 1] }")
            .replace("queue = \"team-a\"", "queue = \"team-a\"\nsurprise = 1");
        let message = SweepSpec::parse(&text).expect_err("invalid").message().to_owned();
        for needle in ["objective.direction", "max_trials", "reduction_factor", "parameters.lr", "job: Invalid job", "surprise"] {
            assert!(message.contains(needle), "{needle} missing from:\n{message}");
        }
        assert!(SweepSpec::parse("max_trials = 3").is_err());
    }
}
