//! `jmlctl import`: sends a roster file (CSV with a header row, or JSON
//! lines) to the coordinator as one batch of state submits
//! (`SubmitStates`), which derives joiners, movers, leavers and rehires.
//!
//! Columns (CSV) or keys (JSON lines, string values): `person_id` and
//! `employment_status` (`active` or `terminated`) are required;
//! `hire_date`, `termination_date` (RFC 3339 or YYYY-MM-DD) and `changed_at`
//! (RFC 3339) are optional; every other column is an attribute of the
//! person and must be one the policy's source of truth is authoritative for
//! (the coordinator refuses the whole file otherwise, and this command names
//! the line). An empty cell is an absent attribute.
//!
//! Bad input loses nothing and applies nothing: invalid UTF-8, a malformed
//! row, a duplicate person id, an unknown column: the error names the line
//! and nothing from the file is submitted, unless `--skip-invalid` (rows
//! refused are then listed and the rest is sent). A UTF-8 byte-order mark is
//! accepted and ignored.
//!
//! `--baseline` records the people the roster shows as employed today as
//! identity records (`LoadIdentities`, role `admin`) and provisions nothing:
//! for a first run on directories and apps that already hold their
//! accounts, so that reconciliation correlates them and the next roster
//! derives only what changed. A row is employed when its status is `active`,
//! its hire date (if any) is not in the future and its termination date (if
//! any) is; other rows are counted and not recorded. `--full` is refused
//! with it (a baseline says nothing about who left).
//!
//! Exit codes: as every command, plus [`HELD`] when the mass-change guard
//! held the batch (nothing applied; `jmlctl held` lists it).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::{Client, connect, with_principal};
use crate::failure::{Failure, bad_input, from_send_status, from_status};
use crate::print_json;

/// The exit code for "held by the mass-change guard; nothing applied".
pub const HELD: u8 = 6;
/// Records per streamed chunk.
const CHUNK: usize = 2000;
/// Rows of each kind a dry run prints.
const PREVIEW: usize = 5;

/// `jmlctl import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The roster: CSV with a header row, or JSON lines (`.jsonl`, `.ndjson`,
    /// or a first character `{`).
    #[arg(long, short)]
    file: PathBuf,
    /// The source system the roster comes from (the policy's source of truth).
    #[arg(long)]
    source: String,
    /// A full snapshot: every person the coordinator knows as active and the
    /// file does not name has left.
    #[arg(long)]
    full: bool,
    /// Print the joiners, movers, leavers and unchanged counts and the first
    /// rows of each; submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Skip rows that are invalid (listed in the summary) instead of refusing
    /// the whole file.
    #[arg(long)]
    skip_invalid: bool,
    /// Record the people employed today as identity records without
    /// provisioning anything (admin), for a first run on existing accounts.
    #[arg(long, conflicts_with = "full")]
    baseline: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// One parsed row: its line in the file and the record it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The 1-based line the row starts on.
    pub line: usize,
    /// The record.
    pub record: pb::PersonRecord,
}

/// A row refused by the parser (or the coordinator), with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The 1-based line.
    pub line: usize,
    /// Why.
    pub message: String,
}

/// A parsed file: the rows, and what was refused.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Valid rows, in file order.
    pub rows: Vec<Row>,
    /// Invalid rows.
    pub refused: Vec<Refused>,
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Decodes the file: UTF-8 (a leading byte-order mark dropped), else an
/// error naming the line of the first invalid byte.
pub fn decode(bytes: &[u8]) -> Result<&str, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        format!("line {}: not valid UTF-8 (byte {})", line_of(bytes, e.valid_up_to()), e.valid_up_to() + 1)
    })
}

fn record_from(fields: Vec<(String, String)>, source: &str) -> Result<pb::PersonRecord, String> {
    let mut record = pb::PersonRecord { source_system: source.to_owned(), ..Default::default() };
    for (name, value) in fields {
        match name.as_str() {
            "person_id" => record.person_id = value,
            "employment_status" => record.employment_status = value,
            "hire_date" => record.hire_date = value,
            "termination_date" => record.termination_date = value,
            "changed_at" => record.changed_at = value,
            _ if value.is_empty() => {}
            _ => {
                record.attributes.insert(name, value);
            }
        }
    }
    if record.person_id.is_empty() {
        return Err("person_id: is empty".into());
    }
    if record.employment_status.is_empty() {
        return Err("employment_status: is empty (active or terminated)".into());
    }
    Ok(record)
}

