//! The offline engine: DataFusion sessions over the sources of a repository, source checks, and
//! historical retrieval (the point-in-time join of `pit.rs` over streamed feature rows).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampNanosecondType};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Expr, cast, ident, lit};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::pit::{EntityIndex, FeatureBatch, Winners, nanos};
use crate::repo::{Column, Repository, SourceInput, SourceSpec, ViewSpec};
use crate::types::{is_time_type, timestamp_type};

/// Names of the engine's own columns in a view's frame.
const EVENT_TS: &str = "__plinth_event_ts";
const CREATED_TS: &str = "__plinth_created_ts";

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory DataFusion may use for sorts, joins and aggregations in SQL transformations before
    /// it spills to disk.
    pub memory_limit_bytes: usize,
    /// Where spill files go; `None`: the system temporary directory.
    pub spill_dir: Option<PathBuf>,
    /// Parallel partitions per scan; 0: one per CPU.
    pub partitions: usize,
    /// Rows per output batch.
    pub batch_rows: usize,
    /// Entity rows answered at once by a streamed retrieval (`historical_streamed`): what bounds
    /// its memory. Each chunk re-reads the feature rows of its own time window.
    pub entity_chunk_rows: usize,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions { memory_limit_bytes: 1 << 30, spill_dir: None, partitions: 0, batch_rows: 65_536, entity_chunk_rows: 2_000_000 }
    }
}

/// The offline engine. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    pub(crate) options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).finish()
    }
}

