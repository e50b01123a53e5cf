//! Deciding leads: the seed example, explanations, strategies, idempotency and bad input.

use serde_json::{json, Value};

use crate::common::{broker, lead, Srv};

const SEED: &str = r#"{"leadId":"lead-123","leadData":{"insuranceTypes":["AUTO","HOME"],"urgency":"HIGH","state":"CA","estimatedValue":25000,"complexity":7},"excludeBrokers":["broker-9"],"requireSpecialties":["AUTO","HOME"],"strategy":"specialty"}"#;

async fn seed_world(s: &Srv) {
    s.add_broker(&broker("ca-expert", "CA", &["AUTO", "HOME"], 5, 10, 50)).await;
    s.add_broker(&broker("ca-good", "CA", &["AUTO", "HOME"], 3, 10, 50)).await;
    // Licensed in CA for AUTO only: cannot write the HOME part.
    s.add_broker(&broker("ca-auto-only", "CA", &["AUTO"], 5, 10, 50)).await;
    s.add_broker(&broker("nv-expert", "NV", &["AUTO", "HOME"], 5, 10, 50)).await;
    // Licensed for both, but HOME is not a specialty.
    let mut no_home = broker("ca-no-home-skill", "CA", &["AUTO", "HOME"], 5, 10, 50);
    no_home["specialties"] = json!([{"type": "AUTO", "proficiency": 5}]);
    s.add_broker(&no_home).await;
    s.add_broker(&broker("broker-9", "CA", &["AUTO", "HOME"], 5, 10, 50)).await;
    let mut away = broker("ca-away", "CA", &["AUTO", "HOME"], 5, 10, 50);
    away["status"] = json!("away");
    s.add_broker(&away).await;
    let mut expired = broker("ca-expired", "CA", &["AUTO", "HOME"], 5, 10, 50);
    expired["licenses"][0]["expiresOn"] = json!("2020-01-01");
    s.add_broker(&expired).await;
}

#[actix_rt::test]
async fn seed_lead_gets_a_licensed_specialist_with_the_full_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    seed_world(&s).await;
    let (status, d) = s.send("POST", "/api/routing/decide", Some(SEED.as_bytes())).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["brokerId"], "ca-expert");
    assert_eq!(d["status"], "assigned");
    assert_eq!(d["strategy"], "specialty");
    assert_eq!(d["propensity"], 1.0);
    assert_eq!(d["replayed"], false);
    assert!(d["decisionId"].as_str().unwrap().starts_with("dec-"));
    assert!(d["decisionMicros"].as_u64().is_some());
    // Four factors with the seed weights, summing to the score.
    let b = &d["breakdown"];
    let mut total = 0.0;
    for (f, w) in [("specialty", 0.4), ("performance", 0.3), ("capacity", 0.2), ("sla", 0.1)] {
        assert_eq!(b[f]["weight"], w, "{f}");
        total += b[f]["contribution"].as_f64().unwrap();
    }
    assert!((total - d["score"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(b["specialty"]["value"], 1.0);
    assert_eq!(b["conversionSource"], "empirical_bayes");
    // HIGH urgency: the stricter SLA target (half of 30 minutes).
    assert_eq!(d["slaTargetMinutes"], 15);
    // The other eligible broker is the alternative, with a lower score.
    let alts = d["alternatives"].as_array().unwrap();
    assert_eq!(alts.len(), 1);
    assert_eq!(alts[0]["brokerId"], "ca-good");
    assert!(alts[0]["score"].as_f64().unwrap() < d["score"].as_f64().unwrap());
    assert_eq!(d["eligible"], 2);
    assert_eq!(d["excluded"], json!({"excluded": 1, "notLicensed": 2, "licenseExpired": 1, "missingSpecialty": 1, "unavailable": 1}));
    // The broker's load shows the reservation.
    let (_, b) = s.get("/api/brokers/ca-expert").await;
    assert_eq!(b["load"]["openLeads"], 1);
    let (_, l) = s.get("/api/leads/lead-123").await;
    assert_eq!(l["state"], "reserved");
    assert_eq!(l["decisions"][0]["decisionId"], d["decisionId"]);
    s.stop().await;
}

#[actix_rt::test]
async fn deciding_twice_returns_the_first_decision_without_a_second_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("a", "TX", &["LIFE"], 4, 5, 10)).await;
    s.add_broker(&broker("b", "TX", &["LIFE"], 4, 5, 10)).await;
    let body = lead("dup-1", "TX", &["LIFE"]);
    let (s1, d1) = s.post("/api/routing/decide", &body).await;
    // Concurrent repeats as well as a later one.
    let repeats = futures_util::future::join_all((0..5).map(|_| s.post("/api/routing/decide", &body))).await;
    assert_eq!(s1, 200);
    for (st, d) in repeats {
        assert_eq!(st, 200);
        assert_eq!(d["decisionId"], d1["decisionId"]);
        assert_eq!(d["replayed"], true);
    }
    let (_, a) = s.get("/api/brokers/a").await;
    let (_, b) = s.get("/api/brokers/b").await;
    assert_eq!(a["load"]["openLeads"].as_u64().unwrap() + b["load"]["openLeads"].as_u64().unwrap(), 1);
    let decided = crate::common::journal(dir.path()).iter().filter(|(_, r)| matches!(r, leadrouter_actors::Record::Decided { .. })).count();
    assert_eq!(decided, 1);
    s.stop().await;
}

