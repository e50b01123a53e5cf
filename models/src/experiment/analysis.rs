//! The analysis of an experiment from its per-arm totals: per-arm summaries, every treatment arm
//! against the control on the primary and guardrail metrics (corrected for multiplicity), the
//! sample-ratio test, power, the Bayesian summary, inverse-propensity estimates for adaptive
//! allocation, and a recommendation.

use serde::Serialize;

use super::bayes::{chance_to_beat, expected_loss};
use super::sequential;
use super::spec::{AllocationMethod, Analysis, Correction, Definition, Metric};
use super::stats::{self, Moments, Test};
use super::totals::ArmTotals;

/// Sample ratio mismatch is flagged below this p-value.
pub const SRM_P: f64 = 0.001;

/// One arm's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmSummary {
    /// Arm.
    pub name: String,
    /// Exposed leads.
    pub exposures: u64,
    /// Converted leads.
    pub conversions: u64,
    /// Conversion rate.
    pub conversion_rate: f64,
    /// Wilson interval of the conversion rate at the experiment's alpha.
    pub conversion_interval: [f64; 2],
    /// Mean conversion value per exposed lead.
    pub revenue_per_lead: f64,
    /// Its standard deviation.
    pub revenue_per_lead_sd: f64,
    /// Share of exposed leads contacted within their SLA target.
    pub sla_compliance: f64,
    /// Leads contacted.
    pub contacted: u64,
    /// Mean minutes to first contact (null before any contact).
    pub first_contact_minutes: Option<f64>,
    /// Planned share.
    pub planned_share: f64,
    /// Observed share of the experiment's exposures.
    pub observed_share: f64,
}

/// One treatment arm against the control on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Treatment arm.
    pub arm: String,
    /// Metric.
    pub metric: String,
    /// Primary or guardrail.
    pub role: String,
    /// Control's value.
    pub control: f64,
    /// Treatment's value.
    pub treatment: f64,
    /// Treatment minus control.
    pub difference: f64,
    /// Interval of the difference at the corrected level: it excludes zero exactly when
    /// `adjustedPValue < alpha` (a confidence sequence under sequential analysis); null when
    /// no test could be run yet (an arm without data).
    pub interval: Option<[f64; 2]>,
    /// `treatment / control − 1` (null when the control is zero).
    pub relative: Option<f64>,
    /// Delta-method interval of `relative` at the same level.
    pub relative_interval: Option<[f64; 2]>,
    /// z (proportions) or Welch's t (means).
    pub statistic: f64,
    /// Test name: `two_proportion_z`, `welch_t`, or `confidence_sequence`.
    pub test: String,
    /// p-value before correction (always-valid under sequential analysis).
    pub p_value: f64,
    /// p-value after correction.
    pub adjusted_p_value: f64,
    /// `adjustedPValue < alpha`.
    pub significant: bool,
    /// The treatment's value is the better one.
    pub better: bool,
}

/// Sample ratio mismatch: observed exposures per arm against the allocation.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Srm {
    /// Exposures per arm.
    pub observed: Vec<u64>,
    /// Exposures expected under the allocation in force at each exposure.
    pub expected: Vec<f64>,
    /// Chi-square statistic (null with too little data).
    pub chi_square: Option<f64>,
    /// Its p-value.
    pub p_value: Option<f64>,
    /// `pValue < 0.001`.
    pub mismatch: bool,
}

/// Power of the primary metric.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerSummary {
    /// Relative lift planned for.
    pub minimum_detectable_effect: f64,
    /// Effect size (Cohen's h for a proportion, d for a mean) of that lift at the control's value.
    pub effect_size: Option<f64>,
    /// Exposures per arm for the planned power (statsmodels `NormalIndPower`).
    pub required_per_arm: Option<f64>,
    /// Exposures per arm to reach: `targetSampleSize`, else `requiredPerArm`.
    pub target_per_arm: Option<u64>,
    /// Exposures in the smallest arm.
    pub smallest_arm: u64,
    /// Power at the smallest arm's size.
    pub achieved_power: Option<f64>,
    /// Days until the smallest arm reaches the target at the traffic seen so far.
    pub expected_days_to_target: Option<f64>,
}

