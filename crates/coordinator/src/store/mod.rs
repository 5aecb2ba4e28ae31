//! Durable storage of events, tasks, approvals, identity records and the
//! audit hash chain, behind one backend-neutral trait.
//!
//! [`Store`] is object-safe (boxed futures) so the engine holds an
//! `Arc<dyn Store>`; [`sqlite::SqliteStore`] is the embedded default and
//! [`postgres::PostgresStore`] serves several coordinator replicas sharing
//! one database. Every write that changes state appends its audit records
//! *in the same transaction*, and all writes go through one writer per
//! process that chains the audit records
//! (`hash = sha256(prev_hash || canonical record)`) and batches concurrent
//! writes into one transaction.

pub mod account_names;
pub mod baseline;
pub mod postgres;
mod reads;
pub(crate) mod rows;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use jml_contract::v1 as pb;
use sha2::{Digest, Sha256};

pub use account_names::AccountNameRecord;

use crate::policy::EventKindName;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value in {what}: {message}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The writer has stopped.
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
    /// A replica wrote a task of a lane whose lease it no longer holds
    /// (another replica took it over): nothing was written.
    #[error("{0}")]
    LeaseLost(String),
}

/// Where a task stands. Terminal: verified, failed, superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for its turn.
    Planned,
    /// Holds grants waiting for approval.
    AwaitingApproval,
    /// Sent to the connector.
    Dispatched,
    /// Acknowledged, read-back pending.
    Acknowledged,
    /// Proven by read-back.
    Verified,
    /// Retries spent or a permanent error.
    Failed,
    /// Replaced by a newer event before it started.
    Superseded,
    /// Everything provable proven by read-back; what may outlive the
    /// credential revocation is listed in the read-back's residual risks.
    /// Terminal, never retried.
    VerifiedWithResidualRisk,
    /// A manual target: a ticket is open, waiting for an attestation.
    AwaitingFulfilment,
}

impl TaskState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Dispatched => "dispatched",
            Self::Acknowledged => "acknowledged",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::VerifiedWithResidualRisk => "verified_with_residual_risk",
            Self::AwaitingFulfilment => "awaiting_fulfilment",
        }
    }

    /// From the stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "verified_with_residual_risk" => Self::VerifiedWithResidualRisk,
            "planned" => Self::Planned,
            "awaiting_approval" => Self::AwaitingApproval,
            "dispatched" => Self::Dispatched,
            "acknowledged" => Self::Acknowledged,
            "verified" => Self::Verified,
            "failed" => Self::Failed,
            "superseded" => Self::Superseded,
            "awaiting_fulfilment" => Self::AwaitingFulfilment,
            _ => return None,
        })
    }

    /// Whether nothing more happens to the task.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Verified | Self::Failed | Self::Superseded | Self::VerifiedWithResidualRisk)
    }

    /// Whether the read-back proved the desired state (with or without
    /// residual risk).
    pub fn is_proven(self) -> bool {
        matches!(self, Self::Verified | Self::VerifiedWithResidualRisk)
    }

    /// The API form.
    pub fn to_proto(self) -> pb::TaskState {
        match self {
            Self::Planned => pb::TaskState::Planned,
            Self::AwaitingApproval => pb::TaskState::AwaitingApproval,
            Self::Dispatched => pb::TaskState::Dispatched,
            Self::Acknowledged => pb::TaskState::Acknowledged,
            Self::Verified => pb::TaskState::Verified,
            Self::Failed => pb::TaskState::Failed,
            Self::Superseded => pb::TaskState::Superseded,
            Self::VerifiedWithResidualRisk => pb::TaskState::VerifiedWithResidualRisk,
            Self::AwaitingFulfilment => pb::TaskState::AwaitingFulfilment,
        }
    }
}

/// Where an event stands overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventState {
    /// Some task unfinished.
    InProgress,
    /// Every task verified or superseded, at least one verified.
    Verified,
    /// Some task failed.
    Failed,
    /// Every task superseded.
    Superseded,
    /// No task failed, at least one ended with residual risk.
    VerifiedWithResidualRisk,
    /// The plan had no task.
    NothingToDo,
}

