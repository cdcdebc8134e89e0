//! The entry points: scan the text into raw clauses, then resolve each raw
//! clause against a [`Grammar`] into the typed AST.
//!
//! Scanning (in [`scan`]) checks only the shape of the text, so that a
//! malformed filter is reported as such before any key or value in it is
//! judged, as MLflow does. Resolution checks the entity type, the key, the
//! comparator and the value type, in that order.

mod scan;

use crate::ast::{Attr, Clause, Key, Op, OrderBy, Value};
use crate::error::ParseError;
use crate::grammar::{self, Context, Entity, Grammar};
use scan::{RawClause, RawIdent, RawValue, RawValueKind};

/// The longest filter or order-by string accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 65_536;

/// How many characters of user input an error message quotes at most.
const SNIPPET_CHARS: usize = 48;

/// Parses a search filter: comparisons joined by `AND`.
///
/// Empty or whitespace-only input is the empty filter, which matches
/// everything.
///
/// # Errors
///
/// Returns an error, worded for the user, if the input is longer than
/// [`MAX_INPUT_LEN`] bytes, is not a list of `AND`-joined comparisons, or
/// names a key, comparator or value type that `grammar` does not accept.
pub fn parse_filter(grammar: Grammar, input: &str) -> Result<Vec<Clause>, ParseError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(ParseError::new(format!(
            "Invalid filter string: it is {} bytes long, which exceeds the limit of {MAX_INPUT_LEN} bytes",
            input.len()
        )));
    }
    let raw = scan::scan_filter(input).map_err(|detail| ParseError::new(format!("Invalid clause(s) in filter string: {detail}")))?;
    raw.into_iter().map(|clause| resolve_clause(grammar, clause).map_err(ParseError::new)).collect()
}

/// Parses one order-by entry: a key, optionally followed by `ASC` or `DESC`.
///
/// # Errors
///
/// Returns an error, worded for the user and starting with
/// `Invalid order_by clause`, if the input is longer than [`MAX_INPUT_LEN`]
/// bytes, is not a key with an optional direction, or names a key that
/// `grammar` cannot sort by.
pub fn parse_order_by(grammar: Grammar, input: &str) -> Result<OrderBy, ParseError> {
    let fail = |detail: String| ParseError::new(format!("Invalid order_by clause '{}': {detail}", snippet(input.trim())));
    if input.len() > MAX_INPUT_LEN {
        return Err(fail(format!("it is {} bytes long, which exceeds the limit of {MAX_INPUT_LEN} bytes", input.len())));
    }
    let raw = scan::scan_order_by(input).map_err(fail)?;
    let key = resolve_key(grammar, &raw.ident, Context::OrderBy).map_err(fail)?;
    Ok(OrderBy { key, ascending: raw.ascending })
}

/// Checks one raw clause against the grammar and builds its typed form.
fn resolve_clause(grammar: Grammar, raw: RawClause<'_>) -> Result<Clause, String> {
    let key = resolve_key(grammar, &raw.ident, Context::Filter)?;
    let allowed = grammar.ops(&key);
    if !allowed.contains(&raw.op) {
        return Err(format!(
            "Invalid comparator '{}' not one of '{}' for {}",
            raw.op,
            quoted_list(allowed.iter().map(|op| op.as_str())),
            describe(&key)
        ));
    }
    let value = resolve_value(&key, raw.op, raw.value)?;
    Ok(Clause { key, op: raw.op, value })
}

/// Resolves an identifier to a key the grammar accepts in `context`.
fn resolve_key(grammar: Grammar, ident: &RawIdent<'_>, context: Context) -> Result<Key, String> {
    let entity = match &ident.prefix {
        None => Entity::Attribute,
        Some(prefix) => {
            let allowed = grammar.entities(context);
            match Entity::from_prefix(prefix) {
                Some(entity) if allowed.contains(&entity) => entity,
                _ => {
                    return Err(format!(
                        "Invalid entity type '{}'. Valid values are {}",
                        snippet(prefix),
                        quoted_list(allowed.iter().map(|entity| entity.as_str()))
                    ));
                }
            }
        }
    };
    let name = &ident.name;
    match entity {
        Entity::Metric => Ok(Key::Metric(name.clone())),
        Entity::Param => Ok(Key::Param(name.clone())),
        Entity::Tag => Ok(Key::Tag(name.clone())),
        Entity::Attribute => {
            let table = grammar.attributes(context);
            table.iter().find(|(candidate, _)| candidate == name).map(|(_, attr)| Key::Attribute(*attr)).ok_or_else(|| {
                format!(
                    "Invalid attribute key '{}' specified. Valid keys are {}",
                    snippet(name),
                    quoted_list(table.iter().map(|(candidate, _)| *candidate))
                )
            })
        }
        Entity::Dataset => grammar::dataset_field(name).map(Key::Dataset).ok_or_else(|| {
            format!("Invalid dataset key '{}' specified. Valid keys are {}", snippet(name), quoted_list(grammar::dataset_field_names()))
        }),
    }
}

