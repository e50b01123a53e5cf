//! The server crate's one error type and the one place that maps errors to HTTP.
//!
//! Every error response has the same shape:
//! `{"error": {"status": 422, "code": "invalid_field", "message": "...", "field": "leadData.state"}}`
//! with `field` and `currentState` present only when they apply.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use leadrouter_actors::ActorError;
use leadrouter_models::{LeadState, ModelError};
use serde::Serialize;
use thiserror::Error;

/// Everything the server crate can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// The body is not JSON at all.
    #[error("malformed json: {0}")]
    MalformedJson(String),
    /// A field is missing, of the wrong type, or out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The body is larger than allowed.
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The request's path is spelled ambiguously (see [`crate::path`]).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// No such route.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not for this method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// No credentials were presented.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials are wrong, or the route is disabled.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests in flight; retry shortly.
    #[error("the engine is at its in-flight ceiling; retry shortly")]
    Overloaded,
    /// The live system refused or failed.
    #[error(transparent)]
    Engine(#[from] ActorError),
    /// A configuration value is wrong.
    #[error("config {field}: {reason}")]
    Config {
        /// Setting path, e.g. `server.port`.
        field: String,
        /// Why.
        reason: String,
    },
    /// A simulation could not be set up or run (`leadrouter simulate`; never sent over HTTP).
    #[error("simulation: {0}")]
    Simulation(String),
    /// Reading a file or socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid { field, reason } => Self::Invalid { field, reason },
            other => Self::Engine(other.into()),
        }
    }
}

/// What went wrong, inside every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable machine-readable code, e.g. `invalid_field`, `not_found`, `conflict`.
    pub code: &'static str,
    /// What was wrong, in words.
    pub message: String,
    /// JSON path of the offending field, when one field is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The lead's state, when an event does not fit it (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<LeadState>,
}

/// The JSON body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

impl Error {
    fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Invalid { .. } => "invalid_field",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::InvalidPath(_) => "invalid_path",
            Self::NoRoute(_) => "not_found",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Overloaded => "overloaded",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Engine(e) => match e {
                ActorError::Invalid(_) => "invalid_field",
                ActorError::NotEnoughData(_) => "not_enough_data",
                ActorError::NotFound { .. } => "not_found",
                ActorError::Conflict { .. } => "conflict",
                ActorError::Unavailable(_) | ActorError::JournalFailed => "unavailable",
                _ => "internal",
            },
            Self::Config { .. } | Self::Simulation(_) | Self::Io(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } | Self::Engine(ActorError::Invalid(ModelError::Invalid { field, .. })) => Some(field),
            _ => None,
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidPath(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Engine(e) => match e {
                ActorError::Invalid(_) | ActorError::NotEnoughData(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ActorError::NotFound { .. } => StatusCode::NOT_FOUND,
                ActorError::Conflict { .. } => StatusCode::CONFLICT,
                ActorError::Unavailable(_) | ActorError::JournalFailed => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Config { .. } | Self::Simulation(_) | Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            Self::Overloaded | Self::Engine(ActorError::Unavailable(_)) => {
                resp.insert_header(("Retry-After", "1"));
            }
            Self::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        resp.json(self.response())
    }
}

impl Error {
    /// The JSON body of this error's response: `{"error": {...}}`.
    pub fn response(&self) -> ErrorResponse {
        let status = self.status_code();
        let current_state = match self {
            Self::Engine(ActorError::Conflict { current_state, .. }) => *current_state,
            _ => None,
        };
        let message = match self {
            Self::Engine(ActorError::Invalid(ModelError::Invalid { reason, .. })) => reason.clone(),
            Self::Invalid { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        ErrorResponse {
            error: ErrorBody {
                status: status.as_u16(),
                code: self.code(),
                message,
                field: self.field().map(str::to_string),
                current_state,
            },
        }
    }
}

/// Result alias for the server crate.
pub type Result<T> = std::result::Result<T, Error>;
