//! Brokers: their configuration, its validation, and the compiled profile used for eligibility.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};
pub use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::geo::is_us_state;
use crate::lead::{validate_id, InsuranceLine, LeadFeatures, LineSet, StateCode, MAX_SHORT_LEN};

/// A line the broker is skilled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Specialty {
    /// The line.
    #[serde(rename = "type")]
    pub line: InsuranceLine,
    /// 1 (novice) to 5 (expert).
    #[schema(minimum = 1, maximum = 5)]
    pub proficiency: u8,
}

/// A licence to sell some lines in one state until a date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct License {
    /// USPS state code.
    pub state: String,
    /// Lines covered.
    #[schema(min_items = 1)]
    pub lines: Vec<InsuranceLine>,
    /// Last valid day (inclusive, UTC).
    pub expires_on: NaiveDate,
}

/// How many leads the broker can hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Most leads open at once (reserved until closed), 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_concurrent: u32,
    /// Most leads assigned per day in the broker's time zone, 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub daily_cap: u32,
}

/// The broker's response-time promises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sla {
    /// Minutes from assignment to first contact, 1 to 10,080 (a week).
    #[schema(minimum = 1, maximum = 10080)]
    pub first_contact_minutes: u32,
    /// Minutes for HIGH and CRITICAL leads; half of `firstContactMinutes` when absent; 1 to 10,080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10080)]
    pub urgent_first_contact_minutes: Option<u32>,
    /// Seconds the broker has to accept a reservation before it is re-routed, 1 to 86,400 (a day).
    #[schema(minimum = 1, maximum = 86400)]
    pub accept_timeout_seconds: u32,
}

impl Default for Sla {
    fn default() -> Self {
        Self { first_contact_minutes: 60, urgent_first_contact_minutes: None, accept_timeout_seconds: 300 }
    }
}

impl Sla {
    /// The first-contact target for a lead of this urgency.
    pub fn target_minutes(&self, urgent: bool) -> u32 {
        if urgent {
            self.urgent_first_contact_minutes.unwrap_or((self.first_contact_minutes / 2).max(1))
        } else {
            self.first_contact_minutes
        }
    }
}

/// Weekly working hours in a time zone; days absent from `hours` are off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    /// IANA time zone, e.g. `America/Los_Angeles`.
    pub timezone: String,
    /// Day (`mon`…`sun`) to `["HH:MM", "HH:MM"]` (start inclusive, end exclusive; `24:00` allowed).
    pub hours: BTreeMap<String, [String; 2]>,
}

/// Whether the broker takes leads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrokerStatus {
    /// Takes leads.
    #[default]
    Available,
    /// Temporarily not taking leads.
    Away,
    /// Not working.
    Offline,
    /// Not taking leads until `outOfOfficeUntil` (inclusive).
    OutOfOffice,
}

fn default_weight() -> f64 {
    1.0
}

/// A broker as configured through the API or demo data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    /// Unique id.
    #[schema(pattern = "^[A-Za-z0-9_.:-]+$", min_length = 1, max_length = 128)]
    pub id: String,
    /// Display name.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// Skills per line.
    #[serde(default)]
    pub specialties: Vec<Specialty>,
    /// Licences per state.
    #[schema(min_items = 1)]
    pub licenses: Vec<License>,
    /// Limits.
    pub capacity: Capacity,
    /// Response-time promises.
    #[serde(default)]
    pub sla: Sla,
    /// Working hours; around the clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Availability.
    #[serde(default)]
    pub status: BrokerStatus,
    /// Last day out of office (with status `out_of_office`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_office_until: Option<NaiveDate>,
    /// Share for weighted round robin (> 0).
    #[serde(default = "default_weight")]
    #[schema(exclusive_minimum = 0, maximum = 1000)]
    pub weight: f64,
    /// What one lead costs when given to this broker, 0 to 1,000,000,000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub cost_per_lead: f64,
    /// Team or region, for fairness reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_.:-]+$", min_length = 1, max_length = 128)]
    pub group: Option<String>,
    /// Free text about the broker (at most 4,000 characters), embedded with its specialties and
    /// lines for semantic matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4000)]
    pub bio: Option<String>,
}

