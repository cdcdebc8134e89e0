//! The point-in-time join: for each entity row (key K, time T) the feature row with key K and the
//! greatest `(event_ts, created_ts)` among those with `event_ts <= T` (and `event_ts >= T - ttl`
//! when the view has a TTL), or nulls.
//!
//! The entity rows are indexed once: rows are grouped by key, and each group's distinct times,
//! sorted, are its *slots*. A feature row with time `ts` belongs to the first slot whose time is
//! `>= ts`; only the greatest `(ts, created)` of each slot can be an answer. The feature rows are
//! streamed once, in any order and in parallel, keeping one winner per slot (no sort of the
//! feature data, memory bounded by the entity rows). The answer of an entity row is then the
//! winner of the last non-empty slot at or before its own (later slots hold later rows), kept when
//! it is within the TTL. Exact ties of `(ts, created)` go to the row read last.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimestampNanosecondType};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};
use crate::types::timestamp_type;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const NONE: u32 = u32::MAX;

/// Times as nanoseconds since the epoch, UTC; nulls stay null.
pub(crate) fn nanos(array: &ArrayRef) -> Result<ArrayRef> {
    let array = match array.data_type() {
        DataType::Dictionary(_, value) => cast(array, value)?,
        _ => array.clone(),
    };
    // A zone-less timestamp is read as UTC: going through a zoned type keeps the value as is.
    Ok(cast(&array, &timestamp_type())?)
}

/// How entity keys are looked up: one 64-bit integer key is hashed as itself, anything else
/// through Arrow's row format.
enum KeyMap {
    Int(FastMap<i64, u32>),
    Rows { converter: RowConverter, map: FastMap<Box<[u8]>, u32> },
}

impl KeyMap {
    fn new(key_types: &[DataType]) -> Result<KeyMap> {
        if key_types == [DataType::Int64] {
            return Ok(KeyMap::Int(FastMap::default()));
        }
        let fields = key_types.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(KeyMap::Rows { converter: RowConverter::new(fields)?, map: FastMap::default() })
    }

    /// Group ids of each row, giving new keys new ids (`NONE` for a null key).
    fn insert(&mut self, keys: &[ArrayRef], next: &mut u32) -> Result<Vec<u32>> {
        let rows = keys.first().map_or(0, |k| k.len());
        let mut out = vec![NONE; rows];
        match self {
            KeyMap::Int(map) => {
                let ints = keys[0].as_primitive::<Int64Type>();
                for (i, slot) in out.iter_mut().enumerate() {
                    if ints.is_valid(i) {
                        *slot = *map.entry(ints.value(i)).or_insert_with(|| {
                            *next += 1;
                            *next - 1
                        });
                    }
                }
            }
            KeyMap::Rows { converter, map } => {
                let converted = converter.convert_columns(keys)?;
                for (i, slot) in out.iter_mut().enumerate() {
                    if !keys.iter().all(|k| k.is_valid(i)) {
                        continue;
                    }
                    let row = converted.row(i);
                    *slot = match map.get(row.as_ref()) {
                        Some(g) => *g,
                        None => {
                            map.insert(row.as_ref().into(), *next);
                            *next += 1;
                            *next - 1
                        }
                    };
                }
            }
        }
        Ok(out)
    }

