//! The delivery thread: a current-thread tokio runtime holding, per enabled subscription, one
//! reader task and its lanes; attempts are sent on the runtime's blocking pool.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use leadrouter_actors::storage::journal::Tail;
use leadrouter_actors::storage::record::Record;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::events::Event;
use super::sign;
use super::store::DeadLetter;
use super::{Cmd, DeliveryStatus, DeliveryView, Inner, RECENT};
use crate::config::WebhooksConfig;

/// Records read per pass of a reader.
const READ_BATCH: usize = 256;
/// Events queued per lane before its reader waits.
const LANE_QUEUE: usize = 64;
/// How often moved cursors are saved.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// Runs the delivery thread until [`Cmd::Shutdown`].
pub(super) fn run(inner: Arc<Inner>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    leadrouter_actors::background::lower_priority("webhooks");
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().thread_name("webhook-send").build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot start the delivery runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut tasks: HashMap<String, Vec<JoinHandle<()>>> = HashMap::new();
        let mut save = tokio::time::interval(SAVE_EVERY);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Start(id)) => {
                        for t in tasks.remove(&id).unwrap_or_default() {
                            t.abort();
                        }
                        if let Some(started) = start(&inner, &id) {
                            tasks.insert(id, started);
                        }
                    }
                    Some(Cmd::Stop(id)) => {
                        for t in tasks.remove(&id).unwrap_or_default() {
                            t.abort();
                        }
                    }
                    Some(Cmd::Shutdown(done)) => {
                        for t in tasks.drain().flat_map(|(_, t)| t) {
                            t.abort();
                        }
                        if let Err(e) = inner.save() {
                            tracing::error!(error = %e, "webhooks: saving the cursors failed");
                        }
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = save.tick() => {
                    inner.gauges();
                    if inner.dirty.load(Ordering::Acquire) {
                        if let Err(e) = inner.save() {
                            tracing::warn!(error = %e, "webhooks: saving the cursors failed; retrying");
                        }
                    }
                }
            }
        }
    });
}

/// What a subscription's lanes send with.
#[derive(Clone)]
struct Target {
    id: String,
    generation: u64,
    url: url::Url,
    key: Vec<u8>,
    agent: ureq::Agent,
}

/// Starts a subscription's reader and lanes, when it exists and is enabled.
fn start(inner: &Arc<Inner>, id: &str) -> Option<Vec<JoinHandle<()>>> {
    let (target, events, lanes, from) = {
        let subs = inner.subs.lock();
        let sub = subs.get(id).filter(|s| s.stored.enabled)?;
        let s = &sub.stored;
        let (Ok(url), Ok(key)) = (url::Url::parse(&s.url), sign::key_of("secret", &s.secret)) else {
            tracing::error!(subscription = id, "webhooks: stored url or secret unreadable; not delivering");
            return None;
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(inner.cfg.timeout_ms)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("LeadRouter-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        (
            Target { id: id.to_string(), generation: sub.generation, url, key, agent },
            s.events.clone(),
            s.concurrency.max(1) as usize,
            sub.read_pos,
        )
    };
    let mut handles = Vec::with_capacity(lanes + 1);
    let mut senders = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        senders.push(tx);
        handles.push(tokio::spawn(lane(inner.clone(), target.clone(), rx)));
    }
    handles.push(tokio::spawn(read(inner.clone(), target, events, senders, from)));
    Some(handles)
}

/// Runs `f` on the subscription's live state when it is still at `generation`.
fn with_sub<R>(inner: &Inner, t: &Target, f: impl FnOnce(&mut super::Sub) -> R) -> Option<R> {
    let mut subs = inner.subs.lock();
    subs.get_mut(&t.id).filter(|s| s.generation == t.generation).map(f)
}

