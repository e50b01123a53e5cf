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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration as StdDuration;

use actix::Supervisor;
use actix_rt::ArbiterHandle;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use leadrouter_models::{Broker, LeadState, Policies};
use parking_lot::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::broker_actor::BrokerActor;
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::error::{ActorError, Result};
use crate::experiments::{Live, SharedBook};
use crate::feed::Feed;
use crate::index::{BrokerIndex, IndexEntry};
use crate::messages::{Disarm, Notice};
use crate::metrics::Metrics;
use crate::model::registry::Registry;
use crate::queue::LeadQueue;
use crate::semantic::Semantic;
use crate::storage::journal::Journal;
use crate::storage::state::{BrokerLive, EngineState, LeadRecord};

mod analytics;
mod archive;
mod brokers;
mod decide;
mod evaluate;
mod experiments;
mod gauges;
mod leaderboard;
mod lifecycle;
mod order;
mod plan;
mod predict;
mod settle;
mod sweep;

pub use leaderboard::RECENT_DAYS;
pub use predict::WhatIf;
pub use sweep::Sweep;

type LeadCell = Arc<tokio::sync::Mutex<Option<LeadRecord>>>;

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
    /// One policy per strategy, with their state.
    policies: Policies,
    /// The experiments as the decision path reads them, and the routing default.
    experiments: Live,
    /// Per-arm totals, kept by the snapshotter as it follows the journal.
    book: SharedBook,
    /// Fairness: leads per group over the rolling window and the dual prices, moved with every
    /// committed decision (started from the book's window, which replay brought up to date).
    fairness: Mutex<leadrouter_models::fairness::Window>,
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
    /// Embeddings, the vector index and the semantic terms of leads with text.
    semantic: Semantic,
    /// Off-policy evaluation jobs.
    evaluations: crate::evaluation::jobs::Jobs,
}

/// Handle to the router supervisor; cheap to clone.
#[derive(Clone)]
pub struct RouterSupervisor {
    inner: Arc<Inner>,
}

impl RouterSupervisor {
    /// Builds the supervisor over `state` and `book` (from snapshot and replay): starts one actor
    /// per broker, refills the lead table and queue, and takes the experiments from the book.
    /// Call inside a running actix system.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: EngineConfig,
        journal: Journal,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        threads: ActorThreads,
        state: EngineState,
        book: SharedBook,
        clock: SharedClock,
        semantic: Semantic,
    ) -> (Self, UnboundedReceiver<Notice>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (cfg_feed_buffer, overload_at) = (cfg.routing.feed_buffer, cfg.routing.throttle.overload_utilisation);
        let seed = match cfg.routing.seed {
            0 => fastrand::u64(..),
            s => s,
        };
        let (catalog, fairness) = {
            let b = book.read();
            (b.catalog.clone(), b.fairness.clone())
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
                policies: Policies::default(),
                fairness: Mutex::new(fairness),
                experiments: Live::new(catalog),
                book,
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
                feed: Arc::new(Feed::with_overload(cfg_feed_buffer, overload_at)),
                registry,
                metrics,
                clock,
                semantic,
                evaluations: Default::default(),
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
                q.push_lead(&lead);
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
        self.review_in_background();
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
                if me.inner.semantic.refresh_due() {
                    if let Err(e) = me.refresh_vectors() {
                        tracing::debug!(error = %e, "semantic: the periodic refresh did not start");
                    }
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
            self.tell(&e, "disarm", Disarm).await;
        }
    }

    /// Sends `msg` to a broker actor whose answer is not needed. A message that cannot be
    /// delivered (the actor or its arbiter stopped) is never dropped silently: it is logged and
    /// counted in `leadrouter_actor_send_failures_total{message}`, `what` being one of
    /// [`crate::metrics::TOLD`].
    pub(super) async fn tell<M>(&self, entry: &IndexEntry, what: &'static str, msg: M)
    where
        M: actix::Message<Result = ()> + Send + 'static,
        BrokerActor: actix::Handler<M>,
    {
        if let Err(e) = entry.send(msg).await {
            self.inner.metrics.actor_send_failures.with_label_values(&[what]).inc();
            tracing::error!(broker = %entry.broker.id, message = what, error = %e, "a message to a broker actor was not delivered");
        }
    }

    /// The journal handle.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The capacity feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.inner.feed
    }

    /// The model registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Embeddings and the vector index.
    pub fn semantic(&self) -> &Semantic {
        &self.inner.semantic
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
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
        let t = Arc::new(self.inner.cfg.routing.throttle.clone());
        let addr = Supervisor::start_in_arbiter(&self.inner.arbiters[i], move |_| BrokerActor::new(b, live, c, n, f, k, t));
        IndexEntry::new(broker, profile, addr, counters)
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(ActorError::Unavailable("engine is shutting down".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
