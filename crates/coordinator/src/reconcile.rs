//! Reconciliation wired into the coordinator: is the access each target shows
//! the access policy expects, and if not, put it back.
//!
//! One run covers one target:
//!
//! 1. **Actual side**: the connector's `List` stream, through the same
//!    [`ConnectorClient`](connector_kit::client::ConnectorClient) propagation
//!    uses, one page at a time. `List` is *not* sorted (the contract promises
//!    no order), so each listed page is matched by a keyed lookup of the
//!    listed people's identity records in the store; only the set of person
//!    ids seen is kept.
//! 2. **Expected side**: the identity records (latest verified attributes of
//!    every person), paged from the store in person-id order
//!    ([`Store::identities_after`]), each planned for this target by the
//!    *same* [`planner::plan`] events use (a leaver's expected state is the
//!    leaver plan: disabled, stripped, credentials revoked). People not seen
//!    in the listing are checked for a missing account.
//! 3. **Classification** by the `reconciliation` crate: should-be-disabled
//!    (critical), excess entitlement, orphan, missing account or entitlement,
//!    attribute drift; privileged variants rank above.
//! 4. **Action** from the target's `reconcile:` policy block: `report`, or
//!    `remediate`: every drifted account gets an internal event (source
//!    system [`RECONCILIATION_SOURCE`], id `reconcile-...`) planned by the
//!    same planner for this one target and accepted through
//!    [`Engine::accept_planned`], so it is ordered, approved, dispatched,
//!    read back and audited like any event. Removing access needs no
//!    approval (only entitlements the target is *missing* keep the plan's
//!    approval rule); an orphan is disabled and stripped, never deleted.
//! 5. **Record**: `reconcile.started` and `reconcile.finished` (counts by
//!    class, the remediation events) in the audit chain, naming the
//!    principal or `schedule`; metrics per target and class.
//!
//! Accounts without a correlation key (the connector lists its whole scope)
//! are not drift classes: [`crate::correlation`] names their situation
//! (unlinked, unmatched, disputed; keyed accounts are linked or foreign key),
//! the report lists them privileged first, and [`crate::adoption`] links
//! them where asked (`--link`, a report's links, or `adopt: correlated` in
//! remediating runs) and takes unmatched ones into custody to disable them
//! (`on_unmatched: disable`, remediating runs). With a person-id prefix only
//! accounts correlating to a person in it are considered.
//!
//! Memory: one listed page, the set of listed person ids, one page of
//! identity records, and the drift found (with what remediation needs);
//! with correlation rules, the index of the rules' values over every
//! identity record and the findings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use jml_contract::v1 as pb;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use reconciliation::{Drift, DriftCounts, Reconciliation};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::adoption::{LinkOrder, LinkRecord};
use crate::correlation::{
    Adopt, Correlation, CorrelationIndex, Finding, OnUnmatched, Situation, SituationCounts, UNMATCHED_KEY_PREFIX,
};
use crate::engine::{Engine, EngineError};
use crate::event::{ValidEvent, format_time, kind_name, kind_to_proto, now_ms};
use crate::planner::{PlanInput, plan};
use crate::policy::{EventKindName, Policy, ReconcileAction, parse_duration};
use crate::store::{IdentityRecord, RECONCILIATION_SOURCE};

/// Identity records read from the store per page.
const IDENTITY_PAGE: u32 = 1000;
/// Accounts asked of the connector per `List` page.
const LIST_PAGE: u32 = 500;

/// Who started a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An authenticated caller of the lifecycle API.
    OnDemand {
        /// The principal.
        principal: String,
    },
    /// The coordinator's per-target schedule.
    Schedule,
}

impl Trigger {
    /// The principal recorded in the audit chain.
    pub fn principal(&self) -> &str {
        match self {
            Self::OnDemand { principal } => principal,
            Self::Schedule => "schedule",
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    /// One target, or every target of the policy.
    pub target_id: Option<String>,
    /// Remediate (only where the target's policy action is `remediate`).
    pub remediate: bool,
    /// Only accounts and identity records whose person id starts with this
    /// (empty: all): one population, or one person, on demand.
    pub person_id_prefix: String,
    /// Who asked.
    pub trigger: Trigger,
    /// Link every unlinked account this run finds (admin).
    pub link_unlinked: bool,
    /// Link these accounts as an earlier report showed them (admin).
    pub links: Vec<pb::AccountLink>,
    /// Only accounts without a key whose name starts with this.
    pub account_name_prefix: String,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The target.
    pub target_id: String,
    /// `listing` or `expected`.
    pub phase: &'static str,
    /// Accounts listed so far / identity records checked so far.
    pub done: u64,
}

/// One remediation event a run submitted.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemediationRecord {
    /// The internal event (see its evidence with `jmlctl evidence`).
    pub event_id: String,
    /// The person (or the correlation key of an orphan).
    pub person_id: String,
    /// The account.
    pub account_name: String,
    /// The drift classes it remediates.
    pub classes: Vec<&'static str>,
    /// Whether it waits for approval (it re-grants privileged access).
    pub awaiting_approval: bool,
    /// Whether an event with this id existed already.
    pub duplicate: bool,
}

/// The report of one run over one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The run's id (the audit records' `event_id`).
    pub run_id: String,
    /// The target.
    pub target_id: String,
    /// The person-id prefix the run was limited to (empty: none).
    pub person_id_prefix: String,
    /// Who started it (`schedule` for scheduled runs).
    pub principal: String,
    /// `report` or `remediate`: what this run did.
    pub action: &'static str,
    /// Why a requested remediation was not done, if it was not.
    pub remediation_refused: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Counts by class.
    pub counts: DriftCounts,
    /// Enabled accounts with no change or login for `stale_after` (where the
    /// target reports activity).
    pub inactive_accounts: u64,
    /// Every drift, most severe first.
    pub drift: Vec<Drift>,
    /// Remediation events submitted.
    pub remediations: Vec<RemediationRecord>,
    /// People whose expected state could not be planned (e.g. an attribute
    /// the target's templates need is missing), with why.
    pub unplanned: Vec<String>,
    /// Accounts without a key, and keyed accounts, by situation.
    pub correlation: CorrelationReport,
    /// Whether no drift was found (nor an unlinked, disputed or uncontained
    /// unmatched account).
    pub clean: bool,
}