/// The reader: committed records after `from`, as the events the subscription asked for, to
/// their lanes.
async fn read(inner: Arc<Inner>, t: Target, events: Vec<String>, lanes: Vec<mpsc::Sender<Event>>, from: u64) {
    let poll = Duration::from_millis(inner.cfg.poll_ms);
    let mut tail = Tail::new(inner.journal.dir(), from);
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let upto = inner.journal.committed_seq();
        if let Err(e) = tail.read(upto, READ_BATCH, |seq, json| batch.push((seq, json.to_vec()))) {
            tracing::error!(subscription = %t.id, error = %e, "webhooks: reading the journal failed");
            with_sub(&inner, &t, |s| s.last_error = Some(format!("reading the journal: {e}")));
            tokio::time::sleep(Duration::from_secs(1)).await;
            tail = Tail::new(inner.journal.dir(), tail.position());
            continue;
        }
        if batch.is_empty() {
            tokio::time::sleep(poll).await;
            continue;
        }
        for (seq, json) in batch.drain(..) {
            let event = match serde_json::from_slice::<Record>(&json) {
                Ok(rec) => Event::of(seq, &rec).filter(|e| events.iter().any(|k| k == e.kind)),
                Err(e) => {
                    tracing::error!(subscription = %t.id, seq, error = %e, "webhooks: undecodable journal record skipped");
                    None
                }
            };
            let taken = with_sub(&inner, &t, |s| {
                if let Some(e) = &event {
                    s.pending.insert(seq);
                    s.active.insert(
                        seq,
                        DeliveryView {
                            webhook_id: e.id(),
                            seq,
                            event_type: e.kind.to_string(),
                            status: DeliveryStatus::Pending,
                            attempts: 0,
                            last_status: None,
                            last_error: None,
                            next_retry_at: None,
                            finished_at: None,
                        },
                    );
                }
                s.read_pos = seq;
            });
            if taken.is_none() {
                return;
            }
            inner.dirty.store(true, Ordering::Release);
            if let Some(e) = event {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                e.key.hash(&mut h);
                let lane = (h.finish() % lanes.len() as u64) as usize;
                if lanes[lane].send(e).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The wait before attempt `attempt + 1`: the base doubled per failed attempt, capped, then
/// spread by ± the jitter fraction. `u` is uniform in [0, 1).
pub(super) fn backoff(cfg: &WebhooksConfig, attempt: u32, u: f64) -> Duration {
    let doubled = cfg.retry_base_ms as f64 * 2f64.powi(attempt.saturating_sub(1).min(40) as i32);
    let ms = doubled.min(cfg.retry_max_ms as f64) * (1.0 + cfg.jitter * (2.0 * u - 1.0));
    Duration::from_millis(ms.max(0.0) as u64)
}

/// One attempt: `Ok(status)` for a 2xx answer, else the status (if any) and what failed.
async fn attempt(allow_private: bool, t: &Target, id: &str, body: &str) -> Result<u16, (Option<u16>, String)> {
    let (t, id, body) = (t.clone(), id.to_string(), body.to_string());
    let sent = tokio::task::spawn_blocking(move || {
        if !allow_private {
            if let Some(ip) = sign::private_address(&t.url) {
                return Err((None, format!("{ip} is a private address (webhooks.allow_private_targets is off)")));
            }
        }
        let ts = Utc::now().timestamp();
        let sig = sign::signature(&t.key, &id, ts, &body);
        let resp = t
            .agent
            .post(t.url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .send(body.as_bytes())
            .map_err(|e| (None, e.to_string()))?;
        let code = resp.status().as_u16();
        if resp.status().is_success() {
            Ok(code)
        } else {
            Err((Some(code), format!("HTTP {code}")))
        }
    })
    .await;
    sent.unwrap_or_else(|e| Err((None, format!("attempt aborted: {e}"))))
}

/// A lane: its events one at a time, each until delivered or dead.
async fn lane(inner: Arc<Inner>, t: Target, mut events: mpsc::Receiver<Event>) {
    let cfg = inner.cfg.clone();
    while let Some(e) = events.recv().await {
        let (id, body) = (e.id(), e.body());
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            with_sub(&inner, &t, |s| {
                if let Some(v) = s.active.get_mut(&e.seq) {
                    (v.status, v.attempts, v.next_retry_at) = (DeliveryStatus::Delivering, attempts, None);
                }
            });
            let result = attempt(cfg.allow_private_targets, &t, &id, &body).await;
            inner.metrics.attempts.with_label_values(&[if result.is_ok() { "delivered" } else { "failed" }]).inc();
            match result {
                Ok(code) => break Ok(code),
                Err(failed) if attempts >= cfg.max_attempts => break Err(failed),
                Err((code, error)) => {
                    let wait = backoff(&cfg, attempts, fastrand::f64());
                    let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    tracing::debug!(subscription = %t.id, webhook_id = %id, attempts, error = %error, "webhooks: attempt failed");
                    with_sub(&inner, &t, |s| {
                        s.last_error = Some(format!("{id}: {error}"));
                        if let Some(v) = s.active.get_mut(&e.seq) {
                            (v.status, v.last_status, v.last_error, v.next_retry_at) =
                                (DeliveryStatus::Retrying, code, Some(error), Some(due));
                        }
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let finished = with_sub(&inner, &t, |s| {
            let now = Utc::now();
            s.pending.remove(&e.seq);
            let mut v = s.active.remove(&e.seq).unwrap_or_else(|| DeliveryView {
                webhook_id: id.clone(),
                seq: e.seq,
                event_type: e.kind.to_string(),
                status: DeliveryStatus::Pending,
                attempts,
                last_status: None,
                last_error: None,
                next_retry_at: None,
                finished_at: None,
            });
            (v.attempts, v.next_retry_at, v.finished_at) = (attempts, None, Some(now));
            match &outcome {
                Ok(code) => {
                    (v.status, v.last_status) = (DeliveryStatus::Delivered, Some(*code));
                    s.last_delivered_at = Some(now);
                }
                Err((code, error)) => {
                    tracing::warn!(subscription = %t.id, webhook_id = %id, attempts, error = %error, "webhooks: dead letter");
                    inner.metrics.dead_letters.inc();
                    (v.status, v.last_status, v.last_error) = (DeliveryStatus::Dead, *code, Some(error.clone()));
                    s.dead.push_back(DeadLetter {
                        subscription_id: t.id.clone(),
                        webhook_id: id.clone(),
                        seq: e.seq,
                        event_type: e.kind.to_string(),
                        attempts,
                        last_error: error.clone(),
                        failed_at: now,
                    });
                    while s.dead.len() > cfg.dead_letters_kept {
                        s.dead.pop_front();
                    }
                }
            }
            s.recent.push_back(v);
            while s.recent.len() > RECENT {
                s.recent.pop_front();
            }
        });
        if finished.is_none() {
            return;
        }
        inner.dirty.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_spreads() {
        let cfg = WebhooksConfig { retry_base_ms: 100, retry_max_ms: 1000, jitter: 0.2, ..WebhooksConfig::default() };
        let ms = |attempt, u| backoff(&cfg, attempt, u).as_millis();
        assert_eq!([ms(1, 0.5), ms(2, 0.5), ms(3, 0.5), ms(4, 0.5), ms(5, 0.5), ms(30, 0.5)], [100, 200, 400, 800, 1000, 1000]);
        assert_eq!((ms(1, 0.0), ms(1, 0.999_999)), (80, 119));
        assert_eq!(ms(u32::MAX, 0.5), 1000);
    }
}
