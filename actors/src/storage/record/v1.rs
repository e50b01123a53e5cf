//! Journal format version 1: the frozen wire types of every record, as the journal has written
//! them since version 1, and their conversions to and from the live types.
//!
//! These types are a stored format. They never change: renaming or retyping a field of a live
//! type (the API's, the engine's) changes only the conversion below, and a change to what a
//! record means gets a new version beside this one (with its own golden fixture), never an edit
//! here. `tests/fixtures/journal-v1/` holds segments written in this format; the integration
//! test `golden` replays them.
//!
//! The enums convert with exhaustive matches, so a variant added to a live enum does not compile
//! until this format (or a new one) says how it is written.
//!
//! The journal now writes [version 3](super::v3), a superset of [version 2](super::v2), which
//! is a superset of this one: later versions reuse these payload types where they did not change,
//! and every version-1 record reads as the same later record. This module keeps the version-1
//! record and decision as they were, for the fixture test below; the live types convert only
//! to the payload types later versions still write.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use leadrouter_models as live;
use serde::{Deserialize, Serialize};

/// Mirrors a fieldless enum between this format and the live types, both ways, exhaustively.
macro_rules! mirror_enum_impl {
    ($(#[$m:meta])* $name:ident = $live:path { $($v:ident),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        $(#[$m])*
        #[allow(missing_docs)]
        pub enum $name { $($v),+ }

        impl From<$live> for $name {
            fn from(v: $live) -> Self {
                use $live as L;
                match v { $(L::$v => Self::$v),+ }
            }
        }

        impl From<$name> for $live {
            fn from(v: $name) -> Self {
                use $live as L;
                match v { $($name::$v => L::$v),+ }
            }
        }
    };
}

pub(super) use mirror_enum_impl as mirror_enum;

mirror_enum!(
    /// An insurance line.
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    Line = live::InsuranceLine { Auto, Home, Renters, Life, Health, Commercial, Umbrella }
);
mirror_enum!(
    /// A lead's urgency.
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    Urgency = live::Urgency { Low, Medium, High, Critical }
);
/// A routing strategy as versions 1 and 2 wrote it. Read only: the live enum has gained `roi`
/// (version 3), so only this direction is total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Strategy {
    Specialty,
    Random,
    RoundRobin,
    WeightedRoundRobin,
    Ml,
}

impl From<Strategy> for live::Strategy {
    fn from(v: Strategy) -> Self {
        match v {
            Strategy::Specialty => Self::Specialty,
            Strategy::Random => Self::Random,
            Strategy::RoundRobin => Self::RoundRobin,
            Strategy::WeightedRoundRobin => Self::WeightedRoundRobin,
            Strategy::Ml => Self::Ml,
        }
    }
}
mirror_enum!(
    /// A broker's status.
    #[serde(rename_all = "snake_case")]
    BrokerStatus = live::BrokerStatus { Available, Away, Offline, OutOfOffice }
);
mirror_enum!(
    /// Why a broker was ruled out.
    #[serde(rename_all = "camelCase")]
    Exclusion = live::Exclusion {
        Excluded, NotLicensed, LicenseExpired, MissingSpecialty, Unavailable, OutsideHours, AtCapacity, DailyCapReached
    }
);
mirror_enum!(
    /// A lifecycle event.
    #[serde(rename_all = "snake_case")]
    EventKind = live::EventKind { Accepted, Rejected, TimedOut, Contacted, Converted, Lost, Closed }
);

fn lines(v: &[live::InsuranceLine]) -> Vec<Line> {
    v.iter().map(|&l| l.into()).collect()
}

fn live_lines(v: Vec<Line>) -> Vec<live::InsuranceLine> {
    v.into_iter().map(Into::into).collect()
}

/// One journal record, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Record {
    BrokerUpserted {
        at: DateTime<Utc>,
        broker: Broker,
    },
    BrokerDeleted {
        at: DateTime<Utc>,
        broker_id: String,
    },
    Decided {
        at: DateTime<Utc>,
        decision: Box<Decision>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<DecideRequest>,
    },
    Queued {
        at: DateTime<Utc>,
        request: DecideRequest,
        expires_at: DateTime<Utc>,
    },
    LeadEvent {
        at: DateTime<Utc>,
        lead_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broker_id: Option<String>,
        event: EventKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requeue_expires_at: Option<DateTime<Utc>>,
    },
    QueueExpired {
        at: DateTime<Utc>,
        lead_id: String,
    },
    Archived {
        at: DateTime<Utc>,
        lead_ids: Vec<String>,
    },
}

/// A broker's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Broker {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub specialties: Vec<Specialty>,
    pub licenses: Vec<License>,
    pub capacity: Capacity,
    #[serde(default = "Sla::default_v1")]
    pub sla: Sla,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default = "default_status")]
    pub status: BrokerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_office_until: Option<NaiveDate>,
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub cost_per_lead: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn default_status() -> BrokerStatus {
    BrokerStatus::Available
}

fn default_weight() -> f64 {
    1.0
}

