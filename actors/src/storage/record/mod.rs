//! Journal records and the decision documents they carry: the live types the engine works
//! with. What the journal writes is the frozen format of [`v5`] (a superset of [`v4`], itself of [`v3`], which is
//! a superset of [`v2`], itself a superset of [`v1`], so journals of every version read back); `Record` and `SharedDecision` serialize and
//! deserialize through it, so the live types may change without changing what an old journal
//! means.
//!
//! A record states a fact that already happened (a reservation taken, an event accepted); replay
//! applies facts without re-deciding, so replayed state equals live state.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use leadrouter_models::experiment::{Definition, Status};
use leadrouter_models::{Breakdown, Broker, DecideRequest, EventKind, Exclusion, LineSet, Strategy, Weights};
use serde::{Deserialize, Serialize};

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
pub mod v5;

/// A scored broker that was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = LoggedAlternative)]
#[serde(rename_all = "camelCase")]
pub struct Alternative {
    /// Broker id.
    pub broker_id: String,
    /// Total score.
    pub score: f64,
    /// Factors.
    pub breakdown: Breakdown,
    /// With exploration: the probability that it would have been picked instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// A candidate that did not answer the score request in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = LoggedSkipped)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Broker id.
    pub broker_id: String,
    /// `deadline` or `mailbox`.
    pub reason: String,
}

/// A routing decision: who got the lead and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = LoggedDecision)]
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
    pub lead_lines: LineSet,
    /// Always `assigned` for a decision.
    pub status: String,
    /// Strategy used.
    pub strategy: Strategy,
    /// Winner's total score.
    pub score: f64,
    /// Winner's factors.
    pub breakdown: Breakdown,
    /// Next-best scored brokers, best first.
    pub alternatives: Vec<Alternative>,
    /// Brokers ruled out, counted per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Candidates that missed the scoring deadline.
    pub skipped: Vec<Skipped>,
    /// Brokers that passed the hard constraints.
    pub eligible: u32,
    /// Brokers scored (the top K after pre-rank).
    pub scored: u32,
    /// Probability with which this broker was chosen (1 for deterministic strategies).
    pub propensity: f64,
    /// 1 for the first assignment, then one more per re-route.
    pub attempt: u32,
    /// Broker that had the lead before a re-route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// The experiments this decision is an exposure of (the lead's first decision only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<Exposure>,
    /// The exploration this decision was drawn with (its band filled in); absent for a
    /// deterministic choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<leadrouter_models::Exploration>,
}

/// A decision's exposure to one experiment: the arm the lead was assigned to, and how likely
/// that assignment was for a lead the experiment targets (traffic share × arm share).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = LoggedExposure)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// The experiment.
    pub experiment_id: String,
    /// The arm.
    pub arm: String,
    /// Probability of this assignment.
    pub probability: f64,
}

/// How leads are routed when nothing else says: the strategy, and optionally its weights and
/// model version (set by an experiment's rollout).
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingPlan {
    /// Strategy.
    pub strategy: Strategy,
    /// Weights; the strategy's configured weights when absent.
    pub weights: Option<Weights>,
    /// Model version (strategy `ml`); the active model when absent.
    pub model_version: Option<String>,
    /// Exploration; the strategy's configured exploration when absent.
    pub exploration: Option<leadrouter_models::Exploration>,
}

/// A decision as the engine keeps it once made: one copy shared by its journal record, the
/// lead's history, the snapshotter and every view of the lead, serialized once, in the journal's
/// format ([`v5::Decision`]), when the journal writes it, and reused by every snapshot.
///
/// Its `Serialize` writes that cached JSON, which only `serde_json` understands; every
/// serialization in this workspace is `serde_json`. The API answers with its own types.
#[derive(Clone)]
pub struct SharedDecision(Arc<DecisionCell>);

struct DecisionCell {
    decision: Decision,
    json: OnceLock<Box<serde_json::value::RawValue>>,
}

impl SharedDecision {
    /// Shares `decision`.
    pub fn new(decision: Decision) -> Self {
        Self(Arc::new(DecisionCell { decision, json: OnceLock::new() }))
    }

    /// The decision's JSON, written on first use.
    pub fn json(&self) -> &serde_json::value::RawValue {
        // serde_json writes every field of a `Decision` (its map keys are strings; a number that
        // is not finite becomes null), so this cannot fail.
        self.0
            .json
            .get_or_init(|| serde_json::value::to_raw_value(&v5::Decision::from(&self.0.decision)).expect("a decision serializes to JSON"))
    }
}

impl std::ops::Deref for SharedDecision {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        &self.0.decision
    }
}

