//! The conversion model: training jobs, status, activation.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::State;
use crate::error::{Error, Result};
use crate::json;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TrainRequest {
    #[serde(default)]
    force: bool,
}

/// `POST /api/models/train` (`{"force": true}` to activate even without improvement): 202 with
/// the job id; training runs on its own thread while decisions go on.
pub async fn train(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) { TrainRequest::default() } else { json::parse(&body)? };
    let id = state.router.registry().start_job(req.force)?;
    Ok(HttpResponse::Accepted().insert_header(("Location", format!("/api/models/jobs/{id}"))).json(json!({"jobId": id})))
}

/// `GET /api/models/jobs/{id}`: progress and result.
pub async fn job(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.registry().job(&path)?))
}

/// `GET /api/models/status`: active version and metrics, versions, last job, predictions, drift.
pub async fn status(state: State) -> Result<HttpResponse> {
    let r = state.router.registry();
    let active = r.active();
    Ok(HttpResponse::Ok().json(json!({
        "active": active.as_ref().map(|a| &a.meta),
        "versions": r.versions().iter().map(|m| json!({
            "version": m.version, "createdAt": m.created_at, "auc": m.metrics.auc, "logLoss": m.metrics.log_loss,
            "baselineAuc": m.baseline.auc, "rows": m.rows,
        })).collect::<Vec<_>>(),
        "lastJob": r.last_job(),
        "predictions": r.predictions(),
        "drift": r.drift(),
        "featureSpecVersion": leadrouter_models::FEATURE_SPEC_VERSION,
    })))
}

/// `POST /api/models/{version}/activate`: roll back or forward; decisions switch at once.
pub async fn activate(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let r = state.router.registry().clone();
    let version = path.into_inner();
    // Loading reads files: keep it off the async workers.
    let loaded = web::block(move || r.activate(&version)).await.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
    Ok(HttpResponse::Ok().json(json!({"active": loaded.version, "meta": loaded.meta})))
}
