//! Journal format version 4: version 3 plus semantic matching. A broker may carry a `bio`;
//! a strategy's weights may carry a `semantic` weight; a score's breakdown may carry its
//! `semantic` terms (the match of the lead's text and the broker's profile, and the
//! similar-lead evidence).
//!
//! Every version-3 record is a version-4 record with the same bytes: the new fields are
//! optional and written only when present, and the payload types that did not change are
//! version 3's, 2's and 1's own. So one decoder reads every version, and every older fixture
//! replays and round-trips unchanged. These types are a stored format, frozen like the older
//! ones; `tests/fixtures/journal-v4/` holds segments written in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models as live;
use leadrouter_models::experiment as lx;
use serde::{Deserialize, Serialize};

use super::v1::{EventKind, Exclusion, Factor, Skipped};
use super::v2::{AllocationMethod, Analysis, AssignmentKey, Correction, Exposure, Metric, Status, Targeting};
use super::v3::{Adjustments, DecideRequest, RoiTerms, Strategy};
use super::SharedDecision;

/// A broker: version 1's fields and an optional `bio`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Broker {
    #[serde(flatten)]
    pub base: super::v1::Broker,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
}

/// A strategy's weights: version 2's and an optional `semantic` weight (absent means 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Weights {
    pub specialty: f64,
    pub performance: f64,
    pub capacity: f64,
    pub sla: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub semantic: f64,
}

fn is_zero(w: &f64) -> bool {
    *w == 0.0
}

/// A candidate's semantic terms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SemanticTerms {
    pub semantic_match: f64,
    pub weight: f64,
    pub contribution: f64,
    pub similar_leads: u32,
    pub similar_converted: u32,
    pub similar_rate: f64,
}

/// One journal record, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Record {
    BrokerUpserted {
        at: DateTime<Utc>,
        broker: Broker,
    },
    BrokerDeleted {
        at: DateTime<Utc>,
        broker_id: String,
    },
    /// The decision's own serialization is this format's [`Decision`] (see [`SharedDecision`]).
    Decided {
        at: DateTime<Utc>,
        decision: SharedDecision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<DecideRequest>,
    },
    Queued {
        at: DateTime<Utc>,
        request: DecideRequest,
        expires_at: DateTime<Utc>,
    },
    LeadEvent {
        at: DateTime<Utc>,
        lead_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broker_id: Option<String>,
        event: EventKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requeue_expires_at: Option<DateTime<Utc>>,
    },
    QueueExpired {
        at: DateTime<Utc>,
        lead_id: String,
    },
    Archived {
        at: DateTime<Utc>,
        lead_ids: Vec<String>,
    },
    ExperimentSaved {
        at: DateTime<Utc>,
        experiment: Experiment,
        status: Status,
    },
    ExperimentStatus {
        at: DateTime<Utc>,
        experiment_id: String,
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<String>,
    },
    ExperimentDeleted {
        at: DateTime<Utc>,
        experiment_id: String,
    },
    ExperimentAllocated {
        at: DateTime<Utc>,
        experiment_id: String,
        shares: Vec<f64>,
    },
    RoutingDefault {
        at: DateTime<Utc>,
        strategy: Strategy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Weights>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment_id: Option<String>,
    },
    /// From `at`, the broker's effective seats are its configured seats less `withheld` (0: no
    /// throttle); `sla_compliance` is the recent compliance that moved it.
    BrokerThrottled {
        at: DateTime<Utc>,
        broker_id: String,
        withheld: u32,
        sla_compliance: f64,
    },
}

/// A routing decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Decision {
    pub decision_id: String,
    pub lead_id: String,
    pub broker_id: String,
    pub lead_state: String,
    pub lead_lines: u8,
    pub status: String,
    pub strategy: Strategy,
    pub score: f64,
    pub breakdown: Breakdown,
    pub alternatives: Vec<Alternative>,
    pub excluded: BTreeMap<Exclusion, u32>,
    pub skipped: Vec<Skipped>,
    pub eligible: u32,
    pub scored: u32,
    pub propensity: f64,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerouted_from: Option<String>,
    pub decided_at: DateTime<Utc>,
    pub accept_deadline: DateTime<Utc>,
    pub sla_target_minutes: u32,
    pub decision_micros: u64,
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<Exposure>,
}

/// A scored broker that was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Alternative {
    pub broker_id: String,
    pub score: f64,
    pub breakdown: Breakdown,
}

