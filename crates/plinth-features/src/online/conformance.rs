//! The conformance suite of the online store port: newer-wins writes, batch semantics, views,
//! deletes, large batches, concurrent writers and every value type, run on each adapter.
//!
//! An adapter's tests invoke `online_conformance!(factory)`, where `factory` is an async fn
//! returning `Option<(Box<dyn OnlineStore>, Box<dyn Any + Send>)>`: a fresh, empty store and
//! whatever keeps it alive (a temporary directory, a namespace to clean up), or `None` to skip.
//! The bodies panic on failure.

use futures::future::join_all;

use crate::online::{FeatureValue, OnlineRecord, OnlineStore, WriteOutcome, encode_row, entity_key};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! online_conformance {
    ($factory:path) => {
        $crate::online_conformance!(@each $factory;
            write_then_read, older_never_overwrites, batch_with_duplicate_keys, views_are_separate,
            delete_view, many_keys, concurrent_writers, values_round_trip);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some((store, keep)) = $factory().await {
                    $crate::online::conformance::$name(&*store).await;
                    drop(store);
                    drop(keep);
                }
            }
        )*
    };
}

fn key(id: i64) -> Vec<u8> {
    entity_key(&[FeatureValue::Int64(id)])
}

/// A record whose values name it, so a read shows which write won.
fn rec(event_ts: i64, created_ts: Option<i64>, label: &str) -> OnlineRecord {
    OnlineRecord::new(event_ts, created_ts, &[FeatureValue::String(label.to_owned()), FeatureValue::Int64(event_ts)])
}

fn label(record: &OnlineRecord) -> String {
    match record.decode_values().expect("stored values decode").first() {
        Some(FeatureValue::String(s)) => s.clone(),
        other => panic!("unexpected first value {other:?}"),
    }
}

async fn write(store: &dyn OnlineStore, view: &str, rows: Vec<(Vec<u8>, OnlineRecord)>) -> WriteOutcome {
    store.write(view, rows).await.expect("write")
}

async fn read_one(store: &dyn OnlineStore, view: &str, key: &[u8]) -> Option<OnlineRecord> {
    let mut got = store.read(view, &[key.to_vec()]).await.expect("read");
    assert_eq!(got.len(), 1);
    got.pop().expect("one answer")
}

async fn label_of(store: &dyn OnlineStore, view: &str, key: &[u8]) -> String {
    label(&read_one(store, view, key).await.expect("a stored record"))
}

fn outcome(written: usize, skipped_older: usize) -> WriteOutcome {
    WriteOutcome { written, skipped_older }
}

/// Rows written come back byte for byte, in the order of the keys asked, with `None` for keys
/// never written (and for views never written); empty calls are answered empty.
pub async fn write_then_read(store: &dyn OnlineStore) {
    assert!(!store.name().is_empty());
    let rows: Vec<_> = (1..=5).map(|i| (key(i), rec(100 + i, if i % 2 == 0 { Some(i) } else { None }, &format!("k{i}")))).collect();
    assert_eq!(write(store, "stats", rows.clone()).await, outcome(5, 0));
    assert_eq!(write(store, "stats", Vec::new()).await, outcome(0, 0));

    let asked = [key(3), key(99), key(1), key(5), key(42), key(2), key(3)];
    let got = store.read("stats", &asked).await.expect("read");
    let want = [Some(&rows[2].1), None, Some(&rows[0].1), Some(&rows[4].1), None, Some(&rows[1].1), Some(&rows[2].1)];
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got.as_ref(), want);
    }
    assert!(store.read("stats", &[]).await.expect("empty read").is_empty());
    assert_eq!(store.read("never_written", &[key(1), key(2)]).await.expect("read"), vec![None, None]);
    assert_eq!(store.count("stats").await.expect("count"), 5);
    assert_eq!(store.count("never_written").await.expect("count"), 0);
    assert!(store.write("", vec![(key(1), rec(1, None, "x"))]).await.is_err(), "an empty view name is refused");
    assert!(store.read("", &[key(1)]).await.is_err(), "an empty view name is refused");
}

