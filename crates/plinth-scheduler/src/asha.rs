//! Asynchronous successive halving (ASHA), the early stopping of sweeps: pure, no I/O.
//!
//! Rungs sit at `min_steps × η^k` steps (up to `max_steps`). When a trial first reports its
//! objective at or past a rung, its value there is recorded with the others that reached that rung
//! before it, and the trial goes on only if it is in the best `1/η` of them: its value is compared
//! with the `(1 − 1/η)` quantile (linear interpolation) of the rung's values, and a trial worse
//! than that is stopped. Decisions are made as trials arrive, never waiting for a rung to fill (the
//! "asynchronous" of ASHA), so no trial idles; a trial alone at a rung goes on.

use std::collections::BTreeMap;

/// Which way the objective improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Maximize,
    Minimize,
}

/// What a trial's new values decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No new rung reached, or every new rung passed.
    Continue,
    /// Worse than the rung's cutoff: stop the trial.
    Stop { rung_steps: u64, value: f64, cutoff: f64 },
}

/// The rungs and what each recorded.
#[derive(Debug, Clone)]
pub struct Asha {
    rungs: Vec<u64>,
    eta: f64,
    direction: Direction,
    /// Per rung: each trial's value there, in arrival order.
    recorded: Vec<Vec<(u32, f64)>>,
    /// Per trial: how many rungs it has passed or been judged at.
    reached: BTreeMap<u32, usize>,
}

impl Asha {
    /// Rungs at `min_steps × eta^k` below `max_steps`.
    pub fn new(min_steps: u64, eta: u32, max_steps: u64, direction: Direction) -> Asha {
        let mut rungs = Vec::new();
        let mut steps = min_steps.max(1);
        while steps < max_steps {
            rungs.push(steps);
            steps = steps.saturating_mul(u64::from(eta.max(2)));
        }
        let recorded = vec![Vec::new(); rungs.len()];
        Asha { rungs, eta: f64::from(eta.max(2)), direction, recorded, reached: BTreeMap::new() }
    }

    pub fn rungs(&self) -> &[u64] {
        &self.rungs
    }

    /// Takes a trial's objective values so far (`(step, value)`, any order; non-finite values
    /// ignored) and judges it at every rung it newly reached, in rung order.
    pub fn observe(&mut self, trial: u32, history: &[(u64, f64)]) -> Decision {
        let mut points: Vec<(u64, f64)> = history.iter().copied().filter(|(_, v)| v.is_finite()).collect();
        points.sort_by_key(|(step, _)| *step);
        let done = self.reached.get(&trial).copied().unwrap_or(0);
        for rung in done..self.rungs.len() {
            let steps = self.rungs[rung];
            // The value of the first report at or past the rung.
            let Some(&(_, value)) = points.iter().find(|(step, _)| *step >= steps) else { break };
            self.reached.insert(trial, rung + 1);
            self.recorded[rung].push((trial, value));
            let cutoff = self.cutoff(rung);
            let worse = match self.direction {
                Direction::Maximize => value < cutoff,
                Direction::Minimize => value > cutoff,
            };
            if worse {
                return Decision::Stop { rung_steps: steps, value, cutoff };
            }
        }
        Decision::Continue
    }

    /// The value a trial must reach at `rung` to go on: the `(1 − 1/η)` quantile of the rung's
    /// values when maximizing, the `1/η` quantile when minimizing.
    fn cutoff(&self, rung: usize) -> f64 {
        let mut values: Vec<f64> = self.recorded[rung].iter().map(|(_, v)| *v).collect();
        values.sort_by(f64::total_cmp);
        let q = match self.direction {
            Direction::Maximize => 1.0 - 1.0 / self.eta,
            Direction::Minimize => 1.0 / self.eta,
        };
        quantile(&values, q)
    }
}

