//! Adoption: linking an account that carries no correlation key to a person
//! (or, for an unmatched account the policy disables, to the mesh's custody
//! key), with proof.
//!
//! A link is one `Apply` carrying `link` (the fingerprint the listing saw)
//! whose desired state is the account exactly as listed under the new key
//! ([`crate::correlation::link_desired`]): the connector refuses it, writing
//! nothing, when the account changed since; otherwise it writes the key and
//! changes nothing else. The coordinator then reads the account back by the
//! new key and requires the read-back to equal that state. Each outcome is
//! an audit record naming the principal and the rule that matched
//! (`correlation.linked`, `correlation.link_refused`). Converging the account
//! to the person's plan is then an ordinary event, submitted by the caller
//! (`crate::reconcile`), ordered, approved, dispatched and read back like
//! any other.

use connector_kit::client::ConnectorClient;
use connector_kit::readback::compare;
use jml_contract::v1 as pb;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::correlation::link_desired;
use crate::event::now_ms;
use crate::store::{AuditEntry, Store};

/// What became of one link.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkRecord {
    /// The account.
    pub account_name: String,
    /// The key written: the person's id, or the custody key of an unmatched
    /// account.
    pub person_id: String,
    /// The rule that matched, in words (none for custody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `linked` (written and read back), `refused` (nothing written) or
    /// `unproven` (the connector acknowledged, the read-back does not show
    /// the link).
    pub outcome: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The event converging the account afterwards (see `jmlctl evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergence_event_id: Option<String>,
}

impl LinkRecord {
    /// Whether the link was written and read back.
    pub fn linked(&self) -> bool {
        self.outcome == "linked"
    }
}

/// What one link needs.
pub struct LinkOrder<'a> {
    /// The reconciliation run (the audit records' `event_id`).
    pub run_id: &'a str,
    /// The target.
    pub target_id: &'a str,
    /// Who links (`schedule` for automatic links).
    pub principal: &'a str,
    /// The account as the current listing shows it.
    pub state: &'a pb::AccountState,
    /// The key to write.
    pub person_id: &'a str,
    /// The fingerprint the link must find (the listing's, or an earlier
    /// report's for a link an admin asked for).
    pub fingerprint: &'a str,
    /// The rule that matched, in words.
    pub rule: Option<String>,
}

fn command_id(run_id: &str, person_id: &str, account_name: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{person_id}\n{account_name}").as_bytes()));
    let run = run_id.trim_start_matches("reconcile-");
    format!("link-{}-{}", &run[..run.len().min(16)], &digest[..24])
}

/// Links one account and records the outcome in the audit chain. Connector
/// errors are outcomes (`refused`); only a store failure is an error.
pub async fn link(
    store: &dyn Store,
    client: &ConnectorClient,
    description: &pb::DescribeResponse,
    order: LinkOrder<'_>,
) -> Result<LinkRecord, crate::store::StoreError> {
    let desired = link_desired(order.state, order.person_id);
    let account_name = desired.account.as_ref().map(|a| a.account_name.clone()).unwrap_or_default();
    let request = pb::ApplyRequest {
        command_id: command_id(order.run_id, order.person_id, &account_name),
        desired: Some(desired.clone()),
        link: Some(pb::LinkAccount { expected_fingerprint: order.fingerprint.to_owned() }),
        ..Default::default()
    };
    let outcome = match client.apply_request(request).await {
        Err(error) => Err((error.to_string(), None)),
        Ok(acknowledgement) => {
            let changes: Vec<String> =
                acknowledgement.changes.iter().map(|c| format!("{} {}", c.action, c.subject)).collect();
            let account = pb::AccountRef { person_id: order.person_id.to_owned(), account_name: account_name.clone() };
            match client.read(account).await {
                Err(error) => Err((format!("linked, but the read-back failed: {error}"), Some(changes))),
                Ok(state) => {
                    let key = state.account.as_ref().map(|a| a.person_id.as_str()).unwrap_or_default();
                    let differences = compare(description, &desired, &state);
                    if !state.exists || key != order.person_id || !differences.is_empty() {
                        let differences: Vec<String> = differences.iter().map(ToString::to_string).collect();
                        Err((
                            format!(
                                "the read-back does not show the link (key {key:?}; differences: [{}])",
                                differences.join("; ")
                            ),
                            Some(changes),
                        ))
                    } else {
                        Ok((changes, state.fingerprint))
                    }
                }
            }
        }
    };
    let (action, payload, record) = match outcome {
        Ok((changes, read_back_fingerprint)) => (
            "correlation.linked",
            json!({
                "target_id": order.target_id,
                "account_name": account_name,
                "person_id": order.person_id,
                "rule": order.rule,
                "fingerprint": order.fingerprint,
                "changes": changes,
                "read_back_fingerprint": read_back_fingerprint,
            }),
            LinkRecord {
                account_name: account_name.clone(),
                person_id: order.person_id.to_owned(),
                rule: order.rule.clone(),
                outcome: "linked",
                error: None,
                convergence_event_id: None,
            },
        ),
        Err((error, changes)) => (
            if changes.is_some() { "correlation.link_unproven" } else { "correlation.link_refused" },
            json!({
                "target_id": order.target_id,
                "account_name": account_name,
                "person_id": order.person_id,
                "rule": order.rule,
                "fingerprint": order.fingerprint,
                "changes": changes,
                "error": error,
            }),
            LinkRecord {
                account_name: account_name.clone(),
                person_id: order.person_id.to_owned(),
                rule: order.rule.clone(),
                outcome: if changes.is_some() { "unproven" } else { "refused" },
                error: Some(error),
                convergence_event_id: None,
            },
        ),
    };
    tracing::info!(target = %order.target_id, outcome = record.outcome, "correlation link");
    store
        .append_audit(vec![AuditEntry {
            at: now_ms(),
            principal: order.principal.to_owned(),
            event_id: order.run_id.to_owned(),
            action: action.into(),
            payload,
        }])
        .await?;
    Ok(record)
}

/// A link refused before the connector was called (the account no longer
/// correlates as the report said), recorded like any refusal.
pub async fn refuse(
    store: &dyn Store,
    run_id: &str,
    target_id: &str,
    principal: &str,
    link: &pb::AccountLink,
    why: String,
) -> Result<LinkRecord, crate::store::StoreError> {
    store
        .append_audit(vec![AuditEntry {
            at: now_ms(),
            principal: principal.to_owned(),
            event_id: run_id.to_owned(),
            action: "correlation.link_refused".into(),
            payload: json!({
                "target_id": target_id,
                "account_name": link.account_name,
                "person_id": link.person_id,
                "fingerprint": link.fingerprint,
                "error": why,
            }),
        }])
        .await?;
    Ok(LinkRecord {
        account_name: link.account_name.clone(),
        person_id: link.person_id.clone(),
        rule: None,
        outcome: "refused",
        error: Some(why),
        convergence_event_id: None,
    })
}

/// What a task whose `Apply` met an account it may not touch (CONFLICT)
/// does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinerConflict {
    /// Apply again with this link (`adopt: correlated`, a rule matched).
    Link(pb::LinkAccount),
    /// Fail for good with this message (naming the account, the rule and
    /// the command that links it, or why the account is not taken over).
    Refuse(String),
    /// Not an account without a key met by a joiner: an ordinary conflict.
    NotAdoption,
}

/// A joiner's task met an existing account on a target with correlation
/// rules: looks the account up by name in the connector's scope; when it
/// carries no key and a rule matches the joiner (the first rule whose
/// rendering over the event's attributes equals the account's value), links
/// it under `adopt: correlated`, else refuses naming the account, the rule
/// and the command that links it. Whether another person also correlates is
/// not checked on this path (reconciliation names disputed accounts).
pub async fn joiner_conflict(
    policy: &crate::Policy,
    store: &dyn Store,
    client: &ConnectorClient,
    task: &crate::store::TaskRecord,
) -> JoinerConflict {
    use crate::correlation::{Adopt, CorrelationIndex};
    let Some(target) = policy.file.targets.iter().find(|t| t.id == task.target_id) else {
        return JoinerConflict::NotAdoption;
    };
    let Some(spec) = &target.correlation else { return JoinerConflict::NotAdoption };
    let Ok(Some(event)) = store.event(&task.event_id).await else { return JoinerConflict::NotAdoption };
    if event.kind != crate::policy::EventKindName::Joiner {
        return JoinerConflict::NotAdoption;
    }
    let account_name = task
        .planned
        .desired
        .as_ref()
        .and_then(|d| d.account.as_ref())
        .map(|a| a.account_name.clone())
        .unwrap_or_default();
    let mut index = CorrelationIndex::new(spec, target);
    index.add(&task.person_id, &event.attributes);
    let request = pb::ListRequest {
        page_size: 1,
        correlation_attributes: index.requested_attributes(),
        account_name: account_name.clone(),
    };
    let mut found = Vec::new();
    match client.list_request(request).await {
        Ok(mut stream) => loop {
            match stream.message().await {
                Ok(Some(page)) => found.extend(page.accounts),
                Ok(None) => break,
                Err(_) => return JoinerConflict::NotAdoption,
            }
        },
        Err(_) => return JoinerConflict::NotAdoption,
    }
    let Some(state) = found.into_iter().next() else { return JoinerConflict::NotAdoption };
    if state.account.as_ref().is_some_and(|a| !a.person_id.is_empty()) {
        return JoinerConflict::NotAdoption;
    }
    let target_id = &task.target_id;
    let printable = connector_kit::validate::printable(&account_name);
    let rule = match index.correlate(&state) {
        crate::correlation::Correlation::One { rule, .. } => spec.rules[rule].describe(rule, target),
        _ => {
            return JoinerConflict::Refuse(format!(
                "account {printable:?} exists on target {target_id} without a correlation key and no correlation \
                 rule matches this person: it is not taken over (resolve it on the target, or correct the rules)"
            ));
        }
    };
    if spec.adopt == Adopt::Correlated {
        tracing::info!(target = %target_id, "a joiner links an existing account (adopt: correlated)");
        return JoinerConflict::Link(pb::LinkAccount { expected_fingerprint: state.fingerprint });
    }
    JoinerConflict::Refuse(format!(
        "account {printable:?} exists on target {target_id} without a correlation key; correlation rule {rule} \
         matches this person. Link it with `jmlctl reconcile --target {target_id} --person-prefix {} --link` \
         (or set adopt: correlated on the target)",
        task.person_id
    ))
}
