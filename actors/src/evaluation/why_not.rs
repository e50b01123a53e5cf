//! "Why not this broker?": a lead's latest decision explained for one broker, reconstructed
//! from the journal as of that decision (not from today's state): the first hard constraint
//! the broker failed then, or, when it was eligible, its score beside the winner's and the
//! factor that decided.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leadrouter_models::{combine, Breakdown, BrokerProfile, Exclusion, LocalClock, Strategy, Weights};
use serde::Serialize;

use crate::error::{ActorError, Result};
use crate::storage::journal;
use crate::storage::record::{Decision, Record};
use crate::storage::state::EngineState;

/// What the broker was to the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It got the lead.
    Chosen,
    /// It failed a hard constraint (`constraint` says which).
    Ineligible,
    /// It passed every constraint but was not among the candidates the pre-rank sent to be
    /// scored.
    NotScored,
    /// It was scored and lost: on score, or in the exploration draw.
    Outscored,
    /// The broker did not exist when the decision was made.
    Unknown,
}

/// A candidate's score.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scored {
    /// Broker.
    pub broker_id: String,
    /// Total score.
    pub score: f64,
    /// Factors, as the decision logged them (or, for a broker it did not score, as the
    /// decision's weights would have scored it then).
    pub breakdown: Breakdown,
    /// With exploration: its probability of being picked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhyNot {
    /// The lead.
    pub lead_id: String,
    /// The broker asked about.
    pub broker_id: String,
    /// The lead's latest decision.
    pub decision_id: String,
    /// When it was made.
    pub decided_at: DateTime<Utc>,
    /// Its strategy.
    pub strategy: Strategy,
    /// What the broker was to it.
    pub verdict: Verdict,
    /// The first hard constraint the broker failed (`ineligible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Exclusion>,
    /// The factor that put the winner ahead (`outscored`, `not_scored`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_factor: Option<String>,
    /// In words.
    pub reason: String,
    /// The winner's score.
    pub winner: Scored,
    /// The broker's score, when it was eligible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<Scored>,
}

/// Explains `lead_id`'s latest decision for `broker_id` by replaying `journal_dir`; `NotFound`
/// when the journal holds no decision of the lead.
pub fn why_not(journal_dir: &std::path::Path, lead_id: &str, broker_id: &str, prior_strength: f64) -> Result<WhyNot> {
    let mut state = EngineState::default();
    let mut profiles: HashMap<String, BrokerProfile> = HashMap::new();
    let mut last: Option<WhyNot> = None;
    journal::read_all(journal_dir, |seq, rec| {
        match &rec {
            Record::BrokerUpserted { broker, .. } => {
                profiles.insert(broker.id.clone(), broker.profile());
            }
            Record::BrokerDeleted { broker_id, .. } => {
                profiles.remove(broker_id);
            }
            Record::Decided { decision: d, request, .. } if d.lead_id == lead_id => {
                let req = request.clone().or_else(|| state.leads.get(lead_id).map(|l| l.request.clone()));
                let tried = state.leads.get(lead_id).map(|l| l.tried.clone()).unwrap_or_default();
                if let Some(req) = req {
                    last = Some(explain(&state, &profiles, &req.features(), &tried, d, broker_id, prior_strength));
                }
            }
            _ => {}
        }
        state.apply(seq, &rec);
    })?;
    last.ok_or_else(|| ActorError::NotFound { what: "lead decision", id: lead_id.to_string() })
}

fn scored(d: &Decision, id: &str) -> Option<Scored> {
    if d.broker_id == id {
        return Some(Scored { broker_id: id.into(), score: d.score, breakdown: d.breakdown.clone(), probability: None });
    }
    d.alternatives.iter().find(|a| a.broker_id == id).map(|a| Scored {
        broker_id: id.into(),
        score: a.score,
        breakdown: a.breakdown.clone(),
        probability: a.probability,
    })
}

/// The factor with the largest lead of the winner over the other, by contribution.
fn deciding(w: &Breakdown, b: &Breakdown) -> (String, f64) {
    let mut gaps: Vec<(&str, f64)> = vec![
        ("specialty", w.specialty.contribution - b.specialty.contribution),
        ("performance", w.performance.contribution - b.performance.contribution),
        ("capacity", w.capacity.contribution - b.capacity.contribution),
        ("sla", w.sla.contribution - b.sla.contribution),
    ];
    let sem = |x: &Breakdown| x.semantic.map_or(0.0, |s| s.contribution);
    gaps.push(("semantic", sem(w) - sem(b)));
    let adj = |x: &Breakdown| x.adjustments.unwrap_or_default();
    gaps.push(("fairness", adj(w).fairness - adj(b).fairness));
    gaps.push(("overload", adj(w).overload - adj(b).overload));
    if let (Some(rw), Some(rb)) = (w.roi, b.roi) {
        gaps = vec![
            ("expected value", rw.expected_value - rb.expected_value),
            ("cost per lead", rb.cost - rw.cost),
            ("seat price", rb.seat_price - rw.seat_price),
            ("new-broker bonus", rw.optimism - rb.optimism),
            ("fairness", adj(w).fairness - adj(b).fairness),
            ("overload", adj(w).overload - adj(b).overload),
        ];
    }
    gaps.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|(n, g)| (n.to_string(), g)).unwrap_or_default()
}