/// A candidate's score, factor by factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Breakdown {
    pub specialty: Factor,
    pub performance: Factor,
    pub capacity: Factor,
    pub sla: Factor,
    pub conversion: f64,
    pub conversion_source: String,
    pub value_per_conversion: f64,
    pub avg_first_contact_minutes: f64,
    pub raw_performance: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<RoiTerms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<Adjustments>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticTerms>,
}

/// An experiment's arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Arm {
    pub name: String,
    pub strategy: Strategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    pub allocation: f64,
}

/// An experiment's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub description: String,
    pub arms: Vec<Arm>,
    pub primary_metric: Metric,
    pub guardrail_metrics: Vec<Metric>,
    pub targeting: Targeting,
    pub assignment_key: AssignmentKey,
    pub traffic_allocation: f64,
    pub traffic_offset: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sample_size: Option<u64>,
    pub duration_days: f64,
    pub minimum_detectable_effect: f64,
    pub alpha: f64,
    pub power: f64,
    pub analysis: Analysis,
    pub allocation_method: AllocationMethod,
    pub correction: Correction,
    pub auto_conclude: bool,
    pub sequential_tuning: f64,
    pub min_sample_per_arm: u64,
    pub min_arm_share: f64,
    pub burn_in: u64,
    pub layer: String,
    pub exclusive: bool,
    pub salt: String,
}

// ----- from the live types ------------------------------------------------------------------

fn weights(w: &live::Weights) -> Weights {
    Weights { specialty: w.specialty, performance: w.performance, capacity: w.capacity, sla: w.sla, semantic: w.semantic }
}

fn live_weights(w: Weights) -> live::Weights {
    live::Weights { specialty: w.specialty, performance: w.performance, capacity: w.capacity, sla: w.sla, semantic: w.semantic }
}

impl From<&live::Broker> for Broker {
    fn from(b: &live::Broker) -> Self {
        Self { base: b.into(), bio: b.bio.clone() }
    }
}

impl From<Broker> for live::Broker {
    fn from(b: Broker) -> Self {
        Self { bio: b.bio, ..b.base.into() }
    }
}

fn semantic(t: &live::SemanticTerms) -> SemanticTerms {
    SemanticTerms {
        semantic_match: t.semantic_match,
        weight: t.weight,
        contribution: t.contribution,
        similar_leads: t.similar_leads,
        similar_converted: t.similar_converted,
        similar_rate: t.similar_rate,
    }
}

fn live_semantic(t: SemanticTerms) -> live::SemanticTerms {
    live::SemanticTerms {
        semantic_match: t.semantic_match,
        weight: t.weight,
        contribution: t.contribution,
        similar_leads: t.similar_leads,
        similar_converted: t.similar_converted,
        similar_rate: t.similar_rate,
    }
}

impl From<&live::DecideRequest> for DecideRequest {
    fn from(r: &live::DecideRequest) -> Self {
        Self {
            lead_id: r.lead_id.clone(),
            lead_data: (&r.lead_data).into(),
            exclude_brokers: r.exclude_brokers.clone(),
            require_specialties: r.require_specialties.iter().map(|&l| l.into()).collect(),
            strategy: r.strategy.map(Into::into),
        }
    }
}

impl From<&live::Breakdown> for Breakdown {
    fn from(b: &live::Breakdown) -> Self {
        let f = |x: &live::Factor| Factor { value: x.value, weight: x.weight, contribution: x.contribution };
        Self {
            specialty: f(&b.specialty),
            performance: f(&b.performance),
            capacity: f(&b.capacity),
            sla: f(&b.sla),
            conversion: b.conversion,
            conversion_source: b.conversion_source.clone(),
            value_per_conversion: b.value_per_conversion,
            avg_first_contact_minutes: b.avg_first_contact_minutes,
            raw_performance: b.raw_performance,
            roi: b.roi.map(|t| RoiTerms {
                value: t.value,
                expected_value: t.expected_value,
                cost: t.cost,
                seat_price: t.seat_price,
                load: t.load,
                optimism: t.optimism,
            }),
            adjustments: b.adjustments.map(|a| Adjustments { fairness: a.fairness, overload: a.overload }),
            semantic: b.semantic.as_ref().map(semantic),
        }
    }
}

