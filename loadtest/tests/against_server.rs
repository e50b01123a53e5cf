//! Runs the real load generator binary, briefly, against the real server on port 0.

use std::process::Command;

use serde_json::Value;

fn run_loadtest(base: String, extra: Vec<String>) -> std::thread::JoinHandle<Value> {
    run_loadtest_for("1", base, extra)
}

/// [`run_loadtest`] with a run of `seconds`.
fn run_loadtest_for(seconds: &'static str, base: String, extra: Vec<String>) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_leadrouter-loadtest"))
            .args(["--target", &base, "--duration", seconds, "--threads", "1", "--json", "--states", "CA,TX"])
            .args(extra)
            .output()
            .expect("load generator runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON report")
    })
}

fn run<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["runs"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {name} run in {report}"))
}

fn assert_percentiles(p: &Value, report: &Value) {
    let v = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {report}"));
    assert!(v("p50Ms") >= 0.0 && v("p50Ms") <= v("p90Ms") && v("p90Ms") <= v("p99Ms"), "{report}");
    assert!(v("p99Ms") <= v("p999Ms") && v("p999Ms") <= v("maxMs") && v("maxMs") > 0.0, "{report}");
}

#[actix_rt::test]
async fn closed_loop_lifecycle_with_subscribers_and_open_loop_decide() {
    let dir = tempfile::tempdir().unwrap();
    let o = leadrouter::Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Default::default() };
    let mut cfg = leadrouter::Config::load(None, Vec::new(), &o).unwrap();
    cfg.storage.durability = leadrouter_actors::Durability::None;
    let running = leadrouter::server::start(cfg).await.unwrap();
    let base = format!("http://{}", running.addr);

    // The server runs in this test process, so its CPU time is this process's.
    let pid = std::process::id().to_string();
    let args = ["--brokers", "20", "--scenario", "lifecycle", "--connections", "8", "--ws", "2", "--server-pid", &pid];
    let report = actix_rt::task::spawn_blocking({
        let h = run_loadtest(base.clone(), args.map(String::from).to_vec());
        move || h.join().unwrap()
    })
    .await
    .unwrap();
    let (floor, life, events) = (run(&report, "healthz"), run(&report, "lifecycle"), run(&report, "events"));
    assert!(floor["ok"].as_u64().unwrap() > 0 && floor["errors"] == 0, "{report}");
    assert!(life["ok"].as_u64().unwrap() > 0 && life["errors"] == 0, "{report}");
    // Every assigned lead went through accepted, contacted and closed.
    let assigned = life["ok"].as_u64().unwrap() - life["queued"].as_u64().unwrap();
    assert_eq!(events["ok"].as_u64().unwrap(), 3 * assigned, "{report}");
    assert_eq!(events["errors"], 0, "{report}");
    let ratio = report["ratioToHealthz"].as_f64().unwrap();
    let expect = life["throughput"].as_f64().unwrap() / floor["throughput"].as_f64().unwrap();
    assert!((ratio - expect).abs() < 1e-9, "{report}");
    assert_eq!(report["websocket"]["connected"], 2, "{report}");
    assert!(report["websocket"]["messages"].as_u64().unwrap() >= 2 + assigned, "a snapshot each and capacity deltas: {report}");
    for p in ["p50Ms", "p90Ms", "p99Ms", "p999Ms", "maxMs"] {
        assert!(life[p].as_f64().unwrap() > 0.0, "{p}: {report}");
    }
    assert!(life["p50Ms"].as_f64() <= life["p99Ms"].as_f64() && life["p99Ms"].as_f64() <= life["maxMs"].as_f64());
    // The engine's own time comes from the decisions' answers; a closed loop sends on answers,
    // not on a schedule, so it has no send lateness.
    assert_percentiles(&life["engineTime"], &report);
    assert!(life["sendLateness"].is_null() && floor["sendLateness"].is_null() && floor["engineTime"].is_null(), "{report}");
    // All four requests of a lifecycle count in the second ratio.
    let requests = life["ok"].as_u64().unwrap() + events["ok"].as_u64().unwrap();
    let all = report["requestsRatioToHealthz"].as_f64().unwrap();
    let expect = requests as f64 / life["seconds"].as_f64().unwrap() / floor["throughput"].as_f64().unwrap();
    assert!((all - expect).abs() < 1e-9, "{report}");
    // Server CPU per request, for the floor and the scenario.
    let cpu = report["serverCpu"].as_array().unwrap();
    assert_eq!(cpu.iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(), ["healthz", "lifecycle"], "{report}");
    assert_eq!(cpu[1]["requests"].as_u64().unwrap(), requests, "{report}");
    for c in cpu {
        let (secs, per) = (c["cpuSeconds"].as_f64().unwrap(), c["microsPerRequest"].as_f64().unwrap());
        assert!(secs > 0.0 && (per - secs * 1e6 / c["requests"].as_f64().unwrap()).abs() < 1e-6, "{report}");
    }

    // Open loop at a fixed rate sends about rate × duration requests whatever the latency.
    let report = actix_rt::task::spawn_blocking({
        let h = run_loadtest(base.clone(), ["--scenario", "decide", "--rate", "200", "--no-floor"].map(String::from).to_vec());
        move || h.join().unwrap()
    })
    .await
    .unwrap();
    let decide = run(&report, "decide");
    let sent = decide["ok"].as_u64().unwrap() + decide["errors"].as_u64().unwrap();
    assert_eq!(sent, 200, "{report}");
    assert!(report["runs"].as_array().unwrap().iter().all(|r| r["name"] != "healthz"));
    assert_percentiles(&decide["sendLateness"], &report);
    assert_percentiles(&decide["engineTime"], &report);
    // Latency counts from the intended send time, so it is never below the lateness.
    assert!(decide["maxMs"].as_f64().unwrap() >= decide["sendLateness"]["maxMs"].as_f64().unwrap(), "{report}");
    assert!(report["ratioToHealthz"].is_null(), "no throughput ratio in the open loop: {report}");
    assert!(report["requestsRatioToHealthz"].is_null() && report["serverCpu"].as_array().unwrap().is_empty(), "{report}");
    // Durability `none` answers without an fsync.
    assert_eq!(report["serverStorage"]["fsyncs"], 0, "{report}");
    assert!(report["serverStorage"]["fsyncMeanMs"].is_null() && report["serverStorageError"].is_null(), "{report}");
    running.stop().await.unwrap();
}

