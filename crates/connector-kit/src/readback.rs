//! Read-back comparison: is what the target shows the desired state?
//!
//! The coordinator, not the connector, decides. Both sides are normalised with
//! the comparison rules the connector declares in `Describe`, and only what the
//! desired state names is compared: its managed attributes and, for every
//! entitlement kind the connector manages, the whole set (an entitlement the
//! target holds that the desired state lacks is *excess*). Each difference is
//! named, so it can go into task status and evidence.
//!
//! Reads fail closed: a field the connector reports as unreadable
//! (`AccountState.unreadable`) is unknown, and when the desired state names it
//! the read-back differs ([`Difference::Unreadable`]), whatever value the field
//! carries. A leaver (present, disabled, no entitlement) is not verified while
//! the target shows the account in a privileged group the connector does not
//! manage ([`Difference::PrivilegedUnmanaged`]).

use std::collections::BTreeSet;
use std::fmt;

use jml_contract::v1::{AccountState, CredentialAction, DescribeResponse, DesiredAccount, Presence, ValueComparison};

/// How one part of the read-back differs from the desired state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    /// The account should exist and does not, or the reverse.
    Existence { expected: bool, actual: bool },
    /// The account name differs.
    AccountName { expected: String, actual: String },
    /// The correlation key the target holds is not the person's id.
    PersonId { expected: String, actual: String },
    /// Enabled when it should be disabled, or the reverse.
    Enabled { expected: bool, actual: bool },
    /// A managed attribute has another value.
    Attribute { name: String, expected: String, actual: String },
    /// An entitlement the desired state grants is missing.
    MissingEntitlement { kind: String, id: String },
    /// The target holds an entitlement of a managed kind the desired state lacks.
    ExcessEntitlement { kind: String, id: String },
    /// Credentials remain although all were to be revoked.
    CredentialsRemain { active: Vec<String> },
    /// The target cannot prove that no credential remains.
    CredentialsUnproven,
    /// A field the desired state names could not be read on the target: unknown.
    Unreadable { field: String, target_attribute: String, reason: String },
    /// A leaver still belongs to a privileged group the connector does not manage.
    PrivilegedUnmanaged { kind: String, id: String },
    /// The owned non-human identities do not show the directive done
    /// ([`crate::owned::differences`]), in plain words.
    OwnedIdentity { description: String },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Existence { expected, actual } => write!(f, "exists: expected {expected}, target shows {actual}"),
            Self::AccountName { expected, actual } => {
                write!(f, "account_name: expected {expected:?}, target shows {actual:?}")
            }
            Self::PersonId { expected, actual } => {
                write!(f, "person_id: expected {expected:?}, target shows {actual:?}")
            }
            Self::Enabled { expected, actual } => write!(f, "enabled: expected {expected}, target shows {actual}"),
            Self::Attribute { name, expected, actual } => {
                write!(f, "attributes.{name}: expected {expected:?}, target shows {actual:?}")
            }
            Self::MissingEntitlement { kind, id } => write!(f, "entitlement {kind}:{id}: missing"),
            Self::ExcessEntitlement { kind, id } => write!(f, "entitlement {kind}:{id}: excess"),
            Self::CredentialsRemain { active } => write!(f, "credentials: still active: {}", active.join(", ")),
            Self::CredentialsUnproven => f.write_str("credentials: the target cannot prove that none remain"),
            Self::Unreadable { field, target_attribute, reason } => {
                write!(f, "{field}: unknown, the target's {target_attribute} could not be read ({reason})")
            }
            Self::PrivilegedUnmanaged { kind, id } => {
                write!(f, "entitlement {kind}:{id}: privileged, not managed by the connector, still held")
            }
            Self::OwnedIdentity { description } => f.write_str(description),
        }
    }
}

/// Normalises one value by a declared comparison rule.
pub fn normalise(comparison: ValueComparison, value: &str) -> String {
    match comparison {
        ValueComparison::Unspecified | ValueComparison::Exact => value.to_owned(),
        ValueComparison::CaseInsensitive => value.to_lowercase(),
        ValueComparison::DistinguishedName => normalise_dn(value),
    }
}

/// Normalises an LDAP distinguished name: attribute types and values
/// lower-cased, unescaped spaces around `,`, `=` and `+` removed. Escapes are
/// kept as written, so `\,` stays a literal comma.
pub fn normalise_dn(dn: &str) -> String {
    let mut rdns = Vec::new();
    for rdn in split_unescaped(dn, ',') {
        let mut parts = Vec::new();
        for ava in split_unescaped(&rdn, '+') {
            if split_unescaped(&ava, '=').len() < 2 {
                // Not an attribute-value pair: keep it, normalised, as it is
                // (adding an '=' would make normalisation not idempotent).
                parts.push(trim_unescaped(&ava).to_lowercase());
                continue;
            }
            let mut halves = split_unescaped(&ava, '=').into_iter();
            let attribute_type = halves.next().unwrap_or_default();
            let rest: Vec<String> = halves.collect();
            let value = rest.join("=");
            parts.push(format!("{}={}", attribute_type.trim().to_lowercase(), trim_unescaped(&value).to_lowercase()));
        }
        parts.sort();
        rdns.push(parts.join("+"));
    }
    rdns.join(",")
}

