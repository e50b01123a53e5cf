//! The one error type of the domain crate: a validation failure naming the field and the reason.

use thiserror::Error;

/// Everything that can go wrong in pure domain code.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// A field of a lead, broker or event failed validation.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the offending field, e.g. `leadData.state`.
        field: String,
        /// Why it was rejected, lowercase, no final period.
        reason: String,
    },
}

impl ModelError {
    /// Builds an [`ModelError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Result alias for the domain crate.
pub type Result<T> = std::result::Result<T, ModelError>;
