//! A typed fast path for `runs/log-batch`, the ingest hot path.
//!
//! The body is deserialized straight into structs (no intermediate JSON tree). Anything the
//! fast path cannot take as-is (wrong types, missing fields, a double-encoded body) returns
//! `None`, and the handler falls back to the generic `Fields` parser, which produces MLflow's
//! exact error messages.

use plinth_core::tracking::{KeyValue, Metric};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A double as MLflow's JSON carries it: a number or `"NaN"`, `"Infinity"`, `"-Infinity"`.
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Double, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Double;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a double")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Double, E> {
                Ok(Double(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Double, E> {
                match v {
                    "NaN" => Ok(Double(f64::NAN)),
                    "Infinity" => Ok(Double(f64::INFINITY)),
                    "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                    other => other.parse().map(Double).map_err(|_| E::custom("not a double")),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An int64 as a JSON number or a numeric string.
struct Long(i64);

impl<'de> Deserialize<'de> for Long {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Long, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Long;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Long, E> {
                Ok(Long(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Long, E> {
                i64::try_from(v).map(Long).map_err(|_| E::custom("out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Long, E> {
                v.parse().map(Long).map_err(|_| E::custom("not an integer"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct MetricBody {
    key: Option<String>,
    value: Option<Double>,
    timestamp: Option<Long>,
    step: Option<Long>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
    model_id: Option<String>,
}

#[derive(Deserialize)]
struct KeyValueBody {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricBody>,
    #[serde(default)]
    params: Vec<KeyValueBody>,
    #[serde(default)]
    tags: Vec<KeyValueBody>,
}

/// A parsed batch: run id, metrics, params, tags.
pub(crate) struct Batch {
    pub(crate) run_id: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) params: Vec<KeyValue>,
    pub(crate) tags: Vec<KeyValue>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|it| !it.is_empty())
}

fn key_values(items: Vec<KeyValueBody>) -> Option<Vec<KeyValue>> {
    items.into_iter().map(|it| Some(KeyValue { key: non_empty(it.key)?, value: it.value.unwrap_or_default() })).collect()
}

/// Whether the body has the shape the client sends: a JSON object whose lists hold objects.
/// Derived deserializers would also take arrays in place of objects (`[["k", "v"]]`), which the
/// generic parser refuses; such bodies (and any `[` directly inside a `[`, even within a string,
/// which only costs the fast path) go to the generic parser.
fn is_plain_object(body: &[u8]) -> bool {
    let mut bytes = body.iter().copied().filter(|b| !b.is_ascii_whitespace());
    if bytes.next() != Some(b'{') {
        return false;
    }
    let mut previous = b'{';
    for b in bytes {
        if previous == b'[' && b == b'[' {
            return false;
        }
        previous = b;
    }
    true
}

/// The batch, or `None` when the generic parser must handle (and explain) this body.
pub(crate) fn parse(body: &[u8]) -> Option<Batch> {
    if !is_plain_object(body) {
        return None;
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let run_id = non_empty(body.run_id).or_else(|| non_empty(body.run_uuid))?;
    let metrics = body
        .metrics
        .into_iter()
        .map(|m| {
            Some(Metric {
                key: non_empty(m.key)?,
                value: m.value?.0,
                timestamp: m.timestamp?.0,
                step: m.step.map_or(0, |s| s.0),
                dataset_name: non_empty(m.dataset_name),
                dataset_digest: non_empty(m.dataset_digest),
                model_id: non_empty(m.model_id),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Batch { run_id, metrics, params: key_values(body.params)?, tags: key_values(body.tags)? })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_path_accepts_what_the_client_sends_and_defers_the_rest() {
        let ok = br#"{"run_id": "abc", "metrics": [{"key": "m", "value": "NaN", "timestamp": "5", "step": 2}, {"key": "n", "value": 1, "timestamp": 1}], "params": [{"key": "p", "value": ""}], "tags": []}"#;
        let batch = super::parse(ok).expect("fast path");
        assert_eq!(batch.run_id, "abc");
        assert!(batch.metrics[0].value.is_nan());
        assert_eq!((batch.metrics[0].timestamp, batch.metrics[1].step), (5, 0));
        for deferred in [
            &br#"{"run_id": "abc", "metrics": [{"key": "m", "value": true, "timestamp": 1}]}"#[..],
            br#"{"run_id": "abc", "metrics": [{"key": "m", "value": 1}]}"#,
            br#"{"metrics": []}"#,
            br#""{\"run_id\": \"abc\"}""#,
            br#"{"run_id": "abc", "params": [{"value": "x"}]}"#,
            br#"{"run_id": "abc", "params": [["k", "v"]]}"#,
            br#"["abc", null]"#,
            br#"{"run_id": "abc", "metrics": [ ["m", 1, 5, null, null, null, null]]}"#,
        ] {
            assert!(super::parse(deferred).is_none(), "{}", String::from_utf8_lossy(deferred));
        }
    }
}
