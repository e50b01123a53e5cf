//! Off-policy evaluation jobs: a candidate policy checked and its models resolved here, then
//! replayed against the journal on a background thread (`crate::evaluation`).

use crate::background::lower_priority;
use crate::error::{ActorError, Result};
use crate::evaluation::jobs::JobView;
use crate::evaluation::{self, Candidate, Settings};

use super::RouterSupervisor;

impl RouterSupervisor {
    /// Starts evaluating `candidate` on the journaled decisions; the job is polled with
    /// [`Self::evaluation`]. `reward_model` names the model version of the direct method (the
    /// active model when absent; the empirical-Bayes estimate when there is none).
    pub fn start_evaluation(&self, candidate: Candidate, settings: Settings, reward_model: Option<String>) -> Result<JobView> {
        let registry = &self.inner.registry;
        let (models, reward_name) = evaluation::prepare(registry, &candidate, &settings, reward_model.as_deref())?;
        if !self.inner.evaluations.has_room() {
            return Err(ActorError::Conflict {
                message: format!("{} evaluations are running; try again when one finishes", crate::evaluation::jobs::MAX_RUNNING),
                current_state: None,
            });
        }
        let now = self.inner.clock.now();
        let (id, counter) = self.inner.evaluations.start(now);
        let me = self.clone();
        let job = id.clone();
        let dir = registry.journal_dir().to_path_buf();
        std::thread::Builder::new()
            .name("evaluate".into())
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

impl RouterSupervisor {
    /// "Why not this broker?" for `lead_id`'s latest decision, reconstructed from the journal
    /// as of that decision, on a blocking thread.
    pub async fn why_not(&self, lead_id: &str, broker_id: &str) -> Result<crate::evaluation::why_not::WhyNot> {
        leadrouter_models::lead::validate_id("leadId", lead_id).map_err(ActorError::Invalid)?;
        leadrouter_models::lead::validate_id("brokerId", broker_id).map_err(ActorError::Invalid)?;
        self.inner.journal.flush().await?;
        let dir = self.inner.registry.journal_dir().to_path_buf();
        let (lead, broker, strength) = (lead_id.to_string(), broker_id.to_string(), self.inner.cfg.routing.prior_strength);
        tokio::task::spawn_blocking(move || crate::evaluation::why_not::why_not(&dir, &lead, &broker, strength))
            .await
            .map_err(|e| ActorError::Unavailable(format!("the explanation stopped: {e}")))?
    }
}
