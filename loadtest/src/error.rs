//! The load generator's one error type.

use thiserror::Error;

/// What a request, or the pacing of the open loop, can fail with.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The connection or the request failed before a response.
    #[error("request failed: {0}")]
    Send(String),
    /// The server answered with an unexpected status.
    #[error("status {status} from {what}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Which call.
        what: &'static str,
    },
    /// The response body was not what the API documents.
    #[error("unexpected response from {what}: {reason}")]
    Body {
        /// Which call.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The open loop's send timer could not be set up or armed.
    #[error("send timer failed: {0}")]
    Pacing(std::io::Error),
}
