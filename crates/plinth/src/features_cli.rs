//! `plinth features …`: plan and apply a feature repository, list definitions, and retrieve
//! training data, against a running server (`/api/plinth/v1/features`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use plinth_features::arrow::array::RecordBatch;
use plinth_features::arrow::datatypes::SchemaRef;
use plinth_features::arrow::ipc::reader::StreamReader;
use plinth_features::arrow::ipc::writer::StreamWriter;
use plinth_features::parquet::arrow::ArrowWriter;
use plinth_features::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use plinth_features::parquet::basic::{Compression, ZstdLevel};
use plinth_features::parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use crate::client::{Client, Connection, print};

#[derive(Subcommand)]
pub(crate) enum FeaturesCommand {
    /// Validate a feature repository (every .toml file under DIR) against its data and show what
    /// `apply` would change.
    Plan { dir: PathBuf },
    /// Validate DIR and make the server's definitions equal to it, in one transaction (objects no
    /// longer in DIR are deleted; every change is a new version).
    Apply { dir: PathBuf },
    /// The applied definitions (`--kind entity|source|feature_view|feature_service`).
    List {
        #[arg(long)]
        kind: Option<String>,
    },
    /// One applied definition (`--version N` for an older one) or its history (`--history`).
    Get {
        /// entity, source, feature_view or feature_service.
        kind: String,
        name: String,
        #[arg(long)]
        version: Option<i64>,
        #[arg(long, conflicts_with = "version")]
        history: bool,
    },
    /// Feature values as of each entity row's time (an exact point-in-time join), into Parquet.
    GetHistorical(HistoricalArgs),
    /// Write the newest row per entity of online views to the online store.
    Materialize {
        /// Only rows after each view's watermark (the end of its last run).
        #[arg(long)]
        incremental: bool,
        /// Views to materialize (default: every online view); repeatable or comma-separated.
        #[arg(long = "views", value_delimiter = ',')]
        views: Vec<String>,
    },
    /// Saved training datasets, or one of them by id or name (with the runs it was logged to).
    Datasets { id_or_name: Option<String> },
    /// Log a saved training dataset to a tracking run as a dataset input (`mlflow.log_input`'s
    /// record), linking it for lineage.
    LogDataset {
        /// The training dataset's id or name.
        dataset: String,
        #[arg(long)]
        run_id: String,
        /// The input's `mlflow.data.context`.
        #[arg(long, default_value = "training")]
        context: String,
    },
    /// Lineage downstream of a definition: the training datasets that read it and the runs they
    /// were logged to.
    Lineage {
        /// entity, source, feature_view or feature_service.
        kind: String,
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct HistoricalArgs {
    /// Entity rows: a Parquet or CSV file with the join keys, an event-time column and any other
    /// columns (labels), which are passed through.
    #[arg(long)]
    entities: PathBuf,
    /// Feature references `view:feature` or `view` (all of its features); repeatable or comma-separated.
    #[arg(long = "features", value_delimiter = ',')]
    features: Vec<String>,
    /// A feature service instead of references.
    #[arg(long, conflicts_with = "features")]
    feature_service: Option<String>,
    /// The output Parquet file.
    #[arg(long)]
    out: PathBuf,
    /// The entity rows' event-time column.
    #[arg(long, default_value = "event_timestamp")]
    timestamp_column: String,
    /// Name output columns `view__feature`.
    #[arg(long)]
    full_feature_names: bool,
    /// Record the retrieval as a training dataset (definitions' versions, entity digest, output path).
    #[arg(long)]
    save: bool,
    /// Record it under this name (implies --save).
    #[arg(long)]
    dataset_name: Option<String>,
    /// Log the saved training dataset to this tracking run as a dataset input (implies --save).
    #[arg(long)]
    log_to_run: Option<String>,
    /// The context of that input (`mlflow.data.context`).
    #[arg(long, default_value = "training", requires = "log_to_run")]
    context: String,
}

fn load_repo(dir: &Path) -> anyhow::Result<Value> {
    let repo = plinth_features::repo::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Structural problems are reported here without a round trip; the server checks it all again.
    repo.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(json!({"repository": serde_json::to_value(&repo)?}))
}

fn print_plan(value: &Value, applied: bool) {
    for c in value["changes"].as_array().into_iter().flatten() {
        let op = c["op"].as_str().unwrap_or("?");
        let mark = match op {
            "create" => "+",
            "update" => "~",
            "delete" => "-",
            _ => " ",
        };
        let version = match (c["from_version"].as_i64(), c["to_version"].as_i64()) {
            (Some(0), Some(to)) => format!("v{to}"),
            (Some(from), Some(to)) => format!("v{from} -> v{to}"),
            (Some(from), None) => format!("v{from}"),
            _ => String::new(),
        };
        println!("{mark} {:<16} {:<40} {version}", c["kind"].as_str().unwrap_or("?"), c["name"].as_str().unwrap_or("?"));
    }
    for note in value["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
    let s = &value["summary"];
    let verb = if applied { "Applied" } else { "Plan" };
    println!("{verb}: {} to create, {} to update, {} to delete, {} unchanged.", s["create"], s["update"], s["delete"], s["unchanged"]);
    if let Some(id) = value["apply_id"].as_i64().filter(|id| *id > 0) {
        println!("Recorded as apply {id}.");
    }
}

pub(crate) fn run(conn: &Connection, command: FeaturesCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let c = Client::new(conn)?;
    match command {
        FeaturesCommand::Plan { dir } => {
            let value = c.call(Method::POST, "/features/plan", &[], Some(load_repo(&dir)?))?;
            print_plan(&value, false);
        }
        FeaturesCommand::Apply { dir } => {
            let value = c.call(Method::POST, "/features/apply", &[], Some(load_repo(&dir)?))?;
            print_plan(&value, true);
        }
        FeaturesCommand::List { kind } => {
            let query: Vec<(&str, String)> = kind.map(|k| ("kind", k)).into_iter().collect();
            let value = c.call(Method::GET, "/features/definitions", &query, None)?;
            for d in value["definitions"].as_array().into_iter().flatten() {
                println!("{:<16} {:<40} v{}", d["kind"].as_str().unwrap_or("?"), d["name"].as_str().unwrap_or("?"), d["version"]);
            }
        }
        FeaturesCommand::Get { kind, name, version, history } => {
            let path = format!("/features/definitions/{}/{}", crate::client::enc(&kind), crate::client::enc(&name));
            let value = if history {
                c.call(Method::GET, &format!("{path}/versions"), &[], None)?
            } else {
                let query: Vec<(&str, String)> = version.map(|v| ("version", v.to_string())).into_iter().collect();
                c.call(Method::GET, &path, &query, None)?
            };
            print(&value)?;
        }
        FeaturesCommand::Datasets { id_or_name } => {
            let value = match id_or_name {
                Some(id) => {
                    let path = format!("/features/training-datasets/{}", crate::client::enc(&id));
                    let mut value = c.call(Method::GET, &path, &[], None)?;
                    let mut runs = c.call(Method::GET, &format!("{path}/runs"), &[], None)?;
                    value["runs"] = runs["runs"].take();
                    value
                }
                None => c.call(Method::GET, "/features/training-datasets", &[], None)?,
            };
            print(&value)?;
        }
        FeaturesCommand::LogDataset { dataset, run_id, context } => {
            log_dataset(&c, &dataset, &run_id, &context)?;
        }
        FeaturesCommand::Lineage { kind, name } => {
            let path = format!("/features/lineage/{}/{}", crate::client::enc(&kind), crate::client::enc(&name));
            let value = c.call(Method::GET, &path, &[("max_results", "1000".to_owned())], None)?;
            let datasets = value["training_datasets"].as_array().cloned().unwrap_or_default();
            if datasets.is_empty() {
                println!("No training dataset has read {kind} '{name}'.");
            }
            for d in datasets {
                let label = d["name"].as_str().map_or_else(|| d["id"].as_str().unwrap_or("?").to_owned(), str::to_owned);
                let versions: Vec<String> = d["definitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["kind"] == kind.as_str() && r["name"] == name.as_str())
                    .map(|r| format!("v{}", r["version"]))
                    .collect();
                println!("training dataset {label} (read {}; {} entity rows)", versions.join(","), d["entity_rows"]);
                for r in d["runs"].as_array().into_iter().flatten() {
                    println!("  run {} ({})", r["run_id"].as_str().unwrap_or("?"), r["context"].as_str().unwrap_or("?"));
                }
            }
        }
        FeaturesCommand::GetHistorical(args) => historical(&c, args)?,
        FeaturesCommand::Materialize { incremental, views } => {
            let progress = Progress::new();
            progress.show("materializing", 0, None);
            let value =
                c.call(Method::POST, "/features/materialize", &[], Some(json!({"feature_views": views, "incremental": incremental})))?;
            progress.done();
            for m in value["materialized"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {} entities written ({} already newer)",
                    m["feature_view"].as_str().unwrap_or("?"),
                    m["rows"],
                    m["skipped_older"]
                );
            }
        }
    }
    Ok(())
}

/// A one-line progress report on stderr when it is a terminal.
struct Progress {
    tty: bool,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    fn show(&self, what: &str, done: u64, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let line = match total {
            Some(t) if t > 0 => {
                let width = 30;
                let filled = ((done.min(t) * width) / t) as usize;
                format!("{what:<10} [{}{}] {done}/{t}", "#".repeat(filled), " ".repeat(width as usize - filled))
            }
            _ => format!("{what:<10} {done}"),
        };
        eprint!("\r{line}  {:.1}s ", self.started.elapsed().as_secs_f64());
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Reads the entity file (Parquet or CSV, by extension) into batches.
/// Entity rows read from a Parquet or CSV file, batch by batch (never the whole file at once).
type EntityBatches = Box<dyn Iterator<Item = anyhow::Result<RecordBatch>>>;

fn read_entities(path: &Path) -> anyhow::Result<(SchemaRef, EntityBatches)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "parquet" | "pq" => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).context("not a Parquet file")?.with_batch_size(65_536);
            let schema = builder.schema().clone();
            let reader = builder.build()?;
            Ok((schema, Box::new(reader.map(|b| b.context("cannot read the Parquet file")))))
        }
        "csv" => {
            use plinth_features::arrow::csv::ReaderBuilder;
            use plinth_features::arrow::csv::reader::Format;
            let format = Format::default().with_header(true);
            let (schema, _) =
                format.infer_schema(std::io::BufReader::new(&file), Some(10_000)).context("cannot infer the CSV file's columns")?;
            let file = std::fs::File::open(path)?;
            let reader = ReaderBuilder::new(Arc::new(schema)).with_format(format).with_batch_size(65_536).build(file)?;
            let schema = reader.schema();
            Ok((schema, Box::new(reader.map(|b| b.context("cannot read the CSV file")))))
        }
        _ => bail!("{}: the entity file must end in .parquet or .csv", path.display()),
    }
}

/// Counts bytes as the request body is read.
struct Counting<R> {
    inner: R,
    read: u64,
    total: u64,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.show("uploading", self.read >> 10, Some(self.total >> 10));
        Ok(n)
    }
}

