//! The routing-efficiency ledger: per-day aggregates of every lead's fate, kept by following the
//! journal (the snapshotter applies each committed record, as it does to the experiments' book,
//! and saves the ledger with it), so `GET /api/analytics/routing-efficiency` sums buckets and
//! never scans leads, and gives the same numbers after a restart.
//!
//! Leads are counted as **cohorts**: everything that happens to a lead (its assignment, queue
//! wait, acceptance, contact, conversion) is added to the bucket of the day it arrived, with the
//! strategy, broker group and lead state and line of its first decision. A lead queued first
//! gets its strategy and group when it is first assigned; one that expires unassigned is counted
//! under strategy `none` and group `none`.

mod report;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use leadrouter_models::{EventKind, LineSet};
use serde::{Deserialize, Serialize};

pub use report::{gini, Calibration, CalibrationBin, Day, Efficiency, Estimate, Figures, Filter, Query, Uplift};

use crate::storage::record::{Decision, Record};

/// Days of buckets kept; older ones are dropped as new days begin.
pub const DAYS_KEPT: i64 = 400;

/// Bins of the calibration table (predicted P(convert) in tenths).
pub const BINS: usize = 10;

/// What a bucket is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Arrival day (UTC).
    pub day: NaiveDate,
    /// Strategy of the first decision (`none` when never assigned).
    pub strategy: String,
    /// The lead's state.
    pub state: String,
    /// The lead's first line.
    pub line: String,
    /// Group of the first broker (`none` without one).
    pub group: String,
}

/// Running sums of one cohort.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bucket {
    /// Leads that arrived.
    pub leads: u64,
    /// Of them, assigned at least once.
    pub assigned: u64,
    /// Of them, waited in the queue before any assignment.
    pub queued: u64,
    /// Of the queued, assigned later; and their minutes waited in total.
    pub queue_assigned: u64,
    /// Minutes from queueing to assignment, summed.
    pub queue_minutes: f64,
    /// Minutes from arrival to first assignment, summed over assigned leads.
    pub assign_minutes: f64,
    /// Expired in the queue unassigned.
    pub expired: u64,
    /// Acceptances, rejections, time-outs.
    pub accepted: u64,
    /// Rejections.
    pub rejected: u64,
    /// Acceptance time-outs.
    pub timed_out: u64,
    /// Decisions after the first (re-routes).
    pub reroutes: u64,
    /// Leads contacted, their first-contact minutes in total, and how many within the SLA.
    pub contacted: u64,
    /// Minutes from assignment to first contact, summed.
    pub contact_minutes: f64,
    /// First contacts within the decision's target.
    pub sla_hits: u64,
    /// Leads converted and their revenue.
    pub converted: u64,
    /// Revenue.
    pub revenue: f64,
    /// Sum of the leads' estimated values (what was offered).
    pub value_offered: f64,
    /// Sum of P(convert) × value per conversion at the first decision.
    pub expected_value: f64,
    /// Calibration: per bin of predicted P, leads, predicted P summed, converted.
    pub calibration: [[f64; 3]; BINS],
    /// Propensity-weighted sums for the uplift estimate (weight = 1 / probability of the
    /// lead's routing plan): Σw, Σw·c, Σw²·c, Σw·r, Σw²·r, Σw²·r², Σw² (c: converted, r: revenue).
    pub weighted: [f64; 7],
}

impl Bucket {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Bucket) {
        self.leads += o.leads;
        self.assigned += o.assigned;
        self.queued += o.queued;
        self.queue_assigned += o.queue_assigned;
        self.queue_minutes += o.queue_minutes;
        self.assign_minutes += o.assign_minutes;
        self.expired += o.expired;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.timed_out += o.timed_out;
        self.reroutes += o.reroutes;
        self.contacted += o.contacted;
        self.contact_minutes += o.contact_minutes;
        self.sla_hits += o.sla_hits;
        self.converted += o.converted;
        self.revenue += o.revenue;
        self.value_offered += o.value_offered;
        self.expected_value += o.expected_value;
        for (a, b) in self.calibration.iter_mut().zip(&o.calibration) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (x, y) in self.weighted.iter_mut().zip(&o.weighted) {
            *x += y;
        }
    }
}

/// Length of an activity slot.
pub const SLOT_SECONDS: i64 = 300;

/// Activity slots kept: a day and an hour.
pub const SLOTS_KEPT: i64 = 25 * 3600 / SLOT_SECONDS;

/// What happened in one five-minute slot (UTC), counted when it happened (the cohorts count by
/// arrival): the live figures of the last hour and of today.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Activity {
    /// First assignments.
    pub assigned: u64,
    /// New leads queued for want of capacity.
    pub queued: u64,
    /// Re-routes (decisions after a lead's first).
    pub rerouted: u64,
    /// First contacts.
    pub contacted: u64,
    /// Their minutes from assignment, summed.
    pub contact_minutes: f64,
    /// Of them, within the decision's SLA target.
    pub sla_hits: u64,
    /// Conversions.
    pub converted: u64,
    /// Their value.
    pub revenue: f64,
}

