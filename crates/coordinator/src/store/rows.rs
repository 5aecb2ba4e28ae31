//! Stored rows decoded into records, once for both backends. Each backend's
//! row type reads a column as one of a handful of types ([`StoredRow`]);
//! the records are built from those reads here, so the SQLite and the
//! PostgreSQL store cannot drift apart in what a stored value means.

use jml_contract::v1 as pb;
use prost::Message;
use sqlx::Row;

use super::{AuditRecord, EventRecord, EventState, IdentityRecord, StoreError, TaskRecord, TaskState};
use crate::event::kind_from_name;
use crate::policy::EventKindName;

/// Typed column reads of a backend's row.
pub(crate) trait StoredRow {
    /// A TEXT column.
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    /// A nullable integer column.
    fn optional_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A flag (SQLite INTEGER 0/1, PostgreSQL BOOLEAN).
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    /// A BLOB / BYTEA column.
    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    /// A nullable BLOB / BYTEA column.
    fn optional_blob(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! stored_row {
    ($row:ty) => {
        impl StoredRow for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn optional_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
                self.try_get(column)
            }
            fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(column)
            }
            fn optional_blob(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}

stored_row!(sqlx::sqlite::SqliteRow);
stored_row!(sqlx::postgres::PgRow);

/// A stored value that cannot be decoded.
pub(crate) fn corrupt(what: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt { what, message: message.to_string() }
}

/// A task state from its stored name.
pub(crate) fn task_state(name: &str) -> Result<TaskState, StoreError> {
    TaskState::parse(name).ok_or_else(|| corrupt("tasks.state", name))
}

/// An event kind from its stored name.
pub(crate) fn event_kind(name: &str) -> Result<EventKindName, StoreError> {
    kind_from_name(name).ok_or_else(|| corrupt("events.kind", name))
}

/// A protobuf message from its stored canonical encoding.
pub(crate) fn decode<M: Message + Default>(
    what: &'static str,
    bytes: Option<Vec<u8>>,
) -> Result<Option<M>, StoreError> {
    bytes.map(|b| M::decode(b.as_slice()).map_err(|e| corrupt(what, e))).transpose()
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// An `events` row.
pub(crate) fn event_from_row(row: &impl StoredRow) -> Result<EventRecord, StoreError> {
    let state = row.text("state")?;
    Ok(EventRecord {
        seq: row.int("seq")?,
        event_id: row.text("event_id")?,
        kind: event_kind(&row.text("kind")?)?,
        person_id: row.text("person_id")?,
        attributes: from_json("events.attributes", &row.text("attributes")?)?,
        effective_at: row.int("effective_at")?,
        source_system: row.text("source_system")?,
        initiator: row.text("initiator")?,
        urgent: row.flag("urgent")?,
        received_at: row.int("received_at")?,
        policy_hash: row.text("policy_hash")?,
        plan: decode("events.plan", Some(row.blob("plan")?))?.unwrap_or_default(),
        plan_hash: row.text("plan_hash")?,
        trace_id: row.text("trace_id")?,
        state: EventState::parse(&state).ok_or_else(|| corrupt("events.state", &state))?,
        finished_at: row.optional_int("finished_at")?,
    })
}

/// A `tasks` row.
pub(crate) fn task_from_row(row: &impl StoredRow) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        event_id: row.text("event_id")?,
        target_id: row.text("target_id")?,
        event_seq: row.int("event_seq")?,
        person_id: row.text("person_id")?,
        effective_at: row.int("effective_at")?,
        urgent: row.flag("urgent")?,
        state: task_state(&row.text("state")?)?,
        planned: decode("tasks.planned", Some(row.blob("planned")?))?.unwrap_or_default(),
        grants_access: row.flag("grants_access")?,
        command_id: row.text("command_id")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: row.optional_int("next_attempt_at")?,
        last_error: row.text("last_error")?,
        acknowledgement: decode("tasks.acknowledgement", row.optional_blob("acknowledgement")?)?,
        read_back: decode("tasks.read_back", row.optional_blob("read_back")?)?,
        differences: from_json("tasks.differences", &row.text("differences")?)?,
        deadline_at: row.int("deadline_at")?,
        deadline_breached: row.flag("deadline_breached")?,
        planned_at: row.int("planned_at")?,
        dispatched_at: row.optional_int("dispatched_at")?,
        acknowledged_at: row.optional_int("acknowledged_at")?,
        finished_at: row.optional_int("finished_at")?,
        residual_risks: decode::<pb::ResidualRisks>("tasks.residual_risks", row.optional_blob("residual_risks")?)?
            .map(|stored| stored.risks)
            .unwrap_or_default(),
    })
}

/// The stored form of a task's residual risks: NULL when there are none.
pub(crate) fn encode_residual_risks(risks: &[pb::ResidualRisk]) -> Option<Vec<u8>> {
    (!risks.is_empty()).then(|| pb::ResidualRisks { risks: risks.to_vec() }.encode_to_vec())
}

/// An `identities` row.
pub(crate) fn identity_from_row(row: &impl StoredRow) -> Result<IdentityRecord, StoreError> {
    Ok(IdentityRecord {
        person_id: row.text("person_id")?,
        attributes: from_json("identities.attributes", &row.text("attributes")?)?,
        effective_at: row.int("effective_at")?,
        event_id: row.text("event_id")?,
        has_left: row.flag("has_left")?,
        targets: from_json("identities.targets", &row.text("targets")?)?,
        updated_at: row.int("updated_at")?,
    })
}

/// An `audit` row.
pub(crate) fn audit_from_row(row: &impl StoredRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.int("seq")?,
        at: row.int("at")?,
        principal: row.text("principal")?,
        event_id: row.text("event_id")?,
        action: row.text("action")?,
        payload: row.text("payload")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}
