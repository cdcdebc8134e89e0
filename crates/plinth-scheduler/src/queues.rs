//! The declarative queue configuration (Kueue's model): resource flavors, cluster queues with
//! nominal quotas per flavor and resource, cohorts that lend unused quota, and local queues.
//!
//! `QueueConfig::parse` reads the TOML form and reports every problem with its path;
//! `QueueConfig::to_canonical_text` writes it back, and `plan` lists what changes between two.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use plinth_core::jobs::{CPU, MEMORY, format_quantity, parse_cpu, parse_memory, validate_name};
use plinth_core::{ErrorCode, HasErrorCode};

/// Every problem found in a queue configuration, each with its path
/// (`cluster_queues[1].resource_groups[0].flavors[0]: unknown flavor 'gpu-h100'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl HasErrorCode for ConfigError {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidParameterValue
    }
}

/// The validated queue configuration. Quantities are in plinth-core's units: millicores, bytes,
/// counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueConfig {
    /// Declared flavor names, in file order.
    pub flavors: Vec<String>,
    pub cluster_queues: Vec<ClusterQueue>,
    pub local_queues: Vec<LocalQueue>,
}

/// An admin-owned pool of quota that jobs are admitted against.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterQueue {
    pub name: String,
    /// Queues of one cohort lend each other their unused quota.
    pub cohort: Option<String>,
    /// The fair-sharing weight: a queue's borrowed share is divided by it. Finite and above 0.
    pub weight: f64,
    pub queueing: QueueingStrategy,
    pub preemption: PreemptionPolicy,
    pub resource_groups: Vec<ResourceGroup>,
}

/// Resources that are always assigned the same flavor, with the flavors to try in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    pub resources: Vec<String>,
    pub flavors: Vec<FlavorQuotas>,
}

/// One flavor of a resource group with a quota for each resource of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavorQuotas {
    pub name: String,
    pub quotas: BTreeMap<String, Quota>,
}

/// A quota for one resource in one flavor, in the resource's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub nominal: u64,
    /// How much more than `nominal` the queue may borrow from its cohort; unlimited when `None`.
    pub borrowing_limit: Option<u64>,
    /// How much of `nominal` the cohort may borrow; all of it when `None`.
    pub lending_limit: Option<u64>,
}

impl Quota {
    /// What the queue never lends: `nominal - lending_limit`.
    pub fn guaranteed(&self) -> u64 {
        self.nominal - self.lendable()
    }

    /// What the queue lends to its cohort when it does not use it.
    pub fn lendable(&self) -> u64 {
        self.lending_limit.map_or(self.nominal, |limit| limit.min(self.nominal))
    }
}

/// The tenant-facing name jobs are submitted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalQueue {
    pub name: String,
    pub cluster_queue: String,
}

/// How a cluster queue orders its pending jobs against its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueingStrategy {
    /// A job that does not fit does not hold up the ones behind it.
    #[default]
    BestEffortFifo,
    /// The first job that does not fit holds up every job behind it.
    StrictFifo,
}

impl QueueingStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueingStrategy::BestEffortFifo => "best_effort_fifo",
            QueueingStrategy::StrictFifo => "strict_fifo",
        }
    }
}

/// Whether a pending job may evict admitted jobs of its own cluster queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithinClusterQueue {
    #[default]
    Never,
    /// Jobs of strictly lower priority.
    LowerPriority,
}

impl WithinClusterQueue {
    pub fn as_str(self) -> &'static str {
        match self {
            WithinClusterQueue::Never => "never",
            WithinClusterQueue::LowerPriority => "lower_priority",
        }
    }
}

/// Whether a queue under its nominal quota may evict jobs of cohort queues that borrowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimWithinCohort {
    #[default]
    Never,
    /// Jobs of strictly lower priority.
    LowerPriority,
    /// Jobs of any priority.
    Any,
}

impl ReclaimWithinCohort {
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimWithinCohort::Never => "never",
            ReclaimWithinCohort::LowerPriority => "lower_priority",
            ReclaimWithinCohort::Any => "any",
        }
    }
}

