//! Admission scenarios: a queue configuration in TOML, jobs in a one-line notation, and what a
//! cycle decides and why the others wait, as lines of text.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use plinth_core::jobs::FlavorAssignment;

use crate::admission::{Admission, Decisions, Workload, fits_ever};
use crate::queues::QueueConfig;

/// One queue without a cohort with two GPU flavors, and a second one.
const SOLO: &str = r#"
[[flavors]]
name = "default"
[[flavors]]
name = "gpu-a100"
[[flavors]]
name = "gpu-h100"

[[cluster_queues]]
name = "team-a"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [ { name = "default", cpu = { nominal = 8 }, memory = { nominal = "32Gi" } } ]
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "gpu-a100", gpu = { nominal = 4 } }, { name = "gpu-h100", gpu = { nominal = 2 } } ]

[[cluster_queues]]
name = "team-b"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "gpu-a100", gpu = { nominal = 4 } } ]
"#;

/// A cohort lending 4 + 4 + 1 GPUs (team-c keeps 3 of its 4), and a queue on its own.
const COHORT: &str = r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4, borrowing_limit = 2 } } ]

[[cluster_queues]]
name = "team-b"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]

[[cluster_queues]]
name = "team-c"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4, lending_limit = 1 } } ]

[[cluster_queues]]
name = "solo"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]
"#;

/// A strict-FIFO queue and a best-effort one, 4 GPUs each.
const STRICT: &str = r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
queueing = "strict_fifo"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]

[[cluster_queues]]
name = "team-b"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]
"#;

/// A queue of 4 GPUs that evicts its own lower-priority jobs.
const WITHIN: &str = r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
preemption = { within_cluster_queue = "lower_priority" }
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]
"#;

/// Three queues of 4 GPUs in a cohort; team-b reclaims with `policy`.
fn reclaim_config(policy: &str) -> String {
    format!(
        r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 4 }} }} ]

[[cluster_queues]]
name = "team-b"
cohort = "research"
preemption = {{ reclaim_within_cohort = "{policy}" }}
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 4 }} }} ]

[[cluster_queues]]
name = "team-c"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 4 }} }} ]
"#
    )
}

fn config(text: &str) -> QueueConfig {
    QueueConfig::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A job in one line: `id queue key=value...`. Keys: a resource's name with its amount in its
/// unit (cpu in millicores, memory in bytes), `prio`, `at` (submission time, the id by default),
/// `gpu_flavor`, `not_before`; for an admitted job, `on` (the flavor of all its resources) or
/// `on.<resource>`, and `since` (admission time, the id by default).
fn parse_job(text: &str) -> (Workload, FlavorAssignment, i64) {
    let mut words = text.split_whitespace();
    let id: i64 = words.next().expect("an id").parse().expect("a numeric id");
    let queue = words.next().expect("a queue");
    let mut workload = Workload {
        id,
        cluster_queue: queue.to_owned(),
        priority: 0,
        created_at: id,
        requests: BTreeMap::new(),
        gpu_flavor: None,
        not_before: None,
    };
    let (mut on_all, mut on, mut since) = (None, BTreeMap::new(), id);
    for word in words {
        let (key, value) = word.split_once('=').expect("key=value");
        let number = || value.parse::<i64>().expect("a number");
        match key {
            "prio" => workload.priority = i32::try_from(number()).expect("a priority"),
            "at" => workload.created_at = number(),
            "gpu_flavor" => workload.gpu_flavor = Some(value.to_owned()),
            "not_before" => workload.not_before = Some(number()),
            "since" => since = number(),
            "on" => on_all = Some(value.to_owned()),
            _ if key.starts_with("on.") => drop(on.insert(key["on.".len()..].to_owned(), value.to_owned())),
            resource => drop(workload.requests.insert(resource.to_owned(), value.parse().expect("an amount"))),
        }
    }
    let flavors = workload.requests.keys().filter_map(|r| on.get(r).or(on_all.as_ref()).map(|f| (r.clone(), f.clone()))).collect();
    (workload, flavors, since)
}

fn job(text: &str) -> Workload {
    parse_job(text).0
}

fn setup(config_text: &str, admitted: &[&str], pending: &[&str]) -> Admission {
    let mut admission = Admission::new(config(config_text));
    for text in admitted {
        let (workload, flavors, since) = parse_job(text);
        admission.admitted(workload, flavors, since);
    }
    for text in pending {
        admission.add_pending(job(text));
    }
    admission
}

fn render(decisions: &Decisions) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, flavors) in &decisions.admit {
        let flavors: Vec<String> = flavors.iter().map(|(r, f)| format!("{r}={f}")).collect();
        lines.push(format!("admit {id} {}", flavors.join(" ")));
    }
    for p in &decisions.preempt {
        lines.push(format!("preempt {} for {}", p.victim, p.preemptor));
    }
    lines
}

