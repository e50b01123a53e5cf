//! The API's own response types for decisions, leads and predictions, converted from the
//! engine's views. The journal writes its frozen format (`storage/record/v1.rs`) and the API
//! writes these, so either can change without the other. Here numbers are rounded for people
//! (factor values, weights and contributions, scores: 4 decimals; minutes and money: 2), never
//! in the journal; probabilities (`conversion`, `probability`, `propensity`) stay exact, since
//! they feed estimates. A decision's lines are listed by name.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadrouter_actors::storage::state::LeadEventEntry;
use leadrouter_actors::{views, DecideOutcome};
use leadrouter_models::{DecideRequest, Exclusion, InsuranceLine, LeadState, Strategy};
use serde::Serialize;

/// `x` to `places` decimals (finite values only; others as they are).
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    if x.is_finite() {
        (x * f).round() / f
    } else {
        x
    }
}

/// One factor of a score.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Factor {
    /// The factor, 0–1.
    pub value: f64,
    /// Its weight.
    pub weight: f64,
    /// value × weight.
    pub contribution: f64,
}

impl From<&leadrouter_models::Factor> for Factor {
    fn from(f: &leadrouter_models::Factor) -> Self {
        Self { value: round(f.value, 4), weight: round(f.weight, 4), contribution: round(f.contribution, 4) }
    }
}

/// A candidate's score, factor by factor, with what the performance term was made of.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breakdown {
    /// Mean proficiency over the lead's lines.
    pub specialty: Factor,
    /// Conversion × value × SLA compliance / relative contact time, against the best candidate.
    pub performance: Factor,
    /// Headroom of concurrent seats and the daily cap, the tighter.
    pub capacity: Factor,
    /// Smoothed SLA compliance.
    pub sla: Factor,
    /// P(convert) used, exact.
    pub conversion: f64,
    /// `empirical_bayes`, `model:<version>`; for `roi` also `evidence` or `model:<version>+evidence`.
    pub conversion_source: String,
    /// Smoothed value per conversion.
    pub value_per_conversion: f64,
    /// Smoothed minutes to first contact.
    pub avg_first_contact_minutes: f64,
    /// The performance term before normalisation.
    pub raw_performance: f64,
    /// Strategy `roi`: the terms of the score (net expected value, in the lead's currency); the
    /// factors above are then shown with weight 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roi: Option<RoiTerms>,
    /// What fairness and overload added to the strategy's score, when anything did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<leadrouter_models::Adjustments>,
    /// A lead with notes: the semantic match of its text and the broker's profile, and the
    /// similar-lead evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticTerms>,
    /// The score in words, e.g. "expected value 1,240 − seat price 310 = 930" (strategy `roi`,
    /// or any score with an adjustment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// A candidate's semantic terms.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SemanticTerms {
    /// Cosine similarity of the lead's text vector and the broker's profile vector, -1 to 1.
    pub semantic_match: f64,
    /// The strategy's `semantic` weight (0 by default; 0 under `roi`).
    pub weight: f64,
    /// `max(semanticMatch, 0) × weight`, included in the score.
    pub contribution: f64,
    /// Of the lead's nearest resolved past leads, how many went to this broker ...
    pub similar_leads: u32,
    /// ... and how many of those converted.
    pub similar_converted: u32,
    /// Smoothed "conversion on leads like this" with this broker (a feature of the model).
    pub similar_rate: f64,
    /// "7 of 9 similar leads converted with this broker".
    pub evidence: String,
}

impl From<&leadrouter_models::SemanticTerms> for SemanticTerms {
    fn from(t: &leadrouter_models::SemanticTerms) -> Self {
        Self {
            semantic_match: round(t.semantic_match, 4),
            weight: t.weight,
            contribution: round(t.contribution, 4),
            similar_leads: t.similar_leads,
            similar_converted: t.similar_converted,
            similar_rate: round(t.similar_rate, 4),
            evidence: t.evidence(),
        }
    }
}

