//! One store test suite, two backends: every case runs against the embedded
//! SQLite store (a temporary file) and against the PostgreSQL store on a real
//! PostgreSQL server (a fresh database per case on the cluster named by
//! `JML_TEST_POSTGRES_URL`; start one with `deploy/local/postgresql.sh start
//! RUN_DIR` and `source RUN_DIR/postgresql.env`, or run `.ci/run`). Without
//! that variable the PostgreSQL cases fail, saying so.
//!
//! A few cases exist only for PostgreSQL: two store instances on one
//! database, standing for two coordinator replicas, must still write one
//! unbroken audit chain and complete each event exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use coordinator::policy::EventKindName;
use coordinator::store::{
    ApprovalRecord, AuditEntry, EventRecord, EventState, InsertOutcome, Store, StoreError, TaskRecord, TaskState,
    verify_audit,
};
use coordinator::{PostgresStore, SqliteStore};
use jml_contract::v1 as pb;
use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A store under test, with a way to open it again and to reach its
/// database behind its back.
struct Fixture {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite { path: PathBuf, _dir: tempfile::TempDir },
    Postgres { options: Box<PgConnectOptions> },
}

fn postgres_url() -> String {
    std::env::var("JML_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "JML_TEST_POSTGRES_URL is not set: run `deploy/local/postgresql.sh start RUN_DIR` and \
             `source RUN_DIR/postgresql.env` (or run .ci/run)"
        )
    })
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("lifecycle.db");
        let store = SqliteStore::open(&path).await.expect("open the SQLite store");
        Self { store: Arc::new(store), backend: Backend::Sqlite { path, _dir: dir } }
    }

    /// A fresh database on the test cluster, so cases do not see each other.
    async fn postgres() -> Self {
        let options = PgConnectOptions::from_str(&postgres_url()).expect("JML_TEST_POSTGRES_URL is a postgres:// URL");
        let admin = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.expect("connect");
        let name = format!("jml_store_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create a test database");
        admin.close().await;
        let options = options.database(&name);
        let store = PostgresStore::open_with(options.clone()).await.expect("open the PostgreSQL store");
        Self { store: Arc::new(store), backend: Backend::Postgres { options: Box::new(options) } }
    }

    /// A second store on the same database (a restart, or another replica).
    async fn open_again(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.expect("reopen")),
            Backend::Postgres { options } => {
                Arc::new(PostgresStore::open_with((**options).clone()).await.expect("open a second store"))
            }
        }
    }

    /// Runs SQL on the database directly, as an intruder would.
    async fn execute_directly(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await;
                pool.expect("open the file").execute(sql).await.expect("direct SQL");
            }
            Backend::Postgres { options } => {
                let pool = PgPoolOptions::new().max_connections(1).connect_with((**options).clone()).await;
                pool.expect("connect").execute(sql).await.expect("direct SQL");
            }
        }
    }
}

fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn event(event_id: &str, person_id: &str, kind: EventKindName, effective_at: i64) -> EventRecord {
    EventRecord {
        seq: 0,
        event_id: event_id.into(),
        kind,
        person_id: person_id.into(),
        attributes: attributes(&[("department", "engineering"), ("event", event_id)]),
        effective_at,
        source_system: "hr".into(),
        initiator: "hr-feed".into(),
        urgent: kind == EventKindName::Leaver,
        received_at: effective_at + 1,
        policy_hash: "policy-hash".into(),
        plan: pb::Plan { person_id: person_id.into(), ..Default::default() },
        plan_hash: format!("plan-{event_id}"),
        trace_id: format!("trace-{event_id}"),
        state: EventState::InProgress,
        finished_at: None,
    }
}

