//! `leadrouter`: serve the engine, train its model, simulate routing quality, or dump its journal.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadrouter::{Config, Overrides};
use tracing_subscriber::EnvFilter;

/// The decision path allocates many small, short-lived objects on several threads; mimalloc's
/// per-thread free lists serve them with less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "leadrouter", version, about = "Routes insurance leads to brokers within milliseconds")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Default)]
struct Common {
    /// Configuration file (TOML) applied over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (journal and snapshots).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Port to listen on (0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on.
        #[arg(long)]
        bind: Option<String>,
        /// Do not load the demo brokers into a new data directory.
        #[arg(long)]
        no_demo: bool,
    },
    /// Train a conversion model from the journal (offline; a running server picks the new
    /// active version up at its next start, or at once via POST /api/models/{version}/activate).
    Train {
        #[command(flatten)]
        common: Common,
        /// Activate the new version even if it does not beat the active one.
        #[arg(long)]
        force: bool,
    },
    /// Estimate how a candidate policy would have done on the decisions in the journal
    /// (off-policy evaluation: IPS, self-normalised IPS, direct method, doubly robust).
    Evaluate {
        #[command(flatten)]
        common: Common,
        /// The candidate's strategy: specialty, ml, roi, random, round_robin, weighted_round_robin.
        #[arg(long)]
        strategy: String,
        /// Its weights as JSON, e.g. '{"specialty":0.5,"performance":0.3,"capacity":0.1,"sla":0.1}'.
        #[arg(long, value_name = "JSON")]
        weights: Option<String>,
        /// Its model version (ml, roi); the active model when absent.
        #[arg(long)]
        model_version: Option<String>,
        /// Its exploration as JSON, e.g. '{"method":"softmax","temperature":0.1}'.
        #[arg(long, value_name = "JSON")]
        exploration: Option<String>,
        /// Decisions made at or after this moment (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Decisions made before this moment (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Bootstrap resamples per interval.
        #[arg(long, default_value_t = 500)]
        bootstrap: usize,
        /// Seed of the bootstrap.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The reward model's version (the active model when absent).
        #[arg(long)]
        reward_model: Option<String>,
        /// Print the result as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Measure routing quality: run the engine in-process against a simulated world with a
    /// hidden ground truth, for each strategy and an oracle, over several seeds.
    Simulate {
        /// Configuration file (TOML) applied over the built-in defaults: routing weights and
        /// model settings apply to the simulated engine; storage is the simulation's own.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A built-in scenario (balanced, capacity-starved, many-small, one-dominant, demo) or a TOML file.
        #[arg(long, default_value = "balanced")]
        scenario: String,
        /// Comma-separated: random, round_robin, weighted_round_robin, specialty, ml, oracle
        /// (default: all of them; random with --write-history).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<String>,
        /// Seeds per strategy (default: the scenario's).
        #[arg(long)]
        seeds: Option<u32>,
        /// First seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Days of arrivals (default: the scenario's).
        #[arg(long)]
        days: Option<u32>,
        /// Write report.json and chart.svg into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the report as JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Run one strategy on one seed and keep its engine data (journal, snapshot) in DIR,
        /// which must be new or empty: history to train the model on (`leadrouter train
        /// --data-dir DIR`) or to serve (`leadrouter serve --data-dir DIR`).
        #[arg(long, value_name = "DIR")]
        write_history: Option<PathBuf>,
        /// Run this experiment (a JSON file, the body of POST /api/experiments) in the engine on
        /// every seed, leads routed by its arms; reports how often its fixed and sequential
        /// analyses reject. Replaces --strategies.
        #[arg(long, value_name = "FILE")]
        experiment: Option<PathBuf>,
        /// Off-policy evaluation: on each seed, log a run of the one strategy in --strategies
        /// (its exploration from --config), estimate these strategies from that log, run each
        /// on the same world for its true value, and report every estimator's error and coverage.
        #[arg(long, value_delimiter = ',', value_name = "STRATEGIES")]
        evaluate: Vec<String>,
        /// Bootstrap resamples per interval with --evaluate.
        #[arg(long, default_value_t = 500)]
        bootstrap: usize,
    },
    /// Inspect the journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Print every record as a JSON line: {"seq": N, "record": {...}}.
    Dump {
        #[command(flatten)]
        common: Common,
    },
}

fn load(common: &Common, port: Option<u16>, bind: Option<String>, no_demo: bool) -> anyhow::Result<Config> {
    let o = Overrides { port, bind, data_dir: common.data_dir.clone(), no_demo };
    Ok(Config::load(common.config.as_deref(), std::env::vars(), &o)?)
}

