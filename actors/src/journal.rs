//! The append-only journal: framed records in segment files, recovery, and a group-commit writer.
//!
//! # Format (version 1)
//!
//! The journal is a directory of segment files named `<first-seq, 20 digits>.seg`. Each segment
//! starts with the 8-byte magic `LRJOURN1`, followed by frames:
//!
//! ```text
//! | body length: u32 LE | CRC-32 (IEEE) of body: u32 LE | body |
//! body = | format version: u8 (= 1) | sequence number: u64 LE | record: JSON |
//! ```
//!
//! Sequence numbers start at 1 and rise by one per record across segments.
//!
//! A segment is created `segment_bytes` long (a sparse file) and cut to its frames when the
//! journal moves on to the next one. Appends then leave the file's length alone, so the fsync
//! after them does not also have to write the file's new length (on the development machine's
//! ext4, fsyncs under load took 0.18 ms against 0.25 ms on average: PERFORMANCE.md, commit
//! 503dda9). Reading stops where only zeros remain: the unused space.
//!
//! A crash while the last group was being written can leave any part of it unwritten, and
//! unwritten space reads as zeros. So at start-up, in the last segment, a frame is a torn tail
//! and is cut off, with everything after it, when its length is zero, when it runs past the end
//! of the file, or when its checksum fails and it ends exactly at the end of the file, starts
//! with a zero byte, or holds a zero byte in its JSON (which never contains one). Any other
//! damage is corruption and start-up stops with the file and offset.
//!
//! Start-up reads only the records after its snapshot's position ([`read_after`]): segments
//! holding only covered records are not read, and covered frames are checked but not decoded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::{Durability, StorageConfig};
use crate::error::{ActorError, Result};
use crate::metrics::Metrics;
use crate::record::Record;

/// Segment header.
pub const MAGIC: &[u8; 8] = b"LRJOURN1";
/// Format version written in each frame.
pub const FORMAT_VERSION: u8 = 1;
const FRAME_HEADER: usize = 8;
const MAX_BODY: usize = 64 << 20;

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "seg") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// What reading the journal found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadReport {
    /// Records read.
    pub records: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// A torn tail: (file, offset where the valid data ends, bytes after it).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
}

enum FrameError {
    /// Only zeros from here: the unused space of the segment.
    End,
    /// Damage that a crash during the last write explains.
    Torn,
    /// Anything else.
    Corrupt(String),
}

/// Reads every record, calling `f(seq, record)` in order. Does not modify files.
pub fn read_all(dir: &Path, f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    read_after(dir, 0, f)
}

/// The first sequence number a segment holds, from its name.
fn first_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Reads the records after sequence number `after`, calling `f(seq, record)` in order, for a
/// start-up whose snapshot already covers everything up to `after`. Does not modify files.
///
/// A segment whose successor begins at or before `after + 1` holds only covered records and is
/// not read at all, so the cost does not grow with the journal's history. In the segment that
/// holds `after`, the frames up to it are checked (length, checksum, format version, sequence)
/// but their JSON is not decoded. The first frame read must carry the sequence number its
/// segment's name gives. `ReadReport::records` counts the frames read, covered ones included.
pub fn read_after(dir: &Path, after: u64, mut f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    let segs = segments(dir)?;
    let mut report = ReadReport::default();
    let mut start = 0;
    while start + 1 < segs.len() && first_seq(&segs[start + 1]).is_some_and(|next| next <= after + 1) {
        start += 1;
    }
    // When segments were skipped, the first one read must begin right after them.
    let mut expected = if start > 0 { first_seq(&segs[start]) } else { None };
    for (i, path) in segs.iter().enumerate().skip(start) {
        let last = i + 1 == segs.len();
        let mut data = Vec::new();
        File::open(path)?.read_to_end(&mut data)?;
        let corrupt = |offset: u64, reason: String| ActorError::Corrupt { file: path.clone(), offset, reason };
        if data.len() < MAGIC.len() {
            if last && MAGIC.starts_with(&data) {
                report.torn_tail = Some((path.clone(), 0, data.len() as u64));
                break;
            }
            return Err(corrupt(0, "segment shorter than its header".into()));
        }
        if &data[..8] != MAGIC {
            return Err(corrupt(0, "bad segment magic".into()));
        }
        let mut off = MAGIC.len();
        while off < data.len() {
            match parse_frame(&data, off) {
                Ok((seq, json, next)) => {
                    if let Some(want) = expected.take() {
                        if seq != want {
                            return Err(corrupt(off as u64, format!("the segment named for record {want} begins with record {seq}")));
                        }
                    } else if seq != report.last_seq + 1 && report.last_seq != 0 {
                        return Err(corrupt(off as u64, format!("sequence {seq} follows {}", report.last_seq)));
                    }
                    report.last_seq = seq;
                    report.records += 1;
                    if seq > after {
                        let rec = serde_json::from_slice(json).map_err(|e| corrupt(off as u64, format!("undecodable record: {e}")))?;
                        f(seq, rec);
                    }
                    off = next;
                }
                // Every later segment's first record must follow this one's last: nothing is lost
                // unnoticed if this ever happens before the last segment.
                Err(FrameError::End) => break,
                Err(FrameError::Torn) if last => {
                    report.torn_tail = Some((path.clone(), off as u64, (data.len() - off) as u64));
                    break;
                }
                Err(FrameError::Torn) => return Err(corrupt(off as u64, "truncated record before the last segment".into())),
                Err(FrameError::Corrupt(reason)) => return Err(corrupt(off as u64, reason)),
            }
        }
    }
    Ok(report)
}

