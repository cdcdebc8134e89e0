//! The online side: Feast's pushes and writes to the online store (and offline appends), and
//! online reads with their statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};

use super::{FeatureService, FieldStatus, OnlineColumn, Snapshot};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::online::{FeatureValue, OnlineRecord, array_of, entity_key, value_at};
use crate::repo::{SourceInput, SourceSpec, ViewSpec};
use crate::types::ValueType;

impl FeatureService {
    /// Feast's push: rows (columns by the names views see) to every view fed by `source`, to the
    /// online store (never replacing a newer event), to the offline data (one new Parquet file
    /// in the batch source's directory, written whole and then renamed into place), or both.
    pub async fn push(&self, source: &str, columns: &[(String, Vec<FeatureValue>)], to_online: bool, to_offline: bool) -> Result<Pushed> {
        let snap = self.snapshot().await?;
        let push = snap.repo.source(source).ok_or_else(|| Error::not_found(format!("push source '{source}' is not defined")))?;
        let SourceInput::Push { batch_source } = &push.input else {
            return Err(Error::invalid(format!("source '{source}' is not a push source")));
        };
        let batch =
            snap.repo.source(batch_source).ok_or_else(|| Error::not_found(format!("batch source '{batch_source}' is not defined")))?;
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        if rows > MAX_PUSH_ROWS {
            return Err(Error::invalid(format!("at most {MAX_PUSH_ROWS} rows per push; this one has {rows}")));
        }
        if let Some((name, col)) = columns.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let (event_ts, created_ts) =
            row_times(columns, rows, &batch.timestamp_field, batch.created_timestamp_column.as_deref(), batch_source)?;
        let views: Vec<&ViewSpec> = snap.repo.feature_views.iter().filter(|v| v.source == source).collect();
        // Every view's columns are checked before anything is written.
        let mut writes = Vec::new();
        for view in &views {
            writes.push((view.name.clone(), online_rows(&snap, view, columns, rows, &event_ts, &created_ts)?));
        }
        let mut out = Pushed { rows, ..Default::default() };
        if to_online && views.is_empty() {
            out.warnings.push(format!(
                "no feature view reads push source '{source}', so nothing was written online; set a feature view's source to '{source}'"
            ));
        }
        if to_offline {
            let (file, nulls) = self.append_offline(&snap, batch, &views, columns, rows).await?;
            out.offline_file = Some(file);
            if !nulls.is_empty() {
                out.warnings.push(format!(
                    "the pushed rows have no {} column(s), so they are null in the file appended to source '{}'",
                    nulls.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
                    batch.name
                ));
            }
        }
        if to_offline {
            metrics::counter!(m::PUSHED_ROWS, "source" => source.to_owned(), "to" => "offline").increment(rows as u64);
        }
        if to_online {
            let online = self.online_store()?.clone();
            let newest = event_ts.iter().copied().max();
            for (view, batch_rows) in writes {
                let w = online.write(&view, batch_rows).await?;
                if let Some(newest) = newest {
                    self.note_pushed(&view, newest);
                }
                out.online.push((view, w.written, w.skipped_older));
            }
            metrics::counter!(m::PUSHED_ROWS, "source" => source.to_owned(), "to" => "online").increment(rows as u64);
        }
        Ok(out)
    }

