//! The PostgreSQL store: the same [`Store`] as SQLite, for several
//! coordinator replicas sharing one database.
//!
//! Reads go through a pool. Writes go through one writer task per process
//! owning one connection: like the SQLite store it takes every write waiting
//! (up to a batch limit) and runs them in one transaction, and answers each
//! caller only after the commit. If a batch fails (a conflict, a deadlock
//! with another replica), each write is retried in its own transaction so
//! one bad write cannot fail the others.
//!
//! **How audit appends are serialised.** Other processes append to the same
//! chain, so the head cannot be cached. Each transaction first makes its
//! state changes, then locks the single chain-head row
//! (`SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`), chains its
//! audit records from that head, inserts them, moves the head and commits.
//! The row lock is the serialisation point: a second transaction blocks on
//! it until the first commits, then reads the moved head (READ COMMITTED
//! re-reads the locked row), so records from all replicas form one chain in
//! commit order, and a record is committed if and only if the state change
//! it describes is. The lock is taken last, so it is held only for the few
//! inserts that follow.
//!
//! **Event completion across replicas.** Two replicas may finish the last
//! two tasks of one event at once; neither would see the other's
//! uncommitted task. Before reading an event's tasks to decide whether it is
//! finished, the writer locks the event row (`FOR UPDATE`, event ids in
//! order so two batches cannot deadlock), so the second transaction reads
//! after the first commits and sees both tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use prost::Message;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::reads;
use super::rows::{corrupt, event_from_row, task_state};
use super::{
    ApprovalRecord, AuditEntry, AuditRecord, EventRecord, EventState, IdentityRecord, IngestPut, InsertOutcome,
    OverdueRecord, PersonContext, Store, StoreError, StoreFuture, TaskRecord, TaskState, Watermark, audit_hash,
};
use crate::event::kind_name;
use crate::policy::EventKindName;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

super::account_names::account_name_writes!(PgConnection);

/// Times a single write is retried after a deadlock or serialisation failure.
const CONFLICT_RETRIES: usize = 5;

