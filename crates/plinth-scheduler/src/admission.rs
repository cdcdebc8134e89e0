//! Admission under quotas, Kueue's semantics simplified: which pending training jobs to admit now
//! (with a flavor per resource), which admitted jobs to preempt, and why every other job waits.
//! Pure and deterministic: no I/O and no clock (the caller passes the time in milliseconds).
//! `Admission` documents the rules.

#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use plinth_core::jobs::{FlavorAssignment, GPU, format_quantity};
use plinth_core::time::display_millis;

use crate::queues::{QueueConfig, QueueingStrategy, Quota, ReclaimWithinCohort, WithinClusterQueue};

/// How many pending jobs of one cluster queue may look for victims in one cycle; the first that
/// finds some ends the search for that queue until the next cycle.
const MAX_PREEMPTION_ATTEMPTS: usize = 8;

/// A job as admission sees it: where it queues, how it ranks and what it needs in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub id: i64,
    pub cluster_queue: String,
    pub priority: i32,
    /// Submission time in milliseconds; earlier goes first among equal priorities.
    pub created_at: i64,
    /// Every worker's requests added up (the caller multiplies by the workers): all or nothing.
    /// Amounts are in plinth-core's units; zero amounts are ignored.
    pub requests: BTreeMap<String, u64>,
    /// The only flavor the resource group covering `gpu` may use.
    pub gpu_flavor: Option<String>,
    /// A retry waits until this time (milliseconds).
    pub not_before: Option<i64>,
}

/// A job holding quota, with the flavor each of its resources was admitted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedWorkload {
    pub workload: Workload,
    pub flavors: FlavorAssignment,
    pub admitted_at: i64,
}

/// What one cycle decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Jobs admitted now, in the order they were admitted; they are admitted in `Admission` already.
    pub admit: Vec<(i64, FlavorAssignment)>,
    /// Admitted jobs to stop. They keep their quota until the caller calls `Admission::release`.
    pub preempt: Vec<Preemption>,
}

/// An admitted job to stop so that a pending one fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    pub victim: i64,
    pub preemptor: i64,
    /// One sentence for people, recorded with the victim's end.
    pub reason: String,
}

/// Why a pending job waits and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: WaitReason,
    /// 1-based, among the pending jobs of its cluster queue: priority descending, then submission
    /// time, then id.
    pub position: usize,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, position {}", self.reason, self.position)
    }
}

/// Why a pending job was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// Not enough free quota (the first resource and flavor that blocks).
    Quota(QuotaShortage),
    /// A retry that may not start before this time (milliseconds).
    Backoff {
        not_before: i64,
    },
    /// A strict-FIFO queue whose head does not fit.
    BlockedBehind {
        job: i64,
    },
    /// Jobs were preempted to make room for this one and have not stopped yet.
    Preempting {
        victims: Vec<i64>,
    },
    /// The cluster queue has no quota for a requested resource.
    NoQuota {
        resource: String,
        cluster_queue: String,
    },
    /// The job asks for a GPU flavor its cluster queue does not offer.
    FlavorNotOffered {
        flavor: String,
        cluster_queue: String,
    },
    /// The job needs more than its cluster queue could ever hold.
    TooLarge {
        message: String,
    },
    UnknownClusterQueue {
        cluster_queue: String,
    },
    /// Nothing holds it back now; the next cycle decides (it arrived, or quota was freed, since
    /// the last one).
    NextCycle,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Quota(shortage) => shortage.fmt(f),
            WaitReason::Backoff { not_before } => write!(f, "retrying after backoff, not before {}", display_millis(*not_before)),
            WaitReason::BlockedBehind { job } => write!(f, "blocked behind job {job} (strict FIFO)"),
            WaitReason::Preempting { victims } => {
                let ids: Vec<String> = victims.iter().map(ToString::to_string).collect();
                write!(f, "waiting for preempted jobs to stop: {}", ids.join(", "))
            }
            WaitReason::NoQuota { resource, cluster_queue } => write!(f, "no quota for {resource} in {cluster_queue}"),
            WaitReason::FlavorNotOffered { flavor, cluster_queue } => {
                write!(f, "cluster queue {cluster_queue} does not offer flavor {flavor}")
            }
            WaitReason::TooLarge { message } => f.write_str(message),
            WaitReason::UnknownClusterQueue { cluster_queue } => write!(f, "no cluster queue {cluster_queue}"),
            WaitReason::NextCycle => f.write_str("waiting for the next admission cycle"),
        }
    }
}

/// The first resource and flavor a job does not fit in, with the queue's numbers there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaShortage {
    /// What the job asks of `resource`.
    pub amount: u64,
    pub resource: String,
    pub flavor: String,
    pub cluster_queue: String,
    pub used: u64,
    pub nominal: u64,
    pub blocker: Blocker,
}

/// What limit a request runs into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// The queue's nominal quota (a queue without a cohort).
    Nominal,
    /// Nominal quota plus the borrowing limit.
    BorrowingLimit { limit: u64 },
    /// The queue's own limit leaves room but the cohort has only `free` to spare.
    Cohort { cohort: String, free: u64 },
}

impl fmt::Display for QuotaShortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = &self.resource;
        let amount = format_quantity(resource, self.amount);
        // A flavor named after its resource (`gpu-a100`) says both.
        if self.flavor == *resource || self.flavor.starts_with(&format!("{resource}-")) {
            write!(f, "waiting for {amount} {} in {}", self.flavor, self.cluster_queue)?;
        } else {
            write!(f, "waiting for {amount} {resource} ({}) in {}", self.flavor, self.cluster_queue)?;
        }
        write!(f, ": {}/{} in use", format_quantity(resource, self.used), format_quantity(resource, self.nominal))?;
        match &self.blocker {
            Blocker::Nominal => Ok(()),
            Blocker::BorrowingLimit { limit } => write!(f, ", borrowing limit {}", format_quantity(resource, *limit)),
            Blocker::Cohort { cohort, free } => write!(f, ", {} free in cohort {cohort}", format_quantity(resource, *free)),
        }
    }
}

/// One cluster queue's quota and use of one flavor and resource, for metrics and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUsage {
    pub cluster_queue: String,
    pub cohort: Option<String>,
    pub flavor: String,
    pub resource: String,
    pub used: u64,
    pub nominal: u64,
    /// What is used above `nominal`.
    pub borrowed: u64,
    pub borrowing_limit: Option<u64>,
    pub lending_limit: Option<u64>,
}

