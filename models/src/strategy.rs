//! Routing strategies a decide request may name.

use serde::{Deserialize, Serialize};

/// How the winner is picked among eligible brokers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Seed formula `0.4·specialty + 0.3·performance + 0.2·capacity + 0.1·sla` (weights configurable).
    #[default]
    Specialty,
    /// Uniform among eligible brokers; the propensity is 1/eligible.
    Random,
    /// Eligible brokers in id order, starting one further each decision.
    RoundRobin,
    /// Stride scheduling by broker `weight`: long-run shares proportional to weight.
    WeightedRoundRobin,
    /// The seed formula with the conversion network's P(convert) in place of historical
    /// conversion (the empirical-Bayes estimate while no model is active).
    Ml,
    /// Net expected value: P(convert) · value · margin − cost − the broker's seat price, with a
    /// bounded optimism bonus for brokers with little history (`models::roi`).
    Roi,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 6] = [Self::Specialty, Self::Random, Self::RoundRobin, Self::WeightedRoundRobin, Self::Ml, Self::Roi];

    /// Whether its order comes from each candidate's score (so only the top K need scoring).
    pub fn ranks_by_score(self) -> bool {
        matches!(self, Self::Specialty | Self::Ml | Self::Roi)
    }

    /// Whether it uses the conversion model when one is active.
    pub fn uses_model(self) -> bool {
        matches!(self, Self::Ml | Self::Roi)
    }

    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Specialty => "specialty",
            Self::Random => "random",
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::Ml => "ml",
            Self::Roi => "roi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;

    #[test]
    fn all_lists_every_strategy_once_under_its_wire_name() {
        // A new variant must be added here (the match is exhaustive) and to `ALL`.
        let position = |s: Strategy| match s {
            Strategy::Specialty => 0,
            Strategy::Random => 1,
            Strategy::RoundRobin => 2,
            Strategy::WeightedRoundRobin => 3,
            Strategy::Ml => 4,
            Strategy::Roi => 5,
        };
        for (i, s) in Strategy::ALL.into_iter().enumerate() {
            assert_eq!(position(s), i);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(serde_json::from_value::<Strategy>(s.name().into()).unwrap(), s);
        }
    }
}