impl Activity {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Activity) {
        self.assigned += o.assigned;
        self.queued += o.queued;
        self.rerouted += o.rerouted;
        self.contacted += o.contacted;
        self.contact_minutes += o.contact_minutes;
        self.sla_hits += o.sla_hits;
        self.converted += o.converted;
        self.revenue += o.revenue;
    }
}

/// The slot `at` falls in.
pub fn slot_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SLOT_SECONDS)
}

/// A lead whose fate is still open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    /// Its bucket, once it has one (a queued lead gets it at its first assignment).
    pub key: Option<Key>,
    /// Arrival day, state and line.
    pub day: NaiveDate,
    /// The lead's state.
    pub state: String,
    /// The lead's first line.
    pub line: String,
    /// When it arrived.
    pub arrived: DateTime<Utc>,
    /// When it was queued, if it waited before its first assignment.
    pub queued_at: Option<DateTime<Utc>>,
    /// When its current decision was made, and that decision's first-contact target.
    pub decided_at: Option<DateTime<Utc>>,
    /// The current decision's first-contact target.
    pub sla_target_minutes: u32,
    /// The lead's estimated value.
    pub value: f64,
    /// Contacted already.
    pub contacted: bool,
    /// Converted already.
    pub converted: bool,
    /// Revenue so far.
    pub revenue: f64,
    /// Calibration bin of its first decision's P(convert).
    pub bin: Option<u8>,
    /// Its uplift weight.
    pub weight: f64,
}

impl Open {
    /// A lead that arrived at `at` (queued first, or decided at once).
    fn arrived(at: DateTime<Utc>, state: String, line: String, value: f64, queued: bool) -> Self {
        Self {
            key: None,
            day: at.date_naive(),
            state,
            line,
            arrived: at,
            queued_at: queued.then_some(at),
            decided_at: None,
            sla_target_minutes: 0,
            value,
            contacted: false,
            converted: false,
            revenue: 0.0,
            bin: None,
            weight: 1.0,
        }
    }
}

/// Aggregates by cohort, open leads, and leads per broker per day.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Buckets, as pairs (JSON maps need string keys).
    #[serde(with = "pairs")]
    pub buckets: HashMap<Key, Bucket>,
    /// Leads still open.
    pub open: HashMap<String, Open>,
    /// Leads assigned per (day, broker), for the spread of leads over brokers.
    #[serde(with = "pairs")]
    pub per_broker: HashMap<(NaiveDate, String), u64>,
    /// Broker groups, as last configured.
    pub groups: HashMap<String, String>,
    /// The day old buckets were last dropped.
    pub pruned_on: Option<NaiveDate>,
    /// Activity per five-minute slot, the last [`SLOTS_KEPT`].
    #[serde(default)]
    pub activity: BTreeMap<i64, Activity>,
}

mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(m: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&K, &V)> = m.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.serialize(s)
    }

    pub fn deserialize<'de, K: Deserialize<'de> + Eq + Hash, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

fn first_line(lines: LineSet) -> String {
    lines.lines().next().map_or("none", |l| l.name()).to_string()
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 60_000.0
}

impl Ledger {
    /// The activity of the slot `at` falls in; slots too old to keep are dropped.
    fn slot(&mut self, at: DateTime<Utc>) -> &mut Activity {
        let slot = slot_of(at);
        while let Some((&first, _)) = self.activity.first_key_value() {
            if first > slot - SLOTS_KEPT {
                break;
            }
            self.activity.pop_first();
        }
        self.activity.entry(slot).or_default()
    }

    /// The activity of the slots from `first` on.
    pub fn activity_since(&self, first: i64) -> Activity {
        let mut a = Activity::default();
        for s in self.activity.range(first..).map(|(_, s)| s) {
            a.add(s);
        }
        a
    }

    /// Applies one record; true when it changed the ledger.
    pub fn apply(&mut self, rec: &Record) -> bool {
        match rec {
            Record::BrokerUpserted { broker, .. } => {
                let g = broker.group.clone().unwrap_or_else(|| "none".into());
                self.groups.insert(broker.id.clone(), g).is_none_or(|old| old != *broker.group.as_deref().unwrap_or("none"))
            }
            Record::Queued { at, request, .. } => {
                let lines = LineSet::of(&request.lead_data.insurance_types);
                let day = at.date_naive();
                self.prune(day);
                self.open.entry(request.lead_id.clone()).or_insert_with(|| {
                    Open::arrived(*at, request.lead_data.state.clone(), first_line(lines), request.lead_data.estimated_value, true)
                });
                self.slot(*at).queued += 1;
                true
            }
            Record::Decided { at, decision, request } => {
                if let Some(r) = request {
                    let day = at.date_naive();
                    self.prune(day);
                    self.open.entry(decision.lead_id.clone()).or_insert_with(|| {
                        Open::arrived(*at, decision.lead_state.clone(), first_line(decision.lead_lines), r.lead_data.estimated_value, false)
                    });
                }
                self.decided(decision)
            }
            Record::QueueExpired { lead_id, .. } => {
                let Some(o) = self.open.remove(lead_id) else { return false };
                let key = o.key.clone().unwrap_or_else(|| Key {
                    day: o.day,
                    strategy: "none".into(),
                    state: o.state.clone(),
                    line: o.line.clone(),
                    group: "none".into(),
                });
                let fresh = o.key.is_none();
                let b = self.buckets.entry(key).or_default();
                if fresh {
                    b.leads += 1;
                    b.queued += 1;
                    b.value_offered += o.value;
                }
                b.expired += 1;
                true
            }
            Record::LeadEvent { at, lead_id, event, value, .. } => self.event(*at, lead_id, *event, *value),
            Record::Archived { lead_ids, .. } => {
                let before = self.open.len();
                for id in lead_ids {
                    self.open.remove(id);
                }
                before != self.open.len()
            }
            _ => false,
        }
    }

