//! One trace per lifecycle event across the real mesh: the coordinator and
//! the four connector processes export over OTLP/gRPC to a trace receiver
//! served by this test (`mesh_harness::trace_receiver`, the same receiver the
//! compose file runs as its `otlp-receiver` container); a
//! joiner runs against the four real servers; then the exported spans are
//! checked:
//!
//! - every span of the event (the root and all its descendants) is in one
//!   trace, the one `jmlctl status` and the receipt quote, and every
//!   connector's `connector.apply` is in it;
//! - each connector's spans descend from the coordinator's dispatch span
//!   for that target, and include the calls the connector made to its target;
//! - no span attribute, event attribute or resource value carries the
//!   test's password, tokens, or the person's given name, surname, display
//!   name or email.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{CONNECTORS, task};
use mesh_e2e::{Mesh, MeshOptions, Person};
use mesh_harness::target_env;
use mesh_harness::trace_receiver::{ReceivedSpan, Receiver, serve_receiver};

/// True when `ancestor` is `span` or one of its ancestors.
fn descends_from(span: &ReceivedSpan, ancestor: &str, by_id: &HashMap<&str, &ReceivedSpan>) -> bool {
    let mut current = Some(span);
    let mut hops = 0;
    while let Some(node) = current {
        if node.span_id == ancestor {
            return true;
        }
        hops += 1;
        if hops > 64 {
            return false;
        }
        current = by_id.get(node.parent_span_id.as_str()).copied();
    }
    false
}

