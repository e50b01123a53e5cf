//! `leadrouter simulate --evaluate`: the Open Bandit Pipeline's protocol on simulated worlds.
//! On each seed, a logging policy (one strategy, usually with exploration set in the config)
//! routes the world and its journal is kept; each candidate policy is estimated from that log
//! by every estimator, then run on the same world for its true on-policy value (its own
//! conversions per decision, read from its own journal the same way). Reported per candidate
//! and estimator: the mean relative error and how often the 95% interval held the truth.

use std::path::Path;

use leadrouter_actors::evaluation::{Candidate, Evaluation, Settings};
use leadrouter_actors::{Durability, EngineConfig};
use leadrouter_models::ope::{Interval, Support};
use leadrouter_models::Strategy;
use serde::Serialize;

use super::runner::{self, Policy};
use super::{Scenario, World};
use crate::error::{Error, Result};

/// What to run.
pub struct OpeOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// The logging policy's strategy.
    pub logger: Strategy,
    /// The candidates.
    pub candidates: Vec<Strategy>,
    /// World seeds.
    pub seeds: Vec<u64>,
    /// Engine settings (the logger's exploration among them).
    pub engine: EngineConfig,
    /// Bootstrap resamples per interval.
    pub bootstrap: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One candidate on one seed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedResult {
    /// World seed.
    pub seed: u64,
    /// The candidate's own conversions per decision when it routed the world.
    pub truth: f64,
    /// The logger's.
    pub logged: f64,
    /// Resolved logged decisions the estimates rest on.
    pub decisions: usize,
    /// IPS, SNIPS, DM, DR of the conversion rate.
    pub estimates: [Option<Interval>; 4],
    /// The weights' support.
    pub support: Support,
}

/// One estimator over the seeds.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimatorSummary {
    /// `ips`, `snips`, `dm` or `dr`.
    pub estimator: &'static str,
    /// Mean |estimate − truth| / truth.
    pub mean_relative_error: f64,
    /// Share of seeds whose interval held the truth.
    pub coverage: f64,
    /// Mean estimate.
    pub mean_estimate: f64,
}

/// One candidate over the seeds.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateSummary {
    /// Strategy name.
    pub policy: String,
    /// Mean true value.
    pub mean_truth: f64,
    /// Mean logged value.
    pub mean_logged: f64,
    /// Mean effective sample size and decisions.
    pub mean_effective_sample_size: f64,
    /// Mean decisions per seed.
    pub mean_decisions: f64,
    /// Mean share of logged decisions the candidate would never take.
    pub mean_unsupported_share: f64,
    /// Per estimator.
    pub estimators: Vec<EstimatorSummary>,
    /// Per seed.
    pub seeds: Vec<SeedResult>,
}

/// The whole protocol's result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpeReport {
    /// Scenario name.
    pub scenario: String,
    /// The logging policy.
    pub logger: String,
    /// Its exploration, as configured.
    pub exploration: Option<leadrouter_models::Exploration>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Per candidate.
    pub candidates: Vec<CandidateSummary>,
}

const NAMES: [&str; 4] = ["ips", "snips", "dm", "dr"];

/// The evaluation of `candidate` on the journal in `data` (its models from there too).
fn evaluate_dir(data: &Path, cfg: &EngineConfig, candidate: &Candidate, bootstrap: usize, seed: u64) -> Result<Evaluation> {
    let settings = Settings { from: None, to: None, bootstrap_samples: bootstrap, seed };
    crate::evaluate::evaluate_dir(data, cfg, candidate, settings, None, &())
}

