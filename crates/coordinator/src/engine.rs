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

// ---------------------------------------------------------------------------
// Scheduler

type TaskKey = (String, String);
type LaneKey = (String, String);
type Order = (i64, i64);

enum SchedulerMessage {
    /// Tasks to run: recovered at start, or accepted by this process (a
    /// replica queues those of lanes it holds and claims the others).
    Enqueue(Vec<TaskRecord>),
    Finished(Box<TaskRecord>, Outcome),
    Released(Box<TaskRecord>),
    /// Replica: lanes of accepted tasks that another replica holds.
    Unclaimed(Vec<LaneKey>),
    /// Replica: lanes just claimed, with their stored tasks and watermarks.
    Claimed {
        lanes: Vec<LaneKey>,
        state: LaneState,
        at: i64,
    },
    /// Replica: what the lease loop needs this round.
    Poll {
        renew: bool,
        reply: oneshot::Sender<PollView>,
    },
    /// Replica: lanes whose lease was found lost at `as_of`.
    Lost {
        lanes: Vec<LaneKey>,
        as_of: i64,
    },
    /// Replica: the stored unfinished tasks of held lanes; answers which
    /// ones this process does not know as stored (new, or released by an
    /// approval on another replica).
    Unknown {
        stored: Vec<(String, String, TaskState)>,
        reply: oneshot::Sender<Vec<TaskKey>>,
    },
    /// Replica: rows asked for after `Unknown`.
    Loaded(Vec<TaskRecord>),
    /// Supersede these tasks unless running (see [`Engine::cancel_tasks`]).
    Cancel {
        tasks: Vec<TaskKey>,
        reason: String,
    },
}

/// The scheduler's answer to the lease loop.
#[derive(Debug, Default)]
struct PollView {
    /// Lanes of accepted tasks this replica does not hold yet.
    pending_claims: Vec<LaneKey>,
    /// Unfinished tasks held in memory.
    backlog: usize,
    /// Lanes held with work in them (to renew), when asked for.
    working_lanes: Vec<LaneKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// The target could not be reached (counts towards the breaker).
    Unreachable,
    /// Replica: a write was refused because the lane's lease was lost.
    LeaseLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotStatus {
    Waiting,
    Queued,
    InFlight,
}

struct Slot {
    record: TaskRecord,
    status: SlotStatus,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ReadyItem {
    urgent: bool,
    order: Reverse<Order>,
    key: TaskKey,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: i64,
}

struct Scheduler {
    inner: Arc<Inner>,
    slots: HashMap<TaskKey, Slot>,
    lanes: HashMap<LaneKey, BTreeSet<(Order, TaskKey)>>,
    watermarks: HashMap<LaneKey, Order>,
    ready: HashMap<String, BinaryHeap<ReadyItem>>,
    in_flight: HashMap<String, usize>,
    breakers: HashMap<String, Breaker>,
    timers: BinaryHeap<Reverse<(i64, LaneKey)>>,
    dirty: HashSet<LaneKey>,
    last_sweep: i64,
    /// Replica: the lanes held, with when each was claimed (Unix ms); `None`
    /// for a single coordinator, which holds every lane.
    held: Option<HashMap<LaneKey, i64>>,
    /// Replica: lanes of accepted tasks to claim.
    pending_claims: HashSet<LaneKey>,
    /// Replica: tasks finished here recently (Unix ms), so a stale read of
    /// the store does not queue them again.
    finished_recently: HashMap<TaskKey, i64>,
}

/// How long a finished task is remembered against stale reads.
const FINISHED_MEMORY_MS: i64 = 120_000;

fn order(task: &TaskRecord) -> Order {
    (task.effective_at, task.event_seq)
}

fn lane(task: &TaskRecord) -> LaneKey {
    (task.person_id.clone(), task.target_id.clone())
}

fn key(task: &TaskRecord) -> TaskKey {
    (task.event_id.clone(), task.target_id.clone())
}

impl Scheduler {
    fn new(inner: Arc<Inner>, watermarks: HashMap<LaneKey, Order>, replica: bool) -> Self {
        Self {
            inner,
            slots: HashMap::new(),
            lanes: HashMap::new(),
            watermarks,
            ready: HashMap::new(),
            in_flight: HashMap::new(),
            breakers: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: HashSet::new(),
            last_sweep: 0,
            held: replica.then(HashMap::new),
            pending_claims: HashSet::new(),
            finished_recently: HashMap::new(),
        }
    }

    fn holds(&self, lane_key: &LaneKey) -> bool {
        self.held.as_ref().is_none_or(|held| held.contains_key(lane_key))
    }

