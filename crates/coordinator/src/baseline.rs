//! The baseline: identity records of people already employed, loaded
//! without an event and without provisioning anything (`LoadIdentities`,
//! `jmlctl identities load`), so that a first reconciliation correlates the
//! accounts that existed before the mesh instead of calling them orphans.
//!
//! Records are checked like events' person ids and attributes (the source
//! system must be the policy's source of truth, attributes ones it is
//! authoritative for, no person twice), then stored in one transaction with
//! one audit record (`identities.loaded`: the principal, the counts and a
//! digest of the records; never the attribute values). A stored record an
//! event set is newer and kept ([`crate::store::baseline`]).

use std::collections::BTreeSet;

use jml_contract::v1 as pb;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::{Engine, EngineError};
use crate::event::{
    InvalidEvent, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_PERSON_ID_BYTES, check_identifier, now_ms,
    valid_attribute_name,
};
use crate::policy::Policy;
use crate::store::AuditEntry;
use crate::store::baseline::BaselineIdentity;

/// Most records one call may load.
pub const MAX_RECORDS: usize = 200_000;

fn invalid(field: String, message: impl Into<String>) -> InvalidEvent {
    InvalidEvent { field, message: message.into() }
}

/// Checks every record; the first error names its index and field.
pub fn validate(request: &pb::LoadIdentitiesRequest, policy: &Policy) -> Result<Vec<BaselineIdentity>, InvalidEvent> {
    if request.identities.is_empty() {
        return Err(invalid("identities".into(), "at least one record is required"));
    }
    if request.identities.len() > MAX_RECORDS {
        return Err(invalid("identities".into(), format!("more than {MAX_RECORDS} records in one call")));
    }
    let truth = &policy.file.source_of_truth;
    let mut seen = BTreeSet::new();
    let mut records = Vec::with_capacity(request.identities.len());
    for (index, record) in request.identities.iter().enumerate() {
        let path = format!("identities[{index}]");
        check_identifier(&format!("{path}.person_id"), &record.person_id, MAX_PERSON_ID_BYTES)?;
        if !seen.insert(record.person_id.as_str()) {
            return Err(invalid(format!("{path}.person_id"), "this person appears twice in the request"));
        }
        if record.source_system != truth.system {
            return Err(invalid(
                format!("{path}.source_system"),
                format!(
                    "{:?} is not the source of truth ({:?}); records from it are refused",
                    connector_kit::validate::printable(&record.source_system),
                    truth.system
                ),
            ));
        }
        if record.attributes.len() > MAX_ATTRIBUTES {
            return Err(invalid(format!("{path}.attributes"), format!("more than {MAX_ATTRIBUTES} attributes")));
        }
        for (name, value) in &record.attributes {
            if !valid_attribute_name(name) || !truth.attributes.iter().any(|a| a == name) {
                return Err(invalid(
                    format!("{path}.attributes"),
                    format!(
                        "{:?} is not an attribute the source of truth is authoritative for",
                        connector_kit::validate::printable(name)
                    ),
                ));
            }
            let field = format!("{path}.attributes.{name}");
            if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
                return Err(invalid(field, format!("longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes")));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(invalid(field, "contains a control character"));
            }
        }
        records.push(BaselineIdentity {
            person_id: record.person_id.clone(),
            attributes: record.attributes.clone(),
            source_system: record.source_system.clone(),
        });
    }
    Ok(records)
}

/// Checks and stores the records; nothing is planned or provisioned.
pub async fn load(
    engine: &Engine,
    request: &pb::LoadIdentitiesRequest,
    principal: &str,
) -> Result<pb::LoadIdentitiesResponse, EngineError> {
    let records = validate(request, engine.policy())?;
    let mut digest = Sha256::new();
    for record in &records {
        digest.update(record.person_id.as_bytes());
        digest.update([0]);
        digest.update(serde_json::to_string(&record.attributes).unwrap_or_default().as_bytes());
        digest.update([0]);
    }
    let count = records.len();
    let audit = AuditEntry {
        at: now_ms(),
        principal: principal.to_owned(),
        event_id: format!("baseline-{}", uuid::Uuid::new_v4().simple()),
        action: "identities.loaded".into(),
        payload: json!({
            "records": count,
            "source_system": engine.policy().file.source_of_truth.system,
            "digest": hex::encode(digest.finalize()),
        }),
    };
    let (loaded, unchanged) = engine.store().load_identities(records, vec![audit]).await?;
    tracing::info!(records = count, loaded, unchanged, "baseline identity records loaded");
    Ok(pb::LoadIdentitiesResponse { loaded, unchanged })
}
