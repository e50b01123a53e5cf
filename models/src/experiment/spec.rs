//! What an experiment is: its arms (routing policies), metrics, targeting, assignment key,
//! statistical plan and allocation method; and the checks a definition must pass.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::lead::{validate_id, InsuranceLine, LeadFeatures, LineSet, Urgency};
use crate::scoring::Weights;
use crate::strategy::Strategy;

/// Most arms an experiment may have.
pub const MAX_ARMS: usize = 8;

/// One arm: the routing policy its leads get. The first arm is the control.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmSpec {
    /// Name, unique in the experiment.
    pub name: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Weights; the configured weights of the strategy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// Conversion model version (strategy `ml`); the active model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Planned share of the experiment's traffic.
    pub allocation: f64,
    /// Exploration of this arm's decisions (scored strategies); the strategy's configured
    /// exploration when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<crate::Exploration>,
}

/// An outcome measured per exposed lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of exposed leads that converted.
    ConversionRate,
    /// Conversion value per exposed lead (0 for leads that did not convert).
    RevenuePerLead,
    /// Share of exposed leads first contacted within their SLA target.
    SlaCompliance,
    /// Minutes from the decision to the first contact, over contacted leads (lower is better).
    FirstContactMinutes,
}

impl Metric {
    /// The metric's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ConversionRate => "conversion_rate",
            Metric::RevenuePerLead => "revenue_per_lead",
            Metric::SlaCompliance => "sla_compliance",
            Metric::FirstContactMinutes => "first_contact_minutes",
        }
    }

    /// True when a larger value is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::FirstContactMinutes)
    }

    /// True for a proportion (tested with the two-proportion z-test), false for a mean (Welch).
    pub fn is_proportion(self) -> bool {
        matches!(self, Metric::ConversionRate | Metric::SlaCompliance)
    }
}

/// Which leads may enter the experiment; an empty list admits all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targeting {
    /// States (USPS codes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Lines: a lead enters when it asks for at least one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<InsuranceLine>,
    /// Urgencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urgency: Vec<Urgency>,
    /// Smallest estimated value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    /// Largest estimated value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
}

impl Targeting {
    /// True when the lead is targeted.
    pub fn admits(&self, lead: &LeadFeatures) -> bool {
        (self.states.is_empty() || self.states.iter().any(|s| s.eq_ignore_ascii_case(&lead.state)))
            && (self.lines.is_empty() || LineSet::of(&self.lines).0 & lead.lines.0 != 0)
            && (self.urgency.is_empty() || self.urgency.contains(&lead.urgency))
            && self.min_value.is_none_or(|v| lead.value >= v)
            && self.max_value.is_none_or(|v| lead.value <= v)
    }
}

/// What is hashed to assign a lead to an arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AssignmentKey {
    /// The lead id: each lead on its own.
    #[default]
    LeadId,
    /// `leadData.customerId`: one customer always sees the same arm; leads without one stay
    /// out of the experiment.
    CustomerId,
}

/// When the results may be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// Once, at the planned sample size.
    #[default]
    Fixed,
    /// At any time, with confidence sequences.
    Sequential,
}

/// How traffic is split between arms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllocationMethod {
    /// The planned allocations, always.
    #[default]
    Fixed,
    /// Thompson sampling on the primary conversion metric, after a burn-in.
    Thompson,
}

/// Correction for testing several arms and metrics at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down (controls the family-wise error rate).
    #[default]
    Holm,
    /// Benjamini-Hochberg (controls the false discovery rate).
    BenjaminiHochberg,
    /// None.
    None,
}

