//! Snapshots in sled: each broker's and lead's state plus the journal position they cover.
//!
//! The snapshotter thread follows the journal writer: it applies every committed record to its
//! own `EngineState`, so a snapshot always matches one exact journal position, and it writes only
//! what changed since the last snapshot. The journal stays the truth; a snapshot is a shortcut.
//!
//! The changed leads go first, a thousand per sled batch, each stored (LZ4-compressed JSON) with
//! the position it holds; then the brokers and the meta key (the position the whole snapshot
//! covers) in one last batch. A crash in between leaves some leads ahead of the meta key:
//! loading marks them, and replay skips the records they already hold.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::{ActorError, Result};
use crate::metrics::Metrics;
use crate::storage::experiments::{Book, SharedBook};
use crate::storage::journal::{Committed, Journal};
use crate::storage::record::Record;
use crate::storage::state::{BrokerEntry, EngineState, LeadRecord};

const META: &[u8] = b"meta";
/// The experiments' book (`experiments::Book`), LZ4-compressed JSON, written in the meta key's
/// batch when it changed since the last snapshot.
const BOOK: &[u8] = b"experiments";
const BROKER: &str = "broker/";
const LEAD: &str = "lead/";
/// How a lead's value begins: its JSON (a `StoredLead`), LZ4-compressed after this tag and the
/// JSON's length (4 bytes, little-endian). A lead's JSON is mostly its decisions, whose
/// alternatives repeat the same keys, so it shrinks about fourfold; sled's cost grows with the
/// bytes it copies and writes (PERFORMANCE.md, "What we learned").
const PACKED_LEAD: &[u8] = b"lz4:";
/// How a lead's value began before it was compressed: the `StoredLead` JSON itself. Older values
/// still are a bare `LeadRecord` and hold no more than the meta key. Both still load.
const STORED_LEAD: &[u8] = br#"{"seq":"#;
/// The largest JSON a packed lead may claim, so a damaged length cannot ask for a huge
/// allocation (a lead's JSON is a few kilobytes).
const MAX_LEAD_JSON: usize = 64 << 20;
/// How sled names its IO threads, which write part of every snapshot. They take the priority of
/// the thread that first used sled (the main thread, opening the store at start-up), so the
/// snapshotter lowers theirs before each snapshot.
const SLED_IO: &str = "sled-io";
/// Leads per sled batch. All changed leads in one batch held them in memory at once, with
/// sled's copies of them: 5.8–6.0 s and about 2.1 GB more memory for 91,497–95,004 leads
/// (PERFORMANCE.md).
const LEAD_CHUNK: usize = 1000;
/// sled's page cache (its default is 1 GB). A snapshot is read back only at start-up.
const CACHE_BYTES: u64 = 64 << 20;

/// A lead as stored, with the journal position it holds.
#[derive(Serialize)]
struct StoredLeadRef<'a> {
    seq: u64,
    lead: &'a LeadRecord,
}

/// A lead as read back.
#[derive(Deserialize)]
struct StoredLead {
    seq: u64,
    lead: LeadRecord,
}

/// A lead's value as stored: its JSON with the position, compressed.
fn pack_lead(seq: u64, lead: &LeadRecord) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(&StoredLeadRef { seq, lead })?;
    Ok([PACKED_LEAD, &lz4_flex::compress_prepend_size(&json)].concat())
}

/// A lead's value read back, in any of the formats it was written in: the position it holds (0
/// when it holds no more than the meta key) and the lead.
fn unpack_lead(value: &[u8]) -> Result<(u64, LeadRecord)> {
    if let Some(packed) = value.strip_prefix(PACKED_LEAD) {
        let claimed = packed.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if claimed.is_none_or(|n| n > MAX_LEAD_JSON) {
            return Err(ActorError::Snapshot(format!("packed lead claims {claimed:?} bytes of JSON, at most {MAX_LEAD_JSON} allowed")));
        }
        let json = lz4_flex::decompress_size_prepended(packed).map_err(|e| ActorError::Snapshot(format!("packed lead: {e}")))?;
        let s: StoredLead = serde_json::from_slice(&json)?;
        Ok((s.seq, s.lead))
    } else if value.starts_with(STORED_LEAD) {
        let s: StoredLead = serde_json::from_slice(value)?;
        Ok((s.seq, s.lead))
    } else {
        Ok((0, serde_json::from_slice::<LeadRecord>(value)?))
    }
}