fn task(event: &EventRecord, target_id: &str) -> TaskRecord {
    let grants = event.kind != EventKindName::Leaver;
    TaskRecord {
        event_id: event.event_id.clone(),
        target_id: target_id.into(),
        event_seq: 0,
        person_id: event.person_id.clone(),
        effective_at: event.effective_at,
        urgent: event.urgent,
        state: TaskState::Planned,
        planned: pb::PlannedTarget {
            target_id: target_id.into(),
            deadline_seconds: 60,
            workflows: vec!["staff".into()],
            ..Default::default()
        },
        grants_access: grants,
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
        at: 1_700_000_000_000,
        principal: "coordinator".into(),
        event_id: event_id.into(),
        action: action.into(),
        payload: serde_json::json!({ "action": action, "nested": { "list": [1, 2, 3] } }),
    }
}

/// Inserts an event with tasks on `targets`; returns the stored event and tasks.
async fn accept(store: &dyn Store, event: EventRecord, targets: &[&str]) -> (EventRecord, Vec<TaskRecord>) {
    let tasks: Vec<TaskRecord> = targets.iter().map(|t| task(&event, t)).collect();
    let id = event.event_id.clone();
    match store.insert_event(event.clone(), tasks.clone(), vec![entry(&id, "event.accepted")]).await {
        Ok(InsertOutcome::Inserted(seq)) => {
            (EventRecord { seq, ..event }, tasks.into_iter().map(|t| TaskRecord { event_seq: seq, ..t }).collect())
        }
        other => panic!("inserting {id}: {other:?}"),
    }
}

fn finished(mut task: TaskRecord, state: TaskState, at: i64) -> TaskRecord {
    task.state = state;
    task.attempts += 1;
    task.dispatched_at = Some(at - 2);
    task.acknowledged_at = Some(at - 1);
    task.finished_at = Some(at);
    task
}

async fn assert_chain_intact(store: &dyn Store, records: u64) {
    let verdict = verify_audit(store).await.expect("walk the chain");
    assert_eq!(verdict.broken, None, "the audit chain is broken");
    assert_eq!(verdict.records, records, "audit records in the chain");
}

/// The cases, each run on both backends.
mod cases {
    use super::*;

    pub async fn an_event_id_is_accepted_once(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let first = event("e1", "p1", EventKindName::Joiner, 1_000);
        let (stored, tasks) = accept(store, first.clone(), &["ldap", "scim"]).await;
        assert!(stored.seq > 0);
        let mut replay = first.clone();
        replay.attributes = attributes(&[("department", "sales")]);
        match store.insert_event(replay, vec![task(&first, "vault")], vec![entry("e1", "event.accepted")]).await {
            Ok(InsertOutcome::Duplicate(original)) => assert_eq!(*original, stored),
            other => panic!("expected the first event back, got {other:?}"),
        }
        assert_eq!(store.event("e1").await.expect("read"), Some(stored.clone()));
        let mut read: Vec<TaskRecord> = store.tasks("e1").await.expect("read tasks");
        read.sort_by(|a, b| a.target_id.cmp(&b.target_id));
        assert_eq!(read, tasks, "the tasks as stored, with the event's arrival order; no third task");
        assert_eq!(store.event_audit("e1").await.expect("audit").len(), 1, "the replay wrote no audit record");
        assert_chain_intact(store, 1).await;
    }

    pub async fn a_task_round_trips_every_field(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (_, tasks) = accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap"]).await;
        let mut saved = tasks[0].clone();
        saved.state = TaskState::Acknowledged;
        saved.attempts = 3;
        saved.next_attempt_at = Some(5_000);
        saved.last_error = "UNAVAILABLE: connection refused \u{1F512} 'quoted' \"double\"".into();
        saved.acknowledgement = Some(pb::ApplyResponse { ..Default::default() });
        saved.read_back = Some(pb::AccountState { ..Default::default() });
        saved.differences = vec!["groups: missing admins".into(), "enabled: false".into()];
        saved.dispatched_at = Some(4_000);
        saved.acknowledged_at = Some(4_100);
        assert_eq!(store.save_task(saved.clone(), vec![entry("e1", "task.acknowledged")]).await.expect("save"), None);
        assert_eq!(store.task("e1", "ldap").await.expect("read"), Some(saved));
        assert_eq!(store.task("e1", "nowhere").await.expect("read"), None);
        assert_eq!(store.event("missing").await.expect("read"), None);
    }