/// An experiment's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Arms, the control first.
    pub arms: Vec<ArmSpec>,
    /// The metric that decides.
    pub primary_metric: Metric,
    /// Metrics that must not get worse.
    #[serde(default)]
    pub guardrail_metrics: Vec<Metric>,
    /// Which leads may enter.
    #[serde(default)]
    pub targeting: Targeting,
    /// What is hashed.
    #[serde(default)]
    pub assignment_key: AssignmentKey,
    /// Share of targeted leads that enter.
    pub traffic_allocation: f64,
    /// Where the experiment's traffic range starts in its layer (set by the engine: exclusive
    /// experiments of one layer take disjoint ranges).
    #[serde(default)]
    pub traffic_offset: f64,
    /// Exposures per arm to reach (else the size the power analysis asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sample_size: Option<u64>,
    /// Planned length in days.
    pub duration_days: f64,
    /// Smallest relative lift of the primary metric worth detecting.
    pub minimum_detectable_effect: f64,
    /// Significance level.
    pub alpha: f64,
    /// Planned power.
    pub power: f64,
    /// Fixed or sequential.
    #[serde(default)]
    pub analysis: Analysis,
    /// Fixed or Thompson.
    #[serde(default)]
    pub allocation_method: AllocationMethod,
    /// Multiple-testing correction.
    #[serde(default)]
    pub correction: Correction,
    /// Conclude (without rollout) when the sequential analysis finds a winner.
    #[serde(default)]
    pub auto_conclude: bool,
    /// Tuning parameter of the confidence sequences (total exposures where they are tightest).
    pub sequential_tuning: f64,
    /// Sequential analysis: exposures every arm needs before a winner may be declared.
    pub min_sample_per_arm: u64,
    /// Thompson: the smallest share any arm keeps.
    pub min_arm_share: f64,
    /// Thompson: exposures with equal shares before the first update.
    pub burn_in: u64,
    /// Layer: exclusive experiments in one layer take disjoint traffic.
    pub layer: String,
    /// Exclusive (the default) or independent: an independent experiment hashes on its own and
    /// overlaps others; its arms may vary only what no other active experiment varies.
    pub exclusive: bool,
    /// Salt of the assignment hash.
    pub salt: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> ModelError {
    ModelError::invalid(field, reason)
}

fn unit(field: &str, v: f64, open_low: bool) -> Result<()> {
    let ok = v.is_finite() && v <= 1.0 && if open_low { v > 0.0 } else { v >= 0.0 };
    if ok {
        Ok(())
    } else {
        Err(bad(field, if open_low { "must be a number above 0 and at most 1" } else { "must be a number from 0 to 1" }))
    }
}

impl Definition {
    /// Checks the definition on its own (strategies and model versions that exist, and overlap
    /// with other experiments, are the engine's to check).
    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(bad("name", "must be 1 to 200 characters"));
        }
        if self.description.chars().count() > 4000 {
            return Err(bad("description", "must be at most 4000 characters"));
        }
        if self.arms.len() < 2 || self.arms.len() > MAX_ARMS {
            return Err(bad("arms", format!("must hold 2 to {MAX_ARMS} arms")));
        }
        for (i, a) in self.arms.iter().enumerate() {
            validate_id(&format!("arms[{i}].name"), &a.name)?;
            if self.arms[..i].iter().any(|b| b.name == a.name) {
                return Err(bad(format!("arms[{i}].name"), format!("'{}' is used twice", a.name)));
            }
            unit(&format!("arms[{i}].allocation"), a.allocation, true)?;
            if let Some(w) = &a.weights {
                w.validate(&format!("arms[{i}].weights"))?;
            }
            if let Some(v) = &a.model_version {
                validate_id(&format!("arms[{i}].modelVersion"), v)?;
                if a.strategy != Strategy::Ml {
                    return Err(bad(format!("arms[{i}].modelVersion"), "applies only to strategy 'ml'"));
                }
            }
            if let Some(x) = &a.exploration {
                x.validate(&format!("arms[{i}].exploration"))?;
                if !a.strategy.ranks_by_score() {
                    return Err(bad(format!("arms[{i}].exploration"), "applies only to strategies specialty, ml and roi"));
                }
            }
        }
        let total: f64 = self.arms.iter().map(|a| a.allocation).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(bad("arms", format!("allocations must sum to 1, not {total}")));
        }
        if self.guardrail_metrics.contains(&self.primary_metric) {
            return Err(bad("guardrailMetrics", "must not repeat the primary metric"));
        }
        unit("trafficAllocation", self.traffic_allocation, true)?;
        if self.target_sample_size == Some(0) {
            return Err(bad("targetSampleSize", "must be at least 1"));
        }
        if !(self.duration_days.is_finite() && self.duration_days > 0.0 && self.duration_days <= 3650.0) {
            return Err(bad("duration", "must be a number of days above 0 and at most 3650"));
        }
        if !(self.minimum_detectable_effect.is_finite() && self.minimum_detectable_effect > 0.0 && self.minimum_detectable_effect <= 10.0) {
            return Err(bad("minimumDetectableEffect", "must be a relative lift above 0 and at most 10"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(bad("alpha", "must be above 0 and below 0.5"));
        }
        if !(self.power.is_finite() && self.power > 0.5 && self.power < 1.0) {
            return Err(bad("power", "must be above 0.5 and below 1"));
        }
        if !(self.sequential_tuning.is_finite() && self.sequential_tuning >= 1.0) {
            return Err(bad("sequentialTuning", "must be at least 1"));
        }
        if !(self.min_arm_share.is_finite() && self.min_arm_share >= 0.0 && self.min_arm_share * self.arms.len() as f64 <= 1.0) {
            return Err(bad("minArmShare", "must be from 0 to 1 / the number of arms"));
        }
        validate_id("layer", &self.layer)?;
        for (f, v) in [("targeting.minValue", self.targeting.min_value), ("targeting.maxValue", self.targeting.max_value)] {
            crate::lead::check_amount(f, v)?;
        }
        if let (Some(lo), Some(hi)) = (self.targeting.min_value, self.targeting.max_value) {
            if lo > hi {
                return Err(bad("targeting.maxValue", "must not be below targeting.minValue"));
            }
        }
        for (i, s) in self.targeting.states.iter().enumerate() {
            if s.len() != 2 || !s.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad(format!("targeting.states[{i}]"), "must be a two-letter state code"));
            }
        }
        Ok(())
    }

    /// What the arms vary among themselves: strategy, weights, model version.
    pub fn varies(&self) -> [bool; 3] {
        let c = &self.arms[0];
        [
            self.arms.iter().any(|a| a.strategy != c.strategy),
            self.arms.iter().any(|a| a.weights != c.weights),
            self.arms.iter().any(|a| a.model_version != c.model_version),
        ]
    }

    /// The arm named `name`.
    pub fn arm(&self, name: &str) -> Option<usize> {
        self.arms.iter().position(|a| a.name == name)
    }

    /// Planned shares of the arms.
    pub fn planned(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.allocation).collect()
    }
}

