//! Start, readiness, health, version, configuration checks, graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::{bin, create_run, start};

#[tokio::test]
async fn readiness_health_and_version() {
    let server = start();
    let client = reqwest::Client::new();
    let health = client.get(format!("{}/health", server.url)).send().await.expect("health");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "OK");
    let version = client.get(format!("{}/version", server.url)).send().await.expect("version").text().await.expect("body");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let (status, info) = super::get(&client, &server.url, "/api/3.0/mlflow/server-info").await;
    assert_eq!(status, 200);
    assert_eq!(info["store_type"], "SqlStore");
    let (status, body) = super::get(&client, &server.url, "/api/2.0/mlflow/experiments/get?experiment_id=0").await;
    assert_eq!((status, body["experiment"]["name"].as_str()), (200, Some("Default")));
}

#[tokio::test]
async fn missing_data_directories_are_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("does/not/exist/yet");
    let server = plinth_test_support::TestServer::start_in(bin(), &nested, &[]).expect("starts on a new directory");
    let (status, _) = super::get(&reqwest::Client::new(), &server.url, "/api/2.0/mlflow/experiments/get?experiment_id=0").await;
    assert_eq!(status, 200);
    assert!(nested.join("plinth.db").is_file());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_upload_finish() {
    let mut server = start();
    let client = reqwest::Client::new();
    let (exp_id, run_id) = create_run(&client, &server.url, "shutdown").await;
    // A body that arrives in slices, so the request is still running when SIGTERM comes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/slow.bin", server.url);
    let upload = tokio::spawn(async move {
        let body = reqwest::Body::wrap_stream(tokio_stream(rx));
        client.put(url).body(body).send().await.map(|r| r.status().as_u16())
    });
    tx.send(Ok(Bytes::from(vec![1u8; 1 << 16]))).await.expect("send");
    // Wait until the server has started writing the upload before asking it to stop.
    let staging = server.data_dir.join("artifacts/.plinth-staging");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = server.pid();
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    for _ in 0..4 {
        tx.send(Ok(Bytes::from(vec![2u8; 1 << 16]))).await.expect("send");
    }
    drop(tx);
    assert_eq!(upload.await.expect("join").expect("upload completes"), 200);
    let status = server.terminate(Duration::from_secs(20)).expect("stops");
    assert!(status.success(), "clean exit after SIGTERM: {status:?}\n{}", server.log());
    let stored = server.data_dir.join(format!("artifacts/{exp_id}/{run_id}/artifacts/slow.bin"));
    assert_eq!(std::fs::metadata(stored).expect("file complete").len(), 5 << 16);
    assert!(!server.log().contains("panicked"));
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[test]
fn config_check_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plinth.toml");
    std::fs::write(&file, "[database]\nurl = \"mysql://u:hunter2@h/db\"\nmax_connections = 0\n").expect("write");
    let out = std::process::Command::new(bin()).args(["config", "check", "--config"]).arg(&file).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.url") && err.contains("database.max_connections"), "{err}");
    assert!(!err.contains("hunter2"), "secrets are not printed: {err}");
    let out = std::process::Command::new(bin()).args(["config", "print-default"]).output().expect("run");
    std::fs::write(&file, &out.stdout).expect("write");
    let out = std::process::Command::new(bin()).args(["config", "check", "--config"]).arg(&file).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(bin()).args(["config", "check"]).env("PLINTH__SERVER__PROT", "1").output().expect("run");
    assert!(!out.status.success(), "unknown keys from the environment are errors too");
}

#[tokio::test]
async fn delete_experiment_json_is_accepted() {
    let server = start();
    let client = reqwest::Client::new();
    let (exp_id, _) = create_run(&client, &server.url, "del").await;
    let (status, _) = super::post(&client, &server.url, "/api/2.0/mlflow/experiments/delete", json!({"experiment_id": exp_id})).await;
    assert_eq!(status, 200);
}
