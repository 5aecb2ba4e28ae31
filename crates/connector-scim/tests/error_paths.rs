//! The error paths a real `scim2-server` cannot be made to produce on
//! demand: 429/503 with `Retry-After`, 412 Precondition Failed on a
//! PATCH carrying `If-Match`, and a service provider that ignores the
//! `members[value eq id]` filter. A small scripted HTTP/1.1 server on loopback
//! stands in for the service provider ONLY here; every other behaviour is
//! tested against the real server (tests/conformance.rs, tests/hostile_untouched.rs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_kit::{Connector, ErrorKind};
use connector_scim::{AuthConfig, ScimConfig, ScimConnector, SecretSource};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the scripted server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    if_match: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// A scripted answer: status, extra headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string() }
    }

    fn error(status: u16, detail: &str) -> Self {
        Self::json(
            status,
            json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.to_string(), "detail": detail }),
        )
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Script = Arc<dyn Fn(&Received, &[Received]) -> Reply + Send + Sync>;

/// Serves `script` on a loopback port; answers the base URL and the log of requests.
async fn scripted_server(script: Script) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let log: Arc<Mutex<Vec<Received>>> = Arc::default();
    let server_log = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let log = server_log.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut request_line = lines.next().unwrap_or_default().split(' ');
                let method = request_line.next().unwrap_or_default().to_owned();
                let target = request_line.next().unwrap_or_default().to_owned();
                let header = |name: &str| {
                    head.split("\r\n").find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
                    })
                };
                let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                while buffer.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let received = Received {
                    method,
                    target,
                    if_match: header("if-match"),
                    authorization: header("authorization"),
                    body: String::from_utf8_lossy(&buffer[head_end..]).to_string(),
                };
                let reply = {
                    let mut log = log.lock().expect("log");
                    let reply = script(&received, &log);
                    log.push(received);
                    reply
                };
                let mut response = format!(
                    "HTTP/1.1 {} Scripted\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (name, value) in &reply.headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&reply.body);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (format!("http://{address}/v2"), log)
}

fn service_provider_config() -> Reply {
    Reply::json(
        200,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": { "supported": true },
            "filter": { "supported": true, "maxResults": 200 },
            "changePassword": { "supported": true },
            "etag": { "supported": true },
        }),
    )
}

fn list(resources: Vec<Value>) -> Reply {
    Reply::json(
        200,
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

fn user(version: u32, display_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u/1",
        "externalId": "p-1",
        "userName": "alice",
        "active": true,
        "displayName": display_name,
        "meta": { "resourceType": "User", "version": format!("W/\"{version}\"") },
    })
}

fn connector(base_url: &str) -> ScimConnector {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token_file = std::env::temp_dir().join(format!("connector-scim-error-paths-{}-{n}", std::process::id()));
    std::fs::write(&token_file, "fixture-token\n").expect("token file");
    let mut config =
        ScimConfig::new(base_url, AuthConfig::Bearer { token: SecretSource { file: Some(token_file), env: None } });
    config.allow_plaintext_http = true;
    config.precondition_retries = 2;
    ScimConnector::new(&config).expect("connector")
}

fn account() -> pb::AccountRef {
    pb::AccountRef { person_id: "p-1".into(), account_name: "alice".into() }
}

fn desired(display_name: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: [("display_name".to_string(), display_name.to_string())].into(),
        entitlements: vec![],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

#[tokio::test]
async fn throttling_with_retry_after_is_a_typed_error_carrying_the_wait() {
    let script: Script = Arc::new(|request, _| {
        if request.target.ends_with("/ServiceProviderConfig") {
            service_provider_config()
        } else if request.target.contains("/Users") {
            Reply::error(429, "too many requests").header("Retry-After", "7")
        } else {
            Reply::error(503, "maintenance").header("Retry-After", "30")
        }
    });
    let (base_url, log) = scripted_server(script).await;
    let connector = connector(&base_url);

    let error = connector.read(&account()).await.expect_err("429 must fail the read");
    assert_eq!(error.kind, ErrorKind::Throttled, "{error}");
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    assert!(error.message.contains("too many requests"), "{error}");

    // 503 on the group lookup (the first call of an apply naming a group).
    let mut with_group = desired("Alice");
    with_group.entitlements.push(pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false });
    let error = connector.apply("c-1", &with_group).await.expect_err("503 must fail the apply");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(Duration::from_secs(30)));

    // Over gRPC, the wait reaches the coordinator's client in the typed error.
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let options = ClientOptions { max_attempts: 1, ..ClientOptions::default() };
    let client = ConnectorClient::connect(&server.endpoint(), options).expect("client");
    let error = client.read(account()).await.expect_err("429 over gRPC");
    assert_eq!(error.kind, ErrorKind::Throttled, "{error}");
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));

    let log = log.lock().expect("log");
    assert!(log.iter().all(|r| r.authorization.as_deref() == Some("Bearer fixture-token")));
    assert!(log.iter().all(|r| r.method != "PUT" && r.method != "POST"), "nothing may be written: {log:?}");
}

