//! The embedded SQLite store: one file, WAL mode, `synchronous = NORMAL`.
//!
//! Reads go through a small pool. Writes go through one writer task owning
//! one connection: it takes every write waiting (up to a batch limit), runs
//! them in one transaction, chains their audit records, commits, and only
//! then answers each caller, so a state is on disk before the engine takes
//! the next step. If a batch fails, each write is retried in its own
//! transaction so one bad write cannot fail the others.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use prost::Message;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::reads;
use super::rows::{corrupt, event_from_row, task_state};
use super::{
    ApprovalRecord, AuditEntry, AuditRecord, EventRecord, EventState, GENESIS_HASH, IdentityRecord, IngestPut,
    InsertOutcome, OverdueRecord, PersonContext, Store, StoreError, StoreFuture, TaskRecord, TaskState, Watermark,
    audit_hash,
};
use crate::event::kind_name;
use crate::policy::EventKindName;

super::account_names::account_name_writes!(SqliteConnection);

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![
            Migration::new(
                1,
                Cow::Borrowed("lifecycle"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/sqlite/0001_lifecycle.sql")),
                false,
            ),
            Migration::new(
                5,
                Cow::Borrowed("ingest"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/sqlite/0005_ingest.sql")),
                false,
            ),
            Migration::new(
                6,
                Cow::Borrowed("residual_risks"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/sqlite/0006_residual_risks.sql")),
                false,
            ),
            Migration::new(
                9,
                Cow::Borrowed("account_names"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/sqlite/0009_account_names.sql")),
                false,
            ),
        ]),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

enum WriteOp {
    InsertEvent { event: Box<EventRecord>, tasks: Vec<TaskRecord>, audit: Vec<AuditEntry> },
    SaveTask { task: Box<TaskRecord>, audit: Vec<AuditEntry> },
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

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<WriteRequest>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(false)
}

impl SqliteStore {
    /// Opens (creating and migrating when needed) the database file and
    /// starts the writer.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer_conn = SqliteConnection::connect_with(&options(path)).await?;
        migrator().run_direct(&mut writer_conn).await?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options(path)).await?;
        let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut writer_conn)
            .await?
            .map(|row| Ok::<_, sqlx::Error>((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?)))
            .transpose()?
            .unwrap_or((0, GENESIS_HASH.to_string()));
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(writer_conn, head, rx));
        Ok(Self { pool, writer: tx })
    }

    /// Opens an existing database file for reading only (offline audit
    /// verification); never creates or migrates.
    pub async fn open_read_only(path: &Path) -> Result<SqlitePool, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?.read_only(true);
        Ok(SqlitePoolOptions::new().max_connections(1).connect_with(options).await?)
    }

    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(WriteRequest { op, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut head: (i64, String), mut rx: mpsc::Receiver<WriteRequest>) {
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
        match run_batch(&mut conn, &mut head, &ops).await {
            Ok(results) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let _ = request.reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::warn!(%error, size = batch.len(), "write batch failed, retrying writes one by one");
                for request in batch.drain(..) {
                    let result = run_batch(&mut conn, &mut head, &[&request.op])
                        .await
                        .map(|mut results| results.pop().unwrap_or(WriteResult::Done));
                    let _ = request.reply.send(result);
                }
            }
        }
    }
}

/// Runs writes in one transaction; on failure nothing is written and the
/// audit head is unchanged.
async fn run_batch(
    conn: &mut SqliteConnection,
    head: &mut (i64, String),
    ops: &[&WriteOp],
) -> Result<Vec<WriteResult>, StoreError> {
    let mut batch = Batch {
        chain: Chain { head: head.clone(), pending: Vec::new() },
        tasks: Vec::new(),
        task_index: HashMap::new(),
        completions: Vec::new(),
    };
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        results.push(apply_op(&mut tx, &mut batch, op, index).await?);
    }
    flush_tasks(&mut tx, &mut batch).await?;
    complete_events(&mut tx, &mut batch, &mut results).await?;
    flush_audit(&mut tx, &batch.chain.pending).await?;
    tx.commit().await?;
    *head = batch.chain.head;
    Ok(results)
}

