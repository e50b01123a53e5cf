//! Liveness, readiness and metrics.

use actix_web::HttpResponse;
use serde::Serialize;

use super::State;

/// The liveness answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The readiness answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `open` or `failed` (a failed journal stops all writes).
    journal: &'static str,
    /// Broker actors started.
    brokers: usize,
    /// Leads in the queue.
    queued: usize,
    /// Decisions since start.
    decisions: u64,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz`: the journal accepts writes and the actors are started.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Journal open and actors started (snapshot loaded and journal replayed before the port opens)", body = Readiness),
        (status = 503, description = "The journal failed; writes are refused", body = Readiness)))]
pub async fn readyz(state: State) -> HttpResponse {
    let r = &state.router;
    let journal_ok = !r.journal().is_failed();
    let body = Readiness {
        status: if journal_ok { "ready" } else { "unavailable" },
        journal: if journal_ok { "open" } else { "failed" },
        brokers: r.broker_count(),
        queued: r.queue_len(),
        decisions: r.decisions_made(),
    };
    if journal_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format, every metric prefixed `leadrouter_`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4; every metric is prefixed `leadrouter_`", body = String, content_type = "text/plain")))]
pub async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.router.metrics_text())
}