/// Every pending job's wait, by id.
fn waits(admission: &Admission) -> Vec<String> {
    let ids: BTreeSet<i64> = admission.pending.keys().copied().collect();
    ids.into_iter().map(|id| format!("wait {id}: {}", admission.explain(id).expect("a pending job"))).collect()
}

/// Runs one cycle: what it decided, then why every pending job waits.
fn cycle(admission: &mut Admission, now: i64) -> Vec<String> {
    let decisions = admission.cycle(now);
    let mut lines = render(&decisions);
    lines.extend(waits(admission));
    lines
}

struct Case {
    name: &'static str,
    config: &'static str,
    admitted: &'static [&'static str],
    pending: &'static [&'static str],
    expect: &'static [&'static str],
}

fn check(cases: &[Case]) {
    for case in cases {
        let mut admission = setup(case.config, case.admitted, case.pending);
        assert_eq!(cycle(&mut admission, 1000), case.expect, "{}", case.name);
    }
}

#[test]
fn flavors_and_quotas_of_a_queue_without_cohort() {
    check(&[
        Case {
            name: "a job within nominal quota is admitted on the first flavor of each group",
            config: SOLO,
            admitted: &[],
            pending: &["1 team-a cpu=2000 memory=1024 gpu=2"],
            expect: &["admit 1 cpu=default gpu=gpu-a100 memory=default"],
        },
        Case {
            name: "the first flavor is full: the second is used",
            config: SOLO,
            admitted: &["1 team-a gpu=4 on=gpu-a100"],
            pending: &["2 team-a gpu=2"],
            expect: &["admit 2 gpu=gpu-h100"],
        },
        Case {
            name: "gpu_flavor restricts the group covering gpu to that flavor",
            config: SOLO,
            admitted: &[],
            pending: &["1 team-a gpu=1 gpu_flavor=gpu-h100", "2 team-a gpu=2 gpu_flavor=gpu-h100"],
            expect: &["admit 1 gpu=gpu-h100", "wait 2: waiting for 2 gpu-h100 in team-a: 1/2 in use, position 1"],
        },
        Case {
            name: "a queue without a cohort never borrows, even when another queue is empty",
            config: SOLO,
            admitted: &["1 team-a gpu=4 on=gpu-a100", "2 team-a gpu=2 on=gpu-h100"],
            pending: &["3 team-a gpu=1"],
            expect: &["wait 3: waiting for 1 gpu-a100 in team-a: 4/4 in use, position 1"],
        },
        Case {
            name: "gang admission: 4 GPUs with 3 free waits, the 1-GPU job behind it is admitted",
            config: SOLO,
            admitted: &["1 team-a gpu=1 on=gpu-a100", "2 team-a gpu=2 on=gpu-h100"],
            pending: &["3 team-a gpu=4", "4 team-a gpu=1"],
            expect: &["admit 4 gpu=gpu-a100", "wait 3: waiting for 4 gpu-a100 in team-a: 2/4 in use, position 1"],
        },
        Case {
            name: "all resources of a group wait together; amounts are shown in their units",
            config: SOLO,
            admitted: &["1 team-a cpu=6000 memory=8589934592 on=default"],
            pending: &["2 team-a cpu=3000 memory=1024", "3 team-a cpu=1000 memory=25769803776", "4 team-a cpu=1000 memory=30064771072"],
            expect: &[
                "admit 3 cpu=default memory=default",
                "wait 2: waiting for 3 cpu (default) in team-a: 7/8 in use, position 1",
                "wait 4: waiting for 28Gi memory (default) in team-a: 32Gi/32Gi in use, position 2",
            ],
        },
        Case {
            name: "positions: priority descending, then submission time, then id",
            config: SOLO,
            admitted: &["1 team-a gpu=4 on=gpu-a100", "2 team-a gpu=2 on=gpu-h100"],
            pending: &[
                "5 team-a gpu=1 prio=1 at=50",
                "6 team-a gpu=1 prio=1 at=40",
                "7 team-a gpu=1 prio=2 at=60",
                "8 team-a gpu=2 prio=1 at=40",
            ],
            expect: &[
                "wait 5: waiting for 1 gpu-a100 in team-a: 4/4 in use, position 4",
                "wait 6: waiting for 1 gpu-a100 in team-a: 4/4 in use, position 2",
                "wait 7: waiting for 1 gpu-a100 in team-a: 4/4 in use, position 1",
                "wait 8: waiting for 2 gpu-a100 in team-a: 4/4 in use, position 3",
            ],
        },
        Case {
            name: "jobs that can never be admitted say why and do not hold anything up",
            config: SOLO,
            admitted: &[],
            pending: &["1 team-a tpu=1", "2 nowhere gpu=1", "3 team-a gpu=1 gpu_flavor=gpu-v100", "4 team-a gpu=9", "5 team-a gpu=1"],
            expect: &[
                "admit 5 gpu=gpu-a100",
                "wait 1: no quota for tpu in team-a, position 1",
                "wait 2: no cluster queue nowhere, position 1",
                "wait 3: cluster queue team-a does not offer flavor gpu-v100, position 2",
                "wait 4: 9 gpu is more than cluster queue team-a can ever hold: at most 4 in flavor gpu-a100, position 3",
            ],
        },
    ]);
}

