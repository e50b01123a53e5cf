//! LeadRouter domain crate: leads, brokers, validation, scoring, strategies and the lead
//! lifecycle. Pure: no actors, no HTTP, no IO; clocks and randomness are passed in.

pub mod broker;
pub mod error;
pub mod geo;
pub mod lead;
pub mod lifecycle;
pub mod scoring;
pub mod strategy;

pub use broker::{Broker, BrokerProfile, BrokerStatus, Capacity, Exclusion, License, Schedule, Sla, Specialty};
pub use error::{ModelError, Result};
pub use lead::{DecideRequest, InsuranceLine, LeadData, LeadFeatures, LineSet, Urgency};
pub use lifecycle::{transition, EventKind, LeadEventRequest, LeadState, Transition};
pub use scoring::{combine, Breakdown, Factor, Prior, Priors, ScoreInputs, Weights};
pub use strategy::Strategy;
