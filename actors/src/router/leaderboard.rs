//! Broker performance and the leaderboard, asked of the broker actors.

use futures_util::future::join_all;

use crate::error::Result;
use crate::index::IndexEntry;
use crate::messages::Performance;
use crate::views::{LeaderboardMetric, LeaderboardRow, PeerComparison, PerfView, PerformanceView};

use super::brokers::load;
use super::RouterSupervisor;

/// Days in the recent performance window.
pub const RECENT_DAYS: i64 = 7;

impl RouterSupervisor {
    /// A broker's performance, all-time and over the last [`RECENT_DAYS`] days.
    pub async fn performance(&self, id: &str) -> Result<PerformanceView> {
        let e = self.entry(id)?;
        let now = self.inner.clock.now();
        let p = e.send(Performance { now, window_days: RECENT_DAYS }).await?;
        let all_time = PerfView::from(&p.all_time);
        let peers = self.peers(&e, &all_time).await;
        Ok(PerformanceView {
            broker_id: id.to_string(),
            all_time,
            recent: PerfView::from(&p.recent),
            window_days: p.window_days,
            load: load(p.open, p.daily_used, &e.broker),
            peers,
        })
    }

    /// `me`'s percentiles among the brokers licensed for one of its state and line pairs.
    async fn peers(&self, me: &IndexEntry, mine: &PerfView) -> PeerComparison {
        let now = self.inner.clock.now();
        let overlaps = |other: &IndexEntry| {
            me.profile.licences.iter().any(|(s, l, _)| other.profile.licences.iter().any(|(s2, l2, _)| s == s2 && l.0 & l2.0 != 0))
        };
        let others: Vec<_> = self.inner.index.all().into_iter().filter(|o| o.broker.id != me.broker.id && overlaps(o)).collect();
        let perf = join_all(others.iter().map(|e| e.send(Performance { now, window_days: RECENT_DAYS }))).await;
        let per_lead = |v: &PerfView| (v.leads > 0).then(|| v.value_captured / v.leads as f64);
        let mut views: Vec<PerfView> = perf.into_iter().flatten().map(|p| PerfView::from(&p.all_time)).collect();
        views.push(mine.clone());
        let of = |f: &dyn Fn(&PerfView) -> Option<f64>| {
            let all: Vec<Option<f64>> = views.iter().map(f).collect();
            PeerComparison::percentile(f(mine), &all)
        };
        PeerComparison {
            peers: views.len(),
            conversion_rate: of(&|v| v.conversion_rate),
            sla_compliance: of(&|v| v.sla_compliance),
            value_per_lead: of(&per_lead),
        }
    }

    /// Brokers ranked by `metric` over all time or the recent window; rate metrics only rank
    /// brokers with at least `min_leads` leads in the window.
    pub async fn leaderboard(&self, metric: LeaderboardMetric, recent: bool, limit: usize, min_leads: u64) -> Result<Vec<LeaderboardRow>> {
        let now = self.inner.clock.now();
        let all = self.inner.index.all();
        let perf = join_all(all.iter().map(|e| e.send(Performance { now, window_days: RECENT_DAYS }))).await;
        let mut rows = Vec::new();
        for (e, p) in all.iter().zip(perf) {
            let Ok(p) = p else { continue };
            let v = PerfView::from(if recent { &p.recent } else { &p.all_time });
            if metric.is_rate() && v.leads < min_leads {
                continue;
            }
            if let Some(value) = metric.of(&v) {
                rows.push(LeaderboardRow {
                    rank: 0,
                    broker_id: e.broker.id.clone(),
                    name: e.broker.name.clone(),
                    group: e.broker.group.clone(),
                    value,
                    leads: v.leads,
                });
            }
        }
        rows.sort_by(|a, b| {
            let o = if metric.ascending() { a.value.total_cmp(&b.value) } else { b.value.total_cmp(&a.value) };
            o.then_with(|| a.broker_id.cmp(&b.broker_id))
        });
        rows.truncate(limit);
        for (i, r) in rows.iter_mut().enumerate() {
            r.rank = i + 1;
        }
        Ok(rows)
    }
}
