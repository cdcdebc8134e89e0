//! The online store conformance suite on redb (always, in a temporary directory) and on Redis
//! (when `PLINTH_TEST_REDIS_URL` is set, e.g. `redis://127.0.0.1:6379/`), each test in its own
//! namespace, removed afterwards; plus the Redis adapter's namespaces and failure mapping.

use std::any::Any;

use plinth_features::Error;
use plinth_features::online::redb_store::RedbOnlineStore;
use plinth_features::online::redis_store::RedisOnlineStore;
use plinth_features::online::{FeatureValue, OnlineRecord, OnlineStore, entity_key};

type Fresh = Option<(Box<dyn OnlineStore>, Box<dyn Any + Send>)>;

async fn fresh_redb() -> Fresh {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbOnlineStore::open(&dir.path().join("online").join("online.redb")).expect("open the redb online store");
    Some((Box::new(store), Box::new(dir)))
}

fn redis_url() -> Option<String> {
    let url = std::env::var("PLINTH_TEST_REDIS_URL").ok();
    if url.is_none() {
        // Written past the test harness's output capture, so that a plain `cargo test` shows it skipped.
        let _ =
            std::io::Write::write_all(&mut std::io::stderr(), b"PLINTH_TEST_REDIS_URL is not set: the Redis online store run is skipped\n");
    }
    url
}

fn unique_namespace() -> String {
    format!("plinth-test-{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// Removes every key of a test's namespace when the test is done (or fails).
struct Namespace {
    url: String,
    namespace: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let pattern = format!("{}:*", self.namespace);
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query::<(u64, Vec<Vec<u8>>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("UNLINK").arg(&keys).query::<u64>(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

async fn fresh_redis() -> Fresh {
    let url = redis_url()?;
    let namespace = unique_namespace();
    let store = RedisOnlineStore::connect(&url, &namespace).await.expect("connect to PLINTH_TEST_REDIS_URL");
    Some((Box::new(store), Box::new(Namespace { url, namespace })))
}

mod redb {
    plinth_features::online_conformance!(super::fresh_redb);
}

mod redis_conformance {
    plinth_features::online_conformance!(super::fresh_redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_namespaces_do_not_see_each_other() {
    let Some(url) = redis_url() else { return };
    let (ns_a, ns_b) = (unique_namespace(), unique_namespace());
    let _keep = (Namespace { url: url.clone(), namespace: ns_a.clone() }, Namespace { url: url.clone(), namespace: ns_b.clone() });
    let a = RedisOnlineStore::connect(&url, &ns_a).await.expect("connect");
    let b = RedisOnlineStore::connect(&url, &ns_b).await.expect("connect");
    let key = entity_key(&[FeatureValue::Int64(1)]);
    a.write("v", vec![(key.clone(), OnlineRecord::new(10, None, &[FeatureValue::Bool(true)]))]).await.expect("write");
    // An older row in the other namespace is a first write there, not a skipped one.
    let got = b.write("v", vec![(key.clone(), OnlineRecord::new(1, None, &[FeatureValue::Bool(false)]))]).await.expect("write");
    assert_eq!(got.written, 1);
    assert_eq!(a.read("v", std::slice::from_ref(&key)).await.expect("read")[0].as_ref().map(|r| r.event_ts), Some(10));
    assert_eq!(b.read("v", std::slice::from_ref(&key)).await.expect("read")[0].as_ref().map(|r| r.event_ts), Some(1));
    assert_eq!(b.delete_view("v").await.expect("delete"), 1);
    assert_eq!(a.count("v").await.expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_is_unavailable() {
    // Port 1 on loopback refuses connections.
    let err = RedisOnlineStore::connect("redis://127.0.0.1:1/", "plinth-test").await.expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::OnlineUnavailable { .. }), "{err:?}");
    let err = RedisOnlineStore::connect("not a url", "plinth-test").await.expect_err("a bad URL");
    assert!(matches!(err, Error::Online { .. }), "{err:?}");
    let err = RedisOnlineStore::connect("redis://127.0.0.1:1/", "").await.expect_err("an empty namespace");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}
