//! State transitions shared by live actors, replay and the snapshotter.
//!
//! `BrokerLive` is one broker's live state (owned at run time by its `BrokerActor`), `LeadRecord`
//! one lead's history, and `EngineState` everything, rebuilt by applying journal records in order.
//! Live code and replay call the same `apply` functions, so replay yields the live state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use leadrouter_models::broker::Tz;
use leadrouter_models::roi::{Evidence, Tally};
use leadrouter_models::{
    Broker, BrokerFeatures, BrokerProfile, DecideRequest, EventKind, Exclusion, LeadFeatures, LeadState, LineSet, Priors, ScoreInputs,
};
use serde::{Deserialize, Serialize};

use crate::config::ThrottleConfig;
use crate::storage::record::{Decision, Record, SharedDecision};

/// Days kept for the recent-performance window.
pub const DAYS_KEPT: i64 = 30;

/// Counters of a broker's work; all-time and per day.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerfCounters {
    /// Reservations taken.
    pub assigned: u64,
    /// Reservations accepted.
    pub accepted: u64,
    /// Reservations declined.
    pub rejected: u64,
    /// Reservations not accepted in time.
    pub timed_out: u64,
    /// Leads contacted.
    pub contacted: u64,
    /// Leads measured against the SLA (contacted, or closed without contact after acceptance).
    pub sla_total: u64,
    /// Of those, contacted within the target.
    pub sla_hits: u64,
    /// Sum of minutes from reservation to first contact.
    pub first_contact_minutes_sum: f64,
    /// Sales.
    pub converted: u64,
    /// No sale.
    pub lost: u64,
    /// Leads closed.
    pub closed: u64,
    /// Leads with a known outcome: converted, lost, or closed after acceptance without either.
    pub resolved: u64,
    /// Value of sales.
    pub value_converted: f64,
}

impl PerfCounters {
    fn add(&mut self, o: &PerfCounters) {
        self.assigned += o.assigned;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.timed_out += o.timed_out;
        self.contacted += o.contacted;
        self.sla_total += o.sla_total;
        self.sla_hits += o.sla_hits;
        self.first_contact_minutes_sum += o.first_contact_minutes_sum;
        self.converted += o.converted;
        self.lost += o.lost;
        self.closed += o.closed;
        self.resolved += o.resolved;
        self.value_converted += o.value_converted;
    }
}

/// A lead a broker currently holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenLead {
    /// The lead's state (USPS code), for per-state experience.
    pub lead_state: String,
    /// The lead's lines, for per-line experience.
    #[serde(default)]
    pub lines: LineSet,
    /// When the reservation was taken.
    pub reserved_at: DateTime<Utc>,
    /// The broker's local day of the reservation (for the daily cap).
    pub reserved_day: NaiveDate,
    /// Reservation times out then unless accepted.
    pub accept_deadline: DateTime<Utc>,
    /// First-contact target in minutes.
    pub sla_minutes: u32,
    /// Where the lead is.
    pub stage: LeadState,
    /// When the broker accepted.
    pub accepted_at: Option<DateTime<Utc>>,
    /// When the broker first contacted the customer.
    pub contacted_at: Option<DateTime<Utc>>,
}

impl OpenLead {
    /// A new reservation at `at`; `tz` is the broker's zone (the daily cap's day).
    pub fn reserved(lead_state: &str, lines: LineSet, at: DateTime<Utc>, accept_deadline: DateTime<Utc>, sla_minutes: u32, tz: Tz) -> Self {
        Self {
            lead_state: lead_state.to_string(),
            lines,
            reserved_at: at,
            reserved_day: at.with_timezone(&tz).date_naive(),
            accept_deadline,
            sla_minutes,
            stage: LeadState::Reserved,
            accepted_at: None,
            contacted_at: None,
        }
    }
}

/// One broker's live state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerLive {
    /// Leads held, by lead id.
    pub open: BTreeMap<String, OpenLead>,
    /// Local day the daily counter is for.
    pub daily_day: Option<NaiveDate>,
    /// Reservations on `daily_day` (rejected and timed-out ones give their slot back).
    pub daily_used: u32,
    /// All-time counters.
    pub all_time: PerfCounters,
    /// Counters per UTC day, the last [`DAYS_KEPT`] days.
    pub days: BTreeMap<NaiveDate, PerfCounters>,
    /// When the broker got its first lead (tenure).
    #[serde(default)]
    pub first_lead_at: Option<DateTime<Utc>>,
    /// Experience per lead state (USPS code).
    #[serde(default)]
    pub by_state: BTreeMap<String, StateCounters>,
    /// Experience per line (index of `InsuranceLine`); a lead counts once per requested line.
    #[serde(default)]
    pub by_line: [StateCounters; 7],
    /// Its last SLA-measured first contacts, for adaptive throttling.
    #[serde(default)]
    pub recent_sla: RecentSla,
    /// Seats withheld by adaptive throttling (`broker_throttled` records).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub withheld: u32,
    /// When throttling last moved its seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_at: Option<DateTime<Utc>>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The outcomes of a broker's last (up to 64) SLA-measured first contacts, newest in bit 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentSla {
    /// 1 = within the SLA.
    pub bits: u64,
    /// How many bits hold outcomes (at most 64).
    pub len: u8,
}

