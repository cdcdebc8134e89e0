//! Plinth's configuration: one typed `plinth.toml`, then `PLINTH__SECTION__KEY` environment
//! variables, then a few command-line flags, over built-in defaults.
//!
//! Unknown keys are errors. `Config::validate` reports every problem at once, before any port
//! is opened. `Config::reference_toml` renders the commented defaults (`plinth config print-default`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub database: DatabaseSection,
    pub artifacts: ArtifactsSection,
    pub tracking: TrackingSection,
    pub registry: RegistrySection,
    pub webhooks: WebhooksSection,
    pub auth: AuthSection,
    pub features: FeaturesSection,
    pub serving: ServingSection,
    pub jobs: JobsSection,
}

/// A secret from the configuration: never printed, never in `Debug`. Any scalar is taken as its
/// text, so a numeric password given as `PLINTH__AUTH__…=123…` (read as a TOML integer) neither
/// fails nor shows up in a type error.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        match toml::Value::deserialize(d) {
            Ok(toml::Value::String(s)) => Ok(Secret(s)),
            Ok(toml::Value::Integer(i)) => Ok(Secret(i.to_string())),
            Ok(toml::Value::Float(f)) => Ok(Secret(f.to_string())),
            Ok(toml::Value::Boolean(b)) => Ok(Secret(b.to_string())),
            _ => Err(serde::de::Error::custom("a secret must be a string")),
        }
    }
}

/// Serialized only as whether it is set, never as its value.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(empty)" } else { "Secret(***)" })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Require credentials (HTTP Basic with a password or token, or a Bearer token) on every request.
    pub enabled: bool,
    /// With no enabled admin in the database, create this admin on start, with
    /// `bootstrap_admin_password` (set it through `PLINTH__AUTH__BOOTSTRAP_ADMIN_PASSWORD`).
    pub bootstrap_admin: String,
    pub bootstrap_admin_password: Secret,
    /// Failed sign-ins allowed per user name, and per source address, within `failure_window_secs`.
    pub max_failures_per_user: u32,
    pub max_failures_per_address: u32,
    pub failure_window_secs: u64,
    /// Longest token lifetime; 0 allows tokens that never expire.
    pub max_token_ttl_secs: i64,
}