/// Most leads open at once, and per day, one broker may take.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// Longest first-contact promise: a week.
pub const MAX_SLA_MINUTES: u32 = 10_080;
/// Longest time to accept a reservation: a day.
pub const MAX_ACCEPT_SECONDS: u32 = 86_400;

/// The days of a schedule's `hours`, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl Broker {
    /// Validates every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        if crate::lead::is_blank(&self.name) || self.name.chars().count() > MAX_SHORT_LEN {
            return Err(ModelError::invalid("name", format!("must be 1 to {MAX_SHORT_LEN} characters")));
        }
        for (i, s) in self.specialties.iter().enumerate() {
            if !(1..=5).contains(&s.proficiency) {
                return Err(ModelError::invalid(format!("specialties[{i}].proficiency"), "must be between 1 and 5"));
            }
            if self.specialties[..i].iter().any(|o| o.line == s.line) {
                return Err(ModelError::invalid(format!("specialties[{i}].type"), format!("duplicate specialty {}", s.line.name())));
            }
        }
        if self.bio.as_ref().is_some_and(|b| b.chars().count() > crate::lead::MAX_TEXT_LEN) {
            return Err(ModelError::invalid("bio", format!("must be at most {} characters", crate::lead::MAX_TEXT_LEN)));
        }
        if self.licenses.is_empty() {
            return Err(ModelError::invalid("licenses", "must have at least one licence"));
        }
        for (i, l) in self.licenses.iter().enumerate() {
            if !is_us_state(&l.state) {
                return Err(ModelError::invalid(format!("licenses[{i}].state"), format!("'{}' is not a US postal state code", l.state)));
            }
            if l.lines.is_empty() {
                return Err(ModelError::invalid(format!("licenses[{i}].lines"), "must name at least one line"));
            }
        }
        let between = |field: &str, v: u32, max: u32| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(ModelError::invalid(field, format!("must be between 1 and {max}")))
            }
        };
        between("capacity.maxConcurrent", self.capacity.max_concurrent, MAX_CAPACITY)?;
        between("capacity.dailyCap", self.capacity.daily_cap, MAX_CAPACITY)?;
        between("sla.firstContactMinutes", self.sla.first_contact_minutes, MAX_SLA_MINUTES)?;
        if let Some(m) = self.sla.urgent_first_contact_minutes {
            between("sla.urgentFirstContactMinutes", m, MAX_SLA_MINUTES)?;
        }
        between("sla.acceptTimeoutSeconds", self.sla.accept_timeout_seconds, MAX_ACCEPT_SECONDS)?;
        if let Some(s) = &self.schedule {
            if s.timezone.parse::<Tz>().is_err() {
                return Err(ModelError::invalid("schedule.timezone", format!("'{}' is not an IANA time zone", s.timezone)));
            }
            for (day, [from, to]) in &s.hours {
                let field = format!("schedule.hours.{day}");
                if !DAYS.contains(&day.as_str()) {
                    return Err(ModelError::invalid(field, "day must be one of mon, tue, wed, thu, fri, sat, sun"));
                }
                match (parse_hhmm(from), parse_hhmm(to)) {
                    (Some(a), Some(b)) if a < b => {}
                    (Some(_), Some(_)) => return Err(ModelError::invalid(field, "start must be before end")),
                    _ => return Err(ModelError::invalid(field, "times must be HH:MM between 00:00 and 24:00")),
                }
            }
        }
        if self.status == BrokerStatus::OutOfOffice && self.out_of_office_until.is_none() {
            return Err(ModelError::invalid("outOfOfficeUntil", "is required when status is out_of_office"));
        }
        if !self.weight.is_finite() || self.weight <= 0.0 || self.weight > 1000.0 {
            return Err(ModelError::invalid("weight", "must be > 0 and at most 1000"));
        }
        crate::lead::check_amount("costPerLead", Some(self.cost_per_lead))?;
        if let Some(g) = &self.group {
            validate_id("group", g)?;
        }
        Ok(())
    }

    /// The broker's time zone (UTC when it has no schedule).
    pub fn tz(&self) -> Tz {
        self.schedule.as_ref().and_then(|s| s.timezone.parse().ok()).unwrap_or(Tz::UTC)
    }

    /// Compiles a validated broker into the form the decision path checks quickly.
    pub fn profile(&self) -> BrokerProfile {
        let mut proficiency = [0u8; 7];
        for s in &self.specialties {
            proficiency[s.line.index()] = s.proficiency;
        }
        let mut licences: Vec<(StateCode, LineSet, NaiveDate)> =
            self.licenses.iter().map(|l| (StateCode::of(&l.state), LineSet::of(&l.lines), l.expires_on)).collect();
        licences.sort_by_key(|l| l.0);
        let hours = self.schedule.as_ref().map(|s| {
            let mut days = [None; 7];
            for (day, [from, to]) in &s.hours {
                if let (Some(i), Some(a), Some(b)) = (DAYS.iter().position(|d| d == day), parse_hhmm(from), parse_hhmm(to)) {
                    days[i] = Some((a, b));
                }
            }
            days
        });
        BrokerProfile {
            id: self.id.clone(),
            proficiency,
            specialties: LineSet::of(&self.specialties.iter().map(|s| s.line).collect::<Vec<_>>()),
            licences,
            tz: self.tz(),
            hours,
            status: self.status,
            out_of_office_until: self.out_of_office_until,
            max_concurrent: self.capacity.max_concurrent,
            daily_cap: self.capacity.daily_cap,
            weight: self.weight,
            group: self.group.clone(),
        }
    }
}

