//! Embeddings through HTTP: semantic terms in decisions, similar-lead evidence from resolved
//! leads, the embeddings API and its errors, the index surviving a restart and being rebuilt
//! when damaged, a refresh under decisions, the local sentence encoder, and the OpenAI-compatible
//! provider against a stand-in server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leadrouter_actors::config::EncoderKind;
use serde_json::{json, Value};

use crate::common::{broker, Srv};

fn with_bio(id: &str, lines: &[&str], bio: &str) -> Value {
    let mut b = broker(id, "TX", lines, 4, 50, 1000);
    b["bio"] = json!(bio);
    b
}

fn noted(id: &str, lines: &[&str], notes: &str) -> Value {
    json!({"leadId": id, "leadData": {"insuranceTypes": lines, "state": "TX", "estimatedValue": 2000, "notes": notes}})
}

/// Polls the stats until `f` holds (the index follows the journal on the snapshotter's tick).
async fn stats_until(s: &Srv, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (code, st) = s.get("/api/embeddings/stats").await;
        assert_eq!(code, 200, "{st}");
        if f(&st) {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stats never showed {what}: {}", s.get("/api/embeddings/stats").await.1);
}

#[actix_rt::test]
async fn decisions_with_notes_carry_semantic_terms_and_similar_lead_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&with_bio("fleet", &["AUTO", "COMMERCIAL"], "Fleet and trucking risks")).await;
    s.add_broker(&with_bio("home", &["AUTO", "HOME"], "Homeowners")).await;
    let st = stats_until(&s, "two broker vectors", |st| st["collections"]["brokers"] == 2).await;
    assert_eq!(
        (st["encoder"].as_str(), st["model"].as_str(), st["dimension"].as_u64()),
        (Some("structured"), Some("structured-v1"), Some(32))
    );

    // No notes: no semantic terms at all.
    let (code, d) = s.post("/api/routing/decide", &crate::common::lead("plain", "TX", &["AUTO"])).await;
    assert_eq!(code, 200, "{d}");
    assert!(d["breakdown"].get("semantic").is_none(), "{d}");

    // A commercial lead with notes: every scored candidate has its terms; the commercial broker
    // matches better (structured embedding: lines and state).
    let (code, d) = s.post("/api/routing/decide", &noted("n1", &["COMMERCIAL"], "fleet of 12 delivery vans")).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["brokerId"], "fleet");
    let t = &d["breakdown"]["semantic"];
    assert!(t["semanticMatch"].as_f64().unwrap() > 0.5, "{t}");
    assert_eq!((t["weight"].as_f64(), t["contribution"].as_f64()), (Some(0.0), Some(0.0)), "weight 0 by default");
    assert_eq!(t["similarLeads"], 0);
    assert_eq!(t["evidence"], "0 of 0 similar leads converted with this broker");

    // Resolve two auto leads with the fleet broker (one converts) and one with home.
    let auto = |id: &str| noted(id, &["AUTO"], "two cars, teenage driver");
    let mut by_broker = std::collections::HashMap::new();
    for id in ["a1", "a2", "a3", "a4"] {
        let (code, d) = s.post("/api/routing/decide", &auto(id)).await;
        assert_eq!(code, 200, "{d}");
        by_broker.insert(id, d["brokerId"].as_str().unwrap().to_string());
    }
    for (id, outcome) in [("a1", "converted"), ("a2", "lost"), ("a3", "converted")] {
        assert_eq!(s.event(id, "accepted").await.0, 200);
        assert_eq!(s.event(id, "contacted").await.0, 200);
        let ev = if outcome == "converted" { json!({"type": outcome, "value": 100}) } else { json!({"type": outcome}) };
        assert_eq!(s.post(&format!("/api/leads/{id}/events"), &ev).await.0, 200);
    }
    stats_until(&s, "three lead vectors", |st| st["collections"]["leads"] == 3).await;
    // The same text again (after the 60 s reuse would not have expired, so a new text): the
    // nearest leads are the three resolved ones, counted per broker.
    let (code, d) = s.post("/api/routing/predict", &noted("probe", &["AUTO"], "two cars, teenage driver, new")).await;
    assert_eq!(code, 200, "{d}");
    let mut seen = 0;
    for c in d["candidates"].as_array().unwrap() {
        let t = &c["breakdown"]["semantic"];
        let id = c["brokerId"].as_str().unwrap();
        let want: Vec<&str> = ["a1", "a2", "a3"].into_iter().filter(|l| by_broker[l] == id).collect();
        let converted = want.iter().filter(|l| **l != "a2").count();
        assert_eq!(t["similarLeads"].as_u64(), Some(want.len() as u64), "{id}: {t}");
        assert_eq!(t["similarConverted"].as_u64(), Some(converted as u64), "{id}: {t}");
        // Smoothed towards the neighbours' rate, 2 of 3, with two pseudo-observations.
        let rate = (converted as f64 + 2.0 * 2.0 / 3.0) / (want.len() as f64 + 2.0);
        assert!((t["similarRate"].as_f64().unwrap() - rate).abs() < 1e-3, "{id}: {t}");
        seen += want.len();
    }
    assert_eq!(seen, 3, "every resolved lead went to a scored candidate: {d}");
    let st = s.get("/api/embeddings/stats").await.1;
    assert!(st["semanticMatch"]["count"].as_u64().unwrap() >= 5, "{st}");
    assert!(st["cache"]["hits"].as_u64().unwrap() >= 1, "{st}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_semantic_weight_moves_the_score_and_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.routing.weights.insert("specialty".into(), leadrouter_models::Weights { semantic: 1.0, ..Default::default() });
    })
    .await;
    s.add_broker(&with_bio("fleet", &["AUTO", "COMMERCIAL"], "Fleet")).await;
    s.add_broker(&with_bio("home", &["AUTO", "HOME"], "Homes")).await;
    stats_until(&s, "two broker vectors", |st| st["collections"]["brokers"] == 2).await;
    let (code, d) = s.post("/api/routing/decide", &noted("w1", &["AUTO"], "delivery vans for a courier business")).await;
    assert_eq!(code, 200, "{d}");
    let b = &d["breakdown"];
    let t = &b["semantic"];
    assert_eq!(t["weight"].as_f64(), Some(1.0));
    let m = t["semanticMatch"].as_f64().unwrap();
    assert!((t["contribution"].as_f64().unwrap() - m.max(0.0)).abs() < 1e-3, "{t}");
    let factors: f64 = ["specialty", "performance", "capacity", "sla"].iter().map(|f| b[f]["contribution"].as_f64().unwrap()).sum();
    assert!((d["score"].as_f64().unwrap() - factors - m.max(0.0)).abs() < 1e-3, "{d}");
    s.stop().await;
    // The terms are in the journal's decision (format version 4).
    let records = crate::common::journal(dir.path());
    let decided = records.iter().find_map(|(_, r)| match r {
        leadrouter_actors::Record::Decided { decision, .. } => Some(decision.clone()),
        _ => None,
    });
    let t = decided.unwrap().breakdown.semantic.expect("journaled semantic terms");
    assert_eq!(t.weight, 1.0);
}

