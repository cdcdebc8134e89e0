//! Deployments: the stored resource (create, update, delete, list, get; validated, audited in
//! their own transaction) and its live state on this node: each variant's model resolved through
//! the registry, fetched, loaded, checked and warmed by its runtime *before* the change is
//! stored, then served through its own batcher; requests routed between primaries by weight.
//!
//! A deployment that cannot be loaded is refused when it is created or updated, with the reason.
//! On start, `restore` loads every stored deployment; one that fails then (its model deleted
//! meanwhile) stays listed with its variant's failure, and answers `UNAVAILABLE` until updated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::serving::{Deployment, DeploymentSpec, Variant, validate_name};
use plinth_core::validation::InvalidParameter;
use plinth_core::{ErrorCode, HasErrorCode};
use plinth_store::AuditLog;
use plinth_store::audit::{Record, append_failure};
use plinth_store::serving::{DeploymentStore, NewDeployment};
use plinth_store::tracking::{PageRequest, Rows};

use crate::batcher::{BatchConfig, BatchError, Batcher};
use crate::features::{FeatureColumn, FeatureLookup, ServiceShape, assemble, check_fit, request_inputs, split_entities};
use crate::infer::{Batched, InferRequest};
use crate::objectives::{ObjectiveReport, ObjectiveWatch};
use crate::onnx::{OnnxModel, OnnxOptions, OnnxRuntime};
use crate::predictions::{Prediction, PredictionLog};
use crate::rollback::{Monitor, Notifier, Verdict};
use crate::router::Router;
use crate::shadow::run_shadow;
use crate::source::{ModelSource, ResolvedVersion, SourceError};
use crate::tensor::{Tensor, TensorError, TensorSpec};

/// What the serving service is configured with.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// ONNX Runtime's shared library; `None`: `ORT_DYLIB_PATH`, then discovery (see `onnx`).
    pub onnxruntime_library: Option<PathBuf>,
    /// Where fetched model files are kept, one directory per model version.
    pub model_cache: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidParameter),
    #[error(transparent)]
    Store(#[from] plinth_store::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A variant's model cannot be served by its runtime.
    #[error("variant '{variant}' ({model}) cannot be served: {reason}")]
    Load { variant: String, model: String, reason: String },
    #[error("Deployment '{name}' is not ready: {reason}")]
    NotReady { name: String, reason: String },
    /// The request does not fit the model (names, datatypes, shapes).
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("{0}")]
    Internal(String),
}

impl From<TensorError> for Error {
    fn from(e: TensorError) -> Error {
        Error::BadInput(e.to_string())
    }
}

impl HasErrorCode for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Error::Invalid(e) => e.error_code(),
            Error::Store(e) => e.error_code(),
            Error::Source(e) => e.code,
            Error::Load { .. } | Error::BadInput(_) => ErrorCode::InvalidParameterValue,
            Error::NotReady { .. } => ErrorCode::TemporarilyUnavailable,
            Error::Batch(BatchError::TooLarge { .. } | BatchError::Empty) => ErrorCode::InvalidParameterValue,
            Error::Batch(BatchError::QueueFull { .. } | BatchError::Timeout { .. } | BatchError::ShuttingDown) => {
                ErrorCode::TemporarilyUnavailable
            }
            Error::Batch(BatchError::Execution(_)) | Error::Internal(_) => ErrorCode::InternalError,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A variant's state on this node.
#[derive(Debug, Clone, PartialEq)]
pub enum VariantState {
    Ready { version: i64 },
    Failed { reason: String },
}

/// A deployment as this node serves it.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    pub deployment: Deployment,
    /// Per variant, in the spec's order.
    pub states: Vec<(String, VariantState)>,
}

/// One inference's answer.
#[derive(Debug, Clone)]
pub struct Inference {
    /// The request's id (the client's, or the one made for it), as the prediction log has it.
    pub request_id: String,
    /// The features looked up for the request, when it asked for them.
    pub features: Option<Vec<FeatureColumn>>,
    pub variant: String,
    pub model: String,
    pub version: i64,
    pub outputs: Vec<Tensor>,
}

