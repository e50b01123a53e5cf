//! Broker actors' live counters, kept in blocks of adjacent slots.
//!
//! Each broker actor publishes its load and outcome counts into a [`LiveCounters`]; the filter
//! reads every broker's on every decision. Brokers created together get neighbouring slots of
//! one block, so that scan reads memory in order (which the CPU prefetches) instead of chasing
//! one allocation per broker.

use std::ops::Deref;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use leadrouter_models::BrokerProfile;
use parking_lot::Mutex;

use crate::storage::state::BrokerLive;

/// Live numbers published by a broker actor after every change.
///
/// The fields the filter reads fill the first cache line; the ones written on every message
/// (mailbox depth, handled count) sit on the second, so the actor's bookkeeping does not take
/// the filter's line away from the HTTP workers.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct LiveCounters {
    open: AtomicU32,
    daily_day: AtomicI32,
    daily_used: AtomicU32,
    day_end_ms: AtomicI64,
    converted: AtomicU64,
    resolved: AtomicU64,
    sla_hits: AtomicU64,
    sla_total: AtomicU64,
    restarts: AtomicU32,
    withheld: AtomicU32,
    book: Bookkeeping,
}

/// What the actor and its senders write on every message, aligned to start its own cache line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Bookkeeping {
    mailbox: AtomicI64,
    handled: AtomicU64,
    last_message_ms: AtomicI64,
}

/// An actor's own counters, as the admin view shows them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorCounters {
    /// Messages sent and not yet handled.
    pub mailbox: u64,
    /// Messages handled.
    pub handled: u64,
    /// When the last one was handled.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Restarts after a panic or an admin restart.
    pub restarts: u32,
}

