//! Faults the server leaves by itself, without a restart: a full disk under the data directory, an
//! artifact directory made read-only, the Redis online store stopped and started, PostgreSQL
//! restarted under load.
//!
//! Each test makes its own fault on its own resources (a small tmpfs it mounts, a Redis server and
//! a PostgreSQL cluster it starts on free ports), never on the services other tests share. That
//! needs root (mounting; running PostgreSQL as its own user) and the redis-server and PostgreSQL
//! binaries; the test command runs as root and sets `PLINTH_TEST_FAULTS_REQUIRED=1`, so there a
//! missing right or binary fails the test. A plain `cargo test` without them says it skipped.

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
        skipped(&format!("mounting a tmpfs failed: {}", String::from_utf8_lossy(&out.stderr)));
        None
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).output().expect("run mount");
        assert!(out.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A fault test that cannot run here: a failure under the test command, a note under plain `cargo test`.
fn skipped(why: &str) {
    assert!(std::env::var_os("PLINTH_TEST_FAULTS_REQUIRED").is_none(), "PLINTH_TEST_FAULTS_REQUIRED is set, but {why}");
    eprintln!("SKIPPED: {why}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request that must answer within a bound: a fault is an answer, never a hang.
async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f).await.unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("plinth.toml");
    std::fs::write(&path, text).expect("config");
    path.to_str().expect("utf-8").to_owned()
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
    let config = write_config(config_dir.path(), "[server]\nstorage_check_secs = 1\nmin_free_space_mb = 1\n");
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
    // The server answers before it has read the whole body, and closes: a raw socket reads the answer.
    let path = format!("/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/big.bin");
    let (u, p) = (url.clone(), path.clone());
    let (status, body) = tokio::task::spawn_blocking(move || super::send_large_body(&u, "PUT", &p, 4 << 20)).await.expect("upload");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
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

fn is_unwritable(status: u16, body: &Value) -> bool {
    status == 503
        && body["error_code"] == "TEMPORARILY_UNAVAILABLE"
        && body["message"].as_str().is_some_and(|m| m.contains("cannot write to its storage") && m.contains("nothing was written"))
}

#[tokio::test]
async fn a_read_only_artifact_directory_refuses_uploads_clearly_until_it_is_writable_again() {
    let Some(disk) = SmallDisk::mount(16) else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let destination = disk.path.to_str().expect("utf-8").to_owned();
    let server = TestServer::start_in(bin(), data.path(), &["--artifacts-destination", &destination]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let (exp_id, run_id) = create_run(&client, &url, "read-only").await;
    let artifact = |name: &str| format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{name}");
    let put = |name: String| async move {
        let res = reqwest::Client::new().put(name).body(vec![3u8; 100_000]).send().await.expect("upload");
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(put(artifact("before.bin")).await.0, 200);

    disk.remount("ro");
    // Refused before the body is read: a raw socket reads the answer (see send_large_body).
    let (u, p) = (url.clone(), format!("/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/during.bin"));
    let (status, body) =
        bounded("upload to a read-only directory", tokio::task::spawn_blocking(move || super::send_large_body(&u, "PUT", &p, 100_000)))
            .await
            .expect("upload");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(is_unwritable(status, &body), "an upload to a read-only directory answered {status} {body}");
    // Metadata writes and artifact reads go on.
    let (status, body) =
        post(&client, &url, "/api/2.0/mlflow/runs/log-metric", json!({"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1})).await;
    assert_eq!(status, 200, "{body}");
    let res = client.get(artifact("before.bin")).send().await.expect("download");
    assert_eq!((res.status().as_u16(), res.bytes().await.expect("body").len()), (200, 100_000));

    disk.remount("rw");
    assert_eq!(put(artifact("after.bin")).await.0, 200, "uploads resume without a restart");
    let (_, listed) = get(&client, &url, &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}")).await;
    let names: Vec<&str> = listed["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(names, ["after.bin", "before.bin"], "{listed}");
}

/// A Redis server of the test's own, on a free port, with nothing persisted.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                wait_for_port(port, "redis-server");
                Some(OwnRedis { port, child })
            }
            Err(e) => {
                skipped(&format!("redis-server cannot be started: {e}"));
                None
            }
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_redis_online_store_going_away_is_answered_and_recovered_from() {
    let Some(redis) = OwnRedis::start(free_port()) else { return };
    let port = redis.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &format!("[features]\nonline_store = \"redis://127.0.0.1:{port}/\"\n"));
    let server = TestServer::start_in(bin(), &dir.path().join("data"), &["--config", &config]).expect("start");
    let url = server.url.clone();
    let _repo = super::features::apply_repo(&url, &super::features::repo_text("1d"));
    let materialize = || {
        let (ok, out, err) = super::features::plinth(&url, &["features", "materialize"]);
        assert!(ok, "{out}{err}");
    };
    materialize();
    let client = reqwest::Client::new();
    let read = || async {
        let res = client
            .post(format!("{url}/get-online-features"))
            .json(&json!({"features": ["driver_lifetime:conv_rate"], "entities": {"driver_id": [1]}}))
            .send()
            .await
            .expect("online read");
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = read().await;
    assert_eq!((status, body["results"][1]["values"][0].as_f64()), (200, Some(0.25)), "{body}");

    redis.stop();
    for _ in 0..3 {
        let (status, body) = bounded("an online read with Redis down", read()).await;
        assert_eq!((status, body["error_code"].as_str()), (503, Some("TEMPORARILY_UNAVAILABLE")), "{body}");
    }

    // The same address comes back (empty: nothing was persisted); the server reconnects by itself.
    let _redis = OwnRedis::start(port).expect("restart redis");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = bounded("an online read after Redis is back", read()).await;
        if status == 200 {
            assert_eq!(body["results"][1]["statuses"][0], "NOT_FOUND", "a fresh Redis holds nothing: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "online reads did not recover: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    materialize();
    let (status, body) = read().await;
    assert_eq!((status, body["results"][1]["values"][0].as_f64()), (200, Some(0.25)), "{body}");
}

/// A PostgreSQL cluster of the test's own, run as the `postgres` user on a free port.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    fn start() -> Option<OwnPostgres> {
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).find(|b| b.join("initdb").exists()))
        else {
            skipped("no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let owned = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().is_ok_and(|s| s.success());
        if !owned {
            skipped("the PostgreSQL fault test needs root (to run a cluster as the postgres user)");
            return None;
        }
        let pg = OwnPostgres { bin, data: dir.path().join("data"), port: free_port(), _dir: dir };
        pg.initdb();
        pg.pg_ctl("start");
        Some(pg)
    }

    fn initdb(&self) {
        let out = Command::new("runuser")
            .current_dir(self.data.parent().expect("cluster dir"))
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("initdb"))
            .arg("-D")
            .arg(&self.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.display());
        let out = Command::new("runuser")
            .current_dir(self.data.parent().expect("cluster dir"))
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .args(["-o", &options, "-m", "fast", "-w", "-l"])
            .arg(self.data.join("log"))
            .arg(action)
            .output()
            .expect("run pg_ctl");
        assert!(out.status.success(), "pg_ctl {action}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .current_dir(self.data.parent().expect("cluster dir"))
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn postgresql_restarted_under_load_is_answered_and_recovered_from() {
    let Some(pg) = OwnPostgres::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!("[database]\nurl = \"postgres://postgres@127.0.0.1:{}/postgres\"\nacquire_timeout_secs = 5\n", pg.port),
    );
    let server = TestServer::start_in(bin(), &dir.path().join("data"), &["--config", &config]).expect("start");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let (_, run_id) = create_run(&client, &url, "pg-restart").await;

    // Writers keep logging while the database restarts; every answer comes within the bound.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (client, url, run_id, stop) = (client.clone(), url.clone(), run_id.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut n) = (Vec::new(), 0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let step = (w * 1_000_000 + n) as i64;
                n += 1;
                let body = json!({"run_id": run_id, "metrics": [{"key": "loss", "value": 1.0, "timestamp": 1, "step": step}]});
                let (status, answer) =
                    bounded("a write while PostgreSQL restarts", post(&client, &url, "/api/2.0/mlflow/runs/log-batch", body)).await;
                match status {
                    200 => acked.push(step),
                    503 | 500 => {
                        assert!(answer["error_code"].is_string(), "{answer}");
                        refused += 1;
                    }
                    other => panic!("a write while PostgreSQL restarts answered {other} {answer}"),
                }
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = tokio::task::spawn_blocking(move || {
        pg.pg_ctl("restart");
        pg
    });
    let pg = restart.await.expect("restart");
    // After the restart, writes succeed again without restarting Plinth.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = json!({"run_id": run_id, "metrics": [{"key": "probe", "value": 1.0, "timestamp": 1}]});
        let (status, answer) = bounded("a write after the restart", post(&client, &url, "/api/2.0/mlflow/runs/log-batch", body)).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not recover after PostgreSQL restarted: {status} {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer").0);
    }
    // Every acknowledged write is there.
    let (status, history) =
        get(&client, &url, &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss&max_results=100000")).await;
    assert_eq!(status, 200, "{history}");
    let stored: std::collections::HashSet<i64> =
        history["metrics"].as_array().expect("metrics").iter().map(|m| m["step"].as_i64().expect("step")).collect();
    let lost: Vec<_> = acked.iter().filter(|s| !stored.contains(s)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    drop(server);
    drop(pg);
}
