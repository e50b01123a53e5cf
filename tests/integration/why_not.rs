//! "Why not this broker?" through HTTP: every verdict, reconstructed as of the decision even
//! after the brokers changed, and bad requests.

use serde_json::json;

use crate::common::{broker, lead, Srv};

#[actix_rt::test]
async fn why_not_explains_the_decision_as_it_was_made() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("good", "TX", &["AUTO"], 5, 10, 100)).await;
    s.add_broker(&broker("weak", "TX", &["AUTO"], 2, 10, 100)).await;
    s.add_broker(&broker("far", "CA", &["AUTO"], 5, 10, 100)).await;
    s.add_broker(&broker("full", "TX", &["AUTO"], 5, 1, 100)).await;
    s.add_broker(&broker("away", "TX", &["AUTO"], 5, 10, 100)).await;
    let (st, _) = s.send("PATCH", "/api/brokers/away", Some(br#"{"status": "away"}"#)).await;
    assert_eq!(st, 200);
    // Fill "full"'s only seat first.
    let mut first = lead("fill", "TX", &["AUTO"]);
    first["excludeBrokers"] = json!(["good", "weak"]);
    let (_, d) = s.post("/api/routing/decide", &first).await;
    assert_eq!(d["brokerId"], "full", "{d}");
    let (st, d) = s.post("/api/routing/decide", &lead("w1", "TX", &["AUTO"])).await;
    assert_eq!((st, d["brokerId"].as_str()), (200, Some("good")), "{d}");
    // Today's state differs: "far" is licensed in TX now, "away" is back. The answer does not move.
    let (st, _) = s
        .send("PATCH", "/api/brokers/far", Some(br#"{"licenses": [{"state": "TX", "lines": ["AUTO"], "expiresOn": "2099-12-31"}]}"#))
        .await;
    assert_eq!(st, 200);
    s.send("PATCH", "/api/brokers/away", Some(br#"{"status": "available"}"#)).await;
    let why = |b: &str| {
        let path = format!("/api/leads/w1/why-not/{b}");
        let s = &s;
        async move { s.get(&path).await }
    };
    let (st, w) = why("good").await;
    assert_eq!((st, w["verdict"].as_str()), (200, Some("chosen")), "{w}");
    let (_, w) = why("weak").await;
    assert_eq!(w["verdict"], "outscored", "{w}");
    assert_eq!(w["decidingFactor"], "specialty", "{w}");
    assert!(w["broker"]["score"].as_f64().unwrap() < w["winner"]["score"].as_f64().unwrap(), "{w}");
    for (b, constraint) in [("far", "notLicensed"), ("full", "atCapacity"), ("away", "unavailable")] {
        let (st, w) = why(b).await;
        assert_eq!(st, 200, "{w}");
        assert_eq!((w["verdict"].as_str(), w["constraint"].as_str()), (Some("ineligible"), Some(constraint)), "{b}: {w}");
        assert!(!w["reason"].as_str().unwrap().is_empty());
    }
    let (_, w) = why("nobody").await;
    assert_eq!(w["verdict"], "unknown", "{w}");
    // The latest decision counts: after a rejection the lead is re-routed and "good" is out.
    let (st, _) = s.event("w1", "rejected").await;
    assert_eq!(st, 200);
    let (_, w) = why("good").await;
    assert_eq!((w["verdict"].as_str(), w["constraint"].as_str()), (Some("ineligible"), Some("excluded")), "{w}");
    assert!(w["reason"].as_str().unwrap().contains("had the lead before"), "{w}");
    assert_eq!(s.get("/api/leads/nope/why-not/good").await.0, 404);
    let (st, e) = s.get("/api/leads/w1/why-not/bad!id").await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("brokerId")), "{e}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_broker_the_pre_rank_left_out_is_scored_as_the_decision_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.routing.top_k = 1;
        c.routing.alternatives = 0;
    })
    .await;
    s.add_broker(&broker("good", "TX", &["AUTO"], 5, 10, 100)).await;
    s.add_broker(&broker("weak", "TX", &["AUTO"], 2, 10, 100)).await;
    let (_, d) = s.post("/api/routing/decide", &lead("n1", "TX", &["AUTO"])).await;
    assert_eq!((d["brokerId"].as_str(), d["scored"].as_u64()), (Some("good"), Some(1)), "{d}");
    let (_, w) = s.get("/api/leads/n1/why-not/weak").await;
    assert_eq!((w["verdict"].as_str(), w["decidingFactor"].as_str()), (Some("not_scored"), Some("specialty")), "{w}");
    // Proficiency 2 of 5 in the one line: 0.4 × 0.4 for specialty.
    assert!((w["broker"]["breakdown"]["specialty"]["contribution"].as_f64().unwrap() - 0.16).abs() < 1e-9, "{w}");
    assert!(w["broker"]["score"].as_f64().unwrap() < d["score"].as_f64().unwrap(), "{w}");
    s.stop().await;
}
