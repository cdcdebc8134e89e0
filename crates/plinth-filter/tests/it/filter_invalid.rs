//! Table tests of filters that must be rejected, with the error text expected.

use crate::common::GRAMMARS;
use plinth_filter::{Grammar, parse_filter};

/// The prefix of every error about the shape of a filter.
const CLAUSES: &str = "Invalid clause(s) in filter string";

/// Parses every case and checks that it fails with a message containing the
/// expected text.
fn check(grammar: Grammar, cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        match parse_filter(grammar, input) {
            Ok(clauses) => panic!("{grammar:?}: {input:?} parsed to {clauses:?}"),
            Err(error) => assert!(
                error.message().contains(expected),
                "{grammar:?}: {input:?} failed with {:?}, expected it to contain {expected:?}",
                error.message()
            ),
        }
    }
}

#[test]
fn malformed_filters_are_invalid_clauses_in_every_grammar() {
    let cases = [
        "tags.a = 'x' OR tags.b = 'y'",
        "tags.a = 'x' or tags.b = 'y'",
        "(tags.a = 'x')",
        "tags.a = 'x' AND (tags.b = 'y')",
        "tags.a = 'x' AND",
        "tags.a = 'x' and   ",
        "AND tags.a = 'x'",
        "and",
        "tags.a = 'x' AND AND tags.b = 'y'",
        "tags.a = 'x' tags.b = 'y'",
        "tags.a = 'x' ; DROP TABLE runs",
        "tags.a = 'x' ANDtags.b = 'y'",
        "tags.a",
        "tags.a =",
        "tags.a == 'x'",
        "tags.a => 'x'",
        "tags.a =! 'x'",
        "tags.a ~ 'x'",
        "tags.a CONTAINS 'x'",
        "tags.a NOT LIKE 'x'",
        "tags.a NOT 'x'",
        "tags.a IS 'x'",
        "tags.a IS NOT 'x'",
        "tags.a ISNULL",
        "tags.a = 'unterminated",
        "tags.a = \"unterminated",
        "tags.`a = 'x'",
        "tags. = 'x'",
        "tags.",
        "tags.`` = 'x'",
        "tags.\"\" = 'x'",
        "'tags.a' = 'x'",
        ".a = 'x'",
        "= 'x'",
        "run name = 'x'",
        "tags.a IN ()",
        "tags.a IN ( )",
        "tags.a IN (1, 2)",
        "tags.a IN ('a',)",
        "tags.a IN ('a' 'b')",
        "tags.a IN ('a'",
        "tags.a IN (a)",
        "tags.a = 1e999",
        "tags.a = -1e400",
        "NOT tags.a = 'x'",
    ];
    for grammar in GRAMMARS {
        check(grammar, &cases.map(|input| (input, CLAUSES)));
    }
}

#[test]
fn malformed_filter_messages_say_what_is_wrong() {
    check(
        Grammar::Runs,
        &[
            (
                "metrics.a > 1 OR metrics.b < 2",
                "Invalid clause(s) in filter string: expected 'AND' or the end of the filter after 'metrics.a > 1', found 'OR metrics.b < 2'",
            ),
            ("(metrics.a > 1)", "parentheses are not supported"),
            ("metrics.a > 1 AND", "expected a comparison after the last 'AND'"),
            ("AND metrics.a > 1", "expected a comparison before 'AND'"),
            ("metrics.a", "expected a comparator after 'metrics.a', found the end of the input"),
            ("metrics.a >", "expected a value after '>', found the end of the input"),
            ("metrics.a == 1", "unknown comparator '=='"),
            ("tags.a NOT LIKE 'x'", "expected 'IN' after 'NOT'"),
            ("tags.a IS 'x'", "expected 'NULL' or 'NOT NULL' after 'IS'"),
            ("tags.a = 'x", "unterminated quoted string 'x (the closing ' is missing)"),
            ("metrics. > 1", "expected a key after 'metrics.'"),
            ("tags.`` = 'x'", "the key of 'tags.``' is empty"),
            ("metrics.a > 1e999", "the number '1e999' is out of range"),
            ("run_id IN ()", "expected a non-empty list of quoted string values"),
            ("run_id IN (1, 2)", "expected a quoted string in the list '(1, 2)', found '1, 2)'"),
        ],
    );
}