/// Why a broker was ruled out for a lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Exclusion {
    /// Named in `excludeBrokers`.
    Excluded,
    /// Not licensed in the lead's state for every requested line.
    NotLicensed,
    /// Licensed, but a needed licence has expired.
    LicenseExpired,
    /// Lacks a required specialty.
    MissingSpecialty,
    /// Status is away, offline or out of office.
    Unavailable,
    /// Outside working hours.
    OutsideHours,
    /// Open leads at `maxConcurrent`.
    AtCapacity,
    /// Leads today at `dailyCap`.
    DailyCapReached,
}

/// A broker compiled for fast eligibility checks.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerProfile {
    /// Broker id.
    pub id: String,
    /// Proficiency 0–5 per line index.
    pub proficiency: [u8; 7],
    /// Lines with any proficiency.
    pub specialties: LineSet,
    /// (state, lines, expires_on), sorted by state.
    pub licences: Vec<(StateCode, LineSet, NaiveDate)>,
    /// Time zone for hours and the daily cap.
    pub tz: Tz,
    /// Working minutes per weekday (mon = 0); `None` means around the clock.
    pub hours: Option<[Option<(u16, u16)>; 7]>,
    /// Configured status.
    pub status: BrokerStatus,
    /// Last day out of office.
    pub out_of_office_until: Option<NaiveDate>,
    /// Concurrent limit.
    pub max_concurrent: u32,
    /// Daily limit.
    pub daily_cap: u32,
    /// Weighted round-robin share.
    pub weight: f64,
    /// Group label.
    pub group: Option<String>,
}

/// Local times of one instant, remembered per time zone: the filter asks for the same instant
/// in the time zone of every broker, and most brokers share a few zones. It keeps the first
/// [`LocalClock::ZONES`] zones it meets, without allocating; further zones are converted on
/// every call, as without a clock.
#[derive(Debug, Default)]
pub struct LocalClock {
    /// The instant the entries below are for.
    at: Option<DateTime<Utc>>,
    /// Its UTC calendar day.
    day: NaiveDate,
    /// (zone, weekday from Monday = 0, minute of the day), filled from the front.
    zones: [Option<(Tz, u8, u16)>; LocalClock::ZONES],
    /// Some zone's offset at this instant was not a whole number of minutes.
    uneven: bool,
}

