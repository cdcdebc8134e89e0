//! Historical retrieval, training datasets and their lineage to runs.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::tracking::{Dataset, DatasetInput, KeyValue, Page};
use plinth_store::audit::{Record, append_failure};
use plinth_store::features::{FeatureKind, TrainingDataset, TrainingDatasetRun};
use plinth_store::tracking::Rows;

use super::{FeatureService, Retrieval, Snapshot, list_page, parse_spec};
use crate::engine::HistoricalRequest;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::repo::ViewSpec;

impl FeatureService {
    /// Historical retrieval against the applied definitions (read afresh). `entities` is an Arrow
    /// IPC stream of entity rows in a file (an upload spooled to disk), read from its start: every
    /// batch is checked and counted first, so bad rows anywhere are an error before any answer goes out; then the rows
    /// are answered chunk by chunk (`Engine::historical_streamed`), never all held in memory.
    pub async fn historical(
        &self,
        entities: std::fs::File,
        features: &[String],
        service: Option<&str>,
        full_feature_names: bool,
        timestamp_column: &str,
    ) -> Result<Retrieval> {
        let timer = std::time::Instant::now();
        let snap = self.refresh().await?;
        let pairs = self.resolve(&snap, features, service)?;
        let request = HistoricalRequest { features: pairs.clone(), full_feature_names, timestamp_column: timestamp_column.to_owned() };
        // Pass one checks and counts every row. When they all fit in one chunk, the checked
        // batches are kept and answered as they are; otherwise the file is read again, chunk by
        // chunk.
        let chunk_rows = self.engine.options.entity_chunk_rows.max(1) as u64;
        let (entities, schema, kept, rows) = {
            let (engine, repo, request) = (self.engine.clone(), snap.repo.clone(), request.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let mut file = entities;
                rewind(&mut file)?;
                let (schema, reader) = ipc_batches(&file)?;
                let mut kept = Some(Vec::new());
                let mut rows = 0u64;
                for batch in reader {
                    let batch = batch?;
                    engine.check_entities(&repo, &batch, rows, &request)?;
                    rows += batch.num_rows() as u64;
                    match &mut kept {
                        Some(batches) if rows <= chunk_rows => batches.push(batch),
                        _ => kept = None,
                    }
                }
                Ok((file, schema, kept, rows))
            })
            .await
            .map_err(|e| Error::invalid(format!("checking the entity rows failed: {e}")))??
        };
        let reader: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> = match kept {
            Some(batches) => Box::new(batches.into_iter().map(Ok)),
            None => {
                let mut file = entities;
                rewind(&mut file)?;
                Box::new(ipc_batches(&file)?.1)
            }
        };
        let (schema, batches) = self.engine.historical_streamed(snap.repo.clone(), schema, request, reader).await?;
        metrics::counter!(m::HISTORICAL_ROWS).increment(rows);
        // The duration is recorded when the last batch has been produced.
        let finished = futures::stream::once(async move {
            metrics::histogram!(m::HISTORICAL_SECONDS).record(timer.elapsed().as_secs_f64());
        })
        .filter_map(|()| std::future::ready(None));
        Ok(Retrieval {
            schema,
            batches: batches.chain(finished).boxed(),
            rows,
            definitions: read_set(&snap, &pairs, service),
            features: pairs.iter().map(|(v, f)| format!("{v}:{f}")).collect(),
        })
    }

    pub async fn save_training_dataset(&self, actor: &Actor, dataset: TrainingDataset) -> Result<TrainingDataset> {
        if let Some(name) = &dataset.name {
            crate::repo::check_name("training dataset", name).map_err(Error::invalid)?;
        }
        let event = AuditEvent::new(actor, "training_dataset.create", "training_dataset", dataset.id.clone())
            .with_change(Change::set("entity_digest", dataset.entity_digest.clone()));
        let res = self.store.create_training_dataset(&dataset, Record::event(event.clone())).await.map_err(Error::from);
        append_failure(&self.audit, event, res).await.map(|()| dataset)
    }

    pub async fn training_dataset(&self, id_or_name: &str) -> Result<TrainingDataset> {
        Ok(self.store.training_dataset(id_or_name).await?)
    }

    /// Saved training datasets, newest first, a page at a time (100 by default, at most 1,000).
    pub async fn training_datasets(&self, max_results: Option<i64>, page_token: Option<&str>) -> Result<Page<TrainingDataset>> {
        let page = list_page(max_results, page_token)?;
        Ok(self.store.training_datasets(page).await?.into_page(page))
    }

    /// The MLflow dataset input that stands for a training dataset in a run: source type
    /// `plinth_feature_store`, a digest over what the retrieval read (entity rows, definitions'
    /// versions, features), the feature columns' schema in MLflow's column-spec form (typed from
    /// the view versions read), the row count, and the tags `mlflow.data.context` and
    /// `plinth.training_dataset_id`.
    pub async fn dataset_input(&self, id_or_name: &str, context: &str) -> Result<(TrainingDataset, DatasetInput)> {
        if context.is_empty() || context.len() > 500 {
            return Err(Error::invalid("the dataset context must be 1 to 500 characters (training, validation, …)"));
        }
        let ds = self.store.training_dataset(id_or_name).await?;
        let reads: Vec<ReadDefinition> = serde_json::from_str(&ds.definitions).map_err(|e| {
            Error::Store(plinth_store::Error::internal(format!("training dataset {} has unreadable definitions: {e}", ds.id)))
        })?;
        // Feature types from the view versions the retrieval read.
        let mut views: BTreeMap<String, ViewSpec> = BTreeMap::new();
        for r in reads.iter().filter(|r| r.kind == FeatureKind::FeatureView.as_str()) {
            let def = self.store.feature_definition(FeatureKind::FeatureView, &r.name, Some(r.version)).await?;
            if let Some(view) = parse_spec::<ViewSpec>(&def)? {
                views.insert(r.name.clone(), view);
            }
        }
        let mut colspec = Vec::new();
        for reference in &ds.features {
            let Some((view, feature)) = reference.split_once(':') else { continue };
            let Some(f) = views.get(view).and_then(|v| v.features.iter().find(|f| f.name == feature)) else { continue };
            let name = if ds.full_feature_names { format!("{view}__{feature}") } else { feature.to_owned() };
            colspec.push(serde_json::json!({"type": f.value_type.mlflow_type(), "name": name, "required": false}));
        }
        use sha2::Digest as _;
        let mut digest = sha2::Sha256::new();
        for part in [ds.entity_digest.as_str(), ds.definitions.as_str(), &ds.features.join(","), &ds.full_feature_names.to_string()] {
            digest.update(part.as_bytes());
            digest.update(b"\n");
        }
        let digest = hex::encode(&digest.finalize()[..8]);
        let short = ds.id.get(..8).unwrap_or(&ds.id);
        let input = DatasetInput {
            tags: vec![
                KeyValue { key: plinth_store::tracking::DATASET_CONTEXT_TAG.into(), value: context.to_owned() },
                KeyValue { key: "plinth.training_dataset_id".into(), value: ds.id.clone() },
            ],
            dataset: Dataset {
                name: ds.name.clone().unwrap_or_else(|| format!("training-dataset-{short}")),
                digest,
                source_type: "plinth_feature_store".into(),
                source: serde_json::json!({"training_dataset_id": ds.id, "uri": ds.output_uri}).to_string(),
                schema: Some(serde_json::json!({"mlflow_colspec": colspec}).to_string()),
                profile: Some(serde_json::json!({"num_rows": ds.entity_rows}).to_string()),
            },
        };
        Ok((ds, input))
    }

    /// Records that `dataset` was logged to `run_id` (after the tracking side accepted the input),
    /// so lineage can go from feature views to runs.
    pub async fn link_run(&self, actor: &Actor, dataset: &TrainingDataset, run_id: &str, context: &str) -> Result<()> {
        let link = TrainingDatasetRun {
            dataset_id: dataset.id.clone(),
            run_id: run_id.to_owned(),
            context: context.to_owned(),
            logged_at: plinth_core::time::now_millis(),
            logged_by: actor.name.clone(),
        };
        let event = AuditEvent::new(actor, "training_dataset.log_to_run", "training_dataset", dataset.id.clone())
            .with_change(Change::set("run_id", run_id.to_owned()));
        let res = self.store.link_training_dataset_run(&link, Record::event(event.clone())).await.map_err(Error::from);
        append_failure(&self.audit, event, res).await
    }

    /// Runs a training dataset was logged to, oldest first.
    pub async fn dataset_runs(&self, id_or_name: &str) -> Result<Vec<TrainingDatasetRun>> {
        Ok(self.store.training_dataset_runs(id_or_name).await?)
    }

    /// Lineage downstream of one definition: the training datasets whose retrieval read it (any
    /// version), newest first, each with the runs it was logged to.
    pub async fn lineage(
        &self,
        kind: FeatureKind,
        name: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<(TrainingDataset, Vec<TrainingDatasetRun>)>> {
        let page = list_page(max_results, page_token)?;
        let rows = self.store.training_datasets_reading(kind, name, page).await?;
        let mut items = Vec::with_capacity(rows.items.len());
        for ds in rows.items {
            let runs = self.store.training_dataset_runs(&ds.id).await?;
            items.push((ds, runs));
        }
        Ok(Rows { items, has_more: rows.has_more }.into_page(page))
    }
}

