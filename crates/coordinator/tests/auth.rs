//! Authenticated and authorised callers of the lifecycle API, over real gRPC:
//! refusals come back as UNAUTHENTICATED / PERMISSION_DENIED and are in the
//! audit chain with the principal (never the token); sources are bound to
//! their source system; separation of duties holds on the server; client
//! certificates authenticate over TLS.

mod support;

use std::path::Path;
use std::sync::Arc;

use connector_kit::contract as pb;
use connector_kit::tls::{ClientTlsFiles, ServerTlsFiles};
use coordinator::auth::{
    ACCESS_REFUSED, ACCESS_REFUSED_SUPPRESSED, Authentication, CallerRegistry, Gate, Method, RefusalClock, RefusalLimit,
};
use coordinator::store::{AuditRecord, Store};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use sha2::{Digest, Sha256};
use support::{Access, Mesh, event, person, task};
use tonic::transport::Channel;

const HR_TOKEN: &str = "hr-token-5b0d1e7c9f";
const SAP_TOKEN: &str = "sap-token-0c4a9e2d17";
const AUDITOR_TOKEN: &str = "auditor-token-7e1f3b";
const CAROL_TOKEN: &str = "carol-token-a93c11";
const SAM_TOKEN: &str = "sam-token-4410fe";
const ALICE_TOKEN: &str = "alice-token-d2b7c0";
const WRONG_TOKEN: &str = "not-a-known-token-31337";

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn callers_yaml() -> String {
    format!(
        r#"
callers:
  - {{ principal: hr-integration, roles: [source], source_systems: [workday], token_sha256: ["{hr}"] }}
  - {{ principal: sap-feed, roles: [source], source_systems: [sap], token_sha256: ["{sap}"] }}
  - {{ principal: auditor, roles: [auditor], token_sha256: ["{auditor}"], certificate_names: [auditor.mesh.test] }}
  - {{ principal: carol, roles: [source, approver], source_systems: [workday], token_sha256: ["{carol}"] }}
  - {{ principal: sam, roles: [approver], token_sha256: ["{sam}"] }}
  - {{ principal: alice, roles: [approver], token_sha256: ["{alice}"] }}
"#,
        hr = digest(HR_TOKEN),
        sap = digest(SAP_TOKEN),
        auditor = digest(AUDITOR_TOKEN),
        carol = digest(CAROL_TOKEN),
        sam = digest(SAM_TOKEN),
        alice = digest(ALICE_TOKEN),
    )
}

fn callers() -> Authentication {
    Authentication::Callers(Arc::new(CallerRegistry::parse(&callers_yaml()).expect("callers file")))
}

async fn authenticated_mesh() -> Mesh {
    Mesh::start_with_access(8, |p| p, Access { authentication: callers(), ..Access::default() }).await
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    request
}

async fn submit(
    client: &mut LifecycleClient<Channel>,
    event: pb::LifecycleEvent,
    token: Option<&str>,
) -> Result<pb::Receipt, tonic::Status> {
    let request = with_token(pb::SubmitEventRequest { event: Some(event) }, token);
    Ok(client.submit_event(request).await?.into_inner().receipt.expect("receipt"))
}

async fn decide(
    client: &mut LifecycleClient<Channel>,
    event_id: &str,
    target_id: &str,
    token: &str,
) -> Result<pb::ApprovalResponse, tonic::Status> {
    let request = with_token(
        pb::ApprovalRequest { event_id: event_id.into(), target_id: target_id.into(), comment: "ok".into() },
        Some(token),
    );
    Ok(client.approve(request).await?.into_inner())
}

async fn audit(store: &dyn Store) -> Vec<AuditRecord> {
    store.audit_records(0, 100_000).await.expect("audit records")
}

fn refusals(records: &[AuditRecord]) -> Vec<&AuditRecord> {
    records.iter().filter(|r| r.action == ACCESS_REFUSED).collect()
}