/// A model's inputs and outputs, as the protocols' metadata shows them.
#[derive(Debug, Clone)]
pub struct ModelMetadata {
    pub versions: Vec<i64>,
    pub platform: &'static str,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

pub(crate) struct LiveVariant {
    pub(crate) spec: Variant,
    version: i64,
    pub(crate) inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pub(crate) batcher: Batcher<InferRequest, Vec<Tensor>>,
}

struct Live {
    deployment: Deployment,
    variants: Vec<Result<Arc<LiveVariant>, String>>,
    router: Router,
    timeout: Option<Duration>,
    /// Requests seen, per variant: a shadow with fraction `f` gets a copy of request `n` when
    /// `floor((n + 1) f) > floor(n f)`, so copies are spread evenly, with no random draw.
    seen: Vec<std::sync::atomic::AtomicU64>,
    /// The rollback watch, when the spec declares a rollback policy.
    monitor: Option<Monitor>,
    /// Requests seen, for sampling inputs into the prediction log (spread evenly, as shadows are).
    logged: std::sync::atomic::AtomicU64,
    /// The feature service's join keys and features, read when the deployment was loaded.
    feature_shape: Option<ServiceShape>,
}

/// A rollback a monitor ordered, applied by the service's background loop.
struct RollbackOrder {
    name: String,
    generation: i64,
    verdict: Verdict,
}

impl Live {
    /// The loaded shadow variants that get a copy of this request.
    fn shadows_for_this_request(&self) -> Vec<Arc<LiveVariant>> {
        let mut out = Vec::new();
        for ((spec, loaded), seen) in self.deployment.spec.variants.iter().zip(&self.variants).zip(&self.seen) {
            let (Some(fraction), Ok(v)) = (spec.shadow, loaded) else { continue };
            if sampled(seen, fraction) {
                out.push(v.clone());
            }
        }
        out
    }
}

/// Whether the `n`-th of a stream of requests is among an evenly spread `fraction` of them.
fn sampled(counter: &std::sync::atomic::AtomicU64, fraction: f64) -> bool {
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
    ((n + 1.0) * fraction).floor() > (n * fraction).floor()
}

impl Live {
    /// The loaded variant `v` if it serves `version` with the options of `spec`.
    fn reusable(&self, v: &Variant, spec: &DeploymentSpec, version: i64) -> Option<Arc<LiveVariant>> {
        let same_options = {
            let (a, b) = (&self.deployment.spec, spec);
            a.runtime == b.runtime && a.batching == b.batching && a.instances == b.instances && a.threads == b.threads
        };
        if !same_options {
            return None;
        }
        self.variants.iter().flatten().find(|lv| lv.spec.name == v.name && lv.spec.model == v.model && lv.version == version).cloned()
    }

    fn ready(&self) -> bool {
        self.deployment.spec.variants.iter().zip(&self.variants).all(|(v, l)| v.is_shadow() || v.weight == 0 || l.is_ok())
    }
}

// No explicit close when a `Live` is replaced or removed: every request holds its variant (and so
// its batcher) until answered, and a batcher closes itself when its last handle goes, so requests
// accepted by the old state finish on it.

pub struct DeploymentService {
    store: Arc<dyn DeploymentStore>,
    audit: Arc<dyn AuditLog>,
    source: Arc<dyn ModelSource>,
    config: ServingConfig,
    runtime: OnceLock<std::result::Result<OnnxRuntime, String>>,
    live: RwLock<HashMap<String, Arc<Live>>>,
    notifier: Arc<dyn Notifier>,
    orders: tokio::sync::mpsc::UnboundedSender<RollbackOrder>,
    /// Taken by `run_follow`, which applies the orders.
    order_queue: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<RollbackOrder>>>,
    predictions: Arc<PredictionLog>,
    features: Option<Arc<dyn FeatureLookup>>,
    /// Per deployment with an objective: its window, kept across reloads while the window's length holds.
    objectives: RwLock<HashMap<String, Arc<ObjectiveWatch>>>,
}

/// What a request says about itself besides its inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    /// The client's id for the request (OIP's `id`); one is made when absent.
    pub id: Option<&'a str>,
    /// Picks the variant stickily.
    pub routing_key: Option<&'a str>,
    /// Whether the answer carries the features looked up (for debugging).
    pub return_features: bool,
}

fn batch_config(spec: &DeploymentSpec) -> BatchConfig {
    let b = &spec.batching;
    BatchConfig {
        // 0: requests are not held back to form batches.
        max_batch_size: if b.max_batch_size == 0 { plinth_core::serving::MAX_BATCH_SIZE as usize } else { b.max_batch_size as usize },
        preferred_batch_sizes: b.preferred_batch_sizes.iter().map(|p| *p as usize).collect(),
        max_queue_delay: if b.max_batch_size == 0 { Duration::ZERO } else { Duration::from_micros(b.max_queue_delay_micros) },
        max_queue_size: b.max_queue_size as usize,
        default_timeout: b.timeout_millis.map_or(Duration::from_secs(3600), Duration::from_millis),
        instances: spec.instances as usize,
    }
}

/// The directory a version's files are cached in: the model name hex-encoded (names may hold any
/// character but `/`), then the version.
fn cache_dir(root: &std::path::Path, version: &ResolvedVersion) -> PathBuf {
    root.join(format!("{}-{}", hex::encode(version.name.as_bytes()), version.version))
}

impl DeploymentService {
    pub fn new(
        store: Arc<dyn DeploymentStore>,
        audit: Arc<dyn AuditLog>,
        source: Arc<dyn ModelSource>,
        notifier: Arc<dyn Notifier>,
        config: ServingConfig,
    ) -> DeploymentService {
        let (orders, order_queue) = tokio::sync::mpsc::unbounded_channel();
        DeploymentService {
            store,
            audit,
            source,
            config,
            runtime: OnceLock::new(),
            live: RwLock::new(HashMap::new()),
            notifier,
            orders,
            order_queue: std::sync::Mutex::new(Some(order_queue)),
            predictions: Arc::new(PredictionLog::disabled()),
            features: None,
            objectives: RwLock::new(HashMap::new()),
        }
    }

