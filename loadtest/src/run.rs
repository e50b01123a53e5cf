//! The measured runs over worker threads, each with its own actix runtime and HTTP client.
//!
//! Closed loop: each connection sends its next request as soon as it has the last answer.
//! Open loop: requests leave at fixed intended times whatever the server does, and latency is
//! counted from the intended time, so time spent queueing behind a slow server is not hidden.
//! How late the client itself sent each request is counted apart ([`Tally::late`]), and so is
//! the engine's own account of each decision ([`Tally::engine`]), so a tail can be placed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::error::LoadError;
use crate::pace::{self, Pacer};
use crate::report::histogram;

/// What each operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /healthz`: the floor, what the HTTP stack alone can do.
    Healthz,
    /// `POST /api/routing/decide` only.
    Decide,
    /// Decide, then accepted, contacted and closed, so capacity keeps cycling.
    Lifecycle,
}

/// How requests are paced.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// N connections in total, each one request at a time.
    Closed {
        /// Connections over all threads.
        connections: usize,
    },
    /// A fixed rate in requests per second over all threads.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// One run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Base URL of the server.
    pub target: String,
    /// What each operation does.
    pub scenario: Scenario,
    /// Pacing.
    pub mode: Mode,
    /// Measured window.
    pub duration: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Sent as `X-Api-Key` when set.
    pub api_key: Option<String>,
    /// States the generated leads come from.
    pub states: Vec<String>,
    /// Makes lead ids unique across runs against the same server.
    pub run_id: String,
    /// Share of leads that carry `notes` (each then costs the server one embedding).
    pub notes_share: f64,
}

/// What a run counted.
pub struct Tally {
    /// Latency of the scenario's main request (decide, or healthz), µs.
    pub main: Histogram<u64>,
    /// Latency of lifecycle events, µs.
    pub events: Histogram<u64>,
    /// Open loop: how long after its intended time each main request was sent, µs (one more
    /// than the lateness, the histogram's lowest value being 1).
    pub late: Histogram<u64>,
    /// Decisions of leads with notes, µs (also in `main`).
    pub with_notes: Histogram<u64>,
    /// Decisions of leads without notes, µs (also in `main`).
    pub without_notes: Histogram<u64>,
    /// Decisions: the time the engine reports in its answer (`decisionMicros` +
    /// `journalMicros`: routing and the journal append, without HTTP), µs.
    pub engine: Histogram<u64>,
    /// Main requests answered as expected.
    pub ok: u64,
    /// Main requests that failed.
    pub errors: u64,
    /// Decisions answered 202 (queued).
    pub queued: u64,
    /// Events answered 200.
    pub events_ok: u64,
    /// Events that failed.
    pub event_errors: u64,
    /// The first few error messages, for the report.
    pub samples: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            main: histogram(),
            events: histogram(),
            late: histogram(),
            with_notes: histogram(),
            without_notes: histogram(),
            engine: histogram(),
            ok: 0,
            errors: 0,
            queued: 0,
            events_ok: 0,
            event_errors: 0,
            samples: Vec::new(),
        }
    }

    fn merge(&mut self, o: Tally) {
        self.main.add(&o.main).expect("same bounds");
        self.events.add(&o.events).expect("same bounds");
        self.late.add(&o.late).expect("same bounds");
        self.engine.add(&o.engine).expect("same bounds");
        self.with_notes.add(&o.with_notes).expect("same bounds");
        self.without_notes.add(&o.without_notes).expect("same bounds");
        self.ok += o.ok;
        self.errors += o.errors;
        self.queued += o.queued;
        self.events_ok += o.events_ok;
        self.event_errors += o.event_errors;
        for s in o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }

    fn error(&mut self, e: &LoadError) {
        if self.samples.len() < 5 {
            self.samples.push(e.to_string());
        }
    }
}

const LINES: [&str; 3] = ["AUTO", "HOME", "LIFE"];

/// What a lead's notes may say (with a number, so texts vary).
const NOTES: [&str; 6] = [
    "fleet of {n} delivery vans, two drivers under 25",
    "moving next month, wants to bundle home and auto",
    "teenage driver, {n} years without a claim",
    "small bakery with {n} employees",
    "current policy renews in {n} weeks, looking for a better price",
    "house near the coast, {n} years old roof",
];

/// A lead like the ones the API sees: one or two lines, mixed urgency and value; with
/// probability `notes_share`, free-text notes.
pub fn lead(id: &str, states: &[String], notes_share: f64, rng: &mut fastrand::Rng) -> Value {
    let state = &states[rng.usize(..states.len())];
    let first = rng.usize(..LINES.len());
    let mut lines = vec![LINES[first]];
    if rng.bool() {
        lines.push(LINES[(first + 1) % LINES.len()]);
    }
    let urgency = ["LOW", "MEDIUM", "HIGH", "CRITICAL"][rng.usize(..4)];
    let mut l = json!({"leadId": id, "leadData": {"insuranceTypes": lines, "urgency": urgency, "state": state,
        "estimatedValue": rng.u32(500..50_000), "complexity": rng.u8(1..=10)}});
    if notes_share > 0.0 && rng.f64() < notes_share {
        l["leadData"]["notes"] = json!(NOTES[rng.usize(..NOTES.len())].replace("{n}", &rng.u32(2..60).to_string()));
    }
    l
}

