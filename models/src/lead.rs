//! Leads: the decide request, its validation and the features computed once per decision.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::geo::is_us_state;
use crate::strategy::Strategy;

/// Line of insurance a lead asks for and a broker may be licensed and skilled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InsuranceLine {
    /// Car insurance.
    Auto,
    /// Homeowners insurance.
    Home,
    /// Renters insurance.
    Renters,
    /// Life insurance.
    Life,
    /// Health insurance.
    Health,
    /// Commercial lines.
    Commercial,
    /// Umbrella liability.
    Umbrella,
}

impl InsuranceLine {
    /// Every line, in declaration order (the bit order of [`LineSet`]).
    pub const ALL: [InsuranceLine; 7] = [Self::Auto, Self::Home, Self::Renters, Self::Life, Self::Health, Self::Commercial, Self::Umbrella];

    /// The wire name, e.g. `AUTO`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Home => "HOME",
            Self::Renters => "RENTERS",
            Self::Life => "LIFE",
            Self::Health => "HEALTH",
            Self::Commercial => "COMMERCIAL",
            Self::Umbrella => "UMBRELLA",
        }
    }

    /// Position of the line in [`InsuranceLine::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A set of lines as a bit mask, cheap to compare on the hot path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineSet(pub u8);

impl LineSet {
    /// The set holding `lines`.
    pub fn of(lines: &[InsuranceLine]) -> Self {
        Self(lines.iter().fold(0, |m, l| m | (1 << l.index())))
    }

    /// True when every line of `other` is in `self`.
    pub fn contains_all(self, other: LineSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no line is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lines in the set.
    pub fn lines(self) -> impl Iterator<Item = InsuranceLine> {
        InsuranceLine::ALL.into_iter().filter(move |l| self.0 & (1 << l.index()) != 0)
    }
}

/// How quickly the customer needs an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Urgency {
    /// No hurry.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Contact soon; the broker's stricter SLA applies.
    High,
    /// Contact now; the broker's stricter SLA applies.
    Critical,
}

impl Urgency {
    /// 0 (low) to 3 (critical), for queue priority.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// High and critical leads are measured against the stricter SLA.
    pub fn is_urgent(self) -> bool {
        matches!(self, Self::High | Self::Critical)
    }
}

/// Where the customer is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeographicLocation {
    /// USPS state code.
    pub state: Option<String>,
    /// City name.
    #[schema(max_length = 200)]
    pub city: Option<String>,
}

/// Optional customer profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalInfo {
    /// Age in years.
    #[schema(maximum = 130)]
    pub age: Option<u32>,
    /// Yearly income, 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1000000000)]
    pub income: Option<f64>,
    /// Occupation.
    #[schema(max_length = 200)]
    pub profession: Option<String>,
}

/// What the customer has today.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Current insurer.
    #[schema(max_length = 200)]
    pub current_provider: Option<String>,
    /// Claims in recent years, at most 1,000.
    #[schema(maximum = 1000)]
    pub claims: Option<u32>,
}

/// What the customer asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    /// Free-form feature wishes.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub special_features: Vec<String>,
    /// Budget per year, 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1000000000)]
    pub budget: Option<f64>,
}

fn default_complexity() -> i64 {
    5
}

/// The lead itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadData {
    /// Requested lines; the broker must be licensed for every one in the lead's state.
    #[schema(min_items = 1)]
    pub insurance_types: Vec<InsuranceLine>,
    /// Urgency, `MEDIUM` when absent.
    #[serde(default)]
    pub urgency: Urgency,
    /// USPS state code where the policy would be written.
    pub state: String,
    /// Expected value of the policy, 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1000000000)]
    pub estimated_value: f64,
    /// 1 (simple) to 10 (complex), 5 when absent.
    #[serde(default = "default_complexity")]
    #[schema(minimum = 1, maximum = 10)]
    pub complexity: i64,
    /// Optional location detail.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::object::optional")]
    pub geographic_location: Option<GeographicLocation>,
    /// Optional profile.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::object::optional")]
    pub personal_info: Option<PersonalInfo>,
    /// Optional current coverage.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::object::optional")]
    pub coverage: Option<Coverage>,
    /// Optional requirements.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::object::optional")]
    pub requirements: Option<Requirements>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4000)]
    pub notes: Option<String>,
    /// The platform's customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_.:-]+$", min_length = 1, max_length = 128)]
    pub customer_id: Option<String>,
}