impl RecentSla {
    /// Records one outcome.
    pub fn push(&mut self, hit: bool) {
        self.bits = (self.bits << 1) | u64::from(hit);
        self.len = (self.len + 1).min(64);
    }

    /// Hits and outcomes among the last `window` (at most 64).
    pub fn last(&self, window: u32) -> (u32, u32) {
        let n = (self.len as u32).min(window).min(64);
        if n == 0 {
            return (0, 0);
        }
        let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        ((self.bits & mask).count_ones(), n)
    }
}

/// A broker's experience in one state or line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateCounters {
    /// Leads assigned.
    pub leads: u64,
    /// Leads with an outcome.
    pub resolved: u64,
    /// Sales.
    pub converted: u64,
}

/// How a reservation ends without the lead being worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The broker declined.
    Rejected,
    /// The broker did not accept in time.
    TimedOut,
    /// The decision was never journaled; undo as if it never happened.
    Cancelled,
}

impl BrokerLive {
    /// Open leads.
    pub fn open_count(&self) -> u32 {
        self.open.len() as u32
    }

    /// Reservations counted against the cap on the local day of `now`.
    pub fn daily_used_on(&self, day: NaiveDate) -> u32 {
        if self.daily_day == Some(day) {
            self.daily_used
        } else {
            0
        }
    }

    fn bump(&mut self, at: DateTime<Utc>, f: impl Fn(&mut PerfCounters)) {
        f(&mut self.all_time);
        let day = at.date_naive();
        f(self.days.entry(day).or_default());
        let oldest = day - Duration::days(DAYS_KEPT);
        while let Some((&d, _)) = self.days.first_key_value() {
            if d >= oldest {
                break;
            }
            self.days.remove(&d);
        }
    }

    /// Counters summed over the `days` UTC days ending with `now`'s day.
    pub fn window(&self, now: DateTime<Utc>, days: i64) -> PerfCounters {
        let from = now.date_naive() - Duration::days(days - 1);
        let mut sum = PerfCounters::default();
        for (_, c) in self.days.range(from..) {
            sum.add(c);
        }
        sum
    }

    /// Takes a slot for `lead_id` (no checks: callers check with [`BrokerLive::can_take`]).
    pub fn reserve(&mut self, lead_id: &str, lead: OpenLead) {
        if self.daily_day != Some(lead.reserved_day) {
            self.daily_day = Some(lead.reserved_day);
            self.daily_used = 0;
        }
        self.daily_used += 1;
        let at = lead.reserved_at;
        self.bump(at, |c| c.assigned += 1);
        self.first_lead_at.get_or_insert(at);
        self.by_state.entry(lead.lead_state.clone()).or_default().leads += 1;
        for l in lead.lines.lines() {
            self.by_line[l.index()].leads += 1;
        }
        self.open.insert(lead_id.to_string(), lead);
    }

    /// Ends a reservation without work; the daily slot is given back.
    pub fn release(&mut self, lead_id: &str, how: Release, at: DateTime<Utc>) {
        let Some(lead) = self.open.remove(lead_id) else { return };
        if self.daily_day == Some(lead.reserved_day) {
            self.daily_used = self.daily_used.saturating_sub(1);
        }
        match how {
            Release::Rejected => self.bump(at, |c| c.rejected += 1),
            Release::TimedOut => self.bump(at, |c| c.timed_out += 1),
            Release::Cancelled => {
                if let Some(c) = self.by_state.get_mut(&lead.lead_state) {
                    c.leads = c.leads.saturating_sub(1);
                }
                for l in lead.lines.lines() {
                    self.by_line[l.index()].leads = self.by_line[l.index()].leads.saturating_sub(1);
                }
                self.all_time.assigned = self.all_time.assigned.saturating_sub(1);
                if let Some(c) = self.days.get_mut(&lead.reserved_at.date_naive()) {
                    c.assigned = c.assigned.saturating_sub(1);
                }
            }
        }
    }