impl LiveCounters {
    /// Back to the state of a new broker, for a reused slot.
    fn reset(&self) {
        for a in [&self.open, &self.daily_used, &self.restarts, &self.withheld] {
            a.store(0, Ordering::Relaxed);
        }
        self.daily_day.store(0, Ordering::Relaxed);
        for a in [&self.day_end_ms, &self.book.mailbox, &self.book.last_message_ms] {
            a.store(0, Ordering::Relaxed);
        }
        for a in [&self.converted, &self.resolved, &self.sla_hits, &self.sla_total, &self.book.handled] {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// Copies the numbers out of the actor's state; `profile` gives the end of the daily
    /// counter's day, so readers never convert time zones.
    pub fn publish(&self, live: &BrokerLive, profile: &BrokerProfile) {
        self.withheld.store(live.held(profile.max_concurrent) - live.open_count(), Ordering::Release);
        self.open.store(live.open_count(), Ordering::Release);
        let day = live.daily_day.map_or(0, |d| d.num_days_from_ce());
        if self.daily_day.swap(day, Ordering::AcqRel) != day || self.day_end_ms.load(Ordering::Acquire) == 0 {
            let end = live.daily_day.map_or(i64::MIN, |d| profile.day_end(d).timestamp_millis());
            self.day_end_ms.store(end, Ordering::Release);
        }
        self.daily_used.store(live.daily_used, Ordering::Release);
        let c = &live.all_time;
        self.converted.store(c.converted, Ordering::Relaxed);
        self.resolved.store(c.resolved, Ordering::Relaxed);
        self.sla_hits.store(c.sla_hits, Ordering::Relaxed);
        self.sla_total.store(c.sla_total, Ordering::Relaxed);
    }

    /// A message was sent to the actor.
    pub fn sent(&self) {
        self.book.mailbox.fetch_add(1, Ordering::Relaxed);
    }

    /// The actor handled a message.
    pub fn handled(&self) {
        let _ = self.book.mailbox.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some((m - 1).max(0)));
        self.book.handled.fetch_add(1, Ordering::Relaxed);
        self.book.last_message_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The actor restarted.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The actor's own counters.
    pub fn actor(&self) -> ActorCounters {
        let ms = self.book.last_message_ms.load(Ordering::Relaxed);
        ActorCounters {
            mailbox: self.book.mailbox.load(Ordering::Relaxed).max(0) as u64,
            handled: self.book.handled.load(Ordering::Relaxed),
            last_message_at: (ms > 0).then(|| DateTime::from_timestamp_millis(ms)).flatten(),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Open leads.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// Seats adaptive throttling withholds.
    pub fn withheld(&self) -> u32 {
        self.withheld.load(Ordering::Acquire)
    }

    /// Seats taken or withheld: what the capacity checks compare with the configured seats.
    pub fn held(&self) -> u32 {
        self.open() + self.withheld()
    }

    /// The broker's time zone changed: the next publish recomputes when the counter's day ends.
    pub fn forget_day_end(&self) {
        self.day_end_ms.store(0, Ordering::Release);
    }

    /// Leads counted against the daily cap of the broker's local day at `now` (zero once the
    /// counter's day has ended).
    pub fn used_today(&self, now: DateTime<Utc>) -> u32 {
        self.used_today_ms(now.timestamp_millis())
    }

    /// [`Self::used_today`] at `now_ms`, milliseconds since the Unix epoch.
    pub fn used_today_ms(&self, now_ms: i64) -> u32 {
        let used = self.daily_used.load(Ordering::Acquire);
        if used > 0 && now_ms < self.day_end_ms.load(Ordering::Acquire) {
            used
        } else {
            0
        }
    }

    /// (converted, resolved, sla hits, sla total).
    pub fn outcomes(&self) -> [u64; 4] {
        [
            self.converted.load(Ordering::Relaxed),
            self.resolved.load(Ordering::Relaxed),
            self.sla_hits.load(Ordering::Relaxed),
            self.sla_total.load(Ordering::Relaxed),
        ]
    }
}

/// Slots per block.
const SLOTS: usize = 64;

/// Counters for up to [`SLOTS`] brokers in one allocation, each slot with its holders' count.
struct Block {
    counters: [LiveCounters; SLOTS],
    holders: [AtomicU32; SLOTS],
    /// Slots with a holder, so that handing out a slot skips full blocks without visiting each
    /// of their slots (creating n brokers would otherwise take time in n²).
    held: AtomicU32,
}

impl Default for Block {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| LiveCounters::default()),
            holders: std::array::from_fn(|_| AtomicU32::new(0)),
            held: AtomicU32::new(0),
        }
    }
}

/// One broker's counters: a slot of a shared block. Cloning it is another holder of the same
/// slot; the slot is free again once every holder is gone.
pub struct Counters {
    block: Arc<Block>,
    slot: usize,
}

impl Counters {
    /// Counters in a block of their own, for an actor that no index reads (tests, benchmarks).
    pub fn standalone() -> Self {
        CounterSlab::default().take()
    }
}

impl Deref for Counters {
    type Target = LiveCounters;