/// The PostgreSQL migrations, mirroring the SQLite ones.
fn migrator() -> Migrator {
    Migrator {
        migrations: std::borrow::Cow::Owned(vec![
            Migration::new(
                1,
                std::borrow::Cow::Borrowed("lifecycle"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0001_lifecycle.sql")),
                false,
            ),
            Migration::new(
                2,
                std::borrow::Cow::Borrowed("claims"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0002_claims.sql")),
                false,
            ),
            Migration::new(
                3,
                std::borrow::Cow::Borrowed("lanes"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0003_lanes.sql")),
                false,
            ),
            Migration::new(
                5,
                std::borrow::Cow::Borrowed("ingest"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0005_ingest.sql")),
                false,
            ),
            Migration::new(
                6,
                std::borrow::Cow::Borrowed("residual_risks"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0006_residual_risks.sql")),
                false,
            ),
            Migration::new(
                8,
                std::borrow::Cow::Borrowed("lane_epochs"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0008_lane_epochs.sql")),
                false,
            ),
            Migration::new(
                9,
                std::borrow::Cow::Borrowed("account_names"),
                MigrationType::Simple,
                std::borrow::Cow::Borrowed(include_str!("../../migrations/postgres/0009_account_names.sql")),
                false,
            ),
        ]),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// Whether a `--db` value names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(value: &str) -> bool {
    value.starts_with("postgres://") || value.starts_with("postgresql://")
}

/// A PostgreSQL URL with its password (if any) replaced, for messages.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable database URL>".into();
    };
    let (authority, tail) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

enum WriteOp {
    InsertEvent { event: Box<EventRecord>, tasks: Vec<TaskRecord>, audit: Vec<AuditEntry> },
    SaveTask { task: Box<TaskRecord>, audit: Vec<AuditEntry>, holder: Option<String> },
    MarkBreached { event_id: String, target_id: String, audit: AuditEntry },
    RecordApproval { approval: ApprovalRecord, audit: AuditEntry },
    AppendAudit { audit: Vec<AuditEntry> },
    LoadIdentities { records: Vec<super::baseline::BaselineIdentity>, audit: Vec<AuditEntry> },
    IngestPut { puts: Vec<IngestPut>, audit: Vec<AuditEntry> },
}

enum WriteResult {
    Inserted(InsertOutcome),
    Saved(Option<EventState>),
    Loaded(u64, u64),
    Done,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, StoreError>>,
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    writer: mpsc::Sender<WriteRequest>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// migrates it when needed (under sqlx's migration lock, so replicas
    /// starting together migrate once) and starts the writer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    /// As [`PostgresStore::open`], from parsed options.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let mut writer_conn = PgConnection::connect_with(&options).await?;
        migrator().run_direct(&mut writer_conn).await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(writer_conn, rx));
        Ok(Self { pool, writer: tx })
    }

    /// The read pool (tests and tools read the schema directly through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A task's row through the writer, fenced by `holder`'s lane lease when given.
    async fn write_task(
        &self,
        task: TaskRecord,
        audit: Vec<AuditEntry>,
        holder: Option<String>,
    ) -> Result<Option<EventState>, StoreError> {
        match self.write(WriteOp::SaveTask { task: Box::new(task), audit, holder }).await? {
            WriteResult::Saved(state) => Ok(state),
            _ => Err(corrupt("writer", "mismatched reply")),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(WriteRequest { op, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Whether an error is PostgreSQL telling us to retry the transaction.
fn is_conflict(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

async fn writer_loop(mut conn: PgConnection, mut rx: mpsc::Receiver<WriteRequest>) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ops: Vec<&WriteOp> = batch.iter().map(|r| &r.op).collect();
        match run_batch(&mut conn, &ops).await {
            Ok(results) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let _ = request.reply.send(Ok(result));
                }
            }
            Err(error) => {
                if batch.len() > 1 || !is_conflict(&error) {
                    tracing::warn!(%error, size = batch.len(), "write batch failed, retrying writes one by one");
                }
                for request in batch.drain(..) {
                    let mut result = run_batch(&mut conn, &[&request.op]).await;
                    let mut retries = 0;
                    while retries < CONFLICT_RETRIES && result.as_ref().is_err_and(is_conflict) {
                        retries += 1;
                        result = run_batch(&mut conn, &[&request.op]).await;
                    }
                    let _ = request.reply.send(result.map(|mut results| results.pop().unwrap_or(WriteResult::Done)));
                }
            }
        }
    }
}

/// What one batch has staged: audit entries (chained at commit time), task
/// rows (the last write of each task wins), and the events whose tasks it
/// finished.
struct Batch {
    audit: Vec<AuditEntry>,
    tasks: Vec<TaskRecord>,
    task_index: HashMap<(String, String), usize>,
    completions: Vec<(String, usize, i64)>,
    /// (holder, person, target) of the fenced lanes whose lease is live.
    held_lanes: HashSet<(String, String, String)>,
}

impl Batch {
    fn stage_task(&mut self, task: TaskRecord) {
        let key = (task.event_id.clone(), task.target_id.clone());
        match self.task_index.get(&key) {
            Some(&index) => self.tasks[index] = task,
            None => {
                self.task_index.insert(key, self.tasks.len());
                self.tasks.push(task);
            }
        }
    }
}

/// Runs writes in one transaction; on failure nothing is written.
async fn run_batch(conn: &mut PgConnection, ops: &[&WriteOp]) -> Result<Vec<WriteResult>, StoreError> {
    let mut batch = Batch {
        audit: Vec::new(),
        tasks: Vec::new(),
        task_index: HashMap::new(),
        completions: Vec::new(),
        held_lanes: HashSet::new(),
    };
    let mut tx = conn.begin().await?;
    create_lanes(&mut tx, ops).await?;
    lock_fenced_lanes(&mut tx, &mut batch, ops).await?;
    let mut results = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        results.push(apply_op(&mut tx, &mut batch, op, index).await?);
    }
    flush_tasks(&mut tx, &mut batch).await?;
    complete_events(&mut tx, &mut batch, &mut results).await?;
    append_audit(&mut tx, &batch.audit).await?;
    tx.commit().await?;
    Ok(results)
}

/// Gives every lane of the batch's new events its lease row (free; the
/// replicas claim it, crate::claims), first thing in the transaction: the
/// insert may wait for a lease renewal of the same row, which must not be
/// waiting for a lane this transaction has already locked.
async fn create_lanes(conn: &mut PgConnection, ops: &[&WriteOp]) -> Result<(), StoreError> {
    let lanes: BTreeSet<(&str, &str)> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::InsertEvent { tasks, .. } => Some(tasks),
            _ => None,
        })
        .flatten()
        .map(|task| (task.person_id.as_str(), task.target_id.as_str()))
        .collect();
    if lanes.is_empty() {
        return Ok(());
    }
    let (people, targets): (Vec<&str>, Vec<&str>) = lanes.into_iter().unzip();
    sqlx::query(
        "INSERT INTO lanes (person_id, target_id) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&people)
    .bind(&targets)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Fencing: locks (`FOR SHARE`) the lane row of every task a holder writes
/// in this batch, all at once and in (person, target) order, and notes the
/// ones whose lease the writing replica still holds. A takeover (which
/// updates the row) waits for this commit; lease renewals lock lane rows in
/// the same order, so the two never deadlock.
async fn lock_fenced_lanes(conn: &mut PgConnection, batch: &mut Batch, ops: &[&WriteOp]) -> Result<(), StoreError> {
    let fenced: BTreeSet<(&str, &str)> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::SaveTask { task, holder: Some(_), .. } => Some((task.person_id.as_str(), task.target_id.as_str())),
            _ => None,
        })
        .collect();
    if fenced.is_empty() {
        return Ok(());
    }
    let (people, targets): (Vec<&str>, Vec<&str>) = fenced.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT l.person_id, l.target_id, l.claimed_by FROM lanes l \
         JOIN unnest($1::text[], $2::text[]) AS w(person_id, target_id) \
           ON w.person_id = l.person_id AND w.target_id = l.target_id \
         WHERE l.lease_expires_at > $3 ORDER BY l.person_id, l.target_id FOR SHARE OF l",
    )
    .bind(&people)
    .bind(&targets)
    .bind(crate::event::now_ms())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let holder: Option<String> = row.try_get("claimed_by")?;
        if let Some(holder) = holder {
            batch.held_lanes.insert((holder, row.try_get("person_id")?, row.try_get("target_id")?));
        }
    }
    Ok(())
}

/// Writes the staged task rows, many per statement.
async fn flush_tasks(conn: &mut PgConnection, batch: &mut Batch) -> Result<(), StoreError> {
    for chunk in batch.tasks.chunks(400) {
        let mut upsert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO tasks (event_id, target_id, event_seq, person_id, effective_at, urgent, state, planned, grants_access, \
             command_id, attempts, next_attempt_at, last_error, acknowledgement, read_back, differences, deadline_at, \
             deadline_breached, planned_at, dispatched_at, acknowledged_at, finished_at, residual_risks) ",
        );
        upsert.push_values(chunk, |mut row, task| {
            row.push_bind(task.event_id.clone())
                .push_bind(task.target_id.clone())
                .push_bind(task.event_seq)
                .push_bind(task.person_id.clone())
                .push_bind(task.effective_at)
                .push_bind(task.urgent)
                .push_bind(task.state.as_str())
                .push_bind(task.planned.encode_to_vec())
                .push_bind(task.grants_access)
                .push_bind(task.command_id.clone())
                .push_bind(i64::from(task.attempts))
                .push_bind(task.next_attempt_at)
                .push_bind(task.last_error.clone())
                .push_bind(task.acknowledgement.as_ref().map(Message::encode_to_vec))
                .push_bind(task.read_back.as_ref().map(Message::encode_to_vec))
                .push_bind(json(&task.differences))
                .push_bind(task.deadline_at)
                .push_bind(task.deadline_breached)
                .push_bind(task.planned_at)
                .push_bind(task.dispatched_at)
                .push_bind(task.acknowledged_at)
                .push_bind(task.finished_at)
                .push_bind(super::rows::encode_residual_risks(&task.residual_risks));
        });
        upsert.push(
            " ON CONFLICT (event_id, target_id) DO UPDATE SET state = excluded.state, planned = excluded.planned, \
             grants_access = excluded.grants_access, command_id = excluded.command_id, attempts = excluded.attempts, \
             next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error, \
             acknowledgement = excluded.acknowledgement, read_back = excluded.read_back, differences = excluded.differences, \
             deadline_breached = tasks.deadline_breached OR excluded.deadline_breached, \
             dispatched_at = excluded.dispatched_at, acknowledged_at = excluded.acknowledged_at, finished_at = excluded.finished_at, \
             residual_risks = excluded.residual_risks",
        );
        upsert.build().execute(&mut *conn).await?;
    }
    batch.tasks.clear();
    batch.task_index.clear();
    Ok(())
}

