//! The vector index: the [`VectorIndex`] trait, and [`MemoryIndex`], the in-process
//! implementation (exact search over contiguous vectors, with payload filters on state and
//! lines), which persists to one checksummed file under the data directory.
//!
//! Two collections: broker profile vectors (one per broker) and lead vectors with their outcome
//! (for similar-lead evidence). A refresh builds a whole new [`Generation`] and swaps it in at
//! once, so searches never see half of one.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use leadrouter_models::semantic::dot;
use leadrouter_models::{LineSet, StateCode};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{ActorError, Result};

/// Which collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    /// Broker profile vectors.
    Brokers,
    /// Vectors of resolved leads.
    Leads,
}

impl Collection {
    /// The collection's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Brokers => "brokers",
            Self::Leads => "leads",
        }
    }
}

/// What is stored beside a vector, for filters and evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// A broker's licensed states, or a lead's one state (packed codes).
    pub states: Vec<u16>,
    /// A broker's licensed lines, or a lead's requested lines.
    pub lines: u8,
    /// A lead's broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_id: Option<String>,
    /// A lead's outcome: converted or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted: Option<bool>,
    /// When a lead was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Hash of the text the vector was made from (re-embed only on change).
    pub text_hash: u64,
}

/// One stored vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Broker or lead id.
    pub id: String,
    /// Unit vector.
    pub vector: Vec<f32>,
    /// Its payload.
    pub payload: Payload,
}

/// Which points a search may return.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Filter {
    /// The point's states must include this one.
    pub state: Option<StateCode>,
    /// The point's lines must include all of these.
    pub lines_all: LineSet,
    /// The point's lines must share at least one of these (empty: no condition).
    pub lines_any: LineSet,
}

