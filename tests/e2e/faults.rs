//! Faults, each bounded in time and checked on the real targets:
//!
//! - the coordinator SIGKILLed in the middle of 500 events (joiners, then
//!   movers) across the four targets, then restarted: every event verified, no
//!   duplicate account or membership on any target, each person's access on
//!   each target what their last event grants, the audit chain intact;
//! - a target server (slapd) stopped for a while mid-run, then restarted: its
//!   tasks retry with backoff while the other targets' tasks verify on their
//!   first attempt, before slapd returns and within their deadline (not
//!   slowed); everything converges; deadline breaches are recorded exactly for
//!   what was late, and `jmlctl overdue` lists exactly those tasks;
//! - a connector process SIGKILLed and restarted: the same;
//! - a target that accepts the write but shows something else on read-back:
//!   slapd's ACL gives the connector's service account the write privilege on
//!   `displayName` without read, so every write is accepted and every
//!   read-back lacks the value (deterministic, on the real server): the task
//!   is never verified and the evidence records the difference.
//!
//! The tests share slapd with each other, so they run one at a time (one lock).
//!
//! `JML_E2E_CRASH_EVENTS` (default 500, the size) and
//! `JML_E2E_CRASH_PEOPLE` (default 60) set the size of the crash run: that
//! many joiners, then movers of the same people. Movers, not 500 joiners:
//! every Vault joiner creates a userpass login with a random password and
//! RustyVault 0.2.1 spends 0.3-1.8 s of CPU hashing each one on the 2-core CI
//! machine, while a mover only changes the login's policies.

use std::collections::BTreeMap;
use std::time::Duration;

use jml_contract::v1 as pb;
use mesh_e2e::mesh::{TARGET_IDS, millis, state_name, task};
use mesh_e2e::{Mesh, MeshOptions, Person, Targets};
use mesh_harness::target_env;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restarts the shared slapd when dropped, so a failing test never leaves it
/// stopped for the tests after it.
struct SlapdRestart {
    script: String,
    run_dir: String,
    armed: bool,
}

impl Drop for SlapdRestart {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::process::Command::new("bash").args([&self.script, "restart", &self.run_dir]).status();
        }
    }
}

/// Submits a joiner for each person; returns the event ids.
async fn submit_joiners(mesh: &Mesh, persons: &[Person]) -> Vec<String> {
    let ids: Vec<String> = persons.iter().map(|p| format!("{}-joiner", p.username)).collect();
    let events = persons.iter().zip(&ids).map(|(p, id)| p.event(id, pb::EventKind::Joiner)).collect();
    mesh.submit_all(events).await.expect("joiners accepted");
    ids
}

fn sales_people(mesh: &Mesh, count: usize) -> Vec<Person> {
    (0..count).map(|n| Person::new(&mesh.run_id, n, "Sales")).collect()
}

/// How many of the events are verified now.
async fn verified_count(mesh: &Mesh, ids: &[String]) -> usize {
    let Ok(mut client) = mesh.client().await else { return 0 };
    let mut verified = 0;
    for id in ids {
        let request = pb::GetEventRequest { event_id: id.clone() };
        if client.get_event(request).await.is_ok_and(|s| s.into_inner().state == pb::EventState::Verified as i32) {
            verified += 1;
        }
    }
    verified
}

fn assert_all_verified(statuses: &BTreeMap<String, pb::EventStatus>) {
    for status in statuses.values() {
        for target in TARGET_IDS {
            let task = task(status, target);
            assert_eq!(
                task.state,
                pb::TaskState::Verified as i32,
                "event {} on {target}: {} after {} attempt(s): {} {:?}",
                status.event_id,
                state_name(task.state),
                task.attempts,
                task.last_error,
                task.differences
            );
        }
    }
}

/// A breach is recorded exactly for the tasks that finished after their deadline.
fn assert_breaches_match_lateness(statuses: &BTreeMap<String, pb::EventStatus>) {
    for status in statuses.values() {
        for task in &status.tasks {
            let finished = millis(&task.finished_at).expect("a finished task has finished_at");
            let late = finished > millis(&task.deadline_at).expect("every task has a deadline");
            assert_eq!(
                task.deadline_breached, late,
                "event {} on {}: finished {} deadline {} breached {}",
                status.event_id, task.target_id, task.finished_at, task.deadline_at, task.deadline_breached
            );
        }
    }
}

