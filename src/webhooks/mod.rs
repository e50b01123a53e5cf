//! Outbound webhooks: subscriptions, and an outbox that follows the journal's files the way the
//! snapshotter follows its stream, never the request path: a decision never waits for a
//! webhook.
//!
//! Each enabled subscription has a reader ([`leadrouter_actors::storage::journal::Tail`]) that
//! starts at its durable cursor and reads committed records; the records that make an event the
//! subscription asked for go to one of its lanes, chosen by the event's lead, broker or
//! experiment, so events about one lead arrive in journal order while others go in parallel.
//! A lane retries an event with exponential backoff and jitter until it is accepted (any 2xx) or
//! its attempts run out (a dead letter), then takes the next. The cursor is the last record
//! before the oldest event still in flight; it is written to `webhooks.json` twice a second
//! when it moved, and a restart reads on from it: delivery is at least once, and a duplicate
//! carries the same `webhook-id`. All of it runs on one thread of its own with a lowered
//! priority (sending on the blocking pool under it), so a slow or dead receiver holds only its
//! own lanes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_actors::storage::journal::Journal;
use leadrouter_actors::ActorError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::WebhooksConfig;
use crate::error::{Error, Result};

pub mod events;
mod pump;
pub mod sign;
pub mod store;

use store::{DeadLetter, Stored, Subscription};

/// Finished deliveries kept per subscription for `GET /api/webhooks/{id}/deliveries`.
const RECENT: usize = 500;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Read from the journal, waiting for its lane.
    Pending,
    /// An attempt is under way.
    Delivering,
    /// The last attempt failed; the next is scheduled.
    Retrying,
    /// A receiver accepted it.
    Delivered,
    /// Every attempt failed: a dead letter (replay redelivers it).
    Dead,
}

/// One event's delivery to one subscription.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The event's id, sent as `webhook-id`.
    pub webhook_id: String,
    /// Its journal record.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last answer's HTTP status, if there was an answer.
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt is due (status `retrying`).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When it was delivered or given up on.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A subscription as the API shows it. The secret appears only when it was just created or
/// rotated.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    /// Id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Event types delivered.
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// False: paused.
    pub enabled: bool,
    /// Deliveries in flight at once.
    pub concurrency: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The signing secret: only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret's first characters, to tell secrets apart.
    pub secret_hint: String,
    /// Every event up to this journal record was delivered or dead-lettered.
    pub cursor: u64,
    /// Journal records committed after the cursor.
    pub lag: u64,
    /// Events read and not yet finished.
    pub in_flight: usize,
    /// Dead letters kept.
    pub dead_letters: usize,
    /// The last failure of any attempt.
    pub last_error: Option<String>,
    /// When an event was last delivered.
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// A subscription's live state.
struct Sub {
    stored: Subscription,
    /// Bumped on every restart of its tasks; a task of an older generation changes nothing.
    generation: u64,
    /// Records read whose events are not finished.
    pending: BTreeSet<u64>,
    /// The last record its reader read.
    read_pos: u64,
    /// Unfinished deliveries by record.
    active: BTreeMap<u64, DeliveryView>,
    /// Finished deliveries, newest last.
    recent: VecDeque<DeliveryView>,
    dead: VecDeque<DeadLetter>,
    last_error: Option<String>,
    last_delivered_at: Option<DateTime<Utc>>,
}

impl Sub {
    fn new(stored: Subscription, dead: VecDeque<DeadLetter>) -> Self {
        let read_pos = stored.cursor;
        Self {
            stored,
            generation: 0,
            pending: BTreeSet::new(),
            read_pos,
            active: BTreeMap::new(),
            recent: VecDeque::new(),
            dead,
            last_error: None,
            last_delivered_at: None,
        }
    }

    /// The last record before the oldest unfinished event.
    fn cursor(&self) -> u64 {
        self.pending.first().map_or(self.read_pos, |s| s - 1)
    }

    /// Forgets what is in flight and reads again from `cursor` with a new generation.
    fn restart_at(&mut self, cursor: u64) -> u64 {
        self.pending.clear();
        self.active.clear();
        self.read_pos = cursor;
        self.stored.cursor = cursor;
        self.generation += 1;
        self.generation
    }

    fn view(&self, committed: u64, secret: bool) -> SubscriptionView {
        let s = &self.stored;
        SubscriptionView {
            id: s.id.clone(),
            url: s.url.clone(),
            events: s.events.clone(),
            description: s.description.clone(),
            enabled: s.enabled,
            concurrency: s.concurrency,
            created_at: s.created_at,
            updated_at: s.updated_at,
            secret: secret.then(|| s.secret.clone()),
            secret_hint: format!("{}...", s.secret.chars().take(10).collect::<String>()),
            cursor: self.cursor(),
            lag: committed.saturating_sub(self.cursor()),
            in_flight: self.pending.len(),
            dead_letters: self.dead.len(),
            last_error: self.last_error.clone(),
            last_delivered_at: self.last_delivered_at,
        }
    }
}

