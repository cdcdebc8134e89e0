//! The admission logic at scale, alone: 10,000 jobs pending over four cluster queues (two cohorts),
//! cycles timed as jobs are released one by one and the next ones admitted.
//!
//! `cargo run --release -p plinth-scheduler --example admission [-- PENDING]`; bench/jobs.py
//! measures the same through the server.

use std::collections::BTreeMap;
use std::time::Instant;

use plinth_scheduler::admission::{Admission, Workload};
use plinth_scheduler::queues::QueueConfig;

const CONFIG: &str = r#"
[[flavors]]
name = "default"
[[flavors]]
name = "gpu-a100"

[[cluster_queues]]
name = "team-a"
cohort = "research"
weight = 2.0
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 32 }, memory = { nominal = "128Gi" } }]
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [{ name = "gpu-a100", gpu = { nominal = 4 } }]

[[cluster_queues]]
name = "team-b"
cohort = "research"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 32 }, memory = { nominal = "128Gi" } }]
[[cluster_queues.resource_groups]]
resources = ["gpu"]
flavors = [{ name = "gpu-a100", gpu = { nominal = 4 } }]

[[cluster_queues]]
name = "team-c"
cohort = "prod"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 16 }, memory = { nominal = "64Gi" } }]

[[cluster_queues]]
name = "team-d"
cohort = "prod"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{ name = "default", cpu = { nominal = 16 }, memory = { nominal = "64Gi" } }]
"#;

fn main() {
    let pending: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let config = QueueConfig::parse(CONFIG).expect("the example's configuration is valid");
    let mut admission = Admission::new(&config);
    let queues = ["team-a", "team-b", "team-c", "team-d"];
    for id in 0..pending {
        let queue = queues[id % queues.len()];
        // Mixed shapes: 1 to 4 CPUs, 2 to 8 GiB, a GPU for a third of the research jobs.
        let mut requests =
            BTreeMap::from([("cpu".to_owned(), 1000 * (1 + (id % 4) as u64)), ("memory".to_owned(), (2 + (id % 4) as u64) << 30)]);
        if (queue == "team-a" || queue == "team-b") && id % 3 == 0 {
            requests.insert("gpu".to_owned(), 1);
        }
        admission.add_pending(Workload {
            id: id as i64,
            cluster_queue: queue.to_owned(),
            priority: (id % 3) as i32,
            created_at: id as i64,
            requests,
            gpu_flavor: None,
            not_before: None,
        });
    }
    let mut now = 1_000_000i64;
    let mut admitted: Vec<i64> = Vec::new();
    let mut cycle_times = Vec::new();
    let mut decided = 0usize;
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let decisions = admission.cycle(now);
        let cycle = t.elapsed();
        if decisions.admit.is_empty() && admitted.is_empty() {
            break;
        }
        cycle_times.push((cycle.as_secs_f64() * 1e3, decisions.admit.len()));
        decided += decisions.admit.len();
        admitted.extend(decisions.admit.iter().map(|(id, _)| *id));
        // The oldest running job ends: its quota goes to the next ones.
        if !admitted.is_empty() {
            let done = admitted.remove(0);
            admission.release(done);
        }
        now += 10;
    }
    let total = started.elapsed();
    let mut times: Vec<f64> = cycle_times.iter().map(|(ms, _)| *ms).collect();
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let _ = writeln!(out, "{pending} jobs pending over 4 cluster queues in 2 cohorts; every job admitted exactly once");
    let _ = writeln!(out, "cycles: {}; admissions: {decided}; total {:.1} ms", times.len(), total.as_secs_f64() * 1e3);
    let _ = writeln!(out, "cycle time: p50 {:.3} ms, p95 {:.3} ms, max {:.3} ms", at(0.5), at(0.95), at(1.0));
    let _ =
        writeln!(out, "per admission decision (all cycle time / admissions): {:.3} ms", times.iter().sum::<f64>() / decided.max(1) as f64);
    assert_eq!(decided, pending, "every job is admitted exactly once");
}