/// An older row never replaces a newer one; equal event times are settled by the created
/// timestamp (none lowest); the same stamp again replaces (idempotent). Extremes included.
pub async fn older_never_overwrites(store: &dyn OnlineStore) {
    let v = "v";
    let k = key(1);
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, None, "t10"))]).await, outcome(1, 0));
    assert_eq!(write(store, v, vec![(k.clone(), rec(5, None, "t5"))]).await, outcome(0, 1));
    assert_eq!(label_of(store, v, &k).await, "t10");
    assert_eq!(write(store, v, vec![(k.clone(), rec(5, Some(i64::MAX), "t5c"))]).await, outcome(0, 1));
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, Some(1), "t10c1"))]).await, outcome(1, 0));
    assert_eq!(label_of(store, v, &k).await, "t10c1");
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, None, "t10-again"))]).await, outcome(0, 1));
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, Some(0), "t10c0"))]).await, outcome(0, 1));
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, Some(3), "t10c3"))]).await, outcome(1, 0));
    // The same stamp again is written (a retried write is idempotent).
    assert_eq!(write(store, v, vec![(k.clone(), rec(10, Some(3), "t10c3"))]).await, outcome(1, 0));
    let stored = read_one(store, v, &k).await.expect("stored");
    assert_eq!(stored, rec(10, Some(3), "t10c3"));
    assert_eq!(write(store, v, vec![(k.clone(), rec(11, None, "t11"))]).await, outcome(1, 0));
    assert_eq!(label_of(store, v, &k).await, "t11");

    // Signed 64-bit nanoseconds compare as integers, across the sign and at the extremes.
    let k2 = key(2);
    for (ts, expect_written) in [(i64::MIN, 1), (-10, 1), (-11, 0), (-1, 1), (0, 1), (1 << 53, 1), ((1 << 53) + 1, 1), ((1 << 53) - 1, 0)] {
        let got = write(store, v, vec![(k2.clone(), rec(ts, None, &format!("ts{ts}")))]).await;
        assert_eq!(got.written, expect_written, "writing ts {ts}");
    }
    assert_eq!(label_of(store, v, &k2).await, format!("ts{}", (1i64 << 53) + 1));
    assert_eq!(write(store, v, vec![(k2.clone(), rec(i64::MAX, None, "max"))]).await, outcome(1, 0));
    assert_eq!(write(store, v, vec![(k2.clone(), rec(i64::MAX - 1, Some(i64::MAX), "max-1"))]).await, outcome(0, 1));
    assert_eq!(write(store, v, vec![(k2.clone(), rec(i64::MAX, Some(i64::MIN), "max-cmin"))]).await, outcome(1, 0));
    let stored = read_one(store, v, &k2).await.expect("stored");
    assert_eq!((stored.event_ts, stored.created_ts), (i64::MAX, Some(i64::MIN)));
    // Created timestamps that differ by one nanosecond beyond 2^53.
    let k3 = key(3);
    let big = 1_700_000_000_123_456_789;
    assert_eq!(write(store, v, vec![(k3.clone(), rec(big, Some(big + 1), "c+1"))]).await, outcome(1, 0));
    assert_eq!(write(store, v, vec![(k3.clone(), rec(big, Some(big), "c"))]).await, outcome(0, 1));
    assert_eq!(write(store, v, vec![(k3.clone(), rec(big + 1, None, "e+1"))]).await, outcome(1, 0));
    assert_eq!(label_of(store, v, &k3).await, "e+1");
}

/// Within one batch the newest row of each key wins wherever it stands; among equal stamps the
/// later row wins; rows older than the stored record are skipped.
pub async fn batch_with_duplicate_keys(store: &dyn OnlineStore) {
    let v = "v";
    let rows = vec![
        (key(1), rec(3, None, "a")),
        (key(2), rec(1, None, "x")),
        (key(1), rec(9, None, "b")),
        (key(2), rec(1, Some(2), "y")),
        (key(1), rec(5, None, "c")),
        (key(2), rec(1, Some(1), "z")),
        (key(3), rec(1, None, "p")),
        (key(3), rec(1, None, "q")),
    ];
    assert_eq!(write(store, v, rows).await, outcome(3, 5));
    assert_eq!(label_of(store, v, &key(1)).await, "b");
    assert_eq!(label_of(store, v, &key(2)).await, "y");
    assert_eq!(label_of(store, v, &key(3)).await, "q");
    // The newest first this time.
    let rows = vec![(key(4), rec(9, None, "n9")), (key(4), rec(2, None, "n2")), (key(4), rec(7, None, "n7"))];
    assert_eq!(write(store, v, rows).await, outcome(1, 2));
    assert_eq!(label_of(store, v, &key(4)).await, "n9");
    // Every row of the batch is older than the stored record.
    let rows = vec![(key(1), rec(4, None, "old4")), (key(1), rec(8, None, "old8")), (key(5), rec(1, None, "new"))];
    assert_eq!(write(store, v, rows).await, outcome(1, 2));
    assert_eq!(label_of(store, v, &key(1)).await, "b");
    assert_eq!(store.count(v).await.expect("count"), 5);
}

