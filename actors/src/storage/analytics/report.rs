//! Reading the ledger: the buckets of a window and filter summed into figures, per strategy and
//! per day, with the calibration table and the propensity-weighted uplift over `random`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::{Bucket, Ledger, BINS};

/// Which cohorts to count: any field left `None` matches every value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Strategy name.
    pub strategy: Option<String>,
    /// Lead state.
    pub state: Option<String>,
    /// The lead's first line.
    pub line: Option<String>,
    /// Broker group (`none` for brokers without one).
    pub group: Option<String>,
}

/// A window of arrival days (both ends included) and a filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
    /// Cohorts counted.
    pub filter: Filter,
}

/// The figures of a set of cohorts. Rates are `null` when their denominator is zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Leads that arrived.
    pub leads: u64,
    /// Of them, assigned at least once.
    pub assigned: u64,
    /// Assigned ÷ leads.
    pub assignment_rate: Option<f64>,
    /// Share of leads that waited in the queue before any assignment.
    pub queue_rate: Option<f64>,
    /// Mean minutes from queueing to assignment, over queued leads later assigned.
    pub mean_queue_wait_minutes: Option<f64>,
    /// Mean minutes from arrival to first assignment, over assigned leads.
    pub mean_time_to_assignment_minutes: Option<f64>,
    /// Leads that expired in the queue unassigned.
    pub expired: u64,
    /// Acceptances ÷ decisions (first decisions and re-routes).
    pub acceptance_rate: Option<f64>,
    /// Rejections ÷ decisions.
    pub rejection_rate: Option<f64>,
    /// Acceptance time-outs ÷ decisions.
    pub timeout_rate: Option<f64>,
    /// Re-routes ÷ assigned leads.
    pub reroutes_per_lead: Option<f64>,
    /// Mean minutes from assignment to first contact.
    pub mean_first_contact_minutes: Option<f64>,
    /// First contacts within the decision's target ÷ first contacts.
    pub sla_compliance: Option<f64>,
    /// Converted ÷ assigned leads.
    pub conversion_rate: Option<f64>,
    /// Leads converted.
    pub converted: u64,
    /// Revenue.
    pub revenue: f64,
    /// Revenue ÷ leads.
    pub revenue_per_lead: Option<f64>,
    /// Sum of P(convert) × value per conversion at the first decisions.
    pub expected_value: f64,
    /// Sum of the leads' estimated values.
    pub value_offered: f64,
    /// Revenue ÷ value offered.
    pub value_captured: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl Figures {
    /// The figures of `b`.
    pub fn of(b: &Bucket) -> Self {
        let decisions = (b.assigned + b.reroutes) as f64;
        Self {
            leads: b.leads,
            assigned: b.assigned,
            assignment_rate: ratio(b.assigned as f64, b.leads as f64),
            queue_rate: ratio(b.queued as f64, b.leads as f64),
            mean_queue_wait_minutes: ratio(b.queue_minutes, b.queue_assigned as f64),
            mean_time_to_assignment_minutes: ratio(b.assign_minutes, b.assigned as f64),
            expired: b.expired,
            acceptance_rate: ratio(b.accepted as f64, decisions),
            rejection_rate: ratio(b.rejected as f64, decisions),
            timeout_rate: ratio(b.timed_out as f64, decisions),
            reroutes_per_lead: ratio(b.reroutes as f64, b.assigned as f64),
            mean_first_contact_minutes: ratio(b.contact_minutes, b.contacted as f64),
            sla_compliance: ratio(b.sla_hits as f64, b.contacted as f64),
            conversion_rate: ratio(b.converted as f64, b.assigned as f64),
            converted: b.converted,
            revenue: b.revenue,
            revenue_per_lead: ratio(b.revenue, b.leads as f64),
            expected_value: b.expected_value,
            value_offered: b.value_offered,
            value_captured: ratio(b.revenue, b.value_offered),
        }
    }
}

/// One bin of the calibration table.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalibrationBin {
    /// Lower edge of predicted P(convert).
    pub from: f64,
    /// Upper edge.
    pub to: f64,
    /// Assigned leads whose first decision predicted a P in the bin.
    pub leads: u64,
    /// Their mean predicted P.
    pub predicted: f64,
    /// The share of them that converted.
    pub observed: f64,
}

/// Predicted against observed conversion.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    /// Non-empty bins.
    pub bins: Vec<CalibrationBin>,
    /// Expected calibration error: Σ leads · |predicted − observed| ÷ leads.
    pub expected_calibration_error: Option<f64>,
}

/// A propensity-weighted mean and its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// A strategy's value, and its uplift over `random` when random traffic exists in the window.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uplift {
    /// Strategy.
    pub strategy: String,
    /// Assigned leads.
    pub leads: u64,
    /// Conversion rate, weighted by 1 / the probability of the lead's routing plan.
    pub conversion: Estimate,
    /// Revenue per assigned lead, likewise.
    pub revenue_per_lead: Estimate,
    /// Conversion minus `random`'s.
    pub conversion_vs_random: Option<Estimate>,
    /// Revenue per lead minus `random`'s.
    pub revenue_per_lead_vs_random: Option<Estimate>,
}

