//! Revenue-optimal scoring, strategy `roi`: the expected value of giving the lead to a broker
//! minus the opportunity cost of the seat it takes.
//!
//! `net = P(convert) · value − cost − seat price + optimism`, in the lead's currency, where
//!
//! - `P(convert)` comes from the active model, or without one from the broker's own evidence
//!   ([`evidence_conversion`]: its overall, per-line and per-state conversion, each shrunk
//!   towards the level above, starting from a prior that follows its configured proficiency);
//! - `value` is the lead's estimated value times the mean margin of its lines (`routing.roi.margins`);
//! - `cost` is the broker's `costPerLead`;
//! - the **seat price** `λ_b = seat value · ψ(load)` is a bid price for the broker's capacity:
//!   `load` is the share of its tighter resource (concurrent seats, daily cap) in use once this
//!   lead takes a seat, `ψ(x) = (e^{γx} − 1)/(e^γ − 1)` rises from 0 (idle) to 1 (last seat)
//!   ever more steeply (γ = `seat_price_curvature`), and the **seat value** is what a lead
//!   given to this broker has earned so far (its smoothed revenue per resolved lead), so the
//!   last seats of an excellent broker are kept for the leads where it adds most. This is the
//!   trade-off function of online budgeted allocation (Mehta, Saberi, Vazirani and Vazirani,
//!   "AdWords and generalized online matching", 2007) in additive form: a broker's price rises
//!   while demand fills its seats and falls as they free;
//! - the **optimism** bonus `z · sd · value`, with `sd` the posterior standard deviation of the
//!   broker's conversion rate (`√(p(1−p)/(n + k))`, `n` resolved leads, `k` the prior strength),
//!   capped at `optimism_cap` (in probability points): a broker with little history is given the
//!   benefit of the doubt, and the bonus vanishes as evidence accrues, so new brokers are not
//!   starved.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::lead::{InsuranceLine, LineSet};
use crate::scoring::{Prior, Priors};
// The terms live beside the breakdown that shows them.
pub use crate::scoring::RoiTerms;

/// Settings of the `roi` strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiSettings {
    /// Share of a lead's estimated value the business keeps when it converts, per line.
    pub margins: Margins,
    /// Log-odds a configured proficiency level above 3 adds to a broker's prior for a line.
    pub proficiency_log_odds: f64,
    /// Weight of the active model's P(convert) against the evidence estimate, on the log-odds
    /// scale: 1 uses the model alone, 0 the evidence alone.
    pub model_weight: f64,
    /// γ of the seat price curve; 0 turns seat prices off.
    pub seat_price_curvature: f64,
    /// z of the optimism bonus; 0 turns it off.
    pub optimism: f64,
    /// Most the optimism bonus adds, in probability points.
    pub optimism_cap: f64,
}

impl Default for RoiSettings {
    fn default() -> Self {
        Self {
            margins: Margins::default(),
            proficiency_log_odds: 0.7,
            model_weight: 0.5,
            seat_price_curvature: 3.0,
            optimism: 0.5,
            optimism_cap: 0.05,
        }
    }
}

/// Margin per line, by the lines' wire names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub struct Margins {
    pub auto: f64,
    pub home: f64,
    pub renters: f64,
    pub life: f64,
    pub health: f64,
    pub commercial: f64,
    pub umbrella: f64,
}

impl Default for Margins {
    fn default() -> Self {
        Self { auto: 1.0, home: 1.0, renters: 1.0, life: 1.0, health: 1.0, commercial: 1.0, umbrella: 1.0 }
    }
}

impl Margins {
    /// The margin of `line`.
    pub fn of(&self, line: InsuranceLine) -> f64 {
        match line {
            InsuranceLine::Auto => self.auto,
            InsuranceLine::Home => self.home,
            InsuranceLine::Renters => self.renters,
            InsuranceLine::Life => self.life,
            InsuranceLine::Health => self.health,
            InsuranceLine::Commercial => self.commercial,
            InsuranceLine::Umbrella => self.umbrella,
        }
    }

    /// The mean margin of a lead's lines (1 when it names none).
    pub fn mean(&self, lines: LineSet) -> f64 {
        let (sum, n) = lines.lines().fold((0.0, 0u32), |(s, n), l| (s + self.of(l), n + 1));
        if n == 0 {
            1.0
        } else {
            sum / n as f64
        }
    }
}