/// The same key in two views is two records; names that extend another view's name (`a_2`,
/// `a:0`) are other views; deleting one view leaves the others.
pub async fn views_are_separate(store: &dyn OnlineStore) {
    let k = key(7);
    let views = ["a", "b", "a_2", "a:0", "A"];
    for (idx, view) in views.iter().enumerate() {
        let ts = idx as i64 + 1;
        let rows = vec![(k.clone(), rec(ts, None, view)), (key(idx as i64 + 100), rec(ts, None, view))];
        assert_eq!(write(store, view, rows).await, outcome(2, 0));
    }
    // An older write to `b` does not compare against `a`'s record and vice versa.
    assert_eq!(write(store, "a", vec![(k.clone(), rec(1, None, "a-again"))]).await, outcome(1, 0));
    for view in &views[1..] {
        assert_eq!(label_of(store, view, &k).await, *view);
        assert_eq!(store.count(view).await.expect("count"), 2);
    }
    assert_eq!(label_of(store, "a", &k).await, "a-again");
    assert_eq!(store.delete_view("a").await.expect("delete"), 2);
    assert_eq!(read_one(store, "a", &k).await, None);
    for view in &views[1..] {
        assert_eq!(label_of(store, view, &k).await, *view, "view {view} survives deleting a");
        assert_eq!(store.count(view).await.expect("count"), 2);
    }
}

/// Deleting a view removes all its records and answers how many; deleting again answers 0; the
/// view can be written afresh (an older stamp than the deleted records is accepted).
pub async fn delete_view(store: &dyn OnlineStore) {
    let rows: Vec<_> = (0..300).map(|i| (key(i), rec(1_000, None, "gone"))).collect();
    assert_eq!(write(store, "gone", rows).await, outcome(300, 0));
    let rows: Vec<_> = (0..10).map(|i| (key(i), rec(1, None, "kept"))).collect();
    assert_eq!(write(store, "kept", rows).await, outcome(10, 0));

    assert_eq!(store.delete_view("gone").await.expect("delete"), 300);
    assert_eq!(store.count("gone").await.expect("count"), 0);
    let all: Vec<Vec<u8>> = (0..300).map(key).collect();
    assert!(store.read("gone", &all).await.expect("read").iter().all(Option::is_none));
    assert_eq!(store.count("kept").await.expect("count"), 10);
    assert_eq!(store.delete_view("gone").await.expect("delete again"), 0);
    assert_eq!(store.delete_view("never_written").await.expect("delete unknown"), 0);

    assert_eq!(write(store, "gone", vec![(key(1), rec(5, None, "back"))]).await, outcome(1, 0));
    assert_eq!(label_of(store, "gone", &key(1)).await, "back");
    assert_eq!(store.count("gone").await.expect("count"), 1);
}

/// 5,000 keys in one write and one read.
pub async fn many_keys(store: &dyn OnlineStore) {
    const N: i64 = 5_000;
    let record = |i: i64| {
        OnlineRecord::new(
            1_700_000_000_000_000_000 + i,
            Some(i),
            &[FeatureValue::Int64(i), FeatureValue::Float64(i as f64 / 3.0), FeatureValue::String(format!("entity-{i}"))],
        )
    };
    let keys: Vec<Vec<u8>> =
        (0..N).map(|i| entity_key(&[FeatureValue::String(format!("driver-{i}")), FeatureValue::Int32(i as i32)])).collect();
    let rows = keys.iter().enumerate().map(|(i, k)| (k.clone(), record(i as i64))).collect();
    assert_eq!(write(store, "big", rows).await, outcome(N as usize, 0));
    // Read back in another order, with a missing key in the middle.
    let mut asked: Vec<Vec<u8>> = keys.iter().rev().cloned().collect();
    asked.insert(2_500, key(-1));
    let got = store.read("big", &asked).await.expect("read");
    assert_eq!(got.len(), asked.len());
    for (pos, got) in got.iter().enumerate() {
        let want = match pos {
            2_500 => None,
            p if p < 2_500 => Some(record(N - 1 - p as i64)),
            p => Some(record(N - p as i64)),
        };
        assert_eq!(got.as_ref(), want.as_ref(), "position {pos}");
    }
    assert_eq!(store.count("big").await.expect("count"), N as u64);
}

