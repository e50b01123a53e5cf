//! The lead lifecycle: events, re-routing on rejection and acceptance time-outs, applying journaled
//! records to the lead, its broker and the queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use leadrouter_models::{transition, EventKind, LeadEventRequest, LeadState, ModelError, Transition};

use crate::error::{ActorError, Result};
use crate::messages::{Apply, Notice};
use crate::storage::record::{Record, SharedDecision};
use crate::storage::state::LeadRecord;
use crate::views::LeadView;

use super::settle::Routed;
use super::{LeadCell, RouterSupervisor};

impl RouterSupervisor {
    pub(super) fn lead_cell(&self, lead_id: &str) -> Result<LeadCell> {
        self.inner.leads.get(lead_id).map(|c| c.clone()).ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })
    }

    pub(super) fn position(&self, lead_id: &str) -> Option<usize> {
        self.inner.queue.lock().position(lead_id)
    }

    /// One lead's state and history.
    pub async fn lead(&self, lead_id: &str) -> Result<LeadView> {
        let cell = self.lead_cell(lead_id)?;
        let slot = cell.lock().await;
        let lead = slot.as_ref().ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })?;
        Ok(LeadView::new(lead, self.position(lead_id)))
    }

    /// The lead data a lead was first decided or queued with.
    pub async fn lead_data(&self, lead_id: &str) -> Result<leadrouter_models::LeadData> {
        let cell = self.lead_cell(lead_id)?;
        let slot = cell.lock().await;
        let lead = slot.as_ref().ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })?;
        Ok(lead.request.lead_data.clone())
    }

    /// Applies a journaled record to the broker actor, the lead and the queue.
    pub(super) async fn apply_to_lead(&self, lead: &mut LeadRecord, rec: &Arc<Record>) {
        if let Some(b) = rec.broker_id() {
            if let Some(entry) = self.inner.index.get(b) {
                self.tell(&entry, "apply", Apply(rec.clone())).await;
            }
        }
        let was_final = lead.state.is_final();
        lead.apply(rec);
        if lead.state.is_final() && !was_final {
            self.inner.finished.lock().push_back((self.inner.clock.now(), lead.lead_id.clone()));
        }
        let mut q = self.inner.queue.lock();
        if lead.state == LeadState::Queued {
            q.push_lead(lead);
        } else {
            q.remove(&lead.lead_id);
        }
    }

    /// Records a lifecycle event; rejected leads are re-routed at once, closing frees capacity.
    pub async fn lead_event(&self, lead_id: &str, ev: LeadEventRequest) -> Result<LeadView> {
        let now = self.inner.clock.now();
        ev.validate(now)?;
        self.check_running()?;
        let cell = self.lead_cell(lead_id)?;
        let mut slot = cell.lock().await;
        let lead = slot.as_mut().ok_or_else(|| ActorError::NotFound { what: "lead", id: lead_id.to_string() })?;
        let t = transition(lead.state, ev.kind).ok_or_else(|| ActorError::Conflict {
            message: format!("cannot apply event {} to a lead in state {}", ev.kind.name(), lead.state.name()),
            current_state: Some(lead.state),
        })?;
        let at = ev.at.unwrap_or(now);
        if let (Some(_), Some(d)) = (&lead.broker_id, lead.last_decision()) {
            if at < d.decided_at {
                return Err(ModelError::invalid("at", "is before the lead was assigned to its broker").into());
            }
        }
        let value = (ev.kind == EventKind::Converted).then(|| ev.value.unwrap_or(lead.request.lead_data.estimated_value));
        self.event(lead, ev.kind, at, value, t).await?;
        Ok(LeadView::new(lead, self.position(lead_id)))
    }

    pub(super) async fn event(
        &self,
        lead: &mut LeadRecord,
        kind: EventKind,
        at: DateTime<Utc>,
        value: Option<f64>,
        t: Transition,
    ) -> Result<()> {
        let freed = lead.state.holds_capacity() && matches!(t, Transition::Reroute | Transition::To(LeadState::Closed));
        let outcome = match kind {
            EventKind::Converted => Some(true),
            EventKind::Lost => Some(false),
            EventKind::Closed if matches!(lead.state, LeadState::Accepted | LeadState::Contacted) => Some(false),
            _ => None,
        };
        let requeue_expires_at = matches!(t, Transition::Reroute)
            .then(|| self.inner.clock.now() + Duration::seconds(self.inner.cfg.routing.queue_expiry_seconds as i64));
        let rec = Arc::new(Record::LeadEvent {
            at,
            lead_id: lead.lead_id.clone(),
            broker_id: lead.broker_id.clone(),
            event: kind,
            value,
            requeue_expires_at,
        });
        self.inner.journal.append(rec.clone()).await?;
        if kind == EventKind::Converted {
            self.inner.metrics.conversions.inc();
            self.inner.metrics.conversion_value.inc_by(value.unwrap_or(0.0).max(0.0).round() as u64);
        }
        if let (Some(y), Some(d)) = (outcome, lead.last_decision()) {
            if d.model_version.is_some() {
                self.inner.registry.record_outcome(d.breakdown.conversion, y);
            }
        }
        self.apply_to_lead(lead, &rec).await;
        if matches!(t, Transition::Reroute) {
            self.try_assign(lead, self.inner.clock.now()).await?;
        }
        if freed {
            self.kick_drain();
        }
        Ok(())
    }

    /// Tries to give a queued lead to a broker; true when assigned.
    pub(super) async fn try_assign(&self, lead: &mut LeadRecord, now: DateTime<Utc>) -> Result<bool> {
        let started = Instant::now();
        let features = self.lead_features(&lead.request).await;
        // A queued lead's first decision is its exposure; a re-route keeps the first's plan.
        let (plan, exposures) = match lead.decisions.first() {
            None => self.plan_first(&lead.request, &features),
            Some(first) => (self.plan_again(first.strategy, &first.experiments, lead.request.exploration), Vec::new()),
        };
        let attempt = lead.decisions.len() as u32 + 1;
        let from = if lead.decisions.is_empty() { None } else { lead.tried.last().cloned() };
        let tried = lead.tried.clone();
        match self.route(&lead.lead_id, &features, plan, &tried, now, attempt, from).await {
            Routed::Assigned(mut d) => {
                d.experiments = exposures;
                d.decision_micros = started.elapsed().as_micros() as u64;
                let d = SharedDecision::new(*d);
                let rec = Arc::new(Record::Decided { at: now, decision: d.clone(), request: None });
                self.commit_decision(&rec, &d).await?;
                let m = &self.inner.metrics;
                self.count_decision(if lead.decisions.is_empty() { "assigned" } else { "rerouted" }, Some(&d));
                if let Some(q) = lead.queued_at {
                    m.queue_wait_seconds.observe((now - q).num_milliseconds().max(0) as f64 / 1000.0);
                }
                lead.apply(&rec);
                self.inner.queue.lock().remove(&lead.lead_id);
                Ok(true)
            }
            Routed::Nobody(_) => Ok(false),
        }
    }

    pub(super) async fn on_notice(&self, n: Notice) {
        let (broker_id, lead_id, reserved_at) = match n {
            Notice::AcceptTimeout { broker_id, lead_id, reserved_at } => (broker_id, lead_id, reserved_at),
            Notice::Throttle { broker_id, withheld, sla_compliance } => return self.throttle(broker_id, withheld, sla_compliance).await,
        };
        let Ok(cell) = self.lead_cell(&lead_id) else { return };
        let mut slot = cell.lock().await;
        let Some(lead) = slot.as_mut() else { return };
        let current = lead.state == LeadState::Reserved
            && lead.broker_id.as_deref() == Some(broker_id.as_str())
            && lead.last_decision().map(|d| d.decided_at) == Some(reserved_at);
        if !current || self.inner.stopped.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.event(lead, EventKind::TimedOut, self.inner.clock.now(), None, Transition::Reroute).await {
            tracing::error!(lead = %lead_id, error = %e, "acceptance time-out could not be recorded");
        }
    }
}

impl RouterSupervisor {
    /// Journals a throttling step a broker actor called for, then applies it to the actor (which
    /// publishes the new seats to the feed). A step for a broker no longer present, or one that
    /// the broker's last record already states, is dropped.
    async fn throttle(&self, broker_id: String, withheld: u32, sla_compliance: f64) {
        let Some(entry) = self.inner.index.get(&broker_id) else { return };
        if entry.live.withheld() == withheld || self.inner.stopped.load(Ordering::Acquire) {
            return;
        }
        let down = withheld > entry.live.withheld();
        let rec = Arc::new(Record::BrokerThrottled { at: self.inner.clock.now(), broker_id: broker_id.clone(), withheld, sla_compliance });
        if let Err(e) = self.inner.journal.append(rec.clone()).await {
            tracing::error!(broker = %broker_id, error = %e, "a throttling step could not be journaled");
            return;
        }
        self.inner.metrics.throttle_steps.with_label_values(&[if down { "down" } else { "up" }]).inc();
        tracing::info!(broker = %broker_id, withheld, sla_compliance, "adaptive throttling moved a broker's seats");
        self.tell(&entry, "apply", Apply(rec)).await;
    }
}
