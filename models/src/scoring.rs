//! The seed scoring formula, empirical-Bayes smoothing and the per-candidate breakdown.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Weights of the factors; they need not sum to one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Proficiency in the lead's lines.
    pub specialty: f64,
    /// Historical performance, normalised across candidates.
    pub performance: f64,
    /// Capacity headroom.
    pub capacity: f64,
    /// SLA compliance.
    pub sla: f64,
    /// Semantic match of the lead's text and the broker's profile (leads with notes only); 0
    /// when absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub semantic: f64,
}

fn is_zero(w: &f64) -> bool {
    *w == 0.0
}

impl Default for Weights {
    fn default() -> Self {
        Self { specialty: 0.4, performance: 0.3, capacity: 0.2, sla: 0.1, semantic: 0.0 }
    }
}

impl Weights {
    /// Each weight finite and ≥ 0, and at least one positive; `field` prefixes error paths.
    pub fn validate(&self, field: &str) -> Result<()> {
        let all = [
            ("specialty", self.specialty),
            ("performance", self.performance),
            ("capacity", self.capacity),
            ("sla", self.sla),
            ("semantic", self.semantic),
        ];
        for (name, w) in all {
            if !w.is_finite() || w < 0.0 {
                return Err(ModelError::invalid(format!("{field}.{name}"), "must be a number >= 0"));
            }
        }
        if all.iter().all(|(_, w)| *w == 0.0) {
            return Err(ModelError::invalid(field, "at least one weight must be positive"));
        }
        Ok(())
    }
}

/// A Beta-style prior: the population mean and how many pseudo-observations it is worth.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prior {
    /// Population mean.
    pub mean: f64,
    /// Pseudo-observations.
    pub strength: f64,
}

impl Prior {
    /// Posterior mean after `successes` of `trials`: `(s + mean·k) / (n + k)`.
    ///
    /// A new broker gets the population mean; one with many trials gets close to its own rate.
    pub fn smooth(self, successes: f64, trials: f64) -> f64 {
        (successes + self.mean * self.strength) / (trials + self.strength)
    }
}

/// Priors shared by every candidate of one decision, from population totals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Priors {
    /// Conversion rate prior.
    pub conversion: Prior,
    /// SLA compliance prior.
    pub sla: Prior,
    /// Pseudo-observations for mean value and mean first-contact time.
    pub strength: f64,
}

impl Priors {
    /// Priors from population totals: converted of resolved leads, SLA hits of SLA-measured leads.
    /// With no data the means fall back to 10% conversion and 90% compliance.
    pub fn from_totals(converted: u64, resolved: u64, sla_hits: u64, sla_total: u64, strength: f64) -> Self {
        let conv_mean = (converted as f64 + 1.0) / (resolved as f64 + 10.0);
        let sla_mean = (sla_hits as f64 + 9.0) / (sla_total as f64 + 10.0);
        Self { conversion: Prior { mean: conv_mean, strength }, sla: Prior { mean: sla_mean, strength }, strength }
    }
}

/// What one candidate brings to the formula, all but `specialty` and `headroom` smoothed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoreInputs {
    /// Mean proficiency in the lead's lines, 0–1.
    pub specialty: f64,
    /// Smoothed conversion rate.
    pub conversion: f64,
    /// Smoothed value per conversion (prior: the lead's estimated value).
    pub value_per_conversion: f64,
    /// Smoothed share of first contacts within SLA.
    pub sla_compliance: f64,
    /// Smoothed mean minutes to first contact (prior: the SLA target).
    pub avg_first_contact_minutes: f64,
    /// The broker's first-contact target for this lead.
    pub target_minutes: f64,
    /// Capacity headroom 0–1.
    pub headroom: f64,
}

impl ScoreInputs {
    /// `conversion · value · sla_compliance / (avg_processing_time / target_time)`, before normalisation.
    pub fn raw_performance(&self) -> f64 {
        let speed = (self.avg_first_contact_minutes / self.target_minutes.max(1e-9)).max(0.05);
        self.conversion * self.value_per_conversion * self.sla_compliance / speed
    }
}

/// One factor of a score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ScoreFactor)]
#[serde(rename_all = "camelCase")]
pub struct Factor {
    /// Factor value, 0–1.
    pub value: f64,
    /// Its weight.
    pub weight: f64,
    /// `value · weight`.
    pub contribution: f64,
}

