//! What the router supervisor answers: decisions, queued answers, lead and broker views,
//! performance and leaderboards. Plain copies; no live state escapes. Decisions, leads and
//! predictions reach HTTP through the server's own answer types; the rest are serialised as
//! they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadrouter_models::{Broker, DecideRequest, Exclusion, LeadState, Strategy};
use serde::{Deserialize, Serialize};

use crate::storage::record::SharedDecision;
use crate::storage::state::{LeadEventEntry, LeadRecord, PerfCounters};

/// The answer to a decide request.
#[derive(Clone, Debug, PartialEq)]
pub enum DecideOutcome {
    /// A broker holds the lead.
    Assigned(Box<AssignedAnswer>),
    /// The lead waits (or waited) for capacity.
    Waiting(WaitingAnswer),
}

/// A decision plus how it was served.
#[derive(Clone, Debug, PartialEq)]
pub struct AssignedAnswer {
    /// The decision.
    pub decision: SharedDecision,
    /// Microseconds spent making the decision durable.
    pub journal_micros: u64,
    /// True when this lead id was decided before and this is the first decision again.
    pub replayed: bool,
}

/// A lead no broker could take.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingAnswer {
    /// The lead.
    pub lead_id: String,
    /// `queued` while waiting; `expired` or `closed` if it ended unassigned.
    pub status: LeadState,
    /// 1-based place in the queue while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Leads waiting in all.
    pub queue_length: usize,
    /// Strategy that will be used.
    pub strategy: Strategy,
    /// When it entered the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When it leaves the queue unassigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Why no broker could take it, per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Server-side time in microseconds.
    pub decision_micros: u64,
    /// True when this lead id was decided before.
    pub replayed: bool,
}

/// Everything known about one lead.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadView {
    /// The lead.
    pub lead_id: String,
    /// Current state.
    pub state: LeadState,
    /// Broker holding it.
    pub broker_id: Option<String>,
    /// Place in the queue while queued.
    pub queue_position: Option<usize>,
    /// When it was first seen.
    pub created_at: DateTime<Utc>,
    /// When it leaves the queue unassigned.
    pub expires_at: Option<DateTime<Utc>>,
    /// Brokers that gave it back.
    pub tried: Vec<String>,
    /// Every decision.
    pub decisions: Vec<SharedDecision>,
    /// Every event.
    pub events: Vec<LeadEventEntry>,
    /// The original request.
    pub request: DecideRequest,
}

impl LeadView {
    /// A view of `lead` with its queue position.
    pub fn new(lead: &LeadRecord, queue_position: Option<usize>) -> Self {
        Self {
            lead_id: lead.lead_id.clone(),
            state: lead.state,
            broker_id: lead.broker_id.clone(),
            queue_position,
            created_at: lead.created_at,
            expires_at: lead.expires_at,
            tried: lead.tried.clone(),
            decisions: lead.decisions.clone(),
            events: lead.events.clone(),
            request: (*lead.request).clone(),
        }
    }
}

/// Live load of a broker.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Open leads.
    pub open_leads: u32,
    /// Concurrent limit.
    pub max_concurrent: u32,
    /// Leads counted against today's cap.
    pub daily_used: u32,
    /// Daily limit.
    pub daily_cap: u32,
    /// open / maxConcurrent.
    pub utilization: f64,
}

/// A broker's configuration and load.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerView {
    /// Configuration.
    #[serde(flatten)]
    pub broker: Broker,
    /// Load now.
    pub load: Load,
}

/// Performance figures from counters; a rate is null when it has no denominator yet.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerfView {
    /// Leads assigned.
    pub leads: u64,
    /// Accepted.
    pub accepted: u64,
    /// Rejected.
    pub rejected: u64,
    /// Not accepted in time.
    pub timed_out: u64,
    /// Contacted.
    pub contacted: u64,
    /// Converted.
    pub converted: u64,
    /// Lost.
    pub lost: u64,
    /// Closed.
    pub closed: u64,
    /// converted / leads with an outcome (converted, lost, or closed after acceptance).
    pub conversion_rate: Option<f64>,
    /// converted / leads assigned.
    pub close_rate: Option<f64>,
    /// Mean minutes from assignment to first contact.
    pub avg_first_contact_minutes: Option<f64>,
    /// Share of SLA-measured leads contacted in time.
    pub sla_compliance: Option<f64>,
    /// Value of conversions.
    pub value_captured: f64,
}