/// What the `meta` key holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMeta {
    /// Journal sequence number covered.
    pub seq: u64,
    /// When it was written.
    pub saved_at: chrono::DateTime<Utc>,
    /// Brokers in it.
    pub brokers: usize,
    /// Leads in it.
    pub leads: usize,
}

/// Opens sled at `path`, without its background flusher (every snapshot flushes itself). A
/// handle just dropped can keep sled's file lock for a moment, and only this process can hold it
/// (the data directory's lock), so a refused lock is tried again for up to two seconds.
fn open_sled(path: &Path) -> Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match sled::Config::new().path(path).cache_capacity(CACHE_BYTES).flush_every_ms(None).open() {
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return Ok(r?),
        }
    }
}

/// The sled database holding the latest snapshot.
///
/// sled keeps in memory the pages a scan or a batch went through, whatever its cache capacity,
/// until its handle is dropped: a server restarted on a snapshot of 70,685 leads held about
/// 310 MB less once the store closed sled after loading (PERFORMANCE.md). So the store closes
/// the database after loading and after each snapshot, and opens it again (in milliseconds)
/// when next used. The data directory's own lock (`Engine`), not sled's, keeps a second
/// process out meanwhile.
pub struct SnapshotStore {
    path: PathBuf,
    db: Option<sled::Db>,
}

impl SnapshotStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut store = Self { path: path.to_path_buf(), db: None };
        store.db()?;
        Ok(store)
    }

    /// The open database, opened again if closed.
    fn db(&mut self) -> Result<&sled::Db> {
        if self.db.is_none() {
            self.db = Some(open_sled(&self.path)?);
        }
        Ok(self.db.as_ref().expect("opened above"))
    }

    /// Closes the database (see the type's doc); the next use opens it again.
    pub fn close(&mut self) {
        self.db = None;
    }

    /// Loads the latest snapshot, if any.
    pub fn load(&mut self) -> Result<Option<(SnapshotMeta, EngineState)>> {
        let db = self.db()?;
        let Some(meta) = db.get(META)? else { return Ok(None) };
        let meta: SnapshotMeta = serde_json::from_slice(&meta)?;
        let mut state = EngineState::default();
        state.seq = meta.seq;
        for kv in db.scan_prefix(BROKER) {
            let (_, v) = kv?;
            let e: BrokerEntry = serde_json::from_slice(&v)?;
            state.brokers.insert(e.broker.id.clone(), e);
        }
        for kv in db.scan_prefix(LEAD) {
            let (_, v) = kv?;
            let (seq, l) = unpack_lead(&v)?;
            state.set_lead_ahead(&l.lead_id, seq);
            state.leads.insert(l.lead_id.clone(), l);
        }
        Ok(Some((meta, state)))
    }

    /// The experiments' book as last saved, if any. It holds every record up to its own
    /// position; records after it and up to the meta key's did not change it.
    pub fn load_book(&mut self) -> Result<Option<Book>> {
        let db = self.db()?;
        let Some(v) = db.get(BOOK)? else { return Ok(None) };
        let json = lz4_flex::decompress_size_prepended(&v).map_err(|e| ActorError::Snapshot(format!("experiments: {e}")))?;
        Ok(Some(serde_json::from_slice(&json)?))
    }

    /// [`Self::save_all`] without the book.
    pub fn save(&mut self, state: &EngineState, brokers: &HashSet<String>, leads: &HashSet<String>) -> Result<SnapshotMeta> {
        self.save_all(state, brokers, leads, None)
    }

    /// Writes the given brokers and leads of `state` (or removes them when gone), the book when
    /// given, and the meta key, then flushes and closes the database. The leads go first, in
    /// batches; the brokers, the book and the meta key last, in one batch.
    pub fn save_all(
        &mut self,
        state: &EngineState,
        brokers: &HashSet<String>,
        leads: &HashSet<String>,
        book: Option<&Book>,
    ) -> Result<SnapshotMeta> {
        let mut leads: Vec<&String> = leads.iter().collect();
        leads.sort_unstable();
        self.write_leads(state, leads, LEAD_CHUNK)?;
        let db = self.db()?;
        // Every lead is on disk before the meta key that covers it.
        db.flush()?;
        let mut batch = sled::Batch::default();
        for id in brokers {
            let key = format!("{BROKER}{id}");
            match state.brokers.get(id) {
                Some(e) => batch.insert(key.as_bytes(), serde_json::to_vec(e)?),
                None => batch.remove(key.as_bytes()),
            }
        }
        if let Some(b) = book {
            batch.insert(BOOK, lz4_flex::compress_prepend_size(&serde_json::to_vec(b)?));
        }
        let meta = SnapshotMeta { seq: state.seq, saved_at: Utc::now(), brokers: state.brokers.len(), leads: state.leads.len() };
        batch.insert(META, serde_json::to_vec(&meta)?);
        db.apply_batch(batch)?;
        db.flush()?;
        self.close();
        Ok(meta)
    }

    /// Writes the leads `ids` as they are in `state` (or removes those gone), `chunk` per batch,
    /// each with the position `state` is at.
    pub(crate) fn write_leads<'a>(&mut self, state: &EngineState, ids: impl IntoIterator<Item = &'a String>, chunk: usize) -> Result<()> {
        let db = self.db()?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for id in ids {
            let key = format!("{LEAD}{id}");
            match state.leads.get(id) {
                Some(lead) => batch.insert(key.as_bytes(), pack_lead(state.seq, lead)?),
                None => batch.remove(key.as_bytes()),
            }
            in_batch += 1;
            if in_batch == chunk {
                db.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            db.apply_batch(batch)?;
        }
        Ok(())
    }
}