/// The terms of a `roi` score, rounded to cents.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoiTerms {
    /// Estimated value × the mean margin of the lead's lines.
    pub value: f64,
    /// P(convert) × value.
    pub expected_value: f64,
    /// The broker's cost per lead.
    pub cost: f64,
    /// The opportunity cost of the seat the lead takes (the broker's bid price at its load).
    pub seat_price: f64,
    /// The broker's load once it takes the lead, 0–1.
    pub load: f64,
    /// Cold-start optimism bonus (shrinks as the broker's record grows).
    pub optimism: f64,
}

/// `1240.4` → `"1,240"`.
pub(crate) fn money(v: f64) -> String {
    let n = v.abs().round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && n > 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The score in words: the `roi` terms that are not zero, then any adjustment.
fn explain(b: &leadrouter_models::Breakdown, score: f64) -> Option<String> {
    let adj = b.adjustments.filter(|a| a.total() != 0.0);
    let (mut text, money_units) = match &b.roi {
        Some(t) => {
            let mut s = format!("expected value {}", money(t.expected_value));
            for (name, v, sign) in [("cost", t.cost, '−'), ("seat price", t.seat_price, '−'), ("new-broker bonus", t.optimism, '+')] {
                if v.round() != 0.0 {
                    s.push_str(&format!(" {sign} {name} {}", money(v)));
                }
            }
            (s, true)
        }
        None => (format!("score {:.3}", score - adj.map_or(0.0, |a| a.total())), false),
    };
    if b.roi.is_none() && adj.is_none() {
        return None;
    }
    let fmt = |v: f64| if money_units { money(v.abs()) } else { format!("{:.3}", v.abs()) };
    if let Some(a) = adj {
        for (name, v) in [("fairness", a.fairness), ("overload", a.overload)] {
            if v != 0.0 {
                text.push_str(&format!(" {} {name} {}", if v < 0.0 { '−' } else { '+' }, fmt(v)));
            }
        }
    }
    text.push_str(&format!(" = {}", if money_units { money(score) } else { format!("{score:.3}") }));
    Some(text)
}

impl Breakdown {
    /// The API's breakdown of a candidate that scored `score`.
    pub fn of(b: &leadrouter_models::Breakdown, score: f64) -> Self {
        Self { explanation: explain(b, score), ..b.into() }
    }
}

impl From<&leadrouter_models::Breakdown> for Breakdown {
    fn from(b: &leadrouter_models::Breakdown) -> Self {
        Self {
            specialty: (&b.specialty).into(),
            performance: (&b.performance).into(),
            capacity: (&b.capacity).into(),
            sla: (&b.sla).into(),
            conversion: b.conversion,
            conversion_source: b.conversion_source.clone(),
            value_per_conversion: round(b.value_per_conversion, 2),
            avg_first_contact_minutes: round(b.avg_first_contact_minutes, 2),
            raw_performance: round(b.raw_performance, 4),
            roi: b.roi.map(|t| RoiTerms {
                value: round(t.value, 2),
                expected_value: round(t.expected_value, 2),
                cost: round(t.cost, 2),
                seat_price: round(t.seat_price, 2),
                load: round(t.load, 4),
                optimism: round(t.optimism, 2),
            }),
            adjustments: b.adjustments,
            semantic: b.semantic.as_ref().map(Into::into),
            explanation: None,
        }
    }
}

/// A scored broker that was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alternative {
    /// Broker id.
    pub broker_id: String,
    /// Total score.
    pub score: f64,
    /// Factors.
    pub breakdown: Breakdown,
    /// With exploration: the exact probability it had of being picked instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// A candidate that did not answer the score request in time.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Broker id.
    pub broker_id: String,
    /// `deadline` or `mailbox`.
    pub reason: String,
}

fn skipped(s: &[leadrouter_actors::storage::record::Skipped]) -> Vec<Skipped> {
    s.iter().map(|s| Skipped { broker_id: s.broker_id.clone(), reason: s.reason.clone() }).collect()
}

