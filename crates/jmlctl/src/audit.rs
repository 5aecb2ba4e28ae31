//! `jmlctl audit verify`: walks the audit hash chain and names the first
//! broken record, through the coordinator or (`--db`) read-only on the
//! database itself.

use jml_contract::v1 as pb;
use serde_json::json;

use crate::connection::connect;
use crate::failure::{Failure, bad_input, failed, from_status};
use crate::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the audit hash chain and name the first broken record.
    Verify {
        /// Verify the database directly, without the coordinator: a SQLite
        /// file, or a `postgres://` URL (prefer JML_DB for a URL with a
        /// password). Read-only.
        #[arg(long, env = "JML_DB", hide_env_values = true)]
        db: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `jmlctl audit ...`.
pub async fn run(coordinator: &str, command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify { db: Some(db), json } => {
            let chain = coordinator::store::ReadOnlyAudit::open(&db).await.map_err(|error| match error {
                coordinator::store::StoreError::NotFound(what) => bad_input(format!("{what}: no such file")),
                other if coordinator::store::postgres::is_postgres_url(&db) => {
                    failed(format!("database {}: {other}", coordinator::store::postgres::redacted_url(&db)))
                }
                other => bad_input(format!("database {db}: {other}")),
            })?;
            let verdict = chain.verify().await.map_err(|e| failed(e.to_string()))?;
            report_verdict(verdict.records, verdict.broken, json)
        }
        AuditCommand::Verify { db: None, json } => {
            let mut client = connect(coordinator).await?;
            let verdict = client.verify_audit(pb::VerifyAuditRequest {}).await.map_err(from_status)?.into_inner();
            let broken = (!verdict.intact).then(|| (verdict.first_broken_seq as i64, verdict.reason.clone()));
            report_verdict(verdict.records, broken, json)
        }
    }
}

fn report_verdict(records: u64, broken: Option<(i64, String)>, json: bool) -> Result<(), Failure> {
    if json {
        print_json(&json!({
            "intact": broken.is_none(),
            "records": records,
            "first_broken_seq": broken.as_ref().map(|b| b.0),
            "reason": broken.as_ref().map(|b| b.1.clone()),
        }));
    }
    match broken {
        None => {
            if !json {
                println!("audit chain intact: {records} records");
            }
            Ok(())
        }
        Some((seq, reason)) => Err(failed(format!("audit chain broken at record {seq}: {reason}"))),
    }
}
