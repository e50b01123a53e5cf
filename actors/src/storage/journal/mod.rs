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
//! ext4, fsyncs under load took 0.18 ms against 0.25 ms on average; `cargo bench --bench engine
//! -- journal_append` measures an append). Reading stops where only zeros remain: the unused
//! space.
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

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::{Durability, StorageConfig};
use crate::error::{ActorError, Result};
use crate::metrics::Metrics;
use crate::storage::record::Record;

mod commit;
mod format;
mod read;
mod segment;
mod tail;

pub use format::{FORMAT_VERSION, MAGIC};
pub use read::{read_after, read_all, read_frames_after, recover, segments, ReadReport};
use segment::SegmentWriter;
pub use tail::Tail;

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

/// What the writer thread and the appenders share.
struct Shared {
    /// The open segment. In `fsync` mode only the writer thread writes to it; in `batch` and
    /// `none` modes each appender writes its own record under this lock, in sequence order.
    writer: parking_lot::Mutex<SegmentWriter>,
    /// The journal stopped, or failed in a way it cannot undo (a failed fsync in `batch` and
    /// `none` modes, where answered records may be lost): appends are refused until a restart.
    failed: AtomicBool,
    /// A write failed (a full or read-only file system, an I/O error) and was undone: appends
    /// are refused until [`Shared::retry_at`], then the next one tries again.
    faulted: AtomicBool,
    retry_at: parking_lot::Mutex<Instant>,
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
    committed: Arc<AtomicU64>,
    dir: std::path::PathBuf,
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
        let committed = writer.committed.clone();
        let (tx, rx) = mpsc::channel::<Cmd>();
        let shared = Arc::new(Shared {
            writer: parking_lot::Mutex::new(writer),
            failed: AtomicBool::new(false),
            faulted: AtomicBool::new(false),
            retry_at: parking_lot::Mutex::new(Instant::now()),
            durability,
            metrics,
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new().name("journal-writer".into()).spawn(move || {
            match durability {
                Durability::Fsync => s2.run_group_commit(rx, commit_delay),
                Durability::Batch | Durability::None => s2.run_syncer(rx, batch_interval),
            }
            // However the writer ends, followers see the end of the committed stream.
            s2.writer.lock().follower = None;
        })?;
        Ok(Self { tx, shared, thread: Arc::new(parking_lot::Mutex::new(Some(thread))), committed, dir: dir.to_path_buf() })
    }

    /// Appends a record; resolves with its sequence number once durable per the mode.
    pub async fn append(&self, rec: Arc<Record>) -> Result<u64> {
        if self.shared.failed.load(Ordering::Acquire) || self.shared.holding() {
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

    /// The sequence number of the last record written (handed to the follower).
    pub fn last_seq(&self) -> u64 {
        self.shared.writer.lock().seq
    }

    /// The last record committed (handed to the follower): every record up to it is written
    /// whole to its segment, and durable in `fsync` mode. Readers of the files ([`Tail`]) read up
    /// to here.
    pub fn committed_seq(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// True when appends are refused: the journal stopped or failed, or its last write failed
    /// and no write has succeeded since.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire) || self.shared.faulted.load(Ordering::Acquire)
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

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
