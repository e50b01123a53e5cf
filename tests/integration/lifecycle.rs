//! The lead lifecycle: events, re-routing on reject and time-out, illegal transitions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{broker, lead, Srv};

async fn wait_for(s: &Srv, lead_id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..250 {
        last = s.get(&format!("/api/leads/{lead_id}")).await.1;
        if pred(&last) {
            return last;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("lead {lead_id} never reached the expected state: {last}");
}

#[actix_rt::test]
async fn full_lifecycle_updates_performance_and_frees_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("p1", "WA", &["LIFE"], 5, 1, 10)).await;
    let (st, d) = s.post("/api/routing/decide", &lead("life-1", "WA", &["LIFE"])).await;
    assert_eq!(st, 200);
    let decided_at: chrono::DateTime<chrono::Utc> = d["decidedAt"].as_str().unwrap().parse().unwrap();
    for ev in ["accepted"] {
        assert_eq!(s.event("life-1", ev).await.0, 200);
    }
    // First contact 10 minutes after the reservation: within the 30-minute SLA.
    let contact_at = (decided_at + chrono::Duration::minutes(10)).to_rfc3339();
    let (st, l) = s.post("/api/leads/life-1/events", &json!({"type": "contacted", "at": contact_at})).await;
    // The lead was decided a moment ago, so "10 minutes later" is in the future: refused.
    assert_eq!((st, l["error"]["field"].as_str()), (422, Some("at")), "{l}");
    let (st, l) = s.post("/api/leads/life-1/events", &json!({"type": "contacted"})).await;
    assert_eq!(st, 200, "{l}");
    assert_eq!(l["state"], "contacted");
    let (st, l) = s.post("/api/leads/life-1/events", &json!({"type": "converted", "value": 1800.5})).await;
    assert_eq!((st, &l["state"]), (200, &json!("converted")), "{l}");
    // Converted still holds the slot until closed.
    assert_eq!(s.post("/api/routing/decide", &lead("life-2", "WA", &["LIFE"])).await.0, 202);
    let (st, l) = s.event("life-1", "closed").await;
    assert_eq!((st, &l["state"]), (200, &json!("closed")));
    let l = wait_for(&s, "life-2", |l| l["state"] == "reserved").await;
    assert_eq!(l["brokerId"], "p1");
    let (st, p) = s.get("/api/brokers/p1/performance").await;
    assert_eq!(st, 200);
    let a = &p["allTime"];
    assert_eq!((a["leads"].as_u64(), a["converted"].as_u64(), a["closed"].as_u64()), (Some(2), Some(1), Some(1)), "{p}");
    assert_eq!(a["conversionRate"], 1.0);
    assert_eq!(a["slaCompliance"], 1.0);
    assert_eq!(a["valueCaptured"], 1800.5);
    assert_eq!(p["recent"]["converted"], 1);
    assert_eq!(p["load"]["openLeads"], 1);
    let (st, board) = s.get("/api/brokers/leaderboard?metric=valueCaptured&limit=5").await;
    assert_eq!(st, 200, "{board}");
    assert_eq!(board["rows"][0]["brokerId"], "p1");
    assert_eq!(board["rows"][0]["value"], 1800.5);
    s.stop().await;
}

#[actix_rt::test]
async fn illegal_transitions_are_409_with_the_current_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("i1", "NY", &["HEALTH"], 3, 5, 10)).await;
    s.post("/api/routing/decide", &lead("h1", "NY", &["HEALTH"])).await;
    let (st, e) = s.event("h1", "converted").await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["error"]["currentState"], "reserved");
    assert_eq!(e["error"]["code"], "conflict");
    assert_eq!(s.event("h1", "contacted").await.0, 409);
    assert_eq!(s.event("h1", "accepted").await.0, 200);
    assert_eq!(s.event("h1", "accepted").await.0, 409);
    assert_eq!(s.event("h1", "rejected").await.1["error"]["currentState"], "accepted");
    assert_eq!(s.event("h1", "closed").await.0, 200);
    let (st, e) = s.event("h1", "lost").await;
    assert_eq!((st, &e["error"]["currentState"]), (409, &json!("closed")));
    assert_eq!(s.event("nobody", "accepted").await.0, 404);
    let (st, e) = s.post("/api/leads/h1/events", &json!({"type": "timed_out"})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("type")));
    let (st, e) = s.post("/api/leads/h1/events", &json!({"type": "teleported"})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("type")), "{e}");
    s.stop().await;
}

