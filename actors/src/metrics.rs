//! Prometheus metrics of one engine, all named `leadrouter_*`. Counters and histograms are
//! updated where things happen; gauges are refreshed from the index when scraped.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds: 10 µs to 2.5 s.
const LATENCY: &[f64] = &[1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The messages the router sends to broker actors without needing their answer
/// (`RouterSupervisor::tell`), by the label their failed sends are counted under.
pub const TOLD: [&str; 3] = ["apply", "cancel", "disarm"];

/// Every metric of one engine.
pub struct Metrics {
    registry: Registry,
    /// Encoder time per text (a batch's time divided by its texts).
    pub embedding_seconds: Histogram,
    /// Text-vector cache lookups by result (hit, miss).
    pub embedding_cache: IntCounterVec,
    /// Decisions of leads with text that went without semantic terms (encoder failed or late).
    pub embedding_skipped: IntCounter,
    /// Decision latency (routing, before the journal) by strategy.
    pub decision_seconds: HistogramVec,
    /// Decisions by result: assigned, queued, rerouted, error.
    pub decisions: IntCounterVec,
    /// Candidates that missed the scoring deadline.
    pub deadline_misses: IntCounter,
    /// Decisions that gave up waiting for their scoring task on the broker arbiter.
    pub settle_abandoned: IntCounter,
    /// Messages to broker actors that could not be delivered, by message (the actor or its
    /// arbiter had stopped); each is also logged.
    pub actor_send_failures: IntCounterVec,
    /// Journal append latency, request to durable.
    pub journal_append_seconds: Histogram,
    /// Experiment exposures by experiment and arm (counted as the journal is followed).
    pub experiment_exposures: IntCounterVec,
    /// Exposed leads that converted, by experiment and arm.
    pub experiment_conversions: IntCounterVec,
    /// Sample-ratio-mismatch p-value of each running experiment, at its last review.
    pub experiment_srm_p_value: GaugeVec,
    /// 1 when an arm differs significantly from the control on the primary metric (corrected
    /// p-value below alpha) at the last review, by experiment and arm.
    pub experiment_significant: IntGaugeVec,
    /// Experiments running.
    pub experiments_running: IntGauge,
    /// fsync latency.
    pub journal_fsync_seconds: Histogram,
    /// Records per group commit (`fsync` mode).
    pub journal_batch_records: Histogram,
    /// Snapshot write time.
    pub snapshot_seconds: Histogram,
    /// Time queued leads waited until assigned.
    pub queue_wait_seconds: Histogram,
    /// Conversions recorded.
    pub conversions: IntCounter,
    /// Value of conversions (whole currency units).
    pub conversion_value: IntCounter,
    /// Forward-pass latency per decision.
    pub prediction_seconds: Histogram,
    /// Broker utilisation (open / max concurrent), per broker and group.
    pub broker_utilization: prometheus::GaugeVec,
    /// Share of SLA-measured leads contacted in time, all brokers.
    pub sla_compliance: prometheus::Gauge,
    /// Leads waiting.
    pub queue_length: IntGauge,
    /// Leads held in memory (every lead not yet archived).
    pub leads_in_memory: IntGauge,
    /// Finished leads archived out of memory.
    pub leads_archived: IntCounter,
    /// Messages waiting in broker mailboxes, summed.
    pub mailbox_depth: IntGauge,
    /// Deepest broker mailbox.
    pub mailbox_max: IntGauge,
    /// Websocket clients.
    pub websocket_clients: IntGauge,
    /// Brokers.
    pub brokers: IntGauge,
    /// Brokers adaptive throttling withholds seats from.
    pub brokers_throttled: IntGauge,
    /// Brokers above the overload utilisation.
    pub brokers_overloaded: IntGauge,
    /// Share of the fairness window's leads per bounded subject (`kind`: group or broker).
    pub fairness_lead_share: GaugeVec,
    /// 1 while a bounded subject's shares are within its bounds, else 0.
    pub fairness_within: IntGaugeVec,
    /// Throttling steps journaled, by direction (`down`: a seat withheld, `up`: one given back).
    pub throttle_steps: IntCounterVec,
    /// 1 for the active model version (`none` while no model is active).
    pub model_version: IntGaugeVec,
    /// Mean predicted − observed conversion over recent outcomes of model-routed leads.
    pub model_drift: prometheus::Gauge,
    /// Outcomes behind the drift figure.
    pub model_drift_outcomes: IntGauge,
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid histogram")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("leadrouter".into()), None).expect("valid prefix");
        let m = Self {
            decision_seconds: HistogramVec::new(
                HistogramOpts::new("decision_seconds", "Decision latency before the journal append, by strategy").buckets(LATENCY.to_vec()),
                &["strategy"],
            )
            .expect("valid"),
            decisions: IntCounterVec::new(Opts::new("decisions_total", "Decisions by result"), &["result"]).expect("valid"),
            embedding_seconds: hist("embedding_seconds", "Encoder time per text (batch time / texts)", LATENCY),
            embedding_cache: IntCounterVec::new(Opts::new("embedding_cache_total", "Text-vector cache lookups by result"), &["result"])
                .expect("valid"),
            embedding_skipped: IntCounter::new(
                "embedding_skipped_total",
                "Decisions of leads with text made without semantic terms (encoder failed or too slow)",
            )
            .expect("valid"),
            experiment_exposures: IntCounterVec::new(
                Opts::new("experiment_exposures_total", "Experiment exposures by experiment and arm"),
                &["experiment", "arm"],
            )
            .expect("valid"),
            experiment_conversions: IntCounterVec::new(
                Opts::new("experiment_conversions_total", "Exposed leads that converted, by experiment and arm"),
                &["experiment", "arm"],
            )
            .expect("valid"),
            experiment_srm_p_value: GaugeVec::new(
                Opts::new("experiment_srm_p_value", "Sample-ratio-mismatch p-value of each running experiment at its last review"),
                &["experiment"],
            )
            .expect("valid"),
            experiment_significant: IntGaugeVec::new(
                Opts::new(
                    "experiment_significant",
                    "1 when the arm differs significantly from the control on the primary metric at the last review",
                ),
                &["experiment", "arm"],
            )
            .expect("valid"),
            experiments_running: IntGauge::new("experiments_running", "Experiments running").expect("valid"),
            deadline_misses: IntCounter::new("scatter_deadline_misses_total", "Candidates that missed the scoring deadline")
                .expect("valid"),
            settle_abandoned: IntCounter::new(
                "settle_abandoned_total",
                "Decisions that gave up waiting for their scoring task on the broker arbiter (the lead was queued)",
            )
            .expect("valid"),
            actor_send_failures: IntCounterVec::new(
                Opts::new("actor_send_failures_total", "Messages to broker actors that could not be delivered, by message"),
                &["message"],
            )
            .expect("valid"),
            journal_append_seconds: hist("journal_append_seconds", "Journal append latency, request to durable", LATENCY),
            journal_fsync_seconds: hist("journal_fsync_seconds", "Journal fsync latency", LATENCY),
            journal_batch_records: hist(
                "journal_batch_records",
                "Records per group commit (fsync mode; batch and none write each record as it comes)",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
            ),
            snapshot_seconds: hist("snapshot_seconds", "Snapshot write time", LATENCY),
            queue_wait_seconds: hist(
                "queue_wait_seconds",
                "Time queued leads waited until assigned",
                &[0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0],
            ),
            conversions: IntCounter::new("conversions_total", "Conversions recorded").expect("valid"),
            conversion_value: IntCounter::new("conversion_value_total", "Value of conversions, whole currency units").expect("valid"),
            prediction_seconds: hist("prediction_seconds", "Conversion model forward pass per decision", LATENCY),
            broker_utilization: prometheus::GaugeVec::new(
                Opts::new("broker_utilization", "Open leads / effective seats"),
                &["broker", "group"],
            )
            .expect("valid"),
            sla_compliance: prometheus::Gauge::new("sla_compliance", "Share of SLA-measured leads contacted in time").expect("valid"),
            queue_length: IntGauge::new("queue_length", "Leads waiting for capacity").expect("valid"),
            leads_in_memory: IntGauge::new("leads_in_memory", "Leads held in memory, every lead not yet archived").expect("valid"),
            leads_archived: IntCounter::new("leads_archived_total", "Finished leads archived out of memory").expect("valid"),
            mailbox_depth: IntGauge::new("mailbox_depth", "Messages waiting in broker mailboxes").expect("valid"),
            mailbox_max: IntGauge::new("mailbox_depth_max", "Deepest broker mailbox").expect("valid"),
            websocket_clients: IntGauge::new("websocket_clients", "Capacity feed subscribers").expect("valid"),
            brokers: IntGauge::new("brokers", "Brokers").expect("valid"),
            brokers_throttled: IntGauge::new("brokers_throttled", "Brokers whose seats adaptive throttling reduces").expect("valid"),
            brokers_overloaded: IntGauge::new("brokers_overloaded", "Brokers above the overload utilisation").expect("valid"),
            fairness_lead_share: GaugeVec::new(
                Opts::new("fairness_lead_share", "Share of the fairness window's leads, per bounded group or broker"),
                &["kind", "name"],
            )
            .expect("valid"),
            fairness_within: IntGaugeVec::new(
                Opts::new("fairness_within_bounds", "1 while a bounded group's or broker's shares are within its bounds"),
                &["kind", "name"],
            )
            .expect("valid"),
            throttle_steps: IntCounterVec::new(Opts::new("throttle_steps_total", "Adaptive throttling steps journaled"), &["direction"])
                .expect("valid"),
            model_version: IntGaugeVec::new(Opts::new("model_active", "1 for the active conversion model version"), &["version"])
                .expect("valid"),
            model_drift: prometheus::Gauge::new("model_drift", "Mean predicted minus observed conversion, recent model-routed outcomes")
                .expect("valid"),
            model_drift_outcomes: IntGauge::new("model_drift_outcomes", "Outcomes behind leadrouter_model_drift").expect("valid"),
            registry,
        };
        let r = &m.registry;
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.decision_seconds.clone()),
            Box::new(m.decisions.clone()),
            Box::new(m.embedding_seconds.clone()),
            Box::new(m.embedding_cache.clone()),
            Box::new(m.embedding_skipped.clone()),
            Box::new(m.deadline_misses.clone()),
            Box::new(m.settle_abandoned.clone()),
            Box::new(m.actor_send_failures.clone()),
            Box::new(m.journal_append_seconds.clone()),
            Box::new(m.journal_fsync_seconds.clone()),
            Box::new(m.journal_batch_records.clone()),
            Box::new(m.snapshot_seconds.clone()),
            Box::new(m.queue_wait_seconds.clone()),
            Box::new(m.conversions.clone()),
            Box::new(m.conversion_value.clone()),
            Box::new(m.prediction_seconds.clone()),
            Box::new(m.broker_utilization.clone()),
            Box::new(m.sla_compliance.clone()),
            Box::new(m.queue_length.clone()),
            Box::new(m.leads_in_memory.clone()),
            Box::new(m.leads_archived.clone()),
            Box::new(m.mailbox_depth.clone()),
            Box::new(m.mailbox_max.clone()),
            Box::new(m.websocket_clients.clone()),
            Box::new(m.brokers.clone()),
            Box::new(m.brokers_throttled.clone()),
            Box::new(m.brokers_overloaded.clone()),
            Box::new(m.fairness_lead_share.clone()),
            Box::new(m.fairness_within.clone()),
            Box::new(m.throttle_steps.clone()),
            Box::new(m.model_version.clone()),
            Box::new(m.model_drift.clone()),
            Box::new(m.model_drift_outcomes.clone()),
            Box::new(m.experiment_exposures.clone()),
            Box::new(m.experiment_conversions.clone()),
            Box::new(m.experiment_srm_p_value.clone()),
            Box::new(m.experiment_significant.clone()),
            Box::new(m.experiments_running.clone()),
        ];
        for c in all {
            r.register(c).expect("unique metric names");
        }
        // Known label values start at zero, so rates and alerts work from the first scrape.
        for result in ["assigned", "queued", "rerouted", "error"] {
            m.decisions.with_label_values(&[result]);
        }
        for message in TOLD {
            m.actor_send_failures.with_label_values(&[message]);
        }
        for s in leadrouter_models::Strategy::ALL {
            m.decision_seconds.with_label_values(&[s.name()]);
        }
        m
    }

    /// Adds metrics kept outside the engine (the server's webhooks) to what `/metrics` shows;
    /// their names get the `leadrouter_` prefix too.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(c)
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_encodes() {
        let m = Metrics::new();
        m.decisions.with_label_values(&["assigned"]).inc();
        m.decision_seconds.with_label_values(&["specialty"]).observe(0.0002);
        m.broker_utilization.with_label_values(&["b1", "west"]).set(0.5);
        m.model_version.with_label_values(&["v1"]).set(1);
        let text = m.encode();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("leadrouter_"), "{line}");
        }
        assert!(text.contains("leadrouter_decisions_total{result=\"assigned\"} 1"));
        assert!(text.contains("leadrouter_decision_seconds_bucket{strategy=\"specialty\",le=\"0.00025\"} 1"));
    }
}