    /// True when a concurrent slot and a daily slot are free at `now` (in the broker's `tz`).
    pub fn can_take(&self, max_concurrent: u32, daily_cap: u32, day: NaiveDate) -> Result<(), Exclusion> {
        if self.open_count() >= max_concurrent {
            return Err(Exclusion::AtCapacity);
        }
        if self.daily_used_on(day) >= daily_cap {
            return Err(Exclusion::DailyCapReached);
        }
        Ok(())
    }

    /// Applies a lifecycle event for a lead this broker holds.
    pub fn apply_event(&mut self, lead_id: &str, event: EventKind, at: DateTime<Utc>, value: Option<f64>) {
        match event {
            EventKind::Rejected => return self.release(lead_id, Release::Rejected, at),
            EventKind::TimedOut => return self.release(lead_id, Release::TimedOut, at),
            _ => {}
        }
        let Some(lead) = self.open.get_mut(lead_id) else { return };
        let mut delta = PerfCounters::default();
        let mut closed = None;
        match event {
            EventKind::Accepted => {
                lead.stage = LeadState::Accepted;
                lead.accepted_at = Some(at);
                delta.accepted = 1;
            }
            EventKind::Contacted => {
                lead.stage = LeadState::Contacted;
                lead.contacted_at = Some(at);
                let minutes = (at - lead.reserved_at).num_milliseconds().max(0) as f64 / 60_000.0;
                delta.contacted = 1;
                delta.sla_total = 1;
                delta.sla_hits = u64::from(minutes <= lead.sla_minutes as f64);
                delta.first_contact_minutes_sum = minutes;
                self.recent_sla.push(delta.sla_hits == 1);
            }
            EventKind::Converted => {
                lead.stage = LeadState::Converted;
                delta.converted = 1;
                delta.resolved = 1;
                delta.value_converted = value.unwrap_or(0.0);
            }
            EventKind::Lost => {
                lead.stage = LeadState::Lost;
                delta.lost = 1;
                delta.resolved = 1;
            }
            EventKind::Closed => {
                let lead = self.open.remove(lead_id).expect("present: checked above");
                closed = Some((lead.lead_state.clone(), lead.lines));
                delta.closed = 1;
                if matches!(lead.stage, LeadState::Accepted | LeadState::Contacted) {
                    // Worked but closed without an outcome: counts as not converted.
                    delta.resolved = 1;
                }
                if lead.stage == LeadState::Accepted {
                    // Never contacted: an SLA miss.
                    delta.sla_total = 1;
                    self.recent_sla.push(false);
                }
            }
            EventKind::Rejected | EventKind::TimedOut => unreachable!("handled above"),
        }
        if delta.resolved > 0 {
            let (state, lines) = match self.open.get(lead_id) {
                Some(l) => (l.lead_state.clone(), l.lines),
                None => closed.unwrap_or_default(),
            };
            let c = self.by_state.entry(state).or_default();
            c.resolved += delta.resolved;
            c.converted += delta.converted;
            for l in lines.lines() {
                self.by_line[l.index()].resolved += delta.resolved;
                self.by_line[l.index()].converted += delta.converted;
            }
        }
        self.bump(at, |c| c.add(&delta));
    }

    /// Adaptive throttling's next step at `now`, if one is due: the seats to withhold from
    /// `configured` and the recent SLA compliance that calls for it. One seat less while the
    /// compliance over the last `window` measured first contacts is below `sla_target` (never
    /// below `floor` × `configured`, at least one), one more once it is at least `recover_at`,
    /// at most one step per `step_minutes`; with throttling off, every withheld seat back.
    pub fn throttle_step(&self, t: &ThrottleConfig, configured: u32, now: DateTime<Utc>) -> Option<(u32, f64)> {
        let (hits, n) = self.recent_sla.last(t.window);
        let compliance = if n == 0 { 1.0 } else { hits as f64 / n as f64 };
        if !t.enabled {
            return (self.withheld > 0).then_some((0, compliance));
        }
        if n < t.min_samples || self.throttled_at.is_some_and(|at| now - at < Duration::minutes(t.step_minutes as i64)) {
            return None;
        }
        let keep = ((configured as f64 * t.floor).ceil() as u32).clamp(1, configured.max(1));
        let most = configured.saturating_sub(keep);
        if compliance < t.sla_target && self.withheld < most {
            Some((self.withheld + 1, compliance))
        } else if compliance >= t.recover_at && self.withheld > 0 {
            Some((self.withheld.min(most + 1) - 1, compliance))
        } else {
            None
        }
    }

    /// Seats taken or withheld, out of `configured`: what the capacity checks compare with the
    /// configured seats.
    pub fn held(&self, configured: u32) -> u32 {
        self.open_count() + (configured - self.seats(configured))
    }