/// Checks the frame at `off`: its sequence number, its record's JSON (not decoded) and where the
/// next frame begins.
fn parse_frame(data: &[u8], off: usize) -> std::result::Result<(u64, &[u8], usize), FrameError> {
    let rest = &data[off..];
    if rest.iter().all(|&b| b == 0) {
        return Err(FrameError::End);
    }
    if rest.len() < FRAME_HEADER {
        return Err(FrameError::Torn);
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 {
        // The header was never written, but something after it was: a torn write.
        return Err(FrameError::Torn);
    }
    if !(9..=MAX_BODY).contains(&len) {
        return if FRAME_HEADER + len >= rest.len() {
            Err(FrameError::Torn)
        } else {
            Err(FrameError::Corrupt(format!("implausible record length {len}")))
        };
    }
    if FRAME_HEADER + len > rest.len() {
        return Err(FrameError::Torn);
    }
    let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
    if crc32fast::hash(body) != crc {
        // A zero byte in the JSON is space the crash left unwritten. So is a zero first byte: the
        // last byte of a page that the previous group's fsync wrote and this group's did not
        // rewrite, which leaves the length short of its low byte and the rest of the frame intact.
        // The price: real damage to a frame whose length is a multiple of 256, in the last
        // segment, is cut as a torn tail too (with the warning) instead of stopping start-up.
        let torn = FRAME_HEADER + len == rest.len() || rest[0] == 0 || body[9..].contains(&0);
        return if torn { Err(FrameError::Torn) } else { Err(FrameError::Corrupt("checksum mismatch".into())) };
    }
    if body[0] != FORMAT_VERSION {
        return Err(FrameError::Corrupt(format!("unsupported record format version {}", body[0])));
    }
    let seq = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    Ok((seq, &body[9..], off + FRAME_HEADER + len))
}

/// Reads the journal for start-up, from after `after` as [`read_after`] does: a torn tail is cut
/// off the file, corruption is an error.
pub fn recover(dir: &Path, after: u64, f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    fs::create_dir_all(dir)?;
    let report = read_after(dir, after, f)?;
    if let Some((path, offset, cut)) = &report.torn_tail {
        tracing::warn!(file = %path.display(), offset, bytes = cut, "journal: cutting torn tail");
        let file = OpenOptions::new().write(true).open(path)?;
        if *offset == 0 {
            file.set_len(0)?;
            (&file).write_all(MAGIC)?;
        } else {
            file.set_len(*offset)?;
        }
        file.sync_all()?;
    }
    Ok(report)
}

/// A committed record, as handed to followers (the snapshotter).
pub type Committed = (u64, Arc<Record>);

enum Cmd {
    /// `fsync` mode: an encoded record to write in the next group, and when it was appended.
    Append(Arc<Record>, Vec<u8>, Instant, oneshot::Sender<Result<u64>>),
    /// `batch` mode: the first write since the last fsync happened; fsync when the interval is up.
    Dirty,
    Flush(oneshot::Sender<Result<()>>),
    Stop(oneshot::Sender<Result<()>>),
}

/// How the journal writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalSettings {
    /// When an append counts as written.
    pub durability: Durability,
    /// `batch` mode: the longest time between a write and its fsync.
    pub batch_interval: Duration,
    /// `fsync` mode: how long after a group's first record the writer may wait for more before
    /// the group's fsync, while appends from concurrent callers arrive more often than this
    /// (zero: never wait).
    pub commit_delay: Duration,
    /// Length a segment is created with, and how full it gets before the next one begins.
    pub segment_bytes: u64,
}

impl JournalSettings {
    /// The settings of `storage`.
    pub fn of(storage: &StorageConfig) -> Self {
        Self {
            durability: storage.durability,
            batch_interval: Duration::from_millis(storage.batch_interval_ms),
            commit_delay: Duration::from_micros(storage.commit_delay_us),
            segment_bytes: storage.segment_bytes,
        }
    }
}

/// Whether holding a group open for more records is likely to save an fsync, judged from the
/// times callers appended (PostgreSQL's `commit_delay` waits only when `commit_siblings` other
/// transactions are active; this is the journal's own view of the same):
///
/// - appends come on average more often than the delay (a moving mean of their gaps), and
/// - within the last [`CONCURRENCY_MEMORY`] groups, more than one caller appended at a time: a
///   group held two records or more, or a record was appended before the group before it had
///   been answered. A single caller appending one record after another waits for each answer,
///   shows neither, and would never gain from a wait.
///
/// A lone request at low load never waits.
#[derive(Debug)]
struct Company {
    /// The commit delay.
    delay: Duration,
    last: Option<Instant>,
    /// Mean gap in nanoseconds; none until two appends were seen.
    mean: Option<f64>,
    /// When the last group's answers went out.
    answered: Option<Instant>,
    /// Groups answered since the last sign of concurrent callers.
    since_concurrent: u32,
}

/// For how many groups a sign of concurrent callers (see [`Company`]) counts.
const CONCURRENCY_MEMORY: u32 = 8;

impl Company {
    /// Nothing seen yet, for a commit delay of `delay`.
    fn new(delay: Duration) -> Self {
        Self { delay, last: None, mean: None, answered: None, since_concurrent: u32::MAX }
    }

    /// Takes in an append made at `at`, the first of its group or not. A gap counts as at most
    /// twice the delay, so a pause does not hide the next burst for long.
    fn observe(&mut self, at: Instant, first_in_group: bool) {
        if let Some(last) = self.last {
            let gap = at.saturating_duration_since(last).min(2 * self.delay).as_nanos() as f64;
            // Each new gap weighs one eighth.
            self.mean = Some(self.mean.map_or(gap, |m| m + (gap - m) / 8.0));
        }
        // Callers on several threads may hand in their records slightly out of order.
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        if !first_in_group || self.answered.is_some_and(|done| at < done) {
            self.since_concurrent = 0;
        }
    }

    /// A group's answers go out at `at`.
    fn answered(&mut self, at: Instant) {
        self.answered = Some(at);
        self.since_concurrent = self.since_concurrent.saturating_add(1);
    }

    /// True when waiting up to the delay for more records is likely to gather some.
    fn worth_waiting(&self) -> bool {
        self.since_concurrent <= CONCURRENCY_MEMORY && self.mean.is_some_and(|m| m < self.delay.as_nanos() as f64)
    }
}

