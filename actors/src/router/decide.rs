//! The decision path up to the settle: decide a new lead (or answer a repeated one), route it,
//! commit the decision to the journal.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use leadrouter_models::{DecideRequest, LeadFeatures, LeadState};

use crate::error::Result;
use crate::messages::Cancel;
use crate::storage::record::{Decision, Record, SharedDecision};
use crate::storage::state::LeadRecord;
use crate::views::{AssignedAnswer, DecideOutcome, WaitingAnswer};

use super::plan::Plan;
use super::settle::{Routed, Settle};
use super::RouterSupervisor;

impl RouterSupervisor {
    /// Routes a lead: assigns it to a broker, or queues it when nobody can take it. Deciding a
    /// lead id again returns its first decision (or, if it was queued, where it is now).
    pub async fn decide(&self, req: DecideRequest) -> Result<DecideOutcome> {
        let started = Instant::now();
        req.validate()?;
        self.check_running()?;
        let lead_id = req.lead_id.clone();
        let cell = self.inner.leads.entry(lead_id.clone()).or_default().clone();
        let mut slot = cell.lock().await;
        if let Some(lead) = slot.as_ref() {
            return Ok(self.replayed_answer(lead));
        }
        let result = self.decide_new(req, started, &mut slot).await;
        match &result {
            Ok(DecideOutcome::Assigned(a)) => self.count_decision("assigned", Some(&a.decision)),
            Ok(DecideOutcome::Waiting(_)) => self.count_decision("queued", None),
            Err(_) => self.count_decision("error", None),
        }
        if slot.is_none() {
            // Nothing was recorded: forget the empty cell so the lead id stays unknown.
            drop(slot);
            self.inner.leads.remove_if(&lead_id, |_, v| Arc::ptr_eq(v, &cell));
        }
        result
    }

    async fn decide_new(&self, req: DecideRequest, started: Instant, slot: &mut Option<LeadRecord>) -> Result<DecideOutcome> {
        let lead_id = req.lead_id.clone();
        let now = self.inner.clock.now();
        let features = self.lead_features(&req).await;
        let (plan, exposures) = self.plan_first(&req, &features);
        let strategy = plan.strategy;
        match self.route(&lead_id, &features, plan, &[], now, 1, None).await {
            Routed::Assigned(mut d) => {
                d.experiments = exposures;
                d.decision_micros = started.elapsed().as_micros() as u64;
                let d = SharedDecision::new(*d);
                let rec = Arc::new(Record::Decided { at: now, decision: d.clone(), request: Some(Arc::new(req)) });
                let journal_started = Instant::now();
                self.commit_decision(&rec, &d).await?;
                let journal_micros = journal_started.elapsed().as_micros() as u64;
                *slot = LeadRecord::from_first(&rec);
                Ok(DecideOutcome::Assigned(Box::new(AssignedAnswer { decision: d, journal_micros, replayed: false })))
            }
            Routed::Nobody(excluded) => {
                let expires_at = now + Duration::seconds(self.inner.cfg.routing.queue_expiry_seconds as i64);
                let rec = Arc::new(Record::Queued { at: now, request: Arc::new(req), expires_at });
                self.inner.journal.append(rec.clone()).await?;
                let lead = LeadRecord::from_first(&rec).expect("queued record starts a lead");
                let (position, queue_length) = {
                    let mut q = self.inner.queue.lock();
                    q.push_lead(&lead);
                    (q.position(&lead_id), q.len())
                };
                *slot = Some(lead);
                Ok(DecideOutcome::Waiting(WaitingAnswer {
                    lead_id,
                    status: LeadState::Queued,
                    position,
                    queue_length,
                    strategy,
                    queued_at: Some(now),
                    expires_at: Some(expires_at),
                    excluded,
                    decision_micros: started.elapsed().as_micros() as u64,
                    replayed: false,
                }))
            }
        }
    }

    /// The lead's features, with its semantic inputs when it has notes (the one place a
    /// decision may wait for the semantic worker, at most `semantic.decision_timeout_ms`).
    pub(super) async fn lead_features(&self, req: &DecideRequest) -> Arc<LeadFeatures> {
        let mut f = req.features();
        f.semantic = self.inner.semantic.lead(&req.lead_data).await;
        Arc::new(f)
    }

