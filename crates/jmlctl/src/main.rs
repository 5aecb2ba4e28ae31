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

mod approval;
mod audit;
mod campaign;
mod connection;
mod events;
mod evidence;
mod failure;
mod held;
mod identities;
mod import;
mod overdue;
mod policy;
mod reconcile;
mod report;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::connection::{CREDENTIALS, Credentials};
use crate::failure::Failure;

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

/// One variant per command; each command's flags and code are in its module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a lifecycle event.
    Submit(events::SubmitArgs),
    /// Show an event's status per target.
    Status(status::StatusArgs),
    /// Follow an event until it is verified or failed (exit 0 when verified
    /// or nothing to do, 7 when verified with residual risk).
    Watch(status::WatchArgs),
    /// Dry run: the desired state per target and the workflows that match.
    Plan(events::PlanArgs),
    /// Approve the grants awaiting approval on one target of an event.
    Approve(approval::DecisionArgs),
    /// Reject the grants awaiting approval on one target of an event.
    Reject(approval::DecisionArgs),
    /// Print the evidence for one event.
    Evidence(evidence::EvidenceArgs),
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Policy commands.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Identity records (the baseline).
    Identities {
        #[command(subcommand)]
        command: identities::IdentitiesCommand,
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
    Overdue(overdue::OverdueArgs),
    /// Compare each target's accounts with the expected state (drift,
    /// orphans, failed deprovisioning); exit 4 when drift is found.
    Reconcile(reconcile::ReconcileArgs),
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let (coordinator, principal) = (&cli.coordinator, &cli.principal);
    match cli.command {
        Command::Submit(args) => events::submit(coordinator, principal, args).await,
        Command::Status(args) => status::status(coordinator, args).await,
        Command::Watch(args) => status::watch(coordinator, args).await,
        Command::Plan(args) => events::plan(coordinator, args).await,
        Command::Approve(args) => approval::run(coordinator, principal, args, true).await,
        Command::Reject(args) => approval::run(coordinator, principal, args, false).await,
        Command::Evidence(args) => evidence::run(coordinator, args).await,
        Command::Audit { command } => audit::run(coordinator, command).await,
        Command::Policy { command } => policy::run(command).await,
        Command::Identities { command } => identities::run(coordinator, command).await,
        Command::Import(args) => import::run(coordinator, principal, args).await,
        Command::Held { command } => held::run(coordinator, principal, command).await,
        Command::Campaign { command } => campaign::run(coordinator, principal, command).await,
        Command::Report { command } => report::run(coordinator, principal, command).await,
        Command::Overdue(args) => overdue::run(coordinator, args).await,
        Command::Reconcile(args) => reconcile::run(coordinator, args).await,
    }
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
