//! Latency of online reads from the embedded store (redb), by batch size: a microbenchmark kept
//! out of the test suite.
//!
//! ```sh
//! cargo run --release -p plinth-features --example redb_read_latency
//! ```
//!
//! Loads 100,000 entities of three features, then times 2,000 reads of 1, 16 and 100 random keys
//! through `OnlineStore::read` (which runs redb's read on the blocking pool) and prints the mean
//! and the 99th percentile per read. The end-to-end figures (HTTP included, side by side with
//! Feast) come from `bench/features.py`.

use std::time::{Duration, Instant};

use plinth_features::online::redb_store::RedbOnlineStore;
use plinth_features::online::{FeatureValue, OnlineRecord, OnlineStore, entity_key};

const ENTITIES: i64 = 100_000;
const READS: usize = 2_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = RedbOnlineStore::open(&dir.path().join("online.redb")).expect("open the store");
    let values = [FeatureValue::Float64(0.5), FeatureValue::Int64(7), FeatureValue::String("abcdefgh".to_owned())];
    let keys: Vec<Vec<u8>> = (0..ENTITIES).map(|i| entity_key(&[FeatureValue::Int64(i)])).collect();
    let started = Instant::now();
    for chunk in keys.chunks(10_000) {
        let rows = chunk.iter().map(|k| (k.clone(), OnlineRecord::new(1, None, &values))).collect();
        store.write("v", rows).await.expect("write");
    }
    println!("loaded {ENTITIES} entities in {:.2?}", started.elapsed());
    for n_keys in [1usize, 16, 100] {
        let mut times: Vec<Duration> = Vec::with_capacity(READS);
        for i in 0..READS {
            let batch: Vec<Vec<u8>> = (0..n_keys).map(|j| keys[(i * 7919 + j * 104_729) % keys.len()].clone()).collect();
            let started = Instant::now();
            let got = store.read("v", &batch).await.expect("read");
            times.push(started.elapsed());
            assert!(got.iter().all(Option::is_some), "every key was written");
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / READS as u32;
        let p99 = times[READS * 99 / 100];
        println!("read of {n_keys:>3} keys: mean {mean:>10.2?}, p99 {p99:>10.2?} ({READS} reads)");
    }
}
