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
    #[error("method {method} not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The method asked for.
        method: String,
        /// The methods the path takes, as the `Allow` header lists them.
        allow: String,
    },
    /// No credentials were presented.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials are wrong, or the route is disabled.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's key (or address) made more requests than `security.rate_limit_per_second`
    /// allows; retry after this many seconds.
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
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
    /// The one table of every error's HTTP status and code. Exhaustive on purpose, here and over
    /// the engine's errors: a variant added to either enum does not compile until it has a row.
    fn class(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json"),
            Self::InvalidPath(_) => (S::BAD_REQUEST, "invalid_path"),
            Self::Invalid { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_field"),
            Self::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::NoRoute(_) => (S::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            Self::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Engine(e) => match e {
                ActorError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "invalid_field"),
                ActorError::NotEnoughData(_) => (S::UNPROCESSABLE_ENTITY, "not_enough_data"),
                ActorError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
                ActorError::Conflict { .. } => (S::CONFLICT, "conflict"),
                ActorError::Unavailable(_) | ActorError::JournalFailed => (S::SERVICE_UNAVAILABLE, "unavailable"),
                ActorError::Embedding(_) => (S::BAD_GATEWAY, "embedding_failed"),
                ActorError::Model(_)
                | ActorError::Io(_)
                | ActorError::Corrupt { .. }
                | ActorError::Snapshot(_)
                | ActorError::DataInUse { .. }
                | ActorError::Encoding(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            Self::Config { .. } | Self::Simulation(_) | Self::Io(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
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
        self.class().0
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
            Self::RateLimited(secs) => {
                resp.insert_header(("Retry-After", secs.to_string()));
            }
            Self::MethodNotAllowed { allow, .. } => {
                resp.insert_header(("Allow", allow.as_str()));
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
                code: self.class().1,
                message,
                field: self.field().map(str::to_string),
                current_state,
            },
        }
    }
}

/// Result alias for the server crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Every variant of both enums, with the status and code a client sees.
    #[test]
    fn every_error_has_its_status_code_and_one_body_shape() {
        let engine = |e: ActorError| Error::Engine(e);
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::MalformedJson("eof".into()), 400, "malformed_json"),
            (Error::InvalidPath("//".into()), 400, "invalid_path"),
            (Error::Invalid { field: "leadData.state".into(), reason: "unknown".into() }, 422, "invalid_field"),
            (Error::PayloadTooLarge(10), 413, "payload_too_large"),
            (Error::NoRoute("GET /x".into()), 404, "not_found"),
            (Error::MethodNotAllowed { method: "PUT".into(), allow: "GET, POST".into() }, 405, "method_not_allowed"),
            (Error::Unauthorized("key".into()), 401, "unauthorized"),
            (Error::Forbidden("key".into()), 403, "forbidden"),
            (Error::Overloaded, 503, "overloaded"),
            (Error::RateLimited(2), 429, "rate_limited"),
            (Error::Config { field: "server.port".into(), reason: "x".into() }, 500, "internal"),
            (Error::Simulation("x".into()), 500, "internal"),
            (Error::Io(std::io::Error::other("x")), 500, "internal"),
            (engine(ModelError::invalid("at", "late").into()), 422, "invalid_field"),
            (engine(ActorError::Model("nan".into())), 500, "internal"),
            (engine(ActorError::NotEnoughData("50 rows".into())), 422, "not_enough_data"),
            (engine(ActorError::NotFound { what: "lead", id: "l1".into() }), 404, "not_found"),
            (engine(ActorError::Conflict { message: "x".into(), current_state: Some(LeadState::Closed) }), 409, "conflict"),
            (engine(ActorError::Io(std::io::Error::other("disk"))), 500, "internal"),
            (engine(ActorError::Corrupt { file: PathBuf::from("a.seg"), offset: 8, reason: "crc".into() }), 500, "internal"),
            (engine(ActorError::JournalFailed), 503, "unavailable"),
            (engine(ActorError::Snapshot("sled".into())), 500, "internal"),
            (engine(ActorError::DataInUse { dir: "d".into(), lock: "d/lock".into() }), 500, "internal"),
            (engine(serde_json::from_str::<u8>("x").unwrap_err().into()), 500, "internal"),
            (engine(ActorError::Unavailable("stopped".into())), 503, "unavailable"),
            (engine(ActorError::Embedding("dimension 3, expected 384".into())), 502, "embedding_failed"),
        ];
        for (e, status, code) in cases {
            let body = serde_json::to_value(e.response()).unwrap();
            assert_eq!((e.status_code().as_u16(), body["error"]["code"].as_str().unwrap()), (status, code), "{e:?}");
            assert_eq!(body["error"]["status"], status);
            assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{e:?}");
        }
        let e = engine(ModelError::invalid("leadData.state", "unknown state").into());
        assert_eq!(serde_json::to_value(e.response()).unwrap()["error"]["field"], "leadData.state");
        let e = engine(ActorError::Conflict { message: "x".into(), current_state: Some(LeadState::Closed) });
        assert_eq!(serde_json::to_value(e.response()).unwrap()["error"]["currentState"], "closed");
    }
}
