//! A manual target end to end against the real Request Tracker
//! (`deploy/local/rt.sh start`): the ticket connector served over gRPC, an
//! in-process coordinator on SQLite, and the tickets read and answered
//! through RT's own REST2 API as the fulfillers would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_ticket::TicketConnector;
use coordinator::server::RunningCoordinator;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use sha2::{Digest, Sha256};
use support::{Rest2, RtEnv, leaver_attestation, rt_env, run_id};
use tonic::transport::Channel;

struct Manual {
    env: RtEnv,
    target_id: String,
    _connector: RunningServer,
    coordinator: RunningCoordinator,
    client: LifecycleClient<Channel>,
    connector: ConnectorClient,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn start(deadline: &str) -> Manual {
    let env = rt_env();
    let target_id = format!("payroll-{}", run_id());
    let connector = TicketConnector::new(&support::config(&env, &target_id)).expect("connector config");
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let policy = format!(
        r#"
version: 1
source_of_truth: {{ system: workday, attributes: [username, department] }}
targets:
  - {{ id: {target_id}, endpoint: "{endpoint}", insecure_plaintext: true, account_name: "{{username}}", deadline: {deadline} }}
workflows:
  - name: payroll-clerks
    owner: payroll-owner@example.org
    trigger: {{ events: [joiner, mover] }}
    grants: {{ {target_id}: [ {{ kind: role, id: clerk }} ] }}
"#,
        endpoint = server.endpoint()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("mesh.db")).await.expect("store"));
    let config = EngineConfig { fulfilment_poll: Duration::from_millis(300), ..EngineConfig::default() };
    let engine =
        Engine::start(store.clone(), Arc::new(Policy::parse(&policy).expect("policy")), config).await.expect("engine");
    let coordinator = RunningCoordinator::bind("127.0.0.1:0".parse().expect("address"), engine).await.expect("bind");
    let client = LifecycleClient::connect(coordinator.endpoint()).await.expect("client");
    let connector = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("connector client");
    Manual { env, target_id, _connector: server, coordinator, client, connector, store, _dir: dir }
}

fn event(event_id: &str, kind: pb::EventKind, person: &str, username: &str) -> pb::LifecycleEvent {
    pb::LifecycleEvent {
        event_id: event_id.into(),
        kind: kind as i32,
        person_id: person.into(),
        attributes: [("username".to_owned(), username.to_owned()), ("department".to_owned(), "Finance".to_owned())]
            .into(),
        source_system: "workday".into(),
        ..Default::default()
    }
}

impl Manual {
    async fn submit(&mut self, event: pb::LifecycleEvent, initiator: &str) {
        let mut request = tonic::Request::new(pb::SubmitEventRequest { event: Some(event) });
        request.metadata_mut().insert("x-jml-principal", initiator.parse().expect("header"));
        self.client.submit_event(request).await.expect("submit");
    }

    async fn task(&mut self, event_id: &str) -> pb::TaskStatus {
        let status = self
            .client
            .get_event(pb::GetEventRequest { event_id: event_id.into() })
            .await
            .expect("status")
            .into_inner();
        status.tasks.into_iter().find(|t| t.target_id == self.target_id).expect("task")
    }

