//! The planner: a pure function of (person, event kind, policy) to the
//! desired state of the person's account on every target.
//!
//! - joiner and mover: on every target a matching workflow grants on, the
//!   account is present and enabled with the union of the matching workflows'
//!   grants, so a mover's plan drops what no longer matches; on a target the
//!   person was provisioned on before and no workflow grants on any more, the
//!   account is disabled, stripped and its credentials revoked;
//! - leaver: on *every* target of the policy the account is disabled, every
//!   entitlement removed and every credential revoked (a leaver is never
//!   silently skipped on a target); where the target's policy says so, the
//!   non-human identities the person owns there are transferred to the
//!   manager, disabled or reported ([`crate::owned`]).
//!
//! The same input gives the same plan byte for byte: targets and workflows in
//! policy order, entitlements sorted, maps ordered (`BTreeMap`), and the plan
//! hash is the SHA-256 of its protobuf encoding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jml_contract::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::event::{InvalidEvent, kind_to_proto};
use crate::policy::{ApprovalRule, EventKindName, Policy, Workflow, render};

/// What the planner plans from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The person.
    pub person_id: &'a str,
    /// The event kind.
    pub kind: EventKindName,
    /// The person's attributes after the event.
    pub attributes: &'a BTreeMap<String, String>,
    /// Targets where earlier events planned access for this person.
    pub provisioned: &'a BTreeSet<String>,
}

fn matches(workflow: &Workflow, kind: EventKindName, attributes: &BTreeMap<String, String>) -> bool {
    (workflow.trigger.events.contains(&kind)
        || (kind == EventKindName::Rehire && workflow.trigger.events.contains(&EventKindName::Joiner)))
        && workflow.trigger.when.iter().all(|(name, condition)| condition.holds_for(attributes.get(name)))
}

impl crate::policy::Condition {
    /// Whether the condition holds for an attribute value.
    pub fn holds_for(&self, value: Option<&String>) -> bool {
        match (self, value) {
            (Self::Equals(want), Some(value)) => want == value,
            (Self::OneOf { one_of }, Some(value)) => one_of.iter().any(|want| want == value),
            _ => false,
        }
    }
}

fn missing(target: &str, what: &str, attribute: &str) -> InvalidEvent {
    InvalidEvent {
        field: format!("event.attributes.{attribute}"),
        message: format!("required by target {target:?} ({what})"),
    }
}

/// Plans the desired state per target. Fails only when an attribute a
/// template needs is missing.
pub fn plan(input: PlanInput<'_>, policy: &Policy) -> Result<pb::Plan, InvalidEvent> {
    let matched: Vec<&Workflow> = match input.kind {
        EventKindName::Leaver => Vec::new(),
        kind => {
            let kind = crate::leave::planning_kind(kind);
            policy.file.workflows.iter().filter(|w| matches(w, kind, input.attributes)).collect()
        }
    };
    let mut targets = Vec::new();
    for target in &policy.file.targets {
        let granting: Vec<&Workflow> = matched.iter().copied().filter(|w| w.grants.contains_key(&target.id)).collect();
        let grants_access = !granting.is_empty();
        let include = match input.kind {
            EventKindName::Leaver => true,
            _ => grants_access || input.provisioned.contains(&target.id),
        };
        if !include {
            continue;
        }
        let account_name = render(&target.account_name, input.attributes)
            .map_err(|attribute| missing(&target.id, "account_name", &attribute))?;
        let mut attributes = BTreeMap::new();
        for (name, template) in &target.attributes {
            match render(template, input.attributes) {
                Ok(value) => {
                    attributes.insert(name.clone(), value);
                }
                // A leaver or a disabled account need not carry every attribute.
                Err(_) if !grants_access => {}
                Err(attribute) => return Err(missing(&target.id, &format!("attribute {name}"), &attribute)),
            }
        }
        // Union of grants, privileged if any workflow says so; a grant needs
        // approval when privileged or when every workflow granting it
        // requires approval.
        let mut entitlements: BTreeMap<(String, String), (bool, bool)> = BTreeMap::new();
        let mut rule: Option<ApprovalRule> = None;
        for workflow in &granting {
            for grant in &workflow.grants[&target.id] {
                let needs = grant.privileged || workflow.approval.is_some();
                let entry = entitlements.entry((grant.kind.clone(), grant.id.clone())).or_insert((false, true));
                entry.0 |= grant.privileged;
                entry.1 &= needs;
                if needs {
                    let candidate = workflow.approval.clone().or_else(|| policy.file.default_approval.clone());
                    if let Some(candidate) = candidate
                        && rule.as_ref().is_none_or(|r| candidate.approvers > r.approvers)
                    {
                        rule = Some(candidate);
                    }
                }
            }
        }
        let entitlement = |((kind, id), (privileged, _)): (&(String, String), &(bool, bool))| pb::Entitlement {
            kind: kind.clone(),
            id: id.clone(),
            privileged: *privileged,
        };
        let awaiting_approval: Vec<pb::Entitlement> =
            entitlements.iter().filter(|(_, (_, needs))| *needs).map(entitlement).collect();
        let rule = if awaiting_approval.is_empty() { None } else { rule };
        let desired = pb::DesiredAccount {
            account: Some(pb::AccountRef { person_id: input.person_id.to_owned(), account_name }),
            presence: pb::Presence::Present as i32,
            enabled: grants_access,
            attributes,
            entitlements: if grants_access { entitlements.iter().map(entitlement).collect() } else { Vec::new() },
            credentials: if grants_access { pb::CredentialAction::Keep } else { pb::CredentialAction::RevokeAll }
                as i32,
            owned_identities: None,
        };
        let target_deadline = policy.target_deadlines.get(&target.id).copied().unwrap_or(Duration::from_secs(900));
        let deadline = granting
            .iter()
            .filter_map(|w| policy.workflow_deadlines.get(&w.name).copied())
            .fold(target_deadline, Duration::min);
        let mut planned = pb::PlannedTarget {
            target_id: target.id.clone(),
            desired: Some(desired),
            awaiting_approval,
            approvals_required: rule.as_ref().map(|r| r.approvers).unwrap_or(0),
            approver_group: rule.map(|r| r.group).unwrap_or_default(),
            deadline_seconds: deadline.as_secs(),
            workflows: granting.iter().map(|w| w.name.clone()).collect(),
        };
        if input.kind == EventKindName::Suspension {
            crate::leave::suspend(&mut planned, policy);
        }
        if input.kind == EventKindName::Leaver
            && let Some(desired) = planned.desired.as_mut()
        {
            desired.owned_identities = crate::owned::directive(policy, &target.id, input.person_id, input.attributes)?;
        }
        targets.push(planned);
    }
    Ok(pb::Plan {
        person_id: input.person_id.to_owned(),
        kind: kind_to_proto(input.kind) as i32,
        workflows: matched
            .iter()
            .map(|w| pb::MatchedWorkflow { name: w.name.clone(), owner: w.owner.clone() })
            .collect(),
        targets,
    })
}

