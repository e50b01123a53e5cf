//! Start-up and shutdown of the live system.
//!
//! Start-up: open the sled snapshot, recover the journal (cutting a torn tail, refusing
//! corruption), replay the records after the snapshot, start the journal writer and the
//! snapshotter, start one actor per broker, load the demo brokers into a new data directory.
//! Shutdown: stop routing, flush and stop the journal, write a final snapshot, stop the arbiters.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix_rt::Arbiter;
use leadrouter_models::Broker;

use crate::clock::{SharedClock, SystemClock};
use crate::config::EngineConfig;
use crate::error::{ActorError, Result};
use crate::metrics::Metrics;
use crate::model::registry::Registry;
use crate::router::{ActorThreads, RouterSupervisor};
use crate::semantic::Semantic;
use crate::storage::experiments::SharedBook;
use crate::storage::journal::{self, Journal, JournalSettings, ReadReport};
use crate::storage::record::Record;
use crate::storage::snapshot::{SnapshotHandle, SnapshotMeta, SnapshotStore, Snapshotter, Unsaved};
use crate::storage::state::EngineState;

mod layout;

pub use layout::{journal_dir, models_dir, LOCK_FILE};
use layout::{lock_data_dir, snapshot_dir};

/// Where the broker actors run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On `routing.arbiters` threads of their own, started and stopped with the engine. Callers
    /// on any thread (the HTTP workers) hand each decision to them: the server.
    OwnThreads,
    /// On the arbiter of the thread that starts the engine; `routing.arbiters` does not apply.
    /// A program that drives the engine from that thread (the simulator, a benchmark) never
    /// hands a decision to another thread. That thread must keep running its actix system while
    /// the engine is in use. After [`Engine::shutdown`], the actors end once every router handle
    /// is dropped.
    Caller,
}

/// What start-up found and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// Journal records read.
    pub journal: ReadReport,
    /// Records replayed on top of the snapshot.
    pub replayed: u64,
    /// Demo brokers loaded into a new data directory.
    pub demo_loaded: usize,
    /// Milliseconds start-up took.
    pub millis: u128,
}

/// The running live system.
pub struct Engine {
    router: RouterSupervisor,
    snapshotter: Option<Snapshotter>,
    arbiters: Vec<Arbiter>,
    /// What start-up found.
    pub report: StartReport,
    /// Held until the engine is dropped: one process per data directory.
    _lock: std::fs::File,
}

impl Engine {
    /// Starts the engine; `demo` brokers are loaded only into a new, empty data directory when
    /// `storage.demo` is on. Call inside a running actix system.
    pub async fn start(cfg: EngineConfig, demo: Vec<Broker>) -> Result<Self> {
        Self::start_with_clock(cfg, demo, Arc::new(SystemClock)).await
    }

    /// [`Engine::start`] with the broker actors on the calling thread's arbiter
    /// ([`Placement::Caller`]), for a program that makes its decisions from that thread.
    pub async fn start_embedded(cfg: EngineConfig, demo: Vec<Broker>) -> Result<Self> {
        Self::start_inner(cfg, demo, Arc::new(SystemClock), true, Placement::Caller).await
    }

    /// [`Engine::start`] with the engine's notion of "now" taken from `clock` (a simulation's
    /// [`crate::clock::ManualClock`]).
    pub async fn start_with_clock(cfg: EngineConfig, demo: Vec<Broker>, clock: SharedClock) -> Result<Self> {
        Self::start_inner(cfg, demo, clock, true, Placement::OwnThreads).await
    }

    /// An engine for a simulation: time comes from `clock`, and the queue is swept only when the
    /// simulation calls [`RouterSupervisor::drain`], so runs are reproducible. No demo brokers.
    /// The broker actors run on the calling thread ([`Placement::Caller`]), which drives the
    /// simulation.
    pub async fn start_simulated(cfg: EngineConfig, clock: SharedClock) -> Result<Self> {
        Self::start_inner(cfg, Vec::new(), clock, false, Placement::Caller).await
    }