#[actix_rt::test]
async fn baseline_strategies_round_robin_and_random_propensity() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    for id in ["r1", "r2", "r3"] {
        s.add_broker(&broker(id, "OH", &["AUTO"], 3, 100, 100)).await;
    }
    let mut seen = Vec::new();
    for i in 0..6 {
        let mut l = lead(&format!("rr-{i}"), "OH", &["AUTO"]);
        l["strategy"] = json!("round_robin");
        let (st, d) = s.post("/api/routing/decide", &l).await;
        assert_eq!(st, 200, "{d}");
        assert_eq!(d["propensity"], 1.0);
        seen.push(d["brokerId"].as_str().unwrap().to_string());
    }
    // Each broker once per cycle, in the same order both cycles.
    assert_eq!(seen[..3], seen[3..]);
    let mut cycle = seen[..3].to_vec();
    cycle.sort();
    assert_eq!(cycle, ["r1", "r2", "r3"]);
    let mut l = lead("rand-1", "OH", &["AUTO"]);
    l["strategy"] = json!("random");
    let (_, d) = s.post("/api/routing/decide", &l).await;
    assert!((d["propensity"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12, "{d}");
    // Weighted round robin: a weight-3 broker gets three leads for every one of a weight-1.
    let mut heavy = broker("w-heavy", "UT", &["AUTO"], 3, 100, 100);
    heavy["weight"] = json!(3.0);
    s.add_broker(&heavy).await;
    s.add_broker(&broker("w-light", "UT", &["AUTO"], 3, 100, 100)).await;
    let mut counts = std::collections::HashMap::new();
    for i in 0..40 {
        let mut l = lead(&format!("wrr-{i}"), "UT", &["AUTO"]);
        l["strategy"] = json!("weighted_round_robin");
        let (_, d) = s.post("/api/routing/decide", &l).await;
        *counts.entry(d["brokerId"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts["w-heavy"], 30, "{counts:?}");
    assert_eq!(counts["w-light"], 10, "{counts:?}");
    s.stop().await;
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[actix_rt::test]
async fn bad_input_gets_a_4xx_naming_the_field_and_nothing_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("a", "CA", &["AUTO"], 3, 5, 10)).await;
    let before = crate::common::journal(dir.path()).len();

    let (st, e) = s.send("POST", "/api/routing/decide", Some(b"{\"leadId\": \"x\", ")).await;
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("malformed_json")), "{e}");

    let mut l = lead("bad", "CA", &["AUTO"]);
    l["leadData"]["insuranceTypes"] = json!(["AUTO", "BOAT"]);
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, field(&e)), (422, "leadData.insuranceTypes[1]"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("BOAT"));

    let (st, e) = s.post("/api/routing/decide", &lead("bad", "ZZ", &["AUTO"])).await;
    assert_eq!((st, field(&e)), (422, "leadData.state"), "{e}");

    let mut l = lead("bad", "CA", &["AUTO"]);
    l["leadData"]["estimatedValue"] = json!(-5);
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, field(&e)), (422, "leadData.estimatedValue"), "{e}");

    let mut l = lead("bad", "CA", &["AUTO"]);
    l["leadData"]["complexity"] = json!(0);
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, field(&e)), (422, "leadData.complexity"), "{e}");

    let mut l = lead("bad", "CA", &["AUTO"]);
    l["leadData"].as_object_mut().unwrap().remove("state");
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, field(&e)), (422, "leadData.state"), "{e}");

    let mut l = lead("bad", "CA", &["AUTO"]);
    l["strategy"] = json!("fastest");
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, field(&e)), (422, "strategy"), "{e}");

    let (st, e) = s.post("/api/routing/decide", &lead("has space", "CA", &["AUTO"])).await;
    assert_eq!((st, field(&e)), (422, "leadId"), "{e}");

    let leads: Vec<Value> = (0..1001).map(|i| lead(&format!("b{i}"), "CA", &["AUTO"])).collect();
    let (st, e) = s.post("/api/routing/batch", &json!({"leads": leads})).await;
    assert_eq!((st, field(&e)), (422, "leads"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("1000"));

    let (st, e) = s.send("POST", "/api/routing/decide", Some(&vec![b' '; 9 << 20])).await;
    assert_eq!((st, e["error"]["code"].as_str()), (413, Some("payload_too_large")), "{e}");

    let mut bad_broker = broker("b-bad", "CA", &["AUTO"], 9, 5, 10);
    bad_broker["id"] = json!("b-bad");
    let (st, e) = s.post("/api/brokers", &bad_broker).await;
    assert_eq!((st, field(&e)), (422, "specialties[0].proficiency"), "{e}");

    let (st, e) = s.get("/api/leads/nobody").await;
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, e) = s.get("/api/brokers/leaderboard?metric=height").await;
    assert_eq!((st, field(&e)), (422, "query"), "{e}");

    // None of it reached the journal.
    assert_eq!(crate::common::journal(dir.path()).len(), before);
    s.stop().await;
}