impl PartialEq for SharedDecision {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.decision == other.0.decision
    }
}

impl std::fmt::Debug for SharedDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.decision.fmt(f)
    }
}

impl Serialize for SharedDecision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedDecision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        v5::Decision::deserialize(d).map(|d| Self::new(d.into()))
    }
}

/// One journal record, as the engine works with it; written and read as [`v5::Record`].
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A broker was created or replaced.
    BrokerUpserted {
        /// When.
        at: DateTime<Utc>,
        /// New configuration.
        broker: Broker,
    },
    /// A broker was deleted.
    BrokerDeleted {
        /// When.
        at: DateTime<Utc>,
        /// Which.
        broker_id: String,
    },
    /// A lead was reserved for a broker.
    Decided {
        /// When.
        at: DateTime<Utc>,
        /// The decision.
        decision: SharedDecision,
        /// The request, the first time the lead is seen.
        request: Option<Arc<DecideRequest>>,
    },
    /// A new lead found no broker and waits in the queue.
    Queued {
        /// When.
        at: DateTime<Utc>,
        /// The request.
        request: Arc<DecideRequest>,
        /// When it leaves the queue unassigned.
        expires_at: DateTime<Utc>,
    },
    /// A lifecycle event.
    LeadEvent {
        /// When it happened.
        at: DateTime<Utc>,
        /// The lead.
        lead_id: String,
        /// The broker holding the lead, if any.
        broker_id: Option<String>,
        /// What happened.
        event: EventKind,
        /// Value for `converted`.
        value: Option<f64>,
        /// For `rejected` and `timed_out`: the lead goes back to the queue until then.
        requeue_expires_at: Option<DateTime<Utc>>,
    },
    /// A queued lead expired.
    QueueExpired {
        /// When.
        at: DateTime<Utc>,
        /// The lead.
        lead_id: String,
    },
    /// Finished leads (closed or expired) leave memory and the snapshot; their history stays
    /// in the journal, and their ids can be decided again as new leads.
    Archived {
        /// When.
        at: DateTime<Utc>,
        /// The leads.
        lead_ids: Vec<String>,
    },
    /// An experiment was created (as a draft, or running).
    ExperimentSaved {
        /// When.
        at: DateTime<Utc>,
        /// Its definition.
        definition: Arc<Definition>,
        /// Its status.
        status: Status,
    },
    /// An experiment changed status.
    ExperimentStatus {
        /// When.
        at: DateTime<Utc>,
        /// Which.
        experiment_id: String,
        /// The new status.
        status: Status,
        /// For `concluded`: the arm declared the winner.
        winner: Option<String>,
    },
    /// A draft experiment was deleted.
    ExperimentDeleted {
        /// When.
        at: DateTime<Utc>,
        /// Which.
        experiment_id: String,
    },
    /// A Thompson-sampling experiment's arm shares changed.
    ExperimentAllocated {
        /// When.
        at: DateTime<Utc>,
        /// Which.
        experiment_id: String,
        /// New shares, one per arm.
        shares: Vec<f64>,
    },
    /// The routing default changed (an experiment's rollout).
    RoutingDefault {
        /// When.
        at: DateTime<Utc>,
        /// The new default.
        plan: RoutingPlan,
        /// The experiment whose winner it is.
        experiment_id: Option<String>,
    },
    /// A broker's effective concurrent capacity changed with its recent SLA compliance
    /// (adaptive throttling): from `at` its effective seats are its configured seats less
    /// `withheld` (at least one); 0 lifts the throttle.
    BrokerThrottled {
        /// When.
        at: DateTime<Utc>,
        /// Which.
        broker_id: String,
        /// Seats withheld from its configured ones.
        withheld: u32,
        /// The recent SLA compliance that moved it.
        sla_compliance: f64,
    },
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        v5::Record::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        v5::Record::deserialize(d).map(Into::into)
    }
}

impl Record {
    /// The broker whose live state this record changes, if any.
    pub fn broker_id(&self) -> Option<&str> {
        match self {
            Record::BrokerUpserted { broker, .. } => Some(&broker.id),
            Record::BrokerDeleted { broker_id, .. } => Some(broker_id),
            Record::Decided { decision, .. } => Some(&decision.broker_id),
            Record::LeadEvent { broker_id, .. } => broker_id.as_deref(),
            Record::BrokerThrottled { broker_id, .. } => Some(broker_id),
            _ => None,
        }
    }

    /// The lead this record concerns, if it concerns exactly one ([`Record::Archived`] names
    /// several).
    pub fn lead_id(&self) -> Option<&str> {
        match self {
            Record::Decided { decision, .. } => Some(&decision.lead_id),
            Record::Queued { request, .. } => Some(&request.lead_id),
            Record::LeadEvent { lead_id, .. } | Record::QueueExpired { lead_id, .. } => Some(lead_id),
            _ => None,
        }
    }
}

