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
//! Sequence numbers start at 1 and rise by one per record across segments. At start-up a frame
//! that runs past the end of the last segment, or whose checksum fails and which ends exactly at
//! the end of the last segment, is a torn tail from a crash: it is cut off. Any other damage is
//! corruption and start-up stops with the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::Durability;
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
    /// Damage that a crash during the last write explains.
    Torn,
    /// Anything else.
    Corrupt(String),
}

/// Reads every record, calling `f(seq, record)` in order. Does not modify files.
pub fn read_all(dir: &Path, mut f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    let segs = segments(dir)?;
    let mut report = ReadReport::default();
    for (i, path) in segs.iter().enumerate() {
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
                Ok((seq, rec, next)) => {
                    if seq != report.last_seq + 1 && report.last_seq != 0 {
                        return Err(corrupt(off as u64, format!("sequence {seq} follows {}", report.last_seq)));
                    }
                    report.last_seq = seq;
                    report.records += 1;
                    f(seq, rec);
                    off = next;
                }
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

fn parse_frame(data: &[u8], off: usize) -> std::result::Result<(u64, Record, usize), FrameError> {
    let rest = &data[off..];
    if rest.iter().all(|&b| b == 0) {
        // Zero-filled tail: the file was extended but the frame never written.
        return Err(FrameError::Torn);
    }
    if rest.len() < FRAME_HEADER {
        return Err(FrameError::Torn);
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
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
        return if FRAME_HEADER + len == rest.len() { Err(FrameError::Torn) } else { Err(FrameError::Corrupt("checksum mismatch".into())) };
    }
    if body[0] != FORMAT_VERSION {
        return Err(FrameError::Corrupt(format!("unsupported record format version {}", body[0])));
    }
    let seq = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    let rec = serde_json::from_slice(&body[9..]).map_err(|e| FrameError::Corrupt(format!("undecodable record: {e}")))?;
    Ok((seq, rec, off + FRAME_HEADER + len))
}

/// Reads the journal for start-up: a torn tail is cut off the file, corruption is an error.
pub fn recover(dir: &Path, f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    fs::create_dir_all(dir)?;
    let report = read_all(dir, f)?;
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
    Append(Arc<Record>, Vec<u8>, oneshot::Sender<Result<u64>>),
    Flush(oneshot::Sender<Result<()>>),
    Stop(oneshot::Sender<Result<()>>),
}

/// Handle to the journal writer thread. Cloning shares the writer.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    failed: Arc<AtomicBool>,
    thread: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>>,
    metrics: Arc<Metrics>,
}

impl Journal {
    /// Starts the writer after `recover` found `last_seq`; committed records go to `follower`.
    pub fn start(
        dir: &Path,
        last_seq: u64,
        durability: Durability,
        batch_interval: Duration,
        segment_bytes: u64,
        follower: mpsc::Sender<Committed>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let mut writer = SegmentWriter::open(dir, last_seq, segment_bytes)?;
        writer.durability = durability;
        writer.batch_interval = batch_interval;
        let (tx, rx) = mpsc::channel::<Cmd>();
        let failed = Arc::new(AtomicBool::new(false));
        let (f2, m2) = (failed.clone(), metrics.clone());
        let thread = std::thread::Builder::new().name("journal-writer".into()).spawn(move || writer.run(rx, follower, f2, &m2))?;
        Ok(Self { tx, failed, thread: Arc::new(parking_lot::Mutex::new(Some(thread))), metrics })
    }

    /// Appends a record; resolves with its sequence number once durable per the mode.
    pub async fn append(&self, rec: Arc<Record>) -> Result<u64> {
        if self.failed.load(Ordering::Acquire) {
            return Err(ActorError::JournalFailed);
        }
        let started = Instant::now();
        let payload = serde_json::to_vec(&*rec)?;
        let (done, wait) = oneshot::channel();
        self.tx.send(Cmd::Append(rec, payload, done)).map_err(|_| ActorError::JournalFailed)?;
        let seq = wait.await.map_err(|_| ActorError::JournalFailed)??;
        self.metrics.journal_append_seconds.observe(started.elapsed().as_secs_f64());
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
        self.failed.load(Ordering::Acquire)
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

struct SegmentWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    seq: u64,
    segment_bytes: u64,
    durability: Durability,
    batch_interval: Duration,
}

impl SegmentWriter {
    fn open(dir: &Path, last_seq: u64, segment_bytes: u64) -> Result<Self> {
        let segs = segments(dir)?;
        let (file, size) = match segs.last() {
            Some(p) => {
                let mut f = OpenOptions::new().read(true).write(true).open(p)?;
                let size = f.seek(SeekFrom::End(0))?;
                (f, size)
            }
            None => Self::create(dir, last_seq + 1)?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            size,
            seq: last_seq,
            segment_bytes,
            durability: Durability::Fsync,
            batch_interval: Duration::from_millis(5),
        })
    }

    fn create(dir: &Path, first_seq: u64) -> Result<(File, u64)> {
        let path = dir.join(segment_name(first_seq));
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        f.write_all(MAGIC)?;
        f.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok((f, MAGIC.len() as u64))
    }

    fn rotate(&mut self) -> Result<()> {
        self.file.sync_data()?;
        let (f, size) = Self::create(&self.dir, self.seq + 1)?;
        self.file = f;
        self.size = size;
        Ok(())
    }

    fn run(&mut self, rx: mpsc::Receiver<Cmd>, follower: mpsc::Sender<Committed>, failed: Arc<AtomicBool>, metrics: &Metrics) {
        let (durability, batch_interval) = (self.durability, self.batch_interval);
        let mut buf = Vec::with_capacity(1 << 16);
        let mut dirty = false;
        let mut last_sync = Instant::now();
        loop {
            let first = if durability == Durability::Batch && dirty {
                match rx.recv_timeout(batch_interval.saturating_sub(last_sync.elapsed())) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.file.sync_data() {
                            // Fail-stop: what was answered may not be durable; refuse the rest.
                            tracing::error!(error = %e, "journal fsync failed; refusing further appends");
                            failed.store(true, Ordering::Release);
                            return;
                        }
                        dirty = false;
                        last_sync = Instant::now();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            };
            let mut cmds = vec![first];
            while cmds.len() < 8192 {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            buf.clear();
            let mut appended = Vec::new();
            let mut flushes = Vec::new();
            let mut stop = None;
            let mut result: Result<()> = Ok(());
            for c in cmds {
                match c {
                    Cmd::Append(rec, payload, done) => {
                        if result.is_ok() && self.size + buf.len() as u64 >= self.segment_bytes && self.size > MAGIC.len() as u64 {
                            result = self.write_out(&buf).and_then(|_| self.rotate());
                            buf.clear();
                        }
                        self.seq += 1;
                        frame_payload(self.seq, &payload, &mut buf);
                        appended.push((self.seq, rec, done));
                    }
                    Cmd::Flush(done) => flushes.push(done),
                    Cmd::Stop(done) => {
                        stop = Some(done);
                        break;
                    }
                }
            }
            if result.is_ok() && !buf.is_empty() {
                result = self.write_out(&buf);
                dirty = true;
            }
            let must_sync = !flushes.is_empty() || stop.is_some() || durability == Durability::Fsync;
            if result.is_ok() && dirty && must_sync {
                let synced = Instant::now();
                result = self.file.sync_data().map_err(ActorError::from);
                metrics.journal_fsync_seconds.observe(synced.elapsed().as_secs_f64());
                dirty = false;
                last_sync = Instant::now();
            }
            if !appended.is_empty() {
                metrics.journal_batch_records.observe(appended.len() as f64);
            }
            match result {
                Ok(()) => {
                    for (seq, rec, done) in appended {
                        let _ = follower.send((seq, rec));
                        let _ = done.send(Ok(seq));
                    }
                    for done in flushes {
                        let _ = done.send(Ok(()));
                    }
                    if let Some(done) = stop {
                        let _ = done.send(Ok(()));
                        failed.store(true, Ordering::Release);
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal write failed; refusing further appends");
                    failed.store(true, Ordering::Release);
                    for (_, _, done) in appended {
                        let _ = done.send(Err(ActorError::JournalFailed));
                    }
                    for done in flushes.into_iter().chain(stop) {
                        let _ = done.send(Err(ActorError::JournalFailed));
                    }
                    // Fail-stop: drain and refuse everything after.
                    while let Ok(c) = rx.recv() {
                        match c {
                            Cmd::Append(_, _, done) => drop(done.send(Err(ActorError::JournalFailed))),
                            Cmd::Flush(done) | Cmd::Stop(done) => drop(done.send(Err(ActorError::JournalFailed))),
                        }
                    }
                    return;
                }
            }
        }
        let _ = self.file.sync_data();
    }

    fn write_out(&mut self, buf: &[u8]) -> Result<()> {
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
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
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, _rx) = mpsc::channel();
        let report = recover(dir, |_, _| {}).unwrap();
        let j =
            Journal::start(dir, report.last_seq, Durability::Fsync, Duration::from_millis(5), segment_bytes, tx, Arc::new(Metrics::new()))
                .unwrap();
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
        let r = recover(dir, |s, _| seqs.push(s)).unwrap();
        (seqs, r)
    }

    #[test]
    fn frames_parse_back() {
        let mut data = MAGIC.to_vec();
        frame_payload(7, &serde_json::to_vec(&rec(1)).unwrap(), &mut data);
        let Ok((seq, r, next)) = parse_frame(&data, 8) else { panic!("parse failed") };
        assert_eq!(seq, 7);
        assert_eq!(next, data.len());
        assert_eq!(r.lead_id(), Some("lead-1"));
    }

    #[test]
    fn append_reopen_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 50, 4096);
        write(dir.path(), 25, 4096);
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs, (1..=75).collect::<Vec<_>>());
        assert!(r.torn_tail.is_none());
        assert!(segments(dir.path()).unwrap().len() > 1, "small segments rotate");
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, 1 << 20);
        let seg = segments(dir.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs.len(), 9);
        assert!(r.torn_tail.is_some());
        // The cut is permanent and the next start appends after record 9.
        write(dir.path(), 3, 1 << 20);
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
        assert!(r.torn_tail.is_none());
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
        match recover(dir.path(), |_, _| {}) {
            Err(ActorError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg);
                assert_eq!(offset, 8);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, 1 << 20);
        let seg = segments(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        let (seqs, r) = read(dir.path());
        assert_eq!(seqs.len(), 4);
        assert_eq!(r.torn_tail.unwrap().2, 100);
    }
}
