//! The feature store through the binary: `plinth features plan|apply` on a repository directory,
//! concurrent applies, definitions over REST, and `plinth features get-historical` from CSV and
//! Parquet into Parquet, saved as a training dataset.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use plinth_features::arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use plinth_features::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use plinth_features::parquet::arrow::ArrowWriter;
use plinth_features::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use plinth_test_support::TestServer;
use serde_json::Value;

use super::{bin, get, post};

const HOUR_US: i64 = 3_600_000_000;
const BASE_US: i64 = 1_700_000_000_000_000;

pub(super) fn plinth(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).env("PLINTH_SERVER", url).env("PLINTH_USER", "alice").output().expect("run plinth");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// driver 1: rows at 0h (0.1) and 2h (0.2, created twice: the later one, 0.25, wins);
/// driver 2: a row at 1h (0.5).
fn write_stats(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("created", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("conv", DataType::Float64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
            Arc::new(TimestampMicrosecondArray::from(vec![BASE_US, BASE_US + 2 * HOUR_US, BASE_US + 2 * HOUR_US, BASE_US + HOUR_US])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(BASE_US), Some(BASE_US), Some(BASE_US + 1), None])),
            Arc::new(Float64Array::from(vec![0.1, 0.2, 0.25, 0.5])),
            Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
        ],
    )
    .expect("batch");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).expect("create"), schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

pub(super) fn repo_text(ttl: &str) -> String {
    format!(
        r#"
[[entity]]
name = "driver"
join_keys = [{{ name = "driver_id", type = "int64" }}]
description = "A driver"

[[source]]
name = "driver_stats"
path = "data"
timestamp_field = "event_timestamp"
created_timestamp_column = "created"
field_mapping = {{ conv = "conv_rate" }}

[[feature_view]]
name = "driver_hourly"
entities = ["driver"]
source = "driver_stats"
ttl = "{ttl}"
features = [{{ name = "conv_rate", type = "float64" }}, {{ name = "city", type = "string" }}]
owner = "ranking@example.com"

[[feature_view]]
name = "driver_lifetime"
entities = ["driver"]
source = "driver_stats"
features = [{{ name = "conv_rate", type = "float64" }}, {{ name = "city", type = "string" }}]

[[feature_service]]
name = "ranking"
features = ["driver_hourly:conv_rate"]
"#
    )
}

/// A work directory with a feature repository (`repo/`: the stats of `write_stats` under `data/`,
/// and `text` as `features.toml`), applied to the server at `url`.
pub(super) struct Applied {
    pub(super) work: tempfile::TempDir,
    pub(super) repo: std::path::PathBuf,
}

pub(super) fn apply_repo(url: &str, text: &str) -> Applied {
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("data")).expect("mkdir");
    write_stats(&repo.join("data/part-0.parquet"));
    std::fs::write(repo.join("features.toml"), text).expect("write repo");
    let (ok, out, err) = plinth(url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    Applied { work, repo }
}

/// `plinth features get-historical --entities ENTITIES --out OUT` with `args`.
fn get_historical(url: &str, entities: &Path, out: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["features", "get-historical", "--entities", entities.to_str().expect("utf8"), "--out", out.to_str().expect("utf8")];
    all.extend_from_slice(args);
    plinth(url, &all)
}

