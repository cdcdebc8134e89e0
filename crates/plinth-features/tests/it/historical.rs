//! Historical retrieval checked against a reference written here: for every entity row and
//! view, a plain scan of all feature rows with the same key, `ts <= T`, `ts >= T - ttl`, keeping
//! the greatest `(ts, created)` (a null `created` loses to any value).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use plinth_features::repo::parse_str;
use plinth_features::{Engine, EngineOptions, HistoricalRequest, Repository};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;
const BASE: i64 = 1_700_000_000 * SEC;

/// One generated feature row.
#[derive(Debug, Clone)]
struct Row {
    key: Option<i64>,
    ts: Option<i64>,
    created: Option<i64>,
    value: Option<f64>,
    label: Option<String>,
}

fn write_parquet(path: &Path, rows: &[Row], micros: bool) {
    let ts_type = if micros {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else {
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver", DataType::Int64, true),
        Field::new("event_ts", ts_type.clone(), true),
        Field::new("created", ts_type, true),
        Field::new("rate", DataType::Float64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let time = |v: Vec<Option<i64>>| -> ArrayRef {
        if micros {
            Arc::new(TimestampMicrosecondArray::from(v.into_iter().map(|t| t.map(|t| t / 1000)).collect::<Vec<_>>()))
        } else {
            Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
        }
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.key).collect::<Vec<_>>())),
            time(rows.iter().map(|r| r.ts).collect()),
            time(rows.iter().map(|r| r.created).collect()),
            Arc::new(Float64Array::from(rows.iter().map(|r| r.value).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.label.clone()).collect::<Vec<_>>())),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
    // Small row groups and batches, so the scan runs in several partitions and batches.
    for start in (0..batch.num_rows()).step_by(1000) {
        writer.write(&batch.slice(start, 1000.min(batch.num_rows() - start))).expect("write");
        writer.flush().expect("flush");
    }
    writer.close().expect("close");
}

fn repo(dir: &Path) -> Repository {
    let text = r#"
[[entity]]
name = "driver"
join_keys = [{ name = "driver", type = "int64" }]

[[source]]
name = "stats"
path = "stats"
timestamp_field = "event_ts"
created_timestamp_column = "created"

[[source]]
name = "stats_plain"
path = "plain.parquet"
timestamp_field = "event_ts"
field_mapping = { rate = "speed" }

[[feature_view]]
name = "hourly"
entities = ["driver"]
source = "stats"
ttl = "6h"
features = [{ name = "rate", type = "float64" }, { name = "city", type = "string" }]

[[feature_view]]
name = "daily"
entities = ["driver"]
source = "stats"
ttl = "1d"
features = [{ name = "rate", type = "float64" }]

[[feature_view]]
name = "forever"
entities = ["driver"]
source = "stats_plain"
features = [{ name = "speed", type = "float64" }, { name = "city", type = "string" }]
"#;
    let repo = parse_str(text, dir).expect("repo parses");
    repo.validate().expect("repo valid");
    repo
}

/// The reference: a scan of every row.
fn reference(rows: &[Row], key: Option<i64>, t: i64, ttl: Option<i64>, use_created: bool) -> Option<&Row> {
    let key = key?;
    let mut best: Option<&Row> = None;
    for r in rows {
        let (Some(k), Some(ts)) = (r.key, r.ts) else { continue };
        if k != key || ts > t || ttl.is_some_and(|ttl| ts < t - ttl) {
            continue;
        }
        let created = |r: &Row| if use_created { r.created.unwrap_or(i64::MIN) } else { i64::MIN };
        let better = match best {
            None => true,
            Some(b) => (ts, created(r)) > (b.ts.unwrap_or(i64::MIN), created(b)),
        };
        if better {
            best = Some(r);
        }
    }
    best
}

