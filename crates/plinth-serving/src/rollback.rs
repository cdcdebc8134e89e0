//! Automatic rollback: each primary variant's requests, errors and latencies over a sliding
//! window, and the judgement that takes a variant doing worse than the stable one out of the
//! traffic (`plinth_core::serving::Rollback` says when).
//!
//! The window (`crate::window`) is one bucket per second. Every outcome other than OK counts as an
//! error: the comparison is relative to the stable variant, so errors the clients cause fall on
//! both alike.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use plinth_core::serving::{DeploymentSpec, Rollback};

use crate::window::{Stats, Window};

/// Where serving reports the changes it makes by itself (an automatic rollback), for webhooks.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// `action` within the `deployment` entity (e.g. `rolled_back`) and what to say about it.
    async fn deployment_event(&self, action: &'static str, data: serde_json::Value);
}

/// A notifier that tells no one (tests, nodes without webhooks).
pub struct Silent;

#[async_trait]
impl Notifier for Silent {
    async fn deployment_event(&self, _action: &'static str, _data: serde_json::Value) {}
}

/// The rollback watch over one loaded deployment: a window per variant, judged at most once a second.
pub struct Monitor {
    policy: Rollback,
    windows: Vec<Mutex<Window>>,
    last_judged: AtomicU64,
    /// Set once a rollback is ordered, so one order goes out per loaded generation.
    tripped: AtomicBool,
    origin: std::time::Instant,
}

/// Why a variant is rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub variant: usize,
    pub stable: usize,
    pub reason: String,
}

impl Monitor {
    pub fn new(policy: Rollback, variants: usize) -> Monitor {
        Monitor {
            windows: (0..variants).map(|_| Mutex::new(Window::new(policy.window_secs, 1))).collect(),
            policy,
            last_judged: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
            origin: std::time::Instant::now(),
        }
    }

    fn now_sec(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    pub fn record(&self, variant: usize, latency: Duration, error: bool) {
        let now = self.now_sec();
        if let Some(w) = self.windows.get(variant) {
            w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(now, latency, error, false);
        }
    }

    /// Judges the variants of `spec` when a second has passed since the last judgement and no
    /// rollback was ordered yet; a verdict is answered once.
    pub fn check(&self, spec: &DeploymentSpec) -> Option<Verdict> {
        let now = self.now_sec() + 1;
        let last = self.last_judged.load(Ordering::Relaxed);
        if last >= now || self.tripped.load(Ordering::Relaxed) {
            return None;
        }
        if self.last_judged.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return None;
        }
        let stats: Vec<Stats> =
            self.windows.iter().map(|w| w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stats(now - 1)).collect();
        let verdict = judge(&self.policy, spec, &stats)?;
        (!self.tripped.swap(true, Ordering::AcqRel)).then_some(verdict)
    }
}

