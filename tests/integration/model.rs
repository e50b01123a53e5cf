//! The conversion model through HTTP: training jobs, ml decisions, predict, swaps under load.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{broker, journal, lead, Srv};

async fn wait_job(s: &Srv, id: &str) -> Value {
    for _ in 0..600 {
        let (st, j) = s.get(&format!("/api/models/jobs/{id}")).await;
        assert_eq!(st, 200, "{j}");
        if j["status"] == "succeeded" || j["status"] == "failed" {
            return j;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

async fn train(s: &Srv, force: bool) -> Value {
    let (st, r) = s.post("/api/models/train", &json!({"force": force})).await;
    assert_eq!(st, 202, "{r}");
    wait_job(s, r["jobId"].as_str().unwrap()).await
}

/// Leads spread at random and worked to an outcome: brokers m0 and m1 convert AUTO leads,
/// m2 and m3 LIFE leads (four in five times); all four are configured alike, so only their
/// history tells them apart.
async fn history(s: &Srv, n: usize) {
    for i in 0..n {
        let line = if i % 2 == 0 { "AUTO" } else { "LIFE" };
        let mut l = lead(&format!("h-{i}"), "NE", &[line]);
        l["strategy"] = json!("random");
        let (st, d) = s.post("/api/routing/decide", &l).await;
        assert_eq!(st, 200, "{d}");
        let b = d["brokerId"].as_str().unwrap();
        let good = (line == "AUTO") == (b == "m0" || b == "m1");
        let id = format!("h-{i}");
        for ev in ["accepted", "contacted", if good && i % 5 != 0 { "converted" } else { "lost" }, "closed"] {
            assert_eq!(s.event(&id, ev).await.0, 200);
        }
    }
}

#[actix_rt::test]
async fn train_serve_predict_and_swap_models_under_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.model.min_rows = 100;
        c.storage.durability = leadrouter_actors::Durability::None;
    })
    .await;
    for id in ["m0", "m1", "m2", "m3"] {
        s.add_broker(&broker(id, "NE", &["AUTO", "LIFE"], 3, 1000, 100000)).await;
    }
    // Without a model, ml falls back to the empirical-Bayes estimate and says so.
    let mut l = lead("before", "NE", &["AUTO"]);
    l["strategy"] = json!("ml");
    let (_, d) = s.post("/api/routing/decide", &l).await;
    assert!(d["modelVersion"].is_null(), "{d}");
    assert_eq!(d["breakdown"]["conversionSource"], "empirical_bayes");
    // Too little data: the job fails saying how much is needed.
    let j = train(&s, false).await;
    assert_eq!(j["status"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("at least 100"), "{j}");

    history(&s, 300).await;
    let j = train(&s, false).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!((j["version"].as_str(), j["activated"].as_bool()), (Some("v1"), Some(true)));
    assert!(j["metrics"]["auc"].as_f64().unwrap() > 0.5, "{j}");
    assert!(j["baseline"]["rows"].as_u64().unwrap() > 0);
    let (_, st) = s.get("/api/models/status").await;
    assert_eq!(st["active"]["version"], "v1", "{st}");
    assert_eq!(st["active"]["featureSpecVersion"], leadrouter_models::FEATURE_SPEC_VERSION);
    assert!(st["active"]["trainingSeconds"].as_f64().is_some());
    assert_eq!(st["versions"].as_array().unwrap().len(), 1);
    assert!(dir.path().join("models/v1/model.safetensors").exists() && dir.path().join("models/v1/meta.json").exists());

    // ml decisions use the model: every candidate's conversion is a prediction.
    let mut l = lead("ml-1", "NE", &["AUTO"]);
    l["strategy"] = json!("ml");
    let (st, d) = s.post("/api/routing/decide", &l).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["modelVersion"], "v1");
    assert_eq!(d["breakdown"]["conversionSource"], "model:v1");
    assert_eq!(d["alternatives"][0]["breakdown"]["conversionSource"], "model:v1");
    // The model learned who converts AUTO leads.
    assert!(["m0", "m1"].contains(&d["brokerId"].as_str().unwrap()), "{d}");

    // Predict ranks without reserving or journaling.
    let records = journal(dir.path()).len();
    let mut p = lead("ml-2", "NE", &["LIFE"]);
    p["strategy"] = json!("ml");
    let (st, pr) = s.post("/api/routing/predict", &p).await;
    assert_eq!(st, 200, "{pr}");
    assert_eq!(pr["modelVersion"], "v1");
    let c = pr["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 4);
    assert!(["m2", "m3"].contains(&c[0]["brokerId"].as_str().unwrap()), "{pr}");
    assert!(c.iter().all(|x| x["probability"].as_f64().unwrap() > 0.0 && x["probability"].as_f64().unwrap() < 1.0));
    assert_eq!(journal(dir.path()).len(), records, "predict journals nothing");
    assert_eq!(s.get("/api/leads/ml-2").await.0, 404);

    // A second version (forced), then swaps back and forth while ml decisions run.
    let j = train(&s, true).await;
    assert_eq!((j["version"].as_str(), j["activated"].as_bool()), (Some("v2"), Some(true)), "{j}");
    let (st, e) = s.post("/api/models/v9/activate", &json!({})).await;
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")));
    let decides = stream::iter(0..300)
        .map(|i| {
            let s = &s;
            async move {
                let mut l = lead(&format!("swap-{i}"), "NE", &["AUTO"]);
                l["strategy"] = json!("ml");
                s.post("/api/routing/decide", &l).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let swaps = async {
        for i in 0..20 {
            let v = if i % 2 == 0 { "v1" } else { "v2" };
            let (st, r) = s.post(&format!("/api/models/{v}/activate"), &json!({})).await;
            assert_eq!((st, r["active"].as_str()), (200, Some(v)));
        }
    };
    let (results, ()) = futures_util::future::join(decides, swaps).await;
    let mut seen = std::collections::HashSet::new();
    for (st, d) in &results {
        assert_eq!(*st, 200, "{d}");
        let v = d["modelVersion"].as_str().expect("every ml decision names its model");
        assert_eq!(d["breakdown"]["conversionSource"], format!("model:{v}"));
        seen.insert(v.to_string());
    }
    assert!(!seen.is_empty());
    let (_, st) = s.get("/api/models/status").await;
    assert!(st["predictions"].as_u64().unwrap() >= 300 * 4);
    // Outcomes of model-routed leads feed the drift signal.
    assert_eq!(s.event("ml-1", "accepted").await.0, 200);
    assert_eq!(s.event("ml-1", "contacted").await.0, 200);
    assert_eq!(s.event("ml-1", "converted").await.0, 200);
    let (_, st) = s.get("/api/models/status").await;
    assert_eq!(st["drift"]["outcomes"], 1, "{st}");
    assert_eq!(st["drift"]["observedRate"], 1.0);
    s.stop().await;

    // The active version survives a restart.
    let s = Srv::start(dir.path()).await;
    let (_, st) = s.get("/api/models/status").await;
    assert!(st["active"]["version"].is_string(), "{st}");
    s.stop().await;

    // The command line trains from the same journal, offline.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["train", "--force", "--data-dir"])
        .arg(dir.path())
        .env("LEADROUTER__MODEL__MIN_ROWS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["status"].as_str(), r["version"].as_str(), r["activated"].as_bool()), (Some("succeeded"), Some("v3"), Some(true)), "{r}");
    assert_eq!(std::fs::read_to_string(dir.path().join("models/active")).unwrap(), "v3");
}

/// A model trained with feature spec version 1 (34 inputs) keeps serving after the spec grew:
/// it reads the first 34 columns of today's rows, with notes or without.
#[actix_rt::test]
async fn a_version_1_model_keeps_serving_leads_with_and_without_notes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.model.min_rows = 100;
        c.storage.durability = leadrouter_actors::Durability::None;
    })
    .await;
    for id in ["m0", "m1", "m2", "m3"] {
        s.add_broker(&broker(id, "NE", &["AUTO", "LIFE"], 3, 1000, 100000)).await;
    }
    history(&s, 200).await;
    let j = train(&s, true).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    s.stop().await;
    // Turn v1 into what an earlier build wrote: spec 1, a network over 34 inputs.
    let vdir = dir.path().join("models/v1");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(vdir.join("meta.json")).unwrap()).unwrap();
    meta["featureSpecVersion"] = json!(1);
    std::fs::write(vdir.join("meta.json"), meta.to_string()).unwrap();
    let old = leadrouter_models::ConversionModel::with_inputs(5, 34).unwrap();
    std::fs::write(vdir.join("model.safetensors"), old.to_safetensors().unwrap()).unwrap();

    let s = Srv::start(dir.path()).await;
    let (_, st) = s.get("/api/models/status").await;
    assert_eq!((st["active"]["version"].as_str(), st["active"]["featureSpecVersion"].as_u64()), (Some("v1"), Some(1)), "{st}");
    for (id, notes) in [("plain", None), ("noted", Some("two cars and a teenage driver"))] {
        let mut l = lead(id, "NE", &["AUTO"]);
        l["strategy"] = json!("ml");
        if let Some(n) = notes {
            l["leadData"]["notes"] = json!(n);
        }
        let (code, d) = s.post("/api/routing/decide", &l).await;
        assert_eq!(code, 200, "{d}");
        assert_eq!(d["modelVersion"], "v1", "{d}");
        assert_eq!(d["breakdown"]["conversionSource"], "model:v1", "{d}");
        assert_eq!(d["breakdown"]["semantic"].is_object(), notes.is_some(), "{d}");
    }
    s.stop().await;
}
