//! The texts a manual target's tickets carry, written for people and parsed
//! strictly:
//!
//! - the **request** the connector files: `JML-REQUEST v1`, then one
//!   `key: value` line per part of the desired state, and the template a
//!   fulfiller copies;
//! - the **attestation** a fulfiller records as a comment after doing the
//!   change: `JML-ATTESTATION v1`, the command it answers and what they saw
//!   (`exists`, `enabled`, one `entitlement:` line each or `entitlements:
//!   none`, `attribute NAME:` lines, `credentials: none` or what remains).
//!   Unknown keys, repeated keys and missing ones make it invalid: a
//!   statement the connector cannot read completely proves nothing. Who
//!   and when are never taken from the text: lines `fulfiller:` and
//!   `attested_at:` are allowed only when they agree with the ticketing
//!   system's own record, and a disagreement is a forgery;
//! - the **account export** a fulfiller may attach (`*.csv`): a header
//!   `account_name,person_id,enabled,entitlements`, one account per line,
//!   `enabled` as `yes`/`no`, entitlements as `kind:id` joined by `;`.

use std::collections::{BTreeMap, BTreeSet};

use connector_kit::contract as pb;
use prost::Message;
use sha2::{Digest, Sha256};

/// The first line of a request.
pub const REQUEST_MARK: &str = "JML-REQUEST v1";
/// The first line of an attestation.
pub const ATTESTATION_MARK: &str = "JML-ATTESTATION v1";
/// The export's header line.
pub const EXPORT_HEADER: &str = "account_name,person_id,enabled,entitlements";

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// The hex SHA-256 of a desired state's canonical encoding (what the
/// coordinator computes for the same state).
pub fn desired_digest(desired: &pb::DesiredAccount) -> String {
    hex::encode(Sha256::digest(desired.encode_to_vec()))
}

/// The request text for `desired` (every value is printable: the kit's
/// validation refuses control characters before the connector runs).
pub fn render_request(target_id: &str, command_id: &str, desired: &pb::DesiredAccount) -> String {
    let account = desired.account.clone().unwrap_or_default();
    let present = desired.presence == pb::Presence::Present as i32;
    let revoke = desired.credentials == pb::CredentialAction::RevokeAll as i32;
    let mut lines = vec![
        format!("Lifecycle Mesh asks for a manual change on the target {target_id}."),
        "Do it in the application, look at the account, then comment on this ticket with the".into(),
        "attestation below filled in with what you saw. You may attach the application's account".into(),
        format!("export as a .csv file ({EXPORT_HEADER})."),
        "The person who initiated the change and the person it is about may not attest it.".into(),
        String::new(),
        REQUEST_MARK.into(),
        format!("command: {command_id}"),
        format!("state: {}", desired_digest(desired)),
        format!("target: {target_id}"),
        format!("person: {}", account.person_id),
        format!("account: {}", account.account_name),
        format!("presence: {}", if present { "present" } else { "absent" }),
    ];
    if present {
        lines.push(format!("enabled: {}", yes_no(desired.enabled)));
        if desired.entitlements.is_empty() {
            lines.push("entitlements: none".into());
        }
        for entitlement in &desired.entitlements {
            let flag = if entitlement.privileged { " (privileged)" } else { "" };
            lines.push(format!("entitlement: {}:{}{flag}", entitlement.kind, entitlement.id));
        }
        for (name, value) in &desired.attributes {
            lines.push(format!("attribute {name}: {value}"));
        }
    }
    lines.push(format!("credentials: {}", if revoke { "revoke_all" } else { "keep" }));
    lines.push(String::new());
    lines.push("Template (copy into a comment, correct every line to what you saw):".into());
    lines.push(String::new());
    lines.push(ATTESTATION_MARK.into());
    lines.push(format!("command: {command_id}"));
    lines.push(format!("account: {}", account.account_name));
    lines.push(format!("exists: {}", yes_no(present)));
    if present {
        lines.push(format!("enabled: {}", yes_no(desired.enabled)));
        if desired.entitlements.is_empty() {
            lines.push("entitlements: none".into());
        }
        for entitlement in &desired.entitlements {
            lines.push(format!("entitlement: {}:{}", entitlement.kind, entitlement.id));
        }
        for (name, value) in &desired.attributes {
            lines.push(format!("attribute {name}: {value}"));
        }
        lines.push("credentials: none".into());
    }
    lines.join("\n")
}

/// What identifies a request: its command and the digest of its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The command id.
    pub command_id: String,
    /// [`desired_digest`] of the state it asks for.
    pub state: String,
}

