//! The Bayesian summary beside the frequentist one, and Thompson-sampling allocation.
//!
//! Chance to beat control and expected loss use the normal approximation of the difference
//! with a flat prior, as GrowthBook's Bayesian engine does: `d ~ N(difference, se²)`. Thompson
//! allocation gives each arm the posterior probability that its conversion rate is the highest,
//! under `Beta(1 + conversions, 1 + exposures − conversions)` posteriors, integrated numerically
//! (deterministic: no sampling), then floors every arm at a minimum share.

use statrs::distribution::{Beta, Continuous, ContinuousCDF, Normal};

/// `P(d > 0)` for `d ~ N(mean, se²)`.
pub fn chance_to_beat(mean: f64, se: f64) -> f64 {
    if se <= 0.0 || !se.is_finite() {
        return if mean > 0.0 { 1.0 } else { 0.0 };
    }
    Normal::standard().cdf(mean / se)
}

/// `E[max(0, −d)]` for `d ~ N(mean, se²)`: what choosing the treatment is expected to lose.
pub fn expected_loss(mean: f64, se: f64) -> f64 {
    if se <= 0.0 || !se.is_finite() {
        return (-mean).max(0.0);
    }
    let n = Normal::standard();
    let z = mean / se;
    se * n.pdf(z) - mean * n.cdf(-z)
}

/// Simpson's rule intervals for [`p_best`].
const GRID: usize = 4000;

/// The probability that each arm's rate is the highest, arms given as (conversions, exposures),
/// under `Beta(1 + c, 1 + n − c)` posteriors. The integral runs over the span where the
/// posteriors have mass (12 standard deviations around each mean), with Simpson's rule.
pub fn p_best(arms: &[(u64, u64)]) -> Vec<f64> {
    let dists: Vec<Beta> = arms
        .iter()
        .map(|&(c, n)| {
            let c = c.min(n);
            Beta::new(1.0 + c as f64, 1.0 + (n - c) as f64).expect("shapes are at least 1")
        })
        .collect();
    if dists.len() < 2 {
        return vec![1.0; dists.len()];
    }
    let (mut lo, mut hi) = (1.0f64, 0.0f64);
    for &(c, n) in arms {
        let (a, b) = (1.0 + c.min(n) as f64, 1.0 + (n - c.min(n)) as f64);
        let mean = a / (a + b);
        let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
        lo = lo.min(mean - 12.0 * sd);
        hi = hi.max(mean + 12.0 * sd);
    }
    let (lo, hi) = (lo.max(0.0), hi.min(1.0));
    let h = (hi - lo) / GRID as f64;
    let xs: Vec<f64> = (0..=GRID).map(|k| lo + h * k as f64).collect();
    let cdfs: Vec<Vec<f64>> = dists.iter().map(|d| xs.iter().map(|&x| d.cdf(x)).collect()).collect();
    let mut out: Vec<f64> = (0..dists.len())
        .map(|i| {
            let mut sum = 0.0;
            for (k, &x) in xs.iter().enumerate() {
                let w = if k == 0 || k == GRID {
                    1.0
                } else if k % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                let mut v = dists[i].pdf(x);
                for (j, c) in cdfs.iter().enumerate() {
                    if j != i {
                        v *= c[k];
                    }
                }
                if v.is_finite() {
                    sum += w * v;
                }
            }
            sum * h / 3.0
        })
        .collect();
    let total: f64 = out.iter().sum();
    if total > 0.0 {
        for p in &mut out {
            *p /= total;
        }
    }
    out
}

/// Thompson allocation: shares proportional to [`p_best`], every arm at least `floor`
/// (the floor is met by taking from the others in proportion, so shares still sum to 1).
pub fn thompson_shares(arms: &[(u64, u64)], floor: f64) -> Vec<f64> {
    with_floor(&p_best(arms), floor)
}

/// Raises every share to at least `floor`, taking the difference from the shares above it in
/// proportion to their excess.
pub fn with_floor(shares: &[f64], floor: f64) -> Vec<f64> {
    let k = shares.len() as f64;
    let floor = floor.clamp(0.0, 1.0 / k.max(1.0));
    let total: f64 = shares.iter().sum();
    let mut s: Vec<f64> = shares.iter().map(|x| if total > 0.0 { x / total } else { 1.0 / k }).collect();
    let need: f64 = s.iter().map(|&x| (floor - x).max(0.0)).sum();
    if need > 0.0 {
        let excess: f64 = s.iter().map(|&x| (x - floor).max(0.0)).sum();
        for x in &mut s {
            if *x < floor {
                *x = floor;
            } else if excess > 0.0 {
                *x -= need * (*x - floor) / excess;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_hold_and_shares_sum_to_one() {
        let s = with_floor(&[0.995, 0.004, 0.001], 0.01);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(s.iter().all(|&x| x >= 0.01 - 1e-12), "{s:?}");
        let t = thompson_shares(&[(10, 1000), (200, 1000)], 0.05);
        assert!((t[0] - 0.05).abs() < 1e-9 && (t[1] - 0.95).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn equal_evidence_gives_equal_chances() {
        let p = p_best(&[(50, 400), (50, 400), (50, 400)]);
        assert!(p.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-6), "{p:?}");
        assert_eq!(chance_to_beat(0.0, 1.0), 0.5);
    }
}
