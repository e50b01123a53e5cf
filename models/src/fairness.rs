//! Fairness bounds enforced with dual prices.
//!
//! A **subject** is a broker group (the broker's `group`) or a single broker named in the
//! settings. Each may have bounds on its share of the leads and of the expected value
//! (P(convert) × value per conversion, from the decision's breakdown) routed over a rolling
//! window. The window is exponential: every record weighs `e^(−age / window_hours)`, so the
//! shares need no list of past decisions and come out the same on replay.
//!
//! Each bound has a **dual price**, moved by projected subgradient steps after every decision
//! (Lagrangian relaxation of the share constraint): the lower bound's price rises by
//! `price_step × (min − share)` and falls back towards 0 once the share is above it; the upper
//! bound's price likewise with `share − max`. Prices stay in `[0, price_cap]`. A candidate's
//! **adjustment** is the sum, over its subjects, of lower prices minus upper prices (plus the
//! ramp-up bonus below), in units of the best candidate's score: the scored strategies add
//! `adjustment × |best score|` to its score (and the pre-ranks to their cheap keys), so a group
//! below its minimum is lifted and one above its maximum held back until the bounds hold. No
//! price can make an ineligible broker eligible: prices only reorder the brokers that passed the
//! hard constraints (licence, hours, capacity).
//!
//! **Ramp-up**: a broker first seen less than `ramp_up_days` ago, with fewer than
//! `ramp_up_min_leads_per_day` leads so far on the current UTC day, gets `ramp_up_bonus` added
//! to its adjustment until it has them.
//!
//! Prices act only after `warmup_leads` (decayed) leads are in the window, so the first few
//! decisions of a new engine do not swing them. They aim `margin` (0.01) inside each bound: a
//! share held at its target wavers around it, and the target is kept off the bound itself.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Bounds of one subject's shares, each from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Least share of the leads (0: none).
    #[serde(default)]
    pub min_lead_share: f64,
    /// Greatest share of the leads (1: none).
    #[serde(default = "one")]
    pub max_lead_share: f64,
    /// Least share of the expected value (0: none).
    #[serde(default)]
    pub min_value_share: f64,
    /// Greatest share of the expected value (1: none).
    #[serde(default = "one")]
    pub max_value_share: f64,
}

fn one() -> f64 {
    1.0
}

fn default_margin() -> f64 {
    0.01
}

impl Default for Bounds {
    fn default() -> Self {
        Self { min_lead_share: 0.0, max_lead_share: 1.0, min_value_share: 0.0, max_value_share: 1.0 }
    }
}

impl Bounds {
    fn validate(&self, field: &str) -> Result<()> {
        let all = [
            ("min_lead_share", self.min_lead_share),
            ("max_lead_share", self.max_lead_share),
            ("min_value_share", self.min_value_share),
            ("max_value_share", self.max_value_share),
        ];
        for (name, v) in all {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(ModelError::invalid(format!("{field}.{name}"), "must be a number from 0 to 1"));
            }
        }
        if self.min_lead_share > self.max_lead_share {
            return Err(ModelError::invalid(format!("{field}.min_lead_share"), "must not exceed max_lead_share"));
        }
        if self.min_value_share > self.max_value_share {
            return Err(ModelError::invalid(format!("{field}.min_value_share"), "must not exceed max_value_share"));
        }
        Ok(())
    }
}

/// Fairness settings (`routing.fairness`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessSettings {
    /// Time constant of the rolling window, in hours.
    pub window_hours: f64,
    /// How far one decision moves a price per unit of share outside its bound.
    pub price_step: f64,
    /// Largest price, in units of the best candidate's score.
    pub price_cap: f64,
    /// Decayed leads in the window before prices move.
    pub warmup_leads: f64,
    /// How far inside each bound the prices aim (share points): a share held at its target
    /// wavers around it, so the target sits this far inside the bound.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Days after a broker is first seen during which the ramp-up minimum applies (0: off).
    pub ramp_up_days: u32,
    /// Leads per UTC day a ramping-up broker is lifted towards.
    pub ramp_up_min_leads_per_day: u32,
    /// What the ramp-up lift adds to the adjustment.
    pub ramp_up_bonus: f64,
    /// Bounds per broker group.
    #[serde(default)]
    pub groups: BTreeMap<String, Bounds>,
    /// Bounds per broker id.
    #[serde(default)]
    pub brokers: BTreeMap<String, Bounds>,
}

