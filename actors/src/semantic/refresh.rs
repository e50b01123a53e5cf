//! A refresh: every broker profile and every lead resolved within `refresh_lead_days` (read from
//! the journal) re-embedded into a new generation on a background thread at low priority; the
//! worker swaps it in at once and applies again what changed while it ran, so searches never
//! see a half-built index and nothing committed meanwhile is lost.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use leadrouter_models::semantic as sem;
use leadrouter_models::{Broker, DecideRequest, EventKind};

use super::index::{Collection, Generation, Payload, Point};
use super::worker::{broker_point, lead_point, vectors, Job};
use super::{Encoder, RefreshInfo, Semantic, Source};
use crate::error::{ActorError, Result};
use crate::storage::journal;
use crate::storage::record::Record;

pub(super) fn start(s: &Semantic, brokers: Vec<Broker>) -> Result<()> {
    let encoder = s.inner.encoder.read().clone();
    if matches!(encoder, Encoder::Pending) {
        return Err(ActorError::Unavailable("no encoder is installed yet".into()));
    }
    if s.inner.refreshing.swap(true, Ordering::AcqRel) {
        return Err(ActorError::Conflict { message: "a refresh of the vector index is already running".into(), current_state: None });
    }
    if !s.send(Job::RefreshStarted) {
        s.inner.refreshing.store(false, Ordering::Release);
        return Err(ActorError::Unavailable("the semantic worker has stopped".into()));
    }
    let me = s.clone();
    let spawned = std::thread::Builder::new().name("semantic-refresh".into()).spawn(move || {
        crate::background::lower_priority("semantic-refresh");
        let started = Instant::now();
        match build(&me, &encoder, &brokers) {
            Ok((g, n_brokers, n_leads)) => {
                let info = RefreshInfo {
                    finished_at: Utc::now(),
                    millis: started.elapsed().as_millis() as u64,
                    brokers: n_brokers,
                    leads: n_leads,
                };
                me.send(Job::Swap(Box::new(g), Some(info)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "semantic: refresh failed; the current index stays");
                me.send(Job::RefreshFailed(e.to_string()));
            }
        }
    });
    if let Err(e) = spawned {
        s.send(Job::RefreshFailed(e.to_string()));
        return Err(e.into());
    }
    Ok(())
}

/// A resolved lead found in the journal.
struct Resolved {
    request: Arc<DecideRequest>,
    broker_id: Option<String>,
    converted: bool,
    at: Option<chrono::DateTime<Utc>>,
}

fn build(s: &Semantic, encoder: &Encoder, brokers: &[Broker]) -> Result<(Generation, usize, usize)> {
    let since = Utc::now() - Duration::days(s.inner.cfg.refresh_lead_days as i64);
    let mut leads: HashMap<String, Resolved> = HashMap::new();
    if s.inner.journal_dir.is_dir() {
        journal::read_all(&s.inner.journal_dir, |_, rec| match rec {
            Record::Decided { decision, request, .. } => {
                let known = leads.get_mut(&decision.lead_id);
                match (known, request) {
                    (Some(l), _) => l.broker_id = Some(decision.broker_id.clone()),
                    (None, Some(r)) if sem::lead_text(&r.lead_data).is_some() => {
                        leads.insert(
                            decision.lead_id.clone(),
                            Resolved { request: r, broker_id: Some(decision.broker_id.clone()), converted: false, at: None },
                        );
                    }
                    _ => {}
                }
            }
            Record::Queued { request, .. } if sem::lead_text(&request.lead_data).is_some() => {
                leads.entry(request.lead_id.clone()).or_insert(Resolved { request, broker_id: None, converted: false, at: None });
            }
            Record::LeadEvent { lead_id, event, at, .. } => {
                if let Some(l) = leads.get_mut(&lead_id) {
                    match event {
                        EventKind::Converted => {
                            l.converted = true;
                            l.at = Some(at);
                        }
                        EventKind::Lost | EventKind::Closed => l.at = Some(at),
                        _ => {}
                    }
                }
            }
            Record::Archived { lead_ids, .. } => {
                // An archived id may be decided again as a new lead: keep the resolved one under
                // a name of its own.
                for id in lead_ids {
                    if let Some(l) = leads.remove(&id) {
                        if l.at.is_some() {
                            leads.insert(format!("{id}#{}", leads.len()), l);
                        }
                    }
                }
            }
            _ => {}
        })?;
    }
    let mut resolved: Vec<(String, Source, Payload)> = leads
        .into_iter()
        .filter_map(|(id, l)| {
            let at = l.at.filter(|t| *t >= since)?;
            let (src, payload) = lead_point(&l.request.lead_data, l.broker_id?, l.converted, at)?;
            Some((id, src, payload))
        })
        .collect();
    resolved.sort_by_key(|(_, _, p)| p.at);
    let keep = resolved.len().saturating_sub(s.inner.cfg.max_lead_vectors);
    resolved.drain(..keep);

    let mut g = Generation::default();
    let max = s.inner.cfg.max_batch.max(1);
    for chunk in brokers.chunks(max) {
        let parts: Vec<(Source, Payload)> = chunk.iter().map(broker_point).collect();
        let v = vectors(s, encoder, &parts.iter().map(|p| &p.0).collect::<Vec<_>>())?;
        g.extend(
            Collection::Brokers,
            chunk.iter().zip(parts).zip(v).map(|((b, (_, payload)), v)| Point { id: b.id.clone(), vector: v.to_vec(), payload }),
        );
    }
    let n_leads = resolved.len();
    for chunk in resolved.chunks(max) {
        let v = vectors(s, encoder, &chunk.iter().map(|p| &p.1).collect::<Vec<_>>())?;
        g.extend(
            Collection::Leads,
            chunk.iter().zip(v).map(|((id, _, payload), v)| Point { id: id.clone(), vector: v.to_vec(), payload: payload.clone() }),
        );
    }
    Ok((g, brokers.len(), n_leads))
}