impl EventState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::VerifiedWithResidualRisk => "verified_with_residual_risk",
            Self::NothingToDo => "nothing_to_do",
        }
    }

    /// From the stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "verified_with_residual_risk" => Self::VerifiedWithResidualRisk,
            "nothing_to_do" => Self::NothingToDo,
            "in_progress" => Self::InProgress,
            "verified" => Self::Verified,
            "failed" => Self::Failed,
            "superseded" => Self::Superseded,
            _ => return None,
        })
    }

    /// Whether the event is finished.
    pub fn is_terminal(self) -> bool {
        self != Self::InProgress
    }

    /// Whether every task that ran was proven by read-back (with or
    /// without residual risk).
    pub fn is_proven(self) -> bool {
        matches!(self, Self::Verified | Self::VerifiedWithResidualRisk)
    }

    /// The API form.
    pub fn to_proto(self) -> pb::EventState {
        match self {
            Self::InProgress => pb::EventState::InProgress,
            Self::Verified => pb::EventState::Verified,
            Self::Failed => pb::EventState::Failed,
            Self::Superseded => pb::EventState::Superseded,
            Self::VerifiedWithResidualRisk => pb::EventState::VerifiedWithResidualRisk,
            Self::NothingToDo => pb::EventState::NothingToDo,
        }
    }

    /// The event state from its tasks' states.
    pub fn from_tasks(states: impl IntoIterator<Item = TaskState>) -> Self {
        let (mut any, mut verified, mut failed, mut residual) = (false, false, false, false);
        for state in states {
            any = true;
            if !state.is_terminal() {
                return Self::InProgress;
            }
            verified |= state == TaskState::Verified;
            failed |= state == TaskState::Failed;
            residual |= state == TaskState::VerifiedWithResidualRisk;
        }
        match (any, failed, residual, verified) {
            (false, _, _, _) => Self::NothingToDo,
            (_, true, _, _) => Self::Failed,
            (_, false, true, _) => Self::VerifiedWithResidualRisk,
            (_, false, false, true) => Self::Verified,
            (_, false, false, false) => Self::Superseded,
        }
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Arrival order (assigned by the store).
    pub seq: i64,
    /// The idempotency key.
    pub event_id: String,
    /// Joiner, mover or leaver.
    pub kind: EventKindName,
    /// The person.
    pub person_id: String,
    /// The attributes planned from.
    pub attributes: BTreeMap<String, String>,
    /// When it takes effect (Unix ms).
    pub effective_at: i64,
    /// The source system.
    pub source_system: String,
    /// Who submitted it.
    pub initiator: String,
    /// An urgent leaver.
    pub urgent: bool,
    /// When it was received (Unix ms).
    pub received_at: i64,
    /// The policy's hash.
    pub policy_hash: String,
    /// The plan.
    pub plan: pb::Plan,
    /// The plan's hash.
    pub plan_hash: String,
    /// The W3C trace context (`traceparent`) of the event's root span;
    /// `tracing_context::trace_id_of` gives the trace id status and evidence show.
    pub trace_id: String,
    /// Overall state.
    pub state: EventState,
    /// When it finished (Unix ms).
    pub finished_at: Option<i64>,
}

/// One (event, target) task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The event.
    pub event_id: String,
    /// The target.
    pub target_id: String,
    /// The event's arrival order.
    pub event_seq: i64,
    /// The person.
    pub person_id: String,
    /// When the event takes effect (Unix ms).
    pub effective_at: i64,
    /// An urgent leaver's task.
    pub urgent: bool,
    /// Where it stands.
    pub state: TaskState,
    /// The plan for this target (desired state, approvals, deadline).
    pub planned: pb::PlannedTarget,
    /// Whether the desired state grants access (present and enabled).
    pub grants_access: bool,
    /// The idempotency key sent with `Apply`.
    pub command_id: String,
    /// Apply attempts made.
    pub attempts: u32,
    /// When the next attempt may start (Unix ms).
    pub next_attempt_at: Option<i64>,
    /// The last error.
    pub last_error: String,
    /// The last acknowledgement.
    pub acknowledgement: Option<pb::ApplyResponse>,
    /// The last read-back.
    pub read_back: Option<pb::AccountState>,
    /// How the last read-back differed.
    pub differences: Vec<String>,
    /// The deadline (Unix ms).
    pub deadline_at: i64,
    /// Whether the deadline was breached.
    pub deadline_breached: bool,
    /// When planned.
    pub planned_at: i64,
    /// When last dispatched.
    pub dispatched_at: Option<i64>,
    /// When last acknowledged.
    pub acknowledged_at: Option<i64>,
    /// When finished.
    pub finished_at: Option<i64>,
    /// What may outlive the task's credential revocation, and for how long
    /// ([`TaskState::VerifiedWithResidualRisk`]); empty otherwise.
    pub residual_risks: Vec<pb::ResidualRisk>,
}

