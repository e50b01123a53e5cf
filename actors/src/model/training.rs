//! Training data from the journal, and the training run itself.
//!
//! The journal is replayed record by record; at every `decided` record the features are built
//! from the broker's state *before* the reservation (what serving saw at that moment), with the
//! same code serving uses. A row is labelled when its lead reaches an outcome with that broker:
//! converted = 1; lost, or closed after acceptance without a sale = 0. Rows whose lead was
//! rejected, timed out, or is still open are left out. Rows are split by time: the newest
//! `valid_fraction` validate.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use leadrouter_models::features;
use leadrouter_models::nn::Example;
use leadrouter_models::nn::{self, Epoch, TrainReport};
use leadrouter_models::{ConversionModel, EventKind, LeadState, Metrics, ModelError, TrainConfig, FEATURE_SPEC_VERSION};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::storage::journal;
use crate::storage::record::Record;
use crate::storage::state::EngineState;

/// Labelled rows split by time.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Older rows.
    pub train: Vec<Example>,
    /// Newest rows.
    pub valid: Vec<Example>,
    /// The baseline's prediction for each validation row: the broker's smoothed historical
    /// conversion at decision time.
    pub valid_baseline: Vec<f64>,
    /// Earliest and latest decision among labelled rows.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Decisions whose lead has no outcome yet (left out).
    pub unlabelled: usize,
}

struct Pending {
    at: DateTime<Utc>,
    row: features::FeatureRow,
    baseline: f64,
}

/// Builds the dataset by replaying the journal in `journal_dir`.
pub fn dataset_from_journal(journal_dir: &Path, valid_fraction: f64, prior_strength: f64) -> Result<Dataset> {
    let mut state = EngineState::default();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut done: Vec<(Pending, bool)> = Vec::new();
    journal::read_all(journal_dir, |seq, rec| {
        match &rec {
            Record::Decided { decision: d, request, .. } => {
                let req = request.as_deref().or_else(|| state.leads.get(&d.lead_id).map(|l| &*l.request));
                if let (Some(req), Some(b)) = (req, state.brokers.get(&d.broker_id)) {
                    let lead = req.features();
                    let priors = state.priors(prior_strength);
                    let bf = b.live.features(&b.broker.profile(), &lead, &priors, d.decided_at);
                    pending.insert(
                        d.lead_id.clone(),
                        Pending {
                            at: d.decided_at,
                            row: features::build(&lead, &bf, d.breakdown.semantic.as_ref()),
                            baseline: bf.conversion as f64,
                        },
                    );
                }
            }
            Record::LeadEvent { lead_id, event, .. } => {
                let before = state.leads.get(lead_id).map(|l| l.state);
                let label = match event {
                    EventKind::Converted => Some(true),
                    EventKind::Lost => Some(false),
                    EventKind::Closed if matches!(before, Some(LeadState::Accepted | LeadState::Contacted)) => Some(false),
                    EventKind::Rejected | EventKind::TimedOut => {
                        pending.remove(lead_id);
                        None
                    }
                    _ => None,
                };
                if let Some(y) = label {
                    if let Some(p) = pending.remove(lead_id) {
                        done.push((p, y));
                    }
                }
            }
            _ => {}
        }
        state.apply(seq, &rec);
    })?;
    done.sort_by_key(|(p, _)| p.at);
    let n_valid = ((done.len() as f64) * valid_fraction).round() as usize;
    let split = done.len() - n_valid.min(done.len());
    let range = done.first().zip(done.last()).map(|(a, b)| (a.0.at, b.0.at));
    let mut ds = Dataset { range, unlabelled: pending.len(), ..Dataset::default() };
    for (i, (p, y)) in done.into_iter().enumerate() {
        if i < split {
            ds.train.push((p.row, y));
        } else {
            ds.valid.push((p.row, y));
            ds.valid_baseline.push(p.baseline);
        }
    }
    Ok(ds)
}

/// Row counts of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowCounts {
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub valid: usize,
    /// Decisions without an outcome yet.
    pub unlabelled: usize,
}