    /// Waits until the task satisfies `done` (each change of the event is
    /// watched; bounded so a broken build fails rather than hangs).
    async fn until(&mut self, event_id: &str, what: &str, done: impl Fn(&pb::TaskStatus) -> bool) -> pb::TaskStatus {
        for _ in 0..600 {
            let task = self.task(event_id).await;
            if done(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let task = self.task(event_id).await;
        panic!("{event_id}: never {what}; task: state {} last_error {:?}", task.state, task.last_error);
    }
}

fn awaiting(task: &pb::TaskStatus) -> bool {
    task.state == pb::TaskState::AwaitingFulfilment as i32
}

#[tokio::test]
async fn a_leaver_on_a_manual_target_is_verified_only_by_an_independent_valid_attestation() {
    let mut mesh = start("1h").await;
    let run = run_id();
    let (person, username) = (format!("p-{run}"), format!("dana{run}"));
    let initiator = format!("hr-feed-{run}");
    let admin = Rest2::admin(&mesh.env);
    admin.create_user(&initiator, "initiator-password-1").await;
    let as_initiator = Rest2::new(&mesh.env, &initiator, "initiator-password-1");
    let ana = Rest2::fulfiller(&mesh.env, 0);
    let bo = Rest2::fulfiller(&mesh.env, 1);

    // The leaver opens a ticket stating the exact desired state.
    let leaver = format!("leaver-{run}");
    mesh.submit(event(&leaver, pb::EventKind::Leaver, &person, &username), &initiator).await;
    let task = mesh.until(&leaver, "awaiting fulfilment", awaiting).await;
    assert_eq!(task.attempts, 1, "filed once, never retried");
    let ticket = task.ticket.clone().expect("the task names its ticket");
    assert_eq!(ticket.action, "opened");
    let shown = ana.ticket(&ticket.ticket_id).await;
    assert_eq!(shown["Queue"]["id"].as_str().map(|_| ()), Some(()));
    assert!(shown["Subject"].as_str().unwrap_or_default().contains(&username), "{shown}");
    let bodies = ana.bodies(&ticket.ticket_id).await;
    let (creator, request) = bodies.first().cloned().expect("the request");
    assert_eq!(creator, mesh.env.user);
    for line in [
        "JML-REQUEST v1".to_owned(),
        format!("command: {}", task.command_id),
        format!("account: {username}"),
        format!("person: {person}"),
        "enabled: no".into(),
        "entitlements: none".into(),
        "credentials: revoke_all".into(),
    ] {
        assert!(request.lines().any(|l| l == line), "request lacks {line:?}:\n{request}");
    }

    // Resolved without an attestation: not verified.
    bo.comment(&ticket.ticket_id, "done, closing", Some("resolved"), &[]).await;
    let task = mesh
        .until(&leaver, "seen resolved without attestation", |t| t.last_error.contains("without an attestation"))
        .await;
    assert!(awaiting(&task), "still awaiting: {task:?}");

    // An attestation by the event's initiator is refused.
    as_initiator.comment(&ticket.ticket_id, &leaver_attestation(&task.command_id, &username), None, &[]).await;
    let task = mesh.until(&leaver, "initiator refused", |t| t.last_error.contains("initiator")).await;
    assert!(awaiting(&task));
    assert_eq!(task.attestation.as_ref().map(|a| a.fulfiller.as_str()), Some(initiator.as_str()));

    // A forged fulfiller line is refused.
    let forged = format!("{}fulfiller: {}\n", leaver_attestation(&task.command_id, &username), mesh.env.fulfillers[1]);
    ana.comment(&ticket.ticket_id, &forged, None, &[]).await;
    let task = mesh.until(&leaver, "forgery refused", |t| t.last_error.contains("forged")).await;
    assert!(awaiting(&task));

    // An attestation that does not match the desired state is not verified.
    let enabled = support::attestation(
        &task.command_id,
        &username,
        "exists: yes\nenabled: yes\nentitlements: none\ncredentials: none\n",
    );
    ana.comment(&ticket.ticket_id, &enabled, None, &[]).await;
    let task = mesh.until(&leaver, "mismatch seen", |t| t.last_error.contains("differs")).await;
    assert!(awaiting(&task));

    // A valid attestation by another person, with the application's export.
    let export =
        format!("account_name,person_id,enabled,entitlements\n{username},{person},no,\nother{run},,yes,role:clerk\n");
    ana.comment(
        &ticket.ticket_id,
        &leaver_attestation(&task.command_id, &username),
        None,
        &[("accounts.csv", export.as_bytes())],
    )
    .await;
    let task = mesh.until(&leaver, "verified", |t| t.state == pb::TaskState::Verified as i32).await;
    let attestation = task.attestation.clone().expect("attestation");
    assert_eq!(attestation.fulfiller, mesh.env.fulfillers[0]);
    assert_eq!(attestation.ticket_id, ticket.ticket_id);
    assert_eq!(attestation.export_digest, hex::encode(Sha256::digest(export.as_bytes())));

    // The evidence carries the ticket, the attestation and the export digest.
    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: leaver.clone() })
        .await
        .expect("evidence")
        .into_inner()
        .json;
    for needle in [ticket.ticket_id.as_str(), attestation.export_digest.as_str(), mesh.env.fulfillers[0].as_str()] {
        assert!(evidence.contains(needle), "evidence lacks {needle}");
    }

