//! Routing policies: how a strategy orders the brokers that passed the hard constraints, and
//! with what probability each would be chosen (its propensity: 1 for the first of a
//! deterministic order, 1/n for a uniform draw), so that every decision can log exactly how
//! likely its choice was and off-policy estimators can be run on the logs.
//!
//! A policy sees the candidates through a [`Slate`] (so the caller's own storage is read in
//! place) and gets its randomness passed in. State a policy keeps between decisions (the round
//! robin's turn, the stride scheduler's passes) lives in the policy; [`Policy::chosen`] tells it
//! which broker a committed decision went to.

mod prerank;
mod rotation;
mod uniform;

use std::cmp::Ordering;

pub use prerank::{top_k_first, PreRank, RoiPreRank};
pub use rotation::{RoundRobin, WeightedRoundRobin};
pub use uniform::Uniform;

use crate::scoring::{Priors, Weights};
use crate::strategy::Strategy;

/// What a policy may read of one eligible broker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arm {
    /// Mean proficiency over the lead's lines, 0–1.
    pub specialty: f64,
    /// Capacity headroom, 0–1.
    pub headroom: f64,
    /// Converted, resolved, SLA hits, SLA total.
    pub outcomes: [u64; 4],
    /// Fairness adjustment (`crate::fairness`), in units of the best candidate's score; 0
    /// without bounds.
    pub fairness: f64,
}

/// The eligible brokers of one routing, as a policy reads them; indices run over `0..len()`.
pub trait Slate {
    /// How many.
    fn len(&self) -> usize;
    /// True when there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The broker at `i`.
    fn arm(&self, i: usize) -> Arm;
    /// Its id.
    fn id(&self, i: usize) -> &str;
    /// A total order by broker id, for rotations and ties.
    fn cmp_id(&self, a: usize, b: usize) -> Ordering;
    /// Whether any arm may carry a fairness adjustment (false: every one is 0, and a pre-rank
    /// need not look).
    fn has_fairness(&self) -> bool {
        true
    }
}

/// What a policy knows of the routing besides the slate.
#[derive(Clone, Copy, Debug)]
pub struct RankContext<'a> {
    /// The strategy's weights.
    pub weights: &'a Weights,
    /// Population priors for smoothing each broker's history.
    pub priors: &'a Priors,
    /// How many of the best a pre-rank must put first in order (the rest follow unordered).
    pub top_k: usize,
    /// Settings of strategy `roi`.
    pub roi: &'a crate::roi::RoiSettings,
}

/// With what probability a policy's order puts each candidate first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chance {
    /// The order is fixed by what the policy knows: the first is chosen with certainty.
    Certain,
    /// Every candidate is equally likely to come first.
    Uniform,
}

impl Chance {
    /// The probability that the broker chosen from `candidates` (the eligible brokers less those
    /// that refused their reservation, which the order passed over) was the one picked.
    pub fn of_winner(self, candidates: usize) -> f64 {
        match self {
            Self::Certain => 1.0,
            Self::Uniform => 1.0 / candidates.max(1) as f64,
        }
    }
}

/// A policy's answer: slate indices, most preferred first, and how likely the first was.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    /// Every slate index once, most preferred first.
    pub order: Vec<u32>,
    /// The propensity rule.
    pub chance: Chance,
}

/// Orders a slate for one routing.
pub trait Policy: Send + Sync {
    /// The slate's indices in order of preference, and the chance rule.
    fn rank(&self, slate: &dyn Slate, ctx: &RankContext<'_>, rng: &mut fastrand::Rng) -> Ranking;

    /// A decision this policy ranked was committed to broker `id` (of `weight`).
    fn chosen(&self, _id: &str, _weight: f64) {}
}

/// One policy per strategy, with their state.
#[derive(Default)]
pub struct Policies {
    pre_rank: PreRank,
    roi: RoiPreRank,
    uniform: Uniform,
    round_robin: RoundRobin,
    weighted: WeightedRoundRobin,
}

impl Policies {
    /// The policy of `strategy`.
    pub fn get(&self, strategy: Strategy) -> &dyn Policy {
        match strategy {
            Strategy::Specialty | Strategy::Ml => &self.pre_rank,
            Strategy::Roi => &self.roi,
            Strategy::Random => &self.uniform,
            Strategy::RoundRobin => &self.round_robin,
            Strategy::WeightedRoundRobin => &self.weighted,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A slate over plain vectors.
    pub(crate) struct VecSlate(pub Vec<(String, Arm)>);

    impl Slate for VecSlate {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn arm(&self, i: usize) -> Arm {
            self.0[i].1
        }
        fn id(&self, i: usize) -> &str {
            &self.0[i].0
        }
        fn cmp_id(&self, a: usize, b: usize) -> Ordering {
            self.0[a].0.cmp(&self.0[b].0)
        }
    }

    pub(crate) fn arm(specialty: f64) -> Arm {
        Arm { specialty, headroom: 1.0, outcomes: [0; 4], fairness: 0.0 }
    }

    pub(crate) fn slate(n: usize) -> VecSlate {
        VecSlate((0..n).map(|i| (format!("b{i:02}"), arm(i as f64 / n as f64))).collect())
    }

    pub(crate) fn ctx<'a>(w: &'a Weights, p: &'a Priors, top_k: usize) -> RankContext<'a> {
        static ROI: std::sync::OnceLock<crate::roi::RoiSettings> = std::sync::OnceLock::new();
        RankContext { weights: w, priors: p, top_k, roi: ROI.get_or_init(Default::default) }
    }

    #[test]
    fn every_strategy_has_a_policy_that_orders_every_candidate_once() {
        let (w, p) = (Weights::default(), Priors::from_totals(0, 0, 0, 0, 20.0));
        let policies = Policies::default();
        let s = slate(9);
        for strategy in Strategy::ALL {
            let r = policies.get(strategy).rank(&s, &ctx(&w, &p, 3), &mut fastrand::Rng::with_seed(1));
            let mut seen = r.order.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..9).collect::<Vec<u32>>(), "{strategy:?}");
            let want = if strategy == Strategy::Random { Chance::Uniform } else { Chance::Certain };
            assert_eq!(r.chance, want, "{strategy:?}");
        }
    }

    #[test]
    fn the_chance_of_the_winner_counts_only_the_candidates_left() {
        assert_eq!(Chance::Certain.of_winner(7), 1.0);
        assert_eq!(Chance::Uniform.of_winner(4), 0.25);
        assert_eq!(Chance::Uniform.of_winner(0), 1.0);
    }
}