/// What the delivery thread is told.
enum Cmd {
    /// (Re)start a subscription's tasks at its current generation.
    Start(String),
    /// Stop a subscription's tasks.
    Stop(String),
    /// Save and end.
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// The webhooks' metrics, shown on `/metrics` with the engine's.
struct HookMetrics {
    /// Attempts by outcome: `delivered` (a 2xx) or `failed`.
    attempts: prometheus::IntCounterVec,
    /// Events given up on.
    dead_letters: prometheus::IntCounter,
    /// The largest lag of an enabled subscription, in journal records.
    lag: prometheus::IntGauge,
    /// Events read and not yet finished, over every subscription.
    in_flight: prometheus::IntGauge,
}

impl HookMetrics {
    fn new(router: &leadrouter_actors::RouterSupervisor) -> Result<Self> {
        let m = Self {
            attempts: prometheus::IntCounterVec::new(
                prometheus::Opts::new("webhook_attempts_total", "Webhook delivery attempts by outcome"),
                &["outcome"],
            )
            .map_err(metric_err)?,
            dead_letters: prometheus::IntCounter::new("webhook_dead_letters_total", "Webhook events given up on after their last attempt")
                .map_err(metric_err)?,
            lag: prometheus::IntGauge::new(
                "webhook_lag_records",
                "Journal records the furthest-behind enabled webhook subscription has not finished",
            )
            .map_err(metric_err)?,
            in_flight: prometheus::IntGauge::new("webhook_in_flight", "Webhook events read and not yet delivered or dead")
                .map_err(metric_err)?,
        };
        for outcome in ["delivered", "failed"] {
            m.attempts.with_label_values(&[outcome]);
        }
        for c in [
            Box::new(m.attempts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.dead_letters.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.in_flight.clone()),
        ] {
            router.register_metric(c).map_err(metric_err)?;
        }
        Ok(m)
    }
}

fn metric_err(e: prometheus::Error) -> Error {
    Error::Config { field: "metrics".into(), reason: e.to_string() }
}

/// What the API handlers and the delivery thread share.
struct Inner {
    cfg: WebhooksConfig,
    metrics: HookMetrics,
    path: PathBuf,
    journal: Journal,
    subs: Mutex<BTreeMap<String, Sub>>,
    /// Held while the file is written, taken before `subs`, so saves land in order.
    file: Mutex<()>,
    /// A cursor or dead letter changed since the last save.
    dirty: AtomicBool,
}

impl Inner {
    /// Refreshes the lag and in-flight gauges.
    fn gauges(&self) {
        let committed = self.journal.committed_seq();
        let subs = self.subs.lock();
        let lag = subs.values().filter(|s| s.stored.enabled).map(|s| committed.saturating_sub(s.cursor())).max().unwrap_or(0);
        self.metrics.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
        self.metrics.in_flight.set(subs.values().map(|s| s.pending.len() as i64).sum());
    }

    /// Writes every subscription with its current cursor.
    fn save(&self) -> Result<()> {
        let _file = self.file.lock();
        self.dirty.store(false, Ordering::Release);
        let stored = {
            let subs = self.subs.lock();
            Stored {
                version: 1,
                subscriptions: subs.values().map(|s| Subscription { cursor: s.cursor(), ..s.stored.clone() }).collect(),
                dead_letters: subs.values().flat_map(|s| s.dead.iter().cloned()).collect(),
            }
        };
        store::save(&self.path, &stored).inspect_err(|_| self.dirty.store(true, Ordering::Release))
    }
}

/// The webhook service: its subscriptions and their delivery thread.
pub struct Webhooks {
    inner: Arc<Inner>,
    cmd: tokio::sync::mpsc::UnboundedSender<Cmd>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What `POST /api/webhooks` and `PATCH /api/webhooks/{id}` take; every field optional for a
/// patch, `url` and `events` required to create.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Target: http:// (or https:// in a build with `--features tls`), at most 2,048 characters.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// Event types, at least one, each from the catalogue (see the tag's description).
    #[schema(min_items = 1)]
    pub events: Option<Vec<String>>,
    /// `whsec_` and the base64 of 24–64 bytes; generated when absent on create. On a patch, a
    /// new secret (rotation).
    pub secret: Option<String>,
    /// Free text, at most 200 characters.
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// False pauses deliveries (default true).
    pub enabled: Option<bool>,
    /// Deliveries in flight at once, 1–64 (default `webhooks.concurrency`).
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<u32>,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

fn not_found(id: &str) -> Error {
    Error::Engine(ActorError::NotFound { what: "webhook", id: id.to_string() })
}

impl Webhooks {
    /// Loads the subscriptions from `data_dir` and starts the delivery thread, which follows
    /// the router's journal; the webhooks' metrics join the router's.
    pub fn start(cfg: WebhooksConfig, data_dir: &std::path::Path, router: &leadrouter_actors::RouterSupervisor) -> Result<Self> {
        let journal: Journal = router.journal().clone();
        let metrics = HookMetrics::new(router)?;
        let path = store::path(data_dir);
        let stored = store::load(&path)?;
        let committed = journal.committed_seq();
        let mut subs = BTreeMap::new();
        for s in stored.subscriptions {
            // A cursor past the journal's end (a journal replaced under the file) reads on from the end.
            let s = Subscription { cursor: s.cursor.min(committed), ..s };
            let dead = stored.dead_letters.iter().filter(|d| d.subscription_id == s.id).cloned().collect();
            subs.insert(s.id.clone(), Sub::new(s, dead));
        }
        let ids: Vec<String> = subs.iter().filter(|(_, s)| s.stored.enabled).map(|(id, _)| id.clone()).collect();
        let inner =
            Arc::new(Inner { cfg, metrics, path, journal, subs: Mutex::new(subs), file: Mutex::new(()), dirty: AtomicBool::new(false) });
        let (cmd, rx) = tokio::sync::mpsc::unbounded_channel();
        for id in ids {
            let _ = cmd.send(Cmd::Start(id));
        }
        let runner = inner.clone();
        let thread = std::thread::Builder::new().name("webhooks".into()).spawn(move || pump::run(runner, rx))?;
        Ok(Self { inner, cmd, thread: Mutex::new(Some(thread)) })
    }