impl Default for FairnessSettings {
    fn default() -> Self {
        Self {
            window_hours: 24.0,
            price_step: 0.5,
            price_cap: 1.0,
            warmup_leads: 20.0,
            margin: default_margin(),
            ramp_up_days: 0,
            ramp_up_min_leads_per_day: 0,
            ramp_up_bonus: 0.5,
            groups: BTreeMap::new(),
            brokers: BTreeMap::new(),
        }
    }
}

impl FairnessSettings {
    /// Whether anything is to be enforced: some bounds, or a ramp-up minimum.
    pub fn active(&self) -> bool {
        !self.groups.is_empty() || !self.brokers.is_empty() || (self.ramp_up_days > 0 && self.ramp_up_min_leads_per_day > 0)
    }

    /// Every number in range, the minimums attainable together; `field` prefixes error paths.
    pub fn validate(&self, field: &str) -> Result<()> {
        let checks = [
            ("window_hours", self.window_hours, 0.01, 24.0 * 366.0),
            ("price_step", self.price_step, 0.0, 100.0),
            ("price_cap", self.price_cap, 0.0, 100.0),
            ("warmup_leads", self.warmup_leads, 0.0, 1e9),
            ("margin", self.margin, 0.0, 0.2),
            ("ramp_up_bonus", self.ramp_up_bonus, 0.0, 100.0),
        ];
        for (name, v, lo, hi) in checks {
            if !v.is_finite() || v < lo || v > hi {
                return Err(ModelError::invalid(format!("{field}.{name}"), format!("must be a number from {lo} to {hi}")));
            }
        }
        for (name, b) in &self.groups {
            b.validate(&format!("{field}.groups.{name}"))?;
        }
        for (id, b) in &self.brokers {
            b.validate(&format!("{field}.brokers.{id}"))?;
        }
        let (leads, value): (f64, f64) = self.groups.values().fold((0.0, 0.0), |(l, v), b| (l + b.min_lead_share, v + b.min_value_share));
        if leads > 1.0 + 1e-9 {
            return Err(ModelError::invalid(format!("{field}.groups"), "the groups' min_lead_share add up to more than 1"));
        }
        if value > 1.0 + 1e-9 {
            return Err(ModelError::invalid(format!("{field}.groups"), "the groups' min_value_share add up to more than 1"));
        }
        Ok(())
    }
}

/// Decayed totals and prices of one subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Decayed leads routed to it.
    pub leads: f64,
    /// Decayed expected value routed to it.
    pub value: f64,
    /// Prices of the lower and upper lead-share bounds, then the value-share bounds.
    pub prices: [f64; 4],
    /// Leads ever routed to it.
    pub count: u64,
}

impl Tally {
    /// Lower prices minus upper prices.
    pub fn price(&self) -> f64 {
        self.prices[0] - self.prices[1] + self.prices[2] - self.prices[3]
    }
}

/// What the window knows of one broker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    /// Its group.
    pub group: Option<String>,
    /// When it was first seen.
    pub first_seen: Option<DateTime<Utc>>,
    /// The UTC day of `today`.
    pub day: Option<NaiveDate>,
    /// Leads routed to it on `day`.
    pub today: u32,
}

/// The rolling window of routed leads per subject and the dual prices; updated with every
/// committed decision (live and on replay, through the same calls).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Time of the last decision counted.
    pub last: Option<DateTime<Utc>>,
    /// Decayed leads.
    pub leads: f64,
    /// Decayed expected value.
    pub value: f64,
    /// Per subject: `group:NAME` or `broker:ID`.
    pub subjects: BTreeMap<String, Tally>,
    /// Brokers: group, first sight, today's leads.
    pub brokers: HashMap<String, Seen>,
}