#[actix_rt::test]
async fn the_embeddings_api_answers_and_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&with_bio("b1", &["AUTO"], "Cars")).await;
    s.add_broker(&with_bio("b2", &["HOME"], "Houses")).await;
    stats_until(&s, "two broker vectors", |st| st["collections"]["brokers"] == 2).await;
    // Free text needs a text encoder; the structured embedding has none (the texts' cases are in
    // the local and OpenAI tests below).
    let (code, e) = s.post("/api/embeddings/generate", &json!({"texts": ["fleet of vans", "a house"]})).await;
    assert_eq!(code, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("structured embedding"), "{e}");
    let (code, g) = s.post("/api/embeddings/generate", &json!({"brokers": "all"})).await;
    assert_eq!(code, 200, "{g}");
    let ids: Vec<&str> = g["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b1", "b2"]);
    let v: Vec<f64> = g["items"][0]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4, "unit length");
    assert_eq!(s.post("/api/routing/decide", &noted("l1", &["AUTO"], "one car")).await.0, 200);
    assert_eq!(s.post("/api/routing/decide", &crate::common::lead("l2", "TX", &["AUTO"])).await.0, 200);
    let (code, g) = s.post("/api/embeddings/generate", &json!({"leadIds": ["l1"]})).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!((g["model"].as_str(), g["dimension"].as_u64()), (Some("structured-v1"), Some(32)));
    assert_eq!(g["items"][0]["id"], "l1");
    assert_eq!(g["items"][0]["vector"].as_array().unwrap().len(), 32, "{g}");

    let too_many: Vec<String> = (0..257).map(|i| format!("t{i}")).collect();
    for (body, status, field) in [
        (json!({"texts": ["ok", "  "]}), 422, "texts[1]"),
        (json!({"texts": []}), 422, "texts"),
        (json!({"texts": too_many}), 422, "texts"),
        (json!({"texts": ["a"], "brokers": "all"}), 422, "body"),
        (json!({}), 422, "body"),
        (json!({"brokers": "some"}), 422, "brokers"),
        (json!({"leadIds": ["l2"]}), 422, "leadIds[0]"),
        (json!({"leadIds": ["bad id"]}), 422, "leadIds[0]"),
        (json!({"colour": "red"}), 422, "colour"),
    ] {
        let (code, e) = s.post("/api/embeddings/generate", &body).await;
        assert_eq!(code, status, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (code, e) = s.post("/api/embeddings/generate", &json!({"leadIds": ["nobody"]})).await;
    assert_eq!(code, 404, "{e}");
    s.stop().await;
}

#[actix_rt::test]
async fn the_index_survives_a_restart_and_is_rebuilt_when_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&with_bio("b1", &["AUTO"], "Cars")).await;
    for id in ["r1", "r2"] {
        assert_eq!(s.post("/api/routing/decide", &noted(id, &["AUTO"], "a car")).await.0, 200);
        assert_eq!(s.event(id, "accepted").await.0, 200);
        assert_eq!(s.event(id, "lost").await.0, 200);
    }
    stats_until(&s, "two lead vectors", |st| st["collections"]["leads"] == 2).await;
    s.stop().await;
    let file = leadrouter_actors::semantic::index_file(dir.path());
    assert!(file.is_file(), "saved at shutdown");

    let s = Srv::start(dir.path()).await;
    let st = s.get("/api/embeddings/stats").await.1;
    assert_eq!((st["collections"]["brokers"].as_u64(), st["collections"]["leads"].as_u64()), (Some(1), Some(2)), "loaded: {st}");
    assert!(st["lastRefresh"].is_null(), "nothing rebuilt: {st}");
    s.stop().await;

    // A damaged file: rebuilt from the journal and the brokers.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let s = Srv::start(dir.path()).await;
    let st = stats_until(&s, "a rebuild", |st| !st["lastRefresh"].is_null()).await;
    assert_eq!((st["lastRefresh"]["brokers"].as_u64(), st["lastRefresh"]["leads"].as_u64()), (Some(1), Some(2)), "{st}");
    assert_eq!((st["collections"]["brokers"].as_u64(), st["collections"]["leads"].as_u64()), (Some(1), Some(2)), "{st}");
    s.stop().await;
}

