//! The ledger on a small scripted history, checked against figures worked out by hand.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadrouter_models::{Broker, DecideRequest, EventKind};
use serde_json::json;

use super::*;
use crate::storage::record::SharedDecision;

fn at(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap() + Duration::minutes(min)
}

fn broker(id: &str, group: Option<&str>) -> Record {
    let b: Broker = serde_json::from_value(json!({
        "id": id, "name": id, "group": group, "specialties": [{"type": "AUTO", "proficiency": 4}],
        "licenses": [{"state": "TX", "lines": ["AUTO"], "expiresOn": "2099-01-01"}],
        "capacity": {"maxConcurrent": 5, "dailyCap": 50}
    }))
    .unwrap();
    Record::BrokerUpserted { at: at(0), broker: b }
}

fn request(lead: &str, value: f64) -> Arc<DecideRequest> {
    Arc::new(
        serde_json::from_value(json!({"leadId": lead, "leadData": {"insuranceTypes": ["AUTO"], "state": "TX", "estimatedValue": value}}))
            .unwrap(),
    )
}

#[allow(clippy::too_many_arguments)]
fn decided(lead: &str, broker: &str, strategy: &str, min: i64, attempt: u32, p: f64, value: f64, plan: Option<f64>) -> Record {
    let factor = json!({"value": 1.0, "weight": 0.25, "contribution": 0.25});
    let experiments = plan.map_or(json!([]), |p| json!([{"experimentId": "e", "arm": "a", "probability": p}]));
    let d: Decision = serde_json::from_value(json!({
        "decisionId": format!("dec-{lead}-{attempt}"), "leadId": lead, "brokerId": broker, "leadState": "TX",
        "leadLines": 1, "status": "assigned", "strategy": strategy, "score": 1.0,
        "breakdown": {"specialty": factor, "performance": factor, "capacity": factor, "sla": factor,
                      "conversion": p, "conversionSource": "empirical_bayes", "valuePerConversion": value,
                      "avgFirstContactMinutes": 30.0, "rawPerformance": 1.0},
        "alternatives": [], "excluded": {}, "skipped": [], "eligible": 2, "scored": 2, "propensity": 1.0,
        "attempt": attempt, "decidedAt": at(min), "acceptDeadline": at(min + 10), "slaTargetMinutes": 30,
        "decisionMicros": 50, "modelVersion": null, "experiments": experiments
    }))
    .unwrap();
    Record::Decided { at: at(min), decision: SharedDecision::new(d), request: (attempt == 1).then(|| request(lead, value)) }
}

fn event(lead: &str, kind: EventKind, min: i64, value: Option<f64>) -> Record {
    Record::LeadEvent { at: at(min), lead_id: lead.into(), broker_id: None, event: kind, value, requeue_expires_at: None }
}

fn query() -> Query {
    Query { from: at(0).date_naive(), to: at(0).date_naive(), filter: Filter::default() }
}

/// Four leads: l1 (specialty, a, converts 1,000 after a contact in 20 min), l2 (specialty, b,
/// rejected then re-routed to a, contacted after 45 min), l3 (random, b, converts 400), l4
/// queued 30 minutes before its assignment (random, a), and l5 queued and expired.
fn history() -> Ledger {
    let recs = vec![
        broker("a", Some("north")),
        broker("b", None),
        decided("l1", "a", "specialty", 0, 1, 0.25, 1000.0, None),
        event("l1", EventKind::Accepted, 1, None),
        event("l1", EventKind::Contacted, 20, None),
        event("l1", EventKind::Converted, 60, Some(1000.0)),
        event("l1", EventKind::Closed, 61, None),
        decided("l2", "b", "specialty", 5, 1, 0.15, 500.0, None),
        event("l2", EventKind::Rejected, 6, None),
        decided("l2", "a", "specialty", 6, 2, 0.2, 500.0, None),
        event("l2", EventKind::Accepted, 7, None),
        event("l2", EventKind::Contacted, 51, None),
        decided("l3", "b", "random", 10, 1, 0.12, 400.0, Some(0.5)),
        event("l3", EventKind::Converted, 70, Some(400.0)),
        Record::Queued { at: at(15), request: request("l4", 300.0), expires_at: at(1000) },
        decided("l4", "a", "random", 45, 1, 0.05, 300.0, None),
        Record::Queued { at: at(16), request: request("l5", 200.0), expires_at: at(100) },
        Record::QueueExpired { at: at(100), lead_id: "l5".into() },
    ];
    let mut l = Ledger::default();
    for r in &recs {
        l.apply(r);
    }
    l
}

