//! Operations surface: the capacity websocket, admin inspection, access control, shedding.

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::common::{broker, lead, Srv};

const ADMIN: &str = "admin-token-0123456789";
const KEY: &str = "api-key-0123456789abcdef";

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn connect(s: &Srv, query: &str) -> Ws {
    let (_, ws) = s.client.ws(format!("{}/ws/capacity{query}", s.base)).connect().await.expect("websocket connects");
    ws
}

/// Next JSON text message (answering pings).
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

/// An admin request with the right token.
async fn admin(s: &Srv, method: &str, path: &str) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = s
        .client
        .request(method, format!("{}{path}", s.base))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().limit(1 << 24).await.unwrap_or(Value::Null))
}

async fn admin_get(s: &Srv, path: &str) -> (u16, Value) {
    admin(s, "GET", path).await
}

#[actix_rt::test]
async fn capacity_feed_snapshot_deltas_filters_and_deregistration() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.admin_token = ADMIN.into()).await;
    s.add_broker(&broker("w1", "OK", &["AUTO"], 5, 2, 10)).await;
    s.add_broker(&broker("w2", "KY", &["AUTO"], 5, 2, 10)).await;
    let mut all = connect(&s, "").await;
    let snap = next_json(&mut all).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["brokers"].as_array().unwrap().len(), 2);
    let mut ky = connect(&s, "?states=KY").await;
    let snap_ky = next_json(&mut ky).await;
    assert_eq!(snap_ky["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(snap_ky["brokers"][0]["brokerId"], "w2");

    let (st, _) = s.post("/api/routing/decide", &lead("ws-1", "OK", &["AUTO"])).await;
    assert_eq!(st, 200);
    let d = next_json(&mut all).await;
    assert_eq!((d["type"].as_str(), d["brokerId"].as_str(), d["reason"].as_str()), (Some("delta"), Some("w1"), Some("reserve")), "{d}");
    assert_eq!((d["openLeads"].as_u64(), d["maxConcurrent"].as_u64(), d["dailyUsed"].as_u64()), (Some(1), Some(2), Some(1)));
    assert_eq!(d["utilization"], 0.5);
    assert!(d["seq"].as_u64().unwrap() > snap["seq"].as_u64().unwrap());
    s.event("ws-1", "accepted").await;
    s.event("ws-1", "closed").await;
    let e = next_json(&mut all).await;
    assert_eq!((e["reason"].as_str(), e["openLeads"].as_u64()), (Some("closed"), Some(0)), "accept changes no load; close frees it: {e}");
    assert_eq!(e["seq"].as_u64().unwrap(), d["seq"].as_u64().unwrap() + 1);
    // A status edit is a delta too; the KY subscriber sees only its broker.
    s.send("PATCH", "/api/brokers/w2", Some(br#"{"status":"away"}"#)).await;
    let k = next_json(&mut ky).await;
    assert_eq!((k["brokerId"].as_str(), k["reason"].as_str(), k["status"].as_str()), (Some("w2"), Some("config"), Some("away")), "{k}");
    let (_, a) = admin_get(&s, "/admin/actors").await;
    assert_eq!(a["supervisor"]["feedClients"], 2);
    all.send(Message::Close(None)).await.unwrap();
    drop(all);
    let mut clients = Value::Null;
    for _ in 0..100 {
        clients = admin_get(&s, "/admin/actors").await.1["supervisor"]["feedClients"].clone();
        if clients == 1 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(clients, 1, "a closed client deregisters");
    let (st, e) = s.get("/ws/capacity?minUtilization=3").await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("minUtilization")));
    s.stop().await;
}

#[actix_rt::test]
async fn a_stalled_reader_never_blocks_routing_and_learns_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.routing.feed_buffer = 4;
        c.storage.durability = leadrouter_actors::Durability::None;
    })
    .await;
    for i in 0..10 {
        s.add_broker(&broker(&format!("s{i}"), "SC", &["HOME"], 3, 200, 1000)).await;
    }
    let mut stalled = connect(&s, "").await;
    let first = next_json(&mut stalled).await;
    assert_eq!(first["type"], "snapshot");
    // It never reads while a thousand decisions run.
    let results: Vec<u16> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let s = &s;
            async move { s.post("/api/routing/decide", &lead(&format!("st-{i}"), "SC", &["HOME"])).await.0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(results.iter().all(|&st| st == 200), "every decision was served");
    // Now it reads: sequence numbers never skip unless a `lagged` message says how many.
    let mut last = first["seq"].as_u64().unwrap();
    let mut lagged = 0;
    let mut seen = 0;
    while seen < 1000 {
        let m = next_json(&mut stalled).await;
        match m["type"].as_str().unwrap() {
            "delta" => {
                let seq = m["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "gap without a lagged message");
                last = seq;
                seen += 1;
            }
            "lagged" => {
                lagged += m["missed"].as_u64().unwrap();
                let snap = next_json(&mut stalled).await;
                assert_eq!(snap["type"], "snapshot");
                last = snap["seq"].as_u64().unwrap();
                seen = last as usize - first["seq"].as_u64().unwrap() as usize;
            }
            other => panic!("unexpected {other}"),
        }
    }
    eprintln!("stalled reader: {lagged} events reported missed (feed_buffer 4)");
    s.stop().await;
}

#[actix_rt::test]
async fn admin_routes_need_the_token_and_restart_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.admin_token = ADMIN.into()).await;
    s.add_broker(&broker("a1", "WV", &["LIFE"], 4, 5, 10)).await;
    s.post("/api/routing/decide", &lead("adm-1", "WV", &["LIFE"])).await;
    let (st, e) = s.get("/admin/actors").await;
    assert_eq!((st, e["error"]["code"].as_str()), (401, Some("unauthorized")));
    let mut r = s
        .client
        .get(format!("{}/admin/actors", s.base))
        .insert_header(("Authorization", "Bearer wrong-token-000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "forbidden");
    let (st, a) = admin_get(&s, "/admin/actors").await;
    assert_eq!(st, 200, "{a}");
    let b = &a["brokers"][0];
    assert_eq!(b["brokerId"], "a1");
    assert!(b["handled"].as_u64().unwrap() >= 2, "{b}");
    assert_eq!(b["mailbox"], 0);
    assert!(b["lastMessageAt"].is_string());
    assert_eq!(b["state"]["openLeads"], 1);
    let (st, one) = admin_get(&s, "/admin/actors/a1").await;
    assert_eq!(st, 200);
    assert!(one["live"]["open"]["adm-1"]["acceptDeadline"].is_string(), "{one}");
    let (_, v) = admin(&s, "POST", "/admin/actors/a1/restart").await;
    assert_eq!((v["restarts"].as_u64(), v["stateSurvived"].as_bool()), (Some(1), Some(true)), "{v}");
    assert_eq!(admin_get(&s, "/admin/actors").await.1["brokers"][0]["restarts"], 1);
    // The restarted actor still routes and still holds its lead.
    assert_eq!(s.event("adm-1", "accepted").await.0, 200);
    let (st, snap) = admin(&s, "POST", "/admin/snapshot").await;
    assert_eq!(st, 200);
    assert!(snap["seq"].as_u64().unwrap() >= 3, "{snap}");
    s.stop().await;
    // Without a configured token, /admin is disabled: 401 to a request with no credentials
    // (a token is still required), 403 to any token.
    let s = Srv::start(dir.path()).await;
    let (st, e) = s.get("/admin/actors").await;
    assert_eq!((st, e["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (st, e) = admin_get(&s, "/admin/actors").await;
    assert_eq!((st, e["error"]["code"].as_str()), (403, Some("forbidden")));
    s.stop().await;
}

#[actix_rt::test]
async fn api_keys_request_ids_shedding_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.security.api_keys = vec![KEY.into()];
        c.security.max_in_flight = 1;
        c.security.cors_origins = vec!["https://ops.example.com".into()];
    })
    .await;
    let (st, e) = s.get("/api/brokers").await;
    assert_eq!((st, e["error"]["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(s.get("/healthz").await.0, 200, "health stays open");
    let mut r = s.client.get(format!("{}/api/brokers", s.base)).insert_header(("X-Api-Key", "not-the-key-000000000")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let _ = r.body().await;
    let mut r = s
        .client
        .get(format!("{}/api/brokers", s.base))
        .insert_header(("X-Api-Key", KEY))
        .insert_header(("X-Request-Id", "trace-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("x-request-id").unwrap(), "trace-42");
    let _ = r.body().await;
    let mut r = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert!(!r.headers().get("x-request-id").unwrap().is_empty(), "an id is made when none is sent");
    let _ = r.body().await;
    // One request in flight at most: a burst gets some 503s with Retry-After.
    let body = lead("x", "CA", &["AUTO"]).to_string();
    let statuses: Vec<(u16, bool)> = futures_util::future::join_all((0..64).map(|i| {
        let body = body.replace("\"x\"", &format!("\"shed-{i}\""));
        let c = &s.client;
        let url = format!("{}/api/routing/decide", s.base);
        async move {
            let mut r = c
                .post(url)
                .insert_header(("Authorization", format!("Bearer {KEY}")))
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await
                .unwrap();
            let retry = r.headers().contains_key("retry-after");
            let _ = r.body().await;
            (r.status().as_u16(), retry)
        }
    }))
    .await;
    let shed: Vec<_> = statuses.iter().filter(|(st, _)| *st == 503).collect();
    assert!(!shed.is_empty(), "{statuses:?}");
    assert!(shed.iter().all(|(_, retry)| *retry));
    assert!(statuses.iter().all(|(st, _)| [202, 503].contains(st)), "{statuses:?}");
    // CORS preflight: the configured origin is allowed, another is not.
    let r = s
        .client
        .request(awc::http::Method::OPTIONS, format!("{}/api/brokers", s.base))
        .insert_header(("Origin", "https://ops.example.com"))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("https://ops.example.com"));
    let r = s
        .client
        .request(awc::http::Method::OPTIONS, format!("{}/api/brokers", s.base))
        .insert_header(("Origin", "https://evil.example.com"))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let _ = json!(null);
    s.stop().await;
}

#[actix_rt::test]
async fn metrics_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let mut b = broker("mx", "MS", &["AUTO"], 3, 2, 10);
    b["group"] = json!("south");
    s.add_broker(&b).await;
    for i in 0..3 {
        s.post("/api/routing/decide", &lead(&format!("mx-{i}"), "MS", &["AUTO"])).await;
    }
    for ev in ["accepted", "contacted"] {
        s.event("mx-0", ev).await;
    }
    s.post("/api/leads/mx-0/events", &json!({"type": "converted", "value": 1234.4})).await;
    let mut r = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    for want in [
        "leadrouter_decisions_total{result=\"assigned\"} 2",
        "leadrouter_decisions_total{result=\"queued\"} 1",
        "leadrouter_decision_seconds_count{strategy=\"specialty\"} 2",
        "leadrouter_broker_utilization{broker=\"mx\",group=\"south\"} 1",
        "leadrouter_queue_length 1",
        "leadrouter_conversions_total 1",
        "leadrouter_conversion_value_total 1234",
        "leadrouter_sla_compliance 1",
        "leadrouter_brokers 1",
        "leadrouter_websocket_clients 0",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(text.contains("leadrouter_journal_append_seconds_count"));
    assert!(text.contains("leadrouter_journal_fsync_seconds_count"));
    assert!(text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).all(|l| l.starts_with("leadrouter_")));
    s.stop().await;
}

/// Every `leadrouter_*` series named in the alert rules and the dashboard is one the server
/// exports (histogram suffixes stripped).
#[actix_rt::test]
async fn alerts_and_dashboard_only_use_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.routing.experiment_review_seconds = 1;
        // A bounded group: its fairness series exist.
        c.routing.fairness.groups.insert("test".into(), leadrouter_models::fairness::Bounds::default());
    })
    .await;
    s.add_broker(&broker("mm", "MS", &["AUTO"], 3, 100, 100)).await;
    // A running experiment with exposures in both arms, reviewed once: its series exist.
    let def = json!({"id": "exp", "name": "exp", "start": true,
        "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "random", "allocation": 0.5}]});
    assert_eq!(s.post("/api/experiments", &def).await.0, 201);
    for i in 0..20 {
        assert_eq!(s.post("/api/routing/decide", &lead(&format!("m-{i}"), "MS", &["AUTO"])).await.0, 200);
    }
    let started = std::time::Instant::now();
    let text = loop {
        let mut r = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap();
        let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
        if text.contains("leadrouter_experiment_significant{") && text.contains("leadrouter_experiment_srm_p_value{") {
            break text;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "no experiment review: {text}");
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let exported: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(root.join("config/grafana/leadrouter.json")).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "leadrouter");
    for file in ["config/prometheus/alerts.yml", "config/grafana/leadrouter.json"] {
        let body = std::fs::read_to_string(root.join(file)).unwrap();
        let mut names = 0;
        for (i, _) in body.match_indices("leadrouter_") {
            let name: String = body[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base =
                ["_bucket", "_count", "_sum"].iter().fold(name.clone(), |n, suf| n.strip_suffix(suf).map(str::to_string).unwrap_or(n));
            assert!(exported.contains(base.as_str()), "{file} uses {name}, which /metrics does not export");
            names += 1;
        }
        assert!(names > 5, "{file} names metrics");
    }
    s.stop().await;
}

/// The `THP_enabled` line of a process's status: 0 once it turned transparent huge pages off.
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(|v| v.trim().to_string())
}

#[cfg(target_os = "linux")]
#[test]
fn the_server_turns_transparent_huge_pages_off_unless_configured() {
    if thp_enabled(std::process::id()).as_deref() != Some("1") {
        eprintln!("this kernel reports no transparent huge pages for processes; nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (setting, expected) in [(None, "0"), (Some("true"), "1")] {
        let env: Vec<(&str, &str)> = setting.map(|v| ("LEADROUTER__SERVER__TRANSPARENT_HUGE_PAGES", v)).into_iter().collect();
        let (mut child, _) = crate::common::spawn_binary(dir.path(), &env);
        let seen = thp_enabled(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen.as_deref(), Some(expected), "server.transparent_huge_pages = {setting:?}");
    }
}

/// The nice value of each thread of process `pid`, by thread name.
#[cfg(target_os = "linux")]
fn thread_nice(pid: u32) -> std::collections::HashMap<String, i64> {
    let mut out = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (std::fs::read_to_string(dir.join("comm")), std::fs::read_to_string(dir.join("stat"))) else { continue };
        // The fields after the name in parentheses start with the state (field 3); nice is field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        out.insert(comm.trim().to_string(), after.split(' ').nth(16).unwrap().parse().unwrap());
    }
    out
}

/// `POST /admin/snapshot` over a plain TCP connection (the test runs outside any actix system);
/// the whole answer unless it is a 200.
#[cfg(target_os = "linux")]
fn post_snapshot(base: &str, token: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap_or(base);
    let mut answer = String::new();
    std::net::TcpStream::connect(addr)
        .and_then(|mut conn| {
            write!(
                conn,
                "POST /admin/snapshot HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            conn.read_to_string(&mut answer)
        })
        .map_err(|e| e.to_string())?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(answer)
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_snapshotter_runs_at_a_lower_priority_than_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    let token = "nice-test-token-0123456789";
    let (mut child, base) = crate::common::spawn_binary(dir.path(), &[("LEADROUTER__SECURITY__ADMIN_TOKEN", token)]);
    // A thread names itself, then lowers its priority, once it first runs; on a busy machine that
    // can come after the server prints its address, so wait for both (a thread that never lowers
    // its priority fails after the deadline).
    let wanted = leadrouter_actors::background::BACKGROUND_NICE as i64;
    // sled's IO threads write the snapshots; they start when sled is first opened, and the
    // snapshotter lowers them before each snapshot, so ask for snapshots while waiting.
    let sled_io = |nice: &std::collections::HashMap<String, i64>| -> Vec<i64> {
        nice.iter().filter(|(name, _)| name.starts_with("sled-io")).map(|(_, &n)| n).collect()
    };
    let settled = |nice: &std::collections::HashMap<String, i64>| {
        let io = sled_io(nice);
        nice.get("snapshotter") == Some(&wanted) && nice.contains_key("journal-writer") && !io.is_empty() && io.iter().all(|&n| n == wanted)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut nice = thread_nice(child.id());
    let mut snapshots = Ok(());
    while !settled(&nice) && snapshots.is_ok() && std::time::Instant::now() < deadline {
        snapshots = post_snapshot(&base, token);
        std::thread::sleep(std::time::Duration::from_millis(20));
        nice = thread_nice(child.id());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    snapshots.expect("POST /admin/snapshot");
    assert_eq!(nice.get("snapshotter"), Some(&wanted), "{nice:?}");
    let io = sled_io(&nice);
    assert!(!io.is_empty() && io.iter().all(|&n| n == wanted), "sled's IO threads: {nice:?}");
    assert_eq!(nice.get("journal-writer"), Some(&0), "{nice:?}");
}

#[actix_rt::test]
async fn every_strategy_is_named_in_config_metrics_and_the_document() {
    let names: Vec<&str> = leadrouter_models::Strategy::ALL.iter().map(|s| s.name()).collect();
    assert!(names.contains(&"ml"));
    // Weights for every strategy are accepted by the config check.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.toml");
    let toml: String = names
        .iter()
        .map(|n| format!("[routing.weights.{n}]\nspecialty = 0.25\nperformance = 0.25\ncapacity = 0.25\nsla = 0.25\n"))
        .collect();
    std::fs::write(&file, toml).unwrap();
    let o = leadrouter::Overrides { port: Some(0), data_dir: Some(dir.path().join("data")), no_demo: true, ..Default::default() };
    let cfg = leadrouter::Config::load(Some(&file), Vec::new(), &o).expect("weights for every strategy load");
    for n in &names {
        assert_eq!(cfg.routing.weights[*n].specialty, 0.25, "{n}");
    }
    std::fs::write(&file, "[routing.weights.telepathy]\nspecialty = 0.25\nperformance = 0.25\ncapacity = 0.25\nsla = 0.25\n").unwrap();
    let e = leadrouter::Config::load(Some(&file), Vec::new(), &o).unwrap_err().to_string();
    assert!(e.contains("routing.weights.telepathy") && names.iter().all(|n| e.contains(n)), "{e}");
    // Every strategy's decision-time series exists from the first scrape.
    let s = Srv::start(dir.path()).await;
    let mut r = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap();
    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    for n in &names {
        assert!(text.contains(&format!("leadrouter_decision_seconds_count{{strategy=\"{n}\"}}")), "no series for {n}");
    }
    // The document's strategy enum is the same list.
    let (_, doc) = s.get("/api-docs/openapi.json").await;
    let documented: Vec<&str> =
        doc["components"]["schemas"]["Strategy"]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(documented, names);
    s.stop().await;
}
