//! Broker administration, performance and the leaderboard.

use actix_web::{web, HttpRequest, HttpResponse};
use leadrouter_actors::{BrokerView, LeaderboardMetric, LeaderboardRow, PerformanceView};
use leadrouter_models::{Broker, BrokerStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{query, State};
use crate::error::{Error, ErrorResponse, Result};
use crate::json;

/// `POST /api/brokers`: 201 with the broker and its load.
#[utoipa::path(post, path = "/api/brokers", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), request_body = Broker,
    responses((status = 201, description = "Created; `Location` names it", body = BrokerView),
        (status = 409, description = "The id is taken", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn create(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let b: Broker = json::parse(&body)?;
    let view = state.router.create_broker(b).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/brokers/{}", view.broker.id))).json(view))
}

/// Filters and paging for the broker list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only brokers licensed in this state.
    #[serde(default)]
    state: Option<String>,
    /// Only brokers of this group.
    #[serde(default)]
    group: Option<String>,
    /// Only brokers with this status.
    #[serde(default)]
    status: Option<BrokerStatus>,
    /// Page size, 1–1000 (default 100).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: usize,
    /// Brokers to skip, at most 1,000,000,000.
    #[serde(default)]
    #[param(maximum = 1000000000)]
    offset: usize,
}

/// One page of brokers, sorted by id.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BrokerList {
    /// Brokers matching the filters.
    total: usize,
    /// Skipped.
    offset: usize,
    /// Page size.
    limit: usize,
    /// This page.
    brokers: Vec<BrokerView>,
}

fn default_limit() -> usize {
    100
}

/// `GET /api/brokers?state=&group=&status=&limit=&offset=`: brokers sorted by id.
#[utoipa::path(get, path = "/api/brokers", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "One page of brokers with their live load", body = BrokerList), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn list(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: ListQuery = query(&req)?;
    if q.limit == 0 || q.limit > 1000 {
        return Err(Error::Invalid { field: "limit".into(), reason: "must be between 1 and 1000".into() });
    }
    if q.offset > 1_000_000_000 {
        return Err(Error::Invalid { field: "offset".into(), reason: "must be at most 1000000000".into() });
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
    Ok(HttpResponse::Ok().json(BrokerList { total, offset: q.offset, limit: q.limit, brokers: page }))
}

/// `GET /api/brokers/{id}`.
#[utoipa::path(get, path = "/api/brokers/{id}", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 200, description = "The broker and its live load", body = BrokerView), (status = 404, description = "No such broker", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.broker(&path)?))
}

/// `PUT /api/brokers/{id}`: replaces the configuration; takes effect at once.
#[utoipa::path(put, path = "/api/brokers/{id}", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")), request_body = Broker,
    responses((status = 200, description = "Replaced; open leads stay", body = BrokerView), (status = 404, description = "No such broker", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
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
#[utoipa::path(patch, path = "/api/brokers/{id}", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")),
    request_body(content = Object, description = "A JSON merge patch (RFC 7396) of the broker; null removes a field", content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Patched", body = BrokerView), (status = 404, description = "No such broker", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
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
#[utoipa::path(delete, path = "/api/brokers/{id}", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 204, description = "Retired: takes no new leads; history stays in the journal"), (status = 404, description = "No such broker", body = ErrorResponse), (status = 409, description = "The broker holds open leads", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn delete(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    state.router.delete_broker(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/brokers/{id}/performance`.
#[utoipa::path(get, path = "/api/brokers/{id}/performance", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 200, description = "All-time and recent outcomes", body = PerformanceView), (status = 404, description = "No such broker", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn performance(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.performance(&path).await?))
}

/// A lead a broker holds now.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenLeadView {
    /// The lead.
    lead_id: String,
    /// Where it is: `reserved`, `accepted` or `contacted`.
    stage: leadrouter_models::LeadState,
    /// The lead's state (USPS code).
    lead_state: String,
    /// Its lines.
    lines: Vec<&'static str>,
    /// When it was reserved for the broker.
    reserved_at: chrono::DateTime<chrono::Utc>,
    /// When the reservation times out unless accepted.
    accept_deadline: chrono::DateTime<chrono::Utc>,
    /// When the broker accepted.
    accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the broker first contacted the customer.
    contacted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The first-contact target in minutes.
    sla_minutes: u32,
}

/// `GET /api/brokers/{id}/leads`: the leads the broker holds now, oldest reservation first.
#[utoipa::path(get, path = "/api/brokers/{id}/leads", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Broker id")),
    responses((status = 200, description = "Open leads", body = Vec<OpenLeadView>), (status = 404, description = "No such broker", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn leads(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let live = state.router.inspect(&path).await?.live;
    let mut open: Vec<OpenLeadView> = live
        .open
        .into_iter()
        .map(|(lead_id, o)| OpenLeadView {
            lead_id,
            stage: o.stage,
            lead_state: o.lead_state,
            lines: o.lines.lines().map(|l| l.name()).collect(),
            reserved_at: o.reserved_at,
            accept_deadline: o.accept_deadline,
            accepted_at: o.accepted_at,
            contacted_at: o.contacted_at,
            sla_minutes: o.sla_minutes,
        })
        .collect();
    open.sort_by(|a, b| a.reserved_at.cmp(&b.reserved_at).then_with(|| a.lead_id.cmp(&b.lead_id)));
    Ok(HttpResponse::Ok().json(open))
}

/// Which outcomes the leaderboard counts.
#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Window {
    /// Since the broker started.
    AllTime,
    /// The last 30 days.
    Recent,
}

/// Leaderboard options.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BoardQuery {
    /// What to rank by (default conversionRate).
    #[serde(default = "default_metric")]
    metric: LeaderboardMetric,
    /// Rows, 1–1000 (default 10).
    #[serde(default = "default_board_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: usize,
    /// allTime (default) or recent.
    #[serde(default = "default_window")]
    window: Window,
    /// Brokers with fewer resolved leads are left out (default 5).
    #[serde(default = "default_min_leads")]
    #[param(maximum = 1000000000)]
    min_leads: u64,
}

/// Brokers ranked by one metric.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leaderboard {
    /// The ranking metric.
    metric: LeaderboardMetric,
    /// The outcome window.
    window: Window,
    /// The minimum resolved leads.
    min_leads: u64,
    /// Best first.
    rows: Vec<LeaderboardRow>,
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
#[utoipa::path(get, path = "/api/brokers/leaderboard", tag = "brokers", security((), ("api_key" = []), ("bearer" = [])), params(BoardQuery),
    responses((status = 200, description = "Brokers ranked", body = Leaderboard), (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn leaderboard(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: BoardQuery = query(&req)?;
    if q.limit == 0 || q.limit > 1000 {
        return Err(Error::Invalid { field: "limit".into(), reason: "must be between 1 and 1000".into() });
    }
    if q.min_leads > 1_000_000_000 {
        return Err(Error::Invalid { field: "minLeads".into(), reason: "must be at most 1000000000".into() });
    }
    let rows = state.router.leaderboard(q.metric, q.window == Window::Recent, q.limit, q.min_leads).await?;
    Ok(HttpResponse::Ok().json(Leaderboard { metric: q.metric, window: q.window, min_leads: q.min_leads, rows }))
}
