//! `plinth deployments …`: serving deployments on a running server (`/api/plinth/v1/deployments`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Client, Connection, enc, print};

#[derive(Subcommand)]
pub(crate) enum DeploymentsCommand {
    /// Create a deployment; its models are loaded and warmed before it is stored.
    Create {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Change a deployment: `--variant` and `--shadow` add or replace variants by name, `--remove-variant` removes one, `--traffic` sets the weights.
    Update {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Deployments, by name, with their variants' states.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One deployment.
    Get { name: String },
    /// Stop serving a deployment and delete it.
    Delete { name: String },
    /// How a deployment meets its latency and availability objective (as the answering node served it).
    Objective { name: String },
}

#[derive(Args)]
pub(crate) struct SpecArgs {
    /// One variant taking all the traffic: NAME@ALIAS (follows the alias) or NAME/VERSION.
    #[arg(long, conflicts_with = "variant")]
    model: Option<String>,
    /// A variant as VARIANT=MODEL_REFERENCE (repeat for several; weights with --traffic).
    #[arg(long)]
    variant: Vec<String>,
    /// A shadow variant as VARIANT=MODEL_REFERENCE:FRACTION (the fraction of requests copied to it).
    #[arg(long)]
    shadow: Vec<String>,
    /// On update: a variant to remove, by name (repeat for several).
    #[arg(long)]
    remove_variant: Vec<String>,
    /// Weights as VARIANT=WEIGHT,… adding up to 100, e.g. champion=90,challenger=10 (a primary
    /// left out gets 0).
    #[arg(long)]
    traffic: Option<String>,
    /// Automatic rollback: take a variant out of the traffic when it does worse than the stable
    /// one, e.g. "error_rate>1%,p99_ms>50" (also window=60s, min_requests=100).
    #[arg(long, conflicts_with = "no_rollback")]
    rollback_on: Option<String>,
    /// On update: stop rolling back automatically.
    #[arg(long)]
    no_rollback: bool,
    /// The latency and availability objective, e.g. "p99_ms<50,availability>99.9%,window=3600s";
    /// read its attainment with `plinth deployments objective NAME`.
    #[arg(long, conflicts_with = "no_objective")]
    objective: Option<String>,
    /// On update: remove the objective.
    #[arg(long)]
    no_objective: bool,
    /// A value for a feature that is missing or stale, as FEATURE=NUMBER (repeat for several; with
    /// --feature-service). A feature without one is refused when missing.
    #[arg(long)]
    feature_default: Vec<String>,
    /// The fraction of requests whose inputs the prediction log keeps (0: none).
    #[arg(long)]
    log_inputs: Option<f64>,
    #[arg(long)]
    runtime: Option<String>,
    #[arg(long)]
    max_batch_size: Option<u32>,
    /// Preferred batch sizes, comma-separated.
    #[arg(long)]
    preferred_batch_size: Option<String>,
    #[arg(long)]
    max_queue_delay_us: Option<u64>,
    #[arg(long)]
    max_queue_size: Option<u32>,
    /// Per-request timeout in the queue, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Model instances per variant.
    #[arg(long)]
    instances: Option<u32>,
    /// Threads per instance.
    #[arg(long)]
    threads: Option<u32>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    feature_service: Option<String>,
}

fn pairs(raw: &str, what: &str) -> anyhow::Result<Vec<(String, String)>> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').with_context(|| format!("{what} '{p}' is not NAME=VALUE"))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The request body the flags describe; `current` is the deployment an update starts from.
fn body(spec: SpecArgs, current: Option<&Value>) -> anyhow::Result<Value> {
    let mut out = Map::new();
    let weights: Vec<(String, u32)> = match &spec.traffic {
        Some(t) => pairs(t, "--traffic")?
            .into_iter()
            .map(|(k, v)| Ok((k, v.parse::<u32>().with_context(|| format!("--traffic: '{v}' is not a weight from 0 to 100"))?)))
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    let weight_of = |name: &str| weights.iter().find(|(k, _)| k == name).map(|(_, w)| *w);
    if let Some(model) = spec.model {
        out.insert("model".into(), json!(model));
    }
    // An update starts from the deployment's own variants: --variant and --shadow add or replace
    // by name, --remove-variant removes, --traffic sets every primary's weight (unlisted: 0).
    let mut variants: Vec<Value> = Vec::new();
    if let Some(current) = current.filter(|_| !out.contains_key("model")) {
        for v in current["variants"].as_array().into_iter().flatten() {
            let mut variant = json!({"name": v["name"], "model": v["model"]});
            match v.get("shadow") {
                Some(fraction) if !fraction.is_null() => variant["shadow"] = fraction.clone(),
                _ => variant["weight"] = v["weight"].clone(),
            }
            variants.push(variant);
        }
    }
    let position = |variants: &[Value], name: &str| variants.iter().position(|v| v["name"].as_str() == Some(name));
    for name in &spec.remove_variant {
        let Some(idx) = position(&variants, name) else { bail!("--remove-variant: the deployment has no variant '{name}'") };
        variants.remove(idx);
    }
    let upsert = |variants: &mut Vec<Value>, variant: Value| match position(variants, variant["name"].as_str().unwrap_or_default()) {
        Some(idx) => variants[idx] = variant,
        None => variants.push(variant),
    };
    for v in &spec.variant {
        let (name, model) = v.split_once('=').with_context(|| format!("--variant '{v}' is not VARIANT=MODEL"))?;
        let kept = position(&variants, name).and_then(|i| variants[i].get("weight").and_then(Value::as_u64));
        let weight = weight_of(name).map(u64::from).or(kept).unwrap_or(0);
        upsert(&mut variants, json!({"name": name, "model": model, "weight": weight}));
    }
    for s in &spec.shadow {
        let (name, rest) = s.split_once('=').with_context(|| format!("--shadow '{s}' is not VARIANT=MODEL:FRACTION"))?;
        let (model, fraction) = rest.rsplit_once(':').with_context(|| format!("--shadow '{s}' has no :FRACTION"))?;
        let fraction: f64 = fraction.parse().with_context(|| format!("--shadow: '{fraction}' is not a fraction"))?;
        upsert(&mut variants, json!({"name": name, "model": model, "shadow": fraction}));
    }
    if spec.traffic.is_some() {
        if variants.is_empty() {
            bail!("--traffic needs --variant on create");
        }
        for v in variants.iter_mut().filter(|v| v.get("shadow").is_none()) {
            v["weight"] = json!(weight_of(v["name"].as_str().unwrap_or_default()).unwrap_or(0));
        }
    } else if current.is_none() && variants.iter().filter(|v| v.get("shadow").is_none()).count() == 1 {
        // One primary on create: all the traffic.
        if let Some(v) = variants.iter_mut().find(|v| v.get("shadow").is_none()) {
            v["weight"] = json!(100);
        }
    }
    let touched = !spec.variant.is_empty() || !spec.shadow.is_empty() || !spec.remove_variant.is_empty() || spec.traffic.is_some();
    if touched {
        out.insert("variants".into(), Value::Array(variants));
    }
    if !spec.feature_default.is_empty() {
        let mut defaults = Map::new();
        for d in &spec.feature_default {
            let (feature, value) = d.split_once('=').with_context(|| format!("--feature-default '{d}' is not FEATURE=NUMBER"))?;
            let value: f64 = value.trim().parse().with_context(|| format!("--feature-default: '{value}' is not a number"))?;
            defaults.insert(feature.trim().to_owned(), json!(value));
        }
        out.insert("feature_defaults".into(), Value::Object(defaults));
    }
    // A policy given sets it; its --no-… flag clears it (null); neither leaves it as it is.
    for (key, given, clear) in [("objective", &spec.objective, spec.no_objective), ("rollback", &spec.rollback_on, spec.no_rollback)] {
        match (given, clear) {
            (Some(text), _) => {
                out.insert(key.into(), json!(text));
            }
            (None, true) => {
                out.insert(key.into(), Value::Null);
            }
            (None, false) => {}
        }
    }
    let mut batching = Map::new();
    if let Some(v) = spec.max_batch_size {
        batching.insert("max_batch_size".into(), json!(v));
    }
    if let Some(v) = &spec.preferred_batch_size {
        let sizes: Vec<u32> = v
            .split(',')
            .map(|s| s.trim().parse::<u32>().with_context(|| format!("--preferred-batch-size: '{s}'")))
            .collect::<anyhow::Result<_>>()?;
        batching.insert("preferred_batch_size".into(), json!(sizes));
    }
    if let Some(v) = spec.max_queue_delay_us {
        batching.insert("max_queue_delay_microseconds".into(), json!(v));
    }
    if let Some(v) = spec.max_queue_size {
        batching.insert("max_queue_size".into(), json!(v));
    }
    if let Some(v) = spec.timeout_ms {
        batching.insert("timeout_ms".into(), json!(v));
    }
    if !batching.is_empty() {
        out.insert("batching".into(), Value::Object(batching));
    }
    for (key, value) in [
        ("runtime", spec.runtime.map(Value::from)),
        ("instances", spec.instances.map(Value::from)),
        ("threads", spec.threads.map(Value::from)),
        ("description", spec.description.map(Value::from)),
        ("feature_service", spec.feature_service.map(Value::from)),
        ("log_inputs", spec.log_inputs.map(Value::from)),
    ] {
        if let Some(value) = value {
            out.insert(key.into(), value);
        }
    }
    Ok(Value::Object(out))
}

pub(crate) fn run(conn: &Connection, command: DeploymentsCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let value = match command {
        DeploymentsCommand::Create { name, spec } => {
            let mut body = body(spec, None)?;
            body["name"] = json!(name);
            c.call(Method::POST, "/deployments", &[], Some(body))?
        }
        DeploymentsCommand::Update { name, spec } => {
            let current = c.call(Method::GET, &format!("/deployments/{}", enc(&name)), &[], None)?;
            let mut body = body(spec, Some(&current["deployment"]))?;
            // A compare-and-set on what was read: a concurrent change is refused, not overwritten.
            body["generation"] = current["deployment"]["generation"].clone();
            c.call(Method::PATCH, &format!("/deployments/{}", enc(&name)), &[], Some(body))?
        }
        DeploymentsCommand::List { limit } => c.call(Method::GET, "/deployments", &[("max_results", limit.to_string())], None)?,
        DeploymentsCommand::Get { name } => c.call(Method::GET, &format!("/deployments/{}", enc(&name)), &[], None)?,
        DeploymentsCommand::Delete { name } => c.call(Method::DELETE, &format!("/deployments/{}", enc(&name)), &[], None)?,
        DeploymentsCommand::Objective { name } => c.call(Method::GET, &format!("/deployments/{}/objective", enc(&name)), &[], None)?,
    };
    print(&value)
}