    /// Feast's `write-to-online-store` (what Feast's SDK sends when its online store is a remote
    /// feature server): rows for one online view, written online only and never over a newer
    /// event. The event time is the source's `timestamp_field` column or else `event_timestamp`;
    /// the created time the source's `created_timestamp_column` or else `created` (optional).
    pub async fn write_online(&self, view_name: &str, columns: &[(String, Vec<FeatureValue>)]) -> Result<(usize, usize)> {
        let snap = self.snapshot().await?;
        let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
        if !view.online {
            return Err(Error::invalid(format!("feature view '{view_name}' is not online (online = false)")));
        }
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        if rows > MAX_PUSH_ROWS {
            return Err(Error::invalid(format!("at most {MAX_PUSH_ROWS} rows per write; this one has {rows}")));
        }
        if let Some((name, col)) = columns.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let source = snap.repo.source(&view.source);
        let (ts_field, created_field) = match source.map(|s| (&s.input, s)) {
            Some((SourceInput::Push { batch_source }, _)) => {
                let b = snap.repo.source(batch_source);
                (b.map(|b| b.timestamp_field.clone()), b.and_then(|b| b.created_timestamp_column.clone()))
            }
            Some((_, s)) => (Some(s.timestamp_field.clone()), s.created_timestamp_column.clone()),
            None => (None, None),
        };
        let has = |name: &str| columns.iter().any(|(n, _)| n == name);
        let ts_field = ts_field.filter(|f| has(f)).unwrap_or_else(|| "event_timestamp".to_owned());
        let created_field = created_field.filter(|f| has(f)).or_else(|| has("created").then(|| "created".to_owned()));
        let (event_ts, created_ts) = row_times(columns, rows, &ts_field, created_field.as_deref(), &view.source)?;
        let batch = online_rows(&snap, view, columns, rows, &event_ts, &created_ts)?;
        let w = self.online_store()?.write(&view.name, batch).await?;
        if let Some(newest) = event_ts.iter().copied().max() {
            self.note_pushed(&view.name, newest);
        }
        metrics::counter!(m::PUSHED_ROWS, "source" => view.source.clone(), "to" => "online").increment(rows as u64);
        Ok((w.written, w.skipped_older))
    }

