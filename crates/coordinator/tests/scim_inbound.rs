//! The SCIM 2.0 endpoint for inbound HR data over an in-process coordinator
//! and the in-memory reference connectors, over TLS with the callers file:
//! `/Users` and `/Bulk` derive joiner, mover, leaver and rehire through the
//! state submit (checked on what the targets hold), typed errors for
//! hostile bodies (the `scim` entries of tests/corpus/hostile), and
//! scim2-tester (PyPI) run against the endpoint.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connector_kit::contract as pb;
use connector_kit::tls::ServerTlsFiles;
use coordinator::auth::{Authentication, CallerRegistry};
use coordinator::scim_inbound::{RunningScim, ScimOptions};
use coordinator::server::RunningCoordinator;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

const HR_TOKEN: &str = "hr-scim-token-5b1e";
const APPROVER_TOKEN: &str = "approver-scim-token-0c77";
const SAP_TOKEN: &str = "sap-scim-token-91aa";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const VERIFIED: i32 = pb::EventState::Verified as i32;

/// The mapping the quickstart policy carries too.
const SCIM_MAPPING: &str = r#"source_of_truth:
  system: workday
  attributes: [username, display_name, email, department, title]
  scim:
    person_id: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber
    attributes:
      username: userName
      display_name: displayName
      email: emails.value
      title: title
      department: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department
"#;

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

struct ScimMesh {
    targets: Vec<Target>,
    _coordinator: RunningCoordinator,
    scim: Option<RunningScim>,
    client: LifecycleClient<tonic::transport::Channel>,
    http: reqwest::Client,
    base: String,
    dir: tempfile::TempDir,
}

impl ScimMesh {
    async fn start(options: ScimOptions) -> Self {
        Self::start_with(options, |policy| policy).await
    }

    async fn start_with(options: ScimOptions, edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        mesh_harness::test_pki::write_ca(dir.path(), "ca", &[("coordinator", "localhost"), ("hr", "hr.mesh.test")])
            .expect("certificates");
        let targets = targets(None).await;
        let policy = policy_yaml(&targets, 8).replace(
            "source_of_truth: { system: workday, attributes: [username, display_name, email, department, title] }\n",
            SCIM_MAPPING,
        );
        let policy = Policy::parse(&edit(policy)).expect("policy");
        let store = Arc::new(SqliteStore::open(&dir.path().join("mesh.db")).await.expect("store"));
        let config = EngineConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let engine = Engine::start(store, Arc::new(policy), config).await.expect("engine");
        let callers = format!(
            "callers:\n  - {{ principal: hr-integration, roles: [source], source_systems: [workday], token_sha256: [\"{}\"], certificate_names: [hr.mesh.test] }}\n  - {{ principal: alice, roles: [approver], token_sha256: [\"{}\"] }}\n  - {{ principal: sap-feed, roles: [source], source_systems: [sap], token_sha256: [\"{}\"] }}\n",
            digest(HR_TOKEN),
            digest(APPROVER_TOKEN),
            digest(SAP_TOKEN)
        );
        let authentication = Authentication::Callers(Arc::new(CallerRegistry::parse(&callers).expect("callers")));
        let tls = ServerTlsFiles {
            certificate: dir.path().join("coordinator.pem"),
            private_key: dir.path().join("coordinator.key"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        let scim = RunningScim::bind(
            "127.0.0.1:0".parse().expect("address"),
            engine.clone(),
            Some(&tls),
            authentication,
            options,
        )
        .await
        .expect("SCIM endpoint binds");
        // The gRPC API in development mode, to follow events.
        let coordinator =
            RunningCoordinator::bind("127.0.0.1:0".parse().expect("address"), engine).await.expect("bind");
        let client = LifecycleClient::connect(coordinator.endpoint()).await.expect("client");
        let http = Self::http_client(dir.path(), None);
        let base = format!("https://localhost:{}", scim.local_addr().port());
        Self { targets, _coordinator: coordinator, scim: Some(scim), client, http, base, dir }
    }

    fn http_client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).expect("ca")).expect("ca pem");
        let mut builder = reqwest::Client::builder().add_root_certificate(ca).use_rustls_tls();
        if let Some(leaf) = identity {
            let mut pem = std::fs::read(dir.join(format!("{leaf}.pem"))).expect("cert");
            pem.extend(std::fs::read(dir.join(format!("{leaf}.key"))).expect("key"));
            builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        builder.build().expect("http client")
    }

