//! The book: what is kept by following the journal for reports (the snapshotter applies each
//! committed record to it, and snapshots it with the rest of the state): every experiment's
//! per-arm totals, the routing-efficiency ledger (`storage::analytics`) and the fairness window
//! (`models::fairness`). Results, analyses and analytics read it; nothing on the decision path
//! writes it (the supervisor keeps its own fairness window, started from this one).
//!
//! An exposure is a lead's first decision naming the experiment. The book remembers each
//! exposed lead until it is lost, closed or archived, so its later events reach its arm:
//! the first contact (minutes since the decision, within the decision's SLA target or not)
//! and each conversion (its value).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::experiment::ArmTotals;
use leadrouter_models::EventKind;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use leadrouter_models::fairness::Window;
use leadrouter_models::FairnessSettings;

use super::Catalog;
use crate::metrics::Metrics;
use crate::storage::analytics::Ledger;
use crate::storage::record::Record;

/// Applies a record to a fairness window: brokers' groups and first sight, and each decision
/// with its expected value (P(convert) × value per conversion); true when it changed. The
/// supervisor calls it on its own window with the records it commits.
pub fn apply_fairness(w: &mut Window, s: &FairnessSettings, rec: &Record) -> bool {
    match rec {
        Record::BrokerUpserted { at, broker } => {
            w.broker_seen(&broker.id, broker.group.as_deref(), *at);
            true
        }
        Record::BrokerDeleted { broker_id, .. } => {
            w.broker_gone(broker_id);
            true
        }
        Record::Decided { decision, .. } => {
            let b = &decision.breakdown;
            w.record(s, decision.decided_at, &decision.broker_id, b.conversion * b.value_per_conversion);
            true
        }
        _ => false,
    }
}

/// An exposed lead whose outcome may still change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// (experiment, arm index, assignment probability) per exposure.
    pub exposures: Vec<(String, usize, f64)>,
    /// When the lead was decided.
    pub decided_at: DateTime<Utc>,
    /// Its first-contact target.
    pub sla_target_minutes: u32,
    /// Conversion value so far.
    pub value: f64,
    /// Converted already.
    pub converted: bool,
    /// Contacted already.
    pub contacted: bool,
}

/// Per-arm totals of every experiment, at a journal position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// The last record applied.
    pub seq: u64,
    /// The last record that changed the book.
    #[serde(default)]
    pub touched: u64,
    /// The catalogue, as of `seq`.
    pub catalog: Catalog,
    /// Totals per experiment, one per arm.
    pub totals: BTreeMap<String, Vec<ArmTotals>>,
    /// Exposed leads still open.
    pub pending: HashMap<String, Pending>,
    /// Routing-efficiency aggregates.
    #[serde(default)]
    pub ledger: Ledger,
    /// Leads and expected value routed per broker group over the rolling window, with the
    /// fairness prices.
    #[serde(default)]
    pub fairness: Window,
    /// The fairness settings the prices move under.
    #[serde(skip)]
    pub fairness_settings: Arc<FairnessSettings>,
}

/// The book shared between the snapshotter (which writes it) and the API (which reads it).
pub type SharedBook = Arc<RwLock<Book>>;

impl Book {
    /// Applies record `seq` (records at or below the book's position are ignored); with
    /// `metrics`, counts exposures and conversions.
    pub fn apply(&mut self, seq: u64, rec: &Record, metrics: Option<&Metrics>) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        let ledger = self.ledger.apply(rec);
        let fair = self.apply_fairness(rec);
        if self.apply_new(rec, metrics) || ledger || fair {
            self.touched = seq;
        }
    }

    /// Moves the fairness window; true when it changed.
    fn apply_fairness(&mut self, rec: &Record) -> bool {
        apply_fairness(&mut self.fairness, &self.fairness_settings, rec)
    }

    /// Applies a record; true when it changed the book.
    fn apply_new(&mut self, rec: &Record, metrics: Option<&Metrics>) -> bool {
        if self.catalog.apply(rec) {
            match rec {
                Record::ExperimentSaved { definition, .. } => {
                    self.totals.insert(definition.id.clone(), vec![ArmTotals::default(); definition.arms.len()]);
                    if let Some(m) = metrics {
                        // Every arm's series start at zero, so rates work from the first scrape.
                        for a in &definition.arms {
                            m.experiment_exposures.with_label_values(&[&definition.id, &a.name]);
                            m.experiment_conversions.with_label_values(&[&definition.id, &a.name]);
                        }
                    }
                }
                Record::ExperimentDeleted { experiment_id, .. } => {
                    self.totals.remove(experiment_id);
                }
                _ => {}
            }
            return true;
        }
        match rec {
            Record::Decided { decision, .. } if !decision.experiments.is_empty() && !self.pending.contains_key(&decision.lead_id) => {
                let mut exposures = Vec::new();
                for x in &decision.experiments {
                    let (Some(entry), Some(totals)) = (self.catalog.entries.get(&x.experiment_id), self.totals.get_mut(&x.experiment_id))
                    else {
                        continue;
                    };
                    let Some(arm) = entry.definition.arm(&x.arm) else { continue };
                    for (t, s) in totals.iter_mut().zip(&entry.shares) {
                        t.expected += s;
                    }
                    totals[arm].expose(x.probability);
                    if let Some(m) = metrics {
                        m.experiment_exposures.with_label_values(&[&x.experiment_id, &x.arm]).inc();
                    }
                    exposures.push((x.experiment_id.clone(), arm, x.probability));
                }
                if exposures.is_empty() {
                    return false;
                }
                {
                    self.pending.insert(
                        decision.lead_id.clone(),
                        Pending {
                            exposures,
                            decided_at: decision.decided_at,
                            sla_target_minutes: decision.sla_target_minutes,
                            value: 0.0,
                            converted: false,
                            contacted: false,
                        },
                    );
                }
            }
            Record::LeadEvent { at, lead_id, event, value, .. } => {
                let Some(p) = self.pending.get_mut(lead_id) else { return false };
                match event {
                    EventKind::Contacted if !p.contacted => {
                        p.contacted = true;
                        let minutes = (*at - p.decided_at).num_milliseconds().max(0) as f64 / 60_000.0;
                        let within = minutes <= f64::from(p.sla_target_minutes);
                        for (id, arm, _) in &p.exposures {
                            if let Some(t) = self.totals.get_mut(id).and_then(|t| t.get_mut(*arm)) {
                                t.contact(minutes, within);
                            }
                        }
                    }
                    EventKind::Converted => {
                        let v = value.unwrap_or(0.0).max(0.0);
                        for (id, arm, prob) in &p.exposures {
                            if let Some(t) = self.totals.get_mut(id).and_then(|t| t.get_mut(*arm)) {
                                t.convert(*prob, v, p.value, !p.converted);
                                if let (Some(m), false) = (metrics, p.converted) {
                                    let name = self.catalog.entries.get(id).map(|e| e.definition.arms[*arm].name.as_str()).unwrap_or("");
                                    m.experiment_conversions.with_label_values(&[id, name]).inc();
                                }
                            }
                        }
                        p.value += v;
                        p.converted = true;
                    }
                    EventKind::Lost | EventKind::Closed => {
                        self.pending.remove(lead_id);
                    }
                    _ => return false,
                }
            }
            Record::Archived { lead_ids, .. } => {
                let before = self.pending.len();
                for id in lead_ids {
                    self.pending.remove(id);
                }
                return self.pending.len() != before;
            }
            _ => return false,
        }
        true
    }
}