#[actix_rt::test]
async fn decisions_during_a_refresh_all_succeed_with_their_semantic_terms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    for i in 0..40 {
        s.add_broker(&with_bio(&format!("b{i}"), &["AUTO"], &format!("Broker number {i}"))).await;
    }
    // The first start builds the index once (there was none); then refresh on request.
    stats_until(&s, "40 broker vectors, the first build done", |st| st["collections"]["brokers"] == 40 && st["refreshing"] == false).await;
    let (code, r) = s.post("/api/embeddings/refresh", &json!({})).await;
    assert_eq!(code, 202, "{r}");
    let mut decided = 0;
    for i in 0..60 {
        let (code, d) = s.post("/api/routing/decide", &noted(&format!("d{i}"), &["AUTO"], &format!("car number {i}"))).await;
        assert_eq!(code, 200, "{d}");
        assert!(d["breakdown"]["semantic"].is_object(), "decision {i} lacks its semantic terms: {d}");
        decided += 1;
    }
    assert_eq!(decided, 60);
    let st = stats_until(&s, "the refresh done", |st| st["refreshing"] == false && !st["lastRefresh"].is_null()).await;
    assert_eq!(st["lastRefresh"]["brokers"], 40, "{st}");
    assert_eq!(st["collections"]["brokers"], 40, "{st}");
    assert!(s.get("/api/embeddings/stats").await.1["lastRefreshError"].is_null());
    s.stop().await;
}

