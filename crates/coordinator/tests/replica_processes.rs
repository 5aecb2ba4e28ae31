//! Three real `coordinator` processes on one PostgreSQL database, one of them
//! killed with SIGKILL in the middle of propagating 2,000 events (issue 12's
//! check).
//!
//! 1,400 joiners of distinct people, then two movers each for 300 of them
//! (Engineering or Sales, then the other one, then Finance), are submitted
//! round-robin over the three replicas' lifecycle APIs by a few concurrent
//! submitters; the reference connectors journal every change they make and
//! add a few milliseconds to every `Apply`, so work is in flight when one
//! replica is killed (once the journals show about a third of the accounts
//! created). The last 300 movers go through the two survivors, which take
//! the dead replica's lanes over once its leases (3 s) expire. Then, read
//! from the lifecycle API of the survivors, from the database and from the
//! targets:
//!
//! - every event is terminal, none failed; each person's latest event is
//!   verified on every target it plans, and the targets hold exactly the
//!   access of that person's final department;
//! - each (event, target) task has exactly one `task.verified` audit record
//!   or exactly one `task.superseded` record, never both;
//! - no account is created twice and no entitlement granted twice on any
//!   target; per account, the journal's changes come from events in event
//!   order (journal command id -> event via the audit records -> event seq);
//! - `VerifyAudit` through a survivor finds the one chain intact;
//! - the work the killed replica held at the kill was finished by a survivor.
//!
//! Needs `JML_TEST_POSTGRES_URL` (`deploy/local/postgresql.sh start RUN_DIR`,
//! then `source RUN_DIR/postgresql.env`, or `.ci/run`); fails without it.
//! Each run works in its own fresh database, dropped at the end.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_kit::contract as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use support::*;
use tonic::transport::Channel;

/// Joiners, one per person.
const JOINERS: usize = 1_400;
/// People who move twice (the first `MOVED` joiners): 600 movers.
const MOVED: usize = 300;
/// Replica lease, seconds: short, so the takeover happens within the test.
const LEASE_SECONDS: &str = "3";
/// The replica killed midway (index into the three).
const KILLED: usize = 1;
/// Concurrent submitters.
const SUBMITTERS: usize = 8;
/// A generous bound on each wait, so a bug fails the test instead of hanging CI.
const PATIENCE: Duration = Duration::from_secs(180);

/// A fresh database on the test cluster: its name, a pool on it and the
/// URL the coordinator processes are given.
async fn database() -> (String, PgPool, String, PgConnectOptions) {
    let url = std::env::var("JML_TEST_POSTGRES_URL").unwrap_or_default();
    let (name, cluster) = support::fresh_postgres_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(cluster.clone().database(&name))
        .await
        .expect("connect to the test database");
    (name.clone(), pool, with_database(&url, &name), cluster)
}

/// `url` naming `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// One coordinator process; killed when dropped (a failing test leaves no
/// process behind).
struct Replica {
    id: String,
    child: Option<Child>,
    client: LifecycleClient<Channel>,
}

