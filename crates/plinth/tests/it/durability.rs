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
    // The upload is in the audit trail, with its size.
    let path = format!("{exp_id}/{run_id}/artifacts/model.bin");
    let (_, audit) = get(&client, &url, &format!("/api/plinth/v1/audit?resource_type=artifact&resource_id={path}")).await;
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["action"], "artifact.upload");
    assert!(events[0]["changes"].to_string().contains("300000"), "{audit}");
}

/// `kill -9` during a burst of audited changes from concurrent clients: after the restart, every
/// experiment that exists (each acknowledged one among them) has exactly one creation record and
/// every acknowledged tag its record, and no record names a change that did not commit.
#[tokio::test]
async fn every_acknowledged_change_has_exactly_one_audit_record_after_kill_9() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_in(bin(), dir.path(), &[]).expect("start");
    let client = reqwest::Client::new();
    let url = server.url.clone();
    // Per client: (experiment id, whether its tag was acknowledged) for each acknowledged creation.
    let acknowledged: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let tasks: Vec<_> = (0..6)
        .map(|task| {
            let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("burst-{task}-{i}");
                    let Ok(res) = client.post(format!("{url}/api/2.0/mlflow/experiments/create")).json(&json!({"name": name})).send().await
                    else {
                        return;
                    };
                    let Ok(body) = res.json::<serde_json::Value>().await else { return };
                    let Some(id) = body["experiment_id"].as_str().map(str::to_owned) else { return };
                    acknowledged.lock().expect("lock").push((id.clone(), false));
                    let tag = json!({"experiment_id": id, "key": "k", "value": "v"});
                    let Ok(res) = client.post(format!("{url}/api/2.0/mlflow/experiments/set-experiment-tag")).json(&tag).send().await
                    else {
                        return;
                    };
                    if res.status() == 200 && res.bytes().await.is_ok() {
                        acknowledged.lock().expect("lock").iter_mut().filter(|(it, _)| *it == id).for_each(|(_, tagged)| *tagged = true);
                    }
                }
            })
        })
        .collect();
    // Kill in the middle of the burst, once a good number of changes are in.
    for _ in 0..200 {
        if acknowledged.lock().expect("lock").len() >= 60 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    server.kill9();
    for t in tasks {
        t.await.expect("client task");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 20, "the burst made progress before the kill ({} changes)", acknowledged.len());

    let server = TestServer::start_in(bin(), dir.path(), &[]).expect("restart");
    let url = server.url.clone();
    // Every experiment of the burst that exists after the restart.
    let mut existing = BTreeSet::new();
    let mut token = String::new();
    loop {
        let (status, page) = post(
            &client,
            &url,
            "/api/2.0/mlflow/experiments/search",
            json!({"max_results": 1000, "filter": "name LIKE 'burst-%'", "page_token": token}),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        for e in page["experiments"].as_array().into_iter().flatten() {
            existing.insert(e["experiment_id"].as_str().expect("id").to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_owned(),
            _ => break,
        }
    }
    // Every record of the burst, by experiment and action.
    let mut records: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let (status, page) = get(
            &client,
            &url,
            &format!("/api/plinth/v1/audit?resource_type=experiment&outcome=OK&max_results=1000&page_token={page_token}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().into_iter().flatten() {
            let key = (e["resource_id"].as_str().expect("id").to_owned(), e["action"].as_str().expect("action").to_owned());
            *records.entry(key).or_default() += 1;
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => page_token = t.to_owned(),
            _ => break,
        }
    }
    for (id, tagged) in &acknowledged {
        assert!(existing.contains(id), "acknowledged experiment {id} survives the kill");
        if *tagged {
            assert_eq!(records.get(&(id.clone(), "experiment.tag.set".to_owned())), Some(&1), "experiment {id}: one record of its tag");
        }
    }
    for id in &existing {
        assert_eq!(records.get(&(id.clone(), "experiment.create".to_owned())), Some(&1), "experiment {id}: one creation record");
    }
    for ((id, action), _) in records.iter().filter(|((id, _), _)| id != "0") {
        assert!(existing.contains(id), "a {action} record names experiment {id}, which did not commit");
    }
}
