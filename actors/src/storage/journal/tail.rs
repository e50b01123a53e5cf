//! Following the journal's files from a position, for readers outside the engine's own stream
//! (the webhook outbox): each call reads the frames written since the last one, from the byte
//! offset where it stopped, and moves to the next segment when the current one was cut.
//!
//! The caller bounds every read by the committed position ([`super::Journal::committed_seq`]),
//! so every frame it reads was written whole: a frame that does not check is corruption, never a
//! write in progress.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{ActorError, Result};

use super::format::{first_seq, FRAME_HEADER, MAGIC, READABLE_VERSIONS};
use super::read::segments;

/// Largest frame body a follower accepts (the writer's own limit).
const MAX_BODY: usize = 64 << 20;

/// A reader of the journal's records after a position, kept open between reads.
pub struct Tail {
    dir: PathBuf,
    /// The segment being read, and the offset of its next frame.
    open: Option<(PathBuf, File, u64)>,
    /// The next record wanted.
    next_seq: u64,
    body: Vec<u8>,
}

impl Tail {
    /// A reader of the records after `after` in the journal directory `dir`.
    pub fn new(dir: &Path, after: u64) -> Self {
        Self { dir: dir.to_path_buf(), open: None, next_seq: after + 1, body: Vec::new() }
    }

    /// The last record read (the position this reader holds).
    pub fn position(&self) -> u64 {
        self.next_seq - 1
    }

    /// Reads at most `max` records with sequence numbers up to `upto`, calling `f(seq, JSON)` in
    /// order; returns how many it read. Fewer than asked means the files hold no more yet.
    pub fn read(&mut self, upto: u64, max: usize, mut f: impl FnMut(u64, &[u8])) -> Result<usize> {
        let mut n = 0;
        while self.next_seq <= upto && n < max {
            if self.open.is_none() && !self.open_segment()? {
                return Ok(n);
            }
            let (path, file, offset) = self.open.as_mut().expect("opened above");
            let mut header = [0u8; FRAME_HEADER];
            let got = read_full(file, &mut header, *offset)?;
            let len = if got == FRAME_HEADER { u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize } else { 0 };
            if len == 0 {
                // The end of this segment's frames: the record wanted is in the next segment, if
                // it exists yet (never this one again, however damaged it is).
                let current = path.clone();
                self.open = None;
                match self.segment_named(self.next_seq)? {
                    Some(next) if next != current => {
                        let file = File::open(&next)?;
                        self.open = Some((next, file, MAGIC.len() as u64));
                        continue;
                    }
                    _ => return Ok(n),
                }
            }
            let at = *offset;
            let corrupt = |reason: String| ActorError::Corrupt { file: path.clone(), offset: at, reason };
            if !(9..=MAX_BODY).contains(&len) {
                return Err(corrupt(format!("implausible record length {len}")));
            }
            self.body.resize(len, 0);
            if read_full(file, &mut self.body, at + FRAME_HEADER as u64)? < len {
                return Err(corrupt("record cut short".into()));
            }
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            if crc32fast::hash(&self.body) != crc {
                return Err(corrupt("checksum mismatch".into()));
            }
            if !READABLE_VERSIONS.contains(&self.body[0]) {
                return Err(corrupt(format!("unsupported record format version {}", self.body[0])));
            }
            let seq = u64::from_le_bytes(self.body[1..9].try_into().expect("8 bytes"));
            *offset += (FRAME_HEADER + len) as u64;
            if seq < self.next_seq {
                continue;
            }
            if seq > self.next_seq {
                return Err(corrupt(format!("record {seq} where {} was expected", self.next_seq)));
            }
            f(seq, &self.body[9..]);
            self.next_seq += 1;
            n += 1;
        }
        Ok(n)
    }

    /// Opens the segment that holds `next_seq`: the last whose first record is at or before it.
    fn open_segment(&mut self) -> Result<bool> {
        let segs = segments(&self.dir)?;
        let Some(path) = segs.iter().rev().find(|p| first_seq(p).is_some_and(|s| s <= self.next_seq)) else { return Ok(false) };
        let file = File::open(path)?;
        self.open = Some((path.clone(), file, MAGIC.len() as u64));
        Ok(true)
    }

    /// The segment whose name says it begins with record `seq`.
    fn segment_named(&self, seq: u64) -> Result<Option<PathBuf>> {
        Ok(segments(&self.dir)?.into_iter().find(|p| first_seq(p) == Some(seq)))
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::journal::format::frame_payload;
    use std::io::Write;

    fn segment(dir: &Path, first: u64, records: std::ops::RangeInclusive<u64>, unused: usize) {
        let mut data = MAGIC.to_vec();
        for seq in records {
            frame_payload(seq, format!("{{\"n\":{seq}}}").as_bytes(), &mut data);
        }
        data.extend(std::iter::repeat_n(0u8, unused));
        std::fs::File::create(dir.join(format!("{first:020}.seg"))).unwrap().write_all(&data).unwrap();
    }

    fn read(t: &mut Tail, upto: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        t.read(upto, max, |seq, json| {
            assert_eq!(json, format!("{{\"n\":{seq}}}").as_bytes());
            out.push(seq);
        })
        .unwrap();
        out
    }

    #[test]
    fn follows_across_segments_from_any_position_and_stops_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 1, 1..=5, 0);
        segment(dir.path(), 6, 6..=8, 4096);
        let mut t = Tail::new(dir.path(), 0);
        assert_eq!(read(&mut t, 3, 100), vec![1, 2, 3]);
        assert_eq!(read(&mut t, 100, 4), vec![4, 5, 6, 7]);
        assert_eq!(read(&mut t, 100, 100), vec![8]);
        assert_eq!(t.position(), 8);
        // Nothing more yet; then the writer adds record 9 to the open segment.
        assert!(read(&mut t, 100, 100).is_empty());
        segment(dir.path(), 6, 6..=9, 4096);
        assert_eq!(read(&mut t, 100, 100), vec![9]);
        // A reader that starts in the middle skips what it does not want.
        let mut t = Tail::new(dir.path(), 6);
        assert_eq!(read(&mut t, 100, 100), vec![7, 8, 9]);
        // Before the first segment exists, nothing.
        let empty = tempfile::tempdir().unwrap();
        assert!(read(&mut Tail::new(empty.path(), 0), 10, 10).is_empty());
    }

    #[test]
    fn a_damaged_frame_is_corruption_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 1, 1..=3, 0);
        let path = dir.path().join(format!("{:020}.seg", 1));
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 2;
        data[last] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        let mut t = Tail::new(dir.path(), 0);
        match t.read(10, 10, |_, _| {}) {
            Err(ActorError::Corrupt { reason, offset, .. }) => assert!(reason.contains("checksum") && offset > 8, "{reason} {offset}"),
            other => panic!("{other:?}"),
        }
    }
}