#[test]
fn borrowing_and_lending_within_a_cohort() {
    check(&[
        Case {
            name: "borrowing within the borrowing limit",
            config: COHORT,
            admitted: &["1 team-a gpu=4 on=default"],
            pending: &["2 team-a gpu=2"],
            expect: &["admit 2 gpu=default"],
        },
        Case {
            name: "borrowing beyond the borrowing limit is refused",
            config: COHORT,
            admitted: &["1 team-a gpu=4 on=default", "2 team-a gpu=2 on=default"],
            pending: &["3 team-a gpu=1"],
            expect: &["wait 3: waiting for 1 gpu (default) in team-a: 6/4 in use, borrowing limit 2, position 1"],
        },
        Case {
            name: "a lending limit keeps the rest of a queue's quota for itself, before borrowers",
            config: COHORT,
            admitted: &["1 team-b gpu=4 on=default", "2 team-a gpu=4 on=default"],
            pending: &["3 team-b gpu=2", "4 team-b gpu=1", "5 team-c gpu=3"],
            expect: &[
                "admit 5 gpu=default",
                "admit 4 gpu=default",
                "wait 3: waiting for 2 gpu (default) in team-b: 5/4 in use, 0 free in cohort research, position 1",
            ],
        },
        Case {
            name: "a queue without a cohort does not borrow from one",
            config: COHORT,
            admitted: &["1 solo gpu=4 on=default"],
            pending: &["2 solo gpu=1"],
            expect: &["wait 2: waiting for 1 gpu (default) in solo: 4/4 in use, position 1"],
        },
    ]);
}

#[test]
fn strict_fifo_stops_at_the_first_job_that_does_not_fit_and_best_effort_goes_on() {
    check(&[
        Case {
            name: "strict and best-effort side by side",
            config: STRICT,
            admitted: &["1 team-a gpu=2 on=default", "2 team-b gpu=2 on=default"],
            pending: &["3 team-a gpu=4", "4 team-a gpu=1", "5 team-a gpu=1 not_before=99000", "6 team-b gpu=4", "7 team-b gpu=1"],
            expect: &[
                "admit 7 gpu=default",
                "wait 3: waiting for 4 gpu (default) in team-a: 2/4 in use, position 1",
                "wait 4: blocked behind job 3 (strict FIFO), position 2",
                "wait 5: retrying after backoff, not before 1970-01-01 00:01:39 UTC, position 3",
                "wait 6: waiting for 4 gpu (default) in team-b: 3/4 in use, position 1",
            ],
        },
        Case {
            name: "a job in backoff does not block a strict queue",
            config: STRICT,
            admitted: &[],
            pending: &["1 team-a gpu=1 prio=5 not_before=5000", "2 team-a gpu=1"],
            expect: &["admit 2 gpu=default", "wait 1: retrying after backoff, not before 1970-01-01 00:00:05 UTC, position 1"],
        },
    ]);
}

#[test]
fn backoff_ends_at_not_before() {
    let mut admission = setup(STRICT, &[], &["1 team-b gpu=1 not_before=5000"]);
    assert_eq!(cycle(&mut admission, 4999), ["wait 1: retrying after backoff, not before 1970-01-01 00:00:05 UTC, position 1"]);
    assert_eq!(cycle(&mut admission, 5000), ["admit 1 gpu=default"]);
}