fn check_header(names: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !coordinator::event::valid_attribute_name(name) {
            return Err(format!("column {name:?}: not a valid attribute name (letters, digits, _-.)"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("column {name:?}: appears twice"));
        }
    }
    for required in ["person_id", "employment_status"] {
        if !seen.contains(required) {
            return Err(format!("column {required:?}: is required"));
        }
    }
    Ok(())
}

fn parse_csv(text: &str, source: &str, parsed: &mut Parsed) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| format!("line 1: header: {e}"))?.iter().map(|h| h.trim().to_owned()).collect();
    check_header(&header).map_err(|e| format!("line 1: {e}"))?;
    for result in reader.records() {
        match result {
            Ok(row) => {
                let line = row.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                let fields = header.iter().cloned().zip(row.iter().map(str::to_owned)).collect();
                match record_from(fields, source) {
                    Ok(record) => parsed.rows.push(Row { line, record }),
                    Err(message) => parsed.refused.push(Refused { line, message }),
                }
            }
            Err(error) => {
                let line = error.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                let message = match error.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("malformed row: {len} fields, the header has {expected_len}")
                    }
                    _ => format!("malformed row: {error}"),
                };
                parsed.refused.push(Refused { line, message });
            }
        }
    }
    Ok(())
}

fn parse_json_lines(text: &str, source: &str, parsed: &mut Parsed) {
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                parsed.refused.push(Refused { line, message: "malformed row: not a JSON object".into() });
                continue;
            }
            Err(e) => {
                parsed.refused.push(Refused { line, message: format!("malformed row: {e}") });
                continue;
            }
        };
        let mut fields = Vec::with_capacity(object.len());
        let mut problem = None;
        for (name, value) in object {
            if !coordinator::event::valid_attribute_name(&name) {
                problem = Some(format!("key {name:?}: not a valid attribute name"));
                break;
            }
            match value {
                Value::String(text) => fields.push((name, text)),
                Value::Null => {}
                _ => {
                    problem = Some(format!("key {name:?}: values must be strings"));
                    break;
                }
            }
        }
        match problem.map_or_else(|| record_from(fields, source), Err) {
            Ok(record) => parsed.rows.push(Row { line, record }),
            Err(message) => parsed.refused.push(Refused { line, message }),
        }
    }
}

/// Parses a roster: CSV, or JSON lines when `json_lines`. Duplicate person
/// ids are refused on every line after the first. An error here (invalid
/// UTF-8, a bad header) refuses the whole file.
pub fn parse(bytes: &[u8], json_lines: bool, source: &str) -> Result<Parsed, String> {
    let text = decode(bytes)?;
    let mut parsed = Parsed::default();
    if json_lines {
        parse_json_lines(text, source, &mut parsed);
    } else {
        parse_csv(text, source, &mut parsed)?;
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(parsed.rows.len());
    for row in std::mem::take(&mut parsed.rows) {
        match first.get(&row.record.person_id) {
            Some(line) => parsed.refused.push(Refused {
                line: row.line,
                message: format!(
                    "duplicate person_id {:?} (first on line {line})",
                    connector_kit::validate::printable(&row.record.person_id)
                ),
            }),
            None => {
                first.insert(row.record.person_id.clone(), row.line);
                rows.push(row);
            }
        }
    }
    parsed.rows = rows;
    parsed.refused.sort_by_key(|r| r.line);
    Ok(parsed)
}

fn is_json_lines(file: &std::path::Path, bytes: &[u8]) -> bool {
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    if extension == "jsonl" || extension == "ndjson" {
        return true;
    }
    if extension == "csv" {
        return false;
    }
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes).iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The index `N` of a coordinator refusal naming `records[N]`.
fn refused_index(message: &str) -> Option<usize> {
    refused_index_of(message, "records[")
}

/// The index `N` of a coordinator refusal naming `{field}N]`.
fn refused_index_of(message: &str, field: &str) -> Option<usize> {
    let start = message.find(field)? + field.len();
    let end = message[start..].find(']')? + start;
    message[start..end].parse().ok()
}

fn kind_label(kind: i32) -> &'static str {
    match pb::EventKind::try_from(kind) {
        Ok(pb::EventKind::Joiner) => "joiner",
        Ok(pb::EventKind::Mover) => "mover",
        Ok(pb::EventKind::Leaver) => "leaver",
        Ok(pb::EventKind::Rehire) => "rehire",
        _ => "-",
    }
}