impl Filter {
    fn accepts(&self, p: &Payload) -> bool {
        if let Some(s) = self.state {
            if !p.states.contains(&s.0) {
                return false;
            }
        }
        LineSet(p.lines).contains_all(self.lines_all) && (self.lines_any.is_empty() || p.lines & self.lines_any.0 != 0)
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The point's id.
    pub id: String,
    /// Cosine similarity to the query.
    pub score: f32,
    /// The point's payload.
    pub payload: Payload,
}

/// A vector index with two collections.
pub trait VectorIndex: Send + Sync {
    /// `memory` or `qdrant`.
    fn kind(&self) -> &'static str;
    /// Adds or replaces points.
    fn upsert(&self, c: Collection, points: Vec<Point>) -> Result<()>;
    /// Removes a point (no error when absent).
    fn delete(&self, c: Collection, id: &str) -> Result<()>;
    /// The `k` points most similar to `query` that pass `filter`, best first.
    fn search(&self, c: Collection, query: &[f32], filter: &Filter, k: usize) -> Result<Vec<Hit>>;
    /// Points in a collection.
    fn count(&self, c: Collection) -> usize;
    /// Replaces both collections at once (a refresh).
    fn swap(&self, generation: Generation) -> Result<()>;
    /// Bytes the vectors and payloads take, roughly.
    fn memory_bytes(&self) -> usize;
    /// The text hash stored with one point, if it is there (re-embed only what changed).
    fn text_hash(&self, c: Collection, id: &str) -> Option<u64>;
    /// A copy of both collections to save under the data directory, for an index that does not
    /// persist itself.
    fn snapshot(&self) -> Option<Generation>;
}

/// One collection's points, the vectors in one contiguous buffer.
#[derive(Clone, Debug, Default)]
pub struct Store {
    dim: usize,
    ids: Vec<String>,
    slot: HashMap<String, usize>,
    vectors: Vec<f32>,
    payloads: Vec<Payload>,
    /// Insertion order, for evicting the oldest when bounded.
    order: VecDeque<String>,
}

impl Store {
    fn upsert(&mut self, p: Point) {
        if self.dim == 0 {
            self.dim = p.vector.len();
        }
        debug_assert_eq!(p.vector.len(), self.dim);
        match self.slot.get(&p.id) {
            Some(&i) => {
                self.vectors[i * self.dim..(i + 1) * self.dim].copy_from_slice(&p.vector);
                self.payloads[i] = p.payload;
            }
            None => {
                self.slot.insert(p.id.clone(), self.ids.len());
                self.order.push_back(p.id.clone());
                self.ids.push(p.id);
                self.vectors.extend_from_slice(&p.vector);
                self.payloads.push(p.payload);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.slot.remove(id) else { return };
        let last = self.ids.len() - 1;
        if i != last {
            self.ids.swap(i, last);
            self.payloads.swap(i, last);
            let (a, b) = self.vectors.split_at_mut(last * self.dim);
            a[i * self.dim..(i + 1) * self.dim].copy_from_slice(&b[..self.dim]);
            self.slot.insert(self.ids[i].clone(), i);
        }
        self.ids.pop();
        self.payloads.pop();
        self.vectors.truncate(last * self.dim);
    }

    /// Drops the oldest points until at most `max` remain.
    fn bound(&mut self, max: usize) {
        while self.ids.len() > max {
            match self.order.pop_front() {
                Some(id) => self.remove(&id),
                None => break,
            }
        }
        if self.order.len() > 2 * max.max(16) {
            // Ids removed or replaced linger in `order`; drop them now and then.
            let slot = &self.slot;
            self.order.retain(|id| slot.contains_key(id));
        }
    }

    fn search(&self, query: &[f32], filter: &Filter, k: usize) -> Vec<Hit> {
        if k == 0 || self.dim != query.len() {
            return Vec::new();
        }
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, p) in self.payloads.iter().enumerate() {
            if !filter.accepts(p) {
                continue;
            }
            let s = dot(query, &self.vectors[i * self.dim..(i + 1) * self.dim]);
            if top.len() < k || s > top[top.len() - 1].0 {
                let at = top.partition_point(|t| t.0 >= s);
                top.insert(at, (s, i));
                top.truncate(k);
            }
        }
        top.into_iter().map(|(s, i)| Hit { id: self.ids[i].clone(), score: s, payload: self.payloads[i].clone() }).collect()
    }

    fn bytes(&self) -> usize {
        self.vectors.len() * 4 + self.ids.iter().map(|i| i.len() + 64).sum::<usize>()
    }

    /// Every point, in slot order.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        self.ids.iter().enumerate().map(|(i, id)| Point {
            id: id.clone(),
            vector: self.vectors[i * self.dim..(i + 1) * self.dim].to_vec(),
            payload: self.payloads[i].clone(),
        })
    }

    /// Points stored.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Both collections, as built by a refresh or loaded from disk.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    /// Broker profile vectors.
    pub brokers: Store,
    /// Resolved leads' vectors.
    pub leads: Store,
}

impl Generation {
    /// Adds points to a collection.
    pub fn extend(&mut self, c: Collection, points: impl IntoIterator<Item = Point>) {
        let s = self.store_mut(c);
        points.into_iter().for_each(|p| s.upsert(p));
    }

    fn store(&self, c: Collection) -> &Store {
        match c {
            Collection::Brokers => &self.brokers,
            Collection::Leads => &self.leads,
        }
    }

    fn store_mut(&mut self, c: Collection) -> &mut Store {
        match c {
            Collection::Brokers => &mut self.brokers,
            Collection::Leads => &mut self.leads,
        }
    }
}

/// The in-process index: exact search under a read lock. Lead vectors are bounded: beyond
/// `max_leads` the oldest go first.
pub struct MemoryIndex {
    gen: RwLock<Generation>,
    max_leads: usize,
}

impl MemoryIndex {
    /// An empty index keeping at most `max_leads` lead vectors.
    pub fn new(max_leads: usize) -> Self {
        Self { gen: RwLock::new(Generation::default()), max_leads }
    }

    /// A copy of both collections (for saving).
    pub fn generation(&self) -> Generation {
        self.gen.read().clone()
    }
}

