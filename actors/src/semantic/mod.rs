//! Semantic matching in the engine: the encoder (local all-MiniLM-L6-v2, the structured
//! embedding, or an encoder the server installs), a bounded cache of text vectors, the vector
//! index, and one worker thread that does every embedding and index search, so no HTTP worker
//! or actor thread ever runs the encoder.
//!
//! The decision path asks [`Semantic::lead`] for a lead with notes: the worker embeds its text
//! (batched with whatever else waits), finds its nearest resolved past leads, and answers within
//! `semantic.decision_timeout_ms` or the decision goes without semantic terms (counted). A lead
//! without notes costs nothing. Broker profile vectors and resolved leads' vectors reach the
//! index from the journal: the snapshotter thread, which follows it, hands them to the worker
//! ([`Semantic::tap`]). A refresh ([`refresh`]) re-embeds everything into a new generation on a
//! background thread and the worker swaps it in at once.

pub mod encoder;
pub mod index;
mod refresh;
mod stats;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use leadrouter_models::semantic::{self as sem, dot, LeadSemantics};
use leadrouter_models::{Broker, LeadData, LineSet, SemanticTerms};
use parking_lot::{Mutex, RwLock};

use crate::config::{EncoderKind, SemanticConfig};
use crate::error::{ActorError, Result};
use crate::metrics::Metrics;
use crate::storage::record::Record;
use crate::storage::state::EngineState;

pub use encoder::{BertEncoder, TextEncoder};
pub use index::{Collection, MemoryIndex, VectorIndex};
pub use stats::{EmbeddingStats, RefreshInfo};

use worker::Job;

/// The file the in-process index is saved to, under the data directory.
pub fn index_file(data_dir: &Path) -> PathBuf {
    data_dir.join("vectors").join("index.bin")
}

/// Which encoder is in use.
#[derive(Clone)]
enum Encoder {
    Text(Arc<dyn TextEncoder>),
    Structured,
    /// Waiting for the server to install one.
    Pending,
}

impl Encoder {
    fn model(&self) -> Option<(String, usize)> {
        match self {
            Self::Text(e) => Some((e.model().to_string(), e.dim())),
            Self::Structured => Some((sem::STRUCTURED_MODEL.to_string(), sem::STRUCTURED_DIM)),
            Self::Pending => None,
        }
    }
}

/// What a vector is made from: text for a text encoder, the structured embedding otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    text: String,
    hash: u64,
    structured: Vec<f32>,
}

impl Source {
    fn new(text: String, structured: Vec<f32>) -> Self {
        Self { hash: text_hash(&text), text, structured }
    }
}

/// A 64-bit hash of a text (the cache key).
pub fn text_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Text vectors by text hash, the oldest dropped beyond the bound.
struct Cache {
    max: usize,
    map: HashMap<u64, Arc<[f32]>>,
    order: VecDeque<u64>,
}

impl Cache {
    fn get(&self, h: u64) -> Option<Arc<[f32]>> {
        self.map.get(&h).cloned()
    }

