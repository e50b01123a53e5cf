//! Journal format version 2: version 1 plus experiments. A decision may name the experiments
//! it was an exposure of, and five record types hold the experiments' life: saved, status,
//! deleted, allocation, and the routing default a rollout sets.
//!
//! Every version-1 record is a version-2 record with the same bytes: the payload types are
//! version 1's own ([`super::v1`]), and a decision without exposures writes no `experiments`
//! key. So one decoder reads both versions, and the version-1 fixture replays unchanged.
//! These types are a stored format, frozen like version 1's; `tests/fixtures/journal-v2/`
//! holds segments written in it. The journal now writes [version 3](super::v3), a superset of
//! this one that reads version-2 records itself: these types stay for the fixture test below,
//! and version 3 reuses the payload types that did not change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
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

#[cfg(test)]
mod tests {
    /// Reading a stored record with these types and writing it again gives the same bytes (the
    /// types are what version 2 wrote); so does reading it into the live types and writing it
    /// in the current version.
    #[test]
    fn every_stored_record_round_trips_byte_for_byte() {
        let records = super::super::fixture_records(2);
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