    /// Its effective concurrent seats: the configured ones less those withheld, at least one.
    pub fn seats(&self, configured: u32) -> u32 {
        configured.saturating_sub(self.withheld).max(1).min(configured)
    }

    /// What its history and load say about `lead` for strategy `roi` (`now` on its local `day`).
    pub fn evidence(&self, profile: &BrokerProfile, lead: &LeadFeatures, day: NaiveDate, cost: f64) -> Evidence {
        let tally = |c: &StateCounters| Tally { converted: c.converted, resolved: c.resolved };
        let lines = lead.lines.lines().fold(Tally::default(), |a, l| {
            let c = &self.by_line[l.index()];
            Tally { converted: a.converted + c.converted, resolved: a.resolved + c.resolved }
        });
        let (mut sum, mut n) = (0u32, 0u32);
        for l in lead.lines.lines() {
            sum += profile.proficiency[l.index()] as u32;
            n += 1;
        }
        let seats = self.seats(profile.max_concurrent) as f64;
        let load = ((self.open_count() + 1) as f64 / seats).max((self.daily_used_on(day) + 1) as f64 / profile.daily_cap.max(1) as f64);
        Evidence {
            overall: Tally { converted: self.all_time.converted, resolved: self.all_time.resolved },
            lines,
            state: self.by_state.get(&lead.state).map(tally).unwrap_or_default(),
            proficiency: if n == 0 { 3.0 } else { sum as f64 / n as f64 },
            revenue: self.all_time.value_converted,
            load: load.min(1.0),
            cost,
        }
    }

    /// Applies a journal record concerning this broker.
    pub fn apply(&mut self, rec: &Record, tz: Tz) {
        match rec {
            Record::Decided { decision: d, .. } => {
                let open = OpenLead::reserved(&d.lead_state, d.lead_lines, d.decided_at, d.accept_deadline, d.sla_target_minutes, tz);
                self.reserve(&d.lead_id, open)
            }
            Record::LeadEvent { lead_id, event, at, value, .. } => self.apply_event(lead_id, *event, *at, *value),
            Record::BrokerThrottled { withheld, at, .. } => {
                self.withheld = *withheld;
                self.throttled_at = Some(*at);
            }
            _ => {}
        }
    }

    /// The smoothed inputs of the scoring formula for a lead of value `lead_value`.
    pub fn score_inputs(&self, specialty: f64, headroom: f64, target_minutes: u32, lead_value: f64, priors: &Priors) -> ScoreInputs {
        let c = &self.all_time;
        let k = priors.strength;
        let target = target_minutes as f64;
        ScoreInputs {
            specialty,
            conversion: priors.conversion.smooth(c.converted as f64, c.resolved as f64),
            value_per_conversion: (c.value_converted + lead_value * k) / (c.converted as f64 + k),
            sla_compliance: priors.sla.smooth(c.sla_hits as f64, c.sla_total as f64),
            avg_first_contact_minutes: (c.first_contact_minutes_sum + target * k) / (c.contacted as f64 + k),
            target_minutes: target,
            headroom,
        }
    }
}

impl BrokerLive {
    /// The model's broker features for `lead` at `now` (same code for training and serving).
    pub fn features(&self, profile: &BrokerProfile, lead: &LeadFeatures, priors: &Priors, now: DateTime<Utc>) -> BrokerFeatures {
        let today = now.date_naive();
        let mut licensed = LineSet::default();
        for (state, lines, expires) in &profile.licences {
            if *state == lead.state_code && *expires >= today {
                licensed.0 |= lines.0;
            }
        }
        let c = &self.all_time;
        let recent = self.window(now, 7);
        let st = self.by_state.get(&lead.state).cloned().unwrap_or_default();
        let line = lead.lines.lines().fold(StateCounters::default(), |mut a, l| {
            let c = &self.by_line[l.index()];
            a.leads += c.leads;
            a.resolved += c.resolved;
            a.converted += c.converted;
            a
        });
        BrokerFeatures {
            proficiency: profile.proficiency,
            licensed,
            tenure_days: self.first_lead_at.map_or(0.0, |t| (now - t).num_seconds().max(0) as f32 / 86_400.0),
            conversion: priors.conversion.smooth(c.converted as f64, c.resolved as f64) as f32,
            recent_conversion: priors.conversion.smooth(recent.converted as f64, recent.resolved as f64) as f32,
            sla_compliance: priors.sla.smooth(c.sla_hits as f64, c.sla_total as f64) as f32,
            utilization: self.open_count() as f32 / self.seats(profile.max_concurrent) as f32,
            state_leads: st.leads as u32,
            state_conversion: priors.conversion.smooth(st.converted as f64, st.resolved as f64) as f32,
            line_leads: line.leads as u32,
            line_conversion: priors.conversion.smooth(line.converted as f64, line.resolved as f64) as f32,
        }
    }
}