/// Requests to the snapshotter.
pub enum SnapshotCmd {
    /// Write a snapshot now and report it.
    Now(oneshot::Sender<Result<SnapshotMeta>>),
}

/// Asks the snapshotter for a snapshot; cheap to clone.
#[derive(Clone)]
pub struct SnapshotHandle {
    cmd: mpsc::Sender<SnapshotCmd>,
}

impl SnapshotHandle {
    /// Writes a snapshot of everything committed so far.
    pub async fn snapshot_now(&self) -> Result<SnapshotMeta> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(SnapshotCmd::Now(tx)).map_err(|_| ActorError::Snapshot("snapshotter stopped".into()))?;
        rx.await.map_err(|_| ActorError::Snapshot("snapshotter stopped".into()))?
    }
}

/// Called with each record the snapshotter takes in, after it applied it to its state: work
/// that follows the journal (the vector index) without touching the decision path. It must not
/// wait.
pub type Tap = Box<dyn FnMut(&Record, &EngineState) + Send>;

/// What start-up changed and no snapshot holds yet: the brokers and leads the records replayed
/// after the snapshot's position touched, and the book's position as the snapshot held it. The
/// first snapshot writes them, so a snapshot never covers a position whose changes it lacks.
#[derive(Debug, Default)]
pub struct Unsaved {
    /// Brokers touched by the replayed records.
    pub brokers: HashSet<String>,
    /// Leads touched by the replayed records.
    pub leads: HashSet<String>,
    /// The book's `touched` as loaded from the snapshot (before the replay).
    pub book_saved: u64,
}

impl Unsaved {
    /// Notes a replayed record.
    pub fn note(&mut self, rec: &Record) {
        note_changes(rec, &mut self.brokers, &mut self.leads);
    }
}