fn generate(rng: &mut StdRng, keys: i64, per_key: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for key in 0..keys {
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..per_key {
            // Times on a 30-minute grid over 4 days, so exact ties and boundaries happen often.
            let ts = BASE + rng.random_range(0..192) * HOUR / 2;
            // Every (key, ts, created) is distinct: ties are broken by created, never by order.
            let created = loop {
                let c = if rng.random_bool(0.1) { None } else { Some(BASE + rng.random_range(0..1000) * SEC) };
                if used.insert((ts, c)) {
                    break c;
                }
            };
            let value = if rng.random_bool(0.05) { None } else { Some(rng.random_range(0..10_000) as f64 / 100.0) };
            let label = if rng.random_bool(0.05) { None } else { Some(format!("city-{}", rng.random_range(0..50))) };
            rows.push(Row { key: Some(key), ts: Some(ts), created, value, label });
        }
    }
    // Rows without a key or a time can never match.
    rows.push(Row { key: None, ts: Some(BASE), created: None, value: Some(1.0), label: None });
    rows.push(Row { key: Some(0), ts: None, created: None, value: Some(1.0), label: None });
    // Shuffle: the engine must not rely on the file's order.
    for i in (1..rows.len()).rev() {
        let j = rng.random_range(0..=i);
        rows.swap(i, j);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_data_matches_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(20261123);
    let rows = generate(&mut rng, 60, 80);
    // The same rows split over three files of a directory source (microseconds, zone-less), and
    // once more as one file for the plain source (nanoseconds, UTC).
    std::fs::create_dir(dir.path().join("stats")).expect("mkdir");
    let third = rows.len() / 3;
    write_parquet(&dir.path().join("stats/a.parquet"), &rows[..third], true);
    write_parquet(&dir.path().join("stats/b.parquet"), &rows[third..2 * third], true);
    write_parquet(&dir.path().join("stats/c.parquet"), &rows[2 * third..], true);
    write_parquet(&dir.path().join("plain.parquet"), &rows, false);
    let repo = repo(dir.path());
    let engine = Engine::new(EngineOptions { batch_rows: 777, partitions: 3, ..Default::default() }).expect("engine");
    assert!(engine.check(&repo).await.expect("sources check").is_empty());

    // Entity rows: known and unknown keys, a null key, duplicates, and times on and off the
    // grid: exactly at feature times, exactly at T - ttl, one second past it, before all data.
    let mut keys: Vec<Option<i64>> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    for _ in 0..3000 {
        keys.push(if rng.random_bool(0.03) { None } else { Some(rng.random_range(0..70)) });
        let t = match rng.random_range(0..4) {
            0 => BASE + rng.random_range(0..200) * HOUR / 2,
            1 => BASE + rng.random_range(0..200) * HOUR / 2 + 6 * HOUR,
            2 => BASE + rng.random_range(0..200) * HOUR / 2 + 6 * HOUR + SEC,
            _ => BASE + rng.random_range(-10..200 * 1800) * SEC,
        };
        times.push(t);
    }
    for i in 0..200 {
        keys.push(keys[i]);
        times.push(times[i]);
    }
    let labels: Vec<i64> = (0..keys.len() as i64).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver", DataType::Int64, true),
        Field::new("event_timestamp", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("label", DataType::Int64, false),
    ]));
    let entity = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(keys.clone())),
            Arc::new(TimestampNanosecondArray::from(times.clone())),
            Arc::new(Int64Array::from(labels.clone())),
        ],
    )
    .expect("entity batch");
    let halves = [entity.slice(0, 1000), entity.slice(1000, entity.num_rows() - 1000)];

    let request = HistoricalRequest {
        features: vec![
            ("daily".into(), "rate".into()),
            ("hourly".into(), "city".into()),
            ("forever".into(), "speed".into()),
            ("hourly".into(), "rate".into()),
            ("forever".into(), "city".into()),
        ],
        full_feature_names: true,
        timestamp_column: "event_timestamp".into(),
    };
    let (out_schema, batches) = engine.historical(&repo, &halves, schema.clone(), &request).await.expect("retrieval");
    let names: Vec<&str> = out_schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["driver", "event_timestamp", "label", "daily__rate", "hourly__city", "forever__speed", "hourly__rate", "forever__city"]
    );
    assert!(batches.iter().all(|b| b.num_rows() <= 777));
    let out = datafusion::arrow::compute::concat_batches(&out_schema, &batches).expect("concat");
    assert_eq!(out.num_rows(), keys.len(), "every entity row exactly once");

    let f64s = |c: usize| out.column(c).as_primitive::<Float64Type>().clone();
    let strs = |c: usize| out.column(c).as_string::<i32>().clone();
    let (daily_rate, hourly_city, forever_speed, hourly_rate, forever_city) = (f64s(3), strs(4), f64s(5), f64s(6), strs(7));
    let label = out.column(2).as_primitive::<Int64Type>();
    let mut matched = [0usize; 3];
    for i in 0..out.num_rows() {
        assert_eq!(label.value(i), labels[i], "input order is kept");
        let (k, t) = (keys[i], times[i]);
        let opt_f = |a: &Float64Array| a.is_valid(i).then(|| a.value(i));
        let opt_s = |a: &StringArray| a.is_valid(i).then(|| a.value(i).to_owned());

        let daily = reference(&rows, k, t, Some(24 * HOUR), true);
        assert_eq!(opt_f(&daily_rate), daily.and_then(|r| r.value), "daily__rate of row {i} (key {k:?}, t {t})");
        let hourly = reference(&rows, k, t, Some(6 * HOUR), true);
        assert_eq!(opt_f(&hourly_rate), hourly.and_then(|r| r.value), "hourly__rate of row {i}");
        assert_eq!(opt_s(&hourly_city), hourly.and_then(|r| r.label.clone()), "hourly__city of row {i}");
        // The plain source has no created column: exact (key, ts) ties among its rows are broken
        // by read order, so only rows whose answer is unique are compared value for value.
        let forever = reference(&rows, k, t, None, false);
        let tied = forever.is_some_and(|f| rows.iter().filter(|r| r.key == f.key && r.ts == f.ts).count() > 1);
        if !tied {
            assert_eq!(opt_f(&forever_speed), forever.and_then(|r| r.value), "forever__speed of row {i}");
            assert_eq!(opt_s(&forever_city), forever.and_then(|r| r.label.clone()), "forever__city of row {i}");
        } else {
            let candidates: Vec<(Option<f64>, Option<String>)> = rows
                .iter()
                .filter(|r| r.key == forever.and_then(|f| f.key) && r.ts == forever.and_then(|f| f.ts))
                .map(|r| (r.value, r.label.clone()))
                .collect();
            assert!(
                candidates.contains(&(opt_f(&forever_speed), opt_s(&forever_city))),
                "forever of row {i} is one of the tied rows, whole"
            );
        }
        matched[0] += usize::from(daily.is_some());
        matched[1] += usize::from(hourly.is_some());
        matched[2] += usize::from(forever.is_some());
    }
    // The data exercises both outcomes of every view.
    for (m, view) in matched.iter().zip(["daily", "hourly", "forever"]) {
        assert!(*m > 300 && *m < out.num_rows() - 100, "{view}: {m} of {} rows matched", out.num_rows());
    }

    // Streamed in chunks of 97 entity rows (each chunk answered on its own, with its own time
    // window over the feature data), from batches that do not line up with the chunks: the same
    // answer, row for row, in the same order.
    let chunked =
        Engine::new(EngineOptions { batch_rows: 777, partitions: 3, entity_chunk_rows: 97, ..Default::default() }).expect("engine");
    let pieces: Vec<plinth_features::Result<RecordBatch>> = [0, 1000, 1001, 2500]
        .windows(2)
        .map(|w| Ok(entity.slice(w[0], w[1] - w[0])))
        .chain([Ok(entity.slice(2500, entity.num_rows() - 2500))])
        .collect();
    let (streamed_schema, stream) =
        chunked.historical_streamed(repo.clone(), schema.clone(), request.clone(), pieces.into_iter()).await.expect("streamed retrieval");
    assert_eq!(streamed_schema, out_schema);
    let streamed: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await.expect("every chunk answered");
    assert!(streamed.iter().all(|b| b.num_rows() <= 97));
    let streamed = datafusion::arrow::compute::concat_batches(&out_schema, &streamed).expect("concat");
    assert_eq!(streamed, out, "chunked retrieval answers exactly as the whole one");
}

