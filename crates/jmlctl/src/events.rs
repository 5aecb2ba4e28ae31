//! `jmlctl submit` and `jmlctl plan`: one lifecycle event, given by flags
//! or a JSON file, sent to the coordinator (`SubmitEvent`) or planned as a
//! dry run (`Plan`: the desired state per target and the workflows that match).

use std::collections::BTreeMap;
use std::path::PathBuf;

use coordinator::event::{kind_from_name, kind_to_proto};
use coordinator::evidence::{desired_json, entitlement_json};
use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::{connect, with_principal};
use crate::failure::{Failure, bad_input, from_send_status, from_status};
use crate::print_json;
use crate::status::event_kind_name;

/// An event given on the command line or in a JSON file.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// A JSON file holding the event (`event_id`, `kind`, `person_id`,
    /// `attributes`, `effective_at`, `source_system`, `urgent`); flags override it.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// The event id (idempotency key).
    #[arg(long)]
    event_id: Option<String>,
    /// joiner, mover or leaver.
    #[arg(long)]
    kind: Option<String>,
    /// The person's id.
    #[arg(long)]
    person: Option<String>,
    /// An attribute, NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// When the event takes effect (RFC 3339).
    #[arg(long)]
    effective_at: Option<String>,
    /// The source system.
    #[arg(long)]
    source: Option<String>,
    /// An urgent leaver.
    #[arg(long)]
    urgent: bool,
}

// `jmlctl submit` (its help text is the variant's, in main.rs).
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    event: EventArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

// `jmlctl plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    event: EventArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `jmlctl submit`.
pub async fn submit(coordinator: &str, principal: &Option<String>, args: SubmitArgs) -> Result<(), Failure> {
    let SubmitArgs { event, json } = args;
    let event = build_event(&event)?;
    let mut client = connect(coordinator).await?;
    let request = with_principal(pb::SubmitEventRequest { event: Some(event) }, principal)?;
    let receipt =
        client.submit_event(request).await.map_err(from_send_status)?.into_inner().receipt.unwrap_or_default();
    if json {
        print_json(&json!({
            "event_id": receipt.event_id,
            "duplicate": receipt.duplicate,
            "received_at": receipt.received_at,
            "policy_hash": receipt.policy_hash,
            "plan_hash": receipt.plan_hash,
            "targets": receipt.targets,
            "initiator": receipt.initiator,
            "trace_id": receipt.trace_id,
        }));
    } else {
        println!(
            "{} {}: targets [{}], plan {}",
            if receipt.duplicate { "duplicate of" } else { "accepted" },
            receipt.event_id,
            receipt.targets.join(", "),
            receipt.plan_hash
        );
    }
    Ok(())
}

/// `jmlctl plan`.
pub async fn plan(coordinator: &str, args: PlanArgs) -> Result<(), Failure> {
    let PlanArgs { event, json } = args;
    let event = build_event(&event)?;
    let mut client = connect(coordinator).await?;
    let response = client.plan(pb::PlanRequest { event: Some(event) }).await.map_err(from_status)?.into_inner();
    if json {
        print_json(&plan_json(&response));
    } else {
        let plan = response.plan.clone().unwrap_or_default();
        println!("plan {} (policy {})", response.plan_hash, response.policy_hash);
        for workflow in &plan.workflows {
            println!("  workflow {} (owner {})", workflow.name, workflow.owner);
        }
        for target in &plan.targets {
            let desired = target.desired.clone().unwrap_or_default();
            let grants: Vec<String> = desired.entitlements.iter().map(|e| format!("{}:{}", e.kind, e.id)).collect();
            println!(
                "  {:<12} {} enabled={} entitlements=[{}]{}",
                target.target_id,
                desired.account.map(|a| a.account_name).unwrap_or_default(),
                desired.enabled,
                grants.join(", "),
                if target.approvals_required > 0 {
                    format!(" (needs {} approval(s) from {})", target.approvals_required, target.approver_group)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    event_id: Option<String>,
    kind: Option<String>,
    person_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    effective_at: Option<String>,
    source_system: Option<String>,
    #[serde(default)]
    urgent: bool,
}

fn build_event(args: &EventArgs) -> Result<pb::LifecycleEvent, Failure> {
    let mut file = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
            serde_json::from_str::<EventFile>(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?
        }
        None => EventFile {
            event_id: None,
            kind: None,
            person_id: None,
            attributes: BTreeMap::new(),
            effective_at: None,
            source_system: None,
            urgent: false,
        },
    };
    for pair in &args.attributes {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| bad_input(format!("--attr {pair:?}: expected NAME=VALUE")))?;
        file.attributes.insert(name.to_owned(), value.to_owned());
    }
    let kind_text = args.kind.clone().or(file.kind).ok_or_else(|| bad_input("kind: required (--kind or file)"))?;
    let kind = kind_from_name(&kind_text)
        .ok_or_else(|| bad_input(format!("kind: {kind_text:?} is not joiner, mover, leaver, suspension or return")))?;
    Ok(pb::LifecycleEvent {
        event_id: args.event_id.clone().or(file.event_id).unwrap_or_default(),
        kind: kind_to_proto(kind) as i32,
        person_id: args.person.clone().or(file.person_id).unwrap_or_default(),
        attributes: file.attributes,
        effective_at: args.effective_at.clone().or(file.effective_at).unwrap_or_default(),
        source_system: args.source.clone().or(file.source_system).unwrap_or_default(),
        urgent: args.urgent || file.urgent,
        source_changed_at: String::new(),
    })
}

fn plan_json(response: &pb::PlanResponse) -> Value {
    let plan = response.plan.clone().unwrap_or_default();
    json!({
        "person_id": plan.person_id,
        "kind": event_kind_name(plan.kind),
        "plan_hash": response.plan_hash,
        "policy_hash": response.policy_hash,
        "workflows": plan.workflows.iter().map(|w| json!({ "name": w.name, "owner": w.owner })).collect::<Vec<_>>(),
        "targets": plan.targets.iter().map(|t| json!({
            "target_id": t.target_id,
            "desired": t.desired.as_ref().map(desired_json),
            "awaiting_approval": t.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
            "approvals_required": t.approvals_required,
            "approver_group": t.approver_group,
            "deadline_seconds": t.deadline_seconds,
            "workflows": t.workflows,
        })).collect::<Vec<_>>(),
    })
}