/// `POST /api/routing/decide` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecideRequest {
    /// Caller's id for the lead; deciding the same id twice returns the first decision.
    #[schema(pattern = "^[A-Za-z0-9_.:-]+$", min_length = 1, max_length = 128)]
    pub lead_id: String,
    /// The lead.
    pub lead_data: LeadData,
    /// Brokers that must not receive this lead.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub exclude_brokers: Vec<String>,
    /// Lines the broker must have as specialties.
    #[serde(default)]
    pub require_specialties: Vec<InsuranceLine>,
    /// Strategy; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Exploration for this lead's decisions (strategies `specialty`, `ml` and `roi`); the
    /// experiment arm's or the strategy's configured exploration when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<crate::Exploration>,
}

/// Longest id (lead or broker) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest free-text field accepted.
pub const MAX_TEXT_LEN: usize = 4000;
/// Longest short string (city, profession, provider) accepted.
pub const MAX_SHORT_LEN: usize = 200;
/// Largest amount of money the API takes (lead values, incomes, budgets, conversion values,
/// costs per lead): one billion. With it, every sum the engine keeps (value captured over a
/// broker's whole history, revenue per day) stays far from overflowing a float.
pub const MAX_AMOUNT: f64 = 1e9;

/// True when `s` holds no visible character: only whitespace, taking in the information
/// separators U+001C–U+001F as the JSON Schema pattern `\S` of the API document does.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Checks an id: 1–128 characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(ModelError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ModelError::invalid(field, format!("must be at most {MAX_ID_LEN} characters")));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
        return Err(ModelError::invalid(field, "may only contain letters, digits, '-', '_', '.' and ':'"));
    }
    Ok(())
}

fn check_len(field: &str, s: &Option<String>, max: usize) -> Result<()> {
    match s {
        Some(v) if v.chars().count() > max => Err(ModelError::invalid(field, format!("must be at most {max} characters"))),
        _ => Ok(()),
    }
}

/// An amount of money, when given: a number from 0 to [`MAX_AMOUNT`].
pub fn check_amount(field: &str, v: Option<f64>) -> Result<()> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=MAX_AMOUNT).contains(&x) => {
            Err(ModelError::invalid(field, "must be a number from 0 to 1000000000"))
        }
        _ => Ok(()),
    }
}

impl LeadData {
    /// Validates every field; errors name the field under `leadData`.
    pub fn validate(&self) -> Result<()> {
        if self.insurance_types.is_empty() {
            return Err(ModelError::invalid("leadData.insuranceTypes", "must name at least one line"));
        }
        for (i, l) in self.insurance_types.iter().enumerate() {
            if self.insurance_types[..i].contains(l) {
                return Err(ModelError::invalid(format!("leadData.insuranceTypes[{i}]"), format!("duplicate line {}", l.name())));
            }
        }
        if !is_us_state(&self.state) {
            return Err(ModelError::invalid("leadData.state", format!("'{}' is not a US postal state code", self.state)));
        }
        check_amount("leadData.estimatedValue", Some(self.estimated_value))?;
        if !(1..=10).contains(&self.complexity) {
            return Err(ModelError::invalid("leadData.complexity", "must be between 1 and 10"));
        }
        if let Some(g) = &self.geographic_location {
            if let Some(s) = &g.state {
                if !is_us_state(s) {
                    return Err(ModelError::invalid("leadData.geographicLocation.state", format!("'{s}' is not a US postal state code")));
                }
            }
            check_len("leadData.geographicLocation.city", &g.city, MAX_SHORT_LEN)?;
        }
        if let Some(p) = &self.personal_info {
            if matches!(p.age, Some(a) if a > 130) {
                return Err(ModelError::invalid("leadData.personalInfo.age", "must be between 0 and 130"));
            }
            check_amount("leadData.personalInfo.income", p.income)?;
            check_len("leadData.personalInfo.profession", &p.profession, MAX_SHORT_LEN)?;
        }
        if let Some(c) = &self.coverage {
            check_len("leadData.coverage.currentProvider", &c.current_provider, MAX_SHORT_LEN)?;
            if matches!(c.claims, Some(n) if n > 1000) {
                return Err(ModelError::invalid("leadData.coverage.claims", "must be between 0 and 1000"));
            }
        }
        if let Some(r) = &self.requirements {
            check_amount("leadData.requirements.budget", r.budget)?;
            if r.special_features.len() > 50 {
                return Err(ModelError::invalid("leadData.requirements.specialFeatures", "must have at most 50 entries"));
            }
            for (i, f) in r.special_features.iter().enumerate() {
                check_len(&format!("leadData.requirements.specialFeatures[{i}]"), &Some(f.clone()), MAX_SHORT_LEN)?;
            }
        }
        check_len("leadData.notes", &self.notes, MAX_TEXT_LEN)?;
        if let Some(c) = &self.customer_id {
            validate_id("leadData.customerId", c)?;
        }
        Ok(())
    }
}

