//! The calendar: lifecycle stages that run at a time derived from an event
//! rather than at the event's own effective time.
//!
//! **Deletion after retention.** A target's `delete_after` (e.g. `30d`)
//! makes every leaver schedule, per such target, an internal event (source
//! system [`CALENDAR_SOURCE`], id [`deletion_event_id`], kind leaver)
//! effective at the leaver's effective time plus the retention. Its one task
//! deletes the account (presence absent) through the ordinary path: it waits
//! in the person's lane for its time, is dispatched with a command id,
//! acknowledged, read back (the account must be gone) and audited like any
//! task. The leaver's status and evidence list it with when it is due
//! ([`entries`]); its own status and evidence name the leaver
//! (`calendar_origin`).
//!
//! A rehire cancels it before it runs: any later joiner or mover of the
//! person from the source of truth (a rehire kind too) supersedes the pending
//! deletion at once on this process ([`cancel_deletions`]), and the engine
//! checks again right before it dispatches a deletion, whatever process runs
//! it ([`deletion_cancelled_by`]), so a replica that did not see the rehire
//! never deletes a rehired person's account. A deletion whose leaver cannot
//! be found is not run either (fail closed: nothing proves the person left).
//!
//! A target whose connector does not declare delete support cannot have a
//! retention: the coordinator refuses to start with such a policy when the
//! connector answers `Describe` ([`check_connectors`]); when it cannot be
//! asked at start, the connector refuses the deletion (the kit validates an
//! absent desired state against its capabilities) and the task fails, seen
//! in status and `jmlctl overdue`.

use std::collections::BTreeMap;
use std::time::Duration;

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::engine::{Engine, EngineError, SubmitOutcome};
use crate::event::{ValidEvent, format_time, kind_to_proto};
use crate::policy::{EventKindName, Policy, PolicyIssue, parse_duration};
use crate::store::{EventRecord, RECONCILIATION_SOURCE, Store, StoreError, TaskRecord};

/// The `source_system` (and initiator) of the events the calendar schedules.
pub const CALENDAR_SOURCE: &str = "calendar";

/// The stage name of a deletion after retention.
pub const DELETION_STAGE: &str = "deletion_after_retention";

/// How the id of a deletion event starts.
const DELETION_PREFIX: &str = "retention:";

/// Whether events from this source are internal (scheduled by the
/// coordinator itself): they neither schedule nor cancel calendar stages.
pub fn internal_source(source_system: &str) -> bool {
    source_system == CALENDAR_SOURCE || source_system == RECONCILIATION_SOURCE
}

/// The retention of a target (`delete_after`), when it has one.
pub fn retention(policy: &Policy, target_id: &str) -> Option<Duration> {
    policy.target(target_id)?.delete_after.as_deref().and_then(|text| parse_duration(text).ok())
}

/// How the id of a pre-hire event starts.
const PREHIRE_PREFIX: &str = "prehire:";

/// How the id of the removal of what a cancelled pre-hire created starts.
const PREHIRE_REMOVAL_PREFIX: &str = "prehire-removal:";

/// The stage name of a pre-hire.
pub const PREHIRE_STAGE: &str = "prehire";

/// The stage name of the removal of what a cancelled hire's pre-hire created.
pub const PREHIRE_REMOVAL_STAGE: &str = "prehire_removal";

/// Whether an event id is one the calendar gives its own events: refused
/// from sources.
pub fn reserved_event_id(event_id: &str) -> bool {
    [DELETION_PREFIX, PREHIRE_PREFIX, PREHIRE_REMOVAL_PREFIX].iter().any(|prefix| event_id.starts_with(prefix))
}

/// The id of the pre-hire of `joiner_event_id` on `target_id`.
pub fn prehire_event_id(target_id: &str, joiner_event_id: &str) -> String {
    format!("{PREHIRE_PREFIX}{target_id}:{joiner_event_id}")
}

/// The id of the removal of what the pre-hire of `joiner_event_id` created
/// on `target_id`.
pub fn prehire_removal_event_id(target_id: &str, joiner_event_id: &str) -> String {
    format!("{PREHIRE_REMOVAL_PREFIX}{target_id}:{joiner_event_id}")
}

/// (target, joiner event id) of a pre-hire event's id.
pub fn prehire_origin(event_id: &str) -> Option<(&str, &str)> {
    event_id.strip_prefix(PREHIRE_PREFIX)?.split_once(':')
}