fn explain(
    state: &EngineState,
    profiles: &HashMap<String, BrokerProfile>,
    lead: &leadrouter_models::LeadFeatures,
    tried: &[String],
    d: &Decision,
    broker_id: &str,
    prior_strength: f64,
) -> WhyNot {
    let winner = Scored { broker_id: d.broker_id.clone(), score: d.score, breakdown: d.breakdown.clone(), probability: None };
    let mut out = WhyNot {
        lead_id: d.lead_id.clone(),
        broker_id: broker_id.into(),
        decision_id: d.decision_id.clone(),
        decided_at: d.decided_at,
        strategy: d.strategy,
        verdict: Verdict::Unknown,
        constraint: None,
        deciding_factor: None,
        reason: String::new(),
        winner,
        broker: None,
    };
    let now = d.decided_at;
    let (Some(b), Some(p)) = (state.brokers.get(broker_id), profiles.get(broker_id)) else {
        out.reason = format!("broker '{broker_id}' did not exist when the decision was made");
        return out;
    };
    if d.broker_id == broker_id {
        out.verdict = Verdict::Chosen;
        out.broker = scored(d, broker_id);
        out.reason = match d.exploration {
            Some(_) if d.propensity < 1.0 => format!("it got the lead, drawn by exploration with probability {:.3}", d.propensity),
            _ => "it got the lead".into(),
        };
        return out;
    }
    if tried.iter().any(|t| t == broker_id) {
        out.reason = "it had the lead before and let it go; a re-route never offers a lead to the same broker again".into();
    }
    let failed = super::replay::eligibility(b, p, lead, tried, now, &mut LocalClock::default()).err();
    if let Some(x) = failed {
        out.verdict = Verdict::Ineligible;
        out.constraint = Some(x);
        if out.reason.is_empty() {
            out.reason = match x {
                Exclusion::Excluded => "the request named it in excludeBrokers".into(),
                Exclusion::NotLicensed => format!("not licensed in {} for every line of the lead", lead.state),
                Exclusion::LicenseExpired => format!("its licence in {} for a line of the lead had expired", lead.state),
                Exclusion::MissingSpecialty => "it lacks a specialty the request required".into(),
                Exclusion::Unavailable => "its status was away, offline or out of office".into(),
                Exclusion::OutsideHours => "outside its working hours".into(),
                Exclusion::AtCapacity => {
                    format!("at capacity: {} open leads of {} seats", b.live.open_count(), b.live.seats(p.max_concurrent))
                }
                Exclusion::DailyCapReached => format!("at its daily cap of {}", p.daily_cap),
            };
        }
        return out;
    }
    if !d.strategy.ranks_by_score() {
        // The unscored strategies choose by their own rule, not by score.
        out.verdict = Verdict::Outscored;
        out.broker = scored(d, broker_id);
        out.deciding_factor = Some(d.strategy.name().into());
        out.reason = match d.strategy {
            Strategy::Random => format!("eligible; strategy random drew the winner uniformly (probability {:.3})", d.propensity),
            _ => format!("eligible; it was not its turn under strategy {}", d.strategy.name()),
        };
        return out;
    }
    if let Some(s) = scored(d, broker_id) {
        out.verdict = Verdict::Outscored;
        let (factor, gap) = deciding(&d.breakdown, &s.breakdown);
        if s.score > d.score {
            out.deciding_factor = Some("exploration".into());
            out.reason = format!(
                "it scored higher ({:.4} against {:.4}) but exploration drew the winner (probability {:.3}; this broker's {:.3})",
                s.score,
                d.score,
                d.propensity,
                s.probability.unwrap_or(0.0)
            );
        } else {
            out.reason = format!("scored {:.4} against the winner's {:.4}; the winner's {factor} was ahead by {gap:.4}", s.score, d.score);
            out.deciding_factor = Some(factor);
        }
        out.broker = Some(s);
        return out;
    }
    // Eligible but not in the decision's list: the pre-rank kept others, or it was scored
    // below the alternatives shown. Its score as the decision's weights would have had it.
    out.verdict = Verdict::NotScored;
    if d.strategy == Strategy::Roi {
        out.reason =
            format!("eligible, but not among the {} candidates scored of {} eligible, or below those listed", d.scored, d.eligible);
        return out;
    }
    let w = &d.breakdown;
    let weights = Weights {
        specialty: w.specialty.weight,
        performance: w.performance.weight,
        capacity: w.capacity.weight,
        sla: w.sla.weight,
        semantic: 0.0,
    };
    let inputs = super::replay::observe(broker_id, b, p, lead, &state.priors(prior_strength), 0.0, now).inputs;
    // Performance is relative to the best candidate's: the winner's raw figure over its value.
    let best_raw = if w.performance.value > 0.0 { w.raw_performance / w.performance.value } else { inputs.raw_performance() };
    let (_, mut breakdown) = combine(&[inputs], &weights).remove(0);
    breakdown.performance = leadrouter_models::Factor::new((inputs.raw_performance() / best_raw.max(1e-12)).min(1.0), weights.performance);
    let score = breakdown.specialty.contribution
        + breakdown.performance.contribution
        + breakdown.capacity.contribution
        + breakdown.sla.contribution;
    let (factor, gap) = deciding(w, &breakdown);
    let source = if d.strategy == Strategy::Ml { ", with its empirical-Bayes conversion in place of the model's" } else { "" };
    out.reason = format!(
        "eligible, but not among the {} candidates scored of {} eligible, or below those listed; by the decision's weights{source} it would have scored about {score:.4} against the winner's {:.4} (the winner's {factor} ahead by {gap:.4})",
        d.scored, d.eligible, d.score
    );
    out.deciding_factor = Some(factor);
    out.broker = Some(Scored { broker_id: broker_id.into(), score, breakdown, probability: None });
    out
}
