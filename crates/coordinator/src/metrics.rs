//! The coordinator's Prometheus metrics, registered in the kit's process-wide
//! registry and served by `connector_kit::metrics::serve` (`--metrics-listen`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `jml_propagation_seconds` | histogram: submit to verified | target, workflow |
//! | `jml_revocation_seconds` | histogram: submit to verified, for tasks revoking access (leavers) | target, workflow |
//! | `jml_tasks_verified_total` | counter | target, workflow |
//! | `jml_tasks_verified_with_residual_risk_total` | counter: proven, with residual risks listed (never retried) | target, workflow |
//! | `jml_residual_risks_total` | counter: residual risks those tasks listed | target, credential_kind, bound |
//! | `jml_deadline_breaches_total` | counter | target, workflow |
//! | `jml_task_retries_total` | counter | target, error_kind |
//! | `jml_task_failures_total` | counter | target, error_kind |
//! | `jml_queue_depth` | gauge: unfinished tasks held by the scheduler | target, state |
//! | `jml_tasks_awaiting_approval` | gauge | target |
//! | `jml_tasks_overdue` | gauge: unfinished tasks past their deadline | target |
//! | `jml_coordinator_connector_calls_total` | counter | target, operation, outcome |
//! | `jml_coordinator_connector_call_duration_seconds` | histogram (client side) | target, operation |
//! | `jml_drift_accounts`, `jml_accounts`, `jml_stale_accounts`, `jml_last_clean_reconciliation_timestamp_seconds` | gauges set by each reconciliation run (registered by [`crate::reconcile`]) | target (+ class, reason) |
//!
//! `workflow` is the comma-joined names of the workflows granting on the
//! target (empty for a leaver's revocation, which no workflow grants).
//! Gauges are refreshed by the scheduler about once a second.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use connector_kit::metrics::{latency_buckets, register};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::store::TaskRecord;

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
    propagation: Family<WorkflowLabels, Histogram>,
    revocation: Family<WorkflowLabels, Histogram>,
    verified: Family<WorkflowLabels, Counter>,
    residual_tasks: Family<WorkflowLabels, Counter>,
    residual_risks: Family<ResidualLabels, Counter>,
    breaches: Family<WorkflowLabels, Counter>,
    retries: Family<ErrorLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    awaiting_approval: Family<TargetLabels, Gauge>,
    overdue: Family<TargetLabels, Gauge>,
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
                propagation: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
                revocation: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
                verified: Family::default(),
                residual_tasks: Family::default(),
                residual_risks: Family::default(),
                breaches: Family::default(),
                retries: Family::default(),
                failures: Family::default(),
                queue_depth: Family::default(),
                awaiting_approval: Family::default(),
                overdue: Family::default(),
                calls: Family::default(),
                call_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
                gauges_seen: Mutex::new((HashSet::new(), HashSet::new())),
            };
            register(
                "jml_propagation_seconds",
                "Time from submit to verified read-back, by target and workflow",
                &metrics.propagation,
            );
            register(
                "jml_revocation_seconds",
                "Time from submit to verified revocation (leavers), by target and workflow",
                &metrics.revocation,
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

    /// A task was verified at `now_ms`.
    pub fn verified(&self, task: &TaskRecord, now_ms: i64) {
        let labels = workflow_labels(task);
        let seconds = seconds_between(task.planned_at, now_ms);
        self.propagation.get_or_create(&labels).observe(seconds);
        if !task.grants_access {
            self.revocation.get_or_create(&labels).observe(seconds);
        }
        self.verified.get_or_create(&labels).inc();
    }

    /// A task was proven at `now_ms` with `risks` remaining.
    pub fn verified_with_residual_risk(
        &self,
        task: &TaskRecord,
        risks: &[connector_kit::contract::ResidualRisk],
        now_ms: i64,
    ) {
        let labels = workflow_labels(task);
        let seconds = seconds_between(task.planned_at, now_ms);
        self.propagation.get_or_create(&labels).observe(seconds);
        if !task.grants_access {
            self.revocation.get_or_create(&labels).observe(seconds);
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

    /// A task passed its deadline.
    pub fn deadline_breached(&self, task: &TaskRecord) {
        self.breaches.get_or_create(&workflow_labels(task)).inc();
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
        for task in tasks {
            *depth.entry((task.target_id.clone(), task.state.as_str())).or_default() += 1;
            if task.state == crate::store::TaskState::AwaitingApproval {
                *awaiting.entry(task.target_id.clone()).or_default() += 1;
            }
            if task.deadline_breached || task.deadline_at < now_ms {
                *overdue.entry(task.target_id.clone()).or_default() += 1;
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
    }
}
