//! Experiments in the simulator (`simulate --experiment FILE`): each seed runs one world with
//! the experiment running in the engine from the start, leads decided without a strategy so the
//! experiment's arms route them. The engine's own book is read after every 50 outcomes (the
//! sequential analysis, as a manager looking often would) and at the end (the fixed analysis).
//! Over many seeds, the share of runs that reject is the false-positive rate of an A/A test, or
//! the empirical power of an A/B test, shown beside the power planned for the effect the
//! experiment was sized for.

use std::time::Duration;

use leadrouter_actors::RouterSupervisor;
use leadrouter_models::experiment::stats::wilson;
use leadrouter_models::experiment::{analyze, Analysis, ArmTotals, Definition, Report};
use serde::Serialize;

use crate::error::{Error, Result};

/// Outcomes between two looks of the sequential analysis.
pub const LOOK_EVERY: u64 = 50;

/// How long a look waits for the book to take in the journal.
const PATIENCE: Duration = Duration::from_secs(30);

/// What one run's experiment found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRun {
    /// Exposures per arm.
    pub exposures: Vec<u64>,
    /// Conversions per arm.
    pub conversions: Vec<u64>,
    /// The fixed analysis at the end rejected on the primary metric (any arm).
    pub fixed_rejected: bool,
    /// Its smallest corrected p-value.
    pub fixed_p: f64,
    /// Some look of the sequential analysis rejected on the primary metric.
    pub sequential_rejected: bool,
    /// Looks taken.
    pub looks: u32,
    /// Power planned for the experiment's minimum detectable effect at the final size.
    pub planned_power: Option<f64>,
    /// The final recommendation.
    pub recommendation: String,
}

/// Follows one run's experiment.
pub struct Tracker {
    definition: Definition,
    outcomes: u64,
    run: ExperimentRun,
}

fn rejects(r: &Report) -> bool {
    r.comparisons.iter().any(|c| c.role == "primary" && c.significant)
}

impl Tracker {
    /// Starts the experiment in the engine.
    pub async fn start(router: &RouterSupervisor, definition: &Definition) -> Result<Self> {
        router.create_experiment(definition.clone(), true).await?;
        Ok(Self { definition: definition.clone(), outcomes: 0, run: ExperimentRun::default() })
    }

    /// The engine's totals once its book has taken in the journal, and their analysis.
    async fn report(&self, router: &RouterSupervisor, analysis: Analysis) -> Result<(Vec<ArmTotals>, Report)> {
        if !router.experiments_caught_up(PATIENCE).await {
            return Err(Error::Simulation("the experiment's book did not catch up with the journal".into()));
        }
        let (_, totals) = router.experiment_totals(&self.definition.id)?;
        let def = Definition { analysis, ..self.definition.clone() };
        let report = analyze(&def, &totals, None);
        Ok((totals, report))
    }

    /// Counts an outcome (sale or no sale) of any lead; every [`LOOK_EVERY`] takes a look.
    pub async fn outcome(&mut self, router: &RouterSupervisor) -> Result<()> {
        self.outcomes += 1;
        if self.outcomes.is_multiple_of(LOOK_EVERY) {
            let (_, r) = self.report(router, Analysis::Sequential).await?;
            self.run.looks += 1;
            self.run.sequential_rejected |= rejects(&r);
        }
        Ok(())
    }

    /// The fixed analysis at the end of the run.
    pub async fn finish(mut self, router: &RouterSupervisor) -> Result<ExperimentRun> {
        let (totals, r) = self.report(router, Analysis::Fixed).await?;
        self.run.exposures = totals.iter().map(|t| t.exposures).collect();
        self.run.conversions = totals.iter().map(|t| t.conversions).collect();
        self.run.fixed_rejected = rejects(&r);
        self.run.fixed_p = r.comparisons.iter().filter(|c| c.role == "primary").map(|c| c.adjusted_p_value).fold(1.0, f64::min);
        self.run.planned_power = r.power.achieved_power;
        self.run.recommendation = r.recommendation.summary;
        Ok(self.run)
    }
}