    /// Looks features up through `lookup` for deployments that name a feature service.
    pub fn with_feature_lookup(mut self, lookup: Arc<dyn FeatureLookup>) -> DeploymentService {
        self.features = Some(lookup);
        self
    }

    /// Appends every prediction to `log`.
    pub fn with_prediction_log(mut self, log: Arc<PredictionLog>) -> DeploymentService {
        self.predictions = log;
        self
    }

    /// ONNX Runtime, loaded on first use; why it cannot be loaded, otherwise.
    fn runtime(&self) -> std::result::Result<OnnxRuntime, String> {
        self.runtime.get_or_init(|| OnnxRuntime::init(self.config.onnxruntime_library.as_deref()).map_err(|e| e.to_string())).clone()
    }

    /// Every stored deployment, by name.
    async fn all_deployments(&self) -> Result<Vec<Deployment>> {
        const CHUNK: i64 = 500;
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.store.list_deployments(PageRequest { offset, limit: CHUNK }).await?;
            all.extend(page.items);
            if !page.has_more {
                return Ok(all);
            }
            offset += CHUNK;
        }
    }

    /// Fetches, loads, checks and warms one variant's model, resolved to `resolved`.
    async fn load_variant(
        &self,
        deployment: &str,
        variant: &Variant,
        spec: &DeploymentSpec,
        resolved: ResolvedVersion,
    ) -> Result<LiveVariant> {
        let fail = |reason: String| Error::Load { variant: variant.name.clone(), model: variant.model.to_string(), reason };
        let dir = cache_dir(&self.config.model_cache, &resolved);
        let path = if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            dir
        } else {
            // Fetched beside, then renamed into place: a crash or a concurrent fetch never leaves half a model.
            let staging = self.config.model_cache.join(format!(".fetch-{}", uuid::Uuid::new_v4().simple()));
            let fetched = self.source.fetch(&resolved, &staging).await;
            match fetched {
                Ok(_) => match tokio::fs::rename(&staging, &dir).await {
                    Ok(()) => dir,
                    // Another fetch won the race: its copy is the same version.
                    Err(_) if tokio::fs::try_exists(&dir).await.unwrap_or(false) => {
                        let _ = tokio::fs::remove_dir_all(&staging).await;
                        dir
                    }
                    Err(e) => return Err(Error::Internal(format!("could not place the model's files: {e}"))),
                },
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&staging).await;
                    return Err(e.into());
                }
            }
        };
        let path = model_path(path).await;
        let runtime = self.runtime().map_err(fail)?;
        let options = OnnxOptions { sessions: spec.instances as usize, intra_op_threads: spec.threads as usize };
        let model = tokio::task::spawn_blocking(move || OnnxModel::load(&runtime, &path, &options))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let (inputs, outputs) = (model.inputs().to_vec(), model.outputs().to_vec());
        let executor = Metered { inner: Batched(model), labels: labels(deployment, &variant.name) };
        let batcher = Batcher::start(batch_config(spec), Arc::new(executor))
            .map_err(|e| Error::Internal(format!("could not start the model's instances: {e}")))?;
        Ok(LiveVariant { spec: variant.clone(), version: resolved.version, inputs, outputs, batcher })
    }

    /// Loads every variant; the first failure is the error when `strict`, else it is kept per
    /// variant. A variant of `previous` with the same reference, options and resolved version is
    /// kept as it is (its model stays loaded, its queue keeps going).
    async fn load(&self, deployment: Deployment, strict: bool, previous: Option<&Live>) -> Result<Live> {
        let feature_shape = match deployment.spec.feature_service.as_deref() {
            None => None,
            Some(service) => {
                let lookup = self
                    .features
                    .as_ref()
                    .ok_or_else(|| Error::Invalid(InvalidParameter::new("this server has no feature store to look features up in")))?;
                Some(lookup.shape(service).await?)
            }
        };
        let mut variants = Vec::with_capacity(deployment.spec.variants.len());
        for v in &deployment.spec.variants {
            let loaded = async {
                let resolved = self.source.resolve(&v.model).await?;
                let live = match previous.and_then(|p| p.reusable(v, &deployment.spec, resolved.version)) {
                    Some(kept) => kept,
                    None => Arc::new(self.load_variant(&deployment.name, v, &deployment.spec, resolved).await?),
                };
                if let Some(shape) = &feature_shape {
                    check_fit(&live.inputs, shape).map_err(|reason| Error::Load {
                        variant: v.name.clone(),
                        model: v.model.to_string(),
                        reason: format!("{reason} (feature service '{}')", deployment.spec.feature_service.as_deref().unwrap_or_default()),
                    })?;
                }
                Ok(live)
            }
            .await;
            match loaded {
                Ok(live) => variants.push(Ok(live)),
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::warn!(deployment = %deployment.name, variant = %v.name, error = %e, "a deployment's variant could not be loaded");
                    variants.push(Err(e.to_string()));
                }
            }
        }
        let weights: Vec<(usize, u32)> = deployment
            .spec
            .variants
            .iter()
            .enumerate()
            .filter(|(idx, v)| !v.is_shadow() && variants[*idx].is_ok())
            .map(|(idx, v)| (idx, v.weight))
            .collect();
        let timeout = deployment.spec.batching.timeout_millis.map(Duration::from_millis);
        let seen = deployment.spec.variants.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        let monitor = deployment.spec.rollback.clone().map(|policy| Monitor::new(policy, deployment.spec.variants.len()));
        let logged = std::sync::atomic::AtomicU64::new(0);
        Ok(Live { router: Router::new(&weights), deployment, variants, timeout, seen, monitor, logged, feature_shape })
    }

    /// Serves `live` (loaded for a draft) as the stored deployment `stored`; answers its view.
    fn switch(&self, mut live: Live, stored: Deployment) -> DeploymentView {
        live.deployment = stored.clone();
        self.install(live);
        self.view(stored)
    }

    fn install(&self, live: Live) {
        let name = live.deployment.name.clone();
        let mut map = self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A refresh that read the store before an update committed never puts the older
        // generation back over the newer one.
        if map.get(&name).is_some_and(|current| current.deployment.generation > live.deployment.generation) {
            return;
        }
        for v in live.variants.iter().flatten() {
            metrics::gauge!(crate::metrics::LOADED_VERSION, &labels(&name, &v.spec.name)).set(v.version as f64);
        }
        {
            let mut watches = self.objectives.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &live.deployment.spec.objective {
                // Thresholds may change; the requests seen stay while the window's length does.
                Some(o) if watches.get(&name).is_some_and(|w| w.window_secs == o.window_secs) => {}
                Some(o) => {
                    watches.insert(name.clone(), Arc::new(ObjectiveWatch::new(o.window_secs)));
                }
                None => {
                    watches.remove(&name);
                }
            }
        }
        // The old state is dropped after the switch: requests it accepted finish on it.
        map.insert(name, Arc::new(live));
    }

    fn view(&self, deployment: Deployment) -> DeploymentView {
        let live = self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&deployment.name).cloned();
        let states = deployment
            .spec
            .variants
            .iter()
            .enumerate()
            .map(|(idx, v)| {
                let state =
                    match live.as_ref().filter(|l| l.deployment.generation == deployment.generation).and_then(|l| l.variants.get(idx)) {
                        Some(Ok(lv)) => VariantState::Ready { version: lv.version },
                        Some(Err(reason)) => VariantState::Failed { reason: reason.clone() },
                        None => VariantState::Failed { reason: "not loaded on this node".to_owned() },
                    };
                (v.name.clone(), state)
            })
            .collect();
        DeploymentView { deployment, states }
    }

    /// Brings this node up to date with the store and the registry: a deployment created, changed
    /// or deleted elsewhere (another node, another server on the same database) is loaded, reloaded
    /// or dropped; a variant that follows an alias is switched to the alias's new holder (loaded and
    /// warmed first; the variants that did not move stay as they are). Every switch is recorded in
    /// the audit trail (`deployment.follow`, by `system`).
    pub async fn refresh(&self) -> Result<()> {
        let stored = self.all_deployments().await?;
        let names: std::collections::HashSet<&str> = stored.iter().map(|d| d.name.as_str()).collect();
        self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|name, _| names.contains(name.as_str()));
        self.objectives.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|name, _| names.contains(name.as_str()));
        for d in stored {
            let previous = self.live(&d.name).ok();
            let stale = previous.as_ref().is_none_or(|p| p.deployment.generation != d.generation);
            if !stale && !self.moved(previous.as_deref()).await {
                continue;
            }
            let name = d.name.clone();
            let live = self.load(d, false, previous.as_deref()).await?;
            let changes: Vec<Change> = live
                .variants
                .iter()
                .zip(&live.deployment.spec.variants)
                .filter_map(|(now, spec)| {
                    let before =
                        previous.as_ref().and_then(|p| p.variants.iter().flatten().find(|v| v.spec.name == spec.name)).map(|v| v.version);
                    let after = now.as_ref().ok().map(|v| v.version);
                    (before != after).then(|| {
                        Change::new(format!("variants.{}.version", spec.name), before.map(|v| v.to_string()), after.map(|v| v.to_string()))
                    })
                })
                .collect();
            // Recorded before the switch, so whoever sees the new version finds the record too.
            if !changes.is_empty() {
                let event = AuditEvent::new(&Actor::system(), "deployment.follow", "deployment", &name).with_changes(changes);
                if let Err(e) = plinth_store::audit::append_detached(&self.audit, event).await {
                    tracing::warn!(error = %e, "could not record a deployment's switch in the audit trail");
                }
            }
            self.install(live);
        }
        Ok(())
    }

    /// Whether an alias a loaded variant follows points elsewhere now.
    async fn moved(&self, live: Option<&Live>) -> bool {
        let Some(live) = live else { return false };
        for (spec, loaded) in live.deployment.spec.variants.iter().zip(&live.variants) {
            let following = matches!(spec.model.target, plinth_core::serving::ModelTarget::Alias(_));
            match (following, loaded) {
                (true, Ok(v)) => match self.source.resolve(&spec.model).await {
                    Ok(now) if now.version != v.version => return true,
                    _ => {}
                },
                // A variant that failed to load is tried again.
                (_, Err(_)) => return true,
                _ => {}
            }
        }
        false
    }

    /// Calls `refresh` every `interval` until `shutdown`, and applies the rollbacks the monitors
    /// order as they come; failures are logged (a refresh is retried at the next interval).
    pub async fn run_follow(self: Arc<Self>, interval: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let mut orders = self.order_queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mut next = tokio::time::Instant::now() + interval;
        loop {
            let order = async {
                match orders.as_mut() {
                    Some(queue) => queue.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(order) = order => {
                    let (name, variant) = (order.name.clone(), order.verdict.variant);
                    if let Err(e) = self.roll_back(order).await {
                        tracing::error!(deployment = %name, variant, error = %e, "an automatic rollback could not be applied");
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + interval;
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "following the registry's aliases failed; retrying");
                    }
                }
            }
        }
    }

    /// Applies a rollback order: the variant's traffic goes to the stable variant, stored as a new
    /// generation by `system` (audited as `deployment.rollback` with the reason), switched on this
    /// node at once, and announced as the webhook event `deployment.rolled_back`. An order for a
    /// generation that is no longer stored is dropped: the deployment changed meanwhile, and its
    /// new spec is watched afresh.
    async fn roll_back(&self, order: RollbackOrder) -> Result<()> {
        let current = self.store.get_deployment(&order.name).await?;
        if current.generation != order.generation {
            return Ok(());
        }
        let Some(spec) = current.spec.rolled_back(order.verdict.variant) else { return Ok(()) };
        let variant = current.spec.variants[order.verdict.variant].clone();
        let stable = current.spec.variants[order.verdict.stable].name.clone();
        let event = AuditEvent::new(&Actor::system(), "deployment.rollback", "deployment", &order.name);
        let previous = self.live(&order.name).ok();
        let version =
            previous.as_ref().and_then(|p| p.variants.get(order.verdict.variant)).and_then(|v| v.as_ref().ok()).map(|v| v.version);
        let live = self.load(Deployment { spec: spec.clone(), ..current.clone() }, false, previous.as_deref()).await?;
        let reason = order.verdict.reason.clone();
        let record = Record::of(|d: &Deployment| {
            let mut changes = describe(Some(&current.spec), &d.spec);
            changes.push(Change::new("reason", None, Some(reason.clone())));
            event.clone().with_changes(changes)
        });
        let stored = self.store.update_deployment(&order.name, current.generation, &spec, plinth_core::time::now_millis(), record).await?;
        let generation = stored.generation;
        self.switch(live, stored);
        metrics::counter!(crate::metrics::ROLLBACKS, &labels(&order.name, &variant.name)).increment(1);
        tracing::warn!(deployment = %order.name, variant = %variant.name, reason = %order.verdict.reason, "a variant was rolled back automatically");
        self.notifier
            .deployment_event(
                "rolled_back",
                serde_json::json!({
                    "name": order.name,
                    "variant": variant.name,
                    "model": variant.model.to_string(),
                    "version": version.map(|v| v.to_string()),
                    "stable_variant": stable,
                    "reason": order.verdict.reason,
                    "generation": generation,
                }),
            )
            .await;
        Ok(())
    }

    /// Loads every stored deployment (at start). Failures are kept per variant, not fatal.
    pub async fn restore(&self) -> Result<usize> {
        let stored = self.all_deployments().await?;
        let count = stored.len();
        for d in stored {
            let live = self.load(d, false, None).await?;
            self.install(live);
        }
        Ok(count)
    }

    pub async fn create(&self, actor: &Actor, name: &str, spec: DeploymentSpec) -> Result<DeploymentView> {
        let event = AuditEvent::new(actor, "deployment.create", "deployment", name);
        let res = async {
            validate_name("name", name)?;
            spec.validate()?;
            match self.store.get_deployment(name).await {
                Ok(_) => {
                    return Err(plinth_store::Error::Serving(plinth_store::ServingError::DeploymentExists { name: name.to_owned() }).into());
                }
                Err(plinth_store::Error::Serving(plinth_store::ServingError::DeploymentNotFound { .. })) => {}
                Err(e) => return Err(e.into()),
            }
            let draft = Deployment {
                name: name.to_owned(),
                spec: spec.clone(),
                generation: 1,
                created_by: actor.name.clone(),
                created_at: 0,
                updated_at: 0,
            };
            let live = self.load(draft, true, None).await?;
            let record = Record::of(|d: &Deployment| event.clone().with_changes(describe(None, &d.spec)));
            let new = NewDeployment { name: name.to_owned(), spec, created_by: actor.name.clone(), now: plinth_core::time::now_millis() };
            let stored = self.store.create_deployment(&new, record).await?;
            Ok(self.switch(live, stored))
        }
        .await;
        append_failure(&self.audit, event, res).await
    }

    /// Replaces the spec. `expected_generation`: the generation the caller read (a compare-and-set);
    /// `None` updates whatever is stored. The new variants are loaded and warmed before the switch.
    pub async fn update(
        &self,
        actor: &Actor,
        name: &str,
        spec: DeploymentSpec,
        expected_generation: Option<i64>,
    ) -> Result<DeploymentView> {
        let event = AuditEvent::new(actor, "deployment.update", "deployment", name);
        let res = async {
            validate_name("name", name)?;
            spec.validate()?;
            let current = self.store.get_deployment(name).await?;
            let expected = expected_generation.unwrap_or(current.generation);
            let draft = Deployment { spec: spec.clone(), ..current.clone() };
            let previous = self.live(name).ok();
            let live = self.load(draft, true, previous.as_deref()).await?;
            let record = Record::of(|d: &Deployment| event.clone().with_changes(describe(Some(&current.spec), &d.spec)));
            let stored = self.store.update_deployment(name, expected, &spec, plinth_core::time::now_millis(), record).await?;
            Ok(self.switch(live, stored))
        }
        .await;
        append_failure(&self.audit, event, res).await
    }

    pub async fn delete(&self, actor: &Actor, name: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "deployment.delete", "deployment", name);
        let res = async {
            let record = Record::of(|d: &Deployment| {
                event.clone().with_changes(describe(Some(&d.spec), &DeploymentSpec { variants: vec![], ..d.spec.clone() }))
            });
            self.store.delete_deployment(name, record).await?;
            self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
            self.objectives.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
            Ok(())
        }
        .await;
        append_failure(&self.audit, event, res).await
    }

    pub async fn get(&self, name: &str) -> Result<DeploymentView> {
        Ok(self.view(self.store.get_deployment(name).await?))
    }

    /// A page of deployments by name; `restrict_to`: only these names (what the caller may read),
    /// paged among themselves so a page never hints at the others.
    pub async fn list(
        &self,
        max_results: Option<i64>,
        page_token: Option<&str>,
        restrict_to: Option<&std::collections::HashSet<String>>,
    ) -> Result<plinth_core::tracking::Page<DeploymentView>> {
        let page = PageRequest::from_client(max_results, 100, 1000, page_token)?;
        let rows: Rows<Deployment> = match restrict_to {
            None => self.store.list_deployments(page).await?,
            Some(names) => {
                let mut readable: Vec<Deployment> = self.all_deployments().await?.into_iter().filter(|d| names.contains(&d.name)).collect();
                let start = usize::try_from(page.offset).unwrap_or(usize::MAX).min(readable.len());
                let end = start.saturating_add(usize::try_from(page.limit).unwrap_or(usize::MAX)).min(readable.len());
                Rows { has_more: end < readable.len(), items: readable.drain(start..end).collect() }
            }
        };
        let rows = Rows { items: rows.items.into_iter().map(|d| self.view(d)).collect(), has_more: rows.has_more };
        Ok(rows.into_page(page))
    }

    fn live(&self, name: &str) -> Result<Arc<Live>> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| plinth_store::Error::Serving(plinth_store::ServingError::DeploymentNotFound { name: name.to_owned() }).into())
    }

    /// How the deployment meets its objective on this node; `None` when it declares none.
    pub fn objective(&self, name: &str) -> Result<Option<ObjectiveReport>> {
        let live = self.live(name)?;
        let Some(objective) = live.deployment.spec.objective.clone() else { return Ok(None) };
        let watch = self.objectives.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned();
        let Some(watch) = watch else { return Ok(None) };
        let now = watch.origin.elapsed().as_secs();
        let stats = watch.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stats(now);
        let seen = stats.requests > 0;
        Ok(Some(ObjectiveReport {
            observed_secs: now.min(u64::from(objective.window_secs)),
            requests: stats.requests,
            errors: stats.errors,
            faults: stats.faults,
            latency: (seen && objective.latency_ms.is_some()).then(|| stats.quantile(objective.latency_percentile)),
            share_within_latency: objective.latency_ms.filter(|_| seen).map(|ms| stats.share_within(Duration::from_secs_f64(ms / 1e3))),
            availability: stats.availability(),
            objective,
        }))
    }

    /// Whether the deployment can answer: every primary with weight is loaded.
    pub fn ready(&self, name: &str) -> Result<bool> {
        Ok(self.live(name)?.ready())
    }

    /// Whether every deployment this node serves can answer.
    pub fn all_ready(&self) -> bool {
        self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().all(|l| l.ready())
    }

    /// The inputs and outputs requests use: the first ready primary's model's.
    pub fn metadata(&self, name: &str) -> Result<ModelMetadata> {
        let live = self.live(name)?;
        let mut versions: Vec<i64> = live.variants.iter().flatten().filter(|v| !v.spec.is_shadow()).map(|v| v.version).collect();
        versions.sort_unstable();
        versions.dedup();
        let first = live
            .variants
            .iter()
            .flatten()
            .find(|v| !v.spec.is_shadow())
            .ok_or_else(|| Error::NotReady { name: name.to_owned(), reason: "no variant is loaded".to_owned() })?;
        // With a feature service, what requests carry: the entity keys (and request-time inputs).
        let inputs = match &live.feature_shape {
            Some(shape) => request_inputs(&first.inputs, shape),
            None => first.inputs.clone(),
        };
        Ok(ModelMetadata { versions, platform: "onnx_onnxv1", inputs, outputs: first.outputs.clone() })
    }

    /// The model's inputs for a request: as given, or, when the deployment names a feature service,
    /// assembled from the request's entity keys, the looked-up features and its other inputs.
    async fn with_features(
        &self,
        live: &Live,
        variant: &LiveVariant,
        inputs: Vec<Tensor>,
        keep: bool,
    ) -> Result<(Vec<Tensor>, Option<Vec<FeatureColumn>>)> {
        let (Some(service), Some(shape)) = (live.deployment.spec.feature_service.as_deref(), live.feature_shape.as_ref()) else {
            return Ok((inputs, None));
        };
        let lookup = self.features.as_ref().ok_or_else(|| Error::Internal("the feature store is not available".into()))?;
        let (keys, rest) = split_entities(inputs, &shape.join_keys).map_err(Error::BadInput)?;
        let columns = lookup.lookup(service, &keys).await?;
        let assembled =
            assemble(&variant.inputs, rest, &columns, &live.deployment.spec.feature_defaults, &keys).map_err(Error::BadInput)?;
        Ok((assembled, keep.then_some(columns)))
    }

    /// Runs one request on the variant its routing key (or the weights) picks.
    pub async fn infer(&self, name: &str, inputs: Vec<Tensor>, request: RequestInfo<'_>) -> Result<Inference> {
        let live = self.live(name)?;
        let idx = live
            .router
            .pick(request.routing_key)
            .ok_or_else(|| Error::NotReady { name: name.to_owned(), reason: "no variant with traffic is loaded".to_owned() })?;
        let variant = match &live.variants[idx] {
            Ok(v) => v.clone(),
            Err(reason) => return Err(Error::NotReady { name: name.to_owned(), reason: reason.clone() }),
        };
        let started = std::time::Instant::now();
        let labels = labels(name, &variant.spec.name);
        // With a feature service, the model's inputs are assembled from the looked-up features.
        let (inputs, features) = match self.with_features(&live, &variant, inputs, request.return_features).await {
            Ok((inputs, features)) => (Ok(inputs), features),
            Err(e) => (Err(e), None),
        };
        // Shadows get their copy only once the primary answered, off the request's path.
        let shadows = live.shadows_for_this_request();
        let copy = inputs.as_ref().ok().filter(|_| !shadows.is_empty()).cloned();
        let logging = self.predictions.enabled();
        let logged_inputs =
            inputs.as_ref().ok().filter(|_| logging && live.deployment.spec.log_inputs.is_some_and(|f| sampled(&live.logged, f))).cloned();
        let res: Result<Vec<Tensor>> = async {
            let inputs = inputs?;
            check_inputs(&variant.inputs, &inputs)?;
            let request = InferRequest::new(inputs)?;
            metrics::gauge!(crate::metrics::QUEUE_DEPTH, &labels).set(variant.batcher.queued() as f64);
            Ok(variant.batcher.submit(request, live.timeout).await?)
        }
        .await;
        let outcome = match &res {
            Ok(_) => "OK",
            Err(e) => e.error_code().name(),
        };
        let mut counted = labels.to_vec();
        counted.push(("outcome", outcome.to_owned()));
        metrics::counter!(crate::metrics::REQUESTS, &counted).increment(1);
        let elapsed = started.elapsed();
        metrics::histogram!(crate::metrics::REQUEST_SECONDS, &labels).record(elapsed.as_secs_f64());
        if live.deployment.spec.objective.is_some() {
            let watch = self.objectives.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned();
            if let Some(watch) = watch {
                let fault = res.as_ref().err().is_some_and(|e| e.error_code().http_status() >= 500);
                watch.record(elapsed, res.is_err(), fault);
            }
        }
        if let Some(monitor) = &live.monitor {
            monitor.record(idx, elapsed, res.is_err());
            if let Some(verdict) = monitor.check(&live.deployment.spec) {
                let order = RollbackOrder { name: name.to_owned(), generation: live.deployment.generation, verdict };
                // The receiver goes only at shutdown, when there is nothing left to roll back.
                let _ = self.orders.send(order);
            }
        }
        if let (Ok(primary), Some(copy)) = (&res, copy) {
            for shadow in shadows {
                tokio::spawn(run_shadow(name.to_owned(), shadow, copy.clone(), primary.clone(), live.timeout));
            }
        }
        let request_id = request.id.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
        if logging {
            self.predictions.append(Prediction {
                request_id: request_id.clone(),
                timestamp_ms: plinth_core::time::now_millis(),
                deployment: name.to_owned(),
                variant: variant.spec.name.clone(),
                model: variant.spec.model.name.clone(),
                model_version: variant.version,
                routing_key: request.routing_key.map(str::to_owned),
                outcome,
                latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
                outputs: res.as_ref().ok().cloned(),
                inputs: logged_inputs,
            });
        }
        Ok(Inference {
            request_id,
            features,
            variant: variant.spec.name.clone(),
            model: variant.spec.model.name.clone(),
            version: variant.version,
            outputs: res?,
        })
    }
}

