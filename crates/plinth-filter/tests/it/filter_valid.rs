//! Table tests of filters that must parse, per grammar.

use crate::common::{GRAMMARS, attr, clause, dataset, list, metric, num, param, string, tag};
use plinth_filter::{Attr, Clause, DatasetField, Grammar, Op, Value, parse_filter};

/// Parses every case and compares it with the expected clauses.
fn check(grammar: Grammar, cases: Vec<(&str, Vec<Clause>)>) {
    for (input, expected) in cases {
        match parse_filter(grammar, input) {
            Ok(clauses) => assert_eq!(clauses, expected, "{grammar:?}: {input:?}"),
            Err(error) => panic!("{grammar:?}: {input:?} failed: {error}"),
        }
    }
}

#[test]
fn empty_and_blank_filters_match_everything() {
    for grammar in GRAMMARS {
        for input in ["", " ", "\t\n  \r\n", "\u{3000}"] {
            assert_eq!(parse_filter(grammar, input), Ok(vec![]), "{input:?}");
        }
    }
}

#[test]
fn runs() {
    use Op::{Eq, Ge, Gt, ILike, In, IsNotNull, IsNull, Le, Like, Lt, Ne, NotIn};

    check(
        Grammar::Runs,
        vec![
            // Metrics, with every numeric comparator and number form.
            ("metrics.acc > 0.5", vec![clause(metric("acc"), Gt, num(0.5))]),
            ("metric.acc >= 1", vec![clause(metric("acc"), Ge, num(1.0))]),
            ("metrics.loss < -1.5e3", vec![clause(metric("loss"), Lt, num(-1500.0))]),
            ("metrics.loss <= 1E-3", vec![clause(metric("loss"), Le, num(0.001))]),
            ("metrics.x = 2", vec![clause(metric("x"), Eq, num(2.0))]),
            ("metrics.x != 2", vec![clause(metric("x"), Ne, num(2.0))]),
            ("metrics.x <> 2", vec![clause(metric("x"), Ne, num(2.0))]),
            ("metrics.x>+3", vec![clause(metric("x"), Gt, num(3.0))]),
            ("metrics.x=-.5", vec![clause(metric("x"), Eq, num(-0.5))]),
            ("metrics.x = 5.", vec![clause(metric("x"), Eq, num(5.0))]),
            ("metrics.x = 1e+2", vec![clause(metric("x"), Eq, num(100.0))]),
            ("metrics.t > 1700000000000", vec![clause(metric("t"), Gt, num(1_700_000_000_000.0))]),
            // Key quoting forms.
            ("metrics.`f1 score` > 0.9", vec![clause(metric("f1 score"), Gt, num(0.9))]),
            ("metrics.\"f1 score\" > 0.9", vec![clause(metric("f1 score"), Gt, num(0.9))]),
            ("metrics.a.b > 1", vec![clause(metric("a.b"), Gt, num(1.0))]),
            ("metrics.`a``b` > 1", vec![clause(metric("a`b"), Gt, num(1.0))]),
            ("metrics.\"a\"\"b\" > 1", vec![clause(metric("a\"b"), Gt, num(1.0))]),
            ("metrics.`a=b` > 1", vec![clause(metric("a=b"), Gt, num(1.0))]),
            ("metrics.précision > 1", vec![clause(metric("précision"), Gt, num(1.0))]),
            ("`metrics`.a > 1", vec![clause(metric("a"), Gt, num(1.0))]),
            // Params, with every string comparator.
            ("params.alpha = '0.1'", vec![clause(param("alpha"), Eq, string("0.1"))]),
            ("param.alpha != '0.1'", vec![clause(param("alpha"), Ne, string("0.1"))]),
            ("parameters.alpha LIKE '0.%'", vec![clause(param("alpha"), Like, string("0.%"))]),
            ("parameter.alpha ILIKE '%A%'", vec![clause(param("alpha"), ILike, string("%A%"))]),
            ("params.`a-b` = 'x'", vec![clause(param("a-b"), Eq, string("x"))]),
            ("params.a-b = 'x'", vec![clause(param("a-b"), Eq, string("x"))]),
            ("params.alpha IS NULL", vec![clause(param("alpha"), IsNull, Value::None)]),
            ("params.alpha is not null", vec![clause(param("alpha"), IsNotNull, Value::None)]),
            // Tags, with string quoting forms.
            ("tags.mlflow.user = 'x'", vec![clause(tag("mlflow.user"), Eq, string("x"))]),
            ("tags.\"mlflow.runName\" = 'r'", vec![clause(tag("mlflow.runName"), Eq, string("r"))]),
            ("tag.t = \"double\"", vec![clause(tag("t"), Eq, string("double"))]),
            ("tags.t = 'it''s'", vec![clause(tag("t"), Eq, string("it's"))]),
            ("tags.t = \"say \"\"hi\"\"\"", vec![clause(tag("t"), Eq, string("say \"hi\""))]),
            ("tags.t = 'say \"hi\"'", vec![clause(tag("t"), Eq, string("say \"hi\""))]),
            ("tags.t = 'back\\slash'", vec![clause(tag("t"), Eq, string("back\\slash"))]),
            ("tags.t = ''", vec![clause(tag("t"), Eq, string(""))]),
            ("tags.t = 'multi\nline'", vec![clause(tag("t"), Eq, string("multi\nline"))]),
            ("tags.t = 'unicode ✓ 🎉'", vec![clause(tag("t"), Eq, string("unicode ✓ 🎉"))]),
            ("tags.t like '%a%'", vec![clause(tag("t"), Like, string("%a%"))]),
            ("tags.t IlIkE 'A%'", vec![clause(tag("t"), ILike, string("A%"))]),
            ("tags.t LIKE'x'", vec![clause(tag("t"), Like, string("x"))]),
            ("tags.t IS NULL", vec![clause(tag("t"), IsNull, Value::None)]),
            ("tags.t IS \t NOT\n NULL", vec![clause(tag("t"), IsNotNull, Value::None)]),
            ("tags.`and` = 'or'", vec![clause(tag("and"), Eq, string("or"))]),
            // Attributes, bare and prefixed, with aliases.
            ("run_id = 'abc'", vec![clause(attr(Attr::RunId), Eq, string("abc"))]),
            ("attributes.run_id IN ('a', 'b')", vec![clause(attr(Attr::RunId), In, list(&["a", "b"]))]),
            ("attribute.run_id NOT IN ('a')", vec![clause(attr(Attr::RunId), NotIn, list(&["a"]))]),
            ("run_id not in('a','b')", vec![clause(attr(Attr::RunId), NotIn, list(&["a", "b"]))]),
            ("attr.status = 'FINISHED'", vec![clause(attr(Attr::Status), Eq, string("FINISHED"))]),
            ("status IN ('RUNNING')", vec![clause(attr(Attr::Status), In, list(&["RUNNING"]))]),
            ("run.user_id = 'me'", vec![clause(attr(Attr::UserId), Eq, string("me"))]),
            ("run_name LIKE 'x%'", vec![clause(attr(Attr::RunName), Like, string("x%"))]),
            ("`Run Name` = 'x'", vec![clause(attr(Attr::RunName), Eq, string("x"))]),
            ("\"run name\" = 'x'", vec![clause(attr(Attr::RunName), Eq, string("x"))]),
            ("attributes.`Run name` != 'x'", vec![clause(attr(Attr::RunName), Ne, string("x"))]),
            ("artifact_uri ILIKE 's3://%'", vec![clause(attr(Attr::ArtifactUri), ILike, string("s3://%"))]),
            ("lifecycle_stage = 'active'", vec![clause(attr(Attr::LifecycleStage), Eq, string("active"))]),
            ("start_time > 0", vec![clause(attr(Attr::StartTime), Gt, num(0.0))]),
            ("created >= 1700000000000", vec![clause(attr(Attr::StartTime), Ge, num(1.7e12))]),
            ("attributes.Created < 5", vec![clause(attr(Attr::StartTime), Lt, num(5.0))]),
            ("end_time <= 10", vec![clause(attr(Attr::EndTime), Le, num(10.0))]),
            ("end_time != 10", vec![clause(attr(Attr::EndTime), Ne, num(10.0))]),
            // Datasets.
            ("datasets.name = 'ds'", vec![clause(dataset(DatasetField::Name), Eq, string("ds"))]),
            ("dataset.digest != 'abc'", vec![clause(dataset(DatasetField::Digest), Ne, string("abc"))]),
            ("datasets.context LIKE 'train%'", vec![clause(dataset(DatasetField::Context), Like, string("train%"))]),
            ("datasets.context ILIKE 'T%'", vec![clause(dataset(DatasetField::Context), ILike, string("T%"))]),
            ("datasets.name IN ('a','b')", vec![clause(dataset(DatasetField::Name), In, list(&["a", "b"]))]),
            ("datasets.digest NOT IN ('x')", vec![clause(dataset(DatasetField::Digest), NotIn, list(&["x"]))]),
            // Conjunctions and whitespace.
            (
                "metrics.a > 1 AND params.b = 'x' and tags.c IS NULL",
                vec![clause(metric("a"), Gt, num(1.0)), clause(param("b"), Eq, string("x")), clause(tag("c"), IsNull, Value::None)],
            ),
            ("  metrics.a>1   AnD   tags.b='c'  ", vec![clause(metric("a"), Gt, num(1.0)), clause(tag("b"), Eq, string("c"))]),
            ("metrics.a > 1\nAND\tmetrics.b < 2", vec![clause(metric("a"), Gt, num(1.0)), clause(metric("b"), Lt, num(2.0))]),
            ("tags.a = 'x AND y' AND tags.b = 'OR z'", vec![clause(tag("a"), Eq, string("x AND y")), clause(tag("b"), Eq, string("OR z"))]),
            (
                "tags.a IS NULL AND tags.b IS NOT NULL",
                vec![clause(tag("a"), IsNull, Value::None), clause(tag("b"), IsNotNull, Value::None)],
            ),
            ("metrics.a > 1 AND metrics.a > 1", vec![clause(metric("a"), Gt, num(1.0)), clause(metric("a"), Gt, num(1.0))]),
        ],
    );
}