/// The header of a request text, when it is one.
pub fn parse_request(text: &str) -> Option<RequestHeader> {
    let mut lines = text.lines().map(str::trim).skip_while(|line| *line != REQUEST_MARK);
    lines.next()?;
    let (mut command_id, mut state) = (None, None);
    for line in lines.take_while(|line| !line.is_empty()) {
        if let Some(value) = line.strip_prefix("command:") {
            command_id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("state:") {
            state = Some(value.trim().to_owned());
        }
    }
    Some(RequestHeader { command_id: command_id?, state: state? })
}

/// What a fulfiller stated, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Statement {
    /// The command answered.
    pub command_id: String,
    /// The account it is about.
    pub account: String,
    /// The person, when stated.
    pub person: Option<String>,
    /// Whether the account exists.
    pub exists: bool,
    /// Whether it can be used.
    pub enabled: bool,
    /// Its entitlements.
    pub entitlements: BTreeSet<(String, String)>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Credentials still usable (`credentials: none` is empty).
    pub credentials: Vec<String>,
    /// A `fulfiller:` line, checked against the ticketing system's record.
    pub fulfiller_claim: Option<String>,
    /// An `attested_at:` line, checked against the ticketing system's record.
    pub attested_at_claim: Option<String>,
}

/// Parses an attestation: `Ok(None)` when `text` holds none, `Err` (naming
/// the line) when it holds one that cannot be read completely.
pub fn parse_attestation(text: &str) -> Result<Option<Statement>, String> {
    let mut lines = text.lines().map(str::trim).skip_while(|line| *line != ATTESTATION_MARK);
    if lines.next().is_none() {
        return Ok(None);
    }
    let mut statement = Statement::default();
    let mut seen = BTreeSet::new();
    let mut no_entitlements = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("attestation line {line:?} is not `key: value`"));
        };
        let (key, value) = (key.trim().to_lowercase(), value.trim().to_owned());
        let repeatable = key == "entitlement" || key.starts_with("attribute ");
        if !repeatable && !seen.insert(key.clone()) {
            return Err(format!("attestation repeats {key:?}"));
        }
        let boolean = |value: &str| match value.to_lowercase().as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(format!("attestation {key}: {other:?} is neither yes nor no")),
        };
        match key.as_str() {
            "command" => statement.command_id = value,
            "account" => statement.account = value,
            "person" => statement.person = Some(value),
            "exists" => statement.exists = boolean(&value)?,
            "enabled" => statement.enabled = boolean(&value)?,
            "entitlements" if value.eq_ignore_ascii_case("none") => no_entitlements = true,
            "entitlement" => {
                let Some((kind, id)) = value.split_once(':') else {
                    return Err(format!("attestation entitlement {value:?} is not `kind:id`"));
                };
                let (kind, id) = (kind.trim(), id.trim());
                if kind.is_empty() || id.is_empty() {
                    return Err(format!("attestation entitlement {value:?} is not `kind:id`"));
                }
                if !statement.entitlements.insert((kind.to_owned(), id.to_owned())) {
                    return Err(format!("attestation repeats the entitlement {value:?}"));
                }
            }
            "credentials" => {
                statement.credentials = if value.eq_ignore_ascii_case("none") {
                    Vec::new()
                } else {
                    value.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
                };
                if statement.credentials.is_empty() && !value.eq_ignore_ascii_case("none") {
                    return Err("attestation credentials: say `none` or list what remains".into());
                }
            }
            "fulfiller" => statement.fulfiller_claim = Some(value),
            "attested_at" => statement.attested_at_claim = Some(value),
            attribute if attribute.starts_with("attribute ") => {
                let name = line.split_once(':').map(|(k, _)| k.trim()["attribute ".len()..].trim().to_owned());
                let name = name.unwrap_or_default();
                if name.is_empty() || statement.attributes.insert(name.clone(), value).is_some() {
                    return Err(format!("attestation attribute {name:?} is empty or repeated"));
                }
            }
            other => return Err(format!("attestation has an unknown field {other:?}")),
        }
    }
    for required in ["command", "account", "exists"] {
        if !seen.contains(required) {
            return Err(format!("attestation lacks {required:?}"));
        }
    }
    if statement.exists {
        for required in ["enabled", "credentials"] {
            if !seen.contains(required) {
                return Err(format!("attestation of an existing account lacks {required:?}"));
            }
        }
        if no_entitlements && !statement.entitlements.is_empty() {
            return Err("attestation says `entitlements: none` and lists entitlements".into());
        }
        if !no_entitlements && statement.entitlements.is_empty() {
            return Err("attestation of an existing account lists no entitlement and does not say `none`".into());
        }
    } else if !statement.entitlements.is_empty() || !statement.attributes.is_empty() {
        return Err("attestation of an absent account lists entitlements or attributes".into());
    }
    Ok(Some(statement))
}

/// One account of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedAccount {
    /// Its name in the application.
    pub account_name: String,
    /// The person it belongs to, when the application knows (empty when not).
    pub person_id: String,
    /// Whether it can be used.
    pub enabled: bool,
    /// Its entitlements.
    pub entitlements: BTreeSet<(String, String)>,
}

