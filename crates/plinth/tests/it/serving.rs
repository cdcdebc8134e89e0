//! Serving end to end, on the real binary: a scikit-learn model (converted by skl2onnx, as an
//! MLflow model directory) logged to a run, registered and aliased; a deployment that follows the
//! alias; inference over the Open Inference Protocol checked against Python ONNX Runtime's
//! answers; bad input of each kind answered 4xx in the protocol's shape; a model ONNX Runtime
//! cannot read refused at create; deployments back after `kill -9`.
//!
//! Needs the models the test command makes (`PLINTH_TEST_ONNX_MODELS`) and ONNX Runtime's library
//! (`ORT_DYLIB_PATH`); without them it says so and passes, unless `PLINTH_TEST_SERVING_REQUIRED`.

use std::path::PathBuf;

use plinth_test_support::TestServer;
use serde_json::{Value, json};

use super::{bin, create_run, get, post};

fn models() -> Option<PathBuf> {
    let dir = std::env::var_os("PLINTH_TEST_ONNX_MODELS").map(PathBuf::from);
    let lib = std::env::var_os("ORT_DYLIB_PATH");
    match (dir, lib) {
        (Some(dir), Some(_)) => Some(dir),
        _ if std::env::var_os("PLINTH_TEST_SERVING_REQUIRED").is_some() => {
            panic!("PLINTH_TEST_SERVING_REQUIRED is set but PLINTH_TEST_ONNX_MODELS or ORT_DYLIB_PATH is not")
        }
        _ => {
            eprintln!(
                "serving black-box test: skipped, PLINTH_TEST_ONNX_MODELS and ORT_DYLIB_PATH are not both set (the test command sets them)"
            );
            None
        }
    }
}

