//! Settling a routing: `Score` scattered to the ordered candidates K at a time and gathered with a
//! deadline, one batched forward pass for `ml`, `Reserve` on the best that accepts; on the actors'
//! own arbiter when they share one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use actix_rt::ArbiterHandle;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use leadrouter_models::exploration::{self, Contender, Method};
use leadrouter_models::{combine, features, roi, Adjustments, Chance, Exclusion, LeadFeatures, Priors, SemanticTerms, Strategy};

use super::order::Ordered;
use super::plan::Plan;

use crate::index::{Candidates, IndexEntry};
use crate::messages::{Reserve, Score, ScoreReply};
use crate::storage::record::{Alternative, Decision, Skipped};

use super::RouterSupervisor;

/// One scored candidate.
pub(super) struct Scored {
    pub(super) entry: Arc<IndexEntry>,
    pub(super) score: f64,
    pub(super) breakdown: leadrouter_models::Breakdown,
    /// The broker's resolved leads in the lead's lines, when its evidence was asked for
    /// (`roi`, Thompson exploration): how sure its conversion estimate is.
    pub(super) resolved: u64,
}

/// What routing one lead found.
pub(super) enum Routed {
    Assigned(Box<Decision>),
    Nobody(BTreeMap<Exclusion, u32>),
}

/// A routing whose candidates are filtered and ordered; what is left is asking them to score
/// and reserving the winner ([`RouterSupervisor::settle`]).
pub(super) struct Settle {
    pub(super) lead_id: String,
    pub(super) lead: Arc<LeadFeatures>,
    pub(super) plan: Plan,
    pub(super) now: DateTime<Utc>,
    pub(super) attempt: u32,
    pub(super) rerouted_from: Option<String>,
    pub(super) candidates: Candidates,
    /// Positions in `candidates.list`, best first.
    pub(super) order: Vec<u32>,
    /// How likely the policy's order puts each candidate first.
    pub(super) chance: Chance,
    /// How many candidates the policy drew the first from.
    pub(super) pool: usize,
    /// Fairness adjustment per position in `candidates.list`; empty without bounds.
    pub(super) fairness: Vec<f64>,
    pub(super) excluded: BTreeMap<Exclusion, u32>,
    pub(super) priors: Priors,
}

// The states of a settle task's gate, shared with the caller waiting for it:
/// The caller is waiting.
const WAITED: u8 = 0;

/// The caller gave up: reserve nothing.
const ABANDONED: u8 = 1;

/// A reservation was asked for: the caller waits for its outcome.
const RESERVING: u8 = 2;

