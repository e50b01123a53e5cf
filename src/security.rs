//! Access control and overload protection for every request: a request id, API keys on
//! `/api`, the admin token on `/admin`, and a ceiling on `/api` requests in flight.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::config::SecurityConfig;
use crate::error::Error;

/// Request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Shared state of the guard.
pub struct Guard {
    cfg: SecurityConfig,
    in_flight: Arc<AtomicUsize>,
    next_id: AtomicU64,
    boot: u64,
}

impl Guard {
    /// A guard for `cfg`.
    pub fn new(cfg: SecurityConfig) -> Self {
        let boot = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { cfg, in_flight: Arc::new(AtomicUsize::new(0)), next_id: AtomicU64::new(1), boot }
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

fn check(g: &Guard, req: &ServiceRequest) -> Result<(), Error> {
    let path = req.path();
    if path.starts_with("/admin") {
        if g.cfg.admin_token.is_empty() {
            return Err(Error::Forbidden("admin routes are disabled; set security.admin_token".into()));
        }
        return match presented(req) {
            None => Err(Error::Unauthorized("admin routes need \"Authorization: Bearer <admin token>\"".into())),
            Some(t) if same(t.as_bytes(), g.cfg.admin_token.as_bytes()) => Ok(()),
            Some(_) => Err(Error::Forbidden("the admin token is not valid".into())),
        };
    }
    if (path.starts_with("/api/") || path.starts_with("/ws/")) && !g.cfg.api_keys.is_empty() {
        return match presented(req) {
            None => Err(Error::Unauthorized("an API key is needed: \"Authorization: Bearer <key>\" or \"X-Api-Key: <key>\"".into())),
            Some(k) if g.cfg.api_keys.iter().any(|c| same(k.as_bytes(), c.as_bytes())) => Ok(()),
            Some(_) => Err(Error::Forbidden("the API key is not valid".into())),
        };
    }
    Ok(())
}

/// The middleware (use with `actix_web::middleware::from_fn`).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let g = req.app_data::<web::Data<Guard>>().cloned().expect("guard state registered");
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:x}-{:x}", g.boot, g.next_id.fetch_add(1, Ordering::Relaxed)));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    async move {
        check(&g, &req)?;
        let _slot = if req.path().starts_with("/api/") {
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
        let started = std::time::Instant::now();
        let mut res = crate::resume::resume_locally(next.call(req)).await?;
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
