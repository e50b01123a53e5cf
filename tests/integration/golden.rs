//! The stored format holds: journals written by earlier builds (the committed fixtures under
//! `tests/fixtures/journal-v1/`, `journal-v2/` and `journal-v3/`, made by their `generate.sh`)
//! replay to the same state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use leadrouter_actors::Record;
use leadrouter_models::experiment::assign::point;
use leadrouter_models::EventKind;

use serde_json::{json, Value};

use crate::common::Srv;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1/journal");
const FIXTURE_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v2/journal");
const FIXTURE_V3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v3/journal");
const FIXTURE_V4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v4/journal");
const FIXTURE_V5: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v5/journal");

/// Serves a copied fixture. Its leads finished when it was written, days ago: they are kept in
/// memory for ten years here, so the archiver does not race the test's reads.
async fn serve(data: &Path, tweak: impl FnOnce(&mut leadrouter::Config)) -> Srv {
    Srv::start_with(data, |c| {
        c.storage.finished_lead_retention_seconds = 315_360_000;
        tweak(c);
    })
    .await
}

fn copy_fixture(data: &Path) {
    copy_from(FIXTURE, data)
}

fn copy_from(fixture: &str, data: &Path) {
    let to = data.join("journal");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixture).unwrap() {
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
    let s = serve(dir.path(), |_| {}).await;
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

/// Per experiment and arm, what the journal says: exposures (a lead's first decision naming the
/// experiment), converted leads, conversion value and contacted leads.
fn implied_totals(records: &[(u64, Record)]) -> BTreeMap<(String, String), [f64; 4]> {
    let mut arm_of: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut converted: HashSet<String> = HashSet::new();
    let mut contacted: HashSet<String> = HashSet::new();
    let mut out: BTreeMap<(String, String), [f64; 4]> = BTreeMap::new();
    for (_, r) in records {
        match r {
            Record::Decided { decision, .. } if !decision.experiments.is_empty() && !arm_of.contains_key(&decision.lead_id) => {
                let arms: Vec<_> = decision.experiments.iter().map(|x| (x.experiment_id.clone(), x.arm.clone())).collect();
                for a in &arms {
                    out.entry(a.clone()).or_default()[0] += 1.0;
                }
                arm_of.insert(decision.lead_id.clone(), arms);
            }
            Record::LeadEvent { lead_id, event, value, .. } => {
                for a in arm_of.get(lead_id).into_iter().flatten() {
                    let t = out.entry(a.clone()).or_default();
                    match event {
                        EventKind::Converted => {
                            if !converted.contains(lead_id) {
                                t[1] += 1.0;
                            }
                            t[2] += value.unwrap_or(0.0);
                        }
                        EventKind::Contacted if !contacted.contains(lead_id) => t[3] += 1.0,
                        _ => {}
                    }
                }
                match event {
                    EventKind::Converted => {
                        converted.insert(lead_id.clone());
                    }
                    EventKind::Contacted => {
                        contacted.insert(lead_id.clone());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    out
}

#[actix_rt::test]
async fn a_version_2_journal_replays_its_experiments() {
    let dir = tempfile::tempdir().unwrap();
    copy_from(FIXTURE_V2, dir.path());
    let records = crate::common::journal(dir.path());
    assert_eq!(records.len(), 130);
    let s = serve(dir.path(), |_| {}).await;
    assert_eq!(s.running().engine().report.replayed, 130);
    let (_, list) = s.get("/api/experiments").await;
    let got: Vec<_> = list["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["id"], e["status"], e["winner"], e["trafficOffset"], e["allocationUpdates"]]))
        .collect();
    assert_eq!(got, vec![json!(["ml-vs-specialty", "concluded", "treatment", 0.0, 0]), json!(["bandit", "running", null, 0.5, 2])]);
    // The bandit's shares are the last allocation journaled.
    let last = records.iter().rev().find_map(|(_, r)| match r {
        Record::ExperimentAllocated { shares, .. } => Some(shares.clone()),
        _ => None,
    });
    assert_eq!(list["experiments"][1]["currentShares"], json!(last.unwrap()));
    // Results are what the journal implies.
    let implied = implied_totals(&records);
    let mut seen = 0;
    for id in ["ml-vs-specialty", "bandit"] {
        let (st, r) = s.get(&format!("/api/experiments/{id}/results")).await;
        assert_eq!(st, 200, "{r}");
        for a in r["arms"].as_array().unwrap() {
            let t = implied[&(id.to_string(), a["name"].as_str().unwrap().to_string())];
            let got = [
                a["exposures"].as_f64().unwrap(),
                a["conversions"].as_f64().unwrap(),
                a["revenuePerLead"].as_f64().unwrap() * t[0],
                a["contacted"].as_f64().unwrap(),
            ];
            assert!((0..4).all(|i| (got[i] - t[i]).abs() < 1e-6), "{id} {}: {got:?} vs {t:?}", a["name"]);
            seen += t[0] as u64;
        }
    }
    assert_eq!(seen, 40, "every lead of the fixture but the last was an exposure");
    // The rollout is the default: a new lead outside the bandit's half of the layer is routed by
    // the winner's strategy and weights.
    let id = (0..).map(|i| format!("new-{i}")).find(|id| point("layer:main", "traffic", id) < 0.5).unwrap();
    let (_, d) = s
        .post("/api/routing/decide", &json!({"leadId": id, "leadData": {"insuranceTypes": ["AUTO"], "state": "TX", "estimatedValue": 900}}))
        .await;
    assert_eq!(d["experiments"], json!([]));
    assert_eq!((&d["strategy"], &d["breakdown"]["performance"]["weight"]), (&json!("ml"), &json!(0.4)), "{d}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_version_3_journal_replays_its_roi_decisions_and_throttling() {
    let dir = tempfile::tempdir().unwrap();
    copy_from(FIXTURE_V3, dir.path());
    let records = crate::common::journal(dir.path());
    let throttled: Vec<(String, u32)> = records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::BrokerThrottled { broker_id, withheld, .. } => Some((broker_id.clone(), *withheld)),
            _ => None,
        })
        .collect();
    let t1 = |w: u32| ("t1".to_string(), w);
    assert_eq!(throttled, vec![t1(1), t1(2), t1(1), t1(0)]);
    let s = serve(dir.path(), |c| c.security.admin_token = "admin-token-0123456789".into()).await;
    // Every roi decision reads back with its terms, and its score is their net.
    let mut roi = 0;
    for (_, r) in &records {
        let Record::Decided { decision, .. } = r else { continue };
        let (st, lead) = s.get(&format!("/api/leads/{}", decision.lead_id)).await;
        assert_eq!(st, 200, "{lead}");
        let d = lead["decisions"].as_array().unwrap().iter().find(|d| d["decisionId"] == decision.decision_id.as_str()).unwrap();
        if d["strategy"] == "roi" {
            roi += 1;
            let t = &d["breakdown"]["roi"];
            let net = t["expectedValue"].as_f64().unwrap() - t["cost"].as_f64().unwrap() - t["seatPrice"].as_f64().unwrap()
                + t["optimism"].as_f64().unwrap()
                + d["breakdown"]["adjustments"]["overload"].as_f64().unwrap_or(0.0);
            assert!((net - d["score"].as_f64().unwrap()).abs() < 0.02, "{d}");
            assert!(d["breakdown"]["explanation"].as_str().unwrap().starts_with("expected value "), "{d}");
        }
    }
    assert!(roi >= 13, "{roi} roi decisions");
    // Throttling ended lifted: t1 has its four seats.
    let (_, a) = s.send("GET", "/metrics", None).await;
    assert!(a["raw"].as_str().unwrap().contains("leadrouter_brokers_throttled 0"));
    let (_, e) = s.get("/api/experiments/roi-vs-ml").await;
    assert_eq!(e["arms"][1]["strategy"], "roi", "{e}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_version_4_journal_replays_bios_semantic_weights_and_terms() {
    let dir = tempfile::tempdir().unwrap();
    copy_from(FIXTURE_V4, dir.path());
    let s = serve(dir.path(), |_| {}).await;
    let (_, b) = s.get("/api/brokers/fleet").await;
    assert_eq!(b["bio"], "Fleet and trucking risks", "{b}");
    let (_, e) = s.get("/api/experiments/semantic-weight").await;
    assert_eq!(e["arms"][1]["weights"]["semantic"], 1.0, "{e}");
    let (st, lead) = s.get("/api/leads/m1").await;
    assert_eq!(st, 200, "{lead}");
    let t = &lead["decisions"][0]["breakdown"]["semantic"];
    assert!(t["similarLeads"].as_u64().unwrap() > 0, "{t}");
    assert!(t["evidence"].as_str().unwrap().ends_with("similar leads converted with this broker"), "{t}");
    let (_, plain) = s.get("/api/leads/p1").await;
    assert!(plain["decisions"][0]["breakdown"].get("semantic").is_none(), "{plain}");
    // The index is rebuilt from this journal: eight resolved leads with notes.
    let mut leads = 0;
    for _ in 0..200 {
        leads = s.get("/api/embeddings/stats").await.1["collections"]["leads"].as_u64().unwrap();
        if leads == 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(leads, 8);
    s.stop().await;
}

#[actix_rt::test]
async fn a_version_5_journal_replays_its_exploration_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    copy_from(FIXTURE_V5, dir.path());
    let s = serve(dir.path(), |_| {}).await;
    let (_, e) = s.get("/api/experiments/explore-arm").await;
    assert_eq!(e["arms"][1]["exploration"]["method"], "thompson", "{e}");
    let (_, lead) = s.get("/api/leads/s3").await;
    let d = &lead["decisions"];
    assert_eq!(lead["request"]["exploration"]["method"], "softmax", "{lead}");
    assert_eq!(d[1]["attempt"], 2);
    assert_eq!(d[1]["eligible"], 2, "the broker that rejected is out of the re-route: {lead}");
    let p = d[1]["propensity"].as_f64().unwrap() + d[1]["alternatives"][0]["probability"].as_f64().unwrap();
    assert!((p - 1.0).abs() < 1e-12, "{lead}");
    let (_, t) = s.get("/api/leads/t1").await;
    assert_eq!(t["decisions"][0]["exploration"], serde_json::json!({"method": "thompson", "band": 0.25}));
    // The resolved leads are an evaluation's rows: the nine resolved in the fixture, and the
    // reservations whose acceptance deadline passed long ago, timed out at start-up.
    let (st, job) = s.post("/api/policies/evaluate", &serde_json::json!({"policy": {"strategy": "random"}, "bootstrapSamples": 50})).await;
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let mut done = Value::Null;
    for _ in 0..400 {
        let (_, j) = s.get(&format!("/api/policies/evaluations/{id}")).await;
        if j["status"] == "done" {
            done = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(done["result"]["decisions"].as_u64().unwrap() >= 9, "{done}");
    assert!(done["result"]["estimates"]["conversionRate"]["dr"]["estimate"].is_number(), "{done}");
    s.stop().await;
}