impl RoiSettings {
    /// Every number finite and in range; `field` prefixes error paths.
    pub fn validate(&self, field: &str) -> Result<()> {
        for l in InsuranceLine::ALL {
            let m = self.margins.of(l);
            if !m.is_finite() || !(0.0..=10.0).contains(&m) {
                return Err(ModelError::invalid(format!("{field}.margins.{}", l.name()), "must be a number from 0 to 10"));
            }
        }
        let checks = [
            ("proficiency_log_odds", self.proficiency_log_odds, 0.0, 5.0),
            ("model_weight", self.model_weight, 0.0, 1.0),
            ("seat_price_curvature", self.seat_price_curvature, 0.0, 20.0),
            ("optimism", self.optimism, 0.0, 10.0),
            ("optimism_cap", self.optimism_cap, 0.0, 1.0),
        ];
        for (name, v, lo, hi) in checks {
            if !v.is_finite() || v < lo || v > hi {
                return Err(ModelError::invalid(format!("{field}.{name}"), format!("must be a number from {lo} to {hi}")));
            }
        }
        Ok(())
    }
}

/// Converted of resolved leads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Converted.
    pub converted: u64,
    /// Resolved (converted or lost).
    pub resolved: u64,
}

/// What a broker's own history and live load say about one lead, as its actor reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evidence {
    /// All its resolved leads.
    pub overall: Tally,
    /// Its resolved leads in the lead's lines (summed over the lines).
    pub lines: Tally,
    /// Its resolved leads in the lead's state.
    pub state: Tally,
    /// Mean configured proficiency over the lead's lines, 0–5.
    pub proficiency: f64,
    /// Value of its converted leads.
    pub revenue: f64,
    /// Share of its tighter resource in use once this lead takes a seat, 0–1.
    pub load: f64,
    /// Its cost per lead.
    pub cost: f64,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// P(convert) from a broker's evidence alone: its overall rate shrunk to the population's,
/// then a prior for the lead's lines that moves that rate by `proficiency_log_odds` per
/// proficiency level above or below 3, shrunk to the broker's evidence in those lines; and its
/// rate in the lead's state shrunk to its overall rate. The line and state estimates combine on
/// the log-odds scale (each adds its difference from the overall rate).
pub fn evidence_conversion(priors: &Priors, e: &Evidence, s: &RoiSettings) -> f64 {
    let k = priors.strength;
    let overall = priors.conversion.smooth(e.overall.converted as f64, e.overall.resolved as f64);
    let line_prior = sigmoid(logit(overall) + s.proficiency_log_odds * (e.proficiency - 3.0));
    let line = Prior { mean: line_prior, strength: k }.smooth(e.lines.converted as f64, e.lines.resolved as f64);
    let state = Prior { mean: overall, strength: k }.smooth(e.state.converted as f64, e.state.resolved as f64);
    sigmoid(logit(line) + logit(state) - logit(overall))
}

/// The model's and the evidence's estimates blended on the log-odds scale with `model_weight`.
pub fn blend(model: f64, evidence: f64, s: &RoiSettings) -> f64 {
    let w = s.model_weight.clamp(0.0, 1.0);
    sigmoid(w * logit(model) + (1.0 - w) * logit(evidence))
}

/// `ψ(load) = (e^{γ·load} − 1)/(e^γ − 1)`: 0 when idle, 1 at the last seat; `load` when γ → 0
/// is not used (γ = 0 means no seat price).
pub fn seat_curve(load: f64, curvature: f64) -> f64 {
    if curvature <= 0.0 {
        return 0.0;
    }
    let x = load.clamp(0.0, 1.0);
    (curvature * x).exp_m1() / curvature.exp_m1()
}

/// `e^x` to about 1e-7 relative error, without a libm call: `2^(x·log₂e)` split into a power of
/// two and `e^f` for `|f| < ln 2` by its Taylor series to the 9th power. For keys that only
/// order candidates (the pre-rank runs it twice per eligible broker); scores use `f64::exp`.
pub fn fast_exp(x: f64) -> f64 {
    let t = x.clamp(-700.0, 700.0) * std::f64::consts::LOG2_E;
    // Truncation is one instruction (`round` is a library call here).
    let n = t as i64;
    let f = (t - n as f64) * std::f64::consts::LN_2;
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0 + f * (1.0 / 40320.0 + f / 362_880.0))))))));
    if n > 1023 {
        return f64::INFINITY;
    }
    if n < -1022 {
        return 0.0;
    }
    p * f64::from_bits(((n + 1023) as u64) << 52)
}