/// (target, joiner event id) of a pre-hire removal's id.
pub fn prehire_removal_origin(event_id: &str) -> Option<(&str, &str)> {
    event_id.strip_prefix(PREHIRE_REMOVAL_PREFIX)?.split_once(':')
}

/// The id of the deletion of `leaver_event_id`'s account on `target_id`:
/// deterministic, so scheduling it twice is idempotent.
pub fn deletion_event_id(target_id: &str, leaver_event_id: &str) -> String {
    format!("{DELETION_PREFIX}{target_id}:{leaver_event_id}")
}

/// (target, leaver event id) of a deletion event's id; `None` for any other id.
pub fn deletion_origin(event_id: &str) -> Option<(&str, &str)> {
    event_id.strip_prefix(DELETION_PREFIX)?.split_once(':')
}

/// Whether a task is a calendar deletion.
pub fn is_deletion(task: &TaskRecord) -> bool {
    deletion_origin(&task.event_id).is_some() && task.desired().presence == pb::Presence::Absent as i32
}

/// The event and plan deleting the leaver's account on one target after
/// its retention; `None` when the target has no retention or the leaver's
/// plan does not cover it.
pub fn deletion_plan(leaver: &EventRecord, target_id: &str, policy: &Policy) -> Option<(ValidEvent, pb::Plan)> {
    let retention = retention(policy, target_id)?;
    let planned = leaver.plan.targets.iter().find(|t| t.target_id == target_id)?;
    let account = planned.desired.as_ref()?.account.clone()?;
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let due = leaver.effective_at.saturating_add(retention_ms);
    let deadline = policy.target_deadlines.get(target_id).copied().unwrap_or(Duration::from_secs(900));
    let plan = pb::Plan {
        person_id: leaver.person_id.clone(),
        kind: kind_to_proto(EventKindName::Leaver) as i32,
        workflows: Vec::new(),
        targets: vec![pb::PlannedTarget {
            target_id: target_id.to_owned(),
            desired: Some(pb::DesiredAccount {
                account: Some(account),
                presence: pb::Presence::Absent as i32,
                enabled: false,
                attributes: BTreeMap::new(),
                entitlements: Vec::new(),
                credentials: pb::CredentialAction::RevokeAll as i32,
                owned_identities: None,
            }),
            awaiting_approval: Vec::new(),
            approvals_required: 0,
            approver_group: String::new(),
            deadline_seconds: deadline.as_secs(),
            workflows: Vec::new(),
        }],
    };
    let event = ValidEvent {
        event_id: deletion_event_id(target_id, &leaver.event_id),
        kind: EventKindName::Leaver,
        person_id: leaver.person_id.clone(),
        attributes: leaver.attributes.clone(),
        effective_at_ms: Some(due),
        source_system: CALENDAR_SOURCE.into(),
        urgent: false,
        source_changed_at_ms: None,
    };
    Some((event, plan))
}

