//! The per-grammar rules: which entity types, attributes and comparators each
//! MLflow search endpoint accepts, in filters and in order-by entries.

use crate::ast::{Attr, DatasetField, Key, Op};

/// Which MLflow search endpoint a filter or order-by entry belongs to; each
/// accepts different keys and comparators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grammar {
    /// `runs/search`: filters on metrics, params, tags, datasets and the
    /// attributes `run_id`, `run_name`, `user_id`, `status`, `artifact_uri`,
    /// `lifecycle_stage`, `start_time` and `end_time`; sorts by metrics,
    /// params, tags and the same attributes but `lifecycle_stage`.
    Runs,
    /// `experiments/search`: filters on tags and the attributes `name`,
    /// `experiment_id`, `creation_time` and `last_update_time`; sorts by the
    /// same attributes.
    Experiments,
    /// `logged-models/search`: filters on metrics, params, tags and the
    /// attributes `model_id`, `name`, `model_type`, `status`,
    /// `source_run_id`, `creation_timestamp` and `last_updated_timestamp`;
    /// sorts by metrics, `name`, `model_id`, `creation_timestamp` and
    /// `last_updated_timestamp`.
    LoggedModels,
    /// `registered-models/search`: filters on tags and `name`; sorts by
    /// `name`, `creation_timestamp` (alias `timestamp`) and
    /// `last_updated_timestamp`.
    RegisteredModels,
    /// `model-versions/search`: filters on tags and the attributes `name`,
    /// `run_id`, `source_path` and `version_number`; sorts by `name`,
    /// `version_number`, `creation_timestamp` and `last_updated_timestamp`.
    ModelVersions,
}

/// Where a key appears, which decides which keys are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// The left-hand side of a filter clause.
    Filter,
    /// The key of an order-by entry.
    OrderBy,
}

/// The kind of thing an identifier's prefix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Entity {
    /// Resolves an identifier prefix, which is case-sensitive as in MLflow.
    pub(crate) fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "metrics" | "metric" => Some(Self::Metric),
            "params" | "param" | "parameters" | "parameter" => Some(Self::Param),
            "tags" | "tag" => Some(Self::Tag),
            "attributes" | "attribute" | "attr" | "run" => Some(Self::Attribute),
            "datasets" | "dataset" => Some(Self::Dataset),
            _ => None,
        }
    }

    /// The canonical name MLflow lists in its error messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Param => "parameter",
            Self::Tag => "tag",
            Self::Attribute => "attribute",
            Self::Dataset => "dataset",
        }
    }
}

/// The comparators of metrics and numeric attributes.
const NUMERIC_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
/// The comparators of parameters and tags.
const KEY_VALUE_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::IsNull, Op::IsNotNull];
/// The comparators of most string attributes and of dataset fields.
const STRING_LIST_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In, Op::NotIn];
/// The comparators of string attributes that cannot be compared with a list.
const STRING_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike];
/// The comparators of experiment ids, which are matched exactly.
const ID_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn];

