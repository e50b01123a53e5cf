//! Controlled exploration: how a scored strategy may pick a broker other than its best, and the
//! exact probability of every pick, so each decision can log its propensity.
//!
//! Exploration only ever chooses among the scored candidates (every one passed the hard
//! constraints) whose score is within a band of the best: `score ≥ best − band·|best|`. The
//! greedy choice is the strategy's best (the first of the order it is given).
//!
//! - `epsilon`: the best with probability 1 − ε, otherwise a uniform draw over the band (VW's
//!   default ε is 0.05).
//! - `softmax`: P(i) ∝ exp((sᵢ − s_best) / (T·|s_best|)) over the band; the temperature is in
//!   units of the best score, so one setting fits every strategy's scale.
//! - `thompson`: each candidate's score is drawn once from a normal distribution centred on its
//!   score, whose spread is the uncertainty of its conversion estimate carried into score units
//!   (`spread`); the highest draw wins. The probability of each outcome is the one-dimensional
//!   integral `P(i) = ∫ φ(z) Πⱼ Φ((sᵢ + σᵢz − sⱼ)/σⱼ) dz`, computed by Simpson's rule with steps
//!   fine enough for the narrowest rival (error below 1e-7 here), with candidates of no spread
//!   handled exactly as steps.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// How to explore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The best, or with probability ε a uniform draw over the band.
    Epsilon,
    /// A draw weighted by exp(relative score ÷ temperature).
    Softmax,
    /// The best of one draw per candidate from its score's uncertainty.
    Thompson,
}

/// An exploration setting: in config per strategy, per experiment arm, or per request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exploration {
    /// The method.
    pub method: Method,
    /// `epsilon` only: the share of decisions drawn uniformly from the band, 0 < ε ≤ 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// `softmax` only: temperature in units of the best score, 0.001–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Candidates scoring below `best − band·|best|` are never explored, 0 < band ≤ 10; the
    /// configured `routing.exploration_band` when absent. A decision logs the band it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<f64>,
}

/// A scored candidate as exploration sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contender {
    /// Its score.
    pub score: f64,
    /// `thompson`: the standard deviation of its score (0: certain).
    pub spread: f64,
}

/// Integration range and steps of the Thompson integral (even).
const Z_MAX: f64 = 7.0;
const STEPS: usize = 96;
const MAX_STEPS: usize = 8192;

impl Exploration {
    /// Checks the setting; `field` prefixes the names in errors (e.g. `exploration`).
    pub fn validate(&self, field: &str) -> Result<()> {
        let bad = |k: &str, why: &str| Err(ModelError::invalid(format!("{field}.{k}"), why));
        match (self.method, self.epsilon, self.temperature) {
            (Method::Epsilon, Some(e), None) if e.is_finite() && e > 0.0 && e <= 1.0 => {}
            (Method::Epsilon, Some(_), None) => return bad("epsilon", "must be a number in (0, 1]"),
            (Method::Epsilon, None, _) => return bad("epsilon", "is required by method 'epsilon'"),
            (Method::Softmax, None, Some(t)) if t.is_finite() && (1e-3..=100.0).contains(&t) => {}
            (Method::Softmax, None, Some(_)) => return bad("temperature", "must be a number from 0.001 to 100"),
            (Method::Softmax, _, None) => return bad("temperature", "is required by method 'softmax'"),
            (Method::Thompson, None, None) => {}
            (_, Some(_), _) => return bad("epsilon", "applies only to method 'epsilon'"),
            (_, _, Some(_)) => return bad("temperature", "applies only to method 'softmax'"),
        }
        match self.band {
            Some(b) if !(b.is_finite() && b > 0.0 && b <= 10.0) => bad("band", "must be a number in (0, 10]"),
            _ => Ok(()),
        }
    }

    /// This setting with its band filled in from `default` when absent.
    pub fn with_band(mut self, default: f64) -> Self {
        self.band.get_or_insert(default);
        self
    }

    /// Which contenders are in the band of the best (the first is always).
    pub fn in_band(&self, c: &[Contender]) -> Vec<bool> {
        let Some(best) = c.iter().map(|x| x.score).reduce(f64::max) else { return Vec::new() };
        let floor = best - self.band.unwrap_or(0.0) * best.abs().max(1e-12);
        c.iter().enumerate().map(|(i, x)| i == 0 || x.score >= floor).collect()
    }