/// The `q` quantile of sorted `values` by linear interpolation between closest ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(final_value: f64, steps: u64) -> Vec<(u64, f64)> {
        (1..=steps).map(|s| (s, final_value * s as f64 / steps as f64)).collect()
    }

    #[test]
    fn rungs_grow_by_eta_below_the_last_step() {
        assert_eq!(Asha::new(1, 3, 27, Direction::Maximize).rungs(), &[1, 3, 9]);
        assert_eq!(Asha::new(5, 2, 50, Direction::Minimize).rungs(), &[5, 10, 20, 40]);
        assert!(Asha::new(10, 2, 10, Direction::Maximize).rungs().is_empty());
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert!((quantile(&[1.0, 2.0, 3.0], 2.0 / 3.0) - (2.0 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn trials_below_the_rung_cutoff_stop_as_they_arrive() {
        let mut asha = Asha::new(2, 2, 16, Direction::Maximize);
        // The first trial is alone at every rung: it goes on.
        assert_eq!(asha.observe(0, &curve(0.5, 16)), Decision::Continue);
        // A better one goes on; a worse one stops at the first rung (2 steps).
        assert_eq!(asha.observe(1, &curve(0.9, 16)), Decision::Continue);
        match asha.observe(2, &curve(0.1, 16)) {
            Decision::Stop { rung_steps, value, cutoff } => {
                assert_eq!(rung_steps, 2);
                assert!(value < cutoff, "{value} < {cutoff}");
            }
            other => panic!("expected a stop, got {other:?}"),
        }
        // A trial reporting in steps is judged at each rung as it reaches it, once.
        let partial: Vec<(u64, f64)> = curve(0.95, 16).into_iter().take(3).collect();
        assert_eq!(asha.observe(3, &partial), Decision::Continue);
        assert_eq!(asha.observe(3, &partial), Decision::Continue, "a rung is judged once");
        assert_eq!(asha.observe(3, &curve(0.95, 16)), Decision::Continue);
    }

    #[test]
    fn minimizing_keeps_the_lowest() {
        let mut asha = Asha::new(1, 3, 9, Direction::Minimize);
        for (trial, loss) in [(0, 1.0), (1, 0.5), (2, 0.8)] {
            let history: Vec<(u64, f64)> = (1..=9).map(|s| (s, loss)).collect();
            let _ = asha.observe(trial, &history);
        }
        let history: Vec<(u64, f64)> = (1..=9).map(|s| (s, 2.0)).collect();
        assert!(matches!(asha.observe(3, &history), Decision::Stop { rung_steps: 1, .. }));
        let history: Vec<(u64, f64)> = (1..=9).map(|s| (s, 0.1)).collect();
        assert_eq!(asha.observe(4, &history), Decision::Continue);
    }

    #[test]
    fn not_a_number_is_ignored() {
        let mut asha = Asha::new(1, 2, 4, Direction::Maximize);
        assert_eq!(asha.observe(0, &[(1, f64::NAN)]), Decision::Continue);
        assert_eq!(asha.observe(0, &[(1, f64::NAN), (2, 0.5)]), Decision::Continue);
    }

    /// A synthetic sweep: trials whose quality is known stop early in proportion, and the best
    /// trial always survives every rung.
    #[test]
    fn the_best_trial_survives_and_most_others_stop() {
        let mut asha = Asha::new(1, 3, 27, Direction::Maximize);
        let qualities: Vec<f64> = (0..30).map(|i| ((i * 7919) % 30) as f64 / 30.0).collect();
        let best = qualities.iter().cloned().fold(f64::MIN, f64::max);
        let mut stopped = 0;
        for (trial, q) in qualities.iter().enumerate() {
            match asha.observe(trial as u32, &curve(*q, 27)) {
                Decision::Stop { .. } => {
                    stopped += 1;
                    assert!(*q < best, "the best trial was stopped");
                }
                Decision::Continue => {}
            }
        }
        assert!(stopped >= 15, "most trials stop early ({stopped} of 30)");
    }
}
