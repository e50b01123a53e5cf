//! Off-policy evaluation jobs: a candidate policy checked and its models resolved here, then
//! replayed against the journal on a background thread (`crate::evaluation`).

use leadrouter_models::ModelError;

use crate::background::lower_priority;
use crate::error::{ActorError, Result};
use crate::evaluation::jobs::JobView;
use crate::evaluation::{self, Candidate, Models, Settings};

use super::RouterSupervisor;

/// Most bootstrap resamples an evaluation may ask for.
pub const MAX_BOOTSTRAP: usize = 10_000;

impl RouterSupervisor {
    /// Starts evaluating `candidate` on the journaled decisions; the job is polled with
    /// [`Self::evaluation`]. `reward_model` names the model version of the direct method (the
    /// active model when absent; the empirical-Bayes estimate when there is none).
    pub fn start_evaluation(&self, candidate: Candidate, settings: Settings, reward_model: Option<String>) -> Result<JobView> {
        candidate.validate("policy").map_err(ActorError::Invalid)?;
        if settings.bootstrap_samples == 0 || settings.bootstrap_samples > MAX_BOOTSTRAP {
            return Err(ActorError::Invalid(ModelError::invalid("bootstrapSamples", format!("must be between 1 and {MAX_BOOTSTRAP}"))));
        }
        if let (Some(f), Some(t)) = (settings.from, settings.to) {
            if f >= t {
                return Err(ActorError::Invalid(ModelError::invalid("to", "must be after 'from'")));
            }
        }
        let registry = &self.inner.registry;
        let version = |v: &str, field: &str| {
            registry.version(v).map_err(|_| ActorError::Invalid(ModelError::invalid(field, format!("no model version '{v}'"))))
        };
        let candidate_model = match (&candidate.model_version, candidate.strategy.uses_model()) {
            (Some(v), _) => Some(version(v, "policy.modelVersion")?),
            (None, true) => registry.active(),
            (None, false) => None,
        };
        let reward = match &reward_model {
            Some(v) => Some(version(v, "rewardModel")?),
            None => registry.active(),
        };
        if !self.inner.evaluations.has_room() {
            return Err(ActorError::Unavailable(format!(
                "{} evaluations are running; try again when one finishes",
                crate::evaluation::jobs::MAX_RUNNING
            )));
        }
        let reward_name = reward.as_ref().map_or_else(|| "empirical_bayes".to_string(), |m| format!("model:{}", m.version));
        let models = Models { candidate: candidate_model, reward };
        let now = self.inner.clock.now();
        let (id, counter) = self.inner.evaluations.start(now);
        let me = self.clone();
        let job = id.clone();
        let dir = registry.journal_dir().to_path_buf();
        std::thread::Builder::new()
            .name(format!("evaluate-{id}"))
            .spawn(move || {
                lower_priority("evaluate");
                let out = evaluation::evaluate(&dir, &me.inner.cfg, &candidate, &models, reward_name, settings, &*counter);
                if let Err(e) = &out {
                    tracing::error!(job = %job, error = %e, "evaluation failed");
                }
                me.inner.evaluations.finish(&job, me.inner.clock.now(), out.map_err(|e| e.to_string()));
            })
            .map_err(ActorError::Io)?;
        self.evaluation(&id)
    }

    /// An evaluation job.
    pub fn evaluation(&self, id: &str) -> Result<JobView> {
        self.inner.evaluations.get(id).ok_or_else(|| ActorError::NotFound { what: "evaluation", id: id.to_string() })
    }
}
