//! The journal replayed decision by decision: at each logged decision the state every broker
//! was in just before it (the same functions serving used), who was eligible, what a candidate
//! policy would have done with each of them and with what probability, what the reward model
//! predicts, and, once the lead's outcome with the chosen broker is known, the rewards.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::exploration::Contender;
use leadrouter_models::policy::{Arm, RankContext};
use leadrouter_models::roi::Evidence;
use leadrouter_models::{
    combine, features, roi, BrokerFeatures, BrokerProfile, Chance, ConversionModel, EventKind, Exclusion, LeadFeatures, Policies, Priors,
    ScoreInputs, Slate, Strategy,
};

use super::{Candidate, Progress};
use crate::config::EngineConfig;
use crate::error::Result;
use crate::model::registry::LoadedModel;
use crate::storage::journal;
use crate::storage::record::Record;
use crate::storage::state::{BrokerEntry, EngineState};

/// One logged decision whose outcome is known, with everything the estimators need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Logged {
    /// The logging policy's propensity of its choice.
    pub logged: f64,
    /// The candidate's probability of that choice.
    pub target: f64,
    /// Converted with the chosen broker: 1 or 0.
    pub converted: f64,
    /// The conversion's value (0 without one).
    pub revenue: f64,
    /// First contact within the broker's SLA target: 1 or 0.
    pub sla_met: f64,
    /// The reward model's predictions for the logged choice: conversion, revenue, SLA.
    pub q_logged: [f64; 3],
    /// The same averaged over the candidate's probabilities.
    pub q_target: [f64; 3],
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Decisions in the window whose outcome is known.
    pub rows: Vec<Logged>,
    /// Decisions in the window still open (left out).
    pub open: usize,
    /// Decisions in the window whose chosen broker or request the replay could not find (left
    /// out; a journal that was archived or trimmed before them).
    pub unreplayable: usize,
    /// First and last decision time among the rows.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A broker that passed the hard constraints at a logged decision, as the policies see it.
pub(super) struct Eligible<'a> {
    id: &'a str,
    weight: f64,
    specialty: f64,
    headroom: f64,
    outcomes: [u64; 4],
    pub(super) inputs: ScoreInputs,
    features: BrokerFeatures,
    evidence: Evidence,
    /// Smoothed share of its offers it took (accepted rather than rejected or let time out).
    takes: f64,
}

struct EligibleSlate<'s, 'a>(&'s [Eligible<'a>]);

impl Slate for EligibleSlate<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn arm(&self, i: usize) -> Arm {
        let e = &self.0[i];
        Arm { specialty: e.specialty, headroom: e.headroom, outcomes: e.outcomes, fairness: 0.0 }
    }
    fn id(&self, i: usize) -> &str {
        self.0[i].id
    }
    fn cmp_id(&self, a: usize, b: usize) -> std::cmp::Ordering {
        self.0[a].id.cmp(self.0[b].id)
    }
    fn has_fairness(&self) -> bool {
        false
    }
}

/// A decision waiting for its lead's outcome.
struct Pending {
    row: Logged,
    decided_at: DateTime<Utc>,
    sla_minutes: u32,
}

/// The models a replay predicts with.
pub struct Models {
    /// The candidate's conversion model (strategies `ml` and `roi`); none scores with the
    /// empirical-Bayes estimate, as serving does without an active model.
    pub candidate: Option<Arc<LoadedModel>>,
    /// The reward model of the direct method and doubly robust; none uses the empirical-Bayes
    /// estimate.
    pub reward: Option<Arc<LoadedModel>>,
}