impl VectorIndex for MemoryIndex {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn upsert(&self, c: Collection, points: Vec<Point>) -> Result<()> {
        let mut g = self.gen.write();
        let s = g.store_mut(c);
        for p in points {
            if s.dim != 0 && p.vector.len() != s.dim {
                return Err(ActorError::Embedding(format!(
                    "a vector of dimension {} for collection {} of dimension {}",
                    p.vector.len(),
                    c.name(),
                    s.dim
                )));
            }
            s.upsert(p);
        }
        if c == Collection::Leads {
            s.bound(self.max_leads);
        }
        Ok(())
    }

    fn delete(&self, c: Collection, id: &str) -> Result<()> {
        self.gen.write().store_mut(c).remove(id);
        Ok(())
    }

    fn search(&self, c: Collection, query: &[f32], filter: &Filter, k: usize) -> Result<Vec<Hit>> {
        Ok(self.gen.read().store(c).search(query, filter, k))
    }

    fn count(&self, c: Collection) -> usize {
        self.gen.read().store(c).len()
    }

    fn swap(&self, mut generation: Generation) -> Result<()> {
        generation.leads.bound(self.max_leads);
        *self.gen.write() = generation;
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        let g = self.gen.read();
        g.brokers.bytes() + g.leads.bytes()
    }

    fn snapshot(&self) -> Option<Generation> {
        Some(self.generation())
    }

    fn text_hash(&self, c: Collection, id: &str) -> Option<u64> {
        let g = self.gen.read();
        let s = g.store(c);
        s.slot.get(id).map(|&i| s.payloads[i].text_hash)
    }
}

// ----- the file -----------------------------------------------------------------------------

const MAGIC: &[u8; 8] = b"LRVECS01";

/// What the file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The encoder the vectors came from.
    pub model: String,
    /// Their dimension.
    pub dim: usize,
    /// When it was written.
    pub written_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    meta: FileMeta,
    brokers: Vec<(String, Payload)>,
    leads: Vec<(String, Payload)>,
}