/// What a historical retrieval asks for.
#[derive(Debug, Clone)]
pub struct HistoricalRequest {
    /// (view, feature) pairs in output order.
    pub features: Vec<(String, String)>,
    /// Output columns named `view__feature` rather than `feature`.
    pub full_feature_names: bool,
    /// The entity rows' event-time column.
    pub timestamp_column: String,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Result<Engine> {
        let disk = match &options.spill_dir {
            Some(dir) => DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit_bytes)))
            .with_disk_manager_builder(disk)
            // Pushes add files to source directories: every query lists them afresh.
            .with_object_list_cache_limit(0)
            .build_arc()?;
        Ok(Engine { runtime, options })
    }

    fn partitions(&self) -> usize {
        if self.options.partitions > 0 {
            self.options.partitions
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    /// A fresh session: sources are registered per query, so a query sees the files present now.
    pub fn context(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(self.partitions()).with_batch_size(8192);
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// The rows of `source` with its field mapping applied. A push source reads its batch source;
    /// a SQL source runs its query over its inputs (each visible as a table named after it).
    pub async fn source_frame(&self, ctx: &SessionContext, repo: &Repository, source: &SourceSpec) -> Result<Option<DataFrame>> {
        let source = repo.offline_source(source);
        let raw = match &source.input {
            SourceInput::Parquet { path } => match blocking(PathBuf::from(path), |p| parquet_target(&p)).await? {
                None => return Ok(None),
                Some((url, extension)) => {
                    let options = ParquetReadOptions { file_extension: extension, ..Default::default() };
                    ctx.read_parquet(url, options)
                        .await
                        .map_err(|e| Error::invalid(format!("source '{}': cannot read {path}: {e}", source.name)))?
                }
            },
            SourceInput::Sql { query, inputs } => {
                for input in inputs {
                    let Some(spec) = repo.source(input) else {
                        return Err(Error::invalid(format!("source '{}': input '{input}' is not defined", source.name)));
                    };
                    let frame = Box::pin(self.source_frame(ctx, repo, spec))
                        .await?
                        .ok_or_else(|| Error::invalid(format!("source '{}': input '{input}' has no data files yet", source.name)))?;
                    if !ctx.table_exist(input.as_str())? {
                        ctx.register_table(input.as_str(), frame.into_view())?;
                    }
                }
                // A transformation only reads: no DDL (no CREATE EXTERNAL TABLE over other files),
                // no DML (no COPY TO), no SET.
                let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
                ctx.sql_with_options(query, read_only)
                    .await
                    .map_err(|e| Error::invalid(format!("source '{}': the SQL transformation fails: {e}", source.name)))?
            }
            SourceInput::Push { .. } => return Err(Error::invalid(format!("push source '{}' has no batch source", source.name))),
        };
        if source.field_mapping.is_empty() {
            return Ok(Some(raw));
        }
        let mut projection = Vec::new();
        for field in raw.schema().fields() {
            let name = field.name();
            match source.field_mapping.get(name) {
                Some(to) => projection.push(ident(name).alias(to)),
                None if source.field_mapping.values().any(|to| to == name) => {} // shadowed by a mapped column
                None => projection.push(ident(name)),
            }
        }
        Ok(Some(raw.select(projection)?))
    }

    /// The schema of the Parquet files at `path` as stored (no mapping), or `None` when a
    /// directory holds none yet.
    /// Read from a file's own metadata: DataFusion's scan schema uses view types (`Utf8View`),
    /// which files written with it would then disagree on.
    pub async fn parquet_schema(&self, path: &Path) -> Result<Option<SchemaRef>> {
        blocking(path.to_path_buf(), |path| {
            let Some(file) = first_parquet(&path).map_err(|e| Error::invalid(format!("cannot list {}: {e}", path.display())))? else {
                return Ok(None);
            };
            let open = std::fs::File::open(&file).map_err(|e| Error::invalid(format!("cannot read {}: {e}", file.display())))?;
            let builder = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open)
                .map_err(|e| Error::invalid(format!("{} is not a Parquet file: {e}", file.display())))?;
            let schema = builder.schema();
            Ok(Some(Arc::new(Schema::new(schema.fields().clone()))))
        })
        .await
    }

    /// The Arrow schema of a source after its mapping, or `None` when it has no data files yet.
    pub async fn source_schema(&self, repo: &Repository, source: &SourceSpec) -> Result<Option<SchemaRef>> {
        let ctx = self.context();
        Ok(self.source_frame(&ctx, repo, source).await?.map(|f| Arc::new(f.schema().as_arrow().clone())))
    }

    /// Checks that every view's source is readable and has every column the view needs, with a
    /// type the view's declaration accepts. Reports every problem at once; returns notes (sources
    /// with no data yet, whose columns could not be checked).
    pub async fn check(&self, repo: &Repository) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut schemas: BTreeMap<&str, Option<SchemaRef>> = BTreeMap::new();
        for source in &repo.sources {
            if matches!(source.input, SourceInput::Push { .. }) {
                continue;
            }
            match self.source_schema(repo, source).await {
                Ok(schema) => {
                    if let Some(schema) = &schema {
                        check_time_column(&source.name, schema, &source.timestamp_field, "timestamp_field", &mut problems);
                        if let Some(created) = &source.created_timestamp_column {
                            check_time_column(&source.name, schema, created, "created_timestamp_column", &mut problems);
                        }
                    } else {
                        notes.push(format!("source '{}' has no data files yet; its columns are checked when data arrives", source.name));
                    }
                    schemas.insert(&source.name, schema);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        for view in &repo.feature_views {
            let Some(source) = repo.source(&view.source) else { continue };
            let offline = repo.offline_source(source);
            let Some(Some(schema)) = schemas.get(offline.name.as_str()) else { continue };
            let what = format!("feature view '{}'", view.name);
            for key in repo.join_keys(view) {
                match schema.field_with_name(&key.name) {
                    Err(_) => problems.push(format!("{what}: source '{}' has no join key column '{}'", offline.name, key.name)),
                    Ok(f) if !key.value_type.accepts(f.data_type()) => problems.push(format!(
                        "{what}: join key '{}' is declared {} but source '{}' has {}",
                        key.name,
                        key.value_type.as_str(),
                        offline.name,
                        f.data_type()
                    )),
                    Ok(_) => {}
                }
            }
            for feature in &view.features {
                match schema.field_with_name(&feature.name) {
                    Err(_) => problems.push(format!("{what}: source '{}' has no column '{}'", offline.name, feature.name)),
                    Ok(f) if !feature.value_type.accepts(f.data_type()) => problems.push(format!(
                        "{what}: feature '{}' is declared {} but source '{}' has {}",
                        feature.name,
                        feature.value_type.as_str(),
                        offline.name,
                        f.data_type()
                    )),
                    Ok(_) => {}
                }
            }
        }
        if problems.is_empty() { Ok(notes) } else { Err(Error::Problems(problems)) }
    }

    /// A view's rows as the join reads them: join keys and the chosen features cast to their
    /// declared types, the event time as `EVENT_TS` and the created time as `CREATED_TS`
    /// (nanoseconds, UTC), restricted to event times in `[lower, upper]`.
    async fn view_frame(
        &self,
        ctx: &SessionContext,
        repo: &Repository,
        view: &ViewSpec,
        features: &[String],
        lower: Option<i64>,
        upper: Option<i64>,
    ) -> Result<Option<DataFrame>> {
        let source = repo
            .source(&view.source)
            .ok_or_else(|| Error::invalid(format!("feature view '{}': source '{}' is not defined", view.name, view.source)))?;
        let offline = repo.offline_source(source);
        let Some(frame) = self.source_frame(ctx, repo, source).await? else { return Ok(None) };
        let mut projection: Vec<Expr> = Vec::new();
        for key in repo.join_keys(view) {
            projection.push(cast(ident(&key.name), key.value_type.arrow()).alias(&key.name));
        }
        projection.push(cast(ident(&offline.timestamp_field), timestamp_type()).alias(EVENT_TS));
        if let Some(created) = &offline.created_timestamp_column {
            projection.push(cast(ident(created), timestamp_type()).alias(CREATED_TS));
        }
        for name in features {
            let column =
                view.feature(name).ok_or_else(|| Error::invalid(format!("feature view '{}' has no feature '{name}'", view.name)))?;
            projection.push(cast(ident(name), column.value_type.arrow()).alias(name));
        }
        let mut frame = frame.select(projection).map_err(|e| Error::invalid(format!("feature view '{}': {e}", view.name)))?;
        let ts = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), Some(Arc::from("UTC"))));
        if let Some(upper) = upper {
            frame = frame.filter(ident(EVENT_TS).lt_eq(ts(upper)))?;
        }
        if let Some(lower) = lower {
            frame = frame.filter(ident(EVENT_TS).gt_eq(ts(lower)))?;
        }
        Ok(Some(frame))
    }

    /// Checks one batch of entity rows before a retrieval answers anything: every row has an
    /// event time and every join key the requested views need, readable as its declared type.
    /// `first_row` is the batch's first row's number in the whole input, for error messages.
    pub fn check_entities(&self, repo: &Repository, entity: &RecordBatch, first_row: u64, request: &HistoricalRequest) -> Result<()> {
        entity_times(entity, &request.timestamp_column, first_row)?;
        let mut checked = std::collections::BTreeSet::new();
        for (view_name, _) in &request.features {
            let view = repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let keys: Vec<_> =
                repo.join_keys(view).into_iter().filter(|k| checked.insert((k.name.clone(), k.value_type.as_str()))).collect();
            entity_keys(entity, &keys, &view.name)?;
        }
        Ok(())
    }

    /// Historical retrieval: every entity row once, in input order, with the requested features
    /// as of its event time. `entities` must fit in memory (`historical_streamed` answers any
    /// number of rows chunk by chunk); feature rows are streamed.
    pub async fn historical(
        &self,
        repo: &Repository,
        entities: &[RecordBatch],
        schema: SchemaRef,
        request: &HistoricalRequest,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let entity = concat_batches(&schema, entities)?;
        let rows = entity.num_rows();
        let times = entity_times(&entity, &request.timestamp_column, 0)?;
        let (min_t, max_t) = (times.iter().copied().min(), times.iter().copied().max());

        // Output columns, in request order, and the views they come from (first-use order).
        let mut out_fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut view_order: Vec<&str> = Vec::new();
        let mut per_view: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut seen_names: BTreeMap<String, String> =
            schema.fields().iter().map(|f| (f.name().clone(), "an entity column".to_owned())).collect();
        for (view_name, feature) in &request.features {
            let view = repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let column =
                view.feature(feature).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' has no feature '{feature}'")))?;
            let name = if request.full_feature_names { format!("{view_name}__{feature}") } else { feature.clone() };
            if let Some(other) = seen_names.insert(name.clone(), format!("{view_name}:{feature}")) {
                return Err(Error::invalid(format!(
                    "output column '{name}' of {view_name}:{feature} collides with {other}; ask for full feature names (full_feature_names) or rename a column"
                )));
            }
            out_fields.push(Field::new(name, column.value_type.arrow(), true));
            if !per_view.contains_key(view_name.as_str()) {
                view_order.push(view_name);
            }
            per_view.entry(view_name.as_str()).or_default().push(feature.clone());
        }

        // One column set per view, each in entity order.
        let mut results: BTreeMap<(&str, &str), ArrayRef> = BTreeMap::new();
        let mut indexes: BTreeMap<Vec<String>, Arc<EntityIndex>> = BTreeMap::new();
        for view_name in &view_order {
            let view = repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let features = &per_view[view_name];
            let keys = repo.join_keys(view);
            let key_names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
            let index = match indexes.get(&key_names) {
                Some(index) => index.clone(),
                None => {
                    let key_arrays = entity_keys(&entity, &keys, &view.name)?;
                    let built = Arc::new(EntityIndex::build(&key_arrays, &times)?);
                    indexes.insert(key_names.clone(), built.clone());
                    built
                }
            };
            let ttl = view.ttl_secs.map(|s| (s as i64).saturating_mul(1_000_000_000));
            let value_schema = Arc::new(Schema::new(
                features
                    .iter()
                    .map(|f| Field::new(f, view.feature(f).map(|c| c.value_type.arrow()).unwrap_or(DataType::Null), true))
                    .collect::<Vec<_>>(),
            ));
            let lower = match (min_t, ttl) {
                (Some(min), Some(ttl)) => Some(min.saturating_sub(ttl)),
                _ => None,
            };
            let winners = if rows == 0 {
                Winners::new(0, value_schema.clone(), ttl)
            } else {
                let ctx = self.context();
                match self.view_frame(&ctx, repo, view, features, lower, max_t).await? {
                    None => Winners::new(index.slots(), value_schema.clone(), ttl),
                    Some(frame) => self.scan(frame, &index, &key_names, features, value_schema.clone(), ttl).await?,
                }
            };
            let columns = winners.finish(&index, rows.max(1))?;
            let batch = concat_batches(&value_schema, &columns)?;
            for (i, feature) in features.iter().enumerate() {
                results.insert((view_name, feature.as_str()), batch.column(i).clone());
            }
        }

        let out_schema = Arc::new(Schema::new(out_fields));
        let mut columns: Vec<ArrayRef> = entity.columns().to_vec();
        for (view_name, feature) in &request.features {
            columns.push(results[&(view_name.as_str(), feature.as_str())].clone());
        }
        let whole = RecordBatch::try_new_with_options(out_schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(rows)))?;
        let chunk = self.options.batch_rows.max(1);
        let mut out = Vec::with_capacity(rows.div_ceil(chunk));
        let mut start = 0;
        while start < rows {
            let len = chunk.min(rows - start);
            out.push(whole.slice(start, len));
            start += len;
        }
        Ok((out_schema, out))
    }

    /// Streams a view's frame through the join, one task per partition, and merges the partial
    /// winners in partition order.
    async fn scan(
        &self,
        frame: DataFrame,
        index: &Arc<EntityIndex>,
        key_names: &[String],
        features: &[String],
        value_schema: SchemaRef,
        ttl: Option<i64>,
    ) -> Result<Winners> {
        let streams = frame.execute_stream_partitioned().await?;
        let mut tasks = Vec::with_capacity(streams.len());
        for mut stream in streams {
            let index = index.clone();
            let key_names = key_names.to_vec();
            let features = features.to_vec();
            let value_schema = value_schema.clone();
            tasks.push(tokio::spawn(async move {
                let mut winners = Winners::new(index.slots(), value_schema.clone(), ttl);
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let column = |name: &str| {
                        batch.column_by_name(name).cloned().ok_or_else(|| Error::invalid(format!("the view's frame lost column '{name}'")))
                    };
                    let keys = key_names.iter().map(|k| column(k)).collect::<Result<Vec<_>>>()?;
                    let values = features.iter().map(|f| column(f)).collect::<Result<Vec<_>>>()?;
                    let values = RecordBatch::try_new_with_options(
                        value_schema.clone(),
                        values,
                        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                    )?;
                    let feature_batch =
                        FeatureBatch { keys, event_ts: column(EVENT_TS)?, created_ts: batch.column_by_name(CREATED_TS).cloned(), values };
                    winners.add(&index, feature_batch)?;
                }
                Ok::<_, Error>(winners)
            }));
        }
        let mut merged: Option<Winners> = None;
        for task in tasks {
            let part = task.await.map_err(|e| Error::invalid(format!("a retrieval task failed: {e}")))??;
            match &mut merged {
                None => merged = Some(part),
                Some(m) => m.merge(part),
            }
        }
        Ok(merged.unwrap_or_else(|| Winners::new(index.slots(), value_schema, ttl)))
    }
}