#[test]
fn preemption_within_a_queue_evicts_strictly_lower_priorities_newest_first() {
    check(&[
        Case {
            name: "two victims among the lower priorities, the lowest and newest first",
            config: WITHIN,
            admitted: &[
                "1 team-a gpu=1 prio=1 on=default",
                "2 team-a gpu=1 on=default",
                "3 team-a gpu=1 on=default",
                "4 team-a gpu=1 prio=3 on=default",
            ],
            pending: &["10 team-a gpu=2 prio=2", "11 team-a gpu=1"],
            expect: &[
                "preempt 3 for 10",
                "preempt 2 for 10",
                "wait 10: waiting for preempted jobs to stop: 3, 2, position 1",
                "wait 11: waiting for 1 gpu (default) in team-a: 4/4 in use, position 2",
            ],
        },
        Case {
            name: "an equal priority is not enough",
            config: WITHIN,
            admitted: &["1 team-a gpu=2 on=default", "2 team-a gpu=2 on=default"],
            pending: &["3 team-a gpu=1"],
            expect: &["wait 3: waiting for 1 gpu (default) in team-a: 4/4 in use, position 1"],
        },
        Case {
            name: "no preemption unless the victims make the job fit",
            config: WITHIN,
            admitted: &["1 team-a gpu=3 prio=5 on=default", "2 team-a gpu=1 on=default"],
            pending: &["3 team-a gpu=2 prio=2"],
            expect: &["wait 3: waiting for 2 gpu (default) in team-a: 4/4 in use, position 1"],
        },
        Case {
            name: "without the policy nothing is preempted",
            config: STRICT,
            admitted: &["1 team-b gpu=4 on=default"],
            pending: &["2 team-b gpu=1 prio=9"],
            expect: &["wait 2: waiting for 1 gpu (default) in team-b: 4/4 in use, position 1"],
        },
    ]);
}

#[test]
fn reclaiming_lent_quota_evicts_only_what_borrowers_borrowed() {
    // team-a uses 6 of its 4 and team-c its 4: 2 of team-b's 4 are lent out.
    let borrowed: &[&str] = &[
        "1 team-a gpu=1 on=default",
        "2 team-a gpu=1 on=default",
        "3 team-a gpu=1 on=default",
        "4 team-a gpu=1 on=default",
        "5 team-a gpu=1 on=default",
        "6 team-a gpu=1 on=default",
        "7 team-c gpu=4 on=default prio=-5",
    ];
    let mut admission = setup(&reclaim_config("lower_priority"), borrowed, &["10 team-b gpu=4 prio=5"]);
    assert_eq!(
        cycle(&mut admission, 1000),
        ["preempt 6 for 10", "preempt 5 for 10", "wait 10: waiting for preempted jobs to stop: 6, 5, position 1"]
    );
    assert!(admission.is_being_preempted(6) && admission.is_being_preempted(5));
    let reason = admission.cycle(1000);
    assert_eq!(reason, Decisions::default(), "victims are not chosen twice and the preemptor waits for them");
    assert!(admission.release(6));
    assert_eq!(cycle(&mut admission, 2000), ["wait 10: waiting for preempted jobs to stop: 5, position 1"]);
    assert!(admission.release(5));
    assert_eq!(cycle(&mut admission, 3000), ["admit 10 gpu=default"]);

    let preemption = setup(&reclaim_config("lower_priority"), borrowed, &["10 team-b gpu=4 prio=5"]).cycle(0).preempt;
    assert_eq!(preemption[0].reason, "cluster queue team-b reclaims its quota in cohort research for job 10");

    let lent_out = "wait 10: waiting for 4 gpu (default) in team-b: 0/4 in use, 2 free in cohort research, position 1";
    let mut never = setup(&reclaim_config("never"), borrowed, &["10 team-b gpu=4 prio=5"]);
    assert_eq!(cycle(&mut never, 1000), [lent_out], "the policy is never");

    let mut equal = setup(&reclaim_config("lower_priority"), borrowed, &["10 team-b gpu=4 prio=0"]);
    assert_eq!(cycle(&mut equal, 1000), [lent_out], "lower_priority spares equal priorities");
    let mut any = setup(&reclaim_config("any"), borrowed, &["10 team-b gpu=4 prio=0"]);
    assert_eq!(cycle(&mut any, 1000)[..2], ["preempt 6 for 10", "preempt 5 for 10"], "any takes equal priorities too");

    // team-a borrows 2 with two jobs of 3: a job is the unit, so the newest goes even though
    // team-a then holds less than its nominal 4 (Kueue's rule: a borrowing queue gives back).
    let chunky: &[&str] = &["1 team-a gpu=3 on=default", "2 team-a gpu=3 on=default", "7 team-c gpu=4 on=default"];
    let mut taken = setup(&reclaim_config("any"), chunky, &["10 team-b gpu=4 prio=5"]);
    assert_eq!(cycle(&mut taken, 1000), ["preempt 2 for 10", "wait 10: waiting for preempted jobs to stop: 2, position 1"]);
    // A queue within its nominal quota gives nothing back.
    let within: &[&str] = &["1 team-a gpu=4 on=default", "7 team-c gpu=4 on=default", "8 team-c gpu=2 on=default"];
    let mut kept = setup(&reclaim_config("any"), within, &["10 team-b gpu=4 prio=5"]);
    let lines = cycle(&mut kept, 1000);
    assert!(lines.iter().all(|l| !l.starts_with("preempt 1 ")), "{lines:?}");

    // A queue that would go over its own nominal quota with the job does not reclaim.
    let mut over = setup(&reclaim_config("any"), borrowed, &["10 team-b gpu=4 prio=5"]);
    over.admitted(job("8 team-b gpu=2"), [("gpu".to_owned(), "default".to_owned())].into(), 0);
    let lines = cycle(&mut over, 1000);
    assert!(lines.iter().all(|l| !l.starts_with("preempt")), "{lines:?}");
}