impl TaskRecord {
    /// The desired state.
    pub fn desired(&self) -> pb::DesiredAccount {
        self.planned.desired.clone().unwrap_or_default()
    }
}

/// One approval decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// The event.
    pub event_id: String,
    /// The target.
    pub target_id: String,
    /// The approver's principal.
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The approver's comment.
    pub comment: String,
    /// When (Unix ms).
    pub at: i64,
}

/// A person's latest verified identity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The person.
    pub person_id: String,
    /// Latest verified attributes.
    pub attributes: BTreeMap<String, String>,
    /// The effective time of the event that set them.
    pub effective_at: i64,
    /// That event.
    pub event_id: String,
    /// Whether the person has left.
    pub has_left: bool,
    /// Targets where the person's account is enabled.
    pub targets: BTreeSet<String>,
    /// When updated (Unix ms).
    pub updated_at: i64,
}

/// What the store knows of a person when a new event is planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonContext {
    /// Targets where earlier events planned access.
    pub provisioned: BTreeSet<String>,
    /// The latest known attributes (verified identity first, else the latest
    /// event by effective time).
    pub latest_attributes: Option<BTreeMap<String, String>>,
}

/// An audit record to append (the store assigns seq and hashes).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When (Unix ms).
    pub at: i64,
    /// Who: an authenticated principal, the source system, or `coordinator`.
    pub principal: String,
    /// The event concerned.
    pub event_id: String,
    /// What happened, e.g. `event.accepted`, `task.verified`.
    pub action: String,
    /// Details (JSON): workflow, hashes, acknowledgement, read-back, ...
    pub payload: serde_json::Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (Unix ms).
    pub at: i64,
    /// Who.
    pub principal: String,
    /// The event concerned.
    pub event_id: String,
    /// What happened.
    pub action: String,
    /// Details, as stored (JSON text).
    pub payload: String,
    /// The previous record's hash (64 zeros for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// The `source_system` of the internal events a reconciliation submits to
/// remediate drift. Such an event restores what the person's identity record
/// implies, so verifying it never updates the identity record.
pub const RECONCILIATION_SOURCE: &str = "reconciliation";

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `sha256(prev_hash || "\n" || canonical record)`, hex.
pub fn audit_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    principal: &str,
    event_id: &str,
    action: &str,
    payload: &str,
) -> String {
    let canonical = serde_json::json!([seq, at, principal, event_id, action, payload]).to_string();
    let mut digest = Sha256::new();
    digest.update(prev_hash.as_bytes());
    digest.update(b"\n");
    digest.update(canonical.as_bytes());
    hex::encode(digest.finalize())
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerdict {
    /// Records checked.
    pub records: u64,
    /// The first broken record and why, if any.
    pub broken: Option<(i64, String)>,
}

/// Checks a run of records continuing from `(prev_seq, prev_hash)`; returns
/// the new head or the first broken record.
pub fn verify_chain_segment(records: &[AuditRecord], head: (i64, String)) -> Result<(i64, String), (i64, String)> {
    let (mut prev_seq, mut prev_hash) = head;
    for record in records {
        if record.seq != prev_seq + 1 {
            return Err((record.seq, format!("sequence gap: expected record {} after {prev_seq}", prev_seq + 1)));
        }
        if record.prev_hash != prev_hash {
            return Err((record.seq, "prev_hash does not match the previous record's hash".into()));
        }
        let expected = audit_hash(
            &record.prev_hash,
            record.seq,
            record.at,
            &record.principal,
            &record.event_id,
            &record.action,
            &record.payload,
        );
        if expected != record.hash {
            return Err((record.seq, "content does not match its hash (record altered)".into()));
        }
        prev_seq = record.seq;
        prev_hash = record.hash.clone();
    }
    Ok((prev_seq, prev_hash))
}

/// The result of inserting an event.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Stored; its arrival order.
    Inserted(i64),
    /// An event with this id exists: the first one.
    Duplicate(Box<EventRecord>),
}

/// A task past its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueRecord {
    /// The event.
    pub event_id: String,
    /// The person.
    pub person_id: String,
    /// The target.
    pub target_id: String,
    /// Its state.
    pub state: TaskState,
    /// Its deadline (Unix ms).
    pub deadline_at: i64,
    /// When it finished (Unix ms), if it did.
    pub finished_at: Option<i64>,
    /// The workflows that planned it (their owners answer for it).
    pub workflows: Vec<String>,
}

