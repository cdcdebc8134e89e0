//! The registry service's gates and moves, table-driven at the service level, on a real SQLite
//! store: each case sets one gate on a fresh model, makes one move, and states the outcome (the
//! error code and what its message must name, or success), in the `check(input, expected)` style
//! of `plinth-filter`'s tests.
//!
//! Every model has the same five versions:
//!
//! | version | source | run's `auc` | tags |
//! |---|---|---|---|
//! | 1 | `runs:/<run>/model` | 0.80 | |
//! | 2 | `runs:/<run>/model` | 0.90 | `model_card` |
//! | 3 | `runs:/<run>/model` | 0.95 | |
//! | 4 | `s3://elsewhere/model`, `run_id` of a 0.99 run (not provably from it) | (0.99) | `model_card` |
//! | 5 | `runs:/<a run this server does not have>/model` | none | `model_card` |

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use plinth_core::ErrorCode;
use plinth_core::HasErrorCode;
use plinth_core::audit::Actor;
use plinth_core::ids::{ExperimentId, RunId};
use plinth_core::registry::GateSpec;
use plinth_core::tracking::{KeyValue, Metric};
use plinth_registry::webhooks::Outbox;
use plinth_registry::{CreateVersion, RegistryConfig, RegistryService, Viewer};
use plinth_store::TrackingStore;
use plinth_store::audit::Record;
use plinth_store::tracking::{ArtifactLocation, NewExperiment, NewRun};
use plinth_store_sql::{SqlConfig, SqlStore};

struct World {
    registry: RegistryService,
    tracking: Arc<SqlStore>,
    experiment: ExperimentId,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let config = SqlConfig { url, max_connections: 4, acquire_timeout: Duration::from_secs(10), sqlite_synchronous_full: false };
    let store = Arc::new(SqlStore::connect(&config).await.expect("open the store"));
    let experiment = store
        .create_experiment(
            NewExperiment {
                name: "gates".into(),
                artifact_location: ArtifactLocation::UnderRoot("mlflow-artifacts:".into()),
                tags: vec![],
                now: 1,
            },
            Record::none(),
        )
        .await
        .expect("experiment");
    let registry = RegistryService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Outbox::new(store.clone()),
        RegistryConfig { promotion_ttl_secs: 3600, max_promotion_ttl_secs: 86_400 },
    );
    World { registry, tracking: store, experiment, _dir: dir }
}

fn actor() -> Actor {
    Actor::new("alice")
}

impl World {
    async fn run_with_auc(&self, auc: f64) -> String {
        let run_id = RunId::generate();
        let run = NewRun {
            run_id: run_id.clone(),
            experiment_id: self.experiment.clone(),
            user_id: "alice".into(),
            run_name: format!("auc-{auc}"),
            start_time: 1,
            tags: vec![],
        };
        self.tracking.create_run(run, Record::none()).await.expect("run");
        let metric =
            Metric { key: "auc".into(), value: auc, timestamp: 1, step: 0, dataset_name: None, dataset_digest: None, model_id: None };
        self.tracking.log_batch(&run_id, &[metric], &[], &[], Record::none()).await.expect("metric");
        run_id.as_str().to_owned()
    }

    async fn version(&self, model: &str, source: String, run_id: Option<String>, card: bool) {
        let tags = if card { vec![KeyValue::new("model_card", "https://wiki/card")] } else { vec![] };
        let req = CreateVersion { name: model.into(), source, run_id, run_link: None, model_id: None, description: None, tags };
        self.registry.create_model_version(&actor(), req).await.expect("version");
    }

    /// A model with the five versions of the module's table.
    async fn model(&self, name: &str) {
        self.registry.create_registered_model(&actor(), name, vec![], None).await.expect("model");
        for (auc, card) in [(0.80, false), (0.90, true), (0.95, false)] {
            let run = self.run_with_auc(auc).await;
            self.version(name, format!("runs:/{run}/model"), Some(run), card).await;
        }
        let unrelated = self.run_with_auc(0.99).await;
        self.version(name, "s3://elsewhere/model".into(), Some(unrelated), true).await;
        let foreign = RunId::generate();
        self.version(name, format!("runs:/{}/model", foreign.as_str()), None, true).await;
    }
}