    async fn start_inner(cfg: EngineConfig, demo: Vec<Broker>, clock: SharedClock, background: bool, placement: Placement) -> Result<Self> {
        let started = Instant::now();
        cfg.validate()?;
        // Checked before anything is opened or started.
        let caller = match placement {
            Placement::OwnThreads => None,
            Placement::Caller => Some(Arbiter::try_current().ok_or_else(|| {
                ActorError::Unavailable("an engine with its actors on the caller's thread must start inside an actix system".into())
            })?),
        };
        let data = cfg.storage.data_dir.clone();
        std::fs::create_dir_all(&data)?;
        let lock = lock_data_dir(&data)?;
        let mut store = SnapshotStore::open(&snapshot_dir(&data))?;
        let (snapshot, mut state) = match store.load()? {
            Some((meta, state)) => (Some(meta), state),
            None => (None, EngineState::default()),
        };
        // A snapshot without a book (none yet, or written before experiments existed) starts an
        // empty one at its position: the records before it hold no experiment.
        // A book saved at an earlier snapshot holds every record up to this one's position: the
        // records in between did not change it (else it would have been saved again).
        let mut book = store.load_book()?.unwrap_or_default();
        book.seq = book.seq.max(state.seq);
        book.fairness_settings = Arc::new(cfg.routing.fairness.clone());
        store.close();
        let from = state.seq;
        let holds = state.holds_through();
        if holds > from {
            tracing::warn!(
                snapshot = from,
                leads = state.leads_ahead(),
                through = holds,
                "the last snapshot stopped before its end: its leads written so far skip the records they hold"
            );
        }
        let mut replayed = 0;
        let jdir = journal_dir(&data);
        // What the replay changes is written by the first snapshot (the book's own position
        // tells whether the replay changed it).
        let mut unsaved = Unsaved { book_saved: book.touched, ..Unsaved::default() };
        // The records the snapshot covers are checked, not decoded (segments holding only such
        // records are not read at all).
        let report = journal::recover(&jdir, from, |seq, rec| {
            replayed += 1;
            unsaved.note(&rec);
            state.apply(seq, &rec);
            book.apply(seq, &rec, None);
        })?;
        let book: SharedBook = Arc::new(parking_lot::RwLock::new(book));
        if report.last_seq < holds {
            return Err(ActorError::Snapshot(format!(
                "snapshot covers journal record {} but the journal ends at {}; the journal in {} is missing records",
                holds,
                report.last_seq,
                jdir.display()
            )));
        }
        let fresh = snapshot.is_none() && report.records == 0;
        let (tx, rx) = mpsc::channel();
        let s = &cfg.storage;
        let metrics = Arc::new(Metrics::new());
        let brokers: Vec<Broker> = state.brokers.values().map(|e| e.broker.clone()).collect();
        let semantic = Semantic::start(cfg.semantic.clone(), &data, &jdir, metrics.clone(), brokers);
        let journal = Journal::start(&jdir, report.last_seq, JournalSettings::of(s), tx, metrics.clone())?;
        let tap = semantic.clone();
        let snapshotter = Snapshotter::start(
            store,
            state.clone(),
            book.clone(),
            rx,
            journal.clone(),
            Duration::from_secs(s.snapshot_interval_seconds),
            metrics.clone(),
            Box::new(move |rec: &Record, state: &EngineState| tap.tap(rec, state)),
            unsaved,
        )?;
        let (arbiters, threads) = match caller {
            Some(handle) => (Vec::new(), ActorThreads { arbiters: vec![handle], home: Some(std::thread::current().id()) }),
            None => {
                let own: Vec<Arbiter> = (0..cfg.routing.arbiter_threads()).map(|_| Arbiter::new()).collect();
                let handles = own.iter().map(|a| a.handle()).collect();
                (own, ActorThreads { arbiters: handles, home: None })
            }
        };
        let demo_wanted = cfg.storage.demo && fresh;
        let registry = Arc::new(Registry::open(&models_dir(&data), &jdir, cfg.model.clone(), cfg.routing.prior_strength)?);
        let (router, notices) = RouterSupervisor::new(cfg, journal, registry, metrics, threads, state, book, clock, semantic);
        let mut demo_loaded = 0;
        if demo_wanted {
            for b in demo {
                router.create_broker(b).await?;
                demo_loaded += 1;
            }
        }
        if background {
            router.start_background(notices);
        } else {
            router.start_manual(notices);
        }
        let report = StartReport { snapshot, journal: report, replayed, demo_loaded, millis: started.elapsed().as_millis() };
        tracing::info!(
            brokers = router.broker_count(),
            queued = router.queue_len(),
            replayed = report.replayed,
            demo = report.demo_loaded,
            ms = report.millis as u64,
            "engine started"
        );
        Ok(Self { router, snapshotter: Some(snapshotter), arbiters, report, _lock: lock })
    }

    /// The router supervisor.
    pub fn router(&self) -> &RouterSupervisor {
        &self.router
    }

    /// A handle that writes snapshots on request.
    pub fn snapshots(&self) -> Result<SnapshotHandle> {
        self.snapshotter.as_ref().map(Snapshotter::handle).ok_or_else(|| ActorError::Snapshot("engine stopped".into()))
    }

    /// Graceful stop: refuse new work, flush and stop the journal, take a final snapshot, stop
    /// the actors' arbiters ([`Placement::OwnThreads`]) or cancel the actors' timers
    /// ([`Placement::Caller`]).
    pub async fn shutdown(mut self) -> Result<()> {
        self.router.stop();
        let result = self.router.journal().stop().await;
        if let Some(s) = self.snapshotter.take() {
            // The snapshotter writes its final snapshot when the journal's stream ends.
            s.join();
        }
        // After the snapshotter, whose last records it may still be given: it saves the index.
        self.router.semantic().stop();
        if self.arbiters.is_empty() {
            // Placement::Caller: the actors stay on the owner's thread until its handles are gone.
            self.router.disarm_actors().await;
        }
        for a in &self.arbiters {
            a.stop();
        }
        tracing::info!("engine stopped");
        result
    }
}