/// The searchable attributes of runs, aliases included.
const RUN_FILTER_ATTRS: &[(&str, Attr)] = &[
    ("run_id", Attr::RunId),
    ("run_name", Attr::RunName),
    ("run name", Attr::RunName),
    ("Run name", Attr::RunName),
    ("Run Name", Attr::RunName),
    ("user_id", Attr::UserId),
    ("status", Attr::Status),
    ("artifact_uri", Attr::ArtifactUri),
    ("lifecycle_stage", Attr::LifecycleStage),
    ("start_time", Attr::StartTime),
    ("created", Attr::StartTime),
    ("Created", Attr::StartTime),
    ("end_time", Attr::EndTime),
];
/// The orderable attributes of runs, aliases included.
const RUN_ORDER_ATTRS: &[(&str, Attr)] = &[
    ("run_id", Attr::RunId),
    ("run_name", Attr::RunName),
    ("run name", Attr::RunName),
    ("Run name", Attr::RunName),
    ("Run Name", Attr::RunName),
    ("user_id", Attr::UserId),
    ("status", Attr::Status),
    ("artifact_uri", Attr::ArtifactUri),
    ("start_time", Attr::StartTime),
    ("created", Attr::StartTime),
    ("Created", Attr::StartTime),
    ("end_time", Attr::EndTime),
];
/// The searchable and orderable attributes of experiments.
const EXPERIMENT_ATTRS: &[(&str, Attr)] = &[
    ("name", Attr::Name),
    ("experiment_id", Attr::ExperimentId),
    ("creation_time", Attr::CreationTime),
    ("last_update_time", Attr::LastUpdateTime),
];
/// The searchable attributes of logged models, aliases included.
const LOGGED_MODEL_FILTER_ATTRS: &[(&str, Attr)] = &[
    ("model_id", Attr::ModelId),
    ("name", Attr::Name),
    ("model_type", Attr::ModelType),
    ("status", Attr::Status),
    ("source_run_id", Attr::SourceRunId),
    ("creation_timestamp", Attr::CreationTimestamp),
    ("creation_time", Attr::CreationTimestamp),
    ("last_updated_timestamp", Attr::LastUpdatedTimestamp),
    ("last_update_time", Attr::LastUpdatedTimestamp),
];
/// The orderable attributes of logged models, aliases included.
const LOGGED_MODEL_ORDER_ATTRS: &[(&str, Attr)] = &[
    ("name", Attr::Name),
    ("model_id", Attr::ModelId),
    ("creation_timestamp", Attr::CreationTimestamp),
    ("creation_time", Attr::CreationTimestamp),
    ("last_updated_timestamp", Attr::LastUpdatedTimestamp),
    ("last_update_time", Attr::LastUpdatedTimestamp),
];
/// The searchable attributes of registered models.
const REGISTERED_MODEL_FILTER_ATTRS: &[(&str, Attr)] = &[("name", Attr::Name)];
/// The orderable attributes of registered models, aliases included.
const REGISTERED_MODEL_ORDER_ATTRS: &[(&str, Attr)] = &[
    ("name", Attr::Name),
    ("creation_timestamp", Attr::CreationTimestamp),
    ("timestamp", Attr::CreationTimestamp),
    ("last_updated_timestamp", Attr::LastUpdatedTimestamp),
];
/// The searchable attributes of model versions.
const MODEL_VERSION_FILTER_ATTRS: &[(&str, Attr)] =
    &[("name", Attr::Name), ("run_id", Attr::RunId), ("source_path", Attr::SourcePath), ("version_number", Attr::VersionNumber)];
/// The orderable attributes of model versions.
const MODEL_VERSION_ORDER_ATTRS: &[(&str, Attr)] = &[
    ("name", Attr::Name),
    ("version_number", Attr::VersionNumber),
    ("creation_timestamp", Attr::CreationTimestamp),
    ("last_updated_timestamp", Attr::LastUpdatedTimestamp),
];

/// The fields of `datasets.<field>`.
const DATASET_FIELDS: &[(&str, DatasetField)] =
    &[("name", DatasetField::Name), ("digest", DatasetField::Digest), ("context", DatasetField::Context)];

impl Grammar {
    /// The entity types allowed as identifier prefixes.
    pub(crate) fn entities(self, context: Context) -> &'static [Entity] {
        use Entity::{Attribute, Dataset, Metric, Param, Tag};