#[test]
fn experiments() {
    use Op::{Eq, Gt, ILike, In, IsNotNull, IsNull, Le, Like, Ne, NotIn};

    check(
        Grammar::Experiments,
        vec![
            ("name = 'exp'", vec![clause(attr(Attr::Name), Eq, string("exp"))]),
            ("name != 'exp'", vec![clause(attr(Attr::Name), Ne, string("exp"))]),
            ("name LIKE 'e%'", vec![clause(attr(Attr::Name), Like, string("e%"))]),
            ("attribute.name ILIKE '%E'", vec![clause(attr(Attr::Name), ILike, string("%E"))]),
            ("experiment_id = '1'", vec![clause(attr(Attr::ExperimentId), Eq, string("1"))]),
            ("experiment_id = 1", vec![clause(attr(Attr::ExperimentId), Eq, string("1"))]),
            ("experiment_id != 42", vec![clause(attr(Attr::ExperimentId), Ne, string("42"))]),
            ("experiment_id IN ('1','2')", vec![clause(attr(Attr::ExperimentId), In, list(&["1", "2"]))]),
            ("experiment_id NOT IN ('3')", vec![clause(attr(Attr::ExperimentId), NotIn, list(&["3"]))]),
            ("creation_time > 100", vec![clause(attr(Attr::CreationTime), Gt, num(100.0))]),
            ("last_update_time <= 5", vec![clause(attr(Attr::LastUpdateTime), Le, num(5.0))]),
            ("tags.k = 'v'", vec![clause(tag("k"), Eq, string("v"))]),
            ("tag.k IS NULL", vec![clause(tag("k"), IsNull, Value::None)]),
            ("tags.k IS NOT NULL", vec![clause(tag("k"), IsNotNull, Value::None)]),
            ("tags.`k k` LIKE 'v%'", vec![clause(tag("k k"), Like, string("v%"))]),
            (
                "name LIKE 'a%' AND tags.team = 'ml' AND creation_time > 0",
                vec![
                    clause(attr(Attr::Name), Like, string("a%")),
                    clause(tag("team"), Eq, string("ml")),
                    clause(attr(Attr::CreationTime), Gt, num(0.0)),
                ],
            ),
        ],
    );
}

