//! Leave of absence on an in-process coordinator over reference connectors
//! (the acceptance on the real targets is `tests/e2e/leave.rs`).

mod support;

use connector_kit::contract as pb;
use support::*;

async fn approve(mesh: &mut Mesh, event_id: &str, target: &str, approver: &str) {
    let mut request = tonic::Request::new(pb::ApprovalRequest {
        event_id: event_id.into(),
        target_id: target.into(),
        comment: "ok".into(),
    });
    request.metadata_mut().insert("x-jml-principal", approver.parse().expect("header"));
    mesh.client.approve(request).await.expect("approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_disables_keeps_or_strips_and_the_return_needs_no_fresh_approval() {
    // ldap keeps its entitlements on leave; the others strip them.
    let mut mesh = Mesh::start_with(4, |policy| {
        policy.replacen("insecure_plaintext: true,", "insecure_plaintext: true, on_leave: keep,", 1)
    })
    .await;
    let refused = submit_as(
        &mut mesh.client,
        event("ls0", pb::EventKind::Suspension, "L9", person("nobody", "SRE"), ""),
        "hr-bot",
    )
    .await
    .expect_err("no identity record");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("event.person_id"), "{refused:?}");

    submit(&mut mesh.client, event("lj1", pb::EventKind::Joiner, "L1", person("lou", "SRE"), "")).await;
    until_settled(&mut mesh.client, "lj1").await;
    for target in ["ldap", "vault"] {
        approve(&mut mesh, "lj1", target, "alice").await;
        approve(&mut mesh, "lj1", target, "bob").await;
    }
    assert_eq!(until_terminal(&mut mesh.client, "lj1").await.state, pb::EventState::Verified as i32);
    let before = held(&mesh.target("ldap"), "lou");
    assert!(before.contains(&"group:it-ops".to_string()), "{before:?}");
    assert_eq!(held(&mesh.target("vault"), "lou"), vec!["group:prod-access"]);

    submit(&mut mesh.client, event("ls1", pb::EventKind::Suspension, "L1", Default::default(), "")).await;
    let suspended = until_terminal(&mut mesh.client, "ls1").await;
    assert_eq!(suspended.state, pb::EventState::Verified as i32, "{suspended:?}");
    let ldap = mesh.target("ldap").get("lou").expect("kept");
    assert!(!ldap.enabled);
    assert_eq!(held(&mesh.target("ldap"), "lou"), before, "ldap keeps its entitlements on leave");
    let vault = mesh.target("vault").get("lou").expect("kept");
    assert!(!vault.enabled && vault.entitlements.is_empty(), "vault strips: {vault:?}");

    submit(&mut mesh.client, event("lr1", pb::EventKind::Return, "L1", Default::default(), "")).await;
    let back = until_terminal(&mut mesh.client, "lr1").await;
    assert_eq!(back.state, pb::EventState::Verified as i32, "no approval awaited: {back:?}");
    assert!(back.tasks.iter().all(|t| t.approvals.is_empty()), "{back:?}");
    assert!(mesh.target("vault").get("lou").is_some_and(|a| a.enabled));
    assert_eq!(held(&mesh.target("vault"), "lou"), vec!["group:prod-access"]);
    assert_eq!(held(&mesh.target("ldap"), "lou"), before);

    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: "lr1".into() })
        .await
        .expect("evidence")
        .into_inner();
    let evidence: serde_json::Value = serde_json::from_str(&evidence.json).expect("json");
    assert_eq!(evidence["leave"]["suspension"], "ls1", "{evidence}");
    assert_eq!(evidence["leave"]["returned_by"], "lr1");
}
