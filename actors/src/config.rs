//! Engine settings: storage, durability and routing knobs, validated before start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;

use leadrouter_models::{FairnessSettings, ModelError, RoiSettings, Strategy, TrainConfig, Weights};
use serde::{Deserialize, Serialize};

/// Longest retention of finished leads accepted: ten years.
const MAX_RETENTION_SECONDS: u64 = 315_360_000;
/// Longest `storage.commit_delay_us`: beyond it `batch` durability is the better fit.
const MAX_COMMIT_DELAY_US: u64 = 10_000;

/// When an appended record counts as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync (fdatasync) before answering; one fsync per group of concurrent appends.
    #[default]
    Fsync,
    /// Answer after the write reaches the OS; fsync at most every `batch_interval_ms`.
    Batch,
    /// Answer after the write reaches the OS; fsync only on rotation and shutdown.
    None,
}

/// Where state lives and how it is made durable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (journal, snapshots).
    pub data_dir: PathBuf,
    /// Load the demo brokers into a new data directory.
    pub demo: bool,
    /// Journal durability mode.
    pub durability: Durability,
    /// fsync interval for `batch` durability.
    pub batch_interval_ms: u64,
    /// `fsync` durability: how long the journal writer may hold a record for company before its
    /// fsync, while records from concurrent callers arrive more often than that (0: never wait).
    pub commit_delay_us: u64,
    /// Segment size before the journal rotates to a new file.
    pub segment_bytes: u64,
    /// Seconds between periodic snapshots.
    pub snapshot_interval_seconds: u64,
    /// Seconds a finished (closed or expired) lead stays in memory before it is archived.
    pub finished_lead_retention_seconds: u64,
    /// Most finished leads kept in memory: beyond it the oldest are archived at the next tick,
    /// before their retention is up.
    pub max_finished_leads: u64,
}

/// How leads are routed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Strategy when a request names none.
    pub default_strategy: Strategy,
    /// Candidates scored per decision after the cheap pre-rank.
    pub top_k: usize,
    /// Deadline for gathering scores, in milliseconds; with one arbiter, a decision waits at most
    /// twice this for its scoring and reservation task.
    pub score_deadline_ms: u64,
    /// Alternatives listed in a decision.
    pub alternatives: usize,
    /// Seconds a queued lead waits before it expires.
    pub queue_expiry_seconds: u64,
    /// Pseudo-observations of the empirical-Bayes priors.
    pub prior_strength: f64,
    /// Arbiters (threads) the broker actors are spread over; 0 means one per two cores, at
    /// least one (see [`RoutingConfig::arbiter_threads`]).
    pub arbiters: usize,
    /// Milliseconds between queue sweeps (expiry, newly opened hours).
    pub tick_ms: u64,
    /// Seconds between reviews of the running experiments: Thompson allocation updates,
    /// automatic conclusion, the significance and sample-ratio gauges.
    pub experiment_review_seconds: u64,
    /// Capacity events buffered per feed subscriber before it is told it lagged.
    pub feed_buffer: usize,
    /// Seed of the random strategy; 0 takes one from the OS.
    pub seed: u64,
    /// Weights per strategy name; strategies not listed use the seed weights.
    #[serde(default)]
    pub weights: BTreeMap<String, Weights>,
    /// Strategy `roi`: margins, seat prices, cold-start optimism.
    #[serde(default)]
    pub roi: RoiSettings,
    /// Adaptive throttling and overload.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// Fairness bounds per broker group and broker, and the ramp-up minimum.
    #[serde(default)]
    pub fairness: FairnessSettings,
    /// Exploration never picks a candidate scoring below `best − band·|best|` unless a setting
    /// names its own band.
    #[serde(default = "default_band")]
    pub exploration_band: f64,
    /// Exploration per strategy name (`specialty`, `ml`, `roi`); none unless listed. A request's
    /// or an experiment arm's setting takes precedence.
    #[serde(default)]
    pub exploration: BTreeMap<String, leadrouter_models::Exploration>,
}

fn default_band() -> f64 {
    0.25
}