#[test]
fn logged_models() {
    use Op::{Eq, Ge, Gt, ILike, In, IsNull, Like, Lt, NotIn};

    check(
        Grammar::LoggedModels,
        vec![
            ("model_id = 'm-1'", vec![clause(attr(Attr::ModelId), Eq, string("m-1"))]),
            ("model_id NOT IN ('a')", vec![clause(attr(Attr::ModelId), NotIn, list(&["a"]))]),
            ("name LIKE 'x%'", vec![clause(attr(Attr::Name), Like, string("x%"))]),
            ("model_type = 'sklearn'", vec![clause(attr(Attr::ModelType), Eq, string("sklearn"))]),
            ("status = 'READY'", vec![clause(attr(Attr::Status), Eq, string("READY"))]),
            ("source_run_id IN ('r1')", vec![clause(attr(Attr::SourceRunId), In, list(&["r1"]))]),
            ("creation_timestamp > 5", vec![clause(attr(Attr::CreationTimestamp), Gt, num(5.0))]),
            ("creation_time > 5", vec![clause(attr(Attr::CreationTimestamp), Gt, num(5.0))]),
            ("last_updated_timestamp < 5", vec![clause(attr(Attr::LastUpdatedTimestamp), Lt, num(5.0))]),
            ("last_update_time < 5", vec![clause(attr(Attr::LastUpdatedTimestamp), Lt, num(5.0))]),
            ("metrics.acc >= 0.9", vec![clause(metric("acc"), Ge, num(0.9))]),
            ("params.lr = '0.1'", vec![clause(param("lr"), Eq, string("0.1"))]),
            ("params.lr IS NULL", vec![clause(param("lr"), IsNull, Value::None)]),
            ("tags.t ILIKE 'x'", vec![clause(tag("t"), ILike, string("x"))]),
        ],
    );
}