/// The snapshotter thread.
pub struct Snapshotter {
    handle: SnapshotHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Snapshotter {
    /// Starts the thread with the state at start-up; it follows `committed` from the journal.
    ///
    /// Before each snapshot it flushes `journal`, so a snapshot never covers a record the journal
    /// has not made durable, whatever the durability mode.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        store: SnapshotStore,
        state: EngineState,
        book: SharedBook,
        committed: mpsc::Receiver<Committed>,
        journal: Journal,
        every: Duration,
        metrics: Arc<Metrics>,
        tap: Tap,
        unsaved: Unsaved,
    ) -> Result<Self> {
        let (cmd, cmd_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("snapshotter".into())
            .spawn(move || {
                crate::background::lower_priority("snapshotter");
                run(store, state, book, committed, journal, cmd_rx, every, metrics, tap, unsaved)
            })
            .map_err(ActorError::from)?;
        Ok(Self { handle: SnapshotHandle { cmd }, thread: Some(thread) })
    }

    /// A handle for snapshot requests.
    pub fn handle(&self) -> SnapshotHandle {
        self.handle.clone()
    }

    /// Waits for the thread to end (after the journal writer, its source, has ended).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The snapshotter's copy of the state and what changed since the last snapshot.
struct Follower {
    store: SnapshotStore,
    journal: Journal,
    metrics: Arc<Metrics>,
    state: EngineState,
    brokers: HashSet<String>,
    leads: HashSet<String>,
    /// The experiments' book, and the position of its last change already snapshotted.
    book: SharedBook,
    book_saved: u64,
    tap: Tap,
}

impl Follower {
    fn take(&mut self, seq: u64, rec: &Record) {
        note_changes(rec, &mut self.brokers, &mut self.leads);
        self.state.apply(seq, rec);
        self.book.write().apply(seq, rec, Some(&self.metrics));
        (self.tap)(rec, &self.state);
    }

    fn take_pending(&mut self, committed: &mpsc::Receiver<Committed>) {
        while let Ok((seq, rec)) = committed.try_recv() {
            self.take(seq, &rec);
        }
    }

    /// Snapshots what was taken in; `journal_open` is false once the writer has stopped (it made
    /// everything durable before stopping).
    fn save(&mut self, journal_open: bool) -> Result<SnapshotMeta> {
        if journal_open {
            self.journal.flush_blocking()?;
        }
        // Before each snapshot rather than once: a thread is found by its name, which it takes
        // only once it first runs, and sled starts more IO threads when busy (those started
        // from this thread take its priority, those started elsewhere do not).
        crate::background::lower_priority_of_threads(SLED_IO);
        let started = Instant::now();
        // This thread is the book's only writer: it cannot change while it is read here.
        let book = self.book.read();
        let changed = book.touched != self.book_saved;
        let touched = book.touched;
        let r = self.store.save_all(&self.state, &self.brokers, &self.leads, changed.then_some(&*book));
        drop(book);
        match &r {
            Ok(m) => {
                self.metrics.snapshot_seconds.observe(started.elapsed().as_secs_f64());
                tracing::debug!(seq = m.seq, ms = started.elapsed().as_millis() as u64, "snapshot written");
                self.brokers.clear();
                self.leads.clear();
                self.book_saved = touched;
            }
            Err(e) => tracing::error!(error = %e, "snapshot failed"),
        }
        r
    }
}

/// Adds the brokers and leads `rec` changes to `brokers` and `leads`.
pub(crate) fn note_changes(rec: &Record, brokers: &mut HashSet<String>, leads: &mut HashSet<String>) {
    if let Some(b) = rec.broker_id() {
        brokers.insert(b.to_string());
    }
    if let Some(l) = rec.lead_id() {
        leads.insert(l.to_string());
    }
    if let Record::Archived { lead_ids, .. } = rec {
        leads.extend(lead_ids.iter().cloned());
    }
}

/// How often the snapshotter takes in committed records.
const TICK: Duration = Duration::from_millis(20);

#[allow(clippy::too_many_arguments)]
fn run(
    store: SnapshotStore,
    state: EngineState,
    book: SharedBook,
    committed: mpsc::Receiver<Committed>,
    journal: Journal,
    cmds: mpsc::Receiver<SnapshotCmd>,
    every: Duration,
    metrics: Arc<Metrics>,
    tap: Tap,
    unsaved: Unsaved,
) {
    let Unsaved { brokers, leads, book_saved } = unsaved;
    let mut f = Follower { store, journal, metrics, state, brokers, leads, book, book_saved, tap };
    let mut last = Instant::now();
    loop {
        // Wake on a tick and take everything committed since, rather than on every commit: the
        // writer's sends then never wake this thread, and records are applied in batches.
        std::thread::sleep(TICK);
        let source_open = loop {
            match committed.try_recv() {
                Ok((seq, rec)) => f.take(seq, &rec),
                Err(mpsc::TryRecvError::Empty) => break true,
                Err(mpsc::TryRecvError::Disconnected) => break false,
            }
        };
        while let Ok(SnapshotCmd::Now(tx)) = cmds.try_recv() {
            f.take_pending(&committed);
            let _ = tx.send(f.save(true));
            last = Instant::now();
        }
        let changed = !f.brokers.is_empty() || !f.leads.is_empty();
        if !source_open {
            // The journal writer has stopped: write what it committed and end.
            if changed {
                let _ = f.save(false);
            }
            return;
        }
        if changed && last.elapsed() >= every {
            let _ = f.save(true);
            last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_with_removals() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        assert!(store.load().unwrap().is_none());
        let broker: leadrouter_models::Broker = serde_json::from_str(r#"{"id":"b1","name":"B","licenses":[{"state":"CA","lines":["AUTO"],"expiresOn":"2030-01-01"}],"capacity":{"maxConcurrent":2,"dailyCap":5}}"#).unwrap();
        let mut state = EngineState::default();
        state.apply(1, &crate::storage::record::Record::BrokerUpserted { at: Utc::now(), broker });
        let ids: HashSet<String> = ["b1".to_string()].into();
        store.save(&state, &ids, &HashSet::new()).unwrap();
        let (meta, loaded) = store.load().unwrap().unwrap();
        assert_eq!(meta.seq, 1);
        assert_eq!(loaded, state);
        state.apply(2, &crate::storage::record::Record::BrokerDeleted { at: Utc::now(), broker_id: "b1".into() });
        store.save(&state, &ids, &HashSet::new()).unwrap();
        let (meta, loaded) = store.load().unwrap().unwrap();
        assert_eq!(meta.seq, 2);
        assert!(loaded.brokers.is_empty());
    }

    fn queued_lead(id: &str) -> LeadRecord {
        let request: leadrouter_models::DecideRequest = serde_json::from_str(&format!(
            r#"{{"leadId":"{id}","leadData":{{"insuranceTypes":["AUTO"],"state":"CA","estimatedValue":500}}}}"#
        ))
        .unwrap();
        let queued = Record::Queued { at: Utc::now(), request: Arc::new(request), expires_at: Utc::now() };
        LeadRecord::from_first(&queued).unwrap()
    }

    fn lost(id: &str) -> Record {
        Record::LeadEvent {
            at: Utc::now(),
            lead_id: id.into(),
            broker_id: None,
            event: leadrouter_models::EventKind::Lost,
            value: None,
            requeue_expires_at: None,
        }
    }

    /// A store in `dir` holding lead `l1` as `value` and a meta key at `meta_seq`, written by
    /// hand as an earlier version, or damage, would have left them.
    fn store_holding(dir: &tempfile::TempDir, value: &[u8], meta_seq: u64) -> SnapshotStore {
        let mut store = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        store.db().unwrap().insert(format!("{LEAD}l1"), value).unwrap();
        let meta = SnapshotMeta { seq: meta_seq, saved_at: Utc::now(), brokers: 0, leads: 1 };
        store.db().unwrap().insert(META, serde_json::to_vec(&meta).unwrap()).unwrap();
        store
    }

    #[test]
    fn leads_are_stored_compressed_and_load_back_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        let mut state = EngineState::default();
        state.leads.insert("l1".into(), queued_lead("l1"));
        for seq in 1..=20 {
            state.apply(seq, &lost("l1"));
        }
        let ids: HashSet<String> = ["l1".to_string()].into();
        store.save(&state, &HashSet::new(), &ids).unwrap();
        let value = store.db().unwrap().get(format!("{LEAD}l1")).unwrap().unwrap();
        let json = serde_json::to_vec(&StoredLeadRef { seq: 20, lead: &state.leads["l1"] }).unwrap();
        assert!(value.starts_with(PACKED_LEAD), "stored as {:?}", String::from_utf8_lossy(&value[..8]));
        assert!(value.len() * 2 < json.len(), "{} bytes stored for {} bytes of JSON", value.len(), json.len());
        let (meta, loaded) = store.load().unwrap().unwrap();
        assert_eq!((meta.seq, meta.leads), (20, 1));
        assert_eq!(loaded.leads["l1"], state.leads["l1"]);
        assert_eq!(loaded.leads["l1"].events.len(), 20);
    }

    #[test]
    fn leads_stored_as_plain_json_by_earlier_versions_still_load() {
        let mut state = EngineState::default();
        state.leads.insert("l1".into(), queued_lead("l1"));
        state.apply(6, &lost("l1"));
        let lead = &state.leads["l1"];
        // The format before compression: the position and the lead, as JSON.
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_holding(&dir, &serde_json::to_vec(&StoredLeadRef { seq: 6, lead }).unwrap(), 5);
        let (_, loaded) = store.load().unwrap().unwrap();
        assert_eq!((loaded.seq, loaded.holds_through()), (5, 6));
        assert_eq!(&loaded.leads["l1"], lead);
    }

    #[test]
    fn a_damaged_packed_lead_fails_the_load_with_a_reason() {
        let lead = queued_lead("l1");
        let good = pack_lead(1, &lead).unwrap();
        assert_eq!(unpack_lead(&good).unwrap(), (1, lead));
        let huge = [PACKED_LEAD, &u32::MAX.to_le_bytes(), &good[PACKED_LEAD.len() + 4..]].concat();
        let truncated = &good[..good.len() - 3];
        let short = [PACKED_LEAD, &[1u8, 0]].concat();
        for (name, value, reason) in
            [("huge", &huge[..], "at most"), ("truncated", truncated, "packed lead:"), ("short", &short[..], "claims None")]
        {
            let dir = tempfile::tempdir().unwrap();
            let err = store_holding(&dir, value, 1).load().err().unwrap_or_else(|| panic!("{name}: loaded"));
            assert!(matches!(&err, ActorError::Snapshot(m) if m.contains(reason)), "{name}: {err}");
        }
    }

    #[test]
    fn leads_written_before_their_position_was_stored_load_at_the_meta_position() {
        let lead = queued_lead("l1");
        // The format before leads carried their position: the bare record.
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_holding(&dir, &serde_json::to_vec(&lead).unwrap(), 5);
        let (_, mut loaded) = store.load().unwrap().unwrap();
        assert_eq!((loaded.seq, loaded.holds_through()), (5, 5));
        assert_eq!(loaded.leads["l1"], lead);
        // Written by a snapshot that stopped before its meta key: ahead, so record 6 is not
        // applied to it again.
        let mut at_six = loaded.clone();
        let event = lost("l1");
        at_six.apply(6, &event);
        store.write_leads(&at_six, [&"l1".to_string()], LEAD_CHUNK).unwrap();
        let (_, mut ahead) = store.load().unwrap().unwrap();
        assert_eq!((ahead.seq, ahead.holds_through()), (5, 6));
        ahead.apply(6, &event);
        loaded.apply(6, &event);
        assert_eq!(ahead.leads["l1"].events.len(), 1, "the event once");
        assert_eq!(ahead, loaded);
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// A stored lead's value, damaged or made up in every format it can claim, is refused
        /// without a panic, and a packed one never makes the loader allocate beyond its bound.
        #[test]
        fn any_stored_lead_value_is_read_or_refused(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            prefix in 0usize..4,
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let mut value = match prefix {
                0 => [PACKED_LEAD, &body].concat(),
                1 => [STORED_LEAD, &body].concat(),
                2 => body.clone(),
                _ => pack_lead(3, &queued_lead("l1")).unwrap(),
            };
            if !value.is_empty() {
                let i = flip.0 % value.len();
                value[i] ^= flip.1;
            }
            if let Some(packed) = value.strip_prefix(PACKED_LEAD) {
                // What the loader would allocate is checked before it decompresses.
                if let Some(n) = packed.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) {
                    if n > MAX_LEAD_JSON {
                        proptest::prop_assert!(unpack_lead(&value).is_err());
                    }
                }
            }
            let _ = unpack_lead(&value);
        }
    }
}
