//! Training jobs on the real binary with the local executor: a job runs as a process under its
//! supervisor, logs into its tracking run and keeps its output; out-of-memory, timeouts, retries
//! and multi-worker ranks are reported as such; cancel works in every state; `kill -9` of the
//! server loses no job (queued jobs stay queued, running ones are taken back); bad input is
//! refused with nothing created.

use std::path::Path;
use std::time::{Duration, Instant};

use plinth_test_support::TestServer;
use serde_json::{Value, json};

use super::{bin, get, post};

/// Two teams in a cohort; team-b has a GPU quota of two while the host declares one GPU.
const QUEUES: &str = r#"
[[flavors]]
name = "default"
[[flavors]]
name = "gpu-a100"

[[cluster_queues]]
name = "team-a"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 2 }, memory = { nominal = "4Gi" } }]

[[cluster_queues]]
name = "team-b"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 2 }, memory = { nominal = "4Gi" } }]
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [{ name = "gpu-a100", gpu = { nominal = 2 } }]

[[local_queues]]
name = "team-a"
cluster_queue = "team-a"
[[local_queues]]
name = "team-b"
cluster_queue = "team-b"
"#;

const CONFIG: &str = r#"
[jobs]
tick_ms = 100
stop_grace_ms = 1000
sample_interval_ms = 20
system_metrics_interval_ms = 200
[[jobs.gpus]]
index = 3
flavor = "gpu-a100"
"#;

fn start_in(dir: &Path) -> TestServer {
    let config = dir.join("plinth.toml");
    std::fs::write(&config, CONFIG).expect("config");
    TestServer::start_in(bin(), &dir.join("data"), &["--config", config.to_str().expect("utf-8")]).expect("start")
}

async fn setup() -> (tempfile::TempDir, TestServer, reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_in(dir.path());
    let client = reqwest::Client::new();
    let res = client.put(format!("{}/api/plinth/v1/queues", server.url)).json(&json!({"text": QUEUES})).send().await.expect("apply");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    (dir, server, client)
}

async fn submit(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let (status, answer) = post(client, url, "/api/plinth/v1/jobs", body).await;
    assert_eq!(status, 200, "{answer}");
    answer["job"].clone()
}

fn sh(script: &str) -> Value {
    json!(["sh", "-c", script])
}

