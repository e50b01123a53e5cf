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
    /// The neural network failed (shapes, serialisation, numerics).
    #[error("network: {0}")]
    Network(String),
    /// Not enough labelled data to train.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Network(e.to_string())
    }
}

impl From<safetensors::SafeTensorError> for ModelError {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Self::Network(e.to_string())
    }
}

impl ModelError {
    /// Builds an [`ModelError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Result alias for the domain crate.
pub type Result<T> = std::result::Result<T, ModelError>;