    pub async fn finishing_every_task_finishes_the_event_and_records_the_identity(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let joiner = event("join", "p1", EventKindName::Joiner, 1_000);
        let (_, tasks) = accept(store, joiner.clone(), &["ldap", "scim"]).await;
        let first = store.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await;
        assert_eq!(first.expect("save"), None, "one task left: the event is still in progress");
        assert_eq!(store.identity("p1").await.expect("read"), None);
        let second = store.save_task(finished(tasks[1].clone(), TaskState::Verified, 2_500), vec![]).await;
        assert_eq!(second.expect("save"), Some(EventState::Verified));
        let stored = store.event("join").await.expect("read").expect("event");
        assert_eq!((stored.state, stored.finished_at), (EventState::Verified, Some(2_500)));
        let identity = store.identity("p1").await.expect("read").expect("identity after a verified joiner");
        assert_eq!(identity.attributes, joiner.attributes);
        assert_eq!(identity.targets, BTreeSet::from(["ldap".to_string(), "scim".to_string()]));
        assert!(!identity.has_left);
        let context = store.person_context("p1").await.expect("context");
        assert_eq!(context.provisioned, identity.targets);
        assert_eq!(context.latest_attributes, Some(joiner.attributes.clone()));

        let leaver = event("leave", "p1", EventKindName::Leaver, 3_000);
        let (_, tasks) = accept(store, leaver.clone(), &["ldap", "scim"]).await;
        for (index, task) in tasks.into_iter().enumerate() {
            store.save_task(finished(task, TaskState::Verified, 4_000 + index as i64), vec![]).await.expect("save");
        }
        let identity = store.identity("p1").await.expect("read").expect("identity");
        assert!(identity.has_left && identity.targets.is_empty() && identity.event_id == "leave");

        // An older event verified late does not overwrite the newer identity.
        let late = event("late-mover", "p1", EventKindName::Mover, 2_000);
        let (_, tasks) = accept(store, late, &["ldap"]).await;
        let state = store.save_task(finished(tasks[0].clone(), TaskState::Verified, 5_000), vec![]).await;
        assert_eq!(state.expect("save"), Some(EventState::Verified));
        assert_eq!(store.identity("p1").await.expect("read").expect("identity").event_id, "leave");
        // event.accepted x3, event.verified x3, identity.updated x2.
        assert_chain_intact(store, 8).await;
    }

    pub async fn a_failed_task_fails_the_event_and_all_superseded_supersedes_it(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (_, tasks) = accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap", "scim"]).await;
        store.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await.expect("save");
        let state = store.save_task(finished(tasks[1].clone(), TaskState::Failed, 2_100), vec![]).await;
        assert_eq!(state.expect("save"), Some(EventState::Failed));
        assert_eq!(store.identity("p1").await.expect("read"), None, "a failed event records no identity");

        let (_, tasks) = accept(store, event("e2", "p2", EventKindName::Joiner, 1_000), &["ldap", "scim"]).await;
        for task in tasks {
            store.save_task(finished(task, TaskState::Superseded, 3_000), vec![]).await.expect("save");
        }
        assert_eq!(store.event("e2").await.expect("read").expect("event").state, EventState::Superseded);
        // Saving a terminal task again does not finish the event a second time.
        let again = store.tasks("e2").await.expect("read").remove(0);
        assert_eq!(store.save_task(again, vec![]).await.expect("save"), None);
        assert_eq!(
            store.event_audit("e2").await.expect("audit").iter().filter(|r| r.action == "event.superseded").count(),
            1
        );
    }

