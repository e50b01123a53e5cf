//! A small W3C WebDriver client for the browser test: Debian's ChromeDriver driving headless
//! Chromium, with the flags this machine needs (no sandbox as root, no background networking).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{client, send};

/// Where Debian puts them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// ChromeDriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session; ends (and stops the driver) when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: awc::Client,
    _profile: tempfile::TempDir,
}

/// True when both programs are installed. When they are not, a browser test says SKIPPED, or
/// fails where `LEADROUTER_REQUIRE_BROWSER` is set (`.ci/run` sets it after installing them).
pub fn present_or_required() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("LEADROUTER_REQUIRE_BROWSER").is_none(),
        "{CHROMIUM} and {CHROMEDRIVER} are needed (Debian: apt-get install chromium chromium-driver)"
    );
    eprintln!("SKIPPED: no {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
    false
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium session through it.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
        let started = Instant::now();
        loop {
            if let Ok(mut r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() && r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not become ready");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--window-size=1400,1100",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let (st, v) = send(&http, &base, "POST", "/session", Some(caps.to_string().as_bytes())).await;
        assert_eq!(st, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser { driver, base, session, http, _profile: profile }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let (st, v) = send(&self.http, &self.base, method, &path, body.as_deref().map(str::as_bytes)).await;
        assert_eq!(st, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Waits until `script` returns true.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) {
        let started = Instant::now();
        while self.eval(script, args.clone()).await != Value::Bool(true) {
            if started.elapsed() > Duration::from_secs(20) {
                let page = self.eval("return document.body.innerText.slice(0, 2000)", json!([])).await;
                panic!("timed out waiting for {what}; console: {:?}; page: {page}", self.console().await);
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching the CSS selector.
    pub async fn click(&self, css: &str) {
        let el = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await;
        let id = el.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// The browser console's entries so far (level and message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self.call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        path.to_path_buf()
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = send(&self.http, &self.base, "DELETE", &format!("/session/{}", self.session), None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
