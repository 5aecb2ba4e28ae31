//! `coordinator`: serves the Lifecycle Mesh lifecycle API over a policy file
//! and a database: a SQLite file (one coordinator), or PostgreSQL shared by
//! several replicas that split the work by lane leases (`coordinator::claims`).

#[global_allocator]
static GLOBAL: coordinator::Allocator = coordinator::Allocator;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use coordinator::claims::LaneLeases;
use coordinator::server::RunningCoordinator;
use coordinator::store::{Store, postgres};
use coordinator::{Engine, EngineConfig, Policy, PostgresStore, SqliteStore};

/// Serve the Lifecycle Mesh coordinator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The policy file (YAML).
    #[arg(long, env = "JML_POLICY")]
    policy: PathBuf,
    /// The database: a SQLite file (created when missing) or a
    /// `postgres://user:password@host:port/db` URL (several replicas may
    /// share one PostgreSQL database). Prefer the JML_DB environment
    /// variable for a URL with a password; it is never logged.
    #[arg(long, env = "JML_DB", default_value = "./lifecycle-mesh.db", hide_env_values = true)]
    db: String,
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "JML_COORDINATOR_LISTEN", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    /// Apply + read-back attempts per task before it fails.
    #[arg(long, env = "JML_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// First retry backoff in milliseconds (doubles per attempt, jittered).
    #[arg(long, env = "JML_BASE_BACKOFF_MS", default_value_t = 500)]
    base_backoff_ms: u64,
    /// Address to serve Prometheus metrics (`GET /metrics`) and the HTTP
    /// probes `/healthz` and `/readyz` on; off when unset.
    #[arg(long, env = "JML_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// This replica's name when several coordinators share one PostgreSQL
    /// database (unique per process; default: host name, process id and a
    /// random suffix). Ignored with SQLite.
    #[arg(long, env = "JML_REPLICA_ID")]
    replica_id: Option<String>,
    /// Lane lease period in seconds (PostgreSQL): a replica that stops
    /// renewing has its lanes taken over this long after its last renewal.
    #[arg(long, env = "JML_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// How long to wait at start for every connector's Describe (the policy
    /// is checked against each before it is loaded; a connector still
    /// unreachable then stops the start).
    #[arg(long, env = "JML_DESCRIBE_PATIENCE_SECONDS", default_value_t = 60)]
    describe_patience_seconds: u64,
    /// Address to serve the SCIM 2.0 endpoint for inbound HR data on (same
    /// TLS and callers as the gRPC API; the mapping is the policy's
    /// `source_of_truth.scim`); off when unset. Port 0 picks a free port.
    #[arg(long, env = "JML_SCIM_LISTEN")]
    scim_listen: Option<SocketAddr>,
    /// Largest SCIM request body (bytes).
    #[arg(long, env = "JML_SCIM_MAX_BODY", default_value_t = 4 * 1024 * 1024)]
    scim_max_body: usize,
    /// How often, in seconds, a task awaiting fulfilment on a manual target
    /// reads its ticket back for an attestation (each read is one call to
    /// the ticketing system per waiting task).
    #[arg(long, env = "JML_FULFILMENT_POLL_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    fulfilment_poll_seconds: u64,
    /// TLS and caller authentication of the lifecycle API.
    #[command(flatten)]
    access: coordinator::auth::ApiAccessArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("coordinator");
    let (tls, authentication) = args.access.resolve()?;
    let policy = Policy::load(&args.policy).with_context(|| format!("policy {}", args.policy.display()))?;
    // The policy checked against every connector's own Describe before it is
    // loaded (a connector starting alongside is waited for).
    let issues = coordinator::live_check::check_live(
        &policy,
        EngineConfig::default().call_timeout,
        Duration::from_secs(args.describe_patience_seconds),
    )
    .await;
    if !issues.is_empty() {
        let listed: Vec<String> = issues.iter().map(ToString::to_string).collect();
        anyhow::bail!("policy {} does not match its connectors: {}", args.policy.display(), listed.join("; "));
    }
    let config = EngineConfig {
        max_attempts: args.max_attempts.max(1),
        base_backoff: Duration::from_millis(args.base_backoff_ms),
        fulfilment_poll: Duration::from_secs(args.fulfilment_poll_seconds),
        ..EngineConfig::default()
    };
    let engine = if postgres::is_postgres_url(&args.db) {
        let store = PostgresStore::open(&args.db)
            .await
            .map_err(|error| anyhow::anyhow!("database {}: {error}", postgres::redacted_url(&args.db)))?;
        let replica = args.replica_id.clone().unwrap_or_else(default_replica_id);
        let leases = LaneLeases::new(store.pool().clone(), replica, Duration::from_secs(args.lease_seconds));
        Engine::start_replica(Arc::new(store), Arc::new(policy), config, leases).await?
    } else {
        let path = PathBuf::from(&args.db);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path).await.with_context(|| format!("database {}", path.display()))?);
        Engine::start(store, Arc::new(policy), config).await?
    };
    // What the policy's calendar asks of each connector (a retention needs
    // delete support), checked against its Describe: refused like a policy error.
    let refused = coordinator::calendar::check_connectors(&engine, Duration::from_secs(10)).await;
    if !refused.is_empty() {
        anyhow::bail!("policy {}: {}", args.policy.display(), coordinator::policy::PolicyError::Invalid(refused));
    }
    // Per-target reconciliation schedules (`reconcile.every` in the policy).
    let _reconcile_schedules = coordinator::reconcile::spawn_schedules(&engine);
    // Scheduled campaigns and the escalation of campaigns past their deadline.
    let _campaign_schedules = coordinator::campaign::spawn_schedules(&engine, Duration::from_secs(30));
    let scim = match args.scim_listen {
        None => None,
        Some(addr) => {
            let options = coordinator::scim_inbound::ScimOptions { max_body: args.scim_max_body, ..Default::default() };
            let running = coordinator::scim_inbound::RunningScim::bind(
                addr,
                engine.clone(),
                tls.as_ref(),
                authentication.clone(),
                options,
            )
            .await?;
            Some(running)
        }
    };
    let running = RunningCoordinator::bind_with(args.listen, engine.clone(), tls, authentication).await?;
    let mut stdout = std::io::stdout();
    // Before the gRPC line, which the harness and scripts wait for.
    if let Some(scim) = &scim {
        let _ = writeln!(stdout, "scim listening on {}", scim.local_addr());
        tracing::info!(addr = %scim.local_addr(), "SCIM endpoint serving");
    }
    if let Some(addr) = args.metrics_listen {
        coordinator::metrics::CoordinatorMetrics::get();
        let bound = connector_kit::metrics::serve(addr).await.with_context(|| format!("metrics listener {addr}"))?;
        connector_kit::metrics::set_ready(true);
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
    }
    let _ = writeln!(stdout, "listening on {}", running.local_addr());
    let _ = stdout.flush();
    tracing::info!(addr = %running.local_addr(), "coordinator serving");
    connector_kit::server::shutdown_signal().await;
    tracing::info!("signal received, shutting down");
    let stopped = running.shutdown().await;
    if let Some(scim) = scim {
        scim.shutdown().await;
    }
    // A replica hands its lanes over at once rather than after expiry.
    engine.release_leases().await;
    // Flush the last spans even when the server stopped with an error.
    connector_kit::telemetry::shutdown();
    stopped?;
    Ok(())
}

/// `<host>-<pid>-<random>`: unique per process, readable in the `lanes`
/// table and the logs.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "coordinator".into());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}
