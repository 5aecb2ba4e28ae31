//! Lifecycle events as the coordinator accepts them: validation of what the
//! HR integration layer submits (every refusal names the field), and the
//! RFC 3339 times the API speaks.

use std::collections::BTreeMap;

use jml_contract::v1 as pb;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::{EventKindName, Policy};

/// Most attributes one event may carry.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;
/// Longest event id, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 128;
/// Longest person id, in bytes.
pub const MAX_PERSON_ID_BYTES: usize = 256;

/// A refused event: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidEvent {
    /// The field at fault, e.g. `event.attributes.email`.
    pub field: String,
    /// Why.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidEvent {
    InvalidEvent { field: field.into(), message: message.into() }
}

/// A lifecycle event that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// The idempotency key.
    pub event_id: String,
    /// Joiner, mover or leaver.
    pub kind: EventKindName,
    /// The person.
    pub person_id: String,
    /// The person's attributes.
    pub attributes: BTreeMap<String, String>,
    /// When it takes effect, in Unix milliseconds; `None` means now.
    pub effective_at_ms: Option<i64>,
    /// The source system.
    pub source_system: String,
    /// An urgent leaver.
    pub urgent: bool,
    /// When the change was made in the source (Unix ms), where it says.
    pub source_changed_at_ms: Option<i64>,
}

/// Whether an attribute name is acceptable: letters, digits, `_`, `-`, `.`.
pub fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME_BYTES
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

pub(crate) fn check_identifier(field: &str, value: &str, max: usize) -> Result<(), InvalidEvent> {
    if value.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(field, "contains control characters or leading/trailing spaces"));
    }
    Ok(())
}

/// The event kind's policy name.
pub fn kind_from_proto(kind: i32) -> Option<EventKindName> {
    match pb::EventKind::try_from(kind).ok()? {
        pb::EventKind::Joiner => Some(EventKindName::Joiner),
        pb::EventKind::Mover => Some(EventKindName::Mover),
        pb::EventKind::Leaver => Some(EventKindName::Leaver),
        pb::EventKind::Rehire => Some(EventKindName::Rehire),
        pb::EventKind::Suspension => Some(EventKindName::Suspension),
        pb::EventKind::Return => Some(EventKindName::Return),
        pb::EventKind::Unspecified => None,
    }
}

/// The proto event kind.
pub fn kind_to_proto(kind: EventKindName) -> pb::EventKind {
    match kind {
        EventKindName::Joiner => pb::EventKind::Joiner,
        EventKindName::Mover => pb::EventKind::Mover,
        EventKindName::Leaver => pb::EventKind::Leaver,
        EventKindName::Rehire => pb::EventKind::Rehire,
        EventKindName::Suspension => pb::EventKind::Suspension,
        EventKindName::Return => pb::EventKind::Return,
    }
}

/// The stored name of an event kind.
pub fn kind_name(kind: EventKindName) -> &'static str {
    match kind {
        EventKindName::Joiner => "joiner",
        EventKindName::Mover => "mover",
        EventKindName::Leaver => "leaver",
        EventKindName::Rehire => "rehire",
        EventKindName::Suspension => "suspension",
        EventKindName::Return => "return",
    }
}

/// The event kind from its stored name.
pub fn kind_from_name(name: &str) -> Option<EventKindName> {
    match name {
        "joiner" => Some(EventKindName::Joiner),
        "mover" => Some(EventKindName::Mover),
        "leaver" => Some(EventKindName::Leaver),
        "rehire" => Some(EventKindName::Rehire),
        "suspension" => Some(EventKindName::Suspension),
        "return" => Some(EventKindName::Return),
        _ => None,
    }
}

/// Validates a submitted event against the limits and the policy. Nothing is
/// written for a refused event.
pub fn validate(event: Option<&pb::LifecycleEvent>, policy: &Policy) -> Result<ValidEvent, InvalidEvent> {
    let event = event.ok_or_else(|| invalid("event", "is required"))?;
    if event.event_id.is_empty() {
        return Err(invalid("event.event_id", "is required"));
    }
    if event.event_id.len() > MAX_EVENT_ID_BYTES
        || !event.event_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(invalid(
            "event.event_id",
            format!("must be 1 to {MAX_EVENT_ID_BYTES} ASCII letters, digits or -_.:"),
        ));
    }
    if crate::calendar::reserved_event_id(&event.event_id) {
        return Err(invalid(
            "event.event_id",
            "ids starting with \"retention:\", \"prehire:\" or \"prehire-removal:\" are reserved for the calendar",
        ));
    }
    let kind = kind_from_proto(event.kind)
        .ok_or_else(|| invalid("event.kind", "must be joiner, mover, leaver, rehire, suspension or return"))?;
    check_identifier("event.person_id", &event.person_id, MAX_PERSON_ID_BYTES)?;
    if event.source_system.is_empty() {
        return Err(invalid("event.source_system", "is required"));
    }
    if event.source_system != policy.file.source_of_truth.system {
        return Err(invalid(
            "event.source_system",
            format!(
                "{:?} is not the source of truth ({:?}); events from it are refused",
                connector_kit::validate::printable(&event.source_system),
                policy.file.source_of_truth.system
            ),
        ));
    }
    if event.attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid("event.attributes", format!("more than {MAX_ATTRIBUTES} attributes")));
    }
    for (name, value) in &event.attributes {
        if !valid_attribute_name(name) {
            return Err(invalid(
                "event.attributes",
                format!("invalid attribute name {:?}", connector_kit::validate::printable(name)),
            ));
        }
        let field = format!("event.attributes.{name}");
        if !policy.file.source_of_truth.attributes.iter().any(|a| a == name) {
            return Err(invalid(field, "is not an attribute the source of truth is authoritative for"));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(invalid(field, format!("longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes")));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(invalid(field, "contains a control character"));
        }
    }
    if event.urgent && kind != EventKindName::Leaver {
        return Err(invalid("event.urgent", "only a leaver can be urgent"));
    }
    let effective_at_ms = if event.effective_at.is_empty() {
        None
    } else {
        Some(parse_time(&event.effective_at).map_err(|message| invalid("event.effective_at", message))?)
    };
    let source_changed_at_ms = if event.source_changed_at.is_empty() {
        None
    } else {
        Some(parse_time(&event.source_changed_at).map_err(|message| invalid("event.source_changed_at", message))?)
    };
    Ok(ValidEvent {
        source_changed_at_ms,
        event_id: event.event_id.clone(),
        kind,
        person_id: event.person_id.clone(),
        attributes: event.attributes.clone(),
        effective_at_ms,
        source_system: event.source_system.clone(),
        urgent: event.urgent,
    })
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{:?} is not an RFC 3339 time: {e}", connector_kit::validate::printable(text)))?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).map_err(|_| "out of range".to_string())
}

/// Formats Unix milliseconds as RFC 3339 UTC; empty for `None`.
pub fn format_time(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return String::new() };
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let ms = parse_time("2026-11-27T09:00:00Z").expect("parses");
        assert_eq!(format_time(Some(ms)), "2026-11-27T09:00:00Z");
        assert_eq!(parse_time("2026-11-27T10:00:00+01:00"), Ok(ms));
        assert!(parse_time("yesterday").is_err());
    }
}