/// A line a broker is skilled in, 1–5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Specialty {
    #[serde(rename = "type")]
    pub line: Line,
    pub proficiency: u8,
}

/// A licence: a state, its lines and its expiry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct License {
    pub state: String,
    pub lines: Vec<Line>,
    pub expires_on: NaiveDate,
}

/// Concurrent and daily limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Capacity {
    pub max_concurrent: u32,
    pub daily_cap: u32,
}

/// Response-time targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Sla {
    pub first_contact_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgent_first_contact_minutes: Option<u32>,
    pub accept_timeout_seconds: u32,
}

impl Sla {
    /// What version 1 read when a broker had no `sla`.
    fn default_v1() -> Self {
        Self { first_contact_minutes: 60, urgent_first_contact_minutes: None, accept_timeout_seconds: 300 }
    }
}

/// Weekly working hours in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Schedule {
    pub timezone: String,
    pub hours: BTreeMap<String, [String; 2]>,
}

/// A decide request as the lead was first seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DecideRequest {
    pub lead_id: String,
    pub lead_data: LeadData,
    #[serde(default)]
    pub exclude_brokers: Vec<String>,
    #[serde(default)]
    pub require_specialties: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// The lead's own data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LeadData {
    pub insurance_types: Vec<Line>,
    #[serde(default = "default_urgency")]
    pub urgency: Urgency,
    pub state: String,
    pub estimated_value: f64,
    #[serde(default = "default_complexity")]
    pub complexity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geographic_location: Option<GeographicLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_info: Option<PersonalInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Requirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

fn default_urgency() -> Urgency {
    Urgency::Medium
}

fn default_complexity() -> i64 {
    5
}

/// Where the customer is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct GeographicLocation {
    pub state: Option<String>,
    pub city: Option<String>,
}

/// Who the customer is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PersonalInfo {
    pub age: Option<u32>,
    pub income: Option<f64>,
    pub profession: Option<String>,
}

/// The customer's current cover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Coverage {
    pub current_provider: Option<String>,
    pub claims: Option<u32>,
}

/// What the customer asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Requirements {
    #[serde(default)]
    pub special_features: Vec<String>,
    pub budget: Option<f64>,
}

/// A routing decision. `leadLines` is the bit mask of the lead's lines (bit i = the i-th of
/// AUTO, HOME, RENTERS, LIFE, HEALTH, COMMERCIAL, UMBRELLA).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Decision {
    pub decision_id: String,
    pub lead_id: String,
    pub broker_id: String,
    pub lead_state: String,
    pub lead_lines: u8,
    pub status: String,
    pub strategy: Strategy,
    pub score: f64,
    pub breakdown: Breakdown,
    pub alternatives: Vec<Alternative>,
    pub excluded: BTreeMap<Exclusion, u32>,
    pub skipped: Vec<Skipped>,
    pub eligible: u32,
    pub scored: u32,
    pub propensity: f64,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerouted_from: Option<String>,
    pub decided_at: DateTime<Utc>,
    pub accept_deadline: DateTime<Utc>,
    pub sla_target_minutes: u32,
    pub decision_micros: u64,
    pub model_version: Option<String>,
}

/// A scored broker that was not chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Alternative {
    pub broker_id: String,
    pub score: f64,
    pub breakdown: Breakdown,
}

/// A candidate that did not answer in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Skipped {
    pub broker_id: String,
    pub reason: String,
}

/// One factor of the score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Factor {
    pub value: f64,
    pub weight: f64,
    pub contribution: f64,
}

/// A candidate's score, factor by factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Breakdown {
    pub specialty: Factor,
    pub performance: Factor,
    pub capacity: Factor,
    pub sla: Factor,
    pub conversion: f64,
    pub conversion_source: String,
    pub value_per_conversion: f64,
    pub avg_first_contact_minutes: f64,
    pub raw_performance: f64,
}

// ----- from the live types ------------------------------------------------------------------

impl From<&live::Broker> for Broker {
    fn from(b: &live::Broker) -> Self {
        Self {
            id: b.id.clone(),
            name: b.name.clone(),
            specialties: b.specialties.iter().map(|s| Specialty { line: s.line.into(), proficiency: s.proficiency }).collect(),
            licenses: b
                .licenses
                .iter()
                .map(|l| License { state: l.state.clone(), lines: lines(&l.lines), expires_on: l.expires_on })
                .collect(),
            capacity: Capacity { max_concurrent: b.capacity.max_concurrent, daily_cap: b.capacity.daily_cap },
            sla: Sla {
                first_contact_minutes: b.sla.first_contact_minutes,
                urgent_first_contact_minutes: b.sla.urgent_first_contact_minutes,
                accept_timeout_seconds: b.sla.accept_timeout_seconds,
            },
            schedule: b.schedule.as_ref().map(|s| Schedule { timezone: s.timezone.clone(), hours: s.hours.clone() }),
            status: b.status.into(),
            out_of_office_until: b.out_of_office_until,
            weight: b.weight,
            cost_per_lead: b.cost_per_lead,
            group: b.group.clone(),
        }
    }
}