#[test]
fn runs() {
    check(
        Grammar::Runs,
        &[
            ("foo.bar = 'x'", "Invalid entity type 'foo'. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']"),
            ("Metrics.a > 1", "Invalid entity type 'Metrics'"),
            ("TAGS.a = 'x'", "Invalid entity type 'TAGS'"),
            ("unknown_attr = 'x'", "Invalid attribute key 'unknown_attr' specified. Valid keys are ['run_id', 'run_name',"),
            ("run_uuid = 'x'", "Invalid attribute key 'run_uuid'"),
            ("experiment_id = '1'", "Invalid attribute key 'experiment_id'"),
            ("Start_Time > 1", "Invalid attribute key 'Start_Time'"),
            ("datasets.foo = 'x'", "Invalid dataset key 'foo' specified. Valid keys are ['name', 'digest', 'context']"),
            ("metrics.a LIKE 'x'", "Invalid comparator 'LIKE' not one of '['=', '!=', '>', '>=', '<', '<=']' for metric 'a'"),
            ("metrics.a IS NULL", "Invalid comparator 'IS NULL'"),
            ("metrics.a IN ('1')", "Invalid comparator 'IN'"),
            ("params.x > '1'", "Invalid comparator '>' not one of '['=', '!=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL']' for param 'x'"),
            ("tags.x IN ('a')", "Invalid comparator 'IN' not one of"),
            ("tags.x NOT IN ('a')", "Invalid comparator 'NOT IN' not one of"),
            ("start_time LIKE '1'", "for numeric attribute 'start_time'"),
            ("created IS NULL", "Invalid comparator 'IS NULL'"),
            (
                "status IS NULL",
                "Invalid comparator 'IS NULL' not one of '['=', '!=', 'LIKE', 'ILIKE', 'IN', 'NOT IN']' for attribute 'status'",
            ),
            ("status > 'a'", "Invalid comparator '>'"),
            ("datasets.name > 'a'", "for dataset 'name'"),
            ("datasets.context IS NULL", "Invalid comparator 'IS NULL'"),
            ("metrics.a > 'x'", "Expected numeric value type for metric 'a'. Found 'x'"),
            ("metrics.a > abc", "Expected numeric value type for metric 'a'. Found abc"),
            ("metrics.a > 1;", "Expected numeric value type for metric 'a'. Found 1;"),
            ("start_time > '5'", "Expected numeric value type for numeric attribute 'start_time'. Found '5'"),
            ("params.x = 1", "Expected a quoted string value for param 'x' (e.g. 'my-value'). Got value 1"),
            ("params.x = abc", "Expected a quoted string value for param 'x'"),
            ("tags.x = NULL", "Expected a quoted string value for tag 'x'"),
            ("tags.x = `v`", "backticks quote keys"),
            ("status = ('a')", "Expected a quoted string value for attribute 'status'"),
            ("datasets.name = 1", "Expected a quoted string value for dataset 'name'"),
            ("run_id IN 'a'", "Expected a list of quoted string values for 'IN' with attribute 'run_id' (e.g. ('a', 'b')). Got value 'a'"),
            ("datasets.name NOT IN 'a'", "Expected a list of quoted string values for 'NOT IN'"),
            // The first bad clause is reported.
            ("metrics.a > 1 AND params.b > 1", "for param 'b'"),
        ],
    );
}

