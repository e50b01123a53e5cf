//! `GET /ws/capacity`: a snapshot of every broker's capacity on connect, then one delta per
//! change, numbered by `seq`. Filters: `brokers=a,b`, `states=CA,NV`, `minUtilization=0.8`.
//! The server pings every 5 s and drops a client silent for 15 s, or one that does not take a
//! message within 10 s. A client that falls more than `routing.feed_buffer` events behind
//! gets `{"type":"lagged","missed":N}` and a fresh snapshot; routing never waits for clients.
//! After a snapshot with `seq` S, only deltas with `seq` > S follow, each one more than the last
//! one sent unless the filter skipped some.

use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{Message, Session};
use leadrouter_actors::feed::{CapacityEvent, CapacityState};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{query, State};
use crate::error::{Error, ErrorResponse, Result};

const PING_EVERY: Duration = Duration::from_secs(5);
const SILENT_FOR: Duration = Duration::from_secs(15);
const SEND_WITHIN: Duration = Duration::from_secs(10);
/// Largest frame a client may send.
const MAX_FRAME: usize = 4096;

/// Which brokers a feed client wants.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterQuery {
    /// Comma-separated broker ids.
    brokers: Option<String>,
    /// Comma-separated states: brokers licensed in any of them.
    states: Option<String>,
    /// Only brokers at least this busy, 0–1.
    min_utilization: Option<f64>,
}

/// Which events a client wants.
struct Filter {
    brokers: Option<Vec<String>>,
    states: Option<Vec<String>>,
    min_utilization: f64,
}

fn list(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
}

impl Filter {
    fn matches(&self, st: &CapacityState, state: &State) -> bool {
        self.brokers.as_ref().is_none_or(|b| b.contains(&st.broker_id))
            && st.utilization >= self.min_utilization
            && self.states.as_ref().is_none_or(|want| state.router.broker_states(&st.broker_id).iter().any(|s| want.contains(s)))
    }
}

async fn send(session: &mut Session, v: serde_json::Value) -> bool {
    matches!(tokio::time::timeout(SEND_WITHIN, session.text(v.to_string())).await, Ok(Ok(())))
}

/// Sends a snapshot; returns its `seq` (events up to it are already reflected), or None when
/// the client is gone.
async fn send_snapshot(session: &mut Session, state: &State, filter: &Filter) -> Option<u64> {
    let seq = state.router.feed().seq();
    let brokers: Vec<CapacityState> = state.router.capacity_snapshot().into_iter().filter(|s| filter.matches(s, state)).collect();
    send(session, json!({"type": "snapshot", "seq": seq, "at": chrono::Utc::now(), "brokers": brokers})).await.then_some(seq)
}

fn delta(ev: &CapacityEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(ev).unwrap_or_default();
    v["type"] = json!("delta");
    v
}

/// Upgrades to a websocket and streams capacity changes.
#[utoipa::path(get, path = "/ws/capacity", tag = "operations", security((), ("api_key" = []), ("bearer" = [])), params(FilterQuery),
    responses(
        (status = 101, description = "Switching to a websocket. Text messages: `{\"type\":\"snapshot\",\"seq\",\"at\",\"brokers\":[CapacityState]}` on connect, then `{\"type\":\"delta\"}` merged with a CapacityEvent per change, and `{\"type\":\"lagged\",\"missed\":N}` followed by a fresh snapshot when the client fell behind"),
        (status = 422, description = "A filter is invalid, or the request is not a websocket upgrade; `field` names which", body = ErrorResponse),
        (status = 401, description = "No credentials", body = ErrorResponse),
        (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn capacity(state: State, req: HttpRequest, body: web::Payload) -> Result<HttpResponse> {
    // A page elsewhere must not open the feed with the visitor's ambient credentials: browsers
    // send Origin on every websocket, and only this server's own pages and the configured CORS
    // origins are let through. Clients that are not browsers send none.
    if let Some(origin) = req.headers().get("origin").map(|o| o.to_str().unwrap_or("")) {
        let host = req.connection_info().host().to_string();
        let allowed = req.app_data::<web::Data<crate::security::Guard>>().is_some_and(|g| g.origin_allowed(origin, &host));
        if !allowed {
            return Err(Error::Forbidden(format!("websocket origin '{origin}' is not allowed; list it in security.cors_origins")));
        }
    }
    let q: FilterQuery = query(&req)?;
    if q.min_utilization.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
        return Err(Error::Invalid { field: "minUtilization".into(), reason: "must be between 0 and 1".into() });
    }
    let filter = Filter { brokers: list(q.brokers), states: list(q.states), min_utilization: q.min_utilization.unwrap_or(0.0) };
    let (mut resp, mut session, stream) =
        actix_ws::handle(&req, body).map_err(|e| Error::Invalid { field: "upgrade".into(), reason: e.to_string() })?;
    // Clients only ever send pings, pongs and close frames: a larger frame ends the connection.
    let mut stream = stream.max_frame_size(MAX_FRAME);
    // A browser that offered its key as a subprotocol (it cannot set headers) gets `leadrouter`
    // chosen, as the websocket handshake requires when protocols are offered.
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
    if offered.split(',').any(|p| p.trim() == "leadrouter") {
        resp.headers_mut()
            .insert(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL, actix_web::http::header::HeaderValue::from_static("leadrouter"));
    }
    // Subscribe before the snapshot, so no change falls between the two.
    let (mut events, guard) = state.router.feed().subscribe();
    let mut closing = state.router.feed().closing();
    actix_rt::spawn(async move {
        let _registered = guard;
        // Events up to `floor` are in the last snapshot sent: never send them again, so the
        // client sees `seq` only rise.
        let mut floor = send_snapshot(&mut session, &state, &filter).await;
        let mut alive = floor.is_some();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut heard = Instant::now();
        while alive {
            tokio::select! {
                msg = stream.recv() => match msg {
                    Some(Ok(Message::Ping(b))) => { heard = Instant::now(); alive = session.pong(&b).await.is_ok(); }
                    Some(Ok(Message::Pong(_) | Message::Text(_) | Message::Binary(_))) => heard = Instant::now(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => alive = false,
                    Some(Ok(_)) => {}
                },
                ev = events.recv() => match ev {
                    Ok(ev) => if Some(ev.seq) > floor && filter.matches(&ev.state, &state) { alive = send(&mut session, delta(&ev)).await },
                    Err(RecvError::Lagged(missed)) => {
                        floor = None;
                        if send(&mut session, json!({"type": "lagged", "missed": missed})).await {
                            floor = send_snapshot(&mut session, &state, &filter).await;
                        }
                        alive = floor.is_some();
                    }
                    Err(RecvError::Closed) => alive = false,
                },
                _ = closing.wait_for(|c| *c) => alive = false,
                _ = ping.tick() => {
                    alive = heard.elapsed() < SILENT_FOR && session.ping(b"").await.is_ok();
                }
            }
        }
        let reason =
            closing.borrow().then(|| actix_ws::CloseReason { code: actix_ws::CloseCode::Away, description: Some("shutting down".into()) });
        let _ = session.close(reason).await;
    });
    Ok(resp)
}
