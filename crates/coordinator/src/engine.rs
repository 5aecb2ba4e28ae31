//! The propagation engine: accepts events, plans them, and drives every
//! (event, target) task through planned -> (awaiting approval) -> dispatched
//! -> acknowledged -> verified | failed, persisting each state *before* the
//! next step.
//!
//! One scheduler task owns the queue (no locks): per person and target, a
//! *lane* of unfinished tasks ordered by (effective time, arrival). Only the
//! latest task whose effective time has come runs; the earlier ones in its
//! lane, not yet started, are *superseded* (each plan is a complete desired
//! state, so applying the latest one is what applying them all in order would
//! leave). A task arriving older than one already dispatched for the same
//! lane is superseded on arrival: a stale event never re-grants what a newer
//! one removed. An urgent leaver supersedes every other unstarted task of the
//! person and jumps ahead of every queued task of its target; ordinary work
//! never takes the target's last `urgent_headroom` slots, so an urgent
//! leaver finds one free however long the backlog. Tasks whose
//! effective time is in the future wait for it.
//!
//! Workers apply through [`ConnectorClient`] (timeouts, in-call retries,
//! concurrency limit admitting an urgent leaver's calls first), then read back and compare with the target's cached
//! `Describe`; a mismatch or a retryable error is retried with jittered
//! exponential backoff honouring retry-after until the attempts are spent.
//! The command id is derived from (event, target, desired state), so a task
//! re-dispatched after a crash is idempotent on the connector.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use connector_kit::client::ConnectorClient;
use connector_kit::{ConnectorError, ErrorKind};
use jml_contract::v1 as pb;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OnceCell, broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::claims::{LaneLeases, LaneState};
use crate::event::{ValidEvent, format_time, kind_name, now_ms};
use crate::evidence::{acknowledgement_json, entitlement_json, read_back_json};
use crate::metrics::CoordinatorMetrics;
use crate::planner::{PlanInput, message_hash, plan, plan_hash};
use crate::policy::{EventKindName, Policy};
use crate::store::{
    ApprovalRecord, AuditEntry, EventRecord, EventState, InsertOutcome, Store, StoreError, TaskRecord, TaskState,
};

mod manual;
mod scheduler;
mod task;

use scheduler::*;
use task::*;

/// An engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is invalid; names the field.
    #[error("{0}")]
    InvalidArgument(#[from] crate::event::InvalidEvent),
    /// Not found.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller may not do this (separation of duties, group membership).
    #[error("{0}")]
    PermissionDenied(String),
    /// The task is not in a state allowing this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A desired account name collides with another person's on the same
    /// target (`crate::naming`): the whole event is refused.
    #[error(transparent)]
    NameCollision(#[from] crate::naming::NameCollision),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A connector endpoint or TLS setting could not be used.
    #[error("target {target}: {message}")]
    Target {
        /// The target.
        target: String,
        /// Why.
        message: String,
    },
}

/// How the engine retries and protects targets.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Apply + read-back attempts per task before it fails.
    pub max_attempts: u32,
    /// First backoff between attempts; doubles per attempt, with jitter.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Consecutive unavailable/timeout errors that open a target's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker stops dispatch to its target.
    pub breaker_cooldown: Duration,
    /// Deadline of one connector call.
    pub call_timeout: Duration,
    /// How often a task awaiting fulfilment on a manual target reads its
    /// ticket for an attestation.
    pub fulfilment_poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(5),
            call_timeout: Duration::from_secs(15),
            fulfilment_poll: manual::DEFAULT_FULFILMENT_POLL,
        }
    }
}

/// What the caller gets back for a submitted event.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitOutcome {
    /// The stored event (the first one for a duplicate id).
    pub event: EventRecord,
    /// Whether the id had been submitted before.
    pub duplicate: bool,
}

/// A planned dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// The plan.
    pub plan: pb::Plan,
    /// Its hash.
    pub plan_hash: String,
    /// The policy hash.
    pub policy_hash: String,
}

