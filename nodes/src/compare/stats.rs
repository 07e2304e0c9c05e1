//! The statistics behind `compare`: a seeded paired bootstrap for the
//! confidence interval of a mean difference (and its p-value), and the
//! exact McNemar test for paired pass/fail outcomes.
//!
//! The random generator is SplitMix64, written out here rather than taken
//! from `rand`: its output for a seed is fixed by these dozen lines, so a
//! report computed today and one computed after a dependency upgrade give
//! the same figures, which is what lets a cached report, a rerun and `flow
//! compare` agree to the last digit. Quality is ample for drawing indices.

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit state advanced by a
/// constant and mixed; passes BigCrush.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (Lemire's multiply-shift; the bias is
    /// below n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// A bootstrap interval for the mean of paired differences, and the
/// two-sided p-value of "the mean difference is 0".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    pub lo: f64,
    pub hi: f64,
    pub p: f64,
}

/// Paired bootstrap over `diffs` (candidate − baseline, one per matched
/// record): `resamples` times, draw `diffs.len()` pairs with replacement and
/// take the mean difference. The interval is the percentile interval at
/// `confidence`. The p-value counts the resampled means at least as far
/// from the observed mean as the observed mean is from 0 (the bootstrap
/// distribution shifted to the null), with the +1 correction so it is never
/// 0: p = (1 + #{|m* − d̄| ≥ |d̄|}) / (resamples + 1). `None` without pairs.
pub fn paired_bootstrap(diffs: &[f64], resamples: u32, confidence: f64, seed: u64) -> Option<Bootstrap> {
    if diffs.is_empty() || resamples == 0 {
        return None;
    }
    let n = diffs.len();
    let observed = mean(diffs);
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let sum: f64 = (0..n).map(|_| diffs[rng.below(n)]).sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    // Differences of means of 0/1 scores are exact multiples of 1/n only up
    // to rounding: a tolerance keeps "as far as" from missing ties.
    let tol = 1e-12;
    let extreme = means.iter().filter(|m| (*m - observed).abs() >= observed.abs() - tol).count();
    Some(Bootstrap {
        lo: quantile(&means, alpha / 2.0),
        hi: quantile(&means, 1.0 - alpha / 2.0),
        p: (1 + extreme) as f64 / (resamples as f64 + 1.0),
    })
}

/// The `q` quantile of sorted values, interpolating between neighbours
/// (the "type 7" definition of R and NumPy).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Exact two-sided McNemar test: `b` pairs went pass → fail and `c` fail →
/// pass. Under "no change" each discordant pair is a fair coin, so the
/// p-value is twice the smaller binomial tail of Bin(b + c, 1/2), at most 1.
/// Concordant pairs carry no information about the change and are ignored.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X ≤ k) = Σ C(n, i) / 2^n. Up to n = 1000 the coefficients fit an
    // f64 and are exact integers for the small n that matter most (so b=6,
    // c=1 gives exactly 0.125); past it, each term is built in log space
    // so it neither overflows nor underflows before the sum.
    let tail = if n <= 1000 {
        let mut coef = 1.0;
        let mut sum = 1.0;
        for i in 1..=k {
            coef = coef * (n - i + 1) as f64 / i as f64;
            sum += coef;
        }
        sum * 0.5f64.powi(n as i32)
    } else {
        let mut log_term = -(n as f64) * std::f64::consts::LN_2;
        let mut tail = log_term.exp();
        for i in 1..=k {
            log_term += ((n - i + 1) as f64).ln() - (i as f64).ln();
            tail += log_term.exp();
        }
        tail
    };
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // b=10, c=2: 2 · (1 + 12 + 66) / 4096.
        assert!((mcnemar_exact(10, 2) - 2.0 * 79.0 / 4096.0).abs() < 1e-12);
        assert!((mcnemar_exact(10, 2) - 0.0386).abs() < 1e-4);
        assert_eq!(mcnemar_exact(2, 10), mcnemar_exact(10, 2), "symmetric");
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        // b=6, c=1: 2 · (1 + 7) / 128.
        assert_eq!(mcnemar_exact(6, 1), 0.125);
        // Both ways of summing agree where they meet.
        let direct = mcnemar_exact(520, 480);
        let logs = mcnemar_exact(521, 480);
        assert!(direct > logs && logs > 0.1, "{direct} {logs}");
        // Large n stays finite and tiny.
        let p = mcnemar_exact(3000, 2000);
        assert!(p > 0.0 && p < 1e-40, "{p}");
    }

    #[test]
    fn bootstrap_interval_contains_the_delta_and_is_seeded() {
        let diffs: Vec<f64> = (0..200)
            .map(|i| {
                if i % 5 == 0 {
                    -1.0
                } else if i % 7 == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let delta = mean(&diffs);
        let a = paired_bootstrap(&diffs, 2000, 0.95, 0).unwrap();
        assert!(a.lo <= delta && delta <= a.hi, "{a:?} vs {delta}");
        assert!(a.lo < a.hi);
        assert_eq!(a, paired_bootstrap(&diffs, 2000, 0.95, 0).unwrap(), "same seed, same figures");
        assert_ne!(a, paired_bootstrap(&diffs, 2000, 0.95, 1).unwrap(), "another seed, other draws");
        let wide = paired_bootstrap(&diffs, 2000, 0.99, 0).unwrap();
        assert!(wide.lo <= a.lo && wide.hi >= a.hi, "a higher confidence widens the interval");
    }

    #[test]
    fn bootstrap_p_value_tells_a_shift_from_noise() {
        let shifted: Vec<f64> = (0..100).map(|i| -0.05 + (i % 3) as f64 * 0.01).collect();
        let p = paired_bootstrap(&shifted, 1000, 0.95, 0).unwrap().p;
        assert!((p - 1.0 / 1001.0).abs() < 1e-12, "every resample is below 0: {p}");
        let noise: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 0.02 } else { -0.02 }).collect();
        let b = paired_bootstrap(&noise, 1000, 0.95, 0).unwrap();
        assert!(b.p > 0.9, "{b:?}");
        assert!(b.lo < 0.0 && b.hi > 0.0);
        assert_eq!(paired_bootstrap(&[], 1000, 0.95, 0), None);
    }

    #[test]
    fn splitmix_is_the_reference_sequence() {
        // The published first outputs for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.0), 0.0);
        assert_eq!(quantile(&v, 1.0), 3.0);
        assert!((quantile(&v, 0.5) - 1.5).abs() < 1e-12);
    }
}
