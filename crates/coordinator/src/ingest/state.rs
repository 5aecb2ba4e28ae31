//! State-based submit, the pure part: a person's record as the source of
//! truth holds it ([`SourceRecord`]), what the coordinator knew of the person
//! before ([`Prior`]), and the lifecycle event the difference means
//! ([`derive`]): joiner, mover, leaver, rehire or nothing.
//!
//! - A record is *terminated* when its employment status says so, or when it
//!   carries a termination date (a termination in the future waits until
//!   then). A hire date after the termination date is refused: the record
//!   contradicts itself, and nothing is applied.
//! - Effective times: a joiner's or rehire's hire date, a leaver's
//!   termination date, when in the future; a date in the past means now, so a
//!   retroactive termination is never ordered behind (and superseded by) a
//!   change already applied.
//! - The event id is derived from the record's canonical hash and the hash of
//!   the record it follows: the same record sent twice is one event, and a
//!   person moving back to an earlier record is a new one.
//! - Employment statuses other than `active` and `terminated` (leave of
//!   absence, pre-hire, ...) are refused: they become their own events once
//!   the calendar maps them ([`map_status`] is the hook).

use std::collections::BTreeMap;

use jml_contract::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{InvalidEvent, parse_time, validate};
use crate::policy::{EventKindName, Policy};

/// Whether the person works for the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Employment {
    /// Employed.
    Active,
    /// Left (or leaving on the termination date).
    Terminated,
}

/// A person's record as the source sent it, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The person.
    pub person_id: String,
    /// The source system.
    pub source_system: String,
    /// The whole attribute set.
    pub attributes: BTreeMap<String, String>,
    /// The employment status as sent (lowercase).
    pub employment_status: String,
    /// What the record means.
    pub employment: Employment,
    /// The hire date (Unix ms).
    pub hire_at: Option<i64>,
    /// The termination date (Unix ms).
    pub terminated_at: Option<i64>,
    /// The source's change time (Unix ms).
    pub changed_at: Option<i64>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidEvent {
    InvalidEvent { field: field.into(), message: message.into() }
}

/// The hook where HR employment statuses become what the record means.
/// `leave`, `suspended`, `pre-hire` and the like are refused until the
/// calendar's events (suspension, return, pre-hire) exist to carry them.
pub fn map_status(status: &str) -> Result<Employment, String> {
    match status {
        "active" => Ok(Employment::Active),
        "terminated" => Ok(Employment::Terminated),
        "" => Err("is required (active or terminated)".into()),
        other => Err(format!(
            "{:?} is not mapped to a lifecycle event (active or terminated)",
            connector_kit::validate::printable(other)
        )),
    }
}

/// Parses a date: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
pub fn parse_date(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    if bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-' {
        return parse_time(&format!("{text}T00:00:00Z"));
    }
    parse_time(text)
}

fn optional_date(field: &str, text: &str) -> Result<Option<i64>, InvalidEvent> {
    if text.is_empty() { Ok(None) } else { parse_date(text).map(Some).map_err(|message| invalid(field, message)) }
}

