//! Liveness, readiness and metrics.

use actix_web::HttpResponse;
use serde_json::json;

use super::State;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the journal accepts writes and the actors are started.
pub async fn readyz(state: State) -> HttpResponse {
    let r = &state.router;
    let journal_ok = !r.journal().is_failed();
    let body = json!({
        "status": if journal_ok { "ready" } else { "unavailable" },
        "journal": if journal_ok { "open" } else { "failed" },
        "brokers": r.broker_count(),
        "queued": r.queue_len(),
        "decisions": r.decisions_made(),
    });
    if journal_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format, every metric prefixed `leadrouter_`.
pub async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.router.metrics_text())
}