struct TargetRuntime {
    client: ConnectorClient,
    description: OnceCell<pb::DescribeResponse>,
    concurrency: usize,
    /// Slots of `concurrency` only urgent work may take (the policy's
    /// `urgent_headroom`): ordinary work never fills the target.
    urgent_headroom: usize,
}

impl TargetRuntime {
    async fn describe(&self) -> Result<&pb::DescribeResponse, ConnectorError> {
        self.description.get_or_try_init(|| self.client.describe()).await
    }
}

struct Inner {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    targets: BTreeMap<String, Arc<TargetRuntime>>,
    config: EngineConfig,
    scheduler: mpsc::UnboundedSender<SchedulerMessage>,
    updates: broadcast::Sender<String>,
    finished: broadcast::Sender<(String, EventState)>,
    decisions: Mutex<()>,
    /// Event trace contexts and live dispatch spans.
    dispatch_spans: crate::tracing_context::DispatchSpans,
    /// Lane leases when this engine is one of several replicas on one
    /// PostgreSQL database; `None` for a single coordinator.
    leases: Option<LaneLeases>,
}

impl Inner {
    /// Stores a task the scheduler or a worker changed: fenced by the lane's
    /// lease when replicated.
    async fn save_task(&self, task: TaskRecord, audit: Vec<AuditEntry>) -> Result<Option<EventState>, StoreError> {
        match &self.leases {
            Some(leases) => self.store.save_held_task(task, audit, leases.replica()).await,
            None => self.store.save_task(task, audit).await,
        }
    }

    /// The lease epoch a command for `task` carries: 0 for a single
    /// coordinator; a replica's epoch of the task's lane, `None` when it does
    /// not hold the lane (see [`crate::claims`]).
    fn lease_epoch(&self, task: &TaskRecord) -> Option<u64> {
        match &self.leases {
            Some(leases) => leases.epoch(&lane(task)),
            None => Some(0),
        }
    }
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("targets", &self.inner.targets.keys().collect::<Vec<_>>()).finish()
    }
}

/// The command id for a (event, target, desired state): deterministic, so a
/// re-dispatch is idempotent; a new desired state (after a rejection) gets a
/// new id.
pub fn command_id(event_id: &str, target_id: &str, desired: &pb::DesiredAccount) -> String {
    let mut digest = Sha256::new();
    digest.update(event_id.as_bytes());
    digest.update([0]);
    digest.update(target_id.as_bytes());
    digest.update([0]);
    digest.update(message_hash(desired).as_bytes());
    format!("jml-{}", &hex::encode(digest.finalize())[..40])
}

fn subject_principals(event: &EventRecord) -> BTreeSet<String> {
    let mut names = BTreeSet::from([event.person_id.clone()]);
    if let Some(username) = event.attributes.get("username") {
        names.insert(username.clone());
    }
    names
}

impl Engine {
    /// Builds connector clients from the policy, recovers every unfinished
    /// task from the store and starts the scheduler: the only coordinator
    /// on its database.
    pub async fn start(store: Arc<dyn Store>, policy: Arc<Policy>, config: EngineConfig) -> Result<Self, EngineError> {
        Self::start_with(store, policy, config, None).await
    }

    /// Starts one of several replicas sharing `store` (PostgreSQL): it runs
    /// only the lanes whose leases it holds (see [`crate::claims`]),
    /// claiming the lanes of the events it accepts and free or expired lanes
    /// while its backlog is short, and taking over a dead replica's lanes.
    pub async fn start_replica(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        config: EngineConfig,
        leases: LaneLeases,
    ) -> Result<Self, EngineError> {
        Self::start_with(store, policy, config, Some(leases)).await
    }