/// For every event a task of this batch finished: locks the event row, and
/// when all its tasks are terminal sets the event's state, updates the
/// identity record when verified, and answers the op that finished it with
/// the new state.
async fn complete_events(
    conn: &mut PgConnection,
    batch: &mut Batch,
    results: &mut [WriteResult],
) -> Result<(), StoreError> {
    let mut candidates: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (event_id, index, finished_at) in batch.completions.drain(..) {
        candidates.insert(event_id, (index, finished_at));
    }
    if candidates.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = candidates.keys().cloned().collect();
    // In event-id order, so two writers locking overlapping sets cannot deadlock.
    sqlx::query("SELECT event_id FROM events WHERE event_id = ANY($1) ORDER BY event_id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut tasks: BTreeMap<String, Vec<(TaskState, bool, String)>> = BTreeMap::new();
    for row in sqlx::query("SELECT event_id, state, grants_access, target_id FROM tasks WHERE event_id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
    {
        tasks.entry(row.try_get("event_id")?).or_default().push((
            task_state(&row.try_get::<String, _>("state")?)?,
            row.try_get::<bool, _>("grants_access")?,
            row.try_get("target_id")?,
        ));
    }
    for (event_id, (index, now)) in candidates {
        let rows = tasks.remove(&event_id).unwrap_or_default();
        let state = EventState::from_tasks(rows.iter().map(|(state, _, _)| *state));
        if !state.is_terminal() {
            continue;
        }
        let targets: BTreeSet<String> = rows
            .iter()
            .filter(|(state, grants, _)| state.is_proven() && *grants)
            .map(|(_, _, target)| target.clone())
            .collect();
        let updated = sqlx::query("UPDATE events SET state = $1, finished_at = $2 WHERE event_id = $3 AND state = $4")
            .bind(state.as_str())
            .bind(now)
            .bind(&event_id)
            .bind(EventState::InProgress.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated == 0 {
            continue;
        }
        batch.audit.push(AuditEntry {
            at: now,
            principal: "coordinator".into(),
            event_id: event_id.clone(),
            action: format!("event.{}", state.as_str()),
            payload: serde_json::json!({ "state": state.as_str() }),
        });
        if matches!(state, EventState::Verified | EventState::VerifiedWithResidualRisk | EventState::Failed)
            && let Some(identity) = update_identity(conn, &event_id, state, targets, now).await?
        {
            batch.audit.push(AuditEntry {
                at: now,
                principal: "coordinator".into(),
                event_id: event_id.clone(),
                action: "identity.updated".into(),
                payload: serde_json::json!({
                    "person_id": identity.person_id,
                    "has_left": identity.has_left,
                    "effective_at": crate::event::format_time(Some(identity.effective_at)),
                    "targets": identity.targets,
                }),
            });
        }
        if let Some(result) = results.get_mut(index) {
            *result = WriteResult::Saved(Some(state));
        }
    }
    Ok(())
}

/// Locks the chain head, chains the batch's entries from it, inserts them
/// and moves the head: the serialisation point of the audit chain.
async fn append_audit(conn: &mut PgConnection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut *conn).await?;
    let (mut seq, mut hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let payload = entry.payload.to_string();
        let next = audit_hash(&hash, seq, entry.at, &entry.principal, &entry.event_id, &entry.action, &payload);
        let prev_hash = std::mem::replace(&mut hash, next.clone());
        records.push(AuditRecord {
            seq,
            at: entry.at,
            principal: entry.principal.clone(),
            event_id: entry.event_id.clone(),
            action: entry.action.clone(),
            payload,
            prev_hash,
            hash: next,
        });
    }
    for chunk in records.chunks(1000) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO audit (seq, at, principal, event_id, action, payload, prev_hash, hash) ",
        );
        insert.push_values(chunk, |mut row, record| {
            row.push_bind(record.seq)
                .push_bind(record.at)
                .push_bind(&record.principal)
                .push_bind(&record.event_id)
                .push_bind(&record.action)
                .push_bind(&record.payload)
                .push_bind(&record.prev_hash)
                .push_bind(&record.hash);
        });
        insert.build().execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

async fn apply_op(
    conn: &mut PgConnection,
    batch: &mut Batch,
    op: &WriteOp,
    index: usize,
) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::InsertEvent { event, tasks, audit } => {
            // ON CONFLICT DO NOTHING waits for a concurrent insert of the same
            // id by another replica, then yields no row: the first one wins.
            let inserted = sqlx::query(
                "INSERT INTO events (event_id, kind, person_id, attributes, effective_at, source_system, initiator, urgent, \
                 received_at, policy_hash, plan, plan_hash, trace_id, state, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (event_id) DO NOTHING RETURNING seq",
            )
            .bind(&event.event_id)
            .bind(kind_name(event.kind))
            .bind(&event.person_id)
            .bind(json(&event.attributes))
            .bind(event.effective_at)
            .bind(&event.source_system)
            .bind(&event.initiator)
            .bind(event.urgent)
            .bind(event.received_at)
            .bind(&event.policy_hash)
            .bind(event.plan.encode_to_vec())
            .bind(&event.plan_hash)
            .bind(&event.trace_id)
            .bind(event.state.as_str())
            .bind(event.finished_at)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(inserted) = inserted else {
                let row = sqlx::query("SELECT * FROM events WHERE event_id = $1")
                    .bind(&event.event_id)
                    .fetch_one(&mut *conn)
                    .await?;
                return Ok(WriteResult::Inserted(InsertOutcome::Duplicate(Box::new(event_from_row(&row)?))));
            };
            let seq: i64 = inserted.try_get("seq")?;
            for task in tasks {
                let mut task = task.clone();
                task.event_seq = seq;
                batch.stage_task(task);
            }
            reserve_names(conn, &super::account_names::reserved_by(tasks, event.received_at)).await?;
            batch.audit.extend(audit.iter().cloned());
            Ok(WriteResult::Inserted(InsertOutcome::Inserted(seq)))
        }
        WriteOp::SaveTask { task, audit, holder } => {
            if let Some(holder) = holder {
                // Fencing: written only while the holder's lease on the lane
                // is live (the lane rows were locked by lock_fenced_lanes).
                let lane = (holder.clone(), task.person_id.clone(), task.target_id.clone());
                if !batch.held_lanes.contains(&lane) {
                    return Err(StoreError::LeaseLost(format!(
                        "this replica no longer holds the lease on the lane of task ({}, {})",
                        connector_kit::validate::printable(&task.event_id),
                        connector_kit::validate::printable(&task.target_id)
                    )));
                }
            }
            if task.state.is_terminal() {
                batch.completions.push((task.event_id.clone(), index, task.finished_at.unwrap_or_default()));
            }
            release_name(conn, task).await?;
            batch.stage_task((**task).clone());
            batch.audit.extend(audit.iter().cloned());
            Ok(WriteResult::Saved(None))
        }
        WriteOp::MarkBreached { event_id, target_id, audit } => {
            flush_tasks(conn, batch).await?;
            let updated = sqlx::query(
                "UPDATE tasks SET deadline_breached = TRUE WHERE event_id = $1 AND target_id = $2 \
                 AND NOT deadline_breached",
            )
            .bind(event_id)
            .bind(target_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated > 0 {
                batch.audit.push(audit.clone());
            }
            Ok(WriteResult::Done)
        }
        WriteOp::AppendAudit { audit } => {
            batch.audit.extend(audit.iter().cloned());
            Ok(WriteResult::Done)
        }
        WriteOp::LoadIdentities { records, audit } => {
            let (loaded, unchanged) = load_identities(conn, records).await?;
            batch.audit.extend(audit.iter().cloned());
            Ok(WriteResult::Loaded(loaded, unchanged))
        }
        WriteOp::IngestPut { puts, audit } => {
            for put in puts {
                let written = match &put.expected {
                    None => sqlx::query(
                        "INSERT INTO ingest_state (space, key, value, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (space, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(&put.space)
                    .bind(&put.key)
                    .bind(&put.value)
                    .bind(put.updated_at),
                    Some(expected) => sqlx::query(
                        "UPDATE ingest_state SET value = $3, updated_at = $4 WHERE space = $1 AND key = $2 AND value = $5",
                    )
                    .bind(&put.space)
                    .bind(&put.key)
                    .bind(&put.value)
                    .bind(put.updated_at)
                    .bind(expected),
                }
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if written == 0 {
                    return Err(StoreError::Conflict(format!("{} {:?} changed meanwhile", put.space, put.key)));
                }
            }
            batch.audit.extend(audit.iter().cloned());
            Ok(WriteResult::Done)
        }
        WriteOp::RecordApproval { approval, audit } => {
            let inserted = sqlx::query(
                "INSERT INTO approvals (event_id, target_id, approver, decision, comment, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, target_id, approver) DO NOTHING",
            )
            .bind(&approval.event_id)
            .bind(&approval.target_id)
            .bind(&approval.approver)
            .bind(&approval.decision)
            .bind(&approval.comment)
            .bind(approval.at)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} has already decided on this task",
                    connector_kit::validate::printable(&approval.approver)
                )));
            }
            batch.audit.push(audit.clone());
            Ok(WriteResult::Done)
        }
    }
}

