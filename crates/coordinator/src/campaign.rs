//! Recertification campaigns: people confirm, item by item, that access
//! should stay.
//!
//! A campaign covers a **scope** on one target: every account
//! (`target:T`), the accounts holding one entitlement
//! (`entitlement:T:KIND:ID`, e.g. a privileged group), the accounts of a
//! manual target (`manual:T`, from its attested export; refused when the
//! target's `Describe` is not manual), or the accounts inactive longer than a
//! threshold (`stale:T:90d`; an account whose last activity the target does
//! not report counts as stale: unknown is not recent). The accounts come
//! from the connector's `List`, as reconciliation reads them.
//!
//! Each item goes to a **reviewer**: the person's manager from the HR record
//! (identity attribute `manager`), else the owner of a workflow granting on
//! the target (the entitlement, for an entitlement scope), else the
//! campaign's fallback reviewer; never the item's subject (person id,
//! username or account name). Only the item's reviewer may decide it, once:
//! `keep`, or `revoke`, which is pushed through the ordinary remediation
//! path ([`Engine::accept_planned`], source `reconciliation`): the account's
//! current state without the entitlement (or, for a whole account, disabled
//! and stripped), dispatched, read back and audited like any event. Items
//! undecided at the **deadline** are escalated and counted.
//!
//! The campaign lives in the audit chain only (records `campaign.started`,
//! `campaign.decided`, `campaign.decision_refused`, `campaign.escalated`,
//! all under the audit stream [`CAMPAIGN_STREAM`]): its status is rebuilt
//! from them, so every figure is recomputable from the chain. Campaigns can
//! be scheduled per policy (`campaigns:` with `every:`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use connector_kit::readback::normalise;
use futures::StreamExt;
use jml_contract::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::{Engine, EngineError};
use crate::event::{InvalidEvent, ValidEvent, format_time, now_ms};
use crate::policy::{EventKindName, Policy, PolicyIssue, parse_duration};
use crate::store::{AuditEntry, RECONCILIATION_SOURCE};

/// The audit stream (the `event_id` of audit records) every campaign record
/// is appended under.
pub const CAMPAIGN_STREAM: &str = "campaign";

/// A campaign the policy starts on a schedule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// The campaign's name (each run is named `NAME-<start>`).
    pub name: String,
    /// The scope, as `StartCampaign` takes it (e.g. `entitlement:ldap:group:admins`).
    pub scope: String,
    /// How often a new campaign starts (e.g. `90d`).
    pub every: String,
    /// How long reviewers have (e.g. `14d`).
    pub deadline: String,
    /// Who reviews items with neither a manager nor a workflow owner.
    #[serde(default)]
    pub fallback_reviewer: String,
}

/// What a campaign reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every account on the target.
    Target(String),
    /// The accounts holding one entitlement.
    Entitlement {
        /// The target.
        target: String,
        /// The entitlement's kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// The accounts of a manual target.
    Manual(String),
    /// Accounts inactive for longer than `after`.
    Stale {
        /// The target.
        target: String,
        /// The threshold.
        after: Duration,
    },
}

impl Scope {
    /// Parses `target:T`, `entitlement:T:KIND:ID`, `manual:T`, `stale:T:DURATION`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.splitn(4, ':').collect();
        let scope = match parts[..] {
            ["target", target] => Self::Target(target.into()),
            ["manual", target] => Self::Manual(target.into()),
            ["entitlement", target, kind, id] if !kind.is_empty() && !id.is_empty() => {
                Self::Entitlement { target: target.into(), kind: kind.into(), id: id.into() }
            }
            ["stale", target, after] => Self::Stale { target: target.into(), after: parse_duration(after)? },
            _ => {
                return Err(format!(
                    "scope {text:?}: expected target:T, entitlement:T:KIND:ID, manual:T or stale:T:DURATION"
                ));
            }
        };
        if scope.target().is_empty() {
            return Err(format!("scope {text:?} names no target"));
        }
        Ok(scope)
    }

    /// The target.
    pub fn target(&self) -> &str {
        match self {
            Self::Target(t) | Self::Manual(t) => t,
            Self::Entitlement { target, .. } | Self::Stale { target, .. } => target,
        }
    }

    fn entitlement(&self) -> Option<(String, String)> {
        match self {
            Self::Entitlement { kind, id, .. } => Some((kind.clone(), id.clone())),
            _ => None,
        }
    }
}