/// Runs the protocol.
pub fn run(opts: &OpeOptions) -> Result<OpeReport> {
    if opts.candidates.is_empty() || opts.seeds.is_empty() {
        return Err(Error::Simulation("name at least one candidate and one seed".into()));
    }
    let mut scenario = opts.scenario.clone();
    scenario.start = Some(scenario.start());
    let total = opts.seeds.len() as u64 * (1 + opts.candidates.len() as u64);
    let bar = if opts.progress { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs {msg} [{elapsed}<{eta}]") {
        bar.set_style(style);
    }
    let mut per: Vec<Vec<SeedResult>> = vec![Vec::new(); opts.candidates.len()];
    for &seed in &opts.seeds {
        let world = World::generate(&scenario, seed);
        let logged_dir = tempfile::tempdir()?;
        bar.set_message(format!("{} seed {seed}", opts.logger.name()));
        run_one(&world, Policy::Engine(opts.logger), seed, &opts.engine, logged_dir.path())?;
        bar.inc(1);
        for (k, &b) in opts.candidates.iter().enumerate() {
            bar.set_message(format!("{} seed {seed}", b.name()));
            let candidate = Candidate { strategy: b, weights: None, model_version: None, exploration: None };
            let est = evaluate_dir(logged_dir.path(), &opts.engine, &candidate, opts.bootstrap, seed)?;
            // The candidate's own run, deterministic: without any exploration the config gives it.
            let mut own = opts.engine.clone();
            own.routing.exploration.remove(b.name());
            let own_dir = tempfile::tempdir()?;
            run_one(&world, Policy::Engine(b), seed, &own, own_dir.path())?;
            let truth = evaluate_dir(own_dir.path(), &own, &candidate, 1, seed)?.logging.conversion_rate;
            let c = &est.estimates.conversion_rate;
            per[k].push(SeedResult {
                seed,
                truth,
                logged: est.logging.conversion_rate,
                decisions: est.decisions,
                estimates: [Some(c.ips), c.snips, Some(c.dm), Some(c.dr)],
                support: est.support,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let candidates = opts.candidates.iter().zip(per).map(|(b, seeds)| summarise(b.name(), seeds)).collect();
    Ok(OpeReport {
        scenario: scenario.name.clone(),
        logger: opts.logger.name().into(),
        exploration: opts.engine.routing.exploration.get(opts.logger.name()).copied(),
        seeds: opts.seeds.clone(),
        candidates,
    })
}

fn run_one(world: &World, policy: Policy, seed: u64, cfg: &EngineConfig, dir: &Path) -> Result<()> {
    actix_rt::System::new().block_on(runner::run(world, policy, None, seed, cfg, dir, Durability::None, || {}))?;
    Ok(())
}

fn summarise(name: &str, seeds: Vec<SeedResult>) -> CandidateSummary {
    let n = seeds.len().max(1) as f64;
    let mean = |f: &dyn Fn(&SeedResult) -> f64| seeds.iter().map(f).sum::<f64>() / n;
    let estimators = (0..4)
        .map(|k| {
            let held: Vec<(&SeedResult, Interval)> = seeds.iter().filter_map(|s| s.estimates[k].map(|i| (s, i))).collect();
            let m = held.len().max(1) as f64;
            EstimatorSummary {
                estimator: NAMES[k],
                mean_relative_error: held.iter().map(|(s, i)| (i.estimate - s.truth).abs() / s.truth.max(1e-12)).sum::<f64>() / m,
                coverage: held.iter().filter(|(s, i)| i.lower <= s.truth && s.truth <= i.upper).count() as f64 / m,
                mean_estimate: held.iter().map(|(_, i)| i.estimate).sum::<f64>() / m,
            }
        })
        .collect();
    CandidateSummary {
        policy: name.into(),
        mean_truth: mean(&|s| s.truth),
        mean_logged: mean(&|s| s.logged),
        mean_effective_sample_size: mean(&|s| s.support.effective_sample_size),
        mean_decisions: mean(&|s| s.decisions as f64),
        mean_unsupported_share: mean(&|s| s.support.unsupported_share),
        estimators,
        seeds,
    }
}

impl OpeReport {
    /// The report as a table.
    pub fn table(&self) -> String {
        let x = self.exploration.map_or_else(|| "no exploration".to_string(), |x| serde_json::to_string(&x).unwrap_or_default());
        let mut out = format!(
            "logging policy {} ({x}) on scenario {}, {} seeds; conversion rate per decision\n\n",
            self.logger,
            self.scenario,
            self.seeds.len()
        );
        out.push_str(&format!(
            "{:<22} {:>7} {:>7}  {:>15} {:>15} {:>15} {:>15}  {:>6} {:>11}\n",
            "candidate", "truth", "logged", "IPS err/cover", "SNIPS err/cover", "DM err/cover", "DR err/cover", "ESS", "unsupported"
        ));
        for c in &self.candidates {
            let cells: Vec<String> =
                c.estimators.iter().map(|e| format!("{:>6.1}% {:>6.0}%", 100.0 * e.mean_relative_error, 100.0 * e.coverage)).collect();
            out.push_str(&format!(
                "{:<22} {:>7.4} {:>7.4}  {:>15} {:>15} {:>15} {:>15}  {:>6.0} {:>10.1}%\n",
                c.policy,
                c.mean_truth,
                c.mean_logged,
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                c.mean_effective_sample_size,
                100.0 * c.mean_unsupported_share
            ));
        }
        out.push_str("\nerr: mean |estimate − truth| / truth over seeds; cover: share of seeds whose 95% interval held the truth\n");
        out
    }
}
