//! Experiments through the router: create, list, change status (with rollout of a winner),
//! delete drafts, read results and analyses from the book, and the periodic review (Thompson
//! allocation updates, automatic conclusion, gauges). Every change is journaled before it
//! takes effect.

use std::sync::{Arc, Weak};
use std::time::Duration as StdDuration;

use leadrouter_models::experiment::bayes::thompson_shares;
use leadrouter_models::experiment::{analyze, AllocationMethod, Analysis, ArmTotals, Definition, Report, Status};
use leadrouter_models::ModelError;

use crate::error::{ActorError, Result};
use crate::experiments::Entry;
use crate::storage::record::{Record, RoutingPlan};

use super::{Inner, RouterSupervisor};

/// Smallest change of any arm's share that is journaled as a new allocation.
const SHARE_STEP: f64 = 1e-3;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ActorError {
    ActorError::Invalid(ModelError::invalid(field, reason))
}

fn conflict(message: String) -> ActorError {
    ActorError::Conflict { message, current_state: None }
}

fn not_found(id: &str) -> ActorError {
    ActorError::NotFound { what: "experiment", id: id.to_string() }
}

/// Which routing setting two experiments that may share a lead would both set, if any.
fn clash(a: &Definition, b: &Definition) -> Option<&'static str> {
    let (va, vb) = (a.varies(), b.varies());
    if va[0] || vb[0] || a.arms[0].strategy != b.arms[0].strategy {
        return Some("strategy");
    }
    let sets_weights = |d: &Definition| d.arms.iter().any(|x| x.weights.is_some());
    if sets_weights(a) && sets_weights(b) {
        return Some("weights");
    }
    let sets_model = |d: &Definition| d.arms.iter().any(|x| x.model_version.is_some());
    if sets_model(a) && sets_model(b) {
        return Some("modelVersion");
    }
    None
}

/// The lowest start of a free range of `width` in `[0, 1)` beside the `taken` ranges.
fn free_offset(taken: &[(f64, f64)], width: f64) -> Option<f64> {
    let mut starts: Vec<f64> = std::iter::once(0.0).chain(taken.iter().map(|&(s, w)| s + w)).collect();
    starts.sort_by(f64::total_cmp);
    starts.into_iter().find(|&s| s + width <= 1.0 + 1e-9 && taken.iter().all(|&(t, w)| s + width <= t + 1e-12 || s >= t + w - 1e-12))
}

impl RouterSupervisor {
    /// Creates an experiment, as a draft or (`start`) running. Checks what the definition alone
    /// cannot: a new id, model versions that exist, a free traffic range in its layer, and no
    /// routing setting shared with an active experiment that may see the same leads.
    pub async fn create_experiment(&self, mut def: Definition, start: bool) -> Result<Entry> {
        self.check_running()?;
        def.validate()?;
        let _admin = self.inner.admin.lock().await;
        let catalog = self.inner.experiments.catalog();
        if catalog.entries.contains_key(&def.id) {
            return Err(conflict(format!("experiment '{}' already exists", def.id)));
        }
        for (i, a) in def.arms.iter().enumerate() {
            if let Some(v) = &a.model_version {
                self.inner.registry.version(v).map_err(|e| invalid(format!("arms[{i}].modelVersion"), e.to_string()))?;
            }
        }
        let active: Vec<&Entry> = catalog.entries.values().filter(|e| e.status.is_active()).collect();
        // Disjoint ranges of one layer keep experiments apart only when they hash the same key.
        if let Some(o) = active.iter().find(|e| {
            e.definition.exclusive && def.exclusive && e.definition.layer == def.layer && e.definition.assignment_key != def.assignment_key
        }) {
            return Err(invalid(
                "assignmentKey",
                format!("layer '{}' already holds experiment '{}', which hashes another key; exclusive experiments of a layer hash the same key (use another layer)", def.layer, o.definition.id),
            ));
        }
        if def.exclusive {
            let taken: Vec<(f64, f64)> = active
                .iter()
                .filter(|e| e.definition.exclusive && e.definition.layer == def.layer)
                .map(|e| (e.definition.traffic_offset, e.definition.traffic_allocation))
                .collect();
            let free = 1.0 - taken.iter().map(|t| t.1).sum::<f64>();
            def.traffic_offset = free_offset(&taken, def.traffic_allocation).ok_or_else(|| {
                invalid(
                    "trafficAllocation",
                    format!(
                        "layer '{}' has {:.4} of its traffic free (in pieces); exclusive experiments of a layer cannot overlap",
                        def.layer,
                        free.max(0.0)
                    ),
                )
            })?;
        } else {
            def.traffic_offset = 0.0;
        }
        for e in &active {
            let o = &e.definition;
            let disjoint = def.exclusive && o.exclusive && o.layer == def.layer;
            if let (false, Some(what)) = (disjoint, clash(&def, o)) {
                return Err(invalid(
                    "layer",
                    format!(
                        "experiment '{}' may see the same leads and also sets {what}; put both in one layer or vary different settings",
                        o.id
                    ),
                ));
            }
        }
        let status = if start { Status::Running } else { Status::Draft };
        let rec = Arc::new(Record::ExperimentSaved { at: self.inner.clock.now(), definition: Arc::new(def.clone()), status });
        self.inner.journal.append(rec.clone()).await?;
        self.inner.experiments.apply(&rec);
        self.experiment(&def.id)
    }