/// Checks the policy's `campaigns:` entries; problems name their path.
pub fn check_specs(specs: &[CampaignSpec], policy_targets: &BTreeSet<String>, issues: &mut Vec<PolicyIssue>) {
    let mut names = BTreeSet::new();
    for (index, spec) in specs.iter().enumerate() {
        let mut issue = |field: &str, message: String| {
            issues.push(PolicyIssue { path: format!("campaigns[{index}].{field}"), message })
        };
        if spec.name.trim().is_empty() || !names.insert(spec.name.clone()) {
            issue("name", "must be non-empty and unique".into());
        }
        match Scope::parse(&spec.scope) {
            Ok(scope) if !policy_targets.contains(scope.target()) => {
                issue("scope", format!("names the target {:?}, which the policy does not declare", scope.target()));
            }
            Ok(_) => {}
            Err(message) => issue("scope", message),
        }
        if let Err(message) = parse_duration(&spec.every) {
            issue("every", message);
        }
        if let Err(message) = parse_duration(&spec.deadline) {
            issue("deadline", message);
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(InvalidEvent { field: field.into(), message: message.into() })
}

/// One item as recorded at the start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StartedItem {
    item_id: String,
    target_id: String,
    person_id: String,
    account_name: String,
    entitlement: String,
    reviewer: String,
    reviewer_source: String,
}

fn reviewer_for(
    policy: &Policy,
    manager: Option<&str>,
    target: &str,
    entitlement: Option<&(String, String)>,
    subjects: &BTreeSet<String>,
    fallback: &str,
) -> (String, String) {
    let is_subject = |name: &str| subjects.contains(&name.trim().to_lowercase());
    if let Some(manager) = manager.map(str::trim).filter(|m| !m.is_empty() && !is_subject(m)) {
        return (manager.to_owned(), "manager".into());
    }
    for workflow in &policy.file.workflows {
        let Some(grants) = workflow.grants.get(target) else { continue };
        let grants_it = entitlement.is_none_or(|(kind, id)| grants.iter().any(|g| &g.kind == kind && &g.id == id));
        if grants_it && !workflow.owner.trim().is_empty() && !is_subject(&workflow.owner) {
            return (workflow.owner.clone(), "workflow_owner".into());
        }
    }
    if !fallback.trim().is_empty() && !is_subject(fallback) {
        return (fallback.trim().to_owned(), "fallback".into());
    }
    (String::new(), "unassigned".into())
}

fn holds(description: &pb::DescribeResponse, account: &pb::AccountState, kind: &str, id: &str) -> bool {
    let comparison = description
        .entitlement_kinds
        .iter()
        .find(|k| k.kind == kind)
        .and_then(|k| pb::ValueComparison::try_from(k.comparison).ok())
        .unwrap_or(pb::ValueComparison::Exact);
    let wanted = normalise(comparison, id);
    account.entitlements.iter().any(|e| e.kind == kind && normalise(comparison, &e.id) == wanted)
}

/// Starts a campaign: lists the scope's accounts, assigns reviewers, and
/// records it.
pub async fn start(
    engine: &Engine,
    request: &pb::StartCampaignRequest,
    principal: &str,
) -> Result<pb::CampaignStatus, EngineError> {
    start_as(engine, request, principal, None).await
}

/// [`start`], recording the policy schedule that started it, if any.
async fn start_as(
    engine: &Engine,
    request: &pb::StartCampaignRequest,
    principal: &str,
    schedule: Option<&str>,
) -> Result<pb::CampaignStatus, EngineError> {
    let scope = Scope::parse(&request.scope).map_err(|m| invalid("scope", m))?;
    let deadline = parse_duration(&request.deadline).map_err(|m| invalid("deadline", m))?;
    if request.name.trim().is_empty() || request.name.chars().any(char::is_control) {
        return Err(invalid("name", "must be non-empty, without control characters"));
    }
    let target = scope.target().to_owned();
    let (client, description) = engine.target_connector(&target).await?;
    let manual = description.capabilities.as_ref().is_some_and(|c| c.manual_fulfilment);
    if matches!(scope, Scope::Manual(_)) && !manual {
        return Err(EngineError::FailedPrecondition(format!(
            "scope manual:{target}: the connector does not describe a manual target"
        )));
    }
    if let Some((kind, _)) = scope.entitlement()
        && !description.entitlement_kinds.iter().any(|k| k.kind == kind)
    {
        return Err(EngineError::FailedPrecondition(format!(
            "scope names the entitlement kind {kind:?}, which the connector for {target} does not manage"
        )));
    }
    let now = now_ms();
    let mut stream = client
        .list(500)
        .await
        .map_err(|e| EngineError::Target { target: target.clone(), message: format!("list: {e}") })?;
    let mut accounts = Vec::new();
    while let Some(page) = stream.next().await {
        let page = page.map_err(|e| EngineError::Target { target: target.clone(), message: format!("list: {e}") })?;
        for account in page.accounts.into_iter().filter(|a| a.exists) {
            let selected = match &scope {
                Scope::Target(_) | Scope::Manual(_) => true,
                Scope::Entitlement { kind, id, .. } => holds(&description, &account, kind, id),
                Scope::Stale { after, .. } => {
                    let limit = now - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                    account.last_activity.as_ref().is_none_or(|t| t.seconds.saturating_mul(1000) < limit)
                }
            };
            if selected {
                accounts.push(account);
            }
        }
    }
    accounts.sort_by_key(|a| a.account.as_ref().map(|r| r.account_name.to_lowercase()).unwrap_or_default());
    let entitlement = scope.entitlement();
    let mut items = Vec::with_capacity(accounts.len());
    for (index, account) in accounts.iter().enumerate() {
        let reference = account.account.clone().unwrap_or_default();
        let identity =
            if reference.person_id.is_empty() { None } else { engine.store().identity(&reference.person_id).await? };
        let mut subjects: BTreeSet<String> = [reference.person_id.clone(), reference.account_name.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_lowercase())
            .collect();
        if let Some(username) = identity.as_ref().and_then(|i| i.attributes.get("username")) {
            subjects.insert(username.to_lowercase());
        }
        let manager = identity.as_ref().and_then(|i| i.attributes.get("manager")).map(String::as_str);
        let (reviewer, reviewer_source) = reviewer_for(
            engine.policy(),
            manager,
            &target,
            entitlement.as_ref(),
            &subjects,
            &request.fallback_reviewer,
        );
        items.push(StartedItem {
            item_id: format!("i{}", index + 1),
            target_id: target.clone(),
            person_id: reference.person_id,
            account_name: reference.account_name,
            entitlement: entitlement.as_ref().map(|(k, i)| format!("{k}:{i}")).unwrap_or_default(),
            reviewer,
            reviewer_source,
        });
    }
    let campaign_id = format!("cmp-{}", uuid::Uuid::now_v7().simple());
    let deadline_at = now.saturating_add(i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX / 2));
    let audit = AuditEntry {
        at: now,
        principal: principal.to_owned(),
        event_id: CAMPAIGN_STREAM.into(),
        action: "campaign.started".into(),
        payload: json!({
            "campaign_id": campaign_id,
            "name": request.name,
            "scope": request.scope,
            "deadline_at": format_time(Some(deadline_at)),
            "fallback_reviewer": request.fallback_reviewer,
            "schedule": schedule,
            "items": items,
        }),
    };
    engine.store().append_audit(vec![audit]).await?;
    tracing::info!(%campaign_id, items = items.len(), %target, "campaign started");
    status(engine, &campaign_id).await
}

