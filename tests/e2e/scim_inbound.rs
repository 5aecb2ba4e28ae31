//! The SCIM 2.0 endpoint for inbound HR data through the real coordinator
//! (TLS, the callers file) and the four real connector processes: a `/Bulk`
//! request built with scim2-client (PyPI), as an HR integration sends it,
//! carrying a joiner, a mover and a termination; each operation's event id
//! followed to the end, and each target checked with its own client.
//!
//! scim2-client runs from the venv .ci/run installs
//! (`$JML_CACHE_DIR/scim2-tester-venv`, or `JML_SCIM2_PYTHON`).

use std::path::PathBuf;
use std::time::Duration;

use mesh_e2e::{Mesh, MeshOptions, Person, Targets};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn scim2_python() -> PathBuf {
    if let Some(python) = std::env::var_os("JML_SCIM2_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("JML_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lifecycle-mesh"));
    cache.join("scim2-tester-venv/bin/python")
}

fn scim_user(p: &Person) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": p.person_id,
        "userName": p.username,
        "displayName": p.display_name,
        "title": p.title,
        "userType": "employee",
        "emails": [{ "value": p.email, "type": "work", "primary": true }],
        ENTERPRISE: { "employeeNumber": p.person_id, "department": p.department },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scim_bulk_with_a_joiner_a_mover_and_a_termination_drives_the_real_targets() {
    let python = scim2_python();
    assert!(python.exists(), "{} is missing: run .ci/run (it installs scim2-client)", python.display());
    let targets = Targets::from_env().await.expect("clients of the real targets");
    let mesh = Mesh::start("scimin", MeshOptions::default()).await.expect("the mesh starts");
    let within = Duration::from_secs(300);
    let endpoint = mesh.scim_endpoint().expect("the SCIM endpoint");
    let ca = mesh.dir.join("certs/ca.pem");
    let token = mesh.token_path("hr-integration");

    // Two people already employed, sent one by one (raw HTTP).
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("ca pem"))
        .use_rustls_tls()
        .build()
        .expect("http client");
    let bearer = std::fs::read_to_string(&token).expect("token").trim().to_owned();
    let mover = Person::new(&mesh.run_id, 1, "Sales");
    let leaver = Person::new(&mesh.run_id, 2, "Sales");
    let mut first = Vec::new();
    for p in [&mover, &leaver] {
        let response = http
            .post(format!("{endpoint}/Users"))
            .bearer_auth(&bearer)
            .header("content-type", "application/scim+json")
            .body(scim_user(p).to_string())
            .send()
            .await
            .expect("POST /Users");
        assert_eq!(response.status().as_u16(), 201);
        first.push(response.headers()["jml-event-id"].to_str().expect("event id").to_owned());
    }
    mesh.wait_finished(&first, within).await.expect("the first joiners finish");

    // The Bulk, built and sent by scim2-client.
    let joiner = Person::new(&mesh.run_id, 3, "Sales");
    let spec = json!({
        "joiner": { "person_id": joiner.person_id, "username": joiner.username, "display_name": joiner.display_name,
                    "email": joiner.email, "department": joiner.department, "title": joiner.title },
        "mover": { "person_id": mover.person_id, "department": "Engineering" },
        "leaver": leaver.person_id,
    });
    let script = mesh_harness::workspace_root().join("tests/scim/bulk.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&endpoint)
        .arg(&token)
        .arg(&ca)
        .arg(spec.to_string())
        .output()
        .await
        .expect("scim2-client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let response: Value = serde_json::from_str(stdout.trim()).expect("the BulkResponse");
    let ops = response["Operations"].as_array().expect("operations");
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap_or_default()).collect();
    assert_eq!(statuses, ["201", "200", "204"], "{response}");
    let ids: Vec<String> =
        ops.iter().map(|o| o["eventId"].as_str().expect("each operation's event id").to_owned()).collect();
    assert!(ids.iter().all(|id| !id.is_empty()), "{response}");
    // Engineering's privileged Vault policy waits for an approver, as for any mover.
    mesh.approve(&ids[1], "vault", "alice").await.expect("alice approves the mover's Vault grant");
    mesh.wait_finished(&ids, within).await.expect("the Bulk's events finish");

    // The joiner, on every target.
    let ldap = targets.ldap.account(&joiner.username).await.expect("ldap").expect("LDAP account");
    assert!(!ldap.locked && ldap.groups.contains("sales"), "{ldap:?}");
    let scim = targets.scim.account(&joiner.email).await.expect("scim").expect("SCIM user");
    assert!(scim.active, "{scim:?}");
    assert!(targets.iam.account(&joiner.username).await.expect("iam").is_some(), "IAM user");
    // The mover: Engineering's groups instead of Sales'.
    let moved = targets.ldap.account(&mover.username).await.expect("ldap").expect("account");
    assert!(moved.groups.contains("engineering") && !moved.groups.contains("sales"), "{moved:?}");
    // The termination: locked, no groups, SCIM inactive, IAM disabled.
    let left = targets.ldap.account(&leaver.username).await.expect("ldap").expect("kept, locked");
    assert!(left.locked && left.groups.is_empty(), "{left:?}");
    let scim = targets.scim.account(&leaver.email).await.expect("scim").expect("SCIM user");
    assert!(!scim.active, "{scim:?}");
    let iam = targets.iam.account(&leaver.username).await.expect("iam");
    assert!(iam.as_ref().is_none_or(|a| a.groups.is_empty() && a.disabled_tag), "{iam:?}");

    // The same Bulk again changes nothing: the joiner's POST is answered as
    // its first creation (200, duplicate, the same event and bulkId), the
    // mover is the record accepted before, the terminated User is gone (404).
    let again = tokio::process::Command::new(&python)
        .arg(mesh_harness::workspace_root().join("tests/scim/bulk.py"))
        .arg(&endpoint)
        .arg(&token)
        .arg(&ca)
        .arg(spec.to_string())
        .output()
        .await
        .expect("scim2-client runs");
    let again: Value = serde_json::from_slice(&again.stdout).expect("the BulkResponse");
    let (retried, first) = (&again["Operations"][0], &response["Operations"][0]);
    assert_eq!((&retried["status"], &retried["outcome"]), (&json!("200"), &json!("duplicate")), "{again}");
    assert_eq!((&retried["eventId"], &retried["bulkId"]), (&first["eventId"], &first["bulkId"]), "{again}");
    assert_eq!(again["Operations"][1]["outcome"], "duplicate", "{again}");
    mesh.verify_audit().await.expect("audit chain intact");
}
