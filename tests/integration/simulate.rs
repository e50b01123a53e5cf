//! `leadrouter simulate` through the real binary: the report (table, JSON, chart), its
//! reproducibility, bookkeeping that adds up, refusals of bad input, and simulated history that
//! the conversion model trains on.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The balanced scenario, shrunk so a test run takes seconds.
fn small_scenario(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/scenarios/balanced.toml")).unwrap();
    let text = text
        .replacen("days = 14", "days = 3", 1)
        .replacen("seeds = 5", "seeds = 2", 1)
        .replacen("count = 40", "count = 20", 1)
        .replacen("leads_per_day = 180.0", "leads_per_day = 90.0", 1);
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leadrouter")).arg("simulate").args(args).output().expect("binary runs")
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "simulate failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn policy<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["policies"].as_array().unwrap().iter().find(|p| p["policy"] == name).unwrap_or_else(|| panic!("no {name}"))
}

fn runs_without_timings(report: &Value) -> Vec<Value> {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("decisionMicros");
            r
        })
        .collect()
}

#[test]
fn simulate_reports_every_policy_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = small_scenario(dir.path());
    let out_dir = dir.path().join("out");
    let args = |out: bool| {
        let mut a =
            vec!["--scenario", scenario.to_str().unwrap(), "--strategies", "random,specialty,weighted_round_robin,oracle", "--json"];
        if out {
            a.extend(["--out", out_dir.to_str().unwrap()]);
        }
        a
    };
    let first = json_of(&simulate(&args(true)));
    let second = json_of(&simulate(&args(false)));
    assert_eq!(runs_without_timings(&first), runs_without_timings(&second), "same seeds, same runs");
    assert_eq!(first["seeds"], serde_json::json!([1, 2]));

    // Every lead ends: closed after an outcome, or expired in the queue.
    for r in first["runs"].as_array().unwrap() {
        let n = |k: &str| r[k].as_u64().unwrap();
        assert!(n("leads") > 100, "{r}");
        assert_eq!(n("closed") + n("expired"), n("leads"), "{}", r["policy"]);
        assert!(n("conversions") <= n("contacted") && n("contacted") <= n("accepted") && n("slaMet") <= n("contacted"));
        assert_eq!(n("contacted"), n("closed"));
        let revenue: f64 = r["dailyRevenue"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((revenue - r["revenue"].as_f64().unwrap()).abs() < 1e-6);
        assert_eq!(r["utilisation"].as_array().unwrap().len(), 20);
    }

    // The hidden truth rewards routing on skill: the oracle beats specialty beats random, on
    // the same leads with the same luck.
    let conv = |p: &str| policy(&first, p)["metrics"]["conversionRate"]["mean"].as_f64().unwrap();
    assert!(
        conv("oracle") > conv("specialty") && conv("specialty") > conv("random"),
        "{} {} {}",
        conv("oracle"),
        conv("specialty"),
        conv("random")
    );
    let specialty = policy(&first, "specialty");
    let uplift = &specialty["conversionUplift"];
    assert_eq!(uplift["n"], 2);
    assert!(uplift["low"].as_f64().unwrap() <= uplift["mean"].as_f64().unwrap());
    let share = specialty["oracleShareConversion"]["mean"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{share}");
    assert_eq!(policy(&first, "oracle")["oracleShareConversion"]["mean"], 1.0);
    // Ranking: every first decision of an engine strategy is checked against the oracle's pick;
    // it is chosen at most as often as it is scored, and specialty scores it more often than
    // random's shuffled K (which still holds it often: few brokers are eligible for a lead).
    for r in first["runs"].as_array().unwrap().iter().filter(|r| r["policy"] != "oracle") {
        let n = |k: &str| r[k].as_u64().unwrap();
        assert!(n("oracleChosen") <= n("oracleScored") && n("oracleScored") <= n("oracleChecked"), "{r}");
        assert!(n("oracleChecked") > 0 && n("oracleChecked") <= n("decisions"), "{r}");
    }
    assert_eq!(
        policy(&first, "oracle")["metrics"]["oraclePickScored"],
        serde_json::Value::Null,
        "the oracle is not checked against itself"
    );
    let scored = |p: &str| policy(&first, p)["metrics"]["oraclePickScored"]["mean"].as_f64().unwrap();
    assert!(scored("specialty") > scored("random"), "{} {}", scored("specialty"), scored("random"));
    // Fairness per group: shares over all groups add up to one.
    let lead_shares: f64 = specialty["groups"].as_object().unwrap().values().map(|g| g["leadShare"]["mean"].as_f64().unwrap()).sum();
    assert!((lead_shares - 1.0).abs() < 1e-9, "{lead_shares}");
    // Cumulative series never go down.
    let cum = specialty["cumulativeConversions"].as_array().unwrap();
    assert!(cum.len() >= 3 && cum.windows(2).all(|w| w[0].as_f64() <= w[1].as_f64()));

    // Written files: the same JSON and a chart with a line per policy.
    let written: Value = serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(written["policies"], first["policies"]);
    let svg = std::fs::read_to_string(out_dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    for p in ["random", "specialty", "weighted_round_robin", "oracle", "cumulative revenue"] {
        assert!(svg.contains(&format!(">{p}<")) || svg.contains(&format!(">\n{p}\n<")), "chart lacks {p}");
    }

    // The table names every policy and the interval convention.
    let table = simulate(&args(false)[..4]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("95% interval") && text.contains("oracle") && text.contains("fairness"), "{text}");
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fail = |args: &[&str]| {
        let out = simulate(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(fail(&["--strategies", "fastest"]).contains("unknown strategy 'fastest'"));
    assert!(fail(&["--scenario", "nowhere"]).contains("no scenario 'nowhere'"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(small_scenario(dir.path())).unwrap().replacen("sla_minutes = 60", "sla_minutes = 0", 1))
        .unwrap();
    assert!(fail(&["--scenario", bad.to_str().unwrap()]).contains("brokers.sla_minutes"));
    assert!(fail(&["--days", "0"]).contains("days"));
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("something"), "x").unwrap();
    assert!(fail(&["--write-history", full.to_str().unwrap()]).contains("not empty"));
}

#[test]
fn simulated_history_trains_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = small_scenario(dir.path());
    let data = dir.path().join("history");
    let out = simulate(&["--scenario", scenario.to_str().unwrap(), "--days", "10", "--write-history", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("leadrouter train --data-dir"));
    let train = Command::new(env!("CARGO_BIN_EXE_leadrouter")).args(["train", "--data-dir"]).arg(&data).output().unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    let state: Value = serde_json::from_slice(&train.stdout).unwrap();
    assert_eq!((&state["status"], &state["activated"]), (&Value::from("succeeded"), &Value::from(true)), "{state}");
    // The history carries the hidden skill: on held-out rows the model ranks better than chance
    // and predicts better than the empirical-Bayes baseline.
    let auc = state["metrics"]["auc"].as_f64().unwrap();
    assert!(auc > 0.55, "validation AUC {auc}");
    assert!(state["metrics"]["logLoss"].as_f64() < state["baseline"]["logLoss"].as_f64(), "{state}");
}

#[actix_rt::test]
async fn demo_history_serves_the_demo_brokers_with_a_track_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = simulate(&["--scenario", "demo", "--days", "1", "--write-history", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (mut child, base) = crate::common::spawn_binary(&data, &[]);
    let client = crate::common::client();
    let (status, brokers) = crate::common::send(&client, &base, "GET", "/api/brokers", None).await;
    assert_eq!(status, 200);
    assert_eq!(brokers["total"], 250, "the demo brokers, from the history");
    let (status, board) =
        crate::common::send(&client, &base, "GET", "/api/brokers/leaderboard?metric=conversionRate&minLeads=3", None).await;
    assert_eq!(status, 200);
    let rows = board["rows"].as_array().unwrap();
    assert!(!rows.is_empty() && rows[0]["leads"].as_u64().unwrap() >= 3, "{board}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = actix_rt::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "clean exit: {status}");
}

/// `--experiment`: the engine runs the experiment in every run; the report counts the runs whose
/// analyses reject, and each run's exposures and conversions are the engine's own. Two runs give
/// the same report (the looks wait for the book to take in the journal).
#[test]
fn simulate_runs_an_experiment_in_every_seed_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = small_scenario(dir.path());
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/experiments/random-vs-specialty.json");
    let args = ["--scenario", scenario.to_str().unwrap(), "--experiment", file, "--seeds", "3", "--json"];
    let report = json_of(&simulate(&args));
    let e = &report["experiment"];
    assert_eq!((e["id"].as_str(), e["identicalArms"].as_bool()), (Some("random-vs-specialty"), Some(false)), "{e}");
    assert_eq!(e["fixed"]["runs"], 3);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert_eq!(r["policy"], "experiment");
        let x = &r["experiment"];
        let exposed: u64 = x["exposures"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        // Every lead is in the experiment (all the traffic), counted once, however often it was
        // re-routed.
        assert_eq!(exposed, r["assigned"].as_u64().unwrap(), "{r}");
        let sold: u64 = x["conversions"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(sold, r["conversions"].as_u64().unwrap(), "{r}");
        assert!(x["looks"].as_u64().unwrap() >= 1, "{r}");
    }
    let again = json_of(&simulate(&args));
    assert_eq!(runs_without_timings(&again), runs_without_timings(&report));
    // Both ways of naming policies at once are refused.
    let out = simulate(&["--experiment", file, "--strategies", "random"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--experiment replaces --strategies"));
}

/// A scenario with a text channel: the brokers get bios and the leads notes, and every decision
/// carries its semantic terms (the structured embedding here, to keep the test fast).
#[test]
fn a_text_scenario_routes_with_semantic_terms() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/scenarios/niches.toml")).unwrap();
    let text = text.replacen("days = 10", "days = 1", 1).replacen("count = 40", "count = 12", 1).replacen(
        "leads_per_day = 180.0",
        "leads_per_day = 60.0",
        1,
    );
    let scenario = dir.path().join("niches.toml");
    std::fs::write(&scenario, text).unwrap();
    let data = dir.path().join("history");
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["simulate", "--seeds", "1", "--strategies", "specialty", "--scenario"])
        .arg(&scenario)
        .arg("--write-history")
        .arg(&data)
        .env("LEADROUTER__SEMANTIC__ENCODER", "structured")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = crate::common::journal(&data);
    let bios = records
        .iter()
        .filter(|(_, r)| matches!(r, leadrouter_actors::Record::BrokerUpserted { broker, .. } if broker.bio.is_some()))
        .count();
    assert_eq!(bios, 12);
    let decisions: Vec<_> = records
        .iter()
        .filter_map(|(_, r)| match r {
            leadrouter_actors::Record::Decided { decision, .. } => Some(decision.clone()),
            _ => None,
        })
        .collect();
    assert!(decisions.len() > 20, "{} decisions", decisions.len());
    assert!(decisions.iter().all(|d| d.breakdown.semantic.is_some()), "every lead has notes, so every decision its terms");
}

#[test]
fn the_off_policy_protocol_estimates_candidates_from_an_exploring_log() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = small_scenario(dir.path());
    let config = dir.path().join("explore.toml");
    std::fs::write(&config, "[routing.exploration.specialty]\nmethod = \"softmax\"\ntemperature = 0.3\nband = 1.0\n").unwrap();
    let args = [
        "--scenario",
        scenario.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--strategies",
        "specialty",
        "--evaluate",
        "random,round_robin",
        "--bootstrap",
        "100",
        "--json",
    ];
    let r = json_of(&simulate(&args));
    assert_eq!(r["logger"], "specialty");
    assert_eq!(r["exploration"]["method"], "softmax");
    let candidates = r["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    for c in candidates {
        let seeds = c["seeds"].as_array().unwrap();
        assert_eq!(seeds.len(), 2, "{c}");
        for s in seeds {
            let truth = s["truth"].as_f64().unwrap();
            assert!(truth > 0.0 && s["decisions"].as_u64().unwrap() > 50, "{s}");
            // Doubly robust lands near the candidate's own run on a world this small too.
            let dr = s["estimates"][3]["estimate"].as_f64().unwrap();
            assert!((dr - truth).abs() / truth < 0.5, "{c}");
        }
        let names: Vec<&str> = c["estimators"].as_array().unwrap().iter().map(|e| e["estimator"].as_str().unwrap()).collect();
        assert_eq!(names, ["ips", "snips", "dm", "dr"]);
    }
    // Repeatable: the same seeds give the same estimates.
    assert_eq!(json_of(&simulate(&args))["candidates"], r["candidates"]);
    // The protocol needs exactly one logging strategy.
    let out = simulate(&["--scenario", scenario.to_str().unwrap(), "--strategies", "ml,specialty", "--evaluate", "random"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one logging strategy"));
}
