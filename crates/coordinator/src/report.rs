//! The control evidence report: what an auditor asks for a period, per
//! control, computed from the audit chain alone.
//!
//! For a period [from, to) the report walks the audit chain (every record
//! appended before `to`) and answers:
//!
//! - **NIST CSF 2.0 PR.AA-01** (identities and credentials of authorised
//!   users are managed): every lifecycle event accepted in the period with
//!   its workflows and their owners, its initiator and source, its
//!   approvals, and per target the acknowledgement, the read-back outcome
//!   and the time to verified (or to failure) against the deadline;
//! - **PR.AC-4** (access permissions managed, least privilege, separation of
//!   duties): the leavers, those not fully revoked in time and why, the
//!   approvals recorded and the recertification campaigns with their
//!   results;
//! - **OWASP NHI-03** as the project's design maps it (lifecycle failures and
//!   stale access of non-human identities): the non-human identities each
//!   task's read-back showed its person owning (a leaver's service users,
//!   keys and roles, transferred, disabled or reported: issue #20), records
//!   `nhi.*` where the chain holds any, and the stale accounts per target
//!   from the latest reconciliation of each;
//! - the **manual targets**: each task's ticket and the attestation that
//!   verified it (fulfiller, time, export digest);
//! - the **audit chain**: its verification and the head hash at `to`.
//!
//! Every figure lists the sequence numbers of the records it comes from, so
//! an auditor can recompute it from the chain (`jmlctl audit verify` and an
//! export of the records).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::{Engine, EngineError};
use crate::event::{InvalidEvent, format_time, now_ms, parse_time};
use crate::store::{AuditRecord, verify_audit};

/// Records read per page.
const PAGE: u32 = 1000;

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(InvalidEvent { field: field.into(), message: message.into() })
}

/// Every record appended before `to` (Unix ms), in chain order.
async fn records_before(engine: &Engine, to: i64) -> Result<Vec<AuditRecord>, EngineError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = engine.store().audit_records(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == PAGE as usize;
        out.extend(page.into_iter().filter(|r| r.at < to));
        if !full {
            break;
        }
    }
    Ok(out)
}

/// One target's part of one event.
#[derive(Default)]
struct TargetLine {
    deadline_at: String,
    acknowledged_at: Option<i64>,
    outcome: &'static str,
    finished_at: Option<i64>,
    reason: String,
    attestation: Value,
    ticket: Value,
    seqs: Vec<i64>,
}

/// The control evidence report for the request's period.
pub async fn control_report(
    engine: &Engine,
    request: &jml_contract::v1::ControlReportRequest,
) -> Result<Value, EngineError> {
    let from = parse_time(&request.from).map_err(|m| invalid("from", m))?;
    let to = if request.to.is_empty() { now_ms() } else { parse_time(&request.to).map_err(|m| invalid("to", m))? };
    if to <= from {
        return Err(invalid("to", "must be after from"));
    }
    let records = records_before(engine, to).await?;
    let verdict = verify_audit(engine.store().as_ref()).await?;
    Ok(build(&records, from, to, verdict.broken.is_none(), verdict.records, verdict.broken.clone()))
}

fn payload(record: &AuditRecord) -> Value {
    serde_json::from_str(&record.payload).unwrap_or(Value::Null)
}

