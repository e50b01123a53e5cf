//! Embeddings: `POST /api/embeddings/generate` (vectors for texts, leads or every broker),
//! `GET /api/embeddings/stats` and `POST /api/embeddings/refresh` (re-embed everything into a new
//! index generation in the background and swap it in).

use actix_web::{web, HttpResponse};
use leadrouter_actors::semantic::EmbeddingStats;
use serde::{Deserialize, Serialize};

use super::State;
use crate::error::{Error, ErrorResponse, Result};
use crate::json;

/// Most texts or leads in one `generate` request.
pub const MAX_ITEMS: usize = 256;

/// What to embed: exactly one of `texts`, `leadIds`, or `brokers: "all"`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateRequest {
    /// Texts, 1 to 256, each 1 to 4,000 characters.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 256)]
    texts: Option<Vec<String>>,
    /// Leads (known to the engine, with notes), 1 to 256: their embedded text is their notes and
    /// profile in words.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 256)]
    lead_ids: Option<Vec<String>>,
    /// `"all"`: every broker's stored profile vector.
    #[serde(default)]
    brokers: Option<String>,
}

/// One vector.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Embedded {
    /// The lead or broker id (absent for texts).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Unit vector.
    vector: Vec<f32>,
}

/// Vectors with the model that made them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generated {
    /// The encoder's model.
    model: String,
    /// The vectors' dimension.
    dimension: usize,
    /// One per item, in order (brokers by id).
    items: Vec<Embedded>,
    /// Time taken, in milliseconds (cached vectors cost almost nothing).
    millis: f64,
}

/// A refresh started.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshStarted {
    /// Always true; poll `GET /api/embeddings/stats` for `refreshing` and `lastRefresh`.
    started: bool,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

fn check_count(field: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(bad(field, "must have at least one item"));
    }
    if n > MAX_ITEMS {
        return Err(bad(field, format!("must have at most {MAX_ITEMS} items; POST /api/embeddings/refresh re-embeds everything")));
    }
    Ok(())
}

/// `POST /api/embeddings/generate`: vectors for `texts`, for `leadIds` (their notes and profile
/// in words), or every broker's profile vector (`"brokers": "all"`), with the model's name and
/// dimension and the time taken. Texts go through the engine's encoder and cache.
#[utoipa::path(post, path = "/api/embeddings/generate", tag = "embeddings", security((), ("api_key" = []), ("bearer" = [])), request_body = GenerateRequest,
    responses((status = 200, description = "The vectors", body = Generated),
        (status = 404, description = "A lead id is unknown", body = ErrorResponse),
        (status = 422, description = "Not exactly one of texts, leadIds, brokers; an empty or too long text; too many items; a lead without notes; `field` names it", body = ErrorResponse),
        (status = 502, description = "The encoder failed (e.g. the OpenAI-compatible endpoint answered an error or a wrong dimension)", body = ErrorResponse),
        (status = 409, description = "Texts asked of the structured embedding, which embeds leads and brokers only", body = ErrorResponse),
        (status = 503, description = "No encoder is installed yet", body = ErrorResponse),
        (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn generate(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let req: GenerateRequest = json::parse(&body)?;
    let sem = state.router.semantic();
    let Some((model, dimension)) = sem.model() else {
        return Err(Error::Engine(leadrouter_actors::ActorError::Unavailable("no encoder is installed yet".into())));
    };
    let given = usize::from(req.texts.is_some()) + usize::from(req.lead_ids.is_some()) + usize::from(req.brokers.is_some());
    if given != 1 {
        return Err(bad("body", "give exactly one of texts, leadIds or brokers"));
    }
    let started = std::time::Instant::now();
    let items = if let Some(texts) = req.texts {
        check_count("texts", texts.len())?;
        for (i, t) in texts.iter().enumerate() {
            if leadrouter_models::lead::is_blank(t) {
                return Err(bad(format!("texts[{i}]"), "must not be empty"));
            }
            if t.chars().count() > leadrouter_models::lead::MAX_TEXT_LEN {
                return Err(bad(format!("texts[{i}]"), format!("must be at most {} characters", leadrouter_models::lead::MAX_TEXT_LEN)));
            }
        }
        let v = sem.embed_texts(texts).await?;
        v.into_iter().map(|v| Embedded { id: None, vector: v.to_vec() }).collect()
    } else if let Some(ids) = req.lead_ids {
        check_count("leadIds", ids.len())?;
        let mut leads = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            leadrouter_models::lead::validate_id(&format!("leadIds[{i}]"), id).map_err(leadrouter_actors::ActorError::from)?;
            leads.push((id.clone(), state.router.lead_data(id).await?));
        }
        let v = sem.embed_leads(leads).await?;
        ids.into_iter().zip(v).map(|(id, v)| Embedded { id: Some(id), vector: v.to_vec() }).collect()
    } else {
        if req.brokers.as_deref() != Some("all") {
            return Err(bad("brokers", "must be \"all\""));
        }
        sem.broker_vectors().into_iter().map(|(id, v)| Embedded { id: Some(id), vector: v.to_vec() }).collect()
    };
    let millis = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    Ok(HttpResponse::Ok().json(Generated { model, dimension, items, millis }))
}

/// `GET /api/embeddings/stats`: the encoder, model and dimension; vectors per collection and the
/// index's memory; the last refresh and its duration; the cache's hit rate; the mean time per
/// embedding; the distribution of the chosen brokers' semantic-match scores.
#[utoipa::path(get, path = "/api/embeddings/stats", tag = "embeddings", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The figures", body = EmbeddingStats),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn stats(state: State) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.semantic().stats()))
}

/// `POST /api/embeddings/refresh`: re-embeds every broker and the leads resolved within
/// `semantic.refresh_lead_days` into a new index generation on a background thread, then swaps
/// it in at once; decisions go on meanwhile. 202 at once.
#[utoipa::path(post, path = "/api/embeddings/refresh", tag = "embeddings", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 202, description = "Started", body = RefreshStarted),
        (status = 409, description = "A refresh is already running", body = ErrorResponse),
        (status = 503, description = "No encoder is installed yet", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn refresh(state: State) -> Result<HttpResponse> {
    state.router.refresh_vectors()?;
    Ok(HttpResponse::Accepted().json(RefreshStarted { started: true }))
}