impl From<&live::LeadData> for LeadData {
    fn from(d: &live::LeadData) -> Self {
        Self {
            insurance_types: lines(&d.insurance_types),
            urgency: d.urgency.into(),
            state: d.state.clone(),
            estimated_value: d.estimated_value,
            complexity: d.complexity,
            geographic_location: d
                .geographic_location
                .as_ref()
                .map(|g| GeographicLocation { state: g.state.clone(), city: g.city.clone() }),
            personal_info: d.personal_info.as_ref().map(|p| PersonalInfo {
                age: p.age,
                income: p.income,
                profession: p.profession.clone(),
            }),
            coverage: d.coverage.as_ref().map(|c| Coverage { current_provider: c.current_provider.clone(), claims: c.claims }),
            requirements: d.requirements.as_ref().map(|q| Requirements { special_features: q.special_features.clone(), budget: q.budget }),
            notes: d.notes.clone(),
            customer_id: d.customer_id.clone(),
        }
    }
}

// ----- to the live types --------------------------------------------------------------------

impl From<Broker> for live::Broker {
    fn from(b: Broker) -> Self {
        Self {
            id: b.id,
            name: b.name,
            specialties: b.specialties.into_iter().map(|s| live::Specialty { line: s.line.into(), proficiency: s.proficiency }).collect(),
            licenses: b
                .licenses
                .into_iter()
                .map(|l| live::License { state: l.state, lines: live_lines(l.lines), expires_on: l.expires_on })
                .collect(),
            capacity: live::Capacity { max_concurrent: b.capacity.max_concurrent, daily_cap: b.capacity.daily_cap },
            sla: live::Sla {
                first_contact_minutes: b.sla.first_contact_minutes,
                urgent_first_contact_minutes: b.sla.urgent_first_contact_minutes,
                accept_timeout_seconds: b.sla.accept_timeout_seconds,
            },
            schedule: b.schedule.map(|s| live::Schedule { timezone: s.timezone, hours: s.hours }),
            status: b.status.into(),
            out_of_office_until: b.out_of_office_until,
            weight: b.weight,
            cost_per_lead: b.cost_per_lead,
            group: b.group,
            bio: None,
        }
    }
}

impl From<DecideRequest> for live::DecideRequest {
    fn from(r: DecideRequest) -> Self {
        let d = r.lead_data;
        Self {
            lead_id: r.lead_id,
            lead_data: live::LeadData {
                insurance_types: live_lines(d.insurance_types),
                urgency: d.urgency.into(),
                state: d.state,
                estimated_value: d.estimated_value,
                complexity: d.complexity,
                geographic_location: d.geographic_location.map(|g| live::lead::GeographicLocation { state: g.state, city: g.city }),
                personal_info: d.personal_info.map(|p| live::lead::PersonalInfo { age: p.age, income: p.income, profession: p.profession }),
                coverage: d.coverage.map(|c| live::lead::Coverage { current_provider: c.current_provider, claims: c.claims }),
                requirements: d.requirements.map(|q| live::lead::Requirements { special_features: q.special_features, budget: q.budget }),
                notes: d.notes,
                customer_id: d.customer_id,
            },
            exclude_brokers: r.exclude_brokers,
            require_specialties: live_lines(r.require_specialties),
            strategy: r.strategy.map(Into::into),
            exploration: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading a stored record with these types and writing it again gives the same bytes (the
    /// types are what version 1 wrote); so does reading it into the live types and writing it
    /// in the current version (the conversions lose nothing, and later versions write a
    /// version-1 record's content as version 1 did).
    #[test]
    fn every_stored_record_round_trips_byte_for_byte() {
        let records = super::super::fixture_records(1);
        assert_eq!(records.len(), 33);
        let mut kinds = std::collections::BTreeSet::new();
        for json in &records {
            let rec: Record = serde_json::from_slice(json).unwrap();
            let again = serde_json::to_vec(&rec).unwrap();
            assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(json));
            let rec: super::super::Record = serde_json::from_slice(json).unwrap();
            let again = serde_json::to_vec(&rec).unwrap();
            assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(json));
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            kinds.insert(v["type"].as_str().unwrap().to_string());
        }
        let all = ["archived", "broker_deleted", "broker_upserted", "decided", "lead_event", "queue_expired", "queued"];
        assert_eq!(kinds.iter().map(String::as_str).collect::<Vec<_>>(), all);
    }

    /// A broker written before optional fields existed reads with version 1's defaults.
    #[test]
    fn missing_optional_fields_take_version_1_defaults() {
        let json = r#"{"type":"broker_upserted","at":"2026-01-01T00:00:00Z","broker":{"id":"b","name":"B","licenses":[],"capacity":{"maxConcurrent":1,"dailyCap":2}}}"#;
        let Record::BrokerUpserted { broker, .. } = serde_json::from_str::<Record>(json).unwrap() else { panic!("broker") };
        assert_eq!((broker.status, broker.weight, broker.cost_per_lead), (BrokerStatus::Available, 1.0, 0.0));
        assert_eq!((broker.sla.first_contact_minutes, broker.sla.accept_timeout_seconds), (60, 300));
    }
}
