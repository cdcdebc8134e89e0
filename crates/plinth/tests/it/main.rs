//! Black-box tests of the real `plinth` binary: lifecycle, durability, robustness, path safety.

mod auth;
mod durability;
mod faults;
mod features;
mod jobs;
mod large_artifacts;
mod lifecycle;
mod registry;
mod robustness;
mod serving;

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

/// Sends a request with a body of `len` bytes over a raw socket, the body from another thread, and
/// reads the answer meanwhile: `(status, answer body)`. A server may answer before it has read the
/// whole body (a refusal) and close; an HTTP client still writing then often reports the broken
/// pipe instead of the answer, which makes such tests flaky.
fn send_large_body(url: &str, method: &str, path: &str, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
    });
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let (mut res, mut buf) = (Vec::new(), [0u8; 4096]);
    let head_end = |res: &[u8]| res.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    loop {
        if let Some(end) = head_end(&res) {
            let head = String::from_utf8_lossy(&res[..end]).to_ascii_lowercase();
            let want = head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
            if want.is_some_and(|w| res.len() >= end + w) {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => res.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&res).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    let body = head_end(&res).map(|end| String::from_utf8_lossy(&res[end..]).into_owned()).unwrap_or(text);
    (status, body)
}

async fn create_run(client: &reqwest::Client, url: &str, experiment: &str) -> (String, String) {
    let (status, body) = post(client, url, "/api/2.0/mlflow/experiments/create", json!({"name": experiment})).await;
    assert_eq!(status, 200, "{body}");
    let exp_id = body["experiment_id"].as_str().expect("id").to_owned();
    let (status, body) = post(client, url, "/api/2.0/mlflow/runs/create", json!({"experiment_id": exp_id, "start_time": 1})).await;
    assert_eq!(status, 200, "{body}");
    (exp_id, body["run"]["info"]["run_id"].as_str().expect("run id").to_owned())
}
