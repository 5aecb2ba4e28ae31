//! Leave of absence: a *suspension* (event kind `SUSPENSION`) disables the
//! person's accounts and, per target, keeps their entitlements or strips them
//! (`on_leave` in the policy, default `strip`); a *return* (`RETURN`) plans
//! the person as a mover, and grants the person held, verified, before the
//! leave do not wait for approval again. The evidence of each names the
//! other ([`evidence_json`]).
//!
//! For a source that reports an employment status rather than events (the
//! state-based submit), [`kind_for_employment_status`] says which statuses
//! are a leave and which end one.
//!
//! A suspension or return for a person with no identity record (never
//! verified as a joiner), or who has left, is refused: nothing is stored.

use std::collections::BTreeSet;

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::event::{InvalidEvent, ValidEvent};
use crate::policy::{EventKindName, LeaveEntitlements, Policy};
use crate::store::{EventRecord, Store, StoreError, TaskState};

/// The event kind a source's employment status means for a person who is
/// employed: `leave`, `suspended`, `on_leave`, `leave_of_absence` start a
/// leave (suspension); `active` after one of those ends it (return). Other
/// statuses are not a leave (`None`).
pub fn kind_for_employment_status(status: &str, on_leave_now: bool) -> Option<EventKindName> {
    let status = status.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    match status.as_str() {
        "leave" | "on_leave" | "leave_of_absence" | "suspended" | "suspension" => Some(EventKindName::Suspension),
        "active" if on_leave_now => Some(EventKindName::Return),
        _ => None,
    }
}

/// The kind a suspension or return is planned as by the workflows (mover:
/// the person's current attributes decide the grants).
pub fn planning_kind(kind: EventKindName) -> EventKindName {
    match kind {
        EventKindName::Suspension | EventKindName::Return => EventKindName::Mover,
        other => other,
    }
}

/// A suspension's desired state on one target, from the mover plan: the
/// account disabled; entitlements kept or stripped as the target's policy
/// says; no grant waits for approval (nothing is granted); credentials kept
/// (the account is disabled, the person comes back).
pub fn suspend(planned: &mut pb::PlannedTarget, policy: &Policy) {
    let keep = policy.target(&planned.target_id).is_some_and(|t| t.on_leave == LeaveEntitlements::Keep);
    if let Some(desired) = planned.desired.as_mut() {
        desired.enabled = false;
        if !keep {
            desired.entitlements.clear();
        }
        desired.credentials = pb::CredentialAction::Keep as i32;
    }
    planned.awaiting_approval.clear();
    planned.approvals_required = 0;
    planned.approver_group.clear();
}

/// Refuses a suspension or return for a person with no identity record or
/// who has left. Other kinds pass.
pub async fn check(store: &dyn Store, event: &ValidEvent) -> Result<(), CheckError> {
    if !matches!(event.kind, EventKindName::Suspension | EventKindName::Return) {
        return Ok(());
    }
    match store.identity(&event.person_id).await? {
        None => Err(CheckError::Invalid(InvalidEvent {
            field: "event.person_id".into(),
            message: "has no identity record (no verified joiner): a leave of absence needs an employed person".into(),
        })),
        Some(identity) if identity.has_left => Err(CheckError::Invalid(InvalidEvent {
            field: "event.person_id".into(),
            message: "has left: a leave of absence needs an employed person".into(),
        })),
        Some(_) => Ok(()),
    }
}

/// Why [`check`] refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The event is refused.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The person's latest suspension accepted before `before_seq` (all when
/// `None`), if no return came after it.
fn open_suspension(events: &[EventRecord], before_seq: Option<i64>) -> Option<&EventRecord> {
    let last_leave = events
        .iter()
        .filter(|e| before_seq.is_none_or(|seq| e.seq < seq))
        .rfind(|e| matches!(e.kind, EventKindName::Suspension | EventKindName::Return))?;
    (last_leave.kind == EventKindName::Suspension).then_some(last_leave)
}

