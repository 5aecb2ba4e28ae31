//! `jmlctl`: the Lifecycle Mesh command line.
//!
//! Talks to the coordinator's `jml.v1.Lifecycle` API (`--coordinator`, env
//! `JML_COORDINATOR`); `policy check` and `audit verify --db` work offline.
//! Callers authenticate with a bearer token (`--token-file`, env
//! `JML_TOKEN_FILE`) and/or a client certificate (`--cert`/`--key`), over TLS
//! checked against `--ca` (env `JML_CA_FILE`) for an `https://` coordinator.
//! Every read command takes `--json`. Exit codes: 0 ok, 1 the operation or
//! verification failed, 2 usage or bad input, 3 coordinator unreachable,
//! 4 `reconcile` found drift, 5 outcome unknown (the request was sent and
//! the connection was lost before an answer: retry with the same event id or
//! record, which is always safe), 6 `import` held by the mass-change guard,
//! 7 `watch`: the event was proven with residual risk (what may outlive a
//! credential revocation is listed).
//! Errors are one line on stderr.

mod campaign;
mod held;
mod identities;
mod import;
mod reconcile;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coordinator::event::{kind_from_name, kind_name, kind_to_proto};
use coordinator::evidence::{acknowledgement_json, desired_json, entitlement_json, read_back_json};
use jml_contract::v1 as pb;
use jml_contract::v1::lifecycle_client::LifecycleClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Command line of the Lifecycle Mesh.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The coordinator's URL.
    #[arg(long, global = true, env = "JML_COORDINATOR", default_value = "http://127.0.0.1:50050")]
    coordinator: String,
    /// The principal to act as (sent as `x-jml-principal`; honoured only by a
    /// coordinator started with `--insecure-no-auth`).
    #[arg(long, global = true, env = "JML_PRINCIPAL")]
    principal: Option<String>,
    /// CA the coordinator's certificate must chain to (PEM); needed for `https://`.
    #[arg(long, global = true, env = "JML_CA_FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM), for a coordinator that accepts client certificates.
    #[arg(long, global = true, env = "JML_CERT_FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "JML_KEY_FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The name the coordinator's certificate must carry (default: the URL's host).
    #[arg(long, global = true, env = "JML_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// A file holding the bearer token (sent as `authorization: Bearer ...`).
    #[arg(long, global = true, env = "JML_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// An event given on the command line or in a JSON file.