impl LocalClock {
    /// Zones remembered.
    pub const ZONES: usize = 8;

    /// Forgets the remembered conversions when `now` is another instant.
    fn at(&mut self, now: DateTime<Utc>) {
        if self.at != Some(now) {
            *self = Self { at: Some(now), day: now.date_naive(), zones: [None; Self::ZONES], uneven: false };
        }
    }

    /// The UTC calendar day of `now`.
    pub fn utc_day(&mut self, now: DateTime<Utc>) -> NaiveDate {
        self.at(now);
        self.day
    }

    /// True when every zone converted since the clock was last set had an offset of whole
    /// minutes: the local weekday and minute it gave then hold for the whole UTC minute.
    pub fn whole_minutes(&self) -> bool {
        !self.uneven
    }

    /// The weekday (Monday = 0) and minute of the day of `now` in `tz`.
    pub fn weekday_minute(&mut self, tz: Tz, now: DateTime<Utc>) -> (u8, u16) {
        self.at(now);
        let mut free = None;
        for (i, z) in self.zones.iter().enumerate() {
            match z {
                Some((t, d, m)) if *t == tz => return (*d, *m),
                Some(_) => {}
                None => {
                    free = Some(i);
                    break;
                }
            }
        }
        let local = now.with_timezone(&tz);
        let (d, m) = (local.weekday().num_days_from_monday() as u8, (local.hour() * 60 + local.minute()) as u16);
        self.uneven |= local.offset().fix().local_minus_utc() % 60 != 0;
        if let Some(i) = free {
            self.zones[i] = Some((tz, d, m));
        }
        (d, m)
    }
}

impl BrokerProfile {
    /// The broker's local calendar day at `now` (the daily cap's day).
    pub fn local_day(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// True when the status lets the broker take leads at `now`.
    pub fn is_available(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            BrokerStatus::Available => true,
            BrokerStatus::Away | BrokerStatus::Offline => false,
            BrokerStatus::OutOfOffice => self.out_of_office_until.is_some_and(|until| now.date_naive() > until),
        }
    }

    /// True when `now` is inside the broker's working hours.
    pub fn is_working(&self, now: DateTime<Utc>) -> bool {
        self.is_working_at(now, &mut LocalClock::default())
    }

    /// [`Self::is_working`], converting `now` to the broker's time zone through `clock`, which
    /// remembers the conversions already made.
    pub fn is_working_at(&self, now: DateTime<Utc>, clock: &mut LocalClock) -> bool {
        let Some(days) = &self.hours else { return true };
        let (weekday, minute) = clock.weekday_minute(self.tz, now);
        match days[weekday as usize] {
            Some((from, to)) => minute >= from && minute < to,
            None => false,
        }
    }

    /// Mean proficiency over the lead's lines, scaled to 0–1.
    pub fn specialty_score(&self, lines: LineSet) -> f64 {
        // The set's bits are line indices: visit only the bits that are set (and name a line).
        let lines = lines.0 & ((1 << InsuranceLine::ALL.len()) - 1);
        let (mut bits, mut sum) = (lines, 0u32);
        while bits != 0 {
            sum += u32::from(self.proficiency[bits.trailing_zeros() as usize]);
            bits &= bits - 1;
        }
        match lines.count_ones() {
            0 => 0.0,
            n => f64::from(sum) / (5.0 * f64::from(n)),
        }
    }

    /// The static checks: exclusion, licences, specialties, status and hours.
    pub fn static_eligibility(&self, lead: &LeadFeatures, now: DateTime<Utc>) -> std::result::Result<(), Exclusion> {
        self.static_eligibility_at(lead, now, &mut LocalClock::default())
    }

