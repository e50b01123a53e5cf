//! Off-policy evaluation over HTTP: `POST /api/policies/evaluate` starts a job that replays the
//! journal and estimates how a candidate policy would have done on the logged decisions;
//! `GET /api/policies/evaluations/{id}` shows its progress and result.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use leadrouter_actors::evaluation::jobs::JobView;
use leadrouter_actors::evaluation::{Candidate, Settings};
use serde::Deserialize;

use super::State;
use crate::error::{ErrorResponse, Result};
use crate::json;

/// What to evaluate, on which decisions.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The candidate policy.
    policy: Candidate,
    /// Decisions made at or after this moment (RFC 3339); the journal's start when absent.
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    /// Decisions made before this moment; the journal's end when absent.
    #[serde(default)]
    to: Option<DateTime<Utc>>,
    /// Bootstrap resamples per interval, 1–10,000 (default 500).
    #[serde(default = "default_bootstrap")]
    #[schema(minimum = 1, maximum = 10000)]
    bootstrap_samples: usize,
    /// Seed of the bootstrap (default 1): the same seed and journal give the same intervals.
    #[serde(default = "one")]
    seed: u64,
    /// Model version used as the reward model of the direct method and doubly robust; the
    /// active model when absent (the empirical-Bayes estimate when none is active).
    #[serde(default)]
    reward_model: Option<String>,
}

fn default_bootstrap() -> usize {
    500
}

fn one() -> u64 {
    1
}

/// `POST /api/policies/evaluate`: starts an evaluation job; 202 with the job, `Location` names
/// it. The journal is replayed on a background thread; decisions go on meanwhile.
#[utoipa::path(post, path = "/api/policies/evaluate", tag = "policies", security((), ("api_key" = []), ("bearer" = [])), request_body = EvaluateRequest,
    responses((status = 202, description = "Started; poll `Location`", body = JobView),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse),
        (status = 422, description = "A field is missing, of the wrong type or out of range, or names an unknown model version; `field` names it", body = ErrorResponse),
        (status = 409, description = "Too many evaluations are running; try again when one finishes", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn evaluate(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: EvaluateRequest = json::parse(&body)?;
    let settings = Settings { from: req.from, to: req.to, bootstrap_samples: req.bootstrap_samples, seed: req.seed };
    let job = state.router.start_evaluation(req.policy, settings, req.reward_model)?;
    Ok(HttpResponse::Accepted().insert_header(("Location", format!("/api/policies/evaluations/{}", job.id))).json(job))
}

/// `GET /api/policies/evaluations/{id}`: the job's status and progress; once done, the
/// estimates of conversion rate, revenue per lead and SLA compliance by IPS, self-normalised
/// IPS, the direct method and doubly robust, each with a bootstrap 95% interval, beside what
/// the logging policy achieved, with the weights' support and warnings.
#[utoipa::path(get, path = "/api/policies/evaluations/{id}", tag = "policies", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = JobView), (status = 404, description = "No such job", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn evaluation(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.evaluation(&path)?))
}
