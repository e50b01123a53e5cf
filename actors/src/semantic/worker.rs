//! The semantic worker thread: every embedding and index operation runs here, in batches.
//! Requests someone waits for (a decision's lead, the API's texts) go before background work
//! (brokers' profiles, resolved leads); texts that miss the cache are encoded in one forward
//! pass per batch.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leadrouter_models::semantic::{self as sem, LeadSemantics, Neighbour};
use leadrouter_models::{Broker, EventKind, LeadData, LineSet, StateCode};

use super::index::{self, Collection, FileMeta, Filter, Generation, Payload, Point};
use super::{Encoder, Semantic, Source};
use crate::error::{ActorError, Result};
use crate::storage::state::LeadRecord;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T>>;

/// Work for the worker.
pub(crate) enum Job {
    /// A decision's lead: its vector and nearest resolved leads sharing one of `lines`.
    Lead { src: Source, lines: LineSet, reply: Reply<Arc<LeadSemantics>> },
    /// Vectors for texts (the API).
    Texts { sources: Vec<Source>, reply: Reply<Vec<Arc<[f32]>>> },
    /// Brokers whose profiles may have changed.
    Brokers(Vec<Broker>),
    /// A broker was deleted.
    BrokerDeleted(String),
    /// A lead reached an outcome.
    Outcome(Box<Point>, Source),
    /// A refresh started: keep what changes from now on, to apply again after the swap.
    RefreshStarted,
    /// Swap in a new generation (from a refresh, with its report, or loaded at start-up).
    Swap(Box<Generation>, Option<super::RefreshInfo>),
    /// A refresh failed.
    RefreshFailed(String),
    /// Save the index and end.
    Stop,
}

/// A resolved lead's source and payload: with `broker_id`, whether it `converted`, when it
/// ended; `None` without notes.
pub(crate) fn lead_point(d: &LeadData, broker_id: String, converted: bool, at: DateTime<Utc>) -> Option<(Source, Payload)> {
    let src = Source::new(sem::lead_text(d)?, sem::structured_lead(d));
    let payload = Payload {
        states: vec![StateCode::of(&d.state).0],
        lines: LineSet::of(&d.insurance_types).0,
        broker_id: Some(broker_id),
        converted: Some(converted),
        at: Some(at),
        text_hash: src.hash,
    };
    Some((src, payload))
}

/// The outcome point of a resolved lead with notes, or `None` without notes or a broker.
pub(crate) fn outcome_job(lead: &LeadRecord, at: DateTime<Utc>) -> Option<Job> {
    let converted = lead.events.iter().any(|e| e.event == EventKind::Converted);
    let (src, payload) = lead_point(&lead.request.lead_data, lead.broker_id.clone()?, converted, at)?;
    Some(Job::Outcome(Box::new(Point { id: lead.lead_id.clone(), vector: Vec::new(), payload }), src))
}

/// A broker's profile source and payload.
pub(crate) fn broker_point(b: &Broker) -> (Source, Payload) {
    let text = sem::broker_text(b);
    let mut lines = LineSet::default();
    let mut states = Vec::new();
    for l in &b.licenses {
        lines = LineSet(lines.0 | LineSet::of(&l.lines).0);
        let s = StateCode::of(&l.state).0;
        if !states.contains(&s) {
            states.push(s);
        }
    }
    let src = Source::new(text, sem::structured_broker(b));
    let payload = Payload { states, lines: lines.0, text_hash: src.hash, ..Payload::default() };
    (src, payload)
}