/// What the writer thread and the appenders share.
struct Shared {
    /// The open segment. In `fsync` mode only the writer thread writes to it; in `batch` and
    /// `none` modes each appender writes its own record under this lock, in sequence order.
    writer: parking_lot::Mutex<SegmentWriter>,
    /// A write or fsync failed, or the journal stopped: appends are refused.
    failed: AtomicBool,
    durability: Durability,
    metrics: Arc<Metrics>,
}

/// Handle to the journal writer. Cloning shares the writer.
///
/// In `fsync` mode an append is handed to the writer thread, which writes every record that
/// arrived meanwhile (waiting up to the commit delay for more while concurrent callers append
/// faster than that) and fsyncs once for the group (group commit). In `batch` and `none` modes
/// an append writes its frame to the OS itself, under a lock, without waiting for another
/// thread; the writer thread only fsyncs (every `batch_interval` after a write in `batch` mode,
/// and on flush and stop). A segment rotation (every `segment_bytes`) fsyncs the old segment
/// and creates the next one on whichever thread appends when the segment is full.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Journal {
    /// Starts the writer after `recover` found `last_seq`; committed records go to `follower`.
    pub fn start(
        dir: &Path,
        last_seq: u64,
        settings: JournalSettings,
        follower: mpsc::Sender<Committed>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let JournalSettings { durability, batch_interval, commit_delay, segment_bytes } = settings;
        let writer = SegmentWriter::open(dir, last_seq, segment_bytes, follower)?;
        let (tx, rx) = mpsc::channel::<Cmd>();
        let shared = Arc::new(Shared { writer: parking_lot::Mutex::new(writer), failed: AtomicBool::new(false), durability, metrics });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new().name("journal-writer".into()).spawn(move || {
            match durability {
                Durability::Fsync => s2.run_group_commit(rx, commit_delay),
                Durability::Batch | Durability::None => s2.run_syncer(rx, batch_interval),
            }
            // However the writer ends, followers see the end of the committed stream.
            s2.writer.lock().follower = None;
        })?;
        Ok(Self { tx, shared, thread: Arc::new(parking_lot::Mutex::new(Some(thread))) })
    }

    /// Appends a record; resolves with its sequence number once durable per the mode.
    pub async fn append(&self, rec: Arc<Record>) -> Result<u64> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(ActorError::JournalFailed);
        }
        let started = Instant::now();
        let payload = serde_json::to_vec(&*rec)?;
        let seq = match self.shared.durability {
            Durability::Fsync => {
                let (done, wait) = oneshot::channel();
                self.tx.send(Cmd::Append(rec, payload, started, done)).map_err(|_| ActorError::JournalFailed)?;
                wait.await.map_err(|_| ActorError::JournalFailed)??
            }
            Durability::Batch | Durability::None => {
                let (seq, first_dirty) = self.shared.append_inline(rec, &payload)?;
                if first_dirty && self.shared.durability == Durability::Batch {
                    // The writer thread sleeps until there is something to fsync.
                    let _ = self.tx.send(Cmd::Dirty);
                }
                seq
            }
        };
        self.shared.metrics.journal_append_seconds.observe(started.elapsed().as_secs_f64());
        Ok(seq)
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Cmd::Flush(done)).map_err(|_| ActorError::JournalFailed)?;
        wait.await.map_err(|_| ActorError::JournalFailed)?
    }

    /// [`Journal::flush`] for threads outside the async runtime (the snapshotter).
    pub fn flush_blocking(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Cmd::Flush(done)).map_err(|_| ActorError::JournalFailed)?;
        wait.blocking_recv().map_err(|_| ActorError::JournalFailed)?
    }

    /// True when a write failed and appends are refused.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Makes everything durable and stops the writer; later appends fail. Followers see the
    /// end of the committed stream.
    pub async fn stop(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Cmd::Stop(done)).map_err(|_| ActorError::JournalFailed)?;
        let r = wait.await.map_err(|_| ActorError::JournalFailed)?;
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
        r
    }
}

impl Shared {
    /// `batch` and `none` modes: writes one record on the caller's thread. Also tells whether it
    /// is the first write since the last fsync.
    fn append_inline(&self, rec: Arc<Record>, payload: &[u8]) -> Result<(u64, bool)> {
        let mut w = self.writer.lock();
        // Checked under the lock: nothing is written after a failure or a stop.
        if self.failed.load(Ordering::Acquire) {
            return Err(ActorError::JournalFailed);
        }
        let was_dirty = w.dirty;
        match w.append_one(payload) {
            Ok(seq) => {
                w.follow(seq, rec);
                Ok((seq, !was_dirty))
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; refusing further appends");
                self.failed.store(true, Ordering::Release);
                Err(ActorError::JournalFailed)
            }
        }
    }

    /// `batch` and `none` modes: fsyncs what was written, outside the lock so appends go on;
    /// `stop` also refuses every later append.
    fn sync(&self, stop: bool) -> Result<()> {
        let file = {
            let mut w = self.writer.lock();
            if self.failed.load(Ordering::Acquire) {
                return Err(ActorError::JournalFailed);
            }
            if stop {
                self.failed.store(true, Ordering::Release);
                // Followers see the end of the committed stream.
                w.follower = None;
            }
            if !w.dirty {
                return Ok(());
            }
            w.dirty = false;
            w.file.clone()
        };
        let synced = Instant::now();
        if let Err(e) = file.sync_data() {
            // Fail-stop: what was answered may not be durable; refuse the rest.
            tracing::error!(error = %e, "journal fsync failed; refusing further appends");
            self.failed.store(true, Ordering::Release);
            return Err(e.into());
        }
        self.metrics.journal_fsync_seconds.observe(synced.elapsed().as_secs_f64());
        Ok(())
    }

