//! Semantic matching, pure: the text a lead and a broker are embedded from, the structured
//! embedding used when no sentence encoder is installed, cosine similarity, and the
//! similar-lead evidence (how leads like this one ended with each broker).
//!
//! A lead has text only when it carries `leadData.notes`; its embedded text is the notes
//! followed by its profile in words ([`lead_text`]). A lead without notes pays nothing for
//! embeddings and has no semantic terms. A broker's text is its `bio` followed by its
//! specialties and licensed lines in words ([`broker_text`]).

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::lead::{InsuranceLine, LeadData, LineSet, StateCode};
pub use crate::lead::{LeadSemantics, Neighbour};

/// Length of the structured embedding ([`structured_lead`], [`structured_broker`]).
pub const STRUCTURED_DIM: usize = 32;

/// The name the structured embedding reports as its model.
pub const STRUCTURED_MODEL: &str = "structured-v1";

fn line_words(l: InsuranceLine) -> &'static str {
    match l {
        InsuranceLine::Auto => "auto",
        InsuranceLine::Home => "home",
        InsuranceLine::Renters => "renters",
        InsuranceLine::Life => "life",
        InsuranceLine::Health => "health",
        InsuranceLine::Commercial => "commercial",
        InsuranceLine::Umbrella => "umbrella",
    }
}

fn join_lines(lines: impl Iterator<Item = InsuranceLine>) -> String {
    lines.map(line_words).collect::<Vec<_>>().join(", ")
}

/// The text a lead is embedded from, or `None` when it has no notes. The notes come first,
/// then: "Wants <lines> insurance in <state>, urgency <urgency>, value about <value> dollars.",
/// and, when given: "Customer aged <age>, works as <profession>.", "Insured with <provider>,
/// <claims> recent claims.", "Asks for <special features>.".
pub fn lead_text(d: &LeadData) -> Option<String> {
    let notes = d.notes.as_deref().map(str::trim).filter(|n| !n.is_empty())?;
    let mut t = String::with_capacity(notes.len() + 160);
    t.push_str(notes);
    if !notes.ends_with('.') {
        t.push('.');
    }
    let urgency = format!("{:?}", d.urgency).to_lowercase();
    t.push_str(&format!(
        " Wants {} insurance in {}, urgency {}, value about {:.0} dollars.",
        join_lines(d.insurance_types.iter().copied()),
        d.state,
        urgency,
        d.estimated_value
    ));
    if let Some(p) = &d.personal_info {
        let mut parts = Vec::new();
        if let Some(a) = p.age {
            parts.push(format!("aged {a}"));
        }
        if let Some(w) = p.profession.as_deref().filter(|w| !w.trim().is_empty()) {
            parts.push(format!("works as {}", w.trim()));
        }
        if !parts.is_empty() {
            t.push_str(&format!(" Customer {}.", parts.join(", ")));
        }
    }
    if let Some(c) = &d.coverage {
        match (c.current_provider.as_deref().filter(|p| !p.trim().is_empty()), c.claims) {
            (Some(p), Some(n)) => t.push_str(&format!(" Insured with {}, {n} recent claims.", p.trim())),
            (Some(p), None) => t.push_str(&format!(" Insured with {}.", p.trim())),
            (None, Some(n)) => t.push_str(&format!(" {n} recent claims.")),
            (None, None) => {}
        }
    }
    if let Some(r) = &d.requirements {
        let wants: Vec<&str> = r.special_features.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if !wants.is_empty() {
            t.push_str(&format!(" Asks for {}.", wants.join(", ")));
        }
    }
    Some(t)
}

/// The text a broker is embedded from: its `bio` (when any), then "Specialises in <line>
/// (<proficiency> of 5), ...." and "Licensed for <lines> in <states>.".
pub fn broker_text(b: &Broker) -> String {
    let mut t = String::new();
    if let Some(bio) = b.bio.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        t.push_str(bio);
        if !bio.ends_with('.') {
            t.push('.');
        }
        t.push(' ');
    }
    if !b.specialties.is_empty() {
        let s: Vec<String> = b.specialties.iter().map(|s| format!("{} ({} of 5)", line_words(s.line), s.proficiency)).collect();
        t.push_str(&format!("Specialises in {}. ", s.join(", ")));
    }
    let mut lines = LineSet::default();
    let mut states: Vec<&str> = Vec::new();
    for l in &b.licenses {
        lines = LineSet(lines.0 | LineSet::of(&l.lines).0);
        if !states.contains(&l.state.as_str()) {
            states.push(&l.state);
        }
    }
    t.push_str(&format!("Licensed for {} insurance in {}.", join_lines(lines.lines()), states.join(", ")));
    t
}

