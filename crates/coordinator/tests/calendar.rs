//! The calendar on an in-process coordinator over reference connectors (the
//! acceptance on the real targets is `tests/e2e/calendar.rs`): a leaver's
//! deletion after retention, its cancellation by a rehire, the check of a
//! retention against the connector's `Describe`, and reserved ids.

mod support;

use std::sync::Arc;
use std::time::Duration;

use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_kit::{AccountStream, Connector, ConnectorError};
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::calendar::{self, CALENDAR_SOURCE, deletion_event_id};
use coordinator::store::Store;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use support::*;

/// Every target keeps a leaver's account for `retention`.
fn with_retention(retention: &'static str) -> impl FnOnce(String) -> String {
    move |policy| {
        policy.replace("insecure_plaintext: true,", &format!("insecure_plaintext: true, delete_after: {retention},"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leavers_accounts_are_deleted_after_the_retention() {
    let mut mesh = Mesh::start_with(4, with_retention("2s")).await;
    submit(&mut mesh.client, event("cj1", pb::EventKind::Joiner, "C1", person("cid", "Sales"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "cj1").await.state, pb::EventState::Verified as i32);
    let receipt = submit(&mut mesh.client, event("cl1", pb::EventKind::Leaver, "C1", Default::default(), "")).await;
    let leaver = until_terminal(&mut mesh.client, "cl1").await;
    assert_eq!(leaver.state, pb::EventState::Verified as i32, "{leaver:?}");
    // The leaver's status lists one deletion per target, due two seconds
    // after its effective time.
    let effective = coordinator::event::parse_time(&leaver.effective_at).expect("effective time");
    assert_eq!(leaver.calendar.len(), TARGETS.len(), "{leaver:?}");
    for entry in &leaver.calendar {
        assert_eq!(entry.stage, calendar::DELETION_STAGE);
        assert_eq!(entry.event_id, deletion_event_id(&entry.target_id, "cl1"));
        assert_eq!(coordinator::event::parse_time(&entry.due_at), Ok(effective + 2000), "{entry:?}");
    }
    assert!(!receipt.duplicate);
    for target in TARGETS {
        let deletion = until_terminal(&mut mesh.client, &deletion_event_id(target, "cl1")).await;
        assert_eq!(deletion.state, pb::EventState::Verified as i32, "{deletion:?}");
        assert_eq!(deletion.calendar_origin, "cl1");
        assert_eq!(deletion.source_system, CALENDAR_SOURCE);
        let task = task(&deletion, target);
        assert!(task.read_back.as_ref().is_some_and(|r| !r.exists), "read back as gone: {task:?}");
        assert!(mesh.target(target).get("cid").is_none(), "{target} still holds the account");
    }
    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: "cl1".into() })
        .await
        .expect("evidence")
        .into_inner();
    let evidence: serde_json::Value = serde_json::from_str(&evidence.json).expect("json");
    let scheduled = evidence["calendar"]["scheduled"].as_array().expect("the calendar in the evidence");
    assert_eq!(scheduled.len(), TARGETS.len(), "{evidence}");
    assert!(
        scheduled.iter().all(|s| s["state"] == "TASK_STATE_VERIFIED" && !s["due_at"].as_str().unwrap_or("").is_empty())
    );
    let verdict = coordinator::store::verify_audit(mesh.store.as_ref()).await.expect("verify");
    assert_eq!(verdict.broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehire_cancels_the_pending_deletion() {
    let mut mesh = Mesh::start_with(4, with_retention("1h")).await;
    submit(&mut mesh.client, event("rj1", pb::EventKind::Joiner, "R1", person("rae", "Sales"), "")).await;
    until_terminal(&mut mesh.client, "rj1").await;
    submit(&mut mesh.client, event("rl1", pb::EventKind::Leaver, "R1", Default::default(), "")).await;
    until_terminal(&mut mesh.client, "rl1").await;
    let pending = mesh.client.get_event(pb::GetEventRequest { event_id: "rl1".into() }).await.expect("status");
    let pending = pending.into_inner();
    assert!(
        pending.calendar.iter().all(|e| e.state == pb::TaskState::Planned as i32),
        "deletions wait for their time: {pending:?}"
    );
    submit(&mut mesh.client, event("rj2", pb::EventKind::Joiner, "R1", person("rae", "Sales"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "rj2").await.state, pb::EventState::Verified as i32);
    for target in TARGETS {
        let deletion = until_terminal(&mut mesh.client, &deletion_event_id(target, "rl1")).await;
        assert_eq!(deletion.state, pb::EventState::Superseded as i32, "{deletion:?}");
        let task = task(&deletion, target);
        assert!(task.last_error.contains("rj2"), "the reason names the rehire: {task:?}");
        assert_eq!(task.attempts, 0, "never dispatched");
    }
    let account = mesh.target("ldap").get("rae").expect("the account is kept");
    assert!(account.enabled);
    let status = mesh.client.get_event(pb::GetEventRequest { event_id: "rl1".into() }).await.expect("status");
    assert!(
        status
            .into_inner()
            .calendar
            .iter()
            .all(|e| e.state == pb::TaskState::Superseded as i32 && e.note.contains("rj2"))
    );

    // The check before dispatch says the same, whatever process asks it
    // (a replica that did not see the rehire).
    let store: Arc<dyn Store> = mesh.store.clone();
    let deletion = store.task(&deletion_event_id("ldap", "rl1"), "ldap").await.expect("read").expect("the task");
    let reason = calendar::deletion_cancelled_by(store.as_ref(), &deletion).await.expect("checked");
    assert!(reason.is_some_and(|r| r.contains("rj2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_ids_are_reserved() {
    let mut mesh = Mesh::start_with(4, with_retention("1h")).await;
    let refused = submit_as(
        &mut mesh.client,
        event("retention:ldap:x", pb::EventKind::Joiner, "X1", person("xan", "Sales"), ""),
        "hr-bot",
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("event.event_id"), "{refused:?}");
}

/// Every target pre-hires `lead` ahead of the start.
fn with_prehire(lead: &'static str) -> impl FnOnce(String) -> String {
    move |policy| policy.replace("insecure_plaintext: true,", &format!("insecure_plaintext: true, prehire: {lead},"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prehire_creates_the_account_disabled_then_the_start_enables_it() {
    let mut mesh = Mesh::start_with(4, with_prehire("4s")).await;
    let start = coordinator::event::format_time(Some(coordinator::event::now_ms() + 6_000));
    submit(&mut mesh.client, event("pj1", pb::EventKind::Joiner, "H1", person("pat", "Sales"), &start)).await;
    let prehire = until_terminal(&mut mesh.client, &calendar::prehire_event_id("ldap", "pj1")).await;
    assert_eq!(prehire.state, pb::EventState::Verified as i32, "{prehire:?}");
    assert_eq!(prehire.calendar_origin, "pj1");
    let account = mesh.target("ldap").get("pat").expect("created ahead of the start");
    assert!(!account.enabled && account.entitlements.is_empty() && account.credentials.is_empty(), "{account:?}");
    let joiner = until_terminal(&mut mesh.client, "pj1").await;
    assert_eq!(joiner.state, pb::EventState::Verified as i32, "{joiner:?}");
    let account = mesh.target("ldap").get("pat").expect("the account");
    assert!(account.enabled, "enabled at the start: {account:?}");
    assert_eq!(held(&mesh.target("ldap"), "pat"), vec!["group:sales", "group:staff"]);
    let stages: Vec<&str> = joiner.calendar.iter().map(|e| e.stage.as_str()).collect();
    assert!(stages.iter().all(|s| *s == calendar::PREHIRE_STAGE) && !stages.is_empty(), "{joiner:?}");
    assert!(joiner.calendar.iter().all(|e| e.state == pb::TaskState::Verified as i32), "{joiner:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hire_cancelled_before_its_start_removes_what_the_prehire_created() {
    let mut mesh = Mesh::start_with(4, with_prehire("2h")).await;
    let start = coordinator::event::format_time(Some(coordinator::event::now_ms() + 3_600_000));
    submit(&mut mesh.client, event("qj1", pb::EventKind::Joiner, "H2", person("quin", "Sales"), &start)).await;
    for target in ["ldap", "scim", "aws"] {
        let prehire = until_terminal(&mut mesh.client, &calendar::prehire_event_id(target, "qj1")).await;
        assert_eq!(prehire.state, pb::EventState::Verified as i32, "{prehire:?}");
        assert!(mesh.target(target).get("quin").is_some_and(|a| !a.enabled), "pre-hired on {target}");
    }
    submit(&mut mesh.client, event("ql1", pb::EventKind::Leaver, "H2", Default::default(), "")).await;
    let joiner = until_terminal(&mut mesh.client, "qj1").await;
    assert_eq!(joiner.state, pb::EventState::Superseded as i32, "the hire never starts: {joiner:?}");
    assert!(joiner.tasks.iter().all(|t| t.last_error.contains("ql1")), "{joiner:?}");
    for target in ["ldap", "scim", "aws"] {
        let removal = until_terminal(&mut mesh.client, &calendar::prehire_removal_event_id(target, "qj1")).await;
        assert_eq!(removal.state, pb::EventState::Verified as i32, "{removal:?}");
        assert!(mesh.target(target).get("quin").is_none(), "{target} still holds the pre-hired account");
    }
    until_terminal(&mut mesh.client, "ql1").await;
    let status = mesh.client.get_event(pb::GetEventRequest { event_id: "qj1".into() }).await.expect("status");
    let stages: Vec<String> = status.into_inner().calendar.iter().map(|e| e.stage.clone()).collect();
    assert!(stages.iter().any(|s| s == calendar::PREHIRE_REMOVAL_STAGE), "{stages:?}");
}

#[test]
fn a_lead_time_or_retention_that_does_not_parse_is_refused_with_its_path() {
    let policy = r#"
version: 1
source_of_truth: { system: workday, attributes: [username] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{username}", insecure_plaintext: true, delete_after: soon, prehire: "2" }
workflows:
  - { name: w, owner: o, trigger: { events: [joiner] }, grants: { ldap: [ { kind: group, id: g } ] }, prehire: 3x }
"#;
    let Err(coordinator::policy::PolicyError::Invalid(issues)) = Policy::parse(policy) else { panic!("refused") };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for path in ["targets[0].delete_after", "targets[0].prehire", "workflows[0].prehire"] {
        assert!(paths.contains(&path), "{path} in {issues:?}");
    }
}

/// The reference connector, declaring no delete support.
struct NoDelete(MemoryConnector);

impl Connector for NoDelete {
    fn describe(&self) -> pb::DescribeResponse {
        let mut description = self.0.describe();
        if let Some(capabilities) = description.capabilities.as_mut() {
            capabilities.delete = false;
        }
        description
    }
    async fn preflight(&self) -> Result<(), ConnectorError> {
        self.0.preflight().await
    }
    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        self.0.apply(command_id, desired).await
    }
    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        self.0.read(account).await
    }
    fn list(&self, page_size: u32) -> AccountStream {
        self.0.list(page_size)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_on_a_connector_without_delete_is_refused() {
    let store = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(NoDelete(MemoryConnector::new("ldap", store)))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds");
    let policy = format!(
        r#"
version: 1
source_of_truth: {{ system: workday, attributes: [username] }}
targets:
  - {{ id: ldap, endpoint: "{}", insecure_plaintext: true, account_name: "{{username}}", delete_after: 30d }}
"#,
        server.endpoint()
    );
    let policy = Policy::parse(&policy).expect("parses: the file alone is consistent");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(SqliteStore::open(&dir.path().join("c.db")).await.expect("store"));
    let engine = Engine::start(db, Arc::new(policy), EngineConfig::default()).await.expect("engine");
    let issues = calendar::check_connectors(&engine, Duration::from_secs(10)).await;
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].path, "targets[0].delete_after");
    assert!(issues[0].message.contains("delete"), "{issues:?}");
}
