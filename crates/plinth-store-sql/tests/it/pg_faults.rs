//! PostgreSQL faults the store leaves by itself: backends killed under it (a server restart, an
//! operator's `pg_terminate_backend`) and statements cancelled by a timeout. After each, the next
//! writes succeed on the same `SqlStore`, with no restart.

use std::time::Duration;

use plinth_store::TrackingStore;
use plinth_store::tracking::{ArtifactLocation, NewExperiment};
use plinth_store_sql::SqlStore;
use sqlx::{AssertSqlSafe, Connection, Executor};

fn experiment(name: &str) -> NewExperiment {
    NewExperiment {
        name: name.to_owned(),
        artifact_location: ArtifactLocation::UnderRoot("mlflow-artifacts:".into()),
        tags: vec![],
        now: 1,
    }
}

/// A scratch database (dropped at the end) and an admin connection to the server.
async fn scratch() -> Option<(String, String, sqlx::AnyConnection)> {
    let (admin_url, name, url) = super::postgres::scratch_database("fault test").await?;
    let admin = sqlx::AnyConnection::connect(&admin_url).await.expect("connect to PLINTH_TEST_POSTGRES_URL");
    Some((url, name, admin))
}

async fn kill_backends(admin: &mut sqlx::AnyConnection, database: &str) -> i64 {
    let sql = format!("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = '{database}'");
    let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *admin).await.expect("terminate");
    sqlx::Row::get::<i64, _>(&row, "n")
}

/// Writes until one succeeds (the first may still meet the fault it follows), within a few tries.
async fn write_succeeds(store: &SqlStore, name: &str) {
    let mut last = None;
    for _ in 0..3 {
        match store.create_experiment(experiment(name), plinth_store::audit::Record::none()).await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
    }
    panic!("writes did not recover: {last:?}");
}

#[tokio::test]
async fn killed_backends_and_timed_out_statements_leave_no_wedged_connection() {
    let Some((url, name, mut admin)) = scratch().await else { return };
    let store = SqlStore::connect(&super::config(url.clone())).await.expect("connect");
    store.create_experiment(experiment("before"), plinth_store::audit::Record::none()).await.expect("write");

    // Every backend of the store killed at once, as a PostgreSQL restart does.
    assert!(kill_backends(&mut admin, &name).await >= 1, "the store had no connection to kill");
    // The pool tests a connection before handing it out: the very next write gets a live one.
    store.create_experiment(experiment("after-kill"), plinth_store::audit::Record::none()).await.expect("the first write after the kill");
    for i in 0..20 {
        store
            .create_experiment(experiment(&format!("after-kill-{i}")), plinth_store::audit::Record::none())
            .await
            .expect("writes after the kill");
    }

    // A statement cancelled by a timeout, inside a write transaction: a table lock held elsewhere
    // makes the store's write wait past its session's statement_timeout.
    admin.execute(AssertSqlSafe(format!("ALTER DATABASE {name} SET statement_timeout = '300ms'"))).await.expect("timeout");
    kill_backends(&mut admin, &name).await;
    let mut locker = sqlx::AnyConnection::connect(&url).await.expect("locker");
    locker.execute("SET statement_timeout = 0").await.expect("no timeout for the locker");
    locker.execute("BEGIN").await.expect("begin");
    locker.execute("LOCK TABLE experiments IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let started = std::time::Instant::now();
    let refused = store.create_experiment(experiment("timed-out"), plinth_store::audit::Record::none()).await;
    assert!(refused.is_err(), "the write should have timed out behind the lock");
    assert!(started.elapsed() < Duration::from_secs(10), "a timed-out write must answer quickly");
    locker.execute("ROLLBACK").await.expect("release");
    admin.execute(AssertSqlSafe(format!("ALTER DATABASE {name} RESET statement_timeout"))).await.expect("reset");
    // Connections opened with the timeout keep it for their session; the writes work regardless.
    write_succeeds(&store, "after-timeout").await;
    for i in 0..20 {
        store
            .create_experiment(experiment(&format!("after-timeout-{i}")), plinth_store::audit::Record::none())
            .await
            .expect("writes after the timeout");
    }

    store.close().await;
    drop(locker);
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.expect("drop scratch");
}