impl RouterSupervisor {
    /// Runs [`Self::settle`] as a task on `arbiter`, the thread of every broker actor: its
    /// `Score`s and `Reserve` then never leave that thread, and the caller waits for one hand-off
    /// instead of two. The caller waits at most twice the score deadline; if it gives up before
    /// a reservation was asked for, the task reserves nothing and the lead is not routed.
    pub(super) async fn settle_on(&self, arbiter: &ArbiterHandle, job: Settle) -> Routed {
        let fallback = job.excluded.clone();
        let gate = Arc::new(AtomicU8::new(WAITED));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (me, task_gate) = (self.clone(), gate.clone());
        let started = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let routed = me.settle(job, Some(&task_gate)).await;
                let _ = tx.send(routed);
            });
        });
        if !started {
            // The arbiter has stopped, and every broker actor with it.
            return Routed::Nobody(fallback);
        }
        let patience = StdDuration::from_millis(2 * self.inner.cfg.routing.score_deadline_ms);
        match tokio::time::timeout(patience, &mut rx).await {
            Ok(routed) => routed.unwrap_or(Routed::Nobody(fallback)),
            Err(_) => match gate.compare_exchange(WAITED, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.inner.metrics.settle_abandoned.inc();
                    tracing::warn!(waited_ms = patience.as_millis() as u64, "the broker arbiter did not answer in time; lead not routed");
                    Routed::Nobody(fallback)
                }
                // A reservation is under way: its outcome is the answer.
                Err(_) => rx.await.unwrap_or(Routed::Nobody(fallback)),
            },
        }
    }

    /// Asks the ordered candidates to score, K at a time, and reserves the best that accepts.
    /// With a `gate`, a caller may give up waiting: no reservation is asked for after that.
    pub(super) async fn settle(&self, job: Settle, gate: Option<&AtomicU8>) -> Routed {
        let cfg = &self.inner.cfg.routing;
        let Settle { lead_id, lead, plan, now, attempt, rerouted_from, candidates: c, order, chance, pool, fairness, mut excluded, priors } =
            job;
        let eligible = c.passed;
        let mut skipped = Vec::new();
        let mut refused = 0usize;
        let mut scored_total = 0u32;
        for chunk in order.chunks(cfg.top_k) {
            let adjust: Vec<f64> =
                if fairness.is_empty() { Vec::new() } else { chunk.iter().map(|&i| Ordered::fairness_of(&fairness, i)).collect() };
            let chunk: Vec<_> = chunk.iter().map(|&i| c.entry(i).clone()).collect();
            let (mut ranked, model_version) =
                self.score_chunk(&chunk, &adjust, &lead, priors, &plan, now, &mut excluded, &mut skipped).await;
            scored_total += ranked.len() as u32;
            while !ranked.is_empty() {
                // The pick and, with exploration, every remaining candidate's probability of it.
                let (pick, probabilities) = match &plan.exploration {
                    Some(x) => {
                        let contenders = contenders(&ranked, cfg.prior_strength);
                        let (i, p) = x.draw(&contenders, &mut self.inner.rng.lock());
                        (i, Some(p))
                    }
                    None => (0, None),
                };
                if let Some(g) = gate {
                    if let Err(ABANDONED) = g.compare_exchange(WAITED, RESERVING, Ordering::AcqRel, Ordering::Acquire) {
                        return Routed::Nobody(excluded);
                    }
                }
                let winner = &ranked[pick];
                let reserve =
                    Reserve { lead_id: lead_id.clone(), lead_state: lead.state.clone(), lines: lead.lines, urgency: lead.urgency, at: now };
                let reservation = match winner.entry.send(reserve).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(x)) => {
                        refused += 1;
                        *excluded.entry(x).or_insert(0) += 1;
                        ranked.remove(pick);
                        continue;
                    }
                    Err(_) => {
                        refused += 1;
                        skipped.push(Skipped { broker_id: winner.entry.broker.id.clone(), reason: "mailbox".into() });
                        ranked.remove(pick);
                        continue;
                    }
                };
                let p = |i: usize| probabilities.as_ref().map(|p| p[i]);
                // The next best by score; with exploration, also every candidate it could have
                // picked instead.
                let alternatives = ranked
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pick)
                    .enumerate()
                    .filter(|(shown, (i, _))| *shown < cfg.alternatives || p(*i).is_some_and(|x| x > 0.0))
                    .map(|(_, (i, a))| Alternative {
                        broker_id: a.entry.broker.id.clone(),
                        score: a.score,
                        breakdown: a.breakdown.clone(),
                        probability: p(i),
                    })
                    .collect();
                // A refused candidate is out of the set the final draw was made from: the
                // propensity is over the brokers that could take the lead.
                let propensity = p(pick).unwrap_or_else(|| chance.of_winner(pool.saturating_sub(refused).max(1)));
                return Routed::Assigned(Box::new(Decision {
                    decision_id: format!("dec-{:016x}", self.inner.rng.lock().u64(..)),
                    lead_id,
                    broker_id: winner.entry.broker.id.clone(),
                    lead_state: lead.state.clone(),
                    lead_lines: lead.lines,
                    status: "assigned".into(),
                    strategy: plan.strategy,
                    score: winner.score,
                    breakdown: winner.breakdown.clone(),
                    alternatives,
                    excluded,
                    skipped,
                    eligible: eligible as u32,
                    scored: scored_total,
                    propensity,
                    attempt,
                    rerouted_from,
                    decided_at: now,
                    accept_deadline: reservation.accept_deadline,
                    sla_target_minutes: reservation.sla_minutes,
                    decision_micros: 0,
                    model_version,
                    experiments: Vec::new(),
                    exploration: plan.exploration,
                }));
            }
        }
        Routed::Nobody(excluded)
    }

    /// Scatters `Score` to one chunk of candidates, gathers with the deadline, predicts
    /// conversion for strategy `ml`, and ranks, with each candidate's fairness adjustment
    /// (`adjust`, in chunk order; empty without bounds). Brokers found full are added to
    /// `excluded`, those that missed the deadline to `skipped`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn score_chunk(
        &self,
        chunk: &[Arc<IndexEntry>],
        adjust: &[f64],
        lead: &Arc<LeadFeatures>,
        priors: Priors,
        plan: &Plan,
        now: DateTime<Utc>,
        excluded: &mut BTreeMap<Exclusion, u32>,
        skipped: &mut Vec<Skipped>,
    ) -> (Vec<Scored>, Option<String>) {
        let model = if plan.strategy.uses_model() { plan.model.clone().or_else(|| self.inner.registry.active()) } else { None };
        let with_features = model.is_some();
        let with_evidence = plan.strategy == Strategy::Roi || plan.exploration.is_some_and(|x| x.method == Method::Thompson);
        // One timer for the whole scatter: replies still missing when it fires missed the deadline.
        let deadline = tokio::time::sleep(StdDuration::from_millis(self.inner.cfg.routing.score_deadline_ms));
        tokio::pin!(deadline);
        // One joined future over the K requests (a single allocation, no task per candidate);
        // each reply lands in its slot as it comes, so the deadline keeps what arrived.
        let replies: std::cell::RefCell<Vec<Option<_>>> = std::cell::RefCell::new((0..chunk.len()).map(|_| None).collect());
        let all = join_all(chunk.iter().enumerate().map(|(i, e)| {
            let f = e.send(Score { lead: lead.clone(), priors, now, with_features, with_evidence });
            let replies = &replies;
            async move {
                let r = f.await;
                replies.borrow_mut()[i] = Some(r);
            }
        }));
        tokio::select! {
            biased;
            _ = all => {}
            () = &mut deadline => {}
        }
        let replies = replies.into_inner();
        let mut answered = Vec::with_capacity(chunk.len());
        let mut answered_adjust = Vec::with_capacity(adjust.len());
        for (i, (e, r)) in chunk.iter().zip(replies).enumerate() {
            match r {
                Some(Ok(Some(reply))) => {
                    answered.push((e.clone(), reply));
                    if let Some(a) = adjust.get(i) {
                        answered_adjust.push(*a);
                    }
                }
                Some(Ok(None)) => *excluded.entry(Exclusion::AtCapacity).or_insert(0) += 1,
                Some(Err(_)) => skipped.push(Skipped { broker_id: e.broker.id.clone(), reason: "mailbox".into() }),
                None => {
                    self.inner.metrics.deadline_misses.inc();
                    skipped.push(Skipped { broker_id: e.broker.id.clone(), reason: "deadline".into() })
                }
            }
        }
        if answered.is_empty() {
            return (Vec::new(), None);
        }
        let mut inputs: Vec<_> = answered.iter().map(|(_, r)| r.inputs).collect();
        let mut model_version = None;
        // A lead with text: each candidate's semantic match and similar-lead evidence.
        let semantic: Option<Vec<SemanticTerms>> = lead.semantic.as_ref().map(|s| {
            let ids: Vec<&str> = answered.iter().map(|(e, _)| e.broker.id.as_str()).collect();
            let weight = if plan.strategy == Strategy::Roi { 0.0 } else { plan.weights.semantic };
            self.inner.semantic.terms(s, &ids, weight)
        });
        let term = |i: usize| semantic.as_ref().map(|t| &t[i]);
        // With a model active every reply carries features: they were asked for above.
        let rows = model.as_ref().and_then(|_| {
            answered
                .iter()
                .enumerate()
                .map(|(i, (_, r))| r.features.map(|f| features::build(lead, &f, term(i))))
                .collect::<Option<Vec<_>>>()
        });
        if let (Some(m), Some(rows)) = (&model, rows) {
            // One batched forward pass over every answered candidate.
            let predicted = Instant::now();
            let result = m.model.predict(&rows);
            self.inner.metrics.prediction_seconds.observe(predicted.elapsed().as_secs_f64());
            match result {
                Ok(p) => {
                    for (i, p) in inputs.iter_mut().zip(p) {
                        i.conversion = f64::from(p);
                    }
                    self.inner.registry.count_predictions(rows.len());
                    model_version = Some(m.version.clone());
                }
                Err(e) => tracing::error!(error = %e, version = %m.version, "prediction failed; using the empirical-Bayes estimate"),
            }
        }
        let mut ranked: Vec<Scored> = if plan.strategy == Strategy::Roi {
            self.roi_scores(&answered, &inputs, lead, &priors, model_version.as_deref())
        } else {
            let scores = combine(&inputs, &plan.weights);
            answered
                .iter()
                .zip(scores)
                .map(|((entry, reply), (score, mut breakdown))| {
                    if let Some(v) = &model_version {
                        breakdown.conversion_source = format!("model:{v}");
                    }
                    Scored { entry: entry.clone(), score, breakdown, resolved: reply.evidence.map_or(0, |e| e.lines.resolved) }
                })
                .collect()
        };
        if let Some(terms) = &semantic {
            // Before sorting: `ranked` is still in `answered`'s order.
            for (r, t) in ranked.iter_mut().zip(terms) {
                r.score += t.contribution;
                r.breakdown.semantic = Some(*t);
            }
        }
        if plan.strategy.ranks_by_score() {
            adjust_for_fairness(&mut ranked, &answered_adjust);
            self.penalise_overload(&mut ranked, &answered);
            ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.entry.broker.id.cmp(&b.entry.broker.id)));
        }
        (ranked, model_version)
    }
}

