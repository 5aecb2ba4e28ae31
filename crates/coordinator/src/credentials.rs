//! Residual risk: what a task's credential revocation could not prove gone.
//!
//! The connector declares its credential model in `Describe`
//! (`connector_kit::credentials`); after a read-back equal to the desired
//! state, the coordinator lists what may outlive the revocation and for how
//! long. A task with such risks ends `verified_with_residual_risk`: proven
//! as far as the target can prove, never retried, shown apart from verified
//! and failed in status, evidence and metrics.

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::store::{TaskRecord, TaskState};

/// The terminal state of a task whose read-back equals the desired state:
/// verified, or verified with `risks` remaining.
pub fn proven_state(risks: &[pb::ResidualRisk]) -> TaskState {
    if risks.is_empty() { TaskState::Verified } else { TaskState::VerifiedWithResidualRisk }
}

/// The audit action recording a proven task.
pub fn proven_action(state: TaskState) -> &'static str {
    if state == TaskState::VerifiedWithResidualRisk { "task.verified_with_residual_risk" } else { "task.verified" }
}

/// A residual risk as JSON: kind, description, bound in words and, where
/// bounded, in seconds.
pub fn risk_json(risk: &pb::ResidualRisk) -> Value {
    json!({
        "credential_kind": risk.credential_kind,
        "description": risk.description,
        "bound": connector_kit::credentials::bound_label(risk),
        "max_lifetime_seconds": risk.max_lifetime.as_ref().map(|d| d.seconds),
    })
}

/// A cut-off the read-back showed, as JSON.
pub fn cutoff_json(cutoff: &pb::CredentialCutoff) -> Value {
    json!({
        "credential_kind": cutoff.credential_kind,
        "issued_before": cutoff.issued_before.as_ref().map(|t| t.seconds.saturating_mul(1000)).map(|ms| crate::event::format_time(Some(ms))),
        "proof": cutoff.proof,
    })
}

/// The cut-offs a task's read-back showed.
pub fn task_cutoffs(task: &TaskRecord) -> Vec<pb::CredentialCutoff> {
    task.read_back.as_ref().and_then(|state| state.credentials.as_ref()).map(|c| c.cutoffs.clone()).unwrap_or_default()
}

/// Every residual risk of an event's tasks, as `target: kind: description (bound)`.
pub fn event_risk_labels(tasks: &[TaskRecord]) -> Vec<String> {
    tasks
        .iter()
        .flat_map(|task| {
            task.residual_risks
                .iter()
                .map(move |risk| format!("{}: {}", task.target_id, connector_kit::credentials::label(risk)))
        })
        .collect()
}
