//! The HTTP JSON API: route table and shared state. Handlers parse and validate, call the
//! router supervisor, and map results to responses; errors go through [`crate::error::Error`].

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use leadrouter_actors::RouterSupervisor;

use crate::error::Error;
use crate::security::{protect, Access};

pub mod admin;
pub mod analytics;
pub mod brokers;
pub mod contract;
pub mod dashboard;
pub mod docs;
pub mod dto;
pub mod embeddings;
pub mod experiments;
pub mod health;
pub mod leads;
pub mod models;
pub mod policies;
pub mod routing;
pub mod webhooks;
pub mod ws;

/// What every handler can reach.
pub struct AppState {
    /// The router supervisor.
    pub router: RouterSupervisor,
    /// Most leads per batch.
    pub max_batch: usize,
    /// Largest body.
    pub body_limit: usize,
    /// Writes snapshots on request.
    pub snapshots: leadrouter_actors::storage::snapshot::SnapshotHandle,
    /// Webhook subscriptions and their deliveries.
    pub webhooks: std::sync::Arc<crate::webhooks::Webhooks>,
    /// The OpenAPI document for this configuration.
    pub openapi: actix_web::web::Bytes,
}

/// Shared state as handlers receive it.
pub type State = web::Data<AppState>;

async fn not_found(req: HttpRequest) -> Result<HttpResponse, Error> {
    Err(Error::NoRoute(format!("{} {}", req.method(), req.path())))
}

/// A resource whose other methods get 405 with `Allow` listing `allow`.
fn resource(path: &str, allow: String) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move { Err::<HttpResponse, Error>(Error::MethodNotAllowed { method: req.method().to_string(), allow }) }
    }))
}

/// One registered route: method, full path (OpenAPI template syntax) and handler.
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// Full path, e.g. `/api/leads/{lead_id}`.
    pub path: &'static str,
    /// Who may call it; its checks run in front of the handler, on the route that matched.
    pub access: Access,
    route: actix_web::Route,
}

fn r<F, Args>(method: Method, path: &'static str, access: Access, handler: F) -> RouteSpec
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    RouteSpec { route: protect(access, web::method(method.clone()).to(handler)), method, path, access }
}

