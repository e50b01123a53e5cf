//! Off-policy evaluation of a candidate routing policy on logged decisions: the journal is
//! replayed (`replay`), each resolved decision becomes a row of propensities, rewards and
//! reward-model predictions, and `leadrouter_models::ope` turns the rows into IPS, SNIPS,
//! direct-method and doubly robust estimates with bootstrap intervals. Evaluations run as
//! jobs on a background thread (`jobs`), never on the decision path. The same replay explains
//! one decision for one broker (`why_not`).
//!
//! Assumptions, stated where users read them (README): each decision is treated as
//! independent of the others, so the capacity a candidate's different choices would have used
//! or freed (and the queueing, re-routes and fairness prices that follow) is ignored; the
//! candidate is replayed without fairness adjustments, overload penalties or semantic terms;
//! and the logger's propensities must be exact (they are, from the journal).

pub mod jobs;
mod replay;
pub mod why_not;

use chrono::{DateTime, Utc};
use leadrouter_models::lead::validate_id;
use leadrouter_models::ope::{self, Estimates, Row, Support};
use leadrouter_models::{Exploration, ModelError, Strategy, Weights};
use serde::{Deserialize, Serialize};

pub use replay::Models;

use crate::config::EngineConfig;
use crate::error::Result;

/// A policy to evaluate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Candidate {
    /// Strategy.
    pub strategy: Strategy,
    /// Weights; the strategy's configured weights when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// Conversion model version (strategies `ml` and `roi`); the active model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Exploration (specialty, ml, roi); deterministic when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<Exploration>,
}

impl Candidate {
    /// Checks the policy; errors name the field under `field`.
    pub fn validate(&self, field: &str) -> std::result::Result<(), ModelError> {
        if let Some(w) = &self.weights {
            w.validate(&format!("{field}.weights"))?;
        }
        if let Some(v) = &self.model_version {
            validate_id(&format!("{field}.modelVersion"), v)?;
            if !self.strategy.uses_model() {
                return Err(ModelError::invalid(format!("{field}.modelVersion"), "applies only to strategies ml and roi"));
            }
        }
        if let Some(x) = &self.exploration {
            x.validate(&format!("{field}.exploration"))?;
            if !self.strategy.ranks_by_score() {
                return Err(ModelError::invalid(format!("{field}.exploration"), "applies only to strategies specialty, ml and roi"));
            }
        }
        Ok(())
    }
}

/// What an evaluation reads, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Decisions made at or after this moment; the journal's start when absent.
    pub from: Option<DateTime<Utc>>,
    /// Decisions made before this moment; the journal's end when absent.
    pub to: Option<DateTime<Utc>>,
    /// Bootstrap resamples per interval.
    pub bootstrap_samples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

/// Reports how far a replay has come.
pub trait Progress: Sync {
    /// Records to read in all.
    fn total(&self, _records: u64) {}
    /// Records read so far.
    fn done(&self, _records: u64) {}
}

impl Progress for () {}

/// The three outcomes, per decision.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    /// Share of decisions whose broker converted the lead.
    pub conversion_rate: f64,
    /// Conversion value per decision.
    pub revenue_per_lead: f64,
    /// Share of decisions whose broker made first contact within its SLA target.
    pub sla_compliance: f64,
}

/// The candidate's estimated value of each outcome.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimated {
    /// Conversion rate.
    pub conversion_rate: Estimates,
    /// Revenue per lead.
    pub revenue_per_lead: Estimates,
    /// SLA compliance.
    pub sla_compliance: Estimates,
}