    /// Appends pushed rows to the batch source's directory as one new Parquet file, in the
    /// stored schema of the files already there (names before the field mapping). Answers the
    /// file and the columns the rows lacked (written as nulls).
    async fn append_offline(
        &self,
        snap: &Snapshot,
        batch: &SourceSpec,
        views: &[&ViewSpec],
        columns: &[(String, Vec<FeatureValue>)],
        rows: usize,
    ) -> Result<(String, Vec<String>)> {
        let SourceInput::Parquet { path } = &batch.input else {
            return Err(Error::invalid(format!("batch source '{}' is not a Parquet source", batch.name)));
        };
        let dir = std::path::Path::new(path);
        if !dir.is_dir() {
            return Err(Error::Conflict {
                message: format!("offline pushes append files, but source '{}' is one file ({path}), not a directory", batch.name),
            });
        }
        // The type of each view-facing column: join keys, features, the two times.
        let mut declared: BTreeMap<String, ValueType> = BTreeMap::new();
        for v in views {
            for k in snap.repo.join_keys(v) {
                declared.insert(k.name.clone(), k.value_type);
            }
            for f in &v.features {
                declared.insert(f.name.clone(), f.value_type);
            }
        }
        declared.insert(batch.timestamp_field.clone(), ValueType::Timestamp);
        if let Some(c) = &batch.created_timestamp_column {
            declared.insert(c.clone(), ValueType::Timestamp);
        }
        let unmapped = |view_name: &str| {
            batch.field_mapping.iter().find(|(_, to)| *to == view_name).map_or(view_name.to_owned(), |(from, _)| from.clone())
        };
        let stored = self.engine.parquet_schema(dir).await?;
        let schema = match stored {
            Some(s) => s,
            None => Arc::new(datafusion::arrow::datatypes::Schema::new(
                declared
                    .iter()
                    .map(|(name, t)| datafusion::arrow::datatypes::Field::new(unmapped(name), t.arrow(), true))
                    .collect::<Vec<_>>(),
            )),
        };
        let mut arrays = Vec::with_capacity(schema.fields().len());
        let mut nulls = Vec::new();
        for field in schema.fields() {
            let view_name = batch.field_mapping.get(field.name()).cloned().unwrap_or_else(|| field.name().clone());
            let values = columns.iter().find(|(n, _)| *n == view_name).map(|(_, v)| v.as_slice());
            let array = match (values, declared.get(&view_name)) {
                (Some(values), Some(t)) => array_of(values, *t, &view_name)?,
                (Some(values), None) => array_of(
                    values,
                    value_type_of(field.data_type()).ok_or_else(|| {
                        Error::invalid(format!(
                            "column '{view_name}' of source '{}' has type {}, which pushes cannot write",
                            batch.name,
                            field.data_type()
                        ))
                    })?,
                    &view_name,
                )?,
                (None, _) if field.is_nullable() => {
                    nulls.push(view_name.clone());
                    datafusion::arrow::array::new_null_array(field.data_type(), rows)
                }
                (None, _) => {
                    return Err(Error::invalid(format!("the rows have no '{view_name}' column, which source '{}' requires", batch.name)));
                }
            };
            let strict = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
            arrays.push(
                datafusion::arrow::compute::cast_with_options(&array, field.data_type(), &strict)
                    .map_err(|e| Error::invalid(format!("column '{view_name}' cannot be stored as {}: {e}", field.data_type())))?,
            );
        }
        let record = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), arrays)?;
        let dir = dir.to_path_buf();
        let file = tokio::task::spawn_blocking(move || write_parquet_atomically(&dir, &record))
            .await
            .map_err(|e| Error::io("the offline write failed", std::io::Error::other(e)))??;
        Ok((file, nulls))
    }

    /// Online read: for each entity row (columns of join-key values, by name), the requested
    /// features from the online store, with Feast's statuses. A value older than its view's TTL
    /// is not served (`OUTSIDE_MAX_AGE`, null). Join-key columns come first, as given.
    pub async fn online_features(
        &self,
        features: &[String],
        service: Option<&str>,
        entities: &[(String, Vec<FeatureValue>)],
        full_feature_names: bool,
    ) -> Result<Vec<OnlineColumn>> {
        let timer = std::time::Instant::now();
        let online = self.online_store()?.clone();
        let snap = self.snapshot().await?;
        let pairs = self.resolve(&snap, features, service)?;
        let rows = entities.first().map_or(0, |(_, v)| v.len());
        if let Some((name, col)) = entities.iter().find(|(_, v)| v.len() != rows) {
            return Err(Error::invalid(format!("entity column '{name}' has {} values; the others have {rows}", col.len())));
        }
        let now = plinth_core::time::now_millis().saturating_mul(1_000_000);
        let mut out: Vec<OnlineColumn> = entities
            .iter()
            .map(|(name, values)| OnlineColumn {
                name: name.clone(),
                values: values.clone(),
                statuses: vec![FieldStatus::Present; rows],
                event_ts: vec![Some(0); rows],
            })
            .collect();
        let mut names: std::collections::BTreeSet<String> = entities.iter().map(|(n, _)| n.clone()).collect();
        // One read per view, in first-use order.
        let mut views: Vec<&str> = Vec::new();
        for (v, _) in &pairs {
            if !views.contains(&v.as_str()) {
                views.push(v);
            }
        }
        let mut by_view: BTreeMap<&str, ViewRead> = BTreeMap::new();
        for view_name in &views {
            let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let keys = snap.repo.join_keys(view);
            let mut key_columns = Vec::with_capacity(keys.len());
            for k in &keys {
                let (_, col) = entities
                    .iter()
                    .find(|(n, _)| *n == k.name)
                    .ok_or_else(|| Error::invalid(format!("feature view '{view_name}' needs join key '{}' in the entities", k.name)))?;
                key_columns.push(col.iter().map(|v| coerce(v, k.value_type, &k.name)).collect::<Result<Vec<_>>>()?);
            }
            let encoded: Vec<Vec<u8>> =
                (0..rows).map(|r| entity_key(&key_columns.iter().map(|c| c[r].clone()).collect::<Vec<_>>())).collect();
            let records = online.read(view_name, &encoded).await?;
            let decoded = records.iter().map(|r| r.as_ref().map(OnlineRecord::decode_values).transpose()).collect::<Result<Vec<_>>>()?;
            by_view.insert(view_name, (records, decoded));
        }
        for (view_name, feature) in &pairs {
            let view = snap.repo.view(view_name).ok_or_else(|| Error::not_found(format!("feature view '{view_name}' is not defined")))?;
            let idx = view
                .features
                .iter()
                .position(|f| &f.name == feature)
                .ok_or_else(|| Error::not_found(format!("feature view '{view_name}' has no feature '{feature}'")))?;
            let name = if full_feature_names { format!("{view_name}__{feature}") } else { feature.clone() };
            if !names.insert(name.clone()) {
                return Err(Error::invalid(format!(
                    "output column '{name}' appears twice; ask for full feature names (full_feature_names)"
                )));
            }
            let (records, decoded) = &by_view[view_name.as_str()];
            let ttl = view.ttl_secs.map(|s| (s as i64).saturating_mul(1_000_000_000));
            let mut column = OnlineColumn {
                name,
                values: Vec::with_capacity(rows),
                statuses: Vec::with_capacity(rows),
                event_ts: Vec::with_capacity(rows),
            };
            let mut counts = [0u64; 4];
            for r in 0..rows {
                let (value, status, ts) = match (&records[r], &decoded[r]) {
                    (Some(rec), Some(values)) => {
                        let value = values.get(idx).cloned().unwrap_or(FeatureValue::Null);
                        if ttl.is_some_and(|ttl| rec.event_ts < now.saturating_sub(ttl)) {
                            (FeatureValue::Null, FieldStatus::OutsideMaxAge, Some(rec.event_ts))
                        } else if value == FeatureValue::Null {
                            (value, FieldStatus::NullValue, Some(rec.event_ts))
                        } else {
                            (value, FieldStatus::Present, Some(rec.event_ts))
                        }
                    }
                    _ => (FeatureValue::Null, FieldStatus::NotFound, None),
                };
                counts[status as usize] += 1;
                column.values.push(value);
                column.statuses.push(status);
                column.event_ts.push(ts);
            }
            for status in [FieldStatus::Present, FieldStatus::NullValue, FieldStatus::NotFound, FieldStatus::OutsideMaxAge] {
                if counts[status as usize] > 0 {
                    metrics::counter!(m::ONLINE_VALUES, "view" => view_name.clone(), "status" => status.as_str())
                        .increment(counts[status as usize]);
                }
            }
            out.push(column);
        }
        metrics::histogram!(m::ONLINE_READ_SECONDS, "store" => online.name()).record(timer.elapsed().as_secs_f64());
        metrics::histogram!(m::ONLINE_READ_ENTITIES).record(rows as f64);
        Ok(out)
    }
}