/// Why `workload` could never be admitted under `config`, even on an empty cluster (see
/// `Admission::fits_ever`); the API refuses such a job at submission with this message.
pub fn fits_ever(config: &QueueConfig, workload: &Workload) -> Result<(), String> {
    Model::build(config).compile(&ShapeKey::of(workload)).map(|_| ()).map_err(|reason| reason.to_string())
}

/// The admission state of every cluster queue: pending jobs in order, admitted jobs with their
/// usage, and preemptions under way. `cycle` decides; nothing here does I/O or reads a clock.
///
/// The rules, Kueue's simplified:
/// - **Accounting** is per cluster queue, flavor and resource. A queue has a nominal quota `N`, an
///   optional borrowing limit `B` (unlimited when absent) and an optional lending limit `L` (all of
///   `N` when absent). It never lends `N - L`; a cohort's pool is the sum of what its queues lend,
///   and a queue draws on it for whatever it uses above `N - L`. A request fits when the queue's
///   use stays within `N + B` and the pool is not overdrawn; a queue without a cohort is a cohort
///   of its own, so it fits within `N`. Using more than `N` is borrowing.
/// - **Flavors**: for each resource group a job requests something from, the group's flavors are
///   tried in order (only `gpu_flavor` for the group covering `gpu` when the job names one), and
///   every resource of the group gets the same flavor: the first where the job fits within
///   nominal quota, else the first where it fits by borrowing, else the first where preemption
///   makes room. A job is admitted whole or not at all (gang admission).
/// - **Order**: a cluster queue's pending jobs go by priority (highest first), then submission
///   time, then id. Jobs whose `not_before` is still ahead are skipped. Best-effort FIFO tries
///   every job that fits; strict FIFO stops at the first that does not (jobs in backoff, and jobs
///   that could never fit, do not block it).
/// - **Cohorts and fair sharing**: in each cohort, every queue offers its next job that fits; jobs
///   that fit within nominal quota go first, then borrowers, from the queue with the lowest
///   dominant share (the largest fraction of the cohort's lendable capacity of one flavor and
///   resource that the queue borrows, divided by its weight; ties by queue name). Shares are
///   evaluated again after every admission (progressive filling).
/// - **Preemption**, for a job that does not fit, at most one preemptor per queue per cycle:
///   `within_cluster_queue = lower_priority` may evict the queue's own jobs of strictly lower
///   priority; `reclaim_within_cohort` lets a queue that stays within its nominal quota with the
///   job evict jobs (of lower priority, or any) of cohort queues that borrow (use more than their
///   nominal quota) in the flavor and resource it needs; a job is the unit, so the victim's queue
///   may end below its nominal quota, as in Kueue. Victims are taken
///   from the queues borrowing the most first, then lowest priority, then newest admitted, until
///   the job fits; victims that turn out unneeded are dropped again. Nothing is preempted unless
///   the victims' quota makes the job fit. Victims keep their quota until `release`, are never
///   chosen twice, and the preemptor waits for them (it is admitted in a later cycle).
/// - **Reconfiguration** keeps every job. Admitted jobs count wherever their cluster queue,
///   flavor and resource still have a quota and are left out of the accounting elsewhere (they
///   keep running; the caller decides whether to stop them). Usage may then exceed a lowered
///   quota: nothing is preempted for it, new jobs wait until it drops.
#[derive(Debug)]
pub struct Admission {
    model: Model,
    usage: Usage,
    pending: HashMap<i64, PendingEntry>,
    /// The pending jobs of each cluster queue (by name, known or not), in admission order.
    queues: HashMap<String, BTreeMap<Key, Slot>>,
    shapes: Shapes,
    admitted: HashMap<i64, AdmittedEntry>,
    admitted_by_queue: HashMap<String, BTreeSet<i64>>,
    /// Victims not released yet, with their preemptor.
    victims: HashMap<i64, i64>,
    /// Preemptors with the victims they wait for.
    preemptors: HashMap<i64, Vec<i64>>,
    /// The time of the last cycle, and the head that blocked each strict-FIFO queue in it.
    last_cycle: Option<i64>,
    blocked: HashMap<String, Key>,
}

/// Admission order: priority descending, then submission time, then id.
type Key = (Reverse<i32>, i64, i64);

fn key_of(workload: &Workload) -> Key {
    (Reverse(workload.priority), workload.created_at, workload.id)
}

#[derive(Debug)]
struct PendingEntry {
    workload: Workload,
    key: Key,
    shape: usize,
}

/// What a cycle needs of a pending job besides its key, kept in its queue's order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    shape: usize,
    not_before: Option<i64>,
}

#[derive(Debug)]
struct AdmittedEntry {
    admitted: AdmittedWorkload,
    charges: Vec<Charge>,
}

/// An amount an admitted job holds in one cell (cluster queue, flavor, resource).
#[derive(Debug, Clone, Copy)]
struct Charge {
    cq: usize,
    cell: usize,
    amount: u64,
}

impl Admission {
    /// Takes the configuration as `&QueueConfig`, `QueueConfig` or `Arc<QueueConfig>`.
    pub fn new(config: impl Borrow<QueueConfig>) -> Admission {
        let model = Model::build(config.borrow());
        let usage = Usage::new(&model);
        Admission {
            model,
            usage,
            pending: HashMap::new(),
            queues: HashMap::new(),
            shapes: Shapes::default(),
            admitted: HashMap::new(),
            admitted_by_queue: HashMap::new(),
            victims: HashMap::new(),
            preemptors: HashMap::new(),
            last_cycle: None,
            blocked: HashMap::new(),
        }
    }

    /// Applies a new configuration, keeping every pending and admitted job (see the type's docs).
    pub fn reconfigure(&mut self, config: impl Borrow<QueueConfig>) {
        self.model = Model::build(config.borrow());
        self.usage = Usage::new(&self.model);
        for entry in self.admitted.values_mut() {
            entry.charges = self.model.charges(&entry.admitted);
            for charge in &entry.charges {
                self.usage.add(&self.model, charge.cq, charge.cell, charge.amount);
            }
        }
        self.shapes.recompile(&self.model);
        self.blocked.clear();
    }

    /// Queues a job. A job with the same id, pending or admitted, is replaced (an admitted one
    /// releases its quota).
    pub fn add_pending(&mut self, workload: Workload) {
        self.remove(workload.id);
        let key = key_of(&workload);
        let shape = self.shapes.intern(&self.model, &workload);
        self.queues.entry(workload.cluster_queue.clone()).or_default().insert(key, Slot { shape, not_before: workload.not_before });
        self.pending.insert(workload.id, PendingEntry { workload, key, shape });
    }

