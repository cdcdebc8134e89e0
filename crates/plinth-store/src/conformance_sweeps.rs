//! Conformance bodies for the sweeps port (`SweepStore`), run by `sweeps_conformance!` on every
//! adapter: the lifecycle and every field's round trip, the version compare-and-set (races
//! included), the running sweeps, trials written whole and read in order, and records committed
//! with their changes.

use std::sync::Arc;

use plinth_core::sweeps::{Sweep, SweepState, Trial, TrialState};

use crate::audit::Record;
use crate::conformance::{Harness, rec};
use crate::conformance_audit::{event, trail};
use crate::sweeps::{NewSweep, SweepStore};
use crate::tracking::PageRequest;
use crate::{Error, SweepsError};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! sweeps_conformance {
    ($factory:path) => {
        $crate::sweeps_conformance!(@each $factory;
            sweeps_lifecycle, sweeps_compare_and_set, sweeps_concurrent_updates, sweeps_trials, sweeps_records_commit_with_changes);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_sweeps::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

fn new(name: &str, now: i64) -> NewSweep {
    NewSweep { name: name.to_owned(), spec: format!("name = \"{name}\"\n# \"quoted\" ünïcode\n"), created_by: "alice".to_owned(), now }
}

fn page(limit: i64) -> PageRequest {
    PageRequest { offset: 0, limit }
}

pub async fn sweeps_lifecycle(h: &Harness) {
    let store = &h.sweeps;
    let first = store.create_sweep(&new("lr-search", 10), rec()).await.expect("create");
    assert_eq!((first.state, first.version, first.created_at, first.updated_at), (SweepState::Running, 1, 10, 10));
    assert_eq!((first.parent_run_id.as_deref(), first.best_trial, first.finished_at), (None, None, None));
    assert_eq!(first.spec, new("lr-search", 10).spec);
    let second = store.create_sweep(&new("other", 20), rec()).await.expect("create");
    assert!(second.id > first.id);
    assert_eq!(store.get_sweep(first.id).await.expect("get"), first);
    assert!(matches!(store.get_sweep(9_999).await, Err(Error::Sweeps(SweepsError::SweepNotFound { id: 9_999 }))));
    let listed = store.list_sweeps(page(1)).await.expect("list");
    assert_eq!((listed.items.iter().map(|s| s.id).collect::<Vec<_>>(), listed.has_more), (vec![second.id], true));
    let listed = store.list_sweeps(PageRequest { offset: 1, limit: 5 }).await.expect("list");
    assert_eq!((listed.items.iter().map(|s| s.id).collect::<Vec<_>>(), listed.has_more), (vec![first.id], false));

    // Every mutable field is written and read back; what is not mutable is kept.
    let mut changed = first.clone();
    changed.state = SweepState::Succeeded;
    changed.parent_run_id = Some("0123456789abcdef0123456789abcdef".to_owned());
    changed.experiment_id = Some("7".to_owned());
    changed.best_trial = Some(3);
    changed.message = Some("it's \"done\"".to_owned());
    changed.updated_at = 30;
    changed.finished_at = Some(31);
    changed.name = "renamed".to_owned();
    changed.created_by = "mallory".to_owned();
    let stored = store.update_sweep(&changed, 1, rec()).await.expect("update");
    let expected = Sweep { version: 2, name: first.name.clone(), created_by: first.created_by.clone(), ..changed };
    assert_eq!(stored, expected);
    assert_eq!(store.get_sweep(first.id).await.expect("get"), expected);
    assert_eq!(store.active_sweeps().await.expect("active").iter().map(|s| s.id).collect::<Vec<_>>(), vec![second.id]);
}

pub async fn sweeps_compare_and_set(h: &Harness) {
    let store = &h.sweeps;
    let sweep = store.create_sweep(&new("cas", 10), rec()).await.expect("create");
    let mut next = sweep.clone();
    next.message = Some("first".to_owned());
    store.update_sweep(&next, 1, rec()).await.expect("first update");
    next.message = Some("stale".to_owned());
    assert!(matches!(store.update_sweep(&next, 1, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(store.get_sweep(sweep.id).await.expect("get").message.as_deref(), Some("first"));
    let mut missing = sweep.clone();
    missing.id = 9_999;
    assert!(matches!(store.update_sweep(&missing, 1, rec()).await, Err(Error::Sweeps(SweepsError::SweepNotFound { .. }))));
}

pub async fn sweeps_concurrent_updates(h: &Harness) {
    let store: Arc<dyn SweepStore> = h.sweeps.clone();
    let sweep = store.create_sweep(&new("race", 10), rec()).await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, mut next) = (store.clone(), sweep.clone());
        next.message = Some(format!("writer {i}"));
        tasks.push(tokio::spawn(async move { store.update_sweep(&next, 1, Record::none()).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => won += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins");
    assert_eq!(store.get_sweep(sweep.id).await.expect("get").version, 2);
}

fn trial(sweep_id: i64, index: u32, objective: Option<f64>) -> Trial {
    Trial {
        sweep_id,
        index,
        params: vec![
            ("lr".to_owned(), "0.01".to_owned()),
            ("name".to_owned(), "it's \"ü\"".to_owned()),
            ("batch".to_owned(), "64".to_owned()),
        ],
        job_id: 40 + i64::from(index),
        state: TrialState::Running,
        objective,
        step: objective.map(|_| 7),
        stopped_at_step: None,
        updated_at: 100,
    }
}

pub async fn sweeps_trials(h: &Harness) {
    let store = &h.sweeps;
    let a = store.create_sweep(&new("a", 10), rec()).await.expect("create");
    let b = store.create_sweep(&new("b", 10), rec()).await.expect("create");
    for (index, objective) in [(1, Some(-0.125)), (0, None), (2, Some(1e300))] {
        store.put_trial(&trial(a.id, index, objective)).await.expect("put");
    }
    store.put_trial(&trial(b.id, 0, Some(0.5))).await.expect("put");
    let trials = store.trials(a.id).await.expect("trials");
    assert_eq!(trials, vec![trial(a.id, 0, None), trial(a.id, 1, Some(-0.125)), trial(a.id, 2, Some(1e300))]);
    // Written whole again: the new row replaces the old one.
    let mut ended = trial(a.id, 1, Some(0.75));
    ended.state = TrialState::Stopped;
    ended.stopped_at_step = Some(4);
    ended.updated_at = 200;
    store.put_trial(&ended).await.expect("replace");
    let mut cleared = trial(a.id, 2, None);
    cleared.state = TrialState::Failed;
    store.put_trial(&cleared).await.expect("replace");
    let trials = store.trials(a.id).await.expect("trials");
    assert_eq!(trials, vec![trial(a.id, 0, None), ended, cleared]);
    assert_eq!(store.trials(b.id).await.expect("trials").len(), 1);
    assert!(matches!(store.put_trial(&trial(9_999, 0, None)).await, Err(Error::Sweeps(SweepsError::SweepNotFound { .. }))));
}

pub async fn sweeps_records_commit_with_changes(h: &Harness) {
    let (store, audit) = (&h.sweeps, &h.audit);
    let sweep = store.create_sweep(&new("recorded", 10), Record::of(|s: &Sweep| event(&format!("sweep:{}", s.id)))).await.expect("create");
    assert_eq!(trail(audit, &format!("sweep:{}", sweep.id)).await.len(), 1);
    let mut next = sweep.clone();
    next.state = SweepState::Cancelled;
    store.update_sweep(&next, 1, Record::of(|s: &Sweep| event(&format!("sweep:{}:v{}", s.id, s.version)))).await.expect("update");
    assert_eq!(trail(audit, &format!("sweep:{}:v2", sweep.id)).await.len(), 1);
    // A refused change writes no record.
    let refused = store.update_sweep(&next, 1, Record::of(|_: &Sweep| event("refused"))).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })));
    assert!(trail(audit, "refused").await.is_empty());
}