impl Default for AuthSection {
    fn default() -> AuthSection {
        AuthSection {
            enabled: false,
            bootstrap_admin: "admin".into(),
            bootstrap_admin_password: Secret::default(),
            max_failures_per_user: 10,
            max_failures_per_address: 100,
            failure_window_secs: 300,
            max_token_ttl_secs: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub host: String,
    /// Serve a non-loopback address with auth off. Refused otherwise: anyone who can reach the
    /// port would read and change everything.
    pub allow_unauthenticated: bool,
    /// Port to listen on; 0 picks a free one (the readiness line tells which).
    pub port: u16,
    /// Directory for the embedded defaults: the SQLite database, artifacts, staging files.
    pub data_dir: PathBuf,
    /// Largest accepted JSON request body in bytes; artifact uploads are streamed and unbounded.
    pub max_request_bytes: usize,
    /// How long in-flight requests may run after SIGINT/SIGTERM before the server stops anyway.
    pub shutdown_grace_secs: u64,
    /// Below this much free space (MiB) on the data directory's or artifact destination's file
    /// system, `GET /ready` answers 503 and `plinth_storage_full` is 1.
    pub min_free_space_mb: u64,
    /// How often the free space is measured, in seconds.
    pub storage_check_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSynchronous {
    /// Every commit is fsynced: survives power loss.
    Full,
    /// Commits survive a process crash (`kill -9`) but not a power loss; faster.
    Normal,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`; empty means `<data_dir>/plinth.db`.
    pub url: String,
    /// Connection pool size (SQLite: readers; writes use one connection).
    pub max_connections: u32,
    /// How long a request waits for a connection before `TEMPORARILY_UNAVAILABLE`.
    pub acquire_timeout_secs: u64,
    /// SQLite durability: `full` or `normal`.
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsSection {
    /// Root of new experiments' artifact locations. Empty or `mlflow-artifacts:/` proxies artifacts through
    /// the server; any other URI (`s3://…`, `file://…`) is handed to clients, which write there themselves.
    pub default_artifact_root: Option<String>,
    /// Where proxied artifacts are stored: a directory path or `file://` URI; empty means `<data_dir>/artifacts`.
    pub destination: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSection {
    /// Truncate over-long param (6000) and tag (8000) values instead of refusing them, as MLflow does.
    pub truncate_long_values: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    /// How long a promotion request stays open when the requester names no TTL.
    pub promotion_ttl_secs: i64,
    /// The longest TTL a requester may ask for.
    pub max_promotion_ttl_secs: i64,
}

impl Default for RegistrySection {
    fn default() -> RegistrySection {
        RegistrySection { promotion_ttl_secs: 7 * 86_400, max_promotion_ttl_secs: 90 * 86_400 }
    }
}

/// A GPU of this host that jobs may be given (`[[jobs.gpus]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEntry {
    /// The device's index, as `CUDA_VISIBLE_DEVICES` names it.
    pub index: u32,
    /// Its flavor, as the queue configuration names it (`gpu-a100`).
    pub flavor: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// Whether this server schedules and runs training jobs (docs/jobs.md).
    pub enabled: bool,
    /// The tracking URI jobs log to (`MLFLOW_TRACKING_URI`); empty: this server's own address
    /// (loopback when it listens on every interface).
    pub tracking_uri: String,
    /// How often the scheduler wakes on its own (retries after their backoff, waiting launches), in milliseconds.
    pub tick_ms: u64,
    /// How long a stopped job (cancelled, preempted, timed out) gets between SIGTERM and SIGKILL, in milliseconds.
    pub stop_grace_ms: u64,
    /// The most output kept per attempt, in MiB; past it, output is dropped with a note.
    pub max_log_mb: u64,
    /// How often a running job's memory is sampled against its limit, in milliseconds.
    pub sample_interval_ms: u64,
    /// How often a running job's CPU and memory use are logged into its run as MLflow's system
    /// metrics (`system/cpu_utilization_percentage`, …), in milliseconds; 0: never.
    pub system_metrics_interval_ms: u64,
    /// Largest code archive a job may carry (`plinth jobs submit --code DIR`), in MiB.
    pub max_code_mb: u64,
    /// Variables of the server's environment a job starts with (nothing else is inherited).
    pub inherit_env: Vec<String>,
    /// The GPUs of this host jobs may be given; none by default.
    pub gpus: Vec<GpuEntry>,
}

impl Default for JobsSection {
    fn default() -> JobsSection {
        JobsSection {
            enabled: true,
            tracking_uri: String::new(),
            tick_ms: 1000,
            stop_grace_ms: 5000,
            max_log_mb: 1024,
            sample_interval_ms: 100,
            max_code_mb: 512,
            system_metrics_interval_ms: 10_000,
            inherit_env: ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            gpus: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSection {
    /// ONNX Runtime's shared library (`libonnxruntime.so…`); empty: `ORT_DYLIB_PATH`, then the
    /// `onnxruntime` package of the `python3` on `PATH` (docs/serving.md).
    pub onnxruntime_library: String,
    /// Where deployed models' files are kept, one directory per model version; empty:
    /// `<data_dir>/serving/models`.
    pub model_cache_dir: String,
    /// How often deployments are checked against the registry (an alias moved) and the store
    /// (changed elsewhere), in milliseconds.
    pub follow_interval_ms: u64,
    /// Whether every prediction is appended to the prediction log (Parquet, docs/serving.md).
    pub prediction_log: bool,
    /// Where the prediction log is written; empty: `<data_dir>/serving/predictions`.
    pub prediction_log_dir: String,
    /// A log file is closed (and becomes readable) after this many seconds; a crash loses at most this much.
    pub prediction_log_roll_secs: u64,
    /// A log file is closed when it reaches this size, in MiB.
    pub prediction_log_max_file_mb: u64,
    /// Predictions queued for the writer before new ones are dropped (and counted).
    pub prediction_log_buffer: u64,
}

impl Default for ServingSection {
    fn default() -> ServingSection {
        ServingSection {
            onnxruntime_library: String::new(),
            model_cache_dir: String::new(),
            follow_interval_ms: 1000,
            prediction_log: true,
            prediction_log_dir: String::new(),
            prediction_log_roll_secs: 300,
            prediction_log_max_file_mb: 128,
            prediction_log_buffer: 65_536,
        }
    }
}

impl ServingSection {
    pub fn onnxruntime_library(&self) -> Option<std::path::PathBuf> {
        (!self.onnxruntime_library.trim().is_empty()).then(|| std::path::PathBuf::from(self.onnxruntime_library.trim()))
    }

    pub fn prediction_log(&self, data_dir: &std::path::Path) -> Option<plinth_serving::predictions::PredictionLogConfig> {
        self.prediction_log.then(|| plinth_serving::predictions::PredictionLogConfig {
            dir: if self.prediction_log_dir.trim().is_empty() {
                data_dir.join("serving").join("predictions")
            } else {
                std::path::PathBuf::from(self.prediction_log_dir.trim())
            },
            roll_interval: std::time::Duration::from_secs(self.prediction_log_roll_secs),
            max_file_bytes: self.prediction_log_max_file_mb.saturating_mul(1 << 20),
            buffer: usize::try_from(self.prediction_log_buffer).unwrap_or(usize::MAX),
        })
    }

    pub fn model_cache(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        if self.model_cache_dir.trim().is_empty() {
            data_dir.join("serving").join("models")
        } else {
            std::path::PathBuf::from(self.model_cache_dir.trim())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesSection {
    /// Memory the offline engine may use for SQL transformations before it spills to disk, in MiB.
    pub memory_limit_mb: u64,
    /// Where the offline engine spills; empty: `<data_dir>/features/spill`.
    pub spill_dir: String,
    /// Largest entity upload of one historical retrieval, in MiB (spooled to disk, not held in memory).
    pub max_entity_upload_mb: u64,
    /// Entity rows one historical retrieval answers at once; larger entity sets are answered
    /// chunk by chunk (each chunk re-reads the feature rows of its own time window).
    pub entity_chunk_rows: u64,
    /// The online store: empty for the embedded one (`<data_dir>/features/online.redb`), a path
    /// ending in `.redb`, or a `redis://` URL.
    pub online_store: String,
    /// Key prefix in Redis, so several deployments can share one server.
    pub redis_namespace: String,
}

impl Default for FeaturesSection {
    fn default() -> FeaturesSection {
        FeaturesSection {
            memory_limit_mb: 1024,
            spill_dir: String::new(),
            max_entity_upload_mb: 1024,
            entity_chunk_rows: 2_000_000,
            online_store: String::new(),
            redis_namespace: "plinth".into(),
        }
    }
}

/// Where online feature values live: `features.online_store` read as what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineStoreLocation {
    /// The embedded store (redb) in this file.
    Embedded(PathBuf),
    /// A Redis server (`redis://` or `rediss://` URL).
    Redis(String),
}

impl FeaturesSection {
    /// `online_store` as a location: empty is the embedded store under the data directory, a path
    /// ending in `.redb` another embedded file, a `redis://`/`rediss://` URL a Redis server.
    /// Anything else is an error naming the key (it used to be taken as a file path).
    pub fn online_store_location(&self, data_dir: &std::path::Path) -> Result<OnlineStoreLocation, String> {
        let raw = self.online_store.trim();
        if raw.is_empty() {
            return Ok(OnlineStoreLocation::Embedded(data_dir.join("features").join("online.redb")));
        }
        if raw.starts_with("redis://") || raw.starts_with("rediss://") {
            // The URL parser (as `redact_url` uses it), not string splitting, finds the host.
            let host = reqwest::Url::parse(raw).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            if host.is_empty() {
                return Err(format!("features.online_store: the Redis URL '{}' names no host", redact_url(raw)));
            }
            return Ok(OnlineStoreLocation::Redis(raw.to_owned()));
        }
        if raw.contains("://") {
            return Err(format!(
                "features.online_store: '{}' is not a supported online store; use a redis:// URL or a path ending in .redb (empty: the embedded store)",
                redact_url(raw)
            ));
        }
        if !raw.ends_with(".redb") {
            return Err(format!(
                "features.online_store: '{raw}' is neither a redis:// URL nor a path ending in .redb (empty: the embedded store under the data directory)"
            ));
        }
        Ok(OnlineStoreLocation::Embedded(PathBuf::from(raw)))
    }

    pub fn spill_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.spill_dir.is_empty() { data_dir.join("features").join("spill") } else { PathBuf::from(&self.spill_dir) }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Per-delivery request timeout.
    pub timeout_ms: u64,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: i64,
    /// Delay before the first retry; it doubles per attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often the outbox is polled for due retries.
    pub poll_interval_ms: u64,
}

impl Default for WebhooksSection {
    fn default() -> WebhooksSection {
        WebhooksSection { timeout_ms: 10_000, max_attempts: 8, initial_backoff_ms: 1_000, max_backoff_ms: 600_000, poll_interval_ms: 1_000 }
    }
}

impl Default for ServerSection {
    fn default() -> ServerSection {
        ServerSection {
            host: "127.0.0.1".into(),
            allow_unauthenticated: false,
            port: 5000,
            data_dir: PathBuf::from("./plinth-data"),
            max_request_bytes: 32 * 1024 * 1024,
            shutdown_grace_secs: 30,
            min_free_space_mb: 64,
            storage_check_secs: 5,
        }
    }
}

impl Default for DatabaseSection {
    fn default() -> DatabaseSection {
        DatabaseSection { url: String::new(), max_connections: 8, acquire_timeout_secs: 30, sqlite_synchronous: SqliteSynchronous::Full }
    }
}

impl Default for TrackingSection {
    fn default() -> TrackingSection {
        TrackingSection { truncate_long_values: true }
    }
}

/// Everything wrong with a configuration, each problem with its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Whether `host` only listens on this machine (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The environment-variable prefix for overrides: `PLINTH__SERVER__PORT=8080`.
pub const ENV_PREFIX: &str = "PLINTH__";

impl Config {
    /// Defaults < the TOML `file_text` < environment overrides (`vars`, as `(name, value)` pairs).
    pub fn load(file_text: Option<&str>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match file_text.map(|text| text.parse::<toml::Table>()) {
            None => toml::Table::new(),
            Some(Ok(table)) => table,
            Some(Err(e)) => {
                return Err(ConfigError { problems: vec![format!("config file: {}", e.message())] });
            }
        };
        for (name, raw) in vars {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else { continue };
            let keys: Vec<String> = path.split("__").map(|it| it.to_ascii_lowercase()).collect();
            if keys.len() != 2 || keys.iter().any(String::is_empty) {
                problems.push(format!("{name}: expected {ENV_PREFIX}<SECTION>__<KEY>"));
                continue;
            }
            let value = parse_env_value(&raw);
            let section = table.entry(keys[0].clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match section.as_table_mut() {
                Some(section) => {
                    section.insert(keys[1].clone(), value);
                }
                None => problems.push(format!("{name}: '{}' is not a section", keys[0])),
            }
        }
        let config = match Config::deserialize(toml::Value::Table(table)) {
            Ok(config) => config,
            Err(e) => {
                problems.push(e.message().to_owned());
                return Err(ConfigError { problems });
            }
        };
        // The exposure rule waits for the command-line flags (`--host`, `--allow-unauthenticated`).
        problems.extend(config.field_problems());
        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }

    /// Checks values that parse but cannot work; every problem is listed.
    /// Every problem, including serving a non-loopback address without auth.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.field_problems();
        problems.extend(self.exposure_problem());
        problems
    }

    /// Serving a non-loopback address with auth off, unless explicitly allowed.
    pub fn exposure_problem(&self) -> Option<String> {
        (!self.auth.enabled && !self.server.allow_unauthenticated && !is_loopback(&self.server.host)).then(|| {
            format!(
                "server.host: '{}' is not a loopback address and auth is off; enable [auth] (auth.enabled = true) or pass --allow-unauthenticated (server.allow_unauthenticated = true) to serve it without authentication",
                self.server.host
            )
        })
    }

    fn field_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.server.host.trim().is_empty() {
            problems.push("server.host: must not be empty".to_owned());
        }
        if self.server.max_request_bytes < 1024 {
            problems.push("server.max_request_bytes: must be at least 1024".to_owned());
        }
        let url = self.database.url.as_str();
        let supported = url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !url.is_empty() && !supported {
            problems.push(format!("database.url: unsupported scheme in '{}'; use sqlite:// or postgres://", redact_url(url)));
        }
        if self.server.storage_check_secs == 0 {
            problems.push("server.storage_check_secs: must be at least 1".to_owned());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".to_owned());
        }
        if self.registry.promotion_ttl_secs < 1 || self.registry.promotion_ttl_secs > self.registry.max_promotion_ttl_secs {
            problems.push("registry.promotion_ttl_secs: must be at least 1 and at most registry.max_promotion_ttl_secs".to_owned());
        }
        if self.features.memory_limit_mb < 64 {
            problems.push("features.memory_limit_mb: must be at least 64".to_owned());
        }
        if self.features.entity_chunk_rows == 0 {
            problems.push("features.entity_chunk_rows: must be positive".to_owned());
        }
        if self.features.max_entity_upload_mb == 0 {
            problems.push("features.max_entity_upload_mb: must be positive".to_owned());
        }
        if let Err(problem) = self.features.online_store_location(&self.server.data_dir) {
            problems.push(problem);
        }
        if self.webhooks.max_attempts < 1 {
            problems.push("webhooks.max_attempts: must be at least 1".to_owned());
        }
        if self.webhooks.initial_backoff_ms > self.webhooks.max_backoff_ms || self.webhooks.max_backoff_ms > 7 * 86_400_000 {
            problems.push("webhooks: initial_backoff_ms must not exceed max_backoff_ms, which is at most 7 days".to_owned());
        }
        let jobs = &self.jobs;
        for (key, value, range) in [
            ("jobs.tick_ms", jobs.tick_ms, 10..=60_000),
            ("jobs.stop_grace_ms", jobs.stop_grace_ms, 0..=3_600_000),
            ("jobs.max_log_mb", jobs.max_log_mb, 1..=1_048_576),
            ("jobs.sample_interval_ms", jobs.sample_interval_ms, 10..=60_000),
            ("jobs.max_code_mb", jobs.max_code_mb, 1..=1_048_576),
            ("jobs.system_metrics_interval_ms", jobs.system_metrics_interval_ms, 0..=3_600_000),
        ] {
            if !range.contains(&value) {
                problems.push(format!("{key} must be between {} and {} (got {value})", range.start(), range.end()));
            }
        }
        for (i, gpu) in jobs.gpus.iter().enumerate() {
            if let Err(e) = plinth_core::jobs::validate_name("flavor", &gpu.flavor) {
                problems.push(format!("jobs.gpus[{i}].flavor: {e}"));
            }
            if jobs.gpus[..i].iter().any(|g| g.index == gpu.index) {
                problems.push(format!("jobs.gpus[{i}].index: GPU {} is listed twice", gpu.index));
            }
        }
        if !jobs.tracking_uri.is_empty() && !jobs.tracking_uri.starts_with("http://") && !jobs.tracking_uri.starts_with("https://") {
            problems.push(format!("jobs.tracking_uri must be an http:// or https:// URL (got '{}')", jobs.tracking_uri));
        }
        if !(100..=3_600_000).contains(&self.serving.follow_interval_ms) {
            problems.push(format!("serving.follow_interval_ms must be between 100 and 3600000 (got {})", self.serving.follow_interval_ms));
        }
        if !(1..=86_400).contains(&self.serving.prediction_log_roll_secs) {
            problems.push(format!(
                "serving.prediction_log_roll_secs must be between 1 and 86400 (got {})",
                self.serving.prediction_log_roll_secs
            ));
        }
        if !(1..=65_536).contains(&self.serving.prediction_log_max_file_mb) {
            problems.push(format!(
                "serving.prediction_log_max_file_mb must be between 1 and 65536 (got {})",
                self.serving.prediction_log_max_file_mb
            ));
        }
        if !(1..=10_000_000).contains(&self.serving.prediction_log_buffer) {
            problems
                .push(format!("serving.prediction_log_buffer must be between 1 and 10000000 (got {})", self.serving.prediction_log_buffer));
        }
        if self.webhooks.timeout_ms == 0 || self.webhooks.poll_interval_ms == 0 || self.webhooks.initial_backoff_ms == 0 {
            problems.push("webhooks: timeout_ms, poll_interval_ms and initial_backoff_ms must be positive".to_owned());
        }
        if !self.auth.bootstrap_admin_password.is_empty() && self.auth.bootstrap_admin.trim().is_empty() {
            problems.push("auth.bootstrap_admin: must name the admin that auth.bootstrap_admin_password is for".to_owned());
        }
        if !self.auth.bootstrap_admin_password.is_empty() && self.auth.bootstrap_admin_password.expose().chars().count() < 12 {
            problems.push("auth.bootstrap_admin_password: needs at least 12 characters".to_owned());
        }
        if self.auth.max_failures_per_user == 0 || self.auth.max_failures_per_address == 0 || self.auth.failure_window_secs == 0 {
            problems.push("auth: max_failures_per_user, max_failures_per_address and failure_window_secs must be positive".to_owned());
        }
        if self.auth.max_token_ttl_secs < 0 {
            problems.push("auth.max_token_ttl_secs: must not be negative".to_owned());
        }
        if let Some(dest) = &self.artifacts.destination
            && dest.contains("://")
            && !dest.starts_with("file://")
        {
            problems.push(format!("artifacts.destination: only local directories are supported so far, got '{dest}'"));
        }
        problems
    }

    /// The database URL, defaulting to SQLite under the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.server.data_dir.join("plinth.db").display())
        } else {
            self.database.url.clone()
        }
    }

    pub fn artifacts_destination(&self) -> PathBuf {
        match self.artifacts.destination.as_deref().filter(|it| !it.is_empty()) {
            Some(dest) => PathBuf::from(dest.strip_prefix("file://").unwrap_or(dest)),
            None => self.server.data_dir.join("artifacts"),
        }
    }

    /// The commented default configuration.
    pub fn reference_toml() -> &'static str {
        include_str!("../../../config/plinth.example.toml")
    }
}

/// Environment values are TOML scalars when they parse as one (`8080`, `true`), strings otherwise.
fn parse_env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_))) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// A database or Redis URL with any password replaced (in the authority or a `password=` query
/// parameter), for messages and logs. A URL that does not parse shows only its scheme, so a
/// malformed one can never leak what it holds.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, _)) = url.split_once("://") else { return url.to_owned() };
    let Ok(mut parsed) = reqwest::Url::parse(url) else { return format!("{scheme}://***") };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// MLflow's `--backend-store-uri` spellings as sqlx URLs: `sqlite:///rel.db` is relative and
/// `sqlite:////abs.db` absolute there; `postgresql+psycopg2://` drops its driver suffix.
pub fn from_mlflow_store_uri(uri: &str) -> String {
    if let Some(path) = uri.strip_prefix("sqlite:///") {
        return format!("sqlite://{path}");
    }
    if let Some((scheme, rest)) = uri.split_once("://")
        && let Some((base, _driver)) = scheme.split_once('+')
    {
        return format!("{base}://{rest}");
    }
    uri.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn layering() {
        let file = "[server]\nport = 6000\nhost = \"0.0.0.0\"\n[database]\nmax_connections = 3\n";
        let config = Config::load(
            Some(file),
            env(&[("PLINTH__SERVER__PORT", "7000"), ("OTHER", "x"), ("PLINTH__TRACKING__TRUNCATE_LONG_VALUES", "false")]),
        )
        .expect("valid");
        assert_eq!(config.server.port, 7000, "env beats file");
        assert_eq!(config.server.host, "0.0.0.0", "file beats default");
        assert!(config.exposure_problem().is_some(), "0.0.0.0 without auth is refused once flags are applied");
        let mut allowed = config.clone();
        allowed.server.allow_unauthenticated = true;
        assert!(allowed.problems().is_empty());
        let mut with_auth = config.clone();
        with_auth.auth.enabled = true;
        assert!(with_auth.problems().is_empty());
        assert!(
            is_loopback("127.0.0.2") && is_loopback("::1") && is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("10.0.0.1")
        );
        assert_eq!(config.database.max_connections, 3);
        assert!(!config.tracking.truncate_long_values);
        assert_eq!(config.database_url(), "sqlite://./plinth-data/plinth.db");
    }

    #[test]
    fn every_problem_is_reported() {
        let err = Config::load(Some("[server]\nprot = 1\n"), vec![]).expect_err("unknown key");
        assert!(err.problems[0].contains("prot"), "{err}");
        let err =
            Config::load(Some("[database]\nurl = \"mysql://u:secret@h/db\"\nmax_connections = 0\n"), env(&[("PLINTH__NOSECTION", "1")]))
                .expect_err("bad values");
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(!err.to_string().contains("secret"), "passwords are redacted: {err}");
        assert!(Config::load(Some("not toml ["), vec![]).is_err());
        assert!(Config::load(None, env(&[("PLINTH__SERVER__PORT", "notaport")])).is_err());
    }

    #[test]
    fn example_file_is_the_default() {
        let loaded = Config::load(Some(Config::reference_toml()), vec![]).expect("example parses");
        assert_eq!(loaded, Config::default());
        // Key by key: every key of every section is in the example, with its default value (a key
        // missing from the example would otherwise go unnoticed, since it loads as its default).
        let defaults = toml::Value::try_from(Config::default()).expect("the defaults serialize");
        let example: toml::Value = toml::from_str(Config::reference_toml()).expect("the example is TOML");
        let sections = defaults.as_table().expect("a table");
        let written = example.as_table().expect("a table");
        for (section, keys) in sections {
            let have = written.get(section).and_then(toml::Value::as_table);
            for (key, value) in keys.as_table().expect("sections are tables") {
                let got = have.and_then(|t| t.get(key));
                assert_eq!(got, Some(value), "config/plinth.example.toml: [{section}] {key} is missing or differs from the default");
            }
        }
        assert_eq!(sections.len(), written.len(), "the example has a section the configuration does not");
    }

    #[test]
    fn online_store_locations() {
        let data = std::path::Path::new("/srv/plinth");
        let at = |raw: &str| FeaturesSection { online_store: raw.into(), ..FeaturesSection::default() }.online_store_location(data);
        for (raw, want) in [
            ("", OnlineStoreLocation::Embedded(data.join("features").join("online.redb"))),
            ("/var/lib/online.redb", OnlineStoreLocation::Embedded("/var/lib/online.redb".into())),
            ("redis://127.0.0.1:6379/0", OnlineStoreLocation::Redis("redis://127.0.0.1:6379/0".into())),
            ("rediss://user:pw@cache.internal:6380", OnlineStoreLocation::Redis("rediss://user:pw@cache.internal:6380".into())),
        ] {
            assert_eq!(at(raw), Ok(want), "{raw}");
        }
        for (raw, message) in [
            ("redis", "neither a redis:// URL nor a path ending in .redb"),
            ("/var/lib/online.db", "neither a redis:// URL nor a path ending in .redb"),
            ("memcached://cache:11211", "not a supported online store"),
            ("redis://", "names no host"),
            ("redis://:secret@/0", "names no host"),
        ] {
            let err = at(raw).expect_err(raw);
            assert!(err.starts_with("features.online_store: ") && err.contains(message), "{raw}: {err}");
            assert!(!err.contains("secret"), "the message shows no password: {err}");
        }
        let problems = Config::load(Some("[features]\nonline_store = \"redis\"\n"), vec![]).expect_err("refused").problems;
        assert!(problems.iter().any(|p| p.starts_with("features.online_store")), "{problems:?}");
    }

    #[test]
    fn mlflow_uris() {
        assert_eq!(from_mlflow_store_uri("sqlite:///mlflow.db"), "sqlite://mlflow.db");
        assert_eq!(from_mlflow_store_uri("sqlite:////tmp/m.db"), "sqlite:///tmp/m.db");
        assert_eq!(from_mlflow_store_uri("postgresql+psycopg2://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://h/db?sslmode=require&password=secret"), "postgres://h/db?sslmode=require&password=***");
        assert_eq!(redact_url("sqlite://plinth-data/plinth.db"), "sqlite://plinth-data/plinth.db");
        assert_eq!(redact_url("redis://:secret@cache:6379/0"), "redis://:***@cache:6379/0");
        assert_eq!(redact_url("redis://:secret@/0"), "redis://***", "unparsable: only the scheme");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
