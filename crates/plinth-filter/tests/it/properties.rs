//! Property tests: parsing never panics on any input, whatever parses prints
//! back to itself, and generated valid ASTs round-trip through `Display`.
//!
//! The generators carry their own table of which keys and comparators each
//! grammar accepts, written from the specification rather than taken from
//! the crate, so that they also check the crate's tables.

use crate::common::GRAMMARS;
use plinth_filter::{Attr, Clause, DatasetField, Grammar, Key, Op, OrderBy, Value, parse_filter, parse_order_by};
use proptest::prelude::*;

/// Fragments that, strung together, make inputs close to valid ones.
const TOKENS: &[&str] = &[
    "metrics",
    "metric",
    "params",
    "tags",
    "tag",
    "attributes",
    "attr",
    "datasets",
    "run",
    "foo",
    ".",
    ".",
    "`",
    "\"",
    "'",
    "''",
    "a",
    "f1 score",
    "mlflow.runName",
    "=",
    "!=",
    "<>",
    ">",
    ">=",
    "<",
    "<=",
    "==",
    "!",
    "LIKE",
    "ilike",
    "IN",
    "NOT",
    "not",
    "IS",
    "NULL",
    "AND",
    "and",
    "OR",
    "(",
    ")",
    ",",
    "1",
    "-1.5e3",
    "1e999",
    "e",
    "+",
    "-",
    "run_id",
    "start_time",
    "created",
    "name",
    "experiment_id",
    "version_number",
    "timestamp",
    "status",
    "Run Name",
    "ASC",
    "DESC",
    "é",
    "🎉",
    "\n",
    "\t",
    "\u{0}",
    "%",
    "'x'",
    "('a', 'b')",
    "()",
    " ",
    " ",
    " ",
];

/// Strings built from grammar tokens, with or without separating spaces.
fn token_soup() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop::sample::select(TOKENS), 0..24), any::<bool>())
        .prop_map(|(tokens, spaced)| tokens.join(if spaced { " " } else { "" }))
}

/// Any input at all: arbitrary unicode, token soups, and valid filters with
/// one character cut off or changed.
fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        token_soup(),
        "[ -~]{0,64}",
        (any_grammar().prop_flat_map(filter), any::<prop::sample::Index>(), any::<char>()).prop_map(|(clauses, index, replacement)| {
            let text = print_filter(&clauses);
            let chars: Vec<char> = text.chars().collect();
            if chars.is_empty() {
                return replacement.to_string();
            }
            let at = index.index(chars.len());
            let mut mutated: String = chars[..at].iter().collect();
            mutated.push(replacement);
            mutated.extend(&chars[at + 1..]);
            mutated
        }),
    ]
}

fn any_grammar() -> impl Strategy<Value = Grammar> {
    prop::sample::select(GRAMMARS.to_vec())
}

/// How a generated key is built.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Metric,
    Param,
    Tag,
    Fixed(Key2),
}

/// A key with no name to generate, as a copyable stand-in for [`Key`].
#[derive(Debug, Clone, Copy)]
enum Key2 {
    Attribute(Attr),
    Dataset(DatasetField),
}

const NUMERIC: &[Op] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
const KEY_VALUE: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::IsNull, Op::IsNotNull];
const STRING_LIST: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In, Op::NotIn];
const STRING: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike];
const ID: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn];

