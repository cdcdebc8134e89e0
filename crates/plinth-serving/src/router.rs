//! Traffic between a deployment's primary variants: each request goes to one variant, in the
//! proportions of their weights; a request with a routing key always reaches the same variant
//! while the weights are unchanged (sticky routing).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Picks primaries by weight. Requests without a key walk the scale with a low-discrepancy
/// sequence (a golden-ratio stride), so the shares hold exactly over any long run and closely over
/// short ones, with no random generator on the hot path.
#[derive(Debug)]
pub struct Router {
    /// `(end of the variant's span on the scale, the variant's index)`, spans in order.
    spans: Vec<(u64, usize)>,
    /// Near 0.618 of the scale and coprime with it, so the walk visits every point once per lap.
    stride: u64,
    next: AtomicU64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Router {
    /// `weights`: `(variant index, weight)` of the primaries; zero weights get no traffic.
    pub fn new(weights: &[(usize, u32)]) -> Router {
        let mut end = 0;
        let spans = weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(idx, w)| {
                end += u64::from(*w);
                (end, *idx)
            })
            .collect();
        let total: u64 = end.max(1);
        let mut stride = (total * 618) / 1000;
        while gcd(stride.max(1), total) != 1 {
            stride += 1;
        }
        Router { spans, stride: stride.max(1), next: AtomicU64::new(0) }
    }

    /// The variant for a request; `None` when no variant has weight.
    pub fn pick(&self, routing_key: Option<&str>) -> Option<usize> {
        let total = self.spans.last()?.0;
        let point = match routing_key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() % total
            }
            None => {
                let step = self.next.fetch_add(1, Ordering::Relaxed) % total;
                (step * self.stride) % total
            }
        };
        self.spans.iter().find(|(end, _)| point < *end).map(|(_, idx)| *idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_weights() {
        for weights in
            [vec![(0, 100)], vec![(0, 90), (1, 10)], vec![(0, 50), (1, 0), (2, 50)], vec![(0, 1), (1, 99)], vec![(3, 33), (1, 33), (2, 34)]]
        {
            let router = Router::new(&weights);
            let mut counts = std::collections::HashMap::new();
            for _ in 0..10_000 {
                *counts.entry(router.pick(None).expect("a variant")).or_insert(0u32) += 1;
            }
            for (idx, w) in &weights {
                let got = counts.get(idx).copied().unwrap_or(0);
                assert!(got.abs_diff(w * 100) <= 100, "{weights:?}: variant {idx} got {got} of 10000, weight {w}");
            }
        }
    }

    #[test]
    fn a_key_always_reaches_the_same_variant() {
        let router = Router::new(&[(0, 50), (1, 50)]);
        let mut seen = [0u32; 2];
        for user in 0..1000 {
            let key = format!("user-{user}");
            let first = router.pick(Some(&key)).expect("a variant");
            for _ in 0..5 {
                assert_eq!(router.pick(Some(&key)), Some(first));
            }
            seen[first] += 1;
        }
        assert!(seen[0] > 400 && seen[1] > 400, "keys spread over both variants: {seen:?}");
    }

    #[test]
    fn no_weight_no_variant() {
        assert_eq!(Router::new(&[]).pick(None), None);
        assert_eq!(Router::new(&[(0, 0)]).pick(Some("k")), None);
    }
}
