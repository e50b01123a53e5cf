//! Off-policy evaluation: the value a candidate policy would have had on logged decisions,
//! estimated from what a logging policy did, as the Open Bandit Pipeline does it.
//!
//! Each logged decision gives a [`Row`]: the logging policy's probability of the action it took
//! (`logged`, the propensity in the journal), the candidate's probability of that same action
//! (`target`), the observed reward, and a reward model's predictions. With `w = target / logged`:
//!
//! - IPS: `mean(w·r)`; unbiased when the logger gave every action the candidate takes a
//!   chance, high variance when weights are large.
//! - Self-normalised IPS: `Σ w·r / Σ w`; a little bias, much less variance.
//! - Direct method: `mean(q̂_target)`, where `q̂_target = Σₐ π_target(a)·q̂(a)`: no weights, as
//!   biased as the reward model.
//! - Doubly robust: `mean(q̂_target + w·(r − q̂(logged action)))`: unbiased when either the
//!   propensities or the reward model are right.
//!
//! Each comes with a percentile bootstrap 95% interval (resampling decisions), and the
//! effective sample size of the weights, `(Σw)² / Σw²`.

use serde::{Deserialize, Serialize};

/// One logged decision, seen by the estimators.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// The logging policy's probability of the action it took (> 0).
    pub logged: f64,
    /// The candidate policy's probability of that action.
    pub target: f64,
    /// The observed reward.
    pub reward: f64,
    /// The reward model's prediction for the action taken.
    pub q_logged: f64,
    /// The reward model's prediction averaged over the candidate's action probabilities.
    pub q_target: f64,
}

impl Row {
    fn weight(&self) -> f64 {
        if self.logged > 0.0 {
            self.target / self.logged
        } else {
            0.0
        }
    }
}

/// An estimate and its percentile bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Point estimate on every row.
    pub estimate: f64,
    /// 2.5th percentile of the bootstrap estimates.
    pub lower: f64,
    /// 97.5th percentile.
    pub upper: f64,
}

/// The four estimates of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimates {
    /// Inverse propensity scoring.
    pub ips: Interval,
    /// Self-normalised IPS; absent when no logged action has weight (the candidate never
    /// takes one).
    pub snips: Option<Interval>,
    /// Direct method (the reward model alone).
    pub dm: Interval,
    /// Doubly robust.
    pub dr: Interval,
}

/// What the weights say about how far the candidate is from the logger.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Support {
    /// Logged decisions.
    pub decisions: usize,
    /// `(Σw)² / Σw²`: how many decisions the weighted estimates are worth.
    pub effective_sample_size: f64,
    /// Share of logged decisions whose action the candidate would never take (weight 0).
    pub unsupported_share: f64,
    /// Largest weight.
    pub max_weight: f64,
    /// Mean weight (1 in expectation when the logger covers every action the candidate takes;
    /// below 1 when it does not).
    pub mean_weight: f64,
}

/// Point estimates `[ips, snips, dm, dr]` over `rows` picked by `idx`.
fn point(rows: &[Row], idx: &mut dyn Iterator<Item = usize>) -> [f64; 4] {
    let (mut n, mut wr, mut w, mut dm, mut dr) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in idx {
        let r = &rows[i];
        let wi = r.weight();
        n += 1.0;
        wr += wi * r.reward;
        w += wi;
        dm += r.q_target;
        dr += r.q_target + wi * (r.reward - r.q_logged);
    }
    let n = f64::max(n, 1.0);
    [wr / n, if w > 0.0 { wr / w } else { f64::NAN }, dm / n, dr / n]
}

/// The `q`-quantile of sorted values (linear interpolation, as numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The four estimates over `rows`, with `resamples` bootstrap draws from `seed`.
pub fn estimate(rows: &[Row], resamples: usize, seed: u64) -> Estimates {
    let whole = point(rows, &mut (0..rows.len()));
    let mut boot: [Vec<f64>; 4] = Default::default();
    let mut rng = fastrand::Rng::with_seed(seed);
    if !rows.is_empty() {
        for _ in 0..resamples {
            let n = rows.len();
            let b = point(rows, &mut (0..n).map(|_| rng.usize(..n)));
            for (k, v) in b.into_iter().enumerate() {
                if v.is_finite() {
                    boot[k].push(v);
                }
            }
        }
    }
    let mut interval = |k: usize| {
        let mut v = std::mem::take(&mut boot[k]);
        v.sort_by(f64::total_cmp);
        let (lower, upper) = if v.is_empty() { (whole[k], whole[k]) } else { (quantile(&v, 0.025), quantile(&v, 0.975)) };
        Interval { estimate: whole[k], lower, upper }
    };
    let (ips, snips, dm, dr) = (interval(0), interval(1), interval(2), interval(3));
    Estimates { ips, snips: whole[1].is_finite().then_some(snips), dm, dr }
}

/// The weights' support figures.
pub fn support(rows: &[Row]) -> Support {
    let (mut s, mut s2, mut zero, mut max) = (0.0, 0.0, 0usize, 0.0_f64);
    for r in rows {
        let w = r.weight();
        s += w;
        s2 += w * w;
        max = max.max(w);
        if r.target <= 0.0 {
            zero += 1;
        }
    }
    let n = rows.len();
    Support {
        decisions: n,
        effective_sample_size: if s2 > 0.0 { s * s / s2 } else { 0.0 },
        unsupported_share: if n > 0 { zero as f64 / n as f64 } else { 0.0 },
        max_weight: max,
        mean_weight: if n > 0 { s / n as f64 } else { 0.0 },
    }
}