/// Records a verified event's attributes as the person's identity, unless a
/// later-effective event already did.
async fn update_identity(
    conn: &mut PgConnection,
    event_id: &str,
    state: EventState,
    targets: BTreeSet<String>,
    now: i64,
) -> Result<Option<IdentityRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM events WHERE event_id = $1").bind(event_id).fetch_one(&mut *conn).await?;
    let event = event_from_row(&row)?;
    // A reconciliation remediation restores the state the identity record
    // already implies; it never changes the record. A failed event changes
    // it only for a leaver: the departure is a fact of the source of truth,
    // and access a target kept is what reconciliation reports as
    // should-be-disabled.
    // A pre-hire (the calendar) prepares an account before the person starts:
    // the person is not yet what the joiner will make them.
    if event.source_system == super::RECONCILIATION_SOURCE
        || (event.source_system == crate::calendar::CALENDAR_SOURCE && event.kind != EventKindName::Leaver)
        || (!state.is_proven() && event.kind != EventKindName::Leaver)
    {
        return Ok(None);
    }
    let has_left = event.kind == EventKindName::Leaver;
    let targets = if has_left { BTreeSet::new() } else { targets };
    // The WHERE on the update keeps a later-effective identity (possibly
    // written by another replica) in place, atomically.
    let written = sqlx::query(
        "INSERT INTO identities (person_id, attributes, effective_at, event_id, has_left, targets, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (person_id) DO UPDATE SET attributes = excluded.attributes, \
         effective_at = excluded.effective_at, event_id = excluded.event_id, has_left = excluded.has_left, \
         targets = excluded.targets, updated_at = excluded.updated_at \
         WHERE identities.effective_at <= excluded.effective_at",
    )
    .bind(&event.person_id)
    .bind(json(&event.attributes))
    .bind(event.effective_at)
    .bind(&event.event_id)
    .bind(has_left)
    .bind(json(&targets))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if written == 0 {
        return Ok(None);
    }
    Ok(Some(IdentityRecord {
        person_id: event.person_id,
        attributes: event.attributes,
        effective_at: event.effective_at,
        event_id: event.event_id,
        has_left,
        targets,
        updated_at: now,
    }))
}

