//! `jmlctl overdue`: the tasks past their propagation deadline, with the
//! workflows and owners they belong to.

use jml_contract::v1 as pb;
use serde_json::json;

use crate::connection::connect;
use crate::failure::{Failure, from_status};
use crate::print_json;
use crate::status::state_name;

// `jmlctl overdue`.
#[derive(Debug, clap::Args)]
pub struct OverdueArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `jmlctl overdue`.
pub async fn run(coordinator: &str, args: OverdueArgs) -> Result<(), Failure> {
    let OverdueArgs { json } = args;
    let mut client = connect(coordinator).await?;
    let overdue = client.list_overdue(pb::ListOverdueRequest {}).await.map_err(from_status)?.into_inner();
    if json {
        print_json(&json!(
            overdue
                .tasks
                .iter()
                .map(|t| json!({
                    "event_id": t.event_id, "person_id": t.person_id, "target_id": t.target_id,
                    "state": state_name(t.state), "deadline_at": t.deadline_at,
                    "late_by_seconds": t.late_by_seconds, "workflows": t.workflows, "owners": t.owners,
                }))
                .collect::<Vec<_>>()
        ));
    } else if overdue.tasks.is_empty() {
        println!("no overdue tasks");
    } else {
        for task in &overdue.tasks {
            println!(
                "{} {} {} {} deadline {} late by {}s owner {}",
                task.event_id,
                task.person_id,
                task.target_id,
                state_name(task.state),
                task.deadline_at,
                task.late_by_seconds,
                if task.owners.is_empty() { "-".to_owned() } else { task.owners.join(",") }
            );
        }
    }
    Ok(())
}