/// A cluster queue's preemption policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreemptionPolicy {
    pub within_cluster_queue: WithinClusterQueue,
    pub reclaim_within_cohort: ReclaimWithinCohort,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    flavors: Vec<RawFlavor>,
    #[serde(default)]
    cluster_queues: Vec<RawClusterQueue>,
    #[serde(default)]
    local_queues: Vec<RawLocalQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlavor {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterQueue {
    name: String,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    queueing: QueueingStrategy,
    #[serde(default)]
    preemption: PreemptionPolicy,
    #[serde(default)]
    resource_groups: Vec<RawResourceGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResourceGroup {
    resources: Vec<String>,
    flavors: Vec<RawFlavorQuotas>,
}

/// A flavor entry: its name and one quota per resource, keyed by the resource's name. Serde
/// cannot deny unknown fields next to a flattened map, so validation checks every key instead.
#[derive(Debug, Deserialize)]
struct RawFlavorQuotas {
    name: String,
    #[serde(flatten)]
    quotas: BTreeMap<String, RawQuota>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    nominal: toml::Value,
    #[serde(default)]
    borrowing_limit: Option<toml::Value>,
    #[serde(default)]
    lending_limit: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalQueue {
    name: String,
    cluster_queue: String,
}

impl FromStr for QueueConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<QueueConfig, ConfigError> {
        QueueConfig::parse(text)
    }
}

impl QueueConfig {
    /// Parses and validates the TOML form; every problem is reported, each with its path.
    pub fn parse(text: &str) -> Result<QueueConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError { problems: vec![syntax_problem(text, &e)] })?;
        let mut problems = Vec::new();
        let config = build(raw, &mut problems);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }

    pub fn cluster_queue(&self, name: &str) -> Option<&ClusterQueue> {
        self.cluster_queues.iter().find(|it| it.name == name)
    }

    pub fn local_queue(&self, name: &str) -> Option<&LocalQueue> {
        self.local_queues.iter().find(|it| it.name == name)
    }

    /// The cluster queue that local queue `name` points at.
    pub fn cluster_queue_of(&self, name: &str) -> Option<&str> {
        self.local_queue(name).map(|it| it.cluster_queue.as_str())
    }

    /// The local queues' names, in file order.
    pub fn local_queue_names(&self) -> Vec<&str> {
        self.local_queues.iter().map(|it| it.name.as_str()).collect()
    }

    /// The TOML form with every default written out; it parses back to an equal configuration.
    pub fn to_canonical_text(&self) -> String {
        let mut out = String::new();
        for flavor in &self.flavors {
            out.push_str(&format!("[[flavors]]\nname = {}\n\n", quote(flavor)));
        }
        for cq in &self.cluster_queues {
            out.push_str(&format!("[[cluster_queues]]\nname = {}\n", quote(&cq.name)));
            if let Some(cohort) = &cq.cohort {
                out.push_str(&format!("cohort = {}\n", quote(cohort)));
            }
            out.push_str(&format!("weight = {:?}\n", cq.weight));
            out.push_str(&format!("queueing = {}\n", quote(cq.queueing.as_str())));
            out.push_str(&format!(
                "preemption = {{ within_cluster_queue = {}, reclaim_within_cohort = {} }}\n\n",
                quote(cq.preemption.within_cluster_queue.as_str()),
                quote(cq.preemption.reclaim_within_cohort.as_str())
            ));
            for group in &cq.resource_groups {
                let resources: Vec<String> = group.resources.iter().map(|it| quote(it)).collect();
                out.push_str(&format!("[[cluster_queues.resource_groups]]\nresources = [{}]\nflavors = [\n", resources.join(", ")));
                for flavor in &group.flavors {
                    out.push_str(&format!("  {{ name = {}", quote(&flavor.name)));
                    // Quotas follow the group's resource order; validation guarantees one per resource.
                    for resource in &group.resources {
                        if let Some(quota) = flavor.quotas.get(resource) {
                            out.push_str(&format!(", {resource} = {{ nominal = {}", canonical_amount(resource, quota.nominal)));
                            if let Some(limit) = quota.borrowing_limit {
                                out.push_str(&format!(", borrowing_limit = {}", canonical_amount(resource, limit)));
                            }
                            if let Some(limit) = quota.lending_limit {
                                out.push_str(&format!(", lending_limit = {}", canonical_amount(resource, limit)));
                            }
                            out.push_str(" }");
                        }
                    }
                    out.push_str(" },\n");
                }
                out.push_str("]\n\n");
            }
        }
        for lq in &self.local_queues {
            out.push_str(&format!("[[local_queues]]\nname = {}\ncluster_queue = {}\n\n", quote(&lq.name), quote(&lq.cluster_queue)));
        }
        if out.ends_with("\n\n") {
            out.pop();
        }
        out
    }
}

