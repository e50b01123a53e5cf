//! The one error type of the live system.

use std::path::PathBuf;

use leadrouter_models::{LeadState, ModelError};
use thiserror::Error;

/// Everything that can go wrong in the actor system and its storage.
#[derive(Debug, Error)]
pub enum ActorError {
    /// Input failed domain validation (always a `ModelError::Invalid`).
    #[error(transparent)]
    Invalid(ModelError),
    /// The conversion network failed.
    #[error("model: {0}")]
    Model(String),
    /// Too little labelled data to train; says how much is needed.
    #[error("{0}")]
    NotEnoughData(String),
    /// No such lead or broker.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// `lead` or `broker`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The lead's state, for illegal lifecycle transitions.
        current_state: Option<LeadState>,
    },
    /// A file under the data directory (journal, lock, model registry) could not be read or
    /// written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A journal record in the middle of the log is damaged; start-up refuses to continue.
    #[error("journal corrupt in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file.
        file: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The journal writer failed earlier and refuses further appends.
    #[error("journal is unavailable after an earlier write failure")]
    JournalFailed,
    /// Snapshot storage failed.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Another process holds the data directory's lock.
    #[error("data directory {} is in use by another process (it holds {})", .dir.display(), .lock.display())]
    DataInUse {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// Encoding or decoding a record failed.
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// An actor did not answer (stopped or overloaded).
    #[error("actor unavailable: {0}")]
    Unavailable(String),
    /// The text encoder failed or answered vectors of the wrong dimension.
    #[error("embedding: {0}")]
    Embedding(String),
}

impl From<ModelError> for ActorError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid { .. } => Self::Invalid(e),
            ModelError::Network(m) => Self::Model(m),
            ModelError::NotEnoughData(m) => Self::NotEnoughData(m),
        }
    }
}

impl From<sled::Error> for ActorError {
    fn from(e: sled::Error) -> Self {
        Self::Snapshot(e.to_string())
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Result alias for the live system.
pub type Result<T> = std::result::Result<T, ActorError>;
