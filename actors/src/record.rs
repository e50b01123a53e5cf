//! Journal records and the decision documents they carry.
//!
//! A record states a fact that already happened (a reservation taken, an event accepted); replay
//! applies facts without re-deciding, so replayed state equals live state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadrouter_models::{Breakdown, Broker, DecideRequest, EventKind, Exclusion, LineSet, Strategy};
use serde::{Deserialize, Serialize};

/// A scored broker that was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alternative {
    /// Broker id.
    pub broker_id: String,
    /// Total score.
    pub score: f64,
    /// Factors.
    pub breakdown: Breakdown,
}

/// A candidate that did not answer the score request in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Broker id.
    pub broker_id: String,
    /// `deadline` or `mailbox`.
    pub reason: String,
}

/// A routing decision: who got the lead and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
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
        decision: Box<Decision>,
        /// The request, the first time the lead is seen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Box<DecideRequest>>,
    },
    /// A new lead found no broker and waits in the queue.
    Queued {
        /// When.
        at: DateTime<Utc>,
        /// The request.
        request: Box<DecideRequest>,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broker_id: Option<String>,
        /// What happened.
        event: EventKind,
        /// Value for `converted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// For `rejected` and `timed_out`: the lead goes back to the queue until then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
}

impl Record {
    /// The broker whose live state this record changes, if any.
    pub fn broker_id(&self) -> Option<&str> {
        match self {
            Record::BrokerUpserted { broker, .. } => Some(&broker.id),
            Record::BrokerDeleted { broker_id, .. } => Some(broker_id),
            Record::Decided { decision, .. } => Some(&decision.broker_id),
            Record::LeadEvent { broker_id, .. } => broker_id.as_deref(),
            Record::Queued { .. } | Record::QueueExpired { .. } | Record::Archived { .. } => None,
        }
    }

    /// The lead this record concerns, if it concerns exactly one ([`Record::Archived`] names
    /// several).
    pub fn lead_id(&self) -> Option<&str> {
        match self {
            Record::Decided { decision, .. } => Some(&decision.lead_id),
            Record::Queued { request, .. } => Some(&request.lead_id),
            Record::LeadEvent { lead_id, .. } | Record::QueueExpired { lead_id, .. } => Some(lead_id),
            Record::BrokerUpserted { .. } | Record::BrokerDeleted { .. } | Record::Archived { .. } => None,
        }
    }
}
