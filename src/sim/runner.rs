//! One simulated run: one world, one routing policy, the real engine in-process on a manual
//! clock. Events are processed in time order; the engine sees only what it would see over HTTP
//! (decide requests and lead events), and the simulation answers for brokers and customers from
//! the hidden truth.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use leadrouter_actors::clock::ManualClock;
use leadrouter_actors::views::DecideOutcome;
use leadrouter_actors::{ActorError, Durability, Engine, EngineConfig, RouterSupervisor};
use leadrouter_models::experiment::Definition;
use leadrouter_models::{BrokerProfile, EventKind, LeadEventRequest, LeadState, Strategy};
use serde::Serialize;

use super::experiment::{ExperimentRun, Tracker};
use super::world::{Draw, World};
use crate::error::{Error, Result};

/// Who picks the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The engine, with this strategy.
    Engine(Strategy),
    /// Knows the true probabilities (and which broker would decline); gives each lead to the
    /// broker with the best expected conversion among those the engine would accept right now
    /// (capacity, caps, hours, licences), by excluding every other broker in the request.
    Oracle,
    /// The engine with no strategy in the request: a running experiment's arms route the leads
    /// it takes (`simulate --experiment`).
    Experiment,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 7] = [
        Self::Engine(Strategy::Random),
        Self::Engine(Strategy::RoundRobin),
        Self::Engine(Strategy::WeightedRoundRobin),
        Self::Engine(Strategy::Specialty),
        Self::Engine(Strategy::Ml),
        Self::Engine(Strategy::Roi),
        Self::Oracle,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Engine(s) => s.name(),
            Self::Oracle => "oracle",
            Self::Experiment => "experiment",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "oracle" {
            return Some(Self::Oracle);
        }
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Leads and value a broker group received in one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupTally {
    /// Leads its brokers accepted.
    pub leads: u64,
    /// Estimated value of those leads.
    pub value: f64,
    /// Sales.
    pub conversions: u64,
    /// Value of the sales.
    pub revenue: f64,
    /// Its share of all concurrent seats.
    pub seat_share: f64,
}

/// Everything counted in one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Policy name.
    pub policy: String,
    /// World seed.
    pub seed: u64,
    /// Leads that arrived.
    pub leads: u64,
    /// Their total estimated value.
    pub offered_value: f64,
    /// Sales.
    pub conversions: u64,
    /// Value of the sales.
    pub revenue: f64,
    /// Leads a broker accepted.
    pub accepted: u64,
    /// Offers a broker declined (the engine re-routed them).
    pub rejected: u64,
    /// Leads that reached first contact.
    pub contacted: u64,
    /// Of those, contacted within the broker's SLA target for the lead's urgency.
    pub sla_met: u64,
    /// Sum of minutes from arrival to first contact.
    pub first_contact_minutes: f64,
    /// Leads closed after an outcome.
    pub closed: u64,
    /// Sum of minutes from arrival to close.
    pub close_minutes: f64,
    /// Leads that waited in the queue at some point.
    pub queued: u64,
    /// Leads given to a broker at least once.
    pub assigned: u64,
    /// Sum over assigned leads of minutes from arrival to first assignment.
    pub queue_wait_minutes: f64,
    /// Leads that expired in the queue.
    pub expired: u64,
    /// Time-averaged open leads ÷ seats, per broker, over the arrival period.
    pub utilisation: Vec<f64>,
    /// Per broker group.
    pub groups: BTreeMap<String, GroupTally>,
    /// Sales per simulated day since the start (by outcome time).
    pub daily_conversions: Vec<u64>,
    /// Revenue per simulated day since the start.
    pub daily_revenue: Vec<f64>,
    /// Model versions trained during the run (strategies `ml` and `roi`).
    pub retrains: u32,
    /// After each retrain, the active model's concordance with the hidden truth on the probe
    /// leads (`probe`): 0.5 is no better than chance, 1 orders every pair right.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_concordance: Vec<f64>,
    /// Engine strategies: first decisions made while the oracle had a pick for the lead.
    pub oracle_checked: u64,
    /// Of those, decisions whose scored candidates (the pre-rank's K) held the oracle's pick.
    pub oracle_scored: u64,
    /// Of those, decisions that chose the oracle's pick.
    pub oracle_chosen: u64,
    /// Of those, activated.
    pub activated: u32,
    /// Leads assigned at arrival (not counting re-routes and queue sweeps), whose server time
    /// is summed below: a sanity check of speed.
    pub decisions: u64,
    /// Sum of the engine's decision microseconds.
    pub decision_micros: u64,
    /// What the experiment found (policy `experiment`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(usize),
    Answer(usize),
    Contact(usize),
    Outcome(usize),
    Close(usize),
    Sweep,
    Retrain,
}

