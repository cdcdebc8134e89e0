//! Training jobs' domain: a job's spec (command, code, environment, resources per worker, workers,
//! timeout, retries, priority, queue, experiment, tags, idempotency key), its lifecycle states and
//! how an attempt ended, with the limits and name rules `JobSpec::validate` checks.
//!
//! Quantities are integers in one unit each: CPU in millicores, memory in bytes, GPUs by count.
//! `parse_cpu` and `parse_memory` read what people write (`0.5`, `500m`, `8Gi`, `512M`).

use std::collections::BTreeMap;
use std::fmt;

use crate::validation::{InvalidParameter, check_length};

/// Longest job, queue, flavor or resource name.
pub const MAX_NAME_LENGTH: usize = 63;
/// Most arguments in a command, and the longest one.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ARG_LENGTH: usize = 32 * 1024;
/// Most environment variables, and the longest value.
pub const MAX_ENV_VARS: usize = 256;
pub const MAX_ENV_VALUE_LENGTH: usize = 32 * 1024;
/// Most tags, and the longest key and value.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_KEY_LENGTH: usize = 250;
pub const MAX_TAG_VALUE_LENGTH: usize = 5000;
/// Most workers in one (gang-admitted) job.
pub const MAX_WORKERS: u32 = 256;
/// Longest timeout: 30 days.
pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;
/// Most retries, and the longest backoff before one.
pub const MAX_RETRIES: u32 = 100;
pub const MAX_BACKOFF_SECS: u64 = 24 * 3600;
/// Priorities range over `-MAX_PRIORITY..=MAX_PRIORITY`.
pub const MAX_PRIORITY: i32 = 1_000_000;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 255;
/// Environment variables a job may not set: Plinth sets them (the run it logs into, its rank).
pub const RESERVED_ENV: &[&str] = &[
    "MLFLOW_TRACKING_URI",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "PLINTH_JOB_ID",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "CUDA_VISIBLE_DEVICES",
];

/// The resource names every queue knows; others are custom (a Ray custom resource, say).
pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const GPU: &str = "gpu";

/// Checks a queue, flavor or resource name: 1 to 63 lowercase ASCII letters, digits and `-`,
/// starting with a letter and not ending with `-` (the DNS-label rule Kueue's objects follow).
pub fn validate_name(what: &str, name: &str) -> Result<(), InvalidParameter> {
    if name.is_empty() {
        return Err(InvalidParameter::missing(what));
    }
    check_length(what, MAX_NAME_LENGTH, name)?;
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(InvalidParameter::invalid_value(
            what,
            name,
            "Use 1 to 63 lowercase ASCII letters, digits or '-', starting with a letter and not ending with '-'.",
        ));
    }
    Ok(())
}

/// Reads a CPU quantity into millicores: `2`, `0.5` or `500m`.
pub fn parse_cpu(raw: &str) -> Result<u64, InvalidParameter> {
    let bad = || InvalidParameter::invalid_value("cpus", raw, "Use a number of CPUs (2, 0.5) or millicores (500m).");
    let text = raw.trim();
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse::<u64>().map_err(|_| bad());
    }
    let value: f64 = text.parse().map_err(|_| bad())?;
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(bad());
    }
    let millis = (value * 1000.0).round();
    if (millis - value * 1000.0).abs() > 1e-6 {
        return Err(InvalidParameter::invalid_value("cpus", raw, "The finest unit is a millicore (0.001)."));
    }
    Ok(millis as u64)
}