#[derive(Debug, clap::Args)]
struct EventArgs {
    /// A JSON file holding the event (`event_id`, `kind`, `person_id`,
    /// `attributes`, `effective_at`, `source_system`, `urgent`); flags override it.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// The event id (idempotency key).
    #[arg(long)]
    event_id: Option<String>,
    /// joiner, mover or leaver.
    #[arg(long)]
    kind: Option<String>,
    /// The person's id.
    #[arg(long)]
    person: Option<String>,
    /// An attribute, NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// When the event takes effect (RFC 3339).
    #[arg(long)]
    effective_at: Option<String>,
    /// The source system.
    #[arg(long)]
    source: Option<String>,
    /// An urgent leaver.
    #[arg(long)]
    urgent: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a lifecycle event.
    Submit {
        #[command(flatten)]
        event: EventArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an event's status per target.
    Status {
        /// The event id.
        event_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow an event until it is verified or failed (exit 0 when verified
    /// or nothing to do, 7 when verified with residual risk).
    Watch {
        /// The event id.
        event_id: String,
        /// Print one JSON document per update.
        #[arg(long)]
        json: bool,
    },
    /// Dry run: the desired state per target and the workflows that match.
    Plan {
        #[command(flatten)]
        event: EventArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve the grants awaiting approval on one target of an event.
    Approve {
        /// The event id.
        event_id: String,
        /// The target id.
        target_id: String,
        /// A comment for the audit log.
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject the grants awaiting approval on one target of an event.
    Reject {
        /// The event id.
        event_id: String,
        /// The target id.
        target_id: String,
        /// A comment for the audit log.
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the evidence for one event.
    Evidence {
        /// The event id.
        event_id: String,
        /// Print the JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Policy commands.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Identity records (the baseline).
    Identities {
        #[command(subcommand)]
        command: IdentitiesCommand,
    },
    /// Import a roster (CSV with a header row, or JSON lines) as state
    /// submits: joiners, movers, leavers and rehires are derived by the
    /// coordinator; exit 6 when the mass-change guard holds it.
    Import(import::ImportArgs),
    /// Batches held by the mass-change guard: list, approve, reject.
    Held {
        #[command(subcommand)]
        command: held::HeldCommand,
    },
    /// Recertification campaigns: start, show, decide.
    Campaign {
        #[command(subcommand)]
        command: campaign::CampaignCommand,
    },
    /// Reports computed from the audit chain.
    Report {
        #[command(subcommand)]
        command: report::ReportCommand,
    },
    /// List tasks past their propagation deadline.
    Overdue {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare each target's accounts with the expected state (drift,
    /// orphans, failed deprovisioning); exit 4 when drift is found.
    Reconcile {
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
    },
}

#[derive(Debug, Subcommand)]
enum IdentitiesCommand {
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

#[derive(Debug, Subcommand)]
enum AuditCommand {
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

#[derive(Debug, Subcommand)]
enum PolicyCommand {
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

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn failed(message: impl Into<String>) -> Failure {
    Failure { code: 1, message: message.into() }
}

fn bad_input(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

fn from_status(status: tonic::Status) -> Failure {
    let message = format!("{}: {}", status.code().description(), status.message());
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::Unauthenticated => bad_input(message),
        tonic::Code::Unavailable if status.message().contains("connect") || status.message().contains("transport") => {
            Failure { code: 3, message: format!("coordinator unreachable: {}", status.message()) }
        }
        tonic::Code::Unavailable => Failure { code: 3, message },
        _ => failed(message),
    }
}

/// Exit code: the request was sent and no answer came back (connection cut,
/// coordinator crash): whether it was applied is unknown.
pub const OUTCOME_UNKNOWN: u8 = 5;

/// Maps the failure of a request that changes state, once connected: a
/// status the coordinator sent is its answer ([`from_status`]); a transport
/// failure after sending (no status from the coordinator) leaves the outcome
/// unknown, never "failed" or "unreachable".
fn from_send_status(status: tonic::Status) -> Failure {
    let transport = std::error::Error::source(&status).is_some()
        || matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded);
    if transport {
        return Failure {
            code: OUTCOME_UNKNOWN,
            message: format!(
                "outcome unknown: the request was sent but no answer came back ({}: {}); retry with the same event id or record: it is always safe",
                status.code().description(),
                status.message()
            ),
        };
    }
    from_status(status)
}

/// How this process authenticates to the coordinator, set once from the flags.
#[derive(Clone, Default)]
struct Credentials {
    /// `Bearer TOKEN`, marked sensitive so it is never logged.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// The `x-jml-principal` header for an `--insecure-no-auth` coordinator.
    principal: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// TLS towards the coordinator.
    tls: Option<connector_kit::tls::ClientTlsFiles>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer_token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        if let Some(value) = &self.principal
            && !request.metadata().contains_key(coordinator::api::PRINCIPAL_HEADER)
        {
            request.metadata_mut().insert(coordinator::api::PRINCIPAL_HEADER, value.clone());
        }
        Ok(request)
    }
}

static CREDENTIALS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();

impl Credentials {
    fn from_cli(cli: &Cli) -> Result<Self, Failure> {
        let authorization = match &cli.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| bad_input(format!("--token-file {}: {e}", path.display())))?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(bad_input(format!("--token-file {}: the file is empty", path.display())));
                }
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {token}").parse().map_err(|_| {
                        bad_input(format!("--token-file {}: the token is not printable ASCII", path.display()))
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let principal = match &cli.principal {
            None => None,
            Some(principal) => Some(principal.parse().map_err(|_| bad_input("--principal: not a valid header value"))?),
        };
        let tls = match &cli.ca {
            None if cli.coordinator.starts_with("https://") => {
                return Err(bad_input("an https:// coordinator needs --ca (or JML_CA_FILE)"));
            }
            None => None,
            Some(ca) => {
                let uri: tonic::transport::Uri =
                    cli.coordinator.parse().map_err(|e| bad_input(format!("--coordinator: {e}")))?;
                let server_name = cli
                    .tls_server_name
                    .clone()
                    .or_else(|| uri.host().map(str::to_owned))
                    .ok_or_else(|| bad_input("--coordinator has no host; pass --tls-server-name"))?;
                Some(connector_kit::tls::ClientTlsFiles {
                    server_ca: ca.clone(),
                    server_name,
                    identity: cli.cert.clone().zip(cli.key.clone()),
                })
            }
        };
        if tls.is_none() && authorization.is_some() {
            eprintln!("jmlctl: warning: sending a bearer token without TLS");
        }
        Ok(Self { authorization, principal, tls })
    }
}

type Client = LifecycleClient<tonic::service::interceptor::InterceptedService<Channel, Credentials>>;

async fn connect(url: &str) -> Result<Client, Failure> {
    let credentials = CREDENTIALS.get().cloned().unwrap_or_default();
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad_input(format!("--coordinator {url:?}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = &credentials.tls {
        let config = tls.load().map_err(|e| bad_input(e.to_string()))?;
        endpoint = endpoint.tls_config(config).map_err(|e| bad_input(format!("TLS: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Failure { code: 3, message: format!("coordinator unreachable at {url}: {e}") })?;
    Ok(LifecycleClient::with_interceptor(channel, credentials))
}

fn with_principal<T>(message: T, principal: &Option<String>) -> Result<tonic::Request<T>, Failure> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = principal {
        let value = principal.parse().map_err(|_| bad_input("--principal: not a valid header value"))?;
        request.metadata_mut().insert(coordinator::api::PRINCIPAL_HEADER, value);
    }
    Ok(request)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    event_id: Option<String>,
    kind: Option<String>,
    person_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    effective_at: Option<String>,
    source_system: Option<String>,
    #[serde(default)]
    urgent: bool,
}

fn build_event(args: &EventArgs) -> Result<pb::LifecycleEvent, Failure> {
    let mut file = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
            serde_json::from_str::<EventFile>(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?
        }
        None => EventFile {
            event_id: None,
            kind: None,
            person_id: None,
            attributes: BTreeMap::new(),
            effective_at: None,
            source_system: None,
            urgent: false,
        },
    };
    for pair in &args.attributes {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| bad_input(format!("--attr {pair:?}: expected NAME=VALUE")))?;
        file.attributes.insert(name.to_owned(), value.to_owned());
    }
    let kind_text = args.kind.clone().or(file.kind).ok_or_else(|| bad_input("kind: required (--kind or file)"))?;
    let kind = kind_from_name(&kind_text)
        .ok_or_else(|| bad_input(format!("kind: {kind_text:?} is not joiner, mover, leaver, suspension or return")))?;
    Ok(pb::LifecycleEvent {
        event_id: args.event_id.clone().or(file.event_id).unwrap_or_default(),
        kind: kind_to_proto(kind) as i32,
        person_id: args.person.clone().or(file.person_id).unwrap_or_default(),
        attributes: file.attributes,
        effective_at: args.effective_at.clone().or(file.effective_at).unwrap_or_default(),
        source_system: args.source.clone().or(file.source_system).unwrap_or_default(),
        urgent: args.urgent || file.urgent,
        source_changed_at: String::new(),
    })
}

fn state_name(state: i32) -> String {
    pb::TaskState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("TASK_STATE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

fn event_state_name(state: i32) -> String {
    pb::EventState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("EVENT_STATE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

fn event_kind_name(kind: i32) -> String {
    coordinator::event::kind_from_proto(kind).map(kind_name).unwrap_or("unknown").to_owned()
}

fn task_json(task: &pb::TaskStatus) -> Value {
    json!({
        "target_id": task.target_id,
        "state": state_name(task.state),
        "attempts": task.attempts,
        "last_error": task.last_error,
        "command_id": task.command_id,
        "desired": task.desired.as_ref().map(desired_json),
        "acknowledgement": task.acknowledgement.as_ref().map(acknowledgement_json),
        "read_back": task.read_back.as_ref().map(read_back_json),
        "differences": task.differences,
        "residual_risks": task.residual_risks.iter().map(coordinator::credentials::risk_json).collect::<Vec<_>>(),
        "cutoffs": task.cutoffs.iter().map(coordinator::credentials::cutoff_json).collect::<Vec<_>>(),
        "planned_at": task.planned_at,
        "dispatched_at": task.dispatched_at,
        "acknowledged_at": task.acknowledged_at,
        "finished_at": task.finished_at,
        "next_attempt_at": task.next_attempt_at,
        "deadline_at": task.deadline_at,
        "deadline_breached": task.deadline_breached,
        "awaiting_approval": task.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
        "approvals_required": task.approvals_required,
        "approver_group": task.approver_group,
        "approvals": task.approvals.iter().map(|a| json!({
            "approver": a.approver, "decision": a.decision, "at": a.at, "comment": a.comment,
        })).collect::<Vec<_>>(),
    })
}

fn status_json(status: &pb::EventStatus) -> Value {
    json!({
        "event_id": status.event_id,
        "kind": event_kind_name(status.kind),
        "person_id": status.person_id,
        "state": event_state_name(status.state),
        "effective_at": status.effective_at,
        "received_at": status.received_at,
        "initiator": status.initiator,
        "source_system": status.source_system,
        "urgent": status.urgent,
        "policy_hash": status.policy_hash,
        "plan_hash": status.plan_hash,
        "trace_id": status.trace_id,
        "deadline_breached": status.deadline_breached,
        "tasks": status.tasks.iter().map(task_json).collect::<Vec<_>>(),
        "residual_risks": status.residual_risks,
        "calendar": status.calendar.iter().map(|entry| json!({
            "stage": entry.stage, "event_id": entry.event_id, "target_id": entry.target_id,
            "due_at": entry.due_at, "state": state_name(entry.state), "note": entry.note,
        })).collect::<Vec<_>>(),
        "calendar_origin": status.calendar_origin,
    })
}

fn print_status(status: &pb::EventStatus) {
    println!(
        "event {} ({}, person {}): {}{}\n  trace {}",
        status.event_id,
        event_kind_name(status.kind),
        status.person_id,
        event_state_name(status.state),
        if status.deadline_breached { " [deadline breached]" } else { "" },
        if status.trace_id.is_empty() { "-" } else { &status.trace_id }
    );
    for task in &status.tasks {
        println!(
            "  {:<12} {:<18} attempts={} deadline={}{}",
            task.target_id,
            state_name(task.state),
            task.attempts,
            task.deadline_at,
            if task.deadline_breached { " BREACHED" } else { "" }
        );
        if !task.awaiting_approval.is_empty() {
            let grants: Vec<String> = task.awaiting_approval.iter().map(|e| format!("{}:{}", e.kind, e.id)).collect();
            println!(
                "      awaiting approval: {} ({} of group {:?}, {} decided)",
                grants.join(", "),
                task.approvals_required,
                task.approver_group,
                task.approvals.len()
            );
        }
        if !task.last_error.is_empty() {
            println!("      last error: {}", task.last_error);
        }
        for difference in &task.differences {
            println!("      difference: {difference}");
        }
        for risk in &task.residual_risks {
            println!("      residual risk: {}", connector_kit::credentials::label(risk));
        }
        coordinator::owned::status_lines(task).iter().for_each(|line| println!("      {line}"));
    }
    if !status.calendar_origin.is_empty() {
        println!("  scheduled by the calendar from event {}", status.calendar_origin);
    }
    for entry in &status.calendar {
        let note = if entry.note.is_empty() { String::new() } else { format!(" ({})", entry.note) };
        println!(
            "  calendar: {} on {} due {}: {} [event {}]{note}",
            entry.stage.replace('_', " "),
            entry.target_id,
            entry.due_at,
            state_name(entry.state),
            entry.event_id
        );
    }
}

fn plan_json(response: &pb::PlanResponse) -> Value {
    let plan = response.plan.clone().unwrap_or_default();
    json!({
        "person_id": plan.person_id,
        "kind": event_kind_name(plan.kind),
        "plan_hash": response.plan_hash,
        "policy_hash": response.policy_hash,
        "workflows": plan.workflows.iter().map(|w| json!({ "name": w.name, "owner": w.owner })).collect::<Vec<_>>(),
        "targets": plan.targets.iter().map(|t| json!({
            "target_id": t.target_id,
            "desired": t.desired.as_ref().map(desired_json),
            "awaiting_approval": t.awaiting_approval.iter().map(entitlement_json).collect::<Vec<_>>(),
            "approvals_required": t.approvals_required,
            "approver_group": t.approver_group,
            "deadline_seconds": t.deadline_seconds,
            "workflows": t.workflows,
        })).collect::<Vec<_>>(),
    })
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Policy { command: PolicyCommand::Check { file, live, json } } => {
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
        Command::Audit { command: AuditCommand::Verify { db: Some(db), json } } => {
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
        Command::Audit { command: AuditCommand::Verify { db: None, json } } => {
            let mut client = connect(&cli.coordinator).await?;
            let verdict = client.verify_audit(pb::VerifyAuditRequest {}).await.map_err(from_status)?.into_inner();
            let broken = (!verdict.intact).then(|| (verdict.first_broken_seq as i64, verdict.reason.clone()));
            report_verdict(verdict.records, broken, json)
        }
        Command::Submit { event, json } => {
            let event = build_event(&event)?;
            let mut client = connect(&cli.coordinator).await?;
            let request = with_principal(pb::SubmitEventRequest { event: Some(event) }, &cli.principal)?;
            let receipt =
                client.submit_event(request).await.map_err(from_send_status)?.into_inner().receipt.unwrap_or_default();
            if json {
                print_json(&json!({
                    "event_id": receipt.event_id,
                    "duplicate": receipt.duplicate,
                    "received_at": receipt.received_at,
                    "policy_hash": receipt.policy_hash,
                    "plan_hash": receipt.plan_hash,
                    "targets": receipt.targets,
                    "initiator": receipt.initiator,
                    "trace_id": receipt.trace_id,
                }));
            } else {
                println!(
                    "{} {}: targets [{}], plan {}",
                    if receipt.duplicate { "duplicate of" } else { "accepted" },
                    receipt.event_id,
                    receipt.targets.join(", "),
                    receipt.plan_hash
                );
            }
            Ok(())
        }
        Command::Status { event_id, json } => {
            let mut client = connect(&cli.coordinator).await?;
            let status = client.get_event(pb::GetEventRequest { event_id }).await.map_err(from_status)?.into_inner();
            if json {
                print_json(&status_json(&status))
            } else {
                print_status(&status)
            }
            Ok(())
        }
        Command::Watch { event_id, json } => {
            let mut client = connect(&cli.coordinator).await?;
            let mut stream =
                client.watch_event(pb::GetEventRequest { event_id }).await.map_err(from_status)?.into_inner();
            let mut last = None;
            while let Some(status) = stream.message().await.map_err(from_status)? {
                if json {
                    println!("{}", status_json(&status));
                } else {
                    print_status(&status);
                }
                last = Some(status);
            }
            match last {
                Some(status)
                    if status.state == pb::EventState::Verified as i32
                        || status.state == pb::EventState::NothingToDo as i32 =>
                {
                    Ok(())
                }
                Some(status) if status.state == pb::EventState::VerifiedWithResidualRisk as i32 => Err(Failure {
                    code: 7,
                    message: format!(
                        "event {} is verified with residual risk: {}",
                        status.event_id,
                        status.residual_risks.join("; ")
                    ),
                }),
                Some(status) => Err(failed(format!("event {} is {}", status.event_id, event_state_name(status.state)))),
                None => Err(failed("the coordinator closed the stream without a status")),
            }
        }
        Command::Plan { event, json } => {
            let event = build_event(&event)?;
            let mut client = connect(&cli.coordinator).await?;
            let response = client.plan(pb::PlanRequest { event: Some(event) }).await.map_err(from_status)?.into_inner();
            if json {
                print_json(&plan_json(&response));
            } else {
                let plan = response.plan.clone().unwrap_or_default();
                println!("plan {} (policy {})", response.plan_hash, response.policy_hash);
                for workflow in &plan.workflows {
                    println!("  workflow {} (owner {})", workflow.name, workflow.owner);
                }
                for target in &plan.targets {
                    let desired = target.desired.clone().unwrap_or_default();
                    let grants: Vec<String> =
                        desired.entitlements.iter().map(|e| format!("{}:{}", e.kind, e.id)).collect();
                    println!(
                        "  {:<12} {} enabled={} entitlements=[{}]{}",
                        target.target_id,
                        desired.account.map(|a| a.account_name).unwrap_or_default(),
                        desired.enabled,
                        grants.join(", "),
                        if target.approvals_required > 0 {
                            format!(" (needs {} approval(s) from {})", target.approvals_required, target.approver_group)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Approve { event_id, target_id, comment, json } => {
            decide(&cli.coordinator, &cli.principal, pb::ApprovalRequest { event_id, target_id, comment }, json, true)
                .await
        }
        Command::Reject { event_id, target_id, comment, json } => {
            decide(&cli.coordinator, &cli.principal, pb::ApprovalRequest { event_id, target_id, comment }, json, false)
                .await
        }
        Command::Evidence { event_id, json } => {
            let mut client = connect(&cli.coordinator).await?;
            let document =
                client.export_evidence(pb::ExportEvidenceRequest { event_id }).await.map_err(from_status)?.into_inner();
            if json {
                println!("{}", document.json);
            } else {
                let value: Value = serde_json::from_str(&document.json).map_err(|e| failed(e.to_string()))?;
                print_evidence(&value);
            }
            Ok(())
        }
        Command::Reconcile { target, remediate, person_prefix, json, link, link_from, account_prefix } => {
            let links = match &link_from {
                Some(path) => reconcile::links_from_report(path).map_err(bad_input)?,
                None => Vec::new(),
            };
            let mut client = connect(&cli.coordinator).await?;
            let request = pb::ReconcileRequest {
                target_id: target.unwrap_or_default(),
                remediate,
                person_id_prefix: person_prefix,
                link_unlinked: link,
                links,
                account_name_prefix: account_prefix,
            };
            let stream = client.reconcile(request).await.map_err(from_status)?.into_inner();
            let outcome = reconcile::run(stream, json, from_status).await?;
            if outcome.drift_found {
                return Err(Failure { code: reconcile::DRIFT_FOUND, message: "drift found".into() });
            }
            Ok(())
        }
        Command::Identities { command: IdentitiesCommand::Load { file, source_system, json } } => {
            let records = identities::read(&file, &source_system).map_err(bad_input)?;
            let mut client = connect(&cli.coordinator).await?;
            let (mut loaded, mut unchanged) = (0u64, 0u64);
            for chunk in records.chunks(identities::CHUNK) {
                let request = pb::LoadIdentitiesRequest { identities: chunk.to_vec() };
                let response = client.load_identities(request).await.map_err(from_status)?.into_inner();
                loaded += response.loaded;
                unchanged += response.unchanged;
            }
            if json {
                print_json(&json!({ "records": records.len(), "loaded": loaded, "unchanged": unchanged }));
            } else {
                println!("{} records: {loaded} loaded, {unchanged} unchanged (nothing provisioned)", records.len());
            }
            Ok(())
        }
        Command::Import(args) => import::run(&cli.coordinator, &cli.principal, args).await,
        Command::Held { command } => held::run(&cli.coordinator, &cli.principal, command).await,
        Command::Campaign { command } => campaign::run(&cli.coordinator, &cli.principal, command).await,
        Command::Report { command } => report::run(&cli.coordinator, &cli.principal, command).await,
        Command::Overdue { json } => {
            let mut client = connect(&cli.coordinator).await?;
            let overdue = client.list_overdue(pb::ListOverdueRequest {}).await.map_err(from_status)?.into_inner();
            if json {
                print_json(&json!(
                    overdue
                        .tasks
                        .iter()
                        .map(|t| json!({
                            "event_id": t.event_id, "person_id": t.person_id, "target_id": t.target_id,
                            "state": state_name(t.state), "deadline_at": t.deadline_at,
                            "late_by_seconds": t.late_by_seconds, "workflows": t.workflows, "owners": t.owners,
                        }))
                        .collect::<Vec<_>>()
                ));
            } else if overdue.tasks.is_empty() {
                println!("no overdue tasks");
            } else {
                for task in &overdue.tasks {
                    println!(
                        "{} {} {} {} deadline {} late by {}s owner {}",
                        task.event_id,
                        task.person_id,
                        task.target_id,
                        state_name(task.state),
                        task.deadline_at,
                        task.late_by_seconds,
                        if task.owners.is_empty() { "-".to_owned() } else { task.owners.join(",") }
                    );
                }
            }
            Ok(())
        }
    }
}

async fn decide(
    coordinator: &str,
    principal: &Option<String>,
    request: pb::ApprovalRequest,
    json: bool,
    approve: bool,
) -> Result<(), Failure> {
    let authenticated = CREDENTIALS
        .get()
        .is_some_and(|c| c.authorization.is_some() || c.tls.as_ref().is_some_and(|t| t.identity.is_some()));
    if principal.is_none() && !authenticated {
        return Err(bad_input("approving or rejecting needs --token-file, --cert/--key, or (development) --principal"));
    }
    let mut client = connect(coordinator).await?;
    let request = with_principal(request, principal)?;
    let response = if approve { client.approve(request).await } else { client.reject(request).await };
    let response = response.map_err(from_status)?.into_inner();
    let task = response.task.unwrap_or_default();
    if json {
        print_json(
            &json!({ "approvals": response.approvals, "required": response.required, "task": task_json(&task) }),
        );
    } else {
        println!(
            "{} {}: {} approval(s) of {} required; task {}",
            if approve { "approved" } else { "rejected" },
            task.target_id,
            response.approvals,
            response.required,
            state_name(task.state)
        );
    }
    Ok(())
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

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_evidence(evidence: &Value) {
    println!("evidence for event {}", text(&evidence["event_id"]));
    for (label, key) in [
        ("kind", "kind"),
        ("person", "person_id"),
        ("state", "state"),
        ("initiator", "initiator"),
        ("source", "source_system"),
        ("effective at", "effective_at"),
        ("received at", "received_at"),
        ("finished at", "finished_at"),
        ("policy hash", "policy_hash"),
        ("plan hash", "plan_hash"),
        ("trace id", "trace_id"),
    ] {
        println!("  {label:<13} {}", text(&evidence[key]));
    }
    for workflow in evidence["workflows"].as_array().into_iter().flatten() {
        println!("  workflow      {} (owner {})", text(&workflow["name"]), text(&workflow["owner"]));
    }
    for target in evidence["targets"].as_array().into_iter().flatten() {
        println!(
            "  target {}: {} after {} attempt(s), deadline {}{}",
            text(&target["target_id"]),
            text(&target["state"]),
            text(&target["attempts"]),
            text(&target["deadline"]["deadline_at"]),
            if target["deadline"]["breached"] == Value::Bool(true) { " (BREACHED)" } else { "" }
        );
        println!("    desired         {}", target["desired"]);
        println!("    acknowledgement {}", target["acknowledgement"]);
        println!("    read-back       {}", target["read_back"]);
        for difference in target["differences"].as_array().into_iter().flatten() {
            println!("    difference      {}", text(difference));
        }
        for risk in target["residual_risks"].as_array().into_iter().flatten() {
            println!(
                "    residual risk   {}: {} ({})",
                text(&risk["credential_kind"]),
                text(&risk["description"]),
                text(&risk["bound"])
            );
        }
        for approval in target["approvals"].as_array().into_iter().flatten() {
            println!(
                "    {:<15} {} at {}",
                text(&approval["decision"]),
                text(&approval["approver"]),
                text(&approval["at"])
            );
        }
        println!("    timings         {}", target["timings"]);
    }
    let seqs: Vec<String> = evidence["audit"].as_array().into_iter().flatten().map(|r| text(&r["seq"])).collect();
    println!("  audit records {}", seqs.join(", "));
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code =
                if matches!(error.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
                {
                    0
                } else {
                    2
                };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    match Credentials::from_cli(&cli) {
        Ok(credentials) => {
            let _ = CREDENTIALS.set(credentials);
        }
        Err(failure) => {
            eprintln!("jmlctl: {}", failure.message.replace('\n', " "));
            return ExitCode::from(failure.code);
        }
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("jmlctl: {}", failure.message.replace('\n', " "));
            ExitCode::from(failure.code)
        }
    }
}