#[test]
fn registered_models() {
    use Op::{Eq, ILike, In, IsNotNull, Like, Ne, NotIn};

    check(
        Grammar::RegisteredModels,
        vec![
            ("name = 'm'", vec![clause(attr(Attr::Name), Eq, string("m"))]),
            ("name != 'm'", vec![clause(attr(Attr::Name), Ne, string("m"))]),
            ("name LIKE 'm%'", vec![clause(attr(Attr::Name), Like, string("m%"))]),
            ("name ILIKE 'M%'", vec![clause(attr(Attr::Name), ILike, string("M%"))]),
            ("name IN ('a','b')", vec![clause(attr(Attr::Name), In, list(&["a", "b"]))]),
            ("name NOT IN ('c')", vec![clause(attr(Attr::Name), NotIn, list(&["c"]))]),
            ("attribute.name = 'x'", vec![clause(attr(Attr::Name), Eq, string("x"))]),
            ("tags.t = 'v'", vec![clause(tag("t"), Eq, string("v"))]),
            ("tags.t IS NOT NULL", vec![clause(tag("t"), IsNotNull, Value::None)]),
        ],
    );
}

#[test]
fn model_versions() {
    use Op::{Eq, Ge, Gt, In, IsNull, Like, NotIn};

    check(
        Grammar::ModelVersions,
        vec![
            ("name = 'm'", vec![clause(attr(Attr::Name), Eq, string("m"))]),
            ("name NOT IN ('x')", vec![clause(attr(Attr::Name), NotIn, list(&["x"]))]),
            ("run_id = 'r'", vec![clause(attr(Attr::RunId), Eq, string("r"))]),
            ("run_id IN ('a','b')", vec![clause(attr(Attr::RunId), In, list(&["a", "b"]))]),
            ("source_path LIKE 's3://%'", vec![clause(attr(Attr::SourcePath), Like, string("s3://%"))]),
            ("version_number = 3", vec![clause(attr(Attr::VersionNumber), Eq, num(3.0))]),
            ("version_number >= 2", vec![clause(attr(Attr::VersionNumber), Ge, num(2.0))]),
            ("tags.t = 'v'", vec![clause(tag("t"), Eq, string("v"))]),
            ("tags.t IS NULL", vec![clause(tag("t"), IsNull, Value::None)]),
            (
                "name = 'm' AND version_number > 1",
                vec![clause(attr(Attr::Name), Eq, string("m")), clause(attr(Attr::VersionNumber), Gt, num(1.0))],
            ),
        ],
    );
}