/// Scales `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The dot product; for unit vectors, their cosine similarity.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

// Structured embedding layout: 0–6 lines, 7–10 urgency, 11 value, 12–31 the state hashed into 20
// buckets.
const STATE_BUCKETS: usize = 20;

fn state_bucket(s: &str) -> usize {
    12 + (StateCode::of(s).0 as usize).wrapping_mul(2_654_435_761) % STATE_BUCKETS
}

/// A lead's structured embedding (`STRUCTURED_DIM`, unit length): its lines one-hot (weight
/// 1), its urgency one-hot (0.5), ln(1 + value) / 14 and its state in one of 20 hashed buckets
/// (0.7). Deterministic; used for every text when no sentence encoder is installed.
pub fn structured_lead(d: &LeadData) -> Vec<f32> {
    let mut v = vec![0f32; STRUCTURED_DIM];
    for l in &d.insurance_types {
        v[l.index()] = 1.0;
    }
    v[7 + d.urgency.rank() as usize] = 0.5;
    v[11] = (d.estimated_value.max(0.0).ln_1p() / 14.0) as f32;
    v[state_bucket(&d.state)] = 0.7;
    normalize(&mut v);
    v
}

/// A broker's structured embedding, in the lead's layout: its proficiency per line / 5 (or
/// 0.4 for a licensed line without a specialty), urgency spread evenly (0.25 each), the value
/// slot at the middle of the range (0.5), and its licensed states' buckets sharing 0.7.
pub fn structured_broker(b: &Broker) -> Vec<f32> {
    let mut v = vec![0f32; STRUCTURED_DIM];
    for l in &b.licenses {
        for line in &l.lines {
            v[line.index()] = v[line.index()].max(0.4);
        }
    }
    for s in &b.specialties {
        v[s.line.index()] = f32::from(s.proficiency) / 5.0;
    }
    v[7..11].fill(0.25);
    v[11] = 0.5;
    let n = b.licenses.len().max(1) as f32;
    for l in &b.licenses {
        v[state_bucket(&l.state)] += 0.7 / n.sqrt();
    }
    normalize(&mut v);
    v
}

/// Pseudo-observations of the similar-lead rate's prior (the neighbours' overall rate).
pub const SIMILAR_PRIOR_STRENGTH: f64 = 2.0;

/// What the semantic channel adds to one candidate's score and breakdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ScoreSemanticTerms)]
#[serde(rename_all = "camelCase")]
pub struct SemanticTerms {
    /// Cosine similarity of the lead's text vector and the broker's profile vector, -1 to 1.
    pub semantic_match: f64,
    /// The `semantic` weight of the strategy.
    pub weight: f64,
    /// `max(semantic_match, 0) × weight`, added to the score.
    pub contribution: f64,
    /// Of the lead's nearest past leads, how many went to this broker ...
    pub similar_leads: u32,
    /// ... and how many of those converted.
    pub similar_converted: u32,
    /// `(converted + 2 × p) / (leads + 2)`, p the neighbours' overall conversion rate: the
    /// smoothed "conversion on leads like this" with this broker.
    pub similar_rate: f64,
}

impl SemanticTerms {
    /// The terms for a broker with profile-vector similarity `semantic_match`, from the lead's
    /// `neighbours`, under the strategy's semantic `weight`.
    pub fn new(semantic_match: f32, broker_id: &str, neighbours: &[Neighbour], weight: f64) -> Self {
        let total = neighbours.len() as f64;
        let all_converted = neighbours.iter().filter(|n| n.converted).count() as f64;
        let prior = if total > 0.0 { all_converted / total } else { 0.0 };
        let mine = neighbours.iter().filter(|n| n.broker_id == broker_id);
        let (mut leads, mut converted) = (0u32, 0u32);
        for n in mine {
            leads += 1;
            converted += u32::from(n.converted);
        }
        let m = f64::from(semantic_match.clamp(-1.0, 1.0));
        Self {
            semantic_match: m,
            weight,
            contribution: m.max(0.0) * weight,
            similar_leads: leads,
            similar_converted: converted,
            similar_rate: (f64::from(converted) + SIMILAR_PRIOR_STRENGTH * prior) / (f64::from(leads) + SIMILAR_PRIOR_STRENGTH),
        }
    }

