//! Runs the real load generator binary, briefly, against the real server on port 0.

use std::process::Command;

use serde_json::Value;

fn run_loadtest(base: String, extra: Vec<String>) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_leadrouter-loadtest"))
            .args(["--target", &base, "--duration", "1", "--threads", "1", "--json", "--states", "CA,TX"])
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
    running.stop().await.unwrap();
}