/// The correlation part of a report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CorrelationReport {
    /// Accounts by situation.
    pub counts: SituationCounts,
    /// Every account not linked, privileged first.
    pub findings: Vec<Finding>,
    /// Links made or refused by this run.
    pub links: Vec<LinkRecord>,
}

/// What a run may do about accounts without a key.
#[derive(Debug, Clone, Default)]
pub struct Adoption {
    /// Link every unlinked account found.
    pub link_unlinked: bool,
    /// Link these (an earlier report's).
    pub links: Vec<pb::AccountLink>,
    /// Only accounts without a key whose name starts with this
    /// (case-insensitively).
    pub account_name_prefix: String,
}

/// What remediating one account needs.
#[derive(Debug, Clone)]
enum Fix {
    /// Push the planned state back; `missing` are the entitlements the target
    /// lacks (only those can need approval).
    Planned {
        identity: Box<IdentityRecord>,
        kind: EventKindName,
        plan: Box<pb::Plan>,
        missing: BTreeSet<(String, String)>,
    },
    /// Disable and strip an account with no identity.
    Orphan { account: pb::AccountRef },
}

fn run_id() -> String {
    format!("reconcile-{}", uuid::Uuid::new_v4().simple())
}

/// The expected plan of one person for one target: the same planner events
/// use, with the kind of the person's latest verified event (leaver when the
/// person has left). The target is marked provisioned, so the plan always
/// covers it: granted access, or the disabled, stripped state.
pub fn expected_plan(
    policy: &Policy,
    identity: &IdentityRecord,
    kind: EventKindName,
    target_id: &str,
) -> Result<pb::Plan, crate::event::InvalidEvent> {
    let kind = if identity.has_left { EventKindName::Leaver } else { kind };
    let provisioned = BTreeSet::from([target_id.to_owned()]);
    let input =
        PlanInput { person_id: &identity.person_id, kind, attributes: &identity.attributes, provisioned: &provisioned };
    let mut planned = plan(input, policy)?;
    planned.targets.retain(|t| t.target_id == target_id);
    Ok(planned)
}

fn desired_of(plan: &pb::Plan) -> Option<pb::DesiredAccount> {
    plan.targets.first().and_then(|t| t.desired.clone())
}

fn entitlement_keys(entitlements: &[pb::Entitlement]) -> BTreeSet<(String, String)> {
    entitlements.iter().map(|e| (e.kind.clone(), e.id.clone())).collect()
}

