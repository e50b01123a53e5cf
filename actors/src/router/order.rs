//! The strategies' orderings of the eligible brokers: the candidates of a routing seen as a
//! policy [`Slate`], ranked by the strategy's policy (`leadrouter_models::policy`), with the
//! fairness prices (`leadrouter_models::fairness`) applied first.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use leadrouter_models::fairness::preferred;
use leadrouter_models::policy::{Arm, RankContext};
use leadrouter_models::{Priors, Ranking, Slate};

use crate::index::Candidates;
use crate::storage::experiments::book::apply_fairness;
use crate::storage::record::Record;

use super::plan::Plan;
use super::RouterSupervisor;

impl Slate for Candidates {
    fn len(&self) -> usize {
        self.eligible.len()
    }

    fn arm(&self, i: usize) -> Arm {
        let e = &self.eligible[i];
        Arm { specialty: e.specialty, headroom: e.headroom, outcomes: e.outcomes, fairness: e.fairness }
    }

    fn id(&self, i: usize) -> &str {
        &self.entry(self.eligible[i].pos).broker.id
    }

    fn cmp_id(&self, a: usize, b: usize) -> Ordering {
        Candidates::cmp_id(self, self.eligible[a].pos, self.eligible[b].pos)
    }

    fn has_fairness(&self) -> bool {
        self.fairness
    }
}

/// Some of a slate's brokers, by their indices in it.
struct Part<'a> {
    all: &'a Candidates,
    idx: &'a [usize],
}

impl Slate for Part<'_> {
    fn len(&self) -> usize {
        self.idx.len()
    }

    fn arm(&self, i: usize) -> Arm {
        self.all.arm(self.idx[i])
    }

    fn id(&self, i: usize) -> &str {
        Slate::id(self.all, self.idx[i])
    }

    fn cmp_id(&self, a: usize, b: usize) -> Ordering {
        Slate::cmp_id(self.all, self.idx[a], self.idx[b])
    }

    fn has_fairness(&self) -> bool {
        self.all.fairness
    }
}

/// A plan's order of the candidates, with what the decision needs of the fairness prices.
pub(super) struct Ordered {
    /// The population priors of the candidates.
    pub(super) priors: Priors,
    /// Positions in `Candidates::list`, best first, and the propensity rule.
    pub(super) ranking: Ranking,
    /// How many candidates the policy drew the first from (all, unless fairness preferred some).
    pub(super) pool: usize,
    /// Fairness adjustment per position in `Candidates::list`; empty without bounds.
    pub(super) fairness: Vec<f64>,
}

impl Ordered {
    /// The fairness adjustment of the broker at list position `pos`.
    pub(super) fn fairness_of(fairness: &[f64], pos: u32) -> f64 {
        fairness.get(pos as usize).copied().unwrap_or(0.0)
    }
}

impl RouterSupervisor {
    /// The population priors of `c`'s brokers, and their order by the plan's policy, as
    /// positions in `c.list`. For `specialty`, `ml` and `roi` only the first K are sorted (the rest
    /// follow in no particular order, asked only if all K refuse).
    ///
    /// With fairness bounds, each candidate's adjustment is set first: the scored strategies
    /// add it to their keys and scores; for the others (random, the round robins) the policy
    /// draws from the candidates of the highest tier only (lifted, then neutral, then held back;
    /// `fairness::preferred`), the rest following in index order, so the logged propensity is
    /// exact over the set it drew from.
    pub(super) fn rank(&self, plan: &Plan, c: &mut Candidates, now: DateTime<Utc>) -> Ordered {
        let [conv, resolved, hits, total] = c.totals;
        let priors = Priors::from_totals(conv, resolved, hits, total, self.inner.cfg.routing.prior_strength);
        let routing = &self.inner.cfg.routing;
        let fairness = self.fairness_adjustments(c, now);
        let ctx = RankContext { weights: &plan.weights, priors: &priors, top_k: routing.top_k, roi: &routing.roi };
        let policy = self.inner.policies.get(plan.strategy);
        let keep = if fairness.is_empty() || plan.strategy.ranks_by_score() {
            None
        } else {
            let adj: Vec<f64> = c.eligible.iter().map(|e| e.fairness).collect();
            Some(preferred(&adj)).filter(|p| p.len() < adj.len())
        };
        let (mut ranking, pool) = match keep {
            None => (policy.rank(c, &ctx, &mut self.inner.rng.lock()), c.eligible.len()),
            Some(idx) => {
                let part = Part { all: c, idx: &idx };
                let mut r = policy.rank(&part, &ctx, &mut self.inner.rng.lock());
                let mut taken = vec![false; c.eligible.len()];
                for i in &mut r.order {
                    *i = idx[*i as usize] as u32;
                    taken[*i as usize] = true;
                }
                r.order.extend((0..c.eligible.len() as u32).filter(|&i| !taken[i as usize]));
                (r, idx.len())
            }
        };
        for i in &mut ranking.order {
            *i = c.eligible[*i as usize].pos;
        }
        Ordered { priors, ranking, pool, fairness }
    }

    /// Sets each eligible candidate's fairness adjustment from the current prices, and returns
    /// them per list position; nothing (and no lock) without bounds.
    fn fairness_adjustments(&self, c: &mut Candidates, now: DateTime<Utc>) -> Vec<f64> {
        let s = &self.inner.cfg.routing.fairness;
        if !s.active() {
            return Vec::new();
        }
        let mut by_pos = vec![0.0; c.list.len()];
        {
            let w = self.inner.fairness.lock();
            for e in &c.eligible {
                let b = &c.entry(e.pos).broker;
                by_pos[e.pos as usize] = w.adjustment(s, &b.id, b.group.as_deref(), now);
            }
        }
        for e in &mut c.eligible {
            e.fairness = by_pos[e.pos as usize];
        }
        c.fairness = true;
        by_pos
    }

    /// Moves the live fairness window with a committed record (a decision, a broker's change).
    pub(super) fn observe_fairness(&self, rec: &Record) {
        let s = &self.inner.cfg.routing.fairness;
        if s.active() {
            apply_fairness(&mut self.inner.fairness.lock(), s, rec);
        }
    }
}
