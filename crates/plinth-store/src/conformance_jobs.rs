//! Conformance bodies for the jobs port (`JobStore`), run by `jobs_conformance!` on every adapter:
//! creation and its idempotency key (races included), every field's round trip, listing with
//! filters and pages, the version compare-and-set of batches (all or nothing, races included), the
//! active jobs, the queue configuration's compare-and-set, and records committed with their changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use plinth_core::jobs::{AttemptEnd, ExitCause, Job, JobSpec, JobState, Resources, Retry};

use crate::audit::Record;
use crate::conformance::{Harness, rec};
use crate::conformance_audit::{event, recorded, trail};
use crate::jobs::{JobQuery, JobStore, JobUpdate, NewJob, QueueConfigRecord};
use crate::tracking::PageRequest;
use crate::{Error, JobsError};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! jobs_conformance {
    ($factory:path) => {
        $crate::jobs_conformance!(@each $factory;
            jobs_create_and_get, jobs_every_field_round_trips, jobs_idempotent_create, jobs_concurrent_idempotent_create,
            jobs_list_filters_and_pages, jobs_update_compare_and_set, jobs_update_batch_all_or_nothing,
            jobs_concurrent_updates, jobs_concurrent_batches, jobs_active, jobs_queue_config_compare_and_set,
            jobs_concurrent_queue_config, jobs_records_commit_with_changes);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_jobs::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

fn new_job(queue: &str, submitted_by: &str, key: Option<&str>, now: i64) -> NewJob {
    NewJob {
        spec: JobSpec::new(queue, vec!["python".to_owned(), "train.py".to_owned()]),
        cluster_queue: format!("cq-{queue}"),
        submitted_by: submitted_by.to_owned(),
        idempotency_key: key.map(str::to_owned),
        now,
    }
}

/// A spec with every field set, some to awkward values (quotes, newlines, non-ASCII, extremes).
fn full_spec() -> JobSpec {
    JobSpec {
        name: Some("nightly \"churn\" ✓".to_owned()),
        command: vec!["python".to_owned(), "-c".to_owned(), "print('a;b')\nprint(\"ü\")".to_owned(), String::new()],
        code: Some(format!("sha256:{}", "0123456789abcdef".repeat(4))),
        env: BTreeMap::from([("SEED".to_owned(), "42".to_owned()), ("NOTE".to_owned(), "line 1\nline 2 — ok".to_owned())]),
        resources: Resources {
            cpu_millis: 2500,
            memory_bytes: 64 << 30,
            gpus: 8,
            gpu_flavor: Some("gpu-a100".to_owned()),
            custom: BTreeMap::from([("ray-tpu".to_owned(), 4), ("license".to_owned(), u64::MAX)]),
        },
        workers: 16,
        timeout_secs: Some(86_400),
        retry: Retry { max_retries: 5, backoff_secs: 45, on: vec![ExitCause::Lost, ExitCause::OutOfMemory, ExitCause::StartFailed] },
        priority: -1_000_000,
        queue: "team-a".to_owned(),
        experiment: Some("churn/nightly".to_owned()),
        tags: BTreeMap::from([("team".to_owned(), "vision".to_owned()), ("mlflow.note".to_owned(), "é'\"".to_owned())]),
    }
}

/// `job` moved to `state` at `now`, expecting the version it was read at.
fn moved(job: &Job, state: JobState, now: i64) -> JobUpdate {
    let mut next = job.clone();
    next.state = state;
    next.updated_at = now;
    JobUpdate { job: next, expected_version: job.version }
}

fn ids(jobs: &[Job]) -> Vec<i64> {
    jobs.iter().map(|j| j.id).collect()
}

/// Every job, a page at a time (spelled out: `PageRequest` has no default).
fn query(page: PageRequest) -> JobQuery {
    JobQuery { queue: None, cluster_queue: None, states: Vec::new(), submitted_by: None, page }
}

fn all() -> PageRequest {
    PageRequest { offset: 0, limit: 1000 }
}

/// The winners of a race; every loser must have lost to a conflict.
fn winners<T>(answers: Vec<crate::Result<T>>) -> Vec<T> {
    answers
        .into_iter()
        .filter_map(|answer| match answer {
            Ok(value) => Some(value),
            Err(Error::Conflict { .. }) => None,
            Err(e) => panic!("unexpected error: {e:?}"),
        })
        .collect()
}

pub async fn jobs_create_and_get(h: &Harness) {
    let store = &h.jobs;
    let (job, created) = store.create_job(&new_job("team-a", "alice", None, 10), rec()).await.expect("create");
    assert!(created);
    assert_eq!(job.spec, new_job("team-a", "alice", None, 10).spec);
    assert_eq!((job.state, job.attempt, job.preemptions, job.version), (JobState::Queued, 1, 0, 1));
    assert_eq!((job.created_at, job.updated_at), (10, 10));
    assert_eq!((job.cluster_queue.as_str(), job.submitted_by.as_str()), ("cq-team-a", "alice"));
    assert_eq!(
        (&job.idempotency_key, &job.flavors, &job.executor, &job.handle, &job.run_id, &job.experiment_id, &job.last_end),
        (&None, &None, &None, &None, &None, &None, &None)
    );
    assert!(!job.cancel_requested);
    assert_eq!((job.not_before, job.admitted_at, job.started_at, job.finished_at), (None, None, None, None));
    assert_eq!(store.get_job(job.id).await.expect("get"), job);

    // Ids grow with creation order.
    let (second, created) = store.create_job(&new_job("team-a", "alice", None, 11), rec()).await.expect("create");
    assert!(created);
    assert!(second.id > job.id, "{} after {}", second.id, job.id);

    let unknown = second.id + 1000;
    match store.get_job(unknown).await {
        Err(Error::Jobs(JobsError::JobNotFound { id })) => assert_eq!(id, unknown),
        other => panic!("expected JobNotFound, got {other:?}"),
    }
}

pub async fn jobs_every_field_round_trips(h: &Harness) {
    let store = &h.jobs;
    let mut new = new_job("team-a", "alice", Some("key-1 ✓"), 100);
    new.spec = full_spec();
    new.cluster_queue = "research".to_owned();
    let (created, _) = store.create_job(&new, rec()).await.expect("create");
    assert_eq!(created.spec, full_spec(), "the spec round-trips whole");
    assert_eq!(created.idempotency_key.as_deref(), Some("key-1 ✓"));

    let mut every = created.clone();
    every.state = JobState::Running;
    every.attempt = 3;
    every.preemptions = 2;
    every.flavors = Some(BTreeMap::from([("gpu".to_owned(), "gpu-a100".to_owned()), ("cpu".to_owned(), "default".to_owned())]));
    every.executor = Some("local".to_owned());
    every.handle = Some("pid:4242;host=node-1".to_owned());
    every.run_id = Some("0123456789abcdef0123456789abcdef".to_owned());
    every.experiment_id = Some("17".to_owned());
    every.cancel_requested = true;
    every.last_end = Some(AttemptEnd {
        cause: ExitCause::OutOfMemory,
        message: "out of memory: peak 4.3Gi over the 4Gi limit".to_owned(),
        exit_code: Some(-9),
        signal: Some(9),
        peak_memory_bytes: Some(u64::MAX),
    });
    every.not_before = Some(1_700_000_000_123);
    every.updated_at = 200;
    every.admitted_at = Some(150);
    every.started_at = Some(160);
    every.finished_at = Some(190);
    let updated = store.update_jobs(&[JobUpdate { job: every.clone(), expected_version: 1 }], rec()).await.expect("update");
    let mut want = every.clone();
    want.version = 2;
    assert_eq!(updated, vec![want.clone()]);
    assert_eq!(store.get_job(created.id).await.expect("get"), want);
    assert_eq!(store.list_jobs(&query(all())).await.expect("list").items, vec![want.clone()], "listed jobs are whole");
    assert_eq!(store.active_jobs().await.expect("active"), vec![want.clone()], "active jobs are whole");

    // Clearing every optional field is stored too; an end without its details round-trips.
    let mut cleared = want.clone();
    cleared.state = JobState::Queued;
    cleared.flavors = None;
    cleared.executor = None;
    cleared.handle = None;
    cleared.run_id = None;
    cleared.experiment_id = None;
    cleared.cancel_requested = false;
    cleared.last_end =
        Some(AttemptEnd { cause: ExitCause::Preempted, message: String::new(), exit_code: None, signal: None, peak_memory_bytes: None });
    cleared.not_before = None;
    cleared.updated_at = 300;
    cleared.admitted_at = None;
    cleared.started_at = None;
    cleared.finished_at = None;
    store.update_jobs(&[JobUpdate { job: cleared.clone(), expected_version: 2 }], rec()).await.expect("update");
    cleared.version = 3;
    assert_eq!(store.get_job(created.id).await.expect("get"), cleared);
    cleared.last_end = None;
    store.update_jobs(&[JobUpdate { job: cleared.clone(), expected_version: 3 }], rec()).await.expect("update");
    cleared.version = 4;
    assert_eq!(store.get_job(created.id).await.expect("get"), cleared);
}

pub async fn jobs_idempotent_create(h: &Harness) {
    let (store, audit) = (&h.jobs, &h.audit);
    let (first, created) = store.create_job(&new_job("team-a", "alice", Some("k1"), 10), recorded("first")).await.expect("create");
    assert!(created);
    // The same submitter and key: the first job, nothing written, even with another spec.
    let mut again = new_job("team-b", "alice", Some("k1"), 20);
    again.spec.priority = 9;
    let (answered, created) = store.create_job(&again, recorded("again")).await.expect("again");
    assert!(!created);
    assert_eq!(answered, first);
    assert!(trail(audit, "again").await.is_empty(), "an answered create is not recorded");
    assert_eq!(trail(audit, "first").await.len(), 1);
    // The job as it now is, after a change.
    let changed = store.update_jobs(&[moved(&first, JobState::Admitted, 30)], rec()).await.expect("update");
    let (answered, created) = store.create_job(&again, rec()).await.expect("again");
    assert!(!created);
    assert_eq!(answered, changed[0]);
    // Keys are per submitter, and exact.
    let (bobs, created) = store.create_job(&new_job("team-a", "bob", Some("k1"), 40), rec()).await.expect("create");
    assert!(created);
    assert_ne!(bobs.id, first.id);
    assert_eq!(bobs.idempotency_key.as_deref(), Some("k1"));
    let (other_key, created) = store.create_job(&new_job("team-a", "alice", Some("K1"), 50), rec()).await.expect("create");
    assert!(created);
    assert_ne!(other_key.id, first.id);
    // Without a key every create is a new job.
    let (a, _) = store.create_job(&new_job("team-a", "alice", None, 60), rec()).await.expect("create");
    let (b, created) = store.create_job(&new_job("team-a", "alice", None, 60), rec()).await.expect("create");
    assert!(created);
    assert_ne!(a.id, b.id);
    assert_eq!(store.list_jobs(&query(all())).await.expect("list").items.len(), 5);
}

pub async fn jobs_concurrent_idempotent_create(h: &Harness) {
    let store: Arc<dyn JobStore> = h.jobs.clone();
    // Sixteen creates with one key at once: one job, which every caller is answered.
    let answers = race(&store, 16, |store, idx| async move {
        store.create_job(&new_job("team-a", "alice", Some("retry-safe"), 100 + idx as i64), rec()).await
    })
    .await;
    let answers: Vec<(Job, bool)> = answers.into_iter().map(|answer| answer.expect("every create is answered")).collect();
    assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1, "one create creates");
    let first = answers[0].0.id;
    assert!(answers.iter().all(|(job, _)| job.id == first), "every caller gets the same job");
    let listed = store.list_jobs(&JobQuery { submitted_by: Some("alice".to_owned()), ..query(all()) }).await.expect("list");
    assert_eq!(ids(&listed.items), [first]);
}

pub async fn jobs_list_filters_and_pages(h: &Harness) {
    let store = &h.jobs;
    let mut made = Vec::new();
    for (queue, cluster_queue, submitter) in [
        ("team-a", "shared", "alice"),
        ("team-b", "shared", "bob"),
        ("team-a", "shared", "bob"),
        ("team-c", "own", "alice"),
        ("team-b", "shared", "alice"),
        ("team-c", "own", "carol"),
    ] {
        let mut new = new_job(queue, submitter, None, 10);
        new.cluster_queue = cluster_queue.to_owned();
        made.push(store.create_job(&new, rec()).await.expect("create").0);
    }
    // States: 0 queued, 1 running, 2 failed, 3 running, 4 cancelled, 5 queued.
    for (idx, state) in [(1, JobState::Running), (2, JobState::Failed), (3, JobState::Running), (4, JobState::Cancelled)] {
        made[idx] = store.update_jobs(&[moved(&made[idx], state, 20)], rec()).await.expect("update").remove(0);
    }
    let id = |idx: usize| made[idx].id;
    let list = |q: JobQuery| async move { store.list_jobs(&q).await.expect("list") };

    let every = list(query(all())).await;
    assert_eq!(ids(&every.items), [id(5), id(4), id(3), id(2), id(1), id(0)], "newest first");
    assert!(!every.has_more);
    assert_eq!(every.items[1], made[4], "listed jobs are as stored");
    assert_eq!(ids(&list(JobQuery { queue: Some("team-a".into()), ..query(all()) }).await.items), [id(2), id(0)]);
    assert_eq!(ids(&list(JobQuery { cluster_queue: Some("own".into()), ..query(all()) }).await.items), [id(5), id(3)]);
    assert_eq!(ids(&list(JobQuery { submitted_by: Some("alice".into()), ..query(all()) }).await.items), [id(4), id(3), id(0)]);
    assert_eq!(ids(&list(JobQuery { states: vec![JobState::Running], ..query(all()) }).await.items), [id(3), id(1)]);
    assert_eq!(
        ids(&list(JobQuery { states: vec![JobState::Queued, JobState::Failed, JobState::Lost], ..query(all()) }).await.items),
        [id(5), id(2), id(0)],
        "any of the states"
    );
    let combined = JobQuery {
        cluster_queue: Some("shared".into()),
        states: vec![JobState::Running, JobState::Cancelled, JobState::Queued],
        submitted_by: Some("alice".into()),
        ..query(all())
    };
    assert_eq!(ids(&list(combined).await.items), [id(4), id(0)], "filters combine");
    assert!(list(JobQuery { queue: Some("TEAM-A".into()), ..query(all()) }).await.items.is_empty(), "names are exact");
    assert!(list(JobQuery { submitted_by: Some("al%".into()), ..query(all()) }).await.items.is_empty(), "no wildcards");

    // Pages cover every job once, newest first, and say whether more follow.
    let page = |offset, limit| query(PageRequest { offset, limit });
    let first = list(page(0, 4)).await;
    assert_eq!(ids(&first.items), [id(5), id(4), id(3), id(2)]);
    assert!(first.has_more);
    let rest = list(page(4, 4)).await;
    assert_eq!(ids(&rest.items), [id(1), id(0)]);
    assert!(!rest.has_more);
    let exact = list(page(3, 3)).await;
    assert_eq!(ids(&exact.items), [id(2), id(1), id(0)]);
    assert!(!exact.has_more, "a page ending on the last job has no more");
    assert!(list(page(6, 3)).await.items.is_empty());
    let filtered = list(JobQuery { submitted_by: Some("alice".into()), ..page(1, 1) }).await;
    assert_eq!(ids(&filtered.items), [id(3)]);
    assert!(filtered.has_more);
}

pub async fn jobs_update_compare_and_set(h: &Harness) {
    let (store, audit) = (&h.jobs, &h.audit);
    let (job, _) = store.create_job(&new_job("team-a", "alice", Some("k"), 10), rec()).await.expect("create");
    let mut admit = moved(&job, JobState::Admitted, 20);
    admit.job.flavors = Some(BTreeMap::from([("cpu".to_owned(), "default".to_owned())]));
    admit.job.admitted_at = Some(20);
    // The version given is ignored, and so are the fields a change cannot move.
    admit.job.version = 99;
    admit.job.spec.priority = 500;
    admit.job.cluster_queue = "elsewhere".to_owned();
    admit.job.submitted_by = "mallory".to_owned();
    admit.job.idempotency_key = None;
    admit.job.created_at = 1;
    let updated = store.update_jobs(std::slice::from_ref(&admit), rec()).await.expect("update");
    let mut want = job.clone();
    want.state = JobState::Admitted;
    want.flavors = admit.job.flavors.clone();
    want.admitted_at = Some(20);
    want.updated_at = 20;
    want.version = 2;
    assert_eq!(updated, vec![want.clone()]);
    assert_eq!(store.get_job(job.id).await.expect("get"), want);

    // A writer that read version 1 loses, names the job, and writes nothing.
    let stale = store.update_jobs(&[moved(&job, JobState::Cancelled, 30)], recorded("stale")).await;
    match &stale {
        Err(Error::Conflict { message }) => assert!(message.contains(&job.id.to_string()), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_job(job.id).await.expect("get"), want);
    assert!(trail(audit, "stale").await.is_empty());
    // A version from the future loses too.
    let mut ahead = moved(&want, JobState::Starting, 30);
    ahead.expected_version = 3;
    assert!(matches!(store.update_jobs(&[ahead], rec()).await, Err(Error::Conflict { .. })));
    // An unknown job is a conflict: it is gone, or never was.
    let mut ghost = moved(&want, JobState::Starting, 30);
    ghost.job.id = job.id + 1000;
    assert!(matches!(store.update_jobs(&[ghost], rec()).await, Err(Error::Conflict { .. })));
    // Nothing to change is nothing written.
    assert!(store.update_jobs(&[], recorded("empty")).await.expect("empty").is_empty());
    assert!(trail(audit, "empty").await.is_empty());
    assert_eq!(store.get_job(job.id).await.expect("get"), want);
    // The next change expects version 2.
    let started = store.update_jobs(&[moved(&want, JobState::Starting, 40)], rec()).await.expect("update");
    assert_eq!((started[0].state, started[0].version, started[0].updated_at), (JobState::Starting, 3, 40));
}

pub async fn jobs_update_batch_all_or_nothing(h: &Harness) {
    let (store, audit) = (&h.jobs, &h.audit);
    let mut jobs = Vec::new();
    for idx in 0..3 {
        jobs.push(store.create_job(&new_job("team-a", "alice", None, 10 + idx), rec()).await.expect("create").0);
    }
    let (a, b, c) = (&jobs[0], &jobs[1], &jobs[2]);
    // One stale update spoils the batch: the others are not written either.
    let mut stale_b = moved(b, JobState::Admitted, 20);
    stale_b.expected_version = 7;
    let batch = [moved(c, JobState::Admitted, 20), moved(a, JobState::Admitted, 20), stale_b];
    let res = store.update_jobs(&batch, recorded("spoiled")).await;
    assert!(matches!(res, Err(Error::Conflict { .. })), "{res:?}");
    for job in &jobs {
        assert_eq!(&store.get_job(job.id).await.expect("get"), job, "nothing written");
    }
    assert!(trail(audit, "spoiled").await.is_empty());

    // A batch that holds: answered in the order given, each as stored; the record is built from them.
    let per_job = Record::many(|written: &[Job]| written.iter().map(|j| event(&format!("job:{}", j.id))).collect());
    let written = store.update_jobs(&[moved(c, JobState::Admitted, 30), moved(a, JobState::Starting, 30)], per_job).await.expect("batch");
    assert_eq!(ids(&written), [c.id, a.id]);
    assert_eq!((written[0].state, written[0].version), (JobState::Admitted, 2));
    assert_eq!((written[1].state, written[1].version), (JobState::Starting, 2));
    for job in &written {
        assert_eq!(&store.get_job(job.id).await.expect("get"), job);
    }
    for (job, want) in [(c, 1), (a, 1), (b, 0)] {
        assert_eq!(trail(audit, &format!("job:{}", job.id)).await.len(), want, "job {}", job.id);
    }
    assert_eq!(store.get_job(b.id).await.expect("get"), *b);
}

pub async fn jobs_concurrent_updates(h: &Harness) {
    let store: Arc<dyn JobStore> = h.jobs.clone();
    let (job, _) = store.create_job(&new_job("team-a", "alice", None, 10), rec()).await.expect("create");
    // Eight writers all read version 1: exactly one wins, the others conflict.
    let answers = race(&store, 8, |store, idx| {
        let mut update = moved(&job, JobState::Admitted, 100 + idx as i64);
        update.job.preemptions = idx as u32 + 1;
        async move { store.update_jobs(&[update], rec()).await }
    })
    .await;
    let winners: Vec<Job> = winners(answers).into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "one writer per version");
    let now = store.get_job(job.id).await.expect("get");
    assert_eq!((now.version, now.preemptions, now.updated_at), (2, winners[0].preemptions, winners[0].updated_at));
}

pub async fn jobs_concurrent_batches(h: &Harness) {
    let store: Arc<dyn JobStore> = h.jobs.clone();
    let (a, _) = store.create_job(&new_job("team-a", "alice", None, 10), rec()).await.expect("create");
    let (b, _) = store.create_job(&new_job("team-a", "alice", None, 11), rec()).await.expect("create");
    // Batches naming the same jobs in opposite orders: one wins whole, the others conflict (no
    // deadlock, no half-written batch).
    let answers = race(&store, 8, |store, idx| {
        let mut first = moved(&a, JobState::Admitted, 100 + idx as i64);
        first.job.attempt = idx as u32 + 1;
        let mut second = moved(&b, JobState::Admitted, 100 + idx as i64);
        second.job.attempt = idx as u32 + 1;
        let batch = if idx % 2 == 0 { vec![first, second] } else { vec![second, first] };
        async move { store.update_jobs(&batch, rec()).await }
    })
    .await;
    let winners = winners(answers);
    assert_eq!(winners.len(), 1, "one batch per version");
    let attempt = winners[0][0].attempt;
    for id in [a.id, b.id] {
        let now = store.get_job(id).await.expect("get");
        assert_eq!((now.version, now.attempt), (2, attempt), "both jobs from the same batch");
    }
}

pub async fn jobs_active(h: &Harness) {
    let store = &h.jobs;
    assert!(store.active_jobs().await.expect("active").is_empty());
    // One job per state, in reverse order of the states, so active ids are not the first ones.
    let mut want = Vec::new();
    for state in JobState::ALL.iter().rev() {
        let (job, _) = store.create_job(&new_job("team-a", "alice", None, 10), rec()).await.expect("create");
        let job = if *state == JobState::Queued {
            job
        } else {
            store.update_jobs(&[moved(&job, *state, 20)], rec()).await.expect("update").remove(0)
        };
        if !state.is_terminal() {
            want.push(job);
        }
    }
    want.sort_by_key(|j| j.id);
    let active = store.active_jobs().await.expect("active");
    assert_eq!(active, want, "every job not ended, by id");
    assert_eq!(
        active.iter().map(|j| j.state).collect::<Vec<_>>(),
        [JobState::Running, JobState::Starting, JobState::Admitted, JobState::Queued]
    );
    // An ended job leaves the set.
    store.update_jobs(&[moved(&active[0], JobState::Succeeded, 30)], rec()).await.expect("update");
    assert_eq!(ids(&store.active_jobs().await.expect("active")), ids(&active[1..]));
}

pub async fn jobs_queue_config_compare_and_set(h: &Harness) {
    let (store, audit) = (&h.jobs, &h.audit);
    assert_eq!(store.queue_config().await.expect("config"), None);
    // Nothing stored yet: only version 0 is expected.
    assert!(matches!(store.put_queue_config("x", 1, "alice", 5, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(store.queue_config().await.expect("config"), None);

    let text = "[[cluster_queue]]\nname = \"shared\"\n# quotes ' \" and ü\n";
    let first = store.put_queue_config(text, 0, "alice", 10, rec()).await.expect("first apply");
    let want = QueueConfigRecord { text: text.to_owned(), version: 1, updated_by: "alice".to_owned(), updated_at: 10 };
    assert_eq!(first, want);
    assert_eq!(store.queue_config().await.expect("config"), Some(want.clone()));
    // A second first apply loses, and writes nothing.
    assert!(matches!(store.put_queue_config("other", 0, "bob", 20, recorded("late-first")).await, Err(Error::Conflict { .. })));
    assert_eq!(store.queue_config().await.expect("config"), Some(want.clone()));
    assert!(trail(audit, "late-first").await.is_empty());

    let second = store.put_queue_config("second", 1, "bob", 30, rec()).await.expect("second apply");
    assert_eq!(second, QueueConfigRecord { text: "second".to_owned(), version: 2, updated_by: "bob".to_owned(), updated_at: 30 });
    assert_eq!(store.queue_config().await.expect("config"), Some(second.clone()));
    for stale in [0, 1, 3] {
        assert!(matches!(store.put_queue_config("stale", stale, "carol", 40, rec()).await, Err(Error::Conflict { .. })), "{stale}");
    }
    assert_eq!(store.queue_config().await.expect("config"), Some(second));
}

pub async fn jobs_concurrent_queue_config(h: &Harness) {
    let store: Arc<dyn JobStore> = h.jobs.clone();
    // Eight first applies, then eight applies over version 1: one of each wins.
    for expected in [0, 1] {
        let answers = race(&store, 8, |store, idx| async move {
            store.put_queue_config(&format!("config {expected}.{idx}"), expected, "alice", idx as i64, rec()).await
        })
        .await;
        let winners = winners(answers);
        assert_eq!(winners.len(), 1, "one apply per version");
        assert_eq!(winners[0].version, expected + 1);
        assert_eq!(store.queue_config().await.expect("config").as_ref(), Some(&winners[0]));
    }
}

pub async fn jobs_records_commit_with_changes(h: &Harness) {
    let (store, audit) = (&h.jobs, &h.audit);
    // Built from the result: the id the database allocated is in the record.
    let (job, _) = store
        .create_job(&new_job("team-a", "alice", Some("k"), 10), Record::of(|j: &Job| event(&format!("created:{}", j.id))))
        .await
        .expect("create");
    assert_eq!(trail(audit, &format!("created:{}", job.id)).await.len(), 1);
    assert!(!store.create_job(&new_job("team-a", "alice", Some("k"), 11), recorded("repeat")).await.expect("repeat").1);
    let updated = store.update_jobs(&[moved(&job, JobState::Admitted, 20)], recorded("update")).await.expect("update");
    assert!(store.update_jobs(&[moved(&job, JobState::Cancelled, 30)], recorded("stale")).await.is_err());
    store.update_jobs(&[moved(&updated[0], JobState::Starting, 40)], Record::none()).await.expect("unrecorded");
    store.put_queue_config("q", 0, "alice", 50, recorded("config")).await.expect("config");
    assert!(store.put_queue_config("q", 0, "alice", 60, recorded("stale-config")).await.is_err());
    for (id, want) in [("repeat", 0), ("update", 1), ("stale", 0), ("config", 1), ("stale-config", 0)] {
        assert_eq!(trail(audit, id).await.len(), want, "{id}");
    }
}

/// `conformance::race` on the jobs port, its connections opened by a read first.
async fn race<T, Fut>(store: &Arc<dyn JobStore>, n: usize, call: impl Fn(Arc<dyn JobStore>, usize) -> Fut) -> Vec<crate::Result<T>>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = crate::Result<T>> + Send + 'static,
{
    crate::conformance::race(
        store,
        n,
        |s: Arc<dyn JobStore>| async move { s.list_jobs(&query(PageRequest { offset: 0, limit: 1 })).await.map(|_| ()) },
        call,
    )
    .await
}