impl Factor {
    /// A factor of `value` weighted by `weight`.
    pub fn new(value: f64, weight: f64) -> Self {
        Self { value, weight, contribution: value * weight }
    }
}

/// Why a candidate scored what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ScoreBreakdown)]
#[serde(rename_all = "camelCase")]
pub struct Breakdown {
    /// Proficiency factor.
    pub specialty: Factor,
    /// Normalised performance factor.
    pub performance: Factor,
    /// Headroom factor.
    pub capacity: Factor,
    /// SLA compliance factor.
    pub sla: Factor,
    /// The conversion estimate used inside performance.
    pub conversion: f64,
    /// Where the conversion estimate came from.
    pub conversion_source: String,
    /// Smoothed value per conversion used inside performance.
    pub value_per_conversion: f64,
    /// Smoothed mean minutes to first contact used inside performance.
    pub avg_first_contact_minutes: f64,
    /// Performance before normalisation across candidates.
    pub raw_performance: f64,
    /// Strategy `roi`: the terms of the net expected value (the score); the factors above are
    /// then shown with weight 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<RoiTerms>,
    /// What was added to the strategy's score for fairness bounds or overload, when anything was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<Adjustments>,
    /// The semantic match and similar-lead evidence, for a lead with notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<crate::semantic::SemanticTerms>,
}

/// The terms of a `roi` score (`crate::roi`), as the breakdown shows them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ScoreRoiTerms)]
#[serde(rename_all = "camelCase")]
pub struct RoiTerms {
    /// The lead's value to the business if it converts: estimated value × margin.
    pub value: f64,
    /// P(convert) × value.
    pub expected_value: f64,
    /// The broker's cost per lead.
    pub cost: f64,
    /// The opportunity cost of the seat the lead takes.
    pub seat_price: f64,
    /// The broker's load once it takes the lead, 0–1 (drives the seat price).
    pub load: f64,
    /// The cold-start optimism bonus.
    pub optimism: f64,
}

impl RoiTerms {
    /// `expected value − cost − seat price + optimism`.
    pub fn net(&self) -> f64 {
        self.expected_value - self.cost - self.seat_price + self.optimism
    }
}

/// Additions to a candidate's score beyond its strategy's own terms, in the score's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Adjustments {
    /// From the broker's groups' fairness prices: positive lifts a group below its minimum
    /// share, negative holds back one above its maximum.
    pub fairness: f64,
    /// Penalty for a broker above the overload threshold (≤ 0).
    pub overload: f64,
}

impl Adjustments {
    /// Their sum.
    pub fn total(&self) -> f64 {
        self.fairness + self.overload
    }
}

