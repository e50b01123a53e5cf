//! Lead lifecycle: states, events and the legal transitions between them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Where a lead is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadState {
    /// Waiting for capacity.
    Queued,
    /// Given to a broker who has not accepted yet.
    Reserved,
    /// The broker took it.
    Accepted,
    /// The broker reached the customer.
    Contacted,
    /// The customer bought.
    Converted,
    /// The customer did not buy.
    Lost,
    /// Finished; capacity freed.
    Closed,
    /// Waited in the queue past its expiry.
    Expired,
}

impl LeadState {
    /// Every state.
    pub const ALL: [LeadState; 8] =
        [Self::Queued, Self::Reserved, Self::Accepted, Self::Contacted, Self::Converted, Self::Lost, Self::Closed, Self::Expired];

    /// The wire name, e.g. `reserved`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Reserved => "reserved",
            Self::Accepted => "accepted",
            Self::Contacted => "contacted",
            Self::Converted => "converted",
            Self::Lost => "lost",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }

    /// True while the lead holds a slot of its broker's capacity.
    pub fn holds_capacity(self) -> bool {
        matches!(self, Self::Reserved | Self::Accepted | Self::Contacted | Self::Converted | Self::Lost)
    }

    /// True once nothing more can happen to the lead (closed, or expired in the queue).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Expired)
    }
}

/// Something that happened to a lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The broker accepts the reservation.
    Accepted,
    /// The broker declines; the lead is re-routed.
    Rejected,
    /// The broker did not accept in time; the lead is re-routed (recorded by the engine only).
    TimedOut,
    /// First contact with the customer.
    Contacted,
    /// Sale; carries a value.
    Converted,
    /// No sale.
    Lost,
    /// Done; frees the broker's capacity.
    Closed,
}

impl EventKind {
    /// Every event.
    pub const ALL: [EventKind; 7] =
        [Self::Accepted, Self::Rejected, Self::TimedOut, Self::Contacted, Self::Converted, Self::Lost, Self::Closed];

    /// The wire name, e.g. `timed_out`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::TimedOut => "timed_out",
            Self::Contacted => "contacted",
            Self::Converted => "converted",
            Self::Lost => "lost",
            Self::Closed => "closed",
        }
    }
}

/// What an event does to a lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Moves to this state.
    To(LeadState),
    /// Frees the broker and sends the lead back to routing.
    Reroute,
}

/// The legal transitions; `None` means the event is illegal in that state.
pub fn transition(state: LeadState, event: EventKind) -> Option<Transition> {
    use EventKind as E;
    use LeadState as S;
    Some(match (state, event) {
        (S::Reserved, E::Accepted) => Transition::To(S::Accepted),
        (S::Reserved, E::Rejected | E::TimedOut) => Transition::Reroute,
        (S::Accepted, E::Contacted) => Transition::To(S::Contacted),
        (S::Contacted, E::Converted) => Transition::To(S::Converted),
        (S::Accepted | S::Contacted, E::Lost) => Transition::To(S::Lost),
        (S::Queued | S::Reserved | S::Accepted | S::Contacted | S::Converted | S::Lost, E::Closed) => Transition::To(S::Closed),
        _ => return None,
    })
}

/// `POST /api/leads/{leadId}/events` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadEventRequest {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When; now when absent.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Policy value, for `converted` (defaults to the lead's estimated value), 0 to
    /// 1,000,000,000.
    #[serde(default)]
    pub value: Option<f64>,
}

impl LeadEventRequest {
    /// Checks what can be checked without the lead: the type is one callers may send, the value
    /// is a non-negative number given only with `converted`, and `at` is not in the future.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<()> {
        if self.kind == EventKind::TimedOut {
            return Err(ModelError::invalid("type", "timed_out is recorded by the engine, not sent by callers"));
        }
        if let Some(v) = self.value {
            if self.kind != EventKind::Converted {
                return Err(ModelError::invalid("value", "is only accepted with type converted"));
            }
            crate::lead::check_amount("value", Some(v))?;
        }
        if let Some(at) = self.at {
            if at > now + chrono::Duration::seconds(60) {
                return Err(ModelError::invalid("at", "must not be in the future"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [LeadState; 8] = LeadState::ALL;

    #[test]
    fn names_are_the_wire_names() {
        for s in LeadState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for e in EventKind::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), e.name());
        }
    }

    #[test]
    fn happy_path() {
        let mut s = LeadState::Reserved;
        for (e, want) in [
            (EventKind::Accepted, LeadState::Accepted),
            (EventKind::Contacted, LeadState::Contacted),
            (EventKind::Converted, LeadState::Converted),
            (EventKind::Closed, LeadState::Closed),
        ] {
            s = match transition(s, e) {
                Some(Transition::To(n)) => n,
                other => panic!("{e:?} from {s:?}: {other:?}"),
            };
            assert_eq!(s, want);
        }
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for e in [EventKind::Accepted, EventKind::Rejected, EventKind::Contacted, EventKind::Converted, EventKind::Lost, EventKind::Closed]
        {
            assert_eq!(transition(LeadState::Closed, e), None);
            assert_eq!(transition(LeadState::Expired, e), None);
        }
    }

    #[test]
    fn reroute_only_from_reserved() {
        for s in STATES {
            let r = transition(s, EventKind::Rejected);
            assert_eq!(r == Some(Transition::Reroute), s == LeadState::Reserved, "{s:?}");
        }
    }

    #[test]
    fn capacity_is_held_until_closed() {
        for s in STATES {
            let can_close = matches!(transition(s, EventKind::Closed), Some(Transition::To(LeadState::Closed)));
            // Every state that holds capacity can be closed to free it.
            if s.holds_capacity() {
                assert!(can_close, "{s:?}");
            }
        }
    }

    #[test]
    fn event_validation() {
        let now = Utc::now();
        let bad = LeadEventRequest { kind: EventKind::Lost, at: None, value: Some(5.0) };
        assert!(matches!(bad.validate(now), Err(ModelError::Invalid { field, .. }) if field == "value"));
        let future = LeadEventRequest { kind: EventKind::Accepted, at: Some(now + chrono::Duration::hours(1)), value: None };
        assert!(matches!(future.validate(now), Err(ModelError::Invalid { field, .. }) if field == "at"));
        let internal = LeadEventRequest { kind: EventKind::TimedOut, at: None, value: None };
        assert!(internal.validate(now).is_err());
    }
}