    /// Group ids of each row, `NONE` for a null or unknown key.
    fn lookup(&self, keys: &[ArrayRef]) -> Result<Vec<u32>> {
        let rows = keys.first().map_or(0, |k| k.len());
        let mut out = vec![NONE; rows];
        match self {
            KeyMap::Int(map) => {
                let ints = keys[0].as_primitive::<Int64Type>();
                if ints.null_count() == 0 {
                    for (slot, k) in out.iter_mut().zip(ints.values().iter()) {
                        if let Some(g) = map.get(k) {
                            *slot = *g;
                        }
                    }
                } else {
                    for (i, slot) in out.iter_mut().enumerate() {
                        if ints.is_valid(i)
                            && let Some(g) = map.get(&ints.value(i))
                        {
                            *slot = *g;
                        }
                    }
                }
            }
            KeyMap::Rows { converter, map } => {
                let converted = converter.convert_columns(keys)?;
                for (i, slot) in out.iter_mut().enumerate() {
                    if keys.iter().all(|k| k.is_valid(i))
                        && let Some(g) = map.get(converted.row(i).as_ref())
                    {
                        *slot = *g;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The entity rows of one retrieval, indexed by key and time. Built once per set of join keys.
pub(crate) struct EntityIndex {
    keys: KeyMap,
    /// Per entity row: its slot, or `NONE` when its key is null.
    row_slot: Vec<u32>,
    /// Per group: the first slot; one more entry closes the last group.
    group_start: Vec<u32>,
    /// Per slot: its time.
    slot_time: Vec<i64>,
    /// Per slot: its group.
    slot_group: Vec<u32>,
    key_types: Vec<DataType>,
}

impl EntityIndex {
    /// `keys` are the entity rows' join-key columns (already of the view's key types), `times`
    /// their event times in nanoseconds (no nulls).
    pub(crate) fn build(keys: &[ArrayRef], times: &[i64]) -> Result<EntityIndex> {
        let key_types: Vec<DataType> = keys.iter().map(|k| k.data_type().clone()).collect();
        let mut map = KeyMap::new(&key_types)?;
        let mut groups_n = 0u32;
        let groups = map.insert(keys, &mut groups_n)?;
        let mut order: Vec<u32> = (0..times.len() as u32).filter(|&r| groups[r as usize] != NONE).collect();
        order.sort_unstable_by_key(|&r| (groups[r as usize], times[r as usize]));
        let mut row_slot = vec![NONE; times.len()];
        let mut group_start = Vec::with_capacity(groups_n as usize + 1);
        let mut slot_time = Vec::new();
        let mut slot_group = Vec::new();
        let mut current_group = NONE;
        for &r in &order {
            let (g, t) = (groups[r as usize], times[r as usize]);
            if g != current_group {
                // Groups come in id order, and every id has at least one row.
                group_start.push(slot_time.len() as u32);
                current_group = g;
                slot_time.push(t);
                slot_group.push(g);
            } else if slot_time.last() != Some(&t) {
                slot_time.push(t);
                slot_group.push(g);
            }
            row_slot[r as usize] = slot_time.len() as u32 - 1;
        }
        group_start.push(slot_time.len() as u32);
        if slot_time.len() >= NONE as usize {
            return Err(Error::invalid("too many distinct (key, time) pairs in the entity rows for one retrieval"));
        }
        Ok(EntityIndex { keys: map, row_slot, group_start, slot_time, slot_group, key_types })
    }

    pub(crate) fn slots(&self) -> usize {
        self.slot_time.len()
    }

    pub(crate) fn key_types(&self) -> &[DataType] {
        &self.key_types
    }

    fn lookup(&self, keys: &[ArrayRef]) -> Result<Vec<u32>> {
        self.keys.lookup(keys)
    }

    /// The slot a feature row at `ts` in `group` belongs to.
    fn slot_for(&self, group: u32, ts: i64) -> Option<u32> {
        let (lo, hi) = (self.group_start[group as usize] as usize, self.group_start[group as usize + 1] as usize);
        let times = &self.slot_time[lo..hi];
        let pos = times.partition_point(|&t| t < ts);
        (pos < times.len()).then_some((lo + pos) as u32)
    }
}

/// The best feature row seen so far for each slot, with the value columns it came from.
pub(crate) struct Winners {
    ts: Vec<i64>,
    created: Vec<i64>,
    /// (retained batch, row); `batch == NONE` when the slot is empty.
    loc: Vec<(u32, u32)>,
    retained: Vec<RecordBatch>,
    retained_rows: usize,
    schema: SchemaRef,
    ttl_nanos: Option<i64>,
}

/// One feature batch as the join reads it.
pub(crate) struct FeatureBatch {
    pub keys: Vec<ArrayRef>,
    /// Event times (any time type).
    pub event_ts: ArrayRef,
    pub created_ts: Option<ArrayRef>,
    /// The view's feature columns, already of their declared types, in `schema` order.
    pub values: RecordBatch,
}

impl Winners {
    pub(crate) fn new(slots: usize, schema: SchemaRef, ttl_nanos: Option<i64>) -> Winners {
        Winners {
            ts: vec![i64::MIN; slots],
            created: vec![i64::MIN; slots],
            loc: vec![(NONE, 0); slots],
            retained: Vec::new(),
            retained_rows: 0,
            schema,
            ttl_nanos,
        }
    }

    /// Folds one batch of feature rows in.
    pub(crate) fn add(&mut self, index: &EntityIndex, batch: FeatureBatch) -> Result<()> {
        let rows = batch.values.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys: Vec<ArrayRef> = batch
            .keys
            .iter()
            .zip(index.key_types())
            .map(|(k, t)| if k.data_type() == t { Ok(k.clone()) } else { cast(k, t) })
            .collect::<Result<_, _>>()?;
        let groups = index.lookup(&keys)?;
        let ts = nanos(&batch.event_ts)?;
        let ts = ts.as_primitive::<TimestampNanosecondType>();
        let created = batch.created_ts.as_ref().map(nanos).transpose()?;
        let created = created.as_ref().map(|c| c.as_primitive::<TimestampNanosecondType>());
        let batch_id = self.retained.len() as u32;
        let mut used = false;
        for (row, &group) in groups.iter().enumerate() {
            if group == NONE || ts.is_null(row) {
                continue;
            }
            let t = ts.value(row);
            let Some(slot) = index.slot_for(group, t) else { continue };
            let s = slot as usize;
            // A row older than its own slot's time minus the TTL is too old for every later slot too.
            if let Some(ttl) = self.ttl_nanos
                && t < index.slot_time[s].saturating_sub(ttl)
            {
                continue;
            }
            let c = match created {
                Some(c) if c.is_valid(row) => c.value(row),
                _ => i64::MIN,
            };
            if self.loc[s].0 == NONE || t > self.ts[s] || (t == self.ts[s] && c >= self.created[s]) {
                self.ts[s] = t;
                self.created[s] = c;
                self.loc[s] = (batch_id, row as u32);
                used = true;
            }
        }
        if used {
            self.retained_rows += rows;
            self.retained.push(batch.values);
            if self.retained_rows > (4 * self.ts.len()).max(1 << 20) {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Gathers the live winners into one batch, dropping every batch that holds none.
    fn compact(&mut self) -> Result<()> {
        let live: Vec<usize> = (0..self.loc.len()).filter(|&s| self.loc[s].0 != NONE).collect();
        let indices: Vec<(usize, usize)> = live.iter().map(|&s| (self.loc[s].0 as usize, self.loc[s].1 as usize)).collect();
        let batch = gather(&self.retained, &self.schema, &indices)?;
        for (i, &s) in live.iter().enumerate() {
            self.loc[s] = (0, i as u32);
        }
        self.retained = vec![batch];
        self.retained_rows = live.len();
        Ok(())
    }

    /// Merges the winners of a partition read after this one (its rows win exact ties).
    pub(crate) fn merge(&mut self, later: Winners) {
        let offset = self.retained.len() as u32;
        for s in 0..self.loc.len() {
            let (b, r) = later.loc[s];
            if b == NONE {
                continue;
            }
            let (t, c) = (later.ts[s], later.created[s]);
            if self.loc[s].0 == NONE || t > self.ts[s] || (t == self.ts[s] && c >= self.created[s]) {
                self.ts[s] = t;
                self.created[s] = c;
                self.loc[s] = (b + offset, r);
            }
        }
        self.retained_rows += later.retained_rows;
        self.retained.extend(later.retained);
    }

    /// The answer of every entity row: the feature columns, one row per entity row, in entity
    /// order, nulls where nothing qualifies. Returned as one `RecordBatch` per `chunk` rows.
    pub(crate) fn finish(mut self, index: &EntityIndex, chunk: usize) -> Result<Vec<RecordBatch>> {
        self.compact()?;
        let winners = self.retained.pop();
        // The answer slot of each slot: the last non-empty slot of its group at or before it.
        let mut answer = vec![NONE; index.slots()];
        let mut last = NONE;
        for (s, answer) in answer.iter_mut().enumerate() {
            if s == 0 || index.slot_group[s] != index.slot_group[s - 1] {
                last = NONE;
            }
            if self.loc[s].0 != NONE {
                last = s as u32;
            }
            *answer = last;
        }
        let pick = |row: usize| -> Option<u32> {
            let slot = index.row_slot[row];
            if slot == NONE {
                return None;
            }
            let a = answer[slot as usize];
            if a == NONE {
                return None;
            }
            if let Some(ttl) = self.ttl_nanos
                && self.ts[a as usize] < index.slot_time[slot as usize].saturating_sub(ttl)
            {
                return None;
            }
            Some(self.loc[a as usize].1)
        };
        let rows = index.row_slot.len();
        let mut out = Vec::with_capacity(rows.div_ceil(chunk.max(1)));
        let mut start = 0;
        while start < rows || (rows == 0 && out.is_empty()) {
            let end = (start + chunk.max(1)).min(rows);
            let idx: UInt32Array = (start..end).map(pick).collect();
            let columns = match &winners {
                Some(w) => w.columns().iter().map(|c| take(c.as_ref(), &idx, None)).collect::<Result<Vec<_>, _>>()?,
                None => self.schema.fields().iter().map(|f| new_null_array(f.data_type(), end - start)).collect(),
            };
            out.push(RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(end - start)),
            )?);
            if rows == 0 {
                break;
            }
            start = end;
        }
        Ok(out)
    }
}

/// The latest row per key (greatest `(event_ts, created_ts)`, ties to the row read last) of a
/// stream of feature rows: what materialization writes to the online store. Memory grows with
/// the number of distinct keys, not with the rows read.
pub(crate) struct Latest {
    keys: KeyMap,
    groups: u32,
    ts: Vec<i64>,
    created: Vec<i64>,
    /// Whether the winner of each key had a created time.
    has_created: Vec<bool>,
    loc: Vec<(u32, u32)>,
    retained: Vec<RecordBatch>,
    retained_rows: usize,
    /// Key columns, then value columns.
    schema: SchemaRef,
}

impl Latest {
    pub(crate) fn new(key_types: &[DataType], schema: SchemaRef) -> Result<Latest> {
        Ok(Latest {
            keys: KeyMap::new(key_types)?,
            groups: 0,
            ts: Vec::new(),
            created: Vec::new(),
            has_created: Vec::new(),
            loc: Vec::new(),
            retained: Vec::new(),
            retained_rows: 0,
            schema,
        })
    }

    /// Folds in one batch: `keys` are its key columns (of the view's key types), `rows` its key
    /// and value columns in `schema` order.
    pub(crate) fn add(&mut self, keys: &[ArrayRef], event_ts: &ArrayRef, created_ts: Option<&ArrayRef>, rows: RecordBatch) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let groups = self.keys.insert(keys, &mut self.groups)?;
        let n = self.groups as usize;
        self.ts.resize(n, i64::MIN);
        self.created.resize(n, i64::MIN);
        self.has_created.resize(n, false);
        self.loc.resize(n, (NONE, 0));
        let ts = nanos(event_ts)?;
        let ts = ts.as_primitive::<TimestampNanosecondType>();
        let created = created_ts.map(nanos).transpose()?;
        let created = created.as_ref().map(|c| c.as_primitive::<TimestampNanosecondType>());
        let batch_id = self.retained.len() as u32;
        let mut used = false;
        for (row, &g) in groups.iter().enumerate() {
            if g == NONE || ts.is_null(row) {
                continue;
            }
            let (t, g) = (ts.value(row), g as usize);
            let c = created.filter(|c| c.is_valid(row)).map(|c| c.value(row));
            let cv = c.unwrap_or(i64::MIN);
            if self.loc[g].0 == NONE || t > self.ts[g] || (t == self.ts[g] && cv >= self.created[g]) {
                self.ts[g] = t;
                self.created[g] = cv;
                self.has_created[g] = c.is_some();
                self.loc[g] = (batch_id, row as u32);
                used = true;
            }
        }
        if used {
            self.retained_rows += rows.num_rows();
            self.retained.push(rows);
            if self.retained_rows > (4 * self.loc.len()).max(1 << 20) {
                self.compact()?;
            }
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        let indices: Vec<(usize, usize)> = self.loc.iter().filter(|l| l.0 != NONE).map(|&(b, r)| (b as usize, r as usize)).collect();
        let batch = gather(&self.retained, &self.schema, &indices)?;
        for (i, l) in self.loc.iter_mut().filter(|l| l.0 != NONE).enumerate() {
            *l = (0, i as u32);
        }
        self.retained = vec![batch];
        self.retained_rows = indices.len();
        Ok(())
    }

    /// One row per key (key and value columns), with each row's event and created times.
    pub(crate) fn finish(mut self) -> Result<(RecordBatch, Vec<i64>, Vec<Option<i64>>)> {
        self.compact()?;
        let batch = self.retained.pop().map_or_else(|| Ok(RecordBatch::new_empty(self.schema.clone())), Ok::<_, Error>)?;
        let live = (0..self.loc.len()).filter(|&g| self.loc[g].0 != NONE);
        let (ts, created) = live.map(|g| (self.ts[g], self.has_created[g].then_some(self.created[g]))).unzip();
        Ok((batch, ts, created))
    }
}

fn gather(retained: &[RecordBatch], schema: &SchemaRef, indices: &[(usize, usize)]) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for c in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = retained.iter().map(|b| b.column(c).as_ref()).collect();
        columns.push(if arrays.is_empty() { new_null_array(schema.field(c).data_type(), 0) } else { interleave(&arrays, indices)? });
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )?)
}