    /// Every experiment, or those with `status`, oldest first.
    pub fn experiments(&self, status: Option<Status>) -> Vec<Entry> {
        let mut v: Vec<Entry> =
            self.inner.experiments.catalog().entries.into_values().filter(|e| status.is_none_or(|s| e.status == s)).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.definition.id.cmp(&b.definition.id)));
        v
    }

    /// One experiment.
    pub fn experiment(&self, id: &str) -> Result<Entry> {
        self.inner.experiments.entry(id).ok_or_else(|| not_found(id))
    }

    /// Moves an experiment to `status`. Concluding may name the `winner`; with `rollout` the
    /// winner's strategy, weights and model version become the routing default.
    pub async fn set_experiment_status(&self, id: &str, status: Status, winner: Option<String>, rollout: bool) -> Result<Entry> {
        self.check_running()?;
        let _admin = self.inner.admin.lock().await;
        self.change_status(id, status, winner, rollout).await
    }

    async fn change_status(&self, id: &str, status: Status, winner: Option<String>, rollout: bool) -> Result<Entry> {
        let e = self.experiment(id)?;
        if !e.status.can_become(status) {
            return Err(conflict(format!("experiment '{id}' is {} and cannot become {}", e.status.name(), status.name())));
        }
        if status != Status::Concluded && (winner.is_some() || rollout) {
            return Err(invalid("winner", "a winner and a rollout go only with status 'concluded'"));
        }
        let arm = match &winner {
            Some(w) => Some(e.definition.arm(w).ok_or_else(|| invalid("winner", format!("'{w}' is not an arm of experiment '{id}'")))?),
            None if rollout => return Err(invalid("rollout", "needs a winner")),
            None => None,
        };
        let now = self.inner.clock.now();
        let rec = Arc::new(Record::ExperimentStatus { at: now, experiment_id: id.to_string(), status, winner });
        self.inner.journal.append(rec.clone()).await?;
        self.inner.experiments.apply(&rec);
        if let (Some(i), true) = (arm, rollout) {
            let a = &e.definition.arms[i];
            let plan = RoutingPlan {
                strategy: a.strategy,
                weights: a.weights,
                model_version: a.model_version.clone(),
                exploration: a.exploration,
            };
            let rec = Arc::new(Record::RoutingDefault { at: now, plan, experiment_id: Some(id.to_string()) });
            self.inner.journal.append(rec.clone()).await?;
            self.inner.experiments.apply(&rec);
            tracing::info!(experiment = id, arm = %a.name, strategy = a.strategy.name(), "rollout: the winner is the new routing default");
        }
        if status != Status::Running {
            self.clear_gauges(&e.definition);
        }
        self.experiment(id)
    }

    /// Deletes a draft.
    pub async fn delete_experiment(&self, id: &str) -> Result<()> {
        self.check_running()?;
        let _admin = self.inner.admin.lock().await;
        let e = self.experiment(id)?;
        if e.status != Status::Draft {
            return Err(conflict(format!("experiment '{id}' is {}; only drafts can be deleted (conclude it instead)", e.status.name())));
        }
        let rec = Arc::new(Record::ExperimentDeleted { at: self.inner.clock.now(), experiment_id: id.to_string() });
        self.inner.journal.append(rec.clone()).await?;
        self.inner.experiments.apply(&rec);
        Ok(())
    }

    /// The experiment and its per-arm totals as the book holds them now (zeros for an
    /// experiment the book has not reached yet).
    pub fn experiment_totals(&self, id: &str) -> Result<(Entry, Vec<ArmTotals>)> {
        let e = self.experiment(id)?;
        let totals = self.inner.book.read().totals.get(id).cloned().unwrap_or_else(|| vec![ArmTotals::default(); e.definition.arms.len()]);
        Ok((e, totals))
    }

    /// Waits until the book has taken in every record journaled so far (it follows the journal
    /// on the snapshotter's thread), at most `patience`; false if it has not by then. A
    /// simulation calls it before each look, so what it reads does not depend on timing.
    pub async fn experiments_caught_up(&self, patience: StdDuration) -> bool {
        let started = std::time::Instant::now();
        loop {
            if self.inner.book.read().seq >= self.inner.journal.last_seq() {
                return true;
            }
            if started.elapsed() > patience {
                return false;
            }
            tokio::time::sleep(StdDuration::from_millis(1)).await;
        }
    }

    /// The full analysis of an experiment.
    pub fn analyze_experiment(&self, id: &str) -> Result<(Entry, Report)> {
        let (e, totals) = self.experiment_totals(id)?;
        let days = e.running_days(self.inner.clock.now());
        let report = analyze(&e.definition, &totals, Some(days));
        Ok((e, report))
    }

    /// Reviews every running experiment: a Thompson experiment past its burn-in gets new shares
    /// (journaled when any arm moves by 0.001 or more); a sequential experiment with
    /// `autoConclude` is concluded when its analysis recommends shipping an arm; the gauges
    /// are refreshed.
    pub async fn review_experiments(&self) -> Result<()> {
        let running = self.experiments(Some(Status::Running));
        self.inner.metrics.experiments_running.set(running.len() as i64);
        let now = self.inner.clock.now();
        for e in running {
            let d = &e.definition;
            let (_, totals) = self.experiment_totals(&d.id)?;
            let report = analyze(d, &totals, Some(e.running_days(now)));
            let m = &self.inner.metrics;
            if let Some(p) = report.srm.p_value {
                m.experiment_srm_p_value.with_label_values(&[&d.id]).set(p);
            }
            for c in report.comparisons.iter().filter(|c| c.role == "primary") {
                m.experiment_significant.with_label_values(&[&d.id, &c.arm]).set(i64::from(c.significant));
            }
            if d.allocation_method == AllocationMethod::Thompson {
                let exposed: u64 = totals.iter().map(|t| t.exposures).sum();
                if exposed >= d.burn_in {
                    let arms: Vec<(u64, u64)> = totals.iter().map(|t| (t.conversions, t.exposures)).collect();
                    let shares = thompson_shares(&arms, d.min_arm_share);
                    if shares.iter().zip(&e.shares).any(|(a, b)| (a - b).abs() >= SHARE_STEP) {
                        let _admin = self.inner.admin.lock().await;
                        let rec = Arc::new(Record::ExperimentAllocated { at: self.inner.clock.now(), experiment_id: d.id.clone(), shares });
                        self.inner.journal.append(rec.clone()).await?;
                        self.inner.experiments.apply(&rec);
                    }
                }
            }
            if d.auto_conclude && d.analysis == Analysis::Sequential && report.recommendation.action == "ship" {
                let _admin = self.inner.admin.lock().await;
                tracing::info!(experiment = %d.id, winner = ?report.recommendation.arm, "automatic conclusion: {}", report.recommendation.reason);
                self.change_status(&d.id, Status::Concluded, report.recommendation.arm.clone(), false).await?;
            }
        }
        Ok(())
    }

    fn clear_gauges(&self, d: &Definition) {
        let m = &self.inner.metrics;
        let _ = m.experiment_srm_p_value.remove_label_values(&[&d.id]);
        for a in &d.arms[1..] {
            let _ = m.experiment_significant.remove_label_values(&[&d.id, &a.name]);
        }
    }

    /// Runs [`Self::review_experiments`] every `routing.experiment_review_seconds`.
    pub(super) fn review_in_background(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = StdDuration::from_secs(self.inner.cfg.routing.experiment_review_seconds);
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let Some(me) = Self::upgrade(&weak) else { break };
                if me.inner.stopped.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                if let Err(e) = me.review_experiments().await {
                    tracing::error!(error = %e, "experiment review failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::free_offset;

    #[test]
    fn free_ranges_are_found_in_the_gaps() {
        assert_eq!(free_offset(&[], 0.5), Some(0.0));
        assert_eq!(free_offset(&[(0.0, 0.5)], 0.5), Some(0.5));
        assert_eq!(free_offset(&[(0.0, 0.5)], 0.6), None);
        assert_eq!(free_offset(&[(0.0, 0.2), (0.5, 0.5)], 0.3), Some(0.2));
        assert_eq!(free_offset(&[(0.0, 0.2), (0.5, 0.5)], 0.31), None);
    }
}