    /// The probability of each contender being picked; `c` is in the strategy's order, best
    /// first. The probabilities sum to 1.
    pub fn probabilities(&self, c: &[Contender]) -> Vec<f64> {
        let band = self.in_band(c);
        let n = band.iter().filter(|b| **b).count();
        if n == 0 {
            return Vec::new();
        }
        let mut p = match self.method {
            Method::Epsilon => {
                let e = self.epsilon.unwrap_or(0.0);
                band.iter().enumerate().map(|(i, &b)| if b { e / n as f64 + if i == 0 { 1.0 - e } else { 0.0 } } else { 0.0 }).collect()
            }
            Method::Softmax => {
                let t = self.temperature.unwrap_or(1.0) * c[0].score.abs().max(1e-12);
                let top = c.iter().zip(&band).filter(|(_, b)| **b).map(|(x, _)| x.score).fold(f64::MIN, f64::max);
                c.iter().zip(&band).map(|(x, &b)| if b { ((x.score - top) / t).exp() } else { 0.0 }).collect()
            }
            Method::Thompson => thompson(c, &band),
        };
        let sum: f64 = p.iter().sum();
        if sum > 0.0 {
            for x in &mut p {
                *x /= sum;
            }
        }
        p
    }

    /// Picks a contender: returns its index and every contender's probability.
    pub fn draw(&self, c: &[Contender], rng: &mut fastrand::Rng) -> (usize, Vec<f64>) {
        let p = self.probabilities(c);
        if p.is_empty() {
            return (0, p);
        }
        let pick = match self.method {
            Method::Thompson => {
                let band = self.in_band(c);
                let mut best: Option<(usize, f64)> = None;
                for (i, x) in c.iter().enumerate().filter(|(i, _)| band[*i]) {
                    let v = x.score + x.spread * normal(rng);
                    if best.is_none_or(|(_, b)| v > b) {
                        best = Some((i, v));
                    }
                }
                best.map_or(0, |(i, _)| i)
            }
            _ => {
                let u = rng.f64();
                let mut acc = 0.0;
                let last = p.iter().rposition(|x| *x > 0.0).unwrap_or(0);
                p.iter()
                    .position(|x| {
                        acc += x;
                        *x > 0.0 && u < acc
                    })
                    .unwrap_or(last)
            }
        };
        (pick, p)
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64(); // (0, 1]
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The standard normal's distribution function and density at the nodes of a fine grid over
/// [−`TABLE_EDGE`, `TABLE_EDGE`]; between nodes both are interpolated by cubic Hermite
/// polynomials (error below 1e-12), several times faster than `erfc` and `exp`, which the
/// Thompson integral calls tens of thousands of times per decision.
const TABLE_EDGE: f64 = 8.5;
const TABLE_STEPS: usize = 4096;

fn table() -> &'static [[f64; 2]] {
    static T: std::sync::OnceLock<Vec<[f64; 2]>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let h = 2.0 * TABLE_EDGE / TABLE_STEPS as f64;
        (0..=TABLE_STEPS)
            .map(|k| {
                let x = -TABLE_EDGE + k as f64 * h;
                [0.5 * libm::erfc(-x / std::f64::consts::SQRT_2), (-0.5 * x * x).exp() / std::f64::consts::TAU.sqrt()]
            })
            .collect()
    })
}

/// Cubic Hermite interpolation on the table: `which` 0 for Φ (derivative φ), 1 for φ
/// (derivative −xφ).
fn interpolate(x: f64, which: usize) -> f64 {
    let h = 2.0 * TABLE_EDGE / TABLE_STEPS as f64;
    let u = (x + TABLE_EDGE) / h;
    let k = (u as usize).min(TABLE_STEPS - 1);
    let t = u - k as f64;
    let (a, b) = (table()[k], table()[k + 1]);
    let (x0, x1) = (-TABLE_EDGE + k as f64 * h, -TABLE_EDGE + (k + 1) as f64 * h);
    let (d0, d1) = if which == 0 { (a[1], b[1]) } else { (-x0 * a[1], -x1 * b[1]) };
    let (t2, t3) = (t * t, t * t * t);
    (2.0 * t3 - 3.0 * t2 + 1.0) * a[which] + (t3 - 2.0 * t2 + t) * h * d0 + (-2.0 * t3 + 3.0 * t2) * b[which] + (t3 - t2) * h * d1
}

/// Standard normal distribution function.
fn phi_cdf(x: f64) -> f64 {
    if x <= -TABLE_EDGE {
        0.0
    } else if x >= TABLE_EDGE {
        1.0
    } else {
        interpolate(x, 0)
    }
}

/// Standard normal density.
fn phi_pdf(x: f64) -> f64 {
    if x.abs() >= TABLE_EDGE {
        0.0
    } else {
        interpolate(x, 1)
    }
}

