//! The read-only broker index: static profiles plus live counters the broker actors keep current.
//!
//! The decision path filters hard constraints here without messaging any actor; only the top K
//! candidates are then asked to score. The counters are copies: each broker actor owns the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Datelike, Utc};
use leadrouter_models::{Broker, BrokerProfile, Exclusion, LeadFeatures};
use parking_lot::RwLock;

use crate::broker_actor::BrokerActor;
use crate::state::BrokerLive;

/// Live numbers published by a broker actor after every change.
#[derive(Debug, Default)]
pub struct LiveCounters {
    open: AtomicU32,
    daily_day: AtomicI32,
    daily_used: AtomicU32,
    day_end_ms: AtomicI64,
    converted: AtomicU64,
    resolved: AtomicU64,
    sla_hits: AtomicU64,
    sla_total: AtomicU64,
    mailbox: AtomicI64,
    handled: AtomicU64,
    last_message_ms: AtomicI64,
    restarts: AtomicU32,
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
    /// Copies the numbers out of the actor's state; `profile` gives the end of the daily
    /// counter's day, so readers never convert time zones.
    pub fn publish(&self, live: &BrokerLive, profile: &BrokerProfile) {
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
        self.mailbox.fetch_add(1, Ordering::Relaxed);
    }

    /// The actor handled a message.
    pub fn handled(&self) {
        let _ = self.mailbox.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some((m - 1).max(0)));
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.last_message_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The actor restarted.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The actor's own counters.
    pub fn actor(&self) -> ActorCounters {
        let ms = self.last_message_ms.load(Ordering::Relaxed);
        ActorCounters {
            mailbox: self.mailbox.load(Ordering::Relaxed).max(0) as u64,
            handled: self.handled.load(Ordering::Relaxed),
            last_message_at: (ms > 0).then(|| DateTime::from_timestamp_millis(ms)).flatten(),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Open leads.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// The broker's time zone changed: the next publish recomputes when the counter's day ends.
    pub fn forget_day_end(&self) {
        self.day_end_ms.store(0, Ordering::Release);
    }

    /// Leads counted against the daily cap of the broker's local day at `now` (zero once the
    /// counter's day has ended).
    pub fn used_today(&self, now: DateTime<Utc>) -> u32 {
        let used = self.daily_used.load(Ordering::Acquire);
        if used > 0 && now.timestamp_millis() < self.day_end_ms.load(Ordering::Acquire) {
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

/// One broker in the index.
pub struct IndexEntry {
    /// Configuration (a copy).
    pub broker: Arc<Broker>,
    /// Compiled for eligibility checks.
    pub profile: BrokerProfile,
    /// The broker's actor.
    pub addr: Addr<BrokerActor>,
    /// Live numbers.
    pub live: Arc<LiveCounters>,
    /// The first 16 bytes of the id as a big-endian number: orders like the id whenever the two
    /// differ, so ties in a ranking rarely need the strings.
    id_key: u128,
}

/// The first 16 bytes of `id`, zero-padded, as a big-endian number.
fn id_key(id: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

impl IndexEntry {
    /// An entry for `broker`, served by the actor at `addr`.
    pub fn new(broker: Arc<Broker>, profile: BrokerProfile, addr: Addr<BrokerActor>, live: Arc<LiveCounters>) -> Self {
        let id_key = id_key(&broker.id);
        Self { broker, profile, addr, live, id_key }
    }

    /// Orders two entries by broker id.
    pub fn cmp_id(&self, other: &Self) -> std::cmp::Ordering {
        self.id_key.cmp(&other.id_key).then_with(|| self.broker.id.cmp(&other.broker.id))
    }

    /// Sends a message to the broker's actor, counting it in the mailbox depth.
    pub fn send<M>(&self, msg: M) -> actix::dev::Request<BrokerActor, M>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        BrokerActor: actix::Handler<M>,
    {
        self.live.sent();
        self.addr.send(msg)
    }

    /// The feed's view of this broker from the index copies.
    pub fn capacity_state(&self, now: DateTime<Utc>) -> crate::feed::CapacityState {
        crate::feed::CapacityState::of(&self.broker, self.live.open(), self.live.used_today(now))
    }

    /// Capacity headroom 0–1 at `now`.
    pub fn headroom(&self, now: DateTime<Utc>) -> f64 {
        self.profile.headroom(self.live.open(), self.live.used_today(now))
    }
}

/// A broker that passed the filter, with what the pre-rank needs, read in the same pass.
#[derive(Clone, Copy, Debug)]
pub struct Eligible {
    /// Position in [`Candidates::list`].
    pub pos: u32,
    /// Mean proficiency over the lead's lines, 0–1.
    pub specialty: f64,
    /// Capacity headroom, 0–1.
    pub headroom: f64,
    /// Converted, resolved, SLA hits, SLA total.
    pub outcomes: [u64; 4],
}

/// The outcome of the hard-constraint filter.
pub struct Candidates {
    /// The brokers as the filter saw them (a shared copy of the index's list).
    pub list: Arc<Vec<Arc<IndexEntry>>>,
    /// The brokers that passed, in index order.
    pub eligible: Vec<Eligible>,
    /// Brokers ruled out, per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Population outcome totals: converted, resolved, SLA hits, SLA total.
    pub totals: [u64; 4],
}

impl Candidates {
    /// The broker at position `i` of `list`.
    pub fn entry(&self, i: u32) -> &Arc<IndexEntry> {
        &self.list[i as usize]
    }
}

#[derive(Default)]
struct Inner {
    /// Shared with filters in progress; an edit copies it only while one holds it.
    list: Arc<Vec<Arc<IndexEntry>>>,
    pos: HashMap<String, usize>,
}

/// All brokers, for fast filtering.
#[derive(Default)]
pub struct BrokerIndex {
    inner: RwLock<Inner>,
}

impl BrokerIndex {
    /// Adds or replaces the entry for its broker id.
    pub fn upsert(&self, entry: IndexEntry) {
        let mut g = self.inner.write();
        let g = &mut *g;
        let id = entry.broker.id.clone();
        let entry = Arc::new(entry);
        let list = Arc::make_mut(&mut g.list);
        match g.pos.get(&id) {
            Some(&i) => list[i] = entry,
            None => {
                g.pos.insert(id, list.len());
                list.push(entry);
            }
        }
    }

    /// Removes a broker.
    pub fn remove(&self, id: &str) -> Option<Arc<IndexEntry>> {
        let mut g = self.inner.write();
        let g = &mut *g;
        let i = g.pos.remove(id)?;
        let list = Arc::make_mut(&mut g.list);
        let e = list.swap_remove(i);
        if i < list.len() {
            g.pos.insert(list[i].broker.id.clone(), i);
        }
        Some(e)
    }

    /// One broker.
    pub fn get(&self, id: &str) -> Option<Arc<IndexEntry>> {
        let g = self.inner.read();
        g.pos.get(id).map(|&i| g.list[i].clone())
    }

    /// Every broker, sorted by id.
    pub fn all(&self) -> Vec<Arc<IndexEntry>> {
        let mut v = self.inner.read().list.to_vec();
        v.sort_by(|a, b| a.broker.id.cmp(&b.broker.id));
        v
    }

    /// Number of brokers.
    pub fn len(&self) -> usize {
        self.inner.read().list.len()
    }

    /// True when there are no brokers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies the hard constraints to every broker; `skip` lists brokers that already gave the
    /// lead back. One pass reads each broker once and touches no reference count: the result
    /// names brokers by position.
    pub fn candidates(&self, lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> Candidates {
        let list = self.inner.read().list.clone();
        let mut eligible = Vec::with_capacity(list.len());
        let mut excluded = BTreeMap::new();
        let mut totals = [0u64; 4];
        for (i, e) in list.iter().enumerate() {
            let outcomes = e.live.outcomes();
            for (t, v) in totals.iter_mut().zip(outcomes) {
                *t += v;
            }
            let (open, used) = (e.live.open(), e.live.used_today(now));
            let verdict = if skip.iter().any(|s| s == &e.broker.id) {
                Err(Exclusion::Excluded)
            } else {
                e.profile.static_eligibility(lead, now).and_then(|_| e.profile.capacity_eligibility(open, used))
            };
            match verdict {
                Ok(()) => eligible.push(Eligible {
                    pos: i as u32,
                    specialty: e.profile.specialty_score(lead.lines),
                    headroom: e.profile.headroom(open, used),
                    outcomes,
                }),
                Err(x) => *excluded.entry(x).or_insert(0) += 1,
            }
        }
        Candidates { list, eligible, excluded, totals }
    }

    /// True when some broker has a free slot at `now` (a cheap test before sweeping the queue).
    pub fn any_room(&self, now: DateTime<Utc>) -> bool {
        self.inner
            .read()
            .list
            .iter()
            .any(|e| e.profile.is_available(now) && e.profile.capacity_eligibility(e.live.open(), e.live.used_today(now)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_id_key_orders_like_the_id(a in "[a-z0-9-]{0,24}", b in "[a-z0-9-]{0,24}") {
            // Where the keys differ they decide alone; where they tie, the strings do.
            let by_key = id_key(&a).cmp(&id_key(&b));
            prop_assert!(by_key == a.cmp(&b) || by_key == std::cmp::Ordering::Equal);
            prop_assert_eq!(by_key.then_with(|| a.cmp(&b)), a.cmp(&b));
        }
    }

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
}
