//! The crash loop: the real binary is started, driven with concurrent decisions and lifecycle
//! events, killed with SIGKILL at a random moment and started again, many times over one data
//! directory. Kills land in the middle of requests, of journal segment rotations (segments of
//! 16 KiB rotate every few dozen records) and near snapshots: on every other round the kill comes
//! 5–80 ms after an admin snapshot request, before its answer; start-up's warning about a
//! snapshot cut between its leads and its meta key counts the kills that hit that window (the
//! test prints how many). After every restart: every acknowledged decision and event is there, no broker
//! holds more leads than its seats, every lead's state fits its history, and the capacity feed's
//! snapshot agrees with the brokers' open leads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::*;

const ROUNDS: usize = 12;
const ADMIN: &str = "crash-loop-admin-token-0001";
const BROKERS: usize = 6;
const SEATS: u32 = 4;

/// A server process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the server acknowledged: each lead's decision and the events it accepted, in order.
#[derive(Clone, Default)]
struct Acked {
    decided: BTreeMap<String, String>,
    events: BTreeMap<String, Vec<String>>,
}

async fn send_to(c: &awc::Client, base: &str, method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> Option<(u16, Value)> {
    let mut req =
        c.request(awc::http::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{path}")).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        req = req.insert_header(("authorization", format!("Bearer {t}")));
    }
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .ok()?;
    let bytes = resp.body().await.ok()?;
    Some((resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// One worker: new leads, and for each assigned one its next lifecycle event, until stopped.
async fn drive(c: awc::Client, base: String, round: usize, worker: usize, acked: Arc<Mutex<Acked>>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    let mut mine: Vec<(String, usize)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let id = format!("cl-{round}-{worker}-{n}");
        match send_to(&c, &base, "POST", "/api/routing/decide", Some(lead(&id, "CA", &["AUTO"])), None).await {
            Some((200, d)) => {
                acked.lock().decided.insert(id.clone(), d["brokerId"].as_str().unwrap().to_string());
                mine.push((id, 0));
            }
            Some((202, _)) => {
                acked.lock().decided.insert(id.clone(), String::new());
            }
            Some(_) => {}
            None => return,
        }
        // Move one earlier lead one step: accepted, contacted, closed (a closed lead frees a seat).
        if let Some(pos) = mine.iter().position(|(_, step)| *step < 3) {
            let (lead_id, step) = mine[pos].clone();
            let kind = ["accepted", "contacted", "closed"][step];
            match send_to(&c, &base, "POST", &format!("/api/leads/{lead_id}/events"), Some(json!({"type": kind})), None).await {
                Some((200, _)) => {
                    acked.lock().events.entry(lead_id).or_default().push(kind.to_string());
                    mine[pos].1 += 1;
                }
                Some(_) => mine[pos].1 = 3,
                None => return,
            }
        }
    }
}

/// Everything acknowledged (of the leads of `rounds`, or all) is there and every invariant
/// holds.
async fn check(c: &awc::Client, base: &str, acked: &Acked, rounds: Option<std::ops::Range<usize>>, data: &std::path::Path) {
    let wanted =
        |id: &str| rounds.as_ref().is_none_or(|r| id.split('-').nth(1).and_then(|n| n.parse().ok()).is_some_and(|n: usize| r.contains(&n)));
    for (lead_id, broker) in acked.decided.iter().filter(|(id, _)| wanted(id)) {
        let (st, l) = send_to(c, base, "GET", &format!("/api/leads/{lead_id}"), None, None).await.unwrap();
        if st != 200 {
            let recs = journal(data);
            let mine: Vec<String> = recs
                .iter()
                .filter(|(_, r)| r.lead_id() == Some(lead_id.as_str()))
                .map(|(s, r)| format!("{s}: {r:?}").chars().take(200).collect())
                .collect();
            let archived =
                recs.iter().any(|(_, r)| matches!(r, leadrouter_actors::Record::Archived { lead_ids, .. } if lead_ids.contains(lead_id)));
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            for (_, r) in &recs {
                *kinds.entry(format!("{r:?}").chars().take_while(|c| c.is_alphanumeric()).collect()).or_default() += 1;
            }
            let segs: Vec<String> =
                std::fs::read_dir(data.join("journal")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            panic!("acknowledged lead {lead_id} is not known after the crash ({st}); journal: {} records {kinds:?}, archived: {archived}, its records: {mine:#?}, segments {segs:?}", recs.len());
        }
        if !broker.is_empty() {
            assert_eq!(l["decisions"][0]["brokerId"].as_str(), Some(broker.as_str()), "{lead_id}: {l}");
        }
        let events: Vec<&str> = l["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        for e in acked.events.get(lead_id).into_iter().flatten() {
            assert!(events.contains(&e.as_str()), "acknowledged {e} of {lead_id} is kept: {events:?}");
        }
        let state = l["state"].as_str().unwrap();
        let legal = match events.last().copied() {
            Some("closed") => state == "closed",
            Some("contacted") => state == "contacted",
            Some("accepted") => state == "accepted",
            Some("timed_out" | "rejected") | None => ["reserved", "queued", "expired"].contains(&state),
            Some(other) => panic!("{lead_id}: unexpected event {other}"),
        };
        assert!(legal, "{lead_id} is {state} after {events:?}");
    }
    let (_, list) = send_to(c, base, "GET", "/api/brokers?limit=1000", None, None).await.unwrap();
    let mut open: HashMap<String, u64> = HashMap::new();
    for b in list["brokers"].as_array().unwrap() {
        let (id, held) = (b["id"].as_str().unwrap(), b["load"]["openLeads"].as_u64().unwrap());
        assert!(held <= u64::from(SEATS), "{id} holds {held} leads with {SEATS} seats");
        let (_, leads) = send_to(c, base, "GET", &format!("/api/brokers/{id}/leads"), None, None).await.unwrap();
        assert_eq!(leads.as_array().unwrap().len() as u64, held, "{id}'s open leads");
        open.insert(id.to_string(), held);
    }
    // The capacity feed starts again from a snapshot that agrees.
    let (_, mut ws) = c.ws(format!("{base}/ws/capacity")).connect().await.expect("the feed connects after the restart");
    let Some(Ok(awc::ws::Frame::Text(t))) = ws.next().await else { panic!("no snapshot from the feed") };
    let snap: Value = serde_json::from_slice(&t).unwrap();
    assert_eq!(snap["type"], "snapshot");
    for b in snap["brokers"].as_array().unwrap() {
        assert_eq!(b["openLeads"].as_u64(), open.get(b["brokerId"].as_str().unwrap()).copied(), "feed: {b}");
    }
}

#[actix_rt::test]
async fn a_dozen_kill_9s_in_a_row_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = if std::env::var_os("KEEP_CRASH_DIR").is_some() {
        let d = std::path::PathBuf::from("/tmp/crashdir");
        let _ = std::fs::remove_dir_all(&d);
        d
    } else {
        data
    };
    let env = [
        ("LEADROUTER__STORAGE__SEGMENT_BYTES", "16384"),
        ("LEADROUTER__STORAGE__SNAPSHOT_INTERVAL_SECONDS", "1"),
        ("LEADROUTER__SECURITY__ADMIN_TOKEN", ADMIN),
        ("LEADROUTER__ROUTING__QUEUE_EXPIRY_SECONDS", "3600"),
    ];
    let acked = Arc::new(Mutex::new(Acked::default()));
    let c = client();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut during_snapshot = 0;
    // Every start's log, appended: start-up says when the last snapshot stopped between its leads
    // and its meta key, the window a kill must hit to test it.
    let log_path = dir.path().join("server.log");
    let log = || std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    for round in 0..ROUNDS {
        let (child, base) = spawn_binary_logging_to(&data, &env, log());
        let mut child = KillOnDrop(child);
        if round == 0 {
            for i in 0..BROKERS {
                let b = broker(&format!("cb-{i}"), "CA", &["AUTO"], 3, SEATS, 10_000);
                assert_eq!(send_to(&c, &base, "POST", "/api/brokers", Some(b), None).await.unwrap().0, 201);
            }
        } else {
            // The previous round's leads, which its kill put at risk (the last check reads all).
            let seen = acked.lock().clone();
            check(&c, &base, &seen, Some(round - 1..round), &data).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> =
            (0..6).map(|w| actix_rt::spawn(drive(c.clone(), base.clone(), round, w, acked.clone(), stop.clone()))).collect();
        actix_rt::time::sleep(Duration::from_millis(rng.u64(150..900))).await;
        if round % 2 == 1 {
            // Kill right behind a snapshot request.
            let answered = Arc::new(AtomicBool::new(false));
            let (c2, b2, a2) = (c.clone(), base.clone(), answered.clone());
            actix_rt::spawn(async move {
                if send_to(&c2, &b2, "POST", "/admin/snapshot", None, Some(ADMIN)).await.is_some_and(|(st, _)| st == 200) {
                    a2.store(true, Ordering::SeqCst);
                }
            });
            // The snapshotter takes requests at its next 20 ms tick, then writes the changed leads
            // for tens of milliseconds before its meta key.
            actix_rt::time::sleep(Duration::from_millis(rng.u64(5..80))).await;
            child.0.kill().unwrap(); // SIGKILL
            if !answered.load(Ordering::SeqCst) {
                during_snapshot += 1;
            }
        } else {
            child.0.kill().unwrap(); // SIGKILL
        }
        child.0.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
    }
    let segments = std::fs::read_dir(data.join("journal")).unwrap().count();
    let (child, base) = spawn_binary_logging_to(&data, &env, log());
    let _child = KillOnDrop(child);
    let seen = acked.lock().clone();
    check(&c, &base, &seen, None, &data).await;
    let a = seen;
    let events: usize = a.events.values().map(Vec::len).sum();
    let cut_snapshots = std::fs::read_to_string(&log_path).unwrap().matches("the last snapshot stopped before its end").count();
    eprintln!(
        "crash loop: {ROUNDS} kills, {} decisions and {events} events acknowledged, {segments} journal segments, \
         {during_snapshot} kills before the snapshot answered, {cut_snapshots} starts after a snapshot cut between its leads and its meta key",
        a.decided.len()
    );
    assert!(a.decided.len() > 200 && events > 100, "enough load: {} decisions, {events} events", a.decided.len());
    assert!(segments > 10, "segments rotated under the load ({segments})");
    assert!(during_snapshot >= 1, "at least one kill came before its snapshot request was answered");
}