fn secret_file(script: &str, variable: &str) -> String {
    let path = target_env(script, variable);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}")).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_per_event_across_the_mesh_without_personal_values() {
    let receiver = Receiver::default();
    let endpoint = serve_receiver(receiver.clone()).await;
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".to_string(), "grpc".to_string()),
        ("OTEL_TRACES_SAMPLER".to_string(), "always_on".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "200".to_string()),
    ];
    let mut mesh = Mesh::start_with_env("tr", MeshOptions::default(), env).await.expect("the mesh starts");
    let mut person = Person::new(&mesh.run_id, 0, "Engineering");
    let given_name = format!("Ottilie{}", mesh.run_id);
    let surname = format!("Quenby{}", mesh.run_id);
    person.display_name = format!("{given_name} {surname}");
    let within = Duration::from_secs(120);

    let joiner = format!("{}-joiner", mesh.run_id);
    let receipt = mesh.submit(person.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    mesh_harness::assert_eventually!(
        mesh.status(&joiner).await.is_ok_and(|s| task(&s, "vault").state == pb::TaskState::AwaitingApproval as i32),
        within,
        "the privileged vault grant never awaited approval"
    );
    mesh.approve(&joiner, "vault", "alice").await.expect("alice approves");
    let status = mesh.wait_finished(std::slice::from_ref(&joiner), within).await.expect("joiner finishes");
    assert_eq!(status[&joiner].state, pb::EventState::Verified as i32, "{:?}", status[&joiner]);
    // The receipt (what `jmlctl submit` prints) and the evidence quote the
    // trace id; `EventStatus` has no trace id field yet, so `jmlctl status`
    // does not show it.
    let trace_id = receipt.trace_id.clone();
    assert_eq!(trace_id.len(), 32, "{receipt:?}");
    let evidence = mesh.evidence(&joiner).await.expect("evidence");
    assert_eq!(evidence["trace_id"].as_str(), Some(trace_id.as_str()), "the evidence quotes the trace id");

    // SIGTERM: every process flushes its spans before exiting.
    mesh.stop_all().await.expect("the mesh stops");
    let spans = receiver.spans.lock().expect("spans").clone();
    let by_id: HashMap<&str, &ReceivedSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();

    let root = spans
        .iter()
        .find(|s| s.name == "lifecycle.event" && s.attributes.get("event.id") == Some(&joiner))
        .unwrap_or_else(|| panic!("no root span for {joiner} among {} spans", spans.len()));
    assert_eq!(root.trace_id, trace_id, "the quoted trace id is the root span's");
    assert_eq!(root.service, "coordinator");
    assert_eq!(root.attributes.get("person.id"), Some(&person.person_id));
    assert_eq!(root.attributes.get("event.kind").map(String::as_str), Some("joiner"));
    assert!(root.attributes.get("workflows").is_some_and(|w| w.contains("engineering-operations")), "{root:?}");
    let of_event: Vec<&ReceivedSpan> = spans.iter().filter(|s| descends_from(s, &root.span_id, &by_id)).collect();
    for span in &of_event {
        assert_eq!(span.trace_id, trace_id, "{span:?}");
    }
    let names: BTreeSet<&str> = of_event.iter().map(|s| s.name.as_str()).collect();
    for expected in
        ["lifecycle.plan", "lifecycle.dispatch", "lifecycle.approval_wait", "coordinator.apply", "coordinator.read"]
    {
        assert!(names.contains(expected), "no {expected} span in the event's trace: {names:?}");
    }
    for span in spans.iter().filter(|s| s.name == "connector.apply" || s.name == "connector.read") {
        assert_eq!(span.trace_id, trace_id, "every connector apply/read of the run is in the event's trace: {span:?}");
    }

    let target_calls = [("ldap", "ldap."), ("scim", "scim."), ("vault", "vault."), ("iam", "iam.")];
    for (connector, target_id) in CONNECTORS {
        let dispatches: Vec<&&ReceivedSpan> = of_event
            .iter()
            .filter(|s| {
                s.name == "lifecycle.dispatch" && s.attributes.get("target").map(String::as_str) == Some(target_id)
            })
            .collect();
        assert_eq!(dispatches.len(), 1, "one dispatch span for {target_id}: {dispatches:?}");
        let dispatch = &dispatches[0].span_id;
        let service = format!("connector-{connector}");
        let mine: Vec<&ReceivedSpan> =
            spans.iter().filter(|s| s.service == service && s.trace_id == trace_id).collect();
        assert!(mine.iter().any(|s| s.name == "connector.apply"), "{service} exported no apply span in the trace");
        // Describe is called at submit (naming rules), not by the dispatch.
        for span in mine.iter().filter(|s| !s.name.ends_with("/Describe")) {
            assert!(
                descends_from(span, dispatch, &by_id),
                "{service} span {} is not under the {target_id} dispatch",
                span.name
            );
        }
        let prefix = target_calls.iter().find(|(c, _)| *c == connector).map(|(_, p)| *p).unwrap_or_default();
        assert!(
            mine.iter().any(|s| s.name.starts_with(prefix)),
            "{service} made no traced call to its target: {:?}",
            mine.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        );
    }

    let mut forbidden = vec![
        ("given name", given_name.clone()),
        ("surname", surname.clone()),
        ("display name", person.display_name.clone()),
        ("email", person.email.clone()),
        ("LDAP bind password", secret_file("slapd", "JML_TEST_SLAPD_BIND_PASSWORD_FILE")),
        ("SCIM token", secret_file("scim", "JML_TEST_SCIM_TOKEN_FILE")),
        ("Vault token", secret_file("rustyvault", "JML_TEST_VAULT_TOKEN_FILE")),
    ];
    // moto accepts any key; only a distinctive one can be searched for.
    if let Ok(secret) = std::env::var("AWS_SECRET_ACCESS_KEY").map(|s| s.trim().to_owned())
        && secret.len() >= 16
    {
        forbidden.push(("AWS secret key", secret));
    }
    for span in &spans {
        for (what, secret) in &forbidden {
            assert!(!secret.is_empty(), "{what} is empty");
            assert!(
                !span.values.iter().any(|value| value.contains(secret.as_str())),
                "span {} of {} carries the {what}",
                span.name,
                span.service
            );
        }
    }
}
