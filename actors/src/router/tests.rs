//! The router's own tests: decisions, caps and SLA on the engine clock, queue sweeps, working
//! hours, top-K, deadlines, placements, and property tests of the engine's invariants.

use super::*;
use crate::config::test_config as config;
use crate::engine::{journal_dir, Engine};
use crate::views::DecideOutcome;
use chrono::Duration;
use leadrouter_models::{DecideRequest, EventKind, Exclusion, LeadEventRequest};
use proptest::prelude::{prop, prop_oneof, proptest, Just, ProptestConfig, Strategy as Gen};
use std::collections::BTreeMap;

fn broker(id: &str, max: u32, cap: u32) -> Broker {
    let mut b: Broker = serde_json::from_str(r#"{"id":"x","name":"B","specialties":[{"type":"AUTO","proficiency":3}],"licenses":[{"state":"OR","lines":["AUTO","HOME"],"expiresOn":"2099-01-01"}],"capacity":{"maxConcurrent":1,"dailyCap":1}}"#).unwrap();
    b.id = id.into();
    b.capacity.max_concurrent = max;
    b.capacity.daily_cap = cap;
    b
}

fn lead(id: &str) -> DecideRequest {
    serde_json::from_value(
        serde_json::json!({"leadId": id, "leadData": {"insuranceTypes": ["AUTO"], "state": "OR", "estimatedValue": 500}}),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Decide(u8),
    Event(u8, EventKind),
    Drain,
    Archive,
}

fn op() -> impl Gen<Value = Op> {
    let kinds = prop::sample::select(vec![
        EventKind::Accepted,
        EventKind::Rejected,
        EventKind::Contacted,
        EventKind::Converted,
        EventKind::Lost,
        EventKind::Closed,
    ]);
    prop_oneof![
        4 => (0u8..40).prop_map(Op::Decide),
        6 => (0u8..40, kinds).prop_map(|(l, k)| Op::Event(l, k)),
        1 => Just(Op::Drain),
        1 => Just(Op::Archive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random traffic: no broker ever holds more than its capacity or takes more than its
    /// daily cap, and the state rebuilt from the journal equals every actor's live state and
    /// holds the same leads (finished leads are archived at once, and their ids reused).
    #[test]
    fn capacity_holds_and_replay_equals_live(ops in prop::collection::vec(op(), 1..120), caps in prop::collection::vec((1u32..4, 1u32..8), 1..5), arbiters in 0usize..3) {
        actix_rt::System::new().block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path());
            cfg.storage.finished_lead_retention_seconds = 0;
            let engine = start_placed(cfg, arbiters).await;
            let r = engine.router().clone();
            for (i, (max, cap)) in caps.iter().enumerate() {
                r.create_broker(broker(&format!("b{i}"), *max, *cap)).await.unwrap();
            }
            for op in ops {
                match op {
                    Op::Decide(l) => drop(r.decide(lead(&format!("l{l}"))).await.unwrap()),
                    Op::Event(l, k) => drop(r.lead_event(&format!("l{l}"), LeadEventRequest { kind: k, at: None, value: None }).await),
                    Op::Drain => {
                        let _ = r.drain_once().await;
                    }
                    Op::Archive => drop(r.archive_finished().await.unwrap()),
                }
                for (i, (max, cap)) in caps.iter().enumerate() {
                    let v = r.inspect(&format!("b{i}")).await.unwrap();
                    assert!(v.live.open_count() <= *max, "b{i} holds {} > {max}", v.live.open_count());
                    assert!(v.live.daily_used <= *cap, "b{i} used {} > {cap} today", v.live.daily_used);
                }
            }
            // Let background queue sweeps finish before comparing.
            while r.inner.draining.load(Ordering::Acquire) {
                actix_rt::time::sleep(StdDuration::from_millis(1)).await;
            }
            r.journal().flush().await.unwrap();
            let mut replay = EngineState::default();
            crate::storage::journal::read_all(&journal_dir(dir.path()), |s, rec| replay.apply(s, &rec)).unwrap();
            for (i, _) in caps.iter().enumerate() {
                let id = format!("b{i}");
                assert_eq!(r.inspect(&id).await.unwrap().live, replay.brokers[&id].live, "broker {id}");
            }
            for (id, lead) in &replay.leads {
                let live = r.lead(id).await.unwrap();
                assert_eq!((live.state, &live.broker_id, &live.decisions, &live.events), (lead.state, &lead.broker_id, &lead.decisions, &lead.events));
            }
            assert_eq!(r.inner.leads.len(), replay.leads.len(), "the same leads, none archived on one side only");
            engine.shutdown().await.unwrap();
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A snapshot that stopped after some of its leads and before its meta key (a crash
    /// between its batches), loaded and replayed, gives the state the whole journal gives.
    #[test]
    fn a_snapshot_stopped_between_batches_replays_to_the_journal_state(
        ops in prop::collection::vec(op(), 1..120),
        cuts in (0.0f64..1.0, 0.0f64..1.0),
        written in prop::collection::vec(prop::bool::ANY, 0..48),
    ) {
        actix_rt::System::new().block_on(async move {
            use crate::storage::snapshot::{note_changes, SnapshotStore};
            use std::collections::HashSet;
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path());
            cfg.storage.finished_lead_retention_seconds = 0;
            // Small segments, so start-up's reading skips whole segments the snapshot covers.
            cfg.storage.segment_bytes = 4096;
            let engine = start_placed(cfg, 1).await;
            let r = engine.router().clone();
            for i in 0..2 {
                r.create_broker(broker(&format!("b{i}"), 2, 6)).await.unwrap();
            }
            // Four lead ids, so archived ids come back often.
            for op in ops {
                match op {
                    Op::Decide(l) => drop(r.decide(lead(&format!("l{}", l % 4))).await.unwrap()),
                    Op::Event(l, k) => drop(r.lead_event(&format!("l{}", l % 4), LeadEventRequest { kind: k, at: None, value: None }).await),
                    Op::Drain => {
                        let _ = r.drain_once().await;
                    }
                    Op::Archive => drop(r.archive_finished().await.unwrap()),
                }
            }
            engine.shutdown().await.unwrap();
            let mut records = Vec::new();
            crate::storage::journal::read_all(&journal_dir(dir.path()), |seq, rec| records.push((seq, rec))).unwrap();
            let state_at = |k: usize| {
                let mut s = EngineState::default();
                for (seq, rec) in &records[..k] {
                    s.apply(*seq, rec);
                }
                s
            };
            let n = records.len();
            let first = (cuts.0 * n as f64) as usize;
            let second = first + (cuts.1 * (n - first) as f64) as usize;
            let mut store = SnapshotStore::open(&dir.path().join("stopped")).unwrap();
            let (mut brokers, mut leads) = (HashSet::new(), HashSet::new());
            for (_, rec) in &records[..first] {
                note_changes(rec, &mut brokers, &mut leads);
            }
            let old = state_at(first);
            store.save(&old, &brokers, &leads).unwrap();
            // The next snapshot writes some of its leads, and stops.
            let (mut brokers, mut leads) = (HashSet::new(), HashSet::new());
            for (_, rec) in &records[first..second] {
                note_changes(rec, &mut brokers, &mut leads);
            }
            let mut leads: Vec<String> = leads.into_iter().collect();
            leads.sort();
            let some = leads.iter().zip(written.iter().chain(std::iter::repeat(&true))).filter(|(_, w)| **w).map(|(id, _)| id);
            store.write_leads(&state_at(second), some, 3).unwrap();
            let (meta, mut loaded) = store.load().unwrap().unwrap();
            assert_eq!(meta.seq, old.seq, "the meta key still covers the first snapshot");
            // As start-up reads the journal: only what the meta key does not cover.
            crate::storage::journal::read_after(&journal_dir(dir.path()), meta.seq, |seq, rec| loaded.apply(seq, &rec)).unwrap();
            assert_eq!(loaded, state_at(n));
        });
    }
}

#[actix_rt::test]
async fn decisions_caps_and_sla_follow_the_engine_clock() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    // The test broker has no schedule, so its day is the UTC day.
    let t0 = Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap();
    let clock = crate::clock::ManualClock::new(t0);
    let engine = Engine::start_with_clock(config(dir.path()), vec![], clock.clone()).await.unwrap();
    let r = engine.router().clone();
    r.create_broker(broker("c1", 5, 1)).await.unwrap();
    let DecideOutcome::Assigned(a) = r.decide(lead("first")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.decided_at, t0, "decisions are stamped with the engine clock");
    // The daily cap of 1 is used up on the clock's day, whatever the wall clock says.
    let DecideOutcome::Waiting(w) = r.decide(lead("second")).await.unwrap() else { panic!("queued expected") };
    assert_eq!(w.excluded.get(&Exclusion::DailyCapReached), Some(&1));
    // Two simulated hours later the broker makes first contact: 120 minutes, an SLA miss
    // against the 30-minute target.
    clock.advance(Duration::hours(2));
    r.lead_event("first", LeadEventRequest { kind: EventKind::Accepted, at: None, value: None }).await.unwrap();
    r.lead_event("first", LeadEventRequest { kind: EventKind::Contacted, at: None, value: None }).await.unwrap();
    let p = r.performance("c1").await.unwrap();
    assert_eq!((p.all_time.avg_first_contact_minutes, p.all_time.sla_compliance), (Some(120.0), Some(0.0)));
    // An event later than the engine's now is refused as in the future.
    let future = LeadEventRequest { kind: EventKind::Closed, at: Some(t0 + Duration::hours(3)), value: None };
    assert!(r.lead_event("first", future).await.is_err());
    // The next day the cap is free again.
    clock.advance(Duration::days(1));
    let DecideOutcome::Assigned(b) = r.decide(lead("third")).await.unwrap() else { panic!("assigned on the next day") };
    assert_eq!(b.decision.decided_at, t0 + Duration::hours(26));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_simulated_engine_sweeps_its_queue_only_when_asked() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap();
    let clock = crate::clock::ManualClock::new(t0);
    let engine = Engine::start_simulated(config(dir.path()), clock.clone()).await.unwrap();
    let r = engine.router().clone();
    r.create_broker(broker("s1", 1, 10)).await.unwrap();
    assert!(matches!(r.decide(lead("a")).await.unwrap(), DecideOutcome::Assigned(_)));
    assert!(matches!(r.decide(lead("b")).await.unwrap(), DecideOutcome::Waiting(_)));
    assert!(matches!(r.decide(lead("c")).await.unwrap(), DecideOutcome::Waiting(_)));
    // Closing frees the seat, but nothing sweeps the queue behind the simulation's back.
    r.lead_event("a", LeadEventRequest { kind: EventKind::Closed, at: None, value: None }).await.unwrap();
    actix_rt::time::sleep(StdDuration::from_millis(100)).await;
    assert_eq!(r.lead("b").await.unwrap().state, LeadState::Queued);
    let sweep = r.drain().await;
    assert_eq!(sweep, Sweep { assigned: vec![("b".into(), "s1".into())], expired: vec![] });
    // An hour later (the queue expiry) the sweep reports the lead that waited too long.
    clock.advance(Duration::hours(1));
    assert_eq!(r.drain().await, Sweep { assigned: vec![], expired: vec!["c".into()] });
    assert_eq!(r.lead("c").await.unwrap().state, LeadState::Expired);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn working_hours_are_read_in_each_broker_time_zone() {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    // Monday 2030-01-07 18:00 UTC: 23:30 in Kolkata, 10:00 in Los Angeles.
    let clock = crate::clock::ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap());
    let engine = Engine::start_with_clock(config(dir.path()), vec![], clock.clone()).await.unwrap();
    let r = engine.router().clone();
    // One scan meets every zone: a broker whose hours hold only in another zone's local time
    // is outside them.
    for (id, tz, from, to) in [
        ("h-utc", "UTC", "17:00", "19:00"),
        ("h-kolkata-in", "Asia/Kolkata", "23:00", "24:00"),
        ("h-kolkata-out", "Asia/Kolkata", "17:00", "19:00"),
        ("h-la-out", "America/Los_Angeles", "17:00", "19:00"),
    ] {
        let mut b = broker(id, 5, 5);
        b.schedule = Some(leadrouter_models::Schedule {
            timezone: tz.into(),
            hours: [("mon".to_string(), [from.to_string(), to.to_string()])].into(),
        });
        r.create_broker(b).await.unwrap();
    }
    let p = r.predict(lead("hours"), Default::default()).await.unwrap();
    let mut ids: Vec<_> = p.candidates.iter().map(|c| c.broker_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["h-kolkata-in", "h-utc"]);
    assert_eq!((p.eligible, p.excluded.get(&Exclusion::OutsideHours)), (2, Some(&2)));
    // An hour later it is Tuesday in Kolkata and 19:00, the exclusive end, in UTC.
    clock.advance(Duration::hours(1));
    let p = r.predict(lead("hours"), Default::default()).await.unwrap();
    assert_eq!((p.eligible, p.excluded.get(&Exclusion::OutsideHours)), (0, Some(&4)));
    engine.shutdown().await.unwrap();
}

/// An engine with its broker actors on `arbiters` threads of their own, or with 0 on this
/// thread. None: a decision settles in place; one: scored and reserved by a task on that
/// arbiter's thread; two: from the caller.
async fn start_placed(mut cfg: EngineConfig, arbiters: usize) -> Engine {
    match arbiters {
        0 => Engine::start_embedded(cfg, vec![]).await.unwrap(),
        n => {
            cfg.routing.arbiters = n;
            Engine::start(cfg, vec![]).await.unwrap()
        }
    }
}

#[actix_rt::test]
async fn only_the_top_k_are_asked_to_score() {
    for arbiters in [0, 1, 2] {
        top_k_asked(arbiters).await;
    }
}

async fn top_k_asked(arbiters: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.routing.top_k = 8;
    let engine = start_placed(cfg, arbiters).await;
    let r = engine.router().clone();
    // Created in descending id order, so index positions run against the ids.
    for i in (0..100).rev() {
        let mut b = broker(&format!("k{i:03}"), 5, 5);
        b.specialties[0].proficiency = (i % 5 + 1) as u8;
        r.create_broker(b).await.unwrap();
    }
    let DecideOutcome::Assigned(a) = r.decide(lead("k-lead")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!((a.decision.eligible, a.decision.scored), (100, 8));
    // The pre-rank keeps the best-skilled brokers in the top K: 20 tie at proficiency 5, and
    // the 8 first by id are asked. They tie again on score; the first by id wins.
    assert_eq!(a.decision.breakdown.specialty.value, 1.0);
    assert_eq!(a.decision.broker_id, "k004");
    let mut handled = BTreeMap::new();
    for i in 0..100 {
        let n = r.inspect(&format!("k{i:03}")).await.unwrap().counters.handled;
        // Less the Inspect itself.
        if n > 1 {
            handled.insert(i, n - 1);
        }
    }
    // Score to k004, k009, …, k039, and one Reserve to the winner.
    let asked: BTreeMap<_, _> = (0..8).map(|j| (5 * j + 4, if j == 0 { 2 } else { 1 })).collect();
    assert_eq!(handled, asked);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_broker_that_misses_the_deadline_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(dir.path()), vec![]).await.unwrap();
    let r = engine.router().clone();
    // Two arbiters, brokers placed round robin: b0 on the first, b1 on the second.
    let mut strong = broker("b0", 5, 5);
    strong.specialties[0].proficiency = 5;
    r.create_broker(strong).await.unwrap();
    r.create_broker(broker("b1", 5, 5)).await.unwrap();
    // Stall b0's arbiter thread past the 50 ms deadline.
    r.inner.arbiters[0].spawn_fn(|| std::thread::sleep(StdDuration::from_millis(300)));
    let DecideOutcome::Assigned(a) = r.decide(lead("late")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.broker_id, "b1");
    assert_eq!(a.decision.skipped.len(), 1);
    assert_eq!((a.decision.skipped[0].broker_id.as_str(), a.decision.skipped[0].reason.as_str()), ("b0", "deadline"));
    assert!(a.decision.breakdown.specialty.value < 1.0);
    engine.shutdown().await.unwrap();
}

/// An engine on two arbiters with broker b0 on the first and b1 on the second.
async fn two_arbiters(dir: &std::path::Path) -> (Engine, RouterSupervisor) {
    let engine = Engine::start(config(dir), vec![]).await.unwrap();
    let r = engine.router().clone();
    r.create_broker(broker("b0", 5, 5)).await.unwrap();
    r.create_broker(broker("b1", 5, 5)).await.unwrap();
    (engine, r)
}

/// Stops the first arbiter, and b0 with it; returns once it no longer takes work.
async fn stop_first_arbiter(r: &RouterSupervisor) {
    let first = &r.inner.arbiters[0];
    first.stop();
    while first.spawn(async {}) {
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn a_broker_whose_arbiter_has_stopped_is_skipped_as_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, r) = two_arbiters(dir.path()).await;
    stop_first_arbiter(&r).await;
    let DecideOutcome::Assigned(a) = r.decide(lead("orphan")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.broker_id, "b1");
    let skipped: Vec<_> = a.decision.skipped.iter().map(|s| (s.broker_id.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped, [("b0", "mailbox")]);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_record_that_cannot_reach_its_broker_actor_is_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, r) = two_arbiters(dir.path()).await;
    let mut req = lead("stranded");
    req.exclude_brokers = vec!["b1".into()];
    let DecideOutcome::Assigned(a) = r.decide(req).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.broker_id, "b0");
    let failures = |what: &str| r.inner.metrics.actor_send_failures.with_label_values(&[what]).get();
    assert_eq!(failures("apply"), 0);
    stop_first_arbiter(&r).await;
    // The event is journaled and the lead moves on; the actor cannot hear of it.
    let ev: LeadEventRequest = serde_json::from_value(serde_json::json!({"type": "accepted"})).unwrap();
    assert_eq!(r.lead_event("stranded", ev).await.unwrap().state, LeadState::Accepted);
    assert_eq!(failures("apply"), 1);
    assert!(r.metrics_text().contains("leadrouter_actor_send_failures_total{message=\"apply\"} 1"));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn an_embedded_engine_keeps_its_actors_on_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start_embedded(config(dir.path()), vec![]).await.unwrap();
    let r = engine.router().clone();
    r.create_broker(broker("b0", 1, 5)).await.unwrap();
    // The one arbiter is this thread's: `routing.arbiters = 2` in the config does not apply.
    assert_eq!(r.inner.arbiters.len(), 1);
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(r.inner.arbiters[0].spawn_fn(move || {
        let _ = tx.send(std::thread::current().id());
    }));
    assert_eq!(rx.await.unwrap(), std::thread::current().id());
    // Decided in place: reserved, journaled, and b0 is then full.
    let DecideOutcome::Assigned(a) = r.decide(lead("here")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.broker_id, "b0");
    assert_eq!(r.inspect("b0").await.unwrap().live.open.keys().collect::<Vec<_>>(), ["here"]);
    let DecideOutcome::Waiting(w) = r.decide(lead("full")).await.unwrap() else { panic!("queued expected") };
    assert_eq!(w.status, LeadState::Queued);
    assert_eq!(r.inner.metrics.settle_abandoned.get(), 0);
    let profile = r.inner.index.get("b0").unwrap().broker.clone();
    engine.shutdown().await.unwrap();
    // With the engine and the last router handle gone, b0's actor ends and lets go of its
    // profile.
    drop(r);
    for _ in 0..200 {
        if Arc::strong_count(&profile) == 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(Arc::strong_count(&profile), 1);
    let mut replay = EngineState::default();
    crate::storage::journal::read_all(&journal_dir(dir.path()), |s, rec| replay.apply(s, &rec)).unwrap();
    assert_eq!(replay.brokers["b0"].live.open.keys().collect::<Vec<_>>(), ["here"]);
}

#[test]
fn an_embedded_engine_outside_an_actix_system_is_refused_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Err(e) = rt.block_on(Engine::start_embedded(config(&data), vec![])) else { panic!("refusal expected") };
    assert_eq!(e.to_string(), "actor unavailable: an engine with its actors on the caller's thread must start inside an actix system");
    assert!(!data.exists());
}

/// An engine with one arbiter, and broker `b0`, with room for one lead, on it.
async fn one_arbiter(dir: &std::path::Path) -> (Engine, RouterSupervisor) {
    let mut cfg = config(dir);
    cfg.routing.arbiters = 1;
    let engine = Engine::start(cfg, vec![]).await.unwrap();
    let r = engine.router().clone();
    r.create_broker(broker("b0", 1, 5)).await.unwrap();
    (engine, r)
}

#[actix_rt::test]
async fn a_stalled_arbiter_leaves_the_lead_queued_and_reserves_nothing_later() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, r) = one_arbiter(dir.path()).await;
    // Stall the only arbiter past twice the 50 ms deadline: the settle task cannot start.
    r.inner.arbiters[0].spawn_fn(|| std::thread::sleep(StdDuration::from_millis(300)));
    let DecideOutcome::Waiting(w) = r.decide(lead("stalled")).await.unwrap() else { panic!("queued expected") };
    assert_eq!(w.status, LeadState::Queued);
    assert_eq!(r.inner.metrics.settle_abandoned.get(), 1);
    assert_eq!(r.lead("stalled").await.unwrap().state, LeadState::Queued);
    // Waits for the stall to end (the abandoned task starts then).
    r.inspect("b0").await.unwrap();
    // The next lead takes b0's only seat. Had the abandoned task reserved it (its `Reserve`
    // reaches b0's mailbox first), this one would find b0 full.
    let DecideOutcome::Assigned(a) = r.decide(lead("after")).await.unwrap() else { panic!("assigned expected") };
    assert_eq!(a.decision.broker_id, "b0");
    let live = r.inspect("b0").await.unwrap().live;
    assert_eq!(live.open.keys().collect::<Vec<_>>(), ["after"]);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn with_its_only_arbiter_stopped_a_lead_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, r) = one_arbiter(dir.path()).await;
    let only = &r.inner.arbiters[0];
    only.stop();
    while only.spawn(async {}) {
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let DecideOutcome::Waiting(w) = r.decide(lead("orphan")).await.unwrap() else { panic!("queued expected") };
    assert_eq!(w.status, LeadState::Queued);
    engine.shutdown().await.unwrap();
}
