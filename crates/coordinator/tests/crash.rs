//! The real `coordinator` binary killed with SIGKILL in the middle of
//! propagating a few hundred events, then restarted on the same database:
//! every event ends verified, no account is created twice on any target
//! (the connectors journal every change), and the audit chain is intact.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use connector_kit::contract as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use support::*;

const EVENTS: usize = 300;

fn start_coordinator(policy: &std::path::Path, db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--policy", &policy.display().to_string(), "--db", &db.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--base-backoff-ms", "20"])
        .args(["--insecure-plaintext", "--insecure-no-auth"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("coordinator starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    let addr = line.trim().strip_prefix("listening on ").expect("listening line").to_owned();
    (child, format!("http://{addr}"))
}

fn journal_lines(dir: &std::path::Path) -> Vec<String> {
    TARGETS
        .iter()
        .flat_map(|id| {
            std::fs::read_to_string(dir.join(format!("{id}.journal")))
                .unwrap_or_default()
                .lines()
                .map(|line| format!("{id}\t{line}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_propagation_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = targets(Some(dir.path())).await;
    for target in &targets {
        // One slow target (aws: ~4 s for all 300 at concurrency 4) keeps work
        // in flight when the kill comes, however late the test observes it.
        let latency = Duration::from_millis(if target.id == "aws" { 50 } else { 3 });
        target.store.set_faults(connector_memory::Faults { apply_latency: latency, ..Default::default() });
    }
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml(&targets, 4)).expect("policy");
    let db = dir.path().join("mesh.db");

    let (mut first, endpoint) = start_coordinator(&policy, &db);
    let mut client = LifecycleClient::connect(endpoint).await.expect("client");
    let events: Vec<pb::LifecycleEvent> = (0..EVENTS)
        .map(|i| {
            let name = format!("k{i:04}");
            let department = if i % 2 == 0 { "Engineering" } else { "Sales" };
            event(&format!("crash-{i}"), pb::EventKind::Joiner, &name, person(&name, department), "")
        })
        .collect();
    for event in &events {
        submit(&mut client, event.clone()).await;
    }
    // Kill once propagation is under way but far from done.
    let wait = async {
        while journal_lines(dir.path()).len() < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait).await.expect("propagation starts");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let before_restart = journal_lines(dir.path()).len();

    let (mut second, endpoint) = start_coordinator(&policy, &db);
    let mut client = LifecycleClient::connect(endpoint).await.expect("client");
    // Submitting again is harmless: duplicates return the first receipt.
    for event in &events {
        let receipt = submit(&mut client, event.clone()).await;
        assert!(receipt.duplicate);
    }
    for event in &events {
        let status = until_terminal(&mut client, &event.event_id).await;
        assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    }
    let verdict = client.verify_audit(pb::VerifyAuditRequest {}).await.expect("verify").into_inner();
    assert!(verdict.intact, "{verdict:?}");
    let _ = second.kill();
    let _ = second.wait();

    let journal = journal_lines(dir.path());
    assert!(journal.len() > before_restart, "the restarted coordinator finished the work");
    let mut creates: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut adds: BTreeMap<String, usize> = BTreeMap::new();
    for line in &journal {
        let fields: Vec<&str> = line.split('\t').collect();
        let (target, account, action, subject) = (fields[0], fields[2], fields[3], fields[4]);
        if action == "create" {
            *creates.entry((target.to_owned(), account.to_owned())).or_default() += 1;
        }
        if action == "add_entitlement" {
            *adds.entry(format!("{target}/{account}/{subject}")).or_default() += 1;
        }
    }
    // ldap, scim and aws for everyone; never twice.
    assert_eq!(creates.len(), EVENTS * 3);
    assert!(creates.values().all(|count| *count == 1), "an account was created twice");
    assert!(adds.values().all(|count| *count == 1), "an entitlement was granted twice");
    for target in &targets {
        if target.id != "vault" {
            assert_eq!(target.store.len(), EVENTS, "{} holds every account", target.id);
        }
    }
}
