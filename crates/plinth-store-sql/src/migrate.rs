//! Embedded schema migrations, applied in order on start, each in its own transaction.
//!
//! The applied versions are recorded in `plinth_schema_migrations`. On PostgreSQL an advisory
//! lock keeps two servers starting at once from racing; on SQLite the single writer does.

use sqlx::{AssertSqlSafe, Executor, Row};

use crate::{ConnectError, Dialect, SqlStore};

pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration this binary knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tracking",
        sqlite: include_str!("../migrations/sqlite/0001_tracking.sql"),
        postgres: include_str!("../migrations/postgres/0001_tracking.sql"),
    },
    Migration {
        version: 2,
        description: "registry",
        sqlite: include_str!("../migrations/sqlite/0002_registry.sql"),
        postgres: include_str!("../migrations/postgres/0002_registry.sql"),
    },
    Migration {
        version: 3,
        description: "auth",
        sqlite: include_str!("../migrations/sqlite/0003_auth.sql"),
        postgres: include_str!("../migrations/postgres/0003_auth.sql"),
    },
    Migration {
        version: 4,
        description: "features",
        sqlite: include_str!("../migrations/sqlite/0004_features.sql"),
        postgres: include_str!("../migrations/postgres/0004_features.sql"),
    },
    Migration {
        version: 5,
        description: "feature_lineage",
        sqlite: include_str!("../migrations/sqlite/0005_feature_lineage.sql"),
        postgres: include_str!("../migrations/postgres/0005_feature_lineage.sql"),
    },
    Migration {
        version: 6,
        description: "serving",
        sqlite: include_str!("../migrations/sqlite/0006_serving.sql"),
        postgres: include_str!("../migrations/postgres/0006_serving.sql"),
    },
    Migration {
        version: 7,
        description: "deployment_policies",
        sqlite: include_str!("../migrations/sqlite/0007_deployment_policies.sql"),
        postgres: include_str!("../migrations/postgres/0007_deployment_policies.sql"),
    },
    Migration {
        version: 8,
        description: "jobs",
        sqlite: include_str!("../migrations/sqlite/0008_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0008_jobs.sql"),
    },
    Migration {
        version: 9,
        description: "sweeps",
        sqlite: include_str!("../migrations/sqlite/0009_sweeps.sql"),
        postgres: include_str!("../migrations/postgres/0009_sweeps.sql"),
    },
];

const PG_MIGRATION_LOCK: i64 = 0x706c_696e_7468; // "plinth"

pub(crate) async fn run(store: &SqlStore) -> Result<(), ConnectError> {
    let fail = |version| move |source| ConnectError::Migrate { version, source };
    let mut conn = store.writer.acquire().await.map_err(ConnectError::Open)?;
    if store.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *conn).await.map_err(fail(0))?;
    }
    let res = async {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS plinth_schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(fail(0))?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM plinth_schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(fail(0))?;
        let current: i64 = row.try_get("v").map_err(fail(0))?;
        let known = MIGRATIONS.last().map_or(0, |it| it.version);
        if current > known {
            return Err(ConnectError::SchemaTooNew { found: current, known });
        }
        for migration in MIGRATIONS.iter().filter(|it| it.version > current) {
            let sql = match store.dialect {
                Dialect::Sqlite => migration.sqlite,
                Dialect::Postgres => migration.postgres,
            };
            let begin = match store.dialect {
                Dialect::Sqlite => "BEGIN IMMEDIATE",
                Dialect::Postgres => "BEGIN",
            };
            conn.execute(begin).await.map_err(fail(migration.version))?;
            // Another process may have applied it between our first read and this transaction.
            let row = sqlx::query("SELECT COUNT(*) AS n FROM plinth_schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_one(&mut *conn)
                .await
                .map_err(fail(migration.version))?;
            if row.try_get::<i64, _>("n").map_err(fail(migration.version))? > 0 {
                conn.execute("ROLLBACK").await.map_err(fail(migration.version))?;
                continue;
            }
            let applied = async {
                for statement in split_statements(sql) {
                    conn.execute(AssertSqlSafe(statement)).await?;
                }
                sqlx::query("INSERT INTO plinth_schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
                    .bind(migration.version)
                    .bind(migration.description)
                    .bind(plinth_core::time::now_millis())
                    .execute(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(())
            }
            .await;
            match applied {
                Ok(()) => conn.execute("COMMIT").await.map_err(fail(migration.version))?,
                Err(source) => {
                    let _ = conn.execute("ROLLBACK").await;
                    return Err(ConnectError::Migrate { version: migration.version, source });
                }
            };
            tracing::info!(version = migration.version, description = migration.description, "Schema migration applied.");
        }
        Ok(())
    }
    .await;
    if store.dialect == Dialect::Postgres {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *conn).await;
    }
    res
}

/// Splits a migration file into statements at `;` line ends, dropping `--` comment lines.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_split_into_statements() {
        for (idx, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, idx as i64 + 1, "versions are consecutive");
            // Every statement is a CREATE or an ALTER: a mis-split would leave a fragment.
            for statement in super::split_statements(m.sqlite).iter().chain(&super::split_statements(m.postgres)) {
                let start = statement.trim_start();
                assert!(start.starts_with("CREATE ") || start.starts_with("ALTER TABLE "), "{statement}");
                assert!(statement.trim_end().ends_with(';'), "{statement}");
            }
            assert!(!super::split_statements(m.sqlite).is_empty(), "migration {} has statements", m.version);
            assert_eq!(super::split_statements(m.sqlite).len(), super::split_statements(m.postgres).len());
        }
    }
}
