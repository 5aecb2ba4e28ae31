//! Manual targets: tasks awaiting fulfilment.
//!
//! A connector whose `Describe` declares `manual_fulfilment` cannot change its
//! target itself: `Apply` files a ticket stating the exact desired state and
//! answers `awaiting_fulfilment`. The task then waits in
//! [`TaskState::AwaitingFulfilment`] with its deadline (breaches are swept and
//! listed as for any task), never retried: every `fulfilment_poll` the worker
//! reads the account back, which for a manual target is the fulfiller's
//! attestation on the ticket. The task is verified only when
//!
//! - the read-back carries an attestation (a manual target's state without
//!   one is unknown, never the safe value),
//! - it answers this task's command (an attestation of an earlier desired
//!   state does not count),
//! - its fulfiller, as the ticketing system recorded them, is neither the
//!   event's initiator nor its subject, and
//! - the attested state equals the desired state by the ordinary
//!   [`connector_kit::readback::compare`].
//!
//! Anything short of that leaves the task awaiting fulfilment with the reason
//! in `last_error` (recorded in the audit chain each time it changes), until
//! it is verified, superseded by a newer event, or seen overdue.

use std::time::Duration;

use jml_contract::v1 as pb;
use serde_json::json;

use super::{Outcome, TargetRuntime, TaskRun, subject_principals};
use crate::event::{format_time, now_ms};
use crate::evidence::read_back_json;
use crate::store::{EventRecord, TaskState};

/// How often a task awaiting fulfilment reads its ticket, by default.
pub const DEFAULT_FULFILMENT_POLL: Duration = Duration::from_secs(15);

/// Who a manual task past its deadline is escalated to: the owners of the
/// workflows that planned it, else (a leaver's or a deletion's task, which no
/// workflow grants) the owners of every workflow granting on its target.
pub fn escalation_owners(policy: &crate::policy::Policy, task: &crate::store::TaskRecord) -> Vec<String> {
    let workflows = &policy.file.workflows;
    let mut owners: Vec<String> =
        workflows.iter().filter(|w| task.planned.workflows.contains(&w.name)).map(|w| w.owner.clone()).collect();
    if owners.is_empty() {
        owners = workflows.iter().filter(|w| w.grants.contains_key(&task.target_id)).map(|w| w.owner.clone()).collect();
    }
    owners.sort();
    owners.dedup();
    owners
}

/// Whether an attestation read back may verify the task of `event` sent with
/// `command_id` for the desired state of digest `desired_digest` (an
/// attestation of another command that asked for exactly the same state
/// counts): `Err` says why not.
pub fn judge_attestation(
    event: &EventRecord,
    command_id: &str,
    desired_digest: &str,
    read_back: &pb::AccountState,
) -> Result<(), String> {
    let Some(attestation) = read_back.attestation.as_ref() else {
        return Err("the read-back of a manual target carries no attestation".into());
    };
    if attestation.command_id != command_id && attestation.desired_digest != desired_digest {
        return Err(format!(
            "the attestation on ticket {} answers command {:?}, a request for another desired state than this \
             task's {command_id:?}",
            attestation.ticket_id, attestation.command_id
        ));
    }
    let fulfiller = attestation.fulfiller.trim().to_lowercase();
    if fulfiller.is_empty() {
        return Err(format!("the attestation on ticket {} names no fulfiller", attestation.ticket_id));
    }
    if fulfiller == event.initiator.trim().to_lowercase() {
        return Err(format!(
            "attestation by {:?} refused: the fulfiller may not be the event's initiator",
            attestation.fulfiller
        ));
    }
    if subject_principals(event).iter().any(|subject| subject.trim().to_lowercase() == fulfiller) {
        return Err(format!(
            "attestation by {:?} refused: the fulfiller may not be the event's subject",
            attestation.fulfiller
        ));
    }
    Ok(())
}

impl TaskRun {
    /// The connector filed a ticket: the task waits for fulfilment.
    pub(super) async fn await_fulfilment(&mut self, runtime: &TargetRuntime) -> Outcome {
        self.task.state = TaskState::AwaitingFulfilment;
        self.task.last_error.clear();
        let ticket = self.task.acknowledgement.as_ref().and_then(|ack| ack.ticket.clone()).unwrap_or_default();
        let payload = json!({
            "target_id": self.task.target_id,
            "command_id": self.task.command_id,
            "ticket": { "id": ticket.ticket_id, "url": ticket.url, "queue": ticket.queue, "action": ticket.action },
            "deadline_at": format_time(Some(self.task.deadline_at)),
        });
        if let Err(error) = self.save("task.awaiting_fulfilment", payload).await {
            tracing::error!(%error, "cannot record a task awaiting fulfilment");
        }
        self.check_fulfilment(runtime).await
    }