impl From<&super::Record> for Record {
    fn from(r: &super::Record) -> Self {
        use super::Record as R;
        match r {
            R::BrokerUpserted { at, broker } => Self::BrokerUpserted { at: *at, broker: broker.into() },
            R::BrokerDeleted { at, broker_id } => Self::BrokerDeleted { at: *at, broker_id: broker_id.clone() },
            R::Decided { at, decision, request } => {
                Self::Decided { at: *at, decision: decision.clone(), request: request.as_deref().map(Into::into) }
            }
            R::Queued { at, request, expires_at } => Self::Queued { at: *at, request: (&**request).into(), expires_at: *expires_at },
            R::LeadEvent { at, lead_id, broker_id, event, value, requeue_expires_at } => Self::LeadEvent {
                at: *at,
                lead_id: lead_id.clone(),
                broker_id: broker_id.clone(),
                event: (*event).into(),
                value: *value,
                requeue_expires_at: *requeue_expires_at,
            },
            R::QueueExpired { at, lead_id } => Self::QueueExpired { at: *at, lead_id: lead_id.clone() },
            R::Archived { at, lead_ids } => Self::Archived { at: *at, lead_ids: lead_ids.clone() },
            R::ExperimentSaved { at, definition, status } => {
                Self::ExperimentSaved { at: *at, experiment: (&**definition).into(), status: (*status).into() }
            }
            R::ExperimentStatus { at, experiment_id, status, winner } => {
                Self::ExperimentStatus { at: *at, experiment_id: experiment_id.clone(), status: (*status).into(), winner: winner.clone() }
            }
            R::ExperimentDeleted { at, experiment_id } => Self::ExperimentDeleted { at: *at, experiment_id: experiment_id.clone() },
            R::ExperimentAllocated { at, experiment_id, shares } => {
                Self::ExperimentAllocated { at: *at, experiment_id: experiment_id.clone(), shares: shares.clone() }
            }
            R::RoutingDefault { at, plan, experiment_id } => Self::RoutingDefault {
                at: *at,
                strategy: plan.strategy.into(),
                weights: plan.weights.as_ref().map(weights),
                model_version: plan.model_version.clone(),
                experiment_id: experiment_id.clone(),
            },
            R::BrokerThrottled { at, broker_id, withheld, sla_compliance } => {
                Self::BrokerThrottled { at: *at, broker_id: broker_id.clone(), withheld: *withheld, sla_compliance: *sla_compliance }
            }
        }
    }
}

impl From<&lx::Definition> for Experiment {
    fn from(d: &lx::Definition) -> Self {
        Self {
            id: d.id.clone(),
            name: d.name.clone(),
            description: d.description.clone(),
            arms: d
                .arms
                .iter()
                .map(|a| Arm {
                    name: a.name.clone(),
                    strategy: a.strategy.into(),
                    weights: a.weights.as_ref().map(weights),
                    model_version: a.model_version.clone(),
                    allocation: a.allocation,
                })
                .collect(),
            primary_metric: d.primary_metric.into(),
            guardrail_metrics: d.guardrail_metrics.iter().map(|&m| m.into()).collect(),
            targeting: Targeting {
                states: d.targeting.states.clone(),
                lines: d.targeting.lines.iter().map(|&l| l.into()).collect(),
                urgency: d.targeting.urgency.iter().map(|&u| u.into()).collect(),
                min_value: d.targeting.min_value,
                max_value: d.targeting.max_value,
            },
            assignment_key: d.assignment_key.into(),
            traffic_allocation: d.traffic_allocation,
            traffic_offset: d.traffic_offset,
            target_sample_size: d.target_sample_size,
            duration_days: d.duration_days,
            minimum_detectable_effect: d.minimum_detectable_effect,
            alpha: d.alpha,
            power: d.power,
            analysis: d.analysis.into(),
            allocation_method: d.allocation_method.into(),
            correction: d.correction.into(),
            auto_conclude: d.auto_conclude,
            sequential_tuning: d.sequential_tuning,
            min_sample_per_arm: d.min_sample_per_arm,
            min_arm_share: d.min_arm_share,
            burn_in: d.burn_in,
            layer: d.layer.clone(),
            exclusive: d.exclusive,
            salt: d.salt.clone(),
        }
    }
}