/// Flushes exported spans when dropped (after the server stopped).
struct Logs {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Logs {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("trace export: {e}");
            }
        }
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

fn init_logs(log: &leadrouter::config::LogConfig) -> anyhow::Result<Logs> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter =
        std::env::var("LEADROUTER_LOG").ok().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new(&log.level));
    // Colour only on a terminal: a log file or journald gets plain text, and nobody pays for
    // escape codes in fields formatted for every request span.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers: Vec<BoxedLayer> = vec![match log.format {
        leadrouter::config::LogFormat::Json => fmt.json().boxed(),
        leadrouter::config::LogFormat::Text => fmt.boxed(),
    }];
    #[cfg(feature = "otlp")]
    let provider = if log.otlp_endpoint.is_empty() {
        None
    } else {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::WithExportConfig;
        let endpoint = format!("{}/v1/traces", log.otlp_endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .context("building the OTLP span exporter")?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("leadrouter").build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        layers.push(tracing_opentelemetry::layer().with_tracer(provider.tracer("leadrouter")).boxed());
        Some(provider)
    };
    tracing_subscriber::registry().with(layers).with(filter).init();
    Ok(Logs {
        #[cfg(feature = "otlp")]
        provider,
    })
}

/// Applies `server.transparent_huge_pages`; a kernel that refuses is worth a warning, not an exit.
fn huge_pages(cfg: &Config) {
    if let Err(e) = leadrouter::process::transparent_huge_pages(cfg.server.transparent_huge_pages) {
        tracing::warn!(error = %e, "could not set transparent huge pages for the process");
    }
}

