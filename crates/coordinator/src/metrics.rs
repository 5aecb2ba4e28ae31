//! The coordinator's Prometheus metrics, registered in the kit's process-wide
//! registry and served by `connector_kit::metrics::serve` (`--metrics-listen`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `jml_propagation_seconds` | histogram: the later of receipt and effective time, to verified | target, workflow |
//! | `jml_revocation_seconds` | histogram: the same, for tasks revoking access (leavers, deletions) | target, workflow |
//! | `jml_time_to_revoke_seconds` | histogram, one per leaver from the source: the later of receipt and effective time, to the last target settled | proven (`true` when every target was verified) |
//! | `jml_source_to_verified_seconds` | histogram, one per verified event whose source sent `source_changed_at`: from that time to the last target verified | kind |
//! | `jml_tasks_verified_total` | counter | target, workflow |
//! | `jml_tasks_verified_with_residual_risk_total` | counter: proven, with residual risks listed (never retried) | target, workflow |
//! | `jml_residual_risks_total` | counter: residual risks those tasks listed | target, credential_kind, bound |
//! | `jml_deadline_breaches_total` | counter | target, workflow |
//! | `jml_task_retries_total` | counter | target, error_kind |
//! | `jml_task_failures_total` | counter | target, error_kind |
//! | `jml_queue_depth` | gauge: unfinished tasks held by the scheduler | target, state |
//! | `jml_tasks_awaiting_approval` | gauge | target |
//! | `jml_tasks_overdue` | gauge: unfinished tasks past their deadline | target |
//! | `jml_fulfilment_overdue` | gauge: manual tasks awaiting fulfilment past their deadline | target |
//! | `jml_fulfilment_escalations_total` | counter: manual tasks escalated to their workflow owners when their deadline passed unfulfilled | target, workflow |
//! | `jml_coordinator_connector_calls_total` | counter | target, operation, outcome |
//! | `jml_coordinator_connector_call_duration_seconds` | histogram (client side) | target, operation |
//! | `jml_drift_accounts`, `jml_accounts`, `jml_stale_accounts`, `jml_last_clean_reconciliation_timestamp_seconds` | gauges set by each reconciliation run (registered by [`crate::reconcile`]) | target (+ class, reason) |
//!
//! `workflow` is the comma-joined names of the workflows granting on the
//! target (empty for a leaver's revocation, which no workflow grants).
//! Gauges are refreshed by the scheduler about once a second.
//!
//! The lifecycle histograms have buckets from 50 ms to one day
//! ([`lifecycle_buckets`]): a hire dated ahead counts from its effective
//! time, not from its receipt. Each observation carries the event's trace
//! id as an OpenMetrics exemplar (`# {trace_id="..."} value`), so a slow
//! bucket leads to its trace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use connector_kit::metrics::{latency_buckets, register};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use prometheus_client::metrics::exemplar::HistogramWithExemplars;

use crate::store::{EventRecord, EventState, Store, TaskRecord, TaskState};

/// Buckets of the lifecycle latencies, in seconds: 50 ms to one day.
pub const LIFECYCLE_BUCKETS: [f64; 22] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    14_400.0, 28_800.0, 43_200.0, 64_800.0, 86_400.0,
];

/// [`LIFECYCLE_BUCKETS`] as an iterator.
pub fn lifecycle_buckets() -> impl Iterator<Item = f64> {
    LIFECYCLE_BUCKETS.into_iter()
}

/// The exemplar of a lifecycle observation: the event's trace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// The OpenTelemetry trace id (32 hex digits).
    pub trace_id: String,
}

fn exemplar(trace_id: Option<&str>) -> Option<TraceExemplar> {
    trace_id.filter(|id| !id.is_empty()).map(|id| TraceExemplar { trace_id: id.to_owned() })
}

type LatencyFamily<L> = Family<L, HistogramWithExemplars<TraceExemplar>>;

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(|| HistogramWithExemplars::new(lifecycle_buckets()))
}

/// Whether every target of a leaver was proven.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevokeLabels {
    /// `true` when every target's task was verified, else `false`.
    pub proven: String,
}

/// An event kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `joiner`, `mover`, `leaver`, ...
    pub kind: String,
}

/// A target and the workflows granting on it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    /// The target id.
    pub target: String,
    /// The workflows' names, comma-joined.
    pub workflow: String,
}

/// A residual risk of one task: what may outlive a revocation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResidualLabels {
    /// The target id.
    pub target: String,
    /// The credential kind declared by the connector.
    pub credential_kind: String,
    /// `duration`, `until_closed` or `unknown`.
    pub bound: String,
}