#[actix_rt::test]
async fn rejection_reroutes_to_the_next_broker() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("first", "IL", &["AUTO"], 5, 5, 10)).await;
    s.add_broker(&broker("second", "IL", &["AUTO"], 2, 5, 10)).await;
    let (_, d) = s.post("/api/routing/decide", &lead("rj-1", "IL", &["AUTO"])).await;
    assert_eq!(d["brokerId"], "first");
    let (st, l) = s.event("rj-1", "rejected").await;
    assert_eq!(st, 200, "{l}");
    assert_eq!(l["state"], "reserved");
    assert_eq!(l["brokerId"], "second");
    assert_eq!(l["tried"], json!(["first"]));
    let second = &l["decisions"][1];
    assert_eq!((second["attempt"].as_u64(), second["reroutedFrom"].as_str()), (Some(2), Some("first")));
    assert_eq!(s.get("/api/brokers/first").await.1["load"]["openLeads"], 0);
    let (_, p) = s.get("/api/brokers/first/performance").await;
    assert_eq!(p["allTime"]["rejected"], 1);
    // When the second rejects too, nobody is left: the lead waits in the queue.
    let (_, l) = s.event("rj-1", "rejected").await;
    assert_eq!(l["state"], "queued");
    assert_eq!(l["queuePosition"], 1);
    assert!(l["brokerId"].is_null());
    s.stop().await;
}

#[actix_rt::test]
async fn acceptance_timeout_reroutes_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let mut slow = broker("slow", "AZ", &["HOME"], 5, 5, 10);
    slow["sla"]["acceptTimeoutSeconds"] = json!(1);
    s.add_broker(&slow).await;
    s.add_broker(&broker("backup", "AZ", &["HOME"], 1, 5, 10)).await;
    let (_, d) = s.post("/api/routing/decide", &lead("to-1", "AZ", &["HOME"])).await;
    assert_eq!(d["brokerId"], "slow");
    let l = wait_for(&s, "to-1", |l| l["brokerId"] == "backup").await;
    assert_eq!(l["state"], "reserved");
    assert_eq!(l["events"][0]["event"], "timed_out");
    assert_eq!(l["events"][0]["brokerId"], "slow");
    let (_, p) = s.get("/api/brokers/slow/performance").await;
    assert_eq!((p["allTime"]["timedOut"].as_u64(), p["load"]["openLeads"].as_u64()), (Some(1), Some(0)));
    // An accepted reservation is not timed out; one reserved just after it still is (the
    // actor serves all its deadlines with one timer).
    let (_, d) = s.post("/api/routing/decide", &lead("to-2", "AZ", &["HOME"])).await;
    assert_eq!(d["brokerId"], "slow");
    let (_, d) = s.post("/api/routing/decide", &lead("to-3", "AZ", &["HOME"])).await;
    assert_eq!(d["brokerId"], "slow");
    assert_eq!(s.event("to-2", "accepted").await.0, 200);
    let l = wait_for(&s, "to-3", |l| l["brokerId"] == "backup").await;
    assert_eq!(l["events"][0]["event"], "timed_out");
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    let (_, l) = s.get("/api/leads/to-2").await;
    assert_eq!((l["state"].as_str(), l["brokerId"].as_str()), (Some("accepted"), Some("slow")));
    s.stop().await;
}

#[actix_rt::test]
async fn queued_leads_expire_and_can_be_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.routing.queue_expiry_seconds = 1).await;
    let (st, q) = s.post("/api/routing/decide", &lead("nobody-home", "VT", &["AUTO"])).await;
    assert_eq!(st, 202, "{q}");
    assert_eq!(q["status"], "queued");
    let (st, q2) = s.post("/api/routing/decide", &lead("withdrawn", "VT", &["AUTO"])).await;
    assert_eq!((st, q2["position"].as_u64()), (202, Some(2)));
    assert_eq!(s.event("withdrawn", "closed").await.1["state"], "closed");
    let l = wait_for(&s, "nobody-home", |l| l["state"] == "expired").await;
    assert!(l["queuePosition"].is_null());
    // Re-deciding an expired lead says so rather than routing it again.
    let (st, again) = s.post("/api/routing/decide", &lead("nobody-home", "VT", &["AUTO"])).await;
    assert_eq!((st, again["status"].as_str(), again["replayed"].as_bool()), (202, Some("expired"), Some(true)));
    s.stop().await;
}