    fn deref(&self) -> &LiveCounters {
        &self.block.counters[self.slot]
    }
}

impl Clone for Counters {
    fn clone(&self) -> Self {
        self.block.holders[self.slot].fetch_add(1, Ordering::Relaxed);
        Self { block: self.block.clone(), slot: self.slot }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        if self.block.holders[self.slot].fetch_sub(1, Ordering::Release) == 1 {
            self.block.held.fetch_sub(1, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").field("slot", &self.slot).field("live", &**self).finish()
    }
}

/// Hands out counter slots, first free slot first, so brokers created in a row sit side by side.
#[derive(Default)]
pub struct CounterSlab {
    blocks: Mutex<Vec<Arc<Block>>>,
}

impl CounterSlab {
    /// Zeroed counters in the first free slot.
    pub fn take(&self) -> Counters {
        let mut blocks = self.blocks.lock();
        for block in blocks.iter() {
            if block.held.load(Ordering::Acquire) as usize >= SLOTS {
                continue;
            }
            for (slot, holders) in block.holders.iter().enumerate() {
                // A slot nobody holds cannot be read or written by anyone: safe to hand out.
                if holders.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    block.held.fetch_add(1, Ordering::Relaxed);
                    block.counters[slot].reset();
                    return Counters { block: block.clone(), slot };
                }
            }
        }
        let block = Arc::new(Block::default());
        block.holders[0].store(1, Ordering::Relaxed);
        block.held.store(1, Ordering::Relaxed);
        blocks.push(block.clone());
        Counters { block, slot: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use leadrouter_models::Broker;

    #[test]
    fn the_daily_count_lapses_at_the_brokers_local_midnight() {
        let mut b: Broker = serde_json::from_str(r#"{"id":"ny","name":"B","specialties":[{"type":"AUTO","proficiency":3}],"licenses":[{"state":"NY","lines":["AUTO"],"expiresOn":"2099-01-01"}],"capacity":{"maxConcurrent":5,"dailyCap":5},"schedule":{"timezone":"America/New_York","hours":{}}}"#).unwrap();
        let counters = LiveCounters::default();
        let live = BrokerLive { daily_day: NaiveDate::from_ymd_opt(2026, 11, 23), daily_used: 3, ..BrokerLive::default() };
        counters.publish(&live, &b.profile());
        // New York's 23 November ends at 05:00 UTC on the 24th.
        assert_eq!(counters.used_today(Utc.with_ymd_and_hms(2026, 11, 24, 4, 59, 59).unwrap()), 3);
        assert_eq!(counters.used_today(Utc.with_ymd_and_hms(2026, 11, 24, 5, 0, 0).unwrap()), 0);
        // A time-zone edit moves the end once the actor forgets it and publishes again.
        b.schedule.as_mut().unwrap().timezone = "America/Los_Angeles".into();
        counters.forget_day_end();
        counters.publish(&live, &b.profile());
        assert_eq!(counters.used_today(Utc.with_ymd_and_hms(2026, 11, 24, 7, 59, 0).unwrap()), 3);
        assert_eq!(counters.used_today(Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()), 0);
        // Nothing counted yet: zero whatever the time.
        let fresh = LiveCounters::default();
        fresh.publish(&BrokerLive::default(), &b.profile());
        assert_eq!(fresh.used_today(Utc::now()), 0);
    }

    #[test]
    fn slots_are_adjacent_shared_by_clones_and_reused_when_free() {
        let slab = CounterSlab::default();
        let taken: Vec<Counters> = (0..SLOTS + 2).map(|_| slab.take()).collect();
        assert_eq!(taken.iter().map(|c| c.slot).collect::<Vec<_>>()[..3], [0, 1, 2]);
        assert_eq!((taken[SLOTS].slot, taken[SLOTS + 1].slot), (0, 1), "a second block when the first is full");
        assert!(Arc::ptr_eq(&taken[0].block, &taken[SLOTS - 1].block));
        let held = |c: &Counters| c.block.held.load(Ordering::Relaxed) as usize;
        assert_eq!((held(&taken[0]), held(&taken[SLOTS])), (SLOTS, 2));
        // Neighbouring slots are neighbouring memory, one 64-byte line of filter fields each.
        let (a, b) = (&*taken[0] as *const LiveCounters as usize, &*taken[1] as *const LiveCounters as usize);
        assert_eq!((b - a, std::mem::align_of::<LiveCounters>()), (std::mem::size_of::<LiveCounters>(), 64));
        // The per-message bookkeeping starts the second line.
        assert_eq!(std::mem::offset_of!(LiveCounters, book), 64);

        // A clone is the same counters.
        let copy = taken[3].clone();
        copy.sent();
        assert_eq!(taken[3].actor().mailbox, 1);
        // Slot 3 stays taken while any holder remains; then it is reused, zeroed.
        let mut taken = taken;
        drop(taken.remove(3));
        let next = slab.take();
        assert!(next.slot == 2 && !Arc::ptr_eq(&next.block, &taken[0].block), "slot 3 is still held by the clone");
        assert_eq!(held(&taken[0]), SLOTS);
        drop(copy);
        assert_eq!(held(&taken[0]), SLOTS - 1, "the block is no longer full");
        let reused = slab.take();
        assert_eq!(reused.slot, 3);
        assert!(Arc::ptr_eq(&reused.block, &taken[0].block));
        assert_eq!(reused.actor().mailbox, 0);
        assert_eq!(held(&taken[0]), SLOTS);
    }
}
