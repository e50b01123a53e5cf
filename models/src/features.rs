//! The conversion model's feature specification, version 2: one function builds the vector
//! for training (from journal replay) and for serving (from live actors), so they cannot drift.
//! Version 2 appends the semantic features (34–37) to version 1's 34, so a version-1 model
//! reads the first 34 columns of the same row and keeps working.
//!
//! | index | feature |
//! |---|---|
//! | 0–6 | requested lines, one-hot (AUTO, HOME, RENTERS, LIFE, HEALTH, COMMERCIAL, UMBRELLA) |
//! | 7–10 | urgency, one-hot (LOW, MEDIUM, HIGH, CRITICAL) |
//! | 11 | ln(1 + estimated value) / 12 |
//! | 12 | complexity / 10 |
//! | 13 | 1 when any profile field is present |
//! | 14 | age / 100 (0 when absent) |
//! | 15 | ln(1 + income) / 12 (0 when absent) |
//! | 16 | min(claims, 5) / 5 (0 when absent) |
//! | 17 | ln(1 + budget) / 10 (0 when absent) |
//! | 18–20 | broker proficiency over the requested lines: mean, min, max (each / 5) |
//! | 21 | share of requested lines the broker is licensed for in the lead's state |
//! | 22 | tenure: years since the broker's first lead, capped at 5, / 5 |
//! | 23 | smoothed all-time conversion |
//! | 24 | smoothed conversion over the last 7 days |
//! | 25 | smoothed SLA compliance |
//! | 26 | utilisation (open / max concurrent) |
//! | 27 | ln(1 + leads the broker had in the lead's state) / 8 |
//! | 28 | smoothed conversion in the lead's state |
//! | 29 | mean proficiency × urgency rank / 3 |
//! | 30 | mean proficiency × feature 11 |
//! | 31 | feature 27 × mean proficiency |
//! | 32 | ln(1 + the broker's past leads in the requested lines) / 8 |
//! | 33 | smoothed conversion of the broker's past leads in the requested lines |
//! | 34 | 1 when the lead has text (notes) and semantic terms, else 0 (and 35–37 are 0) |
//! | 35 | semantic match: max(0, cosine of the lead's text vector and the broker's profile vector) |
//! | 36 | similar-lead rate: smoothed conversion of the lead's nearest past leads with this broker |
//! | 37 | ln(1 + the nearest past leads that went to this broker) / 3 |

use serde::{Deserialize, Serialize};

use crate::lead::{LeadFeatures, LineSet};
use crate::semantic::SemanticTerms;

/// Version of this specification; a model records the version it was trained with.
pub const FEATURE_SPEC_VERSION: u32 = 2;
/// Length of a feature vector.
pub const N_FEATURES: usize = 38;

/// How many leading columns of a row a model trained with feature spec `version` reads, or
/// `None` for a version this build does not know.
pub fn inputs_of_version(version: u32) -> Option<usize> {
    match version {
        1 => Some(34),
        2 => Some(N_FEATURES),
        _ => None,
    }
}

/// One feature vector.
pub type FeatureRow = [f32; N_FEATURES];

/// What a broker contributes, computed from its state at decision time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerFeatures {
    /// Proficiency 0–5 per line.
    pub proficiency: [u8; 7],
    /// Lines licensed (and unexpired) in the lead's state.
    pub licensed: LineSet,
    /// Days since the broker's first lead.
    pub tenure_days: f32,
    /// Smoothed all-time conversion.
    pub conversion: f32,
    /// Smoothed conversion over the last 7 days.
    pub recent_conversion: f32,
    /// Smoothed SLA compliance.
    pub sla_compliance: f32,
    /// Open leads / max concurrent.
    pub utilization: f32,
    /// Leads the broker had in the lead's state.
    pub state_leads: u32,
    /// Smoothed conversion in the lead's state.
    pub state_conversion: f32,
    /// Past leads in the requested lines (summed over lines).
    pub line_leads: u32,
    /// Smoothed conversion of past leads in the requested lines.
    pub line_conversion: f32,
}

fn ln1p_scaled(v: f64, scale: f64) -> f32 {
    ((v.max(0.0)).ln_1p() / scale) as f32
}

