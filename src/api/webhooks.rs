//! Webhook subscriptions over HTTP: create, list, read, change, delete, their deliveries, and a
//! replay from a journal position. Changes write `webhooks.json` on the blocking pool.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{query, State};
use crate::error::{Error, ErrorResponse, Result};
use crate::json;
use crate::webhooks::{DeliveryStatus, DeliveryView, SubscriptionRequest, SubscriptionView};

/// Runs a change (which writes the file) off the worker thread.
async fn blocking<T: Send + 'static>(state: &State, f: impl FnOnce(&crate::webhooks::Webhooks) -> Result<T> + Send + 'static) -> Result<T> {
    let hooks = state.webhooks.clone();
    web::block(move || f(&hooks)).await.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
}

/// `POST /api/webhooks`: a new subscription; 201 with it and its secret, shown only here.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), request_body = SubscriptionRequest,
    responses((status = 201, description = "Created; the answer carries the secret, never shown again", body = SubscriptionView),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse),
        (status = 409, description = "webhooks.max_subscriptions reached", body = ErrorResponse),
        (status = 422, description = "A field is missing or wrong (an unknown event type, a private target without webhooks.allow_private_targets, a malformed secret); `field` names it", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn create(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: SubscriptionRequest = json::parse(&body)?;
    let view = blocking(&state, move |h| h.create(req)).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/webhooks/{}", view.id))).json(view))
}

/// `GET /api/webhooks`: every subscription with its cursor, lag and last failure.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Subscriptions", body = Vec<SubscriptionView>),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn list(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.webhooks.list())
}

/// `GET /api/webhooks/{id}`: one subscription (without its secret).
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "The subscription", body = SubscriptionView), (status = 404, description = "No such subscription", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.webhooks.get(&path)?))
}

/// `PATCH /api/webhooks/{id}`: changes the given fields (a `secret` rotates it and is shown in
/// the answer); deliveries restart from the cursor.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Subscription id")), request_body = SubscriptionRequest,
    responses((status = 200, description = "Changed", body = SubscriptionView), (status = 404, description = "No such subscription", body = ErrorResponse),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse),
        (status = 422, description = "A field is wrong; `field` names it", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn patch(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: SubscriptionRequest = json::parse(&body)?;
    let id = path.into_inner();
    Ok(HttpResponse::Ok().json(blocking(&state, move |h| h.patch(&id, req)).await?))
}

/// `DELETE /api/webhooks/{id}`: 204; nothing more is sent to it.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such subscription", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn delete(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let id = path.into_inner();
    blocking(&state, move |h| h.delete(&id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Filters of the deliveries.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this status.
    #[serde(default)]
    status: Option<DeliveryStatus>,
    /// At most this many, 1–1,000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/webhooks/{id}/deliveries`: deliveries in flight (with attempts, last error and
/// next retry), then the recent finished ones newest first, then the dead letters.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Subscription id"), DeliveriesQuery),
    responses((status = 200, description = "Deliveries", body = Vec<DeliveryView>), (status = 404, description = "No such subscription", body = ErrorResponse),
        (status = 422, description = "A query parameter is wrong", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn deliveries(state: State, path: web::Path<String>, req: HttpRequest) -> Result<HttpResponse> {
    let q: DeliveriesQuery = query(&req)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::Invalid { field: "limit".into(), reason: "must be between 1 and 1000".into() });
    }
    Ok(HttpResponse::Ok().json(state.webhooks.deliveries(&path, q.status, limit)?))
}

/// Where a replay starts.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// The first journal record whose event is delivered again (see an event's `seq`).
    #[param(minimum = 1)]
    from_seq: u64,
}

/// `POST /api/webhooks/{id}/replay?fromSeq=N`: delivers again every event from journal record
/// `N` on, dead letters included, with their original `webhook-id`s; 202 with the subscription.
#[utoipa::path(post, path = "/api/webhooks/{id}/replay", tag = "webhooks", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Subscription id"), ReplayQuery),
    responses((status = 202, description = "Replaying from the position", body = SubscriptionView), (status = 404, description = "No such subscription", body = ErrorResponse),
        (status = 422, description = "`fromSeq` missing or outside the journal", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn replay(state: State, path: web::Path<String>, req: HttpRequest) -> Result<HttpResponse> {
    let q: ReplayQuery = query(&req)?;
    let id = path.into_inner();
    Ok(HttpResponse::Accepted().json(blocking(&state, move |h| h.replay(&id, q.from_seq)).await?))
}
