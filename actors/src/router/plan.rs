//! What a decision routes with: the strategy, its weights and the model, from the request, the
//! running experiments the lead enters (each exposure logged in the decision), or the routing
//! default (the configured strategy, or the last rollout's plan).

use std::sync::Arc;

use leadrouter_models::experiment::ArmSpec;
use leadrouter_models::{DecideRequest, Exploration, LeadFeatures, Strategy, Weights};

use crate::model::registry::LoadedModel;
use crate::storage::record::{Exposure, RoutingPlan};

use super::RouterSupervisor;

/// A resolved plan.
#[derive(Clone)]
pub(super) struct Plan {
    pub(super) strategy: Strategy,
    pub(super) weights: Weights,
    /// For `ml`: a pinned model version; `None` uses the active model.
    pub(super) model: Option<Arc<LoadedModel>>,
    /// How the winner is drawn among the scored candidates, its band filled in; `None` takes
    /// the best.
    pub(super) exploration: Option<Exploration>,
}

fn apply_arm(p: &mut RoutingPlan, arm: &ArmSpec) {
    if arm.strategy != p.strategy {
        p.weights = None;
        p.model_version = None;
        p.exploration = None;
    }
    if arm.exploration.is_some() {
        p.exploration = arm.exploration;
    }
    p.strategy = arm.strategy;
    if arm.weights.is_some() {
        p.weights = arm.weights;
    }
    if arm.model_version.is_some() {
        p.model_version.clone_from(&arm.model_version);
    }
}

impl RouterSupervisor {
    /// The default when a request names no strategy and no experiment takes it.
    pub(super) fn default_plan(&self) -> RoutingPlan {
        self.inner.experiments.default_plan().unwrap_or(RoutingPlan {
            strategy: self.inner.cfg.routing.default_strategy,
            weights: None,
            model_version: None,
            exploration: None,
        })
    }

    /// The default strategy now in force.
    pub fn default_strategy(&self) -> Strategy {
        self.default_plan().strategy
    }

    /// Resolves weights, model and exploration of `p`: the request's exploration, else the
    /// plan's own (an experiment arm's, or a rollout's), else the strategy's configured one;
    /// none for unscored strategies.
    pub(super) fn resolve(&self, p: &RoutingPlan, request: Option<Exploration>) -> Plan {
        let band = self.inner.cfg.routing.exploration_band;
        let exploration = if p.strategy.ranks_by_score() {
            request.or(p.exploration).map(|x| x.with_band(band)).or_else(|| self.inner.cfg.exploration(p.strategy))
        } else {
            None
        };
        let model = match (&p.model_version, p.strategy) {
            (Some(v), Strategy::Ml) => match self.inner.registry.version(v) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(version = %v, error = %e, "a pinned model version could not be loaded; using the active model");
                    None
                }
            },
            _ => None,
        };
        Plan { strategy: p.strategy, weights: p.weights.unwrap_or_else(|| self.inner.cfg.weights(p.strategy)), model, exploration }
    }

    /// The plan for a lead's first decision, and its exposures: a request naming a strategy
    /// stays out of experiments.
    pub(super) fn plan_first(&self, req: &DecideRequest, lead: &LeadFeatures) -> (Plan, Vec<Exposure>) {
        if let Some(s) = req.strategy {
            let plan = RoutingPlan { strategy: s, weights: None, model_version: None, exploration: None };
            return (self.resolve(&plan, req.exploration), Vec::new());
        }
        let mut plan = self.default_plan();
        let running = self.inner.experiments.running();
        let mut exposures = Vec::new();
        for r in running.iter() {
            if let Some(a) = r.assign(req, lead) {
                apply_arm(&mut plan, &a.definition.arms[a.arm]);
                exposures.push(a.exposure);
            }
        }
        (self.resolve(&plan, req.exploration), exposures)
    }

    /// The plan for a re-route: the arms of the first decision's exposures, when their
    /// experiments still exist; otherwise the first decision's strategy; the request's
    /// exploration (`request`) as for the first decision.
    pub(super) fn plan_again(&self, strategy: Strategy, exposures: &[Exposure], request: Option<Exploration>) -> Plan {
        let mut plan = RoutingPlan { strategy, weights: None, model_version: None, exploration: None };
        for x in exposures {
            if let Some(e) = self.inner.experiments.entry(&x.experiment_id) {
                if let Some(arm) = e.definition.arm(&x.arm) {
                    apply_arm(&mut plan, &e.definition.arms[arm]);
                }
            }
        }
        self.resolve(&plan, request)
    }
}
