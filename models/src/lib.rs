//! LeadRouter domain crate: leads, brokers, validation, scoring, strategies, the lead
//! lifecycle, the conversion model's features and network, and its metrics. Pure: no actors,
//! no HTTP, no IO; clocks and randomness (seeds) are passed in.

pub mod broker;
pub mod error;
pub mod experiment;
pub mod exploration;
pub mod fairness;
pub mod features;
pub mod geo;
pub mod lead;
pub mod lifecycle;
pub mod metrics;
pub mod nn;
pub mod object;
pub mod ope;
pub mod policy;
pub mod rng;
pub mod roi;
pub mod scoring;
pub mod semantic;
pub mod strategy;
pub mod whatif;

pub use broker::{Broker, BrokerProfile, BrokerStatus, Capacity, Exclusion, License, LocalClock, Schedule, Sla, Specialty};
pub use error::{ModelError, Result};
pub use exploration::Exploration;
pub use fairness::{Bounds, FairnessSettings};
pub use features::{inputs_of_version, BrokerFeatures, FeatureRow, FEATURE_SPEC_VERSION, N_FEATURES};
pub use lead::{DecideRequest, InsuranceLine, LeadData, LeadFeatures, LineSet, StateCode, Urgency};
pub use lifecycle::{transition, EventKind, LeadEventRequest, LeadState, Transition};
pub use metrics::Metrics;
pub use nn::{ConversionModel, TrainConfig};
pub use policy::{Chance, Policies, Policy, Ranking, Slate};
pub use roi::{RoiSettings, RoiTerms};
pub use scoring::{combine, Adjustments, Breakdown, Factor, Prior, Priors, ScoreInputs, Weights};
pub use semantic::{Neighbour, SemanticTerms};
pub use strategy::Strategy;
pub use whatif::PredictContext;