/// One move: onto an alias, or (`stage:`) a stage transition.
struct Case {
    what: &'static str,
    gate: GateSpec,
    /// Moves made before the one judged (alias, version), with no gate yet.
    before: &'static [(&'static str, &'static str)],
    target: &'static str,
    version: &'static str,
    /// `Ok(())`, or the error code and a text its message must contain.
    want: Result<(), (ErrorCode, &'static str)>,
}

fn gate(target: &str, conditions: &[&str], tags: &[&str], approvals: u32) -> GateSpec {
    GateSpec {
        target: target.into(),
        conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
        required_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        approvals_required: approvals,
        description: None,
    }
}

const REFUSED: ErrorCode = ErrorCode::InvalidStateTransition;

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "a passing threshold",
            gate: gate("champion", &["metrics.auc >= 0.85"], &[], 0),
            before: &[],
            target: "champion",
            version: "2",
            want: Ok(()),
        },
        Case {
            what: "a failing threshold names the condition and the value",
            gate: gate("champion", &["metrics.auc >= 0.85"], &[], 0),
            before: &[],
            target: "champion",
            version: "1",
            want: Err((REFUSED, "metrics.auc >= 0.85: 0.8 >= 0.85 does not hold")),
        },
        Case {
            what: "a missing required tag",
            gate: gate("champion", &[], &["model_card"], 0),
            before: &[],
            target: "champion",
            version: "3",
            want: Err((REFUSED, "does not carry tag 'model_card'")),
        },
        Case {
            what: "every failure is listed",
            gate: gate("champion", &["metrics.auc >= 0.85"], &["model_card"], 0),
            before: &[],
            target: "champion",
            version: "1",
            want: Err((REFUSED, "(1) required tag 'model_card': version 1 does not carry tag 'model_card'; (2) metrics.auc >= 0.85")),
        },
        Case {
            what: "approvals make a direct move impossible",
            gate: gate("champion", &[], &[], 1),
            before: &[],
            target: "champion",
            version: "2",
            want: Err((REFUSED, "approval")),
        },
        Case {
            what: "better than the holder: worse is refused",
            gate: gate("champion", &["metrics.auc >= current.metrics.auc"], &[], 0),
            before: &[("champion", "2")],
            target: "champion",
            version: "1",
            want: Err((REFUSED, "current")),
        },
        Case {
            what: "better than the holder: better passes",
            gate: gate("champion", &["metrics.auc >= current.metrics.auc"], &[], 0),
            before: &[("champion", "2")],
            target: "champion",
            version: "3",
            want: Ok(()),
        },
        Case {
            what: "a comparison with an empty holder holds",
            gate: gate("champion", &["metrics.auc >= current.metrics.auc"], &[], 0),
            before: &[],
            target: "champion",
            version: "1",
            want: Ok(()),
        },
        Case {
            what: "a run_id next to an unrelated source lends no metrics",
            gate: gate("champion", &["metrics.auc >= 0.5"], &[], 0),
            before: &[],
            target: "champion",
            version: "4",
            want: Err((REFUSED, "metrics.auc")),
        },
        Case {
            what: "a run this server does not have fails closed",
            gate: gate("champion", &["metrics.auc >= 0.5"], &[], 0),
            before: &[],
            target: "champion",
            version: "5",
            want: Err((REFUSED, "metrics.auc")),
        },
        Case {
            what: "a version tag condition",
            gate: gate("champion", &["version.tags.model_card != ''"], &[], 0),
            before: &[],
            target: "champion",
            version: "4",
            want: Ok(()),
        },
        Case {
            what: "an alias gate does not guard another alias",
            gate: gate("champion", &["metrics.auc >= 0.99"], &[], 0),
            before: &[],
            target: "challenger",
            version: "1",
            want: Ok(()),
        },
        Case {
            what: "a stage gate guards the stage",
            gate: gate("stage:production", &["metrics.auc >= 0.85"], &[], 0),
            before: &[],
            target: "stage:Production",
            version: "1",
            want: Err((REFUSED, "metrics.auc >= 0.85")),
        },
        Case {
            what: "a stage gate lets a passing version in",
            gate: gate("stage:production", &["metrics.auc >= 0.85"], &[], 0),
            before: &[],
            target: "stage:Production",
            version: "3",
            want: Ok(()),
        },
        Case {
            what: "a stage gate with approvals refuses every transition",
            gate: gate("stage:production", &[], &[], 2),
            before: &[],
            target: "stage:Production",
            version: "3",
            want: Err((REFUSED, "approval")),
        },
        Case {
            what: "a gate on one stage guards nothing of another",
            gate: gate("stage:staging", &["metrics.auc >= 0.99"], &[], 0),
            before: &[],
            target: "stage:Production",
            version: "1",
            want: Ok(()),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_moves() {
    let w = world().await;
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let model = format!("m{i}");
        w.model(&model).await;
        for (alias, version) in case.before {
            w.registry.set_alias(&actor(), &model, alias, version, &Viewer::everything()).await.expect("setting up the holder");
        }
        w.registry.put_gate(&actor(), &model, case.gate.clone()).await.expect("gate");
        let got = match case.target.strip_prefix("stage:") {
            Some(stage) => {
                w.registry.transition_stage(&actor(), &model, case.version, stage, false, &Viewer::everything()).await.map(|_| ())
            }
            None => w.registry.set_alias(&actor(), &model, case.target, case.version, &Viewer::everything()).await,
        };
        let ok = match (&got, &case.want) {
            (Ok(()), Ok(())) => true,
            (Err(e), Err((code, text))) => e.error_code() == *code && e.to_string().contains(text),
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: want {:?}, got {:?}", case.what, case.want, got.map_err(|e| (e.error_code(), e.to_string()))));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_stage_names_are_not_gate_targets() {
    let w = world().await;
    w.model("m").await;
    for target in ["staging", "Production", "ARCHIVED", "none"] {
        let err = w.registry.put_gate(&actor(), "m", gate(target, &["metrics.auc >= 0.5"], &[], 0)).await.expect_err(target);
        assert_eq!(err.error_code(), ErrorCode::InvalidParameterValue, "{target}: {err}");
    }
}

/// A check asked by a caller who may not read the run fails its run conditions without showing
/// their values; the registry's own judgement of a move sees every fact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_never_show_what_the_caller_may_not_read() {
    let w = world().await;
    w.model("m").await;
    w.registry.put_gate(&actor(), "m", gate("champion", &["metrics.auc >= 0.85"], &[], 0)).await.expect("gate");
    let outsider = Viewer::limited_to(HashSet::new());
    let report = w.registry.check_gate("m", "champion", "2", &outsider).await.expect("check");
    assert!(!report.conditions_pass(), "a hidden run's facts do not pass a caller's check");
    assert!(report.checks.iter().all(|c| !c.detail.contains("0.9")), "no value shown: {:?}", report.checks);
    let insider = Viewer::limited_to(HashSet::from([w.experiment.as_str().to_owned()]));
    assert!(w.registry.check_gate("m", "champion", "2", &insider).await.expect("check").conditions_pass());
    // The move itself is the registry's judgement, with every fact, whoever asks.
    w.registry.set_alias(&actor(), "m", "champion", "2", &outsider).await.expect("the move passes");
}
