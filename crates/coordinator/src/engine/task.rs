//! The engine's task runner: one attempt of a task is Apply, read-back and
//! comparison with the desired state, each step persisted before the next;
//! failed attempts back off with jitter until the attempts are spent.

#[allow(clippy::wildcard_imports)]
use super::*;
// ---------------------------------------------------------------------------
// Worker

pub(super) fn backoff(config: &EngineConfig, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = config.base_backoff.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let ceiling = exponential.min(config.max_backoff);
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0..=u64::try_from(half.as_micros()).unwrap_or(u64::MAX));
    let computed = half + Duration::from_micros(jitter);
    retry_after.map_or(computed, |after| after.max(computed))
}

pub(super) struct TaskRun {
    pub(super) inner: Arc<Inner>,
    pub(super) task: TaskRecord,
    /// The kind of the last failed attempt's error (metrics, span events).
    pub(super) error_kind: &'static str,
    /// Replica: a write was refused because the lane's lease was lost.
    pub(super) lease_lost: bool,
}

impl TaskRun {
    /// The target's client, admitting this task's calls ahead of ordinary
    /// ones when it is an urgent leaver's.
    pub(super) fn client(&self, runtime: &TargetRuntime) -> ConnectorClient {
        if self.task.urgent { runtime.client.urgent() } else { runtime.client.clone() }
    }

    pub(super) async fn save(&mut self, action: &str, payload: serde_json::Value) -> Result<(), StoreError> {
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
    pub(super) async fn failed_attempt(&mut self, error: String, retryable: bool, retry_after: Option<Duration>) {
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

    pub(super) async fn connector_error(&mut self, stage: &str, error: ConnectorError) -> Outcome {
        let retryable = ConnectorClient::is_retryable(&error);
        let unreachable = matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout);
        self.error_kind = error.kind.as_str();
        self.failed_attempt(format!("{stage}: {error}"), retryable, error.retry_after).await;
        if unreachable { Outcome::Unreachable } else { Outcome::Done }
    }

    pub(super) async fn attempt(&mut self, runtime: &TargetRuntime) -> Outcome {
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
            let payload = proven_payload(&self.task, now);
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

pub(super) async fn run_task(inner: Arc<Inner>, runtime: Arc<TargetRuntime>, mut task: TaskRecord) {
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

/// The audit payload of a task proven at `now` (`task.verified`, or
/// `task.verified_with_residual_risk`): the read-back it was proven by,
/// the attempts, the deadline and the timings. One shape for tasks proven by
/// a connector's read-back and by a fulfilled ticket's attestation.
pub(super) fn proven_payload(task: &crate::store::TaskRecord, now: i64) -> serde_json::Value {
    json!({
        "target_id": task.target_id,
        "attempts": task.attempts,
        "read_back": task.read_back.as_ref().map(read_back_json),
        "deadline_breached": task.deadline_breached,
        "residual_risks": task.residual_risks.iter().map(crate::credentials::risk_json).collect::<Vec<_>>(),
        "timings": {
            "planned_at": format_time(Some(task.planned_at)),
            "dispatched_at": format_time(task.dispatched_at),
            "acknowledged_at": format_time(task.acknowledged_at),
            "verified_at": format_time(Some(now)),
        },
    })
}
