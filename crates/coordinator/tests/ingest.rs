//! HR ingestion (state-based submits, batches, the mass-change guard) over
//! an in-process coordinator and the in-memory reference connectors: the
//! derivation logic, checked on what the targets hold afterwards.

mod support;

use connector_kit::contract as pb;
use support::*;

const VERIFIED: i32 = pb::EventState::Verified as i32;

fn record(person_id: &str, username: &str, department: &str, status: &str, changed_at: &str) -> pb::PersonRecord {
    pb::PersonRecord {
        person_id: person_id.into(),
        attributes: person(username, department),
        employment_status: status.into(),
        changed_at: changed_at.into(),
        source_system: "workday".into(),
        ..Default::default()
    }
}

async fn send(mesh: &mut Mesh, record: pb::PersonRecord) -> pb::StateReceipt {
    let mut request = tonic::Request::new(pb::SubmitStateRequest { record: Some(record) });
    request.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
    mesh.client.submit_state(request).await.expect("state submit").into_inner().receipt.expect("receipt")
}

async fn send_batch(
    mesh: &mut Mesh,
    records: Vec<pb::PersonRecord>,
    full_snapshot: bool,
    dry_run: bool,
    principal: &str,
) -> Result<pb::SubmitStatesResponse, tonic::Status> {
    // Two chunks, as a client streaming a roster sends them.
    let half = records.len() / 2;
    let first = pb::SubmitStatesRequest {
        records: records[..half].to_vec(),
        full_snapshot,
        dry_run,
        source_system: "workday".into(),
        label: "roster.csv".into(),
    };
    let second = pb::SubmitStatesRequest { records: records[half..].to_vec(), ..Default::default() };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![first, second]));
    request.metadata_mut().insert("x-jml-principal", principal.parse().expect("header"));
    Ok(mesh.client.submit_states(request).await?.into_inner())
}

