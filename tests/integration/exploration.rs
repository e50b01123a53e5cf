//! Exploration and off-policy evaluation through HTTP: the logged propensities match the
//! frequencies with which brokers are really drawn (a chi-square test per method), bad
//! settings are refused naming the field, the journal keeps the probabilities, and an
//! evaluation job replays the log into all four estimates with intervals.

use std::time::Duration;

use leadrouter_actors::Record;
use serde_json::{json, Value};

use crate::common::{broker, journal, lead, Srv};

/// scipy.stats.chi2.ppf(0.999, df) for df = 1, 2: a true model fails this one time in 1,000.
const CHI2_999: [f64; 2] = [10.828, 13.816];

/// Three brokers for TX auto that differ only in proficiency (5, 4, 3), with seats enough that
/// a few hundred leads barely move their headroom.
async fn three_brokers(s: &Srv) {
    for (id, prof) in [("b-5", 5), ("b-4", 4), ("b-3", 3)] {
        s.add_broker(&broker(id, "TX", &["AUTO"], prof, 100_000, 100_000)).await;
    }
}

/// Decides `n` leads with `exploration` and returns, per broker, how often it was chosen and
/// the sum of the probabilities each decision gave it (its expected count).
async fn draw(s: &Srv, prefix: &str, n: usize, exploration: &Value) -> Vec<(String, f64, f64)> {
    let ids = ["b-5", "b-4", "b-3"];
    let (mut seen, mut expected) = ([0.0; 3], [0.0; 3]);
    for i in 0..n {
        let mut req = lead(&format!("{prefix}-{i}"), "TX", &["AUTO"]);
        req["strategy"] = json!("specialty");
        req["exploration"] = exploration.clone();
        let (st, d) = s.post("/api/routing/decide", &req).await;
        assert_eq!(st, 200, "{d}");
        assert_eq!(d["exploration"]["method"], exploration["method"], "{d}");
        let winner = d["brokerId"].as_str().unwrap();
        seen[ids.iter().position(|b| *b == winner).unwrap()] += 1.0;
        let mut total = 0.0;
        let p = d["propensity"].as_f64().unwrap();
        expected[ids.iter().position(|b| *b == winner).unwrap()] += p;
        total += p;
        for a in d["alternatives"].as_array().unwrap() {
            let q = a["probability"].as_f64().unwrap_or_else(|| panic!("every alternative has its probability: {d}"));
            expected[ids.iter().position(|b| *b == a["brokerId"].as_str().unwrap()).unwrap()] += q;
            total += q;
        }
        assert!((total - 1.0).abs() < 1e-9, "the probabilities of one decision sum to 1: {d}");
    }
    ids.iter().enumerate().map(|(i, b)| (b.to_string(), seen[i], expected[i])).collect()
}

/// Pearson's statistic over the brokers that can be drawn, and its degrees of freedom.
fn chi_square(counts: &[(String, f64, f64)]) -> (f64, usize) {
    let cells: Vec<_> = counts.iter().filter(|c| c.2 > 1e-9).collect();
    (cells.iter().map(|(_, o, e)| (o - e).powi(2) / e).sum(), cells.len() - 1)
}