/// The key of a group subject.
pub fn group_key(name: &str) -> String {
    format!("group:{name}")
}

/// The key of a broker subject.
pub fn broker_key(id: &str) -> String {
    format!("broker:{id}")
}

/// One subject's standing, for reports.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// `group` or `broker`.
    pub kind: &'static str,
    /// Group name or broker id.
    pub name: String,
    /// Share of the window's leads.
    pub lead_share: f64,
    /// Share of the window's expected value.
    pub value_share: f64,
    /// Leads ever routed to it.
    pub leads: u64,
    /// Its bounds, when configured.
    pub bounds: Option<Bounds>,
    /// Its current price (positive: lifted; negative: held back).
    pub price: f64,
    /// Both shares inside the bounds (true when unbounded).
    pub within: bool,
}

impl Window {
    /// A broker was created or changed: remember its group and when it was first seen.
    pub fn broker_seen(&mut self, id: &str, group: Option<&str>, at: DateTime<Utc>) {
        let s = self.brokers.entry(id.to_string()).or_default();
        s.group = group.map(str::to_string);
        s.first_seen.get_or_insert(at);
    }

    /// A broker was deleted.
    pub fn broker_gone(&mut self, id: &str) {
        self.brokers.remove(id);
    }

    /// A decision gave a lead of expected value `value` to `broker_id` at `at`: decays the
    /// window, counts it, and moves the bounded subjects' prices.
    pub fn record(&mut self, s: &FairnessSettings, at: DateTime<Utc>, broker_id: &str, value: f64) {
        let value = if value.is_finite() { value.max(0.0) } else { 0.0 };
        if let Some(last) = self.last {
            let age_h = (at - last).num_milliseconds().max(0) as f64 / 3_600_000.0;
            if age_h > 0.0 {
                let d = (-age_h / s.window_hours).exp();
                self.leads *= d;
                self.value *= d;
                for t in self.subjects.values_mut() {
                    t.leads *= d;
                    t.value *= d;
                }
            }
        }
        if self.last.is_none_or(|l| at > l) {
            self.last = Some(at);
        }
        self.leads += 1.0;
        self.value += value;
        let seen = self.brokers.entry(broker_id.to_string()).or_default();
        let day = at.date_naive();
        if seen.day != Some(day) {
            seen.day = Some(day);
            seen.today = 0;
        }
        seen.today += 1;
        let mut keys = Vec::with_capacity(2);
        if let Some(g) = &seen.group {
            keys.push(group_key(g));
        }
        if s.brokers.contains_key(broker_id) {
            keys.push(broker_key(broker_id));
        }
        for k in keys {
            let t = self.subjects.entry(k).or_default();
            t.leads += 1.0;
            t.value += value;
            t.count += 1;
        }
        // Every bounded subject gets a tally, so one never routed to is lifted too.
        for g in s.groups.keys() {
            self.subjects.entry(group_key(g)).or_default();
        }
        for b in s.brokers.keys() {
            self.subjects.entry(broker_key(b)).or_default();
        }
        if self.leads < s.warmup_leads {
            return;
        }
        let (total_l, total_v) = (self.leads, self.value);
        for (key, t) in self.subjects.iter_mut() {
            let Some(b) = bounds_of(s, key) else {
                t.prices = [0.0; 4];
                continue;
            };
            let ls = t.leads / total_l;
            let vs = if total_v > 0.0 { t.value / total_v } else { ls };
            let step = |p: f64, gap: f64| (p + s.price_step * gap).clamp(0.0, s.price_cap);
            // Bounds at 0 and 1 bind nothing and aim at nothing.
            let low = |b: f64| if b > 0.0 { b + s.margin } else { 0.0 };
            let high = |b: f64| if b < 1.0 { b - s.margin } else { 1.0 };
            t.prices[0] = step(t.prices[0], low(b.min_lead_share) - ls);
            t.prices[1] = step(t.prices[1], ls - high(b.max_lead_share));
            t.prices[2] = step(t.prices[2], low(b.min_value_share) - vs);
            t.prices[3] = step(t.prices[3], vs - high(b.max_value_share));
        }
    }