/// The latest row per entity of one view, among rows with event times in `[start, end]`: what
/// materialization writes online.
#[derive(Debug)]
pub struct LatestRows {
    /// Join-key columns, then every feature of the view, in declaration order.
    pub rows: RecordBatch,
    pub key_count: usize,
    pub event_ts: Vec<i64>,
    pub created_ts: Vec<Option<i64>>,
}

impl Engine {
    pub async fn latest(&self, repo: &Repository, view: &ViewSpec, start: Option<i64>, end: i64) -> Result<LatestRows> {
        let keys = repo.join_keys(view);
        let key_types: Vec<DataType> = keys.iter().map(|k| k.value_type.arrow()).collect();
        let mut fields: Vec<Field> = keys.iter().map(|k| Field::new(&k.name, k.value_type.arrow(), true)).collect();
        fields.extend(view.features.iter().map(|f| Field::new(&f.name, f.value_type.arrow(), true)));
        let schema = Arc::new(Schema::new(fields));
        let mut latest = crate::pit::Latest::new(&key_types, schema.clone())?;
        let features: Vec<String> = view.features.iter().map(|f| f.name.clone()).collect();
        let ctx = self.context();
        if let Some(frame) = self.view_frame(&ctx, repo, view, &features, start, Some(end)).await? {
            let mut stream = frame.execute_stream().await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let column = |name: &str| {
                    batch.column_by_name(name).cloned().ok_or_else(|| Error::invalid(format!("the view's frame lost column '{name}'")))
                };
                let key_arrays = keys.iter().map(|k| column(&k.name)).collect::<Result<Vec<_>>>()?;
                let mut columns = key_arrays.clone();
                for f in &features {
                    columns.push(column(f)?);
                }
                let rows = RecordBatch::try_new_with_options(
                    schema.clone(),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                )?;
                latest.add(&key_arrays, &column(EVENT_TS)?, batch.column_by_name(CREATED_TS), rows)?;
            }
        }
        let (rows, event_ts, created_ts) = latest.finish()?;
        Ok(LatestRows { rows, key_count: keys.len(), event_ts, created_ts })
    }
}