    async fn start_with(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        config: EngineConfig,
        leases: Option<LaneLeases>,
    ) -> Result<Self, EngineError> {
        let mut targets = BTreeMap::new();
        for target in &policy.file.targets {
            let client = crate::live_check::connector_client(target, config.call_timeout)
                .map_err(|e| EngineError::Target { target: target.id.clone(), message: e.to_string() })?;
            targets.insert(
                target.id.clone(),
                Arc::new(TargetRuntime {
                    client,
                    description: OnceCell::new(),
                    concurrency: target.concurrency.max(1),
                    urgent_headroom: target.urgent_headroom.min(target.concurrency.saturating_sub(1)),
                }),
            );
        }
        let (scheduler_tx, scheduler_rx) = mpsc::unbounded_channel();
        let (updates, _) = broadcast::channel(8192);
        let (finished, _) = broadcast::channel(8192);
        let inner = Arc::new(Inner {
            store,
            policy,
            targets,
            config,
            scheduler: scheduler_tx,
            updates,
            finished,
            decisions: Mutex::new(()),
            dispatch_spans: crate::tracing_context::DispatchSpans::default(),
            leases,
        });
        tokio::spawn(crate::metrics::observe_finished(inner.store.clone(), inner.finished.subscribe()));
        if let Some(leases) = inner.leases.clone() {
            // A replica recovers nothing itself: it takes lanes over with
            // their stored tasks as it claims them.
            tracing::info!(replica = %leases.replica(), lease_ms = leases.lease().as_millis(), "engine starting as a replica");
            let scheduler = Scheduler::new(inner.clone(), HashMap::new(), true);
            tokio::spawn(scheduler.run(scheduler_rx));
            tokio::spawn(run_leases(inner.clone(), leases));
            return Ok(Self { inner });
        }
        let watermarks = inner.store.started_watermarks().await?.into_iter().collect();
        let unfinished = inner.store.unfinished_tasks().await?;
        tracing::info!(recovered = unfinished.len(), "engine starting");
        let scheduler = Scheduler::new(inner.clone(), watermarks, false);
        tokio::spawn(scheduler.run(scheduler_rx));
        let _ = inner.scheduler.send(SchedulerMessage::Enqueue(unfinished));
        Ok(Self { inner })
    }

