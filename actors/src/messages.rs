//! Every message the actors of this crate exchange, documented in one place.

use std::sync::Arc;

use actix::Message;
use chrono::{DateTime, Utc};
use leadrouter_models::{Broker, BrokerFeatures, Exclusion, LeadFeatures, Priors, ScoreInputs, Urgency};
use serde::Serialize;

use crate::storage::record::Record;
use crate::storage::state::{BrokerLive, PerfCounters};

/// Asks a candidate broker for its scoring inputs for one lead.
///
/// Answers `None` when the broker cannot take the lead right now (capacity, daily cap or status
/// changed since the index was read).
#[derive(Message)]
#[rtype(result = "Option<ScoreReply>")]
pub struct Score {
    /// The lead's features, computed once per decision.
    pub lead: Arc<LeadFeatures>,
    /// Population priors for smoothing.
    pub priors: Priors,
    /// Decision time.
    pub now: DateTime<Utc>,
    /// Also compute the model's broker features (strategy `ml` or `roi` with an active model).
    pub with_features: bool,
    /// Also read the broker's evidence for strategy `roi`.
    pub with_evidence: bool,
}

/// A candidate's answer to [`Score`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreReply {
    /// Inputs of the scoring formula.
    pub inputs: ScoreInputs,
    /// Inputs of the conversion model, when asked for.
    pub features: Option<BrokerFeatures>,
    /// What its history and load say about the lead (strategy `roi`), when asked for.
    pub evidence: Option<leadrouter_models::roi::Evidence>,
    /// Open leads ÷ effective seats, before taking the lead (the overload check).
    pub load: f64,
}

/// What a broker promises when it takes a reservation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reservation {
    /// Accept before this or the lead is re-routed.
    pub accept_deadline: DateTime<Utc>,
    /// First-contact target in minutes.
    pub sla_minutes: u32,
}

/// Asks the broker to check and take a slot for a lead. The broker alone decides; on success
/// its live state already holds the lead.
#[derive(Message)]
#[rtype(result = "Result<Reservation, Exclusion>")]
pub struct Reserve {
    /// The lead.
    pub lead_id: String,
    /// The lead's state (USPS code).
    pub lead_state: String,
    /// The lead's lines.
    pub lines: leadrouter_models::LineSet,
    /// Lead urgency (chooses the SLA target).
    pub urgency: Urgency,
    /// Decision time.
    pub at: DateTime<Utc>,
}

/// Undoes a reservation whose decision could not be journaled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    /// The lead.
    pub lead_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Applies a journaled lifecycle event for a lead the broker holds.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Apply(pub Arc<Record>);

/// Replaces the broker's configuration (status and capacity take effect at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateConfig(pub Arc<Broker>);

/// A copy of a broker actor's live state.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveView {
    /// Configuration.
    #[schema(value_type = Broker)]
    pub broker: Arc<Broker>,
    /// Live state.
    pub live: BrokerLive,
    /// Mailbox depth, messages handled, last message, restarts.
    pub counters: crate::counters::ActorCounters,
}

/// Asks for a copy of the live state.
#[derive(Message)]
#[rtype(result = "LiveView")]
pub struct Inspect;

/// A broker's performance over all time and a recent window.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceCounters {
    /// All-time counters.
    pub all_time: PerfCounters,
    /// Counters over the last `window_days` UTC days.
    pub recent: PerfCounters,
    /// Days in the recent window.
    pub window_days: i64,
    /// Open leads now.
    pub open: u32,
    /// Leads counted against today's cap.
    pub daily_used: u32,
}

/// Asks for performance counters.
#[derive(Message)]
#[rtype(result = "PerformanceCounters")]
pub struct Performance {
    /// End of the recent window.
    pub now: DateTime<Utc>,
    /// Days in the recent window.
    pub window_days: i64,
}

/// Restarts the actor through its supervisor; its state is kept.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

/// Cancels the actor's acceptance-deadline wake-up. An engine whose actors run on its owner's
/// thread sends it on shutdown: a pending wake-up would keep the actor alive after the owner has
/// dropped every handle.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disarm;

/// Diagnostic: makes the handler panic, to exercise restart with state intact.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

/// What broker actors tell the router supervisor on their own initiative.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A reservation was not accepted before its deadline.
    AcceptTimeout {
        /// Broker holding the reservation.
        broker_id: String,
        /// The lead.
        lead_id: String,
        /// When the reservation was taken (identifies it).
        reserved_at: DateTime<Utc>,
    },
    /// Adaptive throttling calls for a step (`BrokerLive::throttle_step`).
    Throttle {
        /// The broker.
        broker_id: String,
        /// Seats to withhold from now.
        withheld: u32,
        /// The recent SLA compliance behind it.
        sla_compliance: f64,
    },
}

/// Asks the broker to stop taking leads for good (before deletion). Refused with the number of
/// open leads when it still holds any.
#[derive(Message)]
#[rtype(result = "Result<(), u32>")]
pub struct Retire;
