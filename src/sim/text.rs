//! The simulator's text channel (a scenario's `[text]`): hidden niches a broker is strong in and
//! a lead needs. A broker's niche shows in its bio, a lead's in its notes, in words that differ
//! from lead to lead; the engine sees only the text. A lead whose niche is its broker's converts
//! with `boost` more log-odds. Leads without a niche get everyday notes, brokers without one an
//! everyday bio, so every lead has text and the text alone tells the niches apart.

use leadrouter_models::rng::SplitMix64;
use serde::Deserialize;

/// A scenario's text channel.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextMix {
    /// Share of leads that need a niche.
    pub lead_share: f64,
    /// Share of brokers strong in a niche.
    pub broker_share: f64,
    /// Log-odds of a sale added when a lead's niche is its broker's.
    pub boost: f64,
}

impl TextMix {
    /// Shares in [0, 1], a finite boost.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("text.lead_share", self.lead_share), ("text.broker_share", self.broker_share)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if !self.boost.is_finite() || self.boost.abs() > 10.0 {
            return Err("text.boost must be between -10 and 10".into());
        }
        Ok(())
    }
}

/// Each niche: the bio of a broker strong in it, and ways a lead needing it is described.
const NICHES: [(&str, [&str; 4]); 4] = [
    (
        "Fleet and commercial vehicle risks: delivery vans, box trucks and courier businesses",
        [
            "fleet of {n} delivery vans for a courier business",
            "we run {n} box trucks making local deliveries",
            "cargo vans for a parcel delivery company, {n} vehicles",
            "commercial trucks, {n} drivers on the road every day",
        ],
    ),
    (
        "Young and newly licensed drivers: first policies for teenagers and students",
        [
            "my son just passed his driving test at {n}teen",
            "two drivers under 25 in the household",
            "first car for a college student, newly licensed",
            "teenage daughter starts driving next month",
        ],
    ),
    (
        "High-value homes, valuables and coastal second properties",
        [
            "large house with a pool, art collection and jewellery",
            "beach house we rent out {n} weeks a year",
            "luxury home, recently renovated, expensive watches",
            "second home on the coast, hurricane exposure",
        ],
    ),
    (
        "Small businesses: shops, salons, restaurants and their staff",
        [
            "small bakery with {n} employees",
            "I own a hair salon and need liability cover",
            "family restaurant, staff of {n}, delivery service",
            "corner shop, worried about break-ins and slips",
        ],
    ),
];

const PLAIN_NOTES: [&str; 6] = [
    "looking for a better price than my current policy",
    "moving to a new apartment next month",
    "current policy renews in {n} weeks",
    "would like to bundle my policies",
    "called after seeing an online ad",
    "wants a quote by email first",
];

const PLAIN_BIOS: [&str; 4] = [
    "Independent agent serving local families for years",
    "Friendly agency, quick quotes and honest advice",
    "Personal lines agent, happy to compare carriers",
    "Neighbourhood insurance office, walk-ins welcome",
];

fn fill(template: &str, r: &mut SplitMix64) -> String {
    template.replace("{n}", &(2 + r.below(18)).to_string())
}

/// The random stream of a world's text channel: one of its own, so the worlds of scenarios
/// without text are unchanged.
pub fn stream(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ 0x7E47)
}

/// A broker's niche (with probability `broker_share`) and its bio.
pub fn broker(mix: &TextMix, r: &mut SplitMix64) -> (Option<u8>, String) {
    let niche = (r.next_f64() < mix.broker_share).then(|| r.below(NICHES.len()));
    let bio = match niche {
        Some(n) => NICHES[n].0.to_string(),
        None => PLAIN_BIOS[r.below(PLAIN_BIOS.len())].to_string(),
    };
    (niche.map(|n| n as u8), bio)
}

/// A lead's niche (with probability `lead_share`) and its notes.
pub fn lead(mix: &TextMix, r: &mut SplitMix64) -> (Option<u8>, String) {
    let niche = (r.next_f64() < mix.lead_share).then(|| r.below(NICHES.len()));
    let notes = match niche {
        Some(n) => fill(NICHES[n].1[r.below(4)], r),
        None => fill(PLAIN_NOTES[r.below(PLAIN_NOTES.len())], r),
    };
    (niche.map(|n| n as u8), notes)
}
