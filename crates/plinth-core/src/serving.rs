//! Serving's domain: deployments, their variants (each a registry reference), traffic weights,
//! shadow copies, batching and resource options, with their limits and name rules.
//!
//! A deployment's name is the model name of the serving protocols (`/v2/models/{name}/infer`,
//! `/invocations` per deployment), so it is restricted to characters that need no escaping in a
//! URL path. Every limit below is checked by `DeploymentSpec::validate` and documented in
//! `docs/serving.md`.

use std::fmt;

use crate::registry::{parse_version, validate_alias, validate_model_name};
use crate::validation::{InvalidParameter, check_length};

/// Longest deployment or variant name.
pub const MAX_NAME_LENGTH: usize = 64;
/// Most variants (primaries and shadows) in one deployment.
pub const MAX_VARIANTS: usize = 8;
/// The traffic weights of a deployment's primary variants add up to this.
pub const TOTAL_WEIGHT: u32 = 100;
/// Largest batch a deployment may form (Triton's `max_batch_size`).
pub const MAX_BATCH_SIZE: u32 = 1024;
/// Longest a request may wait for others to join its batch.
pub const MAX_QUEUE_DELAY_MICROS: u64 = 1_000_000;
/// Most requests queued per variant before new ones are refused at once.
pub const MAX_QUEUE_SIZE: u32 = 100_000;
/// Longest per-request timeout.
pub const MAX_TIMEOUT_MILLIS: u64 = 600_000;
/// Most model instances (runtime sessions, each on a thread of its own) per variant.
pub const MAX_INSTANCES: u32 = 16;
/// Most threads one instance's runtime may use inside an operator.
pub const MAX_THREADS: u32 = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LENGTH: usize = 10_000;
/// Shortest and longest sliding window automatic rollback judges over.
pub const MIN_ROLLBACK_WINDOW_SECS: u32 = 5;
pub const MAX_ROLLBACK_WINDOW_SECS: u32 = 3600;
/// Most requests a rollback may wait for before it judges a variant.
pub const MAX_ROLLBACK_MIN_REQUESTS: u32 = 1_000_000;

/// Checks a deployment or variant name: 1 to 64 ASCII letters, digits, `_`, `-` or `.`, starting
/// with a letter or digit.
pub fn validate_name(what: &str, name: &str) -> Result<(), InvalidParameter> {
    if name.is_empty() {
        return Err(InvalidParameter::missing(what));
    }
    check_length(what, MAX_NAME_LENGTH, name)?;
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(InvalidParameter::invalid_value(
            what,
            name,
            "Use 1 to 64 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit.",
        ));
    }
    Ok(())
}

/// Which version of a registered model a variant serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelTarget {
    /// Whatever version the alias points at, followed as it moves.
    Alias(String),
    /// One version, fixed.
    Version(i64),
}

/// A registry reference: `name@alias` (followed) or `name/version` (pinned).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub name: String,
    pub target: ModelTarget,
}

impl ModelRef {
    /// Parses `name@alias` or `name/version`. The model name may itself contain `@` only before
    /// the last one; it may not contain `/` (the registry's own rule).
    pub fn parse(raw: &str) -> Result<ModelRef, InvalidParameter> {
        let bad = || {
            InvalidParameter::invalid_value(
                "model",
                raw,
                "Use NAME@ALIAS (follows the alias) or NAME/VERSION (one version), e.g. churn@champion.",
            )
        };
        let (name, target) = if let Some((name, version)) = raw.rsplit_once('/') {
            let version = parse_version(version).map_err(|_| bad())?;
            if version < 1 {
                return Err(bad());
            }
            (name, ModelTarget::Version(version))
        } else if let Some((name, alias)) = raw.rsplit_once('@') {
            validate_alias(alias)?;
            (name, ModelTarget::Alias(alias.to_owned()))
        } else {
            return Err(bad());
        };
        if name.is_empty() {
            return Err(bad());
        }
        validate_model_name("model", name)?;
        Ok(ModelRef { name: name.to_owned(), target })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            ModelTarget::Alias(alias) => write!(f, "{}@{alias}", self.name),
            ModelTarget::Version(version) => write!(f, "{}/{version}", self.name),
        }
    }
}

