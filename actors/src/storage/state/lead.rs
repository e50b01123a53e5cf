//! One lead's history (`LeadRecord`): its request, state, decisions and events, as records are
//! applied to it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::{DecideRequest, EventKind, LeadState};
use serde::{Deserialize, Serialize};

use crate::storage::record::{Decision, Record, SharedDecision};

/// One lifecycle event as kept in a lead's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadEventEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: EventKind,
    /// The broker holding the lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_id: Option<String>,
    /// Value for `converted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Everything known about one lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadRecord {
    /// The lead id.
    pub lead_id: String,
    /// The original request.
    #[schema(value_type = DecideRequest)]
    pub request: Arc<DecideRequest>,
    /// Current state.
    pub state: LeadState,
    /// Broker holding the lead (none while queued or after it ended unassigned).
    pub broker_id: Option<String>,
    /// When the lead was first decided.
    pub created_at: DateTime<Utc>,
    /// When it last entered the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When it leaves the queue unassigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Brokers that held the lead and gave it back (not offered again).
    pub tried: Vec<String>,
    /// Every decision, oldest first.
    #[schema(value_type = Vec<Decision>)]
    pub decisions: Vec<SharedDecision>,
    /// Every lifecycle event, oldest first.
    pub events: Vec<LeadEventEntry>,
}

impl LeadRecord {
    /// A record for a lead seen for the first time.
    pub fn new(request: Arc<DecideRequest>, at: DateTime<Utc>) -> Self {
        Self {
            lead_id: request.lead_id.clone(),
            request,
            state: LeadState::Queued,
            broker_id: None,
            created_at: at,
            queued_at: None,
            expires_at: None,
            tried: Vec::new(),
            decisions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Builds the record from a first record about the lead (`Decided` with a request, or `Queued`).
    pub fn from_first(rec: &Record) -> Option<Self> {
        let mut lead = match rec {
            Record::Decided { request: Some(r), at, .. } => Self::new(r.clone(), *at),
            Record::Queued { request, at, .. } => Self::new(request.clone(), *at),
            _ => return None,
        };
        lead.apply(rec);
        Some(lead)
    }

    /// Applies a journal record about this lead.
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Decided { decision, .. } => {
                self.state = LeadState::Reserved;
                self.broker_id = Some(decision.broker_id.clone());
                self.queued_at = None;
                self.expires_at = None;
                self.decisions.push(decision.clone());
            }
            Record::Queued { at, expires_at, .. } => {
                self.state = LeadState::Queued;
                self.queued_at = Some(*at);
                self.expires_at = Some(*expires_at);
            }
            Record::LeadEvent { at, event, broker_id, value, requeue_expires_at, .. } => {
                self.events.push(LeadEventEntry { at: *at, event: *event, broker_id: broker_id.clone(), value: *value });
                match event {
                    EventKind::Rejected | EventKind::TimedOut => {
                        if let Some(b) = self.broker_id.take() {
                            self.tried.push(b);
                        }
                        self.state = LeadState::Queued;
                        self.queued_at = Some(*at);
                        self.expires_at = *requeue_expires_at;
                    }
                    EventKind::Accepted => self.state = LeadState::Accepted,
                    EventKind::Contacted => self.state = LeadState::Contacted,
                    EventKind::Converted => self.state = LeadState::Converted,
                    EventKind::Lost => self.state = LeadState::Lost,
                    EventKind::Closed => {
                        self.state = LeadState::Closed;
                        self.queued_at = None;
                        self.expires_at = None;
                    }
                }
            }
            Record::QueueExpired { .. } => {
                self.state = LeadState::Expired;
                self.queued_at = None;
                self.expires_at = None;
            }
            Record::BrokerUpserted { .. }
            | Record::BrokerDeleted { .. }
            | Record::Archived { .. }
            | Record::ExperimentSaved { .. }
            | Record::ExperimentStatus { .. }
            | Record::ExperimentDeleted { .. }
            | Record::ExperimentAllocated { .. }
            | Record::RoutingDefault { .. }
            | Record::BrokerThrottled { .. } => {}
        }
    }

    /// The last time anything happened to the lead.
    pub fn last_activity(&self) -> DateTime<Utc> {
        let decided = self.decisions.last().map(|d| d.decided_at);
        let event = self.events.last().map(|e| e.at);
        [Some(self.created_at), self.queued_at, decided, event].into_iter().flatten().max().unwrap_or(self.created_at)
    }

    /// The latest decision, if any.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last().map(|d| &**d)
    }
}
