//! The Redis online store: one string per (view, entity key), written by compare-and-set scripts.
//!
//! Key: `<namespace>:fv:<view>:<entity key as lowercase hex>`. Value: a 41-byte ASCII stamp, then
//! the `encode_row` bytes. The stamp is `<event><flag><created>`, where `event` and `created` are
//! the 20-digit zero-padded decimal of `ts as u64 ^ 1 << 63` (so that string order is time order)
//! and `flag` is `0` when there is no created timestamp (its digits are then zeros) or `1`. The
//! write script compares stamps as strings: Lua numbers are doubles and would round nanoseconds.
//!
//! A `write` runs the script once per chunk of `WRITE_CHUNK_ROWS` rows (atomic per chunk, and
//! per key always), so a huge batch never blocks the server for long; a `read` is one round trip
//! (MGETs pipelined by `READ_CHUNK_KEYS`). `delete_view` and `count` SCAN the view's key prefix.
//! Failures to reach the server are `Error::OnlineUnavailable`; a write that failed that way may
//! still have been applied, and is safe to repeat. A single server (or a proxy) is assumed: the
//! keys of one script call may hash to different cluster slots.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

use crate::error::{Error, Result};
use crate::online::{OnlineRecord, OnlineStore, WriteOutcome, check_view, corrupt, newest_per_key};

const STAMP_LEN: usize = 41;
const WRITE_CHUNK_ROWS: usize = 1_000;
const READ_CHUNK_KEYS: usize = 1_000;
const SCAN_COUNT: usize = 1_000;

/// KEYS: the record keys; ARGV: their values (stamp + row), in the same order.
/// Returns `{written, skipped_older}`. A value that is not a record of this store (another type,
/// or a string without a stamp) is replaced.
const WRITE_SCRIPT: &str = r"
local written = 0
local skipped = 0
for i = 1, #KEYS do
  local new = ARGV[i]
  local old = redis.pcall('GETRANGE', KEYS[i], 0, 40)
  if type(old) ~= 'string' or #old ~= 41 or old <= string.sub(new, 1, 41) then
    redis.call('SET', KEYS[i], new)
    written = written + 1
  else
    skipped = skipped + 1
  end
end
return {written, skipped}
";

/// The Redis adapter of `OnlineStore`. Cloning is cheap (one multiplexed, auto-reconnecting
/// connection is shared).
#[derive(Clone)]
pub struct RedisOnlineStore {
    conn: ConnectionManager,
    namespace: Arc<str>,
    script: Arc<Script>,
}

impl fmt::Debug for RedisOnlineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOnlineStore").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl RedisOnlineStore {
    /// Connects to `url` (`redis://[user:password@]host:port/db`, or `rediss://` where the client
    /// was built with TLS). Every key of this store starts with `<namespace>:`, so stores with
    /// different namespaces share a server without seeing each other.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisOnlineStore> {
        if namespace.is_empty() || namespace.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::invalid(format!("'{}' is not a valid online store namespace", namespace.escape_debug())));
        }
        let client = redis::Client::open(url).map_err(|e| Error::Online { message: format!("invalid Redis URL: {e}") })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(redis_err)?;
        Ok(RedisOnlineStore { conn, namespace: Arc::from(namespace), script: Arc::new(Script::new(WRITE_SCRIPT)) })
    }

    /// The prefix of every key of a view: `<namespace>:fv:<view>:`.
    fn view_prefix(&self, view: &str) -> String {
        format!("{}:fv:{view}:", self.namespace)
    }

    /// Every key of the view (deduplicated: SCAN may answer a key twice).
    async fn view_keys(&self, view: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = self.view_prefix(view);
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut seen = HashSet::new();
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            seen.extend(keys.into_iter().filter(|k| is_view_key(k, prefix.as_bytes())));
            if next == 0 {
                return Ok(seen.into_iter().collect());
            }
            cursor = next;
        }
    }
}

/// Whether `key` is a record key of the view with this prefix, not one of a view whose name
/// extends it past a `:` (`v:x` under `v`): what follows the prefix must be a hex entity key.
fn is_view_key(key: &[u8], prefix: &[u8]) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| rest.len() % 2 == 0 && rest.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Escapes the characters SCAN's MATCH treats as glob syntax.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn record_key(prefix: &str, entity_key: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(prefix.len() + 2 * entity_key.len());
    out.extend_from_slice(prefix.as_bytes());
    for b in entity_key {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out
}

fn ordered(ts: i64) -> u64 {
    (ts as u64) ^ (1 << 63)
}

fn stamp(event_ts: i64, created_ts: Option<i64>) -> String {
    match created_ts {
        Some(created) => format!("{:020}1{:020}", ordered(event_ts), ordered(created)),
        None => format!("{:020}0{:020}", ordered(event_ts), 0),
    }
}

fn encode_value(record: &OnlineRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAMP_LEN + record.values.len());
    out.extend_from_slice(stamp(record.event_ts, record.created_ts).as_bytes());
    out.extend_from_slice(&record.values);
    out
}