/// Builds the report from the chain's records (pure: the same records give
/// the same report; tests recompute it).
pub fn build(
    records: &[AuditRecord],
    from: i64,
    to: i64,
    intact: bool,
    checked: u64,
    broken: Option<(i64, String)>,
) -> Value {
    // Events accepted in the period, in order.
    let mut order: Vec<String> = Vec::new();
    let mut events: BTreeMap<String, Value> = BTreeMap::new();
    let mut targets: BTreeMap<(String, String), TargetLine> = BTreeMap::new();
    let mut approvals: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut stale: BTreeMap<String, Value> = BTreeMap::new();
    let mut nhi: Vec<Value> = Vec::new();
    let mut campaign_records = Vec::new();
    for record in records {
        let body = payload(record);
        let in_period = record.at >= from;
        match record.action.as_str() {
            "event.accepted" if in_period => {
                order.push(record.event_id.clone());
                for task in body["tasks"].as_array().cloned().unwrap_or_default() {
                    let target = task["target_id"].as_str().unwrap_or_default().to_owned();
                    targets.insert(
                        (record.event_id.clone(), target),
                        TargetLine {
                            deadline_at: task["deadline_at"].as_str().unwrap_or_default().to_owned(),
                            outcome: "unfinished",
                            seqs: vec![record.seq],
                            ..Default::default()
                        },
                    );
                }
                events.insert(
                    record.event_id.clone(),
                    json!({
                        "event_id": record.event_id,
                        "kind": body["kind"],
                        "person_id": body["person_id"],
                        "initiator": record.principal,
                        "source_system": body["source_system"],
                        "received_at": format_time(Some(record.at)),
                        "received_ms": record.at,
                        "workflows": body["workflows"],
                        "policy_hash": body["policy_hash"],
                        "seq": record.seq,
                    }),
                );
            }
            action if action.starts_with("approval.") && events.contains_key(&record.event_id) => {
                approvals.entry(record.event_id.clone()).or_default().push(json!({
                    "approver": record.principal,
                    "decision": action.trim_start_matches("approval."),
                    "target_id": body["target_id"],
                    "at": format_time(Some(record.at)),
                    "seq": record.seq,
                }));
            }
            action if action.starts_with("task.") => {
                let target = body["target_id"].as_str().unwrap_or_default().to_owned();
                let Some(line) = targets.get_mut(&(record.event_id.clone(), target)) else { continue };
                line.seqs.push(record.seq);
                match action {
                    "task.acknowledged" => {
                        line.acknowledged_at.get_or_insert(record.at);
                    }
                    "task.awaiting_fulfilment" => {
                        line.outcome = "awaiting_fulfilment";
                        line.ticket = body["ticket"].clone();
                    }
                    "task.fulfilment_pending" => {
                        line.reason = body["reason"].as_str().unwrap_or_default().to_owned();
                    }
                    "task.verified" | "task.verified_with_residual_risk" => {
                        line.outcome =
                            if action == "task.verified" { "verified" } else { "verified_with_residual_risk" };
                        line.finished_at = Some(record.at);
                        line.attestation = body["read_back"]["attestation"].clone();
                        line.reason.clear();
                    }
                    "task.failed" => {
                        line.outcome = "failed";
                        line.finished_at = Some(record.at);
                        line.reason = body["error"].as_str().unwrap_or_default().to_owned();
                    }
                    "task.superseded" => {
                        line.outcome = "superseded";
                        line.finished_at = Some(record.at);
                        line.reason = body["reason"].as_str().unwrap_or_default().to_owned();
                    }
                    "task.retry_scheduled" => {
                        line.reason = body["error"].as_str().unwrap_or_default().to_owned();
                    }
                    _ => {}
                }
                // The non-human identities the person owned on the target, as
                // the task's last read-back showed them (a leaver's transfer,
                // disable or report: issue #20).
                if let Some(owned) = body["read_back"]["owned_identities"].as_array().filter(|o| !o.is_empty()) {
                    nhi.push(json!({
                        "action": action,
                        "event_id": record.event_id,
                        "target_id": body["target_id"],
                        "owned_identities": owned,
                        "complete": body["read_back"]["owned_identities_complete"],
                        "seq": record.seq,
                    }));
                }
            }
            "reconcile.finished" if in_period => {
                let target = body["target_id"].as_str().unwrap_or_default().to_owned();
                stale.insert(
                    target.clone(),
                    json!({
                        "target_id": target,
                        "stale_accounts": body["counts"]["stale_accounts"],
                        "inactive_accounts": body["counts"]["inactive_accounts"],
                        "at": format_time(Some(record.at)),
                        "seq": record.seq,
                    }),
                );
            }
            action if action.starts_with("nhi.") && in_period => {
                nhi.push(json!({ "action": action, "event_id": record.event_id, "payload": body, "seq": record.seq }));
            }
            action if action.starts_with("campaign.") => {
                campaign_records.push((record.seq, record.at, record.principal.clone(), action.to_owned(), body))
            }
            _ => {}
        }
    }

    // PR.AA-01: every event, per target.
    let mut event_rows = Vec::new();
    let (mut tasks_total, mut tasks_verified, mut tasks_in_time) = (0u64, 0u64, 0u64);
    let mut leavers = Vec::new();
    let mut leavers_pending = 0usize;
    let mut leavers_late = Vec::new();
    let mut manual = Vec::new();
    for event_id in &order {
        let Some(event) = events.get(event_id) else { continue };
        let received = event["received_ms"].as_i64().unwrap_or_default();
        let mut rows = Vec::new();
        let mut fully_revoked_in_time = true;
        let mut pending_event = false;
        for ((id, target), line) in targets.range((event_id.clone(), String::new())..) {
            if id != event_id {
                break;
            }
            tasks_total += 1;
            let deadline = parse_time(&line.deadline_at).ok();
            let proven = matches!(line.outcome, "verified" | "verified_with_residual_risk");
            let in_time = proven && deadline.zip(line.finished_at).is_some_and(|(d, f)| f <= d);
            tasks_verified += u64::from(proven);
            tasks_in_time += u64::from(in_time);
            // Not finished and its deadline after the period: not late (yet),
            // e.g. a deletion after retention scheduled weeks ahead.
            let pending =
                !proven && !matches!(line.outcome, "failed" | "superseded") && deadline.is_some_and(|d| d > to);
            if pending {
                pending_event = true;
                fully_revoked_in_time = false;
            } else if !in_time && line.outcome != "superseded" {
                fully_revoked_in_time = false;
                if event["kind"] == "leaver" {
                    let why = match line.outcome {
                        "verified" | "verified_with_residual_risk" => "verified after its deadline".to_owned(),
                        "failed" => format!("failed: {}", line.reason),
                        "awaiting_fulfilment" => format!(
                            "awaiting fulfilment: {}",
                            if line.reason.is_empty() { "no attestation yet" } else { &line.reason }
                        ),
                        other => format!(
                            "{other}{}",
                            if line.reason.is_empty() { String::new() } else { format!(": {}", line.reason) }
                        ),
                    };
                    leavers_late.push(json!({
                        "event_id": event_id, "person_id": event["person_id"], "target_id": target,
                        "deadline_at": line.deadline_at, "outcome": line.outcome, "why": why, "audit_seqs": line.seqs,
                    }));
                }
            }
            if !line.ticket.is_null() || !line.attestation.is_null() {
                manual.push(json!({
                    "event_id": event_id, "target_id": target, "ticket": line.ticket,
                    "attestation": line.attestation, "outcome": line.outcome, "pending_reason": line.reason,
                    "audit_seqs": line.seqs,
                }));
            }
            rows.push(json!({
                "target_id": target,
                "deadline_at": line.deadline_at,
                "acknowledged_at": format_time(line.acknowledged_at),
                "outcome": if pending { "pending" } else { line.outcome },
                "finished_at": format_time(line.finished_at),
                "seconds_to_outcome": line.finished_at.map(|f| (f - received) as f64 / 1000.0),
                "within_deadline": in_time,
                "pending": pending,
                "reason": line.reason,
                "audit_seqs": line.seqs,
            }));
        }
        if event["kind"] == "leaver" {
            // Pending: some task's deadline is after the period (and none late).
            let pending = pending_event && leavers_late.iter().all(|l| l["event_id"] != event_id.as_str());
            leavers_pending += usize::from(pending);
            leavers.push(json!({
                "event_id": event_id, "person_id": event["person_id"],
                "fully_revoked_in_time": fully_revoked_in_time, "pending": pending,
            }));
        }
        let mut row = event.clone();
        if let Some(object) = row.as_object_mut() {
            object.remove("received_ms");
            object.insert("approvals".into(), json!(approvals.get(event_id).cloned().unwrap_or_default()));
            object.insert("targets".into(), json!(rows));
        }
        event_rows.push(row);
    }

    // Campaigns started in the period, folded from their records.
    let started: Vec<String> = campaign_records
        .iter()
        .filter(|(_, at, _, action, _)| action == "campaign.started" && *at >= from)
        .filter_map(|(_, _, _, _, body)| body["campaign_id"].as_str().map(str::to_owned))
        .collect();
    let folded: Vec<(i64, i64, String, String, Value)> = campaign_records.clone();
    let campaigns: Vec<Value> = started
        .iter()
        .filter_map(|id| crate::campaign::fold(id, &folded))
        .map(|c| {
            json!({
                "campaign_id": c.campaign_id, "name": c.name, "scope": c.scope, "started_by": c.started_by,
                "deadline_at": c.deadline_at, "items": c.items.len(), "kept": c.kept, "revoked": c.revoked,
                "undecided": c.undecided, "escalated": c.escalated,
                "audit_seqs": folded.iter().filter(|r| r.4["campaign_id"] == c.campaign_id.as_str()).map(|r| r.0).collect::<Vec<_>>(),
            })
        })
        .collect();

    let head = records.last();
    let in_period: Vec<&AuditRecord> = records.iter().filter(|r| r.at >= from).collect();
    let leavers_in_time = leavers.iter().filter(|l| l["fully_revoked_in_time"] == true).count();
    json!({
        "period": { "from": format_time(Some(from)), "to": format_time(Some(to)) },
        "audit": {
            "intact": intact,
            "records_checked": checked,
            "first_broken": broken.map(|(seq, reason)| json!({ "seq": seq, "reason": reason })),
            "head_seq_at_to": head.map(|r| r.seq),
            "head_hash_at_to": head.map(|r| r.hash.clone()),
            "records_in_period": in_period.len(),
            "first_seq_in_period": in_period.first().map(|r| r.seq),
            "last_seq_in_period": in_period.last().map(|r| r.seq),
        },
        "controls": {
            "PR.AA-01": {
                "title": "NIST CSF 2.0 PR.AA-01: identities and credentials of authorized users, services and hardware are managed",
                "summary": {
                    "events": event_rows.len(),
                    "tasks": tasks_total,
                    "tasks_verified": tasks_verified,
                    "tasks_verified_within_deadline": tasks_in_time,
                },
                "events": event_rows,
            },
            "PR.AC-4": {
                "title": "NIST CSF PR.AC-4: access permissions are managed (least privilege, separation of duties)",
                "summary": {
                    "leavers": leavers.len(),
                    "leavers_fully_revoked_in_time": leavers_in_time,
                    "leavers_not_fully_revoked_in_time": leavers.len() - leavers_in_time - leavers_pending,
                    "leavers_pending_deadline_after_period": leavers_pending,
                    "approvals": approvals.values().map(Vec::len).sum::<usize>(),
                    "campaigns": campaigns.len(),
                },
                "leavers_not_revoked_in_time": leavers_late,
                "campaigns": campaigns,
            },
            "NHI-03": {
                "title": "OWASP NHI-03 as this project maps it: lifecycle failures and stale access of non-human identities",
                "summary": {
                    "non_human_identity_records": nhi.len(),
                    "targets_with_stale_figures": stale.len(),
                    "stale_accounts": stale.values().filter_map(|s| s["stale_accounts"].as_u64()).sum::<u64>(),
                },
                "non_human_identities_of_leavers": nhi,
                "stale_accounts_per_target": stale.into_values().collect::<Vec<_>>(),
            },
        },
        "manual_targets": manual,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::build;
    use crate::event::format_time;
    use crate::store::AuditRecord;

    fn record(seq: i64, at: i64, event_id: &str, action: &str, payload: serde_json::Value) -> AuditRecord {
        AuditRecord {
            seq,
            at,
            principal: "hr".into(),
            event_id: event_id.into(),
            action: action.into(),
            payload: payload.to_string(),
            prev_hash: String::new(),
            hash: format!("h{seq}"),
        }
    }

    #[test]
    fn a_leaver_whose_deadline_is_after_the_period_is_pending_not_late() {
        let (from, to) = (1_000, 10_000);
        let task = |deadline: i64| {
            json!({ "kind": "leaver", "person_id": "P1",
            "tasks": [{ "target_id": "ldap", "deadline_at": format_time(Some(deadline)) }] })
        };
        let records = [
            // Scheduled weeks ahead: nothing done yet, deadline after `to`.
            record(1, 2_000, "retention-1", "event.accepted", task(50_000)),
            // Due within the period and not finished: late.
            record(2, 2_000, "leaver-2", "event.accepted", task(5_000)),
            // Verified with residual risk before its deadline: revoked in time.
            record(3, 2_000, "leaver-3", "event.accepted", task(5_000)),
            record(4, 3_000, "leaver-3", "task.verified_with_residual_risk", json!({ "target_id": "ldap" })),
        ];
        let report = build(&records, from, to, true, 4, None);
        let summary = &report["controls"]["PR.AC-4"]["summary"];
        assert_eq!(summary["leavers"], 3, "{summary}");
        assert_eq!(summary["leavers_fully_revoked_in_time"], 1, "{summary}");
        assert_eq!(summary["leavers_not_fully_revoked_in_time"], 1, "{summary}");
        assert_eq!(summary["leavers_pending_deadline_after_period"], 1, "{summary}");
        let late = report["controls"]["PR.AC-4"]["leavers_not_revoked_in_time"].as_array().cloned().unwrap_or_default();
        assert_eq!(late.iter().map(|l| l["event_id"].clone()).collect::<Vec<_>>(), [json!("leaver-2")]);
        assert_eq!(report["controls"]["PR.AA-01"]["summary"]["tasks_verified"], 1);
    }
}
