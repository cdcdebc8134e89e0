//! A 2 GiB artifact moves through the proxy both ways while the server's memory stays flat.

use bytes::Bytes;
use futures::StreamExt;

use super::{create_run, start};

const SIZE: u64 = 2 << 30;
const CHUNK: usize = 1 << 20;
/// The server's peak resident memory may not grow by more than this while moving 2 GiB.
const MAX_GROWTH_BYTES: u64 = 128 << 20;

/// Peak resident set size of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test]
async fn two_gib_upload_and_download_keep_server_memory_flat() {
    let server = start();
    let client = reqwest::Client::new();
    let (exp_id, run_id) = create_run(&client, &server.url, "large").await;
    let before = peak_rss(server.pid());
    let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/big.bin", server.url);
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let n_chunks = (SIZE / CHUNK as u64) as usize;
    let body = futures::stream::iter((0..n_chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = client.put(&url).body(reqwest::Body::wrap_stream(body)).send().await.expect("upload");
    assert_eq!(res.status(), 200);
    let stored = server.data_dir.join(format!("artifacts/{exp_id}/{run_id}/artifacts/big.bin"));
    assert_eq!(std::fs::metadata(&stored).expect("stored").len(), SIZE);

    let res = client.get(&url).send().await.expect("download");
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(SIZE));
    let mut received = 0u64;
    let mut stream = res.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("chunk");
        assert!(piece.iter().all(|b| *b == 0x5a));
        received += piece.len() as u64;
    }
    assert_eq!(received, SIZE);
    let after = peak_rss(server.pid());
    assert!(after.saturating_sub(before) < MAX_GROWTH_BYTES, "peak RSS grew from {before} to {after} bytes");
    std::fs::remove_file(stored).expect("cleanup");
}
