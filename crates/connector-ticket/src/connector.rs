//! The `jml.v1` contract for a manual target, over Request Tracker tickets.
//!
//! - **One ticket per account** at a time, found by a digest of (target,
//!   person, account) in its subject, created by the connector's own user.
//! - `Apply` files the exact desired state as a request (see
//!   [`crate::attestation`]): on the account's open ticket as a comment (the
//!   ticket *updated*), or on a new ticket when there is none open (*opened*).
//!   The same command again changes nothing. The answer is
//!   `awaiting_fulfilment` with the ticket: nothing on the target changed yet.
//! - `Read` is the latest attestation recorded on the account's latest ticket
//!   after its latest request, by an RT user other than the connector's own,
//!   with who and when from RT's record of the entry. Without one (the
//!   ticket open, or resolved without an attestation) or with an invalid one
//!   (unreadable, about another account, `fulfiller:`/`attested_at:` lines
//!   that contradict RT's record, an export that is malformed, too large or
//!   contradicts the statement) it fails with `UNATTESTED`: a manual target's
//!   state is never assumed. An export attached to the attestation is parsed,
//!   checked against it and its SHA-256 recorded in the evidence.
//! - `List` serves the newest account export attached by a fulfiller to any
//!   of this target's tickets.
//!
//! Whether the fulfiller may attest (not the event's initiator, not its
//! subject) is the coordinator's decision: it knows the event.

use std::collections::BTreeMap;

use connector_kit::contract as pb;
use connector_kit::{AccountStream, Connector, ConnectorError};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::attestation::{
    ExportedAccount, RequestHeader, Statement, desired_digest, parse_attestation, parse_export, parse_request,
    render_request,
};
use crate::config::{ConfigError, TicketConfig};
use crate::target::{Attachment, RtClient, Ticket};

/// The ticket connector.
#[derive(Debug, Clone)]
pub struct TicketConnector {
    config: TicketConfig,
    rt: RtClient,
}

/// Tickets of one account looked at, newest first.
const TICKETS_PER_ACCOUNT: u32 = 10;
/// Tickets of the target searched for the newest export.
const TICKETS_FOR_EXPORT: u32 = 100;

fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..20].to_owned()
}

fn is_text_body(attachment: &Attachment) -> bool {
    attachment.filename.is_empty() && attachment.content_type == "text/plain"
}

impl TicketConnector {
    /// A connector for `config` (the password is loaded now).
    pub fn new(config: &TicketConfig) -> Result<Self, ConfigError> {
        Ok(Self { config: config.clone(), rt: RtClient::new(config)? })
    }

    fn target_key(&self) -> String {
        format!("jml-t-{}", digest(&[&self.config.target_id]))
    }

    fn account_key(&self, account: &pb::AccountRef) -> String {
        format!("jml-a-{}", digest(&[&self.config.target_id, &account.person_id, &account.account_name.to_lowercase()]))
    }