/// The local encoder's files: `LEADROUTER_TEST_EMBEDDING_MODEL`, else where
/// `scripts/fetch-embedding-model` puts them (`.ci/run` runs it).
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LEADROUTER_TEST_EMBEDDING_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("var/models/all-minilm-l6-v2"));
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[actix_rt::test]
async fn the_local_sentence_encoder_embeds_meaning() {
    let Some(model) = model_dir() else {
        eprintln!("SKIPPED: the local encoder's files are not installed (run scripts/fetch-embedding-model)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.semantic.encoder = EncoderKind::Local;
        c.semantic.model_dir = model;
        c.semantic.decision_timeout_ms = 10_000;
    })
    .await;
    let (code, g) = s
        .post("/api/embeddings/generate", &json!({"texts": ["fleet of trucks", "delivery vans", "life insurance for a new parent"]}))
        .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!((g["model"].as_str(), g["dimension"].as_u64()), (Some("all-MiniLM-L6-v2"), Some(384)));
    let v: Vec<Vec<f64>> = g["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let cos = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // Reference values from an independent numpy BERT over the same files
    // (`scripts/reference-embedding.py`).
    assert!((cos(&v[0], &v[1]) - 0.528818).abs() < 1e-4, "{}", cos(&v[0], &v[1]));
    assert!((cos(&v[0], &v[2]) - -0.002170).abs() < 1e-4, "{}", cos(&v[0], &v[2]));
    for (got, want) in v[0].iter().zip([0.012311, -0.056036, -0.020934, 0.039693]) {
        assert!((got - want).abs() < 1e-5, "{:?}", &v[0][..4]);
    }
    s.add_broker(&with_bio("fleet", &["AUTO"], "Commercial fleets, trucking and delivery vans")).await;
    s.add_broker(&with_bio("family", &["AUTO"], "Life insurance and health plans for young families")).await;
    stats_until(&s, "two broker vectors", |st| st["collections"]["brokers"] == 2).await;
    let (code, d) = s.post("/api/routing/predict", &noted("p", &["AUTO"], "twelve delivery vans for a courier company")).await;
    assert_eq!(code, 200, "{d}");
    let m = |id: &str| {
        d["candidates"].as_array().unwrap().iter().find(|c| c["brokerId"] == id).unwrap()["breakdown"]["semantic"]["semanticMatch"]
            .as_f64()
            .unwrap()
    };
    assert!(m("fleet") > m("family") + 0.1, "fleet {} family {}", m("fleet"), m("family"));
    s.stop().await;
}

/// A stand-in for an OpenAI-compatible endpoint: answers every request with vectors of `dim`
/// (the text's length in the first slot) and records the requests' headers and bodies.
fn stand_in(dim: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push(format!("{head}\n{req}"));
            let data: Vec<Value> = req["input"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut v = vec![0.5f64; dim];
                            v[0] = t.as_str().unwrap_or("").len() as f64;
                            json!({"object": "embedding", "index": i, "embedding": v})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let out = json!({"object": "list", "data": data, "model": req["model"]}).to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
                out.len()
            );
        }
    });
    (url, seen)
}

