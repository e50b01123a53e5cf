//! The stored format holds: a journal written by an earlier build (the committed fixture under
//! `tests/fixtures/journal-v1/`, made by its `generate.sh`) replays to the same state.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::Srv;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1/journal");

fn copy_fixture(data: &Path) {
    let to = data.join("journal");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(FIXTURE).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// What replay must rebuild, in fields that do not depend on today's date.
async fn state(s: &Srv) -> Value {
    let mut brokers = serde_json::Map::new();
    let (_, list) = s.get("/api/brokers").await;
    for b in list["brokers"].as_array().or(list.as_array()).expect("broker list") {
        let id = b["id"].as_str().unwrap();
        let (_, p) = s.get(&format!("/api/brokers/{id}/performance")).await;
        let all = &p["allTime"];
        brokers.insert(
            id.into(),
            json!({
                "group": b["group"], "openLeads": b["load"]["openLeads"],
                "leads": all["leads"], "accepted": all["accepted"], "rejected": all["rejected"],
                "contacted": all["contacted"], "converted": all["converted"], "lost": all["lost"],
                "closed": all["closed"], "valueCaptured": all["valueCaptured"],
            }),
        );
    }
    let mut leads = serde_json::Map::new();
    for id in ["l1", "l2", "l3", "l4", "l5", "l6", "q1"] {
        let (st, l) = s.get(&format!("/api/leads/{id}")).await;
        let v = if st == 404 {
            json!("archived")
        } else {
            json!({
                "state": l["state"], "brokerId": l["brokerId"],
                "decisions": l["decisions"].as_array().unwrap().iter()
                    .map(|d| json!([d["brokerId"], d["strategy"], d["attempt"], d["score"], d["propensity"]])).collect::<Vec<_>>(),
                "events": l["events"].as_array().unwrap().iter().map(|e| e["event"].clone()).collect::<Vec<_>>(),
            })
        };
        leads.insert(id.into(), v);
    }
    json!({"brokers": brokers, "leads": leads})
}

#[actix_rt::test]
async fn a_version_1_journal_replays_to_the_state_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let records = crate::common::journal(dir.path());
    assert_eq!(records.len(), 33);
    let s = Srv::start(dir.path()).await;
    assert_eq!(s.running().engine().report.replayed, 33);
    let perf = |leads: u32, accepted: u32, rejected: u32, contacted: u32, converted: u32, lost: u32, closed: u32, value: f64| {
        json!({"leads": leads, "accepted": accepted, "rejected": rejected, "contacted": contacted,
               "converted": converted, "lost": lost, "closed": closed, "valueCaptured": value})
    };
    let mut b1 = perf(4, 3, 1, 2, 1, 0, 1, 1800.0);
    b1["group"] = json!("north");
    b1["openLeads"] = json!(2);
    let mut b2 = perf(2, 2, 0, 1, 0, 1, 1, 0.0);
    b2["group"] = json!("north");
    b2["openLeads"] = json!(1);
    let mut b3 = perf(1, 0, 1, 0, 0, 0, 0, 0.0);
    b3["group"] = json!("south");
    b3["openLeads"] = json!(0);
    let expected = json!({
        "brokers": {"b1": b1, "b2": b2, "b3": b3},
        "leads": {
            "l1": "archived", "l2": "archived", "l3": "archived", "q1": "archived",
            "l4": {"state": "accepted", "brokerId": "b2", "events": ["rejected", "accepted"],
                   "decisions": [["b3", "random", 1, 0.75, 1.0], ["b2", "random", 2, 0.8221, 1.0]]},
            "l5": {"state": "contacted", "brokerId": "b1", "events": ["accepted", "contacted"],
                   "decisions": [["b1", "weighted_round_robin", 1, 0.8913, 1.0]]},
            "l6": {"state": "accepted", "brokerId": "b1", "events": ["accepted"],
                   "decisions": [["b1", "ml", 1, 0.8921, 1.0]]},
        }
    });
    // Scores as the API shows them, rounded for people; the journal keeps them exact.
    assert_eq!(state(&s).await, expected);
    let (_, l4) = s.get("/api/leads/l4").await;
    assert_eq!(l4["decisions"][0]["leadLines"], json!(["AUTO"]));
    assert_eq!(l4["decisions"][0]["breakdown"]["sla"]["contribution"], json!(0.09));
    // Broker c1 was created, edited and deleted.
    assert_eq!(s.get("/api/brokers/c1").await.0, 404);
    s.stop().await;
}
