//! Leave of absence on the real targets: a suspension disables the accounts,
//! keeping the LDAP groups (the policy's `on_leave: keep`) and stripping the
//! rest; the return restores them, the privileged Vault grant approved before
//! the leave without a fresh approval; the evidence links the two. A
//! suspension for a person with no identity record is refused.

use std::collections::BTreeSet;
use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::task;
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The quickstart policy with `on_leave: keep` on the LDAP target.
fn keep_on_ldap(policy: &str) -> String {
    let mut out = String::new();
    let mut in_ldap = false;
    for line in policy.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("  - id: ") {
            in_ldap = line.trim_end().ends_with("id: ldap");
        }
        if in_ldap && line.starts_with("    account_name:") {
            out.push_str("    on_leave: keep\n");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspension_and_return_on_the_four_real_targets() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("leave", MeshOptions::default()).await.expect("the mesh starts");
    mesh.stop_coordinator().await.expect("stops");
    let policy = std::fs::read_to_string(mesh.policy_path()).expect("policy");
    std::fs::write(mesh.policy_path(), keep_on_ldap(&policy)).expect("policy");
    mesh.start_coordinator().await.expect("the coordinator starts");
    let within = Duration::from_secs(180);
    let run = mesh.run_id.clone();
    let eve = Person::new(&run, 0, "Engineering");

    // Nobody to suspend yet: refused, nothing stored.
    let early = format!("{run}-early-suspension");
    let refused = mesh.submit(eve.event(&early, pb::EventKind::Suspension)).await.expect_err("refused");
    let status = refused.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("event.person_id"), "{status:?}");
    assert!(mesh.status(&early).await.is_err(), "nothing stored for the refused suspension");

    let joiner = format!("{run}-joiner");
    mesh.submit(eve.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    mesh_harness::assert_eventually!(
        mesh.status(&joiner).await.is_ok_and(|s| task(&s, "vault").state == pb::TaskState::AwaitingApproval as i32),
        within,
        "the privileged vault grant never awaited approval"
    );
    mesh.approve(&joiner, "vault", "alice").await.expect("alice approves");
    let joined = mesh.wait_finished(std::slice::from_ref(&joiner), within).await.expect("joiner finishes");
    assert_eq!(joined[&joiner].state, pb::EventState::Verified as i32, "{:?}", joined[&joiner]);

    // The leave: disabled everywhere; LDAP keeps its groups, the rest are stripped.
    let suspension = format!("{run}-suspension");
    mesh.submit(eve.event(&suspension, pb::EventKind::Suspension)).await.expect("suspension accepted");
    let suspended = mesh.wait_finished(std::slice::from_ref(&suspension), within).await.expect("suspension finishes");
    assert_eq!(suspended[&suspension].state, pb::EventState::Verified as i32, "{:?}", suspended[&suspension]);
    let ldap = targets.ldap.account(&eve.username).await.expect("ldap").expect("the LDAP entry is kept");
    assert!(ldap.locked, "{ldap:?}");
    assert_eq!(ldap.groups, set(&["staff", "engineering"]), "kept on leave: {ldap:?}");
    let scim = targets.scim.account(&eve.email).await.expect("scim").expect("the SCIM user is kept");
    assert!(!scim.active && scim.groups.is_empty(), "{scim:?}");
    let iam = targets.iam.account(&eve.username).await.expect("iam").expect("the IAM user is kept");
    assert!(iam.disabled_tag && iam.groups.is_empty(), "{iam:?}");
    assert_eq!(targets.vault.user(&eve.username).await.expect("vault"), None, "no Vault login while on leave");

    // The return: enabled, grants back, the Vault policy approved before the
    // leave applied without a fresh approval.
    let back = format!("{run}-return");
    mesh.submit(eve.event(&back, pb::EventKind::Return)).await.expect("return accepted");
    let returned = mesh.wait_finished(std::slice::from_ref(&back), within).await.expect("return finishes");
    let status = &returned[&back];
    assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    let vault_task = task(status, "vault");
    assert!(vault_task.approvals.is_empty() && vault_task.approvals_required == 0, "{vault_task:?}");
    let ldap = targets.ldap.account(&eve.username).await.expect("ldap").expect("LDAP entry");
    assert!(!ldap.locked && ldap.groups == set(&["staff", "engineering"]), "{ldap:?}");
    let scim = targets.scim.account(&eve.email).await.expect("scim").expect("SCIM user");
    assert!(scim.active && scim.groups == set(&["staff", "engineering"]), "{scim:?}");
    let iam = targets.iam.account(&eve.username).await.expect("iam").expect("IAM user");
    assert!(!iam.disabled_tag && iam.groups == set(&["staff", "engineering"]), "{iam:?}");
    let vault = targets.vault.user(&eve.username).await.expect("vault").expect("the Vault login is back");
    assert!(vault.contains("pam-ops"), "{vault:?}");

    // The evidence links the two.
    let evidence = mesh.evidence(&back).await.expect("evidence");
    assert_eq!(evidence["leave"]["suspension"], suspension.as_str(), "{evidence}");
    let evidence = mesh.evidence(&suspension).await.expect("evidence");
    assert_eq!(evidence["leave"]["returned_by"], back.as_str(), "{evidence}");
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}
