//! Latency summaries: percentiles by nearest rank over a run's samples, whole or per second.

use serde::Serialize;

/// Percentiles of a set of latency samples, milliseconds (`None` when there were none).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
    /// The mean.
    pub mean_ms: Option<f64>,
}

/// Percentile `q` (0..=1) by nearest rank over sorted samples (`f32` for a run's many, `f64`
/// for the few of `measure`).
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1].into())
}

/// Sorts `samples` and summarizes them.
#[allow(clippy::cast_precision_loss)]
pub fn summarize(samples: &mut [f32]) -> Latency {
    samples.sort_unstable_by(f32::total_cmp);
    let count = samples.len();
    Latency {
        count,
        p50_ms: percentile(samples, 0.50),
        p90_ms: percentile(samples, 0.90),
        p99_ms: percentile(samples, 0.99),
        max_ms: samples.last().map(|&v| f64::from(v)),
        mean_ms: (count > 0)
            .then(|| samples.iter().map(|&v| f64::from(v)).sum::<f64>() / count as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f32> = (1..=100).rev().map(|i| i as f32).collect();
        let s = summarize(&mut v);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, Some(50.0));
        assert_eq!(s.p90_ms, Some(90.0));
        assert_eq!(s.p99_ms, Some(99.0));
        assert_eq!(s.max_ms, Some(100.0));
        assert_eq!(s.mean_ms, Some(50.5));
        assert!(summarize(&mut []).p50_ms.is_none());
    }
}