fn ratio(a: f64, b: u64) -> Option<f64> {
    (b > 0).then(|| a / b as f64)
}

impl From<&PerfCounters> for PerfView {
    fn from(c: &PerfCounters) -> Self {
        Self {
            leads: c.assigned,
            accepted: c.accepted,
            rejected: c.rejected,
            timed_out: c.timed_out,
            contacted: c.contacted,
            converted: c.converted,
            lost: c.lost,
            closed: c.closed,
            conversion_rate: ratio(c.converted as f64, c.resolved),
            close_rate: ratio(c.converted as f64, c.assigned),
            avg_first_contact_minutes: ratio(c.first_contact_minutes_sum, c.contacted),
            sla_compliance: ratio(c.sla_hits as f64, c.sla_total),
            value_captured: c.value_converted,
        }
    }
}

/// `GET /api/brokers/{id}/performance`.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceView {
    /// The broker.
    pub broker_id: String,
    /// All time.
    pub all_time: PerfView,
    /// The recent window.
    pub recent: PerfView,
    /// Days in the recent window.
    pub window_days: i64,
    /// Load now.
    pub load: Load,
    /// Its standing among its peers, all time.
    pub peers: PeerComparison,
}

/// A broker's percentile (0–100: the share of its peers it does better than, ties counting
/// half) among its peers: the brokers licensed for at least one of the same state and line
/// pairs, itself included. `null` where the broker has no value of its own (no leads with an
/// outcome, no SLA-measured contact).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerComparison {
    /// Peers, itself included.
    pub peers: usize,
    /// Percentile of its conversion rate.
    pub conversion_rate: Option<f64>,
    /// Percentile of its SLA compliance.
    pub sla_compliance: Option<f64>,
    /// Percentile of its value captured per lead assigned.
    pub value_per_lead: Option<f64>,
}

impl PeerComparison {
    /// The percentile of `mine` among `all` (which holds it): higher is better.
    pub fn percentile(mine: Option<f64>, all: &[Option<f64>]) -> Option<f64> {
        let mine = mine?;
        let known: Vec<f64> = all.iter().flatten().copied().collect();
        let below = known.iter().filter(|v| **v < mine).count() as f64;
        let ties = known.iter().filter(|v| **v == mine).count() as f64;
        Some(100.0 * (below + 0.5 * ties) / known.len() as f64)
    }
}

/// What a leaderboard ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum LeaderboardMetric {
    /// Conversion rate (higher first).
    ConversionRate,
    /// Close rate (higher first).
    CloseRate,
    /// Value of conversions (higher first).
    ValueCaptured,
    /// Conversions (higher first).
    Converted,
    /// SLA compliance (higher first).
    SlaCompliance,
    /// Mean first-contact minutes (lower first).
    AvgFirstContactMinutes,
    /// Leads assigned (higher first).
    Leads,
}

impl LeaderboardMetric {
    /// The metric's value in `v`, if defined.
    pub fn of(self, v: &PerfView) -> Option<f64> {
        match self {
            Self::ConversionRate => v.conversion_rate,
            Self::CloseRate => v.close_rate,
            Self::ValueCaptured => Some(v.value_captured),
            Self::Converted => Some(v.converted as f64),
            Self::SlaCompliance => v.sla_compliance,
            Self::AvgFirstContactMinutes => v.avg_first_contact_minutes,
            Self::Leads => Some(v.leads as f64),
        }
    }

    /// True for rates, which need a minimum number of leads to mean anything.
    pub fn is_rate(self) -> bool {
        matches!(self, Self::ConversionRate | Self::CloseRate | Self::SlaCompliance | Self::AvgFirstContactMinutes)
    }