fn outcome(receipt: &pb::StateReceipt) -> pb::StateOutcome {
    pb::StateOutcome::try_from(receipt.outcome).expect("outcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_derive_joiner_mover_leaver_and_rehire_exactly_once() {
    let mut mesh = Mesh::start(8).await;
    let joiner = record("S1", "sam", "Engineering", "active", "2026-01-01T09:00:00Z");
    let first = send(&mut mesh, joiner.clone()).await;
    assert_eq!(outcome(&first), pb::StateOutcome::Derived);
    assert_eq!(first.kind, pb::EventKind::Joiner as i32);
    assert_eq!(until_terminal(&mut mesh.client, &first.event_id).await.state, VERIFIED);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:engineering", "group:staff"]);

    // The same record again: the first event's receipt, nothing new.
    let again = send(&mut mesh, joiner.clone()).await;
    assert_eq!(outcome(&again), pb::StateOutcome::Duplicate);
    assert_eq!(again.event_id, first.event_id);
    assert!(again.receipt.as_ref().expect("receipt").duplicate);

    // The same content with a newer change time: nothing changed.
    let unchanged = send(&mut mesh, record("S1", "sam", "Engineering", "active", "2026-01-02T09:00:00Z")).await;
    assert_eq!(outcome(&unchanged), pb::StateOutcome::Unchanged);

    // A changed department is a mover.
    let moved = send(&mut mesh, record("S1", "sam", "Sales", "active", "2026-02-01T09:00:00Z")).await;
    assert_eq!(outcome(&moved), pb::StateOutcome::Derived);
    assert_eq!(moved.kind, pb::EventKind::Mover as i32);
    assert_eq!(until_terminal(&mut mesh.client, &moved.event_id).await.state, VERIFIED);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:sales", "group:staff"]);

    // An older record (by the source's change time) arriving late never
    // undoes the newer one.
    let late = send(&mut mesh, record("S1", "sam", "Engineering", "active", "2026-01-15T09:00:00Z")).await;
    assert_eq!(outcome(&late), pb::StateOutcome::Stale);
    assert!(late.event_id.is_empty());
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:sales", "group:staff"]);

    // Terminated: a leaver, with the record it came from in the evidence.
    let mut leaving = record("S1", "sam", "Sales", "terminated", "2026-03-01T09:00:00Z");
    leaving.termination_date = "2026-03-01".into();
    let left = send(&mut mesh, leaving).await;
    assert_eq!(left.kind, pb::EventKind::Leaver as i32);
    assert_eq!(until_terminal(&mut mesh.client, &left.event_id).await.state, VERIFIED);
    assert!(!mesh.target("ldap").get("sam").expect("kept, disabled").enabled);
    let evidence = mesh
        .client
        .export_evidence(pb::ExportEvidenceRequest { event_id: left.event_id.clone() })
        .await
        .expect("evidence")
        .into_inner()
        .json;
    let evidence: serde_json::Value = serde_json::from_str(&evidence).expect("json");
    assert_eq!(evidence["derived_from"]["kind"], "leaver", "{evidence}");
    assert_eq!(evidence["derived_from"]["record"]["employment"], "terminated", "{evidence}");
    assert_eq!(evidence["derived_from"]["record"]["changed_at"], 1_772_355_600_000_i64, "{evidence}");

    // Back again: a rehire, planned with the joiner workflows.
    let back = send(&mut mesh, record("S1", "sam", "Engineering", "active", "2026-06-01T09:00:00Z")).await;
    assert_eq!(back.kind, pb::EventKind::Rehire as i32);
    let status = until_terminal(&mut mesh.client, &back.event_id).await;
    assert_eq!(status.state, VERIFIED, "{status:?}");
    assert_eq!(status.kind, pb::EventKind::Rehire as i32);
    let account = mesh.target("ldap").get("sam").expect("account");
    assert!(account.enabled);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:engineering", "group:staff"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_date_in_the_future_waits_and_bad_records_are_refused() {
    let mut mesh = Mesh::start(8).await;
    let first = send(&mut mesh, record("S2", "tia", "Sales", "active", "")).await;
    assert_eq!(until_terminal(&mut mesh.client, &first.event_id).await.state, VERIFIED);
    let mut leaving = record("S2", "tia", "Sales", "active", "");
    leaving.termination_date = "2099-12-31".into();
    let left = send(&mut mesh, leaving).await;
    assert_eq!(left.kind, pb::EventKind::Leaver as i32);
    assert_eq!(left.effective_at, "2099-12-31T00:00:00Z");
    let status = mesh
        .client
        .get_event(pb::GetEventRequest { event_id: left.event_id.clone() })
        .await
        .expect("status")
        .into_inner();
    assert!(status.tasks.iter().all(|t| t.state == pb::TaskState::Planned as i32), "{status:?}");
    assert!(mesh.target("ldap").get("tia").expect("account").enabled, "not before the date");

    for (bad, field) in [
        (
            pb::PersonRecord { employment_status: "leave".into(), ..record("S3", "u", "Sales", "", "") },
            "employment_status",
        ),
        (record("S3", "u", "Sales", "active", "yesterday"), "changed_at"),
        (pb::PersonRecord { hire_date: "01/02/2026".into(), ..record("S3", "u", "Sales", "active", "") }, "hire_date"),
        (
            pb::PersonRecord { source_system: "bamboo".into(), ..record("S3", "u", "Sales", "active", "") },
            "source_system",
        ),
    ] {
        let mut request = tonic::Request::new(pb::SubmitStateRequest { record: Some(bad) });
        request.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
        let error = mesh.client.submit_state(request).await.expect_err("refused");
        assert!(
            error.code() == tonic::Code::InvalidArgument || error.code() == tonic::Code::PermissionDenied,
            "{error:?}"
        );
        assert!(error.message().contains(field), "{field}: {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_making_too_many_leavers_is_held_until_another_admin_approves() {
    let mut mesh = Mesh::start_with(8, |policy| {
        policy.replace(
            "source_of_truth: { system: workday, attributes: [username, display_name, email, department, title] }",
            "source_of_truth: { system: workday, attributes: [username, display_name, email, department, title], max_leavers: \"20%\" }",
        )
    })
    .await;
    let roster: Vec<pb::PersonRecord> =
        (0..10).map(|i| record(&format!("R{i}"), &format!("r{i}"), "Sales", "active", "")).collect();

    let dry = send_batch(&mut mesh, roster.clone(), true, true, "hr-bot").await.expect("dry run");
    assert_eq!(dry.counts.expect("counts").joiners, 10);
    assert!(mesh.target("ldap").get("r0").is_none(), "a dry run writes nothing");

    let first = send_batch(&mut mesh, roster.clone(), true, false, "hr-bot").await.expect("roster");
    assert_eq!(first.counts.expect("counts").joiners, 10);
    for receipt in &first.receipts {
        assert_eq!(until_terminal(&mut mesh.client, &receipt.event_id).await.state, VERIFIED);
    }

    // A second roster: one mover, one joiner, one leaver (missing), the
    // rest unchanged; 1 leaver of 10 is within 20%.
    let mut second = roster.clone();
    second.retain(|r| r.person_id != "R9");
    second[0] = record("R0", "r0", "Engineering", "active", "");
    second.push(record("R10", "r10", "Sales", "active", ""));
    let applied = send_batch(&mut mesh, second.clone(), true, false, "hr-bot").await.expect("second roster");
    let counts = applied.counts.expect("counts");
    // The 8 others are the very records of the first roster: duplicates.
    assert_eq!((counts.joiners, counts.movers, counts.leavers, counts.duplicates), (1, 1, 1, 8), "{counts:?}");
    assert!(applied.held.is_none());
    let derived: Vec<&pb::StateReceipt> =
        applied.receipts.iter().filter(|r| r.outcome == pb::StateOutcome::Derived as i32).collect();
    assert_eq!(derived.len(), 3, "only the changes: {:?}", applied.receipts);
    for receipt in derived {
        assert_eq!(until_terminal(&mut mesh.client, &receipt.event_id).await.state, VERIFIED);
    }
    assert!(!mesh.target("ldap").get("r9").expect("kept").enabled);

    // A third roster missing 4 of 10 active people: held, nothing applied.
    let third: Vec<pb::PersonRecord> = second[4..].to_vec();
    let held_response = send_batch(&mut mesh, third, true, false, "hr-bot").await.expect("held, not refused");
    let batch = held_response.held.expect("held");
    assert_eq!(batch.leavers, 4);
    assert_eq!(batch.state, "held");
    let held_receipts = held_response.receipts.iter().filter(|r| r.outcome == pb::StateOutcome::Held as i32).count();
    assert_eq!(held_receipts, 4, "{:?}", held_response.receipts);
    for id in ["r0", "r1", "r2", "r3"] {
        assert!(mesh.target("ldap").get(id).expect("account").enabled, "{id} disabled while held");
    }
    let listed = mesh.client.list_held_batches(pb::ListHeldBatchesRequest { all: false }).await.expect("list");
    assert_eq!(listed.into_inner().batches.len(), 1);

    // The submitter may not approve its own batch.
    let mut own = tonic::Request::new(pb::DecideHeldBatchRequest {
        batch_id: batch.batch_id.clone(),
        approve: true,
        comment: String::new(),
    });
    own.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
    let refused = mesh.client.decide_held_batch(own).await.expect_err("own batch");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let mut approval = tonic::Request::new(pb::DecideHeldBatchRequest {
        batch_id: batch.batch_id.clone(),
        approve: true,
        comment: "reorg confirmed".into(),
    });
    approval.metadata_mut().insert("x-jml-principal", "alice".parse().expect("header"));
    let decided = mesh.client.decide_held_batch(approval).await.expect("approved").into_inner();
    assert_eq!(decided.batch.expect("batch").state, "approved");
    let applied = decided.applied.expect("applied");
    assert_eq!(applied.counts.expect("counts").leavers, 4);
    for receipt in applied.receipts.iter().filter(|r| r.outcome == pb::StateOutcome::Derived as i32) {
        assert_eq!(until_terminal(&mut mesh.client, &receipt.event_id).await.state, VERIFIED);
    }
    for id in ["r0", "r1", "r2", "r3"] {
        assert!(!mesh.target("ldap").get(id).expect("account").enabled, "{id} still enabled after approval");
    }
    let listed = mesh.client.list_held_batches(pb::ListHeldBatchesRequest { all: false }).await.expect("list");
    assert!(listed.into_inner().batches.is_empty());

    // Duplicate person ids refuse the whole batch.
    let twice = vec![record("D1", "d1", "Sales", "active", ""), record("D1", "d1", "Sales", "active", "")];
    let error = send_batch(&mut mesh, twice, false, false, "hr-bot").await.expect_err("duplicate ids");
    assert!(error.message().contains("twice"), "{error:?}");
    assert!(mesh.target("ldap").get("d1").is_none());

    let verdict = coordinator::store::verify_audit(mesh.store.as_ref()).await.expect("verify");
    assert_eq!(verdict.broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_single_leaver_submits_past_the_limit_is_held() {
    let mut mesh = Mesh::start_with(8, |policy| {
        policy.replace(
            "source_of_truth: { system: workday, attributes: [username, display_name, email, department, title] }",
            "source_of_truth: { system: workday, attributes: [username, display_name, email, department, title], max_leavers: 1 }",
        )
    })
    .await;
    for i in 0..3 {
        let joined = send(&mut mesh, record(&format!("B{i}"), &format!("b{i}"), "Sales", "active", "")).await;
        assert_eq!(until_terminal(&mut mesh.client, &joined.event_id).await.state, VERIFIED);
    }
    let first = send(&mut mesh, record("B0", "b0", "Sales", "terminated", "")).await;
    assert_eq!(outcome(&first), pb::StateOutcome::Derived);
    assert_eq!(until_terminal(&mut mesh.client, &first.event_id).await.state, VERIFIED);
    // The second leaver within the window is past the limit: held.
    let second = send(&mut mesh, record("B1", "b1", "Sales", "terminated", "")).await;
    assert_eq!(outcome(&second), pb::StateOutcome::Held, "{second:?}");
    let third = send(&mut mesh, record("B2", "b2", "Sales", "terminated", "")).await;
    assert_eq!(outcome(&third), pb::StateOutcome::Held, "{third:?}");
    assert!(mesh.target("ldap").get("b1").expect("account").enabled, "held, not applied");
    let batches = mesh.client.list_held_batches(pb::ListHeldBatchesRequest { all: false }).await.expect("list");
    let batches = batches.into_inner().batches;
    assert_eq!(batches.len(), 1, "one burst batch: {batches:?}");
    assert_eq!(batches[0].leavers, 2);
    let mut approval = tonic::Request::new(pb::DecideHeldBatchRequest {
        batch_id: batches[0].batch_id.clone(),
        approve: true,
        comment: String::new(),
    });
    approval.metadata_mut().insert("x-jml-principal", "alice".parse().expect("header"));
    let applied =
        mesh.client.decide_held_batch(approval).await.expect("approved").into_inner().applied.expect("applied");
    assert_eq!(applied.counts.expect("counts").leavers, 2);
    for receipt in applied.receipts.iter().filter(|r| r.outcome == pb::StateOutcome::Derived as i32) {
        assert_eq!(until_terminal(&mut mesh.client, &receipt.event_id).await.state, VERIFIED);
    }
    assert!(!mesh.target("ldap").get("b1").expect("account").enabled);
    assert!(!mesh.target("ldap").get("b2").expect("account").enabled);
}