#[actix_rt::test]
async fn batch_answers_every_item_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("a", "FL", &["HOME"], 4, 2, 10)).await;
    let mut bad = lead("x1", "FL", &["HOME"]);
    bad["leadData"]["state"] = json!("QQ");
    let items = vec![lead("x0", "FL", &["HOME"]), bad, lead("x2", "FL", &["HOME"]), lead("x3", "FL", &["HOME"]), json!({"leadId": 7})];
    let (st, r) = s.post("/api/routing/batch", &json!({"leads": items})).await;
    assert_eq!(st, 200, "{r}");
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 5);
    for (i, item) in res.iter().enumerate() {
        assert_eq!(item["index"], i);
    }
    assert_eq!(res[0]["status"], 200);
    assert_eq!(res[1]["status"], 422);
    assert_eq!(res[1]["error"]["field"], "leads[1].leadData.state");
    assert_eq!(res[4]["error"]["field"], "leads[4].leadId");
    // Capacity two: one of x2/x3 is assigned, the other queued.
    let mut statuses = vec![res[2]["status"].as_u64().unwrap(), res[3]["status"].as_u64().unwrap()];
    statuses.sort();
    assert_eq!(statuses, [200, 202]);
    assert_eq!((r["assigned"].as_u64(), r["queued"].as_u64(), r["failed"].as_u64()), (Some(2), Some(1), Some(2)));
    s.stop().await;
}