/// One lifecycle event as kept in a lead's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadEventEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: EventKind,
    /// The broker holding the lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_id: Option<String>,
    /// Value for `converted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Everything known about one lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadRecord {
    /// The lead id.
    pub lead_id: String,
    /// The original request.
    #[schema(value_type = DecideRequest)]
    pub request: Arc<DecideRequest>,
    /// Current state.
    pub state: LeadState,
    /// Broker holding the lead (none while queued or after it ended unassigned).
    pub broker_id: Option<String>,
    /// When the lead was first decided.
    pub created_at: DateTime<Utc>,
    /// When it last entered the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When it leaves the queue unassigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Brokers that held the lead and gave it back (not offered again).
    pub tried: Vec<String>,
    /// Every decision, oldest first.
    #[schema(value_type = Vec<Decision>)]
    pub decisions: Vec<SharedDecision>,
    /// Every lifecycle event, oldest first.
    pub events: Vec<LeadEventEntry>,
}

impl LeadRecord {
    /// A record for a lead seen for the first time.
    pub fn new(request: Arc<DecideRequest>, at: DateTime<Utc>) -> Self {
        Self {
            lead_id: request.lead_id.clone(),
            request,
            state: LeadState::Queued,
            broker_id: None,
            created_at: at,
            queued_at: None,
            expires_at: None,
            tried: Vec::new(),
            decisions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Builds the record from a first record about the lead (`Decided` with a request, or `Queued`).
    pub fn from_first(rec: &Record) -> Option<Self> {
        let mut lead = match rec {
            Record::Decided { request: Some(r), at, .. } => Self::new(r.clone(), *at),
            Record::Queued { request, at, .. } => Self::new(request.clone(), *at),
            _ => return None,
        };
        lead.apply(rec);
        Some(lead)
    }

    /// Applies a journal record about this lead.
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Decided { decision, .. } => {
                self.state = LeadState::Reserved;
                self.broker_id = Some(decision.broker_id.clone());
                self.queued_at = None;
                self.expires_at = None;
                self.decisions.push(decision.clone());
            }
            Record::Queued { at, expires_at, .. } => {
                self.state = LeadState::Queued;
                self.queued_at = Some(*at);
                self.expires_at = Some(*expires_at);
            }
            Record::LeadEvent { at, event, broker_id, value, requeue_expires_at, .. } => {
                self.events.push(LeadEventEntry { at: *at, event: *event, broker_id: broker_id.clone(), value: *value });
                match event {
                    EventKind::Rejected | EventKind::TimedOut => {
                        if let Some(b) = self.broker_id.take() {
                            self.tried.push(b);
                        }
                        self.state = LeadState::Queued;
                        self.queued_at = Some(*at);
                        self.expires_at = *requeue_expires_at;
                    }
                    EventKind::Accepted => self.state = LeadState::Accepted,
                    EventKind::Contacted => self.state = LeadState::Contacted,
                    EventKind::Converted => self.state = LeadState::Converted,
                    EventKind::Lost => self.state = LeadState::Lost,
                    EventKind::Closed => {
                        self.state = LeadState::Closed;
                        self.queued_at = None;
                        self.expires_at = None;
                    }
                }
            }
            Record::QueueExpired { .. } => {
                self.state = LeadState::Expired;
                self.queued_at = None;
                self.expires_at = None;
            }
            Record::BrokerUpserted { .. }
            | Record::BrokerDeleted { .. }
            | Record::Archived { .. }
            | Record::ExperimentSaved { .. }
            | Record::ExperimentStatus { .. }
            | Record::ExperimentDeleted { .. }
            | Record::ExperimentAllocated { .. }
            | Record::RoutingDefault { .. }
            | Record::BrokerThrottled { .. } => {}
        }
    }

    /// The last time anything happened to the lead.
    pub fn last_activity(&self) -> DateTime<Utc> {
        let decided = self.decisions.last().map(|d| d.decided_at);
        let event = self.events.last().map(|e| e.at);
        [Some(self.created_at), self.queued_at, decided, event].into_iter().flatten().max().unwrap_or(self.created_at)
    }

    /// The latest decision, if any.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last().map(|d| &**d)
    }
}

/// One broker: configuration and live state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerEntry {
    /// Configuration.
    pub broker: Broker,
    /// Live state.
    pub live: BrokerLive,
}

