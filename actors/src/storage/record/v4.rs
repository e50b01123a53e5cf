//! Journal format version 4: version 3 plus semantic matching. A broker may carry a `bio`;
//! a strategy's weights may carry a `semantic` weight; a score's breakdown may carry its
//! `semantic` terms (the match of the lead's text and the broker's profile, and the
//! similar-lead evidence).
//!
//! Every version-3 record is a version-4 record with the same bytes: the new fields are
//! optional and written only when present, and the payload types that did not change are
//! version 3's, 2's and 1's own. So one decoder reads every version, and every older fixture
//! replays and round-trips unchanged. These types are a stored format, frozen like the older
//! ones; `tests/fixtures/journal-v4/` holds segments written in it. Version 5 reuses the
//! payload types that did not change and reads these records itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadrouter_models as live;
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

pub(super) fn weights(w: &live::Weights) -> Weights {
    Weights { specialty: w.specialty, performance: w.performance, capacity: w.capacity, sla: w.sla, semantic: w.semantic }
}

pub(super) fn live_weights(w: Weights) -> live::Weights {
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

// ----- to the live types --------------------------------------------------------------------

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
