//! Fixtures shared by the benchmarks: brokers licensed in CA for AUTO and HOME with varied
//! proficiency and room for a million leads, and a CA lead for both lines.

use leadrouter_models::{Broker, DecideRequest};

/// The server's allocator (see `src/main.rs`), so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Criterion's settings, in a process set up as the server sets itself up: without transparent
/// huge pages (`server.transparent_huge_pages`, off by default).
pub fn criterion() -> criterion::Criterion {
    leadrouter::process::transparent_huge_pages(false).expect("transparent huge pages turned off");
    criterion::Criterion::default()
}

/// Broker `b{i:05}`.
pub fn broker(i: usize) -> Broker {
    serde_json::from_value(serde_json::json!({
        "id": format!("b{i:05}"), "name": "Bench",
        "specialties": [{"type": "AUTO", "proficiency": 1 + i % 5}, {"type": "HOME", "proficiency": 1 + (i / 5) % 5}],
        "licenses": [{"state": "CA", "lines": ["AUTO", "HOME"], "expiresOn": "2099-01-01"}],
        "capacity": {"maxConcurrent": 1_000_000, "dailyCap": 1_000_000}
    }))
    .expect("broker")
}

/// Lead `lead-{n}`.
pub fn lead(n: u64) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "leadId": format!("lead-{n}"),
        "leadData": {"insuranceTypes": ["AUTO", "HOME"], "urgency": "HIGH", "state": "CA", "estimatedValue": 25000, "complexity": 7}
    }))
    .expect("lead")
}
