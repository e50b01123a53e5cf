//! The live operations page for routing managers: `GET /dashboard` and its script, served by
//! the engine with no external resource (the Content-Security-Policy forbids any), and
//! `GET /api/operations`, the live figures it shows beside the capacity feed and the REST API.

use actix_web::{HttpRequest, HttpResponse};
use leadrouter_actors::views::OperationsView;

use super::State;
use crate::error::ErrorResponse;

/// Where the page may connect: this server only, over HTTP and websockets.
fn policy(req: &HttpRequest) -> String {
    let host = req.connection_info().host().to_string();
    // A Host header is a name and a port at most; anything else gets no websocket source.
    let host = if host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) { host } else { String::new() };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// `GET /dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "operations",
    responses((status = 200, description = "The live operations page (asks for an API key when keys are set; keeps it for the browser session only)", body = String, content_type = "text/html")))]
pub async fn page(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", policy(&req)))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .body(include_str!("dashboard.html"))
}

/// `GET /dashboard/app.js`.
#[utoipa::path(get, path = "/dashboard/app.js", tag = "operations",
    responses((status = 200, description = "The page's script", body = String, content_type = "text/javascript")))]
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("x-content-type-options", "nosniff"))
        .body(include_str!("dashboard.js"))
}

/// `GET /api/operations`: the queue now, and the activity of the last hour (twelve five-minute
/// slots, the current one included) and of today (UTC), counted when it happened: first
/// assignments, queued leads, re-routes, first contacts with their minutes and SLA hits,
/// conversions and revenue; and the decisions made since start, for a rate between two reads.
#[utoipa::path(get, path = "/api/operations", tag = "operations", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Live figures", body = OperationsView),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn operations(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.router.operations())
}