#[test]
fn fair_sharing_gives_borrowers_shares_in_proportion_to_their_weights() {
    let config = |weight_a: &str| {
        format!(
            r#"
[[flavors]]
name = "default"
[[cluster_queues]]
name = "a"
cohort = "c"
weight = {weight_a}
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 2 }} }} ]
[[cluster_queues]]
name = "b"
cohort = "c"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 2 }} }} ]
[[cluster_queues]]
name = "lender"
cohort = "c"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ {{ name = "default", gpu = {{ nominal = 12 }} }} ]
"#
        )
    };
    for (weight_a, borrowed_a, borrowed_b) in [("1", 6, 6), ("2", 8, 4), ("0.5", 4, 8)] {
        let mut admission = Admission::new(self::config(&config(weight_a)));
        for i in 0..20 {
            admission.add_pending(job(&format!("{} a gpu=1", 100 + i)));
            admission.add_pending(job(&format!("{} b gpu=1", 200 + i)));
        }
        let decisions = admission.cycle(0);
        assert_eq!(decisions.admit.len(), 16, "all 16 GPUs of the cohort are used");
        let borrowed: BTreeMap<String, u64> = admission.usage().into_iter().map(|u| (u.cluster_queue, u.borrowed)).collect();
        assert_eq!((borrowed["a"], borrowed["b"]), (borrowed_a, borrowed_b), "weight {weight_a}");
    }
}

#[test]
fn jobs_within_nominal_quota_go_before_borrowers() {
    // Alphabetically `alpha` would borrow first and take what `beta` is owed.
    let text = r#"
[[flavors]]
name = "default"
[[cluster_queues]]
name = "alpha"
cohort = "c"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]
[[cluster_queues]]
name = "beta"
cohort = "c"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "default", gpu = { nominal = 4 } } ]
"#;
    let mut admission = Admission::new(config(text));
    for i in 1..=8 {
        admission.add_pending(job(&format!("{i} alpha gpu=1")));
    }
    for i in 11..=14 {
        admission.add_pending(job(&format!("{i} beta gpu=1 at=100")));
    }
    admission.cycle(0);
    assert_eq!(admission.admitted_counts(), BTreeMap::from([("alpha".to_owned(), 4), ("beta".to_owned(), 4)]));
}

#[test]
fn fits_ever_refuses_what_no_empty_cluster_could_admit() {
    let solo = config(SOLO);
    let cohort = config(COHORT);
    let cases: &[(&QueueConfig, &str, Result<(), &str>)] = &[
        (&solo, "1 team-a cpu=8000 memory=34359738368 gpu=4", Ok(())),
        (
            &solo,
            "1 team-a gpu=4 gpu_flavor=gpu-h100",
            Err("4 gpu is more than cluster queue team-a can ever hold: at most 2 in flavor gpu-h100"),
        ),
        (&solo, "1 team-a gpu=5", Err("5 gpu is more than cluster queue team-a can ever hold: at most 4 in flavor gpu-a100")),
        (&solo, "1 team-a cpu=8500", Err("8.5 cpu is more than cluster queue team-a can ever hold: at most 8 in flavor default")),
        (&solo, "1 team-a tpu=1", Err("no quota for tpu in team-a")),
        (&solo, "1 team-b cpu=1", Err("no quota for cpu in team-b")),
        (&solo, "1 team-a gpu=1 gpu_flavor=gpu-v100", Err("cluster queue team-a does not offer flavor gpu-v100")),
        (&solo, "1 nowhere gpu=1", Err("no cluster queue nowhere")),
        // Nominal 4 plus a borrowing limit of 2.
        (&cohort, "1 team-a gpu=6", Ok(())),
        (&cohort, "1 team-a gpu=7", Err("7 gpu is more than cluster queue team-a can ever hold: at most 6 in flavor default")),
        // No borrowing limit: its nominal 4 plus what the others lend (4 + 1).
        (&cohort, "1 team-b gpu=9", Ok(())),
        (&cohort, "1 team-b gpu=10", Err("10 gpu is more than cluster queue team-b can ever hold: at most 9 in flavor default")),
        (&cohort, "1 solo gpu=5", Err("5 gpu is more than cluster queue solo can ever hold: at most 4 in flavor default")),
        // Zero amounts are not requests.
        (&cohort, "1 solo gpu=0 cpu=0", Ok(())),
    ];
    for (config, text, expected) in cases {
        let workload = job(text);
        let got = fits_ever(config, &workload);
        assert_eq!(got, expected.map_err(str::to_owned), "{text}");
        assert_eq!(Admission::new(*config).fits_ever(&workload), got, "{text}");
    }
}

