//! Non-human identities a leaver owned (issue #20): service users, access
//! keys, AppRoles whose owner on a cloud or PAM target is the person (a tag or
//! metadata the connector reads).
//!
//! A target's `owned_identities` in the policy (`transfer`, `disable`,
//! `report`) puts a directive into every leaver's desired state on that
//! target ([`directive`]); the connector acts on it in the same `Apply` as
//! the account, acknowledges each action (`transfer_owner`,
//! `disable_owned`, `report_owned` changes), and its read-back lists the
//! identities with their owner, previous owner and usable credentials. The
//! task is verified only when the read-back shows the directive done
//! (`connector_kit::owned::differences`); the identities are in the task's
//! status (`read_back.owned_identities`), `jmlctl status` ([`status_lines`])
//! and the evidence.
//!
//! A transfer goes to the leaver's manager, the identity attribute
//! [`MANAGER_ATTRIBUTE`] (from the leaver event or the person's last record).
//! Without one the leaver is refused at submit with the field and the
//! target named, nothing stored and nothing applied on any target: a
//! half-done leaver (accounts disabled, identities neither transferred nor
//! anyone's) is worse than a refusal the source sees at once and resends
//! with the manager. The policy is refused at load when the source of truth
//! does not declare the attribute, and when the connector's `Describe` does
//! not support the action ([`check_connector`]).

use std::collections::BTreeMap;

use connector_kit::owned::{action_name, label, supports};
use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::event::InvalidEvent;
use crate::policy::{OwnedIdentityPolicy, Policy, PolicyIssue};

/// The identity attribute naming a person's manager (a person id).
pub const MANAGER_ATTRIBUTE: &str = "manager";

/// The contract's action for a policy's choice.
pub fn to_action(policy: OwnedIdentityPolicy) -> pb::OwnedIdentityAction {
    match policy {
        OwnedIdentityPolicy::Transfer => pb::OwnedIdentityAction::Transfer,
        OwnedIdentityPolicy::Disable => pb::OwnedIdentityAction::Disable,
        OwnedIdentityPolicy::Report => pb::OwnedIdentityAction::Report,
    }
}

