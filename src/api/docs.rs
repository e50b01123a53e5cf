//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! request and response types' `ToSchema` derives, served at `/api-docs/openapi.json`, and
//! `/docs`, a self-contained page (no external scripts or fonts) that renders it.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, analytics, brokers, dashboard, embeddings, experiments, health, leads, models, policies, routing, webhooks, ws};
use super::{contract, State};
use crate::error::{ErrorBody, ErrorResponse};

/// Adds the credential schemes the security middleware accepts.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "One of security.api_keys. Needed on /api and /ws only when keys are configured.",
            ))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key as `Authorization: Bearer <key>`")).build(),
            ),
        );
        c.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("security.admin_token as `Authorization: Bearer <token>`; /admin is disabled without one (401 when no credentials are sent, 403 for any token)"))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "LeadRouter",
        description = "Routes insurance leads to brokers within milliseconds. Every error has the shape \
            `{\"error\": {\"status\", \"code\", \"message\", \"field\"?, \"currentState\"?}}`; every response carries \
            `X-Request-Id`; under overload the API answers 503 with `Retry-After`."
    ),
    paths(
        routing::decide, routing::batch, routing::predict,
        models::train, models::status, models::job, models::activate,
        leads::get, leads::event, leads::why_not,
        brokers::list, brokers::create, brokers::leaderboard, brokers::get, brokers::replace, brokers::patch, brokers::delete,
        brokers::performance, brokers::leads,
        experiments::list, experiments::create, experiments::get, experiments::patch, experiments::delete,
        experiments::results, experiments::analyze,
        analytics::routing_efficiency, analytics::fairness,
        embeddings::generate, embeddings::stats, embeddings::refresh,
        policies::evaluate, policies::evaluation,
        webhooks::create, webhooks::list, webhooks::get, webhooks::patch, webhooks::delete, webhooks::deliveries, webhooks::replay,
        ws::capacity,
        admin::actors, admin::actor, admin::restart, admin::snapshot,
        health::healthz, health::readyz, health::metrics,
        dashboard::operations, dashboard::page, dashboard::script,
        openapi_json, page,
    ),
    components(schemas(ErrorResponse, ErrorBody, leadrouter_actors::feed::CapacityState, leadrouter_actors::feed::CapacityEvent)),
    modifiers(&Credentials),
    tags(
        (name = "routing", description = "Decide who gets a lead"),
        (name = "leads", description = "A lead's lifecycle"),
        (name = "brokers", description = "Broker configuration, load and performance"),
        (name = "models", description = "The conversion model: train, inspect, activate"),
        (name = "analytics", description = "Routing efficiency over a window, fairness shares against their bounds"),
        (name = "embeddings", description = "Text vectors of leads and brokers, the vector index and its refresh"),
        (name = "policies", description = "Off-policy evaluation: how a candidate policy would have done on the logged decisions"),
        (name = "experiments", description = "A/B/n tests between routing policies, with their statistics"),
        (name = "webhooks", description = "Events POSTed to your systems from the journal, at least once, signed in the Standard Webhooks \
            convention (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">`). \
            Event types: lead.assigned, lead.rerouted, lead.queued, lead.expired, lead.accepted, lead.rejected, lead.timed_out, \
            lead.contacted, lead.converted, lead.lost, lead.closed, broker.updated, broker.deleted, broker.capacity, \
            experiment.started, experiment.paused, experiment.concluded. Body: `{id, type, timestamp, seq, data}`."),
        (name = "admin", description = "Actor inspection and snapshots (admin token)"),
        (name = "operations", description = "Health, metrics, the capacity feed and these docs"),
    )
)]
pub struct ApiDoc;

/// The document as JSON for a server with `settings`: derived from the handlers and types, then
/// made exact by [`contract::apply`].
pub fn document(settings: &contract::Settings) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the derived document is JSON");
    contract::apply(&mut doc, settings);
    serde_json::to_string_pretty(&doc).expect("a JSON value prints")
}

/// `GET /api-docs/openapi.json`.
#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(state: State) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi.clone())
}

/// `GET /docs`.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "A page that renders this document; works offline", body = String, content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("docs.html"))
}