/// Plain-language warnings when the weighted estimates should not be trusted.
pub fn warnings(s: &Support) -> Vec<String> {
    let mut out = Vec::new();
    if s.decisions == 0 {
        out.push("no resolved decisions in the window".to_string());
        return out;
    }
    if s.effective_sample_size < 100.0 || s.effective_sample_size < 0.05 * s.decisions as f64 {
        out.push(format!(
            "the weighted estimates rest on about {:.0} effective decisions of {}: IPS, SNIPS and DR are unreliable",
            s.effective_sample_size, s.decisions
        ));
    }
    if s.unsupported_share > 0.5 {
        out.push(format!(
            "the candidate would have chosen another broker than the logger in {:.0}% of decisions; only exploration in the log lets it be evaluated",
            100.0 * s.unsupported_share
        ));
    }
    if s.mean_weight < 0.8 {
        out.push(format!(
            "mean weight {:.2} is well below 1: the logger never tried brokers the candidate would choose, so IPS is biased low (prefer DR or the direct method)",
            s.mean_weight
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        // Logged propensities, candidate probabilities, rewards, model predictions.
        vec![
            Row { logged: 0.5, target: 1.0, reward: 1.0, q_logged: 0.6, q_target: 0.7 },
            Row { logged: 0.25, target: 0.0, reward: 1.0, q_logged: 0.3, q_target: 0.4 },
            Row { logged: 1.0, target: 0.5, reward: 0.0, q_logged: 0.2, q_target: 0.1 },
            Row { logged: 0.8, target: 0.4, reward: 1.0, q_logged: 0.5, q_target: 0.5 },
        ]
    }

    #[test]
    fn estimates_by_hand() {
        // Weights: 2, 0, 0.5, 0.5.
        let e = estimate(&rows(), 0, 1);
        // IPS = (2·1 + 0 + 0.5·0 + 0.5·1) / 4 = 0.625
        assert!((e.ips.estimate - 0.625).abs() < 1e-12);
        // SNIPS = 2.5 / 3
        assert!((e.snips.unwrap().estimate - 2.5 / 3.0).abs() < 1e-12);
        // DM = (0.7 + 0.4 + 0.1 + 0.5) / 4 = 0.425
        assert!((e.dm.estimate - 0.425).abs() < 1e-12);
        // DR = (0.7 + 2·0.4) + (0.4 + 0) + (0.1 + 0.5·(−0.2)) + (0.5 + 0.5·0.5) = 1.5 + 0.4 + 0 + 0.75 = 2.65 / 4
        assert!((e.dr.estimate - 0.6625).abs() < 1e-12);
        let s = support(&rows());
        // ESS = 3² / (4 + 0.25 + 0.25) = 2
        assert!((s.effective_sample_size - 2.0).abs() < 1e-12);
        assert!((s.unsupported_share - 0.25).abs() < 1e-12);
        assert_eq!(s.max_weight, 2.0);
    }

    #[test]
    fn the_interval_holds_the_estimate_and_a_fixed_seed_repeats() {
        let mut many = Vec::new();
        for i in 0..400 {
            let mut r = rows()[i % 4];
            r.reward = f64::from(i % 3 == 0);
            many.push(r);
        }
        let a = estimate(&many, 500, 9);
        assert_eq!(a, estimate(&many, 500, 9));
        for i in [a.ips, a.snips.unwrap(), a.dm, a.dr] {
            assert!(i.lower <= i.estimate && i.estimate <= i.upper, "{i:?}");
        }
        assert!(a.dm.upper - a.dm.lower < a.ips.upper - a.ips.lower, "the model alone varies less");
    }

    #[test]
    fn the_logging_policy_evaluated_on_itself_is_its_observed_mean() {
        let r: Vec<Row> =
            (0..10).map(|i| Row { logged: 0.3, target: 0.3, reward: f64::from(i % 2 == 0), q_logged: 0.2, q_target: 0.2 }).collect();
        let e = estimate(&r, 0, 1);
        assert!((e.ips.estimate - 0.5).abs() < 1e-12);
        assert!((e.snips.unwrap().estimate - 0.5).abs() < 1e-12);
        assert!((e.dr.estimate - 0.5).abs() < 1e-12);
    }

    #[test]
    fn quantiles_interpolate_as_numpy() {
        // numpy.percentile([1, 2, 3, 4], 2.5) = 1.075; 97.5 → 3.925
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.975) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn warnings_speak_up_for_a_far_candidate() {
        let far = Support { decisions: 1000, effective_sample_size: 12.0, unsupported_share: 0.9, max_weight: 50.0, mean_weight: 0.3 };
        assert_eq!(warnings(&far).len(), 3);
        let near = Support { decisions: 1000, effective_sample_size: 800.0, unsupported_share: 0.1, max_weight: 2.0, mean_weight: 1.0 };
        assert!(warnings(&near).is_empty());
    }
}
