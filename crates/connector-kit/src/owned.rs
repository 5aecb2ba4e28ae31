//! Non-human identities a person owns on a target (issue #20): service
//! users, access keys, AppRoles whose owner the target records (a tag, a
//! metadata field). A leaver's desired state says what happens to them
//! (`DesiredAccount.owned_identities`): `transfer` to the manager, `disable`,
//! or only `report`. This module holds what every connector and the
//! coordinator share: the check of a directive against the connector's
//! `Describe` ([`check_directive`], run by the adapter before the connector
//! sees the request) and the read-back rule ([`differences`]) that decides
//! whether the target shows the directive done.
//!
//! Read-back rule (fails closed): with any action, the connector must report
//! the list complete (`AccountState.owned_identities_complete`); `transfer`
//! is proven when every identity listed (owned by the person, or previously
//! owned and transferred away) shows the new owner; `disable` when every
//! identity the person still owns shows no usable credential; `report`
//! proves the listing alone.

use jml_contract::v1::{
    AccountState, DescribeResponse, DesiredAccount, OwnedIdentity, OwnedIdentityAction, OwnedIdentityDirective,
    Presence,
};

use crate::ConnectorError;

/// The directive's action; `Unspecified` when there is none.
pub fn action(desired: &DesiredAccount) -> OwnedIdentityAction {
    desired
        .owned_identities
        .as_ref()
        .and_then(|d| OwnedIdentityAction::try_from(d.action).ok())
        .unwrap_or(OwnedIdentityAction::Unspecified)
}

/// The action's name as the policy and the evidence spell it.
pub fn action_name(action: OwnedIdentityAction) -> &'static str {
    match action {
        OwnedIdentityAction::Unspecified => "none",
        OwnedIdentityAction::Report => "report",
        OwnedIdentityAction::Disable => "disable",
        OwnedIdentityAction::Transfer => "transfer",
    }
}

/// Whether the connector's `Describe` supports `action` on owned identities.
pub fn supports(description: &DescribeResponse, action: OwnedIdentityAction) -> bool {
    description.capabilities.unwrap_or_default().owned_identities
        && description.owned_identities.as_ref().is_some_and(|s| s.actions.contains(&(action as i32)))
}

/// Checks the owned-identity directive of a desired state against the
/// connector's `Describe`: an action the connector does not declare is
/// UNSUPPORTED; a transfer needs a new owner other than the person; other
/// actions carry none; a directive on an absent account is refused.
pub fn check_directive(description: &DescribeResponse, desired: &DesiredAccount) -> Result<(), ConnectorError> {
    let Some(directive) = desired.owned_identities.as_ref() else { return Ok(()) };
    let field = "desired.owned_identities";
    let action = OwnedIdentityAction::try_from(directive.action)
        .map_err(|_| ConnectorError::invalid_argument(format!("{field}.action"), "is not a known action"))?;
    if action == OwnedIdentityAction::Unspecified {
        if !directive.new_owner.is_empty() {
            return Err(ConnectorError::invalid_argument(format!("{field}.new_owner"), "is set without an action"));
        }
        return Ok(());
    }
    if desired.presence != Presence::Present as i32 {
        return Err(ConnectorError::invalid_argument(
            format!("{field}.action"),
            "owned identities are acted on with a present account (a leaver), not with its deletion",
        ));
    }
    if !supports(description, action) {
        return Err(ConnectorError::unsupported(format!(
            "this target cannot {} owned non-human identities",
            action_name(action)
        ))
        .with_field(format!("{field}.action")));
    }
    let person_id = desired.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    match action {
        OwnedIdentityAction::Transfer => {
            let new_owner = directive.new_owner.as_str();
            let problem = if new_owner.is_empty() {
                Some("is required to transfer owned identities (the leaver's manager)")
            } else if new_owner.len() > crate::validate::MAX_NAME_BYTES
                || new_owner.chars().any(char::is_control)
                || new_owner.trim() != new_owner
            {
                Some("is not a valid person id")
            } else if new_owner == person_id {
                Some("is the account's own person: a transfer needs another owner")
            } else {
                None
            };
            match problem {
                Some(message) => Err(ConnectorError::invalid_argument(format!("{field}.new_owner"), message)),
                None => Ok(()),
            }
        }
        _ if !directive.new_owner.is_empty() => Err(ConnectorError::invalid_argument(
            format!("{field}.new_owner"),
            format!("is only for a transfer, not {}", action_name(action)),
        )),
        _ => Ok(()),
    }
}