    fn decided(&mut self, d: &Decision) -> bool {
        let Some(o) = self.open.get_mut(&d.lead_id) else { return false };
        o.decided_at = Some(d.decided_at);
        o.sla_target_minutes = d.sla_target_minutes;
        o.contacted = false;
        let day = d.decided_at.date_naive();
        *self.per_broker.entry((day, d.broker_id.clone())).or_default() += 1;
        if let Some(k) = &o.key {
            self.buckets.entry(k.clone()).or_default().reroutes += 1;
            self.slot(d.decided_at).rerouted += 1;
            return true;
        }
        let key = Key {
            day: o.day,
            strategy: d.strategy.name().to_string(),
            state: o.state.clone(),
            line: o.line.clone(),
            group: self.groups.get(&d.broker_id).cloned().unwrap_or_else(|| "none".into()),
        };
        let p = d.breakdown.conversion.clamp(0.0, 1.0);
        let bin = ((p * BINS as f64) as usize).min(BINS - 1);
        let plan: f64 = d.experiments.iter().map(|x| x.probability).product();
        let w = if plan > 0.0 { 1.0 / plan } else { 1.0 };
        o.key = Some(key.clone());
        o.bin = Some(bin as u8);
        o.weight = w;
        let b = self.buckets.entry(key).or_default();
        b.leads += 1;
        b.assigned += 1;
        b.value_offered += o.value;
        b.expected_value += p * d.breakdown.value_per_conversion;
        b.assign_minutes += minutes(o.arrived, d.decided_at);
        if let Some(q) = o.queued_at {
            b.queued += 1;
            b.queue_assigned += 1;
            b.queue_minutes += minutes(q, d.decided_at);
        }
        b.calibration[bin][0] += 1.0;
        b.calibration[bin][1] += p;
        b.weighted[0] += w;
        b.weighted[6] += w * w;
        self.slot(d.decided_at).assigned += 1;
        true
    }

    fn event(&mut self, at: DateTime<Utc>, lead_id: &str, event: EventKind, value: Option<f64>) -> bool {
        let Some(o) = self.open.get_mut(lead_id) else { return false };
        let Some(key) = o.key.clone() else { return false };
        let b = self.buckets.entry(key).or_default();
        let mut now = Activity::default();
        match event {
            EventKind::Accepted => b.accepted += 1,
            EventKind::Rejected => b.rejected += 1,
            EventKind::TimedOut => b.timed_out += 1,
            EventKind::Contacted if !o.contacted => {
                o.contacted = true;
                let m = o.decided_at.map_or(0.0, |d| minutes(d, at));
                b.contacted += 1;
                b.contact_minutes += m;
                (now.contacted, now.contact_minutes) = (1, m);
                if m <= f64::from(o.sla_target_minutes) {
                    b.sla_hits += 1;
                    now.sla_hits = 1;
                }
            }
            EventKind::Converted => {
                let v = value.unwrap_or(0.0).max(0.0);
                let w = o.weight;
                if !o.converted {
                    o.converted = true;
                    b.converted += 1;
                    now.converted = 1;
                    if let Some(bin) = o.bin {
                        b.calibration[bin as usize][2] += 1.0;
                    }
                    b.weighted[1] += w;
                    b.weighted[2] += w * w;
                }
                let r = o.revenue;
                b.revenue += v;
                b.weighted[3] += w * v;
                b.weighted[4] += w * w * v;
                b.weighted[5] += w * w * ((r + v) * (r + v) - r * r);
                o.revenue += v;
                now.revenue = v;
            }
            EventKind::Lost => {}
            EventKind::Closed => {
                self.open.remove(lead_id);
            }
            EventKind::Contacted => return false,
        }
        if now != Activity::default() {
            self.slot(at).add(&now);
        }
        true
    }

    /// Drops buckets and broker counts older than [`DAYS_KEPT`] before `today`.
    fn prune(&mut self, today: NaiveDate) {
        if self.pruned_on.is_some_and(|d| d >= today) {
            return;
        }
        self.pruned_on = Some(today);
        let oldest = today - chrono::Duration::days(DAYS_KEPT);
        self.buckets.retain(|k, _| k.day >= oldest);
        self.per_broker.retain(|(d, _), _| *d >= oldest);
    }
}

#[cfg(test)]
mod tests;
