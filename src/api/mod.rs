//! The HTTP JSON API: route table and shared state. Handlers parse and validate, call the
//! router supervisor, and map results to responses; errors go through [`crate::error::Error`].

use actix_web::{web, HttpRequest, HttpResponse};
use leadrouter_actors::RouterSupervisor;

use crate::error::Error;

pub mod admin;
pub mod brokers;
pub mod health;
pub mod leads;
pub mod models;
pub mod routing;
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
    pub snapshots: leadrouter_actors::snapshot::SnapshotHandle,
}

/// Shared state as handlers receive it.
pub type State = web::Data<AppState>;

async fn not_found(req: HttpRequest) -> Result<HttpResponse, Error> {
    Err(Error::NoRoute(format!("{} {}", req.method(), req.path())))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, Error> {
    Err(Error::MethodNotAllowed(req.method().to_string()))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .service(resource("/routing/decide").route(web::post().to(routing::decide)))
            .service(resource("/routing/batch").route(web::post().to(routing::batch)))
            .service(resource("/routing/predict").route(web::post().to(routing::predict)))
            .service(resource("/models/train").route(web::post().to(models::train)))
            .service(resource("/models/status").route(web::get().to(models::status)))
            .service(resource("/models/jobs/{id}").route(web::get().to(models::job)))
            .service(resource("/models/{version}/activate").route(web::post().to(models::activate)))
            .service(resource("/leads/{lead_id}").route(web::get().to(leads::get)))
            .service(resource("/leads/{lead_id}/events").route(web::post().to(leads::event)))
            .service(resource("/brokers").route(web::get().to(brokers::list)).route(web::post().to(brokers::create)))
            .service(resource("/brokers/leaderboard").route(web::get().to(brokers::leaderboard)))
            .service(
                resource("/brokers/{id}")
                    .route(web::get().to(brokers::get))
                    .route(web::put().to(brokers::replace))
                    .route(web::patch().to(brokers::patch))
                    .route(web::delete().to(brokers::delete)),
            )
            .service(resource("/brokers/{id}/performance").route(web::get().to(brokers::performance))),
    )
    .service(resource("/ws/capacity").route(web::get().to(ws::capacity)))
    .service(
        web::scope("/admin")
            .service(resource("/actors").route(web::get().to(admin::actors)))
            .service(resource("/actors/{id}").route(web::get().to(admin::actor)))
            .service(resource("/actors/{id}/restart").route(web::post().to(admin::restart)))
            .service(resource("/snapshot").route(web::post().to(admin::snapshot))),
    )
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .default_service(web::to(not_found));
}

/// Parses a query string into `T`; errors are 422 naming the `query` parameter.
pub fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, Error> {
    web::Query::<T>::from_query(req.query_string()).map(web::Query::into_inner).map_err(|e| {
        let msg = e.to_string();
        let reason = msg.strip_prefix("Query deserialize error: ").unwrap_or(&msg).to_string();
        Error::Invalid { field: "query".into(), reason }
    })
}