/// Hand-made edges with exact expectations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_are_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let row =
        |key, ts: i64, created: Option<i64>, value: f64| Row { key: Some(key), ts: Some(ts), created, value: Some(value), label: None };
    let rows = vec![
        row(1, BASE, None, 1.0),
        row(1, BASE + 2 * HOUR, Some(BASE), 2.0),
        // The same event time, created later: wins the tie.
        row(1, BASE + 2 * HOUR, Some(BASE + SEC), 3.0),
        // Created null loses to any created value.
        row(1, BASE + 2 * HOUR, None, 4.0),
        // The newest row holds a null value: the answer is null, not an older value.
        Row { key: Some(2), ts: Some(BASE), created: None, value: Some(5.0), label: None },
        Row { key: Some(2), ts: Some(BASE + HOUR), created: None, value: None, label: None },
    ];
    std::fs::create_dir(dir.path().join("stats")).expect("mkdir");
    write_parquet(&dir.path().join("stats/all.parquet"), &rows, false);
    write_parquet(&dir.path().join("plain.parquet"), &rows, false);
    let repo = repo(dir.path());
    let engine = Engine::new(EngineOptions::default()).expect("engine");
    let cases: Vec<(i64, i64, Option<f64>, &str)> = vec![
        (1, BASE - 1, None, "before the first row"),
        (1, BASE, Some(1.0), "exactly at a row's time (upper bound inclusive)"),
        (1, BASE + 2 * HOUR - 1, Some(1.0), "one nanosecond before the next row"),
        (1, BASE + 2 * HOUR, Some(3.0), "tie on event time broken by the latest created"),
        (1, BASE + 8 * HOUR, Some(3.0), "exactly at T - ttl (lower bound inclusive)"),
        (1, BASE + 8 * HOUR + SEC, None, "one second past T - ttl"),
        (2, BASE + 2 * HOUR, None, "the latest row's value is null"),
        (3, BASE + 2 * HOUR, None, "unknown key"),
    ];
    let schema =
        Arc::new(Schema::new(vec![Field::new("driver", DataType::Int64, false), Field::new("event_timestamp", DataType::Utf8, false)]));
    let iso = |t: i64| {
        let secs = t / SEC;
        let nanos = t % SEC;
        // RFC 3339 through Arrow's own formatting of a timestamp.
        let a = TimestampNanosecondArray::from(vec![secs * SEC + nanos]).with_timezone("UTC");
        datafusion::arrow::util::display::array_value_to_string(&a, 0).expect("format")
    };
    let entity = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(cases.iter().map(|c| c.0).collect::<Vec<_>>())),
            Arc::new(StringArray::from(cases.iter().map(|c| iso(c.1)).collect::<Vec<_>>())),
        ],
    )
    .expect("entity");
    let request = HistoricalRequest {
        features: vec![("hourly".into(), "rate".into())],
        full_feature_names: false,
        timestamp_column: "event_timestamp".into(),
    };
    let (_, batches) = engine.historical(&repo, &[entity], schema, &request).await.expect("retrieval");
    let rate = batches[0].column(2).as_primitive::<Float64Type>();
    for (i, (_, _, want, what)) in cases.iter().enumerate() {
        let got = rate.is_valid(i).then(|| rate.value(i));
        assert_eq!(got, *want, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("stats")).expect("mkdir");
    let rows = vec![Row { key: Some(1), ts: Some(BASE), created: None, value: Some(1.0), label: None }];
    write_parquet(&dir.path().join("stats/all.parquet"), &rows, false);
    write_parquet(&dir.path().join("plain.parquet"), &rows, false);
    let repo = repo(dir.path());
    let engine = Engine::new(EngineOptions::default()).expect("engine");
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), true),
    ]));
    let entity = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(datafusion::arrow::array::TimestampSecondArray::from(vec![Some(1), None]))],
    )
    .expect("entity");
    let ask = |features: Vec<(&str, &str)>, full: bool, ts: &str| HistoricalRequest {
        features: features.into_iter().map(|(v, f)| (v.to_owned(), f.to_owned())).collect(),
        full_feature_names: full,
        timestamp_column: ts.to_owned(),
    };
    let err = engine
        .historical(&repo, std::slice::from_ref(&entity), schema.clone(), &ask(vec![("hourly", "rate")], false, "ts"))
        .await
        .expect_err("null time");
    assert!(err.to_string().contains("entity row 1 has no event time"), "{err}");
    let err = engine
        .historical(&repo, std::slice::from_ref(&entity), schema.clone(), &ask(vec![("hourly", "rate")], false, "when"))
        .await
        .expect_err("no column");
    assert!(err.to_string().contains("no event-time column 'when'"), "{err}");
    let ok = entity.slice(0, 1);
    let err = engine
        .historical(&repo, std::slice::from_ref(&ok), schema.clone(), &ask(vec![("hourly", "rate"), ("daily", "rate")], false, "ts"))
        .await
        .expect_err("collision");
    assert!(err.to_string().contains("collides"), "{err}");
    let err = engine
        .historical(&repo, std::slice::from_ref(&ok), schema.clone(), &ask(vec![("nope", "rate")], false, "ts"))
        .await
        .expect_err("unknown view");
    assert!(err.to_string().contains("'nope' is not defined"), "{err}");
    let (_, out) = engine.historical(&repo, &[], schema.clone(), &ask(vec![("hourly", "rate")], true, "ts")).await.expect("no entity rows");
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