/// A broker licensed for every line in `states`, around the clock.
pub fn broker(i: usize, states: &[String], rng: &mut fastrand::Rng) -> Value {
    json!({
        "id": format!("lt-{i:05}"), "name": format!("Load test {i}"),
        "specialties": LINES.iter().map(|l| json!({"type": l, "proficiency": rng.u8(1..=5)})).collect::<Vec<_>>(),
        "licenses": states.iter().map(|s| json!({"state": s, "lines": LINES, "expiresOn": "2099-12-31"})).collect::<Vec<_>>(),
        "capacity": {"maxConcurrent": 20, "dailyCap": 1_000_000},
        "sla": {"firstContactMinutes": 30, "acceptTimeoutSeconds": 600},
        "group": "loadtest"
    })
}

fn request(client: &awc::Client, plan: &Plan, method: awc::http::Method, path: &str) -> awc::ClientRequest {
    let r = client.request(method, format!("{}{path}", plan.target));
    match &plan.api_key {
        Some(k) => r.insert_header(("X-Api-Key", k.as_str())),
        None => r,
    }
}

/// The fields of an answer the load generator looks at; the rest of the body is skipped
/// without building a document, so the client spends little CPU on answers.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: Option<String>,
    broker_id: Option<String>,
    decision_micros: Option<u64>,
    journal_micros: Option<u64>,
}