/// The hex SHA-256 of any message's protobuf encoding (deterministic: maps
/// are ordered).
pub fn message_hash<M: Message>(message: &M) -> String {
    hex::encode(Sha256::digest(message.encode_to_vec()))
}

/// The plan hash.
pub fn plan_hash(plan: &pb::Plan) -> String {
    message_hash(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version: 1
source_of_truth: { system: workday, attributes: [username, display_name, email, department] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true,
      attributes: { display_name: "{display_name}", mail: "{email}" } }
  - { id: vault, endpoint: "http://127.0.0.1:2", account_name: "{username}", insecure_plaintext: true }
workflows:
  - name: staff
    owner: it@example.org
    trigger: { events: [joiner, mover] }
    grants: { ldap: [ { kind: group, id: staff } ] }
  - name: eng
    owner: eng@example.org
    trigger: { events: [joiner, mover], when: { department: Engineering } }
    grants: { ldap: [ { kind: group, id: engineering } ], vault: [ { kind: role, id: owner, privileged: true } ] }
    deadline: 1m
  - name: sales
    owner: sales@example.org
    trigger: { events: [joiner, mover], when: { department: Sales } }
    grants: { ldap: [ { kind: group, id: sales } ] }
approvers: { security: [alice, bob] }
default_approval: { approvers: 1, group: security }
"#;

    fn person(department: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("username".into(), "ada".into()),
            ("display_name".into(), "Ada L".into()),
            ("email".into(), "ada@example.org".into()),
            ("department".into(), department.into()),
        ])
    }

    fn ids(plan: &pb::Plan, target: &str) -> Vec<String> {
        plan.targets
            .iter()
            .find(|t| t.target_id == target)
            .and_then(|t| t.desired.as_ref())
            .map(|d| d.entitlements.iter().map(|e| e.id.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn same_input_same_bytes() {
        let policy = Policy::parse(POLICY).expect("policy");
        let attributes = person("Engineering");
        let none = BTreeSet::new();
        let input =
            PlanInput { person_id: "p1", kind: EventKindName::Joiner, attributes: &attributes, provisioned: &none };
        let a = plan(input, &policy).expect("plan");
        let b = plan(input, &policy).expect("plan");
        assert_eq!(a.encode_to_vec(), b.encode_to_vec());
        assert_eq!(plan_hash(&a), plan_hash(&b));
        assert_eq!(ids(&a, "ldap"), vec!["engineering", "staff"]);
        let vault = &a.targets[1];
        assert_eq!(vault.approvals_required, 1);
        assert_eq!(vault.deadline_seconds, 60);
    }

    #[test]
    fn mover_drops_what_no_longer_matches_and_disables_old_targets() {
        let policy = Policy::parse(POLICY).expect("policy");
        let attributes = person("Sales");
        let provisioned = BTreeSet::from(["ldap".to_string(), "vault".to_string()]);
        let input = PlanInput {
            person_id: "p1",
            kind: EventKindName::Mover,
            attributes: &attributes,
            provisioned: &provisioned,
        };
        let moved = plan(input, &policy).expect("plan");
        assert_eq!(ids(&moved, "ldap"), vec!["sales", "staff"]);
        let vault = moved.targets[1].desired.clone().expect("desired");
        assert!(!vault.enabled && vault.entitlements.is_empty());
        assert_eq!(vault.credentials, pb::CredentialAction::RevokeAll as i32);
    }

    #[test]
    fn leaver_disables_everywhere() {
        let policy = Policy::parse(POLICY).expect("policy");
        let attributes = BTreeMap::from([("username".to_string(), "ada".to_string())]);
        let none = BTreeSet::new();
        let input =
            PlanInput { person_id: "p1", kind: EventKindName::Leaver, attributes: &attributes, provisioned: &none };
        let left = plan(input, &policy).expect("plan");
        assert_eq!(left.targets.len(), 2);
        for target in &left.targets {
            let desired = target.desired.clone().expect("desired");
            assert!(!desired.enabled && desired.entitlements.is_empty());
            assert_eq!(desired.credentials, pb::CredentialAction::RevokeAll as i32);
        }
    }
}
