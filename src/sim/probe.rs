//! How well the active conversion model ranks brokers against the hidden truth: for a fixed set
//! of probe leads, the engine's predictions (`RouterSupervisor::predict`, nothing reserved) of
//! the candidates it would score, compared pair by pair with the world's true conversion
//! probabilities. The share of pairs in the true order (ties in the prediction count half) is
//! a concordance, an AUC against the truth, comparable between runs on the same world.

use leadrouter_actors::{RouterSupervisor, WhatIf};
use leadrouter_models::Strategy;

use super::world::World;

/// Probe leads, spread evenly over the world's leads.
const PROBES: usize = 200;

/// The concordance of the active model's predictions with the truth, over the probe leads'
/// scored candidates; `None` when no pair could be compared.
pub async fn concordance(world: &World, router: &RouterSupervisor) -> Option<f64> {
    let (mut agree, mut pairs) = (0.0, 0u64);
    let step = (world.leads.len() / PROBES).max(1);
    for (k, lead) in world.leads.iter().step_by(step).take(PROBES).enumerate() {
        let mut req = lead.request.clone();
        req.lead_id = format!("probe-{k}");
        req.strategy = Some(Strategy::Ml);
        req.exploration = None;
        let Ok(p) = router.predict(req, WhatIf::default()).await else { continue };
        let scored: Vec<(f64, f64)> = p
            .candidates
            .iter()
            .filter_map(|c| {
                world.brokers.iter().position(|b| b.config.id == c.broker_id).map(|i| (c.probability, world.p_convert(lead, i)))
            })
            .collect();
        for (i, a) in scored.iter().enumerate() {
            for b in &scored[i + 1..] {
                if (a.1 - b.1).abs() < 1e-12 {
                    continue;
                }
                pairs += 1;
                agree += if a.0 == b.0 {
                    0.5
                } else if (a.0 > b.0) == (a.1 > b.1) {
                    1.0
                } else {
                    0.0
                };
            }
        }
    }
    (pairs > 0).then(|| agree / pairs as f64)
}
