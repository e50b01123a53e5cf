//! State transitions shared by live actors, replay and the snapshotter.
//!
//! `BrokerLive` is one broker's live state (owned at run time by its `BrokerActor`, `broker.rs`),
//! `LeadRecord` one lead's history (`lead.rs`), and `EngineState` everything, rebuilt by applying
//! journal records in order. Live code and replay call the same `apply` functions, so replay
//! yields the live state.

mod broker;
mod lead;

use std::collections::{BTreeMap, HashMap};

use leadrouter_models::Broker;
use serde::{Deserialize, Serialize};

pub use broker::{BrokerLive, OpenLead, PerfCounters, RecentSla, Release, StateCounters, DAYS_KEPT};
pub use lead::{LeadEventEntry, LeadRecord};

use crate::storage::record::Record;

/// One broker: configuration and live state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerEntry {
    /// Configuration.
    pub broker: Broker,
    /// Live state.
    pub live: BrokerLive,
}

/// The whole engine state at a journal position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngineState {
    /// Sequence number of the last applied record.
    pub seq: u64,
    /// Brokers by id.
    pub brokers: BTreeMap<String, BrokerEntry>,
    /// Leads by id.
    pub leads: HashMap<String, LeadRecord>,
    /// Leads loaded at a later position than `seq` (a snapshot stopped between its leads and its
    /// meta key), with that position: records up to it are already in them.
    #[serde(skip)]
    leads_ahead: HashMap<String, u64>,
    /// The furthest position in `leads_ahead`.
    #[serde(skip)]
    ahead_through: u64,
}

impl EngineState {
    /// Marks `lead_id` as holding every record up to `seq`, beyond the state's own position.
    pub(crate) fn set_lead_ahead(&mut self, lead_id: &str, seq: u64) {
        if seq > self.seq {
            self.leads_ahead.insert(lead_id.to_string(), seq);
            self.ahead_through = self.ahead_through.max(seq);
        }
    }

    /// The last journal record this state already holds in some part: its position, or further
    /// when some leads are ahead of it. Replay must reach it.
    pub fn holds_through(&self) -> u64 {
        self.seq.max(self.ahead_through)
    }

    /// The population priors every broker's history is smoothed toward, from all brokers'
    /// outcomes (as the index totals them for a decision).
    pub fn priors(&self, strength: f64) -> leadrouter_models::Priors {
        let t = self.brokers.values().fold([0u64; 4], |t, e| {
            let c = &e.live.all_time;
            [t[0] + c.converted, t[1] + c.resolved, t[2] + c.sla_hits, t[3] + c.sla_total]
        });
        leadrouter_models::Priors::from_totals(t[0], t[1], t[2], t[3], strength)
    }

    /// How many leads are ahead of the state's position.
    pub fn leads_ahead(&self) -> usize {
        self.leads_ahead.len()
    }

    /// Whether lead `id` already holds record `seq`.
    fn lead_holds(&self, id: &str, seq: u64) -> bool {
        // The map is empty unless the last snapshot stopped part-way, and `get` on an empty map
        // returns before hashing the id.
        self.leads_ahead.get(id).is_some_and(|s| seq <= *s)
    }