/// Parses an account export; `Err` names the line. Every line must be
/// complete: a malformed export is refused whole, never read in part.
pub fn parse_export(text: &str, kinds: &[String]) -> Result<Vec<ExportedAccount>, String> {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(EXPORT_HEADER) => {}
        other => return Err(format!("export header is {other:?}, expected {EXPORT_HEADER:?}")),
    }
    let mut accounts = Vec::new();
    let mut names = BTreeSet::new();
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        if line.trim().is_empty() {
            continue;
        }
        if line.chars().any(|c| c.is_control() && c != '\r') || line.contains('"') {
            return Err(format!("export line {number}: control characters or quotes are not accepted"));
        }
        let fields: Vec<&str> = line.trim_end_matches('\r').split(',').map(str::trim).collect();
        let [account_name, person_id, enabled, entitlements] = fields[..] else {
            return Err(format!("export line {number}: expected 4 fields, found {}", fields.len()));
        };
        if account_name.is_empty() {
            return Err(format!("export line {number}: empty account_name"));
        }
        if !names.insert(account_name.to_lowercase()) {
            return Err(format!("export line {number}: account {account_name:?} listed twice"));
        }
        let enabled = match enabled.to_lowercase().as_str() {
            "yes" => true,
            "no" => false,
            other => return Err(format!("export line {number}: enabled {other:?} is neither yes nor no")),
        };
        let mut set = BTreeSet::new();
        for entitlement in entitlements.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((kind, id)) = entitlement.split_once(':') else {
                return Err(format!("export line {number}: entitlement {entitlement:?} is not kind:id"));
            };
            if !kinds.iter().any(|k| k == kind.trim()) || id.trim().is_empty() {
                return Err(format!("export line {number}: entitlement {entitlement:?} is of no managed kind"));
            }
            set.insert((kind.trim().to_owned(), id.trim().to_owned()));
        }
        accounts.push(ExportedAccount {
            account_name: account_name.to_owned(),
            person_id: person_id.to_owned(),
            enabled,
            entitlements: set,
        });
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> pb::DesiredAccount {
        pb::DesiredAccount {
            account: Some(pb::AccountRef { person_id: "p-1".into(), account_name: "dana".into() }),
            presence: pb::Presence::Present as i32,
            enabled: false,
            attributes: BTreeMap::new(),
            entitlements: vec![],
            credentials: pb::CredentialAction::RevokeAll as i32,
            owned_identities: None,
        }
    }

    #[test]
    fn the_request_carries_its_command_and_a_template_that_parses() {
        let text = render_request("payroll", "jml-1", &desired());
        let header = parse_request(&text).expect("a request");
        assert_eq!(header.command_id, "jml-1");
        assert_eq!(header.state, desired_digest(&desired()));
        let statement = parse_attestation(&text).expect("template parses").expect("present");
        assert_eq!(statement.command_id, "jml-1");
        assert!(statement.exists && !statement.enabled && statement.entitlements.is_empty());
    }

    #[test]
    fn incomplete_or_ambiguous_attestations_are_refused() {
        let good = "JML-ATTESTATION v1\ncommand: c\naccount: a\nexists: yes\nenabled: no\nentitlements: none\ncredentials: none\n";
        assert!(parse_attestation(good).expect("valid").is_some());
        assert!(parse_attestation("no attestation here").expect("valid").is_none());
        for bad in [
            good.replace("exists: yes\n", ""),
            good.replace("enabled: no", "enabled: maybe"),
            format!("{good}command: d\n"),
            format!("{good}owner: x\n"),
            good.replace("entitlements: none\n", ""),
            format!("{good}entitlement: role:admin\n"),
            good.replace("credentials: none\n", ""),
        ] {
            assert!(parse_attestation(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exports_are_parsed_whole_or_refused_with_the_line() {
        let kinds = vec!["role".to_owned()];
        let ok = format!("{EXPORT_HEADER}\ndana,p-1,no,\nerin,p-2,yes,role:admin;role:staff\n");
        let accounts = parse_export(&ok, &kinds).expect("parses");
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[1].entitlements.len(), 2);
        assert!(parse_export("name,enabled\n", &kinds).expect_err("refused").contains("header"));
        assert!(
            parse_export(&format!("{EXPORT_HEADER}\ndana,p-1,no\n"), &kinds).expect_err("refused").contains("line 2")
        );
        assert!(parse_export(&format!("{EXPORT_HEADER}\ndana,p-1,no,group:x\n"), &kinds).is_err());
        assert!(parse_export(&format!("{EXPORT_HEADER}\ndana,p-1,no,\nDANA,p-1,no,\n"), &kinds).is_err());
    }
}
