//! Scenario files: the knobs of a simulated world (brokers, leads, hidden truth), read from
//! TOML and validated before anything runs. The four shipped scenarios are compiled in.

use std::path::Path;

use chrono::{DateTime, Utc};
use leadrouter_models::geo::is_us_state;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The scenarios shipped in `data/scenarios/`, by name.
pub const BUILT_IN: [(&str, &str); 7] = [
    ("balanced", include_str!("../../data/scenarios/balanced.toml")),
    ("capacity-starved", include_str!("../../data/scenarios/capacity-starved.toml")),
    ("many-small", include_str!("../../data/scenarios/many-small.toml")),
    ("one-dominant", include_str!("../../data/scenarios/one-dominant.toml")),
    ("slowdown", include_str!("../../data/scenarios/slowdown.toml")),
    ("demo", include_str!("../../data/scenarios/demo.toml")),
    ("niches", include_str!("../../data/scenarios/niches.toml")),
];

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// One sentence on what the scenario tests.
    pub description: String,
    /// Simulated days during which leads arrive (the run goes on until every lead has ended).
    pub days: u32,
    /// Seeds run per strategy (intervals need at least 2).
    pub seeds: u32,
    /// First seed; the others follow it.
    pub seed: u64,
    /// When simulated time starts; absent: so that the run ends before today (UTC midnight,
    /// `days` + 5 days ago), which history written for serving needs.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// Mean leads per day.
    pub leads_per_day: f64,
    /// States leads come from; brokers are licensed in some of them.
    pub states: Vec<String>,
    /// Hours a queued lead waits before it expires.
    pub queue_expiry_hours: u32,
    /// The brokers.
    pub brokers: BrokerMix,
    /// The leads.
    pub leads: LeadMix,
    /// The text channel: niches in brokers' bios and leads' notes (none: no text at all).
    #[serde(default)]
    pub text: Option<super::text::TextMix>,
}

/// How brokers are generated.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerMix {
    /// How many.
    pub count: u32,
    /// Group names, assigned in turn (fairness is reported per group).
    pub groups: Vec<String>,
    /// Take the brokers' configuration from the demo brokers (`data/brokers.json`, the first
    /// `count`) instead of generating it; only their hidden truth is drawn. Their SLA and
    /// capacity stay as configured, so `max_concurrent`, `daily_cap`, `states`, `lines`,
    /// `sla_minutes` and `schedule_share` are not used.
    #[serde(default)]
    pub from_demo: bool,
    /// Range of `capacity.maxConcurrent`.
    pub max_concurrent: [u32; 2],
    /// Range of `capacity.dailyCap`.
    pub daily_cap: [u32; 2],
    /// Range of the number of states a broker is licensed in.
    pub states: [u32; 2],
    /// Range of the number of lines a broker is licensed for.
    pub lines: [u32; 2],
    /// Standard deviation of the hidden skill per line (log-odds).
    pub skill_spread: f64,
    /// Standard deviation of the hidden affinity per state (log-odds).
    pub state_spread: f64,
    /// Standard deviation of how much a broker gains (or loses) on complex leads (log-odds).
    pub expertise_spread: f64,
    /// Standard deviation of how much a broker gains (or loses) on high-value leads (log-odds).
    pub value_spread: f64,
    /// Standard deviation of the noise between hidden skill and configured proficiency.
    pub specialty_noise: f64,
    /// Range of the probability that a broker accepts a lead offered to it.
    pub accept_rate: [f64; 2],
    /// Range of a broker's mean minutes from assignment to first contact.
    pub contact_minutes: [f64; 2],
    /// Configured first-contact target in minutes (urgent leads get half).
    pub sla_minutes: u32,
    /// Share of brokers who work weekdays 08:00–18:00 local time; the rest work around the clock.
    pub schedule_share: f64,
    /// One broker holding a large share of all capacity.
    #[serde(default)]
    pub dominant: Option<Dominant>,
    /// Some brokers turn slow to first contact part-way through the run.
    #[serde(default)]
    pub slowdown: Option<Slowdown>,
}

/// Brokers whose first contacts slow down mid-run (what adaptive throttling is for).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slowdown {
    /// Share of the brokers that slow down, spread evenly over them (0–1).
    pub share: f64,
    /// Day of the run (0 is the first) from which their leads are contacted later.
    pub from_day: u32,
    /// Factor on their mean minutes to first contact from then on (at least 1).
    pub factor: f64,
}

