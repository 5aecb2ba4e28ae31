//! `jmlctl status` and `jmlctl watch`: an event's status per target, once
//! or followed until it is verified or failed; and the names and JSON of an
//! event's and a task's state that the other commands print too.

use coordinator::event::kind_name;
use coordinator::evidence::{acknowledgement_json, desired_json, entitlement_json, read_back_json};
use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::connect;
use crate::failure::{Failure, failed, from_status};
use crate::print_json;

// `jmlctl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The event id.
    event_id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

// `jmlctl watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The event id.
    event_id: String,
    /// Print one JSON document per update.
    #[arg(long)]
    json: bool,
}

/// `jmlctl status`.
pub async fn status(coordinator: &str, args: StatusArgs) -> Result<(), Failure> {
    let StatusArgs { event_id, json } = args;
    let mut client = connect(coordinator).await?;
    let status = client.get_event(pb::GetEventRequest { event_id }).await.map_err(from_status)?.into_inner();
    if json {
        print_json(&status_json(&status))
    } else {
        print_status(&status)
    }
    Ok(())
}

/// `jmlctl watch`: exit 0 when verified or nothing to do, 7 when verified
/// with residual risk, 1 otherwise.
pub async fn watch(coordinator: &str, args: WatchArgs) -> Result<(), Failure> {
    let WatchArgs { event_id, json } = args;
    let mut client = connect(coordinator).await?;
    let mut stream = client.watch_event(pb::GetEventRequest { event_id }).await.map_err(from_status)?.into_inner();
    let mut last = None;
    while let Some(status) = stream.message().await.map_err(from_status)? {
        if json {
            println!("{}", status_json(&status));
        } else {
            print_status(&status);
        }
        last = Some(status);
    }
    match last {
        Some(status)
            if status.state == pb::EventState::Verified as i32
                || status.state == pb::EventState::NothingToDo as i32 =>
        {
            Ok(())
        }
        Some(status) if status.state == pb::EventState::VerifiedWithResidualRisk as i32 => Err(Failure {
            code: 7,
            message: format!(
                "event {} is verified with residual risk: {}",
                status.event_id,
                status.residual_risks.join("; ")
            ),
        }),
        Some(status) => Err(failed(format!("event {} is {}", status.event_id, event_state_name(status.state)))),
        None => Err(failed("the coordinator closed the stream without a status")),
    }
}

pub fn state_name(state: i32) -> String {
    pb::TaskState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("TASK_STATE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn event_state_name(state: i32) -> String {
    pb::EventState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("EVENT_STATE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn event_kind_name(kind: i32) -> String {
    coordinator::event::kind_from_proto(kind).map(kind_name).unwrap_or("unknown").to_owned()
}

pub fn task_json(task: &pb::TaskStatus) -> Value {
    json!({
        "target_id": task.target_id,
        "state": state_name(task.state),
        "attempts": task.attempts,
        "last_error": task.last_error,
        "command_id": task.command_id,
        "desired": task.desired.as_ref().map(desired_json),
        "acknowledgement": task.acknowledgement.as_ref().map(acknowledgement_json),
        "read_back": task.read_back.as_ref().map(read_back_json),
        "differences": task.differences,
        "residual_risks": task.residual_risks.iter().map(coordinator::credentials::risk_json).collect::<Vec<_>>(),
        "cutoffs": task.cutoffs.iter().map(coordinator::credentials::cutoff_json).collect::<Vec<_>>(),
        "planned_at": task.planned_at,
        "dispatched_at": task.dispatched_at,
        "acknowledged_at": task.acknowledged_at,
        "finished_at": task.finished_at,
        "next_attempt_at": task.next_attempt_at,
        "deadline_at": task.deadline_at,
        "deadline_breached": task.deadline_breached,
        "awaiting_approval": task.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
        "approvals_required": task.approvals_required,
        "approver_group": task.approver_group,
        "approvals": task.approvals.iter().map(|a| json!({
            "approver": a.approver, "decision": a.decision, "at": a.at, "comment": a.comment,
        })).collect::<Vec<_>>(),
    })
}

pub fn status_json(status: &pb::EventStatus) -> Value {
    json!({
        "event_id": status.event_id,
        "kind": event_kind_name(status.kind),
        "person_id": status.person_id,
        "state": event_state_name(status.state),
        "effective_at": status.effective_at,
        "received_at": status.received_at,
        "initiator": status.initiator,
        "source_system": status.source_system,
        "urgent": status.urgent,
        "policy_hash": status.policy_hash,
        "plan_hash": status.plan_hash,
        "trace_id": status.trace_id,
        "deadline_breached": status.deadline_breached,
        "tasks": status.tasks.iter().map(task_json).collect::<Vec<_>>(),
        "residual_risks": status.residual_risks,
        "calendar": status.calendar.iter().map(|entry| json!({
            "stage": entry.stage, "event_id": entry.event_id, "target_id": entry.target_id,
            "due_at": entry.due_at, "state": state_name(entry.state), "note": entry.note,
        })).collect::<Vec<_>>(),
        "calendar_origin": status.calendar_origin,
    })
}

pub fn print_status(status: &pb::EventStatus) {
    println!(
        "event {} ({}, person {}): {}{}\n  trace {}",
        status.event_id,
        event_kind_name(status.kind),
        status.person_id,
        event_state_name(status.state),
        if status.deadline_breached { " [deadline breached]" } else { "" },
        if status.trace_id.is_empty() { "-" } else { &status.trace_id }
    );
    for task in &status.tasks {
        println!(
            "  {:<12} {:<18} attempts={} deadline={}{}",
            task.target_id,
            state_name(task.state),
            task.attempts,
            task.deadline_at,
            if task.deadline_breached { " BREACHED" } else { "" }
        );
        if !task.awaiting_approval.is_empty() {
            let grants: Vec<String> = task.awaiting_approval.iter().map(|e| format!("{}:{}", e.kind, e.id)).collect();
            println!(
                "      awaiting approval: {} ({} of group {:?}, {} decided)",
                grants.join(", "),
                task.approvals_required,
                task.approver_group,
                task.approvals.len()
            );
        }
        if !task.last_error.is_empty() {
            println!("      last error: {}", task.last_error);
        }
        for difference in &task.differences {
            println!("      difference: {difference}");
        }
        for risk in &task.residual_risks {
            println!("      residual risk: {}", connector_kit::credentials::label(risk));
        }
        coordinator::owned::status_lines(task).iter().for_each(|line| println!("      {line}"));
    }
    if !status.calendar_origin.is_empty() {
        println!("  scheduled by the calendar from event {}", status.calendar_origin);
    }
    for entry in &status.calendar {
        let note = if entry.note.is_empty() { String::new() } else { format!(" ({})", entry.note) };
        println!(
            "  calendar: {} on {} due {}: {} [event {}]{note}",
            entry.stage.replace('_', " "),
            entry.target_id,
            entry.due_at,
            state_name(entry.state),
            entry.event_id
        );
    }
}
