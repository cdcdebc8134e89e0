//! The online store: the port (`OnlineStore`) that keeps the newest feature row of every entity
//! of each feature view for low-latency reads, the codec of its keys and rows, and two adapters:
//! `redb_store` (embedded, the default) and `redis_store`, both proven by `conformance`.
//!
//! An entity key is `entity_key` of the join-key values in the view's join-key order; a row is
//! `encode_row` of the feature values in the view's feature order. The store never interprets
//! either: it compares `(event_ts, created_ts)` stamps (Feast's "newer" order, §3.3) and moves bytes.

pub mod conformance;
pub mod redb_store;
pub mod redis_store;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::types::ValueType;

/// One feature or join-key value as the online store holds it.
///
/// Floats are kept bit for bit (NaN payloads and `-0.0` included); `PartialEq` is the float
/// comparison, so use `encode_row` equality to compare bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    Null,
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bool(bool),
    Bytes(Vec<u8>),
    /// Nanoseconds since the epoch, UTC.
    Timestamp(i64),
}

impl std::fmt::Display for FeatureValue {
    /// The value as a user wrote it, with its kind: `"1001" (a string)`, `1.5 (float64)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeatureValue::Null => f.write_str("null"),
            FeatureValue::Int32(v) => write!(f, "{v} (int32)"),
            FeatureValue::Int64(v) => write!(f, "{v} (int64)"),
            FeatureValue::Float32(v) => write!(f, "{v} (float32)"),
            FeatureValue::Float64(v) => write!(f, "{v} (float64)"),
            FeatureValue::String(v) => write!(f, "\"{v}\" (a string)"),
            FeatureValue::Bool(v) => write!(f, "{v} (bool)"),
            FeatureValue::Bytes(v) => write!(f, "{} bytes", v.len()),
            FeatureValue::Timestamp(v) => write!(f, "{v} ns (a timestamp)"),
        }
    }
}

impl FeatureValue {
    /// The type of the value; `None` for `Null`, which any type may hold.
    pub fn value_type(&self) -> Option<ValueType> {
        Some(match self {
            FeatureValue::Null => return None,
            FeatureValue::Int32(_) => ValueType::Int32,
            FeatureValue::Int64(_) => ValueType::Int64,
            FeatureValue::Float32(_) => ValueType::Float32,
            FeatureValue::Float64(_) => ValueType::Float64,
            FeatureValue::String(_) => ValueType::String,
            FeatureValue::Bool(_) => ValueType::Bool,
            FeatureValue::Bytes(_) => ValueType::Bytes,
            FeatureValue::Timestamp(_) => ValueType::Timestamp,
        })
    }
}

/// The value in `row` of `array`, an array of `value_type`'s Arrow type (as the engine casts them).
pub fn value_at(array: &dyn datafusion::arrow::array::Array, row: usize, value_type: ValueType) -> Result<FeatureValue> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
    if array.is_null(row) {
        return Ok(FeatureValue::Null);
    }
    let mismatch = || Error::invalid(format!("a column of type {} was expected, found {}", value_type.as_str(), array.data_type()));
    Ok(match value_type {
        ValueType::Int32 => FeatureValue::Int32(array.as_primitive_opt::<Int32Type>().ok_or_else(mismatch)?.value(row)),
        ValueType::Int64 => FeatureValue::Int64(array.as_primitive_opt::<Int64Type>().ok_or_else(mismatch)?.value(row)),
        ValueType::Float32 => FeatureValue::Float32(array.as_primitive_opt::<Float32Type>().ok_or_else(mismatch)?.value(row)),
        ValueType::Float64 => FeatureValue::Float64(array.as_primitive_opt::<Float64Type>().ok_or_else(mismatch)?.value(row)),
        ValueType::String => FeatureValue::String(array.as_string_opt::<i32>().ok_or_else(mismatch)?.value(row).to_owned()),
        ValueType::Bool => FeatureValue::Bool(array.as_boolean_opt().ok_or_else(mismatch)?.value(row)),
        ValueType::Bytes => FeatureValue::Bytes(array.as_binary_opt::<i32>().ok_or_else(mismatch)?.value(row).to_vec()),
        ValueType::Timestamp => {
            FeatureValue::Timestamp(array.as_primitive_opt::<TimestampNanosecondType>().ok_or_else(mismatch)?.value(row))
        }
    })
}