    pub async fn residual_risks_are_stored_with_the_task_and_decide_the_event(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (_, tasks) = accept(store, event("e1", "p1", EventKindName::Leaver, 1_000), &["ldap", "scim"]).await;
        store.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await.expect("save");
        let mut risky = finished(tasks[1].clone(), TaskState::VerifiedWithResidualRisk, 2_100);
        risky.residual_risks = vec![pb::ResidualRisk {
            credential_kind: "application_session".into(),
            description: "sessions the application issued".into(),
            bound: pb::ResidualBound::Unknown as i32,
            max_lifetime: None,
        }];
        let state = store.save_task(risky.clone(), vec![]).await.expect("save");
        assert_eq!(state, Some(EventState::VerifiedWithResidualRisk));
        let stored = store.task("e1", "scim").await.expect("read").expect("task");
        assert_eq!(stored.residual_risks, risky.residual_risks);
        assert_eq!(stored.state, TaskState::VerifiedWithResidualRisk);
        assert!(store.task("e1", "ldap").await.expect("read").expect("task").residual_risks.is_empty());
        assert!(store.identity("p1").await.expect("read").is_some_and(|i| i.has_left), "the departure is recorded");
        assert!(store.unfinished_tasks().await.expect("read").is_empty(), "a residual risk is terminal");
    }

    pub async fn a_breach_is_flagged_once_and_never_cleared(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (_, tasks) = accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap", "scim"]).await;
        for _ in 0..2 {
            store.mark_breached("e1".into(), "ldap".into(), entry("e1", "task.deadline_breached")).await.expect("mark");
        }
        let breaches = store.event_audit("e1").await.expect("audit");
        assert_eq!(breaches.iter().filter(|r| r.action == "task.deadline_breached").count(), 1);
        // A later save carrying the old flag does not clear it.
        let mut stale = tasks[0].clone();
        stale.attempts = 1;
        store.save_task(stale, vec![]).await.expect("save");
        assert!(store.task("e1", "ldap").await.expect("read").expect("task").deadline_breached);
        // Overdue: the breached task, and the unfinished one past its deadline.
        let overdue = store.overdue(1_000 + 60_001).await.expect("overdue");
        let listed: BTreeSet<(String, String)> =
            overdue.iter().map(|o| (o.event_id.clone(), o.target_id.clone())).collect();
        assert_eq!(listed, BTreeSet::from([("e1".into(), "ldap".into()), ("e1".into(), "scim".into())]));
        // Each row names the workflows that planned it, read with the row.
        assert!(overdue.iter().all(|o| o.workflows == ["staff"] && o.finished_at.is_none()), "{overdue:?}");
        let before_deadline = store.overdue(1_000).await.expect("overdue");
        assert_eq!(before_deadline.len(), 1, "only the flagged task before the deadline: {before_deadline:?}");
    }

    pub async fn a_second_decision_by_one_approver_is_refused(fixture: Fixture) {
        let store = fixture.store.as_ref();
        accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap"]).await;
        let approval = |approver: &str, at: i64| ApprovalRecord {
            event_id: "e1".into(),
            target_id: "ldap".into(),
            approver: approver.into(),
            decision: "approve".into(),
            comment: "ok".into(),
            at,
        };
        store.record_approval(approval("alice", 10), entry("e1", "approval.recorded")).await.expect("first");
        match store.record_approval(approval("alice", 11), entry("e1", "approval.recorded")).await {
            Err(StoreError::Conflict(message)) => assert!(message.contains("alice"), "{message}"),
            other => panic!("a second decision by alice must be refused, got {other:?}"),
        }
        store.record_approval(approval("bob", 12), entry("e1", "approval.recorded")).await.expect("bob");
        let approvals = store.approvals("e1").await.expect("read");
        assert_eq!(approvals, vec![approval("alice", 10), approval("bob", 12)]);
        assert_chain_intact(store, 3).await;
    }