/// One write of HR ingestion's stored state ([`crate::ingest`]): a JSON
/// document under (`space`, `key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPut {
    /// `source_record` or `held_batch`.
    pub space: String,
    /// The person (`source\u{1f}person`) or the batch id.
    pub key: String,
    /// The document (JSON).
    pub value: String,
    /// When written (Unix ms).
    pub updated_at: i64,
    /// Compare-and-set: written only while the stored value equals this
    /// (else [`StoreError::Conflict`], nothing written). `None`: upsert.
    pub expected: Option<String>,
}

/// ((person, target), (effective_at, event_seq)) of the latest dispatched task.
pub type Watermark = ((String, String), (i64, i64));

/// A boxed store future.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Durable storage, backend-neutral.
pub trait Store: Send + Sync + 'static {
    /// Stores a new event, its tasks and audit records atomically, or
    /// returns the first event with this id (writing nothing).
    fn insert_event(
        &self,
        event: EventRecord,
        tasks: Vec<TaskRecord>,
        audit: Vec<AuditEntry>,
    ) -> StoreFuture<'_, InsertOutcome>;
    /// Writes a task's whole row (the breach flag only ever goes from false
    /// to true) with its audit records. When that leaves every task of the
    /// event terminal, the event's state is set and, when verified (or a
    /// leaver's event finished, verified or failed: the person has left
    /// either way), the person's identity record updated, except for a
    /// reconciliation's remediation event ([`RECONCILIATION_SOURCE`]); the
    /// event's new state is returned.
    fn save_task(&self, task: TaskRecord, audit: Vec<AuditEntry>) -> StoreFuture<'_, Option<EventState>>;
    /// As [`Store::save_task`], by a replica holding the task's lane
    /// (`crate::claims`): written only while `holder`'s lease on the lane is
    /// live, in the same transaction, else [`StoreError::LeaseLost`] and
    /// nothing is written (fencing). A store serving one process has no
    /// leases and writes as `save_task` does.
    fn save_held_task(
        &self,
        task: TaskRecord,
        audit: Vec<AuditEntry>,
        holder: &str,
    ) -> StoreFuture<'_, Option<EventState>> {
        let _ = holder;
        self.save_task(task, audit)
    }
    /// Flags a task's deadline as breached, with its audit record.
    fn mark_breached(&self, event_id: String, target_id: String, audit: AuditEntry) -> StoreFuture<'_, ()>;
    /// Records an approval decision with its audit record; refuses a second
    /// decision by the same approver.
    fn record_approval(&self, approval: ApprovalRecord, audit: AuditEntry) -> StoreFuture<'_, ()>;
    /// Appends audit records that accompany no state change (e.g. a refused
    /// caller of the lifecycle API), chained like every other record.
    fn append_audit(&self, audit: Vec<AuditEntry>) -> StoreFuture<'_, ()>;
    /// One event.
    fn event(&self, event_id: &str) -> StoreFuture<'_, Option<EventRecord>>;
    /// An event's tasks.
    fn tasks(&self, event_id: &str) -> StoreFuture<'_, Vec<TaskRecord>>;
    /// One task.
    fn task(&self, event_id: &str, target_id: &str) -> StoreFuture<'_, Option<TaskRecord>>;
    /// An event's approval decisions.
    fn approvals(&self, event_id: &str) -> StoreFuture<'_, Vec<ApprovalRecord>>;
    /// Every task not terminal, for recovery after a restart.
    fn unfinished_tasks(&self) -> StoreFuture<'_, Vec<TaskRecord>>;
    /// Per (person, target), the latest (effective_at, event_seq) of a task
    /// that was ever dispatched: older events must not apply after it.
    fn started_watermarks(&self) -> StoreFuture<'_, Vec<Watermark>>;
    /// What is known of a person for planning.
    fn person_context(&self, person_id: &str) -> StoreFuture<'_, PersonContext>;
    /// A person's identity record.
    fn identity(&self, person_id: &str) -> StoreFuture<'_, Option<IdentityRecord>>;
    /// Every event of a person, in arrival order (the calendar: pending
    /// deletions, rehires after a leaver).
    fn person_events(&self, person_id: &str) -> StoreFuture<'_, Vec<EventRecord>>;
    /// Audit records with seq > `after`, at most `limit`, in order.
    fn audit_records(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<AuditRecord>>;
    /// An event's audit records, in order.
    fn event_audit(&self, event_id: &str) -> StoreFuture<'_, Vec<AuditRecord>>;
    /// Tasks whose deadline is before `now` and that are unfinished or were
    /// flagged breached.
    fn overdue(&self, now: i64) -> StoreFuture<'_, Vec<OverdueRecord>>;
    /// Identity records with `person_id > after` (byte order), at most
    /// `limit`, in `person_id` order, each with the kind of the event that
    /// set it: the expected side of a reconciliation, paged so it is never
    /// held whole. Start with `after = ""`.
    fn identities_after(&self, after: String, limit: u32) -> StoreFuture<'_, Vec<(IdentityRecord, EventKindName)>>;
    /// Loads baseline identity records ([`baseline`]) with their audit
    /// records in one transaction; returns (loaded, unchanged).
    fn load_identities(
        &self,
        records: Vec<baseline::BaselineIdentity>,
        audit: Vec<AuditEntry>,
    ) -> StoreFuture<'_, (u64, u64)>;
    /// Writes HR ingestion documents with their audit records in one
    /// transaction (all or nothing).
    fn ingest_put(&self, puts: Vec<IngestPut>, audit: Vec<AuditEntry>) -> StoreFuture<'_, ()>;
    /// One HR ingestion document.
    fn ingest_get(&self, space: &str, key: &str) -> StoreFuture<'_, Option<String>>;
    /// HR ingestion documents of `space` with key > `after` (byte order), at
    /// most `limit`, in key order: (key, document).
    fn ingest_after(&self, space: &str, after: String, limit: u32) -> StoreFuture<'_, Vec<(String, String)>>;
    /// The account-name index ([`account_names`]): the names on `target_id`
    /// equal to `account_name`, or equal to it case-folded or by UTS #39
    /// skeleton, with the person holding each.
    fn account_name_holders(&self, target_id: &str, account_name: &str) -> StoreFuture<'_, Vec<AccountNameRecord>>;
}

