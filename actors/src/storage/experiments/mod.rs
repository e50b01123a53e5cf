//! Experiments as records build them: the catalogue (definitions, status, arm shares, the
//! routing default) and the [`book`] of per-arm totals that follows the journal.
//!
//! The catalogue is applied by two owners from the same records: the router (synchronously,
//! after its own appends, so a status change takes effect before the request answers; see
//! `crate::experiments`) and the book (as it follows the journal).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::experiment::{AllocationMethod, Definition, Status};
use serde::{Deserialize, Serialize};

use crate::storage::record::{Record, RoutingPlan};

pub mod book;

pub use book::{Book, SharedBook};

/// One experiment in the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The definition.
    pub definition: Arc<Definition>,
    /// Status.
    pub status: Status,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it first started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last started running (to add to `running_seconds`).
    pub resumed_at: Option<DateTime<Utc>>,
    /// Seconds spent running before `resumed_at`.
    pub running_seconds: f64,
    /// When it was concluded.
    pub concluded_at: Option<DateTime<Utc>>,
    /// The declared winner.
    pub winner: Option<String>,
    /// Current arm shares (the planned allocation until a Thompson update).
    pub shares: Vec<f64>,
    /// Thompson updates so far.
    pub allocation_updates: u32,
}

impl Entry {
    /// Days spent running up to `now`.
    pub fn running_days(&self, now: DateTime<Utc>) -> f64 {
        let open = match (self.status, self.resumed_at) {
            (Status::Running, Some(r)) => (now - r).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        (self.running_seconds + open) / 86_400.0
    }
}

/// Every experiment, and the routing default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Experiments by id.
    pub entries: BTreeMap<String, Entry>,
    /// The default set by the last rollout, if any (else the configured default strategy).
    pub default: Option<RoutingPlanDoc>,
}

/// [`RoutingPlan`] as a snapshot stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingPlanDoc {
    /// Strategy.
    pub strategy: leadrouter_models::Strategy,
    /// Weights.
    pub weights: Option<leadrouter_models::Weights>,
    /// Model version.
    pub model_version: Option<String>,
    /// Exploration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<leadrouter_models::Exploration>,
    /// The experiment whose rollout set it.
    pub experiment_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl RoutingPlanDoc {
    /// As a plan.
    pub fn plan(&self) -> RoutingPlan {
        RoutingPlan {
            strategy: self.strategy,
            weights: self.weights,
            model_version: self.model_version.clone(),
            exploration: self.exploration,
        }
    }
}

impl Catalog {
    /// Applies a record; true when it changed the catalogue.
    pub fn apply(&mut self, rec: &Record) -> bool {
        match rec {
            Record::ExperimentSaved { at, definition, status } => {
                let running = *status == Status::Running;
                self.entries.insert(
                    definition.id.clone(),
                    Entry {
                        definition: definition.clone(),
                        status: *status,
                        created_at: *at,
                        started_at: running.then_some(*at),
                        resumed_at: running.then_some(*at),
                        running_seconds: 0.0,
                        concluded_at: None,
                        winner: None,
                        // Thompson sampling starts from equal shares (its burn-in); a fixed
                        // allocation keeps the planned ones.
                        shares: match definition.allocation_method {
                            AllocationMethod::Thompson => vec![1.0 / definition.arms.len() as f64; definition.arms.len()],
                            AllocationMethod::Fixed => definition.planned(),
                        },
                        allocation_updates: 0,
                    },
                );
            }
            Record::ExperimentStatus { at, experiment_id, status, winner } => {
                let Some(e) = self.entries.get_mut(experiment_id) else { return false };
                if let (Status::Running, Some(r)) = (e.status, e.resumed_at) {
                    e.running_seconds += (*at - r).num_milliseconds().max(0) as f64 / 1000.0;
                }
                e.resumed_at = None;
                match status {
                    Status::Running => {
                        e.started_at.get_or_insert(*at);
                        e.resumed_at = Some(*at);
                    }
                    Status::Concluded => {
                        e.concluded_at = Some(*at);
                        e.winner = winner.clone();
                    }
                    Status::Draft | Status::Paused => {}
                }
                e.status = *status;
            }
            Record::ExperimentDeleted { experiment_id, .. } => {
                self.entries.remove(experiment_id);
            }
            Record::ExperimentAllocated { experiment_id, shares, .. } => {
                let Some(e) = self.entries.get_mut(experiment_id) else { return false };
                if shares.len() == e.shares.len() {
                    e.shares = shares.clone();
                    e.allocation_updates += 1;
                }
            }
            Record::RoutingDefault { at, plan, experiment_id } => {
                self.default = Some(RoutingPlanDoc {
                    strategy: plan.strategy,
                    weights: plan.weights,
                    model_version: plan.model_version.clone(),
                    exploration: plan.exploration,
                    experiment_id: experiment_id.clone(),
                    at: *at,
                });
            }
            _ => return false,
        }
        true
    }
}