    /// Saves the cursors and stops the delivery thread (deliveries in flight are sent again
    /// after a restart).
    pub fn stop(&self) {
        let Some(thread) = self.thread.lock().take() else { return };
        let (tx, rx) = std::sync::mpsc::channel();
        if self.cmd.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
        }
        let _ = thread.join();
    }

    fn committed(&self) -> u64 {
        self.inner.journal.committed_seq()
    }

    /// Every subscription.
    pub fn list(&self) -> Vec<SubscriptionView> {
        let c = self.committed();
        self.inner.subs.lock().values().map(|s| s.view(c, false)).collect()
    }

    /// One subscription.
    pub fn get(&self, id: &str) -> Result<SubscriptionView> {
        let c = self.committed();
        self.inner.subs.lock().get(id).map(|s| s.view(c, false)).ok_or_else(|| not_found(id))
    }

    fn check_events(events: &[String]) -> Result<()> {
        if events.is_empty() {
            return Err(invalid("events", "must name at least one event type"));
        }
        for (i, e) in events.iter().enumerate() {
            if !events::EVENT_TYPES.contains(&e.as_str()) {
                return Err(invalid(
                    &format!("events[{i}]"),
                    format!("unknown event type '{e}'; one of {}", events::EVENT_TYPES.join(", ")),
                ));
            }
            if events[..i].contains(e) {
                return Err(invalid(&format!("events[{i}]"), format!("'{e}' is listed twice")));
            }
        }
        Ok(())
    }