/// Sends one request; answers the status and the raw body.
async fn send(client: &awc::Client, plan: &Plan, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>), LoadError> {
    let mut resp = match body {
        Some(b) => request(client, plan, awc::http::Method::POST, path).send_json(b).await,
        None => request(client, plan, awc::http::Method::GET, path).send().await,
    }
    .map_err(|e| LoadError::Send(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp.body().limit(1 << 20).await.map_err(|e| LoadError::Send(e.to_string()))?;
    Ok((status, bytes.into()))
}

/// One operation; `intended` is when it should have started (the open loop's schedule).
async fn operation(client: &awc::Client, plan: &Plan, tally: &RefCell<Tally>, intended: Instant, id: String, rng_seed: u64) {
    if matches!(plan.mode, Mode::Open { .. }) {
        tally.borrow_mut().late.saturating_record(intended.elapsed().as_micros() as u64 + 1);
    }
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    let mut noted = false;
    let result = match plan.scenario {
        Scenario::Healthz => send(client, plan, "/healthz", None).await.and_then(|(s, _)| match s {
            200 => Ok(Answer::default()),
            s => Err(LoadError::Status { status: s, what: "healthz" }),
        }),
        Scenario::Decide | Scenario::Lifecycle => {
            let body = lead(&id, &plan.states, plan.notes_share, &mut rng);
            noted = body["leadData"].get("notes").is_some();
            send(client, plan, "/api/routing/decide", Some(&body)).await.and_then(|(s, b)| match s {
                200 | 202 => serde_json::from_slice::<Answer>(&b).map_err(|e| LoadError::Body { what: "decide", reason: e.to_string() }),
                s => Err(LoadError::Status { status: s, what: "decide" }),
            })
        }
    };
    let elapsed = intended.elapsed().as_micros().max(1) as u64;
    let answer = {
        let mut t = tally.borrow_mut();
        match result {
            Ok(v) => {
                t.main.saturating_record(elapsed);
                if plan.scenario != Scenario::Healthz {
                    if noted { &mut t.with_notes } else { &mut t.without_notes }.saturating_record(elapsed);
                }
                t.ok += 1;
                if let (Some(d), Some(j)) = (v.decision_micros, v.journal_micros) {
                    t.engine.saturating_record((d + j).max(1));
                }
                if v.status.as_deref() == Some("queued") {
                    t.queued += 1;
                }
                Some(v)
            }
            Err(e) => {
                t.errors += 1;
                t.error(&e);
                None
            }
        }
    };
    if plan.scenario != Scenario::Lifecycle {
        return;
    }
    let Some(v) = answer.filter(|v| v.status.as_deref() == Some("assigned")) else { return };
    for kind in ["accepted", "contacted", "closed"] {
        let sent = Instant::now();
        let r = send(client, plan, &format!("/api/leads/{id}/events"), Some(&json!({"type": kind}))).await;
        let mut t = tally.borrow_mut();
        match r {
            Ok((200, _)) => {
                t.events.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                t.events_ok += 1;
            }
            Ok((s, body)) => {
                t.event_errors += 1;
                let (broker, body) = (v.broker_id.as_deref().unwrap_or("?"), String::from_utf8_lossy(&body));
                t.error(&LoadError::Body { what: "event", reason: format!("{kind} for {broker} got {s}: {body}") });
                return;
            }
            Err(e) => {
                t.event_errors += 1;
                t.error(&e);
                return;
            }
        }
    }
}

async fn worker(plan: Plan, index: usize) -> Result<Tally, LoadError> {
    let share = |total: usize| total / plan.threads + usize::from(index < total % plan.threads);
    let limit = match plan.mode {
        Mode::Closed { connections } => share(connections).max(1),
        Mode::Open { .. } => 2048,
    };
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(limit).timeout(Duration::from_secs(10)))
        .finish();
    let tally = Rc::new(RefCell::new(Tally::new()));
    let started = Instant::now();
    let end = started + plan.duration;
    let id = |n: u64| format!("{}-{index}-{n}", plan.run_id);
    let seed = |n: u64| (index as u64) << 40 ^ n;
    match plan.mode {
        Mode::Closed { connections } => {
            let conns = share(connections);
            futures_util::future::join_all((0..conns).map(|c| {
                let (client, plan, tally) = (&client, &plan, &tally);
                async move {
                    let mut n = c as u64;
                    while Instant::now() < end {
                        operation(client, plan, tally, Instant::now(), id(n), seed(n)).await;
                        n += conns as u64;
                    }
                }
            }))
            .await;
        }
        Mode::Open { rate } => {
            let per_thread = rate / plan.threads as f64;
            let interval = Duration::from_secs_f64(1.0 / per_thread);
            let mut pending = futures_util::stream::FuturesUnordered::new();
            let mut pacer = Pacer::start(started, interval, end).map_err(LoadError::Pacing)?;
            loop {
                // Collect finished operations while waiting for the next send time.
                let tick = loop {
                    tokio::select! {
                        k = pacer.next() => break k,
                        Some(()) = pending.next(), if !pending.is_empty() => {}
                    }
                };
                let Some(n) = tick else { break };
                let intended = pace::intended(started, interval, n);
                let (client, plan, tally) = (&client, &plan, &tally);
                let (i, s) = (id(n), seed(n));
                pending.push(async move { operation(client, plan, tally, intended, i, s).await });
            }
            while pending.next().await.is_some() {}
        }
    }
    drop(client);
    Ok(Rc::try_unwrap(tally).map(RefCell::into_inner).unwrap_or_else(|_| unreachable!("every operation has finished")))
}

/// Runs `plan` on its worker threads; returns what they counted and the measured seconds.
pub fn run(plan: &Plan) -> Result<(Tally, f64), LoadError> {
    let started = Instant::now();
    let handles: Vec<_> = (0..plan.threads)
        .map(|i| {
            let plan = plan.clone();
            std::thread::spawn(move || actix_rt::System::new().block_on(worker(plan, i)))
        })
        .collect();
    let mut total = Tally::new();
    let mut failed = None;
    for h in handles {
        match h.join().expect("worker thread") {
            Ok(t) => total.merge(t),
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok((total, started.elapsed().as_secs_f64())),
    }
}

/// What the websocket subscribers saw.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsTally {
    /// Subscribers that connected.
    pub connected: usize,
    /// Messages received in all.
    pub messages: u64,
    /// `lagged` messages received (the server dropped events for a slow client).
    pub lagged: u64,
}

/// Keeps `k` capacity-feed subscribers reading until `stop` is set; runs on its own thread.
pub fn subscribers(
    target: &str,
    api_key: Option<String>,
    k: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<WsTally> {
    let url = format!("{}/ws/capacity", target.replacen("http", "ws", 1));
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let tally = RefCell::new(WsTally::default());
            futures_util::future::join_all((0..k).map(|_| {
                let (url, tally, stop, key) = (&url, &tally, &stop, &api_key);
                async move {
                    let mut req = awc::Client::new().ws(url.as_str());
                    if let Some(k) = key {
                        req = req.header("X-Api-Key", k.as_str());
                    }
                    let Ok((_, mut frames)) = req.max_frame_size(64 << 20).connect().await else { return };
                    tally.borrow_mut().connected += 1;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(200), frames.next()).await {
                            Ok(Some(Ok(awc::ws::Frame::Text(t)))) => {
                                let mut t2 = tally.borrow_mut();
                                t2.messages += 1;
                                if t.windows(8).any(|w| w == b"\"lagged\"") {
                                    t2.lagged += 1;
                                }
                            }
                            Ok(Some(Ok(awc::ws::Frame::Ping(b)))) => {
                                // The server drops clients it does not hear from.
                                let _ = futures_util::SinkExt::send(&mut frames, awc::ws::Message::Pong(b)).await;
                            }
                            Ok(Some(Ok(_))) | Err(_) => {}
                            Ok(None) | Ok(Some(Err(_))) => break,
                        }
                    }
                    let _ = futures_util::SinkExt::close(&mut frames).await;
                }
            }))
            .await;
            tally.into_inner()
        })
    })
}
