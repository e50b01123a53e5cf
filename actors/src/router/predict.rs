//! Ranking a lead's candidates with P(convert) and score, reserving and journaling nothing.

use std::time::Instant;

use std::collections::HashSet;

use leadrouter_models::{DecideRequest, ModelError, PredictContext};

use crate::error::Result;
use crate::views::{PredictedCandidate, Prediction, Unavailable};

use super::order::Ordered;
use super::RouterSupervisor;

/// What a prediction may change about the decision it mirrors.
#[derive(Clone, Debug, Default)]
pub struct WhatIf {
    /// Rank only these brokers.
    pub available: Option<Vec<String>>,
    /// Check the hard constraints at this moment.
    pub context: Option<PredictContext>,
}

impl RouterSupervisor {
    /// Ranks the brokers for a lead with P(convert) and score, without reserving anything or
    /// journaling a decision.
    ///
    /// With `what_if.available`, only those brokers are ranked, each still checked against the
    /// hard constraints (those that fail are listed with the first reason, and only they are
    /// counted in `excluded`); with `what_if.context`, the hard constraints are checked at that
    /// moment instead of now (the feature spec has no time features, so P(convert) is unchanged).
    pub async fn predict(&self, req: DecideRequest, what_if: WhatIf) -> Result<Prediction> {
        let started = Instant::now();
        req.validate()?;
        if let Some(ids) = &what_if.available {
            if ids.is_empty() || ids.len() > 1000 {
                return Err(ModelError::invalid("availableBrokers", "must name 1 to 1000 brokers").into());
            }
            for (i, id) in ids.iter().enumerate() {
                leadrouter_models::lead::validate_id(&format!("availableBrokers[{i}]"), id)?;
            }
        }
        let now = match &what_if.context {
            Some(c) => c.at(self.inner.clock.now())?,
            None => self.inner.clock.now(),
        };
        let lead = self.lead_features(&req).await;
        // The plan a decision would use (an experiment's arm included); nothing is exposed.
        let (plan, _) = self.plan_first(&req, &lead);
        let strategy = plan.strategy;
        let mut c = self.inner.index.candidates(&lead, &[], now);
        let mut excluded = std::mem::take(&mut c.excluded);
        let mut unavailable = Vec::new();
        if let Some(ids) = &what_if.available {
            let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
            c.eligible.retain(|e| wanted.contains(c.list.entry_id(e.pos)));
            let passed: HashSet<&str> = c.eligible.iter().map(|e| c.list.entry_id(e.pos)).collect();
            excluded.clear();
            let mut seen = HashSet::new();
            for id in ids.iter().filter(|id| !passed.contains(id.as_str()) && seen.insert(id.as_str())) {
                let reason = match self.inner.index.get(id) {
                    None => "unknownBroker".to_string(),
                    Some(e) => {
                        let x = e
                            .profile
                            .static_eligibility(&lead, now)
                            .and_then(|()| e.profile.capacity_eligibility(e.live.held(), e.live.used_today_ms(now.timestamp_millis())));
                        match x {
                            Err(x) => {
                                *excluded.entry(x).or_insert(0) += 1;
                                serde_json::to_value(x).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                            }
                            // Eligible by itself but not in the filter's pass (changed meanwhile).
                            Ok(()) => "changed".to_string(),
                        }
                    }
                };
                unavailable.push(Unavailable { broker_id: id.clone(), reason });
            }
        }
        let eligible = c.eligible.len() as u32;
        let ordered = self.rank(&plan, &mut c, now);
        let mut skipped = Vec::new();
        let top: Vec<u32> = ordered.ranking.order.iter().take(self.inner.cfg.routing.top_k).copied().collect();
        let adjust: Vec<f64> = if ordered.fairness.is_empty() {
            Vec::new()
        } else {
            top.iter().map(|&i| Ordered::fairness_of(&ordered.fairness, i)).collect()
        };
        let chunk: Vec<_> = top.iter().map(|&i| c.entry(i).clone()).collect();
        let (ranked, model_version) =
            self.score_chunk(&chunk, &adjust, &lead, ordered.priors, &plan, now, &mut excluded, &mut skipped).await;
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
            at: now,
            unavailable,
        })
    }
}