    /// "7 of 9 similar leads converted with this broker".
    pub fn evidence(&self) -> String {
        format!("{} of {} similar leads converted with this broker", self.similar_converted, self.similar_leads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::Urgency;

    fn lead(notes: Option<&str>) -> LeadData {
        serde_json::from_value(serde_json::json!({
            "insuranceTypes": ["COMMERCIAL", "AUTO"], "urgency": "HIGH", "state": "TX", "estimatedValue": 12000,
            "personalInfo": {"age": 41, "profession": "courier"},
            "coverage": {"currentProvider": "Acme", "claims": 1},
            "requirements": {"specialFeatures": ["hired auto"]},
            "notes": notes
        }))
        .unwrap()
    }

    #[test]
    fn lead_text_is_notes_then_profile_in_words() {
        assert_eq!(lead(None).urgency, Urgency::High);
        assert_eq!(lead_text(&lead(None)), None);
        assert_eq!(lead_text(&lead(Some("   "))), None);
        assert_eq!(
            lead_text(&lead(Some("fleet of 12 delivery vans"))).unwrap(),
            "fleet of 12 delivery vans. Wants commercial, auto insurance in TX, urgency high, value about 12000 dollars. \
             Customer aged 41, works as courier. Insured with Acme, 1 recent claims. Asks for hired auto."
        );
    }

    #[test]
    fn broker_text_renders_bio_specialties_and_licences() {
        let b: Broker = serde_json::from_value(serde_json::json!({
            "id": "b1", "name": "B", "bio": "Fleet and trucking risks",
            "specialties": [{"type": "COMMERCIAL", "proficiency": 5}],
            "licenses": [{"state": "TX", "lines": ["COMMERCIAL", "AUTO"], "expiresOn": "2099-01-01"}, {"state": "OK", "lines": ["AUTO"], "expiresOn": "2099-01-01"}],
            "capacity": {"maxConcurrent": 5, "dailyCap": 50}
        }))
        .unwrap();
        assert_eq!(
            broker_text(&b),
            "Fleet and trucking risks. Specialises in commercial (5 of 5). Licensed for auto, commercial insurance in TX, OK."
        );
        let v = structured_broker(&b);
        assert_eq!(v.len(), STRUCTURED_DIM);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
        // The structured lead for commercial + auto in TX is closer to this broker than a life
        // lead in NY.
        let near = structured_lead(&lead(None));
        let mut far = lead(None);
        far.insurance_types = vec![InsuranceLine::Life];
        far.state = "NY".into();
        assert!(dot(&near, &v) > dot(&structured_lead(&far), &v) + 0.2);
    }

    #[test]
    fn dot_matches_the_naive_sum_for_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "length {n}");
        }
    }

    #[test]
    fn similar_evidence_by_hand() {
        let n = |b: &str, c: bool| Neighbour { lead_id: "x".into(), broker_id: b.into(), converted: c, similarity: 0.9 };
        // 10 neighbours, 4 converted (p = 0.4); broker a had 3 of them, 2 converted.
        let ns = vec![
            n("a", true),
            n("a", true),
            n("a", false),
            n("b", true),
            n("b", false),
            n("c", true),
            n("c", false),
            n("c", false),
            n("d", false),
            n("d", false),
        ];
        let t = SemanticTerms::new(0.5, "a", &ns, 0.2);
        assert_eq!((t.similar_leads, t.similar_converted), (3, 2));
        assert!((t.similar_rate - (2.0 + 0.8) / 5.0).abs() < 1e-12);
        assert!((t.contribution - 0.1).abs() < 1e-12);
        assert_eq!(t.evidence(), "2 of 3 similar leads converted with this broker");
        // A broker with none of them gets the neighbours' rate; a negative match adds nothing.
        let t = SemanticTerms::new(-0.3, "z", &ns, 0.2);
        assert!((t.similar_rate - 0.4).abs() < 1e-12);
        assert_eq!(t.contribution, 0.0);
        assert_eq!(SemanticTerms::new(0.1, "a", &[], 1.0).similar_rate, 0.0);
    }
}