/// One sample of `/metrics`, by its full name (labels included).
async fn metric(s: &Srv, name: &str) -> f64 {
    let text = s.get("/metrics").await.1["raw"].as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Polls `GET /api/leads/{id}` until it answers 404 (archived), for up to about 5 s.
async fn archived_within_5_s(s: &Srv, id: &str) -> bool {
    for _ in 0..250 {
        if s.get(&format!("/api/leads/{id}")).await.0 == 404 {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[actix_rt::test]
async fn finished_leads_leave_memory_after_their_retention_and_stay_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keep_none = |c: &mut leadrouter::Config| c.storage.finished_lead_retention_seconds = 0;
    let s = Srv::start_with(dir.path(), keep_none).await;
    s.add_broker(&broker("r1", "ID", &["AUTO"], 4, 5, 50)).await;
    for id in ["done-1", "open-1"] {
        assert_eq!(s.post("/api/routing/decide", &lead(id, "ID", &["AUTO"])).await.0, 200);
    }
    for ev in ["accepted", "contacted", "converted", "closed"] {
        assert_eq!(s.event("done-1", ev).await.0, 200, "{ev}");
    }
    // The sweep runs every tick (50 ms in tests): the closed lead goes, the open one stays.
    assert!(archived_within_5_s(&s, "done-1").await, "the closed lead was never archived");
    let (st, e) = s.get("/api/leads/done-1").await;
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
    assert_eq!(s.get("/api/leads/open-1").await.1["state"], "reserved");
    assert_eq!(metric(&s, "leadrouter_leads_archived_total").await, 1.0);
    assert_eq!(metric(&s, "leadrouter_leads_in_memory").await, 1.0);
    // The broker's record keeps the outcome.
    let p = s.get("/api/brokers/r1/performance").await.1;
    assert_eq!((p["allTime"]["converted"].as_u64(), p["allTime"]["closed"].as_u64()), (Some(1), Some(1)), "{p}");
    // The archived record is in the journal.
    let archived: Vec<Vec<String>> = crate::common::journal(dir.path())
        .into_iter()
        .filter_map(|(_, r)| match r {
            leadrouter_actors::Record::Archived { lead_ids, .. } => Some(lead_ids),
            _ => None,
        })
        .collect();
    assert_eq!(archived, [["done-1"]]);
    s.stop().await;

    // After a restart (snapshot, then journal), the lead is still gone and the open one kept.
    let s = Srv::start_with(dir.path(), keep_none).await;
    assert_eq!(s.get("/api/leads/done-1").await.0, 404);
    assert_eq!(s.get("/api/leads/open-1").await.1["state"], "reserved");
    // Its id can be decided again, as a new lead.
    let (st, d) = s.post("/api/routing/decide", &lead("done-1", "ID", &["AUTO"])).await;
    assert_eq!((st, d["replayed"].as_bool(), d["attempt"].as_u64()), (200, Some(false), Some(1)), "{d}");
    assert_eq!(s.get("/api/leads/done-1").await.1["state"], "reserved");
    s.stop().await;
}

#[actix_rt::test]
async fn beyond_the_most_finished_leads_the_oldest_are_archived_before_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    // An hour's retention, but room for two finished leads only.
    let keep_two = |c: &mut leadrouter::Config| c.storage.max_finished_leads = 2;
    let s = Srv::start_with(dir.path(), keep_two).await;
    s.add_broker(&broker("m1", "ID", &["AUTO"], 4, 10, 50)).await;
    for id in ["old-1", "old-2", "new-1", "new-2", "open-1"] {
        assert_eq!(s.post("/api/routing/decide", &lead(id, "ID", &["AUTO"])).await.0, 200, "{id}");
    }
    for id in ["old-1", "old-2", "new-1", "new-2"] {
        for ev in ["accepted", "closed"] {
            assert_eq!(s.event(id, ev).await.0, 200, "{id} {ev}");
        }
    }
    // The sweep runs every tick (50 ms in tests): the two that finished first go.
    assert!(archived_within_5_s(&s, "old-2").await, "the finished leads beyond the most kept were never archived");
    assert_eq!(s.get("/api/leads/old-1").await.0, 404);
    for id in ["new-1", "new-2"] {
        assert_eq!(s.get(&format!("/api/leads/{id}")).await.1["state"], "closed", "{id}");
    }
    assert_eq!(s.get("/api/leads/open-1").await.1["state"], "reserved");
    assert_eq!(metric(&s, "leadrouter_leads_archived_total").await, 2.0);
    assert_eq!(metric(&s, "leadrouter_leads_in_memory").await, 3.0);
    s.stop().await;

    // After a restart (snapshot, then journal) the same leads are in memory.
    let s = Srv::start_with(dir.path(), keep_two).await;
    assert_eq!(s.get("/api/leads/old-1").await.0, 404);
    assert_eq!(s.get("/api/leads/new-1").await.1["state"], "closed");
    s.stop().await;
}