    /// Loads a job that holds quota already (after a restart). A job with the same id is replaced.
    pub fn admitted(&mut self, workload: Workload, flavors: FlavorAssignment, admitted_at: i64) {
        self.remove(workload.id);
        let admitted = AdmittedWorkload { workload, flavors, admitted_at };
        let charges = self.model.charges(&admitted);
        for charge in &charges {
            self.usage.add(&self.model, charge.cq, charge.cell, charge.amount);
        }
        let id = admitted.workload.id;
        self.admitted_by_queue.entry(admitted.workload.cluster_queue.clone()).or_default().insert(id);
        self.admitted.insert(id, AdmittedEntry { admitted, charges });
    }

    /// Forgets a job wherever it is (cancelled, or ended); an admitted one releases its quota.
    /// Whether it was known.
    pub fn remove(&mut self, id: i64) -> bool {
        if self.take_pending(id).is_some() {
            self.preemptors.remove(&id);
            return true;
        }
        self.release(id)
    }

    /// An admitted job ended (or stopped after a preemption): its quota is free again. Whether it
    /// was admitted.
    pub fn release(&mut self, id: i64) -> bool {
        let Some(entry) = self.admitted.remove(&id) else { return false };
        for charge in &entry.charges {
            self.usage.sub(&self.model, charge.cq, charge.cell, charge.amount);
        }
        let queue = &entry.admitted.workload.cluster_queue;
        if let Some(set) = self.admitted_by_queue.get_mut(queue) {
            set.remove(&id);
            if set.is_empty() {
                self.admitted_by_queue.remove(queue);
            }
        }
        self.victims.remove(&id);
        true
    }

    pub fn is_pending(&self, id: i64) -> bool {
        self.pending.contains_key(&id)
    }

    pub fn find_admitted(&self, id: i64) -> Option<&AdmittedWorkload> {
        self.admitted.get(&id).map(|it| &it.admitted)
    }

    /// Whether a cycle chose this admitted job as a victim and it has not been released yet.
    pub fn is_being_preempted(&self, id: i64) -> bool {
        self.victims.contains_key(&id)
    }

    /// Why a job could never be admitted, even on an empty cluster: its cluster queue does not
    /// exist or has no quota for a resource it requests, does not offer its GPU flavor, or could
    /// not hold the request even with everything it may borrow.
    pub fn fits_ever(&self, workload: &Workload) -> Result<(), String> {
        self.model.compile(&ShapeKey::of(workload)).map(|_| ()).map_err(|reason| reason.to_string())
    }

    /// Takes a job out of the pending set and its queue.
    fn take_pending(&mut self, id: i64) -> Option<PendingEntry> {
        let entry = self.pending.remove(&id)?;
        if let Some(queue) = self.queues.get_mut(&entry.workload.cluster_queue) {
            queue.remove(&entry.key);
            if queue.is_empty() {
                self.queues.remove(&entry.workload.cluster_queue);
            }
        }
        self.shapes.release(entry.shape);
        Some(entry)
    }

    /// Decides what to admit and what to preempt now. Admitted jobs move to the admitted set.
    pub fn cycle(&mut self, now_ms: i64) -> Decisions {
        self.last_cycle = Some(now_ms);
        self.blocked.clear();
        let mut decisions = Decisions::default();
        // The shapes found not to fit: usage only grows during a cycle, so they stay that way.
        let mut failed = vec![false; self.shapes.slots.len()];
        for cohort in 0..self.model.cohorts.len() {
            self.cycle_cohort(cohort, now_ms, &mut failed, &mut decisions);
        }
        decisions
    }

    /// Why a pending job waits, as of now, and its position; `None` when it is not pending.
    pub fn explain(&self, id: i64) -> Option<Waiting> {
        let entry = self.pending.get(&id)?;
        let position = self.queues.get(&entry.workload.cluster_queue).map_or(0, |queue| queue.range(..entry.key).count()) + 1;
        Some(Waiting { reason: self.reason(entry), position })
    }

    /// Quota and use of every cluster queue, flavor and resource: queues in name order, each in
    /// configuration order.
    pub fn usage(&self) -> Vec<QueueUsage> {
        let model = &self.model;
        let mut out = Vec::new();
        for (c, cq) in model.cqs.iter().enumerate() {
            for (k, cell) in cq.cells.iter().enumerate() {
                let used = self.usage.used[c][k];
                out.push(QueueUsage {
                    cluster_queue: cq.name.clone(),
                    cohort: model.cohorts[cq.cohort].name.clone(),
                    flavor: model.flavors[cell.flavor].clone(),
                    resource: model.resources[cell.resource].clone(),
                    used,
                    nominal: cell.nominal,
                    borrowed: used.saturating_sub(cell.nominal),
                    borrowing_limit: cell.borrowing_limit,
                    lending_limit: cell.lending_limit,
                });
            }
        }
        out
    }

    /// The configured cluster queues' names, in order.
    pub fn cluster_queue_names(&self) -> Vec<String> {
        self.model.cqs.iter().map(|cq| cq.name.clone()).collect()
    }

    /// How many jobs are admitted in each cluster queue, including queues the configuration lacks.
    pub fn admitted_counts(&self) -> BTreeMap<String, usize> {
        self.admitted_by_queue.iter().map(|(name, set)| (name.clone(), set.len())).collect()
    }

    /// How many jobs wait in each cluster queue, including queues the configuration lacks.
    pub fn pending_counts(&self) -> BTreeMap<String, usize> {
        self.queues.iter().map(|(name, queue)| (name.clone(), queue.len())).collect()
    }

    fn reason(&self, entry: &PendingEntry) -> WaitReason {
        let workload = &entry.workload;
        let request = match self.shapes.request(entry.shape) {
            Ok(request) => request,
            Err(reason) => return WaitReason::clone(reason),
        };
        let Some(&c) = self.model.cq_idx.get(&workload.cluster_queue) else {
            return WaitReason::UnknownClusterQueue { cluster_queue: workload.cluster_queue.clone() };
        };
        if let Some(not_before) = workload.not_before
            && self.last_cycle.is_none_or(|now| not_before > now)
        {
            return WaitReason::Backoff { not_before };
        }
        if let Some(victims) = self.preemptors.get(&workload.id) {
            let live: Vec<i64> = victims.iter().copied().filter(|v| self.victims.contains_key(v)).collect();
            if !live.is_empty() {
                return WaitReason::Preempting { victims: live };
            }
        }
        if let Some(head) = self.blocked.get(&workload.cluster_queue)
            && *head < entry.key
            && self.pending.contains_key(&head.2)
        {
            return WaitReason::BlockedBehind { job: head.2 };
        }
        self.shortage(c, request).map_or(WaitReason::NextCycle, WaitReason::Quota)
    }

