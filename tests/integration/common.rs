//! Test harness: start the service in-process on port 0, talk JSON over HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use leadrouter::server::Running;
use leadrouter::{Config, Overrides};
use leadrouter_actors::Record;
use serde_json::{json, Value};

/// A running server and a client for it.
pub struct Srv {
    pub base: String,
    pub client: awc::Client,
    running: Option<Running>,
}

/// The config tests use: port 0, no demo, fast queue sweeps, no periodic snapshot.
pub fn test_config(dir: &Path) -> Config {
    let o = Overrides { port: Some(0), data_dir: Some(dir.to_path_buf()), no_demo: true, ..Overrides::default() };
    let mut c = Config::load(None, Vec::new(), &o).expect("test config");
    c.routing.tick_ms = 50;
    c.routing.seed = 42;
    c.storage.snapshot_interval_seconds = 3600;
    // The structured embedding: deterministic and free; the tests of the local sentence
    // encoder ask for it themselves.
    c.semantic.encoder = leadrouter_actors::config::EncoderKind::Structured;
    c
}

pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(60)).connector(awc::Connector::new().limit(256)).finish()
}

impl Srv {
    pub async fn start(dir: &Path) -> Srv {
        Self::start_with(dir, |_| {}).await
    }

    pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Srv {
        let mut cfg = test_config(dir);
        tweak(&mut cfg);
        // A test that spawns the binary forks this process; until the child execs, it holds a
        // copy of every descriptor, the data directory's lock of a server just stopped
        // included. Such a start is tried again for a moment.
        let mut tries = 0;
        let running = loop {
            match leadrouter::server::start(cfg.clone()).await {
                Err(leadrouter::error::Error::Engine(leadrouter_actors::ActorError::DataInUse { .. })) if tries < 100 => {
                    tries += 1;
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.expect("server starts"),
            }
        };
        Srv { base: format!("http://{}", running.addr), client: client(), running: Some(running) }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        self.running.take().expect("running").stop().await.expect("clean stop");
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        send(&self.client, &self.base, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(body.to_string().as_bytes())).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn event(&self, lead: &str, kind: &str) -> (u16, Value) {
        self.post(&format!("/api/leads/{lead}/events"), &json!({"type": kind})).await
    }

    pub async fn add_broker(&self, b: &Value) {
        let (s, body) = self.post("/api/brokers", b).await;
        assert_eq!(s, 201, "create broker: {body}");
    }
}

/// Starts the real binary on port 0 over `dir` with extra environment; returns it and its base URL.
pub fn spawn_binary(dir: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    spawn_binary_logging_to(dir, env, std::process::Stdio::null())
}

/// [`spawn_binary`] with the server's log (its stderr) going to `log`.
pub fn spawn_binary_logging_to(dir: &Path, env: &[(&str, &str)], log: impl Into<std::process::Stdio>) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["serve", "--port", "0", "--no-demo", "--data-dir"])
        .arg(dir)
        // The structured embedding unless a test asks otherwise: no test here needs the model.
        .env("LEADROUTER__SEMANTIC__ENCODER", "structured")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    (child, base)
}

pub async fn send(client: &awc::Client, base: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let req = client.request(method, format!("{base}{path}")).insert_header(("content-type", "application/json"));
    let mut resp = match body {
        Some(b) => req.send_body(b.to_vec()).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("request {path}: {e}"));
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}))
    };
    (resp.status().as_u16(), v)
}

/// A broker licensed in `state` for `lines`, with proficiency `prof` in each, around the clock.
pub fn broker(id: &str, state: &str, lines: &[&str], prof: u8, max: u32, cap: u32) -> Value {
    json!({
        "id": id, "name": format!("Broker {id}"),
        "specialties": lines.iter().map(|l| json!({"type": l, "proficiency": prof})).collect::<Vec<_>>(),
        "licenses": [{"state": state, "lines": lines, "expiresOn": "2099-12-31"}],
        "capacity": {"maxConcurrent": max, "dailyCap": cap},
        "sla": {"firstContactMinutes": 30, "acceptTimeoutSeconds": 600},
        "group": "test"
    })
}

pub fn lead(id: &str, state: &str, lines: &[&str]) -> Value {
    json!({"leadId": id, "leadData": {"insuranceTypes": lines, "urgency": "MEDIUM", "state": state, "estimatedValue": 1000, "complexity": 5}})
}

/// Every journal record, in order.
pub fn journal(dir: &Path) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    leadrouter_actors::storage::journal::read_all(&leadrouter_actors::engine::journal_dir(dir), |s, r| out.push((s, r)))
        .expect("journal reads");
    out
}

/// Open leads per broker as the journal implies them: decided adds one; rejected, timed out
/// and closed (of a lead holding a broker) remove one. Panics if any broker ever exceeds
/// `max` at any point of the journal.
pub fn journal_open_counts(records: &[(u64, Record)], max: &HashMap<String, u32>) -> HashMap<String, i64> {
    use leadrouter_models::EventKind;
    let mut open: HashMap<String, i64> = HashMap::new();
    for (seq, r) in records {
        match r {
            Record::Decided { decision, .. } => {
                let n = open.entry(decision.broker_id.clone()).or_default();
                *n += 1;
                if let Some(m) = max.get(&decision.broker_id) {
                    assert!(*n <= *m as i64, "broker {} over capacity ({n} > {m}) at journal record {seq}", decision.broker_id);
                }
            }
            Record::LeadEvent { broker_id: Some(b), event: EventKind::Rejected | EventKind::TimedOut | EventKind::Closed, .. } => {
                *open.entry(b.clone()).or_default() -= 1;
            }
            _ => {}
        }
    }
    open
}
