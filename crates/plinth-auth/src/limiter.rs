//! Failed sign-ins, limited per user name and per source address: after `max_failures` within
//! `window`, further attempts for that key are refused until the window has passed, whether or
//! not their credentials are right (so guessing cannot continue). In memory, per process.

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

/// Most keys tracked; beyond it the oldest windows are dropped first.
const MAX_KEYS: usize = 100_000;

pub struct Limiter {
    limits: Limits,
    failures: Mutex<HashMap<Key, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter { limits, failures: Mutex::new(HashMap::new()) }
    }

    fn count(&self, key: &Key, now: Instant) -> u32 {
        let map = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some((start, n)) if now.duration_since(*start) < self.limits.window => *n,
            _ => 0,
        }
    }

    /// Whether an attempt for `user` from `address` may be checked at all.
    pub fn allowed(&self, user: Option<&str>, address: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let user_ok = user.is_none_or(|u| self.count(&Key::User(u.to_owned()), now) < self.limits.max_failures_per_user);
        let addr_ok = address.is_none_or(|a| self.count(&Key::Address(a), now) < self.limits.max_failures_per_address);
        user_ok && addr_ok
    }

    pub fn failed(&self, user: Option<&str>, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        for key in user.map(|u| Key::User(u.to_owned())).into_iter().chain(address.map(Key::Address)) {
            let entry = map.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.limits.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit() {
        let l = Limiter::new(Limits { max_failures_per_user: 3, max_failures_per_address: 5, window: Duration::from_secs(60) });
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(l.allowed(Some("alice"), Some(ip)));
            l.failed(Some("alice"), Some(ip));
        }
        assert!(!l.allowed(Some("alice"), None), "the user is locked");
        assert!(l.allowed(Some("bob"), Some(ip)), "the address is not yet");
        l.failed(Some("bob"), Some(ip));
        l.failed(Some("carol"), Some(ip));
        assert!(!l.allowed(Some("dave"), Some(ip)), "the address is locked after 5");
    }
}
