//! The frame format: segment names, the magic, encoding a frame and parsing one back, and where a
//! segment's frames end.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Segment header.
pub const MAGIC: &[u8; 8] = b"LRJOURN1";

/// Format version written in each frame (the record format, `storage::record::v5`).
pub const FORMAT_VERSION: u8 = 5;

/// Format versions this build reads: each version is a superset of the one before.
pub const READABLE_VERSIONS: std::ops::RangeInclusive<u8> = 1..=FORMAT_VERSION;

pub(super) const FRAME_HEADER: usize = 8;

const MAX_BODY: usize = 64 << 20;

pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

pub(super) enum FrameError {
    /// Only zeros from here: the unused space of the segment.
    End,
    /// Damage that a crash during the last write explains.
    Torn,
    /// Anything else.
    Corrupt(String),
}

/// The first sequence number a segment holds, from its name.
pub(super) fn first_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Checks the frame at `off`: its sequence number, its record's JSON (not decoded) and where the
/// next frame begins.
pub(super) fn parse_frame(data: &[u8], off: usize) -> std::result::Result<(u64, &[u8], usize), FrameError> {
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
    if !READABLE_VERSIONS.contains(&body[0]) {
        return Err(FrameError::Corrupt(format!("unsupported record format version {}", body[0])));
    }
    let seq = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    Ok((seq, &body[9..], off + FRAME_HEADER + len))
}

/// Where the frames of a recovered segment end: walks the frames' lengths from the header to
/// the first zero length or the end of the file.
pub(super) fn frames_end(f: &mut File) -> io::Result<u64> {
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

pub(super) fn frame_payload(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
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
