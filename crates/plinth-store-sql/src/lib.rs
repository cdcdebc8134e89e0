//! SQLite and PostgreSQL adapters of Plinth's storage ports, on sqlx's `Any` driver.
//!
//! One code path serves both databases: statements use `$N` placeholders (SQLite accepts them)
//! and the few differences (transaction start, row locks, DDL) are confined to `Dialect` and
//! to the per-dialect migrations under `migrations/`. SQLite runs in WAL mode with one writer
//! connection (writes queue in-process instead of fighting over the file lock) and a pool of
//! readers; PostgreSQL uses one pool and retries transactions that lose a deadlock or a
//! serialization race.

mod audit;
mod auth;
mod features;
mod filter_sql;
mod jobs;
mod migrate;
mod registry;
mod rows;
mod serving;
mod sql;
mod sweeps;
mod tracking;
mod webhooks;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use migrate::MIGRATIONS;

/// Which SQL database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Connection settings for `SqlStore::connect`. No `Default`: the caller decides.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    /// Maximum pooled connections (PostgreSQL) or reader connections (SQLite).
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection before `TEMPORARILY_UNAVAILABLE`.
    pub acquire_timeout: Duration,
    /// SQLite only: `synchronous=FULL` (every commit fsynced) rather than `NORMAL`.
    pub sqlite_synchronous_full: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedScheme,
    #[error("cannot open the database")]
    Open(#[source] sqlx::Error),
    #[error("cannot apply schema migration {version}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("the database has schema version {found}, newer than this binary knows ({known}); upgrade Plinth")]
    SchemaTooNew { found: i64, known: i64 },
}

/// The SQL adapter of the storage ports.
#[derive(Debug, Clone)]
pub struct SqlStore {
    dialect: Dialect,
    /// Pool for reads (and, on PostgreSQL, writes).
    reader: AnyPool,
    /// Pool for writes: one connection on SQLite, the reader pool on PostgreSQL.
    writer: AnyPool,
}

impl SqlStore {
    /// Opens (creating a SQLite file if needed) and migrates the database.
    pub async fn connect(config: &SqlConfig) -> Result<SqlStore, ConnectError> {
        sqlx::any::install_default_drivers();
        let dialect = if config.url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(ConnectError::UnsupportedScheme);
        };
        let (reader, writer) = match dialect {
            Dialect::Sqlite => {
                if let Some(parent) = sqlite_file(&config.url).and_then(|p| p.parent().map(std::path::Path::to_path_buf))
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(&parent).map_err(|e| ConnectError::Open(sqlx::Error::Io(e)))?;
                }
                let url = sqlite_url(&config.url);
                let options: AnyConnectOptions = url.parse().map_err(ConnectError::Open)?;
                let options = options.disable_statement_logging();
                let synchronous = if config.sqlite_synchronous_full { "FULL" } else { "NORMAL" };
                let writer =
                    sqlite_pool(1, config.acquire_timeout, synchronous).connect_with(options.clone()).await.map_err(ConnectError::Open)?;
                writer.execute("PRAGMA journal_mode = WAL").await.map_err(ConnectError::Open)?;
                let reader = sqlite_pool(config.max_connections, config.acquire_timeout, synchronous)
                    .connect_with(options)
                    .await
                    .map_err(ConnectError::Open)?;
                (reader, writer)
            }
            Dialect::Postgres => {
                let options: AnyConnectOptions = config.url.parse().map_err(ConnectError::Open)?;
                let options = options.disable_statement_logging();
                let pool = AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(ConnectError::Open)?;
                (pool.clone(), pool)
            }
        };
        let store = SqlStore { dialect, reader, writer };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection; in-flight calls finish first.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The file of a `sqlite://` URL, unless it is an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Adds `mode=rwc` so a missing SQLite file is created.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn sqlite_pool(max: u32, acquire_timeout: Duration, synchronous: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max.max(1)).min_connections(0).acquire_timeout(acquire_timeout).idle_timeout(None).after_connect(
        move |conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA case_sensitive_like = ON").await?;
                let sync = match synchronous {
                    "FULL" => "PRAGMA synchronous = FULL",
                    _ => "PRAGMA synchronous = NORMAL",
                };
                conn.execute(sync).await?;
                Ok(())
            })
        },
    )
}