fn decode_value(bytes: &[u8]) -> Result<OnlineRecord> {
    let bad = || corrupt(format!("a Redis value of {} bytes without a valid stamp", bytes.len()));
    let stamp = bytes.get(..STAMP_LEN).ok_or_else(bad)?;
    let number = |digits: &[u8]| -> Result<i64> {
        let text = std::str::from_utf8(digits).map_err(|_| bad())?;
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = text.parse().map_err(|_| bad())?;
        Ok((n ^ (1 << 63)) as i64)
    };
    let event_ts = number(&stamp[..20])?;
    let created_ts = match stamp[20] {
        b'0' => None,
        b'1' => Some(number(&stamp[21..])?),
        _ => return Err(bad()),
    };
    Ok(OnlineRecord { event_ts, created_ts, values: bytes[STAMP_LEN..].to_vec() })
}

/// Not reaching the server (refused, dropped, timed out, loading, read-only replica) is
/// `OnlineUnavailable`; anything else is `Online`.
fn redis_err(e: RedisError) -> Error {
    let unavailable = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if unavailable { Error::OnlineUnavailable { message: format!("redis: {e}") } } else { Error::Online { message: format!("redis: {e}") } }
}

#[async_trait]
impl OnlineStore for RedisOnlineStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn write(&self, view: &str, rows: Vec<(Vec<u8>, OnlineRecord)>) -> Result<WriteOutcome> {
        check_view(view)?;
        // Duplicates are settled here, so each key is set at most once per call.
        let (rows, superseded) = newest_per_key(rows);
        let mut outcome = WriteOutcome { written: 0, skipped_older: superseded };
        let prefix = self.view_prefix(view);
        let mut conn = self.conn.clone();
        for chunk in rows.chunks(WRITE_CHUNK_ROWS) {
            let mut invocation = self.script.prepare_invoke();
            for (key, record) in chunk {
                invocation.key(record_key(&prefix, key)).arg(encode_value(record));
            }
            let (written, skipped): (usize, usize) = invocation.invoke_async(&mut conn).await.map_err(redis_err)?;
            outcome.written += written;
            outcome.skipped_older += skipped;
        }
        Ok(outcome)
    }

    async fn read(&self, view: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<OnlineRecord>>> {
        check_view(view)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.view_prefix(view);
        let mut pipe = redis::pipe();
        for chunk in keys.chunks(READ_CHUNK_KEYS) {
            let names: Vec<Vec<u8>> = chunk.iter().map(|k| record_key(&prefix, k)).collect();
            pipe.cmd("MGET").arg(names);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let values: Vec<Option<Vec<u8>>> = answers.into_iter().flatten().collect();
        if values.len() != keys.len() {
            return Err(Error::Online { message: format!("redis answered {} values for {} keys", values.len(), keys.len()) });
        }
        values.into_iter().map(|v| v.map(|bytes| decode_value(&bytes)).transpose()).collect()
    }

    async fn delete_view(&self, view: &str) -> Result<u64> {
        check_view(view)?;
        let keys = self.view_keys(view).await?;
        let mut conn = self.conn.clone();
        let mut deleted = 0u64;
        for chunk in keys.chunks(SCAN_COUNT) {
            let n: u64 = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(redis_err)?;
            deleted += n;
        }
        Ok(deleted)
    }

    async fn count(&self, view: &str) -> Result<u64> {
        check_view(view)?;
        Ok(self.view_keys(view).await?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_order_as_timestamps() {
        let points = [
            (i64::MIN, None),
            (i64::MIN, Some(i64::MIN)),
            (i64::MIN, Some(i64::MAX)),
            (-1, None),
            (-1, Some(-5)),
            (-1, Some(0)),
            (0, None),
            (0, Some(-1)),
            (1, None),
            (1_700_000_000_000_000_000, Some(1_700_000_000_000_000_001)),
            (i64::MAX, None),
            (i64::MAX, Some(i64::MAX)),
        ];
        let stamps: Vec<String> = points.iter().map(|(e, c)| stamp(*e, *c)).collect();
        assert!(stamps.iter().all(|s| s.len() == STAMP_LEN && s.bytes().all(|b| b.is_ascii_digit())));
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:#?}");
        for (event_ts, created_ts) in points {
            let record = OnlineRecord { event_ts, created_ts, values: vec![1, 0] };
            assert_eq!(decode_value(&encode_value(&record)).expect("decode the value"), record);
        }
    }

    #[test]
    fn garbage_values_are_errors() {
        assert!(decode_value(b"").is_err());
        assert!(decode_value(&[b'9'; 41]).is_err()); // 99…9 overflows u64
        assert!(decode_value(format!("{:020}2{:020}", 0, 0).as_bytes()).is_err());
        assert!(decode_value(format!("{:020}0{:019}x", 0, 0).as_bytes()).is_ok()); // created digits unread when flag is 0
        assert!(decode_value(format!("+{:019}1{:020}", 0, 0).as_bytes()).is_err());
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(record_key("ns:fv:v:", &[0x00, 0xab, 0x7f]), b"ns:fv:v:00ab7f".to_vec());
        assert!(is_view_key(b"ns:fv:v:00ab", b"ns:fv:v:"));
        assert!(is_view_key(b"ns:fv:v:", b"ns:fv:v:"));
        assert!(!is_view_key(b"ns:fv:v:0:00ab", b"ns:fv:v:"));
        assert!(!is_view_key(b"ns:fv:v:abc", b"ns:fv:v:"));
        assert!(!is_view_key(b"ns:fv:w:00", b"ns:fv:v:"));
        assert_eq!(glob_escape("a*b?[c]\\d"), "a\\*b\\?\\[c\\]\\\\d");
    }
}
