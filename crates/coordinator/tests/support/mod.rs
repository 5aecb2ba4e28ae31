//! Shared set-up for the coordinator's integration tests: four in-process
//! reference connectors served over real gRPC on loopback, a policy naming
//! them, and a coordinator (in-process or the real binary).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connector_kit::contract as pb;
use connector_kit::server::{ConnectorServer, RunningServer};
use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};
use coordinator::server::RunningCoordinator;
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};
use jml_contract::v1::lifecycle_client::LifecycleClient;
use tonic::transport::Channel;

/// The four target ids.
pub const TARGETS: [&str; 4] = ["ldap", "scim", "vault", "aws"];

/// One reference connector.
pub struct Target {
    pub id: String,
    pub store: Arc<MemoryTarget>,
    pub server: RunningServer,
}

/// Starts the four connectors, journaling to `journal_dir` when given.
pub async fn targets(journal_dir: Option<&Path>) -> Vec<Target> {
    let config = MemoryConfig::default();
    let mut targets = Vec::new();
    for id in TARGETS {
        let journal = journal_dir.map(|dir| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{id}.journal")))
                .expect("journal")
        });
        let store = Arc::new(MemoryTarget::new(&config.entitlements, journal));
        let server = ConnectorServer::new(MemoryConnector::new(id, store.clone()))
            .bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("connector binds");
        targets.push(Target { id: id.into(), store, server });
    }
    targets
}

/// The test policy over the connectors.
pub fn policy_yaml(targets: &[Target], concurrency: usize) -> String {
    let endpoint = |id: &str| targets.iter().find(|t| t.id == id).expect("target").server.endpoint();
    format!(
        r#"
version: 1
source_of_truth: {{ system: workday, attributes: [username, display_name, email, department, title] }}
targets:
  - {{ id: ldap, endpoint: "{ldap}", insecure_plaintext: true, account_name: "{{username}}", concurrency: {concurrency},
      attributes: {{ display_name: "{{display_name}}", mail: "{{email}}" }}, deadline: 10m }}
  - {{ id: scim, endpoint: "{scim}", insecure_plaintext: true, account_name: "{{username}}", concurrency: {concurrency} }}
  - {{ id: vault, endpoint: "{vault}", insecure_plaintext: true, account_name: "{{username}}", concurrency: {concurrency} }}
  - {{ id: aws, endpoint: "{aws}", insecure_plaintext: true, account_name: "{{username}}", concurrency: {concurrency} }}
workflows:
  - name: staff
    owner: it@example.org
    trigger: {{ events: [joiner, mover] }}
    grants: {{ ldap: [ {{ kind: group, id: staff }} ], scim: [ {{ kind: group, id: staff }} ], aws: [ {{ kind: group, id: staff }} ] }}
  - name: engineering
    owner: eng@example.org
    trigger: {{ events: [joiner, mover], when: {{ department: Engineering }} }}
    grants: {{ ldap: [ {{ kind: group, id: engineering }} ], scim: [ {{ kind: role, id: editor }} ], aws: [ {{ kind: group, id: engineering }} ] }}
  - name: sales
    owner: sales@example.org
    trigger: {{ events: [joiner, mover], when: {{ department: Sales }} }}
    grants: {{ ldap: [ {{ kind: group, id: sales }} ], scim: [ {{ kind: role, id: viewer }} ] }}
  - name: production
    owner: sre@example.org
    trigger: {{ events: [joiner, mover], when: {{ department: SRE }} }}
    grants: {{ vault: [ {{ kind: group, id: prod-access, privileged: true }} ], ldap: [ {{ kind: group, id: it-ops }} ] }}
    approval: {{ approvers: 2, group: security }}
approvers: {{ security: [alice, bob, carol, sam] }}
default_approval: {{ approvers: 1, group: security }}
"#,
        ldap = endpoint("ldap"),
        scim = endpoint("scim"),
        vault = endpoint("vault"),
        aws = endpoint("aws"),
    )
}

/// How the lifecycle API is served and how the mesh's own client reaches it.
pub struct Access {
    /// TLS of the lifecycle API.
    pub server_tls: Option<connector_kit::tls::ServerTlsFiles>,
    /// How callers are identified.
    pub authentication: coordinator::auth::Authentication,
    /// TLS of `Mesh::client` (with `server_tls`).
    pub client_tls: Option<connector_kit::tls::ClientTlsFiles>,
}

impl Default for Access {
    fn default() -> Self {
        Self { server_tls: None, authentication: coordinator::auth::Authentication::InsecureHeader, client_tls: None }
    }
}

/// An in-process coordinator over the four connectors.
pub struct Mesh {
    pub targets: Vec<Target>,
    pub coordinator: RunningCoordinator,
    pub client: LifecycleClient<Channel>,
    pub db: PathBuf,
    pub store: Arc<SqliteStore>,
    pub dir: tempfile::TempDir,
}

impl Mesh {
    pub async fn start(concurrency: usize) -> Self {
        Self::start_with(concurrency, |policy| policy).await
    }

    /// Starts with the test policy as `edit` changes it, plaintext and
    /// trusting the `x-jml-principal` header (development mode).
    pub async fn start_with(concurrency: usize, edit: impl FnOnce(String) -> String) -> Self {
        Self::start_with_access(concurrency, edit, Access::default()).await
    }