/// A return: on each target, grants waiting for approval that the person
/// held, verified, on that target before the suspension are approved
/// already: they no longer wait. Other events are left as planned.
pub async fn approved_before_leave(
    store: &dyn Store,
    event: &ValidEvent,
    plan: &mut pb::Plan,
) -> Result<(), StoreError> {
    if event.kind != EventKindName::Return || plan.targets.iter().all(|t| t.awaiting_approval.is_empty()) {
        return Ok(());
    }
    let events = store.person_events(&event.person_id).await?;
    let Some(suspension) = open_suspension(&events, None) else { return Ok(()) };
    for planned in plan.targets.iter_mut().filter(|t| !t.awaiting_approval.is_empty()) {
        // The latest task verified on this target before the suspension.
        let mut held: Option<BTreeSet<(String, String)>> = None;
        for earlier in events.iter().rev().filter(|e| e.seq < suspension.seq) {
            let Some(task) = store.task(&earlier.event_id, &planned.target_id).await? else { continue };
            if task.state == TaskState::Verified {
                held = Some(task.desired().entitlements.iter().map(|e| (e.kind.clone(), e.id.clone())).collect());
                break;
            }
        }
        let Some(held) = held else { continue };
        planned.awaiting_approval.retain(|e| !held.contains(&(e.kind.clone(), e.id.clone())));
        if planned.awaiting_approval.is_empty() {
            planned.approvals_required = 0;
            planned.approver_group.clear();
        }
    }
    Ok(())
}

/// The leave part of an event's evidence: a suspension names the return
/// that ended it, a return the suspension it ended; `null` for other kinds.
pub async fn evidence_json(store: &dyn Store, event: &EventRecord) -> Result<Value, StoreError> {
    if !matches!(event.kind, EventKindName::Suspension | EventKindName::Return) {
        return Ok(Value::Null);
    }
    let events = store.person_events(&event.person_id).await?;
    Ok(match event.kind {
        EventKindName::Suspension => {
            let returned = events.iter().find(|e| e.seq > event.seq && e.kind == EventKindName::Return);
            json!({ "suspension": event.event_id, "returned_by": returned.map(|e| e.event_id.clone()) })
        }
        _ => {
            let suspension = open_suspension(&events, Some(event.seq));
            json!({ "suspension": suspension.map(|e| e.event_id.clone()), "returned_by": event.event_id })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employment_statuses() {
        assert_eq!(kind_for_employment_status("Leave of absence", false), Some(EventKindName::Suspension));
        assert_eq!(kind_for_employment_status("suspended", true), Some(EventKindName::Suspension));
        assert_eq!(kind_for_employment_status("active", true), Some(EventKindName::Return));
        assert_eq!(kind_for_employment_status("active", false), None);
        assert_eq!(kind_for_employment_status("terminated", false), None);
    }

    const POLICY: &str = r#"
version: 1
source_of_truth: { system: workday, attributes: [username] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true, on_leave: keep }
  - { id: scim, endpoint: "http://127.0.0.1:2", account_name: "{username}", insecure_plaintext: true }
"#;

    #[test]
    fn a_suspension_keeps_or_strips_per_target() {
        let policy = Policy::parse(POLICY).expect("policy");
        for (target, kept) in [("ldap", true), ("scim", false)] {
            let mut planned = pb::PlannedTarget {
                target_id: target.into(),
                desired: Some(pb::DesiredAccount {
                    enabled: true,
                    entitlements: vec![pb::Entitlement { kind: "group".into(), id: "g".into(), privileged: true }],
                    ..Default::default()
                }),
                awaiting_approval: vec![pb::Entitlement { kind: "group".into(), id: "g".into(), privileged: true }],
                approvals_required: 1,
                approver_group: "security".into(),
                ..Default::default()
            };
            suspend(&mut planned, &policy);
            let desired = planned.desired.expect("desired");
            assert!(!desired.enabled);
            assert_eq!(desired.entitlements.len(), usize::from(kept), "{target}");
            assert!(planned.awaiting_approval.is_empty() && planned.approvals_required == 0);
        }
    }
}