/// Validates a record against the same limits and policy as an event
/// (`record.*` fields in errors).
pub fn parse_record(record: &pb::PersonRecord, policy: &Policy) -> Result<SourceRecord, InvalidEvent> {
    let as_event = pb::LifecycleEvent {
        event_id: "state".into(),
        kind: pb::EventKind::Joiner as i32,
        person_id: record.person_id.clone(),
        attributes: record.attributes.clone(),
        source_system: record.source_system.clone(),
        ..Default::default()
    };
    let valid =
        validate(Some(&as_event), policy).map_err(|e| invalid(e.field.replacen("event.", "record.", 1), e.message))?;
    let employment_status = record.employment_status.trim().to_ascii_lowercase();
    let status = map_status(&employment_status).map_err(|m| invalid("record.employment_status", m))?;
    let hire_at = optional_date("record.hire_date", &record.hire_date)?;
    let terminated_at = optional_date("record.termination_date", &record.termination_date)?;
    let changed_at = if record.changed_at.is_empty() {
        None
    } else {
        Some(parse_time(&record.changed_at).map_err(|m| invalid("record.changed_at", m))?)
    };
    if let (Some(end), Some(start)) = (terminated_at, hire_at)
        && start > end
    {
        return Err(invalid(
            "record.hire_date",
            format!(
                "{:?} is after the termination date {:?}: a record cannot end before it starts (a rehire's record \
                 carries no termination date, or one after the new hire date); nothing was applied",
                record.hire_date, record.termination_date
            ),
        ));
    }
    let terminated_by_date = match (terminated_at, hire_at) {
        (Some(end), Some(start)) => end >= start,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let employment = if status == Employment::Terminated || terminated_by_date {
        Employment::Terminated
    } else {
        Employment::Active
    };
    Ok(SourceRecord {
        person_id: valid.person_id,
        source_system: valid.source_system,
        attributes: valid.attributes,
        employment_status,
        employment,
        hire_at,
        terminated_at,
        changed_at,
    })
}

impl SourceRecord {
    /// The record a full snapshot implies for a person it does not name: left
    /// now, attributes as last known.
    pub fn missing_from_snapshot(person_id: &str, source_system: &str) -> Self {
        Self {
            person_id: person_id.to_owned(),
            source_system: source_system.to_owned(),
            attributes: BTreeMap::new(),
            employment_status: "missing_from_snapshot".into(),
            employment: Employment::Terminated,
            hire_at: None,
            terminated_at: None,
            changed_at: None,
        }
    }

    /// The SHA-256 of the record's canonical JSON.
    pub fn digest(&self) -> Digest32 {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&canonical).into()
    }

    /// The hex SHA-256 of the record's canonical JSON.
    pub fn hash(&self) -> String {
        hex::encode(self.digest())
    }
}

/// A SHA-256 digest, kept as bytes (a roster of 100,000 people holds one or
/// two per person).
pub type Digest32 = [u8; 32];

/// A record hash as stored (64 hex digits) back to its bytes.
pub fn parse_hash(hex_text: &str) -> Option<Digest32> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut digest).ok().map(|()| digest)
}

/// The digest of an attribute set (its canonical JSON: the map is sorted),
/// which is all [`derive`] needs of a prior's attributes.
pub fn attributes_digest(attributes: &BTreeMap<String, String>) -> Digest32 {
    let canonical = serde_json::to_vec(attributes).unwrap_or_default();
    Sha256::digest(&canonical).into()
}

/// What the coordinator knew of the person before this record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// Employed or left.
    pub employment: Employment,
    /// The digest of the attributes then ([`attributes_digest`]).
    pub attributes: Digest32,
    /// The change time of the last record accepted from the source.
    pub changed_at: Option<i64>,
    /// The hash of the last record accepted from the source (none when the
    /// person is known only from events or a baseline).
    pub record_hash: Option<Digest32>,
}

