//! `leadrouter evaluate`: off-policy evaluation of a candidate policy over a data directory's
//! journal, from the command line, with a progress bar; and the table people read.

use std::path::Path;

use leadrouter_actors::evaluation::{self, Candidate, Evaluation, Progress, Settings};
use leadrouter_actors::model::registry::Registry;
use leadrouter_actors::EngineConfig;
use leadrouter_models::ope::{Estimates, Interval};

use crate::config::Config;
use crate::error::Result;

/// A progress bar over the journal's records.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn total(&self, records: u64) {
        self.0.set_length(records);
    }
    fn done(&self, records: u64) {
        self.0.set_position(records);
    }
}

/// Evaluates `candidate` on the journal in the data directory `data`, with the models kept there.
pub fn evaluate_dir(
    data: &Path,
    engine: &EngineConfig,
    candidate: &Candidate,
    settings: Settings,
    reward_model: Option<&str>,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    let journal = leadrouter_actors::engine::journal_dir(data);
    let registry =
        Registry::open(&leadrouter_actors::engine::models_dir(data), &journal, engine.model.clone(), engine.routing.prior_strength)?;
    let (models, reward) = evaluation::prepare(&registry, candidate, &settings, reward_model)?;
    Ok(evaluation::evaluate(&journal, engine, candidate, &models, reward, settings, progress)?)
}

/// Evaluates `candidate` on the journal of the configured data directory, with a progress bar
/// on stderr when `progress`.
pub fn run(cfg: &Config, candidate: &Candidate, settings: Settings, reward_model: Option<&str>, progress: bool) -> Result<Evaluation> {
    let bar = if progress { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} journal records [{elapsed}<{eta}]") {
        bar.set_style(style);
    }
    let bar = Bar(bar);
    let out = evaluate_dir(&cfg.storage.data_dir, &cfg.engine(), candidate, settings, reward_model, &bar)?;
    bar.0.finish_and_clear();
    Ok(out)
}

fn cell(i: &Interval, money: bool) -> String {
    if money {
        format!("{:>9.2} [{:.2}, {:.2}]", i.estimate, i.lower, i.upper)
    } else {
        format!("{:>7.4} [{:.4}, {:.4}]", i.estimate, i.lower, i.upper)
    }
}

fn row(name: &str, logged: f64, e: &Estimates, money: bool) -> String {
    let snips = e.snips.as_ref().map_or_else(|| "n/a".to_string(), |i| cell(i, money));
    let logged = if money { format!("{logged:.2}") } else { format!("{logged:.4}") };
    format!("{name:<16} {logged:>9}  IPS {}  SNIPS {}  DM {}  DR {}\n", cell(&e.ips, money), snips, cell(&e.dm, money), cell(&e.dr, money))
}

/// The result as a table.
pub fn table(e: &Evaluation) -> String {
    let mut out = String::new();
    let window = match (e.first_decision, e.last_decision) {
        (Some(a), Some(b)) => format!("{} to {}", a.format("%Y-%m-%d %H:%M"), b.format("%Y-%m-%d %H:%M")),
        _ => "no decisions".into(),
    };
    out.push_str(&format!(
        "candidate {} on {} resolved decisions ({window}); {} still open and {} not replayable were left out\n",
        serde_json::to_string(&e.policy).unwrap_or_default(),
        e.decisions,
        e.open,
        e.unreplayable
    ));
    out.push_str(&format!(
        "reward model {}; 95% percentile bootstrap intervals of {} resamples\n\n",
        e.reward_model, e.settings.bootstrap_samples
    ));
    out.push_str(&format!("{:<16} {:>9}  (candidate's estimates)\n", "", "logged"));
    out.push_str(&row("conversion rate", e.logging.conversion_rate, &e.estimates.conversion_rate, false));
    out.push_str(&row("revenue per lead", e.logging.revenue_per_lead, &e.estimates.revenue_per_lead, true));
    out.push_str(&row("SLA compliance", e.logging.sla_compliance, &e.estimates.sla_compliance, false));
    let s = &e.support;
    out.push_str(&format!(
        "\neffective sample size {:.0} of {}; the candidate never takes the logged choice in {:.1}% of decisions; mean weight {:.3}, largest {:.2}\n",
        s.effective_sample_size,
        s.decisions,
        100.0 * s.unsupported_share,
        s.mean_weight,
        s.max_weight
    ));
    for w in &e.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}
