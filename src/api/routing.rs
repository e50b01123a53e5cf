//! `POST /api/routing/decide` and `POST /api/routing/batch`.

use actix_web::{web, HttpResponse};
use futures_util::{stream, StreamExt};
use leadrouter_actors::WhatIf;
use leadrouter_models::{DecideRequest, PredictContext};
use serde::Deserialize;
use serde::Serialize;

use super::dto::{Outcome, Prediction};
use super::State;
use crate::error::{Error, ErrorBody, ErrorResponse, Result};
use crate::json;

/// How many batch items are decided at once.
const BATCH_CONCURRENCY: usize = 16;

fn respond(outcome: Outcome) -> HttpResponse {
    let mut resp = match &outcome {
        Outcome::Assigned(_) => HttpResponse::Ok(),
        Outcome::Waiting(_) => HttpResponse::Accepted(),
    };
    if outcome.replayed() {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(outcome)
}

/// The router validates the request (field errors come back as 422 naming the field).
async fn decide_one(state: &State, req: DecideRequest) -> Result<Outcome> {
    Ok(state.router.decide(req).await?.into())
}

/// Routes one lead: 200 with the decision, or 202 when it is queued.
#[utoipa::path(post, path = "/api/routing/decide", tag = "routing", security((), ("api_key" = []), ("bearer" = [])),
    request_body = DecideRequest,
    responses(
        (status = 200, description = "Assigned (or the first decision again, with `Idempotent-Replayed: true`)", body = Outcome),
        (status = 202, description = "Nobody can take it now: queued", body = Outcome),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse), (status = 503, description = "Overloaded or shutting down; retry after `Retry-After` seconds", body = ErrorResponse)))]
pub async fn decide(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: DecideRequest = json::parse(&body)?;
    Ok(respond(decide_one(&state, req).await?))
}

/// Ranks brokers for a lead with P(convert) and score; reserves and journals nothing.
#[utoipa::path(post, path = "/api/routing/predict", tag = "routing", security((), ("api_key" = []), ("bearer" = [])),
    request_body = PredictRequest,
    responses((status = 200, description = "The top candidates, best first", body = Prediction), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse), (status = 503, description = "Overloaded or shutting down; retry after `Retry-After` seconds", body = ErrorResponse)))]
pub async fn predict(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: PredictRequest = json::parse(&body)?;
    let what_if = WhatIf { available: req.available_brokers, context: req.context };
    Ok(HttpResponse::Ok().json(Prediction::from(state.router.predict(req.request, what_if).await?)))
}

/// `POST /api/routing/predict` body: a decide request, optionally with the brokers to rank and
/// another moment to check the hard constraints at.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictRequest {
    /// The lead, as for a decision.
    #[serde(flatten)]
    request: DecideRequest,
    /// Rank only these brokers (1 to 1,000 ids); each is still checked against the hard
    /// constraints, and those that fail are listed in `unavailable` with the reason.
    #[serde(default)]
    available_brokers: Option<Vec<String>>,
    /// Another moment: the hard constraints (working hours, licence expiry) are checked then.
    /// The model has no time features, so P(convert) does not change with it.
    #[serde(default)]
    context: Option<PredictContext>,
}

/// Many leads at once.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Batch {
    /// Decide requests, each validated on its own (1 to `server.max_batch`).
    #[schema(value_type = Vec<DecideRequest>)]
    leads: Vec<serde_json::Value>,
    /// Exploration for every lead of the batch that sets none of its own.
    #[serde(default)]
    exploration: Option<leadrouter_models::Exploration>,
}

/// One lead's result in a batch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    /// Position in the request.
    index: usize,
    /// The status this lead alone would have had: 200, 202 or an error status.
    status: u16,
    /// The outcome, when decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Outcome>,
    /// The error, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// A batch's results, in request order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// Leads assigned.
    assigned: usize,
    /// Leads queued.
    queued: usize,
    /// Leads that failed.
    failed: usize,
    /// One result per lead.
    results: Vec<BatchItem>,
}

/// Routes up to `server.max_batch` leads; results come back in order, each with its own status.
#[utoipa::path(post, path = "/api/routing/batch", tag = "routing", security((), ("api_key" = []), ("bearer" = [])),
    request_body = Batch,
    responses((status = 200, description = "Every lead's result; failures are per item", body = BatchResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse), (status = 503, description = "Overloaded or shutting down; retry after `Retry-After` seconds", body = ErrorResponse)))]
pub async fn batch(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let batch: Batch = json::parse(&body)?;
    if batch.leads.is_empty() {
        return Err(Error::Invalid { field: "leads".into(), reason: "must hold at least one lead".into() });
    }
    if batch.leads.len() > state.max_batch {
        return Err(Error::Invalid {
            field: "leads".into(),
            reason: format!("holds {} leads; at most {} are accepted per batch", batch.leads.len(), state.max_batch),
        });
    }
    if let Some(x) = &batch.exploration {
        x.validate("exploration").map_err(Error::from)?;
    }
    let (st, shared) = (&state, batch.exploration);
    let results: Vec<BatchItem> = stream::iter(batch.leads.into_iter().enumerate())
        .map(|(i, v)| async move {
            let prefix = format!("leads[{i}]");
            let outcome = match json::from_value::<DecideRequest>(&prefix, v) {
                Ok(mut req) => {
                    if req.exploration.is_none() && req.strategy.is_none_or(|s| s.ranks_by_score()) {
                        req.exploration = shared;
                    }
                    decide_one(st, req).await.map_err(|e| match e {
                        Error::Engine(leadrouter_actors::ActorError::Invalid(leadrouter_models::ModelError::Invalid { field, reason })) => {
                            Error::Invalid { field: format!("{prefix}.{field}"), reason }
                        }
                        other => other,
                    })
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(o) => {
                    let status = if matches!(o, Outcome::Assigned(_)) { 200 } else { 202 };
                    BatchItem { index: i, status, result: Some(o), error: None }
                }
                Err(e) => {
                    let status = actix_web::ResponseError::status_code(&e).as_u16();
                    BatchItem { index: i, status, result: None, error: Some(e.response().error) }
                }
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let count = |s: u16| results.iter().filter(|r| r.status == s).count();
    let (assigned, queued) = (count(200), count(202));
    Ok(HttpResponse::Ok().json(BatchResponse { assigned, queued, failed: results.len() - assigned - queued, results }))
}
