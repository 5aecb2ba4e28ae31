//! Several coordinator replicas on one real PostgreSQL database: the lane
//! leases (`coordinator::claims`) directly (one holder at a time, takeover
//! after expiry, fencing of a replica that lost its lease in the store and,
//! by its lease epoch, at the connector, a schedule run
//! once per period), and three in-process engines started with
//! `Engine::start_replica` sharing one database and four reference
//! connectors (every event finished once, each person's order held, one
//! audit chain). The process-level test with SIGKILL is replica_processes.rs.
//!
//! Needs `JML_TEST_POSTGRES_URL` (`deploy/local/postgresql.sh start RUN_DIR`,
//! then `source RUN_DIR/postgresql.env`, or `.ci/run`); fails without it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coordinator::claims::LaneLeases;
use coordinator::policy::EventKindName;
use coordinator::server::RunningCoordinator;
use coordinator::store::{
    AuditEntry, EventRecord, EventState, InsertOutcome, Store, StoreError, TaskRecord, TaskState, verify_audit,
};
use coordinator::{Engine, EngineConfig, Policy, PostgresStore};
use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

const LEASE: Duration = Duration::from_secs(30);
const NOW: i64 = 1_800_000_000_000;

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis())
        .expect("ms")
}

/// A fresh database on the test cluster; the store and a pool on it.
async fn database() -> (Arc<PostgresStore>, PgPool) {
    let (store, pool, _) = database_with_options().await;
    (store, pool)
}

/// As [`database`], also giving the connection options of the database.
async fn database_with_options() -> (Arc<PostgresStore>, PgPool, PgConnectOptions) {
    let (name, cluster) = support::fresh_postgres_database().await;
    let options = cluster.database(&name);
    let store = PostgresStore::open_with(options.clone()).await.expect("open the PostgreSQL store");
    let pool = PgPoolOptions::new().max_connections(6).connect_with(options.clone()).await.expect("connect");
    (Arc::new(store), pool, options)
}

fn event(event_id: &str, person_id: &str, effective_at: i64) -> EventRecord {
    EventRecord {
        seq: 0,
        event_id: event_id.into(),
        kind: EventKindName::Mover,
        person_id: person_id.into(),
        attributes: BTreeMap::from([("event".to_string(), event_id.to_string())]),
        effective_at,
        source_system: "hr".into(),
        initiator: "hr-feed".into(),
        urgent: false,
        received_at: effective_at,
        policy_hash: "policy".into(),
        plan: pb::Plan { person_id: person_id.into(), ..Default::default() },
        plan_hash: "plan".into(),
        trace_id: String::new(),
        state: EventState::InProgress,
        finished_at: None,
    }
}

fn task(event: &EventRecord, target_id: &str, state: TaskState) -> TaskRecord {
    TaskRecord {
        event_id: event.event_id.clone(),
        target_id: target_id.into(),
        event_seq: 0,
        person_id: event.person_id.clone(),
        effective_at: event.effective_at,
        urgent: false,
        state,
        planned: pb::PlannedTarget { target_id: target_id.into(), ..Default::default() },
        grants_access: true,
        command_id: format!("{}/{target_id}", event.event_id),
        attempts: 0,
        next_attempt_at: None,
        last_error: String::new(),
        acknowledgement: None,
        read_back: None,
        differences: Vec::new(),
        deadline_at: event.effective_at + 60_000,
        deadline_breached: false,
        planned_at: event.received_at,
        dispatched_at: None,
        acknowledged_at: None,
        finished_at: None,
        residual_risks: Vec::new(),
    }
}

fn entry(event_id: &str, action: &str) -> AuditEntry {
    AuditEntry {
        at: NOW,
        principal: "coordinator".into(),
        event_id: event_id.into(),
        action: action.into(),
        payload: serde_json::json!({}),
    }
}

async fn accept(store: &dyn Store, event: EventRecord, tasks: Vec<TaskRecord>) {
    let id = event.event_id.clone();
    match store.insert_event(event, tasks, vec![entry(&id, "event.accepted")]).await.expect("insert") {
        InsertOutcome::Inserted(_) => {}
        InsertOutcome::Duplicate(_) => panic!("{id} inserted twice"),
    }
}

fn lane(person: &str, target: &str) -> (String, String) {
    (person.to_owned(), target.to_owned())
}

