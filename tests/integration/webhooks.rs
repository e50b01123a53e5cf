//! Webhooks through the public surface: a real receiver on a loopback port that fails the first
//! attempts, signatures checked with the secret the API handed out, retries spaced as
//! configured, dead letters and replay, validation, and `kill -9` with deliveries pending.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

impl Hit {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

/// A webhook receiver: answers 500 to the first `fail_first` attempts of each event, and 503 to
/// everything while `accepting` is false; records every request.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    accepting: Arc<AtomicBool>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(fail_first: usize, accepting: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let accepting = Arc::new(AtomicBool::new(accepting));
        let fail_first = Arc::new(AtomicUsize::new(fail_first));
        let (h, a, f) = (hits.clone(), accepting.clone(), fail_first.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (h, a, f) = (h.clone(), a.clone(), f.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut headers = HashMap::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.trim_end().split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let mut hits = h.lock();
                    let id = headers.get("webhook-id").cloned().unwrap_or_default();
                    let earlier = hits.iter().filter(|x: &&Hit| x.headers.get("webhook-id") == Some(&id)).count();
                    let answered = if !a.load(Ordering::SeqCst) {
                        503
                    } else if earlier < f.load(Ordering::SeqCst) {
                        500
                    } else {
                        204
                    };
                    hits.push(Hit { at: Instant::now(), headers, body: String::from_utf8(body).unwrap(), answered });
                    drop(hits);
                    let reason = if answered == 204 { "No Content" } else { "Error" };
                    let _ = conn
                        .write_all(format!("HTTP/1.1 {answered} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
                });
            }
        });
        Receiver { url, hits, accepting, fail_first }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().clone()
    }

    /// Event ids with an accepted delivery.
    fn delivered(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.hits().iter().filter(|h| h.answered == 204).map(|h| h.id().to_string()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Receiver) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; hits: {:?}", self.hits());
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The signature the Standard Webhooks convention gives `hit` under `secret`.
fn expected_signature(secret: &str, hit: &Hit) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", hit.id(), hit.headers["webhook-timestamp"], hit.body).as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn test_hooks(c: &mut leadrouter::Config) {
    c.webhooks.allow_private_targets = true;
    c.webhooks.poll_ms = 10;
    c.webhooks.retry_base_ms = 150;
    c.webhooks.jitter = 0.2;
}

#[actix_rt::test]
async fn failed_attempts_are_retried_with_backoff_signed_and_every_event_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), test_hooks).await;
    let rx = Receiver::start(2, true);
    for b in ["w1", "w2", "w3"] {
        s.add_broker(&broker(b, "CA", &["AUTO"], 4, 10, 100)).await;
    }
    let (st, sub) = s.post("/api/webhooks", &json!({"url": rx.url, "events": ["lead.assigned", "lead.converted"], "concurrency": 3})).await;
    assert_eq!(st, 201, "{sub}");
    let secret = sub["secret"].as_str().unwrap().to_string();
    let id = sub["id"].as_str().unwrap().to_string();
    // Shown once: reading it back gives only a hint.
    let (_, again) = s.get(&format!("/api/webhooks/{id}")).await;
    assert!(again.get("secret").is_none() && again["secretHint"].as_str().unwrap().starts_with("whsec_"), "{again}");

    for i in 0..6 {
        let (st, d) = s.post("/api/routing/decide", &lead(&format!("wl-{i}"), "CA", &["AUTO"])).await;
        assert_eq!(st, 200, "{d}");
    }
    assert_eq!(s.event("wl-0", "accepted").await.0, 200);
    assert_eq!(s.event("wl-0", "contacted").await.0, 200);
    let (st, l) = s.post("/api/leads/wl-0/events", &json!({"type": "converted", "value": 950.0})).await;
    assert_eq!(st, 200, "{l}");

    rx.wait_for("7 events delivered", |r| r.delivered().len() == 7).await;
    let hits = rx.hits();
    let mut by_id: HashMap<String, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        by_id.entry(h.id().to_string()).or_default().push(h);
        // Every attempt is signed, and its body names the id and a subscribed type.
        assert_eq!(h.headers["webhook-signature"], expected_signature(&secret, h), "{h:?}");
        let body: Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(body["id"], h.id());
        assert!(["lead.assigned", "lead.converted"].contains(&body["type"].as_str().unwrap()), "{body}");
        assert_eq!(h.headers["content-type"], "application/json");
    }
    let kinds: Vec<String> =
        by_id.values().map(|h| serde_json::from_str::<Value>(&h[0].body).unwrap()["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "lead.converted").count(), 1, "{kinds:?}");
    // Two failures, then accepted: three attempts each, the waits 150 ms then 300 ms, ± 20%
    // (a little more for the thread that sends them).
    for (event, attempts) in &by_id {
        assert_eq!(attempts.iter().map(|h| h.answered).collect::<Vec<_>>(), [500, 500, 204], "{event}");
        let gaps: Vec<u128> = attempts.windows(2).map(|w| (w[1].at - w[0].at).as_millis()).collect();
        assert!((115..=400).contains(&gaps[0]) && (235..=600).contains(&gaps[1]), "{event}: waits {gaps:?} ms");
    }
    // One lead's events arrive in journal order: its conversion is sent only once its assignment
    // was accepted.
    let first = |kind: &str| {
        hits.iter().find(|h| {
            let b: Value = serde_json::from_str(&h.body).unwrap();
            b["type"] == kind && b["data"]["leadId"] == "wl-0"
        })
    };
    let assigned_ok =
        hits.iter().find(|h| h.answered == 204 && serde_json::from_str::<Value>(&h.body).unwrap()["data"]["leadId"] == "wl-0").unwrap();
    assert!(first("lead.converted").unwrap().at >= assigned_ok.at);
    assert!(first("lead.assigned").is_some());

    let (st, ds) = s.get(&format!("/api/webhooks/{id}/deliveries")).await;
    assert_eq!(st, 200);
    let ds = ds.as_array().unwrap();
    assert_eq!(ds.len(), 7, "{ds:?}");
    assert!(ds.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 3 && d["lastStatus"] == 204), "{ds:?}");
    let (_, view) = s.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!((view["inFlight"].as_u64(), view["deadLetters"].as_u64()), (Some(0), Some(0)), "{view}");
    assert!(view["lastError"].as_str().unwrap().contains("HTTP 500"), "{view}");
    s.stop().await;
}

