//! `coordinator`: serves the Lifecycle Mesh lifecycle API over a policy file
//! and a SQLite database.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
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
    let store: Arc<dyn Store> = if postgres::is_postgres_url(&args.db) {
        let store = PostgresStore::open(&args.db)
            .await
            .map_err(|error| anyhow::anyhow!("database {}: {error}", postgres::redacted_url(&args.db)))?;
        Arc::new(store)
    } else {
        let path = PathBuf::from(&args.db);
        Arc::new(SqliteStore::open(&path).await.with_context(|| format!("database {}", path.display()))?)
    };
    let config = EngineConfig {
        max_attempts: args.max_attempts.max(1),
        base_backoff: Duration::from_millis(args.base_backoff_ms),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, Arc::new(policy), config).await?;
    // Per-target reconciliation schedules (`reconcile.every` in the policy).
    let _reconcile_schedules = coordinator::reconcile::spawn_schedules(&engine);
    let running = RunningCoordinator::bind_with(args.listen, engine, tls, authentication).await?;
    let mut stdout = std::io::stdout();
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
    // Flush the last spans even when the server stopped with an error.
    connector_kit::telemetry::shutdown();
    stopped?;
    Ok(())
}
