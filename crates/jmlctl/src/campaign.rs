//! `jmlctl campaign`: recertification campaigns on the coordinator.
//!
//! - `campaign start --name N --scope SCOPE --deadline 14d [--fallback-reviewer P]`
//!   (admin): one item per account in the scope, each to its reviewer;
//! - `campaign show ID` (approver, auditor, admin): the items, decisions,
//!   escalations and counts, rebuilt from the audit chain;
//! - `campaign decide ID ITEM keep|revoke [--comment C]`: the calling
//!   reviewer's decision (a revoke is remediated on the target and read back).
//!
//! `--json` prints the campaign as JSON.

use clap::Subcommand;
use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::{connect, with_principal};
use crate::failure::{Failure, from_status};
use crate::print_json;

/// The `campaign` subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Start a campaign over a scope.
    Start {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// `target:T`, `entitlement:T:KIND:ID`, `manual:T` or `stale:T:DURATION`.
        #[arg(long)]
        scope: String,
        /// How long reviewers have, e.g. `14d`.
        #[arg(long)]
        deadline: String,
        /// Who reviews items with neither a manager nor a workflow owner.
        #[arg(long, default_value = "")]
        fallback_reviewer: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a campaign.
    Show {
        /// The campaign id.
        campaign_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record your decision on one item.
    Decide {
        /// The campaign id.
        campaign_id: String,
        /// The item id (e.g. `i2`).
        item_id: String,
        /// `keep` or `revoke`.
        decision: String,
        /// Why (recorded in the audit chain).
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The campaign as JSON.
pub fn campaign_json(status: &pb::CampaignStatus) -> Value {
    json!({
        "campaign_id": status.campaign_id,
        "name": status.name,
        "scope": status.scope,
        "started_by": status.started_by,
        "started_at": status.started_at,
        "deadline_at": status.deadline_at,
        "closed": status.closed,
        "counts": { "items": status.items.len(), "kept": status.kept, "revoked": status.revoked,
                    "undecided": status.undecided, "escalated": status.escalated },
        "items": status.items.iter().map(|i| json!({
            "item_id": i.item_id, "target_id": i.target_id, "person_id": i.person_id,
            "account_name": i.account_name, "entitlement": i.entitlement, "reviewer": i.reviewer,
            "reviewer_source": i.reviewer_source, "decision": i.decision, "decided_by": i.decided_by,
            "decided_at": i.decided_at, "remediation_event_id": i.remediation_event_id, "escalated": i.escalated,
        })).collect::<Vec<_>>(),
    })
}

fn print(status: &pb::CampaignStatus, json: bool) {
    if json {
        print_json(&campaign_json(status));
        return;
    }
    println!(
        "campaign {} ({}) scope {} deadline {}{}: {} items, {} kept, {} revoked, {} undecided, {} escalated",
        status.campaign_id,
        status.name,
        status.scope,
        status.deadline_at,
        if status.closed { " (closed)" } else { "" },
        status.items.len(),
        status.kept,
        status.revoked,
        status.undecided,
        status.escalated
    );
    for item in &status.items {
        let decision = if item.decision.is_empty() {
            if item.escalated { "ESCALATED".to_owned() } else { "undecided".to_owned() }
        } else {
            format!("{} by {}", item.decision, item.decided_by)
        };
        println!(
            "  {} {} {} {} reviewer {} ({}) {}{}",
            item.item_id,
            item.target_id,
            item.account_name,
            if item.entitlement.is_empty() { "-" } else { &item.entitlement },
            if item.reviewer.is_empty() { "-" } else { &item.reviewer },
            item.reviewer_source,
            decision,
            if item.remediation_event_id.is_empty() {
                String::new()
            } else {
                format!(" -> {}", item.remediation_event_id)
            }
        );
    }
}

/// Runs one `campaign` subcommand.
pub async fn run(coordinator: &str, principal: &Option<String>, command: CampaignCommand) -> Result<(), Failure> {
    let mut client = connect(coordinator).await?;
    let (status, json) = match command {
        CampaignCommand::Start { name, scope, deadline, fallback_reviewer, json } => {
            let request = pb::StartCampaignRequest { name, scope, deadline, fallback_reviewer };
            (client.start_campaign(with_principal(request, principal)?).await, json)
        }
        CampaignCommand::Show { campaign_id, json } => {
            let request = pb::GetCampaignRequest { campaign_id };
            (client.get_campaign(with_principal(request, principal)?).await, json)
        }
        CampaignCommand::Decide { campaign_id, item_id, decision, comment, json } => {
            let request = pb::CampaignDecisionRequest { campaign_id, item_id, decision, comment };
            (client.decide_campaign_item(with_principal(request, principal)?).await, json)
        }
    };
    print(&status.map_err(from_status)?.into_inner(), json);
    Ok(())
}