fn syntax_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end_matches('\n').to_owned();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |it| it.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn check_name(problems: &mut Vec<String>, path: &str, what: &str, name: &str) {
    if let Err(e) = validate_name(what, name) {
        problems.push(format!("{path}: {}", e.message()));
    }
}

fn build(raw: RawConfig, problems: &mut Vec<String>) -> QueueConfig {
    let mut flavors: Vec<String> = Vec::with_capacity(raw.flavors.len());
    for (i, flavor) in raw.flavors.into_iter().enumerate() {
        check_name(problems, &format!("flavors[{i}].name"), "flavor name", &flavor.name);
        if flavors.contains(&flavor.name) {
            problems.push(format!("flavors[{i}]: duplicate flavor '{}'", flavor.name));
        }
        flavors.push(flavor.name);
    }
    let declared: BTreeSet<&str> = flavors.iter().map(String::as_str).collect();

    let mut cluster_queues: Vec<ClusterQueue> = Vec::with_capacity(raw.cluster_queues.len());
    for (i, cq) in raw.cluster_queues.into_iter().enumerate() {
        let path = format!("cluster_queues[{i}]");
        check_name(problems, &format!("{path}.name"), "cluster queue name", &cq.name);
        if cluster_queues.iter().any(|it| it.name == cq.name) {
            problems.push(format!("{path}: duplicate cluster queue '{}'", cq.name));
        }
        if let Some(cohort) = &cq.cohort {
            check_name(problems, &format!("{path}.cohort"), "cohort", cohort);
        }
        let weight = cq.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight <= 0.0 {
            problems.push(format!("{path}.weight: must be a finite number above 0, not {weight}"));
        }
        let mut covered: BTreeMap<String, usize> = BTreeMap::new();
        let mut groups = Vec::with_capacity(cq.resource_groups.len());
        for (g, group) in cq.resource_groups.into_iter().enumerate() {
            let group_path = format!("{path}.resource_groups[{g}]");
            groups.push(build_group(problems, &group_path, g, group, &declared, &mut covered, cq.cohort.is_some()));
        }
        cluster_queues.push(ClusterQueue {
            name: cq.name,
            cohort: cq.cohort,
            weight,
            queueing: cq.queueing,
            preemption: cq.preemption,
            resource_groups: groups,
        });
    }

    let mut local_queues: Vec<LocalQueue> = Vec::with_capacity(raw.local_queues.len());
    for (i, lq) in raw.local_queues.into_iter().enumerate() {
        let path = format!("local_queues[{i}]");
        check_name(problems, &format!("{path}.name"), "local queue name", &lq.name);
        if local_queues.iter().any(|it| it.name == lq.name) {
            problems.push(format!("{path}: duplicate local queue '{}'", lq.name));
        }
        if !cluster_queues.iter().any(|it| it.name == lq.cluster_queue) {
            problems.push(format!("{path}.cluster_queue: unknown cluster queue '{}'", lq.cluster_queue));
        }
        local_queues.push(LocalQueue { name: lq.name, cluster_queue: lq.cluster_queue });
    }
    QueueConfig { flavors, cluster_queues, local_queues }
}

fn build_group(
    problems: &mut Vec<String>,
    path: &str,
    index: usize,
    group: RawResourceGroup,
    declared: &BTreeSet<&str>,
    covered: &mut BTreeMap<String, usize>,
    has_cohort: bool,
) -> ResourceGroup {
    if group.resources.is_empty() {
        problems.push(format!("{path}.resources: a resource group covers at least one resource"));
    }
    for (r, resource) in group.resources.iter().enumerate() {
        let resource_path = format!("{path}.resources[{r}]");
        check_name(problems, &resource_path, "resource", resource);
        if group.resources[..r].contains(resource) {
            problems.push(format!("{resource_path}: resource '{resource}' is listed twice"));
        } else if let Some(other) = covered.get(resource) {
            problems.push(format!("{resource_path}: resource '{resource}' is already covered by resource_groups[{other}]"));
        } else {
            covered.insert(resource.clone(), index);
        }
    }
    if group.flavors.is_empty() {
        problems.push(format!("{path}.flavors: a resource group lists at least one flavor"));
    }
    let mut flavors: Vec<FlavorQuotas> = Vec::with_capacity(group.flavors.len());
    for (f, flavor) in group.flavors.into_iter().enumerate() {
        let flavor_path = format!("{path}.flavors[{f}]");
        if !declared.contains(flavor.name.as_str()) {
            problems.push(format!("{flavor_path}: unknown flavor '{}'", flavor.name));
        }
        if flavors.iter().any(|it| it.name == flavor.name) {
            problems.push(format!("{flavor_path}: flavor '{}' is listed twice in this group", flavor.name));
        }
        let mut quotas = BTreeMap::new();
        for (resource, raw) in flavor.quotas {
            let quota_path = format!("{flavor_path}.{resource}");
            if !group.resources.contains(&resource) {
                problems.push(format!("{quota_path}: resource '{resource}' is not in this group's resources"));
                continue;
            }
            if let Some(quota) = build_quota(problems, &quota_path, &resource, &raw, has_cohort) {
                quotas.insert(resource, quota);
            }
        }
        for resource in &group.resources {
            // A quota that failed to parse has its own problem already; only report absent ones.
            if !quotas.contains_key(resource) && !problems.iter().any(|p| p.starts_with(&format!("{flavor_path}.{resource}"))) {
                problems.push(format!("{flavor_path}: no quota for resource '{resource}'"));
            }
        }
        flavors.push(FlavorQuotas { name: flavor.name, quotas });
    }
    ResourceGroup { resources: group.resources, flavors }
}

