//! The running sums an experiment keeps per arm, updated one exposure or outcome at a time: all
//! its analysis needs, so results never rescan history.

use serde::{Deserialize, Serialize};

use super::stats::Moments;
use super::Metric;

/// Sums over one arm's exposures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmTotals {
    /// Exposed leads.
    pub exposures: u64,
    /// Exposed leads that converted (each counted once).
    pub conversions: u64,
    /// Sum of conversion values.
    pub revenue: f64,
    /// Sum of squares of each lead's total conversion value.
    pub revenue_sq: f64,
    /// Leads first contacted within their SLA target.
    pub sla_met: u64,
    /// Leads contacted.
    pub contacted: u64,
    /// Sum of minutes to the first contact.
    pub contact_minutes: f64,
    /// Sum of squares of minutes to the first contact.
    pub contact_minutes_sq: f64,
    /// Exposures expected under the allocation in force at each exposure (for the
    /// sample-ratio test of an adaptive allocation).
    pub expected: f64,
    /// Σ 1/p over exposures, p the logged assignment probability.
    pub ipw_weight: f64,
    /// Σ 1/p over converted exposures.
    pub ipw_conversions: f64,
    /// Σ value/p over conversions.
    pub ipw_revenue: f64,
}

impl ArmTotals {
    /// Counts an exposure with assignment probability `p` (add the share each arm had at that
    /// moment to its `expected`).
    pub fn expose(&mut self, p: f64) {
        self.exposures += 1;
        if p > 0.0 {
            self.ipw_weight += 1.0 / p;
        }
    }

    /// Counts a conversion worth `value` of a lead whose conversions so far total `before`
    /// (`first` when it is the lead's first).
    pub fn convert(&mut self, p: f64, value: f64, before: f64, first: bool) {
        if first {
            self.conversions += 1;
            if p > 0.0 {
                self.ipw_conversions += 1.0 / p;
            }
        }
        self.revenue += value;
        self.revenue_sq += (before + value).powi(2) - before.powi(2);
        if p > 0.0 {
            self.ipw_revenue += value / p;
        }
    }

    /// Counts a first contact `minutes` after the decision, within its target or not.
    pub fn contact(&mut self, minutes: f64, within: bool) {
        self.contacted += 1;
        self.contact_minutes += minutes;
        self.contact_minutes_sq += minutes * minutes;
        if within {
            self.sla_met += 1;
        }
    }

    /// Successes and trials of a proportion metric.
    pub fn proportion(&self, m: Metric) -> (u64, u64) {
        match m {
            Metric::ConversionRate => (self.conversions, self.exposures),
            Metric::SlaCompliance => (self.sla_met, self.exposures),
            Metric::RevenuePerLead | Metric::FirstContactMinutes => (0, 0),
        }
    }

    /// The sample moments of `m`: per exposure, or per contacted lead for first-contact minutes.
    pub fn moments(&self, m: Metric) -> Moments {
        match m {
            Metric::ConversionRate | Metric::SlaCompliance => {
                let (c, n) = self.proportion(m);
                Moments::from_sums(n, c as f64, c as f64)
            }
            Metric::RevenuePerLead => Moments::from_sums(self.exposures, self.revenue, self.revenue_sq),
            Metric::FirstContactMinutes => Moments::from_sums(self.contacted, self.contact_minutes, self.contact_minutes_sq),
        }
    }

    /// Self-normalised inverse-propensity estimate of the conversion rate.
    pub fn ipw_rate(&self) -> Option<f64> {
        (self.ipw_weight > 0.0).then(|| self.ipw_conversions / self.ipw_weight)
    }

    /// Self-normalised inverse-propensity estimate of revenue per lead.
    pub fn ipw_revenue_per_lead(&self) -> Option<f64> {
        (self.ipw_weight > 0.0).then(|| self.ipw_revenue / self.ipw_weight)
    }
}
