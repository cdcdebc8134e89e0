//! The prediction log: every answered (or refused) inference, appended off the request's path to
//! Parquet files that A/B analysis and drift monitoring read.
//!
//! Requests hand their record to a bounded queue and go on: when the queue is full the record is
//! dropped and counted (`plinth_serving_prediction_log_dropped_total`), so the log never slows or
//! blocks serving. One writer thread turns records into Arrow batches and appends them to one open
//! file per deployment, under `DIR/deployment=NAME/date=YYYY-MM-DD/part-<millis>-<id>.parquet`
//! (Hive-style partitions). A file is written as `….parquet.inprogress` and renamed when it is
//! closed: after `roll_interval`, past `max_file_bytes`, when the day changes, and at shutdown.
//! A crash loses the files still in progress (at most one roll interval of predictions); the
//! leftovers are removed at the next start.
//!
//! Schema (one row per request): `request_id` (string), `timestamp` (UTC, milliseconds),
//! `deployment`, `variant`, `model` (strings), `model_version` (int64), `routing_key` (string,
//! null when none), `outcome` (`OK` or the error code), `latency_us` (int64, arrival to answer),
//! `outputs` (JSON, `{"output": nested lists}`, null unless OK), `inputs` (JSON of the same form,
//! null unless the deployment samples inputs and this request was sampled).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use plinth_features::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use plinth_features::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use plinth_features::arrow::record_batch::RecordBatch;
use plinth_features::parquet::arrow::ArrowWriter;
use plinth_features::parquet::basic::{Compression, ZstdLevel};
use plinth_features::parquet::file::properties::WriterProperties;

use crate::tensor::Tensor;

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct PredictionLogConfig {
    pub dir: PathBuf,
    pub roll_interval: Duration,
    pub max_file_bytes: u64,
    /// Records the queue holds before new ones are dropped.
    pub buffer: usize,
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub request_id: String,
    pub timestamp_ms: i64,
    pub deployment: String,
    pub variant: String,
    pub model: String,
    pub model_version: i64,
    pub routing_key: Option<String>,
    pub outcome: &'static str,
    pub latency_us: i64,
    /// Serialized on the writer thread, not on the request's.
    pub outputs: Option<Vec<Tensor>>,
    pub inputs: Option<Vec<Tensor>>,
}

enum Message {
    Record(Box<Prediction>),
    /// Close every open file, then answer.
    Flush(std::sync::mpsc::Sender<()>),
    Close,
}

/// The log's handle: `append` from any thread; `close` at shutdown.
pub struct PredictionLog {
    queue: Option<SyncSender<Message>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Records each batch holds at most before it is written.
const BATCH_ROWS: usize = 4096;
/// Longest a record waits on the writer thread before its batch is written.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How often the writer drains the queue.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

impl PredictionLog {
    /// A log that keeps nothing.
    pub fn disabled() -> PredictionLog {
        PredictionLog { queue: None, writer: std::sync::Mutex::new(None) }
    }

    /// Creates the directory, removes the files a crash left in progress, starts the writer.
    pub fn start(config: PredictionLogConfig) -> std::io::Result<PredictionLog> {
        std::fs::create_dir_all(&config.dir)?;
        let removed = remove_in_progress(&config.dir)?;
        if removed > 0 {
            tracing::warn!(files = removed, dir = %config.dir.display(), "removed prediction log files a crash left unfinished");
        }
        let (queue, rx) = std::sync::mpsc::sync_channel(config.buffer.max(1));
        let writer = std::thread::Builder::new().name("prediction-log".into()).spawn(move || Writer::new(config).run(rx))?;
        Ok(PredictionLog { queue: Some(queue), writer: std::sync::Mutex::new(Some(writer)) })
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a record; never waits. A full queue drops it (counted).
    pub fn append(&self, prediction: Prediction) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(Message::Record(Box::new(prediction))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => metrics::counter!(crate::metrics::PREDICTIONS_DROPPED).increment(1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Writes what is queued and closes every open file (they become readable); waits for it.
    pub fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (ack, done) = std::sync::mpsc::channel();
        if queue.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Writes what is queued, closes the files and stops the writer (at shutdown).
    pub fn close(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Message::Close);
        }
        if let Some(writer) = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = writer.join();
        }
    }
}

fn remove_in_progress(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "inprogress") {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("request_id", false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        text("deployment", false),
        text("variant", false),
        text("model", false),
        Field::new("model_version", DataType::Int64, false),
        text("routing_key", true),
        text("outcome", false),
        Field::new("latency_us", DataType::Int64, false),
        text("outputs", true),
        text("inputs", true),
    ]))
}

/// `{"name": nested lists, …}` of a request's tensors.
fn tensors_json(tensors: &[Tensor]) -> String {
    serde_json::Value::Object(tensors.iter().map(|t| (t.name.clone(), t.nested_json())).collect()).to_string()
}