    fn own(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.config.username)
    }

    /// The account's tickets filed by the connector, newest first.
    async fn tickets(&self, account: &pb::AccountRef) -> Result<Vec<Ticket>, ConnectorError> {
        let sql = format!("Queue = '{}' AND Subject LIKE '{}'", self.config.queue, self.account_key(account));
        let tickets = self.rt.search(&sql, TICKETS_PER_ACCOUNT).await?;
        Ok(tickets.into_iter().filter(|t| self.own(&t.creator)).collect())
    }

    /// An entry's text: a message body up to the response limit, an attached
    /// export up to `max_export_bytes` (never cut short: larger is refused).
    async fn text(&self, attachment: &Attachment) -> Result<String, ConnectorError> {
        let limit = if attachment.filename.is_empty() {
            u64::try_from(self.config.max_response_bytes / 2).unwrap_or(u64::MAX)
        } else {
            self.config.max_export_bytes
        };
        if attachment.content_length > limit {
            return Err(ConnectorError::unattested(format!(
                "entry {} of the ticket ({:?}) is {} bytes, more than the {limit} accepted",
                attachment.transaction_id, attachment.filename, attachment.content_length
            )));
        }
        let bytes = self.rt.content(attachment.id).await?;
        String::from_utf8(bytes)
            .map_err(|_| ConnectorError::unattested(format!("entry {} is not UTF-8 text", attachment.transaction_id)))
    }

    /// The latest request on a ticket: (its transaction, its command).
    async fn latest_request(&self, attachments: &[Attachment]) -> Result<Option<(u64, RequestHeader)>, ConnectorError> {
        for attachment in attachments.iter().rev().filter(|a| self.own(&a.creator) && is_text_body(a)) {
            if let Some(header) = parse_request(&self.text(attachment).await?) {
                return Ok(Some((attachment.transaction_id, header)));
            }
        }
        Ok(None)
    }

    fn describe_ticket(&self, ticket: &Ticket, action: &str) -> pb::FulfilmentTicket {
        pb::FulfilmentTicket {
            ticket_id: ticket.id.to_string(),
            url: self.rt.ticket_url(ticket.id),
            queue: self.config.queue.clone(),
            action: action.into(),
        }
    }

    /// The export attached to an attestation's entry, parsed; with its
    /// digest and name.
    async fn export_of(
        &self,
        attachments: &[Attachment],
        transaction_id: u64,
    ) -> Result<Option<(Vec<ExportedAccount>, String, String)>, ConnectorError> {
        let exports: Vec<&Attachment> =
            attachments.iter().filter(|a| a.transaction_id == transaction_id && !a.filename.is_empty()).collect();
        let [export] = exports[..] else {
            if exports.is_empty() {
                return Ok(None);
            }
            return Err(ConnectorError::unattested(format!(
                "entry {transaction_id} carries {} files; attach one account export",
                exports.len()
            )));
        };
        if !export.filename.to_lowercase().ends_with(".csv") {
            return Err(ConnectorError::unattested(format!(
                "entry {transaction_id}: the attached {:?} is not a .csv account export",
                export.filename
            )));
        }
        let text = self.text(export).await?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let accounts = parse_export(&text, &self.config.entitlement_kinds)
            .map_err(|e| ConnectorError::unattested(format!("entry {transaction_id}: {e}")))?;
        Ok(Some((accounts, digest, export.filename.clone())))
    }

    fn exported_state(&self, exported: &ExportedAccount) -> pb::AccountState {
        pb::AccountState {
            account: Some(pb::AccountRef {
                person_id: exported.person_id.clone(),
                account_name: exported.account_name.clone(),
            }),
            exists: true,
            enabled: exported.enabled,
            entitlements: exported
                .entitlements
                .iter()
                .map(|(kind, id)| pb::Entitlement { kind: kind.clone(), id: id.clone(), privileged: false })
                .collect(),
            ..Default::default()
        }
    }

    /// Checks a statement against RT's record and the account; `Err` is why
    /// it proves nothing.
    fn check_statement(
        &self,
        statement: &Statement,
        entry: &Attachment,
        account: &pb::AccountRef,
    ) -> Result<(), String> {
        if !statement.account.eq_ignore_ascii_case(&account.account_name) {
            return Err(format!(
                "the attestation is about account {:?}, not {:?}",
                statement.account, account.account_name
            ));
        }
        if let Some(person) = &statement.person
            && person != &account.person_id
        {
            return Err(format!("the attestation is about person {person:?}, not {:?}", account.person_id));
        }
        if let Some(claimed) = &statement.fulfiller_claim
            && !claimed.eq_ignore_ascii_case(&entry.creator)
        {
            return Err(format!(
                "forged field `fulfiller: {claimed}`: Request Tracker records the entry as {:?}'s",
                entry.creator
            ));
        }
        if let Some(claimed) = &statement.attested_at_claim
            && claimed != &entry.created
        {
            return Err(format!(
                "forged field `attested_at: {claimed}`: Request Tracker records the entry at {}",
                entry.created
            ));
        }
        for (kind, id) in &statement.entitlements {
            if !self.config.entitlement_kinds.iter().any(|k| k == kind) {
                return Err(format!("the attestation names {kind}:{id}, of no kind this target manages"));
            }
        }
        for name in statement.attributes.keys() {
            if !self.config.attributes.iter().any(|a| a == name) {
                return Err(format!("the attestation names the attribute {name:?}, which this target does not manage"));
            }
        }
        Ok(())
    }
}

/// Whether an export's line for the account agrees with the statement.
fn export_agrees(statement: &Statement, exported: Option<&ExportedAccount>) -> Result<(), String> {
    match (statement.exists, exported) {
        (false, None) => Ok(()),
        (false, Some(_)) => Err("the export lists the account the attestation says does not exist".into()),
        (true, None) => Err("the export does not list the account the attestation says exists".into()),
        (true, Some(exported)) => {
            if exported.enabled != statement.enabled || exported.entitlements != statement.entitlements {
                Err("the export contradicts the attestation (enabled or entitlements differ)".into())
            } else {
                Ok(())
            }
        }
    }
}

