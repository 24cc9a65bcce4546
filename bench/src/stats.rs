//! Percentiles and medians.

/// Nearest-rank percentile (`p` in 0..=100) of sorted samples; `None` if empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Median of values (mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Latency summary of nanosecond samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarises `ns` (sorted in place).
    pub fn of(ns: &mut [u64]) -> Latency {
        ns.sort_unstable();
        let us = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64 / 1000.0);
        let mean = if ns.is_empty() {
            f64::NAN
        } else {
            ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len() as f64 / 1000.0
        };
        Latency {
            samples: ns.len(),
            min_us: us(ns.first().copied()),
            mean_us: mean,
            p50_us: us(percentile(ns, 50.0)),
            p90_us: us(percentile(ns, 90.0)),
            p99_us: us(percentile(ns, 99.0)),
            p999_us: us(percentile(ns, 99.9)),
            max_us: us(ns.last().copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.9), Some(7));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn latency_summary() {
        let mut ns: Vec<u64> = (1..=100).rev().map(|v| v * 1000).collect();
        let l = Latency::of(&mut ns);
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.min_us, 1.0);
        assert_eq!(l.max_us, 100.0);
        assert_eq!(l.mean_us, 50.5);
    }
}