    pub async fn recovery_sees_unfinished_tasks_in_arrival_order_and_the_watermarks(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (e1, t1) = accept(store, event("e1", "p1", EventKindName::Joiner, 5_000), &["ldap", "scim"]).await;
        let (e2, t2) = accept(store, event("e2", "p1", EventKindName::Mover, 3_000), &["ldap"]).await;
        let (_, t3) = accept(store, event("e3", "p2", EventKindName::Joiner, 1_000), &["ldap"]).await;
        store.save_task(finished(t1[1].clone(), TaskState::Verified, 9_000), vec![]).await.expect("save");
        let mut dispatched = t2[0].clone();
        dispatched.state = TaskState::Dispatched;
        dispatched.dispatched_at = Some(9_100);
        store.save_task(dispatched, vec![]).await.expect("save");
        let unfinished: Vec<(String, String)> = store
            .unfinished_tasks()
            .await
            .expect("unfinished")
            .into_iter()
            .map(|t| (t.event_id, t.target_id))
            .collect();
        assert_eq!(
            unfinished,
            vec![("e1".into(), "ldap".into()), ("e2".into(), "ldap".into()), ("e3".into(), "ldap".into())]
        );
        assert!(t3[0].dispatched_at.is_none());
        let marks = store.started_watermarks().await.expect("watermarks");
        assert_eq!(
            marks,
            vec![
                (("p1".to_string(), "ldap".to_string()), (e2.effective_at, e2.seq)),
                (("p1".to_string(), "scim".to_string()), (e1.effective_at, e1.seq)),
            ]
        );
    }

    pub async fn concurrent_writes_form_one_unbroken_chain(fixture: Fixture) {
        let store = fixture.store.clone();
        let mut writers = Vec::new();
        for n in 0..40 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let id = format!("e{n}");
                let (_, tasks) =
                    accept(store.as_ref(), event(&id, &format!("p{n}"), EventKindName::Joiner, n), &["ldap", "scim"])
                        .await;
                for task in tasks {
                    let done = finished(task, TaskState::Verified, 10_000 + n);
                    store.save_task(done, vec![entry(&id, "task.verified")]).await.expect("save");
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        // Per event: accepted, 2 x task.verified, event.verified, identity.updated.
        assert_chain_intact(store.as_ref(), 40 * 5).await;
        let records = store.audit_records(0, 10_000).await.expect("records");
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
        let page = store.audit_records(150, 20).await.expect("page");
        assert_eq!(page.first().map(|r| r.seq), Some(151));
        assert_eq!(page.len(), 20);
    }

    pub async fn an_altered_audit_record_is_named(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let (_, tasks) = accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap"]).await;
        store
            .save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![entry("e1", "task.verified")])
            .await
            .expect("save");
        assert_chain_intact(store, 4).await;
        fixture.execute_directly("UPDATE audit SET payload = '{\"state\":\"failed\"}' WHERE seq = 3").await;
        let verdict = verify_audit(store).await.expect("walk");
        let (seq, reason) = verdict.broken.expect("the altered record must be found");
        assert_eq!(seq, 3);
        assert!(reason.contains("altered"), "{reason}");
        assert_eq!(verdict.records, 2);
    }

    pub async fn ingest_documents_round_trip_page_in_key_order_and_compare_and_set(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let put = |key: &str, value: &str, expected: Option<&str>| coordinator::store::IngestPut {
            space: "source_record".into(),
            key: key.into(),
            value: value.into(),
            updated_at: 1_000,
            expected: expected.map(str::to_owned),
        };
        let audit = AuditEntry {
            at: 1_000,
            principal: "hr-bot".into(),
            event_id: String::new(),
            action: "ingest.batch_held".into(),
            payload: serde_json::json!({ "batch_id": "hb-1" }),
        };
        store
            .ingest_put(
                vec![put("workday\u{1f}p2", "{\"v\":2}", None), put("workday\u{1f}p1", "{\"v\":1}", None)],
                vec![audit],
            )
            .await
            .expect("put");
        store.ingest_put(vec![put("other\u{1f}p9", "{}", None)], vec![]).await.expect("put");
        assert_eq!(
            store.ingest_get("source_record", "workday\u{1f}p1").await.expect("get").as_deref(),
            Some("{\"v\":1}")
        );
        assert_eq!(store.ingest_get("held_batch", "workday\u{1f}p1").await.expect("get"), None);
        let page = store.ingest_after("source_record", "workday\u{1f}".into(), 10).await.expect("page");
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["workday\u{1f}p1", "workday\u{1f}p2"]);
        // Compare-and-set: a stale expectation writes nothing, not even the
        // other documents of the same write.
        let stale = store
            .ingest_put(
                vec![put("workday\u{1f}p3", "{}", None), put("workday\u{1f}p1", "{\"v\":3}", Some("{\"v\":0}"))],
                vec![],
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        assert_eq!(store.ingest_get("source_record", "workday\u{1f}p3").await.expect("get"), None);
        store.ingest_put(vec![put("workday\u{1f}p1", "{\"v\":3}", Some("{\"v\":1}"))], vec![]).await.expect("cas");
        assert_eq!(
            store.ingest_get("source_record", "workday\u{1f}p1").await.expect("get").as_deref(),
            Some("{\"v\":3}")
        );
        assert_chain_intact(store, 1).await;
    }