    /// The writer thread in `batch` and `none` modes: fsyncs on a timer (`batch`), flush and stop.
    fn run_syncer(&self, rx: mpsc::Receiver<Cmd>, batch_interval: Duration) {
        let mut last_sync = Instant::now();
        let mut due: Option<Instant> = None;
        loop {
            let cmd = match due {
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                },
            };
            match cmd {
                None => {
                    due = None;
                    if self.sync(false).is_err() {
                        return;
                    }
                    last_sync = Instant::now();
                }
                Some(Cmd::Dirty) => {
                    due.get_or_insert(last_sync + batch_interval);
                }
                Some(Cmd::Flush(done)) => {
                    let r = self.sync(false);
                    last_sync = Instant::now();
                    let _ = done.send(r);
                }
                Some(Cmd::Stop(done)) => {
                    let _ = done.send(self.sync(true));
                    return;
                }
                Some(Cmd::Append(rec, payload, _, done)) => {
                    // Not sent in these modes; written like any inline append if it were.
                    let r = self.append_inline(rec, &payload);
                    if matches!(r, Ok((_, true))) && self.durability == Durability::Batch {
                        due.get_or_insert(last_sync + batch_interval);
                    }
                    let _ = done.send(r.map(|(seq, _)| seq));
                }
            }
        }
        let _ = self.sync(true);
    }

    /// The writer thread in `fsync` mode: writes every record that arrived while the last group
    /// was written (and, while [`Company`] finds a wait worth it, those that arrive until the
    /// group's first record has waited `commit_delay`), then fsyncs once for all of them before
    /// answering.
    fn run_group_commit(&self, rx: mpsc::Receiver<Cmd>, commit_delay: Duration) {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut company = Company::new(commit_delay);
        loop {
            let first = match rx.recv() {
                Ok(c) => c,
                Err(_) => break,
            };
            let mut cmds = vec![first];
            // Everything that arrived while the last group was written; then, while a wait is
            // worth it, whatever arrives until the group's first record has waited the delay.
            let mut opened = None;
            while cmds.len() < 8192 {
                if let Some(Cmd::Append(_, _, at, _)) = cmds.last() {
                    company.observe(*at, opened.is_none());
                    opened.get_or_insert(*at);
                }
                if matches!(cmds.last(), Some(Cmd::Stop(_))) {
                    break;
                }
                let next = match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(_) => match opened {
                        Some(at) if company.worth_waiting() => {
                            let left = (at + commit_delay).saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                None
                            } else {
                                rx.recv_timeout(left).ok()
                            }
                        }
                        _ => None,
                    },
                };
                match next {
                    Some(c) => cmds.push(c),
                    None => break,
                }
            }
            let mut w = self.writer.lock();
            buf.clear();
            let mut appended = Vec::new();
            let mut flushes = Vec::new();
            let mut stop = None;
            let mut result: Result<()> = Ok(());
            for c in cmds {
                match c {
                    Cmd::Append(rec, payload, _, done) => {
                        if result.is_ok() && w.is_full(buf.len()) {
                            result = w.write_out(&buf).and_then(|_| w.rotate());
                            buf.clear();
                        }
                        w.seq += 1;
                        frame_payload(w.seq, &payload, &mut buf);
                        appended.push((w.seq, rec, done));
                    }
                    Cmd::Dirty => {}
                    Cmd::Flush(done) => flushes.push(done),
                    Cmd::Stop(done) => {
                        stop = Some(done);
                        break;
                    }
                }
            }
            if result.is_ok() && !buf.is_empty() {
                result = w.write_out(&buf);
                w.dirty = true;
            }
            if result.is_ok() && w.dirty {
                let synced = Instant::now();
                result = w.file.sync_data().map_err(ActorError::from);
                self.metrics.journal_fsync_seconds.observe(synced.elapsed().as_secs_f64());
                w.dirty = false;
            }
            if !appended.is_empty() {
                self.metrics.journal_batch_records.observe(appended.len() as f64);
            }
            match result {
                Ok(()) => {
                    let mut answers = Vec::with_capacity(appended.len());
                    for (seq, rec, done) in appended {
                        w.follow(seq, rec);
                        answers.push((seq, done));
                    }
                    if stop.is_some() {
                        self.failed.store(true, Ordering::Release);
                        w.follower = None;
                    }
                    drop(w);
                    if !answers.is_empty() {
                        // Before the first answer: a caller that appends after its answer is
                        // never taken for a concurrent one.
                        company.answered(Instant::now());
                    }
                    for (seq, done) in answers {
                        let _ = done.send(Ok(seq));
                    }
                    for done in flushes {
                        let _ = done.send(Ok(()));
                    }
                    if let Some(done) = stop {
                        let _ = done.send(Ok(()));
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal write failed; refusing further appends");
                    self.failed.store(true, Ordering::Release);
                    w.follower = None;
                    drop(w);
                    for (_, _, done) in appended {
                        let _ = done.send(Err(ActorError::JournalFailed));
                    }
                    for done in flushes.into_iter().chain(stop) {
                        let _ = done.send(Err(ActorError::JournalFailed));
                    }
                    // Fail-stop: drain and refuse everything after.
                    while let Ok(c) = rx.recv() {
                        match c {
                            Cmd::Append(_, _, _, done) => drop(done.send(Err(ActorError::JournalFailed))),
                            Cmd::Flush(done) | Cmd::Stop(done) => drop(done.send(Err(ActorError::JournalFailed))),
                            Cmd::Dirty => {}
                        }
                    }
                    return;
                }
            }
        }
        let _ = self.writer.lock().file.sync_data();
    }
}

/// The open segment.
struct SegmentWriter {
    dir: PathBuf,
    file: Arc<File>,
    size: u64,
    seq: u64,
    segment_bytes: u64,
    /// Written since the last fsync.
    dirty: bool,
    /// The frame of an inline append (kept to reuse its allocation).
    frame: Vec<u8>,
    /// Where committed records go, in sequence order; dropped when the journal stops or fails.
    follower: Option<mpsc::Sender<Committed>>,
}

