//! Runs the real load generator binary, briefly, against the real server on port 0.

use std::process::Command;

use serde_json::Value;

fn run_loadtest(base: String, extra: &'static [&'static str]) -> std::thread::JoinHandle<Value> {
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

#[actix_rt::test]
async fn closed_loop_lifecycle_with_subscribers_and_open_loop_decide() {
    let dir = tempfile::tempdir().unwrap();
    let o = leadrouter::Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Default::default() };
    let mut cfg = leadrouter::Config::load(None, Vec::new(), &o).unwrap();
    cfg.storage.durability = leadrouter_actors::Durability::None;
    let running = leadrouter::server::start(cfg).await.unwrap();
    let base = format!("http://{}", running.addr);

    let args: &'static [&'static str] = &["--brokers", "20", "--scenario", "lifecycle", "--connections", "8", "--ws", "2"];
    let report = actix_rt::task::spawn_blocking({
        let h = run_loadtest(base.clone(), args);
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

    // Open loop at a fixed rate sends about rate × duration requests whatever the latency.
    let report = actix_rt::task::spawn_blocking({
        let h = run_loadtest(base.clone(), &["--scenario", "decide", "--rate", "200", "--no-floor"]);
        move || h.join().unwrap()
    })
    .await
    .unwrap();
    let decide = run(&report, "decide");
    let sent = decide["ok"].as_u64().unwrap() + decide["errors"].as_u64().unwrap();
    assert_eq!(sent, 200, "{report}");
    assert!(report["runs"].as_array().unwrap().iter().all(|r| r["name"] != "healthz"));
    assert!(report["ratioToHealthz"].is_null(), "no throughput ratio in the open loop: {report}");
    running.stop().await.unwrap();
}
