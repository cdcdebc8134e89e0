//! Conformance bodies for the sweeps port (`SweepStore`), run by `sweeps_conformance!` on every
//! adapter: creation and reading, listing in pages, every field's round trip, the version
//! compare-and-set (races included), the running sweeps, trials written whole (an upsert by sweep
//! and index, races included) and read in order, and records committed with their changes.

use std::sync::Arc;

use plinth_core::sweeps::{Sweep, SweepState, Trial, TrialState};

use crate::audit::Record;
use crate::conformance::{Harness, rec};
use crate::conformance_audit::{event, recorded, trail};
use crate::sweeps::{NewSweep, SweepStore};
use crate::tracking::PageRequest;
use crate::{Error, SweepsError};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! sweeps_conformance {
    ($factory:path) => {
        $crate::sweeps_conformance!(@each $factory;
            sweeps_create_and_get, sweeps_list_pages, sweeps_every_field_round_trips, sweeps_update_compare_and_set,
            sweeps_concurrent_updates, sweeps_active, sweeps_trials_round_trip, sweeps_trials_upsert,
            sweeps_trial_objective_not_a_number, sweeps_concurrent_trial_writes, sweeps_records_commit_with_changes);
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

/// A sweep to create; its spec holds quotes, newlines and non-ASCII text.
fn new_sweep(name: &str, now: i64) -> NewSweep {
    NewSweep {
        name: name.to_owned(),
        spec: format!("name = \"{name}\"\n[objective]\nmetric = \"val_loss\" # it's \"quoted\" ünïcode ✓\n"),
        created_by: "alice".to_owned(),
        now,
    }
}

/// `sweep` moved to `state` at `now`.
fn moved(sweep: &Sweep, state: SweepState, now: i64) -> Sweep {
    Sweep { state, updated_at: now, ..sweep.clone() }
}

fn ids(sweeps: &[Sweep]) -> Vec<i64> {
    sweeps.iter().map(|s| s.id).collect()
}

fn page(offset: i64, limit: i64) -> PageRequest {
    PageRequest { offset, limit }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// A running trial of `sweep_id` with no objective yet.
fn trial(sweep_id: i64, index: u32) -> Trial {
    Trial {
        sweep_id,
        index,
        params: params(&[("lr", "0.01"), ("batch", "64")]),
        job_id: 40 + i64::from(index),
        state: TrialState::Running,
        objective: None,
        step: None,
        stopped_at_step: None,
        updated_at: 100,
    }
}

pub async fn sweeps_create_and_get(h: &Harness) {
    let store = &h.sweeps;
    let sweep = store.create_sweep(&new_sweep("lr-search", 10), rec()).await.expect("create");
    assert_eq!(
        (sweep.name.as_str(), sweep.spec.as_str(), sweep.created_by.as_str()),
        ("lr-search", new_sweep("lr-search", 10).spec.as_str(), "alice")
    );
    assert_eq!((sweep.state, sweep.version, sweep.created_at, sweep.updated_at), (SweepState::Running, 1, 10, 10));
    assert_eq!(
        (&sweep.parent_run_id, &sweep.experiment_id, &sweep.best_trial, &sweep.message, &sweep.finished_at),
        (&None, &None, &None, &None, &None)
    );
    assert_eq!(store.get_sweep(sweep.id).await.expect("get"), sweep);
    assert!(store.trials(sweep.id).await.expect("trials").is_empty(), "a new sweep has no trials");

    // Ids grow with creation order.
    let second = store.create_sweep(&new_sweep("lr-search", 11), rec()).await.expect("a second sweep of the same name");
    assert!(second.id > sweep.id, "{} after {}", second.id, sweep.id);
    assert_eq!(second.created_at, 11);

    let unknown = second.id + 1000;
    match store.get_sweep(unknown).await {
        Err(Error::Sweeps(SweepsError::SweepNotFound { id })) => assert_eq!(id, unknown),
        other => panic!("expected SweepNotFound, got {other:?}"),
    }
}

pub async fn sweeps_list_pages(h: &Harness) {
    let store = &h.sweeps;
    assert!(store.list_sweeps(page(0, 10)).await.expect("list").items.is_empty());
    let mut made = Vec::new();
    for idx in 0..5 {
        made.push(store.create_sweep(&new_sweep(&format!("sweep-{idx}"), 10 + idx), rec()).await.expect("create"));
    }
    made[3] = store.update_sweep(&moved(&made[3], SweepState::Failed, 20), 1, rec()).await.expect("update");
    let id = |idx: usize| made[idx].id;

    let every = store.list_sweeps(page(0, 100)).await.expect("list");
    assert_eq!(ids(&every.items), [id(4), id(3), id(2), id(1), id(0)], "newest first");
    assert!(!every.has_more);
    assert_eq!(every.items[1], made[3], "listed sweeps are as stored");

    // Pages cover every sweep once, newest first, and say whether more follow.
    let first = store.list_sweeps(page(0, 2)).await.expect("list");
    assert_eq!((ids(&first.items), first.has_more), (vec![id(4), id(3)], true));
    let middle = store.list_sweeps(page(2, 2)).await.expect("list");
    assert_eq!((ids(&middle.items), middle.has_more), (vec![id(2), id(1)], true));
    let last = store.list_sweeps(page(4, 2)).await.expect("list");
    assert_eq!((ids(&last.items), last.has_more), (vec![id(0)], false));
    let exact = store.list_sweeps(page(2, 3)).await.expect("list");
    assert_eq!((ids(&exact.items), exact.has_more), (vec![id(2), id(1), id(0)], false), "a page ending on the last sweep has no more");
    let past = store.list_sweeps(page(5, 2)).await.expect("list");
    assert!(past.items.is_empty() && !past.has_more);
}

pub async fn sweeps_every_field_round_trips(h: &Harness) {
    let store = &h.sweeps;
    let created = store.create_sweep(&new_sweep("full", 10), rec()).await.expect("create");

    // Every mutable field is written; the version given is ignored, and so are the fields that never change.
    let mut every = created.clone();
    every.state = SweepState::Running;
    every.parent_run_id = Some("0123456789abcdef0123456789abcdef".to_owned());
    every.experiment_id = Some("17".to_owned());
    every.best_trial = Some(u32::MAX);
    every.message = Some("it's \"nearly\" done;\nline 2 — ü ✓".to_owned());
    every.updated_at = 1_700_000_000_123;
    every.finished_at = Some(1_700_000_000_456);
    every.version = 99;
    every.name = "renamed".to_owned();
    every.spec = "changed".to_owned();
    every.created_by = "mallory".to_owned();
    every.created_at = 1;
    let stored = store.update_sweep(&every, 1, rec()).await.expect("update");
    let want = Sweep {
        version: 2,
        name: created.name.clone(),
        spec: created.spec.clone(),
        created_by: created.created_by.clone(),
        created_at: created.created_at,
        ..every.clone()
    };
    assert_eq!(stored, want);
    assert_eq!(store.get_sweep(created.id).await.expect("get"), want);
    assert_eq!(store.list_sweeps(page(0, 10)).await.expect("list").items, vec![want.clone()], "listed sweeps are whole");
    assert_eq!(store.active_sweeps().await.expect("active"), vec![want.clone()], "running sweeps are whole");

    // Clearing every optional field is stored too, and so is every state.
    let mut cleared = Sweep {
        state: SweepState::Cancelled,
        parent_run_id: None,
        experiment_id: None,
        best_trial: Some(0),
        message: None,
        finished_at: None,
        updated_at: 300,
        ..want.clone()
    };
    cleared = store.update_sweep(&cleared, 2, rec()).await.expect("update");
    assert_eq!((cleared.version, cleared.best_trial, cleared.parent_run_id.as_deref()), (3, Some(0), None));
    assert_eq!(store.get_sweep(created.id).await.expect("get"), cleared);
    for (version, state) in (cleared.version..).zip(SweepState::ALL) {
        let next = Sweep { state, best_trial: None, ..cleared.clone() };
        let stored = store.update_sweep(&next, version, rec()).await.expect("update");
        assert_eq!(stored, Sweep { version: version + 1, ..next });
        assert_eq!(store.get_sweep(created.id).await.expect("get"), stored);
    }
}

pub async fn sweeps_update_compare_and_set(h: &Harness) {
    let (store, audit) = (&h.sweeps, &h.audit);
    let sweep = store.create_sweep(&new_sweep("cas", 10), rec()).await.expect("create");
    let mut first = moved(&sweep, SweepState::Running, 20);
    first.message = Some("first".to_owned());
    let want = store.update_sweep(&first, 1, rec()).await.expect("first update");
    assert_eq!((want.version, want.message.as_deref(), want.updated_at), (2, Some("first"), 20));

    // A writer that read version 1 loses, names the sweep, and writes nothing.
    let mut late = moved(&sweep, SweepState::Cancelled, 30);
    late.message = Some("stale".to_owned());
    match store.update_sweep(&late, 1, recorded("stale")).await {
        Err(Error::Conflict { message }) => assert!(message.contains(&sweep.id.to_string()), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_sweep(sweep.id).await.expect("get"), want);
    assert!(trail(audit, "stale").await.is_empty());
    // A version from the future loses too.
    assert!(matches!(store.update_sweep(&late, 3, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(store.get_sweep(sweep.id).await.expect("get"), want);

    // An unknown sweep is named.
    let ghost = Sweep { id: sweep.id + 1000, ..want.clone() };
    match store.update_sweep(&ghost, 2, recorded("ghost")).await {
        Err(Error::Sweeps(SweepsError::SweepNotFound { id })) => assert_eq!(id, ghost.id),
        other => panic!("expected SweepNotFound, got {other:?}"),
    }
    assert!(trail(audit, "ghost").await.is_empty());

    // The next change expects version 2.
    let ended = store.update_sweep(&moved(&want, SweepState::Succeeded, 40), 2, rec()).await.expect("update");
    assert_eq!((ended.state, ended.version, ended.updated_at, ended.message.as_deref()), (SweepState::Succeeded, 3, 40, Some("first")));
}

pub async fn sweeps_concurrent_updates(h: &Harness) {
    let store: Arc<dyn SweepStore> = h.sweeps.clone();
    let sweep = store.create_sweep(&new_sweep("race", 10), rec()).await.expect("create");
    // Eight writers all read version 1: exactly one wins, the others conflict.
    let answers = race(&store, 8, |store, idx| {
        let mut next = moved(&sweep, SweepState::Running, 100 + idx as i64);
        next.message = Some(format!("writer {idx}"));
        async move { store.update_sweep(&next, 1, rec()).await }
    })
    .await;
    let winners: Vec<Sweep> = answers
        .into_iter()
        .filter_map(|answer| match answer {
            Ok(sweep) => Some(sweep),
            Err(Error::Conflict { .. }) => None,
            Err(e) => panic!("unexpected error: {e:?}"),
        })
        .collect();
    assert_eq!(winners.len(), 1, "one writer per version");
    let now = store.get_sweep(sweep.id).await.expect("get");
    assert_eq!(now, winners[0]);
    assert_eq!(now.version, 2);
}

pub async fn sweeps_active(h: &Harness) {
    let store = &h.sweeps;
    assert!(store.active_sweeps().await.expect("active").is_empty());
    // Two sweeps per state, in reverse order of the states, so the running ones are not the first ids.
    let mut want = Vec::new();
    for state in SweepState::ALL.iter().rev().chain(SweepState::ALL.iter()) {
        let sweep = store.create_sweep(&new_sweep(state.as_str(), 10), rec()).await.expect("create");
        let sweep = if *state == SweepState::Running {
            sweep
        } else {
            store.update_sweep(&moved(&sweep, *state, 20), 1, rec()).await.expect("update")
        };
        if !state.is_terminal() {
            want.push(sweep);
        }
    }
    let active = store.active_sweeps().await.expect("active");
    assert_eq!(active, want, "every running sweep, by id");
    assert!(active.windows(2).all(|w| w[0].id < w[1].id));
    // An ended sweep leaves the set.
    store.update_sweep(&moved(&active[0], SweepState::Succeeded, 30), 1, rec()).await.expect("update");
    assert_eq!(ids(&store.active_sweeps().await.expect("active")), ids(&active[1..]));
}

pub async fn sweeps_trials_round_trip(h: &Harness) {
    let store = &h.sweeps;
    let sweep = store.create_sweep(&new_sweep("trials", 10), rec()).await.expect("create");
    let awkward = params(&[
        ("lr", "0.001"),
        ("optimizer", "it's \"adam\""),
        ("name", "ünïcode ✓ — 日本"),
        ("", ""),
        ("path", "C:\\tmp\\x;y,z"),
        ("json", "[[\"a\", \"b\"]]"),
        ("lines", "one\ntwo\tthree"),
        ("a", "repeated"),
        ("a", "again"),
    ]);
    // Every field set, with objectives of every kind; indices out of order and past 9, so the
    // order read back is numeric and not the order written.
    let mut want = Vec::new();
    for (index, objective) in [
        (10, Some(-0.125)),
        (2, Some(1.0 / 3.0)),
        (0, None),
        (u32::MAX, Some(1e300)),
        (1, Some(-2.5e-12)),
        (3, Some(42.0)),
        (4, Some(0.0)),
        (5, Some(f64::INFINITY)),
        (6, Some(f64::NEG_INFINITY)),
        (7, Some(f64::MIN_POSITIVE)),
    ] {
        let trial = Trial {
            sweep_id: sweep.id,
            index,
            params: if index == 2 { Vec::new() } else { awkward.clone() },
            job_id: i64::MAX - i64::from(index),
            state: TrialState::ALL[index as usize % TrialState::ALL.len()],
            objective,
            step: objective.map(|_| i64::from(index) * 1_000_000_007),
            stopped_at_step: index.is_multiple_of(2).then_some(-i64::from(index)),
            updated_at: 1_700_000_000_000 + i64::from(index),
        };
        store.put_trial(&trial).await.expect("put");
        want.push(trial);
    }
    want.sort_by_key(|t| t.index);
    let got = store.trials(sweep.id).await.expect("trials");
    assert_eq!(got, want, "every field of every trial, by index");
    for (got, want) in got.iter().zip(&want) {
        let bits = |t: &Trial| t.objective.map(f64::to_bits);
        assert_eq!(bits(got), bits(want), "trial {}: the objective is exact", want.index);
    }
    assert_eq!(got[3].params, awkward, "the parameters' order is kept");

    // Writing trials does not touch the sweep.
    assert_eq!(store.get_sweep(sweep.id).await.expect("get"), sweep);
}

pub async fn sweeps_trials_upsert(h: &Harness) {
    let store = &h.sweeps;
    let a = store.create_sweep(&new_sweep("a", 10), rec()).await.expect("create");
    let b = store.create_sweep(&new_sweep("b", 10), rec()).await.expect("create");
    let empty = store.create_sweep(&new_sweep("empty", 10), rec()).await.expect("create");
    for index in [1, 0, 2] {
        store.put_trial(&trial(a.id, index)).await.expect("put");
    }
    // The same indices under another sweep are other trials.
    let mut other = trial(b.id, 1);
    other.params = params(&[("lr", "0.5")]);
    other.job_id = 7;
    store.put_trial(&other).await.expect("put");
    assert_eq!(store.trials(a.id).await.expect("trials"), vec![trial(a.id, 0), trial(a.id, 1), trial(a.id, 2)]);

    // Written whole again: the new row replaces the old one, every field of it.
    let mut ended = trial(a.id, 1);
    ended.params = params(&[("batch", "64"), ("lr", "0.02")]);
    ended.job_id = 99;
    ended.state = TrialState::Stopped;
    ended.objective = Some(0.75);
    ended.step = Some(8);
    ended.stopped_at_step = Some(4);
    ended.updated_at = 200;
    store.put_trial(&ended).await.expect("replace");
    // A value set before is cleared by a write without it.
    let mut reported = trial(a.id, 2);
    reported.objective = Some(-1.5);
    reported.step = Some(3);
    store.put_trial(&reported).await.expect("replace");
    let mut cleared = trial(a.id, 2);
    cleared.state = TrialState::Failed;
    cleared.updated_at = 300;
    store.put_trial(&cleared).await.expect("replace");
    assert_eq!(store.trials(a.id).await.expect("trials"), vec![trial(a.id, 0), ended, cleared]);
    assert_eq!(store.trials(b.id).await.expect("trials"), vec![other], "another sweep's trials are not mixed in");
    assert!(store.trials(empty.id).await.expect("trials").is_empty());

    // A trial of an unknown sweep is refused, naming the sweep, and nothing is written.
    let unknown = empty.id + 1000;
    match store.put_trial(&trial(unknown, 0)).await {
        Err(Error::Sweeps(SweepsError::SweepNotFound { id })) => assert_eq!(id, unknown),
        other => panic!("expected SweepNotFound, got {other:?}"),
    }
    assert!(store.trials(unknown).await.expect("trials").is_empty());
}

pub async fn sweeps_trial_objective_not_a_number(h: &Harness) {
    let store = &h.sweeps;
    let sweep = store.create_sweep(&new_sweep("nan", 10), rec()).await.expect("create");
    // An objective that is not a number is stored as no value, on every adapter alike.
    let mut nan = trial(sweep.id, 0);
    nan.objective = Some(f64::NAN);
    nan.step = Some(5);
    store.put_trial(&nan).await.expect("put");
    assert_eq!(store.trials(sweep.id).await.expect("trials"), vec![Trial { objective: None, ..nan.clone() }]);
    // A number after it is stored as given, and a NaN after a number clears it.
    let number = Trial { objective: Some(0.5), ..nan.clone() };
    store.put_trial(&number).await.expect("put");
    assert_eq!(store.trials(sweep.id).await.expect("trials"), vec![number]);
    store.put_trial(&nan).await.expect("put");
    assert_eq!(store.trials(sweep.id).await.expect("trials")[0].objective, None);
}

pub async fn sweeps_concurrent_trial_writes(h: &Harness) {
    let store: Arc<dyn SweepStore> = h.sweeps.clone();
    let sweep = store.create_sweep(&new_sweep("trial-race", 10), rec()).await.expect("create");
    // Eight writers of the same trial and eight of trials of their own, at once: every write is
    // stored (an upsert, never a duplicate-key error), and the shared trial is one writer's whole.
    let writes = |idx: usize| {
        let mut t = trial(sweep.id, if idx.is_multiple_of(2) { 0 } else { idx as u32 });
        t.job_id = idx as i64;
        t.objective = Some(idx as f64 / 8.0);
        t.step = Some(idx as i64);
        t.updated_at = 100 + idx as i64;
        t
    };
    let answers = race(&store, 16, |store, idx| {
        let t = writes(idx);
        async move { store.put_trial(&t).await }
    })
    .await;
    for answer in answers {
        answer.expect("every trial write is stored");
    }
    let trials = store.trials(sweep.id).await.expect("trials");
    assert_eq!(trials.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1, 3, 5, 7, 9, 11, 13, 15]);
    let shared = &trials[0];
    let writer = usize::try_from(shared.job_id).expect("a writer's index");
    assert!(writer.is_multiple_of(2), "written by a writer of trial 0");
    assert_eq!(shared, &writes(writer), "one writer's trial, whole");
    for t in &trials[1..] {
        assert_eq!(t, &writes(t.index as usize));
    }
}

pub async fn sweeps_records_commit_with_changes(h: &Harness) {
    let (store, audit) = (&h.sweeps, &h.audit);
    // Built from the result: the id the database allocated is in the record.
    let sweep =
        store.create_sweep(&new_sweep("recorded", 10), Record::of(|s: &Sweep| event(&format!("sweep:{}", s.id)))).await.expect("create");
    assert_eq!(trail(audit, &format!("sweep:{}", sweep.id)).await.len(), 1);
    // An update's record is built from the sweep as stored (its new version).
    let updated = store
        .update_sweep(&moved(&sweep, SweepState::Running, 20), 1, Record::of(|s: &Sweep| event(&format!("sweep:{}:v{}", s.id, s.version))))
        .await
        .expect("update");
    assert_eq!(trail(audit, &format!("sweep:{}:v2", sweep.id)).await.len(), 1);
    // Refused changes write no record: a stale version, an unknown sweep.
    assert!(store.update_sweep(&moved(&sweep, SweepState::Cancelled, 30), 1, recorded("stale")).await.is_err());
    let ghost = Sweep { id: sweep.id + 1000, ..updated.clone() };
    assert!(store.update_sweep(&ghost, 2, recorded("ghost")).await.is_err());
    // A change without a record is still written.
    let unrecorded = store.update_sweep(&moved(&updated, SweepState::Succeeded, 40), 2, Record::none()).await.expect("unrecorded");
    assert_eq!(store.get_sweep(sweep.id).await.expect("get"), unrecorded);
    store.update_sweep(&moved(&unrecorded, SweepState::Cancelled, 50), 3, recorded("cancel")).await.expect("cancel");
    for (id, want) in [("stale", 0), ("ghost", 0), ("cancel", 1)] {
        assert_eq!(trail(audit, id).await.len(), want, "{id}");
    }
}

/// `conformance::race` on the sweeps port, its connections opened by a read first.
async fn race<T, Fut>(store: &Arc<dyn SweepStore>, n: usize, call: impl Fn(Arc<dyn SweepStore>, usize) -> Fut) -> Vec<crate::Result<T>>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = crate::Result<T>> + Send + 'static,
{
    crate::conformance::race(store, n, |s: Arc<dyn SweepStore>| async move { s.list_sweeps(page(0, 1)).await.map(|_| ()) }, call).await
}