/// The metric families of reconciliation, registered once in the
/// process-wide registry.
struct ReconcileMetrics {
    drift: Family<DriftLabels, Gauge>,
    situations: Family<SituationLabels, Gauge>,
    accounts: Family<TargetLabels, Gauge>,
    stale: Family<StaleLabels, Gauge>,
    last_clean: Family<TargetLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    target: String,
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SituationLabels {
    target: String,
    situation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StaleLabels {
    target: String,
    reason: String,
}

impl ReconcileMetrics {
    fn get() -> &'static Self {
        static METRICS: OnceLock<ReconcileMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let metrics = Self {
                drift: Family::default(),
                situations: Family::default(),
                accounts: Family::default(),
                stale: Family::default(),
                last_clean: Family::default(),
            };
            connector_kit::metrics::register(
                "jml_drift_accounts",
                "Drift found by the last reconciliation, by target and class",
                &metrics.drift,
            );
            connector_kit::metrics::register(
                "jml_correlation_accounts",
                "Accounts by correlation situation (linked, unlinked, unmatched, disputed, foreign_key) in the last \
                 reconciliation of the target",
                &metrics.situations,
            );
            connector_kit::metrics::register(
                "jml_accounts",
                "Managed accounts the target listed in the last reconciliation",
                &metrics.accounts,
            );
            connector_kit::metrics::register(
                "jml_stale_accounts",
                "Stale accounts by target: enabled accounts of leavers (reason=left) and enabled accounts with no \
                 change or login for the target's stale_after (reason=inactive)",
                &metrics.stale,
            );
            connector_kit::metrics::register(
                "jml_last_clean_reconciliation_timestamp_seconds",
                "Unix time of the last reconciliation of the target that found no drift",
                &metrics.last_clean,
            );
            metrics
        })
    }

    fn record(&self, report: &TargetReport, finished_ms: i64) {
        let target = report.target_id.clone();
        for (class, count) in &report.counts.by_class {
            self.drift
                .get_or_create(&DriftLabels { target: target.clone(), class: (*class).to_owned() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        for (situation, count) in &report.correlation.counts.by_situation {
            self.situations
                .get_or_create(&SituationLabels { target: target.clone(), situation: (*situation).to_owned() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.accounts
            .get_or_create(&TargetLabels { target: target.clone() })
            .set(i64::try_from(report.counts.accounts_listed).unwrap_or(i64::MAX));
        for (reason, count) in [("left", report.counts.stale_accounts), ("inactive", report.inactive_accounts)] {
            self.stale
                .get_or_create(&StaleLabels { target: target.clone(), reason: reason.into() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        if report.clean {
            self.last_clean.get_or_create(&TargetLabels { target }).set(finished_ms / 1000);
        }
    }
}

/// Registers the reconciliation metric families (so they are scraped before
/// the first run).
pub fn register_metrics() {
    let _ = ReconcileMetrics::get();
}

/// Runs reconciliation over the requested targets, in policy order, sending
/// progress as it goes; returns one report per target.
pub async fn reconcile(
    engine: &Engine,
    request: &ReconcileRequest,
    progress: &mpsc::Sender<Progress>,
) -> Result<Vec<TargetReport>, EngineError> {
    let targets: Vec<String> = match &request.target_id {
        Some(id) => {
            if !engine.policy().file.targets.iter().any(|t| &t.id == id) {
                return Err(EngineError::NotFound(format!("target {id:?}")));
            }
            vec![id.clone()]
        }
        None => engine.policy().file.targets.iter().map(|t| t.id.clone()).collect(),
    };
    let mut reports = Vec::with_capacity(targets.len());
    for target_id in targets {
        reports.push(
            reconcile_target(
                engine,
                &target_id,
                request.remediate,
                &request.person_id_prefix,
                &request.trigger,
                &Adoption {
                    link_unlinked: request.link_unlinked,
                    links: request.links.iter().filter(|l| l.target_id == target_id).cloned().collect(),
                    account_name_prefix: request.account_name_prefix.clone(),
                },
                progress,
            )
            .await?,
        );
    }
    Ok(reports)
}

/// Runs one reconciliation of one target; the run is recorded in the audit
/// chain whether it succeeds or fails.
pub async fn reconcile_target(
    engine: &Engine,
    target_id: &str,
    remediate: bool,
    person_id_prefix: &str,
    trigger: &Trigger,
    adoption: &Adoption,
    progress: &mpsc::Sender<Progress>,
) -> Result<TargetReport, EngineError> {
    let policy_action = engine
        .policy()
        .file
        .targets
        .iter()
        .find(|t| t.id == target_id)
        .and_then(|t| t.reconcile.as_ref())
        .map(|r| r.action);
    let allowed = policy_action == Some(ReconcileAction::Remediate);
    let remediation_refused = (remediate && !allowed)
        .then(|| format!("the policy's reconcile action for target {target_id:?} is report, not remediate"));
    let remediate = remediate && allowed;
    let run_id = run_id();
    let started = now_ms();
    let store = engine.store().clone();
    store
        .append_audit(vec![crate::store::AuditEntry {
            at: started,
            principal: trigger.principal().to_owned(),
            event_id: run_id.clone(),
            action: "reconcile.started".into(),
            payload: json!({
                "target_id": target_id,
                "action": if remediate { "remediate" } else { "report" },
                "remediation_refused": remediation_refused,
                "person_id_prefix": person_id_prefix,
            }),
        }])
        .await?;
    let keep_states = remediate || adoption.link_unlinked || !adoption.links.is_empty();
    let outcome =
        compare(engine, target_id, person_id_prefix, &adoption.account_name_prefix, keep_states, progress).await;
    let finished = now_ms();
    let (counts, inactive, mut drift, fixes, unplanned, mut correlation) = match outcome {
        Ok(found) => found,
        Err(error) => {
            store
                .append_audit(vec![crate::store::AuditEntry {
                    at: finished,
                    principal: trigger.principal().to_owned(),
                    event_id: run_id.clone(),
                    action: "reconcile.failed".into(),
                    payload: json!({ "target_id": target_id, "error": error.to_string() }),
                }])
                .await?;
            return Err(error);
        }
    };
    drift.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.person_id.cmp(&b.person_id)));
    let mut remediations = Vec::new();
    if remediate {
        for (person_id, (fix, classes)) in fixes {
            remediations.push(submit_fix(engine, &run_id, target_id, &person_id, fix, classes, trigger).await?);
        }
    }
    adopt(engine, &run_id, target_id, remediate, trigger, adoption, &mut correlation, &mut remediations).await?;
    for finding in &mut correlation.findings {
        finding.state = None;
    }
    let clean = counts.is_clean() && !correlation.findings.iter().any(Finding::is_drift);
    let report = TargetReport {
        run_id: run_id.clone(),
        target_id: target_id.to_owned(),
        person_id_prefix: person_id_prefix.to_owned(),
        principal: trigger.principal().to_owned(),
        action: if remediate { "remediate" } else { "report" },
        remediation_refused,
        started_at: format_time(Some(started)),
        finished_at: format_time(Some(now_ms())),
        counts,
        inactive_accounts: inactive,
        drift,
        remediations,
        unplanned,
        correlation,
        clean,
    };
    store
        .append_audit(vec![crate::store::AuditEntry {
            at: now_ms(),
            principal: trigger.principal().to_owned(),
            event_id: run_id,
            action: "reconcile.finished".into(),
            payload: json!({
                "target_id": target_id,
                "action": report.action,
                "started_at": report.started_at,
                "finished_at": report.finished_at,
                "accounts_listed": report.counts.accounts_listed,
                "accounts_expected": report.counts.accounts_expected,
                "by_class": report.counts.by_class,
                "stale_accounts": report.counts.stale_accounts,
                "inactive_accounts": report.inactive_accounts,
                "contained_orphans": report.counts.contained_orphans,
                "situations": report.correlation.counts.by_situation,
                "links": report.correlation.links.iter().filter(|l| l.linked()).count(),
                "links_refused": report.correlation.links.iter().filter(|l| !l.linked()).count(),
                "clean": report.clean,
                "remediations": report.remediations.iter().map(|r| &r.event_id).collect::<Vec<_>>(),
            }),
        }])
        .await?;
    ReconcileMetrics::get().record(&report, finished);
    Ok(report)
}

type Found =
    (DriftCounts, u64, Vec<Drift>, BTreeMap<String, (Fix, BTreeSet<&'static str>)>, Vec<String>, CorrelationReport);

/// Streams the listing, merges it with the expected state and classifies.
async fn compare(
    engine: &Engine,
    target_id: &str,
    scope: &str,
    account_prefix: &str,
    keep_states: bool,
    progress: &mpsc::Sender<Progress>,
) -> Result<Found, EngineError> {
    let policy = engine.policy();
    let store = engine.store();
    let (client, description) = engine.target_connector(target_id).await?;
    let target_error = |message: String| EngineError::Target { target: target_id.to_owned(), message };
    // Selecting accounts by name, any person may be theirs.
    let index_scope = if account_prefix.is_empty() { scope } else { "" };
    let index = correlation_index(engine, target_id, index_scope, &description).await?;
    let mut correlation = CorrelationReport { counts: SituationCounts::new(), ..Default::default() };
    let mut linked_persons: BTreeSet<String> = BTreeSet::new();
    let list_request = pb::ListRequest {
        page_size: LIST_PAGE,
        correlation_attributes: index.as_ref().map(|(index, _)| index.requested_attributes()).unwrap_or_default(),
        ..Default::default()
    };
    let stale_after = policy
        .file
        .targets
        .iter()
        .find(|t| t.id == target_id)
        .and_then(|t| t.reconcile.as_ref())
        .and_then(|r| r.stale_after.as_deref())
        .and_then(|text| parse_duration(text).ok());
    let now_seconds = now_ms() / 1000;
    let mut run = Reconciliation::new(description);
    let mut drift: Vec<Drift> = Vec::new();
    let mut fixes: BTreeMap<String, (Fix, BTreeSet<&'static str>)> = BTreeMap::new();
    let mut unplanned = Vec::new();
    let mut inactive = 0u64;

    // 1. The actual side, a page at a time, with a keyed lookup of the
    //    listed people's identity records.
    let mut stream = client.list_request(list_request).await.map_err(|e| target_error(e.to_string()))?;
    while let Some(page) = stream.next().await {
        let page = page.map_err(|status| target_error(format!("List: {}", status.message())))?;
        let mut expected: HashMap<String, (pb::Plan, Box<IdentityRecord>, EventKindName)> = HashMap::new();
        let mut accounts = Vec::with_capacity(page.accounts.len());
        for state in page.accounts {
            let person_id = state.account.as_ref().map(|a| a.person_id.clone()).unwrap_or_default();
            if person_id.is_empty() || person_id.starts_with(UNMATCHED_KEY_PREFIX) {
                let name = state.account.as_ref().map(|a| a.account_name.to_lowercase()).unwrap_or_default();
                if !name.starts_with(&account_prefix.to_lowercase()) {
                    continue;
                }
                let scope = if account_prefix.is_empty() { scope } else { "" };
                if let Some(finding) = correlate(index.as_ref(), &state, scope, keep_states) {
                    correlation.counts.add(finding.situation);
                    correlation.findings.push(finding);
                }
                continue;
            }
            if !person_id.starts_with(scope) {
                continue;
            }
            if let Some(after) = stale_after
                && state.enabled
                && let Some(activity) = &state.last_activity
                && now_seconds.saturating_sub(activity.seconds) > i64::try_from(after.as_secs()).unwrap_or(i64::MAX)
            {
                inactive += 1;
            }
            let identity = match person_id.is_empty() || expected.contains_key(&person_id) {
                true => None,
                false => store.identity(&person_id).await?,
            };
            if identity.is_none()
                && !person_id.is_empty()
                && !expected.contains_key(&person_id)
                && store.person_context(&person_id).await?.latest_attributes.is_some_and(|a| !a.is_empty())
            {
                // Known to the coordinator (an event in progress, or one that
                // failed) but never verified: not an orphan, and nothing is
                // expected of it yet. (The event that disables an orphan
                // carries no attributes, so it does not make the orphan known.)
                unplanned.push(format!("{person_id}: no verified identity record yet"));
                continue;
            }
            if let Some(identity) = identity {
                let kind = identity_kind(engine, &identity).await?;
                match expected_plan(policy, &identity, kind, target_id) {
                    Ok(plan) => {
                        expected.insert(person_id.clone(), (plan, Box::new(identity), kind));
                    }
                    Err(error) => {
                        unplanned.push(format!("{person_id}: {error}"));
                        continue;
                    }
                }
            }
            let situation = if expected.contains_key(&person_id) { Situation::Linked } else { Situation::ForeignKey };
            correlation.counts.add(situation);
            if situation == Situation::Linked {
                linked_persons.insert(person_id.clone());
            } else {
                correlation.findings.push(Finding::new(situation, &state, &person_id));
            }
            accounts.push(state);
        }
        let found = run.page(&accounts, |state| {
            let person_id = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
            expected.get(person_id).and_then(|(plan, _, _)| desired_of(plan))
        });
        for item in &found {
            let Some(state) =
                accounts.iter().find(|s| s.account.as_ref().is_some_and(|a| a.person_id == item.person_id))
            else {
                continue;
            };
            let fix = match expected.get(&item.person_id) {
                Some((plan, identity, kind)) => {
                    let want = desired_of(plan).map(|d| entitlement_keys(&d.entitlements)).unwrap_or_default();
                    let have = entitlement_keys(&state.entitlements);
                    Fix::Planned {
                        identity: identity.clone(),
                        kind: *kind,
                        plan: Box::new(plan.clone()),
                        missing: want.difference(&have).cloned().collect(),
                    }
                }
                None => Fix::Orphan { account: state.account.clone().unwrap_or_default() },
            };
            fixes.entry(item.person_id.clone()).or_insert_with(|| (fix, BTreeSet::new())).1.insert(item.class.as_str());
        }
        drift.extend(found);
        let _ = progress.try_send(Progress {
            target_id: target_id.to_owned(),
            phase: "listing",
            done: run.counts().accounts_listed,
        });
    }

    // 2. The expected side, in person-id order: accounts the target lacks.
    let mut after = String::new();
    let mut checked = 0u64;
    loop {
        let page = store.identities_after(after.clone(), IDENTITY_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.person_id.clone();
        for (identity, kind) in page {
            if !identity.person_id.starts_with(scope) {
                continue;
            }
            checked += 1;
            let plan = match expected_plan(policy, &identity, kind, target_id) {
                Ok(plan) => plan,
                Err(error) => {
                    // Reported once, from the listing, when it listed this person.
                    let line = format!("{}: {error}", identity.person_id);
                    if !unplanned.contains(&line) {
                        unplanned.push(line);
                    }
                    continue;
                }
            };
            let Some(desired) = desired_of(&plan) else { continue };
            let found = run.expected(&desired);
            if !found.is_empty() {
                let classes: BTreeSet<&'static str> = found.iter().map(|d| d.class.as_str()).collect();
                let missing = entitlement_keys(&desired.entitlements);
                fixes.insert(
                    identity.person_id.clone(),
                    (Fix::Planned { identity: Box::new(identity), kind, plan: Box::new(plan), missing }, classes),
                );
                drift.extend(found);
            }
        }
        let _ = progress.try_send(Progress { target_id: target_id.to_owned(), phase: "expected", done: checked });
    }
    let before: Vec<Situation> = correlation.findings.iter().map(|f| f.situation).collect();
    crate::correlation::dispute_duplicates(&mut correlation.findings, &linked_persons);
    for (finding, was) in correlation.findings.iter().zip(before) {
        if finding.situation != was {
            *correlation.counts.by_situation.entry(was.as_str()).or_default() -= 1;
            correlation.counts.add(finding.situation);
        }
    }
    correlation.findings.sort_by(|a, b| {
        b.privileged
            .cmp(&a.privileged)
            .then_with(|| situation_rank(a.situation).cmp(&situation_rank(b.situation)))
            .then_with(|| a.account_name.cmp(&b.account_name))
    });
    Ok((run.counts().clone(), inactive, drift, fixes, unplanned, correlation))
}

/// Findings order after privilege: what most needs a look first.
fn situation_rank(situation: Situation) -> u8 {
    match situation {
        Situation::Unmatched => 0,
        Situation::ForeignKey => 1,
        Situation::Disputed => 2,
        Situation::Unlinked => 3,
        Situation::Linked => 4,
    }
}

/// The target's correlation rules, checked against its connector's
/// `Describe` (a rule the connector cannot supply fails the run with the
/// rule's path), with the index of their values over every identity record
/// in `scope`. `None` when the target has no rules.
async fn correlation_index(
    engine: &Engine,
    target_id: &str,
    scope: &str,
    description: &pb::DescribeResponse,
) -> Result<Option<(CorrelationIndex, Vec<String>)>, EngineError> {
    let policy = engine.policy();
    let Some((position, target)) = policy.file.targets.iter().enumerate().find(|(_, t)| t.id == target_id) else {
        return Ok(None);
    };
    let Some(spec) = &target.correlation else { return Ok(None) };
    let issues = crate::correlation::check_against_describe(&format!("targets[{position}]"), spec, description);
    if !issues.is_empty() {
        let issues: Vec<String> = issues.iter().map(ToString::to_string).collect();
        return Err(EngineError::FailedPrecondition(format!(
            "the policy's correlation rules do not fit the connector: {}",
            issues.join("; ")
        )));
    }
    let mut index = CorrelationIndex::new(spec, target);
    let mut after = String::new();
    loop {
        let page = engine.store().identities_after(after.clone(), IDENTITY_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.person_id.clone();
        for (identity, _) in page.iter().filter(|(identity, _)| identity.person_id.starts_with(scope)) {
            index.add(&identity.person_id, &identity.attributes);
        }
    }
    // A run limited to one person (the command a refused joiner names)
    // correlates that person by the latest attributes the coordinator has,
    // even before an event of theirs was verified.
    if !scope.is_empty()
        && engine.store().identity(scope).await?.is_none()
        && let Some(attributes) = engine.store().person_context(scope).await?.latest_attributes
    {
        index.add(scope, &attributes);
    }
    let rules = spec.rules.iter().enumerate().map(|(i, rule)| rule.describe(i, target)).collect();
    Ok(Some((index, rules)))
}

/// The finding of one listed account without a person's key; `None` when a
/// person-id prefix limits the run and the account correlates to nobody in
/// it.
fn correlate(
    index: Option<&(CorrelationIndex, Vec<String>)>,
    state: &pb::AccountState,
    scope: &str,
    keep_state: bool,
) -> Option<Finding> {
    let key = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
    let correlation = match (index, key.is_empty()) {
        (Some((index, _)), true) => index.correlate(state),
        _ => Correlation::Nobody,
    };
    let rule_text = |rule: usize| index.and_then(|(_, rules)| rules.get(rule).cloned());
    let mut finding = match correlation {
        Correlation::One { person_id, rule } => {
            Finding { rule: rule_text(rule), ..Finding::new(Situation::Unlinked, state, &person_id) }
        }
        Correlation::Several { person_ids, rule } => Finding {
            rule: rule_text(rule),
            candidates: person_ids.iter().map(|p| p.to_string()).collect(),
            ..Finding::new(Situation::Disputed, state, "")
        },
        Correlation::Nobody if !scope.is_empty() => return None,
        Correlation::Nobody => Finding::new(Situation::Unmatched, state, key),
    };
    if keep_state && matches!(finding.situation, Situation::Unlinked | Situation::Unmatched) {
        finding.state = Some(Box::new(state.clone()));
    }
    Some(finding)
}

/// Links what the run may link and takes into custody the unmatched
/// accounts the policy disables, then submits the event converging each
/// linked account (to the person's plan, or disabled and stripped).
#[allow(clippy::too_many_arguments)]
async fn adopt(
    engine: &Engine,
    run_id: &str,
    target_id: &str,
    remediate: bool,
    trigger: &Trigger,
    adoption: &Adoption,
    correlation: &mut CorrelationReport,
    remediations: &mut Vec<RemediationRecord>,
) -> Result<(), EngineError> {
    let spec = engine.policy().file.targets.iter().find(|t| t.id == target_id).and_then(|t| t.correlation.clone());
    let auto_link = remediate && spec.as_ref().is_some_and(|s| s.adopt == Adopt::Correlated);
    let disable_unmatched = remediate && spec.as_ref().is_some_and(|s| s.on_unmatched == OnUnmatched::Disable);
    if !(auto_link || disable_unmatched || adoption.link_unlinked || !adoption.links.is_empty()) {
        return Ok(());
    }
    let (client, description) = engine.target_connector(target_id).await?;
    let store = engine.store().clone();
    let principal = trigger.principal();
    // (finding index, key to write, fingerprint to expect)
    let mut orders: Vec<(usize, String, String)> = Vec::new();
    for link in &adoption.links {
        let current = correlation.findings.iter().position(|f| {
            f.situation == Situation::Unlinked
                && f.account_name.to_lowercase() == link.account_name.to_lowercase()
                && f.person_id == link.person_id
        });
        match current {
            Some(position) => orders.push((position, link.person_id.clone(), link.fingerprint.clone())),
            None => correlation.links.push(
                crate::adoption::refuse(
                    store.as_ref(),
                    run_id,
                    target_id,
                    principal,
                    link,
                    "the account is no longer unlinked to this person (it changed, was linked, or is disputed): \
                     not linked, nothing written"
                        .into(),
                )
                .await?,
            ),
        }
    }
    for (position, finding) in correlation.findings.iter().enumerate() {
        let listed = orders.iter().any(|(p, _, _)| *p == position);
        match finding.situation {
            Situation::Unlinked if (adoption.link_unlinked || auto_link) && !listed => {
                orders.push((position, finding.person_id.clone(), finding.fingerprint.clone()))
            }
            Situation::Unmatched if disable_unmatched && !finding.contained => {
                let key = if finding.person_id.is_empty() {
                    crate::correlation::unmatched_key(target_id, &finding.account_name)
                } else {
                    finding.person_id.clone()
                };
                orders.push((position, key, finding.fingerprint.clone()));
            }
            _ => {}
        }
    }
    for (position, key, fingerprint) in orders {
        let finding = &correlation.findings[position];
        let Some(state) = finding.state.as_deref() else { continue };
        let custody = key.starts_with(UNMATCHED_KEY_PREFIX);
        let planned = if custody { None } else { planned_fix(engine, target_id, &key, state).await? };
        if !custody {
            let refusal = match &planned {
                None => Some("no plan can be made for this person on this target".to_owned()),
                Some(Fix::Planned { plan, .. }) => {
                    let name = desired_of(plan).and_then(|d| d.account).map(|a| a.account_name).unwrap_or_default();
                    let same = match pb::ValueComparison::try_from(description.account_name_comparison) {
                        Ok(pb::ValueComparison::Exact) => name == finding.account_name,
                        _ => name.to_lowercase() == finding.account_name.to_lowercase(),
                    };
                    (!same).then(|| {
                        format!(
                            "the policy names this person's account {name:?} on this target, not {:?}: accounts are \
                             addressed by name, so it is not linked (rename it on the target, or fix the identity)",
                            finding.account_name
                        )
                    })
                }
                Some(Fix::Orphan { .. }) => None,
            };
            if let Some(why) = refusal {
                let link = pb::AccountLink {
                    target_id: target_id.to_owned(),
                    account_name: finding.account_name.clone(),
                    person_id: key.clone(),
                    fingerprint: fingerprint.clone(),
                };
                let refused = crate::adoption::refuse(store.as_ref(), run_id, target_id, principal, &link, why).await?;
                correlation.links.push(LinkRecord { rule: finding.rule.clone(), ..refused });
                continue;
            }
        }
        let mut record = if custody && !finding.person_id.is_empty() {
            // Already in custody (re-enabled since): no link, only the fix.
            LinkRecord {
                account_name: finding.account_name.clone(),
                person_id: key.clone(),
                rule: None,
                outcome: "linked",
                error: None,
                convergence_event_id: None,
            }
        } else {
            let order = LinkOrder {
                run_id,
                target_id,
                principal,
                state,
                person_id: &key,
                fingerprint: &fingerprint,
                rule: finding.rule.clone(),
            };
            crate::adoption::link(store.as_ref(), &client, &description, order).await?
        };
        if record.linked() {
            let account = pb::AccountRef { person_id: key.clone(), account_name: finding.account_name.clone() };
            let fix = if custody {
                Some((Fix::Orphan { account }, BTreeSet::from(["unmatched"])))
            } else {
                planned.map(|fix| (fix, BTreeSet::from(["unlinked"])))
            };
            if let Some((fix, classes)) = fix {
                let remediation = submit_fix(engine, run_id, target_id, &key, fix, classes, trigger).await?;
                record.convergence_event_id = Some(remediation.event_id.clone());
                remediations.push(remediation);
            }
        }
        correlation.links.push(record);
    }
    Ok(())
}

/// The fix converging a freshly linked account of `person_id` to the
/// person's plan; `None` when the person's plan cannot be made (reported).
async fn planned_fix(
    engine: &Engine,
    target_id: &str,
    person_id: &str,
    state: &pb::AccountState,
) -> Result<Option<Fix>, EngineError> {
    let identity = match engine.store().identity(person_id).await? {
        Some(identity) => identity,
        // A joiner whose event failed on this very account: the latest
        // attributes the coordinator has (the identity record follows when
        // the source sends the joiner again).
        None => match engine.store().person_context(person_id).await?.latest_attributes {
            Some(attributes) => IdentityRecord {
                person_id: person_id.to_owned(),
                attributes,
                effective_at: now_ms(),
                event_id: String::new(),
                has_left: false,
                targets: BTreeSet::new(),
                updated_at: now_ms(),
            },
            None => return Ok(None),
        },
    };
    let kind = identity_kind(engine, &identity).await?;
    let Ok(plan) = expected_plan(engine.policy(), &identity, kind, target_id) else { return Ok(None) };
    let want = desired_of(&plan).map(|d| entitlement_keys(&d.entitlements)).unwrap_or_default();
    let have = entitlement_keys(&state.entitlements);
    Ok(Some(Fix::Planned {
        identity: Box::new(identity),
        kind,
        plan: Box::new(plan),
        missing: want.difference(&have).cloned().collect(),
    }))
}

/// The kind of the event behind an identity record: leaver when the person
/// left; a baseline record (loaded without an event) is a joiner's.
async fn identity_kind(engine: &Engine, identity: &IdentityRecord) -> Result<EventKindName, EngineError> {
    if identity.has_left {
        return Ok(EventKindName::Leaver);
    }
    Ok(engine.store().event(&identity.event_id).await?.map(|e| e.kind).unwrap_or(EventKindName::Joiner))
}

/// A remediation event id: the run, the target and a digest of the person
/// (ids stay short and carry no personal data).
fn remediation_event_id(run_id: &str, target_id: &str, person_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(person_id.as_bytes()));
    let run = run_id.trim_start_matches("reconcile-");
    format!("reconcile-{}-{target_id}-{}", &run[..run.len().min(12)], &digest[..16])
}

/// Submits the internal event that puts one account back.
async fn submit_fix(
    engine: &Engine,
    run_id: &str,
    target_id: &str,
    person_id: &str,
    fix: Fix,
    classes: BTreeSet<&'static str>,
    trigger: &Trigger,
) -> Result<RemediationRecord, EngineError> {
    let event_id = remediation_event_id(run_id, target_id, person_id);
    let (event, attributes, plan) = match fix {
        Fix::Planned { identity, kind, mut plan, missing } => {
            let kind = if identity.has_left { EventKindName::Leaver } else { kind };
            for planned in &mut plan.targets {
                // Removing access is always allowed: only grants the target
                // is missing keep the plan's approval rule.
                planned.awaiting_approval.retain(|e| missing.contains(&(e.kind.clone(), e.id.clone())));
                if planned.awaiting_approval.is_empty() {
                    planned.approvals_required = 0;
                    planned.approver_group.clear();
                }
            }
            let event = ValidEvent {
                event_id: event_id.clone(),
                kind,
                person_id: person_id.to_owned(),
                attributes: identity.attributes.clone(),
                effective_at_ms: Some(identity.effective_at),
                source_system: RECONCILIATION_SOURCE.into(),
                urgent: false,
                source_changed_at_ms: None,
            };
            (event, identity.attributes, *plan)
        }
        Fix::Orphan { account } => {
            let deadline = engine.policy().target_deadlines.get(target_id).copied().unwrap_or(Duration::from_secs(900));
            let plan = pb::Plan {
                person_id: person_id.to_owned(),
                kind: kind_to_proto(EventKindName::Leaver) as i32,
                workflows: Vec::new(),
                targets: vec![pb::PlannedTarget {
                    target_id: target_id.to_owned(),
                    desired: Some(pb::DesiredAccount {
                        account: Some(account),
                        presence: pb::Presence::Present as i32,
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
                event_id: event_id.clone(),
                kind: EventKindName::Leaver,
                person_id: person_id.to_owned(),
                attributes: BTreeMap::new(),
                effective_at_ms: None,
                source_system: RECONCILIATION_SOURCE.into(),
                urgent: false,
                source_changed_at_ms: None,
            };
            (event, BTreeMap::new(), plan)
        }
    };
    let account_name = plan
        .targets
        .first()
        .and_then(|t| t.desired.as_ref())
        .and_then(|d| d.account.as_ref())
        .map(|a| a.account_name.clone())
        .unwrap_or_default();
    let awaiting_approval = plan.targets.iter().any(|t| t.approvals_required > 0);
    let initiator = format!("reconcile:{}", trigger.principal());
    tracing::info!(%event_id, target = %target_id, kind = kind_name(event.kind), "reconciliation remediates an account");
    let outcome = engine.accept_planned(event, attributes, plan, initiator).await?;
    Ok(RemediationRecord {
        event_id,
        person_id: person_id.to_owned(),
        account_name,
        classes: classes.into_iter().collect(),
        awaiting_approval,
        duplicate: outcome.duplicate,
    })
}

/// Starts the per-target schedules of the policy (`reconcile.every`): each
/// target's runs are sequential, with the action its policy block says.
pub fn spawn_schedules(engine: &Engine) -> Vec<tokio::task::JoinHandle<()>> {
    register_metrics();
    let mut handles = Vec::new();
    for target in &engine.policy().file.targets {
        let Some(spec) = &target.reconcile else { continue };
        let Some(every) = spec.every.as_deref().and_then(|text| parse_duration(text).ok()) else { continue };
        let remediate = spec.action == ReconcileAction::Remediate;
        let engine = engine.clone();
        let target_id = target.id.clone();
        handles.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: wait one period so a restart loop
            // does not hammer the target.
            interval.tick().await;
            let (progress, mut sink) = mpsc::channel(16);
            tokio::spawn(async move { while sink.recv().await.is_some() {} });
            loop {
                interval.tick().await;
                // With several replicas, the first one to record the
                // period's start runs it; the others skip the period.
                if !engine.take_schedule_run(&format!("reconcile:{target_id}"), every).await {
                    continue;
                }
                let adoption = Adoption::default();
                match reconcile_target(&engine, &target_id, remediate, "", &Trigger::Schedule, &adoption, &progress)
                    .await
                {
                    Ok(report) => tracing::info!(
                        target = %target_id,
                        run = %report.run_id,
                        clean = report.clean,
                        drift = report.drift.len(),
                        "scheduled reconciliation finished"
                    ),
                    Err(error) => tracing::warn!(target = %target_id, %error, "scheduled reconciliation failed"),
                }
            }
        }));
    }
    handles
}