/// The labels of a variant's metrics.
pub(crate) fn labels(deployment: &str, variant: &str) -> [(&'static str, String); 2] {
    [("deployment", deployment.to_owned()), ("variant", variant.to_owned())]
}

/// The executor of a variant: `Batched`, with the time each request waited and each batch took.
struct Metered<M> {
    inner: Batched<M>,
    labels: [(&'static str, String); 2],
}

impl<M: crate::infer::TensorModel> crate::batcher::Executor<InferRequest, Vec<Tensor>> for Metered<M> {
    fn execute(&self, batch: Vec<InferRequest>) -> std::result::Result<Vec<Vec<Tensor>>, String> {
        let start = std::time::Instant::now();
        for r in &batch {
            metrics::histogram!(crate::metrics::QUEUE_SECONDS, &self.labels)
                .record(start.saturating_duration_since(r.created()).as_secs_f64());
        }
        let rows: usize = batch.iter().map(crate::batcher::Batchable::rows).sum();
        metrics::histogram!(crate::metrics::BATCH_ROWS, &self.labels).record(rows as f64);
        let res = self.inner.execute(batch);
        metrics::histogram!(crate::metrics::COMPUTE_SECONDS, &self.labels).record(start.elapsed().as_secs_f64());
        res
    }
}

/// What to load from a fetched version: the directory when it is an MLflow model (it has an
/// `MLmodel` file), else its one `.onnx` file (a plain ONNX model logged as an artifact), else the
/// directory (whose loading then says what is missing).
async fn model_path(dir: PathBuf) -> PathBuf {
    if tokio::fs::try_exists(dir.join(crate::onnx::MLMODEL)).await.unwrap_or(false) {
        return dir;
    }
    let mut onnx = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) && entry.file_type().await.is_ok_and(|t| t.is_file()) {
                onnx.push(path);
            }
        }
    }
    if onnx.len() == 1 { onnx.remove(0) } else { dir }
}