    /// Starts with the test policy as `edit` changes it, the lifecycle API
    /// served and reached as `access` says.
    pub async fn start_with_access(concurrency: usize, edit: impl FnOnce(String) -> String, access: Access) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets = targets(None).await;
        let policy = Policy::parse(&edit(policy_yaml(&targets, concurrency))).expect("policy");
        let db = dir.path().join("mesh.db");
        let store = Arc::new(SqliteStore::open(&db).await.expect("store"));
        let config = EngineConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let engine = Engine::start(store.clone(), Arc::new(policy), config).await.expect("engine");
        let coordinator = RunningCoordinator::bind_with(
            "127.0.0.1:0".parse().expect("address"),
            engine,
            access.server_tls,
            access.authentication,
        )
        .await
        .expect("bind");
        let client = match access.client_tls {
            None => LifecycleClient::connect(coordinator.endpoint()).await.expect("client"),
            Some(files) => {
                let endpoint = format!("https://{}", coordinator.local_addr());
                let channel = tonic::transport::Endpoint::from_shared(endpoint)
                    .expect("endpoint")
                    .tls_config(files.load().expect("client TLS files"))
                    .expect("client TLS")
                    .connect()
                    .await
                    .expect("TLS client");
                LifecycleClient::new(channel)
            }
        };
        Self { targets, coordinator, client, db, store, dir }
    }

    pub fn target(&self, id: &str) -> Arc<MemoryTarget> {
        self.targets.iter().find(|t| t.id == id).expect("target").store.clone()
    }
}

/// A person's attributes.
pub fn person(username: &str, department: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("username".into(), username.into()),
        ("display_name".into(), format!("Person {username}")),
        ("email".into(), format!("{username}@example.org")),
        ("department".into(), department.into()),
    ])
}

/// An event from the source of truth.
pub fn event(
    event_id: &str,
    kind: pb::EventKind,
    person_id: &str,
    attributes: BTreeMap<String, String>,
    effective_at: &str,
) -> pb::LifecycleEvent {
    pb::LifecycleEvent {
        event_id: event_id.into(),
        kind: kind as i32,
        person_id: person_id.into(),
        attributes,
        effective_at: effective_at.into(),
        source_system: "workday".into(),
        urgent: false,
        source_changed_at: String::new(),
    }
}

/// Submits as `principal`.
pub async fn submit_as(
    client: &mut LifecycleClient<Channel>,
    event: pb::LifecycleEvent,
    principal: &str,
) -> Result<pb::Receipt, tonic::Status> {
    let mut request = tonic::Request::new(pb::SubmitEventRequest { event: Some(event) });
    request.metadata_mut().insert("x-jml-principal", principal.parse().expect("header"));
    Ok(client.submit_event(request).await?.into_inner().receipt.expect("receipt"))
}

/// Submits as the HR integration principal.
pub async fn submit(client: &mut LifecycleClient<Channel>, event: pb::LifecycleEvent) -> pb::Receipt {
    submit_as(client, event, "hr-bot").await.expect("submitted")
}

/// Follows an event until it is terminal (or until `awaiting` holds for
/// every unfinished task), returning the last status. Fails the test if the
/// stream ends early; a generous overall limit keeps a bug from hanging CI.
pub async fn until_terminal(client: &mut LifecycleClient<Channel>, event_id: &str) -> pb::EventStatus {
    let watch = async {
        let mut stream =
            client.watch_event(pb::GetEventRequest { event_id: event_id.into() }).await.expect("watch").into_inner();
        let mut last = None;
        while let Some(status) = stream.message().await.expect("stream") {
            last = Some(status);
        }
        last.expect("at least one status")
    };
    tokio::time::timeout(Duration::from_secs(120), watch).await.expect("event finishes")
}

/// Follows an event until no task is planned, dispatched or acknowledged.
pub async fn until_settled(client: &mut LifecycleClient<Channel>, event_id: &str) -> pb::EventStatus {
    let settled = async {
        loop {
            let status =
                client.get_event(pb::GetEventRequest { event_id: event_id.into() }).await.expect("status").into_inner();
            let moving = status.tasks.iter().any(|t| {
                [pb::TaskState::Planned, pb::TaskState::Dispatched, pb::TaskState::Acknowledged]
                    .iter()
                    .any(|s| *s as i32 == t.state)
            });
            if !moving {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), settled).await.expect("event settles")
}

/// A task's status by target.
pub fn task<'a>(status: &'a pb::EventStatus, target: &str) -> &'a pb::TaskStatus {
    status.tasks.iter().find(|t| t.target_id == target).expect("task for target")
}

/// An account's entitlements on a target, as `kind:id`.
pub fn held(target: &MemoryTarget, account: &str) -> Vec<String> {
    target
        .get(account)
        .map(|a| a.entitlements.iter().map(|(kind, id)| format!("{kind}:{id}")).collect())
        .unwrap_or_default()
}

/// A fresh, empty database on the test PostgreSQL cluster
/// (`JML_TEST_POSTGRES_URL`): its name and the cluster's own connection
/// options (`.database(&name)` reaches the new one). Fails
/// the test with the command to run when the cluster is not configured.
pub async fn fresh_postgres_database() -> (String, sqlx::postgres::PgConnectOptions) {
    use sqlx::Executor;
    use std::str::FromStr;
    let url = std::env::var("JML_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "JML_TEST_POSTGRES_URL is not set: run `deploy/local/postgresql.sh start RUN_DIR` and \
             `source RUN_DIR/postgresql.env` (or run .ci/run)"
        )
    });
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("JML_TEST_POSTGRES_URL is a postgres:// URL");
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("connect to the test cluster");
    let name = format!("jml_replicas_{}", uuid::Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a test database");
    admin.close().await;
    (name, options)
}