impl Slowdown {
    /// Whether broker `i` is one of those that slow down: spread evenly, `share` of them.
    pub fn slows(&self, i: usize) -> bool {
        ((i as f64 + 1.0) * self.share).floor() > (i as f64 * self.share).floor()
    }
}

/// The dominant broker of a scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dominant {
    /// Share of all concurrent capacity it holds (0–1, exclusive).
    pub capacity_share: f64,
    /// Its skill offset on every line (log-odds).
    pub skill: f64,
    /// Its group (the others take `groups` in turn).
    pub group: String,
}

/// How leads are generated.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadMix {
    /// Shares of urgency LOW, MEDIUM, HIGH, CRITICAL (sum 1).
    pub urgency: [f64; 4],
    /// Median estimated value.
    pub value_median: f64,
    /// Log-normal sigma of the value.
    pub value_sigma: f64,
    /// Share of leads asking for a second line.
    pub second_line: f64,
    /// Log-odds of conversion for an average broker on an average lead.
    pub base_logit: f64,
    /// Range of hours from first contact to the outcome.
    pub work_hours: [f64; 2],
    /// Minutes of delay to first contact after which the chance of conversion halves, per
    /// urgency LOW, MEDIUM, HIGH, CRITICAL.
    pub patience_minutes: [f64; 4],
}

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::Simulation(format!("scenario {field}: {}", reason.into()))
}

fn range_u(field: &str, r: [u32; 2], min: u32) -> Result<()> {
    if r[0] < min || r[0] > r[1] {
        return Err(bad(field, format!("must be [low, high] with {min} <= low <= high")));
    }
    Ok(())
}

fn range_f(field: &str, r: [f64; 2], min: f64, max: f64) -> Result<()> {
    if !(r[0].is_finite() && r[1].is_finite() && min <= r[0] && r[0] <= r[1] && r[1] <= max) {
        return Err(bad(field, format!("must be [low, high] with {min} <= low <= high <= {max}")));
    }
    Ok(())
}

fn non_negative(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(bad(field, "must be a number >= 0"));
    }
    Ok(())
}

