//! `jmlctl` as a script sees it: exit codes and one-line errors, offline
//! commands (`policy check`, `audit verify --db`) on real files.

use std::process::Command;
use std::sync::Arc;

use coordinator::policy::EventKindName;
use coordinator::store::{AuditEntry, EventRecord, EventState, Store};

fn jmlctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jmlctl")).args(args).output().expect("jmlctl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn policy_check_names_every_error_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        r#"
version: 1
source_of_truth: { system: workday, attributes: [username, department] }
targets:
  - { id: ldap, endpoint: "http://127.0.0.1:1", account_name: "{user}", insecure_plaintext: true, deadline: soon }
workflows:
  - name: a
    owner: it@example.org
    trigger: { events: [joiner] }
    grants: { ldap: [ { kind: group, id: staff } ] }
  - name: b
    owner: it@example.org
    trigger: { events: [joiner], when: { shoe_size: "9" } }
  - name: c
    owner: ""
    trigger: { events: [joiner] }
    grants: { vault: [ { kind: policy, id: root, privileged: true } ] }
"#,
    )
    .expect("write");
    let (code, stdout, stderr) = jmlctl(&["policy", "check", &file.display().to_string()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for expected in [
        "targets[0].account_name: placeholder {user} names no attribute",
        "targets[0].deadline:",
        "workflows[1].trigger.when.shoe_size:",
        "workflows[2].owner:",
        "workflows[2].grants.vault[0]: unknown target \"vault\"",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");

    let (code, stdout, _) = jmlctl(&["policy", "check", "--json", &file.display().to_string()]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["valid"], false);
    assert!(report["errors"].as_array().is_some_and(|e| e.len() >= 5));
}

#[test]
fn the_example_policy_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples/policy.yaml");
    let (code, stdout, stderr) = jmlctl(&["policy", "check", example]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("valid (4 targets"));
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_coordinator_exits_3() {
    let (code, _, _) = jmlctl(&["frobnicate"]);
    assert_eq!(code, 2);
    let (code, _, stderr) = jmlctl(&["submit", "--kind", "sideways"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("kind"));
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let (code, _, stderr) = jmlctl(&["--coordinator", &format!("http://{addr}"), "status", "e1"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.starts_with("jmlctl: coordinator unreachable"));
    assert_eq!(stderr.lines().count(), 1);
}

/// Five accepted events, one audit record each.
async fn five_audited_events(store: &dyn Store) {
    for i in 0..5 {
        let event = EventRecord {
            seq: 0,
            event_id: format!("e{i}"),
            kind: EventKindName::Joiner,
            person_id: format!("p{i}"),
            attributes: Default::default(),
            effective_at: 0,
            source_system: "workday".into(),
            initiator: "hr-bot".into(),
            urgent: false,
            received_at: 0,
            policy_hash: "p".into(),
            plan: Default::default(),
            plan_hash: "h".into(),
            trace_id: "t".into(),
            state: EventState::Verified,
            finished_at: None,
        };
        let audit = AuditEntry {
            at: i,
            principal: "hr-bot".into(),
            event_id: format!("e{i}"),
            action: "event.accepted".into(),
            payload: serde_json::json!({ "n": i }),
        };
        store.insert_event(event, Vec::new(), vec![audit]).await.expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_offline_names_the_record_edited_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    let store = Arc::new(coordinator::SqliteStore::open(&db).await.expect("store"));
    five_audited_events(store.as_ref()).await;
    let path = db.display().to_string();
    let (code, stdout, stderr) = jmlctl(&["audit", "verify", "--db", &path]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact: 5 records"));

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await.expect("open");
    sqlx::query("UPDATE audit SET principal = 'mallory' WHERE seq = 4").execute(&pool).await.expect("tamper");
    let (code, _, stderr) = jmlctl(&["audit", "verify", "--db", &path]);
    assert_eq!(code, 1);
    assert!(stderr.contains("broken at record 4"), "{stderr}");
    let (code, stdout, _) = jmlctl(&["audit", "verify", "--db", &path, "--json"]);
    assert_eq!(code, 1);
    let verdict: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(verdict["first_broken_seq"], 4);
    assert_eq!(verdict["records"], 3);
    let (code, _, stderr) = jmlctl(&["audit", "verify", "--db", &format!("{path}.missing")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such file"), "{stderr}");
}

/// The same offline check on a real PostgreSQL database, the URL (with its
/// password) given in JML_DB and never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_offline_reads_a_postgresql_chain() {
    use sqlx::Executor;
    use std::str::FromStr;
    let url = std::env::var("JML_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "JML_TEST_POSTGRES_URL is not set: run `deploy/local/postgresql.sh start RUN_DIR` and \
             `source RUN_DIR/postgresql.env` (or run .ci/run)"
        )
    });
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("a postgres:// URL");
    let admin = sqlx::PgPool::connect_with(options).await.expect("connect");
    let name = format!("jml_cli_{}", std::process::id());
    admin.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.expect("drop");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a test database");
    let database_url = format!("{}/{name}", url.rsplit_once('/').expect("URL with a database").0);
    let store = Arc::new(coordinator::PostgresStore::open(&database_url).await.expect("store"));
    five_audited_events(store.as_ref()).await;
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_jmlctl"))
            .args(["audit", "verify"])
            .args(extra)
            .env("JML_DB", &database_url)
            .output()
            .expect("jmlctl runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact: 5 records"), "{stdout}");
    sqlx::query("UPDATE audit SET payload = '{\"n\":99}' WHERE seq = 2").execute(store.pool()).await.expect("tamper");
    let (code, stdout, stderr) = run(&["--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(verdict["first_broken_seq"], 2);
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("the test URL carries a password");
    assert!(!stdout.contains(&password) && !stderr.contains(&password), "the password was printed");
}

/// A coordinator that takes the request and dies before answering (the
/// connection is cut): the outcome is unknown, exit 5, never "failed" (1) nor
/// "unreachable" (3); the message says to retry with the same id.
#[test]
fn a_submit_cut_off_after_sending_exits_5_outcome_unknown() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        // Read until the request's body (the event id is in the DATA frame).
        while !seen.windows(5).any(|w| w == b"cut-1") {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
        drop(socket);
        seen.windows(5).any(|w| w == b"cut-1")
    });
    let (code, stdout, stderr) = jmlctl(&[
        "--coordinator",
        &format!("http://{address}"),
        "submit",
        "--event-id",
        "cut-1",
        "--kind",
        "joiner",
        "--person",
        "P1",
        "--source",
        "workday",
    ]);
    assert!(server.join().expect("server thread"), "the request reached the coordinator");
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(stderr.contains("outcome unknown") && stderr.contains("retry"), "{stderr}");
}
