//! `RouterSupervisor`: the decision path, the lead lifecycle, the waiting queue and broker
//! administration. It starts and supervises every `BrokerActor`, spread over a few arbiters.
//!
//! Decision path: featurise once → hard constraints from the index (no messages) → cheap pre-rank
//! → `Score` scattered to the top K and gathered with a deadline → combine per strategy →
//! `Reserve` on the winner (falling back down the ranking on refusal) → journal (durable) →
//! answer. Per decision this costs O(K) actor messages, never O(brokers). When every broker
//! actor lives on one arbiter (the default on two cores), the steps from the scatter to the
//! `Reserve` run as one task on that arbiter's thread, so the caller hands off once, not twice;
//! a caller on that very thread (an embedded engine, see `engine::Placement::Caller`) runs them
//! in place and hands off nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration as StdDuration, Instant};

use actix::Supervisor;
use actix_rt::ArbiterHandle;
use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;
use futures_util::future::join_all;
use leadrouter_models::{
    combine, features, transition, Broker, DecideRequest, EventKind, Exclusion, LeadEventRequest, LeadFeatures, LeadState, ModelError,
    Priors, Strategy, Transition,
};
use parking_lot::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::broker_actor::BrokerActor;
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::error::{ActorError, Result};
use crate::feed::{CapacityState, Feed};
use crate::index::{BrokerIndex, Candidates, IndexEntry};
use crate::journal::Journal;
use crate::messages::{Apply, Cancel, Disarm, Inspect, LiveView, Notice, Performance, Reserve, Restart, Retire, Score, UpdateConfig};
use crate::metrics::Metrics;
use crate::queue::LeadQueue;
use crate::record::{Alternative, Decision, Record, SharedDecision, Skipped};
use crate::registry::Registry;
use crate::state::{BrokerLive, EngineState, LeadRecord};
use crate::views::{
    ActorSummary, AssignedAnswer, BrokerView, DecideOutcome, LeadView, LeaderboardMetric, LeaderboardRow, Load, PerfView, PerformanceView,
    PredictedCandidate, Prediction, WaitingAnswer,
};

/// Days in the recent performance window.
pub const RECENT_DAYS: i64 = 7;

/// Most leads named in one [`Record::Archived`].
const ARCHIVE_BATCH: usize = 4096;

type LeadCell = Arc<tokio::sync::Mutex<Option<LeadRecord>>>;

/// Stride scheduling state for weighted round robin.
#[derive(Default)]
struct Stride {
    pass: HashMap<String, f64>,
    vtime: f64,
}

impl Stride {
    fn get(&self, id: &str) -> f64 {
        self.pass.get(id).copied().unwrap_or(self.vtime).max(self.vtime)
    }

    fn advance(&mut self, id: &str, weight: f64) {
        let p = self.get(id);
        self.vtime = p;
        self.pass.insert(id.to_string(), p + 1.0 / weight);
    }
}

/// Where the broker actors run, as the supervisor is given it.
pub struct ActorThreads {
    /// The arbiters the actors are spread over, round robin.
    pub arbiters: Vec<ArbiterHandle>,
    /// With one arbiter that is the engine starter's own, its thread: calls made on it settle in
    /// place, without a hand-off.
    pub home: Option<ThreadId>,
}

struct Inner {
    cfg: EngineConfig,
    index: BrokerIndex,
    leads: DashMap<String, LeadCell>,
    /// Finished leads, oldest first, with when they finished: the next ones to archive.
    finished: Mutex<VecDeque<(DateTime<Utc>, String)>>,
    queue: Mutex<LeadQueue>,
    journal: Journal,
    rng: Mutex<fastrand::Rng>,
    round_robin: AtomicU64,
    stride: Mutex<Stride>,
    arbiters: Vec<ArbiterHandle>,
    /// The thread of the only arbiter, when the engine was started on it.
    home: Option<ThreadId>,
    next_arbiter: AtomicUsize,
    notices: UnboundedSender<Notice>,
    admin: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    drain_again: AtomicBool,
    /// Queue sweeps run only when the owner calls [`RouterSupervisor::drain`] (a simulation
    /// stepping its own clock), never in the background.
    manual: AtomicBool,
    stopped: AtomicBool,
    decisions: AtomicU64,
    registry: Arc<Registry>,
    feed: Arc<Feed>,
    metrics: Arc<Metrics>,
    /// Where "now" comes from: the system clock, or a simulation's.
    clock: SharedClock,
}

/// Handle to the router supervisor; cheap to clone.
#[derive(Clone)]
pub struct RouterSupervisor {
    inner: Arc<Inner>,
}

/// One scored candidate.
struct Scored {
    entry: Arc<IndexEntry>,
    score: f64,
    breakdown: leadrouter_models::Breakdown,
}

/// What one sweep of the queue did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sweep {
    /// Leads given to a broker: (lead, broker).
    pub assigned: Vec<(String, String)>,
    /// Leads that waited past their expiry.
    pub expired: Vec<String>,
}

/// What routing one lead found.
enum Routed {
    Assigned(Box<Decision>),
    Nobody(BTreeMap<Exclusion, u32>),
}

/// A routing whose candidates are filtered and ordered; what is left is asking them to score
/// and reserving the winner ([`RouterSupervisor::settle`]).
struct Settle {
    lead_id: String,
    lead: Arc<LeadFeatures>,
    strategy: Strategy,
    now: DateTime<Utc>,
    attempt: u32,
    rerouted_from: Option<String>,
    candidates: Candidates,
    /// Positions in `candidates.list`, best first.
    order: Vec<u32>,
    excluded: BTreeMap<Exclusion, u32>,
    priors: Priors,
}

// The states of a settle task's gate, shared with the caller waiting for it.
/// The caller is waiting.
const WAITED: u8 = 0;
/// The caller gave up: reserve nothing.
const ABANDONED: u8 = 1;
/// A reservation was asked for: the caller waits for its outcome.
const RESERVING: u8 = 2;

impl RouterSupervisor {
    /// Builds the supervisor over `state` (from snapshot and replay): starts one actor per broker
    /// and refills the lead table and queue. Call inside a running actix system.
    pub fn new(
        cfg: EngineConfig,
        journal: Journal,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        threads: ActorThreads,
        state: EngineState,
        clock: SharedClock,
    ) -> (Self, UnboundedReceiver<Notice>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cfg_feed_buffer = cfg.routing.feed_buffer;
        let seed = match cfg.routing.seed {
            0 => fastrand::u64(..),
            s => s,
        };
        let me = Self {
            inner: Arc::new(Inner {
                cfg,
                index: BrokerIndex::default(),
                leads: DashMap::new(),
                finished: Mutex::new(VecDeque::new()),
                queue: Mutex::new(LeadQueue::default()),
                journal,
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                round_robin: AtomicU64::new(0),
                stride: Mutex::new(Stride::default()),
                arbiters: threads.arbiters,
                home: threads.home,
                next_arbiter: AtomicUsize::new(0),
                notices: tx,
                admin: tokio::sync::Mutex::new(()),
                draining: AtomicBool::new(false),
                manual: AtomicBool::new(false),
                drain_again: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                decisions: AtomicU64::new(0),
                feed: Arc::new(Feed::new(cfg_feed_buffer)),
                registry,
                metrics,
                clock,
            }),
        };
        for (_, e) in state.brokers {
            let entry = me.spawn_actor(Arc::new(e.broker), e.live);
            me.inner.index.upsert(entry);
        }
        let mut q = me.inner.queue.lock();
        let mut finished = Vec::new();
        for (id, lead) in state.leads {
            if lead.state == LeadState::Queued {
                let d = &lead.request.lead_data;
                q.push(&id, d.urgency, d.estimated_value, lead.queued_at.unwrap_or(lead.created_at));
            }
            if lead.state.is_final() {
                finished.push((lead.last_activity(), id.clone()));
            }
            me.inner.leads.insert(id, Arc::new(tokio::sync::Mutex::new(Some(lead))));
        }
        drop(q);
        finished.sort();
        *me.inner.finished.lock() = finished.into();
        (me, rx)
    }

