//! `GET /api/leads/{leadId}`, `POST /api/leads/{leadId}/events` and
//! `GET /api/leads/{leadId}/why-not/{brokerId}`.

use actix_web::{web, HttpResponse};
use leadrouter_actors::evaluation::why_not::WhyNot;
use leadrouter_models::LeadEventRequest;

use super::dto::Lead;
use super::State;
use crate::error::{ErrorResponse, Result};
use crate::json;

/// A lead's state, decisions and events.
#[utoipa::path(get, path = "/api/leads/{lead_id}", tag = "leads", security((), ("api_key" = []), ("bearer" = [])),
    params(("lead_id" = String, Path, description = "The lead id given to decide")),
    responses((status = 200, description = "The lead", body = Lead), (status = 404, description = "No such lead, or finished longer ago than storage.finished_lead_retention_seconds or before the newest storage.max_finished_leads finished leads (archived)", body = ErrorResponse), (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse)))]
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(Lead::from(state.router.lead(&path).await?)))
}

/// Records a lifecycle event; 409 with `currentState` when the state does not allow it.
#[utoipa::path(post, path = "/api/leads/{lead_id}/events", tag = "leads", security((), ("api_key" = []), ("bearer" = [])),
    params(("lead_id" = String, Path, description = "The lead id given to decide")),
    request_body = LeadEventRequest,
    responses((status = 200, description = "The lead after the event", body = Lead),
        (status = 404, description = "No such lead", body = ErrorResponse),
        (status = 409, description = "The event does not fit the lead's state; `currentState` says where it is", body = ErrorResponse),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse)))]
pub async fn event(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let ev: LeadEventRequest = json::parse(&body)?;
    Ok(HttpResponse::Ok().json(Lead::from(state.router.lead_event(&path, ev).await?)))
}

/// "Why not this broker?": for the lead's latest decision, the first hard constraint the broker
/// failed at decision time, or, when it was eligible, its score beside the winner's and the
/// factor that decided; reconstructed from the journal as of the decision, not from today's
/// state (the journal is replayed, so the answer takes as long as reading it).
#[utoipa::path(get, path = "/api/leads/{lead_id}/why-not/{broker_id}", tag = "leads", security((), ("api_key" = []), ("bearer" = [])),
    params(("lead_id" = String, Path, description = "The lead id given to decide"), ("broker_id" = String, Path, description = "The broker asked about")),
    responses((status = 200, description = "The explanation; `verdict` chosen, ineligible (with `constraint`), not_scored, outscored (with `decidingFactor`) or unknown (the broker did not exist then)", body = WhyNot),
        (status = 404, description = "The journal holds no decision of this lead", body = ErrorResponse),
        (status = 422, description = "An id is malformed", body = ErrorResponse),
        (status = 401, description = "No API key (when keys are configured)", body = ErrorResponse), (status = 403, description = "Wrong API key", body = ErrorResponse)))]
pub async fn why_not(state: State, path: web::Path<(String, String)>) -> Result<HttpResponse> {
    let (lead, broker) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.router.why_not(&lead, &broker).await?))
}
