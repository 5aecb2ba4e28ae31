//! `jmlctl reconcile`: runs reconciliation on the coordinator and shows its
//! progress (a progress line on a terminal) and its reports.
//!
//! `--json` prints one JSON array of the per-target reports (nothing else on
//! stdout). Exit code 4 when any target shows drift (0 when every target is
//! clean; 1, 2, 3 as for every command).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use jml_contract::v1 as pb;
use serde_json::Value;

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
}

/// Runs the RPC, drives the progress line, prints the reports.
pub async fn run<S>(
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
