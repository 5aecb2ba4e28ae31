//! `jmlctl report controls --input`: a saved control report rendered
//! offline as HTML an auditor can open, every value escaped.

use std::process::Command;

fn jmlctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jmlctl")).args(args).output().expect("jmlctl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_saved_report_renders_as_escaped_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let report = serde_json::json!({
        "period": { "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z" },
        "audit": { "intact": true, "records_checked": 7, "head_seq_at_to": 7, "head_hash_at_to": "ab12", "records_in_period": 7 },
        "controls": {
            "PR.AA-01": { "title": "PR.AA-01", "summary": { "events": 1 }, "events": [{
                "event_id": "e1", "kind": "leaver", "person_id": "<script>alert(1)</script>", "initiator": "hr",
                "workflows": [], "approvals": [],
                "targets": [{ "target_id": "payroll", "outcome": "awaiting_fulfilment", "within_deadline": false, "audit_seqs": [1, 2] }]
            }]},
            "PR.AC-4": { "title": "PR.AC-4", "summary": { "leavers": 1 }, "leavers_not_revoked_in_time": [{
                "event_id": "e1", "person_id": "p", "target_id": "payroll", "why": "awaiting fulfilment: ticket 4 (open)", "audit_seqs": [1]
            }], "campaigns": [] },
            "NHI-03": { "title": "NHI-03", "summary": {}, "non_human_identities_of_leavers": [], "stale_accounts_per_target": [] }
        },
        "manual_targets": [{ "event_id": "e1", "target_id": "payroll", "ticket": { "id": "4" }, "outcome": "awaiting_fulfilment", "attestation": null }]
    });
    std::fs::write(&input, report.to_string()).expect("write");
    let (code, stdout, stderr) = jmlctl(&[
        "report",
        "controls",
        "--input",
        input.to_str().expect("path"),
        "--html",
        html.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("audit chain: intact"), "{stdout}");
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("awaiting fulfilment: ticket 4 (open)"));

    let (code, _, stderr) =
        jmlctl(&["report", "controls", "--input", input.to_str().expect("path"), "--to", "2026-12-03T00:00:00Z"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) =
        jmlctl(&["report", "controls", "--input", dir.path().join("missing.json").to_str().expect("path")]);
    assert_eq!(code, 2);
}