#[tokio::test]
async fn a_lane_has_one_holder_and_is_taken_over_after_its_lease_expires() {
    let (store, pool) = database().await;
    for n in 0..5 {
        let record = event(&format!("e{n}"), &format!("p{n}"), NOW - 1_000);
        accept(store.as_ref(), record.clone(), vec![task(&record, "ldap", TaskState::Planned)]).await;
    }
    let dead = LaneLeases::new(pool.clone(), "replica-dead", LEASE);
    let alive = LaneLeases::new(pool.clone(), "replica-alive", LEASE);
    let lanes: Vec<_> = (0..5).map(|n| lane(&format!("p{n}"), "ldap")).collect();
    let mut claimed = dead.claim_free(NOW, 100).await.expect("claim");
    claimed.sort();
    assert_eq!(claimed, lanes);
    assert!(alive.claim_free(NOW + 1, 100).await.expect("claim").is_empty(), "live leases are not taken over");
    assert!(alive.claim_lanes(&lanes, NOW + 1).await.expect("claim").is_empty(), "not even by name");
    // Renewing extends the leases past the first expiry.
    assert_eq!(dead.renew(&lanes, NOW + 20_000).await.expect("renew").len(), 5);
    assert!(alive.claim_free(NOW + 31_000, 100).await.expect("claim").is_empty(), "renewed leases hold");
    // The replica dies: nothing renews; after expiry another replica takes over.
    let mut taken = alive.claim_free(NOW + 50_001, 100).await.expect("claim");
    taken.sort();
    assert_eq!(taken, lanes);
    assert!(dead.renew(&lanes, NOW + 50_002).await.expect("renew").is_empty(), "the dead replica lost its leases");
    // The new holder loads what it needs to go on: the unfinished tasks.
    let state = alive.lane_state(&taken).await.expect("lane state");
    assert_eq!(state.tasks.len(), 5);
    assert!(state.watermarks.is_empty(), "nothing was dispatched yet");
    // Lanes without unfinished work are never claimed.
    let done = event("done", "p9", NOW - 1_000);
    accept(store.as_ref(), done.clone(), vec![task(&done, "ldap", TaskState::Verified)]).await;
    assert!(LaneLeases::new(pool.clone(), "c", LEASE).claim_free(NOW + 90_000, 100).await.expect("claim").len() == 5);
}

#[tokio::test]
async fn a_replica_that_lost_its_lease_cannot_write_its_lanes_tasks() {
    let (store, pool) = database().await;
    let record = event("fenced", "p1", NOW - 1_000);
    accept(store.as_ref(), record.clone(), vec![task(&record, "ldap", TaskState::Planned)]).await;
    let stalled = LaneLeases::new(pool.clone(), "replica-stalled", LEASE);
    let taker = LaneLeases::new(pool.clone(), "replica-taker", LEASE);
    let claimed_at = now_ms();
    assert_eq!(stalled.claim_free(claimed_at, 10).await.expect("claim").len(), 1);
    let mut dispatched = store.task("fenced", "ldap").await.expect("read").expect("task");
    dispatched.state = TaskState::Dispatched;
    dispatched.attempts = 1;
    dispatched.dispatched_at = Some(now_ms());
    store
        .save_held_task(dispatched.clone(), vec![entry("fenced", "task.dispatched")], stalled.replica())
        .await
        .expect("the holder writes");
    // The holder stalls past its lease; another replica takes the lane over.
    // Leases are decided at the time each claim names, so the taker claims
    // at a time past the stalled holder's lease (no waiting on the clock).
    let past_the_lease = claimed_at + i64::try_from(LEASE.as_millis()).expect("lease fits") + 1;
    assert!(stalled.renew(&[lane("p1", "ldap")], past_the_lease).await.expect("renew").is_empty(), "expired");
    assert_eq!(taker.claim_free(past_the_lease, 10).await.expect("claim").len(), 1);
    let mut late = dispatched.clone();
    late.state = TaskState::Verified;
    late.finished_at = Some(now_ms());
    let refused = store.save_held_task(late, vec![entry("fenced", "task.verified")], stalled.replica()).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost(_))), "{refused:?}");
    let stored = store.task("fenced", "ldap").await.expect("read").expect("task");
    assert_eq!(stored.state, TaskState::Dispatched, "the late write left nothing");
    let actions: Vec<String> =
        store.event_audit("fenced").await.expect("audit").into_iter().map(|record| record.action).collect();
    assert_eq!(actions, ["event.accepted", "task.dispatched"], "nor any audit record");
    // The new holder writes; the watermark it loads says the lane was dispatched.
    let state = taker.lane_state(&[lane("p1", "ldap")]).await.expect("lane state");
    assert_eq!(state.watermarks, vec![(lane("p1", "ldap"), (NOW - 1_000, stored.event_seq))]);
    let mut verified = stored;
    verified.state = TaskState::Verified;
    verified.finished_at = Some(now_ms());
    let finished = store.save_held_task(verified, vec![entry("fenced", "task.verified")], taker.replica()).await;
    assert_eq!(finished.expect("the new holder writes"), Some(EventState::Verified));
    assert_eq!(verify_audit(store.as_ref()).await.expect("verify").broken, None);
}

