//! Storage: the append-only journal (the truth), the journal's record types (a stored format),
//! the state those records build when applied in order (replay): the engine's, and the
//! experiments' catalogue and per-arm totals; and sled snapshots of both (a shortcut to replay).
//! Nothing here knows about routing.

pub mod analytics;
pub mod experiments;
pub mod journal;
pub mod record;
pub mod snapshot;
pub mod state;
