//! Faults the server leaves by itself, without a restart: a full disk under the data directory.
//!
//! The data directory lives on a small tmpfs mounted for the test. Mounting needs root (CAP_SYS_ADMIN);
//! the test command runs as root and sets `PLINTH_TEST_REQUIRE_MOUNT=1`, so there a refused mount
//! fails the test. A plain `cargo test` without the rights says it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plinth_test_support::TestServer;
use serde_json::{Value, json};

use super::{bin, create_run, get, post};

/// A tmpfs of `size_mb`, unmounted (lazily, so a still-open file cannot keep it) on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mb: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"]).arg(&path).output().expect("run mount");
        if out.status.success() {
            return Some(SmallDisk { path, _dir: dir });
        }
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(std::env::var_os("PLINTH_TEST_REQUIRE_MOUNT").is_none(), "PLINTH_TEST_REQUIRE_MOUNT is set but mount failed: {why}");
        eprintln!("SKIPPED: the full-disk test needs the right to mount a tmpfs ({why})");
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `dir` with a filler file until it refuses a write.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // What is left is smaller than a chunk; take it too.
    while file.write_all(&[0u8; 512]).is_ok() {}
    let _ = file.sync_all();
    path
}

/// Every file and directory below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// The value of an unlabelled gauge on `/metrics`.
async fn gauge(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = client.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

fn batch(run_id: &str, n: usize) -> Value {
    let metrics: Vec<_> = (0..50).map(|i| json!({"key": "loss", "value": i as f64, "timestamp": 1, "step": n * 50 + i})).collect();
    json!({"run_id": run_id, "metrics": metrics, "params": [{"key": format!("p{n}"), "value": "x".repeat(200)}]})
}

fn is_disk_full(status: u16, body: &Value) -> bool {
    status == 503
        && body["error_code"] == "TEMPORARILY_UNAVAILABLE"
        && body["message"].as_str().is_some_and(|m| m.contains("out of disk space") && m.contains("nothing was written"))
}

#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_and_writes_resume_once_space_is_freed() {
    let Some(disk) = SmallDisk::mount(40) else { return };
    let data = disk.path.join("data");
    // The config lives off the small disk; free space is measured every second.
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_dir.path().join("plinth.toml");
    std::fs::write(&config, "[server]\nstorage_check_secs = 1\nmin_free_space_mb = 1\n").expect("config");
    let config = config.to_str().expect("utf-8").to_owned();
    let mut server = TestServer::start_in(bin(), &data, &["--config", &config]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let (exp_id, run_id) = create_run(&client, &url, "disk").await;
    let mut acknowledged = 0usize;
    for n in 0..5 {
        let (status, body) = post(&client, &url, "/api/2.0/mlflow/runs/log-batch", batch(&run_id, n)).await;
        assert_eq!(status, 200, "{body}");
        acknowledged += 1;
    }

    let filler = fill(&disk.path);
    // Writes now fail, each with the same clear answer, never a 500; count what was still acknowledged.
    let mut refused = 0;
    for n in 5..400 {
        let (status, body) = post(&client, &url, "/api/2.0/mlflow/runs/log-batch", batch(&run_id, n)).await;
        if status == 200 {
            acknowledged += 1;
            continue;
        }
        assert!(is_disk_full(status, &body), "a write on a full disk answered {status} {body}");
        refused += 1;
        if refused >= 5 {
            break;
        }
    }
    assert!(refused >= 5, "the disk never filled up");
    // Its own connection: the server answers before reading the whole body and then closes it.
    let upload = reqwest::Client::new()
        .put(format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/big.bin"))
        .body(vec![1u8; 4 << 20])
        .send()
        .await
        .expect("upload");
    let status = upload.status().as_u16();
    let body: Value = upload.json().await.unwrap_or(Value::Null);
    assert!(is_disk_full(status, &body), "an upload to a full disk answered {status} {body}");
    // Reads are served meanwhile, and no half-written artifact is visible.
    let (status, listed) = get(&client, &url, &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}")).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed["files"].as_array().is_none_or(|f| f.is_empty()), "{listed}");
    // Readiness and the gauge say so.
    let (status, ready) = get(&client, &url, "/ready").await;
    assert_eq!((status, ready["reasons"][0]["reason"].as_str()), (503, Some("STORAGE_FULL")), "{ready}");
    assert_eq!(gauge(&client, &url, "plinth_storage_full").await, Some(1.0));
    // No staging leftovers from the refused upload.
    let staging: Vec<_> = walk(&data.join("artifacts").join(".plinth-staging"));
    assert!(staging.iter().all(|p| p.is_dir()), "staging leftovers: {staging:?}");

    // Space comes back: writes resume by themselves, on the same server process.
    std::fs::remove_file(filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = post(&client, &url, "/api/2.0/mlflow/runs/log-batch", batch(&run_id, 1000)).await;
        if status == 200 {
            acknowledged += 1;
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume after space was freed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &url, "/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "/ready stayed 503 after space was freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gauge(&client, &url, "plinth_storage_full").await, Some(0.0));
    for n in 1001..1005 {
        let (status, body) = post(&client, &url, "/api/2.0/mlflow/runs/log-batch", batch(&run_id, n)).await;
        assert_eq!(status, 200, "{body}");
        acknowledged += 1;
    }
    let upload = client
        .put(format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/big.bin"))
        .body(vec![1u8; 4 << 20])
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);

    // Nothing acknowledged is lost, also across a kill -9.
    server.kill9();
    let server = TestServer::start_in(bin(), &data, &["--config", &config]).expect("restart");
    let (status, history) =
        get(&client, &server.url, &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss&max_results=100000")).await;
    assert_eq!(status, 200, "{history}");
    let steps: std::collections::HashSet<i64> =
        history["metrics"].as_array().expect("metrics").iter().map(|m| m["step"].as_i64().expect("step")).collect();
    assert_eq!(steps.len(), acknowledged * 50, "acknowledged batches lost");
    drop(server);
}