/// Lease epochs, from the lanes table to the connector: every takeover
/// bumps the lane's epoch (the holder renewing keeps it), and a reference
/// connector served by the kit refuses the command of the replica whose
/// lease was taken over once the new holder reached it, leaving the new
/// holder's state on the target.
#[tokio::test]
async fn a_stale_holders_command_is_refused_by_the_connector_after_a_takeover() {
    use connector_kit::client::{ClientOptions, ConnectorClient};
    use connector_kit::server::ConnectorServer;
    use connector_memory::{MemoryConfig, MemoryConnector, MemoryTarget};

    let (store, pool) = database().await;
    let record = event("epochs", "p1", NOW - 1_000);
    accept(store.as_ref(), record.clone(), vec![task(&record, "ldap", TaskState::Planned)]).await;
    let the_lane = lane("p1", "ldap");
    let stale = LaneLeases::new(pool.clone(), "replica-stale", LEASE);
    let taker = LaneLeases::new(pool.clone(), "replica-taker", LEASE);
    assert_eq!(stale.epoch(&the_lane), None, "no epoch before a claim");
    assert_eq!(stale.claim_free(NOW, 10).await.expect("claim"), vec![the_lane.clone()]);
    let first = stale.epoch(&the_lane).expect("claimed with an epoch");
    assert_eq!(stale.claim_lanes(std::slice::from_ref(&the_lane), NOW + 1_000).await.expect("reclaim").len(), 1);
    assert_eq!(stale.epoch(&the_lane), Some(first), "the holder renewing its own live lease keeps the epoch");
    // The holder stalls (or is cut off from the database) past its lease: taken over.
    assert_eq!(taker.claim_free(NOW + 31_001, 10).await.expect("takeover"), vec![the_lane.clone()]);
    let second = taker.epoch(&the_lane).expect("taken over with an epoch");
    assert!(second > first, "a takeover bumps the epoch ({first} -> {second})");
    assert_eq!(stale.epoch(&the_lane), Some(first), "the stale holder still believes in its epoch");

    let connector_target = Arc::new(MemoryTarget::new(&MemoryConfig::default().entitlements, None));
    let server = ConnectorServer::new(MemoryConnector::new("ldap", connector_target.clone()))
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("connector binds");
    let client = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    let desired = |groups: &[&str]| pb::DesiredAccount {
        account: Some(pb::AccountRef { person_id: "p1".into(), account_name: "p1".into() }),
        presence: pb::Presence::Present as i32,
        enabled: true,
        entitlements: groups
            .iter()
            .map(|id| pb::Entitlement { kind: "group".into(), id: (*id).into(), privileged: false })
            .collect(),
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    // The new holder applies the lane's latest state under its epoch.
    client.apply_fenced("taker-cmd", desired(&[]), second).await.expect("the new holder applies");
    // The stale holder's command (a retry, a queued call) arrives afterwards: refused.
    let refused =
        client.apply_fenced("stale-cmd", desired(&["staff"]), first).await.expect_err("the stale holder is fenced");
    assert_eq!(refused.kind, connector_kit::ErrorKind::StaleLease, "{refused}");
    assert!(!refused.retryable);
    let shown = connector_target.get("p1").expect("the account exists");
    assert!(shown.entitlements.is_empty(), "nothing of the stale holder reached the target: {:?}", shown.entitlements);
    server.shutdown().await.expect("connector stops");
}

#[tokio::test]
async fn a_schedule_runs_once_per_period_across_replicas() {
    let (_store, pool) = database().await;
    let a = LaneLeases::new(pool.clone(), "a", LEASE);
    let b = LaneLeases::new(pool.clone(), "b", LEASE);
    let every = Duration::from_secs(60);
    assert!(a.take_schedule_run("reconcile:ldap", every, NOW).await.expect("take"));
    assert!(!b.take_schedule_run("reconcile:ldap", every, NOW + 1_000).await.expect("take"), "same period");
    assert!(b.take_schedule_run("reconcile:scim", every, NOW + 1_000).await.expect("take"), "another schedule");
    assert!(b.take_schedule_run("reconcile:ldap", every, NOW + 60_000).await.expect("take"), "next period");
    assert!(!a.take_schedule_run("reconcile:ldap", every, NOW + 60_500).await.expect("take"));
}

/// Three engines on one database, each with its own store (connection) and
/// replica name, serving the lifecycle API, over four reference connectors.
struct Replicas {
    first_store: Arc<PostgresStore>,
    pool: PgPool,
    dir: tempfile::TempDir,
    targets: Vec<support::Target>,
    servers: Vec<RunningCoordinator>,
    clients: Vec<LifecycleClient<tonic::transport::Channel>>,
}

impl Replicas {
    async fn start() -> Self {
        let (first_store, pool, options) = database_with_options().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let targets = support::targets(Some(dir.path())).await;
        let policy = Arc::new(Policy::parse(&support::policy_yaml(&targets, 4)).expect("policy"));
        let config = EngineConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for name in ["replica-a", "replica-b", "replica-c"] {
            let store: Arc<dyn Store> = if servers.is_empty() {
                first_store.clone()
            } else {
                Arc::new(PostgresStore::open_with(options.clone()).await.expect("store"))
            };
            let leases = LaneLeases::new(pool.clone(), name, Duration::from_secs(5));
            let engine = Engine::start_replica(store, policy.clone(), config.clone(), leases).await.expect("engine");
            let server = RunningCoordinator::bind("127.0.0.1:0".parse().expect("address"), engine).await.expect("bind");
            clients.push(LifecycleClient::connect(server.endpoint()).await.expect("client"));
            servers.push(server);
        }
        Self { first_store, pool, dir, targets, servers, clients }
    }

    fn target(&self, id: &str) -> &support::Target {
        self.targets.iter().find(|t| t.id == id).expect("target")
    }

    async fn shutdown(self) {
        for server in self.servers {
            server.shutdown().await.expect("shutdown");
        }
    }
}

/// An approval decided on other replicas than the one running the lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_decided_on_other_replicas_release_the_task_once() {
    let mut mesh = Replicas::start().await;
    let joiner = support::event("sre-1", pb::EventKind::Joiner, "P9", support::person("sre1", "SRE"), "");
    support::submit(&mut mesh.clients[0], joiner).await;
    let status = support::until_settled(&mut mesh.clients[1], "sre-1").await;
    assert_eq!(support::task(&status, "vault").state, pb::TaskState::AwaitingApproval as i32, "{status:?}");
    assert!(mesh.target("vault").store.get("sre1").is_none(), "nothing applied before approval");
    for (client, principal, target, approve) in
        [(1, "alice", "vault", true), (2, "bob", "vault", true), (2, "carol", "ldap", false)]
    {
        let mut request = tonic::Request::new(pb::ApprovalRequest {
            event_id: "sre-1".into(),
            target_id: target.into(),
            comment: "".into(),
        });
        request.metadata_mut().insert("x-jml-principal", principal.parse().expect("header"));
        let client = &mut mesh.clients[client];
        if approve { client.approve(request).await } else { client.reject(request).await }.expect("decided");
    }
    let status = support::until_terminal(&mut mesh.clients[2], "sre-1").await;
    assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
    assert_eq!(support::held(&mesh.target("vault").store, "sre1"), vec!["group:prod-access"]);
    assert_eq!(support::held(&mesh.target("ldap").store, "sre1"), vec!["group:staff"]);
    let count = |action: &'static str| {
        let pool = mesh.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit WHERE event_id = 'sre-1' AND action = $1")
                .bind(action)
                .fetch_one(&pool)
                .await
                .expect("audit")
        }
    };
    assert_eq!(count("approval.approve").await, 2);
    assert_eq!(count("task.approved").await, 1, "the vault task released once");
    assert_eq!(count("task.replanned_without_rejected_grants").await, 1);
    assert_eq!(count("task.verified").await, 4, "each target verified once");
    mesh.shutdown().await;
}