/// Follows an event, as the auditor, until no task is planned, dispatched or
/// acknowledged; a generous overall limit keeps a bug from hanging CI.
async fn settled(client: &mut LifecycleClient<Channel>, event_id: &str) -> pb::EventStatus {
    let settled = async {
        loop {
            let request = with_token(pb::GetEventRequest { event_id: event_id.into() }, Some(AUDITOR_TOKEN));
            let status = client.get_event(request).await.expect("status").into_inner();
            let moving = status.tasks.iter().any(|t| {
                [pb::TaskState::Planned, pb::TaskState::Dispatched, pb::TaskState::Acknowledged]
                    .iter()
                    .any(|s| *s as i32 == t.state)
            });
            if !moving {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), settled).await.expect("event settles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_a_token_is_unauthenticated_and_audited() {
    let mesh = authenticated_mesh().await;
    let mut client = mesh.client.clone();
    let missing = client
        .get_event(with_token(pb::GetEventRequest { event_id: "x".into() }, None))
        .await
        .expect_err("no credentials");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing:?}");
    let wrong =
        submit(&mut client, event("u1", pb::EventKind::Joiner, "P1", person("ann", "Sales"), ""), Some(WRONG_TOKEN))
            .await
            .expect_err("unknown token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let mut header_only = tonic::Request::new(pb::VerifyAuditRequest {});
    header_only.metadata_mut().insert("x-jml-principal", "admin".parse().expect("header"));
    let header = client.verify_audit(header_only).await.expect_err("the principal header is not a credential");
    assert_eq!(header.code(), tonic::Code::Unauthenticated);
    let malformed = {
        let mut request = tonic::Request::new(pb::VerifyAuditRequest {});
        request.metadata_mut().insert("authorization", format!("Basic {HR_TOKEN}").parse().expect("header"));
        client.verify_audit(request).await.expect_err("not a bearer token")
    };
    assert_eq!(malformed.code(), tonic::Code::Unauthenticated);
    assert!(mesh.store.event("u1").await.expect("store").is_none(), "nothing was accepted");

    let records = audit(mesh.store.as_ref()).await;
    let refused = refusals(&records);
    assert_eq!(refused.len(), 4, "{records:#?}");
    assert!(refused.iter().all(|r| r.principal == "anonymous"), "{refused:#?}");
    let methods: Vec<String> = refused
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).expect("json")["method"].to_string())
        .collect();
    assert_eq!(methods, ["\"GetEvent\"", "\"SubmitEvent\"", "\"VerifyAudit\"", "\"VerifyAudit\""]);
    for record in &records {
        for secret in [WRONG_TOKEN, HR_TOKEN] {
            assert!(!record.payload.contains(secret), "a token reached the audit chain: {record:?}");
        }
    }
    let verdict = coordinator::store::verify_audit(mesh.store.as_ref()).await.expect("verify");
    assert!(verdict.broken.is_none(), "{verdict:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_the_wrong_role_is_denied_and_audited_with_its_principal() {
    let mesh = authenticated_mesh().await;
    let mut client = mesh.client.clone();
    let denied =
        submit(&mut client, event("w1", pb::EventKind::Joiner, "P1", person("ann", "Sales"), ""), Some(AUDITOR_TOKEN))
            .await
            .expect_err("an auditor may not submit");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let evidence = client
        .export_evidence(with_token(pb::ExportEvidenceRequest { event_id: "w1".into() }, Some(HR_TOKEN)))
        .await
        .expect_err("a source may not export evidence");
    assert_eq!(evidence.code(), tonic::Code::PermissionDenied);
    let verdict = client
        .verify_audit(with_token(pb::VerifyAuditRequest {}, Some(AUDITOR_TOKEN)))
        .await
        .expect("an auditor verifies the audit chain")
        .into_inner();
    assert!(verdict.intact);
    assert!(mesh.store.event("w1").await.expect("store").is_none());

    let records = audit(mesh.store.as_ref()).await;
    let refused: Vec<(String, String)> = refusals(&records)
        .iter()
        .map(|r| {
            let payload: serde_json::Value = serde_json::from_str(&r.payload).expect("json");
            (
                r.principal.clone(),
                format!("{}:{}", payload["method"].as_str().unwrap_or(""), payload["code"].as_str().unwrap_or("")),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("auditor".to_string(), "SubmitEvent:PERMISSION_DENIED".to_string()),
            ("hr-integration".to_string(), "ExportEvidence:PERMISSION_DENIED".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_bound_to_its_source_system() {
    let mesh = authenticated_mesh().await;
    let mut client = mesh.client.clone();
    // sap-feed may submit only for sap: a workday event from it is refused.
    let refused =
        submit(&mut client, event("s1", pb::EventKind::Joiner, "P1", person("ann", "Sales"), ""), Some(SAP_TOKEN))
            .await
            .expect_err("bound to another source system");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // Its own system is not the policy's source of truth: still refused.
    let mut from_sap = event("s2", pb::EventKind::Joiner, "P1", person("ann", "Sales"), "");
    from_sap.source_system = "sap".into();
    let refused = submit(&mut client, from_sap.clone(), Some(SAP_TOKEN)).await.expect_err("not the source of truth");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // hr-integration may not claim to be sap either.
    let refused = submit(&mut client, from_sap, Some(HR_TOKEN)).await.expect_err("hr is bound to workday");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    for id in ["s1", "s2"] {
        assert!(mesh.store.event(id).await.expect("store").is_none(), "{id} must not be accepted");
    }
    // The audit names each refused source.
    let records = audit(mesh.store.as_ref()).await;
    let principals: Vec<&str> = refusals(&records).iter().map(|r| r.principal.as_str()).collect();
    assert_eq!(principals, ["sap-feed", "hr-integration"]);

    // The bound source submits; the record names it, not the header it sent.
    let mut request = with_token(
        pb::SubmitEventRequest { event: Some(event("s3", pb::EventKind::Joiner, "P3", person("bea", "Sales"), "")) },
        Some(HR_TOKEN),
    );
    request.metadata_mut().insert("x-jml-principal", "mallory".parse().expect("header"));
    let receipt = client.submit_event(request).await.expect("accepted").into_inner().receipt.expect("receipt");
    assert_eq!(receipt.initiator, "hr-integration");
    let accepted = mesh.store.event_audit("s3").await.expect("audit");
    assert!(!accepted.is_empty());
    assert!(accepted.iter().all(|r| r.principal != "mallory"), "{accepted:#?}");
    assert_eq!(accepted[0].principal, "hr-integration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties_holds_on_the_server() {
    let mesh = authenticated_mesh().await;
    let mut client = mesh.client.clone();
    // carol (source and approver) submits an SRE joiner for sam: the vault
    // grant waits for two approvals from the security group.
    submit(&mut client, event("d1", pb::EventKind::Joiner, "P9", person("sam", "SRE"), ""), Some(CAROL_TOKEN))
        .await
        .expect("carol submits");
    let status = settled(&mut client, "d1").await;
    assert_eq!(task(&status, "vault").state, pb::TaskState::AwaitingApproval as i32, "{status:?}");

    let own = decide(&mut client, "d1", "vault", CAROL_TOKEN).await.expect_err("self-approval");
    assert_eq!(own.code(), tonic::Code::PermissionDenied);
    assert!(own.message().contains("initiator"), "{own:?}");
    let subject = decide(&mut client, "d1", "vault", SAM_TOKEN).await.expect_err("the subject approves");
    assert_eq!(subject.code(), tonic::Code::PermissionDenied);
    assert!(subject.message().contains("subject"), "{subject:?}");
    let source = decide(&mut client, "d1", "vault", HR_TOKEN).await.expect_err("a source may not approve");
    assert_eq!(source.code(), tonic::Code::PermissionDenied);
    let alice = decide(&mut client, "d1", "vault", ALICE_TOKEN).await.expect("alice approves");
    assert_eq!((alice.approvals, alice.required), (1, 2));
    assert!(mesh.target("vault").get("sam").is_none(), "one approval of two grants nothing");
    let approvals = mesh.store.approvals("d1").await.expect("approvals");
    let approvers: Vec<&str> = approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(approvers, ["alice"]);
    let records = audit(mesh.store.as_ref()).await;
    assert_eq!(refusals(&records).iter().map(|r| r.principal.as_str()).collect::<Vec<_>>(), ["hr-integration"]);
}

/// `<ca>.pem`, and for each (leaf, CN and DNS name) `<leaf>.pem` + `<leaf>.key`.
fn make_ca(dir: &Path, ca: &str, leaves: &[(&str, &str)]) {
    mesh_harness::test_pki::write_ca(dir, ca, leaves).expect("test certificates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_over_tls() {
    let pki = tempfile::tempdir().expect("tempdir");
    let dir = pki.path();
    make_ca(
        dir,
        "mesh",
        &[
            ("coordinator", "coordinator.mesh.test"),
            ("auditor", "auditor.mesh.test"),
            ("stranger", "stranger.mesh.test"),
        ],
    );
    make_ca(dir, "rogue", &[("rogue-auditor", "auditor.mesh.test")]);
    let client_tls = |identity: Option<&str>, ca: &str| ClientTlsFiles {
        server_ca: dir.join(format!("{ca}.pem")),
        server_name: "coordinator.mesh.test".into(),
        identity: identity.map(|leaf| (dir.join(format!("{leaf}.pem")), dir.join(format!("{leaf}.key")))),
    };
    let mesh = Mesh::start_with_access(
        8,
        |p| p,
        Access {
            server_tls: Some(ServerTlsFiles {
                certificate: dir.join("coordinator.pem"),
                private_key: dir.join("coordinator.key"),
                client_ca: Some(dir.join("mesh.pem")),
            }),
            authentication: callers(),
            client_tls: Some(client_tls(Some("auditor"), "mesh")),
        },
    )
    .await;
    let mut client = mesh.client.clone();
    let verdict = client.verify_audit(pb::VerifyAuditRequest {}).await.expect("the auditor's certificate").into_inner();
    assert!(verdict.intact);
    // The certificate gives the auditor's roles, no more.
    let denied = client
        .submit_event(pb::SubmitEventRequest {
            event: Some(event("c1", pb::EventKind::Joiner, "P1", person("ann", "Sales"), "")),
        })
        .await
        .expect_err("an auditor may not submit");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    let connect = |files: ClientTlsFiles| {
        let endpoint = format!("https://{}", mesh.coordinator.local_addr());
        async move {
            let channel = tonic::transport::Endpoint::from_shared(endpoint)
                .expect("endpoint")
                .tls_config(files.load().expect("files"))
                .expect("tls")
                .connect()
                .await?;
            Ok::<_, tonic::transport::Error>(LifecycleClient::new(channel))
        }
    };
    // A token without a certificate works over the same TLS listener.
    let mut token_client = connect(client_tls(None, "mesh")).await.expect("TLS without a client certificate");
    token_client
        .verify_audit(with_token(pb::VerifyAuditRequest {}, Some(AUDITOR_TOKEN)))
        .await
        .expect("the auditor's token over TLS");
    let none = token_client.verify_audit(pb::VerifyAuditRequest {}).await.expect_err("no credentials");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    // A certificate of the mesh CA naming no caller is not a credential.
    let mut stranger = connect(client_tls(Some("stranger"), "mesh")).await.expect("TLS");
    let refused = stranger.verify_audit(pb::VerifyAuditRequest {}).await.expect_err("unknown certificate name");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("stranger.mesh.test"), "{refused:?}");
    // A certificate from another CA never gets past the handshake.
    let rogue = match connect(client_tls(Some("rogue-auditor"), "mesh")).await {
        Err(_) => true,
        Ok(mut client) => client.verify_audit(pb::VerifyAuditRequest {}).await.is_err(),
    };
    assert!(rogue, "a certificate from another CA was accepted");
    let records = audit(mesh.store.as_ref()).await;
    let refused: Vec<&str> = refusals(&records).iter().map(|r| r.principal.as_str()).collect();
    assert_eq!(refused, ["auditor", "anonymous", "anonymous"], "{records:#?}");
}

/// A clock the test moves: the refusal windows end when the test says so.
struct TestClock(tokio::sync::watch::Sender<i64>);

impl RefusalClock for TestClock {
    fn now_ms(&self) -> i64 {
        *self.0.borrow()
    }

    fn wait_until(&self, at_ms: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let mut now = self.0.subscribe();
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= at_ms).await;
        })
    }
}

/// A flood of refused calls: the first few of a window are recorded one by
/// one, the rest as one summary with their count when the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_calls_is_recorded_in_bounded_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(coordinator::SqliteStore::open(&dir.path().join("gate.db")).await.expect("store"));
    let limit = RefusalLimit { recorded_per_window: 5, window: std::time::Duration::from_millis(500) };
    let start = 1_800_000_000_000;
    let clock = Arc::new(TestClock(tokio::sync::watch::Sender::new(start)));
    let gate = Gate::new(callers(), store.clone()).with_refusal_limit(limit).with_refusal_clock(clock.clone());
    for _ in 0..50 {
        let request = with_token(pb::VerifyAuditRequest {}, Some(WRONG_TOKEN));
        let refused = gate.check(&request, Method::VerifyAudit).await.expect_err("unknown token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
    // The auditor's token still works, recorded by nobody.
    let request = with_token(pb::VerifyAuditRequest {}, Some(AUDITOR_TOKEN));
    gate.check(&request, Method::VerifyAudit).await.expect("the auditor may verify");
    // However long the flood took, it is one window until the clock moves.
    let records = audit(store.as_ref()).await;
    assert_eq!(refusals(&records).len(), 5, "{records:#?}");
    assert!(!records.iter().any(|r| r.action == ACCESS_REFUSED_SUPPRESSED), "summary before the window ended");
    clock.0.send_replace(start + 500);
    let summary = async {
        loop {
            let records = audit(store.as_ref()).await;
            if records.iter().any(|r| r.action == ACCESS_REFUSED_SUPPRESSED) {
                return records;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let records = tokio::time::timeout(std::time::Duration::from_secs(30), summary).await.expect("a summary");
    assert_eq!(refusals(&records).len(), 5, "{records:#?}");
    let summaries: Vec<&AuditRecord> = records.iter().filter(|r| r.action == ACCESS_REFUSED_SUPPRESSED).collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let payload: serde_json::Value = serde_json::from_str(&summaries[0].payload).expect("json");
    assert_eq!(summaries[0].principal, "anonymous");
    assert_eq!((payload["method"].as_str(), payload["code"].as_str()), (Some("VerifyAudit"), Some("UNAUTHENTICATED")));
    assert_eq!(payload["refusals"], 45, "every refusal counted: {payload}");
    // The next window records one by one again.
    let request = with_token(pb::VerifyAuditRequest {}, Some(WRONG_TOKEN));
    gate.check(&request, Method::VerifyAudit).await.expect_err("unknown token");
    assert_eq!(refusals(&audit(store.as_ref()).await).len(), 6);
    assert!(coordinator::store::verify_audit(store.as_ref()).await.expect("verify").broken.is_none());
}
