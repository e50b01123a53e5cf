//! The pre-rank of `specialty` and `ml`: a cheap score from what the hard-constraint filter
//! already read (proficiency, headroom, smoothed history), of which only the best K are sorted;
//! those are the candidates asked to score.

use std::cmp::Ordering;

use super::{Chance, Policy, RankContext, Ranking, Slate};
use crate::roi::fast_exp;

/// Orders by `specialty · w_s + headroom · w_c + smoothed conversion · w_p + smoothed SLA · w_sla`,
/// ties by id; deterministic.
#[derive(Debug, Default)]
pub struct PreRank;

impl Policy for PreRank {
    fn rank(&self, slate: &dyn Slate, ctx: &RankContext<'_>, _rng: &mut fastrand::Rng) -> Ranking {
        let (w, p) = (ctx.weights, ctx.priors);
        let mut fairness = Vec::with_capacity(if slate.has_fairness() { slate.len() } else { 0 });
        let keyed: Vec<(f64, u32)> = (0..slate.len())
            .map(|i| {
                let a = slate.arm(i);
                if slate.has_fairness() {
                    fairness.push(a.fairness);
                }
                let [conv, resolved, hits, total] = a.outcomes;
                let key = w.specialty * a.specialty
                    + w.capacity * a.headroom
                    + w.performance * p.conversion.smooth(conv as f64, resolved as f64)
                    + w.sla * p.sla.smooth(hits as f64, total as f64);
                (key, i as u32)
            })
            .collect();
        let keyed = adjust_for_fairness(keyed, &fairness);
        let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| slate.cmp_id(a.1 as usize, b.1 as usize));
        Ranking { order: top_k_first(keyed, ctx.top_k, cmp), chance: Chance::Certain }
    }
}

/// The pre-rank of `roi`: the broker's conversion estimate from its smoothed record moved by its
/// proficiency in the lead's lines (as [`crate::roi::evidence_conversion`] starts), discounted
/// by the seat-price curve at its current load; deterministic. Only the best K are scored.
#[derive(Debug, Default)]
pub struct RoiPreRank;

impl Policy for RoiPreRank {
    fn rank(&self, slate: &dyn Slate, ctx: &RankContext<'_>, _rng: &mut fastrand::Rng) -> Ranking {
        let (p, s) = (ctx.priors, ctx.roi);
        let gamma = s.seat_price_curvature;
        // Computed with one division per broker: with the smoothed rate b = num / den,
        // σ(logit(b) + d) = num·e^d / (den − num + num·e^d); ψ's denominator is the same for
        // every broker; the exponentials are `fast_exp` (the key only orders the brokers).
        let inv_denom = if gamma > 0.0 { 1.0 / gamma.exp_m1() } else { 0.0 };
        let (mean, k) = (p.conversion.mean, p.conversion.strength);
        let mut fairness = Vec::with_capacity(if slate.has_fairness() { slate.len() } else { 0 });
        let keyed: Vec<(f64, u32)> = (0..slate.len())
            .map(|i| {
                let a = slate.arm(i);
                if slate.has_fairness() {
                    fairness.push(a.fairness);
                }
                let [conv, resolved, _, _] = a.outcomes;
                let den = resolved as f64 + k;
                let num = (conv as f64 + mean * k).clamp(1e-6 * den, (1.0 - 1e-6) * den);
                let lifted = num * fast_exp(s.proficiency_log_odds * (5.0 * a.specialty - 3.0));
                let load = (1.0 - a.headroom).clamp(0.0, 1.0);
                let seat = if gamma > 0.0 { (fast_exp(gamma * load) - 1.0) * inv_denom } else { 0.0 };
                (lifted * (1.0 - seat) / (den - num + lifted), i as u32)
            })
            .collect();
        let keyed = adjust_for_fairness(keyed, &fairness);
        let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| slate.cmp_id(a.1 as usize, b.1 as usize));
        Ranking { order: top_k_first(keyed, ctx.top_k, cmp), chance: Chance::Certain }
    }
}

/// Adds each arm's fairness adjustment (`fairness`, in `keyed`'s order) times the best key to
/// its key (as the scored strategies do to scores), so a lifted group reaches the K scored
/// candidates; a no-op without adjustments.
fn adjust_for_fairness(mut keyed: Vec<(f64, u32)>, fairness: &[f64]) -> Vec<(f64, u32)> {
    if fairness.iter().all(|a| *a == 0.0) {
        return keyed;
    }
    let best = keyed.iter().map(|k| k.0.abs()).fold(0.0_f64, f64::max).max(1e-9);
    for (k, a) in keyed.iter_mut().zip(fairness) {
        k.0 += a * best;
    }
    keyed
}