    // List serves the export to reconciliation.
    let mut stream = mesh.connector.list(10).await.expect("list");
    let mut listed = Vec::new();
    while let Some(page) = stream.message().await.expect("page") {
        listed.extend(page.accounts);
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|a| a.account.as_ref().is_some_and(|r| r.person_id == person) && !a.enabled));

    // The control report shows the manual task with its ticket and attestation.
    let report = mesh
        .client
        .control_report(pb::ControlReportRequest { from: "2000-01-01T00:00:00Z".into(), to: String::new() })
        .await
        .expect("report")
        .into_inner()
        .json;
    let report: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    let manual = &report["manual_targets"][0];
    assert_eq!(manual["outcome"], "verified", "{report}");
    assert_eq!(manual["ticket"]["id"], ticket.ticket_id.as_str());
    assert_eq!(manual["attestation"]["fulfiller"], mesh.env.fulfillers[0].as_str());
    assert_eq!(manual["attestation"]["export_digest"], attestation.export_digest.as_str());
    std::fs::write(std::env::temp_dir().join(format!("jml-manual-report-{run}.json")), report.to_string()).ok();

    // A recertification campaign over the manual target's accounts (its
    // attested export); the reviewer is the workflow owner, not the subject.
    let campaign = mesh
        .client
        .start_campaign(pb::StartCampaignRequest {
            name: format!("manual-{run}"),
            scope: format!("manual:{}", mesh.target_id),
            deadline: "1d".into(),
            fallback_reviewer: String::new(),
        })
        .await
        .expect("campaign")
        .into_inner();
    assert_eq!(campaign.items.len(), 2, "{campaign:?}");
    assert!(campaign.items.iter().all(|i| i.reviewer == "payroll-owner@example.org"), "{campaign:?}");
}

#[tokio::test]
async fn a_ticket_left_open_passes_its_deadline_and_shows_in_jmlctl_overdue() {
    let mut mesh = start("1s").await;
    let run = run_id();
    let joiner = format!("joiner-{run}");
    mesh.submit(event(&joiner, pb::EventKind::Joiner, &format!("p-{run}"), &format!("erin{run}")), "hr-feed").await;
    let task = mesh.until(&joiner, "overdue", |t| awaiting(t) && t.deadline_breached).await;
    assert!(task.ticket.is_some());
    let overdue = mesh.client.list_overdue(pb::ListOverdueRequest {}).await.expect("overdue").into_inner();
    assert!(overdue.tasks.iter().any(|t| t.event_id == joiner && t.state == pb::TaskState::AwaitingFulfilment as i32));

    let jmlctl = mesh_harness::binary("jmlctl").expect("jmlctl is built");
    let output = tokio::process::Command::new(jmlctl)
        .args(["--coordinator", &mesh.coordinator.endpoint(), "overdue", "--json"])
        .output()
        .await
        .expect("jmlctl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let row = listed
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["event_id"] == joiner.as_str()))
        .cloned()
        .expect("the open ticket's task is overdue");
    assert_eq!(row["state"], "awaiting_fulfilment");
    assert_eq!(row["owners"][0], "payroll-owner@example.org");

    // Escalated: the breach record names whom to, the metrics count it.
    use coordinator::store::Store;
    let audit = mesh.store.event_audit(&joiner).await.expect("audit");
    let breach = audit.iter().find(|r| r.action == "task.deadline_breached").expect("the breach is in the audit chain");
    let payload: serde_json::Value = serde_json::from_str(&breach.payload).expect("JSON");
    assert_eq!(payload["state"], "awaiting_fulfilment", "{payload}");
    assert_eq!(payload["escalated_to"], serde_json::json!(["payroll-owner@example.org"]), "{payload}");
    let escalated =
        format!("jml_fulfilment_escalations_total{{target=\"{}\",workflow=\"payroll-clerks\"}} 1", mesh.target_id);
    let overdue = format!("jml_fulfilment_overdue{{target=\"{}\"}} 1", mesh.target_id);
    let mut metrics = String::new();
    // The gauges are refreshed by the scheduler about once a second.
    for _ in 0..100 {
        metrics = connector_kit::metrics::encode();
        if metrics.contains(&escalated) && metrics.contains(&overdue) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains(&escalated), "{escalated} not in:\n{metrics}");
    assert!(metrics.contains(&overdue), "{overdue} not in:\n{metrics}");
}