    pub async fn a_persons_events_in_arrival_order_and_a_prehire_leaves_the_identity_alone(fixture: Fixture) {
        let store = fixture.store.as_ref();
        accept(store, event("j1", "p1", EventKindName::Joiner, 5_000), &["ldap"]).await;
        accept(store, event("x1", "p2", EventKindName::Joiner, 1_000), &["ldap"]).await;
        accept(store, event("l1", "p1", EventKindName::Leaver, 3_000), &["ldap"]).await;
        let ids: Vec<String> = store.person_events("p1").await.expect("read").into_iter().map(|e| e.event_id).collect();
        assert_eq!(ids, vec!["j1", "l1"], "arrival order, this person only");
        assert!(store.person_events("nobody").await.expect("read").is_empty());
        // A pre-hire (the calendar's joiner) verified: no identity record.
        let mut prehire = event("prehire:ldap:j9", "p9", EventKindName::Joiner, 1_000);
        prehire.source_system = coordinator::calendar::CALENDAR_SOURCE.into();
        let (_, tasks) = accept(store, prehire, &["ldap"]).await;
        store.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await.expect("save");
        assert_eq!(store.identity("p9").await.expect("read"), None, "the person has not started");
    }

    pub async fn a_reopened_store_continues_the_chain(fixture: Fixture) {
        accept(fixture.store.as_ref(), event("e1", "p1", EventKindName::Joiner, 1_000), &["ldap"]).await;
        let reopened = fixture.open_again().await;
        assert!(reopened.event("e1").await.expect("read").is_some());
        let (_, tasks) = accept(reopened.as_ref(), event("e2", "p2", EventKindName::Joiner, 1_000), &["ldap"]).await;
        reopened.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await.expect("save");
        assert_chain_intact(reopened.as_ref(), 4).await;
        let audit = reopened.event_audit("e2").await.expect("audit");
        let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, vec!["event.accepted", "event.verified", "identity.updated"]);
        assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq && w[1].prev_hash == w[0].hash));
    }

    /// #17: baseline records load once, on the expected side as joiners'
    /// records; a record an event set is kept; one audit record per load.
    pub async fn baseline_identities_load_without_events(fixture: Fixture) {
        use coordinator::store::baseline::BaselineIdentity;
        let store = fixture.store.as_ref();
        accept(store, event("e1", "p1", EventKindName::Joiner, 1_000), &[]).await;
        let (_, tasks) = accept(store, event("e2", "p2", EventKindName::Joiner, 1_000), &["ldap"]).await;
        store.save_task(finished(tasks[0].clone(), TaskState::Verified, 2_000), vec![]).await.expect("save");
        let record = |person: &str| BaselineIdentity {
            person_id: person.into(),
            attributes: BTreeMap::from([("email".to_string(), format!("{person}@example.org"))]),
            source_system: "workday".into(),
        };
        let audit = |n: i64| AuditEntry {
            at: n,
            principal: "admin".into(),
            event_id: format!("baseline-{n}"),
            action: "identities.loaded".into(),
            payload: serde_json::json!({ "records": 2 }),
        };
        let loaded = store.load_identities(vec![record("p0"), record("p2")], vec![audit(1)]).await.expect("load");
        assert_eq!(loaded, (1, 1), "p2's record came from an event and is kept");
        let again = store.load_identities(vec![record("p0")], vec![audit(2)]).await.expect("load");
        assert_eq!(again, (0, 1));
        let page = store.identities_after(String::new(), 10).await.expect("identities");
        let people: Vec<(&str, EventKindName)> = page.iter().map(|(i, k)| (i.person_id.as_str(), *k)).collect();
        assert_eq!(people, vec![("p0", EventKindName::Joiner), ("p2", EventKindName::Joiner)]);
        assert_eq!(page[0].0.event_id, "baseline:workday");
        assert_eq!(store.identity("p2").await.expect("read").map(|i| i.event_id), Some("e2".to_string()));
        assert_eq!(store.event_audit("baseline-1").await.expect("audit").len(), 1);
    }
}

