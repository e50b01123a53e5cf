//! `POST /api/routing/decide` and `POST /api/routing/batch`.

use actix_web::{web, HttpResponse};
use futures_util::{stream, StreamExt};
use leadrouter_actors::DecideOutcome;
use leadrouter_models::DecideRequest;
use serde::Deserialize;
use serde_json::json;

use super::State;
use crate::error::{Error, Result};
use crate::json;

/// How many batch items are decided at once.
const BATCH_CONCURRENCY: usize = 16;

fn respond(outcome: DecideOutcome) -> HttpResponse {
    let (mut resp, replayed) = match &outcome {
        DecideOutcome::Assigned(a) => (HttpResponse::Ok(), a.replayed),
        DecideOutcome::Waiting(w) => (HttpResponse::Accepted(), w.replayed),
    };
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.json(outcome)
}

/// The router validates the request (field errors come back as 422 naming the field).
async fn decide_one(state: &State, req: DecideRequest) -> Result<DecideOutcome> {
    Ok(state.router.decide(req).await?)
}

/// Routes one lead: 200 with the decision, or 202 when it is queued.
pub async fn decide(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: DecideRequest = json::parse(&body)?;
    Ok(respond(decide_one(&state, req).await?))
}

/// Ranks brokers for a lead with P(convert) and score; reserves and journals nothing.
pub async fn predict(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: DecideRequest = json::parse(&body)?;
    Ok(HttpResponse::Ok().json(state.router.predict(req).await?))
}

#[derive(Deserialize)]
struct Batch {
    leads: Vec<serde_json::Value>,
}

/// Routes up to `server.max_batch` leads; results come back in order, each with its own status.
pub async fn batch(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let batch: Batch = json::parse(&body)?;
    if batch.leads.is_empty() {
        return Err(Error::Invalid { field: "leads".into(), reason: "must hold at least one lead".into() });
    }
    if batch.leads.len() > state.max_batch {
        return Err(Error::Invalid {
            field: "leads".into(),
            reason: format!("holds {} leads; at most {} are accepted per batch", batch.leads.len(), state.max_batch),
        });
    }
    let st = &state;
    let results: Vec<serde_json::Value> = stream::iter(batch.leads.into_iter().enumerate())
        .map(|(i, v)| async move {
            let prefix = format!("leads[{i}]");
            let outcome = match json::from_value::<DecideRequest>(&prefix, v) {
                Ok(req) => decide_one(st, req).await.map_err(|e| match e {
                    Error::Engine(leadrouter_actors::ActorError::Invalid(leadrouter_models::ModelError::Invalid { field, reason })) => {
                        Error::Invalid { field: format!("{prefix}.{field}"), reason }
                    }
                    other => other,
                }),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(o) => {
                    let status = if matches!(o, DecideOutcome::Assigned(_)) { 200 } else { 202 };
                    json!({"index": i, "status": status, "result": o})
                }
                Err(e) => {
                    let status = actix_web::ResponseError::status_code(&e).as_u16();
                    json!({"index": i, "status": status, "error": e.body()["error"]})
                }
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let count = |s: u64| results.iter().filter(|r| r["status"] == s).count();
    let (assigned, queued) = (count(200), count(202));
    Ok(HttpResponse::Ok().json(json!({
        "assigned": assigned,
        "queued": queued,
        "failed": results.len() - assigned - queued,
        "results": results,
    })))
}
