//! Archiving finished leads: journaled, then dropped from memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::storage::record::Record;

use super::RouterSupervisor;

/// Most leads named in one [`Record::Archived`].
const ARCHIVE_BATCH: usize = 4096;

impl RouterSupervisor {
    /// Archives the finished leads that have been finished for longer than
    /// `storage.finished_lead_retention_seconds`, and the oldest beyond
    /// `storage.max_finished_leads`: journals an [`Record::Archived`] per batch, then drops them
    /// from memory (the snapshotter drops them from the snapshot). Returns how many.
    pub async fn archive_finished(&self) -> Result<usize> {
        let keep = Duration::seconds(self.inner.cfg.storage.finished_lead_retention_seconds as i64);
        let most = usize::try_from(self.inner.cfg.storage.max_finished_leads).unwrap_or(usize::MAX);
        let mut archived = 0;
        loop {
            let now = self.inner.clock.now();
            let due: Vec<(DateTime<Utc>, String)> = {
                let mut f = self.inner.finished.lock();
                let mut due = Vec::new();
                while due.len() < ARCHIVE_BATCH && f.front().is_some_and(|(t, _)| *t + keep <= now || f.len() > most) {
                    due.extend(f.pop_front());
                }
                due
            };
            if due.is_empty() || self.inner.stopped.load(Ordering::Acquire) {
                return Ok(archived);
            }
            // Each lead stays locked from the check until it has left the table, so no request
            // sees it change in between; requests lock one lead at a time, so this cannot deadlock.
            let mut held = Vec::with_capacity(due.len());
            for (at, id) in due {
                let Some(cell) = self.inner.leads.get(&id).map(|c| c.clone()) else { continue };
                let guard = cell.clone().lock_owned().await;
                if guard.as_ref().is_some_and(|l| l.state.is_final()) {
                    held.push((at, id, cell, guard));
                }
            }
            if held.is_empty() {
                continue;
            }
            let rec = Arc::new(Record::Archived { at: now, lead_ids: held.iter().map(|(_, id, ..)| id.clone()).collect() });
            if let Err(e) = self.inner.journal.append(rec).await {
                // Still in memory: put them back, in order, for the next attempt.
                let mut f = self.inner.finished.lock();
                for (at, id, ..) in held.into_iter().rev() {
                    f.push_front((at, id));
                }
                return Err(e);
            }
            archived += held.len();
            self.inner.metrics.leads_archived.inc_by(held.len() as u64);
            for (_, id, cell, guard) in held {
                self.inner.leads.remove_if(&id, |_, v| Arc::ptr_eq(v, &cell));
                drop(guard);
            }
        }
    }
}
