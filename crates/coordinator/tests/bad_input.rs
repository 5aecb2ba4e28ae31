//! Bad input of the calendar and the leaver's owned identities (#20) on an
//! in-process coordinator over the reference connectors: each is refused
//! with INVALID_ARGUMENT naming the field, and nothing is applied (no event
//! stored for the person, no account changed on any target).
//!
//! - a record whose hire date is after its termination date (state submit);
//! - a leave of absence for a person with no identity record (state submit;
//!   the event submit's refusal is in `leave.rs`);
//! - a leaver whose policy transfers owned identities on a target, without a
//!   manager in the event or the person's record.
//!
//! A retention or pre-hire offset that does not parse is refused at policy
//! load (`calendar.rs`), an owned-identity action a connector does not
//! declare at start (`owned::check_connector`, unit-tested).

mod support;

use connector_kit::contract as pb;
use support::*;

async fn send_state(mesh: &mut Mesh, record: pb::PersonRecord) -> Result<pb::StateReceipt, tonic::Status> {
    let mut request = tonic::Request::new(pb::SubmitStateRequest { record: Some(record) });
    request.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
    Ok(mesh.client.submit_state(request).await?.into_inner().receipt.expect("receipt"))
}

fn record(person_id: &str, username: &str, status: &str) -> pb::PersonRecord {
    pb::PersonRecord {
        person_id: person_id.into(),
        attributes: person(username, "Sales"),
        employment_status: status.into(),
        source_system: "workday".into(),
        ..Default::default()
    }
}

async fn nothing_stored(mesh: &Mesh, person_id: &str, username: &str) {
    use coordinator::store::Store;
    assert!(mesh.store.person_events(person_id).await.expect("store").is_empty(), "no event stored");
    for target in TARGETS {
        assert!(mesh.target(target).get(username).is_none(), "nothing applied on {target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hire_after_the_termination_and_a_leave_of_nobody_are_refused() {
    let mut mesh = Mesh::start(4).await;
    let contradicts = pb::PersonRecord {
        hire_date: "2026-05-01".into(),
        termination_date: "2026-04-01".into(),
        ..record("B1", "bea", "active")
    };
    let error = send_state(&mut mesh, contradicts).await.expect_err("refused");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("record.hire_date"), "{error:?}");
    assert!(error.message().contains("after the termination date"), "{error:?}");
    nothing_stored(&mesh, "B1", "bea").await;

    // The same dates, terminated: refused too (not a leaver of a person who
    // never started).
    let terminated = pb::PersonRecord {
        hire_date: "2026-05-01".into(),
        termination_date: "2026-04-01".into(),
        ..record("B1", "bea", "terminated")
    };
    let error = send_state(&mut mesh, terminated).await.expect_err("refused");
    assert!(error.message().contains("record.hire_date"), "{error:?}");
    nothing_stored(&mesh, "B1", "bea").await;

    // A leave of absence of a person the coordinator never knew.
    let error = send_state(&mut mesh, record("B2", "ben", "leave")).await.expect_err("refused");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    nothing_stored(&mesh, "B2", "ben").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_transferring_owned_identities_without_a_manager_is_refused_whole() {
    let mut mesh = Mesh::start_with(4, |policy| {
        policy
            .replacen(
                "attributes: [username, display_name, email, department, title]",
                "attributes: [username, display_name, email, department, title, manager]",
                1,
            )
            .replacen("- { id: aws, endpoint:", "- { id: aws, owned_identities: transfer, endpoint:", 1)
    })
    .await;
    submit(&mut mesh.client, event("oj1", pb::EventKind::Joiner, "O1", person("oda", "Sales"), "")).await;
    assert_eq!(until_terminal(&mut mesh.client, "oj1").await.state, pb::EventState::Verified as i32);

    let error =
        submit_as(&mut mesh.client, event("ol1", pb::EventKind::Leaver, "O1", Default::default(), ""), "hr-bot")
            .await
            .expect_err("a transfer needs a manager");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("event.attributes.manager"), "{error:?}");
    assert!(error.message().contains("\"aws\""), "names the target: {error:?}");
    {
        use coordinator::store::Store;
        let events = mesh.store.person_events("O1").await.expect("store");
        assert_eq!(events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["oj1"], "the leaver is not stored");
    }
    // The joiner (Sales) made accounts on ldap, scim and aws: still enabled.
    for target in ["ldap", "scim", "aws"] {
        assert!(mesh.target(target).get("oda").is_some_and(|a| a.enabled), "nothing applied on {target}");
    }

    // With the manager, the plan transfers the aws identities to them and
    // leaves the other targets' alone.
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("manager".to_string(), "M1".to_string());
    let mut request =
        tonic::Request::new(pb::PlanRequest { event: Some(event("ol2", pb::EventKind::Leaver, "O1", attributes, "")) });
    request.metadata_mut().insert("x-jml-principal", "hr-bot".parse().expect("header"));
    let plan = mesh.client.plan(request).await.expect("plan").into_inner().plan.expect("plan");
    for planned in &plan.targets {
        let directive = planned.desired.as_ref().and_then(|d| d.owned_identities.clone());
        if planned.target_id == "aws" {
            let directive = directive.expect("aws transfers");
            assert_eq!(directive.action, pb::OwnedIdentityAction::Transfer as i32);
            assert_eq!(directive.new_owner, "M1");
        } else {
            assert!(directive.is_none(), "{}: {directive:?}", planned.target_id);
        }
    }
}
