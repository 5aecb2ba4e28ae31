//! No secret in any log, audit record or evidence: a whole-mesh run with
//! known secret values (the targets' admin password and token files, the
//! callers' bearer tokens, a bearer token that is refused), then every
//! process's stderr, the exported audit records and every event's evidence
//! are searched for each of them.

use std::time::Duration;

use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use mesh_e2e::mesh::task;
use mesh_e2e::{Mesh, MeshOptions, Person};

/// The secret values this run uses, read from the files the servers and the
/// mesh were given.
fn secrets(mesh: &Mesh) -> Vec<(String, String)> {
    let mut secrets = Vec::new();
    for (script, variable) in [
        ("slapd", "JML_TEST_SLAPD_BIND_PASSWORD_FILE"),
        ("scim", "JML_TEST_SCIM_TOKEN_FILE"),
        ("rustyvault", "JML_TEST_VAULT_TOKEN_FILE"),
    ] {
        let path = mesh_harness::target_env(script, variable);
        let value = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        secrets.push((variable.to_string(), value.trim().to_string()));
    }
    if let Ok(value) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        if value.len() >= 8 {
            secrets.push(("AWS_SECRET_ACCESS_KEY".into(), value));
        }
    }
    for (n, token) in mesh.tokens().into_iter().enumerate() {
        secrets.push((format!("bearer token {n}"), token));
    }
    secrets.push(("refused bearer token".into(), REFUSED_TOKEN.into()));
    for (_, value) in &secrets {
        assert!(value.len() >= 8, "a secret this short would match by chance");
    }
    secrets
}

const REFUSED_TOKEN: &str = "refused-token-9c41f0e2b7d35a18";

fn leaks<'a>(secrets: &'a [(String, String)], text: &str) -> Vec<&'a str> {
    secrets.iter().filter(|(_, value)| text.contains(value.as_str())).map(|(name, _)| name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_a_log_an_audit_record_or_the_evidence() {
    let mut mesh = Mesh::start_with_env(
        "secrets",
        MeshOptions::default(),
        vec![("RUST_LOG".into(), "debug,h2=info,hyper=info,rustls=info,tower=info".into())],
    )
    .await
    .expect("the mesh starts");
    let secrets = secrets(&mesh);
    let within = Duration::from_secs(180);

    // A joiner (with the privileged approval), a leaver, and a refused call
    // carrying a token the coordinator does not know.
    let person = Person::new(&mesh.run_id, 0, "Engineering");
    let joiner = format!("{}-joiner", mesh.run_id);
    mesh.submit(person.event(&joiner, pb::EventKind::Joiner)).await.expect("joiner accepted");
    mesh_harness::assert_eventually!(
        mesh.status(&joiner).await.is_ok_and(|s| task(&s, "vault").state == pb::TaskState::AwaitingApproval as i32),
        within,
        "the privileged vault grant never awaited approval"
    );
    mesh.approve(&joiner, "vault", "alice").await.expect("alice approves");
    mesh.wait_finished(std::slice::from_ref(&joiner), within).await.expect("joiner finishes");
    let leaver = format!("{}-leaver", mesh.run_id);
    mesh.submit(person.event(&leaver, pb::EventKind::Leaver)).await.expect("leaver accepted");
    mesh.wait_finished(std::slice::from_ref(&leaver), within).await.expect("leaver finishes");
    let mut anonymous = LifecycleClient::new(mesh.channel().await.expect("channel"));
    let mut refused = tonic::Request::new(pb::VerifyAuditRequest {});
    refused.metadata_mut().insert("authorization", format!("Bearer {REFUSED_TOKEN}").parse().expect("header"));
    let status = anonymous.verify_audit(refused).await.expect_err("an unknown token is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(leaks(&secrets, status.message()).is_empty(), "the error message quotes a secret: {status:?}");

    // The evidence of every event, as jmlctl exports it.
    let mut searched = Vec::new();
    for event_id in [&joiner, &leaver] {
        let evidence = mesh.evidence(event_id).await.expect("evidence");
        searched.push((format!("evidence of {event_id}"), evidence.to_string()));
    }
    // Every audit record, read from the coordinator's database.
    let db = mesh.db_path();
    let dump = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT seq, at, principal, event_id, action, payload, prev_hash, hash FROM audit ORDER BY seq")
        .output();
    let audit = match dump {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).into_owned(),
        // Without the sqlite3 shell, the raw database file (records are stored as text).
        _ => String::from_utf8_lossy(&std::fs::read(&db).expect("the database file")).into_owned(),
    };
    assert!(audit.contains("access.refused"), "the refused call is in the audit chain");
    searched.push(("audit records".into(), audit));
    // Every process's log, after a clean stop so nothing is still buffered.
    let logs = mesh.process_logs();
    mesh.stop_all().await.expect("the mesh stops");
    assert!(!logs.is_empty());
    for (name, log) in logs {
        assert!(!log.is_empty(), "{name} logged nothing: the search would prove nothing");
        searched.push((format!("{name} log"), log));
    }
    let found: Vec<String> = searched
        .iter()
        .flat_map(|(place, text)| leaks(&secrets, text).into_iter().map(move |secret| format!("{secret} in {place}")))
        .collect();
    assert!(found.is_empty(), "secrets leaked: {found:?}");
}