/// Logs `dir`'s files as the run's `model/` artifacts, registers version N of `name` from them.
async fn register(client: &reqwest::Client, url: &str, name: &str, dir: &std::path::Path) -> i64 {
    let (exp_id, run_id) = create_run(client, url, &format!("serving-{name}-{}", uuid_like())).await;
    for entry in std::fs::read_dir(dir).expect("model dir") {
        let path = entry.expect("entry").path();
        let file = path.file_name().and_then(|f| f.to_str()).expect("file name").to_owned();
        let res = client
            .put(format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/model/{file}"))
            .body(std::fs::read(&path).expect("read"))
            .send()
            .await
            .expect("upload");
        assert_eq!(res.status(), 200);
    }
    let (status, _) = post(client, url, "/api/2.0/mlflow/registered-models/create", json!({"name": name})).await;
    assert!(status == 200 || status == 400);
    let (status, body) = post(
        client,
        url,
        "/api/2.0/mlflow/model-versions/create",
        json!({"name": name, "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["model_version"]["version"].as_str().expect("version").parse().expect("number")
}

/// Points `churn@champion` at `version`.
async fn set_champion(client: &reqwest::Client, url: &str, version: i64) {
    let (status, body) = post(
        client,
        url,
        "/api/2.0/mlflow/registered-models/alias",
        json!({"name": "churn", "alias": "champion", "version": version.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The variant that answers `request` on `deployment` with routing key `key`.
async fn variant_for(client: &reqwest::Client, url: &str, deployment: &str, key: &str, request: &Value) -> String {
    let res = client
        .post(format!("{url}/v2/models/{deployment}/infer"))
        .header("X-Plinth-Routing-Key", key)
        .json(request)
        .send()
        .await
        .expect("infer");
    let answer: Value = res.json().await.expect("json");
    answer["parameters"]["variant"].as_str().expect("variant").to_owned()
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0))
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json")
}

#[tokio::test]
async fn a_deployment_follows_the_registry_and_answers_the_open_inference_protocol() {
    let Some(models) = models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();

    let version = register(&client, &url, "churn", &models.join("logreg_mlflow")).await;
    set_champion(&client, &url, version).await;

    let (status, body) = post(
        &client,
        &url,
        "/api/plinth/v1/deployments",
        json!({"name": "churn", "model": "churn@champion", "batching": {"max_batch_size": 16}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let variant = &body["deployment"]["variants"][0];
    assert_eq!(
        (variant["state"].as_str(), variant["version"].as_i64(), variant["model"].as_str()),
        (Some("READY"), Some(version), Some("churn@champion")),
        "{body}"
    );

    // Metadata, readiness.
    let (status, meta) = get(&client, &url, "/v2/models/churn").await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "onnx_onnxv1");
    assert_eq!(meta["inputs"][0], json!({"name": "X", "datatype": "FP32", "shape": [-1, 8]}), "{meta}");
    let (status, ready) = get(&client, &url, "/v2/models/churn/ready").await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)));
    let (status, _) = get(&client, &url, "/v2/health/ready").await;
    assert_eq!(status, 200);

    // Inference, against Python ONNX Runtime's answers.
    let inputs = read_json(models.join("logreg.inputs.json"));
    let expected = read_json(models.join("logreg.expected.json"));
    let x = &inputs["X"];
    let request = json!({"id": "r-1", "inputs": [{"name": "X", "shape": x["shape"], "datatype": "FP32", "data": x["data"]}]});
    let (status, answer) = post(&client, &url, "/v2/models/churn/infer", request.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["model_name"].as_str(), answer["model_version"].as_str(), answer["id"].as_str()),
        (Some("churn"), Some(&*version.to_string()), Some("r-1"))
    );
    for output in answer["outputs"].as_array().expect("outputs") {
        let name = output["name"].as_str().expect("name");
        let want = &expected[name];
        assert_eq!(output["shape"], want["shape"], "{name}");
        let (got, want) = (output["data"].as_array().expect("data"), want["data"].as_array().expect("data"));
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64().expect("number"), w.as_f64().expect("number"));
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1e-3), "{name}: {g} vs {w}");
        }
    }

    // Metrics per deployment and variant: requests by outcome, latency split into queue and compute, batch sizes, version.
    let metrics = client.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    for want in [
        "plinth_serving_requests_total{deployment=\"churn\",variant=\"champion\",outcome=\"OK\"} 1",
        "plinth_serving_request_duration_seconds_count{deployment=\"churn\",variant=\"champion\"} 1",
        "plinth_serving_queue_duration_seconds_count{deployment=\"churn\",variant=\"champion\"}",
        "plinth_serving_compute_duration_seconds_count{deployment=\"churn\",variant=\"champion\"}",
        "plinth_serving_batch_rows_bucket{deployment=\"churn\",variant=\"champion\",le=\"5\"}",
    ] {
        assert!(metrics.contains(want), "/metrics lacks {want}");
    }
    assert!(
        metrics.contains(&format!("plinth_serving_loaded_version{{deployment=\"churn\",variant=\"champion\"}} {version}")),
        "{metrics}"
    );

    // Bad input: the protocol's error shape, 4xx, a message that says what was wrong.
    let bad = |inputs: Value| json!({"inputs": inputs});
    for (body, want_status, want_text) in [
        (bad(json!([{"name": "nope", "shape": [1, 8], "datatype": "FP32", "data": vec![0.0; 8]}])), 400, "unknown input 'nope'"),
        (bad(json!([{"name": "X", "shape": [1, 8], "datatype": "FP64", "data": vec![0.0; 8]}])), 400, "FP64"),
        (bad(json!([{"name": "X", "shape": [1, 5], "datatype": "FP32", "data": vec![0.0; 5]}])), 400, "shape"),
        (bad(json!([{"name": "X", "shape": [2, 8], "datatype": "FP32", "data": vec![0.0; 8]}])), 400, ""),
        (bad(json!([{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": [[1, 2], [3]]}])), 400, ""),
        (json!({"inputs": [], "extra": 1}), 400, "extra"),
    ] {
        let (status, answer) = post(&client, &url, "/v2/models/churn/infer", body.clone()).await;
        assert_eq!(status, want_status, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap_or_else(|| panic!("an OIP error body: {answer}"));
        assert!(message.contains(want_text), "{message} should mention {want_text}");
    }
    let (status, answer) = post(&client, &url, "/v2/models/missing/infer", request.clone()).await;
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|m| m.contains("missing")), "{answer}");

    // A model ONNX Runtime cannot read is refused at create, with the reason, and nothing is stored.
    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::copy(models.join("garbage.onnx"), broken.path().join("model.onnx")).expect("copy");
    let garbage = register(&client, &url, "broken", broken.path()).await;
    let (status, body) =
        post(&client, &url, "/api/plinth/v1/deployments", json!({"name": "broken", "model": format!("broken/{garbage}")})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("cannot be served") && m.contains("ONNX")), "{body}");
    let (status, _) = get(&client, &url, "/api/plinth/v1/deployments/broken").await;
    assert_eq!(status, 404);
    // A name taken, an invalid spec, an unknown model: refused with MLflow-style codes.
    for (body, code) in [
        (json!({"name": "churn", "model": "churn@champion"}), "RESOURCE_ALREADY_EXISTS"),
        (json!({"name": "w", "variants": [{"name": "a", "model": "churn@champion", "weight": 50}]}), "INVALID_PARAMETER_VALUE"),
        (json!({"name": "bad name", "model": "churn@champion"}), "INVALID_PARAMETER_VALUE"),
        (json!({"name": "u", "model": "nobody@champion"}), "RESOURCE_DOES_NOT_EXIST"),
        (json!({"name": "v", "model": "churn@champion", "unknown": 1}), "INVALID_PARAMETER_VALUE"),
    ] {
        let (_, answer) = post(&client, &url, "/api/plinth/v1/deployments", body.clone()).await;
        assert_eq!(answer["error_code"], code, "{body} -> {answer}");
    }

    let (status, body) = get(&client, &url, "/api/plinth/v1/deployments?max_results=many").await;
    assert_eq!((status, body["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{body}");

    // The change is audited.
    let (_, audit) = get(&client, &url, "/api/plinth/v1/audit?resource_type=deployment&resource_id=churn").await;
    assert!(
        audit["events"].as_array().is_some_and(|e| e.iter().any(|e| e["action"] == "deployment.create" && e["outcome"] == "OK")),
        "{audit}"
    );

    // A new version under steady load: the alias moves, the deployment is updated (the new version
    // loaded and warmed before the switch), and no request fails; every answer names its version.
    let next = register(&client, &url, "churn", &models.join("logreg_mlflow")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, request, stop) = (client.clone(), url.clone(), request.clone(), stop.clone());
            tokio::spawn(async move {
                let mut versions = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, answer) = post(&client, &url, "/v2/models/churn/infer", request.clone()).await;
                    assert_eq!(status, 200, "a request failed during the switch: {answer}");
                    versions.push(answer["model_version"].as_str().expect("version").to_owned());
                }
                versions
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    set_champion(&client, &url, next).await;
    let res = client
        .patch(format!("{url}/api/plinth/v1/deployments/churn"))
        .json(&json!({"model": "churn@champion"}))
        .send()
        .await
        .expect("update");
    let updated: Value = res.json().await.expect("json");
    assert_eq!(updated["deployment"]["variants"][0]["version"].as_i64(), Some(next), "{updated}");
    assert_eq!(updated["deployment"]["generation"].as_i64(), Some(2), "{updated}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (old, new) = (version.to_string(), next.to_string());
    let mut seen = Vec::new();
    for t in load {
        let answers = t.await.expect("load task");
        // Once switched, never back: each client sees the old version, then only the new one.
        if let Some(first_new) = answers.iter().position(|v| *v == new) {
            assert!(answers[first_new..].iter().all(|v| *v == new), "a client went back to the old version");
        }
        seen.extend(answers);
    }
    assert!(seen.iter().all(|v| *v == old || *v == new), "{seen:?}");
    assert!(seen.contains(&old) && seen.contains(&new), "the load spanned the switch ({} requests)", seen.len());
    let (_, answer) = post(&client, &url, "/v2/models/churn/infer", request.clone()).await;
    assert_eq!(answer["model_version"].as_str(), Some(&*next.to_string()), "after the switch, the new version answers");

    // Following the alias with no update at all: the alias moves, and within the follow interval
    // (1 s by default) the deployment serves the new holder, loaded and warmed first; no request fails.
    let third = register(&client, &url, "churn", &models.join("logreg_mlflow")).await;
    set_champion(&client, &url, third).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, answer) = post(&client, &url, "/v2/models/churn/infer", request.clone()).await;
        assert_eq!(status, 200, "a request failed while the deployment followed its alias: {answer}");
        if answer["model_version"].as_str() == Some(&*third.to_string()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the deployment did not follow the alias to version {third}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, body) = get(&client, &url, "/api/plinth/v1/deployments/churn").await;
    assert_eq!(body["deployment"]["variants"][0]["version"].as_i64(), Some(third), "{body}");
    let (_, audit) = get(&client, &url, "/api/plinth/v1/audit?resource_type=deployment&resource_id=churn").await;
    assert!(
        audit["events"].as_array().is_some_and(|e| e.iter().any(|e| e["action"] == "deployment.follow" && e["actor"] == "system")),
        "{audit}"
    );

    // The CLI: a split between two pinned versions, sticky routing keys, a reweight, list, delete.
    let cli = |args: Vec<String>| {
        let out = std::process::Command::new(bin()).args(&args).env("PLINTH_SERVER", &url).output().expect("run plinth");
        let value: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(out.status.success(), "plinth {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        value
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let created = cli(args(&[
        "deployments",
        "create",
        "split",
        "--variant",
        &format!("a=churn/{version}"),
        "--variant",
        &format!("b=churn/{next}"),
        "--traffic",
        "a=50,b=50",
    ]));
    let variants = created["deployment"]["variants"].as_array().expect("variants");
    assert_eq!(
        variants.iter().map(|v| (v["name"].as_str(), v["weight"].as_i64(), v["state"].as_str())).collect::<Vec<_>>(),
        [(Some("a"), Some(50), Some("READY")), (Some("b"), Some(50), Some("READY"))]
    );
    let mut by_key = std::collections::HashMap::new();
    for key in 0..40 {
        for _ in 0..3 {
            let variant = variant_for(&client, &url, "split", &format!("user-{key}"), &request).await;
            assert_eq!(by_key.entry(key).or_insert_with(|| variant.clone()), &variant, "routing key user-{key} moved between variants");
        }
    }
    let used: std::collections::HashSet<&String> = by_key.values().collect();
    assert_eq!(used.len(), 2, "keys spread over both variants");
    let reweighted = cli(args(&["deployments", "update", "split", "--traffic", "a=100,b=0"]));
    assert_eq!(reweighted["deployment"]["variants"][1]["weight"].as_i64(), Some(0), "{reweighted}");
    for key in 0..20 {
        assert_eq!(variant_for(&client, &url, "split", &format!("user-{key}"), &request).await, "a", "all traffic on a after the reweight");
    }
    let listed = cli(args(&["deployments", "list"]));
    assert!(listed["deployments"].as_array().is_some_and(|d| d.iter().any(|d| d["name"] == "split")), "{listed}");
    cli(args(&["deployments", "delete", "split"]));
    let (status, _) = get(&client, &url, "/api/plinth/v1/deployments/split").await;
    assert_eq!(status, 404);

    // A shadow variant gets a copy of half the requests, off the request's path; its answers are
    // never returned, only compared with the primary's (the same model here: they agree).
    let (status, body) = post(
        &client,
        &url,
        "/api/plinth/v1/deployments",
        json!({"name": "shadowed", "variants": [
            {"name": "main", "model": format!("churn/{version}"), "weight": 100},
            {"name": "candidate", "model": format!("churn/{next}"), "shadow": 0.5}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..10 {
        let (status, answer) = post(&client, &url, "/v2/models/shadowed/infer", request.clone()).await;
        assert_eq!((status, answer["parameters"]["variant"].as_str()), (200, Some("main")), "{answer}");
    }
    let want = "plinth_serving_shadow_requests_total{deployment=\"shadowed\",variant=\"candidate\",outcome=\"AGREE\"} 5";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = client.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
        if metrics.contains(want) {
            assert!(metrics.contains("plinth_serving_shadow_duration_seconds_count{deployment=\"shadowed\",variant=\"candidate\"} 5"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no {want} in /metrics");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A full queue answers at once with 503 instead of growing latency: a queue of 2 requests that
    // wait up to a second for a batch, and six requests at once.
    let (status, body) = post(
        &client,
        &url,
        "/api/plinth/v1/deployments",
        json!({"name": "tight", "model": format!("churn/{version}"), "batching": {"max_batch_size": 64, "max_queue_delay_microseconds": 1_000_000, "max_queue_size": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let (client, url, request) = (client.clone(), url.clone(), request.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let (status, answer) = post(&client, &url, "/v2/models/tight/infer", request).await;
                (status, answer, started.elapsed())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in burst {
        let (status, answer, took) = t.await.expect("burst task");
        if status == 503 {
            assert!(answer["error"].as_str().is_some_and(|m| m.contains("queue is full")), "{answer}");
            assert!(took < std::time::Duration::from_millis(900), "a refusal is immediate, not queued ({took:?})");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&200) && statuses.contains(&503), "{statuses:?}");

    // kill -9: the deployment comes back on restart, loaded before the first request.
    server.kill9();
    let server = TestServer::start_in(bin(), dir.path(), &[]).expect("restart");
    let url = server.url.clone();
    let (status, body) = get(&client, &url, "/api/plinth/v1/deployments/churn").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployment"]["variants"][0]["state"], "READY", "{body}");
    let (status, answer) = post(&client, &url, "/v2/models/churn/infer", request).await;
    assert_eq!(status, 200, "{answer}");

    // Deleting it stops serving it.
    let res = client.delete(format!("{url}/api/plinth/v1/deployments/churn")).send().await.expect("delete");
    assert_eq!(res.status(), 200);
    let (status, _) = get(&client, &url, "/v2/models/churn").await;
    assert_eq!(status, 404);
}

/// Runs the CLI against `url`; its JSON answer.
fn cli(url: &str, list: &[&str]) -> Value {
    let out = std::process::Command::new(bin()).args(list).env("PLINTH_SERVER", url).output().expect("run plinth");
    assert!(out.status.success(), "plinth {list:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_challenger_that_fails_is_rolled_back_by_itself() {
    let Some(models) = models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();

    // The stable version takes 8 features; the challenger (another model) takes 6, so every request
    // written for the stable one fails on it: a regression automatic rollback must catch.
    let stable = register(&client, &url, "scoring", &models.join("logreg_mlflow")).await;
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::copy(models.join("gbr.onnx"), other.path().join("model.onnx")).expect("copy");
    let challenger = register(&client, &url, "scoring", other.path()).await;
    let (status, hook) = post(
        &client,
        &url,
        "/api/plinth/v1/webhooks",
        json!({"name": "rollbacks", "url": "http://127.0.0.1:9/hook", "events": ["deployment.rolled_back"]}),
    )
    .await;
    assert_eq!(status, 200, "{hook}");
    let created = cli(
        &url,
        &[
            "deployments",
            "create",
            "guarded",
            "--variant",
            &format!("stable=scoring/{stable}"),
            "--variant",
            &format!("challenger=scoring/{challenger}"),
            "--traffic",
            "stable=80,challenger=20",
            "--rollback-on",
            "error_rate>5%,window=10s,min_requests=10",
            "--log-inputs",
            "0.5",
        ],
    );
    assert_eq!(created["deployment"]["rollback"]["condition"], "error_rate>5%,window=10s,min_requests=10", "{created}");

    let inputs = read_json(models.join("logreg.inputs.json"));
    let request = json!({"inputs": [{"name": "X", "shape": inputs["X"]["shape"], "datatype": "FP32", "data": inputs["X"]["data"]}]});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut failures = 0;
    let mut sent = 0;
    loop {
        let (status, _) = post(&client, &url, "/v2/models/guarded/infer", request.clone()).await;
        failures += usize::from(status != 200);
        sent += 1;
        let (_, body) = get(&client, &url, "/api/plinth/v1/deployments/guarded").await;
        if body["deployment"]["variants"][1]["weight"].as_i64() == Some(0) {
            assert_eq!(body["deployment"]["variants"][0]["weight"].as_i64(), Some(100), "the stable variant took the share: {body}");
            assert_eq!(body["deployment"]["generation"].as_i64(), Some(2), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the failing challenger was not rolled back ({failures} failures): {body}");
    }
    assert!(failures >= 10, "judged on at least min_requests failures ({failures})");
    // Every request now reaches the stable variant and succeeds.
    for _ in 0..30 {
        sent += 1;
        let (status, answer) = post(&client, &url, "/v2/models/guarded/infer", request.clone()).await;
        assert_eq!((status, answer["parameters"]["variant"].as_str()), (200, Some("stable")), "{answer}");
    }
    // Audited as the system's change, with the reason; announced to webhooks; counted.
    let (_, audit) = get(&client, &url, "/api/plinth/v1/audit?resource_type=deployment&resource_id=guarded").await;
    let rollback = audit["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "deployment.rollback"))
        .unwrap_or_else(|| panic!("no deployment.rollback in {audit}"));
    assert_eq!(rollback["actor"], "system");
    assert!(rollback.to_string().contains("error rate 100.00%"), "{rollback}");
    // The webhook event and the metric follow the stored change, moments later.
    let hook_id = hook["webhook"]["id"].as_str().expect("id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, deliveries) = get(&client, &url, &format!("/api/plinth/v1/webhooks/{hook_id}/deliveries")).await;
        let metrics = client.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let announced = deliveries["deliveries"].as_array().is_some_and(|d| d.iter().any(|d| d["event"] == "deployment.rolled_back"));
        if announced && metrics.contains("plinth_serving_rollbacks_total{deployment=\"guarded\",variant=\"challenger\"} 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no webhook delivery or rollback metric: {deliveries}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The CLI adds, replaces and removes variants by name on update, and turns rollback off.
    let updated = cli(
        &url,
        &[
            "deployments",
            "update",
            "guarded",
            "--remove-variant",
            "challenger",
            "--variant",
            &format!("fresh=scoring/{stable}"),
            "--traffic",
            "stable=90,fresh=10",
            "--no-rollback",
        ],
    );
    let variants = updated["deployment"]["variants"].as_array().expect("variants");
    assert_eq!(
        variants.iter().map(|v| (v["name"].as_str(), v["weight"].as_i64())).collect::<Vec<_>>(),
        [(Some("stable"), Some(90)), (Some("fresh"), Some(10))]
    );
    assert!(updated["deployment"]["rollback"].is_null(), "{updated}");

    // An objective: its attainment over its window, as this node served it. Bad input is an error
    // but not a failure of the server's, so it does not count against availability.
    let condition = "p99_ms<5000,availability>99.9%,window=600s";
    let with_objective = cli(&url, &["deployments", "update", "guarded", "--objective", condition]);
    assert_eq!(with_objective["deployment"]["objective"]["condition"], condition, "{with_objective}");
    for _ in 0..20 {
        sent += 1;
        let (status, answer) = post(&client, &url, "/v2/models/guarded/infer", request.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    sent += 1;
    failures += 1;
    let (status, _) =
        post(&client, &url, "/v2/models/guarded/infer", json!({"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}]}))
            .await;
    assert_eq!(status, 400);
    let report = cli(&url, &["deployments", "objective", "guarded"]);
    assert_eq!((report["requests"].as_u64(), report["errors"].as_u64()), (Some(21), Some(1)), "{report}");
    assert_eq!(report["availability"]["observed"], json!(1.0), "{report}");
    assert_eq!(report["availability"]["met"], json!(true), "{report}");
    assert_eq!(report["latency"]["met"], json!(true), "{report}");
    assert!(report["latency"]["observed_ms"].as_f64().is_some_and(|ms| ms > 0.0 && ms < 5000.0), "{report}");
    let (status, body) = get(&client, &url, "/api/plinth/v1/deployments/no-such/objective").await;
    assert_eq!(status, 404, "{body}");

    // The prediction log: every request above, in Parquet, readable once the server has stopped.
    server.terminate(std::time::Duration::from_secs(30)).expect("graceful stop");
    let mut files = Vec::new();
    let mut stack = vec![dir.path().join("serving/predictions/deployment=guarded")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("prediction log directory").flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(!files.is_empty() && files.iter().all(|f| f.extension().is_some_and(|e| e == "parquet")), "{files:?}");
    use plinth_features::arrow::array::{Array, AsArray};
    use plinth_features::arrow::datatypes::Int64Type;
    let (mut rows, mut errors, mut with_inputs) = (0, 0, 0);
    for f in &files {
        let reader =
            plinth_features::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).expect("open"))
                .expect("parquet")
                .build()
                .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).clone();
            let (outcome, variant, version, inputs, outputs) =
                (column("outcome"), column("variant"), column("model_version"), column("inputs"), column("outputs"));
            for r in 0..batch.num_rows() {
                rows += 1;
                let ok = outcome.as_string::<i32>().value(r) == "OK";
                errors += usize::from(!ok);
                with_inputs += usize::from(!inputs.is_null(r));
                assert_eq!(ok, !outputs.is_null(r), "outputs are logged for answered requests only");
                let (v, n) = (variant.as_string::<i32>().value(r), version.as_primitive::<Int64Type>().value(r));
                assert!(((v == "stable" || v == "fresh") && n == stable) || (v == "challenger" && n == challenger), "{v} {n}");
            }
        }
    }
    assert_eq!((rows, errors), (sent, failures), "one record per request, with its outcome");
    assert!(with_inputs * 2 <= rows && with_inputs * 2 + 4 >= rows, "half the inputs sampled: {with_inputs} of {rows}");
}

#[tokio::test]
async fn a_deployment_looks_its_features_up_in_the_online_store() {
    let Some(models) = models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();

    // Customers with eight numeric features each, pushed to the online store: the five rows the
    // reference answers were computed on, as customers 1 to 5.
    let features: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    let text = format!(
        r#"
[[entity]]
name = "customer"
join_keys = [{{ name = "customer_id", type = "int64" }}]

[[source]]
name = "driver_stats"
path = "data"
timestamp_field = "event_timestamp"

[[source]]
name = "customer_push"
push_to = "driver_stats"

[[feature_view]]
name = "profile"
entities = ["customer"]
source = "customer_push"
features = [{}]

[[feature_service]]
name = "churn_features"
features = [{}]
"#,
        features.iter().map(|f| format!("{{ name = \"{f}\", type = \"float64\" }}")).collect::<Vec<_>>().join(", "),
        features.iter().map(|f| format!("\"profile:{f}\"")).collect::<Vec<_>>().join(", ")
    );
    let inputs = read_json(models.join("logreg.inputs.json"));
    let rows: Vec<f64> = inputs["X"]["data"].as_array().expect("data").iter().map(|v| v.as_f64().expect("number")).collect();
    // The push source's batch source: a Parquet file with the view's columns (one old row).
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("data")).expect("mkdir");
    {
        use plinth_features::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
        let mut columns: Vec<(String, ArrayRef)> = vec![
            ("customer_id".into(), std::sync::Arc::new(Int64Array::from(vec![100]))),
            ("event_timestamp".into(), std::sync::Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]))),
        ];
        for f in &features {
            columns.push((f.clone(), std::sync::Arc::new(Float64Array::from(vec![0.0]))));
        }
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let file = std::fs::File::create(repo.join("data/part-0.parquet")).expect("create");
        let mut writer = plinth_features::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }
    std::fs::write(repo.join("features.toml"), &text).expect("write repo");
    let (ok, out, err) = super::features::plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    let mut df = serde_json::Map::new();
    df.insert("customer_id".into(), json!([1, 2, 3, 4, 5]));
    df.insert("event_timestamp".into(), json!(vec!["2030-01-01T00:00:00Z"; 5]));
    for (i, f) in features.iter().enumerate() {
        df.insert(f.clone(), json!((0..5).map(|r| rows[r * 8 + i]).collect::<Vec<_>>()));
    }
    let (status, body) = post(&client, &url, "/push", json!({"push_source_name": "customer_push", "df": df})).await;
    assert_eq!(status, 200, "{body}");

    // The same model twice: fed its rows directly, and fed by the feature service.
    let version = register(&client, &url, "scoring", &models.join("logreg_mlflow")).await;
    let (status, body) =
        post(&client, &url, "/api/plinth/v1/deployments", json!({"name": "direct", "model": format!("scoring/{version}")})).await;
    assert_eq!(status, 200, "{body}");
    let created =
        cli(&url, &["deployments", "create", "looked-up", "--model", &format!("scoring/{version}"), "--feature-service", "churn_features"]);
    assert_eq!(created["deployment"]["variants"][0]["state"], "READY", "{created}");
    // Requests now carry the entity key, not the model's input.
    let (_, meta) = get(&client, &url, "/v2/models/looked-up").await;
    assert_eq!(meta["inputs"], json!([{"name": "customer_id", "datatype": "INT64", "shape": [-1]}]), "{meta}");

    let direct = json!({"inputs": [{"name": "X", "shape": [5, 8], "datatype": "FP32", "data": inputs["X"]["data"]}]});
    let (status, want) = post(&client, &url, "/v2/models/direct/infer", direct).await;
    assert_eq!(status, 200, "{want}");
    let by_key = json!({"inputs": [{"name": "customer_id", "shape": [5], "datatype": "INT64", "data": [1, 2, 3, 4, 5]}], "parameters": {"return_features": true}});
    let (status, got) = post(&client, &url, "/v2/models/looked-up/infer", by_key).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["outputs"], want["outputs"], "the same answers, bit for bit");
    let used: Value = serde_json::from_str(got["parameters"]["features"].as_str().expect("features asked for")).expect("json");
    assert_eq!(used["f0"]["values"][2].as_f64(), Some(rows[16]), "{used}");
    assert_eq!(used["f7"]["statuses"], json!(vec!["PRESENT"; 5]));

    // MLflow's scoring protocol takes the entity key as a column.
    let res = client
        .post(format!("{url}/deployments/looked-up/invocations"))
        .json(&json!({"dataframe_records": [{"customer_id": 2}, {"customer_id": 4}]}))
        .send()
        .await
        .expect("invocations");
    assert_eq!(res.status(), 200);
    let scored: Value = res.json().await.expect("json");
    assert_eq!(scored["predictions"][1]["label"], want["outputs"][0]["data"][3], "{scored}");

    // An unknown customer has no features: refused with the feature, row and status, until the
    // deployment declares defaults for them.
    let unknown = json!({"inputs": [{"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [1, 999]}]});
    let (status, body) = post(&client, &url, "/v2/models/looked-up/infer", unknown.clone()).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().expect("error");
    assert!(message.contains("feature 'f0' is NOT_FOUND for row 1 (customer_id=999)"), "{message}");
    let mut args: Vec<String> = ["deployments", "update", "looked-up"].iter().map(|s| (*s).to_owned()).collect();
    for f in &features {
        args.push("--feature-default".into());
        args.push(format!("{f}=0"));
    }
    let updated = cli(&url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(updated["deployment"]["feature_defaults"]["f3"], json!(0.0), "{updated}");
    let (status, body) = post(&client, &url, "/v2/models/looked-up/infer", unknown).await;
    assert_eq!(status, 200, "{body}");

    // A feature service that does not fit the model is refused when deployed, with the reason.
    let (status, body) = post(
        &client,
        &url,
        "/api/plinth/v1/deployments",
        json!({"name": "misfit", "model": format!("scoring/{version}"), "feature_service": "nope"}),
    )
    .await;
    assert_eq!((status, body["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")), "{body}");
}