/// The `_count` of the histogram `name` on the server's /metrics.
async fn count(base: &str, name: &str) -> u64 {
    let mut resp = awc::Client::default().get(format!("{base}/metrics")).send().await.expect("GET /metrics");
    let text = String::from_utf8(resp.body().limit(16 << 20).await.expect("metrics body").to_vec()).expect("UTF-8");
    let line = format!("{name}_count ");
    let v = text.lines().find_map(|l| l.strip_prefix(line.as_str())).unwrap_or_else(|| panic!("no {name}_count in {text}"));
    v.parse::<f64>().expect("a count") as u64
}

/// `POST /admin/snapshot`, which answers once the snapshot is written.
async fn snapshot_now(base: &str) {
    let resp = awc::Client::default()
        .post(format!("{base}/admin/snapshot"))
        .insert_header(("Authorization", "Bearer lt-admin"))
        .send()
        .await
        .expect("POST /admin/snapshot");
    assert_eq!(resp.status(), 200);
}

#[actix_rt::test]
async fn the_report_gives_the_servers_fsyncs_and_snapshots_during_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = leadrouter::Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Default::default() };
    let mut cfg = leadrouter::Config::load(None, Vec::new(), &o).unwrap();
    assert_eq!(cfg.storage.durability, leadrouter_actors::Durability::Fsync, "the default: an fsync before each answer");
    cfg.security.admin_token = "lt-admin".into();
    let running = leadrouter::server::start(cfg).await.unwrap();
    let base = format!("http://{}", running.addr);
    let (fsync, snapshot) = ("leadrouter_journal_fsync_seconds", "leadrouter_snapshot_seconds");

    // The brokers in a run of their own, so that their appends come before the measured run.
    let setup = ["--brokers", "20", "--scenario", "healthz", "--no-floor"].map(String::from).to_vec();
    let h = run_loadtest(base.clone(), setup);
    actix_rt::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();
    // And a snapshot before it, which the run's count must leave out.
    snapshot_now(&base).await;
    let (fsyncs_before, snapshots_before) = (count(&base, fsync).await, count(&base, snapshot).await);
    let run = ["--scenario", "lifecycle", "--connections", "4", "--no-floor"].map(String::from).to_vec();
    let h = run_loadtest_for("3", base.clone(), run);
    // Once the run has begun (its first append is fsynced), one snapshot during it.
    let waiting = std::time::Instant::now();
    while count(&base, fsync).await == fsyncs_before {
        assert!(waiting.elapsed().as_secs() < 30, "the run made no append in 30 s");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    snapshot_now(&base).await;
    let report = actix_rt::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();
    let (fsyncs_after, snapshots_after) = (count(&base, fsync).await, count(&base, snapshot).await);
    assert!(snapshots_before >= 1, "the snapshot before the run is counted");

    let s = &report["serverStorage"];
    assert!(report["serverStorageError"].is_null(), "{report}");
    // Every fsync and snapshot of the server between the two readings was in the run, and
    // nothing else wrote after it.
    let fsyncs = s["fsyncs"].as_u64().unwrap();
    assert!(fsyncs > 0 && fsyncs == fsyncs_after - fsyncs_before, "{fsyncs_before} → {fsyncs_after}: {report}");
    assert_eq!((s["snapshots"].as_u64().unwrap(), snapshots_after - snapshots_before), (1, 1), "{report}");
    assert!(s["snapshotSeconds"].as_f64().unwrap() > 0.0 && s["fsyncMeanMs"].as_f64().unwrap() > 0.0, "{report}");
    // Slow fsyncs are counted at 5, 25 and 100 ms, each count within the one before.
    let slower: Vec<(f64, u64)> = serde_json::from_value(s["fsyncsSlowerThan"].clone()).unwrap();
    assert_eq!(slower.iter().map(|p| p.0).collect::<Vec<_>>(), [5.0, 25.0, 100.0], "{report}");
    assert!(slower[0].1 <= fsyncs && slower[1].1 <= slower[0].1 && slower[2].1 <= slower[1].1, "{report}");
    // The slowest fsync's bucket: every fsync took at most its upper bound.
    let (above, at_most) = (s["slowestFsync"]["aboveMs"].as_f64().unwrap(), s["slowestFsync"]["atMostMs"].as_f64());
    assert!(at_most.is_none_or(|hi| hi > above), "{report}");
    for &(ms, n) in &slower {
        assert_eq!(n > 0, above >= ms, "a fsync slower than {ms} ms is one whose bucket lies above it: {report}");
    }
    running.stop().await.unwrap();
}