/// The Bayesian view of one treatment arm on the primary metric.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bayesian {
    /// Treatment arm.
    pub arm: String,
    /// Probability that it beats the control.
    pub chance_to_beat_control: f64,
    /// Expected loss of choosing it (in units of the metric).
    pub expected_loss: f64,
    /// Expected loss of keeping the control instead.
    pub expected_loss_of_control: f64,
}

/// Inverse-propensity estimates of an adaptively allocated experiment.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Adaptive {
    /// Self-normalised IPW conversion rate per arm.
    pub conversion_rate: Vec<Option<f64>>,
    /// Self-normalised IPW revenue per lead per arm.
    pub revenue_per_lead: Vec<Option<f64>>,
    /// IPW estimate of each arm's conversion-rate lift over the control.
    pub effect: Vec<Option<f64>>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// `continue`, `ship`, `stop` or `invalid`.
    pub action: String,
    /// The arm to ship.
    pub arm: Option<String>,
    /// `continue`, `ship <arm>`, `stop: no effect`, `invalid: sample ratio mismatch`.
    pub summary: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// The whole analysis.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Per arm, the control first.
    pub arms: Vec<ArmSummary>,
    /// Every treatment arm against the control, per metric.
    pub comparisons: Vec<Comparison>,
    /// Sample-ratio test.
    pub srm: Srm,
    /// Power of the primary metric.
    pub power: PowerSummary,
    /// Bayesian summary on the primary metric.
    pub bayesian: Vec<Bayesian>,
    /// IPW estimates (Thompson allocation only).
    pub adaptive: Option<Adaptive>,
    /// The recommendation.
    pub recommendation: Recommendation,
    /// Anything that limits what the numbers mean.
    pub warnings: Vec<String>,
}

/// The raw test of one metric, treatment `t` against control `c`.
fn raw_test(m: Metric, t: &ArmTotals, c: &ArmTotals) -> Option<Test> {
    if m.is_proportion() {
        let ((ct, nt), (cc, nc)) = (t.proportion(m), c.proportion(m));
        stats::two_proportion_z(ct, nt, cc, nc)
    } else {
        stats::welch(t.moments(m), c.moments(m))
    }
}

/// The value of metric `m` for an arm.
fn value(m: Metric, t: &ArmTotals) -> f64 {
    t.moments(m).mean
}

struct Raw {
    arm: usize,
    metric: Metric,
    primary: bool,
    test: Option<Test>,
    /// The p-value to correct: the test's, or the always-valid one.
    p: f64,
}

