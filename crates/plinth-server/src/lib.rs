//! The composition root: configuration → stores → services → routers; serving; shutdown.
//!
//! Only this crate and the binary read files, flags and the environment. `Server::start`
//! opens the metadata store (migrating it), the artifact store, builds the tracking service
//! and the HTTP router, binds the listener and serves until `shutdown` is called or the
//! process gets SIGINT/SIGTERM; in-flight requests then finish before the stores close.

pub mod config;
mod job_runs;
mod model_source;
mod storage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plinth_api::{ApiLimits, AppState};
use plinth_auth::limiter::Limits;
use plinth_auth::{AuthConfig, AuthService};
use plinth_blob::LocalBlobStore;
use plinth_registry::webhooks::{DispatchConfig, Dispatcher, Outbox};
use plinth_registry::{RegistryConfig, RegistryService};
use plinth_store_sql::{SqlConfig, SqlStore};
use plinth_tracking::{ArtifactRoot, TrackingConfig, TrackingService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the metadata store")]
    Store(#[from] plinth_store_sql::ConnectError),
    #[error("cannot open the artifact store at {path}")]
    Artifacts {
        path: String,
        #[source]
        source: plinth_blob::Error,
    },
    #[error("cannot initialize tracking")]
    Tracking(#[from] plinth_tracking::Error),
    #[error("{0}")]
    Exposed(String),
    /// A configuration value the server cannot use (the message names the key).
    #[error("{0}")]
    Config(String),
    #[error("cannot create the first admin")]
    Auth(#[source] plinth_auth::Error),
    #[error("cannot start the feature store")]
    Features(#[source] plinth_features::Error),
    #[error("cannot load the stored deployments")]
    Serving(#[source] plinth_serving::deployments::Error),
    #[error("cannot start the prediction log in {path}")]
    PredictionLog {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the feature engine's spill directory {path}")]
    Spill {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the job scheduler")]
    Jobs(#[source] plinth_scheduler::Error),
    #[error("cannot prepare the jobs directory {path}")]
    JobsDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the webhook dispatcher")]
    Webhooks(#[source] reqwest::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The authentication service over the metadata store, as configured.
pub fn auth_service(config: &Config, store: Arc<SqlStore>) -> AuthService {
    AuthService::new(
        store.clone(),
        store,
        AuthConfig {
            limits: Limits {
                max_failures_per_user: config.auth.max_failures_per_user,
                max_failures_per_address: config.auth.max_failures_per_address,
                window: Duration::from_secs(config.auth.failure_window_secs),
            },
            max_token_ttl_secs: (config.auth.max_token_ttl_secs > 0).then_some(config.auth.max_token_ttl_secs),
        },
    )
}

/// Opens (and migrates) the metadata store the configuration names, for administrative commands.
pub async fn open_store(config: &Config) -> Result<SqlStore, StartError> {
    Ok(SqlStore::connect(&SqlConfig {
        url: config.database_url(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        sqlite_synchronous_full: config.database.sqlite_synchronous == config::SqliteSynchronous::Full,
    })
    .await?)
}

/// A started server.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Background loops (the webhook dispatcher, promotion expiry, scheduled materialization, metrics upkeep); they stop on the shutdown token.
    background: Vec<tokio::task::JoinHandle<()>>,
    store: SqlStore,
    grace: Duration,
    /// Closed last, so the predictions of the requests that finished in the grace period are kept.
    predictions: Arc<plinth_serving::PredictionLog>,
}

impl Server {
    /// Opens everything and starts serving; returns once the listener is bound.
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        if let Some(problem) = config.exposure_problem() {
            return Err(StartError::Exposed(problem));
        }
        let store = SqlStore::connect(&SqlConfig {
            url: config.database_url(),
            max_connections: config.database.max_connections,
            acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
            sqlite_synchronous_full: config.database.sqlite_synchronous == config::SqliteSynchronous::Full,
        })
        .await?;
        let destination = config.artifacts_destination();
        let blobs = LocalBlobStore::new(&destination)
            .map_err(|source| StartError::Artifacts { path: destination.display().to_string(), source })?;
        let artifact_root = match config.artifacts.default_artifact_root.as_deref().filter(|it| !it.is_empty()) {
            Some(uri) if !uri.starts_with("mlflow-artifacts:") => ArtifactRoot::Direct(uri.to_owned()),
            _ => ArtifactRoot::Proxied,
        };
        let shared = Arc::new(store.clone());
        let tracking = TrackingService::new(
            shared.clone(),
            Arc::new(blobs),
            shared.clone(),
            TrackingConfig { artifact_root, truncate_long_values: config.tracking.truncate_long_values },
        );
        tracking.init().await?;
        let tracking = Arc::new(tracking);
        let serve_artifacts = tracking.config().artifact_root == ArtifactRoot::Proxied;
        let outbox = Outbox::new(shared.clone());
        let registry = RegistryService::new(
            shared.clone(),
            shared.clone(),
            shared.clone(),
            outbox.clone(),
            RegistryConfig {
                promotion_ttl_secs: config.registry.promotion_ttl_secs,
                max_promotion_ttl_secs: config.registry.max_promotion_ttl_secs,
            },
        );
        let registry = Arc::new(registry);
        let auth = Arc::new(auth_service(config, shared.clone()));
        if !config.auth.bootstrap_admin_password.is_empty()
            && auth
                .bootstrap_admin(&config.auth.bootstrap_admin, config.auth.bootstrap_admin_password.expose())
                .await
                .map_err(StartError::Auth)?
        {
            tracing::info!(admin = %config.auth.bootstrap_admin, "Created the first admin from auth.bootstrap_admin_password.");
        }
        let spill = config.features.spill_dir(&config.server.data_dir);
        std::fs::create_dir_all(&spill).map_err(|source| StartError::Spill { path: spill.display().to_string(), source })?;
        let engine = plinth_features::Engine::new(plinth_features::EngineOptions {
            memory_limit_bytes: (config.features.memory_limit_mb as usize).saturating_mul(1 << 20),
            spill_dir: Some(spill),
            entity_chunk_rows: usize::try_from(config.features.entity_chunk_rows).unwrap_or(usize::MAX),
            ..Default::default()
        })
        .map_err(StartError::Features)?;
        let location = config.features.online_store_location(&config.server.data_dir).map_err(StartError::Config)?;
        let online: Arc<dyn plinth_features::online::OnlineStore> = match location {
            config::OnlineStoreLocation::Redis(url) => Arc::new(
                plinth_features::online::redis_store::RedisOnlineStore::connect(&url, &config.features.redis_namespace)
                    .await
                    .map_err(StartError::Features)?,
            ),
            config::OnlineStoreLocation::Embedded(path) => {
                Arc::new(plinth_features::online::redb_store::RedbOnlineStore::open(&path).map_err(StartError::Features)?)
            }
        };
        let features = Arc::new(plinth_features::FeatureService::new(shared.clone(), shared.clone(), engine).with_online_store(online));
        let source = model_source::RegistrySource { registry: registry.clone(), tracking: tracking.clone() };
        let predictions = Arc::new(match config.serving.prediction_log(&config.server.data_dir) {
            Some(log) => {
                let path = log.dir.display().to_string();
                plinth_serving::PredictionLog::start(log).map_err(|source| StartError::PredictionLog { path, source })?
            }
            None => plinth_serving::PredictionLog::disabled(),
        });
        let serving = Arc::new(
            plinth_serving::DeploymentService::new(
                shared.clone(),
                shared.clone(),
                Arc::new(source),
                Arc::new(model_source::OutboxNotifier(outbox.clone())),
                plinth_serving::ServingConfig {
                    onnxruntime_library: config.serving.onnxruntime_library(),
                    model_cache: config.serving.model_cache(&config.server.data_dir),
                },
            )
            .with_prediction_log(predictions.clone())
            .with_feature_lookup(Arc::new(model_source::FeatureStoreLookup(features.clone()))),
        );
        // Deployments come back on start, loaded before the first request; one whose model cannot
        // be loaded any more stays listed with the reason and answers UNAVAILABLE.
        let restored = serving.restore().await.map_err(StartError::Serving)?;
        if restored > 0 {
            tracing::info!(deployments = restored, "Loaded the stored deployments.");
        }
        // Installed before anything records; several servers in one process share it.
        let metrics = plinth_api::metrics::recorder();
        let readiness = plinth_api::Readiness::new();
        let watched = vec![config.server.data_dir.clone(), destination.clone()];
        let floor = config.server.min_free_space_mb.saturating_mul(1 << 20);
        storage::measure(&readiness, &watched, floor);
        // Bound now, so jobs are told the address they log to; connections wait until serving starts.
        let bind = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&bind).await.map_err(|source| StartError::Bind { addr: bind.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: bind, source })?;
        let shutdown = CancellationToken::new();
        let (jobs, sweeps, sweep_task) = if config.jobs.enabled {
            let parts = job_runs::start(config, shared.clone(), tracking.clone(), addr, shutdown.clone()).await?;
            (Some(parts.jobs), Some(parts.sweeps), Some(parts.sweep_task))
        } else {
            (None, None, None)
        };
        let state_jobs = jobs.clone();
        let state = AppState {
            tracking,
            registry: registry.clone(),
            auth,
            features: features.clone(),
            serving: serving.clone(),
            jobs: jobs.clone(),
            sweeps,
            max_code_bytes: config.jobs.max_code_mb.saturating_mul(1 << 20),
            max_entity_bytes: config.features.max_entity_upload_mb.saturating_mul(1 << 20),
            auth_enabled: config.auth.enabled,
            max_request_bytes: config.server.max_request_bytes,
            version: VERSION,
            serve_artifacts,
            readiness: readiness.clone(),
        };
        let app = plinth_api::router(state, &ApiLimits { max_request_bytes: config.server.max_request_bytes });

        // Every fallible step comes before the listener accepts connections: a server that fails to
        // start never served a request.
        let hooks = &config.webhooks;
        let dispatcher = Dispatcher::new(
            outbox,
            DispatchConfig {
                timeout: Duration::from_millis(hooks.timeout_ms),
                max_attempts: hooks.max_attempts,
                initial_backoff: Duration::from_millis(hooks.initial_backoff_ms),
                max_backoff: Duration::from_millis(hooks.max_backoff_ms),
                poll_interval: Duration::from_millis(hooks.poll_interval_ms),
            },
        )
        .map_err(StartError::Webhooks)?;
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await
        });
        let expiry = registry.clone().run_expiry(Duration::from_secs(5), shutdown.clone());
        let schedule = features.clone().run_schedule(Duration::from_secs(5), shutdown.clone());
        let follow = serving.clone().run_follow(Duration::from_millis(config.serving.follow_interval_ms), shutdown.clone());
        // Drains histogram samples into their buckets even when nobody scrapes.
        let upkeep = {
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => metrics.run_upkeep(),
                    }
                }
            }
        };
        let background = vec![
            tokio::spawn(dispatcher.run(shutdown.clone())),
            tokio::spawn(expiry),
            tokio::spawn(schedule),
            tokio::spawn(upkeep),
            tokio::spawn(follow),
        ];
        let mut background = background;
        // The job scheduler stops on the same token; running jobs' supervisors go on without it.
        if let Some(task) = state_jobs.as_ref().and_then(|jobs| jobs.take_task()) {
            background.push(task);
        }
        background.extend(sweep_task);
        background.push(tokio::spawn(storage::run(
            readiness,
            watched,
            floor,
            Duration::from_secs(config.server.storage_check_secs),
            shutdown.clone(),
        )));
        Ok(Server { addr, shutdown, task, background, store, grace: Duration::from_secs(config.server.shutdown_grace_secs), predictions })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish
    /// (up to the grace period) and closes the stores.
    pub async fn wait(self) -> std::io::Result<()> {
        let Server { shutdown, mut task, background, store, grace, predictions, .. } = self;
        let res = tokio::select! {
            res = &mut task => res,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "Requests still running after the grace period; stopping anyway.");
                task.abort();
                Ok(Ok(()))
            }
        };
        for mut job in background {
            if tokio::time::timeout(Duration::from_secs(5), &mut job).await.is_err() {
                job.abort();
            }
        }
        store.close().await;
        // The writer thread finishes its files (they become readable); not on an async worker.
        let _ = tokio::task::spawn_blocking(move || predictions.close()).await;
        match res {
            Ok(inner) => inner,
            Err(join) if join.is_cancelled() => Ok(()),
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

/// Registers SIGINT and SIGTERM handlers now and returns a future that resolves on either, so a
/// signal that arrives right after the readiness line is not missed.
pub fn termination_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