fn build_quota(problems: &mut Vec<String>, path: &str, resource: &str, raw: &RawQuota, has_cohort: bool) -> Option<Quota> {
    let mut amount = |key: &str, value: &toml::Value| match parse_amount(resource, value) {
        Ok(amount) => Some(amount),
        Err(why) => {
            problems.push(format!("{path}.{key}: {why}"));
            None
        }
    };
    let nominal = amount("nominal", &raw.nominal);
    let borrowing_limit = raw.borrowing_limit.as_ref().map(|it| amount("borrowing_limit", it));
    let lending_limit = raw.lending_limit.as_ref().map(|it| amount("lending_limit", it));
    if !has_cohort && borrowing_limit.is_some() {
        problems.push(format!("{path}.borrowing_limit: only a cluster queue in a cohort can borrow"));
    }
    if !has_cohort && lending_limit.is_some() {
        problems.push(format!("{path}.lending_limit: only a cluster queue in a cohort can lend"));
    }
    if let (Some(nominal), Some(Some(lending))) = (nominal, lending_limit)
        && lending > nominal
    {
        problems.push(format!(
            "{path}.lending_limit: {} is more than the nominal quota {}",
            format_quantity(resource, lending),
            format_quantity(resource, nominal)
        ));
    }
    // An absent limit is fine; a limit that did not parse leaves no quota.
    let limit = |it: Option<Option<u64>>| match it {
        None => Some(None),
        Some(parsed) => parsed.map(Some),
    };
    Some(Quota { nominal: nominal?, borrowing_limit: limit(borrowing_limit)?, lending_limit: limit(lending_limit)? })
}

/// Reads a quota amount: CPU as a number or millicores (`"500m"`), memory as bytes or with a unit
/// (`"8Gi"`), any other resource as a whole number.
fn parse_amount(resource: &str, value: &toml::Value) -> Result<u64, String> {
    match (resource, value) {
        (CPU, toml::Value::Integer(n)) => parse_cpu(&n.to_string()).map_err(|e| e.message().to_owned()),
        (CPU, toml::Value::Float(f)) => parse_cpu(&f.to_string()).map_err(|e| e.message().to_owned()),
        (CPU, toml::Value::String(s)) => parse_cpu(s).map_err(|e| e.message().to_owned()),
        (MEMORY, toml::Value::String(s)) => parse_memory(s).map_err(|e| e.message().to_owned()),
        (_, toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
        (CPU, _) => Err("use a number of CPUs (2, 0.5) or millicores (\"500m\")".to_owned()),
        (MEMORY, _) => Err("use bytes or a quantity with a unit (\"8Gi\")".to_owned()),
        _ => Err(format!("use a whole number of {resource}")),
    }
}

/// Writes an amount so that `parse_amount` reads it back exactly.
fn canonical_amount(resource: &str, amount: u64) -> String {
    match resource {
        CPU if amount.is_multiple_of(1000) => (amount / 1000).to_string(),
        CPU => format!("\"{amount}m\""),
        MEMORY => {
            for (unit, size) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
                if amount >= size && amount.is_multiple_of(size) {
                    return format!("\"{}{unit}\"", amount / size);
                }
            }
            amount.to_string()
        }
        _ => amount.to_string(),
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Flavor,
    ClusterQueue,
    LocalQueue,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Flavor => "flavor",
            ObjectKind::ClusterQueue => "cluster queue",
            ObjectKind::LocalQueue => "local queue",
        })
    }
}