#[test]
fn totals_match_the_hand_count() {
    let e = history().efficiency(&query());
    let t = &e.totals;
    assert_eq!((t.leads, t.assigned, t.expired, t.converted), (5, 4, 1, 2));
    assert_eq!(t.assignment_rate, Some(0.8));
    assert_eq!(t.queue_rate, Some(0.4), "l4 and l5 waited");
    assert_eq!(t.mean_queue_wait_minutes, Some(30.0));
    // Arrival to assignment: 0, 0, 0 and 30 minutes.
    assert_eq!(t.mean_time_to_assignment_minutes, Some(7.5));
    // Five decisions (four first ones, one re-route): two accepted, one rejected.
    assert_eq!(t.acceptance_rate, Some(0.4));
    assert_eq!(t.rejection_rate, Some(0.2));
    assert_eq!(t.timeout_rate, Some(0.0));
    assert_eq!(t.reroutes_per_lead, Some(0.25));
    // Contacts: l1 after 20 minutes, l2 45 minutes after its re-route (target 30).
    assert_eq!(t.mean_first_contact_minutes, Some(32.5));
    assert_eq!(t.sla_compliance, Some(0.5));
    assert_eq!(t.conversion_rate, Some(0.5));
    assert_eq!(t.revenue, 1400.0);
    assert_eq!(t.revenue_per_lead, Some(280.0));
    assert_eq!(t.value_offered, 2400.0);
    assert!((t.value_captured.unwrap() - 1400.0 / 2400.0).abs() < 1e-12);
    assert!((t.expected_value - (250.0 + 75.0 + 48.0 + 15.0)).abs() < 1e-9);
}

#[test]
fn cohorts_split_by_strategy_group_and_filter() {
    let l = history();
    let e = l.efficiency(&query());
    assert_eq!(e.by_strategy["specialty"].leads, 2);
    assert_eq!(e.by_strategy["random"].leads, 2);
    assert_eq!(e.by_strategy["none"].expired, 1);
    // The group is the first broker's: l2 went to b (no group) first.
    assert_eq!(e.by_group["north"].leads, 2);
    assert_eq!(e.by_group["none"].leads, 3);
    assert_eq!(e.leads_by_broker["a"], 3);
    assert_eq!(e.leads_by_broker["b"], 2);
    assert_eq!(e.daily.len(), 1);
    assert_eq!(e.daily[0].figures.leads, 5);
    let q = Query { filter: Filter { strategy: Some("random".into()), ..Filter::default() }, ..query() };
    assert_eq!(l.efficiency(&q).totals.leads, 2);
    let q = Query { from: at(0).date_naive() + Duration::days(1), to: at(0).date_naive() + Duration::days(1), ..query() };
    assert_eq!(l.efficiency(&q).totals.leads, 0);
}

#[test]
fn calibration_bins_predicted_against_observed() {
    let e = history().efficiency(&query());
    let bins = &e.calibration.bins;
    // l1 (0.25) and l2 (0.15, its first decision) sit in 0.1–0.2 and 0.2–0.3; l3 (0.12) with l2.
    let b1 = bins.iter().find(|b| b.from == 0.1).unwrap();
    assert_eq!(b1.leads, 2);
    assert!((b1.predicted - 0.135).abs() < 1e-12);
    assert_eq!(b1.observed, 0.5);
    let b2 = bins.iter().find(|b| b.from == 0.2).unwrap();
    assert_eq!((b2.leads, b2.observed), (1, 1.0));
    // ECE = (2·|0.135 − 0.5| + 1·|0.25 − 1| + 1·|0.05 − 0|) / 4.
    let ece = (2.0 * 0.365 + 0.75 + 0.05) / 4.0;
    assert!((e.calibration.expected_calibration_error.unwrap() - ece).abs() < 1e-12);
}

