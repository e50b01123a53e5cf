//! Experiments: A/B/n tests between routing policies. What an experiment is ([`spec`]), how a
//! lead is assigned ([`assign`]), the running sums kept per arm ([`totals`]), the statistics
//! ([`stats`], [`sequential`], [`bayes`]) and the analysis built from them ([`analysis`]).
//!
//! Pure: the engine feeds exposures and outcomes in and asks for a report; nothing here knows
//! about time except the elapsed days it is given.

pub mod analysis;
pub mod assign;
pub mod bayes;
pub mod sequential;
pub mod spec;
pub mod stats;
pub mod totals;

pub use analysis::{analyze, Report};
pub use spec::{AllocationMethod, Analysis, ArmSpec, AssignmentKey, Correction, Definition, Metric, Status, Targeting};
pub use totals::ArmTotals;