fn read_parquet(path: &Path) -> RecordBatch {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("open")).expect("parquet");
    let schema = builder.schema().clone();
    let reader = builder.build().expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    plinth_features::arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_and_historical_retrieval_through_the_cli() {
    let server = TestServer::start(bin()).expect("start");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("data")).expect("mkdir");
    write_stats(&repo.join("data/part-0.parquet"));
    std::fs::write(repo.join("features.toml"), repo_text("6h")).expect("write repo");

    let (ok, out, err) = plinth(&url, &["features", "plan", repo.to_str().expect("utf8")]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("+ feature_view") && out.contains("Plan: 5 to create, 0 to update, 0 to delete, 0 unchanged."), "{out}");
    let (_, defs) = get(&client, &url, "/api/plinth/v1/features/definitions").await;
    assert_eq!(defs["definitions"].as_array().map(Vec::len), Some(0), "plan changes nothing");

    let (ok, out, err) = plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(ok && out.contains("Applied: 5 to create"), "{out}{err}");
    let (ok, out, _) = plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(ok && out.contains("0 to create, 0 to update, 0 to delete, 5 unchanged"), "a second apply changes nothing: {out}");

    // Definitions over REST: the spec as applied, with its version.
    let (status, view) = get(&client, &url, "/api/plinth/v1/features/definitions/feature_view/driver_hourly").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["definition"]["version"], 1);
    assert_eq!(view["definition"]["spec"]["ttl_secs"], 6 * 3600);
    assert_eq!(view["definition"]["spec"]["owner"], "ranking@example.com");
    let (status, missing) = get(&client, &url, "/api/plinth/v1/features/definitions/feature_view/nope").await;
    assert_eq!((status, missing["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")), "{missing}");
    let (status, bad) = get(&client, &url, "/api/plinth/v1/features/definitions/view/driver_hourly").await;
    assert_eq!((status, bad["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{bad}");

    // A repository whose view names a column the data lacks is refused whole, with the reason.
    std::fs::write(repo.join("features.toml"), repo_text("6h").replace("\"city\", type = \"string\"", "\"town\", type = \"string\""))
        .expect("write");
    let (ok, out, err) = plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(!ok && err.contains("has no column 'town'"), "{out}{err}");
    std::fs::write(
        repo.join("features.toml"),
        repo_text("6h").replace("\"conv_rate\", type = \"float64\"", "\"conv_rate\", type = \"int32\""),
    )
    .expect("write");
    let (ok, _, err) = plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(!ok && err.contains("declared int32"), "{err}");

    // Four applies at once, each with another TTL: every one commits, one after the other.
    let mut children = Vec::new();
    for (i, ttl) in ["1h", "2h", "3h", "4h"].iter().enumerate() {
        let dir = work.path().join(format!("repo{i}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("features.toml"),
            repo_text(ttl).replace("path = \"data\"", &format!("path = \"{}\"", repo.join("data").display())),
        )
        .expect("write");
        children.push(
            Command::new(bin())
                .args(["features", "apply", dir.to_str().expect("utf8")])
                .env("PLINTH_SERVER", &url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn"),
        );
    }
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, history) = get(&client, &url, "/api/plinth/v1/features/definitions/feature_view/driver_hourly/versions").await;
    let versions: Vec<i64> = history["versions"].as_array().expect("versions").iter().map(|v| v["version"].as_i64().expect("n")).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5], "one version per apply");
    // Back to 6h for the retrieval below.
    std::fs::write(repo.join("features.toml"), repo_text("6h")).expect("write");
    let (ok, out, err) = plinth(&url, &["features", "apply", repo.to_str().expect("utf8")]);
    assert!(ok && out.contains("1 to update"), "{out}{err}");

    // Entity rows from CSV: exact times, a tie broken by `created`, TTL, an unknown key, a duplicate row.
    let entities = work.path().join("entities.csv");
    std::fs::write(
        &entities,
        "driver_id,event_timestamp,label\n\
         1,2023-11-14T22:13:20Z,10\n\
         1,2023-11-15T00:13:20Z,11\n\
         1,2023-11-15T06:13:20Z,12\n\
         1,2023-11-15T06:13:21Z,13\n\
         2,2023-11-14T23:13:19Z,14\n\
         3,2023-11-15T00:00:00Z,15\n\
         1,2023-11-15T00:13:20Z,11\n",
    )
    .expect("write entities");
    let out_file = work.path().join("training.parquet");
    let (ok, out, err) = get_historical(
        &url,
        &entities,
        &out_file,
        &["--features", "driver_hourly:conv_rate,driver_hourly:city", "--dataset-name", "ranking_train"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("Wrote 7 rows") && out.contains("Saved as training dataset"), "{out}");
    let table = read_parquet(&out_file);
    let names: Vec<&str> = table.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["driver_id", "event_timestamp", "label", "conv_rate", "city"]);
    let labels: Vec<i64> = table.column(2).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(labels, [10, 11, 12, 13, 14, 15, 11], "input order, duplicates kept");
    let conv = table.column(3).as_primitive::<Float64Type>();
    let got: Vec<Option<f64>> = (0..conv.len()).map(|i| conv.is_valid(i).then(|| conv.value(i))).collect();
    // BASE is 2023-11-14T22:13:20Z. Row 3 is exactly T - ttl from the 2h row; row 4 one second past.
    assert_eq!(got, [Some(0.1), Some(0.25), Some(0.25), None, None, None, Some(0.25)]);
    let city = table.column(4).as_string::<i32>();
    assert_eq!(city.value(1), "c");

    // The saved training dataset names the definitions' versions and the entity digest.
    let (status, ds) = get(&client, &url, "/api/plinth/v1/features/training-datasets/ranking_train").await;
    assert_eq!(status, 200, "{ds}");
    let ds = &ds["training_dataset"];
    assert_eq!(ds["entity_rows"], 7);
    assert_eq!(ds["entity_digest"].as_str().map(str::len), Some(64));
    assert_eq!(ds["output_uri"], Value::String(format!("file://{}", out_file.display())));
    let defs = ds["definitions"].as_array().expect("definitions");
    assert!(defs.iter().any(|d| d["kind"] == "feature_view" && d["name"] == "driver_hourly" && d["version"] == 6), "{ds}");
    assert!(defs.iter().any(|d| d["kind"] == "source" && d["name"] == "driver_stats"), "{ds}");

    // The same through a feature service, from Parquet entity rows, with full feature names.
    let entity_parquet = work.path().join("entities.parquet");
    {
        let schema = Arc::new(Schema::new(vec![
            Field::new("driver_id", DataType::Int64, false),
            Field::new("event_timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![2])),
                Arc::new(TimestampMicrosecondArray::from(vec![BASE_US + HOUR_US]).with_timezone("UTC")),
            ],
        )
        .expect("batch");
        let mut w = ArrowWriter::try_new(std::fs::File::create(&entity_parquet).expect("create"), schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }
    let out2 = work.path().join("svc.parquet");
    let (ok, out, err) = get_historical(&url, &entity_parquet, &out2, &["--feature-service", "ranking", "--full-feature-names"]);
    assert!(ok, "{out}{err}");
    let table = read_parquet(&out2);
    assert_eq!(table.schema_ref().field(2).name(), "driver_hourly__conv_rate");
    assert_eq!(table.column(2).as_primitive::<Float64Type>().value(0), 0.5);

    // Unknown features are a clear 404 before any work.
    let (ok, _, err) = get_historical(&url, &entities, &out2, &["--features", "driver_hourly:nope"]);
    assert!(!ok && err.contains("RESOURCE_DOES_NOT_EXIST") && err.contains("no feature 'nope'"), "{err}");

    // Materialization, then Feast's online read: the newest row per driver (the created-time tie
    // on driver 1 included); the 6h view's rows are years old, so they are not served.
    let (ok, out, err) = plinth(&url, &["features", "materialize"]);
    assert!(ok && out.contains("driver_lifetime") && out.contains("2 entities written"), "{out}{err}");
    let res = client
        .post(format!("{url}/get-online-features"))
        .json(&serde_json::json!({"features": ["driver_lifetime:city", "driver_hourly:conv_rate", "driver_lifetime:conv_rate"], "entities": {"driver_id": [2, 1, 3]}, "full_feature_names": true}))
        .send()
        .await
        .expect("online");
    assert_eq!(res.status(), 200);
    let online: Value = res.json().await.expect("json");
    assert_eq!(
        online["metadata"]["feature_names"],
        serde_json::json!(["driver_id", "driver_lifetime__city", "driver_hourly__conv_rate", "driver_lifetime__conv_rate"])
    );
    let r = &online["results"];
    assert_eq!(r[0]["values"], serde_json::json!([2, 1, 3]));
    assert_eq!(r[1]["values"], serde_json::json!(["d", "c", null]));
    assert_eq!(r[1]["statuses"], serde_json::json!(["PRESENT", "PRESENT", "NOT_FOUND"]));
    assert_eq!(r[1]["event_timestamps"][1], "2023-11-15T00:13:20Z");
    assert_eq!(r[2]["statuses"], serde_json::json!(["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]));
    assert_eq!(r[2]["values"], serde_json::json!([null, null, null]));
    assert_eq!(r[3]["values"], serde_json::json!([0.5, 0.25, null]));
    for (body, code) in [
        (serde_json::json!({"features": ["driver_lifetime:nope"], "entities": {"driver_id": [1]}}), 404),
        (serde_json::json!({"features": ["ghost:x"], "entities": {"driver_id": [1]}}), 404),
        (serde_json::json!({"features": ["driver_lifetime:city"], "entities": {"rider": [1]}}), 400),
        (serde_json::json!({"features": ["driver_lifetime:city"], "entities": {"driver_id": ["x"]}}), 400),
        (serde_json::json!({"features": ["driver_lifetime:city", "driver_hourly:city"], "entities": {"driver_id": [1]}}), 400),
    ] {
        let res = client.post(format!("{url}/get-online-features")).json(&body).send().await.expect("online");
        assert_eq!(res.status().as_u16(), code, "{body}: {}", res.text().await.unwrap_or_default());
    }
    // An incremental run after the full one finds nothing newer.
    let (ok, out, err) = plinth(&url, &["features", "materialize", "--incremental", "--views", "driver_lifetime"]);
    assert!(ok && out.contains("0 entities written"), "{out}{err}");

    // Every apply and the dataset are in the audit trail.
    let (_, audit) = get(&client, &url, "/api/plinth/v1/audit?resource_type=feature_repository").await;
    let applies = audit["events"].as_array().expect("events").iter().filter(|e| e["outcome"] == "OK").count();
    assert!(applies >= 7, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_the_online_store_and_the_offline_data() {
    let server = TestServer::start(bin()).expect("start");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let text = r#"
[[entity]]
name = "driver"
join_keys = [{ name = "driver_id", type = "int64" }]

[[source]]
name = "driver_stats"
path = "data"
timestamp_field = "event_timestamp"
created_timestamp_column = "created"
field_mapping = { conv = "conv_rate" }

[[source]]
name = "driver_push"
push_to = "driver_stats"

[[source]]
name = "orphan_push"
push_to = "driver_stats"

[[feature_view]]
name = "driver_live"
entities = ["driver"]
source = "driver_push"
materialize_every = "1h"
features = [{ name = "conv_rate", type = "float64" }]
"#;
    let Applied { work, repo } = apply_repo(&url, text);
    // The schedule materializes the view (it never ran) within a tick or two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, fresh) = get(&client, &url, "/api/plinth/v1/features/freshness").await;
        if !fresh["feature_views"][0]["last_materialized_at"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled materialization: {fresh}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let online = |client: reqwest::Client, url: String| async move {
        let res = client
            .post(format!("{url}/get-online-features"))
            .json(&serde_json::json!({"features": ["driver_live:conv_rate"], "entities": {"driver_id": [1]}}))
            .send()
            .await
            .expect("online");
        let v: Value = res.json().await.expect("json");
        (v["results"][1]["values"][0].clone(), v["results"][1]["event_timestamps"][0].clone())
    };
    assert_eq!(online(client.clone(), url.clone()).await, (serde_json::json!(0.25), serde_json::json!("2023-11-15T00:13:20Z")));

    let push = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let res = client.post(format!("{url}/push")).json(&body).send().await.expect("push");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // An older event does not replace the newer one online.
    let (status, body) = push(serde_json::json!({"push_source_name": "driver_push", "df": {"driver_id": [1], "event_timestamp": ["2023-11-14T23:00:00Z"], "conv_rate": [9.9]}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"][0]["skipped_older"], 1, "{body}");
    assert_eq!(online(client.clone(), url.clone()).await.0, serde_json::json!(0.25));
    // A newer one does, and online_and_offline also appends it to the offline data.
    let (status, body) = push(serde_json::json!({
        "push_source_name": "driver_push",
        "df": {"driver_id": [1, 7], "event_timestamp": ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"], "created": ["2030-01-01T00:00:01Z", null], "conv_rate": [0.75, 0.5]},
        "to": "online_and_offline"
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    // The batch source's `city` was not pushed: it is null in the appended file, and the answer says so.
    assert!(body["warnings"].as_array().is_some_and(|w| w.len() == 1 && w[0].as_str().is_some_and(|t| t.contains("'city'"))), "{body}");
    assert_eq!(online(client.clone(), url.clone()).await, (serde_json::json!(0.75), serde_json::json!("2030-01-01T00:00:00Z")));
    // A push source no view reads writes nothing online, and the answer says why.
    let (status, body) = push(serde_json::json!({"push_source_name": "orphan_push", "df": {"driver_id": [1], "event_timestamp": ["2030-06-01T00:00:00Z"], "conv_rate": [0.1]}})).await;
    assert_eq!((status, &body["online"]), (200, &serde_json::json!([])), "{body}");
    assert!(body["warnings"][0].as_str().is_some_and(|w| w.contains("no feature view reads push source 'orphan_push'")), "{body}");
    let files: Vec<String> =
        std::fs::read_dir(repo.join("data")).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.iter().filter(|f| f.starts_with("push-") && f.ends_with(".parquet")).count(), 1, "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    // Historical retrieval sees the pushed rows.
    let entities = work.path().join("entities.csv");
    std::fs::write(&entities, "driver_id,event_timestamp\n1,2030-01-02T00:00:00Z\n7,2030-01-02T00:00:00Z\n1,2023-11-15T01:00:00Z\n")
        .expect("write");
    let out_file = work.path().join("out.parquet");
    let (ok, out, err) = plinth(
        &url,
        &[
            "features",
            "get-historical",
            "--entities",
            entities.to_str().expect("utf8"),
            "--features",
            "driver_live:conv_rate",
            "--out",
            out_file.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "{out}{err}");
    let table = read_parquet(&out_file);
    let conv = table.column(2).as_primitive::<Float64Type>();
    assert_eq!((conv.value(0), conv.value(1), conv.value(2)), (0.75, 0.5, 0.25));

    // Freshness: the newest event written online, by the push.
    let (status, fresh) = get(&client, &url, "/api/plinth/v1/features/freshness").await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["feature_views"][0]["feature_view"], "driver_live");
    assert_eq!(fresh["feature_views"][0]["newest_event_at"], "2030-01-01T00:00:00Z", "{fresh}");
    assert!(
        fresh["feature_views"][0]["age_seconds"].as_f64().is_some_and(|a| a < 0.0),
        "an event in the future has a negative age: {fresh}"
    );

    // The same on /metrics, as gauges per view.
    let metrics = client.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.lines().any(|l| l == "plinth_feature_view_newest_event_timestamp_seconds{view=\"driver_live\"} 1893456000"),
        "{metrics}"
    );
    assert!(metrics.contains("plinth_feature_pushed_rows_total{source=\"driver_push\",to=\"online\"}"), "{metrics}");
    assert!(metrics.contains("plinth_feature_online_read_duration_seconds_bucket{store=\"redb\",le=\"0.001\"}"), "{metrics}");

    // Feast's remote online store writes one view's rows through /write-to-online-store (zone-less
    // ISO times, `created` optional), never over a newer event.
    let write = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let res = client.post(format!("{url}/write-to-online-store")).json(&body).send().await.expect("write");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = write(serde_json::json!({"feature_view_name": "driver_live", "df": {"driver_id": [1, 8], "conv_rate": [0.125, 0.375], "event_timestamp": ["2031-01-01T00:00:00", "2031-01-01T00:00:00"], "created": [null, "2031-01-01T00:00:00"]}, "allow_registry_cache": false})).await;
    assert_eq!((status, &body["written"]), (200, &serde_json::json!(2)), "{body}");
    assert_eq!(online(client.clone(), url.clone()).await, (serde_json::json!(0.125), serde_json::json!("2031-01-01T00:00:00Z")));
    let (status, body) = write(serde_json::json!({"feature_view_name": "driver_live", "df": {"driver_id": [1], "conv_rate": [7.0], "event_timestamp": ["2029-01-01T00:00:00"]}})).await;
    assert_eq!((status, &body["skipped_older"]), (200, &serde_json::json!(1)), "{body}");
    for (body, code) in [
        (serde_json::json!({"feature_view_name": "nope", "df": {"driver_id": [1]}}), 404),
        (serde_json::json!({"feature_view_name": "driver_live", "df": {"driver_id": [1], "conv_rate": [1.0]}}), 400),
        (
            serde_json::json!({"feature_view_name": "driver_live", "df": {"driver_id": ["x"], "conv_rate": [1.0], "event_timestamp": ["2031-01-01T00:00:00"]}}),
            400,
        ),
        (serde_json::json!({"df": {}}), 400),
        (serde_json::json!({"feature_view_name": "driver_live", "df": {}, "extra": 1}), 400),
    ] {
        let (status, answer) = write(body.clone()).await;
        assert_eq!(status, code, "{body}: {answer}");
    }

    for (body, code) in [
        (serde_json::json!({"push_source_name": "nope", "df": {"driver_id": [1]}}), 404),
        (serde_json::json!({"push_source_name": "driver_stats", "df": {"driver_id": [1]}}), 400),
        (
            serde_json::json!({"push_source_name": "driver_push", "df": {"driver_id": [1], "event_timestamp": ["2030-01-01T00:00:00Z"]}}),
            400,
        ),
        (
            serde_json::json!({"push_source_name": "driver_push", "df": {"driver_id": [1], "event_timestamp": ["yesterday"], "conv_rate": [1.0]}}),
            400,
        ),
        (
            serde_json::json!({"push_source_name": "driver_push", "df": {"driver_id": [1, 2], "event_timestamp": ["2030-01-01T00:00:00Z"], "conv_rate": [1.0]}}),
            400,
        ),
        (serde_json::json!({"push_source_name": "driver_push", "df": {}, "to": "everywhere"}), 400),
    ] {
        let (status, answer) = push(body.clone()).await;
        assert_eq!(status, code, "{body}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_datasets_are_logged_to_runs_and_traced_from_views() {
    let server = TestServer::start(bin()).expect("start");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let Applied { work, .. } = apply_repo(&url, &repo_text("1d"));
    let (_, exp) = post(&client, &url, "/api/2.0/mlflow/experiments/create", serde_json::json!({"name": "lineage"})).await;
    let (_, run) = post(&client, &url, "/api/2.0/mlflow/runs/create", serde_json::json!({"experiment_id": exp["experiment_id"]})).await;
    let run_id = run["run"]["info"]["run_id"].as_str().expect("run id").to_owned();

    let entities = work.path().join("entities.csv");
    std::fs::write(&entities, "driver_id,event_timestamp,label\n1,2023-11-15T00:00:00Z,1\n2,2023-11-15T00:00:00Z,0\n").expect("write");
    let out_file = work.path().join("train.parquet");
    let (ok, out, err) = get_historical(
        &url,
        &entities,
        &out_file,
        &[
            "--features",
            "driver_hourly:conv_rate,driver_lifetime:city",
            "--full-feature-names",
            "--dataset-name",
            "rank_train",
            "--log-to-run",
            &run_id,
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("Logged training dataset"), "{out}");

    // The run has it as an MLflow dataset input, typed from the view versions read.
    let (status, got) = get(&client, &url, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}")).await;
    assert_eq!(status, 200, "{got}");
    let input = &got["run"]["inputs"]["dataset_inputs"][0];
    assert_eq!(input["dataset"]["name"], "rank_train", "{got}");
    assert_eq!(input["dataset"]["source_type"], "plinth_feature_store");
    let schema: Value = serde_json::from_str(input["dataset"]["schema"].as_str().expect("schema")).expect("schema json");
    assert_eq!(
        schema["mlflow_colspec"],
        serde_json::json!([
            {"type": "double", "name": "driver_hourly__conv_rate", "required": false},
            {"type": "string", "name": "driver_lifetime__city", "required": false}
        ])
    );
    let profile: Value = serde_json::from_str(input["dataset"]["profile"].as_str().expect("profile")).expect("profile json");
    assert_eq!(profile["num_rows"], 2);
    let tags: Vec<(String, String)> = input["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| (t["key"].as_str().unwrap_or_default().to_owned(), t["value"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert!(tags.contains(&("mlflow.data.context".into(), "training".into())), "{tags:?}");
    let (_, ds) = get(&client, &url, "/api/plinth/v1/features/training-datasets/rank_train").await;
    let ds_id = ds["training_dataset"]["id"].as_str().expect("id").to_owned();
    assert!(tags.contains(&("plinth.training_dataset_id".into(), ds_id.clone())), "{tags:?}");

    // Logging it again (another context) keeps one link per run; a second run adds one.
    let (_, run2) = post(&client, &url, "/api/2.0/mlflow/runs/create", serde_json::json!({"experiment_id": exp["experiment_id"]})).await;
    let run2_id = run2["run"]["info"]["run_id"].as_str().expect("run id").to_owned();
    let (ok, out, err) = plinth(&url, &["features", "log-dataset", "rank_train", "--run-id", &run2_id, "--context", "validation"]);
    assert!(ok, "{out}{err}");
    let (status, runs) = get(&client, &url, &format!("/api/plinth/v1/features/training-datasets/{ds_id}/runs")).await;
    assert_eq!(status, 200, "{runs}");
    let linked: Vec<(&str, &str)> = runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap_or(""), r["context"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(linked, vec![(run_id.as_str(), "training"), (run2_id.as_str(), "validation")]);

    // Lineage from the view (and from the entity, the source) reaches the runs.
    for (kind, name) in
        [("feature_view", "driver_hourly"), ("feature_view", "driver_lifetime"), ("entity", "driver"), ("source", "driver_stats")]
    {
        let (status, lineage) = get(&client, &url, &format!("/api/plinth/v1/features/lineage/{kind}/{name}")).await;
        assert_eq!(status, 200, "{lineage}");
        assert_eq!(lineage["training_datasets"].as_array().map(Vec::len), Some(1), "{kind} {name}: {lineage}");
        assert_eq!(lineage["training_datasets"][0]["runs"].as_array().map(Vec::len), Some(2), "{lineage}");
    }
    let (ok, out, err) = plinth(&url, &["features", "lineage", "feature_view", "driver_hourly"]);
    assert!(ok && out.contains("rank_train") && out.contains(&run2_id), "{out}{err}");
    let (_, none) = get(&client, &url, "/api/plinth/v1/features/lineage/feature_service/ranking").await;
    assert_eq!(none["training_datasets"], serde_json::json!([]), "{none}");

    // Bad input: unknown dataset, unknown run, a bad kind.
    let (status, answer) =
        post(&client, &url, "/api/plinth/v1/features/training-datasets/nope/log-to-run", serde_json::json!({"run_id": run_id})).await;
    assert_eq!((status, answer["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")), "{answer}");
    let (status, answer) = post(
        &client,
        &url,
        &format!("/api/plinth/v1/features/training-datasets/{ds_id}/log-to-run"),
        serde_json::json!({"run_id": "0123456789abcdef0123456789abcdef"}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = get(&client, &url, "/api/plinth/v1/features/lineage/widget/x").await;
    assert_eq!(status, 400);
}

/// Entity rows answered three at a time (`features.entity_chunk_rows = 3`): the same answer as
/// one chunk, in input order; a bad row in the last chunk is a 400 before any answer is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_rows_are_answered_chunk_by_chunk() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("plinth.toml");
    std::fs::write(&config, "[features]\nentity_chunk_rows = 3\n").expect("write config");
    let server = TestServer::start_in(bin(), &data.path().join("data"), &["--config", config.to_str().expect("utf8")]).expect("start");
    let url = server.url.clone();
    let Applied { work, .. } = apply_repo(&url, &repo_text("6h"));
    let entities = work.path().join("entities.csv");
    let mut csv = String::from("driver_id,event_timestamp,label\n");
    // 3 * 7 + 2 rows: seven whole chunks and a short one, the same pattern again and again.
    let pattern = [
        "1,2023-11-14T22:13:20Z",
        "1,2023-11-15T00:13:20Z",
        "1,2023-11-15T06:13:20Z",
        "1,2023-11-15T06:13:21Z",
        "2,2023-11-14T23:13:19Z",
        "3,2023-11-15T00:00:00Z",
    ];
    let expected = [Some(0.1), Some(0.25), Some(0.25), None, None, None];
    for i in 0..23 {
        csv.push_str(&format!("{},{i}\n", pattern[i % pattern.len()]));
    }
    std::fs::write(&entities, &csv).expect("write entities");
    let out_file = work.path().join("chunked.parquet");
    let (ok, out, err) = get_historical(&url, &entities, &out_file, &["--features", "driver_hourly:conv_rate"]);
    assert!(ok && out.contains("Wrote 23 rows"), "{out}{err}");
    let table = read_parquet(&out_file);
    let labels: Vec<i64> = table.column(2).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(labels, (0..23).collect::<Vec<i64>>(), "input order across chunks");
    let conv = table.column(3).as_primitive::<Float64Type>();
    for i in 0..23 {
        assert_eq!(conv.is_valid(i).then(|| conv.value(i)), expected[i % expected.len()], "row {i}");
    }

    // A row without an event time in the last chunk: refused whole, nothing written.
    csv.push_str("1,,99\n");
    std::fs::write(&entities, &csv).expect("write entities");
    let refused = work.path().join("refused.parquet");
    let (ok, _, err) = get_historical(&url, &entities, &refused, &["--features", "driver_hourly:conv_rate"]);
    assert!(!ok && err.contains("INVALID_PARAMETER_VALUE") && err.contains("entity row 23 has no event time"), "{err}");
    assert!(!refused.exists(), "no output for a refused retrieval");
}