fn main() -> anyhow::Result<()> {
    // Candle's matmul parallelism follows RAYON_NUM_THREADS; a pool is many times slower for the
    // small batches of one decision, so the forward pass runs on the calling thread. Set before
    // any thread exists.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    match Cli::parse().command {
        Command::Serve { common, port, bind, no_demo } => {
            let cfg = load(&common, port, bind, no_demo)?;
            let _logs = init_logs(&cfg.log)?;
            huge_pages(&cfg);
            actix_rt::System::new().block_on(async move {
                let running = leadrouter::server::start(cfg).await.context("start-up failed")?;
                // Tests and scripts read this line to learn the port.
                println!("listening on http://{}", running.addr);
                std::io::stdout().flush()?;
                running.wait().await.context("shutdown failed")
            })
        }
        Command::Train { common, force } => {
            let cfg = load(&common, None, None, false)?;
            let _logs = init_logs(&cfg.log)?;
            huge_pages(&cfg);
            let data = &cfg.storage.data_dir;
            let registry = leadrouter_actors::model::registry::Registry::open(
                &leadrouter_actors::engine::models_dir(data),
                &leadrouter_actors::engine::journal_dir(data),
                cfg.model.clone(),
                cfg.routing.prior_strength,
            )?;
            let bar = indicatif::ProgressBar::new(cfg.model.max_epochs as u64);
            bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} epoch {pos}/{len} {msg}")?);
            let state = registry.train_now(force, |e| {
                bar.set_position(e.epoch as u64);
                bar.set_message(format!("train loss {:.4}, validation loss {:.4}", e.train_loss, e.valid_loss));
            })?;
            bar.finish();
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(())
        }
        Command::Evaluate { common, strategy, weights, model_version, exploration, from, to, bootstrap, seed, reward_model, json } => {
            let cfg = load(&common, None, None, false)?;
            let _logs = init_logs(&leadrouter::config::LogConfig { level: "warn".into(), ..cfg.log.clone() })?;
            let policy = serde_json::json!({
                "strategy": strategy,
                "weights": weights.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose().context("--weights is not JSON")?,
                "modelVersion": model_version,
                "exploration": exploration.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose().context("--exploration is not JSON")?,
            });
            let candidate: leadrouter_actors::evaluation::Candidate = serde_json::from_value(policy).context("the candidate policy")?;
            let settings = leadrouter_actors::evaluation::Settings { from, to, bootstrap_samples: bootstrap, seed };
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let e = leadrouter::evaluate::run(&cfg, &candidate, settings, reward_model.as_deref(), progress)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", leadrouter::evaluate::table(&e));
            }
            Ok(())
        }
        Command::Simulate {
            config,
            scenario,
            strategies,
            seeds,
            seed,
            days,
            out,
            json,
            write_history,
            experiment,
            evaluate,
            bootstrap,
        } => {
            let cfg = load(&Common { config, data_dir: None }, None, None, true)?;
            let _logs = init_logs(&leadrouter::config::LogConfig { level: "warn".into(), ..cfg.log.clone() })?;
            huge_pages(&cfg);
            let mut scenario = leadrouter::sim::Scenario::load(&scenario)?;
            if let Some(d) = days {
                scenario.days = d;
            }
            if let Some(n) = seeds {
                scenario.seeds = n;
            }
            if let Some(s) = seed {
                scenario.seed = s;
            }
            scenario.validate()?;
            let mut policies = Vec::new();
            for name in &strategies {
                let p = leadrouter::sim::Policy::parse(name.trim()).with_context(|| {
                    format!("unknown strategy '{name}': use random, round_robin, weighted_round_robin, specialty, ml or oracle")
                })?;
                if !policies.contains(&p) {
                    policies.push(p);
                }
            }
            if !evaluate.is_empty() {
                let strategy = |name: &str| {
                    leadrouter_models::Strategy::ALL.into_iter().find(|s| s.name() == name.trim()).with_context(|| {
                        format!("unknown strategy '{name}': use random, round_robin, weighted_round_robin, specialty, ml or roi")
                    })
                };
                let [logger] = strategies.as_slice() else {
                    anyhow::bail!("--evaluate needs exactly one logging strategy in --strategies");
                };
                let opts = leadrouter::sim::ope::OpeOptions {
                    seeds: (0..scenario.seeds as u64).map(|i| scenario.seed + i).collect(),
                    scenario,
                    logger: strategy(logger)?,
                    candidates: evaluate.iter().map(|c| strategy(c)).collect::<anyhow::Result<_>>()?,
                    engine: cfg.engine(),
                    bootstrap,
                    progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                let report = leadrouter::sim::ope::run(&opts)?;
                if let Some(dir) = &out {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                    std::fs::write(dir.join("ope.json"), serde_json::to_vec_pretty(&report)?)?;
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.table());
                }
                return Ok(());
            }
            let history = write_history.is_some();
            let experiment = match &experiment {
                Some(f) => {
                    if !policies.is_empty() || history {
                        anyhow::bail!("--experiment replaces --strategies and --write-history");
                    }
                    let body = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    let d = leadrouter::api::experiments::parse_definition(&body).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    policies.push(leadrouter::sim::Policy::Experiment);
                    Some(d)
                }
                None => None,
            };
            if policies.is_empty() {
                policies = if history {
                    vec![leadrouter::sim::Policy::Engine(leadrouter_models::Strategy::Random)]
                } else {
                    leadrouter::sim::Policy::ALL.to_vec()
                };
            }
            let seeds: Vec<u64> =
                if history { vec![scenario.seed] } else { (0..scenario.seeds as u64).map(|i| scenario.seed + i).collect() };
            if history {
                policies.truncate(1);
            }
            let opts = leadrouter::sim::SimOptions {
                scenario,
                policies,
                seeds,
                engine: cfg.engine(),
                history: write_history.clone(),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                experiment,
            };
            let report = leadrouter::sim::simulate(&opts)?;
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
                report.chart(&dir.join("chart.svg"))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
                if let Some(dir) = &out {
                    println!(
                        "
wrote {} and {}",
                        dir.join("report.json").display(),
                        dir.join("chart.svg").display()
                    );
                }
                if let Some(dir) = &write_history {
                    println!(
                        "
kept the engine data in {}: train with `leadrouter train --data-dir {}`",
                        dir.display(),
                        dir.display()
                    );
                }
            }
            Ok(())
        }
        Command::Journal { command: JournalCommand::Dump { common } } => {
            let cfg = load(&common, None, None, false)?;
            let dir = leadrouter_actors::engine::journal_dir(&cfg.storage.data_dir);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut failed = None;
            let report = leadrouter_actors::storage::journal::read_all(&dir, |seq, rec| {
                if failed.is_none() {
                    if let Err(e) = serde_json::to_writer(&mut out, &serde_json::json!({"seq": seq, "record": rec}))
                        .map_err(anyhow::Error::from)
                        .and_then(|_| Ok(writeln!(out)?))
                    {
                        failed = Some(e);
                    }
                }
            })
            .with_context(|| format!("reading journal in {}", dir.display()))?;
            if let Some(e) = failed {
                return Err(e);
            }
            out.flush()?;
            if let Some((file, offset, bytes)) = report.torn_tail {
                eprintln!("note: {bytes} bytes of torn tail at {}:{offset} (cut at next start-up)", file.display());
            }
            Ok(())
        }
    }
}
