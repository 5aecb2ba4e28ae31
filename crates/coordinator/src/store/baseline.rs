//! Identity records loaded without an event (#17): the people already
//! employed, so that a first reconciliation correlates existing accounts
//! instead of calling them orphans. Nothing is planned or provisioned.
//!
//! A baseline record has `event_id` `baseline:<source system>` and
//! `effective_at` 0, so any event of the person is newer and replaces it;
//! a record an event already set is never replaced by a baseline (it is
//! counted unchanged). Written by each backend's writer in one transaction
//! with its audit record.

use std::collections::BTreeMap;

/// One identity record to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineIdentity {
    /// The person.
    pub person_id: String,
    /// The person's attributes.
    pub attributes: BTreeMap<String, String>,
    /// The system the record comes from.
    pub source_system: String,
}

/// The `event_id` of a baseline record.
pub fn baseline_event_id(source_system: &str) -> String {
    format!("{BASELINE_PREFIX}{source_system}")
}

/// The prefix of a baseline record's `event_id`.
pub const BASELINE_PREFIX: &str = "baseline:";

/// What the writer does with one record, given the stored one's
/// `(event_id, attributes)`.
pub(crate) fn decide(stored: Option<(String, BTreeMap<String, String>)>, record: &BaselineIdentity) -> Decision {
    match stored {
        None => Decision::Write,
        Some((event_id, _)) if !event_id.starts_with(BASELINE_PREFIX) => Decision::Keep,
        Some((event_id, attributes))
            if attributes == record.attributes && event_id == baseline_event_id(&record.source_system) =>
        {
            Decision::Keep
        }
        Some(_) => Decision::Write,
    }
}

/// See [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Insert or replace the record.
    Write,
    /// Leave the stored record (equal, or set by an event).
    Keep,
}

/// The upsert, in numbered placeholders both backends accept:
/// person_id, attributes, event_id, has_left, updated_at.
pub(crate) const UPSERT: &str = "INSERT INTO identities (person_id, attributes, effective_at, event_id, has_left, \
     targets, updated_at) VALUES ($1, $2, 0, $3, $4, '[]', $5) ON CONFLICT (person_id) DO UPDATE SET \
     attributes = excluded.attributes, effective_at = 0, event_id = excluded.event_id, has_left = excluded.has_left, \
     targets = '[]', updated_at = excluded.updated_at";

/// The stored record of one person.
pub(crate) const SELECT: &str = "SELECT event_id, attributes FROM identities WHERE person_id = $1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_win_over_baselines_and_equal_records_are_kept() {
        let record = BaselineIdentity {
            person_id: "p".into(),
            attributes: BTreeMap::from([("email".into(), "a@x".into())]),
            source_system: "hr".into(),
        };
        assert_eq!(decide(None, &record), Decision::Write);
        assert_eq!(decide(Some(("evt-1".into(), BTreeMap::new())), &record), Decision::Keep);
        assert_eq!(decide(Some(("baseline:hr".into(), record.attributes.clone())), &record), Decision::Keep);
        assert_eq!(decide(Some(("baseline:hr".into(), BTreeMap::new())), &record), Decision::Write);
    }
}