/// The ranked candidates as exploration sees them: their scores, and for Thompson sampling the
/// spread of each score from the uncertainty of its conversion estimate (a Beta posterior with
/// the prior's pseudo-observations plus the broker's resolved leads in the lead's lines).
fn contenders(ranked: &[Scored], prior_strength: f64) -> Vec<Contender> {
    ranked
        .iter()
        .map(|r| Contender {
            score: r.score,
            spread: exploration::spread(exploration::slope(&r.breakdown), r.breakdown.conversion, prior_strength + r.resolved as f64),
        })
        .collect()
}

/// Adds each candidate's fairness adjustment (`adjust`, in `ranked`'s order; empty without
/// bounds) times the best score to its score, and shows it in the breakdown.
fn adjust_for_fairness(ranked: &mut [Scored], adjust: &[f64]) {
    if adjust.iter().all(|a| *a == 0.0) {
        return;
    }
    let best = ranked.iter().map(|r| r.score.abs()).fold(0.0_f64, f64::max).max(1e-9);
    for (r, a) in ranked.iter_mut().zip(adjust) {
        let delta = a * best;
        r.score += delta;
        r.breakdown.adjustments.get_or_insert_with(Adjustments::default).fairness = delta;
    }
}

impl RouterSupervisor {
    /// Strategy `roi`: each candidate's net expected value (`models::roi`), with the broker's
    /// evidence estimate of P(convert), blended with the model's when one predicted. The seed formula's factors
    /// are kept in the breakdown with weight 0, for reference.
    fn roi_scores(
        &self,
        answered: &[(Arc<IndexEntry>, ScoreReply)],
        inputs: &[leadrouter_models::ScoreInputs],
        lead: &LeadFeatures,
        priors: &Priors,
        model_version: Option<&str>,
    ) -> Vec<Scored> {
        let s = &self.inner.cfg.routing.roi;
        let zero = leadrouter_models::Weights { specialty: 0.0, performance: 0.0, capacity: 0.0, sla: 0.0, semantic: 0.0 };
        let factors = combine(inputs, &zero);
        answered
            .iter()
            .zip(inputs)
            .zip(factors)
            .map(|(((entry, reply), input), (_, mut breakdown))| {
                let evidence = reply.evidence.unwrap_or_default();
                let model = model_version.map(|_| input.conversion);
                let (p, terms) = roi::score(model, &evidence, lead.value, lead.lines, priors, s);
                breakdown.conversion_source = match model_version {
                    Some(v) if s.model_weight >= 1.0 => format!("model:{v}"),
                    Some(v) if s.model_weight > 0.0 => format!("model:{v}+evidence"),
                    _ => "evidence".into(),
                };
                breakdown.conversion = p;
                breakdown.roi = Some(terms);
                Scored { entry: entry.clone(), score: terms.net(), breakdown, resolved: evidence.lines.resolved }
            })
            .collect()
    }

    /// Takes up to `overload_penalty` × the best score off each candidate whose utilisation
    /// (its reply's `load`, before this lead; `answered` is in `ranked`'s order) is above the
    /// overload threshold, linearly from the threshold to full, and shows it in the breakdown.
    fn penalise_overload(&self, ranked: &mut [Scored], answered: &[(Arc<IndexEntry>, ScoreReply)]) {
        let t = &self.inner.cfg.routing.throttle;
        if t.overload_penalty <= 0.0 {
            return;
        }
        let best = ranked.iter().map(|r| r.score.abs()).fold(0.0_f64, f64::max);
        let span = (1.0 - t.overload_utilisation).max(1e-9);
        for (r, (_, reply)) in ranked.iter_mut().zip(answered) {
            let load = reply.load;
            if load > t.overload_utilisation {
                let penalty = -t.overload_penalty * best * ((load - t.overload_utilisation) / span).min(1.0);
                r.score += penalty;
                r.breakdown.adjustments.get_or_insert_with(Adjustments::default).overload = penalty;
            }
        }
    }
}