/// The whole engine state at a journal position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngineState {
    /// Sequence number of the last applied record.
    pub seq: u64,
    /// Brokers by id.
    pub brokers: BTreeMap<String, BrokerEntry>,
    /// Leads by id.
    pub leads: HashMap<String, LeadRecord>,
    /// Leads loaded at a later position than `seq` (a snapshot stopped between its leads and its
    /// meta key), with that position: records up to it are already in them.
    #[serde(skip)]
    leads_ahead: HashMap<String, u64>,
    /// The furthest position in `leads_ahead`.
    #[serde(skip)]
    ahead_through: u64,
}

impl EngineState {
    /// Marks `lead_id` as holding every record up to `seq`, beyond the state's own position.
    pub(crate) fn set_lead_ahead(&mut self, lead_id: &str, seq: u64) {
        if seq > self.seq {
            self.leads_ahead.insert(lead_id.to_string(), seq);
            self.ahead_through = self.ahead_through.max(seq);
        }
    }

    /// The last journal record this state already holds in some part: its position, or further
    /// when some leads are ahead of it. Replay must reach it.
    pub fn holds_through(&self) -> u64 {
        self.seq.max(self.ahead_through)
    }

    /// How many leads are ahead of the state's position.
    pub fn leads_ahead(&self) -> usize {
        self.leads_ahead.len()
    }

    /// Whether lead `id` already holds record `seq`.
    fn lead_holds(&self, id: &str, seq: u64) -> bool {
        // The map is empty unless the last snapshot stopped part-way, and `get` on an empty map
        // returns before hashing the id.
        self.leads_ahead.get(id).is_some_and(|s| seq <= *s)
    }