    /// The first resource and flavor that keeps `request` out of cluster queue `c` now.
    fn shortage(&self, c: usize, request: &Request) -> Option<QuotaShortage> {
        let model = &self.model;
        let cq = &model.cqs[c];
        for req in &request.groups {
            if model.assign_group(&self.usage, c, req).is_some() {
                continue;
            }
            let flavor = &cq.groups[req.group].flavors[*req.flavors.first()?];
            for (&amount, &k) in req.amounts.iter().zip(&flavor.cells) {
                let available = model.available(&self.usage, c, k);
                if amount == 0 || amount <= available {
                    continue;
                }
                let cell = &cq.cells[k];
                let used = self.usage.used[c][k];
                let cohort = model.cohorts[cq.cohort].name.as_ref();
                let own_limit = match cohort {
                    None => Some(cell.nominal),
                    Some(_) => cell.borrowing_limit.map(|b| cell.nominal.saturating_add(b)),
                };
                let blocker = match (cohort, own_limit) {
                    (None, _) => Blocker::Nominal,
                    (Some(_), Some(limit)) if used.saturating_add(amount) > limit => {
                        Blocker::BorrowingLimit { limit: cell.borrowing_limit.unwrap_or_default() }
                    }
                    (Some(name), _) => Blocker::Cohort { cohort: name.clone(), free: available },
                };
                return Some(QuotaShortage {
                    amount,
                    resource: model.resources[cell.resource].clone(),
                    flavor: model.flavors[cell.flavor].clone(),
                    cluster_queue: cq.name.clone(),
                    used,
                    nominal: cell.nominal,
                    blocker,
                });
            }
        }
        None
    }

    fn in_flight(&self, id: i64) -> bool {
        self.preemptors.get(&id).is_some_and(|victims| victims.iter().any(|v| self.victims.contains_key(v)))
    }

    /// One cohort's part of a cycle: each member queue offers its next job that fits, and the best
    /// offer is admitted, until no queue has one.
    fn cycle_cohort(&mut self, cohort: usize, now: i64, failed: &mut [bool], decisions: &mut Decisions) {
        let members = self.model.cohorts[cohort].members.clone();
        // Each queue's pending jobs in order, as the cycle starts (admitting only removes some).
        let orders: Vec<Vec<(Key, Slot)>> = members
            .iter()
            .map(|&c| {
                let queue = self.queues.get(&self.model.cqs[c].name);
                queue.map(|queue| queue.iter().map(|(key, slot)| (*key, *slot)).collect()).unwrap_or_default()
            })
            .collect();
        let mut scans: Vec<Scan> = members.iter().map(|_| Scan::new()).collect();
        loop {
            for (i, &c) in members.iter().enumerate() {
                if !scans[i].done && scans[i].candidate.is_none() {
                    self.find_candidate(c, &orders[i], &mut scans[i], now, failed, decisions);
                }
            }
            // Admissions since an offer was made may have taken its room: check every offer again.
            let mut best: Option<(Mode, f64, usize)> = None;
            let mut withdrawn = false;
            for (i, &c) in members.iter().enumerate() {
                let Some((key, index)) = scans[i].candidate.as_ref().map(|it| (it.key, it.index)) else { continue };
                let shape = orders[i][index].1.shape;
                let assigned = self.shapes.request(shape).as_ref().ok().and_then(|request| self.model.assign(&self.usage, c, request));
                let Some((choice, mode)) = assigned else {
                    scans[i].candidate = None;
                    scans[i].next = index;
                    withdrawn = true;
                    continue;
                };
                scans[i].candidate = Some(Candidate { key, index, choice });
                let share = self.model.share(&self.usage, c);
                let better =
                    best.is_none_or(|(best_mode, best_share, _)| mode.cmp(&best_mode).then(share.total_cmp(&best_share)) == Ordering::Less);
                if better {
                    best = Some((mode, share, i));
                }
            }
            if withdrawn {
                // The withdrawn job is looked at again (it may preempt, or block a strict queue).
                continue;
            }
            let Some((_, _, i)) = best else { break };
            let candidate = scans[i].candidate.take().expect("the best offer exists");
            self.admit(members[i], candidate, now, decisions);
        }
    }

    /// Advances queue `c` to its next job that fits now, trying preemption for those that do not.
    fn find_candidate(
        &mut self,
        c: usize,
        order: &[(Key, Slot)],
        scan: &mut Scan,
        now: i64,
        failed: &mut [bool],
        decisions: &mut Decisions,
    ) {
        loop {
            let index = scan.next;
            let Some(&(key, slot)) = order.get(index) else {
                scan.done = true;
                return;
            };
            scan.next = index + 1;
            let (Reverse(priority), _, id) = key;
            if slot.not_before.is_some_and(|not_before| not_before > now) {
                continue;
            }
            // A job that could never fit here does not hold up the queue.
            let Ok(request) = self.shapes.request(slot.shape) else { continue };
            if !failed[slot.shape] {
                if let Some((choice, _)) = self.model.assign(&self.usage, c, request) {
                    scan.candidate = Some(Candidate { key, index, choice });
                    return;
                }
                failed[slot.shape] = true;
            }
            let cq = &self.model.cqs[c];
            let may_preempt = cq.within != WithinClusterQueue::Never
                || (cq.reclaim != ReclaimWithinCohort::Never && self.model.cohorts[cq.cohort].name.is_some());
            if may_preempt && !scan.preempted && scan.attempts < MAX_PREEMPTION_ATTEMPTS && !self.in_flight(id) {
                scan.attempts += 1;
                if let Some(victims) = self.find_victims(c, id, priority, request) {
                    scan.preempted = true;
                    self.preemptors.insert(id, victims.iter().map(|it| it.victim).collect());
                    for preemption in victims {
                        self.victims.insert(preemption.victim, id);
                        decisions.preempt.push(preemption);
                    }
                }
            }
            if self.model.cqs[c].strict {
                self.blocked.insert(self.model.cqs[c].name.clone(), key);
                scan.done = true;
                return;
            }
        }
    }

