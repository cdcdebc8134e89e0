//! Shorthands for building expected ASTs in table tests.

use plinth_filter::{Attr, Clause, DatasetField, Grammar, Key, Op, Value};

/// Every grammar, for tests that must hold in all of them.
pub(crate) const GRAMMARS: [Grammar; 5] =
    [Grammar::Runs, Grammar::Experiments, Grammar::LoggedModels, Grammar::RegisteredModels, Grammar::ModelVersions];

pub(crate) fn metric(name: &str) -> Key {
    Key::Metric(name.to_owned())
}

pub(crate) fn param(name: &str) -> Key {
    Key::Param(name.to_owned())
}

pub(crate) fn tag(name: &str) -> Key {
    Key::Tag(name.to_owned())
}

pub(crate) fn attr(attr: Attr) -> Key {
    Key::Attribute(attr)
}

pub(crate) fn dataset(field: DatasetField) -> Key {
    Key::Dataset(field)
}

pub(crate) fn num(number: f64) -> Value {
    Value::Number(number)
}

pub(crate) fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

pub(crate) fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|item| (*item).to_owned()).collect())
}

pub(crate) fn clause(key: Key, op: Op, value: Value) -> Clause {
    Clause { key, op, value }
}