/// Vectors for `sources` with `encoder`, from the cache where it has them; the rest in forward
/// passes of at most `max_batch`. Records the time per text.
pub(crate) fn vectors(s: &Semantic, encoder: &Encoder, sources: &[&Source]) -> Result<Vec<Arc<[f32]>>> {
    let inner = &s.inner;
    let mut out: Vec<Option<Arc<[f32]>>> = Vec::with_capacity(sources.len());
    let mut missing: Vec<usize> = Vec::new();
    {
        let cache = inner.cache.lock();
        for (i, src) in sources.iter().enumerate() {
            let hit = cache.get(src.hash);
            if hit.is_none() {
                missing.push(i);
            }
            out.push(hit);
        }
    }
    let hits = sources.len() - missing.len();
    inner.metrics.embedding_cache.with_label_values(&["hit"]).inc_by(hits as u64);
    inner.metrics.embedding_cache.with_label_values(&["miss"]).inc_by(missing.len() as u64);
    inner.stats.count_cache(hits as u64, missing.len() as u64);
    for chunk in missing.chunks(inner.cfg.max_batch.max(1)) {
        let started = Instant::now();
        let made: Vec<Vec<f32>> = match encoder {
            Encoder::Text(e) => {
                let texts: Vec<&str> = chunk.iter().map(|&i| sources[i].text.as_str()).collect();
                let v = e.encode(&texts)?;
                if v.len() != texts.len() {
                    return Err(ActorError::Embedding(format!("the encoder answered {} vectors for {} texts", v.len(), texts.len())));
                }
                if let Some(bad) = v.iter().find(|x| x.len() != e.dim()) {
                    return Err(ActorError::Embedding(format!("the encoder answered dimension {}, expected {}", bad.len(), e.dim())));
                }
                v
            }
            Encoder::Structured => chunk.iter().map(|&i| sources[i].structured.clone()).collect(),
            Encoder::Pending => return Err(ActorError::Unavailable("no encoder is installed yet".into())),
        };
        let per = started.elapsed().as_secs_f64() / chunk.len() as f64;
        for _ in chunk {
            inner.metrics.embedding_seconds.observe(per);
        }
        inner.stats.count_embedded(chunk.len() as u64, started.elapsed());
        let mut cache = inner.cache.lock();
        for (&i, v) in chunk.iter().zip(made) {
            let v: Arc<[f32]> = v.into();
            cache.put(sources[i].hash, v.clone());
            out[i] = Some(v);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("every source has a vector")).collect())
}

fn neighbours(s: &Semantic, v: &[f32], lines: LineSet) -> Vec<Neighbour> {
    let filter = Filter { lines_any: lines, ..Filter::default() };
    match s.inner.index.search(Collection::Leads, v, &filter, s.inner.cfg.neighbours) {
        Ok(hits) => hits
            .into_iter()
            .filter_map(|h| {
                Some(Neighbour { broker_id: h.payload.broker_id?, converted: h.payload.converted?, lead_id: h.id, similarity: h.score })
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "semantic: similar-lead search failed");
            Vec::new()
        }
    }
}

/// What a refresh must apply again after its swap: what changed while it ran.
#[derive(Default)]
struct SinceRefresh {
    brokers: Vec<Broker>,
    deleted: Vec<String>,
    outcomes: Vec<(Point, Source)>,
}

struct Worker {
    s: Semantic,
    urgent: VecDeque<Job>,
    background: VecDeque<Job>,
    since_refresh: Option<SinceRefresh>,
    dirty: bool,
    last_save: Instant,
    stop: bool,
}

const SAVE_EVERY: Duration = Duration::from_secs(600);

pub(crate) fn run(s: Semantic, rx: mpsc::Receiver<Job>) {
    let mut w = Worker {
        s,
        urgent: VecDeque::new(),
        background: VecDeque::new(),
        since_refresh: None,
        dirty: false,
        last_save: Instant::now(),
        stop: false,
    };
    loop {
        if w.urgent.is_empty() && w.background.is_empty() {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(j) => w.queue(j),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => w.stop = true,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(j) => w.queue(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    w.stop = true;
                    break;
                }
            }
        }
        let stop = w.stop;
        w.urgent_batch();
        w.background_batch();
        if w.dirty && w.last_save.elapsed() >= SAVE_EVERY {
            w.save();
        }
        if stop {
            w.urgent_batch();
            while !w.background.is_empty() {
                w.background_batch();
            }
            w.save();
            break;
        }
    }
}