/// Reads a memory quantity into bytes: `8Gi`, `512Mi`, `1G`, `1500M`, `4096` (bytes).
pub fn parse_memory(raw: &str) -> Result<u64, InvalidParameter> {
    let bad = || InvalidParameter::invalid_value("memory", raw, "Use bytes or a number with a unit: Ki, Mi, Gi, Ti, k, M, G, T.");
    let text = raw.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(factor).ok_or_else(bad);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * factor as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// Memory as people read it: `8Gi`, `1.5Gi`, `300Mi`, `512B`.
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            if bytes.is_multiple_of(size) {
                return format!("{}{unit}", bytes / size);
            }
            return format!("{:.1}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

/// CPU as people read it: `4`, `0.5`.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) { format!("{}", millis / 1000) } else { format!("{}", millis as f64 / 1000.0) }
}

/// A quantity of a named resource, in the resource's unit.
pub fn format_quantity(resource: &str, amount: u64) -> String {
    match resource {
        CPU => format_cpu(amount),
        MEMORY => format_memory(amount),
        _ => amount.to_string(),
    }
}

/// What one worker of a job needs. A job with N workers needs N times this, admitted all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_millis: u64,
    /// Bytes. Also the limit the executor enforces on the worker.
    pub memory_bytes: u64,
    pub gpus: u64,
    /// The flavor the GPUs must be (`gpu-a100`); any flavor the queue offers when `None`.
    pub gpu_flavor: Option<String>,
    /// Other resources by name (a Ray custom resource), each a count.
    pub custom: BTreeMap<String, u64>,
}

impl Resources {
    /// Every requested resource with its amount for one worker, zero amounts left out.
    pub fn amounts(&self) -> Vec<(String, u64)> {
        let mut out = Vec::with_capacity(3 + self.custom.len());
        for (name, amount) in [(CPU, self.cpu_millis), (MEMORY, self.memory_bytes), (GPU, self.gpus)] {
            if amount > 0 {
                out.push((name.to_owned(), amount));
            }
        }
        out.extend(self.custom.iter().filter(|(_, a)| **a > 0).map(|(n, a)| (n.clone(), *a)));
        out
    }
}

/// Why an attempt ended. The text forms are the API's and the database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitCause {
    Succeeded,
    /// A non-zero exit.
    Failed,
    /// Killed by a signal nobody Plinth sent.
    Signaled,
    OutOfMemory,
    TimedOut,
    Cancelled,
    /// The process vanished without a recorded end (its host or supervisor died).
    Lost,
    /// Evicted to give its quota back to a queue reclaiming it, or to a higher priority.
    Preempted,
    /// The executor could not start it (a command not found, no free device).
    StartFailed,
}

impl ExitCause {
    pub const ALL: [ExitCause; 9] = [
        ExitCause::Succeeded,
        ExitCause::Failed,
        ExitCause::Signaled,
        ExitCause::OutOfMemory,
        ExitCause::TimedOut,
        ExitCause::Cancelled,
        ExitCause::Lost,
        ExitCause::Preempted,
        ExitCause::StartFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Succeeded => "succeeded",
            ExitCause::Failed => "failed",
            ExitCause::Signaled => "signaled",
            ExitCause::OutOfMemory => "out_of_memory",
            ExitCause::TimedOut => "timed_out",
            ExitCause::Cancelled => "cancelled",
            ExitCause::Lost => "lost",
            ExitCause::Preempted => "preempted",
            ExitCause::StartFailed => "start_failed",
        }
    }

    pub fn parse(raw: &str) -> Result<ExitCause, InvalidParameter> {
        ExitCause::ALL.into_iter().find(|c| c.as_str() == raw).ok_or_else(|| {
            InvalidParameter::invalid_value("exit cause", raw, "Use failed, signaled, out_of_memory, timed_out, lost or start_failed.")
        })
    }

    /// The causes a spec's retry policy may name (not success, not a cancel).
    pub fn is_retryable(self) -> bool {
        !matches!(self, ExitCause::Succeeded | ExitCause::Cancelled | ExitCause::Preempted)
    }

    /// The state a job ends in when its last attempt ended this way.
    pub fn final_state(self) -> JobState {
        match self {
            ExitCause::Succeeded => JobState::Succeeded,
            ExitCause::Failed | ExitCause::Signaled | ExitCause::StartFailed => JobState::Failed,
            ExitCause::OutOfMemory => JobState::OutOfMemory,
            ExitCause::TimedOut => JobState::TimedOut,
            ExitCause::Cancelled => JobState::Cancelled,
            ExitCause::Lost => JobState::Lost,
            // A preempted job is queued again, never ended by it.
            ExitCause::Preempted => JobState::Queued,
        }
    }
}