    fn admit(&mut self, c: usize, candidate: Candidate, now: i64, decisions: &mut Decisions) {
        let id = candidate.key.2;
        let shape = self.pending.get(&id).expect("an offered job is pending").shape;
        self.preemptors.remove(&id);
        let model = &self.model;
        let cq = &model.cqs[c];
        let mut flavors = FlavorAssignment::new();
        if let Ok(request) = self.shapes.request(shape) {
            for (req, &p) in request.groups.iter().zip(&candidate.choice) {
                let group = &cq.groups[req.group];
                let flavor = &model.flavors[group.flavors[p].flavor];
                for (&amount, &r) in req.amounts.iter().zip(&group.resources) {
                    if amount > 0 {
                        flavors.insert(model.resources[r].clone(), flavor.clone());
                    }
                }
            }
        }
        let entry = self.take_pending(id).expect("an offered job is pending");
        decisions.admit.push((id, flavors.clone()));
        self.admitted(entry.workload, flavors, now);
    }

    /// The fewest victims, chosen as the type's docs say, whose quota makes job `preemptor` of
    /// `priority` fit in cluster queue `c`; `None` when no set of allowed victims does.
    fn find_victims(&self, c: usize, preemptor: i64, priority: i32, request: &Request) -> Option<Vec<Preemption>> {
        let model = &self.model;
        let cq = &model.cqs[c];
        let cohort = &model.cohorts[cq.cohort];
        let mut candidates: Vec<VictimCandidate<'_>> = Vec::new();
        for &m in &cohort.members {
            let own = m == c;
            let allowed = if own {
                cq.within == WithinClusterQueue::LowerPriority
            } else {
                cohort.name.is_some() && cq.reclaim != ReclaimWithinCohort::Never
            };
            let Some(ids) = self.admitted_by_queue.get(&model.cqs[m].name).filter(|_| allowed) else { continue };
            let share = model.share(&self.usage, m);
            for id in ids {
                if self.victims.contains_key(id) {
                    continue;
                }
                let Some(entry) = self.admitted.get(id) else { continue };
                let victim_priority = entry.admitted.workload.priority;
                let lower = victim_priority < priority;
                if (own || cq.reclaim == ReclaimWithinCohort::LowerPriority) && !lower {
                    continue;
                }
                candidates.push(VictimCandidate {
                    id: *id,
                    cq: m,
                    priority: victim_priority,
                    admitted_at: entry.admitted.admitted_at,
                    share,
                    charges: &entry.charges,
                });
            }
        }
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by(|a, b| {
            b.share
                .total_cmp(&a.share)
                .then(a.cq.cmp(&b.cq))
                .then(a.priority.cmp(&b.priority))
                .then(b.admitted_at.cmp(&a.admitted_at))
                .then(b.id.cmp(&a.id))
        });

        let mut sim = self.usage.clone();
        let mut chosen: Vec<usize> = Vec::new();
        let mut choice = Vec::with_capacity(request.groups.len());
        for req in &request.groups {
            if let Some((p, _)) = model.assign_group(&sim, c, req) {
                choice.push(p);
                continue;
            }
            let mut found = false;
            for &p in &req.flavors {
                let mut trial = sim.clone();
                let mut trial_chosen = chosen.clone();
                if self.take_victims(c, req, p, &candidates, &mut trial, &mut trial_chosen) {
                    sim = trial;
                    chosen = trial_chosen;
                    choice.push(p);
                    found = true;
                    break;
                }
            }
            if !found {
                return None;
            }
        }
        if !model.fits_with(&sim, c, request, &choice) || chosen.is_empty() {
            return None;
        }
        // Give back every victim the job fits without, newest choice first.
        for j in (0..chosen.len()).rev() {
            let victim = &candidates[chosen[j]];
            for charge in victim.charges {
                sim.add(model, charge.cq, charge.cell, charge.amount);
            }
            if model.fits_with(&sim, c, request, &choice) {
                chosen.remove(j);
            } else {
                for charge in victim.charges {
                    sim.sub(model, charge.cq, charge.cell, charge.amount);
                }
            }
        }
        let cohort_name = cohort.name.as_deref().unwrap_or_default();
        Some(
            chosen
                .into_iter()
                .map(|i| {
                    let victim = &candidates[i];
                    let reason = if victim.cq == c {
                        format!("preempted by job {preemptor} of higher priority {priority} in cluster queue {}", cq.name)
                    } else {
                        format!("cluster queue {} reclaims its quota in cohort {cohort_name} for job {preemptor}", cq.name)
                    };
                    Preemption { victim: victim.id, preemptor, reason }
                })
                .collect(),
        )
    }

    /// Takes candidates in order, each one that frees a contested cell and may be taken, until
    /// group request `req` fits flavor `p` of queue `c`. Whether it does.
    fn take_victims(
        &self,
        c: usize,
        req: &GroupRequest,
        p: usize,
        candidates: &[VictimCandidate<'_>],
        sim: &mut Usage,
        chosen: &mut Vec<usize>,
    ) -> bool {
        let model = &self.model;
        let cq = &model.cqs[c];
        let cells = &cq.groups[req.group].flavors[p].cells;
        let mut contested: Vec<usize> = Vec::with_capacity(cells.len());
        for (i, candidate) in candidates.iter().enumerate() {
            if model.fit_group(sim, c, req, p).is_some() {
                return true;
            }
            if chosen.contains(&i) {
                continue;
            }
            // The cohort cells where the request does not fit yet.
            contested.clear();
            contested.extend(
                req.amounts
                    .iter()
                    .zip(cells)
                    .filter(|&(&amount, &k)| amount > 0 && amount > model.available(sim, c, k))
                    .map(|(_, &k)| cq.cells[k].cohort_cell),
            );
            let own = candidate.cq == c;
            // Reclaiming is for a queue that stays within its nominal quota with this job.
            if !own && req.amounts.iter().zip(cells).any(|(&amount, &k)| sim.used[c][k].saturating_add(amount) > cq.cells[k].nominal) {
                continue;
            }
            let mut helps = false;
            let mut allowed = true;
            for charge in candidate.charges {
                let cell = &model.cqs[charge.cq].cells[charge.cell];
                if charge.amount == 0 || !contested.contains(&cell.cohort_cell) {
                    continue;
                }
                helps = true;
                // Only a queue that borrows (uses more than its nominal quota there) gives back: a
                // job is the unit, so taking it may leave that queue below its nominal quota, as
                // in Kueue.
                if !own && sim.used[charge.cq][charge.cell] <= cell.nominal {
                    allowed = false;
                }
            }
            if !helps || !allowed {
                continue;
            }
            for charge in candidate.charges {
                sim.sub(model, charge.cq, charge.cell, charge.amount);
            }
            chosen.push(i);
        }
        model.fit_group(sim, c, req, p).is_some()
    }
}

#[derive(Debug)]
struct VictimCandidate<'a> {
    id: i64,
    cq: usize,
    priority: i32,
    admitted_at: i64,
    share: f64,
    charges: &'a [Charge],
}

