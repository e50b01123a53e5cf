//! What a subscriber receives: the journal's records as webhook events. One record makes at
//! most one event; its id (`evt_<journal sequence>`) is the `Webhook-Id` of every attempt and
//! every replay, so a receiver can drop duplicates.
//!
//! Events carry ids, places, lines and amounts, never the lead's personal information: a
//! receiver that needs it reads `GET /api/leads/{id}`.

use chrono::{DateTime, Utc};
use leadrouter_actors::storage::record::Record;
use leadrouter_models::experiment::Status;
use serde_json::{json, Value};

/// Every event type a subscription may ask for.
pub const EVENT_TYPES: [&str; 17] = [
    "lead.assigned",
    "lead.rerouted",
    "lead.queued",
    "lead.expired",
    "lead.accepted",
    "lead.rejected",
    "lead.timed_out",
    "lead.contacted",
    "lead.converted",
    "lead.lost",
    "lead.closed",
    "broker.updated",
    "broker.deleted",
    "broker.capacity",
    "experiment.started",
    "experiment.paused",
    "experiment.concluded",
];

/// One event, from the record at `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The journal record it comes from.
    pub seq: u64,
    /// One of [`EVENT_TYPES`].
    pub kind: &'static str,
    /// Events with the same key are delivered in journal order: the lead, broker or experiment.
    pub key: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub data: Value,
}

impl Event {
    /// The idempotency key, the same for every attempt and replay.
    pub fn id(&self) -> String {
        format!("evt_{}", self.seq)
    }

    /// The request body.
    pub fn body(&self) -> String {
        json!({"id": self.id(), "type": self.kind, "timestamp": self.at, "seq": self.seq, "data": self.data}).to_string()
    }

    /// The event of the record at `seq`, if it makes one.
    pub fn of(seq: u64, rec: &Record) -> Option<Event> {
        let ev = |kind: &'static str, key: &str, at: DateTime<Utc>, data: Value| Some(Event { seq, kind, key: key.to_string(), at, data });
        match rec {
            Record::Decided { at, decision: d, .. } => {
                let rerouted = d.rerouted_from.is_some() || d.attempt > 1;
                let lines: Vec<&str> = d.lead_lines.lines().map(|l| l.name()).collect();
                let mut data = json!({
                    "leadId": d.lead_id, "decisionId": d.decision_id, "brokerId": d.broker_id,
                    "leadState": d.lead_state, "lines": lines, "strategy": d.strategy,
                    "score": finite(d.score), "propensity": finite(d.propensity), "attempt": d.attempt,
                    "acceptDeadline": d.accept_deadline, "slaTargetMinutes": d.sla_target_minutes,
                    "modelVersion": d.model_version,
                });
                if let Some(from) = &d.rerouted_from {
                    data["reroutedFrom"] = json!(from);
                }
                ev(if rerouted { "lead.rerouted" } else { "lead.assigned" }, &d.lead_id, *at, data)
            }
            Record::Queued { at, request, expires_at } => {
                let l = &request.lead_data;
                let lines: Vec<&str> = l.insurance_types.iter().map(|t| t.name()).collect();
                let data = json!({"leadId": request.lead_id, "leadState": l.state, "lines": lines,
                    "estimatedValue": finite(l.estimated_value), "urgency": l.urgency, "expiresAt": expires_at});
                ev("lead.queued", &request.lead_id, *at, data)
            }
            Record::QueueExpired { at, lead_id } => ev("lead.expired", lead_id, *at, json!({"leadId": lead_id})),
            Record::LeadEvent { at, lead_id, broker_id, event, value, requeue_expires_at } => {
                let kind = EVENT_TYPES.iter().find(|k| k.strip_prefix("lead.") == Some(event.name()))?;
                let mut data = json!({"leadId": lead_id, "brokerId": broker_id});
                if let Some(v) = value {
                    data["value"] = json!(finite(*v));
                }
                if let Some(until) = requeue_expires_at {
                    data["requeuedUntil"] = json!(until);
                }
                ev(kind, lead_id, *at, data)
            }
            Record::BrokerUpserted { at, broker } => {
                let data = json!({"brokerId": broker.id, "name": broker.name, "status": broker.status,
                    "maxConcurrent": broker.capacity.max_concurrent, "dailyCap": broker.capacity.daily_cap, "group": broker.group});
                ev("broker.updated", &broker.id, *at, data)
            }
            Record::BrokerDeleted { at, broker_id } => ev("broker.deleted", broker_id, *at, json!({"brokerId": broker_id})),
            Record::BrokerThrottled { at, broker_id, withheld, sla_compliance } => {
                let data = json!({"brokerId": broker_id, "seatsWithheld": withheld, "slaCompliance": finite(*sla_compliance)});
                ev("broker.capacity", broker_id, *at, data)
            }
            Record::ExperimentStatus { at, experiment_id, status, winner } => {
                let kind = match status {
                    Status::Running => "experiment.started",
                    Status::Paused => "experiment.paused",
                    Status::Concluded => "experiment.concluded",
                    Status::Draft => return None,
                };
                ev(kind, experiment_id, *at, json!({"experimentId": experiment_id, "winner": winner}))
            }
            Record::ExperimentSaved { at, definition, status: Status::Running } => {
                ev("experiment.started", &definition.id, *at, json!({"experimentId": definition.id, "winner": null}))
            }
            Record::ExperimentSaved { .. }
            | Record::ExperimentDeleted { .. }
            | Record::ExperimentAllocated { .. }
            | Record::RoutingDefault { .. }
            | Record::Archived { .. } => None,
        }
    }
}

/// A number as JSON, null when it is not finite.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadrouter_models::EventKind;

    #[test]
    fn lifecycle_records_make_their_events_and_others_none() {
        let at = Utc::now();
        let rec = Record::LeadEvent {
            at,
            lead_id: "l1".into(),
            broker_id: Some("b1".into()),
            event: EventKind::Converted,
            value: Some(1200.0),
            requeue_expires_at: None,
        };
        let e = Event::of(7, &rec).unwrap();
        assert_eq!((e.kind, e.key.as_str(), e.id()), ("lead.converted", "l1", "evt_7".to_string()));
        assert_eq!(e.data, json!({"leadId": "l1", "brokerId": "b1", "value": 1200.0}));
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!((body["id"].as_str(), body["type"].as_str(), body["seq"].as_u64()), (Some("evt_7"), Some("lead.converted"), Some(7)));
        for kind in EventKind::ALL {
            let rec = Record::LeadEvent { at, lead_id: "l".into(), broker_id: None, event: kind, value: None, requeue_expires_at: None };
            let e = Event::of(1, &rec).unwrap();
            assert_eq!(e.kind, format!("lead.{}", kind.name()));
            assert!(EVENT_TYPES.contains(&e.kind));
        }
        assert_eq!(Event::of(1, &Record::Archived { at, lead_ids: vec!["l".into()] }), None);
        let e =
            Event::of(2, &Record::ExperimentStatus { at, experiment_id: "x".into(), status: Status::Concluded, winner: Some("b".into()) })
                .unwrap();
        assert_eq!((e.kind, e.data["winner"].as_str()), ("experiment.concluded", Some("b")));
    }
}