/// Waits until the job is in one of `states`; answers it.
async fn wait_for(client: &reqwest::Client, url: &str, id: i64, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = get(client, url, &format!("/api/plinth/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{answer}");
        let job = answer["job"].clone();
        if states.contains(&job["state"].as_str().unwrap_or_default()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} never reached {states:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn logs(client: &reqwest::Client, url: &str, id: i64, query: &str) -> String {
    let res = client.get(format!("{url}/api/plinth/v1/jobs/{id}/logs?{query}")).send().await.expect("logs");
    assert_eq!(res.status(), 200);
    res.text().await.expect("text")
}

/// The text of each output line, without its time and stream prefix.
fn texts(log: &str) -> Vec<String> {
    log.lines().map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_owned()).collect()
}

fn process_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[tokio::test]
async fn a_job_runs_logs_into_its_run_and_keeps_its_output() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    let job = submit(
        &client,
        url,
        json!({
            "command": sh("echo run=$MLFLOW_RUN_ID exp=$MLFLOW_EXPERIMENT_ID; echo uri=$MLFLOW_TRACKING_URI; echo oops >&2; echo secret=${CARGO_MANIFEST_DIR:-none}"),
            "queue": "team-a",
            "experiment": "churn-jobs",
            "name": "first",
            "resources": {"cpus": "500m", "memory": "256Mi"},
            "tags": {"team": "a"},
            "env": {"GREETING": "hi"},
        }),
    )
    .await;
    let id = job["id"].as_i64().expect("id");
    let run_id = job["run_id"].as_str().expect("a run from the start").to_owned();
    let done = wait_for(&client, url, id, &["succeeded", "failed"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["last_end"]["exit_code"], 0);
    assert_eq!(done["env_names"], json!(["GREETING"]), "values are never shown back");
    let out = logs(&client, url, id, "").await;
    // Each stream keeps its order; the two interleave as they were read.
    let stdout: Vec<String> = out.lines().filter(|l| l.contains(" o0 ")).map(|l| texts(l).remove(0)).collect();
    assert_eq!(
        stdout,
        vec![
            format!("run={run_id} exp={}", done["experiment_id"].as_str().expect("experiment")),
            format!("uri={url}"),
            // The server's environment (cargo set CARGO_MANIFEST_DIR for it) is not inherited beyond inherit_env.
            "secret=none".to_owned(),
        ]
    );
    assert!(out.lines().any(|l| l.contains(" e0 oops")), "stderr is kept with its stream: {out}");
    // Resuming from an offset answers the rest.
    let first_len = out.lines().next().expect("a line").len() + 1;
    assert_eq!(logs(&client, url, id, &format!("offset={first_len}")).await, out[first_len..]);

    let (_, run) = get(&client, url, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}")).await;
    assert_eq!(run["run"]["info"]["status"], "FINISHED", "{run}");
    assert_eq!(run["run"]["info"]["run_name"], "first");
    let tags = run["run"]["data"]["tags"].as_array().expect("tags");
    let tag = |k: &str| tags.iter().find(|t| t["key"] == k).map(|t| t["value"].clone());
    assert_eq!(tag("plinth.job_id"), Some(json!(id.to_string())));
    assert_eq!(tag("team"), Some(json!("a")));
    // The output is kept with the run (written right after the end: waited for).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listed) = get(&client, url, &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=logs")).await;
        if listed["files"].as_array().is_some_and(|f| f.iter().any(|e| e["path"] == "logs/attempt-1.log")) {
            break;
        }
        assert!(Instant::now() < deadline, "the output never reached the run's artifacts: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn out_of_memory_timeouts_retries_and_ranks_are_reported_as_such() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    let oom = submit(
        &client,
        url,
        json!({
            "command": ["python3", "-c", "import time\nx = b'\\x01' * (400 << 20)\ntime.sleep(30)"],
            "queue": "team-a",
            "resources": {"cpus": 0.5, "memory": "100Mi"},
        }),
    )
    .await;
    let slow = submit(&client, url, json!({"command": sh("sleep 30"), "queue": "team-a", "timeout_secs": 1})).await;
    let flaky =
        submit(&client, url, json!({"command": sh("echo try; exit 3"), "queue": "team-a", "retries": {"max": 2, "backoff_secs": 0}})).await;
    let gang = submit(
        &client,
        url,
        json!({"command": sh("echo rank=$RANK of $WORLD_SIZE at $MASTER_ADDR:$MASTER_PORT"), "queue": "team-a", "workers": 2}),
    )
    .await;

    let oom = wait_for(&client, url, oom["id"].as_i64().expect("id"), &["out_of_memory", "failed", "succeeded"]).await;
    assert_eq!(oom["state"], "out_of_memory", "{oom}");
    let message = oom["last_end"]["message"].as_str().expect("message");
    assert!(message.starts_with("out of memory: peak ") && message.ends_with(" over the 100Mi limit"), "{message}");
    assert!(oom["last_end"]["peak_memory_bytes"].as_u64().expect("peak") > 100 << 20, "{oom}");

    let slow = wait_for(&client, url, slow["id"].as_i64().expect("id"), &["timed_out", "failed", "succeeded"]).await;
    assert_eq!(slow["state"], "timed_out", "{slow}");
    assert_eq!(slow["last_end"]["message"], "timed out after 1s");

    let id = flaky["id"].as_i64().expect("id");
    let flaky = wait_for(&client, url, id, &["failed", "succeeded"]).await;
    assert_eq!((flaky["attempt"].as_u64(), flaky["last_end"]["exit_code"].as_i64()), (Some(3), Some(3)), "{flaky}");
    assert!(flaky["last_end"]["message"].as_str().expect("message").starts_with("exited with code 3"), "{flaky}");
    for attempt in 1..=3 {
        assert_eq!(texts(&logs(&client, url, id, &format!("attempt={attempt}")).await), vec!["try"], "attempt {attempt}");
    }

    let id = gang["id"].as_i64().expect("id");
    let gang = wait_for(&client, url, id, &["succeeded", "failed"]).await;
    assert_eq!(gang["state"], "succeeded", "{gang}");
    let out = logs(&client, url, id, "").await;
    let mut lines: Vec<String> = out.lines().map(|l| l.split_once(' ').map(|(_, rest)| rest).unwrap_or_default().to_owned()).collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    let port = lines[0].rsplit(':').next().expect("port").to_owned();
    assert_eq!(lines, vec![format!("o0 rank=0 of 2 at 127.0.0.1:{port}"), format!("o1 rank=1 of 2 at 127.0.0.1:{port}")]);
}

#[tokio::test]
async fn cancel_works_in_every_state() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    // Running: it prints its pid, then sleeps; cancelled, its process is gone.
    let running = submit(&client, url, json!({"command": sh("echo $$; exec sleep 60"), "queue": "team-a", "resources": {"cpus": 2}})).await;
    let running_id = running["id"].as_i64().expect("id");
    wait_for(&client, url, running_id, &["running"]).await;
    // Queued: team-a's two CPUs are taken and team-b lends none to a job wanting three.
    let queued = submit(&client, url, json!({"command": sh("true"), "queue": "team-a", "resources": {"cpus": 3}})).await;
    let queued_id = queued["id"].as_i64().expect("id");
    let (_, view) = get(&client, url, &format!("/api/plinth/v1/jobs/{queued_id}")).await;
    assert_eq!(view["job"]["state"], "queued", "{view}");
    let reason = view["job"]["waiting"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("cpu") && reason.contains("team-a"), "a waiting job says why: {view}");
    // Admitted but not started: quota for two GPUs, and the host has one of that flavor.
    let first_gpu = submit(&client, url, json!({"command": sh("exec sleep 60"), "queue": "team-b", "resources": {"gpus": 1}})).await;
    wait_for(&client, url, first_gpu["id"].as_i64().expect("id"), &["running"]).await;
    let waiting_gpu = submit(&client, url, json!({"command": sh("true"), "queue": "team-b", "resources": {"gpus": 1}})).await;
    let waiting_gpu_id = waiting_gpu["id"].as_i64().expect("id");
    wait_for(&client, url, waiting_gpu_id, &["admitted"]).await;

    let pid_deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) =
            logs(&client, url, running_id, "").await.lines().next().and_then(|l| texts(l).first().and_then(|t| t.parse::<i64>().ok()))
        {
            break pid;
        }
        assert!(Instant::now() < pid_deadline, "the running job never printed its pid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(process_alive(pid));

    for (id, from) in [(queued_id, "queued"), (waiting_gpu_id, "admitted"), (running_id, "running")] {
        let (status, answer) = post(&client, url, &format!("/api/plinth/v1/jobs/{id}/cancel"), json!({})).await;
        assert_eq!(status, 200, "cancelling a {from} job: {answer}");
        let job = wait_for(&client, url, id, &["cancelled"]).await;
        assert_eq!(job["last_end"]["cause"], "cancelled", "{job}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "a cancelled job's process is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Cancelling again changes nothing.
    let (status, again) = post(&client, url, &format!("/api/plinth/v1/jobs/{running_id}/cancel"), json!({})).await;
    assert_eq!((status, again["job"]["state"].as_str()), (200, Some("cancelled")));
    // The freed quota goes to the next job.
    let next = submit(&client, url, json!({"command": sh("true"), "queue": "team-a", "resources": {"cpus": 2}})).await;
    assert_eq!(wait_for(&client, url, next["id"].as_i64().expect("id"), &["succeeded", "failed"]).await["state"], "succeeded");
    let (status, _) = post(&client, url, &format!("/api/plinth/v1/jobs/{}/cancel", first_gpu["id"]), json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn kill_9_of_the_server_loses_no_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, running_id, queued_id) = {
        let mut server = start_in(dir.path());
        let client = reqwest::Client::new();
        let res = client.put(format!("{}/api/plinth/v1/queues", server.url)).json(&json!({"text": QUEUES})).send().await.expect("apply");
        assert_eq!(res.status(), 200);
        let url = server.url.clone();
        let running = submit(
            &client,
            &url,
            json!({"command": sh("echo started; sleep 4; echo finished"), "queue": "team-a", "resources": {"cpus": 2}}),
        )
        .await;
        let running_id = running["id"].as_i64().expect("id");
        wait_for(&client, &url, running_id, &["running"]).await;
        // Three CPUs: it waits for the first to end (two of team-a's own plus two borrowable).
        let queued = submit(&client, &url, json!({"command": sh("echo second"), "queue": "team-a", "resources": {"cpus": 3}})).await;
        let (_, view) = get(&client, &url, &format!("/api/plinth/v1/jobs/{}", queued["id"])).await;
        assert_eq!(view["job"]["state"], "queued", "{view}");
        server.kill9();
        (url, running_id, queued["id"].as_i64().expect("id"))
    };
    let _ = url;
    let server = start_in(dir.path());
    let client = reqwest::Client::new();
    let url = &server.url;
    let (_, queued) = get(&client, url, &format!("/api/plinth/v1/jobs/{queued_id}")).await;
    assert_eq!(queued["job"]["state"], "queued", "a queued job stays queued while the first runs: {queued}");
    let first = wait_for(&client, url, running_id, &["succeeded", "failed", "lost"]).await;
    assert_eq!(first["state"], "succeeded", "the running job was taken back and finished: {first}");
    assert_eq!(texts(&logs(&client, url, running_id, "").await), vec!["started", "finished"]);
    let second = wait_for(&client, url, queued_id, &["succeeded", "failed", "lost"]).await;
    assert_eq!(second["state"], "succeeded", "{second}");
}

#[tokio::test]
async fn bad_jobs_are_refused_and_nothing_is_created() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    let cases = [
        (json!({"command": ["true"], "queue": "nobody"}), "does not exist"),
        (json!({"command": ["true"], "queue": "team-a", "resources": {"cpus": 64}}), "team-a"),
        (json!({"command": ["true"], "queue": "team-a", "resources": {"gpus": 1}}), "gpu"),
        (json!({"command": [], "queue": "team-a"}), "command"),
        (json!({"command": ["true"], "queue": "team-a", "env": {"MLFLOW_RUN_ID": "x"}}), "MLFLOW_RUN_ID"),
        (json!({"command": ["true"], "queue": "team-a", "resources": {"memory": "lots"}}), "memory"),
        (json!({"command": ["true"], "queue": "team-a", "workers": 0}), "workers"),
        (json!({"command": ["true"], "queue": "team-a", "surprise": 1}), "surprise"),
        (json!({"command": "true", "queue": "team-a"}), "Invalid job"),
    ];
    for (body, needle) in cases {
        let (status, answer) = post(&client, url, "/api/plinth/v1/jobs", body.clone()).await;
        assert_eq!((status, answer["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains(needle), "{body}: {answer}");
    }
    let (_, listed) = get(&client, url, "/api/plinth/v1/jobs").await;
    assert_eq!(listed["jobs"], json!([]), "nothing half-created: {listed}");

    // The same idempotency key makes one job; the same key with another spec is refused.
    let body = json!({"command": ["true"], "queue": "team-a", "idempotency_key": "nightly-2026-12-08"});
    let (_, first) = post(&client, url, "/api/plinth/v1/jobs", body.clone()).await;
    let (_, second) = post(&client, url, "/api/plinth/v1/jobs", body).await;
    assert_eq!((first["created"].as_bool(), second["created"].as_bool()), (Some(true), Some(false)));
    assert_eq!(first["job"]["id"], second["job"]["id"]);
    let (status, answer) = post(
        &client,
        url,
        "/api/plinth/v1/jobs",
        json!({"command": ["false"], "queue": "team-a", "idempotency_key": "nightly-2026-12-08"}),
    )
    .await;
    assert_eq!((status, answer["error_code"].as_str()), (409, Some("RESOURCE_CONFLICT")), "{answer}");
}

/// Runs the CLI against `url`; answers (success, stdout, stderr).
fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin()).args(args).env("PLINTH_SERVER", url).output().expect("run plinth");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn code_is_uploaded_once_and_the_job_runs_exactly_it() {
    let (dir, server, client) = setup().await;
    let url = &server.url;
    let code = dir.path().join("project");
    std::fs::create_dir_all(code.join("conf")).expect("mkdir");
    std::fs::create_dir_all(code.join(".git")).expect("mkdir");
    std::fs::write(code.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
    std::fs::write(code.join("conf/lr.txt"), "0.01\n").expect("write");
    std::fs::write(code.join("train.sh"), "#!/bin/sh\necho lr=$(cat conf/lr.txt) files=$(find . -type f | sort | tr '\\n' ' ')\n")
        .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(code.join("train.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let code_arg = code.to_str().expect("utf-8");
    let (ok, out, err) = cli(url, &["jobs", "submit", "--queue", "team-a", "--code", code_arg, "--", "./train.sh"]);
    assert!(ok, "{err}");
    assert!(err.contains("uploading code sha256:"), "{err}");
    let first: Value = serde_json::from_str(&out).expect("json");
    let id = first["job"]["id"].as_i64().expect("id");
    let digest = first["job"]["code"].as_str().expect("the job names its code").to_owned();
    let done = wait_for(&client, url, id, &["succeeded", "failed"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(texts(&logs(&client, url, id, "").await), vec!["lr=0.01 files=./conf/lr.txt ./train.sh"]);

    // The same content is not uploaded again, and has the same digest.
    let (ok, out, err) = cli(url, &["jobs", "submit", "--queue", "team-a", "--code", code_arg, "--", "./train.sh"]);
    assert!(ok && err.contains("already on the server"), "{err}");
    let second: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(second["job"]["code"], json!(digest));

    // A digest that does not match the body, and code never uploaded, are refused.
    let wrong = "sha256:".to_owned() + &"0".repeat(64);
    let res = client.put(format!("{url}/api/plinth/v1/jobs/code/{wrong}")).body(vec![0u8; 1024]).send().await.expect("put");
    assert_eq!(res.status(), 400);
    let (status, answer) = post(&client, url, "/api/plinth/v1/jobs", json!({"command": ["true"], "queue": "team-a", "code": wrong})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("was not uploaded"), "{answer}");
    let (status, _) = get(&client, url, &format!("/api/plinth/v1/jobs/code/{wrong}")).await;
    assert_eq!(status, 404);
}

/// team-a may take back what team-b borrowed from it, from lower-priority jobs.
const RECLAIM: &str = r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
cohort = "research"
preemption = { reclaim_within_cohort = "lower_priority" }
[[cluster_queues.resource_groups]]
resources = ["cpu"]
flavors = [{ name = "default", cpu = { nominal = 2 } }]

[[cluster_queues]]
name = "team-b"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["cpu"]
flavors = [{ name = "default", cpu = { nominal = 2 } }]

[[local_queues]]
name = "team-a"
cluster_queue = "team-a"
[[local_queues]]
name = "team-b"
cluster_queue = "team-b"
"#;

#[tokio::test]
async fn a_queue_reclaims_its_quota_from_a_lower_priority_borrower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_in(dir.path());
    let client = reqwest::Client::new();
    let url = &server.url;
    let res = client.put(format!("{url}/api/plinth/v1/queues")).json(&json!({"text": RECLAIM})).send().await.expect("apply");
    assert_eq!(res.status(), 200);
    // team-b borrows all of team-a's CPUs.
    let borrower = submit(
        &client,
        url,
        json!({"command": sh("echo attempt $PLINTH_JOB_ID; exec sleep 600"), "queue": "team-b", "resources": {"cpus": 4}}),
    )
    .await;
    let borrower_id = borrower["id"].as_i64().expect("id");
    wait_for(&client, url, borrower_id, &["running"]).await;
    // team-a wants its own back, at a higher priority: the borrower is preempted and queued again.
    let owner =
        submit(&client, url, json!({"command": sh("exec sleep 600"), "queue": "team-a", "resources": {"cpus": 2}, "priority": 10})).await;
    let owner_id = owner["id"].as_i64().expect("id");
    wait_for(&client, url, owner_id, &["running"]).await;
    let requeued = wait_for(&client, url, borrower_id, &["queued"]).await;
    assert_eq!((requeued["preemptions"].as_u64(), requeued["attempt"].as_u64()), (Some(1), Some(2)), "{requeued}");
    assert_eq!(requeued["last_end"]["cause"], "preempted", "{requeued}");
    assert!(requeued["last_end"]["message"].as_str().unwrap_or_default().contains("preempted"), "{requeued}");
    assert!(requeued["waiting"]["reason"].as_str().unwrap_or_default().contains("team-b"), "it says why it waits: {requeued}");
    // The owner ends: the borrower runs again, as a new attempt that used none of its retries.
    let (status, _) = post(&client, url, &format!("/api/plinth/v1/jobs/{owner_id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let again = wait_for(&client, url, borrower_id, &["running"]).await;
    assert_eq!(again["attempt"].as_u64(), Some(2), "{again}");
    assert_eq!(texts(&logs(&client, url, borrower_id, "attempt=1").await), vec![format!("attempt {borrower_id}")]);
    let (status, _) = post(&client, url, &format!("/api/plinth/v1/jobs/{borrower_id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    wait_for(&client, url, borrower_id, &["cancelled"]).await;
}

#[tokio::test]
async fn cpu_and_memory_are_logged_into_the_run_as_system_metrics() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    // Holds 60 MB and keeps one core busy for 1.5 s.
    let script = "import time\nx = b'\\x01' * (60 << 20)\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass";
    let job = submit(&client, url, json!({"command": ["python3", "-c", script], "queue": "team-a", "resources": {"memory": "1Gi"}})).await;
    let id = job["id"].as_i64().expect("id");
    let run_id = job["run_id"].as_str().expect("run").to_owned();
    let done = wait_for(&client, url, id, &["succeeded", "failed"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let history = |key: &'static str| {
        let (client, url, run_id) = (client.clone(), url.clone(), run_id.clone());
        async move {
            let (_, body) = get(&client, &url, &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}")).await;
            body["metrics"].as_array().cloned().unwrap_or_default().iter().filter_map(|m| m["value"].as_f64()).collect::<Vec<f64>>()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (cpu, memory, share) = loop {
        let found = (
            history("system/cpu_utilization_percentage").await,
            history("system/system_memory_usage_megabytes").await,
            history("system/system_memory_usage_percentage").await,
        );
        if found.0.len() >= 3 || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cpu.len() >= 3, "sampled every 200 ms over 1.5 s: {cpu:?}");
    assert!(cpu.iter().any(|v| *v > 50.0), "a busy core reads as busy: {cpu:?}");
    assert!(memory.iter().any(|v| *v > 60.0), "the job's 60 MB show: {memory:?}");
    assert!(share.iter().all(|v| *v < 100.0) && !share.is_empty(), "{share:?}");
}

/// A trial: logs `val_auc` for steps 1 to 8 through MLflow's REST API, rising to a quality that
/// peaks at lr = 0.01 (1.0 there, 0.75 a decade away, 0 two decades away).
const TRIAL: &str = r#"
import json, math, os, sys, time, urllib.request
lr = float(sys.argv[1])
quality = 1 - (math.log10(lr) + 2) ** 2 / 4
for step in range(1, 9):
    body = json.dumps(dict(run_id=os.environ["MLFLOW_RUN_ID"], key="val_auc", value=quality * step / 8, timestamp=int(time.time() * 1000), step=step))
    request = urllib.request.Request(os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", data=body.encode(), headers=dict([("Content-Type", "application/json")]))
    urllib.request.urlopen(request).read()
    time.sleep(0.15)
"#;

#[tokio::test]
async fn a_sweep_finds_the_best_region_and_stops_trials_early() {
    let (_dir, server, client) = setup().await;
    let url = &server.url;
    let sweep = format!(
        r#"
name = "lr-search"
max_trials = 10
parallelism = 2

[objective]
metric = "val_auc"
direction = "maximize"

[early_stopping]
min_steps = 2
reduction_factor = 2
max_steps = 8

[parameters]
lr = {{ grid = [0.0001, 0.001, 0.01, 0.1, 1.0] }}

[job]
command = ["python3", "-c", '''{TRIAL}''', "{{lr}}"]
queue = "team-a"
experiment = "sweeps"
resources = {{ cpus = 0.5 }}
"#
    );
    let (status, created) = post(&client, url, "/api/plinth/v1/sweeps", json!({"text": sweep})).await;
    assert_eq!(status, 200, "{created}");
    let id = created["sweep"]["id"].as_i64().expect("id");
    assert_eq!(created["sweep"]["budget"], 5, "a grid of five runs five trials");
    let parent = created["sweep"]["parent_run_id"].as_str().expect("a parent run").to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let (_, body) = get(&client, url, &format!("/api/plinth/v1/sweeps/{id}")).await;
        if body["sweep"]["state"] != "running" {
            break body["sweep"].clone();
        }
        assert!(Instant::now() < deadline, "the sweep never ended: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["state"], "succeeded", "{done}");
    let trials = done["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 5, "{done}");
    assert_eq!(done["best"]["params"]["lr"], "0.01", "{done}");
    assert!((done["best"]["objective"].as_f64().expect("objective") - 1.0).abs() < 1e-9, "{done}");
    let stopped = trials.iter().filter(|t| t["state"] == "stopped").count();
    assert!(stopped >= 1, "early stopping stopped a trial behind the others: {done}");
    for t in trials.iter().filter(|t| t["state"] == "stopped") {
        assert!(t["step"].as_i64().unwrap_or(0) < 8, "a stopped trial did not run to the end: {t}");
    }
    // Each trial is a child run with its parameters; the parent keeps the best.
    let job_id = done["best"]["job_id"].as_i64().expect("job");
    let (_, job) = get(&client, url, &format!("/api/plinth/v1/jobs/{job_id}")).await;
    let run_id = job["job"]["run_id"].as_str().expect("run");
    let (_, run) = get(&client, url, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}")).await;
    let value = |list: &Value, key: &str| list.as_array().and_then(|l| l.iter().find(|e| e["key"] == key)).map(|e| e["value"].clone());
    assert_eq!(value(&run["run"]["data"]["tags"], "mlflow.parentRunId"), Some(json!(parent)));
    assert_eq!(value(&run["run"]["data"]["params"], "lr"), Some(json!("0.01")));
    let (_, parent_run) = get(&client, url, &format!("/api/2.0/mlflow/runs/get?run_id={parent}")).await;
    assert_eq!(parent_run["run"]["info"]["status"], "FINISHED", "{parent_run}");
    assert_eq!(value(&parent_run["run"]["data"]["params"], "best.lr"), Some(json!("0.01")), "{parent_run}");

    // A sweep whose template no queue takes is refused whole.
    let (status, answer) =
        post(&client, url, "/api/plinth/v1/sweeps", json!({"text": sweep.replace("queue = \"team-a\"", "queue = \"nobody\"")})).await;
    assert_eq!(status, 400, "{answer}");
}
