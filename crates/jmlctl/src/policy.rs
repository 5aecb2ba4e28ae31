//! `jmlctl policy check`: checks a policy file offline and prints every
//! error with its path; `--live` also checks it against each target
//! connector's `Describe`.

use std::path::PathBuf;

use serde_json::json;

use crate::failure::{Failure, bad_input, failed};
use crate::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file; print every error with its path.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Also call Describe on every target's connector (with the policy's
        /// endpoints and TLS) and refuse what a connector does not declare.
        #[arg(long)]
        live: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `jmlctl policy ...`.
pub async fn run(command: PolicyCommand) -> Result<(), Failure> {
    let PolicyCommand::Check { file, live, json } = command;
    match coordinator::Policy::load(&file) {
        Ok(policy) => {
            let issues = if live { live_issues(&policy).await } else { Vec::new() };
            if !issues.is_empty() {
                report_policy_issues(&file, &issues, json);
                return Err(failed(format!(
                    "{}: {} error(s) against the live connectors",
                    file.display(),
                    issues.len()
                )));
            }
            if json {
                print_json(&json!({ "valid": true, "policy_hash": policy.hash, "errors": [] }));
            } else {
                println!(
                    "{}: valid ({} targets, {} workflows), policy hash {}",
                    file.display(),
                    policy.file.targets.len(),
                    policy.file.workflows.len(),
                    policy.hash
                );
            }
            Ok(())
        }
        Err(coordinator::PolicyError::Invalid(issues)) => {
            report_policy_issues(&file, &issues, json);
            Err(failed(format!("{}: {} error(s)", file.display(), issues.len())))
        }
        Err(error) => Err(bad_input(error.to_string())),
    }
}

/// The policy against every connector it names (one Describe each).
async fn live_issues(policy: &coordinator::Policy) -> Vec<coordinator::policy::PolicyIssue> {
    let timeout = std::time::Duration::from_secs(10);
    coordinator::live_check::check_live(policy, timeout, std::time::Duration::ZERO).await
}

fn report_policy_issues(file: &std::path::Path, issues: &[coordinator::policy::PolicyIssue], json: bool) {
    if json {
        print_json(&json!({
            "valid": false,
            "errors": issues.iter().map(|i| json!({ "path": i.path, "message": i.message })).collect::<Vec<_>>(),
        }));
    } else {
        for issue in issues {
            println!("{}: {issue}", file.display());
        }
    }
}
