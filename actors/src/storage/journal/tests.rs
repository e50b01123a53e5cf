//! The journal's tests: frames, every durability mode, the commit delay, rotation, torn tails
//! and corruption, reading after a snapshot's position.

use super::format::{first_seq, frame_payload, parse_frame, segment_name, FRAME_HEADER, MAGIC};
use super::*;
use chrono::Utc;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

fn rec(i: u64) -> Record {
    Record::QueueExpired { at: Utc::now(), lead_id: format!("lead-{i}") }
}

fn write(dir: &Path, n: u64, segment_bytes: u64) {
    write_in(dir, n, segment_bytes, Durability::Fsync);
}

fn start(dir: &Path, durability: Durability, segment_bytes: u64) -> (Journal, mpsc::Receiver<Committed>, Arc<Metrics>) {
    start_with(dir, JournalSettings { durability, batch_interval: Duration::from_millis(5), commit_delay: Duration::ZERO, segment_bytes })
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

pub(super) fn write_in(dir: &Path, n: u64, segment_bytes: u64, durability: Durability) {
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

#[test]
fn frames_are_read_as_bytes_and_one_refused_is_corruption_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 3, 1 << 20);
    let mut seen = Vec::new();
    read_frames_after(dir.path(), 1, |seq, json| {
        seen.push((seq, serde_json::from_slice::<Record>(json).unwrap().lead_id().map(str::to_string)));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [(2, Some("lead-1".to_string())), (3, Some("lead-2".to_string()))]);
    let mut offsets = Vec::new();
    let err = read_frames_after(dir.path(), 0, |seq, json| {
        offsets.push(json.len());
        if seq == 2 {
            Err("refused".into())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    match err {
        // The second frame begins after the magic and the first frame (header, version, sequence
        // number, JSON).
        ActorError::Corrupt { offset, reason, .. } => {
            assert_eq!(reason, "refused");
            assert_eq!(offset as usize, MAGIC.len() + FRAME_HEADER + 9 + offsets[0]);
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_failed_rotation_is_undone_and_retried_in_every_mode() {
    for durability in [Durability::Fsync, Durability::Batch, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let (j, _rx, _) = start(dir.path(), durability, 256);
        // Directories where the next segments would go: beginning one fails.
        let blocked: Vec<PathBuf> = (2..200).map(|i| dir.path().join(segment_name(i))).collect();
        blocked.iter().for_each(|p| fs::create_dir(p).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut n = 0;
        let refused = loop {
            match rt.block_on(j.append(Arc::new(rec(n + 1)))) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(refused, ActorError::JournalFailed), "{durability:?}: {refused:?}");
        assert!(n > 0 && j.is_failed(), "{durability:?}: {n} records, then not ready while refusing");
        assert!(matches!(rt.block_on(j.append(Arc::new(rec(n + 1)))), Err(ActorError::JournalFailed)), "{durability:?}: held back");
        blocked.iter().for_each(|p| fs::remove_dir(p).unwrap());
        std::thread::sleep(super::commit::RETRY);
        let seq = rt.block_on(j.append(Arc::new(rec(n + 1)))).unwrap();
        assert_eq!(seq, n + 1, "{durability:?}: the refused records took no sequence number");
        assert!(!j.is_failed(), "{durability:?}");
        rt.block_on(j.stop()).unwrap();
        assert_eq!(read(dir.path()).0, (1..=n + 1).collect::<Vec<_>>(), "{durability:?}");
        assert_eq!(segments(dir.path()).unwrap().len(), 2, "{durability:?}");
    }
}