fn outcome_label(outcome: i32) -> String {
    pb::StateOutcome::try_from(outcome)
        .map(|o| o.as_str_name().trim_start_matches("STATE_OUTCOME_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

fn progress(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

async fn send(
    client: Client,
    principal: &Option<String>,
    args: &ImportArgs,
    rows: &[Row],
) -> Result<pb::SubmitStatesResponse, tonic::Status> {
    let mut client = client.max_decoding_message_size(256 << 20);
    let bar = progress(rows.len());
    let mut chunks = Vec::with_capacity(rows.len() / CHUNK + 1);
    for (index, chunk) in rows.chunks(CHUNK).enumerate() {
        let mut request =
            pb::SubmitStatesRequest { records: chunk.iter().map(|r| r.record.clone()).collect(), ..Default::default() };
        if index == 0 {
            request.full_snapshot = args.full;
            request.dry_run = args.dry_run;
            request.source_system = args.source.clone();
            request.label = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        }
        chunks.push(request);
    }
    if chunks.is_empty() {
        chunks.push(pb::SubmitStatesRequest {
            full_snapshot: args.full,
            dry_run: args.dry_run,
            source_system: args.source.clone(),
            ..Default::default()
        });
    }
    let sent_bar = bar.clone();
    let stream = tokio_stream::iter(chunks.into_iter().inspect(move |chunk| {
        if let Some(bar) = &sent_bar {
            bar.inc(chunk.records.len() as u64);
            bar.set_message("sent");
        }
    }));
    let request = with_principal(stream, principal).map_err(|f| tonic::Status::invalid_argument(f.message))?;
    let result = client.submit_states(request).await.map(tonic::Response::into_inner);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Runs `jmlctl import`.
pub async fn run(coordinator: &str, principal: &Option<String>, args: ImportArgs) -> Result<(), Failure> {
    let bytes = std::fs::read(&args.file).map_err(|e| bad_input(format!("{}: {e}", args.file.display())))?;
    let json_lines = is_json_lines(&args.file, &bytes);
    let name = args.file.display().to_string();
    let mut parsed = parse(&bytes, json_lines, &args.source).map_err(|e| bad_input(format!("{name}: {e}")))?;
    if !parsed.refused.is_empty() && !args.skip_invalid {
        let first = &parsed.refused[0];
        return Err(bad_input(format!(
            "{name}: line {}: {} ({} invalid row(s); nothing submitted; --skip-invalid sends the rest)",
            first.line,
            first.message,
            parsed.refused.len()
        )));
    }
    if args.baseline {
        return baseline(coordinator, &args, parsed, &name).await;
    }
    // The coordinator validates every record before it writes anything; a
    // refusal names `records[N]`, which is a line of this file.
    let client = connect(coordinator).await?;
    let response = loop {
        match send(client.clone(), principal, &args, &parsed.rows).await {
            Ok(response) => break response,
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                let Some(index) = refused_index(status.message()).filter(|i| *i < parsed.rows.len()) else {
                    return Err(from_status(status));
                };
                let row = parsed.rows.remove(index);
                let message = status.message().to_owned();
                if !args.skip_invalid {
                    return Err(bad_input(format!(
                        "{name}: line {}: refused by the coordinator: {message}; nothing submitted",
                        row.line
                    )));
                }
                parsed.refused.push(Refused { line: row.line, message });
            }
            Err(status) => return Err(from_send_status(status)),
        }
    };
    report(&args, &parsed, &response);
    if response.held.is_some() && !args.dry_run {
        return Err(Failure {
            code: HELD,
            message: "held by the mass-change guard: nothing applied until an admin approves (jmlctl held)".into(),
        });
    }
    Ok(())
}

/// Whether a row shows the person employed at `now` (Unix ms).
fn employed(record: &pb::PersonRecord, now: i64) -> Result<bool, String> {
    use coordinator::ingest::state::{Employment, map_status, parse_date};
    let date = |field: &str, text: &str| {
        if text.is_empty() { Ok(None) } else { parse_date(text).map(Some).map_err(|e| format!("{field}: {e}")) }
    };
    let status = map_status(&record.employment_status.trim().to_ascii_lowercase())
        .map_err(|e| format!("employment_status: {e}"))?;
    let hired = date("hire_date", &record.hire_date)?;
    let ends = date("termination_date", &record.termination_date)?;
    Ok(status == Employment::Active && hired.is_none_or(|at| at <= now) && ends.is_none_or(|at| at > now))
}

/// `jmlctl import --baseline`: the employed rows become identity records.
async fn baseline(coordinator: &str, args: &ImportArgs, mut parsed: Parsed, name: &str) -> Result<(), Failure> {
    let now = coordinator::event::now_ms();
    let mut records = Vec::with_capacity(parsed.rows.len());
    let mut lines = Vec::with_capacity(parsed.rows.len());
    let mut not_employed = 0usize;
    for row in &parsed.rows {
        match employed(&row.record, now) {
            Ok(true) => {
                records.push(pb::IdentityRecord {
                    person_id: row.record.person_id.clone(),
                    attributes: row.record.attributes.clone(),
                    source_system: row.record.source_system.clone(),
                });
                lines.push(row.line);
            }
            Ok(false) => not_employed += 1,
            Err(message) => parsed.refused.push(Refused { line: row.line, message }),
        }
    }
    parsed.refused.sort_by_key(|r| r.line);
    if let Some(first) = parsed.refused.first()
        && !args.skip_invalid
    {
        return Err(bad_input(format!(
            "{name}: line {}: {} ({} invalid row(s); nothing recorded; --skip-invalid records the rest)",
            first.line,
            first.message,
            parsed.refused.len()
        )));
    }
    let (loaded, unchanged) = if args.dry_run || records.is_empty() {
        (0, 0)
    } else {
        let client = connect(coordinator).await?;
        crate::identities::load(client, &records).await.map_err(|(offset, status)| {
            let mut failure = from_status(status);
            if let Some(index) = refused_index_of(&failure.message, "identities[") {
                let line = lines.get(offset + index).copied().unwrap_or_default();
                failure.message = format!("{name}: line {line}: refused by the coordinator: {}", failure.message);
            }
            if offset > 0 {
                failure
                    .message
                    .push_str(&format!(" ({offset} records before it were recorded; recording them again is safe)"));
            } else {
                failure.message.push_str(" (nothing recorded)");
            }
            failure
        })?
    };
    if args.json {
        print_json(&json!({
            "file": args.file.display().to_string(),
            "baseline": true,
            "dry_run": args.dry_run,
            "rows": parsed.rows.len(),
            "employed": records.len(),
            "not_employed": not_employed,
            "loaded": loaded,
            "unchanged": unchanged,
            "skipped": parsed.refused.iter().map(|r| json!({ "line": r.line, "message": r.message })).collect::<Vec<_>>(),
        }));
    } else if args.dry_run {
        println!(
            "dry run (nothing recorded): {} rows: {} employed would be recorded, {not_employed} not employed",
            parsed.rows.len(),
            records.len()
        );
    } else {
        println!(
            "baseline: {} rows: {} employed ({loaded} recorded, {unchanged} unchanged), {not_employed} not employed \
             (not recorded); nothing provisioned",
            parsed.rows.len(),
            records.len()
        );
    }
    for refused in &parsed.refused {
        println!("  skipped   line {}: {}", refused.line, refused.message);
    }
    Ok(())
}

fn report(args: &ImportArgs, parsed: &Parsed, response: &pb::SubmitStatesResponse) {
    let counts = response.counts.unwrap_or_default();
    let line_of: HashMap<&str, usize> = parsed.rows.iter().map(|r| (r.record.person_id.as_str(), r.line)).collect();
    if args.json {
        let receipts: Vec<Value> = response
            .receipts
            .iter()
            .map(|r| {
                json!({
                    "person_id": r.person_id, "line": line_of.get(r.person_id.as_str()),
                    "outcome": outcome_label(r.outcome), "kind": kind_label(r.kind), "event_id": r.event_id,
                    "effective_at": r.effective_at, "reason": r.reason,
                })
            })
            .collect();
        print_json(&json!({
            "file": args.file.display().to_string(),
            "dry_run": args.dry_run,
            "full_snapshot": args.full,
            "rows": parsed.rows.len(),
            "counts": {
                "joiners": counts.joiners, "movers": counts.movers, "leavers": counts.leavers,
                "rehires": counts.rehires, "unchanged": counts.unchanged, "duplicates": counts.duplicates,
                "stale": counts.stale, "ignored": counts.ignored,
            },
            "held": response.held.as_ref().map(|h| json!({
                "batch_id": h.batch_id, "leavers": h.leavers, "population": h.population, "limit": h.limit,
            })),
            "skipped": parsed.refused.iter().map(|r| json!({ "line": r.line, "message": r.message })).collect::<Vec<_>>(),
            "receipts": receipts,
        }));
        return;
    }
    println!(
        "{}{} rows: {} joiners, {} movers, {} leavers, {} rehires, {} unchanged, {} duplicates, {} stale, {} ignored",
        if args.dry_run { "dry run (nothing submitted): " } else { "" },
        parsed.rows.len(),
        counts.joiners,
        counts.movers,
        counts.leavers,
        counts.rehires,
        counts.unchanged,
        counts.duplicates,
        counts.stale,
        counts.ignored
    );
    let mut by_kind: BTreeMap<&str, Vec<&pb::StateReceipt>> = BTreeMap::new();
    for receipt in &response.receipts {
        let label = match pb::StateOutcome::try_from(receipt.outcome) {
            Ok(pb::StateOutcome::Stale) => "stale",
            Ok(pb::StateOutcome::Duplicate) => "duplicate",
            _ => kind_label(receipt.kind),
        };
        by_kind.entry(label).or_default().push(receipt);
    }
    for (kind, receipts) in &by_kind {
        let shown = if args.dry_run { PREVIEW } else { receipts.len().min(20) };
        for receipt in receipts.iter().take(shown) {
            let line = line_of.get(receipt.person_id.as_str()).map_or("missing".to_owned(), |l| format!("line {l}"));
            println!(
                "  {kind:<9} {:<24} {:<12} {} {}",
                receipt.person_id,
                line,
                receipt.event_id,
                if receipt.effective_at.is_empty() {
                    String::new()
                } else {
                    format!("effective {}", receipt.effective_at)
                }
            );
        }
        if receipts.len() > shown {
            println!("  {kind:<9} ... and {} more", receipts.len() - shown);
        }
    }
    for refused in &parsed.refused {
        println!("  skipped   line {}: {}", refused.line, refused.message);
    }
    if let Some(held) = &response.held {
        println!(
            "HELD by the mass-change guard: batch {} would make {} leavers ({} active, limit {}); nothing applied. \
             An admin other than the submitter approves with: jmlctl held approve {}",
            held.batch_id, held.leavers, held.population, held.limit, held.batch_id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_bom_and_lines() {
        let file = b"\xEF\xBB\xBFperson_id,employment_status,department,hire_date\nP1,active,Sales,2026-01-01\nP2,terminated,,\n";
        let parsed = parse(file, false, "workday").expect("parses");
        assert!(parsed.refused.is_empty(), "{:?}", parsed.refused);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].line, 2);
        assert_eq!(parsed.rows[0].record.attributes.get("department").map(String::as_str), Some("Sales"));
        assert!(parsed.rows[1].record.attributes.is_empty());
        assert_eq!(parsed.rows[1].line, 3);
    }

    #[test]
    fn malformed_rows_and_duplicates_name_their_line() {
        let file = b"person_id,employment_status\nP1,active\nP2,active,extra\nP1,active\n,active\n";
        let parsed = parse(file, false, "workday").expect("parses");
        assert_eq!(parsed.rows.len(), 1);
        let lines: Vec<usize> = parsed.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5], "{:?}", parsed.refused);
        assert!(parsed.refused[0].message.contains("malformed"));
        assert!(parsed.refused[1].message.contains("duplicate person_id"));
    }

    #[test]
    fn whole_file_errors() {
        let error = parse(b"person_id,employment_status\nP1,act\xFFive\n", false, "workday").expect_err("utf-8");
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(parse(b"person_id,person_id,employment_status\n", false, "w").expect_err("dup").contains("twice"));
        assert!(parse(b"person_id,dept name\n", false, "w").expect_err("name").contains("dept name"));
        assert!(parse(b"person_id,department\n", false, "w").expect_err("status").contains("employment_status"));
    }

    #[test]
    fn json_lines() {
        let file = b"{\"person_id\":\"P1\",\"employment_status\":\"active\",\"department\":\"Sales\"}\n\n{\"person_id\":\"P2\",\"employment_status\":1}\nnot json\n";
        let parsed = parse(file, true, "workday").expect("parses");
        assert_eq!(parsed.rows.len(), 1);
        let lines: Vec<usize> = parsed.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert_eq!(refused_index("records[12] (\"P1\") record.x: bad"), Some(12));
    }
}