/// A target and an error kind (`unavailable`, `read_back_mismatch`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The target id.
    pub target: String,
    /// The connector error kind, `read_back_mismatch` or `store`.
    pub error_kind: String,
}

/// A target and a task state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The target id.
    pub target: String,
    /// The task state (`planned`, `awaiting_approval`, ...).
    pub state: String,
}

/// A target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The target id.
    pub target: String,
}

/// A connector call seen from the coordinator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The target id.
    pub target: String,
    /// `describe`, `apply` or `read`.
    pub operation: String,
}

/// A connector call and its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallOutcomeLabels {
    /// The target id.
    pub target: String,
    /// `describe`, `apply` or `read`.
    pub operation: String,
    /// `ok` or the error kind.
    pub outcome: String,
}

/// What the coordinator exports.
pub struct CoordinatorMetrics {
    propagation: LatencyFamily<WorkflowLabels>,
    revocation: LatencyFamily<WorkflowLabels>,
    time_to_revoke: LatencyFamily<RevokeLabels>,
    source_to_verified: LatencyFamily<KindLabels>,
    /// Source change times of events accepted here (Unix ms), until they finish.
    source_changes: Mutex<HashMap<String, i64>>,
    verified: Family<WorkflowLabels, Counter>,
    residual_tasks: Family<WorkflowLabels, Counter>,
    residual_risks: Family<ResidualLabels, Counter>,
    breaches: Family<WorkflowLabels, Counter>,
    retries: Family<ErrorLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    awaiting_approval: Family<TargetLabels, Gauge>,
    overdue: Family<TargetLabels, Gauge>,
    fulfilment_overdue: Family<TargetLabels, Gauge>,
    fulfilment_escalations: Family<WorkflowLabels, Counter>,
    calls: Family<CallOutcomeLabels, Counter>,
    call_duration: Family<CallLabels, Histogram>,
    /// Gauge label sets set on the last refresh, zeroed when they disappear.
    gauges_seen: Mutex<(HashSet<QueueLabels>, HashSet<TargetLabels>)>,
}

impl std::fmt::Debug for CoordinatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorMetrics").finish_non_exhaustive()
    }
}

fn workflow_labels(task: &TaskRecord) -> WorkflowLabels {
    WorkflowLabels { target: task.target_id.clone(), workflow: task.planned.workflows.join(",") }
}

/// Seconds between two Unix-millisecond instants (0 when reversed).
fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    Duration::from_millis(u64::try_from(to_ms.saturating_sub(from_ms)).unwrap_or(0)).as_secs_f64()
}

