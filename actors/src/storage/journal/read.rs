//! Reading and recovery: every record after a position, in order; a torn tail cut at start-up,
//! damage elsewhere refused with file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{ActorError, Result};
use crate::storage::record::Record;

use super::format::{first_seq, parse_frame, FrameError, MAGIC};

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

/// Reads every record, calling `f(seq, record)` in order. Does not modify files.
pub fn read_all(dir: &Path, f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    read_after(dir, 0, f)
}

/// Reads the records after sequence number `after`, calling `f(seq, record)` in order, for a
/// start-up whose snapshot already covers everything up to `after`. Does not modify files. The
/// frames are read as bytes by [`read_frames_after`]; each record's JSON is decoded here, and a
/// record that does not decode is corruption at its frame's offset.
pub fn read_after(dir: &Path, after: u64, mut f: impl FnMut(u64, Record)) -> Result<ReadReport> {
    read_frames_after(dir, after, |seq, json| {
        let rec = serde_json::from_slice(json).map_err(|e| format!("undecodable record: {e}"))?;
        f(seq, rec);
        Ok(())
    })
}

/// Reads the frames after sequence number `after`, calling `f(seq, record JSON)` in order; an
/// error from `f` stops the reading as corruption at that frame. Does not modify files.
///
/// A segment whose successor begins at or before `after + 1` holds only covered records and is
/// not read at all, so the cost does not grow with the journal's history. In the segment that
/// holds `after`, the frames up to it are checked (length, checksum, format version, sequence)
/// but their JSON is not decoded. Each segment's first frame must carry the sequence number its
/// name gives, and each segment must begin right after the last record of the one before.
/// `ReadReport::records` counts the frames read, covered ones included.
pub fn read_frames_after(dir: &Path, after: u64, mut f: impl FnMut(u64, &[u8]) -> std::result::Result<(), String>) -> Result<ReadReport> {
    let segs = segments(dir)?;
    let mut report = ReadReport::default();
    let mut start = 0;
    while start + 1 < segs.len() && first_seq(&segs[start + 1]).is_some_and(|next| next <= after + 1) {
        start += 1;
    }
    // Every segment read must begin with the record its name gives, and each after the first
    // read right after the last record of the one before: a segment missing, emptied or cut short
    // before the last is corruption, not a gap read over.
    let mut next_expected: Option<u64> = None;
    for (i, path) in segs.iter().enumerate().skip(start) {
        let last = i + 1 == segs.len();
        let named = first_seq(path);
        if let (Some(want), Some(named)) = (next_expected, named) {
            if named != want {
                return Err(ActorError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: format!("the segment named for record {named} follows one that ends before record {want}"),
                });
            }
        }
        let mut expected = named;
        next_expected = named;
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
                    next_expected = Some(seq + 1);
                    if seq > after {
                        f(seq, json).map_err(|reason| corrupt(off as u64, reason))?;
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