    /// Starts the background work: acceptance time-outs and the periodic queue sweep.
    pub fn start_background(&self, notices: UnboundedReceiver<Notice>) {
        self.handle_notices(notices);
        let weak = Arc::downgrade(&self.inner);
        let every = StdDuration::from_millis(self.inner.cfg.routing.tick_ms);
        actix_rt::spawn(async move {
            // The first sweep one tick from now: start-up kicks its own drain below.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let Some(me) = Self::upgrade(&weak) else { break };
                if me.inner.stopped.load(Ordering::Acquire) {
                    break;
                }
                if !me.inner.queue.lock().is_empty() {
                    me.kick_drain();
                }
                if let Err(e) = me.archive_finished().await {
                    tracing::error!(error = %e, "finished leads could not be archived");
                }
            }
        });
        self.kick_drain();
    }

    /// Starts only the handling of acceptance time-outs: the queue is swept when the owner calls
    /// [`RouterSupervisor::drain`], so a simulation decides when sweeps happen and its runs
    /// are reproducible.
    pub fn start_manual(&self, notices: UnboundedReceiver<Notice>) {
        self.inner.manual.store(true, Ordering::Release);
        self.handle_notices(notices);
    }

    /// Background tasks hold the supervisor weakly: the broker actors hold the notice channel,
    /// so a strong handle here would keep the actors, and this task, alive for good once the
    /// owner has dropped every handle (an engine with its actors on the owner's thread).
    fn handle_notices(&self, mut notices: UnboundedReceiver<Notice>) {
        let weak = Arc::downgrade(&self.inner);
        actix_rt::spawn(async move {
            while let Some(n) = notices.recv().await {
                let Some(me) = Self::upgrade(&weak) else { break };
                actix_rt::spawn(async move { me.on_notice(n).await });
            }
        });
    }

    fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// Stops background work and refuses new decisions; the journal is flushed by the caller.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Cancels every broker actor's pending acceptance wake-up (after [`Self::stop`]), so that
    /// actors on their owner's thread end once the owner drops its handles.
    pub async fn disarm_actors(&self) {
        for e in self.inner.index.all() {
            let _ = e.send(Disarm).await;
        }
    }

    /// The journal handle.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Refreshes the gauges and returns every metric in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        let entries = self.inner.index.all();
        m.broker_utilization.reset();
        let (mut depth, mut deepest, mut hits, mut total) = (0u64, 0u64, 0u64, 0u64);
        for e in &entries {
            let s = e.capacity_state(self.inner.clock.now());
            m.broker_utilization.with_label_values(&[&e.broker.id, e.broker.group.as_deref().unwrap_or("")]).set(s.utilization);
            let a = e.live.actor();
            depth += a.mailbox;
            deepest = deepest.max(a.mailbox);
            let [_, _, h, t] = e.live.outcomes();
            hits += h;
            total += t;
        }
        m.sla_compliance.set(if total == 0 { 1.0 } else { hits as f64 / total as f64 });
        m.mailbox_depth.set(depth as i64);
        m.mailbox_max.set(deepest as i64);
        m.queue_length.set(self.queue_len() as i64);
        m.leads_in_memory.set(self.inner.leads.len() as i64);
        m.websocket_clients.set(self.inner.feed.clients() as i64);
        m.brokers.set(entries.len() as i64);
        m.model_version.reset();
        let active = self.inner.registry.active();
        m.model_version.with_label_values(&[active.as_ref().map_or("none", |a| a.version.as_str())]).set(1);
        let drift = self.inner.registry.drift();
        m.model_drift.set(drift.difference.unwrap_or(0.0));
        m.model_drift_outcomes.set(drift.outcomes as i64);
        m.encode()
    }

    /// The capacity feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.inner.feed
    }

    /// Every broker's capacity state (index copies), sorted by broker id.
    pub fn capacity_snapshot(&self) -> Vec<CapacityState> {
        let now = self.inner.clock.now();
        self.inner.index.all().iter().map(|e| e.capacity_state(now)).collect()
    }

    /// One broker's licence states, for feed filters.
    pub fn broker_states(&self, id: &str) -> Vec<String> {
        self.inner.index.get(id).map(|e| e.profile.licences.iter().map(|l| l.0.name()).collect()).unwrap_or_default()
    }

    /// Every broker actor's counters and a summary of its state.
    pub fn actors(&self) -> Vec<ActorSummary> {
        let now = self.inner.clock.now();
        self.inner
            .index
            .all()
            .iter()
            .map(|e| ActorSummary { broker_id: e.broker.id.clone(), counters: e.live.actor(), state: e.capacity_state(now) })
            .collect()
    }

    /// Restarts a broker actor through its supervisor; returns its state before and after.
    pub async fn restart_actor(&self, id: &str) -> Result<(LiveView, LiveView)> {
        let e = self.entry(id)?;
        let before = e.send(Inspect).await?;
        e.send(Restart).await?;
        let after = e.send(Inspect).await?;
        Ok((before, after))
    }

    /// The model registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Brokers known.
    pub fn broker_count(&self) -> usize {
        self.inner.index.len()
    }

    /// Leads waiting.
    pub fn queue_len(&self) -> usize {
        self.inner.queue.lock().len()
    }

    /// Decisions made since start.
    pub fn decisions_made(&self) -> u64 {
        self.inner.decisions.load(Ordering::Relaxed)
    }

    fn spawn_actor(&self, broker: Arc<Broker>, live: BrokerLive) -> IndexEntry {
        let counters = self.inner.index.new_counters();
        let profile = broker.profile();
        counters.publish(&live, &profile);
        let i = self.inner.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.inner.arbiters.len();
        let (b, c, n, f, k) =
            (broker.clone(), counters.clone(), self.inner.notices.clone(), self.inner.feed.clone(), self.inner.clock.clone());
        let addr = Supervisor::start_in_arbiter(&self.inner.arbiters[i], move |_| BrokerActor::new(b, live, c, n, f, k));
        IndexEntry::new(broker, profile, addr, counters)
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(ActorError::Unavailable("engine is shutting down".into()));
        }
        Ok(())
    }

    // ----- decisions -------------------------------------------------------------------------

    /// Routes a lead: assigns it to a broker, or queues it when nobody can take it. Deciding a
    /// lead id again returns its first decision (or, if it was queued, where it is now).
    pub async fn decide(&self, req: DecideRequest) -> Result<DecideOutcome> {
        let started = Instant::now();
        req.validate()?;
        self.check_running()?;
        let lead_id = req.lead_id.clone();
        let cell = self.inner.leads.entry(lead_id.clone()).or_default().clone();
        let mut slot = cell.lock().await;
        if let Some(lead) = slot.as_ref() {
            return Ok(self.replayed_answer(lead));
        }
        let result = self.decide_new(req, started, &mut slot).await;
        let m = &self.inner.metrics;
        match &result {
            Ok(DecideOutcome::Assigned(a)) => {
                m.decisions.with_label_values(&["assigned"]).inc();
                m.decision_seconds.with_label_values(&[a.decision.strategy.name()]).observe(a.decision.decision_micros as f64 / 1e6);
            }
            Ok(DecideOutcome::Waiting(_)) => m.decisions.with_label_values(&["queued"]).inc(),
            Err(_) => m.decisions.with_label_values(&["error"]).inc(),
        }
        if slot.is_none() {
            // Nothing was recorded: forget the empty cell so the lead id stays unknown.
            drop(slot);
            self.inner.leads.remove_if(&lead_id, |_, v| Arc::ptr_eq(v, &cell));
        }
        result
    }

    async fn decide_new(&self, req: DecideRequest, started: Instant, slot: &mut Option<LeadRecord>) -> Result<DecideOutcome> {
        let lead_id = req.lead_id.clone();
        let now = self.inner.clock.now();
        let strategy = req.strategy.unwrap_or(self.inner.cfg.routing.default_strategy);
        let features = Arc::new(req.features());
        match self.route(&lead_id, &features, strategy, &[], now, 1, None).await {
            Routed::Assigned(mut d) => {
                d.decision_micros = started.elapsed().as_micros() as u64;
                let d = SharedDecision::new(*d);
                let rec = Arc::new(Record::Decided { at: now, decision: d.clone(), request: Some(Arc::new(req)) });
                let journal_started = Instant::now();
                self.commit_decision(&rec, &d).await?;
                let journal_micros = journal_started.elapsed().as_micros() as u64;
                *slot = LeadRecord::from_first(&rec);
                Ok(DecideOutcome::Assigned(Box::new(AssignedAnswer { decision: d, journal_micros, replayed: false })))
            }
            Routed::Nobody(excluded) => {
                let expires_at = now + Duration::seconds(self.inner.cfg.routing.queue_expiry_seconds as i64);
                let rec = Arc::new(Record::Queued { at: now, request: Arc::new(req), expires_at });
                self.inner.journal.append(rec.clone()).await?;
                let lead = LeadRecord::from_first(&rec).expect("queued record starts a lead");
                let d = &lead.request.lead_data;
                let (position, queue_length) = {
                    let mut q = self.inner.queue.lock();
                    q.push(&lead_id, d.urgency, d.estimated_value, now);
                    (q.position(&lead_id), q.len())
                };
                *slot = Some(lead);
                Ok(DecideOutcome::Waiting(WaitingAnswer {
                    lead_id,
                    status: LeadState::Queued,
                    position,
                    queue_length,
                    strategy,
                    queued_at: Some(now),
                    expires_at: Some(expires_at),
                    excluded,
                    decision_micros: started.elapsed().as_micros() as u64,
                    replayed: false,
                }))
            }
        }
    }

    /// Journals a decision whose reservation is held; on failure gives the slot back.
    async fn commit_decision(&self, rec: &Arc<Record>, d: &Decision) -> Result<()> {
        if let Err(e) = self.inner.journal.append(rec.clone()).await {
            if let Some(entry) = self.inner.index.get(&d.broker_id) {
                let _ = entry.send(Cancel { lead_id: d.lead_id.clone(), at: d.decided_at }).await;
            }
            return Err(e);
        }
        self.inner.decisions.fetch_add(1, Ordering::Relaxed);
        if d.strategy == Strategy::WeightedRoundRobin {
            if let Some(entry) = self.inner.index.get(&d.broker_id) {
                self.inner.stride.lock().advance(&d.broker_id, entry.broker.weight);
            }
        }
        Ok(())
    }

    fn replayed_answer(&self, lead: &LeadRecord) -> DecideOutcome {
        if let Some(first) = lead.decisions.first() {
            return DecideOutcome::Assigned(Box::new(AssignedAnswer { decision: first.clone(), journal_micros: 0, replayed: true }));
        }
        let q = self.inner.queue.lock();
        DecideOutcome::Waiting(WaitingAnswer {
            lead_id: lead.lead_id.clone(),
            status: lead.state,
            position: q.position(&lead.lead_id),
            queue_length: q.len(),
            strategy: lead.request.strategy.unwrap_or(self.inner.cfg.routing.default_strategy),
            queued_at: lead.queued_at,
            expires_at: lead.expires_at,
            excluded: BTreeMap::new(),
            decision_micros: 0,
            replayed: true,
        })
    }

    /// Orders the eligible brokers of `c` by the strategy's preference, as positions in
    /// `c.list`. For `specialty` and `ml` only the first K are sorted (the rest follow in no
    /// particular order, asked only if all K refuse).
    fn order(&self, strategy: Strategy, c: &Candidates, priors: &Priors) -> Vec<u32> {
        let by_id = |a: &u32, b: &u32| c.cmp_id(*a, *b);
        let positions = || -> Vec<u32> { c.eligible.iter().map(|e| e.pos).collect() };
        match strategy {
            Strategy::Specialty | Strategy::Ml => {
                // Cheap pre-rank from what the filter read: proficiency, headroom and smoothed
                // history.
                let w = self.inner.cfg.weights(strategy);
                let keyed: Vec<(f64, u32)> = c
                    .eligible
                    .iter()
                    .map(|e| {
                        let [conv, resolved, hits, total] = e.outcomes;
                        let key = w.specialty * e.specialty
                            + w.capacity * e.headroom
                            + w.performance * priors.conversion.smooth(conv as f64, resolved as f64)
                            + w.sla * priors.sla.smooth(hits as f64, total as f64);
                        (key, e.pos)
                    })
                    .collect();
                let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| by_id(&a.1, &b.1));
                top_k_first(keyed, self.inner.cfg.routing.top_k, cmp)
            }
            Strategy::Random => {
                let mut el = positions();
                self.inner.rng.lock().shuffle(&mut el);
                el
            }
            Strategy::RoundRobin => {
                let mut el = positions();
                el.sort_by(by_id);
                let start = (self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % el.len() as u64) as usize;
                el.rotate_left(start);
                el
            }
            Strategy::WeightedRoundRobin => {
                let mut el = positions();
                let s = self.inner.stride.lock();
                let id = |i: &u32| &c.entry(*i).broker.id;
                el.sort_by(|a, b| s.get(id(a)).total_cmp(&s.get(id(b))).then_with(|| by_id(a, b)));
                el
            }
        }
    }

    /// Scatters `Score` to one chunk of candidates, gathers with the deadline, predicts
    /// conversion for strategy `ml`, and ranks. Brokers found full are added to `excluded`,
    /// those that missed the deadline to `skipped`.
    #[allow(clippy::too_many_arguments)]
    async fn score_chunk(
        &self,
        chunk: &[Arc<IndexEntry>],
        lead: &Arc<LeadFeatures>,
        priors: Priors,
        strategy: Strategy,
        now: DateTime<Utc>,
        excluded: &mut BTreeMap<Exclusion, u32>,
        skipped: &mut Vec<Skipped>,
    ) -> (Vec<Scored>, Option<String>) {
        let model = if strategy == Strategy::Ml { self.inner.registry.active() } else { None };
        let with_features = model.is_some();
        // One timer for the whole scatter: replies still missing when it fires missed the deadline.
        let deadline = tokio::time::sleep(StdDuration::from_millis(self.inner.cfg.routing.score_deadline_ms));
        tokio::pin!(deadline);
        // One joined future over the K requests (a single allocation, no task per candidate);
        // each reply lands in its slot as it comes, so the deadline keeps what arrived.
        let replies: std::cell::RefCell<Vec<Option<_>>> = std::cell::RefCell::new((0..chunk.len()).map(|_| None).collect());
        let all = join_all(chunk.iter().enumerate().map(|(i, e)| {
            let f = e.send(Score { lead: lead.clone(), priors, now, with_features });
            let replies = &replies;
            async move {
                let r = f.await;
                replies.borrow_mut()[i] = Some(r);
            }
        }));
        tokio::select! {
            biased;
            _ = all => {}
            () = &mut deadline => {}
        }
        let replies = replies.into_inner();
        let mut answered = Vec::with_capacity(chunk.len());
        for (e, r) in chunk.iter().zip(replies) {
            match r {
                Some(Ok(Some(reply))) => answered.push((e.clone(), reply)),
                Some(Ok(None)) => *excluded.entry(Exclusion::AtCapacity).or_insert(0) += 1,
                Some(Err(_)) => skipped.push(Skipped { broker_id: e.broker.id.clone(), reason: "mailbox".into() }),
                None => {
                    self.inner.metrics.deadline_misses.inc();
                    skipped.push(Skipped { broker_id: e.broker.id.clone(), reason: "deadline".into() })
                }
            }
        }
        if answered.is_empty() {
            return (Vec::new(), None);
        }
        let mut inputs: Vec<_> = answered.iter().map(|(_, r)| r.inputs).collect();
        let mut model_version = None;
        // With a model active every reply carries features: they were asked for above.
        let rows = model
            .as_ref()
            .and_then(|_| answered.iter().map(|(_, r)| r.features.map(|f| features::build(lead, &f))).collect::<Option<Vec<_>>>());
        if let (Some(m), Some(rows)) = (&model, rows) {
            // One batched forward pass over every answered candidate.
            let predicted = Instant::now();
            let result = m.model.predict(&rows);
            self.inner.metrics.prediction_seconds.observe(predicted.elapsed().as_secs_f64());
            match result {
                Ok(p) => {
                    for (i, p) in inputs.iter_mut().zip(p) {
                        i.conversion = f64::from(p);
                    }
                    self.inner.registry.count_predictions(rows.len());
                    model_version = Some(m.version.clone());
                }
                Err(e) => tracing::error!(error = %e, version = %m.version, "prediction failed; using the empirical-Bayes estimate"),
            }
        }
        let scores = combine(&inputs, &self.inner.cfg.weights(strategy));
        let mut ranked: Vec<Scored> = answered
            .into_iter()
            .zip(scores)
            .map(|((entry, _), (score, mut breakdown))| {
                if let Some(v) = &model_version {
                    breakdown.conversion_source = format!("model:{v}");
                }
                Scored { entry, score, breakdown }
            })
            .collect();
        if matches!(strategy, Strategy::Specialty | Strategy::Ml) {
            ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.entry.broker.id.cmp(&b.entry.broker.id)));
        }
        (ranked, model_version)
    }

    /// Finds and reserves a broker for a lead; `skip` lists brokers that gave it back before.
    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        lead_id: &str,
        lead: &Arc<LeadFeatures>,
        strategy: Strategy,
        skip: &[String],
        now: DateTime<Utc>,
        attempt: u32,
        rerouted_from: Option<String>,
    ) -> Routed {
        let mut candidates = self.inner.index.candidates(lead, skip, now);
        let excluded = std::mem::take(&mut candidates.excluded);
        if candidates.eligible.is_empty() {
            return Routed::Nobody(excluded);
        }
        let [conv, resolved, hits, total] = candidates.totals;
        let priors = Priors::from_totals(conv, resolved, hits, total, self.inner.cfg.routing.prior_strength);
        let order = self.order(strategy, &candidates, &priors);
        let job = Settle {
            lead_id: lead_id.to_string(),
            lead: lead.clone(),
            strategy,
            now,
            attempt,
            rerouted_from,
            candidates,
            order,
            excluded,
            priors,
        };
        match self.inner.arbiters.as_slice() {
            // Already on the actors' thread: their replies come back without a hand-off.
            [_] if self.inner.home.is_some_and(|h| h == std::thread::current().id()) => self.settle(job, None).await,
            [only] => self.settle_on(only, job).await,
            _ => self.settle(job, None).await,
        }
    }

    /// Runs [`Self::settle`] as a task on `arbiter`, the thread of every broker actor: its
    /// `Score`s and `Reserve` then never leave that thread, and the caller waits for one hand-off
    /// instead of two. The caller waits at most twice the score deadline; if it gives up before
    /// a reservation was asked for, the task reserves nothing and the lead is not routed.
    async fn settle_on(&self, arbiter: &ArbiterHandle, job: Settle) -> Routed {
        let fallback = job.excluded.clone();
        let gate = Arc::new(AtomicU8::new(WAITED));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (me, task_gate) = (self.clone(), gate.clone());
        let started = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let routed = me.settle(job, Some(&task_gate)).await;
                let _ = tx.send(routed);
            });
        });
        if !started {
            // The arbiter has stopped, and every broker actor with it.
            return Routed::Nobody(fallback);
        }
        let patience = StdDuration::from_millis(2 * self.inner.cfg.routing.score_deadline_ms);
        match tokio::time::timeout(patience, &mut rx).await {
            Ok(routed) => routed.unwrap_or(Routed::Nobody(fallback)),
            Err(_) => match gate.compare_exchange(WAITED, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.inner.metrics.settle_abandoned.inc();
                    tracing::warn!(waited_ms = patience.as_millis() as u64, "the broker arbiter did not answer in time; lead not routed");
                    Routed::Nobody(fallback)
                }
                // A reservation is under way: its outcome is the answer.
                Err(_) => rx.await.unwrap_or(Routed::Nobody(fallback)),
            },
        }
    }

    /// Asks the ordered candidates to score, K at a time, and reserves the best that accepts.
    /// With a `gate`, a caller may give up waiting: no reservation is asked for after that.
    async fn settle(&self, job: Settle, gate: Option<&AtomicU8>) -> Routed {
        let cfg = &self.inner.cfg.routing;
        let Settle { lead_id, lead, strategy, now, attempt, rerouted_from, candidates: c, order, mut excluded, priors } = job;
        let eligible = c.eligible.len();
        let mut skipped = Vec::new();
        let mut refused = 0usize;
        let mut scored_total = 0u32;
        for chunk in order.chunks(cfg.top_k) {
            let chunk: Vec<_> = chunk.iter().map(|&i| c.entry(i).clone()).collect();
            let (ranked, model_version) = self.score_chunk(&chunk, &lead, priors, strategy, now, &mut excluded, &mut skipped).await;
            scored_total += ranked.len() as u32;
            for (pos, winner) in ranked.iter().enumerate() {
                if let Some(g) = gate {
                    if let Err(ABANDONED) = g.compare_exchange(WAITED, RESERVING, Ordering::AcqRel, Ordering::Acquire) {
                        return Routed::Nobody(excluded);
                    }
                }
                let reserve =
                    Reserve { lead_id: lead_id.clone(), lead_state: lead.state.clone(), lines: lead.lines, urgency: lead.urgency, at: now };
                let reservation = match winner.entry.send(reserve).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(x)) => {
                        refused += 1;
                        *excluded.entry(x).or_insert(0) += 1;
                        continue;
                    }
                    Err(_) => {
                        refused += 1;
                        skipped.push(Skipped { broker_id: winner.entry.broker.id.clone(), reason: "mailbox".into() });
                        continue;
                    }
                };
                let alternatives = ranked[pos + 1..]
                    .iter()
                    .take(cfg.alternatives)
                    .map(|a| Alternative { broker_id: a.entry.broker.id.clone(), score: a.score, breakdown: a.breakdown.clone() })
                    .collect();
                let propensity = match strategy {
                    Strategy::Random => 1.0 / (eligible - refused) as f64,
                    _ => 1.0,
                };
                return Routed::Assigned(Box::new(Decision {
                    decision_id: format!("dec-{:016x}", self.inner.rng.lock().u64(..)),
                    lead_id,
                    broker_id: winner.entry.broker.id.clone(),
                    lead_state: lead.state.clone(),
                    lead_lines: lead.lines,
                    status: "assigned".into(),
                    strategy,
                    score: winner.score,
                    breakdown: winner.breakdown.clone(),
                    alternatives,
                    excluded,
                    skipped,
                    eligible: eligible as u32,
                    scored: scored_total,
                    propensity,
                    attempt,
                    rerouted_from,
                    decided_at: now,
                    accept_deadline: reservation.accept_deadline,
                    sla_target_minutes: reservation.sla_minutes,
                    decision_micros: 0,
                    model_version,
                }));
            }
        }
        Routed::Nobody(excluded)
    }

    /// Ranks the brokers for a lead with P(convert) and score, without reserving anything or
    /// journaling a decision.
    pub async fn predict(&self, req: DecideRequest) -> Result<Prediction> {
        let started = Instant::now();
        req.validate()?;
        let now = self.inner.clock.now();
        let strategy = req.strategy.unwrap_or(self.inner.cfg.routing.default_strategy);
        let lead = Arc::new(req.features());
        let mut c = self.inner.index.candidates(&lead, &[], now);
        let mut excluded = std::mem::take(&mut c.excluded);
        let eligible = c.eligible.len() as u32;
        let [conv, resolved, hits, total] = c.totals;
        let priors = Priors::from_totals(conv, resolved, hits, total, self.inner.cfg.routing.prior_strength);
        let order = self.order(strategy, &c, &priors);
        let mut skipped = Vec::new();
        let chunk: Vec<_> = order.iter().take(self.inner.cfg.routing.top_k).map(|&i| c.entry(i).clone()).collect();
        let (ranked, model_version) = self.score_chunk(&chunk, &lead, priors, strategy, now, &mut excluded, &mut skipped).await;
        Ok(Prediction {
            lead_id: req.lead_id,
            strategy,
            model_version,
            eligible,
            excluded,
            skipped,
            candidates: ranked
                .into_iter()
                .map(|s| PredictedCandidate {
                    broker_id: s.entry.broker.id.clone(),
                    probability: s.breakdown.conversion,
                    score: s.score,
                    breakdown: s.breakdown,
                })
                .collect(),
            micros: started.elapsed().as_micros() as u64,
        })
    }

    // ----- lifecycle -------------------------------------------------------------------------

    fn lead_cell(&self, lead_id: &str) -> Result<LeadCell> {
        self.inner.leads.get(lead_id).map(|c| c.clone()).ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })
    }

    fn position(&self, lead_id: &str) -> Option<usize> {
        self.inner.queue.lock().position(lead_id)
    }

    /// One lead's state and history.
    pub async fn lead(&self, lead_id: &str) -> Result<LeadView> {
        let cell = self.lead_cell(lead_id)?;
        let slot = cell.lock().await;
        let lead = slot.as_ref().ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })?;
        Ok(LeadView::new(lead, self.position(lead_id)))
    }

    /// Applies a journaled record to the broker actor, the lead and the queue.
    async fn apply_to_lead(&self, lead: &mut LeadRecord, rec: &Arc<Record>) {
        if let Some(b) = rec.broker_id() {
            if let Some(entry) = self.inner.index.get(b) {
                let _ = entry.send(Apply(rec.clone())).await;
            }
        }
        let was_final = lead.state.is_final();
        lead.apply(rec);
        if lead.state.is_final() && !was_final {
            self.inner.finished.lock().push_back((self.inner.clock.now(), lead.lead_id.clone()));
        }
        let mut q = self.inner.queue.lock();
        if lead.state == LeadState::Queued {
            let d = &lead.request.lead_data;
            q.push(&lead.lead_id, d.urgency, d.estimated_value, lead.queued_at.unwrap_or(lead.created_at));
        } else {
            q.remove(&lead.lead_id);
        }
    }

    /// Records a lifecycle event; rejected leads are re-routed at once, closing frees capacity.
    pub async fn lead_event(&self, lead_id: &str, ev: LeadEventRequest) -> Result<LeadView> {
        let now = self.inner.clock.now();
        ev.validate(now)?;
        self.check_running()?;
        let cell = self.lead_cell(lead_id)?;
        let mut slot = cell.lock().await;
        let lead = slot.as_mut().ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })?;
        let t = transition(lead.state, ev.kind).ok_or_else(|| ActorError::Conflict {
            message: format!("cannot apply event {} to a lead in state {}", name(&ev.kind), name(&lead.state)),
            current_state: Some(lead.state),
        })?;
        let at = ev.at.unwrap_or(now);
        if let (Some(_), Some(d)) = (&lead.broker_id, lead.last_decision()) {
            if at < d.decided_at {
                return Err(ModelError::invalid("at", "is before the lead was assigned to its broker").into());
            }
        }
        let value = (ev.kind == EventKind::Converted).then(|| ev.value.unwrap_or(lead.request.lead_data.estimated_value));
        self.event(lead, ev.kind, at, value, t).await?;
        Ok(LeadView::new(lead, self.position(lead_id)))
    }

    async fn event(&self, lead: &mut LeadRecord, kind: EventKind, at: DateTime<Utc>, value: Option<f64>, t: Transition) -> Result<()> {
        let freed = lead.state.holds_capacity() && matches!(t, Transition::Reroute | Transition::To(LeadState::Closed));
        let outcome = match kind {
            EventKind::Converted => Some(true),
            EventKind::Lost => Some(false),
            EventKind::Closed if matches!(lead.state, LeadState::Accepted | LeadState::Contacted) => Some(false),
            _ => None,
        };
        let requeue_expires_at = matches!(t, Transition::Reroute)
            .then(|| self.inner.clock.now() + Duration::seconds(self.inner.cfg.routing.queue_expiry_seconds as i64));
        let rec = Arc::new(Record::LeadEvent {
            at,
            lead_id: lead.lead_id.clone(),
            broker_id: lead.broker_id.clone(),
            event: kind,
            value,
            requeue_expires_at,
        });
        self.inner.journal.append(rec.clone()).await?;
        if kind == EventKind::Converted {
            self.inner.metrics.conversions.inc();
            self.inner.metrics.conversion_value.inc_by(value.unwrap_or(0.0).max(0.0).round() as u64);
        }
        if let (Some(y), Some(d)) = (outcome, lead.last_decision()) {
            if d.model_version.is_some() {
                self.inner.registry.record_outcome(d.breakdown.conversion, y);
            }
        }
        self.apply_to_lead(lead, &rec).await;
        if matches!(t, Transition::Reroute) {
            self.try_assign(lead, self.inner.clock.now()).await?;
        }
        if freed {
            self.kick_drain();
        }
        Ok(())
    }

    /// Tries to give a queued lead to a broker; true when assigned.
    async fn try_assign(&self, lead: &mut LeadRecord, now: DateTime<Utc>) -> Result<bool> {
        let started = Instant::now();
        let features = Arc::new(lead.request.features());
        let strategy = lead.request.strategy.unwrap_or(self.inner.cfg.routing.default_strategy);
        let attempt = lead.decisions.len() as u32 + 1;
        let from = if lead.decisions.is_empty() { None } else { lead.tried.last().cloned() };
        let tried = lead.tried.clone();
        match self.route(&lead.lead_id, &features, strategy, &tried, now, attempt, from).await {
            Routed::Assigned(mut d) => {
                d.decision_micros = started.elapsed().as_micros() as u64;
                let d = SharedDecision::new(*d);
                let rec = Arc::new(Record::Decided { at: now, decision: d.clone(), request: None });
                self.commit_decision(&rec, &d).await?;
                let m = &self.inner.metrics;
                m.decisions.with_label_values(&[if lead.decisions.is_empty() { "assigned" } else { "rerouted" }]).inc();
                m.decision_seconds.with_label_values(&[d.strategy.name()]).observe(d.decision_micros as f64 / 1e6);
                if let Some(q) = lead.queued_at {
                    m.queue_wait_seconds.observe((now - q).num_milliseconds().max(0) as f64 / 1000.0);
                }
                lead.apply(&rec);
                self.inner.queue.lock().remove(&lead.lead_id);
                Ok(true)
            }
            Routed::Nobody(_) => Ok(false),
        }
    }

    async fn on_notice(&self, n: Notice) {
        let Notice::AcceptTimeout { broker_id, lead_id, reserved_at } = n;
        let Ok(cell) = self.lead_cell(&lead_id) else { return };
        let mut slot = cell.lock().await;
        let Some(lead) = slot.as_mut() else { return };
        let current = lead.state == LeadState::Reserved
            && lead.broker_id.as_deref() == Some(broker_id.as_str())
            && lead.last_decision().map(|d| d.decided_at) == Some(reserved_at);
        if !current || self.inner.stopped.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.event(lead, EventKind::TimedOut, self.inner.clock.now(), None, Transition::Reroute).await {
            tracing::error!(lead = %lead_id, error = %e, "acceptance time-out could not be recorded");
        }
    }

    /// Archives the finished leads that have been finished for longer than
    /// `storage.finished_lead_retention_seconds`, and the oldest beyond
    /// `storage.max_finished_leads`: journals an [`Record::Archived`] per batch, then drops them
    /// from memory (the snapshotter drops them from the snapshot). Returns how many.
    pub async fn archive_finished(&self) -> Result<usize> {
        let keep = Duration::seconds(self.inner.cfg.storage.finished_lead_retention_seconds as i64);
        let most = usize::try_from(self.inner.cfg.storage.max_finished_leads).unwrap_or(usize::MAX);
        let mut archived = 0;
        loop {
            let now = self.inner.clock.now();
            let due: Vec<(DateTime<Utc>, String)> = {
                let mut f = self.inner.finished.lock();
                let mut due = Vec::new();
                while due.len() < ARCHIVE_BATCH && f.front().is_some_and(|(t, _)| *t + keep <= now || f.len() > most) {
                    due.extend(f.pop_front());
                }
                due
            };
            if due.is_empty() || self.inner.stopped.load(Ordering::Acquire) {
                return Ok(archived);
            }
            // Each lead stays locked from the check until it has left the table, so no request
            // sees it change in between; requests lock one lead at a time, so this cannot deadlock.
            let mut held = Vec::with_capacity(due.len());
            for (at, id) in due {
                let Some(cell) = self.inner.leads.get(&id).map(|c| c.clone()) else { continue };
                let guard = cell.clone().lock_owned().await;
                if guard.as_ref().is_some_and(|l| l.state.is_final()) {
                    held.push((at, id, cell, guard));
                }
            }
            if held.is_empty() {
                continue;
            }
            let rec = Arc::new(Record::Archived { at: now, lead_ids: held.iter().map(|(_, id, ..)| id.clone()).collect() });
            if let Err(e) = self.inner.journal.append(rec).await {
                // Still in memory: put them back, in order, for the next attempt.
                let mut f = self.inner.finished.lock();
                for (at, id, ..) in held.into_iter().rev() {
                    f.push_front((at, id));
                }
                return Err(e);
            }
            archived += held.len();
            self.inner.metrics.leads_archived.inc_by(held.len() as u64);
            for (_, id, cell, guard) in held {
                self.inner.leads.remove_if(&id, |_, v| Arc::ptr_eq(v, &cell));
                drop(guard);
            }
        }
    }

    /// Sweeps the queue (expiring leads past their time, assigning what fits) in the background.
    /// Concurrent kicks coalesce into one more sweep.
    pub fn kick_drain(&self) {
        if self.inner.manual.load(Ordering::Acquire) {
            return;
        }
        if self.inner.draining.swap(true, Ordering::AcqRel) {
            self.inner.drain_again.store(true, Ordering::Release);
            return;
        }
        let me = self.clone();
        actix_rt::spawn(async move {
            loop {
                let _ = me.drain_once().await;
                if !me.inner.drain_again.swap(false, Ordering::AcqRel) {
                    break;
                }
            }
            me.inner.draining.store(false, Ordering::Release);
            if me.inner.drain_again.swap(false, Ordering::AcqRel) {
                me.kick_drain();
            }
        });
    }

    /// Sweeps the queue once, now, and says what it did. Meant for an engine started with
    /// [`RouterSupervisor::start_manual`].
    pub async fn drain(&self) -> Sweep {
        self.drain_once().await
    }

    async fn drain_once(&self) -> Sweep {
        let mut sweep = Sweep::default();
        let ids = self.inner.queue.lock().ordered();
        let mut now = self.inner.clock.now();
        let mut room = self.inner.index.any_room(now);
        for id in ids {
            if self.inner.stopped.load(Ordering::Acquire) {
                break;
            }
            let Ok(cell) = self.lead_cell(&id) else {
                self.inner.queue.lock().remove(&id);
                continue;
            };
            let mut slot = cell.lock().await;
            let Some(lead) = slot.as_mut() else { continue };
            if lead.state != LeadState::Queued {
                self.inner.queue.lock().remove(&id);
                continue;
            }
            now = self.inner.clock.now();
            if lead.expires_at.is_some_and(|e| e <= now) {
                let rec = Arc::new(Record::QueueExpired { at: now, lead_id: id.clone() });
                match self.inner.journal.append(rec.clone()).await {
                    Ok(_) => {
                        self.apply_to_lead(lead, &rec).await;
                        sweep.expired.push(id.clone());
                    }
                    Err(e) => tracing::error!(lead = %id, error = %e, "queue expiry could not be recorded"),
                }
                continue;
            }
            if room {
                match self.try_assign(lead, now).await {
                    Ok(true) => {
                        room = self.inner.index.any_room(now);
                        sweep.assigned.push((id.clone(), lead.broker_id.clone().unwrap_or_default()));
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(lead = %id, error = %e, "queued lead could not be assigned"),
                }
            }
        }
        sweep
    }

    // ----- brokers ---------------------------------------------------------------------------

    fn entry(&self, id: &str) -> Result<Arc<IndexEntry>> {
        self.inner.index.get(id).ok_or_else(|| ActorError::NotFound { what: "broker", id: id.to_string() })
    }

    fn view(&self, e: &IndexEntry, now: DateTime<Utc>) -> BrokerView {
        BrokerView { broker: (*e.broker).clone(), load: load(e.live.open(), e.live.used_today(now), &e.broker) }
    }

    /// Creates a broker and starts its actor.
    pub async fn create_broker(&self, b: Broker) -> Result<BrokerView> {
        b.validate()?;
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        if self.inner.index.get(&b.id).is_some() {
            return Err(ActorError::Conflict { message: format!("broker '{}' already exists", b.id), current_state: None });
        }
        let rec = Arc::new(Record::BrokerUpserted { at: self.inner.clock.now(), broker: b.clone() });
        self.inner.journal.append(rec).await?;
        let entry = self.spawn_actor(Arc::new(b), BrokerLive::default());
        let view = self.view(&entry, self.inner.clock.now());
        self.inner.index.upsert(entry);
        self.kick_drain();
        Ok(view)
    }

    /// Replaces a broker's configuration with `edit(current)`; takes effect at once.
    pub async fn update_broker(&self, id: &str, edit: impl FnOnce(Broker) -> Result<Broker>) -> Result<BrokerView> {
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        let old = self.entry(id)?;
        let b = edit((*old.broker).clone())?;
        if b.id != id {
            return Err(ModelError::invalid("id", "must match the broker id in the path").into());
        }
        b.validate()?;
        let rec = Arc::new(Record::BrokerUpserted { at: self.inner.clock.now(), broker: b.clone() });
        self.inner.journal.append(rec).await?;
        let b = Arc::new(b);
        old.send(UpdateConfig(b.clone())).await?;
        let entry = IndexEntry::new(b.clone(), b.profile(), old.addr.clone(), old.live.clone());
        let view = self.view(&entry, self.inner.clock.now());
        self.inner.index.upsert(entry);
        self.kick_drain();
        Ok(view)
    }

    /// Deletes a broker that holds no open leads.
    pub async fn delete_broker(&self, id: &str) -> Result<()> {
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        let e = self.entry(id)?;
        if let Err(open) = e.send(Retire).await? {
            return Err(ActorError::Conflict {
                message: format!("broker '{id}' holds {open} open leads; close or re-route them first"),
                current_state: None,
            });
        }
        let rec = Arc::new(Record::BrokerDeleted { at: self.inner.clock.now(), broker_id: id.to_string() });
        self.inner.journal.append(rec).await?;
        self.inner.index.remove(id);
        Ok(())
    }

    /// One broker.
    pub fn broker(&self, id: &str) -> Result<BrokerView> {
        Ok(self.view(&*self.entry(id)?, self.inner.clock.now()))
    }

    /// All brokers, sorted by id.
    pub fn brokers(&self) -> Vec<BrokerView> {
        let now = self.inner.clock.now();
        self.inner.index.all().iter().map(|e| self.view(e, now)).collect()
    }

    /// A copy of a broker actor's live state.
    pub async fn inspect(&self, id: &str) -> Result<LiveView> {
        Ok(self.entry(id)?.send(Inspect).await?)
    }

    /// A broker's performance, all-time and over the last [`RECENT_DAYS`] days.
    pub async fn performance(&self, id: &str) -> Result<PerformanceView> {
        let e = self.entry(id)?;
        let now = self.inner.clock.now();
        let p = e.send(Performance { now, window_days: RECENT_DAYS }).await?;
        Ok(PerformanceView {
            broker_id: id.to_string(),
            all_time: PerfView::from(&p.all_time),
            recent: PerfView::from(&p.recent),
            window_days: p.window_days,
            load: load(p.open, p.daily_used, &e.broker),
        })
    }

    /// Brokers ranked by `metric` over all time or the recent window; rate metrics only rank
    /// brokers with at least `min_leads` leads in the window.
    pub async fn leaderboard(&self, metric: LeaderboardMetric, recent: bool, limit: usize, min_leads: u64) -> Result<Vec<LeaderboardRow>> {
        let now = self.inner.clock.now();
        let all = self.inner.index.all();
        let perf = join_all(all.iter().map(|e| e.send(Performance { now, window_days: RECENT_DAYS }))).await;
        let mut rows = Vec::new();
        for (e, p) in all.iter().zip(perf) {
            let Ok(p) = p else { continue };
            let v = PerfView::from(if recent { &p.recent } else { &p.all_time });
            if metric.is_rate() && v.leads < min_leads {
                continue;
            }
            if let Some(value) = metric.of(&v) {
                rows.push(LeaderboardRow {
                    rank: 0,
                    broker_id: e.broker.id.clone(),
                    name: e.broker.name.clone(),
                    group: e.broker.group.clone(),
                    value,
                    leads: v.leads,
                });
            }
        }
        rows.sort_by(|a, b| {
            let o = if metric.ascending() { a.value.total_cmp(&b.value) } else { b.value.total_cmp(&a.value) };
            o.then_with(|| a.broker_id.cmp(&b.broker_id))
        });
        rows.truncate(limit);
        for (i, r) in rows.iter_mut().enumerate() {
            r.rank = i + 1;
        }
        Ok(rows)
    }
}