/// The retry policy: how many more attempts, after how long, for which causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each next one, up to `MAX_BACKOFF_SECS`.
    pub backoff_secs: u64,
    /// The causes that retry; by default failed, signaled, out_of_memory and lost.
    pub on: Vec<ExitCause>,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_retries: 0,
            backoff_secs: 10,
            on: vec![ExitCause::Failed, ExitCause::Signaled, ExitCause::OutOfMemory, ExitCause::Lost],
        }
    }
}

impl Retry {
    /// The wait before retry number `retry` (1 for the first).
    pub fn backoff_before(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1).min(32);
        self.backoff_secs.saturating_mul(1u64 << doublings).min(MAX_BACKOFF_SECS)
    }
}

/// What to run, with what, where; everything a submitter says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// A display name (the run's name); the job's id when `None`.
    pub name: Option<String>,
    /// The program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// The uploaded code archive the job runs in (`sha256:<hex>`); an empty directory when `None`.
    pub code: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Per worker.
    pub resources: Resources,
    pub workers: u32,
    pub timeout_secs: Option<u64>,
    pub retry: Retry,
    pub priority: i32,
    /// The local queue it is submitted to.
    pub queue: String,
    /// The experiment (by name) its run is created in; the default experiment when `None`.
    pub experiment: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl JobSpec {
    /// A spec with defaults around `command`, submitted to `queue`.
    pub fn new(queue: &str, command: Vec<String>) -> JobSpec {
        JobSpec {
            name: None,
            command,
            code: None,
            env: BTreeMap::new(),
            resources: Resources::default(),
            workers: 1,
            timeout_secs: None,
            retry: Retry::default(),
            priority: 0,
            queue: queue.to_owned(),
            experiment: None,
            tags: BTreeMap::new(),
        }
    }

    /// Checks every rule; the first broken one is the error.
    pub fn validate(&self) -> Result<(), InvalidParameter> {
        if let Some(name) = &self.name
            && (name.is_empty() || name.chars().count() > 250 || name.chars().any(char::is_control))
        {
            return Err(InvalidParameter::invalid_value("name", name, "Use 1 to 250 characters, no control characters."));
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err(InvalidParameter::missing("command"));
        }
        if self.command.len() > MAX_ARGS {
            return Err(InvalidParameter::new(format!("A command has at most {MAX_ARGS} arguments; this one has {}.", self.command.len())));
        }
        for arg in &self.command {
            check_length("command argument", MAX_ARG_LENGTH, arg)?;
            if arg.contains('\0') {
                return Err(InvalidParameter::new("A command argument cannot contain a NUL character."));
            }
        }
        if let Some(code) = &self.code {
            validate_code_digest(code)?;
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(InvalidParameter::new(format!("A job has at most {MAX_ENV_VARS} environment variables.")));
        }
        for (key, value) in &self.env {
            let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && key.len() <= 255;
            if !ok {
                return Err(InvalidParameter::invalid_value("env", key, "Use ASCII letters, digits and '_', not starting with a digit."));
            }
            if RESERVED_ENV.contains(&key.as_str()) {
                return Err(InvalidParameter::invalid_value("env", key, "Plinth sets this variable for the job."));
            }
            check_length("env value", MAX_ENV_VALUE_LENGTH, value)?;
            if value.contains('\0') {
                return Err(InvalidParameter::new(format!("Environment variable '{key}' cannot contain a NUL character.")));
            }
        }
        if let Some(flavor) = &self.resources.gpu_flavor {
            validate_name("gpu_flavor", flavor)?;
            if self.resources.gpus == 0 {
                return Err(InvalidParameter::new("A GPU flavor was given without a number of GPUs."));
            }
        }
        for name in self.resources.custom.keys() {
            validate_name("resource", name)?;
            if [CPU, MEMORY, GPU].contains(&name.as_str()) {
                return Err(InvalidParameter::invalid_value("resource", name, "Use the cpus, memory and gpus fields for these."));
            }
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(InvalidParameter::invalid_value("workers", &self.workers.to_string(), &format!("Use 1 to {MAX_WORKERS}.")));
        }
        if let Some(t) = self.timeout_secs
            && (t == 0 || t > MAX_TIMEOUT_SECS)
        {
            return Err(InvalidParameter::invalid_value("timeout", &t.to_string(), "Use 1 second to 30 days."));
        }
        if self.retry.max_retries > MAX_RETRIES {
            return Err(InvalidParameter::invalid_value("retries", &self.retry.max_retries.to_string(), "Use 0 to 100."));
        }
        if self.retry.backoff_secs > MAX_BACKOFF_SECS {
            return Err(InvalidParameter::invalid_value("backoff", &self.retry.backoff_secs.to_string(), "Use at most a day."));
        }
        if let Some(cause) = self.retry.on.iter().find(|c| !c.is_retryable()) {
            return Err(InvalidParameter::invalid_value("retry_on", cause.as_str(), "This cause never retries."));
        }
        if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(InvalidParameter::invalid_value("priority", &self.priority.to_string(), "Use -1000000 to 1000000."));
        }
        validate_name("queue", &self.queue)?;
        if let Some(experiment) = &self.experiment {
            crate::validation::validate_experiment_name(experiment)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(InvalidParameter::new(format!("A job has at most {MAX_TAGS} tags.")));
        }
        for (key, value) in &self.tags {
            crate::validation::validate_key("tag", key)?;
            check_length("tag key", MAX_TAG_KEY_LENGTH, key)?;
            check_length("tag value", MAX_TAG_VALUE_LENGTH, value)?;
        }
        Ok(())
    }
}

