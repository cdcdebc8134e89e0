//! Every acknowledged write survives `kill -9` and a restart on the same data directory.

use plinth_test_support::TestServer;
use serde_json::json;

use super::{bin, create_run, get, post};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let (exp_id, run_id) = create_run(&client, &url, "durable").await;
    let mut acknowledged = 0;
    for batch in 0..20 {
        let metrics: Vec<_> =
            (0..100).map(|i| json!({"key": "loss", "value": i as f64, "timestamp": 1000 + batch, "step": batch * 100 + i})).collect();
        let (status, body) = post(
            &client,
            &url,
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "metrics": metrics, "params": [{"key": format!("p{batch}"), "value": "v"}], "tags": [{"key": "last", "value": batch.to_string()}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        acknowledged += 100;
    }
    let res = client
        .put(format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/model.bin"))
        .body(vec![7u8; 300_000])
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 200);
    let (status, _) =
        post(&client, &url, "/api/2.0/mlflow/runs/update", json!({"run_id": run_id, "status": "FINISHED", "end_time": 5})).await;
    assert_eq!(status, 200);

    server.kill9();
    let server = TestServer::start_in(bin(), dir.path(), &[]).expect("restart");
    let url = server.url.clone();
    let (status, history) = get(&client, &url, &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss")).await;
    assert_eq!(status, 200);
    assert_eq!(history["metrics"].as_array().map(Vec::len), Some(acknowledged));
    let (_, run) = get(&client, &url, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}")).await;
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    assert_eq!(run["run"]["data"]["params"].as_array().map(Vec::len), Some(20));
    let tags = run["run"]["data"]["tags"].as_array().expect("tags");
    assert!(tags.iter().any(|t| t["key"] == "last" && t["value"] == "19"));
    let body = client
        .get(format!("{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/model.bin"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), 300_000);
}
