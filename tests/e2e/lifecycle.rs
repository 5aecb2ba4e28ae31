//! A joiner, a mover and a leaver through the real coordinator and the four
//! real connector processes (mutual TLS), against slapd, scim2-server, moto
//! and RustyVault; every outcome is checked on the target itself with its own
//! protocol, and in the evidence `jmlctl` exports.

use std::collections::BTreeSet;
use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{TARGET_IDS, state_name, task};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every task of the event is verified, and its evidence names every target
/// with its acknowledgement and read-back.
async fn assert_verified_with_evidence(mesh: &Mesh, status: &pb::EventStatus) {
    for target in TARGET_IDS {
        let task = task(status, target);
        assert_eq!(
            task.state,
            pb::TaskState::Verified as i32,
            "event {} on {target}: {} ({}; differences {:?})",
            status.event_id,
            state_name(task.state),
            task.last_error,
            task.differences
        );
    }
    assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    let evidence = mesh.evidence(&status.event_id).await.expect("evidence");
    let targets = evidence["targets"].as_array().expect("evidence lists targets");
    let named: BTreeSet<&str> = targets.iter().filter_map(|t| t["target_id"].as_str()).collect();
    assert_eq!(named, TARGET_IDS.into_iter().collect(), "evidence of {} names every target", status.event_id);
    for target in targets {
        assert_eq!(target["state"], "verified", "{target}");
        assert!(target["acknowledgement"].is_object(), "evidence has the acknowledgement: {target}");
        assert!(target["read_back"].is_object(), "evidence has the read-back: {target}");
        assert!(target["acknowledgement"]["command_id"].as_str().is_some_and(|c| !c.is_empty()), "{target}");
    }
    assert!(evidence["policy_hash"].as_str().is_some_and(|h| h.len() == 64), "{evidence}");
    assert_eq!(evidence["initiator"], "hr-integration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joiner_mover_leaver_on_the_four_real_targets() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mesh = Mesh::start("jml", MeshOptions::default()).await.expect("the mesh starts");
    let mut person = Person::new(&mesh.run_id, 0, "Engineering");
    let within = Duration::from_secs(120);

    // Joiner: staff + engineering everywhere; the privileged Vault policy
    // waits for a security approver.
    let joiner = format!("{}-joiner", mesh.run_id);
    mesh.submit(person.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    mesh_harness::assert_eventually!(
        mesh.status(&joiner).await.is_ok_and(|s| task(&s, "vault").state == pb::TaskState::AwaitingApproval as i32),
        within,
        "the privileged vault grant never awaited approval"
    );
    mesh.approve(&joiner, "vault", "alice").await.expect("alice approves");
    let status = mesh.wait_finished(std::slice::from_ref(&joiner), within).await.expect("joiner finishes");
    assert_verified_with_evidence(&mesh, &status[&joiner]).await;

    let ldap = targets.ldap.account(&person.username).await.expect("ldap").expect("the LDAP account exists");
    assert!(!ldap.locked, "{ldap:?}");
    assert_eq!(ldap.groups, set(&["staff", "engineering"]), "{ldap:?}");
    assert_eq!(ldap.display_name.as_deref(), Some(person.display_name.as_str()));
    let scim = targets.scim.account(&person.email).await.expect("scim").expect("the SCIM user exists");
    assert!(scim.active, "{scim:?}");
    assert_eq!(scim.groups, set(&["staff", "engineering"]), "{scim:?}");
    let iam = targets.iam.account(&person.username).await.expect("iam").expect("the IAM user exists");
    assert_eq!(iam.path, mesh.iam_user_path);
    assert_eq!(iam.groups, set(&["staff", "engineering"]), "{iam:?}");
    assert!(!iam.disabled_tag, "{iam:?}");
    let vault = targets.vault.user(&person.username).await.expect("vault").expect("the Vault login exists");
    assert!(vault.contains("pam-ops"), "{vault:?}");

    // Mover to Sales: engineering and pam-ops are gone from every target.
    person.department = "Sales".into();
    person.title = "Account Executive".into();
    let mover = format!("{}-mover", mesh.run_id);
    mesh.submit(person.event(&mover, pb::EventKind::Mover)).await.expect("mover accepted");
    let status = mesh.wait_finished(std::slice::from_ref(&mover), within).await.expect("mover finishes");
    assert_verified_with_evidence(&mesh, &status[&mover]).await;

    let ldap = targets.ldap.account(&person.username).await.expect("ldap").expect("the LDAP account exists");
    assert_eq!(ldap.groups, set(&["staff", "sales"]), "{ldap:?}");
    assert!(!ldap.locked);
    let scim = targets.scim.account(&person.email).await.expect("scim").expect("the SCIM user exists");
    assert_eq!(scim.groups, set(&["staff", "sales"]), "{scim:?}");
    assert!(scim.active);
    let iam = targets.iam.account(&person.username).await.expect("iam").expect("the IAM user exists");
    assert_eq!(iam.groups, set(&["staff", "sales"]), "{iam:?}");
    let vault = targets.vault.user(&person.username).await.expect("vault").expect("the Vault login exists");
    assert!(vault.contains("pam-read") && !vault.contains("pam-ops"), "{vault:?}");

    // Leaver: disabled, stripped and revoked on every target. Everything
    // each target can prove is proven by read-back; what may outlive the
    // revocation is listed per target with its bound, and the task ends
    // verified with residual risk, on its first attempt (never retried):
    // LDAP's bound connections, SCIM's password and application sessions,
    // RustyVault's unlistable tokens, and the service-specific credentials
    // moto has no API for. AWS session credentials are not among them: the
    // session cut-off policy read back from IAM proves them cut.
    let leaver = format!("{}-leaver", mesh.run_id);
    mesh.submit(person.event(&leaver, pb::EventKind::Leaver)).await.expect("leaver accepted");
    let status = mesh.wait_finished(std::slice::from_ref(&leaver), within).await.expect("leaver finishes");
    let status = &status[&leaver];
    let expected_risks = [
        ("ldap", vec!["bound_connection"]),
        ("scim", vec!["application_session", "password"]),
        ("vault", vec!["token"]),
        ("aws", vec!["service_specific_credential"]),
    ];
    for (target, kinds) in &expected_risks {
        let task = task(status, target);
        assert_eq!(task.state, pb::TaskState::VerifiedWithResidualRisk as i32, "leaver on {target}: {task:?}");
        assert_eq!(task.attempts, 1, "a residual risk is never retried: {task:?}");
        assert!(task.differences.is_empty(), "{task:?}");
        let listed: Vec<&str> = task.residual_risks.iter().map(|r| r.credential_kind.as_str()).collect();
        assert_eq!(&listed, kinds, "residual risks on {target}: {:?}", task.residual_risks);
        let read_back = task.read_back.as_ref().expect("a read-back");
        assert!(read_back.exists && !read_back.enabled && read_back.entitlements.is_empty(), "{read_back:?}");
    }
    assert_eq!(status.state, pb::EventState::VerifiedWithResidualRisk as i32, "{status:?}");
    assert_eq!(status.residual_risks.len(), 5, "{:?}", status.residual_risks);
    let aws = task(status, "aws");
    let cut: Vec<&str> = aws.cutoffs.iter().map(|c| c.credential_kind.as_str()).collect();
    assert_eq!(cut, ["sts_session", "console_session"], "{aws:?}");
    let evidence = mesh.evidence(&leaver).await.expect("evidence");
    assert_eq!(evidence["state"], "verified_with_residual_risk", "{evidence}");
    let listed = evidence["targets"].as_array().expect("evidence lists targets");
    assert_eq!(listed.len(), 4, "{evidence}");
    for target in listed {
        assert!(target["acknowledgement"].is_object() && target["read_back"].is_object(), "{target}");
        assert_eq!(target["read_back"]["enabled"], false, "{target}");
        assert_eq!(target["state"], "verified_with_residual_risk", "{target}");
        assert!(target["residual_risks"].as_array().is_some_and(|r| !r.is_empty()), "{target}");
    }
    // `jmlctl watch` tells a residual risk apart from verified and failed.
    let watched = mesh.jmlctl(&["watch", &leaver]).await.expect("jmlctl watch");
    assert_eq!(watched.status.code(), Some(7), "{}", String::from_utf8_lossy(&watched.stderr));

    let ldap = targets.ldap.account(&person.username).await.expect("ldap").expect("the LDAP entry is kept, locked");
    assert!(ldap.locked, "the LDAP account is locked: {ldap:?}");
    assert!(ldap.groups.is_empty(), "no LDAP group left: {ldap:?}");
    let scim = targets.scim.account(&person.email).await.expect("scim").expect("the SCIM user is kept, inactive");
    assert!(!scim.active, "the SCIM user is inactive: {scim:?}");
    assert!(scim.groups.is_empty(), "no SCIM group left: {scim:?}");
    let iam = targets.iam.account(&person.username).await.expect("iam").expect("the IAM user is kept, disabled");
    assert!(iam.disabled_tag, "the IAM user carries the disabled marker: {iam:?}");
    assert!(iam.groups.is_empty() && iam.policies.is_empty(), "no IAM group or policy left: {iam:?}");
    assert!(!iam.login_profile && iam.active_access_keys == 0, "no IAM credential left: {iam:?}");
    // IAM itself shows the documented deny-all on aws:TokenIssueTime.
    let cutoff = targets
        .iam
        .inline_policy(&person.username, "jml-revoke-older-sessions")
        .await
        .expect("iam")
        .expect("the session cut-off policy is on the user");
    let document: serde_json::Value = serde_json::from_str(&cutoff).expect("a JSON policy document");
    let statement = &document["Statement"][0];
    assert_eq!((statement["Effect"].as_str(), statement["Action"].as_str()), (Some("Deny"), Some("*")), "{document}");
    assert!(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string(), "{document}");
    assert_eq!(targets.vault.user(&person.username).await.expect("vault"), None, "the Vault login is removed");

    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}

/// `deploy/examples/policy.yaml` checked against the real connectors (each
/// one's Describe over mutual TLS), its endpoints and TLS replaced by the
/// test mesh's: it passes; the same policy granting a SCIM `role` (a kind
/// the SCIM connector does not declare) is refused with the grant's path,
/// before anything could be dispatched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_policy_matches_the_real_connectors() {
    let mesh = Mesh::start("example", MeshOptions::default()).await.expect("the mesh starts");
    let mesh_policy: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(mesh.policy_path()).expect("mesh policy")).expect("yaml");
    let example_path = mesh_harness::workspace_root().join("deploy/examples/policy.yaml");
    let mut example: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(example_path).expect("example policy")).expect("yaml");
    for target in example["targets"].as_sequence_mut().expect("targets") {
        let id = target["id"].as_str().expect("id").to_owned();
        let running = mesh_policy["targets"]
            .as_sequence()
            .expect("targets")
            .iter()
            .find(|t| t["id"].as_str() == Some(id.as_str()))
            .expect("the mesh runs every target of the example");
        let map = target.as_mapping_mut().expect("a target is a mapping");
        map.remove("insecure_plaintext");
        map.insert("endpoint".into(), running["endpoint"].clone());
        map.insert("tls".into(), running["tls"].clone());
    }
    let check = |policy: &serde_yaml_ng::Value, name: &str| {
        let path = mesh.dir.join(name);
        std::fs::write(&path, serde_yaml_ng::to_string(policy).expect("yaml")).expect("write policy");
        path
    };
    let good = check(&example, "example-policy.yaml");
    let output = mesh.jmlctl(&["policy", "check", "--live", good.to_str().expect("utf-8")]).await.expect("jmlctl");
    assert!(
        output.status.success(),
        "the example policy against the real connectors: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The example as it was: a SCIM role and a Vault group.
    let mut bad = example.clone();
    bad["workflows"][0]["grants"]["scim"][0]["kind"] = "role".into();
    bad["workflows"][3]["grants"]["vault"][0]["kind"] = "group".into();
    let bad = check(&bad, "bad-policy.yaml");
    let output = mesh.jmlctl(&["policy", "check", "--live", bad.to_str().expect("utf-8")]).await.expect("jmlctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("workflows[0].grants.scim[0].kind") && stdout.contains("\"role\""), "{stdout}");
    assert!(stdout.contains("workflows[3].grants.vault[0].kind") && stdout.contains("\"group\""), "{stdout}");
}
