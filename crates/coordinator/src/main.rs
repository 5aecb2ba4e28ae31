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
use coordinator::{Engine, EngineConfig, Policy, SqliteStore};

/// Serve the Lifecycle Mesh coordinator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The policy file (YAML).
    #[arg(long, env = "JML_POLICY")]
    policy: PathBuf,
    /// The SQLite database file (created when missing).
    #[arg(long, env = "JML_DB", default_value = "./lifecycle-mesh.db")]
    db: PathBuf,
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "JML_COORDINATOR_LISTEN", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    /// Apply + read-back attempts per task before it fails.
    #[arg(long, env = "JML_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// First retry backoff in milliseconds (doubles per attempt, jittered).
    #[arg(long, env = "JML_BASE_BACKOFF_MS", default_value_t = 500)]
    base_backoff_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("coordinator");
    let policy = Policy::load(&args.policy).with_context(|| format!("policy {}", args.policy.display()))?;
    let store = SqliteStore::open(&args.db).await.with_context(|| format!("database {}", args.db.display()))?;
    let config = EngineConfig {
        max_attempts: args.max_attempts.max(1),
        base_backoff: Duration::from_millis(args.base_backoff_ms),
        ..EngineConfig::default()
    };
    let engine = Engine::start(Arc::new(store), Arc::new(policy), config).await?;
    let running = RunningCoordinator::bind(args.listen, engine).await?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", running.local_addr());
    let _ = stdout.flush();
    tracing::info!(addr = %running.local_addr(), "coordinator serving");
    connector_kit::server::shutdown_signal().await;
    tracing::info!("signal received, shutting down");
    running.shutdown().await?;
    Ok(())
}
