//! `/admin`: actor inspection, restarts and snapshots (admin token required).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::State;
use crate::error::Result;

/// `GET /admin/actors`: the supervisor and every broker actor.
pub async fn actors(state: State) -> Result<HttpResponse> {
    let r = &state.router;
    let actors = r.actors();
    Ok(HttpResponse::Ok().json(json!({
        "supervisor": {
            "brokers": r.broker_count(),
            "queued": r.queue_len(),
            "decisions": r.decisions_made(),
            "mailboxTotal": actors.iter().map(|a| a.counters.mailbox).sum::<u64>(),
            "feedClients": r.feed().clients(),
            "feedSeq": r.feed().seq(),
        },
        "brokers": actors,
    })))
}

/// `GET /admin/actors/{brokerId}`: the full live state of one actor.
pub async fn actor(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.inspect(&path).await?))
}

/// `POST /admin/actors/{brokerId}/restart`: restarts the actor; shows its state before and after.
pub async fn restart(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let (before, after) = state.router.restart_actor(&path).await?;
    Ok(HttpResponse::Ok().json(json!({
        "brokerId": path.into_inner(),
        "restarts": after.counters.restarts,
        "stateSurvived": before.live == after.live,
        "before": before.live,
        "after": after.live,
    })))
}

/// `POST /admin/snapshot`: writes a snapshot now.
pub async fn snapshot(state: State) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.snapshots.snapshot_now().await?))
}
