//! `/admin`: actor inspection, restarts and snapshots (admin token required).

use actix_web::{web, HttpResponse};
use leadrouter_actors::messages::LiveView;
use leadrouter_actors::storage::snapshot::SnapshotMeta;
use leadrouter_actors::storage::state::BrokerLive;
use leadrouter_actors::ActorSummary;
use serde::Serialize;

use super::State;
use crate::error::{ErrorResponse, Result};

/// The supervisor's own numbers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorSummary {
    /// Broker actors.
    brokers: usize,
    /// Leads waiting in the queue.
    queued: usize,
    /// Decisions since start.
    decisions: u64,
    /// Messages waiting in all broker mailboxes.
    mailbox_total: u64,
    /// Capacity-feed websocket clients.
    feed_clients: usize,
    /// The feed's last sequence number.
    feed_seq: u64,
}

/// Every actor at a glance.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActorsView {
    /// The router supervisor.
    supervisor: SupervisorSummary,
    /// One row per broker actor, by id.
    brokers: Vec<ActorSummary>,
}

/// What a restart did.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartReport {
    /// The broker.
    broker_id: String,
    /// Restarts so far.
    restarts: u32,
    /// True when the live state after equals the state before.
    state_survived: bool,
    /// Live state before.
    before: BrokerLive,
    /// Live state after.
    after: BrokerLive,
}

/// `GET /admin/actors`: the supervisor and every broker actor.
#[utoipa::path(get, path = "/admin/actors", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "Supervisor and broker actors", body = ActorsView), (status = 401, description = "No admin token", body = ErrorResponse), (status = 403, description = "Wrong admin token, or admin disabled", body = ErrorResponse)))]
pub async fn actors(state: State) -> Result<HttpResponse> {
    let r = &state.router;
    let actors = r.actors();
    Ok(HttpResponse::Ok().json(ActorsView {
        supervisor: SupervisorSummary {
            brokers: r.broker_count(),
            queued: r.queue_len(),
            decisions: r.decisions_made(),
            mailbox_total: actors.iter().map(|a| a.counters.mailbox).sum(),
            feed_clients: r.feed().clients(),
            feed_seq: r.feed().seq(),
        },
        brokers: actors,
    }))
}

/// `GET /admin/actors/{brokerId}`: the full live state of one actor.
#[utoipa::path(get, path = "/admin/actors/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 200, description = "One actor's full live state", body = LiveView), (status = 404, description = "No such broker", body = ErrorResponse), (status = 401, description = "No admin token", body = ErrorResponse), (status = 403, description = "Wrong admin token, or admin disabled", body = ErrorResponse)))]
pub async fn actor(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.inspect(&path).await?))
}

/// `POST /admin/actors/{brokerId}/restart`: restarts the actor; shows its state before and after.
#[utoipa::path(post, path = "/admin/actors/{id}/restart", tag = "admin", security(("admin_token" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 200, description = "Restarted with its state", body = RestartReport), (status = 404, description = "No such broker", body = ErrorResponse), (status = 401, description = "No admin token", body = ErrorResponse), (status = 403, description = "Wrong admin token, or admin disabled", body = ErrorResponse)))]
pub async fn restart(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let (before, after) = state.router.restart_actor(&path).await?;
    Ok(HttpResponse::Ok().json(RestartReport {
        broker_id: path.into_inner(),
        restarts: after.counters.restarts,
        state_survived: before.live == after.live,
        before: before.live,
        after: after.live,
    }))
}

/// `POST /admin/snapshot`: writes a snapshot now.
#[utoipa::path(post, path = "/admin/snapshot", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "Snapshot written", body = SnapshotMeta), (status = 401, description = "No admin token", body = ErrorResponse), (status = 403, description = "Wrong admin token, or admin disabled", body = ErrorResponse)))]
pub async fn snapshot(state: State) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.snapshots.snapshot_now().await?))
}