/// An Arrow array of `value_type`'s Arrow type from values; a value of another type is an error
/// naming `column`.
pub fn array_of(values: &[FeatureValue], value_type: ValueType, column: &str) -> Result<datafusion::arrow::array::ArrayRef> {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray, TimestampNanosecondArray,
    };
    let bad = |v: &FeatureValue| Error::invalid(format!("column '{column}' is {}, and {v} is not one", value_type.as_str()));
    macro_rules! collect {
        ($arr:ty, $pat:pat => $out:expr) => {{
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    FeatureValue::Null => None,
                    $pat => Some($out),
                    other => return Err(bad(other)),
                });
            }
            Arc::new(<$arr>::from(out)) as datafusion::arrow::array::ArrayRef
        }};
    }
    Ok(match value_type {
        ValueType::Int32 => collect!(Int32Array, FeatureValue::Int64(i) => i32::try_from(*i).map_err(|_| bad(&FeatureValue::Int64(*i)))?),
        ValueType::Int64 => collect!(Int64Array, FeatureValue::Int64(i) => *i),
        ValueType::Float32 => collect!(Float32Array, FeatureValue::Float64(f) => *f as f32),
        ValueType::Float64 => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    FeatureValue::Null => None,
                    FeatureValue::Float64(f) => Some(*f),
                    FeatureValue::Int64(i) => Some(*i as f64),
                    other => return Err(bad(other)),
                });
            }
            Arc::new(Float64Array::from(out))
        }
        ValueType::String => collect!(StringArray, FeatureValue::String(s) => s.clone()),
        ValueType::Bool => collect!(BooleanArray, FeatureValue::Bool(b) => *b),
        ValueType::Bytes => {
            let owned: Vec<Option<Vec<u8>>> = values
                .iter()
                .map(|v| match v {
                    FeatureValue::Null => Ok(None),
                    FeatureValue::Bytes(b) => Ok(Some(b.clone())),
                    other => Err(bad(other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(BinaryArray::from(owned.iter().map(|b| b.as_deref()).collect::<Vec<_>>()))
        }
        ValueType::Timestamp => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    FeatureValue::Null => None,
                    FeatureValue::Timestamp(t) | FeatureValue::Int64(t) => Some(*t),
                    FeatureValue::String(s) => Some(parse_time(s).ok_or_else(|| bad(v))?),
                    other => return Err(bad(other)),
                });
            }
            Arc::new(TimestampNanosecondArray::from(out).with_timezone("UTC"))
        }
    })
}

/// An RFC 3339 time (or a zone-less one, read as UTC) in nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    let array = StringArray::from(vec![s]);
    let strict = CastOptions { safe: false, ..Default::default() };
    let cast = cast_with_options(&array, &crate::types::timestamp_type(), &strict).ok()?;
    let ts = cast.as_primitive::<TimestampNanosecondType>();
    ts.is_valid(0).then(|| ts.value(0))
}

/// The stored state of one entity of one view: when the row happened, and its encoded values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineRecord {
    /// The row's event timestamp, nanoseconds since the epoch, UTC.
    pub event_ts: i64,
    /// The row's created timestamp (the tie-breaker of equal event timestamps), if the source has one.
    pub created_ts: Option<i64>,
    /// `encode_row` of the view's feature values.
    pub values: Vec<u8>,
}

impl OnlineRecord {
    pub fn new(event_ts: i64, created_ts: Option<i64>, values: &[FeatureValue]) -> OnlineRecord {
        OnlineRecord { event_ts, created_ts, values: encode_row(values) }
    }

    /// The order of "newer": event timestamp first, then created timestamp, where none is the lowest.
    pub fn stamp(&self) -> (i64, Option<i64>) {
        (self.event_ts, self.created_ts)
    }

    pub fn decode_values(&self) -> Result<Vec<FeatureValue>> {
        decode_row(&self.values)
    }
}

/// What one `write` did: rows that replaced (or created) a stored record, and rows that were
/// dropped because the stored record, or another row of the same batch, was newer.
/// `written + skipped_older` is the number of rows given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    pub written: usize,
    pub skipped_older: usize,
}