/// An evaluation's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The candidate.
    pub policy: Candidate,
    /// The window and the bootstrap.
    pub settings: Settings,
    /// The first and last logged decision used.
    pub first_decision: Option<DateTime<Utc>>,
    /// The last one.
    pub last_decision: Option<DateTime<Utc>>,
    /// Logged decisions with a known outcome: the rows of the estimates.
    pub decisions: usize,
    /// Decisions in the window whose lead has no outcome yet (left out).
    pub open: usize,
    /// Decisions in the window the replay could not rebuild (left out).
    pub unreplayable: usize,
    /// The reward model of the direct method and doubly robust: `model:<version>` or
    /// `empirical_bayes`.
    pub reward_model: String,
    /// What the logging policy achieved on these decisions.
    pub logging: Values,
    /// The candidate's estimates.
    pub estimates: Estimated,
    /// The importance weights' support.
    pub support: Support,
    /// Why an estimate may be unreliable.
    pub warnings: Vec<String>,
}

/// Most bootstrap resamples an evaluation may ask for.
pub const MAX_BOOTSTRAP: usize = 10_000;

/// Checks a candidate and its settings, and resolves its models from `registry`: the
/// candidate's pinned version or the active model (strategies `ml` and `roi`), and the reward
/// model (`reward_model`, else the active model); with the reward model's name.
pub fn prepare(
    registry: &crate::model::registry::Registry,
    candidate: &Candidate,
    settings: &Settings,
    reward_model: Option<&str>,
) -> Result<(Models, String)> {
    use crate::error::ActorError;
    candidate.validate("policy").map_err(ActorError::Invalid)?;
    if settings.bootstrap_samples == 0 || settings.bootstrap_samples > MAX_BOOTSTRAP {
        return Err(ActorError::Invalid(ModelError::invalid("bootstrapSamples", format!("must be between 1 and {MAX_BOOTSTRAP}"))));
    }
    if let (Some(f), Some(t)) = (settings.from, settings.to) {
        if f >= t {
            return Err(ActorError::Invalid(ModelError::invalid("to", "must be after 'from'")));
        }
    }
    let version = |v: &str, field: &str| {
        registry.version(v).map_err(|_| ActorError::Invalid(ModelError::invalid(field, format!("no model version '{v}'"))))
    };
    let candidate_model = match (&candidate.model_version, candidate.strategy.uses_model()) {
        (Some(v), _) => Some(version(v, "policy.modelVersion")?),
        (None, true) => registry.active(),
        (None, false) => None,
    };
    let reward = match reward_model {
        Some(v) => Some(version(v, "rewardModel")?),
        None => registry.active(),
    };
    let name = reward.as_ref().map_or_else(|| "empirical_bayes".to_string(), |m| format!("model:{}", m.version));
    Ok((Models { candidate: candidate_model, reward }, name))
}

/// Evaluates `candidate` on the decisions journaled in `journal_dir`.
pub fn evaluate(
    journal_dir: &std::path::Path,
    cfg: &EngineConfig,
    candidate: &Candidate,
    models: &Models,
    reward_model: String,
    settings: Settings,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    let r = replay::replay(journal_dir, cfg, candidate, models, settings.from, settings.to, progress)?;
    let rows = |k: usize| -> Vec<Row> {
        r.rows
            .iter()
            .map(|l| Row {
                logged: l.logged,
                target: l.target,
                reward: [l.converted, l.revenue, l.sla_met][k],
                q_logged: l.q_logged[k],
                q_target: l.q_target[k],
            })
            .collect()
    };
    let mean = |k: usize| {
        let v = rows(k);
        if v.is_empty() {
            0.0
        } else {
            v.iter().map(|x| x.reward).sum::<f64>() / v.len() as f64
        }
    };
    let est = |k: usize| ope::estimate(&rows(k), settings.bootstrap_samples, settings.seed.wrapping_add(k as u64));
    let support = ope::support(&rows(0));
    Ok(Evaluation {
        policy: candidate.clone(),
        first_decision: r.range.map(|x| x.0),
        last_decision: r.range.map(|x| x.1),
        decisions: r.rows.len(),
        open: r.open,
        unreplayable: r.unreplayable,
        reward_model,
        logging: Values { conversion_rate: mean(0), revenue_per_lead: mean(1), sla_compliance: mean(2) },
        estimates: Estimated { conversion_rate: est(0), revenue_per_lead: est(1), sla_compliance: est(2) },
        warnings: ope::warnings(&support),
        support,
        settings,
    })
}