#[actix_rt::test]
async fn the_openai_provider_calls_the_endpoint_and_checks_the_dimension() {
    let (url, seen) = stand_in(8);
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.semantic.encoder = EncoderKind::External;
        c.openai.url = url.clone();
        c.openai.model = "text-embedding-test".into();
        c.openai.dimension = 8;
        c.openai.api_key = "sk-test-key-123".into();
    })
    .await;
    let (code, g) = s.post("/api/embeddings/generate", &json!({"texts": ["abc", "abcdef"]})).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!((g["model"].as_str(), g["dimension"].as_u64()), (Some("text-embedding-test"), Some(8)));
    let first: Vec<f64> = g["items"][1]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    // (6, 0.5 × 7) normalised.
    let n = (36.0f64 + 7.0 * 0.25).sqrt();
    assert!((first[0] - 6.0 / n).abs() < 1e-5 && (first[1] - 0.5 / n).abs() < 1e-5, "{first:?}");
    let requests = seen.lock().unwrap().clone();
    let last = requests.last().unwrap();
    assert!(last.to_ascii_lowercase().contains("authorization: bearer sk-test-key-123"), "{last}");
    assert!(last.contains(r#""model":"text-embedding-test""#) && last.contains(r#""input":["abc","abcdef"]"#), "{last}");
    s.stop().await;

    // An endpoint answering another dimension than configured: a clear 502.
    let (url, _) = stand_in(7);
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.semantic.encoder = EncoderKind::External;
        c.openai.url = url.clone();
        c.openai.dimension = 8;
    })
    .await;
    let (code, e) = s.post("/api/embeddings/generate", &json!({"texts": ["abc"]})).await;
    assert_eq!(code, 502, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("dimension 7") && msg.contains("openai.dimension is 8"), "{msg}");
    s.stop().await;
}

#[actix_rt::test]
async fn candidate_retrieval_scores_only_the_nearest_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.semantic.retrieval_threshold = 2;
        c.semantic.retrieval_k = 1;
    })
    .await;
    s.add_broker(&with_bio("auto", &["AUTO"], "Cars")).await;
    s.add_broker(&with_bio("both", &["AUTO", "COMMERCIAL"], "Cars and vans")).await;
    s.add_broker(&with_bio("many", &["AUTO", "HOME", "LIFE", "HEALTH"], "Everything")).await;
    stats_until(&s, "three broker vectors", |st| st["collections"]["brokers"] == 3).await;
    let lead = noted("r1", &["AUTO"], "vans for a courier");
    // predict ranks without retrieval: the nearest profile is the one with the best match.
    let (_, p) = s.post("/api/routing/predict", &lead).await;
    let nearest = p["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            let m = |c: &Value| c["breakdown"]["semantic"]["semanticMatch"].as_f64().unwrap();
            m(a).total_cmp(&m(b))
        })
        .unwrap()["brokerId"]
        .clone();
    let (code, d) = s.post("/api/routing/decide", &lead).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!((d["eligible"].as_u64(), d["scored"].as_u64()), (Some(3), Some(1)), "{d}");
    assert_eq!(d["brokerId"], nearest, "{d}");
    // Without notes, nothing is retrieved.
    let (_, d) = s.post("/api/routing/decide", &crate::common::lead("r2", "TX", &["AUTO"])).await;
    assert_eq!((d["eligible"].as_u64(), d["scored"].as_u64()), (Some(3), Some(3)), "{d}");
    s.stop().await;
}

#[actix_rt::test]
async fn without_the_model_files_the_engine_falls_back_to_the_structured_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.semantic.encoder = EncoderKind::Local;
        c.semantic.model_dir = empty.path().to_path_buf();
    })
    .await;
    let st = s.get("/api/embeddings/stats").await.1;
    assert_eq!((st["encoder"].as_str(), st["model"].as_str()), (Some("structured"), Some("structured-v1")), "{st}");
    s.add_broker(&with_bio("b1", &["AUTO"], "Cars")).await;
    stats_until(&s, "the broker's vector", |st| st["collections"]["brokers"] == 1).await;
    let (code, d) = s.post("/api/routing/decide", &noted("f1", &["AUTO"], "a car")).await;
    assert_eq!(code, 200, "{d}");
    assert!(d["breakdown"]["semantic"]["semanticMatch"].as_f64().unwrap() > 0.5, "{d}");
    s.stop().await;
}