/// A routing decision: who got the lead and why.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unique id of this decision.
    pub decision_id: String,
    /// The lead.
    pub lead_id: String,
    /// The winner.
    pub broker_id: String,
    /// The lead's state (USPS code).
    pub lead_state: String,
    /// The lead's lines.
    pub lead_lines: Vec<InsuranceLine>,
    /// Always `assigned` for a decision.
    pub status: String,
    /// Strategy used.
    pub strategy: Strategy,
    /// Winner's total score.
    pub score: f64,
    /// Winner's factors.
    pub breakdown: Breakdown,
    /// Next-best scored brokers, best first; with exploration, also every candidate it could
    /// have picked, each with its probability.
    pub alternatives: Vec<Alternative>,
    /// Brokers ruled out, counted per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Candidates that missed the scoring deadline.
    pub skipped: Vec<Skipped>,
    /// Brokers that passed the hard constraints.
    pub eligible: u32,
    /// Brokers scored (the top K after pre-rank).
    pub scored: u32,
    /// Probability with which this broker was chosen among those that could take the lead (1
    /// for a deterministic choice), exact.
    pub propensity: f64,
    /// The exploration the choice was drawn with, its band filled in; absent for a
    /// deterministic choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exploration: Option<leadrouter_models::Exploration>,
    /// 1 for the first assignment, then one more per re-route.
    pub attempt: u32,
    /// Broker that had the lead before a re-route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerouted_from: Option<String>,
    /// When the reservation was taken.
    pub decided_at: DateTime<Utc>,
    /// When the reservation times out unless accepted.
    pub accept_deadline: DateTime<Utc>,
    /// First-contact target in minutes for this lead with this broker.
    pub sla_target_minutes: u32,
    /// Server-side decision time in microseconds, up to the journal append.
    pub decision_micros: u64,
    /// Conversion model version used (strategy `ml` with an active model), else null.
    pub model_version: Option<String>,
    /// The experiments this decision is an exposure of (a lead's first decision only): the
    /// experiment, the arm, and the probability of that assignment for a targeted lead.
    pub experiments: Vec<Exposure>,
}

/// A decision's exposure to an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// The experiment.
    pub experiment_id: String,
    /// The arm: its strategy, weights and model version made this decision.
    pub arm: String,
    /// Probability of this assignment (traffic share × arm share).
    pub probability: f64,
}

impl From<&leadrouter_actors::Decision> for Decision {
    fn from(d: &leadrouter_actors::Decision) -> Self {
        Self {
            decision_id: d.decision_id.clone(),
            lead_id: d.lead_id.clone(),
            broker_id: d.broker_id.clone(),
            lead_state: d.lead_state.clone(),
            lead_lines: InsuranceLine::ALL.into_iter().filter(|l| d.lead_lines.0 & (1 << l.index()) != 0).collect(),
            status: d.status.clone(),
            strategy: d.strategy,
            score: round(d.score, 4),
            breakdown: Breakdown::of(&d.breakdown, d.score),
            alternatives: d
                .alternatives
                .iter()
                .map(|a| Alternative {
                    broker_id: a.broker_id.clone(),
                    score: round(a.score, 4),
                    breakdown: Breakdown::of(&a.breakdown, a.score),
                    probability: a.probability,
                })
                .collect(),
            excluded: d.excluded.clone(),
            skipped: skipped(&d.skipped),
            eligible: d.eligible,
            scored: d.scored,
            propensity: d.propensity,
            exploration: d.exploration,
            attempt: d.attempt,
            rerouted_from: d.rerouted_from.clone(),
            decided_at: d.decided_at,
            accept_deadline: d.accept_deadline,
            sla_target_minutes: d.sla_target_minutes,
            decision_micros: d.decision_micros,
            model_version: d.model_version.clone(),
            experiments: d
                .experiments
                .iter()
                .map(|x| Exposure { experiment_id: x.experiment_id.clone(), arm: x.arm.clone(), probability: x.probability })
                .collect(),
        }
    }
}

/// A decision plus how it was served.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Assigned {
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// Microseconds spent making the decision durable.
    pub journal_micros: u64,
    /// True when this lead id was decided before and this is the first decision again.
    pub replayed: bool,
}

/// The answer to a decide request.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Outcome {
    /// A broker holds the lead.
    Assigned(Box<Assigned>),
    /// The lead waits (or waited) for capacity.
    Waiting(views::WaitingAnswer),
}

