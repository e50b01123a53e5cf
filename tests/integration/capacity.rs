//! Capacity under concurrency: no broker ever exceeds its concurrent capacity or daily cap.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use leadrouter_actors::Record;

use crate::common::{broker, journal, journal_open_counts, lead, Srv};

#[actix_rt::test]
async fn a_thousand_concurrent_decides_never_overfill_and_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    const BROKERS: usize = 10;
    const MAX: u32 = 5;
    const CAP: u32 = 8;
    let mut max = HashMap::new();
    for i in 0..BROKERS {
        let id = format!("cap-{i}");
        s.add_broker(&broker(&id, "CO", &["AUTO"], (i % 5 + 1) as u8, MAX, CAP)).await;
        max.insert(id, MAX);
    }
    let results: Vec<(u16, serde_json::Value)> = stream::iter(0..1000)
        .map(|i| {
            let s = &s;
            async move { s.post("/api/routing/decide", &lead(&format!("c-{i}"), "CO", &["AUTO"])).await }
        })
        .buffer_unordered(1000)
        .collect()
        .await;
    let assigned: Vec<String> =
        results.iter().filter(|(st, _)| *st == 200).map(|(_, d)| d["leadId"].as_str().unwrap().to_string()).collect();
    let queued = results.iter().filter(|(st, _)| *st == 202).count();
    assert_eq!(assigned.len(), BROKERS * MAX as usize, "exactly the concurrent capacity is assigned");
    assert_eq!(queued, 1000 - assigned.len(), "the rest is queued, none fails");
    for i in 0..BROKERS {
        let (_, b) = s.get(&format!("/api/brokers/cap-{i}")).await;
        assert_eq!(b["load"]["openLeads"], MAX);
    }
    // Close every assigned lead: capacity frees and queued leads flow in until the daily caps.
    close_all(&s, &assigned).await;
    let decided_ids = |dir: &std::path::Path| -> Vec<String> {
        journal(dir)
            .into_iter()
            .filter_map(|(_, r)| match r {
                Record::Decided { decision, .. } => Some(decision.lead_id.clone()),
                _ => None,
            })
            .collect()
    };
    let cap_total = BROKERS * CAP as usize;
    let mut decided = decided_ids(dir.path());
    for _ in 0..250 {
        if decided.len() >= cap_total {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        decided = decided_ids(dir.path());
    }
    assert_eq!(decided.len(), cap_total, "queued leads fill exactly the daily caps");
    for i in 0..BROKERS {
        let (_, b) = s.get(&format!("/api/brokers/cap-{i}")).await;
        assert_eq!((b["load"]["dailyUsed"].as_u64(), b["load"]["openLeads"].as_u64()), (Some(CAP as u64), Some((CAP - MAX) as u64)), "{b}");
    }
    // Closing those too assigns nothing more today: every daily cap is used.
    close_all(&s, &decided[assigned.len()..]).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(decided_ids(dir.path()).len(), cap_total);
    for i in 0..BROKERS {
        let (_, b) = s.get(&format!("/api/brokers/cap-{i}")).await;
        assert_eq!(b["load"]["openLeads"], 0, "{b}");
    }
    let (_, r) = s.get("/readyz").await;
    assert_eq!(r["queued"], 1000 - BROKERS * CAP as usize);
    // Replaying the journal record by record: never above capacity, never above the cap.
    let records = journal(dir.path());
    let open = journal_open_counts(&records, &max);
    assert!(open.values().all(|&n| n == 0), "{open:?}");
    let mut per_broker: HashMap<String, u32> = HashMap::new();
    for (_, r) in &records {
        if let Record::Decided { decision, .. } = r {
            let n = per_broker.entry(decision.broker_id.clone()).or_default();
            *n += 1;
            assert!(*n <= CAP, "daily cap exceeded for {}", decision.broker_id);
        }
    }
    s.stop().await;
}

async fn close_all(s: &Srv, ids: &[String]) {
    for id in ids {
        assert_eq!(s.event(id, "accepted").await.0, 200);
        assert_eq!(s.event(id, "closed").await.0, 200);
    }
}