/// Writes both collections to `path` (through a temporary file and a rename, so a crash
/// leaves the old file or the new one): magic, JSON length, JSON (meta, ids, payloads), the
/// vectors as little-endian f32, CRC-32 of everything before it.
pub fn save(path: &Path, meta: &FileMeta, g: &Generation) -> Result<()> {
    let body = FileBody {
        meta: meta.clone(),
        brokers: g.brokers.ids.iter().cloned().zip(g.brokers.payloads.iter().cloned()).collect(),
        leads: g.leads.ids.iter().cloned().zip(g.leads.payloads.iter().cloned()).collect(),
    };
    let json = serde_json::to_vec(&body)?;
    let mut buf = Vec::with_capacity(16 + json.len() + 4 * (g.brokers.vectors.len() + g.leads.vectors.len()) + 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(json.len() as u64).to_le_bytes());
    buf.extend_from_slice(&json);
    for v in g.brokers.vectors.iter().chain(&g.leads.vectors) {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a file [`save`] wrote; any damage is an error naming what is wrong.
pub fn load(path: &Path) -> Result<(FileMeta, Generation)> {
    let buf = std::fs::read(path)?;
    let bad = |why: &str| ActorError::Embedding(format!("vector index {}: {why}", path.display()));
    if buf.len() < 20 || &buf[..8] != MAGIC {
        return Err(bad("not a vector index file"));
    }
    let (content, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(content) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(bad("checksum mismatch"));
    }
    let len = u64::from_le_bytes(content[8..16].try_into().expect("8 bytes")) as usize;
    let json = content.get(16..16usize.saturating_add(len)).ok_or_else(|| bad("truncated"))?;
    let body: FileBody = serde_json::from_slice(json).map_err(|e| bad(&format!("header: {e}")))?;
    let floats = &content[16 + len..];
    let dim = body.meta.dim;
    let expected = (body.brokers.len() + body.leads.len()) * dim * 4;
    if dim == 0 || floats.len() != expected {
        return Err(bad(&format!("{} bytes of vectors, expected {expected}", floats.len())));
    }
    let mut values = floats.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
    let mut g = Generation::default();
    for (c, points) in [(Collection::Brokers, body.brokers), (Collection::Leads, body.leads)] {
        let s = g.store_mut(c);
        s.dim = dim;
        for (id, payload) in points {
            let vector: Vec<f32> = values.by_ref().take(dim).collect();
            s.upsert(Point { id, vector, payload });
        }
    }
    Ok((body.meta, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadrouter_models::InsuranceLine;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut r = leadrouter_models::rng::SplitMix64::new(seed);
        let mut v: Vec<f32> = (0..dim).map(|_| r.next_f64() as f32 - 0.5).collect();
        leadrouter_models::semantic::normalize(&mut v);
        v
    }

    fn point(id: &str, seed: u64, state: &str, lines: &[InsuranceLine]) -> Point {
        Point {
            id: id.into(),
            vector: unit(seed, 16),
            payload: Payload { states: vec![StateCode::of(state).0], lines: LineSet::of(lines).0, ..Payload::default() },
        }
    }

    #[test]
    fn search_is_exact_and_filtered() {
        let idx = MemoryIndex::new(100);
        let points: Vec<Point> =
            (0..200).map(|i| point(&format!("b{i}"), i, if i % 2 == 0 { "TX" } else { "CA" }, &[InsuranceLine::Auto])).collect();
        idx.upsert(Collection::Brokers, points.clone()).unwrap();
        let q = unit(7, 16);
        let f = Filter { state: Some(StateCode::of("TX")), ..Filter::default() };
        let hits = idx.search(Collection::Brokers, &q, &f, 5).unwrap();
        // Brute force over the TX points.
        let mut want: Vec<(f32, &str)> =
            points.iter().filter(|p| p.payload.states[0] == StateCode::of("TX").0).map(|p| (dot(&q, &p.vector), p.id.as_str())).collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), want[..5].iter().map(|w| w.1).collect::<Vec<_>>());
        let none = Filter { lines_all: LineSet::of(&[InsuranceLine::Life]), ..Filter::default() };
        assert!(idx.search(Collection::Brokers, &q, &none, 5).unwrap().is_empty());
        assert!(idx.search(Collection::Brokers, &[1.0; 3], &Filter::default(), 5).unwrap().is_empty(), "wrong dimension");
    }

    #[test]
    fn removal_keeps_every_other_point_findable_and_leads_are_bounded() {
        let idx = MemoryIndex::new(10);
        idx.upsert(Collection::Leads, (0..25).map(|i| point(&format!("l{i}"), i, "TX", &[InsuranceLine::Auto])).collect()).unwrap();
        assert_eq!(idx.count(Collection::Leads), 10, "the oldest 15 went");
        assert!((0..25).all(|i| idx.text_hash(Collection::Leads, &format!("l{i}")).is_some() == (i >= 15)));
        idx.delete(Collection::Leads, "l17").unwrap();
        for i in (15..25).filter(|&i| i != 17) {
            let hits = idx.search(Collection::Leads, &unit(i, 16), &Filter::default(), 1).unwrap();
            assert_eq!(hits[0].id, format!("l{i}"));
            assert!((hits[0].score - 1.0).abs() < 1e-5);
        }
        assert!(idx.upsert(Collection::Leads, vec![Point { vector: vec![1.0; 3], ..point("x", 1, "TX", &[]) }]).is_err());
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors/index.bin");
        let mut g = Generation::default();
        g.extend(Collection::Brokers, (0..5).map(|i| point(&format!("b{i}"), i, "TX", &[InsuranceLine::Home])));
        g.extend(Collection::Leads, (0..7).map(|i| point(&format!("l{i}"), 100 + i, "CA", &[InsuranceLine::Auto])));
        let meta = FileMeta { model: "m".into(), dim: 16, written_at: Utc::now() };
        save(&path, &meta, &g).unwrap();
        let (m, back) = load(&path).unwrap();
        assert_eq!(m, meta);
        assert_eq!(back.brokers.points().collect::<Vec<_>>(), g.brokers.points().collect::<Vec<_>>());
        assert_eq!(back.leads.points().collect::<Vec<_>>(), g.leads.points().collect::<Vec<_>>());
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("checksum"));
        std::fs::write(&path, b"short").unwrap();
        assert!(load(&path).is_err());
    }
}