impl Connector for TicketConnector {
    // The contract gains fields from several issues at once: the struct
    // update keeps this literal valid when they land.
    #[allow(clippy::needless_update)]
    fn describe(&self) -> pb::DescribeResponse {
        pb::DescribeResponse {
            connector_kind: "ticket".into(),
            target_id: self.config.target_id.clone(),
            contract_version: connector_kit::CONTRACT_VERSION.into(),
            capabilities: Some(pb::Capabilities {
                disable: true,
                delete: true,
                credential_revocation: true,
                credential_revocation_verifiable: true,
                list: true,
                manual_fulfilment: true,
                ..Default::default()
            }),
            entitlement_kinds: self
                .config
                .entitlement_kinds
                .iter()
                .map(|kind| pb::EntitlementKind { kind: kind.clone(), comparison: pb::ValueComparison::Exact as i32 })
                .collect(),
            attributes: self
                .config
                .attributes
                .iter()
                .map(|name| pb::AttributeSpec {
                    name: name.clone(),
                    comparison: pb::ValueComparison::Exact as i32,
                    required: false,
                })
                .collect(),
            account_name_comparison: pb::ValueComparison::CaseInsensitive as i32,
            limitations: vec![
                "a manual target: changes are made by people; the state is known only from a fulfiller's attestation"
                    .into(),
                "credentials are as the fulfiller attests them".into(),
                "List serves the newest account export a fulfiller attached, not a live enumeration".into(),
            ],
            fulfilment_system: "request_tracker".into(),
            fulfilment_queue: self.config.queue.clone(),
            ..Default::default()
        }
    }

    async fn preflight(&self) -> Result<(), ConnectorError> {
        self.rt.queue(&self.config.queue).await?;
        Ok(())
    }

    async fn apply(&self, command_id: &str, desired: &pb::DesiredAccount) -> Result<pb::ApplyResponse, ConnectorError> {
        let account = desired.account.clone().unwrap_or_default();
        let request = render_request(&self.config.target_id, command_id, desired);
        let tickets = self.tickets(&account).await?;
        let (ticket, action) = match tickets.first() {
            Some(latest) => {
                let attachments = self.rt.attachments(latest.id).await?;
                let state = desired_digest(desired);
                let same_state = matches!(
                    self.latest_request(&attachments).await?,
                    Some((_, header)) if header.command_id == command_id || header.state == state
                );
                // The same desired state already requested: nothing to file
                // while people work on it, or once it is validly attested.
                let attested = same_state && !latest.is_active() && self.read(&account).await.is_ok();
                match () {
                    () if same_state && (latest.is_active() || attested) => (latest.clone(), "unchanged"),
                    () if latest.is_active() => {
                        self.rt.comment(latest.id, &request, Some("open")).await?;
                        (self.rt.ticket(latest.id).await?, "updated")
                    }
                    _ => (self.open(&account, &request).await?, "opened"),
                }
            }
            None => (self.open(&account, &request).await?, "opened"),
        };
        let changes = if action == "unchanged" {
            Vec::new()
        } else {
            vec![pb::Change { action: "request_fulfilment".into(), subject: format!("ticket {}", ticket.id) }]
        };
        Ok(pb::ApplyResponse {
            command_id: command_id.into(),
            changes,
            target_native_id: format!("ticket/{}", ticket.id),
            warnings: vec!["a manual target: nothing is done until a fulfiller attests it".into()],
            awaiting_fulfilment: true,
            ticket: Some(self.describe_ticket(&ticket, action)),
            ..Default::default()
        })
    }