/// Whether a certain `a` (index `i`) beats a certain `b` (index `j`): the draw keeps the first
/// of equal values.
fn beats(a: f64, i: usize, b: f64, j: usize) -> bool {
    a > b || (a == b && i < j)
}

/// P(contender i has the highest draw) for every contender in the band.
fn thompson(c: &[Contender], band: &[bool]) -> Vec<f64> {
    let idx: Vec<usize> = (0..c.len()).filter(|&i| band[i]).collect();
    let mut out = vec![0.0; c.len()];
    for &i in &idx {
        let (si, ti) = (c[i].score, c[i].spread.max(0.0));
        if ti == 0.0 {
            // A point: it wins when every certain rival is below it and every uncertain rival draws below it.
            let mut p = 1.0;
            for &j in idx.iter().filter(|&&j| j != i) {
                p *= if c[j].spread > 0.0 {
                    phi_cdf((si - c[j].score) / c[j].spread)
                } else if beats(si, i, c[j].score, j) {
                    1.0
                } else {
                    0.0
                };
            }
            out[i] = p;
            continue;
        }
        // Certain rivals cut the range from below: i must draw above each of them.
        let mut lo = -Z_MAX;
        for &j in idx.iter().filter(|&&j| j != i && c[j].spread <= 0.0) {
            lo = lo.max((c[j].score - si) / ti);
        }
        if lo >= Z_MAX {
            continue;
        }
        let f = |z: f64| {
            let x = si + ti * z;
            let mut v = phi_pdf(z);
            for &j in idx.iter().filter(|&&j| j != i && c[j].spread > 0.0) {
                v *= phi_cdf((x - c[j].score) / c[j].spread);
            }
            v
        };
        // Simpson's steps fine enough for the narrowest rival's transition (a quarter of its
        // width in this candidate's units), at least STEPS, at most MAX_STEPS.
        let narrowest = idx.iter().filter(|&&j| j != i && c[j].spread > 0.0).map(|&j| c[j].spread / ti).fold(f64::INFINITY, f64::min);
        if narrowest.is_infinite() {
            // Only certain rivals: the integral of the density above the highest of them.
            out[i] = 1.0 - phi_cdf(lo);
            continue;
        }
        let needed = ((Z_MAX - lo) / (narrowest / 4.0)).ceil();
        let steps = if needed.is_finite() { (needed as usize).clamp(STEPS, MAX_STEPS) } else { STEPS };
        let steps = steps + steps % 2;
        let h = (Z_MAX - lo) / steps as f64;
        let mut s = f(lo) + f(Z_MAX);
        for k in 1..steps {
            s += f(lo + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
        }
        out[i] = s * h / 3.0;
    }
    out
}

/// The spread of a score whose conversion estimate `p` rests on `n` observations (prior
/// pseudo-observations included) and moves the score by `slope` per unit of conversion: the
/// standard deviation of a Beta posterior with mean `p` and `n` observations, carried into score
/// units (a normal, delta-method approximation).
pub fn spread(slope: f64, p: f64, n: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    (slope.abs() * (p * (1.0 - p) / (n.max(0.0) + 1.0)).sqrt()).max(0.0)
}

/// How a candidate's score moves per unit of its conversion estimate: `value` under `roi`
/// (the score is P × value − …); otherwise the performance term, which is proportional to the
/// conversion estimate.
pub fn slope(b: &crate::Breakdown) -> f64 {
    match &b.roi {
        Some(r) => r.value,
        None if b.conversion > 0.0 => b.performance.contribution / b.conversion,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(scores: &[f64]) -> Vec<Contender> {
        scores.iter().map(|&s| Contender { score: s, spread: 0.0 }).collect()
    }

    fn field(e: ModelError) -> String {
        match e {
            ModelError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    fn x(method: Method, epsilon: Option<f64>, temperature: Option<f64>, band: f64) -> Exploration {
        Exploration { method, epsilon, temperature, band: Some(band) }
    }

    #[test]
    fn epsilon_by_hand() {
        // Band 0.2 of 1.0 keeps 1.0, 0.9, 0.8; 0.5 is out.
        let p = x(Method::Epsilon, Some(0.3), None, 0.2).probabilities(&c(&[1.0, 0.9, 0.8, 0.5]));
        let want = [0.7 + 0.1, 0.1, 0.1, 0.0];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn softmax_by_hand() {
        // T = 0.5 of |best| = 2 → divide differences by 1: weights 1, e^-0.5, e^-1.
        let p = x(Method::Softmax, None, Some(0.5), 1.0).probabilities(&c(&[2.0, 1.5, 1.0]));
        let w = [1.0, (-0.5f64).exp(), (-1.0f64).exp()];
        let s: f64 = w.iter().sum();
        for (a, b) in p.iter().zip(w) {
            assert!((a - b / s).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn thompson_of_two_normals_matches_the_closed_form() {
        // P(X1 > X2) for independent normals = Φ((μ1 − μ2)/√(σ1² + σ2²)).
        let cs = [Contender { score: 1.0, spread: 0.3 }, Contender { score: 0.8, spread: 0.4 }];
        let p = x(Method::Thompson, None, None, 10.0).probabilities(&cs);
        let want = phi_cdf(0.2 / 0.5);
        assert!((p[0] - want).abs() < 1e-7, "{p:?} vs {want}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn thompson_stays_exact_when_one_spread_is_far_narrower() {
        for (a, b) in [(0.3, 0.005), (0.004, 0.25), (0.1, 0.1)] {
            let cs = [Contender { score: 1.0, spread: a }, Contender { score: 0.97, spread: b }];
            let p = x(Method::Thompson, None, None, 10.0).probabilities(&cs);
            let want = 0.5 * libm::erfc(-(0.03 / f64::hypot(a, b)) / std::f64::consts::SQRT_2);
            assert!((p[0] - want).abs() < 1e-7, "{a} {b}: {p:?} vs {want}");
        }
    }

    #[test]
    fn the_normal_table_matches_erfc() {
        for k in 0..20_001 {
            let z = -9.0 + 18.0 * k as f64 / 20_000.0;
            let exact = 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
            assert!((phi_cdf(z) - exact).abs() < 1e-12, "{z}");
            let d = (-0.5 * z * z).exp() / std::f64::consts::TAU.sqrt();
            assert!((phi_pdf(z) - d).abs() < 1e-11, "{z}");
        }
    }

    #[test]
    fn thompson_with_a_certain_rival_is_a_step() {
        let cs = [Contender { score: 1.0, spread: 0.0 }, Contender { score: 0.9, spread: 0.2 }];
        let p = x(Method::Thompson, None, None, 10.0).probabilities(&cs);
        // The uncertain one wins when it draws above 1.0: P = 1 − Φ(0.5).
        assert!((p[1] - (1.0 - phi_cdf(0.5))).abs() < 1e-7, "{p:?}");
    }

    #[test]
    fn draws_follow_the_probabilities() {
        for e in [x(Method::Epsilon, Some(0.5), None, 0.5), x(Method::Softmax, None, Some(0.2), 0.5), x(Method::Thompson, None, None, 0.5)]
        {
            let cs = vec![
                Contender { score: 1.0, spread: 0.1 },
                Contender { score: 0.9, spread: 0.2 },
                Contender { score: 0.7, spread: 0.05 },
                Contender { score: 0.2, spread: 0.5 },
            ];
            let p = e.probabilities(&cs);
            let mut rng = fastrand::Rng::with_seed(7);
            let n = 40_000;
            let mut seen = [0u32; 4];
            for _ in 0..n {
                seen[e.draw(&cs, &mut rng).0] += 1;
            }
            assert_eq!(seen[3], 0, "out of band: {e:?}");
            for i in 0..4 {
                let f = seen[i] as f64 / n as f64;
                let sd = (p[i] * (1.0 - p[i]) / n as f64).sqrt();
                assert!((f - p[i]).abs() <= 5.0 * sd + 1e-9, "{e:?} {i}: {f} vs {}", p[i]);
            }
        }
    }

    #[test]
    fn validation_names_the_field() {
        let e = Exploration { method: Method::Epsilon, epsilon: None, temperature: None, band: None };
        assert_eq!(field(e.validate("exploration").unwrap_err()), "exploration.epsilon");
        let s = Exploration { method: Method::Softmax, epsilon: None, temperature: Some(0.0), band: None };
        assert_eq!(field(s.validate("exploration").unwrap_err()), "exploration.temperature");
        let t = Exploration { method: Method::Thompson, epsilon: Some(0.1), temperature: None, band: None };
        assert_eq!(field(t.validate("x").unwrap_err()), "x.epsilon");
        let b = Exploration { method: Method::Thompson, epsilon: None, temperature: None, band: Some(-1.0) };
        assert_eq!(field(b.validate("x").unwrap_err()), "x.band");
        assert!(Exploration { method: Method::Thompson, epsilon: None, temperature: None, band: None }.validate("x").is_ok());
    }

    #[test]
    fn spread_shrinks_with_evidence() {
        assert!(spread(1.0, 0.2, 10.0) > spread(1.0, 0.2, 1000.0));
        assert_eq!(spread(1.0, 0.0, 10.0), 0.0);
    }
}
