//! Evidence and status: the JSON forms of contract messages used in audit
//! payloads and evidence documents, and the API status of an event built
//! from its stored records.

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::event::{format_time, kind_name, kind_to_proto};
use crate::store::{ApprovalRecord, AuditRecord, EventRecord, TaskRecord};

/// `kind:id`, with `(privileged)` when flagged.
pub fn entitlement_json(entitlement: &pb::Entitlement) -> Value {
    json!({ "kind": entitlement.kind, "id": entitlement.id, "privileged": entitlement.privileged })
}

/// A desired state as JSON.
pub fn desired_json(desired: &pb::DesiredAccount) -> Value {
    let account = desired.account.clone().unwrap_or_default();
    json!({
        "person_id": account.person_id,
        "account_name": account.account_name,
        "presence": pb::Presence::try_from(desired.presence).map(|p| p.as_str_name()).unwrap_or("PRESENCE_UNSPECIFIED"),
        "enabled": desired.enabled,
        "attributes": desired.attributes,
        "entitlements": desired.entitlements.iter().map(entitlement_json).collect::<Vec<_>>(),
        "credentials": pb::CredentialAction::try_from(desired.credentials)
            .map(|c| c.as_str_name())
            .unwrap_or("CREDENTIAL_ACTION_UNSPECIFIED"),
        "owned_identities": desired.owned_identities.as_ref().map(crate::owned::directive_json),
    })
}

/// An acknowledgement as JSON.
pub fn acknowledgement_json(ack: &pb::ApplyResponse) -> Value {
    json!({
        "command_id": ack.command_id,
        "changes": ack.changes.iter().map(|c| json!({ "action": c.action, "subject": c.subject })).collect::<Vec<_>>(),
        "target_native_id": ack.target_native_id,
        "warnings": ack.warnings,
        "residual_risks": ack.residual_risks.iter().map(crate::credentials::risk_json).collect::<Vec<_>>(),
        "cutoffs": ack.cutoffs.iter().map(crate::credentials::cutoff_json).collect::<Vec<_>>(),
        "awaiting_fulfilment": ack.awaiting_fulfilment,
        "ticket": ack.ticket.as_ref().map(|t| json!({ "id": t.ticket_id, "url": t.url, "queue": t.queue, "action": t.action })),
    })
}

/// A read-back as JSON.
pub fn read_back_json(state: &pb::AccountState) -> Value {
    let account = state.account.clone().unwrap_or_default();
    let credentials = state.credentials.clone().unwrap_or_default();
    json!({
        "person_id": account.person_id,
        "account_name": account.account_name,
        "exists": state.exists,
        "enabled": state.enabled,
        "attributes": state.attributes,
        "entitlements": state.entitlements.iter().map(entitlement_json).collect::<Vec<_>>(),
        "credentials": {
            "active": credentials.active,
            "complete": credentials.complete,
            "residual_risks": credentials.residual_risks.iter().map(crate::credentials::risk_json).collect::<Vec<_>>(),
            "cutoffs": credentials.cutoffs.iter().map(crate::credentials::cutoff_json).collect::<Vec<_>>(),
        },
        "target_native_id": state.target_native_id,
        "attestation": state.attestation.as_ref().map(attestation_json),
        "owned_identities": state.owned_identities.iter().map(crate::owned::identity_json).collect::<Vec<_>>(),
        "owned_identities_complete": state.owned_identities_complete,
    })
}

/// A manual target's attestation as JSON (who and when as the ticketing
/// system recorded them, the command answered, the export's digest).
pub fn attestation_json(attestation: &pb::Attestation) -> Value {
    json!({
        "ticket_id": attestation.ticket_id,
        "entry_id": attestation.entry_id,
        "fulfiller": attestation.fulfiller,
        "attested_at": attestation.attested_at,
        "command_id": attestation.command_id,
        "export_digest": attestation.export_digest,
        "export_name": attestation.export_name,
        "ticket_status": attestation.ticket_status,
    })
}

/// One approval decision for the API.
pub fn approval_to_proto(approval: &ApprovalRecord) -> pb::ApprovalDecision {
    pb::ApprovalDecision {
        approver: approval.approver.clone(),
        decision: approval.decision.clone(),
        at: format_time(Some(approval.at)),
        comment: approval.comment.clone(),
    }
}

/// One task's API status.
pub fn task_status(task: &TaskRecord, approvals: &[ApprovalRecord]) -> pb::TaskStatus {
    pb::TaskStatus {
        target_id: task.target_id.clone(),
        state: task.state.to_proto() as i32,
        attempts: task.attempts,
        last_error: task.last_error.clone(),
        command_id: task.command_id.clone(),
        desired: task.planned.desired.clone(),
        acknowledgement: task.acknowledgement.clone(),
        read_back: task.read_back.clone(),
        differences: task.differences.clone(),
        planned_at: format_time(Some(task.planned_at)),
        dispatched_at: format_time(task.dispatched_at),
        acknowledged_at: format_time(task.acknowledged_at),
        finished_at: format_time(task.finished_at),
        deadline_at: format_time(Some(task.deadline_at)),
        deadline_breached: task.deadline_breached,
        awaiting_approval: task.planned.awaiting_approval.clone(),
        approvals_required: task.planned.approvals_required,
        approver_group: task.planned.approver_group.clone(),
        approvals: approvals.iter().filter(|a| a.target_id == task.target_id).map(approval_to_proto).collect(),
        next_attempt_at: format_time(task.next_attempt_at),
        residual_risks: task.residual_risks.clone(),
        cutoffs: crate::credentials::task_cutoffs(task),
        ticket: task.acknowledgement.as_ref().and_then(|ack| ack.ticket.clone()),
        attestation: task.read_back.as_ref().and_then(|state| state.attestation.clone()),
    }
}

