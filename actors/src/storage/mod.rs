//! Storage: the append-only journal (the truth), the journal's record types (a stored format),
//! the state those records build when applied in order (replay), and sled snapshots of that
//! state (a shortcut to replay). Nothing here knows about routing.

pub mod journal;
pub mod record;
pub mod snapshot;
pub mod state;