/// What the calendar does after an event is accepted (or submitted again):
/// a leaver schedules its deletions (again: idempotent, so a resubmission
/// repairs a schedule a crash interrupted); a joiner or mover cancels the
/// person's pending deletions. Internal events do neither.
pub async fn after_submit(engine: &Engine, outcome: &SubmitOutcome) -> Result<(), EngineError> {
    let event = &outcome.event;
    let policy = engine.policy();
    let retentions = policy.file.targets.iter().any(|t| t.delete_after.is_some());
    let prehires = policy.file.targets.iter().any(|t| t.prehire.is_some())
        || policy.file.workflows.iter().any(|w| w.prehire.is_some());
    // Without a retention or pre-hire in the policy there is nothing to
    // schedule or cancel (and no store read on the submit path).
    if internal_source(&event.source_system) || !(retentions || prehires) {
        return Ok(());
    }
    match event.kind {
        EventKindName::Leaver => {
            if !outcome.duplicate {
                cancel_hires(engine, event).await?;
            }
            schedule_deletions(engine, event).await.map(|_| ())
        }
        EventKindName::Joiner => {
            if !outcome.duplicate {
                cancel_deletions(engine, event).await?;
            }
            schedule_prehires(engine, event).await.map(|_| ())
        }
        _ if !outcome.duplicate => cancel_deletions(engine, event).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// The pre-hire lead time of a planned target: the longest of the target's
/// `prehire` and the granting workflows'.
pub fn prehire_offset(policy: &Policy, planned: &pb::PlannedTarget) -> Option<Duration> {
    let target = policy.target(&planned.target_id)?.prehire.as_deref();
    let workflows = policy
        .file
        .workflows
        .iter()
        .filter(|w| planned.workflows.contains(&w.name))
        .filter_map(|w| w.prehire.as_deref());
    target.into_iter().chain(workflows).filter_map(|text| parse_duration(text).ok()).max()
}

/// The event and plan creating a joiner's account on one target ahead of
/// its start: present, disabled, without entitlements, and without
/// credentials (`REVOKE_ALL`, proven by the read-back, where the target can
/// prove it; elsewhere none is ever set on a new account, and the read-back
/// shows `enabled: false`). `None` when the target has no pre-hire, the
/// joiner grants nothing there, or the start is not ahead of `now_ms`.
pub fn prehire_plan(
    joiner: &EventRecord,
    planned: &pb::PlannedTarget,
    policy: &Policy,
    now_ms: i64,
    credentials_provable: bool,
) -> Option<(ValidEvent, pb::Plan)> {
    let offset = prehire_offset(policy, planned)?;
    let desired = planned.desired.as_ref()?;
    if !desired.enabled || desired.presence != pb::Presence::Present as i32 || joiner.effective_at <= now_ms {
        return None;
    }
    let offset_ms = i64::try_from(offset.as_millis()).unwrap_or(i64::MAX);
    let due = joiner.effective_at.saturating_sub(offset_ms).max(now_ms);
    let credentials =
        if credentials_provable { pb::CredentialAction::RevokeAll } else { pb::CredentialAction::Keep } as i32;
    let plan = pb::Plan {
        person_id: joiner.person_id.clone(),
        kind: kind_to_proto(EventKindName::Joiner) as i32,
        workflows: Vec::new(),
        targets: vec![pb::PlannedTarget {
            target_id: planned.target_id.clone(),
            desired: Some(pb::DesiredAccount {
                account: desired.account.clone(),
                presence: pb::Presence::Present as i32,
                enabled: false,
                attributes: desired.attributes.clone(),
                entitlements: Vec::new(),
                credentials,
                owned_identities: None,
            }),
            awaiting_approval: Vec::new(),
            approvals_required: 0,
            approver_group: String::new(),
            deadline_seconds: planned.deadline_seconds,
            workflows: planned.workflows.clone(),
        }],
    };
    let event = ValidEvent {
        event_id: prehire_event_id(&planned.target_id, &joiner.event_id),
        kind: EventKindName::Joiner,
        person_id: joiner.person_id.clone(),
        attributes: joiner.attributes.clone(),
        effective_at_ms: Some(due),
        source_system: CALENDAR_SOURCE.into(),
        urgent: false,
        source_changed_at_ms: None,
    };
    Some((event, plan))
}

/// Schedules the pre-hire of a joiner dated ahead on every target with a
/// pre-hire lead time (idempotent).
pub async fn schedule_prehires(engine: &Engine, joiner: &EventRecord) -> Result<Vec<SubmitOutcome>, EngineError> {
    let mut scheduled = Vec::new();
    let now = crate::event::now_ms();
    for planned in &joiner.plan.targets {
        if prehire_offset(engine.policy(), planned).is_none() {
            continue;
        }
        // Where the target cannot be asked now, no credential is asked to
        // be proven absent: a new account has none.
        let provable = match engine.target_connector(&planned.target_id).await {
            Ok((_, description)) => {
                description.capabilities.is_some_and(|c| c.credential_revocation && c.credential_revocation_verifiable)
            }
            Err(_) => false,
        };
        let Some((event, plan)) = prehire_plan(joiner, planned, engine.policy(), now, provable) else { continue };
        tracing::info!(
            joiner = %joiner.event_id,
            target = %planned.target_id,
            due_at = %format_time(event.effective_at_ms),
            "pre-hire scheduled"
        );
        let attributes = event.attributes.clone();
        scheduled.push(engine.accept_planned(event, attributes, plan, CALENDAR_SOURCE.into()).await?);
    }
    Ok(scheduled)
}

/// Whether a stored event's audit shows that one of its applies created the
/// account.
async fn created_account(store: &dyn Store, event_id: &str) -> Result<bool, StoreError> {
    Ok(store.event_audit(event_id).await?.iter().filter(|r| r.action == "task.acknowledged").any(|record| {
        serde_json::from_str::<Value>(&record.payload).is_ok_and(|payload| {
            payload["acknowledgement"]["changes"]
                .as_array()
                .is_some_and(|changes| changes.iter().any(|c| c["action"] == "create"))
        })
    }))
}

/// A leaver of a person whose joiner is dated after the leaver's effective
/// time cancels that hire: the joiner's unfinished tasks and its pending
/// pre-hires are superseded, and the accounts its pre-hires created are
/// removed (an event per target, effective with the leaver, that deletes
/// the account). Returns how many hires were cancelled.
pub async fn cancel_hires(engine: &Engine, leaver: &EventRecord) -> Result<usize, EngineError> {
    let store = engine.store();
    let mut cancelled = 0;
    for joiner in store.person_events(&leaver.person_id).await? {
        if joiner.kind != EventKindName::Joiner
            || internal_source(&joiner.source_system)
            || joiner.seq >= leaver.seq
            || joiner.effective_at <= leaver.effective_at
            || joiner.state.is_terminal()
        {
            continue;
        }
        cancelled += 1;
        let reason = format!("hire cancelled before its start by leaver event {:?}", leaver.event_id);
        let mut stop: Vec<(String, String)> = store
            .tasks(&joiner.event_id)
            .await?
            .into_iter()
            .filter(|t| !t.state.is_terminal())
            .map(|t| (t.event_id, t.target_id))
            .collect();
        for planned in &joiner.plan.targets {
            let prehire_id = prehire_event_id(&planned.target_id, &joiner.event_id);
            let Some(prehire) = store.task(&prehire_id, &planned.target_id).await? else { continue };
            if !prehire.state.is_terminal() {
                stop.push((prehire.event_id.clone(), prehire.target_id.clone()));
            }
            if !created_account(store.as_ref(), &prehire_id).await? {
                continue;
            }
            let (event, plan) = prehire_removal_plan(&joiner, leaver, &prehire, engine.policy());
            tracing::info!(joiner = %joiner.event_id, target = %planned.target_id, "pre-hired account to be removed");
            let attributes = event.attributes.clone();
            engine.accept_planned(event, attributes, plan, CALENDAR_SOURCE.into()).await?;
        }
        engine.cancel_tasks(stop, reason);
    }
    Ok(cancelled)
}

/// The event deleting what a cancelled hire's pre-hire created on its target.
fn prehire_removal_plan(
    joiner: &EventRecord,
    leaver: &EventRecord,
    prehire: &TaskRecord,
    policy: &Policy,
) -> (ValidEvent, pb::Plan) {
    let target_id = prehire.target_id.clone();
    let deadline = policy.target_deadlines.get(&target_id).copied().unwrap_or(Duration::from_secs(900));
    let plan = pb::Plan {
        person_id: joiner.person_id.clone(),
        kind: kind_to_proto(EventKindName::Leaver) as i32,
        workflows: Vec::new(),
        targets: vec![pb::PlannedTarget {
            target_id: target_id.clone(),
            desired: Some(pb::DesiredAccount {
                account: prehire.desired().account,
                presence: pb::Presence::Absent as i32,
                enabled: false,
                attributes: BTreeMap::new(),
                entitlements: Vec::new(),
                credentials: pb::CredentialAction::RevokeAll as i32,
                owned_identities: None,
            }),
            awaiting_approval: Vec::new(),
            approvals_required: 0,
            approver_group: String::new(),
            deadline_seconds: deadline.as_secs(),
            workflows: Vec::new(),
        }],
    };
    let event = ValidEvent {
        event_id: prehire_removal_event_id(&target_id, &joiner.event_id),
        kind: EventKindName::Leaver,
        person_id: joiner.person_id.clone(),
        attributes: joiner.attributes.clone(),
        effective_at_ms: Some(leaver.effective_at.max(crate::event::now_ms())),
        source_system: CALENDAR_SOURCE.into(),
        urgent: false,
        source_changed_at_ms: None,
    };
    (event, plan)
}

/// Checked right before a calendar task is dispatched: `Some(why)` when it
/// must not run (a deletion after a rehire, a pre-hire of a cancelled
/// hire), `None` when it is still due. Other tasks are always due.
pub async fn stage_cancelled_by(store: &dyn Store, task: &TaskRecord) -> Result<Option<String>, StoreError> {
    if let Some((_, joiner_id)) = prehire_origin(&task.event_id) {
        let events = store.person_events(&task.person_id).await?;
        let Some(joiner) = events.iter().find(|e| e.event_id == joiner_id) else {
            return Ok(Some(format!("pre-hire not run: its joiner event {joiner_id:?} is not found")));
        };
        if joiner.state == crate::store::EventState::Superseded {
            return Ok(Some(format!("pre-hire not run: its joiner event {joiner_id:?} was superseded")));
        }
        return Ok(events
            .iter()
            .find(|e| {
                e.seq > joiner.seq
                    && e.kind == EventKindName::Leaver
                    && !internal_source(&e.source_system)
                    && e.effective_at < joiner.effective_at
            })
            .map(|leaver| format!("hire cancelled before its start by leaver event {:?}", leaver.event_id)));
    }
    deletion_cancelled_by(store, task).await
}

/// Schedules the deletion of the leaver's account on every target with a
/// retention; returns the deletion events (the first ones when scheduled
/// before).
pub async fn schedule_deletions(engine: &Engine, leaver: &EventRecord) -> Result<Vec<SubmitOutcome>, EngineError> {
    let mut scheduled = Vec::new();
    for target in &engine.policy().file.targets {
        let Some((event, plan)) = deletion_plan(leaver, &target.id, engine.policy()) else { continue };
        tracing::info!(
            leaver = %leaver.event_id,
            target = %target.id,
            due_at = %format_time(event.effective_at_ms),
            "deletion after retention scheduled"
        );
        let attributes = event.attributes.clone();
        scheduled.push(engine.accept_planned(event, attributes, plan, CALENDAR_SOURCE.into()).await?);
    }
    Ok(scheduled)
}

/// Cancels (supersedes) the person's pending deletions after `rehire`, a
/// later joiner or mover; returns how many tasks were asked to stop. A
/// deletion already running finishes; one held by another replica is
/// cancelled by the check before its dispatch.
pub async fn cancel_deletions(engine: &Engine, rehire: &EventRecord) -> Result<usize, EngineError> {
    let store = engine.store();
    let mut cancel = Vec::new();
    for event in store.person_events(&rehire.person_id).await? {
        if deletion_origin(&event.event_id).is_none() || event.state.is_terminal() || event.seq >= rehire.seq {
            continue;
        }
        for task in store.tasks(&event.event_id).await? {
            if !task.state.is_terminal() {
                cancel.push((task.event_id, task.target_id));
            }
        }
    }
    if !cancel.is_empty() {
        tracing::info!(rehire = %rehire.event_id, tasks = cancel.len(), "pending deletions cancelled by a rehire");
        engine.cancel_tasks(cancel.clone(), cancellation_reason(&rehire.event_id));
    }
    Ok(cancel.len())
}

fn cancellation_reason(rehire_event_id: &str) -> String {
    format!("deletion cancelled: the person came back (event {rehire_event_id:?})")
}

/// Checked right before a deletion is dispatched: `Some(why)` when it must
/// not run (a joiner or mover of the person arrived after its leaver, or
/// the leaver cannot be found), `None` when it is still due. Other tasks are
/// always due.
pub async fn deletion_cancelled_by(store: &dyn Store, task: &TaskRecord) -> Result<Option<String>, StoreError> {
    if !is_deletion(task) {
        return Ok(None);
    }
    let Some((_, leaver_id)) = deletion_origin(&task.event_id) else { return Ok(None) };
    let events = store.person_events(&task.person_id).await?;
    let Some(leaver) = events.iter().find(|e| e.event_id == leaver_id) else {
        return Ok(Some(format!("deletion not run: its leaver event {leaver_id:?} is not found")));
    };
    Ok(events
        .iter()
        .find(|e| e.seq > leaver.seq && e.kind != EventKindName::Leaver && !internal_source(&e.source_system))
        .map(|rehire| cancellation_reason(&rehire.event_id)))
}

/// How a stage's event id is made from (target, origin event id).
type StageId = fn(&str, &str) -> String;

/// What the calendar scheduled from `event` (a leaver's deletions), each
/// with its due time and state.
pub async fn entries(store: &dyn Store, event: &EventRecord) -> Result<Vec<pb::CalendarEntry>, StoreError> {
    if internal_source(&event.source_system) {
        return Ok(Vec::new());
    }
    let stages: &[(&str, StageId)] = match event.kind {
        EventKindName::Leaver => &[(DELETION_STAGE, deletion_event_id)],
        EventKindName::Joiner => {
            &[(PREHIRE_STAGE, prehire_event_id), (PREHIRE_REMOVAL_STAGE, prehire_removal_event_id)]
        }
        _ => &[],
    };
    let mut entries = Vec::new();
    for (stage, id_of) in stages {
        for planned in &event.plan.targets {
            let id = id_of(&planned.target_id, &event.event_id);
            let Some(task) = store.task(&id, &planned.target_id).await? else { continue };
            entries.push(pb::CalendarEntry {
                stage: (*stage).into(),
                event_id: id,
                target_id: task.target_id.clone(),
                due_at: format_time(Some(task.effective_at)),
                state: task.state.to_proto() as i32,
                note: task.last_error.clone(),
            });
        }
    }
    Ok(entries)
}

/// The event a calendar event was scheduled from; empty for other events.
pub fn origin(event: &EventRecord) -> String {
    let id = event.event_id.as_str();
    deletion_origin(id)
        .or_else(|| prehire_origin(id))
        .or_else(|| prehire_removal_origin(id))
        .filter(|_| event.source_system == CALENDAR_SOURCE)
        .map(|(_, origin)| origin.to_owned())
        .unwrap_or_default()
}

/// Fills the calendar fields of an event's status.
pub async fn fill_status(
    store: &dyn Store,
    event: &EventRecord,
    status: &mut pb::EventStatus,
) -> Result<(), StoreError> {
    status.calendar = entries(store, event).await?;
    status.calendar_origin = origin(event);
    Ok(())
}

/// The calendar part of an event's evidence document.
pub fn evidence_json(event: &EventRecord, entries: &[pb::CalendarEntry]) -> Value {
    json!({
        "origin": origin(event),
        "scheduled": entries.iter().map(|entry| json!({
            "stage": entry.stage,
            "event_id": entry.event_id,
            "target_id": entry.target_id,
            "due_at": entry.due_at,
            "state": pb::TaskState::try_from(entry.state).map(|s| s.as_str_name()).unwrap_or("TASK_STATE_UNSPECIFIED"),
            "note": entry.note,
        })).collect::<Vec<_>>(),
    })
}

/// What the policy's calendar asks of one target that its `Describe` does
/// not offer, each with its path: a retention needs delete support.
pub fn check_description(policy: &Policy, target_id: &str, description: &pb::DescribeResponse) -> Vec<PolicyIssue> {
    let mut issues = Vec::new();
    let Some(index) = policy.file.targets.iter().position(|t| t.id == target_id) else { return issues };
    let capabilities = description.capabilities.unwrap_or_default();
    let prehire = policy.file.targets[index].prehire.is_some()
        || policy.file.workflows.iter().any(|w| w.prehire.is_some() && w.grants.contains_key(target_id));
    if prehire && !capabilities.disable {
        issues.push(PolicyIssue {
            path: format!("targets[{index}].prehire"),
            message: format!(
                "target {target_id:?} ({} connector) does not declare disable support; a pre-hired account must be disabled",
                description.connector_kind
            ),
        });
    }
    if policy.file.targets[index].delete_after.is_some() && !capabilities.delete {
        issues.push(PolicyIssue {
            path: format!("targets[{index}].delete_after"),
            message: format!(
                "target {target_id:?} ({} connector) does not declare delete support; a retention cannot be honoured",
                description.connector_kind
            ),
        });
    }
    issues
}

/// Checks the calendar settings of every target against its connector's
/// `Describe`, waiting at most `wait` for each; a connector that does not
/// answer in time is left to refuse at run time (logged). Every mismatch is
/// returned.
pub async fn check_connectors(engine: &Engine, wait: Duration) -> Vec<PolicyIssue> {
    let mut issues = Vec::new();
    for target in &engine.policy().file.targets {
        let prehire = target.prehire.is_some()
            || engine.policy().file.workflows.iter().any(|w| w.prehire.is_some() && w.grants.contains_key(&target.id));
        if target.delete_after.is_none() && !prehire && target.owned_identities.is_none() {
            continue;
        }
        match tokio::time::timeout(wait, engine.target_connector(&target.id)).await {
            Ok(Ok((_, description))) => {
                issues.extend(check_description(engine.policy(), &target.id, &description));
                issues.extend(crate::owned::check_connector(engine.policy(), &target.id, &description));
            }
            Ok(Err(error)) => tracing::warn!(
                target = %target.id, %error,
                "cannot check delete_after against the connector's Describe now; an unsupported deletion fails when it runs"
            ),
            Err(_) => tracing::warn!(
                target = %target.id,
                "the connector did not answer Describe in time; an unsupported deletion fails when it runs"
            ),
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventState;

    const POLICY: &str = r#"
version: 1
source_of_truth: { system: workday, attributes: [username] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true, delete_after: 2d, deadline: 1m }
  - { id: vault, endpoint: "http://127.0.0.1:2", account_name: "{username}", insecure_plaintext: true }
"#;

    fn leaver(policy: &Policy) -> EventRecord {
        let attributes = BTreeMap::from([("username".to_string(), "ada".to_string())]);
        let none = Default::default();
        let input = crate::planner::PlanInput {
            person_id: "p1",
            kind: EventKindName::Leaver,
            attributes: &attributes,
            provisioned: &none,
        };
        let plan = crate::planner::plan(input, policy).expect("plan");
        EventRecord {
            seq: 7,
            event_id: "hr-1:leaver".into(),
            kind: EventKindName::Leaver,
            person_id: "p1".into(),
            attributes,
            effective_at: 1_000_000,
            source_system: "workday".into(),
            initiator: "hr".into(),
            urgent: false,
            received_at: 1_000_000,
            policy_hash: policy.hash.clone(),
            plan_hash: String::new(),
            plan,
            trace_id: String::new(),
            state: EventState::InProgress,
            finished_at: None,
        }
    }

    #[test]
    fn a_deletion_is_planned_per_target_with_a_retention() {
        let policy = Policy::parse(POLICY).expect("policy");
        let leaver = leaver(&policy);
        assert!(deletion_plan(&leaver, "vault", &policy).is_none(), "no retention, no deletion");
        let (event, plan) = deletion_plan(&leaver, "ldap", &policy).expect("a deletion");
        assert_eq!(event.event_id, "retention:ldap:hr-1:leaver");
        assert_eq!(deletion_origin(&event.event_id), Some(("ldap", "hr-1:leaver")));
        assert_eq!(event.effective_at_ms, Some(1_000_000 + 2 * 86_400_000));
        assert_eq!(event.source_system, CALENDAR_SOURCE);
        let target = &plan.targets[0];
        let desired = target.desired.clone().expect("desired");
        assert_eq!(desired.presence, pb::Presence::Absent as i32);
        assert_eq!(desired.account.expect("account").account_name, "ada");
        assert_eq!(target.deadline_seconds, 60);
        assert_eq!(target.approvals_required, 0);
    }

    #[test]
    fn a_retention_needs_delete_support() {
        let policy = Policy::parse(POLICY).expect("policy");
        let mut description = pb::DescribeResponse {
            connector_kind: "memory".into(),
            capabilities: Some(pb::Capabilities { delete: true, ..Default::default() }),
            ..Default::default()
        };
        assert!(check_description(&policy, "ldap", &description).is_empty());
        description.capabilities = Some(pb::Capabilities { delete: false, ..Default::default() });
        let issues = check_description(&policy, "ldap", &description);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path, "targets[0].delete_after");
        assert!(check_description(&policy, "vault", &description).is_empty(), "no retention asked");
    }

    #[test]
    fn only_calendar_events_have_an_origin() {
        let policy = Policy::parse(POLICY).expect("policy");
        let mut event = leaver(&policy);
        assert_eq!(origin(&event), "");
        event.event_id = "retention:ldap:hr-1:leaver".into();
        assert_eq!(origin(&event), "", "an HR event that looks like one is not one");
        event.source_system = CALENDAR_SOURCE.into();
        assert_eq!(origin(&event), "hr-1:leaver");
    }
}