/// Scores every candidate: performance is divided by the best candidate's raw performance.
pub fn combine(inputs: &[ScoreInputs], w: &Weights) -> Vec<(f64, Breakdown)> {
    let raws: Vec<f64> = inputs.iter().map(ScoreInputs::raw_performance).collect();
    let best = raws.iter().copied().fold(0.0_f64, f64::max);
    inputs
        .iter()
        .zip(raws)
        .map(|(i, raw)| {
            let perf = if best > 0.0 { raw / best } else { 0.0 };
            let b = Breakdown {
                specialty: Factor::new(i.specialty, w.specialty),
                performance: Factor::new(perf, w.performance),
                capacity: Factor::new(i.headroom, w.capacity),
                sla: Factor::new(i.sla_compliance, w.sla),
                conversion: i.conversion,
                conversion_source: "empirical_bayes".into(),
                value_per_conversion: i.value_per_conversion,
                avg_first_contact_minutes: i.avg_first_contact_minutes,
                raw_performance: raw,
                roi: None,
                adjustments: None,
                semantic: None,
            };
            let total = b.specialty.contribution + b.performance.contribution + b.capacity.contribution + b.sla.contribution;
            (total, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs(specialty: f64, conversion: f64, headroom: f64) -> ScoreInputs {
        ScoreInputs {
            specialty,
            conversion,
            value_per_conversion: 1000.0,
            sla_compliance: 0.9,
            avg_first_contact_minutes: 30.0,
            target_minutes: 30.0,
            headroom,
        }
    }

    #[test]
    fn seed_formula_by_hand() {
        let a = inputs(1.0, 0.2, 0.5);
        let b = inputs(0.6, 0.1, 1.0);
        let out = combine(&[a, b], &Weights::default());
        // a: 0.4·1 + 0.3·1 + 0.2·0.5 + 0.1·0.9 = 0.89
        assert!((out[0].0 - 0.89).abs() < 1e-12, "{}", out[0].0);
        // b: 0.4·0.6 + 0.3·0.5 + 0.2·1 + 0.1·0.9 = 0.68
        assert!((out[1].0 - 0.68).abs() < 1e-12, "{}", out[1].0);
        assert!((out[1].1.performance.value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn slower_contact_lowers_performance() {
        let fast = inputs(1.0, 0.2, 1.0);
        let mut slow = fast;
        slow.avg_first_contact_minutes = 60.0;
        assert!((slow.raw_performance() * 2.0 - fast.raw_performance()).abs() < 1e-9);
    }

    #[test]
    fn smoothing_moves_from_prior_to_data() {
        let p = Prior { mean: 0.1, strength: 20.0 };
        assert!((p.smooth(0.0, 0.0) - 0.1).abs() < 1e-12);
        // 5 of 10 with 20 pseudo-observations at 0.1: (5 + 2) / 30.
        assert!((p.smooth(5.0, 10.0) - 7.0 / 30.0).abs() < 1e-12);
        assert!((p.smooth(5000.0, 10000.0) - 0.5).abs() < 0.001);
    }

    #[test]
    fn weights_validate() {
        assert!(Weights::default().validate("w").is_ok());
        let w = Weights { sla: -1.0, ..Weights::default() };
        assert!(matches!(w.validate("w"), Err(ModelError::Invalid { field, .. }) if field == "w.sla"));
        let zero = Weights { specialty: 0.0, performance: 0.0, capacity: 0.0, sla: 0.0, semantic: 0.0 };
        assert!(zero.validate("w").is_err());
    }

    proptest! {
        #[test]
        fn scores_stay_within_the_weight_sum(
            c in prop::collection::vec((0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 1.0..500.0f64), 1..40)
        ) {
            let ins: Vec<ScoreInputs> = c.iter().map(|&(s, conv, h, sla, t)| ScoreInputs {
                specialty: s, conversion: conv, value_per_conversion: 100.0, sla_compliance: sla,
                avg_first_contact_minutes: t, target_minutes: 30.0, headroom: h,
            }).collect();
            let w = Weights::default();
            let out = combine(&ins, &w);
            let max_perf = out.iter().map(|(_, b)| b.performance.value).fold(0.0, f64::max);
            for (total, b) in &out {
                prop_assert!(*total >= 0.0 && *total <= 1.0 + 1e-9);
                prop_assert!(b.performance.value >= 0.0 && b.performance.value <= 1.0 + 1e-12);
            }
            // Normalisation: the best raw performance maps to exactly 1 (unless all are zero).
            if out.iter().any(|(_, b)| b.raw_performance > 0.0) {
                prop_assert!((max_perf - 1.0).abs() < 1e-12);
            }
        }

        /// Within the API's bounds (amounts up to `MAX_AMOUNT`, any minutes a broker could
        /// record), every score, factor and raw term stays finite.
        #[test]
        fn every_score_stays_finite_within_the_api_bounds(
            c in prop::collection::vec(
                (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=crate::lead::MAX_AMOUNT, 0.0..=1.0f64, 0.0..=1e7f64, 1.0..=1e4f64, 0.0..=1.0f64),
                1..40,
            )
        ) {
            let ins: Vec<ScoreInputs> = c.iter().map(|&(s, conv, value, sla, minutes, target, h)| ScoreInputs {
                specialty: s, conversion: conv, value_per_conversion: value, sla_compliance: sla,
                avg_first_contact_minutes: minutes, target_minutes: target, headroom: h,
            }).collect();
            for (total, b) in combine(&ins, &Weights::default()) {
                prop_assert!(total.is_finite(), "{total}");
                for f in [b.specialty, b.performance, b.capacity, b.sla] {
                    prop_assert!(f.value.is_finite() && f.contribution.is_finite(), "{f:?}");
                }
                prop_assert!(b.raw_performance.is_finite());
            }
        }

        #[test]
        fn smoothing_lies_between_prior_and_rate(mean in 0.0..1.0f64, k in 0.1..100.0f64, n in 1u32..10_000, frac in 0.0..=1.0f64) {
            let s = (n as f64 * frac).floor();
            let v = Prior { mean, strength: k }.smooth(s, n as f64);
            let rate = s / n as f64;
            prop_assert!(v >= mean.min(rate) - 1e-12 && v <= mean.max(rate) + 1e-12);
        }
    }
}
