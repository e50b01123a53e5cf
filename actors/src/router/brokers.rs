//! Broker administration and inspection: create, replace, delete, read, actor restarts and capacity
//! states.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::{Broker, ModelError};

use crate::error::{ActorError, Result};
use crate::feed::CapacityState;
use crate::index::IndexEntry;
use crate::messages::{Inspect, LiveView, Restart, Retire, UpdateConfig};
use crate::storage::record::Record;
use crate::storage::state::BrokerLive;
use crate::views::{ActorSummary, BrokerView, Load};

use super::RouterSupervisor;

pub(super) fn load(open: u32, daily_used: u32, b: &Broker) -> Load {
    Load {
        open_leads: open,
        max_concurrent: b.capacity.max_concurrent,
        daily_used,
        daily_cap: b.capacity.daily_cap,
        utilization: open as f64 / b.capacity.max_concurrent as f64,
    }
}

impl RouterSupervisor {
    pub(super) fn entry(&self, id: &str) -> Result<Arc<IndexEntry>> {
        self.inner.index.get(id).ok_or_else(|| ActorError::NotFound { what: "broker", id: id.to_string() })
    }

    fn view(&self, e: &IndexEntry, now: DateTime<Utc>) -> BrokerView {
        BrokerView { broker: (*e.broker).clone(), load: load(e.live.open(), e.live.used_today(now), &e.broker) }
    }

    /// Creates a broker and starts its actor.
    pub async fn create_broker(&self, b: Broker) -> Result<BrokerView> {
        b.validate()?;
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        if self.inner.index.get(&b.id).is_some() {
            return Err(ActorError::Conflict { message: format!("broker '{}' already exists", b.id), current_state: None });
        }
        let rec = Arc::new(Record::BrokerUpserted { at: self.inner.clock.now(), broker: b.clone() });
        self.inner.journal.append(rec.clone()).await?;
        self.observe_fairness(&rec);
        let entry = self.spawn_actor(Arc::new(b), BrokerLive::default());
        let view = self.view(&entry, self.inner.clock.now());
        self.inner.index.upsert(entry);
        self.kick_drain();
        Ok(view)
    }

    /// Replaces a broker's configuration with `edit(current)`; takes effect at once.
    pub async fn update_broker(&self, id: &str, edit: impl FnOnce(Broker) -> Result<Broker>) -> Result<BrokerView> {
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        let old = self.entry(id)?;
        let b = edit((*old.broker).clone())?;
        if b.id != id {
            return Err(ModelError::invalid("id", "must match the broker id in the path").into());
        }
        b.validate()?;
        let rec = Arc::new(Record::BrokerUpserted { at: self.inner.clock.now(), broker: b.clone() });
        self.inner.journal.append(rec.clone()).await?;
        self.observe_fairness(&rec);
        let b = Arc::new(b);
        old.send(UpdateConfig(b.clone())).await?;
        let entry = IndexEntry::new(b.clone(), b.profile(), old.addr.clone(), old.live.clone());
        let view = self.view(&entry, self.inner.clock.now());
        self.inner.index.upsert(entry);
        self.kick_drain();
        Ok(view)
    }

    /// Deletes a broker that holds no open leads.
    pub async fn delete_broker(&self, id: &str) -> Result<()> {
        self.check_running()?;
        let _g = self.inner.admin.lock().await;
        let e = self.entry(id)?;
        if let Err(open) = e.send(Retire).await? {
            return Err(ActorError::Conflict {
                message: format!("broker '{id}' holds {open} open leads; close or re-route them first"),
                current_state: None,
            });
        }
        let rec = Arc::new(Record::BrokerDeleted { at: self.inner.clock.now(), broker_id: id.to_string() });
        self.inner.journal.append(rec.clone()).await?;
        self.observe_fairness(&rec);
        self.inner.index.remove(id);
        Ok(())
    }

    /// One broker.
    pub fn broker(&self, id: &str) -> Result<BrokerView> {
        Ok(self.view(&*self.entry(id)?, self.inner.clock.now()))
    }

    /// Every broker's configuration, in index order.
    pub fn broker_configs(&self) -> Vec<Broker> {
        self.inner.index.all().iter().map(|e| (*e.broker).clone()).collect()
    }

    /// Starts a refresh of the vector index over every broker and recent lead (an error while
    /// one is running).
    pub fn refresh_vectors(&self) -> Result<()> {
        self.inner.semantic.refresh(self.broker_configs())
    }

    /// All brokers, sorted by id.
    pub fn brokers(&self) -> Vec<BrokerView> {
        let now = self.inner.clock.now();
        self.inner.index.all().iter().map(|e| self.view(e, now)).collect()
    }

    /// A copy of a broker actor's live state.
    pub async fn inspect(&self, id: &str) -> Result<LiveView> {
        Ok(self.entry(id)?.send(Inspect).await?)
    }

    /// Every broker actor's counters and a summary of its state.
    pub fn actors(&self) -> Vec<ActorSummary> {
        let now = self.inner.clock.now();
        self.inner
            .index
            .all()
            .iter()
            .map(|e| ActorSummary {
                broker_id: e.broker.id.clone(),
                counters: e.live.actor(),
                state: e.capacity_state(now, self.inner.feed.overload_at()),
            })
            .collect()
    }

    /// Restarts a broker actor through its supervisor; returns its state before and after.
    pub async fn restart_actor(&self, id: &str) -> Result<(LiveView, LiveView)> {
        let e = self.entry(id)?;
        let before = e.send(Inspect).await?;
        e.send(Restart).await?;
        let after = e.send(Inspect).await?;
        Ok((before, after))
    }

    /// Every broker's capacity state (index copies), sorted by broker id.
    pub fn capacity_snapshot(&self) -> Vec<CapacityState> {
        let now = self.inner.clock.now();
        self.inner.index.all().iter().map(|e| e.capacity_state(now, self.inner.feed.overload_at())).collect()
    }

    /// One broker's licence states, for feed filters.
    pub fn broker_states(&self, id: &str) -> Vec<String> {
        self.inner.index.get(id).map(|e| e.profile.licences.iter().map(|l| l.0.name()).collect()).unwrap_or_default()
    }
}