/// The online store port: per feature view, a map from entity key to the newest record.
///
/// Implementations are cheap to share (`Arc<dyn OnlineStore>`) and safe to call concurrently.
/// Every adapter runs `online_conformance!`.
#[async_trait]
pub trait OnlineStore: Send + Sync + 'static {
    /// The adapter's name for logs and stats (`redb`, `redis`).
    fn name(&self) -> &'static str;

    /// Stores each row unless the stored record of its key is newer: a row replaces the stored
    /// record when its `(event_ts, created_ts)` is greater than or equal to the stored one, so an
    /// older event never overwrites a newer one and writing the same record again is idempotent.
    /// Within a batch the newest row of a key wins (the later row among equal stamps).
    /// Atomicity is the adapter's: one transaction in redb, per key (and per script call) in Redis.
    async fn write(&self, view: &str, rows: Vec<(Vec<u8>, OnlineRecord)>) -> Result<WriteOutcome>;

    /// The stored record of each key, in the order of `keys`; `None` where there is none.
    async fn read(&self, view: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<OnlineRecord>>>;

    /// Removes every record of the view and answers how many there were.
    async fn delete_view(&self, view: &str) -> Result<u64>;

    /// How many records the view has (for tests and stats; may scan).
    async fn count(&self, view: &str) -> Result<u64>;
}

/// Refuses a view name no adapter can address (the feature registry validates names further).
pub(crate) fn check_view(view: &str) -> Result<()> {
    if view.is_empty() || view.len() > 1024 || view.chars().any(char::is_control) {
        return Err(Error::invalid(format!("'{}' is not a valid feature view name for the online store", view.escape_debug())));
    }
    Ok(())
}

/// Keeps, per key, the newest row of a batch (the later one among equal stamps) and counts the
/// others. The result is sorted by key, which is also the cheapest order to insert into a B-tree.
pub(crate) fn newest_per_key(mut rows: Vec<(Vec<u8>, OnlineRecord)>) -> (Vec<(Vec<u8>, OnlineRecord)>, usize) {
    let given = rows.len();
    // A stable sort keeps the batch order among rows of the same key.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Vec<u8>, OnlineRecord)> = Vec::with_capacity(given);
    for row in rows {
        match out.last_mut() {
            Some(last) if last.0 == row.0 => {
                if row.1.stamp() >= last.1.stamp() {
                    *last = row;
                }
            }
            _ => out.push(row),
        }
    }
    let superseded = given - out.len();
    (out, superseded)
}

pub(crate) fn corrupt(message: impl std::fmt::Display) -> Error {
    Error::Online { message: format!("corrupt online data: {message}") }
}

// ----- The value codec -----

/// The first byte of every `encode_row` output.
pub const ROW_FORMAT_VERSION: u8 = 1;

const TAG_NULL: u8 = 0;
const TAG_INT32: u8 = 1;
const TAG_INT64: u8 = 2;
const TAG_FLOAT32: u8 = 3;
const TAG_FLOAT64: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_BOOL: u8 = 6;
const TAG_BYTES: u8 = 7;
const TAG_TIMESTAMP: u8 = 8;

/// Encodes a row of values: the format version (1), the number of values (LEB128 varint), then
/// per value a type tag byte and its payload: fixed-width little-endian numbers (floats as their
/// IEEE-754 bits), one byte 0/1 for bools, and a varint length before the bytes of strings and bytes.
pub fn encode_row(values: &[FeatureValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 10 + values.iter().map(encoded_len).sum::<usize>());
    out.push(ROW_FORMAT_VERSION);
    put_varint(&mut out, values.len() as u64);
    for value in values {
        put_value(&mut out, value);
    }
    out
}

/// Decodes `encode_row`'s output. Anything else is an error, never a panic: an unknown version or
/// tag, a truncated value, a length beyond the input, invalid UTF-8, a bool other than 0 or 1, an
/// overlong varint, or bytes left over.
pub fn decode_row(bytes: &[u8]) -> Result<Vec<FeatureValue>> {
    let mut reader = Reader { rest: bytes };
    let version = reader.byte()?;
    if version != ROW_FORMAT_VERSION {
        return Err(corrupt(format!("unknown row format version {version}")));
    }
    let n_values = reader.varint()?;
    // Every value takes at least its tag byte, so a larger count is corrupt (and never allocated).
    if n_values > reader.rest.len() as u64 {
        return Err(corrupt(format!("a row of {n_values} values in {} bytes", reader.rest.len())));
    }
    let mut values = Vec::with_capacity(n_values as usize);
    for _ in 0..n_values {
        values.push(reader.value()?);
    }
    if !reader.rest.is_empty() {
        return Err(corrupt(format!("{} bytes after the last value of a row", reader.rest.len())));
    }
    Ok(values)
}