    /// Reads the attestation back and verifies the task, or leaves it waiting.
    pub(super) async fn check_fulfilment(&mut self, runtime: &TargetRuntime) -> Outcome {
        let target = self.task.target_id.clone();
        let description = match crate::tracing_context::connector_call(&target, "describe", runtime.describe()).await {
            Ok(description) => description.clone(),
            Err(error) => return self.still_waiting(format!("describe: {error}")).await,
        };
        let desired = self.task.desired();
        let account = desired.account.clone().unwrap_or_default();
        let client = self.client(runtime);
        let read = client.read(account);
        let read_back = match crate::tracing_context::connector_call(&target, "read", read).await {
            Ok(state) => state,
            Err(error) => return self.still_waiting(format!("read: {error}")).await,
        };
        let event = match self.inner.store.event(&self.task.event_id).await {
            Ok(Some(event)) => event,
            Ok(None) => return self.still_waiting("the task's event is not in the store".into()).await,
            Err(error) => return self.still_waiting(format!("store: {error}")).await,
        };
        let digest = crate::planner::message_hash(&desired);
        let judged = judge_attestation(&event, &self.task.command_id, &digest, &read_back);
        let differences = connector_kit::readback::compare(&description, &desired, &read_back);
        self.task.differences = differences.iter().map(ToString::to_string).collect();
        self.task.read_back = Some(read_back);
        if let Err(reason) = judged {
            return self.still_waiting(reason).await;
        }
        if !differences.is_empty() {
            let reason =
                format!("the attested state differs from the desired state: {}", self.task.differences.join("; "));
            return self.still_waiting(reason).await;
        }
        let now = now_ms();
        self.task.state = TaskState::Verified;
        self.task.finished_at = Some(now);
        self.task.next_attempt_at = None;
        self.task.last_error.clear();
        self.task.deadline_breached |= now > self.task.deadline_at;
        let payload = super::task::proven_payload(&self.task, now);
        if let Err(error) = self.save("task.verified", payload).await {
            tracing::error!(%error, "cannot record a verification");
        }
        Outcome::Done
    }

    /// Not verified yet: read again after the poll interval; the reason is
    /// recorded when it changes.
    async fn still_waiting(&mut self, reason: String) -> Outcome {
        self.task.state = TaskState::AwaitingFulfilment;
        let now = now_ms();
        let poll = i64::try_from(self.inner.config.fulfilment_poll.as_millis()).unwrap_or(15_000);
        self.task.next_attempt_at = Some(now + poll);
        // The scheduler's sweep skips tasks in flight, and a task awaiting
        // fulfilment is read often: its breach is recorded here.
        if !self.task.deadline_breached && now > self.task.deadline_at {
            self.task.deadline_breached = true;
            crate::metrics::CoordinatorMetrics::get().deadline_breached(&self.task);
            // Unfulfilled in time: escalated to the owners answering for it.
            crate::metrics::CoordinatorMetrics::get().fulfilment_escalated(&self.task);
            let payload = json!({
                "target_id": self.task.target_id,
                "state": self.task.state.as_str(),
                "deadline_at": format_time(Some(self.task.deadline_at)),
                "escalated_to": escalation_owners(&self.inner.policy, &self.task),
                "last_error": reason,
            });
            if let Err(error) = self.save("task.deadline_breached", payload).await {
                tracing::error!(%error, "cannot record a deadline breach");
            }
            tracing::warn!(event_id = %self.task.event_id, target = %self.task.target_id, "propagation deadline breached");
        }
        if reason != self.task.last_error {
            self.task.last_error = reason;
            let payload = json!({
                "target_id": self.task.target_id,
                "reason": self.task.last_error,
                "read_back": self.task.read_back.as_ref().map(read_back_json),
            });
            if let Err(error) = self.save("task.fulfilment_pending", payload).await {
                tracing::error!(%error, "cannot record a pending fulfilment");
            }
        }
        Outcome::Done
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::EventKindName;
    use crate::store::EventState;

    fn event() -> EventRecord {
        EventRecord {
            seq: 1,
            event_id: "e1".into(),
            kind: EventKindName::Leaver,
            person_id: "p-1".into(),
            attributes: BTreeMap::from([("username".into(), "dana".into())]),
            effective_at: 0,
            source_system: "workday".into(),
            initiator: "hr-feed".into(),
            urgent: false,
            received_at: 0,
            policy_hash: String::new(),
            plan: pb::Plan::default(),
            plan_hash: String::new(),
            trace_id: String::new(),
            state: EventState::InProgress,
            finished_at: None,
        }
    }

    fn attested(fulfiller: &str, command_id: &str) -> pb::AccountState {
        pb::AccountState {
            attestation: Some(pb::Attestation {
                ticket_id: "7".into(),
                fulfiller: fulfiller.into(),
                command_id: command_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_an_independent_fulfiller_of_this_command_is_accepted() {
        let event = event();
        assert!(judge_attestation(&event, "c1", "d1", &attested("fulfiller-ana", "c1")).is_ok());
        assert!(judge_attestation(&event, "c1", "d1", &pb::AccountState::default()).is_err());
        assert!(
            judge_attestation(&event, "c1", "d1", &attested("fulfiller-ana", "c0"))
                .expect_err("refused")
                .contains("c0")
        );
        let mut same_state = attested("fulfiller-ana", "c0");
        if let Some(a) = same_state.attestation.as_mut() {
            a.desired_digest = "d1".into();
        }
        assert!(judge_attestation(&event, "c1", "d1", &same_state).is_ok());
        assert!(
            judge_attestation(&event, "c1", "d1", &attested("HR-Feed", "c1"))
                .expect_err("refused")
                .contains("initiator")
        );
        assert!(
            judge_attestation(&event, "c1", "d1", &attested("dana", "c1")).expect_err("refused").contains("subject")
        );
        assert!(
            judge_attestation(&event, "c1", "d1", &attested("p-1", "c1")).expect_err("refused").contains("subject")
        );
        assert!(judge_attestation(&event, "c1", "d1", &attested(" ", "c1")).is_err());
    }
}