#[test]
fn uplift_weights_leads_by_their_plan_probability() {
    let e = history().efficiency(&query());
    let random = e.uplift.iter().find(|u| u.strategy == "random").unwrap();
    // l3 weighs 2 (its arm had probability 0.5) and converted; l4 weighs 1 and did not.
    assert!((random.conversion.value - 2.0 / 3.0).abs() < 1e-12);
    assert!((random.revenue_per_lead.value - 800.0 / 3.0).abs() < 1e-9);
    assert!(random.conversion_vs_random.is_none());
    let spec = e.uplift.iter().find(|u| u.strategy == "specialty").unwrap();
    assert_eq!(spec.conversion.value, 0.5);
    let vs = spec.conversion_vs_random.unwrap();
    assert!((vs.value - (0.5 - 2.0 / 3.0)).abs() < 1e-12);
    // Var of specialty's mean: (Σw²c(1−2m) + m²Σw²)/(Σw)² = (1·0 + 0.25·2)/4 = 0.125;
    // random's: m = 2/3, Σw²c = 4, Σw² = 5: (4·(1 − 4/3) + 4/9·5)/9.
    let var = 0.125 + (4.0 * (1.0 - 4.0 / 3.0) + 4.0 / 9.0 * 5.0) / 9.0;
    assert!((vs.high - vs.value - 1.96 * f64::sqrt(var)).abs() < 1e-12);
}

#[test]
fn the_ledger_survives_a_round_trip_through_json() {
    let l = history();
    let back: Ledger = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
    assert_eq!(back, l);
}

#[test]
fn gini_of_known_spreads() {
    assert_eq!(gini(&[1.0, 1.0, 1.0, 1.0]), Some(0.0));
    // One of four has everything: (n − 1)/n.
    assert_eq!(gini(&[0.0, 0.0, 0.0, 8.0]), Some(0.75));
    assert_eq!(gini(&[]), None);
}

#[test]
fn activity_is_counted_in_the_slot_it_happened_and_old_slots_go() {
    let l = history();
    // 08:00 is a slot boundary: minutes 0-4 are slot 0, 60-64 slot 12.
    let first = slot_of(at(0));
    let all = l.activity_since(first);
    assert_eq!((all.assigned, all.queued, all.rerouted), (4, 2, 1));
    assert_eq!((all.contacted, all.sla_hits, all.contact_minutes), (2, 1, 65.0));
    assert_eq!((all.converted, all.revenue), (2, 1400.0));
    // From 09:00 on: l1's conversion (minute 60) and l3's (minute 70).
    let late = l.activity_since(slot_of(at(60)));
    assert_eq!((late.assigned, late.converted, late.revenue), (0, 2, 1400.0));
    assert_eq!(l.activity[&slot_of(at(45))].assigned, 1, "l4, assigned at minute 45");
    // A day and an hour later, a new record drops every older slot.
    let mut l = l;
    l.apply(&Record::Queued { at: at(25 * 60 + 100), request: request("l9", 100.0), expires_at: at(3000) });
    assert_eq!(l.activity.len(), 1);
    // Kept in the book's snapshot, and a snapshot without it still loads.
    let mut v = serde_json::to_value(&l).unwrap();
    assert_eq!(serde_json::from_value::<Ledger>(v.clone()).unwrap(), l);
    v.as_object_mut().unwrap().remove("activity");
    assert!(serde_json::from_value::<Ledger>(v).unwrap().activity.is_empty());
}