impl Scenario {
    /// When simulated time starts: as given, or `days` + 5 days before today's UTC midnight.
    pub fn start(&self) -> DateTime<Utc> {
        self.start.unwrap_or_else(|| {
            let today = Utc::now().date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
            today - chrono::Duration::days(self.days as i64 + 5)
        })
    }

    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            return Err(Error::Simulation(format!(
                "no scenario '{name_or_path}': name one of {} or give a path to a TOML file",
                names.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text).map_err(|e| Error::Simulation(format!("{}: {e}", path.display())))
    }

    /// Parses and validates TOML.
    pub fn parse(text: &str) -> Result<Self> {
        let s: Self = toml::from_str(text).map_err(|e| Error::Simulation(format!("scenario: {}", e.message())))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every knob; errors name it.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        if let Some(t) = &self.text {
            t.validate().map_err(|e| Error::Simulation(format!("scenario: {e}")))?;
        }
        if !(1..=365).contains(&self.days) {
            return Err(bad("days", "must be between 1 and 365"));
        }
        if !(1..=1000).contains(&self.seeds) {
            return Err(bad("seeds", "must be between 1 and 1000"));
        }
        if !(self.leads_per_day.is_finite() && self.leads_per_day > 0.0 && self.leads_per_day <= 100_000.0) {
            return Err(bad("leads_per_day", "must be above 0 and at most 100000"));
        }
        if self.states.is_empty() {
            return Err(bad("states", "must name at least one state"));
        }
        if let Some(s) = self.states.iter().find(|s| !is_us_state(s)) {
            return Err(bad("states", format!("'{s}' is not a US postal state code")));
        }
        if self.queue_expiry_hours == 0 {
            return Err(bad("queue_expiry_hours", "must be at least 1"));
        }
        let b = &self.brokers;
        if !(1..=1000).contains(&b.count) {
            return Err(bad("brokers.count", "must be between 1 and 1000"));
        }
        if b.groups.is_empty() || b.groups.iter().any(|g| g.trim().is_empty()) {
            return Err(bad("brokers.groups", "must name at least one group, none empty"));
        }
        range_u("brokers.max_concurrent", b.max_concurrent, 1)?;
        range_u("brokers.daily_cap", b.daily_cap, 1)?;
        range_u("brokers.states", b.states, 1)?;
        if b.states[1] as usize > self.states.len() {
            return Err(bad("brokers.states", "cannot exceed the number of scenario states"));
        }
        range_u("brokers.lines", b.lines, 1)?;
        if b.lines[1] > 7 {
            return Err(bad("brokers.lines", "there are only 7 lines"));
        }
        for (f, v) in [
            ("brokers.skill_spread", b.skill_spread),
            ("brokers.state_spread", b.state_spread),
            ("brokers.expertise_spread", b.expertise_spread),
            ("brokers.value_spread", b.value_spread),
            ("brokers.specialty_noise", b.specialty_noise),
        ] {
            non_negative(f, v)?;
        }
        range_f("brokers.accept_rate", b.accept_rate, 0.01, 1.0)?;
        range_f("brokers.contact_minutes", b.contact_minutes, 1.0, 10_000.0)?;
        if b.sla_minutes == 0 {
            return Err(bad("brokers.sla_minutes", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&b.schedule_share) {
            return Err(bad("brokers.schedule_share", "must be between 0 and 1"));
        }
        if b.from_demo {
            if b.count as usize > crate::server::demo_brokers()?.len() {
                return Err(bad("brokers.count", "is more than the demo brokers"));
            }
            if b.dominant.is_some() {
                return Err(bad("brokers.dominant", "cannot be combined with from_demo"));
            }
        }
        if let Some(d) = &b.dominant {
            if !(d.capacity_share > 0.0 && d.capacity_share < 1.0) {
                return Err(bad("brokers.dominant.capacity_share", "must be between 0 and 1, exclusive"));
            }
            if d.group.trim().is_empty() {
                return Err(bad("brokers.dominant.group", "must not be empty"));
            }
            if !d.skill.is_finite() {
                return Err(bad("brokers.dominant.skill", "must be a number"));
            }
            if b.count < 2 {
                return Err(bad("brokers.count", "a dominant broker needs at least one other broker"));
            }
        }
        if let Some(d) = &b.slowdown {
            if !(0.0..=1.0).contains(&d.share) {
                return Err(bad("brokers.slowdown.share", "must be between 0 and 1"));
            }
            if d.from_day >= self.days {
                return Err(bad("brokers.slowdown.from_day", "must be a day of the run (below days)"));
            }
            if !(d.factor.is_finite() && d.factor >= 1.0 && d.factor <= 100.0) {
                return Err(bad("brokers.slowdown.factor", "must be between 1 and 100"));
            }
        }
        let l = &self.leads;
        if l.urgency.iter().any(|u| !u.is_finite() || *u < 0.0) || (l.urgency.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return Err(bad("leads.urgency", "must be four shares >= 0 that sum to 1"));
        }
        if !(l.value_median.is_finite() && l.value_median > 0.0) {
            return Err(bad("leads.value_median", "must be above 0"));
        }
        non_negative("leads.value_sigma", l.value_sigma)?;
        if !(0.0..=1.0).contains(&l.second_line) {
            return Err(bad("leads.second_line", "must be between 0 and 1"));
        }
        if !l.base_logit.is_finite() {
            return Err(bad("leads.base_logit", "must be a number"));
        }
        range_f("leads.work_hours", l.work_hours, 0.1, 24.0 * 60.0)?;
        if l.patience_minutes.iter().any(|p| !p.is_finite() || *p <= 0.0) {
            return Err(bad("leads.patience_minutes", "must be four numbers above 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_parse_and_validate() {
        for (name, text) in BUILT_IN {
            let s = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, name);
            assert!(s.seeds >= 2, "{name}: intervals need two seeds");
        }
    }

    #[test]
    fn errors_name_the_knob() {
        let text = BUILT_IN[0].1;
        let err = |from: &str, to: &str| Scenario::parse(&text.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(err("count = 40", "count = 0").contains("brokers.count"), "{}", err("count = 40", "count = 0"));
        assert!(err("states = [\"CA\"", "states = [\"ZZ\"").contains("'ZZ'"));
        assert!(err("days = 14", "days = 14\ncolour = 1").contains("colour"));
        assert!(Scenario::load("no-such-scenario").unwrap_err().to_string().contains("balanced"));
    }
}
