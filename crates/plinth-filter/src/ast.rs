//! The typed syntax tree that filters and order-by entries parse to, and its
//! canonical printed form.
//!
//! Printing a [`Clause`] or an [`OrderBy`] with `Display` yields a string that
//! parses back to the same value in any grammar where the value is valid.

use std::fmt;

/// One comparison of a filter; a filter is a list of clauses joined by `AND`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// What is compared.
    pub key: Key,
    /// How it is compared.
    pub op: Op,
    /// What it is compared with; [`Value::None`] exactly for `IS NULL` and
    /// `IS NOT NULL`, [`Value::List`] exactly for `IN` and `NOT IN`.
    pub value: Value,
}

/// The left-hand side of a clause, or the key of an order-by entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A metric, by name (`metrics.<name>`).
    Metric(String),
    /// A parameter, by name (`params.<name>`).
    Param(String),
    /// A tag, by name (`tags.<name>`).
    Tag(String),
    /// A built-in attribute of the searched entity, with aliases resolved.
    Attribute(Attr),
    /// A field of a dataset that was input to a run (`datasets.<field>`).
    Dataset(DatasetField),
}

/// A built-in attribute of a run, experiment, logged model, registered model
/// or model version; aliases (such as `created` for `start_time`) are
/// resolved to one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attr {
    /// The run's id (`run_id`); also a model version's source run.
    RunId,
    /// The run's name (`run_name`).
    RunName,
    /// The user who created the run (`user_id`).
    UserId,
    /// The run's or logged model's status (`status`).
    Status,
    /// The run's artifact root (`artifact_uri`).
    ArtifactUri,
    /// When the run started, in milliseconds (`start_time`).
    StartTime,
    /// When the run ended, in milliseconds (`end_time`).
    EndTime,
    /// Whether the run is active or deleted (`lifecycle_stage`).
    LifecycleStage,
    /// The experiment's id (`experiment_id`).
    ExperimentId,
    /// The name of an experiment, logged model, registered model or model
    /// version (`name`).
    Name,
    /// When the experiment was created, in milliseconds (`creation_time`).
    CreationTime,
    /// When the experiment was last updated, in milliseconds
    /// (`last_update_time`).
    LastUpdateTime,
    /// The logged model's id (`model_id`).
    ModelId,
    /// The logged model's type (`model_type`).
    ModelType,
    /// The run that produced the logged model (`source_run_id`).
    SourceRunId,
    /// When the model was created, in milliseconds (`creation_timestamp`).
    CreationTimestamp,
    /// When the model was last updated, in milliseconds
    /// (`last_updated_timestamp`).
    LastUpdatedTimestamp,
    /// The model version's number (`version_number`).
    VersionNumber,
    /// The model version's source (`source_path`).
    SourcePath,
}

impl Attr {
    /// The canonical MLflow name of the attribute, as printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunId => "run_id",
            Self::RunName => "run_name",
            Self::UserId => "user_id",
            Self::Status => "status",
            Self::ArtifactUri => "artifact_uri",
            Self::StartTime => "start_time",
            Self::EndTime => "end_time",
            Self::LifecycleStage => "lifecycle_stage",
            Self::ExperimentId => "experiment_id",
            Self::Name => "name",
            Self::CreationTime => "creation_time",
            Self::LastUpdateTime => "last_update_time",
            Self::ModelId => "model_id",
            Self::ModelType => "model_type",
            Self::SourceRunId => "source_run_id",
            Self::CreationTimestamp => "creation_timestamp",
            Self::LastUpdatedTimestamp => "last_updated_timestamp",
            Self::VersionNumber => "version_number",
            Self::SourcePath => "source_path",
        }
    }

    /// Whether the attribute is compared with numbers rather than strings.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::StartTime
                | Self::EndTime
                | Self::CreationTime
                | Self::LastUpdateTime
                | Self::CreationTimestamp
                | Self::LastUpdatedTimestamp
                | Self::VersionNumber
        )
    }
}

/// A searchable field of a run's input dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetField {
    /// The dataset's name (`datasets.name`).
    Name,
    /// The dataset's digest (`datasets.digest`).
    Digest,
    /// The input's `mlflow.data.context` tag (`datasets.context`).
    Context,
}

impl DatasetField {
    /// The MLflow name of the field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Digest => "digest",
            Self::Context => "context",
        }
    }
}

/// A comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`.
    Eq,
    /// `!=`, also written `<>`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `LIKE`, a case-sensitive SQL pattern match.
    Like,
    /// `ILIKE`, a case-insensitive SQL pattern match.
    ILike,
    /// `IN`, membership in a list.
    In,
    /// `NOT IN`, non-membership in a list.
    NotIn,
    /// `IS NULL`, absence of the key.
    IsNull,
    /// `IS NOT NULL`, presence of the key.
    IsNotNull,
}

impl Op {
    /// The canonical spelling of the comparator, as printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Like => "LIKE",
            Self::ILike => "ILIKE",
            Self::In => "IN",
            Self::NotIn => "NOT IN",
            Self::IsNull => "IS NULL",
            Self::IsNotNull => "IS NOT NULL",
        }
    }
}