#[actix_rt::test]
async fn broker_edits_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("e1", "GA", &["AUTO"], 3, 1, 10)).await;
    let (st, _) = s.post("/api/routing/decide", &lead("g1", "GA", &["AUTO"])).await;
    assert_eq!(st, 200);
    let (st, q) = s.post("/api/routing/decide", &lead("g2", "GA", &["AUTO"])).await;
    assert_eq!(st, 202, "{q}");
    assert_eq!(q["status"], "queued");
    assert_eq!(q["position"], 1);
    assert_eq!(q["excluded"]["atCapacity"], 1);
    // Raising capacity lets the queued lead through without another request.
    let (st, b) = s.send("PATCH", "/api/brokers/e1", Some(br#"{"capacity":{"maxConcurrent":2}}"#)).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["capacity"]["dailyCap"], 10, "merge patch keeps other fields");
    let mut state = Value::Null;
    for _ in 0..100 {
        state = s.get("/api/leads/g2").await.1;
        if state["state"] == "reserved" {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state["state"], "reserved", "{state}");
    // Going away takes the broker out of routing at once.
    let (st, _) = s.send("PATCH", "/api/brokers/e1", Some(br#"{"status":"away"}"#)).await;
    assert_eq!(st, 200);
    s.add_broker(&broker("e2", "GA", &["AUTO"], 1, 5, 10)).await;
    let (_, d) = s.post("/api/routing/decide", &lead("g3", "GA", &["AUTO"])).await;
    assert_eq!(d["brokerId"], "e2");
    assert_eq!(d["excluded"]["unavailable"], 1);
    // A broker holding leads cannot be deleted; an idle one can.
    let (st, e) = s.send("DELETE", "/api/brokers/e1", None).await;
    assert_eq!(st, 409, "{e}");
    let (st, e) = s.send("PUT", "/api/brokers/e2", Some(broker("other", "GA", &["AUTO"], 1, 5, 10).to_string().as_bytes())).await;
    assert_eq!((st, field(&e)), (422, "id"), "{e}");
    s.add_broker(&broker("idle", "GA", &["LIFE"], 1, 5, 10)).await;
    let (st, _) = s.send("DELETE", "/api/brokers/idle", None).await;
    assert_eq!(st, 204);
    assert_eq!(s.get("/api/brokers/idle").await.0, 404);
    let (st, list) = s.get("/api/brokers?state=GA&limit=1").await;
    assert_eq!(st, 200);
    assert_eq!((list["total"].as_u64(), list["brokers"].as_array().unwrap().len()), (Some(2), 1));
    s.stop().await;
}

#[actix_rt::test]
async fn amounts_beyond_a_billion_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("big", "TX", &["AUTO"], 4, 5, 10)).await;
    let mut l = lead("huge", "TX", &["AUTO"]);
    l["leadData"]["estimatedValue"] = json!(1e308);
    let (st, e) = s.post("/api/routing/decide", &l).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("leadData.estimatedValue")), "{e}");
    l["leadData"]["estimatedValue"] = json!(1e9);
    let (st, d) = s.post("/api/routing/decide", &l).await;
    assert_eq!(st, 200, "{d}");
    assert!(d["score"].is_f64(), "a finite score: {d}");
    assert_eq!(s.event("huge", "accepted").await.0, 200);
    let (st, e) = s.post("/api/leads/huge/events", &json!({"type": "converted", "value": 1e308})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("value")), "{e}");
    let mut b = broker("costly", "TX", &["AUTO"], 4, 5, 10);
    b["costPerLead"] = json!(2e9);
    let (st, e) = s.post("/api/brokers", &b).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("costPerLead")), "{e}");
    s.stop().await;
}
