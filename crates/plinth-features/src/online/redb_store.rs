//! The embedded online store on redb (the default): one file, one table per feature view.
//!
//! Table `fv:<view>`; key = the entity key bytes; value = a 17-byte header, then the `encode_row`
//! bytes. The header is `event_ts` (i64 LE), a created flag (0 none, 1 some) and `created_ts`
//! (i64 LE, zero when none). A `write` is one write transaction, durable on commit, run on the
//! blocking pool; a `read` is one read transaction (MVCC: never waits for a writer), run inline
//! on the caller's task for up to `INLINE_READ_MAX_KEYS` keys and on the blocking pool above.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use crate::error::{Error, Result};
use crate::online::{OnlineRecord, OnlineStore, WriteOutcome, check_view, corrupt, newest_per_key};

/// Reads of at most this many keys run on the caller's task. A read transaction plus cached
/// B-tree lookups cost about 2 µs for 1 key and 1 µs per further key (release build), while a hop
/// to the blocking pool costs 35-50 µs (`tests::read_latency` measures both); 64 keys keep the
/// executor within tokio's ~100 µs guideline. Larger reads, which may also touch the disk, go to
/// the blocking pool.
const INLINE_READ_MAX_KEYS: usize = 64;

const HEADER_LEN: usize = 17;

type ViewTable<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// The redb adapter of `OnlineStore`. Cloning is cheap (the database is shared).
#[derive(Clone)]
pub struct RedbOnlineStore {
    db: Arc<Database>,
}

impl fmt::Debug for RedbOnlineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbOnlineStore").finish_non_exhaustive()
    }
}

impl RedbOnlineStore {
    /// Opens the store file at `path`, creating it and its parent directories when missing.
    /// A file can be open in one `RedbOnlineStore` (and one process) at a time.
    pub fn open(path: &Path) -> Result<RedbOnlineStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create the online store directory {}", parent.display()), e))?;
        }
        let db = Database::create(path)
            .map_err(|e| Error::Online { message: format!("cannot open the online store file {}: {e}", path.display()) })?;
        Ok(RedbOnlineStore { db: Arc::new(db) })
    }
}

fn table_name(view: &str) -> String {
    format!("fv:{view}")
}

fn db_err(e: impl fmt::Display) -> Error {
    Error::Online { message: format!("redb: {e}") }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Online { message: format!("an online store task failed: {e}") }
}

fn encode_record(record: &OnlineRecord, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LEN + record.values.len());
    out.extend_from_slice(&record.event_ts.to_le_bytes());
    out.push(u8::from(record.created_ts.is_some()));
    out.extend_from_slice(&record.created_ts.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&record.values);
}

fn decode_stamp(bytes: &[u8]) -> Result<(i64, Option<i64>)> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| corrupt(format!("a stored record of {} bytes", bytes.len())))?;
    let mut event = [0u8; 8];
    event.copy_from_slice(&header[..8]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&header[9..]);
    let created_ts = match header[8] {
        0 => None,
        1 => Some(i64::from_le_bytes(created)),
        other => return Err(corrupt(format!("a created-timestamp flag of {other}"))),
    };
    Ok((i64::from_le_bytes(event), created_ts))
}

fn decode_record(bytes: &[u8]) -> Result<OnlineRecord> {
    let (event_ts, created_ts) = decode_stamp(bytes)?;
    Ok(OnlineRecord { event_ts, created_ts, values: bytes[HEADER_LEN..].to_vec() })
}

fn write_blocking(db: &Database, table: &str, rows: Vec<(Vec<u8>, OnlineRecord)>) -> Result<WriteOutcome> {
    let (rows, superseded) = newest_per_key(rows);
    let mut outcome = WriteOutcome { written: 0, skipped_older: superseded };
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut t = txn.open_table(ViewTable::new(table)).map_err(db_err)?;
        let mut buf = Vec::new();
        for (key, record) in &rows {
            let stored = t.get(key.as_slice()).map_err(db_err)?.map(|old| decode_stamp(old.value()));
            let replace = match stored {
                None => true,
                Some(Ok(stamp)) => stamp <= record.stamp(),
                Some(Err(error)) => {
                    // A record this store cannot read is replaced rather than kept forever.
                    tracing::warn!(table, %error, "Replacing an unreadable online record.");
                    true
                }
            };
            if replace {
                encode_record(record, &mut buf);
                t.insert(key.as_slice(), buf.as_slice()).map_err(db_err)?;
                outcome.written += 1;
            } else {
                outcome.skipped_older += 1;
            }
        }
    }
    txn.commit().map_err(db_err)?;
    Ok(outcome)
}

