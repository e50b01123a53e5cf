//! Revenue-optimal routing and adaptive throttling through HTTP: `roi` decisions and their
//! breakdown, the overload flag, throttling steps in the websocket, the admin view, the metrics,
//! the journal, and after a restart.

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use leadrouter_actors::Record;
use serde_json::{json, Value};

use crate::common::{broker, journal, lead, Srv};

const ADMIN: &str = "admin-token-0123456789";

#[actix_rt::test]
async fn roi_decisions_show_their_terms_and_explain_the_score() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let mut cheap = broker("cheap", "TX", &["AUTO"], 3, 10, 100);
    cheap["costPerLead"] = json!(0);
    let mut pricey = broker("pricey", "TX", &["AUTO"], 3, 10, 100);
    pricey["costPerLead"] = json!(400);
    s.add_broker(&cheap).await;
    s.add_broker(&pricey).await;
    let mut req = lead("r1", "TX", &["AUTO"]);
    req["strategy"] = json!("roi");
    let (st, d) = s.post("/api/routing/decide", &req).await;
    assert_eq!(st, 200, "{d}");
    // Equal on paper, so the broker that costs 400 less wins.
    assert_eq!(d["brokerId"], "cheap", "{d}");
    assert_eq!(d["strategy"], "roi");
    let b = &d["breakdown"];
    let t = &b["roi"];
    assert_eq!(b["conversionSource"], "evidence");
    assert_eq!(t["value"], 1000.0);
    // With no history P is the population prior, 1/10: expected value 100.
    assert!((t["expectedValue"].as_f64().unwrap() - 100.0).abs() < 1e-6, "{t}");
    assert_eq!(t["cost"], 0.0);
    // One of ten seats once it takes the lead: ψ(0.1) = (e^0.3 − 1)/(e^3 − 1) of a seat value of 100.
    let psi = (0.3f64.exp() - 1.0) / (3f64.exp() - 1.0);
    assert!((t["seatPrice"].as_f64().unwrap() - 100.0 * psi).abs() < 0.01, "{t}");
    assert!((t["load"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    // Optimism: 0.5 · √(0.1·0.9/20) = 0.0335 (under the 0.05 cap) × 1000.
    let opt = 0.5 * (0.09f64 / 20.0).sqrt() * 1000.0;
    assert!((t["optimism"].as_f64().unwrap() - opt).abs() < 0.01, "{t}");
    let net = 100.0 - 100.0 * psi + opt;
    assert!((d["score"].as_f64().unwrap() - net).abs() < 1e-3, "{d}");
    assert_eq!(b["specialty"]["weight"], 0.0, "the seed factors are shown with weight 0");
    let text = b["explanation"].as_str().unwrap();
    assert_eq!(
        text,
        format!("expected value 100 − seat price {} + new-broker bonus {} = {}", (100.0 * psi).round(), opt.round(), net.round())
    );
    let alt = &d["alternatives"][0];
    assert_eq!(alt["brokerId"], "pricey");
    assert_eq!(alt["breakdown"]["roi"]["cost"], 400.0);
    assert!(alt["breakdown"]["explanation"].as_str().unwrap().contains("− cost 400"), "{alt}");
    // The breakdown is journaled: the lead reads the same after a restart.
    let (_, before) = s.get("/api/leads/r1").await;
    s.stop().await;
    let s = Srv::start(dir.path()).await;
    let (_, after) = s.get("/api/leads/r1").await;
    assert_eq!(before["decisions"], after["decisions"]);
    assert_eq!(after["decisions"][0]["breakdown"]["roi"]["cost"], 0.0);
    s.stop().await;
}

#[actix_rt::test]
async fn a_margin_table_scales_the_value_and_bad_settings_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.routing.roi.margins.life = 0.25).await;
    s.add_broker(&broker("m1", "TX", &["AUTO", "LIFE"], 3, 10, 100)).await;
    let mut req = lead("m-1", "TX", &["AUTO", "LIFE"]);
    req["strategy"] = json!("roi");
    let (_, d) = s.post("/api/routing/decide", &req).await;
    // (1 + 0.25) / 2 of 1000.
    assert_eq!(d["breakdown"]["roi"]["value"], 625.0, "{d}");
    s.stop().await;
    let mut cfg = crate::common::test_config(dir.path());
    cfg.routing.roi.seat_price_curvature = -1.0;
    let e = leadrouter::server::start(cfg).await.err().expect("refused").to_string();
    assert!(e.contains("routing.roi.seat_price_curvature"), "{e}");
}

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message in time").expect("open").expect("frame");
        match f {
            Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
            Frame::Ping(p) => ws.send(Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

/// The next capacity event for broker `id` with `reason`.
async fn next_event(ws: &mut Ws, id: &str, reason: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["brokerId"] == id && v["reason"] == reason {
            return v;
        }
    }
}

/// Broker `id`'s entry in the admin actor list (its capacity state under `state`).
async fn admin_state(s: &Srv, id: &str) -> Value {
    let mut r =
        s.client.get(format!("{}/admin/actors", s.base)).insert_header(("Authorization", format!("Bearer {ADMIN}"))).send().await.unwrap();
    let all = r.json::<Value>().limit(1 << 24).await.unwrap();
    all["brokers"].as_array().unwrap().iter().find(|b| b["brokerId"] == id).cloned().unwrap_or(Value::Null)
}

/// One lead worked by `t1` and closed without a contact (an SLA miss), or contacted at once (a hit).
async fn work(s: &Srv, id: &str, hit: bool) {
    let (st, d) = s.post("/api/routing/decide", &lead(id, "TX", &["AUTO"])).await;
    assert_eq!((st, d["brokerId"].as_str()), (200, Some("t1")), "{d}");
    s.event(id, "accepted").await;
    if hit {
        s.event(id, "contacted").await;
    }
    s.event(id, "closed").await;
}

#[actix_rt::test]
async fn throttling_withholds_seats_while_sla_slips_and_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut leadrouter::config::Config| {
        c.security.admin_token = ADMIN.into();
        let t = &mut c.routing.throttle;
        (t.enabled, t.window, t.min_samples, t.step_minutes, t.floor) = (true, 4, 2, 0, 0.5);
    };
    let s = Srv::start_with(dir.path(), tweak).await;
    s.add_broker(&broker("t1", "TX", &["AUTO"], 4, 4, 100)).await;
    let (_, mut ws) = s.client.ws(format!("{}/ws/capacity", s.base)).connect().await.expect("websocket connects");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    work(&s, "a1", false).await;
    work(&s, "a2", false).await;
    // Two misses of two: one seat withheld.
    let e = next_event(&mut ws, "t1", "throttled").await;
    assert_eq!((e["seats"].as_u64(), e["maxConcurrent"].as_u64(), e["throttled"].as_bool()), (Some(3), Some(4), Some(true)), "{e}");
    work(&s, "a3", true).await;
    // 1 of 3 in time: a second seat, the floor (half of 4).
    assert_eq!(next_event(&mut ws, "t1", "throttled").await["seats"], 2);
    for i in 0..2 {
        work(&s, &format!("b{i}"), true).await;
    }
    // 3 of the last 4 in time: still below target, and the floor holds.
    let a = admin_state(&s, "t1").await;
    assert_eq!((a["state"]["seats"].as_u64(), a["state"]["throttled"].as_bool()), (Some(2), Some(true)), "{a}");
    // Two seats withheld: with two leads open the broker is full, a third lead waits.
    for id in ["c1", "c2"] {
        let (_, d) = s.post("/api/routing/decide", &lead(id, "TX", &["AUTO"])).await;
        assert_eq!(d["brokerId"], "t1");
    }
    let (_, q) = s.post("/api/routing/decide", &lead("c3", "TX", &["AUTO"])).await;
    assert_eq!(q["status"], "queued", "{q}");
    let (_, m) = s.send("GET", "/metrics", None).await;
    let text = m["raw"].as_str().unwrap();
    assert!(text.contains("leadrouter_brokers_throttled 1"), "{text}");
    assert!(text.contains("leadrouter_throttle_steps_total{direction=\"down\"} 2"), "{text}");
    for id in ["c1", "c2"] {
        s.event(id, "accepted").await;
        s.event(id, "contacted").await;
    }
    // Four hits in a row: a seat back (then the next hit gives back the other).
    let e = next_event(&mut ws, "t1", "throttled").await;
    assert_eq!(e["seats"], 3, "{e}");
    assert_eq!(next_event(&mut ws, "t1", "throttled").await["seats"], 4);
    // The queued lead took the seat freed by throttling or waits for the next; either way t1
    // holds at most 3.
    let a = admin_state(&s, "t1").await;
    assert!(a["state"]["openLeads"].as_u64().unwrap() <= 3, "{a}");
    let steps: Vec<u32> = journal(dir.path())
        .into_iter()
        .filter_map(|(_, r)| match r {
            Record::BrokerThrottled { withheld, .. } => Some(withheld),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [1, 2, 1, 0]);
    // Replay gives the same effective seats.
    let seats = admin_state(&s, "t1").await["state"]["seats"].clone();
    s.stop().await;
    let s = Srv::start_with(dir.path(), tweak).await;
    assert_eq!(admin_state(&s, "t1").await["state"]["seats"], seats);
    s.stop().await;
}

#[actix_rt::test]
async fn an_overloaded_broker_is_flagged_and_penalised() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.admin_token = ADMIN.into()).await;
    s.add_broker(&broker("busy", "TX", &["AUTO"], 5, 10, 100)).await;
    s.add_broker(&broker("idle", "TX", &["AUTO"], 4, 10, 100)).await;
    // Nine of busy's ten seats taken: 90% > 85%.
    for i in 0..9 {
        let mut r = lead(&format!("o{i}"), "TX", &["AUTO"]);
        r["excludeBrokers"] = json!(["idle"]);
        s.post("/api/routing/decide", &r).await;
    }
    let a = admin_state(&s, "busy").await;
    assert_eq!(a["state"]["overloaded"], true, "{a}");
    let (_, d) = s.post("/api/routing/decide", &lead("o-next", "TX", &["AUTO"])).await;
    let busy = std::iter::once(&d).chain(d["alternatives"].as_array().unwrap()).find(|c| c["brokerId"] == "busy").expect("busy scored");
    let pen = busy["breakdown"]["adjustments"]["overload"].as_f64().unwrap();
    assert!(pen < 0.0, "{busy}");
    assert!(busy["breakdown"]["explanation"].as_str().unwrap().contains("− overload"), "{busy}");
    let (_, m) = s.send("GET", "/metrics", None).await;
    assert!(m["raw"].as_str().unwrap().contains("leadrouter_brokers_overloaded 1"));
    s.stop().await;
}
