//! End-to-end lifecycle tests: an in-process coordinator driving four
//! reference connectors over real gRPC, with assertions on what each target
//! holds afterwards.

mod support;

use connector_kit::contract as pb;
use coordinator::store::{Store, verify_audit};
use support::*;

const VERIFIED: i32 = pb::EventState::Verified as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_mover_leaver_are_verified_on_every_target() {
    let mut mesh = Mesh::start(8).await;
    let receipt =
        submit(&mut mesh.client, event("j1", pb::EventKind::Joiner, "P1", person("ada", "Engineering"), "")).await;
    assert!(!receipt.duplicate);
    assert_eq!(receipt.targets, vec!["ldap", "scim", "aws"], "vault grants nothing to engineering");
    let status = until_terminal(&mut mesh.client, "j1").await;
    assert_eq!(status.state, VERIFIED, "{status:?}");
    let ldap = mesh.target("ldap");
    let account = ldap.get("ada").expect("ldap account");
    assert!(account.enabled);
    assert_eq!(account.person_id, "P1");
    assert_eq!(account.attributes.get("mail").map(String::as_str), Some("ada@example.org"));
    assert_eq!(held(&ldap, "ada"), vec!["group:engineering", "group:staff"]);
    assert_eq!(held(&mesh.target("scim"), "ada"), vec!["group:staff", "role:editor"]);
    assert_eq!(held(&mesh.target("aws"), "ada"), vec!["group:engineering", "group:staff"]);
    assert!(mesh.target("vault").get("ada").is_none());
    for task in &status.tasks {
        assert_eq!(task.state, pb::TaskState::Verified as i32);
        assert!(task.acknowledgement.is_some() && task.read_back.is_some() && task.differences.is_empty());
    }

    // Mover: engineering swapped for sales, old entitlements removed.
    submit(&mut mesh.client, event("m1", pb::EventKind::Mover, "P1", person("ada", "Sales"), "")).await;
    let status = until_terminal(&mut mesh.client, "m1").await;
    assert_eq!(status.state, VERIFIED, "{status:?}");
    assert_eq!(held(&ldap, "ada"), vec!["group:sales", "group:staff"]);
    assert_eq!(held(&mesh.target("scim"), "ada"), vec!["group:staff", "role:viewer"]);
    assert_eq!(held(&mesh.target("aws"), "ada"), vec!["group:staff"]);
    let read_back = task(&status, "ldap").read_back.clone().expect("read-back");
    assert!(!read_back.entitlements.iter().any(|e| e.id == "engineering"));

    // Leaver: attributes come from the identity record; every target
    // disabled, stripped, credentials revoked.
    let leaver = event("l1", pb::EventKind::Leaver, "P1", Default::default(), "");
    let receipt = submit(&mut mesh.client, leaver).await;
    assert_eq!(receipt.targets, vec!["ldap", "scim", "vault", "aws"]);
    let status = until_terminal(&mut mesh.client, "l1").await;
    assert_eq!(status.state, VERIFIED, "{status:?}");
    for id in TARGETS {
        let account = mesh.target(id).get("ada").expect("account kept, disabled");
        assert!(!account.enabled, "{id} still enabled");
        assert!(account.entitlements.is_empty(), "{id} still holds {:?}", account.entitlements);
        assert!(account.credentials.is_empty(), "{id} still has credentials");
    }
    let identity = mesh.store.identity("P1").await.expect("identity").expect("recorded");
    assert!(identity.has_left);
    assert_eq!(identity.event_id, "l1");

    // Rehire: re-enabled and re-granted.
    submit(&mut mesh.client, event("j2", pb::EventKind::Joiner, "P1", person("ada", "Engineering"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "j2").await.state, VERIFIED);
    let account = ldap.get("ada").expect("account");
    assert!(account.enabled);
    assert_eq!(held(&ldap, "ada"), vec!["group:engineering", "group:staff"]);
    let identity = mesh.store.identity("P1").await.expect("identity").expect("recorded");
    assert!(!identity.has_left);

    let verdict = verify_audit(mesh.store.as_ref()).await.expect("verify");
    assert_eq!(verdict.broken, None);
    assert!(verdict.records > 10);

    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: "m1".into() })
        .await
        .expect("evidence")
        .into_inner();
    let evidence: serde_json::Value = serde_json::from_str(&evidence.json).expect("json");
    assert_eq!(evidence["initiator"], "hr-bot");
    assert_eq!(evidence["workflows"][0]["owner"], "it@example.org");
    assert_eq!(evidence["targets"][0]["state"], "verified");
    assert!(evidence["targets"][0]["acknowledgement"]["changes"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(evidence["audit"].as_array().is_some_and(|a| a.len() >= 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_return_the_first_receipt_and_stale_events_never_regrant() {
    let mut mesh = Mesh::start(8).await;
    let first = submit(
        &mut mesh.client,
        event("d1", pb::EventKind::Joiner, "P2", person("bea", "Engineering"), "2026-01-01T09:00:00Z"),
    )
    .await;
    // Same id, different content: the first receipt, nothing new.
    let again = submit(
        &mut mesh.client,
        event("d1", pb::EventKind::Joiner, "P2", person("bea", "Sales"), "2026-01-01T09:00:00Z"),
    )
    .await;
    assert!(again.duplicate);
    assert_eq!(again.plan_hash, first.plan_hash);
    assert_eq!(again.received_at, first.received_at);
    assert_eq!(until_terminal(&mut mesh.client, "d1").await.state, VERIFIED);

    // The mover effective on 1 March is applied; a mover effective on
    // 1 February arriving later is stale and must not re-grant engineering.
    submit(&mut mesh.client, event("d2", pb::EventKind::Mover, "P2", person("bea", "Sales"), "2026-03-01T09:00:00Z"))
        .await;
    assert_eq!(until_terminal(&mut mesh.client, "d2").await.state, VERIFIED);
    submit(
        &mut mesh.client,
        event("d3", pb::EventKind::Mover, "P2", person("bea", "Engineering"), "2026-02-01T09:00:00Z"),
    )
    .await;
    let stale = until_terminal(&mut mesh.client, "d3").await;
    assert_eq!(stale.state, pb::EventState::Superseded as i32, "{stale:?}");
    assert!(stale.tasks.iter().all(|t| t.attempts == 0));
    assert_eq!(held(&mesh.target("ldap"), "bea"), vec!["group:sales", "group:staff"]);
    let identity = mesh.store.identity("P2").await.expect("identity").expect("recorded");
    assert_eq!(identity.event_id, "d2");
    assert_eq!(identity.attributes.get("department").map(String::as_str), Some("Sales"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_effective_event_waits_until_then() {
    let mut mesh = Mesh::start(8).await;
    submit(&mut mesh.client, event("f1", pb::EventKind::Joiner, "P3", person("cy", "Sales"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "f1").await.state, VERIFIED);
    let effective = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let effective = effective.format(&time::format_description::well_known::Rfc3339).expect("format");
    submit(&mut mesh.client, event("f2", pb::EventKind::Leaver, "P3", Default::default(), &effective)).await;
    let status = until_terminal(&mut mesh.client, "f2").await;
    assert_eq!(status.state, VERIFIED);
    let effective_ms = coordinator::event::parse_time(&status.effective_at).expect("time");
    for task in &status.tasks {
        let dispatched = coordinator::event::parse_time(&task.dispatched_at).expect("dispatched");
        assert!(dispatched >= effective_ms, "{} dispatched before its effective time", task.target_id);
    }
    assert!(!mesh.target("ldap").get("cy").expect("account").enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_leaver_goes_ahead_of_queued_tasks() {
    // One call in flight per target and a slow target: a queue builds up.
    let mut mesh = Mesh::start(1).await;
    for target in TARGETS {
        mesh.target(target).set_faults(connector_memory::Faults {
            apply_latency: std::time::Duration::from_millis(30),
            ..Default::default()
        });
    }
    for i in 0..30 {
        let name = format!("q{i}");
        submit(&mut mesh.client, event(&format!("u-j{i}"), pb::EventKind::Joiner, &name, person(&name, "Sales"), ""))
            .await;
    }
    let mut urgent = event("u-l29", pb::EventKind::Leaver, "q29", person("q29", "Sales"), "");
    urgent.urgent = true;
    submit(&mut mesh.client, urgent).await;
    let leaver = until_terminal(&mut mesh.client, "u-l29").await;
    assert_eq!(leaver.state, VERIFIED, "{leaver:?}");
    let leaver_dispatched = coordinator::event::parse_time(&task(&leaver, "ldap").dispatched_at).expect("time");
    // The person's own queued joiner was superseded, never applied after.
    let joiner = until_terminal(&mut mesh.client, "u-j29").await;
    assert_eq!(task(&joiner, "ldap").state, pb::TaskState::Superseded as i32, "{joiner:?}");
    let account = mesh.target("ldap").get("q29").expect("account");
    assert!(!account.enabled && account.entitlements.is_empty());
    // Joiners queued before it were dispatched after it.
    let mut overtaken = 0;
    for i in 0..29 {
        let status = until_terminal(&mut mesh.client, &format!("u-j{i}")).await;
        assert_eq!(status.state, VERIFIED);
        let dispatched = coordinator::event::parse_time(&task(&status, "ldap").dispatched_at).expect("time");
        if dispatched > leaver_dispatched {
            overtaken += 1;
        }
    }
    assert!(overtaken > 0, "the urgent leaver went ahead of no queued task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_enforce_separation_of_duties() {
    let mut mesh = Mesh::start(8).await;
    // sam is in the security group but is the subject.
    submit(&mut mesh.client, event("a1", pb::EventKind::Joiner, "P4", person("sam", "SRE"), "")).await;
    let status = until_settled(&mut mesh.client, "a1").await;
    let vault = task(&status, "vault");
    assert_eq!(vault.state, pb::TaskState::AwaitingApproval as i32);
    assert_eq!(vault.approvals_required, 2);
    assert!(mesh.target("vault").get("sam").is_none(), "nothing applied before approval");
    // ldap holds a grant of the approval workflow too (it-ops), so it waits as well;
    // scim and aws are not held back.
    assert_eq!(task(&status, "scim").state, pb::TaskState::Verified as i32);
    assert_eq!(task(&status, "aws").state, pb::TaskState::Verified as i32);

    let decide = |principal: &str, approve: bool| {
        let mut client = mesh.client.clone();
        let principal = principal.to_owned();
        async move {
            let mut request = tonic::Request::new(pb::ApprovalRequest {
                event_id: "a1".into(),
                target_id: "vault".into(),
                comment: "ok".into(),
            });
            request.metadata_mut().insert("x-jml-principal", principal.parse().expect("header"));
            if approve { client.approve(request).await } else { client.reject(request).await }
        }
    };
    let refused = decide("hr-bot", true).await.expect_err("initiator");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("initiator"));
    let refused = decide("sam", true).await.expect_err("subject");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("subject"));
    let refused = decide("mallory", true).await.expect_err("not an approver");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let first = decide("alice", true).await.expect("alice approves").into_inner();
    assert_eq!((first.approvals, first.required), (1, 2));
    assert_eq!(first.task.expect("task").state, pb::TaskState::AwaitingApproval as i32);
    let twice = decide("alice", true).await.expect_err("same approver twice");
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition);
    assert!(mesh.target("vault").get("sam").is_none());
    decide("bob", true).await.expect("bob approves");
    // Reject the ldap part: it-ops is removed, staff stays.
    let mut request = tonic::Request::new(pb::ApprovalRequest {
        event_id: "a1".into(),
        target_id: "ldap".into(),
        comment: "no".into(),
    });
    request.metadata_mut().insert("x-jml-principal", "carol".parse().expect("header"));
    mesh.client.reject(request).await.expect("carol rejects");

    let status = until_terminal(&mut mesh.client, "a1").await;
    assert_eq!(status.state, VERIFIED, "{status:?}");
    assert_eq!(held(&mesh.target("vault"), "sam"), vec!["group:prod-access"]);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:staff"]);
    let approvers: Vec<&str> = task(&status, "vault").approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(approvers.len(), 2);
    assert!(approvers.contains(&"alice") && approvers.contains(&"bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_that_disagrees_fails_and_is_never_verified() {
    let mut mesh = Mesh::start(8).await;
    mesh.target("scim").set_faults(connector_memory::Faults { read_disagrees: true, ..Default::default() });
    submit(&mut mesh.client, event("r1", pb::EventKind::Joiner, "P5", person("dee", "Engineering"), "")).await;
    let status = until_terminal(&mut mesh.client, "r1").await;
    assert_eq!(status.state, pb::EventState::Failed as i32, "{status:?}");
    let scim = task(&status, "scim");
    assert_eq!(scim.state, pb::TaskState::Failed as i32);
    assert_eq!(scim.attempts, 3);
    assert!(!scim.differences.is_empty());
    assert!(scim.differences.iter().any(|d| d.contains("entitlement")), "{:?}", scim.differences);
    assert!(scim.last_error.contains("read-back differs"));
    assert_eq!(task(&status, "ldap").state, pb::TaskState::Verified as i32);
    assert!(mesh.store.identity("P5").await.expect("identity").is_none(), "a failed event is not an identity record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_and_nothing_is_written() {
    let mut mesh = Mesh::start(8).await;
    let cases: Vec<(pb::LifecycleEvent, &str)> = vec![
        (
            pb::LifecycleEvent {
                source_system: "spreadsheet".into(),
                ..event("b1", pb::EventKind::Joiner, "P6", person("eve", "Sales"), "")
            },
            "event.source_system",
        ),
        (event("b2", pb::EventKind::Unspecified, "P6", person("eve", "Sales"), ""), "event.kind"),
        (event("b3", pb::EventKind::Joiner, "", person("eve", "Sales"), ""), "event.person_id"),
        (event("b4", pb::EventKind::Joiner, "P6", person("eve", "Sales"), "last tuesday"), "event.effective_at"),
        (
            event(
                "b5",
                pb::EventKind::Joiner,
                "P6",
                {
                    let mut attributes = person("eve", "Sales");
                    attributes.insert("title".into(), "x".repeat(2000));
                    attributes
                },
                "",
            ),
            "event.attributes.title",
        ),
        (
            event(
                "b6",
                pb::EventKind::Joiner,
                "P6",
                {
                    let mut attributes = person("eve", "Sales");
                    attributes.insert("shoe_size".into(), "9".into());
                    attributes
                },
                "",
            ),
            "event.attributes.shoe_size",
        ),
        (event("b7", pb::EventKind::Joiner, "P6", Default::default(), ""), "event.attributes.username"),
        (event("bad id!", pb::EventKind::Joiner, "P6", person("eve", "Sales"), ""), "event.event_id"),
    ];
    for (event, field) in cases {
        let event_id = event.event_id.clone();
        let error = submit_as(&mut mesh.client, event, "hr-bot").await.expect_err("refused");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{field}: {error:?}");
        assert!(error.message().starts_with(field), "{field}: {}", error.message());
        let missing = mesh.client.get_event(pb::GetEventRequest { event_id }).await.expect_err("nothing written");
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }
    assert_eq!(verify_audit(mesh.store.as_ref()).await.expect("verify").records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_record_edited_by_hand_is_named() {
    let mut mesh = Mesh::start(8).await;
    submit(&mut mesh.client, event("t1", pb::EventKind::Joiner, "P7", person("fay", "Sales"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "t1").await.state, VERIFIED);
    let intact = mesh.client.verify_audit(pb::VerifyAuditRequest {}).await.expect("verify").into_inner();
    assert!(intact.intact && intact.records >= 5, "{intact:?}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", mesh.db.display())).await.expect("open");
    sqlx::query("UPDATE audit SET payload = '{\"target_id\":\"ldap\",\"forged\":true}' WHERE seq = 3")
        .execute(&pool)
        .await
        .expect("tamper");
    let verdict = mesh.client.verify_audit(pb::VerifyAuditRequest {}).await.expect("verify").into_inner();
    assert!(!verdict.intact);
    assert_eq!(verdict.first_broken_seq, 3);
    assert!(verdict.reason.contains("altered"), "{}", verdict.reason);
    assert_eq!(verdict.records, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_breach_is_recorded_in_the_task_the_status_and_the_audit_log() {
    let mut mesh = Mesh::start_with(8, |policy| policy.replace("deadline: 10m", "deadline: 1s")).await;
    // The ldap part waits for approval that never comes: its 1 s deadline passes.
    submit(&mut mesh.client, event("dl1", pb::EventKind::Joiner, "P8", person("gus", "SRE"), "")).await;
    let breached = async {
        loop {
            let status = mesh
                .client
                .get_event(pb::GetEventRequest { event_id: "dl1".into() })
                .await
                .expect("status")
                .into_inner();
            if status.deadline_breached {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), breached).await.expect("breach recorded");
    let ldap = task(&status, "ldap");
    assert!(ldap.deadline_breached);
    assert_eq!(ldap.state, pb::TaskState::AwaitingApproval as i32);
    assert!(!task(&status, "scim").deadline_breached, "scim keeps its own 15m default deadline");
    let overdue = mesh.client.list_overdue(pb::ListOverdueRequest {}).await.expect("overdue").into_inner();
    assert!(overdue.tasks.iter().any(|t| t.event_id == "dl1" && t.target_id == "ldap"));
    let audit = mesh.store.event_audit("dl1").await.expect("audit");
    assert!(audit.iter().any(|r| r.action == "task.deadline_breached" && r.payload.contains("ldap")));
}