#[test]
fn experiments() {
    check(
        Grammar::Experiments,
        &[
            ("metrics.a > 1", "Invalid entity type 'metrics'. Valid values are ['attribute', 'tag']"),
            ("params.a = 'x'", "Invalid entity type 'params'"),
            ("datasets.name = 'x'", "Invalid entity type 'datasets'"),
            (
                "run_id = 'x'",
                "Invalid attribute key 'run_id' specified. Valid keys are ['name', 'experiment_id', 'creation_time', 'last_update_time']",
            ),
            ("creation_timestamp > 1", "Invalid attribute key 'creation_timestamp'"),
            ("name IN ('a')", "Invalid comparator 'IN' not one of '['=', '!=', 'LIKE', 'ILIKE']' for attribute 'name'"),
            ("name IS NULL", "Invalid comparator 'IS NULL'"),
            ("experiment_id LIKE '1%'", "Invalid comparator 'LIKE' not one of '['=', '!=', 'IN', 'NOT IN']' for attribute 'experiment_id'"),
            ("experiment_id = 1.5", "Expected a quoted string value for attribute 'experiment_id'"),
            ("experiment_id = -1", "Expected a quoted string value for attribute 'experiment_id'"),
            ("experiment_id IN (1, 2)", CLAUSES),
            ("creation_time > 'x'", "Expected numeric value type for numeric attribute 'creation_time'"),
            ("tags.a > 'x'", "Invalid comparator '>'"),
            ("tags.a = 1", "Expected a quoted string value for tag 'a'"),
        ],
    );
}

#[test]
fn logged_models() {
    check(
        Grammar::LoggedModels,
        &[
            ("datasets.name = 'x'", "Invalid entity type 'datasets'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"),
            ("run_id = 'x'", "Invalid attribute key 'run_id'"),
            ("start_time > 1", "Invalid attribute key 'start_time'"),
            ("metrics.a = 'x'", "Expected numeric value type for metric 'a'"),
            ("creation_time LIKE 'x'", "for numeric attribute 'creation_timestamp'"),
            ("model_type IS NULL", "Invalid comparator 'IS NULL'"),
            ("params.a IN ('x')", "Invalid comparator 'IN'"),
        ],
    );
}

#[test]
fn registered_models() {
    check(
        Grammar::RegisteredModels,
        &[
            ("version_number = 1", "Invalid attribute key 'version_number' specified. Valid keys are ['name']"),
            ("creation_timestamp > 1", "Invalid attribute key 'creation_timestamp'"),
            ("timestamp > 1", "Invalid attribute key 'timestamp'"),
            ("metrics.a > 1", "Invalid entity type 'metrics'. Valid values are ['attribute', 'tag']"),
            ("name > 'a'", "Invalid comparator '>'"),
            ("name = 1", "Expected a quoted string value for attribute 'name'"),
            ("tags.t IN ('a')", "Invalid comparator 'IN'"),
        ],
    );
}

#[test]
fn model_versions() {
    check(
        Grammar::ModelVersions,
        &[
            ("source_path IN ('a')", "Invalid comparator 'IN' not one of '['=', '!=', 'LIKE', 'ILIKE']' for attribute 'source_path'"),
            ("version_number = '1'", "Expected numeric value type for numeric attribute 'version_number'. Found '1'"),
            ("version_number LIKE '1'", "Invalid comparator 'LIKE'"),
            ("creation_timestamp > 1", "Invalid attribute key 'creation_timestamp'"),
            ("params.a = 'x'", "Invalid entity type 'params'. Valid values are ['attribute', 'tag']"),
            ("run_id = 1", "Expected a quoted string value for attribute 'run_id'"),
        ],
    );
}

#[test]
fn long_input_is_rejected_quickly_with_a_clear_message() {
    let long = format!("tags.a = '{}'", "x".repeat(70_000));
    for grammar in GRAMMARS {
        let error = parse_filter(grammar, &long).expect_err("longer than the limit");
        assert_eq!(error.message(), "Invalid filter string: it is 70011 bytes long, which exceeds the limit of 65536 bytes");
    }
}

#[test]
fn messages_quote_at_most_a_snippet_of_long_input() {
    let key = "k".repeat(10_000);
    let error = parse_filter(Grammar::Runs, &format!("params.{key} > 1")).expect_err("bad comparator");
    assert!(error.message().len() < 300, "{}", error.message());
    assert!(error.message().contains("..."));
}
