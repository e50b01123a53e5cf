//! The capacity feed: every change of a broker's load or status as a numbered event.
//!
//! Broker actors publish after each change; sequence numbers are assigned under one lock so
//! they rise in the order subscribers receive them, and a gap tells a client it missed events.
//! The channel is bounded: publishing never waits for subscribers, and a subscriber that falls
//! behind learns how many events it missed (then takes a fresh snapshot).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use leadrouter_models::BrokerStatus;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

/// A broker's capacity state.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityState {
    /// Broker.
    pub broker_id: String,
    /// Open leads.
    pub open_leads: u32,
    /// Configured concurrent limit.
    pub max_concurrent: u32,
    /// Effective concurrent limit: the configured one less the seats adaptive throttling
    /// withholds while the broker's recent SLA compliance is below target.
    pub seats: u32,
    /// True while throttling withholds seats.
    pub throttled: bool,
    /// Leads counted against today's cap.
    pub daily_used: u32,
    /// Daily limit.
    pub daily_cap: u32,
    /// open / seats (the effective limit).
    pub utilization: f64,
    /// Utilisation above `routing.throttle.overload_utilisation`: penalised in scoring.
    pub overloaded: bool,
    /// Configured status.
    pub status: BrokerStatus,
}

impl CapacityState {
    /// The state of `broker` holding `open` leads of `seats` effective ones, with `daily_used`
    /// counted today; overloaded above `overload_at` utilisation.
    pub fn of(broker: &leadrouter_models::Broker, open: u32, seats: u32, daily_used: u32, overload_at: f64) -> Self {
        let max = broker.capacity.max_concurrent;
        let utilization = open as f64 / seats.max(1) as f64;
        Self {
            broker_id: broker.id.clone(),
            open_leads: open,
            max_concurrent: max,
            seats,
            throttled: seats < max,
            daily_used,
            daily_cap: broker.capacity.daily_cap,
            utilization,
            overloaded: utilization > overload_at,
            status: broker.status,
        }
    }
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityEvent {
    /// Rises by one per event.
    pub seq: u64,
    /// What changed it: `reserve`, `cancel`, `accepted`, `rejected`, `timed_out`, `closed`, …, `config`.
    pub reason: &'static str,
    /// When.
    pub at: DateTime<Utc>,
    /// The state after the change.
    #[serde(flatten)]
    pub state: CapacityState,
}

/// The feed hub.
pub struct Feed {
    overload_at: f64,
    tx: broadcast::Sender<Arc<CapacityEvent>>,
    seq: Mutex<u64>,
    clients: Arc<AtomicUsize>,
    closing: tokio::sync::watch::Sender<bool>,
}

/// Counts a subscriber while alive.
pub struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Feed {
    /// A hub buffering up to `capacity` events per subscriber, flagging brokers above 85%
    /// utilisation overloaded.
    pub fn new(capacity: usize) -> Self {
        Self::with_overload(capacity, 0.85)
    }

    /// A hub flagging brokers above `overload_at` utilisation overloaded.
    pub fn with_overload(capacity: usize, overload_at: f64) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            overload_at,
            tx,
            seq: Mutex::new(0),
            clients: Arc::new(AtomicUsize::new(0)),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Utilisation above which a broker is flagged overloaded.
    pub fn overload_at(&self) -> f64 {
        self.overload_at
    }

    /// Tells every subscriber the service is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Feed::close`] is called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Publishes a change; never waits.
    pub fn publish(&self, reason: &'static str, state: CapacityState) {
        let mut seq = self.seq.lock();
        *seq += 1;
        let _ = self.tx.send(Arc::new(CapacityEvent { seq: *seq, reason, at: Utc::now(), state }));
    }

    /// The last sequence number handed out.
    pub fn seq(&self) -> u64 {
        *self.seq.lock()
    }

    /// A new subscriber: events published from now on, and a guard that counts it.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<CapacityEvent>>, ClientGuard) {
        self.clients.fetch_add(1, Ordering::Relaxed);
        (self.tx.subscribe(), ClientGuard(self.clients.clone()))
    }

    /// Subscribers connected.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(open: u32) -> CapacityState {
        CapacityState {
            broker_id: "b".into(),
            open_leads: open,
            max_concurrent: 4,
            seats: 4,
            throttled: false,
            daily_used: open,
            daily_cap: 9,
            utilization: open as f64 / 4.0,
            overloaded: false,
            status: BrokerStatus::Available,
        }
    }

    #[tokio::test]
    async fn numbered_in_order_and_a_slow_subscriber_learns_what_it_missed() {
        let feed = Feed::new(4);
        let (mut fast, _g1) = feed.subscribe();
        let (mut slow, g2) = feed.subscribe();
        assert_eq!(feed.clients(), 2);
        for i in 0..10 {
            feed.publish("reserve", state(i));
            assert_eq!(fast.recv().await.unwrap().seq, i as u64 + 1);
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(slow.recv().await.unwrap().seq, 7);
        drop(g2);
        assert_eq!(feed.clients(), 1);
        assert_eq!(feed.seq(), 10);
    }
}
