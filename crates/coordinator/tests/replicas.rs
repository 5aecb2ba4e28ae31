//! Several coordinator replicas on one real PostgreSQL database, at the
//! level of the store and the task claims (`coordinator::claims`): three
//! claimers standing for three replicas drain a shared backlog; each task is
//! held by one replica at a time and finished exactly once, each person's
//! order per target holds across replicas, a dead replica's work is taken
//! over after its lease expires, and the audit chain stays one chain.
//!
//! Needs `JML_TEST_POSTGRES_URL` (`deploy/local/postgresql.sh start RUN_DIR`,
//! then `source RUN_DIR/postgresql.env`, or `.ci/run`); fails without it.
//!
//! Not here yet: the process-level test (three coordinator binaries,
//! 2,000 events, one SIGKILLed) needs the engine to schedule through the
//! claims, which it does not do yet.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator::PostgresStore;
use coordinator::claims::TaskClaims;
use coordinator::policy::EventKindName;
use coordinator::store::{
    AuditEntry, EventRecord, EventState, InsertOutcome, Store, TaskRecord, TaskState, verify_audit,
};
use jml_contract::v1 as pb;
use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

const LEASE: Duration = Duration::from_secs(30);
const NOW: i64 = 1_800_000_000_000;

/// A fresh database on the test cluster; the store and a pool on it.
async fn database() -> (Arc<PostgresStore>, PgPool) {
    let url = std::env::var("JML_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "JML_TEST_POSTGRES_URL is not set: run `deploy/local/postgresql.sh start RUN_DIR` and \
             `source RUN_DIR/postgresql.env` (or run .ci/run)"
        )
    });
    let options = PgConnectOptions::from_str(&url).expect("JML_TEST_POSTGRES_URL is a postgres:// URL");
    let admin = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.expect("connect");
    let name = format!("jml_replicas_{}", uuid::Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a test database");
    admin.close().await;
    let options = options.database(&name);
    let store = PostgresStore::open_with(options.clone()).await.expect("open the PostgreSQL store");
    let pool = PgPoolOptions::new().max_connections(6).connect_with(options).await.expect("connect");
    (Arc::new(store), pool)
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

/// What the three replicas did, shared between them.
#[derive(Default)]
struct Ledger {
    /// Tasks being worked on now, by replica.
    running: HashMap<(String, String), String>,
    /// Two replicas held one task at once.
    violations: Vec<String>,
    /// Per (person, target): the effective times in the order work started.
    lanes: BTreeMap<(String, String), Vec<i64>>,
    /// How often each task was finished.
    finished: HashMap<(String, String), u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_finish_every_task_once_in_each_persons_order() {
    let (store, pool) = database().await;
    let targets = ["ldap", "scim"];
    // 50 people x 3 events x 2 targets; each person's events arrive out of
    // effective order (the latest first), so arrival order alone would be wrong.
    for person in 0..50 {
        for step in [2i64, 0, 1] {
            let record = event(&format!("p{person}-e{step}"), &format!("p{person}"), NOW - 10_000 + step * 1_000);
            let tasks = targets.iter().map(|t| task(&record, t, TaskState::Planned)).collect();
            accept(store.as_ref(), record, tasks).await;
        }
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b", "replica-c"] {
        let claims = TaskClaims::new(pool.clone(), name, LEASE);
        let store = store.clone();
        let ledger = ledger.clone();
        replicas.push(tokio::spawn(async move {
            loop {
                let claimed = claims.claim(NOW, 7).await.expect("claim");
                if claimed.is_empty() {
                    if store.unfinished_tasks().await.expect("unfinished").is_empty() {
                        return;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for claim in claimed {
                    let key = (claim.event_id.clone(), claim.target_id.clone());
                    let mut task = store.task(&key.0, &key.1).await.expect("read").expect("task");
                    {
                        let mut ledger = ledger.lock().expect("ledger");
                        if let Some(other) = ledger.running.insert(key.clone(), claims.replica().to_string()) {
                            ledger.violations.push(format!("{key:?} held by {other} and {}", claims.replica()));
                        }
                        ledger
                            .lanes
                            .entry((task.person_id.clone(), task.target_id.clone()))
                            .or_default()
                            .push(task.effective_at);
                    }
                    assert!(claims.holds(&key.0, &key.1, NOW).await.expect("holds"));
                    task.state = TaskState::Verified;
                    task.attempts = 1;
                    task.dispatched_at = Some(NOW);
                    task.finished_at = Some(NOW);
                    store.save_task(task, vec![entry(&key.0, "task.verified")]).await.expect("save");
                    {
                        let mut ledger = ledger.lock().expect("ledger");
                        ledger.running.remove(&key);
                        *ledger.finished.entry(key.clone()).or_default() += 1;
                    }
                    assert!(claims.release(&key.0, &key.1).await.expect("release"));
                }
            }
        }));
    }
    for replica in replicas {
        replica.await.expect("replica");
    }
    {
        let ledger = ledger.lock().expect("ledger");
        assert_eq!(ledger.violations, Vec::<String>::new(), "a task was held by two replicas at once");
        assert_eq!(ledger.finished.len(), 50 * 3 * 2, "every task finished");
        assert!(ledger.finished.values().all(|&n| n == 1), "every task finished exactly once");
        assert_eq!(ledger.lanes.len(), 50 * 2);
        for (lane, order) in &ledger.lanes {
            assert!(order.windows(2).all(|w| w[0] < w[1]), "lane {lane:?} ran out of effective order: {order:?}");
        }
    }
    for person in 0..50 {
        for step in 0..3 {
            let id = format!("p{person}-e{step}");
            assert_eq!(store.event(&id).await.expect("read").expect("event").state, EventState::Verified, "{id}");
        }
    }
    let verdict = verify_audit(store.as_ref()).await.expect("verify");
    assert_eq!(verdict.broken, None);
    // Per event: accepted, 2 x task.verified, event.verified, and identity.updated
    // when it was the newest verified so far for the person.
    assert!(verdict.records >= 150 * 4, "{} records", verdict.records);
}

#[tokio::test]
async fn a_dead_replicas_tasks_are_taken_over_after_its_lease_expires() {
    let (store, pool) = database().await;
    for n in 0..5 {
        let record = event(&format!("e{n}"), &format!("p{n}"), NOW - 1_000);
        accept(store.as_ref(), record.clone(), vec![task(&record, "ldap", TaskState::Planned)]).await;
    }
    let dead = TaskClaims::new(pool.clone(), "replica-dead", LEASE);
    let alive = TaskClaims::new(pool.clone(), "replica-alive", LEASE);
    assert_eq!(dead.claim(NOW, 100).await.expect("claim").len(), 5);
    assert!(alive.claim(NOW + 1, 100).await.expect("claim").is_empty(), "live leases are not taken over");
    // Renewing extends the leases past the first expiry.
    assert_eq!(dead.renew(NOW + 20_000).await.expect("renew"), 5);
    assert!(alive.claim(NOW + 31_000, 100).await.expect("claim").is_empty(), "renewed leases hold");
    // The replica dies: nothing renews; after expiry another replica takes over.
    let taken = alive.claim(NOW + 50_001, 100).await.expect("claim");
    assert_eq!(taken.iter().map(|c| c.event_id.as_str()).collect::<Vec<_>>(), vec!["e0", "e1", "e2", "e3", "e4"]);
    assert!(!dead.holds("e0", "ldap", NOW + 50_001).await.expect("holds"), "the dead replica lost its lease");
    assert!(alive.holds("e0", "ldap", NOW + 50_001).await.expect("holds"));
    assert!(!dead.release("e0", "ldap").await.expect("release"), "a replica cannot give back what it lost");
    assert_eq!(dead.renew(NOW + 50_002).await.expect("renew"), 0, "nor renew it");
    assert!(alive.release("e0", "ldap").await.expect("release"));
}

#[tokio::test]
async fn approvals_and_backoff_are_not_claimed_and_hold_back_the_lane() {
    let (store, pool) = database().await;
    let claims = TaskClaims::new(pool.clone(), "replica-a", LEASE);
    // p1's first task awaits approval: neither it nor p1's later task may run.
    let first = event("p1-e1", "p1", NOW - 2_000);
    accept(store.as_ref(), first.clone(), vec![task(&first, "ldap", TaskState::AwaitingApproval)]).await;
    let second = event("p1-e2", "p1", NOW - 1_000);
    accept(store.as_ref(), second.clone(), vec![task(&second, "ldap", TaskState::Planned)]).await;
    // p2's task backs off until NOW + 5 s.
    let backing_off = event("p2-e1", "p2", NOW - 1_000);
    let mut retry = task(&backing_off, "ldap", TaskState::Planned);
    retry.next_attempt_at = Some(NOW + 5_000);
    accept(store.as_ref(), backing_off, vec![retry]).await;
    assert!(claims.claim(NOW, 100).await.expect("claim").is_empty());
    let after_backoff = claims.claim(NOW + 5_000, 100).await.expect("claim");
    assert_eq!(after_backoff.iter().map(|c| c.event_id.as_str()).collect::<Vec<_>>(), vec!["p2-e1"]);
    // Approved: the first task becomes claimable, the second still waits behind it.
    let mut approved = store.task("p1-e1", "ldap").await.expect("read").expect("task");
    approved.state = TaskState::Planned;
    store.save_task(approved, vec![entry("p1-e1", "task.approved")]).await.expect("save");
    let claimed = claims.claim(NOW + 5_000, 100).await.expect("claim");
    let ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
    assert!(ids.contains(&"p1-e1") && !ids.contains(&"p1-e2"), "{ids:?}");
}
