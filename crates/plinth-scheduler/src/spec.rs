//! A job's spec as people write it: the API's JSON body and the TOML of job and sweep files (the
//! same fields), read into a `JobSpec` with quantities in their units (`cpus = "500m"`,
//! `memory = "8Gi"`) and the retry policy's defaults. Unknown fields are refused.

use std::collections::BTreeMap;

use plinth_core::jobs::{ExitCause, JobSpec, Resources, Retry, parse_cpu, parse_memory};
use plinth_core::validation::InvalidParameter;
use serde::Deserialize;
use serde_json::Value;

/// Reads a job body (JSON, or TOML turned into JSON): the spec and the idempotency key.
pub fn job_spec(body: Value) -> Result<(JobSpec, Option<String>), InvalidParameter> {
    let body: JobBody = serde_json::from_value(body).map_err(|e| InvalidParameter::new(format!("Invalid job: {e}")))?;
    spec_of(body)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ResourcesBody {
    /// A number of CPUs (`4`, `0.5`) or text (`"500m"`).
    cpus: Option<Value>,
    /// Bytes as a number, or text with a unit (`"8Gi"`).
    memory: Option<Value>,
    gpus: Option<u64>,
    gpu_flavor: Option<String>,
    custom: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetryBody {
    max: Option<u32>,
    backoff_secs: Option<u64>,
    on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobBody {
    #[serde(default)]
    name: Option<String>,
    command: Vec<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    resources: ResourcesBody,
    #[serde(default)]
    workers: Option<u32>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    retries: RetryBody,
    #[serde(default)]
    priority: Option<i32>,
    queue: String,
    #[serde(default)]
    experiment: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn quantity(value: &Value, parse: fn(&str) -> Result<u64, InvalidParameter>) -> Result<u64, InvalidParameter> {
    match value {
        Value::String(text) => parse(text),
        Value::Number(n) => parse(&n.to_string()),
        other => parse(&other.to_string()),
    }
}

fn spec_of(body: JobBody) -> Result<(JobSpec, Option<String>), InvalidParameter> {
    let r = body.resources;
    let resources = Resources {
        cpu_millis: r.cpus.as_ref().map(|v| quantity(v, parse_cpu)).transpose()?.unwrap_or(0),
        memory_bytes: r.memory.as_ref().map(|v| quantity(v, parse_memory)).transpose()?.unwrap_or(0),
        gpus: r.gpus.unwrap_or(0),
        gpu_flavor: r.gpu_flavor,
        custom: r.custom,
    };
    let defaults = Retry::default();
    let retry = Retry {
        max_retries: body.retries.max.unwrap_or(defaults.max_retries),
        backoff_secs: body.retries.backoff_secs.unwrap_or(defaults.backoff_secs),
        on: match body.retries.on {
            Some(list) => list.iter().map(|c| ExitCause::parse(c)).collect::<Result<_, _>>()?,
            None => defaults.on,
        },
    };
    let spec = JobSpec {
        name: body.name,
        command: body.command,
        code: body.code,
        env: body.env,
        resources,
        workers: body.workers.unwrap_or(1),
        timeout_secs: body.timeout_secs,
        retry,
        priority: body.priority.unwrap_or(0),
        queue: body.queue,
        experiment: body.experiment,
        tags: body.tags,
    };
    Ok((spec, body.idempotency_key))
}
