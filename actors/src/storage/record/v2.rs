//! Journal format version 2: version 1 plus experiments. A decision may name the experiments
//! it was an exposure of, and five record types hold the experiments' life: saved, status,
//! deleted, allocation, and the routing default a rollout sets.
//!
//! Every version-1 record is a version-2 record with the same bytes: the payload types are
//! version 1's own ([`super::v1`]), and a decision without exposures writes no `experiments`
//! key. So one decoder reads both versions, and the version-1 fixture replays unchanged.
//! These types are a stored format, frozen like version 1's; `tests/fixtures/journal-v2/`
//! holds segments written in it. The journal now writes [version 3](super::v3), a superset of
//! this one; the live types no longer convert to these (only the other way, for reading).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models as live;
use leadrouter_models::experiment as lx;
use serde::{Deserialize, Serialize};

use super::v1::{mirror_enum, Alternative, Breakdown, Broker, DecideRequest, EventKind, Exclusion, Line, Skipped, Strategy, Urgency};
use super::SharedDecision;

mirror_enum!(
    /// An experiment metric.
    #[serde(rename_all = "snake_case")]
    Metric = lx::Metric { ConversionRate, RevenuePerLead, SlaCompliance, FirstContactMinutes }
);
mirror_enum!(
    /// What an experiment hashes.
    #[serde(rename_all = "camelCase")]
    AssignmentKey = lx::AssignmentKey { LeadId, CustomerId }
);
mirror_enum!(
    /// Fixed or sequential analysis.
    #[serde(rename_all = "snake_case")]
    Analysis = lx::Analysis { Fixed, Sequential }
);
mirror_enum!(
    /// How traffic is split.
    #[serde(rename_all = "snake_case")]
    AllocationMethod = lx::AllocationMethod { Fixed, Thompson }
);
mirror_enum!(
    /// Multiple-testing correction.
    #[serde(rename_all = "snake_case")]
    Correction = lx::Correction { Holm, BenjaminiHochberg, None }
);
mirror_enum!(
    /// An experiment's status.
    #[serde(rename_all = "snake_case")]
    Status = lx::Status { Draft, Running, Paused, Concluded }
);

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

/// A decision's exposure to one experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Exposure {
    pub experiment_id: String,
    pub arm: String,
    pub probability: f64,
}

/// Factor weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Weights {
    pub specialty: f64,
    pub performance: f64,
    pub capacity: f64,
    pub sla: f64,
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

/// An arm.
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

/// Targeting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Targeting {
    pub states: Vec<String>,
    pub lines: Vec<Line>,
    pub urgency: Vec<Urgency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
}

// ----- to the live types --------------------------------------------------------------------

fn live_weights(w: Weights) -> live::Weights {
    live::Weights { specialty: w.specialty, performance: w.performance, capacity: w.capacity, sla: w.sla }
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
    /// Every record's JSON in the committed version-2 segments, in order.
    fn fixture_records() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/journal-v2/journal");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let data = std::fs::read(f).unwrap();
            assert_eq!(&data[..8], b"LRJOURN1");
            let mut off = 8;
            while off + 8 <= data.len() {
                let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
                if len == 0 {
                    break;
                }
                // body = version (2) | sequence number (8) | JSON
                let body = &data[off + 8..off + 8 + len];
                assert_eq!(body[0], 2, "format version");
                out.push(body[9..].to_vec());
                off += 8 + len;
            }
        }
        out
    }

    /// Reading a stored record with these types and writing it again gives the same bytes (the
    /// types are what version 2 wrote); so does reading it into the live types and writing it
    /// in the current version.
    #[test]
    fn every_stored_record_round_trips_byte_for_byte() {
        let records = fixture_records();
        assert_eq!(records.len(), 130);
        let mut kinds = std::collections::BTreeSet::new();
        for json in &records {
            let rec: super::Record = serde_json::from_slice(json).unwrap();
            let again = serde_json::to_vec(&rec).unwrap();
            assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(json));
            let rec: super::super::Record = serde_json::from_slice(json).unwrap();
            let again = serde_json::to_vec(&rec).unwrap();
            assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(json));
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            kinds.insert(v["type"].as_str().unwrap().to_string());
        }
        let new = ["experiment_allocated", "experiment_deleted", "experiment_saved", "experiment_status", "routing_default"];
        assert!(new.iter().all(|k| kinds.contains(*k)), "{kinds:?}");
    }
}
