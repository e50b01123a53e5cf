//! Journal format version 3: version 2 plus revenue-optimal routing and adaptive throttling.
//! A strategy may be `roi`; a score's breakdown may carry the `roi` terms and the `adjustments`
//! (fairness, overload) added to it; and `broker_throttled` records a broker's effective
//! concurrent capacity changing with its recent SLA compliance.
//!
//! Every version-2 record is a version-3 record with the same bytes: the new fields are
//! optional and written only when present, and the payload types that did not change are
//! version 2's and version 1's own. So one decoder reads every version, and both older
//! fixtures replay and round-trip unchanged. These types are a stored format, frozen like the
//! older ones; `tests/fixtures/journal-v3/` holds segments written in it. Version 4 reuses the
//! payload types that did not change and reads these records itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadrouter_models as live;
use serde::{Deserialize, Serialize};

use super::v1::{mirror_enum, Broker, EventKind, Exclusion, Factor, LeadData, Line, Skipped};
use super::v2::{AllocationMethod, Analysis, AssignmentKey, Correction, Exposure, Metric, Status, Targeting, Weights};

mirror_enum!(
    /// A routing strategy: version 1's and `roi`.
    #[serde(rename_all = "snake_case")]
    Strategy = live::Strategy { Specialty, Random, RoundRobin, WeightedRoundRobin, Ml, Roi }
);

/// One journal record, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
// Only the fixture test reads records into this type (one at a time); the engine reads version 3
// through version 4's types, which hold the decision behind `SharedDecision`.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    BrokerUpserted {
        at: DateTime<Utc>,
        broker: Broker,
    },
    BrokerDeleted {
        at: DateTime<Utc>,
        broker_id: String,
    },
    Decided {
        at: DateTime<Utc>,
        decision: Decision,
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

/// A decide request as the lead was first seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DecideRequest {
    pub lead_id: String,
    pub lead_data: LeadData,
    #[serde(default)]
    pub exclude_brokers: Vec<String>,
    #[serde(default)]
    pub require_specialties: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
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
}

/// The terms of a `roi` score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RoiTerms {
    pub value: f64,
    pub expected_value: f64,
    pub cost: f64,
    pub seat_price: f64,
    pub load: f64,
    pub optimism: f64,
}

/// What was added to a score for fairness or overload.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Adjustments {
    pub fairness: f64,
    pub overload: f64,
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

#[cfg(test)]
mod tests {
    /// Reading a stored record with these types, or into the live types, and writing it again
    /// gives the same bytes.
    #[test]
    fn every_stored_record_round_trips_byte_for_byte() {
        let records = super::super::fixture_records(3);
        assert_eq!(records.len(), 81);
        let mut kinds = std::collections::BTreeSet::new();
        let mut roi_terms = 0;
        for json in &records {
            let rec: super::Record = serde_json::from_slice(json).unwrap();
            assert_eq!(String::from_utf8_lossy(&serde_json::to_vec(&rec).unwrap()), String::from_utf8_lossy(json));
            let rec: super::super::Record = serde_json::from_slice(json).unwrap();
            assert_eq!(String::from_utf8_lossy(&serde_json::to_vec(&rec).unwrap()), String::from_utf8_lossy(json));
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            kinds.insert(v["type"].as_str().unwrap().to_string());
            roi_terms += usize::from(v["decision"]["breakdown"]["roi"].is_object());
        }
        assert!(kinds.contains("broker_throttled"), "{kinds:?}");
        assert!(roi_terms >= 13, "{roi_terms}");
    }
}