/// The key of one entity: its join-key values, in the view's join-key order, encoded as in
/// `encode_row` (tag and payload per value) without the version and count. The code of each value
/// is prefix-free, so two different tuples (values, types or arity) never encode equal. Floats
/// are compared by bits, so `0.0` and `-0.0` are different keys.
pub fn entity_key(values: &[FeatureValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(encoded_len).sum::<usize>());
    for value in values {
        put_value(&mut out, value);
    }
    out
}

/// The join-key values of an entity key (for diagnostics and tests).
pub fn decode_entity_key(bytes: &[u8]) -> Result<Vec<FeatureValue>> {
    let mut reader = Reader { rest: bytes };
    let mut values = Vec::new();
    while !reader.rest.is_empty() {
        values.push(reader.value()?);
    }
    Ok(values)
}

fn encoded_len(value: &FeatureValue) -> usize {
    1 + match value {
        FeatureValue::Null => 0,
        FeatureValue::Bool(_) => 1,
        FeatureValue::Int32(_) | FeatureValue::Float32(_) => 4,
        FeatureValue::Int64(_) | FeatureValue::Float64(_) | FeatureValue::Timestamp(_) => 8,
        FeatureValue::String(s) => varint_len(s.len() as u64) + s.len(),
        FeatureValue::Bytes(b) => varint_len(b.len() as u64) + b.len(),
    }
}

