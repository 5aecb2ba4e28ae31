//! `jmlctl evidence`: the evidence document of one event (`ExportEvidence`),
//! as JSON or as text.

use jml_contract::v1 as pb;
use serde_json::Value;

use crate::connection::connect;
use crate::failure::{Failure, failed, from_status};

// `jmlctl evidence`.
#[derive(Debug, clap::Args)]
pub struct EvidenceArgs {
    /// The event id.
    event_id: String,
    /// Print the JSON document.
    #[arg(long)]
    json: bool,
}

/// `jmlctl evidence`.
pub async fn run(coordinator: &str, args: EvidenceArgs) -> Result<(), Failure> {
    let EvidenceArgs { event_id, json } = args;
    let mut client = connect(coordinator).await?;
    let document =
        client.export_evidence(pb::ExportEvidenceRequest { event_id }).await.map_err(from_status)?.into_inner();
    if json {
        println!("{}", document.json);
    } else {
        let value: Value = serde_json::from_str(&document.json).map_err(|e| failed(e.to_string()))?;
        print_evidence(&value);
    }
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_evidence(evidence: &Value) {
    println!("evidence for event {}", text(&evidence["event_id"]));
    for (label, key) in [
        ("kind", "kind"),
        ("person", "person_id"),
        ("state", "state"),
        ("initiator", "initiator"),
        ("source", "source_system"),
        ("effective at", "effective_at"),
        ("received at", "received_at"),
        ("finished at", "finished_at"),
        ("policy hash", "policy_hash"),
        ("plan hash", "plan_hash"),
        ("trace id", "trace_id"),
    ] {
        println!("  {label:<13} {}", text(&evidence[key]));
    }
    for workflow in evidence["workflows"].as_array().into_iter().flatten() {
        println!("  workflow      {} (owner {})", text(&workflow["name"]), text(&workflow["owner"]));
    }
    for target in evidence["targets"].as_array().into_iter().flatten() {
        println!(
            "  target {}: {} after {} attempt(s), deadline {}{}",
            text(&target["target_id"]),
            text(&target["state"]),
            text(&target["attempts"]),
            text(&target["deadline"]["deadline_at"]),
            if target["deadline"]["breached"] == Value::Bool(true) { " (BREACHED)" } else { "" }
        );
        println!("    desired         {}", target["desired"]);
        println!("    acknowledgement {}", target["acknowledgement"]);
        println!("    read-back       {}", target["read_back"]);
        for difference in target["differences"].as_array().into_iter().flatten() {
            println!("    difference      {}", text(difference));
        }
        for risk in target["residual_risks"].as_array().into_iter().flatten() {
            println!(
                "    residual risk   {}: {} ({})",
                text(&risk["credential_kind"]),
                text(&risk["description"]),
                text(&risk["bound"])
            );
        }
        for approval in target["approvals"].as_array().into_iter().flatten() {
            println!(
                "    {:<15} {} at {}",
                text(&approval["decision"]),
                text(&approval["approver"]),
                text(&approval["at"])
            );
        }
        println!("    timings         {}", target["timings"]);
    }
    let seqs: Vec<String> = evidence["audit"].as_array().into_iter().flatten().map(|r| text(&r["seq"])).collect();
    println!("  audit records {}", seqs.join(", "));
}