/// One variant of a deployment: a model reference and its share of the traffic, or a shadow that
/// gets a sampled copy of requests whose answers are only compared, never returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub model: ModelRef,
    /// Share of the primary traffic, 0 to 100; the primaries' weights add up to 100. 0 for a shadow.
    pub weight: u32,
    /// For a shadow variant: the fraction of requests copied to it, in (0, 1].
    pub shadow: Option<f64>,
}

impl Variant {
    pub fn is_shadow(&self) -> bool {
        self.shadow.is_some()
    }
}

/// The model runtime a deployment's variants run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// ONNX Runtime, loaded from its shared library: the fast path for ONNX models.
    OnnxRuntime,
}

impl Runtime {
    pub const ALL: [Runtime; 1] = [Runtime::OnnxRuntime];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::OnnxRuntime => "onnxruntime",
        }
    }

    pub fn parse(raw: &str) -> Result<Runtime, InvalidParameter> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == raw).ok_or_else(|| {
            let known: Vec<&str> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
            InvalidParameter::invalid_value("runtime", raw, &format!("Known runtimes: {}.", known.join(", ")))
        })
    }
}

/// Dynamic batching, with Triton's semantics (`max_batch_size` 0 turns batching off: each request
/// runs alone, its shapes taken whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    pub max_batch_size: u32,
    /// Batch sizes to prefer when one can be formed; each at most `max_batch_size`.
    pub preferred_batch_sizes: Vec<u32>,
    pub max_queue_delay_micros: u64,
    pub max_queue_size: u32,
    /// A request still queued after this long is answered with a timeout; `None`: no limit.
    pub timeout_millis: Option<u64>,
}

impl Default for Batching {
    fn default() -> Batching {
        Batching {
            max_batch_size: 64,
            preferred_batch_sizes: Vec::new(),
            // Triton's default: no waiting; batches form from what queued while an instance ran.
            max_queue_delay_micros: 0,
            max_queue_size: 4096,
            timeout_millis: None,
        }
    }
}

/// Automatic rollback: a primary variant other than the stable one (the primary with the most
/// weight, the first declared among equals) is taken to 0% of the traffic, its share given to the
/// stable variant, when over the last `window_secs` seconds, with at least `min_requests` requests
/// to each, its error rate exceeds the stable variant's by more than `max_error_rate` (a fraction:
/// 0.01 is one percentage point) or its p99 latency exceeds the stable variant's by more than
/// `max_p99_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub window_secs: u32,
    pub min_requests: u32,
}

impl Default for Rollback {
    fn default() -> Rollback {
        Rollback { max_error_rate: None, max_p99_ms: None, window_secs: 60, min_requests: 100 }
    }
}