impl DecideRequest {
    /// Validates the whole request; errors name the field.
    pub fn validate(&self) -> Result<()> {
        validate_id("leadId", &self.lead_id)?;
        self.lead_data.validate()?;
        if self.exclude_brokers.len() > 1000 {
            return Err(ModelError::invalid("excludeBrokers", "must have at most 1000 entries"));
        }
        for (i, b) in self.exclude_brokers.iter().enumerate() {
            validate_id(&format!("excludeBrokers[{i}]"), b)?;
        }
        if let Some(x) = &self.exploration {
            x.validate("exploration")?;
            if let Some(s) = self.strategy.filter(|s| !s.ranks_by_score()) {
                return Err(ModelError::invalid(
                    "exploration",
                    format!("applies to the scored strategies specialty, ml and roi, not '{}'", s.name()),
                ));
            }
        }
        Ok(())
    }

    /// Computes the features used by every step of the decision, once.
    pub fn features(&self) -> LeadFeatures {
        LeadFeatures {
            lines: LineSet::of(&self.lead_data.insurance_types),
            required: LineSet::of(&self.require_specialties),
            urgency: self.lead_data.urgency,
            state: self.lead_data.state.clone(),
            state_code: StateCode::of(&self.lead_data.state),
            value: self.lead_data.estimated_value,
            complexity: self.lead_data.complexity as u8,
            exclude: self.exclude_brokers.clone(),
            age: self.lead_data.personal_info.as_ref().and_then(|p| p.age),
            income: self.lead_data.personal_info.as_ref().and_then(|p| p.income),
            claims: self.lead_data.coverage.as_ref().and_then(|c| c.claims),
            budget: self.lead_data.requirements.as_ref().and_then(|r| r.budget),
            semantic: None,
        }
    }
}

/// A two-letter state code packed into an integer, so the licence check over every broker
/// compares numbers rather than strings. Both sides are validated US postal codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateCode(pub u16);

impl StateCode {
    /// The code of `s`; anything but two bytes gets a code no valid state has.
    pub fn of(s: &str) -> Self {
        match s.as_bytes() {
            [a, b] => Self(u16::from(*a) << 8 | u16::from(*b)),
            _ => Self(0),
        }
    }

    /// The two letters back.
    pub fn name(self) -> String {
        String::from_utf8_lossy(&self.0.to_be_bytes()).into_owned()
    }
}

/// A past lead near the one being routed: who had it, whether it converted, how similar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Neighbour {
    /// The past lead.
    pub lead_id: String,
    /// The broker it went to.
    pub broker_id: String,
    /// True when it converted, false when it was lost or closed without converting.
    pub converted: bool,
    /// Cosine similarity to the lead being routed.
    pub similarity: f32,
}

/// A lead's semantic inputs to one decision: its text vector and its nearest past leads.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadSemantics {
    /// Unit vector of the lead's text.
    pub vector: std::sync::Arc<[f32]>,
    /// The nearest resolved past leads sharing a line, best first.
    pub neighbours: Vec<Neighbour>,
}

