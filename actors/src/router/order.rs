//! The strategies' orderings of the eligible brokers: the candidates of a routing seen as a
//! policy [`Slate`], ranked by the strategy's policy (`leadrouter_models::policy`).

use leadrouter_models::policy::{Arm, RankContext};
use leadrouter_models::{Priors, Ranking, Slate};

use crate::index::Candidates;

use super::plan::Plan;
use super::RouterSupervisor;

impl Slate for Candidates {
    fn len(&self) -> usize {
        self.eligible.len()
    }

    fn arm(&self, i: usize) -> Arm {
        let e = &self.eligible[i];
        Arm { specialty: e.specialty, headroom: e.headroom, outcomes: e.outcomes }
    }

    fn id(&self, i: usize) -> &str {
        &self.entry(self.eligible[i].pos).broker.id
    }

    fn cmp_id(&self, a: usize, b: usize) -> std::cmp::Ordering {
        Candidates::cmp_id(self, self.eligible[a].pos, self.eligible[b].pos)
    }
}

impl RouterSupervisor {
    /// The population priors of `c`'s brokers, and their order by the plan's policy, as
    /// positions in `c.list`. For `specialty`, `ml` and `roi` only the first K are sorted (the rest
    /// follow in no particular order, asked only if all K refuse).
    pub(super) fn rank(&self, plan: &Plan, c: &Candidates) -> (Priors, Ranking) {
        let [conv, resolved, hits, total] = c.totals;
        let priors = Priors::from_totals(conv, resolved, hits, total, self.inner.cfg.routing.prior_strength);
        let routing = &self.inner.cfg.routing;
        let ctx = RankContext { weights: &plan.weights, priors: &priors, top_k: routing.top_k, roi: &routing.roi };
        let mut ranking = self.inner.policies.get(plan.strategy).rank(c, &ctx, &mut self.inner.rng.lock());
        for i in &mut ranking.order {
            *i = c.eligible[*i as usize].pos;
        }
        (priors, ranking)
    }
}