        match (self, context) {
            (Self::Runs, Context::Filter) => &[Metric, Param, Tag, Attribute, Dataset],
            (Self::Runs, Context::OrderBy) => &[Metric, Param, Tag, Attribute],
            (Self::Experiments | Self::RegisteredModels | Self::ModelVersions, Context::Filter) => &[Attribute, Tag],
            (Self::LoggedModels, Context::Filter) => &[Metric, Param, Tag, Attribute],
            (Self::LoggedModels, Context::OrderBy) => &[Metric, Attribute],
            (Self::Experiments | Self::RegisteredModels | Self::ModelVersions, Context::OrderBy) => &[Attribute],
        }
    }

    /// The attribute names allowed, each with the attribute it names.
    pub(crate) fn attributes(self, context: Context) -> &'static [(&'static str, Attr)] {
        match (self, context) {
            (Self::Runs, Context::Filter) => RUN_FILTER_ATTRS,
            (Self::Runs, Context::OrderBy) => RUN_ORDER_ATTRS,
            (Self::Experiments, _) => EXPERIMENT_ATTRS,
            (Self::LoggedModels, Context::Filter) => LOGGED_MODEL_FILTER_ATTRS,
            (Self::LoggedModels, Context::OrderBy) => LOGGED_MODEL_ORDER_ATTRS,
            (Self::RegisteredModels, Context::Filter) => REGISTERED_MODEL_FILTER_ATTRS,
            (Self::RegisteredModels, Context::OrderBy) => REGISTERED_MODEL_ORDER_ATTRS,
            (Self::ModelVersions, Context::Filter) => MODEL_VERSION_FILTER_ATTRS,
            (Self::ModelVersions, Context::OrderBy) => MODEL_VERSION_ORDER_ATTRS,
        }
    }

    /// The comparators a filter clause may apply to `key`.
    pub(crate) fn ops(self, key: &Key) -> &'static [Op] {
        match key {
            Key::Metric(_) => NUMERIC_OPS,
            Key::Param(_) | Key::Tag(_) => KEY_VALUE_OPS,
            Key::Dataset(_) => STRING_LIST_OPS,
            Key::Attribute(attr) if attr.is_numeric() => NUMERIC_OPS,
            Key::Attribute(attr) => match (self, attr) {
                (Self::Experiments, Attr::ExperimentId) => ID_OPS,
                (Self::Experiments, _) | (Self::ModelVersions, Attr::SourcePath) => STRING_OPS,
                _ => STRING_LIST_OPS,
            },
        }
    }
}

/// Resolves the field of `datasets.<field>`.
pub(crate) fn dataset_field(name: &str) -> Option<DatasetField> {
    DATASET_FIELDS.iter().find(|(candidate, _)| *candidate == name).map(|(_, field)| *field)
}

/// The names of the dataset fields, for error messages.
pub(crate) fn dataset_field_names() -> impl Iterator<Item = &'static str> {
    DATASET_FIELDS.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::{Context, Entity, Grammar};
    use crate::ast::{Attr, Key, Op};

    const GRAMMARS: [Grammar; 5] =
        [Grammar::Runs, Grammar::Experiments, Grammar::LoggedModels, Grammar::RegisteredModels, Grammar::ModelVersions];

    #[test]
    fn every_prefix_alias_resolves() {
        let cases = [
            ("metrics", Entity::Metric),
            ("metric", Entity::Metric),
            ("params", Entity::Param),
            ("param", Entity::Param),
            ("parameters", Entity::Param),
            ("parameter", Entity::Param),
            ("tags", Entity::Tag),
            ("tag", Entity::Tag),
            ("attributes", Entity::Attribute),
            ("attribute", Entity::Attribute),
            ("attr", Entity::Attribute),
            ("run", Entity::Attribute),
            ("datasets", Entity::Dataset),
            ("dataset", Entity::Dataset),
        ];
        for (prefix, entity) in cases {
            assert_eq!(Entity::from_prefix(prefix), Some(entity), "{prefix}");
        }
        assert_eq!(Entity::from_prefix("Metrics"), None);
        assert_eq!(Entity::from_prefix(""), None);
    }

    #[test]
    fn attribute_names_are_unique_and_canonical_names_resolve_to_themselves() {
        for grammar in GRAMMARS {
            for context in [Context::Filter, Context::OrderBy] {
                let table = grammar.attributes(context);
                for (index, (name, attr)) in table.iter().enumerate() {
                    assert!(table[..index].iter().all(|(other, _)| other != name), "{grammar:?} lists {name} twice");
                    // The canonical name must be accepted wherever the attribute is,
                    // or printed clauses would not parse back.
                    assert!(
                        table.iter().any(|(other, same)| same == attr && *other == attr.as_str()),
                        "{grammar:?} accepts {attr:?} but not as {}",
                        attr.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn numeric_attributes_take_numeric_comparators() {
        for grammar in GRAMMARS {
            for (_, attr) in grammar.attributes(Context::Filter) {
                let ops = grammar.ops(&Key::Attribute(*attr));
                assert_eq!(ops.contains(&Op::Gt), attr.is_numeric(), "{attr:?}");
                assert!(!ops.contains(&Op::IsNull), "{attr:?}");
            }
        }
    }

    #[test]
    fn experiment_ids_are_matched_exactly() {
        let ops = Grammar::Experiments.ops(&Key::Attribute(Attr::ExperimentId));
        assert_eq!(ops, &[Op::Eq, Op::Ne, Op::In, Op::NotIn]);
    }
}
