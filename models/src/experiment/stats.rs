//! Frequentist statistics of an experiment: Wilson intervals, the pooled two-proportion z-test,
//! Welch's t-test, the delta method for relative differences, Holm and Benjamini-Hochberg
//! adjustments, the chi-square test of sample ratio mismatch, and power and sample size with
//! Cohen's h. Distributions come from statrs; each function matches the statsmodels or scipy
//! function it names (reference cases in `models/tests/reference/`).

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

fn std_normal() -> Normal {
    Normal::standard()
}

/// The two-sided critical value `z` with `P(|Z| > z) = alpha`.
pub fn z_crit(alpha: f64) -> f64 {
    std_normal().inverse_cdf(1.0 - alpha / 2.0)
}

/// Two-sided p-value of a standard normal statistic.
pub fn normal_p(z: f64) -> f64 {
    (2.0 * std_normal().sf(z.abs())).min(1.0)
}

/// A test of treatment against control: the difference, its standard error and statistic,
/// and the two-sided p-value. The standard error is the test's own (pooled for proportions), so
/// the interval `difference ± z·se` excludes zero exactly when the test rejects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Test {
    /// Treatment minus control.
    pub difference: f64,
    /// The test's standard error of the difference.
    pub se: f64,
    /// z or t.
    pub statistic: f64,
    /// Degrees of freedom (Welch); infinite for a z-test.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

impl Test {
    /// The critical value for a two-sided level `alpha` under this test's distribution.
    pub fn crit(&self, alpha: f64) -> f64 {
        if self.df.is_finite() {
            StudentsT::new(0.0, 1.0, self.df).map(|t| t.inverse_cdf(1.0 - alpha / 2.0)).unwrap_or(f64::NAN)
        } else {
            z_crit(alpha)
        }
    }

    /// The confidence interval of the difference at two-sided level `alpha`.
    pub fn interval(&self, alpha: f64) -> (f64, f64) {
        let h = self.crit(alpha) * self.se;
        (self.difference - h, self.difference + h)
    }
}

/// Wilson score interval of `count` successes out of `nobs` (statsmodels `proportion_confint`,
/// method `wilson`).
pub fn wilson(count: u64, nobs: u64, alpha: f64) -> (f64, f64) {
    if nobs == 0 {
        return (0.0, 1.0);
    }
    let n = nobs as f64;
    let p = count as f64 / n;
    let z = z_crit(alpha);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Two-proportion z-test with pooled variance (statsmodels `proportions_ztest`), treatment
/// minus control. `None` when either arm is empty or the pooled rate is 0 or 1 (no variance).
pub fn two_proportion_z(ct: u64, nt: u64, cc: u64, nc: u64) -> Option<Test> {
    if nt == 0 || nc == 0 {
        return None;
    }
    let (nt_f, nc_f) = (nt as f64, nc as f64);
    let pooled = (ct + cc) as f64 / (nt_f + nc_f);
    let se = (pooled * (1.0 - pooled) * (1.0 / nt_f + 1.0 / nc_f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let difference = ct as f64 / nt_f - cc as f64 / nc_f;
    let z = difference / se;
    Some(Test { difference, se, statistic: z, df: f64::INFINITY, p: normal_p(z) })
}

/// Mean, standard deviation (n − 1) and size of a sample, from its sums.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub sd: f64,
    /// Size.
    pub n: u64,
}

impl Moments {
    /// From the count, sum and sum of squares.
    pub fn from_sums(n: u64, sum: f64, sumsq: f64) -> Self {
        if n == 0 {
            return Self::default();
        }
        let nf = n as f64;
        let mean = sum / nf;
        let var = if n > 1 { ((sumsq - sum * mean) / (nf - 1.0)).max(0.0) } else { 0.0 };
        Self { mean, sd: var.sqrt(), n }
    }

    /// The variance of the mean.
    pub fn var_of_mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sd * self.sd / self.n as f64
        }
    }
}

/// Welch's t-test (scipy `ttest_ind_from_stats(..., equal_var=False)`), treatment minus
/// control, with Welch–Satterthwaite degrees of freedom. `None` below two observations per arm
/// or with no variance.
pub fn welch(t: Moments, c: Moments) -> Option<Test> {
    if t.n < 2 || c.n < 2 {
        return None;
    }
    let (vt, vc) = (t.var_of_mean(), c.var_of_mean());
    let se = (vt + vc).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let df = (vt + vc).powi(2) / (vt * vt / (t.n as f64 - 1.0) + vc * vc / (c.n as f64 - 1.0));
    let difference = t.mean - c.mean;
    let stat = difference / se;
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * dist.sf(stat.abs())).min(1.0);
    Some(Test { difference, se, statistic: stat, df, p })
}