/// The entity rows' join-key columns for `keys` (of `view`), cast to their declared types; a
/// missing column or a value that does not read as its type is an error.
fn entity_keys(entity: &RecordBatch, keys: &[Column], view: &str) -> Result<Vec<ArrayRef>> {
    let strict = CastOptions { safe: false, ..Default::default() };
    keys.iter()
        .map(|key| {
            let column = entity.column_by_name(&key.name).ok_or_else(|| {
                Error::invalid(format!("the entity rows have no column '{}', a join key of feature view '{view}'", key.name))
            })?;
            cast_with_options(column, &key.value_type.arrow(), &strict)
                .map_err(|e| Error::invalid(format!("entity column '{}' cannot be read as {}: {e}", key.name, key.value_type.as_str())))
        })
        .collect()
}

/// Event times of the entity rows in nanoseconds; a missing or null time is an error (naming the
/// row as `first_row` + its index).
fn entity_times(entity: &RecordBatch, column: &str, first_row: u64) -> Result<Vec<i64>> {
    let array = entity.column_by_name(column).ok_or_else(|| {
        let names: Vec<&str> = entity.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        Error::invalid(format!("the entity rows have no event-time column '{column}' (columns: {})", names.join(", ")))
    })?;
    let times = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strict = CastOptions { safe: false, ..Default::default() };
            cast_with_options(array, &timestamp_type(), &strict)
                .map_err(|e| Error::invalid(format!("entity column '{column}' holds a value that is not a timestamp: {e}")))?
        }
        t if is_time_type(t) => nanos(array)?,
        t => {
            return Err(Error::invalid(format!(
                "entity column '{column}' has type {t}; it must be a timestamp, a date or an RFC 3339 string"
            )));
        }
    };
    let times = times.as_primitive::<TimestampNanosecondType>();
    if let Some(row) = (0..times.len()).find(|&i| times.is_null(i)) {
        return Err(Error::invalid(format!("entity row {} has no event time in column '{column}'", first_row + row as u64)));
    }
    Ok(times.values().to_vec())
}