/// A queue's progress through its pending jobs in one cycle.
#[derive(Debug)]
struct Scan {
    /// The position in the queue's order to look at next.
    next: usize,
    candidate: Option<Candidate>,
    done: bool,
    preempted: bool,
    attempts: usize,
}

impl Scan {
    fn new() -> Scan {
        Scan { next: 0, candidate: None, done: false, preempted: false, attempts: 0 }
    }
}

/// A job that fits now, with the flavor position chosen for each of its group requests.
#[derive(Debug)]
struct Candidate {
    key: Key,
    /// Its position in the queue's order.
    index: usize,
    choice: Vec<usize>,
}

/// How a job fits: within nominal quota, or by borrowing (which goes after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Nominal,
    Borrow,
}

/// A request resolved against its cluster queue: what it needs of each resource group.
#[derive(Debug, Clone)]
struct Request {
    groups: Vec<GroupRequest>,
}

#[derive(Debug, Clone)]
struct GroupRequest {
    group: usize,
    /// Aligned with the group's resources; 0 for those not requested.
    amounts: Vec<u64>,
    /// Positions in the group's flavor list the job may use, in order.
    flavors: Vec<usize>,
}

/// The configuration with names resolved to indices. Cluster queues are in name order.
#[derive(Debug)]
struct Model {
    flavors: Vec<String>,
    flavor_idx: HashMap<String, usize>,
    resources: Vec<String>,
    resource_idx: HashMap<String, usize>,
    cqs: Vec<CqModel>,
    cq_idx: HashMap<String, usize>,
    cohorts: Vec<CohortModel>,
}

#[derive(Debug)]
struct CqModel {
    name: String,
    cohort: usize,
    weight: f64,
    strict: bool,
    within: WithinClusterQueue,
    reclaim: ReclaimWithinCohort,
    groups: Vec<GroupModel>,
    /// Resource → (group, position in the group).
    group_of: HashMap<usize, (usize, usize)>,
    cells: Vec<CellModel>,
    /// (flavor, resource) → cell.
    cell_of: HashMap<(usize, usize), usize>,
}

#[derive(Debug)]
struct GroupModel {
    resources: Vec<usize>,
    flavors: Vec<GroupFlavor>,
}

#[derive(Debug)]
struct GroupFlavor {
    flavor: usize,
    /// The queue's cell for each of the group's resources in this flavor.
    cells: Vec<usize>,
}

/// One cluster queue's quota for one flavor and resource.
#[derive(Debug)]
struct CellModel {
    flavor: usize,
    resource: usize,
    nominal: u64,
    borrowing_limit: Option<u64>,
    lending_limit: Option<u64>,
    /// What the queue never lends.
    guaranteed: u64,
    cohort_cell: usize,
}

/// A cohort, or a queue without one (`name` is `None`): its members and shared pools.
#[derive(Debug)]
struct CohortModel {
    name: Option<String>,
    members: Vec<usize>,
    /// The lendable total of each (flavor, resource) among the members.
    lendable: Vec<u64>,
    cell_of: HashMap<(usize, usize), usize>,
}

impl Model {
    fn build(config: &QueueConfig) -> Model {
        let mut model = Model {
            flavors: Vec::new(),
            flavor_idx: HashMap::new(),
            resources: Vec::new(),
            resource_idx: HashMap::new(),
            cqs: Vec::new(),
            cq_idx: HashMap::new(),
            cohorts: Vec::new(),
        };
        for flavor in &config.flavors {
            intern(&mut model.flavors, &mut model.flavor_idx, flavor);
        }
        let mut cohort_idx: HashMap<&str, usize> = HashMap::new();
        let mut sorted: Vec<_> = config.cluster_queues.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.dedup_by(|a, b| a.name == b.name);
        for cq in sorted {
            let c = model.cqs.len();
            let cohort = match &cq.cohort {
                Some(name) => *cohort_idx.entry(name.as_str()).or_insert_with(|| {
                    model.cohorts.push(CohortModel::new(Some(name.clone())));
                    model.cohorts.len() - 1
                }),
                None => {
                    model.cohorts.push(CohortModel::new(None));
                    model.cohorts.len() - 1
                }
            };
            model.cohorts[cohort].members.push(c);
            let mut built = CqModel {
                name: cq.name.clone(),
                cohort,
                weight: if cq.weight.is_finite() && cq.weight > 0.0 { cq.weight } else { 1.0 },
                strict: cq.queueing == QueueingStrategy::StrictFifo,
                within: cq.preemption.within_cluster_queue,
                reclaim: cq.preemption.reclaim_within_cohort,
                groups: Vec::new(),
                group_of: HashMap::new(),
                cells: Vec::new(),
                cell_of: HashMap::new(),
            };
            for (g, group) in cq.resource_groups.iter().enumerate() {
                let resources: Vec<usize> =
                    group.resources.iter().map(|name| intern(&mut model.resources, &mut model.resource_idx, name)).collect();
                for (pos, &r) in resources.iter().enumerate() {
                    built.group_of.entry(r).or_insert((g, pos));
                }
                let mut flavors = Vec::with_capacity(group.flavors.len());
                for entry in &group.flavors {
                    let f = intern(&mut model.flavors, &mut model.flavor_idx, &entry.name);
                    let mut cells = Vec::with_capacity(resources.len());
                    for (name, &r) in group.resources.iter().zip(&resources) {
                        let quota =
                            entry.quotas.get(name).copied().unwrap_or(Quota { nominal: 0, borrowing_limit: None, lending_limit: None });
                        let cohort = &mut model.cohorts[cohort];
                        let next = cohort.lendable.len();
                        let cohort_cell = *cohort.cell_of.entry((f, r)).or_insert(next);
                        if cohort_cell == next {
                            cohort.lendable.push(0);
                        }
                        let k = *built.cell_of.entry((f, r)).or_insert(built.cells.len());
                        if k == built.cells.len() {
                            cohort.lendable[cohort_cell] += quota.lendable();
                            built.cells.push(CellModel {
                                flavor: f,
                                resource: r,
                                nominal: quota.nominal,
                                borrowing_limit: quota.borrowing_limit,
                                lending_limit: quota.lending_limit,
                                guaranteed: quota.guaranteed(),
                                cohort_cell,
                            });
                        }
                        cells.push(k);
                    }
                    flavors.push(GroupFlavor { flavor: f, cells });
                }
                built.groups.push(GroupModel { resources, flavors });
            }
            model.cq_idx.insert(built.name.clone(), c);
            model.cqs.push(built);
        }
        model
    }