/// One difference between two configurations; a changed object gives one `Changed` per attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        kind: ObjectKind,
        name: String,
    },
    /// `what` reads like `cohort research -> none`.
    Changed {
        kind: ObjectKind,
        name: String,
        what: String,
    },
    Removed {
        kind: ObjectKind,
        name: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { kind, name } => write!(f, "+ {kind} {name}"),
            Change::Changed { kind, name, what } => write!(f, "~ {kind} {name}: {what}"),
            Change::Removed { kind, name } => write!(f, "- {kind} {name}"),
        }
    }
}

/// What applying `new` over `old` changes: flavors, then cluster queues, then local queues, each
/// by name; nothing when they are equal. With no `old`, everything in `new` is added.
pub fn plan(old: Option<&QueueConfig>, new: &QueueConfig) -> Vec<Change> {
    let empty = QueueConfig::default();
    let old = old.unwrap_or(&empty);
    let mut changes = Vec::new();

    let old_flavors: BTreeSet<&String> = old.flavors.iter().collect();
    let new_flavors: BTreeSet<&String> = new.flavors.iter().collect();
    for name in old_flavors.union(&new_flavors) {
        match (old_flavors.contains(name), new_flavors.contains(name)) {
            (false, true) => changes.push(Change::Added { kind: ObjectKind::Flavor, name: (*name).clone() }),
            (true, false) => changes.push(Change::Removed { kind: ObjectKind::Flavor, name: (*name).clone() }),
            _ => {}
        }
    }

    let old_cqs: BTreeMap<&str, &ClusterQueue> = old.cluster_queues.iter().map(|it| (it.name.as_str(), it)).collect();
    let new_cqs: BTreeMap<&str, &ClusterQueue> = new.cluster_queues.iter().map(|it| (it.name.as_str(), it)).collect();
    let names: BTreeSet<&str> = old_cqs.keys().chain(new_cqs.keys()).copied().collect();
    for name in names {
        let kind = ObjectKind::ClusterQueue;
        match (old_cqs.get(name), new_cqs.get(name)) {
            (None, Some(_)) => changes.push(Change::Added { kind, name: name.to_owned() }),
            (Some(_), None) => changes.push(Change::Removed { kind, name: name.to_owned() }),
            (Some(a), Some(b)) => {
                for what in cluster_queue_changes(a, b) {
                    changes.push(Change::Changed { kind, name: name.to_owned(), what });
                }
            }
            (None, None) => {}
        }
    }

    let old_lqs: BTreeMap<&str, &LocalQueue> = old.local_queues.iter().map(|it| (it.name.as_str(), it)).collect();
    let new_lqs: BTreeMap<&str, &LocalQueue> = new.local_queues.iter().map(|it| (it.name.as_str(), it)).collect();
    let names: BTreeSet<&str> = old_lqs.keys().chain(new_lqs.keys()).copied().collect();
    for name in names {
        let kind = ObjectKind::LocalQueue;
        match (old_lqs.get(name), new_lqs.get(name)) {
            (None, Some(_)) => changes.push(Change::Added { kind, name: name.to_owned() }),
            (Some(_), None) => changes.push(Change::Removed { kind, name: name.to_owned() }),
            (Some(a), Some(b)) if a.cluster_queue != b.cluster_queue => changes.push(Change::Changed {
                kind,
                name: name.to_owned(),
                what: format!("cluster_queue {} -> {}", a.cluster_queue, b.cluster_queue),
            }),
            _ => {}
        }
    }
    changes
}

