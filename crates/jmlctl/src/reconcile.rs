//! `jmlctl reconcile`: runs reconciliation on the coordinator and shows its
//! progress (a progress line on a terminal) and its reports.
//!
//! `--json` prints one JSON array of the per-target reports (nothing else on
//! stdout). Exit code 4 when any target shows drift (0 when every target is
//! clean; 1, 2, 3 as for every command).
//!
//! Accounts without a correlation key are shown by situation (unlinked,
//! unmatched, disputed, foreign key), privileged first; `--link` links the
//! unlinked ones, `--link-from REPORT` those a saved `--json` report shows.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use jml_contract::v1 as pb;
use serde_json::Value;

use crate::connection::connect;
use crate::failure::{Failure, bad_input, from_status};

/// The exit code for "reconciliation found drift".
pub const DRIFT_FOUND: u8 = 4;

/// What the run found, for the exit code.
pub struct Outcome {
    /// Whether any target showed drift.
    pub drift_found: bool,
}

fn progress_bar(enabled: bool) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn print_report(report: &Value) {
    let target = text(report, "target_id");
    let clean = report.get("clean").and_then(Value::as_bool).unwrap_or(false);
    let counts = report.get("counts").cloned().unwrap_or(Value::Null);
    println!(
        "target {target}: {} ({} accounts listed, {} expected; action {}; run {})",
        if clean { "clean" } else { "DRIFT" },
        text(&counts, "accounts_listed"),
        text(&counts, "accounts_expected"),
        text(report, "action"),
        text(report, "run_id"),
    );
    if let Some(refused) = report.get("remediation_refused").and_then(Value::as_str) {
        println!("  remediation not done: {refused}");
    }
    if let Some(by_class) = counts.get("by_class").and_then(Value::as_object) {
        let nonzero: Vec<String> = by_class
            .iter()
            .filter(|(_, count)| count.as_u64().unwrap_or(0) > 0)
            .map(|(class, count)| format!("{class} {count}"))
            .collect();
        if !nonzero.is_empty() {
            println!("  {}", nonzero.join(", "));
        }
    }
    for drift in report.get("drift").and_then(Value::as_array).into_iter().flatten() {
        println!(
            "  {:<8} {:<20} {} ({}): {}",
            text(drift, "severity"),
            text(drift, "class"),
            text(drift, "account_name"),
            text(drift, "person_id"),
            text(drift, "detail"),
        );
    }
    for remediation in report.get("remediations").and_then(Value::as_array).into_iter().flatten() {
        let waiting = remediation.get("awaiting_approval").and_then(Value::as_bool).unwrap_or(false);
        println!(
            "  remediation {} for {}{} (see: jmlctl evidence {})",
            text(remediation, "event_id"),
            text(remediation, "account_name"),
            if waiting { ", awaiting approval" } else { "" },
            text(remediation, "event_id"),
        );
    }
    for line in report.get("unplanned").and_then(Value::as_array).into_iter().flatten() {
        println!("  not planned: {}", line.as_str().unwrap_or_default());
    }
    print_correlation(report);
}