/// Analyses `totals` (one per arm of `def`, the control first); `elapsed_days` is the time the
/// experiment has been running.
pub fn analyze(def: &Definition, totals: &[ArmTotals], elapsed_days: Option<f64>) -> Report {
    let alpha = def.alpha;
    let control = &totals[0];
    let total: u64 = totals.iter().map(|t| t.exposures).sum();
    let mut warnings = Vec::new();
    let arms = summaries(def, totals, total);

    // Every treatment arm × metric.
    let metrics: Vec<(Metric, bool)> =
        std::iter::once((def.primary_metric, true)).chain(def.guardrail_metrics.iter().map(|&m| (m, false))).collect();
    let seq = def.analysis == Analysis::Sequential;
    // Tests corrected together: every treatment arm on every metric.
    let family = ((totals.len() - 1) * metrics.len()).max(1) as f64;
    let mut raws = Vec::new();
    for (i, t) in totals.iter().enumerate().skip(1) {
        for &(m, primary) in &metrics {
            let test = raw_test(m, t, control);
            let p = match (test, seq) {
                (None, _) => 1.0,
                (Some(x), false) => x.p,
                (Some(x), true) => {
                    let n = (t.moments(m).n + control.moments(m).n) as f64;
                    sequential::p_value(x.difference, x.se, n, def.sequential_tuning, alpha / family)
                }
            };
            raws.push(Raw { arm: i, metric: m, primary, test, p });
        }
    }
    let ps: Vec<f64> = raws.iter().map(|r| r.p).collect();
    let adjusted = if seq {
        // Confidence sequences are corrected by Bonferroni, which holds at every look.
        ps.iter().map(|p| (p * family).min(1.0)).collect()
    } else {
        match def.correction {
            Correction::Holm => stats::holm(&ps),
            Correction::BenjaminiHochberg => stats::benjamini_hochberg(&ps),
            Correction::None => ps.clone(),
        }
    };
    let comparisons: Vec<Comparison> = raws.iter().zip(&adjusted).map(|(r, &adj)| compare(def, totals, r, adj, seq, family)).collect();
    if raws.iter().any(|r| r.test.is_none()) {
        warnings.push("some comparisons have too little data (or no variance) to test yet".into());
    }

    let srm = srm(def, totals);
    if srm.mismatch {
        warnings.push(format!(
            "sample ratio mismatch (p = {:.2e}): the observed split differs from the allocation; the results cannot be trusted",
            srm.p_value.unwrap_or(0.0)
        ));
    }
    let power = power_summary(def, totals, elapsed_days);
    let bayesian = bayes_summary(def, totals);
    let adaptive = (def.allocation_method == AllocationMethod::Thompson).then(|| {
        warnings.push(
            "allocation is adaptive (Thompson sampling): per-arm means and tests are biased; `adaptive` holds inverse-propensity estimates from the logged assignment probabilities".into(),
        );
        adaptive_summary(totals)
    });
    let recommendation = recommend(def, totals, &comparisons, &srm, &power);
    Report { arms, comparisons, srm, power, bayesian, adaptive, recommendation, warnings }
}

