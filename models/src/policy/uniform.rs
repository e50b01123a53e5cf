//! `random`: a uniform shuffle of the eligible brokers, drawn from the generator passed in; the
//! first is chosen with probability 1/n.

use super::{Chance, Policy, RankContext, Ranking, Slate};

/// A uniformly random order.
#[derive(Debug, Default)]
pub struct Uniform;

impl Policy for Uniform {
    fn rank(&self, slate: &dyn Slate, _ctx: &RankContext<'_>, rng: &mut fastrand::Rng) -> Ranking {
        let mut order: Vec<u32> = (0..slate.len() as u32).collect();
        rng.shuffle(&mut order);
        Ranking { order, chance: Chance::Uniform }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ctx, slate};
    use super::*;
    use crate::scoring::{Priors, Weights};

    /// The first place goes to each of 5 candidates about equally often: Pearson's chi-square
    /// over 5,000 draws stays under 18.47, the 0.999 quantile with 4 degrees of freedom.
    #[test]
    fn every_candidate_comes_first_about_equally_often() {
        let (w, p) = (Weights::default(), Priors::from_totals(0, 0, 0, 0, 20.0));
        let s = slate(5);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut counts = [0f64; 5];
        let n = 5000;
        for _ in 0..n {
            let r = Uniform.rank(&s, &ctx(&w, &p, 8), &mut rng);
            counts[r.order[0] as usize] += 1.0;
            assert_eq!(r.chance.of_winner(5), 0.2);
        }
        let e = n as f64 / 5.0;
        let chi2: f64 = counts.iter().map(|c| (c - e) * (c - e) / e).sum();
        assert!(chi2 < 18.47, "chi-square {chi2}: {counts:?}");
    }
}