/// Every record's JSON in the committed golden segments of journal format `version`
/// (`tests/fixtures/journal-v<version>/`), in order; each frame must carry that version.
#[cfg(test)]
pub(crate) fn fixture_records(version: u8) -> Vec<Vec<u8>> {
    let dir = format!("{}/../tests/fixtures/journal-v{version}/journal", env!("CARGO_MANIFEST_DIR"));
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
            // body = version | sequence number (8) | JSON
            let body = &data[off + 8..off + 8 + len];
            assert_eq!(body[0], version, "format version");
            out.push(body[9..].to_vec());
            off += 8 + len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECISION: &str = r#"{"decisionId":"dec-92173e3e50579243","leadId":"probe-1","brokerId":"lt-00454","leadState":"CA","leadLines":1,"status":"assigned","strategy":"specialty","score":0.9999870826437319,"breakdown":{"specialty":{"value":1.0,"weight":0.4,"contribution":0.4},"performance":{"value":1.0,"weight":0.3,"contribution":0.3},"capacity":{"value":0.999938,"weight":0.2,"contribution":0.19998760000000002},"sla":{"value":0.9999948264373191,"weight":0.1,"contribution":0.09999948264373192},"conversion":5.173562680816016e-06,"conversionSource":"empirical_bayes","valuePerConversion":1200.0,"avgFirstContactMinutes":3.658668495934959,"rawPerformance":0.02545287898442853},"alternatives":[{"brokerId":"lt-00052","score":0.9999862660087325,"breakdown":{"specialty":{"value":1.0,"weight":0.4,"contribution":0.4},"performance":{"value":0.9999972778833351,"weight":0.3,"contribution":0.29999918336500053},"capacity":{"value":0.999938,"weight":0.2,"contribution":0.19998760000000002},"sla":{"value":0.9999948264373191,"weight":0.1,"contribution":0.09999948264373192},"conversion":5.173562680816016e-06,"conversionSource":"empirical_bayes","valuePerConversion":1200.0,"avgFirstContactMinutes":3.6586784552845533,"rawPerformance":0.02545280969872248}}],"excluded":{"atCapacity":2},"skipped":[],"eligible":1000,"scored":8,"propensity":1.0,"attempt":1,"decidedAt":"2026-11-27T04:42:54.685912858Z","acceptDeadline":"2026-11-27T04:52:54.685912858Z","slaTargetMinutes":15,"decisionMicros":443,"modelVersion":null}"#;

    #[test]
    fn a_shared_decision_writes_the_json_the_decision_writes_and_reads_back() {
        let plain: Decision = serde_json::from_str(DECISION).unwrap();
        let shared = SharedDecision::new(plain.clone());
        let expected = serde_json::to_string(&plain).unwrap();
        // Twice: the second comes from the cache.
        assert_eq!(serde_json::to_string(&shared).unwrap(), expected);
        assert_eq!(serde_json::to_string(&shared).unwrap(), expected);
        assert_eq!(serde_json::to_value(&shared).unwrap(), serde_json::to_value(&plain).unwrap());
        // Inside an internally tagged journal record, and back.
        let rec = Record::Decided { at: plain.decided_at, decision: shared.clone(), request: None };
        let json = serde_json::to_string(&rec).unwrap();
        assert!(json.starts_with(r#"{"type":"decided","at":"#), "{json}");
        assert!(json.contains(&expected), "{json}");
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        let Record::Decided { decision, .. } = back else { panic!("not a decision") };
        assert_eq!(*decision, plain);
        // Clones share one decision.
        assert!(std::ptr::eq(&*shared.clone(), &*shared));
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Every golden record of every format version, with a byte changed, cut or doubled,
        /// decodes or is refused: never a panic.
        #[test]
        fn damaged_records_of_every_version_decode_or_are_refused(
            version in 1u8..=5,
            which in proptest::prelude::any::<usize>(),
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
            how in 0u8..3,
        ) {
            let records = fixture_records(version);
            let mut json = records[which % records.len()].clone();
            let i = at % json.len();
            match how {
                0 => json[i] = byte,
                1 => json.truncate(i),
                _ => { let tail = json[i..].to_vec(); json.extend_from_slice(&tail); }
            }
            if let Ok(rec) = serde_json::from_slice::<Record>(&json) {
                // What decodes writes back and reads again as the same record.
                let again: Record = serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
                proptest::prop_assert_eq!(again, rec);
            }
        }
    }
}
