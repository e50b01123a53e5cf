//! `leadrouter simulate`: runs the real engine in-process against generated worlds with a
//! hidden ground truth, for several routing policies and seeds, and reports routing quality
//! with 95% intervals over seeds.
//!
//! - [`scenario`]: the scenario files (`data/scenarios/*.toml`, compiled in).
//! - [`world`]: brokers with hidden skill, leads over time, the true conversion chance.
//! - [`runner`]: one policy on one world, event by event, on a manual clock.
//! - [`stats`]: intervals over seeds.
//! - [`experiment`]: an experiment running in each run, its looks and its rejection rates.
//! - [`report`]: aggregation, the terminal table, JSON and the SVG chart.
//! - [`probe`]: the active model's concordance with the hidden truth.
//! - [`ope`]: off-policy estimates from one policy's log against other policies' own runs.

pub mod experiment;
pub mod ope;
pub mod probe;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stats;
pub mod text;
pub mod world;

use std::path::PathBuf;

use leadrouter_actors::{Durability, EngineConfig};

pub use report::Report;
pub use runner::{Policy, RunResult};
pub use scenario::Scenario;
pub use world::World;

use crate::error::{Error, Result};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// Policies, in report order.
    pub policies: Vec<Policy>,
    /// World seeds.
    pub seeds: Vec<u64>,
    /// Engine settings (storage is replaced per run).
    pub engine: EngineConfig,
    /// Keep the journal and snapshot of the first run here (a new or empty directory), for
    /// training the conversion model on simulated history.
    pub history: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// An experiment to run in every run (policy [`Policy::Experiment`]).
    pub experiment: Option<leadrouter_models::experiment::Definition>,
}

/// Runs every policy on every seed and builds the report.
pub fn simulate(opts: &SimOptions) -> Result<Report> {
    if opts.policies.is_empty() || opts.seeds.is_empty() {
        return Err(Error::Simulation("nothing to run: name at least one strategy and one seed".into()));
    }
    if let Some(dir) = &opts.history {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(Error::Simulation(format!("{} is not empty; --write-history needs a new or empty directory", dir.display())));
        }
    }
    // The start is fixed once, so a run that spans midnight keeps one timeline.
    let mut scenario = opts.scenario.clone();
    scenario.start = Some(scenario.start());
    let worlds: Vec<World> = opts.seeds.iter().map(|&s| World::generate(&scenario, s)).collect();
    let total: u64 = worlds.iter().map(|w| w.leads.len() as u64).sum::<u64>() * opts.policies.len() as u64;
    let bar = if opts.progress { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} leads {msg} [{elapsed}<{eta}]") {
        bar.set_style(style);
    }
    let runs = actix_rt::System::new().block_on(async {
        let mut runs = Vec::new();
        for (w, &seed) in worlds.iter().zip(&opts.seeds) {
            for &policy in &opts.policies {
                bar.set_message(format!("{} seed {seed}", policy.name()));
                let first = runs.is_empty();
                let scratch = tempfile::tempdir()?;
                let (dir, durability) = match (&opts.history, first) {
                    (Some(h), true) => (h.clone(), Durability::Batch),
                    _ => (scratch.path().to_path_buf(), Durability::None),
                };
                let r = runner::run(w, policy, opts.experiment.as_ref(), seed, &opts.engine, &dir, durability, || bar.inc(1)).await?;
                runs.push(r);
            }
        }
        Ok::<_, Error>(runs)
    })?;
    bar.finish_and_clear();
    let names: Vec<String> = opts.policies.iter().map(|p| p.name().to_string()).collect();
    let mut report = Report::build(&scenario, &opts.seeds, &names, runs);
    // The oracle routes outside the engine: bounds are the engine's, so it is not held to them.
    for p in report.policies.iter_mut().filter(|p| p.policy != "oracle") {
        for (g, r) in &mut p.groups {
            r.bounds = opts.engine.routing.fairness.groups.get(g).copied();
        }
    }
    if let Some(d) = &opts.experiment {
        let found: Vec<_> = report.runs.iter().filter_map(|r| r.experiment.as_ref()).collect();
        report.experiment = Some((experiment::ExperimentSummary::build(d, &found), d.clone()));
    }
    Ok(report)
}
