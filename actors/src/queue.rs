//! The waiting line for leads no broker could take: ordered by urgency, then value, then age.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use leadrouter_models::Urgency;

use crate::storage::state::LeadRecord;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    urgency: Reverse<u8>,
    value_cents: Reverse<i64>,
    since: DateTime<Utc>,
    lead_id: String,
}

/// Queued leads in priority order.
#[derive(Default, Debug)]
pub struct LeadQueue {
    set: BTreeSet<Key>,
    keys: HashMap<String, Key>,
}

impl LeadQueue {
    /// Puts `lead` in its place: by its request's urgency and value, waiting since it last
    /// entered the queue.
    pub fn push_lead(&mut self, lead: &LeadRecord) {
        let d = &lead.request.lead_data;
        self.push(&lead.lead_id, d.urgency, d.estimated_value, lead.queued_at.unwrap_or(lead.created_at));
    }

    /// Puts `lead_id` in its place (again, if it was there).
    pub fn push(&mut self, lead_id: &str, urgency: Urgency, value: f64, since: DateTime<Utc>) {
        self.remove(lead_id);
        let key = Key {
            urgency: Reverse(urgency.rank()),
            value_cents: Reverse((value * 100.0).round() as i64),
            since,
            lead_id: lead_id.to_string(),
        };
        self.set.insert(key.clone());
        self.keys.insert(lead_id.to_string(), key);
    }

    /// Removes a lead; true if it was queued.
    pub fn remove(&mut self, lead_id: &str) -> bool {
        match self.keys.remove(lead_id) {
            Some(k) => self.set.remove(&k),
            None => false,
        }
    }

    /// 1-based position, if queued.
    pub fn position(&self, lead_id: &str) -> Option<usize> {
        let key = self.keys.get(lead_id)?;
        Some(self.set.range(..key).count() + 1)
    }

    /// Leads waiting.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Since when the longest-waiting lead waits.
    pub fn oldest_since(&self) -> Option<DateTime<Utc>> {
        self.keys.values().map(|k| k.since).min()
    }

    /// Lead ids, highest priority first.
    pub fn ordered(&self) -> Vec<String> {
        self.set.iter().map(|k| k.lead_id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn urgency_then_value_then_age() {
        let t = Utc::now();
        let mut q = LeadQueue::default();
        q.push("old-low", Urgency::Low, 10.0, t);
        q.push("new-crit", Urgency::Critical, 1.0, t + Duration::seconds(5));
        q.push("rich-med", Urgency::Medium, 900.0, t + Duration::seconds(2));
        q.push("poor-med", Urgency::Medium, 5.0, t);
        q.push("poor-med-2", Urgency::Medium, 5.0, t + Duration::seconds(1));
        assert_eq!(q.ordered(), vec!["new-crit", "rich-med", "poor-med", "poor-med-2", "old-low"]);
        assert_eq!(q.position("poor-med-2"), Some(4));
        assert!(q.remove("rich-med"));
        assert!(!q.remove("rich-med"));
        assert_eq!(q.position("poor-med-2"), Some(3));
        assert_eq!(q.len(), 4);
    }
}
