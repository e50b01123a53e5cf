//! `leadrouter-loadtest`: drives a running LeadRouter over HTTP and reports HDR latency
//! percentiles, throughput and errors, with `GET /healthz` measured in the same run as the floor.
//!
//! ```sh
//! cargo run --release -p leadrouter-loadtest -- --brokers 1000 --scenario lifecycle --connections 1000
//! cargo run --release -p leadrouter-loadtest -- --scenario decide --rate 2000 --ws 10
//! ```

mod cpu;
mod error;
mod pace;
mod report;
mod run;
mod storage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::json;

use report::Summary;
use run::{Mode, Plan, Scenario};

/// Load generator for LeadRouter.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Base URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:3005")]
    target: String,
    /// What each operation does.
    #[arg(long, value_enum, default_value = "decide")]
    scenario: Scenario,
    /// Closed loop: connections in total, each one request at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Open loop instead: requests per second, sent on schedule whatever the server does.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Capacity-feed websocket subscribers kept reading during the scenario run.
    #[arg(long, default_value_t = 0)]
    ws: usize,
    /// Create this many brokers (ids lt-00000…) before the runs; existing ones are kept.
    #[arg(long, default_value_t = 0)]
    brokers: usize,
    /// States of the generated leads (and of the created brokers' licences).
    #[arg(long, default_value = "CA,TX,NY,FL,IL", value_delimiter = ',')]
    states: Vec<String>,
    /// Client worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// API key, when the server requires one.
    #[arg(long)]
    api_key: Option<String>,
    /// Skip the /healthz floor run.
    #[arg(long)]
    no_floor: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Share of generated leads (0 to 1) that carry free-text notes: each costs the server one
    /// embedding, and decisions with and without notes are reported apart.
    #[arg(long, default_value_t = 0.0)]
    notes_share: f64,
    /// Process id of the server, when it runs on this machine: each run then also reports the
    /// server's CPU time per request (read from /proc), which the client's own cost and the
    /// number of cores do not affect.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn create_brokers(target: &str, args: &Args) -> anyhow::Result<usize> {
    let (target, states, key, n) = (target.to_string(), args.states.clone(), args.api_key.clone(), args.brokers);
    actix_rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let mut rng = fastrand::Rng::with_seed(7);
        let bodies: Vec<_> = (0..n).map(|i| run::broker(i, &states, &mut rng)).collect();
        let results: Vec<anyhow::Result<u16>> = futures_util::stream::iter(bodies)
            .map(|b| {
                let mut req = client.post(format!("{target}/api/brokers"));
                if let Some(k) = &key {
                    req = req.insert_header(("X-Api-Key", k.as_str()));
                }
                async move { Ok(req.send_json(&b).await.map_err(|e| anyhow::anyhow!("creating a broker: {e}"))?.status().as_u16()) }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut created = 0;
        for r in results {
            match r? {
                201 => created += 1,
                409 => {}
                s => bail!("creating a broker answered {s}"),
            }
        }
        Ok(created)
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.threads == 0 || args.connections == 0 || args.duration <= 0.0 || args.states.is_empty() {
        bail!("--threads, --connections and --duration must be positive and --states not empty");
    }
    if !(0.0..=1.0).contains(&args.notes_share) {
        bail!("--notes-share must be between 0 and 1");
    }
    if args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    let target = args.target.trim_end_matches('/').to_string();
    if args.brokers > 0 {
        let created = create_brokers(&target, &args).context("setting up brokers")?;
        if !args.json {
            println!("brokers: {created} created ({} asked for)", args.brokers);
        }
    }
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed { connections: args.connections },
    };
    let run_id = format!("lt{:x}", fastrand::u64(..));
    let plan = |scenario| Plan {
        target: target.clone(),
        scenario,
        mode,
        duration: Duration::from_secs_f64(args.duration),
        threads: args.threads,
        api_key: args.api_key.clone(),
        states: args.states.clone(),
        run_id: run_id.clone(),
        notes_share: args.notes_share,
    };
    let server = args.server_pid.map(cpu::Server::new).transpose()?;
    let measured = |p: &Plan| -> anyhow::Result<(run::Tally, f64, Option<f64>)> {
        let before = server.as_ref().map(cpu::Server::cpu_seconds).transpose()?;
        let (t, secs) = run::run(p)?;
        let after = server.as_ref().map(cpu::Server::cpu_seconds).transpose()?;
        Ok((t, secs, before.zip(after).map(|(b, a)| a - b)))
    };
    let mut summaries = Vec::new();
    let mut cpu_rows = Vec::new();
    if !args.no_floor && args.scenario != Scenario::Healthz {
        let (t, secs, cpu) = measured(&plan(Scenario::Healthz))?;
        summaries.push(Summary::of("healthz", &t.main, t.ok, t.errors, 0, secs).timed(&t.late, &t.engine));
        cpu_rows.extend(cpu.map(|c| cpu::Usage::of("healthz", c, t.ok + t.errors, secs)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ws = (args.ws > 0).then(|| run::subscribers(&target, args.api_key.clone(), args.ws, stop.clone()));
    if ws.is_some() {
        std::thread::sleep(Duration::from_millis(500)); // let them connect and take their snapshot
    }
    // The server's fsyncs and snapshots over the scenario run; reading them is not part of it.
    let key = args.api_key.as_deref();
    let storage_before = storage::read(&target, key);
    let (t, secs, cpu) = measured(&plan(args.scenario))?;
    let storage = storage_before.and_then(|b| Ok(storage::StorageUsage::between(&b, &storage::read(&target, key)?)));
    stop.store(true, Ordering::Relaxed);
    let ws = ws.map(|h| h.join().expect("subscriber thread"));
    let name = format!("{:?}", args.scenario).to_lowercase();
    let requests = t.ok + t.errors + t.events_ok + t.event_errors;
    cpu_rows.extend(cpu.map(|c| cpu::Usage::of(&name, c, requests, secs)));
    summaries.push(Summary::of(&name, &t.main, t.ok, t.errors, t.queued, secs).timed(&t.late, &t.engine));
    if args.scenario == Scenario::Lifecycle {
        summaries.push(Summary::of("events", &t.events, t.events_ok, t.event_errors, 0, secs));
    }
    if args.notes_share > 0.0 && args.scenario != Scenario::Healthz {
        // The same run's decisions, split by whether the lead had notes (errors are not split).
        summaries.push(Summary::of("notes", &t.with_notes, t.with_notes.len(), 0, 0, secs));
        summaries.push(Summary::of("no notes", &t.without_notes, t.without_notes.len(), 0, 0, secs));
    }
    let floor = summaries.iter().find(|s| s.name == "healthz").map(|s| s.throughput);
    // A throughput ratio means something only when both runs went as fast as they could; in
    // the open loop the floor run shows the latency of the stack at the same rate instead.
    let closed = args.scenario != Scenario::Healthz && matches!(mode, Mode::Closed { .. });
    let ratio = floor.filter(|_| closed).map(|f| summaries.iter().find(|s| s.name == name).map_or(0.0, |s| s.throughput) / f);
    // A lifecycle is four requests; this ratio counts all of them.
    let requests_ratio = floor.filter(|_| closed && args.scenario == Scenario::Lifecycle).map(|f| requests as f64 / secs.max(1e-9) / f);
    let pacing = match mode {
        Mode::Closed { connections } => format!("closed loop, {connections} connections"),
        Mode::Open { rate } => format!("open loop, {rate} req/s (latency from the intended send time)"),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "target": target, "pacing": pacing, "threads": args.threads, "runs": summaries,
                "ratioToHealthz": ratio, "requestsRatioToHealthz": requests_ratio, "serverCpu": cpu_rows,
                "serverStorage": storage.as_ref().ok(), "serverStorageError": storage.as_ref().err().map(ToString::to_string),
                "websocket": ws, "errorSamples": t.samples,
            }))?
        );
    } else {
        println!("{pacing}, {} s per run, {} client threads", args.duration, args.threads);
        println!("{}", Summary::header());
        for s in &summaries {
            println!("{}", s.row());
        }
        for s in &summaries {
            if let Some(p) = &s.send_lateness {
                println!("{}: sent after the intended time by {}", s.name, p.line());
            }
        }
        for s in &summaries {
            if let Some(p) = &s.engine_time {
                println!("{}: the engine's own time (decisionMicros + journalMicros) {}", s.name, p.line());
            }
        }
        if let Some(r) = ratio {
            println!("{name} throughput = {:.1}% of the /healthz floor", r * 100.0);
        }
        if let Some(r) = requests_ratio {
            println!("all lifecycle requests (decide and events) = {:.1}% of the /healthz floor", r * 100.0);
        }
        for c in &cpu_rows {
            println!("{}", c.line());
        }
        match &storage {
            Ok(u) => println!("server storage, {name}: {}", u.line()),
            Err(e) => println!("server storage, {name}: not read from /metrics ({e})"),
        }
        if let Some(w) = ws {
            println!("websocket: {} subscribers connected, {} messages, {} lagged", w.connected, w.messages, w.lagged);
        }
        for e in &t.samples {
            println!("error sample: {e}");
        }
    }
    Ok(())
}