fn batch(schema: &SchemaRef, records: &[Prediction]) -> Result<RecordBatch, plinth_features::arrow::error::ArrowError> {
    let n = records.len();
    let mut request_id = StringBuilder::with_capacity(n, n * 32);
    let mut timestamp = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut deployment = StringBuilder::new();
    let mut variant = StringBuilder::new();
    let mut model = StringBuilder::new();
    let mut version = Int64Builder::with_capacity(n);
    let mut routing_key = StringBuilder::new();
    let mut outcome = StringBuilder::new();
    let mut latency = Int64Builder::with_capacity(n);
    let mut outputs = StringBuilder::new();
    let mut inputs = StringBuilder::new();
    for r in records {
        request_id.append_value(&r.request_id);
        timestamp.append_value(r.timestamp_ms);
        deployment.append_value(&r.deployment);
        variant.append_value(&r.variant);
        model.append_value(&r.model);
        version.append_value(r.model_version);
        routing_key.append_option(r.routing_key.as_deref());
        outcome.append_value(r.outcome);
        latency.append_value(r.latency_us);
        outputs.append_option(r.outputs.as_deref().map(tensors_json));
        inputs.append_option(r.inputs.as_deref().map(tensors_json));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(deployment.finish()),
        Arc::new(variant.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
        Arc::new(routing_key.finish()),
        Arc::new(outcome.finish()),
        Arc::new(latency.finish()),
        Arc::new(outputs.finish()),
        Arc::new(inputs.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

struct OpenFile {
    writer: ArrowWriter<std::fs::File>,
    path: PathBuf,
    opened: Instant,
    date: String,
}

struct Writer {
    config: PredictionLogConfig,
    schema: SchemaRef,
    open: HashMap<String, OpenFile>,
    pending: Vec<Prediction>,
    oldest_pending: Option<Instant>,
}

impl Writer {
    fn new(config: PredictionLogConfig) -> Writer {
        Writer { config, schema: schema(), open: HashMap::new(), pending: Vec::new(), oldest_pending: None }
    }

    fn run(mut self, rx: Receiver<Message>) {
        // The writer sleeps and drains what arrived, rather than waking for each record: a
        // request's append costs a queue push, never a wake-up of another thread (which, on a
        // small machine, competes with serving for the CPU).
        let tick = DRAIN_EVERY.min(self.config.roll_interval);
        loop {
            std::thread::sleep(tick);
            loop {
                match rx.try_recv() {
                    Ok(Message::Record(p)) => {
                        self.oldest_pending.get_or_insert_with(Instant::now);
                        self.pending.push(*p);
                        if self.pending.len() >= BATCH_ROWS {
                            self.write_pending();
                        }
                    }
                    Ok(Message::Flush(ack)) => {
                        self.write_pending();
                        self.close_all();
                        let _ = ack.send(());
                    }
                    Ok(Message::Close) | Err(TryRecvError::Disconnected) => {
                        self.write_pending();
                        self.close_all();
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if self.oldest_pending.is_some_and(|t| t.elapsed() >= BATCH_DELAY) {
                self.write_pending();
            }
            self.roll();
        }
    }

    fn write_pending(&mut self) {
        self.oldest_pending = None;
        if self.pending.is_empty() {
            return;
        }
        let mut by_deployment: HashMap<String, Vec<Prediction>> = HashMap::new();
        for p in std::mem::take(&mut self.pending) {
            by_deployment.entry(p.deployment.clone()).or_default().push(p);
        }
        for (name, records) in by_deployment {
            if let Err(e) = self.append(&name, &records) {
                metrics::counter!(crate::metrics::PREDICTIONS_DROPPED).increment(records.len() as u64);
                tracing::error!(deployment = %name, error = %e, records = records.len(), "could not write to the prediction log");
            }
        }
    }

    fn append(&mut self, deployment: &str, records: &[Prediction]) -> Result<(), String> {
        let batch = batch(&self.schema, records).map_err(|e| e.to_string())?;
        let today = plinth_core::time::rfc3339_from_millis(plinth_core::time::now_millis()).chars().take(10).collect::<String>();
        if self.open.get(deployment).is_some_and(|f| f.date != today) {
            self.close(deployment);
        }
        if !self.open.contains_key(deployment) {
            let file = self.open_file(deployment, &today)?;
            self.open.insert(deployment.to_owned(), file);
        }
        let file = self.open.get_mut(deployment).ok_or("no open file")?;
        file.writer.write(&batch).map_err(|e| e.to_string())?;
        metrics::counter!(crate::metrics::PREDICTIONS_LOGGED).increment(records.len() as u64);
        Ok(())
    }

    fn open_file(&self, deployment: &str, date: &str) -> Result<OpenFile, String> {
        let dir = self.config.dir.join(format!("deployment={deployment}")).join(format!("date={date}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(format!("part-{}-{}.parquet", plinth_core::time::now_millis(), &id[..12]));
        let progress = path.with_extension("parquet.inprogress");
        let out = std::fs::File::create(&progress).map_err(|e| format!("could not create {}: {e}", progress.display()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(64 * 1024))
            .build();
        let writer = ArrowWriter::try_new(out, self.schema.clone(), Some(props)).map_err(|e| e.to_string())?;
        Ok(OpenFile { writer, path, opened: Instant::now(), date: date.to_owned() })
    }

    /// Closes the files that are old or large enough.
    fn roll(&mut self) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| {
                f.opened.elapsed() >= self.config.roll_interval
                    || f.writer.bytes_written() as u64 + f.writer.in_progress_size() as u64 >= self.config.max_file_bytes
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.close(&name);
        }
    }

    fn close(&mut self, deployment: &str) {
        let Some(file) = self.open.remove(deployment) else { return };
        let progress = file.path.with_extension("parquet.inprogress");
        let res = file
            .writer
            .close()
            .map_err(|e| e.to_string())
            .and_then(|_| std::fs::rename(&progress, &file.path).map_err(|e| format!("could not rename {}: {e}", progress.display())));
        if let Err(e) = res {
            tracing::error!(deployment, error = %e, "could not finish a prediction log file");
        }
    }

    fn close_all(&mut self) {
        let names: Vec<String> = self.open.keys().cloned().collect();
        for name in names {
            self.close(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use plinth_features::arrow::array::{Array, AsArray};
    use plinth_features::arrow::datatypes::Int64Type;
    use plinth_features::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::tensor::Data;

    fn prediction(deployment: &str, i: i64) -> Prediction {
        Prediction {
            request_id: format!("r{i}"),
            timestamp_ms: 1_700_000_000_000 + i,
            deployment: deployment.into(),
            variant: "champion".into(),
            model: "churn".into(),
            model_version: 3,
            routing_key: (i % 2 == 0).then(|| format!("user-{i}")),
            outcome: if i % 5 == 0 { "INVALID_PARAMETER_VALUE" } else { "OK" },
            latency_us: 100 + i,
            outputs: (i % 5 != 0).then(|| vec![Tensor::new("label", vec![1], Data::I64(vec![i])).expect("tensor")]),
            inputs: (i % 3 == 0).then(|| vec![Tensor::new("X", vec![1, 2], Data::F32(vec![0.5, f32::NAN])).expect("tensor")]),
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read dir").flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    fn read(path: &Path) -> Vec<RecordBatch> {
        let file = std::fs::File::open(path).expect("open");
        ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader").map(|b| b.expect("batch")).collect()
    }

    #[test]
    fn records_land_in_one_file_per_deployment_with_their_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("deployment=old")).expect("dir");
        std::fs::write(dir.path().join("deployment=old/part-1.parquet.inprogress"), b"half").expect("leftover");
        let config =
            PredictionLogConfig { dir: dir.path().into(), roll_interval: Duration::from_secs(3600), max_file_bytes: 1 << 30, buffer: 1000 };
        let log = PredictionLog::start(config).expect("start");
        assert!(files(dir.path()).is_empty(), "leftovers of a crash are removed");
        for i in 0..10 {
            log.append(prediction("churn", i));
        }
        log.append(prediction("fraud", 99));
        log.flush();
        let written = files(dir.path());
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(written.iter().all(|p| p.extension().is_some_and(|e| e == "parquet")));
        let churn = written.iter().find(|p| p.to_string_lossy().contains("deployment=churn/date=")).expect("churn's file");
        let batches = read(churn);
        assert_eq!(batches[0].schema(), schema());
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 10);
        let b = &batches[0];
        let text = |col: &str, row: usize| {
            let a = b.column_by_name(col).expect(col).as_string::<i32>();
            (!a.is_null(row)).then(|| a.value(row).to_owned())
        };
        assert_eq!(text("request_id", 1).as_deref(), Some("r1"));
        assert_eq!(text("routing_key", 1), None);
        assert_eq!(text("routing_key", 2).as_deref(), Some("user-2"));
        assert_eq!(text("outcome", 0).as_deref(), Some("INVALID_PARAMETER_VALUE"));
        assert_eq!(text("outputs", 0), None);
        assert_eq!(text("outputs", 1).as_deref(), Some(r#"{"label":[1]}"#));
        assert_eq!(text("inputs", 3).as_deref(), Some(r#"{"X":[[0.5,"NaN"]]}"#));
        assert_eq!(text("inputs", 1), None);
        assert_eq!(b.column_by_name("latency_us").expect("latency").as_primitive::<Int64Type>().value(4), 104);
        log.close();
    }

    #[test]
    fn files_roll_by_time_and_a_full_queue_drops_instead_of_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            PredictionLogConfig { dir: dir.path().into(), roll_interval: Duration::from_millis(200), max_file_bytes: 1 << 30, buffer: 4 };
        let log = PredictionLog::start(config).expect("start");
        log.append(prediction("churn", 1));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(files(dir.path()).iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count(), 1, "rolled by time");
        // Many more than the queue holds, at once: none of these calls waits for the writer.
        let started = Instant::now();
        for i in 0..10_000 {
            log.append(prediction("churn", i));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        log.close();
        let rows: usize = files(dir.path()).iter().flat_map(|p| read(p)).map(|b| b.num_rows()).sum();
        assert!(rows > 1 && rows < 10_001, "some records were dropped rather than waited for ({rows})");
    }
}