/// Every route, in matching order (a literal segment before a `{param}` at the same place),
/// with its access class. [`configure`] registers exactly these; the OpenAPI test checks each
/// one is documented with the credentials its class needs, and the security tests try every
/// protected one under many spellings of its path.
///
/// The router tries the paths in turn and every `{param}` path it passes costs a regular
/// expression match, so the requests of a lead's lifecycle and the health probe come first.
pub fn routes() -> Vec<RouteSpec> {
    vec![
        r(Method::POST, "/api/routing/decide", Access::Api, routing::decide),
        r(Method::POST, "/api/leads/{lead_id}/events", Access::Api, leads::event),
        r(Method::GET, "/api/leads/{lead_id}", Access::Api, leads::get),
        r(Method::GET, "/api/leads/{lead_id}/why-not/{broker_id}", Access::Api, leads::why_not),
        r(Method::GET, "/healthz", Access::Open, health::healthz),
        r(Method::POST, "/api/routing/batch", Access::Api, routing::batch),
        r(Method::POST, "/api/routing/predict", Access::Api, routing::predict),
        r(Method::POST, "/api/models/train", Access::Api, models::train),
        r(Method::GET, "/api/models/status", Access::Api, models::status),
        r(Method::GET, "/api/models/jobs/{id}", Access::Api, models::job),
        r(Method::POST, "/api/models/{version}/activate", Access::Api, models::activate),
        r(Method::GET, "/api/brokers", Access::Api, brokers::list),
        r(Method::POST, "/api/brokers", Access::Api, brokers::create),
        r(Method::GET, "/api/brokers/leaderboard", Access::Api, brokers::leaderboard),
        r(Method::GET, "/api/brokers/{id}", Access::Api, brokers::get),
        r(Method::PUT, "/api/brokers/{id}", Access::Api, brokers::replace),
        r(Method::PATCH, "/api/brokers/{id}", Access::Api, brokers::patch),
        r(Method::DELETE, "/api/brokers/{id}", Access::Api, brokers::delete),
        r(Method::GET, "/api/brokers/{id}/performance", Access::Api, brokers::performance),
        r(Method::GET, "/api/brokers/{id}/leads", Access::Api, brokers::leads),
        r(Method::GET, "/api/operations", Access::Api, dashboard::operations),
        r(Method::GET, "/api/analytics/routing-efficiency", Access::Api, analytics::routing_efficiency),
        r(Method::GET, "/api/analytics/fairness", Access::Api, analytics::fairness),
        r(Method::POST, "/api/embeddings/generate", Access::Api, embeddings::generate),
        r(Method::GET, "/api/embeddings/stats", Access::Api, embeddings::stats),
        r(Method::POST, "/api/embeddings/refresh", Access::Api, embeddings::refresh),
        r(Method::POST, "/api/policies/evaluate", Access::Api, policies::evaluate),
        r(Method::GET, "/api/policies/evaluations/{id}", Access::Api, policies::evaluation),
        r(Method::GET, "/api/webhooks", Access::Api, webhooks::list),
        r(Method::POST, "/api/webhooks", Access::Api, webhooks::create),
        r(Method::GET, "/api/webhooks/{id}", Access::Api, webhooks::get),
        r(Method::PATCH, "/api/webhooks/{id}", Access::Api, webhooks::patch),
        r(Method::DELETE, "/api/webhooks/{id}", Access::Api, webhooks::delete),
        r(Method::GET, "/api/webhooks/{id}/deliveries", Access::Api, webhooks::deliveries),
        r(Method::POST, "/api/webhooks/{id}/replay", Access::Api, webhooks::replay),
        r(Method::GET, "/api/experiments", Access::Api, experiments::list),
        r(Method::POST, "/api/experiments", Access::Api, experiments::create),
        r(Method::GET, "/api/experiments/{id}", Access::Api, experiments::get),
        r(Method::PATCH, "/api/experiments/{id}", Access::Api, experiments::patch),
        r(Method::DELETE, "/api/experiments/{id}", Access::Api, experiments::delete),
        r(Method::GET, "/api/experiments/{id}/results", Access::Api, experiments::results),
        r(Method::POST, "/api/experiments/{id}/analyze", Access::Api, experiments::analyze),
        r(Method::GET, "/ws/capacity", Access::Feed, ws::capacity),
        r(Method::GET, "/admin/actors", Access::Admin, admin::actors),
        r(Method::GET, "/admin/actors/{id}", Access::Admin, admin::actor),
        r(Method::POST, "/admin/actors/{id}/restart", Access::Admin, admin::restart),
        r(Method::POST, "/admin/snapshot", Access::Admin, admin::snapshot),
        r(Method::GET, "/readyz", Access::Open, health::readyz),
        r(Method::GET, "/metrics", Access::Open, health::metrics),
        r(Method::GET, "/api-docs/openapi.json", Access::Open, docs::openapi_json),
        r(Method::GET, "/docs", Access::Open, docs::page),
        r(Method::GET, "/dashboard", Access::Open, dashboard::page),
        r(Method::GET, "/dashboard/app.js", Access::Open, dashboard::script),
    ]
}

/// Registers every route of [`routes`]; other methods on a known path get 405 with `Allow`,
/// unknown paths 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let all = routes();
    let allow = |path: &str| all.iter().filter(|r| r.path == path).map(|r| r.method.as_str()).collect::<Vec<_>>().join(", ");
    let allowed: Vec<(&'static str, String)> = all.iter().map(|r| (r.path, allow(r.path))).collect();
    let mut resources: Vec<(&'static str, actix_web::Resource)> = Vec::new();
    for spec in routes() {
        match resources.iter_mut().find(|(p, _)| *p == spec.path) {
            Some((_, res)) => *res = std::mem::replace(res, web::resource("")).route(spec.route),
            None => {
                let allow = allowed.iter().find(|(p, _)| *p == spec.path).map(|(_, a)| a.clone()).unwrap_or_default();
                resources.push((spec.path, resource(spec.path, allow).route(spec.route)));
            }
        }
    }
    for (_, res) in resources {
        cfg.service(res);
    }
    cfg.default_service(web::to(not_found));
}

/// Parses a query string into `T`; errors are 422 naming the `query` parameter.
pub fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, Error> {
    web::Query::<T>::from_query(req.query_string()).map(web::Query::into_inner).map_err(|e| {
        let msg = e.to_string();
        let reason = msg.strip_prefix("Query deserialize error: ").unwrap_or(&msg).to_string();
        Error::Invalid { field: "query".into(), reason }
    })
}
