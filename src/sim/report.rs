//! Turns runs into the report: per-policy metrics with 95% intervals over seeds, paired uplift
//! over `random`, the share of the oracle's uplift captured, fairness per broker group; printed
//! as a table, written as JSON and as an SVG chart of cumulative conversions and revenue.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::runner::RunResult;
use super::stats::{interval, spread, Interval};
use crate::error::{Error, Result};

/// One metric of one run, by name (ratio metrics are fractions, not percentages).
type MetricFn = fn(&RunResult) -> f64;

/// The metrics reported, in table order: (name, per-run value).
pub const METRICS: [(&str, MetricFn); 15] = [
    ("conversionRate", |r| ratio(r.conversions as f64, r.leads as f64)),
    ("revenue", |r| r.revenue),
    ("revenueShare", |r| ratio(r.revenue, r.offered_value)),
    ("averageValue", |r| ratio(r.revenue, r.conversions as f64)),
    ("slaCompliance", |r| ratio(r.sla_met as f64, r.contacted as f64)),
    ("firstContactMinutes", |r| ratio(r.first_contact_minutes, r.contacted as f64)),
    ("closeHours", |r| ratio(r.close_minutes / 60.0, r.closed as f64)),
    ("queueWaitMinutes", |r| ratio(r.queue_wait_minutes, r.assigned as f64)),
    ("queuedShare", |r| ratio(r.queued as f64, r.leads as f64)),
    ("expiredShare", |r| ratio(r.expired as f64, r.leads as f64)),
    ("rejectRate", |r| ratio(r.rejected as f64, (r.accepted + r.rejected) as f64)),
    ("utilisationMean", |r| r.utilisation.iter().sum::<f64>() / r.utilisation.len().max(1) as f64),
    ("utilisationSpread", |r| spread(&r.utilisation)),
    ("oraclePickScored", |r| ratio(r.oracle_scored as f64, r.oracle_checked as f64)),
    ("oraclePickChosen", |r| ratio(r.oracle_chosen as f64, r.oracle_checked as f64)),
];

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// A broker group under one policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    /// Share of accepted leads.
    pub lead_share: Option<Interval>,
    /// Share of the estimated value of accepted leads.
    pub value_share: Option<Interval>,
    /// Share of revenue.
    pub revenue_share: Option<Interval>,
    /// Conversion rate of its accepted leads.
    pub conversion_rate: Option<Interval>,
    /// Share of all seats (the same in every run).
    pub seat_share: f64,
    /// Its fairness bounds (`routing.fairness.groups`), when the run had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<leadrouter_models::Bounds>,
}

/// One policy over all seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Policy name.
    pub policy: String,
    /// Every metric of [`METRICS`], mean and interval over seeds.
    pub metrics: BTreeMap<String, Option<Interval>>,
    /// Paired per seed: conversion rate ÷ random's − 1.
    pub conversion_uplift: Option<Interval>,
    /// Paired per seed: revenue ÷ random's − 1.
    pub revenue_uplift: Option<Interval>,
    /// Paired per seed: (conversions − random's) ÷ (oracle's − random's).
    pub oracle_share_conversion: Option<Interval>,
    /// The same for revenue.
    pub oracle_share_revenue: Option<Interval>,
    /// Per broker group.
    pub groups: BTreeMap<String, GroupReport>,
    /// Mean over seeds of cumulative sales at the end of each day.
    pub cumulative_conversions: Vec<f64>,
    /// Mean over seeds of cumulative revenue at the end of each day.
    pub cumulative_revenue: Vec<f64>,
    /// Model versions trained per run (strategy `ml`), mean.
    pub retrains: f64,
    /// Mean decision time inside the engine, microseconds.
    pub decision_micros: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What it tests.
    pub description: String,
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Days of arrivals.
    pub days: u32,
    /// Mean leads per run.
    pub leads: f64,
    /// Per policy, in the order asked for.
    pub policies: Vec<PolicyReport>,
    /// Every run's raw counts.
    pub runs: Vec<RunResult>,
    /// The experiment over every seed (`simulate --experiment`), with its definition.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "summary_only")]
    pub experiment: Option<(super::experiment::ExperimentSummary, leadrouter_models::experiment::Definition)>,
}

