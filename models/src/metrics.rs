//! Classification metrics for conversion predictions: AUC, log loss, Brier score and expected
//! calibration error. Checked against scikit-learn's published examples.

use serde::{Deserialize, Serialize};

/// Clamp for probabilities inside logarithms.
pub const EPS: f64 = 1e-7;

/// Metrics of one predictor on one labelled set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Area under the ROC curve (0.5 = chance); null when one class is absent.
    pub auc: Option<f64>,
    /// Mean binary cross-entropy.
    pub log_loss: f64,
    /// Mean squared error of the probability.
    pub brier: f64,
    /// Expected calibration error over 10 equal-width bins.
    pub calibration_error: f64,
    /// Rows.
    pub rows: usize,
    /// Positive rows.
    pub positives: usize,
}

impl Metrics {
    /// All metrics of predictions `p` for labels `y`.
    pub fn of(y: &[bool], p: &[f64]) -> Self {
        Self {
            auc: auc(y, p),
            log_loss: log_loss(y, p),
            brier: brier(y, p),
            calibration_error: calibration_error(y, p, 10),
            rows: y.len(),
            positives: y.iter().filter(|&&v| v).count(),
        }
    }
}

/// ROC AUC by the rank-sum (Mann–Whitney) formula, ties sharing their mean rank.
pub fn auc(y: &[bool], p: &[f64]) -> Option<f64> {
    let pos = y.iter().filter(|&&v| v).count();
    let neg = y.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| y[k]).count() as f64 * mean_rank;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Mean binary cross-entropy with probabilities clamped to [EPS, 1 − EPS].
pub fn log_loss(y: &[bool], p: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    y.iter()
        .zip(p)
        .map(|(&t, &q)| {
            let q = q.clamp(EPS, 1.0 - EPS);
            if t {
                -q.ln()
            } else {
                -(1.0 - q).ln()
            }
        })
        .sum::<f64>()
        / n
}

/// Mean squared difference between probability and outcome.
pub fn brier(y: &[bool], p: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    y.iter().zip(p).map(|(&t, &q)| (q - f64::from(u8::from(t))).powi(2)).sum::<f64>() / n
}

/// Expected calibration error: bins of equal width, |mean prediction − observed rate| weighted
/// by the bin's share of rows.
pub fn calibration_error(y: &[bool], p: &[f64], bins: usize) -> f64 {
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for (&t, &q) in y.iter().zip(p) {
        let b = ((q * bins as f64) as usize).min(bins - 1);
        sum_p[b] += q;
        sum_y[b] += f64::from(u8::from(t));
        count[b] += 1;
    }
    let n = y.len().max(1) as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (sum_p[b] - sum_y[b]).abs() / n).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn's documentation examples.
    #[test]
    fn auc_matches_sklearn_roc_auc_score_example() {
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let a = auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
        assert_eq!(auc(&[true, true], &[0.1, 0.2]), None);
        // All tied: exactly chance.
        assert_eq!(auc(&[true, false, true, false], &[0.5; 4]), Some(0.5));
    }

    #[test]
    fn log_loss_matches_sklearn_example() {
        // log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]])
        // == 0.21616187468057912 (positive class "spam").
        let l = log_loss(&[true, false, false, true], &[0.9, 0.1, 0.2, 0.65]);
        assert!((l - 0.21616187468057912).abs() < 1e-12, "{l}");
    }

    #[test]
    fn brier_matches_sklearn_example() {
        // brier_score_loss([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]) == 0.0375
        let b = brier(&[false, true, true, false], &[0.1, 0.9, 0.8, 0.3]);
        assert!((b - 0.0375).abs() < 1e-12, "{b}");
    }

    #[test]
    fn calibration_error_by_hand() {
        // Bin 0.1–0.2: predictions 0.1, 0.1 with one positive → |0.2 − 1| / 4.
        // Bin 0.9–1.0: predictions 0.9, 0.9 with two positives → |1.8 − 2| / 4.
        let e = calibration_error(&[true, false, true, true], &[0.1, 0.1, 0.9, 0.9], 10);
        assert!((e - (0.8 + 0.2) / 4.0).abs() < 1e-12, "{e}");
        // Perfectly calibrated constant predictor.
        assert!(calibration_error(&[true, false], &[0.5, 0.5], 10) < 1e-12);
    }
}
