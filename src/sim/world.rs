//! A generated world with a hidden ground truth: brokers (their configuration, which the engine
//! sees, and their true skill, speed and reliability, which it never sees) and the stream of
//! leads. Everything is drawn from one seed, so the same seed gives the same world and the same
//! leads to every strategy, and each lead's chance draws are tied to the lead, not to the order
//! in which things happen (common random numbers: strategies are compared on equal luck).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use leadrouter_models::rng::SplitMix64;
use leadrouter_models::{
    Broker, BrokerStatus, Capacity, DecideRequest, InsuranceLine, LeadData, License, Schedule, Sla, Specialty, Strategy, Urgency,
};

use super::scenario::Scenario;

/// Share of leads asking for each line (order of [`InsuranceLine::ALL`]).
pub const LINE_WEIGHTS: [f64; 7] = [0.32, 0.24, 0.10, 0.14, 0.10, 0.06, 0.04];

/// Seconds a generated broker has to accept a reservation (brokers answer well inside their
/// own timeout).
const ACCEPT_TIMEOUT_SECONDS: u32 = 300;

/// What the engine never sees about a broker.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    /// Log-odds added per line (order of [`InsuranceLine::ALL`]).
    pub skill: [f64; 7],
    /// Log-odds added per licensed state.
    pub affinity: BTreeMap<String, f64>,
    /// Log-odds gained per unit of lead complexity above 5 (÷ 2.5).
    pub expertise: f64,
    /// Log-odds gained per standard deviation of lead value.
    pub big_ticket: f64,
    /// Probability of accepting a lead offered.
    pub accept_rate: f64,
    /// Mean minutes from assignment to first contact.
    pub contact_minutes: f64,
    /// The niche the broker is strong in (the scenario's text channel).
    pub niche: Option<u8>,
}

/// A simulated broker.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBroker {
    /// What the engine is told.
    pub config: Broker,
    /// What only the simulation knows.
    pub truth: Truth,
}

/// A simulated lead.
#[derive(Clone, Debug, PartialEq)]
pub struct SimLead {
    /// Arrival time.
    pub at: DateTime<Utc>,
    /// The request as the platform would send it (strategy filled in per run).
    pub request: DecideRequest,
    /// Value in standard deviations from the median (log scale).
    pub value_z: f64,
    /// The lead's own random stream for every chance draw about it.
    pub noise: u64,
    /// The niche the lead needs (the scenario's text channel).
    pub niche: Option<u8>,
}

/// Draws about one lead, each from its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// Does the broker accept (per broker).
    Accept = 1,
    /// How long until the broker accepts (per broker).
    AcceptDelay = 2,
    /// How long until first contact (per broker).
    Contact = 3,
    /// How long the broker works the lead.
    Work = 4,
    /// Does the customer buy.
    Convert = 5,
}

/// The whole world of one seed.
#[derive(Clone, Debug)]
pub struct World {
    /// Brokers, in id order.
    pub brokers: Vec<SimBroker>,
    /// Leads, in arrival order.
    pub leads: Vec<SimLead>,
    /// Scenario it came from.
    pub scenario: Scenario,
}

/// A standard normal draw.
pub(crate) fn normal(r: &mut SplitMix64) -> f64 {
    // Box–Muller; 1 - u keeps the logarithm finite.
    let u1 = 1.0 - r.next_f64();
    let u2 = r.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uniform(r: &mut SplitMix64, range: [f64; 2]) -> f64 {
    range[0] + (range[1] - range[0]) * r.next_f64()
}

fn uniform_u(r: &mut SplitMix64, range: [u32; 2]) -> u32 {
    range[0] + r.below((range[1] - range[0] + 1) as usize) as u32
}

/// `k` distinct indices, more likely the heavier their weight (Efraimidis–Spirakis).
fn weighted_pick(r: &mut SplitMix64, weights: &[f64], k: usize) -> Vec<usize> {
    let mut keys: Vec<(f64, usize)> = weights.iter().enumerate().map(|(i, w)| (r.next_f64().max(1e-12).powf(1.0 / w), i)).collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0));
    keys.into_iter().take(k).map(|(_, i)| i).collect()
}

