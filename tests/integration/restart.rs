//! Durability: graceful restart, kill -9 in the middle of a load, torn and corrupt journals.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{broker, client, journal, journal_open_counts, lead, test_config, Srv};

/// Every broker, and the leads `{prefix}-0` to `{prefix}-{n - 1}`.
async fn world(s: &Srv, prefix: &str, n: usize) -> (Value, Vec<Value>) {
    let (_, brokers) = s.get("/api/brokers").await;
    let mut leads = Vec::new();
    for i in 0..n {
        leads.push(s.get(&format!("/api/leads/{prefix}-{i}")).await.1);
    }
    (brokers, leads)
}

#[actix_rt::test]
async fn graceful_restart_restores_everything_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    // Room for every lead, so nothing waits in the queue and no background assignment races
    // the snapshot of the world taken below.
    for i in 0..4 {
        s.add_broker(&broker(&format!("g{i}"), "MN", &["AUTO", "LIFE"], (i + 2) as u8, 6, 20)).await;
    }
    for i in 0..20 {
        s.post("/api/routing/decide", &lead(&format!("gr-{i}"), "MN", &["AUTO"])).await;
    }
    for i in 0..6 {
        s.event(&format!("gr-{i}"), "accepted").await;
    }
    for i in 0..3 {
        s.event(&format!("gr-{i}"), "contacted").await;
        s.event(&format!("gr-{i}"), "converted").await;
        s.event(&format!("gr-{i}"), "closed").await;
    }
    s.event("gr-10", "rejected").await;
    let before = world(&s, "gr", 20).await;
    let perf_before = s.get("/api/brokers/g3/performance").await.1;
    s.stop().await;

    let s = Srv::start(dir.path()).await;
    let report = &s.running().engine().report;
    assert!(report.snapshot.is_some(), "graceful stop writes a snapshot");
    assert_eq!(report.replayed, 0, "the snapshot covers the whole journal");
    assert_eq!(world(&s, "gr", 20).await, before);
    assert_eq!(s.get("/api/brokers/g3/performance").await.1, perf_before);
    // And the engine goes on from there.
    assert_eq!(s.event("gr-3", "contacted").await.0, 200);
    s.stop().await;
}