#[derive(Clone, Debug, Default)]
struct LeadSim {
    broker: Option<usize>,
    assigned_at: Option<DateTime<Utc>>,
    contact_delay: f64,
    queued: bool,
    ever_queued: bool,
    ever_assigned: bool,
}

/// Minutes between queue sweeps (the engine's background tick, in simulated time).
const SWEEP_MINUTES: i64 = 5;
/// Minutes from outcome to close.
const CLOSE_MINUTES: i64 = 30;
/// Hours after the start of each day at which strategies `ml` and `roi` retrain.
const RETRAIN_HOUR: i64 = 2;

struct Sim<'w> {
    world: &'w World,
    policy: Policy,
    router: RouterSupervisor,
    clock: Arc<ManualClock>,
    heap: BinaryHeap<Reverse<(DateTime<Utc>, u64, Ev)>>,
    seq: u64,
    leads: Vec<LeadSim>,
    index: HashMap<String, usize>,
    profiles: Vec<BrokerProfile>,
    open: Vec<u32>,
    area: Vec<f64>,
    last: Vec<DateTime<Utc>>,
    horizon: DateTime<Utc>,
    waiting: usize,
    sweep_armed: bool,
    tracker: Option<Tracker>,
    r: RunResult,
}

/// Runs `policy` on `world` with an engine whose data lives in `data_dir` (which must hold no
/// journal yet). `durability` is `None` for throw-away runs. `tick` is told each arrival. With
/// `experiment`, it runs in the engine from the start (policy [`Policy::Experiment`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    world: &World,
    policy: Policy,
    experiment: Option<&Definition>,
    seed: u64,
    base: &EngineConfig,
    data_dir: &Path,
    durability: Durability,
    mut tick: impl FnMut(),
) -> Result<RunResult> {
    let s = &world.scenario;
    let mut cfg = base.clone();
    cfg.storage.data_dir = data_dir.to_path_buf();
    cfg.storage.demo = false;
    cfg.storage.durability = durability;
    cfg.storage.snapshot_interval_seconds = 3600;
    // The broker actors run on this thread (`Engine::start_simulated`): score replies arrive in
    // the order they were asked for, so a run is reproducible, and no decision waits for another
    // thread. A generous deadline: no candidate is skipped because the machine is busy.
    cfg.routing.score_deadline_ms = 5_000;
    cfg.routing.queue_expiry_seconds = s.queue_expiry_hours as u64 * 3600;
    cfg.routing.seed = seed.wrapping_mul(31).wrapping_add(7).max(1);
    // Every scored candidate is listed in the decision, so the report can tell whether the
    // oracle's pick was among them (the list changes nothing about the routing).
    cfg.routing.alternatives = cfg.routing.alternatives.max(cfg.routing.top_k);
    // Only a scenario with a text channel writes notes and bios (LEADROUTER__SEMANTIC__ENABLED=false
    // turns them off for a run without semantic features). A decision waits for its terms as
    // long as it takes: a run is not to depend on how busy the machine is.
    cfg.semantic.enabled &= s.text.is_some();
    cfg.semantic.decision_timeout_ms = 10_000;
    let clock = ManualClock::new(s.start());
    let engine = Engine::start_simulated(cfg, clock.clone()).await?;
    if engine.router().broker_count() > 0 || engine.report.snapshot.is_some() || engine.report.journal.records > 0 {
        let _ = engine.shutdown().await;
        return Err(Error::Simulation(format!("{} already holds engine data; give an empty directory", data_dir.display())));
    }
    let router = engine.router().clone();
    let result = drive(world, policy, experiment, seed, router, clock, &mut tick).await;
    let stopped = engine.shutdown().await;
    let r = result?;
    stopped?;
    Ok(r)
}