/// An experiment's status. `draft → running ⇄ paused`, and `running | paused → concluded`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ExperimentStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Defined, not started: may be deleted.
    #[default]
    Draft,
    /// Taking traffic.
    Running,
    /// Stopped for now; its data stays.
    Paused,
    /// Over.
    Concluded,
}

impl Status {
    /// The status's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Concluded => "concluded",
        }
    }

    /// Whether `self → to` is allowed.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!((self, to), (Draft, Running) | (Running, Paused) | (Paused, Running) | (Running, Concluded) | (Paused, Concluded))
    }

    /// Draft, running or paused: still holds its traffic range.
    pub fn is_active(self) -> bool {
        !matches!(self, Status::Concluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{DecideRequest, LeadData};

    fn lead(state: &str, lines: &[InsuranceLine], urgency: Urgency, value: f64) -> LeadFeatures {
        let data = LeadData {
            insurance_types: lines.to_vec(),
            urgency,
            state: state.into(),
            estimated_value: value,
            complexity: 5,
            geographic_location: None,
            personal_info: None,
            coverage: None,
            requirements: None,
            notes: None,
            customer_id: None,
        };
        DecideRequest {
            lead_id: "l".into(),
            lead_data: data,
            exclude_brokers: vec![],
            require_specialties: vec![],
            strategy: None,
            exploration: None,
        }
        .features()
    }

    #[test]
    fn targeting_admits_only_what_every_list_allows() {
        let t = Targeting {
            states: vec!["ca".into(), "NV".into()],
            lines: vec![InsuranceLine::Home, InsuranceLine::Life],
            urgency: vec![Urgency::High],
            min_value: Some(100.0),
            max_value: Some(1000.0),
        };
        assert!(t.admits(&lead("CA", &[InsuranceLine::Auto, InsuranceLine::Home], Urgency::High, 500.0)));
        assert!(!t.admits(&lead("TX", &[InsuranceLine::Home], Urgency::High, 500.0)), "state");
        assert!(!t.admits(&lead("CA", &[InsuranceLine::Auto], Urgency::High, 500.0)), "lines");
        assert!(!t.admits(&lead("CA", &[InsuranceLine::Home], Urgency::Low, 500.0)), "urgency");
        assert!(!t.admits(&lead("CA", &[InsuranceLine::Home], Urgency::High, 99.0)), "below the range");
        assert!(!t.admits(&lead("CA", &[InsuranceLine::Home], Urgency::High, 1000.5)), "above the range");
        assert!(Targeting::default().admits(&lead("TX", &[InsuranceLine::Auto], Urgency::Low, 0.0)));
    }
}
