//! The rotations: round robin (id order, one further each decision) and weighted round robin
//! (stride scheduling: long-run shares proportional to the brokers' weights). Deterministic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;

use super::{Chance, Policy, RankContext, Ranking, Slate};

/// Eligible brokers in id order, starting one further each decision.
#[derive(Debug, Default)]
pub struct RoundRobin {
    turn: AtomicU64,
}

impl Policy for RoundRobin {
    fn rank(&self, slate: &dyn Slate, _ctx: &RankContext<'_>, _rng: &mut fastrand::Rng) -> Ranking {
        let mut order: Vec<u32> = (0..slate.len() as u32).collect();
        order.sort_by(|a, b| slate.cmp_id(*a as usize, *b as usize));
        if !order.is_empty() {
            let start = (self.turn.fetch_add(1, AtomicOrdering::Relaxed) % order.len() as u64) as usize;
            order.rotate_left(start);
        }
        Ranking { order, chance: Chance::Certain }
    }
}

/// Stride scheduling state: each broker's next pass, and the virtual time.
#[derive(Debug, Default)]
struct Stride {
    pass: HashMap<String, f64>,
    vtime: f64,
}

impl Stride {
    fn get(&self, id: &str) -> f64 {
        self.pass.get(id).copied().unwrap_or(self.vtime).max(self.vtime)
    }

    fn advance(&mut self, id: &str, weight: f64) {
        let p = self.get(id);
        self.vtime = p;
        self.pass.insert(id.to_string(), p + 1.0 / weight);
    }
}

/// Stride scheduling by broker weight: the broker with the earliest pass first; a committed
/// decision moves its broker's pass on by 1/weight.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    stride: Mutex<Stride>,
}

impl Policy for WeightedRoundRobin {
    fn rank(&self, slate: &dyn Slate, _ctx: &RankContext<'_>, _rng: &mut fastrand::Rng) -> Ranking {
        let mut order: Vec<u32> = (0..slate.len() as u32).collect();
        let s = self.stride.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        order.sort_by(|a, b| {
            let (a, b) = (*a as usize, *b as usize);
            s.get(slate.id(a)).total_cmp(&s.get(slate.id(b))).then_with(|| slate.cmp_id(a, b))
        });
        Ranking { order, chance: Chance::Certain }
    }

    fn chosen(&self, id: &str, weight: f64) {
        self.stride.lock().unwrap_or_else(std::sync::PoisonError::into_inner).advance(id, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ctx, slate};
    use super::*;
    use crate::scoring::{Priors, Weights};

    #[test]
    fn round_robin_starts_one_further_each_time() {
        let (w, p) = (Weights::default(), Priors::from_totals(0, 0, 0, 0, 20.0));
        let rr = RoundRobin::default();
        let s = slate(3);
        let firsts: Vec<u32> = (0..4).map(|_| rr.rank(&s, &ctx(&w, &p, 8), &mut fastrand::Rng::new()).order[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0]);
    }

    #[test]
    fn weighted_round_robin_shares_follow_the_weights() {
        let (w, p) = (Weights::default(), Priors::from_totals(0, 0, 0, 0, 20.0));
        let wrr = WeightedRoundRobin::default();
        let s = slate(3);
        let weight = [1.0, 2.0, 3.0];
        let mut counts = [0u32; 3];
        for _ in 0..600 {
            let first = wrr.rank(&s, &ctx(&w, &p, 8), &mut fastrand::Rng::new()).order[0] as usize;
            counts[first] += 1;
            wrr.chosen(s.id(first), weight[first]);
        }
        assert_eq!(counts, [100, 200, 300]);
    }
}