fn split_unescaped(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(String::new());
            continue;
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn trim_unescaped(value: &str) -> &str {
    let start_trimmed = value.trim_start();
    // A trailing space escaped as "\ " is part of the value.
    let mut end = start_trimmed.len();
    while end > 0 && start_trimmed.as_bytes()[end - 1] == b' ' {
        let backslashes = start_trimmed.as_bytes()[..end - 1].iter().rev().take_while(|b| **b == b'\\').count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &start_trimmed[..end]
}

fn comparison(value: i32) -> ValueComparison {
    ValueComparison::try_from(value).unwrap_or(ValueComparison::Exact)
}

/// Compares a desired state with a read-back, by the connector's declared
/// rules. An empty answer means *verified*.
pub fn compare(description: &DescribeResponse, desired: &DesiredAccount, actual: &AccountState) -> Vec<Difference> {
    let mut differences = Vec::new();
    let want_present = desired.presence == Presence::Present as i32;
    if want_present != actual.exists {
        differences.push(Difference::Existence { expected: want_present, actual: actual.exists });
        return differences;
    }
    if !want_present {
        return differences;
    }
    let name_rule = comparison(description.account_name_comparison);
    let expected_name = desired.account.as_ref().map(|a| a.account_name.as_str()).unwrap_or_default();
    let actual_name = actual.account.as_ref().map(|a| a.account_name.as_str()).unwrap_or_default();
    if normalise(name_rule, expected_name) != normalise(name_rule, actual_name) {
        differences.push(Difference::AccountName { expected: expected_name.into(), actual: actual_name.into() });
    }
    let expected_person = desired.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    let actual_person = actual.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    if expected_person != actual_person {
        differences.push(Difference::PersonId { expected: expected_person.into(), actual: actual_person.into() });
    }
    for unreadable in &actual.unreadable {
        if names_field(description, desired, &unreadable.field) {
            differences.push(Difference::Unreadable {
                field: unreadable.field.clone(),
                target_attribute: unreadable.target_attribute.clone(),
                reason: unreadable.reason.clone(),
            });
        }
    }
    if desired.enabled != actual.enabled {
        differences.push(Difference::Enabled { expected: desired.enabled, actual: actual.enabled });
    }
    for (name, expected) in &desired.attributes {
        let rule = description
            .attributes
            .iter()
            .find(|spec| &spec.name == name)
            .map(|spec| comparison(spec.comparison))
            .unwrap_or(ValueComparison::Exact);
        let actual_value = actual.attributes.get(name).map(String::as_str).unwrap_or_default();
        if normalise(rule, expected) != normalise(rule, actual_value) {
            differences.push(Difference::Attribute {
                name: name.clone(),
                expected: expected.clone(),
                actual: actual_value.to_owned(),
            });
        }
    }
    for kind in &description.entitlement_kinds {
        let rule = comparison(kind.comparison);
        let set = |entitlements: &[jml_contract::v1::Entitlement]| -> BTreeSet<(String, String)> {
            entitlements
                .iter()
                .filter(|e| e.kind == kind.kind)
                .map(|e| (normalise(rule, &e.id), e.id.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect()
        };
        let expected = set(&desired.entitlements);
        // In force on the target, plus (AccountState.dormant_entitlements)
        // what enabling the account would restore: held in reserve for a
        // disabled desired state, always excess when not desired.
        let in_force = set(&actual.entitlements);
        let dormant = set(&actual.dormant_entitlements);
        let mut actual_set = in_force.clone();
        actual_set.extend(dormant.iter().cloned());
        let expected_keys: BTreeSet<&String> = expected.iter().map(|(k, _)| k).collect();
        let held = if desired.enabled { &in_force } else { &actual_set };
        let actual_keys: BTreeSet<&String> = held.iter().map(|(k, _)| k).collect();
        for (key, id) in &expected {
            if !actual_keys.contains(key) {
                differences.push(Difference::MissingEntitlement { kind: kind.kind.clone(), id: id.clone() });
            }
        }
        for (key, id) in &actual_set {
            if !expected_keys.contains(key) {
                differences.push(Difference::ExcessEntitlement { kind: kind.kind.clone(), id: id.clone() });
            }
        }
    }
    if is_leaver(desired) {
        for entitlement in actual.unmanaged_entitlements.iter().filter(|e| e.privileged) {
            differences
                .push(Difference::PrivilegedUnmanaged { kind: entitlement.kind.clone(), id: entitlement.id.clone() });
        }
    }
    if desired.credentials == CredentialAction::RevokeAll as i32 {
        let credentials = actual.credentials.clone().unwrap_or_default();
        if !credentials.active.is_empty() {
            differences.push(Difference::CredentialsRemain { active: credentials.active });
        } else if !credentials.complete && !crate::credentials::incompleteness_declared(description, &credentials) {
            differences.push(Difference::CredentialsUnproven);
        }
    }
    differences.extend(
        crate::owned::differences(desired, actual)
            .into_iter()
            .map(|description| Difference::OwnedIdentity { description }),
    );
    differences
}

/// Whether a present desired state is a leaver's: disabled, holding nothing.
fn is_leaver(desired: &DesiredAccount) -> bool {
    desired.presence == Presence::Present as i32 && !desired.enabled && desired.entitlements.is_empty()
}

/// Whether the desired state (present) names the `AccountState` field at
/// `path`, so that not knowing it leaves the read-back unverified. An unknown
/// path is named: what the coordinator does not understand is not proof.
fn names_field(description: &DescribeResponse, desired: &DesiredAccount, path: &str) -> bool {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    match head {
        "attributes" => rest.is_empty() || desired.attributes.contains_key(rest),
        "entitlements" => {
            rest.is_empty() || description.entitlement_kinds.iter().any(|kind| kind.kind == rest) || is_leaver(desired)
        }
        "unmanaged_entitlements" => is_leaver(desired),
        "credentials" => desired.credentials == CredentialAction::RevokeAll as i32,
        "last_activity" | "target_native_id" => false,
        "owned_identities" => crate::owned::action(desired) != jml_contract::v1::OwnedIdentityAction::Unspecified,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jml_contract::v1::{AccountRef, AttributeSpec, CredentialState, Entitlement, EntitlementKind};

    fn description() -> DescribeResponse {
        DescribeResponse {
            entitlement_kinds: vec![EntitlementKind {
                kind: "group".into(),
                comparison: ValueComparison::DistinguishedName as i32,
            }],
            attributes: vec![AttributeSpec {
                name: "mail".into(),
                comparison: ValueComparison::CaseInsensitive as i32,
                required: false,
            }],
            account_name_comparison: ValueComparison::CaseInsensitive as i32,
            ..Default::default()
        }
    }

    fn group(id: &str) -> Entitlement {
        Entitlement { kind: "group".into(), id: id.into(), privileged: false }
    }

    fn desired() -> DesiredAccount {
        DesiredAccount {
            account: Some(AccountRef { person_id: "p1".into(), account_name: "Alice".into() }),
            presence: Presence::Present as i32,
            enabled: true,
            attributes: [("mail".to_string(), "Alice@Example.org".to_string())].into(),
            entitlements: vec![group("cn=Staff,ou=Groups,dc=example,dc=org")],
            credentials: CredentialAction::Keep as i32,
            owned_identities: None,
        }
    }

    fn actual() -> AccountState {
        AccountState {
            account: Some(AccountRef { person_id: "p1".into(), account_name: "alice".into() }),
            exists: true,
            enabled: true,
            attributes: [("mail".to_string(), "alice@example.org".to_string())].into(),
            entitlements: vec![group("CN=staff, OU=groups,dc=example, dc=org")],
            ..Default::default()
        }
    }

    #[test]
    fn equal_after_normalisation_is_verified() {
        assert_eq!(compare(&description(), &desired(), &actual()), vec![]);
    }

    #[test]
    fn excess_and_missing_entitlements_are_named() {
        let mut state = actual();
        state.entitlements = vec![group("cn=admins,ou=groups,dc=example,dc=org")];
        let differences = compare(&description(), &desired(), &state);
        assert_eq!(
            differences,
            vec![
                Difference::MissingEntitlement {
                    kind: "group".into(),
                    id: "cn=Staff,ou=Groups,dc=example,dc=org".into()
                },
                Difference::ExcessEntitlement {
                    kind: "group".into(),
                    id: "cn=admins,ou=groups,dc=example,dc=org".into()
                },
            ]
        );
    }

    #[test]
    fn revocation_needs_proof() {
        let mut want = desired();
        want.credentials = CredentialAction::RevokeAll as i32;
        let mut state = actual();
        state.credentials = Some(CredentialState { active: vec![], complete: false, ..Default::default() });
        assert_eq!(compare(&description(), &want, &state), vec![Difference::CredentialsUnproven]);
        state.credentials =
            Some(CredentialState { active: vec!["token:abc".into()], complete: true, ..Default::default() });
        assert_eq!(
            compare(&description(), &want, &state),
            vec![Difference::CredentialsRemain { active: vec!["token:abc".into()] }]
        );
        state.credentials = Some(CredentialState { active: vec![], complete: true, ..Default::default() });
        assert_eq!(compare(&description(), &want, &state), vec![]);
    }

    #[test]
    fn dn_normalisation_is_idempotent_on_malformed_input() {
        // Found by the `dn_normalise` fuzz target.
        for dn in ["\0\0\\=+=", "\0\\==", "a+b", "=", "cn=x+y", " , = ", "\\"] {
            let once = normalise_dn(dn);
            assert_eq!(normalise_dn(&once), once, "{dn:?}");
        }
    }

    #[test]
    fn dn_normalisation_keeps_escapes() {
        assert_eq!(normalise_dn("CN=a\\,b , OU=X"), "cn=a\\,b,ou=x");
        assert_ne!(normalise_dn("cn=a\\,b,ou=x"), normalise_dn("cn=a,b,ou=x"));
        assert_eq!(normalise_dn("cn=trailing\\ "), "cn=trailing\\ ");
    }

    fn unreadable(field: &str, target_attribute: &str) -> jml_contract::v1::UnreadableField {
        jml_contract::v1::UnreadableField {
            field: field.into(),
            target_attribute: target_attribute.into(),
            reason: "hidden by an ACL".into(),
        }
    }

    fn leaver() -> DesiredAccount {
        DesiredAccount {
            enabled: false,
            entitlements: vec![],
            credentials: CredentialAction::RevokeAll as i32,
            ..desired()
        }
    }

    #[test]
    fn an_unreadable_field_the_desired_state_names_is_not_verified() {
        // The read-back shows the safe values (disabled, no password) but says
        // it could not read them: unknown is never verified.
        let mut state = actual();
        state.enabled = false;
        state.entitlements.clear();
        state.credentials = Some(CredentialState { active: vec![], complete: true, ..Default::default() });
        state.unreadable = vec![unreadable("enabled", "userAccountControl"), unreadable("credentials", "userPassword")];
        let differences = compare(&description(), &leaver(), &state);
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[0].to_string().contains("userAccountControl"), "{}", differences[0]);
        assert!(differences[1].to_string().starts_with("credentials: unknown"), "{}", differences[1]);
    }

    #[test]
    fn an_unreadable_field_the_desired_state_does_not_name_is_ignored() {
        let mut state = actual();
        state.unreadable = vec![unreadable("attributes.title", "title"), unreadable("credentials", "userPassword")];
        assert_eq!(compare(&description(), &desired(), &state), vec![]);
        state.unreadable.push(unreadable("attributes.mail", "mail"));
        assert!(
            matches!(&compare(&description(), &desired(), &state)[..], [Difference::Unreadable { field, .. }] if field == "attributes.mail")
        );
    }

    #[test]
    fn a_leaver_in_a_privileged_unmanaged_group_is_not_verified() {
        let mut state = actual();
        state.enabled = false;
        state.entitlements.clear();
        state.credentials = Some(CredentialState { active: vec![], complete: true, ..Default::default() });
        state.unmanaged_entitlements = vec![
            Entitlement { kind: "group".into(), id: "cn=wiki,ou=apps,dc=example,dc=org".into(), privileged: false },
            Entitlement {
                kind: "group".into(),
                id: "CN=Domain Admins,CN=Users,DC=jml,DC=test".into(),
                privileged: true,
            },
        ];
        assert_eq!(
            compare(&description(), &leaver(), &state),
            vec![Difference::PrivilegedUnmanaged {
                kind: "group".into(),
                id: "CN=Domain Admins,CN=Users,DC=jml,DC=test".into()
            }]
        );
        // An active account's unmanaged groups are not the policy's business.
        assert_eq!(compare(&description(), &desired(), &actual()), vec![]);
    }

    #[test]
    fn another_person_id_is_a_difference() {
        let mut state = actual();
        state.account = Some(AccountRef { person_id: "p2".into(), account_name: "alice".into() });
        assert_eq!(
            compare(&description(), &desired(), &state),
            vec![Difference::PersonId { expected: "p1".into(), actual: "p2".into() }]
        );
    }

    #[test]
    fn attribute_and_enabled_differences_are_named() {
        let mut state = actual();
        state.enabled = false;
        state.attributes.insert("mail".into(), "bob@example.org".into());
        let differences = compare(&description(), &desired(), &state);
        assert_eq!(differences.len(), 2);
        assert_eq!(differences[0].to_string(), "enabled: expected true, target shows false");
    }
}