/// Tasks in the plan's (policy) order.
pub fn in_plan_order(event: &EventRecord, mut tasks: Vec<TaskRecord>) -> Vec<TaskRecord> {
    let position = |target: &str| event.plan.targets.iter().position(|t| t.target_id == target).unwrap_or(usize::MAX);
    tasks.sort_by_key(|t| position(&t.target_id));
    tasks
}

/// An event's API status.
pub fn event_status(event: &EventRecord, tasks: &[TaskRecord], approvals: &[ApprovalRecord]) -> pb::EventStatus {
    pb::EventStatus {
        event_id: event.event_id.clone(),
        kind: kind_to_proto(event.kind) as i32,
        person_id: event.person_id.clone(),
        state: event.state.to_proto() as i32,
        effective_at: format_time(Some(event.effective_at)),
        received_at: format_time(Some(event.received_at)),
        initiator: event.initiator.clone(),
        source_system: event.source_system.clone(),
        urgent: event.urgent,
        policy_hash: event.policy_hash.clone(),
        plan_hash: event.plan_hash.clone(),
        deadline_breached: tasks.iter().any(|t| t.deadline_breached),
        tasks: tasks.iter().map(|t| task_status(t, approvals)).collect(),
        trace_id: crate::tracing_context::trace_id_of(&event.trace_id).to_owned(),
        residual_risks: crate::credentials::event_risk_labels(tasks),
        calendar: Vec::new(),
        calendar_origin: String::new(),
    }
}

/// The evidence document for one event.
pub fn evidence_json(
    event: &EventRecord,
    tasks: &[TaskRecord],
    approvals: &[ApprovalRecord],
    audit: &[AuditRecord],
) -> Value {
    let targets: Vec<Value> = tasks
        .iter()
        .map(|task| {
            json!({
                "target_id": task.target_id,
                "state": task.state.as_str(),
                "workflows": task.planned.workflows,
                "command_id": task.command_id,
                "desired": desired_json(&task.desired()),
                "awaiting_approval": task.planned.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
                "approvals_required": task.planned.approvals_required,
                "approver_group": task.planned.approver_group,
                "approvals": approvals.iter().filter(|a| a.target_id == task.target_id).map(|a| json!({
                    "approver": a.approver, "decision": a.decision, "comment": a.comment, "at": format_time(Some(a.at)),
                })).collect::<Vec<_>>(),
                "acknowledgement": task.acknowledgement.as_ref().map(acknowledgement_json),
                "read_back": task.read_back.as_ref().map(read_back_json),
                "differences": task.differences,
                "residual_risks": task.residual_risks.iter().map(crate::credentials::risk_json).collect::<Vec<_>>(),
                "attempts": task.attempts,
                "last_error": task.last_error,
                "timings": {
                    "planned_at": format_time(Some(task.planned_at)),
                    "dispatched_at": format_time(task.dispatched_at),
                    "acknowledged_at": format_time(task.acknowledged_at),
                    "finished_at": format_time(task.finished_at),
                },
                "deadline": { "deadline_at": format_time(Some(task.deadline_at)), "breached": task.deadline_breached },
            })
        })
        .collect();
    json!({
        "event_id": event.event_id,
        "kind": kind_name(event.kind),
        "person_id": event.person_id,
        "state": event.state.as_str(),
        "initiator": event.initiator,
        "source_system": event.source_system,
        "urgent": event.urgent,
        "effective_at": format_time(Some(event.effective_at)),
        "received_at": format_time(Some(event.received_at)),
        "finished_at": format_time(event.finished_at),
        "trace_id": crate::tracing_context::trace_id_of(&event.trace_id),
        "attributes": event.attributes,
        "workflows": event.plan.workflows.iter().map(|w| json!({ "name": w.name, "owner": w.owner })).collect::<Vec<_>>(),
        "policy_hash": event.policy_hash,
        "plan_hash": event.plan_hash,
        "plan": event.plan.targets.iter().map(|t| json!({
            "target_id": t.target_id,
            "desired": t.desired.as_ref().map(desired_json),
            "awaiting_approval": t.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
            "approvals_required": t.approvals_required,
            "approver_group": t.approver_group,
            "deadline_seconds": t.deadline_seconds,
            "workflows": t.workflows,
        })).collect::<Vec<_>>(),
        "targets": targets,
        // A state submit's event: the source record it was derived from
        // (`crate::ingest`); null for an event its sender classified.
        "derived_from": audit
            .iter()
            .find(|r| r.action == "ingest.derived")
            .and_then(|r| serde_json::from_str::<Value>(&r.payload).ok()),
        "audit": audit.iter().map(|r| json!({
            "seq": r.seq, "at": format_time(Some(r.at)), "principal": r.principal, "action": r.action, "hash": r.hash,
        })).collect::<Vec<_>>(),
    })
}