/// Builds the feature vector for one lead and one broker, with the pair's semantic terms when
/// the lead has text.
pub fn build(lead: &LeadFeatures, b: &BrokerFeatures, semantic: Option<&SemanticTerms>) -> FeatureRow {
    let mut f = [0f32; N_FEATURES];
    let mut n = 0u32;
    let (mut sum, mut min, mut max) = (0u32, 5u8, 0u8);
    let mut licensed = 0u32;
    for l in lead.lines.lines() {
        f[l.index()] = 1.0;
        let p = b.proficiency[l.index()];
        sum += p as u32;
        min = min.min(p);
        max = max.max(p);
        n += 1;
        licensed += u32::from(b.licensed.0 & (1 << l.index()) != 0);
    }
    let mean = if n == 0 { 0.0 } else { sum as f32 / (5.0 * n as f32) };
    if n == 0 {
        min = 0;
    }
    f[7 + lead.urgency.rank() as usize] = 1.0;
    f[11] = ln1p_scaled(lead.value, 12.0);
    f[12] = lead.complexity as f32 / 10.0;
    let has_profile = lead.age.is_some() || lead.income.is_some() || lead.claims.is_some() || lead.budget.is_some();
    f[13] = f32::from(u8::from(has_profile));
    f[14] = lead.age.map_or(0.0, |a| a as f32 / 100.0);
    f[15] = lead.income.map_or(0.0, |v| ln1p_scaled(v, 12.0));
    f[16] = lead.claims.map_or(0.0, |c| c.min(5) as f32 / 5.0);
    f[17] = lead.budget.map_or(0.0, |v| ln1p_scaled(v, 10.0));
    f[18] = mean;
    f[19] = min as f32 / 5.0;
    f[20] = max as f32 / 5.0;
    f[21] = if n == 0 { 0.0 } else { licensed as f32 / n as f32 };
    f[22] = (b.tenure_days / 365.0).clamp(0.0, 5.0) / 5.0;
    f[23] = b.conversion;
    f[24] = b.recent_conversion;
    f[25] = b.sla_compliance;
    f[26] = b.utilization;
    f[27] = ln1p_scaled(b.state_leads as f64, 8.0);
    f[28] = b.state_conversion;
    f[29] = mean * lead.urgency.rank() as f32 / 3.0;
    f[30] = mean * f[11];
    f[31] = f[27] * mean;
    f[32] = ln1p_scaled(b.line_leads as f64, 8.0);
    f[33] = b.line_conversion;
    if let Some(s) = semantic {
        f[34] = 1.0;
        f[35] = s.semantic_match.max(0.0) as f32;
        f[36] = s.similar_rate as f32;
        f[37] = (f64::from(s.similar_leads).ln_1p() / 3.0) as f32;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{InsuranceLine, Urgency};

    #[test]
    fn layout_by_hand() {
        let lead = LeadFeatures {
            lines: LineSet::of(&[InsuranceLine::Auto, InsuranceLine::Home]),
            urgency: Urgency::High,
            value: (1f64).exp() - 1.0,
            complexity: 7,
            age: Some(50),
            ..LeadFeatures::default()
        };
        let mut b =
            BrokerFeatures { licensed: LineSet::of(&[InsuranceLine::Auto]), state_leads: 0, conversion: 0.2, ..BrokerFeatures::default() };
        b.proficiency[InsuranceLine::Auto.index()] = 5;
        b.proficiency[InsuranceLine::Home.index()] = 3;
        let f = build(&lead, &b, None);
        assert_eq!(&f[0..7], &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&f[7..11], &[0.0, 0.0, 1.0, 0.0]);
        assert!((f[11] - 1.0 / 12.0).abs() < 1e-6);
        assert_eq!((f[12], f[13], f[14]), (0.7, 1.0, 0.5));
        assert_eq!((f[18], f[19], f[20], f[21]), (0.8, 0.6, 1.0, 0.5));
        assert_eq!(f[23], 0.2);
        assert!((f[29] - 0.8 * 2.0 / 3.0).abs() < 1e-6);
        assert!(f.iter().all(|v| v.is_finite()));
        assert_eq!(&f[34..], &[0.0; 4]);
        let s = SemanticTerms { semantic_match: 0.6, similar_leads: 4, similar_rate: 0.25, ..SemanticTerms::default() };
        let g = build(&lead, &b, Some(&s));
        assert_eq!(&g[..34], &f[..34], "version 1's columns do not change");
        assert_eq!((g[34], g[35], g[36]), (1.0, 0.6, 0.25));
        assert!((g[37] - (5f32).ln() / 3.0).abs() < 1e-6);
        assert_eq!((inputs_of_version(1), inputs_of_version(2), inputs_of_version(3)), (Some(34), Some(38), None));
    }
}