fn check_time_column(source: &str, schema: &Schema, column: &str, what: &str, problems: &mut Vec<String>) {
    match schema.field_with_name(column) {
        Err(_) => problems.push(format!("source '{source}' has no column '{column}' (its {what})")),
        Ok(f) if !is_time_type(f.data_type()) => {
            problems.push(format!("source '{source}': {what} '{column}' has type {}, not a timestamp or date", f.data_type()))
        }
        Ok(_) => {}
    }
}

/// Runs file-system work (listing a source's directories, reading a file's footer) on the blocking
/// pool, never on an async worker.
async fn blocking<T: Send + 'static>(path: PathBuf, work: impl FnOnce(PathBuf) -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(move || work(path))
        .await
        .map_err(|e| Error::io("a file-system task did not finish", std::io::Error::other(e)))?
}

/// What DataFusion should read for a Parquet source path: the path (a directory with a trailing
/// `/`) and the file extension to list. `None` for a directory without Parquet files.
fn parquet_target(path: &Path) -> Result<Option<(String, &'static str)>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    if meta.is_dir() {
        if !has_parquet(path).map_err(|e| Error::invalid(format!("cannot list {}: {e}", path.display())))? {
            return Ok(None);
        }
        let mut s = path.display().to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        Ok(Some((s, ".parquet")))
    } else {
        Ok(Some((path.display().to_string(), "")))
    }
}

/// The first Parquet file of a path (itself when it is a file), in name order.
fn first_parquet(path: &Path) -> std::io::Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(Some(path.to_path_buf()));
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_file() && name.ends_with(".parquet") {
            return Ok(Some(entry.path()));
        }
        if kind.is_dir()
            && let Some(found) = first_parquet(&entry.path())?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn has_parquet(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let kind = entry.file_type()?;
        if (kind.is_file() && name.ends_with(".parquet")) || (kind.is_dir() && has_parquet(&entry.path())?) {
            return Ok(true);
        }
    }
    Ok(false)
}
