//! `GET /api/leads/{leadId}` and `POST /api/leads/{leadId}/events`.

use actix_web::{web, HttpResponse};
use leadrouter_models::LeadEventRequest;

use super::State;
use crate::error::Result;
use crate::json;

/// A lead's state, decisions and events.
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.lead(&path).await?))
}

/// Records a lifecycle event; 409 with `currentState` when the state does not allow it.
pub async fn event(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let ev: LeadEventRequest = json::parse(&body)?;
    Ok(HttpResponse::Ok().json(state.router.lead_event(&path, ev).await?))
}