    /// Resolves a request against its cluster queue, refusing what could never fit.
    fn compile(&self, shape: &ShapeKey) -> Result<Request, Box<WaitReason>> {
        let Some(&c) = self.cq_idx.get(&shape.cluster_queue) else {
            return Err(Box::new(WaitReason::UnknownClusterQueue { cluster_queue: shape.cluster_queue.clone() }));
        };
        let cq = &self.cqs[c];
        let no_quota = |resource: &str| Box::new(WaitReason::NoQuota { resource: resource.to_owned(), cluster_queue: cq.name.clone() });
        let mut groups: BTreeMap<usize, GroupRequest> = BTreeMap::new();
        for (name, amount) in &shape.requests {
            let Some(&(g, pos)) = self.resource_idx.get(name).and_then(|r| cq.group_of.get(r)) else {
                return Err(no_quota(name));
            };
            let group = &cq.groups[g];
            let req = groups.entry(g).or_insert_with(|| GroupRequest {
                group: g,
                amounts: vec![0; group.resources.len()],
                flavors: (0..group.flavors.len()).collect(),
            });
            req.amounts[pos] = *amount;
        }
        if let Some(flavor) = &shape.gpu_flavor {
            let gpu_group = self.resource_idx.get(GPU).and_then(|r| cq.group_of.get(r)).map(|&(g, _)| g);
            if let Some(req) = gpu_group.and_then(|g| groups.get_mut(&g)) {
                let offered = &cq.groups[req.group].flavors;
                req.flavors.retain(|&p| self.flavors[offered[p].flavor] == *flavor);
                if req.flavors.is_empty() {
                    return Err(Box::new(WaitReason::FlavorNotOffered { flavor: flavor.clone(), cluster_queue: cq.name.clone() }));
                }
            }
        }
        for req in groups.values() {
            let group = &cq.groups[req.group];
            let Some(&first) = req.flavors.first() else {
                let resource = req.amounts.iter().position(|&a| a > 0).map_or(GPU, |pos| &self.resources[group.resources[pos]]);
                return Err(no_quota(resource));
            };
            let fits = |p: usize| req.amounts.iter().zip(&group.flavors[p].cells).all(|(&amount, &k)| amount <= self.max_ever(c, k));
            if req.flavors.iter().any(|&p| fits(p)) {
                continue;
            }
            // Name the first resource that does not fit the preferred flavor, and the most any
            // allowed flavor could hold of it.
            let pos = (0..req.amounts.len())
                .find(|&pos| req.amounts[pos] > self.max_ever(c, group.flavors[first].cells[pos]))
                .unwrap_or_default();
            let (most, p) = req
                .flavors
                .iter()
                .map(|&p| (self.max_ever(c, group.flavors[p].cells[pos]), p))
                .min_by_key(|&(most, _)| Reverse(most))
                .unwrap_or((0, first));
            let resource = &self.resources[group.resources[pos]];
            return Err(Box::new(WaitReason::TooLarge {
                message: format!(
                    "{} {resource} is more than cluster queue {} can ever hold: at most {} in flavor {}",
                    format_quantity(resource, req.amounts[pos]),
                    cq.name,
                    format_quantity(resource, most),
                    self.flavors[group.flavors[p].flavor]
                ),
            }));
        }
        Ok(Request { groups: groups.into_values().collect() })
    }

    /// The most queue `c` could ever hold in cell `k`, with everything else empty.
    fn max_ever(&self, c: usize, k: usize) -> u64 {
        let cq = &self.cqs[c];
        let cell = &cq.cells[k];
        let cohort = &self.cohorts[cq.cohort];
        if cohort.name.is_none() {
            return cell.nominal;
        }
        let own = cell.borrowing_limit.map_or(u64::MAX, |b| cell.nominal.saturating_add(b));
        own.min(cell.guaranteed.saturating_add(cohort.lendable[cell.cohort_cell]))
    }

    /// The most queue `c` can take now in cell `k`: within its own limit, and without overdrawing
    /// its cohort's pool.
    fn available(&self, usage: &Usage, c: usize, k: usize) -> u64 {
        let cq = &self.cqs[c];
        let cell = &cq.cells[k];
        let cohort = &self.cohorts[cq.cohort];
        let used = usage.used[c][k];
        let limit = match cohort.name {
            None => cell.nominal,
            Some(_) => cell.borrowing_limit.map_or(u64::MAX, |b| cell.nominal.saturating_add(b)),
        };
        let pool_free = cohort.lendable[cell.cohort_cell].saturating_sub(usage.pool[cq.cohort][cell.cohort_cell]);
        limit.saturating_sub(used).min(cell.guaranteed.saturating_sub(used).saturating_add(pool_free))
    }

    fn fit_group(&self, usage: &Usage, c: usize, req: &GroupRequest, p: usize) -> Option<Mode> {
        let cq = &self.cqs[c];
        let mut mode = Mode::Nominal;
        for (&amount, &k) in req.amounts.iter().zip(&cq.groups[req.group].flavors[p].cells) {
            if amount == 0 {
                continue;
            }
            if amount > self.available(usage, c, k) {
                return None;
            }
            if usage.used[c][k].saturating_add(amount) > cq.cells[k].nominal {
                mode = Mode::Borrow;
            }
        }
        Some(mode)
    }

    /// The first allowed flavor where the group fits within nominal quota, else the first where
    /// it fits by borrowing.
    fn assign_group(&self, usage: &Usage, c: usize, req: &GroupRequest) -> Option<(usize, Mode)> {
        let mut borrowing = None;
        for &p in &req.flavors {
            match self.fit_group(usage, c, req, p) {
                Some(Mode::Nominal) => return Some((p, Mode::Nominal)),
                Some(Mode::Borrow) if borrowing.is_none() => borrowing = Some(p),
                _ => {}
            }
        }
        borrowing.map(|p| (p, Mode::Borrow))
    }