/// A rate over seeds with its Wilson 95% interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    /// Runs that rejected.
    pub count: u64,
    /// Runs.
    pub runs: u64,
    /// count / runs.
    pub rate: f64,
    /// Wilson 95% interval.
    pub interval: [f64; 2],
}

impl Rate {
    fn of(count: u64, runs: u64) -> Self {
        let (lo, hi) = wilson(count, runs, 0.05);
        Self { count, runs, rate: if runs == 0 { 0.0 } else { count as f64 / runs as f64 }, interval: [lo, hi] }
    }
}

/// The experiment over every seed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSummary {
    /// The experiment.
    pub id: String,
    /// Every arm routes the same way: rejections are false positives.
    pub identical_arms: bool,
    /// Significance level.
    pub alpha: f64,
    /// Runs whose fixed analysis at the end rejected: the false-positive rate of an A/A test,
    /// the empirical power otherwise.
    pub fixed: Rate,
    /// Runs whose sequential analysis rejected at some look (every 50 outcomes).
    pub sequential: Rate,
    /// Mean power planned for the minimum detectable effect at the final size.
    pub planned_power: Option<f64>,
    /// Mean exposures per arm.
    pub exposures: Vec<f64>,
    /// Mean conversion rate per arm.
    pub conversion_rate: Vec<f64>,
}

impl ExperimentSummary {
    /// Summarises the runs of `definition`.
    pub fn build(definition: &Definition, runs: &[&ExperimentRun]) -> Self {
        let n = runs.len() as u64;
        let arms = definition.arms.len();
        let c = &definition.arms[0];
        let a_a = definition.arms.iter().all(|a| a.strategy == c.strategy && a.weights == c.weights && a.model_version == c.model_version);
        let powers: Vec<f64> = runs.iter().filter_map(|r| r.planned_power).collect();
        let mean = |f: &dyn Fn(&ExperimentRun) -> f64| runs.iter().map(|r| f(r)).sum::<f64>() / runs.len().max(1) as f64;
        Self {
            id: definition.id.clone(),
            identical_arms: a_a,
            alpha: definition.alpha,
            fixed: Rate::of(runs.iter().filter(|r| r.fixed_rejected).count() as u64, n),
            sequential: Rate::of(runs.iter().filter(|r| r.sequential_rejected).count() as u64, n),
            planned_power: (!powers.is_empty()).then(|| powers.iter().sum::<f64>() / powers.len() as f64),
            exposures: (0..arms).map(|i| mean(&|r| r.exposures.get(i).copied().unwrap_or(0) as f64)).collect(),
            conversion_rate: (0..arms)
                .map(|i| {
                    mean(&|r| {
                        let (c, e) = (r.conversions.get(i).copied().unwrap_or(0), r.exposures.get(i).copied().unwrap_or(0));
                        if e == 0 {
                            0.0
                        } else {
                            c as f64 / e as f64
                        }
                    })
                })
                .collect(),
        }
    }

    /// The terminal lines.
    pub fn table(&self, definition: &Definition) -> String {
        let what = if self.identical_arms { "false-positive rate (A/A)" } else { "empirical power" };
        let pct = |r: &Rate| {
            format!("{:.1}% [{:.1}%, {:.1}%] ({} of {})", 100.0 * r.rate, 100.0 * r.interval[0], 100.0 * r.interval[1], r.count, r.runs)
        };
        let mut s = format!("\nexperiment {} at alpha {}: {what}\n", self.id, self.alpha);
        s += &format!("  {:<38} {}\n", "fixed analysis at the end:", pct(&self.fixed));
        s += &format!("  {:<38} {}\n", format!("sequential, a look every {LOOK_EVERY} outcomes:"), pct(&self.sequential));
        if let Some(p) = self.planned_power {
            let what = format!("planned power for a {:.0}% lift:", 100.0 * definition.minimum_detectable_effect);
            s += &format!("  {what:<38} {:.1}%\n", 100.0 * p);
        }
        for (i, a) in definition.arms.iter().enumerate() {
            s += &format!(
                "  arm {:<12} {:<20} {:>8.0} exposures, conversion {:.2}%\n",
                a.name,
                a.strategy.name(),
                self.exposures[i],
                100.0 * self.conversion_rate[i]
            );
        }
        s
    }
}