/// The positions of `keyed`, the best `k` first in order (best = least by `cmp`), then the rest
/// in no particular order. One pass keeps the best `k` in a small sorted list: most items lose
/// to the worst of it in one comparison.
fn top_k_first(mut keyed: Vec<(f64, u32)>, k: usize, cmp: impl Fn(&(f64, u32), &(f64, u32)) -> std::cmp::Ordering) -> Vec<u32> {
    let k = k.min(keyed.len());
    if k == 0 {
        return keyed.into_iter().map(|(_, i)| i).collect();
    }
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for j in 0..keyed.len() {
        if best.len() == k && cmp(&keyed[j], &keyed[best[k - 1]]).is_ge() {
            continue;
        }
        let at = best.partition_point(|&b| cmp(&keyed[b], &keyed[j]).is_lt());
        best.insert(at, j);
        best.truncate(k);
    }
    let mut order: Vec<u32> = Vec::with_capacity(keyed.len());
    order.extend(best.iter().map(|&j| keyed[j].1));
    // Largest index first, so each removal leaves the smaller ones in place.
    best.sort_unstable_by(|a, b| b.cmp(a));
    for j in best {
        keyed.swap_remove(j);
    }
    order.extend(keyed.into_iter().map(|(_, i)| i));
    order
}

fn load(open: u32, daily_used: u32, b: &Broker) -> Load {
    Load {
        open_leads: open,
        max_concurrent: b.capacity.max_concurrent,
        daily_used,
        daily_cap: b.capacity.daily_cap,
        utilization: open as f64 / b.capacity.max_concurrent as f64,
    }
}

fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Durability, RoutingConfig, StorageConfig};
    use crate::engine::{journal_dir, Engine};
    use proptest::prelude::{prop, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig, Strategy as Gen};

    pub(crate) fn config(dir: &std::path::Path) -> EngineConfig {
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
            routing: RoutingConfig {
                default_strategy: Strategy::Specialty,
                top_k: 32,
                score_deadline_ms: 50,
                alternatives: 3,
                queue_expiry_seconds: 3600,
                prior_strength: 20.0,
                arbiters: 2,
                tick_ms: 3_600_000,
                feed_buffer: 256,
                seed: 7,
                weights: Default::default(),
            },
            model: crate::training::ModelConfig {
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

    fn broker(id: &str, max: u32, cap: u32) -> Broker {
        let mut b: Broker = serde_json::from_str(r#"{"id":"x","name":"B","specialties":[{"type":"AUTO","proficiency":3}],"licenses":[{"state":"OR","lines":["AUTO","HOME"],"expiresOn":"2099-01-01"}],"capacity":{"maxConcurrent":1,"dailyCap":1}}"#).unwrap();
        b.id = id.into();
        b.capacity.max_concurrent = max;
        b.capacity.daily_cap = cap;
        b
    }

    fn lead(id: &str) -> DecideRequest {
        serde_json::from_value(
            serde_json::json!({"leadId": id, "leadData": {"insuranceTypes": ["AUTO"], "state": "OR", "estimatedValue": 500}}),
        )
        .unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Decide(u8),
        Event(u8, EventKind),
        Drain,
        Archive,
    }

    fn op() -> impl Gen<Value = Op> {
        let kinds = prop::sample::select(vec![
            EventKind::Accepted,
            EventKind::Rejected,
            EventKind::Contacted,
            EventKind::Converted,
            EventKind::Lost,
            EventKind::Closed,
        ]);
        prop_oneof![
            4 => (0u8..40).prop_map(Op::Decide),
            6 => (0u8..40, kinds).prop_map(|(l, k)| Op::Event(l, k)),
            1 => Just(Op::Drain),
            1 => Just(Op::Archive),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random traffic: no broker ever holds more than its capacity or takes more than its
        /// daily cap, and the state rebuilt from the journal equals every actor's live state and
        /// holds the same leads (finished leads are archived at once, and their ids reused).
        #[test]
        fn capacity_holds_and_replay_equals_live(ops in prop::collection::vec(op(), 1..120), caps in prop::collection::vec((1u32..4, 1u32..8), 1..5), arbiters in 0usize..3) {
            actix_rt::System::new().block_on(async move {
                let dir = tempfile::tempdir().unwrap();
                let mut cfg = config(dir.path());
                cfg.storage.finished_lead_retention_seconds = 0;
                let engine = start_placed(cfg, arbiters).await;
                let r = engine.router().clone();
                for (i, (max, cap)) in caps.iter().enumerate() {
                    r.create_broker(broker(&format!("b{i}"), *max, *cap)).await.unwrap();
                }
                for op in ops {
                    match op {
                        Op::Decide(l) => drop(r.decide(lead(&format!("l{l}"))).await.unwrap()),
                        Op::Event(l, k) => drop(r.lead_event(&format!("l{l}"), LeadEventRequest { kind: k, at: None, value: None }).await),
                        Op::Drain => {
                            let _ = r.drain_once().await;
                        }
                        Op::Archive => drop(r.archive_finished().await.unwrap()),
                    }
                    for (i, (max, cap)) in caps.iter().enumerate() {
                        let v = r.inspect(&format!("b{i}")).await.unwrap();
                        assert!(v.live.open_count() <= *max, "b{i} holds {} > {max}", v.live.open_count());
                        assert!(v.live.daily_used <= *cap, "b{i} used {} > {cap} today", v.live.daily_used);
                    }
                }
                // Let background queue sweeps finish before comparing.
                while r.inner.draining.load(Ordering::Acquire) {
                    actix_rt::time::sleep(StdDuration::from_millis(1)).await;
                }
                r.journal().flush().await.unwrap();
                let mut replay = EngineState::default();
                crate::journal::read_all(&journal_dir(dir.path()), |s, rec| replay.apply(s, &rec)).unwrap();
                for (i, _) in caps.iter().enumerate() {
                    let id = format!("b{i}");
                    assert_eq!(r.inspect(&id).await.unwrap().live, replay.brokers[&id].live, "broker {id}");
                }
                for (id, lead) in &replay.leads {
                    let live = r.lead(id).await.unwrap();
                    assert_eq!((live.state, &live.broker_id, &live.decisions, &live.events), (lead.state, &lead.broker_id, &lead.decisions, &lead.events));
                }
                assert_eq!(r.inner.leads.len(), replay.leads.len(), "the same leads, none archived on one side only");
                engine.shutdown().await.unwrap();
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A snapshot that stopped after some of its leads and before its meta key (a crash
        /// between its batches), loaded and replayed, gives the state the whole journal gives.
        #[test]
        fn a_snapshot_stopped_between_batches_replays_to_the_journal_state(
            ops in prop::collection::vec(op(), 1..120),
            cuts in (0.0f64..1.0, 0.0f64..1.0),
            written in prop::collection::vec(prop::bool::ANY, 0..48),
        ) {
            actix_rt::System::new().block_on(async move {
                use crate::snapshot::{note_changes, SnapshotStore};
                use std::collections::HashSet;
                let dir = tempfile::tempdir().unwrap();
                let mut cfg = config(dir.path());
                cfg.storage.finished_lead_retention_seconds = 0;
                // Small segments, so start-up's reading skips whole segments the snapshot covers.
                cfg.storage.segment_bytes = 4096;
                let engine = start_placed(cfg, 1).await;
                let r = engine.router().clone();
                for i in 0..2 {
                    r.create_broker(broker(&format!("b{i}"), 2, 6)).await.unwrap();
                }
                // Four lead ids, so archived ids come back often.
                for op in ops {
                    match op {
                        Op::Decide(l) => drop(r.decide(lead(&format!("l{}", l % 4))).await.unwrap()),
                        Op::Event(l, k) => drop(r.lead_event(&format!("l{}", l % 4), LeadEventRequest { kind: k, at: None, value: None }).await),
                        Op::Drain => {
                            let _ = r.drain_once().await;
                        }
                        Op::Archive => drop(r.archive_finished().await.unwrap()),
                    }
                }
                engine.shutdown().await.unwrap();
                let mut records = Vec::new();
                crate::journal::read_all(&journal_dir(dir.path()), |seq, rec| records.push((seq, rec))).unwrap();
                let state_at = |k: usize| {
                    let mut s = EngineState::default();
                    for (seq, rec) in &records[..k] {
                        s.apply(*seq, rec);
                    }
                    s
                };
                let n = records.len();
                let first = (cuts.0 * n as f64) as usize;
                let second = first + (cuts.1 * (n - first) as f64) as usize;
                let mut store = SnapshotStore::open(&dir.path().join("stopped")).unwrap();
                let (mut brokers, mut leads) = (HashSet::new(), HashSet::new());
                for (_, rec) in &records[..first] {
                    note_changes(rec, &mut brokers, &mut leads);
                }
                let old = state_at(first);
                store.save(&old, &brokers, &leads).unwrap();
                // The next snapshot writes some of its leads, and stops.
                let (mut brokers, mut leads) = (HashSet::new(), HashSet::new());
                for (_, rec) in &records[first..second] {
                    note_changes(rec, &mut brokers, &mut leads);
                }
                let mut leads: Vec<String> = leads.into_iter().collect();
                leads.sort();
                let some = leads.iter().zip(written.iter().chain(std::iter::repeat(&true))).filter(|(_, w)| **w).map(|(id, _)| id);
                store.write_leads(&state_at(second), some, 3).unwrap();
                let (meta, mut loaded) = store.load().unwrap().unwrap();
                assert_eq!(meta.seq, old.seq, "the meta key still covers the first snapshot");
                // As start-up reads the journal: only what the meta key does not cover.
                crate::journal::read_after(&journal_dir(dir.path()), meta.seq, |seq, rec| loaded.apply(seq, &rec)).unwrap();
                assert_eq!(loaded, state_at(n));
            });
        }
    }

    #[actix_rt::test]
    async fn decisions_caps_and_sla_follow_the_engine_clock() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        // The test broker has no schedule, so its day is the UTC day.
        let t0 = Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap();
        let clock = crate::clock::ManualClock::new(t0);
        let engine = Engine::start_with_clock(config(dir.path()), vec![], clock.clone()).await.unwrap();
        let r = engine.router().clone();
        r.create_broker(broker("c1", 5, 1)).await.unwrap();
        let DecideOutcome::Assigned(a) = r.decide(lead("first")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!(a.decision.decided_at, t0, "decisions are stamped with the engine clock");
        // The daily cap of 1 is used up on the clock's day, whatever the wall clock says.
        let DecideOutcome::Waiting(w) = r.decide(lead("second")).await.unwrap() else { panic!("queued expected") };
        assert_eq!(w.excluded.get(&Exclusion::DailyCapReached), Some(&1));
        // Two simulated hours later the broker makes first contact: 120 minutes, an SLA miss
        // against the 30-minute target.
        clock.advance(Duration::hours(2));
        r.lead_event("first", LeadEventRequest { kind: EventKind::Accepted, at: None, value: None }).await.unwrap();
        r.lead_event("first", LeadEventRequest { kind: EventKind::Contacted, at: None, value: None }).await.unwrap();
        let p = r.performance("c1").await.unwrap();
        assert_eq!((p.all_time.avg_first_contact_minutes, p.all_time.sla_compliance), (Some(120.0), Some(0.0)));
        // An event later than the engine's now is refused as in the future.
        let future = LeadEventRequest { kind: EventKind::Closed, at: Some(t0 + Duration::hours(3)), value: None };
        assert!(r.lead_event("first", future).await.is_err());
        // The next day the cap is free again.
        clock.advance(Duration::days(1));
        let DecideOutcome::Assigned(b) = r.decide(lead("third")).await.unwrap() else { panic!("assigned on the next day") };
        assert_eq!(b.decision.decided_at, t0 + Duration::hours(26));
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn a_simulated_engine_sweeps_its_queue_only_when_asked() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let t0 = Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap();
        let clock = crate::clock::ManualClock::new(t0);
        let engine = Engine::start_simulated(config(dir.path()), clock.clone()).await.unwrap();
        let r = engine.router().clone();
        r.create_broker(broker("s1", 1, 10)).await.unwrap();
        assert!(matches!(r.decide(lead("a")).await.unwrap(), DecideOutcome::Assigned(_)));
        assert!(matches!(r.decide(lead("b")).await.unwrap(), DecideOutcome::Waiting(_)));
        assert!(matches!(r.decide(lead("c")).await.unwrap(), DecideOutcome::Waiting(_)));
        // Closing frees the seat, but nothing sweeps the queue behind the simulation's back.
        r.lead_event("a", LeadEventRequest { kind: EventKind::Closed, at: None, value: None }).await.unwrap();
        actix_rt::time::sleep(StdDuration::from_millis(100)).await;
        assert_eq!(r.lead("b").await.unwrap().state, LeadState::Queued);
        let sweep = r.drain().await;
        assert_eq!(sweep, Sweep { assigned: vec![("b".into(), "s1".into())], expired: vec![] });
        // An hour later (the queue expiry) the sweep reports the lead that waited too long.
        clock.advance(Duration::hours(1));
        assert_eq!(r.drain().await, Sweep { assigned: vec![], expired: vec!["c".into()] });
        assert_eq!(r.lead("c").await.unwrap().state, LeadState::Expired);
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn working_hours_are_read_in_each_broker_time_zone() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        // Monday 2030-01-07 18:00 UTC: 23:30 in Kolkata, 10:00 in Los Angeles.
        let clock = crate::clock::ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 7, 18, 0, 0).unwrap());
        let engine = Engine::start_with_clock(config(dir.path()), vec![], clock.clone()).await.unwrap();
        let r = engine.router().clone();
        // One scan meets every zone: a broker whose hours hold only in another zone's local time
        // is outside them.
        for (id, tz, from, to) in [
            ("h-utc", "UTC", "17:00", "19:00"),
            ("h-kolkata-in", "Asia/Kolkata", "23:00", "24:00"),
            ("h-kolkata-out", "Asia/Kolkata", "17:00", "19:00"),
            ("h-la-out", "America/Los_Angeles", "17:00", "19:00"),
        ] {
            let mut b = broker(id, 5, 5);
            b.schedule = Some(leadrouter_models::Schedule {
                timezone: tz.into(),
                hours: [("mon".to_string(), [from.to_string(), to.to_string()])].into(),
            });
            r.create_broker(b).await.unwrap();
        }
        let p = r.predict(lead("hours")).await.unwrap();
        let mut ids: Vec<_> = p.candidates.iter().map(|c| c.broker_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["h-kolkata-in", "h-utc"]);
        assert_eq!((p.eligible, p.excluded.get(&Exclusion::OutsideHours)), (2, Some(&2)));
        // An hour later it is Tuesday in Kolkata and 19:00, the exclusive end, in UTC.
        clock.advance(Duration::hours(1));
        let p = r.predict(lead("hours")).await.unwrap();
        assert_eq!((p.eligible, p.excluded.get(&Exclusion::OutsideHours)), (0, Some(&4)));
        engine.shutdown().await.unwrap();
    }

    /// An engine with its broker actors on `arbiters` threads of their own, or with 0 on this
    /// thread. None: a decision settles in place; one: scored and reserved by a task on that
    /// arbiter's thread; two: from the caller.
    async fn start_placed(mut cfg: EngineConfig, arbiters: usize) -> Engine {
        match arbiters {
            0 => Engine::start_embedded(cfg, vec![]).await.unwrap(),
            n => {
                cfg.routing.arbiters = n;
                Engine::start(cfg, vec![]).await.unwrap()
            }
        }
    }

    #[actix_rt::test]
    async fn only_the_top_k_are_asked_to_score() {
        for arbiters in [0, 1, 2] {
            top_k_asked(arbiters).await;
        }
    }

    async fn top_k_asked(arbiters: usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.routing.top_k = 8;
        let engine = start_placed(cfg, arbiters).await;
        let r = engine.router().clone();
        // Created in descending id order, so index positions run against the ids.
        for i in (0..100).rev() {
            let mut b = broker(&format!("k{i:03}"), 5, 5);
            b.specialties[0].proficiency = (i % 5 + 1) as u8;
            r.create_broker(b).await.unwrap();
        }
        let DecideOutcome::Assigned(a) = r.decide(lead("k-lead")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!((a.decision.eligible, a.decision.scored), (100, 8));
        // The pre-rank keeps the best-skilled brokers in the top K: 20 tie at proficiency 5, and
        // the 8 first by id are asked. They tie again on score; the first by id wins.
        assert_eq!(a.decision.breakdown.specialty.value, 1.0);
        assert_eq!(a.decision.broker_id, "k004");
        let mut handled = BTreeMap::new();
        for i in 0..100 {
            let n = r.inspect(&format!("k{i:03}")).await.unwrap().counters.handled;
            // Less the Inspect itself.
            if n > 1 {
                handled.insert(i, n - 1);
            }
        }
        // Score to k004, k009, …, k039, and one Reserve to the winner.
        let asked: BTreeMap<_, _> = (0..8).map(|j| (5 * j + 4, if j == 0 { 2 } else { 1 })).collect();
        assert_eq!(handled, asked);
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn a_broker_that_misses_the_deadline_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(config(dir.path()), vec![]).await.unwrap();
        let r = engine.router().clone();
        // Two arbiters, brokers placed round robin: b0 on the first, b1 on the second.
        let mut strong = broker("b0", 5, 5);
        strong.specialties[0].proficiency = 5;
        r.create_broker(strong).await.unwrap();
        r.create_broker(broker("b1", 5, 5)).await.unwrap();
        // Stall b0's arbiter thread past the 50 ms deadline.
        r.inner.arbiters[0].spawn_fn(|| std::thread::sleep(StdDuration::from_millis(300)));
        let DecideOutcome::Assigned(a) = r.decide(lead("late")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!(a.decision.broker_id, "b1");
        assert_eq!(a.decision.skipped.len(), 1);
        assert_eq!((a.decision.skipped[0].broker_id.as_str(), a.decision.skipped[0].reason.as_str()), ("b0", "deadline"));
        assert!(a.decision.breakdown.specialty.value < 1.0);
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn a_broker_whose_arbiter_has_stopped_is_skipped_as_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(config(dir.path()), vec![]).await.unwrap();
        let r = engine.router().clone();
        // b0 on the first arbiter, b1 on the second.
        r.create_broker(broker("b0", 5, 5)).await.unwrap();
        r.create_broker(broker("b1", 5, 5)).await.unwrap();
        let first = &r.inner.arbiters[0];
        first.stop();
        while first.spawn(async {}) {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let DecideOutcome::Assigned(a) = r.decide(lead("orphan")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!(a.decision.broker_id, "b1");
        let skipped: Vec<_> = a.decision.skipped.iter().map(|s| (s.broker_id.as_str(), s.reason.as_str())).collect();
        assert_eq!(skipped, [("b0", "mailbox")]);
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn an_embedded_engine_keeps_its_actors_on_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start_embedded(config(dir.path()), vec![]).await.unwrap();
        let r = engine.router().clone();
        r.create_broker(broker("b0", 1, 5)).await.unwrap();
        // The one arbiter is this thread's: `routing.arbiters = 2` in the config does not apply.
        assert_eq!(r.inner.arbiters.len(), 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(r.inner.arbiters[0].spawn_fn(move || {
            let _ = tx.send(std::thread::current().id());
        }));
        assert_eq!(rx.await.unwrap(), std::thread::current().id());
        // Decided in place: reserved, journaled, and b0 is then full.
        let DecideOutcome::Assigned(a) = r.decide(lead("here")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!(a.decision.broker_id, "b0");
        assert_eq!(r.inspect("b0").await.unwrap().live.open.keys().collect::<Vec<_>>(), ["here"]);
        let DecideOutcome::Waiting(w) = r.decide(lead("full")).await.unwrap() else { panic!("queued expected") };
        assert_eq!(w.status, LeadState::Queued);
        assert_eq!(r.inner.metrics.settle_abandoned.get(), 0);
        let profile = r.inner.index.get("b0").unwrap().broker.clone();
        engine.shutdown().await.unwrap();
        // With the engine and the last router handle gone, b0's actor ends and lets go of its
        // profile.
        drop(r);
        for _ in 0..200 {
            if Arc::strong_count(&profile) == 1 {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        assert_eq!(Arc::strong_count(&profile), 1);
        let mut replay = EngineState::default();
        crate::journal::read_all(&journal_dir(dir.path()), |s, rec| replay.apply(s, &rec)).unwrap();
        assert_eq!(replay.brokers["b0"].live.open.keys().collect::<Vec<_>>(), ["here"]);
    }

    #[test]
    fn an_embedded_engine_outside_an_actix_system_is_refused_before_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let Err(e) = rt.block_on(Engine::start_embedded(config(&data), vec![])) else { panic!("refusal expected") };
        assert_eq!(e.to_string(), "actor unavailable: an engine with its actors on the caller's thread must start inside an actix system");
        assert!(!data.exists());
    }

    /// An engine with one arbiter, and broker `b0`, with room for one lead, on it.
    async fn one_arbiter(dir: &std::path::Path) -> (Engine, RouterSupervisor) {
        let mut cfg = config(dir);
        cfg.routing.arbiters = 1;
        let engine = Engine::start(cfg, vec![]).await.unwrap();
        let r = engine.router().clone();
        r.create_broker(broker("b0", 1, 5)).await.unwrap();
        (engine, r)
    }

    #[actix_rt::test]
    async fn a_stalled_arbiter_leaves_the_lead_queued_and_reserves_nothing_later() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, r) = one_arbiter(dir.path()).await;
        // Stall the only arbiter past twice the 50 ms deadline: the settle task cannot start.
        r.inner.arbiters[0].spawn_fn(|| std::thread::sleep(StdDuration::from_millis(300)));
        let DecideOutcome::Waiting(w) = r.decide(lead("stalled")).await.unwrap() else { panic!("queued expected") };
        assert_eq!(w.status, LeadState::Queued);
        assert_eq!(r.inner.metrics.settle_abandoned.get(), 1);
        assert_eq!(r.lead("stalled").await.unwrap().state, LeadState::Queued);
        // Waits for the stall to end (the abandoned task starts then).
        r.inspect("b0").await.unwrap();
        // The next lead takes b0's only seat. Had the abandoned task reserved it (its `Reserve`
        // reaches b0's mailbox first), this one would find b0 full.
        let DecideOutcome::Assigned(a) = r.decide(lead("after")).await.unwrap() else { panic!("assigned expected") };
        assert_eq!(a.decision.broker_id, "b0");
        let live = r.inspect("b0").await.unwrap().live;
        assert_eq!(live.open.keys().collect::<Vec<_>>(), ["after"]);
        engine.shutdown().await.unwrap();
    }

    #[actix_rt::test]
    async fn with_its_only_arbiter_stopped_a_lead_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, r) = one_arbiter(dir.path()).await;
        let only = &r.inner.arbiters[0];
        only.stop();
        while only.spawn(async {}) {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let DecideOutcome::Waiting(w) = r.decide(lead("orphan")).await.unwrap() else { panic!("queued expected") };
        assert_eq!(w.status, LeadState::Queued);
        engine.shutdown().await.unwrap();
    }

    proptest! {
        #[test]
        fn top_k_first_matches_a_full_sort(keys in prop::collection::vec(0u8..6, 0..60), k in 0usize..12) {
            // Few distinct keys, so ties (broken by position here) are common.
            let keyed: Vec<(f64, u32)> = keys.iter().enumerate().map(|(i, &v)| (f64::from(v), i as u32)).collect();
            let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1));
            let mut sorted = keyed.clone();
            sorted.sort_by(cmp);
            let order = top_k_first(keyed, k, cmp);
            let n = k.min(order.len());
            prop_assert_eq!(&order[..n], &sorted.iter().map(|e| e.1).collect::<Vec<_>>()[..n]);
            let mut all = order.clone();
            all.sort_unstable();
            prop_assert_eq!(all, (0..keys.len() as u32).collect::<Vec<_>>(), "every position once");
        }
    }
}