/// Per-arm numbers; `total` is the experiment's exposures.
pub fn summaries(def: &Definition, totals: &[ArmTotals], total: u64) -> Vec<ArmSummary> {
    def.arms
        .iter()
        .zip(totals)
        .map(|(a, t)| {
            let rev = t.moments(Metric::RevenuePerLead);
            let (lo, hi) = stats::wilson(t.conversions, t.exposures, def.alpha);
            ArmSummary {
                name: a.name.clone(),
                exposures: t.exposures,
                conversions: t.conversions,
                conversion_rate: ratio(t.conversions, t.exposures),
                conversion_interval: [lo, hi],
                revenue_per_lead: rev.mean,
                revenue_per_lead_sd: rev.sd,
                sla_compliance: ratio(t.sla_met, t.exposures),
                contacted: t.contacted,
                first_contact_minutes: (t.contacted > 0).then(|| t.contact_minutes / t.contacted as f64),
                planned_share: a.allocation,
                observed_share: ratio(t.exposures, total),
            }
        })
        .collect()
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn compare(def: &Definition, totals: &[ArmTotals], r: &Raw, adj: f64, seq: bool, m: f64) -> Comparison {
    let alpha = def.alpha;
    let (t, c) = (&totals[r.arm], &totals[0]);
    let (tv, cv) = (value(r.metric, t), value(r.metric, c));
    let significant = r.test.is_some() && adj < alpha;
    let better = if r.metric.higher_is_better() { tv > cv } else { tv < cv };
    // The level at which the interval excludes zero exactly when the adjusted p-value is below
    // alpha: alpha · p / p̃ for a fixed test, alpha / m for Bonferroni-corrected sequences.
    let level = if seq {
        alpha / m
    } else if adj > 0.0 {
        alpha * r.p / adj
    } else {
        alpha
    };
    let (interval, statistic, test) = match r.test {
        Some(x) if seq => {
            let n = (t.moments(r.metric).n + c.moments(r.metric).n) as f64;
            let h = sequential::half_width(x.se * x.se * n, n, def.sequential_tuning, level);
            (Some([x.difference - h, x.difference + h]), x.statistic, "confidence_sequence")
        }
        Some(x) => {
            let (lo, hi) = x.interval(level);
            (Some([lo, hi]), x.statistic, if r.metric.is_proportion() { "two_proportion_z" } else { "welch_t" })
        }
        None => (None, 0.0, "none"),
    };
    let rel = stats::relative(t.moments(r.metric), c.moments(r.metric), level);
    Comparison {
        arm: def.arms[r.arm].name.clone(),
        metric: r.metric.name().into(),
        role: if r.primary { "primary" } else { "guardrail" }.into(),
        control: cv,
        treatment: tv,
        difference: tv - cv,
        interval,
        relative: rel.map(|r| r.0),
        relative_interval: rel.map(|r| [r.1, r.2]),
        statistic,
        test: test.into(),
        p_value: r.p,
        adjusted_p_value: adj,
        significant,
        better,
    }
}

/// The sample-ratio test of `totals` against the allocation in force at each exposure.
pub fn srm(def: &Definition, totals: &[ArmTotals]) -> Srm {
    let observed: Vec<u64> = totals.iter().map(|t| t.exposures).collect();
    let expected_sum: f64 = totals.iter().map(|t| t.expected).sum();
    // The allocation in force at each exposure, as logged; the plan when nothing is logged.
    let shares: Vec<f64> = if expected_sum > 0.0 { totals.iter().map(|t| t.expected / expected_sum).collect() } else { def.planned() };
    let n: u64 = observed.iter().sum();
    let expected: Vec<f64> = shares.iter().map(|s| s * n as f64).collect();
    let test = stats::chi_square_gof(&observed, &shares);
    Srm { observed, expected, chi_square: test.map(|t| t.0), p_value: test.map(|t| t.1), mismatch: test.is_some_and(|t| t.1 < SRM_P) }
}

fn power_summary(def: &Definition, totals: &[ArmTotals], elapsed_days: Option<f64>) -> PowerSummary {
    let m = def.primary_metric;
    let c = totals[0].moments(m);
    let smallest = totals.iter().map(|t| t.moments(m).n).min().unwrap_or(0);
    let effect = effect_size(m, c, totals, def.minimum_detectable_effect);
    let required = effect.and_then(|e| stats::sample_size(e, def.alpha, def.power));
    let target = def.target_sample_size.or(required.map(|r| r.ceil() as u64));
    let achieved = effect.map(|e| stats::power(e, smallest as f64, def.alpha));
    let expected_days = match (target, elapsed_days) {
        (Some(t), _) if smallest >= t => Some(0.0),
        (Some(t), Some(d)) if d > 0.0 && smallest > 0 => Some((t - smallest) as f64 / (smallest as f64 / d)),
        _ => None,
    };
    PowerSummary {
        minimum_detectable_effect: def.minimum_detectable_effect,
        effect_size: effect,
        required_per_arm: required,
        target_per_arm: target,
        smallest_arm: smallest,
        achieved_power: achieved,
        expected_days_to_target: expected_days,
    }
}

/// Cohen's h of the planned lift at the control's rate, or Cohen's d of the planned lift of a
/// mean with the arms' pooled standard deviation.
fn effect_size(m: Metric, c: Moments, totals: &[ArmTotals], mde: f64) -> Option<f64> {
    if c.n == 0 || c.mean <= 0.0 {
        return None;
    }
    let shifted = if m.higher_is_better() { c.mean * (1.0 + mde) } else { c.mean * (1.0 - mde).max(0.0) };
    if m.is_proportion() {
        Some(stats::cohen_h(shifted.min(1.0), c.mean).abs()).filter(|h| *h > 0.0)
    } else {
        let (mut num, mut den) = (0.0, 0.0);
        for t in totals {
            let x = t.moments(m);
            if x.n > 1 {
                num += (x.n as f64 - 1.0) * x.sd * x.sd;
                den += x.n as f64 - 1.0;
            }
        }
        let sd = (num / den).sqrt();
        (den > 0.0 && sd > 0.0).then(|| (shifted - c.mean).abs() / sd)
    }
}

fn bayes_summary(def: &Definition, totals: &[ArmTotals]) -> Vec<Bayesian> {
    let m = def.primary_metric;
    let c = totals[0].moments(m);
    totals
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, t)| {
            let x = t.moments(m);
            if x.n == 0 || c.n == 0 {
                return None;
            }
            let se = (x.var_of_mean() + c.var_of_mean()).sqrt();
            // Oriented so that a positive difference is an improvement.
            let d = if m.higher_is_better() { x.mean - c.mean } else { c.mean - x.mean };
            Some(Bayesian {
                arm: def.arms[i].name.clone(),
                chance_to_beat_control: chance_to_beat(d, se),
                expected_loss: expected_loss(d, se),
                expected_loss_of_control: expected_loss(-d, se),
            })
        })
        .collect()
}