/// What a record means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derived {
    /// A lifecycle event, effective at this time (`None`: now).
    Event {
        /// Joiner, mover, leaver or rehire.
        kind: EventKindName,
        /// When it takes effect.
        effective_at: Option<i64>,
    },
    /// Nothing changed for the person.
    Unchanged(&'static str),
    /// Nothing to do.
    Ignored(&'static str),
}

/// A date in the future, else now (`None`).
fn future(date: Option<i64>, now: i64) -> Option<i64> {
    date.filter(|at| *at > now)
}

/// Whether the record is older than the one last accepted (by the source's
/// change time): it must not undo it.
pub fn is_stale(record: &SourceRecord, prior: Option<&Prior>) -> bool {
    matches!((record.changed_at, prior.and_then(|p| p.changed_at)), (Some(new), Some(old)) if new < old)
}

/// The event a record means, given what was known before.
pub fn derive(record: &SourceRecord, prior: Option<&Prior>, now: i64) -> Derived {
    use Employment::{Active, Terminated};
    match (prior.map(|p| p.employment), record.employment) {
        (None, Active) => Derived::Event { kind: EventKindName::Joiner, effective_at: future(record.hire_at, now) },
        (None, Terminated) => Derived::Ignored("a terminated record of a person never known: nothing to remove"),
        (Some(Terminated), Active) => {
            Derived::Event { kind: EventKindName::Rehire, effective_at: future(record.hire_at, now) }
        }
        (Some(Terminated), Terminated) => Derived::Unchanged("the person has already left"),
        (Some(Active), Terminated) => {
            Derived::Event { kind: EventKindName::Leaver, effective_at: future(record.terminated_at, now) }
        }
        (Some(Active), Active) => {
            if prior.is_some_and(|p| p.attributes == attributes_digest(&record.attributes)) {
                Derived::Unchanged("the attributes are the same")
            } else {
                Derived::Event { kind: EventKindName::Mover, effective_at: None }
            }
        }
    }
}

/// The derived event's id: from the source, the person, the record and the
/// record it follows. 43 bytes, `st-` and 40 hex digits.
pub fn event_id(record: &SourceRecord, record_hash: &str, prior: Option<&Prior>) -> String {
    let prior_hash = prior.and_then(|p| p.record_hash).map_or_else(|| "-".to_owned(), hex::encode);
    let mut digest = Sha256::new();
    digest.update(b"jml-state-v1\n");
    for part in [record.source_system.as_str(), record.person_id.as_str(), record_hash, prior_hash.as_str()] {
        digest.update(part.as_bytes());
        digest.update(b"\n");
    }
    let hash = hex::encode(digest.finalize());
    format!("st-{}", &hash[..40])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Employment, department: &str) -> SourceRecord {
        SourceRecord {
            person_id: "p1".into(),
            source_system: "workday".into(),
            attributes: BTreeMap::from([("department".into(), department.into())]),
            employment_status: "active".into(),
            employment: status,
            hire_at: None,
            terminated_at: None,
            changed_at: Some(1_000),
        }
    }

    fn prior_of(record: &SourceRecord) -> Prior {
        Prior {
            employment: record.employment,
            attributes: attributes_digest(&record.attributes),
            changed_at: record.changed_at,
            record_hash: Some(record.digest()),
        }
    }

    #[test]
    fn derivations() {
        let active = record(Employment::Active, "Sales");
        assert!(matches!(derive(&active, None, 0), Derived::Event { kind: EventKindName::Joiner, .. }));
        let prior = prior_of(&active);
        assert!(matches!(derive(&active, Some(&prior), 0), Derived::Unchanged(_)));
        let moved = record(Employment::Active, "Engineering");
        assert!(matches!(derive(&moved, Some(&prior), 0), Derived::Event { kind: EventKindName::Mover, .. }));
        let mut left = record(Employment::Terminated, "Sales");
        left.terminated_at = Some(5_000);
        assert_eq!(
            derive(&left, Some(&prior), 0),
            Derived::Event { kind: EventKindName::Leaver, effective_at: Some(5_000) }
        );
        // A termination date in the past means now.
        assert_eq!(
            derive(&left, Some(&prior), 6_000),
            Derived::Event { kind: EventKindName::Leaver, effective_at: None }
        );
        let gone = prior_of(&left);
        assert!(matches!(derive(&active, Some(&gone), 0), Derived::Event { kind: EventKindName::Rehire, .. }));
        assert!(matches!(derive(&left, None, 0), Derived::Ignored(_)));
    }

    #[test]
    fn ids_follow_record_and_prior() {
        let a = record(Employment::Active, "Sales");
        let b = record(Employment::Active, "Engineering");
        let first = event_id(&a, &a.hash(), None);
        assert_eq!(first, event_id(&a, &a.hash(), None));
        assert_ne!(first, event_id(&a, &a.hash(), Some(&prior_of(&b))));
        assert_eq!(first.len(), 43);
    }

    #[test]
    fn stale_records_are_older_ones() {
        let newer = record(Employment::Active, "Sales");
        let mut older = record(Employment::Terminated, "Sales");
        older.changed_at = Some(500);
        assert!(is_stale(&older, Some(&prior_of(&newer))));
        older.changed_at = None;
        assert!(!is_stale(&older, Some(&prior_of(&newer))));
    }

    #[test]
    fn statuses_and_dates() {
        assert_eq!(map_status("active"), Ok(Employment::Active));
        assert!(map_status("leave").is_err());
        let record = record(Employment::Active, "Sales");
        assert_eq!(parse_hash(&record.hash()), Some(record.digest()));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_date("2026-01-02"), parse_time("2026-01-02T00:00:00Z"));
        assert!(parse_date("02/01/2026").is_err());
    }
}
