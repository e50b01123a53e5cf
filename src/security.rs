//! Access control and overload protection. Every request gets a request id and has its path
//! put in canonical spelling ([`crate::path`]) before routing; the checks of a route's access
//! class ([`Access`]: API keys, the admin token, the ceiling on API requests in flight) are
//! attached to the route itself ([`protect`]), so they run on the route that matched, whatever
//! spelling of the path reached it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::uri::{PathAndQuery, Uri};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, ResponseError};
use tracing::Instrument;

use crate::config::SecurityConfig;
use crate::error::Error;

/// Request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Who may call a route, declared beside it in the route table ([`crate::api::routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes, scrapers, the API document and its page.
    Open,
    /// An API key when `security.api_keys` is set; counts toward `security.max_in_flight`.
    Api,
    /// An API key when `security.api_keys` is set; long-lived (the websocket feed), so it holds
    /// no in-flight slot.
    Feed,
    /// The admin token; disabled while `security.admin_token` is empty (401 without credentials, 403 with any).
    Admin,
}

/// Shared state of the guard.
pub struct Guard {
    cfg: SecurityConfig,
    in_flight: Arc<AtomicUsize>,
    next_id: AtomicU64,
    boot: u64,
    /// Token buckets of the rate limit, by key (or client address): tokens left, last refill.
    buckets: parking_lot::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

/// Buckets kept before idle ones are dropped.
const BUCKETS_KEPT: usize = 10_000;

impl Guard {
    /// A guard for `cfg`.
    pub fn new(cfg: SecurityConfig) -> Self {
        let boot = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { cfg, in_flight: Arc::new(AtomicUsize::new(0)), next_id: AtomicU64::new(1), boot, buckets: Default::default() }
    }

    /// Takes one request from `who`'s bucket; `Err(seconds)` until the next token when empty.
    fn take(&self, who: &str) -> Result<(), u64> {
        let (rate, burst) = (self.cfg.rate_limit_per_second, self.cfg.rate_limit_burst);
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= BUCKETS_KEPT && !buckets.contains_key(who) {
            // A full bucket is as good as none: drop those that refilled.
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(who.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// True when a websocket upgrade from `origin` may proceed: the page's own origin (`host`,
    /// over http or https) or one of `security.cors_origins`.
    pub fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        origin == format!("http://{host}") || origin == format!("https://{host}") || self.cfg.cors_origins.iter().any(|o| o == origin)
    }

    /// Requests to /api in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Equal without revealing where two secrets differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &ServiceRequest) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(|v| v.trim().to_string())
}

/// The websocket subprotocol that carries an API key, for browsers, which cannot set headers on
/// a websocket: `leadrouter.key.<the key's bytes in hex>`, offered beside `leadrouter`.
pub const WS_KEY_PROTOCOL: &str = "leadrouter.key.";

/// The key offered as a websocket subprotocol, if any.
fn protocol_key(req: &ServiceRequest) -> Option<String> {
    let offered = req.headers().get("sec-websocket-protocol")?.to_str().ok()?;
    let hex = offered.split(',').map(str::trim).find_map(|p| p.strip_prefix(WS_KEY_PROTOCOL))?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

fn check(g: &Guard, access: Access, req: &ServiceRequest) -> Result<(), Error> {
    match access {
        Access::Open => Ok(()),
        // No credentials is 401 even while admin is disabled: the route still requires a token,
        // and a client told 403 would not learn that it sent none.
        Access::Admin => match presented(req) {
            None => Err(Error::Unauthorized("admin routes need \"Authorization: Bearer <admin token>\"".into())),
            Some(_) if g.cfg.admin_token.is_empty() => Err(Error::Forbidden("admin routes are disabled; set security.admin_token".into())),
            Some(t) if same(t.as_bytes(), g.cfg.admin_token.as_bytes()) => Ok(()),
            Some(_) => Err(Error::Forbidden("the admin token is not valid".into())),
        },
        Access::Api | Access::Feed if g.cfg.api_keys.is_empty() => Ok(()),
        Access::Api | Access::Feed => match presented(req).or_else(|| if access == Access::Feed { protocol_key(req) } else { None }) {
            None => Err(Error::Unauthorized("an API key is needed: \"Authorization: Bearer <key>\" or \"X-Api-Key: <key>\"".into())),
            Some(k) if g.cfg.api_keys.iter().any(|c| same(k.as_bytes(), c.as_bytes())) => Ok(()),
            Some(_) => Err(Error::Forbidden("the API key is not valid".into())),
        },
    }
}

/// `route` with the checks of `access` in front of its handler.
pub fn protect(access: Access, route: actix_web::Route) -> actix_web::Route {
    match access {
        Access::Open => route,
        _ => route.wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| enforce(access, req, next))),
    }
}

async fn enforce(access: Access, req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let g = req.app_data::<web::Data<Guard>>().cloned().expect("guard state registered");
    check(&g, access, &req)?;
    if access == Access::Api && g.cfg.rate_limit_per_second > 0.0 {
        let who = match presented(&req) {
            Some(k) => k,
            None => req.peer_addr().map_or_else(String::new, |a| a.ip().to_string()),
        };
        if let Err(secs) = g.take(&who) {
            return Err(Error::RateLimited(secs).into());
        }
    }
    let _slot = if access == Access::Api {
        let n = g.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = InFlight(g.in_flight.clone());
        if n > g.cfg.max_in_flight {
            tracing::warn!(in_flight = n, "shedding load");
            return Err(Error::Overloaded.into());
        }
        Some(slot)
    } else {
        None
    };
    next.call(req).await
}

/// Puts the request's path in canonical spelling, for the router and for everything after it.
fn canonical_path(req: &mut ServiceRequest) -> Result<(), Error> {
    let Some(path) = crate::path::normalize(req.path()).map_err(Error::InvalidPath)? else {
        return Ok(());
    };
    let mut parts = req.head().uri.clone().into_parts();
    let pq = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    parts.path_and_query = Some(PathAndQuery::try_from(pq).map_err(|e| Error::InvalidPath(e.to_string()))?);
    let uri = Uri::from_parts(parts).map_err(|e| Error::InvalidPath(e.to_string()))?;
    req.match_info_mut().get_mut().update(&uri);
    req.head_mut().uri = uri;
    Ok(())
}

/// The middleware around every request (use with `actix_web::middleware::from_fn`): the request
/// id, its tracing span and the canonical path.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let g = req.app_data::<web::Data<Guard>>().cloned().expect("guard state registered");
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:x}-{:x}", g.boot, g.next_id.fetch_add(1, Ordering::Relaxed)));
    let refused = canonical_path(&mut req).err();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    async move {
        let started = std::time::Instant::now();
        let mut res = match refused {
            Some(e) => {
                tracing::debug!(error = %e, "path refused");
                let res = e.error_response();
                ServiceResponse::new(req.into_parts().0, res).map_into_right_body()
            }
            None => crate::resume::resume_locally(next.call(req)).await?.map_into_left_body(),
        };
        tracing::debug!(status = res.status().as_u16(), micros = started.elapsed().as_micros() as u64, "served");
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(HeaderName::from_static(REQUEST_ID), v);
        }
        Ok(res)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn constant_time_equality() {
        assert!(same(b"secret-token-123", b"secret-token-123"));
        assert!(!same(b"secret-token-123", b"secret-token-124"));
        assert!(!same(b"short", b"longer"));
    }
}
