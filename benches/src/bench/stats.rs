//! Statistics over repeated runs and over latency samples: median with its
//! min–max spread, and nearest-rank percentiles (the definition `ping`
//! post-processing in the anchors used, so the figures compare).

/// Median and spread of the runs of one figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Median of the valid runs (mean of the two middle ones when even).
    pub median: f64,
    /// Smallest valid run.
    pub min: f64,
    /// Largest valid run.
    pub max: f64,
    /// How many runs were valid (finite).
    pub valid: usize,
}

/// Summarises `runs`, skipping missing and non-finite values (a failed run
/// must not become a zero that drags the median). None when nothing is left.
pub fn summarize(runs: &[Option<f64>]) -> Option<Summary> {
    let mut v: Vec<f64> = runs
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        valid: n,
    })
}

/// Nearest-rank percentile `q` (0 < q ≤ 1) of an ascending slice.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of unsorted samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub samples: usize,
}

/// Latency percentiles of `samples` (any order). None when empty.
pub fn latency(samples: &[f64]) -> Option<Latency> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    Some(Latency {
        p50: percentile(&v, 0.50)?,
        p99: percentile(&v, 0.99)?,
        max: *v.last()?,
        samples: v.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_runs_is_the_middle_value_with_min_max_spread() {
        let s = summarize(&[Some(3.0), Some(1.0), Some(2.0)]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                valid: 3
            }
        );
    }

    #[test]
    fn median_of_even_runs_is_the_mean_of_the_middle_two() {
        let s = summarize(&[Some(4.0), Some(1.0), Some(3.0), Some(2.0)]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
    }

    #[test]
    fn failed_runs_are_skipped_not_counted_as_zero() {
        let s = summarize(&[None, Some(10.0), Some(f64::NAN), Some(20.0)]).unwrap();
        assert_eq!(s.median, 15.0);
        assert_eq!(s.valid, 2);
        assert!(summarize(&[None, None]).is_none());
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn nearest_rank_percentiles_match_the_textbook_definition() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&v, 0.0), None);
    }

    #[test]
    fn latency_sorts_its_samples_first() {
        let l = latency(&[30.0, 10.0, 20.0, 1000.0]).unwrap();
        assert_eq!(l.p50, 20.0);
        assert_eq!(l.p99, 1000.0);
        assert_eq!(l.max, 1000.0);
        assert_eq!(l.samples, 4);
        assert!(latency(&[]).is_none());
    }
}
