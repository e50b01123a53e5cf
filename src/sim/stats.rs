//! Means with 95% confidence intervals over seeds (Student's t, from statrs), and paired
//! comparisons between policies run on the same seeds.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean over runs with its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Sample mean.
    pub mean: f64,
    /// Lower end of the 95% interval; absent with fewer than two values.
    pub low: Option<f64>,
    /// Upper end.
    pub high: Option<f64>,
    /// Values the mean is over.
    pub n: usize,
}

impl Interval {
    /// Half the interval's width, when there is one.
    pub fn half_width(&self) -> Option<f64> {
        Some((self.high? - self.low?) / 2.0)
    }
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    // df ≥ 1 here, so the distribution is valid.
    StudentsT::new(0.0, 1.0, df as f64).map(|t| t.inverse_cdf(0.975)).unwrap_or(f64::NAN)
}

/// Mean and t-interval of `xs` (non-finite values are left out); `None` when nothing is left.
pub fn interval(xs: &[f64]) -> Option<Interval> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some(Interval { mean, low: None, high: None, n });
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Some(Interval { mean, low: Some(mean - half), high: Some(mean + half), n })
}

/// Population standard deviation (spread across brokers within one run).
pub fn spread(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn t_quantiles_match_published_tables() {
        // Two-sided 95% critical values of Student's t (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
        for (df, want) in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (100, 1.984)] {
            assert!((t975(df) - want).abs() < 5e-4, "df {df}: {} vs {want}", t975(df));
        }
    }

    #[test]
    fn interval_matches_a_reference_computation() {
        // R: t.test(1:5)$conf.int = 1.036757 4.963243.
        let i = interval(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(i.mean, 3.0);
        assert!((i.low.unwrap() - 1.036757).abs() < 1e-6 && (i.high.unwrap() - 4.963243).abs() < 1e-6, "{i:?}");
        // One value: a mean and no interval; nothing finite: nothing.
        assert_eq!(interval(&[2.0]).unwrap().low, None);
        assert!(interval(&[f64::NAN]).is_none());
    }

    proptest! {
        #[test]
        fn the_interval_holds_the_mean_and_shifts_with_the_data(xs in proptest::collection::vec(-1e6f64..1e6, 2..40), shift in -1e3f64..1e3) {
            let a = interval(&xs).unwrap();
            let (lo, hi) = (a.low.unwrap(), a.high.unwrap());
            prop_assert!(lo <= a.mean && a.mean <= hi);
            let moved: Vec<f64> = xs.iter().map(|x| x + shift).collect();
            let b = interval(&moved).unwrap();
            prop_assert!((b.mean - a.mean - shift).abs() < 1e-6 * (1.0 + a.mean.abs()));
            prop_assert!((b.half_width().unwrap() - a.half_width().unwrap()).abs() < 1e-6 * (1.0 + a.half_width().unwrap()));
        }

        #[test]
        fn the_interval_covers_the_true_mean_about_95_percent_of_the_time(seed in 0u64..4) {
            // 400 samples of 8 normal draws with mean 10: coverage near 95% (binomial sd ≈ 1.1%).
            let mut r = leadrouter_models::rng::SplitMix64::new(seed);
            let mut covered = 0;
            for _ in 0..400 {
                let xs: Vec<f64> = (0..8).map(|_| 10.0 + crate::sim::world::normal(&mut r)).collect();
                let i = interval(&xs).unwrap();
                covered += u32::from(i.low.unwrap() <= 10.0 && 10.0 <= i.high.unwrap());
            }
            prop_assert!((360..=396).contains(&covered), "{covered}/400");
        }
    }
}