    async fn read(&self, account: &pb::AccountRef) -> Result<pb::AccountState, ConnectorError> {
        let Some(ticket) = self.tickets(account).await?.into_iter().next() else {
            return Err(ConnectorError::unattested("no ticket was filed for this account"));
        };
        let ticket = self.rt.ticket(ticket.id).await?;
        let attachments = self.rt.attachments(ticket.id).await?;
        let Some((request_transaction, request)) = self.latest_request(&attachments).await? else {
            return Err(ConnectorError::unattested(format!("ticket {} holds no request", ticket.id)));
        };
        let mut statement = None;
        for entry in attachments
            .iter()
            .rev()
            .filter(|a| a.transaction_id > request_transaction && !self.own(&a.creator) && is_text_body(a))
        {
            let text = self.text(entry).await?;
            match parse_attestation(&text) {
                Ok(Some(found)) => {
                    statement = Some((found, entry.clone()));
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(ConnectorError::unattested(format!(
                        "ticket {} entry {}: {error}",
                        ticket.id, entry.transaction_id
                    )));
                }
            }
        }
        let Some((statement, entry)) = statement else {
            let why = if ticket.is_active() { "awaits" } else { "was closed without" };
            return Err(ConnectorError::unattested(format!(
                "ticket {} ({}) {why} an attestation of command {}",
                ticket.id, ticket.status, request.command_id
            )));
        };
        if statement.command_id != request.command_id {
            return Err(ConnectorError::unattested(format!(
                "ticket {} entry {}: the attestation answers command {:?}, the ticket's latest request is {:?}",
                ticket.id, entry.transaction_id, statement.command_id, request.command_id
            )));
        }
        let invalid = |error: String| {
            ConnectorError::unattested(format!("ticket {} entry {}: {error}", ticket.id, entry.transaction_id))
        };
        self.check_statement(&statement, &entry, account).map_err(invalid)?;
        let export = self.export_of(&attachments, entry.transaction_id).await?;
        if let Some((accounts, _, _)) = &export {
            let line = accounts.iter().find(|a| a.account_name.eq_ignore_ascii_case(&account.account_name));
            export_agrees(&statement, line).map_err(invalid)?;
        }
        let (export_digest, export_name) = export.map(|(_, d, n)| (d, n)).unwrap_or_default();
        let exists = statement.exists;
        Ok(pb::AccountState {
            account: Some(account.clone()),
            exists,
            enabled: exists && statement.enabled,
            attributes: if exists { statement.attributes.clone() } else { BTreeMap::new() },
            entitlements: statement
                .entitlements
                .iter()
                .map(|(kind, id)| pb::Entitlement { kind: kind.clone(), id: id.clone(), privileged: false })
                .collect(),
            credentials: Some(pb::CredentialState {
                active: statement.credentials.clone(),
                complete: true,
                ..Default::default()
            }),
            target_native_id: format!("ticket/{}", ticket.id),
            last_activity: None,
            attestation: Some(pb::Attestation {
                ticket_id: ticket.id.to_string(),
                entry_id: entry.transaction_id.to_string(),
                fulfiller: entry.creator.clone(),
                attested_at: entry.created.clone(),
                command_id: statement.command_id.clone(),
                export_digest,
                export_name,
                ticket_status: ticket.status.clone(),
                desired_digest: request.state.clone(),
            }),
            ..Default::default()
        })
    }

    fn list(&self, page_size: u32) -> AccountStream {
        let connector = self.clone();
        let page_size = if page_size == 0 { 100 } else { page_size as usize };
        futures::stream::once(async move { connector.newest_export().await })
            .flat_map(move |result| {
                let pages: Vec<Result<Vec<pb::AccountState>, ConnectorError>> = match result {
                    Ok(states) => states.chunks(page_size).map(|chunk| Ok(chunk.to_vec())).collect(),
                    Err(error) => vec![Err(error)],
                };
                futures::stream::iter(pages)
            })
            .boxed()
    }
}

impl TicketConnector {
    async fn open(&self, account: &pb::AccountRef, request: &str) -> Result<Ticket, ConnectorError> {
        let subject = format!(
            "[{}] [{}] {}: account {}",
            self.account_key(account),
            self.target_key(),
            self.config.target_id,
            account.account_name
        );
        let id = self.rt.create(&self.config.queue, &subject, request).await?;
        Ok(self.rt.ticket(id).await?)
    }

    /// Every account of the newest export a fulfiller attached to one of
    /// this target's tickets (bounded: the export is at most
    /// `max_export_bytes`).
    async fn newest_export(&self) -> Result<Vec<pb::AccountState>, ConnectorError> {
        let sql = format!("Queue = '{}' AND Subject LIKE '{}'", self.config.queue, self.target_key());
        let mut newest: Option<(Vec<Attachment>, u64)> = None;
        for ticket in self.rt.search(&sql, TICKETS_FOR_EXPORT).await?.into_iter().filter(|t| self.own(&t.creator)) {
            let attachments = self.rt.attachments(ticket.id).await?;
            let candidate = attachments
                .iter()
                .filter(|a| !self.own(&a.creator) && a.filename.to_lowercase().ends_with(".csv"))
                .map(|a| a.transaction_id)
                .max();
            if let Some(transaction) = candidate
                && newest.as_ref().is_none_or(|(_, best)| transaction > *best)
            {
                newest = Some((attachments, transaction));
            }
        }
        let Some((attachments, transaction)) = newest else {
            return Err(ConnectorError::unattested("no fulfiller has attached an account export yet"));
        };
        let Some((accounts, _, _)) = self.export_of(&attachments, transaction).await? else {
            return Err(ConnectorError::unattested("the newest account export could not be found again"));
        };
        Ok(accounts.iter().map(|exported| self.exported_state(exported)).collect())
    }
}