/// Connects to an existing database for reading only (offline audit
/// verification by `jmlctl audit verify --db`): one connection whose
/// transactions are read-only; never migrates.
pub async fn open_read_only(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)?.options([("default_transaction_read_only", "on")]);
    Ok(PgPoolOptions::new().max_connections(1).connect_with(options).await?)
}

/// Writes baseline identity records (see [`super::baseline`]); returns
/// (loaded, unchanged).
async fn load_identities(
    conn: &mut PgConnection,
    records: &[super::baseline::BaselineIdentity],
) -> Result<(u64, u64), StoreError> {
    use super::baseline::{Decision, SELECT, UPSERT, baseline_event_id, decide};
    let now = crate::event::now_ms();
    let (mut loaded, mut unchanged) = (0u64, 0u64);
    for record in records {
        let stored = match sqlx::query(SELECT).bind(&record.person_id).fetch_optional(&mut *conn).await? {
            Some(row) => Some((
                row.try_get::<String, _>("event_id")?,
                serde_json::from_str(&row.try_get::<String, _>("attributes")?).unwrap_or_default(),
            )),
            None => None,
        };
        match decide(stored, record) {
            Decision::Keep => unchanged += 1,
            Decision::Write => {
                sqlx::query(UPSERT)
                    .bind(&record.person_id)
                    .bind(json(&record.attributes))
                    .bind(baseline_event_id(&record.source_system))
                    .bind(false)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                loaded += 1;
            }
        }
    }
    Ok((loaded, unchanged))
}