/// Every event finished once, each person's order held, the work shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_work_once_each_in_each_persons_order() {
    let mut mesh = Replicas::start().await;
    // 120 joiners, then two movers each for 40 of them, round-robin over the
    // replicas, so a person's events are accepted by different replicas.
    let mut events = Vec::new();
    for n in 0..120 {
        let name = format!("r{n:03}");
        events.push(support::event(
            &format!("join-{n}"),
            pb::EventKind::Joiner,
            &name,
            support::person(&name, "Sales"),
            "",
        ));
    }
    for round in 0..2 {
        for n in 0..40 {
            let name = format!("r{n:03}");
            let department = if round == 0 { "Engineering" } else { "Sales" };
            events.push(support::event(
                &format!("move-{round}-{n}"),
                pb::EventKind::Mover,
                &name,
                support::person(&name, department),
                "",
            ));
        }
    }
    for (index, event) in events.iter().enumerate() {
        support::submit(&mut mesh.clients[index % 3], event.clone()).await;
    }
    for (index, event) in events.iter().enumerate() {
        let status = support::until_terminal(&mut mesh.clients[(index + 1) % 3], &event.event_id).await;
        assert!(
            status.state == pb::EventState::Verified as i32 || status.state == pb::EventState::Superseded as i32,
            "{status:?}"
        );
    }
    // The last event of every person is verified everywhere and the targets
    // show its access: r000..r039 are back in Sales, like the others.
    for n in 0..120 {
        let name = format!("r{n:03}");
        let last = if n < 40 { format!("move-1-{n}") } else { format!("join-{n}") };
        let status = support::until_terminal(&mut mesh.clients[0], &last).await;
        assert_eq!(status.state, pb::EventState::Verified as i32, "{status:?}");
        let groups = support::held(&mesh.target("ldap").store, &name);
        assert!(groups.iter().any(|g| g.contains("sales")), "{name}: {groups:?}");
        assert!(!groups.iter().any(|g| g.contains("engineering")), "{name}: {groups:?}");
    }
    // Every (event, target) verified at most once, and each task verified
    // or superseded, never both.
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT event_id, payload::json->>'target_id', count(*) FROM audit WHERE action = 'task.verified' \
         GROUP BY 1, 2",
    )
    .fetch_all(&mesh.pool)
    .await
    .expect("audit");
    assert!(rows.iter().all(|(_, _, count)| *count == 1), "a task verified twice");
    let superseded_and_verified: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks t WHERE t.state = 'superseded' AND EXISTS (SELECT 1 FROM audit a \
         WHERE a.action = 'task.verified' AND a.event_id = t.event_id AND a.payload::json->>'target_id' = t.target_id)",
    )
    .fetch_one(&mesh.pool)
    .await
    .expect("tasks");
    assert_eq!(superseded_and_verified, 0);
    // Work was shared: every replica held lanes.
    let holders: Vec<String> = sqlx::query_scalar("SELECT DISTINCT claimed_by FROM lanes WHERE claimed_by IS NOT NULL")
        .fetch_all(&mesh.pool)
        .await
        .expect("lanes");
    assert_eq!(holders.len(), 3, "{holders:?}");
    // No account created twice on any target.
    for target in TARGETS_WITH_ACCOUNTS {
        let journal = std::fs::read_to_string(mesh.dir.path().join(format!("{target}.journal"))).expect("journal");
        let mut creates = BTreeMap::<String, usize>::new();
        for line in journal.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.get(2) == Some(&"create") {
                *creates.entry(fields[1].to_owned()).or_default() += 1;
            }
        }
        assert_eq!(creates.len(), 120, "{target}");
        assert!(creates.values().all(|n| *n == 1), "{target}: an account created twice");
    }
    let verdict = verify_audit(mesh.first_store.as_ref()).await.expect("verify");
    assert_eq!(verdict.broken, None);
    mesh.shutdown().await;
}

const TARGETS_WITH_ACCOUNTS: [&str; 3] = ["ldap", "scim", "aws"];