fn read_blocking(db: &Database, table: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<OnlineRecord>>> {
    let txn = db.begin_read().map_err(db_err)?;
    let t = match txn.open_table(ViewTable::new(table)) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
        Err(e) => return Err(db_err(e)),
    };
    keys.iter().map(|key| t.get(key.as_slice()).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()).collect()
}

fn delete_blocking(db: &Database, table: &str) -> Result<u64> {
    let txn = db.begin_write().map_err(db_err)?;
    let def = ViewTable::new(table);
    // Opening creates a missing table; deleting it in the same transaction leaves no trace.
    let n = txn.open_table(def).map_err(db_err)?.len().map_err(db_err)?;
    txn.delete_table(def).map_err(db_err)?;
    txn.commit().map_err(db_err)?;
    Ok(n)
}

fn count_blocking(db: &Database, table: &str) -> Result<u64> {
    let txn = db.begin_read().map_err(db_err)?;
    match txn.open_table(ViewTable::new(table)) {
        Ok(t) => t.len().map_err(db_err),
        Err(TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(db_err(e)),
    }
}

#[async_trait]
impl OnlineStore for RedbOnlineStore {
    fn name(&self) -> &'static str {
        "redb"
    }

    async fn write(&self, view: &str, rows: Vec<(Vec<u8>, OnlineRecord)>) -> Result<WriteOutcome> {
        check_view(view)?;
        if rows.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let db = self.db.clone();
        let table = table_name(view);
        tokio::task::spawn_blocking(move || write_blocking(&db, &table, rows)).await.map_err(join_err)?
    }

    async fn read(&self, view: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<OnlineRecord>>> {
        check_view(view)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let table = table_name(view);
        if keys.len() <= INLINE_READ_MAX_KEYS {
            return read_blocking(&self.db, &table, keys);
        }
        let db = self.db.clone();
        let keys = keys.to_vec();
        tokio::task::spawn_blocking(move || read_blocking(&db, &table, &keys)).await.map_err(join_err)?
    }

    async fn delete_view(&self, view: &str) -> Result<u64> {
        check_view(view)?;
        let db = self.db.clone();
        let table = table_name(view);
        tokio::task::spawn_blocking(move || delete_blocking(&db, &table)).await.map_err(join_err)?
    }

    async fn count(&self, view: &str) -> Result<u64> {
        check_view(view)?;
        count_blocking(&self.db, &table_name(view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::{FeatureValue, entity_key};

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        for created_ts in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
            let record = OnlineRecord::new(i64::MIN, created_ts, &[FeatureValue::Int64(3)]);
            let mut buf = Vec::new();
            encode_record(&record, &mut buf);
            assert_eq!(decode_record(&buf).expect("decode the record"), record);
        }
        assert!(decode_record(&[0; 16]).is_err());
        let mut bad_flag = vec![0u8; 17];
        bad_flag[8] = 2;
        assert!(decode_record(&bad_flag).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_creates_parent_directories_and_reopens() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("a").join("b").join("online.redb");
        let store = RedbOnlineStore::open(&path).expect("open");
        let key = entity_key(&[FeatureValue::Int64(1)]);
        store.write("v", vec![(key.clone(), OnlineRecord::new(1, None, &[]))]).await.expect("write");
        // The file is held by the open store.
        assert!(RedbOnlineStore::open(&path).is_err());
        drop(store);
        let store = RedbOnlineStore::open(&path).expect("open");
        assert_eq!(store.read("v", &[key]).await.expect("read")[0].as_ref().map(|r| r.event_ts), Some(1));
    }
}
