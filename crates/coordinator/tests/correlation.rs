//! Correlation, adoption and the baseline through the real lifecycle API,
//! over the in-memory reference connector (the acceptance tests on the real
//! servers are `tests/e2e/correlation.rs`): situations counted, links proven
//! and audited, a stale link refused with nothing written, unmatched
//! accounts contained, policy and `Describe` checks with paths, and the
//! baseline's validation.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use connector_kit::contract as pb;
use connector_memory::StoredAccount;
use coordinator::Policy;
use serde_json::Value;
use support::{Mesh, person, policy_yaml, until_terminal};

fn with_correlation(adopt: &str, rules: &str) -> impl FnOnce(String) -> String {
    let block = format!(
        "reconcile: {{ action: remediate }}, correlation: {{ rules: {rules}, adopt: {adopt}, on_unmatched: disable }}"
    );
    move |policy: String| policy.replacen("deadline: 10m }", &format!("deadline: 10m, {block} }}"), 1)
}

const RULES: &str = r#"[ { attribute: mail, equals: "{email}" }, { attribute: account_name } ]"#;

fn untagged(name: &str, mail: Option<&str>, entitlements: &[(&str, &str)]) -> StoredAccount {
    StoredAccount {
        person_id: String::new(),
        account_name: name.into(),
        native_id: format!("native-{name}"),
        enabled: true,
        attributes: mail.map(|m| BTreeMap::from([("mail".to_string(), m.to_string())])).unwrap_or_default(),
        entitlements: entitlements.iter().map(|(k, i)| ((*k).to_string(), (*i).to_string())).collect(),
        credentials: BTreeSet::from(["password".to_string()]),
        changed_at: SystemTime::now(),
    }
}

fn identity(person_id: &str, username: &str, email: &str) -> pb::IdentityRecord {
    let mut attributes = person(username, "Sales");
    attributes.insert("email".into(), email.into());
    pb::IdentityRecord { person_id: person_id.into(), attributes, source_system: "workday".into() }
}

async fn reconcile(mesh: &mut Mesh, request: pb::ReconcileRequest) -> Result<Value, tonic::Status> {
    let mut stream = mesh.client.reconcile(request).await?.into_inner();
    while let Some(message) = stream.message().await? {
        if message.phase == "report" {
            return Ok(serde_json::from_str(&message.report_json).expect("report JSON"));
        }
    }
    panic!("no report")
}

fn ldap(extra: impl FnOnce(&mut pb::ReconcileRequest)) -> pb::ReconcileRequest {
    let mut request = pb::ReconcileRequest { target_id: "ldap".into(), ..Default::default() };
    extra(&mut request);
    request
}

fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["correlation"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["account_name"] == name)
        .unwrap_or_else(|| panic!("no finding for {name}: {report}"))
}