    /// The adjustment of broker `id` at `now`, in units of the best candidate's score: its
    /// subjects' prices and the ramp-up bonus.
    pub fn adjustment(&self, s: &FairnessSettings, id: &str, group: Option<&str>, now: DateTime<Utc>) -> f64 {
        let mut a = 0.0;
        if let Some(g) = group {
            if s.groups.contains_key(g) {
                a += self.subjects.get(&group_key(g)).map_or(0.0, Tally::price);
            }
        }
        if s.brokers.contains_key(id) {
            a += self.subjects.get(&broker_key(id)).map_or(0.0, Tally::price);
        }
        if s.ramp_up_days > 0 && s.ramp_up_min_leads_per_day > 0 {
            let seen = self.brokers.get(id);
            let first = seen.and_then(|b| b.first_seen).unwrap_or(now);
            let ramping = now - first < chrono::Duration::days(i64::from(s.ramp_up_days));
            let today = seen.filter(|b| b.day == Some(now.date_naive())).map_or(0, |b| b.today);
            if ramping && today < s.ramp_up_min_leads_per_day {
                a += s.ramp_up_bonus;
            }
        }
        a
    }

    /// Every subject's standing: the groups seen and every bounded subject.
    pub fn standings(&self, s: &FairnessSettings) -> Vec<Standing> {
        self.subjects
            .iter()
            .map(|(key, t)| {
                let (kind, name) = key.split_once(':').unwrap_or(("group", key));
                let lead_share = if self.leads > 0.0 { t.leads / self.leads } else { 0.0 };
                let value_share = if self.value > 0.0 { t.value / self.value } else { 0.0 };
                let bounds = bounds_of(s, key).copied();
                let within = bounds.is_none_or(|b| {
                    let eps = 1e-9;
                    lead_share + eps >= b.min_lead_share
                        && lead_share <= b.max_lead_share + eps
                        && value_share + eps >= b.min_value_share
                        && value_share <= b.max_value_share + eps
                });
                Standing {
                    kind: if kind == "broker" { "broker" } else { "group" },
                    name: name.to_string(),
                    lead_share,
                    value_share,
                    leads: t.count,
                    bounds,
                    price: if bounds.is_some() { t.price() } else { 0.0 },
                    within,
                }
            })
            .collect()
    }
}

fn bounds_of<'a>(s: &'a FairnessSettings, key: &str) -> Option<&'a Bounds> {
    match key.split_once(':') {
        Some(("group", g)) => s.groups.get(g),
        Some(("broker", b)) => s.brokers.get(b),
        _ => None,
    }
}