/// One entry of a training dataset's `definitions`.
#[derive(serde::Deserialize)]
struct ReadDefinition {
    kind: String,
    name: String,
    version: i64,
}

/// Every definition a retrieval of `pairs` reads: the views, their entities and sources (a push
/// source's batch source, a SQL source's inputs), and the service.
fn read_set(snap: &Snapshot, pairs: &[(String, String)], service: Option<&str>) -> Vec<(FeatureKind, String, i64)> {
    let mut set = std::collections::BTreeSet::new();
    let mut add = |kind: FeatureKind, name: &str| {
        if let Some(v) = snap.version(kind, name) {
            set.insert((kind, name.to_owned(), v));
        }
    };
    if let Some(s) = service {
        add(FeatureKind::FeatureService, s);
    }
    let mut sources: Vec<String> = Vec::new();
    for (view, _) in pairs {
        add(FeatureKind::FeatureView, view);
        if let Some(v) = snap.repo.view(view) {
            for e in &v.entities {
                add(FeatureKind::Entity, e);
            }
            sources.push(v.source.clone());
        }
    }
    while let Some(name) = sources.pop() {
        add(FeatureKind::Source, &name);
        if let Some(s) = snap.repo.source(&name) {
            match &s.input {
                crate::repo::SourceInput::Push { batch_source } => sources.push(batch_source.clone()),
                crate::repo::SourceInput::Sql { inputs, .. } => sources.extend(inputs.iter().cloned()),
                crate::repo::SourceInput::Parquet { .. } => {}
            }
        }
    }
    set.into_iter().collect()
}

fn rewind(file: &mut std::fs::File) -> Result<()> {
    use std::io::Seek;
    file.rewind().map_err(|e| Error::invalid(format!("cannot read the spooled entity rows: {e}")))
}

/// The schema and batches of an Arrow IPC stream in a file (read through its own handle, from the
/// file's current position).
fn ipc_batches(file: &std::fs::File) -> Result<(SchemaRef, impl Iterator<Item = Result<RecordBatch>> + Send + 'static)> {
    let file = file.try_clone().map_err(|e| Error::invalid(format!("cannot read the spooled entity rows: {e}")))?;
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| Error::invalid(format!("the entity rows are not an Arrow IPC stream: {e}")))?;
    let schema = reader.schema();
    Ok((schema, reader.map(|b| b.map_err(|e| Error::invalid(format!("the entity rows' Arrow IPC stream is malformed: {e}"))))))
}