/// Checks a code archive's content address: `sha256:` and 64 lowercase hex digits.
pub fn validate_code_digest(code: &str) -> Result<(), InvalidParameter> {
    let ok = code.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    if ok { Ok(()) } else { Err(InvalidParameter::invalid_value("code", code, "Use sha256: and 64 lowercase hex digits.")) }
}

/// Checks an idempotency key: 1 to 255 printable ASCII characters.
pub fn validate_idempotency_key(key: &str) -> Result<(), InvalidParameter> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LENGTH || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(InvalidParameter::invalid_value("idempotency_key", key, "Use 1 to 255 printable ASCII characters."));
    }
    Ok(())
}

/// Where a job is in its life. `Queued` → `Admitted` → `Starting` → `Running` → one of the ends;
/// a retry or a preemption takes it back to `Queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Queued,
    /// Its quota is reserved; the executor has not been asked yet.
    Admitted,
    /// Handed to the executor, not yet running.
    Starting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    OutOfMemory,
    Lost,
}

impl JobState {
    pub const ALL: [JobState; 10] = [
        JobState::Queued,
        JobState::Admitted,
        JobState::Starting,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
        JobState::OutOfMemory,
        JobState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Admitted => "admitted",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
            JobState::OutOfMemory => "out_of_memory",
            JobState::Lost => "lost",
        }
    }

    pub fn parse(raw: &str) -> Result<JobState, InvalidParameter> {
        JobState::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            InvalidParameter::invalid_value(
                "state",
                raw,
                "Use queued, admitted, starting, running, succeeded, failed, cancelled, timed_out, out_of_memory or lost.",
            )
        })
    }

    /// An end: nothing moves it again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Admitted | JobState::Starting | JobState::Running)
    }

    /// Holds quota: admitted and not ended.
    pub fn holds_quota(self) -> bool {
        matches!(self, JobState::Admitted | JobState::Starting | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnd {
    pub cause: ExitCause,
    /// One sentence for people: "out of memory: peak 4.3Gi over the 4Gi limit".
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The most memory the job's processes held together, when measured.
    pub peak_memory_bytes: Option<u64>,
}

/// Where an admitted job's resources come from: the flavor chosen for each resource.
pub type FlavorAssignment = BTreeMap<String, String>;

impl Job {
    /// Retries used so far: attempts after the first that were not restarts after a preemption.
    pub fn retries_used(&self) -> u32 {
        self.attempt.saturating_sub(1).saturating_sub(self.preemptions)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub spec: JobSpec,
    pub state: JobState,
    /// The cluster queue its local queue pointed at when it was submitted.
    pub cluster_queue: String,
    pub submitted_by: String,
    pub idempotency_key: Option<String>,
    /// 1 for the first attempt; every start again (a retry or after a preemption) adds one, so each
    /// attempt has output of its own.
    pub attempt: u32,
    /// How many attempts were preempted; they do not count against the retries.
    pub preemptions: u32,
    /// Set while admitted.
    pub flavors: Option<FlavorAssignment>,
    /// The executor that holds it, and its handle there (a process, a Ray submission).
    pub executor: Option<String>,
    pub handle: Option<String>,
    /// The tracking run it logs into.
    pub run_id: Option<String>,
    pub experiment_id: Option<String>,
    pub cancel_requested: bool,
    /// How its last attempt ended.
    pub last_end: Option<AttemptEnd>,
    /// A retry waits until this time (milliseconds since the epoch).
    pub not_before: Option<i64>,
    /// Bumped by every change; changes compare-and-set on it.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub admitted_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_in_their_units() {
        for (raw, millis) in [("2", 2000), ("0.5", 500), ("500m", 500), ("1.25", 1250), ("0", 0)] {
            assert_eq!(parse_cpu(raw), Ok(millis), "{raw}");
        }
        for raw in ["", "-1", "abc", "1.0005", "2x", "NaN", "inf"] {
            assert!(parse_cpu(raw).is_err(), "{raw}");
        }
        for (raw, bytes) in [("8Gi", 8u64 << 30), ("512Mi", 512 << 20), ("1G", 1_000_000_000), ("4096", 4096), ("1.5Gi", 3 << 29)] {
            assert_eq!(parse_memory(raw), Ok(bytes), "{raw}");
        }
        for raw in ["", "8gb", "Gi", "-1Gi", "99999999999Ti"] {
            assert!(parse_memory(raw).is_err(), "{raw}");
        }
        assert_eq!(format_memory(8 << 30), "8Gi");
        assert_eq!(format_memory((43 << 30) / 10), "4.3Gi");
        assert_eq!(format_memory(100), "100B");
        assert_eq!(format_cpu(500), "0.5");
        assert_eq!(format_cpu(4000), "4");
    }

    #[test]
    fn names_follow_the_dns_label_rule() {
        for ok in ["team-a", "gpu-a100", "a", "q1"] {
            assert!(validate_name("queue", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Team", "-a", "a-", "1a", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate_name("queue", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_are_checked_rule_by_rule() {
        let ok = JobSpec::new("team-a", vec!["python".into(), "train.py".into()]);
        assert!(ok.validate().is_ok());
        type Breaks = Box<dyn Fn(&mut JobSpec)>;
        let broken: Vec<(&str, Breaks)> = vec![
            ("empty command", Box::new(|s| s.command.clear())),
            ("empty program", Box::new(|s| s.command = vec![String::new()])),
            (
                "reserved env",
                Box::new(|s| {
                    s.env.insert("MLFLOW_RUN_ID".into(), "x".into());
                }),
            ),
            (
                "bad env key",
                Box::new(|s| {
                    s.env.insert("1X".into(), "x".into());
                }),
            ),
            ("no workers", Box::new(|s| s.workers = 0)),
            ("zero timeout", Box::new(|s| s.timeout_secs = Some(0))),
            ("flavor without gpus", Box::new(|s| s.resources.gpu_flavor = Some("gpu-a100".into()))),
            ("bad queue", Box::new(|s| s.queue = "Team A".into())),
            ("bad code", Box::new(|s| s.code = Some("md5:abc".into()))),
            ("retry on cancel", Box::new(|s| s.retry.on = vec![ExitCause::Cancelled])),
            ("priority", Box::new(|s| s.priority = MAX_PRIORITY + 1)),
            (
                "custom cpu",
                Box::new(|s| {
                    s.resources.custom.insert("cpu".into(), 1);
                }),
            ),
        ];
        for (what, breaks) in broken {
            let mut spec = ok.clone();
            breaks(&mut spec);
            assert!(spec.validate().is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_day() {
        let retry = Retry { max_retries: 5, backoff_secs: 10, on: vec![] };
        assert_eq!([1, 2, 3].map(|n| retry.backoff_before(n)), [10, 20, 40]);
        assert_eq!(retry.backoff_before(40), MAX_BACKOFF_SECS);
    }

    #[test]
    fn states_and_causes_round_trip_their_text() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Ok(s));
        }
        for c in ExitCause::ALL {
            assert_eq!(ExitCause::parse(c.as_str()), Ok(c));
        }
    }
}
