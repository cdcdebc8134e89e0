//! Outcomes over a sliding window: buckets of `width` seconds, each with request, error and fault
//! counts and a latency histogram on a logarithmic scale (10 µs to about 15 s, 10% apart), so a
//! percentile, or the share of requests under a latency, is read to within 10% without keeping each
//! request's latency. Automatic rollback watches each variant over one-second buckets; objectives
//! watch a deployment over up to 30 days in 60 buckets.

use std::time::Duration;

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
struct Bucket {
    /// Which bucket of time (seconds since an arbitrary origin, divided by the width) this one
    /// counts; older contents are stale.
    at: u64,
    requests: u64,
    errors: u64,
    faults: u64,
    latency: Box<[u32; LATENCY_BUCKETS]>,
}

/// Outcomes over the last `window` seconds.
pub struct Window {
    buckets: Vec<Bucket>,
    width: u64,
}

/// What a window saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub requests: u64,
    /// Every outcome but success.
    pub errors: u64,
    /// Failures of the server's own (5xx): what availability counts.
    pub faults: u64,
    histogram: Vec<u64>,
}

impl Stats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }

    /// The share of requests answered without a fault; 1 when there were none.
    pub fn availability(&self) -> f64 {
        if self.requests == 0 { 1.0 } else { 1.0 - self.faults as f64 / self.requests as f64 }
    }

    /// The latency under which a share `q` (0 to 1) of the requests fall: the upper bound of its
    /// histogram bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_bound(i);
            }
        }
        bucket_bound(LATENCY_BUCKETS - 1)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The share of requests whose latency's bucket lies under `limit`; 1 when there were none.
    pub fn share_within(&self, limit: Duration) -> f64 {
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return 1.0;
        }
        let within: u64 = self.histogram.iter().enumerate().filter(|(i, _)| bucket_bound(*i) <= limit).map(|(_, n)| n).sum();
        within as f64 / total as f64
    }

    /// Stats of `requests` requests, `errors` of them failed, all at `latency` (tests only).
    #[cfg(test)]
    pub(crate) fn with_latency(requests: u64, errors: u64, latency: Duration) -> Stats {
        let mut histogram = vec![0; LATENCY_BUCKETS];
        histogram[latency_bucket(latency)] = requests;
        Stats { requests, errors, faults: 0, histogram }
    }
}

impl Window {
    /// A window of `window_secs` seconds in buckets of `width_secs`.
    pub fn new(window_secs: u32, width_secs: u32) -> Window {
        let width = u64::from(width_secs.max(1));
        let len = u64::from(window_secs.max(1)).div_ceil(width) as usize;
        let empty = Bucket { at: u64::MAX, requests: 0, errors: 0, faults: 0, latency: Box::new([0; LATENCY_BUCKETS]) };
        Window { buckets: vec![empty; len], width }
    }

    pub fn record(&mut self, now_sec: u64, latency: Duration, error: bool, fault: bool) {
        let at = now_sec / self.width;
        let len = self.buckets.len() as u64;
        let slot = &mut self.buckets[(at % len) as usize];
        if slot.at != at {
            slot.at = at;
            slot.requests = 0;
            slot.errors = 0;
            slot.faults = 0;
            slot.latency.fill(0);
        }
        slot.requests += 1;
        slot.errors += u64::from(error || fault);
        slot.faults += u64::from(fault);
        slot.latency[latency_bucket(latency)] += 1;
    }

    /// The outcomes of the buckets within the window that ends at `now_sec`.
    pub fn stats(&self, now_sec: u64) -> Stats {
        let now = now_sec / self.width;
        let len = self.buckets.len() as u64;
        let live = self.buckets.iter().filter(|b| b.at != u64::MAX && b.at <= now && now - b.at < len);
        let mut out = Stats { requests: 0, errors: 0, faults: 0, histogram: vec![0; LATENCY_BUCKETS] };
        for b in live {
            out.requests += b.requests;
            out.errors += b.errors;
            out.faults += b.faults;
            for (sum, n) in out.histogram.iter_mut().zip(b.latency.iter()) {
                *sum += u64::from(*n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_read_to_within_its_bucket() {
        let mut w = Window::new(10, 1);
        for i in 0..1000u64 {
            // 990 fast requests, 10 slow ones: the p99 is among the fast.
            let latency = if i < 990 { Duration::from_micros(500) } else { Duration::from_millis(80) };
            w.record(3, latency, i % 10 == 0, false);
        }
        let s = w.stats(3);
        assert_eq!((s.requests, s.errors), (1000, 100));
        assert!(s.p99() >= Duration::from_micros(500) && s.p99() <= Duration::from_micros(550), "{:?}", s.p99());
        for _ in 0..20 {
            w.record(4, Duration::from_millis(80), false, false);
        }
        let s = w.stats(4);
        assert!(s.p99() >= Duration::from_millis(80) && s.p99() <= Duration::from_millis(88), "{:?}", s.p99());
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let mut w = Window::new(5, 1);
        w.record(0, Duration::from_millis(1), true, false);
        w.record(4, Duration::from_millis(1), false, false);
        assert_eq!(w.stats(4).requests, 2);
        assert_eq!(w.stats(5).requests, 1, "second 0 has left a 5-second window at second 5");
        // Second 10 reuses second 0's slot and second 5's: nothing old is counted.
        w.record(10, Duration::from_millis(1), false, false);
        assert_eq!((w.stats(10).requests, w.stats(10).errors), (1, 0));
        assert_eq!(w.stats(30).requests, 0);
    }

    #[test]
    fn wide_buckets_hold_long_windows_and_shares_are_read_from_the_histogram() {
        // An hour in 60 buckets of a minute.
        let mut w = Window::new(3600, 60);
        for i in 0..1000u64 {
            let latency = if i % 100 == 0 { Duration::from_millis(200) } else { Duration::from_millis(5) };
            w.record(i * 3, latency, i % 50 == 0, i % 500 == 0);
        }
        let s = w.stats(2999);
        assert_eq!((s.requests, s.errors, s.faults), (1000, 20, 2));
        assert!((s.availability() - 0.998).abs() < 1e-12);
        assert!((s.share_within(Duration::from_millis(50)) - 0.99).abs() < 1e-12);
        assert!(s.quantile(0.5) >= Duration::from_millis(5) && s.quantile(0.5) <= Duration::from_micros(5500));
        // An hour later, all of it has left the window.
        assert_eq!(w.stats(2999 + 3600).requests, 0);
        assert_eq!(w.stats(2999 + 3600).availability(), 1.0);
    }
}