    /// [`Self::static_eligibility`], with the local times of `now` shared through `clock` (a scan
    /// over many brokers converts `now` once per time zone instead of once per broker).
    pub fn static_eligibility_at(
        &self,
        lead: &LeadFeatures,
        now: DateTime<Utc>,
        clock: &mut LocalClock,
    ) -> std::result::Result<(), Exclusion> {
        if lead.exclude.iter().any(|e| e == &self.id) {
            return Err(Exclusion::Excluded);
        }
        let today = clock.utc_day(now);
        let mut valid = LineSet::default();
        let mut any = LineSet::default();
        for (state, lines, expires) in &self.licences {
            if *state == lead.state_code {
                any.0 |= lines.0;
                if *expires >= today {
                    valid.0 |= lines.0;
                }
            }
        }
        if !valid.contains_all(lead.lines) {
            return Err(if any.contains_all(lead.lines) { Exclusion::LicenseExpired } else { Exclusion::NotLicensed });
        }
        if !self.specialties.contains_all(lead.required) {
            return Err(Exclusion::MissingSpecialty);
        }
        if !self.is_available(now) {
            return Err(Exclusion::Unavailable);
        }
        if !self.is_working_at(now, clock) {
            return Err(Exclusion::OutsideHours);
        }
        Ok(())
    }

    /// The live checks: concurrent capacity and the daily cap (`used_today` counts today's
    /// reservations in the broker's time zone).
    pub fn capacity_eligibility(&self, open: u32, used_today: u32) -> std::result::Result<(), Exclusion> {
        if open >= self.max_concurrent {
            return Err(Exclusion::AtCapacity);
        }
        if used_today >= self.daily_cap {
            return Err(Exclusion::DailyCapReached);
        }
        Ok(())
    }

    /// Headroom 0–1: the tighter of concurrent and daily room left.
    pub fn headroom(&self, open: u32, used_today: u32) -> f64 {
        let conc = 1.0 - open as f64 / self.max_concurrent as f64;
        let daily = 1.0 - used_today as f64 / self.daily_cap as f64;
        conc.min(daily).clamp(0.0, 1.0)
    }