/// Replays `journal_dir`, keeping the decisions made in `[from, to)`.
pub fn replay(
    journal_dir: &std::path::Path,
    cfg: &EngineConfig,
    candidate: &Candidate,
    models: &Models,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    progress: &dyn Progress,
) -> Result<Replayed> {
    let mut total = 0u64;
    journal::read_frames_after(journal_dir, 0, |_, _| {
        total += 1;
        Ok(())
    })?;
    progress.total(total);
    let policies = Policies::default();
    let mut rng = fastrand::Rng::with_seed(cfg.routing.seed.wrapping_add(0x0e7a1));
    let mut state = EngineState::default();
    let mut profiles: HashMap<String, BrokerProfile> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut out = Replayed::default();
    let mut done = 0u64;
    journal::read_all(journal_dir, |seq, rec| {
        done += 1;
        if done.is_multiple_of(1024) {
            progress.done(done);
        }
        match &rec {
            Record::BrokerUpserted { broker, .. } => {
                profiles.insert(broker.id.clone(), broker.profile());
            }
            Record::BrokerDeleted { broker_id, .. } => {
                profiles.remove(broker_id);
            }
            Record::Decided { decision: d, request, .. }
                if from.is_none_or(|f| d.decided_at >= f) && to.is_none_or(|t| d.decided_at < t) =>
            {
                let req = request.clone().or_else(|| state.leads.get(&d.lead_id).map(|l| l.request.clone()));
                let tried = state.leads.get(&d.lead_id).map(|l| l.tried.clone()).unwrap_or_default();
                match req.and_then(|r| {
                    let lead = r.features();
                    score_decision(&state, &profiles, cfg, candidate, models, &policies, &mut rng, &lead, &tried, d)
                }) {
                    Some(row) => {
                        // A lead decided again (a re-route) leaves its earlier decision's outcome as it was.
                        pending.insert(d.lead_id.clone(), Pending { row, decided_at: d.decided_at, sla_minutes: d.sla_target_minutes });
                    }
                    None => out.unreplayable += 1,
                }
            }
            Record::LeadEvent { at, lead_id, event, value, .. } => {
                if let Some(p) = pending.get_mut(lead_id) {
                    let resolved = match event {
                        EventKind::Contacted => {
                            let minutes = (*at - p.decided_at).num_milliseconds().max(0) as f64 / 60_000.0;
                            p.row.sla_met = f64::from(minutes <= f64::from(p.sla_minutes));
                            false
                        }
                        EventKind::Converted => {
                            p.row.converted = 1.0;
                            p.row.revenue = value.unwrap_or(0.0).max(0.0);
                            true
                        }
                        EventKind::Lost | EventKind::Rejected | EventKind::TimedOut | EventKind::Closed => true,
                        EventKind::Accepted => false,
                    };
                    if resolved {
                        if let Some(p) = pending.remove(lead_id) {
                            out.range = Some(match out.range {
                                None => (p.decided_at, p.decided_at),
                                Some((a, b)) => (a.min(p.decided_at), b.max(p.decided_at)),
                            });
                            out.rows.push(p.row);
                        }
                    }
                }
            }
            _ => {}
        }
        state.apply(seq, &rec);
    })?;
    progress.done(total);
    out.open = pending.len();
    Ok(out)
}

/// The population priors at this point of the replay, as the index computes them, and the
/// population's share of offers taken.
fn priors(state: &EngineState, strength: f64) -> (Priors, f64) {
    let (taken, offered) = state.brokers.values().fold((0u64, 0u64), |(t, o), e| {
        let c = &e.live.all_time;
        (t + c.accepted, o + c.accepted + c.rejected + c.timed_out)
    });
    (state.priors(strength), (taken as f64 + 9.0) / (offered as f64 + 10.0))
}

/// The first hard constraint broker `b` failed for `lead` at `now`, as the index and the
/// broker's actor check them: a broker that already had the lead (`tried`) is excluded, then
/// the static checks, then live capacity.
pub(super) fn eligibility(
    b: &BrokerEntry,
    p: &BrokerProfile,
    lead: &LeadFeatures,
    tried: &[String],
    now: DateTime<Utc>,
    clock: &mut leadrouter_models::LocalClock,
) -> std::result::Result<(), Exclusion> {
    if tried.contains(&p.id) {
        return Err(Exclusion::Excluded);
    }
    p.static_eligibility_at(lead, now, clock)?;
    p.capacity_eligibility(b.live.held(p.max_concurrent), b.live.daily_used_on(p.local_day(now)))
}

