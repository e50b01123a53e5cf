//! The waiting queue's sweeps: expire leads past their time, assign those that fit; in the
//! background, coalesced, or on demand for a simulation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use leadrouter_models::LeadState;

use crate::storage::record::Record;

use super::RouterSupervisor;

/// What one sweep of the queue did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sweep {
    /// Leads given to a broker: (lead, broker).
    pub assigned: Vec<(String, String)>,
    /// Leads that waited past their expiry.
    pub expired: Vec<String>,
}

impl RouterSupervisor {
    /// Sweeps the queue (expiring leads past their time, assigning what fits) in the background.
    /// Concurrent kicks coalesce into one more sweep.
    pub fn kick_drain(&self) {
        if self.inner.manual.load(Ordering::Acquire) {
            return;
        }
        if self.inner.draining.swap(true, Ordering::AcqRel) {
            self.inner.drain_again.store(true, Ordering::Release);
            return;
        }
        let me = self.clone();
        actix_rt::spawn(async move {
            loop {
                let _ = me.drain_once().await;
                if !me.inner.drain_again.swap(false, Ordering::AcqRel) {
                    break;
                }
            }
            me.inner.draining.store(false, Ordering::Release);
            if me.inner.drain_again.swap(false, Ordering::AcqRel) {
                me.kick_drain();
            }
        });
    }

    /// Sweeps the queue once, now, and says what it did. Meant for an engine started with
    /// [`RouterSupervisor::start_manual`].
    pub async fn drain(&self) -> Sweep {
        self.drain_once().await
    }

    pub(super) async fn drain_once(&self) -> Sweep {
        let mut sweep = Sweep::default();
        let ids = self.inner.queue.lock().ordered();
        let mut now = self.inner.clock.now();
        let mut room = self.inner.index.any_room(now);
        for id in ids {
            if self.inner.stopped.load(Ordering::Acquire) {
                break;
            }
            let Ok(cell) = self.lead_cell(&id) else {
                self.inner.queue.lock().remove(&id);
                continue;
            };
            let mut slot = cell.lock().await;
            let Some(lead) = slot.as_mut() else { continue };
            if lead.state != LeadState::Queued {
                self.inner.queue.lock().remove(&id);
                continue;
            }
            now = self.inner.clock.now();
            if lead.expires_at.is_some_and(|e| e <= now) {
                let rec = Arc::new(Record::QueueExpired { at: now, lead_id: id.clone() });
                match self.inner.journal.append(rec.clone()).await {
                    Ok(_) => {
                        self.apply_to_lead(lead, &rec).await;
                        sweep.expired.push(id.clone());
                    }
                    Err(e) => tracing::error!(lead = %id, error = %e, "queue expiry could not be recorded"),
                }
                continue;
            }
            if room {
                match self.try_assign(lead, now).await {
                    Ok(true) => {
                        room = self.inner.index.any_room(now);
                        sweep.assigned.push((id.clone(), lead.broker_id.clone().unwrap_or_default()));
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(lead = %id, error = %e, "queued lead could not be assigned"),
                }
            }
        }
        sweep
    }
}