/// What one batch has staged: audit records, task rows (the last write of
/// each task wins), and the events whose tasks it finished.
struct Batch {
    chain: Chain,
    tasks: Vec<TaskRecord>,
    task_index: HashMap<(String, String), usize>,
    completions: Vec<(String, usize, i64)>,
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

/// Writes the staged task rows, many per statement.
async fn flush_tasks(conn: &mut SqliteConnection, batch: &mut Batch) -> Result<(), StoreError> {
    for chunk in batch.tasks.chunks(400) {
        let mut upsert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
                .push_bind(i64::from(task.urgent))
                .push_bind(task.state.as_str())
                .push_bind(task.planned.encode_to_vec())
                .push_bind(i64::from(task.grants_access))
                .push_bind(task.command_id.clone())
                .push_bind(i64::from(task.attempts))
                .push_bind(task.next_attempt_at)
                .push_bind(task.last_error.clone())
                .push_bind(task.acknowledgement.as_ref().map(Message::encode_to_vec))
                .push_bind(task.read_back.as_ref().map(Message::encode_to_vec))
                .push_bind(json(&task.differences))
                .push_bind(task.deadline_at)
                .push_bind(i64::from(task.deadline_breached))
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
             deadline_breached = CASE WHEN tasks.deadline_breached = 1 THEN 1 ELSE excluded.deadline_breached END, \
             dispatched_at = excluded.dispatched_at, acknowledged_at = excluded.acknowledged_at, finished_at = excluded.finished_at, \
             residual_risks = excluded.residual_risks",
        );
        upsert.build().execute(&mut *conn).await?;
    }
    batch.tasks.clear();
    batch.task_index.clear();
    Ok(())
}