/// What serving would have read of broker `b` for `lead` at `now`.
pub(super) fn observe<'a>(
    id: &'a str,
    b: &BrokerEntry,
    p: &BrokerProfile,
    lead: &LeadFeatures,
    priors: &Priors,
    takes: f64,
    now: DateTime<Utc>,
) -> Eligible<'a> {
    let day = p.local_day(now);
    let (held, used) = (b.live.held(p.max_concurrent), b.live.daily_used_on(day));
    let headroom = p.headroom(held, used);
    let specialty = p.specialty_score(lead.lines);
    let target = b.broker.sla.target_minutes(lead.urgency.is_urgent());
    let c = &b.live.all_time;
    Eligible {
        id,
        weight: b.broker.weight,
        specialty,
        headroom,
        outcomes: [c.converted, c.resolved, c.sla_hits, c.sla_total],
        inputs: b.live.score_inputs(specialty, headroom, target, lead.value, priors),
        features: b.live.features(p, lead, priors, now),
        evidence: b.live.evidence(p, lead, day, b.broker.cost_per_lead),
        takes: (c.accepted as f64 + priors.strength * takes) / ((c.accepted + c.rejected + c.timed_out) as f64 + priors.strength),
    }
}

/// One logged decision's row: the eligible set rebuilt, the candidate's probabilities over it,
/// the reward model's predictions. `None` when the chosen broker is unknown to the replay.
#[allow(clippy::too_many_arguments)]
fn score_decision(
    state: &EngineState,
    profiles: &HashMap<String, BrokerProfile>,
    cfg: &EngineConfig,
    candidate: &Candidate,
    models: &Models,
    policies: &Policies,
    rng: &mut fastrand::Rng,
    lead: &LeadFeatures,
    tried: &[String],
    d: &crate::storage::record::Decision,
) -> Option<Logged> {
    let now = d.decided_at;
    let (priors, takes) = priors(state, cfg.routing.prior_strength);
    let chosen = state.brokers.get(&d.broker_id)?;
    let chosen_profile = profiles.get(&d.broker_id)?;
    let mut clock = leadrouter_models::LocalClock::default();
    let mut eligible = Vec::new();
    for (id, b) in &state.brokers {
        let Some(p) = profiles.get(id) else { continue };
        if eligibility(b, p, lead, tried, now, &mut clock).is_err() {
            continue;
        }
        eligible.push(observe(id, b, p, lead, &priors, takes, now));
    }
    let target = distribution(&eligible, cfg, candidate, models.candidate.as_deref().map(|m| &m.model), policies, rng, lead, &priors);
    // The reward model over every broker the candidate may choose, and the logged one.
    let logged_at = eligible.iter().position(|e| e.id == d.broker_id);
    let logged_obs = match logged_at {
        Some(_) => None,
        None => Some(observe(&d.broker_id, chosen, chosen_profile, lead, &priors, takes, now)),
    };
    let needed: Vec<&Eligible> = target
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(i, _)| &eligible[*i])
        .chain(logged_at.map(|i| &eligible[i]))
        .chain(logged_obs.iter())
        .collect();
    let q = reward_model(&needed, lead, models.reward.as_deref().map(|m| &m.model));
    let q_of = |id: &str| needed.iter().position(|e| e.id == id).map(|i| q[i]).unwrap_or([0.0; 3]);
    let mut q_target = [0.0; 3];
    let mut target_p = 0.0;
    for (i, p) in &target {
        if *p > 0.0 {
            let qi = q_of(eligible[*i].id);
            for k in 0..3 {
                q_target[k] += p * qi[k];
            }
            if eligible[*i].id == d.broker_id {
                target_p += p;
            }
        }
    }
    Some(Logged {
        logged: d.propensity,
        target: target_p,
        converted: 0.0,
        revenue: 0.0,
        sla_met: 0.0,
        q_logged: q_of(&d.broker_id),
        q_target,
    })
}

