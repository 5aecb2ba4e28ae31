//! `jmlctl identities load --file F --source-system S`: loads the identity
//! records of people already employed as a baseline, without provisioning
//! anything (`Lifecycle.LoadIdentities`, role `admin`).
//!
//! The file is JSON lines (one object per line: `person_id` and the
//! attributes, either flat or under `attributes`) or, when it ends in
//! `.csv`, CSV (RFC 4180) with a header naming `person_id` and the
//! attribute columns; an empty CSV cell means the attribute is absent. A
//! file that does not parse is refused before anything is sent, naming the
//! line. Records go in calls of [`CHUNK`].

use std::collections::BTreeMap;
use std::path::Path;

use jml_contract::v1 as pb;
use serde_json::{Value, json};

use crate::connection::{Client, connect};
use crate::failure::{Failure, bad_input, from_status};
use crate::print_json;

/// Records per `LoadIdentities` call.
pub const CHUNK: usize = 2_000;

/// Reads the records of `path` for `source_system`.
pub fn read(path: &Path, source_system: &str) -> Result<Vec<pb::IdentityRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let rows = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        csv_records(&text)
    } else {
        json_records(&text)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    if rows.is_empty() {
        return Err(format!("{}: no identity record", path.display()));
    }
    Ok(rows
        .into_iter()
        .map(|(person_id, attributes)| pb::IdentityRecord {
            person_id,
            attributes,
            source_system: source_system.to_owned(),
        })
        .collect())
}

type Row = (String, BTreeMap<String, String>);

fn json_records(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| format!("line {number}: not JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err(format!("line {number}: expected a JSON object"));
        };
        let person_id = match object.remove("person_id") {
            Some(Value::String(id)) => id,
            _ => return Err(format!("line {number}: person_id (a string) is required")),
        };
        let fields = match object.remove("attributes") {
            Some(Value::Object(nested)) if object.is_empty() => nested,
            Some(_) => return Err(format!("line {number}: attributes must be an object, and alone beside person_id")),
            None => object,
        };
        let mut attributes = BTreeMap::new();
        for (name, value) in fields {
            match value {
                Value::String(text) => {
                    attributes.insert(name, text);
                }
                Value::Null => {}
                _ => return Err(format!("line {number}: attribute {name:?} must be a string")),
            }
        }
        rows.push((person_id, attributes));
    }
    Ok(rows)
}

/// Splits RFC 4180 CSV into records of fields (quoted fields may hold
/// commas, doubled quotes and line breaks).
fn csv_fields(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut chars = text.chars().peekable();
    let mut field_started = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if !field_started => {
                quoted = true;
                field_started = true;
            }
            (false, '"') => return Err(format!("line {line}: a quote inside an unquoted field")),
            (false, ',') => {
                record.push(std::mem::take(&mut field));
                field_started = false;
            }
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                field_started = false;
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push((start_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                start_line = line;
            }
            (false, c) => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if quoted {
        return Err(format!("line {start_line}: unterminated quoted field"));
    }
    if field_started || !record.is_empty() {
        record.push(field);
        records.push((start_line, record));
    }
    Ok(records)
}

fn csv_records(text: &str) -> Result<Vec<Row>, String> {
    let mut records = csv_fields(text)?.into_iter();
    let Some((_, header)) = records.next() else { return Ok(Vec::new()) };
    let id_column = header
        .iter()
        .position(|h| h.trim() == "person_id")
        .ok_or_else(|| "line 1: the header must name a person_id column".to_owned())?;
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() != header.len() {
            return Err(format!("line {line}: {} fields, the header has {}", fields.len(), header.len()));
        }
        let mut attributes = BTreeMap::new();
        for (index, (name, value)) in header.iter().zip(fields.iter()).enumerate() {
            if index != id_column && !value.is_empty() {
                attributes.insert(name.trim().to_owned(), value.clone());
            }
        }
        rows.push((fields[id_column].clone(), attributes));
    }
    Ok(rows)
}

#[derive(Debug, clap::Subcommand)]
pub enum IdentitiesCommand {
    /// Load identity records of people already employed without
    /// provisioning anything (admin): JSON lines, or CSV when the file ends
    /// in .csv, with a person_id column.
    Load {
        /// The file.
        #[arg(long)]
        file: std::path::PathBuf,
        /// The source of truth the records come from.
        #[arg(long)]
        source_system: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Loads `records` in calls of [`CHUNK`]: the records stored (new or
/// changed) and the unchanged ones. On an error, the index of the first
/// record of the call that failed (the calls before it were stored: loading
/// again is safe, a record equal to the stored one is unchanged).
pub async fn load(mut client: Client, records: &[pb::IdentityRecord]) -> Result<(u64, u64), (usize, tonic::Status)> {
    let (mut loaded, mut unchanged) = (0u64, 0u64);
    for (index, chunk) in records.chunks(CHUNK).enumerate() {
        let request = pb::LoadIdentitiesRequest { identities: chunk.to_vec() };
        let response = client.load_identities(request).await.map_err(|status| (index * CHUNK, status))?.into_inner();
        loaded += response.loaded;
        unchanged += response.unchanged;
    }
    Ok((loaded, unchanged))
}

/// `jmlctl identities ...`.
pub async fn run(coordinator: &str, command: IdentitiesCommand) -> Result<(), Failure> {
    let IdentitiesCommand::Load { file, source_system, json } = command;
    let records = read(&file, &source_system).map_err(bad_input)?;
    let client = connect(coordinator).await?;
    let (loaded, unchanged) = load(client, &records).await.map_err(|(_, status)| from_status(status))?;
    if json {
        print_json(&json!({ "records": records.len(), "loaded": loaded, "unchanged": unchanged }));
    } else {
        println!("{} records: {loaded} loaded, {unchanged} unchanged (nothing provisioned)", records.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_flat_or_nested() {
        let rows = json_records(
            "{\"person_id\":\"p1\",\"email\":\"a@x\"}\n\n{\"person_id\":\"p2\",\"attributes\":{\"email\":\"b@x\"}}\n",
        )
        .expect("parses");
        assert_eq!(rows[0], ("p1".into(), BTreeMap::from([("email".into(), "a@x".into())])));
        assert_eq!(rows[1], ("p2".into(), BTreeMap::from([("email".into(), "b@x".into())])));
        assert!(json_records("{\"email\":\"a@x\"}").is_err_and(|e| e.contains("line 1")));
        assert!(json_records("[1]\n").is_err());
        assert!(json_records("{\"person_id\":\"p\",\"n\":1}").is_err());
    }

    #[test]
    fn csv_with_quotes_commas_and_line_breaks() {
        let rows = csv_records("person_id,email,display_name\r\np1,a@x,\"Doe, Jane\"\np2,,\"Say \"\"hi\"\"\nthere\"\n")
            .expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.get("display_name").map(String::as_str), Some("Doe, Jane"));
        assert!(!rows[1].1.contains_key("email"));
        assert_eq!(rows[1].1.get("display_name").map(String::as_str), Some("Say \"hi\"\nthere"));
        assert!(csv_records("email\na@x\n").is_err());
        assert!(csv_records("person_id,email\np1\n").is_err_and(|e| e.contains("line 2")));
        assert!(csv_records("person_id\n\"open\n").is_err());
    }
}