/// For every event a task of this batch finished: when all its tasks are
/// terminal, sets the event's state, updates the identity record when
/// verified, and answers the op that finished it with the new state.
async fn complete_events(
    conn: &mut SqliteConnection,
    batch: &mut Batch,
    results: &mut [WriteResult],
) -> Result<(), StoreError> {
    let mut candidates: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (event_id, index, finished_at) in batch.completions.drain(..) {
        candidates.insert(event_id, (index, finished_at));
    }
    let ids: Vec<String> = candidates.keys().cloned().collect();
    let mut tasks: BTreeMap<String, Vec<(TaskState, bool, String)>> = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT event_id, state, grants_access, target_id FROM tasks WHERE event_id IN (",
        );
        let mut list = select.separated(", ");
        for id in chunk {
            list.push_bind(id.clone());
        }
        list.push_unseparated(")");
        for row in select.build().fetch_all(&mut *conn).await? {
            tasks.entry(row.try_get("event_id")?).or_default().push((
                task_state(&row.try_get::<String, _>("state")?)?,
                row.try_get::<i64, _>("grants_access")? == 1,
                row.try_get("target_id")?,
            ));
        }
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
        let updated = sqlx::query("UPDATE events SET state = ?, finished_at = ? WHERE event_id = ? AND state = ?")
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
        let mut audit = vec![AuditEntry {
            at: now,
            principal: "coordinator".into(),
            event_id: event_id.clone(),
            action: format!("event.{}", state.as_str()),
            payload: serde_json::json!({ "state": state.as_str() }),
        }];
        if matches!(state, EventState::Verified | EventState::VerifiedWithResidualRisk | EventState::Failed)
            && let Some(identity) = update_identity(conn, &event_id, state, targets, now).await?
        {
            audit.push(AuditEntry {
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
        append_audit(&mut batch.chain, &audit);
        if let Some(result) = results.get_mut(index) {
            *result = WriteResult::Saved(Some(state));
        }
    }
    Ok(())
}

/// The audit chain during one batch: the head moves as records are chained;
/// the records are inserted together at the end of the batch.
struct Chain {
    head: (i64, String),
    pending: Vec<AuditRecord>,
}

fn append_audit(chain: &mut Chain, entries: &[AuditEntry]) {
    for entry in entries {
        let seq = chain.head.0 + 1;
        let payload = entry.payload.to_string();
        let hash = audit_hash(&chain.head.1, seq, entry.at, &entry.principal, &entry.event_id, &entry.action, &payload);
        let prev_hash = std::mem::replace(&mut chain.head, (seq, hash.clone())).1;
        chain.pending.push(AuditRecord {
            seq,
            at: entry.at,
            principal: entry.principal.clone(),
            event_id: entry.event_id.clone(),
            action: entry.action.clone(),
            payload,
            prev_hash,
            hash,
        });
    }
}

/// Inserts the batch's audit records, many rows per statement.
async fn flush_audit(conn: &mut SqliteConnection, records: &[AuditRecord]) -> Result<(), StoreError> {
    for chunk in records.chunks(100) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

async fn apply_op(
    conn: &mut SqliteConnection,
    batch: &mut Batch,
    op: &WriteOp,
    index: usize,
) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::InsertEvent { event, tasks, audit } => {
            let existing = sqlx::query("SELECT * FROM events WHERE event_id = ?")
                .bind(&event.event_id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = existing {
                return Ok(WriteResult::Inserted(InsertOutcome::Duplicate(Box::new(event_from_row(&row)?))));
            }
            let seq: i64 = sqlx::query(
                "INSERT INTO events (event_id, kind, person_id, attributes, effective_at, source_system, initiator, urgent, \
                 received_at, policy_hash, plan, plan_hash, trace_id, state, finished_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            )
            .bind(&event.event_id)
            .bind(kind_name(event.kind))
            .bind(&event.person_id)
            .bind(json(&event.attributes))
            .bind(event.effective_at)
            .bind(&event.source_system)
            .bind(&event.initiator)
            .bind(i64::from(event.urgent))
            .bind(event.received_at)
            .bind(&event.policy_hash)
            .bind(event.plan.encode_to_vec())
            .bind(&event.plan_hash)
            .bind(&event.trace_id)
            .bind(event.state.as_str())
            .bind(event.finished_at)
            .fetch_one(&mut *conn)
            .await?
            .try_get("seq")?;
            for task in tasks {
                let mut task = task.clone();
                task.event_seq = seq;
                batch.stage_task(task);
            }
            reserve_names(conn, &super::account_names::reserved_by(tasks, event.received_at)).await?;
            append_audit(&mut batch.chain, audit);
            Ok(WriteResult::Inserted(InsertOutcome::Inserted(seq)))
        }
        WriteOp::SaveTask { task, audit } => {
            if task.state.is_terminal() {
                batch.completions.push((task.event_id.clone(), index, task.finished_at.unwrap_or_default()));
            }
            release_name(conn, task).await?;
            batch.stage_task((**task).clone());
            append_audit(&mut batch.chain, audit);
            Ok(WriteResult::Saved(None))
        }
        WriteOp::MarkBreached { event_id, target_id, audit } => {
            flush_tasks(conn, batch).await?;
            let updated = sqlx::query(
                "UPDATE tasks SET deadline_breached = 1 WHERE event_id = ? AND target_id = ? AND deadline_breached = 0",
            )
            .bind(event_id)
            .bind(target_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated > 0 {
                append_audit(&mut batch.chain, std::slice::from_ref(audit));
            }
            Ok(WriteResult::Done)
        }
        WriteOp::AppendAudit { audit } => {
            append_audit(&mut batch.chain, audit);
            Ok(WriteResult::Done)
        }
        WriteOp::LoadIdentities { records, audit } => {
            let (loaded, unchanged) = load_identities(conn, records).await?;
            append_audit(&mut batch.chain, audit);
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
            append_audit(&mut batch.chain, audit);
            Ok(WriteResult::Done)
        }
        WriteOp::RecordApproval { approval, audit } => {
            let exists = sqlx::query("SELECT 1 FROM approvals WHERE event_id = ? AND target_id = ? AND approver = ?")
                .bind(&approval.event_id)
                .bind(&approval.target_id)
                .bind(&approval.approver)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{} has already decided on this task",
                    connector_kit::validate::printable(&approval.approver)
                )));
            }
            sqlx::query(
                "INSERT INTO approvals (event_id, target_id, approver, decision, comment, at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&approval.event_id)
            .bind(&approval.target_id)
            .bind(&approval.approver)
            .bind(&approval.decision)
            .bind(&approval.comment)
            .bind(approval.at)
            .execute(&mut *conn)
            .await?;
            append_audit(&mut batch.chain, std::slice::from_ref(audit));
            Ok(WriteResult::Done)
        }
    }
}

/// Records a verified event's attributes as the person's identity, unless a
/// later-effective event already did.
async fn update_identity(
    conn: &mut SqliteConnection,
    event_id: &str,
    state: EventState,
    targets: BTreeSet<String>,
    now: i64,
) -> Result<Option<IdentityRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM events WHERE event_id = ?").bind(event_id).fetch_one(&mut *conn).await?;
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
    let current = sqlx::query("SELECT effective_at FROM identities WHERE person_id = ?")
        .bind(&event.person_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(current) = current
        && current.try_get::<i64, _>("effective_at")? > event.effective_at
    {
        return Ok(None);
    }
    let has_left = event.kind == EventKindName::Leaver;
    let targets = if has_left { BTreeSet::new() } else { targets };
    sqlx::query(
        "INSERT INTO identities (person_id, attributes, effective_at, event_id, has_left, targets, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET attributes = excluded.attributes, \
         effective_at = excluded.effective_at, event_id = excluded.event_id, has_left = excluded.has_left, \
         targets = excluded.targets, updated_at = excluded.updated_at",
    )
    .bind(&event.person_id)
    .bind(json(&event.attributes))
    .bind(event.effective_at)
    .bind(&event.event_id)
    .bind(i64::from(has_left))
    .bind(json(&targets))
    .bind(now)
    .execute(&mut *conn)
    .await?;
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

/// Writes baseline identity records (see [`super::baseline`]); returns
/// (loaded, unchanged).
async fn load_identities(
    conn: &mut SqliteConnection,
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
                    .bind(i64::from(false))
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                loaded += 1;
            }
        }
    }
    Ok((loaded, unchanged))
}

impl Store for SqliteStore {
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
        Box::pin(async move {
            match self.write(WriteOp::SaveTask { task: Box::new(task), audit }).await? {
                WriteResult::Saved(state) => Ok(state),
                _ => Err(corrupt("writer", "mismatched reply")),
            }
        })
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

    fn ingest_put(&self, puts: Vec<IngestPut>, audit: Vec<AuditEntry>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(WriteOp::IngestPut { puts, audit }).await?;
            Ok(())
        })
    }

    reads::store_reads!();
}