/// A candidate's P(convert) and `roi` terms: the evidence estimate, blended with the model's
/// estimate `model` when one predicted and `model_weight` > 0; `lead_value` before the margin.
pub fn score(
    model: Option<f64>,
    e: &Evidence,
    lead_value: f64,
    lines: crate::LineSet,
    priors: &Priors,
    s: &RoiSettings,
) -> (f64, RoiTerms) {
    let from_evidence = evidence_conversion(priors, e, s);
    let p = match model {
        Some(m) if s.model_weight > 0.0 => blend(m, from_evidence, s),
        _ => from_evidence,
    };
    (p, terms(p, lead_value * s.margins.mean(lines), priors, e, s))
}

/// The `roi` terms of giving a lead of `lead_value` (already × margin: `value`) to a broker
/// with evidence `e`, predicted to convert with `p`.
pub fn terms(p: f64, value: f64, priors: &Priors, e: &Evidence, s: &RoiSettings) -> RoiTerms {
    let p = p.clamp(0.0, 1.0);
    let k = priors.strength;
    let n = e.overall.resolved as f64;
    // What a lead given to this broker has earned so far, the population's expectation for
    // this lead standing in until it has history.
    let seat_value = (e.revenue + priors.conversion.mean * value * k) / (n + k);
    let sd = (p * (1.0 - p) / (n + k).max(1.0)).sqrt();
    RoiTerms {
        value,
        expected_value: p * value,
        cost: e.cost,
        seat_price: seat_value * seat_curve(e.load, s.seat_price_curvature),
        load: e.load.clamp(0.0, 1.0),
        optimism: (s.optimism * sd).min(s.optimism_cap) * value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn priors() -> Priors {
        Priors::from_totals(0, 0, 0, 0, 20.0)
    }

    #[test]
    fn seat_curve_runs_from_zero_to_one_and_is_convex() {
        assert_eq!(seat_curve(0.0, 3.0), 0.0);
        assert!((seat_curve(1.0, 3.0) - 1.0).abs() < 1e-12);
        // (e^1.5 − 1)/(e^3 − 1) by hand: 3.4817/19.0855.
        assert!((seat_curve(0.5, 3.0) - 0.182_426).abs() < 1e-5, "{}", seat_curve(0.5, 3.0));
        assert_eq!(seat_curve(0.9, 0.0), 0.0);
    }

    #[test]
    fn terms_by_hand() {
        let p = priors();
        // No history: seat value = prior mean (0.1) × value; optimism z·sd capped.
        let e = Evidence { load: 1.0, cost: 50.0, ..Evidence::default() };
        let t = terms(0.3, 1000.0, &p, &e, &RoiSettings::default());
        assert!((t.expected_value - 300.0).abs() < 1e-9);
        assert!((t.seat_price - 100.0).abs() < 1e-9, "{}", t.seat_price);
        // sd = √(0.21/20) = 0.10247; 0.5·sd = 0.0512 > cap 0.05 → 0.05 · 1000.
        assert!((t.optimism - 50.0).abs() < 1e-9, "{}", t.optimism);
        assert!((t.net() - (300.0 - 50.0 - 100.0 + 50.0)).abs() < 1e-9);
        // 980 resolved leads that earned 98,000: seat value (98000 + 0.1·1000·20)/1000 = 100.
        let seasoned = Evidence { overall: Tally { converted: 200, resolved: 980 }, revenue: 98_000.0, load: 0.0, ..e };
        let t = terms(0.3, 1000.0, &p, &seasoned, &RoiSettings::default());
        assert_eq!(t.seat_price, 0.0);
        // sd = √(0.21/1000) = 0.01449; × 0.5 × 1000 = 7.25.
        assert!((t.optimism - 7.245).abs() < 1e-3, "{}", t.optimism);
    }

    #[test]
    fn evidence_moves_the_estimate_from_proficiency_to_the_record() {
        let p = priors();
        let s = RoiSettings::default();
        let mean = p.conversion.mean;
        let novice = evidence_conversion(&p, &Evidence { proficiency: 3.0, ..Evidence::default() }, &s);
        assert!((novice - mean).abs() < 1e-12);
        let expert = evidence_conversion(&p, &Evidence { proficiency: 5.0, ..Evidence::default() }, &s);
        assert!((expert - sigmoid(logit(mean) + 1.4)).abs() < 1e-12, "{expert}");
        // An expert on paper who converted 2 of 200 in the lead's lines ends up below the mean.
        let shown = Evidence {
            proficiency: 5.0,
            overall: Tally { converted: 40, resolved: 400 },
            lines: Tally { converted: 2, resolved: 200 },
            ..Evidence::default()
        };
        // Overall (40 + 0.1·20)/420 = 0.1; the line prior 0.1 moved by +1.4 log-odds, shrunk
        // with the 200 leads: (2 + 20·prior)/220; no state evidence adds nothing.
        let line_prior = sigmoid(logit(0.1) + 1.4);
        let v = evidence_conversion(&p, &shown, &s);
        assert!((v - (2.0 + 20.0 * line_prior) / 220.0).abs() < 1e-9, "{v}");
        assert!(v < mean);
    }

    #[test]
    fn the_blend_runs_from_the_evidence_to_the_model() {
        let s = |w| RoiSettings { model_weight: w, ..RoiSettings::default() };
        assert!((blend(0.4, 0.1, &s(1.0)) - 0.4).abs() < 1e-9);
        assert!((blend(0.4, 0.1, &s(0.0)) - 0.1).abs() < 1e-9);
        // Halfway on the log-odds scale: logit = (ln(2/3) + ln(1/9)) / 2.
        let mid = sigmoid(((0.4f64 / 0.6).ln() + (0.1f64 / 0.9).ln()) / 2.0);
        assert!((blend(0.4, 0.1, &s(0.5)) - mid).abs() < 1e-12);
    }

    #[test]
    fn settings_validate_naming_the_key() {
        assert!(RoiSettings::default().validate("routing.roi").is_ok());
        let mut s = RoiSettings::default();
        s.margins.life = -1.0;
        let e = s.validate("routing.roi").unwrap_err().to_string();
        assert!(e.contains("routing.roi.margins.LIFE"), "{e}");
        let s = RoiSettings { optimism_cap: 2.0, ..RoiSettings::default() };
        assert!(s.validate("routing.roi").unwrap_err().to_string().contains("optimism_cap"));
    }

    #[test]
    fn margins_average_over_the_lead_lines() {
        let m = Margins { auto: 0.2, home: 0.6, ..Margins::default() };
        assert!((m.mean(LineSet::of(&[InsuranceLine::Auto, InsuranceLine::Home])) - 0.4).abs() < 1e-12);
        assert_eq!(m.mean(LineSet::default()), 1.0);
    }

    proptest! {
        /// The bonus never exceeds its cap, the seat price never exceeds the seat value, and
        /// more evidence never raises the bonus.
        #[test]
        fn bounded_terms(p in 0.0..=1.0f64, value in 0.0..1e7f64, load in 0.0..=1.0f64, n in 0u64..100_000, extra in 1u64..1000, rev in 0.0..1e9f64) {
            let pr = priors();
            let s = RoiSettings::default();
            let e = Evidence { overall: Tally { converted: n / 3, resolved: n }, revenue: rev, load, ..Evidence::default() };
            let t = terms(p, value, &pr, &e, &s);
            prop_assert!(t.optimism <= s.optimism_cap * value + 1e-9);
            let seat_value = (rev + pr.conversion.mean * value * 20.0) / (n as f64 + 20.0);
            prop_assert!(t.seat_price <= seat_value * (1.0 + 1e-12) + 1e-9);
            prop_assert!(t.net().is_finite());
            let more = Evidence { overall: Tally { converted: n / 3, resolved: n + extra }, ..e };
            prop_assert!(terms(p, value, &pr, &more, &s).optimism <= t.optimism + 1e-9);
        }

        #[test]
        fn the_evidence_estimate_is_a_probability(c in 0u64..1000, r in 0u64..1000, prof in 0.0..=5.0f64) {
            let e = Evidence { overall: Tally { converted: c.min(r), resolved: r }, lines: Tally { converted: c.min(r) / 2, resolved: r / 2 }, proficiency: prof, ..Evidence::default() };
            let v = evidence_conversion(&priors(), &e, &RoiSettings::default());
            prop_assert!(v > 0.0 && v < 1.0);
        }
    }
}