/// For strategies that do not rank by score (random, the round robins): the candidates whose
/// adjustment is in the highest tier (lifted above held back: the sign of the adjustment), as
/// indices into `adjustments`; every index when they all share a tier.
pub fn preferred(adjustments: &[f64]) -> Vec<usize> {
    let tier = |a: f64| {
        if a > 1e-9 {
            1
        } else if a < -1e-9 {
            -1
        } else {
            0
        }
    };
    let best = adjustments.iter().map(|&a| tier(a)).max().unwrap_or(0);
    (0..adjustments.len()).filter(|&i| tier(adjustments[i]) == best).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn settings() -> FairnessSettings {
        let mut s = FairnessSettings { warmup_leads: 5.0, ..Default::default() };
        s.groups.insert("big".into(), Bounds { max_lead_share: 0.6, ..Bounds::default() });
        s.groups.insert("small".into(), Bounds { min_lead_share: 0.3, ..Bounds::default() });
        s
    }

    #[test]
    fn a_group_above_its_maximum_is_held_back_and_one_below_its_minimum_lifted() {
        let s = settings();
        let mut w = Window::default();
        w.broker_seen("a", Some("big"), t(0));
        w.broker_seen("b", Some("small"), t(0));
        for i in 0..30 {
            w.record(&s, t(i), "a", 100.0);
        }
        assert!(w.adjustment(&s, "a", Some("big"), t(30)) < 0.0);
        assert!(w.adjustment(&s, "b", Some("small"), t(30)) > 0.0);
        let st = w.standings(&s);
        let big = st.iter().find(|x| x.name == "big").unwrap();
        assert!(!big.within && big.lead_share > 0.99);
        assert_eq!(big.leads, 30);
        let small = st.iter().find(|x| x.name == "small").unwrap();
        assert_eq!((small.leads, small.within), (0, false));
    }

    #[test]
    fn the_window_forgets_old_leads_at_its_time_constant() {
        let s = FairnessSettings { window_hours: 1.0, ..settings() };
        let mut w = Window::default();
        w.broker_seen("a", Some("big"), t(0));
        w.broker_seen("b", Some("small"), t(0));
        w.record(&s, t(0), "a", 0.0);
        w.record(&s, t(60), "b", 0.0);
        // a's lead is one time constant old: it weighs e^-1.
        let a = w.subjects[&group_key("big")].leads;
        assert!((a - (-1.0f64).exp()).abs() < 1e-12, "{a}");
        assert!((w.leads - (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn ramp_up_lifts_a_new_broker_until_it_has_its_daily_minimum() {
        let s = FairnessSettings { ramp_up_days: 7, ramp_up_min_leads_per_day: 2, ..Default::default() };
        let mut w = Window::default();
        w.broker_seen("new", None, t(0));
        assert_eq!(w.adjustment(&s, "new", None, t(1)), 0.5);
        w.record(&s, t(2), "new", 10.0);
        w.record(&s, t(3), "new", 10.0);
        assert_eq!(w.adjustment(&s, "new", None, t(4)), 0.0);
        // A new day starts at zero; after the ramp-up period no lift at all.
        assert_eq!(w.adjustment(&s, "new", None, t(24 * 60 + 1)), 0.5);
        assert_eq!(w.adjustment(&s, "new", None, t(8 * 24 * 60)), 0.0);
    }

    #[test]
    fn settings_name_the_key_at_fault() {
        let mut s = settings();
        s.groups.insert("x".into(), Bounds { min_lead_share: 0.8, max_lead_share: 0.5, ..Bounds::default() });
        let e = s.validate("routing.fairness").unwrap_err().to_string();
        assert!(e.contains("routing.fairness.groups.x.min_lead_share"), "{e}");
        let mut s = settings();
        s.groups.insert("y".into(), Bounds { min_lead_share: 0.8, ..Bounds::default() });
        let e = s.validate("routing.fairness").unwrap_err().to_string();
        assert!(e.contains("add up to more than 1"), "{e}");
    }

    #[test]
    fn preferred_keeps_the_highest_tier() {
        assert_eq!(preferred(&[0.0, 0.2, -0.1, 0.4]), vec![1, 3]);
        assert_eq!(preferred(&[-0.3, -0.1]), vec![0, 1]);
        assert_eq!(preferred(&[0.0, -0.1]), vec![0]);
    }

    proptest! {
        /// Whatever the sequence of decisions, shares stay in [0, 1], prices within their cap,
        /// and the group shares add up to at most 1.
        #[test]
        fn shares_and_prices_stay_in_range(picks in prop::collection::vec((0usize..3, 0i64..600, 0.0f64..1000.0), 1..200)) {
            let s = settings();
            let mut w = Window::default();
            let ids = ["a", "b", "c"];
            w.broker_seen("a", Some("big"), t(0));
            w.broker_seen("b", Some("small"), t(0));
            w.broker_seen("c", None, t(0));
            let mut now = 0;
            for (who, gap, v) in picks {
                now += gap;
                w.record(&s, t(now), ids[who], v);
            }
            let st = w.standings(&s);
            let sum: f64 = st.iter().map(|x| x.lead_share).sum();
            prop_assert!(sum <= 1.0 + 1e-9);
            for x in &st {
                prop_assert!((0.0..=1.0 + 1e-9).contains(&x.lead_share));
                prop_assert!((0.0..=1.0 + 1e-9).contains(&x.value_share));
            }
            for t in w.subjects.values() {
                for p in t.prices {
                    prop_assert!((0.0..=s.price_cap).contains(&p));
                }
            }
        }
    }
}