#[tokio::test]
async fn precondition_failed_is_re_read_and_retried_with_the_fresh_etag() {
    // The user changes on the service provider between the lookup (version 1)
    // and the PATCH: the first PATCH gets 412, the fresh read shows version 2.
    let script: Script = Arc::new(|request, _| {
        let target = request.target.as_str();
        match request.method.as_str() {
            "GET" if target.ends_with("/ServiceProviderConfig") => service_provider_config(),
            "GET" if target.contains("/Users?") => list(vec![user(1, "Old")]),
            "GET" if target.ends_with("/Users/u%2F1") => {
                Reply::json(200, user(2, "Changed elsewhere")).header("ETag", "W/\"2\"")
            }
            "GET" if target.contains("/Groups?") => list(vec![]),
            "PATCH" if request.if_match.as_deref() == Some("W/\"2\"") => {
                Reply { status: 204, headers: vec![], body: String::new() }
            }
            "PATCH" => Reply::error(412, "Failed to update. Resource has changed on the server"),
            _ => Reply::error(500, "unexpected request"),
        }
    });
    let (base_url, log) = scripted_server(script).await;
    let connector = connector(&base_url);

    let acknowledgement = connector.apply("c-1", &desired("Wanted")).await.expect("apply succeeds after the retry");
    let changes: Vec<(String, String)> =
        acknowledgement.changes.iter().map(|c| (c.action.clone(), c.subject.clone())).collect();
    assert_eq!(changes, vec![("set_attribute".to_string(), "display_name".to_string())]);
    assert_eq!(acknowledgement.target_native_id, "u/1");

    let log = log.lock().expect("log");
    let patches: Vec<&Received> = log.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2, "{log:?}");
    assert_eq!(patches[0].if_match.as_deref(), Some("W/\"1\""));
    assert_eq!(patches[1].if_match.as_deref(), Some("W/\"2\""));
    // The id is percent-encoded in the path.
    assert!(patches.iter().all(|p| p.target.ends_with("/v2/Users/u%2F1")), "{patches:?}");
    for patch in &patches {
        let body: Value = serde_json::from_str(&patch.body).expect("JSON body");
        assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]));
        assert_eq!(body["Operations"], json!([{ "op": "replace", "path": "displayName", "value": "Wanted" }]));
    }
    assert!(log.iter().all(|r| r.method != "PUT"), "never a full PUT: {log:?}");
}

#[tokio::test]
async fn precondition_failing_every_time_ends_as_a_conflict() {
    let script: Script = Arc::new(|request, _| {
        let target = request.target.as_str();
        match request.method.as_str() {
            "GET" if target.ends_with("/ServiceProviderConfig") => service_provider_config(),
            "GET" if target.contains("/Users?") => list(vec![user(1, "Old")]),
            "GET" if target.contains("/Users/") => Reply::json(200, user(1, "Old")).header("ETag", "W/\"1\""),
            "GET" if target.contains("/Groups?") => list(vec![]),
            "PATCH" => Reply::error(412, "Failed to update. Resource has changed on the server"),
            _ => Reply::error(500, "unexpected request"),
        }
    });
    let (base_url, log) = scripted_server(script).await;
    let error = connector(&base_url).apply("c-1", &desired("Wanted")).await.expect_err("412 every time");
    assert_eq!(error.kind, ErrorKind::Conflict, "{error}");
    let patches = log.lock().expect("log").iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 3, "one PATCH and two retries");
}

/// A service provider that ignores `members[value eq id]` (answers every
/// group) or omits members: the user's memberships are unknown, so Read
/// fails, typed and not retryable, instead of showing a list that could make
/// a strip look verified.
#[tokio::test]
async fn a_service_provider_ignoring_the_members_filter_makes_memberships_unknown() {
    for members in [json!([{ "value": "u/2" }]), json!([]), Value::Null] {
        let answer = members.clone();
        let script: Script = Arc::new(move |request, _| {
            if request.target.ends_with("/ServiceProviderConfig") {
                service_provider_config()
            } else if request.target.starts_with("/v2/Users") {
                list(vec![user(1, "Alice")])
            } else {
                let mut group = json!({ "id": "g-1", "displayName": "admins" });
                if !answer.is_null() {
                    group["members"] = answer.clone();
                }
                list(vec![group, json!({ "id": "g-2", "displayName": "staff", "members": [{ "value": "u/1" }] })])
            }
        });
        let (base_url, log) = scripted_server(script).await;
        let connector = connector(&base_url);
        let error = connector.read(&account()).await.expect_err("memberships that cannot be checked fail the read");
        assert_eq!(error.kind, ErrorKind::Internal, "{members}: {error}");
        assert!(!error.retryable, "{error}");
        assert!(error.message.contains("admins") && error.message.contains("ignores the filter"), "{error}");
        let asked = log.lock().expect("log").iter().any(|r| r.target.contains("attributes=displayName%2Cmembers"));
        assert!(asked, "the group search asks for members");
    }
}