#[actix_rt::test]
async fn logged_propensities_match_the_frequencies_of_each_method() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    three_brokers(&s).await;
    for (name, x) in [
        ("softmax", json!({"method": "softmax", "temperature": 0.1})),
        ("epsilon", json!({"method": "epsilon", "epsilon": 0.3})),
        ("thompson", json!({"method": "thompson"})),
    ] {
        let counts = draw(&s, name, 600, &x).await;
        let (stat, df) = chi_square(&counts);
        assert!(df >= 1, "{name}: more than one broker can be drawn: {counts:?}");
        assert!(stat < CHI2_999[df - 1], "{name}: chi-square {stat:.2} on {df} df: {counts:?}");
        // Each method favours the best broker but sends some leads to the others.
        assert!(counts[0].1 > counts[2].1 && counts[2].1 > 0.0, "{name}: {counts:?}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn the_band_keeps_clearly_worse_brokers_out_and_bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    three_brokers(&s).await;
    // Scores 0.99, 0.91, 0.83: a band of 0.1 keeps the first two only.
    let counts = draw(&s, "band", 200, &json!({"method": "epsilon", "epsilon": 1.0, "band": 0.1})).await;
    assert_eq!(counts[2].1, 0.0, "{counts:?}");
    assert_eq!(counts[2].2, 0.0, "{counts:?}");
    assert!(counts[1].1 > 50.0, "{counts:?}");
    for (x, field) in [
        (json!({"method": "epsilon"}), "exploration.epsilon"),
        (json!({"method": "epsilon", "epsilon": 1.5}), "exploration.epsilon"),
        (json!({"method": "softmax", "temperature": 0}), "exploration.temperature"),
        (json!({"method": "thompson", "temperature": 1}), "exploration.temperature"),
        (json!({"method": "thompson", "band": -1}), "exploration.band"),
        (json!({"method": "greedy"}), "exploration.method"),
    ] {
        let mut req = lead("bad-x", "TX", &["AUTO"]);
        req["exploration"] = x.clone();
        let (st, e) = s.post("/api/routing/decide", &req).await;
        assert_eq!(st, 422, "{x}: {e}");
        assert_eq!(e["error"]["field"], field, "{x}: {e}");
    }
    let mut req = lead("bad-rr", "TX", &["AUTO"]);
    req["strategy"] = json!("round_robin");
    req["exploration"] = json!({"method": "epsilon", "epsilon": 0.1});
    let (st, e) = s.post("/api/routing/decide", &req).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("exploration")), "{e}");
    // A batch's exploration applies to its leads that set none.
    let (st, b) = s
        .post(
            "/api/routing/batch",
            &json!({"leads": [lead("batch-1", "TX", &["AUTO"]), lead("batch-2", "TX", &["AUTO"])],
                    "exploration": {"method": "softmax", "temperature": 0.2}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    for r in b["results"].as_array().unwrap() {
        assert_eq!(r["result"]["exploration"]["temperature"], 0.2, "{r}");
        assert_eq!(r["result"]["exploration"]["band"], 0.25, "the configured band is filled in: {r}");
    }
    s.stop().await;
    // The journal keeps the setting and every probability.
    let decided: Vec<_> = journal(dir.path())
        .into_iter()
        .filter_map(|(_, r)| match r {
            Record::Decided { decision, .. } => Some(decision),
            _ => None,
        })
        .collect();
    assert!(decided.iter().all(|d| d.exploration.is_some() && d.alternatives.iter().all(|a| a.probability.is_some())));
}

#[actix_rt::test]
async fn exploration_comes_from_config_and_experiment_arms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.routing.exploration.insert("specialty".into(), serde_json::from_value(json!({"method": "epsilon", "epsilon": 0.5})).unwrap());
    })
    .await;
    three_brokers(&s).await;
    let mut req = lead("cfg-1", "TX", &["AUTO"]);
    req["strategy"] = json!("specialty");
    let (_, d) = s.post("/api/routing/decide", &req).await;
    assert_eq!(d["exploration"], json!({"method": "epsilon", "epsilon": 0.5, "band": 0.25}), "{d}");
    let exp = json!({
        "name": "explore arm", "start": true,
        "arms": [
            {"name": "control", "strategy": "specialty", "allocation": 0.5},
            {"name": "explore", "strategy": "ml", "allocation": 0.5, "exploration": {"method": "thompson"}}
        ]
    });
    let (st, e) = s.post("/api/experiments", &exp).await;
    assert_eq!(st, 201, "{e}");
    let mut methods = std::collections::BTreeSet::new();
    for i in 0..40 {
        let (_, d) = s.post("/api/routing/decide", &lead(&format!("arm-{i}"), "TX", &["AUTO"])).await;
        methods.insert(format!("{}:{}", d["experiments"][0]["arm"], d["exploration"]["method"]));
    }
    assert!(methods.contains("\"explore\":\"thompson\""), "{methods:?}");
    assert!(methods.contains("\"control\":\"epsilon\""), "the control arm keeps the strategy's configured exploration: {methods:?}");
    // Rolling the exploring arm out makes its exploration part of the new default, for good.
    let id = e["id"].as_str().unwrap();
    let (st, c) =
        s.send("PATCH", &format!("/api/experiments/{id}"), Some(br#"{"status": "concluded", "winner": "explore", "rollout": true}"#)).await;
    assert_eq!(st, 200, "{c}");
    let (_, d) = s.post("/api/routing/decide", &lead("after-rollout", "TX", &["AUTO"])).await;
    assert_eq!((d["strategy"].as_str(), d["exploration"]["method"].as_str()), (Some("ml"), Some("thompson")), "{d}");
    let bad = json!({
        "name": "bad",
        "arms": [
            {"name": "a", "strategy": "random", "allocation": 0.5, "exploration": {"method": "thompson"}},
            {"name": "b", "strategy": "ml", "allocation": 0.5}
        ]
    });
    let (st, e) = s.post("/api/experiments", &bad).await;
    assert_eq!((st, e["error"]["field"].as_str()), (422, Some("arms[0].exploration")), "{e}");
    s.stop().await;
    let s = Srv::start(dir.path()).await;
    let (_, d) = s.post("/api/routing/decide", &lead("after-restart", "TX", &["AUTO"])).await;
    assert_eq!(d["exploration"]["method"], "thompson", "the rollout is journaled with its exploration: {d}");
    s.stop().await;
}

/// Polls an evaluation job until it is done.
async fn finished(s: &Srv, job: &Value) -> Value {
    let id = job["id"].as_str().unwrap();
    for _ in 0..600 {
        let (st, j) = s.get(&format!("/api/policies/evaluations/{id}")).await;
        assert_eq!(st, 200, "{j}");
        match j["status"].as_str() {
            Some("done") => return j,
            Some("failed") => panic!("evaluation failed: {j}"),
            _ => actix_rt::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the evaluation did not finish");
}

#[actix_rt::test]
async fn an_evaluation_job_returns_every_estimate_and_the_logger_evaluates_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    three_brokers(&s).await;
    let explore = json!({"method": "softmax", "temperature": 0.5, "band": 1.0});
    // A log with plenty of exploration; b-5 converts two leads in three, the others one in five.
    for i in 0..240 {
        let id = format!("ope-{i}");
        let mut req = lead(&id, "TX", &["AUTO"]);
        req["strategy"] = json!("specialty");
        req["exploration"] = explore.clone();
        let (_, d) = s.post("/api/routing/decide", &req).await;
        let good = d["brokerId"] == "b-5";
        for e in ["accepted", "contacted"] {
            let (st, body) = s.event(&id, e).await;
            assert_eq!(st, 200, "{e} after {d}: {body}");
        }
        let won = if good { i % 3 != 0 } else { i % 5 == 0 };
        let (st, _) = s.event(&id, if won { "converted" } else { "lost" }).await;
        assert_eq!(st, 200);
    }
    // Ten leads still open: left out and counted.
    for i in 0..10 {
        let mut req = lead(&format!("open-{i}"), "TX", &["AUTO"]);
        req["exploration"] = explore.clone();
        s.post("/api/routing/decide", &req).await;
    }
    let body = |policy: Value| json!({"policy": policy, "bootstrapSamples": 200, "seed": 3});
    // The logging policy itself: the replay rebuilds every propensity exactly, so every weight is
    // 1 and IPS and SNIPS equal what it achieved; DR differs by the mean of the reward model's
    // own correction (0 in expectation).
    let (st, job) = s.post("/api/policies/evaluate", &body(json!({"strategy": "specialty", "exploration": explore}))).await;
    assert_eq!(st, 202, "{job}");
    let same = finished(&s, &job).await;
    let r = &same["result"];
    assert_eq!(r["decisions"], 240, "{r}");
    assert_eq!(r["open"], 10, "{r}");
    assert_eq!(r["rewardModel"], "empirical_bayes");
    let logged = r["logging"]["conversionRate"].as_f64().unwrap();
    let c = &r["estimates"]["conversionRate"];
    for k in ["ips", "snips"] {
        assert!((c[k]["estimate"].as_f64().unwrap() - logged).abs() < 1e-9, "{k}: {c} vs {logged}");
    }
    assert!((c["dr"]["estimate"].as_f64().unwrap() - logged).abs() < 0.02, "{c} vs {logged}");
    assert!((r["support"]["effectiveSampleSize"].as_f64().unwrap() - 240.0).abs() < 1e-3, "{r}");
    assert_eq!(r["support"]["unsupportedShare"], 0.0);
    // Greedy specialty always picks b-5, which converts far more often: every estimator agrees
    // it beats the logger, each with an interval around its estimate.
    let (_, job) = s.post("/api/policies/evaluate", &body(json!({"strategy": "specialty"}))).await;
    let greedy = finished(&s, &job).await;
    let g = &greedy["result"]["estimates"];
    for metric in ["conversionRate", "revenuePerLead", "slaCompliance"] {
        for k in ["ips", "snips", "dm", "dr"] {
            let e = &g[metric][k];
            let (v, lo, hi) = (e["estimate"].as_f64().unwrap(), e["lower"].as_f64().unwrap(), e["upper"].as_f64().unwrap());
            assert!(lo <= v && v <= hi, "{metric} {k}: {e}");
        }
    }
    let snips = g["conversionRate"]["snips"]["estimate"].as_f64().unwrap();
    assert!(snips > logged + 0.05, "greedy {snips} vs logged {logged}");
    assert!((snips - 2.0 / 3.0).abs() < 0.1, "b-5 converts about two in three: {snips}");
    let unsupported = greedy["result"]["support"]["unsupportedShare"].as_f64().unwrap();
    assert!(unsupported > 0.2, "greedy never picks the brokers the logger explored: {}", greedy["result"]["support"]);
    // Random over three brokers has support everywhere the logger explored.
    let (_, job) = s.post("/api/policies/evaluate", &body(json!({"strategy": "random"}))).await;
    let random = finished(&s, &job).await;
    let rnd = random["result"]["estimates"]["conversionRate"]["dr"]["estimate"].as_f64().unwrap();
    assert!(rnd < snips, "random {rnd} vs greedy {snips}");
    // Bad requests name the field; an unknown job is a 404.
    for (b, field) in [
        (json!({"policy": {"strategy": "fastest"}}), "policy.strategy"),
        (json!({"policy": {"strategy": "random", "exploration": {"method": "thompson"}}}), "policy.exploration"),
        (json!({"policy": {"strategy": "specialty"}, "bootstrapSamples": 0}), "bootstrapSamples"),
        (json!({"policy": {"strategy": "ml", "modelVersion": "v404"}}), "policy.modelVersion"),
        (json!({"policy": {"strategy": "specialty"}, "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}), "to"),
        (json!({"policy": {"strategy": "specialty"}, "window": "7d"}), "window"),
    ] {
        let (st, e) = s.post("/api/policies/evaluate", &b).await;
        assert_eq!(st, 422, "{b}: {e}");
        assert_eq!(e["error"]["field"], field, "{b}: {e}");
    }
    assert_eq!(s.get("/api/policies/evaluations/eval-nope").await.0, 404);
    s.stop().await;
}