/// How the owned identities read back differ from the directive, in plain
/// words, one per identity (or one for an incomplete listing). Empty when
/// there is no directive or the target shows it done.
pub fn differences(desired: &DesiredAccount, actual: &AccountState) -> Vec<String> {
    let action = action(desired);
    if action == OwnedIdentityAction::Unspecified {
        return Vec::new();
    }
    if !actual.owned_identities_complete {
        return vec!["owned_identities: unknown, the target could not list them all".to_owned()];
    }
    let person_id = desired.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    let new_owner = desired.owned_identities.as_ref().map(|d| d.new_owner.as_str()).unwrap_or_default();
    let mut out = Vec::new();
    for identity in &actual.owned_identities {
        match action {
            OwnedIdentityAction::Transfer if identity.owner != new_owner => out.push(format!(
                "owned identity {}: owner expected {new_owner:?}, target shows {:?}",
                label(identity),
                identity.owner
            )),
            OwnedIdentityAction::Disable if identity.owner == person_id && identity.enabled => out.push(format!(
                "owned identity {}: expected disabled, target shows usable credentials: {}",
                label(identity),
                identity
                    .credentials
                    .iter()
                    .filter(|c| !c.ends_with(":inactive"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => {}
        }
    }
    out
}

/// An identity as "kind:id".
pub fn label(identity: &OwnedIdentity) -> String {
    format!("{}:{}", identity.kind, identity.id)
}

/// A directive for `action` (and the new owner of a transfer).
pub fn directive(action: OwnedIdentityAction, new_owner: &str) -> OwnedIdentityDirective {
    OwnedIdentityDirective { action: action as i32, new_owner: new_owner.to_owned() }
}

#[cfg(test)]
mod tests {
    use jml_contract::v1::{AccountRef, Capabilities, OwnedIdentitySupport};

    use super::*;

    fn description(actions: &[OwnedIdentityAction]) -> DescribeResponse {
        DescribeResponse {
            capabilities: Some(Capabilities { owned_identities: true, ..Default::default() }),
            owned_identities: Some(OwnedIdentitySupport {
                kinds: vec!["iam_user".into()],
                actions: actions.iter().map(|a| *a as i32).collect(),
                owner_source: "tag owner".into(),
            }),
            ..Default::default()
        }
    }

    fn leaver(action: OwnedIdentityAction, new_owner: &str) -> DesiredAccount {
        DesiredAccount {
            account: Some(AccountRef { person_id: "p1".into(), account_name: "ada".into() }),
            presence: Presence::Present as i32,
            owned_identities: Some(directive(action, new_owner)),
            ..Default::default()
        }
    }

    fn identity(owner: &str, enabled: bool) -> OwnedIdentity {
        OwnedIdentity {
            kind: "iam_user".into(),
            id: "svc".into(),
            owner: owner.into(),
            enabled,
            credentials: vec![if enabled { "access_key:AK".into() } else { "access_key:AK:inactive".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn directives_are_checked_against_describe() {
        let all = description(&[OwnedIdentityAction::Transfer, OwnedIdentityAction::Disable]);
        assert!(check_directive(&all, &leaver(OwnedIdentityAction::Transfer, "mgr")).is_ok());
        let missing = check_directive(&all, &leaver(OwnedIdentityAction::Transfer, "")).expect_err("no manager");
        assert_eq!(missing.field.as_deref(), Some("desired.owned_identities.new_owner"));
        assert!(check_directive(&all, &leaver(OwnedIdentityAction::Transfer, "p1")).is_err());
        assert!(check_directive(&all, &leaver(OwnedIdentityAction::Disable, "mgr")).is_err());
        let report = check_directive(&all, &leaver(OwnedIdentityAction::Report, "")).expect_err("undeclared");
        assert_eq!(report.kind, crate::ErrorKind::Unsupported);
        let none = DescribeResponse::default();
        assert!(check_directive(&none, &leaver(OwnedIdentityAction::Disable, "")).is_err());
        let mut absent = leaver(OwnedIdentityAction::Disable, "");
        absent.presence = Presence::Absent as i32;
        assert!(check_directive(&all, &absent).is_err());
    }

    #[test]
    fn read_back_proves_each_action() {
        let state = |identities: Vec<OwnedIdentity>, complete| AccountState {
            owned_identities: identities,
            owned_identities_complete: complete,
            ..Default::default()
        };
        let transfer = leaver(OwnedIdentityAction::Transfer, "mgr");
        assert!(differences(&transfer, &state(vec![identity("mgr", true)], true)).is_empty());
        assert_eq!(differences(&transfer, &state(vec![identity("p1", true)], true)).len(), 1);
        assert_eq!(differences(&transfer, &state(vec![], false)).len(), 1, "incomplete is unknown");
        let disable = leaver(OwnedIdentityAction::Disable, "");
        assert!(differences(&disable, &state(vec![identity("p1", false)], true)).is_empty());
        assert_eq!(differences(&disable, &state(vec![identity("p1", true)], true)).len(), 1);
        let report = leaver(OwnedIdentityAction::Report, "");
        assert!(differences(&report, &state(vec![identity("p1", true)], true)).is_empty());
        assert_eq!(differences(&report, &state(vec![], false)).len(), 1);
    }
}