impl Rollback {
    /// Parses the CLI's form: comma-separated `error_rate>1%` (or `>0.01`), `p99_ms>50`,
    /// `window=60s` and `min_requests=100`, at least one threshold among them.
    pub fn parse(raw: &str) -> Result<Rollback, InvalidParameter> {
        let bad = |part: &str, why: &str| {
            InvalidParameter::invalid_value(
                "rollback",
                raw,
                &format!("{why} ('{part}'). Use e.g. error_rate>1%,p99_ms>50,window=60s,min_requests=100."),
            )
        };
        let mut out = Rollback::default();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(v) = part.strip_prefix("error_rate>") {
                let (number, scale) = match v.strip_suffix('%') {
                    Some(n) => (n, 100.0),
                    None => (v, 1.0),
                };
                let rate = number.trim().parse::<f64>().map_err(|_| bad(part, "error_rate takes a number"))? / scale;
                out.max_error_rate = Some(rate);
            } else if let Some(v) = part.strip_prefix("p99_ms>") {
                out.max_p99_ms = Some(v.trim().parse::<f64>().map_err(|_| bad(part, "p99_ms takes a number of milliseconds"))?);
            } else if let Some(v) = part.strip_prefix("window=") {
                let secs = v.trim().strip_suffix('s').unwrap_or(v.trim());
                out.window_secs = secs.parse().map_err(|_| bad(part, "window takes whole seconds"))?;
            } else if let Some(v) = part.strip_prefix("min_requests=") {
                out.min_requests = v.trim().parse().map_err(|_| bad(part, "min_requests takes a whole number"))?;
            } else {
                return Err(bad(part, "unknown condition"));
            }
        }
        out.validate()?;
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), InvalidParameter> {
        if self.max_error_rate.is_none() && self.max_p99_ms.is_none() {
            return Err(InvalidParameter::new("A rollback needs error_rate, p99_ms or both"));
        }
        if let Some(r) = self.max_error_rate
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(InvalidParameter::new(format!("rollback error_rate is a share in (0, 100%]; got {r}")));
        }
        if let Some(ms) = self.max_p99_ms
            && !(ms > 0.0 && ms <= MAX_TIMEOUT_MILLIS as f64)
        {
            return Err(InvalidParameter::new(format!("rollback p99_ms is between 0 and {MAX_TIMEOUT_MILLIS} (exclusive of 0); got {ms}")));
        }
        if !(MIN_ROLLBACK_WINDOW_SECS..=MAX_ROLLBACK_WINDOW_SECS).contains(&self.window_secs) {
            return Err(InvalidParameter::new(format!(
                "rollback window is between {MIN_ROLLBACK_WINDOW_SECS} and {MAX_ROLLBACK_WINDOW_SECS} seconds; got {}",
                self.window_secs
            )));
        }
        if self.min_requests == 0 || self.min_requests > MAX_ROLLBACK_MIN_REQUESTS {
            return Err(InvalidParameter::new(format!(
                "rollback min_requests is between 1 and {MAX_ROLLBACK_MIN_REQUESTS}; got {}",
                self.min_requests
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = self.max_error_rate {
            parts.push(format!("error_rate>{}%", r * 100.0));
        }
        if let Some(ms) = self.max_p99_ms {
            parts.push(format!("p99_ms>{ms}"));
        }
        parts.push(format!("window={}s", self.window_secs));
        parts.push(format!("min_requests={}", self.min_requests));
        f.write_str(&parts.join(","))
    }
}

/// Shortest and longest window an objective is measured over.
pub const MIN_OBJECTIVE_WINDOW_SECS: u32 = 60;
pub const MAX_OBJECTIVE_WINDOW_SECS: u32 = 30 * 86_400;

/// A deployment's service-level objective: a share `latency_percentile` of requests answered
/// within `latency_ms`, and a share `availability` of requests answered without a server-side
/// failure, over the last `window_secs`. Its attainment is readable through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub latency_ms: Option<f64>,
    /// In (0, 1): 0.99 reads "99% of requests within `latency_ms`".
    pub latency_percentile: f64,
    /// In (0, 1]: 0.999 is "three nines".
    pub availability: Option<f64>,
    pub window_secs: u32,
}

impl Default for Objective {
    fn default() -> Objective {
        Objective { latency_ms: None, latency_percentile: 0.99, availability: None, window_secs: 3600 }
    }
}

impl Objective {
    /// Parses the CLI's form: comma-separated `p99_ms<50` (any percentile: `p95_ms<20`,
    /// `p99.9_ms<80`), `availability>99.9%` (or `>0.999`) and `window=3600s`.
    pub fn parse(raw: &str) -> Result<Objective, InvalidParameter> {
        let bad = |part: &str, why: &str| {
            InvalidParameter::invalid_value(
                "objective",
                raw,
                &format!("{why} ('{part}'). Use e.g. p99_ms<50,availability>99.9%,window=3600s."),
            )
        };
        let mut out = Objective::default();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(rest) = part.strip_prefix('p')
                && let Some((pct, ms)) = rest.split_once("_ms<")
            {
                let pct: f64 = pct.parse().map_err(|_| bad(part, "the percentile takes a number"))?;
                out.latency_percentile = pct / 100.0;
                out.latency_ms = Some(ms.trim().parse().map_err(|_| bad(part, "the latency takes a number of milliseconds"))?);
            } else if let Some(v) = part.strip_prefix("availability>") {
                let (number, scale) = match v.strip_suffix('%') {
                    Some(n) => (n, 100.0),
                    None => (v, 1.0),
                };
                out.availability = Some(number.trim().parse::<f64>().map_err(|_| bad(part, "availability takes a number"))? / scale);
            } else if let Some(v) = part.strip_prefix("window=") {
                let secs = v.trim().strip_suffix('s').unwrap_or(v.trim());
                out.window_secs = secs.parse().map_err(|_| bad(part, "window takes whole seconds"))?;
            } else {
                return Err(bad(part, "unknown objective"));
            }
        }
        out.validate()?;
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), InvalidParameter> {
        if self.latency_ms.is_none() && self.availability.is_none() {
            return Err(InvalidParameter::new("An objective needs a latency (p99_ms<…), an availability, or both"));
        }
        if !(self.latency_percentile > 0.0 && self.latency_percentile < 1.0) {
            return Err(InvalidParameter::new(format!(
                "the objective's latency percentile is between 0 and 100 (exclusive); got {}",
                self.latency_percentile * 100.0
            )));
        }
        if let Some(ms) = self.latency_ms
            && !(ms > 0.0 && ms <= MAX_TIMEOUT_MILLIS as f64)
        {
            return Err(InvalidParameter::new(format!("the objective's latency is between 0 and {MAX_TIMEOUT_MILLIS} ms; got {ms}")));
        }
        if let Some(a) = self.availability
            && !(a > 0.0 && a <= 1.0)
        {
            return Err(InvalidParameter::new(format!("the objective's availability is a share in (0, 100%]; got {a}")));
        }
        if !(MIN_OBJECTIVE_WINDOW_SECS..=MAX_OBJECTIVE_WINDOW_SECS).contains(&self.window_secs) {
            return Err(InvalidParameter::new(format!(
                "the objective's window is between {MIN_OBJECTIVE_WINDOW_SECS} and {MAX_OBJECTIVE_WINDOW_SECS} seconds; got {}",
                self.window_secs
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(ms) = self.latency_ms {
            parts.push(format!("p{}_ms<{ms}", self.latency_percentile * 100.0));
        }
        if let Some(a) = self.availability {
            parts.push(format!("availability>{}%", a * 100.0));
        }
        parts.push(format!("window={}s", self.window_secs));
        f.write_str(&parts.join(","))
    }
}

/// A value served for a feature whose online value is missing or stale.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDefault {
    pub feature: String,
    pub value: f64,
}

/// Most feature defaults one deployment declares.
pub const MAX_FEATURE_DEFAULTS: usize = 1000;

/// What a user declares for a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    pub description: Option<String>,
    pub variants: Vec<Variant>,
    pub runtime: Runtime,
    pub batching: Batching,
    /// Model instances per variant.
    pub instances: u32,
    /// Threads per instance inside an operator.
    pub threads: u32,
    /// The feature service whose online features requests are completed with.
    pub feature_service: Option<String>,
    /// Automatic rollback of variants that do worse than the stable one.
    pub rollback: Option<Rollback>,
    /// The fraction of requests whose inputs the prediction log keeps, in (0, 1]; `None`: none.
    pub log_inputs: Option<f64>,
    /// Values served for features that are missing or stale; a feature without one is refused.
    pub feature_defaults: Vec<FeatureDefault>,
    /// The latency and availability objective whose attainment the API reports.
    pub objective: Option<Objective>,
}

impl DeploymentSpec {
    /// `variants` with the default options.
    pub fn with_variants(variants: Vec<Variant>) -> DeploymentSpec {
        DeploymentSpec {
            description: None,
            variants,
            runtime: Runtime::OnnxRuntime,
            batching: Batching::default(),
            instances: 1,
            threads: 1,
            feature_service: None,
            rollback: None,
            log_inputs: None,
            feature_defaults: Vec::new(),
            objective: None,
        }
    }

    /// One variant named after its model's target, all the traffic, default options.
    pub fn single(model: ModelRef) -> DeploymentSpec {
        let name = match &model.target {
            ModelTarget::Alias(alias) => alias.clone(),
            ModelTarget::Version(version) => format!("v{version}"),
        };
        DeploymentSpec::with_variants(vec![Variant { name, model, weight: TOTAL_WEIGHT, shadow: None }])
    }

    /// Every rule at once; the first broken one is the error.
    pub fn validate(&self) -> Result<(), InvalidParameter> {
        if let Some(d) = &self.description {
            check_length("description", MAX_DESCRIPTION_LENGTH, d)?;
        }
        if self.variants.is_empty() {
            return Err(InvalidParameter::new("A deployment needs at least one variant"));
        }
        if self.variants.len() > MAX_VARIANTS {
            return Err(InvalidParameter::new(format!("A deployment has at most {MAX_VARIANTS} variants (got {})", self.variants.len())));
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.variants.len());
        let mut total = 0u32;
        for v in &self.variants {
            validate_name("variant name", &v.name)?;
            if names.contains(&v.name.as_str()) {
                return Err(InvalidParameter::new(format!("Variant '{}' is declared twice", v.name)));
            }
            names.push(&v.name);
            match v.shadow {
                Some(fraction) => {
                    if !(fraction > 0.0 && fraction <= 1.0) {
                        return Err(InvalidParameter::new(format!(
                            "Shadow variant '{}' copies a fraction of requests in (0, 1]; got {fraction}",
                            v.name
                        )));
                    }
                    if v.weight != 0 {
                        return Err(InvalidParameter::new(format!(
                            "Shadow variant '{}' takes no traffic weight; got {}",
                            v.name, v.weight
                        )));
                    }
                }
                None => {
                    if v.weight > TOTAL_WEIGHT {
                        return Err(InvalidParameter::new(format!(
                            "Variant '{}' has weight {}; weights are 0 to {TOTAL_WEIGHT}",
                            v.name, v.weight
                        )));
                    }
                    total += v.weight;
                }
            }
        }
        if !self.variants.iter().any(|v| !v.is_shadow()) {
            return Err(InvalidParameter::new("A deployment needs at least one variant that is not a shadow"));
        }
        if total != TOTAL_WEIGHT {
            return Err(InvalidParameter::new(format!(
                "The weights of the variants that are not shadows add up to {total}; they must add up to {TOTAL_WEIGHT}"
            )));
        }
        let b = &self.batching;
        if b.max_batch_size > MAX_BATCH_SIZE {
            return Err(InvalidParameter::new(format!("max_batch_size is at most {MAX_BATCH_SIZE} (got {})", b.max_batch_size)));
        }
        if let Some(p) = b.preferred_batch_sizes.iter().find(|p| **p == 0 || **p > b.max_batch_size) {
            return Err(InvalidParameter::new(format!(
                "preferred_batch_size {p} must be between 1 and max_batch_size ({})",
                b.max_batch_size
            )));
        }
        if b.max_queue_delay_micros > MAX_QUEUE_DELAY_MICROS {
            return Err(InvalidParameter::new(format!(
                "max_queue_delay_microseconds is at most {MAX_QUEUE_DELAY_MICROS} (got {})",
                b.max_queue_delay_micros
            )));
        }
        if b.max_queue_size == 0 || b.max_queue_size > MAX_QUEUE_SIZE {
            return Err(InvalidParameter::new(format!("max_queue_size must be between 1 and {MAX_QUEUE_SIZE} (got {})", b.max_queue_size)));
        }
        if let Some(t) = b.timeout_millis
            && (t == 0 || t > MAX_TIMEOUT_MILLIS)
        {
            return Err(InvalidParameter::new(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MILLIS} (got {t})")));
        }
        if self.instances == 0 || self.instances > MAX_INSTANCES {
            return Err(InvalidParameter::new(format!("instances must be between 1 and {MAX_INSTANCES} (got {})", self.instances)));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(InvalidParameter::new(format!("threads must be between 1 and {MAX_THREADS} (got {})", self.threads)));
        }
        if let Some(fs) = &self.feature_service {
            validate_name("feature_service", fs)?;
        }
        if let Some(r) = &self.rollback {
            r.validate()?;
        }
        if let Some(f) = self.log_inputs
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(InvalidParameter::new(format!(
                "log_inputs is the fraction of requests whose inputs are logged, in (0, 1]; got {f}"
            )));
        }
        if let Some(o) = &self.objective {
            o.validate()?;
        }
        if !self.feature_defaults.is_empty() && self.feature_service.is_none() {
            return Err(InvalidParameter::new("feature_defaults need a feature_service"));
        }
        if self.feature_defaults.len() > MAX_FEATURE_DEFAULTS {
            return Err(InvalidParameter::new(format!(
                "at most {MAX_FEATURE_DEFAULTS} feature_defaults (got {})",
                self.feature_defaults.len()
            )));
        }
        for (i, d) in self.feature_defaults.iter().enumerate() {
            if d.feature.is_empty() || d.feature.len() > 255 {
                return Err(InvalidParameter::new("a feature default names a feature of 1 to 255 bytes"));
            }
            if !d.value.is_finite() {
                return Err(InvalidParameter::new(format!("the default of feature '{}' must be a finite number", d.feature)));
            }
            if self.feature_defaults[..i].iter().any(|e| e.feature == d.feature) {
                return Err(InvalidParameter::new(format!("feature '{}' has two defaults", d.feature)));
            }
        }
        Ok(())
    }

    /// The stable variant automatic rollback compares the others with: the primary with the most
    /// weight, the first declared among equals.
    pub fn stable_variant(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (idx, v) in self.variants.iter().enumerate() {
            if v.is_shadow() {
                continue;
            }
            if best.is_none_or(|b| v.weight > self.variants[b].weight) {
                best = Some(idx);
            }
        }
        best
    }

    /// This spec with `variant`'s traffic given to the stable variant (a rollback); `None` when
    /// `variant` is the stable one, a shadow, or has no traffic.
    pub fn rolled_back(&self, variant: usize) -> Option<DeploymentSpec> {
        let stable = self.stable_variant()?;
        let v = self.variants.get(variant)?;
        if variant == stable || v.is_shadow() || v.weight == 0 {
            return None;
        }
        let mut out = self.clone();
        out.variants[stable].weight += v.weight;
        out.variants[variant].weight = 0;
        Some(out)
    }
}

/// A stored deployment: its spec, and the generation every change bumps (serving nodes follow it;
/// an update names the generation it read, as a compare-and-set).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    pub spec: DeploymentSpec,
    pub generation: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(variants: Vec<(&str, &str, u32, Option<f64>)>) -> DeploymentSpec {
        let mut s = DeploymentSpec::single(ModelRef::parse("m@champion").expect("ref"));
        s.variants = variants
            .into_iter()
            .map(|(name, model, weight, shadow)| Variant { name: name.into(), model: ModelRef::parse(model).expect("ref"), weight, shadow })
            .collect();
        s
    }

    #[test]
    fn model_references_parse_and_print() {
        for (raw, name, target) in [
            ("churn@champion", "churn", ModelTarget::Alias("champion".into())),
            ("churn/7", "churn", ModelTarget::Version(7)),
            ("team@x@prod", "team@x", ModelTarget::Alias("prod".into())),
        ] {
            let r = ModelRef::parse(raw).expect(raw);
            assert_eq!((r.name.as_str(), &r.target), (name, &target), "{raw}");
            assert_eq!(r.to_string(), raw);
        }
        for raw in
            ["churn", "churn/", "churn/x", "churn/0", "churn/-1", "@champion", "/3", "churn@", "churn@bad alias", "churn@latest", "a/b/3"]
        {
            assert!(ModelRef::parse(raw).is_err(), "{raw} should be refused");
        }
    }

    #[test]
    fn names_follow_the_url_safe_rule() {
        for ok in ["churn", "churn-v2", "a.b_c", "9lives"] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a%b", "é", &"x".repeat(65)] {
            assert!(validate_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn specs_are_checked_rule_by_rule() {
        let check = |s: DeploymentSpec, want: Option<&str>| match (s.validate(), want) {
            (Ok(()), None) => {}
            (Err(e), Some(text)) => assert!(e.to_string().contains(text), "{e} should mention {text}"),
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        };
        check(spec(vec![("a", "m@champion", 100, None)]), None);
        check(spec(vec![("a", "m@champion", 90, None), ("b", "m@challenger", 10, None)]), None);
        check(spec(vec![("a", "m@champion", 100, None), ("s", "m/3", 0, Some(0.25))]), None);
        check(spec(vec![]), Some("at least one variant"));
        check(spec(vec![("a", "m@champion", 90, None)]), Some("add up to 90"));
        check(spec(vec![("a", "m@champion", 60, None), ("a", "m/2", 40, None)]), Some("declared twice"));
        check(spec(vec![("a", "m@champion", 100, None), ("s", "m/3", 0, Some(0.0))]), Some("(0, 1]"));
        check(spec(vec![("a", "m@champion", 100, None), ("s", "m/3", 0, Some(1.5))]), Some("(0, 1]"));
        check(spec(vec![("a", "m@champion", 100, None), ("s", "m/3", 5, Some(0.5))]), Some("no traffic weight"));
        check(spec(vec![("s", "m/3", 0, Some(0.5))]), Some("not a shadow"));
        check(spec(vec![("a", "m@champion", 101, None)]), Some("weights are 0 to 100"));
        check(spec((0..9).map(|_| ("a", "m@champion", 0, None)).collect()), Some("at most 8 variants"));
        let mut s = spec(vec![("a", "m@champion", 100, None)]);
        s.batching.preferred_batch_sizes = vec![128];
        check(s.clone(), Some("preferred_batch_size 128"));
        s.batching = Batching { max_batch_size: 2000, ..Batching::default() };
        check(s.clone(), Some("max_batch_size is at most"));
        s.batching = Batching { max_queue_size: 0, ..Batching::default() };
        check(s.clone(), Some("max_queue_size"));
        s.batching = Batching { timeout_millis: Some(0), ..Batching::default() };
        check(s.clone(), Some("timeout_ms"));
        s.batching = Batching::default();
        s.instances = 0;
        check(s.clone(), Some("instances"));
        s.instances = 1;
        s.threads = 65;
        check(s.clone(), Some("threads"));
        s.threads = 1;
        s.feature_service = Some("bad name".into());
        check(s.clone(), Some("feature_service"));
        s.feature_service = None;
        s.log_inputs = Some(1.5);
        check(s.clone(), Some("log_inputs"));
        s.log_inputs = Some(0.25);
        check(s.clone(), None);
        s.feature_defaults = vec![FeatureDefault { feature: "f".into(), value: 0.0 }];
        check(s.clone(), Some("need a feature_service"));
        s.feature_service = Some("churn".into());
        check(s.clone(), None);
        s.feature_defaults.push(FeatureDefault { feature: "f".into(), value: 1.0 });
        check(s.clone(), Some("two defaults"));
        s.feature_defaults = vec![FeatureDefault { feature: "g".into(), value: f64::NAN }];
        check(s, Some("finite"));
    }

    #[test]
    fn rollback_conditions_parse_print_and_check() {
        let r = Rollback::parse("error_rate>1%, p99_ms>50").expect("valid");
        assert_eq!(r, Rollback { max_error_rate: Some(0.01), max_p99_ms: Some(50.0), window_secs: 60, min_requests: 100 });
        assert_eq!(Rollback::parse(&r.to_string()).expect("round trip"), r);
        let r = Rollback::parse("error_rate>0.05,window=30s,min_requests=20").expect("valid");
        assert_eq!((r.max_error_rate, r.max_p99_ms, r.window_secs, r.min_requests), (Some(0.05), None, 30, 20));
        for (bad, why) in [
            ("", "error_rate, p99_ms or both"),
            ("window=60s", "error_rate, p99_ms or both"),
            ("error_rate>x", "takes a number"),
            ("error_rate>150%", "(0, 100%]"),
            ("error_rate>0", "(0, 100%]"),
            ("p99_ms>-1", "p99_ms"),
            ("p99_ms>50,window=1s", "window"),
            ("p99_ms>50,min_requests=0", "min_requests"),
            ("latency>5", "unknown condition"),
        ] {
            let err = Rollback::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(why), "{bad}: {err} should mention {why}");
        }
    }

    #[test]
    fn objectives_parse_print_and_check() {
        let o = Objective::parse("p99_ms<50,availability>99.9%").expect("valid");
        assert_eq!((o.latency_ms, o.latency_percentile, o.window_secs), (Some(50.0), 0.99, 3600));
        assert!((o.availability.expect("availability") - 0.999).abs() < 1e-12);
        assert_eq!(Objective::parse(&o.to_string()).expect("round trip"), o);
        let o = Objective::parse("p95_ms<20,window=600s").expect("valid");
        assert!((o.latency_percentile - 0.95).abs() < 1e-12);
        for (bad, why) in [
            ("window=600s", "a latency"),
            ("p100_ms<5", "percentile"),
            ("p99_ms<0", "latency is between"),
            ("availability>120%", "availability is a share"),
            ("p99_ms<5,window=10s", "window is between"),
            ("throughput>5", "unknown objective"),
        ] {
            let err = Objective::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(why), "{bad}: {err} should mention {why}");
        }
    }

    #[test]
    fn a_rollback_gives_the_variant_s_share_to_the_stable_one() {
        let s = spec(vec![("a", "m@champion", 80, None), ("b", "m@challenger", 20, None), ("s", "m/3", 0, Some(0.5))]);
        assert_eq!(s.stable_variant(), Some(0));
        let back = s.rolled_back(1).expect("rolled back");
        assert_eq!(back.variants.iter().map(|v| v.weight).collect::<Vec<_>>(), vec![100, 0, 0]);
        assert!(back.validate().is_ok());
        assert_eq!(s.rolled_back(0), None, "the stable variant is never rolled back");
        assert_eq!(s.rolled_back(2), None, "a shadow has no traffic to give");
        assert_eq!(back.rolled_back(1), None, "nothing left to give");
        let even = spec(vec![("a", "m@champion", 50, None), ("b", "m@challenger", 50, None)]);
        assert_eq!(even.stable_variant(), Some(0), "the first declared among equals");
    }

    #[test]
    fn runtimes_parse_by_name() {
        assert_eq!(Runtime::parse("onnxruntime").expect("known"), Runtime::OnnxRuntime);
        assert!(Runtime::parse("tensorflow").expect_err("unknown").to_string().contains("onnxruntime"));
    }
}