mod names {
    use super::*;

    fn naming(mut task: TaskRecord, name: &str, presence: pb::Presence) -> TaskRecord {
        task.planned.desired = Some(pb::DesiredAccount {
            account: Some(pb::AccountRef { person_id: task.person_id.clone(), account_name: name.into() }),
            presence: presence as i32,
            enabled: presence == pb::Presence::Present,
            ..Default::default()
        });
        task
    }

    /// The account-name index: an accepted event's present accounts reserve
    /// their names (found again case-folded and by look-alike skeleton); a
    /// proven deletion releases the name; nothing else does.
    pub async fn account_names_are_reserved_on_acceptance_and_released_by_a_proven_deletion(fixture: Fixture) {
        let store = fixture.store.as_ref();
        let joiner = event("e1", "p1", EventKindName::Joiner, 1_000);
        let tasks = vec![naming(task(&joiner, "ldap"), "ada.lovelace", pb::Presence::Present)];
        match store.insert_event(joiner.clone(), tasks.clone(), vec![entry("e1", "event.accepted")]).await {
            Ok(InsertOutcome::Inserted(_)) => {}
            other => panic!("{other:?}"),
        }
        for lookup in ["ada.lovelace", "ADA.Lovelace", "\u{430}da.lovelace"] {
            let holders = store.account_name_holders("ldap", lookup).await.expect("holders");
            let found: Vec<(&str, &str)> =
                holders.iter().map(|h| (h.person_id.as_str(), h.account_name.as_str())).collect();
            assert_eq!(found, vec![("p1", "ada.lovelace")], "{lookup:?}");
        }
        assert!(store.account_name_holders("scim", "ada.lovelace").await.expect("holders").is_empty());
        assert!(store.account_name_holders("ldap", "ada.byron").await.expect("holders").is_empty());
        // A later event for the same name keeps one row; a failed deletion releases nothing.
        let deletion = event("e2", "p1", EventKindName::Leaver, 2_000);
        let delete = naming(task(&deletion, "ldap"), "ada.lovelace", pb::Presence::Absent);
        match store.insert_event(deletion.clone(), vec![delete.clone()], vec![entry("e2", "event.accepted")]).await {
            Ok(InsertOutcome::Inserted(_)) => {}
            other => panic!("{other:?}"),
        }
        store.save_task(finished(delete.clone(), TaskState::Failed, 3_000), vec![]).await.expect("save");
        assert_eq!(store.account_name_holders("ldap", "ada.lovelace").await.expect("holders").len(), 1);
        store.save_task(finished(delete, TaskState::Verified, 4_000), vec![]).await.expect("save");
        assert!(
            store.account_name_holders("ldap", "ada.lovelace").await.expect("holders").is_empty(),
            "a proven deletion frees the name"
        );
    }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::Fixture::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_event_id_is_accepted_once,
    a_task_round_trips_every_field,
    finishing_every_task_finishes_the_event_and_records_the_identity,
    a_failed_task_fails_the_event_and_all_superseded_supersedes_it,
    residual_risks_are_stored_with_the_task_and_decide_the_event,
    a_breach_is_flagged_once_and_never_cleared,
    a_second_decision_by_one_approver_is_refused,
    recovery_sees_unfinished_tasks_in_arrival_order_and_the_watermarks,
    concurrent_writes_form_one_unbroken_chain,
    an_altered_audit_record_is_named,
    a_reopened_store_continues_the_chain,
    ingest_documents_round_trip_page_in_key_order_and_compare_and_set,
    baseline_identities_load_without_events,
    a_persons_events_in_arrival_order_and_a_prehire_leaves_the_identity_alone,
);

