//! The calendar on the real targets: a leaver's accounts deleted after a
//! short retention on every target (each checked with the target's own
//! client: an LDAP search, SCIM GETs, IAM on moto, the Vault API), the
//! pending deletion shown by `jmlctl status` and the leaver's evidence, and a
//! rehire cancelling a pending deletion.

use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{TARGET_IDS, millis, state_name, task};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};

/// The retention every target gets in this test's policy.
const RETENTION_SECONDS: i64 = 120;

/// The quickstart policy with `delete_after` on every target.
fn with_retention(policy: &str) -> String {
    let mut out = String::new();
    for line in policy.lines() {
        if line.trim_start().starts_with("delete_after:") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("    account_name:") {
            out.push_str(&format!("    delete_after: {RETENTION_SECONDS}s\n"));
        }
    }
    out
}

fn at(offset_seconds: i64) -> String {
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_seconds);
    now.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

fn event_at(person: &Person, id: &str, kind: pb::EventKind, offset_seconds: i64) -> pb::LifecycleEvent {
    pb::LifecycleEvent { effective_at: at(offset_seconds), ..person.event(id, kind) }
}

fn deletion_id(target: &str, leaver: &str) -> String {
    format!("retention:{target}:{leaver}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_after_retention_and_a_rehire_that_cancels_it() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("cal", MeshOptions::default()).await.expect("the mesh starts");
    mesh.stop_coordinator().await.expect("stops");
    let policy = std::fs::read_to_string(mesh.policy_path()).expect("policy");
    std::fs::write(mesh.policy_path(), with_retention(&policy)).expect("policy with retentions");
    mesh.start_coordinator().await.expect("the coordinator starts with retentions on every target");
    let within = Duration::from_secs(240);

    // Ann leaves (effective a minute ago: her deletion is due a minute from
    // now); Ben leaves now and comes back before his deletion is due.
    let ann = Person::new(&mesh.run_id, 0, "Sales");
    let ben = Person::new(&mesh.run_id, 1, "Sales");
    let run = mesh.run_id.clone();
    let (ann_joiner, ben_joiner) = (format!("{run}-ann-joiner"), format!("{run}-ben-joiner"));
    mesh.submit(event_at(&ann, &ann_joiner, pb::EventKind::Joiner, -300)).await.expect("accepted");
    mesh.submit(ben.event(&ben_joiner, pb::EventKind::Joiner)).await.expect("accepted");
    let joined = mesh.wait_finished(&[ann_joiner.clone(), ben_joiner.clone()], within).await.expect("joiners finish");
    for (id, status) in &joined {
        assert_eq!(status.state, pb::EventState::Verified as i32, "{id}: {status:?}");
    }
    let (ann_leaver, ben_leaver) = (format!("{run}-ann-leaver"), format!("{run}-ben-leaver"));
    mesh.submit(event_at(&ann, &ann_leaver, pb::EventKind::Leaver, -60)).await.expect("accepted");
    mesh.submit(ben.event(&ben_leaver, pb::EventKind::Leaver)).await.expect("accepted");
    let left = mesh.wait_finished(&[ann_leaver.clone(), ben_leaver.clone()], within).await.expect("leavers finish");

    // Each leaver's status lists a deletion per target, due its effective
    // time plus the retention.
    for (id, status) in &left {
        let effective = millis(&status.effective_at).expect("an effective time");
        let listed: Vec<&str> = status.calendar.iter().map(|e| e.target_id.as_str()).collect();
        assert_eq!(listed, TARGET_IDS.to_vec(), "{id}: {status:?}");
        for entry in &status.calendar {
            assert_eq!(entry.event_id, deletion_id(&entry.target_id, id));
            assert_eq!(millis(&entry.due_at), Some(effective + RETENTION_SECONDS * 1000), "{entry:?}");
        }
    }
    let ben_status = &left[&ben_leaver];
    assert!(
        ben_status.calendar.iter().all(|e| e.state == pb::TaskState::Planned as i32),
        "Ben's deletions wait for their time: {ben_status:?}"
    );
    let shown = mesh.jmlctl(&["status", &ben_leaver]).await.expect("jmlctl status");
    let shown = String::from_utf8_lossy(&shown.stdout);
    for target in TARGET_IDS {
        assert!(
            shown.contains(&format!("calendar: deletion after retention on {target} due")),
            "jmlctl status shows the pending deletion on {target}:\n{shown}"
        );
    }
    let evidence = mesh.evidence(&ben_leaver).await.expect("evidence");
    let scheduled = evidence["calendar"]["scheduled"].as_array().expect("the calendar in the evidence");
    assert_eq!(scheduled.len(), TARGET_IDS.len(), "{evidence}");
    assert!(scheduled.iter().all(|s| s["due_at"].as_str().is_some_and(|d| !d.is_empty())), "{evidence}");

    // Ben is rehired: his pending deletions are cancelled, never dispatched.
    let ben_rehire = format!("{run}-ben-rehire");
    mesh.submit(ben.event(&ben_rehire, pb::EventKind::Joiner)).await.expect("accepted");
    let ben_deletions: Vec<String> = TARGET_IDS.iter().map(|t| deletion_id(t, &ben_leaver)).collect();
    let mut waited = ben_deletions.clone();
    waited.push(ben_rehire.clone());
    let finished = mesh.wait_finished(&waited, within).await.expect("the rehire and the cancellations finish");
    assert_eq!(finished[&ben_rehire].state, pb::EventState::Verified as i32, "{:?}", finished[&ben_rehire]);
    for (target, id) in TARGET_IDS.iter().zip(&ben_deletions) {
        let status = &finished[id];
        assert_eq!(status.state, pb::EventState::Superseded as i32, "{status:?}");
        assert_eq!(status.calendar_origin, ben_leaver);
        let task = task(status, target);
        assert_eq!(task.attempts, 0, "never dispatched: {task:?}");
        assert!(task.last_error.contains(&ben_rehire), "the reason names the rehire: {task:?}");
    }

    // Ann's deletions run when due: acknowledged, read back as gone.
    let ann_deletions: Vec<String> = TARGET_IDS.iter().map(|t| deletion_id(t, &ann_leaver)).collect();
    let deleted = mesh.wait_finished(&ann_deletions, within).await.expect("Ann's deletions finish");
    for (target, id) in TARGET_IDS.iter().zip(&ann_deletions) {
        let status = &deleted[id];
        let task = task(status, target);
        assert_eq!(
            task.state,
            pb::TaskState::Verified as i32,
            "deletion on {target}: {} ({}; {:?})",
            state_name(task.state),
            task.last_error,
            task.differences
        );
        assert!(task.acknowledgement.is_some(), "{task:?}");
        assert!(task.read_back.as_ref().is_some_and(|r| !r.exists), "read back as gone: {task:?}");
        assert!(millis(&task.dispatched_at) >= millis(&status.effective_at), "not before it was due: {task:?}");
    }

    // What each target shows, with its own client.
    assert_eq!(targets.ldap.account(&ann.username).await.expect("ldap"), None, "Ann's LDAP entry is gone");
    assert_eq!(targets.scim.account(&ann.email).await.expect("scim"), None, "Ann's SCIM user is gone");
    assert_eq!(targets.iam.account(&ann.username).await.expect("iam"), None, "Ann's IAM user is gone");
    assert_eq!(targets.vault.user(&ann.username).await.expect("vault"), None, "Ann's Vault login is gone");
    let ldap = targets.ldap.account(&ben.username).await.expect("ldap").expect("Ben's LDAP entry is kept");
    assert!(!ldap.locked && ldap.groups.contains("staff"), "{ldap:?}");
    let scim = targets.scim.account(&ben.email).await.expect("scim").expect("Ben's SCIM user is kept");
    assert!(scim.active, "{scim:?}");
    let iam = targets.iam.account(&ben.username).await.expect("iam").expect("Ben's IAM user is kept");
    assert!(!iam.disabled_tag && iam.groups.contains("staff"), "{iam:?}");
    let vault = targets.vault.user(&ben.username).await.expect("vault").expect("Ben's Vault login is back");
    assert!(vault.contains("pam-read"), "{vault:?}");

    let evidence = mesh.evidence(&deletion_id("ldap", &ann_leaver)).await.expect("evidence");
    assert_eq!(evidence["calendar"]["origin"], ann_leaver.as_str(), "{evidence}");
    assert_eq!(evidence["source_system"], "calendar");
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}
