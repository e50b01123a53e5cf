//! Experiments in the live engine. The catalogue and the book of per-arm totals are built from
//! records in `storage::experiments` (re-exported here); this module holds what the decision
//! path sees: the running ones, in creation order, each with its
//! traffic range and current arm shares, and the routing default; replaced whole (an `Arc`
//! swap) when anything changes, so a decision reads them without waiting.
//!
//! A lead enters a running experiment when it is targeted, has the assignment key, and its
//! traffic point falls in the experiment's range. Exclusive experiments of one layer hash the
//! key with the layer's salt and hold disjoint ranges, so they never share a lead; an
//! independent experiment hashes with its own salt. The arm comes from a second point, hashed
//! with the experiment's salt, against the cumulative shares.

use std::sync::Arc;

use leadrouter_models::experiment::assign::{arm_at, point};
use leadrouter_models::experiment::{AssignmentKey, Definition, Status};
use leadrouter_models::{DecideRequest, LeadFeatures};
use parking_lot::{Mutex, RwLock};

pub use crate::storage::experiments::{Book, Catalog, Entry, RoutingPlanDoc, SharedBook};
use crate::storage::record::{Exposure, Record, RoutingPlan};

/// A running experiment, as the decision path reads it.
pub struct Running {
    /// The definition.
    pub definition: Arc<Definition>,
    /// The salt the traffic point is hashed with: the layer's, or the experiment's own.
    traffic_salt: String,
    /// Current shares.
    pub shares: Vec<f64>,
}

/// Where a lead falls in one running experiment.
pub struct Assignment<'a> {
    /// The experiment.
    pub definition: &'a Arc<Definition>,
    /// The arm's index.
    pub arm: usize,
    /// The exposure to log.
    pub exposure: Exposure,
}

impl Running {
    /// The arm `req` is assigned to, if it enters the experiment.
    pub fn assign(&self, req: &DecideRequest, lead: &LeadFeatures) -> Option<Assignment<'_>> {
        let d = &self.definition;
        if !d.targeting.admits(lead) {
            return None;
        }
        let key = match d.assignment_key {
            AssignmentKey::LeadId => req.lead_id.as_str(),
            AssignmentKey::CustomerId => req.lead_data.customer_id.as_deref().filter(|c| !c.is_empty())?,
        };
        let u = point(&self.traffic_salt, "traffic", key);
        if u < d.traffic_offset || u >= d.traffic_offset + d.traffic_allocation {
            return None;
        }
        let arm = arm_at(&self.shares, point(&d.salt, "arm", key));
        Some(Assignment {
            definition: d,
            arm,
            exposure: Exposure {
                experiment_id: d.id.clone(),
                arm: d.arms[arm].name.clone(),
                probability: d.traffic_allocation * self.shares[arm],
            },
        })
    }
}

/// The salt of a layer's traffic points.
pub fn layer_salt(layer: &str) -> String {
    format!("layer:{layer}")
}

/// The catalogue the router owns, and what the decision path reads of it.
#[derive(Default)]
pub struct Live {
    catalog: Mutex<Catalog>,
    running: RwLock<Arc<Vec<Running>>>,
    default: RwLock<Option<RoutingPlan>>,
}

impl Live {
    /// Starts from a replayed catalogue.
    pub fn new(catalog: Catalog) -> Self {
        let me = Self::default();
        *me.catalog.lock() = catalog;
        me.publish();
        me
    }

    /// Applies a record the router has journaled.
    pub fn apply(&self, rec: &Record) {
        if self.catalog.lock().apply(rec) {
            self.publish();
        }
    }

    fn publish(&self) {
        let c = self.catalog.lock();
        let mut running: Vec<&Entry> = c.entries.values().filter(|e| e.status == Status::Running).collect();
        running.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.definition.id.cmp(&b.definition.id)));
        let list = running
            .into_iter()
            .map(|e| Running {
                definition: e.definition.clone(),
                traffic_salt: if e.definition.exclusive { layer_salt(&e.definition.layer) } else { e.definition.salt.clone() },
                shares: e.shares.clone(),
            })
            .collect();
        *self.running.write() = Arc::new(list);
        *self.default.write() = c.default.as_ref().map(|d| d.plan());
    }

    /// The running experiments.
    pub fn running(&self) -> Arc<Vec<Running>> {
        self.running.read().clone()
    }

    /// The default set by a rollout, if any.
    pub fn default_plan(&self) -> Option<RoutingPlan> {
        self.default.read().clone()
    }

    /// A copy of the catalogue.
    pub fn catalog(&self) -> Catalog {
        self.catalog.lock().clone()
    }

    /// One experiment.
    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.catalog.lock().entries.get(id).cloned()
    }
}
