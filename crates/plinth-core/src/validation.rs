//! MLflow's validation rules and limits, with messages the MLflow client's users recognize.
//!
//! Every limit is a named constant so the docs and the config can refer to it. Lengths count
//! Unicode scalar values, as MLflow's `len(str)` does.

use crate::ErrorCode;
use crate::HasErrorCode;

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_BATCH_LOG_REQUEST_BYTES: usize = 1_000_000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_KEY_LENGTH: usize = 250;
pub const MAX_EXPERIMENT_TAG_VALUE_LENGTH: usize = 20000;
pub const MAX_RESULTS_PER_PAGE: i64 = 50000;
pub const MAX_DATASET_NAME_LENGTH: usize = 500;
pub const MAX_DATASET_DIGEST_LENGTH: usize = 36;
pub const MAX_DATASET_SCHEMA_LENGTH: usize = 1_048_575;
pub const MAX_DATASET_SOURCE_LENGTH: usize = 65535;
pub const MAX_DATASET_PROFILE_LENGTH: usize = 16_777_215;
pub const MAX_INPUT_TAG_KEY_LENGTH: usize = 255;
pub const MAX_INPUT_TAG_VALUE_LENGTH: usize = 500;
pub const MAX_RUN_NAME_LENGTH: usize = MAX_TAG_VALUE_LENGTH;
pub const MAX_HISTORY_BULK_RUN_IDS: usize = 100;
pub const MAX_HISTORY_BULK_RESULTS: i64 = 2500;

/// A request field broke a rule; always `INVALID_PARAMETER_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidParameter {
    message: String,
}

impl InvalidParameter {
    pub fn new(message: impl Into<String>) -> InvalidParameter {
        InvalidParameter { message: message.into() }
    }

    /// MLflow's wording for a missing required field.
    pub fn missing(field: &str) -> InvalidParameter {
        InvalidParameter::new(format!("Missing value for required parameter '{field}'."))
    }

    /// MLflow's wording for a bad value: `Invalid value "x" for parameter 'key' supplied: why`.
    pub fn invalid_value(field: &str, value: &str, why: &str) -> InvalidParameter {
        let quoted = quote_json(value);
        if why.is_empty() {
            InvalidParameter::new(format!("Invalid value {quoted} for parameter '{field}' supplied."))
        } else {
            InvalidParameter::new(format!("Invalid value {quoted} for parameter '{field}' supplied: {why}"))
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl HasErrorCode for InvalidParameter {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidParameterValue
    }
}

fn quote_json(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Checks a metric, param or run-tag key: characters, path uniqueness, length.
pub fn validate_key(field: &str, key: &str) -> Result<(), InvalidParameter> {
    let ok_chars = key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'));
    if !ok_chars {
        return Err(InvalidParameter::invalid_value(
            field,
            key,
            "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).",
        ));
    }
    if !is_unique_path(key) {
        return Err(InvalidParameter::invalid_value(
            field,
            key,
            &format!(
                "Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{}'",
                normalize_posix(key)
            ),
        ));
    }
    if char_len(key) > MAX_ENTITY_KEY_LENGTH {
        return Err(InvalidParameter::new(format!("'{field}' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters")));
    }
    Ok(())
}

/// `posixpath.normpath`, for the "must not resolve to other names" rule.
pub(crate) fn normalize_posix(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let initial_slashes = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial_slashes == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(comp);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let mut res = "/".repeat(initial_slashes);
    res.push_str(&parts.join("/"));
    if res.is_empty() { ".".to_owned() } else { res }
}

pub(crate) fn is_unique_path(name: &str) -> bool {
    let norm = normalize_posix(name);
    !(norm != name || norm == "." || norm.starts_with("..") || norm.starts_with('/'))
}

/// Applies a length limit: over-long values are truncated when `truncate`, rejected otherwise.
pub fn limit_length(entity: &str, limit: usize, value: String, truncate: bool) -> Result<String, InvalidParameter> {
    if value.len() <= limit || char_len(&value) <= limit {
        return Ok(value);
    }
    if truncate {
        return Ok(value.chars().take(limit).collect());
    }
    Err(InvalidParameter::new(format!("{entity} exceeds the maximum length of {limit} characters")))
}

/// Rejects values over a limit (never truncates).
pub fn check_length(entity: &str, limit: usize, value: &str) -> Result<(), InvalidParameter> {
    if value.len() > limit && char_len(value) > limit {
        return Err(InvalidParameter::new(format!("{entity} exceeds the maximum length of {limit} characters")));
    }
    Ok(())
}

/// Experiment names: non-empty, at most 500 characters.
pub fn validate_experiment_name(name: &str) -> Result<(), InvalidParameter> {
    if name.is_empty() {
        return Err(InvalidParameter::new("Invalid experiment name: ''. Experiment name must not be empty."));
    }
    if char_len(name) > MAX_EXPERIMENT_NAME_LENGTH {
        return Err(InvalidParameter::new(format!(
            "Experiment name exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH} characters"
        )));
    }
    Ok(())
}

/// Characters a logged model's name may not hold (MLflow's rule: names become path segments and
/// `models:/` URIs).
pub const LOGGED_MODEL_NAME_BAD_CHARS: [char; 6] = ['/', ':', '.', '%', '"', '\''];

/// A logged model's name, when given: no character of `LOGGED_MODEL_NAME_BAD_CHARS`, as in MLflow.
pub fn validate_logged_model_name(name: &str) -> Result<(), InvalidParameter> {
    if name.contains(LOGGED_MODEL_NAME_BAD_CHARS) {
        let listed: Vec<String> = LOGGED_MODEL_NAME_BAD_CHARS.iter().map(|c| format!("{:?}", c.to_string())).collect();
        return Err(InvalidParameter::new(format!(
            "Invalid model name ({name:?}) provided. Model name must be a non-empty string and cannot contain the following characters: ({})",
            listed.join(", ")
        )));
    }
    Ok(())
}

/// `max_results` for search endpoints: positive and at most the page limit.
pub fn validate_max_results(value: i64, limit: i64) -> Result<(), InvalidParameter> {
    if value <= 0 {
        return Err(InvalidParameter::new(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer"
        )));
    }
    if value > limit {
        return Err(InvalidParameter::new(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be at most {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "a/b", "loss:train", "m 1", "x.y-z_1", "ünïcode"] {
            assert!(validate_key("key", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/../b", "/a", "a//b", "a/", "./a", "a$b", "a\\b", "a\nb"] {
            assert!(validate_key("key", bad).is_err(), "{bad:?}");
        }
        assert!(validate_key("key", &"k".repeat(250)).is_ok());
        assert!(validate_key("key", &"k".repeat(251)).is_err());
    }

    #[test]
    fn normpath_matches_python() {
        for (input, want) in
            [("", "."), ("a/./b", "a/b"), ("a/../..", ".."), ("/../a", "/a"), ("//a", "//a"), ("///a", "/a"), ("a/b/", "a/b")]
        {
            assert_eq!(normalize_posix(input), want, "{input}");
        }
    }

    #[test]
    fn truncation_counts_characters() {
        let long = "é".repeat(10);
        assert_eq!(limit_length("v", 10, long.clone(), false).expect("fits"), long);
        assert_eq!(limit_length("v", 4, long.clone(), true).expect("truncated"), "éééé");
        assert!(limit_length("v", 4, long, false).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(InvalidParameter::missing("key").message(), "Missing value for required parameter 'key'.");
        assert!(InvalidParameter::invalid_value("run_id", "a\"b", "").message().contains(r#""a\"b""#));
    }
}
