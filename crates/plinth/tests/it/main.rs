//! Black-box tests of the real `plinth` binary: lifecycle, durability, robustness, path safety.

mod auth;
mod durability;
mod faults;
mod features;
mod large_artifacts;
mod lifecycle;
mod registry;
mod robustness;

use std::path::Path;

use plinth_test_support::TestServer;
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_plinth"))
}

fn start() -> TestServer {
    TestServer::start(bin()).expect("server starts")
}

async fn post(client: &reqwest::Client, url: &str, path: &str, body: Value) -> (u16, Value) {
    let res = client.post(format!("{url}{path}")).json(&body).send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: &str, path: &str) -> (u16, Value) {
    let res = client.get(format!("{url}{path}")).send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn create_run(client: &reqwest::Client, url: &str, experiment: &str) -> (String, String) {
    let (status, body) = post(client, url, "/api/2.0/mlflow/experiments/create", json!({"name": experiment})).await;
    assert_eq!(status, 200, "{body}");
    let exp_id = body["experiment_id"].as_str().expect("id").to_owned();
    let (status, body) = post(client, url, "/api/2.0/mlflow/runs/create", json!({"experiment_id": exp_id, "start_time": 1})).await;
    assert_eq!(status, 200, "{body}");
    (exp_id, body["run"]["info"]["run_id"].as_str().expect("run id").to_owned())
}