/// Most rows in one push.
pub const MAX_PUSH_ROWS: usize = 10_000;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub rows: usize,
    /// Per view: (view, rows written online, rows skipped because the store held a newer event).
    pub online: Vec<(String, usize, usize)>,
    /// The Parquet file the rows were appended to, for an offline push.
    pub offline_file: Option<String>,
    /// What the push did not do that its sender probably meant it to (no view fed online, columns
    /// written as nulls offline).
    pub warnings: Vec<String>,
}

fn value_type_of(t: &datafusion::arrow::datatypes::DataType) -> Option<ValueType> {
    ValueType::ALL.into_iter().find(|v| v.accepts(t))
}

/// Writes `batch` as a new Parquet file in `dir`: to a hidden temporary name (never listed by
/// readers), fsynced, renamed into place, and the directory fsynced.
fn write_parquet_atomically(dir: &std::path::Path, batch: &datafusion::arrow::array::RecordBatch) -> Result<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = dir.join(format!(".push-{id}.parquet.tmp"));
    let name = format!("push-{}-{id}.parquet", plinth_core::time::now_millis());
    let path = dir.join(&name);
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", dir.display()), e);
    // Whatever fails (a full disk included), the temporary file goes and nothing becomes visible.
    let written = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| io("cannot write to", e))?;
        let clone = file.try_clone().map_err(|e| io("cannot write to", e))?;
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(clone, batch.schema(), None)
            .map_err(|e| Error::invalid(format!("cannot encode the pushed rows: {e}")))?;
        // The rows were checked already: a failure here is the file system's (its error stays in the chain).
        writer.write(batch).and_then(|()| writer.close().map(|_| ())).map_err(|e| io("cannot write to", std::io::Error::other(e)))?;
        file.sync_all().map_err(|e| io("cannot sync a file in", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename into", e))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", e))?;
    Ok(path.display().to_string())
}