/// The reward model's conversion, revenue and SLA predictions for each broker. A logged
/// decision's reward counts an offer the broker declined or let time out as no sale and no
/// contact, so each prediction is the broker's smoothed share of offers taken times the model's
/// (or the empirical-Bayes) estimate for a lead it works.
fn reward_model(brokers: &[&Eligible], lead: &LeadFeatures, model: Option<&ConversionModel>) -> Vec<[f64; 3]> {
    let conversion: Vec<f64> = match model {
        Some(m) => {
            let rows: Vec<_> = brokers.iter().map(|e| features::build(lead, &e.features, None)).collect();
            match m.predict(&rows) {
                Ok(p) => p.into_iter().map(f64::from).collect(),
                Err(_) => brokers.iter().map(|e| e.inputs.conversion).collect(),
            }
        }
        None => brokers.iter().map(|e| e.inputs.conversion).collect(),
    };
    brokers
        .iter()
        .zip(conversion)
        .map(|(e, p)| [e.takes * p, e.takes * p * e.inputs.value_per_conversion, e.takes * e.inputs.sla_compliance])
        .collect()
}

/// The candidate's probability of choosing each eligible broker: `(index in eligible, p)`.
#[allow(clippy::too_many_arguments)]
fn distribution(
    eligible: &[Eligible],
    cfg: &EngineConfig,
    candidate: &Candidate,
    model: Option<&ConversionModel>,
    policies: &Policies,
    rng: &mut fastrand::Rng,
    lead: &LeadFeatures,
    priors: &Priors,
) -> Vec<(usize, f64)> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let weights = candidate.weights.unwrap_or_else(|| cfg.weights(candidate.strategy));
    let r = &cfg.routing;
    let ctx = RankContext { weights: &weights, priors, top_k: r.top_k, roi: &r.roi };
    let policy = policies.get(candidate.strategy);
    let ranking = policy.rank(&EligibleSlate(eligible), &ctx, rng);
    if !candidate.strategy.ranks_by_score() {
        let first = ranking.order[0] as usize;
        policy.chosen(eligible[first].id, eligible[first].weight);
        return match ranking.chance {
            Chance::Uniform => (0..eligible.len()).map(|i| (i, 1.0 / eligible.len() as f64)).collect(),
            Chance::Certain => vec![(first, 1.0)],
        };
    }
    let top: Vec<usize> = ranking.order.iter().take(r.top_k).map(|&i| i as usize).collect();
    let mut inputs: Vec<ScoreInputs> = top.iter().map(|&i| eligible[i].inputs).collect();
    let model = model.filter(|_| candidate.strategy.uses_model());
    if let Some(m) = model {
        let rows: Vec<_> = top.iter().map(|&i| features::build(lead, &eligible[i].features, None)).collect();
        if let Ok(p) = m.predict(&rows) {
            for (x, p) in inputs.iter_mut().zip(p) {
                x.conversion = f64::from(p);
            }
        }
    }
    // (index, score, conversion estimate, slope of the score in it, resolved leads in the lines)
    let mut scored: Vec<(usize, f64, f64, f64, u64)> = if candidate.strategy == Strategy::Roi {
        top.iter()
            .zip(&inputs)
            .map(|(&i, x)| {
                let e = &eligible[i].evidence;
                let (p, t) = roi::score(model.map(|_| x.conversion), e, lead.value, lead.lines, priors, &r.roi);
                (i, t.net(), p, t.value, e.lines.resolved)
            })
            .collect()
    } else {
        combine(&inputs, &weights)
            .into_iter()
            .zip(&top)
            .map(|((s, b), &i)| (i, s, b.conversion, leadrouter_models::exploration::slope(&b), eligible[i].evidence.lines.resolved))
            .collect()
    };
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| eligible[a.0].id.cmp(eligible[b.0].id)));
    match candidate.exploration.map(|x| x.with_band(r.exploration_band)) {
        None => vec![(scored[0].0, 1.0)],
        Some(x) => {
            let contenders: Vec<Contender> = scored
                .iter()
                .map(|&(_, s, p, slope, n)| Contender {
                    score: s,
                    spread: leadrouter_models::exploration::spread(slope, p, r.prior_strength + n as f64),
                })
                .collect();
            scored.iter().zip(x.probabilities(&contenders)).map(|(s, p)| (s.0, p)).collect()
        }
    }
}