    /// The instant the broker's local `day` ends (its next local midnight, or the first instant
    /// after it where a time-zone change skips midnight).
    pub fn day_end(&self, day: NaiveDate) -> DateTime<Utc> {
        let next = day.succ_opt().unwrap_or(NaiveDate::MAX);
        let mut local = next.and_time(NaiveTime::MIN);
        for _ in 0..48 {
            if let Some(t) = self.tz.from_local_datetime(&local).earliest() {
                return t.with_timezone(&Utc);
            }
            local += chrono::Duration::minutes(30);
        }
        local.and_utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn example() -> Broker {
        serde_json::from_str(r#"{"id":"broker-ca-1","name":"Ana Ruiz","specialties":[{"type":"AUTO","proficiency":5},{"type":"HOME","proficiency":3}],"licenses":[{"state":"CA","lines":["AUTO","HOME"],"expiresOn":"2028-06-30"}],"capacity":{"maxConcurrent":20,"dailyCap":60},"sla":{"firstContactMinutes":30,"acceptTimeoutSeconds":120},"schedule":{"timezone":"America/Los_Angeles","hours":{"mon":["08:00","18:00"]}},"status":"available","weight":1.0,"costPerLead":12.5,"group":"west"}"#).unwrap()
    }

    fn lead(state: &str, lines: &[InsuranceLine]) -> LeadFeatures {
        LeadFeatures {
            lines: LineSet::of(lines),
            required: LineSet::default(),
            urgency: crate::Urgency::Medium,
            state: state.into(),
            state_code: StateCode::of(state),
            value: 100.0,
            complexity: 5,
            ..LeadFeatures::default()
        }
    }

    #[test]
    fn example_broker_validates_and_compiles() {
        let b = example();
        b.validate().unwrap();
        let p = b.profile();
        assert_eq!(p.proficiency[InsuranceLine::Auto.index()], 5);
        assert!((p.specialty_score(LineSet::of(&[InsuranceLine::Auto, InsuranceLine::Home])) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn hours_follow_the_broker_time_zone() {
        let p = example().profile();
        // Monday 2026-11-23 16:00 UTC is 08:00 in Los Angeles (PST, UTC-8).
        assert!(p.is_working(Utc.with_ymd_and_hms(2026, 11, 23, 16, 0, 0).unwrap()));
        assert!(!p.is_working(Utc.with_ymd_and_hms(2026, 11, 23, 15, 59, 0).unwrap()));
        // 18:00 local is the exclusive end.
        assert!(!p.is_working(Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap()));
        // Tuesday is not scheduled.
        assert!(!p.is_working(Utc.with_ymd_and_hms(2026, 11, 24, 18, 0, 0).unwrap()));
    }

    #[test]
    fn a_shared_local_clock_gives_each_zone_its_own_local_time() {
        // Brokers in ten zones scanned with one clock, at instants every 37 minutes across the
        // end of US daylight saving time (2026-11-01): each answer matches a conversion of its own.
        let zones = ["America/Los_Angeles", "America/New_York", "UTC", "Asia/Kolkata"];
        // More zones than the clock keeps, so the ones past its slots are checked too.
        let extra = ["Europe/Berlin", "Asia/Tokyo", "Australia/Adelaide", "America/Sao_Paulo", "Pacific/Auckland", "Africa/Nairobi"];
        assert!(zones.len() + extra.len() > LocalClock::ZONES);
        let profiles: Vec<BrokerProfile> = zones
            .iter()
            .chain(&extra)
            .map(|z| {
                let mut b = example();
                let s = b.schedule.as_mut().unwrap();
                s.timezone = (*z).into();
                for d in ["tue", "wed", "thu", "fri", "sun"] {
                    s.hours.insert(d.into(), ["08:30".into(), "17:00".into()]);
                }
                b.profile()
            })
            .collect();
        let mut clock = LocalClock::default();
        let start = Utc.with_ymd_and_hms(2026, 10, 28, 0, 0, 0).unwrap();
        let (mut working, mut off) = (0, 0);
        for step in 0..(8 * 24 * 60 / 37) {
            let now = start + chrono::Duration::minutes(37 * step);
            for p in &profiles {
                let local = now.with_timezone(&p.tz);
                let minute = local.hour() * 60 + local.minute();
                let day = p.hours.unwrap()[local.weekday().num_days_from_monday() as usize];
                let expected = day.is_some_and(|(from, to)| minute >= u32::from(from) && minute < u32::from(to));
                assert_eq!(p.is_working_at(now, &mut clock), expected, "{} at {now}", p.tz);
                assert_eq!(p.is_working(now), expected);
                if expected {
                    working += 1;
                } else {
                    off += 1;
                }
            }
            assert_eq!(clock.utc_day(now), now.date_naive());
        }
        assert!(working > 100 && off > 100, "{working} working, {off} off");
    }

    #[test]
    fn the_clock_notices_an_offset_that_is_not_whole_minutes() {
        let mut p = example().profile();
        let mut clock = LocalClock::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 30).unwrap();
        p.is_working_at(now, &mut clock);
        assert!(clock.whole_minutes());
        // Liberia kept UTC-0:44:30 until 1972.
        p.tz = "Africa/Monrovia".parse().unwrap();
        let then = Utc.with_ymd_and_hms(1970, 6, 1, 12, 0, 0).unwrap();
        p.is_working_at(then, &mut clock);
        assert!(!clock.whole_minutes());
        // A new instant starts over.
        p.is_working_at(now, &mut clock);
        assert!(clock.whole_minutes());
    }

    #[test]
    fn specialty_is_the_mean_proficiency_over_the_lead_lines() {
        let p = example().profile();
        assert_eq!(p.specialty_score(LineSet::default()), 0.0);
        assert!((p.specialty_score(LineSet::of(&[InsuranceLine::Auto])) - 1.0).abs() < 1e-12);
        assert!((p.specialty_score(LineSet::of(&[InsuranceLine::Home, InsuranceLine::Umbrella])) - 0.3).abs() < 1e-12);
        let all = LineSet::of(&InsuranceLine::ALL);
        assert!((p.specialty_score(all) - 8.0 / 35.0).abs() < 1e-12);
        // A bit that names no line (a set read from elsewhere) is ignored, as `lines()` does.
        assert_eq!(p.specialty_score(LineSet(all.0 | 0x80)), p.specialty_score(all));
    }

    #[test]
    fn licence_checks_distinguish_missing_and_expired() {
        let mut b = example();
        b.schedule = None;
        let p = b.profile();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0).unwrap();
        assert_eq!(p.static_eligibility(&lead("CA", &[InsuranceLine::Auto]), now), Ok(()));
        assert_eq!(p.static_eligibility(&lead("NV", &[InsuranceLine::Auto]), now), Err(Exclusion::NotLicensed));
        assert_eq!(p.static_eligibility(&lead("CA", &[InsuranceLine::Life]), now), Err(Exclusion::NotLicensed));
        let later = Utc.with_ymd_and_hms(2028, 7, 1, 0, 0, 0).unwrap();
        assert_eq!(p.static_eligibility(&lead("CA", &[InsuranceLine::Auto]), later), Err(Exclusion::LicenseExpired));
    }

    #[test]
    fn out_of_office_ends_after_the_date() {
        let mut b = example();
        b.schedule = None;
        b.status = BrokerStatus::OutOfOffice;
        b.out_of_office_until = Some(NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        b.validate().unwrap();
        let p = b.profile();
        assert!(!p.is_available(Utc.with_ymd_and_hms(2026, 11, 25, 23, 0, 0).unwrap()));
        assert!(p.is_available(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()));
    }

    #[test]
    fn validation_names_fields() {
        let mut b = example();
        b.specialties[0].proficiency = 6;
        assert!(matches!(b.validate(), Err(ModelError::Invalid { field, .. }) if field == "specialties[0].proficiency"));
        let mut b = example();
        b.schedule.as_mut().unwrap().timezone = "Mars/Base".into();
        assert!(matches!(b.validate(), Err(ModelError::Invalid { field, .. }) if field == "schedule.timezone"));
        let mut b = example();
        b.capacity.max_concurrent = 0;
        assert!(matches!(b.validate(), Err(ModelError::Invalid { field, .. }) if field == "capacity.maxConcurrent"));
    }

    #[test]
    fn capacity_and_daily_cap() {
        let p = example().profile();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0).unwrap();
        assert_eq!(p.capacity_eligibility(19, 0), Ok(()));
        assert_eq!(p.capacity_eligibility(20, 0), Err(Exclusion::AtCapacity));
        assert_eq!(p.capacity_eligibility(0, 60), Err(Exclusion::DailyCapReached));
        assert_eq!(p.headroom(10, 30), 0.5);
        assert_eq!(p.headroom(5, 45), 0.25);
        // The broker is in Los Angeles: 2026-11-23 ends at 08:00 UTC the next morning.
        let today = p.local_day(now);
        assert_eq!(p.day_end(today), Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap());
        // A zone whose clocks skip midnight (Santiago, spring forward on 2026-09-06).
        let mut b = example();
        b.schedule.as_mut().unwrap().timezone = "America/Santiago".into();
        let p = b.profile();
        let end = p.day_end(NaiveDate::from_ymd_opt(2026, 9, 5).unwrap());
        assert_eq!(end.with_timezone(&p.tz).date_naive(), NaiveDate::from_ymd_opt(2026, 9, 6).unwrap());
        assert!(end > Utc.with_ymd_and_hms(2026, 9, 6, 3, 0, 0).unwrap());
    }
}