#[actix_rt::test]
async fn an_event_out_of_attempts_is_a_dead_letter_and_replay_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        test_hooks(c);
        c.webhooks.max_attempts = 2;
        c.webhooks.retry_base_ms = 20;
    })
    .await;
    let rx = Receiver::start(usize::MAX, true);
    let (st, sub) = s.post("/api/webhooks", &json!({"url": rx.url, "events": ["broker.updated"]})).await;
    assert_eq!(st, 201, "{sub}");
    let id = sub["id"].as_str().unwrap().to_string();
    s.add_broker(&broker("dl-1", "TX", &["HOME"], 3, 5, 50)).await;
    rx.wait_for("two attempts", |r| r.hits().len() == 2).await;
    let dead = loop {
        let (_, ds) = s.get(&format!("/api/webhooks/{id}/deliveries?status=dead")).await;
        if let Some(d) = ds.as_array().and_then(|a| a.first()).cloned() {
            break d;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (dead["attempts"].as_u64(), dead["eventType"].as_str(), dead["lastError"].as_str()),
        (Some(2), Some("broker.updated"), Some("HTTP 500"))
    );
    let seq = dead["seq"].as_u64().unwrap();
    let (_, metrics) = s.send("GET", "/metrics", None).await;
    let metrics = metrics["raw"].as_str().unwrap().to_string();
    for line in ["leadrouter_webhook_dead_letters_total 1", "leadrouter_webhook_attempts_total{outcome=\"failed\"} 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    // The dead letter is kept across a restart.
    s.stop().await;
    let s = Srv::start_with(dir.path(), test_hooks).await;
    let (_, view) = s.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(view["deadLetters"], 1, "{view}");
    assert_eq!(rx.hits().len(), 2, "nothing more was sent for a dead letter");

    rx.fail_first.store(0, Ordering::SeqCst);
    assert_eq!(s.send("POST", &format!("/api/webhooks/{id}/replay?fromSeq=0"), None).await.0, 422);
    let (st, v) = s.send("POST", &format!("/api/webhooks/{id}/replay?fromSeq={seq}"), None).await;
    assert_eq!(st, 202, "{v}");
    rx.wait_for("the replayed event", |r| r.delivered().len() == 1).await;
    assert_eq!(rx.delivered(), [format!("evt_{seq}")]);
    let (_, view) = s.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(view["deadLetters"], 0, "{view}");
    s.stop().await;
}

/// The field a refused subscription's 422 names.
async fn refused(s: &Srv, body: Value) -> String {
    let (st, e) = s.post("/api/webhooks", &body).await;
    assert_eq!(st, 422, "{body} -> {e}");
    e["error"]["field"].as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn subscriptions_are_validated_changed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    // Loopback refused while webhooks.allow_private_targets is off.
    assert_eq!(refused(&s, json!({"url": "http://127.0.0.1:9/x", "events": ["lead.assigned"]})).await, "url");
    assert_eq!(refused(&s, json!({"url": "http://169.254.169.254/latest", "events": ["lead.assigned"]})).await, "url");
    assert_eq!(refused(&s, json!({"url": "gopher://example.com/", "events": ["lead.assigned"]})).await, "url");
    assert_eq!(refused(&s, json!({"url": "http://93.184.215.14/h", "events": ["lead.assigned", "lead.nope"]})).await, "events[1]");
    assert_eq!(refused(&s, json!({"url": "http://93.184.215.14/h", "events": []})).await, "events");
    assert_eq!(refused(&s, json!({"url": "http://93.184.215.14/h"})).await, "events");
    assert_eq!(refused(&s, json!({"url": "http://93.184.215.14/h", "events": ["lead.queued"], "secret": "hunter2"})).await, "secret");
    assert_eq!(refused(&s, json!({"url": "http://93.184.215.14/h", "events": ["lead.queued"], "concurrency": 0})).await, "concurrency");
    let (st, e) = s.post("/api/webhooks", &json!({"url": "http://93.184.215.14/h", "events": ["lead.queued"], "colour": 1})).await;
    assert_eq!(st, 422, "{e}");

    // A public target, paused so nothing is sent from the test machine.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (st, sub) = s
        .post("/api/webhooks", &json!({"url": "http://93.184.215.14/h", "events": ["lead.queued"], "secret": secret, "enabled": false}))
        .await;
    assert_eq!(st, 201, "{sub}");
    assert_eq!(sub["secret"], secret);
    let id = sub["id"].as_str().unwrap();
    let (st, p) = s
        .send("PATCH", &format!("/api/webhooks/{id}"), Some(br#"{"events": ["lead.queued", "lead.expired"], "description": "crm"}"#))
        .await;
    assert_eq!((st, &p["events"], &p["description"]), (200, &json!(["lead.queued", "lead.expired"]), &json!("crm")), "{p}");
    assert!(p.get("secret").is_none(), "{p}");
    let (_, all) = s.get("/api/webhooks").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    // Kept in the data directory, secret and all.
    let file: Value = serde_json::from_slice(&std::fs::read(dir.path().join("webhooks.json")).unwrap()).unwrap();
    assert_eq!(file["subscriptions"][0]["secret"], secret);
    assert_eq!(s.send("DELETE", &format!("/api/webhooks/{id}"), None).await.0, 204);
    assert_eq!(s.get(&format!("/api/webhooks/{id}")).await.0, 404);
    assert_eq!(s.send("PATCH", "/api/webhooks/wh-nope", Some(b"{}")).await.0, 404);
    assert_eq!(s.get("/api/webhooks/wh-nope/deliveries").await.0, 404);
    assert_eq!(s.get("/api/webhooks/wh-nope/deliveries?limit=0").await.0, 422);
    s.stop().await;
}

#[actix_rt::test]
async fn kill_9_with_deliveries_pending_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(0, false);
    let env = [
        ("LEADROUTER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("LEADROUTER__WEBHOOKS__POLL_MS", "10"),
        ("LEADROUTER__WEBHOOKS__RETRY_BASE_MS", "50"),
        ("LEADROUTER__WEBHOOKS__RETRY_MAX_MS", "200"),
        ("LEADROUTER__WEBHOOKS__MAX_ATTEMPTS", "100"),
    ];
    let (mut child, base) = spawn_binary(dir.path(), &env);
    let c = client();
    let (st, sub) =
        send(&c, &base, "POST", "/api/webhooks", Some(json!({"url": rx.url, "events": ["lead.assigned"]}).to_string().as_bytes())).await;
    assert_eq!(st, 201, "{sub}");
    let b = broker("k1", "NY", &["LIFE"], 5, 50, 500).to_string();
    assert_eq!(send(&c, &base, "POST", "/api/brokers", Some(b.as_bytes())).await.0, 201);
    for i in 0..20 {
        let (st, d) =
            send(&c, &base, "POST", "/api/routing/decide", Some(lead(&format!("k-{i}"), "NY", &["LIFE"]).to_string().as_bytes())).await;
        assert_eq!(st, 200, "{d}");
    }
    // Attempts are failing when the server is killed.
    rx.wait_for("failing attempts", |r| r.hits().len() >= 20).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    rx.accepting.store(true, Ordering::SeqCst);
    let (mut child, _base) = spawn_binary(dir.path(), &env);
    rx.wait_for("all 20 assignments delivered", |r| r.delivered().len() == 20).await;
    let leads: std::collections::BTreeSet<String> = rx
        .hits()
        .iter()
        .filter(|h| h.answered == 204)
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap()["data"]["leadId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(leads.len(), 20, "{leads:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}