/// Checks that the value fits the key and the comparator.
fn resolve_value(key: &Key, op: Op, raw: Option<RawValue<'_>>) -> Result<Value, String> {
    let raw = match (op, raw) {
        (Op::IsNull | Op::IsNotNull, _) => return Ok(Value::None),
        (_, Some(raw)) => raw,
        // The scanner always reads a value after any other comparator.
        (_, None) => {
            return Err(format!("Expected a value after '{op}' for {}", describe(key)));
        }
    };
    let got = snippet(raw.text);
    if matches!(op, Op::In | Op::NotIn) {
        return match raw.kind {
            RawValueKind::List(items) => Ok(Value::List(items)),
            _ => {
                Err(format!("Expected a list of quoted string values for '{op}' with {} (e.g. ('a', 'b')). Got value {got}", describe(key)))
            }
        };
    }
    let numeric = match key {
        Key::Metric(_) => true,
        Key::Attribute(attr) => attr.is_numeric(),
        Key::Param(_) | Key::Tag(_) | Key::Dataset(_) => false,
    };
    match raw.kind {
        RawValueKind::Number(number) if numeric => Ok(Value::Number(number)),
        _ if numeric => Err(format!("Expected numeric value type for {}. Found {got}", describe(key))),
        RawValueKind::Str(string) => Ok(Value::String(string)),
        // Experiment ids are strings, but MLflow users commonly write them bare.
        RawValueKind::Number(_) if *key == Key::Attribute(Attr::ExperimentId) && raw.text.bytes().all(|byte| byte.is_ascii_digit()) => {
            Ok(Value::String(raw.text.to_owned()))
        }
        RawValueKind::Backticked => Err(format!(
            "Expected a quoted string value for {} (e.g. 'my-value'). Got value {got}; backticks quote keys, quote values with single or double quotes",
            describe(key)
        )),
        RawValueKind::Number(_) | RawValueKind::Bare | RawValueKind::List(_) => {
            Err(format!("Expected a quoted string value for {} (e.g. 'my-value'). Got value {got}", describe(key)))
        }
    }
}

/// Names a key the way error messages do, e.g. `param 'alpha'`.
fn describe(key: &Key) -> String {
    match key {
        Key::Metric(name) => format!("metric '{}'", snippet(name)),
        Key::Param(name) => format!("param '{}'", snippet(name)),
        Key::Tag(name) => format!("tag '{}'", snippet(name)),
        Key::Attribute(attr) if attr.is_numeric() => {
            format!("numeric attribute '{}'", attr.as_str())
        }
        Key::Attribute(attr) => format!("attribute '{}'", attr.as_str()),
        Key::Dataset(field) => format!("dataset '{}'", field.as_str()),
    }
}

/// Formats names as MLflow prints a Python list of strings: `['a', 'b']`.
fn quoted_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(|item| format!("'{item}'")).collect();
    format!("[{}]", items.join(", "))
}

/// Shortens user input for quoting in an error message, so that messages
/// stay short however long the input is.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or(text)),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_INPUT_LEN, parse_filter, parse_order_by, quoted_list, snippet};
    use crate::ast::{Attr, Clause, Key, Op, Value};
    use crate::grammar::Grammar;

    #[test]
    fn snippets_are_cut_at_a_character_boundary() {
        assert_eq!(snippet("short"), "short");
        let long = "é".repeat(100);
        let cut = snippet(&long);
        assert_eq!(cut, format!("{}...", "é".repeat(48)));
    }

    #[test]
    fn lists_are_printed_like_python() {
        assert_eq!(quoted_list(["=", "!="].into_iter()), "['=', '!=']");
        assert_eq!(quoted_list(std::iter::empty()), "[]");
    }

    #[test]
    fn inputs_at_the_limit_are_accepted_and_longer_ones_rejected() {
        let clause = "tags.a = 'x'";
        let at_limit = format!("{clause}{}", " ".repeat(MAX_INPUT_LEN - clause.len()));
        assert_eq!(parse_filter(Grammar::Runs, &at_limit).map(|clauses| clauses.len()), Ok(1));
        let over = format!("{at_limit} ");
        let error = parse_filter(Grammar::Runs, &over).expect_err("one byte over the limit");
        assert!(error.message().contains("exceeds the limit of 65536 bytes"));
        let error = parse_order_by(Grammar::Runs, &over).expect_err("one byte over the limit");
        assert!(error.message().starts_with("Invalid order_by clause"));
    }

    #[test]
    fn bare_experiment_ids_are_strings() {
        let clauses = parse_filter(Grammar::Experiments, "experiment_id = 12");
        assert_eq!(
            clauses,
            Ok(vec![Clause { key: Key::Attribute(Attr::ExperimentId), op: Op::Eq, value: Value::String("12".to_owned()) }])
        );
        let error = parse_filter(Grammar::Experiments, "experiment_id = 1.5").expect_err("only whole numbers are ids");
        assert!(error.message().starts_with("Expected a quoted string value"));
    }

    #[test]
    fn the_comparator_is_checked_before_the_value() {
        let error = parse_filter(Grammar::Runs, "params.x > 'a'").expect_err("params are strings");
        assert_eq!(
            error.message(),
            "Invalid comparator '>' not one of '['=', '!=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL']' for param 'x'"
        );
    }

    #[test]
    fn syntax_errors_take_precedence_over_key_errors() {
        let error = parse_filter(Grammar::Runs, "foo.bar = 'x' OR tags.a = 'b'").expect_err("OR is unsupported");
        assert!(error.message().starts_with("Invalid clause(s) in filter string"));
    }
}
