//! The conversion model: training jobs, status, activation.

use actix_web::{web, HttpResponse};
use leadrouter_actors::model::registry::{Drift, Job};
use leadrouter_actors::model::training::{ModelMeta, RowCounts};
use serde::{Deserialize, Serialize};

use super::State;
use crate::error::{Error, ErrorResponse, Result};
use crate::json;
use leadrouter_models::object::Object;

/// Options for a training job (the body may be empty or `null`).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Activate the new model even if it does not beat the active one.
    #[serde(default)]
    force: bool,
}

/// A started training job.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainStarted {
    /// Poll `/api/models/jobs/{id}` with it.
    job_id: String,
}

/// One stored model version in the status list.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    /// Version name.
    version: String,
    /// When it was trained.
    created_at: chrono::DateTime<chrono::Utc>,
    /// Validation AUC (absent when the validation rows hold one class only).
    auc: Option<f64>,
    /// Validation log loss.
    log_loss: f64,
    /// The historical-rate baseline's AUC on the same rows.
    baseline_auc: Option<f64>,
    /// Training, validation and unlabelled rows.
    rows: RowCounts,
}

/// The model registry: active model, versions, last job, prediction count and drift.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The model serving strategy `ml`, if any.
    active: Option<ModelMeta>,
    /// Every stored version, oldest first.
    versions: Vec<VersionSummary>,
    /// The most recent training job.
    last_job: Option<Job>,
    /// Predictions served since start.
    predictions: u64,
    /// Predicted vs observed conversion over recent outcomes.
    drift: Drift,
    /// The feature specification the engine builds.
    feature_spec_version: u32,
}

/// The model now serving.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Activated {
    /// Its version.
    active: String,
    /// Its metadata.
    meta: ModelMeta,
}

/// `POST /api/models/train` (`{"force": true}` to activate even without improvement): 202 with
/// the job id; training runs on its own thread while decisions go on.
#[utoipa::path(post, path = "/api/models/train", tag = "models", security((), ("api_key" = []), ("bearer" = [])), request_body(content = Option<TrainRequest>, description = "Optional; an empty body means defaults"),
    responses((status = 202, description = "Started; `Location` names the job", body = TrainStarted),
        (status = 409, description = "A job is already running", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn train(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        json::parse::<Option<Object<TrainRequest>>>(&body)?.map_or_else(TrainRequest::default, |o| o.0)
    };
    let id = state.router.registry().start_job(req.force)?;
    Ok(HttpResponse::Accepted().insert_header(("Location", format!("/api/models/jobs/{id}"))).json(TrainStarted { job_id: id }))
}

/// `GET /api/models/jobs/{id}`: progress and result.
#[utoipa::path(get, path = "/api/models/jobs/{id}", tag = "models", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job: running, done with metrics, or failed with the reason", body = Job), (status = 404, description = "No such job", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn job(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.registry().job(&path)?))
}

/// `GET /api/models/status`: active version and metrics, versions, last job, predictions, drift.
#[utoipa::path(get, path = "/api/models/status", tag = "models", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Registry state", body = ModelStatus), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn status(state: State) -> Result<HttpResponse> {
    let r = state.router.registry();
    let active = r.active();
    Ok(HttpResponse::Ok().json(ModelStatus {
        active: active.as_ref().map(|a| a.meta.clone()),
        versions: r
            .versions()
            .into_iter()
            .map(|m| VersionSummary {
                version: m.version,
                created_at: m.created_at,
                auc: m.metrics.auc,
                log_loss: m.metrics.log_loss,
                baseline_auc: m.baseline.auc,
                rows: m.rows,
            })
            .collect(),
        last_job: r.last_job(),
        predictions: r.predictions(),
        drift: r.drift(),
        feature_spec_version: leadrouter_models::FEATURE_SPEC_VERSION,
    }))
}

/// `POST /api/models/{version}/activate`: roll back or forward; decisions switch at once.
#[utoipa::path(post, path = "/api/models/{version}/activate", tag = "models", security((), ("api_key" = []), ("bearer" = [])), params(("version" = String, Path, description = "Model version")),
    responses((status = 200, description = "Activated", body = Activated), (status = 404, description = "No such model version", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn activate(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let r = state.router.registry().clone();
    let version = path.into_inner();
    // Loading reads files: keep it off the async workers.
    let loaded = web::block(move || r.activate(&version)).await.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
    Ok(HttpResponse::Ok().json(Activated { active: loaded.version.clone(), meta: loaded.meta.clone() }))
}