/// The relative difference `mean_t / mean_c − 1` and its interval at level `alpha` by the delta
/// method: `var = var_t / mean_c² + mean_t² · var_c / mean_c⁴`, each `var` that of a mean.
/// `None` when the control mean is zero.
pub fn relative(t: Moments, c: Moments, alpha: f64) -> Option<(f64, f64, f64)> {
    if c.mean == 0.0 || t.n == 0 || c.n == 0 {
        return None;
    }
    let rel = t.mean / c.mean - 1.0;
    let var = t.var_of_mean() / c.mean.powi(2) + t.mean.powi(2) * c.var_of_mean() / c.mean.powi(4);
    let h = z_crit(alpha) * var.sqrt();
    Some((rel, rel - h, rel + h))
}

/// Holm's step-down adjusted p-values (statsmodels `multipletests(method="holm")`).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini-Hochberg adjusted p-values (statsmodels `multipletests(method="fdr_bh")`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64).min(1.0);
        out[i] = running;
    }
    out
}

/// Chi-square goodness of fit of `observed` counts against `planned` shares (scipy
/// `chisquare`): the statistic and its p-value with `k − 1` degrees of freedom. Arms planned
/// at zero share are left out. `None` with fewer than two arms or no observations.
pub fn chi_square_gof(observed: &[u64], planned: &[f64]) -> Option<(f64, f64)> {
    let total: u64 = observed.iter().sum();
    let share: f64 = planned.iter().sum();
    let cells: Vec<(f64, f64)> =
        observed.iter().zip(planned).filter(|(_, &w)| w > 0.0).map(|(&o, &w)| (o as f64, total as f64 * w / share)).collect();
    if cells.len() < 2 || total == 0 {
        return None;
    }
    let chi: f64 = cells.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
    let dist = ChiSquared::new((cells.len() - 1) as f64).ok()?;
    Some((chi, dist.sf(chi)))
}

/// Cohen's h between two proportions (statsmodels `proportion_effectsize`).
pub fn cohen_h(p1: f64, p2: f64) -> f64 {
    2.0 * p1.clamp(0.0, 1.0).sqrt().asin() - 2.0 * p2.clamp(0.0, 1.0).sqrt().asin()
}

/// Power of a two-sided two-sample z-test of effect size `effect` (Cohen's h or d) with
/// `n_per_arm` in each of two equal arms (statsmodels `NormalIndPower().power`, ratio 1).
pub fn power(effect: f64, n_per_arm: f64, alpha: f64) -> f64 {
    if n_per_arm <= 0.0 {
        return 0.0;
    }
    let nobs = n_per_arm / 2.0;
    let crit = z_crit(alpha);
    let shift = effect.abs() * nobs.sqrt();
    let n = std_normal();
    n.sf(crit - shift) + n.cdf(-crit - shift)
}

/// The size per arm at which [`power`] reaches `target` (statsmodels
/// `NormalIndPower().solve_power`), found by bisection to 1e-9. `None` for a zero effect.
pub fn sample_size(effect: f64, alpha: f64, target: f64) -> Option<f64> {
    if effect == 0.0 || !effect.is_finite() || !(0.0..1.0).contains(&target) {
        return None;
    }
    let (mut lo, mut hi) = (1e-9, 2.0);
    while power(effect, hi, alpha) < target {
        hi *= 2.0;
        if hi > 1e15 {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if power(effect, mid, alpha) < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-9 * hi {
            break;
        }
    }
    Some(0.5 * (lo + hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_and_bh_keep_order_and_bounds() {
        let p = [0.01, 0.04, 0.03, 0.005];
        let h = holm(&p);
        assert!((h[3] - 0.02).abs() < 1e-12 && (h[0] - 0.03).abs() < 1e-12);
        assert!(h.iter().zip(&p).all(|(a, b)| a >= b && *a <= 1.0));
        let b = benjamini_hochberg(&p);
        assert!(b.iter().zip(&h).all(|(b, h)| b <= h));
    }

    #[test]
    fn degenerate_inputs_give_no_test() {
        assert!(two_proportion_z(0, 100, 0, 100).is_none());
        assert!(two_proportion_z(1, 0, 1, 10).is_none());
        assert!(welch(Moments::from_sums(1, 1.0, 1.0), Moments::from_sums(5, 5.0, 6.0)).is_none());
        assert!(chi_square_gof(&[0, 0], &[0.5, 0.5]).is_none());
        assert!(sample_size(0.0, 0.05, 0.8).is_none());
        assert_eq!(wilson(0, 0, 0.05), (0.0, 1.0));
    }

    #[test]
    fn an_interval_excludes_zero_exactly_when_its_test_rejects() {
        for (ct, cc) in [(130, 100), (120, 100), (121, 100), (125, 100), (100, 100)] {
            let t = two_proportion_z(ct, 1000, cc, 1000).unwrap();
            let (lo, hi) = t.interval(0.05);
            assert_eq!(lo > 0.0 || hi < 0.0, t.p < 0.05, "{ct} vs {cc}: p {} interval {lo}..{hi}", t.p);
        }
    }
}
