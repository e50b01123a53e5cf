//! The strategies' orderings of the eligible brokers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use leadrouter_models::{Priors, Strategy};

use crate::index::Candidates;

use super::RouterSupervisor;

/// Stride scheduling state for weighted round robin.
#[derive(Default)]
pub(super) struct Stride {
    pass: HashMap<String, f64>,
    vtime: f64,
}

impl Stride {
    pub(super) fn get(&self, id: &str) -> f64 {
        self.pass.get(id).copied().unwrap_or(self.vtime).max(self.vtime)
    }

    pub(super) fn advance(&mut self, id: &str, weight: f64) {
        let p = self.get(id);
        self.vtime = p;
        self.pass.insert(id.to_string(), p + 1.0 / weight);
    }
}

/// The positions of `keyed`, the best `k` first in order (best = least by `cmp`), then the rest
/// in no particular order. One pass keeps the best `k` in a small sorted list: most items lose
/// to the worst of it in one comparison.
pub(super) fn top_k_first(mut keyed: Vec<(f64, u32)>, k: usize, cmp: impl Fn(&(f64, u32), &(f64, u32)) -> std::cmp::Ordering) -> Vec<u32> {
    let k = k.min(keyed.len());
    if k == 0 {
        return keyed.into_iter().map(|(_, i)| i).collect();
    }
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for j in 0..keyed.len() {
        if best.len() == k && cmp(&keyed[j], &keyed[best[k - 1]]).is_ge() {
            continue;
        }
        let at = best.partition_point(|&b| cmp(&keyed[b], &keyed[j]).is_lt());
        best.insert(at, j);
        best.truncate(k);
    }
    let mut order: Vec<u32> = Vec::with_capacity(keyed.len());
    order.extend(best.iter().map(|&j| keyed[j].1));
    // Largest index first, so each removal leaves the smaller ones in place.
    best.sort_unstable_by(|a, b| b.cmp(a));
    for j in best {
        keyed.swap_remove(j);
    }
    order.extend(keyed.into_iter().map(|(_, i)| i));
    order
}

impl RouterSupervisor {
    /// Orders the eligible brokers of `c` by the strategy's preference, as positions in
    /// `c.list`. For `specialty` and `ml` only the first K are sorted (the rest follow in no
    /// particular order, asked only if all K refuse).
    pub(super) fn order(&self, strategy: Strategy, c: &Candidates, priors: &Priors) -> Vec<u32> {
        let by_id = |a: &u32, b: &u32| c.cmp_id(*a, *b);
        let positions = || -> Vec<u32> { c.eligible.iter().map(|e| e.pos).collect() };
        match strategy {
            Strategy::Specialty | Strategy::Ml => {
                // Cheap pre-rank from what the filter read: proficiency, headroom and smoothed
                // history.
                let w = self.inner.cfg.weights(strategy);
                let keyed: Vec<(f64, u32)> = c
                    .eligible
                    .iter()
                    .map(|e| {
                        let [conv, resolved, hits, total] = e.outcomes;
                        let key = w.specialty * e.specialty
                            + w.capacity * e.headroom
                            + w.performance * priors.conversion.smooth(conv as f64, resolved as f64)
                            + w.sla * priors.sla.smooth(hits as f64, total as f64);
                        (key, e.pos)
                    })
                    .collect();
                let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| by_id(&a.1, &b.1));
                top_k_first(keyed, self.inner.cfg.routing.top_k, cmp)
            }
            Strategy::Random => {
                let mut el = positions();
                self.inner.rng.lock().shuffle(&mut el);
                el
            }
            Strategy::RoundRobin => {
                let mut el = positions();
                el.sort_by(by_id);
                let start = (self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % el.len() as u64) as usize;
                el.rotate_left(start);
                el
            }
            Strategy::WeightedRoundRobin => {
                let mut el = positions();
                let s = self.inner.stride.lock();
                let id = |i: &u32| &c.entry(*i).broker.id;
                el.sort_by(|a, b| s.get(id(a)).total_cmp(&s.get(id(b))).then_with(|| by_id(a, b)));
                el
            }
        }
    }
}