/// A SQL source transforms its inputs (with their field mappings applied) and can only read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sources_transform_and_only_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = vec![
        Row { key: Some(1), ts: Some(BASE), created: None, value: Some(1.5), label: Some("x".into()) },
        Row { key: Some(1), ts: Some(BASE + HOUR), created: None, value: Some(2.5), label: Some("y".into()) },
    ];
    write_parquet(&dir.path().join("plain.parquet"), &rows, false);
    let text = r#"
[[entity]]
name = "driver"
join_keys = [{ name = "driver", type = "int64" }]

[[source]]
name = "plain"
path = "plain.parquet"
timestamp_field = "event_ts"
field_mapping = { rate = "speed" }

[[source]]
name = "doubled"
sql = "SELECT driver, event_ts AS ts, speed * 2 AS speed2 FROM plain WHERE city <> 'y' OR speed > 2"
inputs = ["plain"]
timestamp_field = "ts"

[[feature_view]]
name = "fast"
entities = ["driver"]
source = "doubled"
features = [{ name = "speed2", type = "float64" }]
"#;
    let repo = parse_str(text, dir.path()).expect("parses");
    repo.validate().expect("valid");
    let engine = Engine::new(EngineOptions::default()).expect("engine");
    engine.check(&repo).await.expect("the transformation's columns check");
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver", DataType::Int64, false),
        Field::new("event_timestamp", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]));
    let entity = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 1])), Arc::new(TimestampNanosecondArray::from(vec![BASE + HOUR / 2, BASE + 2 * HOUR]))],
    )
    .expect("entity");
    let request = HistoricalRequest {
        features: vec![("fast".into(), "speed2".into())],
        full_feature_names: false,
        timestamp_column: "event_timestamp".into(),
    };
    let (_, batches) = engine.historical(&repo, &[entity], schema, &request).await.expect("retrieval");
    let speed = batches[0].column(2).as_primitive::<Float64Type>();
    assert_eq!((speed.value(0), speed.value(1)), (3.0, 5.0));

    for sql in [
        "COPY (SELECT 1) TO 'out.csv'",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let text = text.replace("SELECT driver, event_ts AS ts, speed * 2 AS speed2 FROM plain WHERE city <> 'y' OR speed > 2", sql);
        let repo = parse_str(&text, dir.path()).expect("parses");
        let err = engine.check(&repo).await.expect_err("only reads");
        assert!(err.to_string().contains("the SQL transformation fails"), "{sql}: {err}");
    }
    assert!(!dir.path().join("out.csv").exists());
}