    /// Counts a decision by `result` (`assigned`, `queued`, `rerouted`, `error`) and, when one was
    /// made, its time by strategy.
    pub(super) fn count_decision(&self, result: &str, decision: Option<&Decision>) {
        let m = &self.inner.metrics;
        m.decisions.with_label_values(&[result]).inc();
        if let Some(d) = decision {
            m.decision_seconds.with_label_values(&[d.strategy.name()]).observe(d.decision_micros as f64 / 1e6);
        }
    }

    /// Journals a decision whose reservation is held; on failure gives the slot back.
    pub(super) async fn commit_decision(&self, rec: &Arc<Record>, d: &Decision) -> Result<()> {
        if let Err(e) = self.inner.journal.append(rec.clone()).await {
            if let Some(entry) = self.inner.index.get(&d.broker_id) {
                self.tell(&entry, "cancel", Cancel { lead_id: d.lead_id.clone(), at: d.decided_at }).await;
            }
            return Err(e);
        }
        self.inner.decisions.fetch_add(1, Ordering::Relaxed);
        self.observe_fairness(rec);
        if let Some(t) = &d.breakdown.semantic {
            self.inner.semantic.observe_match(t.semantic_match);
        }
        if let Some(entry) = self.inner.index.get(&d.broker_id) {
            self.inner.policies.get(d.strategy).chosen(&d.broker_id, entry.broker.weight);
        }
        Ok(())
    }

    fn replayed_answer(&self, lead: &LeadRecord) -> DecideOutcome {
        if let Some(first) = lead.decisions.first() {
            return DecideOutcome::Assigned(Box::new(AssignedAnswer { decision: first.clone(), journal_micros: 0, replayed: true }));
        }
        let q = self.inner.queue.lock();
        DecideOutcome::Waiting(WaitingAnswer {
            lead_id: lead.lead_id.clone(),
            status: lead.state,
            position: q.position(&lead.lead_id),
            queue_length: q.len(),
            strategy: lead.request.strategy.unwrap_or_else(|| self.default_strategy()),
            queued_at: lead.queued_at,
            expires_at: lead.expires_at,
            excluded: BTreeMap::new(),
            decision_micros: 0,
            replayed: true,
        })
    }

    /// Candidate retrieval at scale: with more eligible brokers than
    /// `semantic.retrieval_threshold`, a lead with text under a strategy that ranks by score keeps
    /// only the `retrieval_k` whose profile vectors are nearest its text (all of them passed the
    /// hard constraints). Strategies that draw at random keep every candidate, so their logged
    /// propensity stays exact.
    fn retrieve(&self, lead: &LeadFeatures, plan: &Plan, c: &mut crate::index::Candidates) {
        let (threshold, k) = self.inner.semantic.retrieval();
        let Some(s) = &lead.semantic else { return };
        if threshold == 0 || c.eligible.len() <= threshold || !plan.strategy.ranks_by_score() {
            return;
        }
        let near = self.inner.semantic.nearest_brokers(s, c.eligible.iter().map(|e| c.list.entry_id(e.pos)), k);
        let mut keep = vec![false; c.eligible.len()];
        near.into_iter().for_each(|i| keep[i] = true);
        let mut i = 0;
        c.eligible.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    /// Finds and reserves a broker for a lead; `skip` lists brokers that gave it back before.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn route(
        &self,
        lead_id: &str,
        lead: &Arc<LeadFeatures>,
        plan: Plan,
        skip: &[String],
        now: DateTime<Utc>,
        attempt: u32,
        rerouted_from: Option<String>,
    ) -> Routed {
        let mut candidates = self.inner.index.candidates(lead, skip, now);
        let excluded = std::mem::take(&mut candidates.excluded);
        if candidates.eligible.is_empty() {
            return Routed::Nobody(excluded);
        }
        self.retrieve(lead, &plan, &mut candidates);
        let ordered = self.rank(&plan, &mut candidates, now);
        let (priors, ranking) = (ordered.priors, ordered.ranking);
        let job = Settle {
            lead_id: lead_id.to_string(),
            lead: lead.clone(),
            plan,
            now,
            attempt,
            rerouted_from,
            candidates,
            order: ranking.order,
            chance: ranking.chance,
            pool: ordered.pool,
            fairness: ordered.fairness,
            excluded,
            priors,
        };
        match self.inner.arbiters.as_slice() {
            // Already on the actors' thread: their replies come back without a hand-off.
            [_] if self.inner.home.is_some_and(|h| h == std::thread::current().id()) => self.settle(job, None).await,
            [only] => self.settle_on(only, job).await,
            _ => self.settle(job, None).await,
        }
    }
}
