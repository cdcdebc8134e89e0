//! Value types of join keys and features, and how they map onto Arrow.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

/// The type of a join key or a feature. Names follow Feast's (`int64`, `float32`, `string`, …),
/// case-insensitively, with `unix_timestamp` as another name of `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bool,
    Bytes,
    /// Nanoseconds since the epoch, UTC.
    Timestamp,
}

impl ValueType {
    pub const ALL: [ValueType; 8] = [
        ValueType::Int32,
        ValueType::Int64,
        ValueType::Float32,
        ValueType::Float64,
        ValueType::String,
        ValueType::Bool,
        ValueType::Bytes,
        ValueType::Timestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Int32 => "int32",
            ValueType::Int64 => "int64",
            ValueType::Float32 => "float32",
            ValueType::Float64 => "float64",
            ValueType::String => "string",
            ValueType::Bool => "bool",
            ValueType::Bytes => "bytes",
            ValueType::Timestamp => "timestamp",
        }
    }

    /// The MLflow schema type name (`mlflow_colspec`) of values of this type.
    pub fn mlflow_type(self) -> &'static str {
        match self {
            ValueType::Int32 => "integer",
            ValueType::Int64 => "long",
            ValueType::Float32 => "float",
            ValueType::Float64 => "double",
            ValueType::String => "string",
            ValueType::Bool => "boolean",
            ValueType::Bytes => "binary",
            ValueType::Timestamp => "datetime",
        }
    }

    pub fn parse(s: &str) -> Option<ValueType> {
        let lower = s.trim().to_ascii_lowercase();
        let lower = match lower.as_str() {
            "unix_timestamp" | "unixtimestamp" => "timestamp",
            "boolean" => "bool",
            // Not "float": 32 bits to Feast and MLflow, 64 to Python users; refused as ambiguous.
            "double" => "float64",
            "str" | "utf8" => "string",
            "binary" => "bytes",
            other => other,
        };
        ValueType::ALL.into_iter().find(|t| t.as_str() == lower)
    }

    /// The Arrow type values of this type have in retrieval outputs and online rows.
    pub fn arrow(self) -> DataType {
        match self {
            ValueType::Int32 => DataType::Int32,
            ValueType::Int64 => DataType::Int64,
            ValueType::Float32 => DataType::Float32,
            ValueType::Float64 => DataType::Float64,
            ValueType::String => DataType::Utf8,
            ValueType::Bool => DataType::Boolean,
            ValueType::Bytes => DataType::Binary,
            ValueType::Timestamp => timestamp_type(),
        }
    }

    /// Whether a source column of Arrow type `found` can be read as this type without losing
    /// information (widening integers and floats, any timestamp unit or zone, any string or
    /// binary layout).
    pub fn accepts(self, found: &DataType) -> bool {
        use DataType as D;
        let direct = match self {
            ValueType::Int32 => matches!(found, D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16),
            ValueType::Int64 => matches!(found, D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32),
            ValueType::Float32 => matches!(found, D::Float16 | D::Float32),
            ValueType::Float64 => matches!(found, D::Float16 | D::Float32 | D::Float64),
            ValueType::String => matches!(found, D::Utf8 | D::LargeUtf8 | D::Utf8View),
            ValueType::Bool => matches!(found, D::Boolean),
            ValueType::Bytes => matches!(found, D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_)),
            ValueType::Timestamp => is_time_type(found),
        };
        direct || matches!(found, D::Dictionary(_, value) if self.accepts(value))
    }
}

/// The one timestamp type the engine computes in: nanoseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC")))
}

/// Types an event-time column may have: timestamps of any unit and zone (zone-less ones are
/// read as UTC) and dates.
pub fn is_time_type(found: &DataType) -> bool {
    matches!(found, DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64)
        || matches!(found, DataType::Dictionary(_, value) if is_time_type(value))
}

impl Serialize for ValueType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ValueType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ValueType, D::Error> {
        let s = String::deserialize(deserializer)?;
        ValueType::parse(&s).ok_or_else(|| {
            if s.trim().eq_ignore_ascii_case("float") {
                return serde::de::Error::custom(format!("type '{s}' is ambiguous (32 or 64 bits?): use float32 or float64"));
            }
            let known: Vec<&str> = ValueType::ALL.iter().map(|t| t.as_str()).collect();
            serde::de::Error::custom(format!("unknown type '{s}' (known: {})", known.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for t in ValueType::ALL {
            assert_eq!(ValueType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ValueType::parse("Int64"), Some(ValueType::Int64));
        assert_eq!(ValueType::parse("UnixTimestamp"), Some(ValueType::Timestamp));
        assert_eq!(ValueType::parse("decimal"), None);
        assert_eq!(ValueType::parse("Float"), None, "ambiguous: 32 or 64 bits");
        assert_eq!(ValueType::parse("Float64"), Some(ValueType::Float64));
        let err = serde_json::from_str::<ValueType>("\"float\"").expect_err("ambiguous");
        assert!(err.to_string().contains("use float32 or float64"), "{err}");
    }

    #[test]
    fn widening_is_accepted_and_narrowing_is_not() {
        assert!(ValueType::Int64.accepts(&DataType::Int32));
        assert!(!ValueType::Int32.accepts(&DataType::Int64));
        assert!(ValueType::Float64.accepts(&DataType::Float32));
        assert!(!ValueType::Float32.accepts(&DataType::Float64));
        assert!(!ValueType::Int64.accepts(&DataType::Float64));
        assert!(ValueType::String.accepts(&DataType::Utf8View));
        assert!(ValueType::Timestamp.accepts(&DataType::Timestamp(TimeUnit::Microsecond, None)));
        assert!(ValueType::String.accepts(&DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))));
    }
}
