//! The calendar on the real targets: a leaver's accounts deleted after a
//! short retention on every target (each checked with the target's own
//! client: an LDAP search, SCIM GETs, IAM on moto, the Vault API), the
//! pending deletion shown by `jmlctl status` and the leaver's evidence, and a
//! rehire cancelling a pending deletion; a pre-hire creating the accounts
//! disabled ahead of the start and the start enabling them, and a hire
//! cancelled before its start removing what its pre-hire created.

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

/// The quickstart policy with `prehire` on every target.
fn with_prehire(policy: &str, lead_seconds: i64) -> String {
    let mut out = String::new();
    for line in policy.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("    account_name:") {
            out.push_str(&format!("    prehire: {lead_seconds}s\n"));
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
        assert!(
            status.state == pb::EventState::Verified as i32
                || status.state == pb::EventState::VerifiedWithResidualRisk as i32,
            "{id}: {status:?}"
        );
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
        // Proven: verified, or verified with the residual risks the connector
        // declares (e.g. LDAP connections bound before the deletion).
        assert!(
            task.state == pb::TaskState::Verified as i32
                || task.state == pb::TaskState::VerifiedWithResidualRisk as i32,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prehire_then_start_and_a_hire_cancelled_before_its_start() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("pre", MeshOptions::default()).await.expect("the mesh starts");
    mesh.stop_coordinator().await.expect("stops");
    let policy = std::fs::read_to_string(mesh.policy_path()).expect("policy");
    std::fs::write(mesh.policy_path(), with_prehire(&policy, 50)).expect("policy with pre-hire");
    mesh.start_coordinator().await.expect("the coordinator starts with pre-hire on every target");
    let within = Duration::from_secs(240);
    let run = mesh.run_id.clone();

    // Both start a minute from now: their accounts are pre-hired now.
    let cal = Person::new(&run, 0, "Sales");
    let dee = Person::new(&run, 1, "Sales");
    let (cal_joiner, dee_joiner) = (format!("{run}-cal-joiner"), format!("{run}-dee-joiner"));
    mesh.submit(event_at(&cal, &cal_joiner, pb::EventKind::Joiner, 60)).await.expect("accepted");
    mesh.submit(event_at(&dee, &dee_joiner, pb::EventKind::Joiner, 60)).await.expect("accepted");
    let prehires: Vec<String> = [&cal_joiner, &dee_joiner]
        .iter()
        .flat_map(|joiner| TARGET_IDS.iter().map(move |t| format!("prehire:{t}:{joiner}")))
        .collect();
    let done = mesh.wait_finished(&prehires, within).await.expect("the pre-hires finish");
    for (id, status) in &done {
        assert!(
            status.state == pb::EventState::Verified as i32
                || status.state == pb::EventState::VerifiedWithResidualRisk as i32,
            "{id}: {status:?}"
        );
    }
    // Disabled, without entitlements or credentials, on every target.
    for person in [&cal, &dee] {
        let ldap = targets.ldap.account(&person.username).await.expect("ldap").expect("pre-hired in LDAP");
        assert!(ldap.locked && ldap.groups.is_empty(), "{ldap:?}");
        let scim = targets.scim.account(&person.email).await.expect("scim").expect("pre-hired in SCIM");
        assert!(!scim.active && scim.groups.is_empty(), "{scim:?}");
        let iam = targets.iam.account(&person.username).await.expect("iam").expect("pre-hired in IAM");
        assert!(iam.disabled_tag && iam.groups.is_empty() && iam.policies.is_empty(), "{iam:?}");
        assert!(!iam.login_profile && iam.active_access_keys == 0, "no IAM credential: {iam:?}");
        assert_eq!(targets.vault.user(&person.username).await.expect("vault"), None, "no Vault login yet");
    }

    // Dee's hire is cancelled before the start: what the pre-hire created goes.
    let dee_leaver = format!("{run}-dee-leaver");
    mesh.submit(dee.event(&dee_leaver, pb::EventKind::Leaver)).await.expect("accepted");
    let removals: Vec<String> = TARGET_IDS.iter().map(|t| format!("prehire-removal:{t}:{dee_joiner}")).collect();
    let mut waited = removals.clone();
    waited.push(dee_joiner.clone());
    let removed = mesh.wait_finished(&waited, within).await.expect("the cancelled hire settles");
    assert_eq!(removed[&dee_joiner].state, pb::EventState::Superseded as i32, "{:?}", removed[&dee_joiner]);
    for (target, id) in TARGET_IDS.iter().zip(&removals) {
        let task = task(&removed[id], target);
        assert!(
            task.state == pb::TaskState::Verified as i32
                || task.state == pb::TaskState::VerifiedWithResidualRisk as i32,
            "removal on {target}: {task:?}"
        );
        assert!(task.read_back.as_ref().is_some_and(|r| !r.exists), "read back as gone: {task:?}");
    }
    assert_eq!(targets.ldap.account(&dee.username).await.expect("ldap"), None, "Dee's LDAP entry is gone");
    assert_eq!(targets.scim.account(&dee.email).await.expect("scim"), None, "Dee's SCIM user is gone");
    assert_eq!(targets.iam.account(&dee.username).await.expect("iam"), None, "Dee's IAM user is gone");

    // Cal starts: enabled with his grants on every target.
    let started = mesh.wait_finished(std::slice::from_ref(&cal_joiner), within).await.expect("Cal starts");
    let status = &started[&cal_joiner];
    assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    let dispatched = TARGET_IDS.iter().filter_map(|t| millis(&task(status, t).dispatched_at)).min();
    assert!(dispatched >= millis(&status.effective_at), "not before the start: {status:?}");
    let ldap = targets.ldap.account(&cal.username).await.expect("ldap").expect("Cal's LDAP entry");
    assert!(!ldap.locked && ldap.groups.contains("staff") && ldap.groups.contains("sales"), "{ldap:?}");
    let scim = targets.scim.account(&cal.email).await.expect("scim").expect("Cal's SCIM user");
    assert!(scim.active && scim.groups.contains("staff"), "{scim:?}");
    let iam = targets.iam.account(&cal.username).await.expect("iam").expect("Cal's IAM user");
    assert!(!iam.disabled_tag && iam.groups.contains("staff"), "{iam:?}");
    let vault = targets.vault.user(&cal.username).await.expect("vault").expect("Cal's Vault login");
    assert!(vault.contains("pam-read"), "{vault:?}");
    assert!(
        status.calendar.iter().filter(|e| e.stage == "prehire").count() == TARGET_IDS.len(),
        "the joiner lists its pre-hires: {status:?}"
    );
    let verdict = mesh.verify_audit().await.expect("the audit chain verifies");
    assert!(verdict.contains("intact"), "{verdict}");
}
