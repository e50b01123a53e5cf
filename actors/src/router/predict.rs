//! Ranking a lead's candidates with P(convert) and score, reserving and journaling nothing.

use std::sync::Arc;
use std::time::Instant;

use leadrouter_models::{DecideRequest, Ranking};

use crate::error::Result;
use crate::views::{PredictedCandidate, Prediction};

use super::RouterSupervisor;

impl RouterSupervisor {
    /// Ranks the brokers for a lead with P(convert) and score, without reserving anything or
    /// journaling a decision.
    pub async fn predict(&self, req: DecideRequest) -> Result<Prediction> {
        let started = Instant::now();
        req.validate()?;
        let now = self.inner.clock.now();
        let lead = Arc::new(req.features());
        // The plan a decision would use (an experiment's arm included); nothing is exposed.
        let (plan, _) = self.plan_first(&req, &lead);
        let strategy = plan.strategy;
        let mut c = self.inner.index.candidates(&lead, &[], now);
        let mut excluded = std::mem::take(&mut c.excluded);
        let eligible = c.eligible.len() as u32;
        let (priors, Ranking { order, .. }) = self.rank(&plan, &c);
        let mut skipped = Vec::new();
        let chunk: Vec<_> = order.iter().take(self.inner.cfg.routing.top_k).map(|&i| c.entry(i).clone()).collect();
        let (ranked, model_version) = self.score_chunk(&chunk, &lead, priors, &plan, now, &mut excluded, &mut skipped).await;
        Ok(Prediction {
            lead_id: req.lead_id,
            strategy,
            model_version,
            eligible,
            excluded,
            skipped,
            candidates: ranked
                .into_iter()
                .map(|s| PredictedCandidate {
                    broker_id: s.entry.broker.id.clone(),
                    probability: s.breakdown.conversion,
                    score: s.score,
                    breakdown: s.breakdown,
                })
                .collect(),
            micros: started.elapsed().as_micros() as u64,
        })
    }
}
