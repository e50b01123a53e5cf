//! The open segment: created full length, appended to, cut to its frames and followed by the next
//! when full; committed records handed to the follower.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::error::Result;
use crate::storage::record::Record;

use super::format::{frame_payload, frames_end, segment_name, MAGIC};
use super::read::segments;
use super::Committed;

/// The open segment.
pub(super) struct SegmentWriter {
    pub(super) dir: PathBuf,
    pub(super) file: Arc<File>,
    pub(super) size: u64,
    pub(super) seq: u64,
    pub(super) segment_bytes: u64,
    /// Written since the last fsync.
    pub(super) dirty: bool,
    /// The frame of an inline append (kept to reuse its allocation).
    pub(super) frame: Vec<u8>,
    /// Where committed records go, in sequence order; dropped when the journal stops or fails.
    pub(super) follower: Option<mpsc::Sender<Committed>>,
    /// The last record handed to the follower: every record up to it is written whole (and
    /// durable in `fsync` mode).
    pub(super) committed: Arc<AtomicU64>,
    /// Where the committed frames of the open segment end.
    pub(super) committed_size: u64,
    /// Failed writes not undone yet (the file system refused even that): the next write undoes
    /// them first.
    pub(super) undo_pending: bool,
}

impl SegmentWriter {
    pub(super) fn open(dir: &Path, last_seq: u64, segment_bytes: u64, follower: mpsc::Sender<Committed>) -> Result<Self> {
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
            committed: Arc::new(AtomicU64::new(last_seq)),
            committed_size: size,
            undo_pending: false,
        })
    }

    fn create(dir: &Path, first_seq: u64, segment_bytes: u64) -> Result<(File, u64)> {
        let path = dir.join(segment_name(first_seq));
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let made = (|| {
            f.write_all(MAGIC)?;
            f.set_len(segment_bytes.max(MAGIC.len() as u64))?;
            f.sync_all()?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = made {
            // A half-made segment holds no record; the next attempt creates it again.
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        Ok((f, MAGIC.len() as u64))
    }

    /// Begins the next segment. Called only when every record written is committed, so the
    /// new segment starts out committed and undoing a failed write never crosses segments.
    pub(super) fn rotate(&mut self) -> Result<()> {
        // Only the last segment has unused space: cut this one to its frames first.
        self.file.set_len(self.size)?;
        self.file.sync_all()?;
        let (f, size) = Self::create(&self.dir, self.seq + 1, self.segment_bytes)?;
        self.file = Arc::new(f);
        self.size = size;
        self.committed_size = size;
        self.dirty = false;
        Ok(())
    }

    /// Undoes writes that failed: the segment ends at its last committed frame again, with
    /// zeros after it (so no frame of the failed writes can be read back), and the next record
    /// takes the sequence number after the last committed one.
    pub(super) fn roll_back(&mut self) -> Result<()> {
        self.seq = self.committed.load(Ordering::Acquire);
        self.size = self.committed_size;
        self.undo_pending = true;
        // Shrinking frees space, so it works on a full file system too (not on a read-only one:
        // then the next write tries again first, see `ready`).
        self.file.set_len(self.size)?;
        self.file.set_len(self.segment_bytes.max(self.size))?;
        (&*self.file).seek(SeekFrom::Start(self.size))?;
        self.undo_pending = false;
        Ok(())
    }

    /// Undoes failed writes still on file before writing again.
    pub(super) fn ready(&mut self) -> Result<()> {
        if self.undo_pending {
            self.roll_back()?;
        }
        Ok(())
    }

    /// True when the segment, with `pending` bytes still to write, has reached `segment_bytes`
    /// and holds at least one record: the next record goes to a new segment.
    pub(super) fn is_full(&self, pending: usize) -> bool {
        self.size + pending as u64 >= self.segment_bytes && self.size > MAGIC.len() as u64
    }

    /// Writes one record as the next frame, rotating first when the segment is full.
    pub(super) fn append_one(&mut self, payload: &[u8]) -> Result<u64> {
        self.ready()?;
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

    pub(super) fn follow(&mut self, seq: u64, rec: Arc<Record>) {
        self.committed_size = self.size;
        self.committed.store(seq, Ordering::Release);
        if let Some(f) = &self.follower {
            let _ = f.send((seq, rec));
        }
    }

    pub(super) fn write_out(&mut self, buf: &[u8]) -> Result<()> {
        (&*self.file).write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}
