//! Table tests of order-by entries, valid and invalid, per grammar.

use crate::common::{GRAMMARS, attr, metric, param, tag};
use plinth_filter::{Attr, Grammar, Key, parse_order_by};

/// Parses every case and compares it with the expected key and direction.
fn check_valid(grammar: Grammar, cases: &[(&str, Key, bool)]) {
    for (input, key, ascending) in cases {
        match parse_order_by(grammar, input) {
            Ok(order) => {
                assert_eq!(&order.key, key, "{grammar:?}: {input:?}");
                assert_eq!(order.ascending, *ascending, "{grammar:?}: {input:?}");
            }
            Err(error) => panic!("{grammar:?}: {input:?} failed: {error}"),
        }
    }
}

/// Parses every case and checks that it fails with an `Invalid order_by
/// clause` message containing the expected text.
fn check_invalid(grammar: Grammar, cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        match parse_order_by(grammar, input) {
            Ok(order) => panic!("{grammar:?}: {input:?} parsed to {order:?}"),
            Err(error) => {
                assert!(error.message().starts_with("Invalid order_by clause"), "{grammar:?}: {input:?} failed with {:?}", error.message());
                assert!(
                    error.message().contains(expected),
                    "{grammar:?}: {input:?} failed with {:?}, expected it to contain {expected:?}",
                    error.message()
                );
            }
        }
    }
}

#[test]
fn runs() {
    check_valid(
        Grammar::Runs,
        &[
            ("metrics.acc", metric("acc"), true),
            ("metrics.`f1 score` DESC", metric("f1 score"), false),
            ("metric.a asc", metric("a"), true),
            ("  metrics.a   Desc  ", metric("a"), false),
            ("metrics.a.b DESC", metric("a.b"), false),
            ("params.p DESC", param("p"), false),
            ("tags.`mlflow.runName` ASC", tag("mlflow.runName"), true),
            ("tags.mlflow.runName", tag("mlflow.runName"), true),
            ("start_time DESC", attr(Attr::StartTime), false),
            ("attributes.start_time desc", attr(Attr::StartTime), false),
            ("attribute.end_time", attr(Attr::EndTime), true),
            ("created DESC", attr(Attr::StartTime), false),
            ("Created", attr(Attr::StartTime), true),
            ("run_id", attr(Attr::RunId), true),
            ("run_name ASC", attr(Attr::RunName), true),
            ("`Run Name` DESC", attr(Attr::RunName), false),
            ("user_id", attr(Attr::UserId), true),
            ("status", attr(Attr::Status), true),
            ("artifact_uri", attr(Attr::ArtifactUri), true),
        ],
    );
    check_invalid(
        Grammar::Runs,
        &[
            ("", "expected an identifier"),
            ("   ", "expected an identifier"),
            ("metrics.a UP", "expected ASC, DESC or the end after 'metrics.a', found 'UP'"),
            ("metrics.a DESC extra", "expected the end after the direction, found 'extra'"),
            ("metrics.a DESCENDING", "expected ASC, DESC or the end"),
            ("metrics.a > 1", "found '> 1'"),
            ("metrics.a, metrics.b", "found ', metrics.b'"),
            ("(metrics.a)", "parentheses are not supported"),
            ("metrics. DESC", "expected a key after 'metrics.'"),
            ("metrics.`a DESC", "unterminated quoted string"),
            ("lifecycle_stage", "Invalid attribute key 'lifecycle_stage' specified"),
            ("datasets.name", "Invalid entity type 'datasets'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"),
            ("foo.bar DESC", "Invalid entity type 'foo'"),
        ],
    );
}

#[test]
fn experiments() {
    check_valid(
        Grammar::Experiments,
        &[
            ("name", attr(Attr::Name), true),
            ("experiment_id DESC", attr(Attr::ExperimentId), false),
            ("creation_time", attr(Attr::CreationTime), true),
            ("last_update_time ASC", attr(Attr::LastUpdateTime), true),
            ("attribute.name DESC", attr(Attr::Name), false),
        ],
    );
    check_invalid(
        Grammar::Experiments,
        &[
            ("tags.a", "Invalid entity type 'tags'. Valid values are ['attribute']"),
            ("metrics.a", "Invalid entity type 'metrics'"),
            ("run_id", "Invalid attribute key 'run_id'"),
            ("creation_timestamp", "Invalid attribute key 'creation_timestamp'"),
        ],
    );
}

#[test]
fn logged_models() {
    check_valid(
        Grammar::LoggedModels,
        &[
            ("name", attr(Attr::Name), true),
            ("model_id DESC", attr(Attr::ModelId), false),
            ("creation_timestamp DESC", attr(Attr::CreationTimestamp), false),
            ("creation_time", attr(Attr::CreationTimestamp), true),
            ("last_updated_timestamp", attr(Attr::LastUpdatedTimestamp), true),
            ("metrics.acc DESC", metric("acc"), false),
        ],
    );
    check_invalid(
        Grammar::LoggedModels,
        &[
            ("params.a", "Invalid entity type 'params'. Valid values are ['metric', 'attribute']"),
            ("tags.a", "Invalid entity type 'tags'"),
            ("model_type", "Invalid attribute key 'model_type'"),
            ("status", "Invalid attribute key 'status'"),
        ],
    );
}

#[test]
fn registered_models() {
    check_valid(
        Grammar::RegisteredModels,
        &[
            ("name", attr(Attr::Name), true),
            ("name DESC", attr(Attr::Name), false),
            ("timestamp DESC", attr(Attr::CreationTimestamp), false),
            ("creation_timestamp", attr(Attr::CreationTimestamp), true),
            ("last_updated_timestamp ASC", attr(Attr::LastUpdatedTimestamp), true),
        ],
    );
    check_invalid(
        Grammar::RegisteredModels,
        &[
            ("version_number", "Invalid attribute key 'version_number'"),
            ("tags.a", "Invalid entity type 'tags'"),
            ("start_time DESC", "Invalid attribute key 'start_time'"),
        ],
    );
}

#[test]
fn model_versions() {
    check_valid(
        Grammar::ModelVersions,
        &[
            ("name", attr(Attr::Name), true),
            ("version_number DESC", attr(Attr::VersionNumber), false),
            ("creation_timestamp", attr(Attr::CreationTimestamp), true),
            ("last_updated_timestamp DESC", attr(Attr::LastUpdatedTimestamp), false),
        ],
    );
    check_invalid(
        Grammar::ModelVersions,
        &[
            ("run_id", "Invalid attribute key 'run_id'"),
            ("source_path", "Invalid attribute key 'source_path'"),
            ("tags.a", "Invalid entity type 'tags'"),
            ("timestamp", "Invalid attribute key 'timestamp'"),
        ],
    );
}

#[test]
fn long_input_is_rejected() {
    let long = format!("metrics.{}", "m".repeat(70_000));
    for grammar in GRAMMARS {
        let error = parse_order_by(grammar, &long).expect_err("longer than the limit");
        assert!(error.message().starts_with("Invalid order_by clause 'metrics.mmm"));
        assert!(error.message().ends_with("exceeds the limit of 65536 bytes"));
        assert!(error.message().len() < 200);
    }
}