/// The request's tensors against the model's inputs: every input given once, with its datatype
/// and the model's fixed dimensions after the batch dimension.
pub(crate) fn check_inputs(expected: &[TensorSpec], given: &[Tensor]) -> Result<()> {
    for t in given {
        let Some(spec) = expected.iter().find(|s| s.name == t.name) else {
            let names: Vec<&str> = expected.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::BadInput(format!("unknown input '{}'; the model's inputs are: {}", t.name, names.join(", "))));
        };
        if t.datatype() != spec.datatype {
            return Err(Error::BadInput(format!(
                "input '{}' is {}; the model takes {}",
                t.name,
                t.datatype().as_str(),
                spec.datatype.as_str()
            )));
        }
        let fixed_ok = t.shape.len() == spec.shape.len()
            && t.shape.iter().zip(&spec.shape).skip(1).all(|(got, want)| *want < 0 || i64::try_from(*got).is_ok_and(|g| g == *want));
        if !fixed_ok {
            return Err(Error::BadInput(format!(
                "input '{}' has shape {:?}; the model takes {:?} (-1: any size)",
                t.name, t.shape, spec.shape
            )));
        }
    }
    if let Some(missing) = expected.iter().find(|s| !given.iter().any(|t| t.name == s.name)) {
        return Err(Error::BadInput(format!("input '{}' is missing", missing.name)));
    }
    Ok(())
}

/// The audit record's changes between two specs (the variants and the options that differ).
fn describe(before: Option<&DeploymentSpec>, after: &DeploymentSpec) -> Vec<Change> {
    let variants = |s: &DeploymentSpec| {
        s.variants
            .iter()
            .map(|v| match v.shadow {
                Some(f) => format!("{}={} shadow {f}", v.name, v.model),
                None => format!("{}={} weight {}", v.name, v.model, v.weight),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let options = |s: &DeploymentSpec| {
        let mut out = format!(
            "runtime {}, max_batch_size {}, instances {}, threads {}",
            s.runtime.as_str(),
            s.batching.max_batch_size,
            s.instances,
            s.threads
        );
        if let Some(r) = &s.rollback {
            out.push_str(&format!(", rollback {r}"));
        }
        out
    };
    let mut out = Vec::new();
    let b = before.map(variants);
    let a = variants(after);
    if b.as_deref() != Some(a.as_str()) {
        out.push(Change::new("variants", b, (!a.is_empty()).then_some(a)));
    }
    let (b, a) = (before.map(options), options(after));
    if b.as_deref() != Some(a.as_str()) {
        out.push(Change::new("options", b, Some(a)));
    }
    out
}