/// The indices of `keyed`, the best `k` first in order (best = least by `cmp`), then the rest
/// in no particular order. One pass keeps the best `k` in a small sorted list: most items lose
/// to the worst of it in one comparison.
pub fn top_k_first(mut keyed: Vec<(f64, u32)>, k: usize, cmp: impl Fn(&(f64, u32), &(f64, u32)) -> Ordering) -> Vec<u32> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::{prop, prop_assert, prop_assert_eq, proptest};

    use super::{top_k_first, RoiPreRank};
    use crate::policy::tests::{arm, ctx, VecSlate};
    use crate::policy::{Arm, Policy};
    use crate::scoring::{Priors, Weights};

    #[test]
    fn roi_pre_rank_prefers_proficiency_and_spares_nearly_full_brokers() {
        let (w, p) = (Weights::default(), Priors::from_totals(0, 0, 0, 0, 20.0));
        let full = Arm { headroom: 0.05, ..arm(1.0) };
        let slate = VecSlate(vec![("a".into(), arm(0.4)), ("b".into(), arm(1.0)), ("c".into(), full), ("d".into(), arm(0.6))]);
        let r = RoiPreRank.rank(&slate, &ctx(&w, &p, 4), &mut fastrand::Rng::with_seed(1));
        // b (expert, idle) first; c is as expert but nearly full, so its seat price puts it last.
        assert_eq!(r.order, vec![1, 3, 0, 2]);
    }

    proptest! {
        #[test]
        fn fast_exp_is_within_a_millionth_of_exp(x in -60.0f64..60.0) {
            let (a, b) = (crate::roi::fast_exp(x), x.exp());
            prop_assert!(((a - b) / b).abs() < 1e-6, "{} {} {}", x, a, b);
        }

        /// The pre-rank's key from odds and `fast_exp` orders as the exact one,
        /// σ(logit(b) + d)·(1 − ψ(load)), whenever the two exact keys differ by more than 1e-6.
        #[test]
        fn roi_pre_rank_orders_as_the_exact_key(specs in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0, 0u64..50, 0u64..50), 2..20)) {
            let (w, p) = (Weights::default(), Priors::from_totals(30, 200, 0, 0, 20.0));
            let arms: Vec<(String, Arm)> = specs
                .iter()
                .enumerate()
                .map(|(i, &(sp, head, c, r))| (format!("b{i:02}"), Arm { specialty: sp, headroom: head, outcomes: [c.min(r), r, 0, 0], fairness: 0.0 }))
                .collect();
            let c = ctx(&w, &p, arms.len());
            let order = RoiPreRank.rank(&VecSlate(arms.clone()), &c, &mut fastrand::Rng::with_seed(1)).order;
            let exact = |a: &Arm| {
                let [conv, resolved, _, _] = a.outcomes;
                let base = p.conversion.smooth(conv as f64, resolved as f64).clamp(1e-6, 1.0 - 1e-6);
                let x = (base / (1.0 - base)).ln() + c.roi.proficiency_log_odds * (5.0 * a.specialty - 3.0);
                let estimate = 1.0 / (1.0 + (-x).exp());
                estimate * (1.0 - crate::roi::seat_curve(1.0 - a.headroom, c.roi.seat_price_curvature))
            };
            for pair in order.windows(2) {
                let (a, b) = (exact(&arms[pair[0] as usize].1), exact(&arms[pair[1] as usize].1));
                prop_assert!(a >= b - 1e-6, "{} before {}", a, b);
            }
        }

        #[test]
        fn top_k_first_matches_a_full_sort(keys in prop::collection::vec(0u8..6, 0..60), k in 0usize..12) {
            // Few distinct keys, so ties (broken by position here) are common.
            let keyed: Vec<(f64, u32)> = keys.iter().enumerate().map(|(i, &v)| (f64::from(v), i as u32)).collect();
            let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1));
            let mut sorted = keyed.clone();
            sorted.sort_by(cmp);
            let order = top_k_first(keyed, k, cmp);
            let n = k.min(order.len());
            prop_assert_eq!(&order[..n], &sorted.iter().map(|e| e.1).collect::<Vec<_>>()[..n]);
            let mut all = order.clone();
            all.sort_unstable();
            prop_assert_eq!(all, (0..keys.len() as u32).collect::<Vec<_>>(), "every position once");
        }
    }
}
