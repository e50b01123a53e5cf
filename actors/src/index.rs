//! The read-only broker index: static profiles plus live counters the broker actors keep current.
//!
//! The decision path filters hard constraints here without messaging any actor; only the top K
//! candidates are then asked to score. The counters are copies: each broker actor owns the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use leadrouter_models::{Broker, BrokerProfile, Exclusion, LeadFeatures, LocalClock};
use parking_lot::RwLock;

use crate::broker_actor::BrokerActor;
use crate::counters::{CounterSlab, Counters};

/// One broker in the index.
pub struct IndexEntry {
    /// Configuration (a copy).
    pub broker: Arc<Broker>,
    /// Compiled for eligibility checks.
    pub profile: BrokerProfile,
    /// The broker's actor.
    pub addr: Addr<BrokerActor>,
    /// Live numbers.
    pub live: Counters,
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
    pub fn new(broker: Arc<Broker>, profile: BrokerProfile, addr: Addr<BrokerActor>, live: Counters) -> Self {
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

/// The index's brokers, with copies of what the filter reads (profile, counters handle) laid
/// out side by side in the same order, so the scan over every broker reads memory in order.
#[derive(Clone, Default)]
pub struct Listing {
    entries: Vec<Arc<IndexEntry>>,
    hot: Vec<(BrokerProfile, Counters)>,
}

impl Listing {
    fn hot(e: &IndexEntry) -> (BrokerProfile, Counters) {
        (e.profile.clone(), e.live.clone())
    }

    /// Number of brokers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The outcome of the hard-constraint filter.
pub struct Candidates {
    /// The brokers as the filter saw them (a shared copy of the index's listing).
    pub list: Arc<Listing>,
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
        &self.list.entries[i as usize]
    }
}

#[derive(Default)]
struct Inner {
    /// Shared with filters in progress; an edit copies it only while one holds it.
    list: Arc<Listing>,
    pos: HashMap<String, usize>,
}

/// All brokers, for fast filtering.
#[derive(Default)]
pub struct BrokerIndex {
    inner: RwLock<Inner>,
    counters: CounterSlab,
}

impl BrokerIndex {
    /// Zeroed live counters for a new broker, next to those of the brokers created before it.
    pub fn new_counters(&self) -> Counters {
        self.counters.take()
    }

    /// Adds or replaces the entry for its broker id.
    pub fn upsert(&self, entry: IndexEntry) {
        let mut g = self.inner.write();
        let g = &mut *g;
        let id = entry.broker.id.clone();
        let hot = Listing::hot(&entry);
        let entry = Arc::new(entry);
        let list = Arc::make_mut(&mut g.list);
        match g.pos.get(&id) {
            Some(&i) => {
                list.entries[i] = entry;
                list.hot[i] = hot;
            }
            None => {
                g.pos.insert(id, list.len());
                list.entries.push(entry);
                list.hot.push(hot);
            }
        }
    }

    /// Removes a broker.
    pub fn remove(&self, id: &str) -> Option<Arc<IndexEntry>> {
        let mut g = self.inner.write();
        let g = &mut *g;
        let i = g.pos.remove(id)?;
        let list = Arc::make_mut(&mut g.list);
        let e = list.entries.swap_remove(i);
        list.hot.swap_remove(i);
        if i < list.len() {
            g.pos.insert(list.entries[i].broker.id.clone(), i);
        }
        Some(e)
    }

    /// One broker.
    pub fn get(&self, id: &str) -> Option<Arc<IndexEntry>> {
        let g = self.inner.read();
        g.pos.get(id).map(|&i| g.list.entries[i].clone())
    }

    /// Every broker, sorted by id.
    pub fn all(&self) -> Vec<Arc<IndexEntry>> {
        let mut v = self.inner.read().list.entries.clone();
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
        let mut clock = LocalClock::default();
        let now_ms = now.timestamp_millis();
        for (i, (profile, live)) in list.hot.iter().enumerate() {
            let outcomes = live.outcomes();
            for (t, v) in totals.iter_mut().zip(outcomes) {
                *t += v;
            }
            let (open, used) = (live.open(), live.used_today_ms(now_ms));
            let verdict = if skip.iter().any(|s| s == &profile.id) {
                Err(Exclusion::Excluded)
            } else {
                profile.static_eligibility_at(lead, now, &mut clock).and_then(|_| profile.capacity_eligibility(open, used))
            };
            match verdict {
                Ok(()) => eligible.push(Eligible {
                    pos: i as u32,
                    specialty: profile.specialty_score(lead.lines),
                    headroom: profile.headroom(open, used),
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
            .hot
            .iter()
            .any(|(p, live)| p.is_available(now) && p.capacity_eligibility(live.open(), live.used_today(now)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