/// What the decision path needs to know of a lead, computed once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadFeatures {
    /// Requested lines.
    pub lines: LineSet,
    /// Lines required as specialties.
    pub required: LineSet,
    /// Urgency.
    pub urgency: Urgency,
    /// USPS state code.
    pub state: String,
    /// The same, packed for the licence check.
    pub state_code: StateCode,
    /// Estimated value.
    pub value: f64,
    /// 1–10.
    pub complexity: u8,
    /// Broker ids excluded by the caller (small; a linear scan beats hashing).
    pub exclude: Vec<String>,
    /// Customer age, when given.
    pub age: Option<u32>,
    /// Customer income, when given.
    pub income: Option<f64>,
    /// Claims in recent years, when given.
    pub claims: Option<u32>,
    /// Budget, when given.
    pub budget: Option<f64>,
    /// The lead's text vector and nearest past leads, when it has notes and the engine embeds.
    pub semantic: Option<std::sync::Arc<LeadSemantics>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_what_the_document_calls_blank() {
        for s in ["", " ", "\t\n", "\u{a0}\u{3000}", "\u{1c}\u{1f}"] {
            assert!(is_blank(s), "{s:?}");
        }
        for s in ["a", " x ", "\u{200b}", "\u{7f}"] {
            assert!(!is_blank(s), "{s:?}");
        }
    }

    #[test]
    fn state_codes_are_exact_for_two_letters() {
        let all = crate::geo::US_STATES;
        let codes: std::collections::HashSet<_> = all.iter().map(|s| StateCode::of(s)).collect();
        assert_eq!(codes.len(), all.len(), "distinct states get distinct codes");
        assert!(all.iter().all(|s| StateCode::of(s).name() == *s && StateCode::of(s) != StateCode(0)));
        assert_eq!(StateCode::of("CAL"), StateCode(0));
        assert_eq!(seed().features().state_code, StateCode::of("CA"));
    }

    fn seed() -> DecideRequest {
        serde_json::from_str(
            r#"{"leadId":"lead-123","leadData":{"insuranceTypes":["AUTO","HOME"],"urgency":"HIGH","state":"CA","estimatedValue":25000,"complexity":7},"excludeBrokers":["broker-9"],"requireSpecialties":["AUTO","HOME"],"strategy":"specialty"}"#,
        )
        .unwrap()
    }

    #[test]
    fn seed_lead_parses_and_validates() {
        let r = seed();
        r.validate().unwrap();
        let f = r.features();
        assert_eq!(f.lines.lines().collect::<Vec<_>>(), vec![InsuranceLine::Auto, InsuranceLine::Home]);
        assert!(f.urgency.is_urgent());
        assert_eq!(f.complexity, 7);
    }

    #[test]
    fn validation_names_the_field() {
        let mut r = seed();
        r.lead_data.state = "ZZ".into();
        assert!(matches!(r.validate(), Err(ModelError::Invalid { field, .. }) if field == "leadData.state"));
        let mut r = seed();
        r.lead_data.estimated_value = -1.0;
        assert!(matches!(r.validate(), Err(ModelError::Invalid { field, .. }) if field == "leadData.estimatedValue"));
        let mut r = seed();
        r.lead_data.complexity = 11;
        assert!(matches!(r.validate(), Err(ModelError::Invalid { field, .. }) if field == "leadData.complexity"));
        let mut r = seed();
        r.lead_id = "has space".into();
        assert!(matches!(r.validate(), Err(ModelError::Invalid { field, .. }) if field == "leadId"));
        let mut r = seed();
        r.lead_data.insurance_types.clear();
        assert!(matches!(r.validate(), Err(ModelError::Invalid { field, .. }) if field == "leadData.insuranceTypes"));
    }

    #[test]
    fn line_set_operations() {
        let a = LineSet::of(&[InsuranceLine::Auto, InsuranceLine::Life]);
        assert!(a.contains_all(LineSet::of(&[InsuranceLine::Life])));
        assert!(!a.contains_all(LineSet::of(&[InsuranceLine::Home])));
        assert!(a.contains_all(LineSet::default()));
    }
}
