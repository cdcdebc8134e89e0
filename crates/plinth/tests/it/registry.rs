//! The registry through the binary: acknowledged registry writes survive `kill -9`, and the
//! client commands (`plinth models …`, `plinth audit …`) drive gates, promotions and the audit trail.

use std::process::Command;

use plinth_test_support::TestServer;
use serde_json::{Value, json};

use super::{bin, create_run, get, post};

#[tokio::test]
async fn registry_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let (_, run_id) = create_run(&client, &url, "registry-durable").await;
    let (status, body) = post(&client, &url, "/api/2.0/mlflow/registered-models/create", json!({"name": "durable"})).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..5 {
        let (status, body) = post(
            &client,
            &url,
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "durable", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) =
        post(&client, &url, "/api/2.0/mlflow/registered-models/alias", json!({"name": "durable", "alias": "champion", "version": "4"}))
            .await;
    assert_eq!(status, 200, "{body}");
    let res = client
        .put(format!("{url}/api/plinth/v1/registered-models/durable/gates/champion"))
        .json(&json!({"conditions": ["metrics.auc >= 0.5"], "approvals_required": 1}))
        .send()
        .await
        .expect("gate");
    assert_eq!(res.status(), 200);

    server.kill9();
    let server = TestServer::start_in(bin(), dir.path(), &[]).expect("restart");
    let url = server.url.clone();
    let (status, body) = get(&client, &url, "/api/2.0/mlflow/registered-models/get?name=durable").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["registered_model"]["aliases"], json!([{"alias": "champion", "version": "4"}]));
    let (_, versions) = get(&client, &url, "/api/2.0/mlflow/model-versions/search?filter=name%3D%27durable%27").await;
    assert_eq!(versions["model_versions"].as_array().map(Vec::len), Some(5));
    let (_, gate) = get(&client, &url, "/api/plinth/v1/registered-models/durable/gates/champion").await;
    assert_eq!(gate["gate"]["approvals_required"], 1);
    // The next number continues after the last acknowledged one.
    let (_, body) = post(
        &client,
        &url,
        "/api/2.0/mlflow/model-versions/create",
        json!({"name": "durable", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
    )
    .await;
    assert_eq!(body["model_version"]["version"], "6");
    let (_, audit) = get(&client, &url, "/api/plinth/v1/audit?resource_id=durable%2F*").await;
    assert_eq!(audit["events"].as_array().map(Vec::len), Some(6), "{audit}");
}

fn plinth(url: &str, user: &str, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(bin()).args(args).env("PLINTH_SERVER", url).env("PLINTH_USER", user).output().expect("run plinth");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

#[tokio::test]
async fn cli_drives_gates_promotions_and_audit() {
    let server = TestServer::start(bin()).expect("start");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let (_, run_id) = create_run(&client, &url, "cli").await;
    let (status, _) = post(
        &client,
        &url,
        "/api/2.0/mlflow/runs/log-metric",
        json!({"run_id": run_id, "key": "auc", "value": 0.91, "timestamp": 1, "step": 0}),
    )
    .await;
    assert_eq!(status, 200);
    post(&client, &url, "/api/2.0/mlflow/registered-models/create", json!({"name": "cli-model"})).await;
    let (_, v) = post(
        &client,
        &url,
        "/api/2.0/mlflow/model-versions/create",
        json!({"name": "cli-model", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
    )
    .await;
    assert_eq!(v["model_version"]["version"], "1");

    let (ok, gate, err) = plinth(
        &url,
        "admin",
        &["models", "gate", "set", "cli-model", "--alias", "champion", "--condition", "metrics.auc >= 0.95", "--approvals", "1"],
    );
    assert!(ok, "{err}");
    assert_eq!(gate["gate"]["conditions"], json!(["metrics.auc >= 0.95"]));
    assert_eq!(gate["gate"]["kind"], "alias");
    // A stage gate is spelled as one; a bare stage name cannot become an alias gate that looks like it.
    let (ok, _, err) =
        plinth(&url, "admin", &["models", "gate", "set", "cli-model", "--alias", "Staging", "--condition", "metrics.auc >= 0.99"]);
    assert!(!ok && err.contains("is a stage name") && err.contains("--stage staging"), "{err}");
    let (ok, _, err) = plinth(&url, "admin", &["models", "gate", "set", "cli-model", "--condition", "metrics.auc >= 0.99"]);
    assert!(!ok && err.contains("--alias") && err.contains("--stage"), "a target is required: {err}");
    let (ok, gate, err) =
        plinth(&url, "admin", &["models", "gate", "set", "cli-model", "--stage", "staging", "--condition", "metrics.auc >= 0.99"]);
    assert!(ok, "{err}");
    assert_eq!((gate["gate"]["target"].as_str(), gate["gate"]["kind"].as_str()), (Some("stage:staging"), Some("stage")));
    let (status, body) = post(
        &client,
        &url,
        "/api/2.0/mlflow/model-versions/transition-stage",
        json!({"name": "cli-model", "version": "1", "stage": "Staging", "archive_existing_versions": false}),
    )
    .await;
    assert_eq!((status, body["error_code"].as_str()), (409, Some("INVALID_STATE_TRANSITION")), "the stage is guarded: {body}");
    let (ok, _, err) = plinth(&url, "admin", &["models", "gate", "delete", "cli-model", "--stage", "staging"]);
    assert!(ok, "{err}");

    let (ok, _, err) = plinth(&url, "alice", &["models", "promote", "cli-model", "--alias", "champion", "--version", "1"]);
    assert!(!ok);
    assert!(err.contains("INVALID_STATE_TRANSITION"), "{err}");

    let (ok, req, err) = plinth(
        &url,
        "alice",
        &["models", "promote", "cli-model", "--alias", "champion", "--version", "1", "--request", "--reason", "ship it"],
    );
    assert!(ok, "{err}");
    let id = req["promotion"]["id"].as_str().expect("id").to_owned();
    assert_eq!(req["promotion"]["status"], "PENDING");

    // The approval is recorded but the condition fails, so the alias does not move.
    let (ok, approved, err) = plinth(&url, "bob", &["models", "requests", "approve", &id, "--comment", "fine"]);
    assert!(ok, "{err}");
    assert_eq!(approved["promotion"]["status"], "PENDING");
    assert_eq!(approved["gate_report"]["approved"], true);
    assert_eq!(approved["gate_report"]["conditions_passed"], false);
    // Applying it now moves nothing: a script must see a failure, with the reason.
    let (ok, still, err) = plinth(&url, "bob", &["models", "requests", "apply", &id]);
    assert!(!ok, "a request left pending must not exit 0");
    assert_eq!(still["promotion"]["status"], "PENDING");
    assert!(err.contains("was not applied: it is PENDING") && err.contains("failing: metrics.auc >= 0.95"), "{err}");
    // A server address without its scheme is explained, not refused as a bad URL scheme.
    let bare = url.trim_start_matches("http://");
    let out = Command::new(bin()).args(["models", "gate", "list", "cli-model"]).env("PLINTH_SERVER", bare).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("--server http://{bare}")), "{err}");

    // Relax the gate; applying the request now moves the alias.
    let (ok, _, err) = plinth(
        &url,
        "admin",
        &["models", "gate", "set", "cli-model", "--alias", "champion", "--condition", "metrics.auc >= 0.9", "--approvals", "1"],
    );
    assert!(ok, "{err}");
    let (ok, applied, err) = plinth(&url, "bob", &["models", "requests", "apply", &id]);
    assert!(ok, "{err}");
    assert_eq!(applied["promotion"]["status"], "APPLIED");
    let (_, by_alias) = get(&client, &url, "/api/2.0/mlflow/registered-models/alias?name=cli-model&alias=champion").await;
    assert_eq!(by_alias["model_version"]["version"], "1");

    let (ok, lineage, err) = plinth(&url, "bob", &["models", "lineage", "cli-model", "1"]);
    assert!(ok, "{err}");
    assert_eq!(lineage["run"]["run_id"], run_id.as_str());

    let (ok, audit, err) = plinth(&url, "bob", &["audit", "list", "--resource-type", "alias", "--resource-id", "cli-model@champion"]);
    assert!(ok, "{err}");
    let events = audit["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["outcome"] == "REFUSED" && e["actor"] == "alice"), "{audit}");
    let (ok, audit, err) = plinth(&url, "bob", &["audit", "list", "--resource-type", "promotion", "--outcome", "REFUSED"]);
    assert!(ok, "{err}");
    assert!(audit["events"].as_array().is_some_and(|e| !e.is_empty()), "{audit}");
}
