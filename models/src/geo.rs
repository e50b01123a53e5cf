//! US postal codes accepted as lead and licence states.

/// The 50 states, DC and the five inhabited territories, as USPS two-letter codes.
pub const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI",
    "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// True when `code` is an upper-case USPS state or territory code.
pub fn is_us_state(code: &str) -> bool {
    US_STATES.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_codes() {
        assert!(is_us_state("CA"));
        assert!(is_us_state("DC"));
        assert!(!is_us_state("ca"));
        assert!(!is_us_state("XX"));
        assert!(!is_us_state(""));
    }
}