fn timezone_of(state: &str) -> &'static str {
    match state {
        "CA" | "WA" | "OR" | "NV" => "America/Los_Angeles",
        "TX" | "IL" | "MN" | "MO" | "WI" | "LA" => "America/Chicago",
        "CO" | "UT" | "NM" => "America/Denver",
        "AZ" => "America/Phoenix",
        _ => "America/New_York",
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Leads per hour relative to the daily mean: quiet at night, a peak in the US afternoon,
/// weekends at 60%.
fn arrival_shape(t: DateTime<Utc>) -> f64 {
    use chrono::Datelike;
    let eastern = (t.hour() as f64 + t.minute() as f64 / 60.0 - 5.0).rem_euclid(24.0);
    let day = 0.25 + 1.6 * (-((eastern - 14.0) / 4.0).powi(2)).exp();
    let weekend = if t.weekday().num_days_from_monday() >= 5 { 0.6 } else { 1.0 };
    day * weekend
}

/// The mean of [`arrival_shape`] over a week, so the mean rate is `leads_per_day`.
fn shape_mean(start: DateTime<Utc>) -> f64 {
    let steps = 7 * 24 * 12;
    (0..steps).map(|i| arrival_shape(start + Duration::minutes(5 * i))).sum::<f64>() / steps as f64
}

impl World {
    /// Generates the world of `seed`.
    pub fn generate(s: &Scenario, seed: u64) -> Self {
        // One start for the whole world, even when it is "relative to today".
        let mut s = s.clone();
        s.start = Some(s.start());
        let s = &s;
        let mut r = SplitMix64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
        let brokers = Self::brokers(s, &mut r);
        let leads = Self::leads(s, seed, &mut r);
        let mut w = Self { brokers, leads, scenario: s.clone() };
        if let Some(t) = &s.text {
            // Bios and notes that tell each broker's and lead's niche.
            let mut r = super::text::stream(seed);
            for b in &mut w.brokers {
                let (niche, bio) = super::text::broker(t, &mut r);
                (b.truth.niche, b.config.bio) = (niche, Some(bio));
            }
            for l in &mut w.leads {
                let (niche, notes) = super::text::lead(t, &mut r);
                (l.niche, l.request.lead_data.notes) = (niche, Some(notes));
            }
        }
        w
    }

    fn brokers(s: &Scenario, r: &mut SplitMix64) -> Vec<SimBroker> {
        let b = &s.brokers;
        if b.from_demo {
            // Validated against the demo brokers when the scenario was loaded.
            let demo = crate::server::demo_brokers().unwrap_or_default();
            return demo.into_iter().take(b.count as usize).map(|config| Self::demo_truth(config, s, r)).collect();
        }
        let expires = (s.start() + Duration::days(730)).date_naive();
        let n = b.count as usize;
        let dominant = b.dominant.as_ref();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let is_dominant = dominant.is_some() && i == 0;
            let (states, lines): (Vec<String>, Vec<InsuranceLine>) = if is_dominant {
                (s.states.clone(), InsuranceLine::ALL.to_vec())
            } else {
                let k = uniform_u(r, b.states) as usize;
                let st = weighted_pick(r, &vec![1.0; s.states.len()], k).into_iter().map(|j| s.states[j].clone()).collect();
                let k = uniform_u(r, b.lines) as usize;
                let mut li: Vec<usize> = weighted_pick(r, &LINE_WEIGHTS, k);
                li.sort_unstable();
                (st, li.into_iter().map(|j| InsuranceLine::ALL[j]).collect())
            };
            let mut skill = [0.0; 7];
            for v in &mut skill {
                *v = match dominant.filter(|_| is_dominant) {
                    Some(d) => d.skill + 0.3 * b.skill_spread * normal(r),
                    None => b.skill_spread * normal(r),
                };
            }
            let affinity = states.iter().map(|st| (st.clone(), b.state_spread * normal(r))).collect();
            let truth = Truth {
                skill,
                affinity,
                expertise: b.expertise_spread * normal(r),
                big_ticket: b.value_spread * normal(r),
                accept_rate: uniform(r, b.accept_rate),
                contact_minutes: uniform(r, b.contact_minutes),
                niche: None,
            };
            let specialties = lines
                .iter()
                .map(|l| {
                    let seen = truth.skill[l.index()] + b.specialty_noise * normal(r);
                    let scaled = if b.skill_spread > 0.0 { 3.0 + 1.2 * seen / b.skill_spread } else { 3.0 };
                    Specialty { line: *l, proficiency: scaled.round().clamp(1.0, 5.0) as u8 }
                })
                .collect();
            let schedule = (!is_dominant && r.next_f64() < b.schedule_share).then(|| Schedule {
                timezone: timezone_of(&states[0]).to_string(),
                hours: ["mon", "tue", "wed", "thu", "fri"]
                    .iter()
                    .map(|d| (d.to_string(), ["08:00".to_string(), "18:00".to_string()]))
                    .collect(),
            });
            let max_concurrent = uniform_u(r, b.max_concurrent);
            let daily_cap = uniform_u(r, b.daily_cap);
            let group = match dominant.filter(|_| is_dominant) {
                Some(d) => d.group.clone(),
                None => b.groups[(i - usize::from(dominant.is_some())) % b.groups.len()].clone(),
            };
            let config = Broker {
                id: format!("sim-broker-{i:04}"),
                name: if is_dominant { "Dominant agency".to_string() } else { format!("Simulated broker {i}") },
                specialties,
                licenses: states.iter().map(|st| License { state: st.clone(), lines: lines.clone(), expires_on: expires }).collect(),
                capacity: Capacity { max_concurrent, daily_cap },
                sla: Sla {
                    first_contact_minutes: b.sla_minutes,
                    urgent_first_contact_minutes: None,
                    accept_timeout_seconds: ACCEPT_TIMEOUT_SECONDS,
                },
                schedule,
                status: BrokerStatus::Available,
                out_of_office_until: None,
                weight: max_concurrent as f64,
                cost_per_lead: 0.0,
                group: Some(group),
                bio: None,
            };
            out.push(SimBroker { config, truth });
        }
        if let Some(d) = dominant {
            // The agency holds `capacity_share` of all seats and of all daily slots.
            let others = |f: fn(&Broker) -> u32| out[1..].iter().map(|b| f(&b.config) as f64).sum::<f64>();
            let scale = d.capacity_share / (1.0 - d.capacity_share);
            let seats = (others(|b| b.capacity.max_concurrent) * scale).round().max(1.0) as u32;
            let daily = (others(|b| b.capacity.daily_cap) * scale).round().max(1.0) as u32;
            let c = &mut out[0].config;
            c.capacity = Capacity { max_concurrent: seats, daily_cap: daily };
            c.weight = seats as f64;
        }
        out
    }

    /// A hidden truth for a configured broker: its skill follows its stated proficiency, with
    /// noise; lines it does not list are a little weaker than average.
    fn demo_truth(config: Broker, s: &Scenario, r: &mut SplitMix64) -> SimBroker {
        let b = &s.brokers;
        let mut skill = [0.0; 7];
        for (i, v) in skill.iter_mut().enumerate() {
            *v = match config.specialties.iter().find(|sp| sp.line.index() == i) {
                Some(sp) => (sp.proficiency as f64 - 3.0) * b.skill_spread / 1.2 + b.specialty_noise * normal(r),
                None => b.skill_spread * (normal(r) - 0.3),
            };
        }
        let truth = Truth {
            skill,
            affinity: config.licenses.iter().map(|l| (l.state.clone(), b.state_spread * normal(r))).collect(),
            expertise: b.expertise_spread * normal(r),
            big_ticket: b.value_spread * normal(r),
            accept_rate: uniform(r, b.accept_rate),
            contact_minutes: uniform(r, b.contact_minutes),
            niche: None,
        };
        SimBroker { config, truth }
    }

    fn leads(s: &Scenario, seed: u64, r: &mut SplitMix64) -> Vec<SimLead> {
        let l = &s.leads;
        let end = s.start() + Duration::days(s.days as i64);
        // Thinning: candidates at the peak rate, kept in proportion to the rate at their time.
        let mean = shape_mean(s.start());
        let peak = 2.0 / mean;
        let per_minute = s.leads_per_day / (24.0 * 60.0);
        let mut t = s.start();
        let mut out = Vec::new();
        loop {
            let gap = -(1.0 - r.next_f64()).ln() / (per_minute * peak);
            t += Duration::milliseconds((gap * 60_000.0).round() as i64);
            if t >= end {
                break;
            }
            if r.next_f64() * peak > arrival_shape(t) / mean {
                continue;
            }
            let first = weighted_pick(r, &LINE_WEIGHTS, 1)[0];
            let mut lines = vec![InsuranceLine::ALL[first]];
            if r.next_f64() < l.second_line {
                let mut w = LINE_WEIGHTS;
                w[first] = 1e-9;
                let second = weighted_pick(r, &w, 1)[0];
                lines.push(InsuranceLine::ALL[second]);
            }
            let u = r.next_f64();
            let mut acc = 0.0;
            let mut urgency = Urgency::Critical;
            for (share, level) in l.urgency.iter().zip([Urgency::Low, Urgency::Medium, Urgency::High, Urgency::Critical]) {
                acc += share;
                if u < acc {
                    urgency = level;
                    break;
                }
            }
            let value_z = normal(r);
            let value = (l.value_median * (l.value_sigma * value_z).exp() * 100.0).round() / 100.0;
            let complexity = (5.0 + 2.0 * normal(r)).round().clamp(1.0, 10.0) as i64;
            let state = s.states[r.below(s.states.len())].clone();
            let request = DecideRequest {
                lead_id: format!("sim-{seed}-{:06}", out.len()),
                lead_data: LeadData {
                    insurance_types: lines,
                    urgency,
                    state,
                    estimated_value: value,
                    complexity,
                    geographic_location: None,
                    personal_info: None,
                    coverage: None,
                    requirements: None,
                    notes: None,
                    customer_id: None,
                },
                exclude_brokers: Vec::new(),
                require_specialties: Vec::new(),
                strategy: Some(Strategy::Random),
                exploration: None,
            };
            out.push(SimLead {
                at: t,
                request,
                value_z: if l.value_sigma > 0.0 { value_z } else { 0.0 },
                noise: r.next_u64(),
                niche: None,
            });
        }
        out
    }

    /// The random stream about `lead` for `what`, with `broker` (or any broker).
    pub fn stream(lead: &SimLead, broker: Option<usize>, what: Draw) -> SplitMix64 {
        let b = broker.map_or(u64::MAX, |b| b as u64);
        let mut r = SplitMix64::new(lead.noise ^ (what as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        SplitMix64::new(r.next_u64() ^ b.wrapping_mul(0xA24B_AED4_963E_E407))
    }

    /// A uniform draw in [0, 1) about `lead` for `what`, with `broker` (or any broker).
    pub fn draw(lead: &SimLead, broker: Option<usize>, what: Draw) -> f64 {
        Self::stream(lead, broker, what).next_f64()
    }

    /// The true probability that `broker` converts `lead` when contact is immediate.
    pub fn p_convert(&self, lead: &SimLead, broker: usize) -> f64 {
        let t = &self.brokers[broker].truth;
        let d = &lead.request.lead_data;
        let skill = d.insurance_types.iter().map(|l| t.skill[l.index()]).sum::<f64>() / d.insurance_types.len() as f64;
        let affinity = t.affinity.get(&d.state).copied().unwrap_or(0.0);
        let logit = self.scenario.leads.base_logit
            + skill
            + affinity
            + t.expertise * (d.complexity as f64 - 5.0) / 2.5
            + t.big_ticket * lead.value_z
            + match (&self.scenario.text, lead.niche) {
                (Some(text), Some(n)) if t.niche == Some(n) => text.boost,
                _ => 0.0,
            };
        sigmoid(logit)
    }

    /// The factor by which a first contact `minutes` after assignment scales the chance.
    pub fn lateness(&self, lead: &SimLead, minutes: f64) -> f64 {
        let patience = self.scenario.leads.patience_minutes[lead.request.lead_data.urgency.rank() as usize];
        0.5f64.powf(minutes.max(0.0) / patience)
    }

    /// `broker`'s mean minutes to first contact for `lead`: its own, times the scenario's
    /// slowdown factor for a broker that slows down and a lead that arrives after it began.
    pub fn mean_contact_minutes(&self, lead: &SimLead, broker: usize) -> f64 {
        let base = self.brokers[broker].truth.contact_minutes;
        match &self.scenario.brokers.slowdown {
            Some(d) if d.slows(broker) && lead.at >= self.scenario.start() + Duration::days(i64::from(d.from_day)) => base * d.factor,
            _ => base,
        }
    }

    /// Minutes from assignment to first contact by `broker` (log-normal around its mean).
    pub fn contact_minutes(&self, lead: &SimLead, broker: usize) -> f64 {
        let mean = self.mean_contact_minutes(lead, broker);
        let sigma: f64 = 0.7;
        let z = normal(&mut Self::stream(lead, Some(broker), Draw::Contact));
        (mean.ln() - sigma * sigma / 2.0 + sigma * z).exp()
    }

    /// What the oracle expects from giving `lead` to `broker`: the true chance with the
    /// broker's typical delay to first contact.
    pub fn expected(&self, lead: &SimLead, broker: usize) -> f64 {
        self.p_convert(lead, broker) * self.lateness(lead, self.mean_contact_minutes(lead, broker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::{Scenario, BUILT_IN};

    fn balanced() -> Scenario {
        Scenario::parse(BUILT_IN[0].1).unwrap()
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let s = balanced();
        let (a, b, c) = (World::generate(&s, 1), World::generate(&s, 1), World::generate(&s, 2));
        assert_eq!(a.brokers, b.brokers);
        assert_eq!(a.leads, b.leads);
        assert_ne!(a.leads, c.leads);
        for br in &a.brokers {
            br.config.validate().unwrap();
        }
        for l in &a.leads {
            l.request.validate().unwrap();
        }
    }

    #[test]
    fn arrivals_follow_the_configured_rate() {
        let s = balanced();
        let w = World::generate(&s, 3);
        let per_day = w.leads.len() as f64 / s.days as f64;
        // Poisson: the count over 14 days has sd ≈ sqrt(2520) ≈ 50, i.e. 3.6 a day.
        assert!((per_day - s.leads_per_day).abs() < 15.0, "{per_day} leads a day");
        // Quiet nights: fewer leads between 03:00 and 09:00 UTC (22:00–04:00 Eastern) than
        // between 15:00 and 21:00 UTC.
        let count = |from: u32, to: u32| w.leads.iter().filter(|l| (from..to).contains(&l.at.hour())).count();
        assert!(count(3, 9) * 3 < count(15, 21), "{} vs {}", count(3, 9), count(15, 21));
    }

    #[test]
    fn specialties_reflect_hidden_skill() {
        let s = balanced();
        let w = World::generate(&s, 4);
        let (mut hi, mut lo) = (Vec::new(), Vec::new());
        for b in &w.brokers {
            for sp in &b.config.specialties {
                let skill = b.truth.skill[sp.line.index()];
                if sp.proficiency >= 4 {
                    hi.push(skill);
                } else if sp.proficiency <= 2 {
                    lo.push(skill);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(!hi.is_empty() && !lo.is_empty());
        assert!(mean(&hi) > mean(&lo) + 0.5, "{} vs {}", mean(&hi), mean(&lo));
    }

    #[test]
    fn a_dominant_broker_holds_its_share() {
        let s = Scenario::parse(BUILT_IN[3].1).unwrap();
        let w = World::generate(&s, 5);
        let total: u32 = w.brokers.iter().map(|b| b.config.capacity.max_concurrent).sum();
        let share = w.brokers[0].config.capacity.max_concurrent as f64 / total as f64;
        assert!((share - 0.5).abs() < 0.02, "{share}");
        assert_eq!(w.brokers[0].config.group.as_deref(), Some("agency"));
        assert!(w.brokers[1..].iter().all(|b| b.config.group.as_deref() != Some("agency")));
    }

    #[test]
    fn slow_brokers_are_a_quarter_spread_evenly_and_slow_only_from_their_day() {
        let s = Scenario::load("slowdown").unwrap();
        let d = s.brokers.slowdown.clone().unwrap();
        let w = World::generate(&s, 3);
        let slow: Vec<usize> = (0..w.brokers.len()).filter(|&i| d.slows(i)).collect();
        assert_eq!(slow, (0..10).map(|k| 4 * k + 3).collect::<Vec<_>>());
        let start = s.start() + Duration::days(i64::from(d.from_day));
        let before = w.leads.iter().find(|l| l.at < start).unwrap();
        let after = w.leads.iter().find(|l| l.at >= start).unwrap();
        let b = slow[0];
        assert_eq!(w.mean_contact_minutes(before, b), w.brokers[b].truth.contact_minutes);
        assert_eq!(w.mean_contact_minutes(after, b), 6.0 * w.brokers[b].truth.contact_minutes);
        assert_eq!(w.mean_contact_minutes(after, 0), w.brokers[0].truth.contact_minutes);
    }

    #[test]
    fn demo_brokers_keep_their_configuration_and_get_a_truth_that_follows_it() {
        let s = Scenario::load("demo").unwrap();
        let w = World::generate(&s, 7);
        let demo = crate::server::demo_brokers().unwrap();
        assert_eq!(w.brokers.len(), demo.len());
        assert!(w.brokers.iter().zip(&demo).all(|(b, d)| &b.config == d));
        let (mut five, mut one) = (Vec::new(), Vec::new());
        for b in &w.brokers {
            for sp in &b.config.specialties {
                match sp.proficiency {
                    5 => five.push(b.truth.skill[sp.line.index()]),
                    1 => one.push(b.truth.skill[sp.line.index()]),
                    _ => {}
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&five) > mean(&one) + 1.5, "{} vs {}", mean(&five), mean(&one));
        // Without a start the run ends five days before today (either side of a midnight that
        // passes while the test runs).
        let today = || Utc::now().date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
        let before = today();
        let end = s.start() + Duration::days(s.days as i64);
        let after = today();
        assert!(end == before - Duration::days(5) || end == after - Duration::days(5), "{end}");
    }

    #[test]
    fn late_contact_lowers_the_chance() {
        let s = balanced();
        let w = World::generate(&s, 6);
        let l = &w.leads[0];
        let patience = s.leads.patience_minutes[l.request.lead_data.urgency.rank() as usize];
        assert_eq!(w.lateness(l, 0.0), 1.0);
        assert!((w.lateness(l, patience) - 0.5).abs() < 1e-12);
        let p = w.p_convert(l, 0);
        assert!(p > 0.0 && p < 1.0);
    }

    #[test]
    fn niches_show_in_the_text_and_raise_the_chance() {
        let mut s = balanced();
        s.text = Some(crate::sim::text::TextMix { lead_share: 0.5, broker_share: 0.5, boost: 1.0 });
        let w = World::generate(&s, 3);
        let plain = World::generate(&Scenario { text: None, ..s.clone() }, 3);
        assert!(w.leads.iter().all(|l| l.request.lead_data.notes.is_some()));
        assert!(w.brokers.iter().all(|b| b.config.bio.is_some()));
        let with = w.leads.iter().filter(|l| l.niche.is_some()).count() as f64 / w.leads.len() as f64;
        assert!((with - 0.5).abs() < 0.05, "{with}");
        // A niche lead with a broker of its niche gains exactly the boost in log-odds.
        let lead = w.leads.iter().position(|l| l.niche.is_some()).unwrap();
        let b = w.brokers.iter().position(|b| b.truth.niche == w.leads[lead].niche).unwrap();
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let gain = logit(w.p_convert(&w.leads[lead], b)) - logit(plain.p_convert(&plain.leads[lead], b));
        assert!((gain - 1.0).abs() < 1e-9, "{gain}");
        // Everything else about the world is as without text.
        assert_eq!(w.leads.len(), plain.leads.len());
        assert_eq!(w.leads[7].request.lead_data.estimated_value, plain.leads[7].request.lead_data.estimated_value);
    }
}