/// The right-hand side of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A finite number, for metrics and numeric attributes.
    Number(f64),
    /// A string, for parameters, tags, string attributes and datasets.
    String(String),
    /// A non-empty list of strings, for `IN` and `NOT IN`.
    List(Vec<String>),
    /// No value, for `IS NULL` and `IS NOT NULL`.
    None,
}

/// One order-by entry, such as ``metrics.`f1 score` DESC``.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// What to sort by.
    pub key: Key,
    /// Whether to sort in ascending order (the default) or descending order.
    pub ascending: bool,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Metric(name) => write_prefixed(f, "metrics", name),
            Self::Param(name) => write_prefixed(f, "params", name),
            Self::Tag(name) => write_prefixed(f, "tags", name),
            Self::Attribute(attr) => f.write_str(attr.as_str()),
            Self::Dataset(field) => write!(f, "datasets.{}", field.as_str()),
        }
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.op)?;
        match (&self.value, self.op) {
            // `IS NULL` and `IS NOT NULL` carry no value, whatever the clause holds.
            (_, Op::IsNull | Op::IsNotNull) | (Value::None, _) => Ok(()),
            (Value::Number(number), _) => write!(f, " {number:?}"),
            (Value::String(string), _) => {
                f.write_str(" ")?;
                write_quoted(f, '\'', string)
            }
            (Value::List(items), _) => {
                f.write_str(" (")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, '\'', item)?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for OrderBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = if self.ascending { "ASC" } else { "DESC" };
        write!(f, "{} {direction}", self.key)
    }
}

/// Writes `prefix.name`, quoting the name with backticks unless it is plain.
fn write_prefixed(f: &mut fmt::Formatter<'_>, prefix: &str, name: &str) -> fmt::Result {
    write!(f, "{prefix}.")?;
    if is_plain_key(name) { f.write_str(name) } else { write_quoted(f, '`', name) }
}

/// Whether a key can be printed without quotes and read back unchanged.
fn is_plain_key(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
}

/// Writes `text` between two `quote` characters, doubling any quote inside.
fn write_quoted(f: &mut fmt::Formatter<'_>, quote: char, text: &str) -> fmt::Result {
    use fmt::Write as _;

    f.write_char(quote)?;
    for c in text.chars() {
        if c == quote {
            f.write_char(quote)?;
        }
        f.write_char(c)?;
    }
    f.write_char(quote)
}

#[cfg(test)]
mod tests {
    use super::{Attr, Clause, DatasetField, Key, Op, OrderBy, Value};

    #[test]
    fn clauses_print_canonically() {
        let cases = [
            (Clause { key: Key::Metric("f1 score".to_owned()), op: Op::Ge, value: Value::Number(0.5) }, "metrics.`f1 score` >= 0.5"),
            (
                Clause { key: Key::Tag("mlflow.runName".to_owned()), op: Op::Eq, value: Value::String("it's".to_owned()) },
                "tags.mlflow.runName = 'it''s'",
            ),
            (Clause { key: Key::Param("a`b".to_owned()), op: Op::IsNotNull, value: Value::None }, "params.`a``b` IS NOT NULL"),
            (
                Clause { key: Key::Attribute(Attr::RunId), op: Op::NotIn, value: Value::List(vec!["a".to_owned(), "b".to_owned()]) },
                "run_id NOT IN ('a', 'b')",
            ),
            (
                Clause { key: Key::Dataset(DatasetField::Context), op: Op::Ne, value: Value::String("train".to_owned()) },
                "datasets.context != 'train'",
            ),
            (Clause { key: Key::Attribute(Attr::StartTime), op: Op::Lt, value: Value::Number(1e16) }, "start_time < 1e16"),
        ];
        for (clause, expected) in cases {
            assert_eq!(clause.to_string(), expected);
        }
    }

    #[test]
    fn order_by_prints_its_direction() {
        let order = OrderBy { key: Key::Attribute(Attr::CreationTimestamp), ascending: false };
        assert_eq!(order.to_string(), "creation_timestamp DESC");
        let order = OrderBy { key: Key::Metric(String::new()), ascending: true };
        assert_eq!(order.to_string(), "metrics.`` ASC");
    }

    #[test]
    fn numeric_attributes_are_the_timestamps_and_version_number() {
        let numeric = [
            Attr::StartTime,
            Attr::EndTime,
            Attr::CreationTime,
            Attr::LastUpdateTime,
            Attr::CreationTimestamp,
            Attr::LastUpdatedTimestamp,
            Attr::VersionNumber,
        ];
        let strings = [
            Attr::RunId,
            Attr::RunName,
            Attr::UserId,
            Attr::Status,
            Attr::ArtifactUri,
            Attr::LifecycleStage,
            Attr::ExperimentId,
            Attr::Name,
            Attr::ModelId,
            Attr::ModelType,
            Attr::SourceRunId,
            Attr::SourcePath,
        ];
        assert!(numeric.iter().all(|attr| attr.is_numeric()));
        assert!(strings.iter().all(|attr| !attr.is_numeric()));
    }
}
