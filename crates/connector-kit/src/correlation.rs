//! What every connector shares for accounts it does not manage yet (#17):
//! the fingerprint of an account as read, the decision whether a link may
//! write the correlation key, and the correlation-attribute values `List`
//! reports.
//!
//! A link is refused, before anything is written, when the account carries
//! another person's key or changed since the caller read it (its fingerprint
//! differs); an account already carrying this person's key is a retried link
//! and goes straight to converging.

use std::collections::BTreeMap;

use jml_contract::v1::{AccountState, DescribeResponse};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::ConnectorError;
use crate::validate::printable;

/// The correlation attribute every connector can report: the account name.
pub const ACCOUNT_NAME: &str = "account_name";

/// A digest of `state` as read: every field but the account name (spelled as
/// the caller asked), the correlation attributes, the owned non-human
/// identities (not the account's own state) and the fingerprint itself;
/// entitlements and credentials sorted, so the order the target answered in
/// does not matter.
pub fn fingerprint(state: &AccountState) -> String {
    let mut canonical = state.clone();
    if let Some(account) = canonical.account.as_mut() {
        account.account_name.clear();
    }
    canonical.correlation_attributes.clear();
    canonical.fingerprint.clear();
    canonical.owned_identities.clear();
    canonical.owned_identities_complete = false;
    canonical.entitlements.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    if let Some(credentials) = canonical.credentials.as_mut() {
        credentials.active.sort();
    }
    let digest = Sha256::digest(canonical.encode_to_vec());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a link does to an account in the connector's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStep {
    /// The account carries no key and is as the caller saw it: write the key.
    WriteKey,
    /// The account already carries this person's key (a retried link).
    AlreadyLinked,
}

/// Decides a link of `current` (the account as the connector reads it now,
/// `None` when it does not exist) to `person_id`, seen by the caller with
/// `expected_fingerprint`. Errors are typed and mean nothing may be written.
pub fn link_step(
    current: Option<&AccountState>,
    account_name: &str,
    person_id: &str,
    expected_fingerprint: &str,
) -> Result<LinkStep, ConnectorError> {
    let Some(current) = current.filter(|state| state.exists) else {
        return Err(ConnectorError::not_found(format!(
            "account {:?} does not exist in this connector's scope: nothing to link",
            printable(account_name)
        ))
        .with_field("desired.account.account_name"));
    };
    let key = current.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    if key == person_id {
        return Ok(LinkStep::AlreadyLinked);
    }
    if !key.is_empty() {
        return Err(ConnectorError::conflict(format!(
            "account {:?} already carries another person's correlation key: not linked",
            printable(account_name)
        )));
    }
    if fingerprint(current) != expected_fingerprint {
        return Err(ConnectorError::conflict(format!(
            "account {:?} changed since it was reported (fingerprint differs): not linked, nothing written",
            printable(account_name)
        ))
        .with_field("link.expected_fingerprint"));
    }
    Ok(LinkStep::WriteKey)
}

/// Checks that every requested correlation attribute is one `description`
/// declares (or [`ACCOUNT_NAME`]).
pub fn check_requested(description: &DescribeResponse, requested: &[String]) -> Result<(), ConnectorError> {
    for (index, name) in requested.iter().enumerate() {
        if name != ACCOUNT_NAME && !description.correlation_attributes.iter().any(|declared| declared == name) {
            return Err(ConnectorError::invalid_argument(
                format!("correlation_attributes[{index}]"),
                format!("\"{}\" is not a correlation attribute this connector can report", printable(name)),
            ));
        }
    }
    Ok(())
}

/// The correlation attributes of one account: for each requested name, the
/// values `values_of` finds (several joined by a newline; none: absent).
/// [`ACCOUNT_NAME`] is the account name.
pub fn collect(
    requested: &[String],
    account_name: &str,
    mut values_of: impl FnMut(&str) -> Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in requested {
        let values = if name == ACCOUNT_NAME { vec![account_name.to_owned()] } else { values_of(name) };
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        if !values.is_empty() {
            out.insert(name.clone(), values.join("\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use jml_contract::v1::{AccountRef, CredentialState, Entitlement};

    use super::*;
    use crate::ErrorKind;

    fn state(person_id: &str) -> AccountState {
        AccountState {
            account: Some(AccountRef { person_id: person_id.into(), account_name: "jdoe".into() }),
            exists: true,
            enabled: true,
            entitlements: vec![
                Entitlement { kind: "group".into(), id: "b".into(), privileged: false },
                Entitlement { kind: "group".into(), id: "a".into(), privileged: true },
            ],
            credentials: Some(CredentialState {
                active: vec!["password".into()],
                complete: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fingerprint_ignores_order_name_spelling_and_correlation_values() {
        let one = state("");
        let mut other = one.clone();
        other.entitlements.reverse();
        if let Some(account) = other.account.as_mut() {
            account.account_name = "JDOE".into();
        }
        other.correlation_attributes.insert("mail".into(), "x@example.org".into());
        assert_eq!(fingerprint(&one), fingerprint(&other));
        other.enabled = false;
        assert_ne!(fingerprint(&one), fingerprint(&other));
    }

    #[test]
    fn link_refuses_changed_foreign_and_missing_accounts() {
        let seen = state("");
        let print = fingerprint(&seen);
        assert_eq!(link_step(Some(&seen), "jdoe", "p1", &print).ok(), Some(LinkStep::WriteKey));
        assert_eq!(link_step(Some(&state("p1")), "jdoe", "p1", "stale").ok(), Some(LinkStep::AlreadyLinked));
        let conflict = |r: Result<LinkStep, ConnectorError>| r.err().map(|e| e.kind);
        assert_eq!(conflict(link_step(Some(&state("p2")), "jdoe", "p1", &print)), Some(ErrorKind::Conflict));
        let mut changed = seen.clone();
        changed.entitlements.pop();
        assert_eq!(conflict(link_step(Some(&changed), "jdoe", "p1", &print)), Some(ErrorKind::Conflict));
        assert_eq!(conflict(link_step(None, "jdoe", "p1", &print)), Some(ErrorKind::NotFound));
    }

    #[test]
    fn collect_joins_values_and_skips_empty_ones() {
        let requested = vec!["mail".to_owned(), ACCOUNT_NAME.to_owned(), "employeeID".to_owned()];
        let values = collect(&requested, "jdoe", |name| match name {
            "mail" => vec!["a@x".into(), "b@x".into()],
            _ => vec![String::new()],
        });
        assert_eq!(values.get("mail").map(String::as_str), Some("a@x\nb@x"));
        assert_eq!(values.get(ACCOUNT_NAME).map(String::as_str), Some("jdoe"));
        assert!(!values.contains_key("employeeID"));
    }
}