async fn drive(
    world: &World,
    policy: Policy,
    experiment: Option<&Definition>,
    seed: u64,
    router: RouterSupervisor,
    clock: Arc<ManualClock>,
    tick: &mut impl FnMut(),
) -> Result<RunResult> {
    let s = &world.scenario;
    for b in &world.brokers {
        router.create_broker(b.config.clone()).await?;
    }
    if router.config().semantic.enabled {
        // Every broker's profile vector before the first lead (they follow the journal on other
        // threads). Similar-lead evidence still follows the run a little behind, so runs with
        // text repeat closely but not exactly.
        let n = world.brokers.len();
        for _ in 0..6000 {
            let st = router.semantic().stats();
            if st.collections.brokers >= n && !st.refreshing {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let seats: u32 = world.brokers.iter().map(|b| b.config.capacity.max_concurrent).sum();
    let mut groups: BTreeMap<String, GroupTally> = BTreeMap::new();
    for b in &world.brokers {
        let g = groups.entry(b.config.group.clone().unwrap_or_default()).or_default();
        g.seat_share += b.config.capacity.max_concurrent as f64 / seats as f64;
    }
    let n = world.brokers.len();
    let tracker = match experiment {
        Some(d) => Some(Tracker::start(&router, d).await?),
        None => None,
    };
    let mut sim = Sim {
        world,
        policy,
        router,
        clock,
        heap: BinaryHeap::new(),
        seq: 0,
        leads: vec![LeadSim::default(); world.leads.len()],
        index: world.brokers.iter().enumerate().map(|(i, b)| (b.config.id.clone(), i)).collect(),
        profiles: world.brokers.iter().map(|b| b.config.profile()).collect(),
        open: vec![0; n],
        area: vec![0.0; n],
        last: vec![s.start(); n],
        horizon: s.start() + Duration::days(s.days as i64),
        waiting: 0,
        sweep_armed: false,
        tracker,
        r: RunResult {
            policy: policy.name().to_string(),
            seed,
            leads: world.leads.len() as u64,
            offered_value: world.leads.iter().map(|l| l.request.lead_data.estimated_value).sum(),
            groups,
            ..RunResult::default()
        },
    };
    for (i, l) in world.leads.iter().enumerate() {
        sim.push(l.at, Ev::Arrive(i));
    }
    if matches!(policy, Policy::Engine(s) if s.uses_model()) {
        for d in 1..s.days as i64 {
            sim.push(s.start() + Duration::days(d) + Duration::hours(RETRAIN_HOUR), Ev::Retrain);
        }
    }
    while let Some(Reverse((at, _, ev))) = sim.heap.pop() {
        sim.clock.set(at);
        match ev {
            Ev::Arrive(i) => {
                sim.arrive(i).await?;
                tick();
            }
            Ev::Answer(i) => sim.answer(i).await?,
            Ev::Contact(i) => sim.contact(i).await?,
            Ev::Outcome(i) => sim.outcome(i).await?,
            Ev::Close(i) => sim.close(i).await?,
            Ev::Sweep => {
                sim.sweep_armed = false;
                sim.sweep().await?;
            }
            Ev::Retrain => sim.retrain().await?,
        }
        if sim.waiting > 0 && !sim.sweep_armed {
            sim.sweep_armed = true;
            sim.push(at + Duration::minutes(SWEEP_MINUTES), Ev::Sweep);
        }
    }
    let end = sim.horizon;
    for b in 0..n {
        sim.account(b, end);
    }
    let span = (end - s.start()).num_seconds() as f64;
    sim.r.utilisation = (0..n).map(|b| sim.area[b] / (span * world.brokers[b].config.capacity.max_concurrent as f64)).collect();
    if let Some(t) = sim.tracker.take() {
        sim.r.experiment = Some(t.finish(&sim.router).await?);
    }
    Ok(sim.r)
}

impl Sim<'_> {
    fn push(&mut self, at: DateTime<Utc>, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn now(&self) -> DateTime<Utc> {
        use leadrouter_actors::clock::Clock;
        self.clock.now()
    }

    /// Adds the open-seat time of broker `b` up to `t` (within the arrival period).
    fn account(&mut self, b: usize, t: DateTime<Utc>) {
        let t = t.min(self.horizon);
        if t > self.last[b] {
            self.area[b] += self.open[b] as f64 * (t - self.last[b]).num_milliseconds() as f64 / 1000.0;
            self.last[b] = t;
        }
    }

    fn seat(&mut self, b: usize, delta: i32) {
        let now = self.now();
        self.account(b, now);
        self.open[b] = self.open[b].saturating_add_signed(delta);
    }

    fn broker_index(&self, id: &str) -> Result<usize> {
        self.index.get(id).copied().ok_or_else(|| Error::Simulation(format!("the engine named unknown broker '{id}'")))
    }

    /// Books an assignment; fails if the engine gave a broker more leads than its seats (every
    /// simulated run doubles as a check of that invariant).
    fn assigned(&mut self, lead: usize, broker: usize) -> Result<()> {
        let now = self.now();
        let l = &mut self.leads[lead];
        if l.queued {
            l.queued = false;
            self.waiting -= 1;
        }
        if !l.ever_assigned {
            l.ever_assigned = true;
            self.r.assigned += 1;
            self.r.queue_wait_minutes += minutes(now - self.world.leads[lead].at);
        }
        l.broker = Some(broker);
        l.assigned_at = Some(now);
        self.seat(broker, 1);
        let seats = self.world.brokers[broker].config.capacity.max_concurrent;
        if self.open[broker] > seats {
            return Err(Error::Simulation(format!(
                "the engine gave {} lead {} while it held {} of {seats} seats",
                self.world.brokers[broker].config.id,
                self.world.leads[lead].request.lead_id,
                self.open[broker] - 1
            )));
        }
        let lead_ref = &self.world.leads[lead];
        let timeout = self.world.brokers[broker].config.sla.accept_timeout_seconds as f64;
        let delay = (0.02 + 0.58 * World::draw(lead_ref, Some(broker), Draw::AcceptDelay)) * timeout;
        self.push(now + Duration::milliseconds((delay * 1000.0) as i64), Ev::Answer(lead));
        Ok(())
    }

    fn queued(&mut self, lead: usize) {
        let l = &mut self.leads[lead];
        if !l.queued {
            l.queued = true;
            self.waiting += 1;
        }
        if !l.ever_queued {
            l.ever_queued = true;
            self.r.queued += 1;
        }
    }

    async fn arrive(&mut self, i: usize) -> Result<()> {
        let lead = &self.world.leads[i];
        let mut req = lead.request.clone();
        let mut pick = None;
        match self.policy {
            Policy::Engine(s) => {
                req.strategy = Some(s);
                pick = self.oracle_pick(i);
            }
            Policy::Experiment => req.strategy = None,
            Policy::Oracle => {
                req.strategy = Some(Strategy::Specialty);
                req.exclude_brokers = self.oracle_exclusions(i);
            }
        }
        match self.router.decide(req).await? {
            DecideOutcome::Assigned(a) => {
                self.r.decisions += 1;
                self.r.decision_micros += a.decision.decision_micros;
                if let Some(p) = pick {
                    let id = &self.world.brokers[p].config.id;
                    self.r.oracle_checked += 1;
                    let chosen = &a.decision.broker_id == id;
                    self.r.oracle_chosen += u64::from(chosen);
                    self.r.oracle_scored += u64::from(chosen || a.decision.alternatives.iter().any(|x| &x.broker_id == id));
                }
                let b = self.broker_index(&a.decision.broker_id)?;
                self.assigned(i, b)?;
            }
            DecideOutcome::Waiting(_) => self.queued(i),
        }
        Ok(())
    }

    /// Everyone but the oracle's pick: the best expected conversion among the brokers the engine
    /// would accept right now and who would not decline this lead (the oracle knows that too, so
    /// it never needs a re-route: the engine would re-route with the same exclusions and the lead
    /// would wait for nobody). When nobody has room the lead goes to the queue unrestricted, as
    /// under any strategy.
    fn oracle_exclusions(&self, i: usize) -> Vec<String> {
        match self.oracle_pick(i) {
            Some(keep) => (0..self.profiles.len()).filter(|&b| b != keep).map(|b| self.world.brokers[b].config.id.clone()).collect(),
            None => Vec::new(),
        }
    }

    /// The oracle's pick for lead `i` now: the best expected conversion among the brokers the
    /// engine would accept and who would not decline it.
    fn oracle_pick(&self, i: usize) -> Option<usize> {
        let lead = &self.world.leads[i];
        let features = lead.request.features();
        let now = self.now();
        // Seats adaptive throttling withholds count as taken, as in the engine's own check.
        let live: HashMap<String, (u32, u32)> = self
            .router
            .capacity_snapshot()
            .into_iter()
            .map(|c| (c.broker_id, (c.open_leads + (c.max_concurrent - c.seats), c.daily_used)))
            .collect();
        // One local-time conversion per time zone for the whole scan, as the engine's filter.
        let mut clock = leadrouter_models::LocalClock::default();
        let best = self
            .profiles
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                let (open, used) = live.get(&p.id).copied().unwrap_or((u32::MAX, u32::MAX));
                p.static_eligibility_at(&features, now, &mut clock).is_ok() && p.capacity_eligibility(open, used).is_ok()
            })
            .filter(|(b, _)| World::draw(lead, Some(*b), Draw::Accept) < self.world.brokers[*b].truth.accept_rate)
            .map(|(b, _)| (self.world.expected(lead, b), b))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        best.map(|(_, keep)| keep)
    }

    async fn event(&self, lead: usize, kind: EventKind) -> Result<leadrouter_actors::views::LeadView> {
        let id = &self.world.leads[lead].request.lead_id;
        Ok(self.router.lead_event(id, LeadEventRequest { kind, at: None, value: None }).await?)
    }

    async fn answer(&mut self, i: usize) -> Result<()> {
        let lead = &self.world.leads[i];
        let b = self.leads[i].broker.ok_or_else(|| Error::Simulation("answer for a lead no broker holds".into()))?;
        if World::draw(lead, Some(b), Draw::Accept) < self.world.brokers[b].truth.accept_rate {
            self.event(i, EventKind::Accepted).await?;
            self.r.accepted += 1;
            let g = self.r.groups.entry(self.world.brokers[b].config.group.clone().unwrap_or_default()).or_default();
            g.leads += 1;
            g.value += lead.request.lead_data.estimated_value;
            let delay = self.world.contact_minutes(lead, b);
            self.leads[i].contact_delay = delay;
            self.push(self.now() + Duration::milliseconds((delay * 60_000.0) as i64), Ev::Contact(i));
        } else {
            self.r.rejected += 1;
            self.seat(b, -1);
            self.leads[i].broker = None;
            let view = self.event(i, EventKind::Rejected).await?;
            match (view.state, view.broker_id) {
                (LeadState::Reserved, Some(id)) => {
                    let nb = self.broker_index(&id)?;
                    self.assigned(i, nb)?;
                }
                (LeadState::Queued, _) => self.queued(i),
                (state, _) => return Err(Error::Simulation(format!("a declined lead ended up {state:?}"))),
            }
        }
        Ok(())
    }

    async fn contact(&mut self, i: usize) -> Result<()> {
        self.event(i, EventKind::Contacted).await?;
        let lead = &self.world.leads[i];
        let b = self.leads[i].broker.ok_or_else(|| Error::Simulation("contact for a lead no broker holds".into()))?;
        let sla = &self.world.brokers[b].config.sla;
        let target = sla.target_minutes(lead.request.lead_data.urgency.is_urgent()) as f64;
        self.r.contacted += 1;
        if self.leads[i].contact_delay <= target {
            self.r.sla_met += 1;
        }
        self.r.first_contact_minutes += minutes(self.now() - lead.at);
        let [lo, hi] = self.world.scenario.leads.work_hours;
        let hours = lo + (hi - lo) * World::draw(lead, None, Draw::Work);
        self.push(self.now() + Duration::milliseconds((hours * 3_600_000.0) as i64), Ev::Outcome(i));
        Ok(())
    }

    async fn outcome(&mut self, i: usize) -> Result<()> {
        let lead = &self.world.leads[i];
        let b = self.leads[i].broker.ok_or_else(|| Error::Simulation("outcome for a lead no broker holds".into()))?;
        let p = self.world.p_convert(lead, b) * self.world.lateness(lead, self.leads[i].contact_delay);
        let converted = World::draw(lead, None, Draw::Convert) < p;
        self.event(i, if converted { EventKind::Converted } else { EventKind::Lost }).await?;
        if let Some(t) = &mut self.tracker {
            t.outcome(&self.router).await?;
        }
        if converted {
            let value = lead.request.lead_data.estimated_value;
            let day = ((self.now() - self.world.scenario.start()).num_hours() / 24).max(0) as usize;
            if self.r.daily_conversions.len() <= day {
                self.r.daily_conversions.resize(day + 1, 0);
                self.r.daily_revenue.resize(day + 1, 0.0);
            }
            self.r.daily_conversions[day] += 1;
            self.r.daily_revenue[day] += value;
            self.r.conversions += 1;
            self.r.revenue += value;
            let g = self.r.groups.entry(self.world.brokers[b].config.group.clone().unwrap_or_default()).or_default();
            g.conversions += 1;
            g.revenue += value;
        }
        self.push(self.now() + Duration::minutes(CLOSE_MINUTES), Ev::Close(i));
        Ok(())
    }

    async fn close(&mut self, i: usize) -> Result<()> {
        self.event(i, EventKind::Closed).await?;
        let b = self.leads[i].broker.ok_or_else(|| Error::Simulation("close for a lead no broker holds".into()))?;
        self.seat(b, -1);
        self.r.closed += 1;
        self.r.close_minutes += minutes(self.now() - self.world.leads[i].at);
        // Closing frees a seat: the engine sweeps its queue at once.
        self.sweep().await
    }

    async fn sweep(&mut self) -> Result<()> {
        if self.waiting == 0 {
            return Ok(());
        }
        let done = self.router.drain().await;
        for (lead, broker) in done.assigned {
            let (i, b) = (self.lead_index(&lead)?, self.broker_index(&broker)?);
            self.assigned(i, b)?;
        }
        for lead in done.expired {
            let i = self.lead_index(&lead)?;
            if self.leads[i].queued {
                self.leads[i].queued = false;
                self.waiting -= 1;
            }
            self.r.expired += 1;
        }
        Ok(())
    }

    fn lead_index(&self, id: &str) -> Result<usize> {
        // Lead ids end in their index: sim-<seed>-<index>.
        id.rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| self.world.leads.get(i).is_some_and(|l| l.request.lead_id == id))
            .ok_or_else(|| Error::Simulation(format!("the engine named unknown lead '{id}'")))
    }

    async fn retrain(&mut self) -> Result<()> {
        self.router.journal().flush().await?;
        let registry = self.router.registry().clone();
        match registry.train_now(false, |_| {}) {
            Ok(leadrouter_actors::model::registry::JobState::Succeeded { activated, .. }) => {
                self.r.retrains += 1;
                self.r.activated += u32::from(activated);
                if let Some(c) = super::probe::concordance(self.world, &self.router).await {
                    self.r.model_concordance.push(c);
                }
                Ok(())
            }
            Ok(other) => Err(Error::Simulation(format!("training ended as {other:?}"))),
            Err(ActorError::NotEnoughData(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn minutes(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 60_000.0
}
