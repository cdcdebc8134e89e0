//! The scheduler's metrics, recorded through the `metrics` facade. Labels are cluster queue,
//! flavor and resource names (validated, declared by the operator) and exit causes (a fixed set).

use std::collections::{BTreeMap, HashMap};

use plinth_core::jobs::{Job, JobState};

use crate::admission::Admission;

/// Jobs waiting for admission, by cluster queue.
pub const QUEUE_DEPTH: &str = "plinth_jobs_queue_depth";
/// Jobs holding quota (admitted, starting or running), by cluster queue and state.
pub const ACTIVE: &str = "plinth_jobs_active";
/// Quota in use, by cluster queue, flavor and resource (millicores, bytes, counts).
pub const QUOTA_USED: &str = "plinth_jobs_quota_used";
/// Nominal quota, by cluster queue, flavor and resource.
pub const QUOTA_NOMINAL: &str = "plinth_jobs_quota_nominal";
/// Seconds from submission (or a retry's backoff end) to admission, by cluster queue.
pub const ADMISSION_WAIT_SECONDS: &str = "plinth_jobs_admission_wait_seconds";
/// Seconds from admission to running, by cluster queue.
pub const START_SECONDS: &str = "plinth_jobs_start_duration_seconds";
/// Seconds one admission cycle took to decide (the admission logic alone, over every pending job).
pub const CYCLE_SECONDS: &str = "plinth_jobs_admission_cycle_duration_seconds";
/// Jobs pending when a cycle ran, as last seen.
pub const CYCLE_PENDING: &str = "plinth_jobs_admission_cycle_pending";
/// Jobs ended, by cluster queue and cause (`succeeded`, `failed`, `out_of_memory`, …).
pub const ENDED: &str = "plinth_jobs_ended_total";
/// Attempts queued again, by cluster queue and cause (`preempted`, or the retried cause).
pub const REQUEUED: &str = "plinth_jobs_requeued_total";

/// Registers the help text of every scheduler metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Jobs waiting for admission, by cluster queue.");
    describe_gauge!(ACTIVE, Unit::Count, "Jobs holding quota (admitted, starting, running), by cluster queue and state.");
    describe_gauge!(
        QUOTA_USED,
        "Quota in use, by cluster queue, flavor and resource (cpu in millicores, memory in bytes, others counted)."
    );
    describe_gauge!(QUOTA_NOMINAL, "Nominal quota, by cluster queue, flavor and resource (units as plinth_jobs_quota_used).");
    describe_histogram!(ADMISSION_WAIT_SECONDS, Unit::Seconds, "Time from submission (or a retry's backoff end) to admission.");
    describe_histogram!(START_SECONDS, Unit::Seconds, "Time from admission to the job's processes running.");
    describe_histogram!(CYCLE_SECONDS, Unit::Seconds, "Time one admission cycle took to decide, over every pending job.");
    describe_gauge!(CYCLE_PENDING, Unit::Count, "Jobs pending when the last admission cycle ran.");
    describe_counter!(ENDED, "Jobs ended, by cluster queue and cause.");
    describe_counter!(REQUEUED, "Attempts queued again (a retry or a preemption), by cluster queue and cause.");
}

fn cause_of(job: &Job) -> &'static str {
    job.last_end.as_ref().map_or("cancelled", |e| e.cause.as_str())
}

pub(crate) fn admitted(job: &Job, now: i64) {
    let since = job.not_before.unwrap_or(job.created_at).max(job.created_at);
    let wait = (now - since).max(0) as f64 / 1000.0;
    metrics::histogram!(ADMISSION_WAIT_SECONDS, "cluster_queue" => job.cluster_queue.clone()).record(wait);
}

pub(crate) fn started(job: &Job, now: i64) {
    if let Some(admitted) = job.admitted_at {
        let secs = (now - admitted).max(0) as f64 / 1000.0;
        metrics::histogram!(START_SECONDS, "cluster_queue" => job.cluster_queue.clone()).record(secs);
    }
}

pub(crate) fn cycle(seconds: f64, pending: usize) {
    metrics::histogram!(CYCLE_SECONDS).record(seconds);
    metrics::gauge!(CYCLE_PENDING).set(pending as f64);
}

pub(crate) fn ended(job: &Job) {
    metrics::counter!(ENDED, "cluster_queue" => job.cluster_queue.clone(), "cause" => cause_of(job)).increment(1);
}

pub(crate) fn requeued(job: &Job) {
    metrics::counter!(REQUEUED, "cluster_queue" => job.cluster_queue.clone(), "cause" => cause_of(job)).increment(1);
}

/// Sets the gauges from the scheduler's state (called on each tick).
pub(crate) fn publish(admission: Option<&Admission>, jobs: &HashMap<i64, Job>) {
    let mut depth: BTreeMap<&str, u64> = BTreeMap::new();
    let mut active: BTreeMap<(&str, JobState), u64> = BTreeMap::new();
    for job in jobs.values() {
        match job.state {
            JobState::Queued => *depth.entry(&job.cluster_queue).or_default() += 1,
            state if state.holds_quota() => *active.entry((&job.cluster_queue, state)).or_default() += 1,
            _ => {}
        }
    }
    let Some(admission) = admission else { return };
    for usage in admission.usage() {
        let labels =
            [("cluster_queue", usage.cluster_queue.clone()), ("flavor", usage.flavor.clone()), ("resource", usage.resource.clone())];
        metrics::gauge!(QUOTA_USED, &labels).set(usage.used as f64);
        metrics::gauge!(QUOTA_NOMINAL, &labels).set(usage.nominal as f64);
    }
    for name in admission.cluster_queue_names() {
        metrics::gauge!(QUEUE_DEPTH, "cluster_queue" => name.clone()).set(depth.get(name.as_str()).copied().unwrap_or(0) as f64);
        for state in [JobState::Admitted, JobState::Starting, JobState::Running] {
            let n = active.get(&(name.as_str(), state)).copied().unwrap_or(0);
            metrics::gauge!(ACTIVE, "cluster_queue" => name.clone(), "state" => state.as_str()).set(n as f64);
        }
    }
}