impl Store for PostgresStore {
    fn insert_event(
        &self,
        event: EventRecord,
        tasks: Vec<TaskRecord>,
        audit: Vec<AuditEntry>,
    ) -> StoreFuture<'_, InsertOutcome> {
        Box::pin(async move {
            match self.write(WriteOp::InsertEvent { event: Box::new(event), tasks, audit }).await? {
                WriteResult::Inserted(outcome) => Ok(outcome),
                _ => Err(corrupt("writer", "mismatched reply")),
            }
        })
    }

    fn save_task(&self, task: TaskRecord, audit: Vec<AuditEntry>) -> StoreFuture<'_, Option<EventState>> {
        Box::pin(self.write_task(task, audit, None))
    }

    fn save_held_task(
        &self,
        task: TaskRecord,
        audit: Vec<AuditEntry>,
        holder: &str,
    ) -> StoreFuture<'_, Option<EventState>> {
        Box::pin(self.write_task(task, audit, Some(holder.to_owned())))
    }

    fn mark_breached(&self, event_id: String, target_id: String, audit: AuditEntry) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(WriteOp::MarkBreached { event_id, target_id, audit }).await?;
            Ok(())
        })
    }

    fn record_approval(&self, approval: ApprovalRecord, audit: AuditEntry) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(WriteOp::RecordApproval { approval, audit }).await?;
            Ok(())
        })
    }

    fn ingest_put(&self, puts: Vec<IngestPut>, audit: Vec<AuditEntry>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(WriteOp::IngestPut { puts, audit }).await?;
            Ok(())
        })
    }

    fn append_audit(&self, audit: Vec<AuditEntry>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(WriteOp::AppendAudit { audit }).await?;
            Ok(())
        })
    }

    fn load_identities(
        &self,
        records: Vec<super::baseline::BaselineIdentity>,
        audit: Vec<AuditEntry>,
    ) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            match self.write(WriteOp::LoadIdentities { records, audit }).await? {
                WriteResult::Loaded(loaded, unchanged) => Ok((loaded, unchanged)),
                _ => Ok((0, 0)),
            }
        })
    }

    reads::store_reads!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redacted_url("postgres://jml:s3cret@db.example:5432/lifecycle?sslmode=require"),
            "postgres://jml:***@db.example:5432/lifecycle?sslmode=require"
        );
        assert_eq!(redacted_url("postgresql://db.example/lifecycle"), "postgresql://db.example/lifecycle");
        assert_eq!(redacted_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redacted_url("not a url"), "<unparseable database URL>");
        assert!(is_postgres_url("postgresql://h/db") && !is_postgres_url("/var/lib/jml/lifecycle.db"));
    }
}