fn cluster_queue_changes(a: &ClusterQueue, b: &ClusterQueue) -> Vec<String> {
    let mut out = Vec::new();
    if a.cohort != b.cohort {
        out.push(format!("cohort {} -> {}", a.cohort.as_deref().unwrap_or("none"), b.cohort.as_deref().unwrap_or("none")));
    }
    if a.weight != b.weight {
        out.push(format!("weight {} -> {}", a.weight, b.weight));
    }
    if a.queueing != b.queueing {
        out.push(format!("queueing {} -> {}", a.queueing.as_str(), b.queueing.as_str()));
    }
    if a.preemption.within_cluster_queue != b.preemption.within_cluster_queue {
        out.push(format!(
            "preemption.within_cluster_queue {} -> {}",
            a.preemption.within_cluster_queue.as_str(),
            b.preemption.within_cluster_queue.as_str()
        ));
    }
    if a.preemption.reclaim_within_cohort != b.preemption.reclaim_within_cohort {
        out.push(format!(
            "preemption.reclaim_within_cohort {} -> {}",
            a.preemption.reclaim_within_cohort.as_str(),
            b.preemption.reclaim_within_cohort.as_str()
        ));
    }
    let (layout_a, layout_b) = (layout(&a.resource_groups), layout(&b.resource_groups));
    if layout_a != layout_b {
        out.push(format!("resource groups {layout_a} -> {layout_b}"));
        return out;
    }
    // Same layout: compare quota by quota, in the group's order.
    for (ga, gb) in a.resource_groups.iter().zip(&b.resource_groups) {
        for (fa, fb) in ga.flavors.iter().zip(&gb.flavors) {
            for resource in &ga.resources {
                let (Some(qa), Some(qb)) = (fa.quotas.get(resource), fb.quotas.get(resource)) else { continue };
                let show = |amount: Option<u64>| amount.map_or_else(|| "none".to_owned(), |it| format_quantity(resource, it));
                for (key, va, vb) in [
                    ("nominal", Some(qa.nominal), Some(qb.nominal)),
                    ("borrowing_limit", qa.borrowing_limit, qb.borrowing_limit),
                    ("lending_limit", qa.lending_limit, qb.lending_limit),
                ] {
                    if va != vb {
                        out.push(format!("{} {resource} {key} {} -> {}", fa.name, show(va), show(vb)));
                    }
                }
            }
        }
    }
    out
}

/// A resource-group layout as text: `[cpu, memory: default, spot] [gpu: gpu-a100]`.
fn layout(groups: &[ResourceGroup]) -> String {
    if groups.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|g| {
            let flavors: Vec<&str> = g.flavors.iter().map(|f| f.name.as_str()).collect();
            format!("[{}: {}]", g.resources.join(", "), flavors.join(", "))
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[flavors]]
name = "default"
[[flavors]]
name = "gpu-a100"

[[cluster_queues]]
name = "team-a"
cohort = "research"
weight = 1.0
queueing = "best_effort_fifo"
preemption = { within_cluster_queue = "lower_priority", reclaim_within_cohort = "lower_priority" }

[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [
  { name = "default", cpu = { nominal = 8, borrowing_limit = 4 }, memory = { nominal = "32Gi", lending_limit = "16Gi" } },
]
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "gpu-a100", gpu = { nominal = 4 } } ]

[[cluster_queues]]
name = "team-b"
cohort = "research"
weight = 2
queueing = "strict_fifo"

[[cluster_queues.resource_groups]]
resources = ["cpu", "memory", "ray-slot"]
flavors = [ { name = "default", cpu = { nominal = "1500m" }, memory = { nominal = 1000 }, ray-slot = { nominal = 3 } } ]