fn put_value(out: &mut Vec<u8>, value: &FeatureValue) {
    match value {
        FeatureValue::Null => out.push(TAG_NULL),
        FeatureValue::Int32(v) => {
            out.push(TAG_INT32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        FeatureValue::Int64(v) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&v.to_le_bytes());
        }
        FeatureValue::Float32(v) => {
            out.push(TAG_FLOAT32);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        FeatureValue::Float64(v) => {
            out.push(TAG_FLOAT64);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        FeatureValue::String(s) => {
            out.push(TAG_STRING);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        FeatureValue::Bool(v) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*v));
        }
        FeatureValue::Bytes(b) => {
            out.push(TAG_BYTES);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        FeatureValue::Timestamp(v) => {
            out.push(TAG_TIMESTAMP);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: u64) -> usize {
    let bits = 64 - n.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(corrupt(format!("a value needs {n} bytes and {} are left", self.rest.len())));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// LEB128, canonical only: at most 10 bytes, no overflow, no trailing zero groups.
    fn varint(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for idx in 0..10 {
            let b = self.byte()?;
            let group = u64::from(b & 0x7f);
            if idx == 9 && group > 1 {
                return Err(corrupt("a varint overflows 64 bits"));
            }
            n |= group << (7 * idx);
            if b & 0x80 == 0 {
                if idx > 0 && b == 0 {
                    return Err(corrupt("an overlong varint"));
                }
                return Ok(n);
            }
        }
        Err(corrupt("a varint longer than 10 bytes"))
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| corrupt(format!("a length of {len} bytes")))?;
        self.take(len)
    }

    fn value(&mut self) -> Result<FeatureValue> {
        let tag = self.byte()?;
        Ok(match tag {
            TAG_NULL => FeatureValue::Null,
            TAG_INT32 => FeatureValue::Int32(i32::from_le_bytes(self.array()?)),
            TAG_INT64 => FeatureValue::Int64(i64::from_le_bytes(self.array()?)),
            TAG_FLOAT32 => FeatureValue::Float32(f32::from_bits(u32::from_le_bytes(self.array()?))),
            TAG_FLOAT64 => FeatureValue::Float64(f64::from_bits(u64::from_le_bytes(self.array()?))),
            TAG_STRING => {
                let bytes = self.len_prefixed()?;
                let s = std::str::from_utf8(bytes).map_err(|e| corrupt(format!("a string value is not UTF-8: {e}")))?;
                FeatureValue::String(s.to_owned())
            }
            TAG_BOOL => match self.byte()? {
                0 => FeatureValue::Bool(false),
                1 => FeatureValue::Bool(true),
                other => return Err(corrupt(format!("a bool value of {other}"))),
            },
            TAG_BYTES => FeatureValue::Bytes(self.len_prefixed()?.to_vec()),
            TAG_TIMESTAMP => FeatureValue::Timestamp(i64::from_le_bytes(self.array()?)),
            other => return Err(corrupt(format!("unknown value tag {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn every_variant() -> Vec<FeatureValue> {
        vec![
            FeatureValue::Null,
            FeatureValue::Int32(i32::MIN),
            FeatureValue::Int32(i32::MAX),
            FeatureValue::Int64(i64::MIN),
            FeatureValue::Int64(i64::MAX),
            FeatureValue::Int64(0),
            FeatureValue::Float32(f32::NAN),
            FeatureValue::Float32(f32::from_bits(0x7fc0_1234)),
            FeatureValue::Float32(-0.0),
            FeatureValue::Float32(f32::NEG_INFINITY),
            FeatureValue::Float64(f64::NAN),
            FeatureValue::Float64(f64::from_bits(0xfff8_0000_dead_beef)),
            FeatureValue::Float64(f64::MIN_POSITIVE / 4.0),
            FeatureValue::Float64(-0.0),
            FeatureValue::String(String::new()),
            FeatureValue::String("zürich ☃ \0 tab\t".to_owned()),
            FeatureValue::Bool(true),
            FeatureValue::Bool(false),
            FeatureValue::Bytes(Vec::new()),
            FeatureValue::Bytes((0..300_000u32).map(|i| (i % 251) as u8).collect()),
            FeatureValue::Timestamp(i64::MIN),
            FeatureValue::Timestamp(1_700_000_000_123_456_789),
        ]
    }

    /// Bit-for-bit equality (NaN equals itself, `0.0` differs from `-0.0`).
    fn same(a: &[FeatureValue], b: &[FeatureValue]) -> bool {
        entity_key(a) == entity_key(b) && a.len() == b.len()
    }

    #[test]
    fn rows_round_trip() {
        let values = every_variant();
        let bytes = encode_row(&values);
        assert_eq!(bytes[0], ROW_FORMAT_VERSION);
        let back = decode_row(&bytes).expect("decode the row");
        assert!(same(&values, &back), "{back:?}");
        assert!(matches!(back[6], FeatureValue::Float32(f) if f.is_nan()));
        assert_eq!(encode_row(&back), bytes);
        // Every value alone, and the empty row.
        for value in &values {
            let one = std::slice::from_ref(value);
            assert!(same(one, &decode_row(&encode_row(one)).expect("decode one value")));
        }
        assert!(decode_row(&encode_row(&[])).expect("decode the empty row").is_empty());
        assert_eq!(encode_row(&[]), vec![1, 0]);
    }

    #[test]
    fn entity_keys_round_trip_and_differ() {
        let values = every_variant();
        assert!(same(&values, &decode_entity_key(&entity_key(&values)).expect("decode the key")));
        let s = |v: &str| FeatureValue::String(v.to_owned());
        let b = |v: &[u8]| FeatureValue::Bytes(v.to_vec());
        let distinct: Vec<Vec<FeatureValue>> = vec![
            vec![],
            vec![FeatureValue::Null],
            vec![FeatureValue::Null, FeatureValue::Null],
            vec![s("")],
            vec![s(""), s("")],
            vec![s("a"), s("bc")],
            vec![s("ab"), s("c")],
            vec![s("abc")],
            vec![b(b"abc")],
            vec![FeatureValue::Int32(1)],
            vec![FeatureValue::Int64(1)],
            vec![FeatureValue::Timestamp(1)],
            vec![FeatureValue::Int32(1), FeatureValue::Int32(2)],
            vec![FeatureValue::Int64(1 | (2 << 32))],
            vec![FeatureValue::Float64(0.0)],
            vec![FeatureValue::Float64(-0.0)],
            vec![FeatureValue::Bool(true)],
            vec![FeatureValue::Bool(false)],
        ];
        let mut keys: Vec<Vec<u8>> = distinct.iter().map(|v| entity_key(v)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), distinct.len());
        // Deterministic.
        assert_eq!(entity_key(&[s("driver"), FeatureValue::Int64(7)]), entity_key(&[s("driver"), FeatureValue::Int64(7)]));
    }

    #[test]
    fn random_values_round_trip() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let n = rng.random_range(0..12);
            let values: Vec<FeatureValue> = (0..n)
                .map(|_| match rng.random_range(0..9) {
                    0 => FeatureValue::Null,
                    1 => FeatureValue::Int32(rng.random()),
                    2 => FeatureValue::Int64(rng.random()),
                    3 => FeatureValue::Float32(f32::from_bits(rng.random())),
                    4 => FeatureValue::Float64(f64::from_bits(rng.random())),
                    5 => FeatureValue::String((0..rng.random_range(0..200)).map(|_| rng.random::<char>()).collect()),
                    6 => FeatureValue::Bool(rng.random()),
                    7 => FeatureValue::Bytes((0..rng.random_range(0..300)).map(|_| rng.random()).collect()),
                    _ => FeatureValue::Timestamp(rng.random()),
                })
                .collect();
            let row = encode_row(&values);
            assert!(same(&values, &decode_row(&row).expect("decode the row")));
            let key = entity_key(&values);
            assert!(same(&values, &decode_entity_key(&key).expect("decode the key")));
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut rng = StdRng::seed_from_u64(42);
        // Random bytes, with and without a valid version byte.
        for idx in 0..50_000 {
            let len = rng.random_range(0..48);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if idx % 2 == 0 && !bytes.is_empty() {
                bytes[0] = ROW_FORMAT_VERSION;
            }
            let _ = decode_row(&bytes);
            let _ = decode_entity_key(&bytes);
        }
        // Valid rows, truncated at every length and with random bytes flipped.
        let valid = encode_row(&every_variant()[..20]);
        let small = encode_row(&[FeatureValue::String("abc".to_owned()), FeatureValue::Int64(5), FeatureValue::Bool(true)]);
        for cut in 0..small.len() {
            assert!(decode_row(&small[..cut]).is_err(), "truncated at {cut}");
        }
        for cut in (0..valid.len()).step_by(997) {
            assert!(decode_row(&valid[..cut]).is_err(), "truncated at {cut}");
        }
        for _ in 0..20_000 {
            let mut bytes = small.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            let _ = decode_row(&bytes);
            let _ = decode_entity_key(&bytes);
        }
    }

    #[test]
    fn malformed_inputs_are_named() {
        let err = |bytes: &[u8]| decode_row(bytes).expect_err("malformed input").to_string();
        assert!(err(&[]).contains("needs 1 bytes"));
        assert!(err(&[2, 0]).contains("unknown row format version 2"));
        assert!(err(&[1, 1, 9]).contains("unknown value tag 9"));
        assert!(err(&[1, 1, TAG_BOOL, 2]).contains("a bool value of 2"));
        assert!(err(&[1, 1, TAG_STRING, 2, 0xff, 0xfe]).contains("not UTF-8"));
        assert!(err(&[1, 1, TAG_BYTES, 5, 1]).contains("needs 5 bytes"));
        assert!(err(&[1, 0, 0]).contains("after the last value"));
        assert!(err(&[1, 0x80, 0]).contains("overlong"));
        assert!(err(&[1, 200, 1, 0]).contains("a row of 200 values"));
        // A length of u64::MAX (10-byte varint) and an overflowing one.
        let mut huge = vec![1, 1, TAG_BYTES];
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(0x01);
        assert!(err(&huge).contains("needs"));
        let mut overflow = vec![1, 1, TAG_BYTES];
        overflow.extend_from_slice(&[0xff; 9]);
        overflow.push(0x02);
        assert!(err(&overflow).contains("overflows"));
        let mut endless = vec![1, 1, TAG_BYTES];
        endless.extend_from_slice(&[0x80; 11]);
        assert!(err(&endless).contains("longer than 10 bytes"));
    }

    #[test]
    fn varints() {
        for n in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
            let mut reader = Reader { rest: &out };
            assert_eq!(reader.varint().expect("decode the varint"), n);
            assert!(reader.rest.is_empty());
        }
    }

    #[test]
    fn batches_keep_the_newest_row_per_key() {
        let rec = |ts: i64, created: Option<i64>, tag: &str| OnlineRecord::new(ts, created, &[FeatureValue::String(tag.to_owned())]);
        let rows = vec![
            (b"b".to_vec(), rec(5, None, "b5")),
            (b"a".to_vec(), rec(1, Some(3), "a1c3")),
            (b"b".to_vec(), rec(9, None, "b9")),
            (b"a".to_vec(), rec(1, None, "a1")),
            (b"b".to_vec(), rec(9, None, "b9-later")),
            (b"c".to_vec(), rec(0, None, "c")),
        ];
        let (rows, superseded) = newest_per_key(rows);
        assert_eq!(superseded, 3);
        let got: Vec<(Vec<u8>, Vec<u8>)> = rows.into_iter().map(|(k, r)| (k, r.values)).collect();
        let want = vec![
            (b"a".to_vec(), encode_row(&[FeatureValue::String("a1c3".to_owned())])),
            (b"b".to_vec(), encode_row(&[FeatureValue::String("b9-later".to_owned())])),
            (b"c".to_vec(), encode_row(&[FeatureValue::String("c".to_owned())])),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn view_names() {
        assert!(check_view("driver_stats").is_ok());
        assert!(check_view("a:b").is_ok());
        assert!(check_view("").is_err());
        assert!(check_view("a\nb").is_err());
    }
}
