//! `jmlctl report controls --from T --to T [--json] [--html FILE]`: the
//! control evidence report (NIST CSF 2.0 PR.AA-01, PR.AC-4, OWASP NHI-03 as
//! the project maps it), computed by the coordinator from the audit chain.
//! `--json` prints the report; `--html FILE` also writes a self-contained
//! page an auditor can open (no script, no external resource).

use std::path::PathBuf;

use clap::Subcommand;
use jml_contract::v1 as pb;
use serde_json::Value;

use crate::connection::{connect, with_principal};
use crate::failure::{Failure, bad_input, failed, from_status};
use crate::print_json;

/// The `report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The control evidence report for a period.
    Controls {
        /// Start of the period (RFC 3339, inclusive).
        #[arg(long, required_unless_present = "input")]
        from: Option<String>,
        /// End of the period (RFC 3339, exclusive; default now).
        #[arg(long, default_value = "")]
        to: String,
        /// Render a report saved earlier with `--json` (offline: the
        /// coordinator is not called; `--from`/`--to` are refused with it).
        #[arg(long, conflicts_with_all = ["from"])]
        input: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as an HTML page to this file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

/// Runs one `report` subcommand.
pub async fn run(coordinator: &str, principal: &Option<String>, command: ReportCommand) -> Result<(), Failure> {
    let ReportCommand::Controls { from, to, input, json, html } = command;
    let text = match (input, from) {
        (Some(path), _) => {
            if !to.is_empty() {
                return Err(bad_input("--to does not apply to --input"));
            }
            std::fs::read_to_string(&path).map_err(|e| bad_input(format!("{}: {e}", path.display())))?
        }
        (None, from) => {
            let mut client = connect(coordinator).await?;
            let request = pb::ControlReportRequest { from: from.unwrap_or_default(), to };
            client.control_report(with_principal(request, principal)?).await.map_err(from_status)?.into_inner().json
        }
    };
    let report: Value = serde_json::from_str(&text).map_err(|e| failed(format!("the report is not JSON: {e}")))?;
    if let Some(path) = html {
        std::fs::write(&path, render_html(&report)).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        if !json {
            println!("wrote {}", path.display());
        }
    }
    if json {
        print_json(&report);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn print_summary(report: &Value) {
    println!("control evidence {} .. {}", text(&report["period"]["from"]), text(&report["period"]["to"]));
    let audit = &report["audit"];
    println!(
        "audit chain: {} ({} records checked), head at end of period seq {} hash {}",
        if audit["intact"] == true { "intact" } else { "BROKEN" },
        text(&audit["records_checked"]),
        text(&audit["head_seq_at_to"]),
        text(&audit["head_hash_at_to"])
    );
    if let Some(controls) = report["controls"].as_object() {
        for (name, control) in controls {
            let summary: Vec<String> = control["summary"]
                .as_object()
                .map(|s| s.iter().map(|(k, v)| format!("{k} {}", text(v))).collect())
                .unwrap_or_default();
            println!("{name}: {}", summary.join(", "));
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell(value: &Value) -> String {
    format!("<td>{}</td>", escape(&text(value)))
}

fn table(headers: &[&str], rows: Vec<String>) -> String {
    if rows.is_empty() {
        return "<p class=\"none\">None in this period.</p>".into();
    }
    let head: String = headers.iter().map(|h| format!("<th>{}</th>", escape(h))).collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{}</tbody></table>", rows.join(""))
}

fn summary(control: &Value) -> String {
    let items: String = control["summary"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(k, v)| {
                    format!(
                        "<div class=\"figure\"><b>{}</b><span>{}</span></div>",
                        escape(&text(v)),
                        escape(&k.replace('_', " "))
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("<div class=\"figures\">{items}</div>")
}

fn seqs(value: &Value) -> String {
    value.as_array().map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// The report as a self-contained HTML page.
pub fn render_html(report: &Value) -> String {
    let controls = &report["controls"];
    let audit = &report["audit"];
    let aa = &controls["PR.AA-01"];
    let ac = &controls["PR.AC-4"];
    let nhi = &controls["NHI-03"];

    let mut event_rows = Vec::new();
    for event in aa["events"].as_array().cloned().unwrap_or_default() {
        let workflows: Vec<String> = event["workflows"]
            .as_array()
            .map(|w| w.iter().map(|w| format!("{} ({})", text(&w["name"]), text(&w["owner"]))).collect())
            .unwrap_or_default();
        let approvals: Vec<String> = event["approvals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|a| format!("{} {} {}", text(&a["approver"]), text(&a["decision"]), text(&a["target_id"])))
                    .collect()
            })
            .unwrap_or_default();
        for target in event["targets"].as_array().cloned().unwrap_or_default() {
            // Pending (its deadline after the period) is not late.
            let ok = target["within_deadline"] == true || target["pending"] == true;
            event_rows.push(format!(
                "<tr class=\"{}\">{}{}{}<td>{}</td>{}<td>{}</td>{}{}{}{}{}<td class=\"seq\">{}</td></tr>",
                if ok { "ok" } else { "late" },
                cell(&event["event_id"]),
                cell(&event["kind"]),
                cell(&event["person_id"]),
                escape(&if workflows.is_empty() { "-".into() } else { workflows.join(", ") }),
                cell(&event["initiator"]),
                escape(&if approvals.is_empty() { "-".into() } else { approvals.join("; ") }),
                cell(&target["target_id"]),
                cell(&target["acknowledged_at"]),
                cell(&target["outcome"]),
                cell(&target["seconds_to_outcome"]),
                cell(&target["deadline_at"]),
                seqs(&target["audit_seqs"]),
            ));
        }
    }
    let late_rows: Vec<String> = ac["leavers_not_revoked_in_time"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            format!(
                "<tr class=\"late\">{}{}{}{}{}<td class=\"seq\">{}</td></tr>",
                cell(&l["event_id"]),
                cell(&l["person_id"]),
                cell(&l["target_id"]),
                cell(&l["deadline_at"]),
                cell(&l["why"]),
                seqs(&l["audit_seqs"])
            )
        })
        .collect();
    let campaign_rows: Vec<String> = ac["campaigns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            format!(
                "<tr>{}{}{}{}{}{}{}{}<td class=\"seq\">{}</td></tr>",
                cell(&c["name"]),
                cell(&c["scope"]),
                cell(&c["deadline_at"]),
                cell(&c["items"]),
                cell(&c["kept"]),
                cell(&c["revoked"]),
                cell(&c["undecided"]),
                cell(&c["escalated"]),
                seqs(&c["audit_seqs"])
            )
        })
        .collect();
    let manual_rows: Vec<String> = report["manual_targets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            format!(
                "<tr>{}{}{}{}{}{}{}{}<td class=\"seq\">{}</td></tr>",
                cell(&m["event_id"]),
                cell(&m["target_id"]),
                cell(&m["ticket"]["id"]),
                cell(&m["outcome"]),
                cell(&m["attestation"]["fulfiller"]),
                cell(&m["attestation"]["attested_at"]),
                cell(&m["attestation"]["export_digest"]),
                cell(&m["pending_reason"]),
                seqs(&m["audit_seqs"])
            )
        })
        .collect();
    let stale_rows: Vec<String> = nhi["stale_accounts_per_target"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            format!(
                "<tr>{}{}{}{}</tr>",
                cell(&s["target_id"]),
                cell(&s["stale_accounts"]),
                cell(&s["inactive_accounts"]),
                cell(&s["at"])
            )
        })
        .collect();
    let mut nhi_rows: Vec<String> = Vec::new();
    for n in nhi["non_human_identities_of_leavers"].as_array().cloned().unwrap_or_default() {
        let Some(owned) = n["owned_identities"].as_array() else {
            // An `nhi.*` record of the chain.
            nhi_rows.push(format!(
                "<tr>{}{}<td>-</td><td colspan=\"4\">{}</td><td class=\"seq\">{}</td></tr>",
                cell(&n["event_id"]),
                cell(&n["action"]),
                escape(&n["payload"].to_string()),
                escape(&text(&n["seq"]))
            ));
            continue;
        };
        for identity in owned {
            nhi_rows.push(format!(
                "<tr>{}{}{}<td>{}:{}</td>{}{}{}<td class=\"seq\">{}</td></tr>",
                cell(&n["event_id"]),
                cell(&n["action"]),
                cell(&n["target_id"]),
                escape(&text(&identity["kind"])),
                escape(&text(&identity["id"])),
                cell(&identity["owner"]),
                cell(&identity["previous_owner"]),
                cell(&identity["enabled"]),
                escape(&text(&n["seq"]))
            ));
        }
    }

    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Control evidence {from} to {to}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; color: #1d2733; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }} h2 {{ margin-top: 1.6em; border-bottom: 2px solid #2b5d8a; padding-bottom: 0.2em; }}
.meta {{ color: #555; }} .chain {{ padding: 0.6em 1em; border-radius: 4px; }}
.intact {{ background: #e3f4e6; border: 1px solid #2f8f46; }} .broken {{ background: #fbe4e4; border: 1px solid #b22; }}
.figures {{ display: flex; gap: 1em; flex-wrap: wrap; margin: 0.8em 0; }}
.figure {{ border: 1px solid #ccd; border-radius: 4px; padding: 0.4em 0.8em; min-width: 9em; }}
.figure b {{ display: block; font-size: 1.4em; }} .figure span {{ color: #555; font-size: 0.85em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.8em; margin: 0.6em 0; }}
th, td {{ border: 1px solid #ccd; padding: 0.25em 0.4em; text-align: left; vertical-align: top; }}
th {{ background: #eef2f7; }} tr.late td {{ background: #fff3e0; }} td.seq {{ color: #777; font-family: monospace; }}
.none {{ color: #777; font-style: italic; }} code {{ word-break: break-all; }}
</style></head><body>
<h1>Control evidence report</h1>
<p class="meta">Period {from} to {to}. Every figure lists the audit-chain sequence numbers it is computed from.</p>
<div class="chain {chain_class}"><b>Audit chain {chain_state}</b>: {checked} records checked; head at the end of the period: seq {head_seq}, hash <code>{head_hash}</code>; {in_period} records in the period.</div>
<h2>{aa_title}</h2>{aa_summary}
{events}
<h2>{ac_title}</h2>{ac_summary}
<h3>Leavers not fully revoked in time, and why</h3>{late}
<h3>Recertification campaigns</h3>{campaigns}
<h2>{nhi_title}</h2>{nhi_summary}
<h3>Non-human identities owned by leavers</h3>{nhi}
<h3>Stale accounts per target (latest reconciliation in the period)</h3>{stale}
<h2>Manual targets: tickets and attestations</h2>{manual}
</body></html>
"#,
        from = escape(&text(&report["period"]["from"])),
        to = escape(&text(&report["period"]["to"])),
        chain_class = if audit["intact"] == true { "intact" } else { "broken" },
        chain_state = if audit["intact"] == true { "intact" } else { "BROKEN" },
        checked = escape(&text(&audit["records_checked"])),
        head_seq = escape(&text(&audit["head_seq_at_to"])),
        head_hash = escape(&text(&audit["head_hash_at_to"])),
        in_period = escape(&text(&audit["records_in_period"])),
        aa_title = escape(&text(&aa["title"])),
        aa_summary = summary(aa),
        events = table(
            &[
                "event",
                "kind",
                "person",
                "workflows (owner)",
                "initiator",
                "approvals",
                "target",
                "acknowledged",
                "outcome",
                "seconds",
                "deadline",
                "audit seqs"
            ],
            event_rows
        ),
        ac_title = escape(&text(&ac["title"])),
        ac_summary = summary(ac),
        late = table(&["event", "person", "target", "deadline", "why", "audit seqs"], late_rows),
        campaigns = table(
            &["campaign", "scope", "deadline", "items", "kept", "revoked", "undecided", "escalated", "audit seqs"],
            campaign_rows
        ),
        nhi_title = escape(&text(&nhi["title"])),
        nhi_summary = summary(nhi),
        nhi = table(
            &["event", "record", "target", "identity", "owner", "previous owner", "enabled", "audit seq"],
            nhi_rows
        ),
        stale = table(&["target", "stale accounts", "inactive accounts", "reconciled at"], stale_rows),
        manual = table(
            &[
                "event",
                "target",
                "ticket",
                "outcome",
                "fulfiller",
                "attested at",
                "export digest",
                "pending",
                "audit seqs"
            ],
            manual_rows
        ),
    )
}