/// The ledger's part of the routing-efficiency report.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Efficiency {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
    /// Every matching cohort.
    pub totals: Figures,
    /// Per strategy.
    pub by_strategy: BTreeMap<String, Figures>,
    /// Per broker group.
    pub by_group: BTreeMap<String, Figures>,
    /// Per arrival day, every day of the window.
    pub daily: Vec<Day>,
    /// Predicted against observed conversion.
    pub calibration: Calibration,
    /// Each strategy's weighted value and its uplift over `random`.
    pub uplift: Vec<Uplift>,
    /// Assigned leads per broker in the window (brokers with at least one).
    pub leads_by_broker: BTreeMap<String, u64>,
}

/// One day of the trend.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// The day.
    pub day: NaiveDate,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Weighted mean of Σw·y over Σw, with the delta-method variance from Σw²·y, Σw²·y², Σw².
fn weighted(sw: f64, swy: f64, sw2y: f64, sw2y2: f64, sw2: f64) -> Option<(f64, f64)> {
    if sw <= 0.0 {
        return None;
    }
    let m = swy / sw;
    let var = ((sw2y2 - 2.0 * m * sw2y + m * m * sw2) / (sw * sw)).max(0.0);
    Some((m, var))
}

fn interval(m: f64, var: f64) -> Estimate {
    let h = 1.96 * var.sqrt();
    Estimate { value: m, low: m - h, high: m + h }
}

impl Ledger {
    /// The report of `q` from the buckets (no lead is read).
    pub fn efficiency(&self, q: &Query) -> Efficiency {
        let f = &q.filter;
        let matches = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have));
        let mut total = Bucket::default();
        let mut by_strategy: BTreeMap<String, Bucket> = BTreeMap::new();
        let mut by_group: BTreeMap<String, Bucket> = BTreeMap::new();
        let mut by_day: BTreeMap<NaiveDate, Bucket> = BTreeMap::new();
        for (k, b) in &self.buckets {
            if k.day < q.from
                || k.day > q.to
                || !matches(&f.strategy, &k.strategy)
                || !matches(&f.state, &k.state)
                || !matches(&f.line, &k.line)
                || !matches(&f.group, &k.group)
            {
                continue;
            }
            total.add(b);
            by_strategy.entry(k.strategy.clone()).or_default().add(b);
            by_group.entry(k.group.clone()).or_default().add(b);
            by_day.entry(k.day).or_default().add(b);
        }
        let daily = q
            .from
            .iter_days()
            .take_while(|d| *d <= q.to)
            .map(|day| Day { day, figures: by_day.get(&day).map(Figures::of).unwrap_or_default() })
            .collect();
        let bins: Vec<CalibrationBin> = total
            .calibration
            .iter()
            .enumerate()
            .filter(|(_, c)| c[0] > 0.0)
            .map(|(i, c)| CalibrationBin {
                from: i as f64 / BINS as f64,
                to: (i + 1) as f64 / BINS as f64,
                leads: c[0] as u64,
                predicted: c[1] / c[0],
                observed: c[2] / c[0],
            })
            .collect();
        let n: f64 = bins.iter().map(|b| b.leads as f64).sum();
        let ece = (n > 0.0).then(|| bins.iter().map(|b| b.leads as f64 * (b.predicted - b.observed).abs()).sum::<f64>() / n);
        let estimate = |b: &Bucket| {
            let w = &b.weighted;
            let conv = weighted(w[0], w[1], w[2], w[2], w[6])?;
            let rev = weighted(w[0], w[3], w[4], w[5], w[6])?;
            Some((conv, rev))
        };
        let random = by_strategy.get("random").and_then(estimate);
        let uplift = by_strategy
            .iter()
            .filter_map(|(s, b)| {
                let ((cm, cv), (rm, rv)) = estimate(b)?;
                let vs = |m: f64, v: f64, base: Option<(f64, f64)>| base.filter(|_| s != "random").map(|(bm, bv)| interval(m - bm, v + bv));
                Some(Uplift {
                    strategy: s.clone(),
                    leads: b.assigned,
                    conversion: interval(cm, cv),
                    revenue_per_lead: interval(rm, rv),
                    conversion_vs_random: vs(cm, cv, random.map(|r| r.0)),
                    revenue_per_lead_vs_random: vs(rm, rv, random.map(|r| r.1)),
                })
            })
            .collect();
        let mut leads_by_broker = BTreeMap::new();
        for ((day, broker), n) in &self.per_broker {
            if *day >= q.from && *day <= q.to {
                *leads_by_broker.entry(broker.clone()).or_insert(0) += n;
            }
        }
        Efficiency {
            from: q.from,
            to: q.to,
            totals: Figures::of(&total),
            by_strategy: by_strategy.iter().map(|(k, b)| (k.clone(), Figures::of(b))).collect(),
            by_group: by_group.iter().map(|(k, b)| (k.clone(), Figures::of(b))).collect(),
            daily,
            calibration: Calibration { bins, expected_calibration_error: ece },
            uplift,
            leads_by_broker,
        }
    }
}

/// The Gini coefficient of `values` (0: all equal; near 1: one has everything); `None` when
/// they are empty or sum to zero.
pub fn gini(values: &[f64]) -> Option<f64> {
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    if values.is_empty() || sum <= 0.0 {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let weighted: f64 = v.iter().enumerate().map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x).sum();
    Some(weighted / (n * sum))
}
