//! One broker's live state (`BrokerLive`), owned at run time by its `BrokerActor` and rebuilt by
//! replay: open leads, daily and all-time counters, experience per state and line, the recent SLA
//! record and the seats adaptive throttling withholds; and what scoring, the model and strategy
//! `roi` read from it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use leadrouter_models::broker::Tz;
use leadrouter_models::roi::{Evidence, Tally};
use leadrouter_models::{BrokerFeatures, BrokerProfile, EventKind, Exclusion, LeadFeatures, LeadState, LineSet, Priors, ScoreInputs};
use serde::{Deserialize, Serialize};

use crate::config::ThrottleConfig;
use crate::storage::record::Record;

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
        let seats = self.seats(profile.max_concurrent) as f64;
        let load = ((self.open_count() + 1) as f64 / seats).max((self.daily_used_on(day) + 1) as f64 / profile.daily_cap.max(1) as f64);
        Evidence {
            overall: Tally { converted: self.all_time.converted, resolved: self.all_time.resolved },
            lines: tally(&self.in_lines(lead.lines)),
            state: self.by_state.get(&lead.state).map(tally).unwrap_or_default(),
            proficiency: 5.0 * profile.specialty_score(lead.lines),
            revenue: self.all_time.value_converted,
            load: load.min(1.0),
            cost,
        }
    }

    /// Its experience in `lines`, summed over them.
    fn in_lines(&self, lines: LineSet) -> StateCounters {
        lines.lines().fold(StateCounters::default(), |mut a, l| {
            let c = &self.by_line[l.index()];
            a.leads += c.leads;
            a.resolved += c.resolved;
            a.converted += c.converted;
            a
        })
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
        let line = self.in_lines(lead.lines);
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn throttle() -> ThrottleConfig {
        ThrottleConfig { enabled: true, window: 4, min_samples: 2, step_minutes: 30, floor: 0.5, ..ThrottleConfig::default() }
    }

    fn with(outcomes: &[bool]) -> BrokerLive {
        let mut b = BrokerLive::default();
        for &hit in outcomes {
            b.recent_sla.push(hit);
        }
        b
    }

    #[test]
    fn the_recent_record_keeps_the_newest_outcomes() {
        let b = with(&[false, false, true, true, true]);
        assert_eq!(b.recent_sla.last(3), (3, 3));
        assert_eq!(b.recent_sla.last(4), (3, 4));
        assert_eq!(b.recent_sla.last(10), (3, 5));
        let mut full = RecentSla::default();
        for i in 0..100 {
            full.push(i % 2 == 0);
        }
        assert_eq!((full.len, full.last(64)), (64, (32, 64)));
    }

    #[test]
    fn throttling_steps_down_to_the_floor_waits_between_steps_and_recovers() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let t = throttle();
        // One outcome is fewer than the two samples needed.
        assert_eq!(with(&[false]).throttle_step(&t, 4, now), None);
        assert_eq!(with(&[false, false]).throttle_step(&t, 4, now), Some((1, 0.0)));
        // The floor keeps half of 4 seats: at most 2 withheld.
        let mut b = with(&[false, false, false]);
        b.withheld = 2;
        assert_eq!(b.throttle_step(&t, 4, now), None);
        // A step 10 minutes ago: wait for 30.
        let mut b = with(&[false, false]);
        b.throttled_at = Some(now - Duration::minutes(10));
        assert_eq!(b.throttle_step(&t, 4, now), None);
        assert_eq!(b.throttle_step(&t, 4, now + Duration::minutes(20)), Some((1, 0.0)));
        // 3 of 4 in time: below a target of 0.9 a seat goes; between a target of 0.7 and
        // recovery at 0.95, nothing moves.
        let mut b = with(&[true, false, true, true]);
        b.withheld = 1;
        assert_eq!(b.throttle_step(&t, 4, now), Some((2, 0.75)));
        assert_eq!(b.throttle_step(&ThrottleConfig { sla_target: 0.7, ..t.clone() }, 4, now), None);
        // All in time: a seat back. Throttling off: every seat back.
        let mut b = with(&[true, true, true, true]);
        b.withheld = 2;
        assert_eq!(b.throttle_step(&t, 4, now), Some((1, 1.0)));
        let off = ThrottleConfig { enabled: false, ..t.clone() };
        assert_eq!(with(&[false, false]).throttle_step(&off, 4, now), None);
        assert_eq!(b.throttle_step(&off, 4, now), Some((0, 1.0)));
        // Seats: configured less withheld, at least one.
        assert_eq!((b.seats(4), b.seats(2), b.seats(1)), (2, 1, 1));
    }
}