async fn setup(adopt: &str) -> Mesh {
    let mut mesh = Mesh::start_with(4, with_correlation(adopt, RULES)).await;
    let loaded = mesh
        .client
        .load_identities(pb::LoadIdentitiesRequest {
            identities: vec![
                identity("p-ann", "ann", "ann@example.org"),
                identity("p-bob", "bob", "bob@example.org"),
                identity("p-cat", "cat", "shared@example.org"),
                identity("p-dan", "dan", "shared@example.org"),
            ],
        })
        .await
        .expect("baseline loads")
        .into_inner();
    assert_eq!((loaded.loaded, loaded.unchanged), (4, 0));
    let target = mesh.target("ldap");
    target.put("ann", Some(untagged("ann", Some("ANN@example.org"), &[("group", "staff")])));
    target.put("bob", Some(untagged("bob", None, &[])));
    target.put("shared", Some(untagged("shared", Some("shared@example.org"), &[])));
    target.put("rogue", Some(untagged("rogue", Some("*"), &[("group", "admins")])));
    mesh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn situations_links_and_containment() {
    let mut mesh = setup("manual").await;
    let report = reconcile(&mut mesh, ldap(|_| {})).await.expect("report");
    assert_eq!(report["clean"], false, "{report}");
    let counts = &report["correlation"]["counts"]["by_situation"];
    assert_eq!(
        (counts["unlinked"].as_u64(), counts["disputed"].as_u64(), counts["unmatched"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{report}"
    );
    let first = &report["correlation"]["findings"][0];
    assert_eq!(
        (first["account_name"].as_str(), first["privileged"].as_bool()),
        (Some("rogue"), Some(true)),
        "{report}"
    );
    assert_eq!(finding(&report, "ann")["person_id"], "p-ann");
    assert!(finding(&report, "ann")["rule"].as_str().is_some_and(|r| r.starts_with("rules[0]: mail")));
    assert!(finding(&report, "bob")["rule"].as_str().is_some_and(|r| r.starts_with("rules[1]: account_name")));
    assert_eq!(finding(&report, "shared")["candidates"], serde_json::json!(["p-cat", "p-dan"]));
    let seen_ann = finding(&report, "ann")["fingerprint"].as_str().expect("fingerprint").to_owned();
    let seen_bob = finding(&report, "bob")["fingerprint"].as_str().expect("fingerprint").to_owned();

    // Bob's account changes after the report: linking it as reported is
    // refused and nothing is written; Ann's is linked and converges.
    let target = mesh.target("ldap");
    let mut bob = target.get("bob").expect("bob");
    bob.entitlements.insert(("group".into(), "finance".into()));
    target.put("bob", Some(bob));
    let link = |name: &str, person: &str, fingerprint: &str| pb::AccountLink {
        target_id: "ldap".into(),
        account_name: name.into(),
        person_id: person.into(),
        fingerprint: fingerprint.into(),
    };
    let links = vec![link("ann", "p-ann", &seen_ann), link("bob", "p-bob", &seen_bob)];
    let report = reconcile(&mut mesh, ldap(|r| r.links = links)).await.expect("links");
    let records = report["correlation"]["links"].as_array().expect("links");
    let ann = records.iter().find(|l| l["account_name"] == "ann").expect("ann's link");
    let bob = records.iter().find(|l| l["account_name"] == "bob").expect("bob's link");
    assert_eq!(ann["outcome"], "linked", "{ann}");
    assert_eq!(bob["outcome"], "refused", "{bob}");
    assert_eq!(target.get("bob").expect("bob").person_id, "", "nothing written on bob");
    let event = ann["convergence_event_id"].as_str().expect("convergence event").to_owned();
    let status = until_terminal(&mut mesh.client, &event).await;
    assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    let ann = target.get("ann").expect("ann");
    assert_eq!(ann.person_id, "p-ann");
    assert_eq!(ann.attributes.get("mail").map(String::as_str), Some("ann@example.org"), "converged to the plan");

    // The next run: ann linked; an admin's --link takes bob now.
    let report = reconcile(&mut mesh, ldap(|r| r.link_unlinked = true)).await.expect("link");
    assert_eq!(report["correlation"]["counts"]["by_situation"]["linked"], 1, "{report}");
    let bob = report["correlation"]["links"].as_array().and_then(|l| l.first()).cloned().expect("bob linked");
    assert_eq!((bob["account_name"].as_str(), bob["outcome"].as_str()), (Some("bob"), Some("linked")), "{bob}");
    assert_eq!(target.get("shared").expect("shared").person_id, "", "a disputed account is never linked");

    // A remediating run contains the rogue account: disabled, stripped, kept.
    let report = reconcile(&mut mesh, ldap(|r| r.remediate = true)).await.expect("remediate");
    let custody = report["correlation"]["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["account_name"] == "rogue")
        .cloned()
        .unwrap_or_else(|| panic!("rogue taken into custody: {report}"));
    let event = custody["convergence_event_id"].as_str().expect("containment event").to_owned();
    until_terminal(&mut mesh.client, &event).await;
    let rogue = target.get("rogue").expect("the rogue account still exists");
    assert!(!rogue.enabled && rogue.entitlements.is_empty() && rogue.credentials.is_empty(), "{rogue:?}");
    assert!(rogue.person_id.starts_with("unmatched:"), "{rogue:?}");
    let report = reconcile(&mut mesh, ldap(|_| {})).await.expect("report");
    let rogue = finding(&report, "rogue");
    assert_eq!((rogue["situation"].as_str(), rogue["contained"].as_bool()), (Some("unmatched"), Some(true)));

    // Every link is in the audit chain with its principal and rule.
    let audit = mesh.client.verify_audit(pb::VerifyAuditRequest {}).await.expect("verify").into_inner();
    assert!(audit.intact, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_meets_an_unlinked_account() {
    let mut mesh = setup("manual").await;
    mesh.target("ldap").put("eve", Some(untagged("eve", Some("eve@example.org"), &[])));
    let joiner = support::event("j-eve", pb::EventKind::Joiner, "p-eve", person("eve", "Sales"), "");
    support::submit(&mut mesh.client, joiner).await;
    let status = until_terminal(&mut mesh.client, "j-eve").await;
    let task = support::task(&status, "ldap");
    assert_eq!(task.state, pb::TaskState::Failed as i32, "{task:?}");
    for needle in
        ["\"eve\"", "rules[0]: mail equals {email}", "jmlctl reconcile --target ldap --person-prefix p-eve --link"]
    {
        assert!(task.last_error.contains(needle), "{needle} in {}", task.last_error);
    }
    assert_eq!(mesh.target("ldap").get("eve").expect("eve").person_id, "", "not taken over");

    let mut mesh = setup("correlated").await;
    mesh.target("ldap").put("eve", Some(untagged("eve", Some("eve@example.org"), &[])));
    let joiner = support::event("j-eve", pb::EventKind::Joiner, "p-eve", person("eve", "Sales"), "");
    support::submit(&mut mesh.client, joiner).await;
    let status = until_terminal(&mut mesh.client, "j-eve").await;
    assert_eq!(support::task(&status, "ldap").state, pb::TaskState::Verified as i32, "{status:?}");
    assert_eq!(mesh.target("ldap").get("eve").expect("eve").person_id, "p-eve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_checked_with_paths_and_against_describe() {
    let targets = support::targets(None).await;
    let policy = |edit: &dyn Fn(String) -> String| Policy::parse(&edit(policy_yaml(&targets, 4)));
    let errors = |result: Result<Policy, coordinator::PolicyError>| match result {
        Err(coordinator::PolicyError::Invalid(issues)) => issues.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("expected errors, got {other:?}"),
    };
    let issues = errors(policy(&|p| {
        p.replacen(
            "deadline: 10m }",
            "deadline: 10m, correlation: { rules: [ { attribute: mail, equals: \"{nope}\" }, { attribute: mail, equals: \"x\" } ], adopt: correlated } }",
            1,
        )
    }));
    assert!(
        issues.iter().any(|i| i.starts_with("targets[0].correlation.rules[0].equals: placeholder {nope}")),
        "{issues:?}"
    );
    assert!(issues.iter().any(|i| i.starts_with("targets[0].correlation.rules[1].equals: must name")), "{issues:?}");
    assert!(issues.iter().any(|i| i.starts_with("targets[0].correlation.adopt")), "{issues:?}");
    let issues = errors(policy(&|p| {
        p.replacen("deadline: 10m }", "deadline: 10m, correlation: { rules: [], colour: red } }", 1)
    }));
    assert!(issues.iter().any(|i| i.contains("colour")), "unknown fields are refused: {issues:?}");

    // Against Describe: an attribute the connector cannot supply fails the run with the rule's path.
    let mut mesh =
        Mesh::start_with(4, with_correlation("manual", r#"[ { attribute: employeeID, equals: "{person_id}" } ]"#))
            .await;
    let refused = reconcile(&mut mesh, ldap(|_| {})).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("targets[0].correlation.rules[0].attribute"), "{}", refused.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_refuses_bad_records_and_loads_nothing() {
    let mut mesh = Mesh::start(4).await;
    let good = identity("p-1", "one", "one@example.org");
    let mut wrong_source = identity("p-2", "two", "two@example.org");
    wrong_source.source_system = "spreadsheet".into();
    let mut unknown = identity("p-3", "three", "three@example.org");
    unknown.attributes.insert("shoe_size".into(), "44".into());
    let cases = [
        (vec![good.clone(), good.clone()], "identities[1].person_id"),
        (vec![good.clone(), wrong_source], "identities[1].source_system"),
        (vec![unknown], "identities[0].attributes"),
        (vec![identity(" padded", "x", "x@example.org")], "identities[0].person_id"),
        (vec![], "identities"),
    ];
    for (identities, field) in cases {
        let refused = mesh.client.load_identities(pb::LoadIdentitiesRequest { identities }).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with(field), "{field}: {}", refused.message());
    }
    let loaded = mesh.client.load_identities(pb::LoadIdentitiesRequest { identities: vec![good] }).await.expect("ok");
    assert_eq!(loaded.into_inner().loaded, 1, "nothing was loaded by the refused calls");
    for target in support::TARGETS {
        assert_eq!(mesh.target(target).page(None, 10).len(), 0, "{target}: nothing provisioned");
    }
}
