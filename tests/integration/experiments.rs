//! Experiments through HTTP: the brief's shape, deterministic assignment and exposures in
//! decisions, results rebuilt after a restart (from the snapshot and from the journal alone),
//! conclusion with rollout, sample ratio mismatch, Thompson allocation, and bad definitions.

use std::time::{Duration, Instant};

use leadrouter_models::experiment::assign::point;
use serde_json::{json, Value};

use crate::common::{broker, lead, Srv};

async fn world(s: &Srv) {
    for i in 0..4 {
        s.add_broker(&broker(&format!("ca-{i}"), "CA", &["AUTO", "HOME"], 4, 100_000, 100_000)).await;
    }
}

/// Polls the results until the experiment has `n` exposures (the book follows the journal).
async fn results_with(s: &Srv, id: &str, n: u64) -> Value {
    let started = Instant::now();
    loop {
        let (st, r) = s.get(&format!("/api/experiments/{id}/results")).await;
        assert_eq!(st, 200, "{r}");
        if r["exposures"].as_u64() == Some(n) {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "results never reached {n} exposures: {r}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the per-arm results stop changing, then returns them (without the running
/// time, which changes by the call).
async fn settled_results(s: &Srv, id: &str, n: u64) -> Value {
    let strip = |mut r: Value| {
        r.as_object_mut().unwrap().remove("runningDays");
        r
    };
    let mut last = strip(results_with(s, id, n).await);
    let started = Instant::now();
    loop {
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        let r = strip(s.get(&format!("/api/experiments/{id}/results")).await.1);
        if r == last {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "results keep changing: {r}");
        last = r;
    }
}

const BRIEF: &str = r#"{"name": "ml-vs-specialty", "description": "Does the model route better?",
    "controlGroup": {"strategy": "specialty"},
    "treatmentGroup": {"strategy": "ml", "weights": {"specialty": 0.3, "performance": 0.4, "capacity": 0.2, "sla": 0.1}},
    "trafficAllocation": 0.5, "targetSampleSize": 2000, "duration": 14}"#;

#[actix_rt::test]
async fn the_brief_shape_runs_assigns_by_hash_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    world(&s).await;
    let (st, e) = s.send("POST", "/api/experiments", Some(BRIEF.as_bytes())).await;
    assert_eq!(st, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(id, "ml-vs-specialty");
    assert_eq!(e["status"], "draft");
    assert_eq!(e["arms"][0]["name"], "control");
    assert_eq!(e["arms"][1]["allocation"], 0.5);
    assert_eq!(e["durationDays"], 14.0);
    // A draft takes no traffic.
    let (_, d) = s.post("/api/routing/decide", &lead("before", "CA", &["AUTO"])).await;
    assert_eq!(d["experiments"], json!([]));
    let (st, e) = s.send("PATCH", &format!("/api/experiments/{id}"), Some(br#"{"status":"running"}"#)).await;
    assert_eq!((st, &e["status"]), (200, &json!("running")), "{e}");

    let mut exposed = [0u64; 2];
    let mut converted = [0u64; 2];
    for i in 0..300 {
        let lead_id = format!("l-{i}");
        let (st, d) = s.post("/api/routing/decide", &lead(&lead_id, "CA", &["AUTO"])).await;
        assert_eq!(st, 200, "{d}");
        // The traffic point is the layer's hash of the lead id; the arm the experiment's.
        let inside = point("layer:main", "traffic", &lead_id) < 0.5;
        let xs = d["experiments"].as_array().unwrap();
        assert_eq!(xs.len(), usize::from(inside), "{d}");
        if !inside {
            assert_eq!(d["strategy"], "specialty");
            continue;
        }
        let arm = usize::from(point(&id, "arm", &lead_id) >= 0.5);
        assert_eq!(xs[0]["experimentId"], id.as_str());
        assert_eq!(xs[0]["arm"], ["control", "treatment"][arm]);
        assert_eq!(xs[0]["probability"], 0.25);
        assert_eq!(d["strategy"], ["specialty", "ml"][arm], "{d}");
        if arm == 1 {
            assert_eq!(d["breakdown"]["performance"]["weight"], 0.4, "the arm's weights: {d}");
        }
        exposed[arm] += 1;
        // Every treatment lead and every third control lead converts.
        if arm == 1 || i % 3 == 0 {
            for ev in ["accepted", "contacted"] {
                assert_eq!(s.event(&lead_id, ev).await.0, 200);
            }
            let (st, l) = s.post(&format!("/api/leads/{lead_id}/events"), &json!({"type": "converted", "value": 1000.0})).await;
            assert_eq!(st, 200, "{l}");
            converted[arm] += 1;
        }
    }
    assert!(exposed[0] > 30 && exposed[1] > 30, "{exposed:?}");
    let n = exposed[0] + exposed[1];
    let r = settled_results(&s, &id, n).await;
    for arm in 0..2 {
        assert_eq!(r["arms"][arm]["exposures"], exposed[arm], "{r}");
        assert_eq!(r["arms"][arm]["conversions"], converted[arm], "{r}");
        assert_eq!(r["arms"][arm]["contacted"], converted[arm], "{r}");
        // Contacted at once, well within the 30-minute target: compliance is the contacted share.
        assert_eq!(r["arms"][arm]["slaCompliance"], converted[arm] as f64 / exposed[arm] as f64, "{r}");
        assert!(r["arms"][arm]["firstContactMinutes"].as_f64().unwrap() < 1.0, "{r}");
        assert_eq!(r["arms"][arm]["revenuePerLead"], 1000.0 * converted[arm] as f64 / exposed[arm] as f64, "{r}");
    }
    let (st, a) = s.post(&format!("/api/experiments/{id}/analyze"), &json!({})).await;
    assert_eq!(st, 200, "{a}");
    let c = &a["comparisons"][0];
    assert_eq!(
        (c["metric"].as_str(), c["test"].as_str(), c["significant"].as_bool()),
        (Some("conversion_rate"), Some("two_proportion_z"), Some(true)),
        "{a}"
    );
    // Below the target sample size of 2000 per arm: keep going.
    assert_eq!(a["recommendation"]["summary"], "continue", "{a}");
    assert!(a["bayesian"][0]["chanceToBeatControl"].as_f64().unwrap() > 0.99, "{a}");
    let metrics = s.send("GET", "/metrics", None).await.1["raw"].as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains(&format!("leadrouter_experiment_exposures_total{{arm=\"treatment\",experiment=\"{id}\"}} {}", exposed[1])),
        "{metrics}"
    );
    s.stop().await;

    // From the snapshot written at the graceful stop.
    let s = Srv::start(dir.path()).await;
    assert!(s.running().engine().report.snapshot.is_some());
    assert_eq!(settled_results(&s, &id, n).await, r);
    s.stop().await;
    // From the journal alone.
    std::fs::remove_dir_all(dir.path().join("snapshot")).unwrap();
    let s = Srv::start(dir.path()).await;
    assert!(s.running().engine().report.snapshot.is_none());
    assert_eq!(settled_results(&s, &id, n).await, r);
    // Still running: new leads keep being assigned.
    let (_, d) = s.post("/api/routing/decide", &lead("after", "CA", &["AUTO"])).await;
    assert_eq!(d["experiments"].as_array().unwrap().len(), usize::from(point("layer:main", "traffic", "after") < 0.5));
    s.stop().await;
}

#[actix_rt::test]
async fn concluding_with_rollout_changes_the_default_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    world(&s).await;
    let def = json!({"id": "rr", "name": "round robin?", "start": true,
        "arms": [{"name": "control", "strategy": "specialty", "allocation": 0.5},
                 {"name": "rr", "strategy": "round_robin", "allocation": 0.5}]});
    let (st, e) = s.post("/api/experiments", &def).await;
    assert_eq!((st, &e["status"]), (201, &json!("running")), "{e}");
    // Illegal and invalid changes first.
    let (st, b) = s.send("PATCH", "/api/experiments/rr", Some(br#"{"status":"concluded","winner":"nobody"}"#)).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("winner")), "{b}");
    let (st, b) = s.send("PATCH", "/api/experiments/rr", Some(br#"{"status":"concluded","rollout":true}"#)).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("rollout")), "{b}");
    let (st, b) = s.send("DELETE", "/api/experiments/rr", None).await;
    assert_eq!(st, 409, "{b}");
    let (st, e) = s.send("PATCH", "/api/experiments/rr", Some(br#"{"status":"concluded","winner":"rr","rollout":true}"#)).await;
    assert_eq!((st, &e["status"], &e["winner"]), (200, &json!("concluded"), &json!("rr")), "{e}");
    let (st, b) = s.send("PATCH", "/api/experiments/rr", Some(br#"{"status":"running"}"#)).await;
    assert_eq!(st, 409, "{b}");
    let (_, d) = s.post("/api/routing/decide", &lead("x-1", "CA", &["AUTO"])).await;
    assert_eq!((&d["strategy"], &d["experiments"]), (&json!("round_robin"), &json!([])), "{d}");
    // Concluded experiments are listed by status.
    let (_, l) = s.get("/api/experiments?status=concluded").await;
    assert_eq!(l["experiments"].as_array().unwrap().len(), 1, "{l}");
    let (_, l) = s.get("/api/experiments?status=running").await;
    assert_eq!(l["experiments"], json!([]));
    s.stop().await;
    std::fs::remove_dir_all(dir.path().join("snapshot")).unwrap();
    let s = Srv::start(dir.path()).await;
    let (_, d) = s.post("/api/routing/decide", &lead("x-2", "CA", &["AUTO"])).await;
    assert_eq!(d["strategy"], "round_robin", "the rollout is journaled: {d}");
    s.stop().await;
}

#[actix_rt::test]
async fn one_customer_flooding_an_arm_is_flagged_as_sample_ratio_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    world(&s).await;
    let def = json!({"id": "per-customer", "name": "per customer", "start": true, "assignmentKey": "customerId",
        "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "random", "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &def).await.0, 201);
    // 200 leads of distinct customers, then 300 of one customer: all in that customer's arm.
    let mut n = 0;
    for i in 0..500 {
        let customer = if i < 200 { format!("c-{i}") } else { "whale".to_string() };
        let mut l = lead(&format!("p-{i}"), "CA", &["AUTO"]);
        l["leadData"]["customerId"] = json!(customer);
        let (st, d) = s.post("/api/routing/decide", &l).await;
        assert_eq!(st, 200, "{d}");
        n += d["experiments"].as_array().unwrap().len() as u64;
    }
    // A lead without a customer id stays out.
    let (_, d) = s.post("/api/routing/decide", &lead("anonymous", "CA", &["AUTO"])).await;
    assert_eq!(d["experiments"], json!([]));
    assert_eq!(n, 500);
    let r = results_with(&s, "per-customer", n).await;
    assert!(r["srm"]["mismatch"].as_bool().unwrap(), "{r}");
    let (_, a) = s.post("/api/experiments/per-customer/analyze", &json!({})).await;
    assert_eq!(a["recommendation"]["summary"], "invalid: sample ratio mismatch", "{a}");
    assert!(a["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("sample ratio mismatch")), "{a}");
    s.stop().await;
}

#[actix_rt::test]
async fn thompson_sampling_moves_traffic_to_the_better_arm_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.routing.experiment_review_seconds = 1).await;
    world(&s).await;
    let def = json!({"id": "bandit", "name": "bandit", "start": true, "allocationMethod": "thompson", "burnIn": 100, "minArmShare": 0.05,
        "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "random", "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &def).await.0, 201);
    for i in 0..120 {
        let id = format!("t-{i}");
        let (_, d) = s.post("/api/routing/decide", &lead(&id, "CA", &["AUTO"])).await;
        assert_eq!(d["experiments"][0]["probability"], 0.5, "burn-in: the planned shares {d}");
        if d["experiments"][0]["arm"] == "b" {
            for ev in ["accepted", "contacted"] {
                assert_eq!(s.event(&id, ev).await.0, 200);
            }
            assert_eq!(s.post(&format!("/api/leads/{id}/events"), &json!({"type": "converted", "value": 10.0})).await.0, 200);
        }
    }
    // The review (every second) moves arm a to its floor of 5%.
    let started = Instant::now();
    let e = loop {
        let (_, e) = s.get("/api/experiments/bandit").await;
        if e["allocationUpdates"].as_u64().unwrap() > 0 {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no allocation update: {e}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    let shares = e["currentShares"].as_array().unwrap();
    assert!((shares[0].as_f64().unwrap() - 0.05).abs() < 1e-9, "{e}");
    let (_, d) = s.post("/api/routing/decide", &lead("after-update", "CA", &["AUTO"])).await;
    let p = d["experiments"][0]["probability"].as_f64().unwrap();
    assert!((p - 0.05).abs() < 1e-9 || (p - 0.95).abs() < 1e-9, "{d}");
    let (_, a) = s.post("/api/experiments/bandit/analyze", &json!({})).await;
    assert!(a["adaptive"]["conversionRate"][1].as_f64().unwrap() > 0.99, "{a}");
    assert!(a["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("Thompson")), "{a}");
    s.stop().await;
    let records = crate::common::journal(dir.path());
    assert!(records.iter().any(|(_, r)| matches!(r, leadrouter_actors::Record::ExperimentAllocated { .. })));
}

#[actix_rt::test]
async fn bad_definitions_and_transitions_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let arms = |a: f64, b: f64| json!([{"name": "a", "strategy": "specialty", "allocation": a}, {"name": "b", "strategy": "random", "allocation": b}]);
    let cases = [
        (json!({"name": "x", "arms": arms(0.5, 0.6)}), "arms"),
        (
            json!({"name": "x", "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "psychic", "allocation": 0.5}]}),
            "arms[1].strategy",
        ),
        (
            json!({"name": "x", "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "ml", "modelVersion": "v9", "allocation": 0.5}]}),
            "arms[1].modelVersion",
        ),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "duration": 0}), "duration"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 1.5}), "trafficAllocation"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "controlGroup": {"strategy": "specialty"}}), "arms"),
        (json!({"name": "x", "controlGroup": {"strategy": "specialty"}}), "treatmentGroup"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "primaryMetric": "happiness"}), "primaryMetric"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "alpha": 0.7}), "alpha"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "targeting": {"states": ["California"]}}), "targeting.states[0]"),
        (json!({"name": "x", "arms": arms(0.5, 0.5), "surprise": 1}), "surprise"),
    ];
    for (body, field) in cases {
        let (st, b) = s.post("/api/experiments", &body).await;
        assert_eq!((st, b["error"]["field"].as_str()), (422, Some(field)), "{body} → {b}");
    }
    // Exclusive experiments of a layer cannot take more than all of its traffic.
    let (st, b) = s.post("/api/experiments", &json!({"id": "e1", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.6})).await;
    assert_eq!((st, &b["trafficOffset"]), (201, &json!(0.0)), "{b}");
    let (st, b) = s.post("/api/experiments", &json!({"id": "e2", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.6})).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("trafficAllocation")), "{b}");
    let (st, b) = s.post("/api/experiments", &json!({"id": "e2", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.4})).await;
    assert_eq!((st, &b["trafficOffset"]), (201, &json!(0.6)), "{b}");
    // One layer, one assignment key.
    let body = json!({"id": "e5", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.1, "assignmentKey": "customerId"});
    let (st, b) = s.post("/api/experiments", &body).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("assignmentKey")), "{b}");
    // Another layer may see the same leads: it must not set the strategy too.
    let (st, b) = s.post("/api/experiments", &json!({"id": "e3", "name": "x", "arms": arms(0.5, 0.5), "layer": "other"})).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("layer")), "{b}");
    assert_eq!(
        s.post("/api/experiments", &json!({"id": "e1", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.1})).await.0,
        409
    );
    let (st, b) = s.send("PATCH", "/api/experiments/e1", Some(br#"{"status":"paused"}"#)).await;
    assert_eq!(st, 409, "a draft cannot be paused: {b}");
    let (st, b) = s.send("PATCH", "/api/experiments/e1", Some(br#"{"status":"finished"}"#)).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("status")), "{b}");
    assert_eq!(s.send("PATCH", "/api/experiments/nope", Some(br#"{"status":"running"}"#)).await.0, 404);
    assert_eq!(s.get("/api/experiments/nope/results").await.0, 404);
    assert_eq!(s.get("/api/experiments?status=lost").await.0, 422);
    assert_eq!(s.send("DELETE", "/api/experiments/e1", None).await.0, 204);
    assert_eq!(s.get("/api/experiments/e1").await.0, 404);
    // Its traffic range is free again.
    let (st, b) = s.post("/api/experiments", &json!({"id": "e4", "name": "x", "arms": arms(0.5, 0.5), "trafficAllocation": 0.6})).await;
    assert_eq!((st, &b["trafficOffset"]), (201, &json!(0.0)), "{b}");
    s.stop().await;
}

#[actix_rt::test]
async fn an_independent_experiment_overlaps_one_that_varies_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    world(&s).await;
    let weights = json!({"id": "weights", "name": "weights", "start": true,
        "arms": [{"name": "seed", "strategy": "specialty", "allocation": 0.5},
                 {"name": "skill", "strategy": "specialty", "weights": {"specialty": 0.7, "performance": 0.1, "capacity": 0.1, "sla": 0.1}, "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &weights).await.0, 201);
    // An A/A check of the same strategy, independent: it sets nothing the first one sets.
    let aa = json!({"id": "aa", "name": "aa", "start": true, "exclusive": false,
        "arms": [{"name": "x", "strategy": "specialty", "allocation": 0.5}, {"name": "y", "strategy": "specialty", "allocation": 0.5}]});
    let (st, b) = s.post("/api/experiments", &aa).await;
    assert_eq!(st, 201, "{b}");
    // Targeted elsewhere: it takes no CA lead.
    let nv = json!({"id": "nv", "name": "nv", "start": true, "exclusive": false, "targeting": {"states": ["NV"]},
        "arms": [{"name": "x", "strategy": "specialty", "allocation": 0.5}, {"name": "y", "strategy": "specialty", "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &nv).await.0, 201);
    let (_, d) = s.post("/api/routing/decide", &lead("both", "CA", &["AUTO"])).await;
    let ids: Vec<_> = d["experiments"].as_array().unwrap().iter().map(|x| x["experimentId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["weights", "aa"], "{d}");
    let skill = d["experiments"][0]["arm"] == "skill";
    assert_eq!(d["breakdown"]["specialty"]["weight"], if skill { 0.7 } else { 0.4 }, "{d}");
    // An independent experiment that also sets weights would fight over the same decisions.
    let mut clash = weights.clone();
    clash["id"] = json!("clash");
    clash["exclusive"] = json!(false);
    let (st, b) = s.post("/api/experiments", &clash).await;
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("layer")), "{b}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_sequential_experiment_concludes_itself_when_it_finds_a_winner() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.routing.experiment_review_seconds = 1).await;
    world(&s).await;
    let def = json!({"id": "seq", "name": "seq", "start": true, "analysis": "sequential", "autoConclude": true, "minSamplePerArm": 30,
        "arms": [{"name": "control", "strategy": "specialty", "allocation": 0.5}, {"name": "better", "strategy": "round_robin", "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &def).await.0, 201);
    for i in 0..160 {
        let id = format!("s-{i}");
        let (_, d) = s.post("/api/routing/decide", &lead(&id, "CA", &["AUTO"])).await;
        if d["experiments"][0]["arm"] == "better" {
            for ev in ["accepted", "contacted"] {
                assert_eq!(s.event(&id, ev).await.0, 200);
            }
            assert_eq!(s.post(&format!("/api/leads/{id}/events"), &json!({"type": "converted", "value": 10.0})).await.0, 200);
        }
    }
    let started = Instant::now();
    let e = loop {
        let (_, e) = s.get("/api/experiments/seq").await;
        if e["status"] == "concluded" {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not concluded: {e}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(e["winner"], "better");
    // Concluded without a rollout: the default is still the configured one.
    let (_, d) = s.post("/api/routing/decide", &lead("later", "CA", &["AUTO"])).await;
    assert_eq!((&d["strategy"], &d["experiments"]), (&json!("specialty"), &json!([])));
    let (_, a) = s.post("/api/experiments/seq/analyze", &json!({})).await;
    assert_eq!((a["correction"].as_str(), a["comparisons"][0]["test"].as_str()), (Some("bonferroni"), Some("confidence_sequence")), "{a}");
    s.stop().await;
}
