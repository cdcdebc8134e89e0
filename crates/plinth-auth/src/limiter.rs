//! Failed sign-ins, limited per user name and per source address: after `max_failures` within
//! `window`, further attempts for that key are refused until the window has passed, whether or
//! not their credentials are right (so guessing cannot continue). An attempt is reserved before its
//! credentials are checked and counts against the limit while it runs, so concurrent guesses cannot
//! all slip in before the first failure is recorded. In memory, per process. IPv6 addresses are
//! keyed by their /64 (one host usually owns a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures_per_user: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Most keys tracked; beyond it expired windows are dropped, then the oldest.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
    in_flight: u32,
}

pub struct Limiter {
    limits: Limits,
    windows: Mutex<HashMap<Key, Window>>,
}

/// A reserved attempt: settle it with `Limiter::succeeded` or `Limiter::failed`.
#[must_use]
pub struct Attempt {
    keys: Vec<Key>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter { limits, windows: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::User(_) => self.limits.max_failures_per_user,
            Key::Address(_) => self.limits.max_failures_per_address,
        }
    }

    fn keys(user: Option<&str>, address: Option<IpAddr>) -> Vec<Key> {
        user.map(|u| Key::User(u.to_owned())).into_iter().chain(address.map(|a| Key::Address(address_key(a)))).collect()
    }

    /// Reserves an attempt for `user` from `address`, or `None` when either is over its limit
    /// (failures plus attempts still running).
    pub fn reserve(&self, user: Option<&str>, address: Option<IpAddr>) -> Option<Attempt> {
        let now = Instant::now();
        let keys = Limiter::keys(user, address);
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, w| w.in_flight > 0 || now.duration_since(w.start) < window);
            while map.len() >= MAX_KEYS {
                let Some(oldest) = map.iter().filter(|(_, w)| w.in_flight == 0).min_by_key(|(_, w)| w.start).map(|(k, _)| k.clone()) else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        for key in &keys {
            if let Some(w) = map.get_mut(key)
                && now.duration_since(w.start) >= self.limits.window
            {
                *w = Window { start: now, failures: 0, in_flight: w.in_flight };
            }
            let used = map.get(key).map_or(0, |w| w.failures.saturating_add(w.in_flight));
            if used >= self.limit(key) {
                return None;
            }
        }
        for key in &keys {
            map.entry(key.clone()).or_insert(Window { start: now, failures: 0, in_flight: 0 }).in_flight += 1;
        }
        Some(Attempt { keys })
    }

    fn settle(&self, attempt: Attempt, failed: bool) {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in attempt.keys {
            if let Some(w) = map.get_mut(&key) {
                w.in_flight = w.in_flight.saturating_sub(1);
                if failed {
                    w.failures = w.failures.saturating_add(1);
                }
            }
        }
    }

    pub fn succeeded(&self, attempt: Attempt) {
        self.settle(attempt, false);
    }

    pub fn failed(&self, attempt: Attempt) {
        self.settle(attempt, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_counts_running_attempts() {
        let l = Limiter::new(Limits { max_failures_per_user: 3, max_failures_per_address: 5, window: Duration::from_secs(60) });
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        // Three attempts at once use the user's whole allowance before any of them fails.
        let running: Vec<_> = (0..3).map(|_| l.reserve(Some("alice"), Some(ip)).expect("reserved")).collect();
        assert!(l.reserve(Some("alice"), None).is_none(), "in-flight attempts count");
        for a in running {
            l.failed(a);
        }
        assert!(l.reserve(Some("alice"), None).is_none(), "the user is locked");
        let ok = l.reserve(Some("bob"), Some(ip)).expect("bob");
        l.succeeded(ok);
        let f = l.reserve(Some("carol"), Some(ip)).expect("carol");
        l.failed(f);
        let f = l.reserve(Some("dave"), Some(ip)).expect("dave");
        l.failed(f);
        assert!(l.reserve(Some("erin"), Some(ip)).is_none(), "the address is locked after 5 failures");
        // IPv6 neighbours in one /64 share a window.
        let a: IpAddr = "2001:db8::1".parse().expect("v6");
        let b: IpAddr = "2001:db8::2".parse().expect("v6");
        assert_eq!(address_key(a), address_key(b));
    }
}
