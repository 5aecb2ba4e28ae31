//! Validation every connector gets for free: the adapter checks each request
//! against the connector's `Describe` before the connector sees it.
//!
//! Rules (see `docs/CONNECTOR_SPEC.md`): presence and credential action set;
//! person id and account name present, at most [`MAX_NAME_BYTES`] bytes,
//! without control characters or leading/trailing spaces; attributes declared by
//! the connector, values at most [`MAX_VALUE_BYTES`] bytes without NUL or
//! other control characters except tab; entitlement kinds declared, ids
//! non-empty and without control characters; no duplicates.

use std::collections::BTreeSet;

use jml_contract::v1::{AccountRef, CredentialAction, DescribeResponse, DesiredAccount, Presence};

use crate::ConnectorError;

/// Longest person id, account name or entitlement id accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest attribute value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest command id accepted, in bytes.
pub const MAX_COMMAND_ID_BYTES: usize = 128;

fn check_name(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.is_empty() {
        return Err(ConnectorError::invalid_argument(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(ConnectorError::invalid_argument(field, format!("longer than {MAX_NAME_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ConnectorError::invalid_argument(field, "contains a control character"));
    }
    if value.trim() != value {
        return Err(ConnectorError::invalid_argument(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

/// Checks an account reference.
pub fn account_ref(field: &str, account: Option<&AccountRef>) -> Result<(), ConnectorError> {
    let account = account.ok_or_else(|| ConnectorError::invalid_argument(field, "is required"))?;
    check_name(&format!("{field}.person_id"), &account.person_id)?;
    check_name(&format!("{field}.account_name"), &account.account_name)?;
    Ok(())
}

/// Checks an account name alone (a lookup by name).
pub fn account_name(field: &str, account_name: &str) -> Result<(), ConnectorError> {
    check_name(field, account_name)
}

/// Checks a command id.
pub fn command_id(command_id: &str) -> Result<(), ConnectorError> {
    if command_id.is_empty() || command_id.len() > MAX_COMMAND_ID_BYTES {
        return Err(ConnectorError::invalid_argument(
            "command_id",
            format!("must be 1 to {MAX_COMMAND_ID_BYTES} bytes"),
        ));
    }
    if !command_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(ConnectorError::invalid_argument("command_id", "may hold only ASCII letters, digits and -_.:"));
    }
    Ok(())
}

/// Checks a desired state against what the connector declares.
pub fn desired_account(description: &DescribeResponse, desired: Option<&DesiredAccount>) -> Result<(), ConnectorError> {
    let desired = desired.ok_or_else(|| ConnectorError::invalid_argument("desired", "is required"))?;
    account_ref("desired.account", desired.account.as_ref())?;
    match Presence::try_from(desired.presence) {
        Ok(Presence::Present | Presence::Absent) => {}
        _ => return Err(ConnectorError::invalid_argument("desired.presence", "must be PRESENT or ABSENT")),
    }
    match CredentialAction::try_from(desired.credentials) {
        Ok(CredentialAction::Keep | CredentialAction::RevokeAll) => {}
        _ => return Err(ConnectorError::invalid_argument("desired.credentials", "must be KEEP or REVOKE_ALL")),
    }
    let caps = description.capabilities.unwrap_or_default();
    if desired.credentials == CredentialAction::RevokeAll as i32 && !caps.credential_revocation {
        return Err(
            ConnectorError::unsupported("this target cannot revoke credentials").with_field("desired.credentials")
        );
    }
    if desired.presence == Presence::Present as i32 && !desired.enabled && !caps.disable {
        return Err(ConnectorError::unsupported("this target cannot disable accounts").with_field("desired.enabled"));
    }
    if desired.presence == Presence::Absent as i32 && !caps.delete {
        return Err(ConnectorError::unsupported("this target cannot delete accounts").with_field("desired.presence"));
    }
    for (name, value) in &desired.attributes {
        let field = format!("desired.attributes.{}", printable(name));
        if !description.attributes.iter().any(|spec| &spec.name == name) {
            return Err(ConnectorError::invalid_argument(field, "is not an attribute this connector manages"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ConnectorError::invalid_argument(field, format!("longer than {MAX_VALUE_BYTES} bytes")));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ConnectorError::invalid_argument(field, "contains a control character"));
        }
    }
    if desired.presence == Presence::Present as i32 {
        for spec in description.attributes.iter().filter(|spec| spec.required) {
            if desired.attributes.get(&spec.name).is_none_or(String::is_empty) {
                return Err(ConnectorError::invalid_argument(
                    format!("desired.attributes.{}", spec.name),
                    "is required for a present account",
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (index, entitlement) in desired.entitlements.iter().enumerate() {
        let field = format!("desired.entitlements[{index}]");
        if !description.entitlement_kinds.iter().any(|kind| kind.kind == entitlement.kind) {
            return Err(ConnectorError::invalid_argument(
                format!("{field}.kind"),
                format!("\"{}\" is not an entitlement kind this connector manages", printable(&entitlement.kind)),
            ));
        }
        check_name(&format!("{field}.id"), &entitlement.id)?;
        if !seen.insert((entitlement.kind.as_str(), entitlement.id.as_str())) {
            return Err(ConnectorError::invalid_argument(format!("{field}.id"), "duplicate entitlement"));
        }
    }
    crate::owned::check_directive(description, desired)
}

/// A value made safe to echo in an error message: control characters escaped
/// and cut to 64 characters.
pub fn printable(value: &str) -> String {
    let mut out: String = value.chars().take(64).flat_map(char::escape_debug).collect();
    if value.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jml_contract::v1::{AttributeSpec, Capabilities, Entitlement, EntitlementKind};

    fn description() -> DescribeResponse {
        DescribeResponse {
            capabilities: Some(Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                ..Default::default()
            }),
            entitlement_kinds: vec![EntitlementKind { kind: "group".into(), comparison: 0 }],
            attributes: vec![AttributeSpec { name: "mail".into(), comparison: 0, required: false }],
            ..Default::default()
        }
    }

    fn desired() -> DesiredAccount {
        DesiredAccount {
            account: Some(AccountRef { person_id: "p1".into(), account_name: "alice".into() }),
            presence: Presence::Present as i32,
            enabled: true,
            attributes: [("mail".to_string(), "a@example.org".to_string())].into(),
            entitlements: vec![Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
            credentials: CredentialAction::Keep as i32,
            owned_identities: None,
        }
    }

    #[test]
    fn accepts_a_well_formed_state() {
        assert_eq!(desired_account(&description(), Some(&desired())), Ok(()));
    }

    #[test]
    fn names_the_field_at_fault() {
        type Mutation = Box<dyn Fn(&mut DesiredAccount)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|d| d.presence = 0), "desired.presence"),
            (Box::new(|d| d.credentials = 7), "desired.credentials"),
            (Box::new(|d| d.account = None), "desired.account"),
            (
                Box::new(|d| d.account.as_mut().map(|a| a.account_name = "a\0b".into()).unwrap_or(())),
                "desired.account.account_name",
            ),
            (
                Box::new(|d| d.account.as_mut().map(|a| a.person_id = " p".into()).unwrap_or(())),
                "desired.account.person_id",
            ),
            (
                Box::new(|d| {
                    d.attributes.insert("title".into(), "x".into());
                }),
                "desired.attributes.title",
            ),
            (
                Box::new(|d| {
                    d.attributes.insert("mail".into(), "x".repeat(5000));
                }),
                "desired.attributes.mail",
            ),
            (Box::new(|d| d.entitlements[0].kind = "role".into()), "desired.entitlements[0].kind"),
            (Box::new(|d| d.entitlements.push(d.entitlements[0].clone())), "desired.entitlements[1].id"),
        ];
        for (mutate, field) in cases {
            let mut state = desired();
            mutate(&mut state);
            let error = desired_account(&description(), Some(&state)).expect_err(field);
            assert_eq!(error.kind, crate::ErrorKind::InvalidArgument, "{field}");
            assert_eq!(error.field.as_deref(), Some(field));
        }
    }

    #[test]
    fn command_ids_are_restricted() {
        assert!(command_id("evt-1:ldap.2").is_ok());
        assert!(command_id("").is_err());
        assert!(command_id("a/b").is_err());
        assert!(command_id(&"x".repeat(200)).is_err());
    }
}