/// The keys a grammar accepts in filters, each with its comparators.
fn filter_keys(grammar: Grammar) -> Vec<(KeyKind, &'static [Op])> {
    use KeyKind::{Fixed, Metric, Param, Tag};

    let a = |attr| Fixed(Key2::Attribute(attr));
    let d = |field| Fixed(Key2::Dataset(field));
    match grammar {
        Grammar::Runs => vec![
            (Metric, NUMERIC),
            (Param, KEY_VALUE),
            (Tag, KEY_VALUE),
            (a(Attr::RunId), STRING_LIST),
            (a(Attr::RunName), STRING_LIST),
            (a(Attr::UserId), STRING_LIST),
            (a(Attr::Status), STRING_LIST),
            (a(Attr::ArtifactUri), STRING_LIST),
            (a(Attr::LifecycleStage), STRING_LIST),
            (a(Attr::StartTime), NUMERIC),
            (a(Attr::EndTime), NUMERIC),
            (d(DatasetField::Name), STRING_LIST),
            (d(DatasetField::Digest), STRING_LIST),
            (d(DatasetField::Context), STRING_LIST),
        ],
        Grammar::Experiments => vec![
            (Tag, KEY_VALUE),
            (a(Attr::Name), STRING),
            (a(Attr::ExperimentId), ID),
            (a(Attr::CreationTime), NUMERIC),
            (a(Attr::LastUpdateTime), NUMERIC),
        ],
        Grammar::LoggedModels => vec![
            (Metric, NUMERIC),
            (Param, KEY_VALUE),
            (Tag, KEY_VALUE),
            (a(Attr::ModelId), STRING_LIST),
            (a(Attr::Name), STRING_LIST),
            (a(Attr::ModelType), STRING_LIST),
            (a(Attr::Status), STRING_LIST),
            (a(Attr::SourceRunId), STRING_LIST),
            (a(Attr::CreationTimestamp), NUMERIC),
            (a(Attr::LastUpdatedTimestamp), NUMERIC),
        ],
        Grammar::RegisteredModels => vec![(Tag, KEY_VALUE), (a(Attr::Name), STRING_LIST)],
        Grammar::ModelVersions => vec![
            (Tag, KEY_VALUE),
            (a(Attr::Name), STRING_LIST),
            (a(Attr::RunId), STRING_LIST),
            (a(Attr::SourcePath), STRING),
            (a(Attr::VersionNumber), NUMERIC),
        ],
    }
}

/// The keys a grammar accepts in order-by entries.
fn order_keys(grammar: Grammar) -> Vec<KeyKind> {
    use KeyKind::{Fixed, Metric, Param, Tag};

    let a = |attr| Fixed(Key2::Attribute(attr));
    match grammar {
        Grammar::Runs => vec![
            Metric,
            Param,
            Tag,
            a(Attr::RunId),
            a(Attr::RunName),
            a(Attr::UserId),
            a(Attr::Status),
            a(Attr::ArtifactUri),
            a(Attr::StartTime),
            a(Attr::EndTime),
        ],
        Grammar::Experiments => vec![a(Attr::Name), a(Attr::ExperimentId), a(Attr::CreationTime), a(Attr::LastUpdateTime)],
        Grammar::LoggedModels => vec![Metric, a(Attr::Name), a(Attr::ModelId), a(Attr::CreationTimestamp), a(Attr::LastUpdatedTimestamp)],
        Grammar::RegisteredModels => vec![a(Attr::Name), a(Attr::CreationTimestamp), a(Attr::LastUpdatedTimestamp)],
        Grammar::ModelVersions => vec![a(Attr::Name), a(Attr::VersionNumber), a(Attr::CreationTimestamp), a(Attr::LastUpdatedTimestamp)],
    }
}

/// Non-empty key names: plain ones, and arbitrary unicode with quotes,
/// backticks, dots and whitespace.
fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_.-]{0,12}",
        "[a-z `\"'.=<>()-]{1,8}",
        prop::collection::vec(any::<char>(), 1..10).prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
}

fn key(kind: KeyKind) -> BoxedStrategy<Key> {
    match kind {
        KeyKind::Metric => key_name().prop_map(Key::Metric).boxed(),
        KeyKind::Param => key_name().prop_map(Key::Param).boxed(),
        KeyKind::Tag => key_name().prop_map(Key::Tag).boxed(),
        KeyKind::Fixed(Key2::Attribute(attr)) => Just(Key::Attribute(attr)).boxed(),
        KeyKind::Fixed(Key2::Dataset(field)) => Just(Key::Dataset(field)).boxed(),
    }
}

/// Finite numbers: arbitrary ones and millisecond timestamps.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |number| number.is_finite()),
        (0_i64..4_000_000_000_000).prop_map(|millis| millis as f64),
        (-1000_i32..1000).prop_map(f64::from),
    ]
}

/// Strings: arbitrary unicode and ones full of quotes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "['\"`% _a]{0,8}"]
}

fn value(key: &Key, op: Op) -> BoxedStrategy<Value> {
    let numeric = match key {
        Key::Metric(_) => true,
        Key::Attribute(attr) => attr.is_numeric(),
        _ => false,
    };
    match op {
        Op::IsNull | Op::IsNotNull => Just(Value::None).boxed(),
        Op::In | Op::NotIn => prop::collection::vec(text(), 1..4).prop_map(Value::List).boxed(),
        _ if numeric => number().prop_map(Value::Number).boxed(),
        _ => text().prop_map(Value::String).boxed(),
    }
}

