//! The credential model through the coordinator: a leaver on a target whose
//! connector declares what may outlive a revocation ends *verified with
//! residual risk* (never retried, listed with kind and bound in status,
//! evidence and the event), a target that proves everything ends verified,
//! an event whose plan has no task has nothing to do, and an event with an
//! account name one target's declared naming rules refuse is refused whole
//! at submit, before anything is written (no partial people).

mod support;

use std::sync::Arc;
use std::time::Duration;

use connector_kit::contract as pb;
use connector_kit::credentials::{kind, outlives_for};
use connector_kit::server::ConnectorServer;
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::server::RunningCoordinator;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use support::{TARGETS, Target, event, person, policy_yaml, submit, task, until_terminal};

/// The four reference connectors; `vault` declares `declared` as its
/// credential model.
async fn targets(declared: Vec<pb::CredentialKindSpec>) -> Vec<Target> {
    let config = MemoryConfig::default();
    let mut targets = Vec::new();
    for id in TARGETS {
        let store = Arc::new(MemoryTarget::new(&config.entitlements, None));
        let mut connector = MemoryConnector::new(id, store.clone());
        if id == "vault" {
            connector =
                connector.with_credential_kinds(declared.clone()).with_account_naming(connector_kit::naming::rule(
                    &[('a', 'z'), ('0', '9')],
                    (3, 16),
                    pb::ValueComparison::CaseInsensitive,
                    false,
                    "-",
                    "a-z 0-9, 3 to 16",
                ));
        }
        let server =
            ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
        targets.push(Target { id: id.into(), store, server });
    }
    targets
}

struct Mesh {
    targets: Vec<Target>,
    _coordinator: RunningCoordinator,
    client: LifecycleClient<tonic::transport::Channel>,
    _dir: tempfile::TempDir,
}

async fn mesh(declared: Vec<pb::CredentialKindSpec>, edit: impl FnOnce(String) -> String) -> Mesh {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = targets(declared).await;
    let policy = Policy::parse(&edit(policy_yaml(&targets, 2))).expect("policy");
    let store = Arc::new(SqliteStore::open(&dir.path().join("mesh.db")).await.expect("store"));
    let config = EngineConfig {
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, Arc::new(policy), config).await.expect("engine");
    let coordinator = RunningCoordinator::bind("127.0.0.1:0".parse().expect("address"), engine).await.expect("bind");
    let client = LifecycleClient::connect(coordinator.endpoint()).await.expect("client");
    Mesh { targets, _coordinator: coordinator, client, _dir: dir }
}

fn sessions_for_12h() -> Vec<pb::CredentialKindSpec> {
    vec![
        kind("password", true, true, None),
        kind(
            "session",
            false,
            false,
            Some(outlives_for("", "sessions opened before the revocation", Duration::from_secs(12 * 3600))),
        ),
    ]
}