mod names_sqlite {
    #[tokio::test]
    async fn account_names_are_reserved_on_acceptance_and_released_by_a_proven_deletion() {
        super::names::account_names_are_reserved_on_acceptance_and_released_by_a_proven_deletion(
            super::Fixture::sqlite().await,
        )
        .await;
    }
}

mod names_postgres {
    #[tokio::test]
    async fn account_names_are_reserved_on_acceptance_and_released_by_a_proven_deletion() {
        super::names::account_names_are_reserved_on_acceptance_and_released_by_a_proven_deletion(
            super::Fixture::postgres().await,
        )
        .await;
    }
}

/// Two PostgreSQL stores on one database stand for two coordinator replicas.
mod postgres_replicas {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_append_to_one_unbroken_chain_and_accept_each_event_once() {
        let fixture = Fixture::postgres().await;
        let replicas = [fixture.store.clone(), fixture.open_again().await];
        let mut writers = Vec::new();
        for n in 0..60i64 {
            for replica in &replicas {
                // Both replicas submit the same event id: one must win.
                let store = replica.clone();
                writers.push(tokio::spawn(async move {
                    let record = event(&format!("e{n}"), &format!("p{n}"), EventKindName::Joiner, n);
                    let tasks = vec![task(&record, "ldap")];
                    let id = record.event_id.clone();
                    store.insert_event(record, tasks, vec![entry(&id, "event.accepted")]).await.expect("insert")
                }));
            }
        }
        let mut inserted = 0;
        for writer in writers {
            if let InsertOutcome::Inserted(_) = writer.await.expect("writer") {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 60, "each event id accepted exactly once across both replicas");
        assert_chain_intact(replicas[0].as_ref(), 60).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_finishing_the_last_tasks_of_an_event_complete_it_once() {
        let fixture = Fixture::postgres().await;
        let replicas = [fixture.store.clone(), fixture.open_again().await];
        let mut events = Vec::new();
        for n in 0..50i64 {
            let (_, tasks) = accept(
                replicas[0].as_ref(),
                event(&format!("e{n}"), &format!("p{n}"), EventKindName::Joiner, n),
                &["ldap", "scim"],
            )
            .await;
            events.push(tasks);
        }
        let mut writers = Vec::new();
        for tasks in events {
            for (task, replica) in tasks.into_iter().zip(replicas.iter()) {
                let store = replica.clone();
                writers.push(tokio::spawn(async move {
                    let id = task.event_id.clone();
                    let done = finished(task, TaskState::Verified, 10_000);
                    store.save_task(done, vec![entry(&id, "task.verified")]).await.expect("save")
                }));
            }
        }
        let mut completions = 0;
        for writer in writers {
            if writer.await.expect("writer") == Some(EventState::Verified) {
                completions += 1;
            }
        }
        assert_eq!(completions, 50, "each event completed by exactly one of the two saves");
        for n in 0..50 {
            let id = format!("e{n}");
            assert_eq!(replicas[1].event(&id).await.expect("read").expect("event").state, EventState::Verified);
            let audit = replicas[1].event_audit(&id).await.expect("audit");
            assert_eq!(audit.iter().filter(|r| r.action == "event.verified").count(), 1, "{id}");
        }
        // Per event: accepted, 2 x task.verified, event.verified, identity.updated.
        assert_chain_intact(replicas[0].as_ref(), 50 * 5).await;
    }
}
