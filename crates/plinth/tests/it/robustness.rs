//! Malformed input never yields a 5xx or a panic, and no artifact path escapes the root.

use std::io::{Read, Write};

use serde_json::{Value, json};

use super::{create_run, start};

const POST_ENDPOINTS: &[&str] = &[
    "experiments/create",
    "experiments/search",
    "experiments/update",
    "experiments/delete",
    "experiments/restore",
    "experiments/set-experiment-tag",
    "experiments/delete-experiment-tag",
    "runs/create",
    "runs/update",
    "runs/delete",
    "runs/restore",
    "runs/search",
    "runs/log-metric",
    "runs/log-parameter",
    "runs/set-tag",
    "runs/delete-tag",
    "runs/log-batch",
    "runs/log-inputs",
    "runs/outputs",
    "runs/log-model",
    "logged-models",
    "logged-models/search",
];
const GET_ENDPOINTS: &[&str] = &[
    "experiments/get",
    "experiments/get-by-name",
    "runs/get",
    "metrics/get-history",
    "metrics/get-history-bulk-interval",
    "metrics/get-history-bulk",
    "artifacts/list",
    "logged-models/m-0000",
];

fn bodies(run_id: &str) -> Vec<Value> {
    vec![
        json!({}),
        json!(null),
        json!([1, 2]),
        json!("string"),
        json!({"experiment_id": 5, "name": 7, "run_id": ["x"], "key": {"a": 1}, "value": true}),
        json!({"experiment_id": "1", "run_id": run_id, "key": "../..", "value": "x", "timestamp": "soon", "step": 1.5}),
        json!({"run_id": run_id, "metrics": [{"key": "m"}], "params": "nope", "tags": [1]}),
        json!({"run_id": run_id, "metrics": [{"key": "m", "value": "abc", "timestamp": -1}]}),
        json!({"run_id": run_id, "datasets": [{"dataset": {"name": 1}}], "models": [{}]}),
        json!({"filter": "metrics.x >>> 1 OR (", "order_by": ["nope DESC DESC"], "max_results": -5, "page_token": "%%%"}),
        json!({"experiment_ids": ["1"], "filter": "params.a = 'x' AND", "max_results": 1e300}),
        json!({"run_id": run_id, "model_json": "{not json"}),
        json!({"run_id": "x".repeat(10_000), "experiment_id": "\u{0000}\u{ffff}"}),
    ]
}

#[tokio::test]
async fn malformed_requests_get_4xx_json_errors() {
    let server = start();
    let client = reqwest::Client::new();
    let (_, run_id) = create_run(&client, &server.url, "robust").await;
    for endpoint in POST_ENDPOINTS {
        for body in bodies(&run_id) {
            let res = client.post(format!("{}/api/2.0/mlflow/{endpoint}", server.url)).json(&body).send().await.expect("send");
            let status = res.status().as_u16();
            let text = res.text().await.expect("body");
            assert!(status < 500, "{endpoint} {body} -> {status} {text}");
            if status >= 400 {
                let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{endpoint}: not JSON: {text}"));
                assert!(parsed["error_code"].is_string() && parsed["message"].is_string(), "{endpoint}: {text}");
            }
        }
        for raw in ["{", "{\"a\":", "\u{fffd}\u{fffd}", "[[[[", "{\"run_id\": 1e999}"] {
            let res = client
                .post(format!("{}/api/2.0/mlflow/{endpoint}", server.url))
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .expect("send");
            assert!(res.status().as_u16() < 500, "{endpoint} {raw:?} -> {}", res.status());
        }
    }
    for endpoint in GET_ENDPOINTS {
        for query in [
            "",
            "?run_id=nope&metric_key=",
            "?experiment_id=abc&run_ids=1&max_results=x",
            "?run_id=%00&path=../../etc",
            "?run_ids=a&metric_key=m&start_step=5",
        ] {
            let res = client.get(format!("{}/api/2.0/mlflow/{endpoint}{query}", server.url)).send().await.expect("send");
            assert!(res.status().as_u16() < 500, "{endpoint}{query} -> {}", res.status());
        }
    }
    // A body over the request limit is refused, and the server stays up. (A raw socket: an HTTP client
    // still writing the body when the refusal arrives may report the broken pipe instead of the
    // answer, which made this flaky.)
    let url = server.url.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || super::send_large_body(&url, "POST", "/api/2.0/mlflow/runs/log-batch", 40 << 20))
            .await
            .expect("raw request");
    assert_eq!(status, 400, "{body}");
    // The server closed that connection after refusing the body: probe on a fresh one.
    let (status, _) = super::get(&reqwest::Client::new(), &server.url, "/health").await;
    assert_eq!(status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Sends a request line as given (HTTP clients normalize `..` away, so this uses a raw socket).
fn raw_request(url: &str, method: &str, target: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").expect("write");
    let mut res = String::new();
    stream.read_to_string(&mut res).expect("read");
    let status = res.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = res.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn artifact_paths_cannot_escape_the_root() {
    let server = start();
    let secret = server.data_dir.join("secret.txt");
    std::fs::write(&secret, "do not read").expect("write");
    let prefix = "/api/2.0/mlflow-artifacts/artifacts";
    for (method, target) in [
        ("GET", format!("{prefix}/../secret.txt")),
        ("GET", format!("{prefix}/a/../../secret.txt")),
        ("GET", format!("{prefix}/%2e%2e/secret.txt")),
        ("GET", format!("{prefix}/%252e%252e/secret.txt")),
        ("GET", format!("{prefix}/..%2fsecret.txt")),
        ("GET", format!("{prefix}/..%5csecret.txt")),
        ("GET", format!("{prefix}/%2fetc/passwd")),
        ("GET", format!("{prefix}?path=../")),
        ("GET", format!("{prefix}?path=%2Fetc")),
        ("PUT", format!("{prefix}/../../escape.txt")),
        ("PUT", format!("{prefix}/x/%2e%2e/%2e%2e/escape.txt")),
        ("DELETE", format!("{prefix}/%2e%2e")),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/%2e%2e/x".to_owned()),
    ] {
        let (status, body) = raw_request(&server.url, method, &target);
        let acceptable = status == 404 && body.contains("ENDPOINT_NOT_FOUND");
        assert!(
            acceptable || (status == 400 && body == r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Invalid path"}"#),
            "{method} {target} -> {status} {body}"
        );
    }
    assert!(!server.data_dir.join("escape.txt").exists());
    assert!(!server.data_dir.parent().expect("parent").join("escape.txt").exists());
    let client = reqwest::Client::new();
    let (_, run_id) = create_run(&client, &server.url, "paths").await;
    let (status, body) = super::get(&client, &server.url, &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=../..")).await;
    assert_eq!((status, body["message"].as_str()), (400, Some("Invalid path")));
}