impl SegmentWriter {
    fn open(dir: &Path, last_seq: u64, segment_bytes: u64, follower: mpsc::Sender<Committed>) -> Result<Self> {
        let segs = segments(dir)?;
        let (file, size) = match segs.last() {
            Some(p) => {
                let mut f = OpenOptions::new().read(true).write(true).open(p)?;
                let size = frames_end(&mut f)?;
                // Anything after the frames is unused space (recovery cut any torn tail); the
                // segment gets its full length back, and appends go after the last frame.
                f.set_len(size)?;
                f.set_len(segment_bytes.max(size))?;
                f.sync_all()?;
                f.seek(SeekFrom::Start(size))?;
                (f, size)
            }
            None => Self::create(dir, last_seq + 1, segment_bytes)?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size,
            seq: last_seq,
            segment_bytes,
            dirty: false,
            frame: Vec::new(),
            follower: Some(follower),
        })
    }

    fn create(dir: &Path, first_seq: u64, segment_bytes: u64) -> Result<(File, u64)> {
        let path = dir.join(segment_name(first_seq));
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        f.write_all(MAGIC)?;
        f.set_len(segment_bytes.max(MAGIC.len() as u64))?;
        f.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok((f, MAGIC.len() as u64))
    }

    fn rotate(&mut self) -> Result<()> {
        // Only the last segment has unused space: cut this one to its frames first.
        self.file.set_len(self.size)?;
        self.file.sync_all()?;
        let (f, size) = Self::create(&self.dir, self.seq + 1, self.segment_bytes)?;
        self.file = Arc::new(f);
        self.size = size;
        self.dirty = false;
        Ok(())
    }

    /// True when the segment, with `pending` bytes still to write, has reached `segment_bytes`
    /// and holds at least one record: the next record goes to a new segment.
    fn is_full(&self, pending: usize) -> bool {
        self.size + pending as u64 >= self.segment_bytes && self.size > MAGIC.len() as u64
    }

    /// Writes one record as the next frame, rotating first when the segment is full.
    fn append_one(&mut self, payload: &[u8]) -> Result<u64> {
        if self.is_full(0) {
            self.rotate()?;
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame_payload(self.seq + 1, payload, &mut frame);
        let written = self.write_out(&frame);
        self.frame = frame;
        written?;
        self.seq += 1;
        self.dirty = true;
        Ok(self.seq)
    }

    fn follow(&self, seq: u64, rec: Arc<Record>) {
        if let Some(f) = &self.follower {
            let _ = f.send((seq, rec));
        }
    }

    fn write_out(&mut self, buf: &[u8]) -> Result<()> {
        (&*self.file).write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

/// Where the frames of a recovered segment end: walks the frames' lengths from the header to
/// the first zero length or the end of the file.
fn frames_end(f: &mut File) -> io::Result<u64> {
    let file_len = f.seek(SeekFrom::End(0))?;
    let mut off = MAGIC.len() as u64;
    let mut header = [0u8; FRAME_HEADER];
    while off + FRAME_HEADER as u64 <= file_len {
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as u64;
        if len == 0 || off + FRAME_HEADER as u64 + len > file_len {
            break;
        }
        off += FRAME_HEADER as u64 + len;
    }
    Ok(off.min(file_len))
}

fn frame_payload(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = (1 + 8 + payload.len()) as u32;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[FORMAT_VERSION]);
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn rec(i: u64) -> Record {
        Record::QueueExpired { at: Utc::now(), lead_id: format!("lead-{i}") }
    }

    fn write(dir: &Path, n: u64, segment_bytes: u64) {
        write_in(dir, n, segment_bytes, Durability::Fsync);
    }

    fn start(dir: &Path, durability: Durability, segment_bytes: u64) -> (Journal, mpsc::Receiver<Committed>, Arc<Metrics>) {
        start_with(
            dir,
            JournalSettings { durability, batch_interval: Duration::from_millis(5), commit_delay: Duration::ZERO, segment_bytes },
        )
    }

    fn start_with(dir: &Path, settings: JournalSettings) -> (Journal, mpsc::Receiver<Committed>, Arc<Metrics>) {
        let (tx, rx) = mpsc::channel();
        let report = recover(dir, 0, |_, _| {}).unwrap();
        let metrics = Arc::new(Metrics::new());
        let j = Journal::start(dir, report.last_seq, settings, tx, metrics.clone()).unwrap();
        (j, rx, metrics)
    }

    fn fsync_with_delay(commit_delay: Duration) -> JournalSettings {
        JournalSettings { durability: Durability::Fsync, batch_interval: Duration::from_millis(5), commit_delay, segment_bytes: 1 << 20 }
    }

    #[test]
    fn waiting_needs_a_quick_pace_and_concurrent_callers() {
        let us = Duration::from_micros;
        let delay = us(200);
        let t0 = Instant::now();
        let mut c = Company::new(delay);
        assert!(!c.worth_waiting(), "nothing seen");
        c.observe(t0, true);
        c.answered(t0 + us(50));
        // Appended after that answer went out: quick, but possibly the same caller.
        c.observe(t0 + us(100), true);
        assert!(!c.worth_waiting(), "{c:?}");
        c.answered(t0 + us(150));
        // Appended before that answer went out: a second caller.
        c.observe(t0 + us(140), true);
        assert!(c.worth_waiting(), "{c:?}");
        for i in 1..=40 {
            c.observe(t0 + us(200 + 100 * i), true);
        }
        assert!(c.worth_waiting() && !Company { delay: us(90), ..c }.worth_waiting(), "{c:?}");
        // A ten-second pause counts as 400 µs: one eighth of it lifts the mean from 100 to 137.5.
        c.observe(t0 + us(4_200) + Duration::from_secs(10), true);
        assert!((c.mean.unwrap() - 137_500.0).abs() < 1_000.0, "{c:?}");
        assert!(c.worth_waiting());
        // A sign of concurrent callers counts for eight groups.
        for i in 0..8 {
            c.answered(t0 + Duration::from_secs(11) + us(i));
        }
        assert!(c.worth_waiting(), "{c:?}");
        c.answered(t0 + Duration::from_secs(12));
        assert!(!c.worth_waiting(), "{c:?}");
        // Two records in one group: two callers.
        c.observe(t0 + Duration::from_secs(13), true);
        c.observe(t0 + Duration::from_secs(13), false);
        assert_eq!(c.since_concurrent, 0);
        // Appends a millisecond apart are slower than a 200 µs delay.
        let mut slow = Company { since_concurrent: 0, ..Company::new(delay) };
        for i in 0..40 {
            slow.observe(t0 + us(1_000 * i), true);
        }
        assert!(!slow.worth_waiting(), "{slow:?}");
        // A record stamped before the last one seen counts as a gap of zero.
        let mut late = Company::new(delay);
        late.observe(t0 + us(500), true);
        late.observe(t0, true);
        assert_eq!((late.mean, late.last), (Some(0.0), Some(t0 + us(500))));
    }

    #[test]
    fn a_caller_appending_one_record_after_another_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        // Appends follow each other closely, but each only after the last was answered: waiting
        // would cost each of them 2 s and gather nothing.
        let (j, _rx, metrics) = start_with(dir.path(), fsync_with_delay(Duration::from_secs(2)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let all = async {
                for i in 0..20 {
                    j.append(Arc::new(rec(i))).await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(10), all).await.expect("no append waited");
            j.stop().await.unwrap();
        });
        assert_eq!(metrics.journal_batch_records.get_sample_count(), 20);
    }

    #[test]
    fn a_commit_delay_never_holds_a_lone_append() {
        let dir = tempfile::tempdir().unwrap();
        // If the writer waited for company, this append would take 30 s.
        let (j, _rx, metrics) = start_with(dir.path(), fsync_with_delay(Duration::from_secs(30)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let seq = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), j.append(Arc::new(rec(0)))).await })
            .expect("answered without waiting")
            .unwrap();
        assert_eq!((seq, metrics.journal_fsync_seconds.get_sample_count()), (1, 1));
        rt.block_on(j.stop()).unwrap();
    }

    #[test]
    fn concurrent_appends_closer_together_than_the_commit_delay_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _rx, metrics) = start_with(dir.path(), fsync_with_delay(Duration::from_millis(100)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // 100 appends from 100 callers: 20 bursts of 5, one burst every 5 ms, each caller
        // waiting for its own answer.
        let seqs = rt.block_on(async {
            let tasks: Vec<_> = (0..100u64)
                .map(|i| {
                    let j = j.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(5 * (i / 5))).await;
                        j.append(Arc::new(rec(i))).await.unwrap()
                    })
                })
                .collect();
            let mut seqs = Vec::new();
            for t in tasks {
                seqs.push(t.await.unwrap());
            }
            j.stop().await.unwrap();
            seqs
        });
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=100).collect::<Vec<_>>(), "every append answered once, in sequence");
        // Without the delay each burst, 5 ms after the last, would have at least one group.
        let groups = metrics.journal_batch_records.get_sample_count();
        assert!(groups <= 10, "{groups} groups for 100 appends");
        assert_eq!(metrics.journal_batch_records.get_sample_sum(), 100.0);
        let mut read = 0;
        read_all(dir.path(), |seq, r| {
            read += 1;
            assert_eq!(seq, read);
            assert!(matches!(r, Record::QueueExpired { .. }));
        })
        .unwrap();
        assert_eq!(read, 100);
    }

    fn write_in(dir: &Path, n: u64, segment_bytes: u64, durability: Durability) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (j, _rx, _) = start(dir, durability, segment_bytes);
        rt.block_on(async {
            for i in 0..n {
                j.append(Arc::new(rec(i))).await.unwrap();
            }
            j.flush().await.unwrap();
            j.stop().await.unwrap();
        });
    }

    fn read(dir: &Path) -> (Vec<u64>, ReadReport) {
        let mut seqs = Vec::new();
        let r = recover(dir, 0, |s, _| seqs.push(s)).unwrap();
        (seqs, r)
    }

    #[test]
    fn frames_parse_back() {
        let mut data = MAGIC.to_vec();
        frame_payload(7, &serde_json::to_vec(&rec(1)).unwrap(), &mut data);
        let Ok((seq, json, next)) = parse_frame(&data, 8) else { panic!("parse failed") };
        assert_eq!(seq, 7);
        assert_eq!(next, data.len());
        assert_eq!(serde_json::from_slice::<Record>(json).unwrap().lead_id(), Some("lead-1"));
    }

    #[test]
    fn every_mode_appends_reopens_and_rotates() {
        for durability in [Durability::Fsync, Durability::Batch, Durability::None] {
            let dir = tempfile::tempdir().unwrap();
            write_in(dir.path(), 50, 4096, durability);
            write_in(dir.path(), 25, 4096, durability);
            let (seqs, r) = read(dir.path());
            assert_eq!(seqs, (1..=75).collect::<Vec<_>>(), "{durability:?}");
            assert!(r.torn_tail.is_none(), "{durability:?}");
            assert!(segments(dir.path()).unwrap().len() > 1, "{durability:?}: small segments rotate");
        }
    }

    #[test]
    fn inline_appends_from_many_threads_reach_the_follower_in_sequence_order() {
        for durability in [Durability::Batch, Durability::None] {
            let dir = tempfile::tempdir().unwrap();
            let (j, rx, _) = start(dir.path(), durability, 8192);
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let j = j.clone();
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        (0..200).map(|i| rt.block_on(j.append(Arc::new(rec(t * 1000 + i)))).unwrap()).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut answered: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(j.stop()).unwrap();
            // Stopping ends the committed stream even while handles are alive.
            answered.sort_unstable();
            assert_eq!(answered, (1..=800).collect::<Vec<_>>(), "{durability:?}: each append got its own number");
            let followed: Vec<(u64, Option<String>)> = rx.iter().map(|(s, r)| (s, r.lead_id().map(str::to_string))).collect();
            assert_eq!(followed.iter().map(|f| f.0).collect::<Vec<_>>(), (1..=800).collect::<Vec<_>>(), "{durability:?}");
            // The files hold the same records under the same numbers.
            let mut on_disk = Vec::new();
            recover(dir.path(), 0, |s, r| on_disk.push((s, r.lead_id().map(str::to_string)))).unwrap();
            assert_eq!(on_disk, followed, "{durability:?}");
        }
    }

    #[test]
    fn batch_mode_fsyncs_after_a_write_and_not_while_idle() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _rx, metrics) = start(dir.path(), Durability::Batch, 1 << 20);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(metrics.journal_fsync_seconds.get_sample_count(), 0, "nothing written, nothing to fsync");
        rt.block_on(j.append(Arc::new(rec(1)))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.journal_fsync_seconds.get_sample_count() == 0 {
            assert!(Instant::now() < deadline, "no fsync within 5 s of a write (interval 5 ms)");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(metrics.journal_fsync_seconds.get_sample_count(), 1, "one write, one fsync");
        rt.block_on(j.stop()).unwrap();
    }

    #[test]
    fn appends_after_stop_are_refused_in_every_mode() {
        for durability in [Durability::Fsync, Durability::Batch, Durability::None] {
            let dir = tempfile::tempdir().unwrap();
            let (j, _rx, _) = start(dir.path(), durability, 1 << 20);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(j.append(Arc::new(rec(1)))).unwrap();
            rt.block_on(j.stop()).unwrap();
            assert!(j.is_failed(), "{durability:?}");
            assert!(matches!(rt.block_on(j.append(Arc::new(rec(2)))), Err(ActorError::JournalFailed)), "{durability:?}");
            assert_eq!(read(dir.path()).0, vec![1], "{durability:?}");
        }
    }

    /// Where the frames of a segment end: after its last non-zero byte (every frame ends with
    /// its JSON's closing brace).
    fn data_end(seg: &Path) -> usize {
        fs::read(seg).unwrap().iter().rposition(|&b| b != 0).unwrap() + 1
    }

    /// Zeros `range` of `seg`: what a crash leaves of a write that never reached the disk.
    fn unwrite(seg: &Path, range: std::ops::Range<usize>) {
        let mut data = fs::read(seg).unwrap();
        data[range].fill(0);
        fs::write(seg, data).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        // The last record's end never written (the segment keeps its length), or the file cut
        // in the middle of it (a segment written before segments were created full length).
        for cut in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), 10, 1 << 20);
            let seg = segments(dir.path()).unwrap().pop().unwrap();
            let end = data_end(&seg);
            if cut {
                OpenOptions::new().write(true).open(&seg).unwrap().set_len(end as u64 - 5).unwrap();
            } else {
                unwrite(&seg, end - 5..end);
            }
            let (seqs, r) = read(dir.path());
            assert_eq!(seqs.len(), 9, "cut {cut}");
            assert!(r.torn_tail.is_some(), "cut {cut}");
            // The cut is permanent and the next start appends after record 9.
            write(dir.path(), 3, 1 << 20);
            let (seqs, r) = read(dir.path());
            assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "cut {cut}");
            assert!(r.torn_tail.is_none(), "cut {cut}");
        }
    }

    #[test]
    fn a_torn_write_inside_the_last_group_cuts_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, 1 << 20);
        let seg = segments(dir.path()).unwrap().pop().unwrap();
        let data = fs::read(&seg).unwrap();
        let off = frame_start(&data, 8);
        // A page of the group inside record 8's JSON never reached the disk; records 9 and 10,
        // written after it in the same group, did.
        unwrite(&seg, off + 30..off + 34);
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
        assert_eq!(r.torn_tail.as_ref().map(|t| t.1), Some(off as u64));
        // Its header never written: the same. (Record 8 starts elsewhere in this journal when a
        // timestamp before it has fewer digits: chrono writes 3, 6 or 9.)
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, 1 << 20);
        let off = frame_start(&fs::read(seg_of(dir.path())).unwrap(), 8);
        unwrite(&seg_of(dir.path()), off..off + FRAME_HEADER);
        let (seqs, r) = read(dir.path());
        assert_eq!((seqs.len(), r.torn_tail.map(|t| t.1)), (7, Some(off as u64)));
        write(dir.path(), 1, 1 << 20);
        assert_eq!(read(dir.path()).0, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_frame_whose_first_byte_was_not_rewritten_is_torn() {
        // Records of 300 to 555 bytes: their length's low byte matters.
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (j, _rx, _) = start(dir.path(), Durability::Fsync, 1 << 20);
        rt.block_on(async {
            for i in 0..4u64 {
                let long = Record::QueueExpired { at: Utc::now(), lead_id: "x".repeat(300 + 80 * i as usize) };
                j.append(Arc::new(long)).await.unwrap();
            }
            j.stop().await.unwrap();
        });
        let seg = seg_of(dir.path());
        let data = fs::read(&seg).unwrap();
        let off = frame_start(&data, 3);
        assert!(data[off] != 0 && u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) > 256);
        // Record 3 began one byte before a page boundary: that page kept what record 2's fsync
        // wrote (a zero there), the next page was written.
        unwrite(&seg, off..off + 1);
        let (seqs, r) = read(dir.path());
        assert_eq!((seqs, r.torn_tail.map(|t| t.1)), (vec![1, 2], Some(off as u64)));
    }

    /// Where the `n`-th frame (from 1) of a segment's bytes starts.
    fn frame_start(data: &[u8], n: usize) -> usize {
        (1..n).fold(MAGIC.len(), |off, _| off + FRAME_HEADER + u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize)
    }

    fn seg_of(dir: &Path) -> PathBuf {
        segments(dir).unwrap().pop().unwrap()
    }

    #[test]
    fn segments_are_created_full_length_and_cut_to_their_frames_when_the_next_begins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 60, 4096);
        write(dir.path(), 30, 4096);
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() > 2);
        let (last, full) = segs.split_last().unwrap();
        for seg in full {
            assert_eq!(fs::metadata(seg).unwrap().len() as usize, data_end(seg), "{}", seg.display());
        }
        assert_eq!(fs::metadata(last).unwrap().len(), 4096, "the last segment keeps its unused space");
        assert!(data_end(last) < 4096);
        let (seqs, r) = read(dir.path());
        assert_eq!((seqs, r.torn_tail), ((1..=90).collect::<Vec<_>>(), None));
    }

    #[test]
    fn corruption_in_the_middle_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, 1 << 20);
        let seg = segments(dir.path()).unwrap().pop().unwrap();
        let mut data = fs::read(&seg).unwrap();
        // Flip a byte inside the body of the first record.
        data[8 + 8 + 12] ^= 0xff;
        fs::write(&seg, &data).unwrap();
        match recover(dir.path(), 0, |_, _| {}) {
            Err(ActorError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg);
                assert_eq!(offset, 8);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_zero_filled_tail_is_unused_space_but_data_after_zeros_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, 1 << 20);
        let seg = seg_of(dir.path());
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        let (seqs, r) = read(dir.path());
        assert_eq!((seqs.len(), r.torn_tail), (4, None));
        // Bytes after the zeros: a write whose start never reached the disk.
        f.write_all(b"late").unwrap();
        let end = data_end(&seg) as u64;
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs.len(), 4);
        let (_, offset, bytes) = r.torn_tail.unwrap();
        assert_eq!(offset + bytes, end, "cut from the first zero header to the end of the file");
        assert_eq!(read(dir.path()).1.torn_tail, None, "the cut is permanent");
    }

    #[test]
    fn a_changed_byte_in_the_last_record_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3, 1 << 20);
        let seg = seg_of(dir.path());
        let end = data_end(&seg);
        let mut data = fs::read(&seg).unwrap();
        // A crash leaves zeros, never other bytes: JSON is ASCII, so this byte stays non-zero.
        data[end - 3] ^= 0x80;
        fs::write(&seg, data).unwrap();
        assert!(matches!(recover(dir.path(), 0, |_, _| {}), Err(ActorError::Corrupt { .. })));
    }

    /// Writes a segment named for record `first` holding the given frames.
    fn segment(dir: &Path, first: u64, frames: &[(u64, &[u8])]) -> PathBuf {
        let mut data = MAGIC.to_vec();
        for (seq, json) in frames {
            frame_payload(*seq, json, &mut data);
        }
        let path = dir.join(segment_name(first));
        fs::write(&path, data).unwrap();
        path
    }

    fn read_from(dir: &Path, after: u64) -> Result<(Vec<u64>, ReadReport)> {
        let mut seqs = Vec::new();
        read_after(dir, after, |s, _| seqs.push(s)).map(|r| (seqs, r))
    }

    #[test]
    fn reading_after_a_position_skips_the_segments_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 90, 1024);
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() > 3, "{} segments", segs.len());
        for after in 0..=90 {
            let (seqs, r) = read_from(dir.path(), after).unwrap();
            assert_eq!((seqs, r.last_seq), ((after + 1..=90).collect::<Vec<_>>(), 90), "after {after}");
        }
        // Inside the third segment: the first two hold only covered records.
        let after = first_seq(&segs[2]).unwrap() + 2;
        fs::write(&segs[0], vec![0xa5; 300]).unwrap();
        assert!(matches!(read_all(dir.path(), |_, _| {}), Err(ActorError::Corrupt { .. })));
        let (seqs, r) = read_from(dir.path(), after).unwrap();
        assert_eq!(seqs, (after + 1..=90).collect::<Vec<_>>());
        assert_eq!((r.last_seq, r.torn_tail), (90, None));
        // Covered frames of the segment that holds the position are still checked.
        let mut data = fs::read(&segs[2]).unwrap();
        data[MAGIC.len() + FRAME_HEADER + 12] ^= 0xff;
        fs::write(&segs[2], data).unwrap();
        match read_from(dir.path(), after) {
            Err(ActorError::Corrupt { file, offset, .. }) => assert_eq!((file, offset), (segs[2].clone(), MAGIC.len() as u64)),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn covered_records_are_checked_but_not_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let later = serde_json::to_vec(&rec(2)).unwrap();
        segment(dir.path(), 1, &[(1, b"not a record"), (2, &later)]);
        let (seqs, r) = read_from(dir.path(), 1).unwrap();
        assert_eq!((seqs, r.records, r.last_seq), (vec![2], 2, 2));
        match read_all(dir.path(), |_, _| {}) {
            Err(ActorError::Corrupt { reason, offset, .. }) => {
                assert_eq!(offset, MAGIC.len() as u64);
                assert!(reason.starts_with("undecodable record"), "{reason}");
            }
            other => panic!("expected an undecodable record, got {other:?}"),
        }
    }

    #[test]
    fn a_segment_read_after_skipped_ones_must_begin_where_its_name_says() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_vec(&rec(0)).unwrap();
        segment(dir.path(), 1, &[(1, &json), (2, &json)]);
        segment(dir.path(), 3, &[(4, &json), (5, &json)]);
        match read_from(dir.path(), 2) {
            Err(ActorError::Corrupt { reason, .. }) => assert_eq!(reason, "the segment named for record 3 begins with record 4"),
            other => panic!("expected a gap, got {other:?}"),
        }
        // Read from the start, the same gap is a break in the sequence.
        assert!(matches!(read_all(dir.path(), |_, _| {}), Err(ActorError::Corrupt { .. })));
    }
}
