//! Table-driven tests of the repository format and its structural validation.
use super::*;

const EXAMPLE: &str = r#"
[[entity]]
name = "driver"
join_keys = [{ name = "driver_id", type = "int64" }]

[[source]]
name = "driver_stats"
path = "data/driver_stats"
timestamp_field = "event_timestamp"
created_timestamp_column = "created"
field_mapping = { conv = "conv_rate" }

[[source]]
name = "driver_push"
push_to = "driver_stats"

[[feature_view]]
name = "driver_hourly"
entities = ["driver"]
source = "driver_push"
ttl = "1d12h"
features = [
  { name = "conv_rate", type = "float32" },
  { name = "trips", type = "int64" },
]
tags = { team = "ranking" }

[[feature_service]]
name = "ranking"
features = ["driver_hourly:trips", "driver_hourly"]
"#;

#[test]
fn the_example_parses_and_validates() {
    let repo = parse_str(EXAMPLE, Path::new("/repo")).expect("parses");
    repo.validate().expect("valid");
    assert_eq!(repo.sources[0].input, SourceInput::Parquet { path: "/repo/data/driver_stats".into() });
    let view = repo.view("driver_hourly").expect("view");
    assert_eq!(view.ttl_secs, Some(36 * 3600));
    assert!(view.online);
    let refs = repo.resolve_refs(&["driver_hourly:trips".into(), "driver_hourly".into()]).expect("refs");
    assert_eq!(refs.len(), 3);
    assert_eq!(repo.canonical().len(), 5);
}

#[test]
fn canonical_specs_are_stable_and_change_with_content() {
    let a = parse_str(EXAMPLE, Path::new("/repo")).expect("parses").canonical();
    let b = parse_str(EXAMPLE, Path::new("/repo")).expect("parses").canonical();
    assert_eq!(a, b);
    let changed = parse_str(&EXAMPLE.replace("1d12h", "2d"), Path::new("/repo")).expect("parses").canonical();
    let view = |c: &[Canonical]| c.iter().find(|d| d.kind == FeatureKind::FeatureView).map(|d| d.digest.clone());
    assert_ne!(view(&a), view(&changed));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[[entity]]
name = "1bad"
join_keys = []

[[feature_view]]
name = "v"
entities = ["missing"]
source = "nowhere"
ttl = 0
features = [{ name = "x", type = "int64" }, { name = "x", type = "int64" }]

[[feature_service]]
name = "s"
features = ["v:nope", "ghost"]
"#;
    let repo = parse_str(text, Path::new("/repo")).expect("parses");
    let Err(Error::Problems(problems)) = repo.validate() else { panic!("expected problems") };
    let all = problems.join("\n");
    for needle in [
        "'1bad' is not a valid name",
        "has no join keys",
        "entity 'missing' is not defined",
        "source 'nowhere'",
        "ttl 0",
        "'x' is defined twice",
        "no feature 'nope'",
        "'ghost' is not defined",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unknown_fields_and_bad_types_are_refused() {
    assert!(parse_str("[[entity]]\nname = \"d\"\njoin_keys = []\ncolour = 1\n", Path::new("/")).is_err());
    let err =
        parse_str("[[entity]]\nname = \"d\"\njoin_keys = [{ name = \"k\", type = \"decimal\" }]\n", Path::new("/")).expect_err("bad type");
    assert!(err.to_string().contains("unknown type 'decimal'"), "{err}");
    let err = parse_str("[[source]]\nname = \"s\"\npath = \"a\"\nsql = \"select 1\"\n", Path::new("/")).expect_err("two inputs");
    assert!(err.to_string().contains("exactly one of"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90"), Ok(90));
    assert_eq!(parse_duration("15m"), Ok(900));
    assert_eq!(parse_duration("1d12h"), Ok(129_600));
    assert_eq!(parse_duration("2w"), Ok(1_209_600));
    assert!(parse_duration("1x").is_err());
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("5d3").is_err());
    assert_eq!(parse_duration("1h 30m"), Ok(5_400));
    assert!(parse_duration("1500ms").is_err(), "not whole seconds");
    assert!(parse_duration("").is_err());
}

#[test]
fn sql_cycles_are_found() {
    let text = r#"
[[source]]
name = "a"
sql = "select * from b"
inputs = ["b"]
timestamp_field = "ts"

[[source]]
name = "b"
sql = "select * from a"
inputs = ["a"]
timestamp_field = "ts"
"#;
    let repo = parse_str(text, Path::new("/")).expect("parses");
    let err = repo.validate().expect_err("cycle");
    assert!(err.to_string().contains("cycle"), "{err}");
}