/// Adaptive throttling (a broker's effective seats follow its recent SLA compliance) and the
/// overload flag and penalty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Throttle at all.
    pub enabled: bool,
    /// SLA compliance below which a broker loses a seat.
    pub sla_target: f64,
    /// A broker regains a seat once its compliance is at least this.
    pub recover_at: f64,
    /// SLA-measured contacts the recent compliance is taken over (the broker's last ones).
    pub window: u32,
    /// Fewest measured contacts in the window before throttling acts.
    pub min_samples: u32,
    /// Share of its configured seats a broker keeps at least (and always one).
    pub floor: f64,
    /// Minutes between two steps of one broker.
    pub step_minutes: u32,
    /// Utilisation (open ÷ effective seats) above which a broker is flagged overloaded.
    pub overload_utilisation: f64,
    /// Score taken off an overloaded broker at full load, as a share of the best candidate's
    /// score (scaled linearly from the threshold to full); 0 turns the penalty off.
    pub overload_penalty: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sla_target: 0.9,
            recover_at: 0.95,
            window: 20,
            min_samples: 10,
            floor: 0.5,
            step_minutes: 30,
            overload_utilisation: 0.85,
            overload_penalty: 0.1,
        }
    }
}

impl ThrottleConfig {
    fn validate(&self) -> Result<(), ModelError> {
        let unit = [
            ("sla_target", self.sla_target),
            ("recover_at", self.recover_at),
            ("floor", self.floor),
            ("overload_utilisation", self.overload_utilisation),
            ("overload_penalty", self.overload_penalty),
        ];
        for (name, v) in unit {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(bad(&format!("routing.throttle.{name}"), "must be a number from 0 to 1"));
            }
        }
        if self.recover_at < self.sla_target {
            return Err(bad("routing.throttle.recover_at", "must be at least routing.throttle.sla_target"));
        }
        if self.window == 0 || self.window > 1000 {
            return Err(bad("routing.throttle.window", "must be between 1 and 1000"));
        }
        if self.min_samples == 0 || self.min_samples > self.window {
            return Err(bad("routing.throttle.min_samples", "must be between 1 and routing.throttle.window"));
        }
        Ok(())
    }
}

/// Everything the engine needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Storage settings.
    pub storage: StorageConfig,
    /// Routing settings.
    pub routing: RoutingConfig,
    /// Conversion model training settings.
    pub model: ModelConfig,
    /// Embeddings and the vector index.
    pub semantic: SemanticConfig,
}

/// Where text vectors come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    /// all-MiniLM-L6-v2 from `model_dir`; the structured embedding when its files are missing.
    Local,
    /// The structured embedding of lines, state, urgency and value (no text model).
    Structured,
    /// An OpenAI-compatible `/v1/embeddings` endpoint, whose client the server installs after
    /// start-up (this crate knows no URL); semantic terms are off until it does.
    #[serde(rename = "openai")]
    External,
}

/// Embeddings, the vector index and their use in routing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticConfig {
    /// Semantic terms for leads with notes; off: no embedding on the decision path at all.
    pub enabled: bool,
    /// The encoder.
    pub encoder: EncoderKind,
    /// Directory of the local encoder's files (`scripts/fetch-embedding-model` fills it).
    pub model_dir: PathBuf,
    /// Text vectors kept in memory, keyed by a hash of the text.
    pub cache_entries: usize,
    /// Most texts one forward pass takes (concurrent requests are batched up to it).
    pub max_batch: usize,
    /// How long a decision waits for its lead's semantic terms before going without them.
    pub decision_timeout_ms: u64,
    /// Nearest past leads behind the similar-lead evidence.
    pub neighbours: usize,
    /// Most lead vectors kept (the oldest go first).
    pub max_lead_vectors: usize,
    /// Hours between refreshes (re-embedding every broker and recent lead into a new generation);
    /// 0: only on request.
    pub refresh_interval_hours: u64,
    /// A refresh re-embeds leads resolved within this many days.
    pub refresh_lead_days: u64,
    /// With more eligible brokers than this, the pre-rank keeps the `retrieval_k` most similar
    /// by profile vector (leads with text only); 0: never.
    pub retrieval_threshold: usize,
    /// Brokers kept by vector retrieval.
    pub retrieval_k: usize,
}

impl Default for SemanticConfig {
    /// The values of `config/default.toml`.
    fn default() -> Self {
        Self {
            enabled: true,
            encoder: EncoderKind::Local,
            model_dir: PathBuf::from("var/models/all-minilm-l6-v2"),
            cache_entries: 10_000,
            max_batch: 32,
            decision_timeout_ms: 150,
            neighbours: 25,
            max_lead_vectors: 20_000,
            refresh_interval_hours: 24,
            refresh_lead_days: 90,
            retrieval_threshold: 0,
            retrieval_k: 200,
        }
    }
}