impl From<&super::Decision> for Decision {
    fn from(d: &super::Decision) -> Self {
        Self {
            decision_id: d.decision_id.clone(),
            lead_id: d.lead_id.clone(),
            broker_id: d.broker_id.clone(),
            lead_state: d.lead_state.clone(),
            lead_lines: d.lead_lines.0,
            status: d.status.clone(),
            strategy: d.strategy.into(),
            score: d.score,
            breakdown: (&d.breakdown).into(),
            alternatives: d
                .alternatives
                .iter()
                .map(|a| Alternative { broker_id: a.broker_id.clone(), score: a.score, breakdown: (&a.breakdown).into() })
                .collect(),
            excluded: d.excluded.iter().map(|(k, v)| ((*k).into(), *v)).collect(),
            skipped: d.skipped.iter().map(|s| Skipped { broker_id: s.broker_id.clone(), reason: s.reason.clone() }).collect(),
            eligible: d.eligible,
            scored: d.scored,
            propensity: d.propensity,
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
                .map(|e| Exposure { experiment_id: e.experiment_id.clone(), arm: e.arm.clone(), probability: e.probability })
                .collect(),
        }
    }
}

// ----- to the live types --------------------------------------------------------------------

impl From<DecideRequest> for live::DecideRequest {
    fn from(r: DecideRequest) -> Self {
        let strategy = r.strategy.map(Into::into);
        // Everything but the strategy is version 1's, which converts it.
        let v1 = super::v1::DecideRequest {
            lead_id: r.lead_id,
            lead_data: r.lead_data,
            exclude_brokers: r.exclude_brokers,
            require_specialties: r.require_specialties,
            strategy: None,
        };
        Self { strategy, ..v1.into() }
    }
}

impl From<Breakdown> for live::Breakdown {
    fn from(b: Breakdown) -> Self {
        let f = |x: Factor| live::Factor { value: x.value, weight: x.weight, contribution: x.contribution };
        Self {
            specialty: f(b.specialty),
            performance: f(b.performance),
            capacity: f(b.capacity),
            sla: f(b.sla),
            conversion: b.conversion,
            conversion_source: b.conversion_source,
            value_per_conversion: b.value_per_conversion,
            avg_first_contact_minutes: b.avg_first_contact_minutes,
            raw_performance: b.raw_performance,
            roi: b.roi.map(|t| live::RoiTerms {
                value: t.value,
                expected_value: t.expected_value,
                cost: t.cost,
                seat_price: t.seat_price,
                load: t.load,
                optimism: t.optimism,
            }),
            adjustments: b.adjustments.map(|a| live::Adjustments { fairness: a.fairness, overload: a.overload }),
            semantic: b.semantic.map(live_semantic),
        }
    }
}

impl From<Record> for super::Record {
    fn from(r: Record) -> Self {
        match r {
            Record::BrokerUpserted { at, broker } => Self::BrokerUpserted { at, broker: broker.into() },
            Record::BrokerDeleted { at, broker_id } => Self::BrokerDeleted { at, broker_id },
            Record::Decided { at, decision, request } => Self::Decided { at, decision, request: request.map(|r| Arc::new(r.into())) },
            Record::Queued { at, request, expires_at } => Self::Queued { at, request: Arc::new(request.into()), expires_at },
            Record::LeadEvent { at, lead_id, broker_id, event, value, requeue_expires_at } => {
                Self::LeadEvent { at, lead_id, broker_id, event: event.into(), value, requeue_expires_at }
            }
            Record::QueueExpired { at, lead_id } => Self::QueueExpired { at, lead_id },
            Record::Archived { at, lead_ids } => Self::Archived { at, lead_ids },
            Record::ExperimentSaved { at, experiment, status } => {
                Self::ExperimentSaved { at, definition: Arc::new(experiment.into()), status: status.into() }
            }
            Record::ExperimentStatus { at, experiment_id, status, winner } => {
                Self::ExperimentStatus { at, experiment_id, status: status.into(), winner }
            }
            Record::ExperimentDeleted { at, experiment_id } => Self::ExperimentDeleted { at, experiment_id },
            Record::ExperimentAllocated { at, experiment_id, shares } => Self::ExperimentAllocated { at, experiment_id, shares },
            Record::RoutingDefault { at, strategy, weights, model_version, experiment_id } => Self::RoutingDefault {
                at,
                plan: super::RoutingPlan { strategy: strategy.into(), weights: weights.map(live_weights), model_version },
                experiment_id,
            },
            Record::BrokerThrottled { at, broker_id, withheld, sla_compliance } => {
                Self::BrokerThrottled { at, broker_id, withheld, sla_compliance }
            }
        }
    }
}