fn print_correlation(report: &Value) {
    let Some(correlation) = report.get("correlation") else { return };
    if let Some(counts) = correlation.pointer("/counts/by_situation").and_then(Value::as_object) {
        let all: Vec<String> = counts.iter().map(|(situation, count)| format!("{situation} {count}")).collect();
        println!("  accounts by situation: {}", all.join(", "));
    }
    for finding in correlation.get("findings").and_then(Value::as_array).into_iter().flatten() {
        let privileged = finding.get("privileged").and_then(Value::as_bool).unwrap_or(false);
        let person = match text(finding, "situation").as_str() {
            "disputed" => format!(
                "persons {}",
                finding.get("candidates").and_then(Value::as_array).map_or(String::new(), |c| c
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
            ),
            _ => text(finding, "person_id"),
        };
        let rule = finding.get("rule").and_then(Value::as_str).map(|r| format!(" by {r}")).unwrap_or_default();
        println!(
            "  {:<11} {}{} ({person}){rule}",
            text(finding, "situation"),
            text(finding, "account_name"),
            if privileged { " [privileged]" } else { "" },
        );
    }
    for link in correlation.get("links").and_then(Value::as_array).into_iter().flatten() {
        let event = link.get("convergence_event_id").and_then(Value::as_str);
        println!(
            "  link {} -> {}: {}{}{}",
            text(link, "account_name"),
            text(link, "person_id"),
            text(link, "outcome"),
            link.get("error").and_then(Value::as_str).map(|e| format!(" ({e})")).unwrap_or_default(),
            event.map(|e| format!("; converging: jmlctl evidence {e}")).unwrap_or_default(),
        );
    }
}

/// The links a saved `jmlctl reconcile --json` report asks for: every
/// unlinked account, with the fingerprint the report saw.
pub fn links_from_report(path: &std::path::Path) -> Result<Vec<pb::AccountLink>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reports: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a `reconcile --json` report: {e}", path.display()))?;
    let reports = reports.as_array().ok_or_else(|| format!("{}: expected a JSON array of reports", path.display()))?;
    let mut links = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let target_id = report
            .get("target_id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: report [{index}] has no target_id", path.display()))?;
        for finding in report.pointer("/correlation/findings").and_then(Value::as_array).into_iter().flatten() {
            if finding.get("situation").and_then(Value::as_str) != Some("unlinked") {
                continue;
            }
            let field = |name: &str| finding.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            links.push(pb::AccountLink {
                target_id: target_id.to_owned(),
                account_name: field("account_name"),
                person_id: field("person_id"),
                fingerprint: field("fingerprint"),
            });
        }
    }
    if links.is_empty() {
        return Err(format!("{}: the report shows no unlinked account", path.display()));
    }
    Ok(links)
}

/// Runs the RPC, drives the progress line, prints the reports.
pub async fn follow<S>(
    mut stream: tonic::Streaming<pb::ReconcileProgress>,
    json: bool,
    on_status: impl Fn(tonic::Status) -> S,
) -> Result<Outcome, S> {
    let bar = progress_bar(!json);
    let mut reports: Vec<Value> = Vec::new();
    let mut drift_found = false;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Err(on_status(status));
            }
        };
        if message.phase == "report" {
            drift_found |= message.drift_found;
            let report: Value = serde_json::from_str(&message.report_json).unwrap_or(Value::Null);
            match &bar {
                Some(bar) => bar.suspend(|| {
                    if !json {
                        print_report(&report);
                    }
                }),
                None if !json => print_report(&report),
                None => {}
            }
            reports.push(report);
        } else if let Some(bar) = &bar {
            let what = if message.phase == "listing" { "accounts listed" } else { "identity records checked" };
            bar.set_message(format!("{}: {} {what}", message.target_id, message.done));
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(reports)).unwrap_or_default());
    }
    Ok(Outcome { drift_found })
}

// `jmlctl reconcile` (its help text is the variant's, in main.rs).
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// One target (default: every target of the policy).
    #[arg(long)]
    target: Option<String>,
    /// Push the expected state back where the target's policy allows.
    #[arg(long)]
    remediate: bool,
    /// Only people whose person id starts with this.
    #[arg(long, default_value = "")]
    person_prefix: String,
    /// Print the reports as JSON (no progress line).
    #[arg(long)]
    json: bool,
    /// Link every unlinked account found (admin): the connector writes
    /// the key, it is read back, and the account converges to the plan.
    #[arg(long)]
    link: bool,
    /// Link the unlinked accounts a saved `--json` report shows, as it
    /// showed them (an account changed since is refused).
    #[arg(long, value_name = "REPORT")]
    link_from: Option<std::path::PathBuf>,
    /// Only accounts without a key whose name starts with this.
    #[arg(long, default_value = "")]
    account_prefix: String,
}

/// `jmlctl reconcile`: exit 4 when drift is found.
pub async fn run(coordinator: &str, args: ReconcileArgs) -> Result<(), Failure> {
    let ReconcileArgs { target, remediate, person_prefix, json, link, link_from, account_prefix } = args;
    let links = match &link_from {
        Some(path) => links_from_report(path).map_err(bad_input)?,
        None => Vec::new(),
    };
    let mut client = connect(coordinator).await?;
    let request = pb::ReconcileRequest {
        target_id: target.unwrap_or_default(),
        remediate,
        person_id_prefix: person_prefix,
        link_unlinked: link,
        links,
        account_name_prefix: account_prefix,
    };
    let stream = client.reconcile(request).await.map_err(from_status)?.into_inner();
    let outcome = follow(stream, json, from_status).await?;
    if outcome.drift_found {
        return Err(Failure { code: DRIFT_FOUND, message: "drift found".into() });
    }
    Ok(())
}