/// What materialization writes: the newest row per key among rows in `[start, end]`, checked
/// against a scan of every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_rows_match_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(7);
    let rows = generate(&mut rng, 40, 60);
    std::fs::create_dir(dir.path().join("stats")).expect("mkdir");
    write_parquet(&dir.path().join("stats/a.parquet"), &rows[..rows.len() / 2], true);
    write_parquet(&dir.path().join("stats/b.parquet"), &rows[rows.len() / 2..], true);
    write_parquet(&dir.path().join("plain.parquet"), &rows, false);
    let repo = repo(dir.path());
    let engine = Engine::new(EngineOptions::default()).expect("engine");
    let view = repo.view("hourly").expect("view");
    for (start, end) in [(None, BASE + 200 * HOUR), (Some(BASE + 10 * HOUR), BASE + 50 * HOUR), (Some(BASE + 20 * HOUR), BASE + 20 * HOUR)]
    {
        let latest = engine.latest(&repo, view, start, end).await.expect("latest");
        let keys = latest.rows.column(0).as_primitive::<Int64Type>();
        let rate = latest.rows.column(1).as_primitive::<Float64Type>();
        let mut expected = std::collections::BTreeMap::new();
        for r in &rows {
            let (Some(k), Some(ts)) = (r.key, r.ts) else { continue };
            if ts > end || start.is_some_and(|s| ts < s) {
                continue;
            }
            let stamp = (ts, r.created.unwrap_or(i64::MIN));
            let e = expected.entry(k).or_insert((stamp, r.value));
            if stamp > e.0 {
                *e = (stamp, r.value);
            }
        }
        assert_eq!(latest.rows.num_rows(), expected.len(), "one row per key with rows in range");
        for i in 0..latest.rows.num_rows() {
            let (stamp, value) = expected[&keys.value(i)];
            assert_eq!(latest.event_ts[i], stamp.0, "key {}", keys.value(i));
            assert_eq!(rate.is_valid(i).then(|| rate.value(i)), value, "key {}", keys.value(i));
        }
    }
}