    /// Whether this process runs the periodic job `name` (period `every`)
    /// now: always for a single coordinator; for a replica, only when it is
    /// the first to start the period (see [`LaneLeases::take_schedule_run`]).
    pub async fn take_schedule_run(&self, name: &str, every: Duration) -> bool {
        let Some(leases) = &self.inner.leases else { return true };
        match leases.take_schedule_run(name, every, now_ms()).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(%error, schedule = %name, "cannot record a schedule run; skipping this period");
                false
            }
        }
    }

    /// The replica's name, when this engine is one of several replicas.
    pub fn replica(&self) -> Option<&str> {
        self.inner.leases.as_ref().map(LaneLeases::replica)
    }

    /// Gives every lane lease back (a clean shutdown of a replica), so the
    /// other replicas take the lanes over without waiting for expiry.
    pub async fn release_leases(&self) {
        if let Some(leases) = &self.inner.leases {
            match leases.release_all().await {
                Ok(released) => tracing::info!(released, "lane leases released"),
                Err(error) => tracing::warn!(%error, "cannot release lane leases; they expire"),
            }
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The connector client of a target (the same one propagation uses) and
    /// its cached `Describe`.
    pub async fn target_connector(
        &self,
        target_id: &str,
    ) -> Result<(ConnectorClient, pb::DescribeResponse), EngineError> {
        let runtime =
            self.inner.targets.get(target_id).ok_or_else(|| EngineError::NotFound(format!("target {target_id:?}")))?;
        let description = runtime
            .describe()
            .await
            .map_err(|e| EngineError::Target { target: target_id.to_owned(), message: e.to_string() })?
            .clone();
        Ok((runtime.client.clone(), description))
    }

    /// Event ids whose status changed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.updates.subscribe()
    }

    /// Events as they finish (verified, failed or superseded).
    pub fn subscribe_finished(&self) -> broadcast::Receiver<(String, EventState)> {
        self.inner.finished.subscribe()
    }

    async fn plan_for(&self, event: &ValidEvent) -> Result<(BTreeMap<String, String>, pb::Plan), EngineError> {
        crate::leave::check(self.inner.store.as_ref(), event).await.map_err(|e| match e {
            crate::leave::CheckError::Invalid(invalid) => EngineError::InvalidArgument(invalid),
            crate::leave::CheckError::Store(store) => EngineError::Store(store),
        })?;
        let context = self.inner.store.person_context(&event.person_id).await?;
        let mut attributes = event.attributes.clone();
        if matches!(event.kind, EventKindName::Leaver | EventKindName::Suspension | EventKindName::Return)
            && let Some(latest) = context.latest_attributes
        {
            for (name, value) in latest {
                attributes.entry(name).or_insert(value);
            }
        }
        let input = PlanInput {
            person_id: &event.person_id,
            kind: event.kind,
            attributes: &attributes,
            provisioned: &context.provisioned,
        };
        let mut plan = plan(input, &self.inner.policy)?;
        crate::leave::approved_before_leave(self.inner.store.as_ref(), event, &mut plan).await?;
        Ok((attributes, plan))
    }

    /// A dry run: nothing is written.
    pub async fn dry_run(&self, event: &ValidEvent) -> Result<DryRun, EngineError> {
        let (_, plan) = self.plan_for(event).await?;
        Ok(DryRun { plan_hash: plan_hash(&plan), plan, policy_hash: self.inner.policy.hash.clone() })
    }

    /// Accepts an event: plans it and stores it with its tasks and audit
    /// records in one transaction, then queues the tasks. A duplicate id
    /// returns the first event unchanged.
    pub async fn submit(&self, event: ValidEvent, initiator: String) -> Result<SubmitOutcome, EngineError> {
        let span = crate::tracing_context::event_span(&event);
        let outcome = self.submit_in_span(event, initiator).instrument(span).await?;
        // Outside the event's span: a scheduled stage is its own trace.
        crate::calendar::after_submit(self, &outcome).await?;
        Ok(outcome)
    }

    /// Supersedes these unfinished, not running tasks with `reason` (the
    /// calendar: a rehire cancels a pending deletion). Tasks of lanes this
    /// process does not hold, or already running, are left alone.
    pub(crate) fn cancel_tasks(&self, tasks: Vec<TaskKey>, reason: String) {
        let _ = self.inner.scheduler.send(SchedulerMessage::Cancel { tasks, reason });
    }

    async fn submit_in_span(&self, event: ValidEvent, initiator: String) -> Result<SubmitOutcome, EngineError> {
        if let Some(first) = self.inner.store.event(&event.event_id).await? {
            return Ok(SubmitOutcome { event: first, duplicate: true });
        }
        let (attributes, plan) = self.plan_for(&event).instrument(crate::tracing_context::plan_span()).await?;
        self.check_naming(&event.person_id, &plan).await?;
        self.accept_planned(event, attributes, plan, initiator).await
    }

    /// Every desired account name checked against its target's declared
    /// naming rules and against the names other people hold there
    /// (`crate::naming`): the whole event is refused before anything is
    /// written.
    async fn check_naming(&self, person_id: &str, plan: &pb::Plan) -> Result<(), EngineError> {
        for planned in &plan.targets {
            let Some(runtime) = self.inner.targets.get(&planned.target_id) else { continue };
            let description = runtime
                .describe()
                .await
                .map_err(|e| EngineError::Target { target: planned.target_id.clone(), message: e.to_string() })?;
            if let Some(refusal) = crate::naming::refusal(planned, description) {
                return Err(refusal.into());
            }
            let Some(account) = planned.desired.as_ref().and_then(|d| d.account.as_ref()) else { continue };
            let holders = self.inner.store.account_name_holders(&planned.target_id, &account.account_name).await?;
            if let Some(collision) = crate::naming::collision(planned, description, person_id, &holders) {
                return Err(collision.into());
            }
        }
        Ok(())
    }

    /// Stores an event the caller planned (with the same planner) and queues
    /// its tasks exactly as [`Engine::submit`] does: the same approval rules,
    /// audit records, ordering and read-back. Used by reconciliation to push
    /// the expected state back to one target. A duplicate id returns the
    /// first event unchanged.
    pub async fn accept_planned(
        &self,
        event: ValidEvent,
        attributes: BTreeMap<String, String>,
        plan: pb::Plan,
        initiator: String,
    ) -> Result<SubmitOutcome, EngineError> {
        if let Some(first) = self.inner.store.event(&event.event_id).await? {
            return Ok(SubmitOutcome { event: first, duplicate: true });
        }
        let now = now_ms();
        let effective_at = event.effective_at_ms.unwrap_or(now);
        let hash = plan_hash(&plan);
        let trace_span = crate::tracing_context::current_event_span(&event);
        crate::tracing_context::record_workflows(&trace_span, &plan);
        let trace_context = crate::tracing_context::stored_trace_context(&trace_span);
        let mut tasks = Vec::with_capacity(plan.targets.len());
        for planned in &plan.targets {
            let desired = planned.desired.clone().unwrap_or_default();
            let deadline_ms = i64::try_from(planned.deadline_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            tasks.push(TaskRecord {
                event_id: event.event_id.clone(),
                target_id: planned.target_id.clone(),
                event_seq: 0,
                person_id: event.person_id.clone(),
                effective_at,
                urgent: event.urgent,
                state: if planned.approvals_required > 0 { TaskState::AwaitingApproval } else { TaskState::Planned },
                grants_access: desired.enabled,
                command_id: command_id(&event.event_id, &planned.target_id, &desired),
                planned: planned.clone(),
                attempts: 0,
                next_attempt_at: None,
                last_error: String::new(),
                acknowledgement: None,
                read_back: None,
                differences: Vec::new(),
                deadline_at: now.max(effective_at).saturating_add(deadline_ms),
                deadline_breached: false,
                planned_at: now,
                dispatched_at: None,
                acknowledged_at: None,
                finished_at: None,
                residual_risks: Vec::new(),
            });
        }
        let record = EventRecord {
            seq: 0,
            event_id: event.event_id.clone(),
            kind: event.kind,
            person_id: event.person_id.clone(),
            attributes,
            effective_at,
            source_system: event.source_system.clone(),
            initiator: initiator.clone(),
            urgent: event.urgent,
            received_at: now,
            policy_hash: self.inner.policy.hash.clone(),
            plan: plan.clone(),
            plan_hash: hash.clone(),
            trace_id: trace_context.clone(),
            state: if tasks.is_empty() { EventState::NothingToDo } else { EventState::InProgress },
            finished_at: tasks.is_empty().then_some(now),
        };
        let audit = vec![AuditEntry {
            at: now,
            principal: initiator,
            event_id: event.event_id.clone(),
            action: "event.accepted".into(),
            payload: json!({
                "kind": kind_name(event.kind),
                "person_id": event.person_id,
                "source_system": event.source_system,
                "urgent": event.urgent,
                "effective_at": format_time(Some(effective_at)),
                "source_changed_at": format_time(event.source_changed_at_ms),
                "workflows": plan.workflows.iter().map(|w| json!({ "name": w.name, "owner": w.owner })).collect::<Vec<_>>(),
                "policy_hash": self.inner.policy.hash,
                "plan_hash": hash,
                "tasks": tasks.iter().map(|t| json!({
                    "target_id": t.target_id,
                    "state": t.state.as_str(),
                    "command_id": t.command_id,
                    "desired_hash": message_hash(&t.desired()),
                    "deadline_at": format_time(Some(t.deadline_at)),
                    "awaiting_approval": t.planned.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        }];
        match self.inner.store.insert_event(record.clone(), tasks.clone(), audit).await? {
            InsertOutcome::Duplicate(first) => Ok(SubmitOutcome { event: *first, duplicate: true }),
            InsertOutcome::Inserted(seq) => {
                self.inner.dispatch_spans.remember(&event.event_id, &trace_context);
                if let Some(changed_at) = event.source_changed_at_ms {
                    CoordinatorMetrics::get().source_changed(&event.event_id, changed_at);
                }
                for task in &mut tasks {
                    task.event_seq = seq;
                }
                let _ = self.inner.scheduler.send(SchedulerMessage::Enqueue(tasks));
                let _ = self.inner.updates.send(event.event_id.clone());
                Ok(SubmitOutcome { event: EventRecord { seq, ..record }, duplicate: false })
            }
        }
    }

    /// Approves (or rejects) the grants awaiting approval on one target of
    /// an event, as `principal`. Separation of duties: the initiator and the
    /// subject can never decide; the approver must belong to the task's
    /// approver group; each approver decides once.
    pub async fn decide(
        &self,
        event_id: &str,
        target_id: &str,
        principal: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(TaskRecord, u32), EngineError> {
        let _serialised = self.inner.decisions.lock().await;
        let store = &self.inner.store;
        let event = store.event(event_id).await?.ok_or_else(|| EngineError::NotFound(format!("event {event_id:?}")))?;
        let mut task = store
            .task(event_id, target_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("task for target {target_id:?} of event {event_id:?}")))?;
        if task.state != TaskState::AwaitingApproval {
            return Err(EngineError::FailedPrecondition(format!(
                "the task is {}, not awaiting approval",
                task.state.as_str()
            )));
        }
        if principal == event.initiator {
            return Err(EngineError::PermissionDenied("the initiator of an event cannot approve or reject it".into()));
        }
        if subject_principals(&event).contains(principal) {
            return Err(EngineError::PermissionDenied("the subject of an event cannot approve or reject it".into()));
        }
        let group = task.planned.approver_group.clone();
        if !self.inner.policy.group_members(&group).iter().any(|member| member == principal) {
            return Err(EngineError::PermissionDenied(format!("{principal:?} is not in approver group {group:?}")));
        }
        let now = now_ms();
        let decision = if approve { "approve" } else { "reject" };
        store
            .record_approval(
                ApprovalRecord {
                    event_id: event_id.to_owned(),
                    target_id: target_id.to_owned(),
                    approver: principal.to_owned(),
                    decision: decision.into(),
                    comment: comment.to_owned(),
                    at: now,
                },
                AuditEntry {
                    at: now,
                    principal: principal.to_owned(),
                    event_id: event_id.to_owned(),
                    action: format!("approval.{decision}"),
                    payload: json!({
                        "target_id": target_id,
                        "group": group,
                        "comment": comment,
                        "grants": task.planned.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
                    }),
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(message) => EngineError::FailedPrecondition(message),
                other => EngineError::Store(other),
            })?;
        let approvals = store.approvals(event_id).await?;
        let approved = approvals
            .iter()
            .filter(|a| a.target_id == target_id && a.decision == "approve")
            .map(|a| a.approver.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u32;
        let released = if !approve {
            let removed = std::mem::take(&mut task.planned.awaiting_approval);
            let removed_keys: HashSet<(String, String)> =
                removed.iter().map(|e| (e.kind.clone(), e.id.clone())).collect();
            if let Some(desired) = task.planned.desired.as_mut() {
                desired.entitlements.retain(|e| !removed_keys.contains(&(e.kind.clone(), e.id.clone())));
            }
            task.planned.approvals_required = 0;
            task.command_id = command_id(event_id, target_id, &task.desired());
            task.state = TaskState::Planned;
            Some(AuditEntry {
                at: now,
                principal: principal.to_owned(),
                event_id: event_id.to_owned(),
                action: "task.replanned_without_rejected_grants".into(),
                payload: json!({
                    "target_id": target_id,
                    "removed": removed.iter().map(entitlement_json).collect::<Vec<_>>(),
                    "desired_hash": message_hash(&task.desired()),
                    "command_id": task.command_id,
                }),
            })
        } else if approved >= task.planned.approvals_required {
            task.state = TaskState::Planned;
            Some(AuditEntry {
                at: now,
                principal: principal.to_owned(),
                event_id: event_id.to_owned(),
                action: "task.approved".into(),
                payload: json!({ "target_id": target_id, "approvals": approved, "required": task.planned.approvals_required }),
            })
        } else {
            None
        };
        if let Some(audit) = released {
            crate::tracing_context::approval_wait(&event.trace_id, event_id, target_id, decision, event.received_at);
            store.save_task(task.clone(), vec![audit]).await?;
            let _ = self.inner.scheduler.send(SchedulerMessage::Released(Box::new(task.clone())));
        }
        let _ = self.inner.updates.send(event_id.to_owned());
        Ok((task, approved))
    }
}