/// One view's online records for the request's entity rows, and their decoded values.
type ViewRead = (Vec<Option<OnlineRecord>>, Vec<Option<Vec<FeatureValue>>>);

/// The event time (required on every row) and created time (optional) of pushed rows.
fn row_times(
    columns: &[(String, Vec<FeatureValue>)],
    rows: usize,
    ts_field: &str,
    created_field: Option<&str>,
    source: &str,
) -> Result<(Vec<i64>, Vec<Option<i64>>)> {
    let time_values = |name: &str| -> Result<Option<Vec<Option<i64>>>> {
        let Some((_, values)) = columns.iter().find(|(n, _)| n == name) else { return Ok(None) };
        let array = array_of(values, ValueType::Timestamp, name)?;
        let ts = array.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        Ok(Some((0..rows).map(|i| ts.is_valid(i).then(|| ts.value(i))).collect()))
    };
    let event_ts = time_values(ts_field)?
        .ok_or_else(|| Error::invalid(format!("the rows have no '{ts_field}' column (the event time of source '{source}')")))?;
    if let Some(row) = event_ts.iter().position(Option::is_none) {
        return Err(Error::invalid(format!("row {row} has no event time in '{ts_field}'")));
    }
    let created_ts = match created_field {
        Some(c) => time_values(c)?.unwrap_or_else(|| vec![None; rows]),
        None => vec![None; rows],
    };
    Ok((event_ts.into_iter().flatten().collect(), created_ts))
}

/// The online records of one view from pushed columns (join keys and features by the names the
/// view sees), every value checked against its declared type.
fn online_rows(
    snap: &Snapshot,
    view: &ViewSpec,
    columns: &[(String, Vec<FeatureValue>)],
    rows: usize,
    event_ts: &[i64],
    created_ts: &[Option<i64>],
) -> Result<Vec<(Vec<u8>, OnlineRecord)>> {
    let column = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let mut key_cols = Vec::new();
    for k in snap.repo.join_keys(view) {
        let values = column(&k.name)
            .ok_or_else(|| Error::invalid(format!("the rows have no join key column '{}' (feature view '{}')", k.name, view.name)))?;
        key_cols.push(values.iter().map(|v| coerce(v, k.value_type, &k.name)).collect::<Result<Vec<_>>>()?);
    }
    let mut value_cols = Vec::new();
    for f in &view.features {
        let values = column(&f.name)
            .ok_or_else(|| Error::invalid(format!("the rows have no column '{}' (feature view '{}')", f.name, view.name)))?;
        let array = array_of(values, f.value_type, &f.name)?;
        value_cols.push((0..rows).map(|r| value_at(array.as_ref(), r, f.value_type)).collect::<Result<Vec<_>>>()?);
    }
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let key: Vec<FeatureValue> = key_cols.iter().map(|c| c[r].clone()).collect();
        let values: Vec<FeatureValue> = value_cols.iter().map(|c| c[r].clone()).collect();
        out.push((entity_key(&key), OnlineRecord::new(event_ts[r], created_ts[r], &values)));
    }
    Ok(out)
}

fn coerce(value: &FeatureValue, to: ValueType, key: &str) -> Result<FeatureValue> {
    let bad = || Error::invalid(format!("join key '{key}' is {}, and {value} is not one", to.as_str()));
    Ok(match (value, to) {
        (FeatureValue::Null, _) => FeatureValue::Null,
        (v, t) if v.value_type() == Some(t) => v.clone(),
        (FeatureValue::Int64(i), ValueType::Int32) => FeatureValue::Int32(i32::try_from(*i).map_err(|_| bad())?),
        (FeatureValue::Int32(i), ValueType::Int64) => FeatureValue::Int64(i64::from(*i)),
        (FeatureValue::Int64(i), ValueType::Timestamp) => FeatureValue::Timestamp(*i),
        _ => return Err(bad()),
    })
}
