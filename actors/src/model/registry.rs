//! Model versions on disk, the active model, training jobs and serving statistics.
//!
//! Layout: `<data>/models/<version>/model.safetensors` and `meta.json`, and `<data>/models/active`
//! naming the active version. Files are written to a temporary name and renamed. The active
//! model is an `Arc` behind a lock held only to clone or replace it, so a swap never pauses
//! decisions: each decision uses the model it picked up, and names its version.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::nn::Epoch;
use leadrouter_models::{ConversionModel, Metrics, FEATURE_SPEC_VERSION};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::{ActorError, Result};
use crate::model::training::{self, predict_f64, ModelMeta};

/// Outcomes kept for the drift signal.
pub const DRIFT_WINDOW: usize = 1000;

/// A loaded model version.
pub struct LoadedModel {
    /// Version name.
    pub version: String,
    /// The network.
    pub model: ConversionModel,
    /// Its metadata.
    pub meta: ModelMeta,
}

/// Where a training job is.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum JobState {
    /// Reading the journal and building the dataset.
    Preparing,
    /// Training.
    #[serde(rename_all = "camelCase")]
    Training {
        /// Last finished epoch.
        epoch: usize,
        /// Most epochs.
        max_epochs: usize,
        /// Its training loss.
        train_loss: f64,
        /// Its validation loss.
        valid_loss: f64,
    },
    /// Finished with a new version.
    #[serde(rename_all = "camelCase")]
    Succeeded {
        /// The new version.
        version: String,
        /// Whether it became active.
        activated: bool,
        /// Why it was or was not activated.
        reason: String,
        /// Validation metrics.
        metrics: Metrics,
        /// Baseline metrics on the same rows.
        baseline: Metrics,
    },
    /// Failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// A training job.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Activate even if it does not beat the active model.
    pub force: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// State.
    #[serde(flatten)]
    pub state: JobState,
}

/// Predicted-versus-observed conversion over recent outcomes of model-routed leads.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Outcomes in the window.
    pub outcomes: usize,
    /// Mean predicted probability of the chosen broker.
    pub mean_predicted: Option<f64>,
    /// Observed conversion rate.
    pub observed_rate: Option<f64>,
    /// mean predicted − observed.
    pub difference: Option<f64>,
}

/// Model versions and the active one.
pub struct Registry {
    dir: PathBuf,
    journal_dir: PathBuf,
    cfg: ModelConfig,
    prior_strength: f64,
    active: RwLock<Option<Arc<LoadedModel>>>,
    /// Versions loaded for experiments' arms, by name.
    pinned: Mutex<BTreeMap<String, Arc<LoadedModel>>>,
    jobs: Mutex<BTreeMap<u64, Job>>,
    next_job: AtomicU64,
    predictions: AtomicU64,
    outcomes: Mutex<VecDeque<(f64, bool)>>,
    /// One training at a time.
    training: Mutex<()>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

impl Registry {
    /// Opens the registry in `dir` and loads the active version, if any.
    pub fn open(dir: &Path, journal_dir: &Path, cfg: ModelConfig, prior_strength: f64) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let r = Self {
            dir: dir.to_path_buf(),
            journal_dir: journal_dir.to_path_buf(),
            cfg,
            prior_strength,
            active: RwLock::new(None),
            pinned: Mutex::new(BTreeMap::new()),
            jobs: Mutex::new(BTreeMap::new()),
            next_job: AtomicU64::new(1),
            predictions: AtomicU64::new(0),
            outcomes: Mutex::new(VecDeque::new()),
            training: Mutex::new(()),
        };
        if let Ok(v) = fs::read_to_string(dir.join("active")) {
            let v = v.trim();
            if !v.is_empty() {
                *r.active.write() = Some(Arc::new(r.load(v)?));
            }
        }
        Ok(r)
    }

    fn load(&self, version: &str) -> Result<LoadedModel> {
        let vdir = self.version_dir(version)?;
        let meta: ModelMeta = serde_json::from_slice(&fs::read(vdir.join("meta.json"))?)?;
        // Each spec version's columns are a prefix of the next one's: a model of an older version
        // reads the first columns of today's rows.
        let Some(inputs) = leadrouter_models::inputs_of_version(meta.feature_spec_version) else {
            return Err(ActorError::Model(format!(
                "model {version} uses feature spec {} but this build knows 1 to {FEATURE_SPEC_VERSION}",
                meta.feature_spec_version
            )));
        };
        let model = ConversionModel::from_safetensors(&fs::read(vdir.join("model.safetensors"))?)?;
        if model.inputs() != inputs {
            return Err(ActorError::Model(format!(
                "model {version} reads {} features but feature spec {} has {inputs}",
                model.inputs(),
                meta.feature_spec_version
            )));
        }
        Ok(LoadedModel { version: version.to_string(), model, meta })
    }

    fn version_dir(&self, version: &str) -> Result<PathBuf> {
        let ok = version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let dir = self.dir.join(version);
        if !ok || !dir.join("meta.json").exists() {
            return Err(ActorError::NotFound { what: "model version", id: version.to_string() });
        }
        Ok(dir)
    }

