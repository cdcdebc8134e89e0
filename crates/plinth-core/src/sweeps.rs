//! Sweeps' domain: a sweep (a search over a job's parameters, with an objective metric, a trial
//! budget, parallelism and early stopping) and its trials, each a job. The sweep's spec is kept as
//! its canonical text, owned by the scheduler (`plinth-scheduler`'s `sweeps` module).

use crate::validation::InvalidParameter;

/// Where a sweep is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SweepState {
    /// Trials are being started, run or judged.
    Running,
    /// Every trial ended (the budget is spent); the best trial is known when any reported.
    Succeeded,
    /// No trial could be started (a spec the queue refuses), or every trial failed.
    Failed,
    Cancelled,
}

impl SweepState {
    pub const ALL: [SweepState; 4] = [SweepState::Running, SweepState::Succeeded, SweepState::Failed, SweepState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Succeeded => "succeeded",
            SweepState::Failed => "failed",
            SweepState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<SweepState, InvalidParameter> {
        SweepState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| InvalidParameter::invalid_value("state", raw, "Use running, succeeded, failed or cancelled."))
    }

    pub fn is_terminal(self) -> bool {
        self != SweepState::Running
    }
}

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrialState {
    /// Submitted as a job; not ended.
    Running,
    /// Its job succeeded.
    Completed,
    /// Stopped early by the sweep's early stopping (its job cancelled).
    Stopped,
    /// Its job ended otherwise (failed, out of memory, timed out, lost).
    Failed,
    /// Cancelled with the sweep, or by hand.
    Cancelled,
}

impl TrialState {
    pub const ALL: [TrialState; 5] =
        [TrialState::Running, TrialState::Completed, TrialState::Stopped, TrialState::Failed, TrialState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Completed => "completed",
            TrialState::Stopped => "stopped",
            TrialState::Failed => "failed",
            TrialState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<TrialState, InvalidParameter> {
        TrialState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| InvalidParameter::invalid_value("state", raw, "Use running, completed, stopped, failed or cancelled."))
    }

    pub fn is_terminal(self) -> bool {
        self != TrialState::Running
    }
}

/// A sweep as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub id: i64,
    pub name: String,
    /// The spec's canonical text (TOML).
    pub spec: String,
    pub state: SweepState,
    /// The parent run its trials' runs are children of.
    pub parent_run_id: Option<String>,
    pub experiment_id: Option<String>,
    /// The index of the best trial so far, by the objective.
    pub best_trial: Option<u32>,
    /// Why it failed or was cancelled.
    pub message: Option<String>,
    pub created_by: String,
    /// Bumped by every change; changes compare-and-set on it.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A trial of a sweep: one set of parameters, run as one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub sweep_id: i64,
    /// 0-based, in the order trials were started.
    pub index: u32,
    /// The parameters as `(name, value as text)`, in the space's order.
    pub params: Vec<(String, String)>,
    pub job_id: i64,
    pub state: TrialState,
    /// The objective's last reported value; a value that is not a number is stored as none.
    pub objective: Option<f64>,
    /// The step of that value.
    pub step: Option<i64>,
    /// Why early stopping stopped it: the rung's steps and cutoff.
    pub stopped_at_step: Option<i64>,
    pub updated_at: i64,
}