/// A clause valid in `grammar`.
fn clause(grammar: Grammar) -> impl Strategy<Value = Clause> {
    prop::sample::select(filter_keys(grammar)).prop_flat_map(|(kind, ops)| {
        (key(kind), prop::sample::select(ops))
            .prop_flat_map(|(key, op)| value(&key, op).prop_map(move |value| Clause { key: key.clone(), op, value }))
    })
}

/// A filter valid in `grammar`, with the grammar.
fn filter(grammar: Grammar) -> impl Strategy<Value = (Grammar, Vec<Clause>)> {
    prop::collection::vec(clause(grammar), 0..5).prop_map(move |clauses| (grammar, clauses))
}

/// An order-by entry valid in `grammar`, with the grammar.
fn order(grammar: Grammar) -> impl Strategy<Value = (Grammar, OrderBy)> {
    (prop::sample::select(order_keys(grammar)), any::<bool>())
        .prop_flat_map(move |(kind, ascending)| key(kind).prop_map(move |key| (grammar, OrderBy { key, ascending })))
}

fn print_filter((_, clauses): &(Grammar, Vec<Clause>)) -> String {
    clauses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" AND ")
}

/// Checks the invariants of a successfully parsed clause.
fn assert_well_formed(clause: &Clause) {
    match (&clause.op, &clause.value) {
        (Op::IsNull | Op::IsNotNull, Value::None) => {}
        (Op::In | Op::NotIn, Value::List(items)) => assert!(!items.is_empty()),
        (_, Value::Number(number)) => assert!(number.is_finite()),
        (_, Value::String(_)) => {}
        (op, value) => panic!("{op:?} with {value:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parsing_never_panics_and_what_parses_round_trips(input in any_input()) {
        for grammar in GRAMMARS {
            match parse_filter(grammar, &input) {
                Ok(clauses) => {
                    clauses.iter().for_each(assert_well_formed);
                    let printed = print_filter(&(grammar, clauses.clone()));
                    prop_assert_eq!(parse_filter(grammar, &printed), Ok(clauses), "{}", printed);
                }
                Err(error) => prop_assert!(!error.message().is_empty()),
            }
            match parse_order_by(grammar, &input) {
                Ok(order) => {
                    let printed = order.to_string();
                    prop_assert_eq!(parse_order_by(grammar, &printed), Ok(order), "{}", printed);
                }
                Err(error) => prop_assert!(
                    error.message().starts_with("Invalid order_by clause"),
                    "{}",
                    error.message()
                ),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_filters_round_trip(generated in any_grammar().prop_flat_map(filter)) {
        let printed = print_filter(&generated);
        let (grammar, clauses) = generated;
        prop_assert_eq!(parse_filter(grammar, &printed), Ok(clauses), "{}", printed);
    }

    #[test]
    fn generated_order_bys_round_trip(generated in any_grammar().prop_flat_map(order)) {
        let (grammar, order) = generated;
        let printed = order.to_string();
        prop_assert_eq!(parse_order_by(grammar, &printed), Ok(order), "{}", printed);
    }
}

#[test]
fn pathological_inputs_at_the_length_limit_never_panic() {
    // No timing assertion here (tests do not time things); the filter benchmark belongs in bench/.
    let limit = plinth_filter::MAX_INPUT_LEN;
    let inputs = [
        "'".repeat(limit),
        "`".repeat(limit),
        "(".repeat(limit),
        "a".repeat(limit),
        " AND".repeat(limit / 4),
        "tags.a = 'x' AND ".repeat(limit / 17),
        format!("tags.a IN ({})", "'x',".repeat(limit / 5 - 3)),
        "=".repeat(limit),
        "é".repeat(limit / 2),
    ];
    for input in &inputs {
        for grammar in GRAMMARS {
            let _ = parse_filter(grammar, input);
            let _ = parse_order_by(grammar, input);
        }
    }
    let over = "a".repeat(limit + 1);
    for grammar in GRAMMARS {
        assert!(parse_filter(grammar, &over).is_err(), "inputs over the limit are refused");
    }
}