/// Walks the whole audit chain of a store.
pub async fn verify_audit(store: &dyn Store) -> Result<ChainVerdict, StoreError> {
    walk_chain(|after| store.audit_records(after, 5000)).await
}

/// Walks a chain page by page (`page(after)` gives the records with seq >
/// `after`, in order; empty at the end) and names the first broken record.
pub async fn walk_chain<'a, F>(mut page: F) -> Result<ChainVerdict, StoreError>
where
    F: FnMut(i64) -> StoreFuture<'a, Vec<AuditRecord>>,
{
    let mut head = (0i64, GENESIS_HASH.to_string());
    let mut records = 0u64;
    loop {
        let page = page(head.0).await?;
        if page.is_empty() {
            return Ok(ChainVerdict { records, broken: None });
        }
        match verify_chain_segment(&page, head.clone()) {
            Ok(next) => {
                records += page.len() as u64;
                head = next;
            }
            Err((seq, reason)) => {
                records += page.iter().take_while(|r| r.seq < seq).count() as u64;
                return Ok(ChainVerdict { records, broken: Some((seq, reason)) });
            }
        }
    }
}

/// A database's audit chain opened read-only, without a coordinator: what
/// `jmlctl audit verify --db` checks offline. Never creates or migrates.
#[derive(Debug)]
pub enum ReadOnlyAudit {
    /// A SQLite file.
    Sqlite(sqlx::SqlitePool),
    /// A PostgreSQL database (read-only transactions).
    Postgres(sqlx::PgPool),
}

impl ReadOnlyAudit {
    /// Opens `db`: a `postgres://` URL or the path of an existing SQLite file.
    pub async fn open(db: &str) -> Result<Self, StoreError> {
        if postgres::is_postgres_url(db) {
            return Ok(Self::Postgres(postgres::open_read_only(db).await?));
        }
        let path = std::path::Path::new(db);
        if !path.exists() {
            return Err(StoreError::NotFound(format!("database file {}", path.display())));
        }
        Ok(Self::Sqlite(sqlite::SqliteStore::open_read_only(path).await?))
    }

    /// Walks the whole chain.
    pub async fn verify(&self) -> Result<ChainVerdict, StoreError> {
        walk_chain(|after| -> StoreFuture<'_, Vec<AuditRecord>> {
            match self {
                Self::Sqlite(pool) => Box::pin(reads::audit_records(pool, after, 5000)),
                Self::Postgres(pool) => Box::pin(reads::audit_records(pool, after, 5000)),
            }
        })
        .await
    }
}