/// Copies a data directory, as a crash at this moment would leave it (in `fsync` mode the journal
/// is durable before each answer; sled is closed between snapshots). The lock file stays behind.
fn copy_data_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_data_dir(&entry.path(), &target);
        } else if entry.file_name() != leadrouter_actors::engine::LOCK_FILE {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[actix_rt::test]
async fn start_up_reads_only_the_journal_the_snapshot_does_not_cover() {
    const TOKEN: &str = "restart-token-0123456789";
    let small_segments = |c: &mut leadrouter::Config| {
        c.storage.segment_bytes = 4096;
        c.security.admin_token = TOKEN.into();
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), small_segments).await;
    for i in 0..3 {
        s.add_broker(&broker(&format!("s{i}"), "OR", &["AUTO"], (i + 2) as u8, 20, 50)).await;
    }
    for i in 0..12 {
        assert_eq!(s.post("/api/routing/decide", &lead(&format!("sk-{i}"), "OR", &["AUTO"])).await.0, 200);
    }
    let mut r = s
        .client
        .post(format!("{}/admin/snapshot", s.base))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let covered = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    // After the snapshot: events on covered leads, and new leads.
    for i in 0..4 {
        assert_eq!(s.event(&format!("sk-{i}"), "accepted").await.0, 200);
    }
    // (No rejection: a re-queued lead could be assigned again while the directory is copied.)
    assert_eq!(s.event("sk-1", "contacted").await.0, 200);
    for i in 12..15 {
        assert_eq!(s.post("/api/routing/decide", &lead(&format!("sk-{i}"), "OR", &["AUTO"])).await.0, 200);
    }
    let before = world(&s, "sk", 15).await;
    let crashed = tempfile::tempdir().unwrap();
    copy_data_dir(dir.path(), crashed.path());
    s.stop().await;
    let records = journal(crashed.path());
    let last = records.last().unwrap().0;
    assert!(last > covered);

    // Every segment that holds only covered records is overwritten: start-up must not read it.
    let segs = leadrouter_actors::storage::journal::segments(&leadrouter_actors::engine::journal_dir(crashed.path())).unwrap();
    let first_seq = |p: &std::path::Path| p.file_stem().unwrap().to_str().unwrap().parse::<u64>().unwrap();
    let mut damaged = 0;
    for pair in segs.windows(2) {
        if first_seq(&pair[1]) <= covered + 1 {
            std::fs::write(&pair[0], vec![0xa5; 64]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged >= 2, "the snapshot covers whole segments ({damaged} of {})", segs.len());
    let s = Srv::start_with(crashed.path(), small_segments).await;
    let report = &s.running().engine().report;
    assert_eq!(report.snapshot.as_ref().map(|m| m.seq), Some(covered));
    assert_eq!(report.replayed, last - covered, "only the records after the snapshot are replayed");
    assert_eq!(world(&s, "sk", 15).await, before);
    s.stop().await;
}

fn spawn_binary_in(dir: &std::path::Path, durability: &str) -> (Child, String) {
    crate::common::spawn_binary(
        dir,
        &[
            ("LEADROUTER__STORAGE__SNAPSHOT_INTERVAL_SECONDS", "3600"),
            ("LEADROUTER_LOG", "warn"),
            ("LEADROUTER__STORAGE__DURABILITY", durability),
        ],
    )
}

async fn try_post(c: &awc::Client, base: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    let mut r = c.post(format!("{base}{path}")).send_json(body).await.ok()?;
    let bytes = r.body().await.ok()?;
    Some((r.status().as_u16(), serde_json::from_slice(&bytes).ok()?))
}

#[actix_rt::test]
async fn kill_9_mid_load_loses_no_answered_decision() {
    kill_9_mid_load("fsync").await;
}

/// In `batch` mode each request writes its own record to the OS before it is answered, so a
/// killed process (the machine still up) loses no answered decision either.
#[actix_rt::test]
async fn kill_9_mid_load_in_batch_mode_loses_no_answered_decision() {
    kill_9_mid_load("batch").await;
}

async fn kill_9_mid_load(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_binary_in(dir.path(), durability);
    let child = Arc::new(Mutex::new(child));
    let c = client();
    let mut max = HashMap::new();
    for i in 0..20 {
        let id = format!("k{i}");
        let (st, _) = try_post(&c, &base, "/api/brokers", &broker(&id, "KS", &["HOME"], (i % 5 + 1) as u8, 15, 1000)).await.unwrap();
        assert_eq!(st, 201);
        max.insert(id, 15);
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let load = stream::iter(0..1500)
        .map(|i| {
            let (c, base, answered) = (&c, &base, answered.clone());
            async move {
                let id = format!("k9-{i}");
                let (st, d) = try_post(c, base, "/api/routing/decide", &lead(&id, "KS", &["HOME"])).await?;
                answered.fetch_add(1, Ordering::SeqCst);
                if st == 200 && i % 2 == 0 {
                    // Cycle capacity: some leads are worked and closed while the load runs.
                    try_post(c, base, &format!("/api/leads/{id}/events"), &json!({"type": "accepted"})).await?;
                    try_post(c, base, &format!("/api/leads/{id}/events"), &json!({"type": "closed"})).await?;
                }
                Some((st, d))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    let killer = {
        let (child, answered) = (child.clone(), answered.clone());
        async move {
            while answered.load(Ordering::SeqCst) < 400 {
                actix_rt::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let mut ch = child.lock().unwrap();
            ch.kill().unwrap(); // SIGKILL
            ch.wait().unwrap();
        }
    };
    let (results, ()) = futures_util::future::join(load, killer).await;
    let ok: Vec<Value> = results.into_iter().flatten().filter(|(st, _)| *st == 200).map(|(_, d)| d).collect();
    assert!(ok.len() >= 100, "enough decisions were answered before the kill ({})", ok.len());
    assert!(results_missing_some(&ok), "the kill happened mid-load");

    let s = Srv::start(dir.path()).await;
    for d in &ok {
        let (st, l) = s.get(&format!("/api/leads/{}", d["leadId"].as_str().unwrap())).await;
        assert_eq!(st, 200, "answered lead {} is known after the crash", d["leadId"]);
        assert_eq!(l["decisions"][0]["decisionId"], d["decisionId"]);
    }
    let implied = journal_open_counts(&journal(dir.path()), &max);
    for i in 0..20 {
        let id = format!("k{i}");
        let (_, b) = s.get(&format!("/api/brokers/{id}")).await;
        assert_eq!(b["load"]["openLeads"].as_i64().unwrap(), implied.get(&id).copied().unwrap_or(0), "{id}");
    }
    s.stop().await;
}

fn results_missing_some(ok: &[Value]) -> bool {
    ok.len() < 1500
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    leadrouter_actors::storage::journal::segments(&leadrouter_actors::engine::journal_dir(dir)).unwrap().pop().unwrap()
}

#[actix_rt::test]
async fn a_torn_journal_tail_is_cut_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("t1", "MO", &["AUTO"], 3, 10, 10)).await;
    for i in 0..5 {
        s.post("/api/routing/decide", &lead(&format!("torn-{i}"), "MO", &["AUTO"])).await;
    }
    s.stop().await;
    // A crash before any snapshot, in the middle of writing the last record: its last bytes
    // never reached the disk, and the segment's unused space reads as zeros.
    std::fs::remove_dir_all(dir.path().join("snapshot")).unwrap();
    let seg = last_segment(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    data[end - 7..end].fill(0);
    std::fs::write(&seg, data).unwrap();

    let s = Srv::start(dir.path()).await;
    let report = &s.running().engine().report;
    assert_eq!(report.journal.torn_tail.as_ref().map(|t| t.0.clone()), Some(seg.clone()));
    assert_eq!(s.get("/api/leads/torn-3").await.0, 200);
    assert_eq!(s.get("/api/leads/torn-4").await.0, 404, "the torn record is gone");
    assert_eq!(s.get("/api/brokers/t1").await.1["load"]["openLeads"], 4);
    // The cut is clean: new records append and survive another restart.
    assert_eq!(s.post("/api/routing/decide", &lead("torn-4", "MO", &["AUTO"])).await.0, 200);
    s.stop().await;
    let s = Srv::start(dir.path()).await;
    assert_eq!(s.get("/api/brokers/t1").await.1["load"]["openLeads"], 5);
    s.stop().await;
}

#[actix_rt::test]
async fn corruption_in_the_middle_stops_start_up_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("c1", "MO", &["AUTO"], 3, 10, 10)).await;
    for i in 0..3 {
        s.post("/api/routing/decide", &lead(&format!("cor-{i}"), "MO", &["AUTO"])).await;
    }
    s.stop().await;
    let seg = last_segment(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    // The first record whose length does not end in a zero byte: in the last segment a frame
    // starting with a zero byte that fails its checksum reads as a torn write.
    let mut off = 8;
    while data[off] == 0 {
        off += 8 + u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
    }
    data[off + 8 + 20] ^= 0x55; // inside its JSON, which stays ASCII and non-zero
    std::fs::write(&seg, data).unwrap();
    let err = match leadrouter::server::start(test_config(dir.path())).await {
        Ok(_) => panic!("start-up must refuse a corrupt journal"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&seg.display().to_string()) && err.contains(&format!("offset {off}")), "{err}");
}

#[actix_rt::test]
async fn journal_dump_prints_every_record_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    s.add_broker(&broker("d1", "NJ", &["AUTO"], 3, 10, 10)).await;
    s.post("/api/routing/decide", &lead("dump-1", "NJ", &["AUTO"])).await;
    s.event("dump-1", "accepted").await;
    s.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter")).args(["journal", "dump", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = lines.iter().map(|l| l["record"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["broker_upserted", "decided", "lead_event"]);
    assert_eq!(lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(lines[1]["record"]["decision"]["leadId"], "dump-1");
    assert_eq!(lines[2]["record"]["event"], "accepted");
}

#[actix_rt::test]
async fn sigterm_stops_gracefully_with_a_final_snapshot_and_a_plain_text_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let env = [("LEADROUTER__STORAGE__SNAPSHOT_INTERVAL_SECONDS", "3600"), ("LEADROUTER_LOG", "info")];
    let (mut child, base) = crate::common::spawn_binary_logging_to(&dir.path().join("data"), &env, log);
    let c = client();
    assert_eq!(try_post(&c, &base, "/api/brokers", &broker("sig", "AL", &["AUTO"], 3, 5, 5)).await.unwrap().0, 201);
    assert_eq!(try_post(&c, &base, "/api/routing/decide", &lead("sig-1", "AL", &["AUTO"])).await.unwrap().0, 200);
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
    // A log that is not a terminal gets no colour codes.
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("SIGTERM: stopping"), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in a log file: {text:?}");
    let s = Srv::start(&dir.path().join("data")).await;
    let report = &s.running().engine().report;
    assert_eq!((report.snapshot.as_ref().map(|m| m.seq), report.replayed), (Some(2), 0), "the final snapshot covers the journal");
    assert_eq!(s.get("/api/leads/sig-1").await.1["state"], "reserved");
    s.stop().await;
}

#[actix_rt::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, base) = crate::common::spawn_binary(dir.path(), &[("LEADROUTER_LOG", "warn")]);
    let mut second = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["serve", "--port", "0", "--no-demo", "--data-dir"])
        .arg(dir.path())
        .env("LEADROUTER_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            second.kill().unwrap();
            panic!("a second server started on a data directory in use");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lock = dir.path().join("lock");
    assert!(stderr.contains("is in use by another process") && stderr.contains(&lock.display().to_string()), "{stderr}");
    // The first one goes on serving and writing.
    let c = client();
    let (status, _) =
        crate::common::send(&c, &base, "POST", "/api/brokers", Some(broker("s1", "ND", &["AUTO"], 3, 5, 5).to_string().as_bytes())).await;
    assert_eq!(status, 201);
    let (status, d) =
        crate::common::send(&c, &base, "POST", "/api/routing/decide", Some(lead("second-1", "ND", &["AUTO"]).to_string().as_bytes())).await;
    assert_eq!((status, d["brokerId"].as_str()), (200, Some("s1")), "{d}");
    first.kill().unwrap();
    first.wait().unwrap();
}

/// A restart after a crash replays the journal after the last snapshot; the next snapshot must
/// hold what that replay changed, or a second crash loses it (the snapshot would cover a
/// position whose changes it lacks). Crash, restart, snapshot, crash, restart: all still there.
#[actix_rt::test]
async fn a_snapshot_after_a_crash_holds_what_the_replay_changed() {
    const ADMIN: &str = "two-crashes-admin-token-01";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("LEADROUTER__SECURITY__ADMIN_TOKEN", ADMIN)];
    let c = client();
    let call = |base: String, method: &'static str, path: &'static str, body: Option<Value>| {
        let c = c.clone();
        async move {
            let req = c
                .request(awc::http::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{path}"))
                .insert_header(("authorization", format!("Bearer {ADMIN}")));
            let mut resp = match body {
                Some(b) => req.send_json(&b).await,
                None => req.send().await,
            }
            .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().limit(1 << 20).await.unwrap_or(Value::Null))
        }
    };
    let (mut first, base) = crate::common::spawn_binary(&data, &env);
    assert_eq!(call(base.clone(), "POST", "/api/brokers", Some(broker("tc-1", "OR", &["AUTO"], 4, 5, 50))).await.0, 201);
    assert_eq!(call(base.clone(), "POST", "/api/routing/decide", Some(lead("tc-lead", "OR", &["AUTO"]))).await.0, 200);
    first.kill().unwrap(); // SIGKILL: no snapshot was written
    first.wait().unwrap();
    let (mut second, base) = crate::common::spawn_binary(&data, &env);
    let (st, snap) = call(base.clone(), "POST", "/admin/snapshot", None).await;
    assert_eq!(st, 200, "{snap}");
    second.kill().unwrap();
    second.wait().unwrap();
    let (mut third, base) = crate::common::spawn_binary(&data, &env);
    let (st, b) = call(base.clone(), "GET", "/api/brokers/tc-1", None).await;
    assert_eq!((st, b["load"]["openLeads"].as_u64()), (200, Some(1)), "{b}");
    let (st, l) = call(base.clone(), "GET", "/api/leads/tc-lead", None).await;
    assert_eq!((st, l["brokerId"].as_str()), (200, Some("tc-1")), "{l}");
    third.kill().unwrap();
    third.wait().unwrap();
}
