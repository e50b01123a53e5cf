//! Broker administration, performance and the leaderboard.

use actix_web::{web, HttpRequest, HttpResponse};
use leadrouter_actors::LeaderboardMetric;
use leadrouter_models::{Broker, BrokerStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query, State};
use crate::error::{Error, Result};
use crate::json;

/// `POST /api/brokers`: 201 with the broker and its load.
pub async fn create(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let b: Broker = json::parse(&body)?;
    let view = state.router.create_broker(b).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/brokers/{}", view.broker.id))).json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    status: Option<BrokerStatus>,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

/// `GET /api/brokers?state=&group=&status=&limit=&offset=`: brokers sorted by id.
pub async fn list(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: ListQuery = query(&req)?;
    if q.limit == 0 || q.limit > 1000 {
        return Err(Error::Invalid { field: "limit".into(), reason: "must be between 1 and 1000".into() });
    }
    let all: Vec<_> = state
        .router
        .brokers()
        .into_iter()
        .filter(|v| q.state.as_ref().is_none_or(|s| v.broker.licenses.iter().any(|l| &l.state == s)))
        .filter(|v| q.group.as_ref().is_none_or(|g| v.broker.group.as_ref() == Some(g)))
        .filter(|v| q.status.is_none_or(|s| v.broker.status == s))
        .collect();
    let total = all.len();
    let page: Vec<_> = all.into_iter().skip(q.offset).take(q.limit).collect();
    Ok(HttpResponse::Ok().json(json!({"total": total, "offset": q.offset, "limit": q.limit, "brokers": page})))
}

/// `GET /api/brokers/{id}`.
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.broker(&path)?))
}

/// `PUT /api/brokers/{id}`: replaces the configuration; takes effect at once.
pub async fn replace(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let b: Broker = json::parse(&body)?;
    let view = state.router.update_broker(&path, move |_| Ok(b)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge_patch(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// `PATCH /api/brokers/{id}`: a JSON merge patch, e.g. `{"status":"away"}` or
/// `{"capacity":{"maxConcurrent":5}}`; takes effect at once.
pub async fn patch(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let patch: Value = json::parse(&body)?;
    if !patch.is_object() {
        return Err(Error::Invalid { field: "body".into(), reason: "a merge patch must be a JSON object".into() });
    }
    let view = state
        .router
        .update_broker(&path, move |current| {
            let mut doc = serde_json::to_value(&current)?;
            merge_patch(&mut doc, patch);
            json::from_value::<Broker>("", doc).map_err(|e| match e {
                Error::Invalid { field, reason } => leadrouter_models::ModelError::invalid(field, reason).into(),
                other => leadrouter_models::ModelError::invalid("body", other.to_string()).into(),
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /api/brokers/{id}`: 204; 409 while the broker holds open leads.
pub async fn delete(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    state.router.delete_broker(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/brokers/{id}/performance`.
pub async fn performance(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.performance(&path).await?))
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum Window {
    AllTime,
    Recent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BoardQuery {
    #[serde(default = "default_metric")]
    metric: LeaderboardMetric,
    #[serde(default = "default_board_limit")]
    limit: usize,
    #[serde(default = "default_window")]
    window: Window,
    #[serde(default = "default_min_leads")]
    min_leads: u64,
}

fn default_metric() -> LeaderboardMetric {
    LeaderboardMetric::ConversionRate
}
fn default_board_limit() -> usize {
    10
}
fn default_window() -> Window {
    Window::AllTime
}
fn default_min_leads() -> u64 {
    5
}

/// `GET /api/brokers/leaderboard?metric=conversionRate&limit=10&window=allTime&minLeads=5`.
pub async fn leaderboard(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: BoardQuery = query(&req)?;
    if q.limit == 0 || q.limit > 1000 {
        return Err(Error::Invalid { field: "limit".into(), reason: "must be between 1 and 1000".into() });
    }
    let rows = state.router.leaderboard(q.metric, q.window == Window::Recent, q.limit, q.min_leads).await?;
    Ok(HttpResponse::Ok().json(json!({"metric": q.metric, "window": if q.window == Window::Recent { "recent" } else { "allTime" }, "minLeads": q.min_leads, "rows": rows})))
}
