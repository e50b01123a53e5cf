//! Anytime-valid inference: the confidence sequences of Howard et al. (2021), in the two-sided
//! normal-mixture form of Waudby-Smith et al. (2023, eq. 161) that GrowthBook and Eppo use.
//!
//! The tuning parameter `N` is the total sample size (both arms) at which the sequence is
//! tightest; it is the experiment's `sequentialTuning` (default [`DEFAULT_TUNING`]). Looking at a
//! sequence after every observation keeps the chance that it ever excludes the true difference
//! below `alpha`.

/// GrowthBook's default tuning parameter.
pub const DEFAULT_TUNING: f64 = 5000.0;

/// The mixing parameter ρ for level `alpha` and tuning `n_tuning`.
pub fn rho(alpha: f64, n_tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / n_tuning).sqrt()
}

/// Half-width of the confidence sequence after `n` observations in all (both arms) of a
/// difference whose per-observation variance is `s2` (the variance of the estimate times `n`).
pub fn half_width(s2: f64, n: f64, n_tuning: f64, alpha: f64) -> f64 {
    if n < 1.0 || s2 <= 0.0 {
        return f64::INFINITY;
    }
    let r = rho(alpha, n_tuning);
    let a = n * r * r + 1.0;
    s2.sqrt() * (2.0 * a * (a.sqrt() / alpha).ln() / (n * r).powi(2)).sqrt()
}

/// The always-valid two-sided p-value of an estimate `difference` with standard error `se`
/// after `n` observations in all (eq. 155 of Waudby-Smith et al.).
pub fn p_value(difference: f64, se: f64, n: f64, n_tuning: f64, alpha: f64) -> f64 {
    if n < 1.0 || se <= 0.0 || !se.is_finite() {
        return 1.0;
    }
    let r = rho(alpha, n_tuning);
    let a = n * r * r + 1.0;
    // The statistic of the sum of n observations: (difference / se)² · n.
    let t2 = (difference / se).powi(2) * n;
    let log_e = r * r * t2 / (2.0 * a) - 0.5 * a.ln();
    if log_e <= 0.0 {
        1.0
    } else {
        (-log_e).exp().min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_wider_than_the_fixed_interval_and_agrees_with_its_p_value() {
        let (se, n, alpha) = (0.01, 4000.0, 0.05);
        let s2 = se * se * n;
        let h = half_width(s2, n, DEFAULT_TUNING, alpha);
        assert!(h > crate::experiment::stats::z_crit(alpha) * se);
        // At the boundary the always-valid p-value is alpha.
        let p = p_value(h, se, n, DEFAULT_TUNING, alpha);
        assert!((p - alpha).abs() < 1e-9, "{p}");
        assert!(p_value(h * 1.01, se, n, DEFAULT_TUNING, alpha) < alpha);
        assert_eq!(p_value(0.0, se, n, DEFAULT_TUNING, alpha), 1.0);
    }
}