impl Worker {
    fn queue(&mut self, j: Job) {
        match j {
            Job::Lead { .. } | Job::Texts { .. } => self.urgent.push_back(j),
            Job::Stop => self.stop = true,
            other => self.background.push_back(other),
        }
    }

    fn urgent_batch(&mut self) {
        // A decision that stopped waiting (its time-out passed) needs no vector any more.
        let jobs: Vec<Job> = self.urgent.drain(..).filter(|j| !matches!(j, Job::Lead { reply, .. } if reply.is_closed())).collect();
        self.s.inner.waiting.store(0, std::sync::atomic::Ordering::Relaxed);
        if jobs.is_empty() {
            return;
        }
        let encoder = self.s.inner.encoder.read().clone();
        // Every text of the batch in as few forward passes as the batch size allows.
        let sources: Vec<&Source> = jobs
            .iter()
            .flat_map(|j| match j {
                Job::Lead { src, .. } => std::slice::from_ref(src).iter().collect::<Vec<_>>(),
                Job::Texts { sources, .. } => sources.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        let result = vectors(&self.s, &encoder, &sources);
        let mut at = 0usize;
        for j in jobs {
            match j {
                Job::Lead { src, lines, reply } => {
                    let r = result.as_ref().map_err(clone_err).map(|v| v[at].clone());
                    at += 1;
                    let r = r.map(|vector| {
                        let s = Arc::new(LeadSemantics { neighbours: neighbours(&self.s, &vector, lines), vector });
                        let mut recent = self.s.inner.recent.lock();
                        if recent.len() >= self.s.inner.cfg.cache_entries {
                            recent.retain(|_, (t, _)| t.elapsed() < super::NEIGHBOURS_TTL);
                            if recent.len() >= self.s.inner.cfg.cache_entries {
                                recent.clear();
                            }
                        }
                        recent.insert(src.hash, (Instant::now(), s.clone()));
                        s
                    });
                    let _ = reply.send(r);
                }
                Job::Texts { sources, reply } => {
                    let n = sources.len();
                    let r = result.as_ref().map_err(clone_err).map(|v| v[at..at + n].to_vec());
                    at += n;
                    let _ = reply.send(r);
                }
                _ => {}
            }
        }
    }

    /// One background job (a batch of brokers counts as one), so urgent work waits at most for
    /// one forward pass.
    fn background_batch(&mut self) {
        let Some(j) = self.background.pop_front() else { return };
        match j {
            Job::Brokers(list) => {
                if let Some(since) = &mut self.since_refresh {
                    since.brokers.extend(list.iter().cloned());
                }
                let max = self.s.inner.cfg.max_batch.max(1);
                let mut list = list;
                if list.len() > max {
                    // The rest goes behind whatever else is waiting.
                    let rest = list.split_off(max);
                    self.background.push_back(Job::Brokers(rest));
                }
                self.embed_brokers(&list);
            }
            Job::BrokerDeleted(id) => {
                if let Some(since) = &mut self.since_refresh {
                    since.deleted.push(id.clone());
                }
                let _ = self.s.inner.index.delete(Collection::Brokers, &id);
                let mut m = (**self.s.inner.brokers.read()).clone();
                m.remove(&id);
                *self.s.inner.brokers.write() = Arc::new(m);
                self.dirty = true;
            }
            Job::Outcome(point, src) => {
                if let Some(since) = &mut self.since_refresh {
                    since.outcomes.push(((*point).clone(), src.clone()));
                }
                self.add_outcome(*point, &src);
            }
            Job::RefreshStarted => self.since_refresh = Some(SinceRefresh::default()),
            Job::Swap(g, info) => self.swap(*g, info),
            Job::RefreshFailed(why) => {
                self.since_refresh = None;
                self.s.inner.stats.refresh_failed(why);
                self.s.inner.refreshing.store(false, std::sync::atomic::Ordering::Release);
            }
            Job::Lead { .. } | Job::Texts { .. } | Job::Stop => {}
        }
    }

    fn embed_brokers(&mut self, list: &[Broker]) {
        let index = &self.s.inner.index;
        let mirror = self.s.inner.brokers.read().clone();
        let todo: Vec<(String, Source, Payload)> = list
            .iter()
            .map(|b| {
                let (src, payload) = broker_point(b);
                (b.id.clone(), src, payload)
            })
            .filter(|(id, src, _)| !(index.text_hash(Collection::Brokers, id) == Some(src.hash) && mirror.contains_key(id)))
            .collect();
        if todo.is_empty() {
            return;
        }
        let encoder = self.s.inner.encoder.read().clone();
        let sources: Vec<&Source> = todo.iter().map(|t| &t.1).collect();
        match vectors(&self.s, &encoder, &sources) {
            Ok(v) => {
                let points: Vec<Point> =
                    todo.iter().zip(&v).map(|((id, _, p), v)| Point { id: id.clone(), vector: v.to_vec(), payload: p.clone() }).collect();
                if let Err(e) = self.s.inner.index.upsert(Collection::Brokers, points) {
                    tracing::warn!(error = %e, "semantic: broker vectors not stored");
                    return;
                }
                let mut m = (*mirror).clone();
                for ((id, _, _), v) in todo.into_iter().zip(v) {
                    m.insert(id, v);
                }
                *self.s.inner.brokers.write() = Arc::new(m);
                self.dirty = true;
            }
            Err(e) => tracing::warn!(error = %e, "semantic: broker profiles not embedded"),
        }
    }

    fn add_outcome(&mut self, mut point: Point, src: &Source) {
        let encoder = self.s.inner.encoder.read().clone();
        match vectors(&self.s, &encoder, &[src]) {
            Ok(v) => {
                point.vector = v[0].to_vec();
                match self.s.inner.index.upsert(Collection::Leads, vec![point]) {
                    Ok(()) => self.dirty = true,
                    Err(e) => tracing::warn!(error = %e, "semantic: lead vector not stored"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "semantic: a resolved lead was not embedded"),
        }
    }

    fn swap(&mut self, g: Generation, info: Option<super::RefreshInfo>) {
        let mirror: HashMap<String, Arc<[f32]>> = g.brokers.points().map(|p| (p.id, p.vector.into())).collect();
        if let Err(e) = self.s.inner.index.swap(g) {
            tracing::error!(error = %e, "semantic: the new index generation could not be swapped in");
            return;
        }
        *self.s.inner.brokers.write() = Arc::new(mirror);
        self.s.inner.recent.lock().clear();
        if let Some(since) = self.since_refresh.take() {
            // What changed while the refresh ran, on top of its generation.
            for id in since.deleted {
                let _ = self.s.inner.index.delete(Collection::Brokers, &id);
            }
            self.embed_brokers(&since.brokers);
            for (p, src) in since.outcomes {
                self.add_outcome(p, &src);
            }
        }
        if let Some(info) = info {
            tracing::info!(brokers = info.brokers, leads = info.leads, ms = info.millis, "semantic: vector index refreshed and swapped in");
            self.s.inner.stats.refreshed(info);
            self.s.inner.refreshing.store(false, std::sync::atomic::Ordering::Release);
        }
        self.dirty = true;
        self.save();
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        if !self.dirty {
            return;
        }
        let Some((model, dim)) = self.s.inner.encoder.read().model() else { return };
        let Some(mem) = self.s.inner.index.snapshot() else { return };
        let meta = FileMeta { model, dim, written_at: Utc::now() };
        match index::save(&self.s.inner.file, &meta, &mem) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::warn!(error = %e, "semantic: the vector index was not saved"),
        }
    }
}

fn clone_err(e: &ActorError) -> ActorError {
    match e {
        ActorError::Unavailable(m) => ActorError::Unavailable(m.clone()),
        other => ActorError::Embedding(other.to_string()),
    }
}
