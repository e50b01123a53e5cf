//! The read-only broker index: static profiles plus live counters the broker actors keep current.
//!
//! The decision path filters hard constraints here without messaging any actor; only the top K
//! candidates are then asked to score. The counters are copies: each broker actor owns the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use leadrouter_models::{Broker, BrokerProfile, Exclusion, LeadFeatures, LineSet, LocalClock, StateCode};
use parking_lot::{Mutex, RwLock};

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
}

/// The first 16 bytes of `id`, zero-padded, as a big-endian number: orders like the id whenever
/// the two differ, so ties in a ranking rarely need the strings.
fn id_key(id: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

impl IndexEntry {
    /// An entry for `broker`, served by the actor at `addr`.
    pub fn new(broker: Arc<Broker>, profile: BrokerProfile, addr: Addr<BrokerActor>, live: Counters) -> Self {
        Self { broker, profile, addr, live }
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

    /// The feed's view of this broker from the index copies (overloaded above `overload_at`).
    pub fn capacity_state(&self, now: DateTime<Utc>, overload_at: f64) -> crate::feed::CapacityState {
        // The actor publishes the seats it withholds as the configured less its effective ones.
        let max = self.broker.capacity.max_concurrent;
        let seats = max.saturating_sub(self.live.withheld());
        crate::feed::CapacityState::of(&self.broker, self.live.open(), seats, self.live.used_today(now), overload_at)
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
    /// Fairness adjustment, set by the ranking when bounds are configured.
    pub fairness: f64,
}

/// The index's brokers, with copies of what the filter reads (profile, counters handle) laid
/// out side by side in the same order, so the scan over every broker reads memory in order.
#[derive(Default)]
pub struct Listing {
    entries: Vec<Arc<IndexEntry>>,
    hot: Vec<(BrokerProfile, Counters)>,
    /// [`id_key`] of each broker, for rankings' ties.
    keys: Vec<u128>,
    /// Static verdicts already reached over these brokers. Only this listing's profiles decide
    /// them, so every edit starts with none.
    passes: Mutex<Passes>,
}

impl Clone for Listing {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone(), hot: self.hot.clone(), keys: self.keys.clone(), passes: Mutex::default() }
    }
}

/// Which leads share a static verdict during one UTC minute.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PassKey {
    state: StateCode,
    lines: LineSet,
    required: LineSet,
}

/// The static checks over every broker for one [`PassKey`]: who passed, with the specialty score
/// for the lead's lines, and how many failed per reason.
struct StaticPass {
    passed: Vec<(u32, f64)>,
    excluded: BTreeMap<Exclusion, u32>,
}

/// Static passes of one UTC minute.
#[derive(Default)]
struct Passes {
    minute: i64,
    by_key: HashMap<PassKey, Arc<StaticPass>>,
    /// Positions held over all passes, kept under [`Passes::BUDGET`].
    held: usize,
}

impl Passes {
    /// Most positions kept at once (16 bytes each): 262 kinds of lead with 1,000 brokers.
    const BUDGET: usize = 1 << 18;

    fn get(&mut self, minute: i64, key: &PassKey) -> Option<Arc<StaticPass>> {
        if self.minute != minute {
            *self = Self { minute, ..Self::default() };
        }
        self.by_key.get(key).cloned()
    }

    fn put(&mut self, minute: i64, key: PassKey, pass: Arc<StaticPass>) {
        if self.minute != minute {
            return;
        }
        if self.held + pass.passed.len() > Self::BUDGET {
            self.by_key.clear();
            self.held = 0;
        }
        self.held += pass.passed.len();
        self.by_key.insert(key, pass);
    }
}

impl Listing {
    fn hot(e: &IndexEntry) -> (BrokerProfile, Counters) {
        (e.profile.clone(), e.live.clone())
    }