    /// Applies record `seq`; records at or below the current position are ignored, and so is
    /// the lead part of a record a lead loaded ahead already holds.
    pub fn apply(&mut self, seq: u64, rec: &Record) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        self.apply_new(seq, rec);
        if seq >= self.ahead_through && !self.leads_ahead.is_empty() {
            // Every lead has caught up.
            self.leads_ahead = HashMap::new();
            self.ahead_through = 0;
        }
    }

    fn apply_new(&mut self, seq: u64, rec: &Record) {
        match rec {
            Record::BrokerUpserted { broker, .. } => {
                self.brokers
                    .entry(broker.id.clone())
                    .and_modify(|e| e.broker = broker.clone())
                    .or_insert_with(|| BrokerEntry { broker: broker.clone(), live: BrokerLive::default() });
            }
            Record::BrokerDeleted { broker_id, .. } => {
                self.brokers.remove(broker_id);
            }
            Record::Archived { lead_ids, .. } => {
                for id in lead_ids {
                    if !self.lead_holds(id, seq) && self.leads.get(id).is_some_and(|l| l.state.is_final()) {
                        self.leads.remove(id);
                    }
                }
            }
            _ => {
                if let Some(b) = rec.broker_id() {
                    if let Some(e) = self.brokers.get_mut(b) {
                        let tz = e.broker.tz();
                        e.live.apply(rec, tz);
                    }
                }
                if let Some(l) = rec.lead_id().filter(|l| !self.lead_holds(l, seq)) {
                    match self.leads.get_mut(l) {
                        Some(lead) => lead.apply(rec),
                        None => {
                            if let Some(lead) = LeadRecord::from_first(rec) {
                                self.leads.insert(l.to_string(), lead);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, TimeZone, Utc};
    use leadrouter_models::{DecideRequest, EventKind, LeadState, Priors};
    use serde_json::json;

    use super::*;
    use crate::storage::record::{Decision, SharedDecision};

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn broker(id: &str) -> Record {
        let b: Broker = serde_json::from_value(json!({
            "id": id, "name": id, "specialties": [{"type": "AUTO", "proficiency": 4}],
            "licenses": [{"state": "TX", "lines": ["AUTO"], "expiresOn": "2099-01-01"}],
            "capacity": {"maxConcurrent": 2, "dailyCap": 10}
        }))
        .unwrap();
        Record::BrokerUpserted { at: at(0), broker: b }
    }

    fn request(lead: &str) -> Arc<DecideRequest> {
        Arc::new(
            serde_json::from_value(json!({"leadId": lead, "leadData": {"insuranceTypes": ["AUTO"], "state": "TX", "estimatedValue": 900}}))
                .unwrap(),
        )
    }

    fn decided(lead: &str, broker: &str, min: i64, attempt: u32) -> Record {
        let factor = json!({"value": 1.0, "weight": 0.25, "contribution": 0.25});
        let d: Decision = serde_json::from_value(json!({
            "decisionId": format!("dec-{lead}-{attempt}"), "leadId": lead, "brokerId": broker, "leadState": "TX",
            "leadLines": 1, "status": "assigned", "strategy": "specialty", "score": 1.0,
            "breakdown": {"specialty": factor, "performance": factor, "capacity": factor, "sla": factor,
                          "conversion": 0.1, "conversionSource": "empirical_bayes", "valuePerConversion": 900.0,
                          "avgFirstContactMinutes": 30.0, "rawPerformance": 1.0},
            "alternatives": [], "excluded": {}, "skipped": [], "eligible": 2, "scored": 2, "propensity": 1.0,
            "attempt": attempt, "decidedAt": at(min), "acceptDeadline": at(min + 10), "slaTargetMinutes": 30,
            "decisionMicros": 50, "modelVersion": null
        }))
        .unwrap();
        let request = (attempt == 1).then(|| request(lead));
        Record::Decided { at: at(min), decision: SharedDecision::new(d), request }
    }

    fn event(lead: &str, broker: &str, kind: EventKind, min: i64) -> Record {
        let value = (kind == EventKind::Converted).then_some(1200.0);
        let requeue_expires_at = matches!(kind, EventKind::Rejected | EventKind::TimedOut).then(|| at(min + 60));
        Record::LeadEvent { at: at(min), lead_id: lead.into(), broker_id: Some(broker.into()), event: kind, value, requeue_expires_at }
    }

    /// Applies `records` in order from position 1.
    fn replay(records: &[Record]) -> EngineState {
        let mut s = EngineState::default();
        for (i, r) in records.iter().enumerate() {
            s.apply(i as u64 + 1, r);
        }
        s
    }

    #[test]
    fn a_lead_walks_its_lifecycle_and_its_broker_counts_it() {
        let mut recs = vec![broker("b1"), decided("l1", "b1", 1, 1)];
        let s = replay(&recs);
        assert_eq!(s.leads["l1"].state, LeadState::Reserved);
        assert_eq!(s.brokers["b1"].live.open_count(), 1);
        for (kind, min) in [(EventKind::Accepted, 2), (EventKind::Contacted, 5), (EventKind::Converted, 9), (EventKind::Closed, 20)] {
            recs.push(event("l1", "b1", kind, min));
        }
        let s = replay(&recs);
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.events.len()), (LeadState::Closed, Some("b1"), 4));
        let live = &s.brokers["b1"].live;
        assert_eq!(live.open_count(), 0, "closing frees the seat");
        let p = live.window(at(30), 7);
        assert_eq!((p.assigned, p.accepted, p.contacted, p.converted, p.closed), (1, 1, 1, 1, 1));
        assert_eq!((p.sla_hits, p.sla_total, p.value_converted), (1, 1, 1200.0));
        assert_eq!(s.seq, 6);
    }

    #[test]
    fn a_rejection_requeues_the_lead_and_a_reroute_goes_elsewhere() {
        let s = replay(&[broker("b1"), broker("b2"), decided("l1", "b1", 1, 1), event("l1", "b1", EventKind::Rejected, 2)]);
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.tried.clone()), (LeadState::Queued, None, vec!["b1".to_string()]));
        assert_eq!((l.queued_at, l.expires_at), (Some(at(2)), Some(at(62))));
        assert_eq!(s.brokers["b1"].live.open_count(), 0);
        let mut s = s;
        s.apply(5, &decided("l1", "b2", 3, 2));
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.decisions.len()), (LeadState::Reserved, Some("b2"), 2));
        assert_eq!((l.queued_at, l.expires_at), (None, None));
        assert_eq!(l.last_decision().unwrap().attempt, 2);
        assert_eq!(s.brokers["b2"].live.open_count(), 1);
    }

    #[test]
    fn a_timed_out_reservation_gives_the_seat_back() {
        let s = replay(&[broker("b1"), decided("l1", "b1", 1, 1), event("l1", "b1", EventKind::TimedOut, 11)]);
        assert_eq!(s.leads["l1"].state, LeadState::Queued);
        assert_eq!(s.brokers["b1"].live.open_count(), 0);
        assert_eq!(s.brokers["b1"].live.window(at(12), 7).timed_out, 1);
    }

    #[test]
    fn a_queued_lead_waits_then_expires() {
        let queued = Record::Queued { at: at(1), request: request("q1"), expires_at: at(61) };
        let s = replay(std::slice::from_ref(&queued));
        let l = &s.leads["q1"];
        assert_eq!((l.state, l.queued_at, l.expires_at, l.broker_id.clone()), (LeadState::Queued, Some(at(1)), Some(at(61)), None));
        let s = replay(&[queued, Record::QueueExpired { at: at(61), lead_id: "q1".into() }]);
        let l = &s.leads["q1"];
        assert!(l.state.is_final());
        assert_eq!((l.state, l.queued_at, l.expires_at), (LeadState::Expired, None, None));
        assert_eq!(l.last_activity(), at(1));
    }

    #[test]
    fn archiving_drops_finished_leads_only() {
        let s = replay(&[
            broker("b1"),
            decided("done", "b1", 1, 1),
            event("done", "b1", EventKind::Closed, 2),
            decided("open", "b1", 3, 1),
            Record::Queued { at: at(4), request: request("gone"), expires_at: at(5) },
            Record::QueueExpired { at: at(5), lead_id: "gone".into() },
            Record::Archived { at: at(6), lead_ids: vec!["done".into(), "open".into(), "gone".into(), "never".into()] },
        ]);
        let mut ids: Vec<&str> = s.leads.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["open"]);
        assert_eq!(s.brokers["b1"].live.open_count(), 1, "archiving changes no broker");
    }

    #[test]
    fn brokers_are_replaced_keeping_their_live_state_and_deleted() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        let Record::BrokerUpserted { broker: mut b, .. } = broker("b1") else { unreachable!() };
        b.name = "Renamed".into();
        s.apply(3, &Record::BrokerUpserted { at: at(2), broker: b });
        assert_eq!(s.brokers["b1"].broker.name, "Renamed");
        assert_eq!(s.brokers["b1"].live.open_count(), 1);
        s.apply(4, &Record::BrokerDeleted { at: at(3), broker_id: "b1".into() });
        assert!(s.brokers.is_empty());
        // A record for a broker that no longer exists still moves its lead.
        s.apply(5, &event("l1", "b1", EventKind::Accepted, 4));
        assert_eq!(s.leads["l1"].state, LeadState::Accepted);
    }

    #[test]
    fn records_at_or_below_the_position_are_ignored() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        s.apply(2, &event("l1", "b1", EventKind::Accepted, 2));
        s.apply(1, &event("l1", "b1", EventKind::Accepted, 2));
        assert_eq!((s.seq, s.leads["l1"].state, s.leads["l1"].events.len()), (2, LeadState::Reserved, 0));
    }

    #[test]
    fn a_lead_loaded_ahead_skips_the_records_it_holds_until_replay_catches_up() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        // As if a snapshot wrote l1 at position 4 but its meta key says 2.
        s.set_lead_ahead("l1", 4);
        assert_eq!((s.holds_through(), s.leads_ahead()), (4, 1));
        s.apply(3, &event("l1", "b1", EventKind::Accepted, 2));
        s.apply(4, &event("l1", "b1", EventKind::Contacted, 3));
        assert_eq!(s.leads["l1"].events.len(), 0, "the lead already holds records 3 and 4");
        assert_eq!(s.brokers["b1"].live.window(at(5), 7).contacted, 1, "the broker part is applied");
        assert_eq!((s.holds_through(), s.leads_ahead()), (4, 0));
        s.apply(5, &event("l1", "b1", EventKind::Lost, 4));
        assert_eq!(s.leads["l1"].events.len(), 1);
        assert_eq!(s.leads["l1"].state, LeadState::Lost);
    }

    proptest::proptest! {
        /// Conversions at the largest amount the API takes, as many as a broker could close,
        /// keep every aggregate and every scoring input finite.
        #[test]
        fn aggregates_stay_finite_at_the_largest_amounts(
            values in proptest::collection::vec(0.0..=leadrouter_models::lead::MAX_AMOUNT, 1..300),
        ) {
            let mut recs = vec![broker("b1")];
            for (i, v) in values.iter().enumerate() {
                let id = format!("l{i}");
                recs.push(decided(&id, "b1", i as i64, 1));
                recs.push(Record::LeadEvent {
                    at: at(i as i64), lead_id: id.clone(), broker_id: Some("b1".into()),
                    event: EventKind::Converted, value: Some(*v), requeue_expires_at: None,
                });
                recs.push(event(&id, "b1", EventKind::Closed, i as i64));
            }
            let s = replay(&recs);
            let live = &s.brokers["b1"].live;
            proptest::prop_assert!(live.all_time.value_converted.is_finite());
            proptest::prop_assert!(live.window(at(400), 7).value_converted.is_finite());
            let priors = Priors::from_totals(1, 2, 1, 2, 20.0);
            let i = live.score_inputs(1.0, 1.0, 30, leadrouter_models::lead::MAX_AMOUNT, &priors);
            for x in [i.conversion, i.value_per_conversion, i.sla_compliance, i.avg_first_contact_minutes, i.raw_performance()] {
                proptest::prop_assert!(x.is_finite(), "{i:?}");
            }
        }
    }
}