    fn target(&self, id: &str) -> Arc<connector_memory::MemoryTarget> {
        self.targets.iter().find(|t| t.id == id).expect("target").store.clone()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value, String) {
        self.send_as(Some(HR_TOKEN), method, path, body.map(|b| b.to_string().into_bytes())).await
    }

    async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/scim+json").body(body);
        }
        let response = request.send().await.expect("SCIM request");
        let status = response.status().as_u16();
        let event_id =
            response.headers().get("jml-event-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), event_id)
    }
}

fn user(person: &str, username: &str, department: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": person,
        "userName": username,
        "displayName": format!("Person {username}"),
        "emails": [{ "value": format!("{username}@example.org"), "type": "work", "primary": true }],
        ENTERPRISE: { "employeeNumber": person, "department": department, "manager": { "value": "M1" } },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_bulk_derive_joiner_mover_leaver_and_rehire_on_the_targets() {
    let mut mesh = ScimMesh::start(ScimOptions::default()).await;

    // A joiner: 201, the resource with the person id as its id, the event id.
    let (status, created, joined) =
        mesh.send(reqwest::Method::POST, "/Users", Some(&user("S1", "sam", "Engineering"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "S1");
    assert_eq!(created[ENTERPRISE]["department"], "Engineering");
    assert!(!joined.is_empty());
    assert_eq!(until_terminal(&mut mesh.client, &joined).await.state, VERIFIED);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:engineering", "group:staff"]);

    // The same User again: 409 uniqueness, nothing new.
    let (status, error, _) = mesh.send(reqwest::Method::POST, "/Users", Some(&user("S1", "sam", "Engineering"))).await;
    assert_eq!((status, error["scimType"].as_str()), (409, Some("uniqueness")), "{error}");

    // PATCH the department: a mover.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}]});
    let (status, patched, moved) = mesh.send(reqwest::Method::PATCH, "/Users/S1", Some(&patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_ne!(moved, joined);
    assert_eq!(until_terminal(&mut mesh.client, &moved).await.state, VERIFIED);
    assert_eq!(held(&mesh.target("ldap"), "sam"), vec!["group:sales", "group:staff"]);

    // PUT the same content: no event.
    let mut same = user("S1", "sam", "Sales");
    same[ENTERPRISE]["department"] = json!("Sales");
    let (status, _, again) = mesh.send(reqwest::Method::PUT, "/Users/S1", Some(&same)).await;
    assert_eq!((status, again.as_str()), (200, moved.as_str()), "the record accepted before: its event");
    // A PUT changing the person id is refused.
    let (status, error, _) = mesh.send(reqwest::Method::PUT, "/Users/S1", Some(&user("S2", "sam", "Sales"))).await;
    assert_eq!((status, error["scimType"].as_str()), (400, Some("mutability")), "{error}");

    // A Bulk: a joiner, a mover (by bulkId) and a termination.
    let (_, _, t) = mesh.send(reqwest::Method::POST, "/Users", Some(&user("T1", "tia", "Sales"))).await;
    until_terminal(&mut mesh.client, &t).await;
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("U1", "uma", "Sales")},
            {"method": "PATCH", "path": "/Users/bulkId:u1", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Engineering"}]}},
            {"method": "DELETE", "path": "/Users/T1"},
        ],
    });
    let (status, response, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&bulk)).await;
    assert_eq!(status, 200, "{response}");
    let ops = response["Operations"].as_array().expect("operations");
    assert_eq!(ops.iter().map(|o| o["status"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["201", "200", "204"]);
    for op in ops {
        let event_id = op["eventId"].as_str().expect("every operation carries its event id");
        assert_eq!(until_terminal(&mut mesh.client, event_id).await.state, VERIFIED, "{op}");
    }
    assert_eq!(held(&mesh.target("ldap"), "uma"), vec!["group:engineering", "group:staff"]);
    assert!(!mesh.target("ldap").get("tia").expect("kept, disabled").enabled);
    let (status, _, _) = mesh.send(reqwest::Method::GET, "/Users/T1", None).await;
    assert_eq!(status, 404, "a deleted User is gone");

    // failOnErrors: the first error stops the rest.
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "PATCH", "path": "/Users/NOBODY", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "title"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "v1", "data": user("V1", "val", "Sales")},
        ],
    });
    let (status, response, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&bulk)).await;
    assert_eq!(status, 200);
    assert_eq!(response["Operations"].as_array().map(Vec::len), Some(1), "{response}");
    assert!(mesh.target("ldap").get("val").is_none());

    // A Bulk of joiners sent twice (the sender saw no answer): the second
    // answers each POST as the first creation, with its bulkId and event.
    let joiners = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "w1", "data": user("W1", "wes", "Sales")}],
    });
    let (status, first, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&joiners)).await;
    assert_eq!((status, first["Operations"][0]["status"].as_str()), (200, Some("201")), "{first}");
    let (status, retried, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&joiners)).await;
    let (op, again) = (&retried["Operations"][0], &first["Operations"][0]);
    assert_eq!(
        (status, op["status"].as_str(), op["outcome"].as_str()),
        (200, Some("200"), Some("duplicate")),
        "{retried}"
    );
    assert_eq!(
        (&op["bulkId"], &op["eventId"], &op["location"]),
        (&again["bulkId"], &again["eventId"], &again["location"])
    );
    // A different record for an existing User is still a conflict.
    let changed = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "w1", "data": user("W1", "wes", "Engineering")}],
    });
    let (_, conflict, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&changed)).await;
    assert_eq!(conflict["Operations"][0]["status"].as_str(), Some("409"), "{conflict}");
    // A Bulk that creates a User and then patches it, sent twice: the
    // retried POST is answered as the creation (not a 409, though the kept
    // User is the patched one), the retried PATCH as the same change.
    let create_then_patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "x1", "data": user("X1", "xia", "Sales")},
            {"method": "PATCH", "path": "/Users/X1", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]}},
        ],
    });
    let (_, first, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&create_then_patch)).await;
    let statuses = |r: &serde_json::Value| {
        r["Operations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["status"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&first), [Some("201".to_owned()), Some("200".to_owned())], "{first}");
    let (_, retried, _) = mesh.send(reqwest::Method::POST, "/Bulk", Some(&create_then_patch)).await;
    assert_eq!(statuses(&retried), [Some("200".to_owned()), Some("200".to_owned())], "{retried}");
    for index in 0..2 {
        let (op, again) = (&retried["Operations"][index], &first["Operations"][index]);
        assert_eq!(op["outcome"], "duplicate", "{retried}");
        assert_eq!(op["eventId"], again["eventId"], "{retried}");
    }
    // Removing `active` would read as employed: refused, nothing changes.
    let (status, _, _) = mesh
        .send(
            reqwest::Method::PATCH,
            "/Users/W1",
            Some(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        )
        .await;
    assert_eq!(status, 200, "active false: the termination");
    let (status, error, _) = mesh
        .send(
            reqwest::Method::PATCH,
            "/Users/W1",
            Some(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": "active"}]})),
        )
        .await;
    assert_eq!((status, error["scimType"].as_str()), (400, Some("mutability")), "{error}");
    let (_, still, _) = mesh.send(reqwest::Method::GET, "/Users/W1", None).await;
    assert_eq!(still["active"], false, "{still}");

    // The person deleted comes back: a rehire.
    let (status, back, rehired) = mesh.send(reqwest::Method::POST, "/Users", Some(&user("T1", "tia", "Sales"))).await;
    assert_eq!(status, 201, "{back}");
    assert_eq!(until_terminal(&mut mesh.client, &rehired).await.state, VERIFIED);
    assert!(mesh.target("ldap").get("tia").expect("account").enabled);

    // GET, list and filter.
    let (status, list, _) = mesh.send(reqwest::Method::GET, "/Users?filter=userName%20eq%20%22uma%22", None).await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(1)), "{list}");
    assert_eq!(list["Resources"][0]["id"], "U1");
    let (status, one, _) = mesh.send(reqwest::Method::GET, "/Users/S1?attributes=userName", None).await;
    assert_eq!(status, 200);
    assert!(one.get("userName").is_some() && one.get("emails").is_none(), "{one}");

    // A client certificate authenticates as the token does.
    let by_certificate = ScimMesh::http_client(mesh.dir.path(), Some("hr"));
    let response = by_certificate.get(format!("{}/Users/S1", mesh.base)).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    if let Some(scim) = mesh.scim.take() {
        scim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_the_grpc_apis_callers() {
    let mesh = ScimMesh::start(ScimOptions::default()).await;
    let body = Some(user("A1", "ann", "Sales").to_string().into_bytes());
    let (status, error, _) = mesh.send_as(None, reqwest::Method::POST, "/Users", body.clone()).await;
    assert_eq!(status, 401, "{error}");
    let (status, _, _) = mesh.send_as(Some("wrong"), reqwest::Method::POST, "/Users", body.clone()).await;
    assert_eq!(status, 401);
    let (status, error, _) = mesh.send_as(Some(APPROVER_TOKEN), reqwest::Method::POST, "/Users", body.clone()).await;
    assert_eq!(status, 403, "an approver is no source: {error}");
    let (status, error, _) = mesh.send_as(Some(SAP_TOKEN), reqwest::Method::POST, "/Users", body).await;
    assert_eq!(status, 403, "a source of another system: {error}");
    assert!(mesh.target("ldap").get("ann").is_none());
}

fn corpus() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/hostile/corpus.json");
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).expect("corpus")).expect("corpus JSON");
    all.into_iter().filter(|e| e["kind"] == "scim").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_typed_errors_and_change_nothing() {
    let mut mesh = ScimMesh::start(ScimOptions { max_body: 64 * 1024, max_bulk_operations: 100 }).await;
    let (_, _, joined) = mesh.send(reqwest::Method::POST, "/Users", Some(&user("H0", "hank", "Sales"))).await;
    until_terminal(&mut mesh.client, &joined).await;
    let entries = corpus();
    assert!(entries.len() >= 10, "the corpus has its SCIM entries");
    for entry in entries {
        let name = entry["name"].as_str().unwrap_or_default();
        let body = match (&entry["body"], entry["repeat"].as_u64()) {
            (Value::String(text), Some(times)) => Some(text.repeat(usize::try_from(times).expect("size")).into_bytes()),
            (Value::String(text), None) => Some(text.clone().into_bytes()),
            (Value::Null, _) => None,
            (json, _) => Some(json.to_string().into_bytes()),
        };
        let method = reqwest::Method::from_bytes(entry["method"].as_str().expect("method").as_bytes()).expect("method");
        let (status, error, event_id) =
            mesh.send_as(Some(HR_TOKEN), method, entry["path"].as_str().expect("path"), body).await;
        assert_eq!(u64::from(status), entry["status"].as_u64().expect("status"), "{name}: {error}");
        if let Some(scim_type) = entry["scimType"].as_str() {
            assert_eq!(error["scimType"], scim_type, "{name}: {error}");
        }
        assert!(event_id.is_empty(), "{name}: no event");
    }
    // Nothing changed: the one person, as she was.
    let ldap = mesh.target("ldap");
    assert_eq!(ldap.len(), 1);
    assert_eq!(held(&ldap, "hank"), vec!["group:sales", "group:staff"]);
}

/// The python of the venv .ci/run installs scim2-tester into.
fn scim2_python() -> PathBuf {
    if let Some(python) = std::env::var_os("JML_SCIM2_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("JML_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lifecycle-mesh"));
    cache.join("scim2-tester-venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes() {
    let python = scim2_python();
    assert!(
        python.exists(),
        "{} is missing: run .ci/run, or `python3 -m venv VENV && VENV/bin/pip install 'scim2-tester[httpx2]'` and set JML_SCIM2_PYTHON=VENV/bin/python",
        python.display()
    );
    // A policy that requires no attribute beyond the account name, so that
    // removing any attribute is a valid request (a policy requiring one
    // refuses its removal, 400 invalidValue, as it should).
    let mesh = ScimMesh::start_with(ScimOptions::default(), |policy| {
        policy.replace(r#"attributes: { display_name: "{display_name}", mail: "{email}" }, "#, "")
    })
    .await;
    let token = mesh.dir.path().join("hr.token");
    std::fs::write(&token, HR_TOKEN).expect("token");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/scim/conformance.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&mesh.base)
        .arg(&token)
        .arg(mesh.dir.path().join("ca.pem"))
        .output()
        .await
        .expect("scim2-tester runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "scim2-tester found errors:\n{report}");
}