/// `meta.json` of a model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelMeta {
    /// Version name.
    pub version: String,
    /// Feature specification version.
    pub feature_spec_version: u32,
    /// Validation metrics of the network.
    pub metrics: Metrics,
    /// Validation metrics of the historical-rate baseline on the same rows.
    pub baseline: Metrics,
    /// Decisions covered: first and last.
    pub data_from: Option<DateTime<Utc>>,
    /// Last decision covered.
    pub data_to: Option<DateTime<Utc>>,
    /// Rows.
    pub rows: RowCounts,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Seconds spent training.
    pub training_seconds: f64,
    /// Epochs.
    pub report: TrainReport,
    /// Settings used.
    pub config: TrainConfig,
}

/// A trained network and what is known about it.
pub struct Trained {
    /// The network.
    pub model: ConversionModel,
    /// Its metadata (version set by the registry).
    pub meta: ModelMeta,
    /// The validation rows, to compare with the active model on the same data.
    pub valid: Vec<Example>,
}

/// Predictions of `model` on `rows` as f64.
pub fn predict_f64(model: &ConversionModel, rows: &[Example]) -> Result<Vec<f64>> {
    let x: Vec<_> = rows.iter().map(|e| e.0).collect();
    Ok(model.predict(&x)?.into_iter().map(f64::from).collect())
}