/// The first primary (other than the stable one, with traffic) that does worse than the stable
/// variant by more than the policy allows, each with at least `min_requests` in the window.
pub fn judge(policy: &Rollback, spec: &DeploymentSpec, stats: &[Stats]) -> Option<Verdict> {
    let stable = spec.stable_variant()?;
    let base = stats.get(stable)?;
    let min = u64::from(policy.min_requests);
    if base.requests < min {
        return None;
    }
    for (idx, v) in spec.variants.iter().enumerate() {
        if idx == stable || v.is_shadow() || v.weight == 0 {
            continue;
        }
        let Some(s) = stats.get(idx).filter(|s| s.requests >= min) else { continue };
        let (mine, theirs) = (s.p99(), base.p99());
        let stable_name = &spec.variants[stable].name;
        if let Some(max) = policy.max_error_rate
            && s.error_rate() - base.error_rate() > max
        {
            return Some(Verdict {
                variant: idx,
                stable,
                reason: format!(
                    "error rate {:.2}% over {} requests, against {:.2}% for '{stable_name}' (allowed: {:.2} points more)",
                    s.error_rate() * 100.0,
                    s.requests,
                    base.error_rate() * 100.0,
                    max * 100.0
                ),
            });
        }
        if let Some(max_ms) = policy.max_p99_ms {
            let (mine, theirs) = (mine.as_secs_f64() * 1e3, theirs.as_secs_f64() * 1e3);
            if mine - theirs > max_ms {
                return Some(Verdict {
                    variant: idx,
                    stable,
                    reason: format!(
                        "p99 latency {mine:.1} ms over {} requests, against {theirs:.1} ms for '{stable_name}' (allowed: {max_ms} ms more)",
                        s.requests
                    ),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use plinth_core::serving::{ModelRef, Variant};

    use super::*;

    fn spec(weights: &[u32]) -> DeploymentSpec {
        DeploymentSpec::with_variants(
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| Variant {
                    name: format!("v{i}"),
                    model: ModelRef::parse(&format!("m/{}", i + 1)).expect("ref"),
                    weight: *w,
                    shadow: None,
                })
                .collect(),
        )
    }

    fn stats(requests: u64, errors: u64, p99_ms: u64) -> Stats {
        Stats::with_latency(requests, errors, Duration::from_millis(p99_ms))
    }

    #[test]
    fn verdicts_compare_with_the_stable_variant() {
        let policy = Rollback { max_error_rate: Some(0.01), max_p99_ms: Some(50.0), window_secs: 60, min_requests: 100 };
        let s = spec(&[90, 10]);
        // Within the allowance: 1.5% against 1%.
        assert_eq!(judge(&policy, &s, &[stats(1000, 10, 5), stats(200, 3, 20)]), None);
        // 5% against 1%: out.
        let v = judge(&policy, &s, &[stats(1000, 10, 5), stats(200, 10, 20)]).expect("rolled back");
        assert_eq!((v.variant, v.stable), (1, 0));
        assert!(v.reason.contains("error rate 5.00%"), "{}", v.reason);
        // Too few requests to judge, on either side.
        assert_eq!(judge(&policy, &s, &[stats(1000, 10, 5), stats(99, 99, 900)]), None);
        assert_eq!(judge(&policy, &s, &[stats(99, 0, 5), stats(200, 200, 900)]), None);
        // Slow: 70 ms against 5 ms.
        let v = judge(&policy, &s, &[stats(1000, 0, 5), stats(200, 0, 70)]).expect("rolled back");
        // Read from the histogram: within its 10% buckets.
        assert!(v.reason.starts_with("p99 latency 70.") && v.reason.contains("against 5."), "{}", v.reason);
        // Both bad alike: the stable variant sets the bar.
        assert_eq!(judge(&policy, &s, &[stats(1000, 500, 300), stats(200, 100, 300)]), None);
        // The stable variant is the heaviest, wherever it is declared; a variant without traffic is not judged.
        let v = judge(&policy, &spec(&[10, 90]), &[stats(200, 50, 5), stats(1000, 0, 5)]).expect("rolled back");
        assert_eq!((v.variant, v.stable), (0, 1));
        assert_eq!(judge(&policy, &spec(&[100, 0]), &[stats(1000, 0, 5), stats(200, 200, 5)]), None);
    }

    #[test]
    fn a_monitor_orders_one_rollback() {
        let policy = Rollback { max_error_rate: Some(0.01), max_p99_ms: None, window_secs: 10, min_requests: 5 };
        let s = spec(&[50, 50]);
        let m = Monitor::new(policy, 2);
        for _ in 0..10 {
            m.record(0, Duration::from_millis(1), false);
            m.record(1, Duration::from_millis(1), true);
        }
        let v = m.check(&s).expect("the failing variant goes");
        assert_eq!(v.variant, 1);
        m.last_judged.store(0, Ordering::Relaxed);
        assert_eq!(m.check(&s), None, "one order per loaded generation");
    }
}