#[test]
fn reconfiguring_keeps_jobs_and_counts_what_still_has_a_quota() {
    let mut admission = setup(
        SOLO,
        &["1 team-a gpu=2 on=gpu-h100", "2 team-a gpu=3 on=gpu-a100", "3 team-b gpu=1 on=gpu-a100"],
        &["4 team-a gpu=1", "5 team-b gpu=1"],
    );
    let smaller = r#"
[[flavors]]
name = "gpu-a100"
[[cluster_queues]]
name = "team-a"
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [ { name = "gpu-a100", gpu = { nominal = 2 } } ]
"#;
    admission.reconfigure(config(smaller));
    let usage: Vec<(String, String, u64, u64)> =
        admission.usage().into_iter().map(|u| (u.cluster_queue, u.flavor, u.used, u.nominal)).collect();
    assert_eq!(usage, [("team-a".to_owned(), "gpu-a100".to_owned(), 3, 2)], "job 1's h100 and team-b are not counted any more");
    assert!(admission.find_admitted(1).is_some() && admission.find_admitted(3).is_some());
    assert_eq!(
        cycle(&mut admission, 1000),
        ["wait 4: waiting for 1 gpu-a100 in team-a: 3/2 in use, position 1", "wait 5: no cluster queue team-b, position 1"]
    );
    assert!(admission.release(2));
    assert!(admission.release(3));
    assert_eq!(cycle(&mut admission, 2000), ["admit 4 gpu=gpu-a100", "wait 5: no cluster queue team-b, position 1"]);
    assert_eq!(admission.pending_counts(), BTreeMap::from([("team-b".to_owned(), 1)]));
}

#[test]
fn explain_answers_between_cycles_and_removal_forgets() {
    let mut admission = setup(SOLO, &["1 team-a gpu=4 on=gpu-a100", "2 team-a gpu=2 on=gpu-h100"], &["3 team-a gpu=1"]);
    assert_eq!(waits(&admission), ["wait 3: waiting for 1 gpu-a100 in team-a: 4/4 in use, position 1"]);
    assert!(admission.release(1));
    assert_eq!(waits(&admission), ["wait 3: waiting for the next admission cycle, position 1"]);
    assert!(admission.remove(3));
    assert!(!admission.remove(3));
    assert_eq!(admission.explain(3), None);
    assert!(admission.remove(2), "an admitted job is released by remove");
    assert_eq!(admission.admitted_counts(), BTreeMap::new());
    assert!(!admission.release(2));
}

/// Deterministic pseudo-random numbers (a 64-bit LCG), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn stress_config(preemption: &str) -> QueueConfig {
    let mut text = String::from("[[flavors]]\nname = \"default\"\n[[flavors]]\nname = \"gpu-a\"\n[[flavors]]\nname = \"gpu-b\"\n");
    for (name, cohort, weight, queueing) in [
        ("q0", true, "1", "best_effort_fifo"),
        ("q1", true, "2", "strict_fifo"),
        ("q2", true, "1", "best_effort_fifo"),
        ("q3", false, "1", "best_effort_fifo"),
    ] {
        text.push_str(&format!("[[cluster_queues]]\nname = \"{name}\"\nweight = {weight}\nqueueing = \"{queueing}\"\n{preemption}\n"));
        let (cpu, memory, gpu) = if cohort {
            text.push_str("cohort = \"pool\"\n");
            (
                "{ nominal = 32, borrowing_limit = 16 }",
                "{ nominal = \"128Gi\", lending_limit = \"64Gi\" }",
                "{ nominal = 4, lending_limit = 2 }",
            )
        } else {
            ("{ nominal = 32 }", "{ nominal = \"128Gi\" }", "{ nominal = 4 }")
        };
        text.push_str(&format!(
            "[[cluster_queues.resource_groups]]\nresources = [\"cpu\", \"memory\"]\nflavors = [ {{ name = \"default\", cpu = {cpu}, memory = {memory} }} ]\n"
        ));
        text.push_str(&format!(
            "[[cluster_queues.resource_groups]]\nresources = [\"gpu\"]\nflavors = [ {{ name = \"gpu-a\", gpu = {gpu} }}, {{ name = \"gpu-b\", gpu = {gpu} }} ]\n"
        ));
    }
    config(&text)
}

