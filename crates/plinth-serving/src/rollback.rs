//! Automatic rollback: each primary variant's requests, errors and latencies over a sliding
//! window, and the judgement that takes a variant doing worse than the stable one out of the
//! traffic (`plinth_core::serving::Rollback` says when).
//!
//! The window is one bucket per second, each with a request count, an error count and a latency
//! histogram on a logarithmic scale (10 µs to about 15 s, 10% apart), so a p99 over the window is
//! read to within 10% without keeping each request's latency. Every outcome other than OK counts as
//! an error: the comparison is relative to the stable variant, so errors the clients cause fall on
//! both alike.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use plinth_core::serving::{DeploymentSpec, Rollback};

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

const LATENCY_BUCKETS: usize = 150;
const FIRST_BOUND_SECS: f64 = 10e-6;
const GROWTH: f64 = 1.1;

/// The histogram bucket of a latency: bucket `i` holds latencies up to `10 µs × 1.1^i`; the last
/// also holds everything longer.
fn latency_bucket(latency: Duration) -> usize {
    let secs = latency.as_secs_f64();
    if secs <= FIRST_BOUND_SECS {
        return 0;
    }
    let i = ((secs / FIRST_BOUND_SECS).ln() / GROWTH.ln()).ceil();
    (i as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_bound(i: usize) -> Duration {
    Duration::from_secs_f64(FIRST_BOUND_SECS * GROWTH.powi(i as i32))
}

#[derive(Clone)]
struct Second {
    /// The second (since an arbitrary origin) this bucket counts; older contents are stale.
    at: u64,
    requests: u64,
    errors: u64,
    latency: Box<[u32; LATENCY_BUCKETS]>,
}

/// One variant's outcomes over the last `window` seconds.
pub struct Window {
    seconds: Vec<Second>,
}

/// What a window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// The 99th percentile latency (the upper bound of its histogram bucket); zero when empty.
    pub p99: Duration,
}

impl Stats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }
}

impl Window {
    pub fn new(window_secs: u32) -> Window {
        let empty = Second { at: u64::MAX, requests: 0, errors: 0, latency: Box::new([0; LATENCY_BUCKETS]) };
        Window { seconds: vec![empty; window_secs.max(1) as usize] }
    }

    pub fn record(&mut self, now_sec: u64, latency: Duration, error: bool) {
        let len = self.seconds.len() as u64;
        let slot = &mut self.seconds[(now_sec % len) as usize];
        if slot.at != now_sec {
            slot.at = now_sec;
            slot.requests = 0;
            slot.errors = 0;
            slot.latency.fill(0);
        }
        slot.requests += 1;
        slot.errors += u64::from(error);
        slot.latency[latency_bucket(latency)] += 1;
    }

    /// The outcomes of the seconds in `(now_sec - window, now_sec]`.
    pub fn stats(&self, now_sec: u64) -> Stats {
        let len = self.seconds.len() as u64;
        let live = self.seconds.iter().filter(|s| s.at != u64::MAX && s.at <= now_sec && now_sec - s.at < len);
        let mut requests = 0;
        let mut errors = 0;
        let mut histogram = [0u64; LATENCY_BUCKETS];
        for s in live {
            requests += s.requests;
            errors += s.errors;
            for (sum, n) in histogram.iter_mut().zip(s.latency.iter()) {
                *sum += u64::from(*n);
            }
        }
        let mut p99 = Duration::ZERO;
        if requests > 0 {
            // The smallest bucket under which at least 99% of the requests fall.
            let rank = (requests * 99).div_ceil(100);
            let mut seen = 0;
            for (i, n) in histogram.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    p99 = bucket_bound(i);
                    break;
                }
            }
        }
        Stats { requests, errors, p99 }
    }
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
            windows: (0..variants).map(|_| Mutex::new(Window::new(policy.window_secs))).collect(),
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
            w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(now, latency, error);
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
            let (mine, theirs) = (s.p99.as_secs_f64() * 1e3, base.p99.as_secs_f64() * 1e3);
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
        Stats { requests, errors, p99: Duration::from_millis(p99_ms) }
    }

    #[test]
    fn p99_is_read_to_within_its_bucket() {
        let mut w = Window::new(10);
        for i in 0..1000u64 {
            // 990 fast requests, 10 slow ones: the p99 is among the fast.
            let latency = if i < 990 { Duration::from_micros(500) } else { Duration::from_millis(80) };
            w.record(3, latency, i % 10 == 0);
        }
        let s = w.stats(3);
        assert_eq!((s.requests, s.errors), (1000, 100));
        assert!(s.p99 >= Duration::from_micros(500) && s.p99 <= Duration::from_micros(550), "{:?}", s.p99);
        for _ in 0..20 {
            w.record(4, Duration::from_millis(80), false);
        }
        let s = w.stats(4);
        assert!(s.p99 >= Duration::from_millis(80) && s.p99 <= Duration::from_millis(88), "{:?}", s.p99);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let mut w = Window::new(5);
        w.record(0, Duration::from_millis(1), true);
        w.record(4, Duration::from_millis(1), false);
        assert_eq!(w.stats(4).requests, 2);
        assert_eq!(w.stats(5).requests, 1, "second 0 has left a 5-second window at second 5");
        // Second 10 reuses second 0's slot and second 5's: nothing old is counted.
        w.record(10, Duration::from_millis(1), false);
        assert_eq!((w.stats(10).requests, w.stats(10).errors), (1, 0));
        assert_eq!(w.stats(30).requests, 0);
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
        assert!(v.reason.contains("p99 latency 70.0 ms"), "{}", v.reason);
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