    fn check_common(&self, req: &SubscriptionRequest) -> Result<()> {
        if let Some(url) = &req.url {
            sign::check_url("url", url, self.inner.cfg.allow_private_targets)?;
        }
        if let Some(events) = &req.events {
            Self::check_events(events)?;
        }
        if let Some(secret) = &req.secret {
            sign::key_of("secret", secret)?;
        }
        if req.description.as_ref().is_some_and(|d| d.chars().count() > 200) {
            return Err(invalid("description", "must be at most 200 characters"));
        }
        if req.concurrency.is_some_and(|c| !(1..=64).contains(&c)) {
            return Err(invalid("concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }

    /// Creates a subscription; it receives the events of records committed from now on. The
    /// answer carries the secret, which is never shown again.
    pub fn create(&self, req: SubscriptionRequest) -> Result<SubscriptionView> {
        let url = req.url.clone().ok_or_else(|| invalid("url", "is required"))?;
        let events = req.events.clone().ok_or_else(|| invalid("events", "is required"))?;
        self.check_common(&req)?;
        let secret = match req.secret {
            Some(s) => s,
            None => sign::new_secret()?,
        };
        let mut id_bytes = [0u8; 8];
        getrandom::fill(&mut id_bytes).map_err(|e| Error::Io(std::io::Error::other(format!("random source: {e}"))))?;
        let id = format!("wh-{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let now = Utc::now();
        let committed = self.committed();
        let stored = Subscription {
            id: id.clone(),
            url,
            events,
            secret,
            description: req.description,
            enabled: req.enabled.unwrap_or(true),
            concurrency: req.concurrency.unwrap_or(self.inner.cfg.concurrency),
            created_at: now,
            updated_at: now,
            cursor: committed,
        };
        {
            let mut subs = self.inner.subs.lock();
            if subs.len() >= self.inner.cfg.max_subscriptions {
                return Err(Error::Engine(ActorError::Conflict {
                    message: format!("at most {} subscriptions (webhooks.max_subscriptions)", self.inner.cfg.max_subscriptions),
                    current_state: None,
                }));
            }
            subs.insert(id.clone(), Sub::new(stored, VecDeque::new()));
        }
        if let Err(e) = self.inner.save() {
            self.inner.subs.lock().remove(&id);
            return Err(e);
        }
        let _ = self.cmd.send(Cmd::Start(id.clone()));
        let c = self.committed();
        let subs = self.inner.subs.lock();
        Ok(subs.get(&id).map(|s| s.view(c, true)).expect("just inserted"))
    }

    /// Changes a subscription; its deliveries restart from its cursor (events in flight are
    /// sent again, with the new settings).
    pub fn patch(&self, id: &str, req: SubscriptionRequest) -> Result<SubscriptionView> {
        self.check_common(&req)?;
        let before = {
            let mut subs = self.inner.subs.lock();
            let sub = subs.get_mut(id).ok_or_else(|| not_found(id))?;
            let before = sub.stored.clone();
            let s = &mut sub.stored;
            if let Some(v) = &req.url {
                s.url = v.clone();
            }
            if let Some(v) = &req.events {
                s.events = v.clone();
            }
            if let Some(v) = &req.secret {
                s.secret = v.clone();
            }
            if let Some(v) = &req.description {
                s.description = Some(v.clone());
            }
            if let Some(v) = req.enabled {
                s.enabled = v;
            }
            if let Some(v) = req.concurrency {
                s.concurrency = v;
            }
            s.updated_at = Utc::now();
            let cursor = sub.cursor();
            sub.restart_at(cursor);
            before
        };
        if let Err(e) = self.inner.save() {
            if let Some(sub) = self.inner.subs.lock().get_mut(id) {
                sub.stored = Subscription { cursor: sub.stored.cursor, ..before };
            }
            let _ = self.cmd.send(Cmd::Start(id.to_string()));
            return Err(e);
        }
        let _ = self.cmd.send(Cmd::Start(id.to_string()));
        let c = self.committed();
        let subs = self.inner.subs.lock();
        subs.get(id).map(|s| s.view(c, req.secret.is_some())).ok_or_else(|| not_found(id))
    }

    /// Deletes a subscription and its dead letters; nothing more is sent to it.
    pub fn delete(&self, id: &str) -> Result<()> {
        let removed = self.inner.subs.lock().remove(id).ok_or_else(|| not_found(id))?;
        let _ = self.cmd.send(Cmd::Stop(id.to_string()));
        if let Err(e) = self.inner.save() {
            self.inner.subs.lock().insert(id.to_string(), removed);
            let _ = self.cmd.send(Cmd::Start(id.to_string()));
            return Err(e);
        }
        Ok(())
    }

    /// Deliveries in flight, then finished ones newest first, then dead letters; at most `limit`.
    pub fn deliveries(&self, id: &str, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<DeliveryView>> {
        let subs = self.inner.subs.lock();
        let sub = subs.get(id).ok_or_else(|| not_found(id))?;
        let dead = sub.dead.iter().rev().map(|d| DeliveryView {
            webhook_id: d.webhook_id.clone(),
            seq: d.seq,
            event_type: d.event_type.clone(),
            status: DeliveryStatus::Dead,
            attempts: d.attempts,
            last_status: None,
            last_error: Some(d.last_error.clone()),
            next_retry_at: None,
            finished_at: Some(d.failed_at),
        });
        let recent = sub.recent.iter().rev().filter(|d| d.status != DeliveryStatus::Dead).cloned();
        Ok(sub.active.values().cloned().chain(recent).chain(dead).filter(|d| status.is_none_or(|s| d.status == s)).take(limit).collect())
    }

    /// Delivers again every event from journal record `from_seq` on (dead letters among them),
    /// with their original ids; returns the subscription.
    pub fn replay(&self, id: &str, from_seq: u64) -> Result<SubscriptionView> {
        let committed = self.committed();
        if from_seq == 0 || from_seq > committed + 1 {
            return Err(invalid("fromSeq", format!("must be between 1 and {} (the next journal record)", committed + 1)));
        }
        {
            let mut subs = self.inner.subs.lock();
            let sub = subs.get_mut(id).ok_or_else(|| not_found(id))?;
            sub.dead.retain(|d| d.seq < from_seq);
            sub.restart_at(from_seq - 1);
        }
        self.inner.save()?;
        let _ = self.cmd.send(Cmd::Start(id.to_string()));
        self.get(id)
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop();
    }
}