fn summary_only<S: serde::Serializer>(
    v: &Option<(super::experiment::ExperimentSummary, leadrouter_models::experiment::Definition)>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    v.as_ref().map(|(summary, _)| summary).serialize(s)
}

fn paired(runs: &[RunResult], policy: &str, base: &str, f: impl Fn(&RunResult, &RunResult) -> f64) -> Option<Interval> {
    let xs: Vec<f64> = runs
        .iter()
        .filter(|r| r.policy == policy)
        .filter_map(|r| runs.iter().find(|b| b.policy == base && b.seed == r.seed).map(|b| f(r, b)))
        .collect();
    interval(&xs)
}

fn cumulative(runs: &[&RunResult], days: usize, f: impl Fn(&RunResult, usize) -> f64) -> Vec<f64> {
    (0..days).map(|d| runs.iter().map(|r| (0..=d).map(|k| f(r, k)).sum::<f64>()).sum::<f64>() / runs.len().max(1) as f64).collect()
}

impl Report {
    /// Aggregates `runs` (every policy on every seed).
    pub fn build(scenario: &super::Scenario, seeds: &[u64], policies: &[String], runs: Vec<RunResult>) -> Self {
        let days = runs.iter().map(|r| r.daily_conversions.len()).max().unwrap_or(0).max(scenario.days as usize);
        let mut out = Vec::new();
        for p in policies {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| &r.policy == p).collect();
            let metrics =
                METRICS.iter().map(|(name, f)| (name.to_string(), interval(&mine.iter().map(|r| f(r)).collect::<Vec<_>>()))).collect();
            let conv = |r: &RunResult| ratio(r.conversions as f64, r.leads as f64);
            // Both are None when random (or, for the shares, the oracle) was not run.
            let uc = paired(&runs, p, "random", |a, b| ratio(conv(a), conv(b)) - 1.0);
            let ur = paired(&runs, p, "random", |a, b| ratio(a.revenue, b.revenue) - 1.0);
            let share = |f: fn(&RunResult) -> f64| {
                let xs: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| {
                        let base = runs.iter().find(|b| b.policy == "random" && b.seed == r.seed)?;
                        let best = runs.iter().find(|b| b.policy == "oracle" && b.seed == r.seed)?;
                        Some(ratio(f(r) - f(base), f(best) - f(base)))
                    })
                    .collect();
                interval(&xs)
            };
            let mut groups = BTreeMap::new();
            let names: Vec<String> = mine.first().map(|r| r.groups.keys().cloned().collect()).unwrap_or_default();
            for g in names {
                let of = |f: &dyn Fn(&RunResult) -> f64| interval(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
                let tally = |r: &RunResult| r.groups.get(&g).cloned().unwrap_or_default();
                let total = |r: &RunResult, f: fn(&super::runner::GroupTally) -> f64| r.groups.values().map(f).sum::<f64>();
                groups.insert(
                    g.clone(),
                    GroupReport {
                        lead_share: of(&|r| ratio(tally(r).leads as f64, total(r, |t| t.leads as f64))),
                        value_share: of(&|r| ratio(tally(r).value, total(r, |t| t.value))),
                        revenue_share: of(&|r| ratio(tally(r).revenue, total(r, |t| t.revenue))),
                        conversion_rate: of(&|r| ratio(tally(r).conversions as f64, tally(r).leads as f64)),
                        seat_share: mine.first().map(|r| tally(r).seat_share).unwrap_or(0.0),
                        bounds: None,
                    },
                );
            }
            out.push(PolicyReport {
                policy: p.clone(),
                metrics,
                conversion_uplift: uc,
                revenue_uplift: ur,
                oracle_share_conversion: share(|r| r.conversions as f64),
                oracle_share_revenue: share(|r| r.revenue),
                groups,
                cumulative_conversions: cumulative(&mine, days, |r, d| r.daily_conversions.get(d).copied().unwrap_or(0) as f64),
                cumulative_revenue: cumulative(&mine, days, |r, d| r.daily_revenue.get(d).copied().unwrap_or(0.0)),
                retrains: mine.iter().map(|r| r.retrains as f64).sum::<f64>() / mine.len().max(1) as f64,
                decision_micros: ratio(mine.iter().map(|r| r.decision_micros as f64).sum(), mine.iter().map(|r| r.decisions as f64).sum()),
            });
        }
        let leads = runs.iter().map(|r| r.leads as f64).sum::<f64>() / runs.len().max(1) as f64;
        Self {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seeds: seeds.to_vec(),
            days: scenario.days,
            leads,
            policies: out,
            runs,
            experiment: None,
        }
    }

    /// One policy's report.
    pub fn policy(&self, name: &str) -> Option<&PolicyReport> {
        self.policies.iter().find(|p| p.policy == name)
    }

    /// The terminal tables.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} ({}): {} seeds, {} days, {:.0} leads per run; ± is the 95% interval over seeds",
            self.scenario,
            self.description,
            self.seeds.len(),
            self.days,
            self.leads
        );
        let m = |p: &PolicyReport, k: &str| p.metrics.get(k).copied().flatten();
        let pct = |i: Option<Interval>| fmt(i, 100.0, 1, "%");
        let num = |i: Option<Interval>, d: usize| fmt(i, 1.0, d, "");
        let _ = writeln!(s, "\noutcomes");
        let header =
            ["policy", "conversion", "revenue", "avg value", "uplift conv", "uplift revenue", "oracle share cv", "oracle share rev"];
        grid(
            &mut s,
            &[22, 16, 20, 14, 16, 16, 16, 16],
            &header,
            self.policies.iter().map(|p| {
                // Uplift over random is measured against random itself, share of the oracle's
                // uplift against the oracle itself: those cells say so instead of 0 or 100%.
                let base = |name: &str, cell: String| if p.policy == name { "(baseline)".to_string() } else { cell };
                vec![
                    p.policy.clone(),
                    pct(m(p, "conversionRate")),
                    num(m(p, "revenue"), 0),
                    num(m(p, "averageValue"), 0),
                    base("random", fmt_signed(p.conversion_uplift)),
                    base("random", fmt_signed(p.revenue_uplift)),
                    base("random", base("oracle", pct(p.oracle_share_conversion))),
                    base("random", base("oracle", pct(p.oracle_share_revenue))),
                ]
            }),
        );
        let _ = writeln!(s, "\noperations");
        let header =
            ["policy", "SLA met", "contact min", "close hours", "queue wait min", "queued", "expired", "utilisation", "util spread"];
        grid(
            &mut s,
            &[22, 14, 14, 14, 14, 12, 12, 14, 14],
            &header,
            self.policies.iter().map(|p| {
                vec![
                    p.policy.clone(),
                    pct(m(p, "slaCompliance")),
                    num(m(p, "firstContactMinutes"), 1),
                    num(m(p, "closeHours"), 1),
                    num(m(p, "queueWaitMinutes"), 1),
                    pct(m(p, "queuedShare")),
                    pct(m(p, "expiredShare")),
                    pct(m(p, "utilisationMean")),
                    pct(m(p, "utilisationSpread")),
                ]
            }),
        );
        let ranked: Vec<&PolicyReport> = self.policies.iter().filter(|p| m(p, "oraclePickScored").is_some()).collect();
        if !ranked.is_empty() {
            let _ = writeln!(s, "\nranking: first decisions whose scored candidates held the oracle's pick, and that chose it");
            grid(
                &mut s,
                &[22, 16, 16],
                &["policy", "pick scored", "pick chosen"],
                ranked.iter().map(|p| vec![p.policy.clone(), pct(m(p, "oraclePickScored")), pct(m(p, "oraclePickChosen"))]),
            );
        }
        let groups: Vec<String> = self.policies.first().map(|p| p.groups.keys().cloned().collect()).unwrap_or_default();
        if !groups.is_empty() {
            let _ = writeln!(
                s,
                "\nfairness: share of accepted leads / of their value, per broker group (seat share in brackets, then any \
                 bounds on the lead share; ! marks a mean lead share outside them)"
            );
            let bound = |g: &str| match self.policies[0].groups[g].bounds {
                Some(b) if b.min_lead_share > 0.0 && b.max_lead_share < 1.0 => {
                    format!(" {:.0}-{:.0}%", b.min_lead_share * 100.0, b.max_lead_share * 100.0)
                }
                Some(b) if b.min_lead_share > 0.0 => format!(" >={:.0}%", b.min_lead_share * 100.0),
                Some(b) if b.max_lead_share < 1.0 => format!(" <={:.0}%", b.max_lead_share * 100.0),
                _ => String::new(),
            };
            let header: Vec<String> = std::iter::once("policy".to_string())
                .chain(groups.iter().map(|g| format!("{g} [{:.0}%]{}", self.policies[0].groups[g].seat_share * 100.0, bound(g))))
                .collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let widths: Vec<usize> = std::iter::once(22).chain(header.iter().skip(1).map(|h| h.chars().count().max(24) + 2)).collect();
            let mean = |i: Option<Interval>| i.map_or("-".to_string(), |i| format!("{:.1}%", i.mean * 100.0));
            grid(
                &mut s,
                &widths,
                &header,
                self.policies.iter().map(|p| {
                    std::iter::once(p.policy.clone())
                        .chain(groups.iter().map(|g| {
                            let r = &p.groups[g];
                            let out = match (r.bounds, r.lead_share) {
                                (Some(b), Some(i)) => i.mean < b.min_lead_share - 5e-4 || i.mean > b.max_lead_share + 5e-4,
                                _ => false,
                            };
                            format!("{}{} / {}", mean(r.lead_share), if out { "!" } else { "" }, mean(r.value_share))
                        }))
                        .collect()
                }),
            );
        }
        if let Some((summary, definition)) = &self.experiment {
            s += &summary.table(definition);
        }
        s
    }

    /// Writes the chart of cumulative conversions and revenue per policy as SVG.
    pub fn chart(&self, path: &Path) -> Result<()> {
        let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
            root.fill(&WHITE)?;
            let root = root.titled(&format!("{}: mean over {} seeds", self.scenario, self.seeds.len()), ("sans-serif", 22))?;
            let (top, bottom) = root.split_vertically(360);
            let days = self.policies.iter().map(|p| p.cumulative_conversions.len()).max().unwrap_or(1).max(1);
            for (area, title, pick) in [
                (&top, "cumulative conversions", (|p: &PolicyReport| &p.cumulative_conversions) as fn(&PolicyReport) -> &Vec<f64>),
                (&bottom, "cumulative revenue", |p: &PolicyReport| &p.cumulative_revenue),
            ] {
                let max = self.policies.iter().flat_map(|p| pick(p).iter().copied()).fold(1.0f64, f64::max);
                let mut chart = ChartBuilder::on(area)
                    .caption(title, ("sans-serif", 18))
                    .margin(12)
                    .x_label_area_size(36)
                    .y_label_area_size(72)
                    .build_cartesian_2d(0f64..days as f64, 0f64..max * 1.05)?;
                chart
                    .configure_mesh()
                    .x_desc("day")
                    .x_label_formatter(&|v| format!("{v:.0}"))
                    .y_label_formatter(&|v| format!("{v:.0}"))
                    .draw()?;
                for (i, p) in self.policies.iter().enumerate() {
                    let color = Palette99::pick(i).to_rgba();
                    let points: Vec<(f64, f64)> =
                        std::iter::once((0.0, 0.0)).chain(pick(p).iter().enumerate().map(|(d, v)| ((d + 1) as f64, *v))).collect();
                    chart
                        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                        .label(p.policy.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE)
                    .border_style(BLACK)
                    .draw()?;
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| Error::Simulation(format!("chart {}: {e}", path.display())))
    }
}

/// Appends a header and rows, the first column left-aligned and the others right-aligned.
fn grid(s: &mut String, widths: &[usize], header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut line = |cells: &[&str]| {
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let _ = if i == 0 { write!(s, "{c:<w$}") } else { write!(s, " {c:>w$}") };
        }
        let _ = writeln!(s);
    };
    line(header);
    for r in rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn fmt(i: Option<Interval>, scale: f64, digits: usize, unit: &str) -> String {
    match i {
        None => "-".into(),
        Some(i) => match i.half_width() {
            Some(h) => format!("{:.*}{unit} ±{:.*}", digits, i.mean * scale, digits, h * scale),
            None => format!("{:.*}{unit}", digits, i.mean * scale),
        },
    }
}

fn fmt_signed(i: Option<Interval>) -> String {
    match i {
        None => "-".into(),
        Some(i) => match i.half_width() {
            Some(h) => format!("{:+.1}% ±{:.1}", i.mean * 100.0, h * 100.0),
            None => format!("{:+.1}%", i.mean * 100.0),
        },
    }
}
