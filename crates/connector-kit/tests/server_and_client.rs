//! The server builder and the client stack, over real gRPC on loopback:
//! health follows the preflight, reflection lists the services, typed errors
//! keep their kind across the wire, the client retries what is retryable and
//! honours retry-after, and the per-call timeout holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::ConnectorServer;
use connector_kit::{AccountStream, Connector, ConnectorError, ErrorKind};
use connector_memory::{Faults, MemoryConfig, MemoryConnector, MemoryTarget};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A connector whose target is "down" until `up` is set.
struct Gated {
    inner: MemoryConnector,
    up: Arc<AtomicBool>,
}

impl Connector for Gated {
    fn describe(&self) -> pb::DescribeResponse {
        self.inner.describe()
    }
    async fn preflight(&self) -> Result<(), ConnectorError> {
        if self.up.load(Ordering::SeqCst) { Ok(()) } else { Err(ConnectorError::unavailable("target down")) }
    }
    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        self.inner.apply(command_id, desired).await
    }
    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        self.inner.read(account).await
    }
    fn list(&self, page_size: u32) -> AccountStream {
        self.inner.list(page_size)
    }
}

fn memory() -> (MemoryConnector, Arc<MemoryTarget>) {
    let target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    (MemoryConnector::new("mem", target.clone()), target)
}

fn desired(name: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: format!("p-{name}"), account_name: name.into() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: Default::default(),
        entitlements: vec![pb::Entitlement { kind: "group".into(), id: "staff".into(), privileged: false }],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned()).expect("endpoint").connect().await.expect("connects")
}

async fn health(endpoint: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(endpoint).await);
    let response =
        client.check(HealthCheckRequest { service: "jml.v1.Connector".into() }).await.expect("health answers");
    response.into_inner().status()
}

#[tokio::test]
async fn health_is_serving_only_after_the_preflight_succeeds() {
    let up = Arc::new(AtomicBool::new(false));
    let (inner, _) = memory();
    let server = ConnectorServer::new(Gated { inner, up: up.clone() })
        .preflight_interval(Duration::from_millis(100))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds");
    assert_ne!(server.local_addr().port(), 0, "the bound port is returned");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health(&server.endpoint()).await, ServingStatus::NotServing);
    up.store(true, Ordering::SeqCst);
    let mut status = ServingStatus::NotServing;
    for _ in 0..50 {
        status = health(&server.endpoint()).await;
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    up.store(false, Ordering::SeqCst);
    let mut status = ServingStatus::Serving;
    for _ in 0..50 {
        status = health(&server.endpoint()).await;
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::NotServing, "health follows a failing preflight");
    server.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn reflection_lists_the_contract_and_health() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let (connector, _) = memory();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let mut client = ServerReflectionClient::new(channel(&server.endpoint()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter(vec![request])).await.expect("reflection").into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"jml.v1.Connector".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
}

#[tokio::test]
async fn typed_errors_cross_the_wire_and_retries_honour_retry_after() {
    let (connector, target) = memory();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");

    // Two injected UNAVAILABLE failures: the client retries and succeeds.
    target.set_faults(Faults { fail_next_applies: 2, ..Faults::default() });
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let acknowledgement = client.apply("cmd-1", desired("alice")).await.expect("succeeds after retries");
    assert_eq!(acknowledgement.command_id, "cmd-1");
    assert!(target.get("alice").is_some(), "the account exists on the target");

    // A throttle with retry-after: the client waits at least that long.
    target.set_faults(Faults { throttle_next_applies: Some((1, Duration::from_millis(400))), ..Faults::default() });
    let started = Instant::now();
    client.apply("cmd-2", desired("bob")).await.expect("succeeds after the retry-after");
    assert!(started.elapsed() >= Duration::from_millis(400), "retry-after was not honoured");

    // Retries spent: the typed error arrives with its kind and retryability.
    target.set_faults(Faults { fail_next_applies: 10, ..Faults::default() });
    let options = ClientOptions { max_attempts: 2, ..ClientOptions::default() };
    let error = ConnectorClient::connect(&server.endpoint(), options)
        .expect("client")
        .apply("cmd-3", desired("carol"))
        .await
        .expect_err("fails");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.retryable);
    assert!(target.get("carol").is_none());
    target.set_faults(Faults::default());

    // Not retryable: refused at once with the field named.
    let mut bad = desired("dave");
    bad.presence = 0;
    let error = client.apply("cmd-4", bad).await.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::InvalidArgument);
    assert_eq!(error.field.as_deref(), Some("desired.presence"));
}

#[tokio::test]
async fn the_call_timeout_holds_and_unreachable_connectors_are_retryable() {
    let (connector, target) = memory();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    target.set_faults(Faults { apply_latency: Duration::from_secs(5), ..Faults::default() });
    let options =
        ClientOptions { call_timeout: Duration::from_millis(200), max_attempts: 1, ..ClientOptions::default() };
    let client = ConnectorClient::connect(&server.endpoint(), options).expect("client");
    let error = client.apply("cmd-slow", desired("erin")).await.expect_err("times out");
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(error.retryable);

    let options = ClientOptions { max_attempts: 1, ..ClientOptions::default() };
    let client = ConnectorClient::connect("http://127.0.0.1:1", options).expect("lazy client");
    let error = client.describe().await.expect_err("nothing listens on port 1");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.retryable);
}

#[tokio::test]
async fn reflection_is_also_served_as_v1alpha() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let (connector, _) = memory();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let mut client = ServerReflectionClient::new(channel(&server.endpoint()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha reflection answers (older clients ask for it)")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"jml.v1.Connector".to_string()), "{names:?}");
}

#[tokio::test]
async fn a_command_under_a_stale_lease_epoch_is_refused_and_changes_nothing() {
    let (connector, target) = memory();
    let server = ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let description = client.describe().await.expect("describe");
    assert!(
        description.capabilities.is_some_and(|c| c.lease_epoch_fencing),
        "the adapter declares fencing for every connector"
    );
    // The first holder of the lane (epoch 1) grants staff.
    client.apply_fenced("holder-1", desired("alice"), 1).await.expect("first holder applies");
    // Its lease is taken over (epoch 2): the new holder removes every group.
    let mut revoked = desired("alice");
    revoked.entitlements.clear();
    client.apply_fenced("holder-2", revoked, 2).await.expect("new holder applies");
    // The stale holder retries its command: refused, typed, not retryable; the target keeps the new state.
    let refused = client.apply_fenced("holder-1", desired("alice"), 1).await.expect_err("stale epoch refused");
    assert_eq!(refused.kind, ErrorKind::StaleLease, "{refused}");
    assert!(!refused.retryable);
    assert_eq!(refused.field.as_deref(), Some("lease_epoch"));
    let stored = target.get("alice").expect("the account exists");
    assert!(stored.entitlements.is_empty(), "the stale command changed nothing: {:?}", stored.entitlements);
    // A sender without a lease (epoch 0) is refused too once a lease was seen.
    let unleased = client.apply("no-lease", desired("alice")).await.expect_err("epoch 0 after epoch 2");
    assert_eq!(unleased.kind, ErrorKind::StaleLease);
    // Other accounts are unaffected.
    client.apply("other", desired("bob")).await.expect("no epoch seen for bob");
}