/// Every campaign record of the chain (the campaign stream), parsed.
async fn records(engine: &Engine) -> Result<Vec<(i64, i64, String, String, Value)>, EngineError> {
    let records = engine.store().event_audit(CAMPAIGN_STREAM).await?;
    Ok(records
        .into_iter()
        .map(|r| {
            let payload = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
            (r.seq, r.at, r.principal, r.action, payload)
        })
        .collect())
}

/// A campaign folded from its records.
pub fn fold(campaign_id: &str, records: &[(i64, i64, String, String, Value)]) -> Option<pb::CampaignStatus> {
    let mut status: Option<pb::CampaignStatus> = None;
    for (_, at, principal, action, payload) in records {
        if payload["campaign_id"] != campaign_id {
            continue;
        }
        match action.as_str() {
            "campaign.started" => {
                let items: Vec<StartedItem> = serde_json::from_value(payload["items"].clone()).unwrap_or_default();
                status = Some(pb::CampaignStatus {
                    campaign_id: campaign_id.to_owned(),
                    name: payload["name"].as_str().unwrap_or_default().to_owned(),
                    scope: payload["scope"].as_str().unwrap_or_default().to_owned(),
                    started_by: principal.clone(),
                    started_at: format_time(Some(*at)),
                    deadline_at: payload["deadline_at"].as_str().unwrap_or_default().to_owned(),
                    items: items
                        .into_iter()
                        .map(|i| pb::CampaignItem {
                            item_id: i.item_id,
                            target_id: i.target_id,
                            person_id: i.person_id,
                            account_name: i.account_name,
                            entitlement: i.entitlement,
                            reviewer: i.reviewer,
                            reviewer_source: i.reviewer_source,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                });
            }
            "campaign.decided" => {
                if let Some(item) =
                    status.as_mut().and_then(|s| s.items.iter_mut().find(|i| payload["item_id"] == i.item_id.as_str()))
                {
                    item.decision = payload["decision"].as_str().unwrap_or_default().to_owned();
                    item.decided_by = principal.clone();
                    item.decided_at = format_time(Some(*at));
                    item.remediation_event_id = payload["remediation_event_id"].as_str().unwrap_or_default().to_owned();
                }
            }
            "campaign.escalated" => {
                if let Some(status) = status.as_mut() {
                    status.closed = true;
                    let escalated: BTreeSet<&str> = payload["item_ids"]
                        .as_array()
                        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    for item in &mut status.items {
                        item.escalated |= escalated.contains(item.item_id.as_str());
                    }
                }
            }
            _ => {}
        }
    }
    let mut status = status?;
    status.kept = status.items.iter().filter(|i| i.decision == "keep").count() as u64;
    status.revoked = status.items.iter().filter(|i| i.decision == "revoke").count() as u64;
    status.undecided = status.items.iter().filter(|i| i.decision.is_empty()).count() as u64;
    status.escalated = status.items.iter().filter(|i| i.escalated).count() as u64;
    Some(status)
}

/// A campaign's status; past its deadline, its undecided items are escalated first.
pub async fn status(engine: &Engine, campaign_id: &str) -> Result<pb::CampaignStatus, EngineError> {
    let all = records(engine).await?;
    let status = fold(campaign_id, &all).ok_or_else(|| EngineError::NotFound(format!("campaign {campaign_id:?}")))?;
    if !status.closed && crate::event::parse_time(&status.deadline_at).is_ok_and(|deadline| deadline <= now_ms()) {
        escalate(engine, &status).await?;
        let all = records(engine).await?;
        return fold(campaign_id, &all).ok_or_else(|| EngineError::NotFound(format!("campaign {campaign_id:?}")));
    }
    Ok(status)
}

/// One escalation at a time in this process: the sweep and a status read can
/// both find a campaign past its deadline, and only the first may close it.
static ESCALATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn escalate(engine: &Engine, status: &pb::CampaignStatus) -> Result<(), EngineError> {
    let _one = ESCALATING.lock().await;
    // Read again under the lock: another caller may have closed it meanwhile.
    let all = records(engine).await?;
    let Some(status) = fold(&status.campaign_id, &all) else { return Ok(()) };
    if status.closed {
        return Ok(());
    }
    let undecided: Vec<&pb::CampaignItem> = status.items.iter().filter(|i| i.decision.is_empty()).collect();
    let audit = AuditEntry {
        at: now_ms(),
        principal: "coordinator".into(),
        event_id: CAMPAIGN_STREAM.into(),
        action: "campaign.escalated".into(),
        payload: json!({
            "campaign_id": status.campaign_id,
            "item_ids": undecided.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>(),
            "count": undecided.len(),
            "reviewers": undecided.iter().map(|i| i.reviewer.clone()).collect::<BTreeSet<_>>(),
        }),
    };
    tracing::warn!(campaign_id = %status.campaign_id, undecided = undecided.len(), "campaign deadline: items escalated");
    engine.store().append_audit(vec![audit]).await?;
    Ok(())
}

/// Escalates every campaign past its deadline (the coordinator's sweep).
pub async fn escalate_due(engine: &Engine) -> Result<usize, EngineError> {
    let all = records(engine).await?;
    let ids: BTreeSet<String> = all
        .iter()
        .filter(|(_, _, _, action, _)| action == "campaign.started")
        .filter_map(|(_, _, _, _, payload)| payload["campaign_id"].as_str().map(str::to_owned))
        .collect();
    let mut escalated = 0;
    for id in ids {
        let Some(status) = fold(&id, &all) else { continue };
        if !status.closed && crate::event::parse_time(&status.deadline_at).is_ok_and(|d| d <= now_ms()) {
            escalate(engine, &status).await?;
            escalated += 1;
        }
    }
    Ok(escalated)
}

/// Records the calling reviewer's decision; a revoke is remediated.
pub async fn decide(
    engine: &Engine,
    request: &pb::CampaignDecisionRequest,
    principal: &str,
) -> Result<pb::CampaignStatus, EngineError> {
    let campaign = status(engine, &request.campaign_id).await?;
    let item = campaign.items.iter().find(|i| i.item_id == request.item_id).cloned().ok_or_else(|| {
        EngineError::NotFound(format!("item {:?} of campaign {:?}", request.item_id, request.campaign_id))
    })?;
    if !matches!(request.decision.as_str(), "keep" | "revoke") {
        return Err(invalid("decision", "must be keep or revoke"));
    }
    let mut subjects: BTreeSet<String> =
        [&item.person_id, &item.account_name].into_iter().filter(|s| !s.is_empty()).map(|s| s.to_lowercase()).collect();
    if !item.person_id.is_empty()
        && let Some(identity) = engine.store().identity(&item.person_id).await?
        && let Some(username) = identity.attributes.get("username")
    {
        subjects.insert(username.to_lowercase());
    }
    let caller = principal.trim().to_lowercase();
    let refusal = if subjects.contains(&caller) {
        Some("a reviewer may not decide on their own access")
    } else if caller != item.reviewer.trim().to_lowercase() {
        Some("only the item's reviewer may decide it")
    } else if campaign.closed {
        Some("the campaign's deadline has passed; the item was escalated")
    } else if !item.decision.is_empty() {
        Some("the item is already decided")
    } else {
        None
    };
    if let Some(reason) = refusal {
        let audit = AuditEntry {
            at: now_ms(),
            principal: principal.to_owned(),
            event_id: CAMPAIGN_STREAM.into(),
            action: "campaign.decision_refused".into(),
            payload: json!({ "campaign_id": campaign.campaign_id, "item_id": item.item_id, "reason": reason }),
        };
        engine.store().append_audit(vec![audit]).await?;
        return Err(if reason.contains("deadline") || reason.contains("already") {
            EngineError::FailedPrecondition(reason.into())
        } else {
            EngineError::PermissionDenied(reason.into())
        });
    }
    let remediation_event_id = if request.decision == "revoke" {
        revoke(engine, &campaign.campaign_id, &item, principal).await?
    } else {
        String::new()
    };
    let audit = AuditEntry {
        at: now_ms(),
        principal: principal.to_owned(),
        event_id: CAMPAIGN_STREAM.into(),
        action: "campaign.decided".into(),
        payload: json!({
            "campaign_id": campaign.campaign_id,
            "item_id": item.item_id,
            "decision": request.decision,
            "comment": request.comment,
            "target_id": item.target_id,
            "person_id": item.person_id,
            "account_name": item.account_name,
            "entitlement": item.entitlement,
            "remediation_event_id": remediation_event_id,
        }),
    };
    engine.store().append_audit(vec![audit]).await?;
    status(engine, &campaign.campaign_id).await
}

/// Pushes a revoke to the target as a remediation event: the account as it is
/// now, without the entitlement (or disabled and stripped, for a whole
/// account). Returns the event's id.
async fn revoke(
    engine: &Engine,
    campaign_id: &str,
    item: &pb::CampaignItem,
    principal: &str,
) -> Result<String, EngineError> {
    let (client, _) = engine.target_connector(&item.target_id).await?;
    let account = pb::AccountRef { person_id: item.person_id.clone(), account_name: item.account_name.clone() };
    let current = client
        .read(account.clone())
        .await
        .map_err(|e| EngineError::Target { target: item.target_id.clone(), message: format!("read: {e}") })?;
    let desired = match item.entitlement.split_once(':') {
        Some((kind, id)) => pb::DesiredAccount {
            account: Some(account),
            presence: pb::Presence::Present as i32,
            enabled: current.enabled,
            attributes: current.attributes.clone(),
            entitlements: current.entitlements.iter().filter(|e| !(e.kind == kind && e.id == id)).cloned().collect(),
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        },
        None => pb::DesiredAccount {
            account: Some(account),
            presence: pb::Presence::Present as i32,
            enabled: false,
            attributes: BTreeMap::new(),
            entitlements: Vec::new(),
            credentials: pb::CredentialAction::RevokeAll as i32,
            owned_identities: None,
        },
    };
    let deadline = engine.policy().target_deadlines.get(&item.target_id).copied().unwrap_or(Duration::from_secs(3600));
    let event_id = format!("campaign-{campaign_id}-{}", item.item_id);
    let plan = pb::Plan {
        person_id: item.person_id.clone(),
        kind: pb::EventKind::Mover as i32,
        workflows: Vec::new(),
        targets: vec![pb::PlannedTarget {
            target_id: item.target_id.clone(),
            desired: Some(desired),
            awaiting_approval: Vec::new(),
            approvals_required: 0,
            approver_group: String::new(),
            deadline_seconds: deadline.as_secs(),
            workflows: Vec::new(),
        }],
    };
    let event = ValidEvent {
        event_id: event_id.clone(),
        kind: EventKindName::Mover,
        person_id: item.person_id.clone(),
        attributes: BTreeMap::new(),
        effective_at_ms: None,
        source_system: RECONCILIATION_SOURCE.into(),
        urgent: false,
        source_changed_at_ms: None,
    };
    engine.accept_planned(event, BTreeMap::new(), plan, format!("campaign:{principal}")).await?;
    Ok(event_id)
}

/// When the policy schedule `name` last started a campaign (Unix ms), from
/// the chain (so restarts do not start it again early).
async fn last_scheduled_start(engine: &Engine, name: &str) -> Result<Option<i64>, EngineError> {
    Ok(records(engine)
        .await?
        .iter()
        .filter(|(_, _, _, action, payload)| action == "campaign.started" && payload["schedule"] == name)
        .map(|(_, at, _, _, _)| *at)
        .max())
}

/// Starts the policy's scheduled campaigns when their period has passed since
/// the last one (the first at once) and escalates campaigns past their
/// deadline, about every `tick`.
pub fn spawn_schedules(engine: &Engine, tick: Duration) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = escalate_due(&engine).await {
                tracing::warn!(%error, "campaign escalation sweep failed");
            }
            for spec in engine.policy().file.campaigns.clone() {
                let Ok(every) = parse_duration(&spec.every) else { continue };
                let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
                match last_scheduled_start(&engine, &spec.name).await {
                    Ok(Some(last)) if now_ms().saturating_sub(last) < every_ms => continue,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, name = %spec.name, "cannot read the campaign schedule");
                        continue;
                    }
                }
                // With several replicas, one starts each period.
                if !engine.take_schedule_run(&format!("campaign:{}", spec.name), every).await {
                    continue;
                }
                let request = pb::StartCampaignRequest {
                    name: format!("{}-{}", spec.name, format_time(Some(now_ms()))),
                    scope: spec.scope.clone(),
                    deadline: spec.deadline.clone(),
                    fallback_reviewer: spec.fallback_reviewer.clone(),
                };
                match start_as(&engine, &request, "schedule", Some(&spec.name)).await {
                    Ok(status) => {
                        tracing::info!(campaign_id = %status.campaign_id, name = %spec.name, "scheduled campaign started")
                    }
                    Err(error) => tracing::warn!(%error, name = %spec.name, "scheduled campaign could not start"),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_or_say_what_is_expected() {
        assert_eq!(Scope::parse("target:ldap"), Ok(Scope::Target("ldap".into())));
        assert_eq!(
            Scope::parse("entitlement:ldap:group:cn=admins,ou=groups"),
            Ok(Scope::Entitlement { target: "ldap".into(), kind: "group".into(), id: "cn=admins,ou=groups".into() })
        );
        assert_eq!(
            Scope::parse("stale:aws:90d"),
            Ok(Scope::Stale { target: "aws".into(), after: Duration::from_secs(90 * 86_400) })
        );
        assert!(Scope::parse("everything").is_err());
        assert!(Scope::parse("entitlement:ldap:group").is_err());
        assert!(Scope::parse("target:").is_err());
    }

    #[test]
    fn scheduled_campaigns_are_checked_with_their_path() {
        let base = "version: 1\nsource_of_truth: { system: hr, attributes: [username] }\ntargets:\n  - { id: ldap, endpoint: \"http://127.0.0.1:1\", insecure_plaintext: true, account_name: \"{username}\", deadline: 1h }\n";
        let good = format!(
            "{base}campaigns:\n  - {{ name: q, scope: \"entitlement:ldap:group:admins\", every: 90d, deadline: 14d, fallback_reviewer: sec }}\n"
        );
        let policy = Policy::parse(&good).expect("valid");
        assert_eq!(policy.file.campaigns.len(), 1);
        let bad = format!(
            "{base}campaigns:\n  - {{ name: q, scope: \"target:nowhere\", every: soon, deadline: 14d }}\n  - {{ name: r, scope: all, every: 1d, deadline: 1d }}\n"
        );
        let error = Policy::parse(&bad).expect_err("invalid").to_string();
        for needle in ["campaigns[0].scope", "campaigns[0].every", "nowhere", "campaigns[1].scope"] {
            assert!(error.contains(needle), "{needle} not in {error}");
        }
        let unknown =
            format!("{base}campaigns:\n  - {{ name: r, scope: target:ldap, every: 1d, deadline: 1d, extra: 1 }}\n");
        let error = Policy::parse(&unknown).expect_err("unknown field").to_string();
        assert!(error.contains("campaigns[0].extra"), "{error}");
        // A policy without campaigns hashes as before the field existed.
        let plain = Policy::parse(base).expect("valid");
        assert!(!serde_json::to_string(&plain.file).expect("json").contains("campaigns"));
    }

    #[test]
    fn the_reviewer_is_never_the_subject() {
        let policy = Policy::parse(
            "version: 1\nsource_of_truth: { system: hr, attributes: [username] }\ntargets:\n  - { id: ldap, endpoint: \"http://127.0.0.1:1\", insecure_plaintext: true, account_name: \"{username}\", deadline: 1h }\nworkflows:\n  - { name: admins, owner: owner@example.org, trigger: { events: [joiner] }, grants: { ldap: [ { kind: group, id: admins, privileged: true } ] }, approval: { approvers: 1, group: sec } }\napprovers: { sec: [s1] }\n",
        )
        .expect("policy");
        let admins = ("group".to_owned(), "admins".to_owned());
        let subjects = BTreeSet::from(["dana".to_owned(), "p-1".to_owned()]);
        let pick = |manager, subjects: &BTreeSet<String>, fallback| {
            reviewer_for(&policy, manager, "ldap", Some(&admins), subjects, fallback)
        };
        assert_eq!(pick(Some("mgr"), &subjects, ""), ("mgr".into(), "manager".into()));
        assert_eq!(pick(Some("Dana"), &subjects, ""), ("owner@example.org".into(), "workflow_owner".into()));
        let owner_is_subject = BTreeSet::from(["owner@example.org".to_owned()]);
        assert_eq!(pick(None, &owner_is_subject, "sec"), ("sec".into(), "fallback".into()));
        assert_eq!(pick(None, &owner_is_subject, "owner@example.org").1, "unassigned");
    }
}