fn stress_jobs(n: i64, rng: &mut Rng) -> Vec<Workload> {
    (1..=n)
        .map(|id| {
            let mut requests =
                BTreeMap::from([("cpu".to_owned(), (1 + rng.below(8)) * 1000), ("memory".to_owned(), (1 + rng.below(16)) << 30)]);
            let gpus = rng.below(3);
            if gpus > 0 {
                requests.insert("gpu".to_owned(), gpus);
            }
            Workload {
                id,
                cluster_queue: format!("q{}", id % 4),
                priority: i32::try_from(rng.below(3)).expect("small"),
                created_at: id,
                requests,
                gpu_flavor: (gpus > 0 && rng.below(10) == 0).then(|| "gpu-b".to_owned()),
                not_before: (rng.below(20) == 0).then(|| i64::try_from(rng.below(50_000)).expect("small")),
            }
        })
        .collect()
}

/// Checks, from the config and the admitted jobs alone, that no queue exceeds its nominal quota
/// plus borrowing limit, that no cohort lends more than its queues may lend, that every
/// assignment respects the groups and `gpu_flavor`, and that `usage()` agrees.
fn check_invariants(config: &QueueConfig, admitted: &HashMap<i64, (Workload, FlavorAssignment)>, admission: &Admission) {
    let mut used: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (workload, flavors) in admitted.values() {
        let cq = config.cluster_queue(&workload.cluster_queue).expect("a known queue");
        for group in &cq.resource_groups {
            let chosen: BTreeSet<&String> = group.resources.iter().filter_map(|r| flavors.get(r)).collect();
            assert!(chosen.len() <= 1, "job {} split group {:?} over {chosen:?}", workload.id, group.resources);
            if let (Some(flavor), Some(wanted)) = (chosen.first(), &workload.gpu_flavor)
                && group.resources.iter().any(|r| r == "gpu")
            {
                assert_eq!(*flavor, wanted, "job {}", workload.id);
            }
        }
        for (resource, amount) in &workload.requests {
            let flavor = flavors.get(resource).expect("every requested resource has a flavor");
            *used.entry((cq.name.clone(), flavor.clone(), resource.clone())).or_default() += amount;
        }
    }
    let mut pools: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for cq in &config.cluster_queues {
        for group in &cq.resource_groups {
            for flavor in &group.flavors {
                for (resource, quota) in &flavor.quotas {
                    let u = used.get(&(cq.name.clone(), flavor.name.clone(), resource.clone())).copied().unwrap_or(0);
                    let limit = match &cq.cohort {
                        Some(_) => quota.borrowing_limit.map_or(u64::MAX, |b| quota.nominal + b),
                        None => quota.nominal,
                    };
                    assert!(u <= limit, "{} uses {u} {resource} of {}, over its limit {limit}", cq.name, flavor.name);
                    let pool_key = (cq.cohort.clone().unwrap_or_else(|| cq.name.clone()), flavor.name.clone(), resource.clone());
                    let pool = pools.entry(pool_key).or_default();
                    pool.0 += u.saturating_sub(quota.guaranteed());
                    pool.1 += quota.lendable();
                }
            }
        }
    }
    for (key, (drawn, lendable)) in pools {
        assert!(drawn <= lendable, "cohort pool {key:?} overdrawn: {drawn} of {lendable}");
    }
    for row in admission.usage() {
        let expected = used.get(&(row.cluster_queue.clone(), row.flavor.clone(), row.resource.clone())).copied().unwrap_or(0);
        assert_eq!(row.used, expected, "{row:?}");
    }
}

