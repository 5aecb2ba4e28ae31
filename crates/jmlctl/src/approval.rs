//! `jmlctl approve` and `jmlctl reject`: a decision on the grants awaiting
//! approval on one target of an event; needs an authenticated caller.

use jml_contract::v1 as pb;
use serde_json::json;

use crate::connection::{CREDENTIALS, connect, with_principal};
use crate::failure::{Failure, bad_input, from_status};
use crate::print_json;
use crate::status::{state_name, task_json};

// `jmlctl approve` and `jmlctl reject`.
#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    /// The event id.
    event_id: String,
    /// The target id.
    target_id: String,
    /// A comment for the audit log.
    #[arg(long, default_value = "")]
    comment: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `jmlctl approve` (with `approve`) or `jmlctl reject`.
pub async fn run(
    coordinator: &str,
    principal: &Option<String>,
    args: DecisionArgs,
    approve: bool,
) -> Result<(), Failure> {
    let DecisionArgs { event_id, target_id, comment, json } = args;
    decide(coordinator, principal, pb::ApprovalRequest { event_id, target_id, comment }, json, approve).await
}

async fn decide(
    coordinator: &str,
    principal: &Option<String>,
    request: pb::ApprovalRequest,
    json: bool,
    approve: bool,
) -> Result<(), Failure> {
    let authenticated = CREDENTIALS
        .get()
        .is_some_and(|c| c.authorization.is_some() || c.tls.as_ref().is_some_and(|t| t.identity.is_some()));
    if principal.is_none() && !authenticated {
        return Err(bad_input("approving or rejecting needs --token-file, --cert/--key, or (development) --principal"));
    }
    let mut client = connect(coordinator).await?;
    let request = with_principal(request, principal)?;
    let response = if approve { client.approve(request).await } else { client.reject(request).await };
    let response = response.map_err(from_status)?.into_inner();
    let task = response.task.unwrap_or_default();
    if json {
        print_json(
            &json!({ "approvals": response.approvals, "required": response.required, "task": task_json(&task) }),
        );
    } else {
        println!(
            "{} {}: {} approval(s) of {} required; task {}",
            if approve { "approved" } else { "rejected" },
            task.target_id,
            response.approvals,
            response.required,
            state_name(task.state)
        );
    }
    Ok(())
}