impl SemanticConfig {
    /// Checks ranges; errors name the setting.
    pub fn validate(&self) -> Result<(), ModelError> {
        let s = "semantic";
        if !(1..=10_000_000).contains(&self.cache_entries) {
            return Err(bad(&format!("{s}.cache_entries"), "must be between 1 and 10000000"));
        }
        if !(1..=256).contains(&self.max_batch) {
            return Err(bad(&format!("{s}.max_batch"), "must be between 1 and 256"));
        }
        if !(1..=10_000).contains(&self.decision_timeout_ms) {
            return Err(bad(&format!("{s}.decision_timeout_ms"), "must be between 1 and 10000"));
        }
        if !(1..=1000).contains(&self.neighbours) {
            return Err(bad(&format!("{s}.neighbours"), "must be between 1 and 1000"));
        }
        if !(1..=10_000_000).contains(&self.max_lead_vectors) {
            return Err(bad(&format!("{s}.max_lead_vectors"), "must be between 1 and 10000000"));
        }
        if self.refresh_interval_hours > 24 * 365 {
            return Err(bad(&format!("{s}.refresh_interval_hours"), "must be at most 8760"));
        }
        if !(1..=3650).contains(&self.refresh_lead_days) {
            return Err(bad(&format!("{s}.refresh_lead_days"), "must be between 1 and 3650"));
        }
        if self.retrieval_threshold > 0 && self.retrieval_k == 0 {
            return Err(bad(&format!("{s}.retrieval_k"), "must be at least 1 when retrieval_threshold is set"));
        }
        Ok(())
    }
}

impl RoutingConfig {
    /// The number of arbiter threads: `arbiters`, or for 0 one per two cores, at least one.
    pub fn arbiter_threads(&self) -> usize {
        match self.arbiters {
            0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
            n => n,
        }
    }
}

fn bad(field: &str, reason: &str) -> ModelError {
    ModelError::invalid(field, reason)
}

impl EngineConfig {
    /// Checks ranges and names; errors name the setting.
    pub fn validate(&self) -> Result<(), ModelError> {
        let s = &self.storage;
        if s.data_dir.as_os_str().is_empty() {
            return Err(bad("storage.data_dir", "must not be empty"));
        }
        if s.batch_interval_ms == 0 || s.batch_interval_ms > 60_000 {
            return Err(bad("storage.batch_interval_ms", "must be between 1 and 60000"));
        }
        if s.commit_delay_us > MAX_COMMIT_DELAY_US {
            return Err(bad("storage.commit_delay_us", "must be at most 10000 (10 ms); durability = \"batch\" answers before the fsync"));
        }
        if s.segment_bytes < 4096 {
            return Err(bad("storage.segment_bytes", "must be at least 4096"));
        }
        if s.snapshot_interval_seconds == 0 {
            return Err(bad("storage.snapshot_interval_seconds", "must be at least 1"));
        }
        if s.finished_lead_retention_seconds > MAX_RETENTION_SECONDS {
            return Err(bad("storage.finished_lead_retention_seconds", "must be at most 315360000 (ten years)"));
        }
        if s.max_finished_leads == 0 {
            return Err(bad("storage.max_finished_leads", "must be at least 1"));
        }
        let r = &self.routing;
        if r.top_k == 0 || r.top_k > 1024 {
            return Err(bad("routing.top_k", "must be between 1 and 1024"));
        }
        if r.score_deadline_ms == 0 || r.score_deadline_ms > 10_000 {
            return Err(bad("routing.score_deadline_ms", "must be between 1 and 10000"));
        }
        if r.alternatives > 100 {
            return Err(bad("routing.alternatives", "must be at most 100"));
        }
        if r.queue_expiry_seconds == 0 {
            return Err(bad("routing.queue_expiry_seconds", "must be at least 1"));
        }
        if !r.prior_strength.is_finite() || r.prior_strength <= 0.0 {
            return Err(bad("routing.prior_strength", "must be > 0"));
        }
        if r.arbiters > 64 {
            return Err(bad("routing.arbiters", "must be between 0 (one per two cores) and 64"));
        }
        if r.feed_buffer == 0 || r.feed_buffer > 1 << 20 {
            return Err(bad("routing.feed_buffer", "must be between 1 and 1048576"));
        }
        if r.tick_ms < 10 {
            return Err(bad("routing.tick_ms", "must be at least 10"));
        }
        if r.experiment_review_seconds == 0 || r.experiment_review_seconds > 86_400 {
            return Err(bad("routing.experiment_review_seconds", "must be between 1 and 86400"));
        }
        self.model.validate()?;
        self.semantic.validate()?;
        r.roi.validate("routing.roi")?;
        r.throttle.validate()?;
        r.fairness.validate("routing.fairness")?;
        for (name, w) in &r.weights {
            if !Strategy::ALL.iter().any(|s| s.name() == name) {
                let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                return Err(bad(&format!("routing.weights.{name}"), &format!("is not a strategy ({})", names.join(", "))));
            }
            w.validate(&format!("routing.weights.{name}"))?;
        }
        if !(r.exploration_band.is_finite() && r.exploration_band > 0.0 && r.exploration_band <= 10.0) {
            return Err(bad("routing.exploration_band", "must be a number in (0, 10]"));
        }
        for (name, x) in &r.exploration {
            if !Strategy::ALL.iter().any(|s| s.name() == name && s.ranks_by_score()) {
                return Err(bad(&format!("routing.exploration.{name}"), "is not a scored strategy (specialty, ml, roi)"));
            }
            x.validate(&format!("routing.exploration.{name}"))?;
        }
        Ok(())
    }