    /// Applies record `seq`; records at or below the current position are ignored, and so is
    /// the lead part of a record a lead loaded ahead already holds.
    pub fn apply(&mut self, seq: u64, rec: &Record) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        self.apply_new(seq, rec);
        if seq >= self.ahead_through && !self.leads_ahead.is_empty() {
            // Every lead has caught up.
            self.leads_ahead = HashMap::new();
            self.ahead_through = 0;
        }
    }

    fn apply_new(&mut self, seq: u64, rec: &Record) {
        match rec {
            Record::BrokerUpserted { broker, .. } => {
                self.brokers
                    .entry(broker.id.clone())
                    .and_modify(|e| e.broker = broker.clone())
                    .or_insert_with(|| BrokerEntry { broker: broker.clone(), live: BrokerLive::default() });
            }
            Record::BrokerDeleted { broker_id, .. } => {
                self.brokers.remove(broker_id);
            }
            Record::Archived { lead_ids, .. } => {
                for id in lead_ids {
                    if !self.lead_holds(id, seq) && self.leads.get(id).is_some_and(|l| l.state.is_final()) {
                        self.leads.remove(id);
                    }
                }
            }
            _ => {
                if let Some(b) = rec.broker_id() {
                    if let Some(e) = self.brokers.get_mut(b) {
                        let tz = e.broker.tz();
                        e.live.apply(rec, tz);
                    }
                }
                if let Some(l) = rec.lead_id().filter(|l| !self.lead_holds(l, seq)) {
                    match self.leads.get_mut(l) {
                        Some(lead) => lead.apply(rec),
                        None => {
                            if let Some(lead) = LeadRecord::from_first(rec) {
                                self.leads.insert(l.to_string(), lead);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn broker(id: &str) -> Record {
        let b: Broker = serde_json::from_value(json!({
            "id": id, "name": id, "specialties": [{"type": "AUTO", "proficiency": 4}],
            "licenses": [{"state": "TX", "lines": ["AUTO"], "expiresOn": "2099-01-01"}],
            "capacity": {"maxConcurrent": 2, "dailyCap": 10}
        }))
        .unwrap();
        Record::BrokerUpserted { at: at(0), broker: b }
    }

    fn request(lead: &str) -> Arc<DecideRequest> {
        Arc::new(
            serde_json::from_value(json!({"leadId": lead, "leadData": {"insuranceTypes": ["AUTO"], "state": "TX", "estimatedValue": 900}}))
                .unwrap(),
        )
    }

    fn decided(lead: &str, broker: &str, min: i64, attempt: u32) -> Record {
        let factor = json!({"value": 1.0, "weight": 0.25, "contribution": 0.25});
        let d: Decision = serde_json::from_value(json!({
            "decisionId": format!("dec-{lead}-{attempt}"), "leadId": lead, "brokerId": broker, "leadState": "TX",
            "leadLines": 1, "status": "assigned", "strategy": "specialty", "score": 1.0,
            "breakdown": {"specialty": factor, "performance": factor, "capacity": factor, "sla": factor,
                          "conversion": 0.1, "conversionSource": "empirical_bayes", "valuePerConversion": 900.0,
                          "avgFirstContactMinutes": 30.0, "rawPerformance": 1.0},
            "alternatives": [], "excluded": {}, "skipped": [], "eligible": 2, "scored": 2, "propensity": 1.0,
            "attempt": attempt, "decidedAt": at(min), "acceptDeadline": at(min + 10), "slaTargetMinutes": 30,
            "decisionMicros": 50, "modelVersion": null
        }))
        .unwrap();
        let request = (attempt == 1).then(|| request(lead));
        Record::Decided { at: at(min), decision: SharedDecision::new(d), request }
    }

    fn event(lead: &str, broker: &str, kind: EventKind, min: i64) -> Record {
        let value = (kind == EventKind::Converted).then_some(1200.0);
        let requeue_expires_at = matches!(kind, EventKind::Rejected | EventKind::TimedOut).then(|| at(min + 60));
        Record::LeadEvent { at: at(min), lead_id: lead.into(), broker_id: Some(broker.into()), event: kind, value, requeue_expires_at }
    }

    /// Applies `records` in order from position 1.
    fn replay(records: &[Record]) -> EngineState {
        let mut s = EngineState::default();
        for (i, r) in records.iter().enumerate() {
            s.apply(i as u64 + 1, r);
        }
        s
    }

    #[test]
    fn a_lead_walks_its_lifecycle_and_its_broker_counts_it() {
        let mut recs = vec![broker("b1"), decided("l1", "b1", 1, 1)];
        let s = replay(&recs);
        assert_eq!(s.leads["l1"].state, LeadState::Reserved);
        assert_eq!(s.brokers["b1"].live.open_count(), 1);
        for (kind, min) in [(EventKind::Accepted, 2), (EventKind::Contacted, 5), (EventKind::Converted, 9), (EventKind::Closed, 20)] {
            recs.push(event("l1", "b1", kind, min));
        }
        let s = replay(&recs);
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.events.len()), (LeadState::Closed, Some("b1"), 4));
        let live = &s.brokers["b1"].live;
        assert_eq!(live.open_count(), 0, "closing frees the seat");
        let p = live.window(at(30), 7);
        assert_eq!((p.assigned, p.accepted, p.contacted, p.converted, p.closed), (1, 1, 1, 1, 1));
        assert_eq!((p.sla_hits, p.sla_total, p.value_converted), (1, 1, 1200.0));
        assert_eq!(s.seq, 6);
    }

    #[test]
    fn a_rejection_requeues_the_lead_and_a_reroute_goes_elsewhere() {
        let s = replay(&[broker("b1"), broker("b2"), decided("l1", "b1", 1, 1), event("l1", "b1", EventKind::Rejected, 2)]);
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.tried.clone()), (LeadState::Queued, None, vec!["b1".to_string()]));
        assert_eq!((l.queued_at, l.expires_at), (Some(at(2)), Some(at(62))));
        assert_eq!(s.brokers["b1"].live.open_count(), 0);
        let mut s = s;
        s.apply(5, &decided("l1", "b2", 3, 2));
        let l = &s.leads["l1"];
        assert_eq!((l.state, l.broker_id.as_deref(), l.decisions.len()), (LeadState::Reserved, Some("b2"), 2));
        assert_eq!((l.queued_at, l.expires_at), (None, None));
        assert_eq!(l.last_decision().unwrap().attempt, 2);
        assert_eq!(s.brokers["b2"].live.open_count(), 1);
    }

    #[test]
    fn a_timed_out_reservation_gives_the_seat_back() {
        let s = replay(&[broker("b1"), decided("l1", "b1", 1, 1), event("l1", "b1", EventKind::TimedOut, 11)]);
        assert_eq!(s.leads["l1"].state, LeadState::Queued);
        assert_eq!(s.brokers["b1"].live.open_count(), 0);
        assert_eq!(s.brokers["b1"].live.window(at(12), 7).timed_out, 1);
    }

    #[test]
    fn a_queued_lead_waits_then_expires() {
        let queued = Record::Queued { at: at(1), request: request("q1"), expires_at: at(61) };
        let s = replay(std::slice::from_ref(&queued));
        let l = &s.leads["q1"];
        assert_eq!((l.state, l.queued_at, l.expires_at, l.broker_id.clone()), (LeadState::Queued, Some(at(1)), Some(at(61)), None));
        let s = replay(&[queued, Record::QueueExpired { at: at(61), lead_id: "q1".into() }]);
        let l = &s.leads["q1"];
        assert!(l.state.is_final());
        assert_eq!((l.state, l.queued_at, l.expires_at), (LeadState::Expired, None, None));
        assert_eq!(l.last_activity(), at(1));
    }

    #[test]
    fn archiving_drops_finished_leads_only() {
        let s = replay(&[
            broker("b1"),
            decided("done", "b1", 1, 1),
            event("done", "b1", EventKind::Closed, 2),
            decided("open", "b1", 3, 1),
            Record::Queued { at: at(4), request: request("gone"), expires_at: at(5) },
            Record::QueueExpired { at: at(5), lead_id: "gone".into() },
            Record::Archived { at: at(6), lead_ids: vec!["done".into(), "open".into(), "gone".into(), "never".into()] },
        ]);
        let mut ids: Vec<&str> = s.leads.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["open"]);
        assert_eq!(s.brokers["b1"].live.open_count(), 1, "archiving changes no broker");
    }

    #[test]
    fn brokers_are_replaced_keeping_their_live_state_and_deleted() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        let Record::BrokerUpserted { broker: mut b, .. } = broker("b1") else { unreachable!() };
        b.name = "Renamed".into();
        s.apply(3, &Record::BrokerUpserted { at: at(2), broker: b });
        assert_eq!(s.brokers["b1"].broker.name, "Renamed");
        assert_eq!(s.brokers["b1"].live.open_count(), 1);
        s.apply(4, &Record::BrokerDeleted { at: at(3), broker_id: "b1".into() });
        assert!(s.brokers.is_empty());
        // A record for a broker that no longer exists still moves its lead.
        s.apply(5, &event("l1", "b1", EventKind::Accepted, 4));
        assert_eq!(s.leads["l1"].state, LeadState::Accepted);
    }

    #[test]
    fn records_at_or_below_the_position_are_ignored() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        s.apply(2, &event("l1", "b1", EventKind::Accepted, 2));
        s.apply(1, &event("l1", "b1", EventKind::Accepted, 2));
        assert_eq!((s.seq, s.leads["l1"].state, s.leads["l1"].events.len()), (2, LeadState::Reserved, 0));
    }

    #[test]
    fn a_lead_loaded_ahead_skips_the_records_it_holds_until_replay_catches_up() {
        let mut s = replay(&[broker("b1"), decided("l1", "b1", 1, 1)]);
        // As if a snapshot wrote l1 at position 4 but its meta key says 2.
        s.set_lead_ahead("l1", 4);
        assert_eq!((s.holds_through(), s.leads_ahead()), (4, 1));
        s.apply(3, &event("l1", "b1", EventKind::Accepted, 2));
        s.apply(4, &event("l1", "b1", EventKind::Contacted, 3));
        assert_eq!(s.leads["l1"].events.len(), 0, "the lead already holds records 3 and 4");
        assert_eq!(s.brokers["b1"].live.window(at(5), 7).contacted, 1, "the broker part is applied");
        assert_eq!((s.holds_through(), s.leads_ahead()), (4, 0));
        s.apply(5, &event("l1", "b1", EventKind::Lost, 4));
        assert_eq!(s.leads["l1"].events.len(), 1);
        assert_eq!(s.leads["l1"].state, LeadState::Lost);
    }

    proptest::proptest! {
        /// Conversions at the largest amount the API takes, as many as a broker could close,
        /// keep every aggregate and every scoring input finite.
        #[test]
        fn aggregates_stay_finite_at_the_largest_amounts(
            values in proptest::collection::vec(0.0..=leadrouter_models::lead::MAX_AMOUNT, 1..300),
        ) {
            let mut recs = vec![broker("b1")];
            for (i, v) in values.iter().enumerate() {
                let id = format!("l{i}");
                recs.push(decided(&id, "b1", i as i64, 1));
                recs.push(Record::LeadEvent {
                    at: at(i as i64), lead_id: id.clone(), broker_id: Some("b1".into()),
                    event: EventKind::Converted, value: Some(*v), requeue_expires_at: None,
                });
                recs.push(event(&id, "b1", EventKind::Closed, i as i64));
            }
            let s = replay(&recs);
            let live = &s.brokers["b1"].live;
            proptest::prop_assert!(live.all_time.value_converted.is_finite());
            proptest::prop_assert!(live.window(at(400), 7).value_converted.is_finite());
            let priors = Priors::from_totals(1, 2, 1, 2, 20.0);
            let i = live.score_inputs(1.0, 1.0, 30, leadrouter_models::lead::MAX_AMOUNT, &priors);
            for x in [i.conversion, i.value_per_conversion, i.sla_compliance, i.avg_first_contact_minutes, i.raw_performance()] {
                proptest::prop_assert!(x.is_finite(), "{i:?}");
            }
        }
    }
}
