//! The semantic service's running figures: cache hits, encoder time, refreshes, and the
//! distribution of the chosen brokers' semantic-match scores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One finished refresh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshInfo {
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// Broker profiles embedded.
    pub brokers: usize,
    /// Resolved leads embedded.
    pub leads: usize,
}

/// Buckets of the semantic-match histogram: [-1, 1] in steps of 0.1.
const BUCKETS: usize = 20;

/// What `GET /api/embeddings/stats` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingStats {
    /// Semantic terms on (`semantic.enabled`).
    pub enabled: bool,
    /// `local`, `structured`, `openai`, or `pending` (an OpenAI-compatible encoder not installed yet).
    pub encoder: String,
    /// The model's name.
    pub model: Option<String>,
    /// The vectors' dimension.
    pub dimension: Option<usize>,
    /// `memory` (in-process, exact search).
    pub index: String,
    /// Vectors per collection.
    pub collections: Collections,
    /// Bytes the index holds, roughly.
    pub index_bytes: usize,
    /// The last refresh that finished.
    pub last_refresh: Option<RefreshInfo>,
    /// Why the last refresh failed, when it did.
    pub last_refresh_error: Option<String>,
    /// A refresh is running.
    pub refreshing: bool,
    /// Text-vector cache.
    pub cache: CacheStats,
    /// Texts the encoder embedded since start-up.
    pub texts_embedded: u64,
    /// Mean encoder time per text, in milliseconds.
    pub mean_embedding_ms: Option<f64>,
    /// Semantic match of the chosen broker, over decisions with text since start-up.
    pub semantic_match: MatchDistribution,
}

/// Vectors per collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Collections {
    /// Broker profile vectors.
    pub brokers: usize,
    /// Resolved leads' vectors.
    pub leads: usize,
}

/// The cache's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Vectors held.
    pub entries: usize,
    /// Lookups that found their text.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// hits / (hits + misses), when there was a lookup.
    pub hit_rate: Option<f64>,
}

/// A histogram of semantic-match scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchDistribution {
    /// Decisions counted.
    pub count: u64,
    /// Their mean score.
    pub mean: Option<f64>,
    /// Lower edges of the buckets (-1.0, -0.9, ..., 0.9), each 0.1 wide.
    pub lower_edges: Vec<f64>,
    /// Decisions per bucket.
    pub counts: Vec<u64>,
}

/// Sizes the service knows and the stats do not.
pub(crate) struct Sizes {
    pub(crate) enabled: bool,
    pub(crate) encoder: &'static str,
    pub(crate) model: Option<String>,
    pub(crate) dimension: Option<usize>,
    pub(crate) index: &'static str,
    pub(crate) broker_vectors: usize,
    pub(crate) lead_vectors: usize,
    pub(crate) index_bytes: usize,
    pub(crate) cache_entries: usize,
    pub(crate) refreshing: bool,
}

#[derive(Default)]
pub(crate) struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    embedded: AtomicU64,
    embed_nanos: AtomicU64,
    matches: Mutex<([u64; BUCKETS], f64, u64)>,
    refresh: Mutex<(Option<RefreshInfo>, Option<String>, Option<Instant>)>,
}

impl Stats {
    pub(crate) fn count_cache(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
    }

    pub(crate) fn count_embedded(&self, texts: u64, took: Duration) {
        self.embedded.fetch_add(texts, Ordering::Relaxed);
        self.embed_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Mean encoder time per text so far, in milliseconds.
    pub(crate) fn mean_embedding_ms(&self) -> Option<f64> {
        let n = self.embedded.load(Ordering::Relaxed);
        (n > 0).then(|| self.embed_nanos.load(Ordering::Relaxed) as f64 / 1e6 / n as f64)
    }

    pub(crate) fn observe_match(&self, m: f64) {
        let b = (((m.clamp(-1.0, 1.0) + 1.0) * 10.0).floor() as usize).min(BUCKETS - 1);
        let mut g = self.matches.lock();
        g.0[b] += 1;
        g.1 += m;
        g.2 += 1;
    }

    pub(crate) fn refreshed(&self, info: RefreshInfo) {
        *self.refresh.lock() = (Some(info), None, Some(Instant::now()));
    }

    pub(crate) fn refresh_failed(&self, why: String) {
        let mut g = self.refresh.lock();
        g.1 = Some(why);
        g.2 = Some(Instant::now());
    }

    /// Time since the last refresh ended (or since start-up, counted from the first call).
    pub(crate) fn since_last_refresh(&self) -> Option<Duration> {
        let mut g = self.refresh.lock();
        Some(g.2.get_or_insert_with(Instant::now).elapsed())
    }

    pub(crate) fn report(&self, s: Sizes) -> EmbeddingStats {
        let (hits, misses) = (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed));
        let embedded = self.embedded.load(Ordering::Relaxed);
        let nanos = self.embed_nanos.load(Ordering::Relaxed);
        let (counts, sum, n) = *self.matches.lock();
        let (last, err, _) = self.refresh.lock().clone();
        EmbeddingStats {
            enabled: s.enabled,
            encoder: s.encoder.into(),
            model: s.model,
            dimension: s.dimension,
            index: s.index.into(),
            collections: Collections { brokers: s.broker_vectors, leads: s.lead_vectors },
            index_bytes: s.index_bytes,
            last_refresh: last,
            last_refresh_error: err,
            refreshing: s.refreshing,
            cache: CacheStats {
                entries: s.cache_entries,
                hits,
                misses,
                hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            },
            texts_embedded: embedded,
            mean_embedding_ms: (embedded > 0).then(|| nanos as f64 / 1e6 / embedded as f64),
            semantic_match: MatchDistribution {
                count: n,
                mean: (n > 0).then(|| sum / n as f64),
                lower_edges: (0..BUCKETS).map(|i| (i as f64 - 10.0) / 10.0).collect(),
                counts: counts.to_vec(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_buckets_cover_minus_one_to_one() {
        let s = Stats::default();
        for m in [-1.0, -0.95, 0.0, 0.05, 0.55, 1.0, 3.0] {
            s.observe_match(m);
        }
        let r = s.report(Sizes {
            enabled: true,
            encoder: "structured",
            model: None,
            dimension: None,
            index: "memory",
            broker_vectors: 0,
            lead_vectors: 0,
            index_bytes: 0,
            cache_entries: 0,
            refreshing: false,
        });
        let d = r.semantic_match;
        assert_eq!(d.count, 7);
        assert_eq!((d.counts[0], d.counts[10], d.counts[15], d.counts[19]), (2, 2, 1, 2));
        assert_eq!(d.lower_edges[10], 0.0);
        assert_eq!(r.cache.hit_rate, None);
    }
}