/// The owned-identity directive of a leaver's desired state on one target;
/// `None` when the target's policy does not look at owned identities. A
/// transfer without a manager (or to the person themself) is refused.
pub fn directive(
    policy: &Policy,
    target_id: &str,
    person_id: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<Option<pb::OwnedIdentityDirective>, InvalidEvent> {
    let Some(choice) = policy.target(target_id).and_then(|t| t.owned_identities) else { return Ok(None) };
    let action = to_action(choice);
    if action != pb::OwnedIdentityAction::Transfer {
        return Ok(Some(connector_kit::owned::directive(action, "")));
    }
    let manager = attributes.get(MANAGER_ATTRIBUTE).map(|m| m.trim()).unwrap_or_default();
    if manager.is_empty() {
        return Err(InvalidEvent {
            field: format!("event.attributes.{MANAGER_ATTRIBUTE}"),
            message: format!(
                "required by target {target_id:?} (owned_identities: transfer): the leaver's non-human identities \
                 go to the manager, and neither the event nor the person's record names one; nothing was applied"
            ),
        });
    }
    if manager == person_id {
        return Err(InvalidEvent {
            field: format!("event.attributes.{MANAGER_ATTRIBUTE}"),
            message: format!(
                "names the leaver themself: target {target_id:?} transfers owned identities to another person"
            ),
        });
    }
    Ok(Some(connector_kit::owned::directive(action, manager)))
}

/// What the policy asks of a target's owned identities that its connector
/// does not declare.
pub fn check_connector(policy: &Policy, target_id: &str, description: &pb::DescribeResponse) -> Vec<PolicyIssue> {
    let Some((index, target)) = policy.file.targets.iter().enumerate().find(|(_, t)| t.id == target_id) else {
        return Vec::new();
    };
    let Some(choice) = target.owned_identities else { return Vec::new() };
    let action = to_action(choice);
    if supports(description, action) {
        return Vec::new();
    }
    let declared: Vec<&str> = description
        .owned_identities
        .iter()
        .filter(|_| description.capabilities.unwrap_or_default().owned_identities)
        .flat_map(|s| s.actions.iter())
        .filter_map(|a| pb::OwnedIdentityAction::try_from(*a).ok())
        .map(action_name)
        .collect();
    vec![PolicyIssue {
        path: format!("targets[{index}].owned_identities"),
        message: format!(
            "connector {:?} of target {target_id} cannot {} owned non-human identities; it declares: {}",
            description.connector_kind,
            action_name(action),
            if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
        ),
    }]
}

/// A directive as JSON (the evidence's desired state).
pub fn directive_json(directive: &pb::OwnedIdentityDirective) -> Value {
    let action = pb::OwnedIdentityAction::try_from(directive.action).unwrap_or(pb::OwnedIdentityAction::Unspecified);
    json!({ "action": action_name(action), "new_owner": directive.new_owner })
}

/// One identity as JSON (the evidence's read-back).
pub fn identity_json(identity: &pb::OwnedIdentity) -> Value {
    json!({
        "kind": identity.kind,
        "id": identity.id,
        "target_native_id": identity.target_native_id,
        "owner": identity.owner,
        "previous_owner": identity.previous_owner,
        "enabled": identity.enabled,
        "credentials": identity.credentials,
    })
}

/// The lines `jmlctl status` prints under a task: the directive and each
/// identity read back.
pub fn status_lines(task: &pb::TaskStatus) -> Vec<String> {
    let Some(directive) = task.desired.as_ref().and_then(|d| d.owned_identities.as_ref()) else {
        return Vec::new();
    };
    let action = pb::OwnedIdentityAction::try_from(directive.action).unwrap_or(pb::OwnedIdentityAction::Unspecified);
    let mut lines = vec![match action {
        pb::OwnedIdentityAction::Transfer => format!("owned identities: transfer to {}", directive.new_owner),
        other => format!("owned identities: {}", action_name(other)),
    }];
    match task.read_back.as_ref() {
        None => lines.push("  not read back yet".to_owned()),
        Some(state) if !state.owned_identities_complete => {
            lines.push("  the target could not list them all (unknown)".to_owned());
        }
        Some(state) if state.owned_identities.is_empty() => lines.push("  none".to_owned()),
        Some(state) => {
            for identity in &state.owned_identities {
                let previous = if identity.previous_owner.is_empty() {
                    String::new()
                } else {
                    format!(", previously {}", identity.previous_owner)
                };
                lines.push(format!(
                    "  {} owner {}{previous}, {}{}",
                    label(identity),
                    identity.owner,
                    if identity.enabled { "usable" } else { "disabled" },
                    if identity.credentials.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", identity.credentials.join(", "))
                    }
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version: 1
source_of_truth: { system: workday, attributes: [username, manager] }
targets:
  - { id: iam, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true, owned_identities: transfer }
  - { id: vault, endpoint: "http://127.0.0.1:2", account_name: "{username}", insecure_plaintext: true, owned_identities: report }
  - { id: ldap, endpoint: "http://127.0.0.1:3", account_name: "{username}", insecure_plaintext: true }
"#;

    #[test]
    fn a_transfer_needs_a_manager_other_than_the_leaver() {
        let policy = Policy::parse(POLICY).expect("policy");
        let with = BTreeMap::from([("manager".to_string(), "mgr-1".to_string())]);
        let directive_of =
            |target: &str, attributes: &BTreeMap<String, String>| directive(&policy, target, "p1", attributes);
        let transfer = directive_of("iam", &with).expect("ok").expect("directive");
        assert_eq!((transfer.action, transfer.new_owner.as_str()), (pb::OwnedIdentityAction::Transfer as i32, "mgr-1"));
        let error = directive_of("iam", &BTreeMap::new()).expect_err("no manager");
        assert_eq!(error.field, "event.attributes.manager");
        assert!(error.message.contains("\"iam\""), "{}", error.message);
        let own = BTreeMap::from([("manager".to_string(), "p1".to_string())]);
        assert!(directive_of("iam", &own).is_err());
        let report = directive_of("vault", &BTreeMap::new()).expect("ok").expect("directive");
        assert_eq!(report.action, pb::OwnedIdentityAction::Report as i32);
        assert!(directive_of("ldap", &with).expect("ok").is_none());
    }

    #[test]
    fn a_transfer_without_a_declared_manager_attribute_is_refused_at_load() {
        let without = POLICY.replace("attributes: [username, manager]", "attributes: [username]");
        let issues = match Policy::parse(&without) {
            Err(crate::policy::PolicyError::Invalid(issues)) => issues,
            other => panic!("expected issues, got {other:?}"),
        };
        assert!(issues.iter().any(|i| i.path == "targets[0].owned_identities"), "{issues:?}");
    }

    #[test]
    fn the_connector_must_declare_the_action() {
        let policy = Policy::parse(POLICY).expect("policy");
        let vault = pb::DescribeResponse { connector_kind: "vault".into(), ..Default::default() };
        let issues = check_connector(&policy, "vault", &vault);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "targets[1].owned_identities");
        assert!(issues[0].message.contains("cannot report"), "{}", issues[0].message);
        let iam = pb::DescribeResponse {
            capabilities: Some(pb::Capabilities { owned_identities: true, ..Default::default() }),
            owned_identities: Some(pb::OwnedIdentitySupport {
                kinds: vec!["iam_user".into()],
                actions: vec![pb::OwnedIdentityAction::Transfer as i32],
                owner_source: String::new(),
            }),
            ..Default::default()
        };
        assert!(check_connector(&policy, "iam", &iam).is_empty());
        assert!(check_connector(&policy, "ldap", &vault).is_empty());
    }
}
