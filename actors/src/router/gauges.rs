//! The Prometheus gauges, refreshed when scraped.

use super::RouterSupervisor;

impl RouterSupervisor {
    /// Adds a metric kept outside the engine to `/metrics` (see [`crate::metrics::Metrics::register`]).
    pub fn register_metric(&self, c: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.inner.metrics.register(c)
    }

    /// Refreshes the gauges and returns every metric in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        let entries = self.inner.index.all();
        m.broker_utilization.reset();
        let (mut depth, mut deepest, mut hits, mut total) = (0u64, 0u64, 0u64, 0u64);
        let (mut throttled, mut overloaded) = (0i64, 0i64);
        for e in &entries {
            let s = e.capacity_state(self.inner.clock.now(), self.inner.feed.overload_at());
            m.broker_utilization.with_label_values(&[&e.broker.id, e.broker.group.as_deref().unwrap_or("")]).set(s.utilization);
            throttled += i64::from(s.throttled);
            overloaded += i64::from(s.overloaded);
            let a = e.live.actor();
            depth += a.mailbox;
            deepest = deepest.max(a.mailbox);
            let [_, _, h, t] = e.live.outcomes();
            hits += h;
            total += t;
        }
        m.sla_compliance.set(if total == 0 { 1.0 } else { hits as f64 / total as f64 });
        m.mailbox_depth.set(depth as i64);
        m.mailbox_max.set(deepest as i64);
        m.queue_length.set(self.queue_len() as i64);
        m.leads_in_memory.set(self.inner.leads.len() as i64);
        m.websocket_clients.set(self.inner.feed.clients() as i64);
        m.brokers.set(entries.len() as i64);
        m.brokers_throttled.set(throttled);
        m.brokers_overloaded.set(overloaded);
        m.fairness_lead_share.reset();
        m.fairness_within.reset();
        for st in self.fairness().into_iter().filter(|s| s.bounds.is_some()) {
            m.fairness_lead_share.with_label_values(&[st.kind, &st.name]).set(st.lead_share);
            m.fairness_within.with_label_values(&[st.kind, &st.name]).set(i64::from(st.within));
        }
        m.model_version.reset();
        let active = self.inner.registry.active();
        m.model_version.with_label_values(&[active.as_ref().map_or("none", |a| a.version.as_str())]).set(1);
        let drift = self.inner.registry.drift();
        m.model_drift.set(drift.difference.unwrap_or(0.0));
        m.model_drift_outcomes.set(drift.outcomes as i64);
        m.encode()
    }
}
