//! The conversion model's life in the engine: training from the journal on its own thread, the
//! registry of versions on disk, atomic activation, predictions served and drift.

pub mod registry;
pub mod training;
