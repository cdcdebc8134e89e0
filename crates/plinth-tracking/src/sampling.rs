//! Down-sampling of metric steps for the bulk-interval history endpoint.

/// Picks at most `max` steps from `steps` (sorted, distinct), evenly spaced by position and
/// always keeping the first and the last.
pub(crate) fn sample_steps(steps: &[i64], max: usize) -> Vec<i64> {
    if steps.len() <= max {
        return steps.to_vec();
    }
    if max <= 1 {
        return steps.first().copied().into_iter().collect();
    }
    let last = steps.len() - 1;
    let mut res: Vec<i64> = (0..max).map(|i| steps[i * last / (max - 1)]).collect();
    res.dedup();
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ends_and_bounds_count() {
        let steps: Vec<i64> = (0..1000).map(|s| s * 3).collect();
        let s = sample_steps(&steps, 10);
        assert_eq!(s.len(), 10);
        assert_eq!((s[0], s[9]), (0, 2997));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_steps(&steps[..5], 10), &steps[..5]);
        assert_eq!(sample_steps(&steps, 1), vec![0]);
        assert_eq!(sample_steps(&steps, 2), vec![0, 2997]);
        assert!(sample_steps(&[], 5).is_empty());
    }
}