    /// The listing to change: `list` itself when no filter holds it, else a copy. Either way it
    /// forgets the static passes, which the change may overturn.
    fn edit(list: &mut Arc<Listing>) -> &mut Listing {
        let list = Arc::make_mut(list);
        *list.passes.get_mut() = Passes::default();
        list
    }

    /// The static checks (exclusion, licences, specialties, status, hours) for every broker.
    /// Their inputs change only with the profiles, the lead's state and lines, and the UTC
    /// minute (licences and out-of-office run by the UTC day, hours by the local minute; every
    /// zone offset in use since 1972 is whole minutes, and the clock reports one that is not).
    /// So the verdict for a lead without `skip` or `excludeBrokers` is kept for the minute and
    /// shared by the next leads of the same kind.
    fn static_pass(&self, lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> Arc<StaticPass> {
        let key = PassKey { state: lead.state_code, lines: lead.lines, required: lead.required };
        let minute = now.timestamp().div_euclid(60);
        let shareable = skip.is_empty() && lead.exclude.is_empty();
        if shareable {
            if let Some(p) = self.passes.lock().get(minute, &key) {
                return p;
            }
        }
        let mut clock = LocalClock::default();
        let mut pass = StaticPass { passed: Vec::with_capacity(self.hot.len()), excluded: BTreeMap::new() };
        for (i, (profile, _)) in self.hot.iter().enumerate() {
            let verdict = if skip.iter().any(|s| s == &profile.id) {
                Err(Exclusion::Excluded)
            } else {
                profile.static_eligibility_at(lead, now, &mut clock)
            };
            match verdict {
                Ok(()) => pass.passed.push((i as u32, profile.specialty_score(lead.lines))),
                Err(x) => *pass.excluded.entry(x).or_insert(0) += 1,
            }
        }
        let pass = Arc::new(pass);
        if shareable && clock.whole_minutes() {
            self.passes.lock().put(minute, key, pass.clone());
        }
        pass
    }

    /// The hard constraints: the static pass, then the live capacity of those that passed; with
    /// the population's outcome totals, read in the same walk over the counters.
    fn filter(&self, lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> (Vec<Eligible>, BTreeMap<Exclusion, u32>, [u64; 4]) {
        let pass = self.static_pass(lead, skip, now);
        let mut eligible = Vec::with_capacity(pass.passed.len());
        let mut excluded = pass.excluded.clone();
        let mut totals = [0u64; 4];
        let now_ms = now.timestamp_millis();
        let mut passed = pass.passed.iter().peekable();
        for (i, (profile, live)) in self.hot.iter().enumerate() {
            let outcomes = live.outcomes();
            for (t, v) in totals.iter_mut().zip(outcomes) {
                *t += v;
            }
            let Some(&(pos, specialty)) = passed.next_if(|p| p.0 == i as u32) else { continue };
            let (open, used) = (live.held(), live.used_today_ms(now_ms));
            match profile.capacity_eligibility(open, used) {
                Ok(()) => eligible.push(Eligible { pos, specialty, headroom: profile.headroom(open, used), outcomes, fairness: 0.0 }),
                Err(x) => *excluded.entry(x).or_insert(0) += 1,
            }
        }
        (eligible, excluded, totals)
    }

    /// Number of brokers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id of the broker at position `i`.
    pub fn entry_id(&self, i: u32) -> &str {
        &self.entries[i as usize].broker.id
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
    /// Whether the eligible brokers' fairness adjustments were set (bounds are configured).
    pub fairness: bool,
    /// How many brokers passed the hard constraints (`eligible` may keep fewer: candidate
    /// retrieval).
    pub passed: usize,
}

impl Candidates {
    /// The broker at position `i` of `list`.
    pub fn entry(&self, i: u32) -> &Arc<IndexEntry> {
        &self.list.entries[i as usize]
    }

    /// Orders the brokers at positions `a` and `b` by id.
    pub fn cmp_id(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let keys = &self.list.keys;
        keys[a as usize].cmp(&keys[b as usize]).then_with(|| self.entry(a).broker.id.cmp(&self.entry(b).broker.id))
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
        let list = Listing::edit(&mut g.list);
        match g.pos.get(&id) {
            Some(&i) => {
                list.entries[i] = entry;
                list.hot[i] = hot;
            }
            None => {
                list.keys.push(id_key(&id));
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
        let list = Listing::edit(&mut g.list);
        let e = list.entries.swap_remove(i);
        list.hot.swap_remove(i);
        list.keys.swap_remove(i);
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
    /// lead back. The result names brokers by position and touches no reference count.
    pub fn candidates(&self, lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> Candidates {
        let list = self.inner.read().list.clone();
        let (eligible, excluded, totals) = list.filter(lead, skip, now);
        let passed = eligible.len();
        Candidates { list, eligible, excluded, totals, fairness: false, passed }
    }

    /// True when some broker has a free slot at `now` (a cheap test before sweeping the queue).
    pub fn any_room(&self, now: DateTime<Utc>) -> bool {
        self.inner
            .read()
            .list
            .hot
            .iter()
            .any(|(p, live)| p.is_available(now) && p.capacity_eligibility(live.held(), live.used_today(now)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::state::{BrokerLive, OpenLead};
    use chrono::TimeZone;
    use leadrouter_models::DecideRequest;
    use proptest::prelude::*;

    /// A broker as the property test draws it: licences, specialties, status, hours and zone,
    /// limits, and how many leads it holds.
    #[derive(Clone, Debug)]
    struct Drawn {
        state: usize,
        lines: u8,
        expired: bool,
        skills: u8,
        status: usize,
        zone: usize,
        hours: Option<(u8, u8)>,
        max: u32,
        cap: u32,
        open: u32,
        converted: u64,
    }

    const STATES: [&str; 3] = ["CA", "TX", "NY"];
    /// The last, Monrovia, kept UTC-0:44:30 until 1972; only the hand-written test uses it.
    const ZONES: [&str; 4] = ["America/Los_Angeles", "America/New_York", "Asia/Kolkata", "Africa/Monrovia"];

    fn drawn() -> impl Strategy<Value = Drawn> {
        // Skewed towards brokers that pass the checks before the hours, so the hours matter.
        let state = prop_oneof![Just(0usize), 0usize..3];
        let lines = prop_oneof![Just(7u8), 1u8..8];
        let status = prop_oneof![3 => Just(0usize), 1 => 0usize..4];
        (state, lines, any::<bool>(), 0u8..8, status, 0usize..3, prop::option::of((0u8..24, 1u8..24)), 1u32..4, 1u32..5, 0u32..5, 0u64..9)
            .prop_map(|(state, lines, expired, skills, status, zone, hours, max, cap, open, converted)| Drawn {
                state,
                lines,
                expired,
                skills,
                status,
                zone,
                hours,
                max,
                cap,
                open,
                converted,
            })
    }

    fn lines(mask: u8) -> Vec<&'static str> {
        [(1, "AUTO"), (2, "HOME"), (4, "LIFE")].into_iter().filter(|(b, _)| mask & b != 0).map(|(_, l)| l).collect()
    }

    /// The broker's profile and counters, as the index holds them, at `now`.
    fn hot(i: usize, d: &Drawn, slab: &CounterSlab, now: DateTime<Utc>) -> (BrokerProfile, Counters) {
        let status = ["available", "away", "offline", "out_of_office"][d.status];
        let hours = d.hours.map(|(from, len)| {
            let to = (u32::from(from) + u32::from(len)).min(24);
            let t = |h: u32| if h == 24 { "23:59".to_string() } else { format!("{h:02}:00") };
            serde_json::json!({"mon": [t(from.into()), t(to)], "tue": [t(from.into()), t(to)], "sat": ["10:00", "11:00"]})
        });
        let b: Broker = serde_json::from_value(serde_json::json!({
            "id": format!("b{i:03}"), "name": "B",
            "specialties": lines(d.skills).iter().map(|l| serde_json::json!({"type": l, "proficiency": 1 + i % 5})).collect::<Vec<_>>(),
            "licenses": [{"state": STATES[d.state], "lines": lines(d.lines), "expiresOn": if d.expired { "2026-11-23" } else { "2099-01-01" }}],
            "capacity": {"maxConcurrent": d.max, "dailyCap": d.cap},
            "status": status, "outOfOfficeUntil": "2026-11-23",
            "schedule": hours.map(|h| serde_json::json!({"timezone": ZONES[d.zone], "hours": h})),
        }))
        .expect("broker");
        let profile = b.profile();
        let mut live = BrokerLive::default();
        for n in 0..d.open {
            live.reserve(&format!("l{n}"), OpenLead::reserved("CA", LineSet(1), now, now, 30, profile.tz));
        }
        live.all_time.converted = d.converted;
        live.all_time.resolved = 2 * d.converted;
        let counters = slab.take();
        counters.publish(&live, &profile);
        (profile, counters)
    }

    fn lead(state: usize, lines_mask: u8, required: u8, exclude: Option<usize>) -> LeadFeatures {
        let req: DecideRequest = serde_json::from_value(serde_json::json!({
            "leadId": "l",
            "leadData": {"insuranceTypes": lines(lines_mask), "state": STATES[state], "urgency": "LOW", "estimatedValue": 100},
            "requireSpecialties": lines(required & lines_mask),
            "excludeBrokers": exclude.map(|i| vec![format!("b{i:03}")]).unwrap_or_default(),
        }))
        .expect("lead");
        let f = req.features();
        assert_eq!(f.required.0.count_ones() as usize, lines(required & lines_mask).len());
        f
    }

    type Filtered = (Vec<(u32, f64, f64, [u64; 4])>, BTreeMap<Exclusion, u32>, [u64; 4]);

    /// The filter as specified: each broker on its own, skip first, then the static checks,
    /// then capacity.
    fn reference(hot: &[(BrokerProfile, Counters)], lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> Filtered {
        let (mut eligible, mut excluded, mut totals) = (Vec::new(), BTreeMap::new(), [0u64; 4]);
        for (i, (p, live)) in hot.iter().enumerate() {
            let outcomes = live.outcomes();
            for (t, v) in totals.iter_mut().zip(outcomes) {
                *t += v;
            }
            let (open, used) = (live.held(), live.used_today(now));
            let verdict = if skip.contains(&p.id) { Err(Exclusion::Excluded) } else { p.static_eligibility(lead, now) };
            match verdict.and_then(|_| p.capacity_eligibility(open, used)) {
                Ok(()) => eligible.push((i as u32, p.specialty_score(lead.lines), p.headroom(open, used), outcomes)),
                Err(x) => *excluded.entry(x).or_insert(0) += 1,
            }
        }
        (eligible, excluded, totals)
    }

    fn filtered(list: &Listing, lead: &LeadFeatures, skip: &[String], now: DateTime<Utc>) -> Filtered {
        let (eligible, excluded, totals) = list.filter(lead, skip, now);
        (eligible.into_iter().map(|e| (e.pos, e.specialty, e.headroom, e.outcomes)).collect(), excluded, totals)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Kept passes give what a fresh walk gives: for many leads in the same minute (the
        /// second of each kind is answered from the kept pass), with skips and exclusions, and
        /// as the minute moves on across working-hour boundaries.
        #[test]
        fn kept_static_passes_filter_like_each_broker_on_its_own(
            brokers in prop::collection::vec(drawn(), 1..40),
            leads in prop::collection::vec((0usize..3, 1u8..8, 0u8..8, prop::option::of(0usize..40), any::<bool>()), 1..12),
            start in 0i64..(7 * 24 * 60),
        ) {
            let slab = CounterSlab::default();
            // From Monday 23 November 2026, 00:00 UTC, plus whole minutes and 17 seconds.
            let monday = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 17).unwrap();
            let first = monday + chrono::Duration::minutes(start);
            let list = Listing { hot: brokers.iter().enumerate().map(|(i, d)| hot(i, d, &slab, first)).collect(), ..Listing::default() };
            for minute in [start, start + 1, start + 59, start + 60] {
                let now = monday + chrono::Duration::minutes(minute);
                for _ in 0..2 {
                    for &(state, lines, required, exclude, skip_first) in &leads {
                        let lead = lead(state, lines, required, exclude);
                        let skip = if skip_first { vec!["b000".to_string()] } else { Vec::new() };
                        prop_assert_eq!(filtered(&list, &lead, &skip, now), reference(&list.hot, &lead, &skip, now));
                        // A later second of the same minute gives the same verdicts.
                        let later = now + chrono::Duration::seconds(42);
                        prop_assert_eq!(filtered(&list, &lead, &skip, later), reference(&list.hot, &lead, &skip, later));
                    }
                }
            }
        }
    }

    #[test]
    fn a_kept_pass_is_forgotten_when_a_broker_changes_or_the_minute_ends() {
        let slab = CounterSlab::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 17, 59, 30).unwrap();
        let d =
            Drawn { state: 0, lines: 1, expired: false, skills: 1, status: 0, zone: 0, hours: None, max: 3, cap: 3, open: 0, converted: 0 };
        let mut list = Arc::new(Listing { hot: vec![hot(0, &d, &slab, now)], ..Listing::default() });
        let lead = lead(0, 1, 0, None);
        assert_eq!(list.filter(&lead, &[], now).0.len(), 1);
        assert_eq!(list.passes.lock().by_key.len(), 1, "the pass is kept");
        // The broker goes away: the edited listing starts without kept passes.
        let away = Drawn { status: 1, ..d.clone() };
        Listing::edit(&mut list).hot[0] = hot(0, &away, &slab, now);
        assert_eq!(list.filter(&lead, &[], now).1.get(&Exclusion::Unavailable), Some(&1));
        // An edit while a filter holds the listing copies it, also without the kept passes.
        let held = list.clone();
        Listing::edit(&mut list).hot[0] = hot(0, &d, &slab, now);
        assert_eq!(list.filter(&lead, &[], now).0.len(), 1);
        assert_eq!(held.filter(&lead, &[], now).0.len(), 0);
        // Hours: 09:00–10:00 on Monday, Los Angeles. The next minute starts afresh.
        let hourly = Drawn { hours: Some((9, 1)), ..d };
        let list = Listing { hot: vec![hot(0, &hourly, &slab, now)], ..Listing::default() };
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap();
        assert_eq!(list.filter(&lead, &[], at(17, 59, 59)).0.len(), 1, "09:59:59 local");
        assert_eq!(list.filter(&lead, &[], at(18, 0, 0)).1.get(&Exclusion::OutsideHours), Some(&1), "10:00 local");
        assert_eq!(list.passes.lock().minute, at(18, 0, 0).timestamp() / 60);
        // In 1970 Monrovia's 10:00 was 10:44:30 UTC, inside a UTC minute: no pass is kept then.
        let then = |s| Utc.with_ymd_and_hms(1970, 6, 1, 10, 44, s).unwrap();
        let liberia = Drawn { zone: 3, ..hourly };
        let list = Listing { hot: vec![hot(0, &liberia, &slab, then(0))], ..Listing::default() };
        assert_eq!(list.filter(&lead, &[], then(10)).0.len(), 1, "09:59:40 local");
        assert!(list.passes.lock().by_key.is_empty());
        assert_eq!(list.filter(&lead, &[], then(50)).1.get(&Exclusion::OutsideHours), Some(&1), "10:00:20 local");
    }

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