    /// Forgets a lane this replica no longer holds: its waiting tasks are
    /// dropped (the new holder runs them from the store); an in-flight one
    /// is dropped when its worker returns (its writes are fenced).
    fn drop_lane(&mut self, lane_key: &LaneKey) {
        if let Some(held) = self.held.as_mut() {
            held.remove(lane_key);
        }
        self.watermarks.remove(lane_key);
        let Some(lane) = self.lanes.remove(lane_key) else { return };
        let mut keep = BTreeSet::new();
        for entry in lane {
            match self.slots.get(&entry.1) {
                Some(slot) if slot.status == SlotStatus::InFlight => {
                    keep.insert(entry);
                }
                _ => {
                    self.slots.remove(&entry.1);
                }
            }
        }
        if !keep.is_empty() {
            self.lanes.insert(lane_key.clone(), keep);
        }
        tracing::info!(person = %lane_key.0, target = %lane_key.1, "lane lease lost; left to its new holder");
    }

    fn poll_view(&mut self, renew: bool) -> PollView {
        if renew && let Some(held) = self.held.as_mut() {
            // A lane left without work is no longer renewed, so it is no
            // longer held: its next task is claimed again first.
            held.retain(|lane_key, _| self.lanes.contains_key(lane_key));
        }
        PollView {
            pending_claims: self.pending_claims.iter().cloned().collect(),
            backlog: self.slots.len(),
            working_lanes: if renew { self.lanes.keys().cloned().collect() } else { Vec::new() },
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SchedulerMessage>) {
        loop {
            let now = now_ms();
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at).unwrap_or(now + 250);
            let wait = Duration::from_millis(u64::try_from((next_timer - now).clamp(1, 250)).unwrap_or(250));
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { return };
                    self.handle(message);
                    while let Ok(message) = rx.try_recv() {
                        self.handle(message);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            let now = now_ms();
            while let Some(Reverse((at, _))) = self.timers.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, lane))) = self.timers.pop() {
                    self.dirty.insert(lane);
                }
            }
            let dirty: Vec<LaneKey> = self.dirty.drain().collect();
            for lane in dirty {
                self.evaluate(&lane, now);
            }
            self.dispatch(now);
            if now - self.last_sweep >= 1000 {
                self.last_sweep = now;
                self.finished_recently.retain(|_, at| now - *at < FINISHED_MEMORY_MS);
                self.sweep_deadlines(now);
                CoordinatorMetrics::get().refresh_queue(self.slots.values().map(|slot| &slot.record), now);
            }
        }
    }

    fn handle(&mut self, message: SchedulerMessage) {
        match message {
            SchedulerMessage::Enqueue(tasks) => {
                for task in tasks {
                    if self.holds(&lane(&task)) {
                        self.enqueue(task);
                    } else {
                        // Claimed by the lease loop, which loads it from the store.
                        self.pending_claims.insert(lane(&task));
                    }
                }
            }
            SchedulerMessage::Claimed { lanes, state, at } => {
                for lane_key in lanes {
                    self.pending_claims.remove(&lane_key);
                    if let Some(held) = self.held.as_mut() {
                        held.insert(lane_key, at);
                    }
                }
                for (lane_key, mark) in state.watermarks {
                    let entry = self.watermarks.entry(lane_key).or_insert(mark);
                    if mark > *entry {
                        *entry = mark;
                    }
                }
                for task in state.tasks {
                    if self.holds(&lane(&task)) {
                        self.enqueue(task);
                    }
                }
            }
            SchedulerMessage::Unclaimed(lanes) => {
                for lane_key in lanes {
                    self.pending_claims.remove(&lane_key);
                }
            }
            SchedulerMessage::Poll { renew, reply } => {
                let _ = reply.send(self.poll_view(renew));
            }
            SchedulerMessage::Lost { lanes, as_of } => {
                for lane_key in lanes {
                    let claimed_at = self.held.as_ref().and_then(|held| held.get(&lane_key)).copied();
                    if claimed_at.is_some_and(|at| at <= as_of) {
                        self.drop_lane(&lane_key);
                    }
                }
            }
            SchedulerMessage::Unknown { stored, reply } => {
                let wanted = stored
                    .into_iter()
                    .filter(|(event_id, target_id, state)| {
                        let task_key = (event_id.clone(), target_id.clone());
                        match self.slots.get(&task_key) {
                            Some(slot) => {
                                slot.record.state == TaskState::AwaitingApproval && *state == TaskState::Planned
                            }
                            None => !self.finished_recently.contains_key(&task_key),
                        }
                    })
                    .map(|(event_id, target_id, _)| (event_id, target_id))
                    .collect();
                let _ = reply.send(wanted);
            }
            SchedulerMessage::Loaded(tasks) => {
                for task in tasks {
                    let task_key = key(&task);
                    if self.finished_recently.contains_key(&task_key) {
                        continue;
                    }
                    if !self.holds(&lane(&task)) {
                        // Still this replica's in the store, no longer here:
                        // claimed again, then loaded with its lane.
                        self.pending_claims.insert(lane(&task));
                        continue;
                    }
                    match self.slots.get_mut(&task_key) {
                        Some(slot) => {
                            // Approved or replanned on another replica.
                            if slot.record.state == TaskState::AwaitingApproval && task.state == TaskState::Planned {
                                slot.record = task;
                                self.dirty.insert(lane(&slot.record));
                            }
                        }
                        None => self.enqueue(task),
                    }
                }
            }
            SchedulerMessage::Finished(task, outcome) => {
                let target = task.target_id.clone();
                if let Some(count) = self.in_flight.get_mut(&target) {
                    *count = count.saturating_sub(1);
                }
                if outcome == Outcome::LeaseLost {
                    let lane_key = lane(&task);
                    if let Some(slot) = self.slots.get_mut(&key(&task)) {
                        slot.status = SlotStatus::Waiting;
                    }
                    self.drop_lane(&lane_key);
                    return;
                }
                let breaker = self.breakers.entry(target).or_default();
                if outcome == Outcome::Unreachable {
                    breaker.failures += 1;
                    if breaker.failures >= self.inner.config.breaker_threshold {
                        let cooldown = i64::try_from(self.inner.config.breaker_cooldown.as_millis()).unwrap_or(5000);
                        breaker.open_until = now_ms() + cooldown;
                        tracing::warn!(target = %task.target_id, "circuit breaker open");
                    }
                } else {
                    breaker.failures = 0;
                }
                self.settle(*task);
            }
            SchedulerMessage::Cancel { tasks, reason } => {
                for task_key in tasks {
                    let Some(slot) = self.slots.get(&task_key) else { continue };
                    if slot.status != SlotStatus::InFlight {
                        let lane_key = lane(&slot.record);
                        self.remove_and_supersede(&task_key, &reason);
                        self.dirty.insert(lane_key);
                    }
                }
            }
            SchedulerMessage::Released(task) => {
                if let Some(slot) = self.slots.get_mut(&key(&task))
                    && slot.record.state == TaskState::AwaitingApproval
                {
                    slot.record = *task;
                    self.dirty.insert(lane(&slot.record));
                }
            }
        }
    }

    fn enqueue(&mut self, mut task: TaskRecord) {
        let lane_key = lane(&task);
        if task.state.is_terminal() || self.slots.contains_key(&key(&task)) {
            return;
        }
        // Dispatched or acknowledged when the process running it stopped:
        // dispatched again with the same command id (idempotent).
        if matches!(task.state, TaskState::Dispatched | TaskState::Acknowledged) {
            task.state = TaskState::Planned;
        }
        if self.watermarks.get(&lane_key).is_some_and(|mark| *mark > order(&task)) {
            self.supersede(
                task,
                "stale: a later-effective event for this person was already dispatched to this target",
            );
            return;
        }
        if task.urgent {
            let others: Vec<TaskKey> =
                self.lanes.get(&lane_key).map(|lane| lane.iter().map(|(_, k)| k.clone()).collect()).unwrap_or_default();
            for other in others {
                if self.slots.get(&other).is_some_and(|s| s.status != SlotStatus::InFlight) {
                    self.remove_and_supersede(&other, "superseded by an urgent leaver");
                }
            }
        }
        self.lanes.entry(lane_key.clone()).or_default().insert((order(&task), key(&task)));
        self.slots.insert(key(&task), Slot { record: task, status: SlotStatus::Waiting });
        self.dirty.insert(lane_key);
    }

    fn remove_and_supersede(&mut self, task_key: &TaskKey, reason: &str) {
        if let Some(slot) = self.slots.remove(task_key) {
            if let Some(lane) = self.lanes.get_mut(&lane(&slot.record)) {
                lane.remove(&(order(&slot.record), task_key.clone()));
            }
            self.supersede(slot.record, reason);
        }
    }

    /// Persists a task as superseded, in the background.
    fn supersede(&mut self, mut task: TaskRecord, reason: &str) {
        let inner = self.inner.clone();
        let now = now_ms();
        if self.held.is_some() {
            self.finished_recently.insert(key(&task), now);
        }
        task.state = TaskState::Superseded;
        self.inner.dispatch_spans.forget(&task.event_id, &task.target_id);
        task.finished_at = Some(now);
        task.next_attempt_at = None;
        task.last_error = reason.to_owned();
        let audit = AuditEntry {
            at: now,
            principal: "coordinator".into(),
            event_id: task.event_id.clone(),
            action: "task.superseded".into(),
            payload: json!({ "target_id": task.target_id, "reason": reason }),
        };
        tokio::spawn(async move {
            let event_id = task.event_id.clone();
            match inner.save_task(task, vec![audit]).await {
                Ok(Some(state)) => {
                    let _ = inner.finished.send((event_id.clone(), state));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, %event_id, "cannot record a superseded task; it is retried on restart");
                }
            }
            let _ = inner.updates.send(event_id);
        });
    }

    /// A task came back from a worker.
    fn settle(&mut self, task: TaskRecord) {
        let task_key = key(&task);
        let lane_key = lane(&task);
        if !self.holds(&lane_key) {
            // The lane was lost while the task ran: the new holder has it.
            self.slots.remove(&task_key);
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                lane.remove(&(order(&task), task_key));
                if lane.is_empty() {
                    self.lanes.remove(&lane_key);
                }
            }
            return;
        }
        if task.state.is_terminal() {
            if self.held.is_some() {
                self.finished_recently.insert(task_key.clone(), now_ms());
            }
            self.slots.remove(&task_key);
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                lane.remove(&(order(&task), task_key));
                if lane.is_empty() {
                    self.lanes.remove(&lane_key);
                }
            }
        } else if let Some(slot) = self.slots.get_mut(&task_key) {
            slot.record = task;
            slot.status = SlotStatus::Waiting;
        }
        self.dirty.insert(lane_key);
    }

    fn evaluate(&mut self, lane_key: &LaneKey, now: i64) {
        let Some(lane) = self.lanes.get(lane_key) else { return };
        if lane.is_empty() {
            self.lanes.remove(lane_key);
            return;
        }
        let entries: Vec<(Order, TaskKey)> = lane.iter().cloned().collect();
        if entries.iter().any(|(_, k)| self.slots.get(k).is_some_and(|s| s.status == SlotStatus::InFlight)) {
            return;
        }
        let due: Vec<&(Order, TaskKey)> = entries.iter().filter(|((effective, _), _)| *effective <= now).collect();
        let Some(((_, _), latest)) = due.last().map(|e| (*e).clone()) else {
            if let Some(((effective, _), _)) = entries.first() {
                self.timers.push(Reverse((*effective, lane_key.clone())));
            }
            return;
        };
        for (_, earlier) in due.iter().take(due.len() - 1) {
            self.remove_and_supersede(earlier, "superseded by a later-effective event for the same person and target");
        }
        let Some(slot) = self.slots.get_mut(&latest) else { return };
        if slot.record.state == TaskState::AwaitingApproval || slot.status != SlotStatus::Waiting {
            return;
        }
        if let Some(at) = slot.record.next_attempt_at
            && at > now
        {
            self.timers.push(Reverse((at, lane_key.clone())));
            return;
        }
        slot.status = SlotStatus::Queued;
        self.ready.entry(slot.record.target_id.clone()).or_default().push(ReadyItem {
            urgent: slot.record.urgent,
            order: Reverse(order(&slot.record)),
            key: latest,
        });
    }

    fn dispatch(&mut self, now: i64) {
        let targets: Vec<String> = self.ready.keys().cloned().collect();
        for target in targets {
            let Some(runtime) = self.inner.targets.get(&target).cloned() else {
                // A task for a target no longer in the policy: it cannot run.
                let stranded: Vec<TaskKey> =
                    self.ready.remove(&target).map(|h| h.into_iter().map(|i| i.key).collect()).unwrap_or_default();
                for task_key in stranded {
                    if let Some(slot) = self.slots.get_mut(&task_key) {
                        slot.status = SlotStatus::InFlight;
                        let mut task = slot.record.clone();
                        task.state = TaskState::Failed;
                        task.last_error = format!("target {target:?} is not in the policy in force");
                        task.finished_at = Some(now);
                        self.in_flight.entry(target.clone()).and_modify(|c| *c += 1).or_insert(1);
                        tokio::spawn(persist_and_report(self.inner.clone(), task, "task.failed"));
                    }
                }
                continue;
            };
            if self.breakers.get(&target).is_some_and(|b| b.open_until > now) {
                continue;
            }
            loop {
                let running = self.in_flight.get(&target).copied().unwrap_or(0);
                if running >= runtime.concurrency {
                    break;
                }
                // Urgent items sort first: once the first is ordinary, none
                // behind it is urgent, and ordinary work leaves the headroom.
                let Some(first) = self.ready.get(&target).and_then(BinaryHeap::peek) else { break };
                if !first.urgent && running + runtime.urgent_headroom >= runtime.concurrency {
                    break;
                }
                let Some(item) = self.ready.get_mut(&target).and_then(BinaryHeap::pop) else { break };
                let Some(slot) = self.slots.get_mut(&item.key) else { continue };
                if slot.status != SlotStatus::Queued {
                    continue;
                }
                slot.status = SlotStatus::InFlight;
                let lane_key = lane(&slot.record);
                let mark = order(&slot.record);
                let entry = self.watermarks.entry(lane_key).or_insert(mark);
                if mark > *entry {
                    *entry = mark;
                }
                self.in_flight.insert(target.clone(), running + 1);
                tokio::spawn(run_task(self.inner.clone(), runtime.clone(), slot.record.clone()));
            }
        }
        self.ready.retain(|_, heap| !heap.is_empty());
    }

    fn sweep_deadlines(&mut self, now: i64) {
        for slot in self.slots.values_mut() {
            // An in-flight task is settled by its worker, whose copy would
            // overwrite this flag; the worker records a breach it finishes past.
            if slot.status == SlotStatus::InFlight {
                continue;
            }
            let task = &mut slot.record;
            if task.deadline_breached || task.deadline_at >= now {
                continue;
            }
            task.deadline_breached = true;
            CoordinatorMetrics::get().deadline_breached(task);
            let inner = self.inner.clone();
            let (event_id, target_id) = (task.event_id.clone(), task.target_id.clone());
            let mut payload = json!({
                "target_id": target_id,
                "state": task.state.as_str(),
                "deadline_at": format_time(Some(task.deadline_at)),
            });
            if task.state == TaskState::AwaitingFulfilment {
                // Nobody fulfilled the ticket in time: escalated to the
                // owners answering for the access (manual.rs).
                CoordinatorMetrics::get().fulfilment_escalated(task);
                payload["escalated_to"] = json!(manual::escalation_owners(&inner.policy, task));
                payload["last_error"] = json!(task.last_error);
                tracing::warn!(%event_id, %target_id, "manual fulfilment overdue: escalated");
            }
            let audit = AuditEntry {
                at: now,
                principal: "coordinator".into(),
                event_id: event_id.clone(),
                action: "task.deadline_breached".into(),
                payload,
            };
            tracing::warn!(%event_id, %target_id, "propagation deadline breached");
            tokio::spawn(async move {
                if let Err(error) = inner.store.mark_breached(event_id.clone(), target_id, audit).await {
                    tracing::error!(%error, "cannot record a deadline breach");
                }
                let _ = inner.updates.send(event_id);
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Lane leases (replicas)

/// How often a replica's lease loop runs: claims, renewals, store polls.
const LEASE_TICK: Duration = Duration::from_millis(200);

/// How often a replica reads the stored states of its lanes' tasks (tasks
/// another replica accepted into them, approvals decided elsewhere).
const HELD_POLL_MS: i64 = 1000;

/// A replica's lease loop: renews its leases (and drops the lanes it lost),
/// claims the lanes of tasks it accepted and, while its backlog is short,
/// free or expired lanes (a dead replica's), and loads what the store holds
/// for its lanes that it does not know. Ends with the scheduler.
async fn run_leases(inner: Arc<Inner>, leases: LaneLeases) {
    let renew_every = i64::try_from((leases.lease() / 5).as_millis()).unwrap_or(2000).max(100);
    // Enough queued work to keep every target's workers busy a few rounds.
    let backlog_limit: usize = inner.targets.values().map(|t| t.concurrency).sum::<usize>().max(1) * 16;
    let (mut last_renew, mut last_poll) = (0i64, 0i64);
    let mut ticker = tokio::time::interval(LEASE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        let renew = now - last_renew >= renew_every;
        let (reply, view) = oneshot::channel();
        if inner.scheduler.send(SchedulerMessage::Poll { renew, reply }).is_err() {
            return;
        }
        let Ok(view) = view.await else { return };
        if renew {
            match leases.renew(&view.working_lanes, now).await {
                Ok(kept) => {
                    last_renew = now;
                    let kept: HashSet<LaneKey> = kept.into_iter().collect();
                    let lost: Vec<LaneKey> =
                        view.working_lanes.into_iter().filter(|lane_key| !kept.contains(lane_key)).collect();
                    if !lost.is_empty() {
                        tracing::warn!(lanes = lost.len(), "lane leases lost");
                        let _ = inner.scheduler.send(SchedulerMessage::Lost { lanes: lost, as_of: now });
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot renew lane leases"),
            }
        }
        let mut claimed = match leases.claim_lanes(&view.pending_claims, now).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim the lanes of accepted events");
                Vec::new()
            }
        };
        let room = backlog_limit.saturating_sub(view.backlog + claimed.len());
        if room > 0 {
            match leases.claim_free(now, u32::try_from(room).unwrap_or(u32::MAX)).await {
                Ok(free) => claimed.extend(free),
                Err(error) => tracing::warn!(%error, "cannot claim free lanes"),
            }
        }
        // Lanes asked for and not obtained are held by another replica,
        // which learns of their tasks from the store.
        let mut settled: Vec<LaneKey> = claimed.clone();
        settled.extend(view.pending_claims.iter().filter(|lane_key| !claimed.contains(lane_key)).cloned());
        let state = match leases.lane_state(&claimed).await {
            Ok(state) => state,
            Err(error) => {
                // Claimed but not loaded: forget them; they are claimed again
                // (as this replica's) once the store answers.
                tracing::warn!(%error, "cannot load claimed lanes");
                claimed.clear();
                LaneState::default()
            }
        };
        if !settled.is_empty() || !claimed.is_empty() {
            let mut lanes = claimed;
            // Lanes not obtained only leave the pending list.
            let not_obtained: Vec<LaneKey> = settled.into_iter().filter(|l| !lanes.contains(l)).collect();
            let _ = inner.scheduler.send(SchedulerMessage::Unclaimed(not_obtained));
            lanes.dedup();
            let _ = inner.scheduler.send(SchedulerMessage::Claimed { lanes, state, at: now_ms() });
        }
        if now - last_poll >= HELD_POLL_MS {
            last_poll = now;
            let stored = match leases.held_task_states(now).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the held lanes' tasks");
                    continue;
                }
            };
            let (reply, wanted) = oneshot::channel();
            if inner.scheduler.send(SchedulerMessage::Unknown { stored, reply }).is_err() {
                return;
            }
            let Ok(wanted) = wanted.await else { return };
            if wanted.is_empty() {
                continue;
            }
            match leases.tasks(&wanted).await {
                Ok(tasks) => {
                    let _ = inner.scheduler.send(SchedulerMessage::Loaded(tasks));
                }
                Err(error) => tracing::warn!(%error, "cannot load the held lanes' tasks"),
            }
        }
    }
}

async fn persist_and_report(inner: Arc<Inner>, task: TaskRecord, action: &'static str) {
    let audit = AuditEntry {
        at: now_ms(),
        principal: "coordinator".into(),
        event_id: task.event_id.clone(),
        action: action.into(),
        payload: json!({ "target_id": task.target_id, "error": task.last_error }),
    };
    match inner.save_task(task.clone(), vec![audit]).await {
        Ok(Some(state)) => {
            let _ = inner.finished.send((task.event_id.clone(), state));
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "cannot record a task"),
    }
    let _ = inner.updates.send(task.event_id.clone());
    let _ = inner.scheduler.send(SchedulerMessage::Finished(Box::new(task), Outcome::Done));
}

// ---------------------------------------------------------------------------
// Worker

fn backoff(config: &EngineConfig, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = config.base_backoff.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let ceiling = exponential.min(config.max_backoff);
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0..=u64::try_from(half.as_micros()).unwrap_or(u64::MAX));
    let computed = half + Duration::from_micros(jitter);
    retry_after.map_or(computed, |after| after.max(computed))
}

struct TaskRun {
    inner: Arc<Inner>,
    task: TaskRecord,
    /// The kind of the last failed attempt's error (metrics, span events).
    error_kind: &'static str,
    /// Replica: a write was refused because the lane's lease was lost.
    lease_lost: bool,
}

impl TaskRun {
    /// The target's client, admitting this task's calls ahead of ordinary
    /// ones when it is an urgent leaver's.
    fn client(&self, runtime: &TargetRuntime) -> ConnectorClient {
        if self.task.urgent { runtime.client.urgent() } else { runtime.client.clone() }
    }

    async fn save(&mut self, action: &str, payload: serde_json::Value) -> Result<(), StoreError> {
        let audit = AuditEntry {
            at: now_ms(),
            principal: "coordinator".into(),
            event_id: self.task.event_id.clone(),
            action: action.into(),
            payload,
        };
        let result = self.inner.save_task(self.task.clone(), vec![audit]).await;
        self.lease_lost |= matches!(result, Err(StoreError::LeaseLost(_)));
        let _ = self.inner.updates.send(self.task.event_id.clone());
        if let Ok(Some(state)) = &result {
            let _ = self.inner.finished.send((self.task.event_id.clone(), *state));
        }
        result.map(|_| ())
    }

    /// A failed attempt: retry later, or fail for good.
    async fn failed_attempt(&mut self, error: String, retryable: bool, retry_after: Option<Duration>) {
        let now = now_ms();
        self.task.last_error = error;
        let target_id = self.task.target_id.clone();
        if retryable && self.task.attempts < self.inner.config.max_attempts {
            let delay = backoff(&self.inner.config, self.task.attempts, retry_after);
            self.task.state = TaskState::Planned;
            self.task.next_attempt_at = Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2));
            let payload = json!({
                "target_id": target_id,
                "attempt": self.task.attempts,
                "error": self.task.last_error,
                "differences": self.task.differences,
                "next_attempt_at": format_time(self.task.next_attempt_at),
            });
            if let Err(error) = self.save("task.retry_scheduled", payload).await {
                tracing::error!(%error, "cannot record a retry");
            }
        } else {
            self.task.state = TaskState::Failed;
            self.task.finished_at = Some(now);
            self.task.next_attempt_at = None;
            self.task.deadline_breached |= now > self.task.deadline_at;
            let payload = json!({
                "target_id": target_id,
                "attempts": self.task.attempts,
                "error": self.task.last_error,
                "differences": self.task.differences,
                "read_back": self.task.read_back.as_ref().map(read_back_json),
            });
            if let Err(error) = self.save("task.failed", payload).await {
                tracing::error!(%error, "cannot record a failed task");
            }
            tracing::warn!(event_id = %self.task.event_id, target = %target_id, error = %self.task.last_error, "task failed");
        }
    }

    async fn connector_error(&mut self, stage: &str, error: ConnectorError) -> Outcome {
        let retryable = ConnectorClient::is_retryable(&error);
        let unreachable = matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout);
        self.error_kind = error.kind.as_str();
        self.failed_attempt(format!("{stage}: {error}"), retryable, error.retry_after).await;
        if unreachable { Outcome::Unreachable } else { Outcome::Done }
    }

    async fn attempt(&mut self, runtime: &TargetRuntime) -> Outcome {
        let Some(lease_epoch) = self.inner.lease_epoch(&self.task) else {
            self.lease_lost = true;
            return Outcome::Done;
        };
        if self.task.state == TaskState::AwaitingFulfilment {
            return self.check_fulfilment(runtime).await;
        }
        let now = now_ms();
        self.task.state = TaskState::Dispatched;
        self.task.attempts += 1;
        self.task.dispatched_at = Some(now);
        self.task.next_attempt_at = None;
        let mut payload = json!({
            "target_id": self.task.target_id,
            "attempt": self.task.attempts,
            "command_id": self.task.command_id,
        });
        if let Some(leases) = &self.inner.leases {
            // Which replica ran the attempt (several share the chain).
            payload["replica"] = json!(leases.replica());
            payload["lease_epoch"] = json!(lease_epoch);
        }
        if let Err(error) = self.save("task.dispatched", payload).await {
            // Not dispatched: try again later without spending an attempt.
            tracing::error!(%error, "cannot record a dispatch");
            self.error_kind = "store";
            self.task.attempts -= 1;
            self.task.state = TaskState::Planned;
            self.task.next_attempt_at = Some(now + 1000);
            return Outcome::Done;
        }
        let target = self.task.target_id.clone();
        let description = match crate::tracing_context::connector_call(&target, "describe", runtime.describe()).await {
            Ok(description) => description,
            Err(error) => return self.connector_error("describe", error).await,
        };
        let desired = self.task.desired();
        if self.inner.leases.is_some() && !description.capabilities.as_ref().is_some_and(|c| c.lease_epoch_fencing) {
            let error = "the connector does not fence stale lease epochs: coordinator replicas cannot drive it safely";
            return self.connector_error("apply", ConnectorError::unsupported(error).with_retryable(false)).await;
        }
        let client = self.client(runtime);
        let apply = client.apply_fenced(&self.task.command_id, desired.clone(), lease_epoch);
        let acknowledgement = match crate::tracing_context::connector_call(&target, "apply", apply).await {
            Ok(ack) => ack,
            // A newer holder of the lane reached the connector: this replica lost the lease.
            Err(error) if error.kind == ErrorKind::StaleLease => {
                self.lease_lost = true;
                return Outcome::Done;
            }
            // A joiner meeting an existing account without a key (#17).
            Err(error) if error.kind == ErrorKind::Conflict => {
                let store = self.inner.store.as_ref();
                match crate::adoption::joiner_conflict(&self.inner.policy, store, &runtime.client, &self.task).await {
                    crate::adoption::JoinerConflict::Link(link) => {
                        let request = pb::ApplyRequest {
                            command_id: self.task.command_id.clone(),
                            desired: Some(desired.clone()),
                            link: Some(link),
                            lease_epoch,
                        };
                        let client = self.client(runtime);
                        let apply = client.apply_request(request);
                        match crate::tracing_context::connector_call(&target, "apply", apply).await {
                            Ok(ack) => ack,
                            Err(error) => return self.connector_error("link", error).await,
                        }
                    }
                    crate::adoption::JoinerConflict::Refuse(message) => {
                        self.error_kind = error.kind.as_str();
                        self.failed_attempt(message, false, None).await;
                        return Outcome::Done;
                    }
                    crate::adoption::JoinerConflict::NotAdoption => return self.connector_error("apply", error).await,
                }
            }
            Err(error) => return self.connector_error("apply", error).await,
        };
        self.task.state = TaskState::Acknowledged;
        self.task.acknowledged_at = Some(now_ms());
        let payload =
            json!({ "target_id": self.task.target_id, "acknowledgement": acknowledgement_json(&acknowledgement) });
        let awaiting_fulfilment = acknowledgement.awaiting_fulfilment;
        self.task.acknowledgement = Some(acknowledgement);
        if let Err(error) = self.save("task.acknowledged", payload).await {
            tracing::error!(%error, "cannot record an acknowledgement");
        }
        if awaiting_fulfilment {
            return self.await_fulfilment(runtime).await;
        }
        let account = desired.account.clone().unwrap_or_default();
        let client = self.client(runtime);
        let read = client.read(account);
        let read_back = match crate::tracing_context::connector_call(&target, "read", read).await {
            Ok(state) => state,
            Err(error) => return self.connector_error("read", error).await,
        };
        let differences = connector_kit::readback::compare(description, &desired, &read_back);
        self.task.differences = differences.iter().map(ToString::to_string).collect();
        self.task.read_back = Some(read_back);
        if differences.is_empty() {
            let now = now_ms();
            let read_back = self.task.read_back.clone().unwrap_or_default();
            self.task.residual_risks = connector_kit::credentials::residual_risks(description, &desired, &read_back);
            self.task.state = crate::credentials::proven_state(&self.task.residual_risks);
            self.task.finished_at = Some(now);
            self.task.last_error.clear();
            self.task.deadline_breached |= now > self.task.deadline_at;
            let payload = json!({
                "target_id": self.task.target_id,
                "attempts": self.task.attempts,
                "read_back": self.task.read_back.as_ref().map(read_back_json),
                "deadline_breached": self.task.deadline_breached,
                "residual_risks": self.task.residual_risks.iter().map(crate::credentials::risk_json).collect::<Vec<_>>(),
                "timings": {
                    "planned_at": format_time(Some(self.task.planned_at)),
                    "dispatched_at": format_time(self.task.dispatched_at),
                    "acknowledged_at": format_time(self.task.acknowledged_at),
                    "verified_at": format_time(Some(now)),
                },
            });
            if let Err(error) = self.save(crate::credentials::proven_action(self.task.state), payload).await {
                tracing::error!(%error, "cannot record a verification");
            }
            Outcome::Done
        } else {
            let message = format!("read-back differs from the desired state: {}", self.task.differences.join("; "));
            self.error_kind = "read_back_mismatch";
            self.failed_attempt(message, true, None).await;
            Outcome::Done
        }
    }
}