/// Runs cycles until every job ran: each admitted job ends a few cycles later; victims stop at
/// once and queue again. Returns how many times each job was admitted and preempted.
fn run_to_completion(config: &QueueConfig, jobs: &[Workload], rng: &mut Rng) -> (HashMap<i64, u32>, HashMap<i64, u32>) {
    let mut admission = Admission::new(config);
    let by_id: HashMap<i64, &Workload> = jobs.iter().map(|w| (w.id, w)).collect();
    for workload in jobs {
        assert_eq!(admission.fits_ever(workload), Ok(()), "{workload:?}");
        admission.add_pending(workload.clone());
    }
    let mut admitted: HashMap<i64, (Workload, FlavorAssignment)> = HashMap::new();
    // When each admission ends: (job, which of its admissions).
    let mut ends: BTreeMap<i64, Vec<(i64, u32)>> = BTreeMap::new();
    let (mut admissions, mut preemptions) = (HashMap::new(), HashMap::new());
    let mut now = 0;
    for round in 0.. {
        assert!(round < 200_000, "no progress: {} pending, {} admitted", admission.pending.len(), admitted.len());
        let decisions = admission.cycle(now);
        let preemptors: BTreeSet<i64> = decisions.preempt.iter().map(|p| p.preemptor).collect();
        for (id, flavors) in &decisions.admit {
            let workload = by_id[id];
            assert!(!preemptors.contains(id), "preemptor {id} admitted in the cycle it preempted");
            assert!(workload.not_before.is_none_or(|t| t <= now), "job {id} admitted during its backoff");
            assert!(admitted.insert(*id, ((*workload).clone(), flavors.clone())).is_none(), "job {id} admitted twice at once");
            let count = admissions.entry(*id).or_insert(0);
            *count += 1;
            ends.entry(now + 1000 * (1 + i64::try_from(rng.below(4)).expect("small"))).or_default().push((*id, *count));
        }
        check_invariants(config, &admitted, &admission);
        if round % 97 == 0 {
            check_positions(&admission);
        }
        for p in &decisions.preempt {
            assert!(admitted.remove(&p.victim).is_some(), "victim {} is not admitted", p.victim);
            assert!(admission.release(p.victim));
            *preemptions.entry(p.victim).or_insert(0) += 1;
            admission.add_pending(by_id[&p.victim].clone());
        }
        now += 1000;
        let done: Vec<(i64, u32)> = ends.range(..=now).flat_map(|(_, ids)| ids.iter().copied()).collect();
        ends.retain(|&t, _| t > now);
        for (id, nth) in done {
            // The end of an admission that was preempted meanwhile is moot.
            if admissions[&id] == nth && admitted.remove(&id).is_some() {
                assert!(admission.release(id));
            }
        }
        if admission.pending.is_empty() && admitted.is_empty() {
            break;
        }
    }
    (admissions, preemptions)
}

/// Positions agree with a plain sort of each queue's pending jobs.
fn check_positions(admission: &Admission) {
    let mut by_queue: BTreeMap<&str, Vec<(i32, i64, i64)>> = BTreeMap::new();
    for entry in admission.pending.values() {
        let w = &entry.workload;
        by_queue.entry(&w.cluster_queue).or_default().push((-w.priority, w.created_at, w.id));
    }
    for jobs in by_queue.values_mut() {
        jobs.sort_unstable();
        for (i, &(_, _, id)) in jobs.iter().enumerate().step_by(37) {
            assert_eq!(admission.explain(id).expect("pending").position, i + 1, "job {id}");
        }
    }
}

#[test]
fn ten_thousand_jobs_over_four_queues_are_each_admitted_once_within_quota() {
    let mut rng = Rng(7);
    let config = stress_config("");
    let jobs = stress_jobs(10_000, &mut rng);
    let (admissions, preemptions) = run_to_completion(&config, &jobs, &mut rng);
    assert_eq!(admissions.len(), 10_000);
    assert!(admissions.values().all(|&n| n == 1));
    assert!(preemptions.is_empty());
}

#[test]
fn with_preemption_every_job_is_admitted_once_per_time_it_queued() {
    let mut rng = Rng(11);
    let config = stress_config("preemption = { within_cluster_queue = \"lower_priority\", reclaim_within_cohort = \"any\" }");
    let jobs = stress_jobs(2_000, &mut rng);
    let (admissions, preemptions) = run_to_completion(&config, &jobs, &mut rng);
    assert_eq!(admissions.len(), 2_000);
    for (id, n) in &admissions {
        assert_eq!(*n, 1 + preemptions.get(id).copied().unwrap_or(0), "job {id}");
    }
    assert!(!preemptions.is_empty(), "the scenario exercises preemption");
}

/// The two-queue cohort of the black-box test: team-b borrowed all of team-a's CPUs through a
/// cycle (not loaded as admitted), then team-a's higher-priority job reclaims them.
#[test]
fn reclaim_after_borrowing_through_a_cycle() {
    let text = r#"
[[flavors]]
name = "default"

[[cluster_queues]]
name = "team-a"
cohort = "research"
preemption = { reclaim_within_cohort = "lower_priority" }
[[cluster_queues.resource_groups]]
resources = ["cpu"]
flavors = [{ name = "default", cpu = { nominal = 2 } }]

[[cluster_queues]]
name = "team-b"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["cpu"]
flavors = [{ name = "default", cpu = { nominal = 2 } }]
"#;
    let mut admission = setup(text, &[], &["1 team-b cpu=4000"]);
    assert_eq!(cycle(&mut admission, 1000), ["admit 1 cpu=default"]);
    admission.add_pending(job("2 team-a cpu=2000 prio=10"));
    assert_eq!(cycle(&mut admission, 2000), ["preempt 1 for 2", "wait 2: waiting for preempted jobs to stop: 1, position 1"]);
}