/// Builds the dataset and trains; `progress` sees each epoch (return false to stop).
pub fn train_from_journal(
    journal_dir: &Path,
    cfg: &ModelConfig,
    prior_strength: f64,
    progress: impl FnMut(&Epoch) -> bool,
) -> Result<Trained> {
    let ds = dataset_from_journal(journal_dir, cfg.valid_fraction, prior_strength)?;
    let labelled = ds.train.len() + ds.valid.len();
    if labelled < cfg.min_rows || ds.valid.is_empty() || ds.train.is_empty() {
        return Err(ModelError::NotEnoughData(format!(
            "{labelled} decided leads have an outcome (converted, lost, or closed after acceptance); at least {} are needed ({} more are still open)",
            cfg.min_rows, ds.unlabelled
        ))
        .into());
    }
    let started = Instant::now();
    let tc = cfg.train_config();
    let (model, report) = nn::train(&ds.train, &ds.valid, &tc, progress)?;
    let y: Vec<bool> = ds.valid.iter().map(|e| e.1).collect();
    let metrics = Metrics::of(&y, &predict_f64(&model, &ds.valid)?);
    let baseline = Metrics::of(&y, &ds.valid_baseline);
    let meta = ModelMeta {
        version: String::new(),
        feature_spec_version: FEATURE_SPEC_VERSION,
        metrics,
        baseline,
        data_from: ds.range.map(|r| r.0),
        data_to: ds.range.map(|r| r.1),
        rows: RowCounts { train: ds.train.len(), valid: ds.valid.len(), unlabelled: ds.unlabelled },
        created_at: Utc::now(),
        training_seconds: started.elapsed().as_secs_f64(),
        report,
        config: tc,
    };
    Ok(Trained { model, meta, valid: ds.valid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config as config;
    use crate::engine::{journal_dir, Engine};
    use leadrouter_models::rng::SplitMix64;
    use leadrouter_models::{Broker, DecideRequest, LeadEventRequest, Strategy};

    const LINES: [&str; 3] = ["AUTO", "HOME", "LIFE"];
    const STATES: [&str; 3] = ["OR", "WA", "ID"];

    /// Twelve brokers, each licensed everywhere, with a hidden skill: strong in one line and
    /// at home in one state. Conversion depends on that lead × broker match only, so a broker's
    /// overall rate says little about a given lead.
    fn brokers() -> Vec<(Broker, usize, usize)> {
        (0..12)
            .map(|i| {
                let (line, home) = (i % 3, (i / 3) % 3);
                let specialties: Vec<_> = LINES
                    .iter()
                    .enumerate()
                    .map(|(j, l)| serde_json::json!({"type": l, "proficiency": if j == line { 5 } else { 1 }}))
                    .collect();
                let licenses: Vec<_> =
                    STATES.iter().map(|s| serde_json::json!({"state": s, "lines": LINES, "expiresOn": "2099-01-01"})).collect();
                let b = serde_json::from_value(serde_json::json!({
                    "id": format!("b{i}"), "name": "B", "specialties": specialties, "licenses": licenses,
                    "capacity": {"maxConcurrent": 1000, "dailyCap": 100000}
                }))
                .unwrap();
                (b, line, home)
            })
            .collect()
    }

    fn hidden_p(skill_line: usize, home: usize, lead_line: usize, lead_state: usize) -> f64 {
        match (skill_line == lead_line, home == lead_state) {
            (true, true) => 0.7,
            (true, false) | (false, true) => 0.3,
            (false, false) => 0.05,
        }
    }

    #[test]
    fn training_beats_the_historical_rate_baseline_on_interaction_data() {
        actix_rt::System::new().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::start(config(dir.path()), vec![]).await.unwrap();
            let r = engine.router().clone();
            let world = brokers();
            for (b, _, _) in &world {
                r.create_broker(b.clone()).await.unwrap();
            }
            let mut rng = SplitMix64::new(2024);
            let ev = |k| LeadEventRequest { kind: k, at: None, value: None };
            for i in 0..2500 {
                let (line, state) = (rng.below(3), rng.below(3));
                let req: DecideRequest = serde_json::from_value(serde_json::json!({
                    "leadId": format!("l{i}"), "strategy": "random",
                    "leadData": {"insuranceTypes": [LINES[line]], "state": STATES[state], "estimatedValue": 1000}
                }))
                .unwrap();
                assert_eq!(req.strategy, Some(Strategy::Random));
                let crate::views::DecideOutcome::Assigned(a) = r.decide(req).await.unwrap() else { panic!("capacity is ample") };
                let (_, skill, home) = world.iter().find(|(b, _, _)| b.id == a.decision.broker_id).unwrap();
                let id = format!("l{i}");
                r.lead_event(&id, ev(EventKind::Accepted)).await.unwrap();
                r.lead_event(&id, ev(EventKind::Contacted)).await.unwrap();
                let won = rng.next_f64() < hidden_p(*skill, *home, line, state);
                r.lead_event(&id, ev(if won { EventKind::Converted } else { EventKind::Lost })).await.unwrap();
                r.lead_event(&id, ev(EventKind::Closed)).await.unwrap();
            }
            r.journal().flush().await.unwrap();
            let cfg = config(dir.path()).model;
            let t = train_from_journal(&journal_dir(dir.path()), &cfg, 20.0, |_| true).unwrap();
            let (ours, base) = (t.meta.metrics.auc.unwrap(), t.meta.baseline.auc.unwrap());
            eprintln!(
                "validation AUC: model {ours:.4}, baseline {base:.4}; log loss: model {:.4}, baseline {:.4}; epochs {}",
                t.meta.metrics.log_loss, t.meta.baseline.log_loss, t.meta.report.epochs_run
            );
            assert_eq!((t.meta.rows.train, t.meta.rows.valid), (2000, 500));
            assert!(ours > base + 0.1, "model AUC {ours:.3} vs baseline {base:.3}");
            assert!(t.meta.metrics.log_loss < t.meta.baseline.log_loss);
            // Deterministic: the same journal and seed give the same model.
            let again = train_from_journal(&journal_dir(dir.path()), &cfg, 20.0, |_| true).unwrap();
            assert_eq!(again.meta.metrics, t.meta.metrics);
            engine.shutdown().await.unwrap();
        });
    }

    #[test]
    fn too_little_data_says_how_much_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path()).model;
        match train_from_journal(&journal_dir(dir.path()), &cfg, 20.0, |_| true) {
            Err(crate::ActorError::NotEnoughData(m)) => assert!(m.contains("at least 50"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an empty journal cannot train"),
        }
    }
}
