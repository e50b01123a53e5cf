//! `/dashboard` in a real browser (headless Chromium through ChromeDriver) against the real
//! server: it loads with no console error and no request leaving the server, the heatmap follows
//! decisions made through the API, a broker and a lead drill down, and a screenshot is written to
//! `target/tmp/dashboard.png`. `.ci/run` installs the browser and sets
//! `LEADROUTER_REQUIRE_BROWSER`, so there a missing browser fails the test instead of skipping it.

use serde_json::{json, Value};

use crate::common::*;
use crate::webdriver::{self, Browser};

#[actix_rt::test]
async fn the_dashboard_follows_decisions_and_drills_down_in_a_real_browser() {
    if !webdriver::present_or_required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    for (id, group) in [("db-1", "north"), ("db-2", "north"), ("db-3", "south")] {
        let mut b = broker(id, "CA", &["AUTO"], 4, 4, 100);
        b["group"] = json!(group);
        s.add_broker(&b).await;
    }
    let b = Browser::start().await;
    b.goto(&format!("{}/dashboard", s.base)).await;
    b.wait_for("three broker cells", "return document.querySelectorAll('.cell[data-broker]').length === 3", json!([])).await;
    b.wait_for("the live feed", "return document.getElementById('conn').textContent === 'live'", json!([])).await;
    let open_of = "return document.querySelector(`.cell[data-broker=\"${arguments[0]}\"]`).dataset.open";
    assert_eq!(b.eval(open_of, json!(["db-1"])).await, "0");

    // Decisions through the API: the heatmap changes without a reload.
    for i in 0..3 {
        let mut l = lead(&format!("dash-{i}"), "CA", &["AUTO"]);
        l["excludeBrokers"] = json!(["db-2", "db-3"]);
        let (st, d) = s.post("/api/routing/decide", &l).await;
        assert_eq!((st, d["brokerId"].as_str()), (200, Some("db-1")), "{d}");
    }
    b.wait_for("db-1 holding 3 leads", "return document.querySelector('.cell[data-broker=\"db-1\"]').dataset.open === '3'", json!([]))
        .await;
    assert_eq!(b.eval("return document.querySelector('.cell[data-broker=\"db-1\"]').dataset.util", json!([])).await, "0.75");
    b.wait_for("the figures", "return /3 assigned/.test(document.getElementById('kpis').textContent)", json!([])).await;

    // A broker drills down to its performance and open leads; a lead to its decision and a
    // "why not" answer.
    b.click(".cell[data-broker=\"db-1\"]").await;
    b.wait_for(
        "db-1's open leads",
        "const t = document.getElementById('drill-leads'); return !!t && t.querySelectorAll('a.lead').length === 3",
        json!([]),
    )
    .await;
    b.click("#drill-leads a.lead").await;
    b.wait_for("the lead's decision", "return /Decision 1: db-1/.test(document.getElementById('lead').textContent)", json!([])).await;
    b.eval(
        "const f = document.querySelector('#lead form'); f.querySelector('input').value = 'db-2'; f.requestSubmit(); return true",
        json!([]),
    )
    .await;
    b.wait_for("why not db-2", "return /db-2: ineligible/.test(document.getElementById('lead').textContent)", json!([])).await;

    let shot = b.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{}", shot.display());

    // Nothing left the server: every resource the page loaded came from it, and the console
    // holds no error (a request the Content-Security-Policy blocked would be one).
    let urls = b.eval("return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]", json!([])).await;
    let ws = s.base.replacen("http://", "ws://", 1);
    for u in urls.as_array().unwrap().iter().map(|u| u.as_str().unwrap()) {
        assert!(u.starts_with(&s.base) || u.starts_with(&ws), "a request left the server: {u}");
    }
    let errors: Vec<(String, String)> = b.console().await.into_iter().filter(|(level, _)| level == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let v: Value = b.eval("return document.querySelectorAll('#heatmap .group').length", json!([])).await;
    assert_eq!(v, 2, "grouped by broker group: north and south");
    b.close().await;
    s.stop().await;
}

/// With API keys set, the page asks for one, keeps it in the tab's session storage only, and
/// then reads the API and the capacity feed with it (the feed through the key subprotocol).
#[actix_rt::test]
async fn with_api_keys_the_dashboard_asks_for_one_and_uses_it() {
    if !webdriver::present_or_required() {
        return;
    }
    const KEY: &str = "dashboard-key-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.api_keys = vec![KEY.into()]).await;
    let authed = |path: &str| s.client.post(format!("{}{path}", s.base)).insert_header(("x-api-key", KEY));
    let resp = authed("/api/brokers").send_json(&broker("kb-1", "TX", &["HOME"], 3, 2, 10)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let b = Browser::start().await;
    b.goto(&format!("{}/dashboard", s.base)).await;
    b.wait_for("the key prompt", "return document.getElementById('keybox').classList.contains('open')", json!([])).await;
    b.eval(
        "document.getElementById('keyinput').value = arguments[0]; document.getElementById('keyform').requestSubmit(); return true",
        json!([KEY]),
    )
    .await;
    b.wait_for("the broker, read with the key", "return document.querySelectorAll('.cell[data-broker]').length === 1", json!([])).await;
    b.wait_for("the live feed, with the key", "return document.getElementById('conn').textContent === 'live'", json!([])).await;
    let resp = authed("/api/routing/decide").send_json(&lead("kl-1", "TX", &["HOME"])).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    b.wait_for(
        "the decision on the heatmap",
        "return document.querySelector('.cell[data-broker=\"kb-1\"]').dataset.open === '1'",
        json!([]),
    )
    .await;
    let stored = b.eval("return [sessionStorage.getItem('leadrouter.key'), localStorage.length, document.cookie]", json!([])).await;
    assert_eq!(stored, json!([KEY, 0, ""]), "kept in the session only");
    b.close().await;
    s.stop().await;
}