impl CoordinatorMetrics {
    /// The process-wide coordinator metrics, registered on first use.
    pub fn get() -> &'static Self {
        static METRICS: OnceLock<CoordinatorMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let metrics = Self {
                propagation: latency_family(),
                revocation: latency_family(),
                time_to_revoke: latency_family(),
                source_to_verified: latency_family(),
                source_changes: Mutex::new(HashMap::new()),
                verified: Family::default(),
                residual_tasks: Family::default(),
                residual_risks: Family::default(),
                breaches: Family::default(),
                retries: Family::default(),
                failures: Family::default(),
                queue_depth: Family::default(),
                awaiting_approval: Family::default(),
                overdue: Family::default(),
                fulfilment_overdue: Family::default(),
                fulfilment_escalations: Family::default(),
                calls: Family::default(),
                call_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
                gauges_seen: Mutex::new((HashSet::new(), HashSet::new())),
            };
            register(
                "jml_propagation_seconds",
                "Time from the later of receipt and effective time to verified read-back, by target and workflow",
                &metrics.propagation,
            );
            register(
                "jml_revocation_seconds",
                "Time from the later of receipt and effective time to verified revocation (leavers), by target and workflow",
                &metrics.revocation,
            );
            register(
                "jml_time_to_revoke_seconds",
                "Per leaver: time from the later of receipt and effective time to the last target settled",
                &metrics.time_to_revoke,
            );
            register(
                "jml_source_to_verified_seconds",
                "Per event whose source sent its change time: time from that change to the last target verified",
                &metrics.source_to_verified,
            );
            register("jml_tasks_verified", "Tasks verified by read-back", &metrics.verified);
            register(
                "jml_tasks_verified_with_residual_risk",
                "Tasks proven by read-back with residual risks listed (never retried)",
                &metrics.residual_tasks,
            );
            register(
                "jml_residual_risks",
                "Residual risks listed by tasks, by credential kind and bound",
                &metrics.residual_risks,
            );
            register("jml_deadline_breaches", "Tasks that passed their propagation deadline", &metrics.breaches);
            register("jml_task_retries", "Task attempts retried, by error kind", &metrics.retries);
            register("jml_task_failures", "Tasks failed for good, by error kind", &metrics.failures);
            register("jml_queue_depth", "Unfinished tasks held by the scheduler, by state", &metrics.queue_depth);
            register("jml_tasks_awaiting_approval", "Tasks awaiting approval", &metrics.awaiting_approval);
            register("jml_tasks_overdue", "Unfinished tasks past their deadline", &metrics.overdue);
            register(
                "jml_fulfilment_overdue",
                "Manual tasks awaiting fulfilment past their deadline",
                &metrics.fulfilment_overdue,
            );
            register(
                "jml_fulfilment_escalations",
                "Manual tasks escalated to their workflow owners when their deadline passed unfulfilled",
                &metrics.fulfilment_escalations,
            );
            register(
                "jml_coordinator_connector_calls",
                "Connector calls made by the coordinator, by operation and outcome",
                &metrics.calls,
            );
            register(
                "jml_coordinator_connector_call_duration_seconds",
                "Connector call latency seen by the coordinator, by operation",
                &metrics.call_duration,
            );
            metrics
        })
    }

    /// A task was verified at `now_ms`; `trace_id` is its event's trace.
    /// Counted from the later of receipt (when it was planned) and its
    /// effective time.
    pub fn verified(&self, task: &TaskRecord, now_ms: i64, trace_id: Option<&str>) {
        let labels = workflow_labels(task);
        let seconds = seconds_between(task.planned_at.max(task.effective_at), now_ms);
        self.propagation.get_or_create(&labels).observe(seconds, exemplar(trace_id), None);
        if !task.grants_access {
            self.revocation.get_or_create(&labels).observe(seconds, exemplar(trace_id), None);
        }
        self.verified.get_or_create(&labels).inc();
    }

    /// A task was proven at `now_ms` with `risks` remaining.
    pub fn verified_with_residual_risk(
        &self,
        task: &TaskRecord,
        risks: &[connector_kit::contract::ResidualRisk],
        now_ms: i64,
        trace_id: Option<&str>,
    ) {
        let labels = workflow_labels(task);
        let seconds = seconds_between(task.planned_at.max(task.effective_at), now_ms);
        self.propagation.get_or_create(&labels).observe(seconds, exemplar(trace_id), None);
        if !task.grants_access {
            self.revocation.get_or_create(&labels).observe(seconds, exemplar(trace_id), None);
        }
        self.residual_tasks.get_or_create(&labels).inc();
        for risk in risks {
            self.residual_risks
                .get_or_create(&ResidualLabels {
                    target: task.target_id.clone(),
                    credential_kind: risk.credential_kind.clone(),
                    bound: connector_kit::credentials::bound_name(risk).to_owned(),
                })
                .inc();
        }
    }

    /// Remembers the source's change time of an event accepted here, for
    /// [`CoordinatorMetrics::event_finished`].
    pub fn source_changed(&self, event_id: &str, at_ms: i64) {
        if let Ok(mut changes) = self.source_changes.lock() {
            if changes.len() >= 100_000 {
                changes.clear();
            }
            changes.insert(event_id.to_owned(), at_ms);
        }
    }

    /// An event finished (`state`), with its tasks: the time to revoke of a
    /// leaver from the source, and the source-to-verified time where the
    /// source sent its change time.
    pub fn event_finished(&self, event: &EventRecord, state: EventState, tasks: &[TaskRecord]) {
        let source_changed = self.source_changes.lock().ok().and_then(|mut changes| changes.remove(&event.event_id));
        let settled: Vec<&TaskRecord> = tasks.iter().filter(|t| t.state != TaskState::Superseded).collect();
        let Some(last) = settled.iter().filter_map(|t| t.finished_at).max() else { return };
        let trace_id = crate::tracing_context::trace_id_of(&event.trace_id);
        if event.kind == crate::policy::EventKindName::Leaver && !crate::calendar::internal_source(&event.source_system)
        {
            let proven = settled.iter().all(|t| t.state == TaskState::Verified);
            let seconds = seconds_between(event.received_at.max(event.effective_at), last);
            let labels = RevokeLabels { proven: proven.to_string() };
            self.time_to_revoke.get_or_create(&labels).observe(seconds, exemplar(Some(trace_id)), None);
        }
        if let Some(changed_at) = source_changed
            && state == EventState::Verified
        {
            let labels = KindLabels { kind: crate::event::kind_name(event.kind).to_owned() };
            let seconds = seconds_between(changed_at, last);
            self.source_to_verified.get_or_create(&labels).observe(seconds, exemplar(Some(trace_id)), None);
        }
    }

    /// A task passed its deadline.
    pub fn deadline_breached(&self, task: &TaskRecord) {
        self.breaches.get_or_create(&workflow_labels(task)).inc();
    }

    /// A manual task's deadline passed while it awaited fulfilment: escalated.
    pub fn fulfilment_escalated(&self, task: &TaskRecord) {
        self.fulfilment_escalations.get_or_create(&workflow_labels(task)).inc();
    }

    /// A failed attempt will be retried.
    pub fn retry(&self, target: &str, error_kind: &str) {
        self.retries.get_or_create(&ErrorLabels { target: target.to_owned(), error_kind: error_kind.to_owned() }).inc();
    }

    /// A task failed for good.
    pub fn failure(&self, target: &str, error_kind: &str) {
        self.failures
            .get_or_create(&ErrorLabels { target: target.to_owned(), error_kind: error_kind.to_owned() })
            .inc();
    }

    /// One connector call.
    pub fn connector_call(&self, target: &str, operation: &str, outcome: &str, elapsed: Duration) {
        let labels = CallLabels { target: target.to_owned(), operation: operation.to_owned() };
        self.call_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.calls
            .get_or_create(&CallOutcomeLabels {
                target: labels.target,
                operation: labels.operation,
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the queue gauges from the scheduler's unfinished tasks.
    pub fn refresh_queue<'a>(&self, tasks: impl Iterator<Item = &'a TaskRecord>, now_ms: i64) {
        let mut depth: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        let mut awaiting: BTreeMap<String, i64> = BTreeMap::new();
        let mut overdue: BTreeMap<String, i64> = BTreeMap::new();
        let mut fulfilment_overdue: BTreeMap<String, i64> = BTreeMap::new();
        for task in tasks {
            *depth.entry((task.target_id.clone(), task.state.as_str())).or_default() += 1;
            if task.state == crate::store::TaskState::AwaitingApproval {
                *awaiting.entry(task.target_id.clone()).or_default() += 1;
            }
            if task.deadline_breached || task.deadline_at < now_ms {
                *overdue.entry(task.target_id.clone()).or_default() += 1;
                if task.state == crate::store::TaskState::AwaitingFulfilment {
                    *fulfilment_overdue.entry(task.target_id.clone()).or_default() += 1;
                }
            }
        }
        let Ok(mut seen) = self.gauges_seen.lock() else { return };
        let (seen_queue, seen_targets) = &mut *seen;
        for labels in seen_queue.iter() {
            self.queue_depth.get_or_create(labels).set(0);
        }
        for labels in seen_targets.iter() {
            self.awaiting_approval.get_or_create(labels).set(0);
            self.overdue.get_or_create(labels).set(0);
            self.fulfilment_overdue.get_or_create(labels).set(0);
        }
        for ((target, state), count) in depth {
            let labels = QueueLabels { target, state: state.to_owned() };
            self.queue_depth.get_or_create(&labels).set(count);
            seen_queue.insert(labels);
        }
        for (target, count) in awaiting {
            let labels = TargetLabels { target };
            self.awaiting_approval.get_or_create(&labels).set(count);
            seen_targets.insert(labels);
        }
        for (target, count) in overdue {
            let labels = TargetLabels { target };
            self.overdue.get_or_create(&labels).set(count);
            seen_targets.insert(labels);
        }
        for (target, count) in fulfilment_overdue {
            let labels = TargetLabels { target };
            self.fulfilment_overdue.get_or_create(&labels).set(count);
            seen_targets.insert(labels);
        }
    }
}

/// Follows the events as they finish and records their per-event
/// latencies ([`CoordinatorMetrics::event_finished`]); one store read of the
/// event, and of its tasks for leavers and events with a source change time.
pub async fn observe_finished(
    store: std::sync::Arc<dyn Store>,
    mut finished: tokio::sync::broadcast::Receiver<(String, EventState)>,
) {
    let metrics = CoordinatorMetrics::get();
    loop {
        let (event_id, state) = match finished.recv().await {
            Ok(item) => item,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "per-event latencies not recorded for some finished events");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if !state.is_terminal() {
            continue;
        }
        let event = match store.event(&event_id).await {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, %event_id, "cannot read a finished event for its latencies");
                continue;
            }
        };
        let wanted = event.kind == crate::policy::EventKindName::Leaver
            || metrics.source_changes.lock().is_ok_and(|changes| changes.contains_key(&event_id));
        if !wanted {
            continue;
        }
        match store.tasks(&event_id).await {
            Ok(tasks) => metrics.event_finished(&event, state, &tasks),
            Err(error) => tracing::warn!(%error, %event_id, "cannot read a finished event's tasks for its latencies"),
        }
    }
}