    /// True when lower is better.
    pub fn ascending(self) -> bool {
        self == Self::AvgFirstContactMinutes
    }
}

/// One leaderboard row.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderboardRow {
    /// 1-based rank.
    pub rank: usize,
    /// Broker.
    pub broker_id: String,
    /// Display name.
    pub name: String,
    /// Group label.
    pub group: Option<String>,
    /// The metric's value.
    pub value: f64,
    /// Leads assigned in the window.
    pub leads: u64,
}

/// One ranked broker in a prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictedCandidate {
    /// Broker.
    pub broker_id: String,
    /// P(convert): the model's when one is active and the strategy is `ml`, else the
    /// empirical-Bayes estimate.
    pub probability: f64,
    /// Total score.
    pub score: f64,
    /// Factors.
    pub breakdown: leadrouter_models::Breakdown,
}

/// `POST /api/routing/predict`: the ranking a decision would use, with nothing reserved.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The lead.
    pub lead_id: String,
    /// Strategy used.
    pub strategy: Strategy,
    /// Model version, when one predicted.
    pub model_version: Option<String>,
    /// Brokers that passed the hard constraints.
    pub eligible: u32,
    /// Brokers ruled out, per reason.
    pub excluded: BTreeMap<Exclusion, u32>,
    /// Candidates that missed the scoring deadline.
    pub skipped: Vec<crate::storage::record::Skipped>,
    /// Scored candidates, best first for `specialty` and `ml`.
    pub candidates: Vec<PredictedCandidate>,
    /// Server-side time in microseconds.
    pub micros: u64,
    /// The moment the hard constraints were checked at.
    pub at: DateTime<Utc>,
    /// Of the brokers named in `availableBrokers`, those that failed a hard constraint.
    pub unavailable: Vec<Unavailable>,
}

/// A broker named in a prediction's `availableBrokers` that failed a hard constraint.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// The broker.
    pub broker_id: String,
    /// The first constraint it failed (an exclusion reason), or `unknownBroker`.
    pub reason: String,
}

/// A broker actor in the admin view.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorSummary {
    /// Broker.
    pub broker_id: String,
    /// Mailbox depth, messages handled, last message, restarts.
    #[serde(flatten)]
    pub counters: crate::counters::ActorCounters,
    /// Capacity state.
    pub state: crate::feed::CapacityState,
}

/// How a quantity is spread over the brokers (population standard deviation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    /// Brokers counted.
    pub brokers: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Gini coefficient (0: even; towards 1: concentrated); `null` when everything is zero.
    pub gini: Option<f64>,
    /// Least.
    pub min: f64,
    /// Most.
    pub max: f64,
}

/// `GET /api/analytics/routing-efficiency`: the cohorts of the window, the brokers' spread and
/// the fairness standings.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EfficiencyView {
    /// Figures per cohort, strategy, group and day, calibration and uplift.
    #[serde(flatten)]
    pub report: crate::storage::analytics::Efficiency,
    /// Utilisation (open leads ÷ effective seats, or daily use ÷ cap, the tighter) now, over
    /// every broker.
    pub utilisation: Spread,
    /// Leads assigned in the window per broker, over every broker.
    pub leads_per_broker: Spread,
    /// Each group's (and bounded broker's) share of the fairness window against its bounds.
    pub fairness: Vec<leadrouter_models::fairness::Standing>,
}

/// The live operations figures a routing manager watches: the queue now, and what happened in
/// the last hour and today (UTC), counted when it happened.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationsView {
    /// When these figures were read.
    pub at: DateTime<Utc>,
    /// Brokers configured.
    pub brokers: usize,
    /// Decisions made since the engine started (for a rate between two reads).
    pub decisions: u64,
    /// Leads waiting for capacity.
    pub queue_length: usize,
    /// How long the longest-waiting of them has waited.
    pub oldest_wait_seconds: Option<f64>,
    /// The last twelve five-minute slots, the current one included.
    pub last_hour: crate::storage::analytics::Activity,
    /// Since midnight UTC.
    pub today: crate::storage::analytics::Activity,
}
