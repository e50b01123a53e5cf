//! The writer thread: group commit with the commit delay in `fsync` mode, inline appends and a
//! periodic fsync in `batch` and `none` modes.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::config::Durability;
use crate::error::{ActorError, Result};
use crate::storage::record::Record;

use super::format::frame_payload;
use super::segment::SegmentWriter;
use super::{Cmd, Shared};

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
    pub(super) fn new(delay: Duration) -> Self {
        Self { delay, last: None, mean: None, answered: None, since_concurrent: u32::MAX }
    }

    /// Takes in an append made at `at`, the first of its group or not. A gap counts as at most
    /// twice the delay, so a pause does not hide the next burst for long.
    pub(super) fn observe(&mut self, at: Instant, first_in_group: bool) {
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
    pub(super) fn answered(&mut self, at: Instant) {
        self.answered = Some(at);
        self.since_concurrent = self.since_concurrent.saturating_add(1);
    }

    /// True when waiting up to the delay for more records is likely to gather some.
    fn worth_waiting(&self) -> bool {
        self.since_concurrent <= CONCURRENCY_MEMORY && self.mean.is_some_and(|m| m < self.delay.as_nanos() as f64)
    }
}

/// How long appends are refused after a failed write before the next one tries again.
pub(super) const RETRY: Duration = Duration::from_secs(1);

impl Shared {
    /// A write failed with `e`: undoes it (or leaves the undo to the next write, when the file
    /// system refuses that too) and refuses appends for [`RETRY`]. Nothing of the failed write
    /// was answered, and everything answered before it stays.
    fn fault(&self, w: &mut SegmentWriter, e: &ActorError) {
        *self.retry_at.lock() = Instant::now() + RETRY;
        let undone = w.roll_back();
        if !self.faulted.swap(true, Ordering::AcqRel) {
            match undone {
                Ok(()) => tracing::error!(error = %e, "journal write failed and was undone; appends are refused, and retried every second"),
                Err(undo) => {
                    tracing::error!(error = %e, undo = %undo, "journal write failed; appends are refused, and retried every second")
                }
            }
        }
    }

    /// A write succeeded.
    fn recovered(&self) {
        if self.faulted.swap(false, Ordering::AcqRel) {
            tracing::warn!("journal writes succeed again; appends are accepted");
        }
    }

    /// True while a failed write holds appends back.
    pub(super) fn holding(&self) -> bool {
        self.faulted.load(Ordering::Acquire) && Instant::now() < *self.retry_at.lock()
    }

    /// `batch` and `none` modes: writes one record on the caller's thread. Also tells whether it
    /// is the first write since the last fsync.
    pub(super) fn append_inline(&self, rec: Arc<Record>, payload: &[u8]) -> Result<(u64, bool)> {
        let mut w = self.writer.lock();
        // Checked under the lock: nothing is written after a failure or a stop.
        if self.failed.load(Ordering::Acquire) || self.holding() {
            return Err(ActorError::JournalFailed);
        }
        let was_dirty = w.dirty;
        match w.append_one(payload) {
            Ok(seq) => {
                w.follow(seq, rec);
                self.recovered();
                Ok((seq, !was_dirty))
            }
            Err(e) => {
                self.fault(&mut w, &e);
                Err(ActorError::JournalFailed)
            }
        }
    }

    /// `batch` and `none` modes: fsyncs what was written, outside the lock so appends go on;
    /// `stop` also refuses every later append.
    pub(super) fn sync(&self, stop: bool) -> Result<()> {
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
    pub(super) fn run_syncer(&self, rx: mpsc::Receiver<Cmd>, batch_interval: Duration) {
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
    pub(super) fn run_group_commit(&self, rx: mpsc::Receiver<Cmd>, commit_delay: Duration) {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut company = Company::new(commit_delay);
        // What a group left for the next when its segment filled up.
        let mut carried: Vec<Cmd> = Vec::new();
        loop {
            let mut cmds = if carried.is_empty() {
                match rx.recv() {
                    Ok(c) => vec![c],
                    Err(_) => break,
                }
            } else {
                std::mem::take(&mut carried)
            };
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
            // Records that queued up behind a failed write wait out the retry time too.
            let holding = self.holding();
            if !holding {
                result = w.ready();
            }
            let mut cmds = cmds.into_iter();
            while let Some(c) = cmds.next() {
                match c {
                    Cmd::Append(_, _, _, done) if holding => drop(done.send(Err(ActorError::JournalFailed))),
                    Cmd::Append(rec, payload, at, done) => {
                        if result.is_ok() && w.is_full(buf.len()) {
                            if !appended.is_empty() {
                                // A segment begins only when every record written is committed
                                // (so undoing a failed group never crosses segments): this group
                                // ends here, the rest goes into the next.
                                carried.push(Cmd::Append(rec, payload, at, done));
                                carried.extend(cmds);
                                break;
                            }
                            result = w.rotate();
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
                    if !answers.is_empty() {
                        self.recovered();
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
                    // Nothing of this group was answered: undone, it is as if never sent. What
                    // earlier groups wrote was fsynced before they were answered.
                    self.fault(&mut w, &e);
                    let stopping = stop.is_some();
                    if stopping {
                        self.failed.store(true, Ordering::Release);
                        w.follower = None;
                    }
                    drop(w);
                    for (_, _, done) in appended {
                        let _ = done.send(Err(ActorError::JournalFailed));
                    }
                    // Everything committed is durable: a flush or stop has nothing left to do.
                    for done in flushes.into_iter().chain(stop) {
                        let _ = done.send(Ok(()));
                    }
                    if stopping {
                        return;
                    }
                }
            }
        }
        let _ = self.writer.lock().file.sync_data();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