    fn put(&mut self, h: u64, v: Arc<[f32]>) {
        if self.map.insert(h, v).is_none() {
            self.order.push_back(h);
            while self.map.len() > self.max {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// How long a lead's nearest neighbours are reused for the same text.
const NEIGHBOURS_TTL: Duration = Duration::from_secs(60);

struct Inner {
    cfg: SemanticConfig,
    encoder: RwLock<Encoder>,
    index: Arc<dyn VectorIndex>,
    /// Broker profile vectors by broker id, replaced whole by the worker.
    brokers: RwLock<Arc<HashMap<String, Arc<[f32]>>>>,
    cache: Mutex<Cache>,
    /// Recent answers for a text: reused for `NEIGHBOURS_TTL`.
    recent: Mutex<HashMap<u64, (Instant, Arc<LeadSemantics>)>>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: stats::Stats,
    metrics: Arc<Metrics>,
    file: PathBuf,
    journal_dir: PathBuf,
    refreshing: AtomicBool,
    /// Decisions' texts sent to the worker and not yet taken up.
    waiting: std::sync::atomic::AtomicUsize,
}

/// The semantic service; cheap to clone.
#[derive(Clone)]
pub struct Semantic {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic").field("model", &self.inner.encoder.read().model()).finish()
    }
}

impl Semantic {
    /// Starts the service: loads the encoder (the local one falls back to the structured
    /// embedding, saying so once, when its files are missing), loads the saved index (or
    /// rebuilds it from the journal and `brokers` when it is missing, damaged or from another
    /// encoder), and starts the worker.
    pub fn start(cfg: SemanticConfig, data_dir: &Path, journal_dir: &Path, metrics: Arc<Metrics>, brokers: Vec<Broker>) -> Self {
        let encoder = match cfg.encoder {
            EncoderKind::Local if cfg.enabled => match BertEncoder::load(&cfg.model_dir) {
                Ok(e) => {
                    tracing::info!(dir = %cfg.model_dir.display(), "semantic: local sentence encoder all-MiniLM-L6-v2 loaded");
                    Encoder::Text(Arc::new(e))
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "semantic: the local sentence encoder is not installed (run scripts/fetch-embedding-model); \
                         using the structured embedding of lines, state, urgency and value"
                    );
                    Encoder::Structured
                }
            },
            EncoderKind::Local | EncoderKind::Structured => Encoder::Structured,
            EncoderKind::External => Encoder::Pending,
        };
        let index: Arc<dyn VectorIndex> = Arc::new(MemoryIndex::new(cfg.max_lead_vectors));
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache { max: cfg.cache_entries, map: HashMap::new(), order: VecDeque::new() }),
            cfg,
            encoder: RwLock::new(encoder),
            index,
            brokers: RwLock::new(Arc::new(HashMap::new())),
            recent: Mutex::new(HashMap::new()),
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(None),
            stats: stats::Stats::default(),
            metrics,
            file: index_file(data_dir),
            journal_dir: journal_dir.to_path_buf(),
            refreshing: AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        });
        let s = Self { inner };
        let w = s.clone();
        let handle = std::thread::Builder::new().name("semantic".into()).spawn(move || worker::run(w, rx));
        match handle {
            Ok(h) => *s.inner.worker.lock() = Some(h),
            Err(e) => tracing::error!(error = %e, "semantic: the worker thread did not start; semantic terms are off"),
        }
        if s.inner.cfg.enabled {
            s.load_or_rebuild(brokers);
        }
        s
    }

    fn load_or_rebuild(&self, brokers: Vec<Broker>) {
        let Some((model, dim)) = self.inner.encoder.read().model() else { return };
        match index::load(&self.inner.file) {
            Ok((meta, g)) if meta.model == model && meta.dim == dim => {
                tracing::info!(brokers = g.brokers.len(), leads = g.leads.len(), "semantic: vector index loaded");
                self.send(Job::Swap(Box::new(g), None));
                self.send(Job::Brokers(brokers));
            }
            other => {
                match other {
                    Ok((meta, _)) => tracing::info!(
                        found = %meta.model, model = %model,
                        "semantic: the saved vector index is from another encoder; rebuilding it from the journal and broker profiles"
                    ),
                    Err(ActorError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::info!("semantic: no vector index yet; building it from the journal and broker profiles")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "semantic: the saved vector index is unusable; rebuilding it from the journal and broker profiles")
                    }
                }
                if let Err(e) = self.refresh(brokers) {
                    tracing::warn!(error = %e, "semantic: rebuild did not start");
                }
            }
        }
    }

    /// Installs a text encoder (the server's OpenAI-compatible client). The index is rebuilt
    /// for it in the background.
    pub fn install_encoder(&self, e: Arc<dyn TextEncoder>, brokers: Vec<Broker>) {
        tracing::info!(model = e.model(), dim = e.dim(), "semantic: encoder installed");
        *self.inner.encoder.write() = Encoder::Text(e);
        self.inner.cache.lock().clear();
        self.inner.recent.lock().clear();
        self.load_or_rebuild(brokers);
    }

    fn send(&self, job: Job) -> bool {
        match &*self.inner.tx.lock() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    /// The model name and dimension in use, `None` while an external encoder is awaited.
    pub fn model(&self) -> Option<(String, usize)> {
        self.inner.encoder.read().model()
    }

    /// The lead's semantic inputs for a decision, or `None` when it has no notes, semantic
    /// matching is off, or the worker did not answer in `decision_timeout_ms`.
    pub async fn lead(&self, d: &LeadData) -> Option<Arc<LeadSemantics>> {
        if !self.inner.cfg.enabled {
            return None;
        }
        let text = sem::lead_text(d)?;
        let src = Source::new(text, sem::structured_lead(d));
        if let Some((at, s)) = self.inner.recent.lock().get(&src.hash) {
            if at.elapsed() < NEIGHBOURS_TTL {
                self.inner.metrics.embedding_cache.with_label_values(&["hit"]).inc();
                return Some(s.clone());
            }
        }
        // When the texts already waiting would take longer than the time-out, this one would
        // wait in vain: decide without semantic terms at once.
        let waiting = self.inner.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        let per_text_ms = self.inner.stats.mean_embedding_ms().unwrap_or(0.0);
        if waiting as f64 * per_text_ms > self.inner.cfg.decision_timeout_ms as f64 {
            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            self.inner.metrics.embedding_skipped.inc();
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lines = LineSet::of(&d.insurance_types);
        if !self.send(Job::Lead { src, lines, reply: tx }) {
            return None;
        }
        match tokio::time::timeout(Duration::from_millis(self.inner.cfg.decision_timeout_ms), rx).await {
            Ok(Ok(Ok(s))) => Some(s),
            other => {
                if let Ok(Ok(Err(e))) = other {
                    tracing::warn!(error = %e, "semantic: a lead's text could not be embedded; deciding without semantic terms");
                }
                self.inner.metrics.embedding_skipped.inc();
                None
            }
        }
    }

    /// Each broker's semantic terms for a lead, under the strategy's `weight`.
    pub fn terms(&self, s: &LeadSemantics, brokers: &[&str], weight: f64) -> Vec<SemanticTerms> {
        let mirror = self.inner.brokers.read().clone();
        brokers
            .iter()
            .map(|id| {
                let m = mirror.get(*id).filter(|v| v.len() == s.vector.len()).map_or(0.0, |v| dot(v, &s.vector));
                SemanticTerms::new(m, id, &s.neighbours, weight)
            })
            .collect()
    }

    /// Of the brokers `ids` (the eligible candidates), the positions of the `k` whose profile
    /// vectors are most similar to the lead's (candidate retrieval when there are very many);
    /// a broker without a vector yet counts as similarity 0.
    pub fn nearest_brokers<'a>(&self, s: &LeadSemantics, ids: impl Iterator<Item = &'a str>, k: usize) -> Vec<usize> {
        let mirror = self.inner.brokers.read().clone();
        let mut scored: Vec<(f32, usize)> = ids
            .enumerate()
            .map(|(i, id)| (mirror.get(id).filter(|v| v.len() == s.vector.len()).map_or(0.0, |v| dot(v, &s.vector)), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        scored.truncate(k);
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The retrieval settings: (threshold, k); threshold 0 means off.
    pub fn retrieval(&self) -> (usize, usize) {
        (self.inner.cfg.retrieval_threshold, self.inner.cfg.retrieval_k)
    }

    /// Notes the semantic match of a decision's chosen broker, for the stats' distribution.
    pub fn observe_match(&self, m: f64) {
        self.inner.stats.observe_match(m);
    }

    /// Vectors for texts (the API), through the worker and its cache. Free text needs a text
    /// encoder: the structured embedding embeds leads and brokers only.
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Arc<[f32]>>> {
        if matches!(*self.inner.encoder.read(), Encoder::Structured) {
            return Err(ActorError::Conflict {
                message: "no text encoder is installed: the structured embedding embeds leads and brokers, not free text".into(),
                current_state: None,
            });
        }
        self.encode(texts.into_iter().map(|t| Source::new(t, Vec::new())).collect()).await
    }

    /// Vectors for the leads' texts; a lead without notes is a 4xx naming it. (Structured
    /// embeddings when no text encoder is in use.)
    pub async fn embed_leads(&self, leads: Vec<(String, LeadData)>) -> Result<Vec<Arc<[f32]>>> {
        let mut sources = Vec::with_capacity(leads.len());
        for (i, (id, d)) in leads.iter().enumerate() {
            let text = sem::lead_text(d).ok_or_else(|| {
                leadrouter_models::ModelError::invalid(format!("leadIds[{i}]"), format!("lead '{id}' has no notes to embed"))
            })?;
            sources.push(Source::new(text, sem::structured_lead(d)));
        }
        self.encode(sources).await
    }

    async fn encode(&self, sources: Vec<Source>) -> Result<Vec<Arc<[f32]>>> {
        let stopped = || ActorError::Unavailable("the semantic worker has stopped".into());
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.send(Job::Texts { sources, reply: tx }) {
            return Err(stopped());
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Every broker's profile vector, by broker id.
    pub fn broker_vectors(&self) -> Vec<(String, Arc<[f32]>)> {
        let mut v: Vec<_> = self.inner.brokers.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The service's figures (`GET /api/embeddings/stats`).
    pub fn stats(&self) -> EmbeddingStats {
        let (model, dim) = self.model().unzip();
        let cache_entries = self.inner.cache.lock().map.len();
        self.inner.stats.report(stats::Sizes {
            enabled: self.inner.cfg.enabled,
            encoder: match &*self.inner.encoder.read() {
                Encoder::Text(_) if self.inner.cfg.encoder == EncoderKind::External => "openai",
                Encoder::Text(_) => "local",
                Encoder::Structured => "structured",
                Encoder::Pending => "pending",
            },
            model,
            dimension: dim,
            index: self.inner.index.kind(),
            broker_vectors: self.inner.index.count(Collection::Brokers),
            lead_vectors: self.inner.index.count(Collection::Leads),
            index_bytes: self.inner.index.memory_bytes(),
            cache_entries,
            refreshing: self.inner.refreshing.load(Ordering::Acquire),
        })
    }

    /// Hands the worker what a committed record changes in the index: a broker's profile
    /// (re-embedded when its text changed), a deleted broker, a lead's outcome (its vector, with
    /// the broker and whether it converted). Called by the snapshotter thread after it applies
    /// `rec` to `state`; never waits.
    pub fn tap(&self, rec: &Record, state: &EngineState) {
        if !self.inner.cfg.enabled {
            return;
        }
        match rec {
            Record::BrokerUpserted { broker, .. } => {
                self.send(Job::Brokers(vec![broker.clone()]));
            }
            Record::BrokerDeleted { broker_id, .. } => {
                self.send(Job::BrokerDeleted(broker_id.clone()));
            }
            Record::LeadEvent { lead_id, event, at, .. } => {
                use leadrouter_models::EventKind as E;
                if !matches!(event, E::Converted | E::Lost | E::Closed) {
                    return;
                }
                let Some(lead) = state.leads.get(lead_id) else { return };
                if let Some(job) = worker::outcome_job(lead, *at) {
                    self.send(job);
                }
            }
            _ => {}
        }
    }

    /// Starts a refresh: every broker in `brokers` and every lead resolved within
    /// `refresh_lead_days` (read from the journal) re-embedded into a new generation on a
    /// background thread, then swapped in at once. An error when one is already running.
    pub fn refresh(&self, brokers: Vec<Broker>) -> Result<()> {
        refresh::start(self, brokers)
    }

    /// True when the periodic refresh is due.
    pub fn refresh_due(&self) -> bool {
        let h = self.inner.cfg.refresh_interval_hours;
        h > 0 && self.inner.cfg.enabled && self.inner.stats.since_last_refresh().is_some_and(|d| d >= Duration::from_secs(h * 3600))
    }

    /// Stops the worker after it has saved the index.
    pub fn stop(&self) {
        if let Some(tx) = self.inner.tx.lock().take() {
            let _ = tx.send(Job::Stop);
        }
        if let Some(h) = self.inner.worker.lock().take() {
            let _ = h.join();
        }
    }
}