impl Replica {
    async fn start(id: &str, policy: &Path, db_url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(["--policy", &policy.display().to_string()])
            .args(["--listen", "127.0.0.1:0", "--base-backoff-ms", "20"])
            .args(["--insecure-plaintext", "--insecure-no-auth"])
            .args(["--replica-id", id, "--lease-seconds", LEASE_SECONDS])
            // The URL carries the password: through the environment, not argv.
            .env("JML_DB", db_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("coordinator starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line).expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("replica {id} printed {line:?}, not `listening on ADDR`"))
            .to_owned();
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.lines() {});
        let client = LifecycleClient::connect(format!("http://{addr}")).await.expect("client");
        Self { id: id.into(), child: Some(child), client }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lifecycle clients of the replicas still alive, for round-robin use.
#[derive(Clone)]
struct Survivors(Arc<Mutex<Vec<LifecycleClient<Channel>>>>);

impl Survivors {
    fn pick(&self, i: usize) -> LifecycleClient<Channel> {
        let clients = self.0.lock().expect("survivors");
        clients[i % clients.len()].clone()
    }

    fn set(&self, clients: Vec<LifecycleClient<Channel>>) {
        *self.0.lock().expect("survivors") = clients;
    }
}

/// One journal line: which target, command, account, action, subject.
struct Change {
    target: String,
    command_id: String,
    account: String,
    action: String,
    subject: String,
}

fn journal(dir: &Path) -> Vec<Change> {
    TARGETS
        .iter()
        .flat_map(|target| {
            std::fs::read_to_string(dir.join(format!("{target}.journal")))
                .unwrap_or_default()
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split('\t').collect();
                    (fields.len() == 4).then(|| Change {
                        target: (*target).into(),
                        command_id: fields[0].into(),
                        account: fields[1].into(),
                        action: fields[2].into(),
                        subject: fields[3].into(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn created(dir: &Path) -> usize {
    journal(dir).iter().filter(|c| c.action == "create").count()
}

fn name(person: usize) -> String {
    format!("r{person:04}")
}

/// Each person's departments in order: the joiner's, then the movers'.
fn departments(person: usize) -> Vec<&'static str> {
    let first = if person % 2 == 0 { "Engineering" } else { "Sales" };
    if person < MOVED {
        let second = if person % 2 == 0 { "Sales" } else { "Engineering" };
        vec![first, second, "Finance"]
    } else {
        vec![first]
    }
}

/// The events of one phase (0: joiners, 1 and 2: movers).
fn phase(n: usize) -> Vec<pb::LifecycleEvent> {
    let people = if n == 0 { 0..JOINERS } else { 0..MOVED };
    people
        .map(|p| {
            let kind = if n == 0 { pb::EventKind::Joiner } else { pb::EventKind::Mover };
            event(&format!("rep-{}-{n}", name(p)), kind, &name(p), person(&name(p), departments(p)[n]), "")
        })
        .collect()
}

/// The access a department's people hold on each target (`kind:id`, sorted).
fn access(department: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut ldap = vec!["group:staff".to_string()];
    let mut scim = vec!["group:staff".to_string()];
    let mut aws = vec!["group:staff".to_string()];
    match department {
        "Engineering" => {
            ldap.push("group:engineering".into());
            scim.push("role:editor".into());
            aws.push("group:engineering".into());
        }
        "Sales" => {
            ldap.push("group:sales".into());
            scim.push("role:viewer".into());
        }
        _ => {}
    }
    for list in [&mut ldap, &mut scim, &mut aws] {
        list.sort();
    }
    BTreeMap::from([("ldap", ldap), ("scim", scim), ("aws", aws)])
}

/// Submits `events` with [`SUBMITTERS`] concurrent clients, round-robin over
/// the replicas alive; a submit that meets a dead replica goes to the next
/// one (a resubmission is harmless: the event id is the idempotency key).
async fn submit_all(survivors: &Survivors, events: Vec<pb::LifecycleEvent>) {
    let events = Arc::new(events);
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for _ in 0..SUBMITTERS {
        let (survivors, events, next) = (survivors.clone(), events.clone(), next.clone());
        submitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(event) = events.get(i) else { return };
                let mut attempt = 0;
                loop {
                    let mut client = survivors.pick(i + attempt);
                    match submit_as(&mut client, event.clone(), "hr-bot").await {
                        Ok(_) => break,
                        Err(status) if attempt < 20 => {
                            attempt += 1;
                            if attempt % 5 == 0 {
                                eprintln!("submitting {} again: {status}", event.event_id);
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("cannot submit {}: {status}", event.event_id),
                    }
                }
            }
        }));
    }
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
}

/// Polls every event through the survivors until each is terminal; answers
/// the last status of each.
async fn until_all_terminal(survivors: &Survivors, event_ids: &[String]) -> HashMap<String, pb::EventStatus> {
    let mut pending: Vec<String> = event_ids.to_vec();
    let mut done = HashMap::new();
    let mut round = 0;
    let poll = async {
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (i, event_id) in pending.iter().enumerate() {
                let mut client = survivors.pick(i + round);
                let status = client
                    .get_event(pb::GetEventRequest { event_id: event_id.clone() })
                    .await
                    .unwrap_or_else(|status| panic!("status of {event_id}: {status}"))
                    .into_inner();
                if status.state == pb::EventState::InProgress as i32 {
                    still.push(event_id.clone());
                } else {
                    done.insert(event_id.clone(), status);
                }
            }
            pending = still;
            round += 1;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    if tokio::time::timeout(PATIENCE, poll).await.is_err() {
        panic!("events still in progress after {PATIENCE:?}");
    }
    done
}

/// What the watcher saw right after the kill.
struct Kill {
    /// Accounts created on the targets by then.
    created: usize,
    /// The lanes (person, target) the killed replica held.
    lanes: BTreeSet<(String, String)>,
    /// Every task not yet finished.
    unfinished: Vec<Unfinished>,
    /// The last audit record by then (the dead replica can have committed
    /// nothing after it).
    audit_seq: i64,
}

/// A task unfinished at the kill.
struct Unfinished {
    event_id: String,
    target_id: String,
    person_id: String,
    /// Its lane was leased to the killed replica.
    held_by_killed: bool,
}

/// One task row.
struct TaskRow {
    event_id: String,
    target_id: String,
    state: String,
}

async fn tasks(pool: &PgPool) -> Vec<TaskRow> {
    sqlx::query("SELECT event_id, target_id, state FROM tasks")
        .fetch_all(pool)
        .await
        .expect("tasks")
        .iter()
        .map(|row| TaskRow { event_id: row.get(0), target_id: row.get(1), state: row.get(2) })
        .collect()
}

/// The audit records of the task actions: (seq, event, action, payload).
async fn task_audit(pool: &PgPool) -> Vec<(i64, String, String, serde_json::Value)> {
    sqlx::query("SELECT seq, event_id, action, payload FROM audit WHERE action LIKE 'task.%' ORDER BY seq")
        .fetch_all(pool)
        .await
        .expect("audit")
        .iter()
        .map(|row| {
            let payload: String = row.get(3);
            (row.get(0), row.get(1), row.get(2), serde_json::from_str(&payload).expect("payload is JSON"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_verify_every_event_once_in_order() {
    let (database_name, pool, db_url, admin_options) = database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = targets(Some(dir.path())).await;
    // A few milliseconds per Apply, and one slow target, so every replica
    // has work in flight while the backlog lasts.
    for target in &targets {
        let latency = Duration::from_millis(if target.id == "aws" { 40 } else { 3 });
        target.store.set_faults(connector_memory::Faults { apply_latency: latency, ..Default::default() });
    }
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml(&targets, 8)).expect("policy");

    let mut replicas = Vec::new();
    for id in ["replica-a", "replica-b", "replica-c"] {
        replicas.push(Replica::start(id, &policy, &db_url).await);
    }
    let survivors = Survivors(Arc::new(Mutex::new(replicas.iter().map(|r| r.client.clone()).collect())));

    // Joiners and first movers through all three while a watcher kills one
    // replica once about a third of the accounts exist.
    let killed_id = replicas[KILLED].id.clone();
    let mut killed = replicas.remove(KILLED);
    let watcher = {
        let (journal_dir, survivors, pool) = (dir.path().to_owned(), survivors.clone(), pool.clone());
        let remaining: Vec<LifecycleClient<Channel>> = replicas.iter().map(|r| r.client.clone()).collect();
        tokio::spawn(async move {
            // A third of the accounts created, and the victim holds a lane
            // with unfinished work.
            let third = async {
                loop {
                    if created(&journal_dir) >= JOINERS {
                        let busy: i64 = sqlx::query(
                            "SELECT count(*) FROM lanes l JOIN tasks t \
                               ON t.person_id = l.person_id AND t.target_id = l.target_id \
                             WHERE l.claimed_by = $1 AND t.state IN ('dispatched', 'acknowledged')",
                        )
                        .bind(&killed.id)
                        .fetch_one(&pool)
                        .await
                        .expect("the lanes table (lane leases)")
                        .get(0);
                        if busy > 0 {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(PATIENCE, third).await.expect("a third of the accounts are created");
            killed.kill();
            survivors.set(remaining);
            // What the dead replica held: the lanes still naming it as holder
            // and their unfinished tasks; and every unfinished task. It can
            // change nothing any more, so this is its final state.
            let lanes: BTreeSet<(String, String)> =
                sqlx::query("SELECT person_id, target_id FROM lanes WHERE claimed_by = $1")
                    .bind(&killed.id)
                    .fetch_all(&pool)
                    .await
                    .expect("the lanes table (lane leases)")
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
            let unfinished: Vec<Unfinished> = sqlx::query(
                "SELECT event_id, target_id, person_id FROM tasks \
                 WHERE state NOT IN ('verified', 'failed', 'superseded')",
            )
            .fetch_all(&pool)
            .await
            .expect("unfinished tasks")
            .iter()
            .map(|row| {
                let (event_id, target_id, person_id): (String, String, String) = (row.get(0), row.get(1), row.get(2));
                let held_by_killed = lanes.contains(&(person_id.clone(), target_id.clone()));
                Unfinished { event_id, target_id, person_id, held_by_killed }
            })
            .collect();
            let audit_seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM audit")
                .fetch_one(&pool)
                .await
                .expect("audit head")
                .get(0);
            Kill { created: created(&journal_dir), lanes, unfinished, audit_seq }
        })
    };
    submit_all(&survivors, phase(0)).await;
    submit_all(&survivors, phase(1)).await;
    let kill = watcher.await.expect("the watcher kills a replica");
    let killed_work: Vec<&Unfinished> = kill.unfinished.iter().filter(|t| t.held_by_killed).collect();
    eprintln!(
        "killed {killed_id} with {} of {} accounts created, {} tasks unfinished, {} of them in its {} lanes",
        kill.created,
        JOINERS * 3,
        kill.unfinished.len(),
        killed_work.len(),
        kill.lanes.len(),
    );
    assert!(kill.created < JOINERS * 3, "the replica was killed before the work was done");
    assert!(!killed_work.is_empty(), "the killed replica held unfinished work");
    // The last movers through the survivors only.
    submit_all(&survivors, phase(2)).await;

    // Every event terminal, read through the survivors.
    let all: Vec<pb::LifecycleEvent> = (0..3).flat_map(phase).collect();
    assert_eq!(all.len(), 2_000);
    let event_ids: Vec<String> = all.iter().map(|e| e.event_id.clone()).collect();
    let statuses = until_all_terminal(&survivors, &event_ids).await;
    for (event_id, status) in &statuses {
        assert!(
            [pb::EventState::Verified as i32, pb::EventState::Superseded as i32].contains(&status.state),
            "{event_id} ended {status:?}"
        );
    }
    // Each person's latest event verified on every target it plans.
    for p in 0..JOINERS {
        let latest = format!("rep-{}-{}", name(p), departments(p).len() - 1);
        let status = &statuses[&latest];
        assert_eq!(status.state, pb::EventState::Verified as i32, "{latest}: {status:?}");
        assert!(!status.tasks.is_empty(), "{latest} plans tasks");
        for task in &status.tasks {
            assert_eq!(task.state, pb::TaskState::Verified as i32, "{latest} on {}: {task:?}", task.target_id);
        }
    }

    // Exactly one verification or one supersession per (event, target).
    let task_rows = tasks(&pool).await;
    let audit = task_audit(&pool).await;
    let mut verified: HashMap<(String, String), usize> = HashMap::new();
    let mut superseded: HashMap<(String, String), usize> = HashMap::new();
    let mut command_events: HashMap<String, String> = HashMap::new();
    for (_, event_id, action, payload) in &audit {
        let target = payload["target_id"].as_str().unwrap_or_default().to_owned();
        match action.as_str() {
            "task.verified" => *verified.entry((event_id.clone(), target)).or_default() += 1,
            "task.superseded" => *superseded.entry((event_id.clone(), target)).or_default() += 1,
            "task.dispatched" => {
                let command_id = payload["command_id"].as_str().expect("dispatch names its command").to_owned();
                command_events.insert(command_id, event_id.clone());
            }
            _ => {}
        }
    }
    assert!(task_rows.len() >= JOINERS * 3, "{} tasks", task_rows.len());
    for task in &task_rows {
        let key = (task.event_id.clone(), task.target_id.clone());
        let (v, s) = (verified.get(&key).copied().unwrap_or(0), superseded.get(&key).copied().unwrap_or(0));
        match task.state.as_str() {
            "verified" => assert!(v == 1 && s == 0, "{key:?} verified with {v} verifications, {s} supersessions"),
            "superseded" => assert!(v == 0 && s == 1, "{key:?} superseded with {v} verifications, {s} supersessions"),
            other => panic!("{key:?} ended {other}"),
        }
    }
    let stray = verified
        .keys()
        .chain(superseded.keys())
        .find(|key| !task_rows.iter().any(|t| t.event_id == key.0 && t.target_id == key.1));
    assert!(stray.is_none(), "audit records for a task that does not exist: {stray:?}");

    // The targets: final access, no account created twice, no grant twice,
    // and each account's changes in event order.
    for p in 0..JOINERS {
        let department = *departments(p).last().expect("a department");
        for (target, expected) in access(department) {
            let store = targets.iter().find(|t| t.id == target).expect("target").store.clone();
            assert_eq!(held(&store, &name(p)), expected, "{} on {target} ({department})", name(p));
        }
    }
    let event_seq: HashMap<String, i64> = sqlx::query("SELECT event_id, seq FROM events")
        .fetch_all(&pool)
        .await
        .expect("events")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let changes = journal(dir.path());
    let mut creates: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut grants: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut last_seq: HashMap<(&str, &str), (i64, &str)> = HashMap::new();
    for change in &changes {
        let account = (change.target.as_str(), change.account.as_str());
        if change.action == "create" {
            *creates.entry(account).or_default() += 1;
        }
        if change.action == "add_entitlement" {
            *grants.entry((account.0, account.1, change.subject.as_str())).or_default() += 1;
        }
        let event_id = command_events
            .get(&change.command_id)
            .unwrap_or_else(|| panic!("journal command {} was never dispatched", change.command_id));
        let seq = event_seq[event_id];
        if let Some((previous, previous_event)) = last_seq.get(&account) {
            assert!(
                seq >= *previous,
                "{account:?}: {event_id} (seq {seq}) changed the account after {previous_event} (seq {previous})"
            );
        }
        last_seq.insert(account, (seq, event_id));
    }
    assert_eq!(creates.len(), JOINERS * 3, "ldap, scim and aws hold every person");
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accounts created twice: {twice:?}");
    let twice: Vec<_> = grants.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "entitlements granted twice: {twice:?}");

    // The one chain, verified through a survivor.
    let verdict = survivors.pick(0).verify_audit(pb::VerifyAuditRequest {}).await.expect("verify").into_inner();
    assert!(verdict.intact, "{verdict:?}");

    // The work in flight at the kill was finished after it: the killed
    // replica's lanes by a survivor (the dead process did nothing after the
    // kill), and no lane is still held by the dead replica.
    let finished: BTreeSet<(String, String)> = task_rows
        .iter()
        .filter(|t| ["verified", "superseded"].contains(&t.state.as_str()))
        .map(|t| (t.event_id.clone(), t.target_id.clone()))
        .collect();
    let left: Vec<_> = kill
        .unfinished
        .iter()
        .filter(|t| !finished.contains(&(t.event_id.clone(), t.target_id.clone())))
        .map(|t| (&t.event_id, &t.target_id, t.held_by_killed))
        .collect();
    assert!(left.is_empty(), "tasks unfinished at the kill never finished: {left:?}");
    let taken_over: BTreeSet<(&str, &str)> =
        killed_work.iter().map(|t| (t.person_id.as_str(), t.target_id.as_str())).collect();
    let holders: Vec<(String, String, Option<String>)> =
        sqlx::query("SELECT person_id, target_id, claimed_by FROM lanes")
            .fetch_all(&pool)
            .await
            .expect("lanes")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
    let never_taken: Vec<_> = holders
        .iter()
        .filter(|(person, target, holder)| {
            taken_over.contains(&(person.as_str(), target.as_str())) && holder.as_deref() == Some(killed_id.as_str())
        })
        .collect();
    assert!(never_taken.is_empty(), "lanes of the dead replica's unfinished work never taken over: {never_taken:?}");
    // The dispatch records name the replica that ran each attempt: after the
    // kill only survivors dispatch, and they re-ran the dead replica's work.
    let dispatched_after: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|(seq, _, action, _)| *seq > kill.audit_seq && action == "task.dispatched")
        .map(|(_, event_id, _, payload)| {
            (
                event_id.as_str(),
                payload["target_id"].as_str().unwrap_or_default(),
                payload["replica"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let by_dead: Vec<_> = dispatched_after.iter().filter(|(_, _, replica)| *replica == killed_id).collect();
    assert!(by_dead.is_empty(), "dispatches by the dead replica after its kill: {by_dead:?}");
    let anonymous: Vec<_> = dispatched_after.iter().filter(|(_, _, replica)| replica.is_empty()).collect();
    assert!(anonymous.is_empty(), "dispatch records without a replica: {anonymous:?}");
    let resumed: Vec<_> = killed_work
        .iter()
        .filter(|t| dispatched_after.iter().any(|(event, target, _)| *event == t.event_id && *target == t.target_id))
        .collect();
    eprintln!(
        "{} of the dead replica's {} unfinished tasks were dispatched again by a survivor",
        resumed.len(),
        killed_work.len()
    );
    assert!(!resumed.is_empty(), "no survivor ran the dead replica's unfinished work");

    drop(replicas);
    pool.close().await;
    let admin = PgPoolOptions::new().max_connections(1).connect_with(admin_options).await.expect("connect");
    admin
        .execute(format!("DROP DATABASE IF EXISTS {database_name} WITH (FORCE)").as_str())
        .await
        .expect("drop the test database");
}