async fn joiner_then_leaver(mesh: &mut Mesh, username: &str) -> pb::EventStatus {
    let attributes = person(username, "Sales");
    let joiner = event(&format!("{username}-j"), pb::EventKind::Joiner, username, attributes.clone(), "");
    submit(&mut mesh.client, joiner).await;
    let joined = until_terminal(&mut mesh.client, &format!("{username}-j")).await;
    assert_eq!(
        joined.state,
        pb::EventState::Verified as i32,
        "a joiner keeps credentials: no residual risk {joined:?}"
    );
    let leaver = event(&format!("{username}-l"), pb::EventKind::Leaver, username, attributes, "");
    submit(&mut mesh.client, leaver).await;
    until_terminal(&mut mesh.client, &format!("{username}-l")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_survivor_makes_the_leaver_verified_with_residual_risk_never_retried() {
    let mut mesh = mesh(sessions_for_12h(), |p| p).await;
    let status = joiner_then_leaver(&mut mesh, "rhea").await;
    let vault = task(&status, "vault");
    assert_eq!(vault.state, pb::TaskState::VerifiedWithResidualRisk as i32, "{vault:?}");
    assert_eq!(vault.attempts, 1, "never retried: {vault:?}");
    assert!(vault.differences.is_empty(), "{vault:?}");
    let risks: Vec<(&str, i32, Option<i64>)> = vault
        .residual_risks
        .iter()
        .map(|r| (r.credential_kind.as_str(), r.bound, r.max_lifetime.as_ref().map(|d| d.seconds)))
        .collect();
    assert_eq!(risks, [("session", pb::ResidualBound::Duration as i32, Some(12 * 3600))]);
    for other in ["ldap", "scim", "aws"] {
        assert_eq!(task(&status, other).state, pb::TaskState::Verified as i32, "{other} proves everything");
    }
    assert_eq!(status.state, pb::EventState::VerifiedWithResidualRisk as i32, "{status:?}");
    assert_eq!(status.residual_risks, ["vault: session: sessions opened before the revocation (up to 12h)"]);
    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: "rhea-l".into() })
        .await
        .expect("evidence")
        .into_inner();
    let evidence: serde_json::Value = serde_json::from_str(&evidence.json).expect("json");
    assert_eq!(evidence["state"], "verified_with_residual_risk");
    let vault = evidence["targets"].as_array().expect("targets").iter().find(|t| t["target_id"] == "vault").cloned();
    let vault = vault.expect("vault in the evidence");
    assert_eq!(vault["state"], "verified_with_residual_risk");
    assert_eq!(vault["residual_risks"][0]["bound"], "up to 12h", "{vault}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlistable_kind_is_a_residual_risk_of_unknown_bound() {
    let declared = vec![kind("password", true, true, None), kind("token", false, true, None)];
    let mut mesh = mesh(declared, |p| p).await;
    let status = joiner_then_leaver(&mut mesh, "tomas").await;
    let vault = task(&status, "vault");
    assert_eq!(vault.state, pb::TaskState::VerifiedWithResidualRisk as i32, "{vault:?}");
    assert_eq!(vault.residual_risks.len(), 1, "{vault:?}");
    assert_eq!(vault.residual_risks[0].credential_kind, "token");
    assert_eq!(vault.residual_risks[0].bound, pb::ResidualBound::Unknown as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_plan_has_no_task_has_nothing_to_do() {
    // Only Sales people get anything on a joiner.
    let mut mesh = mesh(sessions_for_12h(), |p| {
        p.replace(
            "trigger: { events: [joiner, mover] }",
            "trigger: { events: [joiner, mover], when: { department: Sales } }",
        )
    })
    .await;
    let joiner = event("nobody-j", pb::EventKind::Joiner, "nobody", person("nobody", "Finance"), "");
    submit(&mut mesh.client, joiner).await;
    let status = until_terminal(&mut mesh.client, "nobody-j").await;
    assert!(status.tasks.is_empty(), "{status:?}");
    assert_eq!(status.state, pb::EventState::NothingToDo as i32, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_one_target_refuses_refuses_the_whole_event_before_anything_is_written() {
    let declared = vec![kind("password", true, true, None)];
    let mut mesh = mesh(declared, |p| p).await;
    let joiner = event("bad-j", pb::EventKind::Joiner, "bad", person("o.brien", "SRE"), "");
    let mut request = tonic::Request::new(pb::SubmitEventRequest { event: Some(joiner) });
    request.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
    let refused = mesh.client.submit_event(request).await.expect_err("the vault name rule refuses it");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("target vault") && refused.message().contains("a-z 0-9, 3 to 16"),
        "{refused:?}"
    );
    let status = mesh.client.get_event(pb::GetEventRequest { event_id: "bad-j".into() }).await;
    assert_eq!(status.expect_err("nothing stored").code(), tonic::Code::NotFound);
    for target in &mesh.targets {
        assert!(target.store.get("o.brien").is_none(), "nothing written on {}", target.id);
    }
}