fn adaptive_summary(totals: &[ArmTotals]) -> Adaptive {
    let rates: Vec<Option<f64>> = totals.iter().map(ArmTotals::ipw_rate).collect();
    let effect = rates.iter().map(|r| Some(r.as_ref()? - rates[0]?)).collect();
    Adaptive { conversion_rate: rates, revenue_per_lead: totals.iter().map(ArmTotals::ipw_revenue_per_lead).collect(), effect }
}

fn recommend(def: &Definition, totals: &[ArmTotals], comps: &[Comparison], srm: &Srm, power: &PowerSummary) -> Recommendation {
    let rec =
        |action: &str, arm: Option<String>, summary: String, reason: String| Recommendation { action: action.into(), arm, summary, reason };
    if srm.mismatch {
        return rec(
            "invalid",
            None,
            "invalid: sample ratio mismatch".into(),
            "the observed split differs from the allocation; find the cause before reading any result".into(),
        );
    }
    let harmed = |arm: &str| comps.iter().any(|c| c.arm == arm && c.role == "guardrail" && c.significant && !c.better);
    let mut winners: Vec<&Comparison> =
        comps.iter().filter(|c| c.role == "primary" && c.significant && c.better && !harmed(&c.arm)).collect();
    winners.sort_by(|a, b| {
        let (da, db) = (a.difference.abs(), b.difference.abs());
        db.total_cmp(&da)
    });
    let smallest = totals.iter().map(|t| t.exposures).min().unwrap_or(0);
    let reached = power.target_per_arm.is_some_and(|t| smallest >= t);
    let seq = def.analysis == Analysis::Sequential;
    let ready = if seq { smallest >= def.min_sample_per_arm } else { reached };
    if !ready {
        let target = if seq { Some(def.min_sample_per_arm) } else { power.target_per_arm };
        return rec(
            "continue",
            None,
            "continue".into(),
            match target {
                Some(t) => format!("the smallest arm has {smallest} exposures of the {t} needed before deciding"),
                None => "there is not yet enough data to plan the sample size".into(),
            },
        );
    }
    if let Some(w) = winners.first() {
        return rec(
            "ship",
            Some(w.arm.clone()),
            format!("ship {}", w.arm),
            format!("{} beats the control on {} (adjusted p = {:.2e}) and harms no guardrail", w.arm, w.metric, w.adjusted_p_value),
        );
    }
    if seq && !reached {
        return rec("continue", None, "continue".into(), "no arm differs from the control yet; the sequence may still find one".into());
    }
    rec(
        "stop",
        None,
        "stop: no effect".into(),
        "the target sample size is reached and no arm beats the control on the primary metric without harming a guardrail".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::spec::{ArmSpec, AssignmentKey, Correction, Targeting};
    use crate::Strategy;

    fn def(analysis: Analysis) -> Definition {
        let arm = |name: &str, strategy| ArmSpec {
            name: name.into(),
            strategy,
            weights: None,
            model_version: None,
            allocation: 0.5,
            exploration: None,
        };
        Definition {
            id: "e".into(),
            name: "e".into(),
            description: String::new(),
            arms: vec![arm("control", Strategy::Specialty), arm("ml", Strategy::Ml)],
            primary_metric: Metric::ConversionRate,
            guardrail_metrics: vec![Metric::SlaCompliance],
            targeting: Targeting::default(),
            assignment_key: AssignmentKey::LeadId,
            traffic_allocation: 1.0,
            traffic_offset: 0.0,
            target_sample_size: Some(1000),
            duration_days: 14.0,
            minimum_detectable_effect: 0.1,
            alpha: 0.05,
            power: 0.8,
            analysis,
            allocation_method: AllocationMethod::Fixed,
            correction: Correction::Holm,
            auto_conclude: false,
            sequential_tuning: sequential::DEFAULT_TUNING,
            min_sample_per_arm: 100,
            min_arm_share: 0.01,
            burn_in: 100,
            layer: "main".into(),
            exclusive: true,
            salt: "s".into(),
        }
    }

    fn arm(n: u64, conv: u64, sla: u64) -> ArmTotals {
        ArmTotals { exposures: n, conversions: conv, sla_met: sla, expected: n as f64, ..Default::default() }
    }

    #[test]
    fn a_clear_winner_at_the_target_is_shipped() {
        let r = analyze(&def(Analysis::Fixed), &[arm(1000, 100, 800), arm(1000, 160, 800)], Some(7.0));
        assert_eq!(r.recommendation.summary, "ship ml", "{r:#?}");
        let c = &r.comparisons[0];
        assert!(c.significant && c.better && c.interval.unwrap()[0] > 0.0);
        assert!(r.bayesian[0].chance_to_beat_control > 0.99);
    }

    #[test]
    fn before_the_target_it_continues_and_at_the_target_without_effect_it_stops() {
        let d = def(Analysis::Fixed);
        let r = analyze(&d, &[arm(500, 50, 400), arm(500, 80, 400)], Some(3.0));
        assert_eq!(r.recommendation.action, "continue");
        assert!((r.power.expected_days_to_target.unwrap() - 3.0).abs() < 1e-9);
        let r = analyze(&d, &[arm(1000, 100, 800), arm(1000, 102, 800)], Some(7.0));
        assert_eq!(r.recommendation.summary, "stop: no effect");
    }

    #[test]
    fn a_harmed_guardrail_blocks_shipping() {
        let r = analyze(&def(Analysis::Fixed), &[arm(1000, 100, 800), arm(1000, 160, 600)], Some(7.0));
        assert_eq!(r.recommendation.summary, "stop: no effect", "{r:#?}");
    }

    #[test]
    fn sample_ratio_mismatch_invalidates_and_never_ships() {
        let mut a = arm(1000, 100, 800);
        let mut b = arm(1400, 300, 1100);
        (a.expected, b.expected) = (1200.0, 1200.0);
        let r = analyze(&def(Analysis::Fixed), &[a, b], Some(7.0));
        assert!(r.srm.mismatch);
        assert_eq!(r.recommendation.summary, "invalid: sample ratio mismatch");
    }

    #[test]
    fn sequential_intervals_are_wider_and_match_their_p_values() {
        let t = [arm(1000, 100, 800), arm(1000, 135, 800)];
        let fixed = analyze(&def(Analysis::Fixed), &t, None);
        let seq = analyze(&def(Analysis::Sequential), &t, None);
        let (f, s) = (&fixed.comparisons[0], &seq.comparisons[0]);
        let (s, f) = (s.interval.unwrap(), f.interval.unwrap());
        assert!(s[1] - s[0] > f[1] - f[0]);
        for c in seq.comparisons.iter().chain(&fixed.comparisons) {
            let i = c.interval.unwrap();
            assert_eq!(c.significant, i[0] > 0.0 || i[1] < 0.0, "{c:#?}");
        }
    }
}