impl From<Experiment> for lx::Definition {
    fn from(e: Experiment) -> Self {
        Self {
            id: e.id,
            name: e.name,
            description: e.description,
            arms: e
                .arms
                .into_iter()
                .map(|a| lx::ArmSpec {
                    name: a.name,
                    strategy: a.strategy.into(),
                    weights: a.weights.map(live_weights),
                    model_version: a.model_version,
                    allocation: a.allocation,
                })
                .collect(),
            primary_metric: e.primary_metric.into(),
            guardrail_metrics: e.guardrail_metrics.into_iter().map(Into::into).collect(),
            targeting: lx::Targeting {
                states: e.targeting.states,
                lines: e.targeting.lines.into_iter().map(Into::into).collect(),
                urgency: e.targeting.urgency.into_iter().map(Into::into).collect(),
                min_value: e.targeting.min_value,
                max_value: e.targeting.max_value,
            },
            assignment_key: e.assignment_key.into(),
            traffic_allocation: e.traffic_allocation,
            traffic_offset: e.traffic_offset,
            target_sample_size: e.target_sample_size,
            duration_days: e.duration_days,
            minimum_detectable_effect: e.minimum_detectable_effect,
            alpha: e.alpha,
            power: e.power,
            analysis: e.analysis.into(),
            allocation_method: e.allocation_method.into(),
            correction: e.correction.into(),
            auto_conclude: e.auto_conclude,
            sequential_tuning: e.sequential_tuning,
            min_sample_per_arm: e.min_sample_per_arm,
            min_arm_share: e.min_arm_share,
            burn_in: e.burn_in,
            layer: e.layer,
            exclusive: e.exclusive,
            salt: e.salt,
        }
    }
}

impl From<Decision> for super::Decision {
    fn from(d: Decision) -> Self {
        Self {
            decision_id: d.decision_id,
            lead_id: d.lead_id,
            broker_id: d.broker_id,
            lead_state: d.lead_state,
            lead_lines: live::LineSet(d.lead_lines),
            status: d.status,
            strategy: d.strategy.into(),
            score: d.score,
            breakdown: d.breakdown.into(),
            alternatives: d
                .alternatives
                .into_iter()
                .map(|a| super::Alternative { broker_id: a.broker_id, score: a.score, breakdown: a.breakdown.into() })
                .collect(),
            excluded: d.excluded.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            skipped: d.skipped.into_iter().map(|s| super::Skipped { broker_id: s.broker_id, reason: s.reason }).collect(),
            eligible: d.eligible,
            scored: d.scored,
            propensity: d.propensity,
            attempt: d.attempt,
            rerouted_from: d.rerouted_from,
            decided_at: d.decided_at,
            accept_deadline: d.accept_deadline,
            sla_target_minutes: d.sla_target_minutes,
            decision_micros: d.decision_micros,
            model_version: d.model_version,
            experiments: d
                .experiments
                .into_iter()
                .map(|e| super::Exposure { experiment_id: e.experiment_id, arm: e.arm, probability: e.probability })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Reading a stored record with these types, or into the live types, and writing it again
    /// gives the same bytes.
    #[test]
    fn every_stored_record_round_trips_byte_for_byte() {
        let records = super::super::fixture_records(4);
        assert_eq!(records.len(), 42);
        let mut kinds = std::collections::BTreeSet::new();
        let (mut semantic, mut evidence, mut bios, mut weights) = (0, 0, 0, 0);
        for json in &records {
            let rec: super::Record = serde_json::from_slice(json).unwrap();
            assert_eq!(String::from_utf8_lossy(&serde_json::to_vec(&rec).unwrap()), String::from_utf8_lossy(json));
            let rec: super::super::Record = serde_json::from_slice(json).unwrap();
            assert_eq!(String::from_utf8_lossy(&serde_json::to_vec(&rec).unwrap()), String::from_utf8_lossy(json));
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            kinds.insert(v["type"].as_str().unwrap().to_string());
            let t = &v["decision"]["breakdown"]["semantic"];
            semantic += usize::from(t.is_object());
            evidence += usize::from(t["similarLeads"].as_u64().is_some_and(|n| n > 0));
            bios += usize::from(v["broker"]["bio"].is_string());
            weights += v["experiment"]["arms"].as_array().map_or(0, |a| a.iter().filter(|a| a["weights"]["semantic"].is_number()).count());
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!((semantic, evidence, bios, weights), (11, 3, 3, 1));
    }
}