    /// The configured exploration of `strategy`, its band filled in.
    pub fn exploration(&self, strategy: Strategy) -> Option<leadrouter_models::Exploration> {
        self.routing.exploration.get(strategy.name()).map(|x| x.with_band(self.routing.exploration_band))
    }

    /// The weights for `strategy`.
    pub fn weights(&self, strategy: Strategy) -> Weights {
        self.routing.weights.get(strategy.name()).copied().unwrap_or_default()
    }
}

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Fewest labelled rows needed to train.
    pub min_rows: usize,
    /// Share of the newest rows used for validation.
    pub valid_fraction: f64,
    /// Most epochs.
    pub max_epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Seed.
    pub seed: u64,
    /// Activate every newly trained version, even one that does not beat the active model.
    pub always_activate: bool,
}

impl ModelConfig {
    /// The network's training settings.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            max_epochs: self.max_epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            patience: self.patience,
            seed: self.seed,
            inputs: leadrouter_models::N_FEATURES,
        }
    }

    /// Checks ranges; errors name the setting.
    pub fn validate(&self) -> std::result::Result<(), ModelError> {
        let bad = |f: &str, r: &str| Err(ModelError::invalid(format!("model.{f}"), r));
        if self.min_rows < 10 {
            return bad("min_rows", "must be at least 10");
        }
        if !(0.05..=0.5).contains(&self.valid_fraction) {
            return bad("valid_fraction", "must be between 0.05 and 0.5");
        }
        if self.max_epochs == 0 || self.max_epochs > 10_000 {
            return bad("max_epochs", "must be between 1 and 10000");
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad("batch_size", "must be between 1 and 65536");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return bad("learning_rate", "must be between 0 and 1");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            return bad("weight_decay", "must be between 0 and 1");
        }
        if self.patience == 0 {
            return bad("patience", "must be at least 1");
        }
        Ok(())
    }
}

/// A small, fast configuration for the crate's own tests over `dir`.
#[cfg(test)]
pub(crate) fn test_config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        storage: StorageConfig {
            data_dir: dir.to_path_buf(),
            demo: false,
            durability: Durability::None,
            batch_interval_ms: 5,
            commit_delay_us: 0,
            segment_bytes: 1 << 20,
            snapshot_interval_seconds: 3600,
            finished_lead_retention_seconds: 3600,
            max_finished_leads: 1_000_000,
        },
        semantic: SemanticConfig { encoder: EncoderKind::Structured, ..SemanticConfig::default() },
        routing: RoutingConfig {
            default_strategy: Strategy::Specialty,
            top_k: 32,
            score_deadline_ms: 50,
            alternatives: 3,
            queue_expiry_seconds: 3600,
            prior_strength: 20.0,
            arbiters: 2,
            tick_ms: 3_600_000,
            experiment_review_seconds: 3600,
            feed_buffer: 256,
            seed: 7,
            weights: Default::default(),
            roi: RoiSettings::default(),
            fairness: FairnessSettings::default(),
            throttle: ThrottleConfig::default(),
            exploration_band: 0.25,
            exploration: Default::default(),
        },
        model: ModelConfig {
            min_rows: 50,
            valid_fraction: 0.2,
            max_epochs: 30,
            batch_size: 128,
            learning_rate: 0.003,
            weight_decay: 0.0001,
            patience: 5,
            seed: 17,
            always_activate: false,
        },
    }
}