[[local_queues]]
name = "team-a"
cluster_queue = "team-a"
"#;

    fn parse(text: &str) -> QueueConfig {
        QueueConfig::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses `text` and returns its problems, sorted, or an empty list when it is valid.
    fn problems(text: &str) -> Vec<String> {
        QueueConfig::parse(text).err().map(|e| e.problems).unwrap_or_default()
    }

    #[test]
    fn the_example_parses_into_units() {
        let config = parse(EXAMPLE);
        assert_eq!(config.flavors, ["default", "gpu-a100"]);
        let a = config.cluster_queue("team-a").expect("declared");
        assert_eq!(a.cohort.as_deref(), Some("research"));
        assert_eq!(a.preemption.within_cluster_queue, WithinClusterQueue::LowerPriority);
        assert_eq!(a.preemption.reclaim_within_cohort, ReclaimWithinCohort::LowerPriority);
        let default = &a.resource_groups[0].flavors[0];
        assert_eq!(default.quotas["cpu"], Quota { nominal: 8000, borrowing_limit: Some(4000), lending_limit: None });
        assert_eq!(default.quotas["memory"], Quota { nominal: 32 << 30, borrowing_limit: None, lending_limit: Some(16 << 30) });
        assert_eq!(default.quotas["memory"].guaranteed(), 16 << 30);
        assert_eq!(a.resource_groups[1].flavors[0].quotas["gpu"].nominal, 4);
        let b = config.cluster_queue("team-b").expect("declared");
        assert_eq!(b.weight, 2.0);
        assert_eq!(b.queueing, QueueingStrategy::StrictFifo);
        assert_eq!(b.preemption, PreemptionPolicy::default());
        assert_eq!(b.resource_groups[0].flavors[0].quotas["cpu"].nominal, 1500);
        assert_eq!(b.resource_groups[0].flavors[0].quotas["ray-slot"].nominal, 3);
        assert_eq!(config.local_queue("team-a").expect("declared").cluster_queue, "team-a");
    }

    #[test]
    fn canonical_text_round_trips() {
        for text in [EXAMPLE, "", "[[flavors]]\nname = \"x\"\n[[cluster_queues]]\nname = \"q\"\nweight = 0.1\n"] {
            let config = parse(text);
            let canonical = config.to_canonical_text();
            let again = QueueConfig::parse(&canonical).unwrap_or_else(|e| panic!("{e}\n{canonical}"));
            assert_eq!(again, config, "{canonical}");
            assert_eq!(again.to_canonical_text(), canonical);
        }
        let odd = parse(
            r#"
[[flavors]]
name = "f"
[[cluster_queues]]
name = "q"
cohort = "c"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [ { name = "f", cpu = { nominal = 0.25, borrowing_limit = "1001m" }, memory = { nominal = "1.5Gi", lending_limit = 1001 } } ]
"#,
        );
        let canonical = odd.to_canonical_text();
        assert!(canonical.contains(r#"cpu = { nominal = "250m", borrowing_limit = "1001m" }"#), "{canonical}");
        assert!(canonical.contains(r#"memory = { nominal = "1536Mi", lending_limit = 1001 }"#), "{canonical}");
        assert_eq!(parse(&canonical), odd);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
[[flavors]]
name = "default"
[[flavors]]
name = "default"
[[flavors]]
name = "Bad_Name"

[[cluster_queues]]
name = "solo"
weight = 0
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [ { name = "default", cpu = { nominal = 8, borrowing_limit = 2, lending_limit = 1 }, gpu = { nominal = 1 } } ]
[[cluster_queues.resource_groups]]
resources = ["cpu"]
flavors = [ { name = "gpu-h100", cpu = { nominal = "lots" } } ]

[[cluster_queues]]
name = "shared"
cohort = "pool"
weight = nan
[[cluster_queues.resource_groups]]
resources = ["gpu", "gpu"]
flavors = [ { name = "default", gpu = { nominal = 2, lending_limit = 3 } }, { name = "default", gpu = { nominal = -1 } } ]

[[cluster_queues]]
name = "shared"

[[local_queues]]
name = "lq"
cluster_queue = "nowhere"
[[local_queues]]
name = "lq"
cluster_queue = "solo"
"#;
        let expected = [
            "flavors[1]: duplicate flavor 'default'",
            "flavors[2].name: Invalid value \"Bad_Name\" for parameter 'flavor name' supplied: Use 1 to 63 lowercase ASCII letters, digits or '-', starting with a letter and not ending with '-'.",
            "cluster_queues[0].weight: must be a finite number above 0, not 0",
            "cluster_queues[0].resource_groups[0].flavors[0].cpu.borrowing_limit: only a cluster queue in a cohort can borrow",
            "cluster_queues[0].resource_groups[0].flavors[0].cpu.lending_limit: only a cluster queue in a cohort can lend",
            "cluster_queues[0].resource_groups[0].flavors[0].gpu: resource 'gpu' is not in this group's resources",
            "cluster_queues[0].resource_groups[0].flavors[0]: no quota for resource 'memory'",
            "cluster_queues[0].resource_groups[1].resources[0]: resource 'cpu' is already covered by resource_groups[0]",
            "cluster_queues[0].resource_groups[1].flavors[0]: unknown flavor 'gpu-h100'",
            "cluster_queues[0].resource_groups[1].flavors[0].cpu.nominal: Invalid value \"lots\" for parameter 'cpus' supplied: Use a number of CPUs (2, 0.5) or millicores (500m).",
            "cluster_queues[1].weight: must be a finite number above 0, not NaN",
            "cluster_queues[1].resource_groups[0].resources[1]: resource 'gpu' is listed twice",
            "cluster_queues[1].resource_groups[0].flavors[0].gpu.lending_limit: 3 is more than the nominal quota 2",
            "cluster_queues[1].resource_groups[0].flavors[1]: flavor 'default' is listed twice in this group",
            "cluster_queues[1].resource_groups[0].flavors[1].gpu.nominal: -1 is negative",
            "cluster_queues[2]: duplicate cluster queue 'shared'",
            "local_queues[0].cluster_queue: unknown cluster queue 'nowhere'",
            "local_queues[1]: duplicate local queue 'lq'",
        ];
        let mut got = problems(text);
        let mut want: Vec<String> = expected.iter().map(|it| (*it).to_owned()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn structural_mistakes_are_refused_with_a_location() {
        let cases = [
            ("[[flavors]]\nname = \"a\"\ncolor = \"red\"\n", "line 3, column 1: unknown field `color`"),
            ("[[cluster_queues]]\nname = \"q\"\nqueueing = \"lifo\"\n", "line 3, column 12: unknown variant `lifo`"),
            (
                "[[flavors]]\nname = \"f\"\n[[cluster_queues]]\nname = \"q\"\n[[cluster_queues.resource_groups]]\nresources = [\"cpu\"]\nflavors = [ { name = \"f\", cpu = { nominal = 1, nominl = 2 } } ]\n",
                "unknown field `nominl`",
            ),
            ("[[cluster_queues]]\nname = \"q\"\npreemption = { within_cluster_queue = \"any\" }\n", "unknown variant `any`"),
            ("local_queues = 3\n", "invalid type"),
        ];
        for (text, expected) in cases {
            let got = problems(text);
            assert_eq!(got.len(), 1, "{text}: {got:?}");
            assert!(got[0].contains(expected), "{text}: {got:?}");
        }
        let error = QueueConfig::parse("[[flavors]]\n").expect_err("a flavor needs a name");
        assert_eq!(error.error_code(), ErrorCode::InvalidParameterValue);
        assert!(error.to_string().starts_with("invalid queue configuration:\n  - "), "{error}");
    }

    #[test]
    fn a_valid_config_has_no_problems() {
        for text in [
            "",
            EXAMPLE,
            "[[cluster_queues]]\nname = \"empty\"\n",
            // A cohort of one may set limits; it simply has nobody to borrow from.
            "[[flavors]]\nname = \"f\"\n[[cluster_queues]]\nname = \"q\"\ncohort = \"c\"\n[[cluster_queues.resource_groups]]\nresources = [\"gpu\"]\nflavors = [ { name = \"f\", gpu = { nominal = 0, borrowing_limit = 0, lending_limit = 0 } } ]\n",
        ] {
            assert_eq!(problems(text), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn plan_lists_each_difference() {
        let old = parse(EXAMPLE);
        let new = parse(
            r#"
[[flavors]]
name = "default"
[[flavors]]
name = "spot"

[[cluster_queues]]
name = "team-a"
cohort = "research"
weight = 1.0
preemption = { within_cluster_queue = "lower_priority", reclaim_within_cohort = "any" }
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [
  { name = "default", cpu = { nominal = 16, borrowing_limit = 4 }, memory = { nominal = "32Gi" } },
]

[[cluster_queues]]
name = "team-b"
weight = 2
queueing = "strict_fifo"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory", "ray-slot"]
flavors = [ { name = "default", cpu = { nominal = "1500m" }, memory = { nominal = 1000 }, ray-slot = { nominal = 3 } } ]

[[cluster_queues]]
name = "team-c"

[[local_queues]]
name = "team-a"
cluster_queue = "team-c"
[[local_queues]]
name = "new"
cluster_queue = "team-a"
"#,
        );
        let lines: Vec<String> = plan(Some(&old), &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "- flavor gpu-a100",
                "+ flavor spot",
                "~ cluster queue team-a: preemption.reclaim_within_cohort lower_priority -> any",
                "~ cluster queue team-a: resource groups [cpu, memory: default] [gpu: gpu-a100] -> [cpu, memory: default]",
                "~ cluster queue team-b: cohort research -> none",
                "+ cluster queue team-c",
                "+ local queue new",
                "~ local queue team-a: cluster_queue team-a -> team-c",
            ]
        );

        let mut quotas = old.clone();
        let group = &mut quotas.cluster_queues[0].resource_groups[0];
        group.flavors[0].quotas.insert("cpu".into(), Quota { nominal: 16000, borrowing_limit: None, lending_limit: None });
        quotas.local_queues.clear();
        let lines: Vec<String> = plan(Some(&old), &quotas).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ cluster queue team-a: default cpu nominal 8 -> 16",
                "~ cluster queue team-a: default cpu borrowing_limit 4 -> none",
                "- local queue team-a",
            ]
        );
        assert_eq!(plan(Some(&old), &old), []);
        let fresh: Vec<String> = plan(None, &old).iter().map(ToString::to_string).collect();
        assert_eq!(
            fresh,
            ["+ flavor default", "+ flavor gpu-a100", "+ cluster queue team-a", "+ cluster queue team-b", "+ local queue team-a"]
        );
    }
}