    /// The journal the models are trained from.
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }

    /// The active model, if any (cheap: an `Arc` clone).
    pub fn active(&self) -> Option<Arc<LoadedModel>> {
        self.active.read().clone()
    }

    /// Version `version`, loaded once and kept (an experiment's arm may pin one that is not
    /// active).
    pub fn version(&self, version: &str) -> Result<Arc<LoadedModel>> {
        if let Some(a) = self.active().filter(|a| a.version == version) {
            return Ok(a);
        }
        if let Some(m) = self.pinned.lock().get(version) {
            return Ok(m.clone());
        }
        let m = Arc::new(self.load(version)?);
        self.pinned.lock().insert(version.to_string(), m.clone());
        Ok(m)
    }

    /// Counts predictions served.
    pub fn count_predictions(&self, n: usize) {
        self.predictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records the outcome of a lead routed with predicted probability `p`.
    pub fn record_outcome(&self, p: f64, converted: bool) {
        let mut q = self.outcomes.lock();
        if q.len() == DRIFT_WINDOW {
            q.pop_front();
        }
        q.push_back((p, converted));
    }

    /// Version names on disk, oldest first, with their metadata.
    pub fn versions(&self) -> Vec<ModelMeta> {
        let mut out: Vec<ModelMeta> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read(e.path().join("meta.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by_key(|m: &ModelMeta| m.version.trim_start_matches('v').parse::<u64>().unwrap_or(0));
        out
    }

    fn next_version(&self) -> String {
        let n = self.versions().iter().filter_map(|m| m.version.trim_start_matches('v').parse::<u64>().ok()).max().unwrap_or(0);
        format!("v{}", n + 1)
    }

    /// Makes `version` active (roll back or forward); decisions switch without pausing.
    pub fn activate(&self, version: &str) -> Result<Arc<LoadedModel>> {
        let loaded = Arc::new(self.load(version)?);
        write_atomic(&self.dir.join("active"), version.as_bytes())?;
        *self.active.write() = Some(loaded.clone());
        tracing::info!(version, "model activated");
        Ok(loaded)
    }

    /// Trains a new version now (blocking), reporting epochs to `progress`. It becomes active
    /// when its validation log loss beats the active model's on the same rows, or with `force`.
    pub fn train_now(&self, force: bool, mut progress: impl FnMut(&Epoch)) -> Result<JobState> {
        let _one = self.training.lock();
        let trained = training::train_from_journal(&self.journal_dir, &self.cfg, self.prior_strength, |e| {
            progress(e);
            true
        })?;
        let version = self.next_version();
        let vdir = self.dir.join(&version);
        fs::create_dir_all(&vdir)?;
        let mut meta = trained.meta;
        meta.version = version.clone();
        write_atomic(&vdir.join("model.safetensors"), &trained.model.to_safetensors()?)?;
        write_atomic(&vdir.join("meta.json"), &serde_json::to_vec_pretty(&meta)?)?;
        let y: Vec<bool> = trained.valid.iter().map(|e| e.1).collect();
        let (activate, reason) = match self.active() {
            _ if force => (true, "forced by the request".to_string()),
            _ if self.cfg.always_activate => (true, "model.always_activate is set".to_string()),
            None => (true, "no model was active".to_string()),
            Some(cur) => {
                let theirs = Metrics::of(&y, &predict_f64(&cur.model, &trained.valid)?).log_loss;
                let ours = meta.metrics.log_loss;
                if ours < theirs {
                    (true, format!("validation log loss {ours:.5} beats active {} ({theirs:.5}) on the same rows", cur.version))
                } else {
                    (false, format!("validation log loss {ours:.5} does not beat active {} ({theirs:.5}) on the same rows", cur.version))
                }
            }
        };
        if activate {
            self.activate(&version)?;
        }
        Ok(JobState::Succeeded { version, activated: activate, reason, metrics: meta.metrics, baseline: meta.baseline })
    }

    /// Starts a training job on its own thread (decisions go on); returns its id.
    pub fn start_job(self: &Arc<Self>, force: bool) -> Result<String> {
        let n = self.next_job.fetch_add(1, Ordering::Relaxed);
        let id = format!("job-{n}");
        self.jobs.lock().insert(n, Job { id: id.clone(), force, started_at: Utc::now(), finished_at: None, state: JobState::Preparing });
        let me = self.clone();
        let max_epochs = self.cfg.max_epochs;
        std::thread::Builder::new().name(format!("train-{n}")).spawn(move || {
            crate::background::lower_priority("training");
            let result = me.train_now(force, |e| {
                if let Some(j) = me.jobs.lock().get_mut(&n) {
                    j.state = JobState::Training { epoch: e.epoch, max_epochs, train_loss: e.train_loss, valid_loss: e.valid_loss };
                }
            });
            let state = result.unwrap_or_else(|e| JobState::Failed { error: e.to_string() });
            if let Some(j) = me.jobs.lock().get_mut(&n) {
                j.state = state;
                j.finished_at = Some(Utc::now());
            }
        })?;
        Ok(id)
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<Job> {
        let n: Option<u64> = id.strip_prefix("job-").and_then(|n| n.parse().ok());
        n.and_then(|n| self.jobs.lock().get(&n).cloned()).ok_or_else(|| ActorError::NotFound { what: "training job", id: id.to_string() })
    }

    /// The latest job.
    pub fn last_job(&self) -> Option<Job> {
        self.jobs.lock().values().next_back().cloned()
    }

    /// Predictions served since start.
    pub fn predictions(&self) -> u64 {
        self.predictions.load(Ordering::Relaxed)
    }

    /// Predicted versus observed conversion over the recent window.
    pub fn drift(&self) -> Drift {
        let q = self.outcomes.lock();
        let n = q.len();
        let (mean_predicted, observed_rate) = if n == 0 {
            (None, None)
        } else {
            let p = q.iter().map(|o| o.0).sum::<f64>() / n as f64;
            let y = q.iter().filter(|o| o.1).count() as f64 / n as f64;
            (Some(p), Some(y))
        };
        Drift { outcomes: n, mean_predicted, observed_rate, difference: mean_predicted.zip(observed_rate).map(|(p, y)| p - y) }
    }
}