    fn assign(&self, usage: &Usage, c: usize, request: &Request) -> Option<(Vec<usize>, Mode)> {
        // Allocated only once a group fits: most jobs looked at in a busy cycle do not.
        let mut choice = Vec::new();
        let mut mode = Mode::Nominal;
        for req in &request.groups {
            let (p, m) = self.assign_group(usage, c, req)?;
            choice.push(p);
            mode = mode.max(m);
        }
        Some((choice, mode))
    }

    fn fits_with(&self, usage: &Usage, c: usize, request: &Request, choice: &[usize]) -> bool {
        request.groups.iter().zip(choice).all(|(req, &p)| self.fit_group(usage, c, req, p).is_some())
    }

    /// Queue `c`'s dominant share: the largest fraction of a cohort pool it borrows, over its weight.
    fn share(&self, usage: &Usage, c: usize) -> f64 {
        let cq = &self.cqs[c];
        let cohort = &self.cohorts[cq.cohort];
        let mut share = 0.0_f64;
        for (k, cell) in cq.cells.iter().enumerate() {
            let borrowed = usage.used[c][k].saturating_sub(cell.nominal);
            let lendable = cohort.lendable[cell.cohort_cell];
            if borrowed > 0 && lendable > 0 {
                share = share.max(borrowed as f64 / lendable as f64);
            }
        }
        share / cq.weight
    }

    /// Where an admitted job's amounts count: every requested resource whose queue, flavor and
    /// quota still exist.
    fn charges(&self, admitted: &AdmittedWorkload) -> Vec<Charge> {
        let workload = &admitted.workload;
        let Some(&c) = self.cq_idx.get(&workload.cluster_queue) else { return Vec::new() };
        let cq = &self.cqs[c];
        let mut charges = Vec::with_capacity(workload.requests.len());
        for (resource, &amount) in &workload.requests {
            let cell = admitted
                .flavors
                .get(resource)
                .and_then(|flavor| self.flavor_idx.get(flavor))
                .zip(self.resource_idx.get(resource))
                .and_then(|(&f, &r)| cq.cell_of.get(&(f, r)));
            if let Some(&cell) = cell.filter(|_| amount > 0) {
                charges.push(Charge { cq: c, cell, amount });
            }
        }
        charges
    }
}

/// A request as it resolves: the same for every job of one cluster queue asking for the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    cluster_queue: String,
    /// Non-zero amounts, by resource name.
    requests: Vec<(String, u64)>,
    gpu_flavor: Option<String>,
}

impl ShapeKey {
    fn of(workload: &Workload) -> ShapeKey {
        ShapeKey {
            cluster_queue: workload.cluster_queue.clone(),
            requests: workload.requests.iter().filter(|(_, amount)| **amount > 0).map(|(r, a)| (r.clone(), *a)).collect(),
            gpu_flavor: workload.gpu_flavor.clone(),
        }
    }
}

#[derive(Debug)]
struct Shape {
    key: ShapeKey,
    request: Result<Request, Box<WaitReason>>,
    /// How many pending jobs have it; it is dropped at zero.
    users: usize,
}

/// Pending jobs' requests, interned: a cycle tests each shape at most once after it stopped
/// fitting, and jobs of a known shape cost no resolution.
#[derive(Debug, Default)]
struct Shapes {
    index: HashMap<ShapeKey, usize>,
    slots: Vec<Option<Shape>>,
    free: Vec<usize>,
}

impl Shapes {
    fn intern(&mut self, model: &Model, workload: &Workload) -> usize {
        let key = ShapeKey::of(workload);
        if let Some(&i) = self.index.get(&key) {
            if let Some(shape) = &mut self.slots[i] {
                shape.users += 1;
            }
            return i;
        }
        let shape = Shape { request: model.compile(&key), key: key.clone(), users: 1 };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(shape);
                i
            }
            None => {
                self.slots.push(Some(shape));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, i);
        i
    }

    fn release(&mut self, i: usize) {
        let Some(shape) = &mut self.slots[i] else { return };
        shape.users -= 1;
        if shape.users == 0 {
            if let Some(shape) = self.slots[i].take() {
                self.index.remove(&shape.key);
            }
            self.free.push(i);
        }
    }

    fn request(&self, i: usize) -> &Result<Request, Box<WaitReason>> {
        &self.slots[i].as_ref().expect("a pending job's shape is interned").request
    }

    fn recompile(&mut self, model: &Model) {
        for shape in self.slots.iter_mut().flatten() {
            shape.request = model.compile(&shape.key);
        }
    }
}

impl CohortModel {
    fn new(name: Option<String>) -> CohortModel {
        CohortModel { name, members: Vec::new(), lendable: Vec::new(), cell_of: HashMap::new() }
    }
}

fn intern(names: &mut Vec<String>, index: &mut HashMap<String, usize>, name: &str) -> usize {
    if let Some(&i) = index.get(name) {
        return i;
    }
    names.push(name.to_owned());
    index.insert(name.to_owned(), names.len() - 1);
    names.len() - 1
}

/// What every queue uses in each of its cells, and what each cohort's pools lend out.
#[derive(Debug, Clone)]
struct Usage {
    used: Vec<Vec<u64>>,
    pool: Vec<Vec<u64>>,
}

impl Usage {
    fn new(model: &Model) -> Usage {
        Usage {
            used: model.cqs.iter().map(|cq| vec![0; cq.cells.len()]).collect(),
            pool: model.cohorts.iter().map(|cohort| vec![0; cohort.lendable.len()]).collect(),
        }
    }

    fn add(&mut self, model: &Model, c: usize, k: usize, amount: u64) {
        let old = self.used[c][k];
        self.set(model, c, k, old, old.saturating_add(amount));
    }

    fn sub(&mut self, model: &Model, c: usize, k: usize, amount: u64) {
        let old = self.used[c][k];
        self.set(model, c, k, old, old.saturating_sub(amount));
    }

    fn set(&mut self, model: &Model, c: usize, k: usize, old: u64, new: u64) {
        let cq = &model.cqs[c];
        let cell = &cq.cells[k];
        self.used[c][k] = new;
        // The pool holds what each queue uses beyond what it never lends.
        let pool = &mut self.pool[cq.cohort][cell.cohort_cell];
        *pool = pool.saturating_add(new.saturating_sub(cell.guaranteed)).saturating_sub(old.saturating_sub(cell.guaranteed));
    }
}
