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
    move |policy| policy.replace("insecure_plaintext: true,", &format!("insecure_plaintext: true, delete_after: {retention},"))
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
    assert!(scheduled.iter().all(|s| s["state"] == "TASK_STATE_VERIFIED" && !s["due_at"].as_str().unwrap_or("").is_empty()));
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
    assert!(status.into_inner().calendar.iter().all(|e| e.state == pb::TaskState::Superseded as i32 && e.note.contains("rj2")));

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
