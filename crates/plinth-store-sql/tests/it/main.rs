//! Integration tests of the SQL adapters: the storage conformance suite on SQLite and PostgreSQL.
//!
//! PostgreSQL runs when `PLINTH_TEST_POSTGRES_URL` names a server (the README's test command
//! always sets it); each test gets a scratch database that is dropped afterwards.

mod pg_faults;
mod postgres;
mod sqlite;

use std::time::Duration;

use plinth_store_sql::SqlConfig;

fn config(url: String) -> SqlConfig {
    SqlConfig { url, max_connections: 8, acquire_timeout: Duration::from_secs(30), sqlite_synchronous_full: false }
}
