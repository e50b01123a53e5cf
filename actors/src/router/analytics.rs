//! The routing-efficiency report and the fairness standings: the book's ledger and window
//! (kept by the snapshotter as it follows the journal) with the brokers' load now.

use leadrouter_models::fairness::Standing;

use crate::storage::analytics::{gini, slot_of, Query};
use crate::views::{EfficiencyView, OperationsView, Spread};

use super::RouterSupervisor;

impl RouterSupervisor {
    /// The routing-efficiency report of `q`: the ledger's cohorts, the spread of leads and of
    /// utilisation over the brokers, and the fairness standings.
    pub fn routing_efficiency(&self, q: &Query) -> EfficiencyView {
        let (report, fairness) = {
            let book = self.inner.book.read();
            (book.ledger.efficiency(q), book.fairness.standings(&self.inner.cfg.routing.fairness))
        };
        let now = self.inner.clock.now();
        let overload_at = self.inner.feed.overload_at();
        let brokers = self.inner.index.all();
        // Leads per broker in the window, every broker of the index counted (zero if it got none).
        let mut leads: Vec<f64> = brokers.iter().map(|e| report.leads_by_broker.get(&e.broker.id).copied().unwrap_or(0) as f64).collect();
        leads.extend(report.leads_by_broker.iter().filter(|(id, _)| self.inner.index.get(id).is_none()).map(|(_, n)| *n as f64));
        let utilisation: Vec<f64> = brokers.iter().map(|e| e.capacity_state(now, overload_at).utilization).collect();
        EfficiencyView {
            report,
            utilisation: Spread::of(&utilisation),
            leads_per_broker: Spread::of(&leads),
            fairness: self.fairness_filtered(fairness, q),
        }
    }

    /// The queue now and the activity of the last hour and of today, from the book's ledger.
    pub fn operations(&self) -> OperationsView {
        let now = self.inner.clock.now();
        let current = slot_of(now);
        let midnight = slot_of(now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc());
        let (last_hour, today) = {
            let book = self.inner.book.read();
            (book.ledger.activity_since(current - 11), book.ledger.activity_since(midnight))
        };
        let (queue_length, oldest) = {
            let q = self.inner.queue.lock();
            (q.len(), q.oldest_since())
        };
        OperationsView {
            at: now,
            brokers: self.inner.index.all().len(),
            decisions: self.decisions_made(),
            queue_length,
            oldest_wait_seconds: oldest.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
            last_hour,
            today,
        }
    }

    /// Every group's and bounded broker's share of the rolling window against its bounds: the
    /// live prices when bounds are configured, else the book's window (shares, no prices).
    pub fn fairness(&self) -> Vec<Standing> {
        let s = &self.inner.cfg.routing.fairness;
        if s.active() {
            self.inner.fairness.lock().standings(s)
        } else {
            self.inner.book.read().fairness.standings(s)
        }
    }

    fn fairness_filtered(&self, all: Vec<Standing>, q: &Query) -> Vec<Standing> {
        match &q.filter.group {
            Some(g) => all.into_iter().filter(|s| s.kind == "group" && s.name.eq_ignore_ascii_case(g)).collect(),
            None => all,
        }
    }
}

impl Spread {
    /// Mean, standard deviation, Gini, least and most of `v`.
    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        Self {
            brokers: v.len(),
            mean,
            sd,
            gini: gini(v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}
