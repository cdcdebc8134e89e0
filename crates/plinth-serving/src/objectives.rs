//! Latency and availability objectives (`plinth_core::serving::Objective`): a deployment's
//! requests watched over the objective's window (60 buckets of `crate::window`, whatever its
//! length), and the report of how they meet it. The service keeps one watch per deployment that
//! declares an objective, across reloads while the window's length holds.

use std::time::Duration;

use plinth_core::serving::Objective;

use crate::window::Window;

/// A deployment's requests over its objective's window.
pub(crate) struct ObjectiveWatch {
    pub(crate) window_secs: u32,
    pub(crate) window: std::sync::Mutex<Window>,
    pub(crate) origin: std::time::Instant,
}

impl ObjectiveWatch {
    pub(crate) fn new(window_secs: u32) -> ObjectiveWatch {
        // 60 buckets whatever the length: a month costs what a minute does.
        let width = window_secs.div_ceil(60).max(1);
        ObjectiveWatch { window_secs, window: std::sync::Mutex::new(Window::new(window_secs, width)), origin: std::time::Instant::now() }
    }

    pub(crate) fn record(&self, latency: Duration, error: bool, fault: bool) {
        let now = self.origin.elapsed().as_secs();
        self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(now, latency, error, fault);
    }
}

/// How a deployment meets its objective, over the window, as this node served it.
#[derive(Debug, Clone)]
pub struct ObjectiveReport {
    pub objective: Objective,
    /// Seconds of the window this node has watched (the window, once it has run that long).
    pub observed_secs: u64,
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    /// The latency under which the objective's share of requests fell, and that share's attainment.
    pub latency: Option<Duration>,
    pub share_within_latency: Option<f64>,
    pub availability: f64,
}

impl ObjectiveReport {
    /// Whether the objective's share of requests fell within its latency (vacuously, with no requests).
    pub fn latency_met(&self) -> Option<bool> {
        self.objective.latency_ms?;
        Some(self.share_within_latency.is_none_or(|share| share >= self.objective.latency_percentile))
    }

    pub fn availability_met(&self) -> Option<bool> {
        self.objective.availability.map(|target| self.availability >= target)
    }

    /// The share of the availability's error budget left: 1 untouched, 0 spent, below 0 overspent.
    pub fn error_budget_remaining(&self) -> Option<f64> {
        let target = self.objective.availability?;
        let budget = 1.0 - target;
        if budget <= 0.0 {
            return Some(if self.faults == 0 { 1.0 } else { f64::NEG_INFINITY });
        }
        Some(1.0 - (1.0 - self.availability) / budget)
    }
}
