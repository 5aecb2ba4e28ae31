//! `jmlctl held`: batches of state submits held by the mass-change guard
//! (`source_of_truth.max_leavers`): list them (as `jmlctl overdue` lists late
//! tasks), approve one (it is applied now, re-derived against what the
//! coordinator knows) or reject it. Deciding needs the `admin` role and is
//! refused to the batch's submitter; every decision is audited.

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::{connect, with_principal};
use crate::failure::{Failure, from_status};
use crate::print_json;

/// `jmlctl held ...`.
#[derive(Debug, clap::Subcommand)]
pub enum HeldCommand {
    /// List held batches (with `--all`, decided ones too).
    List {
        /// Include approved and rejected batches.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held batch: it is applied now.
    Approve {
        /// The batch id.
        batch_id: String,
        /// A comment for the audit log.
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject a held batch: nothing of it is applied.
    Reject {
        /// The batch id.
        batch_id: String,
        /// A comment for the audit log.
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn batch_json(batch: &pb::HeldBatch) -> Value {
    json!({
        "batch_id": batch.batch_id, "state": batch.state, "submitter": batch.submitter, "held_at": batch.held_at,
        "records": batch.records, "leavers": batch.leavers, "population": batch.population, "limit": batch.limit,
        "full_snapshot": batch.full_snapshot, "source_system": batch.source_system, "label": batch.label,
        "decided_by": batch.decided_by, "decided_at": batch.decided_at, "comment": batch.comment,
    })
}

fn print_batch(batch: &pb::HeldBatch) {
    println!(
        "{} {} held {} by {} leavers {} of {} active (limit {}) records {}{}{}",
        batch.batch_id,
        batch.state,
        batch.held_at,
        batch.submitter,
        batch.leavers,
        batch.population,
        batch.limit,
        batch.records,
        if batch.label.is_empty() { String::new() } else { format!(" label {}", batch.label) },
        if batch.decided_by.is_empty() {
            String::new()
        } else {
            format!(" decided by {} at {}", batch.decided_by, batch.decided_at)
        }
    );
}

/// Runs `jmlctl held`.
pub async fn run(coordinator: &str, principal: &Option<String>, command: HeldCommand) -> Result<(), Failure> {
    let mut client = connect(coordinator).await?;
    match command {
        HeldCommand::List { all, json } => {
            let request = with_principal(pb::ListHeldBatchesRequest { all }, principal)?;
            let batches = client.list_held_batches(request).await.map_err(from_status)?.into_inner().batches;
            if json {
                print_json(&json!(batches.iter().map(batch_json).collect::<Vec<_>>()));
            } else if batches.is_empty() {
                println!("no held batches");
            } else {
                batches.iter().for_each(print_batch);
            }
        }
        HeldCommand::Approve { batch_id, comment, json } => {
            decide(&mut client, principal, batch_id, true, comment, json).await?
        }
        HeldCommand::Reject { batch_id, comment, json } => {
            decide(&mut client, principal, batch_id, false, comment, json).await?
        }
    }
    Ok(())
}

async fn decide(
    client: &mut crate::connection::Client,
    principal: &Option<String>,
    batch_id: String,
    approve: bool,
    comment: String,
    json: bool,
) -> Result<(), Failure> {
    let request = with_principal(pb::DecideHeldBatchRequest { batch_id, approve, comment }, principal)?;
    let response = client.decide_held_batch(request).await.map_err(from_status)?.into_inner();
    let batch = response.batch.unwrap_or_default();
    let counts = response.applied.as_ref().and_then(|a| a.counts).unwrap_or_default();
    if json {
        let mut value = batch_json(&batch);
        if response.applied.is_some() {
            value["applied"] = json!({
                "joiners": counts.joiners, "movers": counts.movers, "leavers": counts.leavers,
                "rehires": counts.rehires, "unchanged": counts.unchanged, "duplicates": counts.duplicates,
                "stale": counts.stale,
                "event_ids": response.applied.iter().flat_map(|a| a.receipts.iter().map(|r| r.event_id.clone())).collect::<Vec<_>>(),
            });
        }
        print_json(&value);
    } else {
        print_batch(&batch);
        if response.applied.is_some() {
            println!(
                "applied: {} joiners, {} movers, {} leavers, {} rehires, {} unchanged",
                counts.joiners, counts.movers, counts.leavers, counts.rehires, counts.unchanged
            );
        }
    }
    Ok(())
}