/// Now, in Unix milliseconds (the lifecycle API's times are compared in these).
fn unix_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds fit")
}

/// `jmlctl overdue --json`: the (event, target) pairs listed as past their deadline.
async fn overdue_tasks(mesh: &Mesh) -> std::collections::BTreeSet<(String, String)> {
    let output = mesh.jmlctl(&["overdue", "--json"]).await.expect("jmlctl overdue");
    assert!(output.status.success(), "jmlctl overdue: {}", String::from_utf8_lossy(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("jmlctl overdue --json is JSON");
    listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|t| {
            let field = |name: &str| t[name].as_str().unwrap_or_else(|| panic!("no {name} in {t}")).to_owned();
            (field("event_id"), field("target_id"))
        })
        .collect()
}

/// No duplicate account or membership for the run's people on any target.
async fn assert_no_duplicates(targets: &Targets, mesh: &Mesh, persons: &[Person]) {
    let ldap = targets.ldap.uid_counts(&mesh.run_id).await.expect("ldap listing");
    let scim = targets.scim.user_name_counts(&mesh.run_id).await.expect("scim listing");
    let iam = targets.iam.user_name_counts(&mesh.iam_user_path).await.expect("iam listing");
    let vault = targets.vault.users().await.expect("vault listing");
    for person in persons {
        assert_eq!(ldap.get(&person.username), Some(&1), "LDAP entries for {}", person.username);
        assert_eq!(scim.get(&person.email), Some(&1), "SCIM users for {}", person.email);
        assert_eq!(iam.get(&person.username), Some(&1), "IAM users for {}", person.username);
        assert_eq!(vault.iter().filter(|u| **u == person.username).count(), 1, "Vault logins for {}", person.username);
    }
    for group in ["staff", "sales", "engineering"] {
        assert_eq!(targets.ldap.duplicate_members(group).await.expect("ldap group"), Vec::<String>::new());
        assert_eq!(targets.scim.duplicate_members(group).await.expect("scim group"), Vec::<String>::new());
        assert_eq!(targets.iam.duplicate_members(group).await.expect("iam group"), Vec::<String>::new());
    }
}

/// The department of a person after `round` rounds of the crash run: joiners
/// start in Sales, each mover round alternates Engineering and Sales.
fn department_after(round: usize) -> &'static str {
    if round % 2 == 1 { "Engineering" } else { "Sales" }
}

