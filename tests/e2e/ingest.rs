//! HR ingestion through the real coordinator and the four real connector
//! processes: rosters sent with the real `jmlctl import` as the HR
//! integration would, the derived joiners, movers and leavers checked on each
//! target with its own client, and a roster that would make too many leavers
//! held by the mass-change guard until an admin (not the submitter) approves.
//!
//! The roster has `JML_INGEST_E2E_PEOPLE` people (default 10: the machine's
//! cores are shared; 1,000 works, slowly).

use std::fmt::Write as _;
use std::time::Duration;

use mesh_e2e::{Mesh, MeshOptions, Person, Targets};

fn people() -> usize {
    std::env::var("JML_INGEST_E2E_PEOPLE").ok().and_then(|n| n.parse().ok()).unwrap_or(10)
}

/// A roster as the HR system exports it (CSV with a header row).
fn roster(people: &[Person]) -> String {
    let mut csv = String::from(
        "person_id,employment_status,username,display_name,email,department,title,location,employment_type\n",
    );
    for p in people {
        let _ = writeln!(
            csv,
            "{},active,{},{},{},{},{},London,employee",
            p.person_id, p.username, p.display_name, p.email, p.department, p.title
        );
    }
    csv
}

async fn import(mesh: &Mesh, dir: &std::path::Path, name: &str, people: &[Person]) -> (i32, serde_json::Value, String) {
    let file = dir.join(name);
    std::fs::write(&file, roster(people)).expect("write roster");
    let output = mesh
        .jmlctl_as(
            "hr-integration",
            &["import", "--file", file.to_str().expect("path"), "--source", "workday", "--full", "--json"],
        )
        .await
        .expect("jmlctl import runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), summary, format!("{stdout}{stderr}"))
}

fn event_ids(summary: &serde_json::Value) -> Vec<String> {
    summary["receipts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["outcome"] == "derived")
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rosters_drive_the_real_targets_and_a_mass_leaver_roster_waits_for_approval() {
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("ing", MeshOptions::default()).await.expect("the mesh starts");
    // The guard: at most 20% of the active people leave in one batch.
    let policy = std::fs::read_to_string(mesh.policy_path()).expect("policy");
    let guarded = policy.replace(
        "  attributes: [username, display_name, email, department, title, location, employment_type]\n",
        "  attributes: [username, display_name, email, department, title, location, employment_type]\n  max_leavers: \"20%\"\n",
    );
    assert_ne!(policy, guarded, "the quickstart policy's source_of_truth changed shape");
    std::fs::write(mesh.policy_path(), guarded).expect("policy");
    mesh.stop_coordinator().await.expect("stop");
    mesh.start_coordinator().await.expect("restart with the guard");
    let dir = mesh.dir.clone();
    let within = Duration::from_secs(300);
    let n = people();
    let mut staff: Vec<Person> = (0..n).map(|i| Person::new(&mesh.run_id, i, "Sales")).collect();

    // A roster with a column the source of truth is not authoritative for:
    // refused whole, the line named, nothing submitted.
    let bad = dir.join("roster-0.csv");
    std::fs::write(
        &bad,
        roster(&staff)
            .replacen("employment_type\n", "employment_type,shoe_size\n", 1)
            .replace(",employee\n", ",employee,42\n"),
    )
    .expect("write");
    let refused = mesh
        .jmlctl_as("hr-integration", &["import", "--file", bad.to_str().expect("path"), "--source", "workday"])
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("shoe_size") && stderr.contains("nothing submitted"),
        "{stderr}"
    );
    assert!(targets.ldap.account(&staff[0].username).await.expect("ldap").is_none(), "nothing applied");

    // People employed before the mesh, recorded as a baseline by an admin
    // (`import --baseline`): nothing is provisioned for them, and the first
    // roster that names them derives nothing for them.
    let existing: Vec<Person> = (0..2).map(|i| Person::new(&mesh.run_id, 1000 + i, "Sales")).collect();
    let before = dir.join("roster-0-baseline.csv");
    std::fs::write(&before, roster(&existing)).expect("write");
    let recorded = mesh
        .jmlctl_as(
            "ops-admin",
            &["import", "--file", before.to_str().expect("path"), "--source", "workday", "--baseline", "--json"],
        )
        .await
        .expect("runs");
    assert!(recorded.status.success(), "{recorded:?}");
    let recorded: serde_json::Value = serde_json::from_slice(&recorded.stdout).expect("json");
    assert_eq!((recorded["employed"].as_u64(), recorded["loaded"].as_u64()), (Some(2), Some(2)), "{recorded}");
    for p in &existing {
        assert!(targets.ldap.account(&p.username).await.expect("ldap").is_none(), "a baseline provisions nothing");
    }
    let with_existing = |staff: &[Person]| [staff, existing.as_slice()].concat();

    // First roster: everyone joins, except the people of the baseline.
    let (code, summary, output) = import(&mesh, &dir, "roster-1.csv", &with_existing(&staff)).await;
    assert_eq!(code, 0, "{output}");
    assert_eq!(summary["counts"]["joiners"], n as u64, "{output}");
    assert_eq!(summary["counts"]["unchanged"], 2, "the baseline's people: {output}");
    for p in &existing {
        assert!(targets.ldap.account(&p.username).await.expect("ldap").is_none(), "{output}");
    }
    mesh.wait_finished(&event_ids(&summary), within).await.expect("joiners finish");
    for p in &staff {
        let ldap = targets.ldap.account(&p.username).await.expect("ldap").expect("LDAP account");
        assert!(!ldap.locked);
        assert!(ldap.groups.contains("sales"), "{ldap:?}");
    }

    // Second roster: one mover (display name), one joiner, one leaver.
    staff[0].display_name = format!("Renamed {}", staff[0].username);
    let gone = staff.remove(1);
    staff.push(Person::new(&mesh.run_id, n, "Sales"));
    let (code, summary, output) = import(&mesh, &dir, "roster-2.csv", &with_existing(&staff)).await;
    assert_eq!(code, 0, "{output}");
    let counts = &summary["counts"];
    assert_eq!(
        (counts["joiners"].as_u64(), counts["movers"].as_u64(), counts["leavers"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{output}"
    );
    mesh.wait_finished(&event_ids(&summary), within).await.expect("second roster finishes");
    let renamed = targets.ldap.account(&staff[0].username).await.expect("ldap").expect("account");
    assert_eq!(renamed.display_name.as_deref(), Some(staff[0].display_name.as_str()));
    let left = targets.ldap.account(&gone.username).await.expect("ldap").expect("kept, locked");
    assert!(left.locked, "{left:?}");
    assert!(left.groups.is_empty(), "{left:?}");
    let scim = targets.scim.account(&gone.email).await.expect("scim").expect("SCIM user");
    assert!(!scim.active, "{scim:?}");
    let iam = targets.iam.account(&gone.username).await.expect("iam");
    assert!(iam.as_ref().is_none_or(|a| a.groups.is_empty() && a.disabled_tag), "{iam:?}");
    let new = staff.last().expect("joiner");
    assert!(targets.ldap.account(&new.username).await.expect("ldap").is_some_and(|a| !a.locked));

    // Third roster: 30% missing. Held whole: nothing changes on any target.
    let keep = staff.len() - (staff.len() * 3).div_ceil(10);
    let missing: Vec<Person> = staff[keep..].to_vec();
    let (code, summary, output) = import(&mesh, &dir, "roster-3.csv", &with_existing(&staff[..keep])).await;
    assert_eq!(code, 6, "held exits 6: {output}");
    let batch_id = summary["held"]["batch_id"].as_str().expect("held batch id").to_owned();
    for p in &missing {
        let ldap = targets.ldap.account(&p.username).await.expect("ldap").expect("account");
        assert!(!ldap.locked, "{} locked while the batch is held", p.username);
    }
    let listed = mesh.jmlctl(&["held", "list", "--json"]).await.expect("held list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&batch_id), "{listed:?}");

    // The submitter may not approve its own batch; an admin may.
    let own = mesh.jmlctl_as("hr-integration", &["held", "approve", &batch_id]).await.expect("runs");
    assert_eq!(own.status.code(), Some(1), "{own:?}");
    let approved = mesh
        .jmlctl_as("ops-admin", &["held", "approve", &batch_id, "--comment", "reorg confirmed", "--json"])
        .await
        .expect("runs");
    assert!(approved.status.success(), "{approved:?}");
    let decided: serde_json::Value = serde_json::from_slice(&approved.stdout).expect("json");
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["applied"]["leavers"], missing.len() as u64);
    let ids: Vec<String> = decided["applied"]["event_ids"]
        .as_array()
        .expect("event ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    mesh.wait_finished(&ids, within).await.expect("approved leavers finish");
    for p in &missing {
        let ldap = targets.ldap.account(&p.username).await.expect("ldap").expect("account");
        assert!(ldap.locked, "{} not locked after approval", p.username);
    }
    mesh.verify_audit().await.expect("audit chain intact");
}