fn historical(c: &Client, args: HistoricalArgs) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::new());
    let (schema, batches) = read_entities(&args.entities)?;
    // The entity rows go up as an Arrow IPC stream, spooled to a temporary file first (batch by
    // batch) so the upload has a known length.
    let mut spool = tempfile_in_out_dir(&args.out)?;
    let mut rows = 0u64;
    {
        let mut writer = StreamWriter::try_new(std::io::BufWriter::new(&mut spool), &schema)?;
        for batch in batches {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
            progress.show("reading", rows, None);
        }
        writer.finish()?;
    }
    let total = spool.metadata()?.len();
    use std::io::Seek;
    spool.rewind()?;
    let out_path = std::path::absolute(&args.out).context("cannot resolve the output path")?;
    let mut query: Vec<(&str, String)> = vec![("timestamp_column", args.timestamp_column.clone())];
    for f in &args.features {
        query.push(("features", f.clone()));
    }
    if let Some(s) = &args.feature_service {
        query.push(("feature_service", s.clone()));
    }
    if args.full_feature_names {
        query.push(("full_feature_names", "true".into()));
    }
    if args.save || args.dataset_name.is_some() || args.log_to_run.is_some() {
        query.push(("save", "true".into()));
        query.push(("output_uri", format!("file://{}", out_path.display())));
    }
    if let Some(name) = &args.dataset_name {
        query.push(("dataset_name", name.clone()));
    }
    let body = Counting { inner: spool, read: 0, total, progress: progress.clone() };
    let resp = c.send_stream("/features/historical", &query, reqwest::blocking::Body::sized(body, total), ARROW_STREAM)?;
    let dataset = resp.headers().get("x-plinth-training-dataset").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let reader = StreamReader::try_new(std::io::BufReader::new(resp), None).context("the server's answer is not an Arrow IPC stream")?;
    let out_schema = reader.schema();
    let tmp_out = out_path.with_extension("parquet.partial");
    let file = std::fs::File::create(&tmp_out).with_context(|| format!("cannot create {}", tmp_out.display()))?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(file, out_schema, Some(props))?;
    let mut written = 0u64;
    for batch in reader {
        let batch = batch.context("the answer stream broke off")?;
        written += batch.num_rows() as u64;
        writer.write(&batch)?;
        progress.show("receiving", written, Some(rows));
    }
    writer.close()?;
    std::fs::rename(&tmp_out, &out_path)?;
    progress.done();
    if written != rows {
        bail!("the server answered {written} rows for {rows} entity rows");
    }
    println!("Wrote {written} rows to {}.", out_path.display());
    if let Some(id) = &dataset {
        println!("Saved as training dataset {id}.");
    }
    if let (Some(id), Some(run_id)) = (&dataset, &args.log_to_run) {
        log_dataset(c, id, run_id, &args.context)?;
    }
    Ok(())
}

fn log_dataset(c: &Client, dataset: &str, run_id: &str, context: &str) -> anyhow::Result<()> {
    let path = format!("/features/training-datasets/{}/log-to-run", crate::client::enc(dataset));
    let value = c.call(reqwest::Method::POST, &path, &[], Some(json!({"run_id": run_id, "context": context})))?;
    println!(
        "Logged training dataset {} to run {run_id} as dataset input '{}' (digest {}, context {context}).",
        value["training_dataset"]["id"].as_str().unwrap_or(dataset),
        value["dataset"]["name"].as_str().unwrap_or("?"),
        value["dataset"]["digest"].as_str().unwrap_or("?"),
    );
    Ok(())
}

/// The media type of Arrow IPC streams, what the server takes and answers.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// A temporary file next to the output (same disk as the result will go to).
fn tempfile_in_out_dir(out: &Path) -> anyhow::Result<std::fs::File> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tempfile::tempfile_in(dir).with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}