/// Approves an event's privileged Vault grant (`pam-ops`, one security
/// approver) as soon as the task awaits approval.
async fn approve_vault(mesh: &Mesh, event_id: &str) {
    let mut last_error = String::new();
    for _ in 0..300 {
        match mesh.approve(event_id, "vault", "alice").await {
            Ok(()) => return,
            Err(e) => last_error = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Vault grant of {event_id} could not be approved: {last_error}");
}

/// Each person's access on each target is what their last department grants:
/// Sales holds `sales` (LDAP, SCIM, IAM) and `pam-read` (Vault), Engineering
/// holds `engineering` and `pam-ops`, never both; everyone holds `staff`.
async fn assert_access_matches(targets: &Targets, persons: &[Person], department: &BTreeMap<String, &str>) {
    for person in persons {
        let sales = department[&person.username] == "Sales";
        let ldap = targets.ldap.account(&person.username).await.expect("ldap").expect("LDAP account");
        let scim = targets.scim.account(&person.email).await.expect("scim").expect("SCIM user");
        let iam = targets.iam.account(&person.username).await.expect("iam").expect("IAM user");
        let vault = targets.vault.user(&person.username).await.expect("vault").expect("Vault login");
        for (target, groups) in [("ldap", &ldap.groups), ("scim", &scim.groups), ("aws", &iam.groups)] {
            assert!(groups.contains("staff"), "{target}: {} lost staff: {groups:?}", person.username);
            assert_eq!(groups.contains("sales"), sales, "{target}: {} sales membership: {groups:?}", person.username);
            assert_eq!(groups.contains("engineering"), !sales, "{target}: {} engineering: {groups:?}", person.username);
        }
        assert_eq!(vault.contains("pam-read"), sales, "vault: {} policies {vault:?}", person.username);
        assert_eq!(vault.contains("pam-ops"), !sales, "vault: {} policies {vault:?}", person.username);
    }
}

/// The 500 events across the four targets: `people` joiners (default
/// 60), then movers of the same people in rounds, one event per person per
/// round, alternating Engineering and Sales, so every mover changes
/// entitlements on all four targets (LDAP/SCIM/IAM `sales` or `engineering`,
/// Vault `pam-read` or the privileged `pam-ops`, approved by a security
/// approver as the policy requires) without creating Vault logins (RustyVault hashes each new login's password for
/// 0.3-1.8 s of CPU). A round is submitted when the previous one has finished,
/// so no event supersedes another and every one must verify. The coordinator
/// is SIGKILLed in the round holding the middle event, with that round partly
/// verified, and restarted on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_killed_mid_run_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().await;
    let count: usize = std::env::var("JML_E2E_CRASH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let people: usize = std::env::var("JML_E2E_CRASH_PEOPLE").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let people = people.clamp(1, count.max(1));
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mut mesh = Mesh::start("crash", MeshOptions::default()).await.expect("the mesh starts");
    let mut persons = sales_people(&mesh, people);
    let mut department: BTreeMap<String, &str> = BTreeMap::new();
    let mut all_ids = Vec::with_capacity(count);
    let mut killed_with = None;
    let started = std::time::Instant::now();
    let mut round = 0;
    while all_ids.len() < count {
        let in_round = people.min(count - all_ids.len());
        let mut ids = Vec::with_capacity(in_round);
        let mut events = Vec::with_capacity(in_round);
        for person in &mut persons[..in_round] {
            let (id, kind) = if round == 0 {
                (format!("{}-joiner", person.username), pb::EventKind::Joiner)
            } else {
                (format!("{}-mover{round}", person.username), pb::EventKind::Mover)
            };
            person.department = department_after(round).into();
            department.insert(person.username.clone(), department_after(round));
            events.push(person.event(&id, kind));
            ids.push(id);
        }
        mesh.submit_all(events).await.expect("events accepted");
        if department_after(round) == "Engineering" {
            for id in &ids {
                approve_vault(&mesh, id).await;
            }
        }
        let holds_middle = killed_with.is_none() && all_ids.len() + in_round > count / 2;
        all_ids.extend(ids.iter().cloned());
        let mut killed_at_ms = None;
        if holds_middle {
            // Kill it the moment the round's first event verifies: the round
            // is under way, most of it still in flight.
            let mut client = mesh.client().await.expect("a client of the coordinator");
            let first = pb::GetEventRequest { event_id: ids[0].clone() };
            let deadline = std::time::Instant::now() + Duration::from_secs(600);
            loop {
                let status = client.get_event(first.clone()).await.expect("status").into_inner();
                if status.state == pb::EventState::Verified as i32 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{} never verified: {status:?}", first.event_id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            killed_at_ms = Some(unix_millis());
            mesh.kill_coordinator().await.expect("SIGKILL");
            mesh.start_coordinator().await.expect("the coordinator restarts on the same database");
        }
        let statuses = mesh.wait_finished(&ids, Duration::from_secs(900)).await.expect("the round finishes");
        assert_all_verified(&statuses);
        if let Some(killed_at_ms) = killed_at_ms {
            // The tasks' own finish times say how far the round had got.
            let done_before = statuses
                .values()
                .filter(|s| s.tasks.iter().all(|t| millis(&t.finished_at).is_some_and(|at| at <= killed_at_ms)))
                .count();
            eprintln!(
                "coordinator killed in round {round} with {done_before} of its {in_round} events finished, {} of {count} submitted",
                all_ids.len()
            );
            assert!(done_before < in_round, "the kill came after the round ended");
            killed_with = Some(done_before);
        }
        eprintln!("round {round}: {in_round} events verified, {:?} since the start", started.elapsed());
        round += 1;
    }
    assert!(killed_with.is_some(), "the coordinator was killed mid-run");
    let statuses = mesh.wait_finished(&all_ids, Duration::from_secs(120)).await.expect("every event finished");
    assert_eq!(statuses.len(), count);
    assert_all_verified(&statuses);
    assert_no_duplicates(&targets, &mesh, &persons).await;
    assert_access_matches(&targets, &persons, &department).await;
    mesh.verify_audit().await.expect("the audit chain is intact");
    eprintln!("{count} events ({people} people) in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_down_for_a_while_retries_late_and_converges() {
    let _serial = SERIAL.lock().await;
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let slapd_script = target_env("slapd", "JML_TEST_SLAPD_SCRIPT");
    let slapd_run_dir = target_env("slapd", "JML_TEST_SLAPD_RUN_DIR");
    // LDAP's deadline is short, and slapd stays down until every LDAP task is
    // recorded past it (the test waits for the breach, not for a time); the
    // other targets' deadline is an hour, so on however busy a machine they
    // meet it, as asserted, without a race against a wall-clock window.
    let options = MeshOptions { deadline: "1h".into(), max_attempts: 30, base_backoff_ms: 100 };
    let mesh = Mesh::start_with_deadlines("down", options, &[("ldap", "2s")]).await.expect("the mesh starts");
    let persons = sales_people(&mesh, 12);
    // The run starts with every target up...
    let first = submit_joiners(&mesh, &persons[..6]).await;
    let statuses = mesh.wait_finished(&first, Duration::from_secs(300)).await.expect("the first half finishes");
    assert_all_verified(&statuses);

    // ...then slapd goes away mid-run.
    let mut restart_guard = SlapdRestart { script: slapd_script.clone(), run_dir: slapd_run_dir.clone(), armed: true };
    let stopped = tokio::process::Command::new("bash").args([&slapd_script, "stop", &slapd_run_dir]).status().await;
    assert!(stopped.is_ok_and(|s| s.success()), "slapd stops");
    let ids = submit_joiners(&mesh, &persons[6..]).await;
    // While slapd is down, the other targets verify and LDAP retries.
    let others_verified = || async {
        for id in &ids {
            let Ok(status) = mesh.status(id).await else { return false };
            if ["scim", "vault", "aws"].iter().any(|t| task(&status, t).state != pb::TaskState::Verified as i32) {
                return false;
            }
        }
        true
    };
    mesh_harness::assert_eventually!(
        others_verified().await,
        Duration::from_secs(300),
        "the other targets did not verify while LDAP was down"
    );
    // Keep it down until the LDAP tasks are past their deadline and recorded as breached.
    let ldap_breached = || async {
        for id in &ids {
            let Ok(status) = mesh.status(id).await else { return false };
            if !task(&status, "ldap").deadline_breached {
                return false;
            }
        }
        true
    };
    mesh_harness::assert_eventually!(
        ldap_breached().await,
        Duration::from_secs(180),
        "no LDAP deadline breach recorded"
    );
    for id in &ids {
        // The deadline (2 s) may pass before the first retry: wait for it.
        mesh_harness::assert_eventually!(
            mesh.status(id).await.is_ok_and(|status| task(&status, "ldap").attempts >= 2),
            Duration::from_secs(180),
            "the LDAP task is retried while slapd is down"
        );
        let status = mesh.status(id).await.expect("status");
        let ldap = task(&status, "ldap");
        assert_ne!(ldap.state, pb::TaskState::Verified as i32, "verified on a stopped slapd: {ldap:?}");
    }
    // What is late is listed as overdue while it is late: every LDAP task of
    // the down period, and none of the other targets' tasks, which met their
    // deadline.
    let late = overdue_tasks(&mesh).await;
    for id in &ids {
        assert!(late.contains(&(id.clone(), "ldap".to_string())), "{id} on ldap is not listed overdue: {late:?}");
    }
    let run_ids: Vec<&String> = first.iter().chain(&ids).collect();
    let others_late: Vec<_> = late.iter().filter(|(e, t)| run_ids.contains(&e) && t != "ldap").collect();
    assert!(others_late.is_empty(), "other targets were late while LDAP was down: {others_late:?}");
    let restarted_at_ms = unix_millis();
    let restarted =
        tokio::process::Command::new("bash").args([&slapd_script, "restart", &slapd_run_dir]).status().await;
    assert!(restarted.is_ok_and(|s| s.success()), "slapd restarts with its data and ports");
    restart_guard.armed = false;

    let statuses = mesh.wait_finished(&ids, Duration::from_secs(300)).await.expect("every event finishes");
    assert_all_verified(&statuses);
    for status in statuses.values() {
        assert!(task(status, "ldap").deadline_breached, "late LDAP tasks are recorded as breached");
        // The other targets were not slowed: each verified on its first
        // attempt, before slapd came back, within its deadline.
        for target in ["scim", "vault", "aws"] {
            let other = task(status, target);
            assert_eq!(other.attempts, 1, "{target} needed a retry while only LDAP was down: {other:?}");
            let finished = millis(&other.finished_at).expect("finished");
            assert!(finished < restarted_at_ms, "{target} waited for slapd: {other:?}");
            assert!(!other.deadline_breached, "{target} was late while only LDAP was down: {other:?}");
        }
    }
    let all: Vec<String> = first.iter().chain(&ids).cloned().collect();
    let statuses = mesh.wait_finished(&all, Duration::from_secs(60)).await.expect("every event finished");
    assert_breaches_match_lateness(&statuses);
    // After convergence the listing still names exactly the tasks that finished late.
    let late = overdue_tasks(&mesh).await;
    for status in statuses.values() {
        for task in &status.tasks {
            let listed = late.contains(&(status.event_id.clone(), task.target_id.clone()));
            assert_eq!(listed, task.deadline_breached, "overdue listing vs breach for {task:?}");
        }
    }
    assert_no_duplicates(&targets, &mesh, &persons).await;
    mesh.verify_audit().await.expect("the audit chain is intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_killed_and_restarted_converges() {
    let _serial = SERIAL.lock().await;
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let options = MeshOptions { deadline: "5m".into(), max_attempts: 30, base_backoff_ms: 200 };
    let mut mesh = Mesh::start("conn", options).await.expect("the mesh starts");
    let persons = sales_people(&mesh, 20);
    let (before, after) = persons.split_at(10);
    let mut ids = submit_joiners(&mesh, before).await;
    // Kill the SCIM connector as soon as the run is under way, then submit
    // the second half: their SCIM tasks certainly meet the dead connector
    // (the first half's may all have finished, SCIM being faster than Vault).
    mesh_harness::assert_eventually!(
        verified_count(&mesh, &ids).await >= 1,
        Duration::from_secs(300),
        "nothing verified"
    );
    mesh.kill_connector("scim").await.expect("SIGKILL connector-scim");
    ids.extend(submit_joiners(&mesh, after).await);
    // Down until some SCIM task failed an attempt against the dead endpoint.
    let scim_retrying = || async {
        for id in &ids {
            if let Ok(status) = mesh.status(id).await {
                let scim = task(&status, "scim");
                if scim.state != pb::TaskState::Verified as i32 && !scim.last_error.is_empty() {
                    return true;
                }
            }
        }
        false
    };
    mesh_harness::assert_eventually!(
        scim_retrying().await,
        Duration::from_secs(300),
        "no SCIM task noticed the connector was gone"
    );
    mesh.start_connector("scim").await.expect("connector-scim restarts on its port");
    let statuses = mesh.wait_finished(&ids, Duration::from_secs(600)).await.expect("every event finishes");
    assert_all_verified(&statuses);
    assert_breaches_match_lateness(&statuses);
    assert!(
        statuses.values().any(|s| task(s, "scim").attempts >= 2),
        "some SCIM task needed a retry after the connector died"
    );
    assert_no_duplicates(&targets, &mesh, &persons).await;
    mesh.verify_audit().await.expect("the audit chain is intact");
}

/// Points the mesh's LDAP connector at slapd's write-without-read service
/// account and its subtree (`deploy/local/slapd.sh`), restarting it on the
/// same port: from then on slapd accepts the connector's `displayName` writes
/// and never shows it the value.
async fn bind_ldap_connector_write_only(mesh: &mut Mesh) {
    let path = mesh.dir.join("connector-ldap.yaml");
    let config = std::fs::read_to_string(&path).expect("the rendered connector-ldap.yaml");
    let bind_dn = target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_BIND_DN");
    let password_file = target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_PASSWORD_FILE");
    let users_dn = target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_USERS_DN");
    let mut replaced = 0;
    let config: Vec<String> = config
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let new = if trimmed.starts_with("bind_dn:") {
                format!("bind_dn: {bind_dn}")
            } else if trimmed.starts_with("users_base_dn:") {
                format!("users_base_dn: {users_dn}")
            } else if trimmed.starts_with("file:") && indent == "  " {
                format!("file: {password_file}")
            } else {
                return line.to_owned();
            };
            replaced += 1;
            format!("{indent}{new}")
        })
        .collect();
    assert_eq!(replaced, 3, "bind_dn, bind_password.file and users_base_dn in {}", path.display());
    std::fs::write(&path, config.join("\n") + "\n").expect("rewriting connector-ldap.yaml");
    mesh.kill_connector("ldap").await.expect("stopping connector-ldap");
    mesh.start_connector("ldap").await.expect("connector-ldap restarts as the write-only service account");
}

/// slapd's ACL gives the connector's service account the write privilege on
/// `displayName` without read (`=w`, deploy/local/slapd.sh): every Apply is
/// accepted, every read-back shows no display name. Deterministic, on the
/// real server: the task must fail with the difference named, never verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_back_showing_something_else_is_never_verified() {
    let _serial = SERIAL.lock().await;
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let options = MeshOptions { deadline: "5m".into(), max_attempts: 3, base_backoff_ms: 100 };
    let mut mesh = Mesh::start("race", options).await.expect("the mesh starts");
    bind_ldap_connector_write_only(&mut mesh).await;
    let person = Person::new(&mesh.run_id, 0, "Sales");
    let joiner = format!("{}-joiner", person.username);
    mesh.submit(person.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    let statuses = mesh.wait_finished(std::slice::from_ref(&joiner), Duration::from_secs(300)).await.expect("joiner");
    let status = &statuses[&joiner];

    let ldap = task(status, "ldap");
    assert_eq!(ldap.state, pb::TaskState::Failed as i32, "never verified: {ldap:?}");
    assert_eq!(ldap.attempts, 3, "every attempt was applied, read back and compared: {ldap:?}");
    assert!(ldap.acknowledgement.is_some(), "slapd acknowledged the write: {ldap:?}");
    assert!(ldap.differences.iter().any(|d| d.contains("display_name")), "the difference is named: {ldap:?}");
    let read_back = ldap.read_back.as_ref().expect("a read-back is recorded");
    assert!(read_back.exists, "the account itself is read back: {read_back:?}");
    assert_ne!(
        read_back.attributes.get("display_name").map(String::as_str),
        Some(person.display_name.as_str()),
        "the read-back shows something else than what was written: {read_back:?}"
    );
    assert_eq!(status.state, pb::EventState::Failed as i32, "{status:?}");
    for target in ["scim", "vault", "aws"] {
        assert_eq!(task(status, target).state, pb::TaskState::Verified as i32, "{target} is unaffected");
    }

    // slapd did accept the write: its administrator sees the value the
    // connector wrote, under the write-only subtree...
    let account = targets.ldap.account(&person.username).await.expect("ldap").expect("the LDAP account exists");
    let users_dn = target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_USERS_DN");
    assert!(account.dn.to_lowercase().ends_with(&users_dn.to_lowercase()), "{account:?}");
    assert_eq!(account.display_name.as_deref(), Some(person.display_name.as_str()), "slapd holds the write");
    assert!(account.groups.contains("sales"), "the rest of the joiner was applied: {account:?}");
    // ...while the connector's own bind is never shown it.
    let service = mesh_e2e::targets::Ldap::bound_as(
        &target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_BIND_DN"),
        &target_env("slapd", "JML_TEST_SLAPD_WRITEONLY_PASSWORD_FILE"),
    )
    .expect("the service account's client");
    let seen = service.account(&person.username).await.expect("ldap").expect("the account is visible to it");
    assert_eq!(seen.display_name, None, "the service account cannot read displayName: {seen:?}");

    let evidence = mesh.evidence(&joiner).await.expect("evidence");
    let ldap_evidence = evidence["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target_id"] == "ldap"))
        .expect("ldap in the evidence")
        .clone();
    assert_eq!(ldap_evidence["state"], "failed", "{ldap_evidence}");
    assert!(ldap_evidence["acknowledgement"].is_object(), "the evidence has the acknowledgement: {ldap_evidence}");
    assert!(ldap_evidence["read_back"].is_object(), "the evidence has the read-back: {ldap_evidence}");
    assert!(
        ldap_evidence["differences"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d.as_str().is_some_and(|d| d.contains("display_name")))),
        "the evidence names the difference: {ldap_evidence}"
    );
    eprintln!("LDAP differences: {:?}", ldap.differences);
    mesh.verify_audit().await.expect("the audit chain is intact");
}