async fn run_task(inner: Arc<Inner>, runtime: Arc<TargetRuntime>, mut task: TaskRecord) {
    // A calendar stage runs only while nothing cancelled it (a rehire, a
    // hire cancelled before its start).
    match crate::calendar::stage_cancelled_by(inner.store.as_ref(), &task).await {
        Ok(None) => {}
        Ok(Some(reason)) => {
            task.state = TaskState::Superseded;
            task.finished_at = Some(now_ms());
            task.next_attempt_at = None;
            task.last_error = reason;
            inner.dispatch_spans.forget(&task.event_id, &task.target_id);
            return persist_and_report(inner, task, "task.superseded").await;
        }
        Err(error) => {
            // Not proven still due: not run now, asked again shortly.
            tracing::warn!(%error, event_id = %task.event_id, "cannot check a deletion against rehires; retried");
            task.next_attempt_at = Some(now_ms() + 1000);
            let _ = inner.scheduler.send(SchedulerMessage::Finished(Box::new(task), Outcome::Done));
            return;
        }
    }
    let span = inner.dispatch_spans.dispatch_span(inner.store.as_ref(), &task).await;
    let breached_before = task.deadline_breached;
    let mut run = TaskRun { inner: inner.clone(), task, error_kind: "", lease_lost: false };
    let mut outcome = run.attempt(&runtime).instrument(span).await;
    if run.lease_lost {
        outcome = Outcome::LeaseLost;
    }
    crate::tracing_context::task_settled(&inner.dispatch_spans, &run.task, breached_before, run.error_kind);
    let _ = inner.scheduler.send(SchedulerMessage::Finished(Box::new(run.task), outcome));
}