/// Eight concurrent writers write the same 200 keys, each key with a different timestamp per
/// writer, in interleaved batches; every key ends with the row of its largest timestamp.
pub async fn concurrent_writers(store: &dyn OnlineStore) {
    const WRITERS: i64 = 8;
    const KEYS: i64 = 200;
    // Writer w gives key k the timestamp ((w + k) % 8) * 10 + 1, so the winner differs per key.
    let ts = |w: i64, k: i64| ((w + k) % WRITERS) * 10 + 1;
    let writer = |w: i64| async move {
        let mut keys: Vec<i64> = (0..KEYS).collect();
        if w % 2 == 1 {
            keys.reverse();
        }
        let mut total = WriteOutcome::default();
        for batch in keys.chunks(50) {
            let rows = batch
                .iter()
                .map(|&k| (key(k), OnlineRecord::new(ts(w, k), None, &[FeatureValue::Int64(w), FeatureValue::Int64(k)])))
                .collect();
            let got = write(store, "hot", rows).await;
            total.written += got.written;
            total.skipped_older += got.skipped_older;
            tokio::task::yield_now().await;
        }
        total
    };
    let outcomes = join_all((0..WRITERS).map(writer)).await;
    for got in &outcomes {
        assert_eq!(got.written + got.skipped_older, KEYS as usize);
    }
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let got = store.read("hot", &keys).await.expect("read");
    for (k, record) in got.into_iter().enumerate() {
        let k = k as i64;
        let record = record.expect("every key written");
        let winner = (0..WRITERS).max_by_key(|&w| ts(w, k)).expect("writers");
        assert_eq!(record.event_ts, (WRITERS - 1) * 10 + 1, "key {k}");
        assert_eq!(record.values, encode_row(&[FeatureValue::Int64(winner), FeatureValue::Int64(k)]), "key {k}");
    }
    assert_eq!(store.count("hot").await.expect("count"), KEYS as u64);
}

/// Every value type, extremes included, survives write, read and decode bit for bit, as
/// features and as parts of an entity key.
pub async fn values_round_trip(store: &dyn OnlineStore) {
    let values = vec![
        FeatureValue::Null,
        FeatureValue::Int32(i32::MIN),
        FeatureValue::Int32(i32::MAX),
        FeatureValue::Int64(i64::MIN),
        FeatureValue::Int64(i64::MAX),
        FeatureValue::Float32(f32::NAN),
        FeatureValue::Float32(-0.0),
        FeatureValue::Float32(f32::INFINITY),
        FeatureValue::Float64(f64::NAN),
        FeatureValue::Float64(f64::from_bits(1)),
        FeatureValue::Float64(-0.0),
        FeatureValue::String(String::new()),
        FeatureValue::String("naïve ☃ 🚀 \0 \"quoted\"".to_owned()),
        FeatureValue::Bool(true),
        FeatureValue::Bool(false),
        FeatureValue::Bytes(Vec::new()),
        FeatureValue::Bytes((0..1_000_000u32).map(|i| (i * 31 % 256) as u8).collect()),
        FeatureValue::Timestamp(i64::MIN),
        FeatureValue::Timestamp(1_700_000_000_123_456_789),
    ];
    let record = OnlineRecord::new(42, Some(-42), &values);
    // Keys made of every type, each type alone, and one tuple of them all.
    let mut keys: Vec<Vec<u8>> = values
        .iter()
        .filter(|v| !matches!(v, FeatureValue::Bytes(b) if b.len() > 100))
        .map(|v| entity_key(std::slice::from_ref(v)))
        .collect();
    keys.push(entity_key(&values[..16]));
    keys.push(entity_key(&[]));
    keys.push(vec![0x00, 0xff, b':', b'*', b'\n']);
    let rows: Vec<_> = keys.iter().map(|k| (k.clone(), record.clone())).collect();
    assert_eq!(write(store, "types", rows).await, outcome(keys.len(), 0));
    let got = store.read("types", &keys).await.expect("read");
    for (idx, got) in got.into_iter().enumerate() {
        let got = got.expect("stored");
        assert_eq!(got, record, "key {idx}");
        let decoded = got.decode_values().expect("decode");
        assert_eq!(encode_row(&decoded), encode_row(&values), "bit-for-bit values under key {idx}");
        assert!(matches!(decoded[5], FeatureValue::Float32(f) if f.is_nan()));
        assert!(matches!(decoded[10], FeatureValue::Float64(f) if f == 0.0 && f.is_sign_negative()));
    }
    assert_eq!(store.count("types").await.expect("count"), keys.len() as u64);
}