impl Outcome {
    /// True when this lead id was decided before.
    pub fn replayed(&self) -> bool {
        match self {
            Self::Assigned(a) => a.replayed,
            Self::Waiting(w) => w.replayed,
        }
    }
}

impl From<DecideOutcome> for Outcome {
    fn from(o: DecideOutcome) -> Self {
        match o {
            DecideOutcome::Assigned(a) => Self::Assigned(Box::new(Assigned {
                decision: (&*a.decision).into(),
                journal_micros: a.journal_micros,
                replayed: a.replayed,
            })),
            DecideOutcome::Waiting(w) => Self::Waiting(w),
        }
    }
}

/// Everything known about one lead.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    /// The lead.
    pub lead_id: String,
    /// Current state.
    pub state: LeadState,
    /// Broker holding it.
    pub broker_id: Option<String>,
    /// Place in the queue while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    /// When it was first seen.
    pub created_at: DateTime<Utc>,
    /// When it leaves the queue unassigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Brokers that gave it back.
    pub tried: Vec<String>,
    /// Every decision.
    pub decisions: Vec<Decision>,
    /// Every event.
    pub events: Vec<LeadEventEntry>,
    /// The original request.
    pub request: DecideRequest,
}

impl From<views::LeadView> for Lead {
    fn from(v: views::LeadView) -> Self {
        Self {
            lead_id: v.lead_id,
            state: v.state,
            broker_id: v.broker_id,
            queue_position: v.queue_position,
            created_at: v.created_at,
            expires_at: v.expires_at,
            tried: v.tried,
            decisions: v.decisions.iter().map(|d| (&**d).into()).collect(),
            events: v.events,
            request: v.request,
        }
    }
}

/// One ranked candidate of a prediction.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictedCandidate {
    /// Broker.
    pub broker_id: String,
    /// P(convert): the model's when one is active and the strategy is `ml`, else the
    /// empirical-Bayes estimate; exact.
    pub probability: f64,
    /// Total score.
    pub score: f64,
    /// Factors.
    pub breakdown: Breakdown,
}

/// `POST /api/routing/predict`: the ranking a decision would use, with nothing reserved.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    /// The lead.
    pub lead_id: String,
    /// Strategy used.
    pub strategy: Strategy,
    /// Model version, when one predicted.
    pub model_version: Option<String>,
    /// Brokers that passed the hard constraints.
    pub eligible: u32,
    /// Brokers ruled out, per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Candidates that missed the scoring deadline.
    pub skipped: Vec<Skipped>,
    /// Scored candidates, best first for `specialty` and `ml`.
    pub candidates: Vec<PredictedCandidate>,
    /// Server-side time in microseconds.
    pub micros: u64,
    /// The moment the hard constraints were checked at (now, or the request's `context`).
    pub at: chrono::DateTime<chrono::Utc>,
    /// Of the brokers named in `availableBrokers`, those that failed a hard constraint, with the
    /// first one they failed (an exclusion reason) or `unknownBroker`.
    pub unavailable: Vec<leadrouter_actors::Unavailable>,
}

impl From<views::Prediction> for Prediction {
    fn from(p: views::Prediction) -> Self {
        Self {
            lead_id: p.lead_id,
            strategy: p.strategy,
            model_version: p.model_version,
            eligible: p.eligible,
            excluded: p.excluded,
            skipped: skipped(&p.skipped),
            candidates: p
                .candidates
                .iter()
                .map(|c| PredictedCandidate {
                    broker_id: c.broker_id.clone(),
                    probability: c.probability,
                    score: round(c.score, 4),
                    breakdown: Breakdown::of(&c.breakdown, c.score),
                })
                .collect(),
            micros: p.micros,
            at: p.at,
            unavailable: p.unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round;

    #[test]
    fn rounding_is_for_people_and_leaves_non_finite_values_alone() {
        assert_eq!(round(0.27999999999999997, 4), 0.28);
        assert_eq!(round(0.09206349206349207, 4), 0.0921);
        assert_eq!(round(14.285788095238095, 2), 14.29);
        assert!(round(f64::NAN, 4).is_nan());
    }
}
