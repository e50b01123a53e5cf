//! LeadRouter live system: one `BrokerActor` per broker owning its live state, the
//! `RouterSupervisor` that makes decisions and runs the lead lifecycle, the append-only journal,
//! sled snapshots and start-up replay. Knows no URL, status code or JSON route.

pub mod background;
pub mod broker_actor;
pub mod clock;
pub mod config;
pub mod counters;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod experiments;
pub mod feed;
pub mod index;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod router;
pub mod semantic;
pub mod storage;
pub mod views;

pub use config::{Durability, EngineConfig, RoutingConfig, StorageConfig};
pub use engine::{Engine, Placement};
pub use error::{ActorError, Result};
pub use router::{RouterSupervisor, WhatIf};
pub use storage::record::{Decision, Record, SharedDecision};
pub use views::{
    ActorSummary, AssignedAnswer, BrokerView, DecideOutcome, EfficiencyView, LeadView, LeaderboardMetric, LeaderboardRow, PeerComparison,
    PerformanceView, Prediction, Spread, Unavailable, WaitingAnswer,
};
